//! The access sheet of a class: how each learner gets into their lab.
//! `access.csv` has a row per learner and instance (address, port, user,
//! the ssh command); `access/<learner>.txt` is what one learner is handed:
//! their ssh commands, the instances' host keys to check, the passwords
//! their lab gives them and their private key; `access/<learner>.md` is
//! their tasks with their own values. The per-learner files hold secrets,
//! so they are 0600 in the 0700 class directory, like the lab's own.

use std::path::Path;

use super::csv;
use super::state::{ClassState, LabState, LearnerState};
use crate::error::Error;
use crate::ledger::{private_dir, read_secrets, write_atomic};

pub const CSV: &str = "access.csv";
pub const DIR: &str = "access";

/// The `ssh` command for one instance, with the key file `key`.
fn ssh_command(key: &str, a: &super::state::Access) -> String {
    let port = if a.port == 22 {
        String::new()
    } else {
        format!(" -p {}", a.port)
    };
    format!("ssh -i {key}{port} {}@{}", a.user, a.host)
}

/// Writes the access sheet of `state`; `labs` is the state root's `labs`
/// directory, where each lab keeps its key, secrets and README.
pub fn write(class_dir: &Path, labs: &Path, state: &ClassState) -> Result<(), Error> {
    let mut sheet = csv::row(&[
        "learner", "name", "email", "lab", "state", "instance", "host", "port", "user", "ssh",
    ]);
    let dir = class_dir.join(DIR);
    private_dir(&dir)?;
    for l in &state.learners {
        let key = format!("{}.key", l.id);
        let base = [
            l.id.clone(),
            l.name.clone(),
            l.email.clone(),
            l.lab.clone(),
            l.state.as_str().to_string(),
        ];
        if l.state != LabState::Up || l.access.is_empty() {
            sheet.push_str(&csv::row(
                &[
                    &base[..],
                    &[
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ],
                ]
                .concat(),
            ));
        }
        if l.state != LabState::Up {
            // Nothing to hand out (now): no stale key or commands either.
            for ext in ["txt", "md"] {
                let _ = std::fs::remove_file(dir.join(format!("{}.{ext}", l.id)));
            }
            continue;
        }
        for a in &l.access {
            sheet.push_str(&csv::row(
                &[
                    &base[..],
                    &[
                        a.instance.clone(),
                        a.host.clone(),
                        a.port.to_string(),
                        a.user.clone(),
                        ssh_command(&key, a),
                    ],
                ]
                .concat(),
            ));
        }
        let lab_dir = labs.join(&l.lab);
        write_atomic(
            &dir.join(format!("{}.txt", l.id)),
            handout(state, l, &lab_dir)?.as_bytes(),
            0o600,
        )?;
        if let Ok(readme) = std::fs::read_to_string(lab_dir.join(crate::exercise::README)) {
            write_atomic(&dir.join(format!("{}.md", l.id)), readme.as_bytes(), 0o600)?;
        }
    }
    write_atomic(&class_dir.join(CSV), sheet.as_bytes(), 0o600)?;
    Ok(())
}

/// The text one learner is handed.
fn handout(state: &ClassState, l: &LearnerState, lab_dir: &Path) -> Result<String, Error> {
    // A lab without instances has no key either (it is made with the
    // first launch): nothing to log in to.
    let key_path = lab_dir.join(crate::keys::PRIVATE_FILE);
    let key = if l.access.is_empty() {
        String::new()
    } else {
        std::fs::read_to_string(&key_path)
            .map_err(|e| Error::Failed(format!("cannot read {}: {e}", key_path.display())))?
    };
    let secrets = read_secrets(lab_dir)?;
    let who = [l.name.as_str(), l.email.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let keyfile = format!("{}.key", l.id);
    let mut t = String::new();
    t.push_str(&format!(
        "Class {}, exercise {} {}: the lab of {}{}.\n\n",
        state.class,
        state.exercise.id,
        state.exercise.version,
        l.id,
        if who.is_empty() {
            String::new()
        } else {
            format!(" ({who})")
        }
    ));
    if l.access.is_empty() {
        t.push_str(&format!(
            "Your tasks are in {}.md. Your lab has no instances to log in to.\n",
            l.id
        ));
    } else {
        t.push_str(&format!(
            "Your tasks are in {}.md. Save the private key at the end of this file as {keyfile}\n\
             (`chmod 600 {keyfile}`), then log in:\n\n",
            l.id
        ));
    }
    let width = l
        .access
        .iter()
        .map(|a| ssh_command(&keyfile, a).len())
        .max()
        .unwrap_or(0);
    for a in &l.access {
        t.push_str(&format!(
            "  {:<width$}   # {}\n",
            ssh_command(&keyfile, a),
            a.instance
        ));
    }
    let pins: Vec<String> = l
        .access
        .iter()
        .filter_map(|a| {
            let pin = a.host_key.as_deref()?;
            let host = if a.port == 22 {
                a.host.clone()
            } else {
                format!("[{}]:{}", a.host, a.port)
            };
            Some(format!("{host} {}", pin.trim()))
        })
        .collect();
    if !pins.is_empty() {
        t.push_str(
            "\nThe instances' host keys, to check the first time you connect (these lines\n\
             go into ~/.ssh/known_hosts):\n\n",
        );
        for p in pins {
            t.push_str(&format!("{p}\n"));
        }
    }
    if !secrets.is_empty() {
        t.push_str("\nPasswords your lab gives you:\n\n");
        for (name, value) in &secrets {
            t.push_str(&format!("  {name}: {value}\n"));
        }
    }
    if key.is_empty() {
        return Ok(t);
    }
    t.push_str(&format!(
        "\nOn the instructor's machine the same is `labrun ssh INSTANCE --class {} --learner {}`.\n\n",
        state.class, l.id
    ));
    t.push_str(&key);
    if !key.ends_with('\n') {
        t.push('\n');
    }
    Ok(t)
}
