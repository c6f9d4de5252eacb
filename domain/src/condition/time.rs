//! Timestamps for `before` / `after` / `same_time`.
//!
//! Invariant: every accepted form maps to one UTC instant: RFC 3339 / ISO 8601 with an
//! offset, a naive date-time (taken as UTC), a date (midnight UTC), or an epoch number (or
//! numeric string) in seconds when below 1e11, otherwise milliseconds. Anything else is `None`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

/// Epoch values below this are seconds; from it on, milliseconds (1e11 s is the year 5138).
const SECONDS_LIMIT: f64 = 1e11;

const OFFSET_FORMATS: [&str; 4] =
    ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%:z"];
const NAIVE_FORMATS: [&str; 4] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];

/// The instant `value` denotes, if it is a timestamp in one of the accepted forms.
pub fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => from_epoch(n.as_f64()?),
        Value::String(text) => parse_text(text.trim()),
        _ => None,
    }
}

fn parse_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(number) = text.parse::<f64>() {
        return from_epoch(number);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Some(at) = OFFSET_FORMATS.iter().find_map(|f| DateTime::parse_from_str(text, f).ok()) {
        return Some(at.with_timezone(&Utc));
    }
    if let Some(at) = NAIVE_FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(text, f).ok()) {
        return Some(at.and_utc());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

fn from_epoch(number: f64) -> Option<DateTime<Utc>> {
    if !number.is_finite() {
        return None;
    }
    let millis = if number.abs() < SECONDS_LIMIT { number * 1000.0 } else { number };
    let millis = millis.round();
    // i64 milliseconds cover far more than chrono's range; out-of-range gives None below.
    if millis.abs() >= 9.2e18 {
        return None;
    }
    DateTime::from_timestamp_millis(millis as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("valid test timestamp").with_timezone(&Utc)
    }

    #[test]
    fn iso_forms_with_offsets_naive_and_dates_parse_to_utc() {
        let noon = at("2026-11-23T12:00:00Z");
        for text in [
            "2026-11-23T12:00:00Z",
            "2026-11-23T13:00:00+01:00",
            "2026-11-23T13:00:00+0100",
            "2026-11-23 12:00:00+00:00",
            "2026-11-23T12:00:00.000Z",
            "2026-11-23T12:00:00",
            "2026-11-23 12:00:00",
            "2026-11-23T12:00",
        ] {
            assert_eq!(parse_timestamp(&json!(text)), Some(noon), "{text}");
        }
        assert_eq!(parse_timestamp(&json!("2026-11-23")), Some(at("2026-11-23T00:00:00Z")));
    }

    #[test]
    fn epoch_numbers_are_seconds_below_1e11_and_milliseconds_above() {
        let instant = at("2026-11-23T12:00:00Z");
        let seconds = instant.timestamp();
        assert_eq!(parse_timestamp(&json!(seconds)), Some(instant));
        assert_eq!(parse_timestamp(&json!(seconds * 1000)), Some(instant));
        assert_eq!(parse_timestamp(&json!(seconds.to_string())), Some(instant));
        assert_eq!(parse_timestamp(&json!((seconds * 1000).to_string())), Some(instant));
        assert_eq!(parse_timestamp(&json!(0.5)), Some(at("1970-01-01T00:00:00.500Z")));
    }

    #[test]
    fn non_timestamps_are_none() {
        for value in
            [json!("yesterday"), json!(""), json!("2026-13-40"), json!(true), json!(null), json!([1]), json!(1e300)]
        {
            assert_eq!(parse_timestamp(&value), None, "{value}");
        }
    }
}
