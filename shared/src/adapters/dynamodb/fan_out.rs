//! `FanOutStore` on DynamoDB: step lookups by key, fan-out items and the join of branches, all
//! in the execution's partition `EXEC#<executionId>` (see `infra/dynamodb.md`).
//!
//! Items: `FANOUT#<key>#ITEMS#<first:05>` chunk items hold up to [`CHUNK_ITEMS`] consecutive
//! items as one JSON array (at most [`CHUNK_BYTES`] of it, unless one item alone is larger);
//! `<first>` is the index of the chunk's first item, so the chunk holding item `i` is the one
//! with the greatest first index ≤ `i`: one descending `Query` with `Limit 1`. Branches:
//! `BRANCH#<key>#<index:06>` holds a branch's result and `FANOUT#<key>#JOIN` the count of
//! completed branches (`done`).
//!
//! Invariants: a branch item and the increment of `done` are written by one
//! `TransactWriteItems`, the branch item conditioned on `attribute_not_exists(pk)`, so a branch
//! is counted exactly when it is recorded: once, keeping its first result, whatever the
//! concurrency or redelivery. Every prefix ends with `#` (step ids are `[A-Za-z0-9_-]`, keys
//! add `@`, digits and `.`), so `f` never matches `f@1` or `fa`; every item also carries its
//! key as an attribute, and reads skip items of another key.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde_json::Value;
use tokio::task::JoinSet;

use super::executions::decode_step;
use super::{DynamoStore, Item, backend, execution_pk, get_n, get_opt_s, get_s, n, s, step_prefix};
use crate::adapters::{check_branch_index, check_fan_out_len, fan_out_value_json};
use crate::ports::{FanOutStore, MAX_FAN_OUT_ITEMS, StoreError};
use crate::record::StepAttempt;

/// The most items in one chunk item.
const CHUNK_ITEMS: usize = 100;

/// The most JSON bytes in one chunk item, unless a single item is larger (it then has a chunk
/// to itself; items are at most `MAX_FAN_OUT_VALUE_BYTES`). Every branch launched late reads
/// one whole chunk, so chunks are kept small: a strongly consistent read of a full chunk
/// costs 16 read units.
const CHUNK_BYTES: usize = 64 * 1024;

/// How many chunk items `put_fan_out_items` writes at once.
const PUT_CONCURRENCY: usize = 16;

/// How many times `complete_branch` tries its transaction while it conflicts with another.
const JOIN_ATTEMPTS: u32 = 8;

/// The attribute holding the fan-out key on chunk, branch and join items.
const KEY: &str = "fan_out_key";

fn items_prefix(key: &str) -> String {
    format!("FANOUT#{key}#ITEMS#")
}

fn chunk_sk(key: &str, first: usize) -> String {
    format!("{}{first:05}", items_prefix(key))
}

fn join_sk(key: &str) -> String {
    format!("FANOUT#{key}#JOIN")
}

fn branch_prefix(key: &str) -> String {
    format!("BRANCH#{key}#")
}

fn branch_sk(key: &str, index: u32) -> String {
    format!("{}{index:06}", branch_prefix(key))
}

fn item(attributes: Vec<(&str, AttributeValue)>) -> Item {
    attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Splits the JSON texts of the items into chunks: (first index, JSON array text). A chunk
/// ends at [`CHUNK_ITEMS`] items or before it would pass [`CHUNK_BYTES`].
fn chunks(texts: &[String]) -> Vec<(usize, String)> {
    let mut chunks = Vec::new();
    let (mut first, mut count, mut array) = (0, 0, String::from("["));
    for (index, text) in texts.iter().enumerate() {
        if count == CHUNK_ITEMS || (count > 0 && array.len() + 1 + text.len() + 1 > CHUNK_BYTES) {
            array.push(']');
            chunks.push((first, std::mem::replace(&mut array, String::from("["))));
            (first, count) = (index, 0);
        }
        if count > 0 {
            array.push(',');
        }
        array.push_str(text);
        count += 1;
    }
    if count > 0 {
        array.push(']');
        chunks.push((first, array));
    }
    chunks
}

/// What a cancelled join transaction means.
enum Cancelled {
    /// The branch item exists: this branch was counted before.
    AlreadyCounted,
    /// Another transaction on the join item got in the way (or throttling): try again.
    Conflict,
    /// Cancelled without reasons: whether the branch item exists tells.
    Unexplained,
}

fn cancelled<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Cancelled> {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = e.as_service_error() else {
        return None;
    };
    let reasons = cancel.cancellation_reasons();
    if reasons.is_empty() {
        return Some(Cancelled::Unexplained);
    }
    if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
        return Some(Cancelled::AlreadyCounted);
    }
    let transient = |code: Option<&str>| {
        matches!(
            code,
            None | Some("None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
        )
    };
    reasons.iter().all(|r| transient(r.code())).then_some(Cancelled::Conflict)
}

/// A random wait before retry `attempt` (1, 2, ...): between half and all of 25 ms × 2^attempt,
/// at most 1 s.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = (25u64 << attempt.min(6)).min(1_000);
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_millis(cap_ms / 2 + random % (cap_ms / 2 + 1))
}

/// A sort key condition and its values (`:pk` is added).
struct Range<'a> {
    condition: &'a str,
    values: Vec<(&'a str, String)>,
}

impl DynamoStore {
    /// One query page over the execution's partition.
    async fn page(
        &self,
        execution_id: &str,
        range: &Range<'_>,
        forward: bool,
        limit: Option<i32>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("pk = :pk AND {}", range.condition))
            .expression_attribute_values(":pk", s(execution_pk(execution_id)))
            .scan_index_forward(forward)
            .set_limit(limit)
            .consistent_read(true)
            .set_exclusive_start_key(start);
        for (name, value) in &range.values {
            query = query.expression_attribute_values(*name, s(value));
        }
        let page = query.send().await.map_err(|e| backend("Query", e))?;
        let next = page.last_evaluated_key.filter(|key| !key.is_empty());
        Ok((page.items.unwrap_or_default(), next))
    }

    /// The first item of `range` (in `forward` order) whose `key_attribute` is `key`: one
    /// `Limit 1` request, as the first item always matches unless a key contains `#`.
    async fn first_of_key(
        &self,
        execution_id: &str,
        range: &Range<'_>,
        forward: bool,
        key_attribute: &str,
        key: &str,
    ) -> Result<Option<Item>, StoreError> {
        let mut limit = Some(1);
        let mut start = None;
        loop {
            let (items, next) = self.page(execution_id, range, forward, limit.take(), start).await?;
            for item in items {
                if get_opt_s(&item, key_attribute)? == Some(key) {
                    return Ok(Some(item));
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(None),
            }
        }
    }

    /// Writes one chunk item (an unconditional put: rewriting the same items is harmless).
    async fn put_chunk(&self, chunk: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(chunk))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| backend("PutItem", e))
    }

    /// Records branch `index` and counts it in one transaction, unless it was counted before.
    async fn count_branch(&self, execution_id: &str, key: &str, index: u32, result: String) -> Result<(), StoreError> {
        let request =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(format!("TransactWriteItems request: {e}"));
        let branch = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item(vec![
                ("pk", s(execution_pk(execution_id))),
                ("sk", s(branch_sk(key, index))),
                (KEY, s(key)),
                ("index", n(index)),
                ("result", s(result)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(request)?;
        let count = Update::builder()
            .table_name(&self.table)
            .key("pk", s(execution_pk(execution_id)))
            .key("sk", s(join_sk(key)))
            .update_expression("SET #key = :key ADD done :one")
            .expression_attribute_names("#key", KEY)
            .expression_attribute_values(":key", s(key))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(request)?;
        let mut attempt = 1;
        loop {
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(branch.clone()).build())
                .transact_items(TransactWriteItem::builder().update(count.clone()).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) => match cancelled(&e) {
                    Some(Cancelled::AlreadyCounted) => return Ok(()),
                    Some(Cancelled::Unexplained)
                        if self.get(execution_pk(execution_id), &branch_sk(key, index)).await?.is_some() =>
                    {
                        return Ok(());
                    }
                    Some(Cancelled::Conflict | Cancelled::Unexplained) if attempt < JOIN_ATTEMPTS => {
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                    _ => return Err(backend("TransactWriteItems", e)),
                },
            }
        }
    }
}

#[async_trait]
impl FanOutStore for DynamoStore {
    async fn latest_step(&self, execution_id: &str, step_key: &str) -> Result<Option<StepAttempt>, StoreError> {
        let prefix = step_prefix(step_key);
        let range = Range { condition: "begins_with(sk, :prefix)", values: vec![(":prefix", prefix)] };
        let item = self.first_of_key(execution_id, &range, false, "step", step_key).await?;
        item.as_ref().map(decode_step).transpose()
    }

    async fn put_fan_out_items(
        &self,
        execution_id: &str,
        fan_out_key: &str,
        items: &[Value],
    ) -> Result<(), StoreError> {
        check_fan_out_len(items.len())?;
        let texts = items
            .iter()
            .enumerate()
            .map(|(index, item)| fan_out_value_json(&format!("fan-out item {index}"), item))
            .collect::<Result<Vec<String>, StoreError>>()?;
        // On a failure the set is dropped, aborting the other writes: the caller retries the
        // whole put, and a chunk not written reads as no item.
        let mut writes = JoinSet::new();
        for (first, array) in chunks(&texts) {
            if writes.len() >= PUT_CONCURRENCY {
                joined(writes.join_next().await)?;
            }
            let chunk = item(vec![
                ("pk", s(execution_pk(execution_id))),
                ("sk", s(chunk_sk(fan_out_key, first))),
                (KEY, s(fan_out_key)),
                ("first", n(first)),
                ("items", s(array)),
            ]);
            let store = self.clone();
            writes.spawn(async move { store.put_chunk(chunk).await });
        }
        while let Some(written) = writes.join_next().await {
            joined(Some(written))?;
        }
        Ok(())
    }

    async fn fan_out_item(
        &self,
        execution_id: &str,
        fan_out_key: &str,
        index: u32,
    ) -> Result<Option<Value>, StoreError> {
        let Some(wanted) = usize::try_from(index).ok().filter(|i| *i < MAX_FAN_OUT_ITEMS) else {
            return Ok(None);
        };
        let range = Range {
            condition: "sk BETWEEN :from AND :to",
            values: vec![(":from", chunk_sk(fan_out_key, 0)), (":to", chunk_sk(fan_out_key, wanted))],
        };
        let Some(chunk) = self.first_of_key(execution_id, &range, false, KEY, fan_out_key).await? else {
            return Ok(None);
        };
        let first: usize = get_n(&chunk, "first")?;
        let mut items: Vec<Value> = serde_json::from_str(get_s(&chunk, "items")?)
            .map_err(|e| StoreError::Corrupt(format!("fan-out `{fan_out_key}` items from {first}: {e}")))?;
        // Past the end of the chunk: beyond the last item, or a chunk not written (yet).
        Ok(wanted.checked_sub(first).filter(|at| *at < items.len()).map(|at| items.swap_remove(at)))
    }

    async fn complete_branch(
        &self,
        execution_id: &str,
        fan_out_key: &str,
        index: u32,
        result: &Value,
    ) -> Result<u32, StoreError> {
        check_branch_index(index)?;
        let text = fan_out_value_json(&format!("the result of branch {index}"), result)?;
        self.count_branch(execution_id, fan_out_key, index, text).await?;
        let join = self.get(execution_pk(execution_id), &join_sk(fan_out_key)).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("fan-out `{fan_out_key}`: branch {index} is recorded but nothing is counted"))
        })?;
        get_n(&join, "done")
    }

    async fn branch_results(&self, execution_id: &str, fan_out_key: &str) -> Result<Vec<(u32, Value)>, StoreError> {
        let range =
            Range { condition: "begins_with(sk, :prefix)", values: vec![(":prefix", branch_prefix(fan_out_key))] };
        let mut results = Vec::new();
        let mut start = None;
        loop {
            // A query page stops at 1 MB: 10,000 results of a few KB span dozens of pages.
            let (items, next) = self.page(execution_id, &range, true, None, start).await?;
            for branch in items {
                if get_opt_s(&branch, KEY)? != Some(fan_out_key) {
                    continue;
                }
                let index: u32 = get_n(&branch, "index")?;
                let result = serde_json::from_str(get_s(&branch, "result")?)
                    .map_err(|e| StoreError::Corrupt(format!("fan-out `{fan_out_key}` branch {index}: {e}")))?;
                results.push((index, result));
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(results),
            }
        }
    }
}

/// The outcome of one chunk write task (`Ok` when there was none).
fn joined(written: Option<Result<Result<(), StoreError>, tokio::task::JoinError>>) -> Result<(), StoreError> {
    match written {
        None => Ok(()),
        Some(Ok(outcome)) => outcome,
        Some(Err(e)) => Err(StoreError::Backend(format!("fan-out item write task failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sizes: &[usize]) -> Vec<String> {
        sizes.iter().map(|size| format!("\"{}\"", "x".repeat(size - 2))).collect()
    }

    #[test]
    fn chunks_hold_100_items_or_64_kib() {
        let small = chunks(&texts(&[10; 250]));
        assert_eq!(small.iter().map(|(first, _)| *first).collect::<Vec<_>>(), [0, 100, 200]);
        let parsed: Vec<Value> = serde_json::from_str(&small[2].1).expect("a JSON array");
        assert_eq!(parsed.len(), 50);

        let large = chunks(&texts(&[30_000, 30_000, 30_000, 200_000, 10]));
        assert_eq!(large.iter().map(|(first, _)| *first).collect::<Vec<_>>(), [0, 2, 3, 4]);
        assert!(large[0].1.len() <= CHUNK_BYTES);
        assert!(large.iter().all(|(_, array)| serde_json::from_str::<Vec<Value>>(array).is_ok()));
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn keys_order_numerically_and_prefixes_match_only_their_key() {
        assert!(chunk_sk("f", 900) < chunk_sk("f", 1_000));
        assert!(branch_sk("f", 99) < branch_sk("f", 100));
        assert_eq!(branch_sk("leaf@3.5", 7), "BRANCH#leaf@3.5#000007");
        assert!(!branch_sk("f@1", 0).starts_with(&branch_prefix("f")));
        assert!(!branch_sk("fa", 0).starts_with(&branch_prefix("f")));
        assert!(!chunk_sk("f@1", 0).starts_with(&items_prefix("f")));
        assert!(!join_sk("f").starts_with(&items_prefix("f")));
        assert_eq!(chunk_sk("f", MAX_FAN_OUT_ITEMS - 1).len(), chunk_sk("f", 0).len());
        assert_eq!(branch_sk("f", MAX_FAN_OUT_ITEMS as u32 - 1).len(), branch_sk("f", 0).len());
    }

    fn cancellation(codes: &[&str]) -> SdkError<TransactWriteItemsError, ()> {
        use aws_sdk_dynamodb::types::CancellationReason;
        use aws_sdk_dynamodb::types::error::TransactionCanceledException;
        let reasons = codes.iter().map(|code| CancellationReason::builder().code(*code).build()).collect();
        let cancel = TransactionCanceledException::builder().set_cancellation_reasons(Some(reasons)).build();
        SdkError::service_error(TransactWriteItemsError::TransactionCanceledException(cancel), ())
    }

    #[test]
    fn only_a_failed_branch_condition_means_already_counted() {
        let kind = |codes: &[&str]| match cancelled(&cancellation(codes)) {
            Some(Cancelled::AlreadyCounted) => "counted",
            Some(Cancelled::Conflict) => "retry",
            Some(Cancelled::Unexplained) => "look",
            None => "error",
        };
        assert_eq!(kind(&["ConditionalCheckFailed", "None"]), "counted");
        assert_eq!(kind(&["None", "TransactionConflict"]), "retry");
        assert_eq!(kind(&["TransactionConflict", "None"]), "retry");
        assert_eq!(kind(&["None", "ThrottlingError"]), "retry");
        assert_eq!(kind(&["None", "ValidationError"]), "error");
        assert_eq!(kind(&["ItemCollectionSizeLimitExceeded", "None"]), "error");
        assert_eq!(kind(&[]), "look", "no reasons: the branch item tells whether it was counted");
    }

    #[test]
    fn backoff_stays_within_a_second() {
        for attempt in 1..20 {
            let wait = backoff(attempt);
            assert!(wait >= Duration::from_millis(12) && wait <= Duration::from_secs(1), "{attempt}: {wait:?}");
        }
    }
}
