//! `labrun images`: the local provider's base images, built on request.

use crate::error::exit;
use crate::providers::ProviderError;
use crate::providers::local::{docker, image};
use crate::redact::Redactor;
use crate::report::{OutputMode, Reporter};

pub fn images(runtime: &tokio::runtime::Runtime, build: &[String], rebuild: bool) -> i32 {
    let reporter = Reporter::new(OutputMode::detect(), false, Redactor::new());
    let result = runtime.block_on(async {
        for name in build {
            image::recipe(name)?;
        }
        let docker = docker::connect().await?;
        for name in build {
            image::ensure(&docker, &reporter, name, rebuild).await?;
        }
        image::list(&docker).await
    });
    match result {
        Ok(list) => {
            println!("{:<14} {:<6} DETAIL", "IMAGE", "READY");
            for i in list {
                println!(
                    "{:<14} {:<6} {}",
                    i.name,
                    if i.ready { "yes" } else { "no" },
                    i.detail
                );
            }
            exit::OK
        }
        Err(e) => {
            reporter.error(&format!("error: {e}"));
            match e {
                ProviderError::Invalid(_) => exit::USAGE,
                _ => exit::FAILED,
            }
        }
    }
}
