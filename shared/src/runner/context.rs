//! The dynamic variables a step sees, read narrowly: only the steps its templates refer to
//! (the latest attempt of each, in the step's own fan-out branch where they run in one), the
//! trigger, the current fan-out item, the execution's context and the stack's `env` values.
//! The cost of a step does not grow with the number of steps an execution has run (10,000
//! fan-out branches).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::connect::UserSettings;
use crate::engine::{StepKey, fan_out_depth};
use crate::messages::ScopeEntry;
use crate::model::{Step, Workflow};
use crate::ports::{FanOutStore, StoreError};
use crate::record::{Execution, StepAttempt, TriggerKind};
use crate::template::Template;

/// The variables for a step running in `scope`: `ctx` (the [`base`] variables with the
/// user's settings) and the `referenced` steps ([`References::steps`]).
pub(super) async fn for_step(
    store: &dyn FanOutStore,
    known: &HashMap<String, StepAttempt>,
    mut ctx: Value,
    execution: &Execution,
    workflow: &Workflow,
    referenced: &BTreeSet<String>,
    scope: &[ScopeEntry],
) -> Result<Value, StoreError> {
    let indexes: Vec<u32> = scope.iter().map(|s| s.index).collect();
    let mut steps = Map::new();
    for id in referenced.iter().cloned() {
        let Some(depth) = fan_out_depth(&workflow.steps, &id) else { continue };
        // A step inside a fan-out the current step is not in has no single value.
        if depth > indexes.len() {
            continue;
        }
        let key = StepKey::new(id.clone(), &indexes[..depth]);
        if let Some(attempt) = known.get(&key.to_string()) {
            steps.insert(id, step_variables(attempt));
        } else if let Some(attempt) = store.latest_step(&execution.id, &key).await? {
            steps.insert(id, step_variables(&attempt));
        }
    }
    ctx["steps"] = Value::Object(steps);
    if let Some(innermost) = scope.last() {
        ctx["item"] = innermost.item.clone();
        ctx["index"] = json!(innermost.index);
    }
    Ok(ctx)
}

/// The variables every step sees: the trigger, the execution's context and the stack's `env`
/// values ([`crate::runtime::Settings::env`]), no steps yet.
pub fn base(execution: &Execution, env: &BTreeMap<String, String>) -> Value {
    let data = &execution.trigger;
    let mut trigger = json!({ "query": data.query, "headers": data.headers, "body": data.body });
    if data.kind != TriggerKind::Request {
        // App events, connections and later webhooks and schedules carry a payload.
        trigger["payload"] = data.body.clone();
        trigger["type"] = json!(data.kind);
    }
    if let Some(event) = &data.event {
        trigger["event"] = json!(event);
    }
    if data.kind == TriggerKind::Poll {
        // A polling trigger's item is `{{trigger.item}}` (and its body).
        trigger["item"] = data.body.clone();
    }
    json!({
        "trigger": trigger,
        "steps": {},
        "settings": {},
        "env": env,
        "user": { "id": execution.user_id },
        "execution": { "id": execution.id },
        "workflow": { "id": execution.workflow_id },
    })
}

/// The variables a step starts from — [`base`], the user's `settings` and, in an integration's
/// workflow, their `credentials` — for a real execution's step and a test run's alike.
pub fn with_secrets(
    execution: &Execution,
    env: &BTreeMap<String, String>,
    settings: &UserSettings,
    credentials: Option<&UserSettings>,
) -> Value {
    let mut ctx = base(execution, env);
    ctx["settings"] = Value::Object(settings.values.clone());
    if let Some(credentials) = credentials {
        ctx["credentials"] = Value::Object(credentials.values.clone());
    }
    ctx
}

/// Redacts from `record` every secret of the settings and credentials the step was given.
pub fn redact_secrets(record: &mut StepAttempt, settings: &UserSettings, credentials: Option<&UserSettings>) {
    crate::connect::redact(record, &settings.secrets);
    if let Some(credentials) = credentials {
        crate::connect::redact(record, &credentials.secrets);
    }
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

/// What a step's own templates read (not the steps nested in it, nor a Function step's code).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    /// The ids of the steps they refer to (`{{steps.ID...}}`).
    pub steps: BTreeSet<String>,
    /// They read `{{settings...}}`.
    pub settings: bool,
    /// They read `{{credentials...}}`.
    pub credentials: bool,
}

/// What `step`'s own templates read, in one walk of them.
pub fn references(step: &Step) -> References {
    let mut found = References::default();
    collect(&own_templates(step), &mut |expr| match expr.root() {
        Some("steps") => {
            if let Some(id) = expr.key_at(1) {
                found.steps.insert(id.to_string());
            }
        }
        Some("settings") => found.settings = true,
        Some("credentials") => found.credentials = true,
        _ => {}
    });
    // An action carries the integration's `authorization`, templated over both.
    if matches!(step.kind, crate::model::StepKind::Action(_)) {
        found.settings = true;
        found.credentials = true;
    }
    found
}

/// The ids of the steps `step`'s own templates refer to (`{{steps.ID...}}`), not counting
/// the steps nested in it or a Function step's code.
pub fn referenced_steps(step: &Step) -> BTreeSet<String> {
    references(step).steps
}

/// The step's fields without the steps nested in it or a Function step's code.
fn own_templates(step: &Step) -> Value {
    let mut kind = serde_json::to_value(&step.kind).unwrap_or(Value::Null);
    if let Some(fields) = kind.as_object_mut() {
        for nested in ["then", "else", "steps", "code"] {
            fields.remove(nested);
        }
    }
    kind
}

fn collect(value: &Value, found: &mut impl FnMut(&crate::template::PathExpr)) {
    match value {
        Value::String(text) if text.contains("{{") => {
            if let Ok(template) = Template::parse(text) {
                template.expressions().for_each(&mut *found);
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

    fn execution() -> Execution {
        crate::record::sample_execution("e1")
    }

    #[test]
    fn every_step_sees_the_stack_env_values_and_an_unknown_one_is_a_missing_path() {
        let env = BTreeMap::from([("SLUICE_BASE_URL".to_string(), "http://127.0.0.1:9000".to_string())]);
        let ctx = base(&execution(), &env);
        let url = json!("{{env.SLUICE_BASE_URL}}/demo/crm/leads");
        assert_eq!(crate::template::render(&url, &ctx), Ok(json!("http://127.0.0.1:9000/demo/crm/leads")));
        match crate::template::render(&json!("{{env.NOPE}}"), &ctx) {
            Err(crate::template::TemplateError::MissingPath { path, .. }) => assert_eq!(path, "env.NOPE"),
            other => panic!("expected a missing path, got {other:?}"),
        }
        assert_eq!(base(&execution(), &BTreeMap::new())["env"], json!({}));
    }
}
