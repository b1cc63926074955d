//! A command kept running on a session and talked to in turns, for work
//! that costs more to start than to do (a SQL client asked many small
//! queries: starting `sudo mysql` costs tens of milliseconds, a query on
//! an open client one). Each turn writes input to the command and reads its
//! stdout up to a marker line that the input makes it print (a SQL client
//! is sent `SELECT 'marker';` after the query). The command starts on the
//! first turn and stays for the session; a turn that fails in any way (the
//! command exited, an error, the time limit) ends it, and the next turn
//! starts it afresh. Input goes through stdin, never on a command line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use russh::ChannelMsg;
use russh::client::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};

use super::exec::{RunOptions, remote_command};
use super::{Session, SshError, SshResult};

/// One kept command: its channel, and what it has printed of the turn.
pub(crate) struct Kept {
    read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
}

/// What a turn needs besides the input.
pub struct Turn<'a> {
    pub command: &'a str,
    pub sudo: bool,
    /// The line that ends the answer (not part of it).
    pub marker: &'a str,
    pub timeout: Duration,
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Where `marker` ends the answer in `out`: (end of the answer, end of the
/// marker line), when its line is complete.
pub fn find_marker(out: &[u8], marker: &str) -> Option<(usize, usize)> {
    let line = format!("{marker}\n");
    if out.starts_with(line.as_bytes()) {
        return Some((0, line.len()));
    }
    let needle = format!("\n{marker}\n");
    out.windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|i| (i + 1, i + needle.len()))
}

impl Session {
    /// Writes `input` to the kept `turn.command` (started first if it does
    /// not run) and returns its stdout up to the marker line.
    pub async fn converse(&self, turn: &Turn<'_>, input: &[u8]) -> SshResult<String> {
        let key = (turn.command.to_string(), turn.sudo);
        let mut kept = self.inner.kept.lock().await;
        if !kept.contains_key(&key) {
            let started = self.start_kept(turn).await?;
            kept.insert(key.clone(), started);
        }
        let k = kept.get_mut(&key).expect("just inserted");
        let answer = self.turn(k, turn, input).await;
        if answer.is_err()
            && let Some(k) = kept.remove(&key)
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), k.write.close()).await;
        }
        answer
    }

    async fn start_kept(&self, turn: &Turn<'_>) -> SshResult<Kept> {
        let options = RunOptions {
            sudo: turn.sudo,
            ..Default::default()
        };
        let (line, _) = remote_command(turn.command, &options)?;
        let (read, write) = self.open_exec(line).await?;
        Ok(Kept { read, write })
    }

    async fn turn(&self, k: &mut Kept, turn: &Turn<'_>, input: &[u8]) -> SshResult<String> {
        let failed = |status: String, stderr: &[u8]| SshError::CommandFailed {
            target: self.address(),
            command: turn.command.to_string(),
            status,
            tail: String::from_utf8_lossy(stderr).trim().to_string(),
        };
        k.write
            .data(input)
            .await
            .map_err(|e| failed(format!("its input was refused ({e})"), b""))?;
        let deadline = Instant::now() + turn.timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            tokio::select! {
                msg = k.read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        out.extend_from_slice(&data);
                        if let Some((end, _)) = find_marker(&out, turn.marker) {
                            out.truncate(end);
                            return Ok(String::from_utf8_lossy(&out).into_owned());
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => err.extend_from_slice(&data),
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        return Err(failed(format!("exit code {exit_status}"), &err));
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        return Err(failed(format!("signal {signal_name:?}"), &err));
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close | ChannelMsg::Failure) | None => {
                        return Err(failed("the command ended".into(), &err));
                    }
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    if turn.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
                        return Err(SshError::Interrupted);
                    }
                    if Instant::now() >= deadline {
                        return Err(SshError::Timeout {
                            target: self.address(),
                            command: turn.command.to_string(),
                            after: turn.timeout,
                            default: false,
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_ends_the_answer_on_a_line_of_its_own() {
        let m = "-- end --";
        assert_eq!(find_marker(b"-- end --\n", m), Some((0, 10)));
        assert_eq!(find_marker(b"1\t2\n-- end --\n", m), Some((4, 14)));
        assert_eq!(
            find_marker(b"1\t2\n-- end --", m),
            None,
            "line not complete"
        );
        assert_eq!(
            find_marker(b"x-- end --\n", m),
            None,
            "not a line of its own"
        );
        assert_eq!(find_marker(b"", m), None);
    }
}
