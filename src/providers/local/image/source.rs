//! Which way to build an image on this machine: from debootstrap or from
//! the upstream image, and why debootstrap cannot run here when it cannot.

use std::path::Path;

use bollard::Docker;

use super::exists;
use super::recipe::Recipe;
use crate::providers::ProviderResult;
use crate::providers::local::host::on_path;

/// Where a base image's root filesystem comes from.
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

/// How `r` would be built here, or why it cannot be.
pub async fn plan(docker: &Docker, r: &Recipe) -> ProviderResult<Result<Source, String>> {
    let wanted = std::env::var("LABRUN_IMAGE_SOURCE").ok();
    let upstream = r.upstream_image();
    let present = exists(docker, &upstream).await?;
    Ok(choose_source(
        wanted.as_deref(),
        (&upstream, present),
        host_blocker().as_deref(),
        recipe_blocker(r).as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
