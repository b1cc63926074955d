//! The lab's key pair: the lab's public key imported into EC2 once, tagged
//! for the lab, and refused when a pair of that name is someone else's.

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::ResourceType;
use serde_json::json;

use super::errors::is_not_found;
use super::{AwsProvider, TAG_LAB, tag_value};
use crate::ledger::ResourceKind;
use crate::providers::{ProviderError, ProviderResult};

impl AwsProvider {
    pub fn key_pair_name(&self) -> String {
        format!("{}-key", self.lab())
    }

    /// The lab's key pair, imported from the lab's public key if missing.
    pub(super) async fn key_pair(&self) -> ProviderResult<&String> {
        self.key_name.get_or_try_init(|| self.ensure_key()).await
    }

    async fn ensure_key(&self) -> ProviderResult<String> {
        let name = self.key_pair_name();
        let found = self
            .ec2
            .describe_key_pairs()
            .key_names(&name)
            .include_public_key(true)
            .send()
            .await;
        match found {
            Ok(out) => {
                let kp = out
                    .key_pairs()
                    .first()
                    .ok_or_else(|| ProviderError::NotFound {
                        kind: "key pair",
                        id: name.clone(),
                    })?;
                if tag_value(kp.tags(), TAG_LAB) != Some(self.lab()) {
                    return Err(ProviderError::Invalid(format!(
                        "a key pair named '{name}' exists in {} but was not imported by labrun \
                         for lab '{}'; delete it or choose another --lab",
                        self.region,
                        self.lab()
                    )));
                }
                let ours = self.scope.public_key.split_whitespace().take(2);
                if let Some(theirs) = kp.public_key()
                    && !theirs.split_whitespace().take(2).eq(ours)
                {
                    return Err(ProviderError::Invalid(format!(
                        "key pair '{name}' in {} holds another public key than this lab's \
                         (the lab's state directory was recreated, or the lab runs elsewhere \
                         too): remove the old lab with `labrun destroy --lab {}`, or choose \
                         another --lab",
                        self.region,
                        self.lab()
                    )));
                }
                if let Some(id) = kp.key_pair_id() {
                    self.record_created(ResourceKind::KeyPair, &name, id, json!({}))?;
                }
                Ok(name)
            }
            Err(e) if is_not_found(&e) => {
                self.scope
                    .ledger
                    .intend(ResourceKind::KeyPair, &name, json!({}))?;
                let out = self
                    .ec2
                    .import_key_pair()
                    .key_name(&name)
                    .public_key_material(Blob::new(self.scope.public_key.as_bytes()))
                    .tag_specifications(self.tags(ResourceType::KeyPair, &name, &[]))
                    .send()
                    .await
                    .map_err(|e| self.api(format!("importing key pair '{name}'"), e))?;
                let id = out.key_pair_id().unwrap_or(&name);
                self.scope
                    .ledger
                    .created(ResourceKind::KeyPair, &name, id, json!({}))?;
                self.progress(&format!("imported key pair {name} ({id})"));
                Ok(name)
            }
            Err(e) => Err(self.api(format!("looking up key pair '{name}'"), e)),
        }
    }
}
