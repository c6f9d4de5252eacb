//! What a waiting caller gets, and the end of an execution. A Response step's answer is
//! settled for a caller that waits (else it is only recorded); an execution that ends
//! before any Response step answered gives a waiting caller the "ended" answer at once —
//! 500 with the failing step when it failed, 409 `execution_cancelled` when it was cancelled,
//! 200 when it succeeded without answering —
//! instead of making it wait for 542; the deadline gives 542. Whatever is settled first is
//! what the caller gets (the interpreter settles first-writer-wins).

use serde_json::json;

use super::{Answer, Effect, State};
use crate::record::{ExecutionError, ExecutionStatus, HttpResponse};

/// A Response step rendered `answer`.
pub(super) fn answered(state: &State<'_>, answer: HttpResponse) -> Vec<Effect> {
    if state.caller_waits { vec![Effect::Respond(Answer::Step(answer))] } else { Vec::new() }
}

/// The caller's deadline passed.
pub(super) fn deadline(state: &State<'_>) -> Vec<Effect> {
    if state.caller_waits && !state.status.is_ended() { vec![Effect::Respond(Answer::TimedOut)] } else { Vec::new() }
}

/// End the execution with `status`; a waiting caller is answered at once.
pub(super) fn finish(state: &State<'_>, status: ExecutionStatus, error: Option<ExecutionError>) -> Vec<Effect> {
    if state.status.is_ended() {
        return Vec::new();
    }
    let mut effects = Vec::with_capacity(2);
    let answer = state.caller_waits.then(|| ended_answer(state.execution_id, status, error.as_ref()));
    effects.push(Effect::Finish { status, error });
    if let Some(answer) = answer {
        effects.push(Effect::Respond(Answer::Ended(answer)));
    }
    effects
}

/// What a waiting caller gets when the execution ends before any Response step answered.
pub fn ended_answer(execution_id: &str, status: ExecutionStatus, error: Option<&ExecutionError>) -> HttpResponse {
    let body = match (status, error) {
        (ExecutionStatus::Failed, Some(error)) => json!({ "error": {
            "code": "workflow_failed",
            "message": match &error.step {
                Some(step) => format!("step `{step}` failed: {}", error.message),
                None => error.message.clone(),
            },
            "executionId": execution_id,
            "step": error.step,
        }}),
        (ExecutionStatus::Cancelled, _) => json!({ "error": {
            "code": "execution_cancelled",
            "message": "The execution was cancelled before it answered.",
            "executionId": execution_id,
        }}),
        _ => json!({
            "message": "The workflow finished without reaching a Response step.",
            "executionId": execution_id,
        }),
    };
    let status = match status {
        ExecutionStatus::Failed => 500,
        ExecutionStatus::Cancelled => 409,
        _ => 200,
    };
    HttpResponse { status, headers: Default::default(), body, file: None }
}
