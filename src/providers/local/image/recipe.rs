//! The recipes of the base images: which release, which packages, the apt
//! sources written into the image, and the shell scripts that turn a root
//! filesystem into a labrun image. A recipe's name, suite and sources, the
//! packages, the scripts and the entrypoint are hashed into the image
//! reference (`image_ref`): changing any of them makes new images. So are
//! the build's optional extras ([`Extras`]: an apt proxy, an extra MySQL
//! source), when there are any.

use super::mirrors::{self, Archive};
use crate::providers::local::network::fnv1a;
use crate::providers::{ProviderError, ProviderResult};

/// How to make one base image.
#[derive(Debug)]
pub struct Recipe {
    pub name: &'static str,
    /// The distribution's release codename (debootstrap's suite).
    pub suite: &'static str,
    /// The upstream image for the `pull` source.
    pub upstream: &'static str,
    /// The archive the release comes from (its mirror is looked up there).
    pub archive: Archive,
    /// Keyring debootstrap checks the archive with, when not the default.
    pub keyring: Option<&'static str>,
    /// deb822 apt sources for the image; `{mirror}` and `{security}` are
    /// replaced.
    pub sources: &'static str,
    pub sources_file: &'static str,
}

impl Recipe {
    /// The archive mirror (see [`mirrors::mirror`]).
    pub fn mirror(&self) -> String {
        mirrors::mirror(self.archive)
    }

    /// The image's apt sources, with the mirrors filled in.
    pub fn apt_sources(&self) -> String {
        self.sources
            .replace("{mirror}", &self.mirror())
            .replace("{security}", &mirrors::mirror(Archive::DebianSecurity))
    }

    /// The image the `pull` source starts from: `LABRUN_UPSTREAM_IMAGE`,
    /// else `upstream`.
    pub fn upstream_image(&self) -> String {
        std::env::var("LABRUN_UPSTREAM_IMAGE")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.upstream.to_string())
    }
}

/// Installed in every image: sshd and sudo, systemd to run them, and what
/// a learner following the tutorial types (vi, nano, less, ip, ss, ping,
/// curl).
pub const PACKAGES: &[&str] = &[
    "openssh-server",
    "sudo",
    "iproute2",
    "ca-certificates",
    "iputils-ping",
    "netcat-openbsd",
    "procps",
    "python3",
    "less",
    "nftables",
    "systemd",
    "systemd-sysv",
    "dbus",
    "vim-tiny",
    "nano",
    "curl",
];

pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "debian-12",
        suite: "bookworm",
        upstream: "debian:12",
        archive: Archive::Debian,
        keyring: None,
        sources: "Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                  Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        sources_file: "debian.sources",
    },
    Recipe {
        name: "debian-13",
        suite: "trixie",
        upstream: "debian:13",
        archive: Archive::Debian,
        keyring: None,
        sources: concat!(
            "Types: deb\nURIs: {mirror}\nSuites: trixie trixie-updates\nComponents: main\n",
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n",
            "Types: deb\nURIs: {security}\nSuites: trixie-security\nComponents: main\n",
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
        sources_file: "debian.sources",
    },
    // sid is where Debian has Oracle's MySQL. Mirrors and snapshots of it
    // often serve a Release past its Valid-Until (sid's is a week), which
    // apt refuses: this one source, and only it, is told not to check.
    Recipe {
        name: "debian-sid",
        suite: "sid",
        upstream: "debian:sid",
        archive: Archive::Debian,
        keyring: None,
        sources: concat!(
            "Types: deb\nURIs: {mirror}\nSuites: sid\nComponents: main\n",
            "Check-Valid-Until: no\n",
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
        sources_file: "debian.sources",
    },
    Recipe {
        name: "ubuntu-22.04",
        suite: "jammy",
        upstream: "ubuntu:22.04",
        archive: Archive::Ubuntu,
        keyring: Some("/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
        sources: "Types: deb\nURIs: {mirror}\nSuites: jammy jammy-updates jammy-security\n\
                  Components: main universe\n\
                  Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n",
        sources_file: "ubuntu.sources",
    },
];

/// What a build adds to its recipe, from the environment: the apt proxy
/// (see [`mirrors::apt_proxy`]), and an extra apt source with its keyring
/// (`LABRUN_MYSQL_APT_SOURCE`, `LABRUN_MYSQL_APT_KEYRING`: files, e.g.
/// Oracle's MySQL 8.4 repository), added to the images whose release the
/// source names. The keyring lands in `/etc/apt/keyrings/labrun-mysql.gpg`,
/// which the source's `Signed-By` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub proxy: Option<String>,
    /// (file name in sources.list.d, its text).
    pub source: Option<(String, String)>,
    pub keyring: Option<Vec<u8>>,
}

impl Extras {
    /// The extras of a build of `r` now.
    pub fn for_recipe(r: &Recipe) -> ProviderResult<Extras> {
        let source = match read_env_file("LABRUN_MYSQL_APT_SOURCE")? {
            None => None,
            Some(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    ProviderError::Invalid(
                        "LABRUN_MYSQL_APT_SOURCE: not a text file (an apt .sources or .list file)"
                            .into(),
                    )
                })?;
                extra_source_for(r.suite, &text)
            }
        };
        let keyring = match source {
            Some(_) => read_env_file("LABRUN_MYSQL_APT_KEYRING")?,
            None => None,
        };
        if let Some(k) = &keyring
            && k.len() > MAX_KEYRING
        {
            return Err(ProviderError::Invalid(format!(
                "LABRUN_MYSQL_APT_KEYRING: {} bytes, more than the {MAX_KEYRING} an image build \
                 takes (it travels in one argument); a repository's own key is a few KB: \
                 export just that key (gpg --export KEYID > FILE)",
                k.len()
            )));
        }
        Ok(Extras {
            proxy: mirrors::apt_proxy(),
            source,
            keyring,
        })
    }

    /// What the image reference hashes besides the recipe: nothing when
    /// there are no extras, so references stay what they were.
    pub fn hash_text(&self) -> String {
        if *self == Extras::default() {
            return String::new();
        }
        format!(
            "|proxy={}|source={:?}|keyring={:x}",
            self.proxy.as_deref().unwrap_or(""),
            self.source,
            self.keyring.as_deref().map_or(0, fnv1a)
        )
    }

    /// The environment [`CUSTOMISE`] reads them from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let (file, text) = self.source.clone().unwrap_or_default();
        vec![
            ("LABRUN_APT_PROXY", self.proxy.clone().unwrap_or_default()),
            ("LABRUN_EXTRA_SOURCE_FILE", file),
            ("LABRUN_EXTRA_SOURCE", text),
            (
                "LABRUN_EXTRA_KEYRING",
                self.keyring
                    .as_deref()
                    .map(octal_escapes)
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// The largest extra keyring, in bytes: escaped, it goes into the build
/// script, which the kernel takes as one argument of at most 128 KiB.
const MAX_KEYRING: usize = 16 * 1024;

/// The contents of the file environment variable `var` names, if it is set.
fn read_env_file(var: &str) -> ProviderResult<Option<Vec<u8>>> {
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(path) => std::fs::read(path.trim())
            .map(Some)
            .map_err(|e| ProviderError::Invalid(format!("{var}={path}: cannot read it: {e}"))),
    }
}

/// The extra source for an image of `suite`: (file name, text) when the
/// source names that suite as a word; one-line sources go to a `.list`.
fn extra_source_for(suite: &str, text: &str) -> Option<(String, String)> {
    let names_suite = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split([' ', '\t', ':']))
        .any(|w| w == suite);
    if !names_suite {
        return None;
    }
    let one_line = text.lines().any(|l| l.trim_start().starts_with("deb "));
    let file = if one_line {
        "labrun-mysql.list"
    } else {
        "labrun-mysql.sources"
    };
    Some((file.to_string(), text.trim_end().to_string()))
}

/// Bytes as `\NNN` octal escapes, which `printf '%b'` in any sh turns back.
fn octal_escapes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\0{b:03o}")).collect()
}

/// Turns a root filesystem at `$ROOT` into a labrun base image. Runs on the
/// host (chroot into a debootstrap tree) or inside a build container
/// (`ROOT=/`). Instances boot systemd (see the init script below): units
/// that need a whole machine are masked, apt's timers left off (a lab's own
/// apt runs would wait for their locks), and the default target is
/// multi-user.
pub const CUSTOMISE: &str = r#"set -eu
R="$ROOT"
rm -f "$R/etc/apt/sources.list"
mkdir -p "$R/etc/apt/sources.list.d"
printf '%s\n' "$LABRUN_SOURCES" > "$R/etc/apt/sources.list.d/$LABRUN_SOURCES_FILE"
if [ -n "${LABRUN_EXTRA_SOURCE:-}" ]; then
  printf '%s\n' "$LABRUN_EXTRA_SOURCE" > "$R/etc/apt/sources.list.d/$LABRUN_EXTRA_SOURCE_FILE"
fi
if [ -n "${LABRUN_EXTRA_KEYRING:-}" ]; then
  mkdir -p "$R/etc/apt/keyrings"
  printf '%b' "$LABRUN_EXTRA_KEYRING" > "$R/etc/apt/keyrings/labrun-mysql.gpg"
  chmod 0644 "$R/etc/apt/keyrings/labrun-mysql.gpg"
fi
if [ -n "${LABRUN_APT_PROXY:-}" ]; then
  printf 'Acquire::http::Proxy "%s";\n' "$LABRUN_APT_PROXY" > "$R/etc/apt/apt.conf.d/90labrun-proxy"
fi
chroot "$R" getent passwd ubuntu >/dev/null || chroot "$R" useradd -m -s /bin/bash -U ubuntu
chroot "$R" usermod -p '*' ubuntu
mkdir -p "$R/home/ubuntu/.ssh"
chmod 0700 "$R/home/ubuntu/.ssh"
chroot "$R" chown ubuntu:ubuntu /home/ubuntu/.ssh
echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' > "$R/etc/sudoers.d/90-labrun-ubuntu"
chmod 0440 "$R/etc/sudoers.d/90-labrun-ubuntu"
mkdir -p "$R/etc/ssh/sshd_config.d"
cat > "$R/etc/ssh/sshd_config.d/labrun.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
EOF
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/run/sshd"
chmod 0755 "$R/run/sshd"
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' "$R/etc/pam.d/sshd"
for u in tmp.mount systemd-remount-fs.service systemd-firstboot.service getty@tty1.service \
         console-getty.service systemd-udevd.service systemd-udev-trigger.service \
         systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
         sys-kernel-tracing.mount dev-hugepages.mount dev-mqueue.mount \
         proc-sys-fs-binfmt_misc.automount systemd-timesyncd.service e2scrub_reap.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
for t in apt-daily.timer apt-daily-upgrade.timer; do
  rm -f "$R/etc/systemd/system/timers.target.wants/$t"
done
ln -sf /lib/systemd/system/multi-user.target "$R/etc/systemd/system/default.target"
cat > "$R/usr/local/sbin/labrun-init" <<'EOF'
#!/bin/sh
# labrun instance start: this instance's own SSH host keys (made on first
# start, kept across restarts; sshd refuses to start without them) and the
# lab's key for the login user, then systemd as PID 1 (or the command
# given, e.g. `/usr/sbin/sshd -D -e` for an instance without systemd).
set -e
for t in ed25519 ecdsa; do
  [ -f /etc/ssh/ssh_host_${t}_key ] || ssh-keygen -q -t $t -N '' -f /etc/ssh/ssh_host_${t}_key
done
mkdir -p /run/sshd
chmod 0755 /run/sshd
if [ -n "${LABRUN_AUTHORIZED_KEYS:-}" ]; then
  install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh
  printf '%s\n' "$LABRUN_AUTHORIZED_KEYS" > /home/ubuntu/.ssh/authorized_keys
  chown ubuntu:ubuntu /home/ubuntu/.ssh/authorized_keys
  chmod 0600 /home/ubuntu/.ssh/authorized_keys
fi
unset LABRUN_AUTHORIZED_KEYS
if [ "$#" -gt 0 ]; then exec "$@"; fi
exec /lib/systemd/systemd
EOF
chmod 0755 "$R/usr/local/sbin/labrun-init"
printf '#!/bin/sh\nexit 0\n' > "$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
: > "$R/etc/resolv.conf" || true
echo localhost > "$R/etc/hostname" || true
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/debconf/*-old
rm -f "$R"/var/log/*.log
find "$R/tmp" -mindepth 1 -delete 2>/dev/null || true
"#;

/// Before [`CUSTOMISE`] in a build container: install the packages, from
/// the recipe's sources (the upstream image's own may be unusable, e.g.
/// sid's past its Valid-Until).
pub const INSTALL: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
printf '%s\n' "$LABRUN_SOURCES" > "/etc/apt/sources.list.d/$LABRUN_SOURCES_FILE"
if [ -n "${LABRUN_APT_PROXY:-}" ]; then
  printf 'Acquire::http::Proxy "%s";\n' "$LABRUN_APT_PROXY" > /etc/apt/apt.conf.d/90labrun-proxy
fi
apt-get update
apt-get install -y --no-install-recommends $LABRUN_PACKAGES
"#;

pub const ENTRYPOINT: &str = "/usr/local/sbin/labrun-init";
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Tells systemd it runs in a container.
pub const CONTAINER_ENV: &str = "container=docker";

/// The recipe `name`, or an error listing the known images.
pub fn recipe(name: &str) -> ProviderResult<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        ProviderError::Invalid(format!(
            "unknown image '{name}'; available images: {} (see `labrun images`)",
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}
