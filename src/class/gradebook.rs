//! A class's grades: every learner's check results side by side, written
//! into the class directory as CSV (one row per learner, one column per
//! task, then total and maximum), JSON (the result objects `labrun
//! exercise check --output json` prints, one per learner) and a
//! self-contained HTML page ([`super::html`]). A learner who could not be
//! graded (their lab is gone, say) is an error with the reason, never a
//! zero.

use serde_json::{Value, json};

use super::csv;
use super::roster::Member;
use crate::exercise::results::{CheckReport, TaskStatus, points_text};

/// A task as a gradebook column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub id: String,
    pub title: String,
    pub max_points: f64,
}

/// One learner's line of the gradebook.
#[derive(Clone, Debug)]
pub struct Row {
    pub member: Member,
    pub lab: String,
    /// Their results, or why they could not be graded.
    pub result: Result<CheckReport, String>,
}

/// What a grading run found.
#[derive(Clone, Debug)]
pub struct Gradebook {
    pub class: String,
    pub exercise: String,
    pub exercise_title: String,
    pub version: String,
    /// Unix seconds.
    pub graded_at: u64,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

/// One cell: how a learner did on a task.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// `passed`, `failed` or `error`, as in the result objects.
    pub status: &'static str,
    /// Part of the points of a failed task.
    pub partial: bool,
    pub points: f64,
    pub max_points: f64,
    /// What the check said (or why there is no result).
    pub message: Option<String>,
}

impl Gradebook {
    pub fn max_score(&self) -> f64 {
        self.columns.iter().map(|c| c.max_points).sum()
    }

    /// The cell of `row` for `column`.
    pub fn cell(&self, row: &Row, column: &Column) -> Cell {
        match &row.result {
            Err(why) => Cell {
                status: "error",
                partial: false,
                points: 0.0,
                max_points: column.max_points,
                message: Some(why.clone()),
            },
            Ok(report) => match report.tasks.iter().find(|t| t.id == column.id) {
                Some(t) => Cell {
                    status: t.status.as_str(),
                    partial: t.status == TaskStatus::Failed && t.points > 0.0,
                    points: t.points,
                    max_points: t.max_points,
                    message: t.message.clone(),
                },
                None => Cell {
                    status: "error",
                    partial: false,
                    points: 0.0,
                    max_points: column.max_points,
                    message: Some(format!(
                        "the checks did not report task '{}' for this learner",
                        column.id
                    )),
                },
            },
        }
    }

    /// How many learners were graded, and how many could not be.
    pub fn counts(&self) -> (usize, usize) {
        let graded = self.rows.iter().filter(|r| r.result.is_ok()).count();
        (graded, self.rows.len() - graded)
    }

    /// CSV: learner, name, email, lab, status (`graded` or `error`), the
    /// points of each task (`error` where the check broke or there is no
    /// result), total, maximum, and the reason a learner is an error.
    pub fn csv(&self) -> String {
        let mut header: Vec<String> = ["learner", "name", "email", "lab", "status"]
            .map(String::from)
            .to_vec();
        header.extend(self.columns.iter().map(|c| c.id.clone()));
        header.extend(["total", "max", "error"].map(String::from));
        let mut out = csv::row(&header);
        for row in &self.rows {
            let mut fields = vec![
                row.member.id.clone(),
                row.member.name.clone(),
                row.member.email.clone(),
                row.lab.clone(),
                if row.result.is_ok() {
                    "graded"
                } else {
                    "error"
                }
                .to_string(),
            ];
            for c in &self.columns {
                let cell = self.cell(row, c);
                fields.push(if cell.status == "error" {
                    "error".to_string()
                } else {
                    points_text(cell.points)
                });
            }
            match &row.result {
                Ok(r) => fields.extend([
                    points_text(r.score),
                    points_text(r.max_score),
                    String::new(),
                ]),
                Err(why) => {
                    fields.extend([String::new(), points_text(self.max_score()), why.clone()])
                }
            }
            out.push_str(&csv::row(&fields));
        }
        out
    }

    /// JSON: the class and its tasks, then one result object per learner,
    /// as `exercise check --output json` prints it, with the learner's
    /// lab, name and email; a learner who could not be graded has
    /// `"score": null`, `"error"` and every task `error` with the reason.
    pub fn json(&self) -> Value {
        let results: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut v = match &row.result {
                    Ok(report) => serde_json::to_value(report).expect("report serializes"),
                    Err(why) => json!({
                        "exercise": self.exercise,
                        "version": self.version,
                        "learner": row.member.id,
                        "score": null,
                        "max_score": json_points(self.max_score()),
                        "error": why,
                        "tasks": self.columns.iter().map(|c| json!({
                            "id": c.id, "title": c.title, "status": "error", "points": 0,
                            "max_points": json_points(c.max_points), "message": why, "hint": null,
                        })).collect::<Vec<_>>(),
                    }),
                };
                v["lab"] = json!(row.lab);
                v["name"] = json!(row.member.name);
                v["email"] = json!(row.member.email);
                v
            })
            .collect();
        json!({
            "class": self.class,
            "exercise": self.exercise,
            "title": self.exercise_title,
            "version": self.version,
            "graded_at": self.graded_at,
            "max_score": json_points(self.max_score()),
            "tasks": self.columns.iter().map(|c| json!({
                "id": c.id, "title": c.title, "max_points": json_points(c.max_points),
            })).collect::<Vec<_>>(),
            "results": results,
        })
    }

    /// The summary table a person reads: a line per learner with their
    /// score and what they passed, then the class's average.
    pub fn summary(&self) -> Vec<String> {
        let id_w = self
            .rows
            .iter()
            .map(|r| r.member.id.len())
            .chain(["LEARNER".len()])
            .max()
            .unwrap_or(0);
        let max = points_text(self.max_score());
        let mut lines = vec![format!(
            "{:<id_w$}  {:>9}  {:<7}  DETAIL",
            "LEARNER", "SCORE", "PASSED"
        )];
        let mut scores = Vec::new();
        for row in &self.rows {
            match &row.result {
                Ok(r) => {
                    scores.push(r.score);
                    let passed = r
                        .tasks
                        .iter()
                        .filter(|t| t.status == TaskStatus::Passed)
                        .count();
                    let to_do: Vec<&str> = r
                        .tasks
                        .iter()
                        .filter(|t| t.status == TaskStatus::Failed)
                        .map(|t| t.id.as_str())
                        .collect();
                    let errors = r
                        .tasks
                        .iter()
                        .filter(|t| t.status == TaskStatus::Error)
                        .count();
                    let broke = format!("{errors} check(s) broke (error)");
                    let detail = match (to_do.is_empty(), errors) {
                        (true, 0) => "all tasks passed".to_string(),
                        (true, _) => broke,
                        (false, 0) => format!("to do: {}", to_do.join(", ")),
                        (false, _) => format!("to do: {}; {broke}", to_do.join(", ")),
                    };
                    lines.push(format!(
                        "{:<id_w$}  {:>9}  {:<7}  {detail}",
                        row.member.id,
                        format!("{}/{max}", points_text(r.score)),
                        format!("{passed}/{}", r.tasks.len()),
                    ));
                }
                Err(why) => lines.push(format!(
                    "{:<id_w$}  {:>9}  {:<7}  {}",
                    row.member.id,
                    "ERROR",
                    "-",
                    why.lines().next().unwrap_or_default()
                )),
            }
        }
        let (graded, errors) = self.counts();
        let average = if scores.is_empty() {
            "-".to_string()
        } else {
            points_text(scores.iter().sum::<f64>() / scores.len() as f64)
        };
        lines.push(format!(
            "{graded} learner(s) graded, average {average}/{max}{}",
            if errors > 0 {
                format!("; {errors} could not be graded (ERROR)")
            } else {
                String::new()
            }
        ));
        lines
    }
}

/// Points as the result objects write them: `2`, not `2.0`.
fn json_points(v: f64) -> Value {
    let r = (v * 100.0).round() / 100.0;
    if r.fract() == 0.0 {
        json!(r as i64)
    } else {
        json!(r)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exercise::results::TaskResult;
    use std::time::Duration;

    fn task(
        id: &str,
        status: TaskStatus,
        points: f64,
        max: f64,
        message: Option<&str>,
    ) -> TaskResult {
        TaskResult {
            id: id.into(),
            title: format!("{id} title"),
            status,
            points,
            max_points: max,
            message: message.map(String::from),
            hint: None,
            partial: status == TaskStatus::Failed && points > 0.0,
            elapsed: Duration::ZERO,
        }
    }

    fn member(id: &str, name: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            email: format!("{id}@example.org"),
        }
    }

    pub(crate) fn sample() -> Gradebook {
        let report = |learner: &str, tasks: Vec<TaskResult>| {
            CheckReport::new("ex", "1.0", Some(learner), tasks)
        };
        Gradebook {
            class: "c1".into(),
            exercise: "ex".into(),
            exercise_title: "An <exercise> & more".into(),
            version: "1.0".into(),
            graded_at: 1_700_000_000,
            columns: vec![
                Column {
                    id: "one".into(),
                    title: "one title".into(),
                    max_points: 2.0,
                },
                Column {
                    id: "two".into(),
                    title: "two title".into(),
                    max_points: 3.0,
                },
            ],
            rows: vec![
                Row {
                    member: member("ana", "Silva, Ana"),
                    lab: "c1.ana".into(),
                    result: Ok(report(
                        "ana",
                        vec![
                            task("one", TaskStatus::Passed, 2.0, 2.0, None),
                            task("two", TaskStatus::Passed, 3.0, 3.0, None),
                        ],
                    )),
                },
                Row {
                    member: member("bo", "=cmd|' /C calc'!A0"),
                    lab: "c1.bo".into(),
                    result: Ok(report(
                        "bo",
                        vec![
                            task("one", TaskStatus::Passed, 2.0, 2.0, None),
                            task(
                                "two",
                                TaskStatus::Failed,
                                2.25,
                                3.0,
                                Some("still to do: <b>\"x\" & 'y'</b>"),
                            ),
                        ],
                    )),
                },
                Row {
                    member: member("cy", "Cy"),
                    lab: "c1.cy".into(),
                    result: Ok(report(
                        "cy",
                        vec![
                            task("one", TaskStatus::Failed, 0.0, 2.0, Some("no rule")),
                            task(
                                "two",
                                TaskStatus::Error,
                                0.0,
                                3.0,
                                Some("the check itself failed: boom"),
                            ),
                        ],
                    )),
                },
                Row {
                    member: member("di", "Di"),
                    lab: "c1.di".into(),
                    result: Err("lab 'c1.di' has nothing left (destroyed?)".into()),
                },
            ],
        }
    }

    #[test]
    fn csv_has_a_row_per_learner_a_column_per_task_and_errors_are_not_zero() {
        let text = sample().csv();
        let rows = csv::parse(&text).unwrap();
        let cells: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.fields.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            cells[0],
            [
                "learner", "name", "email", "lab", "status", "one", "two", "total", "max", "error"
            ]
        );
        assert_eq!(
            cells[1],
            [
                "ana",
                "Silva, Ana",
                "ana@example.org",
                "c1.ana",
                "graded",
                "2",
                "3",
                "5",
                "5",
                ""
            ]
        );
        assert_eq!(
            cells[2],
            [
                "bo",
                "'=cmd|' /C calc'!A0",
                "bo@example.org",
                "c1.bo",
                "graded",
                "2",
                "2.25",
                "4.25",
                "5",
                ""
            ]
        );
        assert_eq!(cells[3][5..9], ["0", "error", "0", "5"]);
        assert_eq!(
            cells[4],
            [
                "di",
                "Di",
                "di@example.org",
                "c1.di",
                "error",
                "error",
                "error",
                "",
                "5",
                "lab 'c1.di' has nothing left (destroyed?)"
            ]
        );
    }

    #[test]
    fn json_holds_the_result_objects_and_errors_with_their_reason() {
        let v = sample().json();
        assert_eq!(v["max_score"], 5);
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[1]["score"], 4.25);
        assert_eq!(results[1]["tasks"][1]["status"], "failed");
        assert_eq!(results[1]["tasks"][1]["points"], 2.25);
        assert_eq!(results[1]["lab"], "c1.bo");
        assert_eq!(results[3]["score"], Value::Null);
        assert_eq!(
            results[3]["error"],
            "lab 'c1.di' has nothing left (destroyed?)"
        );
        assert_eq!(results[3]["tasks"][0]["status"], "error");
        // The same shape as `exercise check --output json`.
        let check: Value = serde_json::from_str(
            &CheckReport::new(
                "ex",
                "1.0",
                Some("ana"),
                vec![task("one", TaskStatus::Passed, 2.0, 2.0, None)],
            )
            .to_json(),
        )
        .unwrap();
        for key in check.as_object().unwrap().keys() {
            assert!(results[0].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn the_summary_has_a_line_per_learner_and_the_average() {
        let lines = sample().summary();
        assert!(
            lines[1].starts_with("ana")
                && lines[1].contains("5/5")
                && lines[1].ends_with("all tasks passed"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("4.25/5") && lines[2].ends_with("to do: two"),
            "{lines:?}"
        );
        assert!(
            lines[3].contains("0/5") && lines[3].contains("1 check(s) broke"),
            "{lines:?}"
        );
        assert!(
            lines[4].contains("ERROR") && lines[4].ends_with("has nothing left (destroyed?)"),
            "{lines:?}"
        );
        assert_eq!(
            lines[5],
            "3 learner(s) graded, average 3.08/5; 1 could not be graded (ERROR)"
        );
    }
}
