//! The host as a system: facts, packages (apt), services.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::exec::{DEFAULT_COMMAND_TIMEOUT, Output, RunOptions, Stream, TAIL_LINES};
use super::files::changed_marker;
use super::{Session, SshError, SshResult, quote};

/// What `facts()` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// `ID` from /etc/os-release (`ubuntu`, `debian`).
    pub os_id: String,
    /// `VERSION_ID` (`22.04`, `12`).
    pub os_version: String,
    pub hostname: String,
    /// The IPv4 address of the interface of the default route.
    pub private_ip: String,
}

const FACTS_SCRIPT: &str = r#"
. /etc/os-release 2>/dev/null
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-}"
echo "hostname=$(hostname 2>/dev/null || cat /etc/hostname)"
dev=$(ip -4 route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="dev"){print $(i+1); exit}}')
ip=
[ -n "$dev" ] && ip=$(ip -4 -o addr show dev "$dev" scope global 2>/dev/null | awk '{split($4,a,"/"); print a[1]; exit}')
[ -n "$ip" ] || ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{split($4,a,"/"); print a[1]; exit}')
[ -n "$ip" ] || ip=$(hostname -I 2>/dev/null | awk '{print $1}')
echo "private_ip=$ip"
"#;

fn parse_facts(stdout: &str) -> Facts {
    let mut f = Facts::default();
    for line in stdout.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k {
                "os_id" => f.os_id = v,
                "os_version" => f.os_version = v,
                "hostname" => f.hostname = v,
                "private_ip" => f.private_ip = v,
                _ => {}
            }
        }
    }
    f
}

/// How `apt_install` behaves.
#[derive(Clone, Debug)]
pub struct AptOptions {
    /// How long to wait for dpkg/apt locks held by another process
    /// (cloud-init, unattended-upgrades) before giving up.
    pub lock_timeout: Duration,
    /// The package index is refreshed when older than this (or when a
    /// package has no install candidate).
    pub index_max_age: Duration,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for AptOptions {
    fn default() -> Self {
        AptOptions {
            lock_timeout: Duration::from_secs(600),
            index_max_age: Duration::from_secs(24 * 3600),
            cancel: None,
        }
    }
}

/// A Debian package name (optionally `:arch`).
pub fn valid_package(name: &str) -> bool {
    let (pkg, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    pkg.len() >= 2
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && arch.is_none_or(|a| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Prints `installed P` or `missing P CANDIDATE` per package, then the age
/// of the package index in seconds (or `none`).
const APT_QUERY: &str = r#"
for p in "$@"; do
  s=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)
  case "$s" in
    ?i*) echo "installed $p" ;;
    *) c=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | head -n 1)
       echo "missing $p ${c:-(none)}" ;;
  esac
done
n=$(ls -t /var/lib/apt/lists/*_Packages* 2>/dev/null | head -n 1)
if [ -n "$n" ]; then echo "index_age $(( $(date +%s) - $(stat -c %Y "$n") ))"; else echo "index_age none"; fi
"#;

#[derive(Debug, Default, PartialEq)]
struct AptState {
    missing: Vec<String>,
    /// Some missing package has no candidate in the current index.
    unknown: bool,
    /// Index age in seconds; `None` if there is no index at all.
    index_age: Option<u64>,
}

fn parse_apt_state(stdout: &str) -> AptState {
    let mut st = AptState::default();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["missing", p, cand, ..] => {
                st.missing.push(p.to_string());
                if *cand == "(none)" {
                    st.unknown = true;
                }
            }
            ["index_age", age] => st.index_age = age.parse().ok(),
            _ => {}
        }
    }
    st
}

/// apt or dpkg said another process holds its lock.
fn lock_busy(out: &Output) -> bool {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    [
        "Could not get lock",
        "Unable to acquire the dpkg frontend lock",
        "Unable to lock the administration directory",
        "Unable to lock directory",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// The install failed in a way a fresh package index may fix.
/// A package's own script failed (dpkg reports the package half
/// configured): a server whose first start timed out on a busy host, say.
/// Configuring it again usually succeeds; a real fault fails again.
fn configure_failed(out: &Output) -> bool {
    out.stderr
        .contains("Sub-process /usr/bin/dpkg returned an error code")
}

fn index_stale(out: &Output) -> bool {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    [
        "Unable to locate package",
        "has no installation candidate",
        "Failed to fetch",
        "Unable to fetch some archives",
        "404  Not Found",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Service states `service()` accepts.
pub const SERVICE_STATES: &[&str] = &["started", "restarted", "stopped"];

/// Brings a service to a state with systemctl where systemd runs, else
/// `service` (or the init script); verifies the result; the last line says
/// whether anything changed.
const SERVICE_SCRIPT: &str = r#"
if [ -d /run/systemd/system ]; then
  act() { systemctl "$1" "$n"; }
  active() { systemctl is-active --quiet "$n"; }
else
  if command -v service >/dev/null 2>&1; then act() { service "$n" "$1"; }
  elif [ -x "/etc/init.d/$n" ]; then act() { "/etc/init.d/$n" "$1"; }
  else echo "cannot manage $n: no systemd, no service command, no /etc/init.d/$n" >&2; exit 2; fi
  active() { act status >/dev/null 2>&1; }
fi
settle() {
  i=0
  while :; do
    if [ "$1" = up ]; then active && return 0; else active || return 0; fi
    i=$((i+1)); [ $i -ge 20 ] && { echo "$n is not $2 after '$s'" >&2; exit 3; }
    sleep 0.5
  done
}
c=0
case "$s" in
  started) if ! active; then act start || exit $?; c=1; settle up running; fi ;;
  stopped) if active; then act stop || exit $?; c=1; settle down stopped; fi ;;
  restarted) act restart || exit $?; c=1; settle up running ;;
esac
echo "labrun-changed=$c"
"#;

impl Session {
    /// OS, host name and private address of the host.
    pub async fn facts(&self) -> SshResult<Facts> {
        let out = self
            .run_quiet(FACTS_SCRIPT, &RunOptions::default())
            .await
            .map_err(|e| rename(e, "facts"))?;
        Ok(parse_facts(&out.stdout))
    }

    /// Installs the packages that are not installed yet, non-interactively,
    /// as root. Refreshes the package index only when it is missing, older
    /// than `index_max_age`, or lacks a package; waits for dpkg/apt locks
    /// held by other processes up to `lock_timeout`. Returns `true` only if
    /// something was installed.
    pub async fn apt_install(
        &self,
        packages: &[String],
        options: &AptOptions,
        sink: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> SshResult<bool> {
        if let Some(bad) = packages.iter().find(|p| !valid_package(p)) {
            return Err(SshError::Invalid(format!(
                "'{bad}' is not a package name (lower-case letters, digits, '+', '-', '.', optional ':arch')"
            )));
        }
        if packages.is_empty() {
            return Ok(false);
        }
        let args: Vec<String> = packages.iter().map(|p| quote(p)).collect();
        let query = format!("set -- {}\n{APT_QUERY}", args.join(" "));
        let state = parse_apt_state(
            &self
                .run_quiet(&query, &RunOptions::default())
                .await
                .map_err(|e| rename(e, "dpkg-query"))?
                .stdout,
        );
        if state.missing.is_empty() {
            return Ok(false);
        }
        let deadline = Instant::now() + options.lock_timeout;
        let mut updated = false;
        if state.unknown
            || state
                .index_age
                .is_none_or(|a| a > options.index_max_age.as_secs())
        {
            self.apt_get("update", deadline, options, sink)
                .await
                .map_err(|(_, e)| e)?;
            updated = true;
        }
        let install = format!(
            "install {}",
            state
                .missing
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(" ")
        );
        match self.apt_get(&install, deadline, options, sink).await {
            Ok(_) => Ok(true),
            Err((Some(out), _)) if configure_failed(&out) => {
                sink(
                    Stream::Stderr,
                    &format!(
                        "dpkg failed configuring a package; configuring it once more \
                         (what it said:\n{})",
                        out.both_tails(TAIL_LINES)
                    ),
                );
                self.apt_get("install --fix-broken", deadline, options, sink)
                    .await
                    .map_err(|(_, e)| e)?;
                self.apt_get(&install, deadline, options, sink)
                    .await
                    .map_err(|(_, e)| e)?;
                Ok(true)
            }
            Err((out, _)) if !updated && out.as_ref().is_some_and(index_stale) => {
                self.apt_get("update", deadline, options, sink)
                    .await
                    .map_err(|(_, e)| e)?;
                self.apt_get(&install, deadline, options, sink)
                    .await
                    .map_err(|(_, e)| e)?;
                Ok(true)
            }
            Err((_, e)) => Err(e),
        }
    }

    /// Refreshes the package index (`apt-get update`) as root, waiting for
    /// dpkg/apt locks held by other processes up to `lock_timeout`: the
    /// package lists' own lock too, which `DPkg::Lock::Timeout` does not
    /// cover (an `apt-get update` left running by a killed run holds it).
    pub async fn apt_update(
        &self,
        options: &AptOptions,
        sink: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> SshResult<()> {
        let deadline = Instant::now() + options.lock_timeout;
        self.apt_get("update", deadline, options, sink)
            .await
            .map(|_| ())
            .map_err(|(_, e)| e)
    }

    /// Runs `apt-get ARGS` as root, retrying while another process holds a
    /// dpkg/apt lock, until `deadline`. On failure, the last output too.
    async fn apt_get(
        &self,
        args: &str,
        deadline: Instant,
        options: &AptOptions,
        sink: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, (Option<Output>, SshError)> {
        let mut waited = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // apt-get itself waits for the lock (up to what is left of
            // `lock_timeout`), then works: both are allowed for.
            let run = RunOptions {
                sudo: true,
                check: false,
                cancel: options.cancel.clone(),
                timeout: remaining + DEFAULT_COMMAND_TIMEOUT,
                ..Default::default()
            };
            let cmd = format!(
                "DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get -q -y \
                 -o DPkg::Lock::Timeout={} -o Dpkg::Options::=--force-confdef \
                 -o Dpkg::Options::=--force-confold {args}",
                remaining.as_secs().max(1)
            );
            let out = self.run(&cmd, &run, sink).await.map_err(|e| (None, e))?;
            if out.success() {
                return Ok(out);
            }
            if lock_busy(&out) && Instant::now() < deadline {
                if !waited {
                    sink(
                        Stream::Stderr,
                        &format!(
                            "waiting for the dpkg/apt lock held by another process (up to {}s)",
                            options.lock_timeout.as_secs()
                        ),
                    );
                    waited = true;
                }
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    if options
                        .cancel
                        .as_ref()
                        .is_some_and(|c| c.load(Ordering::SeqCst))
                    {
                        return Err((None, SshError::Interrupted));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            let busy = lock_busy(&out);
            let tail = out.both_tails(TAIL_LINES);
            let status = format!("exit code {}", out.code);
            return Err((
                Some(out),
                SshError::CommandFailed {
                    target: self.address(),
                    command: format!("apt-get {args}"),
                    status: if busy {
                        format!(
                            "{status} (the lock was still held after {}s)",
                            options.lock_timeout.as_secs()
                        )
                    } else {
                        status
                    },
                    tail,
                },
            ));
        }
    }

    /// Brings service `name` to `state` (`started`, `restarted`, `stopped`)
    /// as root; returns whether it changed anything (`restarted` always does).
    pub async fn service(
        &self,
        name: &str,
        state: &str,
        cancel: Option<Arc<AtomicBool>>,
        sink: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> SshResult<bool> {
        if !SERVICE_STATES.contains(&state) {
            return Err(SshError::Invalid(format!(
                "state '{state}': expected one of {}",
                SERVICE_STATES.join(", ")
            )));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c))
        {
            return Err(SshError::Invalid(format!("'{name}' is not a service name")));
        }
        let script = format!("n={} s={}{SERVICE_SCRIPT}", quote(name), quote(state));
        let run = RunOptions {
            sudo: true,
            cancel,
            ..Default::default()
        };
        let out = self
            .run(&script, &run, sink)
            .await
            .map_err(|e| rename(e, &format!("service {name} {state}")))?;
        changed_marker(&out.stdout)
    }
}

/// A failed script as an error naming what it did, not the script text.
pub(crate) fn rename(e: SshError, what: &str) -> SshError {
    match e {
        SshError::CommandFailed {
            target,
            status,
            tail,
            ..
        } => SshError::CommandFailed {
            target,
            command: what.to_string(),
            status,
            tail,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_checked() {
        for ok in ["mariadb-server", "libc6:amd64", "g++", "python3.11"] {
            assert!(valid_package(ok), "{ok}");
        }
        for bad in ["", "a", "Foo", "x;rm", "a b", "-o", "pkg:"] {
            assert!(!valid_package(bad), "{bad}");
        }
    }

    #[test]
    fn apt_state_is_parsed() {
        let st = parse_apt_state(
            "installed sudo\nmissing tree 2.1.0-1\nmissing nope (none)\nindex_age 42\n",
        );
        assert_eq!(st.missing, ["tree", "nope"]);
        assert!(st.unknown);
        assert_eq!(st.index_age, Some(42));
        let st = parse_apt_state("missing tree 2.1\nindex_age none\n");
        assert!(!st.unknown);
        assert_eq!(st.index_age, None);
    }

    #[test]
    fn facts_are_parsed() {
        let f = parse_facts("os_id=debian\nos_version=12\nhostname=web\nprivate_ip=10.0.0.5\n");
        assert_eq!(f.os_id, "debian");
        assert_eq!(f.private_ip, "10.0.0.5");
    }

    #[test]
    fn lock_messages_are_recognised() {
        let out = Output {
            stdout: String::new(),
            stderr: "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 7 (python3)".into(),
            code: 100,
            signal: None,
            omitted: (0, 0),
        };
        assert!(lock_busy(&out));
        assert!(!index_stale(&out));
        // apt-get update's own lock, which DPkg::Lock::Timeout does not wait for.
        let lists = Output {
            stderr: "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 71 (apt-get)\n\
                     E: Unable to lock directory /var/lib/apt/lists/"
                .into(),
            ..out
        };
        assert!(lock_busy(&lists));
    }
}
