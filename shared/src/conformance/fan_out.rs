//! Store cases for `FanOutStore`: the latest attempt of a step key, fan-out items, and the
//! join of branches (counted once, whatever the concurrency or redelivery).
//!
//! Invariant: every case works on fresh execution ids, so cases never see each other's data;
//! keys that share a prefix (`a`, `a@1`, `ab`; `f`, `f@1`, `fa`) are always checked to be
//! independent.

use serde_json::{Value, json};

use super::{SuiteLimits, at_ms, join_all, unique};
use crate::adapters::MAX_FAN_OUT_VALUE_BYTES;
use crate::engine::StepKey;
use crate::ports::{Counted, FirstWrite, MAX_FAN_OUT_ITEMS, Store, StoreError};
use crate::record::{StepAttempt, StepStatus};

/// The key rendered `text` (`f`, `f@1`).
fn key(text: &str) -> StepKey {
    text.parse().expect("a step key")
}

fn attempt(step: &str, n: u32) -> StepAttempt {
    let started_at = at_ms(1_764_000_000_001 + i64::from(n) * 1_000);
    StepAttempt {
        step: step.to_string(),
        attempt: n,
        status: StepStatus::Succeeded,
        input: json!({ "attempt": n }),
        output: Some(json!({ "step": step, "attempt": n })),
        error: None,
        started_at,
        ended_at: at_ms(started_at.timestamp_millis() + 3),
        logs: vec![format!("{step} attempt {n}")],
    }
}

/// A string of JSON length `bytes` (quotes included).
fn blob(bytes: usize) -> Value {
    Value::String("x".repeat(bytes - 2))
}

/// The attempt with the highest number, by number (not by write order), of exactly that key.
pub async fn case_latest_step_is_the_highest_attempt_of_its_key(store: &dyn Store) {
    let execution_id = unique("e");
    assert_eq!(store.latest_step(&execution_id, &StepKey::top("a")).await.expect("latest of nothing"), None);
    let written =
        [("a", 2), ("a", 3), ("a", 1), ("a@1", 5), ("a@1.2", 6), ("ab", 10), ("ab", 9), ("b", 4), ("c@1.2", 7)];
    for (step, n) in written {
        assert_eq!(store.record_step(&execution_id, &attempt(step, n)).await.expect("record"), FirstWrite::Written);
    }
    for (text, latest) in [("a", 3), ("a@1", 5), ("a@1.2", 6), ("ab", 10), ("b", 4), ("c@1.2", 7)] {
        let got = store.latest_step(&execution_id, &key(text)).await.expect("latest step");
        assert_eq!(got, Some(attempt(text, latest)), "the latest attempt of `{text}`");
    }
    // Keys next to recorded ones, and keys whose text begins another's (`c`, `c@1`: `c@1.2`).
    let nothing = [
        StepKey::new("a", &[2]),
        StepKey::new("a", &[0]),
        StepKey::new("a", &[1, 0]),
        StepKey::new("a", &[1, 2, 0]),
        StepKey::new("a", &[12]),
        StepKey::top("c"),
        StepKey::new("c", &[1]),
        StepKey::top("A"),
    ];
    for key in nothing {
        assert_eq!(store.latest_step(&execution_id, &key).await.expect("latest"), None, "nothing under `{key}`");
    }
    assert_eq!(store.latest_step(&unique("e"), &StepKey::top("a")).await.expect("other execution"), None);
}

/// 10,000 small items read back one by one; large items (60 KiB) too; other keys and indexes
/// past the end are None; putting the same items again is harmless.
pub async fn case_fan_out_items_round_trip(store: &dyn Store) {
    let execution_id = unique("e");
    let items: Vec<Value> = (0..MAX_FAN_OUT_ITEMS).map(|i| json!({ "i": i, "name": format!("item-{i}") })).collect();
    let (f, f1) = (StepKey::top("f"), StepKey::new("f", &[1]));
    assert_eq!(store.fan_out_item(&execution_id, &f, 0).await.expect("item before any"), None);
    store.put_fan_out_items(&execution_id, &f, &items).await.expect("put 10,000 items");
    let check = async |key: &StepKey, items: &[Value], indexes: &[usize]| {
        for &i in indexes {
            let index = u32::try_from(i).expect("a small index");
            let got = store.fan_out_item(&execution_id, key, index).await.expect("fan-out item");
            assert_eq!(got.as_ref(), items.get(i), "item {i} of `{key}`");
        }
    };
    check(&f, &items, &[0, 1, 99, 100, 101, 4_999, 5_000, 9_998, 9_999, 10_000, 12_345]).await;
    store.put_fan_out_items(&execution_id, &f, &items).await.expect("put the same items again");
    check(&f, &items, &[0, 5_000, 9_999, 10_000]).await;

    // Large items (the runner allows up to 64 KiB each) of a nested fan-out key.
    let large: Vec<Value> = (0..7).map(|i| json!({ "i": i, "blob": blob(60 * 1024) })).collect();
    store.put_fan_out_items(&execution_id, &f1, &large).await.expect("put large items");
    check(&f1, &large, &[0, 1, 2, 3, 4, 5, 6, 7]).await;
    check(&f, &items, &[0, 6, 9_999]).await;
    for key in [StepKey::top("fa"), StepKey::new("f", &[0]), StepKey::new("f", &[1, 0]), StepKey::top("g")] {
        assert_eq!(store.fan_out_item(&execution_id, &key, 0).await.expect("item"), None, "nothing under `{key}`");
    }
    assert_eq!(store.fan_out_item(&unique("e"), &f, 0).await.expect("other execution"), None);
    assert_eq!(store.fan_out_item(&execution_id, &f, u32::MAX).await.expect("index u32::MAX"), None);

    let too_many = vec![json!(1); MAX_FAN_OUT_ITEMS + 1];
    let h = StepKey::top("h");
    let refused = store.put_fan_out_items(&execution_id, &h, &too_many).await;
    assert!(matches!(refused, Err(StoreError::TooLarge(_))), "10,001 items: {refused:?}");
    let refused = store.put_fan_out_items(&execution_id, &h, &[blob(MAX_FAN_OUT_VALUE_BYTES + 1)]).await;
    assert!(matches!(refused, Err(StoreError::TooLarge(_))), "an item over the limit: {refused:?}");
}

/// Counts a branch done with a token of its own; whether every branch is done.
async fn done(
    store: &dyn Store,
    execution_id: &str,
    key: &StepKey,
    index: u32,
    total: u32,
    result: &Value,
) -> Result<bool, StoreError> {
    let by = unique("by");
    store.complete_branch(execution_id, key, index, total, result, &by).await.map(|counted| counted.all_done)
}

/// Of deliveries counting one branch at the same moment, exactly one counted it first; the
/// same call made again (its answer was lost) still did; a later one did not, and nobody
/// counts a branch first once it was counted.
pub async fn case_one_delivery_counts_a_branch_first(store: &dyn Store) {
    let (execution_id, f) = (unique("e"), StepKey::top("f"));
    let tokens: Vec<String> = (0..8).map(|_| unique("by")).collect();
    let results: Vec<Value> = tokens.iter().map(|by| json!(by)).collect();
    let counts =
        tokens.iter().zip(&results).map(|(by, result)| store.complete_branch(&execution_id, &f, 1, 3, result, by));
    let counted: Vec<Counted> = join_all(counts).await.into_iter().map(|c| c.expect("count")).collect();
    let firsts: Vec<usize> = (0..8).filter(|n| counted[*n].first).collect();
    assert_eq!(firsts.len(), 1, "exactly one of eight simultaneous counts is first: {counted:?}");
    assert!(counted.iter().all(|c| !c.all_done), "one of three branches done");
    let winner = &tokens[firsts[0]];
    let results = store.branch_results(&execution_id, &f).await.expect("results");
    assert_eq!(results, vec![(1, json!(winner))], "the first count's result is kept");
    let again = store.complete_branch(&execution_id, &f, 1, 3, &json!(winner), winner).await.expect("retried");
    assert_eq!(again, Counted { all_done: false, first: true }, "a retried call is still the first");
    let loser = &tokens[(firsts[0] + 1) % 8];
    let late = store.complete_branch(&execution_id, &f, 1, 3, &json!(loser), loser).await.expect("late");
    assert!(!late.first, "a duplicate is not first");
    for index in [0, 2] {
        let by = unique("by");
        let counted = store.complete_branch(&execution_id, &f, index, 3, &json!(index), &by).await.expect("count");
        assert!(counted.first, "branch {index} counted for the first time");
        assert_eq!(counted.all_done, index == 2);
    }
    let batch = [(0, json!("batch"))];
    assert!(store.complete_branches(&execution_id, &f, 3, &batch).await.expect("batch"), "still all done");
    let after = store.complete_branch(&execution_id, &f, 0, 3, &json!(0), &unique("by")).await.expect("after");
    assert_eq!(after, Counted { all_done: true, first: false });
}

/// A branch is counted once: completing it again (a redelivery) keeps the first result;
/// the join reports all done only with the last missing branch, and again to redeliveries;
/// results over the limit and indexes outside the fan-out are refused.
pub async fn case_complete_branch_counts_once(store: &dyn Store) {
    let execution_id = unique("e");
    let complete = async |index: u32, result: &Value| done(store, &execution_id, &key("f"), index, 4, result).await;
    assert_eq!(store.branch_results(&execution_id, &key("f")).await.expect("no results"), vec![]);
    assert!(!complete(1, &json!({ "first": true })).await.expect("complete 1"));
    assert!(!complete(1, &json!({ "second": true })).await.expect("again"), "a redelivery is not a new branch");
    assert!(!complete(0, &Value::Null).await.expect("complete 0"));
    assert!(!complete(0, &json!("late")).await.expect("0 again"));
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(results, vec![(0, Value::Null), (1, json!({ "first": true }))], "the first results, in order");

    let largest = blob(MAX_FAN_OUT_VALUE_BYTES);
    assert!(!complete(2, &largest).await.expect("largest result"));
    let over = complete(3, &blob(MAX_FAN_OUT_VALUE_BYTES + 1)).await;
    assert!(matches!(over, Err(StoreError::TooLarge(_))), "a result over the limit: {over:?}");
    let outside = complete(4, &json!(1)).await;
    assert!(matches!(outside, Err(StoreError::TooLarge(_))), "an index past the fan-out's total: {outside:?}");
    let beyond = done(store, &execution_id, &key("f"), 0, MAX_FAN_OUT_ITEMS as u32 + 1, &json!(1)).await;
    assert!(matches!(beyond, Err(StoreError::TooLarge(_))), "a total no fan-out has: {beyond:?}");
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(results.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2], "refused results are not kept");
    assert_eq!(results[2].1, largest);
    assert!(complete(3, &json!("last")).await.expect("the last branch"), "the last branch completes the join");
    assert!(complete(0, &json!("later")).await.expect("0 once more"), "a redelivery after the join sees it done");
    assert!(complete(3, &json!("again")).await.expect("3 again"));
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(
        results.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        [Value::Null, json!({ "first": true }), largest, json!("last")]
    );
}

/// Fan-outs of sizes around the DynamoDB adapter's 100-branch shards: completed in a
/// scrambled order with every branch also redelivered, the join is done exactly after the
/// last distinct branch, whichever shard it is in.
pub async fn case_join_is_done_only_after_every_branch(store: &dyn Store) {
    for (total, last) in [(1, 0), (2, 0), (100, 57), (101, 100), (250, 150), (300, 299)] {
        let execution_id = unique("e");
        let mut order: Vec<u32> = (0..total).filter(|i| *i != last).collect();
        order.sort_by_key(|i| (i * 7919) % total);
        for index in order {
            for delivery in 0..2 {
                let done = done(store, &execution_id, &key("f"), index, total, &json!(delivery)).await;
                assert!(!done.expect("complete"), "{total} branches: done before branch {last} ({index} #{delivery})");
            }
        }
        assert!(done(store, &execution_id, &key("f"), last, total, &json!(0)).await.expect("last"), "{total}");
        assert!(done(store, &execution_id, &key("f"), last, total, &json!(1)).await.expect("again"), "{total}");
        let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
        assert_eq!(results.len(), total as usize, "{total}");
        assert!(results.iter().all(|(_, r)| *r == json!(0)), "{total}: first deliveries' results");
    }
}

/// 50 branches each delivered twice, `concurrency` completions at once (50 on a real backend):
/// the join is done once every branch is in, whichever delivery comes last, and every branch
/// keeps one result.
pub async fn case_concurrent_completions_count_each_branch_once(store: &dyn Store, concurrency: usize) {
    let execution_id = unique("e");
    let deliveries: Vec<u32> = (0..100).collect();
    let mut finished = Vec::new();
    for window in deliveries.chunks(concurrency.max(1)) {
        let completions = window.iter().map(|&n| {
            let index = n % 50;
            let result = json!({ "index": index, "delivery": n / 50 });
            let execution_id = execution_id.as_str();
            async move { done(store, execution_id, &key("f"), index, 50, &result).await }
        });
        finished.extend(join_all(completions).await.into_iter().map(|c| c.expect("complete")));
    }
    // The first deliveries all happen before the first redelivery only when run one by one.
    if concurrency <= 1 {
        assert_eq!(finished.iter().position(|done| *done), Some(49), "done exactly with the 50th branch");
    }
    assert!(finished[50..].iter().all(|done| *done), "every redelivery after all first deliveries sees it done");
    assert!(done(store, &execution_id, &key("f"), 7, 50, &json!("again")).await.expect("redelivery"));
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(results.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    for (index, result) in results {
        assert_eq!(result["index"], json!(index), "branch {index} keeps its own result");
    }
}

/// `limits.branches` results, completed out of order (`limits.concurrent_completions` at a
/// time), read back complete and in index order, across many query pages; fan-outs whose keys
/// share a prefix (`f@1`, `fa`) are counted and listed apart.
pub async fn case_branch_results_are_ordered_and_complete(store: &dyn Store, limits: SuiteLimits) {
    let execution_id = unique("e");
    let count = limits.branches;
    // Out of order: the even indexes downwards, then the odd ones upwards.
    let order: Vec<u32> = (0..count).rev().filter(|i| i % 2 == 0).chain((0..count).filter(|i| i % 2 == 1)).collect();
    // About 2.5 MB of results in all, whatever the count: more than two 1 MB query pages.
    let pad = (2_500_000 / count.max(1) as usize).max(150);
    let result = |index: u32| json!({ "index": index, "pad": "r".repeat(pad + (index % 7) as usize) });
    let mut finished = Vec::new();
    for window in order.chunks(limits.concurrent_completions.max(1)) {
        let completions = window.iter().map(|&index| {
            let (execution_id, result) = (execution_id.as_str(), result(index));
            async move { done(store, execution_id, &key("f"), index, count, &result).await }
        });
        finished.extend(join_all(completions).await.into_iter().map(|done| done.expect("complete")));
    }
    assert!(finished.iter().any(|done| *done), "the last completions see every branch");
    if limits.concurrent_completions <= 1 {
        assert_eq!(finished.iter().position(|done| *done), Some(count as usize - 1), "done only with the last");
    }
    for (text, index) in [("f@1", 0), ("f@1", 5), ("fa", 3)] {
        let done = done(store, &execution_id, &key(text), index, 6, &json!(text)).await.expect("other key");
        assert!(!done, "`{text}` is counted apart from `f`");
    }
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(results.len(), count as usize, "every result is listed");
    assert!(results.iter().enumerate().all(|(i, (index, _))| *index as usize == i), "results are in index order");
    assert!(results.iter().all(|(index, value)| *value == result(*index)), "every result is its branch's");
    assert_eq!(
        store.branch_results(&execution_id, &key("f@1")).await.expect("f@1"),
        vec![(0, json!("f@1")), (5, json!("f@1"))]
    );
    assert_eq!(store.branch_results(&execution_id, &key("fa")).await.expect("fa"), vec![(3, json!("fa"))]);
    assert!(done(store, &execution_id, &key("f"), 0, count, &json!("redelivered")).await.expect("again"));
}

/// Branches completed in a batch count once each, alongside single completions and
/// redeliveries, and the batch that completes the last branch says so.
pub async fn case_complete_branches_in_a_batch_counts_each_once(store: &dyn Store) {
    let execution_id = unique("e");
    assert!(!done(store, &execution_id, &key("f"), 2, 5, &json!("single")).await.expect("single"));
    let first = [(0, json!("a")), (1, json!("b")), (2, json!("again"))];
    assert!(!store.complete_branches(&execution_id, &key("f"), 5, &first).await.expect("first batch"));
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(results, vec![(0, json!("a")), (1, json!("b")), (2, json!("single"))], "the first result of each wins");
    let last = [(3, json!("d")), (1, json!("b2")), (4, json!("e"))];
    assert!(
        store.complete_branches(&execution_id, &key("f"), 5, &last).await.expect("last batch"),
        "all five are done"
    );
    assert!(store.complete_branches(&execution_id, &key("f"), 5, &first).await.expect("redelivered batch"));
    let results = store.branch_results(&execution_id, &key("f")).await.expect("results");
    assert_eq!(results.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let outside = store.complete_branches(&execution_id, &key("g"), 2, &[(0, json!(1)), (2, json!(1))]).await;
    assert!(matches!(outside, Err(StoreError::TooLarge(_))), "an index past the total: {outside:?}");
}

/// Inline branches' attempts are recorded with their count; a branch stops at an attempt
/// another delivery recorded first, and such a batch counts nothing.
pub async fn case_record_branches_records_then_counts_or_stops_at_a_conflict(store: &dyn Store) {
    let execution_id = unique("e");
    let branches = vec![vec![attempt("b@0", 1), attempt("c@0", 1)], vec![attempt("b@1", 1)]];
    let results = [(0, json!("zero")), (1, json!("one"))];
    let done = store.record_branches(&execution_id, &key("f"), 3, &branches, &results).await.expect("batch");
    assert_eq!(done, Some(false), "two of three branches are done");
    for written in branches.iter().flatten() {
        let read = store.get_step(&execution_id, &key(&written.step), 1).await.expect("read");
        assert_eq!(read.as_ref(), Some(written), "{} is recorded", written.step);
    }
    assert_eq!(store.branch_results(&execution_id, &key("f")).await.expect("results"), results.to_vec());

    // Branch 2's first attempt was recorded by another delivery: its second is not written,
    // branch 3's are, and nothing is counted.
    let earlier = StepAttempt { output: Some(json!("the other delivery")), ..attempt("b@2", 1) };
    assert_eq!(store.record_step(&execution_id, &earlier).await.expect("earlier"), FirstWrite::Written);
    let conflicting = vec![vec![attempt("b@2", 1), attempt("c@2", 1)]];
    let done = store.record_branches(&execution_id, &key("f"), 3, &conflicting, &[(2, json!("two"))]).await;
    assert_eq!(done.expect("conflicting batch"), None);
    assert_eq!(
        store.get_step(&execution_id, &key("b@2"), 1).await.expect("read"),
        Some(earlier),
        "the first record stays"
    );
    assert_eq!(store.get_step(&execution_id, &key("c@2"), 1).await.expect("read"), None, "built on a result that lost");
    assert_eq!(store.branch_results(&execution_id, &key("f")).await.expect("results").len(), 2, "nothing counted");

    // Run again from what is recorded: the last branch completes the fan-out.
    let again = vec![vec![attempt("c@2", 1)]];
    let done = store.record_branches(&execution_id, &key("f"), 3, &again, &[(2, json!("two"))]).await.expect("again");
    assert_eq!(done, Some(true));
    // A redelivered batch of completions alone (no attempts) still says done.
    assert_eq!(
        store.record_branches(&execution_id, &key("f"), 3, &[], &results).await.expect("redelivered"),
        Some(true)
    );
}
