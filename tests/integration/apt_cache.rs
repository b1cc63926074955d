//! The local provider's shared package cache against the real engine: a
//! second lab's `apt install` is served from the cache, labs cannot reach
//! each other through it, apt falls back to the mirror when it is stopped,
//! `LABRUN_APT_CACHE=off` leaves instances without it, `labrun images
//! --prune` removes it and `labrun destroy` takes a lab's network from it.
//! Each test has a cache of its own (`LABRUN_APT_CACHE_NAME`), so stopping
//! or pruning it touches no other test.

use crate::harness::{Output, Test, docker, unique_lab};

/// Removes what a test left (labs' containers and networks, its cache),
/// failed or not.
struct Cleanup {
    labs: Vec<String>,
    cache: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for lab in &self.labs {
            let filter = format!("label=labrun.lab={lab}");
            let (_, ids) = docker(&["ps", "-a", "-q", "--filter", &filter]);
            for id in ids.split_whitespace() {
                docker(&["rm", "-f", id]);
            }
            let net = format!("labrun-{lab}");
            docker(&["network", "disconnect", "-f", &net, &self.cache]);
            docker(&["network", "rm", &net]);
        }
        docker(&["rm", "-f", &self.cache]);
        docker(&["volume", "rm", &self.cache]);
    }
}

/// A lab of one instance `box` (SSH from the operator, HTTP on 80 and 8080
/// from anywhere) that installs the `hello` package and prints its private
/// IP.
const LAB: &str = r#"
let g = sg::ensure(#{ name: "box-sg" });
g.allow(#{ port: 22, from: operator_cidr() });
g.allow(#{ port: 80, from: "0.0.0.0/0" });
g.allow(#{ port: 8080, from: "0.0.0.0/0" });
let vm = ec2::launch(#{ name: "box", security_groups: [g] });
let s = ssh::connect(vm);
s.sudo("apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends hello");
print(`ip ${vm.private_ip}`);
"#;

fn ip_of(out: &Output) -> String {
    out.all()
        .lines()
        .find_map(|l| l.strip_prefix("ip "))
        .unwrap_or_else(|| panic!("no ip line:\n{}", out.all()))
        .trim()
        .to_string()
}

/// The cache's transfer log: `time|I or O|bytes|client|path` lines (`I`
/// came from the mirror, `O` went to a client).
fn cache_log(cache: &str) -> String {
    let (ok, log) = docker(&[
        "exec",
        cache,
        "cat",
        "/var/log/apt-cacher-ng/apt-cacher.log",
    ]);
    assert!(ok, "reading the cache's log: {log}");
    log
}

/// `(from the mirror, to clients)` lines about `hello`'s package file.
fn hello_transfers(log: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<String> = log
        .lines()
        .filter(|l| l.contains("/hello_") && l.ends_with(".deb"))
        .map(String::from)
        .collect();
    let of = |kind: &str| {
        lines
            .iter()
            .filter(|l| l.split('|').nth(1) == Some(kind))
            .cloned()
            .collect::<Vec<_>>()
    };
    (of("I"), of("O"))
}

/// HTTP status of `curl` run in container `from` (`000`: no answer).
fn curl(from: &str, args: &[&str]) -> String {
    let mut all = vec![
        "exec",
        from,
        "curl",
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend_from_slice(args);
    docker(&all).1.trim().to_string()
}

#[test]
fn a_second_lab_installs_from_the_cache_which_joins_labs_without_connecting_them() {
    let (a, b) = (unique_lab("aca"), unique_lab("acb"));
    let cache = unique_lab("apt-cache");
    let _cleanup = Cleanup {
        labs: vec![a.clone(), b.clone()],
        cache: cache.clone(),
    };
    let t = Test::new()
        .playbook("lab.rhai", LAB)
        .env("LABRUN_APT_CACHE_NAME", &cache);

    // Lab A fills the cache; lab B's install of the same package is a hit.
    let out_a = t.run_with(&["run", "lab.rhai", "--lab", &a, "--output", "plain"]);
    out_a.assert_code(0);
    let out_b = t.run_with(&["run", "lab.rhai", "--lab", &b, "--output", "plain"]);
    out_b.assert_code(0);
    let (ip_a, ip_b) = (ip_of(&out_a), ip_of(&out_b));
    let log = cache_log(&cache);
    let (fetched, served) = hello_transfers(&log);
    assert_eq!(fetched.len(), 1, "fetched from the mirror once:\n{log}");
    assert_eq!(served.len(), 2, "served to both labs:\n{log}");
    assert!(
        served.iter().any(|l| l.contains(&format!("|{ip_a}|")))
            && served.iter().any(|l| l.contains(&format!("|{ip_b}|"))),
        "served to {ip_a} and {ip_b}:\n{log}"
    );
    // Transparent: plain apt, the mirror's own URLs.
    let box_a = format!("labrun-{a}.box");
    let box_b = format!("labrun-{b}.box");
    let (ok, policy) = docker(&["exec", &box_b, "apt-cache", "policy", "hello"]);
    assert!(
        ok && policy.contains(" http://"),
        "the mirror's own URL: {policy}"
    );

    // Isolation: B serves HTTP on 8080 and 80 to anyone, and the cache
    // itself (on B's network) reaches it; A reaches it neither directly
    // nor through the cache, in either form a proxy request can take.
    let cache_on_a = {
        let (_, ip) = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"labrun-{a}\").IPAddress}}}}"),
            &cache,
        ]);
        ip.trim().to_string()
    };
    assert!(
        cache_on_a.ends_with(".2"),
        "the cache is .2 on A: {cache_on_a}"
    );
    for port in ["8080", "80"] {
        docker(&["exec", "-d", &box_b, "python3", "-m", "http.server", port]);
    }
    let served_b = |port: &str| format!("http://{ip_b}:{port}/");
    let mut up = false;
    for _ in 0..30 {
        if curl(&cache, &[&served_b("8080")]) == "200" && curl(&cache, &[&served_b("80")]) == "200"
        {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        up,
        "lab B's web servers answer the cache (the test could fail)"
    );
    let proxy = format!("http://{cache_on_a}:3142");
    for port in ["8080", "80"] {
        let through = curl(&box_a, &["-x", &proxy, &served_b(port)]);
        assert_eq!(
            through, "403",
            "A through the cache as a proxy, port {port}"
        );
        let in_path = curl(&box_a, &[&format!("{proxy}/{ip_b}:{port}/")]);
        assert_ne!(
            in_path, "200",
            "A through the cache's path form, port {port}"
        );
        assert_eq!(
            curl(&box_a, &[&served_b(port)]),
            "000",
            "A directly, port {port}"
        );
    }
    assert_eq!(
        docker(&["exec", &cache, "cat", "/proc/sys/net/ipv4/ip_forward"])
            .1
            .trim(),
        "0",
        "the cache routes nothing"
    );

    // A stopped cache: apt goes to the mirror instead, and says nothing.
    assert!(docker(&["stop", &cache]).0);
    let (ok, detect) = docker(&[
        "exec",
        &box_b,
        "/usr/local/sbin/labrun-apt-proxy",
        "http://deb.debian.org/debian/pool/x.deb",
    ]);
    assert!(ok && detect.trim() == "DIRECT", "{detect}");
    let (ok, reinstall) = docker(&[
        "exec",
        &box_b,
        "sh",
        "-c",
        "apt-get clean && apt-get install -y --reinstall --no-install-recommends hello",
    ]);
    assert!(ok, "apt without its cache: {reinstall}");
    assert!(reinstall.contains("hello"), "{reinstall}");

    // Destroy takes each network from the cache (the engine refuses to
    // remove a network in use); prune removes the cache itself.
    for lab in [&a, &b] {
        t.run_with(&["destroy", "--lab", lab]).assert_code(0);
        let (_, nets) = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=labrun-{lab}$"),
        ]);
        assert_eq!(nets.trim(), "", "network of {lab} left");
    }
    let pruned = t.run_with(&["images", "--prune"]);
    pruned.assert_code(0);
    pruned.assert_stdout_contains(&format!("removed the package cache container {cache}"));
    pruned.assert_stdout_contains(&format!("removed the package cache volume {cache}"));
    assert!(
        !docker(&["inspect", &cache]).0,
        "the cache container is gone"
    );
    assert!(
        !docker(&["volume", "inspect", &cache]).0,
        "the cache volume is gone"
    );
    t.run_with(&["images", "--prune"])
        .assert_code(0)
        .assert_stdout_contains("no package cache to remove");
}

#[test]
fn with_the_cache_off_instances_have_no_proxy_and_no_cache_runs() {
    let lab = unique_lab("acoff");
    let cache = unique_lab("apt-cache-off");
    let _cleanup = Cleanup {
        labs: vec![lab.clone()],
        cache: cache.clone(),
    };
    let t = Test::new()
        .playbook(
            "one.rhai",
            r#"let vm = ec2::launch(#{ name: "box" }); print(vm.state);"#,
        )
        .env("LABRUN_APT_CACHE_NAME", &cache)
        .env("LABRUN_APT_CACHE", "off");
    t.run_with(&["run", "one.rhai", "--lab", &lab])
        .assert_code(0);
    let instance = format!("labrun-{lab}.box");
    let (ok, proxy) = docker(&["exec", &instance, "apt-config", "dump"]);
    assert!(ok, "{proxy}");
    assert!(
        !proxy.to_lowercase().contains("proxy-auto-detect"),
        "{proxy}"
    );
    assert!(
        !docker(&[
            "exec",
            &instance,
            "test",
            "-e",
            "/usr/local/sbin/labrun-apt-proxy"
        ])
        .0
    );
    assert!(!docker(&["inspect", &cache]).0, "no cache was started");
    let images = t.run_with(&["images"]);
    images
        .assert_code(0)
        .assert_stdout_contains("off (LABRUN_APT_CACHE=off)");
    let bad = Test::new()
        .playbook("one.rhai", "print(ec2::instances());")
        .env("LABRUN_APT_CACHE", "sometimes")
        .run_with(&["run", "one.rhai", "--lab", &lab]);
    assert_ne!(bad.code, 0, "{}", bad.all());
    bad.assert_stderr_contains("LABRUN_APT_CACHE=sometimes: expected on or off");
    t.run_with(&["destroy", "--lab", &lab]).assert_code(0);
}
