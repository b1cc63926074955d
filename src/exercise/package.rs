//! An exercise as files, and as the one file an instructor hands out.
//!
//! The packed file is JSON: the format, the exercise's id and version,
//! whether it is a learner copy (no solution), every file's text, and a
//! SHA-256 digest over all of that. Loading it recomputes the digest and
//! refuses the file when they differ, so a package that was edited, cut
//! short or corrupted on the way is never run. (A digest proves the file
//! is the one that was packed, not who packed it: whoever grades with the
//! course secret should grade from their own copy.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ring::digest;
use serde::{Deserialize, Serialize};

/// The packed file's `format`.
pub const FORMAT: &str = "labrun-exercise/1";
/// What a learner copy leaves out: the reference solution.
pub const SOLUTION_FILE: &str = "solve.rhai";
pub const SOLUTION_DIR: &str = "solution";
/// More than any exercise needs; stops a wrong directory being packed whole.
pub const MAX_TOTAL_BYTES: usize = 8 * 1024 * 1024;

/// An exercise's files: relative path (with `/`) to text.
pub type Files = BTreeMap<String, String>;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Package {
    pub format: String,
    pub exercise: String,
    pub version: String,
    pub learner_copy: bool,
    pub files: Files,
    pub digest: String,
}

/// Whether `rel` is a path a package may hold: relative, plain names, no
/// `..`, nothing hidden.
pub fn valid_path(rel: &str) -> bool {
    !rel.is_empty()
        && rel.len() <= 200
        && rel.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
}

/// Whether `rel` belongs to the reference solution.
pub fn is_solution(rel: &str) -> bool {
    rel == SOLUTION_FILE || rel.starts_with(&format!("{SOLUTION_DIR}/"))
}

/// Reads every file of the exercise directory `dir` (hidden files and
/// directories skipped), as text.
pub fn read_dir(dir: &Path) -> Result<Files, String> {
    let mut files = Files::new();
    let mut total = 0;
    walk(dir, dir, &mut files, &mut total)?;
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut Files, total: &mut usize) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if kind.is_dir() {
            walk(root, &path, files, total)?;
            continue;
        }
        if !kind.is_file() {
            return Err(format!(
                "{}: only regular files and directories can be packed",
                path.display()
            ));
        }
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .replace('\\', "/");
        if !valid_path(&rel) {
            return Err(format!(
                "{}: file names in an exercise are letters, digits, '.', '_' and '-'",
                path.display()
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        *total += bytes.len();
        if *total > MAX_TOTAL_BYTES {
            return Err(format!(
                "{}: the exercise is over {} MiB; is this the right directory?",
                root.display(),
                MAX_TOTAL_BYTES / 1024 / 1024
            ));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            format!(
                "{}: not UTF-8 text; exercises hold text files only",
                path.display()
            )
        })?;
        files.insert(rel, text);
    }
    Ok(())
}

/// `sha256:<hex>` over the format, id, version, learner-copy flag and every
/// file (path and text, each length-prefixed, in path order).
pub fn digest(exercise: &str, version: &str, learner_copy: bool, files: &Files) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(FORMAT.as_bytes());
    field(exercise.as_bytes());
    field(version.as_bytes());
    field(if learner_copy { b"learner" } else { b"full" });
    for (path, text) in files {
        field(path.as_bytes());
        field(text.as_bytes());
    }
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

impl Package {
    /// Packs `files` (a learner copy leaves the solution out).
    pub fn new(exercise: &str, version: &str, learner_copy: bool, files: &Files) -> Package {
        let files: Files = files
            .iter()
            .filter(|(rel, _)| !(learner_copy && is_solution(rel)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Package {
            format: FORMAT.into(),
            exercise: exercise.into(),
            version: version.into(),
            learner_copy,
            digest: digest(exercise, version, learner_copy, &files),
            files,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("package serializes") + "\n"
    }

    /// Reads a packed file and checks it: format, paths, and the digest.
    pub fn parse(name: &str, text: &str) -> Result<Package, String> {
        let p: Package = serde_json::from_str(text).map_err(|e| {
            format!("{name} is not a labrun exercise package (a directory or a file from `labrun exercise pack`): {e}")
        })?;
        if p.format != FORMAT {
            return Err(format!(
                "{name}: package format '{}' is not one this labrun reads ({FORMAT})",
                p.format
            ));
        }
        if let Some(bad) = p.files.keys().find(|k| !valid_path(k)) {
            return Err(format!(
                "{name}: refusing the file path '{bad}' in the package"
            ));
        }
        let actual = digest(&p.exercise, &p.version, p.learner_copy, &p.files);
        if actual != p.digest {
            return Err(format!(
                "{name}: the package's digest does not match its contents (recorded {}, contents give {actual}): \
                 it was changed after `labrun exercise pack`; ask for a fresh copy",
                p.digest
            ));
        }
        if p.learner_copy && p.files.keys().any(|k| is_solution(k)) {
            return Err(format!(
                "{name}: a learner copy that holds a solution is not one `labrun exercise pack` made"
            ));
        }
        Ok(p)
    }

    /// Writes the files under `dir` (which must exist and be empty).
    pub fn extract(&self, dir: &Path) -> Result<(), String> {
        for (rel, text) in &self.files {
            let path: PathBuf = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Files {
        Files::from([
            ("exercise.toml".to_string(), "id = \"x\"\n".to_string()),
            ("checks.rhai".to_string(), "task(...)\n".to_string()),
            (SOLUTION_FILE.to_string(), "solution(...)\n".to_string()),
            (
                "solution/helper.rhai".to_string(),
                "fn f() {}\n".to_string(),
            ),
        ])
    }

    #[test]
    fn digest_covers_every_byte_and_the_framing() {
        let f = files();
        let d = digest("x", "1", false, &f);
        assert!(d.starts_with("sha256:") && d.len() == 7 + 64);
        assert_eq!(d, digest("x", "1", false, &f));
        let mut g = f.clone();
        g.insert("checks.rhai".into(), "task(...) \n".into());
        assert_ne!(d, digest("x", "1", false, &g));
        assert_ne!(d, digest("x", "2", false, &f));
        assert_ne!(d, digest("x", "1", true, &f));
        // Moving bytes between a path and its text changes the digest.
        let a = Files::from([("ab".to_string(), "c".to_string())]);
        let b = Files::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(digest("x", "1", false, &a), digest("x", "1", false, &b));
    }

    #[test]
    fn packages_round_trip_and_tampering_is_refused() {
        let p = Package::new("x", "1", false, &files());
        let back = Package::parse("x.labex", &p.to_json()).unwrap();
        assert_eq!(back, p);

        let tampered = p.to_json().replace("task(...)", "pass()   ");
        let e = Package::parse("x.labex", &tampered).unwrap_err();
        assert!(e.contains("digest does not match"), "{e}");

        let e = Package::parse("x.labex", "not json").unwrap_err();
        assert!(e.contains("not a labrun exercise package"), "{e}");
    }

    #[test]
    fn a_learner_copy_has_no_solution() {
        let p = Package::new("x", "1", true, &files());
        assert!(p.learner_copy);
        assert_eq!(
            p.files.keys().collect::<Vec<_>>(),
            ["checks.rhai", "exercise.toml"]
        );
        Package::parse("x.labex", &p.to_json()).unwrap();
    }

    #[test]
    fn paths_are_plain_and_relative() {
        assert!(valid_path("checks.rhai"));
        assert!(valid_path("solution/a.rhai"));
        for bad in [
            "../x",
            "/etc/passwd",
            ".hidden",
            "a//b",
            "a/../b",
            "a b",
            "",
        ] {
            assert!(!valid_path(bad), "{bad}");
        }
    }

    #[test]
    fn directories_are_read_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("exercise.toml"), "id = 1").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir(dir.path().join("solution")).unwrap();
        std::fs::write(dir.path().join("solution/a.rhai"), "x").unwrap();
        let f = read_dir(dir.path()).unwrap();
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["exercise.toml", "solution/a.rhai"]
        );
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        assert!(read_dir(dir.path()).unwrap_err().contains("not UTF-8"));
    }
}
