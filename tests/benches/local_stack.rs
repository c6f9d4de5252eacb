//! Benchmark of the local stack on SQLite (`cargo bench -p sluice-e2e --bench local_stack`):
//! steps per second of a 10-step linear workflow (5 HTTP requests to a local server and 5
//! conditionals, 200 executions started together), and the wall time of one 10,000-item
//! fan-out. Prints the numbers; asserts only that every execution succeeded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::stack::{Backend, StackConfig, TestStack};

const EXECUTIONS: usize = 200;

#[tokio::main]
async fn main() {
    let config = StackConfig { workers: 8, ..StackConfig::default() };
    let stack = TestStack::start_with(Backend::Sqlite, config).await.expect("stack");
    let api = FakeApi::start().await;

    let mut steps = String::new();
    for i in 0..5 {
        steps.push_str(&format!("  - {{ id: call{i}, type: request, url: \"{}/status/200\" }}\n", api.base_url));
        steps.push_str(&format!(
            "  - {{ id: check{i}, type: conditional, when: {{ left: \"{{{{steps.call{i}.output.status}}}}\", op: equals, right: 200 }} }}\n"
        ));
    }
    stack.deploy(&format!("id: linear\ntrigger: {{ type: request }}\nsteps:\n{steps}")).await;
    let begun = Instant::now();
    let mut ids = Vec::with_capacity(EXECUTIONS);
    for _ in 0..EXECUTIONS {
        let response = stack.trigger("linear", json!({})).await;
        let body: Value = response.json().await.expect("JSON");
        ids.push(body["executionId"].as_str().expect("executionId").to_string());
    }
    for id in &ids {
        let record = stack.wait_until_ended(id, Duration::from_secs(600)).await;
        assert_eq!(record["status"], "succeeded");
    }
    let elapsed = begun.elapsed();
    let total_steps = EXECUTIONS * 10;
    println!(
        "linear: {EXECUTIONS} executions x 10 steps in {:.2} s = {:.0} steps/s",
        elapsed.as_secs_f64(),
        total_steps as f64 / elapsed.as_secs_f64()
    );

    stack
        .deploy(
            "id: wide\ntrigger: { type: request }\nsteps:\n  - id: each\n    type: fan_out\n    over: \"{{trigger.body.items}}\"\n    steps:\n      - { id: small, type: conditional, when: { left: \"{{item}}\", op: less_than, right: 5000 } }\n",
        )
        .await;
    let items: Vec<u32> = (0..10_000).collect();
    let begun = Instant::now();
    let response = stack.trigger("wide", json!({ "items": items })).await;
    let body: Value = response.json().await.expect("JSON");
    let id = body["executionId"].as_str().expect("executionId").to_string();
    let record = stack.wait_until_ended(&id, Duration::from_secs(900)).await;
    assert_eq!(record["status"], "succeeded");
    println!("fan-out: 10,000 items joined in {:.2} s", begun.elapsed().as_secs_f64());
}
