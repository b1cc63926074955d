//! Destroying a lab: its instances, then its security groups, then its key
//! pair, each found both by the lab's tags (name and id) and in the ledger.
//! What the ledger names is looked at before it is deleted: a resource that
//! does not carry the lab's id is refused (left in place, with a warning),
//! since it may be another copy's of the same lab name.

use aws_sdk_ec2::types::Tag;

use super::errors::is_not_found;
use super::instances::NOT_TERMINATED;
use super::{AwsProvider, TAG_NAME, tag_value};
use crate::ledger::ResourceKind;
use crate::providers::ProviderResult;

impl AwsProvider {
    /// Everything the lab holds, in the order that lets EC2 delete it.
    pub(super) async fn destroy_lab(&self) -> ProviderResult<Vec<String>> {
        let mut removed = self.destroy_instances().await?;
        removed.extend(self.destroy_groups().await?);
        removed.extend(self.destroy_key_pairs().await?);
        Ok(removed)
    }

    /// Says why the ledger's `what` is left in place; the ledger then
    /// forgets it, as it is not the lab's to delete.
    fn refuse(&self, what: &str, tags: &[Tag]) {
        self.scope.reporter.warn(&format!(
            "{what} is in lab '{}'s ledger but is not this lab's ({}): not deleted, and \
             dropped from the ledger; delete it yourself if it is yours",
            self.lab(),
            self.not_ours(tags)
        ));
    }

    /// Instances: by tag (which also finds a launch killed before the
    /// ledger learnt its id: the tags come with RunInstances itself), then
    /// the ledger's ids, each checked.
    async fn destroy_instances(&self) -> ProviderResult<Vec<String>> {
        let mut removed = Vec::new();
        let ledger = &self.scope.ledger;
        let mut instances: Vec<(String, String)> = self
            .describe_lab_instances(NOT_TERMINATED)
            .await?
            .iter()
            .map(|i| {
                let inst = self.to_instance(i);
                (inst.id, inst.name)
            })
            .collect();
        for r in ledger.resources(ResourceKind::Instance) {
            let Some(id) = r.id else { continue };
            if instances.iter().any(|(i, _)| *i == id) {
                continue;
            }
            let Some(i) = self.describe_instance(&id).await? else {
                continue;
            };
            let state = i.state().and_then(|s| s.name()).map_or("", |n| n.as_str());
            if !NOT_TERMINATED.contains(&state) {
                continue;
            }
            if self.owns(i.tags()) {
                instances.push((id, r.name));
            } else {
                self.refuse(&format!("instance {} ({id})", r.name), i.tags());
            }
        }
        if !instances.is_empty() {
            let ids: Vec<String> = instances.iter().map(|(id, _)| id.clone()).collect();
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| self.api(format!("terminating instances {}", ids.join(", ")), e))?;
            self.wait_terminated(&ids).await?;
            for (id, name) in &instances {
                removed.push(format!("terminated instance {name} ({id})"));
            }
        }
        for r in ledger.resources(ResourceKind::Instance) {
            ledger.forget(ResourceKind::Instance, &r.name)?;
        }
        Ok(removed)
    }

    /// Groups: first drop rules naming other groups, which would keep
    /// those groups alive, then delete each.
    async fn destroy_groups(&self) -> ProviderResult<Vec<String>> {
        let mut removed = Vec::new();
        let ledger = &self.scope.ledger;
        let mut groups: Vec<(String, String)> = Vec::new();
        for g in self.describe_lab_groups().await? {
            let id = g.group_id().unwrap_or_default().to_string();
            let name = tag_value(g.tags(), TAG_NAME).unwrap_or(&id).to_string();
            let referencing: Vec<_> = g
                .ip_permissions()
                .iter()
                .filter(|p| !p.user_id_group_pairs().is_empty())
                .cloned()
                .collect();
            if !referencing.is_empty() {
                match self
                    .ec2
                    .revoke_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(referencing))
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(self.api(
                            format!("removing group rules of security group '{name}' ({id})"),
                            e,
                        ));
                    }
                }
            }
            groups.push((id, name));
        }
        for r in ledger.resources(ResourceKind::SecurityGroup) {
            let Some(id) = r.id else { continue };
            if groups.iter().any(|(g, _)| *g == id) {
                continue;
            }
            match self.describe_group(&id).await? {
                None => {}
                Some(g) if self.owns(g.tags()) => groups.push((id, r.name)),
                Some(g) => self.refuse(&format!("security group {} ({id})", r.name), g.tags()),
            }
        }
        for (id, name) in &groups {
            if self.delete_group(id, name).await? {
                removed.push(format!("deleted security group {name} ({id})"));
            }
        }
        for r in ledger.resources(ResourceKind::SecurityGroup) {
            ledger.forget(ResourceKind::SecurityGroup, &r.name)?;
        }
        Ok(removed)
    }

    /// The key pair: by tag and by the ledger's name, each checked.
    async fn destroy_key_pairs(&self) -> ProviderResult<Vec<String>> {
        let mut removed = Vec::new();
        let ledger = &self.scope.ledger;
        let mut keys: Vec<String> = self
            .ec2
            .describe_key_pairs()
            .set_filters(Some(self.lab_filters()))
            .send()
            .await
            .map_err(|e| self.api("listing the lab's key pairs", e))?
            .key_pairs()
            .iter()
            .filter(|k| self.owns(k.tags()))
            .filter_map(|k| k.key_name().map(String::from))
            .collect();
        for r in ledger.resources(ResourceKind::KeyPair) {
            if !keys.contains(&r.name) {
                keys.push(r.name);
            }
        }
        for name in &keys {
            let found = match self.ec2.describe_key_pairs().key_names(name).send().await {
                Ok(out) => out.key_pairs().first().cloned(),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(self.api(format!("looking up key pair '{name}'"), e)),
            };
            match found {
                None => {}
                Some(k) if self.owns(k.tags()) => {
                    self.ec2
                        .delete_key_pair()
                        .key_name(name)
                        .send()
                        .await
                        .map_err(|e| self.api(format!("deleting key pair '{name}'"), e))?;
                    removed.push(format!("deleted key pair {name}"));
                }
                Some(k) => self.refuse(&format!("key pair {name}"), k.tags()),
            }
            ledger.forget(ResourceKind::KeyPair, name)?;
        }
        Ok(removed)
    }
}
