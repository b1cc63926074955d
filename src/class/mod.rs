//! Classes: one lab per learner of a roster, started, graded and removed
//! together. A class is a directory under the state root
//! (`classes/<class>/`, 0700 like labs) holding its state (`class.json`:
//! the exercise, the roster, each learner's lab and how it went), the
//! access sheet, the learners' logs and the gradebook. Each learner's lab is
//! an ordinary exercise lab (`labs/<class>.<learner>/`), so every lab
//! command works on it too.
//!
//! This module is plain Rust: the roster, names, TTLs, the state file, the
//! bounded pool that runs learners side by side, the access sheet and the
//! gradebook. The commands are `commands::class`.

pub mod access;
pub mod csv;
pub mod gradebook;
pub mod html;
pub mod pool;
pub mod progress;
pub mod roster;
pub mod state;
pub mod ttl;

use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where classes live under the state root.
pub const DIR: &str = "classes";

/// Class names become part of lab names (`<class>.<learner>`, at most 48
/// characters with a learner id of at most 23): 1-24 letters, digits, '_'
/// or '-', starting with a letter or digit, like exercise ids.
pub fn valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 24
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The class name, checked.
pub fn check_class_name(name: &str) -> Result<(), Error> {
    if valid_class_name(name) {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "class name '{name}': use 1-24 letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

/// The lab of `learner` in `class`. The dot keeps class labs apart from
/// the `<exercise>-<learner>` labs of `labrun exercise start`: a class
/// named after its exercise never takes a learner's own lab.
pub fn lab_name(class: &str, learner: &str) -> String {
    format!("{class}.{learner}")
}

/// The class's directory under the state root `root`.
pub fn class_dir(root: &Path, class: &str) -> PathBuf {
    root.join(DIR).join(class)
}

/// Classes under `root` that have a state file, by name.
pub fn list_classes(root: &Path) -> Vec<String> {
    let mut classes: Vec<String> = std::fs::read_dir(root.join(DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(state::FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    classes.sort();
    classes
}

/// The lab of learner `learner` in class `class`, for `--class C --learner
/// ID` on the lab commands: the learner must be on the class's roster.
pub fn member_lab(class: &str, learner: Option<&str>) -> Result<String, Error> {
    check_class_name(class)?;
    let Some(learner) = learner.filter(|l| !l.is_empty()) else {
        return Err(Error::Input(format!(
            "--class {class} needs --learner ID: whose lab in the class?"
        )));
    };
    let root = crate::ledger::state_root()?;
    let Some(state) = state::ClassState::load(&class_dir(&root, class))? else {
        return Err(Error::Input(format!(
            "no class named '{class}' under {}; `labrun class status` lists the classes",
            root.display()
        )));
    };
    match state.learner(learner) {
        Some(l) => Ok(l.lab.clone()),
        None => Err(Error::Input(format!(
            "learner '{learner}' is not on class {class}'s roster (learners: {})",
            state
                .learners
                .iter()
                .map(|l| l.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lab_names_fit_and_stay_apart_from_exercise_labs() {
        assert_eq!(
            lab_name("mysql_client_server", "ana"),
            "mysql_client_server.ana"
        );
        // The longest class and learner still make a valid lab name.
        let class = "c".repeat(24);
        let learner = "l".repeat(23);
        assert!(valid_class_name(&class));
        assert!(crate::exercise::params::valid_learner(&learner));
        let lab = lab_name(&class, &learner);
        assert_eq!(lab.len(), 48);
        crate::ledger::validate_lab_name(&lab).unwrap();
        // An exercise lab of the same learner is another lab.
        assert_ne!(
            lab_name("mysql_client_server", "ana"),
            "mysql_client_server-ana"
        );
    }

    #[test]
    fn class_names_are_checked() {
        for good in ["week1", "MySQL-2025_a", "a"] {
            assert!(valid_class_name(good), "{good}");
        }
        for bad in ["", "-x", "a.b", "a b", "../x", &"c".repeat(25), "é"] {
            assert!(!valid_class_name(bad), "{bad}");
            assert!(check_class_name(bad).is_err());
        }
    }
}
