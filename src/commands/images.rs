//! `labrun images`: the local provider's base images, built on request,
//! and its shared package cache, removed on request (`--prune`). With
//! `--output json`, build progress comes as NDJSON events, what `--prune`
//! removed as one `pruned` event, and the list last, as one `images` event
//! (with the cache as `apt_cache`).

use std::sync::Arc;

use serde_json::json;

use crate::error::{Error, Exit};
use crate::providers::local::{apt_cache, docker, image};
use crate::report::{OutputMode, Reporter};

pub fn images(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    build: &[String],
    rebuild: bool,
    prune: bool,
) -> Result<Exit, Error> {
    let settings = apt_cache::Settings::from_env()?;
    let (list, cache, removed) = runtime.block_on(async {
        for name in build {
            image::recipe(name)?;
        }
        let docker = docker::connect().await?;
        for name in build {
            image::ensure(&docker, reporter, name, rebuild).await?;
        }
        let removed = if prune {
            apt_cache::prune(&docker, &settings).await?
        } else {
            Vec::new()
        };
        let list = image::list(&docker).await?;
        let cache = apt_cache::status(&docker, &settings).await?;
        Ok::<_, Error>((list, cache, removed))
    })?;
    if reporter.mode() == OutputMode::Json {
        if prune {
            reporter.print_event(json!({"event": "pruned", "removed": removed}));
        }
        reporter.print_event(json!({"event": "images", "images": list, "apt_cache": cache}));
        return Ok(Exit::Ok);
    }
    for line in &removed {
        reporter.print(line);
    }
    if prune && removed.is_empty() {
        reporter.print("no package cache to remove");
    }
    reporter.print(&format!("{:<14} {:<6} DETAIL", "IMAGE", "READY"));
    for i in list {
        reporter.print(&format!(
            "{:<14} {:<6} {}",
            i.name,
            if i.ready { "yes" } else { "no" },
            i.detail
        ));
    }
    let state = match (cache.enabled, cache.state.as_str()) {
        (false, _) => "off (LABRUN_APT_CACHE=off)".to_string(),
        (true, "absent") => "not started (starts with the first local launch)".to_string(),
        (true, state) => format!("{state}, serving {} lab network(s)", cache.networks),
    };
    reporter.print(&format!(
        "package cache {}: {state}; `labrun images --prune` removes it",
        cache.container
    ));
    Ok(Exit::Ok)
}
