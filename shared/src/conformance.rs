//! The conformance suites every adapter must pass: [`store_suite`] for `Store` and
//! [`queue_suite`] for `Queue`, each a list of `pub async fn case_*` taking the trait object (in
//! [`projects`], [`executions`], [`files`] and [`queue`])
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

pub mod executions;
pub mod files;
pub mod projects;
pub mod queue;

use chrono::DateTime;

use crate::ports::{Queue, Store};
use crate::record::Timestamp;

/// Runs every store case against `store`.
pub async fn store_suite(store: &dyn Store) {
    projects::case_project_create_get_and_duplicate(store).await;
    projects::case_deploy_versions_only_on_change(store).await;
    projects::case_concurrent_deploys_get_distinct_versions(store).await;
    executions::case_execution_create_get_and_duplicate(store).await;
    executions::case_finish_execution_only_once(store).await;
    executions::case_record_step_first_writer_wins(store).await;
    executions::case_concurrent_record_step_has_one_winner(store).await;
    executions::case_list_steps_is_ordered_and_complete(store).await;
    executions::case_settle_response_first_wins(store).await;
    executions::case_timestamps_round_trip_to_the_millisecond(store).await;
    executions::case_step_logs_round_trip(store).await;
    executions::case_set_execution_status_moves_only_from_the_given_status(store).await;
    files::case_file_round_trips(store).await;
    files::case_file_over_the_limit_is_too_large(store).await;
    files::case_file_is_scoped_to_its_execution(store).await;
    files::case_unknown_or_forged_file_is_none(store).await;
    files::case_files_of_one_execution_are_independent(store).await;
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

/// A timestamp with an odd millisecond, to catch adapters that store seconds.
fn at_ms(ms: i64) -> Timestamp {
    DateTime::from_timestamp_millis(ms).expect("timestamp in range")
}
