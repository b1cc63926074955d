//! The local provider: EC2 on one machine, with Docker Engine.
//!
//! An instance is a container from a labrun base image (sshd, login user
//! `ubuntu`), on the lab's own bridge network (its "VPC") with a fixed
//! private IP, CPU and memory limited by its instance type, its SSH port
//! published on 127.0.0.1 only. Security groups live in the ledger and are
//! enforced by nftables in each instance's network namespace. Everything is
//! labelled `labrun.lab=<lab>` and recorded in the ledger before and after
//! it is created.

pub mod docker;
pub mod firewall;
pub mod groups;
pub mod host;
pub mod image;
pub mod instances;
pub mod network;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, ListNetworksOptions, RemoveContainerOptions,
};
use serde_json::json;

use self::docker::api;
use self::instances::Container;
use self::network::LabNetwork;
use super::{
    ImageInfo, Instance, InstanceSpec, LabScope, Provider, ProviderError, ProviderOptions,
    ProviderResult, Rule, SecurityGroup, Source, instance_size, parse_cidr,
};
use crate::ledger::ResourceKind;

pub struct LocalProvider {
    docker: Docker,
    scope: LabScope,
    operator_cidr: Option<String>,
    firewall: firewall::Mode,
    host_cpus: i64,
    network: tokio::sync::OnceCell<LabNetwork>,
    /// Held while an instance's IP is chosen and its container created.
    launch_lock: tokio::sync::Mutex<()>,
    /// The ruleset last applied per container: id → (start time, ruleset).
    /// Also serialises applies.
    applied: tokio::sync::Mutex<HashMap<String, (String, String)>>,
}

impl LocalProvider {
    pub async fn connect(scope: LabScope, options: &ProviderOptions) -> ProviderResult<Self> {
        let operator_cidr = match &options.operator_cidr {
            Some(c) => Some(parse_cidr(c)?),
            None => None,
        };
        let firewall = firewall::Mode::detect()?;
        let docker = docker::connect().await?;
        let host_cpus = docker.info().await.ok().and_then(|i| i.ncpu).unwrap_or(1);
        Ok(LocalProvider {
            docker,
            scope,
            operator_cidr,
            firewall,
            host_cpus,
            network: tokio::sync::OnceCell::new(),
            launch_lock: tokio::sync::Mutex::new(()),
            applied: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    fn lab(&self) -> &str {
        &self.scope.lab
    }

    fn network_name(&self) -> String {
        network::network_name(self.lab())
    }

    /// The lab's network, created on first need.
    async fn network(&self) -> ProviderResult<&LabNetwork> {
        self.network
            .get_or_try_init(|| network::ensure(&self.docker, &self.scope.ledger, self.lab()))
            .await
    }

    async fn containers(&self) -> ProviderResult<Vec<Container>> {
        instances::list(&self.docker, self.lab(), &self.network_name()).await
    }

    /// Makes every running instance's firewall match its groups now. Only
    /// instances whose ruleset or start time changed since the last apply
    /// are touched, so a restarted container (its table is gone) gets it
    /// back.
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
        for c in containers.iter().filter(|c| c.running()) {
            let attached: Vec<SecurityGroup> = groups
                .iter()
                .filter(|g| c.instance.security_groups.contains(&g.id))
                .cloned()
                .collect();
            let ruleset = firewall::render(&attached, &members);
            let key = (c.started_at.clone(), ruleset);
            if applied.get(&c.id) != Some(&key) {
                work.push((c, key));
            }
        }
        let results = futures_util::future::join_all(work.iter().map(|(c, (_, ruleset))| {
            let target = firewall::Target {
                container_id: &c.id,
                pid: c.pid,
                image: &c.image_ref,
                lab: self.lab(),
            };
            async move { firewall::apply(&self.docker, self.firewall, &target, ruleset).await }
        }))
        .await;
        let mut first_error = None;
        for ((c, key), r) in work.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    applied.insert(c.id.clone(), key);
                }
                Err(e) => {
                    applied.remove(&c.id);
                    first_error.get_or_insert(
                        e.context(format!("security groups of instance {}", c.instance.name)),
                    );
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records an instance as it is now (ports change on restart).
    fn record(&self, c: &Container) -> ProviderResult<()> {
        let i = &c.instance;
        let data = json!({
            "container": c.name,
            "container_id": c.id,
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

    /// The existing instance of a launch: started if stopped, its firewall
    /// re-applied, recorded.
    async fn resume(&self, c: Container, spec: &InstanceSpec) -> ProviderResult<(Instance, bool)> {
        let mut changed = false;
        if !c.running() {
            self.docker
                .start_container(&c.id, None)
                .await
                .map_err(|e| api(format!("starting instance {}", spec.name), e))?;
            changed = true;
        }
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
        self.applied.lock().await.remove(&c.id);
        let all = self.containers().await?;
        self.enforce(&all).await?;
        let current = all
            .into_iter()
            .find(|x| x.id == c.id)
            .ok_or_else(|| ProviderError::State(format!("instance {} vanished", spec.name)))?;
        self.record(&current)?;
        Ok((current.instance, changed))
    }

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

    async fn change_rule(&self, group_id: &str, rule: &Rule, add: bool) -> ProviderResult<bool> {
        if let Source::Group(source) = &rule.source {
            groups::find(&self.scope.ledger, source)?;
        }
        let changed = groups::change_rule(&self.scope.ledger, group_id, rule, add)?;
        let all = self.containers().await?;
        self.enforce(&all).await?;
        Ok(changed)
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
        let size = instance_size(&spec.instance_type)?;
        image::recipe(&spec.image)?;
        for g in &spec.security_groups {
            groups::find(&self.scope.ledger, g)?;
        }
        let net_name = self.network_name();
        let cname = instances::container_name(self.lab(), &spec.name);
        if let Some(c) = instances::inspect(&self.docker, &cname, &net_name).await? {
            return self.resume(c, spec).await;
        }
        let image_ref =
            image::ensure(&self.docker, &self.scope.reporter, &spec.image, false).await?;
        let net = self.network().await?.clone();

        // The lock covers choosing the IP and recording it (free_ip reads
        // the ledger), not the engine's create.
        let ip = {
            let guard = self.launch_lock.lock().await;
            if let Some(c) = instances::inspect(&self.docker, &cname, &net_name).await? {
                drop(guard);
                return self.resume(c, spec).await;
            }
            let ip = self.free_ip(&net, &self.containers().await?)?;
            self.scope.ledger.intend(
                ResourceKind::Instance,
                &spec.name,
                json!({ "container": cname, "private_ip": ip.to_string() }),
            )?;
            ip
        };
        let body = instances::create_body(&instances::NewInstance {
            lab: self.lab(),
            name: &spec.name,
            image: &spec.image,
            image_ref: &image_ref,
            instance_type: &spec.instance_type,
            size,
            host_cpus: self.host_cpus,
            groups: &spec.security_groups,
            network: &net.name,
            ip,
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
                match instances::inspect(&self.docker, &cname, &net_name).await? {
                    Some(c) => return self.resume(c, spec).await,
                    None => return Err(api(format!("creating instance {}", spec.name), e)),
                }
            }
            Err(e) => {
                self.scope
                    .ledger
                    .forget(ResourceKind::Instance, &spec.name)?;
                return Err(api(format!("creating instance {}", spec.name), e));
            }
        };
        if let Err(e) = self.docker.start_container(&id, None).await {
            self.remove_container(&id).await?;
            self.scope
                .ledger
                .forget(ResourceKind::Instance, &spec.name)?;
            return Err(api(format!("starting instance {}", spec.name), e));
        }
        let all = self.containers().await?;
        let current = all
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| ProviderError::State(format!("instance {} vanished", spec.name)))?;
        self.record(&current)?;
        self.enforce(&all).await?;
        Ok((current.instance, true))
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
        let removed = self.remove_container(&c.id).await?;
        self.scope
            .ledger
            .forget(ResourceKind::Instance, &c.instance.name)?;
        self.applied.lock().await.remove(&c.id);
        let rest: Vec<Container> = all.into_iter().filter(|x| x.id != c.id).collect();
        self.enforce(&rest).await?;
        Ok(removed)
    }

    async fn destroy(&self) -> ProviderResult<Vec<String>> {
        let ledger = &self.scope.ledger;
        let lab = self.lab();
        let mut lines = Vec::new();

        // Containers: labelled ones, and those the ledger names (a run
        // killed between "intend" and "created" knows only the name).
        let recorded: HashMap<String, String> = ledger
            .resources(ResourceKind::Instance)
            .into_iter()
            .filter_map(|r| Some((r.data["container"].as_str()?.to_string(), r.name)))
            .collect();
        let mut targets = instances::labelled(&self.docker, lab).await?;
        for name in recorded.keys() {
            if !targets.iter().any(|(_, n)| n == name) {
                targets.push((name.clone(), name.clone()));
            }
        }
        let results =
            futures_util::future::join_all(targets.iter().map(|(id, _)| self.remove_container(id)))
                .await;
        for ((_, name), removed) in targets.into_iter().zip(results) {
            if removed? {
                let what = match name.rsplit_once('.') {
                    Some((_, instance)) if name.starts_with("labrun-") => {
                        format!("instance {instance} (container {name})")
                    }
                    _ => format!("container {name}"),
                };
                lines.push(format!("removed {what}"));
            }
        }
        for r in ledger.resources(ResourceKind::Instance) {
            ledger.forget(ResourceKind::Instance, &r.name)?;
        }
        self.applied.lock().await.clear();

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
