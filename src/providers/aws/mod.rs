//! The AWS provider: EC2 instances, security groups and a key pair in the
//! default VPC (or the one given), every resource tagged `Name`,
//! `labrun:lab` and `labrun:lab-id`, found again by the lab's name *and* id,
//! never by its name alone.
//!
//! Credentials and region come from the SDK's standard chain (environment,
//! profiles, SSO, instance metadata); `--region`, `--profile` and an endpoint
//! override (`--endpoint-url`, `AWS_ENDPOINT_URL`) adjust it, the latter for
//! API emulators such as moto.

mod calls;
mod destroy;
mod endpoint;
mod errors;
mod groups;
mod images;
mod instances;
mod keypair;
mod network;
mod notice;
mod operator;
mod rules;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::ProvideCredentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use tokio::sync::{Mutex, OnceCell};

use self::endpoint::{endpoint_override, is_emulator};
use self::network::Network;
pub use self::notice::running_notice;

/// Whether `launch` would take this image and instance type, asking nothing
/// of EC2 (the image's name or AMI form, the type's shape).
pub fn check_spec(image: &str, instance_type: &str) -> ProviderResult<()> {
    images::parse(image)?;
    instances::check_instance_type(instance_type)
}
use super::{
    ImageInfo, Instance, InstanceSpec, LabScope, Provider, ProviderError, ProviderOptions,
    ProviderResult, Rule, SecurityGroup, parse_cidr,
};
use crate::ledger::{ResourceKind, ResourceState};

/// Tag naming the lab a resource belongs to.
pub const TAG_LAB: &str = "labrun:lab";
/// Tag holding the lab's id (its ledger's): two state directories, or two
/// people, may use one lab name in one account, and the name is all the
/// other tags say.
pub const TAG_LAB_ID: &str = "labrun:lab-id";
/// Tag holding the resource's name within the lab.
pub const TAG_NAME: &str = "labrun:name";
/// Tag holding the image name the playbook asked for.
pub const TAG_IMAGE: &str = "labrun:image";

pub struct AwsProvider {
    ec2: Client,
    scope: LabScope,
    /// The lab's id from its ledger: required on everything the lab adopts,
    /// changes or deletes.
    lab_id: String,
    region: String,
    /// The overridden EC2 endpoint, if any.
    endpoint: Option<String>,
    /// The endpoint is an emulator (plain HTTP or loopback): its instances
    /// are API records with no machine behind them.
    emulated: bool,
    operator_cidr: Option<String>,
    vpc: Option<String>,
    subnet: Option<String>,
    network: OnceCell<Network>,
    key_name: OnceCell<String>,
    detected_cidr: OnceCell<String>,
    resolved_images: Mutex<HashMap<String, String>>,
}

fn filter(name: &str, values: &[&str]) -> Filter {
    values
        .iter()
        .fold(Filter::builder().name(name), |f, v| f.values(*v))
        .build()
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Waits between polls: quick at first, then every 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((500u64 << attempt.min(4)).min(5_000))
}

impl AwsProvider {
    pub async fn connect(scope: LabScope, options: &ProviderOptions) -> ProviderResult<Self> {
        let endpoint = endpoint_override(options);
        let recorded = scope.ledger.snapshot();
        let has_resources = !recorded.resources.is_empty();
        if let (Some(asked), Some(lives), true) = (&options.region, &recorded.region, has_resources)
            && asked != lives
        {
            return Err(ProviderError::Invalid(format!(
                "lab '{}' has resources in region {lives}, not {asked}; use --region {lives} \
                 (or `labrun destroy --lab {}` first)",
                scope.lab, scope.lab
            )));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let call_timeout = calls::call_timeout(std::env::var(calls::TIMEOUT_ENV).ok().as_deref())?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(calls::timeouts(call_timeout))
            .retry_config(calls::retries());
        if let Some(p) = &options.profile {
            loader = loader.profile_name(p);
        }
        let pinned = options
            .region
            .clone()
            .or_else(|| recorded.region.clone().filter(|_| has_resources));
        if let Some(r) = &pinned {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        // Profiles may resolve credentials over the network (SSO, a process).
        let config = scope
            .interruptible(async { Ok(loader.load().await) })
            .await?;
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            ProviderError::Unavailable(
                "aws: no region: pass --region REGION, set AWS_REGION, or set `region` in your \
                 AWS profile"
                    .into(),
            )
        })?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            ProviderError::Unavailable("aws: no credentials provider is configured".into())
        })?;
        let provided = scope
            .interruptible(async { Ok(credentials.provide_credentials().await) })
            .await?;
        if let Err(e) = provided {
            return Err(ProviderError::Unavailable(format!(
                "aws: no usable credentials ({}): set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or name a profile with --profile NAME or AWS_PROFILE \
                 (`aws configure` writes one)",
                aws_sdk_ec2::error::DisplayErrorContext(&e)
            )));
        }
        let operator_cidr = options
            .operator_cidr
            .as_deref()
            .map(|c| {
                parse_cidr(c).map_err(|e| ProviderError::Invalid(format!("--operator-cidr: {e}")))
            })
            .transpose()?;
        scope.ledger.update(|d| d.region = Some(region.clone()))?;
        if recorded.lab_id.is_none() && has_resources {
            scope.reporter.warn(&format!(
                "lab '{}' was recorded by a labrun from before lab ids: its resources at AWS carry \
                 no {TAG_LAB_ID} tag, so this labrun neither adopts nor deletes them; remove \
                 them in the EC2 console (tag labrun:lab = {}) if they are yours",
                scope.lab, scope.lab
            ));
        }
        let lab_id = scope.ledger.lab_id()?;
        let emulated = endpoint.as_deref().is_some_and(is_emulator);
        if let Some(e) = endpoint.as_deref().filter(|_| emulated) {
            scope.reporter.warn(&format!(
                "aws: the EC2 endpoint is an emulator ({e}): instances exist only as API \
                 records, with no machine or SSH server behind them"
            ));
        }
        Ok(AwsProvider {
            ec2: Client::new(&config),
            scope,
            lab_id,
            region,
            endpoint,
            emulated,
            operator_cidr,
            vpc: options.vpc.clone(),
            subnet: options.subnet.clone(),
            network: OnceCell::new(),
            key_name: OnceCell::new(),
            detected_cidr: OnceCell::new(),
            resolved_images: Mutex::new(HashMap::new()),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// An SDK failure as a [`ProviderError`]; a transport failure names the
    /// endpoint it could not reach.
    fn api<E, R>(&self, action: impl Into<String>, err: SdkError<E, R>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match errors::api(action, err) {
            ProviderError::Unavailable(m) => ProviderError::Unavailable(match &self.endpoint {
                Some(e) => format!("{m} (endpoint {e})"),
                None => format!("{m} (AWS's endpoint for {})", self.region),
            }),
            other => other,
        }
    }

    fn lab(&self) -> &str {
        &self.scope.lab
    }

    fn progress(&self, line: &str) {
        self.scope.reporter.output(line);
    }

    /// `Name`, `labrun:lab`, `labrun:lab-id` and `labrun:name` tags, plus
    /// `extra`.
    fn tags(&self, resource: ResourceType, name: &str, extra: &[(&str, &str)]) -> TagSpecification {
        let pairs = [
            ("Name", name),
            (TAG_LAB, self.lab()),
            (TAG_LAB_ID, &self.lab_id),
            (TAG_NAME, name),
        ];
        pairs
            .iter()
            .chain(extra)
            .fold(
                TagSpecification::builder().resource_type(resource),
                |b, (k, v)| b.tags(Tag::builder().key(*k).value(*v).build()),
            )
            .build()
    }

    /// What finds the lab's resources: its name and its id.
    fn lab_filters(&self) -> Vec<Filter> {
        vec![
            filter(&format!("tag:{TAG_LAB}"), &[self.lab()]),
            filter(&format!("tag:{TAG_LAB_ID}"), &[&self.lab_id]),
        ]
    }

    /// Whether a resource with `tags` is this lab's: named for it and
    /// carrying its id. Checked again on what a filter returned, and on
    /// every id the ledger holds before it is changed or deleted.
    fn owns(&self, tags: &[Tag]) -> bool {
        tag_value(tags, TAG_LAB) == Some(self.lab())
            && tag_value(tags, TAG_LAB_ID) == Some(self.lab_id.as_str())
    }

    /// Why a resource with `tags` is not this lab's, for a message.
    fn not_ours(&self, tags: &[Tag]) -> String {
        match (tag_value(tags, TAG_LAB), tag_value(tags, TAG_LAB_ID)) {
            (None, _) => "it has no labrun:lab tag".to_string(),
            (Some(lab), _) if lab != self.lab() => format!("it is lab '{lab}'s"),
            (Some(_), None) => format!(
                "it has no {TAG_LAB_ID} tag (made by a labrun from before lab ids, or not by \
                 labrun)"
            ),
            (Some(_), Some(id)) => format!(
                "it is another copy of lab '{}' ({TAG_LAB_ID} {id}; this lab's is {}), from \
                 another state directory or person",
                self.lab(),
                self.lab_id
            ),
        }
    }

    /// A short form of the lab's id, for EC2 names that must be unique and
    /// are taken by another copy of the lab.
    fn short_id(&self) -> &str {
        &self.lab_id[..self.lab_id.len().min(8)]
    }

    /// Records a resource found at AWS that the ledger lacks (a run that
    /// crashed between creating and recording it).
    fn record_created(
        &self,
        kind: ResourceKind,
        name: &str,
        id: &str,
        data: serde_json::Value,
    ) -> ProviderResult<()> {
        let known = self.scope.ledger.resources(kind).into_iter().any(|r| {
            r.name == name && r.id.as_deref() == Some(id) && r.state == ResourceState::Created
        });
        if !known {
            self.scope.ledger.created(kind, name, id, data)?;
        }
        Ok(())
    }
}

#[async_trait]
/// Every call races Ctrl-C (`LabScope::interruptible`); each EC2 request in
/// it is bounded by the SDK's timeouts (`calls`).
impl Provider for AwsProvider {
    async fn operator_cidr(&self) -> ProviderResult<String> {
        self.scope.interruptible(self.operator_address()).await
    }

    async fn ensure_group(
        &self,
        name: &str,
        description: &str,
    ) -> ProviderResult<(SecurityGroup, bool)> {
        self.scope
            .interruptible(self.ensure_lab_group(name, description))
            .await
    }

    async fn groups(&self) -> ProviderResult<Vec<SecurityGroup>> {
        self.scope.interruptible(self.lab_groups()).await
    }

    async fn authorize(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool> {
        self.scope
            .interruptible(self.change_rule(group_id, rule, true))
            .await
    }

    async fn revoke(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool> {
        self.scope
            .interruptible(self.change_rule(group_id, rule, false))
            .await
    }

    async fn launch(&self, spec: &InstanceSpec) -> ProviderResult<(Instance, bool)> {
        self.scope.interruptible(self.launch_instance(spec)).await
    }

    async fn instances(&self) -> ProviderResult<Vec<Instance>> {
        self.scope.interruptible(self.lab_instances()).await
    }

    async fn terminate(&self, id: &str) -> ProviderResult<bool> {
        self.scope.interruptible(self.terminate_instance(id)).await
    }

    async fn destroy(&self) -> ProviderResult<Vec<String>> {
        self.scope.interruptible(self.destroy_lab()).await
    }

    async fn images(&self) -> ProviderResult<Vec<ImageInfo>> {
        Ok(images::infos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_backs_off_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(10), Duration::from_secs(5));
    }
}
