//! Security groups, enforced: each instance's network namespace (owned by
//! its network holder, see `holder`) carries one nftables table, `inet
//! labrun`, that implements exactly the ingress rules of its groups
//! (default deny; established/related and loopback allowed; egress open).
//! The table is written from outside the instance, so root inside (which
//! has no CAP_NET_ADMIN) cannot change it: with `nsenter -t PID -n nft -f -`
//! into the holder from the host when the engine is local and labrun is
//! root, else from a short-lived helper container that shares only the
//! holder's network namespace and holds NET_ADMIN.
//!
//! [`render`] is a pure function of the groups; the whole table is replaced
//! in one nft transaction, so a change is atomic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::process::Stdio;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, WaitContainerOptions};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::docker::{self, api};
use super::host::{on_path, path_with_sbin};
use super::instances::{LABEL_LAB, LABEL_ROLE};
use crate::providers::{ProviderError, ProviderResult, SecurityGroup, Source};

/// The nftables ruleset for an instance attached to `groups`.
/// `members` maps a group id to its instances' private IPs (for rules whose
/// source is a group).
pub fn render(groups: &[SecurityGroup], members: &BTreeMap<String, Vec<Ipv4Addr>>) -> String {
    let mut rules = BTreeSet::new();
    for g in groups {
        for r in &g.rules {
            let sources: Vec<String> = match &r.source {
                Source::Cidr(c) => vec![c.clone()],
                Source::Group(id) => members
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(|ip| format!("{ip}/32"))
                    .collect(),
            };
            let ports = if r.from_port == r.to_port {
                r.from_port.to_string()
            } else {
                format!("{}-{}", r.from_port, r.to_port)
            };
            for s in sources {
                let saddr = if s == "0.0.0.0/0" {
                    "meta nfproto ipv4".to_string()
                } else {
                    format!("ip saddr {s}")
                };
                rules.insert(format!(
                    "{saddr} {} dport {ports} accept comment \"{}\"",
                    r.protocol.as_str(),
                    g.id
                ));
            }
        }
    }
    let mut out = String::from(
        "table inet labrun {}\n\
         flush table inet labrun\n\
         table inet labrun {\n\
         \x20 chain input {\n\
         \x20   type filter hook input priority 0; policy drop;\n\
         \x20   ct state established,related accept\n\
         \x20   ct state invalid drop\n\
         \x20   iif \"lo\" accept\n\
         \x20   meta l4proto 58 accept\n",
    );
    for r in rules {
        out.push_str("    ");
        out.push_str(&r);
        out.push('\n');
    }
    out.push_str("  }\n}\n");
    out
}

/// The table a network holder installs itself when it starts: default
/// deny, like an instance without groups. It adds to a table labrun may
/// already have applied instead of replacing it, so whichever comes first,
/// the namespace is never open and labrun's rules stay.
pub fn boot_ruleset() -> String {
    let full = render(&[], &BTreeMap::new());
    let (_, table) = full
        .split_once("flush table inet labrun\n")
        .expect("render starts with a flush");
    table.to_string()
}

/// How rulesets reach an instance's network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `nsenter -t PID -n nft -f -` on this machine.
    Nsenter,
    /// A helper container in the instance's network namespace.
    Container,
}

impl Mode {
    /// `LABRUN_FIREWALL=nsenter|container`, else nsenter where it can work
    /// (local engine, root, nsenter and nft installed), else container.
    pub fn detect() -> ProviderResult<Mode> {
        match std::env::var("LABRUN_FIREWALL").ok().as_deref() {
            Some("nsenter") => return Ok(Mode::Nsenter),
            Some("container") => return Ok(Mode::Container),
            None | Some("") | Some("auto") => {}
            Some(other) => {
                return Err(ProviderError::Invalid(format!(
                    "LABRUN_FIREWALL={other}: expected nsenter, container or auto"
                )));
            }
        }
        let root = unsafe { libc::geteuid() } == 0;
        let usable = cfg!(target_os = "linux")
            && root
            && docker::engine_is_local()
            && on_path("nsenter")
            && on_path("nft");
        Ok(if usable {
            Mode::Nsenter
        } else {
            Mode::Container
        })
    }
}

/// What an instance's table must be applied to: its network holder.
pub struct Target<'a> {
    pub container_id: &'a str,
    pub pid: i64,
    /// The image the holder runs (has nft, for the helper container).
    pub image: &'a str,
    pub lab: &'a str,
}

/// Replaces the instance's table with `ruleset`.
pub async fn apply(
    docker: &Docker,
    mode: Mode,
    target: &Target<'_>,
    ruleset: &str,
) -> ProviderResult<()> {
    // nsenter on a PID that is not the container's (another PID namespace)
    // would change some other process's network: check before entering.
    if mode == Mode::Nsenter && pid_is_container(target.pid, target.container_id) {
        return apply_nsenter(target.pid, ruleset).await;
    }
    apply_in_container(docker, target, ruleset).await
}

fn pid_is_container(pid: i64, container_id: &str) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.contains(container_id))
}

async fn apply_nsenter(pid: i64, ruleset: &str) -> ProviderResult<()> {
    let nsenter = if on_path("nsenter") {
        "nsenter"
    } else {
        "/usr/bin/nsenter"
    };
    let mut child = tokio::process::Command::new(nsenter)
        .args(["-t", &pid.to_string(), "-n", "nft", "-f", "-"])
        .env("PATH", path_with_sbin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ProviderError::Unavailable(format!(
                "cannot run nsenter to apply a security group: {e}; install util-linux and nftables"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .await
            .map_err(|source| ProviderError::Spawn {
                what: "writing the nft ruleset".into(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| ProviderError::Spawn {
            what: "nsenter".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProviderError::Command {
            what: "applying the security group with nft".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `nft -f -` in a helper container that joins the instance's network
/// namespace with NET_ADMIN; works wherever the engine runs.
async fn apply_in_container(
    docker: &Docker,
    target: &Target<'_>,
    ruleset: &str,
) -> ProviderResult<()> {
    let body = ContainerCreateBody {
        image: Some(target.image.to_string()),
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "printf '%s' \"$LABRUN_NFT\" | nft -f -".into(),
        ]),
        cmd: Some(vec![]),
        env: Some(vec![format!("LABRUN_NFT={ruleset}")]),
        labels: Some(HashMap::from([
            (LABEL_LAB.to_string(), target.lab.to_string()),
            (LABEL_ROLE.to_string(), "firewall".to_string()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{}", target.container_id)),
            cap_add: Some(vec!["NET_ADMIN".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(|e| api("creating the firewall helper container", e))?;
    let id = created.id;
    let result = async {
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| api("starting the firewall helper container", e))?;
        let mut code = 0;
        let mut waits = docker.wait_container(&id, None::<WaitContainerOptions>);
        while let Some(w) = waits.next().await {
            match w {
                Ok(r) => code = r.status_code,
                // bollard reports a non-zero exit as an error.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(api("waiting for the firewall helper container", e)),
            }
        }
        if code == 0 {
            return Ok(());
        }
        Err(ProviderError::Command {
            what: "applying the security group with nft".into(),
            status: format!("exit {code}"),
            output: docker::output(docker, &id, None).await,
        })
    }
    .await;
    docker::discard_container(docker, &id).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Protocol, Rule};

    fn group(id: &str, rules: Vec<Rule>) -> SecurityGroup {
        SecurityGroup {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            rules,
        }
    }

    fn rule(port: u16, to: u16, source: Source) -> Rule {
        Rule {
            protocol: Protocol::Tcp,
            from_port: port,
            to_port: to,
            source,
        }
    }

    #[test]
    fn the_boot_table_denies_and_adds_instead_of_replacing() {
        let boot = boot_ruleset();
        assert!(boot.starts_with("table inet labrun {\n"), "{boot}");
        assert!(!boot.contains("flush"), "{boot}");
        assert!(boot.contains("policy drop;") && !boot.contains("dport"));
    }

    #[test]
    fn no_groups_means_default_deny() {
        let text = render(&[], &BTreeMap::new());
        assert!(text.starts_with("table inet labrun {}\nflush table inet labrun\n"));
        assert!(text.contains("policy drop;"));
        assert!(text.contains("ct state established,related accept"));
        assert!(text.contains("iif \"lo\" accept"));
        assert!(!text.contains("dport"));
    }

    #[test]
    fn rules_become_accepts_per_source() {
        let web = group(
            "sg-1",
            vec![
                rule(3306, 3306, Source::Cidr("10.0.0.12/32".into())),
                rule(22, 22, Source::Cidr("10.0.0.1/32".into())),
                rule(8000, 8080, Source::Group("sg-2".into())),
                rule(9000, 9000, Source::Group("sg-empty".into())),
                Rule {
                    protocol: Protocol::Udp,
                    from_port: 53,
                    to_port: 53,
                    source: Source::Cidr("0.0.0.0/0".into()),
                },
            ],
        );
        let members = BTreeMap::from([(
            "sg-2".to_string(),
            vec![Ipv4Addr::new(10, 0, 0, 20), Ipv4Addr::new(10, 0, 0, 21)],
        )]);
        let text = render(&[web], &members);
        for line in [
            "ip saddr 10.0.0.12/32 tcp dport 3306 accept comment \"sg-1\"",
            "ip saddr 10.0.0.1/32 tcp dport 22 accept comment \"sg-1\"",
            "ip saddr 10.0.0.20/32 tcp dport 8000-8080 accept",
            "ip saddr 10.0.0.21/32 tcp dport 8000-8080 accept",
            "meta nfproto ipv4 udp dport 53 accept",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("9000"),
            "a group without members allows nobody"
        );
    }

    #[test]
    fn same_rule_in_two_groups_is_rendered_once_and_order_is_stable() {
        let r = rule(22, 22, Source::Cidr("10.0.0.1/32".into()));
        let a = group("sg-a", vec![r.clone()]);
        let b = group("sg-a", vec![r]);
        let text = render(&[a.clone(), b], &BTreeMap::new());
        assert_eq!(text.matches("dport 22 accept").count(), 1);
        assert_eq!(text, render(&[a], &BTreeMap::new()));
    }
}
