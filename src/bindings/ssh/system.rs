//! `Session` methods on the system: facts, packages, services.

use std::sync::Arc;

use rhai::{Array, Engine, Map};

use super::super::args::Options;
use super::super::{LabContext, func};
use super::fail_on;
use crate::engine::{RhaiResult, script_error};
use crate::ssh::Session;
use crate::ssh::system::AptOptions;

/// `#{lock_timeout}` of `apt_install` and `apt_update`.
fn apt_options(ctx: &LabContext, f: &str, m: &Map) -> RhaiResult<AptOptions> {
    let o = Options::new(f, m, &["lock_timeout"], &[])?;
    let mut options = AptOptions {
        cancel: Some(ctx.cancel.clone()),
        ..Default::default()
    };
    if let Some(t) = o.seconds("lock_timeout")? {
        options.lock_timeout = t;
    }
    Ok(options)
}

fn apt_update(ctx: &LabContext, s: &Session, m: &Map) -> RhaiResult<()> {
    let f = "ssh.apt_update";
    ctx.check_cancel()?;
    let options = apt_options(ctx, f, m)?;
    let reporter = ctx.reporter.clone();
    let host = &s.target().label;
    ctx.block_on(s.apt_update(&options, &mut |_, line| reporter.host_output(host, line)))
        .map_err(|e| fail_on(ctx, s, f, e))
}

fn apt_install(ctx: &LabContext, s: &Session, packages: Array, m: &Map) -> RhaiResult<bool> {
    let f = "ssh.apt_install";
    ctx.check_cancel()?;
    let options = apt_options(ctx, f, m)?;
    let mut names = Vec::new();
    for (i, p) in packages.into_iter().enumerate() {
        let t = p.type_name();
        names.push(p.into_string().map_err(|_| {
            script_error(format!(
                "{f}: item {} is {t}, expected a package name",
                i + 1
            ))
        })?);
    }
    let reporter = ctx.reporter.clone();
    let host = &s.target().label;
    let changed = ctx
        .block_on(s.apt_install(&names, &options, &mut |_, line| {
            reporter.host_output(host, line)
        }))
        .map_err(|e| fail_on(ctx, s, f, e))?;
    if changed {
        ctx.changed();
    }
    Ok(changed)
}

pub(super) fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    macro_rules! method {
        ($name:literal, $params:expr, $doc:literal, $f:expr) => {
            func($name, $params, $doc).register_into_engine(engine, $f);
        };
    }

    let c = ctx.clone();
    method!(
        "facts",
        &["this: Session", "Map"],
        "`#{os_id, os_version, hostname, private_ip}` of the host (from /etc/os-release,
        the host name, and the address of the default route's interface).",
        move |s: &mut Session| -> RhaiResult<Map> {
            c.check_cancel()?;
            let f = c
                .block_on(s.facts())
                .map_err(|e| fail_on(&c, s, "ssh.facts", e))?;
            let mut m = Map::new();
            m.insert("os_id".into(), f.os_id.into());
            m.insert("os_version".into(), f.os_version.into());
            m.insert("hostname".into(), f.hostname.into());
            m.insert("private_ip".into(), f.private_ip.into());
            Ok(m)
        }
    );
    let c = ctx.clone();
    method!(
        "apt_install",
        &["this: Session", "packages: Array", "bool"],
        "Installs the packages not yet installed (apt-get, non-interactive, as root);
        returns `true` only if something was installed. Refreshes the package index
        only when it is missing, a day old, or lacks a package; waits up to 600 s for
        dpkg/apt locks held by cloud-init or unattended-upgrades. A package whose own
        script fails (dpkg: error code 1) is configured once more; if it fails again,
        the error shows what its script printed.",
        move |s: &mut Session, packages: Array| apt_install(&c, s, packages, &Map::new())
    );
    let c = ctx.clone();
    method!(
        "apt_install",
        &["this: Session", "packages: Array", "options: Map", "bool"],
        "`apt_install` with `#{lock_timeout}` (seconds to wait for dpkg/apt locks).",
        move |s: &mut Session, packages: Array, o: Map| apt_install(&c, s, packages, &o)
    );
    let c = ctx.clone();
    method!(
        "apt_update",
        &["this: Session", "()"],
        "Refreshes the package index (`apt-get update`, as root), waiting up to 600 s
        for dpkg/apt locks held by another process, the package lists' lock included
        (an `apt-get update` still running from a killed run holds it). Does not
        mark the step changed. `apt_install` refreshes by itself when it needs to.",
        move |s: &mut Session| apt_update(&c, s, &Map::new())
    );
    let c = ctx.clone();
    method!(
        "apt_update",
        &["this: Session", "options: Map", "()"],
        "`apt_update` with `#{lock_timeout}` (seconds to wait for dpkg/apt locks).",
        move |s: &mut Session, o: Map| apt_update(&c, s, &o)
    );
    let c = ctx.clone();
    method!(
        "service",
        &["this: Session", "name: string", "state: string", "bool"],
        "Brings service `name` to `\"started\"`, `\"restarted\"` or `\"stopped\"` (as root;
        systemctl where systemd runs, `service` otherwise) and checks it got there.
        Returns whether it changed anything; `restarted` always does.",
        move |s: &mut Session, name: &str, state: &str| -> RhaiResult<bool> {
            c.check_cancel()?;
            let reporter = c.reporter.clone();
            let host = &s.target().label;
            let changed = c
                .block_on(s.service(name, state, Some(c.cancel.clone()), &mut |_, l| {
                    reporter.host_output(host, l)
                }))
                .map_err(|e| fail_on(&c, s, "ssh.service", e))?;
            if changed {
                c.changed();
            }
            Ok(changed)
        }
    );
}
