//! The Conditional step: `when` and its branches.

use serde_json::{Map, Value};

use crate::condition::{ALL_OPERATORS, compile_regex, is_unary, op_name, parse_op};
use crate::model::Operator;
use crate::model::load::check::{Checker, index_path, key_path};
use crate::model::load::refs::{RanBefore, Scope};
use crate::template::kind;

pub(super) const KEYS: &[&str] = &["when", "then", "else"];

impl Checker {
    pub(super) fn conditional(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope, id: Option<&str>) {
        match map.get("when") {
            None => self.problem(&key_path(path, "when"), "`when` is required"),
            Some(when) => self.condition(when, &key_path(path, "when"), scope),
        }
        // Inside a branch, the conditional itself has already run (its output is the branch).
        let mut branch_scope = RanBefore::inside(scope.ran_before);
        if let Some(id) = id {
            branch_scope.here.insert(id.to_string());
        }
        for key in ["then", "else"] {
            if let Some(branch) = map.get(key) {
                self.step_list(branch, &key_path(path, key), &branch_scope, scope.fan_outs);
            }
        }
    }

    /// A `when`: `{all: [...]}`, `{any: [...]}`, a list (= all) or `{left, op, right?}`.
    pub(in crate::model::load) fn condition(&mut self, value: &Value, path: &str, scope: &Scope) {
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
