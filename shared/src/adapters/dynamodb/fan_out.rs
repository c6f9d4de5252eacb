//! `FanOutStore` on DynamoDB: step lookups by key, fan-out items and the join of branches, all
//! in the execution's partition `EXEC#<executionId>` (see `infra/dynamodb.md`).
//!
//! Items: `FANOUT#<key>#ITEMS#<first:05>` chunk items hold up to [`CHUNK_ITEMS`] consecutive
//! items as one JSON array (at most [`CHUNK_BYTES`] of it, unless one item alone is larger);
//! `<first>` is the index of the chunk's first item, so the chunk holding item `i` is the one
//! with the greatest first index ≤ `i`: one descending `Query` with `Limit 1`. Branches:
//! `BRANCH#<key>#<index:06>` holds a branch's result. The join is two levels of number sets:
//! `FANOUT#<key>#DONE#<shard:03>` holds the indexes of the done branches of shard
//! `index / 100` (`done`), and `FANOUT#<key>#JOIN` the numbers of the full shards (`shards`).
//!
//! Invariants: completing a branch is three idempotent writes, each repeated as is by a
//! redelivery: a conditional put of the branch item (`attribute_not_exists`: the first result
//! stays), `ADD` of the index to its shard's set, and, when that set holds every branch of the
//! shard, `ADD` of the shard to the join's set. An `ADD` to a set is atomic and adding a member
//! twice changes nothing, so no count can be off by a redelivery or a crash between writes,
//! and all branches are done exactly when the join's set holds every shard. No transaction:
//! concurrent completions never conflict (a transaction on one counter item would be
//! cancelled with `TransactionConflict` under load), each write is one small item (1 write
//! unit; a shard's set of 100 indexes is under 1 KB), and a 10,000-branch fan-out spreads its
//! writes over 100 shard items. Keys go into sort keys and attributes rendered (`StepKey`'s
//! text, `f@1`: each method renders its key once, up front). Every prefix ends with `#` (step
//! ids are `[A-Za-z0-9_-]`, keys add `@`, digits and `.`), so `f` never matches `f@1` or `fa`;
//! chunk and branch items also carry their key as an attribute, and reads skip items of
//! another key.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::task::JoinSet;

use super::executions::decode_step;
use super::{DynamoStore, Item, TTL_ATTRIBUTE, backend, execution_pk, get_n, get_opt_s, get_s, n, s, step_prefix};
use crate::adapters::{check_branch_index, check_fan_out_len, fan_out_value_json};
use crate::engine::StepKey;
use crate::ports::{Counted, ExecutionStore, FanOutStore, FirstWrite, MAX_FAN_OUT_ITEMS, StoreError};
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

/// How many branches one shard item of the join counts.
const SHARD_BRANCHES: u32 = 100;

/// The attribute holding the fan-out key on chunk, branch and join items.
const KEY: &str = "fan_out_key";
/// On a branch result: the token of the call that counted it (see `FanOutStore::complete_branch`).
const COUNTED_BY: &str = "counted_by";

fn items_prefix(key: &str) -> String {
    format!("FANOUT#{key}#ITEMS#")
}

fn chunk_sk(key: &str, first: usize) -> String {
    format!("{}{first:05}", items_prefix(key))
}

fn join_sk(key: &str) -> String {
    format!("FANOUT#{key}#JOIN")
}

fn shard_sk(key: &str, shard: u32) -> String {
    format!("FANOUT#{key}#DONE#{shard:03}")
}

/// How many branches shard `shard` of a fan-out of `total` counts.
fn shard_size(shard: u32, total: u32) -> u32 {
    total.saturating_sub(shard * SHARD_BRANCHES).min(SHARD_BRANCHES)
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

/// A sort key condition and its values (`:pk` is added).
struct Range<'a> {
    condition: &'a str,
    values: Vec<(&'a str, String)>,
}

impl DynamoStore {
    /// Adds branch `index` to its shard's done set (and a full shard to the join's); whether
    /// every one of `total` branches is done.
    async fn count_done(
        &self,
        execution_id: &str,
        fan_out_key: &str,
        index: u32,
        total: u32,
    ) -> Result<bool, StoreError> {
        let shard = index / SHARD_BRANCHES;
        let done = self.add_to_set(execution_id, shard_sk(fan_out_key, shard), "done", index).await?;
        if done < shard_size(shard, total) as usize {
            return Ok(false);
        }
        let shards = total.div_ceil(SHARD_BRANCHES);
        if shards == 1 {
            return Ok(true);
        }
        let full = self.add_to_set(execution_id, join_sk(fan_out_key), "shards", shard).await?;
        Ok(full >= shards as usize)
    }

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

    /// Adds `member` to the number set `attribute` of item `sk`; returns the set's size after.
    async fn add_to_set(
        &self,
        execution_id: &str,
        sk: String,
        attribute: &str,
        member: u32,
    ) -> Result<usize, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(execution_pk(execution_id)))
            .key("sk", s(sk))
            .update_expression("ADD #set :member SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#set", attribute)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":ttl", self.expiry(None))
            .expression_attribute_values(":member", AttributeValue::Ns(vec![member.to_string()]))
            // ALL_NEW, not UPDATED_NEW: adding a member already there may count as no update.
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        match updated.attributes.as_ref().and_then(|a| a.get(attribute)) {
            Some(AttributeValue::Ns(members)) => Ok(members.len()),
            other => Err(StoreError::Corrupt(format!("`{attribute}` after an ADD is not a number set: {other:?}"))),
        }
    }
}

impl DynamoStore {
    /// Records one inline branch's attempts in order; false at the first one recorded before.
    async fn record_chain(&self, execution_id: &str, attempts: &[StepAttempt]) -> Result<bool, StoreError> {
        for attempt in attempts {
            if let FirstWrite::Existing(_) = self.record_step(execution_id, attempt).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl FanOutStore for DynamoStore {
    async fn latest_step(&self, execution_id: &str, step_key: &StepKey) -> Result<Option<StepAttempt>, StoreError> {
        let step_key = step_key.to_string();
        let prefix = step_prefix(&step_key);
        let range = Range { condition: "begins_with(sk, :prefix)", values: vec![(":prefix", prefix)] };
        let item = self.first_of_key(execution_id, &range, false, "step", &step_key).await?;
        item.as_ref().map(decode_step).transpose()
    }

    async fn put_fan_out_items(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        items: &[Value],
    ) -> Result<(), StoreError> {
        check_fan_out_len(items.len())?;
        let fan_out_key = fan_out_key.to_string();
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
                ("sk", s(chunk_sk(&fan_out_key, first))),
                (KEY, s(&fan_out_key)),
                ("first", n(first)),
                ("items", s(array)),
                (TTL_ATTRIBUTE, self.expiry(None)),
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
        fan_out_key: &StepKey,
        index: u32,
    ) -> Result<Option<Value>, StoreError> {
        let Some(wanted) = usize::try_from(index).ok().filter(|i| *i < MAX_FAN_OUT_ITEMS) else {
            return Ok(None);
        };
        let fan_out_key = fan_out_key.to_string();
        let range = Range {
            condition: "sk BETWEEN :from AND :to",
            values: vec![(":from", chunk_sk(&fan_out_key, 0)), (":to", chunk_sk(&fan_out_key, wanted))],
        };
        let Some(chunk) = self.first_of_key(execution_id, &range, false, KEY, &fan_out_key).await? else {
            return Ok(None);
        };
        let first: usize = get_n(&chunk, "first")?;
        let mut items: Vec<Value> = serde_json::from_str(get_s(&chunk, "items")?)
            .map_err(|e| StoreError::Corrupt(format!("fan-out `{fan_out_key}` items from {first}: {e}")))?;
        // Past the end of the chunk: beyond the last item, or a chunk not written (yet).
        Ok(wanted.checked_sub(first).filter(|at| *at < items.len()).map(|at| items.swap_remove(at)))
    }

    async fn record_branches(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        total: u32,
        records: &[Vec<StepAttempt>],
        results: &[(u32, Value)],
    ) -> Result<Option<bool>, StoreError> {
        // Conditional puts, each first-writer-wins: branches side by side, each in order up
        // to its first conflict.
        let chains: Vec<_> = records.iter().map(|attempts| self.record_chain(execution_id, attempts)).collect();
        let written: Vec<bool> = stream::iter(chains).buffer_unordered(PUT_CONCURRENCY).try_collect().await?;
        if written.contains(&false) {
            return Ok(None);
        }
        self.complete_branches(execution_id, fan_out_key, total, results).await.map(Some)
    }

    async fn complete_branch(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        index: u32,
        total: u32,
        result: &Value,
        by: &str,
    ) -> Result<Counted, StoreError> {
        check_branch_index(index, total)?;
        let text = fan_out_value_json(&format!("the result of branch {index}"), result)?;
        let fan_out_key = fan_out_key.to_string();
        let mut attributes = vec![
            ("pk", s(execution_pk(execution_id))),
            ("sk", s(branch_sk(&fan_out_key, index))),
            (KEY, s(&fan_out_key)),
        ];
        attributes.extend([("index", n(index)), ("result", s(text)), (TTL_ATTRIBUTE, self.expiry(None))]);
        if !by.is_empty() {
            attributes.push((COUNTED_BY, s(by)));
        }
        // Unless it exists: a redelivery keeps the first result. A put that failed its
        // condition may be this call's own retry after a lost answer: the token tells.
        let first = self.put_new(item(attributes)).await? || {
            let existing = self.get(execution_pk(execution_id), &branch_sk(&fan_out_key, index)).await?;
            !by.is_empty()
                && existing.as_ref().map(|branch| get_opt_s(branch, COUNTED_BY)).transpose()?.flatten() == Some(by)
        };
        let all_done = self.count_done(execution_id, &fan_out_key, index, total).await?;
        Ok(Counted { all_done, first })
    }

    async fn branch_results(&self, execution_id: &str, fan_out_key: &StepKey) -> Result<Vec<(u32, Value)>, StoreError> {
        let fan_out_key = fan_out_key.to_string();
        let range =
            Range { condition: "begins_with(sk, :prefix)", values: vec![(":prefix", branch_prefix(&fan_out_key))] };
        let mut results = Vec::new();
        let mut start = None;
        loop {
            // A query page stops at 1 MB: 10,000 results of a few KB span dozens of pages.
            let (items, next) = self.page(execution_id, &range, true, None, start).await?;
            for branch in items {
                if get_opt_s(&branch, KEY)? != Some(fan_out_key.as_str()) {
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

    #[test]
    fn shards_split_a_fan_out_into_hundreds() {
        assert_eq!((0..3).map(|shard| shard_size(shard, 250)).collect::<Vec<_>>(), [100, 100, 50]);
        assert_eq!(shard_size(0, 1), 1);
        assert_eq!(shard_size(99, 10_000), 100);
        assert!(shard_sk("f", 9) < shard_sk("f", 10));
        assert!(!shard_sk("f@1", 0).starts_with(&items_prefix("f")));
    }
}
