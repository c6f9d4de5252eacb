//! Executions on DynamoDB: one partition `EXEC#<id>` holds the execution item, one item per
//! step attempt and the settled response.
//!
//! Invariants: step attempts and the response are created once (`attribute_not_exists(pk)`)
//! and never updated, so a redelivered step message reads back the attempt recorded first
//! instead of overwriting it; the execution item ends through one UpdateItem conditioned on
//! `#status IN (:running, :waiting)` and moves between running and waiting through one
//! conditioned on `#status = :from`, so exactly one finish wins. A step item holds the JSON of
//! the whole attempt plus `output_null` when its output is JSON null, so that reads back too.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use super::{
    DynamoStore, EXECUTION_SK, Item, RESPONSE_SK, STEP_PREFIX, backend, conditional, execution_pk, get_flag, get_json,
    get_n, get_opt_json, get_opt_ts, get_s, get_ts, history, json, ms, n, s, step_sk, sweep,
};
use crate::engine::StepKey;
use crate::ports::{ExecutionStore, FirstWrite, StoreError};
use crate::record::{Execution, ExecutionError, ExecutionStatus, SettledResponse, StepAttempt, Timestamp};

fn item(attributes: Vec<(&str, AttributeValue)>) -> Item {
    attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn parse_status(text: &str) -> Result<ExecutionStatus, StoreError> {
    ExecutionStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown execution status `{text}`")))
}

fn decode_execution(item: &Item) -> Result<Execution, StoreError> {
    Ok(Execution {
        id: get_s(item, "execution_id")?.to_string(),
        project_id: get_s(item, "project_id")?.to_string(),
        workflow_id: get_s(item, "workflow_id")?.to_string(),
        workflow_version: get_n(item, "workflow_version")?,
        user_id: get_s(item, "user_id")?.to_string(),
        status: parse_status(get_s(item, "status")?)?,
        started_at: get_ts(item, "started_at")?,
        ended_at: get_opt_ts(item, "ended_at")?,
        trigger: get_json(item, "trigger")?,
        response_deadline: get_opt_ts(item, "response_deadline")?,
        error: get_opt_json(item, "error")?,
        test: get_flag(item, "test")?,
        integration: super::get_opt_s(item, "integration")?.map(str::to_string),
        search: get_opt_json(item, "search")?.unwrap_or_default(),
        replay_of: super::get_opt_s(item, "replay_of")?.map(str::to_string),
        redrives: super::get_opt_n(item, "redrives")?.unwrap_or(0),
    })
}

/// Marks a step item whose output is JSON `null`: the JSON record alone reads that back as no
/// output at all (`"output": null` either way), which templates see differently.
const OUTPUT_NULL: &str = "output_null";

/// The attempt in a step item (its `record`, and [`OUTPUT_NULL`]).
pub(super) fn decode_step(item: &Item) -> Result<StepAttempt, StoreError> {
    let mut attempt: StepAttempt = get_json(item, "record")?;
    if attempt.output.is_none() && matches!(item.get(OUTPUT_NULL), Some(AttributeValue::Bool(true))) {
        attempt.output = Some(Value::Null);
    }
    Ok(attempt)
}

impl DynamoStore {
    async fn read_step(&self, execution_id: &str, step: &str, attempt: u32) -> Result<Option<StepAttempt>, StoreError> {
        let item = self.get(execution_pk(execution_id), &step_sk(step, attempt)).await?;
        item.as_ref().map(decode_step).transpose()
    }
}

/// Whether `stored` is the item `created` writes (its status may have moved on since).
fn same_execution(stored: &Execution, created: &Execution) -> bool {
    stored.project_id == created.project_id
        && stored.workflow_id == created.workflow_id
        && stored.workflow_version == created.workflow_version
        && stored.user_id == created.user_id
        && stored.started_at == created.started_at
}

#[async_trait]
impl ExecutionStore for DynamoStore {
    async fn create_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        let e = execution;
        let mut attributes = vec![
            ("pk", s(execution_pk(&e.id))),
            ("sk", s(EXECUTION_SK)),
            ("execution_id", s(&e.id)),
            ("project_id", s(&e.project_id)),
            ("workflow_id", s(&e.workflow_id)),
            ("workflow_version", n(e.workflow_version)),
            ("user_id", s(&e.user_id)),
            ("status", s(e.status.as_str())),
            ("started_at", ms(&e.started_at)),
            ("trigger", json(&e.trigger)?),
        ];
        if let Some(ended_at) = &e.ended_at {
            attributes.push(("ended_at", ms(ended_at)));
        }
        if let Some(deadline) = &e.response_deadline {
            attributes.push(("response_deadline", ms(deadline)));
        }
        if let Some(error) = &e.error {
            attributes.push(("error", json(error)?));
        }
        if e.test {
            attributes.push(("test", AttributeValue::Bool(true)));
        }
        if !e.status.is_ended() {
            attributes.extend(sweep::index_attributes(&e.id, &e.started_at));
        }
        if !e.search.is_empty() {
            attributes.push(("search", json(&e.search)?));
        }
        if let Some(original) = &e.replay_of {
            attributes.push(("replay_of", s(original)));
        }
        if e.redrives > 0 {
            attributes.push(("redrives", n(e.redrives)));
        }
        attributes.extend(history::index_attributes(e));
        // Search attribute items and the replay link go first: an index entry whose execution
        // was never created is skipped by every reader, an execution missing from its index
        // would be lost to searches.
        let links: Vec<Item> = history::search_items(e).into_iter().chain(history::replay_link(e)).collect();
        if !links.is_empty() {
            self.put_all(links).await?;
        }
        if self.put_new(item(attributes)).await? {
            return Ok(());
        }
        // The SDK retries a put whose answer was lost (a dropped connection): the condition
        // then fails on our own first write. Execution ids are fresh for every start, so the
        // same execution already there is that write, not a conflict.
        match self.get_execution(&e.id).await? {
            Some(stored) if same_execution(&stored, e) => Ok(()),
            _ => Err(StoreError::AlreadyExists(format!("execution {}", e.id))),
        }
    }

    async fn get_execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let item = self.get(execution_pk(execution_id), EXECUTION_SK).await?;
        item.as_ref().map(decode_execution).transpose()
    }

    async fn set_execution_status(
        &self,
        project_id: &str,
        execution_id: &str,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(execution_pk(execution_id)))
            .key("sk", s(EXECUTION_SK))
            .condition_expression("#status = :from")
            .update_expression("SET #status = :to, #h_status = :h_status")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#h_status", history::STATUS_KEY)
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":h_status", history::status_key(project_id, to));
        conditional("UpdateItem", update.send().await)
    }

    async fn finish_execution(
        &self,
        project_id: &str,
        execution_id: &str,
        status: ExecutionStatus,
        error: Option<&ExecutionError>,
        ended_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(execution_pk(execution_id)))
            .key("sk", s(EXECUTION_SK))
            .condition_expression("#status IN (:running, :waiting)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#shard", sweep::SHARD)
            .expression_attribute_names("#due", sweep::DUE_AT)
            .expression_attribute_values(":running", s(ExecutionStatus::Running.as_str()))
            .expression_attribute_values(":waiting", s(ExecutionStatus::Waiting.as_str()))
            .expression_attribute_names("#h_status", history::STATUS_KEY)
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":h_status", history::status_key(project_id, status))
            .expression_attribute_values(":ended_at", ms(&ended_at));
        let update = match error {
            // Ending takes the execution out of the sweep's index in the same update.
            Some(error) => update
                .update_expression(
                    "SET #status = :status, #h_status = :h_status, ended_at = :ended_at, #error = :error \
                     REMOVE #shard, #due",
                )
                .expression_attribute_values(":error", json(error)?),
            None => update.update_expression(
                "SET #status = :status, #h_status = :h_status, ended_at = :ended_at REMOVE #error, #shard, #due",
            ),
        };
        // Not running any more, or no such execution: the condition fails either way.
        conditional("UpdateItem", update.send().await)
    }

    async fn redrive_execution(&self, project_id: &str, execution_id: &str) -> Result<Option<u32>, StoreError> {
        let [(shard_name, shard), (due_name, due)] = sweep::index_attributes(execution_id, &crate::record::now());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(execution_pk(execution_id)))
            .key("sk", s(EXECUTION_SK))
            .condition_expression("#status = :failed")
            // Back in the sweep's index, as a started execution is.
            .update_expression(
                "SET #status = :running, #h_status = :h_status, #shard = :shard, #due = :due, \
                 redrives = if_not_exists(redrives, :zero) + :one REMOVE ended_at, #error",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#h_status", history::STATUS_KEY)
            .expression_attribute_names("#shard", shard_name)
            .expression_attribute_names("#due", due_name)
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":failed", s(ExecutionStatus::Failed.as_str()))
            .expression_attribute_values(":running", s(ExecutionStatus::Running.as_str()))
            .expression_attribute_values(":h_status", history::status_key(project_id, ExecutionStatus::Running))
            .expression_attribute_values(":shard", shard)
            .expression_attribute_values(":due", due)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let attributes = output.attributes.unwrap_or_default();
                Ok(Some(super::get_n(&attributes, "redrives")?))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(super::backend("UpdateItem", e)),
        }
    }

    async fn record_step(
        &self,
        execution_id: &str,
        attempt: &StepAttempt,
    ) -> Result<FirstWrite<StepAttempt>, StoreError> {
        let mut attributes = vec![
            ("pk", s(execution_pk(execution_id))),
            ("sk", s(step_sk(&attempt.step, attempt.attempt))),
            ("step", s(&attempt.step)),
            ("attempt", n(attempt.attempt)),
            ("started_at", ms(&attempt.started_at)),
            ("record", json(attempt)?),
        ];
        if attempt.output == Some(Value::Null) {
            attributes.push((OUTPUT_NULL, AttributeValue::Bool(true)));
        }
        if self.put_new(item(attributes)).await? {
            return Ok(FirstWrite::Written);
        }
        match self.read_step(execution_id, &attempt.step, attempt.attempt).await? {
            Some(existing) => Ok(FirstWrite::Existing(existing)),
            None => Err(StoreError::Backend("step record conflicted but cannot be read back".into())),
        }
    }

    async fn get_step(
        &self,
        execution_id: &str,
        key: &StepKey,
        attempt: u32,
    ) -> Result<Option<StepAttempt>, StoreError> {
        self.read_step(execution_id, &key.to_string(), attempt).await
    }

    async fn list_steps(&self, execution_id: &str) -> Result<Vec<StepAttempt>, StoreError> {
        let mut steps: Vec<StepAttempt> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            // A query page stops at 1 MB: large outputs spread a history over several pages.
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(execution_pk(execution_id)))
                .expression_attribute_values(":prefix", s(STEP_PREFIX))
                .projection_expression("#record, #output_null")
                .expression_attribute_names("#record", "record")
                .expression_attribute_names("#output_null", OUTPUT_NULL)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in page.items.unwrap_or_default() {
                steps.push(decode_step(&item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        steps.sort_by(|a, b| (a.started_at, &a.step, a.attempt).cmp(&(b.started_at, &b.step, b.attempt)));
        Ok(steps)
    }

    async fn settle_response(
        &self,
        execution_id: &str,
        response: &SettledResponse,
    ) -> Result<FirstWrite<SettledResponse>, StoreError> {
        let attributes =
            vec![("pk", s(execution_pk(execution_id))), ("sk", s(RESPONSE_SK)), ("response", json(response)?)];
        if self.put_new(item(attributes)).await? {
            return Ok(FirstWrite::Written);
        }
        match self.get_response(execution_id).await? {
            Some(existing) => Ok(FirstWrite::Existing(existing)),
            None => Err(StoreError::Backend("response conflicted but cannot be read back".into())),
        }
    }

    async fn get_response(&self, execution_id: &str) -> Result<Option<SettledResponse>, StoreError> {
        let item = self.get(execution_pk(execution_id), RESPONSE_SK).await?;
        item.map(|item| get_json(&item, "response")).transpose()
    }
}
