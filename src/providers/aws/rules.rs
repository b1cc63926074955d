//! Ingress rules between the domain's [`Rule`] and EC2's `IpPermission`.

use aws_sdk_ec2::types::{IpPermission, IpRange, UserIdGroupPair};

use crate::providers::{Protocol, Rule, Source, parse_cidr};

/// One rule as the single permission `AuthorizeSecurityGroupIngress` and
/// `RevokeSecurityGroupIngress` take.
pub fn to_permission(rule: &Rule, description: &str) -> IpPermission {
    let p = IpPermission::builder()
        .ip_protocol(rule.protocol.as_str())
        .from_port(rule.from_port as i32)
        .to_port(rule.to_port as i32);
    match &rule.source {
        Source::Cidr(cidr) => p.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .description(description)
                .build(),
        ),
        Source::Group(id) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(id)
                .description(description)
                .build(),
        ),
    }
    .build()
}

/// `tcp/3306 from 172.31.0.5/32`.
pub fn describe_rule(rule: &Rule) -> String {
    let ports = if rule.from_port == rule.to_port {
        rule.from_port.to_string()
    } else {
        format!("{}-{}", rule.from_port, rule.to_port)
    };
    let source = match &rule.source {
        Source::Cidr(c) => c.as_str(),
        Source::Group(g) => g.as_str(),
    };
    format!("{}/{ports} from {source}", rule.protocol.as_str())
}

/// The rules a group's permissions hold, one per source, sorted; and a
/// description of each permission the domain cannot express (all traffic,
/// ICMP, IPv6, prefix lists), which labrun leaves alone.
pub fn from_permissions(perms: &[IpPermission]) -> (Vec<Rule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut other = Vec::new();
    for p in perms {
        let proto = p.ip_protocol().unwrap_or("-1");
        let protocol = match proto {
            "tcp" | "6" => Some(Protocol::Tcp),
            "udp" | "17" => Some(Protocol::Udp),
            _ => None,
        };
        let ports = match (p.from_port(), p.to_port()) {
            (Some(f), Some(t)) if (1..=65535).contains(&f) && (f..=65535).contains(&t) => {
                Some((f as u16, t as u16))
            }
            _ => None,
        };
        let (Some(protocol), Some((from_port, to_port))) = (protocol, ports) else {
            other.push(format!("protocol {proto}"));
            continue;
        };
        let rule = |source| Rule {
            protocol,
            from_port,
            to_port,
            source,
        };
        for r in p.ip_ranges() {
            match r.cidr_ip().map(parse_cidr) {
                Some(Ok(c)) => rules.push(rule(Source::Cidr(c))),
                _ => other.push(format!("{proto}/{from_port} from {:?}", r.cidr_ip())),
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                rules.push(rule(Source::Group(id.to_string())));
            }
        }
        if !p.ipv6_ranges().is_empty() || !p.prefix_list_ids().is_empty() {
            other.push(format!(
                "{proto}/{from_port} from IPv6 ranges or prefix lists"
            ));
        }
    }
    rules.sort_by(|a, b| {
        (
            a.from_port,
            a.to_port,
            a.protocol.as_str(),
            format!("{:?}", a.source),
        )
            .cmp(&(
                b.from_port,
                b.to_port,
                b.protocol.as_str(),
                format!("{:?}", b.source),
            ))
    });
    (rules, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16, source: Source) -> Rule {
        Rule {
            protocol: Protocol::Tcp,
            from_port: port,
            to_port: port,
            source,
        }
    }

    #[test]
    fn rules_round_trip_through_permissions() {
        let rules = vec![
            tcp(22, Source::Cidr("203.0.113.7/32".into())),
            tcp(3306, Source::Group("sg-0123".into())),
            Rule {
                protocol: Protocol::Udp,
                from_port: 5000,
                to_port: 5010,
                source: Source::Cidr("10.0.0.0/24".into()),
            },
        ];
        let perms: Vec<_> = rules.iter().map(|r| to_permission(r, "labrun t")).collect();
        assert_eq!(perms[0].ip_ranges()[0].description(), Some("labrun t"));
        let (back, other) = from_permissions(&perms);
        assert!(other.is_empty(), "{other:?}");
        assert_eq!(back, rules);
    }

    #[test]
    fn permissions_the_domain_cannot_express_are_reported() {
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        let two = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(80)
            .to_port(80)
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.9/32").build())
            .ip_ranges(IpRange::builder().cidr_ip("10.0.1.0/24").build())
            .build();
        let (rules, other) = from_permissions(&[all, two]);
        assert_eq!(other, vec!["protocol -1".to_string()]);
        assert_eq!(
            rules,
            vec![
                tcp(80, Source::Cidr("10.0.0.9/32".into())),
                tcp(80, Source::Cidr("10.0.1.0/24".into()))
            ]
        );
    }
}
