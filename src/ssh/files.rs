//! Files on the remote host: write (only when different), read, test,
//! replace a line. Content always travels through stdin, never argv.

use regex::Regex;

use super::exec::RunOptions;
use super::{Session, SshError, SshResult, quote};

/// Extra settings of [`Session::write_file`].
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// Octal permissions (`"0644"`); kept as they are when `None`.
    pub mode: Option<String>,
    /// `user` or `user:group`; kept as they are when `None`.
    pub owner: Option<String>,
    /// Act as root (the default for the bindings).
    pub sudo: bool,
}

/// Normalises an octal mode as `stat -c %a` prints it (`"0644"` → `"644"`).
pub fn normalize_mode(mode: &str) -> SshResult<String> {
    let digits = mode.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777 && !digits.is_empty())
        .map(|m| format!("{m:o}"))
        .ok_or_else(|| {
            SshError::Invalid(format!(
                "mode '{mode}' is not an octal file mode like \"0644\""
            ))
        })
}

fn check_owner(owner: &str) -> SshResult<()> {
    let ok = !owner.is_empty()
        && owner.split(':').count() <= 2
        && owner.split(':').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(SshError::Invalid(format!(
            "owner '{owner}' must be \"user\" or \"user:group\""
        )))
    }
}

/// Compares the new content (stdin) with the file and replaces it
/// atomically only if it differs; then mode and owner. The last line says
/// whether anything changed.
const WRITE_SCRIPT: &str = r#"
if [ -L "$p" ]; then p=$(readlink -f -- "$p"); fi
d=$(dirname -- "$p")
[ -d "$d" ] || { echo "directory $d does not exist" >&2; exit 2; }
c=0
t=$(mktemp "$d/.labrun.XXXXXX") || exit 2
trap 'rm -f -- "$t"' EXIT
cat > "$t" || exit 2
if [ -f "$p" ] && cmp -s -- "$t" "$p"; then :; else
  # The new file gets its final mode and owner while it is still the
  # private (0600) temp file: a secret is never readable for a moment.
  if [ -n "$m" ]; then chmod "$m" -- "$t" || exit 2
  elif [ -e "$p" ]; then chmod --reference="$p" -- "$t"
  else chmod 644 -- "$t"; fi
  if [ -n "$o" ]; then chown -- "$o" "$t" || exit 2
  elif [ -e "$p" ]; then chown --reference="$p" -- "$t" 2>/dev/null; fi
  mv -f -- "$t" "$p" || exit 2
  c=1
fi
if [ -n "$m" ] && [ "$(stat -c %a -- "$p")" != "$m" ]; then chmod "$m" -- "$p" || exit 2; c=1; fi
if [ -n "$o" ]; then
  cur=$(stat -c %U:%G -- "$p")
  case "$o" in *:*) ;; *) cur=${cur%%:*} ;; esac
  if [ "$cur" != "$o" ]; then chown -- "$o" "$p" || exit 2; c=1; fi
fi
echo "labrun-changed=$c"
"#;

/// Reads the `labrun-changed=N` marker a script printed last.
pub(crate) fn changed_marker(stdout: &str) -> SshResult<bool> {
    match stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("labrun-changed="))
    {
        Some("labrun-changed=1") => Ok(true),
        Some(_) => Ok(false),
        None => Err(SshError::Invalid(format!(
            "unexpected output from the remote script: {}",
            stdout.trim()
        ))),
    }
}

/// lineinfile: replaces the last line matching `regex` with `line`; if none
/// matches and `line` is not already there, appends it. `None`: no change.
pub fn replace_line_in(content: &str, regex: &Regex, line: &str) -> Option<String> {
    let mut lines: Vec<&str> = content.lines().collect();
    if let Some(i) = lines.iter().rposition(|l| regex.is_match(l)) {
        if lines[i] == line {
            return None;
        }
        lines[i] = line;
        let mut out = lines.join("\n");
        if content.ends_with('\n') || content.is_empty() {
            out.push('\n');
        }
        return Some(out);
    }
    if lines.contains(&line) {
        return None;
    }
    let mut out = content.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    Some(out)
}

impl Session {
    /// Writes `content` to `path` if the file's content, mode or owner
    /// differ from what is asked; returns whether it changed anything.
    pub async fn write_file(
        &self,
        path: &str,
        content: &[u8],
        options: &FileOptions,
    ) -> SshResult<bool> {
        let mode = options
            .mode
            .as_deref()
            .map(normalize_mode)
            .transpose()?
            .unwrap_or_default();
        let owner = options.owner.clone().unwrap_or_default();
        if !owner.is_empty() {
            check_owner(&owner)?;
        }
        check_path(path)?;
        let script = format!(
            "p={} m={} o={}{WRITE_SCRIPT}",
            quote(path),
            quote(&mode),
            quote(&owner)
        );
        let run = RunOptions {
            sudo: options.sudo,
            stdin: Some(content.to_vec()),
            ..Default::default()
        };
        let out = self
            .run(&script, &run, &mut |_, _| {})
            .await
            .map_err(|e| super::system::rename(e, &format!("write {path}")))?;
        changed_marker(&out.stdout)
    }

    /// The content of `path` (invalid UTF-8 is replaced).
    pub async fn read_file(&self, path: &str, sudo: bool) -> SshResult<String> {
        check_path(path)?;
        let run = RunOptions {
            sudo,
            ..Default::default()
        };
        let out = self
            .run(&format!("cat -- {}", quote(path)), &run, &mut |_, _| {})
            .await
            .map_err(|e| super::system::rename(e, &format!("read {path}")))?;
        if out.omitted.0 > 0 {
            // Half a file is not the file: refuse rather than return it.
            return Err(SshError::Invalid(format!(
                "{path} is larger than labrun keeps of a command's output ({} at most); \
                 read the part you need with `run` (e.g. `tail -n 100 {path}`)",
                super::capture::size(
                    (super::capture::HEAD_BYTES + super::capture::TAIL_BYTES) as u64
                )
            )));
        }
        Ok(out.stdout)
    }

    /// Whether `path` exists (as any kind of file).
    pub async fn file_exists(&self, path: &str, sudo: bool) -> SshResult<bool> {
        check_path(path)?;
        let run = RunOptions {
            sudo,
            check: false,
            ..Default::default()
        };
        let out = self
            .run_quiet(&format!("test -e {}", quote(path)), &run)
            .await?;
        match out.code {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(SshError::CommandFailed {
                target: self.address(),
                command: format!("test -e {path}"),
                status: format!("exit code {}", out.code),
                tail: out.tail(super::exec::TAIL_LINES),
            }),
        }
    }

    /// The contents of `path`, which must exist: one round trip where it
    /// exists and reads whole, else the two of [`Session::file_exists`] and
    /// [`Session::read_file`], for their exact answers and errors.
    async fn read_existing(&self, path: &str, sudo: bool) -> SshResult<String> {
        check_path(path)?;
        let run = RunOptions {
            sudo,
            check: false,
            ..Default::default()
        };
        let q = quote(path);
        let out = self
            .run_quiet(&format!("test -e {q} || exit 97; exec cat -- {q}"), &run)
            .await?;
        match out.code {
            0 if out.omitted == (0, 0) => return Ok(out.stdout),
            97 => return Err(SshError::Invalid(format!("{path} does not exist"))),
            _ => {}
        }
        if !self.file_exists(path, sudo).await? {
            return Err(SshError::Invalid(format!("{path} does not exist")));
        }
        self.read_file(path, sudo).await
    }

    /// lineinfile: replaces the last line of `path` matching `regex` with
    /// `line`, else appends `line` (unless it is already there). The file
    /// must exist; its mode and owner are kept. Returns whether it changed.
    pub async fn replace_line(
        &self,
        path: &str,
        regex: &Regex,
        line: &str,
        sudo: bool,
    ) -> SshResult<bool> {
        if line.contains('\n') {
            return Err(SshError::Invalid(
                "the replacement line must not contain a newline".into(),
            ));
        }
        let content = self.read_existing(path, sudo).await?;
        match replace_line_in(&content, regex, line) {
            None => Ok(false),
            Some(new) => {
                let options = FileOptions {
                    sudo,
                    ..Default::default()
                };
                self.write_file(path, new.as_bytes(), &options).await
            }
        }
    }
}

fn check_path(path: &str) -> SshResult<()> {
    if path.is_empty() || path.contains('\0') || path.contains('\n') {
        return Err(SshError::Invalid(format!("invalid path {path:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(s: &str) -> Regex {
        Regex::new(s).unwrap()
    }

    #[test]
    fn lineinfile_replaces_the_last_match_else_appends() {
        let conf = "a=1\nbind-address = 127.0.0.1\n# bind-address = x\nb=2\n";
        assert_eq!(
            replace_line_in(conf, &re("^#? *bind-address"), "bind-address = 0.0.0.0").unwrap(),
            "a=1\nbind-address = 127.0.0.1\nbind-address = 0.0.0.0\nb=2\n"
        );
        let once = replace_line_in(conf, &re("^bind-address"), "bind-address = 0.0.0.0").unwrap();
        assert_eq!(
            replace_line_in(&once, &re("^bind-address"), "bind-address = 0.0.0.0"),
            None
        );
        assert_eq!(
            replace_line_in("x\ny", &re("^z"), "z=1").unwrap(),
            "x\ny\nz=1\n"
        );
        assert_eq!(replace_line_in("", &re("^z"), "z=1").unwrap(), "z=1\n");
        // Not matched, but already present: no change.
        assert_eq!(replace_line_in("z=1\n", &re("^nomatch"), "z=1"), None);
    }

    #[test]
    fn modes_are_normalised_like_stat() {
        assert_eq!(normalize_mode("0644").unwrap(), "644");
        assert_eq!(normalize_mode("600").unwrap(), "600");
        assert_eq!(normalize_mode("4755").unwrap(), "4755");
        assert!(normalize_mode("0x1").is_err());
        assert!(normalize_mode("999").is_err());
        assert!(normalize_mode("").is_err());
        assert!(check_owner("root:root").is_ok());
        assert!(check_owner("mysql").is_ok());
        assert!(check_owner("a b").is_err());
        assert!(check_owner("a:b:c").is_err());
    }

    #[test]
    fn write_script_is_idempotent_locally() {
        // The same script the remote host runs, against a local temp dir.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.conf");
        let run = |content: &str, mode: &str| -> bool {
            use std::io::Write;
            let script = format!(
                "p={} m={} o={}{WRITE_SCRIPT}",
                quote(path.to_str().unwrap()),
                quote(mode),
                quote("")
            );
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(content.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            changed_marker(&String::from_utf8(out.stdout).unwrap()).unwrap()
        };
        assert!(run("one\n", ""));
        assert!(!run("one\n", ""));
        assert!(run("one\n", "600"));
        assert!(!run("one\n", "600"));
        assert!(run("two\n", "600"));
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files left behind");
    }
}
