//! How long an execution is kept: its record, step attempts, settled response, files, fan-out
//! items and branch results all go when it does (issue 21, part 3).
//!
//! Invariants: an execution is past its retention from the moment `started_at + retention`
//! is behind the clock, to the millisecond, and every store treats it as absent from then on,
//! whether or not its rows were deleted yet (SQLite deletes them on `sluice dev`'s timer,
//! DynamoDB through the table's TTL attribute, within days).

use std::time::Duration;

use crate::record::Timestamp;

/// The retention when none is configured: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * DAY_SECONDS);
/// The shortest retention a deployment may configure, in days.
pub const MIN_RETENTION_DAYS: u64 = 1;
/// The longest retention a deployment may configure, in days (about ten years).
pub const MAX_RETENTION_DAYS: u64 = 3650;

const DAY_SECONDS: u64 = 86_400;

/// The moment an execution started at `started_at` expires.
pub fn expires_at(started_at: &Timestamp, retention: Duration) -> Timestamp {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    started_at.checked_add_signed(retention).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Whether an execution started at `started_at` is past its retention at `now`.
pub fn is_expired(started_at: &Timestamp, retention: Duration, now: &Timestamp) -> bool {
    expires_at(started_at, retention) <= *now
}

/// The earliest start an execution may have to be kept at `now`.
pub fn cutoff(now: &Timestamp, retention: Duration) -> Timestamp {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    now.checked_sub_signed(retention).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid retention `{value}`: expected whole days from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}, like `30d`"
)]
pub struct RetentionError {
    pub value: String,
}

/// A retention of `days` whole days, within [`MIN_RETENTION_DAYS`] ..= [`MAX_RETENTION_DAYS`].
pub fn from_days(days: u64) -> Result<Duration, RetentionError> {
    if !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&days) {
        return Err(RetentionError { value: days.to_string() });
    }
    Ok(Duration::from_secs(days * DAY_SECONDS))
}

/// Parses `30d` (or a bare `30`: days either way).
pub fn parse(text: &str) -> Result<Duration, RetentionError> {
    let trimmed = text.trim();
    let digits = trimmed.strip_suffix('d').unwrap_or(trimmed);
    let days: u64 = digits.parse().map_err(|_| RetentionError { value: text.to_string() })?;
    from_days(days).map_err(|_| RetentionError { value: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(ms).expect("in range")
    }

    #[test]
    fn retention_is_whole_days_from_one_to_3650() {
        assert_eq!(parse("30d"), Ok(DEFAULT_RETENTION));
        assert_eq!(parse(" 1 "), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("3650d"), Ok(Duration::from_secs(3650 * 86_400)));
        for bad in ["0d", "3651d", "", "d", "-1d", "1.5d", "30h", "30 d"] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(from_days(0).is_err());
    }

    #[test]
    fn an_execution_expires_at_its_start_plus_the_retention_to_the_millisecond() {
        let day = Duration::from_secs(86_400);
        let start = at(1_764_000_000_000);
        assert_eq!(expires_at(&start, day), at(1_764_086_400_000));
        assert!(!is_expired(&start, day, &at(1_764_086_399_999)));
        assert!(is_expired(&start, day, &at(1_764_086_400_000)));
        assert_eq!(cutoff(&at(1_764_086_400_000), day), start);
        // Absurd durations saturate instead of panicking.
        assert!(!is_expired(&start, Duration::MAX, &at(1_900_000_000_000)));
    }
}
