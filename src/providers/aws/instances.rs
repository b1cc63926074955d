//! The lab's EC2 instances: launched once per name (with a client token
//! that makes a retried launch idempotent), tagged with the lab's name and
//! id in the launch call itself (so a launch killed right after it is found
//! again by tag), waited on until they run or terminate.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataOptionsRequest, InstanceType, ResourceType,
};
use serde_json::json;

use super::errors::{code, is_not_found};
use super::{AwsProvider, TAG_IMAGE, TAG_NAME, backoff, filter, images, tag_value};
use crate::ledger::{ResourceKind, ResourceState};
use crate::providers::{Instance, InstanceSpec, ProviderError, ProviderResult};

const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];
pub(super) const NOT_TERMINATED: &[&str] =
    &["pending", "running", "stopping", "stopped", "shutting-down"];
const WAIT_RUNNING: Duration = Duration::from_secs(600);
const WAIT_TERMINATED: Duration = Duration::from_secs(600);

/// An instance type's shape (`family.size`); EC2 itself says which exist.
pub(super) fn check_instance_type(instance_type: &str) -> ProviderResult<()> {
    let valid = instance_type.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && instance_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    });
    if valid {
        Ok(())
    } else {
        Err(ProviderError::Invalid(format!(
            "instance_type '{instance_type}' is not an EC2 instance type (like t2.micro or t3.small)"
        )))
    }
}

impl AwsProvider {
    pub(super) async fn launch_instance(
        &self,
        spec: &InstanceSpec,
    ) -> ProviderResult<(Instance, bool)> {
        let name = spec.name.as_str();
        let existing = self.describe_lab_instances(LIVE_STATES).await?;
        if let Some(i) = existing
            .iter()
            .find(|i| tag_value(i.tags(), TAG_NAME) == Some(name))
        {
            let inst = self.to_instance(i);
            self.record_created(
                ResourceKind::Instance,
                name,
                &inst.id,
                json!({"image": inst.image}),
            )?;
            return match inst.state.as_str() {
                "running" => Ok((inst, false)),
                "pending" => Ok((self.wait_running(&inst.id, name).await?, false)),
                _ => Ok((self.start_stopped(&inst).await?, true)),
            };
        }
        check_instance_type(&spec.instance_type)?;
        let (ami, network, key) = tokio::try_join!(
            self.resolve_image(&spec.image),
            self.network(),
            self.key_pair()
        )?;
        let mut subnets = network.subnets.iter().peekable();
        while let Some(subnet) = subnets.next() {
            let token = self.client_token(name, subnet);
            let data = json!({
                "client_token": token,
                "image": spec.image,
                "ami": ami,
                "instance_type": spec.instance_type,
                "subnet": subnet,
            });
            self.scope
                .ledger
                .intend(ResourceKind::Instance, name, data.clone())?;
            let result = self
                .ec2
                .run_instances()
                .image_id(&ami)
                .instance_type(InstanceType::from(spec.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .key_name(key)
                .subnet_id(subnet)
                .set_security_group_ids(
                    (!spec.security_groups.is_empty()).then(|| spec.security_groups.clone()),
                )
                .client_token(&token)
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(HttpTokensState::Required)
                        .build(),
                )
                .tag_specifications(self.tags(
                    ResourceType::Instance,
                    name,
                    &[(TAG_IMAGE, &spec.image)],
                ))
                .tag_specifications(self.tags(ResourceType::Volume, name, &[]))
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                // This zone cannot run the type (now): the next one may.
                Err(e)
                    if matches!(
                        code(&e),
                        Some("Unsupported" | "InsufficientInstanceCapacity")
                    ) && subnets.peek().is_some() =>
                {
                    self.scope.ledger.forget(ResourceKind::Instance, name)?;
                    self.progress(&format!(
                        "{subnet} cannot run {} ({}); trying {}",
                        spec.instance_type,
                        code(&e).unwrap_or_default(),
                        subnets.peek().map_or("", |s| s.as_str())
                    ));
                    continue;
                }
                Err(e) => return Err(self.api(format!("launching instance '{name}'"), e)),
            };
            let id = out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .ok_or_else(|| {
                    ProviderError::State(format!("launching instance '{name}': EC2 returned no id"))
                })?
                .to_string();
            self.scope
                .ledger
                .created(ResourceKind::Instance, name, &id, data)?;
            self.progress(&format!("launched {name} ({id}), waiting until it runs"));
            let inst = self.wait_running(&id, name).await?;
            return Ok((inst, true));
        }
        unreachable!("a network has at least one subnet")
    }

    pub(super) async fn lab_instances(&self) -> ProviderResult<Vec<Instance>> {
        let mut list: Vec<_> = self
            .describe_lab_instances(LIVE_STATES)
            .await?
            .iter()
            .map(|i| self.to_instance(i))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    pub(super) async fn terminate_instance(&self, id: &str) -> ProviderResult<bool> {
        let Some(i) = self.describe_instance(id).await? else {
            return Ok(false);
        };
        if !self.owns(i.tags()) {
            return Err(ProviderError::NotFound {
                kind: "instance of this lab",
                id: id.to_string(),
            });
        }
        let inst = self.to_instance(&i);
        if inst.state == "terminated" {
            self.scope
                .ledger
                .forget(ResourceKind::Instance, &inst.name)?;
            return Ok(false);
        }
        self.ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| self.api(format!("terminating instance '{}' ({id})", inst.name), e))?;
        self.wait_terminated(&[id.to_string()]).await?;
        self.scope
            .ledger
            .forget(ResourceKind::Instance, &inst.name)?;
        Ok(true)
    }

    pub(super) fn to_instance(&self, i: &aws_sdk_ec2::types::Instance) -> Instance {
        let tags = i.tags();
        let id = i.instance_id().unwrap_or_default().to_string();
        let name = tag_value(tags, TAG_NAME)
            .or_else(|| tag_value(tags, "Name"))
            .unwrap_or(&id)
            .to_string();
        let image = tag_value(tags, TAG_IMAGE)
            .or(i.image_id())
            .unwrap_or_default()
            .to_string();
        let private_ip = i.private_ip_address().unwrap_or_default().to_string();
        Instance {
            public_ip: i
                .public_ip_address()
                .map(String::from)
                .unwrap_or_else(|| private_ip.clone()),
            private_ip,
            // An emulator's instance has no SSH server anywhere: port 0 says
            // so, and keeps labrun from sending packets to its made-up address.
            ssh_port: if self.emulated { 0 } else { 22 },
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
            user: images::login_user(&image).to_string(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            security_groups: i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(String::from))
                .collect(),
            launched_at: i.launch_time().map(|t| t.secs().max(0) as u64).unwrap_or(0),
            image,
            name,
            id,
        }
    }

    /// The lab's instances in `states` (by its name and id), as EC2 returns
    /// them.
    pub(super) async fn describe_lab_instances(
        &self,
        states: &[&str],
    ) -> ProviderResult<Vec<aws_sdk_ec2::types::Instance>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .ec2
                .describe_instances()
                .set_filters(Some(self.lab_filters()))
                .filters(filter("instance-state-name", states))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.api("listing the lab's instances", e))?;
            for r in page.reservations() {
                out.extend(
                    r.instances()
                        .iter()
                        .filter(|i| self.owns(i.tags()))
                        .cloned(),
                );
            }
            token = page.next_token().map(String::from);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// One instance by id, `None` if EC2 does not know it (any more).
    pub(super) async fn describe_instance(
        &self,
        id: &str,
    ) -> ProviderResult<Option<aws_sdk_ec2::types::Instance>> {
        match self.ec2.describe_instances().instance_ids(id).send().await {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.api(format!("looking up instance {id}"), e)),
        }
    }

    /// Waits until instance `id` runs; fails if it stops or terminates instead.
    async fn wait_running(&self, id: &str, name: &str) -> ProviderResult<Instance> {
        let started = Instant::now();
        for attempt in 0.. {
            // Just after RunInstances, DescribeInstances may not know the id yet.
            if let Some(i) = self.describe_instance(id).await? {
                let inst = self.to_instance(&i);
                match inst.state.as_str() {
                    "running" => return Ok(inst),
                    "pending" => {}
                    other => {
                        let reason = i
                            .state_reason()
                            .and_then(|r| r.message())
                            .unwrap_or("no reason given");
                        return Err(ProviderError::State(format!(
                            "instance '{name}' ({id}) is {other} instead of running: {reason}"
                        )));
                    }
                }
                self.progress(&format!("{name} ({id}) is {}", inst.state));
            }
            if started.elapsed() > WAIT_RUNNING {
                return Err(ProviderError::State(format!(
                    "instance '{name}' ({id}) is not running after {} s; see the EC2 console",
                    WAIT_RUNNING.as_secs()
                )));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        unreachable!("the loop returns")
    }

    /// Waits until every instance in `ids` is terminated (or unknown).
    pub(super) async fn wait_terminated(&self, ids: &[String]) -> ProviderResult<()> {
        let started = Instant::now();
        for attempt in 0.. {
            let mut left = Vec::new();
            for id in ids {
                if let Some(i) = self.describe_instance(id).await?
                    && i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated")
                {
                    left.push(id.as_str());
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            if started.elapsed() > WAIT_TERMINATED {
                return Err(ProviderError::State(format!(
                    "instances {} are not terminated after {} s",
                    left.join(", "),
                    WAIT_TERMINATED.as_secs()
                )));
            }
            self.progress(&format!("waiting for {} to terminate", left.join(", ")));
            tokio::time::sleep(backoff(attempt)).await;
        }
        unreachable!("the loop returns")
    }

    /// The client token of a launch into `subnet` that was recorded but not
    /// confirmed, so that retrying it cannot start a second instance; else a
    /// new one.
    fn client_token(&self, name: &str, subnet: &str) -> String {
        self.scope
            .ledger
            .resources(ResourceKind::Instance)
            .into_iter()
            .find(|r| {
                r.name == name
                    && r.state == ResourceState::Pending
                    && r.data.get("subnet").and_then(|s| s.as_str()) == Some(subnet)
            })
            .and_then(|r| r.data.get("client_token")?.as_str().map(String::from))
            .unwrap_or_else(|| format!("labrun-{:032x}", rand::random::<u128>()))
    }

    async fn start_stopped(&self, inst: &Instance) -> ProviderResult<Instance> {
        let started = Instant::now();
        for attempt in 0.. {
            let state = self.describe_instance(&inst.id).await?.and_then(|i| {
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
            });
            match state.as_deref() {
                Some("stopped") => break,
                Some("stopping") if started.elapsed() < WAIT_RUNNING => {
                    tokio::time::sleep(backoff(attempt)).await
                }
                other => {
                    return Err(ProviderError::State(format!(
                        "instance '{}' ({}) is {} and cannot be started",
                        inst.name,
                        inst.id,
                        other.unwrap_or("gone")
                    )));
                }
            }
        }
        self.ec2
            .start_instances()
            .instance_ids(&inst.id)
            .send()
            .await
            .map_err(|e| {
                self.api(
                    format!("starting instance '{}' ({})", inst.name, inst.id),
                    e,
                )
            })?;
        self.wait_running(&inst.id, &inst.name).await
    }
}
