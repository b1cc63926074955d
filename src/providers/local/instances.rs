//! Instances as containers: names, labels, the create request, and how a
//! container (with its network holder) reads back as an [`Instance`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::ListContainersOptions;

use super::cgroups::InstanceCgroups;
use super::docker::{self, api};
use super::holder;
use crate::providers::{Instance, InstanceSize, ProviderResult};

/// Every container and network labrun creates carries `labrun.lab=<lab>`.
pub const LABEL_LAB: &str = "labrun.lab";
pub const LABEL_NAME: &str = "labrun.name";
pub const LABEL_IMAGE: &str = "labrun.image";
pub const LABEL_TYPE: &str = "labrun.instance_type";
pub const LABEL_GROUPS: &str = "labrun.security_groups";
pub const LABEL_LAUNCHED: &str = "labrun.launched_at";
/// The private IP, known even when the holder (which has it) is gone.
pub const LABEL_IP: &str = "labrun.private_ip";
/// Set on containers that are no instances: network holders, image builds,
/// firewall helpers.
pub const LABEL_ROLE: &str = "labrun.role";

/// The login user of every local image, like Ubuntu AMIs.
pub const LOGIN_USER: &str = "ubuntu";
/// Where labrun reaches instances: their SSH port is published here only.
pub const PUBLIC_IP: &str = "127.0.0.1";

/// `labrun-<lab>.<name>`: unambiguous, since instance names have no dot.
pub fn container_name(lab: &str, name: &str) -> String {
    format!("labrun-{lab}.{name}")
}

/// `i-` and the first 12 hex digits of the container id: stable for the
/// container's life.
pub fn instance_id(container_id: &str) -> String {
    format!("i-{}", &container_id[..container_id.len().min(12)])
}

/// The container id prefix in an instance id, if it is one of ours.
pub fn container_prefix(instance_id: &str) -> Option<&str> {
    instance_id
        .strip_prefix("i-")
        .filter(|p| p.len() == 12 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// EC2's state names for Docker's.
pub fn state_name(status: Option<ContainerStateStatusEnum>) -> &'static str {
    use ContainerStateStatusEnum as S;
    match status {
        Some(S::RUNNING) => "running",
        Some(S::CREATED) | Some(S::RESTARTING) => "pending",
        Some(S::PAUSED) | Some(S::EXITED) | Some(S::DEAD) => "stopped",
        Some(S::REMOVING) | Some(S::STOPPING) => "stopping",
        _ => "pending",
    }
}

/// What a new instance's container is made from.
pub struct NewInstance<'a> {
    pub lab: &'a str,
    pub name: &'a str,
    pub image: &'a str,
    pub image_ref: &'a str,
    pub instance_type: &'a str,
    pub size: InstanceSize,
    pub host_cpus: i64,
    pub groups: &'a [String],
    /// The network holder whose namespace it joins.
    pub holder: &'a str,
    pub ip: Ipv4Addr,
    pub cgroups: &'a InstanceCgroups,
    pub public_key: &'a str,
}

/// What makes systemd shut down cleanly (`docker stop`).
pub const STOP_SIGNAL: &str = "SIGRTMIN+3";

/// Capabilities an instance does without: NET_RAW would let root inside
/// forge another instance's address past an `ip saddr` rule; NET_ADMIN
/// (not in Docker's default set anyway) would let it change its table.
pub const DROPPED_CAPABILITIES: &[&str] = &["NET_RAW", "NET_ADMIN"];

/// The container create request for a new instance: systemd as PID 1 (its
/// own cgroup subtree, a tmpfs /run), in its holder's network namespace.
pub fn create_body(n: &NewInstance) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_LAB.to_string(), n.lab.to_string()),
        (LABEL_NAME.to_string(), n.name.to_string()),
        (LABEL_IMAGE.to_string(), n.image.to_string()),
        (LABEL_TYPE.to_string(), n.instance_type.to_string()),
        (LABEL_GROUPS.to_string(), n.groups.join(",")),
        (LABEL_IP.to_string(), n.ip.to_string()),
        (
            LABEL_LAUNCHED.to_string(),
            crate::ledger::now_secs().to_string(),
        ),
    ]);
    let cpus = n.size.vcpus.min(n.host_cpus.max(1) as f64);
    let host_config = HostConfig {
        network_mode: Some(format!("container:{}", n.holder)),
        init: Some(false),
        nano_cpus: Some((cpus * 1e9) as i64),
        memory: Some((n.size.memory_mib * 1024 * 1024) as i64),
        cap_drop: Some(DROPPED_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        cgroup_parent: Some(n.cgroups.parent.clone()),
        cgroupns_mode: Some(n.cgroups.namespace),
        binds: Some(n.cgroups.binds.clone()),
        tmpfs: Some(HashMap::from([
            ("/run".to_string(), "mode=755".to_string()),
            ("/run/lock".to_string(), String::new()),
        ])),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(n.image_ref.to_string()),
        env: Some(vec![format!("LABRUN_AUTHORIZED_KEYS={}", n.public_key)]),
        stop_signal: Some(STOP_SIGNAL.into()),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// An instance's network holder as seen by labrun.
#[derive(Clone, Debug)]
pub struct Holder {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub pid: i64,
    pub started_at: String,
    pub image_ref: String,
}

/// An instance container (and its holder) as seen by labrun.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub instance: Instance,
    pub started_at: String,
    pub image_ref: String,
    /// `None` when the holder does not exist (removed by hand).
    pub holder: Option<Holder>,
}

impl Container {
    /// The instance container runs (its network may not: see `holder`).
    pub fn running(&self) -> bool {
        self.instance.state == "running"
    }

    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.instance.private_ip.parse().ok()
    }

    /// The holder runs and was (re)started after the instance, which then
    /// still sits in the holder's old, unconnected namespace.
    pub fn stranded(&self) -> bool {
        self.running()
            && self
                .holder
                .as_ref()
                .is_some_and(|h| h.running && started_after(&h.started_at, &self.started_at))
    }
}

/// Whether Docker time `a` is later than `b` (RFC 3339 with nanoseconds,
/// trailing zeros trimmed, so not comparable as text).
pub fn started_after(a: &str, b: &str) -> bool {
    fn key(t: &str) -> (String, u32) {
        let t = t.trim_end_matches('Z');
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        let nanos = format!("{digits:0<9}")[..9].parse().unwrap_or(0);
        (secs.to_string(), nanos)
    }
    key(a) > key(b)
}

fn labels_of(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

/// An inspected container's name, without the engine's leading `/`.
fn inspected_name(c: &ContainerInspectResponse) -> String {
    let name = c.name.as_deref().unwrap_or_default();
    name.trim_start_matches('/').to_string()
}

fn holder_from_inspect(c: &ContainerInspectResponse) -> Holder {
    let state = c.state.clone().unwrap_or_default();
    Holder {
        id: c.id.clone().unwrap_or_default(),
        name: inspected_name(c),
        running: state.running == Some(true),
        pid: state.pid.unwrap_or(0),
        started_at: state.started_at.unwrap_or_default(),
        image_ref: c
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
    }
}

/// Reads an inspected instance container and its inspected holder (on
/// the lab network `network`, which is the holder's).
pub fn from_inspect(
    c: &ContainerInspectResponse,
    holder: Option<&ContainerInspectResponse>,
    network: &str,
) -> Container {
    let labels = labels_of(c);
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let id = c.id.clone().unwrap_or_default();
    let state = c.state.clone().unwrap_or_default();
    let settings = holder
        .and_then(|h| h.network_settings.clone())
        .unwrap_or_default();
    let endpoint = settings
        .networks
        .as_ref()
        .and_then(|n| n.get(network))
        .cloned()
        .unwrap_or_default();
    let private_ip = endpoint
        .ipam_config
        .as_ref()
        .and_then(|i| i.ipv4_address.clone())
        .filter(|a| !a.is_empty())
        .or(endpoint.ip_address.clone().filter(|a| !a.is_empty()))
        .unwrap_or_else(|| label(LABEL_IP));
    let ssh_port = settings
        .ports
        .as_ref()
        .and_then(|p| p.get("22/tcp").cloned().flatten())
        .and_then(|b| {
            b.into_iter()
                .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()))
        })
        .unwrap_or(0);
    let state_name = state_name(state.status);
    let groups = label(LABEL_GROUPS);
    let instance = Instance {
        id: instance_id(&id),
        name: label(LABEL_NAME),
        private_ip,
        public_ip: PUBLIC_IP.into(),
        ssh_port: if state_name == "running" { ssh_port } else { 0 },
        state: state_name.into(),
        user: LOGIN_USER.into(),
        image: label(LABEL_IMAGE),
        instance_type: label(LABEL_TYPE),
        security_groups: groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect(),
        launched_at: label(LABEL_LAUNCHED).parse().unwrap_or(0),
    };
    Container {
        name: inspected_name(c),
        id,
        instance,
        started_at: state.started_at.unwrap_or_default(),
        image_ref: c
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        holder: holder.map(holder_from_inspect),
    }
}

/// Filters for "containers of `lab`".
pub fn lab_filter(lab: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL_LAB}={lab}")])])
}

/// Ids of every container labelled for `lab` (instances and helpers).
pub async fn labelled(docker: &Docker, lab: &str) -> ProviderResult<Vec<(String, String)>> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(lab_filter(lab)),
            ..Default::default()
        }))
        .await
        .map_err(|e| api("listing containers", e))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let id = c.id?;
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            Some((id, name))
        })
        .collect())
}

/// The instance containers of `lab` with their holders, inspected, in
/// name order.
pub async fn list(docker: &Docker, lab: &str, network: &str) -> ProviderResult<Vec<Container>> {
    let mut instances = Vec::new();
    let mut holders: HashMap<String, ContainerInspectResponse> = HashMap::new();
    let ids = labelled(docker, lab).await?;
    let inspected =
        futures_util::future::join_all(ids.iter().map(|(id, _)| inspect_raw(docker, id))).await;
    for c in inspected {
        let Some(c) = c? else {
            continue;
        };
        let labels = labels_of(&c);
        let name = labels.get(LABEL_NAME).cloned().unwrap_or_default();
        match labels.get(LABEL_ROLE).map(String::as_str) {
            None if !name.is_empty() => instances.push(c),
            Some(holder::ROLE) => {
                holders.insert(name, c);
            }
            _ => {}
        }
    }
    let mut out: Vec<Container> = instances
        .iter()
        .map(|c| {
            let name = labels_of(c).get(LABEL_NAME).cloned().unwrap_or_default();
            from_inspect(c, holders.get(&name), network)
        })
        .collect();
    out.sort_by(|a, b| a.instance.name.cmp(&b.instance.name));
    Ok(out)
}

async fn inspect_raw(
    docker: &Docker,
    id_or_name: &str,
) -> ProviderResult<Option<ContainerInspectResponse>> {
    match docker.inspect_container(id_or_name, None).await {
        Ok(c) => Ok(Some(c)),
        Err(e) if docker::is_not_found(&e) => Ok(None),
        Err(e) => Err(api(format!("inspecting container {id_or_name}"), e)),
    }
}

/// Instance `name` of `lab` with its holder; `None` if its container does
/// not exist.
pub async fn inspect(
    docker: &Docker,
    lab: &str,
    name: &str,
    network: &str,
) -> ProviderResult<Option<Container>> {
    let Some(c) = inspect_raw(docker, &container_name(lab, name)).await? else {
        return Ok(None);
    };
    let h = inspect_raw(docker, &holder::holder_name(lab, name)).await?;
    Ok(Some(from_inspect(&c, h.as_ref(), network)))
}

/// The holder of instance `name`, if it exists.
pub async fn inspect_holder(
    docker: &Docker,
    lab: &str,
    name: &str,
) -> ProviderResult<Option<Holder>> {
    Ok(inspect_raw(docker, &holder::holder_name(lab, name))
        .await?
        .as_ref()
        .map(holder_from_inspect))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = instance_id("0123456789abcdef0123");
        assert_eq!(id, "i-0123456789ab");
        assert_eq!(container_prefix(&id), Some("0123456789ab"));
        assert_eq!(container_prefix("i-xyz"), None);
        assert_eq!(container_prefix("sg-0123456789ab"), None);
        assert_eq!(container_name("lab.1", "web_2"), "labrun-lab.1.web_2");
    }

    #[test]
    fn create_request_carries_labels_limits_and_key() {
        // The hostname and the published SSH port are the holder's (see
        // holder.rs); the instance joins its network namespace.
        let groups = vec!["sg-1".to_string(), "sg-2".to_string()];
        let cgroups = crate::providers::local::cgroups::HostCgroups::Hybrid
            .for_instance("labrun-l.db_1", "debian-12")
            .unwrap();
        let body = create_body(&NewInstance {
            lab: "l",
            name: "db_1",
            image: "debian-12",
            image_ref: "labrun/debian-12:r1",
            instance_type: "t3.micro",
            size: crate::providers::instance_size("t3.micro").unwrap(),
            host_cpus: 1,
            groups: &groups,
            holder: "labrunnet-l.db_1",
            ip: Ipv4Addr::new(10, 0, 0, 10),
            cgroups: &cgroups,
            public_key: "ssh-ed25519 AAAA labrun-l",
        });
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_LAB], "l");
        assert_eq!(labels[LABEL_GROUPS], "sg-1,sg-2");
        assert_eq!(labels[LABEL_IP], "10.0.0.10");
        assert!(!labels.contains_key(LABEL_ROLE));
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.nano_cpus, Some(1_000_000_000), "clamped to host CPUs");
        assert_eq!(hc.memory, Some(1024 * 1024 * 1024));
        assert_eq!(
            hc.network_mode.as_deref(),
            Some("container:labrunnet-l.db_1")
        );
        assert!(hc.port_bindings.is_none() && body.hostname.is_none());
        let dropped = hc.cap_drop.as_ref().unwrap();
        assert!(
            dropped.contains(&"NET_RAW".to_string()) && dropped.contains(&"NET_ADMIN".to_string())
        );
        assert!(hc.cap_add.is_none() && hc.privileged.is_none());
        assert_eq!(hc.init, Some(false), "systemd is PID 1");
        assert_eq!(hc.cgroup_parent.as_deref(), Some(cgroups.parent.as_str()));
        assert!(hc.tmpfs.as_ref().unwrap().contains_key("/run"));
        assert!(body.env.as_ref().unwrap()[0].starts_with("LABRUN_AUTHORIZED_KEYS=ssh-ed25519 "));
    }

    #[test]
    fn start_times_compare_as_times() {
        // Docker trims trailing zeros of the nanoseconds.
        assert!(started_after(
            "2026-11-30T12:28:05.1235Z",
            "2026-11-30T12:28:05.12345Z"
        ));
        assert!(!started_after(
            "2026-11-30T12:28:05.1234Z",
            "2026-11-30T12:28:05.12345Z"
        ));
        assert!(started_after(
            "2026-11-30T12:28:06Z",
            "2026-11-30T12:28:05.9Z"
        ));
        assert!(!started_after(
            "2026-11-30T12:28:05Z",
            "2026-11-30T12:28:05Z"
        ));
    }
}
