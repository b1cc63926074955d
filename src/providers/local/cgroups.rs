//! A cgroup tree for each instance's systemd, without privileges.
//!
//! systemd as PID 1 needs a writable cgroup2 tree at `/sys/fs/cgroup` that
//! contains the cgroup it runs in (Debian 13's and sid's systemd refuse
//! cgroup v1 altogether). Docker mounts one read-only. So each instance
//! runs under its own parent cgroup (`--cgroup-parent`), in the host's
//! cgroup namespace, with the engine host's cgroup2 tree bind-mounted
//! read-only at `/sys/fs/cgroup` and only that parent bind-mounted
//! writable at its own path below it: systemd finds the cgroup
//! `/proc/1/cgroup` names and builds its tree there, and nothing above or
//! beside it can be changed from inside. Where the cgroup2 tree is:
//! - cgroup v2 (most hosts): `/sys/fs/cgroup`; the parent is
//!   `/labrun/<key>` with Docker's cgroupfs driver, the slice
//!   `labrun-<key>.slice` (`/labrun.slice/labrun-<key>.slice`) with its
//!   systemd driver;
//! - cgroup v1 "hybrid" (v1 controllers plus `/sys/fs/cgroup/unified`):
//!   the unified tree, which has no controllers (the instance's limits stay
//!   in the v1 hierarchies, which the instance does not see);
//! - cgroup v1 alone: there is none, and instances cannot boot systemd.

use bollard::Docker;
use bollard::models::{HostConfigCgroupnsModeEnum, SystemInfo};

use crate::providers::{ProviderError, ProviderResult};

/// The cgroup layout of the engine's host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCgroups {
    /// cgroup v2 only; `systemd` is Docker's cgroup driver.
    V2 { systemd: bool },
    /// cgroup v1 controllers plus the cgroup2 tree at
    /// `/sys/fs/cgroup/unified` (Docker's driver is cgroupfs).
    Hybrid,
    /// cgroup v1 only.
    V1,
}

/// The part of an instance's container settings that is about cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceCgroups {
    pub parent: String,
    pub binds: Vec<String>,
    pub namespace: HostConfigCgroupnsModeEnum,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl HostCgroups {
    /// From the engine's `docker info`; on a v1 engine, whether its host
    /// also has the unified tree (looked at directly when the engine is on
    /// this machine, else asked of a throwaway container of `probe_image`,
    /// labelled for `lab` so `labrun destroy` finds it if labrun dies).
    pub async fn detect(
        docker: &Docker,
        info: &SystemInfo,
        engine_is_local: bool,
        probe_image: &str,
        lab: &str,
    ) -> ProviderResult<HostCgroups> {
        use bollard::models::{SystemInfoCgroupDriverEnum as D, SystemInfoCgroupVersionEnum as V};
        if info.cgroup_version == Some(V::_2) {
            return Ok(HostCgroups::V2 {
                systemd: info.cgroup_driver == Some(D::SYSTEMD),
            });
        }
        let unified = if engine_is_local {
            is_cgroup2("/sys/fs/cgroup/unified")
        } else {
            probe_unified(docker, probe_image, lab).await?
        };
        Ok(if unified {
            HostCgroups::Hybrid
        } else {
            HostCgroups::V1
        })
    }

    /// How the host calls itself in messages and the README.
    pub fn describe(self) -> &'static str {
        match self {
            HostCgroups::V2 { .. } => "cgroup v2",
            HostCgroups::Hybrid => "cgroup v1 hybrid (cgroup2 at /sys/fs/cgroup/unified)",
            HostCgroups::V1 => "cgroup v1 only",
        }
    }

    /// The layout as seen from this machine, where the engine runs here
    /// (no probe container): for cleaning up.
    pub fn seen_here(info: &SystemInfo) -> Option<HostCgroups> {
        use bollard::models::{SystemInfoCgroupDriverEnum as D, SystemInfoCgroupVersionEnum as V};
        match info.cgroup_version {
            Some(V::_2) => Some(HostCgroups::V2 {
                systemd: info.cgroup_driver == Some(D::SYSTEMD),
            }),
            Some(V::_1) if is_cgroup2("/sys/fs/cgroup/unified") => Some(HostCgroups::Hybrid),
            _ => None,
        }
    }

    /// (cgroup2 mount on the host, `--cgroup-parent`, the parent's path in
    /// the cgroup2 tree) for instance container `container`.
    fn layout(self, container: &str) -> Option<(&'static str, String, String)> {
        let key = format!(
            "{:012x}",
            crate::providers::local::network::fnv1a(container.as_bytes()) & 0xffff_ffff_ffff
        );
        match self {
            HostCgroups::V2 { systemd: true } => Some((
                "/sys/fs/cgroup",
                format!("labrun-{key}.slice"),
                format!("/labrun.slice/labrun-{key}.slice"),
            )),
            HostCgroups::V2 { systemd: false } => Some((
                "/sys/fs/cgroup",
                format!("/labrun/{key}"),
                format!("/labrun/{key}"),
            )),
            HostCgroups::Hybrid => Some((
                "/sys/fs/cgroup/unified",
                format!("/labrun/{key}"),
                format!("/labrun/{key}"),
            )),
            HostCgroups::V1 => None,
        }
    }

    /// The cgroup settings of the instance container `container` (its
    /// name: the key of its parent cgroup), or why systemd cannot boot in
    /// it on this host.
    pub fn for_instance(self, container: &str, image: &str) -> ProviderResult<InstanceCgroups> {
        let Some((root, parent, path)) = self.layout(container) else {
            return Err(ProviderError::Unavailable(format!(
                "image '{image}' cannot boot here: its instances run systemd, which needs a \
                 cgroup2 tree, and the Docker engine's host has {} (no \
                 /sys/fs/cgroup/unified). Boot that host with cgroup v2 \
                 (systemd.unified_cgroup_hierarchy=1 on the kernel command line) or the \
                 hybrid layout",
                self.describe()
            )));
        };
        Ok(InstanceCgroups {
            parent,
            binds: vec![
                format!("{root}:/sys/fs/cgroup:ro"),
                format!("{root}{path}:/sys/fs/cgroup{path}:rw"),
            ],
            namespace: HostConfigCgroupnsModeEnum::HOST,
        })
    }

    /// Removes the parent cgroup of a removed instance container, if it is
    /// empty: the engine makes it (and, on a hybrid host, one in every v1
    /// hierarchy) and leaves it; with the systemd driver it is a slice that
    /// stays active until stopped. Whether nothing is left; the engine may
    /// still be removing the container's own cgroup below it, so callers
    /// try again a little later.
    pub fn remove_parent(self, container: &str) -> bool {
        let Some((root, parent, path)) = self.layout(container) else {
            return true;
        };
        let gone = |dir: std::path::PathBuf| match std::fs::remove_dir(&dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        match self {
            HostCgroups::V1 => true,
            HostCgroups::V2 { systemd: true } => std::process::Command::new("systemctl")
                .args(["stop", &parent])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            HostCgroups::V2 { systemd: false } => gone(format!("{root}{path}").into()),
            // The engine made the parent in every v1 hierarchy too.
            HostCgroups::Hybrid => std::fs::read_dir("/sys/fs/cgroup")
                .map(|dirs| {
                    // Every one is tried, whatever the others did.
                    dirs.flatten()
                        .filter(|d| !gone(d.path().join(path.trim_start_matches('/'))))
                        .count()
                        == 0
                })
                .unwrap_or(true),
        }
    }
}

#[cfg(target_os = "linux")]
fn is_cgroup2(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC }
}

#[cfg(not(target_os = "linux"))]
fn is_cgroup2(_path: &str) -> bool {
    false
}

/// Whether the engine's host has a cgroup2 tree at
/// `/sys/fs/cgroup/unified`, asked of a throwaway container.
async fn probe_unified(docker: &Docker, image: &str, lab: &str) -> ProviderResult<bool> {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::{CreateContainerOptions, LogsOptions, WaitContainerOptions};
    use futures_util::StreamExt;

    use super::docker::{api, discard_container};
    use super::instances::{LABEL_LAB, LABEL_ROLE};

    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![
            "stat".into(),
            "-f".into(),
            "-c".into(),
            "%T".into(),
            "/host/unified".into(),
        ]),
        cmd: Some(vec![]),
        labels: Some(std::collections::HashMap::from([
            (LABEL_LAB.to_string(), lab.to_string()),
            (LABEL_ROLE.to_string(), "cgroup-probe".to_string()),
        ])),
        host_config: Some(HostConfig {
            binds: Some(vec!["/sys/fs/cgroup:/host:ro".into()]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(|e| api("creating the cgroup probe container", e))?
        .id;
    let result = async {
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| api("starting the cgroup probe container", e))?;
        let mut waits = docker.wait_container(&id, None::<WaitContainerOptions>);
        while waits.next().await.is_some() {}
        let mut logs = docker.logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&chunk.to_string());
        }
        Ok(text.trim() == "cgroup2fs")
    }
    .await;
    discard_container(docker, &id).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_gets_its_own_writable_subtree() {
        let a = HostCgroups::Hybrid
            .for_instance("labrun-l.a", "debian-12")
            .unwrap();
        let b = HostCgroups::Hybrid
            .for_instance("labrun-l.b", "debian-12")
            .unwrap();
        assert_ne!(a.parent, b.parent);
        assert!(a.parent.starts_with("/labrun/") && a.parent.len() == "/labrun/".len() + 12);
        assert_eq!(
            a.binds,
            [
                "/sys/fs/cgroup/unified:/sys/fs/cgroup:ro".to_string(),
                format!("/sys/fs/cgroup/unified{0}:/sys/fs/cgroup{0}:rw", a.parent),
            ]
        );
        assert_eq!(a.namespace, HostConfigCgroupnsModeEnum::HOST);

        let v2 = HostCgroups::V2 { systemd: false }
            .for_instance("labrun-l.a", "debian-12")
            .unwrap();
        assert_eq!(v2.parent, a.parent);
        assert_eq!(v2.binds[0], "/sys/fs/cgroup:/sys/fs/cgroup:ro");

        // The systemd driver takes a slice; dashes in its name nest.
        let slice = HostCgroups::V2 { systemd: true }
            .for_instance("labrun-l.a", "debian-12")
            .unwrap();
        let key = a.parent.trim_start_matches("/labrun/");
        assert_eq!(slice.parent, format!("labrun-{key}.slice"));
        assert_eq!(
            slice.binds[1],
            format!(
                "/sys/fs/cgroup/labrun.slice/labrun-{key}.slice:\
                 /sys/fs/cgroup/labrun.slice/labrun-{key}.slice:rw"
            )
        );
    }

    #[test]
    fn cgroup_v1_alone_is_a_clear_error() {
        let e = HostCgroups::V1
            .for_instance("labrun-l.a", "debian-sid")
            .unwrap_err()
            .to_string();
        assert!(e.contains("image 'debian-sid' cannot boot here"), "{e}");
        assert!(e.contains("cgroup v1 only"), "{e}");
        assert!(e.contains("systemd.unified_cgroup_hierarchy=1"), "{e}");
    }
}
