//! The lab's "VPC": one user-defined bridge network per lab, on a /24 that
//! collides with no other Docker network and no route of this machine.
//! Its gateway is where the host's (the operator's) traffic comes from.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use serde_json::json;

use super::docker::{self, api};
use super::instances::LABEL_LAB;
use crate::ledger::{Ledger, ResourceKind};
use crate::providers::{ProviderError, ProviderResult};

/// A lab network as labrun uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabNetwork {
    pub name: String,
    pub id: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl LabNetwork {
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    /// Host addresses instances may get: from .10 up, below broadcast.
    pub fn host_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.subnet);
        let size = 1u32 << (32 - self.prefix as u32);
        (10..size.saturating_sub(1)).map(move |i| Ipv4Addr::from(base + i))
    }
}

pub fn network_name(lab: &str) -> String {
    format!("labrun-{lab}")
}

/// A network (`address`, prefix length).
pub type Net = (Ipv4Addr, u8);

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

pub fn overlaps(a: Net, b: Net) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

pub fn parse_net(text: &str) -> Option<Net> {
    let (addr, len) = text.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    Some((Ipv4Addr::from(u32::from(addr) & mask(len)), len))
}

/// FNV-1a: a stable hash (std's is not stable across releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The lab's /24: among 10.100.0.0/24 to 10.199.255.0/24, the first one,
/// counting from a spot picked by the lab's name, that overlaps nothing
/// `taken`.
pub fn choose_subnet(lab: &str, taken: &[Net]) -> Option<Net> {
    const COUNT: u32 = 100 * 256;
    let start = (fnv1a(lab.as_bytes()) % COUNT as u64) as u32;
    (0..COUNT)
        .map(|i| (start + i) % COUNT)
        .map(|n| {
            let second = 100 + n / 256;
            let third = n % 256;
            (Ipv4Addr::new(10, second as u8, third as u8, 0), 24)
        })
        .find(|candidate| !taken.iter().any(|t| overlaps(*candidate, *t)))
}

/// Networks this machine routes to (not the default route), from
/// /proc/net/route; empty where there is no such file.
pub fn host_routes() -> Vec<Net> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // Little-endian hex in the file.
            let dest = Ipv4Addr::from(dest.swap_bytes());
            let m = m.swap_bytes();
            let prefix = m.count_ones() as u8;
            (prefix > 0).then_some((dest, prefix))
        })
        .collect()
}

fn from_ipam(name: &str, id: Option<String>, ipam: Option<Ipam>) -> ProviderResult<LabNetwork> {
    let config = ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().find(|c| c.subnet.is_some()))
        .ok_or_else(|| {
            ProviderError::State(format!(
                "network {name} has no IPv4 subnet; remove it with `labrun destroy`"
            ))
        })?;
    let (subnet, prefix) = config
        .subnet
        .as_deref()
        .and_then(parse_net)
        .ok_or_else(|| ProviderError::State(format!("network {name}: bad subnet")))?;
    let gateway = config
        .gateway
        .as_deref()
        .and_then(|g| g.parse().ok())
        .unwrap_or(Ipv4Addr::from(u32::from(subnet) + 1));
    Ok(LabNetwork {
        name: name.to_string(),
        id: id.unwrap_or_default(),
        subnet,
        prefix,
        gateway,
    })
}

/// The lab's network if it exists.
pub async fn find(docker: &Docker, lab: &str) -> ProviderResult<Option<LabNetwork>> {
    let name = network_name(lab);
    match docker.inspect_network(&name, None).await {
        Ok(n) => from_ipam(&name, n.id, n.ipam).map(Some),
        Err(e) if docker::is_not_found(&e) => Ok(None),
        Err(e) => Err(api(format!("inspecting network {name}"), e)),
    }
}

/// Subnets of every Docker network on the engine.
async fn engine_subnets(docker: &Docker) -> ProviderResult<Vec<Net>> {
    let nets = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(|e| api("listing networks", e))?;
    Ok(nets
        .into_iter()
        .filter_map(|n| n.ipam.and_then(|i| i.config))
        .flatten()
        .filter_map(|c| c.subnet.as_deref().and_then(parse_net))
        .collect())
}

/// The lab's network, created (and recorded) if missing.
pub async fn ensure(docker: &Docker, ledger: &Ledger, lab: &str) -> ProviderResult<LabNetwork> {
    let name = network_name(lab);
    if let Some(net) = find(docker, lab).await? {
        record(ledger, &net)?;
        return Ok(net);
    }
    let mut taken = engine_subnets(docker).await?;
    taken.extend(host_routes());
    for _attempt in 0..20 {
        let (subnet, prefix) = choose_subnet(lab, &taken).ok_or_else(|| {
            ProviderError::State("no free /24 left in 10.100.0.0-10.199.255.0".into())
        })?;
        let gateway = Ipv4Addr::from(u32::from(subnet) + 1);
        let cidr = format!("{subnet}/{prefix}");
        ledger.intend(ResourceKind::Network, &name, json!({ "subnet": cidr }))?;
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(cidr.clone()),
                    gateway: Some(gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            labels: Some(HashMap::from([(LABEL_LAB.to_string(), lab.to_string())])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(created) => {
                let net = LabNetwork {
                    name: name.clone(),
                    id: created.id,
                    subnet,
                    prefix,
                    gateway,
                };
                record(ledger, &net)?;
                return Ok(net);
            }
            Err(e) if docker::is_conflict(&e) => {
                if let Some(net) = find(docker, lab).await? {
                    record(ledger, &net)?;
                    return Ok(net);
                }
            }
            // Another network took the subnet meanwhile: pick again.
            Err(e) if e.to_string().to_ascii_lowercase().contains("overlap") => {
                taken.push((subnet, prefix));
            }
            Err(e) => return Err(api(format!("creating network {name}"), e)),
        }
    }
    Err(ProviderError::State(format!(
        "could not find a free subnet for network {name}"
    )))
}

fn record(ledger: &Ledger, net: &LabNetwork) -> ProviderResult<()> {
    let data = json!({ "subnet": net.cidr(), "gateway": net.gateway.to_string() });
    let known = ledger
        .resources(ResourceKind::Network)
        .into_iter()
        .any(|r| r.name == net.name && r.id.as_deref() == Some(&net.id) && r.data == data);
    if !known {
        ledger.created(ResourceKind::Network, &net.name, &net.id, data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_avoid_what_is_taken() {
        let first = choose_subnet("lab", &[]).unwrap();
        assert_eq!(first.1, 24);
        assert_eq!(first.0.octets()[0], 10);
        assert_eq!(choose_subnet("lab", &[]), Some(first), "stable per lab");
        let next = choose_subnet("lab", &[first]).unwrap();
        assert_ne!(next, first);
        // A wide route over all candidates leaves nothing.
        assert_eq!(
            choose_subnet("lab", &[parse_net("10.0.0.0/8").unwrap()]),
            None
        );
        // 10.100.0.0/16 taken: the choice is outside it.
        let taken = [parse_net("10.100.0.0/16").unwrap()];
        let c = choose_subnet("x", &taken).unwrap();
        assert!(!overlaps(c, taken[0]));
    }

    #[test]
    fn overlap_and_parse() {
        let a = parse_net("172.17.0.0/16").unwrap();
        assert!(overlaps(a, parse_net("172.17.5.0/24").unwrap()));
        assert!(!overlaps(a, parse_net("172.18.0.0/24").unwrap()));
        assert_eq!(
            parse_net("10.1.2.3/24"),
            Some((Ipv4Addr::new(10, 1, 2, 0), 24))
        );
        assert_eq!(parse_net("10.1.2.3"), None);
        let net = LabNetwork {
            name: "n".into(),
            id: "i".into(),
            subnet: Ipv4Addr::new(10, 5, 6, 0),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 5, 6, 1),
        };
        let hosts: Vec<_> = net.host_addresses().collect();
        assert_eq!(hosts.first(), Some(&Ipv4Addr::new(10, 5, 6, 10)));
        assert_eq!(hosts.last(), Some(&Ipv4Addr::new(10, 5, 6, 254)));
    }
}
