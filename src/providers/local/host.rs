//! Programs labrun runs on this machine (debootstrap, tar, chroot, nsenter,
//! nft): where they are looked up, and how one is run with its output read
//! line by line as progress.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::providers::{ProviderError, ProviderResult};

/// Where a system's tools live. The root-only ones are in the sbin
/// directories, which a user's PATH (or sudo's) often lacks.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The PATH for the programs labrun runs: the current PATH first (so a
/// program the user put on it wins), then the system directories it lacks.
pub fn path_with_sbin() -> OsString {
    with_system_dirs(&std::env::var_os("PATH").unwrap_or_default())
}

fn with_system_dirs(path: &OsStr) -> OsString {
    let mut dirs: Vec<PathBuf> = if path.is_empty() {
        Vec::new()
    } else {
        std::env::split_paths(path).collect()
    };
    for d in SYSTEM_DIRS {
        if !dirs.iter().any(|have| have == Path::new(d)) {
            dirs.push(d.into());
        }
    }
    // Entries came from splitting, so none holds a separator.
    std::env::join_paths(dirs).unwrap_or_else(|_| path.to_owned())
}

/// Whether `program` is on [`path_with_sbin`], i.e. whether a command run
/// with that PATH will find it.
pub fn on_path(program: &str) -> bool {
    std::env::split_paths(&path_with_sbin()).any(|d| d.join(program).is_file())
}

/// Runs `cmd`, feeding each output line (stdout and stderr) to `on_line`;
/// on failure the error carries the last lines.
pub async fn run_lines(
    mut cmd: tokio::process::Command,
    what: &str,
    mut on_line: impl FnMut(&str),
) -> ProviderResult<()> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| ProviderError::Spawn {
        what: format!("{what}: cannot start"),
        source,
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let forward = |pipe: Box<dyn tokio::io::AsyncRead + Send + Unpin>| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        })
    };
    forward(Box::new(out));
    forward(Box::new(err));
    drop(tx);
    let mut tail: Vec<String> = Vec::new();
    while let Some(l) = rx.recv().await {
        on_line(&l);
        tail.push(l);
        if tail.len() > 25 {
            tail.remove(0);
        }
    }
    let status = child.wait().await.map_err(|source| ProviderError::Spawn {
        what: what.to_string(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ProviderError::Command {
            what: what.to_string(),
            status: status.to_string(),
            output: tail.join("\n"),
        })
    }
}

/// Children of a build die with labrun (a killed labrun must not leave a
/// debootstrap writing into a directory the next build removes).
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs_follow_the_path_once() {
        let path = with_system_dirs(OsStr::new("/opt/x/bin:/usr/bin:/bin"));
        assert_eq!(
            path,
            OsStr::new("/opt/x/bin:/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin")
        );
        assert_eq!(
            with_system_dirs(OsStr::new("")),
            OsStr::new("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        );
    }
}
