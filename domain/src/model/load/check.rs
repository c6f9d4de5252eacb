//! The validation walk over a raw workflow document: top level and trigger here, steps in
//! [`super::steps`], `{{...}}` references in [`super::refs`].
//!
//! Invariant: the walk never stops at the first problem; it records `(path, message)` for
//! every problem it finds, step by step in document order, and only descends into values whose shape it
//! has confirmed.

mod trigger;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

use super::refs::RefContext;
use crate::model::duration::DurationSpec;
use crate::template::kind;

/// Workflow ids: `[a-z0-9][a-z0-9-]*`, at most 64 characters.
static WORKFLOW_ID: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("^[a-z0-9][a-z0-9-]*$").ok());
pub(super) const MAX_WORKFLOW_ID_LEN: usize = 64;

const TOP_KEYS: &[&str] = &["id", "name", "trigger", "steps", "inputs", "enabled_by_default", "search"];
const TRIGGER_TYPES: &[&str] =
    &["request", "app_event", "integration_enabled", "oauth_connected", "webhook", "schedule", "poll"];
/// The trigger types this version runs.
const SUPPORTED_TRIGGERS: &str = "request, app_event, integration_enabled, oauth_connected, webhook, schedule, poll";
const TRIGGER_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The longest app event name.
pub const MAX_EVENT_NAME_LEN: usize = 128;
const JSON_TYPES: &[&str] = &["string", "number", "boolean", "object", "array"];

/// The longest a duration may be, and how messages write it.
#[derive(Debug, Clone, Copy)]
pub(super) struct MaxDuration {
    pub(super) value: Duration,
    pub(super) text: &'static str,
}

/// Collects problems while walking one document.
pub(super) struct Checker {
    pub(super) problems: Vec<(String, String)>,
    /// Every step id of the workflow → the fan-outs whose branch it runs in (outermost first),
    /// to tell "no such step" from "not before" and to keep a branch's steps inside it.
    pub(super) known_steps: HashMap<String, Vec<String>>,
    /// Step id → path of its first `id`, to report duplicates.
    pub(super) first_seen: HashMap<String, String>,
    /// The setting keys `{{settings.KEY}}` may name (the integration's and the workflow's
    /// own inputs); `None`: not checked (a workflow outside any integration).
    pub(super) known_settings: Option<HashSet<String>>,
    /// The integration the workflow belongs to (its folder), whose actions it may use.
    pub(super) integration: Option<String>,
    /// The workflow's trigger type, once read (`trigger.item` exists only with `poll`).
    pub(super) trigger_type: Option<String>,
    /// Where the templates being checked run: steps, or a part of the trigger.
    pub(super) refs_in: RefContext,
}

impl Checker {
    pub(super) fn new(known_settings: Option<HashSet<String>>) -> Checker {
        Checker {
            problems: Vec::new(),
            known_steps: HashMap::new(),
            first_seen: HashMap::new(),
            known_settings,
            integration: None,
            trigger_type: None,
            refs_in: RefContext::Steps,
        }
    }
}

/// Every problem of the workflow document `value`, as `(path, message)`; with
/// `integration`, the workflow belongs to that integration (its name and declared settings),
/// and `{{settings.KEY}}` must name one of them or one of the workflow's own inputs.
pub(super) fn check_workflow(value: &Value, integration: Option<(&str, &[String])>) -> Vec<(String, String)> {
    let mut checker = Checker::new(integration.map(|(_, keys)| keys.iter().cloned().collect()));
    checker.integration = integration.map(|(name, _)| name.to_string());
    checker.workflow(value);
    checker.problems
}

impl Checker {
    pub(super) fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push((path.to_string(), message.into()));
    }

    /// The mapping at `path`, or a problem saying what `what` must be.
    pub(super) fn mapping<'v>(&mut self, value: &'v Value, path: &str, what: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.problem(path, format!("{what} must be a mapping, not {}", kind(other)));
                None
            }
        }
    }

    /// Reports every key of `map` that is not in `allowed`.
    pub(super) fn only_keys(&mut self, map: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.problem(
                    &key_path(path, key),
                    format!("unknown key `{key}` (allowed here: {})", allowed.join(", ")),
                );
            }
        }
    }

    pub(super) fn string<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        match value {
            Value::String(text) => Some(text),
            other => {
                self.problem(path, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, value: &Value, path: &str) {
        if !value.is_boolean() {
            self.problem(path, format!("must be true or false, not {}", kind(value)));
        }
    }

    /// A duration such as `10s`, at most `max`; `positive` rejects zero.
    pub(super) fn duration(&mut self, value: &Value, path: &str, max: MaxDuration, positive: bool) {
        let Some(text) = self.string(value, path) else {
            return;
        };
        match text.parse::<DurationSpec>() {
            Err(e) => self.problem(path, e.to_string()),
            Ok(spec) if spec.duration() > max.value => {
                self.problem(path, format!("`{text}` is too long: at most {}", max.text));
            }
            Ok(spec) if positive && spec.duration().is_zero() => self.problem(path, "must be longer than 0"),
            Ok(_) => {}
        }
    }

    /// A whole number from `min` to `max` (no upper bound when `max` is `None`).
    pub(super) fn whole_number(&mut self, value: &Value, path: &str, min: u64, max: Option<u64>) -> Option<u64> {
        if let Some(n) = value.as_u64()
            && n >= min
            && max.is_none_or(|max| n <= max)
        {
            return Some(n);
        }
        let range = match max {
            Some(max) => format!("from {min} to {max}"),
            None if min == 0 => "(0 or more)".to_string(),
            None => format!("of at least {min}"),
        };
        let found = if value.is_number() { value.to_string() } else { kind(value).to_string() };
        self.problem(path, format!("must be a whole number {range}, not {found}"));
        None
    }

    fn workflow(&mut self, value: &Value) {
        let Value::Object(map) = value else {
            self.problem(
                "",
                format!("the top level must be a mapping with `id`, `trigger` and `steps`, not {}", kind(value)),
            );
            return;
        };
        self.only_keys(map, "", TOP_KEYS);
        match map.get("id") {
            None => self.problem("id", "`id` is required"),
            Some(id) => self.workflow_id(id),
        }
        if let Some(name) = map.get("name") {
            self.string(name, "name");
        }
        match map.get("trigger") {
            None => self.problem("trigger", "`trigger` is required"),
            Some(trigger) => self.trigger(trigger),
        }
        if let Some(enabled) = map.get("enabled_by_default") {
            self.boolean(enabled, "enabled_by_default");
        }
        if let Some(inputs) = map.get("inputs") {
            let keys = self.inputs(inputs, "inputs");
            if let Some(known) = self.known_settings.as_mut() {
                known.extend(keys);
            }
        }
        match map.get("steps") {
            None => self.problem("steps", "`steps` is required: a workflow needs at least one step"),
            Some(steps) => self.workflow_steps(steps),
        }
        if let Some(search) = map.get("search") {
            self.search(search);
        }
    }

    /// `search: {name: template}`: at most [`MAX_SEARCH_ATTRIBUTES`], names that
    /// [`is_search_key`] accepts, templates of the trigger and the user.
    fn search(&mut self, value: &Value) {
        let Some(map) = self.mapping(value, "search", "`search`") else {
            return;
        };
        if map.len() > crate::model::MAX_SEARCH_ATTRIBUTES {
            self.problem(
                "search",
                format!(
                    "{} search attributes; at most {} (each costs an index write per execution)",
                    map.len(),
                    crate::model::MAX_SEARCH_ATTRIBUTES
                ),
            );
        }
        for (key, template) in map {
            let path = key_path("search", key);
            if !crate::model::is_search_key(key) {
                self.problem(
                    &path,
                    format!(
                        "`{key}` is not a valid search attribute name: a letter, then up to 39 letters, digits or `_`"
                    ),
                );
            }
            if self.string(template, &path).is_some() {
                self.in_trigger(RefContext::Search, |checker, scope| checker.templates(template, &path, scope));
            }
        }
    }

    fn workflow_id(&mut self, value: &Value) {
        let Some(id) = self.string(value, "id") else {
            return;
        };
        if id.len() > MAX_WORKFLOW_ID_LEN {
            self.problem("id", format!("`{id}` is {} characters long; at most {MAX_WORKFLOW_ID_LEN}", id.len()));
        }
        if !WORKFLOW_ID.as_ref().is_some_and(|re| re.is_match(id)) {
            self.problem(
                "id",
                format!("`{id}` is not a valid workflow id: use lowercase letters, digits and `-`, starting with a letter or digit"),
            );
        }
    }

    fn trigger(&mut self, value: &Value) {
        let Some(map) = self.mapping(value, "trigger", "`trigger`") else {
            return;
        };
        let Some(kind_value) = map.get("type") else {
            self.problem("trigger.type", format!("`type` is required (supported: {SUPPORTED_TRIGGERS})"));
            return;
        };
        let Some(trigger_type) = self.string(kind_value, "trigger.type") else {
            return;
        };
        self.trigger_type = Some(trigger_type.to_string());
        match trigger_type {
            "request" => {
                self.only_keys(map, "trigger", &["type", "method", "validate"]);
                if let Some(method) = map.get("method")
                    && let Some(method) = self.string(method, "trigger.method")
                    && !TRIGGER_METHODS.contains(&method)
                {
                    self.problem(
                        "trigger.method",
                        format!("`{method}` is not a trigger method (use {})", TRIGGER_METHODS.join(", ")),
                    );
                }
                if let Some(validate) = map.get("validate") {
                    self.validate(validate);
                }
            }
            "app_event" => {
                self.only_keys(map, "trigger", &["type", "event"]);
                match map.get("event") {
                    None => {
                        self.problem("trigger.event", "`event` is required: the name of an app event (events/*.yaml)")
                    }
                    Some(event) => {
                        if let Some(name) = self.string(event, "trigger.event")
                            && let Some(problem) = event_name_problem(name)
                        {
                            self.problem("trigger.event", problem);
                        }
                    }
                }
            }
            "integration_enabled" | "oauth_connected" => self.only_keys(map, "trigger", &["type"]),
            "webhook" => self.webhook_trigger(map),
            "schedule" => self.schedule_trigger(map),
            "poll" => self.poll_trigger(map),
            other => self.problem(
                "trigger.type",
                format!("unknown trigger type `{other}` (valid: {})", TRIGGER_TYPES.join(", ")),
            ),
        }
    }

    fn validate(&mut self, value: &Value) {
        let path = "trigger.validate";
        let Some(map) = self.mapping(value, path, "`validate`") else {
            return;
        };
        self.only_keys(map, path, &["query", "headers", "body"]);
        if let Some(query) = map.get("query") {
            self.validate_query(query);
        }
        if let Some(headers) = map.get("headers") {
            let path = "trigger.validate.headers";
            if let Some(headers) = self.mapping(headers, path, "`headers`") {
                for (name, expected) in headers {
                    if !expected.is_string() {
                        self.problem(
                            &key_path(path, name),
                            format!(
                                "must be a string (the exact value of the header), not {}; quote it",
                                kind(expected)
                            ),
                        );
                    }
                }
            }
        }
        if let Some(body) = map.get("body") {
            let path = "trigger.validate.body";
            if let Some(body) = self.mapping(body, path, "`body`") {
                for (field, expected) in body {
                    let field_path = key_path(path, field);
                    let Some(type_name) = self.string(expected, &field_path) else {
                        continue;
                    };
                    if !JSON_TYPES.contains(&type_name) {
                        self.problem(
                            &field_path,
                            format!("`{type_name}` is not a JSON type (use {})", JSON_TYPES.join(", ")),
                        );
                    }
                }
            }
        }
    }

    fn validate_query(&mut self, value: &Value) {
        let path = "trigger.validate.query";
        let Some(map) = self.mapping(value, path, "`query`") else {
            return;
        };
        self.only_keys(map, path, &["required"]);
        let Some(required) = map.get("required") else {
            return;
        };
        let path = "trigger.validate.query.required";
        let Value::Array(names) = required else {
            self.problem(path, format!("must be a list of parameter names, not {}", kind(required)));
            return;
        };
        for (i, name) in names.iter().enumerate() {
            self.string(name, &index_path(path, i));
        }
    }
}

/// Why `name` cannot be an app event's name: 1 to [`MAX_EVENT_NAME_LEN`] characters, no
/// control characters, not blank at either end.
pub fn event_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_EVENT_NAME_LEN {
        return Some(format!("an event name is 1 to {MAX_EVENT_NAME_LEN} characters"));
    }
    if name.chars().any(char::is_control) {
        return Some("an event name may not contain control characters".to_string());
    }
    if name.trim() != name {
        return Some(format!("`{name}` begins or ends with blanks"));
    }
    None
}

/// `parent.key`; keys that are not plain names are quoted: `parent["a b"]`.
pub(super) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// `parent[index]`.
pub(super) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_join_with_dots_and_others_are_quoted() {
        assert_eq!(key_path("", "id"), "id");
        assert_eq!(key_path("steps[0]", "url"), "steps[0].url");
        assert_eq!(key_path("trigger.validate.headers", "x-source"), "trigger.validate.headers.x-source");
        assert_eq!(key_path("steps[0].body", "a b"), "steps[0].body[\"a b\"]");
        assert_eq!(index_path("steps[1].then", 0), "steps[1].then[0]");
    }
}
