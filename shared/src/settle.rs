//! Settled responses: the one module that writes what a synchronous caller gets, and the
//! trigger's wait for it. Whatever is settled first wins (the store decides); every write goes
//! through [`settle`], which also wakes a caller waiting in this process at once (an
//! in-process signal — the store stays the source of truth: a woken waiter reads the store,
//! and a waiter whose answer is settled by another process finds it by polling, with a
//! growing interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::engine::Answer;
use crate::ports::{ExecutionStore, FirstWrite, StoreError};
use crate::record::{SettledResponse, Timestamp, now};

/// The longest a waiter sleeps between two looks at the store.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// In-process wake-ups for callers waiting on their executions' responses: the first caller
/// and any repeat of its request with the same `Idempotency-Key` wait on one execution.
#[derive(Default)]
pub struct Signals {
    waiting: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

/// A registered waiter; unregisters itself when dropped.
pub struct Watch<'a> {
    signals: &'a Signals,
    execution_id: String,
    notify: Arc<Notify>,
}

impl Signals {
    /// Registers a waiter for `execution_id` (before anything can settle it: a settle that
    /// happens between registering and waiting is not missed). Every waiter of an execution
    /// is woken.
    pub fn watch(&self, execution_id: &str) -> Watch<'_> {
        let notify = Arc::new(Notify::new());
        self.lock().entry(execution_id.to_string()).or_default().push(notify.clone());
        Watch { signals: self, execution_id: execution_id.to_string(), notify }
    }

    fn notify(&self, execution_id: &str) {
        if let Some(waiters) = self.lock().get(execution_id) {
            for notify in waiters {
                // A stored permit: the waiter wakes even if it is not waiting yet.
                notify.notify_one();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Notify>>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut waiting = self.signals.lock();
        if let Some(waiters) = waiting.get_mut(&self.execution_id) {
            waiters.retain(|notify| !Arc::ptr_eq(notify, &self.notify));
            if waiters.is_empty() {
                waiting.remove(&self.execution_id);
            }
        }
    }
}

/// The stored form of an answer, settled at `at`.
pub fn settled_response(answer: Answer, at: Timestamp) -> SettledResponse {
    match answer {
        Answer::Step(response) => SettledResponse::Step { response, at },
        Answer::Ended(response) => SettledResponse::WorkflowEnded { response, at },
        Answer::TimedOut => SettledResponse::TimedOut { at },
    }
}

/// Settles `answer` for `execution_id`, first writer wins, and wakes its waiter.
pub async fn settle(
    store: &dyn ExecutionStore,
    signals: &Signals,
    execution_id: &str,
    answer: Answer,
) -> Result<FirstWrite<SettledResponse>, StoreError> {
    let written = store.settle_response(execution_id, &settled_response(answer, now())).await?;
    signals.notify(execution_id);
    Ok(written)
}

/// Waits until something is settled for the watched execution. The response waiter settles
/// 542 at the deadline; if nothing is settled by `give_up_at` (the waiter is late), this
/// settles 542 itself — whichever write is first is what every reader sees.
pub async fn wait(
    store: &dyn ExecutionStore,
    watch: &Watch<'_>,
    give_up_at: Instant,
    poll_interval: Duration,
) -> Result<SettledResponse, StoreError> {
    let mut interval = poll_interval;
    loop {
        let left = give_up_at.saturating_duration_since(Instant::now());
        // Registered before the execution started, the watch holds a wake-up for an answer
        // settled in this process even before this wait began: look only when woken, or
        // after the poll interval (an answer settled elsewhere).
        tokio::select! {
            _ = watch.notify.notified() => {}
            _ = tokio::time::sleep(interval.min(left)) => {
                interval = (interval * 3 / 2).min(MAX_POLL_INTERVAL);
            }
        }
        if let Some(settled) = store.get_response(&watch.execution_id).await? {
            return Ok(settled);
        }
        if Instant::now() >= give_up_at {
            return Ok(match settle(store, watch.signals, &watch.execution_id, Answer::TimedOut).await? {
                FirstWrite::Written => SettledResponse::TimedOut { at: now() },
                FirstWrite::Existing(earlier) => earlier,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn woken(watch: &Watch<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(200), watch.notify.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn every_waiter_of_an_execution_is_woken_and_a_dropped_one_leaves_the_others() {
        let signals = Signals::default();
        let (first, repeat, other) = (signals.watch("e1"), signals.watch("e1"), signals.watch("e2"));
        signals.notify("e1");
        assert!(woken(&first).await && woken(&repeat).await, "both waiters of e1 wake");
        assert!(!woken(&other).await, "a waiter of another execution does not");
        drop(repeat);
        signals.notify("e1");
        assert!(woken(&first).await, "the first waiter is still registered");
        drop((first, other));
        assert!(signals.lock().is_empty(), "nothing is left registered");
    }
}
