//! What image builds keep in labrun's cache directory between runs: the
//! per-image build locks, so concurrent labruns build an image once, and
//! how many progress lines the last build printed, to size the next
//! build's progress bar. (debootstrap's work trees and package cache live
//! there too.)

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use super::recipe::Recipe;
use crate::providers::{ProviderError, ProviderResult};
use crate::report::Reporter;

/// Where labrun keeps build work and locks: `LABRUN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/labrun`, else `~/.cache/labrun`.
pub fn cache_dir() -> ProviderResult<PathBuf> {
    crate::dirs::labrun_dir("LABRUN_CACHE_DIR", "XDG_CACHE_HOME", ".cache/labrun")
        .map_err(ProviderError::Unavailable)
}

/// Builds within this process take turns before they take the file lock.
static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The right to build one image; released when dropped (or when the
/// process dies).
pub struct BuildLock {
    // Fields drop in order: the file lock first, then this process's turn.
    _file: File,
    _in_process: tokio::sync::MutexGuard<'static, ()>,
}

/// Takes this process's turn, then holds `<cache>/locks/<name>.lock`.
pub async fn lock(reporter: &Reporter, name: &str) -> ProviderResult<BuildLock> {
    let in_process = BUILDS.lock().await;
    let file = lock_file(reporter, name).await?;
    Ok(BuildLock {
        _file: file,
        _in_process: in_process,
    })
}

async fn lock_file(reporter: &Reporter, name: &str) -> ProviderResult<File> {
    let dir = cache_dir()?.join("locks");
    std::fs::create_dir_all(&dir).map_err(|source| ProviderError::File {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ProviderError::File {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            reporter.log(&format!(
                "waiting for another labrun to finish building image {name}"
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(ProviderError::File { path, source: e });
        }
    }
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| ProviderError::State(format!("waiting for the image lock: {e}")))?
        .map_err(|source| ProviderError::File { path, source })
}

/// How many progress lines a build of `r` printed last time (a guess the
/// first time).
pub fn expected_steps(r: &Recipe) -> u64 {
    cache_dir()
        .ok()
        .and_then(|d| std::fs::read_to_string(d.join(format!("{}.steps", r.name))).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(700)
}

pub fn remember_steps(r: &Recipe, steps: u64) {
    if let Ok(d) = cache_dir() {
        let _ = std::fs::write(d.join(format!("{}.steps", r.name)), steps.to_string());
    }
}
