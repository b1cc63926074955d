//! `labrun ssh NAME [--lab LAB | --class C --learner ID] [-- CMD]`: log in to a lab's instance the
//! way the tutorial's "Connect" button does, with OpenSSH's own client (a
//! real terminal, your shell's habits): the lab's key, the host key labrun
//! pinned (pinned now if labrun never connected), the published port. The
//! lab's lock is released before the session starts, so `labrun exercise
//! check` works while you are logged in.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::SshArgs;
use crate::error::{Error, Exit};
use crate::providers::Instance;
use crate::report::Reporter;
use crate::ssh::session::HostKeys;
use crate::ssh::{Auth, ConnectOptions, Session, Target};

use super::run::OpenLab;

/// The file of the lab's pinned host keys OpenSSH is pointed at.
pub const KNOWN_HOSTS: &str = "known_hosts";

pub fn ssh(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    args: SshArgs,
) -> Result<Exit, Error> {
    let lab = args.member.lab(args.lab.as_deref())?;
    let open =
        OpenLab::existing(runtime, reporter, &lab, args.aws.options())?.ok_or_else(|| {
            Error::Input(format!(
                "no lab named '{lab}'; `labrun status` lists the labs"
            ))
        })?;
    let provider = open.connect(runtime)?;
    let instances = runtime.block_on(provider.instances())?;
    let instance = instances
        .iter()
        .find(|i| i.name == args.name || i.id == args.name)
        .ok_or_else(|| {
            Error::Input(format!(
                "lab '{lab}' has no instance '{}' (instances: {})",
                args.name,
                if instances.is_empty() {
                    "none".to_string()
                } else {
                    instances
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        })?
        .clone();
    if instance.ssh_port == 0 || instance.public_ip.is_empty() {
        return Err(Error::Failed(format!(
            "instance '{}' ({}) has no SSH address (state {})",
            instance.name, instance.id, instance.state
        )));
    }
    let key = crate::keys::ensure(&open.ledger, &lab)?.private_path;
    if open.ledger.pinned(&instance.id).is_none() {
        pin(runtime, &open, &instance, &key)?;
    }
    let known_hosts = open.ledger.dir().join(KNOWN_HOSTS);
    let lines: Vec<String> = instances
        .iter()
        .filter(|i| i.ssh_port > 0)
        .filter_map(|i| {
            let pin = open.ledger.pinned(&i.id)?;
            let host = if i.ssh_port == 22 {
                i.public_ip.clone()
            } else {
                format!("[{}]:{}", i.public_ip, i.ssh_port)
            };
            Some(format!("{host} {}\n", pin.trim()))
        })
        .collect();
    crate::ledger::write_atomic(&known_hosts, lines.concat().as_bytes(), 0o644)?;
    // The lock is not needed for the session itself.
    drop(open);

    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(&key)
        .args(["-p", &instance.ssh_port.to_string()])
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{}@{}", instance.user, instance.public_ip));
    match args.command.as_slice() {
        [] => {}
        [line] => {
            cmd.arg("--").arg(line);
        }
        words => {
            let quoted: Vec<String> = words.iter().map(|w| crate::ssh::quote(w)).collect();
            cmd.arg("--").arg(quoted.join(" "));
        }
    }
    let status = cmd.status().map_err(|e| {
        Error::Failed(format!(
            "cannot run OpenSSH's `ssh` client ({e}); install it (Debian/Ubuntu: apt install openssh-client)"
        ))
    })?;
    Ok(if status.success() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// Connects once with labrun's own client, which pins the host key on
/// first sight, as a run would.
fn pin(
    runtime: &tokio::runtime::Runtime,
    open: &OpenLab,
    instance: &Instance,
    key: &std::path::Path,
) -> Result<(), Error> {
    let target = Target {
        host: instance.public_ip.clone(),
        port: instance.ssh_port,
        user: instance.user.clone(),
        auth: Auth::KeyFile(key.to_path_buf()),
        pin_id: instance.id.clone(),
        label: instance.name.clone(),
    };
    let options = ConnectOptions {
        timeout: Duration::from_secs(60),
        cancel: Some(&open.cancel),
        on_wait: &|_, _| {},
    };
    runtime
        .block_on(Session::connect(&target, open.ledger.as_ref(), &options))
        .map(drop)
        .map_err(|e| Error::Failed(format!("labrun ssh {}: {e}", instance.name)))
}
