//! The AWS provider: EC2 instances, security groups and a key pair in the
//! default VPC (or the one given), every resource tagged `Name` and
//! `labrun:lab`, found again by those tags.
//!
//! Credentials and region come from the SDK's standard chain (environment,
//! profiles, SSO, instance metadata); `--region`, `--profile` and an endpoint
//! override (`--endpoint-url`, `AWS_ENDPOINT_URL`) adjust it, the latter for
//! API emulators such as moto.

mod errors;
mod images;
mod operator;
mod rules;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::ProvideCredentials;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag,
    TagSpecification,
};
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};

use super::{
    ImageInfo, Instance, InstanceSpec, LabScope, Provider, ProviderError, ProviderOptions,
    ProviderResult, Rule, SecurityGroup, parse_cidr,
};
use crate::ledger::{ResourceKind, ResourceState};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use errors::{code, is_not_found};
use images::ImageRef;

/// Tag naming the lab a resource belongs to.
pub const TAG_LAB: &str = "labrun:lab";
/// Tag holding the resource's name within the lab.
pub const TAG_NAME: &str = "labrun:name";
/// Tag holding the image name the playbook asked for.
pub const TAG_IMAGE: &str = "labrun:image";

const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];
const NOT_TERMINATED: &[&str] = &["pending", "running", "stopping", "stopped", "shutting-down"];
const WAIT_RUNNING: Duration = Duration::from_secs(600);
const WAIT_TERMINATED: Duration = Duration::from_secs(600);
const WAIT_GROUP_DELETE: Duration = Duration::from_secs(300);

/// Where the lab's groups and instances live.
#[derive(Clone, Debug)]
struct Network {
    vpc: String,
    /// Where instances may go, in order of preference (never empty).
    subnets: Vec<String>,
}

pub struct AwsProvider {
    ec2: Client,
    scope: LabScope,
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

/// The endpoint override: `--endpoint-url`, else `AWS_ENDPOINT_URL_EC2`,
/// else `AWS_ENDPOINT_URL`.
fn endpoint_override(options: &ProviderOptions) -> Option<String> {
    options
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_EC2").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.trim().is_empty())
}

/// Whether an endpoint is an emulator rather than AWS: AWS endpoints are
/// HTTPS on public names, emulators listen on plain HTTP or loopback.
fn is_emulator(endpoint: &str) -> bool {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    scheme.eq_ignore_ascii_case("http")
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

/// `tcp/3306 from 172.31.0.5/32`.
fn describe_rule(rule: &Rule) -> String {
    let ports = if rule.from_port == rule.to_port {
        rule.from_port.to_string()
    } else {
        format!("{}-{}", rule.from_port, rule.to_port)
    };
    let source = match &rule.source {
        super::Source::Cidr(c) => c.as_str(),
        super::Source::Group(g) => g.as_str(),
    };
    format!("{}/{ports} from {source}", rule.protocol.as_str())
}

/// What to tell the user after a run while the lab has instances: on AWS
/// they cost money until destroyed.
pub fn running_notice(
    lab: &str,
    data: &crate::ledger::LedgerData,
    options: &ProviderOptions,
) -> Option<String> {
    let n = data
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::Instance)
        .count();
    if n == 0 {
        return None;
    }
    let (count, verb) = if n == 1 {
        ("1 instance".to_string(), "is")
    } else {
        (format!("{n} instances"), "are")
    };
    let region = data.region.as_deref().unwrap_or("its region");
    Some(
        match endpoint_override(options).filter(|e| is_emulator(e)) {
            Some(e) => format!(
                "{count} of lab '{lab}' {verb} recorded on the EC2 emulator at {e} (nothing is \
             billed); `labrun destroy --lab {lab}` removes them"
            ),
            None => format!(
                "{count} of lab '{lab}' {verb} running on AWS in {region} and billed until you run \
             `labrun destroy --lab {lab}` (`labrun status` lists them)"
            ),
        },
    )
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
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
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
        let config = loader.load().await;
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
        if let Err(e) = credentials.provide_credentials().await {
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

    /// `Name`, `labrun:lab` and `labrun:name` tags, plus `extra`.
    fn tags(&self, resource: ResourceType, name: &str, extra: &[(&str, &str)]) -> TagSpecification {
        let pairs = [("Name", name), (TAG_LAB, self.lab()), (TAG_NAME, name)];
        pairs
            .iter()
            .chain(extra)
            .fold(
                TagSpecification::builder().resource_type(resource),
                |b, (k, v)| b.tags(Tag::builder().key(*k).value(*v).build()),
            )
            .build()
    }

    fn lab_filter(&self) -> Filter {
        filter(&format!("tag:{TAG_LAB}"), &[self.lab()])
    }

    /// The EC2 name of the lab's group `name`: group names are unique per
    /// VPC, so two labs may each have a `web` group.
    fn group_name(&self, name: &str) -> String {
        format!("{}-{name}", self.lab())
    }

    pub fn key_pair_name(&self) -> String {
        format!("{}-key", self.lab())
    }

    // ----- network -------------------------------------------------------

    async fn network(&self) -> ProviderResult<&Network> {
        self.network.get_or_try_init(|| self.find_network()).await
    }

    async fn find_network(&self) -> ProviderResult<Network> {
        if let Some(subnet) = &self.subnet {
            let out = self
                .ec2
                .describe_subnets()
                .subnet_ids(subnet)
                .send()
                .await
                .map_err(|e| self.api(format!("looking up subnet {subnet}"), e))?;
            let vpc = out
                .subnets()
                .first()
                .and_then(|s| s.vpc_id())
                .ok_or_else(|| ProviderError::NotFound {
                    kind: "subnet",
                    id: subnet.clone(),
                })?;
            if let Some(asked) = self.vpc.as_deref().filter(|v| *v != vpc) {
                return Err(ProviderError::Invalid(format!(
                    "--subnet {subnet} is in {vpc}, not in --vpc {asked}"
                )));
            }
            return Ok(Network {
                vpc: vpc.to_string(),
                subnets: vec![subnet.clone()],
            });
        }
        let (vpc, default) = match &self.vpc {
            Some(v) => (v.clone(), false),
            None => {
                let out = self
                    .ec2
                    .describe_vpcs()
                    .filters(filter("isDefault", &["true"]))
                    .send()
                    .await
                    .map_err(|e| self.api("looking up the default VPC", e))?;
                let vpc = out.vpcs().first().and_then(|v| v.vpc_id()).ok_or_else(|| {
                    ProviderError::Unavailable(format!(
                        "aws: this account has no default VPC in {}: create one with \
                         `aws ec2 create-default-vpc --region {}`, or pass --vpc VPC_ID \
                         --subnet SUBNET_ID",
                        self.region, self.region
                    ))
                })?;
                (vpc.to_string(), true)
            }
        };
        let mut req = self
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", &[&vpc]))
            .filters(filter("state", &["available"]));
        if default {
            req = req.filters(filter("default-for-az", &["true"]));
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.api(format!("looking up the subnets of {vpc}"), e))?;
        // Deterministic: a subnet that gives public addresses, first zone first.
        let mut subnets: Vec<_> = out.subnets().iter().collect();
        subnets.sort_by_key(|s| {
            (
                !s.map_public_ip_on_launch().unwrap_or(false),
                s.availability_zone().unwrap_or_default().to_string(),
            )
        });
        let subnets: Vec<String> = subnets
            .iter()
            .filter_map(|s| s.subnet_id().map(String::from))
            .collect();
        if subnets.is_empty() {
            return Err(ProviderError::Unavailable(format!(
                "aws: {vpc} has no available {}subnet in {}; pass --subnet SUBNET_ID",
                if default { "default " } else { "" },
                self.region
            )));
        }
        Ok(Network { vpc, subnets })
    }

    // ----- key pair ------------------------------------------------------

    /// The lab's key pair, imported from the lab's public key if missing.
    async fn key_pair(&self) -> ProviderResult<&String> {
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

    // ----- images --------------------------------------------------------

    /// The `ImageId` for `RunInstances`.
    async fn resolve_image(&self, image: &str) -> ProviderResult<String> {
        let known = match images::parse(image)? {
            ImageRef::Literal(id) => return Ok(id),
            ImageRef::Known(k) => k,
        };
        let mut cache = self.resolved_images.lock().await;
        if let Some(id) = cache.get(image) {
            return Ok(id.clone());
        }
        let found = self
            .ec2
            .describe_images()
            .owners(known.owner)
            .filters(filter("name", &[known.name_pattern]))
            .filters(filter("architecture", &["x86_64"]))
            .filters(filter("state", &["available"]))
            .send()
            .await;
        let id = match found {
            Ok(out) => images::newest(out.images()).and_then(|i| i.image_id().map(String::from)),
            Err(e) if code(&e) == Some("UnauthorizedOperation") => None,
            Err(e) => return Err(self.api(format!("looking up the newest {image} image"), e)),
        };
        let id = match id {
            Some(id) => {
                self.progress(&format!("{image} is {id} in {}", self.region));
                id
            }
            None => {
                self.progress(&format!(
                    "no {image} image listed; EC2 resolves {} at launch",
                    known.ssm_parameter
                ));
                format!("resolve:ssm:{}", known.ssm_parameter)
            }
        };
        cache.insert(image.to_string(), id.clone());
        Ok(id)
    }

    // ----- instances -----------------------------------------------------

    fn to_instance(&self, i: &aws_sdk_ec2::types::Instance) -> Instance {
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

    /// The lab's instances in `states`, as EC2 returns them.
    async fn describe_lab_instances(
        &self,
        states: &[&str],
    ) -> ProviderResult<Vec<aws_sdk_ec2::types::Instance>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .ec2
                .describe_instances()
                .filters(self.lab_filter())
                .filters(filter("instance-state-name", states))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.api("listing the lab's instances", e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().cloned());
            }
            token = page.next_token().map(String::from);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// One instance by id, `None` if EC2 does not know it (any more).
    async fn describe_instance(
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
    async fn wait_terminated(&self, ids: &[String]) -> ProviderResult<()> {
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

    // ----- groups --------------------------------------------------------

    async fn describe_lab_groups(&self) -> ProviderResult<Vec<aws_sdk_ec2::types::SecurityGroup>> {
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
    async fn delete_group(&self, id: &str, name: &str) -> ProviderResult<bool> {
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

#[async_trait]
impl Provider for AwsProvider {
    async fn operator_cidr(&self) -> ProviderResult<String> {
        if let Some(c) = &self.operator_cidr {
            return Ok(c.clone());
        }
        if let Some(e) = &self.endpoint {
            return Err(ProviderError::Unavailable(format!(
                "the EC2 endpoint is overridden ({e}), so labrun does not look up your public \
                 address on the internet: {}",
                operator::HOW_TO_SET
            )));
        }
        self.detected_cidr
            .get_or_try_init(|| async {
                let ip = operator::detect_public_ipv4().await?;
                self.progress(&format!("your public address is {ip}"));
                Ok(format!("{ip}/32"))
            })
            .await
            .cloned()
    }

    async fn ensure_group(
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

    async fn groups(&self) -> ProviderResult<Vec<SecurityGroup>> {
        let mut groups: Vec<_> = self
            .describe_lab_groups()
            .await?
            .iter()
            .map(|g| self.to_group(g))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    async fn authorize(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool> {
        let group = self.group_by_id(group_id).await?;
        if group.rules.contains(rule) {
            return Ok(false);
        }
        let result = self
            .ec2
            .authorize_security_group_ingress()
            .group_id(group_id)
            .ip_permissions(rules::to_permission(rule, &self.rule_description()))
            .send()
            .await;
        match result {
            Ok(_) => {
                self.progress(&format!("{} allows {}", group.name, describe_rule(rule)));
                Ok(true)
            }
            Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => Ok(false),
            Err(e) => Err(self.api(
                format!(
                    "allowing {}/{} on security group '{}' ({group_id})",
                    rule.protocol.as_str(),
                    rule.from_port,
                    group.name
                ),
                e,
            )),
        }
    }

    async fn revoke(&self, group_id: &str, rule: &Rule) -> ProviderResult<bool> {
        let group = self.group_by_id(group_id).await?;
        if !group.rules.contains(rule) {
            return Ok(false);
        }
        let result = self
            .ec2
            .revoke_security_group_ingress()
            .group_id(group_id)
            .ip_permissions(rules::to_permission(rule, &self.rule_description()))
            .send()
            .await;
        match result {
            Ok(_) => {
                self.progress(&format!(
                    "{} no longer allows {}",
                    group.name,
                    describe_rule(rule)
                ));
                Ok(true)
            }
            Err(e) if code(&e) == Some("InvalidPermission.NotFound") => Ok(false),
            Err(e) => Err(self.api(
                format!(
                    "revoking {}/{} on security group '{}' ({group_id})",
                    rule.protocol.as_str(),
                    rule.from_port,
                    group.name
                ),
                e,
            )),
        }
    }

    async fn launch(&self, spec: &InstanceSpec) -> ProviderResult<(Instance, bool)> {
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
        let valid_type = spec.instance_type.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && spec
                    .instance_type
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        });
        if !valid_type {
            return Err(ProviderError::Invalid(format!(
                "instance_type '{}' is not an EC2 instance type (like t2.micro or t3.small)",
                spec.instance_type
            )));
        }
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

    async fn instances(&self) -> ProviderResult<Vec<Instance>> {
        let mut list: Vec<_> = self
            .describe_lab_instances(LIVE_STATES)
            .await?
            .iter()
            .map(|i| self.to_instance(i))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    async fn terminate(&self, id: &str) -> ProviderResult<bool> {
        let Some(i) = self.describe_instance(id).await? else {
            return Ok(false);
        };
        if tag_value(i.tags(), TAG_LAB) != Some(self.lab()) {
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

    async fn destroy(&self) -> ProviderResult<Vec<String>> {
        let mut removed = Vec::new();
        let ledger = &self.scope.ledger;

        // Instances: by tag (which also finds launches the ledger never
        // confirmed), then the ledger's ids.
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

        // Groups: first drop rules naming other groups, which would keep
        // those groups alive, then delete each.
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

        // The key pair: by tag and by the ledger's name.
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

    async fn images(&self) -> ProviderResult<Vec<ImageInfo>> {
        Ok(images::infos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_endpoints_are_recognised() {
        for e in [
            "http://127.0.0.1:5000",
            "http://localhost:4566/",
            "https://localhost:4566",
            "https://[::1]:5000",
            "http://moto.internal:5000",
        ] {
            assert!(is_emulator(e), "{e}");
        }
        for e in [
            "https://ec2.us-east-1.amazonaws.com",
            "https://vpce-0123.ec2.us-east-1.vpce.amazonaws.com",
        ] {
            assert!(!is_emulator(e), "{e}");
        }
    }

    #[test]
    fn running_instances_are_announced_with_their_cost() {
        let mut data = crate::ledger::LedgerData {
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        let aws = ProviderOptions {
            endpoint_url: Some("https://ec2.eu-west-1.amazonaws.com".into()),
            ..Default::default()
        };
        assert_eq!(running_notice("lab", &data, &aws), None);
        let instance = |name: &str| crate::ledger::Resource {
            kind: ResourceKind::Instance,
            name: name.into(),
            id: Some(format!("i-{name}")),
            state: ResourceState::Created,
            data: serde_json::Value::Null,
            recorded_at: 0,
        };
        data.resources = vec![instance("a"), instance("b")];
        assert_eq!(
            running_notice("lab", &data, &aws).unwrap(),
            "2 instances of lab 'lab' are running on AWS in eu-west-1 and billed until you run \
             `labrun destroy --lab lab` (`labrun status` lists them)"
        );
        data.resources.pop();
        let moto = ProviderOptions {
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..Default::default()
        };
        assert_eq!(
            running_notice("lab", &data, &moto).unwrap(),
            "1 instance of lab 'lab' is recorded on the EC2 emulator at http://127.0.0.1:5000 \
             (nothing is billed); `labrun destroy --lab lab` removes them"
        );
    }

    #[test]
    fn polling_backs_off_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(10), Duration::from_secs(5));
    }
}
