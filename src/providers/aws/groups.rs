//! The lab's security groups: created once per name in the lab's VPC
//! (named `<lab>-<name>` there, as EC2 group names are unique per VPC),
//! their ingress rules added and removed one at a time, deleted once nothing
//! uses them.

use std::time::{Duration, Instant};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::ResourceType;
use serde_json::json;

use super::errors::{code, is_not_found};
use super::{AwsProvider, TAG_NAME, backoff, rules, tag_value};
use crate::ledger::ResourceKind;
use crate::providers::{ProviderError, ProviderResult, Rule, SecurityGroup};

const WAIT_GROUP_DELETE: Duration = Duration::from_secs(300);

impl AwsProvider {
    pub(super) async fn ensure_lab_group(
        &self,
        name: &str,
        description: &str,
    ) -> ProviderResult<(SecurityGroup, bool)> {
        let existing = self.describe_lab_groups().await?;
        if let Some(g) = existing
            .iter()
            .find(|g| tag_value(g.tags(), TAG_NAME) == Some(name))
        {
            let group = self.to_group(g);
            self.record_created(
                ResourceKind::SecurityGroup,
                name,
                &group.id,
                json!({"vpc": g.vpc_id(), "group_name": g.group_name()}),
            )?;
            return Ok((group, false));
        }
        let vpc = self.network().await?.vpc.clone();
        let group_name = self.group_name(name);
        self.scope.ledger.intend(
            ResourceKind::SecurityGroup,
            name,
            json!({"vpc": vpc, "group_name": group_name}),
        )?;
        let out = self
            .ec2
            .create_security_group()
            .group_name(&group_name)
            .description(description)
            .vpc_id(&vpc)
            .tag_specifications(self.tags(ResourceType::SecurityGroup, name, &[]))
            .send()
            .await
            .map_err(|e| {
                if code(&e) == Some("InvalidGroup.Duplicate") {
                    ProviderError::Invalid(format!(
                        "a security group named '{group_name}' already exists in {vpc} and is \
                         not tagged for lab '{}'; delete it or choose another --lab",
                        self.lab()
                    ))
                } else {
                    self.api(format!("creating security group '{name}' in {vpc}"), e)
                }
            })?;
        let id = out.group_id().unwrap_or_default().to_string();
        self.scope.ledger.created(
            ResourceKind::SecurityGroup,
            name,
            &id,
            json!({"vpc": vpc, "group_name": group_name}),
        )?;
        self.progress(&format!("created security group {name} ({id})"));
        Ok((
            SecurityGroup {
                id,
                name: name.to_string(),
                description: description.to_string(),
                rules: Vec::new(),
            },
            true,
        ))
    }

    pub(super) async fn lab_groups(&self) -> ProviderResult<Vec<SecurityGroup>> {
        let mut groups: Vec<_> = self
            .describe_lab_groups()
            .await?
            .iter()
            .map(|g| self.to_group(g))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// Adds (`add`) or removes one ingress rule; `false` when the group
    /// already has it (or already lacks it), whether labrun's read or EC2's
    /// answer says so.
    pub(super) async fn change_rule(
        &self,
        group_id: &str,
        rule: &Rule,
        add: bool,
    ) -> ProviderResult<bool> {
        let group = self.group_by_id(group_id).await?;
        if group.rules.contains(rule) == add {
            return Ok(false);
        }
        let permission = rules::to_permission(rule, &self.rule_description());
        let action = |verb: &str| {
            format!(
                "{verb} {}/{} on security group '{}' ({group_id})",
                rule.protocol.as_str(),
                rule.from_port,
                group.name
            )
        };
        // The two calls take and return different SDK types, so each answer
        // is reduced to "changed" or "unchanged" (the code EC2 gives when
        // there was nothing to do) before they meet.
        let changed = if add {
            let result = self
                .ec2
                .authorize_security_group_ingress()
                .group_id(group_id)
                .ip_permissions(permission)
                .send()
                .await;
            self.rule_changed(result, "InvalidPermission.Duplicate", || action("allowing"))?
        } else {
            let result = self
                .ec2
                .revoke_security_group_ingress()
                .group_id(group_id)
                .ip_permissions(permission)
                .send()
                .await;
            self.rule_changed(result, "InvalidPermission.NotFound", || action("revoking"))?
        };
        if changed {
            let verb = if add { "allows" } else { "no longer allows" };
            self.progress(&format!(
                "{} {verb} {}",
                group.name,
                rules::describe_rule(rule)
            ));
        }
        Ok(changed)
    }

    /// Whether an ingress call changed the group: `false` if EC2 answered
    /// `unchanged_code`; any other failure is an error doing `action`.
    fn rule_changed<O, E, R>(
        &self,
        result: Result<O, SdkError<E, R>>,
        unchanged_code: &str,
        action: impl FnOnce() -> String,
    ) -> ProviderResult<bool>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(unchanged_code) => Ok(false),
            Err(e) => Err(self.api(action(), e)),
        }
    }

    /// The EC2 name of the lab's group `name`: group names are unique per
    /// VPC, so two labs may each have a `web` group.
    fn group_name(&self, name: &str) -> String {
        format!("{}-{name}", self.lab())
    }

    pub(super) async fn describe_lab_groups(
        &self,
    ) -> ProviderResult<Vec<aws_sdk_ec2::types::SecurityGroup>> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(self.lab_filter())
            .send()
            .await
            .map_err(|e| self.api("listing the lab's security groups", e))?;
        Ok(out.security_groups().to_vec())
    }

    fn to_group(&self, g: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
        let id = g.group_id().unwrap_or_default().to_string();
        let (rules, other) = rules::from_permissions(g.ip_permissions());
        let name = tag_value(g.tags(), TAG_NAME)
            .or(g.group_name())
            .unwrap_or(&id)
            .to_string();
        for o in other {
            self.scope.reporter.warn(&format!(
                "security group {name} ({id}) has a rule labrun does not manage ({o}); left as is"
            ));
        }
        SecurityGroup {
            description: g.description().unwrap_or_default().to_string(),
            rules,
            name,
            id,
        }
    }

    async fn group_by_id(&self, group_id: &str) -> ProviderResult<SecurityGroup> {
        let out = self
            .ec2
            .describe_security_groups()
            .group_ids(group_id)
            .send()
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    ProviderError::NotFound {
                        kind: "security group",
                        id: group_id.to_string(),
                    }
                } else {
                    self.api(format!("reading security group {group_id}"), e)
                }
            })?;
        out.security_groups()
            .first()
            .map(|g| self.to_group(g))
            .ok_or_else(|| ProviderError::NotFound {
                kind: "security group",
                id: group_id.to_string(),
            })
    }

    fn rule_description(&self) -> String {
        format!("labrun lab {}", self.lab())
    }

    /// Deletes a group, retrying while EC2 still sees instances or other
    /// groups using it. `false` if it was already gone.
    pub(super) async fn delete_group(&self, id: &str, name: &str) -> ProviderResult<bool> {
        let started = Instant::now();
        for attempt in 0.. {
            match self.ec2.delete_security_group().group_id(id).send().await {
                Ok(_) => return Ok(true),
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e)
                    if code(&e) == Some("DependencyViolation")
                        && started.elapsed() < WAIT_GROUP_DELETE =>
                {
                    self.progress(&format!("security group {name} ({id}) is still in use"));
                    tokio::time::sleep(backoff(attempt + 2)).await;
                }
                Err(e) => {
                    return Err(self.api(format!("deleting security group '{name}' ({id})"), e));
                }
            }
        }
        unreachable!("the loop returns")
    }
}
