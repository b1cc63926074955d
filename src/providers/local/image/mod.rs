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

mod cache;
mod commit;
mod debootstrap;
pub mod mirrors;
mod recipe;
mod source;
mod upstream;

use std::time::Instant;

use bollard::Docker;

use self::recipe::{CUSTOMISE, ENTRYPOINT, INSTALL};
use self::source::{Source, plan};
use super::docker::{self, api};
use super::network::fnv1a;
use crate::providers::{ImageInfo, ProviderError, ProviderResult};
use crate::report::Reporter;

pub use self::cache::{cache_dir, lock};
pub use self::commit::{ScriptBuild, build_and_commit};
pub use self::recipe::{Extras, PACKAGES, PATH_ENV, RECIPES, Recipe, recipe};

/// `labrun/<name>:r<hash of the recipe>`: a changed recipe is a new image,
/// and so is one built with [`Extras`]. The hashed text keys the images
/// already built on users' machines: keep it byte for byte (the
/// `refs_are_stable` test pins the result).
pub fn image_ref(r: &Recipe, extras: &Extras) -> String {
    let text = format!(
        "{}|{}|{}|{}|{}|{}|{}{}",
        r.name,
        r.suite,
        r.sources,
        PACKAGES.join(","),
        CUSTOMISE,
        INSTALL,
        ENTRYPOINT,
        extras.hash_text()
    );
    format!("labrun/{}:r{:08x}", r.name, fnv1a(text.as_bytes()) as u32)
}

/// Whether the engine has image `reference`.
pub async fn exists(docker: &Docker, reference: &str) -> ProviderResult<bool> {
    match docker.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(e) if docker::is_not_found(&e) => Ok(false),
        Err(e) => Err(api(format!("inspecting image {reference}"), e)),
    }
}

/// The images labrun can launch, and whether each is built.
pub async fn list(docker: &Docker) -> ProviderResult<Vec<ImageInfo>> {
    let mut out = Vec::new();
    for r in RECIPES {
        let reference = image_ref(r, &Extras::for_recipe(r)?);
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
                        r.mirror()
                    ),
                    Ok(Source::Pull) => format!(
                        "not built; builds on first use from the {} image",
                        r.upstream_image()
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

/// The engine reference of image `name`, built first if needed (`rebuild`:
/// even if it exists).
pub async fn ensure(
    docker: &Docker,
    reporter: &Reporter,
    name: &str,
    rebuild: bool,
) -> ProviderResult<String> {
    let r = recipe(name)?;
    let extras = Extras::for_recipe(r)?;
    let reference = image_ref(r, &extras);
    if !rebuild && exists(docker, &reference).await? {
        return Ok(reference);
    }
    let _lock = cache::lock(reporter, r.name).await?;
    if !rebuild && exists(docker, &reference).await? {
        return Ok(reference);
    }
    let source = plan(docker, r).await?.map_err(|why| {
        ProviderError::Unavailable(format!("image '{name}' cannot be built here: {why}"))
    })?;
    let started = Instant::now();
    let bar = reporter.progress_bar(
        cache::expected_steps(r) + 50,
        &format!("building image {name} ({reference}), first use only"),
    );
    let result = match source {
        Source::Debootstrap => debootstrap::build(docker, r, &extras, &reference, &bar).await,
        Source::Pull => upstream::build(docker, r, &extras, &reference, &bar).await,
    };
    bar.finish_and_clear();
    result?;
    reporter.log(&format!(
        "built image {name} ({reference}) in {}",
        crate::report::format_duration(started.elapsed())
    ));
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refs_and_sources() {
        assert!(recipe("debian-12").is_ok());
        let err = recipe("centos-7").unwrap_err().to_string();
        assert!(err.contains("unknown image 'centos-7'"), "{err}");
        assert!(
            err.contains("debian-12, debian-13, debian-sid, ubuntu-22.04"),
            "{err}"
        );
        let none = Extras::default();
        let r = image_ref(recipe("debian-12").unwrap(), &none);
        assert!(r.starts_with("labrun/debian-12:r") && r.len() == "labrun/debian-12:r".len() + 8);
        assert_eq!(r, image_ref(recipe("debian-12").unwrap(), &none), "stable");
        let proxied = Extras {
            proxy: Some("http://10.0.0.1:3142".into()),
            ..Extras::default()
        };
        assert_ne!(r, image_ref(recipe("debian-12").unwrap(), &proxied));
        let s = recipe("debian-12").unwrap().apt_sources();
        assert!(s.contains("Suites: bookworm-security") && !s.contains('{'));
    }

    #[test]
    fn refs_are_stable() {
        // The references of the images built by the current recipes: a
        // change here must be a changed recipe, never a refactor. (Changed
        // last for systemd as PID 1 and the learner's tools; debian-12 was
        // rc34813af, ubuntu-22.04 r4b278863 before.)
        let refs: Vec<String> = RECIPES
            .iter()
            .map(|r| image_ref(r, &Extras::default()))
            .collect();
        assert_eq!(
            refs,
            [
                "labrun/debian-12:rf3755d9d",
                "labrun/debian-13:r033e5386",
                "labrun/debian-sid:rd94f6db7",
                "labrun/ubuntu-22.04:r497990a9"
            ]
        );
    }
}
