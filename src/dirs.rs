//! Where labrun keeps files on this machine: its own variable first, then
//! the XDG base directory, then the XDG default under the home directory.
//! Never a shared directory such as `/tmp`, where another user could read
//! lab state or plant files for labrun to trust.

use std::path::PathBuf;

/// `$own` if set, else `$xdg/labrun`, else `<home>/<home_default>`, where
/// `home_default` is the XDG default for that kind (`.cache/labrun`) and
/// home is `$HOME`, else the user's home in the password database.
pub fn labrun_dir(own: &str, xdg: &str, home_default: &str) -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os(own).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os(xdg).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("labrun"));
    }
    match home() {
        Some(home) => Ok(home.join(home_default)),
        None => Err(format!(
            "HOME is not set and this user has no home directory; set {own} (or {xdg}) to \
             a directory of yours (labrun does not fall back to a shared directory like /tmp)"
        )),
    }
}

/// `$HOME`, else the home directory the password database gives this user.
fn home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives `pwd`'s use.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r filled `pw_dir` with a NUL-terminated string in `buf`.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    let dir = PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(dir.to_bytes()),
    );
    (dir.is_absolute() && dir != std::path::Path::new("/")).then_some(dir)
}
