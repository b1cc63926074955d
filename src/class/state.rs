//! A class on disk (`classes/<class>/class.json`): the exercise it runs,
//! where its roster came from, its TTL, and each learner's lab and how its
//! last `up` went. Written atomically after every change, so a `class up`
//! killed at any moment leaves a state the next one continues from; a lock
//! keeps two commands that change the class apart (`class status` reads
//! without it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::roster::Member;
use crate::error::{Error, LedgerError};
use crate::ledger::{now_secs, take_lock, write_atomic};
use crate::providers::ProviderKind;

pub const FILE: &str = "class.json";

/// The exercise a class runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExerciseRef {
    pub id: String,
    pub version: String,
    /// The directory or packed file `class up` was given, absolute.
    pub source: PathBuf,
    pub digest: String,
}

/// Where a learner's lab stands, as far as `class up` and `class down` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabState {
    /// Not tried yet.
    Pending,
    /// An `up` began setting it up and has not said how it ended (it is
    /// running now, or it was killed).
    Starting,
    /// Set up: the learner can get in.
    Up,
    /// Its setup failed; the next `up` tries again.
    Failed,
    /// Removed by `class down`.
    Down,
}

impl LabState {
    pub fn as_str(self) -> &'static str {
        match self {
            LabState::Pending => "pending",
            LabState::Starting => "starting",
            LabState::Up => "up",
            LabState::Failed => "failed",
            LabState::Down => "down",
        }
    }
}

/// How a learner gets into one instance: recorded when the lab comes up,
/// for the access sheet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub instance: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The pinned host key (`ssh-ed25519 AAAA...`), if labrun connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

/// One learner of the class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerState {
    #[serde(flatten)]
    pub member: Member,
    pub lab: String,
    pub state: LabState,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    /// When it came up (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<Access>,
}

impl std::ops::Deref for LearnerState {
    type Target = Member;
    fn deref(&self) -> &Member {
        &self.member
    }
}

/// What `class.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassState {
    pub class: String,
    pub exercise: ExerciseRef,
    pub provider: ProviderKind,
    /// The roster file `class up` first read, absolute.
    pub roster: PathBuf,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// When `class down` last removed every lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_at: Option<u64>,
    pub learners: Vec<LearnerState>,
}

impl ClassState {
    /// The class in directory `dir`, if there is one (read without the lock).
    pub fn load(dir: &Path) -> Result<Option<ClassState>, LedgerError> {
        crate::ledger::read_json(&dir.join(FILE))
    }

    pub fn learner(&self, id: &str) -> Option<&LearnerState> {
        self.learners.iter().find(|l| l.id == id)
    }

    /// When the TTL runs out (Unix seconds), if the class has one.
    pub fn expires_at(&self) -> Option<u64> {
        self.ttl_secs.map(|t| self.created_at.saturating_add(t))
    }

    pub fn expired(&self, now: u64) -> bool {
        self.expires_at().is_some_and(|e| now >= e)
    }
}

/// An open class: its lock held, its state in memory and on disk. Worker
/// threads share it and update it one change at a time.
pub struct Class {
    dir: PathBuf,
    state: Mutex<ClassState>,
    _lock: File,
}

impl Class {
    /// Takes the lock of the class in `dir` (made 0700 if missing).
    pub fn lock(dir: &Path, class: &str) -> Result<File, Error> {
        take_lock(dir)?.map_err(|holder| {
            Error::Failed(format!(
                "class '{class}' is in use by another labrun ({holder}); wait for it to finish or stop it"
            ))
        })
    }

    /// The class with `state`, under `lock` (from [`Class::lock`]); saved at once.
    pub fn new(dir: &Path, lock: File, state: ClassState) -> Result<Class, Error> {
        let class = Class {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            _lock: lock,
        };
        class.update(|_| ())?;
        Ok(class)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn snapshot(&self) -> ClassState {
        self.state.lock().expect("class lock").clone()
    }

    /// Applies `f` and writes the state atomically.
    pub fn update<T>(&self, f: impl FnOnce(&mut ClassState) -> T) -> Result<T, LedgerError> {
        let mut state = self.state.lock().expect("class lock");
        let out = f(&mut state);
        let text = serde_json::to_string_pretty(&*state).expect("class state serializes");
        write_atomic(&self.dir.join(FILE), text.as_bytes(), 0o644)?;
        Ok(out)
    }

    /// Applies `f` to learner `id`'s entry and saves.
    pub fn update_learner(
        &self,
        id: &str,
        f: impl FnOnce(&mut LearnerState),
    ) -> Result<(), LedgerError> {
        self.update(|s| {
            if let Some(l) = s.learners.iter_mut().find(|l| l.id == id) {
                f(l);
            }
        })
    }
}

/// Marks `learner` as being set up now.
pub fn starting(l: &mut LearnerState) {
    l.state = LabState::Starting;
    l.error = None;
    l.attempts += 1;
}

/// Marks `learner` as up, with how to get in.
pub fn up(l: &mut LearnerState, access: Vec<Access>) {
    l.state = LabState::Up;
    l.error = None;
    l.up_at = Some(now_secs());
    l.access = access;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ClassState {
        ClassState {
            class: "c1".into(),
            exercise: ExerciseRef {
                id: "ex".into(),
                version: "1".into(),
                source: "/x".into(),
                digest: "d".into(),
            },
            provider: ProviderKind::Local,
            roster: "/r.csv".into(),
            created_at: 1000,
            ttl_secs: Some(3600),
            down_at: None,
            learners: vec![LearnerState {
                member: Member {
                    id: "ana".into(),
                    name: "Ana".into(),
                    email: String::new(),
                },
                lab: "c1.ana".into(),
                state: LabState::Pending,
                error: None,
                attempts: 0,
                up_at: None,
                access: Vec::new(),
            }],
        }
    }

    #[test]
    fn state_round_trips_and_one_lock_at_a_time() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("classes/c1");
        let lock = Class::lock(&dir, "c1").unwrap();
        let class = Class::new(&dir, lock, state()).unwrap();
        class.update_learner("ana", starting).unwrap();
        let e = Class::lock(&dir, "c1").unwrap_err().to_string();
        assert!(
            e.starts_with("class 'c1' is in use by another labrun (pid "),
            "{e}"
        );
        let loaded = ClassState::load(&dir).unwrap().unwrap();
        assert_eq!(loaded.learners[0].state, LabState::Starting);
        assert_eq!(loaded.learners[0].attempts, 1);
        assert_eq!(loaded, class.snapshot());
        drop(class);
        Class::lock(&dir, "c1").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_class_expires_after_its_ttl() {
        let s = state();
        assert_eq!(s.expires_at(), Some(4600));
        assert!(!s.expired(4599));
        assert!(s.expired(4600));
        let forever = ClassState {
            ttl_secs: None,
            ..state()
        };
        assert!(!forever.expired(u64::MAX));
    }
}
