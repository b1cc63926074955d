//! The lab's security groups: created once per name in the lab's VPC
//! (named `<lab>-<name>` there, as EC2 group names are unique per VPC),
//! their ingress rules added and removed one at a time, deleted once nothing
//! uses them.

use std::time::{Duration, Instant};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::ResourceType;
use serde_json::json;

use super::errors::{code, is_not_found};
use super::{AwsProvider, TAG_LAB_ID, TAG_NAME, backoff, rules, tag_value};
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
        let names = self.group_names(name);
        let mut taken = names.iter().peekable();
        let (out, group_name) = loop {
            let Some(group_name) = taken.next() else {
                unreachable!("a group has at least one name")
            };
            self.scope.ledger.intend(
                ResourceKind::SecurityGroup,
                name,
                json!({"vpc": vpc, "group_name": group_name}),
            )?;
            let result = self
                .ec2
                .create_security_group()
                .group_name(group_name)
                .description(description)
                .vpc_id(&vpc)
                .tag_specifications(self.tags(ResourceType::SecurityGroup, name, &[]))
                .send()
                .await;
            match result {
                Ok(out) => break (out, group_name),
                // Not this lab's (the lookup by tag above would have found it).
                Err(e) if code(&e) == Some("InvalidGroup.Duplicate") && taken.peek().is_some() => {
                    continue;
                }
                Err(e) if code(&e) == Some("InvalidGroup.Duplicate") => {
                    return Err(ProviderError::Invalid(format!(
                        "security groups named '{}' already exist in {vpc} and are not tagged \
                         for this lab ('{}', {TAG_LAB_ID} {}); delete them or choose another \
                         --lab",
                        names.join("' and '"),
                        self.lab(),
                        self.lab_id
                    )));
                }
                Err(e) => {
                    return Err(self.api(format!("creating security group '{name}' in {vpc}"), e));
                }
            }
        };
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

    /// The EC2 names the lab's group `name` may take, in order: group names
    /// are unique per VPC, so two labs may each have a `web` group as
    /// `<lab>-web`, and a second copy of one lab takes `<lab>-web-<id>`.
    fn group_names(&self, name: &str) -> [String; 2] {
        let plain = format!("{}-{name}", self.lab());
        let own = format!("{plain}-{}", self.short_id());
        [plain, own]
    }

    pub(super) async fn describe_lab_groups(
        &self,
    ) -> ProviderResult<Vec<aws_sdk_ec2::types::SecurityGroup>> {
        let out = self
            .ec2
            .describe_security_groups()
            .set_filters(Some(self.lab_filters()))
            .send()
            .await
            .map_err(|e| self.api("listing the lab's security groups", e))?;
        Ok(out
            .security_groups()
            .iter()
            .filter(|g| self.owns(g.tags()))
            .cloned()
            .collect())
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

    /// A group by id, whoever's it is; `None` if EC2 does not know it.
    pub(super) async fn describe_group(
        &self,
        id: &str,
    ) -> ProviderResult<Option<aws_sdk_ec2::types::SecurityGroup>> {
        match self
            .ec2
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.security_groups().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.api(format!("looking up security group {id}"), e)),
        }
    }

    /// The lab's group `group_id`, refused if it is not the lab's.
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
        let g = out
            .security_groups()
            .first()
            .ok_or_else(|| ProviderError::NotFound {
                kind: "security group",
                id: group_id.to_string(),
            })?;
        if !self.owns(g.tags()) {
            return Err(ProviderError::Invalid(format!(
                "security group {group_id} is not this lab's ({}); labrun changes only the \
                 lab's own groups",
                self.not_ours(g.tags())
            )));
        }
        Ok(self.to_group(g))
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
