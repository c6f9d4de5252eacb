//! Retry delays: exponential backoff from the step's `retry_delay` (default 10 s), doubling
//! per attempt and capped at the longest single queue delay (15 minutes).

use std::time::Duration;

use crate::model::Step;
use crate::ports::MAX_QUEUE_DELAY;

pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(10);

/// The delay before the attempt that follows failed attempt `attempt` (1-based).
pub fn retry_delay(step: &Step, attempt: u32) -> Duration {
    let base = step.retry_delay.as_ref().map_or(DEFAULT_RETRY_DELAY, |d| d.duration());
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(MAX_QUEUE_DELAY)
}
