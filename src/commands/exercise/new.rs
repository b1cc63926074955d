//! `labrun exercise new DIR`: the skeleton, and what to do next.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Exit};
use crate::exercise::manifest::valid_id;
use crate::exercise::skeleton;
use crate::report::Reporter;

pub fn new(reporter: &Arc<Reporter>, dir: &Path) -> Result<Exit, Error> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !valid_id(&id) {
        return Err(Error::Input(format!(
            "exercise new {}: the directory's name is the exercise id: use 1-24 letters, digits, '_' or '-'",
            dir.display()
        )));
    }
    let written = skeleton::write(dir, &id).map_err(Error::Input)?;
    for f in written {
        reporter.print(&format!("created {f}"));
    }
    let d = dir.display();
    reporter.print(&format!(
        "\nNext:\n  labrun exercise validate {d}     # no lab needed\n  \
         labrun exercise test {d}         # the proof, on real instances\n  \
         labrun exercise start {d} --learner alice && labrun exercise check {d} --learner alice"
    ));
    Ok(Exit::Ok)
}
