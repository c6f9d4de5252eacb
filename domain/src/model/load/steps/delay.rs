//! The Delay step: `for` a duration or `until` a time, exactly one of them.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::condition::time::parse_timestamp;
use crate::model::load::check::{Checker, MaxDuration, key_path};
use crate::model::load::refs::Scope;
use crate::template::kind;

pub(super) const KEYS: &[&str] = &["for", "until"];
const MAX_DELAY: MaxDuration = MaxDuration { value: Duration::from_secs(366 * 24 * 3600), text: "366d" };
const UNTIL_FORMS: &str =
    "an ISO 8601 timestamp (e.g. 2026-12-01T09:00:00Z), epoch seconds or milliseconds, or a `{{...}}` expression";

impl Checker {
    pub(super) fn delay(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        let duration = map.get("for");
        let until = map.get("until");
        if let Some(duration) = duration {
            self.duration(duration, &key_path(path, "for"), MAX_DELAY, true);
        }
        if let Some(until) = until {
            self.until(until, &key_path(path, "until"), scope);
        }
        match (duration, until) {
            (None, None) => self.problem(path, "a delay needs `for` (a duration, e.g. 10m) or `until` (a time)"),
            (Some(_), Some(_)) => {
                self.problem(&key_path(path, "until"), "`for` and `until` cannot be used together: keep one")
            }
            _ => {}
        }
    }

    fn until(&mut self, value: &Value, path: &str, scope: &Scope) {
        match value {
            Value::String(text) if text.contains("{{") || text.contains("}}") => self.templates(value, path, scope),
            Value::String(text) if parse_timestamp(value).is_none() => {
                self.problem(path, format!("`{text}` is not a time: write {UNTIL_FORMS}"));
            }
            Value::Number(n) if parse_timestamp(value).is_none() => {
                self.problem(path, format!("`{n}` is not a time: write {UNTIL_FORMS}"));
            }
            Value::String(_) | Value::Number(_) => {}
            other => self.problem(path, format!("must be {UNTIL_FORMS}, not {}", kind(other))),
        }
    }
}
