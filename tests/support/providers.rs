//! Helpers for the built-in integrations' end-to-end tests against their providers' fakes
//! (`sluice-fakes`): a project whose integration points at a fake, the hosted OAuth flow
//! walked as a browser would, a user's connection as the portal shows it, one action run
//! through a synchronous workflow (or several at once) and what its step did, and the requests
//! a fake received since a count.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stack::TestStack;

/// A project folder holding the built-in `integration` with `config` as its `config.yaml` and
/// one workflow per `(id, steps)`: a request-triggered workflow, enabled by default, whose
/// `steps` (YAML list items, indented by two spaces) run before a Response step answering
/// `{"ran": true}`. [`run`] reads what step `a` did from the execution record.
pub fn project(integration: &str, config: &str, workflows: &[(&str, String)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-provider-{}", uuid::Uuid::new_v4().simple()));
    let folder = dir.join("integrations").join(integration);
    std::fs::create_dir_all(folder.join("workflows")).expect("project folders");
    std::fs::write(folder.join("config.yaml"), config).expect("config.yaml");
    for (id, steps) in workflows {
        let text = format!(
            "id: {id}\nenabled_by_default: true\ntrigger: {{ type: request }}\nsteps:\n{steps}\n  - {{ id: reply, type: response, body: {{ ran: true }} }}\n"
        );
        std::fs::write(folder.join("workflows").join(format!("{id}.yaml")), text).expect("workflow file");
    }
    dir
}

/// A step `a` running `action` with `params` (a YAML flow mapping), failures passed on.
pub fn action_step(action: &str, params: &str) -> String {
    format!("  - {{ id: a, type: action, action: {action}, continue_on_failure: true, params: {params} }}")
}

/// A step `a` running `action` with `params` (a YAML flow mapping), retried `retries` times
/// `retry_delay` apart (`100ms`, `1s`) on a retryable failure, failures passed on.
pub fn retried_step(action: &str, params: &str, retries: u32, retry_delay: &str) -> String {
    format!(
        "  - {{ id: a, type: action, action: {action}, continue_on_failure: true, retries: {retries}, \
         retry_delay: {retry_delay}, params: {params} }}"
    )
}

/// Deploys a [`project`] of `integration` with `config` and `workflows` on `stack`, then
/// removes its folder (the deployment keeps what it read).
pub async fn deploy(stack: &TestStack, integration: &str, config: &str, workflows: &[(&str, String)]) {
    let dir = project(integration, config, workflows);
    stack.deploy_project(&dir).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The config of a built-in integration connecting through the hosted OAuth flow on the
/// fake at `authorize` / `token`, its actions going to `api`, with the test stack's client.
pub fn oauth_config(authorize: &str, token: &str, api: &str, extra: &str) -> String {
    format!(
        "clientId: \"{{{{env.TEST_CLIENT_ID}}}}\"\nclientSecret: \"{{{{env.TEST_CLIENT_SECRET}}}}\"\n\
         authorizationUrl: {authorize}\naccessTokenUrl: {token}\napiBaseUrl: {api}\n{extra}"
    )
}

/// Where the hosted flow stopped, if it did not connect.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowStop {
    /// The start route refused (status, body).
    Start(StatusCode, Value),
    /// The provider's authorize page did not send the browser back with a code: its status
    /// and `Location` (a redirect carrying `error=...`, or none).
    Authorize(StatusCode, Option<String>),
    /// The callback did not connect (status, body).
    Callback(StatusCode, Value),
}

/// Walks the hosted OAuth flow for `user` as a browser would: the start route (with `query`,
/// e.g. `loginHost=sandbox`), the provider's authorize page (the fake answers at once), the
/// callback. The authorize URL Sluice built, and the callback's answer. The callback's query
/// goes to this stack's own address: on the Lambda host Sluice names its callback `https://`
/// (Function URLs are HTTPS only), which the plain-HTTP test stack does not serve.
pub async fn connect(
    stack: &TestStack,
    user: &str,
    integration: &str,
    query: &str,
) -> Result<(url::Url, Value), FlowStop> {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    // Through `localhost`, so the callback Sluice registers is `http://localhost:PORT/...`:
    // providers (HubSpot) refuse redirect URIs on an IP address.
    let base = stack.base_url.replace("://127.0.0.1:", "://localhost:");
    let start = format!("{base}/projects/{}/sdk/integrations/{integration}/oauth/start?{query}", stack.project_id);
    let answer = stack.client().get(start).bearer_auth(stack.token(user)).send().await.expect("start");
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if status != StatusCode::OK {
        return Err(FlowStop::Start(status, body));
    }
    let authorize = url::Url::parse(body["authorizationUrl"].as_str().expect("an authorizationUrl")).expect("a URL");
    let at_provider = browser.get(authorize.clone()).send().await.expect("authorize");
    let location = at_provider.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_string);
    let back = location.as_deref().and_then(|l| url::Url::parse(l).ok());
    let Some(back) = back.filter(|b| b.path() == "/oauth/callback" && b.query_pairs().any(|(k, _)| k == "code")) else {
        return Err(FlowStop::Authorize(at_provider.status(), location));
    };
    let callback = format!("{base}/oauth/callback?{}", back.query().unwrap_or_default());
    let done = browser.get(callback).send().await.expect("callback");
    let status = done.status();
    let body: Value = done.json().await.unwrap_or(Value::Null);
    if status != StatusCode::OK {
        return Err(FlowStop::Callback(status, body));
    }
    Ok((authorize, body))
}

/// What `/sdk/connect` shows `user` of `integration`.
pub async fn connection(stack: &TestStack, user: &str, integration: &str) -> Value {
    let url = format!("{}/projects/{}/sdk/connect", stack.base_url, stack.project_id);
    let answer = stack.client().get(url).bearer_auth(stack.token(user)).send().await.expect("connect");
    let body: Value = answer.json().await.expect("connect JSON");
    body["integrations"]
        .as_array()
        .and_then(|list| list.iter().find(|i| i["name"] == integration).cloned())
        .unwrap_or(Value::Null)
}

/// Runs `workflow` for `user` with `body` and answers what its step `a` did, from the
/// execution record: the step's record (`status`, `output`, `error` with `message`,
/// `retryable` and `details`, `attempts`). [`output`] and [`error`] read it.
pub async fn run(stack: &TestStack, user: &str, workflow: &str, body: Value) -> Value {
    step_a(workflow, &execution(stack, user, workflow, body).await)
}

/// Like [`run`], after asserting that the whole execution record (trigger, steps, outputs,
/// errors, logs) nowhere shows `secret`: what the provider's tokens start with (Slack's `xox`).
pub async fn run_hiding(stack: &TestStack, user: &str, workflow: &str, body: Value, secret: &str) -> Value {
    let record = execution(stack, user, workflow, body).await;
    assert!(!record.to_string().contains(secret), "{workflow}: no `{secret}` token in the record: {record}");
    step_a(workflow, &record)
}

/// Runs `workflow` for `user` with `body` (asserting the trigger answers 200) and answers its
/// execution record once the execution has ended.
async fn execution(stack: &TestStack, user: &str, workflow: &str, body: Value) -> Value {
    let answer = stack
        .client()
        .post(stack.trigger_url(workflow))
        .bearer_auth(stack.token(user))
        .json(&body)
        .send()
        .await
        .expect("trigger");
    let status = answer.status();
    let id = answer.headers().get("x-sluice-execution-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = answer.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "{workflow}: {text}");
    stack.wait_until_ended(&id.expect("an execution id"), std::time::Duration::from_secs(30)).await
}

/// Step `a` of an execution `record` of `workflow`.
fn step_a(workflow: &str, record: &Value) -> Value {
    let steps = record["steps"].as_array().cloned().unwrap_or_default();
    steps.into_iter().find(|step| step["id"] == "a").unwrap_or_else(|| panic!("{workflow}: no step a in {record:#}"))
}

/// The output of step `a` (a record from [`run`]), after asserting that it succeeded.
pub fn output(a: &Value) -> &Value {
    assert_eq!(a["status"], json!("succeeded"), "step a succeeded: {a:#}");
    &a["output"]
}

/// The error message of step `a` (a record from [`run`]), after asserting that it failed, and
/// whether the failure may be retried.
pub fn error(a: &Value) -> (&str, bool) {
    assert_eq!(a["status"], json!("failed"), "step a failed: {a:#}");
    let message = a["error"]["message"].as_str().unwrap_or_else(|| panic!("an error message: {a:#}"));
    let retryable = a["error"]["retryable"].as_bool().unwrap_or_else(|| panic!("retryable or not: {a:#}"));
    (message, retryable)
}

/// Awaits all of `runs` at once (polled together on this task, as `tokio::join!` does) and
/// answers their outputs in the order given: e.g. five [`run`]s of one workflow in flight
/// together, to see them share one token refresh.
pub async fn together<F: Future>(runs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut runs: Vec<Pin<Box<F>>> = runs.into_iter().map(Box::pin).collect();
    let mut answers: Vec<Option<F::Output>> = runs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (run, answer) in runs.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none()
                && let Poll::Ready(done) = run.as_mut().poll(cx)
            {
                *answer = Some(done);
            }
        }
        if answers.iter().all(Option::is_some) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    answers.into_iter().map(|answer| answer.expect("every run answered")).collect()
}

/// What a fake recorded (`requests`, oldest first) since the first `from`: the requests it
/// received after `from` was counted (`let from = fake.requests().len();`).
pub fn since<T>(mut requests: Vec<T>, from: usize) -> Vec<T> {
    assert!(from <= requests.len(), "{} requests now, fewer than the {from} counted before", requests.len());
    requests.split_off(from)
}
