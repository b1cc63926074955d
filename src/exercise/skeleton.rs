//! `labrun exercise new NAME`: a small exercise that works as it is
//! (`validate` and `test` pass on it), to edit into a real one.

use std::path::Path;

/// The skeleton's files: name and text (`__EXERCISE_ID__` is replaced).
pub const FILES: &[(&str, &str)] = &[
    ("exercise.toml", include_str!("skeleton/exercise.toml")),
    ("README.md", include_str!("skeleton/README.md")),
    ("setup.rhai", include_str!("skeleton/setup.rhai")),
    ("checks.rhai", include_str!("skeleton/checks.rhai")),
    ("solve.rhai", include_str!("skeleton/solve.rhai")),
];

/// Writes the skeleton into `dir` (created; it must not exist yet), with
/// `id` as the exercise id. Returns the files written.
pub fn write(dir: &Path, id: &str) -> Result<Vec<String>, String> {
    if dir.exists() {
        return Err(format!(
            "{} already exists; pick a new directory name",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, text.replace("__EXERCISE_ID__", id))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skeleton_manifest_parses_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let ex = dir.path().join("my-first");
        write(&ex, "my-first").unwrap();
        let text = std::fs::read_to_string(ex.join("exercise.toml")).unwrap();
        let m = crate::exercise::Manifest::parse("exercise.toml", &text).unwrap();
        assert_eq!(m.id, "my-first");
        assert!(
            write(&ex, "my-first")
                .unwrap_err()
                .contains("already exists")
        );
    }
}
