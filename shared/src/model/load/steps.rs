//! Validation of step lists, steps and conditions.
//!
//! Invariant: steps are visited in execution order (a step, then its branches, then the next
//! sibling) with the set of step ids that certainly ran before it: earlier siblings, the
//! earlier steps of every enclosing list, the enclosing conditionals themselves, and every
//! step inside the branches of an earlier conditional. A conditional's `when` sees neither
//! the conditional nor its branches.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::check::{Checker, index_path, key_path};
use super::refs::Scope;
use crate::condition::{ALL_OPERATORS, compile_regex, is_unary, op_name, parse_op};
use crate::model::Operator;
use crate::template::kind;

static STEP_ID: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("^[A-Za-z0-9_][A-Za-z0-9_-]*$").ok());

const STEP_TYPES: &[&str] = &["request", "conditional", "response"];
const NOT_YET_STEP_TYPES: &[&str] = &["function", "fan_out"];
const COMMON_KEYS: &[&str] = &["id", "type", "retries", "retry_delay", "continue_on_failure"];
const REQUEST_KEYS: &[&str] = &["method", "url", "query", "headers", "body", "timeout"];
const CONDITIONAL_KEYS: &[&str] = &["when", "then", "else"];
const RESPONSE_KEYS: &[&str] = &["status", "headers", "body"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const MAX_RETRIES: u64 = 10;
/// Longest request timeout and retry delay, in minutes (one SQS delay is at most 15 minutes).
const MAX_WAIT_MINUTES: u64 = 15;

impl Checker {
    /// The workflow's top-level `steps`: a non-empty list.
    pub(super) fn workflow_steps(&mut self, value: &Value) {
        if let Value::Array(items) = value {
            for item in items {
                collect_ids(item, &mut self.known_steps);
            }
            if items.is_empty() {
                self.problem("steps", "a workflow needs at least one step");
            }
        }
        self.step_list(value, "steps", &HashSet::new());
    }

    fn step_list(&mut self, value: &Value, path: &str, ran_before: &HashSet<String>) {
        let Value::Array(items) = value else {
            self.problem(path, format!("must be a list of steps, not {}", kind(value)));
            return;
        };
        let mut available = ran_before.clone();
        for (i, item) in items.iter().enumerate() {
            self.step(item, &index_path(path, i), &available);
            collect_ids(item, &mut available);
        }
    }

    fn step(&mut self, value: &Value, path: &str, ran_before: &HashSet<String>) {
        let Value::Object(map) = value else {
            self.problem(path, format!("a step must be a mapping with `id` and `type`, not {}", kind(value)));
            return;
        };
        let id = self.step_id(map, path);
        let scope = Scope { ran_before, current: id.unwrap_or("this step") };
        let type_path = key_path(path, "type");
        let step_type = match map.get("type") {
            None => {
                self.problem(&type_path, format!("`type` is required ({})", STEP_TYPES.join(", ")));
                None
            }
            Some(value) => self.string(value, &type_path),
        };
        let own_keys: &[&str] = match step_type {
            Some("request") => REQUEST_KEYS,
            Some("conditional") => CONDITIONAL_KEYS,
            Some("response") => RESPONSE_KEYS,
            Some(other) if NOT_YET_STEP_TYPES.contains(&other) => {
                let supported = STEP_TYPES.join(", ");
                self.problem(&type_path, format!("step type `{other}` is not supported yet (supported: {supported})"));
                return;
            }
            Some(other) => {
                self.problem(&type_path, format!("unknown step type `{other}` (known: {})", STEP_TYPES.join(", ")));
                return;
            }
            None => return,
        };
        let allowed: Vec<&str> = COMMON_KEYS.iter().chain(own_keys).copied().collect();
        self.only_keys(map, path, &allowed);
        self.common(map, path);
        match step_type {
            Some("request") => self.request(map, path, &scope),
            Some("conditional") => self.conditional(map, path, &scope, id),
            _ => self.response(map, path, &scope),
        }
    }

    /// Checks the step's `id` (shape and uniqueness); returns it when it is a string.
    fn step_id<'v>(&mut self, map: &'v Map<String, Value>, path: &str) -> Option<&'v str> {
        let id_path = key_path(path, "id");
        let Some(value) = map.get("id") else {
            self.problem(&id_path, "`id` is required");
            return None;
        };
        let id = self.string(value, &id_path)?;
        if !STEP_ID.as_ref().is_some_and(|re| re.is_match(id)) {
            self.problem(
                &id_path,
                format!("`{id}` is not a valid step id: use letters, digits, `_` and `-`, not starting with `-`"),
            );
        }
        if let Some(first) = self.first_seen.get(id) {
            let message = format!(
                "step id `{id}` is already used at {first}; step ids must be unique in the whole workflow, branches included"
            );
            self.problem(&id_path, message);
        } else {
            self.first_seen.insert(id.to_string(), id_path);
        }
        Some(id)
    }

    fn common(&mut self, map: &Map<String, Value>, path: &str) {
        if let Some(retries) = map.get("retries")
            && retries.as_u64().is_none_or(|n| n > MAX_RETRIES)
        {
            self.problem(&key_path(path, "retries"), format!("must be a whole number from 0 to {MAX_RETRIES}"));
        }
        if let Some(delay) = map.get("retry_delay") {
            self.duration(delay, &key_path(path, "retry_delay"), MAX_WAIT_MINUTES, false);
        }
        if let Some(flag) = map.get("continue_on_failure") {
            self.boolean(flag, &key_path(path, "continue_on_failure"));
        }
    }

    fn request(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        let url_path = key_path(path, "url");
        match map.get("url") {
            None => self.problem(&url_path, "`url` is required"),
            Some(value) => {
                if let Some(url) = self.string(value, &url_path) {
                    if url.trim().is_empty() {
                        self.problem(&url_path, "must not be empty");
                    } else if !is_http_url_or_template(url) {
                        self.problem(&url_path, format!("`{url}` must start with http:// or https://"));
                    }
                }
                self.templates(value, &url_path, scope);
            }
        }
        if let Some(value) = map.get("method") {
            let method_path = key_path(path, "method");
            if let Some(method) = self.string(value, &method_path)
                && !METHODS.contains(&method)
            {
                let upper = method.to_ascii_uppercase();
                let message = if METHODS.contains(&upper.as_str()) {
                    format!("method must be uppercase: write `{upper}`")
                } else {
                    format!("unknown method `{method}` (use {})", METHODS.join(", "))
                };
                self.problem(&method_path, message);
            }
        }
        for key in ["query", "headers"] {
            if let Some(value) = map.get(key) {
                let key_p = key_path(path, key);
                if self.mapping(value, &key_p, &format!("`{key}`")).is_some() {
                    self.templates(value, &key_p, scope);
                }
            }
        }
        if let Some(body) = map.get("body") {
            self.templates(body, &key_path(path, "body"), scope);
        }
        if let Some(timeout) = map.get("timeout") {
            self.duration(timeout, &key_path(path, "timeout"), MAX_WAIT_MINUTES, true);
        }
    }

    fn conditional(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope, id: Option<&str>) {
        match map.get("when") {
            None => self.problem(&key_path(path, "when"), "`when` is required"),
            Some(when) => self.condition(when, &key_path(path, "when"), scope),
        }
        // Inside a branch, the conditional itself has already run (its output is the branch).
        let mut branch_scope = scope.ran_before.clone();
        if let Some(id) = id {
            branch_scope.insert(id.to_string());
        }
        for key in ["then", "else"] {
            if let Some(branch) = map.get(key) {
                self.step_list(branch, &key_path(path, key), &branch_scope);
            }
        }
    }

    fn response(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        if let Some(status) = map.get("status") {
            let status_path = key_path(path, "status");
            match status {
                Value::Number(n) if n.as_u64().is_some_and(|n| (200..=599).contains(&n)) => {}
                Value::String(text) if text.contains("{{") => self.templates(status, &status_path, scope),
                Value::String(text) if text.trim().parse::<u64>().is_ok() => {
                    self.problem(
                        &status_path,
                        format!("write the status as a number, without quotes: {}", text.trim()),
                    );
                }
                _ => self
                    .problem(&status_path, "must be an integer from 200 to 599 or a `{{...}}` expression".to_string()),
            }
        }
        if let Some(headers) = map.get("headers") {
            let headers_path = key_path(path, "headers");
            if let Some(headers_map) = self.mapping(headers, &headers_path, "`headers`") {
                for (name, value) in headers_map {
                    self.string(value, &key_path(&headers_path, name));
                }
                self.templates(headers, &headers_path, scope);
            }
        }
        if let Some(body) = map.get("body") {
            self.templates(body, &key_path(path, "body"), scope);
        }
    }

    /// A `when`: `{all: [...]}`, `{any: [...]}`, a list (= all) or `{left, op, right?}`.
    fn condition(&mut self, value: &Value, path: &str, scope: &Scope) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.condition(item, &index_path(path, i), scope);
                }
            }
            Value::Object(map) if map.contains_key("all") || map.contains_key("any") => {
                if map.contains_key("all") && map.contains_key("any") {
                    self.problem(path, "a condition group has exactly one key, `all` or `any`, not both");
                }
                self.only_keys(map, path, &["all", "any"]);
                for key in ["all", "any"] {
                    let Some(members) = map.get(key) else { continue };
                    let members_path = key_path(path, key);
                    if members.is_array() {
                        self.condition(members, &members_path, scope);
                    } else {
                        self.problem(&members_path, format!("must be a list of conditions, not {}", kind(members)));
                    }
                }
            }
            Value::Object(map) => self.comparison(map, path, scope),
            other => self.problem(
                path,
                format!(
                    "a condition must be a mapping (`all`, `any`, or `left`/`op`/`right`) or a list, not {}",
                    kind(other)
                ),
            ),
        }
    }

    fn comparison(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        self.only_keys(map, path, &["left", "op", "right"]);
        match map.get("left") {
            None => self.problem(&key_path(path, "left"), "`left` is required"),
            Some(left) => self.templates(left, &key_path(path, "left"), scope),
        }
        let op_path = key_path(path, "op");
        let op = match map.get("op") {
            None => {
                self.problem(&op_path, "`op` is required");
                None
            }
            Some(value) => self.string(value, &op_path).and_then(|name| {
                let op = parse_op(name);
                if op.is_none() {
                    let known: Vec<&str> = ALL_OPERATORS.into_iter().map(op_name).collect();
                    self.problem(&op_path, format!("unknown operator `{name}` (known: {})", known.join(", ")));
                }
                op
            }),
        };
        let right_path = key_path(path, "right");
        let right = map.get("right");
        if let Some(right) = right {
            self.templates(right, &right_path, scope);
        }
        let Some(op) = op else { return };
        match right {
            Some(_) if is_unary(op) => self.problem(&right_path, format!("`{}` takes no `right`", op_name(op))),
            None if !is_unary(op) => self.problem(&right_path, format!("`{}` needs a `right` value", op_name(op))),
            Some(Value::String(pattern)) if op == Operator::Matches && !pattern.contains("{{") => {
                if let Err(message) = compile_regex(pattern) {
                    self.problem(&right_path, message);
                }
            }
            _ => {}
        }
    }
}

/// Whether `url` starts with http(s):// or holds a `{{...}}` that may produce the scheme.
fn is_http_url_or_template(url: &str) -> bool {
    url.contains("{{") || url.starts_with("http://") || url.starts_with("https://")
}

/// Adds the id of `step` and of every step inside its branches to `ids`.
fn collect_ids(step: &Value, ids: &mut HashSet<String>) {
    let Value::Object(map) = step else { return };
    if let Some(Value::String(id)) = map.get("id") {
        ids.insert(id.clone());
    }
    for key in ["then", "else"] {
        if let Some(Value::Array(branch)) = map.get(key) {
            for inner in branch {
                collect_ids(inner, ids);
            }
        }
    }
}
