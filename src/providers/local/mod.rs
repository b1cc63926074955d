//! The local provider: EC2 on one machine, with Docker Engine.
//!
//! An instance is a container from a labrun base image booting systemd as
//! PID 1 (sshd, login user `ubuntu`), CPU and memory limited by its
//! instance type, without the capabilities a server does not need. Its
//! network namespace belongs to a small holder container on the lab's own
//! bridge network (its "VPC"), with a fixed private IP and the SSH port
//! published on 127.0.0.1 only. Security groups live in the ledger and are
//! enforced by nftables in that namespace, which outlives restarts of the
//! instance (see `holder`). Everything is labelled `labrun.lab=<lab>` and
//! recorded in the ledger before and after it is created.

pub mod apt_cache;
pub mod cgroups;
pub mod docker;
pub mod firewall;
pub mod groups;
pub mod holder;
pub mod host;
pub mod image;
pub mod inotify;
pub mod instances;
pub mod network;

mod enforce;
mod launch;
mod teardown;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::SystemInfo;

use self::cgroups::HostCgroups;
use self::instances::Container;
use self::network::LabNetwork;
use super::{
    ImageInfo, Instance, InstanceSpec, LabScope, Provider, ProviderOptions, ProviderResult, Rule,
    SecurityGroup, instance_size, parse_cidr,
};

pub struct LocalProvider {
    docker: Docker,
    scope: LabScope,
    operator_cidr: Option<String>,
    firewall: firewall::Mode,
    /// What the engine says of its host, asked on first need (a converged
    /// run never needs it).
    engine: tokio::sync::OnceCell<SystemInfo>,
    cgroups: tokio::sync::OnceCell<HostCgroups>,
    network: tokio::sync::OnceCell<LabNetwork>,
    /// Held while an instance's IP is chosen and its container created.
    launch_lock: tokio::sync::Mutex<()>,
    /// What was last applied per holder: id → [`table_key`] of its start
    /// time and ruleset, kept in the ledger so that a later run does not
    /// apply an unchanged table again. Also serialises applies.
    applied: tokio::sync::Mutex<BTreeMap<String, String>>,
    /// The shared package cache (see `apt_cache`), and whether it was
    /// brought up for this lab's network in this process.
    apt_cache: apt_cache::Settings,
    apt_cache_up: tokio::sync::OnceCell<bool>,
}

impl LocalProvider {
    pub async fn connect(scope: LabScope, options: &ProviderOptions) -> ProviderResult<Self> {
        let operator_cidr = match &options.operator_cidr {
            Some(c) => Some(parse_cidr(c)?),
            None => None,
        };
        let firewall = firewall::Mode::detect()?;
        let apt_cache = apt_cache::Settings::from_env()?;
        let docker = docker::connect().await?;
        let applied = scope.ledger.snapshot().firewall;
        Ok(LocalProvider {
            docker,
            scope,
            operator_cidr,
            firewall,
            engine: tokio::sync::OnceCell::new(),
            cgroups: tokio::sync::OnceCell::new(),
            network: tokio::sync::OnceCell::new(),
            launch_lock: tokio::sync::Mutex::new(()),
            applied: tokio::sync::Mutex::new(applied),
            apt_cache,
            apt_cache_up: tokio::sync::OnceCell::new(),
        })
    }

    /// What new instances on `net` are told about the package cache, when
    /// it is on (whether it runs yet or not: they fall back while it does
    /// not).
    fn apt_cache_endpoint(&self, net: &LabNetwork) -> Option<apt_cache::client::Endpoint> {
        self.apt_cache.enabled.then(|| apt_cache::endpoint(net))
    }

    /// Brings the package cache up on the lab's network, once per process
    /// (on first use this builds its image). A cache that cannot come up
    /// is a warning: instances then fetch from the mirror directly.
    async fn ensure_apt_cache(&self, net: &LabNetwork) {
        if !self.apt_cache.enabled {
            return;
        }
        self.apt_cache_up
            .get_or_init(|| async {
                match apt_cache::ensure(&self.docker, &self.scope.reporter, &self.apt_cache, net)
                    .await
                {
                    Ok(()) => true,
                    Err(e) => {
                        self.scope.reporter.warn(&format!(
                            "the package cache {} is not available ({e}); apt on this lab's \
                             instances fetches from the mirror directly (LABRUN_APT_CACHE=off \
                             turns the cache off)",
                            self.apt_cache.name
                        ));
                        false
                    }
                }
            })
            .await;
    }

    fn lab(&self) -> &str {
        &self.scope.lab
    }

    fn network_name(&self) -> String {
        network::network_name(self.lab())
    }

    async fn engine(&self) -> &SystemInfo {
        self.engine
            .get_or_init(|| async { self.docker.info().await.unwrap_or_default() })
            .await
    }

    async fn host_cpus(&self) -> i64 {
        self.engine().await.ncpu.unwrap_or(1)
    }

    /// The lab's network, created on first need.
    async fn network(&self) -> ProviderResult<&LabNetwork> {
        self.network
            .get_or_try_init(|| network::ensure(&self.docker, &self.scope.ledger, self.lab()))
            .await
    }

    /// The engine host's cgroup layout, found out on first need
    /// (`probe_image` runs the probe where it must be asked of a container).
    async fn host_cgroups(&self, probe_image: &str) -> ProviderResult<HostCgroups> {
        let engine = self.engine().await;
        self.cgroups
            .get_or_try_init(|| {
                HostCgroups::detect(
                    &self.docker,
                    engine,
                    docker::engine_is_local(),
                    probe_image,
                    self.lab(),
                )
            })
            .await
            .copied()
    }

    async fn containers(&self) -> ProviderResult<Vec<Container>> {
        instances::list(&self.docker, self.lab(), &self.network_name()).await
    }
}

#[async_trait]
impl Provider for LocalProvider {
    async fn operator_cidr(&self) -> ProviderResult<String> {
        if let Some(c) = &self.operator_cidr {
            return Ok(c.clone());
        }
        // Published ports reach instances from the engine's proxy, and the
        // host reaches them directly, both from the network's gateway.
        Ok(format!("{}/32", self.network().await?.gateway))
    }

    async fn ensure_group(
        &self,
        name: &str,
        description: &str,
    ) -> ProviderResult<(SecurityGroup, bool)> {
        groups::ensure(&self.scope.ledger, name, description)
    }

    async fn groups(&self) -> ProviderResult<Vec<SecurityGroup>> {
        Ok(groups::list(&self.scope.ledger))
    }

    async fn authorize(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool> {
        self.change_rule(group_id, rule, true).await
    }

    async fn revoke(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool> {
        self.change_rule(group_id, rule, false).await
    }

    async fn launch(&self, spec: &InstanceSpec) -> ProviderResult<(Instance, bool)> {
        instance_size(&spec.instance_type)?;
        image::recipe(&spec.image)?;
        for g in &spec.security_groups {
            groups::find(&self.scope.ledger, g)?;
        }
        // The package cache comes up (on first use: is built) while the
        // instance is created or resumed, once its network is known.
        let (net_tx, net_rx) = tokio::sync::oneshot::channel();
        let cache = async {
            if let Ok(net) = net_rx.await {
                self.ensure_apt_cache(&net).await;
            }
        };
        let (_, launched) = tokio::join!(cache, self.launch_or_resume(spec, net_tx));
        launched
    }

    async fn instances(&self) -> ProviderResult<Vec<Instance>> {
        let all = self.containers().await?;
        self.enforce(&all).await?;
        for c in &all {
            self.record(c)?;
        }
        Ok(all.into_iter().map(|c| c.instance).collect())
    }

    async fn terminate(&self, id: &str) -> ProviderResult<bool> {
        self.terminate_instance(id).await
    }

    async fn destroy(&self) -> ProviderResult<Vec<String>> {
        self.destroy_lab().await
    }

    async fn images(&self) -> ProviderResult<Vec<ImageInfo>> {
        image::list(&self.docker).await
    }
}

/// Whether `launch` knows this image and instance type, asking nothing of
/// the engine: a playbook checks its parameters before it creates anything.
pub fn check_spec(image: &str, instance_type: &str) -> ProviderResult<()> {
    image::recipe(image)?;
    instance_size(instance_type)?;
    Ok(())
}

/// The instances of `lab` as the engine has them now, without the lab's
/// ledger (for `labrun status`, which takes no lock). One engine
/// connection serves every lab a process looks at.
pub async fn observe(lab: &str) -> ProviderResult<Vec<Instance>> {
    static ENGINE: tokio::sync::OnceCell<Docker> = tokio::sync::OnceCell::const_new();
    let docker = ENGINE.get_or_try_init(docker::connect).await?;
    Ok(instances::list(docker, lab, &network::network_name(lab))
        .await?
        .into_iter()
        .map(|c| c.instance)
        .collect())
}
