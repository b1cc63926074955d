//! Launching an instance: its IP, its network holder, its container, its
//! record in the ledger; or the existing instance of that name, resumed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use bollard::query_parameters::CreateContainerOptions;
use serde_json::json;

use super::docker::{self, api};
use super::instances::{self, Container};
use super::network::LabNetwork;
use super::{LocalProvider, apt_cache, check_spec, holder, image, inotify};
use crate::ledger::ResourceKind;
use crate::providers::{Instance, InstanceSpec, ProviderError, ProviderResult, instance_size};

impl LocalProvider {
    /// Records an instance as it is now (ports change on restart).
    pub(super) fn record(&self, c: &Container) -> ProviderResult<()> {
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
    pub(super) fn free_ip(
        &self,
        net: &LabNetwork,
        containers: &[Container],
    ) -> ProviderResult<Ipv4Addr> {
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
    pub(super) async fn create_holder(
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

    pub(super) async fn start(&self, id: &str, what: String) -> ProviderResult<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(e) if docker::status(&e) == Some(304) => Ok(()),
            Err(e) => Err(api(what, e)),
        }
    }

    /// The existing instance of a launch, brought up in order: its holder,
    /// the holder's table, then the instance itself; recorded.
    pub(super) async fn resume(
        &self,
        c: Container,
        spec: &InstanceSpec,
    ) -> ProviderResult<(Instance, bool)> {
        if !c.running() {
            inotify::check_host(&spec.name).await?;
        }
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
        self.booting(&current).await?;
        Ok((current.instance, changed))
    }

    /// [`Provider::launch`] without the package cache: the existing
    /// instance resumed, or a new one. The lab's network goes to `net_tx`
    /// as soon as it is known.
    pub(super) async fn launch_or_resume(
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
        inotify::check_host(&spec.name).await?;
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
                // A create the engine did not answer may still happen: the
                // record stays pending, so destroy and a re-run find it.
                if docker::refused(&e) {
                    forget()?;
                }
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
                let e = api(format!("creating instance {}", spec.name), e);
                if docker::refused(&e) {
                    self.remove_container(&hname).await?;
                    forget()?;
                }
                return Err(e);
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
        self.booting(&now).await?;
        Ok((now.instance, true))
    }

    /// An instance that is not running right after its start stopped by
    /// itself: its init failed. Said now, with its last output, rather than
    /// after minutes of waiting for an sshd that will never answer. (It
    /// stays recorded and stopped: a later run starts it again.)
    async fn booting(&self, c: &Container) -> ProviderResult<()> {
        if c.running() {
            return Ok(());
        }
        let code = match self.docker.inspect_container(&c.id, None).await {
            Ok(i) => i.state.and_then(|s| s.exit_code),
            Err(_) => None,
        };
        let output = docker::output(&self.docker, &c.id, Some(10)).await;
        let said = if output.is_empty() {
            " and printed nothing (systemd exits so when the host has no inotify \
             instance left for it: see fs.inotify.max_user_instances)"
                .to_string()
        } else {
            format!("; its last output:\n{output}")
        };
        Err(ProviderError::State(format!(
            "instance {} stopped as soon as it started ({}){said}",
            c.instance.name,
            code.map_or_else(|| c.instance.state.clone(), |c| format!("exit {c}"))
        )))
    }
}
