//! The gradebook as one HTML page an instructor opens in a browser: a
//! learners × tasks grid, each cell passed, failed (partial credit shown)
//! or error, the check's message on hover (the cell's `title`), the score
//! per learner. Self-contained: inline CSS, no script, no external asset,
//! so it opens from a file or an e-mail attachment the same. Every value
//! that comes from outside (names, messages, titles) is escaped.

use super::gradebook::Gradebook;
use crate::exercise::results::points_text;

/// `text` safe inside HTML text and inside a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .35em .6em; text-align: center; }
thead th { background: #f3f3f3; vertical-align: bottom; }
thead th small { display: block; font-weight: normal; color: #666; }
tbody th { text-align: left; white-space: nowrap; }
td.name { text-align: left; }
td.passed { background: #d9f2d9; }
td.failed { background: #f8d7d7; }
td.failed.partial { background: #fcebc9; }
td.error { background: #e4dcf0; font-style: italic; }
td.score { font-weight: bold; }
td[title] { cursor: help; }
ul.legend { list-style: none; padding: 0; display: flex; gap: 1em; }
ul.legend li span { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin-right: .3em; border: 1px solid #ccc; }
";

/// The page.
pub fn page(book: &Gradebook) -> String {
    let max = points_text(book.max_score());
    let (graded, errors) = book.counts();
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>Gradebook: class {} ({})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&book.class),
        escape(&book.exercise)
    ));
    h.push_str(&format!(
        "<h1>Class {}: {}</h1>\n",
        escape(&book.class),
        escape(&book.exercise_title)
    ));
    h.push_str(&format!(
        "<p class=\"meta\">Exercise {} {}, graded {}: {graded} learner{} graded{}, {} point{} in all. \
         Hover over a cell for what the check said.</p>\n",
        escape(&book.exercise),
        escape(&book.version),
        utc(book.graded_at),
        if graded == 1 { "" } else { "s" },
        if errors > 0 {
            format!(", {errors} could not be graded")
        } else {
            String::new()
        },
        max,
        if max == "1" { "" } else { "s" },
    ));
    h.push_str(
        "<ul class=\"legend\"><li><span style=\"background:#d9f2d9\"></span>passed</li>\
         <li><span style=\"background:#fcebc9\"></span>partial credit</li>\
         <li><span style=\"background:#f8d7d7\"></span>failed</li>\
         <li><span style=\"background:#e4dcf0\"></span>error (not graded: see why)</li></ul>\n",
    );
    h.push_str("<table id=\"gradebook\">\n<thead>\n<tr><th scope=\"col\">Learner</th><th scope=\"col\">Name</th>");
    for c in &book.columns {
        h.push_str(&format!(
            "<th scope=\"col\" data-task=\"{}\" title=\"{}\">{}<small>{} pt{}</small></th>",
            escape(&c.id),
            escape(&c.title),
            escape(&c.id),
            points_text(c.max_points),
            if c.max_points == 1.0 { "" } else { "s" }
        ));
    }
    h.push_str(&format!(
        "<th scope=\"col\">Score<small>of {max}</small></th></tr>\n</thead>\n<tbody>\n"
    ));
    for row in &book.rows {
        h.push_str(&format!(
            "<tr data-learner=\"{}\"><th scope=\"row\" title=\"{}\">{}</th><td class=\"name\">{}</td>",
            escape(&row.member.id),
            escape(&format!("lab {}{}", row.lab, if row.member.email.is_empty() {
                String::new()
            } else {
                format!(", {}", row.member.email)
            })),
            escape(&row.member.id),
            escape(&row.member.name)
        ));
        for c in &book.columns {
            let cell = book.cell(row, c);
            let class = if cell.partial {
                "failed partial"
            } else {
                cell.status
            };
            let text = if cell.status == "error" {
                "error".to_string()
            } else {
                format!(
                    "{}/{}",
                    points_text(cell.points),
                    points_text(cell.max_points)
                )
            };
            let title = cell
                .message
                .as_deref()
                .map(|m| format!(" title=\"{}\"", escape(m)))
                .unwrap_or_default();
            h.push_str(&format!(
                "<td class=\"{class}\" data-task=\"{}\" data-status=\"{}\"{title}>{text}</td>",
                escape(&c.id),
                cell.status
            ));
        }
        match &row.result {
            Ok(r) => h.push_str(&format!(
                "<td class=\"score\" data-score=\"{}\">{}/{}</td></tr>\n",
                points_text(r.score),
                points_text(r.score),
                points_text(r.max_score)
            )),
            Err(why) => h.push_str(&format!(
                "<td class=\"score error\" data-score=\"error\" title=\"{}\">error</td></tr>\n",
                escape(why)
            )),
        }
    }
    h.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    h
}

/// Unix seconds as `2023-11-14 22:13 UTC`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn the_page_has_a_cell_per_learner_and_task_and_nothing_unescaped() {
        let book = super::super::gradebook::tests::sample();
        let page = page(&book);
        assert!(page.contains("<h1>Class c1: An &lt;exercise&gt; &amp; more</h1>"));
        assert!(
            page.contains(
                "<td class=\"failed partial\" data-task=\"two\" data-status=\"failed\" \
             title=\"still to do: &lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;\">2.25/3</td>"
            ),
            "{page}"
        );
        assert!(page.contains("<td class=\"name\">=cmd|&#39; /C calc&#39;!A0</td>"));
        assert!(
            page.contains("<td class=\"passed\" data-task=\"one\" data-status=\"passed\">2/2</td>")
        );
        assert!(
            page.contains(
                "data-status=\"error\" title=\"the check itself failed: boom\">error</td>"
            )
        );
        assert!(page.contains(
            "<td class=\"score error\" data-score=\"error\" title=\"lab &#39;c1.di&#39; has nothing left (destroyed?)\">error</td>"
        ));
        assert_eq!(page.matches("<tr data-learner=").count(), 4);
        assert_eq!(page.matches(" data-status=").count(), 8);
        assert!(!page.contains("<b>"), "a message's markup is escaped");
        assert!(!page.contains("http"), "no external asset");
        assert!(!page.contains("<script"), "no script");
    }
}
