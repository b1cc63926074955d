//! The lab's SSH key pair: ed25519, generated once per lab and kept in the
//! lab directory (`id_ed25519`, 0600, OpenSSH format, so `ssh -i` works).

use std::path::PathBuf;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};

use crate::error::LedgerError;
use crate::ledger::Ledger;

pub const PRIVATE_FILE: &str = "id_ed25519";
pub const PUBLIC_FILE: &str = "id_ed25519.pub";

/// The lab's key pair on disk.
#[derive(Clone, Debug)]
pub struct LabKey {
    pub private_path: PathBuf,
    /// OpenSSH one-line public key, with the lab name as comment.
    pub public_line: String,
}

/// Loads the lab's key pair, generating it the first time. The private
/// key is the lab's identity on its hosts: an existing one is never
/// replaced, and a missing or stale `.pub` is written again from it.
pub fn ensure(ledger: &Ledger, lab: &str) -> Result<LabKey, LedgerError> {
    let private_path = ledger.dir().join(PRIVATE_FILE);
    let public_path = ledger.dir().join(PUBLIC_FILE);
    let key_error = |path: &PathBuf, e: &dyn std::fmt::Display| {
        LedgerError::Io(path.clone(), std::io::Error::other(e.to_string()))
    };
    let key = match std::fs::read_to_string(&private_path) {
        Ok(pem) => PrivateKey::from_openssh(&pem).map_err(|e| {
            key_error(
                &private_path,
                &format!(
                    "not a readable OpenSSH private key ({e}); move it away to make a new one"
                ),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            key.set_comment(format!("labrun-{lab}"));
            let pem = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| key_error(&private_path, &e))?;
            ledger.write_private(PRIVATE_FILE, pem.as_bytes())?;
            key
        }
        Err(e) => return Err(LedgerError::Io(private_path, e)),
    };
    let public_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| key_error(&public_path, &e))?;
    let on_disk = std::fs::read_to_string(&public_path).unwrap_or_default();
    if on_disk.trim() != public_line {
        crate::ledger::write_atomic(&public_path, format!("{public_line}\n").as_bytes(), 0o644)?;
    }
    Ok(LabKey {
        private_path,
        public_line,
    })
}

/// SHA256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l` shows it.
pub fn fingerprint(public_line: &str) -> Option<String> {
    PublicKey::from_openssh(public_line)
        .ok()
        .map(|k| k.fingerprint(Default::default()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;

    #[test]
    fn key_is_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(
            root.path(),
            "k",
            crate::providers::ProviderKind::Local,
            Redactor::new(),
        )
        .unwrap();
        let a = ensure(&ledger, "k").unwrap();
        let b = ensure(&ledger, "k").unwrap();
        assert_eq!(a.public_line, b.public_line);
        assert!(a.public_line.starts_with("ssh-ed25519 "));
        let mode = std::fs::metadata(&a.private_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(fingerprint(&a.public_line).unwrap().starts_with("SHA256:"));

        // A lost .pub is made again from the private key, never a new pair.
        let private = std::fs::read(&a.private_path).unwrap();
        std::fs::remove_file(ledger.dir().join(PUBLIC_FILE)).unwrap();
        let c = ensure(&ledger, "k").unwrap();
        assert_eq!(c.public_line, a.public_line);
        assert_eq!(std::fs::read(&a.private_path).unwrap(), private);
        let pub_text = std::fs::read_to_string(ledger.dir().join(PUBLIC_FILE)).unwrap();
        assert_eq!(pub_text.trim(), a.public_line);
    }
}
