//! The JSON Schema of workflow files, generated from the model types so editors can
//! autocomplete and check them.
//!
//! Invariant: the schema is derived from [`Workflow`] alone (never written by hand), so it
//! cannot drift from what the loader deserializes; only `$id`, `title` and `description` are
//! added on top.

use serde_json::Value;

use super::Workflow;

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
        for step_type in ["\"request\"", "\"conditional\"", "\"response\""] {
            assert!(text.contains(step_type), "schema lacks step type {step_type}");
        }
        for op in crate::condition::ALL_OPERATORS {
            let name = crate::condition::op_name(op);
            assert!(text.contains(&format!("\"{name}\"")), "schema lacks operator {name}");
        }
    }
}
