//! What a lab remembers about the exercise it was started for
//! (`labs/<lab>/exercise.json`): where the exercise came from and its
//! digest, the learner and their parameters, and how many hints of each
//! task the learner has seen, so `check` shows the next one each time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::LedgerError;

pub const FILE: &str = "exercise.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExerciseRecord {
    pub exercise: String,
    pub version: String,
    /// The directory or packed file `start` was given, absolute.
    pub source: PathBuf,
    pub digest: String,
    pub learner: Option<String>,
    pub params: BTreeMap<String, Value>,
    /// What `--set` gave at the start, as typed (the rest comes from the
    /// course secret or the defaults).
    #[serde(default)]
    pub sets: BTreeMap<String, String>,
    pub started_at: u64,
    /// Hints shown so far, by task id.
    #[serde(default)]
    pub hints_shown: BTreeMap<String, usize>,
}

impl ExerciseRecord {
    /// The record in lab directory `dir`, if the lab was started for an exercise.
    pub fn load(dir: &Path) -> Result<Option<Self>, LedgerError> {
        crate::ledger::read_json(&dir.join(FILE))
    }

    pub fn save(&self, dir: &Path) -> Result<(), LedgerError> {
        let text = serde_json::to_string_pretty(self).expect("record serializes");
        crate::ledger::write_atomic(&dir.join(FILE), text.as_bytes(), 0o644)
    }

    /// The hint to show for a task that did not pass, counting it as
    /// shown: the first one the first time, then the next, then the last
    /// one again.
    pub fn next_hint(&mut self, task: &str, hints: &[String]) -> Option<String> {
        if hints.is_empty() {
            return None;
        }
        let shown = self.hints_shown.entry(task.to_string()).or_insert(0);
        let hint = hints[(*shown).min(hints.len() - 1)].clone();
        *shown = (*shown + 1).min(hints.len());
        Some(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_come_one_after_another_then_stay_on_the_last() {
        let mut r = ExerciseRecord::default();
        let hints = vec!["one".to_string(), "two".to_string()];
        assert_eq!(r.next_hint("t", &hints).as_deref(), Some("one"));
        assert_eq!(r.next_hint("t", &hints).as_deref(), Some("two"));
        assert_eq!(r.next_hint("t", &hints).as_deref(), Some("two"));
        assert_eq!(r.next_hint("other", &hints).as_deref(), Some("one"));
        assert_eq!(r.next_hint("t", &[]), None);
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExerciseRecord::load(dir.path()).unwrap(), None);
        let r = ExerciseRecord {
            exercise: "ex".into(),
            learner: Some("alice".into()),
            params: BTreeMap::from([("db".into(), Value::from("shop"))]),
            ..Default::default()
        };
        r.save(dir.path()).unwrap();
        assert_eq!(ExerciseRecord::load(dir.path()).unwrap(), Some(r));
    }
}
