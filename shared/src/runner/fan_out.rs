//! Fan-out: starting the branches and joining them. Each item's branch runs as messages of
//! its own, carrying the item. A completed branch is counted once (redeliveries change
//! nothing); the completion that brings the count to the number of items records the
//! fan-out's output — the branch results in input order — first-writer-wins, and the flow
//! continues below the fan-out. With `concurrency: c`, branches run in c lanes: branch i's
//! completion starts branch i + c, so at most c run at once and a lost start cannot happen
//! (a redelivered completion starts the same branch again, harmlessly).

use serde_json::{Value, json};

use super::{Current, RunError, Runner, failed_attempt};
use crate::messages::{ScopeEntry, StepMessage, step_key};
use crate::model::{FanOutStep, Step, StepKind, Workflow};
use crate::ports::{MAX_FAN_OUT_ITEMS, Outgoing, QueueName};
use crate::record::{Execution, StepAttempt, StepError, StepStatus, now};
use crate::steps::within_record_limit;
use crate::template;

/// The largest single item a branch carries in its messages.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;

impl Runner {
    /// Starts the branches of a fan-out: None when they were sent, or the fan-out's record
    /// when it ends at once (no items: `[]`; a bad `over`: a failure).
    pub(super) async fn start_fan_out(
        &self,
        execution: &Execution,
        step: &Step,
        fan_out: &FanOutStep,
        scope: &[ScopeEntry],
        ctx: &Value,
    ) -> Result<Option<StepAttempt>, RunError> {
        let indexes: Vec<u32> = scope.iter().map(|s| s.index).collect();
        let key = step_key(&step.id, &indexes);
        let items = match template::render(&fan_out.over, ctx) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                return Ok(Some(fail(&key, format!("`over` must give an array, got {}", template::kind(&other)))));
            }
            Err(error) => return Ok(Some(fail(&key, error.to_string()))),
        };
        if items.len() > MAX_FAN_OUT_ITEMS {
            let message = format!("`over` gave {} items; a fan-out takes at most {MAX_FAN_OUT_ITEMS}", items.len());
            return Ok(Some(fail(&key, message)));
        }
        if let Some((index, _)) = items.iter().enumerate().find(|(_, item)| json_size(item) > MAX_ITEM_BYTES) {
            let message = format!("item {index} is larger than the {MAX_ITEM_BYTES} bytes a fan-out item may have");
            return Ok(Some(fail(&key, message)));
        }
        let Some(first) = fan_out.steps.first() else {
            return Ok(Some(fail(&key, "the fan-out has no steps".into())));
        };
        if items.is_empty() {
            let at = now();
            return Ok(Some(StepAttempt {
                step: key,
                attempt: 1,
                status: StepStatus::Succeeded,
                input: json!({ "items": 0 }),
                output: Some(json!([])),
                error: None,
                started_at: at,
                ended_at: at,
                logs: Vec::new(),
            }));
        }
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let lanes = fan_out.concurrency.map_or(items.len(), |c| usize::try_from(c).unwrap_or(usize::MAX).max(1));
        if lanes < items.len() {
            self.runtime.store.put_fan_out_items(&execution.id, &key, &items).await?;
        }
        let messages: Vec<Outgoing> = items
            .into_iter()
            .take(lanes)
            .enumerate()
            .map(|(index, item)| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                branch_message(execution, &first.id, scope, ScopeEntry { index, total, item })
            })
            .collect();
        tracing::info!(execution = %execution.id, fan_out = %key, total, started = messages.len(), "fan-out started");
        self.runtime.queue.send_batch(QueueName::Steps, messages).await?;
        Ok(None)
    }

    /// Counts branch `index` of `fan_out` done; starts the next branch of its lane; when all
    /// are done, records the fan-out's output and returns it as the next thing to handle.
    pub(super) async fn join(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        fan_out_id: &str,
        mut scope: Vec<ScopeEntry>,
        index: u32,
        result: Value,
    ) -> Result<Option<Current>, RunError> {
        let branch = scope.pop().ok_or_else(|| RunError::Poison("a branch ended outside any fan-out".into()))?;
        let total = branch.total;
        let outer: Vec<u32> = scope.iter().map(|s| s.index).collect();
        let key = step_key(fan_out_id, &outer);
        let store = &self.runtime.store;
        let all_done = store.complete_branch(&execution.id, &key, index, total, &result).await?;

        let fan_out = match workflow.find_step(fan_out_id).map(|s| &s.kind) {
            Some(StepKind::FanOut(fan_out)) => fan_out,
            _ => return Err(RunError::Poison(format!("`{fan_out_id}` is not a fan-out step"))),
        };
        if let Some(lanes) = fan_out.concurrency {
            let next = index.saturating_add(lanes);
            if next < total {
                let item = store.fan_out_item(&execution.id, &key, next).await?.ok_or_else(|| {
                    RunError::Retryable(format!("item {next} of fan-out `{key}` is not stored (yet)"))
                })?;
                let first = fan_out.steps.first().map(|s| s.id.as_str()).unwrap_or_default();
                let message = branch_message(execution, first, &scope, ScopeEntry { index: next, total, item });
                self.runtime.queue.send(QueueName::Steps, message).await?;
            }
        }
        if !all_done {
            return Ok(None);
        }
        let results = store.branch_results(&execution.id, &key).await?;
        if results.len() != total as usize || results.iter().enumerate().any(|(i, (n, _))| *n as usize != i) {
            return Err(RunError::Retryable(format!(
                "fan-out `{key}` counts all {total} branches done but {} results are stored",
                results.len()
            )));
        }
        let at = now();
        let joined = within_record_limit(StepAttempt {
            step: key,
            attempt: 1,
            status: StepStatus::Succeeded,
            input: json!({ "items": total }),
            output: Some(Value::Array(results.into_iter().map(|(_, v)| v).collect())),
            error: None,
            started_at: at,
            ended_at: at,
            logs: Vec::new(),
        });
        tracing::info!(execution = %execution.id, fan_out = %joined.step, total, "fan-out joined");
        let record = self.record(execution, joined).await?;
        Ok(Some(Current { step: fan_out_id.to_string(), attempt: 1, scope, record: Some(record) }))
    }
}

fn branch_message(execution: &Execution, first_step: &str, outer: &[ScopeEntry], entry: ScopeEntry) -> Outgoing {
    let mut scope = outer.to_vec();
    scope.push(entry);
    let message = StepMessage { scope, ..StepMessage::first(&execution.id, first_step) };
    Outgoing { body: message.to_json(), delay: std::time::Duration::ZERO }
}

fn fail(key: &str, message: String) -> StepAttempt {
    failed_attempt(key, StepError::terminal(message))
}

fn json_size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}
