//! `labrun man [--dir DIR]`: man pages made from the clap definitions (the
//! same text as `--help`).

use std::path::Path;
use std::sync::Arc;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Exit};
use crate::report::Reporter;

pub fn man(reporter: &Arc<Reporter>, dir: Option<&Path>) -> Result<Exit, Error> {
    let command = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| Error::Failed(format!("rendering the man page: {e}")))?;
            reporter.print(String::from_utf8_lossy(&page).trim_end_matches('\n'));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Input(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(command, dir)
                .map_err(|e| Error::Input(format!("cannot write to {}: {e}", dir.display())))?;
            let mut pages: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| Error::Input(format!("cannot read {}: {e}", dir.display())))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "1"))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("labrun"))
                })
                .map(|p| p.display().to_string())
                .collect();
            pages.sort();
            for page in pages {
                reporter.print(&page);
            }
        }
    }
    Ok(Exit::Ok)
}
