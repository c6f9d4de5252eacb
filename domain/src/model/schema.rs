//! The JSON Schema of workflow files, generated from the model types so editors can
//! autocomplete and check them.
//!
//! Invariant: the schema is derived from [`Workflow`] alone (never written by hand), so it
//! cannot drift from what the loader deserializes; only `$id`, `title` and `description` are
//! added on top.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Workflow;
use super::project::{Input, IntegrationConfig};

/// Where the schema is published; editors match files to it through this id.
pub const SCHEMA_ID: &str = "https://sluice.dev/schemas/workflow-v1.json";

/// The JSON Schema (draft 2020-12) of a workflow file, version 1.
pub fn workflow_schema() -> Value {
    let mut schema = schemars::schema_for!(Workflow).to_value();
    if let Value::Object(map) = &mut schema {
        map.insert("$id".to_string(), Value::from(SCHEMA_ID));
        map.insert("title".to_string(), Value::from("Sluice workflow"));
        map.insert(
            "description".to_string(),
            Value::from(
                "A Sluice workflow file (format version 1): a trigger and the steps it runs. \
                 String values in steps may hold {{...}} dynamic variables.",
            ),
        );
    }
    schema
}

/// The JSON Schema of an integration's `config.yaml`.
pub fn integration_schema() -> Value {
    titled(
        schemars::schema_for!(IntegrationConfig).to_value(),
        "https://sluice.dev/schemas/integration-v1.json",
        "Sluice integration config",
        "integrations/<name>/config.yaml: how the integration appears in the Connect Portal and, \
         for a custom integration (custom.<name>), how its users authenticate and where its API is.",
    )
}

/// The JSON Schema of an `inputs.yaml` (and of a workflow's `inputs`): setting key → input.
pub fn inputs_schema() -> Value {
    titled(
        schemars::schema_for!(BTreeMap<String, Input>).to_value(),
        "https://sluice.dev/schemas/inputs-v1.json",
        "Sluice user settings",
        "integrations/<name>/inputs.yaml: the user settings of an integration, by the key workflows \
         read them with ({{settings.KEY}}); `id` is what stored values hang on.",
    )
}

fn titled(mut schema: Value, id: &str, title: &str, description: &str) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("$id".to_string(), Value::from(id));
        map.insert("title".to_string(), Value::from(title));
        map.insert("description".to_string(), Value::from(description));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_describes_the_top_level_keys() {
        let schema = workflow_schema();
        assert_eq!(schema["$id"], SCHEMA_ID);
        assert_eq!(schema["title"], "Sluice workflow");
        let properties = schema["properties"].as_object().expect("top-level properties");
        for key in ["id", "name", "trigger", "steps"] {
            assert!(properties.contains_key(key), "schema lacks `{key}`");
        }
        let required = schema["required"].as_array().expect("required list");
        for key in ["id", "trigger", "steps"] {
            assert!(required.iter().any(|r| r == key), "`{key}` should be required");
        }
    }

    #[test]
    fn schema_mentions_every_step_type_and_operator() {
        let text = workflow_schema().to_string();
        for step_type in ["request", "conditional", "response", "function", "fan_out", "delay"] {
            assert!(text.contains(&format!("\"{step_type}\"")), "schema lacks step type {step_type}");
        }
        for op in crate::condition::ALL_OPERATORS {
            let name = crate::condition::op_name(op);
            assert!(text.contains(&format!("\"{name}\"")), "schema lacks operator {name}");
        }
    }

    #[test]
    fn schema_mentions_the_request_options_and_the_new_steps_keys() {
        let text = workflow_schema().to_string();
        let words = [
            // body types, auth types, pagination styles
            "json",
            "form",
            "multipart",
            "raw",
            "basic",
            "bearer",
            "cursor",
            "link",
            "page",
            "offset",
            // keys
            "body_type",
            "auth",
            "pagination",
            "items",
            "max_pages",
            "limit_param",
            "page_size",
            "file",
            "code",
            "parameters",
            "time_limit",
            "memory_limit_mb",
            "over",
            "concurrency",
            "for",
            "until",
        ];
        for word in words {
            assert!(text.contains(&format!("\"{word}\"")), "schema lacks {word}");
        }
    }

    #[test]
    fn schema_describes_the_webhook_schedule_and_poll_triggers() {
        let schema = workflow_schema();
        let text = schema.to_string();
        for word in ["webhook", "filter", "schedule", "every", "hourly", "daily", "weekly", "cron", "timezone"] {
            assert!(text.contains(&format!("\"{word}\"")), "schema lacks {word}");
        }
        for word in ["overlap", "catchup", "poll", "request", "items", "key", "initial", "monday", "allow", "fire"] {
            assert!(text.contains(&format!("\"{word}\"")), "schema lacks {word}");
        }
        let defs = &schema["$defs"];
        assert_eq!(defs["Hourly"]["properties"]["minute"]["maximum"], 59);
        assert_eq!(defs["ScheduleTrigger"]["oneOf"].as_array().map(Vec::len), Some(5), "one rule of five");
    }

    #[test]
    fn schema_states_the_ranges_of_the_new_numbers() {
        let schema = workflow_schema();
        let defs = &schema["$defs"];
        let function = &defs["FunctionStep"]["properties"];
        assert_eq!(function["memory_limit_mb"]["maximum"], 512);
        assert_eq!(function["code"]["maxLength"], 102_400);
        let fan_out = &defs["FanOutStep"]["properties"];
        assert_eq!(fan_out["concurrency"]["maximum"], 1000);
        assert_eq!(fan_out["over"]["type"], "string");
    }
}
