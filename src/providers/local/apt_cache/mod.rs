//! The shared package cache of the local provider: one caching proxy for
//! the distribution archives (Debian's `apt-cacher-ng`) that every local
//! instance's apt uses, so the second and later installs of a package, in
//! any lab, come from this machine.
//!
//! - **What runs**: container `labrun-apt-cache` (`labrun.role=apt-cache`,
//!   belonging to no lab) from an image built here ([`image`]), its cache
//!   on the Docker volume of the same name (labelled alike). Started on
//!   first use (the first launch of a local instance) and kept running;
//!   `labrun images --prune` removes container, volume and image.
//!   `LABRUN_APT_CACHE=off` leaves it out; `LABRUN_APT_CACHE_NAME` names
//!   another one (a separate cache).
//! - **How instances reach it**: it joins each lab's network at the lab
//!   subnet's address `.2` (instances have `.10` up, the gateway `.1`), so
//!   an instance reaches it on its own network only (Docker keeps bridge
//!   networks apart). Instances launched while it is on get an apt setting
//!   and a script ([`client`]) that use it for the archives it serves while
//!   it answers and go straight to the mirror otherwise.
//! - **Isolation**: it is on every lab's network, so it must never carry
//!   traffic between them: IP forwarding is off in its network namespace,
//!   and apt-cacher-ng serves only the archives labrun remaps
//!   (`ForceManaged`: anything else, another lab's address above all, gets
//!   403), with no CONNECT tunnels and no report page. It only answers;
//!   instances' security groups are unchanged (their egress is open, their
//!   ingress rules decide whether the cache, like anything on their
//!   network, may connect in, which it never tries).

pub mod client;
pub mod image;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkConnectRequest,
    NetworkDisconnectRequest, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, RemoveImageOptions,
    RemoveVolumeOptions, UploadToContainerOptions,
};

use self::client::Endpoint;
use super::docker::{self, api};
use super::image::mirrors::{self, Archive};
use super::instances::LABEL_ROLE;
use super::network::{LabNetwork, fnv1a};
use crate::providers::{ProviderError, ProviderResult};
use crate::report::Reporter;

/// `labrun.role` of the cache's container and volume.
pub const ROLE: &str = "apt-cache";
/// Where the cache listens (apt-cacher-ng's usual port).
pub const PORT: u16 = 3142;
/// The container's configuration, hashed: a different one is recreated.
const LABEL_CONFIG: &str = "labrun.apt_cache.config";
const DEFAULT_NAME: &str = "labrun-apt-cache";

/// Whether and which cache to use, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    /// The container's and the volume's name.
    pub name: String,
}

impl Settings {
    /// `LABRUN_APT_CACHE=on|off` (default on), `LABRUN_APT_CACHE_NAME`.
    pub fn from_env() -> ProviderResult<Settings> {
        let value = std::env::var("LABRUN_APT_CACHE").unwrap_or_default();
        let name = std::env::var("LABRUN_APT_CACHE_NAME").unwrap_or_default();
        Settings::parse(&value, &name)
    }

    pub fn parse(value: &str, name: &str) -> ProviderResult<Settings> {
        let enabled = match value.trim() {
            "" | "on" | "auto" => true,
            "off" => false,
            other => {
                return Err(ProviderError::Invalid(format!(
                    "LABRUN_APT_CACHE={other}: expected on or off"
                )));
            }
        };
        let name = match name.trim() {
            "" => DEFAULT_NAME.to_string(),
            n if n.len() <= 64
                && n.starts_with(|c: char| c.is_ascii_alphanumeric())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) =>
            {
                n.to_string()
            }
            other => {
                return Err(ProviderError::Invalid(format!(
                    "LABRUN_APT_CACHE_NAME={other}: a container name (letters, digits, '_', '.', '-')"
                )));
            }
        };
        Ok(Settings { enabled, name })
    }
}

/// The cache's address on lab network `net`: its `.2`.
pub fn address(net: &LabNetwork) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.subnet) + 2)
}

/// The archives the cache serves: the http mirrors images use, as
/// `http://host[:port]` (https cannot be cached by a proxy).
pub fn archives() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in [Archive::Debian, Archive::DebianSecurity, Archive::Ubuntu] {
        let m = mirrors::mirror(a);
        let Some(rest) = m.strip_prefix("http://") else {
            continue;
        };
        let host = rest.split('/').next().unwrap_or("");
        let origin = format!("http://{host}");
        if !host.is_empty() && !out.contains(&origin) {
            out.push(origin);
        }
    }
    out
}

/// What instances of lab network `net` are told.
pub fn endpoint(net: &LabNetwork) -> Endpoint {
    Endpoint {
        address: address(net),
        port: PORT,
        archives: archives(),
        fallback: mirrors::apt_proxy().unwrap_or_else(|| "DIRECT".into()),
    }
}

/// apt-cacher-ng's command line: one remap per archive host (requests for
/// it are fetched from it, through this machine's apt proxy if it has
/// one), everything else refused by the image's `ForceManaged`.
pub fn daemon_args(archives: &[String], upstream_proxy: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "-c".to_string(),
        "/etc/apt-cacher-ng".to_string(),
        "ForeGround=1".to_string(),
    ];
    for (i, origin) in archives.iter().enumerate() {
        let host = origin.trim_start_matches("http://");
        args.push(format!("Remap-labrun{i}={host} ; {origin}"));
    }
    if let Some(p) = upstream_proxy {
        args.push(format!("Proxy={p}"));
    }
    args
}

/// The create request of the cache container.
pub fn create_body(settings: &Settings, image: &str, args: &[String]) -> ContainerCreateBody {
    let config = format!("{:016x}", fnv1a(format!("{image}|{args:?}").as_bytes()));
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(args.to_vec()),
        labels: Some(HashMap::from([
            (LABEL_ROLE.to_string(), ROLE.to_string()),
            (LABEL_CONFIG.to_string(), config),
        ])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:{}", settings.name, image::CACHE_DIR)]),
            memory: Some(256 * 1024 * 1024),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            // On every lab's network: it must not route between them.
            sysctls: Some(HashMap::from([(
                "net.ipv4.ip_forward".to_string(),
                "0".to_string(),
            )])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes the cache run and answer on lab network `net`: image built,
/// volume and container created (again if its configuration changed),
/// started, and connected to the network at [`address`].
pub async fn ensure(
    docker: &Docker,
    reporter: &Reporter,
    settings: &Settings,
    net: &LabNetwork,
) -> ProviderResult<()> {
    // Settled without building anything when the container is as wanted.
    let args = daemon_args(&archives(), mirrors::apt_proxy().as_deref());
    let wanted = create_body(settings, &image::wanted()?, &args);
    let wanted_config = wanted
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_CONFIG))
        .cloned();
    let current = match docker.inspect_container(&settings.name, None).await {
        Ok(c) => Some(c),
        Err(e) if docker::is_not_found(&e) => None,
        Err(e) => return Err(api(format!("inspecting container {}", settings.name), e)),
    };
    let current = match current {
        Some(c)
            if c.config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_CONFIG))
                != wanted_config.as_ref() =>
        {
            remove_container(docker, &settings.name).await?;
            None
        }
        other => other,
    };
    let (running, networks) = match &current {
        Some(c) => (
            c.state.as_ref().and_then(|s| s.running) == Some(true),
            c.network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map(|n| n.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        None => {
            let built = image::ensure(docker, reporter).await?;
            create(docker, settings, create_body(settings, &built, &args)).await?;
            (false, Vec::new())
        }
    };
    if !running {
        match docker.start_container(&settings.name, None).await {
            Ok(()) => {}
            Err(e) if docker::status(&e) == Some(304) => {}
            Err(e) => return Err(api(format!("starting container {}", settings.name), e)),
        }
    }
    if !networks.contains(&net.name) {
        connect(docker, settings, net).await?;
    }
    Ok(())
}

async fn create(
    docker: &Docker,
    settings: &Settings,
    body: ContainerCreateBody,
) -> ProviderResult<()> {
    let volume = VolumeCreateRequest {
        name: Some(settings.name.clone()),
        labels: Some(HashMap::from([(LABEL_ROLE.to_string(), ROLE.to_string())])),
        ..Default::default()
    };
    docker
        .create_volume(volume)
        .await
        .map_err(|e| api(format!("creating volume {}", settings.name), e))?;
    match docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(settings.name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Another labrun made it meanwhile.
        Err(e) if docker::is_conflict(&e) => Ok(()),
        Err(e) => Err(api(format!("creating container {}", settings.name), e)),
    }
}

async fn connect(docker: &Docker, settings: &Settings, net: &LabNetwork) -> ProviderResult<()> {
    let request = NetworkConnectRequest {
        container: settings.name.clone(),
        endpoint_config: Some(EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(address(net).to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    match docker.connect_network(&net.name, request).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // Another labrun connected it meanwhile.
            let now = docker.inspect_container(&settings.name, None).await.ok();
            let connected = now
                .and_then(|c| c.network_settings)
                .and_then(|n| n.networks)
                .is_some_and(|n| n.contains_key(&net.name));
            if connected {
                Ok(())
            } else {
                Err(api(
                    format!("connecting {} to network {}", settings.name, net.name),
                    e,
                ))
            }
        }
    }
}

/// Copies the apt setting and script of [`client`] into instance container
/// `id` (created, not yet started).
pub async fn configure_instance(
    docker: &Docker,
    id: &str,
    endpoint: &Endpoint,
) -> ProviderResult<()> {
    let archive = client::tar(&client::files(endpoint));
    docker
        .upload_to_container(
            id,
            Some(UploadToContainerOptions {
                path: "/".into(),
                ..Default::default()
            }),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(|e| {
            api(
                "writing the package cache's apt settings into the instance",
                e,
            )
        })
}

/// Disconnects every package cache from lab network `network` (before the
/// network is removed: the engine refuses to remove a network in use).
pub async fn disconnect_all(docker: &Docker, network: &str) -> ProviderResult<()> {
    let filters = HashMap::from([
        ("label".to_string(), vec![format!("{LABEL_ROLE}={ROLE}")]),
        ("network".to_string(), vec![network.to_string()]),
    ]);
    let caches = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| api("listing the package caches", e))?;
    for c in caches {
        let Some(id) = c.id else { continue };
        let request = NetworkDisconnectRequest {
            container: id.clone(),
            force: Some(true),
        };
        match docker.disconnect_network(network, request).await {
            Ok(()) => {}
            Err(e) if docker::is_not_found(&e) => {}
            Err(e) => {
                return Err(api(
                    format!("disconnecting the package cache from network {network}"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

async fn remove_container(docker: &Docker, name: &str) -> ProviderResult<bool> {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(true),
        Err(e) if docker::is_not_found(&e) => Ok(false),
        Err(e) => Err(api(format!("removing container {name}"), e)),
    }
}

/// Removes the cache: its container, its volume (the cached packages) and
/// its images. Says what it removed; can be run again.
pub async fn prune(docker: &Docker, settings: &Settings) -> ProviderResult<Vec<String>> {
    let mut lines = Vec::new();
    if remove_container(docker, &settings.name).await? {
        lines.push(format!(
            "removed the package cache container {}",
            settings.name
        ));
    }
    match docker
        .remove_volume(&settings.name, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => lines.push(format!(
            "removed the package cache volume {} (the cached packages)",
            settings.name
        )),
        Err(e) if docker::is_not_found(&e) => {}
        Err(e) => return Err(api(format!("removing volume {}", settings.name), e)),
    }
    let images = docker
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([(
                "reference".to_string(),
                vec![image::REPOSITORY.to_string()],
            )])),
            ..Default::default()
        }))
        .await
        .map_err(|e| api("listing images", e))?;
    for i in images {
        for tag in i.repo_tags {
            // Another cache (LABRUN_APT_CACHE_NAME) may still use it.
            match docker
                .remove_image(&tag, None::<RemoveImageOptions>, None)
                .await
            {
                Ok(_) => lines.push(format!("removed image {tag}")),
                Err(e) if docker::is_not_found(&e) || docker::is_conflict(&e) => {}
                Err(e) => return Err(api(format!("removing image {tag}"), e)),
            }
        }
    }
    Ok(lines)
}

/// The cache as `labrun images` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub enabled: bool,
    pub container: String,
    /// `running`, `stopped` or `absent`.
    pub state: String,
    /// Lab networks it serves.
    pub networks: usize,
}

pub async fn status(docker: &Docker, settings: &Settings) -> ProviderResult<Status> {
    let (state, networks) = match docker.inspect_container(&settings.name, None).await {
        Ok(c) => (
            if c.state.and_then(|s| s.running) == Some(true) {
                "running"
            } else {
                "stopped"
            },
            c.network_settings
                .and_then(|n| n.networks)
                .map(|n| n.keys().filter(|k| k.starts_with("labrun-")).count())
                .unwrap_or(0),
        ),
        Err(e) if docker::is_not_found(&e) => ("absent", 0),
        Err(e) => return Err(api(format!("inspecting container {}", settings.name), e)),
    };
    Ok(Status {
        enabled: settings.enabled,
        container: settings.name.clone(),
        state: state.into(),
        networks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        let on = Settings::parse("", "").unwrap();
        assert!(on.enabled && on.name == "labrun-apt-cache");
        assert!(!Settings::parse("off", "").unwrap().enabled);
        assert!(Settings::parse(" on ", "").unwrap().enabled);
        let e = Settings::parse("maybe", "").unwrap_err().to_string();
        assert!(
            e.contains("LABRUN_APT_CACHE=maybe") && e.contains("on or off"),
            "{e}"
        );
        assert_eq!(
            Settings::parse("", "my-cache.2").unwrap().name,
            "my-cache.2"
        );
        assert!(Settings::parse("", "../x").is_err());
        assert!(Settings::parse("", "a b").is_err());
    }

    #[test]
    fn the_cache_sits_at_dot_two_and_serves_only_remapped_archives() {
        let net = LabNetwork {
            name: "labrun-l".into(),
            id: "n".into(),
            subnet: Ipv4Addr::new(10, 150, 7, 0),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 150, 7, 1),
        };
        assert_eq!(address(&net), Ipv4Addr::new(10, 150, 7, 2));
        assert!(
            net.host_addresses().all(|a| a != address(&net)),
            "never an instance's"
        );
        let args = daemon_args(
            &[
                "http://deb.debian.org".into(),
                "http://m.example:8080".into(),
            ],
            Some("http://proxy:3128"),
        );
        assert_eq!(
            args,
            [
                "-c",
                "/etc/apt-cacher-ng",
                "ForeGround=1",
                "Remap-labrun0=deb.debian.org ; http://deb.debian.org",
                "Remap-labrun1=m.example:8080 ; http://m.example:8080",
                "Proxy=http://proxy:3128"
            ]
        );
        let body = create_body(
            &Settings::parse("", "").unwrap(),
            "labrun/apt-cache:r1",
            &args,
        );
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.sysctls.as_ref().unwrap()["net.ipv4.ip_forward"], "0");
        assert_eq!(
            hc.binds.as_ref().unwrap()[0],
            "labrun-apt-cache:/var/cache/apt-cacher-ng"
        );
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_ROLE], ROLE);
        assert!(
            !labels.contains_key(super::super::instances::LABEL_LAB),
            "no lab's"
        );
        let other = create_body(
            &Settings::parse("", "").unwrap(),
            "labrun/apt-cache:r2",
            &args,
        );
        assert_ne!(other.labels.unwrap()[LABEL_CONFIG], labels[LABEL_CONFIG]);
    }
}
