//! Destroying a lab: its instances, then its security groups, then its key
//! pair, each found both by tag and in the ledger.

use super::errors::is_not_found;
use super::instances::NOT_TERMINATED;
use super::{AwsProvider, TAG_LAB, TAG_NAME, tag_value};
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

    /// Instances: by tag (which also finds launches the ledger never
    /// confirmed), then the ledger's ids.
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
            if let Some(id) = r.id
                && !instances.iter().any(|(i, _)| *i == id)
                && let Some(i) = self.describe_instance(&id).await?
                && NOT_TERMINATED
                    .contains(&i.state().and_then(|s| s.name()).map_or("", |n| n.as_str()))
            {
                instances.push((id, r.name));
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
            if let Some(id) = r.id
                && !groups.iter().any(|(g, _)| *g == id)
            {
                groups.push((id, r.name));
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

    /// The key pair: by tag and by the ledger's name.
    async fn destroy_key_pairs(&self) -> ProviderResult<Vec<String>> {
        let mut removed = Vec::new();
        let ledger = &self.scope.ledger;
        let mut keys: Vec<String> = self
            .ec2
            .describe_key_pairs()
            .filters(self.lab_filter())
            .send()
            .await
            .map_err(|e| self.api("listing the lab's key pairs", e))?
            .key_pairs()
            .iter()
            .filter_map(|k| k.key_name().map(String::from))
            .collect();
        for r in ledger.resources(ResourceKind::KeyPair) {
            if !keys.contains(&r.name) {
                keys.push(r.name);
            }
        }
        for name in &keys {
            // `None`: gone; `Some(owner)`: there, tagged for `owner`.
            let owner: Option<Option<String>> =
                match self.ec2.describe_key_pairs().key_names(name).send().await {
                    Ok(out) => out
                        .key_pairs()
                        .first()
                        .map(|k| tag_value(k.tags(), TAG_LAB).map(String::from)),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(self.api(format!("looking up key pair '{name}'"), e)),
                };
            let owned = owner
                .as_ref()
                .is_some_and(|o| o.as_deref() == Some(self.lab()));
            if let (Some(o), false) = (&owner, owned) {
                self.scope.reporter.warn(&format!(
                    "key pair {name} is not tagged for lab '{}' ({}); left in place",
                    self.lab(),
                    o.as_deref()
                        .map_or("no labrun tag".to_string(), |o| format!("it is lab '{o}'s"))
                ));
            }
            if owned {
                self.ec2
                    .delete_key_pair()
                    .key_name(name)
                    .send()
                    .await
                    .map_err(|e| self.api(format!("deleting key pair '{name}'"), e))?;
                removed.push(format!("deleted key pair {name}"));
            }
            ledger.forget(ResourceKind::KeyPair, name)?;
        }
        Ok(removed)
    }
}
