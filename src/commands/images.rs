//! `labrun images`: the local provider's base images, built on request.
//! With `--output json`, build progress comes as NDJSON events and the list
//! last, as one `images` event.

use std::sync::Arc;

use serde_json::json;

use crate::error::{Error, Exit};
use crate::providers::local::{docker, image};
use crate::report::{OutputMode, Reporter};

pub fn images(
    runtime: &tokio::runtime::Runtime,
    reporter: &Arc<Reporter>,
    build: &[String],
    rebuild: bool,
) -> Result<Exit, Error> {
    let list = runtime.block_on(async {
        for name in build {
            image::recipe(name)?;
        }
        let docker = docker::connect().await?;
        for name in build {
            image::ensure(&docker, reporter, name, rebuild).await?;
        }
        image::list(&docker).await
    })?;
    if reporter.mode() == OutputMode::Json {
        reporter.print_event(json!({"event": "images", "images": list}));
        return Ok(Exit::Ok);
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
    Ok(Exit::Ok)
}
