//! The step runner: handles one step message. It runs the named step attempt unless it is
//! already recorded (a redelivery), records it first-writer-wins, asks the engine what comes
//! next and does it. Consecutive steps with no delay run inline in the same invocation (a
//! segment, bounded in steps and time); a delayed step (a retry, a Delay step's wait) goes
//! back to the queue, and fan-out branches go out as messages of their own.

mod context;
mod fan_out;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::engine::{self, Effect, Outcome};
use crate::messages::{ScopeEntry, StepMessage, step_key};
use crate::model::{Step, StepKind, Workflow};
use crate::ports::{Deployment, FirstWrite, MAX_QUEUE_DELAY, Outgoing, QueueError, QueueName, StoreError};
use crate::record::{
    Execution, ExecutionError, ExecutionStatus, HttpResponse, SettledResponse, StepAttempt, StepError, StepStatus,
    Timestamp, now,
};
use crate::runtime::Runtime;
use crate::steps;

pub use context::{base as test_context, referenced_steps, step_variables};

/// Deliveries of one message before it is given up on (matches the queues' redrive policy).
pub const MAX_RECEIVES: u32 = 5;
/// At most this many steps run inline in one invocation before the rest is enqueued.
const MAX_INLINE_STEPS: usize = 50;
/// Inline steps stop being started after this long, leaving room in the Lambda timeout.
const SEGMENT_BUDGET: Duration = Duration::from_secs(20);
/// A message due within this much is handled now rather than sent back to wait.
const EARLY_TOLERANCE: Duration = Duration::from_millis(50);

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
            // Neither comes right by delivering the message again: fail the execution at once.
            StoreError::Corrupt(_) | StoreError::TooLarge(_) => RunError::Poison(error.to_string()),
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
    versions: Arc<VersionCache>,
}

/// Deployed workflow versions already read: a version never changes once stored, so a warm
/// step runner reads and parses each one once instead of once per message.
#[derive(Default)]
struct VersionCache(Mutex<HashMap<(String, String, u32), Arc<Deployment>>>);

impl VersionCache {
    /// More versions than one runner plausibly serves at once; past it the cache starts over.
    const MAX_ENTRIES: usize = 256;

    fn get(&self, key: &(String, String, u32)) -> Option<Arc<Deployment>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }

    fn put(&self, key: (String, String, u32), deployment: Arc<Deployment>) {
        let mut versions = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if versions.len() >= Self::MAX_ENTRIES {
            versions.clear();
        }
        versions.insert(key, deployment);
    }
}

/// The step attempt being handled, where it runs, and its record once known.
struct Current {
    step: String,
    attempt: u32,
    scope: Vec<ScopeEntry>,
    record: Option<StepAttempt>,
}

impl Current {
    fn indexes(&self) -> Vec<u32> {
        self.scope.iter().map(|s| s.index).collect()
    }

    fn key(&self) -> String {
        step_key(&self.step, &self.indexes())
    }
}

impl Runner {
    pub fn new(runtime: Runtime) -> Self {
        Runner { runtime, versions: Arc::default() }
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

    /// The workflow version `execution` runs, from the cache or the store.
    async fn deployment(&self, execution: &Execution) -> Result<Arc<Deployment>, RunError> {
        let key = (execution.project_id.clone(), execution.workflow_id.clone(), execution.workflow_version);
        if let Some(deployment) = self.versions.get(&key) {
            return Ok(deployment);
        }
        let deployment = self
            .runtime
            .store
            .get_version(&key.0, &key.1, key.2)
            .await?
            .map(Arc::new)
            .ok_or_else(|| RunError::Poison(format!("workflow `{}` version {} is not stored", key.1, key.2)))?;
        self.versions.put(key, deployment.clone());
        Ok(deployment)
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
        if let Some(remaining) = message.not_before_ms.and_then(remaining_until) {
            // A Delay step's wait longer than one queue delay: wait again.
            return self.send_later(&execution, message.clone(), remaining).await;
        }
        if execution.status == ExecutionStatus::Waiting {
            store.set_execution_status(&execution.id, ExecutionStatus::Waiting, ExecutionStatus::Running).await?;
        }
        let deployment = self.deployment(&execution).await?;
        let workflow = &deployment.workflow;
        let mut current = Current {
            step: message.step.clone(),
            attempt: message.attempt,
            scope: message.scope.clone(),
            record: None,
        };
        let started = Instant::now();
        for inline in 0.. {
            let step = workflow
                .find_step(&current.step)
                .ok_or_else(|| RunError::Poison(format!("workflow has no step `{}`", current.step)))?;
            let record = match current.record.take() {
                Some(record) => record,
                None => match self.attempt_record(&execution, workflow, step, &current).await? {
                    Some(record) => record,
                    // A fan-out sent its branches out: the join continues from there.
                    None => return Ok(()),
                },
            };
            let outcome = match (record.status, &record.output, &record.error) {
                (StepStatus::Succeeded, output, _) => Outcome::Succeeded(output.clone().unwrap_or(Value::Null)),
                (StepStatus::Failed, _, Some(error)) => Outcome::Failed(error.clone()),
                (StepStatus::Failed, _, None) => Outcome::Failed(StepError::terminal("failed")),
            };
            let seed = engine::jitter_seed(&execution.id, &current.key(), current.attempt);
            let effect =
                engine::after_step(workflow, &current.step, &current.indexes(), current.attempt, &outcome, seed)
                    .map_err(|e| RunError::Poison(e.to_string()))?;
            let next = match effect {
                Effect::RunStep { step, attempt, delay, not_before, .. } => {
                    let wait =
                        delay.max(not_before.and_then(|t| remaining_until(t.timestamp_millis())).unwrap_or_default());
                    if wait.is_zero() && inline < MAX_INLINE_STEPS && started.elapsed() < SEGMENT_BUDGET {
                        Current { step, attempt, scope: current.scope, record: None }
                    } else {
                        let message = StepMessage {
                            execution_id: execution.id.clone(),
                            step,
                            attempt,
                            scope: current.scope,
                            not_before_ms: not_before.map(|t| t.timestamp_millis()),
                        };
                        return self.send_later(&execution, message, wait).await;
                    }
                }
                Effect::BranchDone { fan_out, index, result, .. } => {
                    match self.join(&execution, workflow, &fan_out, current.scope, index, result).await? {
                        Some(next) => next,
                        None => return Ok(()),
                    }
                }
                Effect::BranchFailed { fan_out, error, .. } => {
                    let mut outer = current.scope;
                    outer.pop();
                    let key = step_key(&fan_out, &outer.iter().map(|s| s.index).collect::<Vec<_>>());
                    let failed = failed_attempt(&key, error);
                    let record = self.record(&execution, failed).await?;
                    Current { step: fan_out, attempt: 1, scope: outer, record: Some(record) }
                }
                Effect::Finish { status, error } => return self.finish(&execution, status, error).await,
            };
            current = next;
        }
        Ok(())
    }

    /// The record of the current attempt: the one already recorded (a redelivery), or the
    /// result of running it now. None when the step is a fan-out that sent its branches.
    async fn attempt_record(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        step: &Step,
        current: &Current,
    ) -> Result<Option<StepAttempt>, RunError> {
        let key = current.key();
        if let Some(recorded) = self.runtime.store.get_step(&execution.id, &key, current.attempt).await? {
            return Ok(Some(recorded));
        }
        let ctx = context::for_step(&self.runtime, execution, workflow, step, &current.scope).await?;
        let mut record = match &step.kind {
            StepKind::FanOut(fan_out) => {
                match self.start_fan_out(execution, step, fan_out, &current.scope, &ctx).await? {
                    Some(record) => record,
                    None => return Ok(None),
                }
            }
            _ => steps::execute(&self.runtime, execution, step, &key, current.attempt, &ctx).await,
        };
        record.step = key;
        Ok(Some(self.record(execution, record).await?))
    }

    /// Records an attempt; if another delivery recorded it first, that record wins.
    async fn record(&self, execution: &Execution, record: StepAttempt) -> Result<StepAttempt, RunError> {
        Ok(match self.runtime.store.record_step(&execution.id, &record).await? {
            FirstWrite::Written => record,
            FirstWrite::Existing(earlier) => earlier,
        })
    }

    /// Sends `message` back to the queue to be handled after `wait` (at most one queue
    /// delay; the message comes back early and waits again for longer waits). A wait for a
    /// Delay step shows the execution as `waiting`.
    async fn send_later(&self, execution: &Execution, message: StepMessage, wait: Duration) -> Result<(), RunError> {
        if message.not_before_ms.is_some() && execution.status == ExecutionStatus::Running {
            let store = &self.runtime.store;
            store.set_execution_status(&execution.id, ExecutionStatus::Running, ExecutionStatus::Waiting).await?;
        }
        let outgoing = Outgoing { body: message.to_json(), delay: wait.min(MAX_QUEUE_DELAY) };
        self.runtime.queue.send(QueueName::Steps, outgoing).await?;
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

/// How long until `epoch_ms`, if that is later than now (beyond a small tolerance).
fn remaining_until(epoch_ms: i64) -> Option<Duration> {
    let remaining = epoch_ms.saturating_sub(now().timestamp_millis());
    let remaining = Duration::from_millis(u64::try_from(remaining).ok()?);
    (remaining > EARLY_TOLERANCE).then_some(remaining)
}

/// A failed attempt 1 of `key` with `error`, for steps that fail without running (fan-outs).
fn failed_attempt(key: &str, error: StepError) -> StepAttempt {
    let at: Timestamp = now();
    StepAttempt {
        step: key.to_string(),
        attempt: 1,
        status: StepStatus::Failed,
        input: Value::Null,
        output: None,
        error: Some(error),
        started_at: at,
        ended_at: at,
        logs: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load::load_str;

    fn deployment(version: u32) -> Arc<Deployment> {
        let workflow =
            load_str("w.yaml", "id: w\ntrigger: { type: request }\nsteps:\n  - { id: d, type: delay, for: 1s }\n")
                .expect("valid workflow");
        Arc::new(Deployment {
            project_id: "p".into(),
            workflow_id: "w".into(),
            version,
            workflow,
            deployed_at: chrono::Utc::now(),
        })
    }

    #[test]
    fn version_cache_keeps_versions_apart_and_starts_over_when_full() {
        let cache = VersionCache::default();
        let key = |version: u32| ("p".to_string(), "w".to_string(), version);
        cache.put(key(1), deployment(1));
        cache.put(key(2), deployment(2));
        assert_eq!(cache.get(&key(1)).map(|d| d.version), Some(1));
        assert_eq!(cache.get(&key(2)).map(|d| d.version), Some(2));
        assert!(cache.get(&("q".to_string(), "w".to_string(), 1)).is_none(), "another project's version");
        for version in 3..=VersionCache::MAX_ENTRIES as u32 + 1 {
            cache.put(key(version), deployment(version));
        }
        assert!(cache.get(&key(1)).is_none(), "a full cache starts over");
        assert!(cache.get(&key(VersionCache::MAX_ENTRIES as u32 + 1)).is_some());
    }
}
