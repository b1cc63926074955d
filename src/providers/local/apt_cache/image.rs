//! The cache's own image, built here like the base images (no registry is
//! reachable): the `debian-12` base image plus Debian's `apt-cacher-ng`,
//! with a configuration that serves only what labrun tells it to (see
//! [`super::daemon_args`]), committed as `labrun/apt-cache:r<hash>` (the
//! base image's reference and this recipe hashed) and shared by every lab.

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;
use bollard::models::ContainerConfig;

use crate::providers::ProviderResult;
use crate::providers::local::image::{self, ScriptBuild, build_and_commit};
use crate::providers::local::instances::LABEL_ROLE;
use crate::providers::local::network::fnv1a;
use crate::report::Reporter;

/// The base image the cache is built from.
const BASE: &str = "debian-12";
/// The image's repository (tags are recipe hashes).
pub const REPOSITORY: &str = "labrun/apt-cache";

/// Installs apt-cacher-ng without starting it, and replaces its
/// configuration with a minimal one: nothing but the archives labrun remaps
/// (`ForceManaged`), no CONNECT tunnels, no report page (whose maintenance
/// jobs anyone could start).
const BUILD: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
apt-get update -q
apt-get install -y --no-install-recommends apt-cacher-ng
printf '#!/bin/sh\nexit 0\n' > /usr/sbin/policy-rc.d
rm -f /etc/apt-cacher-ng/zz_debconf.conf
cat > /etc/apt-cacher-ng/acng.conf <<'EOF'
# Written by labrun: a cache of the archives labrun remaps (Remap-labrun*,
# given on the command line), nothing else.
CacheDir: /var/cache/apt-cacher-ng
LogDir: /var/log/apt-cacher-ng
SupportDir: /usr/lib/apt-cacher-ng
Port: 3142
ForceManaged: 1
PassThroughPattern: ^$
AllowUserPorts: 80
ExThreshold: 4
EOF
rm -rf /var/cache/apt-cacher-ng/* /var/log/apt-cacher-ng/* /var/lib/apt/lists/*
install -d -o apt-cacher-ng -g apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng /run/apt-cacher-ng
apt-get clean
"#;

/// What the image runs: the daemon in the foreground, as its own user.
pub const DAEMON: &str = "/usr/sbin/apt-cacher-ng";
pub const USER: &str = "apt-cacher-ng";
pub const CACHE_DIR: &str = "/var/cache/apt-cacher-ng";
pub const LOG: &str = "/var/log/apt-cacher-ng/apt-cacher.log";

/// `labrun/apt-cache:r<hash>` for the base image `base_ref`.
pub fn reference(base_ref: &str) -> String {
    let text = format!("{base_ref}|{BUILD}|{DAEMON}|{USER}");
    format!("{REPOSITORY}:r{:08x}", fnv1a(text.as_bytes()) as u32)
}

/// The reference the cache image has now, whether built or not.
pub fn wanted() -> ProviderResult<String> {
    let r = image::recipe(BASE)?;
    Ok(reference(&image::image_ref(
        r,
        &image::Extras::for_recipe(r)?,
    )))
}

/// The cache image's reference, built (with its base image) if needed.
pub async fn ensure(docker: &Docker, reporter: &Reporter) -> ProviderResult<String> {
    let wanted = wanted()?;
    if image::exists(docker, &wanted).await? {
        return Ok(wanted);
    }
    let base = image::ensure(docker, reporter, BASE, false).await?;
    let reference = reference(&base);
    if image::exists(docker, &reference).await? {
        return Ok(reference);
    }
    let _lock = image::lock(reporter, "apt-cache").await?;
    if image::exists(docker, &reference).await? {
        return Ok(reference);
    }
    let started = Instant::now();
    reporter.log(&format!(
        "building the package cache image {reference} (first use only)"
    ));
    build(docker, &base, &reference).await?;
    reporter.log(&format!(
        "built the package cache image {reference} in {}",
        crate::report::format_duration(started.elapsed())
    ));
    Ok(reference)
}

async fn build(docker: &Docker, base: &str, reference: &str) -> ProviderResult<()> {
    let build = ScriptBuild {
        container: "labrun-build-apt-cache",
        base,
        script: BUILD.into(),
        what: "the package cache's build container",
        failure: "building the package cache image (apt-get install apt-cacher-ng)".into(),
    };
    let config = ContainerConfig {
        entrypoint: Some(vec![DAEMON.into()]),
        cmd: Some(vec![]),
        user: Some(USER.into()),
        env: Some(vec![image::PATH_ENV.into()]),
        exposed_ports: Some(vec![format!("{}/tcp", super::PORT)]),
        labels: Some(HashMap::from([(
            LABEL_ROLE.to_string(),
            super::ROLE.to_string(),
        )])),
        ..Default::default()
    };
    let comment = "labrun package cache (apt-cacher-ng)".to_string();
    build_and_commit(docker, &build, reference, config, comment, |_| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_follows_the_base_image() {
        let a = reference("labrun/debian-12:r1");
        assert!(a.starts_with("labrun/apt-cache:r") && a.len() == "labrun/apt-cache:r".len() + 8);
        assert_eq!(a, reference("labrun/debian-12:r1"));
        assert_ne!(a, reference("labrun/debian-12:r2"));
    }
}
