//! The recovery sweep's view of the table: the sparse global secondary index
//! [`SWEEP_INDEX`] lists the executions that have not ended, without a scan.
//!
//! Invariants: an execution item carries [`SHARD`] and [`DUE_AT`] from its creation until it
//! ends (`finish_execution` removes both in the same update that ends it), so the index holds
//! exactly the executions still `running` or `waiting`; [`DUE_AT`] is the latest time the
//! sweep last knew something of the execution to be due (its start, then what the sweep
//! learned from its records), and only the sweep moves it, never the hot path. The shard is a
//! hash of the execution id over [`SHARDS`] partitions, so that no index partition takes
//! every start.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStore, EXECUTION_SK, backend, execution_pk, get_s, ms, s};
use crate::ports::StoreError;
use crate::record::Timestamp;

/// The index of the executions that have not ended.
pub const SWEEP_INDEX: &str = "unfinished";
/// Partition key of [`SWEEP_INDEX`] (S): one of [`SHARDS`] shards.
pub const SHARD: &str = "sweep_shard";
/// Sort key of [`SWEEP_INDEX`] (N, milliseconds): when something was last known due.
pub const DUE_AT: &str = "sweep_due_at";
/// Shards of the index. A start writes one of them; a sweep queries all.
pub const SHARDS: u32 = 8;

/// The shard of `execution_id` (FNV-1a, stable across builds and platforms).
pub(super) fn shard_of(execution_id: &str) -> String {
    let hash =
        execution_id.bytes().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    (hash % SHARDS).to_string()
}

/// The attributes that put a new, unfinished execution into [`SWEEP_INDEX`].
pub(super) fn index_attributes(execution_id: &str, started_at: &Timestamp) -> [(&'static str, AttributeValue); 2] {
    [(SHARD, s(shard_of(execution_id))), (DUE_AT, ms(started_at))]
}

impl DynamoStore {
    /// Executions that have not ended and were last known due at or before `due_before`,
    /// at most `max` (the oldest of each shard first). Eventually consistent, as every
    /// index read: an execution that ended a moment ago may still be listed (the sweep reads
    /// it again before acting), one that started a moment ago may be missing (it is not due).
    pub async fn due_for_sweep(&self, due_before: &Timestamp, max: usize) -> Result<Vec<String>, StoreError> {
        let per_shard = i32::try_from(max.div_ceil(SHARDS as usize).max(1)).unwrap_or(i32::MAX);
        let mut ids = Vec::new();
        for shard in 0..SHARDS {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(SWEEP_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :before")
                .expression_attribute_names("#shard", SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_values(":shard", s(shard.to_string()))
                .expression_attribute_values(":before", ms(due_before))
                .limit(per_shard)
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in output.items.unwrap_or_default() {
                ids.push(get_s(&item, "execution_id")?.to_string());
            }
        }
        ids.truncate(max);
        Ok(ids)
    }

    /// Records that something of `execution_id` is due at `due_at`, so the sweep looks at it
    /// again only once that is long past. No change if it has ended (it left the index).
    pub async fn sweep_later(&self, execution_id: &str, due_at: &Timestamp) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(execution_pk(execution_id)))
            .key("sk", s(EXECUTION_SK))
            .condition_expression("attribute_exists(#shard)")
            .update_expression("SET #due = :due")
            .expression_attribute_names("#shard", SHARD)
            .expression_attribute_names("#due", DUE_AT)
            .expression_attribute_values(":due", ms(due_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(backend("UpdateItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("a"), shard_of("a"));
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..8000 {
            let shard: usize = shard_of(&format!("{:032x}", i * 7919)).parse().expect("a number");
            counts[shard] += 1;
        }
        assert!(counts.iter().all(|&count| (800..1200).contains(&count)), "uneven shards: {counts:?}");
    }
}
