//! Reading HTTP answers and execution records in tests.

use serde_json::Value;

/// The JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

/// The step `id` (a step key: `id` or `id@index`) of an execution record.
pub fn step<'a>(record: &'a Value, id: &str) -> &'a Value {
    record["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in {record:#}"))
}
