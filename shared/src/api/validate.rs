//! The Request trigger's `validate` rules, applied to an incoming request. Every violation is
//! reported, in a stable order: query, headers, body.

use crate::model::{RequestValidation, Trigger};
use crate::record::TriggerData;

pub(super) fn violations(trigger: &Trigger, data: &TriggerData) -> Vec<String> {
    match trigger {
        Trigger::Request { validate: Some(rules), .. } => check(rules, data),
        _ => Vec::new(),
    }
}

fn check(rules: &RequestValidation, data: &TriggerData) -> Vec<String> {
    let mut out = Vec::new();
    for name in rules.query.iter().flat_map(|q| &q.required) {
        if !data.query.contains_key(name) {
            out.push(format!("query parameter `{name}` is required"));
        }
    }
    for (name, expected) in &rules.headers {
        match data.headers.get(&name.to_ascii_lowercase()) {
            None => out.push(format!("header `{name}` is required (it must be `{expected}`)")),
            Some(value) if value != expected => out.push(format!("header `{name}` must be `{expected}`")),
            Some(_) => {}
        }
    }
    if rules.body.is_empty() {
        return out;
    }
    let Some(body) = data.body.as_object() else {
        out.push(format!(
            "the body must be a JSON object with the fields {}",
            rules.body.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ));
        return out;
    };
    for (field, kind) in &rules.body {
        match body.get(field) {
            None => out.push(format!("body field `{field}` is required ({})", kind.name())),
            Some(value) if !kind.matches(value) => {
                out.push(format!("body field `{field}` must be a {}, got {}", kind.name(), type_name(value)));
            }
            Some(_) => {}
        }
    }
    out
}

fn type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trigger(validate: serde_json::Value) -> Trigger {
        serde_json::from_value(json!({ "type": "request", "validate": validate })).expect("valid trigger")
    }

    #[test]
    fn every_violation_is_reported() {
        let trigger = trigger(json!({
            "query": { "required": ["source"] },
            "headers": { "X-Source": "crm" },
            "body": { "email": "string", "age": "number" },
        }));
        let data = TriggerData { body: json!({ "age": "old" }), ..Default::default() };
        assert_eq!(
            violations(&trigger, &data),
            vec![
                "query parameter `source` is required",
                "header `X-Source` is required (it must be `crm`)",
                "body field `age` must be a number, got a string",
                "body field `email` is required (string)",
            ]
        );
    }

    #[test]
    fn a_request_meeting_the_rules_has_no_violations() {
        let trigger = trigger(json!({
            "query": { "required": ["source"] },
            "headers": { "x-source": "crm" },
            "body": { "email": "string", "tags": "array" },
        }));
        let data = TriggerData {
            kind: Default::default(),
            query: [("source".to_string(), "web".to_string())].into(),
            headers: [("x-source".to_string(), "crm".to_string())].into(),
            body: json!({ "email": "a@b.c", "tags": [] }),
            event: None,
        };
        assert!(violations(&trigger, &data).is_empty());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_violation() {
        let trigger = trigger(json!({ "body": { "email": "string" } }));
        let data = TriggerData { body: json!("text"), ..Default::default() };
        assert_eq!(violations(&trigger, &data).len(), 1);
    }
}
