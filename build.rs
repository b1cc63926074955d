//! Embeds `stdlib/*.rhai` so a lone binary still has the standard modules.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=stdlib");
    let mut entries: Vec<_> = std::fs::read_dir("stdlib")
        .expect("stdlib/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .collect();
    entries.sort();
    let mut out = String::from("&[\n");
    for path in entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let abs = std::fs::canonicalize(&path).unwrap();
        writeln!(
            out,
            "    ({stem:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push(']');
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("stdlib_embedded.rs");
    std::fs::write(dest, out).unwrap();
}
