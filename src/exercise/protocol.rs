//! The author's proof, `labrun exercise test`: setup, then every check must
//! fail (a check that passes before anything was done cannot fail, so it
//! proves nothing), then the solution, then every check must pass, then
//! the solution again must change nothing, and the checks still pass. This
//! file judges each phase's results; the command drives the lab.

use super::results::{TaskResult, TaskStatus};

/// When a check run happens in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    BeforeSolve,
    AfterSolve,
    AfterSecondSolve,
}

impl Phase {
    pub fn title(self) -> &'static str {
        match self {
            Phase::BeforeSolve => "checks before the solve (each must fail)",
            Phase::AfterSolve => "checks after the solve (each must pass)",
            Phase::AfterSecondSolve => "checks after the second solve (each must still pass)",
        }
    }
}

/// A broken promise of the protocol, naming the task where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub task: Option<String>,
    pub message: String,
}

fn why(t: &TaskResult) -> String {
    t.message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// What went wrong in one phase's results.
pub fn judge(phase: Phase, results: &[TaskResult]) -> Vec<Violation> {
    results
        .iter()
        .filter_map(|t| {
            let message = match (phase, t.status) {
                (Phase::BeforeSolve, TaskStatus::Failed) => return None,
                (Phase::BeforeSolve, TaskStatus::Passed) => {
                    format!("check '{}' passed before the solve: it cannot fail", t.id)
                }
                (Phase::BeforeSolve, TaskStatus::Error) => format!(
                    "check '{}' broke before the solve (an error, not a failure: a check must fail \
                     with a message when the work is not done){}",
                    t.id,
                    why(t)
                ),
                (_, TaskStatus::Passed) => return None,
                (Phase::AfterSolve, _) => format!(
                    "check '{}' did not pass after the solve ({}){}",
                    t.id,
                    t.status.as_str(),
                    why(t)
                ),
                (Phase::AfterSecondSolve, _) => format!(
                    "check '{}' did not pass after the second solve ({}){}",
                    t.id,
                    t.status.as_str(),
                    why(t)
                ),
            };
            Some(Violation {
                task: Some(t.id.clone()),
                message,
            })
        })
        .collect()
}

/// The second solve must change nothing: `changed` names the solution
/// steps that did.
pub fn judge_converged(changed: &[String]) -> Option<Violation> {
    if changed.is_empty() {
        return None;
    }
    Some(Violation {
        task: (changed.len() == 1).then(|| changed[0].clone()),
        message: format!(
            "the solution is not idempotent: running it again changed {}",
            changed
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, status: TaskStatus) -> TaskResult {
        TaskResult {
            id: id.into(),
            title: id.into(),
            status,
            points: 0.0,
            max_points: 1.0,
            message: Some("m".into()),
            hint: None,
            partial: false,
            elapsed: Default::default(),
        }
    }

    #[test]
    fn before_the_solve_every_check_must_fail_not_pass_or_break() {
        let v = judge(
            Phase::BeforeSolve,
            &[
                t("a", TaskStatus::Failed),
                t("firewall", TaskStatus::Passed),
                t("c", TaskStatus::Error),
            ],
        );
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0].message,
            "check 'firewall' passed before the solve: it cannot fail"
        );
        assert_eq!(v[1].task.as_deref(), Some("c"));
        assert!(v[1].message.contains("broke before the solve"));
    }

    #[test]
    fn after_the_solve_every_check_must_pass() {
        let v = judge(
            Phase::AfterSolve,
            &[t("a", TaskStatus::Passed), t("b", TaskStatus::Failed)],
        );
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].message,
            "check 'b' did not pass after the solve (failed): m"
        );
        assert!(judge(Phase::AfterSecondSolve, &[t("a", TaskStatus::Passed)]).is_empty());
    }

    #[test]
    fn the_second_solve_must_change_nothing() {
        assert!(judge_converged(&[]).is_none());
        let v = judge_converged(&["bind-address".into()]).unwrap();
        assert_eq!(v.task.as_deref(), Some("bind-address"));
        assert!(v.message.contains("not idempotent"));
    }
}
