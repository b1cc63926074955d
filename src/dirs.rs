//! Where labrun keeps files on this machine: its own variable first, then
//! the XDG base directory, then the XDG default under `$HOME`.

use std::path::PathBuf;

/// `$own` if set, else `$xdg/labrun`, else `$HOME/<home_default>`, where
/// `home_default` is the XDG default for that kind (`.cache/labrun`).
pub fn labrun_dir(own: &str, xdg: &str, home_default: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(own).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os(xdg).filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("labrun");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(home_default)
}
