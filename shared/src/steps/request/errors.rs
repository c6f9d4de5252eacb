//! Classifying transport failures and describing URLs in messages.
//!
//! Invariant: a URL in a message is `scheme://host[:port]/path` — never user info, query or
//! fragment, which may hold secrets — and reqwest's own messages are stripped of their URL.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use url::Url;

use crate::net::{self, NetError};
use crate::record::StepError;

/// The longest `Retry-After` honoured (the longest single queue delay).
pub const MAX_RETRY_AFTER: Duration = crate::ports::MAX_QUEUE_DELAY;

/// `scheme://host[:port]/path`: no user info, query or fragment (they may hold secrets).
pub(super) fn display_url(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or_default(), url.path())
}

/// The same for text that did not parse as a URL.
pub(super) fn display_raw_url(raw: &str) -> String {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let raw = &raw[..end];
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => raw.rsplit_once('@').map_or(raw, |(_, after)| after).to_owned(),
    }
}

pub(super) fn human_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// The error's own message and its sources, `: `-separated, repeated parts dropped.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

fn has_io_error(error: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind) {
            return true;
        }
        current = error.source();
    }
    false
}

/// Classifies a failed exchange with `target` (`METHOD url` as [`display_url`] shows it).
pub(super) fn classify(error: reqwest::Error, target: &str, timeout: Duration) -> StepError {
    // reqwest's messages include the full URL; ours must not.
    let error = error.without_url();
    if let Some(net) = net::find_net_error(&error) {
        let message = format!("{net} ({target})");
        return match net {
            NetError::Resolve { .. } => StepError::retryable(message),
            NetError::Blocked(_) | NetError::InvalidUrl(_) | NetError::Client(_) => StepError::terminal(message),
        };
    }
    if error.is_connect() {
        if has_io_error(&error, std::io::ErrorKind::ConnectionRefused) {
            return StepError::retryable(format!("connection refused: {target}"));
        }
        if error.is_timeout() {
            return StepError::retryable(format!(
                "connecting for {target} timed out after {}",
                human_duration(net::CONNECT_TIMEOUT)
            ));
        }
        return StepError::retryable(format!("connection failed: {target}: {}", error_chain(&error)));
    }
    if error.is_timeout() {
        return StepError::retryable(format!("{target} timed out after {}", human_duration(timeout)));
    }
    if error.is_redirect() || error.is_builder() {
        return StepError::terminal(format!("{target} failed: {}", error_chain(&error)));
    }
    StepError::retryable(format!("{target} failed: {}", error_chain(&error)))
}

/// A `Retry-After` value — delay seconds or an HTTP date — as milliseconds from `now`,
/// at most [`MAX_RETRY_AFTER`]; a date in the past is 0. `None` when it is neither.
pub(super) fn retry_after_ms(value: &str, now: DateTime<Utc>) -> Option<u64> {
    let value = value.trim();
    let cap = u64::try_from(MAX_RETRY_AFTER.as_millis()).unwrap_or(u64::MAX);
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to parse is still "a long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1000).min(cap));
    }
    let at = http_date(value)?;
    let ms = (at - now).num_milliseconds();
    Some(u64::try_from(ms).unwrap_or(0).min(cap))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms HTTP still accepts.
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = DateTime::parse_from_rfc2822(value) {
        return Some(date.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|d| d.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn retry_after_seconds_become_milliseconds() {
        let now = Utc::now();
        assert_eq!(retry_after_ms("120", now), Some(120_000));
        assert_eq!(retry_after_ms(" 0 ", now), Some(0));
    }

    #[test]
    fn retry_after_is_capped_at_fifteen_minutes() {
        let now = Utc::now();
        assert_eq!(retry_after_ms("3600", now), Some(900_000));
        assert_eq!(retry_after_ms("99999999999999999999999", now), Some(900_000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 09:28:00 GMT", at("2015-10-21T07:28:00Z")), Some(900_000));
    }

    #[test]
    fn retry_after_dates_count_from_now_in_every_http_date_form() {
        let now = at("2015-10-21T07:28:00Z");
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(30_000));
        assert_eq!(retry_after_ms("Wednesday, 21-Oct-15 07:29:00 GMT", now), Some(60_000));
        assert_eq!(retry_after_ms("Wed Oct 21 07:28:05 2015", now), Some(5_000));
    }

    #[test]
    fn retry_after_in_the_past_is_zero_and_garbage_is_ignored() {
        let now = at("2015-10-21T07:28:00Z");
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(0));
        for value in ["", "soon", "-5", "1.5", "Wed, 99 Oct 2015 07:00:00 GMT"] {
            assert_eq!(retry_after_ms(value, now), None, "{value}");
        }
    }

    #[test]
    fn urls_in_messages_lose_user_info_query_and_fragment() {
        assert_eq!(display_raw_url("https://u:p@host/a?b=c#d"), "https://host/a");
        assert_eq!(display_raw_url("no url?x"), "no url");
        let url = Url::parse("https://u:p@host:8443/a/b?token=x#f").map_or(String::new(), |u| display_url(&u));
        assert_eq!(url, "https://host:8443/a/b");
    }
}
