//! Where image builds fetch packages from: an environment override
//! (`LABRUN_DEBIAN_MIRROR`, `LABRUN_DEBIAN_SECURITY_MIRROR`,
//! `LABRUN_UBUNTU_MIRROR`, `LABRUN_APT_PROXY`), else what this machine's
//! own apt uses (its sources and `Acquire::http::Proxy`), else the
//! distribution's public mirror. A machine behind a local mirror or an apt
//! proxy builds images from it, and so do the instances' own apt runs.

use std::sync::OnceLock;

/// The archives images are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    Debian,
    DebianSecurity,
    Ubuntu,
}

impl Archive {
    /// The environment variable that overrides this archive's mirror.
    pub fn env(self) -> &'static str {
        match self {
            Archive::Debian => "LABRUN_DEBIAN_MIRROR",
            Archive::DebianSecurity => "LABRUN_DEBIAN_SECURITY_MIRROR",
            Archive::Ubuntu => "LABRUN_UBUNTU_MIRROR",
        }
    }

    fn default_mirror(self) -> &'static str {
        match self {
            Archive::Debian => "http://deb.debian.org/debian",
            Archive::DebianSecurity => "http://deb.debian.org/debian-security",
            Archive::Ubuntu => "http://archive.ubuntu.com/ubuntu",
        }
    }
}

const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];
const UBUNTU_SUITES: &[&str] = &[
    "bionic", "focal", "jammy", "kinetic", "lunar", "mantic", "noble", "oracular", "plucky",
    "questing",
];

/// Which archive an apt source line serves, by its suite: `bookworm`,
/// `bookworm-updates` are Debian, `bookworm-security` (or the old
/// `buster/updates`) Debian's security archive, `jammy*` Ubuntu.
fn classify(suite: &str) -> Option<Archive> {
    let (base, rest) = match suite.find(['-', '/']) {
        Some(i) => (&suite[..i], &suite[i + 1..]),
        None => (suite, ""),
    };
    if DEBIAN_SUITES.contains(&base) {
        Some(
            if rest == "security" || rest == "updates" && suite.contains('/') {
                Archive::DebianSecurity
            } else {
                Archive::Debian
            },
        )
    } else if UBUNTU_SUITES.contains(&base) && rest != "security" {
        Some(Archive::Ubuntu)
    } else {
        None
    }
}

/// A mirror a container can use too: http(s), not `file:`, `cdrom:` or
/// apt's `mirror+` lists.
fn usable(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The first usable mirror per archive in apt source files (deb822
/// `.sources` or one-line `.list`, told apart by their content), in order.
pub fn parse(texts: &[String]) -> Vec<(Archive, String)> {
    let mut found: Vec<(Archive, String)> = Vec::new();
    let mut add = |suite: &str, uri: &str| {
        if let Some(a) = classify(suite)
            && usable(uri)
            && !found.iter().any(|(have, _)| *have == a)
        {
            found.push((a, uri.trim_end_matches('/').to_string()));
        }
    };
    for text in texts {
        // Comment lines go (they do not end a deb822 stanza); so does the
        // rest of a one-line source after `#`.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| l.split('#').next().unwrap_or("").trim_end())
            .collect();
        if lines.iter().any(|l| l.starts_with("deb ")) {
            for l in &lines {
                let Some(rest) = l.strip_prefix("deb ") else {
                    continue;
                };
                let rest = rest.trim_start();
                // Options in brackets come before the URI.
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, after)| after),
                    None => rest,
                };
                let mut words = rest.split_whitespace();
                if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                    add(suite, uri);
                }
            }
            continue;
        }
        // deb822: stanzas separated by blank lines.
        for stanza in lines.split(|l| l.trim().is_empty()) {
            let field = |name: &str| {
                stanza.iter().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
                })
            };
            let enabled = field("Enabled").is_none_or(|v| v != "no");
            let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
            if !enabled || !is_deb {
                continue;
            }
            for uri in field("URIs").unwrap_or("").split_whitespace() {
                for suite in field("Suites").unwrap_or("").split_whitespace() {
                    add(suite, uri);
                }
            }
        }
    }
    found
}

/// This machine's apt mirrors, read once.
fn host_mirrors() -> &'static [(Archive, String)] {
    static HOST: OnceLock<Vec<(Archive, String)>> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut texts = Vec::new();
        if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
            texts.push(t);
        }
        if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
            let mut files: Vec<_> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
                .collect();
            files.sort();
            texts.extend(files.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
        }
        parse(&texts)
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The mirror of `archive`: its environment variable, else this machine's
/// apt sources, else the public one.
pub fn mirror(archive: Archive) -> String {
    env(archive.env())
        .or_else(|| {
            host_mirrors()
                .iter()
                .find(|(a, _)| *a == archive)
                .map(|(_, m)| m.clone())
        })
        .unwrap_or_else(|| archive.default_mirror().to_string())
}

/// The HTTP proxy for apt: `LABRUN_APT_PROXY`, else this machine's apt
/// `Acquire::http::Proxy`. It must be reachable from containers too (not
/// a loopback address).
pub fn apt_proxy() -> Option<String> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    if let Some(p) = env("LABRUN_APT_PROXY") {
        return Some(p);
    }
    HOST.get_or_init(|| {
        let out = std::process::Command::new("apt-config")
            .args(["shell", "P", "Acquire::http::Proxy"])
            .output()
            .ok()?;
        proxy_from_apt_config(&String::from_utf8_lossy(&out.stdout))
    })
    .clone()
}

/// `P='http://proxy:3142/'` (apt-config shell's output) -> the URL.
fn proxy_from_apt_config(text: &str) -> Option<String> {
    let value = text.trim().strip_prefix("P=")?.trim_matches('\'');
    (value.starts_with("http://") || value.starts_with("https://")).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sources_name_the_mirrors() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n\
                      URIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n"
            .to_string();
        let disabled = "Types: deb\nURIs: http://other.example/debian\nSuites: trixie\n\
                        Enabled: no\n"
            .to_string();
        let ubuntu = "deb [arch=amd64 signed-by=/k.gpg] http://ubuntu.example/ubuntu jammy main\n\
                      deb http://security.ubuntu.com/ubuntu jammy-security main\n\
                      deb https://packages.cloud.google.com/apt cloud-sdk main\n\
                      deb file:/srv/debian bookworm main\n"
            .to_string();
        let found = parse(&[disabled, deb822, ubuntu]);
        assert_eq!(
            found,
            vec![
                (Archive::Debian, "http://mirror.example/debian".to_string()),
                (
                    Archive::DebianSecurity,
                    "http://mirror.example/debian-security".to_string()
                ),
                (Archive::Ubuntu, "http://ubuntu.example/ubuntu".to_string()),
            ]
        );
        assert_eq!(
            parse(&["deb http://old.example/debian-security buster/updates main\n".into()]),
            vec![(
                Archive::DebianSecurity,
                "http://old.example/debian-security".to_string()
            )]
        );
        assert!(parse(&["Types: deb-src\nURIs: http://x/debian\nSuites: sid\n".into()]).is_empty());
    }

    #[test]
    fn the_proxy_comes_from_apt_config() {
        assert_eq!(
            proxy_from_apt_config("P='http://10.0.0.1:3142/'\n").as_deref(),
            Some("http://10.0.0.1:3142/")
        );
        assert_eq!(proxy_from_apt_config(""), None);
        assert_eq!(proxy_from_apt_config("P='DIRECT'"), None);
    }
}
