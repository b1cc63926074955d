//! Which provider a lab runs on, and everything outside `providers/` that
//! differs by provider: the default image, how to connect, what to tell the
//! user after a run, how `status` sees instances without the lab's lock.
//! A new provider is a new variant here and a directory beside `local/`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Instance, LabScope, Provider, ProviderOptions, ProviderResult};
use crate::ledger::LedgerData;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Docker containers on this machine, with enforced security groups
    #[default]
    Local,
    /// Amazon EC2
    Aws,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Aws => "aws",
        }
    }

    /// The image `ec2::launch` uses when a spec names none.
    pub fn default_image(self) -> &'static str {
        match self {
            ProviderKind::Local => "debian-12",
            ProviderKind::Aws => "ubuntu-22.04",
        }
    }

    /// Checks an instance's image and type as this provider's launch
    /// would, without connecting to it (`ec2::check_launch`).
    pub fn check_spec(self, image: &str, instance_type: &str) -> ProviderResult<()> {
        match self {
            ProviderKind::Local => super::local::check_spec(image, instance_type),
            ProviderKind::Aws => super::aws::check_spec(image, instance_type),
        }
    }

    /// Connects to this provider for `scope`.
    pub async fn connect(
        self,
        scope: LabScope,
        options: &ProviderOptions,
    ) -> ProviderResult<Arc<dyn Provider>> {
        Ok(match self {
            ProviderKind::Local => {
                Arc::new(super::local::LocalProvider::connect(scope, options).await?)
            }
            ProviderKind::Aws => Arc::new(super::aws::AwsProvider::connect(scope, options).await?),
        })
    }

    /// What to tell the user once a run of `lab` is over, if anything (on
    /// AWS: instances cost money until destroyed).
    pub fn closing_notice(
        self,
        lab: &str,
        data: &LedgerData,
        options: &ProviderOptions,
    ) -> Option<String> {
        match self {
            ProviderKind::Local => None,
            ProviderKind::Aws => super::aws::running_notice(lab, data, options),
        }
    }

    /// The lab's instances as the provider has them now, read without the
    /// lab's ledger or lock (for `labrun status`), where that is cheap:
    /// `None` for providers where the ledger is the view.
    pub async fn observe(self, lab: &str) -> Option<ProviderResult<Vec<Instance>>> {
        match self {
            ProviderKind::Local => Some(super::local::observe(lab).await),
            ProviderKind::Aws => None,
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_as_each_provider_launches() {
        use ProviderKind::*;
        assert!(Local.check_spec("debian-12", "t2.micro").is_ok());
        assert!(Aws.check_spec("ami-0123456789abcdef0", "m7i.large").is_ok());
        for (kind, image, t, expected) in [
            (Local, "../../etc", "t2.micro", "unknown image '../../etc'"),
            (Local, "debian-12", "x;y", "unknown instance_type 'x;y'"),
            (
                Aws,
                "$(reboot)",
                "t2.micro",
                "unknown image '$(reboot)' on aws",
            ),
            (
                Aws,
                "ubuntu-22.04",
                "t2;micro",
                "instance_type 't2;micro' is not",
            ),
        ] {
            let e = kind.check_spec(image, t).unwrap_err().to_string();
            assert!(e.contains(expected), "{kind} {image} {t}: {e}");
        }
    }
}
