//! Private state and redaction: lab directories only their owner can
//! enter, no fallback to a shared directory, and every secret the user
//! gives (not only `secret()`'s) masked in every output.

use std::os::unix::fs::PermissionsExt;

use crate::harness::Test;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn lab_state_is_private_and_an_old_wide_lab_dir_is_narrowed() {
    let t = Test::new().playbook("p.rhai", r#"let pw = secret("a"); print("ran");"#);
    t.run().assert_code(0);
    let lab = t.lab_dir("p");
    assert_eq!(mode(&lab), 0o700, "lab directory");
    assert_eq!(mode(&lab.join("secrets.json")), 0o600, "secrets file");
    assert_eq!(mode(&t.state_dir().join("labs")), 0o700, "labs directory");
    // A lab directory an older labrun made 0755 is narrowed on next use.
    std::fs::set_permissions(&lab, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.run().assert_code(0);
    assert_eq!(mode(&lab), 0o700);
    // No temp file is left behind by the atomic writes.
    let leftovers: Vec<_> = std::fs::read_dir(&lab)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn without_home_the_state_goes_to_the_users_home_not_tmp() {
    let t = Test::new();
    let out = t
        .command_with(&["status", "--lab", "no-such-lab-here"])
        .env_remove("LABRUN_STATE_DIR")
        .env_remove("XDG_STATE_HOME")
        .env_remove("HOME")
        .output()
        .expect("labrun runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The password database's home of the user running the tests.
    assert!(!stdout.contains("/tmp"), "{stdout}");
    if unsafe { libc::geteuid() } == 0 {
        assert!(stdout.contains("/root/.local/state/labrun"), "{stdout}");
    }
}

/// Secrets the playbook is given by the user: a parameter declared secret
/// (its default and its --set value), a password for ssh::connect and
/// mysql::connect, a value passed to mask(), and a cut-off piece of one.
const GIVEN: &str = r#"
let p = params(#{ admin_password: "default-Secret-1x", user: "u" }, #{ secret: ["admin_password"] });
print(`param: ${p.admin_password}`);
mask("by-Hand-Secret-42z");
print("by hand: by-Hand-Secret-42z; cut: near 'by-Hand-Sec");
try {
    ssh::connect(#{ host: "127.0.0.1", port: 1, user: "x", password: "Ssh-Password-77q", timeout: 1 });
} catch (e) { print(`ssh failed: ${e}`); }
print("ssh password: Ssh-Password-77q");
try {
    mysql::connect(#{ host: "127.0.0.1", port: 1, user: "x", password: "Db-Password-55w", timeout: 1 });
} catch (e) { print(`mysql failed: ${e.message}`); }
print("mysql password: Db-Password-55w");
step("leaks in a failure", || fail(`the password is ${p.admin_password}`));
"#;

#[test]
fn every_secret_the_user_gives_is_masked_everywhere() {
    for set in ["", "from-the-Cli-Secret-9"] {
        for output in ["plain", "json"] {
            let t = Test::new().playbook("given.rhai", GIVEN);
            let mut args = vec!["given.rhai", "--output", output];
            if !set.is_empty() {
                args.extend(["--set", "admin_password=from-the-Cli-Secret-9"]);
            }
            let out = t.run_with(&args);
            out.assert_code(1);
            let all = out.all();
            for secret in [
                "default-Secret-1x",
                "from-the-Cli-Secret-9",
                "by-Hand-Secret-42z",
                "by-Hand-Sec",
                "Ssh-Password-77q",
                "Db-Password-55w",
            ] {
                assert!(!all.contains(secret), "{secret} shown ({output}):\n{all}");
            }
            assert!(all.contains("param: ********"), "{all}");
            assert!(all.contains("ssh password: ********"), "{all}");
            assert!(all.contains("mysql password: ********"), "{all}");
            assert!(all.contains("the password is ********"), "{all}");
        }
    }
}

#[test]
fn a_secret_list_naming_no_parameter_is_refused() {
    Test::new()
        .playbook(
            "bad.rhai",
            r#"let p = params(#{ a: 1 }, #{ secret: ["b"] });"#,
        )
        .run()
        .assert_code(1)
        .assert_stderr_contains(
            "params: `secret` names 'b', which is not a parameter of `defaults`",
        );
}
