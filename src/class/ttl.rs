//! A class's time to live: how long after it was first brought up it may
//! be removed by `labrun class down --expired` (a cron job's way of making
//! sure a forgotten class on AWS stops costing money). Written `90m`,
//! `4h`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses `4h`, `90m`, `1h30m`, `2d`, `45s`: numbers each followed by a
/// unit (s, m, h, d), at least one minute, at most 30 days.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("--ttl '{text}': {why}; write a duration such as 90m, 4h, 1h30m or 2d");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad(&format!("'{c}' is not a unit (s, m, h or d)"))),
        };
        if digits.is_empty() {
            return Err(bad(&format!("'{c}' has no number before it")));
        }
        let n: u64 = digits.parse().map_err(|_| bad("it is too long"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("it is too long"))?;
    }
    if !digits.is_empty() {
        return Err(bad(&format!("'{digits}' has no unit")));
    }
    if total < 60 {
        return Err(bad("it is shorter than a minute"));
    }
    if total > 30 * 86400 {
        return Err(bad("it is longer than 30 days"));
    }
    Ok(Duration::from_secs(total))
}

/// `4h`, `1h30m`, `2d3h`, `45s`: the largest two units.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, secs) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    let parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")];
    let first = parts.iter().position(|(n, _)| *n > 0);
    match first {
        None => "0s".into(),
        Some(i) => parts[i..]
            .iter()
            .take(2)
            .filter(|(n, _)| *n > 0)
            .map(|(n, u)| format!("{n}{u}"))
            .collect(),
    }
}

/// What is left of a TTL that ends at `expires_at` (Unix seconds) at `now`:
/// `3h12m left`, or `expired 20m ago`.
pub fn left(expires_at: u64, now: u64) -> String {
    if now >= expires_at {
        format!(
            "expired {} ago",
            format(Duration::from_secs(now - expires_at))
        )
    } else {
        format!("{} left", format(Duration::from_secs(expires_at - now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let secs = |t: &str| parse(t).unwrap().as_secs();
        assert_eq!(secs("4h"), 4 * 3600);
        assert_eq!(secs("90m"), 90 * 60);
        assert_eq!(secs("1h30m"), 90 * 60);
        assert_eq!(secs("2d"), 2 * 86400);
        assert_eq!(secs(" 60s "), 60);
        assert_eq!(secs("1d1h1m1s"), 86400 + 3600 + 61);
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "it is empty"),
            ("4", "'4' has no unit"),
            ("h", "'h' has no number before it"),
            ("4 h", "' ' is not a unit"),
            ("4w", "'w' is not a unit"),
            ("-1h", "'-' is not a unit"),
            ("30s", "shorter than a minute"),
            ("31d", "longer than 30 days"),
            ("99999999999999999999h", "too long"),
            ("9999999999999999d", "too long"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(&format!("--ttl '{text}': ")), "{e}");
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn durations_read_back() {
        assert_eq!(format(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(format(Duration::from_secs(90 * 60)), "1h30m");
        assert_eq!(format(Duration::from_secs(86400 + 3 * 3600 + 59)), "1d3h");
        assert_eq!(format(Duration::from_secs(45)), "45s");
        assert_eq!(format(Duration::from_secs(3600 + 5)), "1h");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(left(10_000, 10_000 - 3720), "1h2m left");
        assert_eq!(left(1000, 1000 + 1200), "expired 20m ago");
    }
}
