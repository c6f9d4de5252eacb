//! End-to-end scenarios of the step types beyond the first three — fan-out, delay — and of
//! retries honouring Retry-After and of test runs, over HTTP against the local stack, on
//! SQLite and on DynamoDB + SQS (the local AWS-API server).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::on_both_backends;
use sluice_e2e::record::{json_of, step};
use sluice_e2e::stack::{Backend, StackConfig, TestStack};

const LONG: Duration = Duration::from_secs(30);

on_both_backends! {
    fan_out_collects_branch_results_in_input_order: LONG;
    fan_out_with_concurrency_runs_at_most_that_many_branches_at_once: LONG;
    an_inline_fan_out_with_concurrency_whose_branches_retry_joins_every_branch_once: LONG;
    nested_fan_outs_collect_nested_arrays: LONG;
    fan_out_of_large_items_sends_them_in_batches_that_fit: LONG;
    a_failed_branch_fails_the_fan_out: LONG;
    delay_step_waits_with_the_execution_waiting: LONG;
    retry_after_is_honoured_before_retrying: LONG;
    test_run_skips_delays_and_truncates_arrays: LONG;
    single_step_test_uses_the_given_step_outputs: LONG;
    downloaded_file_is_answered_byte_for_byte: LONG;
    pagination_collects_every_page_in_three_styles: LONG;
    function_step_reduces_a_fan_out_and_logs: LONG;
    function_sandbox_refuses_escapes_and_runaway_code: LONG;
}

async fn started(stack: &TestStack, workflow: &str, body: Value) -> String {
    let response = stack.trigger(workflow, body).await;
    assert_eq!(response.status(), 202);
    json_of(response).await["executionId"].as_str().expect("executionId").to_string()
}

async fn fan_out_collects_branch_results_in_input_order(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: fan
trigger: {{ type: request }}
steps:
  - id: each
    type: fan_out
    over: "{{{{trigger.body.codes}}}}"
    steps:
      - id: call
        type: request
        url: "{}/status/{{{{item}}}}"
        query: {{ position: "{{{{index}}}}" }}
  - id: reply
    type: response
    body: {{ statuses: "{{{{steps.each.output}}}}" }}
"#,
            api.base_url
        ))
        .await;
    let response = stack.trigger("fan", json!({ "codes": [202, 200, 201] })).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    let statuses: Vec<&Value> = body["statuses"].as_array().expect("array").iter().map(|o| &o["status"]).collect();
    assert_eq!(statuses, [&json!(202), &json!(200), &json!(201)]);
    let positions: Vec<&Value> =
        body["statuses"].as_array().expect("array").iter().map(|o| &o["body"]["status"]).collect();
    assert_eq!(positions, [&json!(202), &json!(200), &json!(201)]);
}

/// Found by the fault-injection suite: a branch of a small (inline) fan-out with
/// `concurrency` that a retry sends to the queue used to start branch `index + concurrency`
/// again when it ended, from an item an inline fan-out never stores; the execution stayed
/// running until the message was dead-lettered.
async fn an_inline_fan_out_with_concurrency_whose_branches_retry_joins_every_branch_once(stack: &TestStack) {
    let api = FakeApi::start().await;
    let key = uuid::Uuid::new_v4().simple().to_string();
    stack
        .deploy(&format!(
            r#"
id: retrying
trigger: {{ type: request }}
steps:
  - id: each
    type: fan_out
    over: "{{{{trigger.body.items}}}}"
    concurrency: 2
    steps:
      - id: call
        type: request
        url: "{base}/flaky/{key}-{{{{index}}}}/1"
        retries: 2
        retry_delay: 100ms
      - id: double
        type: function
        code: "(p) => p.n * 2"
        parameters: {{ n: "{{{{item}}}}" }}
"#,
            base = api.base_url
        ))
        .await;
    let id = started(stack, "retrying", json!({ "items": [1, 2, 3, 4, 5] })).await;
    let record = stack.wait_until_ended(&id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let each = record["steps"].as_array().expect("steps").iter().find(|s| s["id"] == "each").expect("the fan-out");
    assert_eq!(each["output"], json!([2, 4, 6, 8, 10]), "{record:#}");
    for index in 0..5 {
        assert_eq!(api.calls(&format!("{key}-{index}")), 2, "branch {index}: one failure, one success");
    }
}

async fn fan_out_with_concurrency_runs_at_most_that_many_branches_at_once(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: gentle
trigger: {{ type: request }}
steps:
  - id: each
    type: fan_out
    over: "{{{{trigger.body.items}}}}"
    concurrency: 2
    steps:
      - {{ id: call, type: request, url: "{}/concurrent/150" }}
"#,
            api.base_url
        ))
        .await;
    let id = started(stack, "gentle", json!({ "items": [1, 2, 3, 4, 5, 6] })).await;
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(step(&record, "each")["output"].as_array().map(Vec::len), Some(6));
    assert!(api.max_in_flight() <= 2, "{} branches ran at once", api.max_in_flight());
    assert_eq!(api.max_in_flight(), 2, "the two lanes should overlap");
}

async fn nested_fan_outs_collect_nested_arrays(stack: &TestStack) {
    stack
        .deploy(
            r#"
id: nested
trigger: { type: request }
steps:
  - id: outer
    type: fan_out
    over: "{{trigger.body.groups}}"
    steps:
      - id: inner
        type: fan_out
        over: "{{item}}"
        steps:
          - id: big
            type: conditional
            when: { left: "{{item}}", op: greater_than, right: 10 }
  - { id: reply, type: response, body: "{{steps.outer.output}}" }
"#,
        )
        .await;
    let response = stack.trigger("nested", json!({ "groups": [[1, 20], [], [30]] })).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    let then = json!({ "branch": "then" });
    let otherwise = json!({ "branch": "else" });
    assert_eq!(json_of(response).await, json!([[otherwise, then], [], [then]]));

    // The record lists branch steps under their fan-out, nested fan-outs likewise.
    let record = stack.wait_until_ended(&id, LONG).await;
    let ids: Vec<&Value> = record["steps"].as_array().expect("steps").iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&json!("outer"), &json!("reply")], "branch steps are not listed at the top");
    let outer = &step(&record, "outer")["branches"];
    let shape: Vec<Value> = outer
        .as_array()
        .expect("outer branches")
        .iter()
        .map(|branch| {
            let inner = &branch["steps"][0];
            let leaves: Vec<Value> = inner["branches"]
                .as_array()
                .expect("inner branches")
                .iter()
                .map(|leaf| json!([leaf["index"], leaf["steps"][0]["id"], leaf["steps"][0]["output"]]))
                .collect();
            json!({ "index": branch["index"], "id": inner["id"], "leaves": leaves })
        })
        .collect();
    assert_eq!(
        shape,
        [
            json!({ "index": 0, "id": "inner", "leaves": [[0, "big", otherwise], [1, "big", then]] }),
            json!({ "index": 1, "id": "inner", "leaves": [] }),
            json!({ "index": 2, "id": "inner", "leaves": [[0, "big", then]] }),
        ]
    );
}

/// Five items of 60 KB: 300 KB of branch messages, more than one SQS batch may carry on AWS
/// (moto does not enforce that limit; the split itself is unit-tested in `adapters::sqs`).
async fn fan_out_of_large_items_sends_them_in_batches_that_fit(stack: &TestStack) {
    stack
        .deploy(
            r#"
id: large
trigger: { type: request }
steps:
  - id: make
    type: function
    code: "() => Array.from({ length: 5 }, (_, i) => String(i).repeat(60000))"
  - id: each
    type: fan_out
    over: "{{steps.make.output}}"
    steps:
      - id: measure
        type: function
        code: "(p) => ({ first: p.item[0], length: p.item.length })"
        parameters: { item: "{{item}}" }
"#,
        )
        .await;
    let id = started(stack, "large", json!({})).await;
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{}", record["error"]);
    let expected: Vec<Value> = (0..5).map(|i| json!({ "first": i.to_string(), "length": 60000 })).collect();
    assert_eq!(step(&record, "each")["output"], json!(expected));
}

async fn a_failed_branch_fails_the_fan_out(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: partly
trigger: {{ type: request }}
steps:
  - id: each
    type: fan_out
    over: "{{{{trigger.body.codes}}}}"
    steps:
      - {{ id: call, type: request, url: "{}/status/{{{{item}}}}" }}
  - {{ id: never, type: response, body: done }}
"#,
            api.base_url
        ))
        .await;
    let response = stack.trigger("partly", json!({ "codes": [200, 404, 200] })).await;
    assert_eq!(response.status(), 500);
    let body = json_of(response).await;
    assert_eq!(body["error"]["step"], "each");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("branch 1 failed at step `call`") && message.contains("404"), "{message}");
}

async fn delay_step_waits_with_the_execution_waiting(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            "id: later\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: pause, type: delay, for: 2s }}\n  - {{ id: call, type: request, url: \"{}/status/200\" }}\n",
            api.base_url
        ))
        .await;
    let begun = Instant::now();
    let id = started(stack, "later", json!({})).await;
    let mut saw_waiting = false;
    let record = loop {
        let record = stack.execution(&id).await;
        saw_waiting |= record["status"] == "waiting";
        if record["status"] == "succeeded" || record["status"] == "failed" {
            break record;
        }
        assert!(begun.elapsed() < LONG, "still {} after {LONG:?}", record["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert!(saw_waiting, "the execution never showed `waiting`");
    assert!(begun.elapsed() >= Duration::from_secs(2));
    let waited_until = step(&record, "pause")["output"]["waitedUntil"].as_str().expect("waitedUntil").to_string();
    let call_started = step(&record, "call")["startedAt"].as_str().expect("startedAt").to_string();
    assert!(call_started >= waited_until, "the next step started at {call_started}, before {waited_until}");
}

async fn retry_after_is_honoured_before_retrying(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            "id: polite\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: call, type: request, url: \"{}/limited/2\", retries: 2, retry_delay: 100ms }}\n",
            api.base_url
        ))
        .await;
    let id = started(stack, "polite", json!({})).await;
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(step(&record, "call")["attempts"], 2);
    let calls = api.limited_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1] - calls[0] >= Duration::from_millis(1900), "retried after {:?}", calls[1] - calls[0]);
}

async fn test_run(stack: &TestStack, request: Value) -> (u16, Value) {
    let url = format!("{}/projects/{}/test-runs", stack.base_url, stack.project_id);
    let response = stack.client().post(url).bearer_auth(&stack.api_key).json(&request).send().await.expect("send");
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

async fn test_run_skips_delays_and_truncates_arrays(stack: &TestStack) {
    let api = FakeApi::start().await;
    let workflow = json!({
        "id": "trial",
        "trigger": { "type": "request" },
        "steps": [
            { "id": "pause", "type": "delay", "for": "1h" },
            { "id": "list", "type": "request", "url": format!("{}/list/30", api.base_url) },
        ]
    });
    let begun = Instant::now();
    let (status, record) = test_run(stack, json!({ "workflow": workflow, "trigger": { "body": { "x": 1 } } })).await;
    assert_eq!(status, 200, "{record:#}");
    assert!(begun.elapsed() < Duration::from_secs(20), "the test run waited for the delay");
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["trigger"]["body"], json!({ "x": 1 }));
    let items = step(&record, "list")["output"]["body"]["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 21, "20 items and a note");
    assert_eq!(items[20], "… 10 more items");
    assert!(step(&record, "pause")["output"]["skipped"].is_string());

    // The test workflow is not reachable through the trigger route.
    assert_eq!(stack.trigger("trial", json!({})).await.status(), 404);
    // A test run wants the project API key.
    let url = format!("{}/projects/{}/test-runs", stack.base_url, stack.project_id);
    let refused = stack.client().post(url).bearer_auth(stack.token("u")).json(&json!({})).send().await.expect("send");
    assert_eq!(refused.status(), 401);
    // An invalid workflow lists its problems.
    let (status, body) = test_run(stack, json!({ "workflow": { "id": "Bad!", "steps": [] } })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["violations"].as_array().is_some_and(|v| v.len() >= 2), "{body}");
}

async fn single_step_test_uses_the_given_step_outputs(stack: &TestStack) {
    let workflow = json!({
        "id": "one",
        "trigger": { "type": "request" },
        "steps": [
            { "id": "lookup", "type": "request", "url": "https://api.example.com/x" },
            { "id": "route", "type": "conditional",
              "when": { "left": "{{steps.lookup.output.body.total}}", "op": "greater_than", "right": 0 } },
        ]
    });
    let (status, shown) = test_run(
        stack,
        json!({ "workflow": workflow, "step": "route", "steps": { "lookup": { "output": { "body": { "total": 3 } } } } }),
    )
    .await;
    assert_eq!(status, 200, "{shown:#}");
    assert_eq!(shown["output"], json!({ "branch": "then" }));
    let (status, shown) = test_run(stack, json!({ "workflow": workflow, "step": "nope" })).await;
    assert_eq!(status, 400, "{shown}");
}

/// 10,000 branches, every message delivered twice: the join counts each branch once, keeps
/// input order, and the reduced result is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_of_ten_thousand_items_under_duplicate_delivery() {
    wide_fan_out(Backend::Sqlite, 10_000).await;
}

/// The same on DynamoDB + SQS (moto): 1,000 items by default, since moto serves about 20
/// branch deliveries a second (a 10,000-item run takes about 10 minutes: set
/// `SLUICE_AWS_FAN_OUT_ITEMS=10000` to run it, as the closing note of issue 3 did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wide_fan_out_on_aws_under_duplicate_delivery() {
    let count = match std::env::var("SLUICE_AWS_FAN_OUT_ITEMS") {
        Ok(count) => count.parse().expect("SLUICE_AWS_FAN_OUT_ITEMS must be a number of items"),
        Err(_) => 1_000,
    };
    wide_fan_out(Backend::Aws, count).await;
}

/// A long sequential lane (`concurrency: 1`) with every message delivered twice: only the
/// delivery that counted a branch first starts the next one, so the lane makes about two
/// runs per branch (both copies of each message), not twice as many at every branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_lane_under_duplicate_delivery_runs_each_branch_about_twice() {
    sequential_lane(Backend::Sqlite, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sequential_lane_on_aws_under_duplicate_delivery_runs_each_branch_about_twice() {
    sequential_lane(Backend::Aws, 120).await;
}

async fn sequential_lane(backend: Backend, count: u32) {
    let config = StackConfig { duplicate_deliveries: true, workers: 8, ..StackConfig::default() };
    let Some(stack) = TestStack::start_with(backend, config).await else { return };
    let api = FakeApi::start().await;
    // More items than run inline, so the lane goes through the queue branch by branch.
    assert!(count as usize > sluice_shared::runtime::DEFAULT_INLINE_FAN_OUT_ITEMS);
    stack
        .deploy(&format!(
            r#"
id: lane
trigger: {{ type: request }}
steps:
  - id: each
    type: fan_out
    over: "{{{{trigger.body.items}}}}"
    concurrency: 1
    steps:
      - {{ id: call, type: request, url: "{}/counted/lane/0" }}
"#,
            api.base_url
        ))
        .await;
    let items: Vec<u32> = (0..count).collect();
    let id = started(&stack, "lane", json!({ "items": items })).await;
    let record = stack.wait_until_ended(&id, Duration::from_secs(120)).await;
    assert_eq!(record["status"], "succeeded", "{}", record["error"]);
    assert_eq!(step(&record, "each")["output"].as_array().map(Vec::len), Some(count as usize));
    let calls = api.calls("lane");
    // Each branch is delivered twice, and both copies may call before either records.
    assert!((count..=2 * count + 10).contains(&calls), "{calls} calls for {count} sequential branches");
}

async fn wide_fan_out(backend: Backend, count: u32) {
    let config = StackConfig { duplicate_deliveries: true, workers: 8, ..StackConfig::default() };
    let Some(stack) = TestStack::start_with(backend, config).await else { return };
    let half = count / 2;
    stack
        .deploy(
            r#"
id: wide
trigger: { type: request }
steps:
  - id: each
    type: fan_out
    over: "{{trigger.body.items}}"
    steps:
      - id: small
        type: conditional
        when: { left: "{{item}}", op: less_than, right: HALF }
"#
            .replace("HALF", &half.to_string())
            .as_str(),
        )
        .await;
    let items: Vec<u32> = (0..count).collect();
    let id = started(&stack, "wide", json!({ "items": items })).await;
    let record = stack.wait_until_ended(&id, Duration::from_secs(300 + u64::from(count) / 5)).await;
    assert_eq!(record["status"], "succeeded", "{}", record["error"]);
    let output = step(&record, "each")["output"].as_array().expect("fan-out output").clone();
    assert_eq!(output.len(), count as usize);
    for (i, result) in output.iter().enumerate() {
        let expected = if i < half as usize { "then" } else { "else" };
        assert_eq!(result["branch"], expected, "branch {i}");
    }
    assert_eq!(record["steps"].as_array().map(Vec::len), Some(1), "branch steps are listed under the fan-out");
    let branches = step(&record, "each")["branches"].as_array().expect("branches").clone();
    assert_eq!(branches.len(), count as usize, "one entry per branch");
    for (i, branch) in branches.iter().enumerate() {
        assert_eq!(branch["index"], json!(i));
        let steps = branch["steps"].as_array().expect("branch steps");
        assert_eq!(steps.len(), 1, "branch {i}: one record, none twice");
        assert_eq!((&steps[0]["id"], &steps[0]["attempts"]), (&json!("small"), &json!(1)), "branch {i}");
    }
}

async fn downloaded_file_is_answered_byte_for_byte(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            "id: chart\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: download, type: request, url: \"{}/file.png\" }}\n  - {{ id: reply, type: response, file: \"{{{{steps.download.output.file}}}}\" }}\n",
            api.base_url
        ))
        .await;
    let response = stack.trigger("chart", json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let id = response.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    let bytes = response.bytes().await.expect("bytes");
    assert_eq!(bytes.as_ref(), sluice_e2e::fake_api::png_bytes().as_slice());
    let record = stack.wait_until_ended(&id, LONG).await;
    let file = &step(&record, "download")["output"]["file"];
    assert_eq!(file["name"], "chart.png");
    assert_eq!(file["mimeType"], "image/png");
    assert_eq!(file["size"], 4104);
    assert!(file["data"].as_str().is_some_and(|d| d.starts_with("sluice-file:")), "{file}");
}

async fn pagination_collects_every_page_in_three_styles(stack: &TestStack) {
    let api = FakeApi::start().await;
    let base = &api.base_url;
    stack
        .deploy(&format!(
            r#"
id: pages
trigger: {{ type: request }}
steps:
  - id: by_cursor
    type: request
    url: "{base}/pages/cursor"
    pagination: {{ style: cursor, items: body.data, cursor: body.meta.next, param: after }}
  - id: by_link
    type: request
    url: "{base}/pages/link"
    pagination: {{ style: link, items: body }}
  - id: by_number
    type: request
    url: "{base}/pages/number"
    pagination: {{ style: page, items: body.results, param: p, page_size: 3 }}
  - id: capped
    type: request
    url: "{base}/pages/cursor"
    pagination: {{ style: cursor, items: body.data, cursor: body.meta.next, param: after, max_pages: 2 }}
"#
        ))
        .await;
    let id = started(stack, "pages", json!({})).await;
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let all = json!(["a", "b", "c", "d", "e", "f", "g"]);
    for (name, pages) in [("by_cursor", 3), ("by_link", 3), ("by_number", 3)] {
        let output = &step(&record, name)["output"];
        assert_eq!(output["items"], all, "{name}");
        assert_eq!(output["pages"], pages, "{name}");
    }
    assert_eq!(step(&record, "capped")["output"]["items"], json!(["a", "b", "c", "d", "e", "f"]));
}

async fn function_step_reduces_a_fan_out_and_logs(stack: &TestStack) {
    stack
        .deploy(
            r#"
id: reduce
trigger: { type: request }
steps:
  - id: each
    type: fan_out
    over: "{{trigger.body.numbers}}"
    steps:
      - id: square
        type: function
        code: "async (p) => p.n * p.n"
        parameters: { n: "{{item}}" }
  - id: sum
    type: function
    code: |
      function (parameters, { _, dateFns, uuid }) {
        console.log("adding", parameters.squares.length, "squares");
        return {
          sum: _.sum(parameters.squares),
          due: dateFns.formatISO(dateFns.addDays(dateFns.parseISO("2026-01-30"), 30), { representation: "date" }),
          id: uuid.validate(uuid.v4()),
        };
      }
    parameters: { squares: "{{steps.each.output}}" }
  - { id: reply, type: response, body: "{{steps.sum.output}}" }
"#,
        )
        .await;
    let response = stack.trigger("reduce", json!({ "numbers": [1, 2, 3, 4] })).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    assert_eq!(json_of(response).await, json!({ "sum": 30, "due": "2026-03-01", "id": true }));
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(step(&record, "sum")["logs"], json!(["adding 4 squares"]));
}

async fn function_sandbox_refuses_escapes_and_runaway_code(stack: &TestStack) {
    for (code, expected) in [
        ("() => require('fs').readFileSync('/etc/passwd')", "ReferenceError"),
        ("() => fetch('http://169.254.169.254/latest/meta-data/')", "ReferenceError"),
        ("() => { while (true) {} }", "time limit of 300ms"),
        ("() => { const a = []; while (true) a.push('x'.repeat(1 << 20) + a.length) }", "memory limit of 16 MB"),
    ] {
        let yaml = format!(
            "id: escape\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: js, type: function, time_limit: 300ms, memory_limit_mb: 16, code: {} }}\n  - {{ id: reply, type: response, body: escaped }}\n",
            serde_json::to_string(code).expect("code")
        );
        stack.deploy(&yaml).await;
        let response = stack.trigger("escape", json!({})).await;
        assert_eq!(response.status(), 500, "{code}");
        let body = json_of(response).await;
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{code}: {message}");
    }
}
