//! What labrun keeps of a command's output: a bounded head and tail of
//! each stream, and bounded lines for the live display. A command that
//! prints without end (`cat /dev/zero`, a runaway log) costs the operator a
//! few megabytes, not all of its output.

use std::collections::VecDeque;

/// Bytes kept from the start of a stream.
pub const HEAD_BYTES: usize = 4 << 20;
/// Bytes kept from the end of a stream (where errors and the scripts'
/// `labrun-changed=` markers are).
pub const TAIL_BYTES: usize = 4 << 20;
/// Longest line shown on the live line or in the `-v` log; the rest of a
/// longer line is counted, not kept.
pub const LINE_BYTES: usize = 4096;
/// How far back from a cut labrun looks for a line break, so that the kept
/// head and tail hold whole lines.
const LINE_SEARCH: usize = 64 << 10;

/// One output stream, capped: the first [`HEAD_BYTES`] and the last
/// [`TAIL_BYTES`]; what lies between is counted and left out.
pub struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_max: usize,
    tail_max: usize,
    /// Bytes that are in neither head nor tail.
    dropped: u64,
    /// Whether the head is complete (every later byte goes to the tail).
    head_full: bool,
}

impl Default for Capture {
    fn default() -> Self {
        Capture::with_limits(HEAD_BYTES, TAIL_BYTES)
    }
}

/// A captured stream as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub text: String,
    /// Bytes left out of `text` (0: `text` is the whole stream).
    pub omitted: u64,
}

impl Capture {
    pub fn with_limits(head_max: usize, tail_max: usize) -> Capture {
        Capture {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_max,
            tail_max,
            dropped: 0,
            head_full: false,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if !self.head_full {
            let room = self.head_max - self.head.len();
            let take = room.min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() == self.head_max {
                self.head_full = true;
            }
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.tail_max {
            self.dropped += (self.tail.len() + data.len() - self.tail_max) as u64;
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_max..]);
            return;
        }
        let over = (self.tail.len() + data.len()).saturating_sub(self.tail_max);
        if over > 0 {
            self.tail.drain(..over);
            self.dropped += over as u64;
        }
        self.tail.extend(data);
    }

    /// The stream as text: whole when it fit, else head, a line saying how
    /// much was left out, and tail (each cut moved to a line break nearby,
    /// so no line is shown in part).
    pub fn finish(self) -> Captured {
        let mut tail: Vec<u8> = self.tail.into();
        let mut head = self.head;
        if self.dropped == 0 {
            head.extend_from_slice(&tail);
            return Captured {
                text: String::from_utf8_lossy(&head).into_owned(),
                omitted: 0,
            };
        }
        let mut dropped = self.dropped;
        let from = head.len().saturating_sub(LINE_SEARCH);
        if let Some(nl) = head[from..].iter().rposition(|&b| b == b'\n') {
            let keep = from + nl + 1;
            dropped += (head.len() - keep) as u64;
            head.truncate(keep);
        }
        let to = tail.len().min(LINE_SEARCH);
        if let Some(nl) = tail[..to].iter().position(|&b| b == b'\n') {
            dropped += (nl + 1) as u64;
            tail.drain(..=nl);
        }
        let mut text = String::from_utf8_lossy(&head).into_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&omission_marker(dropped));
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&tail));
        Captured {
            text,
            omitted: dropped,
        }
    }
}

/// The line that stands where output was left out.
pub fn omission_marker(bytes: u64) -> String {
    format!(
        "[labrun: {} of output left out here; a command's result keeps the first {} and the last {} of each stream]",
        size(bytes),
        size(HEAD_BYTES as u64),
        size(TAIL_BYTES as u64)
    )
}

/// `512 bytes`, `3.5 KiB`, `4 MiB`, `381.5 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

/// Splits a byte stream into lines (on `\n` or `\r`) for the live display,
/// each at most [`LINE_BYTES`] long (a longer one is shown cut, saying how
/// much of it was left out).
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// Bytes of the current line beyond [`LINE_BYTES`].
    over: u64,
}

impl Lines {
    pub fn feed(&mut self, data: &[u8], mut emit: impl FnMut(&str)) {
        for &b in data {
            if b == b'\n' || b == b'\r' {
                self.flush(&mut emit);
            } else if self.partial.len() < LINE_BYTES {
                self.partial.push(b);
            } else {
                self.over += 1;
            }
        }
    }

    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        self.flush(&mut emit);
    }

    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        if self.partial.is_empty() {
            return;
        }
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if self.over > 0 {
            line.push_str(&format!(
                " [labrun: {} more of this line left out]",
                size(self.over)
            ));
        }
        emit(&line);
        self.partial.clear();
        self.over = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Capture::with_limits(8, 8);
        c.push(b"hello ");
        c.push(b"world\n");
        assert_eq!(
            c.finish(),
            Captured {
                text: "hello world\n".into(),
                omitted: 0
            }
        );
        let mut c = Capture::with_limits(4, 4);
        c.push(b"12345678");
        assert_eq!(c.finish().text, "12345678", "exactly head + tail");
    }

    #[test]
    fn large_output_keeps_whole_lines_of_head_and_tail() {
        let mut c = Capture::with_limits(16, 20);
        let mut all = String::new();
        for i in 0..1000 {
            let line = format!("line {i}\n");
            all.push_str(&line);
            c.push(line.as_bytes());
        }
        let out = c.finish();
        let lines: Vec<&str> = out.text.lines().collect();
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[1], "line 1");
        assert!(lines[2].starts_with("[labrun: "), "{}", out.text);
        assert!(lines[2].contains("of output left out here"), "{}", out.text);
        assert_eq!(&lines[3..], ["line 998", "line 999"]);
        let kept = "line 0\nline 1\nline 998\nline 999\n".len() as u64;
        assert_eq!(out.omitted, all.len() as u64 - kept);
    }

    #[test]
    fn output_without_line_breaks_is_cut_where_the_limits_are() {
        let mut c = Capture::with_limits(4, 4);
        for _ in 0..1000 {
            c.push(&[0u8; 1000]);
        }
        c.push(b"end!");
        let out = c.finish();
        assert_eq!(out.omitted, 1_000_004 - 8);
        assert!(
            out.text
                .starts_with("\0\0\0\0\n[labrun: 976.6 KiB of output")
        );
        assert!(out.text.ends_with("]\nend!"), "{:?}", out.text);
        // One push larger than the whole tail.
        let mut c = Capture::with_limits(2, 3);
        c.push(b"abcdefghij");
        let out = c.finish();
        assert_eq!(out.omitted, 5);
        assert!(out.text.starts_with("ab\n[labrun: 5 bytes"));
        assert!(out.text.ends_with("\nhij"));
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(5), "5 bytes");
        assert_eq!(size(4 << 20), "4 MiB");
        assert_eq!(size(400_000_000), "381.5 MiB");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn lines_split_on_newlines_and_carriage_returns() {
        let mut l = Lines::default();
        let mut seen = Vec::new();
        l.feed(b"a\nb", |s| seen.push(s.to_string()));
        l.feed(b"c\r50%\r\n", |s| seen.push(s.to_string()));
        l.feed(b"tail", |s| seen.push(s.to_string()));
        l.finish(|s| seen.push(s.to_string()));
        assert_eq!(seen, ["a", "bc", "50%", "tail"]);
    }

    #[test]
    fn a_line_without_end_is_shown_cut() {
        let mut l = Lines::default();
        let mut seen = Vec::new();
        for _ in 0..100 {
            l.feed(&[b'x'; 1000], |s| seen.push(s.to_string()));
        }
        l.feed(b"\nnext\n", |s| seen.push(s.to_string()));
        assert_eq!(seen.len(), 2);
        assert!(seen[0].starts_with(&"x".repeat(LINE_BYTES)));
        assert!(seen[0].ends_with(" [labrun: 93.7 KiB more of this line left out]"));
        assert_eq!(seen[1], "next");
    }
}
