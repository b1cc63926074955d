//! One connection per host, user and credentials, shared by every
//! operation of a run and by `parallel` closures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::session::{ConnectOptions, HostKeys};
use super::{Auth, Session, SshResult, Target};

type Slot = Arc<tokio::sync::Mutex<Option<Session>>>;

/// What a session is shared under: the address and the credentials it
/// logged in with. A session is only ever handed to a caller that presents
/// the same credentials: a wrong password for a host that is already
/// connected with a key must fail as it would on its own, not borrow the
/// key's session.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    address: String,
    auth: Credentials,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Credentials {
    KeyFile(PathBuf),
    /// The password itself: kept in this process's memory only, as the
    /// `Target` that carries it is.
    Password(String),
}

impl Key {
    fn of(target: &Target) -> Key {
        Key {
            address: target.address(),
            auth: match &target.auth {
                Auth::KeyFile(path) => Credentials::KeyFile(path.clone()),
                Auth::Password(p) => Credentials::Password(p.clone()),
            },
        }
    }
}

/// The run's SSH sessions, by `user@host:port` and credentials.
#[derive(Default)]
pub struct Pool {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session for `target`: the open one for the same address and
    /// credentials if there is one (its host key checked against `target`'s
    /// pin too), else a new connection (callers asking for the same host
    /// with the same credentials at the same time wait for that one).
    pub async fn session(
        &self,
        target: &Target,
        keys: &dyn HostKeys,
        options: &ConnectOptions<'_>,
    ) -> SshResult<Session> {
        let slot = self
            .slots
            .lock()
            .expect("pool lock")
            .entry(Key::of(target))
            .or_default()
            .clone();
        let mut current = slot.lock().await;
        if let Some(s) = current.as_ref().filter(|s| !s.is_closed()) {
            s.check_pin(target, keys)?;
            return Ok(s.clone());
        }
        let session = Session::connect(target, keys, options).await?;
        *current = Some(session.clone());
        Ok(session)
    }

    /// The open sessions.
    pub fn sessions(&self) -> Vec<Session> {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .expect("pool lock")
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|s| s.try_lock().ok().and_then(|g| g.clone()))
            .filter(|s| !s.is_closed())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(auth: Auth) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 2222,
            user: "ubuntu".into(),
            auth,
            pin_id: "127.0.0.1:2222".into(),
            label: "127.0.0.1:2222".into(),
        }
    }

    #[test]
    fn sessions_are_shared_only_under_the_same_credentials() {
        let key = Key::of(&target(Auth::KeyFile("/lab/id_ed25519".into())));
        let same_key = Key::of(&target(Auth::KeyFile("/lab/id_ed25519".into())));
        let good = Key::of(&target(Auth::Password("right".into())));
        let wrong = Key::of(&target(Auth::Password("wrong".into())));
        assert!(key == same_key);
        assert!(key != good);
        assert!(good != wrong);
        let mut other_user = target(Auth::Password("right".into()));
        other_user.user = "admin".into();
        assert!(Key::of(&other_user) != good);
    }
}
