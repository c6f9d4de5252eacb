//! The step runner: handles one step message. It runs the named step attempt unless it is
//! already recorded (a redelivery), records it first-writer-wins, asks the engine what comes
//! next and does it. Consecutive steps with no delay run inline in the same invocation (a
//! segment, bounded in steps and time); a delayed step (a retry) goes back to the queue.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::engine::{self, Effect, Outcome};
use crate::messages::StepMessage;
use crate::ports::{FirstWrite, Outgoing, QueueError, QueueName, StoreError};
use crate::record::{
    Execution, ExecutionError, ExecutionStatus, HttpResponse, SettledResponse, StepAttempt, StepStatus, now,
};
use crate::runtime::Runtime;
use crate::steps;

/// Deliveries of one message before it is given up on (matches the queues' redrive policy).
pub const MAX_RECEIVES: u32 = 5;
/// At most this many steps run inline in one invocation before the rest is enqueued.
const MAX_INLINE_STEPS: usize = 50;
/// Inline steps stop being started after this long, leaving room in the Lambda timeout.
const SEGMENT_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Worth delivering the message again (storage or queue trouble).
    #[error("{0}")]
    Retryable(String),
    /// The message can never be handled (malformed); delivering it again won't help.
    #[error("{0}")]
    Poison(String),
}

impl From<StoreError> for RunError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt(_) => RunError::Poison(error.to_string()),
            _ => RunError::Retryable(error.to_string()),
        }
    }
}

impl From<QueueError> for RunError {
    fn from(error: QueueError) -> Self {
        RunError::Retryable(error.to_string())
    }
}

#[derive(Clone)]
pub struct Runner {
    runtime: Runtime,
}

impl Runner {
    pub fn new(runtime: Runtime) -> Self {
        Runner { runtime }
    }

    /// Handles one message from the step queue. `receive_count` is how many times it has
    /// been delivered (SQS `ApproximateReceiveCount`). Ok means: delete the message. On the
    /// last delivery before the dead-letter queue, a failure also fails the execution, so
    /// no execution stays `running` forever.
    pub async fn handle(&self, body: &str, receive_count: u32) -> Result<(), RunError> {
        let message: StepMessage =
            serde_json::from_str(body).map_err(|e| RunError::Poison(format!("malformed step message: {e}")))?;
        let result = self.run(&message).await;
        if let Err(error) = &result {
            let final_delivery = matches!(error, RunError::Poison(_)) || receive_count >= MAX_RECEIVES;
            tracing::error!(execution = %message.execution_id, step = %message.step, receive_count, %error, "step message failed");
            if final_delivery {
                let reason = format!("internal error running step `{}`: {error}", message.step);
                if let Err(e) = self.give_up(&message, reason).await {
                    tracing::error!(execution = %message.execution_id, error = %e, "could not mark the execution failed");
                }
            }
        }
        result
    }

    async fn run(&self, message: &StepMessage) -> Result<(), RunError> {
        let store = &self.runtime.store;
        let Some(execution) = store.get_execution(&message.execution_id).await? else {
            return Err(RunError::Poison(format!("no execution `{}`", message.execution_id)));
        };
        if execution.status.is_ended() {
            tracing::debug!(execution = %execution.id, "execution already ended; message dropped");
            return Ok(());
        }
        let deployment = store
            .get_version(&execution.project_id, &execution.workflow_id, execution.workflow_version)
            .await?
            .ok_or_else(|| {
                RunError::Poison(format!(
                    "workflow `{}` version {} is not stored",
                    execution.workflow_id, execution.workflow_version
                ))
            })?;
        let workflow = &deployment.workflow;
        let mut attempts = store.list_steps(&execution.id).await?;
        let (mut step_id, mut attempt) = (message.step.clone(), message.attempt);
        let started = Instant::now();
        for inline in 0.. {
            let step = workflow
                .find_step(&step_id)
                .ok_or_else(|| RunError::Poison(format!("workflow has no step `{step_id}`")))?;
            let record = match attempts.iter().find(|a| a.step == step_id && a.attempt == attempt) {
                Some(recorded) => recorded.clone(),
                None => {
                    let ctx = context(&execution, &attempts);
                    let record = steps::execute(&self.runtime, &execution, step, attempt, &ctx).await;
                    let record = match store.record_step(&execution.id, &record).await? {
                        FirstWrite::Written => record,
                        FirstWrite::Existing(earlier) => earlier,
                    };
                    attempts.push(record.clone());
                    record
                }
            };
            let outcome = match (&record.status, &record.output, &record.error) {
                (StepStatus::Succeeded, output, _) => Outcome::Succeeded(output.clone().unwrap_or(Value::Null)),
                (StepStatus::Failed, _, Some(error)) => Outcome::Failed(error.clone()),
                (StepStatus::Failed, _, None) => Outcome::Failed(crate::record::StepError::terminal("failed")),
            };
            let effect = engine::after_step(workflow, &step_id, attempt, &outcome)
                .map_err(|e| RunError::Poison(e.to_string()))?;
            match effect {
                Effect::RunStep { step, attempt: next, delay }
                    if delay.is_zero() && inline < MAX_INLINE_STEPS && started.elapsed() < SEGMENT_BUDGET =>
                {
                    (step_id, attempt) = (step, next);
                }
                Effect::RunStep { step, attempt, delay } => {
                    let body = StepMessage { execution_id: execution.id.clone(), step, attempt }.to_json();
                    self.runtime.queue.send(QueueName::Steps, Outgoing { body, delay }).await?;
                    return Ok(());
                }
                Effect::Finish { status, error } => {
                    return self.finish(&execution, status, error).await;
                }
            }
        }
        Ok(())
    }

    /// Ends the execution; a caller still waiting for a Response step is answered at once.
    async fn finish(
        &self,
        execution: &Execution,
        status: ExecutionStatus,
        error: Option<ExecutionError>,
    ) -> Result<(), RunError> {
        let store = &self.runtime.store;
        store.finish_execution(&execution.id, status, error.as_ref(), now()).await?;
        if execution.response_deadline.is_some() {
            let response = ended_response(execution, status, error.as_ref());
            store.settle_response(&execution.id, &SettledResponse::WorkflowEnded { response, at: now() }).await?;
        }
        tracing::info!(execution = %execution.id, status = status.as_str(), "execution ended");
        Ok(())
    }

    async fn give_up(&self, message: &StepMessage, reason: String) -> Result<(), RunError> {
        let Some(execution) = self.runtime.store.get_execution(&message.execution_id).await? else {
            return Ok(());
        };
        if execution.status.is_ended() {
            return Ok(());
        }
        let error = ExecutionError { step: Some(message.step.clone()), message: reason };
        self.finish(&execution, ExecutionStatus::Failed, Some(error)).await
    }
}

/// What a waiting caller gets when the execution ends before any Response step ran.
fn ended_response(execution: &Execution, status: ExecutionStatus, error: Option<&ExecutionError>) -> HttpResponse {
    let body = match (status, error) {
        (ExecutionStatus::Failed, Some(error)) => json!({ "error": {
            "code": "workflow_failed",
            "message": match &error.step {
                Some(step) => format!("step `{step}` failed: {}", error.message),
                None => error.message.clone(),
            },
            "executionId": execution.id,
            "step": error.step,
        }}),
        _ => json!({
            "message": "The workflow finished without reaching a Response step.",
            "executionId": execution.id,
        }),
    };
    let status = if status == ExecutionStatus::Failed { 500 } else { 200 };
    HttpResponse { status, headers: Default::default(), body, file: None }
}

/// The dynamic variables a step sees: the trigger, earlier steps' outputs and errors (the
/// latest attempt of each), and the execution's context.
pub fn context(execution: &Execution, attempts: &[StepAttempt]) -> Value {
    let mut ordered: Vec<&StepAttempt> = attempts.iter().collect();
    ordered.sort_by_key(|a| a.attempt);
    let mut steps = Map::new();
    for attempt in ordered {
        let mut entry = Map::new();
        if let Some(output) = &attempt.output {
            entry.insert("output".into(), output.clone());
        }
        if let Some(error) = &attempt.error {
            entry.insert("error".into(), json!({ "message": error.message, "details": error.details }));
        }
        steps.insert(attempt.step.clone(), Value::Object(entry));
    }
    json!({
        "trigger": {
            "query": execution.trigger.query,
            "headers": execution.trigger.headers,
            "body": execution.trigger.body,
        },
        "steps": steps,
        "settings": {},
        "user": { "id": execution.user_id },
        "execution": { "id": execution.id },
        "workflow": { "id": execution.workflow_id },
    })
}
