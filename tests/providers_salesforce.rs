//! The built-in `salesforce` integration end to end against its provider's fake (Salesforce).
//!
//! Each scenario runs on both backends: the hosted connect (PKCE, scopes, the connection's
//! identity), sessions that end without notice (401 `INVALID_SESSION_ID`, one refresh per
//! session however many steps see it, with and without refresh token rotation), a revoked
//! refresh token, login hosts (production and sandbox are two fakes), the API version, the
//! org's limits, SOQL batches, and every catalog action as the fake receives it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::on_both_backends;
use sluice_e2e::providers::{self, FlowStop, action_step, connection, error, output, retried_step, since, together};
use sluice_e2e::stack::{Backend, TestStack};
use sluice_fakes::salesforce::{FakeFailure, FakeSalesforce, Recorded, SalesforceConfig};

/// The org id of the sandbox fake (the production fake keeps the default).
const SANDBOX_ORG: &str = "00D5g00000SANDBXAA";

/// How many runs [`Org::gate`] holds until they are all there.
const TOGETHER: usize = 5;

/// The workflows of the test project: `(id, steps)` with the action as step `a`, its params from
/// the trigger body. `get-together` first waits at `gate` for [`TOGETHER`] runs.
fn workflows(gate: &str) -> Vec<(&'static str, String)> {
    vec![
        ("get", action_step("get_record", r#"{ object: Lead, id: "{{trigger.body.id}}" }"#)),
        (
            "get-together",
            format!(
                "  - {{ id: gate, type: request, url: \"{gate}/gate\" }}\n{}",
                action_step("get_record", r#"{ object: Lead, id: "{{trigger.body.id}}" }"#)
            ),
        ),
        ("get-retried", retried_step("get_record", r#"{ object: Lead, id: "{{trigger.body.id}}" }"#, 2, "100ms")),
        (
            "get-fields",
            action_step(
                "get_record",
                r#"{ object: "{{trigger.body.object}}", id: "{{trigger.body.id}}", fields: "{{trigger.body.fields}}" }"#,
            ),
        ),
        (
            "update",
            action_step(
                "update_record",
                r#"{ object: "{{trigger.body.object}}", id: "{{trigger.body.id}}", fields: "{{trigger.body.fields}}" }"#,
            ),
        ),
        (
            "upsert",
            action_step(
                "upsert_record",
                r#"{ object: Lead, externalIdField: External_Id__c, externalId: "{{trigger.body.key}}", fields: "{{trigger.body.fields}}" }"#,
            ),
        ),
        ("delete", action_step("delete_record", r#"{ object: "{{trigger.body.object}}", id: "{{trigger.body.id}}" }"#)),
        ("describe", action_step("describe_object", r#"{ object: "{{trigger.body.object}}" }"#)),
        ("search", action_step("sosl_search", r#"{ search: "{{trigger.body.q}}" }"#)),
        ("query", action_step("soql_query", r#"{ query: "{{trigger.body.q}}" }"#)),
        ("query-2", action_step("soql_query", r#"{ query: "{{trigger.body.q}}", maxPages: 2 }"#)),
    ]
}

/// Two login hosts (two fakes, each also its org's instance) and the project deployed on them.
struct Org {
    production: FakeSalesforce,
    sandbox: FakeSalesforce,
    /// A local endpoint answering `GET /gate` once [`TOGETHER`] requests wait there: runs
    /// passing it start their action at the same moment.
    gate: String,
}

/// The fake's connected app: the test stack's client.
fn app(tweak: &dyn Fn(&mut SalesforceConfig)) -> SalesforceConfig {
    let mut config = SalesforceConfig {
        client_id: "client-1".to_string(),
        client_secret: "secret-1".to_string(),
        ..SalesforceConfig::default()
    };
    tweak(&mut config);
    config
}

/// The `config.yaml` of the project: the OAuth client, the production fake's OAuth URLs, both
/// login hosts, and `extra`.
fn config(production: &FakeSalesforce, sandbox: &FakeSalesforce, extra: &str) -> String {
    format!(
        "clientId: \"{{{{env.TEST_CLIENT_ID}}}}\"\nclientSecret: \"{{{{env.TEST_CLIENT_SECRET}}}}\"\n\
         authorizationUrl: {}\naccessTokenUrl: {}\nloginHosts: {{ production: \"{}\", sandbox: \"{}\" }}\n{extra}",
        production.authorize_url(),
        production.token_url(),
        production.base_url,
        sandbox.base_url,
    )
}

/// Starts both fakes (with `tweak` applied to each) and deploys the project.
async fn org(stack: &TestStack, tweak: &dyn Fn(&mut SalesforceConfig)) -> Org {
    let production = FakeSalesforce::start(app(tweak)).await.expect("production fake");
    let sandbox = FakeSalesforce::start(SalesforceConfig { org_id: SANDBOX_ORG.to_string(), ..app(tweak) })
        .await
        .expect("sandbox fake");
    let barrier = Arc::new(tokio::sync::Barrier::new(TOGETHER));
    let app = Router::new().route(
        "/gate",
        get(move || {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                axum::Json(json!({ "open": true }))
            }
        }),
    );
    let gate = serve_locally(app).await;
    deploy(stack, &production, &sandbox, &gate, "").await;
    Org { production, sandbox, gate }
}

/// Deploys the project on `production` and `sandbox`, with `extra` config lines.
async fn deploy(stack: &TestStack, production: &FakeSalesforce, sandbox: &FakeSalesforce, gate: &str, extra: &str) {
    providers::deploy(stack, "salesforce", &config(production, sandbox, extra), &workflows(gate)).await;
}

/// Connects `user` through the hosted flow (see [`providers::connect`]; `query`: e.g.
/// `loginHost=sandbox`). The authorize URL Sluice built.
async fn connected(stack: &TestStack, user: &str, query: &str) -> url::Url {
    let (authorize, _) = providers::connect(stack, user, "salesforce", query)
        .await
        .unwrap_or_else(|stop| panic!("{user} connects: {stop:?}"));
    authorize
}

/// Runs `workflow` for `user` with `body`: what its step `a` did, from the execution record
/// (see [`providers::run`]), which never shows an access token.
async fn run(stack: &TestStack, user: &str, workflow: &str, body: Value) -> Value {
    providers::run_hiding(stack, user, workflow, body, "!AQ").await
}

/// The REST API requests the fake received (not the OAuth ones).
fn api_requests(fake: &FakeSalesforce) -> Vec<Recorded> {
    fake.requests().into_iter().filter(|r| r.path.starts_with("/services/data/")).collect()
}

/// The last REST API request the fake received.
fn last_api_request(fake: &FakeSalesforce) -> Recorded {
    api_requests(fake).pop().expect("a REST API request")
}

/// The access token a request carried as `Authorization: Bearer <token>`.
fn bearer(request: &Recorded) -> String {
    let header = request.authorization.clone().unwrap_or_default();
    let token = header.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer token: {header:?}"));
    token.to_string()
}

/// A request's query, decoded.
fn query(request: &Recorded) -> Vec<(String, String)> {
    url::form_urlencoded::parse(request.query.as_bytes()).into_owned().collect()
}

fn lead(fake: &FakeSalesforce, last_name: &str) -> String {
    fake.insert("Lead", json!({ "LastName": last_name, "Company": "Analytical Engines" }))
}

async fn the_hosted_connect_sends_a_pkce_challenge_and_the_api_scopes_and_shows_org_user_and_instance(
    stack: &TestStack,
) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    let authorize = connected(stack, "ada", "").await;
    assert!(authorize.as_str().starts_with(&format!("{}?", fake.authorize_url())), "{authorize}");
    let param = |name: &str| authorize.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.to_string());
    assert_eq!(param("scope").as_deref(), Some("api refresh_token"), "the catalog's scopes, space-joined");
    assert_eq!(param("client_id").as_deref(), Some("client-1"));
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    let challenge = param("code_challenge").expect("a PKCE challenge");
    assert_eq!(challenge.len(), 43, "base64url of a SHA-256: {challenge}");
    assert_eq!(fake.last_authorize_param("code_challenge"), Some(challenge));
    assert_eq!(fake.token_requests("authorization_code"), 1);
    assert_eq!(org.sandbox.requests().len(), 0, "the default login host is the configured one");

    // The fake is the strict kind: the same authorize request without the challenge is refused.
    let mut without = authorize.clone();
    let kept: Vec<(String, String)> =
        authorize.query_pairs().into_owned().filter(|(k, _)| !k.starts_with("code_challenge")).collect();
    without.query_pairs_mut().clear().extend_pairs(kept);
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let refused = browser.get(without).send().await.expect("authorize");
    let location = refused.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
    assert!(
        location.contains("error=invalid_request") && location.contains("missing+required+code+challenge"),
        "{location}"
    );

    let shown = connection(stack, "ada", "salesforce").await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(true), &json!(false)), "{shown}");
    let defaults = SalesforceConfig::default();
    assert_eq!(
        shown["identity"],
        json!({ "org": defaults.org_id, "user": defaults.user_id, "instance": fake.base_url }),
        "from the token answer's `id` URL and `instance_url`"
    );
    let stored = stack.store.get_credentials(&stack.project_id, "ada", "salesforce").await.expect("get");
    assert_eq!(stored.expect("stored").expires_at, None, "Salesforce does not say when a session ends");

    // Each user's requests go to the instance with their own access token.
    connected(stack, "bob", "").await;
    let id = lead(fake, "Lovelace");
    let mut tokens = Vec::new();
    for user in ["ada", "bob", "ada"] {
        let answer = run(stack, user, "get", json!({ "id": id })).await;
        assert_eq!(output(&answer)["LastName"], "Lovelace");
        tokens.push(bearer(&last_api_request(fake)));
    }
    assert!(tokens[0].starts_with(&format!("{}!", &defaults.org_id[..15])), "{tokens:?}");
    assert_eq!(tokens[0], tokens[2], "ada's token each time");
    assert_ne!(tokens[0], tokens[1], "bob has his own");
    assert_eq!(fake.token_requests("refresh_token"), 0);
}

async fn an_ended_session_answers_invalid_session_id_and_the_step_refreshes_once_and_sends_again(stack: &TestStack) {
    let org = org(stack, &|c| c.session_timeout = Duration::from_secs(2)).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = lead(fake, "Lovelace");
    let answer = run(stack, "ada", "get", json!({ "id": id })).await;
    assert_eq!(output(&answer)["Id"], json!(id));
    let first = bearer(&last_api_request(fake));
    assert_eq!(fake.token_requests("refresh_token"), 0, "no expiry known, so no refresh beforehand");
    let seen = fake.requests().len();

    // The session times out without notice (Salesforce's inactivity timeout).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answer = run(stack, "ada", "get", json!({ "id": id })).await;
    assert_eq!(output(&answer)["LastName"], "Lovelace", "{answer}");
    let after: Vec<Recorded> = since(fake.requests(), seen);
    let shape: Vec<(&str, &str)> = after.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    let path = format!("/services/data/v66.0/sobjects/Lead/{id}");
    assert_eq!(
        shape,
        [("GET", path.as_str()), ("POST", "/services/oauth2/token"), ("GET", path.as_str())],
        "refused, refreshed, sent again"
    );
    assert!(after[1].body.contains("grant_type=refresh_token"), "{}", after[1].body);
    assert_eq!(bearer(&after[0]), first);
    assert_ne!(bearer(&after[2]), first, "the new session's token");
    assert_eq!(fake.token_requests("refresh_token"), 1);
    let shown = connection(stack, "ada", "salesforce").await;
    assert_eq!(shown["connected"], json!(true), "{shown}");
}

/// Five concurrent runs after each of three session ends: one refresh per session.
async fn one_refresh_per_session(stack: &TestStack, rotate: bool) {
    let org = org(stack, &|c| c.rotate_refresh_tokens = rotate).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = lead(fake, "Lovelace");
    let body = json!({ "id": id });
    let answer = run(stack, "ada", "get", body.clone()).await;
    output(&answer);
    let mut token = bearer(&last_api_request(fake));
    for session in 1..=3 {
        fake.expire_all_sessions();
        let seen = api_requests(fake).len();
        for answer in together((0..TOGETHER).map(|_| run(stack, "ada", "get-together", body.clone()))).await {
            assert_eq!(output(&answer)["LastName"], "Lovelace", "session {session}: {answer}");
        }
        assert_eq!(fake.token_requests("refresh_token"), session, "one refresh for session {session}");
        let sent: Vec<String> = since(api_requests(fake), seen).iter().map(bearer).collect();
        let refused = sent.iter().filter(|t| **t == token).count();
        assert!(refused >= 2, "session {session}: several steps saw the session end at once: {sent:?}");
        let fresh: BTreeSet<&String> = sent.iter().filter(|t| **t != token).collect();
        assert_eq!(fresh.len(), 1, "session {session}: one new token for every run: {sent:?}");
        token = fresh.into_iter().next().cloned().unwrap_or_default();
    }
    let shown = connection(stack, "ada", "salesforce").await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(true), &json!(false)), "{shown}");
}

async fn concurrent_steps_after_each_session_end_share_one_refresh(stack: &TestStack) {
    one_refresh_per_session(stack, false).await;
}

async fn concurrent_steps_share_one_refresh_per_session_when_refresh_tokens_rotate(stack: &TestStack) {
    one_refresh_per_session(stack, true).await;
}

async fn a_revoked_refresh_token_fails_the_step_and_the_connection_needs_reauthorization(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = lead(fake, "Lovelace");
    fake.revoke_refresh_tokens();
    fake.expire_all_sessions();
    let answer = run(stack, "ada", "get", json!({ "id": id })).await;
    let (message, retryable) = error(&answer);
    assert!(message.contains("needs re-authorisation"), "{message}");
    assert!(!retryable, "{answer}");
    assert_eq!(fake.token_requests("refresh_token"), 1);
    let shown = connection(stack, "ada", "salesforce").await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(false), &json!(true)), "{shown}");

    let answer = run(stack, "ada", "get", json!({ "id": id })).await;
    assert!(error(&answer).0.contains("re-authorisation"), "{answer}");
    assert_eq!(fake.token_requests("refresh_token"), 1, "a dead connection is not refreshed again");
}

async fn each_user_refreshes_on_the_login_host_they_connected_on(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let (production, sandbox) = (&org.production, &org.sandbox);
    let authorize = connected(stack, "sandy", "loginHost=sandbox").await;
    assert!(authorize.as_str().starts_with(&format!("{}?", sandbox.authorize_url())), "{authorize}");
    assert_eq!((sandbox.token_requests("authorization_code"), production.token_requests("authorization_code")), (1, 0));
    let shown = connection(stack, "sandy", "salesforce").await;
    assert_eq!(shown["identity"]["loginHost"], "sandbox", "{shown}");
    assert_eq!(shown["identity"]["org"], SANDBOX_ORG, "{shown}");
    assert_eq!(shown["identity"]["instance"], json!(sandbox.base_url), "{shown}");

    let authorize = connected(stack, "pat", "loginHost=production").await;
    assert!(authorize.as_str().starts_with(&format!("{}?", production.authorize_url())), "{authorize}");
    let shown = connection(stack, "pat", "salesforce").await;
    assert_eq!(shown["identity"]["loginHost"], "production", "{shown}");
    assert_eq!(shown["identity"]["instance"], json!(production.base_url), "{shown}");

    // Each session ends; each user refreshes where they connected, and reads their own org.
    let in_sandbox = lead(sandbox, "Sandbox");
    let in_production = lead(production, "Production");
    sandbox.expire_all_sessions();
    production.expire_all_sessions();
    let answer = run(stack, "sandy", "get", json!({ "id": in_sandbox })).await;
    assert_eq!(output(&answer)["LastName"], "Sandbox", "{answer}");
    assert_eq!((sandbox.token_requests("refresh_token"), production.token_requests("refresh_token")), (1, 0));
    assert!(api_requests(production).is_empty(), "the sandbox user's requests go to the sandbox instance");
    let answer = run(stack, "pat", "get", json!({ "id": in_production })).await;
    assert_eq!(output(&answer)["LastName"], "Production", "{answer}");
    assert_eq!((sandbox.token_requests("refresh_token"), production.token_requests("refresh_token")), (1, 1));

    let refused = providers::connect(stack, "eve", "salesforce", "loginHost=developer").await;
    let Err(FlowStop::Start(status, body)) = refused else { panic!("the start route refuses: {refused:?}") };
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let text = body.to_string();
    assert!(text.contains("`developer`") && text.contains("production, sandbox"), "{text}");
}

async fn requests_use_the_catalogs_api_version_unless_the_config_sets_one(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = lead(fake, "Lovelace");
    output(&run(stack, "ada", "get", json!({ "id": id })).await);
    assert_eq!(fake.api_versions(), ["66.0"]);
    assert_eq!(last_api_request(fake).path, format!("/services/data/v66.0/sobjects/Lead/{id}"));

    deploy(stack, fake, &org.sandbox, &org.gate, "apiVersion: v62.0\n").await;
    output(&run(stack, "ada", "get", json!({ "id": id })).await);
    assert_eq!(fake.api_versions(), ["66.0", "62.0"]);
    assert_eq!(last_api_request(fake).path, format!("/services/data/v62.0/sobjects/Lead/{id}"));
}

async fn the_daily_allocation_fails_at_once_while_concurrency_limits_and_503_are_retried(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let body = json!({ "id": lead(fake, "Lovelace") });
    let sent_for = |failure: FakeFailure, workflow: &'static str| {
        let body = body.clone();
        async move {
            let seen = api_requests(fake).len();
            fake.fail_next(failure);
            let answer = run(stack, "ada", workflow, body).await;
            (answer, api_requests(fake).len() - seen)
        }
    };

    // The rolling 24-hour allocation: retrying only spends more of it.
    let (answer, sent) = sent_for(FakeFailure::TotalRequestsLimit, "get-retried").await;
    let (message, retryable) = error(&answer);
    assert!(message.contains("24-hour") && message.contains("`TotalRequests Limit exceeded.`"), "{message}");
    assert!(!retryable);
    assert_eq!((sent, &answer["attempts"]), (1, &json!(1)), "not retried despite `retries: 2`");

    // Both concurrency limits pass once long-running requests finish.
    for failure in [FakeFailure::ConcurrentRequestsLimit, FakeFailure::ConcurrentLongTxnLimit] {
        let (answer, sent) = sent_for(failure, "get").await;
        let (message, retryable) = error(&answer);
        assert!(retryable && message.contains("concurrent"), "{failure:?}: {message}");
        assert_eq!(sent, 1);
        let (answer, sent) = sent_for(failure, "get-retried").await;
        assert_eq!(output(&answer)["LastName"], "Lovelace", "{failure:?}");
        assert_eq!((sent, &answer["attempts"]), (2, &json!(2)), "{failure:?}: retried once");
    }
    let (answer, _) = sent_for(FakeFailure::ConcurrentRequestsLimit, "get").await;
    assert!(error(&answer).0.contains("`ConcurrentRequests (Concurrent API Requests) Limit exceeded.`"), "{answer}");

    let (answer, _) = sent_for(FakeFailure::ServerUnavailable, "get").await;
    assert!(error(&answer).1, "503 is retryable: {answer}");
    let (answer, sent) = sent_for(FakeFailure::ServerUnavailable, "get-retried").await;
    assert_eq!((&output(&answer)["LastName"], sent), (&json!("Lovelace"), 2));
}

async fn soql_query_reads_every_batch_unless_max_pages_stops_it(stack: &TestStack) {
    let org = org(stack, &|c| c.query_batch_size = 2).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    for n in 1..=5 {
        fake.insert("Account", json!({ "Name": format!("Account {n}") }));
    }
    let soql = "SELECT Id, Name FROM Account ORDER BY Name";
    let seen = api_requests(fake).len();
    let answer = run(stack, "ada", "query", json!({ "q": soql })).await;
    let out = output(&answer);
    let names: Vec<&str> =
        out["records"].as_array().expect("records").iter().filter_map(|r| r["Name"].as_str()).collect();
    assert_eq!(names, ["Account 1", "Account 2", "Account 3", "Account 4", "Account 5"]);
    assert_eq!((&out["totalSize"], &out["pages"], &out["truncated"]), (&json!(5), &json!(3), &json!(false)));
    let sent = since(api_requests(fake), seen);
    assert_eq!(sent.len(), 3, "one request per batch");
    assert_eq!(sent[0].path, "/services/data/v66.0/query");
    assert_eq!(query(&sent[0]), [("q".to_string(), soql.to_string())]);
    for (request, offset) in sent[1..].iter().zip(["-2", "-4"]) {
        assert!(
            request.path.starts_with("/services/data/v66.0/query/01g") && request.path.ends_with(offset),
            "{request:?}"
        );
    }
    let token = bearer(&sent[0]);
    assert!(sent.iter().all(|r| r.method == "GET" && bearer(r) == token), "{sent:?}");

    let answer = run(stack, "ada", "query-2", json!({ "q": soql })).await;
    let out = output(&answer);
    assert_eq!(out["records"].as_array().map(Vec::len), Some(4));
    assert_eq!((&out["pages"], &out["truncated"]), (&json!(2), &json!(true)));

    let answer = run(stack, "ada", "query", json!({ "q": "SELECT Nope FROM Account" })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("No such column 'Nope' on entity 'Account'"), "{message}");
}

async fn get_record_reads_the_fields_asked_for_and_a_missing_record_is_not_found(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = fake.insert("Contact", json!({ "FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.org" }));
    let body = json!({ "object": "Contact", "id": id, "fields": "Id,LastName,Email" });
    let answer = run(stack, "ada", "get-fields", body).await;
    assert_eq!(
        output(&answer),
        &json!({
            "attributes": { "type": "Contact", "url": format!("/services/data/v66.0/sobjects/Contact/{id}") },
            "Id": id, "LastName": "Lovelace", "Email": "ada@example.org",
        })
    );
    let request = last_api_request(fake);
    assert_eq!(
        (request.method.as_str(), request.path.clone()),
        ("GET", format!("/services/data/v66.0/sobjects/Contact/{id}"))
    );
    assert_eq!(query(&request), [("fields".to_string(), "Id,LastName,Email".to_string())]);
    assert!(request.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer 00D")), "{request:?}");

    let answer = run(stack, "ada", "get", json!({ "id": "00Q000000000000EAA" })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("The requested resource does not exist"), "{message}");
    assert_eq!(answer["error"]["details"]["body"][0]["errorCode"], "NOT_FOUND", "{answer}");
    assert_eq!(answer["error"]["details"]["status"], 404);
}

async fn update_record_patches_the_fields_and_a_required_field_cannot_be_cleared(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = lead(fake, "Lovelace");
    let body = json!({ "object": "Lead", "id": id, "fields": { "Title": "Countess", "Phone": null } });
    let answer = run(stack, "ada", "update", body).await;
    assert_eq!(output(&answer), &json!({ "updated": true }));
    let request = last_api_request(fake);
    assert_eq!(
        (request.method.as_str(), request.path.clone()),
        ("PATCH", format!("/services/data/v66.0/sobjects/Lead/{id}"))
    );
    assert_eq!(serde_json::from_str::<Value>(&request.body).ok(), Some(json!({ "Title": "Countess", "Phone": null })));
    let stored = fake.record("Lead", &id).expect("the lead");
    assert_eq!((&stored["Title"], &stored["LastName"]), (&json!("Countess"), &json!("Lovelace")));

    let body = json!({ "object": "Lead", "id": id, "fields": { "LastName": null } });
    let answer = run(stack, "ada", "update", body).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("Required fields are missing: [LastName]"), "{message}");
    assert_eq!(answer["error"]["details"]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING", "{answer}");
    assert_eq!(fake.record("Lead", &id).expect("the lead")["LastName"], "Lovelace");
}

async fn upsert_record_creates_then_updates_by_external_id(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let fields = json!({ "LastName": "Lovelace", "Company": "Analytical Engines" });
    let answer = run(stack, "ada", "upsert", json!({ "key": "ada/1 x", "fields": fields })).await;
    let out = output(&answer).clone();
    assert_eq!(out["created"], json!(true), "{out}");
    let id = out["id"].as_str().expect("an id").to_string();
    let request = last_api_request(fake);
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.path, "/services/data/v66.0/sobjects/Lead/External_Id__c/ada%2F1%20x", "the value encoded");
    assert_eq!(serde_json::from_str::<Value>(&request.body).ok(), Some(fields));
    assert_eq!(fake.record("Lead", &id).expect("created")["External_Id__c"], "ada/1 x");

    // Sent again (a retry, or the next sync): the same record, updated.
    let answer = run(stack, "ada", "upsert", json!({ "key": "ada/1 x", "fields": { "Title": "Countess" } })).await;
    assert_eq!(output(&answer), &json!({ "id": id, "created": false }));
    assert_eq!(fake.record("Lead", &id).expect("updated")["Title"], "Countess");

    let answer = run(stack, "ada", "upsert", json!({ "key": "new", "fields": { "LastName": "Babbage" } })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("Required fields are missing: [Company]"), "{message}");
    assert_eq!(answer["error"]["details"]["status"], 400);

    for name in ["One", "Two"] {
        fake.insert("Lead", json!({ "LastName": name, "Company": "Twins", "External_Id__c": "dup" }));
    }
    let answer = run(stack, "ada", "upsert", json!({ "key": "dup", "fields": { "Title": "x" } })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("several records have this external ID value"), "{message}");
    assert_eq!(answer["error"]["details"]["status"], 300);
}

async fn delete_record_deletes_and_a_retry_finding_it_deleted_counts_as_done(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let id = lead(fake, "Lovelace");
    let body = json!({ "object": "Lead", "id": id });
    let answer = run(stack, "ada", "delete", body.clone()).await;
    assert_eq!(output(&answer), &json!({ "deleted": true }));
    let request = last_api_request(fake);
    assert_eq!(
        (request.method.as_str(), request.path.clone()),
        ("DELETE", format!("/services/data/v66.0/sobjects/Lead/{id}"))
    );
    assert_eq!(fake.record("Lead", &id), None);

    // The same delete again, as a retry whose first answer was lost: 404 ENTITY_IS_DELETED,
    // then a query confirming the record is gone.
    let seen = api_requests(fake).len();
    let answer = run(stack, "ada", "delete", body).await;
    assert_eq!(output(&answer), &json!({ "deleted": true }));
    let sent = since(api_requests(fake), seen);
    let shape: Vec<(&str, &str)> = sent.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    let path = format!("/services/data/v66.0/sobjects/Lead/{id}");
    assert_eq!(shape, [("DELETE", path.as_str()), ("GET", "/services/data/v66.0/query")]);
    assert_eq!(query(&sent[1]), [("q".to_string(), format!("SELECT Id FROM Lead WHERE Id = '{id}'"))]);

    // A record that never existed is not "already deleted".
    let answer = run(stack, "ada", "delete", json!({ "object": "Lead", "id": "00Q000000000000EAA" })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("The requested resource does not exist"), "{message}");
}

async fn describe_object_lists_each_fields_name_label_and_type(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let answer = run(stack, "ada", "describe", json!({ "object": "Lead" })).await;
    let out = output(&answer);
    assert_eq!((&out["name"], &out["label"]), (&json!("Lead"), &json!("Lead")));
    let fields = out["fields"].as_array().expect("fields");
    let company = fields.iter().find(|f| f["name"] == "Company").expect("Company");
    assert_eq!(
        (&company["label"], &company["type"], &company["nillable"]),
        (&json!("Company"), &json!("string"), &json!(false))
    );
    let status = fields.iter().find(|f| f["name"] == "Status").expect("Status");
    assert_eq!(status["type"], "picklist");
    assert!(
        status["picklistValues"].as_array().is_some_and(|v| v.iter().any(|p| p["value"] == "Open - Not Contacted"))
    );
    assert!(fields.iter().any(|f| f["name"] == "External_Id__c" && f["externalId"] == json!(true)));
    let request = last_api_request(fake);
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/services/data/v66.0/sobjects/Lead/describe")
    );

    let answer = run(stack, "ada", "describe", json!({ "object": "Nope__c" })).await;
    assert_eq!(answer["error"]["details"]["status"], 404, "{answer}");
}

async fn sosl_search_finds_records_across_objects(stack: &TestStack) {
    let org = org(stack, &|_| {}).await;
    let fake = &org.production;
    connected(stack, "ada", "").await;
    let contact = fake.insert("Contact", json!({ "LastName": "Lovelace", "Email": "ada@example.org" }));
    let lead = lead(fake, "Lovelace");
    fake.insert("Account", json!({ "Name": "Babbage" }));
    let sosl = "FIND {Lovelace} IN NAME FIELDS RETURNING Contact(Id, Email), Lead(Id)";
    let answer = run(stack, "ada", "search", json!({ "q": sosl })).await;
    let found = output(&answer)["searchRecords"].as_array().expect("searchRecords").clone();
    let kinds: Vec<(&Value, &Value)> = found.iter().map(|r| (&r["attributes"]["type"], &r["Id"])).collect();
    assert_eq!(kinds, [(&json!("Contact"), &json!(contact)), (&json!("Lead"), &json!(lead))]);
    assert_eq!(found[0]["Email"], "ada@example.org");
    let request = last_api_request(fake);
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/services/data/v66.0/search"));
    assert_eq!(query(&request), [("q".to_string(), sosl.to_string())]);

    let answer = run(stack, "ada", "search", json!({ "q": "FIND {a}" })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("search term must be longer than one character"), "{message}");
}

on_both_backends! {
    the_hosted_connect_sends_a_pkce_challenge_and_the_api_scopes_and_shows_org_user_and_instance: Duration::from_secs(30);
    an_ended_session_answers_invalid_session_id_and_the_step_refreshes_once_and_sends_again: Duration::from_secs(30);
    concurrent_steps_after_each_session_end_share_one_refresh: Duration::from_secs(30);
    concurrent_steps_share_one_refresh_per_session_when_refresh_tokens_rotate: Duration::from_secs(30);
    a_revoked_refresh_token_fails_the_step_and_the_connection_needs_reauthorization: Duration::from_secs(30);
    each_user_refreshes_on_the_login_host_they_connected_on: Duration::from_secs(30);
    requests_use_the_catalogs_api_version_unless_the_config_sets_one: Duration::from_secs(30);
    the_daily_allocation_fails_at_once_while_concurrency_limits_and_503_are_retried: Duration::from_secs(30);
    soql_query_reads_every_batch_unless_max_pages_stops_it: Duration::from_secs(30);
    get_record_reads_the_fields_asked_for_and_a_missing_record_is_not_found: Duration::from_secs(30);
    update_record_patches_the_fields_and_a_required_field_cannot_be_cleared: Duration::from_secs(30);
    upsert_record_creates_then_updates_by_external_id: Duration::from_secs(30);
    delete_record_deletes_and_a_retry_finding_it_deleted_counts_as_done: Duration::from_secs(30);
    describe_object_lists_each_fields_name_label_and_type: Duration::from_secs(30);
    sosl_search_finds_records_across_objects: Duration::from_secs(30);
}
