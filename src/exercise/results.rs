//! What a check run found: per task a status, points, a message and the
//! next hint; rendered for people, as one JSON object, and as JUnit XML.
//! Rendering never sees secrets: the caller passes everything through the
//! redactor on the way out (stdout, the JUnit file).

use std::time::Duration;

use serde::Serialize;

/// How one task's check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Passed,
    /// The learner's work is not there (yet), fully or partly.
    Failed,
    /// The check itself broke (it threw); not the learner's doing.
    Error,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Passed => "passed",
            TaskStatus::Failed => "failed",
            TaskStatus::Error => "error",
        }
    }
}

/// Points as JSON shows them: `2`, not `2.0`; fractions to two decimals.
fn points_json<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    let r = round2(*v);
    if r.fract() == 0.0 {
        s.serialize_i64(r as i64)
    } else {
        s.serialize_f64(r)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `2`, `1.5`, `0.33`.
pub fn points_text(v: f64) -> String {
    let r = round2(v);
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskResult {
    pub id: String,
    pub title: String,
    pub status: TaskStatus,
    #[serde(serialize_with = "points_json")]
    pub points: f64,
    #[serde(serialize_with = "points_json")]
    pub max_points: f64,
    /// Why it failed, or what broke; a passed task may say something too.
    pub message: Option<String>,
    pub hint: Option<String>,
    /// Partial credit (0 < fraction < 1), for the human label.
    #[serde(skip)]
    pub partial: bool,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// One check run: the object `--output json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    pub exercise: String,
    pub version: String,
    pub learner: Option<String>,
    #[serde(serialize_with = "points_json")]
    pub score: f64,
    #[serde(serialize_with = "points_json")]
    pub max_score: f64,
    pub tasks: Vec<TaskResult>,
}

impl CheckReport {
    pub fn new(
        exercise: &str,
        version: &str,
        learner: Option<&str>,
        tasks: Vec<TaskResult>,
    ) -> Self {
        CheckReport {
            exercise: exercise.into(),
            version: version.into(),
            learner: learner.map(String::from),
            score: round2(tasks.iter().map(|t| t.points).sum()),
            max_score: tasks.iter().map(|t| t.max_points).sum(),
            tasks,
        }
    }

    pub fn all_passed(&self) -> bool {
        self.tasks.iter().all(|t| t.status == TaskStatus::Passed)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The lines a person reads: one per task (and its message and hint
    /// below it), then the score.
    pub fn human(&self) -> Vec<String> {
        let id_width = self.tasks.iter().map(|t| t.id.len()).max().unwrap_or(0);
        let mut lines = Vec::new();
        for t in &self.tasks {
            let label = match t.status {
                TaskStatus::Passed => "passed",
                TaskStatus::Failed if t.partial => "partial",
                TaskStatus::Failed => "FAILED",
                TaskStatus::Error => "ERROR",
            };
            lines.push(format!(
                "{label:<8}{:<id_width$}  {:>5}  {}",
                t.id,
                format!("{}/{}", points_text(t.points), points_text(t.max_points)),
                t.title
            ));
            let pad = " ".repeat(8);
            if let Some(m) = &t.message {
                let m = m.replace('\n', &format!("\n{pad}  "));
                lines.push(format!("{pad}{m}"));
            }
            if let Some(h) = &t.hint {
                lines.push(format!("{pad}hint: {h}"));
            }
        }
        let passed = self
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Passed)
            .count();
        lines.push(format!(
            "score: {}/{} ({passed} of {} tasks passed)",
            points_text(self.score),
            points_text(self.max_score),
            self.tasks.len()
        ));
        lines
    }

    /// JUnit XML: one testsuite, one testcase per task; a failed task is a
    /// `<failure>`, a broken check an `<error>`.
    pub fn junit(&self) -> String {
        let failures = self
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .count();
        let errors = self
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Error)
            .count();
        let time: f64 = self.tasks.iter().map(|t| t.elapsed.as_secs_f64()).sum();
        let suite = match &self.learner {
            Some(l) => format!("{} ({l})", self.exercise),
            None => self.exercise.clone(),
        };
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str(&format!(
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n",
            xml(&suite),
            self.tasks.len()
        ));
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">\n",
            xml(&suite),
            self.tasks.len()
        ));
        x.push_str("    <properties>\n");
        let mut props = vec![
            ("exercise", self.exercise.clone()),
            ("version", self.version.clone()),
            ("score", points_text(self.score)),
            ("max_score", points_text(self.max_score)),
        ];
        if let Some(l) = &self.learner {
            props.push(("learner", l.clone()));
        }
        for (k, v) in props {
            x.push_str(&format!(
                "      <property name=\"{k}\" value=\"{}\"/>\n",
                xml(&v)
            ));
        }
        x.push_str("    </properties>\n");
        for t in &self.tasks {
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(&self.exercise),
                xml(&format!("{}: {}", t.id, t.title)),
                t.elapsed.as_secs_f64()
            );
            let body = {
                let mut b = format!(
                    "points {}/{}",
                    points_text(t.points),
                    points_text(t.max_points)
                );
                if let Some(h) = &t.hint {
                    b.push_str(&format!("\nhint: {h}"));
                }
                b
            };
            let message = t.message.clone().unwrap_or_default();
            match t.status {
                TaskStatus::Passed => x.push_str(&format!("{open}/>\n")),
                TaskStatus::Failed => x.push_str(&format!(
                    "{open}>\n      <failure message=\"{}\" type=\"failed\">{}</failure>\n    </testcase>\n",
                    xml(&message),
                    xml(&body)
                )),
                TaskStatus::Error => x.push_str(&format!(
                    "{open}>\n      <error message=\"{}\" type=\"error\">{}</error>\n    </testcase>\n",
                    xml(&message),
                    xml(&body)
                )),
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// Escapes text for XML attributes and content; drops characters XML 1.0
/// cannot carry at all.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, status: TaskStatus, points: f64, max: f64) -> TaskResult {
        TaskResult {
            id: id.into(),
            title: format!("title of {id}"),
            status,
            points,
            max_points: max,
            message: (status != TaskStatus::Passed).then(|| format!("<{id}> & \"why\"")),
            hint: (status != TaskStatus::Passed).then(|| "try 'this'".to_string()),
            partial: points > 0.0 && points < max,
            elapsed: Duration::from_millis(250),
        }
    }

    fn report() -> CheckReport {
        CheckReport::new(
            "ex",
            "1.0",
            Some("alice"),
            vec![
                task("a", TaskStatus::Passed, 2.0, 2.0),
                task("b", TaskStatus::Failed, 1.5, 3.0),
                task("c", TaskStatus::Error, 0.0, 1.0),
            ],
        )
    }

    #[test]
    fn json_has_exactly_the_documented_shape() {
        let text = report().to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        // (serde_json's map sorts keys.)
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "exercise",
                "learner",
                "max_score",
                "score",
                "tasks",
                "version"
            ]
        );
        assert!(text.find("\"exercise\"").unwrap() < text.find("\"tasks\"").unwrap());
        assert_eq!(v["score"], serde_json::json!(3.5));
        assert_eq!(v["max_score"], serde_json::json!(6));
        let t = &v["tasks"][1];
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "hint",
                "id",
                "max_points",
                "message",
                "points",
                "status",
                "title"
            ]
        );
        assert_eq!(t["status"], "failed");
        assert_eq!(t["points"], serde_json::json!(1.5));
        assert_eq!(v["tasks"][0]["points"], serde_json::json!(2));
        assert_eq!(v["tasks"][0]["message"], serde_json::Value::Null);
        assert_eq!(v["tasks"][2]["status"], "error");
    }

    #[test]
    fn human_lines_show_status_points_message_hint_and_score() {
        let lines = report().human();
        assert!(
            lines[0].starts_with("passed  a") && lines[0].contains("2/2"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("partial b") && lines[1].contains("1.5/3"),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.trim() == "hint: try 'this'"));
        assert!(lines.iter().any(|l| l.starts_with("ERROR   c")));
        assert_eq!(lines.last().unwrap(), "score: 3.5/6 (1 of 3 tasks passed)");
    }

    #[test]
    fn junit_is_well_formed_with_one_testcase_per_task() {
        let x = report().junit();
        let doc = roxmltree::Document::parse(&x).unwrap();
        let root = doc.root_element();
        assert!(root.has_tag_name("testsuites"));
        let suite = root
            .children()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("3"));
        assert_eq!(suite.attribute("failures"), Some("1"));
        assert_eq!(suite.attribute("errors"), Some("1"));
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 3);
        let failure = cases[1]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(failure.attribute("message"), Some("<b> & \"why\""));
        assert!(failure.text().unwrap().contains("hint: try 'this'"));
        assert!(cases[2].children().any(|n| n.has_tag_name("error")));
        assert!(cases[0].children().all(|n| !n.is_element()));
    }

    #[test]
    fn xml_escapes_and_drops_control_characters() {
        assert_eq!(xml("a<b>&\"c'\n\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;&#10;");
    }
}
