//! The network holder of an instance: a small container that owns the
//! instance's network namespace (its private IP on the lab network, its
//! SSH port published on 127.0.0.1, its nftables table) while the instance
//! container joins it (`network_mode: container:<holder>`).
//!
//! This is what makes security groups fail closed:
//! - restarting the instance (`docker restart`, a reboot inside) keeps the
//!   namespace, so the table stays;
//! - the holder installs a default-deny table itself the moment it starts,
//!   before labrun applies the real one, so its namespace is never open;
//! - an instance whose holder was restarted is left in a namespace with no
//!   interface at all (no network) until labrun applies the table to the
//!   new one and restarts the instance into it;
//! - the instance cannot start without a running holder.
//!
//! The holder runs the instance's image with every capability dropped but
//! NET_ADMIN (for its own `nft`); root inside the instance shares the
//! namespace but not the holder's processes or capabilities.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::firewall;
use super::instances::{LABEL_LAB, LABEL_NAME, LABEL_ROLE, PUBLIC_IP};

/// `labrun.role` of holders.
pub const ROLE: &str = "network";

/// `labrunnet-<lab>.<name>`: never an instance container's name (those
/// start with `labrun-`).
pub fn holder_name(lab: &str, name: &str) -> String {
    format!("labrunnet-{lab}.{name}")
}

/// What a new holder is made from.
pub struct NewHolder<'a> {
    pub lab: &'a str,
    /// The instance's name.
    pub name: &'a str,
    pub image_ref: &'a str,
    pub network: &'a str,
    pub ip: Ipv4Addr,
}

/// The holder's start: the default-deny table, then nothing but waiting.
/// If `nft` fails the holder exits, and its instance cannot start.
const START: &str = "printf '%s' \"$LABRUN_NFT\" | nft -f - && exec sleep infinity";

/// The container create request for an instance's holder.
pub fn create_body(h: &NewHolder) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_LAB.to_string(), h.lab.to_string()),
        (LABEL_NAME.to_string(), h.name.to_string()),
        (LABEL_ROLE.to_string(), ROLE.to_string()),
    ]);
    let host_config = HostConfig {
        network_mode: Some(h.network.to_string()),
        init: Some(true),
        memory: Some(32 * 1024 * 1024),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(vec!["NET_ADMIN".into()]),
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
            ipv4_address: Some(h.ip.to_string()),
            ..Default::default()
        }),
        aliases: Some(vec![h.name.to_string()]),
        ..Default::default()
    };
    ContainerCreateBody {
        hostname: Some(h.name.replace('_', "-")),
        image: Some(h.image_ref.to_string()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), START.into()]),
        cmd: Some(vec![]),
        env: Some(vec![format!("LABRUN_NFT={}", firewall::boot_ruleset())]),
        exposed_ports: Some(vec!["22/tcp".into()]),
        stop_signal: Some("SIGTERM".into()),
        labels: Some(labels),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(h.network.to_string(), endpoint)])),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_owns_the_address_the_port_and_a_closed_table() {
        let body = create_body(&NewHolder {
            lab: "l",
            name: "db_1",
            image_ref: "labrun/debian-12:r1",
            network: "labrun-l",
            ip: Ipv4Addr::new(10, 0, 0, 10),
        });
        assert_eq!(holder_name("l", "db_1"), "labrunnet-l.db_1");
        assert_eq!(body.hostname.as_deref(), Some("db-1"));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_ROLE], ROLE);
        assert_eq!(labels[LABEL_LAB], "l");
        let hc = body.host_config.as_ref().unwrap();
        let binding = &hc.port_bindings.as_ref().unwrap()["22/tcp"]
            .as_ref()
            .unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(hc.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(hc.cap_add.as_deref(), Some(&["NET_ADMIN".to_string()][..]));
        let env = &body.env.as_ref().unwrap()[0];
        assert!(env.starts_with("LABRUN_NFT=") && env.contains("policy drop;"));
        let endpoint = &body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap()["labrun-l"];
        assert_eq!(
            endpoint
                .ipam_config
                .as_ref()
                .unwrap()
                .ipv4_address
                .as_deref(),
            Some("10.0.0.10")
        );
    }
}
