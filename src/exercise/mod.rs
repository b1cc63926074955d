//! Exercises: a lab handed to a learner as tasks with checks, hints and
//! points, plus the setup they start from and a reference solution.
//!
//! An exercise is a directory (or one packed file of it):
//!
//! ```text
//! exercise.toml   id, title, version, time limit, total points, per-learner parameters
//! README.md       the learner's instructions, with {{param}} placeholders
//! setup.rhai      what the learner is given (a playbook)
//! checks.rhai     task(id, #{title, points, hints}, || check) for every task
//! solve.rhai      solution(id, || work) for every task (left out of learner copies)
//! ```
//!
//! This module is plain Rust (manifest, parameters, package and digest,
//! results, the test protocol's judgement); the check API's Rhai bindings
//! are `bindings::check`, the commands `commands::exercise`.

pub mod manifest;
pub mod package;
pub mod params;
pub mod protocol;
pub mod results;
pub mod skeleton;
pub mod state;
pub mod template;

use std::path::{Path, PathBuf};

pub use manifest::Manifest;
use package::{Files, Package};

pub const README: &str = "README.md";
pub const SETUP: &str = "setup.rhai";
pub const CHECKS: &str = "checks.rhai";
pub const SOLVE: &str = package::SOLUTION_FILE;

/// A directory removed when dropped: where a packed exercise is unpacked.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("labrun-exercise-{}-{nanos:09}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why an exercise could not be loaded: a message, or a manifest error to
/// show at its line and column.
#[derive(Debug)]
pub enum LoadError {
    Message(String),
    Manifest {
        error: manifest::SpanError,
        text: String,
    },
}

/// An exercise ready to use: its manifest and its files on disk.
pub struct Exercise {
    pub manifest: Manifest,
    /// Where the files are: the directory itself, or where a packed file
    /// was unpacked (removed again when this is dropped).
    pub dir: PathBuf,
    /// What the user named, made absolute.
    pub source: PathBuf,
    pub packed: bool,
    pub learner_copy: bool,
    /// The digest of the files (a packed file's own digest).
    pub digest: String,
    pub files: Files,
    _unpacked: Option<TempDir>,
}

impl Exercise {
    /// Loads the exercise directory or packed file at `path`; a packed
    /// file whose digest does not match is refused.
    pub fn load(path: &Path) -> Result<Exercise, LoadError> {
        let msg = LoadError::Message;
        let source =
            std::path::absolute(path).map_err(|e| msg(format!("{}: {e}", path.display())))?;
        let meta = std::fs::metadata(path).map_err(|e| {
            msg(format!(
                "cannot read exercise {}: {e} (give an exercise directory or a file from `labrun exercise pack`)",
                path.display()
            ))
        })?;
        let (files, packed, learner_copy, dir, unpacked) = if meta.is_dir() {
            let files = package::read_dir(path).map_err(msg)?;
            (files, false, false, path.to_path_buf(), None)
        } else {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                msg(format!(
                    "{name}: {e} (is this a file from `labrun exercise pack`?)"
                ))
            })?;
            let p = Package::parse(&name, &text).map_err(msg)?;
            let tmp = TempDir::new().map_err(|e| msg(format!("cannot unpack {name}: {e}")))?;
            p.extract(&tmp.0).map_err(msg)?;
            (p.files, true, p.learner_copy, tmp.0.clone(), Some(tmp))
        };
        let manifest_name = dir.join(manifest::FILE).display().to_string();
        let text = files.get(manifest::FILE).ok_or_else(|| {
            msg(format!(
                "{manifest_name} is missing: an exercise needs {}, {README}, {SETUP} and {CHECKS} \
                 (`labrun exercise new NAME` makes a working skeleton)",
                manifest::FILE
            ))
        })?;
        let manifest =
            Manifest::parse(&manifest_name, text).map_err(|error| LoadError::Manifest {
                error,
                text: text.clone(),
            })?;
        let digest = package::digest(&manifest.id, &manifest.version, learner_copy, &files);
        Ok(Exercise {
            manifest,
            dir,
            source,
            packed,
            learner_copy,
            digest,
            files,
            _unpacked: unpacked,
        })
    }

    /// The path of one of the exercise's files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// The lab a learner works in: `<id>-<learner>`, or `<id>` without one.
    pub fn lab_name(&self, learner: Option<&str>) -> String {
        match learner {
            Some(l) => format!("{}-{l}", self.manifest.id),
            None => self.manifest.id.clone(),
        }
    }
}
