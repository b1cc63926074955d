//! The `pull` source: the distribution's upstream image (pulled unless
//! already in the engine), with the packages installed and the same
//! customisation in a build container, which is then committed.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, CreateImageOptions, LogsOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;

use super::exists;
use super::recipe::{
    CONTAINER_ENV, CUSTOMISE, ENTRYPOINT, Extras, INSTALL, PACKAGES, PATH_ENV, Recipe,
};
use crate::providers::local::docker::{self, api};
use crate::providers::local::instances::LABEL_ROLE;
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
    let name = format!("labrun-build-{}", r.name);
    docker::discard_container(docker, &name).await;
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
