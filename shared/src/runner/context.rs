//! The dynamic variables a step sees, read narrowly: only the steps its templates refer to
//! (the latest attempt of each, in the step's own fan-out branch where they run in one), the
//! trigger, the current fan-out item, and the execution's context. The cost of a step does
//! not grow with the number of steps an execution has run (10,000 fan-out branches).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::engine::fan_out_depth;
use crate::messages::{ScopeEntry, step_key};
use crate::model::{Step, Workflow};
use crate::ports::StoreError;
use crate::record::{Execution, StepAttempt};
use crate::runtime::Runtime;
use crate::template::Template;

/// The variables for `step` running in `scope`.
pub(super) async fn for_step(
    runtime: &Runtime,
    execution: &Execution,
    workflow: &Workflow,
    step: &Step,
    scope: &[ScopeEntry],
) -> Result<Value, StoreError> {
    let indexes: Vec<u32> = scope.iter().map(|s| s.index).collect();
    let mut steps = Map::new();
    for id in referenced_steps(step) {
        let Some(depth) = fan_out_depth(&workflow.steps, &id) else { continue };
        // A step inside a fan-out the current step is not in has no single value.
        if depth > indexes.len() {
            continue;
        }
        if let Some(attempt) = runtime.store.latest_step(&execution.id, &step_key(&id, &indexes[..depth])).await? {
            steps.insert(id, step_variables(&attempt));
        }
    }
    let mut ctx = base(execution);
    ctx["steps"] = Value::Object(steps);
    if let Some(innermost) = scope.last() {
        ctx["item"] = innermost.item.clone();
        ctx["index"] = json!(innermost.index);
    }
    Ok(ctx)
}

/// The variables every step sees: the trigger and the execution's context, no steps yet.
pub fn base(execution: &Execution) -> Value {
    json!({
        "trigger": {
            "query": execution.trigger.query,
            "headers": execution.trigger.headers,
            "body": execution.trigger.body,
        },
        "steps": {},
        "settings": {},
        "user": { "id": execution.user_id },
        "execution": { "id": execution.id },
        "workflow": { "id": execution.workflow_id },
    })
}

/// `{ "output": ... }` and/or `{ "error": { "message", "details" } }` of one attempt.
pub fn step_variables(attempt: &StepAttempt) -> Value {
    let mut entry = Map::new();
    if let Some(output) = &attempt.output {
        entry.insert("output".into(), output.clone());
    }
    if let Some(error) = &attempt.error {
        entry.insert("error".into(), json!({ "message": error.message, "details": error.details }));
    }
    Value::Object(entry)
}

/// The ids of the steps `step`'s own templates refer to (`{{steps.ID...}}`), not counting
/// the steps nested in it or a Function step's code.
pub fn referenced_steps(step: &Step) -> BTreeSet<String> {
    let mut kind = serde_json::to_value(&step.kind).unwrap_or(Value::Null);
    if let Some(fields) = kind.as_object_mut() {
        for nested in ["then", "else", "steps", "code"] {
            fields.remove(nested);
        }
    }
    let mut found = BTreeSet::new();
    collect(&kind, &mut found);
    found
}

fn collect(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::String(text) if text.contains("{{") => {
            if let Ok(template) = Template::parse(text) {
                for expr in template.expressions() {
                    if expr.root() == Some("steps")
                        && let Some(id) = expr.key_at(1)
                    {
                        found.insert(id.to_string());
                    }
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        Value::Object(fields) => fields.values().for_each(|v| collect(v, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_steps_come_from_the_step_own_templates_only() {
        let step: Step = serde_json::from_value(json!({
            "id": "c", "type": "conditional",
            "when": { "all": [ { "left": "{{steps.a.output.x}}", "op": "equals", "right": "{{steps.b.error.message}}" } ] },
            "then": [ { "id": "t", "type": "request", "url": "https://x/{{steps.z.output}}" } ],
        }))
        .expect("step");
        assert_eq!(referenced_steps(&step).into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }
}
