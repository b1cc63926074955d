//! The recipes of the base images: which release, which packages, the apt
//! sources written into the image, and the shell scripts that turn a root
//! filesystem into a labrun image. A recipe's name, suite and sources, the
//! packages, the scripts and the entrypoint are hashed into the image
//! reference (`image_ref`): changing any of them makes new images.

use crate::providers::{ProviderError, ProviderResult};

/// How to make one base image.
#[derive(Debug)]
pub struct Recipe {
    pub name: &'static str,
    /// The distribution's release codename (debootstrap's suite).
    pub suite: &'static str,
    /// The upstream image for the `pull` source.
    pub upstream: &'static str,
    /// Environment variable overriding the archive mirror, and its default.
    pub mirror_env: &'static str,
    pub default_mirror: &'static str,
    /// Keyring debootstrap checks the archive with, when not the default.
    pub keyring: Option<&'static str>,
    /// deb822 apt sources for the image; `{mirror}` is replaced.
    pub sources: &'static str,
    pub sources_file: &'static str,
}

impl Recipe {
    /// The archive mirror: `mirror_env`, else the default.
    pub fn mirror(&self) -> String {
        std::env::var(self.mirror_env)
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.default_mirror.to_string())
    }

    /// The image's apt sources, with the mirrors filled in.
    pub fn apt_sources(&self) -> String {
        let security = std::env::var("LABRUN_DEBIAN_SECURITY_MIRROR")
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "http://deb.debian.org/debian-security".into());
        self.sources
            .replace("{mirror}", &self.mirror())
            .replace("{security}", &security)
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

/// Installed in every image.
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
];

pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "debian-12",
        suite: "bookworm",
        upstream: "debian:12",
        mirror_env: "LABRUN_DEBIAN_MIRROR",
        default_mirror: "http://deb.debian.org/debian",
        keyring: None,
        sources: "Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                  Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        sources_file: "debian.sources",
    },
    Recipe {
        name: "ubuntu-22.04",
        suite: "jammy",
        upstream: "ubuntu:22.04",
        mirror_env: "LABRUN_UBUNTU_MIRROR",
        default_mirror: "http://archive.ubuntu.com/ubuntu",
        keyring: Some("/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
        sources: "Types: deb\nURIs: {mirror}\nSuites: jammy jammy-updates jammy-security\n\
                  Components: main universe\n\
                  Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n",
        sources_file: "ubuntu.sources",
    },
];

/// Turns a root filesystem at `$ROOT` into a labrun base image. Runs on the
/// host (chroot into a debootstrap tree) or inside a build container
/// (`ROOT=/`).
pub const CUSTOMISE: &str = r#"set -eu
R="$ROOT"
rm -f "$R/etc/apt/sources.list"
mkdir -p "$R/etc/apt/sources.list.d"
printf '%s\n' "$LABRUN_SOURCES" > "$R/etc/apt/sources.list.d/$LABRUN_SOURCES_FILE"
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
cat > "$R/usr/local/sbin/labrun-entrypoint" <<'EOF'
#!/bin/sh
# labrun instance start: this instance's own SSH host keys (made on first
# start, kept across restarts), the lab's key for the login user, then sshd.
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
exec /usr/sbin/sshd -D -e
EOF
chmod 0755 "$R/usr/local/sbin/labrun-entrypoint"
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

/// Before [`CUSTOMISE`] in a build container: install the packages.
pub const INSTALL: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends $LABRUN_PACKAGES
"#;

pub const ENTRYPOINT: &str = "/usr/local/sbin/labrun-entrypoint";
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
