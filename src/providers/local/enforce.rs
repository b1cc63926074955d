//! Security groups made real: every holder's nftables table kept equal to
//! its instance's groups, applied only when it changed, and an instance
//! whose table cannot be applied stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use bollard::query_parameters::{RestartContainerOptions, StopContainerOptions};

use super::docker::{self, api};
use super::instances::{self, Container};
use super::network::{self};
use super::{LocalProvider, firewall, groups};
use crate::providers::{ProviderResult, Rule, SecurityGroup, Source};

/// Seconds systemd gets to shut an instance down (`docker stop`).
pub(super) const STOP_SECONDS: i32 = 10;

impl LocalProvider {
    /// Makes every running holder's table match its instance's groups now
    /// (only those whose ruleset or start time changed since the last
    /// apply), then moves instances stranded by a restarted holder into its
    /// new namespace. An instance whose table cannot be applied is stopped,
    /// and the error says so.
    pub(super) async fn enforce(&self, containers: &[Container]) -> ProviderResult<()> {
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
    pub(super) async fn stop(&self, c: &Container) -> ProviderResult<()> {
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

    pub(super) async fn change_rule(
        &self,
        group_id: &str,
        rule: &Rule,
        add: bool,
    ) -> ProviderResult<bool> {
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
