//! Room for one more systemd on the engine's host.
//!
//! systemd holds a handful of inotify instances, and the kernel gives each
//! user at most `fs.inotify.max_user_instances` of them (128 on a stock
//! kernel). An instance's root is the host's root, so every instance on
//! the host draws from one budget. Past it, systemd exits as it starts
//! (status 255, nothing logged) and SSH never answers: the class bench met
//! it at its 26th instance. A launch therefore checks for room first and
//! says which setting to raise, instead of waiting minutes for an sshd that
//! will never come.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::providers::{ProviderError, ProviderResult};

/// What one booted instance holds, measured: 5 (systemd's own), plus one
/// to spare for a service that watches files.
pub const PER_INSTANCE: u64 = 6;

const LIMIT: &str = "/proc/sys/fs/inotify/max_user_instances";

/// The host's limit and how many inotify instances root holds now; `None`
/// where that cannot be read (no such file, or /proc/PID/fd of root's
/// processes is closed to a non-root caller): then nothing is checked.
pub fn budget() -> Option<(u64, u64)> {
    let limit = std::fs::read_to_string(LIMIT).ok()?.trim().parse().ok()?;
    let mut used = 0;
    let mut readable = false;
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = p.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match std::fs::metadata(p.path()) {
            Ok(m) if m.uid() == 0 => {}
            _ => continue,
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        readable = true;
        used += fds.flatten().filter(|fd| is_inotify(&fd.path())).count() as u64;
    }
    readable.then_some((limit, used))
}

fn is_inotify(fd: &Path) -> bool {
    std::fs::read_link(fd).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify")
}

/// Whether instance `name` can boot with `(limit, used)`, or what to do.
pub fn check(name: &str, limit: u64, used: u64) -> ProviderResult<()> {
    let left = limit.saturating_sub(used);
    if left >= PER_INSTANCE {
        return Ok(());
    }
    Err(ProviderError::Unavailable(format!(
        "instance {name} would not boot: its systemd needs about {PER_INSTANCE} inotify \
         instances and this host has {left} left (fs.inotify.max_user_instances = {limit}, \
         {used} in use by root, about 5 per running instance). Raise the limit with \
         `sudo sysctl -w fs.inotify.max_user_instances=8192` (and a line \
         `fs.inotify.max_user_instances = 8192` in /etc/sysctl.d/ to keep it), or remove \
         labs you no longer need"
    )))
}

/// [`check`] against this host as it is now; passes where the engine runs
/// elsewhere (its host's budget is not this one's) or the budget cannot be
/// read.
pub async fn check_host(name: &str) -> ProviderResult<()> {
    if !super::docker::engine_is_local() {
        return Ok(());
    }
    match tokio::task::spawn_blocking(budget).await {
        Ok(Some((limit, used))) => check(name, limit, used),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_one_more_passes_and_a_full_budget_names_the_setting() {
        assert!(check("web", 128, 100).is_ok());
        assert!(check("web", 128, 128 - PER_INSTANCE).is_ok());
        let e = check("web", 128, 125).unwrap_err().to_string();
        assert!(e.contains("instance web would not boot"), "{e}");
        assert!(e.contains("3 left"), "{e}");
        assert!(e.contains("fs.inotify.max_user_instances = 128"), "{e}");
        assert!(
            e.contains("sudo sysctl -w fs.inotify.max_user_instances="),
            "{e}"
        );
        // Over the limit (another user's count, a lowered limit): no underflow.
        assert!(
            check("web", 100, 128)
                .unwrap_err()
                .to_string()
                .contains("0 left")
        );
    }

    #[test]
    fn this_hosts_budget_counts_an_inotify_instance_held_here() {
        // The suite runs as root (it drives Docker), which reads every
        // process's descriptors.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1 failed");
        let budget = budget();
        unsafe { libc::close(fd) };
        let (limit, used) = budget.expect("the inotify budget is readable (run as root)");
        assert!(limit > 0);
        assert!(used >= 1, "the instance held by this test is counted");
    }
}
