//! The Fan-out step: `over`, its branch `steps`, `concurrency`.

use serde_json::{Map, Value};

use crate::model::load::check::{Checker, key_path};
use crate::model::load::refs::Scope;

pub(super) const KEYS: &[&str] = &["over", "steps", "concurrency"];
const MAX_CONCURRENCY: u64 = 1000;

impl Checker {
    /// `name` is what the branch's steps call this fan-out (its id, or its path).
    pub(super) fn fan_out(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope, name: &str) {
        let over_path = key_path(path, "over");
        let example = "{{steps.list.output.body.items}}";
        match map.get("over") {
            None => {
                self.problem(&over_path, format!("`over` is required: the list to run the steps for, e.g. `{example}`"))
            }
            // `over` is evaluated before any branch: in the scope of the fan-out itself.
            Some(over) => self.single_expression(over, &over_path, scope, "a list", example),
        }
        if let Some(concurrency) = map.get("concurrency") {
            self.whole_number(concurrency, &key_path(path, "concurrency"), 1, Some(MAX_CONCURRENCY));
        }
        let steps_path = key_path(path, "steps");
        let Some(steps) = map.get("steps") else {
            self.problem(&steps_path, "`steps` is required: the steps to run for each item");
            return;
        };
        if matches!(steps, Value::Array(items) if items.is_empty()) {
            self.problem(&steps_path, "a fan-out needs at least one step to run for each item");
        }
        let mut inside: Vec<String> = scope.fan_outs.to_vec();
        inside.push(name.to_string());
        self.step_list(steps, &steps_path, scope.ran_before, &inside);
    }
}
