//! Retry delays. Without `retry_delay` a step follows the product's auto-retry schedule —
//! about 10, 20, 30, 50 and 80 seconds, then 80 s for any further retry; with `retry_delay`
//! the wait starts there and doubles for each further retry. Both are capped at the longest
//! single queue delay (15 minutes), spread by ±20% jitter so that many executions failing
//! together do not retry together, and never shorter than what the failure asked for
//! (`Retry-After`). The jitter comes from a seed, so the engine stays a pure function.

use std::time::Duration;

use super::MAX_QUEUE_DELAY;
use crate::model::Step;
use crate::record::StepError;

/// The default schedule, in seconds, of the waits before retries 1, 2, 3...
pub const DEFAULT_SCHEDULE_SECS: [u64; 5] = [10, 20, 30, 50, 80];
/// The jitter spread: a delay is multiplied by a factor in `1 ± JITTER`.
pub const JITTER: f64 = 0.2;

/// The delay before the attempt that follows failed attempt `attempt` (1-based).
pub fn retry_delay(step: &Step, attempt: u32, error: &StepError, seed: u64) -> Duration {
    let n = attempt.max(1);
    let base = match &step.retry_delay {
        Some(first) => first.duration().saturating_mul(2u32.saturating_pow((n - 1).min(16))),
        None => {
            let index = usize::try_from(n - 1).unwrap_or(usize::MAX).min(DEFAULT_SCHEDULE_SECS.len() - 1);
            Duration::from_secs(DEFAULT_SCHEDULE_SECS[index])
        }
    };
    let jittered = base.min(MAX_QUEUE_DELAY).mul_f64(jitter_factor(seed));
    let asked = Duration::from_millis(error.retry_after_ms.unwrap_or(0));
    jittered.max(asked).min(MAX_QUEUE_DELAY)
}

/// A factor in [1 - JITTER, 1 + JITTER], spread evenly over seeds.
fn jitter_factor(seed: u64) -> f64 {
    // A multiplicative hash so that neighbouring seeds land far apart.
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    let unit = mixed as f64 / (1u64 << 53) as f64;
    1.0 - JITTER + 2.0 * JITTER * unit
}

/// A seed for the jitter of one retry, from what identifies it.
pub fn jitter_seed(execution_id: &str, step_key: &str, attempt: u32) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in execution_id.bytes().chain([0]).chain(step_key.bytes()).chain(attempt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
