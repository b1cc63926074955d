//! The `ssh` module against real sshd in local instances: readiness wait,
//! host key pinning, command results and failures, stdin/env delivery and
//! secrets, files, apt, services, tunnels.
//!
//! Each test gets a lab of its own with fresh instances, launched by
//! `ec2::launch` on the local provider (which builds its base image on first
//! use) and removed by `labrun destroy`. [`Hosts`] writes the Rhai prelude
//! every playbook of the test starts with: it (re)launches the instances
//! (a no-op once they run) and connects, defining sessions `A`, `B`, ...,
//! their instances `XS` and private addresses `A_IP`, `B_IP`, ....

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::harness::{Output, Test, docker};

const NAMES: [&str; 3] = ["A", "B", "C"];

/// An instance as the launch run printed it.
#[derive(Debug)]
struct Seen {
    id: String,
    ssh_port: u16,
}

/// A lab with `count` instances in one security group that lets the
/// operator and the group's members in on port 22; destroyed on drop.
struct Hosts {
    test: Test,
    lab: String,
    count: usize,
    seen: Vec<Seen>,
}

impl Hosts {
    fn new(count: usize) -> Hosts {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let mut h = Hosts {
            test: Test::new(),
            lab: format!("tssh-{}-{}", std::process::id(), nanos % 1_000_000),
            count,
            seen: Vec::new(),
        };
        let out = h.run(
            "launch.rhai",
            "for x in XS { print(`host ${x.id} ${x.ssh_port}`); }",
            &[],
        );
        out.assert_code(0);
        h.seen = out
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("host "))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Seen {
                    id: f[0].to_string(),
                    ssh_port: f[1].parse().expect("ssh port"),
                }
            })
            .collect();
        assert_eq!(h.seen.len(), count, "{}", out.stderr);
        h
    }

    /// The instance's SSH port on 127.0.0.1.
    fn port(&self, i: usize) -> u16 {
        self.seen[i].ssh_port
    }

    /// Launches (a no-op once running) and, with `connect`, connects.
    fn prelude(&self, connect: bool) -> String {
        let specs: Vec<String> = (0..self.count)
            .map(|i| {
                format!(
                    "#{{name: \"{}\", security_groups: [g]}}",
                    NAMES[i].to_lowercase()
                )
            })
            .collect();
        let mut text = format!(
            "let g = sg::ensure(#{{name: \"ssh\", description: \"ssh tests\"}});\n\
             g.allow(#{{port: 22, from: operator_cidr()}});\n\
             g.allow(#{{port: 22, from: g}});\n\
             let XS = ec2::launch([{}]);\n",
            specs.join(", ")
        );
        for (i, n) in NAMES.iter().take(self.count).enumerate() {
            if !connect {
                break;
            }
            text.push_str(&format!(
                "let {n} = ssh::connect(XS[{i}]);\nlet {n}_IP = XS[{i}].private_ip;\n"
            ));
        }
        text
    }

    /// Runs `body` after the prelude as playbook `file` of the test's lab.
    fn run(&self, file: &str, body: &str, args: &[&str]) -> Output {
        self.run_with(true, file, body, args)
    }

    fn run_with(&self, connect: bool, file: &str, body: &str, args: &[&str]) -> Output {
        std::fs::write(
            self.test.dir().join(file),
            format!("{}\n{body}", self.prelude(connect)),
        )
        .unwrap();
        self.labrun(&[&[file, "--output", "plain"], args].concat())
    }

    /// Runs labrun in the test's lab.
    fn labrun(&self, args: &[&str]) -> Output {
        self.test.run_with(&[args, &["--lab", &self.lab]].concat())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let out = self.labrun(&["destroy"]);
        if out.code != 0 && !std::thread::panicking() {
            panic!("labrun destroy --lab {} failed:\n{}", self.lab, out.all());
        }
    }
}

/// A command that times out does not live on: the remote process (also
/// under `sh -c` and under sudo) is gone, not left holding the host.
/// A step that works on two hosts at once: with `-v`, every remote line
/// says which host it came from (plain: `host | line`; JSON: `host`).
#[test]
fn ssh_parallel_output_is_attributed_to_each_host() {
    let h = Hosts::new(2);
    let body = r#"
step("both hosts", || {
    parallel([
        || A.run("for i in 1 2 3 4; do echo from-a-$i; sleep 0.05; done"),
        || B.run("for i in 1 2 3 4; do echo from-b-$i; echo err-b-$i >&2; sleep 0.05; done"),
    ]);
});
"#;
    let out = h.run("both.rhai", body, &["-v"]);
    out.assert_code(0);
    for i in 1..=4 {
        out.assert_stderr_contains(&format!("\n    a | from-a-{i}\n"))
            .assert_stderr_contains(&format!("\n    b | from-b-{i}\n"))
            .assert_stderr_contains(&format!("\n    b | err-b-{i}\n"));
    }
    for line in out
        .stderr
        .lines()
        .filter(|l| l.contains(" | from-") || l.contains(" | err-"))
    {
        let (host, text) = line.trim_start().split_once(" | ").unwrap();
        assert!(
            text.contains(&format!("-{host}-")),
            "{line} attributed to {host}"
        );
    }

    let out = h.labrun(&["both.rhai", "-v", "--output", "json"]);
    out.assert_code(0);
    let outputs: Vec<_> = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "output" && e["step"] == "both hosts")
        .collect();
    for host in ["a", "b"] {
        let lines: Vec<&str> = outputs
            .iter()
            .filter(|e| e["host"] == host)
            .map(|e| e["line"].as_str().unwrap())
            .collect();
        let mine: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("from-{host}-")))
            .collect();
        assert_eq!(mine.len(), 4, "{host}: {lines:?}");
        assert!(
            lines.iter().all(|l| l.contains(&format!("-{host}-"))),
            "{host} got another host's line: {lines:?}"
        );
    }
}

#[test]
fn ssh_timed_out_commands_are_stopped_on_the_host() {
    let h = Hosts::new(1);
    let out = h.run(
        "stop.rhai",
        r#"
import "check" as check;
for cmd in ["sleep 301", "sh -c 'sleep 302; echo late'", "sleep 303"] {
    let timed_out = false;
    try { A.run(cmd, #{timeout: 0.5, sudo: cmd == "sleep 303"}); } catch (e) { timed_out = e.contains("timed out"); }
    check::that(timed_out, `${cmd} timed out`);
}
// Polled for up to 10 s: a stopped command may take a moment to be reaped.
let left = "";
for i in 0..100 {
    left = A.run("ps -eo args | grep '^sleep 30[0-9]' || true").stdout;
    if left == "" { break; }
    sleep(0.1);
}
check::equal(left, "", "processes left after the timeouts");
// The check can see a process that does survive.
A.run("nohup sleep 309 >/dev/null 2>&1 &");
check::equal(A.run("ps -eo args | grep '^sleep 30[0-9]' || true").stdout, "sleep 309\n", "a detached sleep");
A.run("pkill -f 'sleep 309'", #{check: false});
"#,
        &[],
    );
    out.assert_code(0);
}

#[test]
fn ssh_run_results_stdin_env_and_failures() {
    let h = Hosts::new(1);
    let out = h.run(
        "run.rhai",
        r#"
import "check" as check;
let r = A.run("echo out; echo err >&2; hostname");
check::equal(r.code, 0, "code");
check::that(r.stdout.starts_with("out\n"), `stdout: ${r.stdout}`);
check::equal(r.stderr, "err\n", "stderr");
check::equal(A.run("cat", #{stdin: "line 1\nline 'two' $HOME\n"}).stdout, "line 1\nline 'two' $HOME\n", "stdin");
check::equal(A.run("printf '%s|%s' \"$X\" \"$Y\"", #{env: #{X: "it's a \"value\"\nwith lines", Y: 42}}).stdout,
             "it's a \"value\"\nwith lines|42", "env");
check::equal(A.run("printf %s \"$X\"; cat", #{env: #{X: "e"}, stdin: "s"}).stdout, "es", "env and stdin");
check::equal(A.sudo("id -u").stdout, "0\n", "sudo");
check::equal(A.run("printf %s \"$X\"", #{sudo: true, env: #{X: "to root"}}).stdout, "to root", "env through sudo");
check::equal(A.run("exit 7", #{check: false}).code, 7, "check: false");
check::that(A.to_string().contains("ubuntu@127.0.0.1:"), A.to_string());
check::equal(type_of(A), "Session", "type");
let t = A.run("sleep 5", #{check: false, timeout: 0.5});
"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("ssh.run: `sleep 5` on ubuntu@127.0.0.1:")
        .assert_stderr_contains("timed out after 0.5s");

    let out = h.run(
        "fail.rhai",
        r#"step("fails", || A.run("echo context >&2; echo 'it broke' >&2; exit 3"));"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains(&format!(
            "ssh.run: `echo context >&2; echo 'it broke' >&2; exit 3` failed on ubuntu@127.0.0.1:{} with exit code 3:\n  context\n  it broke",
            h.port(0)
        ))
        .assert_stderr_contains("FAILED  fails");
}

#[test]
fn ssh_secrets_stay_off_remote_command_lines_and_output() {
    let h = Hosts::new(1);
    // Three long-running commands get the secret through env (as the user
    // and through sudo) and stdin; a fourth waits until they all run, takes
    // the host's full process list, then lets them finish.
    let out = h.run(
        "ps.rhai",
        r#"
import "check" as check;
let pw = secret("db_password");
let r = parallel([
    || A.run("for i in $(seq 600); do [ -e /tmp/ps-gate ] && break; sleep 0.1; done; printf %s \"$PW\"", #{env: #{PW: pw}}),
    || A.sudo("for i in $(seq 600); do [ -e /tmp/ps-gate ] && break; sleep 0.1; done; printf %s \"$PW\" | wc -c", #{env: #{PW: pw}}),
    || A.run("read -r x; for i in $(seq 600); do [ -e /tmp/ps-gate ] && break; sleep 0.1; done; printf %s \"$x\"", #{stdin: pw + "\n"}),
    || {
        A.run("for i in $(seq 600); do [ $(pgrep -fc 'ps-gat[e]') -ge 3 ] && break; sleep 0.1; done");
        let ps = A.run("ps -eww -o user,pid,args").stdout;
        A.run("touch /tmp/ps-gate");
        ps
    }
]);
check::equal(r[0].stdout, pw, "env value");
check::equal(r[1].stdout, "24\n", "env value under sudo");
check::equal(r[2].stdout, pw, "stdin value");
let ps = r[3];
check::that(ps.contains("ps-gate"), "ps shows the waiting commands");
if ps.contains(pw) { throw "the secret is visible in ps"; }
print("ps output:\n" + ps);
print("the secret itself: " + pw);
"#,
        &["-v"],
    );
    out.assert_code(0);
    let pw = h.test.secrets(&h.lab)["db_password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !out.all().contains(&pw),
        "labrun's output leaks the secret:\n{}",
        out.all()
    );
    // The remote output was streamed with -v, and masked.
    out.assert_stderr_contains("    a | ********")
        .assert_stderr_contains("the secret itself: ********")
        .assert_stderr_contains("ps-gate");
}

#[test]
fn ssh_files_are_written_only_when_different() {
    let h = Hosts::new(1);
    let out = h.run(
        "files.rhai",
        r#"
import "check" as check;
let conf = "[mysqld]\nbind-address = 127.0.0.1\nport = 3306\n";
check::equal(step("write", || A.write_file("/etc/labrun-test.cnf", conf, #{mode: "0640"})), true, "first write");
check::equal(step("write again", || A.write_file("/etc/labrun-test.cnf", conf, #{mode: "0640"})), false, "second write");
check::equal(A.run("stat -c '%a %U' /etc/labrun-test.cnf", #{sudo: true}).stdout, "640 root\n", "mode and owner");
check::equal(step("mode", || A.write_file("/etc/labrun-test.cnf", conf, #{mode: "0644", owner: "ubuntu"})), true, "mode change");
check::equal(A.run("stat -c '%a %U' /etc/labrun-test.cnf").stdout, "644 ubuntu\n", "new mode and owner");
check::equal(A.read_file("/etc/labrun-test.cnf"), conf, "read back");
check::equal(step("replace", || A.replace_line("/etc/labrun-test.cnf", "^#? *bind-address", "bind-address = 0.0.0.0")), true, "replace");
check::equal(step("replace again", || A.replace_line("/etc/labrun-test.cnf", "^#? *bind-address", "bind-address = 0.0.0.0")), false, "replace again");
check::equal(step("append", || A.replace_line("/etc/labrun-test.cnf", "^max_connections", "max_connections = 50")), true, "append");
check::equal(step("append again", || A.replace_line("/etc/labrun-test.cnf", "^max_connections", "max_connections = 50")), false, "append again");
check::equal(A.read_file("/etc/labrun-test.cnf"), "[mysqld]\nbind-address = 0.0.0.0\nport = 3306\nmax_connections = 50\n", "edited");
check::equal(A.run("stat -c '%a %U' /etc/labrun-test.cnf").stdout, "644 ubuntu\n", "mode and owner kept");
check::equal(A.file_exists("/etc/labrun-test.cnf"), true, "exists");
check::equal(A.file_exists("/etc/nope"), false, "does not exist");
check::equal(A.write_file("/home/ubuntu/mine.txt", "x", #{sudo: false}), true, "user write");
check::equal(A.run("stat -c %U /home/ubuntu/mine.txt").stdout, "ubuntu\n", "user file owner");
check::equal(A.run("ls -a /etc | grep -c labrun || true").stdout, "1\n", "no temp files left");
A.read_file("/etc/nope");
"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("changed write (")
        .assert_stderr_contains("ok      write again (")
        .assert_stderr_contains("changed mode (")
        .assert_stderr_contains("changed replace (")
        .assert_stderr_contains("ok      replace again (")
        .assert_stderr_contains("changed append (")
        .assert_stderr_contains("ok      append again (")
        .assert_stderr_contains("ssh.read_file: `read /etc/nope` failed on")
        .assert_stderr_contains("No such file or directory");
}

#[test]
fn ssh_host_key_is_pinned_and_a_change_refused() {
    let h = Hosts::new(1);
    // Pinned by instance id, and by host:port for the map form (the same
    // connection, so the same key).
    let first = h.run(
        "pin.rhai",
        r#"
let M = ssh::connect(#{host: XS[0].public_ip, port: XS[0].ssh_port});
import "check" as check;
check::equal(M.host_key, A.host_key, "one host, one key");
print("pinned " + A.host_key);
A.sudo("rm -f /etc/ssh/ssh_host_*; ssh-keygen -A -q");
for t in ["ed25519", "ecdsa", "rsa"] {
    print("new " + A.run(`ssh-keygen -lf /etc/ssh/ssh_host_${t}_key.pub`).stdout.split(" ")[1]);
}
"#,
        &[],
    );
    first.assert_code(0);
    let pinned = first
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("pinned "))
        .expect("pinned fingerprint")
        .to_string();
    let fresh: Vec<String> = first
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("new "))
        .map(str::to_string)
        .collect();
    let ledger = std::fs::read_to_string(h.test.lab_dir(&h.lab).join("ledger.json")).unwrap();
    let at = format!("127.0.0.1:{}", h.port(0));
    let id = &h.seen[0].id;
    for pin in [id.as_str(), at.as_str()] {
        assert!(
            ledger.contains(&format!("\"{pin}\": \"ssh-")),
            "pin under {pin}:\n{ledger}"
        );
    }

    // The host now has other keys: both forms are refused.
    let second = h.run_with(
        false,
        "again.rhai",
        r#"
try { ssh::connect(XS[0]); print("instance form connected"); } catch (e) { print("instance form: " + e); }
try { ssh::connect(#{host: XS[0].public_ip, port: XS[0].ssh_port}); print("map form connected"); } catch (e) { print("map form: " + e); }
"#,
        &[],
    );
    second.assert_code(0);
    for (form, who, pin) in [
        ("instance form", format!("a ({at})"), id.as_str()),
        ("map form", at.clone(), at.as_str()),
    ] {
        let line = second
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("{form}: ")))
            .unwrap_or_else(|| panic!("no {form} line:\n{}", second.stderr));
        assert!(
            line.contains(&format!("ssh::connect: host key of {who} has changed: the lab pinned {pinned}, the host now presents "))
                && line.contains(&format!("remove \"{pin}\" from host_keys")),
            "{line}"
        );
        assert!(
            fresh
                .iter()
                .any(|f| line.contains(&format!("now presents {f}."))),
            "one of the new keys {fresh:?} is named: {line}"
        );
    }

    // A re-created instance has a new id, and starts fresh.
    let third = h.run_with(
        false,
        "fresh.rhai",
        r#"
XS[0].terminate();
let n = ec2::launch(#{name: "a", security_groups: [g]});
print(`new id ${n.id}: ` + ssh::connect(n).run("echo fresh").stdout);
"#,
        &[],
    );
    third.assert_code(0).assert_stderr_contains(": fresh");
    assert!(
        !third.stderr.contains(&format!("new id {id}:")),
        "{}",
        third.stderr
    );
}

#[test]
fn ssh_waits_for_sshd_that_starts_late() {
    let h = Hosts::new(1);
    let sshd = h.port(0);
    // A port with nothing behind it (refused), then a proxy that closes
    // every connection (a port proxy whose sshd is not up yet), then the
    // real sshd: each switch happens after labrun reports waiting.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let playbook = format!(
        r#"let s = ssh::connect(#{{host: "127.0.0.1", port: {port}, timeout: 60}});
           print("connected: " + s.run("echo ready").stdout);"#
    );
    std::fs::write(h.test.dir().join("late.rhai"), playbook).unwrap();
    let mut child = h
        .test
        .command()
        .args(["late.rhai", "--lab", &h.lab, "--output", "plain", "-v"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let phase = Arc::new(AtomicU8::new(0));
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("waiting for sshd") {
            if phase.load(Ordering::SeqCst) == 0 && line.contains("connection refused") {
                let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
                phase.store(1, Ordering::SeqCst);
                let phase = phase.clone();
                std::thread::spawn(move || proxy(listener, phase, sshd));
            } else if phase.load(Ordering::SeqCst) == 1 && line.contains("closed before") {
                phase.store(2, Ordering::SeqCst);
            }
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert_eq!(phase.load(Ordering::SeqCst), 2, "{text}");
    assert!(text.contains("connected: ready"), "{text}");
    assert!(
        text.contains("s of 60s)"),
        "waiting reports the timeout: {text}"
    );
}

/// Phase 1: accept and close. Phase 2: carry connections to `to`.
fn proxy(listener: TcpListener, phase: Arc<AtomicU8>, to: u16) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        if phase.load(Ordering::SeqCst) < 2 {
            drop(conn);
            continue;
        }
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else {
            continue;
        };
        let (mut a, mut b) = (conn.try_clone().unwrap(), upstream.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut a, &mut b);
            let _ = b.shutdown(std::net::Shutdown::Write);
        });
        let (mut a, mut b) = (upstream, conn);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut a, &mut b);
            let _ = b.shutdown(std::net::Shutdown::Write);
        });
    }
}

#[test]
fn ssh_gives_up_when_sshd_never_answers() {
    let t = Test::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        t.dir().join("never.rhai"),
        format!(r#"ssh::connect(#{{host: "127.0.0.1", port: {port}, timeout: 2}});"#),
    )
    .unwrap();
    t.run_with(&["never.rhai", "--output", "plain"])
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "ssh::connect: sshd at ubuntu@127.0.0.1:{port} did not answer within 2s (last: connection refused)"
        ));
}

#[test]
fn ssh_apt_install_waits_for_the_dpkg_lock() {
    let h = Hosts::new(1);
    // The holder keeps dpkg's frontend lock until it has seen `apt-get
    // install` running for a second: the install can only succeed by
    // waiting for it.
    let out = h.run(
        "apt.rhai",
        r#"
import "check" as check;
A.write_file("/tmp/hold-lock.py", `
import fcntl, os, time
f = open("/var/lib/dpkg/lock-frontend", "w")
fcntl.lockf(f, fcntl.LOCK_EX)
open("/tmp/lock-held", "w").close()
start = time.time()
seen = None
while time.time() - start < 300:
    for pid in os.listdir("/proc"):
        try:
            args = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        except Exception:
            continue
        if args and args[0].endswith(b"apt-get") and b"install" in args:
            seen = seen or time.time()
    if seen and time.time() - seen > 1:
        open("/tmp/holder-saw-apt", "w").close()
        break
    time.sleep(0.1)
`, #{sudo: false});
A.sudo("rm -f /tmp/lock-held /tmp/holder-saw-apt; nohup python3 /tmp/hold-lock.py >/dev/null 2>&1 &");
A.run("for i in $(seq 300); do [ -e /tmp/lock-held ] && exit 0; sleep 0.1; done; exit 1");
check::equal(step("install", || A.apt_install(["tree"])), true, "installed");
check::equal(A.file_exists("/tmp/holder-saw-apt"), true, "apt-get install ran while the lock was held");
check::equal(A.run("tree --version").code, 0, "tree runs");
check::equal(step("install again", || A.apt_install(["tree", "sudo"])), false, "already installed");
"#,
        &["-v"],
    );
    out.assert_code(0)
        .assert_stderr_contains("changed install (")
        .assert_stderr_contains("ok      install again (");
    assert!(
        out.stderr.contains("lock-frontend"),
        "apt reported the lock it waited for:\n{}",
        out.stderr
    );
}

#[test]
fn ssh_service_without_systemd() {
    let h = Hosts::new(1);
    let out = h.run(
        "svc.rhai",
        r#"
import "check" as check;
// Local instances boot systemd: hiding its marker makes `service` (and the
// check labrun's service() makes) take the init-script path, as on a host
// without systemd.
A.sudo("mv /run/systemd/system /run/systemd/system.hidden-by-test");
check::equal(A.file_exists("/run/systemd/system"), false, "no systemd here");
A.write_file("/etc/init.d/labrun-demo", `#!/bin/sh
PIDFILE=/run/labrun-demo.pid
running() { [ -f $PIDFILE ] && kill -0 "$(cat $PIDFILE)" 2>/dev/null; }
case "$1" in
  start) running || { sleep 100000 >/dev/null 2>&1 & echo $! > $PIDFILE; } ;;
  stop) if running; then kill "$(cat $PIDFILE)"; rm -f $PIDFILE; fi ;;
  restart) "$0" stop; "$0" start ;;
  status) running ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 3 ;;
esac
`, #{mode: "0755"});
check::equal(step("start", || A.service("labrun-demo", "started")), true, "start");
let pid = A.read_file("/run/labrun-demo.pid");
check::equal(step("start again", || A.service("labrun-demo", "started")), false, "start again");
check::equal(A.service("labrun-demo", "restarted"), true, "restart");
check::that(A.read_file("/run/labrun-demo.pid") != pid, "restart made a new process");
check::equal(step("stop", || A.service("labrun-demo", "stopped")), true, "stop");
check::equal(step("stop again", || A.service("labrun-demo", "stopped")), false, "stop again");
check::equal(A.run("pgrep -x sleep", #{check: false}).code, 1, "no daemon left");
A.service("no-such-service", "started");
"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("changed start (")
        .assert_stderr_contains("ok      start again (")
        .assert_stderr_contains("changed stop (")
        .assert_stderr_contains("ok      stop again (")
        .assert_stderr_contains("ssh.service: `service no-such-service started` failed on");
}

/// The same states through systemd, as on local instances and EC2 alike.
#[test]
fn ssh_service_with_systemd() {
    let h = Hosts::new(1);
    let out = h.run(
        "svc.rhai",
        r#"
import "check" as check;
check::equal(A.file_exists("/run/systemd/system"), true, "systemd runs here");
A.write_file("/etc/systemd/system/labrun-demo.service",
    "[Service]\nExecStart=/bin/sleep 100000\n\n[Install]\nWantedBy=multi-user.target\n");
A.sudo("systemctl daemon-reload");
let main_pid = || { let p = A.run("systemctl show -p MainPID --value labrun-demo").stdout; p.trim(); p };
check::equal(step("start", || A.service("labrun-demo", "started")), true, "start");
let pid = main_pid.call();
check::equal(step("start again", || A.service("labrun-demo", "started")), false, "start again");
check::equal(A.service("labrun-demo", "restarted"), true, "restart");
check::that(main_pid.call() != pid, "restart made a new process");
check::equal(step("stop", || A.service("labrun-demo", "stopped")), true, "stop");
check::equal(step("stop again", || A.service("labrun-demo", "stopped")), false, "stop again");
check::equal(A.run("pgrep -x sleep", #{check: false}).code, 1, "no daemon left");
A.service("no-such-service", "started");
"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("changed start (")
        .assert_stderr_contains("ok      start again (")
        .assert_stderr_contains("changed stop (")
        .assert_stderr_contains("ok      stop again (")
        .assert_stderr_contains("`service no-such-service started` failed on");
}

#[test]
fn ssh_facts_and_forward_to_a_third_host() {
    let h = Hosts::new(2);
    let out = h.run(
        "fwd.rhai",
        r#"
import "check" as check;
let f = A.facts();
check::equal(f.os_id, "debian", "os_id (the local provider's default image)");
check::equal(f.os_version, "12", "os_version");
check::equal(f.private_ip, A_IP, "private_ip");
check::equal(f.hostname + "\n", A.run("hostname").stdout, "hostname");
// B's sshd, reached through A: a TCP connection from labrun to a third host.
let port = A.forward(B_IP, 22);
check::equal(A.forward(B_IP, 22), port, "same tunnel");
let b = ssh::connect(#{host: "127.0.0.1", port: port});
check::equal(b.run("hostname").stdout, B.run("hostname").stdout, "B's hostname through A");
check::equal(b.run("echo $SSH_CONNECTION").stdout.split(" ")[0], A_IP, "B sees A as the client");
// Sessions are shared: parallel closures use the one connection.
let r = parallel([|| A.run("echo 1").stdout, || A.run("echo 2").stdout, || ssh::connect(#{host: "127.0.0.1", port: A.port}).run("echo 3").stdout]);
check::equal(r, ["1\n", "2\n", "3\n"], "parallel on one session");
// Sessions inside captured arrays and maps: each call holds its session
// for a second, far longer than Rhai waits for a shared variable's lock.
let both = [A, B];
let named = #{ a: A, b: B };
let r = parallel([|| both[0].run("sleep 1; echo a").stdout, || both[1].run("sleep 1; echo b").stdout,
                  || named.a.run("sleep 1; echo c").stdout, || named.b.run("sleep 1; echo d").stdout]);
check::equal(r, ["a\n", "b\n", "c\n", "d\n"], "parallel on sessions in an array and a map");
check::equal(A.run("ss -Htn state established '( sport = :22 )' | wc -l").stdout, "1\n", "one SSH connection to A for everything");
"#,
        &[],
    );
    out.assert_code(0);
}

impl Hosts {
    /// The container of instance `i` (`a`, `b`, ...).
    fn container(&self, i: usize) -> String {
        format!("labrun-{}.{}", self.lab, NAMES[i].to_lowercase())
    }

    /// Starts labrun on `body` (after the connecting prelude), plain output
    /// on a pipe, for a test that acts while it runs.
    fn spawn(&self, file: &str, body: &str) -> std::process::Child {
        std::fs::write(
            self.test.dir().join(file),
            format!("{}\n{body}", self.prelude(true)),
        )
        .unwrap();
        self.test
            .command()
            .args([file, "--lab", &self.lab, "--output", "plain"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A command that prints far more than anyone reads: the result keeps the
/// head and tail with a line saying what was left out, and a warning says
/// so; a file too large to return whole is refused, not cut.
#[test]
fn ssh_large_output_is_capped_with_a_marker() {
    let h = Hosts::new(1);
    let out = h.run(
        "big.rhai",
        r#"
import "check" as check;
let r = A.run("seq 1 8000000");
check::that(r.stdout.len() < 9 * 1024 * 1024, `kept ${r.stdout.len()} bytes`);
check::that(r.stdout.starts_with("1\n2\n3\n"), "the head is kept");
check::that(r.stdout.ends_with("\n7999999\n8000000\n"), "the tail is kept");
let at = r.stdout.index_of("\n[labrun: ");
check::that(at > 0, "a marker line");
check::equal(r.stdout.index_of("[labrun: ", at + 2), -1, "one marker line");
print("marker: " + r.stdout.sub_string(at + 1, 300).split("\n")[0]);
let z = A.run("head -c 50000000 /dev/zero; echo; echo done");
check::that(z.stdout.len() < 9 * 1024 * 1024, `kept ${z.stdout.len()} bytes of zeros`);
check::that(z.stdout.ends_with("\ndone\n"), "the tail of a stream without lines");
A.run("head -c 20000000 /dev/zero > /tmp/big");
check::equal(A.read_file("/tmp/big", #{sudo: false}).len, 0, "read_file of a big file");
"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("marker: [labrun: ")
        .assert_stderr_contains(
            "MiB of output left out here; a command's result keeps the first 4 MiB and the last 4 MiB of each stream]",
        )
        .assert_stderr_contains(
            "warning: ssh.run: `seq 1 8000000` printed more than labrun keeps: ",
        )
        .assert_stderr_contains("warning: ssh.run: `head -c 50000000 /dev/zero; echo; echo done` printed more than labrun keeps")
        .assert_stderr_contains(
            "ssh.read_file: /tmp/big is larger than labrun keeps of a command's output (8 MiB at most)",
        );
}

/// sshd frozen mid-command (the whole instance paused): the command ends
/// with an error naming the dead connection within about 40 s of
/// keepalives, not at its 30-minute timeout; connecting again ends at the
/// connect timeout, naming the silent handshake.
#[test]
fn ssh_a_stopped_sshd_ends_in_a_clear_error() {
    let h = Hosts::new(1);
    let container = h.container(0);
    let mut child = h.spawn(
        "frozen.rhai",
        r#"
print("running");
let t = timestamp();
try { A.run("sleep 600"); print("returned?!"); } catch (e) { print(`mid-command after ${t.elapsed.to_int()}s: ${e}`); }
let t = timestamp();
try { ssh::connect(XS[0], #{timeout: 5}); print("connected?!"); } catch (e) { print(`connect after ${t.elapsed.to_int()}s: ${e}`); }
"#,
    );
    let mut lines = Vec::new();
    let mut paused = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "running" && !paused {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let (ok, text) = docker(&["pause", &container]);
            assert!(ok, "docker pause: {text}");
            paused = true;
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let (ok, text) = docker(&["unpause", &container]);
    assert!(ok, "docker unpause: {text}");
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    let mid = lines
        .iter()
        .find_map(|l| l.strip_prefix("mid-command after "))
        .unwrap_or_else(|| panic!("no mid-command error:\n{text}"));
    let secs: u64 = mid.split('s').next().unwrap().parse().unwrap();
    assert!((20..120).contains(&secs), "{mid}");
    assert!(
        mid.contains(&format!(
            "ssh.run: ubuntu@127.0.0.1:{}: connection lost while running `sleep 600` \
             (sshd stopped answering: 3 keepalives 10s apart got no reply)",
            h.port(0)
        )),
        "{mid}"
    );
    let connect = lines
        .iter()
        .find_map(|l| l.strip_prefix("connect after "))
        .unwrap_or_else(|| panic!("no connect error:\n{text}"));
    assert!(
        connect.contains(&format!(
            "ssh::connect: sshd at ubuntu@127.0.0.1:{} did not answer within 5s (last: connected, but no SSH handshake",
            h.port(0)
        )),
        "{connect}"
    );
}

/// Password logins: a wrong password fails even while a key session to the
/// same host and user is open; a host seen for the first time is pinned
/// before the password goes to it; and a host whose key changed never
/// receives the password (sshd's own log shows the connection, and no
/// password, where it does show the failed one).
#[test]
fn ssh_passwords_never_borrow_a_session_nor_reach_a_changed_host() {
    const PW: &str = "Lab-pw-7391";
    let h = Hosts::new(1);
    let container = h.container(0);
    let port = h.port(0);
    // sshd logs to the journal on systemd instances.
    let log = || {
        docker(&[
            "exec",
            &container,
            "journalctl",
            "-u",
            "ssh.service",
            "--no-pager",
            "-o",
            "cat",
        ])
        .1
    };
    let at = format!(r#"host: "127.0.0.1", port: {port}"#);

    let before = log().len();
    let first = h.run(
        "wrong.rhai",
        &format!(
            r#"
A.sudo("chpasswd", #{{stdin: "ubuntu:{PW}\n"}});
A.sudo("sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' /etc/ssh/sshd_config.d/labrun.conf \
        && echo 'LogLevel VERBOSE' >> /etc/ssh/sshd_config.d/labrun.conf && systemctl reload ssh");
try {{ ssh::connect(#{{{at}, password: "not-the-password"}}); print("wrong password connected?!"); }}
catch (e) {{ print(`wrong password: ${{e}}`); }}
"#
        ),
        &[],
    );
    first.assert_code(0).assert_stderr_contains(&format!(
        "wrong password: ssh::connect: ubuntu@127.0.0.1:{port}: the server refused password authentication as 'ubuntu'"
    ));
    assert!(
        log()[before..].contains("Failed password for ubuntu"),
        "sshd logs a password it receives:\n{}",
        log()
    );
    let ledger = std::fs::read_to_string(h.test.lab_dir(&h.lab).join("ledger.json")).unwrap();
    assert!(
        ledger.contains(&format!("\"127.0.0.1:{port}\": \"ssh-")),
        "pinned before the (refused) password was sent:\n{ledger}"
    );

    let second = h.run(
        "right.rhai",
        &format!(
            r#"
import "check" as check;
let P = ssh::connect(#{{{at}, password: "{PW}"}});
check::equal(P.run("whoami").stdout, "ubuntu\n", "password login");
check::equal(A.run("ss -Htn state established '( sport = :22 )' | wc -l").stdout, "2\n", "the key's and the password's connections");
A.sudo("rm -f /etc/ssh/ssh_host_*; ssh-keygen -A -q");
"#
        ),
        &[],
    );
    second.assert_code(0);

    let before = log().len();
    let third = h.run_with(
        false,
        "changed.rhai",
        &format!(
            r#"
try {{ ssh::connect(#{{{at}, password: "{PW}"}}); print("changed host connected?!"); }}
catch (e) {{ print(`changed host: ${{e}}`); }}
"#
        ),
        &[],
    );
    third.assert_code(0).assert_stderr_contains(&format!(
        "changed host: ssh::connect: host key of 127.0.0.1:{port} has changed"
    ));
    let seen = log()[before..].to_string();
    assert!(
        seen.contains("Connection from"),
        "the connection reached sshd:\n{seen}"
    );
    assert!(
        !seen.to_lowercase().contains("password"),
        "the password reached the changed host:\n{seen}"
    );
}

/// A tunnel's local port carries labrun's own connections only: another
/// process connecting to it is closed without reaching the far end.
#[test]
fn ssh_tunnels_carry_only_labrun_connections() {
    let h = Hosts::new(1);
    let mut child = h.spawn(
        "tunnel.rhai",
        r#"
let port = A.forward("127.0.0.1", 22);
print(`forward ${port}`);
sleep(4);
let b = ssh::connect(#{host: "127.0.0.1", port: port});
print("through the tunnel: " + b.run("echo ok").stdout);
"#,
    );
    let mut lines = Vec::new();
    let mut outsider = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(port) = line.strip_prefix("forward ") {
            use std::io::Read;
            let port: u16 = port.parse().unwrap();
            let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("the port listens");
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 64];
            outsider = Some(match tcp.read(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) => format!("error {e}"),
            });
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert!(text.contains("through the tunnel: ok"), "{text}");
    let outsider = outsider.expect("the forward's port was printed");
    assert!(
        outsider.is_empty() || outsider.contains("reset"),
        "another process got through the tunnel: {outsider:?}"
    );
}
