//! The `debootstrap` source: a root filesystem from the distribution's
//! archive, customised in a chroot, streamed as a tar into the engine's
//! image import (`POST /images/create?fromSrc=-` through bollard). Works in
//! `<cache>/build/<name>.<pid>`, removed afterwards; the downloaded
//! packages stay in `<cache>/debs/<suite>`.

use std::path::Path;
use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::cache::{cache_dir, remember_steps};
use super::exists;
use super::recipe::{CONTAINER_ENV, CUSTOMISE, ENTRYPOINT, Extras, PACKAGES, PATH_ENV, Recipe};
use crate::providers::local::docker::api;
use crate::providers::local::host::{die_with_parent, path_with_sbin, run_lines};
use crate::providers::{ProviderError, ProviderResult};

/// Builds image `reference` of `r` with debootstrap (the caller holds its
/// build lock).
pub async fn build(
    docker: &Docker,
    r: &Recipe,
    extras: &Extras,
    reference: &str,
    bar: &indicatif::ProgressBar,
) -> ProviderResult<()> {
    let cache = cache_dir()?;
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
    let result = debootstrap_and_import(docker, r, extras, reference, &work, &debs, bar).await;
    remove_tree(&work).await;
    result
}

async fn debootstrap_and_import(
    docker: &Docker,
    r: &Recipe,
    extras: &Extras,
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
        .arg(r.mirror())
        .env("PATH", path_with_sbin());
    if let Some(proxy) = &extras.proxy {
        cmd.env("http_proxy", proxy);
    }
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
        .env("LABRUN_SOURCES", r.apt_sources())
        .env("LABRUN_SOURCES_FILE", r.sources_file)
        .envs(extras.env())
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
        format!("ENV {CONTAINER_ENV}"),
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
