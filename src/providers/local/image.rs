//! Base images: built on first use, cached in the engine as
//! `labrun/<name>:<recipe version>` and shared by every lab.
//!
//! Two ways to build, same result (sshd, sudo, iproute2, ca-certificates,
//! login user `ubuntu` with passwordless sudo, host keys made per instance
//! at first start):
//! - `debootstrap`: a root filesystem from the distribution's archive,
//!   customised in a chroot, streamed as a tar into the engine's image
//!   import (`POST /images/create?fromSrc=-` through bollard). Needs a Linux
//!   host, root and debootstrap; needs no container registry.
//! - `pull`: the distribution's upstream image (pulled unless already in
//!   the engine), customised in a container, committed.
//!
//! `LABRUN_IMAGE_SOURCE=debootstrap|pull` picks one; by default an upstream
//! image already in the engine is used, else debootstrap where it can run,
//! else a pull. Builds hold a per-image file lock in the cache directory, so
//! concurrent labruns build once; debootstrap works in
//! `<cache>/build/<name>.<pid>`, removed afterwards.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, CreateImageOptions, LogsOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::docker::{self, api};
use super::host::{die_with_parent, on_path, path_with_sbin, run_lines};
use super::instances::LABEL_ROLE;
use super::network::fnv1a;
use crate::providers::{ImageInfo, ProviderError, ProviderResult};
use crate::report::Reporter;

/// How to make one base image.
#[derive(Debug)]
pub struct Recipe {
    pub name: &'static str,
    /// The distribution's release codename (debootstrap's suite).
    pub suite: &'static str,
    /// The upstream image for the `pull` source.
    pub upstream: &'static str,
    /// Environment variable overriding the archive mirror, and its default.
    pub mirror_env: &'static str,
    pub default_mirror: &'static str,
    /// Keyring debootstrap checks the archive with, when not the default.
    pub keyring: Option<&'static str>,
    /// deb822 apt sources for the image; `{mirror}` is replaced.
    pub sources: &'static str,
    pub sources_file: &'static str,
}

/// Installed in every image.
pub const PACKAGES: &[&str] = &[
    "openssh-server",
    "sudo",
    "iproute2",
    "ca-certificates",
    "iputils-ping",
    "netcat-openbsd",
    "procps",
    "python3",
    "less",
    "nftables",
];

pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "debian-12",
        suite: "bookworm",
        upstream: "debian:12",
        mirror_env: "LABRUN_DEBIAN_MIRROR",
        default_mirror: "http://deb.debian.org/debian",
        keyring: None,
        sources: "Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                  Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        sources_file: "debian.sources",
    },
    Recipe {
        name: "ubuntu-22.04",
        suite: "jammy",
        upstream: "ubuntu:22.04",
        mirror_env: "LABRUN_UBUNTU_MIRROR",
        default_mirror: "http://archive.ubuntu.com/ubuntu",
        keyring: Some("/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
        sources: "Types: deb\nURIs: {mirror}\nSuites: jammy jammy-updates jammy-security\n\
                  Components: main universe\n\
                  Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n",
        sources_file: "ubuntu.sources",
    },
];

/// Turns a root filesystem at `$ROOT` into a labrun base image. Runs on the
/// host (chroot into a debootstrap tree) or inside a build container
/// (`ROOT=/`).
const CUSTOMISE: &str = r#"set -eu
R="$ROOT"
rm -f "$R/etc/apt/sources.list"
mkdir -p "$R/etc/apt/sources.list.d"
printf '%s\n' "$LABRUN_SOURCES" > "$R/etc/apt/sources.list.d/$LABRUN_SOURCES_FILE"
chroot "$R" getent passwd ubuntu >/dev/null || chroot "$R" useradd -m -s /bin/bash -U ubuntu
chroot "$R" usermod -p '*' ubuntu
mkdir -p "$R/home/ubuntu/.ssh"
chmod 0700 "$R/home/ubuntu/.ssh"
chroot "$R" chown ubuntu:ubuntu /home/ubuntu/.ssh
echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' > "$R/etc/sudoers.d/90-labrun-ubuntu"
chmod 0440 "$R/etc/sudoers.d/90-labrun-ubuntu"
mkdir -p "$R/etc/ssh/sshd_config.d"
cat > "$R/etc/ssh/sshd_config.d/labrun.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
EOF
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/run/sshd"
chmod 0755 "$R/run/sshd"
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' "$R/etc/pam.d/sshd"
cat > "$R/usr/local/sbin/labrun-entrypoint" <<'EOF'
#!/bin/sh
# labrun instance start: this instance's own SSH host keys (made on first
# start, kept across restarts), the lab's key for the login user, then sshd.
set -e
for t in ed25519 ecdsa; do
  [ -f /etc/ssh/ssh_host_${t}_key ] || ssh-keygen -q -t $t -N '' -f /etc/ssh/ssh_host_${t}_key
done
mkdir -p /run/sshd
chmod 0755 /run/sshd
if [ -n "${LABRUN_AUTHORIZED_KEYS:-}" ]; then
  install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh
  printf '%s\n' "$LABRUN_AUTHORIZED_KEYS" > /home/ubuntu/.ssh/authorized_keys
  chown ubuntu:ubuntu /home/ubuntu/.ssh/authorized_keys
  chmod 0600 /home/ubuntu/.ssh/authorized_keys
fi
unset LABRUN_AUTHORIZED_KEYS
if [ "$#" -gt 0 ]; then exec "$@"; fi
exec /usr/sbin/sshd -D -e
EOF
chmod 0755 "$R/usr/local/sbin/labrun-entrypoint"
printf '#!/bin/sh\nexit 0\n' > "$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
: > "$R/etc/resolv.conf" || true
echo localhost > "$R/etc/hostname" || true
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/debconf/*-old
rm -f "$R"/var/log/*.log
find "$R/tmp" -mindepth 1 -delete 2>/dev/null || true
"#;

/// Before [`CUSTOMISE`] in a build container: install the packages.
const INSTALL: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends $LABRUN_PACKAGES
"#;

const ENTRYPOINT: &str = "/usr/local/sbin/labrun-entrypoint";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The recipe `name`, or an error listing the known images.
pub fn recipe(name: &str) -> ProviderResult<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        ProviderError::Invalid(format!(
            "unknown image '{name}'; available images: {} (see `labrun images`)",
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// `labrun/<name>:r<hash of the recipe>`: a changed recipe is a new image.
pub fn image_ref(r: &Recipe) -> String {
    let text = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        r.name,
        r.suite,
        r.sources,
        PACKAGES.join(","),
        CUSTOMISE,
        INSTALL,
        ENTRYPOINT
    );
    format!("labrun/{}:r{:08x}", r.name, fnv1a(text.as_bytes()) as u32)
}

fn mirror(r: &Recipe) -> String {
    std::env::var(r.mirror_env)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| r.default_mirror.to_string())
}

fn sources(r: &Recipe) -> String {
    let security = std::env::var("LABRUN_DEBIAN_SECURITY_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian-security".into());
    r.sources
        .replace("{mirror}", &mirror(r))
        .replace("{security}", &security)
}

/// Where labrun keeps build work and locks: `LABRUN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/labrun`, else `~/.cache/labrun`.
pub fn cache_dir() -> PathBuf {
    crate::dirs::labrun_dir("LABRUN_CACHE_DIR", "XDG_CACHE_HOME", ".cache/labrun")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Debootstrap,
    Pull,
}

/// Why debootstrap cannot run on this host at all, if it cannot.
fn host_blocker() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("debootstrap needs a Linux host".into());
    }
    if !on_path("debootstrap") {
        return Some("debootstrap is not installed (apt-get install debootstrap)".into());
    }
    if unsafe { libc::geteuid() } != 0 {
        return Some("debootstrap must run as root (sudo labrun images --build NAME)".into());
    }
    None
}

/// Why this host's debootstrap cannot build `r`, if it cannot.
fn recipe_blocker(r: &Recipe) -> Option<String> {
    if !Path::new("/usr/share/debootstrap/scripts")
        .join(r.suite)
        .exists()
    {
        return Some(format!("this debootstrap does not know '{}'", r.suite));
    }
    if let Some(k) = r.keyring
        && !Path::new(k).exists()
    {
        return Some(format!(
            "debootstrap needs the archive keyring {k}, which is not installed"
        ));
    }
    None
}

/// Picks how to build: `wanted` is `LABRUN_IMAGE_SOURCE`. By default an
/// upstream image already in the engine is used, else debootstrap where it
/// runs; a registry is contacted only where debootstrap cannot run at all
/// or when asked for.
pub fn choose_source(
    wanted: Option<&str>,
    upstream: (&str, bool),
    host_blocker: Option<&str>,
    recipe_blocker: Option<&str>,
) -> Result<Source, String> {
    let (upstream, present) = upstream;
    match wanted.unwrap_or("auto") {
        "pull" => Ok(Source::Pull),
        "debootstrap" => match host_blocker.or(recipe_blocker) {
            None => Ok(Source::Debootstrap),
            Some(why) => Err(why.to_string()),
        },
        "auto" | "" => {
            if present || host_blocker.is_some() {
                Ok(Source::Pull)
            } else if let Some(why) = recipe_blocker {
                Err(format!(
                    "{why}; or set LABRUN_IMAGE_SOURCE=pull to start from the {upstream} image \
                     where a container registry is reachable"
                ))
            } else {
                Ok(Source::Debootstrap)
            }
        }
        other => Err(format!(
            "LABRUN_IMAGE_SOURCE={other}: expected debootstrap, pull or auto"
        )),
    }
}

fn upstream(r: &Recipe) -> String {
    std::env::var("LABRUN_UPSTREAM_IMAGE")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| r.upstream.to_string())
}

async fn exists(docker: &Docker, reference: &str) -> ProviderResult<bool> {
    match docker.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(e) if docker::is_not_found(&e) => Ok(false),
        Err(e) => Err(api(format!("inspecting image {reference}"), e)),
    }
}

async fn plan(docker: &Docker, r: &Recipe) -> ProviderResult<Result<Source, String>> {
    let wanted = std::env::var("LABRUN_IMAGE_SOURCE").ok();
    let upstream = upstream(r);
    let present = exists(docker, &upstream).await?;
    Ok(choose_source(
        wanted.as_deref(),
        (&upstream, present),
        host_blocker().as_deref(),
        recipe_blocker(r).as_deref(),
    ))
}

/// The images labrun can launch, and whether each is built.
pub async fn list(docker: &Docker) -> ProviderResult<Vec<ImageInfo>> {
    let mut out = Vec::new();
    for r in RECIPES {
        let reference = image_ref(r);
        let info = match docker.inspect_image(&reference).await {
            Ok(i) => ImageInfo {
                name: r.name.into(),
                ready: true,
                detail: format!("{reference}, {} MB", i.size.unwrap_or(0) / 1_000_000),
            },
            Err(e) if docker::is_not_found(&e) => ImageInfo {
                name: r.name.into(),
                ready: false,
                detail: match plan(docker, r).await? {
                    Ok(Source::Debootstrap) => format!(
                        "not built; builds on first use with debootstrap from {} (1-2 min)",
                        mirror(r)
                    ),
                    Ok(Source::Pull) => format!(
                        "not built; builds on first use from the {} image",
                        upstream(r)
                    ),
                    Err(why) => format!("cannot be built here: {why}"),
                },
            },
            Err(e) => return Err(api(format!("inspecting image {reference}"), e)),
        };
        out.push(info);
    }
    Ok(out)
}

static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The engine reference of image `name`, built first if needed (`rebuild`:
/// even if it exists).
pub async fn ensure(
    docker: &Docker,
    reporter: &Reporter,
    name: &str,
    rebuild: bool,
) -> ProviderResult<String> {
    let r = recipe(name)?;
    let reference = image_ref(r);
    if !rebuild && exists(docker, &reference).await? {
        return Ok(reference);
    }
    let _in_process = BUILDS.lock().await;
    let _lock = lock(reporter, r.name).await?;
    if !rebuild && exists(docker, &reference).await? {
        return Ok(reference);
    }
    let source = plan(docker, r).await?.map_err(|why| {
        ProviderError::Unavailable(format!("image '{name}' cannot be built here: {why}"))
    })?;
    let started = Instant::now();
    let bar = reporter.progress_bar(
        expected_steps(r) + 50,
        &format!("building image {name} ({reference}), first use only"),
    );
    let result = match source {
        Source::Debootstrap => build_debootstrap(docker, r, &reference, &bar).await,
        Source::Pull => build_from_upstream(docker, r, &reference, &bar).await,
    };
    bar.finish_and_clear();
    result?;
    reporter.log(&format!(
        "built image {name} ({reference}) in {}",
        crate::report::format_duration(started.elapsed())
    ));
    Ok(reference)
}

/// Holds `<cache>/locks/<name>.lock` (released when the process dies).
async fn lock(reporter: &Reporter, name: &str) -> ProviderResult<File> {
    let dir = cache_dir().join("locks");
    std::fs::create_dir_all(&dir).map_err(|source| ProviderError::File {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ProviderError::File {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            reporter.log(&format!(
                "waiting for another labrun to finish building image {name}"
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(ProviderError::File { path, source: e });
        }
    }
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| ProviderError::State(format!("waiting for the image lock: {e}")))?
        .map_err(|source| ProviderError::File { path, source })
}

/// How many progress lines a build of `r` printed last time (a guess the
/// first time).
fn expected_steps(r: &Recipe) -> u64 {
    std::fs::read_to_string(cache_dir().join(format!("{}.steps", r.name)))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(700)
}

fn remember_steps(r: &Recipe, steps: u64) {
    let _ = std::fs::write(
        cache_dir().join(format!("{}.steps", r.name)),
        steps.to_string(),
    );
}

async fn build_debootstrap(
    docker: &Docker,
    r: &Recipe,
    reference: &str,
    bar: &indicatif::ProgressBar,
) -> ProviderResult<()> {
    let cache = cache_dir();
    let builds = cache.join("build");
    // Leftovers of killed builds of this image (we hold its lock).
    if let Ok(entries) = std::fs::read_dir(&builds) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{}.", r.name))
            {
                remove_tree(&e.path()).await;
            }
        }
    }
    let work = builds.join(format!("{}.{}", r.name, std::process::id()));
    let debs = cache.join("debs").join(r.suite);
    for d in [&work, &debs] {
        std::fs::create_dir_all(d).map_err(|source| ProviderError::File {
            path: d.to_path_buf(),
            source,
        })?;
    }
    let result = debootstrap_and_import(docker, r, reference, &work, &debs, bar).await;
    remove_tree(&work).await;
    result
}

async fn debootstrap_and_import(
    docker: &Docker,
    r: &Recipe,
    reference: &str,
    work: &Path,
    debs: &Path,
    bar: &indicatif::ProgressBar,
) -> ProviderResult<()> {
    let rootfs = work.join("rootfs");
    let mut cmd = tokio::process::Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--cache-dir={}", debs.display()));
    if let Some(k) = r.keyring {
        cmd.arg(format!("--keyring={k}"));
    }
    cmd.arg(r.suite)
        .arg(&rootfs)
        .arg(mirror(r))
        .env("PATH", path_with_sbin());
    let mut steps = 0u64;
    let expected = bar.length().unwrap_or(750).saturating_sub(50);
    run_lines(cmd, "debootstrap", |line| {
        if let Some(msg) = line.strip_prefix("I: ") {
            steps += 1;
            bar.set_position(steps.min(expected));
            bar.set_message(format!("debootstrap: {msg}"));
        }
    })
    .await?;
    remember_steps(r, steps);

    bar.set_position(expected + 10);
    bar.set_message("customising the root filesystem");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(CUSTOMISE)
        .env("ROOT", &rootfs)
        .env("LABRUN_SOURCES", sources(r))
        .env("LABRUN_SOURCES_FILE", r.sources_file)
        .env("PATH", path_with_sbin());
    run_lines(cmd, "customising the image", |_| {}).await?;

    bar.set_position(expected + 20);
    bar.set_message(format!("importing {reference} into the engine"));
    import(docker, r, reference, &rootfs).await?;
    bar.set_position(expected + 50);
    Ok(())
}

/// Dockerfile-style settings of every base image.
fn changes(r: &Recipe) -> Vec<String> {
    vec![
        format!("ENTRYPOINT [\"{ENTRYPOINT}\"]"),
        "CMD []".into(),
        format!("ENV {PATH_ENV}"),
        "ENV LANG=C.UTF-8".into(),
        "EXPOSE 22/tcp".into(),
        format!("LABEL labrun.base_image={}", r.name),
    ]
}

/// Streams `tar -C rootfs -c .` into the engine as image `reference`.
async fn import(docker: &Docker, r: &Recipe, reference: &str, rootfs: &Path) -> ProviderResult<()> {
    let (repo, tag) = reference.rsplit_once(':').expect("reference has a tag");
    let mut tar = tokio::process::Command::new("tar");
    tar.args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut tar);
    let mut child = tar.spawn().map_err(|source| ProviderError::Spawn {
        what: "tar: cannot start".into(),
        source,
    })?;
    let stdout = child.stdout.take().expect("piped");
    let body = futures_util::stream::unfold(Some(stdout), |state| async move {
        let mut out = state?;
        let mut buf = vec![0u8; 256 * 1024];
        match out.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf.into()), Some(out)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        message: Some(format!("labrun base image {}", r.name)),
        changes: changes(r),
        ..Default::default()
    };
    let docker = docker
        .clone()
        .with_timeout(std::time::Duration::from_secs(1800));
    let mut stream = docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    let mut failure = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            failure = Some(api(format!("importing image {reference}"), e));
        }
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| ProviderError::Spawn {
            what: "tar".into(),
            source,
        })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !out.status.success() {
        return Err(ProviderError::Command {
            what: "tar of the root filesystem".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if !exists(&docker, reference).await? {
        return Err(ProviderError::State(format!(
            "the engine imported nothing as {reference}"
        )));
    }
    Ok(())
}

/// Removes a build tree: first whatever is mounted below it (a killed
/// debootstrap leaves /proc and /sys mounted in its chroot), then the
/// files, never crossing into another filesystem.
async fn remove_tree(dir: &Path) {
    #[cfg(target_os = "linux")]
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            if let Ok(c) = std::ffi::CString::new(p) {
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
    let _ = tokio::process::Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(dir)
        .status()
        .await;
}

/// The `pull` source: the upstream image, with the packages installed and
/// the same customisation, in a build container that is then committed.
async fn build_from_upstream(
    docker: &Docker,
    r: &Recipe,
    reference: &str,
    bar: &indicatif::ProgressBar,
) -> ProviderResult<()> {
    let upstream = upstream(r);
    if !exists(docker, &upstream).await? {
        bar.set_message(format!("pulling {upstream}"));
        let (image, tag) = upstream.rsplit_once(':').unwrap_or((&upstream, "latest"));
        let options = CreateImageOptions {
            from_image: Some(image.into()),
            tag: Some(tag.into()),
            ..Default::default()
        };
        let mut pull = docker.create_image(Some(options), None, None);
        while let Some(item) = pull.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status {
                        bar.set_message(format!("pulling {upstream}: {status}"));
                    }
                }
                Err(e) => {
                    return Err(ProviderError::Unavailable(format!(
                        "cannot pull {upstream} ({e}); on a Linux host with no registry, \
                         install debootstrap and set LABRUN_IMAGE_SOURCE=debootstrap"
                    )));
                }
            }
        }
    }
    let name = format!("labrun-build-{}", r.name);
    docker::discard_container(docker, &name).await;
    // Inputs go in the script, not the container's environment, which the
    // commit would keep.
    let script = format!(
        "ROOT=/\nLABRUN_SOURCES_FILE={}\nLABRUN_PACKAGES='{}'\n\
         LABRUN_SOURCES=$(cat <<'LABRUN_EOF'\n{}\nLABRUN_EOF\n)\n{INSTALL}\n{CUSTOMISE}",
        r.sources_file,
        PACKAGES.join(" "),
        sources(r)
    );
    let body = ContainerCreateBody {
        image: Some(upstream.clone()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        cmd: Some(vec![]),
        labels: Some(HashMap::from([(
            LABEL_ROLE.to_string(),
            "image-build".to_string(),
        )])),
        host_config: Some(HostConfig::default()),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| api("creating the image build container", e))?;
    let result = run_build_container(docker, r, &name, reference, bar).await;
    docker::discard_container(docker, &name).await;
    result
}

async fn run_build_container(
    docker: &Docker,
    r: &Recipe,
    name: &str,
    reference: &str,
    bar: &indicatif::ProgressBar,
) -> ProviderResult<()> {
    docker
        .start_container(name, None)
        .await
        .map_err(|e| api("starting the image build container", e))?;
    let mut logs = docker.logs(
        name,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        }),
    );
    let mut tail: Vec<String> = Vec::new();
    let mut steps = 0;
    while let Some(Ok(chunk)) = logs.next().await {
        for line in chunk.to_string().lines() {
            steps += 1;
            bar.set_position(steps.min(bar.length().unwrap_or(1)));
            bar.set_message(line.to_string());
            tail.push(line.to_string());
            if tail.len() > 25 {
                tail.remove(0);
            }
        }
    }
    let mut code = 0;
    let mut waits = docker.wait_container(name, None::<WaitContainerOptions>);
    while let Some(w) = waits.next().await {
        match w {
            Ok(r) => code = r.status_code,
            Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
            Err(e) => return Err(api("waiting for the image build container", e)),
        }
    }
    if code != 0 {
        return Err(ProviderError::Command {
            what: format!("building image {} in a container", r.name),
            status: format!("exit {code}"),
            output: tail.join("\n"),
        });
    }
    let (repo, tag) = reference.rsplit_once(':').expect("reference has a tag");
    let config = ContainerConfig {
        entrypoint: Some(vec![ENTRYPOINT.into()]),
        cmd: Some(vec![]),
        env: Some(vec![PATH_ENV.into(), "LANG=C.UTF-8".into()]),
        exposed_ports: Some(vec!["22/tcp".into()]),
        labels: Some(HashMap::from([(
            "labrun.base_image".to_string(),
            r.name.to_string(),
        )])),
        ..Default::default()
    };
    docker
        .commit_container(
            CommitContainerOptions {
                container: Some(name.into()),
                repo: Some(repo.into()),
                tag: Some(tag.into()),
                comment: Some(format!("labrun base image {}", r.name)),
                ..Default::default()
            },
            config,
        )
        .await
        .map_err(|e| api(format!("committing image {reference}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refs_and_sources() {
        assert!(recipe("debian-12").is_ok());
        let err = recipe("centos-7").unwrap_err().to_string();
        assert!(err.contains("unknown image 'centos-7'"), "{err}");
        assert!(err.contains("debian-12, ubuntu-22.04"), "{err}");
        let r = image_ref(recipe("debian-12").unwrap());
        assert!(r.starts_with("labrun/debian-12:r") && r.len() == "labrun/debian-12:r".len() + 8);
        assert_eq!(r, image_ref(recipe("debian-12").unwrap()), "stable");
        let s = sources(recipe("debian-12").unwrap());
        assert!(s.contains("Suites: bookworm-security") && !s.contains('{'));
    }

    #[test]
    fn source_choice() {
        use Source::*;
        let up = ("debian:12", false);
        assert_eq!(
            choose_source(None, ("debian:12", true), None, None),
            Ok(Pull)
        );
        assert_eq!(choose_source(None, up, None, None), Ok(Debootstrap));
        assert_eq!(choose_source(None, up, Some("no root"), None), Ok(Pull));
        // A recipe this debootstrap cannot build never falls back to a
        // registry by itself.
        let err = choose_source(None, up, None, Some("no keyring")).unwrap_err();
        assert!(err.contains("no keyring") && err.contains("LABRUN_IMAGE_SOURCE=pull"));
        assert_eq!(choose_source(Some("pull"), up, None, None), Ok(Pull));
        assert_eq!(
            choose_source(Some("debootstrap"), up, Some("no root"), None),
            Err("no root".into())
        );
        assert!(choose_source(Some("magic"), up, None, None).is_err());
    }
}
