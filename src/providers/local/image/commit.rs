//! An image made as `docker build` would make it, without a Dockerfile or
//! a registry: a throwaway container runs a shell script on a base image
//! and, once the script exits 0, is committed with the new image's own
//! configuration. The `pull` source and the package cache's image are both
//! made this way; keeping one copy keeps their failure reports alike.

use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, LogsOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::providers::local::docker::{self, api};
use crate::providers::{ProviderError, ProviderResult};

/// Lines of the script's output kept for the error when it fails.
const TAIL_LINES: usize = 25;

/// One scripted build.
pub struct ScriptBuild<'a> {
    /// The build container's name; a leftover of that name is removed first.
    pub container: &'a str,
    /// The image the script runs on.
    pub base: &'a str,
    /// Run by `/bin/sh -c`. Inputs belong in the script rather than the
    /// container's environment, which the commit would keep.
    pub script: String,
    /// The container, as errors name it ("the image build container").
    pub what: &'a str,
    /// What failed when the script exits non-zero ("building image ...").
    pub failure: String,
}

/// Runs `b` and commits its container as `reference` (`repo:tag`) with
/// `config`; `on_line` sees each line of the script's output as it comes.
/// The container is removed whatever happens.
pub async fn build_and_commit(
    docker: &Docker,
    b: &ScriptBuild<'_>,
    reference: &str,
    config: ContainerConfig,
    comment: String,
    on_line: impl FnMut(&str) + Send,
) -> ProviderResult<()> {
    docker::discard_container(docker, b.container).await;
    let body = ContainerCreateBody {
        image: Some(b.base.to_string()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), b.script.clone()]),
        cmd: Some(vec![]),
        // No labels: a commit keeps the container's, and an image carrying
        // `labrun.role` would make its instances look like something else
        // (they would "vanish" as they start). It is found by its name.
        host_config: Some(HostConfig::default()),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(b.container.into()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| api(format!("creating {}", b.what), e))?;
    let result = run_and_commit(docker, b, reference, config, comment, on_line).await;
    docker::discard_container(docker, b.container).await;
    result
}

async fn run_and_commit(
    docker: &Docker,
    b: &ScriptBuild<'_>,
    reference: &str,
    config: ContainerConfig,
    comment: String,
    mut on_line: impl FnMut(&str) + Send,
) -> ProviderResult<()> {
    let name = b.container;
    docker
        .start_container(name, None)
        .await
        .map_err(|e| api(format!("starting {}", b.what), e))?;
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
    while let Some(Ok(chunk)) = logs.next().await {
        for line in chunk.to_string().lines() {
            on_line(line);
            tail.push(line.to_string());
            if tail.len() > TAIL_LINES {
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
            Err(e) => return Err(api(format!("waiting for {}", b.what), e)),
        }
    }
    if code != 0 {
        return Err(ProviderError::Command {
            what: b.failure.clone(),
            status: format!("exit {code}"),
            output: tail.join("\n"),
        });
    }
    let (repo, tag) = reference.rsplit_once(':').expect("reference has a tag");
    docker
        .commit_container(
            CommitContainerOptions {
                container: Some(name.into()),
                repo: Some(repo.into()),
                tag: Some(tag.into()),
                comment: Some(comment),
                ..Default::default()
            },
            config,
        )
        .await
        .map_err(|e| api(format!("committing image {reference}"), e))?;
    Ok(())
}
