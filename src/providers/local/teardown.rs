//! Removing instances and whole labs: containers (instances before the
//! holders whose namespaces they use), networks, groups, cgroup parents.

use std::collections::BTreeSet;

use bollard::query_parameters::{ListNetworksOptions, RemoveContainerOptions};

use super::cgroups::HostCgroups;
use super::docker::{self, api};
use super::instances::{self, Container};
use super::{LocalProvider, apt_cache, groups, holder};
use crate::ledger::{ResourceKind, ResourceState};
use crate::providers::ProviderResult;

/// How `destroy` waits out creates a killed run left in flight.
const LATE_CREATE_ROUNDS: usize = 10;
const LATE_CREATE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

impl LocalProvider {
    /// Terminates instance `id` (and its holder); `false` if it was already gone.
    pub(super) async fn terminate_instance(&self, id: &str) -> ProviderResult<bool> {
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

    /// Removes everything of the lab: containers (instances before their
    /// holders, and what a killed launch left in flight), networks, groups.
    pub(super) async fn destroy_lab(&self) -> ProviderResult<Vec<String>> {
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

    /// Removes a container whatever its state; whether it existed.
    pub(super) async fn remove_container(&self, id: &str) -> ProviderResult<bool> {
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
    pub(super) async fn remove_instance(&self, name: &str) -> ProviderResult<bool> {
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
    pub(super) async fn forget_cgroup(&self, container: &str) {
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
    pub(super) async fn remove_containers(
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
}
