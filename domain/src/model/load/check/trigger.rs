//! The triggers an integration's webhooks and the clock start: `webhook`, `schedule`, `poll`.
//!
//! Invariant: a schedule (or poll interval) that passes these checks can be computed — its
//! zone exists, its cron pattern parses, and it fires at least once — so the scheduler never
//! meets a schedule error for a deployed definition (only for a user's own zone, which the
//! user sets through `PATCH /sdk/me`, checked there).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use serde_json::{Map, Value};

use super::{Checker, event_name_problem, index_path, key_path};
use crate::model::load::refs::{RanBefore, RefContext, Scope};
use crate::model::schedule::{
    Catchup, MAX_CATCHUP, ScheduleTrigger, USER_ZONE, UTC, WallTime, Weekday, parse_cron, time_zone,
};
use crate::model::{DurationSpec, MIN_POLL_INTERVAL};
use crate::template::{Template, kind};

const WEBHOOK_KEYS: &[&str] = &["type", "event", "filter"];
const SCHEDULE_KEYS: &[&str] =
    &["type", "every", "hourly", "daily", "weekly", "cron", "timezone", "overlap", "catchup"];
/// A schedule's rules: it has exactly one.
const RULES: &[&str] = &["every", "hourly", "daily", "weekly", "cron"];
const POLL_KEYS: &[&str] = &["type", "every", "request", "items", "key", "initial"];
/// A Request step's keys that a poll's request takes (all but `pagination`).
const POLL_REQUEST_KEYS: &[&str] = &["method", "url", "query", "headers", "body", "body_type", "auth", "timeout"];
const OVERLAPS: &[&str] = &["skip", "allow"];
const INITIALS: &[&str] = &["skip", "fire"];
/// Every N days: at most a leap year.
const MAX_DAILY_EVERY: u64 = 366;
/// The shortest interval of a schedule.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Checker {
    /// `{type: webhook, event, filter?}`.
    pub(super) fn webhook_trigger(&mut self, map: &Map<String, Value>) {
        self.only_keys(map, "trigger", WEBHOOK_KEYS);
        match map.get("event") {
            None => self.problem(
                "trigger.event",
                "`event` is required: the type of the integration's webhook event (e.g. `contact.creation`)",
            ),
            Some(event) => {
                if let Some(name) = self.string(event, "trigger.event")
                    && let Some(problem) = event_name_problem(name)
                {
                    self.problem("trigger.event", problem);
                }
            }
        }
        if let Some(filter) = map.get("filter") {
            self.in_trigger(RefContext::WebhookFilter, |checker, scope| {
                checker.condition(filter, "trigger.filter", scope);
            });
        }
    }

    /// `{type: schedule, <one rule>, timezone?, overlap?, catchup?}`; once its shape is right,
    /// it must fire at least once.
    pub(super) fn schedule_trigger(&mut self, map: &Map<String, Value>) {
        let before = self.problems.len();
        self.only_keys(map, "trigger", SCHEDULE_KEYS);
        let rules: Vec<&str> = RULES.iter().copied().filter(|rule| map.contains_key(*rule)).collect();
        match rules.as_slice() {
            [] => self.problem(
                "trigger",
                "a schedule needs one of `every` (5s, 30m, 2h), `hourly`, `daily`, `weekly` or `cron`",
            ),
            [_] => {}
            several => {
                let found: Vec<String> = several.iter().map(|rule| format!("`{rule}`")).collect();
                self.problem(
                    "trigger",
                    format!(
                        "a schedule has exactly one of `every`, `hourly`, `daily`, `weekly` or `cron`, not {}",
                        found.join(" and ")
                    ),
                );
            }
        }
        if let Some(every) = map.get("every") {
            self.interval(every, "trigger.every", MIN_INTERVAL, "1s");
        }
        if let Some(hourly) = map.get("hourly") {
            self.hourly(hourly);
        }
        if let Some(daily) = map.get("daily") {
            self.daily(daily);
        }
        if let Some(weekly) = map.get("weekly") {
            self.weekly(weekly);
        }
        if let Some(cron) = map.get("cron")
            && let Some(pattern) = self.string(cron, "trigger.cron")
            && let Err(e) = parse_cron(pattern)
        {
            self.problem(
                "trigger.cron",
                format!("{e} (5 fields: minute hour day-of-month month day-of-week, or 6 with leading seconds)"),
            );
        }
        if let Some(zone) = map.get("timezone") {
            self.timezone(zone, map.contains_key("every"));
        }
        if self.problems.len() == before
            && let [rule] = rules.as_slice()
        {
            self.fires_at_all(map, rule);
        }
        if let Some(overlap) = map.get("overlap") {
            self.one_of(overlap, "trigger.overlap", OVERLAPS);
        }
        if let Some(catchup) = map.get("catchup") {
            self.catchup(catchup);
        }
    }

    /// `{type: poll, every, request, items?, key?, initial?}`.
    pub(super) fn poll_trigger(&mut self, map: &Map<String, Value>) {
        self.only_keys(map, "trigger", POLL_KEYS);
        match map.get("every") {
            None => self.problem("trigger.every", "`every` is required: how often to poll, e.g. 5m (at least 10s)"),
            Some(every) => self.interval(every, "trigger.every", MIN_POLL_INTERVAL, "10s"),
        }
        match map.get("request") {
            None => self.problem("trigger.request", "`request` is required: a Request step's `url`, `method`, ..."),
            Some(request) => self.poll_request(request),
        }
        if let Some(items) = map.get("items") {
            self.response_path(items, "trigger.items");
        }
        if let Some(key) = map.get("key") {
            self.poll_key(key);
        }
        if let Some(initial) = map.get("initial") {
            self.one_of(initial, "trigger.initial", INITIALS);
        }
    }

    /// Checks templates of a part of the trigger with `context`'s rules; nothing ran before it.
    pub(super) fn in_trigger(&mut self, context: RefContext, check: impl FnOnce(&mut Checker, &Scope)) {
        let nothing = RanBefore { here: HashSet::new(), outer: None };
        let scope = Scope { ran_before: &nothing, current: "the trigger", fan_outs: &[] };
        let outer = std::mem::replace(&mut self.refs_in, context);
        check(self, &scope);
        self.refs_in = outer;
    }

    fn poll_request(&mut self, value: &Value) {
        let path = "trigger.request";
        let Some(map) = self.mapping(value, path, "`request`") else {
            return;
        };
        if map.contains_key("pagination") {
            self.problem(
                &key_path(path, "pagination"),
                "a poll reads one response: `pagination` is not available here (`items` says where the list is)",
            );
        }
        let request: Map<String, Value> =
            map.iter().filter(|(key, _)| key.as_str() != "pagination").map(|(k, v)| (k.clone(), v.clone())).collect();
        self.only_keys(&request, path, POLL_REQUEST_KEYS);
        self.in_trigger(RefContext::PollRequest, |checker, scope| checker.request(&request, path, scope));
    }

    fn poll_key(&mut self, value: &Value) {
        let path = "trigger.key";
        let Some(text) = self.string(value, path) else {
            return;
        };
        let constant = Template::parse(text).is_ok_and(|template| template.expressions().next().is_none());
        if constant {
            self.problem(path, format!("`{text}` is the same for every item: use the item, e.g. `{{{{item.id}}}}`"));
            return;
        }
        self.in_trigger(RefContext::PollKey, |checker, scope| checker.templates(value, path, scope));
    }

    /// A duration of whole seconds, minutes or hours, at least `min`.
    fn interval(&mut self, value: &Value, path: &str, min: Duration, min_text: &str) {
        let Value::String(text) = value else {
            self.problem(path, format!("must be a duration such as 5s, 30m or 2h, not {}", kind(value)));
            return;
        };
        let spec = match text.parse::<DurationSpec>() {
            Ok(spec) => spec,
            Err(e) => return self.problem(path, e.to_string()),
        };
        let unit = text.trim().trim_start_matches(|c: char| c.is_ascii_digit());
        if !matches!(unit, "s" | "m" | "h") {
            self.problem(
                path,
                format!("`{text}`: an interval counts seconds, minutes or hours (5s, 30m, 2h); for days use `daily`"),
            );
        } else if spec.duration() < min {
            self.problem(path, format!("`{text}` is too short: at least {min_text}"));
        }
    }

    fn hourly(&mut self, value: &Value) {
        let path = "trigger.hourly";
        let Some(map) = self.mapping(value, path, "`hourly`") else {
            return;
        };
        self.only_keys(map, path, &["minute"]);
        if let Some(minute) = map.get("minute") {
            self.whole_number(minute, &key_path(path, "minute"), 0, Some(59));
        }
    }

    fn daily(&mut self, value: &Value) {
        let path = "trigger.daily";
        let Some(map) = self.mapping(value, path, "`daily`") else {
            return;
        };
        self.only_keys(map, path, &["at", "every"]);
        self.wall_time(map, path);
        if let Some(every) = map.get("every") {
            self.whole_number(every, &key_path(path, "every"), 1, Some(MAX_DAILY_EVERY));
        }
    }

    fn weekly(&mut self, value: &Value) {
        let path = "trigger.weekly";
        let Some(map) = self.mapping(value, path, "`weekly`") else {
            return;
        };
        self.only_keys(map, path, &["days", "at"]);
        self.wall_time(map, path);
        let days_path = key_path(path, "days");
        let names: Vec<&str> = Weekday::ALL.iter().map(|day| day.name()).collect();
        let Some(days) = map.get("days") else {
            return self.problem(&days_path, format!("`days` is required: a list of {}", names.join(", ")));
        };
        let Value::Array(days) = days else {
            return self.problem(&days_path, format!("must be a list of weekdays, not {}", kind(days)));
        };
        if days.is_empty() {
            self.problem(&days_path, "must name at least one day");
        }
        let mut seen = HashSet::new();
        for (i, day) in days.iter().enumerate() {
            let day_path = index_path(&days_path, i);
            let Some(name) = self.string(day, &day_path) else { continue };
            if !names.contains(&name) {
                self.problem(&day_path, format!("`{name}` is not a weekday (use {})", names.join(", ")));
            } else if !seen.insert(name) {
                self.problem(&day_path, format!("`{name}` is listed twice"));
            }
        }
    }

    /// The required `at` of `map` (at `path`): a time of day.
    fn wall_time(&mut self, map: &Map<String, Value>, path: &str) {
        let at_path = key_path(path, "at");
        match map.get("at") {
            None => self.problem(&at_path, "`at` is required: a time of day, e.g. \"09:00\""),
            Some(Value::String(text)) => {
                if let Err(e) = text.parse::<WallTime>() {
                    self.problem(&at_path, e.to_string());
                }
            }
            Some(other) => {
                self.problem(&at_path, format!("must be a time of day in quotes, e.g. \"09:00\", not {}", kind(other)))
            }
        }
    }

    fn timezone(&mut self, value: &Value, interval: bool) {
        let path = "trigger.timezone";
        let Some(zone) = self.string(value, path) else {
            return;
        };
        if interval {
            self.problem(path, "`every` counts elapsed time; `timezone` applies to hourly, daily, weekly and cron");
        } else if zone != USER_ZONE && time_zone(zone).is_err() {
            self.problem(
                path,
                format!(
                    "unknown time zone `{zone}`: use an IANA name such as America/New_York, or `user` (each user's own zone)"
                ),
            );
        }
    }

    fn catchup(&mut self, value: &Value) {
        let path = "trigger.catchup";
        let Some(text) = self.string(value, path) else {
            return;
        };
        match text.parse::<Catchup>() {
            Err(e) => self.problem(path, e.to_string()),
            Ok(Catchup::Within(window)) if window.duration().is_zero() => {
                self.problem(path, "must be longer than 0 (or `none`)");
            }
            Ok(Catchup::Within(window)) if window.duration() > MAX_CATCHUP => {
                self.problem(path, format!("`{text}` is too long: at most 7d"));
            }
            Ok(_) => {}
        }
    }

    fn one_of(&mut self, value: &Value, path: &str, allowed: &[&str]) {
        if let Some(text) = self.string(value, path)
            && !allowed.contains(&text)
        {
            self.problem(path, format!("`{text}` is not one of {}", allowed.join(", ")));
        }
    }

    /// A well-formed rule that never fires (`cron: "0 0 30 2 *"`) is a problem at its path.
    fn fires_at_all(&mut self, map: &Map<String, Value>, rule: &str) {
        let path = key_path("trigger", rule);
        let when: Map<String, Value> = map
            .iter()
            .filter(|(key, _)| key.as_str() == rule || key.as_str() == "timezone")
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let schedule = match serde_json::from_value::<ScheduleTrigger>(Value::Object(when)) {
            Ok(schedule) => schedule,
            Err(e) => return self.problem("trigger", format!("the schedule could not be read: {e}")),
        };
        let zone = match schedule.timezone.as_deref() {
            None | Some(USER_ZONE) => UTC,
            Some(zone) => zone,
        };
        let Some(from) = Utc.timestamp_millis_opt(0).single() else { return };
        match schedule.next_after(from, zone) {
            Ok(Some(_)) => {}
            Ok(None) => self.problem(&path, "this schedule never fires"),
            Err(e) => self.problem(&path, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
