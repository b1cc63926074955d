//! The `pull` source: the distribution's upstream image (pulled unless
//! already in the engine), with the packages installed and the same
//! customisation in a build container, which is then committed.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::ContainerConfig;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::commit::{ScriptBuild, build_and_commit};
use super::exists;
use super::recipe::{
    CONTAINER_ENV, CUSTOMISE, ENTRYPOINT, Extras, INSTALL, PACKAGES, PATH_ENV, Recipe,
};
use crate::providers::{ProviderError, ProviderResult};

/// Builds image `reference` of `r` from its upstream image (the caller
/// holds its build lock).
pub async fn build(
    docker: &Docker,
    r: &Recipe,
    extras: &Extras,
    reference: &str,
    bar: &indicatif::ProgressBar,
) -> ProviderResult<()> {
    let upstream = r.upstream_image();
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
    // Inputs go in the script, not the container's environment, which the
    // commit would keep.
    let mut inputs = vec![
        ("LABRUN_SOURCES_FILE", r.sources_file.to_string()),
        ("LABRUN_PACKAGES", PACKAGES.join(" ")),
        ("LABRUN_SOURCES", r.apt_sources()),
    ];
    inputs.extend(extras.env());
    let mut script = String::from("ROOT=/\n");
    for (name, value) in inputs {
        script.push_str(&format!(
            "{name}=$(cat <<'LABRUN_EOF'\n{value}\nLABRUN_EOF\n)\n"
        ));
    }
    script.push_str(&format!("{INSTALL}\n{CUSTOMISE}"));
    let config = ContainerConfig {
        entrypoint: Some(vec![ENTRYPOINT.into()]),
        cmd: Some(vec![]),
        env: Some(vec![
            PATH_ENV.into(),
            "LANG=C.UTF-8".into(),
            CONTAINER_ENV.into(),
        ]),
        exposed_ports: Some(vec!["22/tcp".into()]),
        labels: Some(HashMap::from([(
            "labrun.base_image".to_string(),
            r.name.to_string(),
        )])),
        ..Default::default()
    };
    let container = format!("labrun-build-{}", r.name);
    let build = ScriptBuild {
        container: &container,
        base: &upstream,
        script,
        what: "the image build container",
        failure: format!("building image {} in a container", r.name),
    };
    let mut steps = 0;
    let on_line = |line: &str| {
        steps += 1;
        bar.set_position(steps.min(bar.length().unwrap_or(1)));
        bar.set_message(line.to_string());
    };
    let comment = format!("labrun base image {}", r.name);
    build_and_commit(docker, &build, reference, config, comment, on_line).await
}
