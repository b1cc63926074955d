//! The local provider against the real Docker engine: instances, enforced
//! security groups, operator SSH, idempotent relaunch, cleanup after a kill,
//! and clear errors. The first test to launch builds the base image (about
//! a minute and a half, once per machine); the others wait for it.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Cleanup, Output, Test, docker, finish, unique_lab};

/// Containers and networks labelled for `lab`, as `docker` lists them.
fn labelled(lab: &str) -> (String, String) {
    let filter = format!("label=labrun.lab={lab}");
    let (ok, containers) = docker(&["ps", "-a", "-q", "--filter", &filter]);
    assert!(ok, "docker ps failed: {containers}");
    let (ok, networks) = docker(&["network", "ls", "-q", "--filter", &filter]);
    assert!(ok, "docker network ls failed: {networks}");
    (containers.trim().to_string(), networks.trim().to_string())
}

fn destroy_and_check(t: &Test, lab: &str) -> Output {
    let out = t.run_with(&["destroy", "--lab", lab]);
    out.assert_code(0);
    assert_eq!(
        labelled(lab),
        (String::new(), String::new()),
        "destroy left labelled containers or networks:\n{}",
        out.stderr
    );
    out
}

fn container(lab: &str, name: &str) -> String {
    format!("labrun-{lab}.{name}")
}

/// Whether `from` (a container) can open a TCP connection to ip:port.
fn reachable_from(from: &str, ip: &str, port: u16) -> bool {
    docker(&["exec", from, "nc", "-z", "-w", "3", ip, &port.to_string()]).0
}

fn reachable_from_host(ip: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
}

/// Starts `nc -lk PORT` listeners in a container.
fn listen(container: &str, ports: &[u16]) {
    for p in ports {
        let (ok, out) = docker(&[
            "exec",
            "-d",
            container,
            "sh",
            "-c",
            &format!("nc -lk {p} >/dev/null"),
        ]);
        assert!(ok, "listener on {container}:{p}: {out}");
    }
    // Wait until they listen (seen from inside, where nothing filters).
    for p in ports {
        listen_ready(container, *p);
    }
}

/// The system ssh client with the lab's key.
fn ssh(t: &Test, lab: &str, port: u16, command: &str, connect_timeout: u32) -> (bool, String) {
    let key = t.lab_dir(lab).join("id_ed25519");
    let out = Command::new("ssh")
        .arg("-i")
        .arg(&key)
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            &format!("ConnectTimeout={connect_timeout}"),
            "ubuntu@127.0.0.1",
            command,
        ])
        .output()
        .expect("the ssh client runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Retries until sshd is up (it starts about a second after the container).
fn ssh_when_up(t: &Test, lab: &str, port: u16, command: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ok, out) = ssh(t, lab, port, command, 5);
        if ok {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "ssh -p {port} never worked: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    id: String,
    ip: String,
    port: u16,
}

/// Reads the playbook's `inst NAME ID IP PORT STATE USER` lines.
fn seen(out: &Output, name: &str) -> Seen {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("inst {name} ")))
        .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.stderr));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[5], "running", "{line}");
    assert_eq!(f[6], "ubuntu", "{line}");
    Seen {
        id: f[2].to_string(),
        ip: f[3].to_string(),
        port: f[4].parse().unwrap(),
    }
}

const LAB: &str = r#"
let p = params(#{ revoke: false });
let web = sg::ensure(#{ name: "web", description: "A: mysql from B only" });
let client = sg::ensure(#{ name: "client" });
let xs = ec2::launch([
    #{ name: "a", security_groups: [web] },
    #{ name: "b", security_groups: [client], instance_type: "t2.nano" },
    #{ name: "c" },
]);
if p.revoke {
    web.revoke(#{ port: 3306, from: xs[1] });
} else {
    web.allow(#{ port: 3306, from: xs[1] });
}
web.allow(#{ port: 22, from: operator_cidr() });
web.allow(#{ port: 8080, from: client });
for x in xs {
    print(`inst ${x.name} ${x.id} ${x.private_ip} ${x.ssh_port} ${x.state} ${x.user}`);
}
print(`rules ${web.rules.len()} found ${ec2::find("b").id} of ${ec2::instances().len()}`);
"#;

#[test]
fn security_groups_are_enforced_and_relaunch_is_idempotent() {
    let lab = unique_lab("sg");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().file("lab.rhai", LAB);
    let first = t.run_with(&["lab.rhai", "--lab", &lab]);
    first.assert_code(0);
    let (a, b, c) = (seen(&first, "a"), seen(&first, "b"), seen(&first, "c"));
    assert!(a.id.starts_with("i-") && a.id.len() == 14, "{a:?}");
    assert!(
        first
            .stderr
            .contains(&format!("rules 3 found {} of 3", b.id))
    );
    let (ca, cb, cc) = (
        container(&lab, "a"),
        container(&lab, "b"),
        container(&lab, "c"),
    );
    // t2.nano: 512 MiB.
    let (_, memory) = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &cb]);
    assert_eq!(memory.trim(), "536870912");

    // 3306 from B only (by instance), 8080 from group "client" (B).
    listen(&ca, &[3306, 8080]);
    assert!(reachable_from(&cb, &a.ip, 3306), "B must reach A:3306");
    assert!(!reachable_from(&cc, &a.ip, 3306), "C must not reach A:3306");
    assert!(
        !reachable_from_host(&a.ip, 3306),
        "the host must not reach A:3306"
    );
    assert!(
        reachable_from(&cb, &a.ip, 8080),
        "B (group client) must reach A:8080"
    );
    assert!(!reachable_from(&cc, &a.ip, 8080), "C must not reach A:8080");
    // Egress is open, ingress to C (no groups) is closed.
    listen(&cc, &[9000]);
    assert!(
        !reachable_from(&ca, &c.ip, 9000),
        "C has no group: nothing gets in"
    );

    // SSH from the operator, with the lab key, through A's group.
    let who = ssh_when_up(&t, &lab, a.port, "sudo id -u; echo $SSH_CONNECTION");
    assert!(who.starts_with("0\n"), "{who}");
    // C's group does not allow the operator: the banner never comes.
    let (ok, out) = ssh(&t, &lab, c.port, "true", 4);
    assert!(!ok, "ssh to C must be blocked: {out}");
    // Root inside cannot change the network (no CAP_NET_ADMIN).
    let (ok, _) = docker(&["exec", &ca, "ip", "link", "add", "x0", "type", "dummy"]);
    assert!(!ok, "root in an instance must not manage its network");

    // A restart loses the nft table; the next run puts it back, and the
    // relaunch returns the same instances. This run revokes 3306.
    let (ok, out) = docker(&["restart", "-t", "1", &ca]);
    assert!(ok, "{out}");
    let second = t.run_with(&["lab.rhai", "--lab", &lab, "--set", "revoke=true"]);
    second.assert_code(0);
    let (a2, b2, c2) = (seen(&second, "a"), seen(&second, "b"), seen(&second, "c"));
    assert_eq!((&a2.id, &b2.id, &c2.id), (&a.id, &b.id, &c.id));
    assert_eq!((&a2.ip, &b2.ip, &c2.ip), (&a.ip, &b.ip, &c.ip));
    assert!(second.stderr.contains("rules 2 "), "{}", second.stderr);
    listen(&ca, &[3306, 8080]);
    assert!(
        !reachable_from(&cb, &a.ip, 3306),
        "revoked: B must not reach A:3306"
    );
    assert!(reachable_from(&cb, &a.ip, 8080), "re-applied after restart");
    assert!(
        !reachable_from(&cc, &a.ip, 8080),
        "re-applied after restart"
    );
    // The restart moved A's SSH port; the run reports (and records) the new one.
    let ledger = std::fs::read_to_string(t.lab_dir(&lab).join("ledger.json")).unwrap();
    assert!(ledger.contains(&format!("\"ssh_port\": {}", a2.port)));
    ssh_when_up(&t, &lab, a2.port, "true");

    let status = t.run_with(&["status", "--lab", &lab]);
    status.assert_code(0).assert_stdout_contains(&a.id);
    assert!(status.stdout.contains(&a.ip) && status.stdout.contains("running"));

    let out = destroy_and_check(&t, &lab);
    out.assert_stderr_contains("removed instance a")
        .assert_stderr_contains("removed network labrun-")
        .assert_stderr_contains("removed security group web");
    // Idempotent; the key and secrets stay for a re-run.
    t.run_with(&["destroy", "--lab", &lab])
        .assert_code(0)
        .assert_stderr_contains("nothing left to remove on local");
    assert!(t.lab_dir(&lab).join("id_ed25519").exists());
}

#[test]
fn a_killed_launch_is_destroyed_completely() {
    let lab = unique_lab("kill");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().file(
        "lab.rhai",
        r#"
        let g = sg::ensure(#{ name: "g" });
        ec2::launch([#{ name: "k1", security_groups: [g] }, #{ name: "k2" }, #{ name: "k3" }]);
        sleep(60);
        "#,
    );
    let mut child = t
        .command()
        .args(["lab.rhai", "--lab", &lab])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill as soon as the first container exists (after an image build, if
    // this test is the first to need the image).
    let deadline = Instant::now() + Duration::from_secs(600);
    while labelled(&lab).0.is_empty() {
        assert!(Instant::now() < deadline, "no container was ever created");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("labrun ended before launching: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let killed = finish(child);
    assert_eq!(killed.code, -1, "killed by a signal:\n{}", killed.all());
    let out = destroy_and_check(&t, &lab);
    out.assert_stderr_contains("removed");
}

#[test]
fn destroy_finds_what_the_ledger_missed() {
    let lab = unique_lab("lost");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().file("lab.rhai", r#"ec2::launch(#{ name: "x" });"#);
    t.run_with(&["lab.rhai", "--lab", &lab]).assert_code(0);
    // Forget everything the ledger knew.
    let path = t.lab_dir(&lab).join("ledger.json");
    let mut ledger: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    ledger["resources"] = serde_json::json!([]);
    std::fs::write(&path, ledger.to_string()).unwrap();
    let (containers, networks) = labelled(&lab);
    assert!(!containers.is_empty() && !networks.is_empty());
    destroy_and_check(&t, &lab)
        .assert_stderr_contains("removed instance x")
        .assert_stderr_contains("removed network");
}

#[test]
fn bad_input_is_a_clear_error() {
    let lab = unique_lab("bad");
    let _cleanup = Cleanup::one(lab.clone());
    let cases = [
        (
            r#"ec2::launch(#{ name: "x", image: "centos-7" });"#,
            "unknown image 'centos-7'; available images: debian-12, debian-13, debian-sid, ubuntu-22.04",
        ),
        (
            r#"ec2::launch(#{ name: "x", instance_type: "m9.huge" });"#,
            "unknown instance_type 'm9.huge'; known types: t2.nano, t2.micro",
        ),
        (
            r#"sg::ensure(#{ name: "g" }).allow(#{ port: 22, from: "10.0.0/8" });"#,
            "'10.0.0/8' is not an IPv4 CIDR",
        ),
        (
            r#"sg::ensure(#{ name: "g" }).allow(#{ port: 70000, from: "10.0.0.0/8" });"#,
            "port 70000 is out of range (1-65535)",
        ),
        (
            r#"sg::find("missing").allow(#{ port: 22, from: "10.0.0.0/8" });"#,
            "SecurityGroup.allow: there is no such security group",
        ),
        (
            r#"ec2::launch(#{ name: "x", security_groups: ["missing"] });"#,
            "no security group 'missing' in this lab",
        ),
    ];
    let t = Test::new();
    for (n, (playbook, message)) in cases.iter().enumerate() {
        let file = format!("bad{n}.rhai");
        std::fs::write(t.dir().join(&file), playbook).unwrap();
        let out = t.run_with(&[&file, "--lab", &lab]);
        assert_eq!(out.code, 1, "{playbook}: {}", out.all());
        out.assert_stderr_contains(message);
    }
    assert_eq!(labelled(&lab).0, "", "bad input must launch nothing");
    destroy_and_check(&t, &lab);
}

#[test]
fn images_are_listed_and_built_on_request() {
    let t = Test::new();
    let out = t.run_with(&["images", "--build", "debian-12"]);
    out.assert_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("debian-12 "))
        .unwrap_or_else(|| panic!("no debian-12 line:\n{}", out.all()));
    assert!(
        line.contains(" yes ") && line.contains("labrun/debian-12:r"),
        "{line}"
    );
    assert!(out.stdout.contains("ubuntu-22.04"));
    t.run_with(&["images", "--build", "nope"])
        .assert_code(2)
        .assert_stderr_contains("unknown image 'nope'");
}

/// The `pull` source, which no registry lets the suite use as users would:
/// its upstream image is the `debian-12` base image already built, and an
/// extra apt source (Debian's archive spelt with its port, signed by the
/// bookworm release key) makes the reference one of its own. An instance
/// of the image it commits boots systemd, answers SSH and has the source.
#[test]
fn the_pull_source_builds_an_image_whose_instances_boot() {
    let lab = unique_lab("pull");
    let _cleanup = Cleanup::one(lab.clone());
    let listed = Test::new().run_with(&["images", "--build", "debian-12", "--output", "json"]);
    listed.assert_code(0);
    let events = listed.events();
    let debian = events
        .last()
        .and_then(|e| e["images"].as_array())
        .and_then(|a| a.iter().find(|i| i["name"] == "debian-12"))
        .unwrap_or_else(|| panic!("no debian-12 image:\n{}", listed.all()));
    let upstream = debian["detail"]
        .as_str()
        .unwrap()
        .split(", ")
        .next()
        .unwrap();
    assert!(upstream.starts_with("labrun/debian-12:r"), "{upstream}");

    let t = Test::new()
        .file(
            "extra.list",
            "deb [signed-by=/etc/apt/keyrings/labrun-mysql.gpg] \
             http://deb.debian.org:80/debian bookworm contrib\n",
        )
        .playbook(
            "lab.rhai",
            r#"
let g = step("sg", || { let g = sg::ensure(#{ name: "ssh" }); g.allow(#{ port: 22, from: operator_cidr() }); g });
let vm = step("launch", || ec2::launch(#{ name: "web", security_groups: [g] }));
let s = step("ssh", || ssh::connect(vm));
step("probe", || {
    let r = s.run("systemctl is-system-running --wait; grep -c contrib /etc/apt/sources.list.d/labrun-mysql.list");
    print(`probe: ${r.stdout.split("\n")}`);
});
"#,
        );
    let source = t.dir().join("extra.list");
    let t = t
        .env("LABRUN_IMAGE_SOURCE", "pull")
        .env("LABRUN_UPSTREAM_IMAGE", upstream)
        .env("LABRUN_MYSQL_APT_SOURCE", source.to_str().unwrap())
        .env(
            "LABRUN_MYSQL_APT_KEYRING",
            "/usr/share/keyrings/debian-archive-bookworm-stable.gpg",
        )
        .env("LABRUN_APT_CACHE", "off");
    let built = t.run_with(&[
        "images",
        "--build",
        "debian-12",
        "--rebuild",
        "--output",
        "plain",
    ]);
    built.assert_code(0);
    let all = built.all();
    let reference = all
        .split("built image debian-12 (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no build reported:\n{all}"))
        .to_string();
    assert!(
        reference.starts_with("labrun/debian-12:r") && reference != upstream,
        "{all}"
    );

    let out = t.run_with(&["lab.rhai", "--lab", &lab, "--output", "plain"]);
    out.assert_code(0);
    assert!(
        out.all().contains(r#"probe: ["running", "1", ""]"#),
        "systemd running and the extra source in place:\n{}",
        out.all()
    );
    let (_, image) = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &container(&lab, "web"),
    ]);
    assert_eq!(
        image.trim(),
        reference,
        "the instance runs the pulled-and-committed image"
    );
    destroy_and_check(&t, &lab);
    docker(&["rmi", &reference]);
}

/// An instance whose init fails as it starts is reported by the launch
/// that started it, with its exit status and last output, not by minutes
/// of waiting for its sshd. (Its init is replaced while it is stopped.)
#[test]
fn an_instance_that_stops_as_it_starts_is_reported_at_once() {
    let lab = unique_lab("boot");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().playbook(
        "lab.rhai",
        r#"step("launch", || ec2::launch(#{ name: "web" }));"#,
    );
    t.run_with(&["lab.rhai", "--lab", &lab]).assert_code(0);
    let web = container(&lab, "web");
    assert!(docker(&["stop", "-t", "1", &web]).0);
    let init = t.dir().join("labrun-init");
    std::fs::write(
        &init,
        "#!/bin/sh\necho 'labrun-init: no boot today'\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let target = format!("{web}:/usr/local/sbin/labrun-init");
    assert!(docker(&["cp", init.to_str().unwrap(), &target]).0);

    let out = t.run_with(&["lab.rhai", "--lab", &lab]);
    out.assert_code(1)
        .assert_stderr_contains("instance web stopped as soon as it started (exit 3)")
        .assert_stderr_contains("labrun-init: no boot today");
    destroy_and_check(&t, &lab);
}

/// A package whose script fails its first configure (a server whose first
/// start timed out on a busy host) is configured once more by
/// `apt_install`; one that always fails is an error that shows what its
/// script printed, not only apt's "dpkg returned an error code (1)".
/// Both come from a local repository on the instance.
#[test]
fn apt_install_configures_a_failed_package_once_more_and_shows_why_it_failed() {
    let lab = unique_lab("dpkg");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().playbook(
        "lab.rhai",
        r#"
let g = step("sg", || { let g = sg::ensure(#{ name: "ssh" }); g.allow(#{ port: 22, from: operator_cidr() }); g });
let vm = step("launch", || ec2::launch(#{ name: "web", security_groups: [g] }));
let s = step("ssh", || ssh::connect(vm));
step("repository", || {
    s.run(`set -e
mkdir -p /srv/repo && cd /srv/repo
for p in flaky broken; do
  d=$(mktemp -d); mkdir -p $d/DEBIAN
  printf 'Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n' $p > $d/DEBIAN/control
  if [ $p = flaky ]; then
    printf '#!/bin/sh\n[ -e /var/lib/flaky-tried ] && exit 0\ntouch /var/lib/flaky-tried\necho "flaky: first start timed out"\nexit 1\n' > $d/DEBIAN/postinst
  else
    printf '#!/bin/sh\necho "broken: cannot start, ever"\nexit 1\n' > $d/DEBIAN/postinst
  fi
  chmod 755 $d/DEBIAN/postinst
  dpkg-deb -b $d "$p"_1.0_all.deb >/dev/null
done
for f in *.deb; do dpkg-deb -f $f; echo "Filename: ./$f"; echo "Size: $(stat -c %s $f)"; echo "SHA256: $(sha256sum $f | cut -d' ' -f1)"; echo; done > Packages
echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list.d/local.list
apt-get update -q >/dev/null`, #{ sudo: true });
});
step("flaky", || s.apt_install(["flaky"]));
step("flaky is installed", || print(`flaky: ${s.run("dpkg-query -W -f='${Status}' flaky").stdout}`));
step("broken", || s.apt_install(["broken"]));
"#,
    );
    let out = t.run_with(&["lab.rhai", "--lab", &lab, "--output", "plain"]);
    out.assert_code(1)
        .assert_stderr_contains("changed flaky")
        .assert_stderr_contains("flaky: install ok installed")
        .assert_stderr_contains("FAILED  broken")
        .assert_stderr_contains("broken: cannot start, ever")
        .assert_stderr_contains("dpkg returned an error code (1)");
    destroy_and_check(&t, &lab);
}

#[test]
fn a_missing_engine_says_how_to_install_it() {
    let lab = unique_lab("noengine");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new()
        .file("lab.rhai", r#"ec2::launch(#{ name: "x" });"#)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let out = t.run_with(&["lab.rhai", "--lab", &lab]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stderr_contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock")
        .assert_stderr_contains("apt-get install docker.io");
}

/// A stopped or paused dockerd: its socket still takes connections (the
/// kernel queues them) but nothing answers. labrun gives up with an error
/// that says so, for a run and for `destroy`, instead of waiting forever.
#[test]
fn a_silent_engine_is_a_clear_error_within_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Accepts and holds every connection, reading nothing, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let host = format!("unix://{}", sock.display());
    let lab = unique_lab("silent");
    let t = Test::new()
        .file("lab.rhai", r#"ec2::launch(#{ name: "x" });"#)
        .env("DOCKER_HOST", &host);
    for args in [
        vec!["lab.rhai", "--lab", &lab],
        vec!["destroy", "--lab", &lab],
    ] {
        let start = Instant::now();
        let out = t.run_with(&args);
        let took = start.elapsed();
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
        out.assert_stderr_contains(&format!(
            "cannot reach the Docker engine at {host}: the engine did not answer within 20 s \
             (dockerd stopped, paused or hung?)"
        ));
        assert!(
            took >= Duration::from_secs(19) && took < Duration::from_secs(60),
            "{args:?} took {took:?}"
        );
    }
}

#[test]
fn the_helper_container_firewall_enforces_the_same_rules() {
    // What runs where nsenter cannot (Docker Desktop, non-root users).
    let lab = unique_lab("fwc");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new()
        .file(
            "lab.rhai",
            r#"
            let web = sg::ensure(#{ name: "web" });
            let xs = ec2::launch([#{ name: "a", security_groups: [web] }, #{ name: "b" }]);
            web.allow(#{ port: 3306, from: xs[1] });
            for x in xs {
                print(`inst ${x.name} ${x.id} ${x.private_ip} ${x.ssh_port} ${x.state} ${x.user}`);
            }
            "#,
        )
        .env("LABRUN_FIREWALL", "container");
    let out = t.run_with(&["lab.rhai", "--lab", &lab]);
    out.assert_code(0);
    let a = seen(&out, "a");
    let (ca, cb) = (container(&lab, "a"), container(&lab, "b"));
    listen(&ca, &[3306, 8080]);
    assert!(reachable_from(&cb, &a.ip, 3306), "B must reach A:3306");
    assert!(!reachable_from(&cb, &a.ip, 8080), "no rule for 8080");
    assert!(
        !reachable_from_host(&a.ip, 3306),
        "the host must not reach A:3306"
    );
    let filter = format!("label=labrun.lab={lab}");
    let (_, helpers) = docker(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "label=labrun.role=firewall",
    ]);
    assert_eq!(
        helpers.trim(),
        "",
        "helper containers are removed after use"
    );
    destroy_and_check(&t, &lab);
}

/// `status`, `images` and `destroy` with `--output json`, on a real lab.
#[test]
fn status_images_and_destroy_speak_json() {
    let lab = unique_lab("json");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().playbook(
        "j.rhai",
        r#"let g = sg::ensure(#{ name: "web", description: "json test" });
           g.allow(#{ port: 22, from: operator_cidr() });
           ec2::launch(#{ name: "box", security_groups: [g] });"#,
    );
    t.run_with(&["j.rhai", "--lab", &lab]).assert_code(0);

    let out = t.run_with(&["status", "--lab", &lab, "--output", "json"]);
    out.assert_code(0);
    let events = out.events();
    assert_eq!(events.len(), 1, "one document: {}", out.stdout);
    assert_eq!(events[0]["event"], "status");
    let labs = events[0]["labs"].as_array().unwrap();
    assert_eq!(labs.len(), 1);
    let l = &labs[0];
    assert_eq!(l["lab"], lab.as_str());
    assert_eq!(l["provider"], "local");
    assert_eq!(l["pending"], 0);
    let instances = l["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{l}");
    let i = &instances[0];
    assert_eq!(i["name"], "box");
    assert_eq!(i["state"], "running");
    assert!(i["id"].as_str().unwrap().starts_with("i-"));
    assert!(i["ssh_port"].as_u64().unwrap() > 0);
    let ledger_id = l["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "instance")
        .map(|r| r["id"].clone())
        .unwrap();
    assert_eq!(i["id"], ledger_id);
    assert_eq!(l["security_groups"][0]["name"], "web");
    assert_eq!(
        l["security_groups"][0]["rules"].as_array().unwrap().len(),
        1
    );
    // The text form still reads as before.
    let text = t.run_with(&["status", "--lab", &lab]);
    text.assert_code(0)
        .assert_stdout_contains("security groups: web (");

    let out = t.run_with(&["images", "--output", "json"]);
    out.assert_code(0);
    let last = out.events().pop().unwrap();
    assert_eq!(last["event"], "images");
    let debian = last["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "debian-12")
        .cloned()
        .unwrap();
    assert_eq!(debian["ready"], true);

    let out = t.run_with(&["destroy", "--lab", &lab, "--output", "json"]);
    out.assert_code(0);
    let events = out.events();
    let done: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "destroyed")
        .collect();
    assert_eq!(done.len(), 1, "{}", out.stdout);
    assert_eq!(done[0]["lab"], lab.as_str());
    assert_eq!(done[0]["status"], "ok");
    assert_eq!(done[0]["left"], serde_json::json!([]));
    let removed: Vec<&str> = done[0]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        removed.iter().any(|r| r.contains("box")) && removed.len() >= 3,
        "{removed:?}"
    );
    assert_eq!(labelled(&lab), (String::new(), String::new()));
    // Nothing left: status shows no instances.
    let out = t.run_with(&["status", "--lab", &lab, "--output", "json"]);
    assert_eq!(
        out.events()[0]["labs"][0]["instances"],
        serde_json::json!([])
    );
}

/// Decodes a `CapEff:` hex mask from /proc/PID/status.
fn effective_caps(status: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {status}"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;

/// A systemd unit the test enables: a listener on 8080 that must come back
/// by itself after a restart.
const LISTENER_UNIT: &str = "[Unit]\nDescription=test listener\n\n[Service]\n\
    ExecStart=/usr/bin/nc -lk 8080\n\n[Install]\nWantedBy=multi-user.target\n";

const SYSTEMD_LAB: &str = r#"
let web = sg::ensure(#{ name: "web", description: "8080 from group client, ssh from the operator" });
let client = sg::ensure(#{ name: "client" });
web.allow(#{ port: 22, from: operator_cidr() });
web.allow(#{ port: 8080, from: client });
let xs = ec2::launch([
    #{ name: "a", security_groups: [web] },
    #{ name: "b", security_groups: [client] },
    #{ name: "c" },
]);
for x in xs {
    print(`inst ${x.name} ${x.id} ${x.private_ip} ${x.ssh_port} ${x.state} ${x.user}`);
}
"#;

fn systemctl_state(container: &str) -> String {
    let (_, out) = docker(&[
        "exec",
        container,
        "systemctl",
        "is-system-running",
        "--wait",
    ]);
    out.trim().to_string()
}

/// Waits until `container`'s systemd has finished booting; its state.
fn booted(container: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = systemctl_state(container);
        if state == "running" || state == "degraded" {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "{container}: systemd never finished booting: {state}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until a unit of `container` is active.
fn active(container: &str, unit: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["exec", container, "systemctl", "is-active", "--quiet", unit]).0 {
        assert!(
            Instant::now() < deadline,
            "{container}: {unit} never became active"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn instances_boot_systemd_without_network_privileges_and_keep_their_groups_across_restarts() {
    let lab = unique_lab("sysd");
    let _cleanup = Cleanup::one(lab.clone());
    let t = Test::new().file("lab.rhai", SYSTEMD_LAB);
    let first = t.run_with(&["lab.rhai", "--lab", &lab]);
    first.assert_code(0);
    let (a, b) = (seen(&first, "a"), seen(&first, "b"));
    let (ca, cb, cc) = (
        container(&lab, "a"),
        container(&lab, "b"),
        container(&lab, "c"),
    );

    // systemd is PID 1 and boots without failed units of ours.
    for c in [&ca, &cb, &cc] {
        let (_, comm) = docker(&["exec", c, "cat", "/proc/1/comm"]);
        assert_eq!(comm.trim(), "systemd", "{c}");
        let state = booted(c);
        let (_, failed) = docker(&["exec", c, "systemctl", "--failed", "--plain", "--no-legend"]);
        assert!(
            state == "running" || state == "degraded",
            "{c}: {state}: {failed}"
        );
        for unit in ["ssh", "labrun", "systemd-journald", "dbus"] {
            assert!(!failed.contains(unit), "{c}: failed units: {failed}");
        }
        active(c, "ssh.service");
        // No NET_RAW or NET_ADMIN for PID 1, nor for root's processes.
        let (_, status) = docker(&["exec", c, "cat", "/proc/1/status"]);
        let caps = effective_caps(&status);
        assert_eq!(
            caps & (CAP_NET_RAW | CAP_NET_ADMIN),
            0,
            "{c}: CapEff {caps:x}"
        );
    }

    // Over SSH: sudo works without NET_RAW, the learner's tools are there,
    // and ping works through ICMP sockets.
    let out = ssh_when_up(
        &t,
        &lab,
        a.port,
        "sudo id -u; sudo grep CapEff /proc/self/status; \
         for p in vi nano less sudo ip ss ping curl journalctl; do command -v $p >/dev/null || echo missing $p; done; \
         ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ping-ok",
    );
    assert!(out.starts_with("0\n"), "{out}");
    let caps = effective_caps(&out);
    assert_eq!(
        caps & (CAP_NET_RAW | CAP_NET_ADMIN),
        0,
        "sudo: CapEff {caps:x}"
    );
    assert!(!out.contains("missing"), "{out}");
    assert!(out.contains("ping-ok"), "{out}");

    // An enabled service: 8080, open to B (group client) only.
    let (ok, out) = docker(&[
        "exec",
        &ca,
        "sh",
        "-c",
        &format!(
            "printf '{}' > /etc/systemd/system/labrun-test-listener.service && \
             systemctl daemon-reload && systemctl enable --now labrun-test-listener.service",
            LISTENER_UNIT.replace('\n', "\\n")
        ),
    ]);
    assert!(ok, "enabling the listener: {out}");
    listen_ready(&ca, 8080);
    let probe = |what: &str| {
        assert!(
            reachable_from(&cb, &a.ip, 8080),
            "{what}: B must reach A:8080"
        );
        assert!(
            !reachable_from(&cc, &a.ip, 8080),
            "{what}: C must not reach A:8080"
        );
        assert!(
            !reachable_from(&cc, &a.ip, 22),
            "{what}: C must not reach A:22"
        );
    };
    probe("before the restart");

    // `docker restart` with no labrun run after it: the group holds, and
    // the enabled service is back by itself.
    let (ok, out) = docker(&["restart", "-t", "5", &ca]);
    assert!(ok, "{out}");
    booted(&ca);
    active(&ca, "labrun-test-listener.service");
    listen_ready(&ca, 8080);
    probe("after docker restart of the instance");
    let (_, status) = docker(&["exec", &ca, "cat", "/proc/1/status"]);
    assert_eq!(effective_caps(&status) & (CAP_NET_RAW | CAP_NET_ADMIN), 0);

    // Restarting the network holder cuts the instance off (fail closed)
    // until labrun applies the group to the new namespace and moves the
    // instance into it.
    let holder = format!("labrunnet-{lab}.a");
    let (ok, out) = docker(&["restart", "-t", "1", &holder]);
    assert!(ok, "{out}");
    assert!(
        !reachable_from(&cb, &a.ip, 8080),
        "a restarted holder must not leave A open or half-connected"
    );
    assert!(!reachable_from(&cc, &a.ip, 8080));
    let again = t.run_with(&["lab.rhai", "--lab", &lab]);
    again.assert_code(0);
    assert_eq!(seen(&again, "a").id, a.id, "same instance");
    assert_eq!(seen(&again, "b"), b);
    booted(&ca);
    active(&ca, "labrun-test-listener.service");
    listen_ready(&ca, 8080);
    probe("after labrun re-applied a restarted holder");
    ssh_when_up(&t, &lab, seen(&again, "a").port, "true");

    destroy_and_check(&t, &lab);
}

/// Waits until something listens on `port` inside `container`.
fn listen_ready(container: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&[
        "exec",
        container,
        "nc",
        "-z",
        "-w",
        "1",
        "127.0.0.1",
        &port.to_string(),
    ])
    .0
    {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {container}:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether labrun applies security groups with nsenter on this machine (as
/// root, with the engine here), where a failing `nft` can be put first on
/// its PATH.
fn nsenter_firewall_here() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    root && std::env::var("DOCKER_HOST").map_or(true, |h| h.is_empty() || h.starts_with("unix://"))
        && Command::new("nsenter").arg("--version").output().is_ok()
}

#[test]
fn an_instance_whose_group_cannot_be_applied_is_stopped_and_says_why() {
    assert!(
        nsenter_firewall_here(),
        "this test needs root and a local engine (labrun's nsenter firewall path), as CI has"
    );
    let lab = unique_lab("fwfail");
    let _cleanup = Cleanup::one(lab.clone());
    // A real failure of the apply path: an `nft` that refuses every
    // ruleset, first on the PATH labrun runs nsenter with.
    let t = Test::new()
        .file(
            "lab.rhai",
            r#"
            let p = params(#{ port: 8080 });
            let g = sg::ensure(#{ name: "g" });
            g.allow(#{ port: 22, from: operator_cidr() });
            let x = ec2::launch(#{ name: "x", security_groups: [g] });
            g.allow(#{ port: p.port, from: "10.0.0.0/8" });
            print(`inst ${x.name} ${x.id} ${x.private_ip} ${x.ssh_port} ${x.state} ${x.user}`);
            "#,
        )
        .file(
            "bin/nft",
            "#!/bin/sh\necho 'nft: Error: the test refuses this ruleset' >&2\nexit 1\n",
        );
    let bin = t.dir().join("bin");
    std::fs::set_permissions(
        bin.join("nft"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let failing_path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cx = container(&lab, "x");
    let running = |c: &str| {
        let (_, state) = docker(&["inspect", "-f", "{{.State.Running}}", c]);
        state.trim() == "true"
    };

    // A new instance never starts.
    let out = t
        .command()
        .args(["lab.rhai", "--lab", &lab])
        .env("LABRUN_FIREWALL", "nsenter")
        .env("PATH", &failing_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("security groups of instance x; the instance is stopped"),
        "{stderr}"
    );
    assert!(stderr.contains("the test refuses this ruleset"), "{stderr}");
    assert!(!running(&cx), "x must not run without its group");

    // With a working nft it comes up, with its group.
    let ok = t.run_with(&["lab.rhai", "--lab", &lab]);
    ok.assert_code(0);
    let x = seen(&ok, "x");
    ssh_when_up(&t, &lab, x.port, "true");

    // A rule change that cannot be applied stops the running instance.
    let out = t
        .command()
        .args(["lab.rhai", "--lab", &lab, "--set", "port=9090"])
        .env("LABRUN_FIREWALL", "nsenter")
        .env("PATH", &failing_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("security groups of instance x; the instance is stopped"),
        "{stderr}"
    );
    assert!(
        !running(&cx),
        "x must be stopped when its group cannot be applied"
    );
    destroy_and_check(&t, &lab);
}
