//! The AWS provider against moto's EC2 API emulator on loopback. Every test
//! starts its own `moto_server` (own state, own port) and reads what labrun
//! created back through boto3, never through labrun.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Test;

pub(crate) const REGION: &str = "us-east-1";
const OPERATOR: &str = "203.0.113.7/32";

/// The tutorial's infrastructure: a group per server, both instances, SSH
/// from the operator only, MySQL from the client's private address only.
const TUTORIAL_INFRA: &str = r#"
let p = params(#{ image: "ubuntu-22.04", instance_type: "t2.micro" });
let groups = step("security groups", || [
    sg::ensure(#{ name: "mysql-server-sg", description: "MySQL server: SSH from the operator, 3306 from the client" }),
    sg::ensure(#{ name: "mysql-client-sg", description: "MySQL client: SSH from the operator" }),
]);
let server_sg = groups[0];
let client_sg = groups[1];
let both = step("launch instances", || ec2::launch([
    #{ name: "mysql-server", image: p.image, instance_type: p.instance_type, security_groups: [server_sg] },
    #{ name: "mysql-client", image: p.image, instance_type: p.instance_type, security_groups: [client_sg] },
]));
let server = both[0];
let client = both[1];
step("firewall rules", || {
    let me = operator_cidr();
    server_sg.allow(#{ port: 22, from: me });
    client_sg.allow(#{ port: 22, from: me });
    server_sg.allow(#{ port: 3306, from: client });
});
print(`server ${server.id} private ${server.private_ip} public ${server.public_ip} user ${server.user} type ${server.instance_type}`);
print(`client ${client.id} private ${client.private_ip} public ${client.public_ip}`);
"#;

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("LABRUN_MOTO_SERVER").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let venv = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/labrun/moto-venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        "moto_server".into()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A moto server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
    python: PathBuf,
    _logs: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let server = moto_server();
        let logs = tempfile::tempdir().expect("tempdir");
        let log_path = logs.path().join("moto.log");
        let fixture =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moto-amis.json");
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("moto log");
            let mut child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_AMIS_PATH", &fixture)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {}: {e}\nThe AWS tests need moto's EC2 emulator: run \
                         `bash scripts/setup.sh` (ensure_moto), or set LABRUN_MOTO_SERVER",
                        server.display()
                    )
                });
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let python = server.with_file_name("python");
                    return Moto {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        python: if python.exists() {
                            python
                        } else {
                            "python3".into()
                        },
                        _logs: logs,
                    };
                }
                if child.try_wait().expect("moto status").is_some() {
                    break; // port taken meanwhile: try another
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server did not listen within 60 s:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!(
            "moto_server exited three times:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// Runs Python `code` with `ec2` (boto3 on this server, `region`) and
    /// `lab(name)` (a tag filter) defined; returns `out` as JSON.
    pub fn query(&self, region: &str, code: &str) -> Value {
        let script = [
            "import boto3, json",
            &format!(
                "ec2 = boto3.client('ec2', region_name='{region}', endpoint_url='{}', \
                 aws_access_key_id='testing', aws_secret_access_key='testing')",
                self.url
            ),
            "def lab(name):",
            "    return [{'Name': 'tag:labrun:lab', 'Values': [name]}]",
            "LIVE = [{'Name': 'instance-state-name', 'Values': ['pending', 'running', 'stopping', 'stopped', 'shutting-down']}]",
            code,
            "print(json.dumps(out, default=str))",
        ]
        .join("\n");
        let out = Command::new(&self.python)
            .arg("-c")
            .arg(&script)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "boto3 query failed:\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON from boto3")
    }

    pub fn instances(&self, region: &str, lab: &str) -> Vec<Value> {
        let v = self.query(
            region,
            &format!(
                "out = [i for r in ec2.describe_instances(Filters=lab('{lab}') + LIVE)['Reservations'] for i in r['Instances']]"
            ),
        );
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn groups(&self, region: &str, lab: &str) -> Vec<Value> {
        let v = self.query(
            region,
            &format!("out = ec2.describe_security_groups(Filters=lab('{lab}'))['SecurityGroups']"),
        );
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn key_pairs(&self, region: &str, lab: &str) -> Vec<Value> {
        let v = self.query(
            region,
            &format!("out = ec2.describe_key_pairs(Filters=lab('{lab}'))['KeyPairs']"),
        );
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test whose labrun talks to `moto` with test credentials, the test
/// region and a given operator address, and reads no AWS files of the user.
pub(crate) fn on_aws(t: Test, endpoint: &str) -> Test {
    let none = t.dir().join("no-aws-config").display().to_string();
    t.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("LABRUN_OPERATOR_CIDR", OPERATOR)
}

fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource["Tags"]
        .as_array()?
        .iter()
        .find(|t| t["Key"] == key)
        .and_then(|t| t["Value"].as_str())
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|r| tag(r, "Name") == Some(name))
        .unwrap_or_else(|| panic!("no resource named {name} in {list:#?}"))
}

/// A group's ingress as sorted `proto from-to source` strings.
fn ingress(group: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in group["IpPermissions"].as_array().unwrap() {
        let head = format!(
            "{} {}-{}",
            p["IpProtocol"].as_str().unwrap(),
            p["FromPort"],
            p["ToPort"]
        );
        for r in p["IpRanges"].as_array().unwrap() {
            out.push(format!("{head} {}", r["CidrIp"].as_str().unwrap()));
        }
        for g in p["UserIdGroupPairs"].as_array().unwrap() {
            out.push(format!("{head} {}", g["GroupId"].as_str().unwrap()));
        }
    }
    out.sort();
    out
}

fn ids(list: &[Value], key: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|r| r[key].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn aws_builds_the_tutorials_infrastructure_exactly_and_converges() {
    let moto = Moto::start();
    let t = on_aws(Test::new(), &moto.url)
        .playbook("tut.rhai", TUTORIAL_INFRA)
        .args(&["--provider", "aws"]);
    let first = t.run();
    first
        .assert_code(0)
        .assert_stderr_contains("ok=0 changed=3 failed=0")
        .assert_stderr_contains("user ubuntu type t2.micro")
        .assert_stderr_contains(&format!(
            "2 instances of lab 'tut' are recorded on the EC2 emulator at {} (nothing is \
             billed); `labrun destroy --lab tut` removes them",
            moto.url
        ));

    // Read back through the API.
    let instances = moto.instances(REGION, "tut");
    assert_eq!(instances.len(), 2, "{instances:#?}");
    let server = by_name(&instances, "mysql-server");
    let client = by_name(&instances, "mysql-client");
    for (i, name) in [(server, "mysql-server"), (client, "mysql-client")] {
        assert_eq!(tag(i, "labrun:lab"), Some("tut"));
        assert_eq!(tag(i, "Name"), Some(name));
        assert_eq!(i["InstanceType"], "t2.micro");
        assert_eq!(i["KeyName"], "tut-key");
        // The newest Canonical jammy amd64 image of the fixture.
        assert_eq!(i["ImageId"], "ami-0000000000000a002");
        assert_eq!(i["State"]["Name"], "running");
        assert!(
            first.stderr.contains(&format!(
                "private {}",
                i["PrivateIpAddress"].as_str().unwrap()
            )),
            "{}",
            first.stderr
        );
    }
    let groups = moto.groups(REGION, "tut");
    assert_eq!(groups.len(), 2, "{groups:#?}");
    let server_sg = by_name(&groups, "mysql-server-sg");
    let client_sg = by_name(&groups, "mysql-client-sg");
    assert_eq!(tag(server_sg, "labrun:lab"), Some("tut"));
    assert_eq!(server_sg["GroupName"], "tut-mysql-server-sg");
    let client_ip = client["PrivateIpAddress"].as_str().unwrap();
    assert_eq!(
        ingress(server_sg),
        vec![
            format!("tcp 22-22 {OPERATOR}"),
            format!("tcp 3306-3306 {client_ip}/32")
        ]
    );
    assert_eq!(ingress(client_sg), vec![format!("tcp 22-22 {OPERATOR}")]);
    assert_eq!(
        server["SecurityGroups"][0]["GroupId"], server_sg["GroupId"],
        "the server runs in its group"
    );
    let keys = moto.key_pairs(REGION, "tut");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["KeyName"], "tut-key");
    assert_eq!(keys[0]["KeyType"], "ed25519");
    let public = std::fs::read_to_string(t.lab_dir("tut").join("id_ed25519.pub")).unwrap();
    let fingerprint_source = public.split_whitespace().nth(1).unwrap();
    let stored = moto.query(
        REGION,
        "out = ec2.describe_key_pairs(KeyNames=['tut-key'], IncludePublicKey=True)['KeyPairs'][0]['PublicKey']",
    );
    assert!(stored.as_str().unwrap().contains(fingerprint_source));

    // A second run finds everything and creates nothing.
    let second = t.run();
    second
        .assert_code(0)
        .assert_stderr_contains("changed=0 failed=0");
    let again = moto.instances(REGION, "tut");
    assert_eq!(ids(&again, "InstanceId"), ids(&instances, "InstanceId"));
    assert_eq!(
        ids(&moto.groups(REGION, "tut"), "GroupId"),
        ids(&groups, "GroupId")
    );
    assert_eq!(moto.key_pairs(REGION, "tut").len(), 1);
    assert_eq!(
        ingress(by_name(&moto.groups(REGION, "tut"), "mysql-server-sg")).len(),
        2
    );

    // status lists the lab's region and its instances with their age.
    let status = t.run_with(&["status", "--lab", "tut"]);
    status.assert_code(0);
    assert!(
        status.stdout.contains("provider=aws  region=us-east-1"),
        "{}",
        status.stdout
    );
    let server_id = server["InstanceId"].as_str().unwrap();
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains(server_id))
        .unwrap_or_else(|| panic!("{}", status.stdout));
    let age = line.split_whitespace().last().unwrap();
    assert!(
        line.contains("instance")
            && line.contains("mysql-server")
            && age[..age.len() - 1].parse::<u64>().is_ok()
            && "smhd".contains(&age[age.len() - 1..]),
        "{line}"
    );

    // destroy removes every instance, group and key pair of the lab.
    let destroyed = t.run_with(&["destroy", "--lab", "tut"]);
    destroyed
        .assert_code(0)
        .assert_stderr_contains(&format!("terminated instance mysql-server ({server_id})"))
        .assert_stderr_contains("deleted security group mysql-server-sg (")
        .assert_stderr_contains("deleted security group mysql-client-sg (")
        .assert_stderr_contains("deleted key pair tut-key")
        .assert_stderr_contains("lab 'tut': removed 5 resources on aws");
    assert_eq!(moto.instances(REGION, "tut"), Vec::<Value>::new());
    assert_eq!(moto.groups(REGION, "tut"), Vec::<Value>::new());
    assert_eq!(moto.key_pairs(REGION, "tut"), Vec::<Value>::new());
    t.run_with(&["destroy", "--lab", "tut"])
        .assert_code(0)
        .assert_stderr_contains("lab 'tut': nothing left to remove on aws");
}

#[test]
fn aws_destroy_finds_by_tag_what_the_ledger_lost() {
    let moto = Moto::start();
    let t = on_aws(Test::new(), &moto.url)
        .playbook("crash.rhai", TUTORIAL_INFRA)
        .args(&["--provider", "aws"]);
    t.run().assert_code(0);
    // A run that died before recording anything: the ledger knows nothing.
    let path = t.lab_dir("crash").join("ledger.json");
    let mut ledger: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(ledger["region"], REGION);
    ledger["resources"] = Value::Array(Vec::new());
    std::fs::write(&path, ledger.to_string()).unwrap();

    t.run_with(&["destroy", "--lab", "crash"])
        .assert_code(0)
        .assert_stderr_contains("terminated instance mysql-client (")
        .assert_stderr_contains("deleted key pair crash-key")
        .assert_stderr_contains("removed 5 resources");
    assert!(moto.instances(REGION, "crash").is_empty());
    assert!(moto.groups(REGION, "crash").is_empty());
    assert!(moto.key_pairs(REGION, "crash").is_empty());
}

/// An HTTP proxy to moto that answers one EC2 action with an AWS error, as
/// a real account does (`UnauthorizedOperation` without the permission),
/// and forwards everything else.
pub(crate) struct FaultProxy {
    pub(crate) url: String,
    pub(crate) faults: Arc<AtomicUsize>,
}

/// What the proxy does with one EC2 action.
#[derive(Clone, Copy)]
pub(crate) struct Fault {
    pub(crate) action: &'static str,
    pub(crate) answer: Answer,
    /// Answer this many requests so, then forward again.
    pub(crate) times: usize,
}

impl Fault {
    /// The first `times` launches refused as a busy account refuses them.
    pub(crate) fn throttled_launches(times: usize) -> Fault {
        Fault {
            action: "RunInstances",
            answer: Answer::Error {
                status: "503 Service Unavailable",
                code: "RequestLimitExceeded",
                message: "Request limit exceeded.",
            },
            times,
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Answer {
    /// An EC2 error answer: HTTP status, code, message.
    Error {
        status: &'static str,
        code: &'static str,
        message: &'static str,
    },
    /// Forward the request to EC2, then never answer labrun: the action
    /// happened and labrun does not know it (it is killed while it waits).
    Swallow,
}

const UNAUTHORIZED_RUN: Fault = Fault {
    action: "RunInstances",
    answer: Answer::Error {
        status: "403 Forbidden",
        code: "UnauthorizedOperation",
        message: "You are not authorized to perform this operation.",
    },
    times: usize::MAX,
};

impl FaultProxy {
    pub(crate) fn start(upstream: &str, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let faults = Arc::new(AtomicUsize::new(0));
        let counter = faults.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let upstream = upstream.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(client, &upstream, fault, &counter);
                });
            }
        });
        FaultProxy { url, faults }
    }
}

/// Serves one request of `client` and closes the connection.
fn proxy_one(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    faults: &AtomicUsize,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let faulted = body
        .split('&')
        .any(|kv| kv == format!("Action={}", fault.action))
        && faults.fetch_add(1, Ordering::SeqCst) < fault.times;
    match fault.answer {
        Answer::Error {
            status,
            code,
            message,
        } if faulted => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                 <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
                 <RequestID>labrun-test-fault</RequestID></Response>"
            );
            write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            return Ok(());
        }
        Answer::Swallow if faulted => {
            let mut server = TcpStream::connect(upstream)?;
            server.write_all(&buf)?;
            std::io::copy(&mut server, &mut std::io::sink())?;
            // Hold labrun's connection until labrun goes away.
            while client.read(&mut chunk)? > 0 {}
            return Ok(());
        }
        _ => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&buf)?;
    // moto answers with `Connection: close`: relay until it closes.
    std::io::copy(&mut server, &mut client)?;
    Ok(())
}

#[test]
fn aws_api_error_names_what_labrun_was_doing_and_the_lab_can_be_destroyed() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, UNAUTHORIZED_RUN);
    let t = on_aws(Test::new(), &proxy.url)
        .playbook("denied.rhai", TUTORIAL_INFRA)
        .args(&["--provider", "aws"]);
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_contains(
            "launching instance 'mysql-server': UnauthorizedOperation: You are not authorized \
             to perform this operation.",
        )
        .assert_stderr_contains("ec2::launch: ")
        .assert_stderr_contains("launch instances")
        .assert_stderr_contains("labrun destroy --lab denied");
    assert!(proxy.faults.load(Ordering::SeqCst) >= 1);
    // What was made before the failure is there, and nothing else.
    assert_eq!(moto.groups(REGION, "denied").len(), 2);
    assert_eq!(moto.key_pairs(REGION, "denied").len(), 1);
    assert!(moto.instances(REGION, "denied").is_empty());

    let destroyed = t.run_with(&["destroy", "--lab", "denied", "--endpoint-url", &moto.url]);
    destroyed
        .assert_code(0)
        .assert_stderr_contains("deleted security group mysql-server-sg")
        .assert_stderr_contains("deleted key pair denied-key");
    assert!(moto.groups(REGION, "denied").is_empty());
    assert!(moto.key_pairs(REGION, "denied").is_empty());
    assert!(moto.instances(REGION, "denied").is_empty());
}

#[test]
fn aws_images_resolve_to_the_publishers_newest_ami_or_pass_through() {
    let moto = Moto::start();
    let t = on_aws(Test::new(), &moto.url)
        .playbook(
            "img.rhai",
            r#"
            let list = ec2::launch([
                #{ name: "jammy", image: "ubuntu-22.04" },
                #{ name: "bookworm", image: "debian-12" },
                #{ name: "literal", image: "ami-12345678" },
                #{ name: "noble", image: "ubuntu-24.04" },
            ]);
            for i in list { print(`${i.name} user=${i.user} image=${i.image} port=${i.ssh_port}`); }
            "#,
        )
        .args(&["--provider", "aws"]);
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_contains("jammy user=ubuntu image=ubuntu-22.04 port=0")
        .assert_stderr_contains("bookworm user=admin image=debian-12")
        .assert_stderr_contains("the EC2 endpoint is an emulator");
    let instances = moto.instances(REGION, "img");
    let image_of = |name: &str| by_name(&instances, name)["ImageId"].clone();
    // Newest amd64 jammy published by Canonical: not the newer arm64 one,
    // not the newer one of another owner.
    assert_eq!(image_of("jammy"), "ami-0000000000000a002");
    assert_eq!(image_of("bookworm"), "ami-0000000000000d012");
    assert_eq!(image_of("literal"), "ami-12345678");
    // No noble image is listed: EC2 resolves Canonical's SSM parameter itself.
    assert_eq!(
        image_of("noble"),
        "resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    );

    let bad = on_aws(Test::new(), &moto.url)
        .playbook(
            "bad.rhai",
            r#"ec2::launch(#{ name: "x", image: "centos-7" });"#,
        )
        .args(&["--provider", "aws"])
        .run();
    bad.assert_code(1).assert_stderr_contains(
        "unknown image 'centos-7' on aws: use one of ubuntu-22.04, ubuntu-24.04, ubuntu-20.04, debian-12",
    );
}

#[test]
fn aws_operator_address_must_be_given_when_the_endpoint_is_overridden() {
    let moto = Moto::start();
    let playbook = r#"step("who", || print(`operator ${operator_cidr()}`));"#;
    let t = on_aws(Test::new(), &moto.url)
        .env("LABRUN_OPERATOR_CIDR", "")
        .playbook("op.rhai", playbook)
        .args(&["--provider", "aws"]);
    t.run()
        .assert_code(1)
        .assert_stderr_contains("the EC2 endpoint is overridden")
        .assert_stderr_contains("pass --operator-cidr A.B.C.D/32 (or set LABRUN_OPERATOR_CIDR)");
    t.run_with(&[
        "op.rhai",
        "--provider",
        "aws",
        "--operator-cidr",
        "198.51.100.9",
    ])
    .assert_code(0)
    .assert_stderr_contains("operator 198.51.100.9/32");
    t.run_with(&[
        "op.rhai",
        "--provider",
        "aws",
        "--operator-cidr",
        "10.1.2.300/8",
    ])
    .assert_code(2)
    .assert_stderr_contains("--operator-cidr: '10.1.2.300/8' is not an IPv4 CIDR");
}

#[test]
fn aws_account_without_a_default_vpc_is_a_clear_error() {
    let moto = Moto::start();
    moto.query(
        REGION,
        "vpc = ec2.describe_vpcs(Filters=[{'Name': 'isDefault', 'Values': ['true']}])['Vpcs'][0]['VpcId']\n\
         for s in ec2.describe_subnets(Filters=[{'Name': 'vpc-id', 'Values': [vpc]}])['Subnets']:\n    \
             ec2.delete_subnet(SubnetId=s['SubnetId'])\n\
         for g in ec2.describe_security_groups(Filters=[{'Name': 'vpc-id', 'Values': [vpc]}])['SecurityGroups']:\n    \
             g['GroupName'] != 'default' and ec2.delete_security_group(GroupId=g['GroupId'])\n\
         ec2.delete_vpc(VpcId=vpc)\n\
         out = vpc",
    );
    on_aws(Test::new(), &moto.url)
        .playbook("novpc.rhai", r#"sg::ensure(#{ name: "web" });"#)
        .args(&["--provider", "aws"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("this account has no default VPC in us-east-1")
        .assert_stderr_contains("aws ec2 create-default-vpc --region us-east-1")
        .assert_stderr_contains("--vpc VPC_ID --subnet SUBNET_ID");
}

#[test]
fn aws_profile_gives_region_and_credentials_and_the_lab_keeps_its_region() {
    let moto = Moto::start();
    let t = Test::new().file(
        "aws/config",
        "[profile lab]\nregion = eu-west-1\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    );
    let config = t.dir().join("aws/config").display().to_string();
    let none = t.dir().join("aws/none").display().to_string();
    let t = t
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("LABRUN_OPERATOR_CIDR", OPERATOR)
        .playbook("prof.rhai", r#"sg::ensure(#{ name: "web" });"#)
        .args(&["--provider", "aws", "--profile", "lab"]);
    t.run().assert_code(0);
    assert_eq!(moto.groups("eu-west-1", "prof").len(), 1);
    assert!(moto.groups(REGION, "prof").is_empty());

    // Another region is refused while the lab has resources...
    t.run_with(&[
        "destroy",
        "--lab",
        "prof",
        "--profile",
        "lab",
        "--region",
        "us-west-2",
    ])
    .assert_code(1)
    .assert_stderr_contains("lab 'prof' has resources in region eu-west-1, not us-west-2");
    // ...and the recorded one is used when none is given.
    let destroyed = t.run_with(&["destroy", "--lab", "prof", "--profile", "lab"]);
    destroyed
        .assert_code(0)
        .assert_stderr_contains("deleted security group web");
    assert!(moto.groups("eu-west-1", "prof").is_empty());
}

#[test]
fn aws_missing_credentials_and_region_are_clear_errors() {
    let moto = Moto::start();
    let t = Test::new();
    let none = t.dir().join("none").display().to_string();
    let t = t
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("LABRUN_OPERATOR_CIDR", OPERATOR)
        .playbook("nocreds.rhai", r#"sg::ensure(#{ name: "web" });"#)
        .args(&["--provider", "aws"]);
    t.run()
        .assert_code(1)
        .assert_stderr_contains("aws: no region: pass --region REGION, set AWS_REGION");
    t.run_with(&["nocreds.rhai", "--provider", "aws", "--region", REGION])
        .assert_code(1)
        .assert_stderr_contains("aws: no usable credentials")
        .assert_stderr_contains(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile",
        );
}

#[test]
fn aws_launch_tries_the_next_zone_when_one_cannot_run_the_type() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(
        &moto.url,
        Fault {
            action: "RunInstances",
            answer: Answer::Error {
                status: "400 Bad Request",
                code: "Unsupported",
                message: "Your requested instance type (t2.micro) is not supported in your \
                          requested Availability Zone (us-east-1a).",
            },
            times: 1,
        },
    );
    let subnets = moto.query(
        REGION,
        "out = sorted((s['AvailabilityZone'], s['SubnetId']) for s in ec2.describe_subnets(\
         Filters=[{'Name': 'default-for-az', 'Values': ['true']}])['Subnets'])",
    );
    let first = subnets[0][1].as_str().unwrap();
    let second = subnets[1][1].as_str().unwrap();
    let out = on_aws(Test::new(), &proxy.url)
        .playbook("zone.rhai", r#"ec2::launch(#{ name: "web" });"#)
        .args(&["--provider", "aws", "-v"])
        .run();
    out.assert_code(0).assert_stderr_contains(&format!(
        "{first} cannot run t2.micro (Unsupported); trying {second}"
    ));
    assert_eq!(
        proxy.faults.load(Ordering::SeqCst),
        2,
        "one fault, then forwarded"
    );
    let instances = moto.instances(REGION, "zone");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0]["SubnetId"], second);
}

#[test]
fn the_shipped_lab_runs_on_the_emulator_as_far_as_it_can_and_says_why_it_stops() {
    let moto = Moto::start();
    let playbook = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/mysql_client_server.rhai"
    );
    let t = on_aws(Test::new(), &moto.url).args(&[playbook, "--provider", "aws"]);
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_contains("changed security groups")
        .assert_stderr_contains("changed launch mysql-server and mysql-client")
        .assert_stderr_contains("changed allow 3306 from mysql-client only")
        .assert_stderr_contains("FAILED  wait for SSH")
        .assert_stderr_contains("it is a record of an EC2 API emulator (--endpoint-url)")
        .assert_stderr_contains("in step 'wait for SSH'");
    assert_eq!(moto.instances(REGION, "mysql_client_server").len(), 2);
    on_aws(Test::new(), &moto.url)
        .env("LABRUN_STATE_DIR", t.state_dir().to_str().unwrap())
        .args(&["destroy", "--lab", "mysql_client_server"])
        .run()
        .assert_code(0);
    let left: Vec<_> = moto
        .instances(REGION, "mysql_client_server")
        .into_iter()
        .filter(|i| i["State"]["Name"] != "terminated")
        .collect();
    assert!(left.is_empty(), "{left:#?}");
}

/// The lab id that a state directory's ledger holds for `lab`.
fn lab_id(t: &Test, lab: &str) -> String {
    let ledger = ledger(t, lab);
    ledger["lab_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no lab_id in {ledger:#}"))
        .to_string()
}

fn ledger(t: &Test, lab: &str) -> Value {
    let path = t.lab_dir(lab).join("ledger.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The resources of `list` tagged with lab id `id`.
fn with_id<'a>(list: &'a [Value], id: &str) -> Vec<&'a Value> {
    list.iter()
        .filter(|r| tag(r, "labrun:lab-id") == Some(id))
        .collect()
}

fn names(list: &[&Value], key: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|r| r[key].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn aws_one_lab_name_in_two_state_directories_is_two_labs() {
    let moto = Moto::start();
    let a = on_aws(Test::new(), &moto.url)
        .playbook("twin.rhai", TUTORIAL_INFRA)
        .args(&["--provider", "aws"]);
    let b = on_aws(Test::new(), &moto.url)
        .playbook("twin.rhai", TUTORIAL_INFRA)
        .args(&["--provider", "aws"]);
    a.run()
        .assert_code(0)
        .assert_stderr_contains("ok=0 changed=3 failed=0");
    // B adopts none of A's resources: it makes its own.
    b.run()
        .assert_code(0)
        .assert_stderr_contains("ok=0 changed=3 failed=0");
    let (id_a, id_b) = (lab_id(&a, "twin"), lab_id(&b, "twin"));
    assert_ne!(id_a, id_b);

    let instances = moto.instances(REGION, "twin");
    assert_eq!(instances.len(), 4, "{instances:#?}");
    let (inst_a, inst_b) = (with_id(&instances, &id_a), with_id(&instances, &id_b));
    assert_eq!(inst_a.len(), 2);
    assert_eq!(inst_b.len(), 2);
    let groups = moto.groups(REGION, "twin");
    assert_eq!(groups.len(), 4, "{groups:#?}");
    let short_b = &id_b[..8];
    assert_eq!(
        names(&with_id(&groups, &id_a), "GroupName"),
        ["twin-mysql-client-sg", "twin-mysql-server-sg"]
    );
    assert_eq!(
        names(&with_id(&groups, &id_b), "GroupName"),
        [
            format!("twin-mysql-client-sg-{short_b}"),
            format!("twin-mysql-server-sg-{short_b}")
        ]
    );
    let keys = moto.key_pairs(REGION, "twin");
    assert_eq!(names(&with_id(&keys, &id_a), "KeyName"), ["twin-key"]);
    assert_eq!(
        names(&with_id(&keys, &id_b), "KeyName"),
        [format!("twin-key-{short_b}")]
    );
    for i in &inst_b {
        assert_eq!(i["KeyName"], format!("twin-key-{short_b}"));
        let group = i["SecurityGroups"][0]["GroupId"].as_str().unwrap();
        assert!(
            with_id(&groups, &id_b)
                .iter()
                .any(|g| g["GroupId"] == group),
            "B's instance runs in B's group: {i:#?}"
        );
    }
    // Each copy still finds its own on a second run.
    a.run()
        .assert_code(0)
        .assert_stderr_contains("changed=0 failed=0");
    assert_eq!(moto.instances(REGION, "twin").len(), 4);

    // Destroying B leaves A's lab as it was.
    b.run_with(&["destroy", "--lab", "twin"])
        .assert_code(0)
        .assert_stderr_contains("lab 'twin': removed 5 resources on aws");
    let left = moto.instances(REGION, "twin");
    assert_eq!(
        ids(&left, "InstanceId"),
        names(&inst_a, "InstanceId"),
        "A's instances live on"
    );
    assert!(left.iter().all(|i| i["State"]["Name"] == "running"));
    assert_eq!(
        names(
            &moto.groups(REGION, "twin").iter().collect::<Vec<_>>(),
            "GroupName"
        ),
        ["twin-mysql-client-sg", "twin-mysql-server-sg"]
    );
    assert_eq!(
        names(
            &moto.key_pairs(REGION, "twin").iter().collect::<Vec<_>>(),
            "KeyName"
        ),
        ["twin-key"]
    );
    a.run_with(&["destroy", "--lab", "twin"])
        .assert_code(0)
        .assert_stderr_contains("lab 'twin': removed 5 resources on aws");
    assert!(moto.instances(REGION, "twin").is_empty());
    assert!(moto.groups(REGION, "twin").is_empty());
    assert!(moto.key_pairs(REGION, "twin").is_empty());
}

/// A group and an instance in it, the smallest lab with all three kinds.
const WEB: &str = r#"
let g = sg::ensure(#{ name: "web" });
ec2::launch(#{ name: "web", security_groups: [g] });
"#;

#[test]
fn aws_destroy_refuses_what_its_ledger_names_without_the_lab_id() {
    let moto = Moto::start();
    let a = on_aws(Test::new(), &moto.url)
        .playbook("shared.rhai", WEB)
        .args(&["--provider", "aws"]);
    let b = on_aws(Test::new(), &moto.url)
        .playbook("shared.rhai", WEB)
        .args(&["--provider", "aws"]);
    a.run().assert_code(0);
    b.run().assert_code(0);
    let id_a = lab_id(&a, "shared");
    let id_b = lab_id(&b, "shared");
    let instances = moto.instances(REGION, "shared");
    let a_instance = with_id(&instances, &id_a)[0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let groups = moto.groups(REGION, "shared");
    let a_group = with_id(&groups, &id_a)[0]["GroupId"]
        .as_str()
        .unwrap()
        .to_string();
    // Made by a labrun from before lab ids: the lab's name, no id.
    let legacy = moto.query(
        REGION,
        "tags = [{'Key': 'labrun:lab', 'Value': 'shared'}, {'Key': 'Name', 'Value': 'old'}]\n\
         out = ec2.run_instances(ImageId='ami-12345678', MinCount=1, MaxCount=1, \
         TagSpecifications=[{'ResourceType': 'instance', 'Tags': tags}])['Instances'][0]['InstanceId']",
    );
    let legacy = legacy.as_str().unwrap();

    // B's ledger names A's instance, group and key pair (as a labrun that
    // adopted by name alone recorded them), and the old instance.
    let path = b.lab_dir("shared").join("ledger.json");
    let mut data = ledger(&b, "shared");
    let entry = |kind: &str, name: &str, id: &str| {
        serde_json::json!({"kind": kind, "name": name, "id": id, "state": "created",
                           "data": {}, "recorded_at": 1})
    };
    let list = data["resources"].as_array_mut().unwrap();
    list.push(entry("instance", "adopted", &a_instance));
    list.push(entry("instance", "old", legacy));
    list.push(entry("security_group", "adopted-sg", &a_group));
    list.push(entry("key_pair", "shared-key", "key-of-a"));
    std::fs::write(&path, data.to_string()).unwrap();

    let out = b.run_with(&["destroy", "--lab", "shared"]);
    out.assert_code(0)
        .assert_stderr_contains(&format!(
            "warning: instance adopted ({a_instance}) is in lab 'shared's ledger but is not this \
             lab's (it is another copy of lab 'shared' (labrun:lab-id {id_a}; this lab's is \
             {id_b}), from another state directory or person): not deleted, and dropped from \
             the ledger; delete it yourself if it is yours"
        ))
        .assert_stderr_contains(&format!(
            "warning: instance old ({legacy}) is in lab 'shared's ledger but is not this lab's \
             (it has no labrun:lab-id tag (made by a labrun from before lab ids, or not by \
             labrun)): not deleted"
        ))
        .assert_stderr_contains(&format!(
            "warning: security group adopted-sg ({a_group}) is in lab 'shared's ledger but is \
             not this lab's (it is another copy"
        ))
        .assert_stderr_contains(
            "warning: key pair shared-key is in lab 'shared's ledger but is not this lab's",
        )
        .assert_stderr_contains("lab 'shared': removed 3 resources on aws");
    assert!(!out.stderr.contains("terminated instance adopted"));
    assert_eq!(ledger(&b, "shared")["resources"], serde_json::json!([]));
    // A's lab and the old instance are untouched; B's is gone.
    let live = moto.instances(REGION, "shared");
    let mut expected = vec![a_instance.clone(), legacy.to_string()];
    expected.sort();
    assert_eq!(ids(&live, "InstanceId"), expected);
    assert!(live.iter().all(|i| i["State"]["Name"] == "running"));
    assert_eq!(ids(&moto.groups(REGION, "shared"), "GroupId"), [a_group]);
    assert_eq!(
        names(
            &moto.key_pairs(REGION, "shared").iter().collect::<Vec<_>>(),
            "KeyName"
        ),
        ["shared-key"]
    );

    // A removes its own and leaves the old instance: it is not A's either.
    a.run_with(&["destroy", "--lab", "shared"])
        .assert_code(0)
        .assert_stderr_contains(&format!("terminated instance web ({a_instance})"))
        .assert_stderr_contains("lab 'shared': removed 3 resources on aws");
    assert_eq!(
        ids(&moto.instances(REGION, "shared"), "InstanceId"),
        [legacy]
    );
    assert!(moto.groups(REGION, "shared").is_empty());
    assert!(moto.key_pairs(REGION, "shared").is_empty());

    // A ledger from before lab ids gets one, and its old instance is refused.
    let c = on_aws(Test::new(), &moto.url);
    std::fs::create_dir_all(c.lab_dir("shared")).unwrap();
    let old_ledger = serde_json::json!({"lab": "shared", "provider": "aws", "region": REGION,
        "created_at": 1, "updated_at": 1, "resources": [entry("instance", "old", legacy)]});
    std::fs::write(
        c.lab_dir("shared").join("ledger.json"),
        old_ledger.to_string(),
    )
    .unwrap();
    c.run_with(&["destroy", "--lab", "shared"])
        .assert_code(0)
        .assert_stderr_contains(
            "warning: lab 'shared' was recorded by a labrun from before lab ids: its resources \
             at AWS carry no labrun:lab-id tag",
        )
        .assert_stderr_contains(&format!(
            "warning: instance old ({legacy}) is in lab 'shared's ledger but is not this lab's \
             (it has no labrun:lab-id tag"
        ))
        .assert_stderr_contains("lab 'shared': nothing left to remove on aws");
    assert_eq!(lab_id(&c, "shared").len(), 16);
    assert_eq!(
        ids(&moto.instances(REGION, "shared"), "InstanceId"),
        [legacy]
    );
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `t` through a proxy that lets RunInstances reach moto and never
/// answers it, kills labrun with SIGKILL once the instance exists, and
/// returns the instance's id.
fn launch_and_kill(t: &Test, moto: &Moto, lab: &str) -> String {
    let proxy = FaultProxy::start(
        &moto.url,
        Fault {
            action: "RunInstances",
            answer: Answer::Swallow,
            times: usize::MAX,
        },
    );
    let mut child = t
        .command_with(&[&format!("{lab}.rhai"), "--provider", "aws"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("labrun starts");
    let id = wait_for("the instance at moto", Duration::from_secs(60), || {
        let live = moto.instances(REGION, lab);
        live.first()
            .map(|i| i["InstanceId"].as_str().unwrap().to_string())
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "labrun is still waiting for RunInstances"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(proxy.faults.load(Ordering::SeqCst), 1);
    id
}

#[test]
fn aws_a_launch_killed_right_after_run_instances_is_found_again() {
    let moto = Moto::start();
    let t = on_aws(Test::new(), &moto.url).playbook("killed.rhai", WEB);
    let id = launch_and_kill(&t, &moto, "killed");
    // The ledger knows the launch only as intended, with its client token.
    let data = ledger(&t, "killed");
    let entry = data["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "instance")
        .unwrap_or_else(|| panic!("{data:#}"))
        .clone();
    assert_eq!(entry["state"], "pending", "{entry:#}");
    assert_eq!(entry["id"], Value::Null);
    assert!(
        entry["data"]["client_token"]
            .as_str()
            .is_some_and(|c| c.starts_with("labrun-")),
        "{entry:#}"
    );
    // The instance carries the lab's id from RunInstances itself.
    let live = moto.instances(REGION, "killed");
    assert_eq!(
        tag(&live[0], "labrun:lab-id"),
        Some(lab_id(&t, "killed").as_str())
    );

    t.run_with(&["destroy", "--lab", "killed"])
        .assert_code(0)
        .assert_stderr_contains(&format!("terminated instance web ({id})"))
        .assert_stderr_contains("lab 'killed': removed 3 resources on aws");
    assert!(moto.instances(REGION, "killed").is_empty());

    // Killed again, then run again: the run adopts the instance it launched.
    let id = launch_and_kill(&t, &moto, "killed");
    t.run_with(&["killed.rhai", "--provider", "aws"])
        .assert_code(0)
        .assert_stderr_contains("changed=0 failed=0");
    assert_eq!(
        ids(&moto.instances(REGION, "killed"), "InstanceId"),
        [id.as_str()]
    );
    let data = ledger(&t, "killed");
    assert!(
        data["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "instance" && r["state"] == "created" && r["id"] == id.as_str()),
        "{data:#}"
    );
    t.run_with(&["destroy", "--lab", "killed"])
        .assert_code(0)
        .assert_stderr_contains(&format!("terminated instance web ({id})"));
    assert!(moto.instances(REGION, "killed").is_empty());
}

/// An EC2 endpoint that never answers: it takes each connection and holds
/// it open (counting them), or with `accept: false` never accepts at all,
/// leaving connections in the kernel's queue.
struct Silent {
    url: String,
    accepted: Arc<AtomicUsize>,
    _listener: Option<TcpListener>,
}

impl Silent {
    fn start(accept: bool) -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        if !accept {
            return Silent {
                url,
                accepted,
                _listener: Some(listener),
            };
        }
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for mut client in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 8192];
                    while client.read(&mut chunk).is_ok_and(|n| n > 0) {}
                });
            }
        });
        Silent {
            url,
            accepted,
            _listener: None,
        }
    }
}

/// A generous bound that only tells a slow run from a hung one.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Waits for `child` for at most [`HANG_GUARD`] from `since`, killing it
/// then; returns its output and how long it took.
fn finish_guarded(mut child: Child, since: Instant) -> (crate::harness::Output, Duration) {
    while child.try_wait().unwrap().is_none() && since.elapsed() < HANG_GUARD {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = since.elapsed();
    let _ = child.kill();
    (crate::harness::finish(child), took)
}

#[test]
fn aws_an_endpoint_that_never_answers_is_a_clear_error_in_bounded_time() {
    for accept in [true, false] {
        let silent = Silent::start(accept);
        let t = on_aws(Test::new(), &silent.url)
            .env("LABRUN_AWS_TIMEOUT", "3")
            .playbook("mute.rhai", r#"sg::ensure(#{ name: "web" });"#)
            .args(&["--provider", "aws"]);
        let (out, took) = finish_guarded(t.spawn(), Instant::now());
        out.assert_code(1)
            .assert_stderr_contains(
                "sg::ensure: listing the lab's security groups: the EC2 API did not answer in \
                 time: operation timeout (all attempts including retries) occurred after 3s",
            )
            .assert_stderr_contains(&format!("(endpoint {})", silent.url));
        assert!(took < HANG_GUARD, "took {took:?}");
        if accept {
            assert!(silent.accepted.load(Ordering::SeqCst) >= 1);
        }
    }
    let silent = Silent::start(true);
    on_aws(Test::new(), &silent.url)
        .env("LABRUN_AWS_TIMEOUT", "ten")
        .playbook("mute.rhai", r#"sg::ensure(#{ name: "web" });"#)
        .args(&["--provider", "aws"])
        .run()
        .assert_code(1)
        .assert_stderr_contains(
            "LABRUN_AWS_TIMEOUT: 'ten' is not a number of seconds from 1 to 3600",
        );
}

#[test]
fn aws_ctrl_c_stops_a_call_that_is_waiting_for_ec2() {
    let silent = Silent::start(true);
    // The default limit on a call (minutes): only Ctrl-C ends this one soon.
    let t = on_aws(Test::new(), &silent.url)
        .playbook(
            "stuck.rhai",
            r#"step("groups", || sg::ensure(#{ name: "web" }));"#,
        )
        .args(&["--provider", "aws"]);
    let child = t.spawn();
    wait_for("a call to EC2", HANG_GUARD, || {
        (silent.accepted.load(Ordering::SeqCst) >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (out, took) = finish_guarded(child, sent);
    out.assert_code(130)
        .assert_stderr_contains("interrupted during step 'groups'")
        .assert_stderr_contains("labrun destroy --lab stuck");
    assert!(took < HANG_GUARD, "took {took:?}");
}

#[test]
fn aws_throttling_is_retried_with_backoff() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, Fault::throttled_launches(3));
    on_aws(Test::new(), &proxy.url)
        .playbook("busy.rhai", r#"ec2::launch(#{ name: "web" });"#)
        .args(&["--provider", "aws"])
        .run()
        .assert_code(0);
    assert_eq!(
        proxy.faults.load(Ordering::SeqCst),
        4,
        "three throttled attempts, then one forwarded"
    );
    assert_eq!(moto.instances(REGION, "busy").len(), 1);
}
