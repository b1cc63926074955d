//! The domain: instances, security groups, rules, and their validation.

use serde::{Deserialize, Serialize};

use super::{ProviderError, ProviderResult};

/// What `ec2::launch` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub name: String,
    pub image: String,
    pub instance_type: String,
    /// Security group ids.
    pub security_groups: Vec<String>,
}

/// A running (or stopped) instance as the playbook sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub private_ip: String,
    /// The address the operator (labrun) uses to reach the instance.
    pub public_ip: String,
    /// The SSH port at `public_ip` (22 on AWS, a published port locally).
    pub ssh_port: u16,
    /// `pending`, `running`, `stopping`, `stopped`, `terminated`.
    pub state: String,
    /// The login user (`ubuntu` on Ubuntu images, like Ubuntu AMIs).
    pub user: String,
    pub image: String,
    pub instance_type: String,
    pub security_groups: Vec<String>,
    /// Unix seconds.
    pub launched_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    /// Built/cached and ready to launch without waiting.
    pub ready: bool,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> ProviderResult<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(ProviderError::Invalid(format!(
                "protocol '{other}': expected \"tcp\" or \"udp\""
            ))),
        }
    }
}

/// Where allowed traffic comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An IPv4 network, normalised (`10.0.0.5/32`).
    Cidr(String),
    /// Members of a security group, by group id.
    Group(String),
}

/// One ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: Protocol,
    pub from_port: u16,
    pub to_port: u16,
    pub source: Source,
}

impl Rule {
    /// A rule checked the one way both `SecurityGroup.allow` and `labrun sg
    /// allow` check it: ports in range, a range that does not run backwards.
    pub fn new(
        protocol: Protocol,
        port: i64,
        to_port: Option<i64>,
        source: Source,
    ) -> ProviderResult<Rule> {
        let from_port = parse_port(port, "port")?;
        let to_port = match to_port {
            Some(p) => parse_port(p, "to_port")?,
            None => from_port,
        };
        if to_port < from_port {
            return Err(ProviderError::Invalid(format!(
                "to_port {to_port} is below port {from_port}"
            )));
        }
        Ok(Rule {
            protocol,
            from_port,
            to_port,
            source,
        })
    }

    /// `tcp 3306 from 10.0.0.5/32`, `tcp 8000-8080 from sg-...`.
    pub fn describe(&self) -> String {
        let ports = if self.from_port == self.to_port {
            self.from_port.to_string()
        } else {
            format!("{}-{}", self.from_port, self.to_port)
        };
        let from = match &self.source {
            Source::Cidr(c) => c.clone(),
            Source::Group(g) => g.clone(),
        };
        format!("{} {ports} from {from}", self.protocol.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: Vec<Rule>,
}

impl SecurityGroup {
    /// "1 rule" / "3 rules", for what users read.
    pub fn rules_summary(&self) -> String {
        match self.rules.len() {
            1 => "1 rule".to_string(),
            n => format!("{n} rules"),
        }
    }
}

/// CPU and memory of an instance type, as the local provider applies them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceSize {
    pub vcpus: f64,
    pub memory_mib: u64,
}

/// The EC2 types labrun knows, with their real sizes.
pub const INSTANCE_TYPES: &[(&str, InstanceSize)] = &[
    (
        "t2.nano",
        InstanceSize {
            vcpus: 1.0,
            memory_mib: 512,
        },
    ),
    (
        "t2.micro",
        InstanceSize {
            vcpus: 1.0,
            memory_mib: 1024,
        },
    ),
    (
        "t2.small",
        InstanceSize {
            vcpus: 1.0,
            memory_mib: 2048,
        },
    ),
    (
        "t2.medium",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 4096,
        },
    ),
    (
        "t2.large",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 8192,
        },
    ),
    (
        "t3.nano",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 512,
        },
    ),
    (
        "t3.micro",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 1024,
        },
    ),
    (
        "t3.small",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 2048,
        },
    ),
    (
        "t3.medium",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 4096,
        },
    ),
    (
        "t3.large",
        InstanceSize {
            vcpus: 2.0,
            memory_mib: 8192,
        },
    ),
];

/// The size of `instance_type`, or an error listing the known types.
pub fn instance_size(instance_type: &str) -> ProviderResult<InstanceSize> {
    INSTANCE_TYPES
        .iter()
        .find(|(n, _)| *n == instance_type)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            ProviderError::Invalid(format!(
                "unknown instance_type '{instance_type}'; known types: {}",
                INSTANCE_TYPES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Parses and normalises an IPv4 CIDR (`10.0.0.5` → `10.0.0.5/32`,
/// host bits cleared: `10.0.0.5/24` → `10.0.0.0/24`).
pub fn parse_cidr(text: &str) -> ProviderResult<String> {
    let bad = || {
        ProviderError::Invalid(format!(
            "'{text}' is not an IPv4 CIDR (expected a.b.c.d/n with n from 0 to 32, e.g. 10.0.0.5/32 or 0.0.0.0/0)"
        ))
    };
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().map_err(|_| bad())?),
        None => (text, 32),
    };
    if len > 32 {
        return Err(bad());
    }
    let ip: std::net::Ipv4Addr = addr.trim().parse().map_err(|_| bad())?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
    Ok(format!("{net}/{len}"))
}

/// A port from a playbook (1-65535).
pub fn parse_port(value: i64, what: &str) -> ProviderResult<u16> {
    if (1..=65535).contains(&value) {
        Ok(value as u16)
    } else {
        Err(ProviderError::Invalid(format!(
            "{what} {value} is out of range (1-65535)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalised_and_validated() {
        assert_eq!(parse_cidr("10.1.2.3").unwrap(), "10.1.2.3/32");
        assert_eq!(parse_cidr("10.1.2.3/24").unwrap(), "10.1.2.0/24");
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        for bad in [
            "10.1.2/24",
            "10.1.2.3/33",
            "x",
            "10.0.0.1/-1",
            "300.1.1.1/32",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_and_types_are_checked() {
        assert_eq!(parse_port(3306, "port").unwrap(), 3306);
        assert!(parse_port(0, "port").is_err());
        assert!(
            parse_port(70000, "port")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert_eq!(instance_size("t2.micro").unwrap().memory_mib, 1024);
        assert!(
            instance_size("m9.huge")
                .unwrap_err()
                .to_string()
                .contains("t2.micro")
        );
    }
}
