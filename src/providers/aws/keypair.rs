//! The lab's key pair: the lab's public key imported into EC2 once, tagged
//! for the lab, found again by the lab's name and id. Key pair names are
//! unique per region: `<lab>-key`, or `<lab>-key-<id>` when another copy of
//! the lab (or anyone) holds that name.

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{KeyPairInfo, ResourceType};
use serde_json::json;

use super::errors::is_not_found;
use super::{AwsProvider, TAG_LAB_ID};
use crate::ledger::ResourceKind;
use crate::providers::{ProviderError, ProviderResult};

impl AwsProvider {
    /// The names the lab's key pair may take, in order.
    fn key_pair_names(&self) -> [String; 2] {
        let plain = format!("{}-key", self.lab());
        let own = format!("{plain}-{}", self.short_id());
        [plain, own]
    }

    /// The lab's key pair, imported from the lab's public key if missing.
    pub(super) async fn key_pair(&self) -> ProviderResult<&String> {
        self.key_name.get_or_try_init(|| self.ensure_key()).await
    }

    async fn ensure_key(&self) -> ProviderResult<String> {
        let found = self
            .ec2
            .describe_key_pairs()
            .set_filters(Some(self.lab_filters()))
            .include_public_key(true)
            .send()
            .await
            .map_err(|e| self.api("listing the lab's key pairs", e))?;
        if let Some(kp) = found.key_pairs().iter().find(|k| self.owns(k.tags())) {
            return self.adopt_key(kp);
        }
        let names = self.key_pair_names();
        for name in &names {
            let found = self
                .ec2
                .describe_key_pairs()
                .key_names(name)
                .include_public_key(true)
                .send()
                .await;
            match found {
                Ok(out) => match out.key_pairs().first() {
                    // Just imported: the lookup by tag may lag behind.
                    Some(kp) if self.owns(kp.tags()) => return self.adopt_key(kp),
                    // Someone else's: take the next name.
                    Some(_) => {}
                    None => return self.import_key(name).await,
                },
                Err(e) if is_not_found(&e) => return self.import_key(name).await,
                Err(e) => return Err(self.api(format!("looking up key pair '{name}'"), e)),
            }
        }
        Err(ProviderError::Invalid(format!(
            "key pairs named '{}' exist in {} and are not tagged for this lab ('{}', \
             {TAG_LAB_ID} {}); delete them or choose another --lab",
            names.join("' and '"),
            self.region,
            self.lab(),
            self.lab_id
        )))
    }

    /// Uses the lab's own key pair `kp`, if it holds the lab's public key.
    fn adopt_key(&self, kp: &KeyPairInfo) -> ProviderResult<String> {
        let name = kp.key_name().unwrap_or_default().to_string();
        let ours = self.scope.public_key.split_whitespace().take(2);
        if let Some(theirs) = kp.public_key()
            && !theirs.split_whitespace().take(2).eq(ours)
        {
            return Err(ProviderError::Invalid(format!(
                "key pair '{name}' in {} holds another public key than this lab's \
                 (the lab's key files were replaced): remove the old lab with \
                 `labrun destroy --lab {}`, or choose another --lab",
                self.region,
                self.lab()
            )));
        }
        if let Some(id) = kp.key_pair_id() {
            self.record_created(ResourceKind::KeyPair, &name, id, json!({}))?;
        }
        Ok(name)
    }

    async fn import_key(&self, name: &str) -> ProviderResult<String> {
        self.scope
            .ledger
            .intend(ResourceKind::KeyPair, name, json!({}))?;
        let out = self
            .ec2
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(self.scope.public_key.as_bytes()))
            .tag_specifications(self.tags(ResourceType::KeyPair, name, &[]))
            .send()
            .await
            .map_err(|e| self.api(format!("importing key pair '{name}'"), e))?;
        let id = out.key_pair_id().unwrap_or(name);
        self.scope
            .ledger
            .created(ResourceKind::KeyPair, name, id, json!({}))?;
        self.progress(&format!("imported key pair {name} ({id})"));
        Ok(name.to_string())
    }
}
