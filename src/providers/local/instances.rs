//! Instances as containers: names, labels, the create request, and how a
//! container reads back as an [`Instance`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointIpamConfig,
    EndpointSettings, HostConfig, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::ListContainersOptions;

use super::docker::{self, api};
use crate::providers::{Instance, InstanceSize, ProviderResult};

/// Every container and network labrun creates carries `labrun.lab=<lab>`.
pub const LABEL_LAB: &str = "labrun.lab";
pub const LABEL_NAME: &str = "labrun.name";
pub const LABEL_IMAGE: &str = "labrun.image";
pub const LABEL_TYPE: &str = "labrun.instance_type";
pub const LABEL_GROUPS: &str = "labrun.security_groups";
pub const LABEL_LAUNCHED: &str = "labrun.launched_at";
/// Set on helper containers (image builds, firewall), which are no instances.
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
    pub network: &'a str,
    pub ip: Ipv4Addr,
    pub public_key: &'a str,
}

/// The container create request for a new instance.
pub fn create_body(n: &NewInstance) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_LAB.to_string(), n.lab.to_string()),
        (LABEL_NAME.to_string(), n.name.to_string()),
        (LABEL_IMAGE.to_string(), n.image.to_string()),
        (LABEL_TYPE.to_string(), n.instance_type.to_string()),
        (LABEL_GROUPS.to_string(), n.groups.join(",")),
        (
            LABEL_LAUNCHED.to_string(),
            crate::ledger::now_secs().to_string(),
        ),
    ]);
    let cpus = n.size.vcpus.min(n.host_cpus.max(1) as f64);
    let host_config = HostConfig {
        network_mode: Some(n.network.to_string()),
        init: Some(true),
        nano_cpus: Some((cpus * 1e9) as i64),
        memory: Some((n.size.memory_mib * 1024 * 1024) as i64),
        port_bindings: Some(HashMap::from([(
            "22/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some(PUBLIC_IP.into()),
                host_port: Some(String::new()),
            }]),
        )])),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(n.ip.to_string()),
            ..Default::default()
        }),
        aliases: Some(vec![n.name.to_string()]),
        ..Default::default()
    };
    ContainerCreateBody {
        hostname: Some(n.name.replace('_', "-")),
        image: Some(n.image_ref.to_string()),
        env: Some(vec![format!("LABRUN_AUTHORIZED_KEYS={}", n.public_key)]),
        exposed_ports: Some(vec!["22/tcp".into()]),
        labels: Some(labels),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.network.to_string(), endpoint)])),
        }),
        ..Default::default()
    }
}

/// A container as seen by labrun.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub instance: Instance,
    pub pid: i64,
    pub started_at: String,
    pub image_ref: String,
}

impl Container {
    pub fn running(&self) -> bool {
        self.instance.state == "running"
    }

    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.instance.private_ip.parse().ok()
    }
}

/// Reads an inspected container of `lab` (on network `network`).
pub fn from_inspect(c: &ContainerInspectResponse, network: &str) -> Container {
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let id = c.id.clone().unwrap_or_default();
    let state = c.state.clone().unwrap_or_default();
    let settings = c.network_settings.clone().unwrap_or_default();
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
        .unwrap_or_default();
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
        name: c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        id,
        instance,
        pid: state.pid.unwrap_or(0),
        started_at: state.started_at.unwrap_or_default(),
        image_ref: c
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
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

/// The instance containers of `lab`, inspected, in name order.
pub async fn list(docker: &Docker, lab: &str, network: &str) -> ProviderResult<Vec<Container>> {
    let mut out = Vec::new();
    for (id, _) in labelled(docker, lab).await? {
        match inspect(docker, &id, network).await? {
            Some(c) if !c.instance.name.is_empty() => out.push(c),
            _ => {}
        }
    }
    out.sort_by(|a, b| a.instance.name.cmp(&b.instance.name));
    Ok(out)
}

/// One container by id or name; `None` if it does not exist.
pub async fn inspect(
    docker: &Docker,
    id_or_name: &str,
    network: &str,
) -> ProviderResult<Option<Container>> {
    match docker.inspect_container(id_or_name, None).await {
        Ok(c) => Ok(Some(from_inspect(&c, network))),
        Err(e) if docker::is_not_found(&e) => Ok(None),
        Err(e) => Err(api(format!("inspecting container {id_or_name}"), e)),
    }
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
        let groups = vec!["sg-1".to_string(), "sg-2".to_string()];
        let body = create_body(&NewInstance {
            lab: "l",
            name: "db_1",
            image: "debian-12",
            image_ref: "labrun/debian-12:r1",
            instance_type: "t3.micro",
            size: crate::providers::instance_size("t3.micro").unwrap(),
            host_cpus: 1,
            groups: &groups,
            network: "labrun-l",
            ip: Ipv4Addr::new(10, 0, 0, 10),
            public_key: "ssh-ed25519 AAAA labrun-l",
        });
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_LAB], "l");
        assert_eq!(labels[LABEL_GROUPS], "sg-1,sg-2");
        assert_eq!(body.hostname.as_deref(), Some("db-1"));
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.nano_cpus, Some(1_000_000_000), "clamped to host CPUs");
        assert_eq!(hc.memory, Some(1024 * 1024 * 1024));
        let binding = &hc.port_bindings.as_ref().unwrap()["22/tcp"]
            .as_ref()
            .unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert!(body.env.as_ref().unwrap()[0].starts_with("LABRUN_AUTHORIZED_KEYS=ssh-ed25519 "));
    }
}
