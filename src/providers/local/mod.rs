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
pub mod instances;
pub mod network;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::SystemInfo;
use bollard::query_parameters::{
    CreateContainerOptions, ListNetworksOptions, RemoveContainerOptions, RestartContainerOptions,
    StopContainerOptions,
};
use serde_json::json;

use self::cgroups::HostCgroups;
use self::docker::api;
use self::instances::Container;
use self::network::LabNetwork;
use super::{
    ImageInfo, Instance, InstanceSpec, LabScope, Provider, ProviderError, ProviderOptions,
    ProviderResult, Rule, SecurityGroup, Source, instance_size, parse_cidr,
};
use crate::ledger::{ResourceKind, ResourceState};

/// Seconds systemd gets to shut an instance down (`docker stop`).
const STOP_SECONDS: i32 = 10;

/// How `destroy` waits out creates a killed run left in flight.
const LATE_CREATE_ROUNDS: usize = 10;
const LATE_CREATE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

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

    /// Makes every running holder's table match its instance's groups now
    /// (only those whose ruleset or start time changed since the last
    /// apply), then moves instances stranded by a restarted holder into its
    /// new namespace. An instance whose table cannot be applied is stopped,
    /// and the error says so.
    async fn enforce(&self, containers: &[Container]) -> ProviderResult<()> {
        let groups = groups::list(&self.scope.ledger);
        let mut members: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for c in containers {
            for g in &c.instance.security_groups {
                members.entry(g.clone()).or_default().extend(c.ip());
            }
        }
        let mut applied = self.applied.lock().await;
        let mut work = Vec::new();
        for c in containers {
            let Some(h) = c.holder.as_ref().filter(|h| h.running) else {
                continue;
            };
            let attached: Vec<SecurityGroup> = groups
                .iter()
                .filter(|g| c.instance.security_groups.contains(&g.id))
                .cloned()
                .collect();
            let ruleset = firewall::render(&attached, &members);
            let key = table_key(&h.started_at, &ruleset);
            if applied.get(&h.id) != Some(&key) {
                work.push((c, h, key, ruleset));
            }
        }
        let before = applied.clone();
        let results = futures_util::future::join_all(work.iter().map(|(_, h, _, ruleset)| {
            let target = firewall::Target {
                container_id: &h.id,
                pid: h.pid,
                image: &h.image_ref,
                lab: self.lab(),
            };
            async move { firewall::apply(&self.docker, self.firewall, &target, ruleset).await }
        }))
        .await;
        let mut first_error = None;
        let mut failed = BTreeSet::new();
        for ((c, h, key, _), r) in work.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    applied.insert(h.id.clone(), key);
                }
                Err(e) => {
                    applied.remove(&h.id);
                    failed.insert(c.id.clone());
                    let stopped = self.stop(c).await;
                    let what = match stopped {
                        Ok(()) => format!(
                            "security groups of instance {}; the instance is stopped",
                            c.instance.name
                        ),
                        Err(stop) => format!(
                            "security groups of instance {} (stopping it failed too: {stop})",
                            c.instance.name
                        ),
                    };
                    first_error.get_or_insert(e.context(what));
                }
            }
        }
        // Still under the lock, so concurrent launches restart each once;
        // looked at afresh, as one of them may have done it already.
        for c in containers
            .iter()
            .filter(|c| c.stranded() && !failed.contains(&c.id))
        {
            let now = instances::inspect(
                &self.docker,
                self.lab(),
                &c.instance.name,
                &self.network_name(),
            )
            .await?;
            if !now.is_some_and(|now| now.stranded()) {
                continue;
            }
            self.docker
                .restart_container(
                    &c.id,
                    Some(RestartContainerOptions {
                        t: Some(STOP_SECONDS),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| {
                    api(
                        format!("restarting instance {} into its network", c.instance.name),
                        e,
                    )
                })?;
        }
        if *applied != before {
            let now = applied.clone();
            self.scope.ledger.update(|d| d.firewall = now)?;
        }
        drop(applied);
        first_error.map_or(Ok(()), Err)
    }

    /// Stops an instance and its holder (whatever runs of them).
    async fn stop(&self, c: &Container) -> ProviderResult<()> {
        let options = StopContainerOptions {
            t: Some(STOP_SECONDS),
            ..Default::default()
        };
        let mut ids = vec![c.id.as_str()];
        ids.extend(c.holder.as_ref().map(|h| h.id.as_str()));
        for id in ids {
            match self.docker.stop_container(id, Some(options.clone())).await {
                Ok(()) => {}
                Err(e) if docker::status(&e) == Some(304) || docker::is_not_found(&e) => {}
                Err(e) => return Err(api(format!("stopping instance {}", c.instance.name), e)),
            }
        }
        Ok(())
    }

    /// Records an instance as it is now (ports change on restart).
    fn record(&self, c: &Container) -> ProviderResult<()> {
        let i = &c.instance;
        let data = json!({
            "container": c.name,
            "container_id": c.id,
            "holder": holder::holder_name(self.lab(), &i.name),
            "private_ip": i.private_ip,
            "public_ip": i.public_ip,
            "ssh_port": i.ssh_port,
            "image": i.image,
            "image_ref": c.image_ref,
            "instance_type": i.instance_type,
            "security_groups": i.security_groups,
        });
        let same = self
            .scope
            .ledger
            .resources(ResourceKind::Instance)
            .into_iter()
            .any(|r| r.name == i.name && r.id.as_deref() == Some(&i.id) && r.data == data);
        if !same {
            self.scope
                .ledger
                .created(ResourceKind::Instance, &i.name, &i.id, data)?;
        }
        Ok(())
    }

    /// An address of the lab's network no instance has or is about to get.
    fn free_ip(&self, net: &LabNetwork, containers: &[Container]) -> ProviderResult<Ipv4Addr> {
        let mut used: BTreeSet<Ipv4Addr> = containers.iter().filter_map(|c| c.ip()).collect();
        for r in self.scope.ledger.resources(ResourceKind::Instance) {
            if let Some(ip) = r.data["private_ip"].as_str().and_then(|s| s.parse().ok()) {
                used.insert(ip);
            }
        }
        net.host_addresses()
            .find(|a| !used.contains(a))
            .ok_or_else(|| ProviderError::State(format!("network {} is full", net.name)))
    }

    /// Creates the network holder of instance `name` (a stale one of the
    /// same name, left by a killed launch, is removed first).
    async fn create_holder(
        &self,
        name: &str,
        image_ref: &str,
        net: &LabNetwork,
        ip: Ipv4Addr,
    ) -> ProviderResult<String> {
        let hname = holder::holder_name(self.lab(), name);
        self.remove_container(&hname).await?;
        let body = holder::create_body(&holder::NewHolder {
            lab: self.lab(),
            name,
            image_ref,
            network: &net.name,
            ip,
        });
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(hname.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| api(format!("creating the network of instance {name}"), e))?;
        Ok(hname)
    }

    async fn start(&self, id: &str, what: String) -> ProviderResult<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(e) if docker::status(&e) == Some(304) => Ok(()),
            Err(e) => Err(api(what, e)),
        }
    }

    /// The existing instance of a launch, brought up in order: its holder,
    /// the holder's table, then the instance itself; recorded.
    async fn resume(&self, c: Container, spec: &InstanceSpec) -> ProviderResult<(Instance, bool)> {
        let mut changed = false;
        let i = &c.instance;
        let wanted: BTreeSet<&String> = spec.security_groups.iter().collect();
        let has: BTreeSet<&String> = i.security_groups.iter().collect();
        if i.image != spec.image || i.instance_type != spec.instance_type || wanted != has {
            self.scope.reporter.warn(&format!(
                "instance {} already exists ({} {} groups [{}]); returned as it is \
                 (terminate it to launch it anew)",
                spec.name,
                i.image,
                i.instance_type,
                i.security_groups.join(", ")
            ));
        }
        match &c.holder {
            Some(h) if h.running => {}
            Some(h) => {
                self.start(
                    &h.id,
                    format!("starting the network of instance {}", spec.name),
                )
                .await?;
                changed = true;
            }
            None => {
                // The engine ties the instance to its holder's id: there is
                // no joining a new one. Stopped, as it has no network anyway.
                self.stop(&c).await?;
                return Err(ProviderError::State(format!(
                    "instance {} lost its network: container {} was removed outside labrun, \
                     and the instance cannot be started without it; terminate it (or `labrun \
                     destroy`) and launch it anew",
                    spec.name,
                    holder::holder_name(self.lab(), &spec.name)
                )));
            }
        }
        // A holder started here has a new start time, so its table is
        // applied again; one that kept running keeps the table it has.
        let all = self.containers().await?;
        self.enforce(&all).await?;
        if !c.running() {
            self.start(&c.id, format!("starting instance {}", spec.name))
                .await?;
            changed = true;
        }
        // Looked at again only if something was started (ports change).
        let now = if changed {
            self.containers().await?
        } else {
            all
        };
        let current = now
            .into_iter()
            .find(|x| x.id == c.id)
            .ok_or_else(|| ProviderError::State(format!("instance {} vanished", spec.name)))?;
        self.record(&current)?;
        Ok((current.instance, changed))
    }

    /// Removes a container whatever its state; whether it existed.
    async fn remove_container(&self, id: &str) -> ProviderResult<bool> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if docker::is_not_found(&e) => Ok(false),
            Err(e) => Err(api(format!("removing container {id}"), e)),
        }
    }

    /// Removes an instance container and then its holder; whether the
    /// instance container existed.
    async fn remove_instance(&self, name: &str) -> ProviderResult<bool> {
        let removed = self
            .remove_container(&instances::container_name(self.lab(), name))
            .await?;
        self.remove_container(&holder::holder_name(self.lab(), name))
            .await?;
        self.forget_cgroup(&instances::container_name(self.lab(), name))
            .await;
        Ok(removed)
    }

    /// Removes the parent cgroup of a removed instance container where
    /// labrun can (on the engine's own machine), giving the engine a moment
    /// to remove the container's own cgroup first. Best effort: a leftover
    /// is an empty directory.
    async fn forget_cgroup(&self, container: &str) {
        let Some(cg) =
            HostCgroups::seen_here(self.engine().await).filter(|_| docker::engine_is_local())
        else {
            return;
        };
        for _ in 0..20 {
            if cg.remove_parent(container) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Removes `targets` (id or name, name), instances before their
    /// holders, whose namespaces they use; says what went in `lines`.
    async fn remove_containers(
        &self,
        targets: Vec<(String, String)>,
        instances_removed: &mut BTreeSet<String>,
        lines: &mut Vec<String>,
    ) -> ProviderResult<()> {
        let (first, then): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|(_, name)| name.starts_with("labrun-"));
        for batch in [first, then] {
            let results = futures_util::future::join_all(
                batch.iter().map(|(id, _)| self.remove_container(id)),
            )
            .await;
            for ((_, name), removed) in batch.into_iter().zip(results) {
                if !removed? {
                    continue;
                }
                let instance = name
                    .strip_prefix("labrun-")
                    .and_then(|_| name.rsplit_once('.'));
                if let Some((_, instance)) = instance {
                    lines.push(format!("removed instance {instance} (container {name})"));
                    instances_removed.insert(instance.to_string());
                    self.forget_cgroup(&name).await;
                    continue;
                }
                // A holder goes with its instance, unless that was gone.
                let holder_of = name
                    .strip_prefix("labrunnet-")
                    .and_then(|_| name.rsplit_once('.'))
                    .map(|(_, instance)| instance.to_string());
                if holder_of.is_none_or(|i| !instances_removed.contains(&i)) {
                    lines.push(format!("removed container {name}"));
                }
            }
        }
        Ok(())
    }

    async fn change_rule(&self, group_id: &str, rule: &Rule, add: bool) -> ProviderResult<bool> {
        if let Source::Group(source) = &rule.source {
            groups::find(&self.scope.ledger, source)?;
        }
        let changed = groups::change_rule(&self.scope.ledger, group_id, rule, add)?;
        // An unchanged rule changes no table: launches and `instances()`
        // still check every holder.
        if changed {
            let all = self.containers().await?;
            self.enforce(&all).await?;
        }
        Ok(changed)
    }

    /// [`Provider::launch`] without the package cache: the existing
    /// instance resumed, or a new one. The lab's network goes to `net_tx`
    /// as soon as it is known.
    async fn launch_or_resume(
        &self,
        spec: &InstanceSpec,
        net_tx: tokio::sync::oneshot::Sender<LabNetwork>,
    ) -> ProviderResult<(Instance, bool)> {
        check_spec(&spec.image, &spec.instance_type)?;
        let size = instance_size(&spec.instance_type)?;
        let net_name = self.network_name();
        let cname = instances::container_name(self.lab(), &spec.name);
        if let Some(c) = instances::inspect(&self.docker, self.lab(), &spec.name, &net_name).await?
        {
            let _ = net_tx.send(self.network().await?.clone());
            return self.resume(c, spec).await;
        }
        let image_ref =
            image::ensure(&self.docker, &self.scope.reporter, &spec.image, false).await?;
        // Whether systemd can boot here, before anything is created.
        let cgroups = self
            .host_cgroups(&image_ref)
            .await?
            .for_instance(&cname, &spec.image)?;
        let net = self.network().await?.clone();
        let _ = net_tx.send(net.clone());

        // The lock covers choosing the IP and recording it (free_ip reads
        // the ledger), not the engine's create.
        let ip = {
            let guard = self.launch_lock.lock().await;
            if let Some(c) =
                instances::inspect(&self.docker, self.lab(), &spec.name, &net_name).await?
            {
                drop(guard);
                return self.resume(c, spec).await;
            }
            let ip = self.free_ip(&net, &self.containers().await?)?;
            self.scope.ledger.intend(
                ResourceKind::Instance,
                &spec.name,
                json!({
                    "container": cname,
                    "holder": holder::holder_name(self.lab(), &spec.name),
                    "private_ip": ip.to_string(),
                }),
            )?;
            ip
        };
        let forget = || self.scope.ledger.forget(ResourceKind::Instance, &spec.name);
        let hname = match self.create_holder(&spec.name, &image_ref, &net, ip).await {
            Ok(h) => h,
            Err(e) => {
                forget()?;
                return Err(e);
            }
        };
        let body = instances::create_body(&instances::NewInstance {
            lab: self.lab(),
            name: &spec.name,
            image: &spec.image,
            image_ref: &image_ref,
            instance_type: &spec.instance_type,
            size,
            host_cpus: self.host_cpus().await,
            groups: &spec.security_groups,
            holder: &hname,
            ip,
            cgroups: &cgroups,
            public_key: &self.scope.public_key,
        });
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(cname.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await;
        let id = match created {
            Ok(r) => r.id,
            Err(e) if docker::is_conflict(&e) => {
                match instances::inspect(&self.docker, self.lab(), &spec.name, &net_name).await? {
                    Some(c) => return self.resume(c, spec).await,
                    None => return Err(api(format!("creating instance {}", spec.name), e)),
                }
            }
            Err(e) => {
                self.remove_container(&hname).await?;
                forget()?;
                return Err(api(format!("creating instance {}", spec.name), e));
            }
        };
        if let Some(endpoint) = self.apt_cache_endpoint(&net)
            && let Err(e) = apt_cache::configure_instance(&self.docker, &id, &endpoint).await
        {
            self.scope.reporter.warn(&format!(
                "instance {}: {e}; its apt fetches from the mirror directly",
                spec.name
            ));
        }
        // The holder first (it closes its namespace as it starts), its
        // table, and only then the instance.
        if let Err(e) = self
            .start(
                &hname,
                format!("starting the network of instance {}", spec.name),
            )
            .await
        {
            self.remove_instance(&spec.name).await?;
            forget()?;
            return Err(e);
        }
        let all = self.containers().await?;
        let enforced = self.enforce(&all).await;
        let current = |all: Vec<Container>| {
            all.into_iter()
                .find(|c| c.id == id)
                .ok_or_else(|| ProviderError::State(format!("instance {} vanished", spec.name)))
        };
        if let Err(e) = enforced {
            // Stopped by enforce; recorded, so a later run starts it again.
            self.record(&current(self.containers().await?)?)?;
            return Err(e);
        }
        if let Err(e) = self
            .start(&id, format!("starting instance {}", spec.name))
            .await
        {
            self.remove_instance(&spec.name).await?;
            forget()?;
            return Err(e);
        }
        let now = current(self.containers().await?)?;
        self.record(&now)?;
        Ok((now.instance, true))
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
        let all = self.containers().await?;
        let found = instances::container_prefix(id)
            .and_then(|prefix| all.iter().find(|c| c.id.starts_with(prefix)));
        let Some(c) = found.cloned() else {
            let stale: Vec<String> = self
                .scope
                .ledger
                .resources(ResourceKind::Instance)
                .into_iter()
                .filter(|r| r.id.as_deref() == Some(id))
                .map(|r| r.name)
                .collect();
            for name in stale {
                self.scope.ledger.forget(ResourceKind::Instance, &name)?;
            }
            return Ok(false);
        };
        let removed = self.remove_instance(&c.instance.name).await?;
        self.scope
            .ledger
            .forget(ResourceKind::Instance, &c.instance.name)?;
        if let Some(h) = &c.holder {
            let mut applied = self.applied.lock().await;
            if applied.remove(&h.id).is_some() {
                let now = applied.clone();
                self.scope.ledger.update(|d| d.firewall = now)?;
            }
        }
        let rest: Vec<Container> = all.into_iter().filter(|x| x.id != c.id).collect();
        self.enforce(&rest).await?;
        Ok(removed)
    }

    async fn destroy(&self) -> ProviderResult<Vec<String>> {
        let ledger = &self.scope.ledger;
        let lab = self.lab();
        let mut lines = Vec::new();

        // Containers: labelled ones, and those the ledger names (a run
        // killed between "intend" and "created" knows only the names).
        let mut targets = instances::labelled(&self.docker, lab).await?;
        let records = ledger.resources(ResourceKind::Instance);
        for r in &records {
            for key in ["container", "holder"] {
                if let Some(name) = r.data[key].as_str()
                    && !targets.iter().any(|(_, n)| n == name)
                {
                    targets.push((name.to_string(), name.to_string()));
                }
            }
        }
        let mut instances_removed = BTreeSet::new();
        self.remove_containers(targets, &mut instances_removed, &mut lines)
            .await?;
        // A run killed mid-launch may have left creates in flight at the
        // engine, which finish after it died: look again until the lab has
        // had no container for a moment.
        if records.iter().any(|r| r.state == ResourceState::Pending) {
            let mut quiet = 0;
            for _ in 0..LATE_CREATE_ROUNDS {
                tokio::time::sleep(LATE_CREATE_WAIT).await;
                let late = instances::labelled(&self.docker, lab).await?;
                if late.is_empty() {
                    quiet += 1;
                    if quiet >= 2 {
                        break;
                    }
                    continue;
                }
                quiet = 0;
                self.remove_containers(late, &mut instances_removed, &mut lines)
                    .await?;
            }
        }
        for r in ledger.resources(ResourceKind::Instance) {
            ledger.forget(ResourceKind::Instance, &r.name)?;
        }
        self.applied.lock().await.clear();
        ledger.update(|d| d.firewall.clear())?;

        // Networks: the lab's name, what the ledger has, what is labelled.
        let mut nets: BTreeSet<String> = BTreeSet::from([self.network_name()]);
        nets.extend(
            ledger
                .resources(ResourceKind::Network)
                .into_iter()
                .map(|r| r.name),
        );
        let labelled = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(instances::lab_filter(lab)),
            }))
            .await
            .map_err(|e| api("listing networks", e))?;
        nets.extend(labelled.into_iter().filter_map(|n| n.name));
        for name in nets {
            apt_cache::disconnect_all(&self.docker, &name).await?;
            match self.docker.remove_network(&name).await {
                Ok(()) => lines.push(format!("removed network {name}")),
                Err(e) if docker::is_not_found(&e) => {}
                Err(e) => return Err(api(format!("removing network {name}"), e)),
            }
            ledger.forget(ResourceKind::Network, &name)?;
        }

        // Security groups exist only in the ledger.
        for g in groups::list(ledger) {
            lines.push(format!(
                "removed security group {} ({}, {})",
                g.name,
                g.id,
                g.rules_summary()
            ));
        }
        for r in ledger.resources(ResourceKind::SecurityGroup) {
            ledger.forget(ResourceKind::SecurityGroup, &r.name)?;
        }
        Ok(lines)
    }

    async fn images(&self) -> ProviderResult<Vec<ImageInfo>> {
        image::list(&self.docker).await
    }
}

/// What [`LocalProvider::enforce`] remembers of a holder's table: its
/// start time (a restarted holder has a new, closed namespace) and the
/// ruleset, hashed.
fn table_key(started_at: &str, ruleset: &str) -> String {
    format!(
        "{:016x}",
        network::fnv1a(format!("{started_at}\n{ruleset}").as_bytes())
    )
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
