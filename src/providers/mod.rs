//! Providers speak the lab's domain (instances, security groups, key pairs),
//! never an SDK's: the `ec2` and `sg` bindings call only [`Provider`], and
//! the local (Docker) and AWS implementations sit side by side behind it.

pub mod aws;
pub mod error;
pub mod kind;
pub mod local;
pub mod types;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

pub use error::{ProviderError, ProviderResult};
pub use kind::ProviderKind;
pub use types::*;

use crate::ledger::Ledger;
use crate::report::Reporter;

/// Everything a provider needs to know about the lab it works for.
#[derive(Clone)]
pub struct LabScope {
    pub lab: String,
    pub ledger: Arc<Ledger>,
    pub reporter: Arc<Reporter>,
    /// The lab's SSH public key (OpenSSH one-line format).
    pub public_key: String,
    /// Set by Ctrl-C: a provider call in flight, or a wait, stops at once.
    pub cancel: Arc<AtomicBool>,
}

impl LabScope {
    /// Runs `work` until it ends or Ctrl-C is pressed. On Ctrl-C `work` is
    /// dropped, which abandons its in-flight request and any wait; the ledger
    /// holds what it recorded before, as after a crash.
    pub async fn interruptible<T>(
        &self,
        work: impl Future<Output = ProviderResult<T>>,
    ) -> ProviderResult<T> {
        let cancelled = async {
            while !self.cancel.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            out = work => out,
            () = cancelled => Err(ProviderError::Interrupted),
        }
    }
}

/// Options only some providers use (AWS region, profile, endpoint).
#[derive(Clone, Debug, Default)]
pub struct ProviderOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// Overrides operator address detection (CIDR).
    pub operator_cidr: Option<String>,
    /// The VPC for the lab's groups and instances (AWS; default: the
    /// region's default VPC).
    pub vpc: Option<String>,
    /// The subnet for the lab's instances (AWS; default: a default subnet).
    pub subnet: Option<String>,
}

/// A place where a lab's instances run. Every method is scoped to one lab;
/// every mutating method is idempotent and says whether it changed anything.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Where labrun's own traffic to instances comes from, as a CIDR: what
    /// an SSH rule for the operator must allow.
    async fn operator_cidr(&self) -> ProviderResult<String>;

    /// The security group `name` of this lab, created if missing.
    async fn ensure_group(
        &self,
        name: &str,
        description: &str,
    ) -> ProviderResult<(SecurityGroup, bool)>;

    /// The lab's security groups, with their current rules.
    async fn groups(&self) -> ProviderResult<Vec<SecurityGroup>>;

    /// Adds an ingress rule; `false` if it was already there.
    async fn authorize(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool>;

    /// Removes an ingress rule; `false` if it was not there.
    async fn revoke(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool>;

    /// Launches the instance `spec.name` of this lab, or returns the running
    /// one of that name (`false`: nothing changed).
    async fn launch(&self, spec: &InstanceSpec) -> ProviderResult<(Instance, bool)>;

    /// The lab's instances (not terminated).
    async fn instances(&self) -> ProviderResult<Vec<Instance>>;

    /// Terminates an instance; `false` if it was already gone.
    async fn terminate(&self, id: &str) -> ProviderResult<bool>;

    /// Removes everything of the lab, found through the ledger and through
    /// labels/tags; what the provider no longer has is not an error.
    /// Returns one line per removed resource.
    async fn destroy(&self) -> ProviderResult<Vec<String>>;

    /// Images this provider can launch, for errors and `labrun images`.
    async fn images(&self) -> ProviderResult<Vec<ImageInfo>>;
}
