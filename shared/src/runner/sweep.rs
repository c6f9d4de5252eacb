//! The recovery sweep's decision for one execution: is anything of it still due, or has
//! nothing been due for longer than the sweep's bound (then it is resumed)? Used where the
//! backend cannot tell whether a message still exists for an execution (SQS cannot be
//! searched); the SQLite sweep asks its queue table instead.

use std::time::Duration;

use super::{RunError, Runner};
use crate::engine::{Outcome, Signal, StepKey};
use crate::model::{StepKind, Workflow};
use crate::ports::MAX_QUEUE_DELAY;
use crate::record::{Execution, StepAttempt, StepStatus, Timestamp, now};
use crate::steps;

/// What the sweep found of one execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Swept {
    /// It has ended, or does not exist: nothing to do.
    Ended,
    /// Something of it was due at this time, not long enough ago to call it stuck: look
    /// again once `due + quiet_for` has passed.
    Due(Timestamp),
    /// Nothing of it was due for longer than the bound: it was resumed from its last
    /// recorded step (or failed with the reason, if it could not be).
    Resumed,
}

impl Runner {
    /// Looks at `execution_id` for the recovery sweep. The latest time something of it was
    /// due is the latest of its start, its response deadline, the end of every recorded
    /// attempt (a failed one: plus the longest retry delay, [`MAX_QUEUE_DELAY`]) and every
    /// recorded Delay's wake. If that is more than `quiet_for` ago, no message can still be
    /// moving it — provided `quiet_for` exceeds the longest a message lives without a
    /// recorded step (on SQS: visibility timeout × receives before the dead-letter queue) —
    /// and it is resumed.
    pub async fn sweep(&self, execution_id: &str, quiet_for: Duration) -> Result<Swept, RunError> {
        let Some(execution) = self.runtime.store.get_execution(execution_id).await? else { return Ok(Swept::Ended) };
        if execution.status.is_ended() {
            return Ok(Swept::Ended);
        }
        let attempts = self.runtime.store.list_steps(execution_id).await?;
        // Without its workflow nothing can move it (resume fails it with the reason).
        let deployment = self.deployment(&execution).await.ok();
        let due = last_due(&execution, &attempts, deployment.as_ref().map(|d| &d.workflow));
        let quiet = chrono::Duration::from_std(quiet_for).unwrap_or(chrono::Duration::MAX);
        if due.checked_add_signed(quiet).is_some_and(|stuck_at| now() < stuck_at) {
            return Ok(Swept::Due(due));
        }
        self.resume(execution_id).await?;
        Ok(Swept::Resumed)
    }
}

/// The latest time something of `execution` was due, from its `attempts` (Delays' wakes are
/// read through `workflow`).
fn last_due(execution: &Execution, attempts: &[StepAttempt], workflow: Option<&Workflow>) -> Timestamp {
    let retry_window = chrono::Duration::from_std(MAX_QUEUE_DELAY).unwrap_or(chrono::Duration::MAX);
    let mut due = execution.started_at;
    if let Some(deadline) = execution.response_deadline {
        due = due.max(deadline);
    }
    for attempt in attempts {
        let ended = match attempt.status {
            StepStatus::Failed => attempt.ended_at.checked_add_signed(retry_window).unwrap_or(attempt.ended_at),
            _ => attempt.ended_at,
        };
        due = due.max(ended);
        let Ok(key) = attempt.step.parse::<StepKey>() else { continue };
        if let Some(step) = workflow.and_then(|workflow| workflow.find_step(&key.step))
            && matches!(step.kind, StepKind::Delay(_))
            && let Ok(Outcome::Succeeded { signal: Signal::WaitUntil(until), .. }) = steps::outcome_of(step, attempt)
        {
            due = due.max(until);
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::load;
    use crate::record::{StepError, TriggerData};

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    fn attempt(step: &str, status: StepStatus, ended: i64, output: Option<serde_json::Value>) -> StepAttempt {
        StepAttempt {
            step: step.into(),
            attempt: 1,
            status,
            input: json!({}),
            error: (status == StepStatus::Failed).then(|| StepError::retryable("boom")),
            output,
            started_at: at(ended),
            ended_at: at(ended),
            logs: Vec::new(),
        }
    }

    #[test]
    fn what_was_last_due_counts_retries_delays_and_the_deadline() {
        let workflow = load::load_str(
            "w.yaml",
            "id: w\ntrigger: { type: request }\nsteps:\n  - { id: a, type: function, code: \"() => 1\" }\n  - { id: nap, type: delay, for: 2h }\n",
        )
        .expect("valid");
        let execution = Execution {
            id: "e".into(),
            project_id: "p".into(),
            workflow_id: "w".into(),
            workflow_version: 1,
            user_id: "u".into(),
            status: crate::record::ExecutionStatus::Running,
            started_at: at(0),
            ended_at: None,
            trigger: TriggerData::default(),
            response_deadline: None,
            error: None,
            test: false,
            ..Default::default()
        };
        assert_eq!(last_due(&execution, &[], Some(&workflow)), at(0));
        let with_deadline = Execution { response_deadline: Some(at(55)), ..execution.clone() };
        assert_eq!(last_due(&with_deadline, &[], Some(&workflow)), at(55));
        // A failed attempt may be retried up to the longest retry delay later.
        let failed = [attempt("a", StepStatus::Failed, 10, None)];
        assert_eq!(last_due(&execution, &failed, Some(&workflow)), at(10 + 900));
        let succeeded = [attempt("a", StepStatus::Succeeded, 10, Some(json!(1)))];
        assert_eq!(last_due(&execution, &succeeded, Some(&workflow)), at(10));
        // A Delay is due at its wake, read only for Delay steps.
        let wake = at(7200).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let napping = [attempt("nap", StepStatus::Succeeded, 20, Some(json!({ "waitedUntil": wake })))];
        assert_eq!(last_due(&execution, &napping, Some(&workflow)), at(7200));
        let lookalike = [attempt("a", StepStatus::Succeeded, 20, Some(json!({ "waitedUntil": wake })))];
        assert_eq!(last_due(&execution, &lookalike, Some(&workflow)), at(20), "a Function's output is not a wake");
    }
}
