//! Running one command: a new channel on the session's connection, stdin
//! written while output is read, output streamed line by line. Every
//! command has a time limit ([`DEFAULT_COMMAND_TIMEOUT`] unless the caller
//! gives one), and what is kept of its output is capped (see [`super::capture`]).
//!
//! `env` values never reach a command line: when a command has `env`, the
//! command line starts with a fixed prelude that reads `N` (a line count)
//! and then `N` lines of `export NAME='value'` from stdin and evals them;
//! the rest of stdin is the command's own. The shell's `read` builtin takes
//! one byte at a time from a pipe, so the command's stdin starts exactly
//! after the header. With `sudo`, the prelude runs inside `sudo`, so the
//! values reach root's command without sudo's environment rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};

use super::capture::{Capture, Lines};
use super::{Session, SshError, SshResult, quote};

/// How long a command may run unless the caller says otherwise. Long
/// enough for the slowest ordinary work, `apt-get install` of a database
/// server over a slow mirror on a small instance (minutes), including
/// apt's own wait for a dpkg lock held by cloud-init or unattended-upgrades
/// (`apt_install` allows its `lock_timeout` on top of this); short enough
/// that a command stuck on a prompt or a dead mount ends the run within
/// the half hour rather than never.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long labrun waits for the server to take a TERM signal or a channel
/// close (a frozen connection must not hold up the error that ends it).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run a command.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Run as root through `sudo -n`.
    pub sudo: bool,
    /// A non-zero exit is an error (default `true`).
    pub check: bool,
    /// Bytes for the command's stdin (then end of file).
    pub stdin: Option<Vec<u8>>,
    /// Environment variables, delivered through stdin (never argv).
    pub env: Vec<(String, String)>,
    /// Give up (and signal the command) after this long.
    pub timeout: Duration,
    /// Set by Ctrl-C: stop waiting and signal the command.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            sudo: false,
            check: true,
            stdin: None,
            env: Vec::new(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            cancel: None,
        }
    }
}

impl RunOptions {
    pub fn sudo() -> Self {
        RunOptions {
            sudo: true,
            ..Default::default()
        }
    }
}

/// What a command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The whole of stdout, or its head and tail around a line saying what
    /// was left out (see [`super::capture`]).
    pub stdout: String,
    pub stderr: String,
    /// The exit code, or -1 if a signal ended the command.
    pub code: i64,
    /// The signal that ended the command, if one did.
    pub signal: Option<String>,
    /// Bytes of stdout and of stderr left out of `stdout` and `stderr`.
    pub omitted: (u64, u64),
}

/// The last `n` non-blank lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// The last `lines` lines of stdout, then of stderr: for programs that
    /// print the cause on stdout and only a summary on stderr (apt-get: a
    /// package script's failure, then "E: Sub-process /usr/bin/dpkg
    /// returned an error code (1)").
    pub fn both_tails(&self, lines: usize) -> String {
        [
            last_lines(&self.stdout, lines),
            last_lines(&self.stderr, lines),
        ]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The last lines of stderr (or of stdout if stderr is empty).
    pub fn tail(&self, lines: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        last_lines(text, lines)
    }

    /// What was left out of the output, for a warning: `None` if nothing.
    pub fn omitted_note(&self) -> Option<String> {
        let parts: Vec<String> = [("stdout", self.omitted.0), ("stderr", self.omitted.1)]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{} of {name}", super::capture::size(*n)))
            .collect();
        (!parts.is_empty()).then(|| {
            format!(
                "{} left out of the result (it keeps the first {} and the last {} of each stream)",
                parts.join(" and "),
                super::capture::size(super::capture::HEAD_BYTES as u64),
                super::capture::size(super::capture::TAIL_BYTES as u64)
            )
        })
    }

    fn status(&self) -> String {
        match &self.signal {
            Some(s) => format!("signal {s}"),
            None => format!("exit code {}", self.code),
        }
    }
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How long a command may keep its output streams open after it exited
/// (a daemon it started may hold them forever) before labrun stops reading.
const AFTER_EXIT_QUIET: Duration = Duration::from_millis(500);
/// Lines of stderr an error message quotes.
pub const TAIL_LINES: usize = 10;

/// Reads `export` lines from stdin (count first), evals them, and goes on
/// with the command on the next line. POSIX sh, so any login shell runs it.
const ENV_PRELUDE: &str = "IFS= read -r __lr_n || exit 97; __lr_s=; \
while [ \"$__lr_n\" -gt 0 ]; do IFS= read -r __lr_l; __lr_s=\"$__lr_s$__lr_l\n\"; \
__lr_n=$((__lr_n-1)); done; eval \"$__lr_s\"; unset __lr_n __lr_s __lr_l\n";

/// A valid environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The command line sent to sshd, and the bytes that go before the
/// command's own stdin.
pub fn remote_command(command: &str, options: &RunOptions) -> SshResult<(String, Vec<u8>)> {
    let mut header = Vec::new();
    let mut body = String::new();
    if !options.env.is_empty() {
        let mut exports = String::new();
        for (name, value) in &options.env {
            if !valid_env_name(name) {
                return Err(SshError::Invalid(format!(
                    "env: '{name}' is not a valid variable name (letters, digits, '_', not starting with a digit)"
                )));
            }
            exports.push_str(&format!(
                "export {name}='{}'\n",
                value.replace('\'', "'\\''")
            ));
        }
        let lines = exports.matches('\n').count();
        header.extend_from_slice(format!("{lines}\n{exports}").as_bytes());
        body.push_str(ENV_PRELUDE);
    }
    body.push_str(command);
    let line = if options.sudo {
        format!("sudo -n -- bash -c {}", quote(&body))
    } else {
        body
    };
    Ok((line, header))
}

impl Session {
    /// A new channel on this connection, running `line`.
    pub(super) async fn open_exec(
        &self,
        line: String,
    ) -> SshResult<(ChannelReadHalf, ChannelWriteHalf<Msg>)> {
        let lost = |e: russh::Error| SshError::Connection {
            target: self.address(),
            message: format!("connection lost ({e})"),
        };
        let channel = self
            .inner
            .handle
            .channel_open_session()
            .await
            .map_err(lost)?;
        let (read, write) = channel.split();
        write.exec(true, line.into_bytes()).await.map_err(lost)?;
        Ok((read, write))
    }

    /// Runs `command` (a shell command line), streaming each output line to
    /// `sink` as it arrives. With `check`, a non-zero exit is an error that
    /// quotes the command, the status and the tail of stderr.
    pub async fn run(
        &self,
        command: &str,
        options: &RunOptions,
        sink: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> SshResult<Output> {
        let (line, header) = remote_command(command, options)?;
        let started = Instant::now();
        let deadline = started + options.timeout;
        let cancelled = || {
            options
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst))
        };
        let stopped = |cancelled: bool| {
            if cancelled {
                SshError::Interrupted
            } else {
                SshError::Timeout {
                    target: self.address(),
                    command: command.to_string(),
                    after: options.timeout,
                    default: options.timeout == DEFAULT_COMMAND_TIMEOUT,
                }
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        // Opening the channel waits for the server: bounded like the rest.
        let open = self.open_exec(line);
        tokio::pin!(open);
        let (mut read, write) = loop {
            tokio::select! {
                r = &mut open => match r {
                    Ok(halves) => break halves,
                    Err(e) => return Err(self.explain_lost(e).await),
                },
                _ = tick.tick() => {
                    let c = cancelled();
                    if c || Instant::now() >= deadline {
                        return Err(stopped(c));
                    }
                }
            }
        };

        let mut input = header;
        if let Some(stdin) = &options.stdin {
            input.extend_from_slice(stdin);
        }
        // Written concurrently with reading: a command may answer before it
        // has read all its input.
        let writer = async {
            if !input.is_empty() {
                write.data(&input[..]).await?;
            }
            write.eof().await
        };
        tokio::pin!(writer);
        let mut writer_done = false;

        let (mut stdout, mut stderr) = (Capture::default(), Capture::default());
        let (mut out_lines, mut err_lines) = (Lines::default(), Lines::default());
        let mut code: Option<i64> = None;
        let mut signal: Option<String> = None;
        let mut refused = false;
        let mut stop: Option<SshError> = None;
        let mut exited_at: Option<Instant> = None;
        loop {
            let quiet = async {
                match exited_at {
                    Some(_) => tokio::time::sleep(AFTER_EXIT_QUIET).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut writer, if !writer_done => {
                    // A command that exits without reading its input closes
                    // the channel under the writer: not an error in itself.
                    let _ = r;
                    writer_done = true;
                }
                msg = read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        stdout.push(&data);
                        out_lines.feed(&data, |l| sink(Stream::Stdout, l));
                    }
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        stderr.push(&data);
                        err_lines.feed(&data, |l| sink(Stream::Stderr, l));
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        code = Some(exit_status as i64);
                        exited_at = Some(Instant::now());
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        code = Some(-1);
                        signal = Some(sig_name(&signal_name));
                        exited_at = Some(Instant::now());
                    }
                    Some(ChannelMsg::Failure) => {
                        refused = true;
                        break;
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                _ = quiet => {
                    // Exited, but something it started still holds the
                    // output open: the command's own work is done.
                    let _ = tokio::time::timeout(STOP_TIMEOUT, write.close()).await;
                    break;
                }
                _ = tick.tick() => {
                    let c = cancelled();
                    if c || Instant::now() >= deadline {
                        // Bounded: on a frozen connection these wait for
                        // room that never comes.
                        let _ = tokio::time::timeout(STOP_TIMEOUT, async {
                            let _ = write.signal(Sig::TERM).await;
                            let _ = write.close().await;
                        })
                        .await;
                        stop = Some(stopped(c));
                        break;
                    }
                }
            }
        }
        out_lines.finish(|l| sink(Stream::Stdout, l));
        err_lines.finish(|l| sink(Stream::Stderr, l));
        if let Some(e) = stop {
            return Err(e);
        }
        if refused {
            return Err(SshError::Connection {
                target: self.address(),
                message: format!("the server refused to run `{command}`"),
            });
        }
        let Some(code) = code else {
            let message = if self.is_closed() {
                let why = self
                    .closed_reason()
                    .await
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                format!("connection lost while running `{command}`{why}")
            } else {
                format!("`{command}` ended without an exit status")
            };
            return Err(SshError::Connection {
                target: self.address(),
                message,
            });
        };
        let (stdout, stderr) = (stdout.finish(), stderr.finish());
        let output = Output {
            stdout: stdout.text,
            stderr: stderr.text,
            code,
            signal,
            omitted: (stdout.omitted, stderr.omitted),
        };
        if options.check && !output.success() {
            return Err(SshError::CommandFailed {
                target: self.address(),
                command: command.to_string(),
                status: output.status(),
                tail: output.tail(TAIL_LINES),
            });
        }
        Ok(output)
    }

    /// A connection error, with why the connection ended when it has.
    async fn explain_lost(&self, e: SshError) -> SshError {
        match e {
            SshError::Connection { target, message } if self.is_closed() => {
                let message = match self.closed_reason().await {
                    Some(why) => format!("{message}: {why}"),
                    None => message,
                };
                SshError::Connection { target, message }
            }
            other => other,
        }
    }

    /// [`Session::run`] without streaming.
    pub async fn run_quiet(&self, command: &str, options: &RunOptions) -> SshResult<Output> {
        self.run(command, options, &mut |_, _| {}).await
    }
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prelude as a local `sh` runs it: env from the header, then the
    /// command's own stdin, untouched.
    fn run_locally(command: &str, env: &[(&str, &str)], stdin: &str) -> String {
        use std::io::Write;
        let options = RunOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let (line, header) = remote_command(command, &options).unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(&header).unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    }

    #[test]
    fn env_arrives_through_stdin_and_stdin_stays_intact() {
        let tricky = "it's $HOME `x` \\n \"q\"\nsecond line\n";
        let out = run_locally(
            "printf '%s|' \"$A\" \"$B\"; cat",
            &[("A", tricky), ("B", "")],
            "rest\nof stdin",
        );
        assert_eq!(out, format!("{tricky}||rest\nof stdin"));
    }

    #[test]
    fn env_values_are_not_on_the_command_line() {
        let options = RunOptions {
            env: vec![("PW".into(), "hunter2-secret".into())],
            sudo: true,
            ..Default::default()
        };
        let (line, header) = remote_command("echo hi", &options).unwrap();
        assert!(!line.contains("hunter2"));
        assert!(String::from_utf8(header).unwrap().contains("hunter2"));
        assert!(line.starts_with("sudo -n -- bash -c "));
    }

    #[test]
    fn plain_commands_go_as_they_are() {
        let (line, header) = remote_command("true", &RunOptions::default()).unwrap();
        assert_eq!(line, "true");
        assert!(header.is_empty());
        assert!(
            remote_command(
                "x",
                &RunOptions {
                    env: vec![("1A".into(), "v".into())],
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn tail_prefers_stderr() {
        let o = Output {
            stdout: "out\n".into(),
            stderr: "1\n2\n3\n".into(),
            code: 1,
            signal: None,
            omitted: (0, 0),
        };
        assert_eq!(o.tail(2), "2\n3");
        let o = Output {
            stderr: String::new(),
            ..o
        };
        assert_eq!(o.tail(2), "out");
    }

    #[test]
    fn both_tails_keep_the_cause_printed_on_stdout() {
        let o = Output {
            stdout: "Setting up mysql-server\nJob for mysql.service failed.\n\n".into(),
            stderr: "E: Sub-process /usr/bin/dpkg returned an error code (1)\n".into(),
            code: 100,
            signal: None,
            omitted: (0, 0),
        };
        assert_eq!(
            o.both_tails(1),
            "Job for mysql.service failed.\nE: Sub-process /usr/bin/dpkg returned an error code (1)"
        );
        let o = Output {
            stdout: String::new(),
            ..o
        };
        assert_eq!(
            o.both_tails(5),
            "E: Sub-process /usr/bin/dpkg returned an error code (1)"
        );
    }
}
