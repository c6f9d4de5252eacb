//! `Queue` on SQLite: both queues live in the `messages` table, poison messages in
//! `dead_letters`.
//!
//! Invariants: a message is visible when `visible_at_ms <= now`; receiving it, in one
//! IMMEDIATE transaction, moves `visible_at_ms` past the visibility timeout, gives it a fresh
//! receipt and counts the receive, so two receivers never get the same message while it is
//! invisible. A message received more than `max_receives` times is delivered as a dead letter
//! (`Received::dead_letter`: its consumer runs the dead-letter handling, not the message) and
//! kept in `dead_letters` once acked; after `DEAD_LETTER_NOTICES` such deliveries it moves to
//! `dead_letters` unhandled. Only the latest receipt can ack a message.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params};

use super::{Cached, Sqlite, backend, ceil_ms, now_ms, now_ms_ceil};
use crate::ports::{ConsumeQueue, MAX_QUEUE_DELAY, Outgoing, QueueError, QueueName, Received, SendQueue, StoreError};

/// The longest a long-polling receiver sleeps before looking again, in case another process
/// sent to the same database file (its sends cannot wake our `Notify`).
const POLL_INTERVAL: Duration = Duration::from_millis(200);

fn queue_error(e: StoreError) -> QueueError {
    QueueError::Backend(e.to_string())
}

pub(super) fn insert(conn: &Connection, queue: QueueName, message: &Outgoing, now: i64) -> Result<(), StoreError> {
    let delay = ceil_ms(message.delay.min(MAX_QUEUE_DELAY));
    // Counted from `now` rounded up, so the delay is never cut short; no delay means at once.
    let visible_at = if delay == 0 { now } else { now_ms_ceil().saturating_add(delay) };
    conn.run(
        "INSERT INTO messages (queue, body, visible_at_ms, receive_count, sent_at_ms) VALUES (?1, ?2, ?3, 0, ?4)",
        params![queue.as_str(), message.body, visible_at, now],
    )
    .map_err(backend)?;
    Ok(())
}

/// How many times a message past `max_receives` is handed to a consumer as a dead letter (for
/// its dead-letter handling, which runs no step) before it is moved to `dead_letters` unhandled.
const DEAD_LETTER_NOTICES: u32 = 2;

/// How the receipt of a message delivered as a dead letter begins.
const DEAD_RECEIPT: &str = "dead-";

/// What one receive transaction found.
struct Take {
    delivered: Vec<Received>,
    /// When the earliest invisible message of the queue becomes visible, if any.
    next_visible_at_ms: Option<i64>,
}

/// The most messages one `receive` delivers.
const MAX_BATCH: usize = 100;

/// Up to `limit` visible messages of queue `?1` at `?2`, in (visibility, id) order: the
/// index's order (no `ORDER BY`, see `super::Cached`).
pub(super) fn visible_sql(limit: usize) -> String {
    format!(
        "SELECT id, body, receive_count, sent_at_ms FROM messages INDEXED BY messages_by_visibility
         WHERE queue = ?1 AND visible_at_ms <= ?2 LIMIT {limit}"
    )
}

/// Delivers up to `max` visible messages of `queue`, dead-lettering the over-received ones.
fn take(
    conn: &mut Connection,
    queue: QueueName,
    max: usize,
    visibility_ms: i64,
    max_receives: u32,
) -> Result<Take, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    let now = now_ms();
    // A zero visibility hides nothing; any other is counted from `now` rounded up.
    let hidden_until = if visibility_ms == 0 { now } else { now_ms_ceil().saturating_add(visibility_ms) };
    let mut delivered: Vec<Received> = Vec::new();
    let mut delivered_ids: Vec<i64> = Vec::new();
    loop {
        let wanted = max - delivered.len();
        let candidates: Vec<(i64, String, u32, i64)> = {
            // One cached statement per batch size (a handful: receivers ask for a few).
            let mut statement = tx.prepare_cached(&visible_sql(wanted)).map_err(backend)?;
            let rows = statement
                .query_map(params![queue.as_str(), now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)?
        };
        let mut dead = 0;
        for (id, body, receive_count, sent_at) in candidates {
            if delivered_ids.contains(&id) {
                // Delivered in this call with a zero visibility timeout: not twice in one batch.
                continue;
            }
            let count = receive_count.saturating_add(1);
            if count > max_receives.saturating_add(DEAD_LETTER_NOTICES) {
                tx.run(
                    "INSERT INTO dead_letters (queue, body, receive_count, sent_at_ms, dead_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![queue.as_str(), body, receive_count, sent_at, now],
                )
                .map_err(backend)?;
                tx.run("DELETE FROM messages WHERE id = ?1", params![id]).map_err(backend)?;
                dead += 1;
                continue;
            }
            // A dead letter's receipt says so: its ack keeps it in `dead_letters`, and every
            // other ack stays one DELETE.
            let dead_letter = count > max_receives;
            let prefix = if dead_letter { DEAD_RECEIPT } else { "" };
            let receipt = format!("{prefix}{id}-{}", uuid::Uuid::new_v4().simple());
            tx.run(
                "UPDATE messages SET visible_at_ms = ?2, receipt = ?3, receive_count = ?4 WHERE id = ?1",
                params![id, hidden_until, receipt, count],
            )
            .map_err(backend)?;
            delivered_ids.push(id);
            delivered.push(Received { body, receipt, receive_count: count, dead_letter });
        }
        // Dead letters made room for more; otherwise nothing else is visible.
        if dead == 0 || delivered.len() >= max {
            break;
        }
    }
    let next_visible_at_ms: Option<i64> = tx
        .row(
            "SELECT MIN(visible_at_ms) FROM messages WHERE queue = ?1 AND visible_at_ms > ?2",
            params![queue.as_str(), now],
            |r| r.get(0),
        )
        .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(Take { delivered, next_visible_at_ms })
}

impl Sqlite {
    /// Bodies of the messages of `queue` that were moved to the dead letters, oldest first.
    pub async fn dead_letters(&self, queue: QueueName) -> Result<Vec<String>, StoreError> {
        self.call(move |conn| {
            let mut statement =
                conn.prepare("SELECT body FROM dead_letters WHERE queue = ?1 ORDER BY id").map_err(backend)?;
            let rows = statement.query_map(params![queue.as_str()], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl SendQueue for Sqlite {
    async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError> {
        self.call(move |conn| insert(conn, queue, &message, now_ms())).await.map_err(queue_error)?;
        self.sent.notify_waiters();
        Ok(())
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        // One transaction: the whole batch is accepted or none of it (never a partial batch).
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let now = now_ms();
            for message in &messages {
                insert(&tx, queue, message, now)?;
            }
            tx.commit().map_err(backend)
        })
        .await
        .map_err(queue_error)?;
        self.sent.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl ConsumeQueue for Sqlite {
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // A batch is at most SQS's 10 in practice; the cap bounds the statements cached per size.
        let max = max.min(MAX_BATCH);
        let deadline = tokio::time::Instant::now() + wait;
        let visibility_ms = ceil_ms(visibility);
        let max_receives = self.max_receives;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let sent = self.sent.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();

            let take = self
                .call(move |conn| take(conn, queue, max, visibility_ms, max_receives))
                .await
                .map_err(queue_error)?;
            if !take.delivered.is_empty() {
                return Ok(take.delivered);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut wake = deadline.min(now + POLL_INTERVAL);
            if let Some(at) = take.next_visible_at_ms {
                // At least 1 ms, so a clock just short of `at` does not spin.
                let ms = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0).max(1);
                let until = Duration::from_millis(ms);
                wake = wake.min(now + until);
            }
            tokio::select! {
                _ = &mut sent => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_string();
        // A stale receipt (the message was received again since) deletes nothing, like SQS
        // refusing an expired handle; acking twice is harmless.
        self.call(move |conn| {
            if !receipt.starts_with(DEAD_RECEIPT) {
                conn.run("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2", params![queue.as_str(), receipt])
                    .map_err(backend)?;
                return Ok(());
            }
            // A dead letter that was handled is kept in `dead_letters`, as SQS keeps it in the
            // dead-letter queue.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            tx.run(
                "INSERT INTO dead_letters (queue, body, receive_count, sent_at_ms, dead_at_ms)
                 SELECT queue, body, receive_count, sent_at_ms, ?3 FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue.as_str(), receipt, now_ms()],
            )
            .map_err(backend)?;
            tx.run("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2", params![queue.as_str(), receipt])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(())
        })
        .await
        .map_err(queue_error)
    }
}
