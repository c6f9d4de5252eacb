//! Workflows started by the app's events and by users' connections, and deployments managed
//! through the API, end to end on both backends: one app event starting workflows of two
//! integrations (and of none) for each user as their choices allow; the API-key and batch
//! forms; Integration Enabled exactly once per switch on; GET-method request triggers; deploy,
//! redeploy and undeploy through the management routes stopping request and event workflows;
//! and the bad input each route must refuse with nothing started.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::on_both_backends;
use sluice_e2e::stack::{Backend, TestStack};

/// What the workflows report: one JSON body per run, `{"wf", "user", ...}`.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<Vec<Value>>>);

impl Hits {
    async fn serve(&self) -> String {
        let hits = self.0.clone();
        let app = Router::new().route(
            "/hit",
            post(move |axum::Json(body): axum::Json<Value>| {
                let hits = hits.clone();
                async move {
                    hits.lock().expect("hits").push(body);
                    axum::Json(json!({ "ok": true }))
                }
            }),
        );
        serve_locally(app).await
    }

    /// The hits of workflow `wf` for `user`.
    fn of(&self, wf: &str, user: &str) -> Vec<Value> {
        let hits = self.0.lock().expect("hits");
        hits.iter().filter(|h| h["wf"] == wf && h["user"] == user).cloned().collect()
    }

    /// Waits until `wf` reported `count` runs for `user` (and a little longer, to catch more).
    async fn wait_for(&self, wf: &str, user: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.of(wf, user).len() < count {
            assert!(Instant::now() < deadline, "{wf} ran {} times for {user}, not {count}", self.of(wf, user).len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.of(wf, user)
    }
}

/// A workflow file reporting to `api` with `extra` fields.
fn reporter(id: &str, head: &str, trigger: &str, api: &str, extra: &str) -> String {
    format!(
        "id: {id}\n{head}trigger: {trigger}\nsteps:\n  - id: report\n    type: request\n    method: POST\n    url: \"{api}/hit\"\n    body: {{ wf: {id}, user: \"{{{{user.id}}}}\"{extra} }}\n"
    )
}

/// The project's files: two events, `slack` and `custom.acme` listening to `Contact Created`
/// (with `acme-audit` off by default), a plain listener, a `Never Sent` event nobody listens
/// to, an `initial-sync` on `slack`'s Integration Enabled and a GET request trigger.
fn project_files(api: &str) -> Vec<(String, String)> {
    let contact = "{ type: app_event, event: Contact Created }";
    let payload = ", email: \"{{trigger.payload.email}}\", event: \"{{trigger.event}}\", type: \"{{trigger.type}}\"";
    vec![
        ("events/contact-created.yaml".into(), "name: Contact Created\nexample: { email: ada@example.com }\n".into()),
        ("events/never.yaml".into(), "name: Never Sent\nexample: {}\n".into()),
        ("integrations/slack/config.yaml".into(), "description: Slack\n".into()),
        (
            "integrations/slack/workflows/slack-contact.yaml".into(),
            reporter("slack-contact", "enabled_by_default: true\n", contact, api, payload),
        ),
        (
            "integrations/slack/workflows/initial-sync.yaml".into(),
            reporter(
                "initial-sync",
                "enabled_by_default: true\n",
                "{ type: integration_enabled }",
                api,
                ", integration: \"{{trigger.payload.integration}}\"",
            ),
        ),
        (
            "integrations/custom.acme/config.yaml".into(),
            "authenticationType: api_key\napiBaseUrl: https://api.acme.example\n\
             authorization: { type: header, name: X-Key, value: \"{{credentials.apiKey}}\" }\n"
                .into(),
        ),
        (
            "integrations/custom.acme/workflows/acme-contact.yaml".into(),
            reporter("acme-contact", "enabled_by_default: true\n", contact, api, payload),
        ),
        (
            "integrations/custom.acme/workflows/acme-audit.yaml".into(),
            reporter("acme-audit", "", contact, api, payload),
        ),
        ("plain-contact.yaml".into(), reporter("plain-contact", "", contact, api, payload)),
        (
            "lookup.yaml".into(),
            "id: lookup\ntrigger: { type: request, method: GET, validate: { query: { required: [email] } } }\n\
             steps: [{ id: reply, type: response, body: { email: \"{{trigger.query.email}}\" } }]\n"
                .into(),
        ),
    ]
}

fn write(files: &[(String, String)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-triggers-{}", uuid::Uuid::new_v4().simple()));
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, text).expect("write");
    }
    dir
}

struct Client<'a> {
    stack: &'a TestStack,
}

impl Client<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/projects/{}/{path}", self.stack.base_url, self.stack.project_id)
    }

    /// A request with `auth` (a user's token or the API key) and a JSON body.
    async fn send(&self, method: Method, path: &str, auth: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.stack.client().request(method, self.url(path)).bearer_auth(auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn event(&self, user: &str, name: &str, payload: Value) -> (StatusCode, Value) {
        let body = json!({ "name": name, "payload": payload });
        self.send(Method::POST, "sdk/events/trigger", &self.stack.token(user), Some(body)).await
    }

    async fn deploy(&self, files: &[(String, String)]) -> (StatusCode, Value) {
        let files: serde_json::Map<String, Value> = files.iter().map(|(p, t)| (p.clone(), json!(t))).collect();
        self.send(Method::POST, "deploy", &self.stack.api_key, Some(json!({ "files": files }))).await
    }
}

/// The workflow ids of a report's `executions` (or `skipped`), sorted.
fn ids(report: &Value, list: &str) -> Vec<String> {
    let mut ids: Vec<String> = report[list]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["workflowId"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn one_event_starts_every_enabled_listener_across_integrations(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    stack.deploy_project(&write(&project_files(&api))).await;
    let client = Client { stack };
    let ada = stack.token("ada");
    let (status, _) =
        client.send(Method::PUT, "sdk/workflows/acme-audit", &ada, Some(json!({ "enabled": true }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = client
        .send(Method::PUT, "sdk/integrations/custom.acme", &stack.token("bob"), Some(json!({ "enabled": false })))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, report) = client.event("ada", "Contact Created", json!({ "email": "ada@example.com" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(ids(&report, "executions"), ["acme-audit", "acme-contact", "plain-contact", "slack-contact"]);
    assert_eq!((report["listeners"].clone(), report["userId"].clone()), (json!(4), json!("ada")), "{report}");
    for wf in ["acme-audit", "acme-contact", "plain-contact", "slack-contact"] {
        let runs = hits.wait_for(wf, "ada", 1).await;
        assert_eq!(runs.len(), 1, "{wf} ran once: {runs:?}");
        assert_eq!(runs[0]["email"], "ada@example.com");
        assert_eq!((&runs[0]["event"], &runs[0]["type"]), (&json!("Contact Created"), &json!("app_event")));
    }
    let started = report["executions"][0]["executionId"].as_str().expect("an id");
    let record = stack.wait_until_ended(started, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "succeeded", "{record}");

    let (status, report) = client.event("bob", "Contact Created", json!({ "email": "bob@example.com" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(ids(&report, "executions"), ["plain-contact", "slack-contact"]);
    assert_eq!(ids(&report, "skipped"), ["acme-audit", "acme-contact"]);
    let reasons: Vec<&Value> = report["skipped"].as_array().expect("list").iter().map(|s| &s["reason"]).collect();
    assert_eq!(reasons, [&json!("integration_disabled"), &json!("integration_disabled")], "{report}");
    hits.wait_for("slack-contact", "bob", 1).await;
    assert!(hits.of("acme-contact", "bob").is_empty(), "a disabled integration's listener never runs");

    // Declared but unheard: accepted, saying so. Undeclared: refused, listing what is declared.
    let (status, report) = client.event("ada", "Never Sent", json!({})).await;
    assert_eq!((status, &report["listeners"], &report["executions"]), (StatusCode::ACCEPTED, &json!(0), &json!([])));
    assert!(report["message"].as_str().is_some_and(|m| m.contains("no deployed workflow listens")), "{report}");
    let (status, report) = client.event("ada", "Contact Deleted", json!({})).await;
    assert_eq!((status, &report["error"]["code"]), (StatusCode::NOT_FOUND, &json!("unknown_event")), "{report}");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Contact Created") && message.contains("Never Sent"), "{message}");
}

async fn the_api_key_routes_send_events_for_named_users_one_or_a_batch(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    stack.deploy_project(&write(&project_files(&api))).await;
    let client = Client { stack };
    let key = stack.api_key.clone();
    let one = json!({ "userId": "carol", "name": "Contact Created", "payload": { "email": "c@example.com" } });
    let (status, report) = client.send(Method::POST, "events/trigger", &key, Some(one)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(ids(&report, "executions"), ["acme-contact", "plain-contact", "slack-contact"], "{report}");
    assert_eq!(hits.wait_for("slack-contact", "carol", 1).await[0]["email"], "c@example.com");

    let batch: Vec<Value> = ["d1", "d2", "d3"]
        .iter()
        .map(|user| json!({ "userId": user, "name": "Contact Created", "payload": { "email": format!("{user}@x.y") } }))
        .collect();
    let (status, report) = client.send(Method::POST, "events/trigger", &key, Some(json!({ "events": batch }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(report["events"].as_array().map(Vec::len), Some(3), "{report}");
    assert_eq!(report["summary"]["started"], 9, "{report}");
    for user in ["d1", "d2", "d3"] {
        assert_eq!(hits.wait_for("plain-contact", user, 1).await.len(), 1);
    }

    // One bad event refuses the whole batch, listing every problem; nothing starts.
    let bad = json!({ "events": [
        { "userId": "e1", "name": "Contact Created", "payload": {} },
        { "userId": "e2", "name": "Contact\u{0007}Created" },
        { "name": "Contact Created", "payload": [1] },
        7,
    ] });
    let (status, report) = client.send(Method::POST, "events/trigger", &key, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{report}");
    let violations = report["error"]["violations"].as_array().map(Vec::len);
    assert_eq!(violations, Some(4), "{report}");
    let unknown = json!({ "events": [
        { "userId": "e1", "name": "Contact Created" }, { "userId": "e1", "name": "Nope" },
    ] });
    let (status, _) = client.send(Method::POST, "events/trigger", &key, Some(unknown)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let too_many: Vec<Value> = (0..101).map(|i| json!({ "userId": format!("u{i}"), "name": "Never Sent" })).collect();
    let (status, _) = client.send(Method::POST, "events/trigger", &key, Some(json!({ "events": too_many }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hits.of("plain-contact", "e1").is_empty(), "a refused batch starts nothing");

    // Each route takes its own credential only.
    let with_key = Some(json!({ "name": "Contact Created", "payload": {} }));
    let (status, _) = client.send(Method::POST, "sdk/events/trigger", &key, with_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the API key is not a user token");
    let with_token = Some(json!({ "userId": "x", "name": "Contact Created" }));
    let (status, _) = client.send(Method::POST, "events/trigger", &stack.token("ada"), with_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a user token is not the API key");
}

async fn event_bodies_are_checked_before_anything_starts(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    stack.deploy_project(&write(&project_files(&api))).await;
    let client = Client { stack };
    let token = stack.token("ada");
    let raw = |body: Vec<u8>| {
        let request = client.stack.client().post(client.url("sdk/events/trigger")).bearer_auth(&token);
        async move {
            let response = request.header("content-type", "application/json").body(body).send().await.expect("send");
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let deep = format!("{{\"name\":\"Contact Created\",\"payload\":{}1{}}}", "[".repeat(70), "]".repeat(70));
    let (status, body) = raw(deep.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("nested")), "{body}");
    let big = format!("{{\"name\":\"Contact Created\",\"payload\":{{\"x\":\"{}\"}}}}", "a".repeat(300 * 1024));
    assert_eq!(raw(big.into_bytes()).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(raw(b"not json".to_vec()).await.0, StatusCode::BAD_REQUEST);
    for body in [
        json!({ "payload": {} }),
        json!({ "name": "", "payload": {} }),
        json!({ "name": "Contact\nCreated" }),
        json!({ "name": "Contact Created", "payload": "text" }),
        json!({ "name": "Contact Created", "userId": "someone-else" }),
    ] {
        let (status, answer) = client.send(Method::POST, "sdk/events/trigger", &token, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hits.of("plain-contact", "ada").is_empty(), "nothing started");
}

async fn integration_enabled_starts_once_per_switch_on(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    stack.deploy_project(&write(&project_files(&api))).await;
    let client = Client { stack };
    let ada = stack.token("ada");
    let switch = |on: bool| client.send(Method::PUT, "sdk/integrations/slack", &ada, Some(json!({ "enabled": on })));

    let (status, answer) = switch(true).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(ids(&answer["integrationEnabled"], "executions"), ["initial-sync"], "{answer}");
    let runs = hits.wait_for("initial-sync", "ada", 1).await;
    assert_eq!(runs[0]["integration"], "slack");
    let (_, answer) = switch(true).await;
    assert!(answer.get("integrationEnabled").is_none(), "already on: nothing starts: {answer}");
    switch(false).await;
    switch(true).await;
    assert_eq!(hits.wait_for("initial-sync", "ada", 2).await.len(), 2, "on again after off: once more");

    // Concurrent enables of a user who never chose: exactly one start.
    let bob = stack.token("bob");
    let calls = (0..12).map(|_| {
        let (client, bob) = (&client, &bob);
        async move { client.send(Method::PUT, "sdk/integrations/slack", bob, Some(json!({ "enabled": true }))).await }
    });
    let answers = futures_join(calls).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    let started = answers.iter().filter(|(_, a)| a.get("integrationEnabled").is_some()).count();
    assert_eq!(started, 1, "{answers:?}");
    assert_eq!(hits.wait_for("initial-sync", "bob", 1).await.len(), 1);

    // Storing credentials enables an integration too, once.
    let acme = Some(json!({ "apiKey": "k-1" }));
    let (status, answer) = client.send(Method::PUT, "sdk/integrations/custom.acme/credentials", &ada, acme).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["integrationEnabled"]["executions"], json!([]), "acme has no integration_enabled workflow");
}

async fn futures_join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().collect();
    let mut out = Vec::with_capacity(handles.len());
    let joined = futures_util_join(handles).await;
    out.extend(joined);
    out
}

/// Polls every future together on this task.
async fn futures_util_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, future) in pending.iter_mut().enumerate() {
            if done[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => done[i] = Some(value),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    done.into_iter().map(|value| value.expect("every future finished")).collect()
}

async fn a_get_trigger_answers_only_its_method_and_checks_its_query(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    stack.deploy_project(&write(&project_files(&api))).await;
    let http = stack.client();
    let url = stack.trigger_url("lookup");
    let token = stack.token("ada");
    let answer = http.get(format!("{url}?email=a%40b.c")).bearer_auth(&token).send().await.expect("get");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.expect("json"), json!({ "email": "a@b.c" }));
    let missing = http.get(&url).bearer_auth(&token).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST, "the query is validated");
    let posted = http.post(&url).bearer_auth(&token).json(&json!({})).send().await.expect("post");
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = posted.json().await.expect("json");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("GET")), "{body}");
    let event_workflow = http.post(stack.trigger_url("slack-contact")).bearer_auth(&token).json(&json!({}));
    assert_eq!(event_workflow.send().await.expect("post").status(), StatusCode::NOT_FOUND, "not a request trigger");
}

async fn deploys_and_undeploys_through_the_api_stop_new_executions(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    let client = Client { stack };
    let key = stack.api_key.clone();
    let mut files = project_files(&api);
    files.push((
        "ping.yaml".into(),
        "id: ping\ntrigger: { type: request }\nsteps: [{ id: reply, type: response, body: { v: 1 } }]\n".into(),
    ));
    let (status, report) = client.deploy(&files).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["summary"], json!({ "new": 7, "changed": 0, "unchanged": 0, "undeployed": 0 }), "{report}");
    let (_, listed) = client.send(Method::GET, "workflows", &key, None).await;
    let ping = listed["workflows"].as_array().expect("list").iter().find(|w| w["id"] == "ping").cloned();
    let ping = ping.expect("listed");
    assert_eq!((&ping["version"], &ping["trigger"], &ping["method"]), (&json!(1), &json!("request"), &json!("POST")));
    assert!(ping["deployedAt"].is_string());
    let slack = listed["workflows"].as_array().expect("list").iter().find(|w| w["id"] == "slack-contact").cloned();
    assert_eq!(
        slack.map(|w| (w["integration"].clone(), w["event"].clone())),
        Some((json!("slack"), json!("Contact Created")))
    );

    // A file with a problem: every problem listed, nothing changes.
    let mut broken = files.clone();
    broken.push(("bad.yaml".into(), "id: bad\ntrigger: { type: request }\nsteps: [{ id: r, type: nope }]\n".into()));
    broken.push((
        "integrations/slack/workflows/typo.yaml".into(),
        reporter("typo", "", "{ type: app_event, event: Nope }", &api, ""),
    ));
    if let Some(entry) = broken.iter_mut().find(|(path, _)| path == "ping.yaml") {
        entry.1 = entry.1.replace("v: 1", "v: 2");
    }
    let (status, report) = client.deploy(&broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{report}");
    let violations: Vec<String> = report["error"]["violations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().unwrap_or("").into())
        .collect();
    assert!(violations.iter().any(|v| v.starts_with("bad.yaml: steps[0].type")), "{violations:?}");
    assert!(
        violations.iter().any(|v| v.starts_with("integrations/slack/workflows/typo.yaml: trigger.event")),
        "{violations:?}"
    );
    assert!(!violations.iter().any(|v| v.contains("sluice-deploy-")), "paths are the bundle's own: {violations:?}");
    let answer = stack.trigger("ping", json!({})).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.expect("json"), json!({ "v": 1 }), "the live version is kept");

    // A change and a removal: changed v1→v2, the removed workflow undeployed.
    let mut next = files.clone();
    next.retain(|(path, _)| path != "plain-contact.yaml");
    if let Some(entry) = next.iter_mut().find(|(path, _)| path == "ping.yaml") {
        entry.1 = entry.1.replace("v: 1", "v: 2");
    }
    let (status, report) = client.deploy(&next).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["summary"], json!({ "new": 0, "changed": 1, "unchanged": 5, "undeployed": 1 }), "{report}");
    let line = |id: &str| report["workflows"].as_array().expect("list").iter().find(|w| w["workflowId"] == id).cloned();
    assert_eq!(
        line("ping").map(|l| (l["change"].clone(), l["from"].clone(), l["to"].clone())),
        Some((json!("changed"), json!(1), json!(2)))
    );
    assert_eq!(line("plain-contact").map(|l| l["change"].clone()), Some(json!("undeployed")));
    assert_eq!(stack.trigger("ping", json!({})).await.json::<Value>().await.expect("json"), json!({ "v": 2 }));
    let (_, report) = client.event("ada", "Contact Created", json!({ "email": "a@x.y" })).await;
    assert!(!ids(&report, "executions").contains(&"plain-contact".to_string()), "{report}");

    // Undeploy one request workflow and a whole integration through the API.
    let (status, report) = client.send(Method::DELETE, "workflows/ping", &key, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["workflows"][0]["version"], 2);
    assert_eq!(stack.trigger("ping", json!({})).await.status(), StatusCode::NOT_FOUND, "undeployed: 404");
    let (status, _) = client.send(Method::DELETE, "workflows/ping", &key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not deployed any more");
    let (status, _) = client.send(Method::DELETE, "workflows/never-was", &key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, report) = client.send(Method::DELETE, "integrations/custom.acme", &key, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["summary"]["undeployed"], 2, "{report}");
    let (status, _) = client.send(Method::DELETE, "integrations/custom.acme", &key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, report) = client.event("ada", "Contact Created", json!({ "email": "a@x.y" })).await;
    assert_eq!(ids(&report, "executions"), ["slack-contact"], "only what is still deployed starts: {report}");
    let (_, listed) = client.send(Method::GET, "workflows", &key, None).await;
    let mut live: Vec<&str> =
        listed["workflows"].as_array().expect("list").iter().filter_map(|w| w["id"].as_str()).collect();
    live.sort();
    assert_eq!(live, ["initial-sync", "lookup", "slack-contact"]);

    // The routes take the API key only, and refuse bundles that climb out.
    let (status, _) = client.send(Method::GET, "workflows", &stack.token("ada"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let escape = vec![("../escape.yaml".to_string(), "id: x\n".to_string())];
    let (status, report) = client.deploy(&escape).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{report}");
    let (status, _) = client.send(Method::POST, "deploy", &key, Some(json!({ "files": {} }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn a_test_url_captures_the_next_request_as_sample_data_without_running(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    stack.deploy_project(&write(&project_files(&api))).await;
    let client = Client { stack };
    let key = stack.api_key.clone();
    let (status, _) = client.send(Method::GET, "workflows/lookup/test-request", &key, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing captured yet");
    let (status, armed) = client.send(Method::POST, "workflows/plain-contact/test-request", &key, None).await;
    assert_eq!(status, StatusCode::OK, "{armed}");
    let url = armed["url"].as_str().expect("a URL").to_string();
    // On the Lambda host the URL says https (Function URLs); the test stack serves plain HTTP.
    let path = url.split_once("/projects/").map(|(_, path)| path).expect("a project path");
    assert!(path.starts_with(&format!("{}/test-requests/plain-contact/", stack.project_id)), "{url}");
    let url = format!("{}/projects/{path}", stack.base_url);
    assert!(armed["expiresAt"].is_string());

    let sent = stack
        .client()
        .put(format!("{url}?source=crm&n=2"))
        .header("authorization", "Bearer app-secret")
        .header("cookie", "session=1")
        .header("x-trace", "t-1")
        .json(&json!({ "email": "sample@example.com", "tags": ["a"] }))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), StatusCode::OK);
    let again = stack.client().post(&url).json(&json!({ "email": "second@example.com" })).send().await.expect("send");
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "a test URL captures one request");
    let forged =
        format!("{}/projects/{}/test-requests/plain-contact/{}", stack.base_url, stack.project_id, "0".repeat(48));
    assert_eq!(stack.client().post(forged).send().await.expect("send").status(), StatusCode::NOT_FOUND);

    let (status, sample) = client.send(Method::GET, "workflows/plain-contact/test-request", &key, None).await;
    assert_eq!(status, StatusCode::OK, "{sample}");
    assert_eq!(sample["method"], "PUT");
    assert_eq!(sample["query"], json!({ "source": "crm", "n": "2" }));
    assert_eq!(sample["body"], json!({ "email": "sample@example.com", "tags": ["a"] }));
    assert_eq!(sample["headers"]["x-trace"], "t-1");
    assert!(sample["headers"].get("authorization").is_none() && sample["headers"].get("cookie").is_none(), "{sample}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hits.0.lock().expect("hits").is_empty(), "capturing runs nothing");
    let (status, _) = client.send(Method::GET, "workflows/plain-contact/test-request", &stack.token("ada"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the API key only");

    // A test run of an app event workflow without data runs on the declared example.
    let workflow = json!({ "id": "probe", "trigger": { "type": "app_event", "event": "Contact Created" }, "steps": [
        { "id": "reply", "type": "response", "body": { "email": "{{trigger.payload.email}}", "event": "{{trigger.event}}" } },
    ] });
    let (status, run) = client.send(Method::POST, "test-runs", &key, Some(json!({ "workflow": workflow }))).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    let output = &run["steps"][0]["output"];
    assert_eq!(
        (&output["body"]["email"], &output["body"]["event"]),
        (&json!("ada@example.com"), &json!("Contact Created")),
        "{run}"
    );
}

async fn a_listener_that_uses_the_connection_waits_for_the_user_to_connect(stack: &TestStack) {
    let hits = Hits::default();
    let api = hits.serve().await;
    let mut files = project_files(&api);
    files.push(("events/deal.yaml".into(), "name: Deal Closed\nexample: {}\n".into()));
    files.push((
        "integrations/custom.acme/workflows/acme-deal.yaml".into(),
        reporter(
            "acme-deal",
            "enabled_by_default: true\n",
            "{ type: app_event, event: Deal Closed }",
            &api,
            ", key: \"{{credentials.apiKey}}\"",
        ),
    ));
    stack.deploy_project(&write(&files)).await;
    let client = Client { stack };
    let (status, report) = client.event("ada", "Deal Closed", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(report["executions"], json!([]), "{report}");
    assert_eq!(report["skipped"][0]["reason"], "not_connected", "{report}");
    assert!(
        report["skipped"][0]["message"].as_str().is_some_and(|m| m.contains("custom.acme/credentials")),
        "{report}"
    );

    let credentials = Some(json!({ "apiKey": "k-ada" }));
    let ada = stack.token("ada");
    let (status, _) = client.send(Method::PUT, "sdk/integrations/custom.acme/credentials", &ada, credentials).await;
    assert_eq!(status, StatusCode::OK);
    let (_, report) = client.event("ada", "Deal Closed", json!({})).await;
    assert_eq!(ids(&report, "executions"), ["acme-deal"], "{report}");
    assert_eq!(hits.wait_for("acme-deal", "ada", 1).await[0]["key"], "k-ada");
}

on_both_backends! {
    a_listener_that_uses_the_connection_waits_for_the_user_to_connect: Duration::from_secs(30);
    a_test_url_captures_the_next_request_as_sample_data_without_running: Duration::from_secs(30);
    one_event_starts_every_enabled_listener_across_integrations: Duration::from_secs(30);
    the_api_key_routes_send_events_for_named_users_one_or_a_batch: Duration::from_secs(30);
    event_bodies_are_checked_before_anything_starts: Duration::from_secs(30);
    integration_enabled_starts_once_per_switch_on: Duration::from_secs(30);
    a_get_trigger_answers_only_its_method_and_checks_its_query: Duration::from_secs(30);
    deploys_and_undeploys_through_the_api_stop_new_executions: Duration::from_secs(30);
}
