//! What an instance gets so that its apt uses the package cache: an apt
//! setting (`Acquire::http::Proxy-Auto-Detect`) naming a small script,
//! which apt runs once per archive host and which prints the cache's URL
//! for the archives the cache serves while the cache answers, else the
//! fallback (`DIRECT`, or the apt proxy images were built with). So a
//! stopped or removed cache costs apt one second per host, never an
//! error, and playbooks and learners just run `apt install`. Both files
//! are copied into the instance container before it first starts (the
//! engine's archive upload: works with any engine, needs nothing in the
//! image).

use std::net::Ipv4Addr;

/// apt's setting, in `apt.conf.d` (read by every apt run).
pub const APT_CONF: &str = "etc/apt/apt.conf.d/01labrun-apt-cache";
/// The script apt runs (root's: apt runs it as the user running apt).
pub const SCRIPT: &str = "usr/local/sbin/labrun-apt-proxy";

/// Where one lab's instances find the cache, and what they use without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: Ipv4Addr,
    pub port: u16,
    /// The archive hosts the cache serves, as `http://host[:port]`.
    pub archives: Vec<String>,
    /// What apt uses when the cache does not answer: `DIRECT` or a proxy.
    pub fallback: String,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.address, self.port)
    }
}

/// Quotes `s` for sh (single quotes).
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The Proxy-Auto-Detect script: apt passes the URL it is about to fetch.
pub fn script(e: &Endpoint) -> String {
    let patterns: Vec<String> = e.archives.iter().map(|a| format!("{}/*", sq(a))).collect();
    let cases = if patterns.is_empty() {
        String::new()
    } else {
        format!("  {}) ;;\n", patterns.join("|"))
    };
    format!(
        "#!/bin/sh\n\
         # Written by labrun at launch: apt's Acquire::http::Proxy-Auto-Detect\n\
         # ({APT_CONF}). The lab's package cache for the archives it serves,\n\
         # while it answers; else {fallback} (straight to the mirror unless a proxy).\n\
         case \"$1\" in\n\
         {cases}  *) echo {fallback}; exit 0 ;;\n\
         esac\n\
         if nc -z -w 1 {address} {port} >/dev/null 2>&1; then\n\
         \x20 echo {url}\n\
         else\n\
         \x20 echo {fallback}\n\
         fi\n",
        fallback = sq(&e.fallback),
        address = e.address,
        port = e.port,
        url = sq(&e.url()),
    )
}

/// The apt setting that names [`script`].
pub fn apt_conf() -> String {
    format!(
        "// Written by labrun: this lab's package cache, when it answers (see /{SCRIPT}).\n\
         Acquire::http::Proxy-Auto-Detect \"/{SCRIPT}\";\n"
    )
}

/// The files an instance gets: (path below `/`, mode, contents).
pub fn files(e: &Endpoint) -> Vec<(&'static str, u32, String)> {
    vec![(SCRIPT, 0o755, script(e)), (APT_CONF, 0o644, apt_conf())]
}

/// A tar archive (ustar) of `files`, owned by root, for the engine's
/// archive upload to `/`.
pub fn tar(files: &[(&str, u32, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, mode, contents) in files {
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, len: usize, value: &[u8]| {
            h[at..at + value.len().min(len)].copy_from_slice(&value[..value.len().min(len)]);
        };
        let octal = |n: u64, width: usize| format!("{n:0w$o}\0", w = width - 1);
        put(&mut h, 0, 100, path.as_bytes());
        put(&mut h, 100, 8, octal(*mode as u64, 8).as_bytes());
        put(&mut h, 108, 8, octal(0, 8).as_bytes());
        put(&mut h, 116, 8, octal(0, 8).as_bytes());
        put(&mut h, 124, 12, octal(contents.len() as u64, 12).as_bytes());
        put(
            &mut h,
            136,
            12,
            octal(crate::ledger::now_secs(), 12).as_bytes(),
        );
        h[156] = b'0';
        put(&mut h, 257, 6, b"ustar\0");
        put(&mut h, 263, 2, b"00");
        put(&mut h, 265, 32, b"root");
        put(&mut h, 297, 32, b"root");
        // The checksum is computed with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(contents.as_bytes());
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            address: Ipv4Addr::new(10, 1, 2, 2),
            port: 3142,
            archives: vec![
                "http://deb.debian.org".into(),
                "http://mirror.example:8080".into(),
            ],
            fallback: "DIRECT".into(),
        }
    }

    /// Runs the script with `sh` for `url`.
    fn detect(script: &str, url: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("labrun-apt-proxy")
            .arg(url)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_script_names_the_cache_only_for_its_archives_and_only_while_it_answers() {
        let e = endpoint();
        let s = script(&e);
        assert!(s.starts_with("#!/bin/sh\n"), "{s}");
        // Another archive goes straight to its mirror.
        assert_eq!(detect(&s, "http://example.org/debian/dists/x"), "DIRECT\n");
        // 10.1.2.2 answers nothing here: the cache is down, so DIRECT too,
        // within nc's one second.
        let started = std::time::Instant::now();
        assert_eq!(
            detect(&s, "http://deb.debian.org/debian/dists/bookworm/InRelease"),
            "DIRECT\n"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A cache that answers (a listener on this machine) is named.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = Endpoint {
            address: Ipv4Addr::LOCALHOST,
            port: listener.local_addr().unwrap().port(),
            fallback: "http://proxy.example:3128".into(),
            ..e
        };
        let s = script(&local);
        let has_nc = std::process::Command::new("sh")
            .args(["-c", "command -v nc"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has_nc {
            assert_eq!(
                detect(&s, "http://mirror.example:8080/debian/pool/x.deb"),
                format!("{}\n", local.url())
            );
        }
        assert_eq!(
            detect(&s, "http://other.example/x"),
            "http://proxy.example:3128\n"
        );
        assert!(
            apt_conf()
                .contains("Acquire::http::Proxy-Auto-Detect \"/usr/local/sbin/labrun-apt-proxy\";")
        );
    }

    #[test]
    fn the_archive_unpacks_with_tar() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(&endpoint());
        std::fs::write(dir.path().join("a.tar"), tar(&files)).unwrap();
        let out = std::process::Command::new("tar")
            .args(["-xf", "a.tar", "--no-same-owner"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        for (path, mode, contents) in files {
            let p = dir.path().join(path);
            assert_eq!(std::fs::read_to_string(&p).unwrap(), contents);
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                mode
            );
        }
    }
}
