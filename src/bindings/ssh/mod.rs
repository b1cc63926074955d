//! `ssh::` — sessions to the lab's hosts and what runs over them. The work
//! is in `crate::ssh`; this file converts arguments and errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rhai::{
    Array, Dynamic, Engine, FnNamespace, FnPtr, FuncRegistration, Map, Module, NativeCallContext,
};

use super::args::{self, Options};
use super::{LabContext, at_call, func};

mod files;
mod system;
use crate::engine::{RhaiResult, script_error};
use crate::providers::Instance;
use crate::ssh::exec::DEFAULT_COMMAND_TIMEOUT;
use crate::ssh::session::DEFAULT_CONNECT_TIMEOUT;
use crate::ssh::{Auth, ConnectOptions, RunOptions, Session, SshError, Target};

fn fail(function: &str, e: SshError) -> Box<rhai::EvalAltResult> {
    script_error(format!("{function}: {e}"))
}

/// How often, and how far apart, a lost instance is looked at.
const LOST_CHECKS: u32 = 6;
const LOST_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// An operation on `s` failed. When its connection to one of the lab's
/// instances is gone, the error also says what became of the instance, the
/// first thing to know: removed or stopped outside labrun, or only its sshd
/// gone (the instance is then still running).
fn fail_on(ctx: &LabContext, s: &Session, function: &str, e: SshError) -> Box<rhai::EvalAltResult> {
    let target = s.target();
    if !matches!(e, SshError::Connection { .. })
        || !s.is_closed()
        || !target.pin_id.starts_with("i-")
    {
        return fail(function, e);
    }
    let Ok(provider) = ctx.provider() else {
        return fail(function, e);
    };
    // Looked at without side effects where the provider can (locally: no
    // firewall applied, nothing recorded), as the run is failing anyway.
    let look = || {
        ctx.block_on(async {
            match ctx.provider.observe(&ctx.lab).await {
                Some(seen) => seen,
                None => provider.instances().await,
            }
        })
    };
    // An instance being removed still reads `running` for a moment after
    // its processes (sshd among them) are gone.
    let mut state = None;
    for attempt in 0..LOST_CHECKS {
        if attempt > 0 {
            std::thread::sleep(LOST_CHECK_INTERVAL);
        }
        let Ok(list) = look() else {
            return fail(function, e);
        };
        state = list
            .into_iter()
            .find(|i| i.id == target.pin_id)
            .map(|i| i.state);
        if state.as_deref() != Some("running") {
            break;
        }
    }
    let (name, id) = (&target.label, &target.pin_id);
    let note = match state {
        None => format!(
            "; instance {name} ({id}) no longer exists: removed outside labrun? \
             (`labrun destroy` cleans up what is left of it)"
        ),
        Some(s) if s == "running" => {
            format!("; instance {name} ({id}) is still running: its sshd stopped?")
        }
        Some(s) => format!("; instance {name} ({id}) is {s}"),
    };
    script_error(format!("{function}: {e}{note}"))
}

/// The lab's private key file.
fn lab_key(ctx: &LabContext) -> RhaiResult<PathBuf> {
    let ledger = ctx.ledger()?;
    crate::keys::ensure(ledger, &ctx.lab)
        .map(|k| k.private_path)
        .map_err(|e| script_error(format!("ssh::connect: the lab's key: {e}")))
}

fn instance_target(ctx: &LabContext, i: &Instance) -> RhaiResult<Target> {
    if i.public_ip.is_empty() || i.ssh_port == 0 {
        // The AWS provider reports SSH port 0 for an EC2 emulator's
        // instances: they are API records with no machine behind them.
        let why = if i.ssh_port == 0 && !i.public_ip.is_empty() {
            "; it is a record of an EC2 API emulator (--endpoint-url), which runs no machine \
             and no sshd, so the playbook stops here"
        } else {
            ""
        };
        return Err(script_error(format!(
            "ssh::connect: instance '{}' ({}) has no reachable address (state {}){why}",
            i.name, i.id, i.state
        )));
    }
    Ok(Target {
        host: i.public_ip.clone(),
        port: i.ssh_port,
        user: i.user.clone(),
        auth: Auth::KeyFile(lab_key(ctx)?),
        pin_id: i.id.clone(),
        label: i.name.clone(),
    })
}

const TARGET_KEYS: &[&str] = &["host", "port", "user", "key_file", "password", "timeout"];

fn map_target(ctx: &LabContext, m: &Map) -> RhaiResult<(Target, Duration)> {
    let o = Options::new("ssh::connect", m, TARGET_KEYS, &["host"])?;
    let host = o.string("host")?.expect("checked present");
    let port = o.port("port")?.unwrap_or(22);
    let user = o.string("user")?.unwrap_or_else(|| "ubuntu".to_string());
    let auth = match (o.string("key_file")?, o.string("password")?) {
        (Some(_), Some(_)) => return Err(o.error("give `key_file` or `password`, not both")),
        (Some(k), None) => Auth::KeyFile(expand_home(&k)),
        (None, Some(p)) => {
            // A password the playbook gives is a secret like `secret()`'s.
            ctx.reporter.redactor().add(&p);
            Auth::Password(p)
        }
        (None, None) => Auth::KeyFile(lab_key(ctx)?),
    };
    let timeout = o.seconds("timeout")?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let pin_id = format!("{host}:{port}");
    Ok((
        Target {
            host,
            port,
            user,
            auth,
            label: pin_id.clone(),
            pin_id,
        },
        timeout,
    ))
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn connect(ctx: &LabContext, target: &Target, timeout: Duration) -> RhaiResult<Session> {
    ctx.check_cancel()?;
    let ledger = ctx.ledger()?.clone();
    let reporter = ctx.reporter.clone();
    let host = target.label.clone();
    // Every report on the step's live line; one in the log if it takes long.
    let logged = std::sync::atomic::AtomicBool::new(false);
    let on_wait = move |line: &str, waited: Duration| {
        reporter.host_output(&host, line);
        if waited >= Duration::from_secs(10) && !logged.swap(true, Ordering::SeqCst) {
            reporter.log(line);
        }
    };
    let options = ConnectOptions {
        timeout,
        cancel: Some(&ctx.cancel),
        on_wait: &on_wait,
    };
    ctx.block_on(ctx.ssh.session(target, ledger.as_ref(), &options))
        .map_err(|e| fail("ssh::connect", e))
}

const RUN_KEYS: &[&str] = &["sudo", "check", "stdin", "env", "timeout"];

fn run_options(ctx: &LabContext, function: &str, m: &Map) -> RhaiResult<RunOptions> {
    let o = Options::new(function, m, RUN_KEYS, &[])?;
    let mut run = RunOptions {
        cancel: Some(ctx.cancel.clone()),
        sudo: o.flag("sudo")?.unwrap_or(false),
        check: o.flag("check")?.unwrap_or(true),
        stdin: o.string("stdin")?.map(String::into_bytes),
        timeout: o.seconds("timeout")?.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        ..Default::default()
    };
    if let Some(v) = o.get("env") {
        let env = v.clone().try_cast::<Map>().ok_or_else(|| {
            o.error(format!(
                "`env` must be a map like #{{NAME: \"value\"}}, got {}",
                v.type_name()
            ))
        })?;
        for (k, v) in env {
            let value = if v.is_string() {
                v.into_string().expect("checked string")
            } else {
                v.to_string()
            };
            run.env.push((k.to_string(), value));
        }
    }
    Ok(run)
}

fn run(ctx: &LabContext, s: &Session, cmd: &str, o: RunOptions) -> RhaiResult<Map> {
    ctx.check_cancel()?;
    let function = if o.sudo { "ssh.sudo" } else { "ssh.run" };
    let reporter = ctx.reporter.clone();
    let host = &s.target().label;
    let out = ctx
        .block_on(s.run(cmd, &o, &mut |_, line| reporter.host_output(host, line)))
        .map_err(|e| fail_on(ctx, s, function, e))?;
    if let Some(note) = out.omitted_note() {
        ctx.reporter.warn(&format!(
            "{function}: `{cmd}` printed more than labrun keeps: {note}"
        ));
    }
    let mut m = Map::new();
    m.insert("stdout".into(), out.stdout.into());
    m.insert("stderr".into(), out.stderr.into());
    m.insert("code".into(), out.code.into());
    Ok(m)
}

fn converse(
    ctx: &LabContext,
    s: &Session,
    cmd: &str,
    input: &str,
    marker: &str,
    m: &Map,
) -> RhaiResult<String> {
    let f = "ssh.converse";
    ctx.check_cancel()?;
    let o = Options::new(f, m, &["sudo", "timeout"], &[])?;
    if marker.is_empty() || marker.contains('\n') {
        return Err(script_error(format!(
            "{f}: the marker must be one non-empty line, got {marker:?}"
        )));
    }
    let turn = crate::ssh::kept::Turn {
        command: cmd,
        sudo: o.flag("sudo")?.unwrap_or(false),
        marker,
        timeout: o.seconds("timeout")?.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        cancel: Some(ctx.cancel.clone()),
    };
    ctx.block_on(s.converse(&turn, input.as_bytes()))
        .map_err(|e| fail(f, e))
}

/// Gives a closure its own copy of every captured session, and of every
/// captured array or map that holds one. Rhai locks a captured (shared)
/// variable for the whole of a method call on it, so
/// `parallel([|| s[0].run(a), || s[1].run(b)])` would otherwise fail with a
/// data race; a copy is the same connection, and sessions have no state a
/// script can change. (What a closure changes in such a copied array or map
/// stays in that closure.)
pub fn detach_sessions(f: &mut FnPtr) {
    for v in f.iter_curry_mut() {
        if v.is_shared() {
            let value = v.flatten_clone();
            if holds_session(&value) {
                *v = value;
            }
        }
    }
}

fn holds_session(v: &Dynamic) -> bool {
    if v.is::<Session>() {
        return true;
    }
    if let Some(a) = v.read_lock::<Array>() {
        return a.iter().any(holds_session);
    }
    if let Some(m) = v.read_lock::<Map>() {
        return m.values().any(holds_session);
    }
    false
}

pub fn register(engine: &mut Engine, ctx: &Arc<LabContext>) {
    engine.register_type_with_name::<Session>("Session");
    engine.register_fn("to_string", |s: &mut Session| s.to_string());
    engine.register_fn("to_debug", |s: &mut Session| s.to_string());
    func(
        "get$host",
        &["this: Session", "String"],
        "The host connected to.",
    )
    .register_into_engine(engine, |s: &mut Session| s.target().host.clone());
    func("get$port", &["this: Session", "i64"], "The SSH port.")
        .register_into_engine(engine, |s: &mut Session| s.target().port as i64);
    func("get$user", &["this: Session", "String"], "The login user.")
        .register_into_engine(engine, |s: &mut Session| s.target().user.clone());
    func(
        "get$host_key",
        &["this: Session", "String"],
        "SHA256 fingerprint of the host key (pinned in the lab's ledger on first connection).",
    )
    .register_into_engine(engine, |s: &mut Session| {
        s.host_key_fingerprint().to_string()
    });

    macro_rules! method {
        ($name:literal, $params:expr, $doc:literal, $f:expr) => {
            func($name, $params, $doc).register_into_engine(engine, $f);
        };
    }

    let c = ctx.clone();
    method!(
        "run",
        &["this: Session", "cmd: string", "Map"],
        "Runs a shell command as the login user; returns `#{stdout, stderr, code}`.
        A non-zero exit throws an error with the command, the code and the end of
        stderr. Output lines show on the step's live line (and in the log with `-v`).
        The command is stopped after 30 minutes. Of output beyond 8 MiB per stream,
        the first and last 4 MiB are kept, with a line saying what was left out (and
        a warning).",
        move |s: &mut Session, cmd: &str| run(&c, s, cmd, run_options(&c, "ssh.run", &Map::new())?)
    );
    let c = ctx.clone();
    method!(
        "run",
        &["this: Session", "cmd: string", "options: Map", "Map"],
        "`run` with options `#{sudo, check, stdin, env, timeout}`: `sudo: true` runs as
        root; `check: false` returns a non-zero `code` instead of throwing; `stdin` is
        text for the command's input; `env` is a map of environment variables;
        `timeout` is in seconds (default 1800, as for every remote command). `stdin`
        and `env` never appear on the remote command line (pass secrets this way, not
        inside `cmd`).",
        move |s: &mut Session, cmd: &str, o: Map| run(&c, s, cmd, run_options(&c, "ssh.run", &o)?)
    );
    let c = ctx.clone();
    method!(
        "sudo",
        &["this: Session", "cmd: string", "Map"],
        "`run(cmd, #{sudo: true})`.",
        move |s: &mut Session, cmd: &str| {
            let mut o = run_options(&c, "ssh.sudo", &Map::new())?;
            o.sudo = true;
            run(&c, s, cmd, o)
        }
    );
    let c = ctx.clone();
    method!(
        "sudo",
        &["this: Session", "cmd: string", "options: Map", "Map"],
        "`run(cmd, options)` as root.",
        move |s: &mut Session, cmd: &str, o: Map| {
            let mut o = run_options(&c, "ssh.sudo", &o)?;
            o.sudo = true;
            run(&c, s, cmd, o)
        }
    );

    let c = ctx.clone();
    method!(
        "converse",
        &[
            "this: Session",
            "cmd: string",
            "input: string",
            "marker: string",
            "options: Map",
            "String"
        ],
        "Talks to `cmd` kept running on this host: writes `input` to its stdin and
        returns what it prints up to a line equal to `marker`, which `input` must make
        it print (a SQL client is sent `SELECT 'marker';` after the query). The command
        starts on the first call and stays for the session, so a call costs a round
        trip instead of a start: for a client asked many small questions. Options
        `#{sudo, timeout}` (`timeout` in seconds, default 1800). A call that fails in
        any way (the command exited, e.g. on an error; the time limit) throws and ends
        the command, and the next call starts it again: send what is safe to send
        twice, and run it with `run` when this throws (`mysql_server` does so for its
        queries).",
        move |s: &mut Session, cmd: &str, input: &str, marker: &str, o: Map| {
            converse(&c, s, cmd, input, marker, &o)
        }
    );

    files::register(engine, ctx);
    system::register(engine, ctx);

    let c = ctx.clone();
    method!(
        "forward",
        &["this: Session", "host: string", "port: i64", "i64"],
        "A port on 127.0.0.1 tunnelled through this session to `host:port` as the
        remote host reaches it (like `ssh -L`). Lives as long as the run; the same
        `host:port` gives the same local port. It carries labrun's own connections
        only (`ssh::connect`, `mysql::connect` to it); another process connecting to
        it is closed.",
        move |s: &mut Session, host: &str, port: i64| -> RhaiResult<i64> {
            c.check_cancel()?;
            let port = args::port("ssh.forward", "port", &Dynamic::from(port))?;
            c.block_on(s.forward(host, port))
                .map(|p| p as i64)
                .map_err(|e| fail_on(&c, s, "ssh.forward", e))
        }
    );

    let mut m = Module::new();
    m.set_doc(
        "//! SSH sessions: commands, files, packages, services and tunnels on the lab's hosts.",
    );
    let internal = |name: &str, params: &[&str], doc: &str| -> FuncRegistration {
        func(name, params, doc).with_namespace(FnNamespace::Internal)
    };
    let c = ctx.clone();
    internal(
        "connect",
        &["instance: Instance", "Session"],
        "A session to `instance` as its login user with the lab's key, waiting up to
        180 s for sshd while the instance boots. The host key is pinned in the lab's
        ledger on first connection; a different key later is refused. One connection
        per host, shared by everything (and every `parallel` closure) that uses it.",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, i: Instance| -> RhaiResult<Session> {
            at_call(&nctx, || {
                let target = instance_target(&c, &i)?;
                connect(&c, &target, DEFAULT_CONNECT_TIMEOUT)
            })
        },
    );
    let c = ctx.clone();
    internal(
        "connect",
        &["instance: Instance", "options: Map", "Session"],
        "`connect(instance)` with `#{timeout}` (seconds to wait for sshd).",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, i: Instance, o: Map| -> RhaiResult<Session> {
            at_call(&nctx, || {
                let timeout = Options::new("ssh::connect", &o, &["timeout"], &[])?
                    .seconds("timeout")?
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                let target = instance_target(&c, &i)?;
                connect(&c, &target, timeout)
            })
        },
    );
    let c = ctx.clone();
    internal(
        "connect",
        &["target: Map", "Session"],
        "A session to any host: `#{host, port, user, key_file | password, timeout}`.
        `port` defaults to 22, `user` to `ubuntu`, `key_file` (`~/` allowed) to the
        lab's key, `timeout`
        to 180 s. The host key is pinned under \"host:port\" before any password is
        sent, and a changed key is refused before it. Sessions are shared only under
        the same credentials.",
    )
    .set_into_module(
        &mut m,
        move |nctx: NativeCallContext, o: Map| -> RhaiResult<Session> {
            at_call(&nctx, || {
                let (target, timeout) = map_target(&c, &o)?;
                connect(&c, &target, timeout)
            })
        },
    );
    engine.register_static_module("ssh", m.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_get_the_default_timeout_unless_given_one() {
        assert_eq!(DEFAULT_COMMAND_TIMEOUT, Duration::from_secs(1800));
        // What files, facts and services run with.
        assert_eq!(RunOptions::default().timeout, DEFAULT_COMMAND_TIMEOUT);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = LabContext::offline(rt.handle().clone(), std::path::Path::new("t.rhai"));
        let o = run_options(&ctx, "ssh.run", &Map::new()).unwrap();
        assert_eq!(o.timeout, DEFAULT_COMMAND_TIMEOUT);
        let mut m = Map::new();
        m.insert("timeout".into(), Dynamic::from(2.5_f64));
        let o = run_options(&ctx, "ssh.run", &m).unwrap();
        assert_eq!(o.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn a_timeout_says_whether_it_was_the_default() {
        let e = |after, default| {
            SshError::Timeout {
                target: "ubuntu@h:22".into(),
                command: "sleep 9".into(),
                after,
                default,
            }
            .to_string()
        };
        assert_eq!(
            e(Duration::from_millis(500), false),
            "`sleep 9` on ubuntu@h:22 timed out after 0.5s"
        );
        assert!(
            e(DEFAULT_COMMAND_TIMEOUT, true).ends_with(
                "timed out after 1800s (the default limit for a command; give `timeout` in seconds to allow longer)"
            )
        );
    }
}
