//! One connection per host and user, shared by every operation of a run and
//! by `parallel` closures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::session::{ConnectOptions, HostKeys};
use super::{Session, SshResult, Target};

type Slot = Arc<tokio::sync::Mutex<Option<Session>>>;

/// The run's SSH sessions, by `user@host:port`.
#[derive(Default)]
pub struct Pool {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session for `target`: the open one if there is one (its host key
    /// checked against `target`'s pin too), else a new connection (callers
    /// asking for the same host at the same time wait for that one).
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
            .entry(target.address())
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
