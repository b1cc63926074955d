//! Per-lab state on disk: what the lab created, its keys and its secrets.
//!
//! One directory per lab under the state root. `ledger.json` lists every
//! resource, recorded *before* it is created (state `pending`) and again after
//! (state `created`, with its id), so a run killed at any moment still leaves
//! enough behind for `labrun destroy`. Secrets live in `secrets.json`, mode
//! 0600, and nowhere else. A lock file keeps two runs of one lab apart.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::LedgerError;
use crate::providers::ProviderKind;
use crate::redact::Redactor;
use crate::secrets;

/// Where labs' state lives: `LABRUN_STATE_DIR`, else `$XDG_STATE_HOME/labrun`,
/// else `~/.local/state/labrun`.
pub fn state_root() -> Result<PathBuf, LedgerError> {
    crate::dirs::labrun_dir("LABRUN_STATE_DIR", "XDG_STATE_HOME", ".local/state/labrun")
        .map_err(LedgerError::NoStateDir)
}

/// Lab names become directory names, Docker labels and AWS tags.
pub fn validate_lab_name(name: &str) -> Result<(), LedgerError> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(LedgerError::BadLabName(name.to_string()))
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a ledger entry is. Serialised as `instance`, `network`,
/// `security_group`, `key_pair` (the names ledgers have always used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    Network,
    SecurityGroup,
    KeyPair,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::Network => "network",
            ResourceKind::SecurityGroup => "security_group",
            ResourceKind::KeyPair => "key_pair",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceState {
    /// About to be created; may or may not exist.
    Pending,
    /// Created; `id` is known.
    Created,
}

/// One thing the lab created at its provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: ResourceKind,
    /// The lab-level name (unique per kind within the lab).
    pub name: String,
    pub id: Option<String>,
    pub state: ResourceState,
    /// Provider-specific details (IPs, ports, subnet...).
    #[serde(default)]
    pub data: Value,
    pub recorded_at: u64,
}

/// What `ledger.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerData {
    pub lab: String,
    pub provider: ProviderKind,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub playbook: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// Pinned SSH host keys by instance id.
    #[serde(default)]
    pub host_keys: BTreeMap<String, String>,
    /// A random id telling this lab's cloud resources from those of another
    /// copy of the same lab name (another state directory, another person)
    /// in one account: the name alone is not an identity. Made once, by
    /// [`Ledger::lab_id`]; ledgers written before it existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_id: Option<String>,
    /// Local provider: the firewall table each network holder has, by
    /// holder id (a hash of its start time and ruleset), so that a run
    /// applies only the tables that changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub firewall: BTreeMap<String, String>,
}

impl LedgerData {
    /// Reads a lab's ledger without taking its lock (for `status`).
    pub fn load(dir: &Path) -> Result<Option<LedgerData>, LedgerError> {
        read_json(&dir.join("ledger.json"))
    }
}

/// An open, locked lab ledger.
pub struct Ledger {
    dir: PathBuf,
    data: Mutex<LedgerData>,
    secrets: Mutex<BTreeMap<String, String>>,
    redactor: Redactor,
    _lock: File,
}

impl Ledger {
    /// Opens (creating if needed) the ledger of `lab` under `root`, taking its
    /// lock. Every stored secret is registered with `redactor` at once, so
    /// even a secret this run never asks for stays masked.
    pub fn open(
        root: &Path,
        lab: &str,
        provider: ProviderKind,
        redactor: Redactor,
    ) -> Result<Ledger, LedgerError> {
        validate_lab_name(lab)?;
        let dir = root.join("labs").join(lab);
        let lock = take_lock(&dir)?.map_err(|holder| LedgerError::Locked {
            lab: lab.to_string(),
            holder,
        })?;

        let now = now_secs();
        let data = match LedgerData::load(&dir)? {
            Some(d) => {
                if d.provider != provider && !d.resources.is_empty() {
                    return Err(LedgerError::ProviderMismatch {
                        lab: lab.to_string(),
                        recorded: d.provider,
                        requested: provider,
                    });
                }
                LedgerData { provider, ..d }
            }
            None => LedgerData {
                lab: lab.to_string(),
                provider,
                created_at: now,
                updated_at: now,
                ..Default::default()
            },
        };
        let secrets = read_secrets(&dir)?;
        for v in secrets.values() {
            redactor.add(v);
        }
        let ledger = Ledger {
            dir,
            data: Mutex::new(data),
            secrets: Mutex::new(secrets),
            redactor,
            _lock: lock,
        };
        ledger.save()?;
        Ok(ledger)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the secrets file, for messages that say where a password is.
    pub fn secrets_path(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    pub fn snapshot(&self) -> LedgerData {
        self.data.lock().expect("ledger lock").clone()
    }

    /// Applies `f` to the data and writes the result atomically, unless
    /// `f` changed nothing and the file exists (a converged run writes no
    /// ledger; `updated_at` is when something last changed).
    pub fn update<T>(&self, f: impl FnOnce(&mut LedgerData) -> T) -> Result<T, LedgerError> {
        let mut data = self.data.lock().expect("ledger lock");
        let before = data.clone();
        let out = f(&mut data);
        if *data == before && self.dir.join("ledger.json").exists() {
            return Ok(out);
        }
        data.updated_at = now_secs();
        let text = serde_json::to_string_pretty(&*data).expect("ledger serializes");
        write_atomic(
            &self.dir.join("ledger.json"),
            self.redactor.redact(&text).as_bytes(),
            0o644,
        )?;
        Ok(out)
    }

    pub fn save(&self) -> Result<(), LedgerError> {
        self.update(|_| ())
    }

    /// The lab's id, made (and saved) on first use and never changed after,
    /// so every run and `destroy` from this state directory agree on it.
    pub fn lab_id(&self) -> Result<String, LedgerError> {
        if let Some(id) = self.data.lock().expect("ledger lock").lab_id.clone() {
            return Ok(id);
        }
        self.update(|d| {
            d.lab_id
                .get_or_insert_with(|| format!("{:016x}", rand::random::<u64>()))
                .clone()
        })
    }

    /// Records that a resource is about to be created.
    pub fn intend(&self, kind: ResourceKind, name: &str, data: Value) -> Result<(), LedgerError> {
        self.update(|d| {
            if let Some(r) = d
                .resources
                .iter_mut()
                .find(|r| r.kind == kind && r.name == name)
            {
                if r.state == ResourceState::Pending {
                    r.data = data;
                }
                return;
            }
            d.resources.push(Resource {
                kind,
                name: name.into(),
                id: None,
                state: ResourceState::Pending,
                data,
                recorded_at: now_secs(),
            });
        })
    }

    /// Records that a resource exists, with its provider id.
    pub fn created(
        &self,
        kind: ResourceKind,
        name: &str,
        id: &str,
        data: Value,
    ) -> Result<(), LedgerError> {
        self.update(|d| {
            let entry = Resource {
                kind,
                name: name.into(),
                id: Some(id.into()),
                state: ResourceState::Created,
                data,
                recorded_at: now_secs(),
            };
            match d
                .resources
                .iter_mut()
                .find(|r| r.kind == kind && r.name == name)
            {
                Some(r) => *r = entry,
                None => d.resources.push(entry),
            }
        })
    }

    /// Drops a resource (by name) that no longer exists.
    pub fn forget(&self, kind: ResourceKind, name: &str) -> Result<(), LedgerError> {
        self.update(|d| d.resources.retain(|r| !(r.kind == kind && r.name == name)))
    }

    pub fn resources(&self, kind: ResourceKind) -> Vec<Resource> {
        let data = self.data.lock().expect("ledger lock");
        data.resources
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }

    /// The lab's secret `name`, generated on first use and kept in the 0600
    /// secrets file.
    pub fn secret(&self, name: &str) -> Result<String, LedgerError> {
        let mut secrets = self.secrets.lock().expect("secrets lock");
        if let Some(v) = secrets.get(name) {
            return Ok(v.clone());
        }
        let value = secrets::generate_password();
        secrets.insert(name.to_string(), value.clone());
        self.redactor.add(&value);
        let text = serde_json::to_string_pretty(&*secrets).expect("secrets serialize");
        write_atomic(&self.secrets_path(), text.as_bytes(), 0o600)?;
        Ok(value)
    }

    /// Reads or writes a private file in the lab directory (key pairs).
    pub fn write_private(&self, file: &str, contents: &[u8]) -> Result<PathBuf, LedgerError> {
        let path = self.dir.join(file);
        write_atomic(&path, contents, 0o600)?;
        Ok(path)
    }
}

/// Takes the lock file of the private directory `dir` (made if missing),
/// held until the file is dropped or the process dies, and writes this
/// process's id into it. `Ok(Err(holder))`: another process holds it (what
/// it wrote, e.g. `pid 42`).
pub fn take_lock(dir: &Path) -> Result<Result<File, String>, LedgerError> {
    private_dir(dir)?;
    let lock_path = dir.join("lock");
    let mut lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| LedgerError::Io(lock_path.clone(), e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&lock_path).unwrap_or_default();
            return Ok(Err(holder.trim().to_string()));
        }
        Err(fs::TryLockError::Error(e)) => return Err(LedgerError::Io(lock_path, e)),
    }
    let _ = lock.set_len(0);
    let _ = writeln!(lock, "pid {}", std::process::id());
    Ok(Ok(lock))
}

/// Makes `dir` (and any missing parent) as a directory only its owner can
/// enter, and narrows it to that if it exists wider (labs made by older
/// labruns were 0755).
pub fn private_dir(dir: &Path) -> Result<(), LedgerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |e| LedgerError::Io(dir.to_path_buf(), e);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let meta = fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(io(std::io::Error::other(
            "is not a directory (a symbolic link?); remove it",
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes `contents` to `path` so that readers see the old file or the new
/// one, never a mix: a new temp file with a random name, created with its
/// final mode and never through a symbolic link (`O_EXCL|O_NOFOLLOW`),
/// fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), LedgerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u64>()
    ));
    let io = |e| LedgerError::Io(path.to_path_buf(), e);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The JSON document at `path`, or `None` if there is no such file. Takes
/// no lock: labrun's state files are replaced atomically ([`write_atomic`]).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LedgerError> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt(path.to_path_buf(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LedgerError::Io(path.to_path_buf(), e)),
    }
}

/// The secrets of the lab whose directory is `dir`, by name (none if it
/// has no secrets file).
pub fn read_secrets(dir: &Path) -> Result<BTreeMap<String, String>, LedgerError> {
    Ok(read_json(&dir.join("secrets.json"))?.unwrap_or_default())
}

/// Labs that have a ledger under `root`, by name.
pub fn list_labs(root: &Path) -> Vec<String> {
    let mut labs: Vec<String> = fs::read_dir(root.join("labs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("ledger.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    labs.sort();
    labs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_survive_reopen_and_secrets_are_private() {
        let root = tempfile::tempdir().unwrap();
        let r = Redactor::new();
        let pw = {
            let l = Ledger::open(root.path(), "t1", ProviderKind::Local, r.clone()).unwrap();
            l.intend(ResourceKind::Instance, "web", Value::Null)
                .unwrap();
            l.created(
                ResourceKind::Instance,
                "web",
                "i-1",
                serde_json::json!({"ip": "10.0.0.2"}),
            )
            .unwrap();
            l.secret("db").unwrap()
        };
        let l = Ledger::open(root.path(), "t1", ProviderKind::Local, Redactor::new()).unwrap();
        let res = l.resources(ResourceKind::Instance);
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].id.as_deref(), Some("i-1"));
        assert_eq!(l.secret("db").unwrap(), pw);
        let mode = fs::metadata(l.secrets_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ledger_text = fs::read_to_string(l.dir().join("ledger.json")).unwrap();
        assert!(!ledger_text.contains(&pw));
    }

    #[test]
    fn an_unchanged_ledger_is_not_written_again() {
        let root = tempfile::tempdir().unwrap();
        let l = Ledger::open(root.path(), "t4", ProviderKind::Local, Redactor::new()).unwrap();
        let path = l.dir().join("ledger.json");
        assert!(path.exists(), "a new lab's ledger is written at once");
        l.update(|d| d.firewall.insert("h1".into(), "k1".into()))
            .unwrap();
        let written = fs::read_to_string(&path).unwrap();
        assert!(written.contains("\"h1\": \"k1\""), "{written}");
        // No change: no write (the file is not even replaced).
        fs::write(&path, "sentinel").unwrap();
        l.update(|d| d.firewall.insert("h1".into(), "k1".into()))
            .unwrap();
        l.save().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "sentinel");
        // A change is written.
        l.update(|d| d.firewall.clear()).unwrap();
        assert!(!fs::read_to_string(&path).unwrap().contains("firewall"));
    }

    #[test]
    fn lab_id_is_made_once_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let first = {
            let l = Ledger::open(root.path(), "t3", ProviderKind::Aws, Redactor::new()).unwrap();
            assert_eq!(l.snapshot().lab_id, None);
            let id = l.lab_id().unwrap();
            assert_eq!(id.len(), 16);
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert_eq!(l.lab_id().unwrap(), id);
            id
        };
        let l = Ledger::open(root.path(), "t3", ProviderKind::Aws, Redactor::new()).unwrap();
        assert_eq!(l.lab_id().unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        let l2 = Ledger::open(other.path(), "t3", ProviderKind::Aws, Redactor::new()).unwrap();
        assert_ne!(
            l2.lab_id().unwrap(),
            first,
            "another state directory, another lab"
        );
    }

    #[test]
    fn ledgers_without_a_lab_id_still_load() {
        let old = r#"{"lab": "old", "provider": "aws", "created_at": 1, "updated_at": 2,
                      "resources": [], "host_keys": {}}"#;
        let d: LedgerData = serde_json::from_str(old).unwrap();
        assert_eq!(d.lab_id, None);
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let root = tempfile::tempdir().unwrap();
        let _a = Ledger::open(root.path(), "t2", ProviderKind::Local, Redactor::new()).unwrap();
        match Ledger::open(root.path(), "t2", ProviderKind::Local, Redactor::new()) {
            Err(LedgerError::Locked { lab, .. }) => assert_eq!(lab, "t2"),
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }

    #[test]
    fn bad_lab_names_are_rejected() {
        assert!(validate_lab_name("../x").is_err());
        assert!(validate_lab_name("").is_err());
        assert!(validate_lab_name("mysql_client_server").is_ok());
    }
}
