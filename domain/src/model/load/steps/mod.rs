//! Validation of step lists and steps; each step type's own keys are checked in the file of
//! that name beside this one.
//!
//! Invariant: steps are visited in execution order (a step, then its nested lists, then the
//! next sibling) with the set of step ids that ran before it: earlier siblings, the earlier
//! steps of every enclosing list, the enclosing conditionals themselves, and every step
//! nested in an earlier step (conditional branches, fan-out branches). A conditional's `when`
//! and a fan-out's `over` see neither the step itself nor what is nested in it; a fan-out's
//! branch does not see the fan-out (its output exists only once every branch is done). Each
//! step also knows the fan-outs whose branch it runs in, outermost first (see
//! [`super::refs`] for what that allows).

mod action;
mod conditional;
mod delay;
mod fan_out;
mod function;
mod pagination;
mod request;
mod response;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::check::{Checker, MaxDuration, index_path, key_path};
use super::refs::{RanBefore, Scope};
use crate::template::{Template, kind};

static STEP_ID: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("^[A-Za-z0-9_][A-Za-z0-9_-]*$").ok());

const STEP_TYPES: &[&str] = &["request", "conditional", "response", "function", "fan_out", "delay", "action"];
const COMMON_KEYS: &[&str] = &["id", "type", "retries", "retry_delay", "continue_on_failure"];
const MAX_RETRIES: u64 = 10;
/// Longest request timeout and retry delay (one SQS delay is at most 15 minutes).
const MAX_WAIT: MaxDuration = MaxDuration { value: std::time::Duration::from_secs(15 * 60), text: "15m" };

/// The keys of a step of type `step_type` besides [`COMMON_KEYS`]; `None` for unknown types.
fn own_keys(step_type: &str) -> Option<&'static [&'static str]> {
    Some(match step_type {
        "request" => request::KEYS,
        "conditional" => conditional::KEYS,
        "response" => response::KEYS,
        "function" => function::KEYS,
        "fan_out" => fan_out::KEYS,
        "delay" => delay::KEYS,
        "action" => action::KEYS,
        _ => return None,
    })
}

impl Checker {
    /// The workflow's top-level `steps`: a non-empty list.
    pub(super) fn workflow_steps(&mut self, value: &Value) {
        if let Value::Array(items) = value {
            for (i, item) in items.iter().enumerate() {
                collect_known(item, &index_path("steps", i), &[], &mut self.known_steps);
            }
            if items.is_empty() {
                self.problem("steps", "a workflow needs at least one step");
            }
        }
        self.step_list(value, "steps", &RanBefore { here: HashSet::new(), outer: None }, &[]);
    }

    /// A list of steps that runs after the steps of `ran_before`, inside the branches of
    /// `fan_outs`.
    fn step_list(&mut self, value: &Value, path: &str, ran_before: &RanBefore<'_>, fan_outs: &[String]) {
        let Value::Array(items) = value else {
            self.problem(path, format!("must be a list of steps, not {}", kind(value)));
            return;
        };
        let mut available = RanBefore::inside(ran_before);
        for (i, item) in items.iter().enumerate() {
            self.step(item, &index_path(path, i), &available, fan_outs);
            collect_ids(item, &mut available.here);
        }
    }

    fn step(&mut self, value: &Value, path: &str, ran_before: &RanBefore<'_>, fan_outs: &[String]) {
        let Value::Object(map) = value else {
            self.problem(path, format!("a step must be a mapping with `id` and `type`, not {}", kind(value)));
            return;
        };
        let id = self.step_id(map, path);
        let scope = Scope { ran_before, current: id.unwrap_or("this step"), fan_outs };
        let type_path = key_path(path, "type");
        let step_type = match map.get("type") {
            None => {
                self.problem(&type_path, format!("`type` is required ({})", STEP_TYPES.join(", ")));
                return;
            }
            Some(value) => self.string(value, &type_path),
        };
        let Some(step_type) = step_type else { return };
        let Some(keys) = own_keys(step_type) else {
            let known = STEP_TYPES.join(", ");
            self.problem(&type_path, format!("unknown step type `{step_type}` (known: {known})"));
            return;
        };
        let allowed: Vec<&str> = COMMON_KEYS.iter().chain(keys).copied().collect();
        self.only_keys(map, path, &allowed);
        self.common(map, path);
        match step_type {
            "request" => self.request(map, path, &scope),
            "conditional" => self.conditional(map, path, &scope, id),
            "response" => self.response(map, path, &scope),
            "function" => self.function(map, path, &scope),
            "fan_out" => self.fan_out(map, path, &scope, &fan_out_name(id, path)),
            "delay" => self.delay(map, path, &scope),
            "action" => self.action(map, path, &scope),
            _ => {} // `own_keys` rejected every other type
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
                "step id `{id}` is already used at {first}; step ids must be unique in the whole workflow, \
                 branches and fan-outs included"
            );
            self.problem(&id_path, message);
        } else {
            self.first_seen.insert(id.to_string(), id_path);
        }
        Some(id)
    }

    fn common(&mut self, map: &Map<String, Value>, path: &str) {
        if let Some(retries) = map.get("retries") {
            self.whole_number(retries, &key_path(path, "retries"), 0, Some(MAX_RETRIES));
        }
        if let Some(delay) = map.get("retry_delay") {
            self.duration(delay, &key_path(path, "retry_delay"), MAX_WAIT, false);
        }
        if let Some(flag) = map.get("continue_on_failure") {
            self.boolean(flag, &key_path(path, "continue_on_failure"));
        }
    }

    /// A mapping whose values are templated (`query`, `headers`, `parameters`).
    fn templated_mapping(&mut self, map: &Map<String, Value>, path: &str, key: &str, scope: &Scope) {
        if let Some(value) = map.get(key) {
            let key_p = key_path(path, key);
            if self.mapping(value, &key_p, &format!("`{key}`")).is_some() {
                self.templates(value, &key_p, scope);
            }
        }
    }

    /// A value that must be exactly one `{{...}}` expression giving `what` (`example` shows
    /// one); its references are checked too.
    fn single_expression(&mut self, value: &Value, path: &str, scope: &Scope, what: &str, example: &str) {
        let Value::String(text) = value else {
            let found = kind(value);
            self.problem(
                path,
                format!("must be one `{{{{...}}}}` expression giving {what} (e.g. `{example}`), not {found}"),
            );
            return;
        };
        if Template::parse(text).is_ok_and(|template| template.as_single_expr().is_none()) {
            let message = format!(
                "must be exactly one `{{{{...}}}}` expression giving {what}, with nothing around it (e.g. `{example}`)"
            );
            self.problem(path, message);
        }
        self.templates(value, path, scope);
    }
}

/// What a fan-out is called in scopes: its id, or its path when it has none.
fn fan_out_name(id: Option<&str>, path: &str) -> String {
    id.unwrap_or(path).to_string()
}

/// The lists of steps nested in `step`: a conditional's branches, a fan-out's branch, with
/// their keys.
fn nested_lists(map: &Map<String, Value>) -> Vec<(&'static str, &Vec<Value>)> {
    let keys: &[&'static str] = match map.get("type").and_then(Value::as_str) {
        Some("conditional") => &["then", "else"],
        Some("fan_out") => &["steps"],
        _ => &[],
    };
    keys.iter()
        .filter_map(|&key| match map.get(key) {
            Some(Value::Array(list)) => Some((key, list)),
            _ => None,
        })
        .collect()
}

/// Records the id of `step` (at `path`) and of every step nested in it, with the fan-outs
/// whose branch each runs in; the first use of an id wins.
fn collect_known(step: &Value, path: &str, fan_outs: &[String], known: &mut HashMap<String, Vec<String>>) {
    let Value::Object(map) = step else { return };
    let id = map.get("id").and_then(Value::as_str);
    if let Some(id) = id {
        known.entry(id.to_string()).or_insert_with(|| fan_outs.to_vec());
    }
    for (key, list) in nested_lists(map) {
        let mut inner = fan_outs.to_vec();
        if key == "steps" {
            inner.push(fan_out_name(id, path));
        }
        let list_path = key_path(path, key);
        for (i, nested) in list.iter().enumerate() {
            collect_known(nested, &index_path(&list_path, i), &inner, known);
        }
    }
}

/// Adds the id of `step` and of every step nested in it to `ids`.
fn collect_ids(step: &Value, ids: &mut HashSet<String>) {
    let Value::Object(map) = step else { return };
    if let Some(Value::String(id)) = map.get("id") {
        ids.insert(id.clone());
    }
    for (_, list) in nested_lists(map) {
        for nested in list {
            collect_ids(nested, ids);
        }
    }
}
