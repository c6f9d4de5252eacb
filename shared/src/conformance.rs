//! The conformance suites every adapter must pass: [`store_suite`] for `Store` and
//! [`queue_suite`] for `Queue`, each a list of `pub async fn case_*` taking the trait object (in
//! [`projects`], [`executions`], [`files`], [`fan_out`], [`connect`], [`idempotency`],
//! [`triggers`], [`notifications`] and [`queue`])
//! (run them one by one to narrow a failure down). Cases assert by panicking: this is test code.
//!
//! Invariants: store cases use fresh uuid ids, so they can share one table or database with
//! each other and with anything else; queue cases need queues nobody else reads, and each case
//! leaves them empty (it acks what it receives).
//!
//! Backend differences, as found by these cases:
//! - Delays: SQLite honours them to the millisecond; SQS counts whole seconds, so a 1.5 s
//!   delay becomes 2 s (rounded up, never down). Both cap delays at 900 s.
//! - Long polling: SQS waits at most 20 s and whole seconds (rounded up); SQLite waits exactly.
//! - Visibility: SQLite counts milliseconds, SQS whole seconds (rounded up).
//! - Receive counts: SQS's `ApproximateReceiveCount` is approximate under concurrency; SQLite's
//!   is exact. Dead letters: SQLite keeps them in a table (`Sqlite::dead_letters`), SQS moves
//!   them to the `-dlq` queue; both after `max_receives` receives.
//! - Batches: SQLite accepts a batch all or nothing; SQS may refuse single entries
//!   (`PartialBatch`), and sends 10 per request.
//! - Acks: SQLite ignores a stale receipt (the message was received again since); SQS may
//!   accept or refuse one. Never rely on acking with an old receipt.
//! - Consistency: DynamoDB reads are all strongly consistent, so both stores read their own
//!   writes at once, as these cases require.
//! - Files: SQLite keeps a file in one row; DynamoDB splits it into 300 KiB chunk items and
//!   writes a manifest item last, so a file that failed half-way is invisible. Both take
//!   exactly `MAX_FILE_BYTES` and refuse one byte more, and both read a file only through the
//!   execution it was stored for.
//! - Fan-outs: SQLite keeps one row per item and per completed branch and counts the rows in
//!   the transaction that inserts one; DynamoDB keeps items in chunk items (100 items or
//!   64 KiB) and joins with idempotent writes: a conditional put of the branch item, then
//!   `ADD` of its index to a number set per 100 branches, then of the full shard to the
//!   join's set. Both refuse an item or a result over `MAX_FAN_OUT_VALUE_BYTES` (350 KiB),
//!   more than `MAX_FAN_OUT_ITEMS` items and a branch index outside its fan-out
//!   (`TooLarge`). `complete_branch` says "all done" from the completion of the last missing
//!   branch on, never before; concurrent last completions may both say so.
//! - moto (the local AWS-API server the DynamoDB adapter is tested on) runs requests side by
//!   side without a lock, so two concurrent conditional writes could both pass, and scans
//!   the whole table on every query. `infra/moto.sh` therefore starts it through
//!   `infra/moto_server.py`, which makes each DynamoDB request atomic (as on AWS) and lets a
//!   query read only its partition; with that, the suite runs with [`SuiteLimits::FULL`] on
//!   moto too.
//! - Idempotency keys: SQLite serialises claims in an immediate transaction and deletes up to
//!   100 expired rows on each claim; DynamoDB claims with one conditional `PutItem`
//!   (`attribute_not_exists(pk) OR expires_at < :now`, the live item returned on failure) and
//!   leaves expired items to the table's TTL. Both treat a record past its `expires_at` as
//!   absent, to the millisecond.
//! - Credential identities: SQLite rewrites a user's rows of `credential_identities` in the
//!   transaction that writes the credentials row; DynamoDB keeps one item per entry under its
//!   own partition and writes those that change in one `TransactWriteItems` with the
//!   credential item, conditioned on the record read before (a replace or delete that loses
//!   to a concurrent write reads again, up to 5 times, then fails retryably: concurrent
//!   replaces of one user's credentials may fail on DynamoDB where SQLite serialises them).
//!   Both return users in UTF-8 byte order.
//! - The schedule ledger: SQLite lists due rows from a partial index in (next fire, project,
//!   workflow, user) order and pages by that tuple; DynamoDB reads the sparse GSI `due`, in
//!   `next_fire` order, rows of the same millisecond in the index's own order (each once
//!   across pages, but not necessarily by project, workflow and user), and eventually
//!   consistent: on AWS a row put or advanced a moment ago may be missing from, or still be
//!   listed with its old next fire in, the due listing (moto applies index writes at once).
//!   The compare and swap (`advance_schedule`) is exact on both. A cursor is an SQLite
//!   position or a DynamoDB start key: never hand one to the other backend.
//! - Webhook deliveries: both list by delivery id, newest first, which is receiving order
//!   because ids are UUIDv7. SQLite keeps the record as one JSON row and deletes up to 100
//!   expired rows on each put; DynamoDB keeps the body raw beside the JSON of the rest,
//!   refuses an item over about 400 KB (`TooLarge`; a 256 KiB body fits), filters the
//!   integration and unrouted listings after reading (the read costs the deliveries passed
//!   over) and leaves expired items to the table's TTL. Both hide a delivery from the moment
//!   it is `WEBHOOK_RETENTION_DAYS` old, to the millisecond.
//! - Notification destinations: SQLite counts a project's rows and inserts in one immediate
//!   transaction; DynamoDB keeps a counter item beside the destination items and changes both
//!   in one `TransactWriteItems` (the counter's update conditioned on the limit), so concurrent
//!   adds may fail retryably on DynamoDB (a transaction conflict) where SQLite serialises them.
//!   Neither ever exceeds the limit.
//! - Users: SQLite lists its `users` table; DynamoDB keeps an index item per user
//!   (`USERS#<project>` / user id), written by `ensure_user` and `update_user` before the user
//!   item, so users recorded before the index existed are listed from their next request.

pub mod connect;
pub mod executions;
pub mod fan_out;
pub mod files;
pub mod history;
pub mod idempotency;
pub mod notifications;
pub mod projects;
pub mod queue;
pub mod start;
pub mod triggers;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use chrono::DateTime;

use crate::ports::{Queue, StartExecution, Store};
use crate::record::Timestamp;

/// How hard `store_suite_with` pushes the backend. Real backends take [`SuiteLimits::FULL`];
/// an emulator that cannot do more gets less, and the difference is written down above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteLimits {
    /// How many branches are completed to check `branch_results` (at most `MAX_FAN_OUT_ITEMS`).
    pub branches: u32,
    /// How many `complete_branch` calls run at once (1: one after another).
    pub concurrent_completions: usize,
}

impl SuiteLimits {
    /// Everything the port promises: a fan-out of `MAX_FAN_OUT_ITEMS` branches, completed 50 at
    /// a time.
    pub const FULL: SuiteLimits =
        SuiteLimits { branches: crate::ports::MAX_FAN_OUT_ITEMS as u32, concurrent_completions: 50 };
}

/// Runs every store case against `store`, with [`SuiteLimits::FULL`].
pub async fn store_suite(store: &dyn Store) {
    store_suite_with(store, SuiteLimits::FULL).await;
}

/// Runs every store case against `store`, within `limits`.
pub async fn store_suite_with(store: &dyn Store, limits: SuiteLimits) {
    projects::case_project_create_get_and_duplicate(store).await;
    projects::case_deploy_versions_only_on_change(store).await;
    projects::case_concurrent_deploys_get_distinct_versions(store).await;
    projects::case_list_and_undeploy_keep_versions(store).await;
    projects::case_app_events_are_replaced_per_project(store).await;
    projects::case_test_requests_are_captured_once_per_armed_token(store).await;
    executions::case_execution_create_get_and_duplicate(store).await;
    executions::case_finish_execution_only_once(store).await;
    executions::case_record_step_first_writer_wins(store).await;
    executions::case_concurrent_record_step_has_one_winner(store).await;
    executions::case_list_steps_is_ordered_and_complete(store).await;
    executions::case_settle_response_first_wins(store).await;
    executions::case_timestamps_round_trip_to_the_millisecond(store).await;
    executions::case_step_logs_round_trip(store).await;
    executions::case_set_execution_status_moves_only_from_the_given_status(store).await;
    executions::case_test_flag_round_trips(store).await;
    files::case_file_round_trips(store).await;
    files::case_file_over_the_limit_is_too_large(store).await;
    files::case_file_is_scoped_to_its_execution(store).await;
    files::case_unknown_or_forged_file_is_none(store).await;
    files::case_files_of_one_execution_are_independent(store).await;
    fan_out::case_latest_step_is_the_highest_attempt_of_its_key(store).await;
    fan_out::case_fan_out_items_round_trip(store).await;
    fan_out::case_complete_branch_counts_once(store).await;
    fan_out::case_one_delivery_counts_a_branch_first(store).await;
    fan_out::case_complete_branches_in_a_batch_counts_each_once(store).await;
    fan_out::case_record_branches_records_then_counts_or_stops_at_a_conflict(store).await;
    fan_out::case_join_is_done_only_after_every_branch(store).await;
    fan_out::case_concurrent_completions_count_each_branch_once(store, limits.concurrent_completions).await;
    fan_out::case_branch_results_are_ordered_and_complete(store, limits).await;
    connect::case_integrations_are_replaced_per_project(store).await;
    connect::case_users_are_created_once_and_updated_in_part(store).await;
    connect::case_enablement_is_per_user_and_the_latest_choice_wins(store).await;
    connect::case_concurrent_enables_see_the_switch_once(store).await;
    connect::case_settings_are_per_user_and_scope(store).await;
    connect::case_credentials_are_per_user_and_integration(store).await;
    connect::case_users_are_found_by_their_credentials_identity(store).await;
    connect::case_identity_lookup_returns_at_most_the_first_users(store).await;
    connect::case_replaced_credentials_are_found_by_their_new_identity_only(store).await;
    connect::case_a_swap_moves_the_identity_and_a_lost_swap_changes_nothing(store).await;
    connect::case_deleted_credentials_are_no_longer_found_by_identity(store).await;
    connect::case_identity_lookups_are_isolated_by_project_integration_and_key(store).await;
    connect::case_identity_values_with_separators_and_unicode_are_found_exactly(store).await;
    connect::case_identity_over_the_limits_is_refused(store).await;
    idempotency::case_idempotency_key_is_claimed_once(store).await;
    idempotency::case_idempotency_claim_with_another_hash_sees_the_first_hash(store).await;
    idempotency::case_expired_idempotency_key_can_be_claimed_again(store).await;
    idempotency::case_idempotency_claim_is_completed_or_released_by_its_token(store).await;
    idempotency::case_concurrent_idempotency_claims_have_one_winner(store, CONCURRENT_CLAIMS).await;
    idempotency::case_idempotency_keys_are_isolated_by_project_route_and_caller(store).await;
    triggers::case_schedule_rows_are_put_replaced_and_deleted(store).await;
    triggers::case_due_rows_are_listed_in_order_once_each_across_pages(store).await;
    triggers::case_advance_is_a_compare_and_swap(store).await;
    triggers::case_list_schedules_filters_by_workflow_and_pages(store).await;
    triggers::case_seen_sets_are_swapped_by_version(store).await;
    triggers::case_seen_sets_keep_the_newest_keys(store).await;
    triggers::case_deliveries_are_listed_newest_first(store).await;
    triggers::case_delivered_event_ids_are_recognised(store).await;
    triggers::case_a_large_delivery_body_round_trips(store).await;
    triggers::case_route_lookup_reads_what_the_single_reads_read(store).await;
    triggers::case_users_are_listed_in_order_and_paged(store).await;
    notifications::case_destinations_round_trip_and_are_listed_per_project(store).await;
    notifications::case_a_taken_destination_id_already_exists(store).await;
    notifications::case_destinations_are_limited_per_project_and_deleted_once(store).await;
    notifications::case_concurrent_adds_never_exceed_the_limit(store).await;
}

/// Runs every Task History case (`HistoryStore`) against `store`.
pub async fn history_suite(store: &dyn Store) {
    history::case_history_lists_every_filter_newest_first_across_pages(store).await;
    history::case_history_status_follows_every_move(store).await;
    history::case_replays_are_linked_to_their_original(store).await;
    history::case_only_a_failed_execution_is_redriven_and_each_redrive_counts(store).await;
}

/// How many claims of one idempotency key the suite makes at once.
const CONCURRENT_CLAIMS: usize = 50;

/// Runs every start case: `starter` creates executions in `store` and sends to `queue`, whose
/// steps queue must be unshared.
pub async fn start_suite(starter: &dyn StartExecution, store: &dyn Store, queue: &dyn Queue) {
    start::case_start_creates_the_execution_and_sends_its_messages(starter, store, queue).await;
    start::case_start_many_creates_every_execution_with_its_messages(starter, store, queue).await;
}

/// Runs every queue case against `queue`, whose two queues must be empty and unshared.
pub async fn queue_suite(queue: &dyn Queue) {
    queue::case_send_receive_ack(queue).await;
    queue::case_delayed_message_waits_for_its_delay(queue).await;
    queue::case_unacked_message_comes_back_after_visibility(queue).await;
    queue::case_batch_of_25_is_received_exactly_once(queue).await;
    queue::case_queues_are_separate(queue).await;
}

/// A fresh id, so cases never collide in a shared table or queue.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Runs `futures` concurrently on the current task and returns their outputs in order (the
/// cases hold a borrowed `&dyn Store`, so they cannot spawn tasks).
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut finished = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => finished = false,
                }
            }
        }
        if finished { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|output| output.expect("every future has finished")).collect()
}

/// A timestamp with an odd millisecond, to catch adapters that store seconds.
fn at_ms(ms: i64) -> Timestamp {
    DateTime::from_timestamp_millis(ms).expect("timestamp in range")
}
