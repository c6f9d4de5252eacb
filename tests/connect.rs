//! Connected users, enablement and settings end to end, on both backends: a project folder
//! deployed with its integrations; triggers gated by what each user enabled; settings written
//! through the SDK API, validated, read by workflows and never shown or recorded when secret;
//! and every crossing between users and projects refused.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::on_both_backends;
use sluice_e2e::stack::{Backend, TestStack};

const SECRET: &str = "s3cr3t-token-value";

/// A project: `slack` (a text and a password setting), `custom.acme`, and a plain workflow.
fn project(api: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-connect-{}", uuid::Uuid::new_v4().simple()));
    let put = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, text).expect("write");
    };
    put("integrations/slack/config.yaml", "description: Slack\naccentColor: \"#4a154b\"\n");
    put(
        "integrations/slack/inputs.yaml",
        "channel: { id: channel, type: text, title: Channel, default: \"#sales\" }\n\
         token: { id: botToken, type: password, title: Bot token }\n\
         kind: { id: kind, type: select, title: Kind, options: [a, b] }\n",
    );
    put(
        "integrations/slack/workflows/announce.yaml",
        &format!(
            r#"id: announce
enabled_by_default: true
inputs:
  prefix: {{ id: prefix, type: text, title: Prefix, default: "Deal" }}
trigger: {{ type: request }}
steps:
  - id: call
    type: request
    url: "{api}/echo"
    headers: {{ authorization: "Bearer {{{{settings.token}}}}", x-note: "token={{{{settings.token}}}}" }}
  - id: reply
    type: response
    body: {{ channel: "{{{{settings.channel}}}}", prefix: "{{{{settings.prefix}}}}", seen: "{{{{steps.call.output.body.seen}}}}" }}
"#
        ),
    );
    put(
        "integrations/slack/workflows/greet.yaml",
        "id: greet\nenabled_by_default: true\ntrigger: { type: request }\nsteps: [{ id: reply, type: response, body: { hi: true } }]\n",
    );
    put(
        "integrations/slack/workflows/opt-in.yaml",
        "id: opt-in\ntrigger: { type: request }\nsteps: [{ id: reply, type: response, body: { ok: true } }]\n",
    );
    put(
        "integrations/custom.acme/config.yaml",
        "authenticationType: api_key\napiBaseUrl: https://api.acme.example\n\
         authorization: { type: header, name: X-Key, value: \"{{credentials.apiKey}}\" }\n",
    );
    put(
        "integrations/custom.acme/workflows/acme-call.yaml",
        &format!(
            "id: acme-call\nenabled_by_default: true\ntrigger: {{ type: request }}\nsteps:\n\
             \x20 - {{ id: call, type: request, url: \"{api}/echo\", headers: {{ authorization: \"Bearer {{{{credentials.apiKey}}}}\" }} }}\n\
             \x20 - {{ id: reply, type: response, body: {{ seen: \"{{{{steps.call.output.body.seen}}}}\" }} }}\n"
        ),
    );
    put(
        "plain.yaml",
        "id: plain\ntrigger: { type: request }\nsteps: [{ id: reply, type: response, body: { ok: true } }]\n",
    );
    dir
}

/// An API that answers whether it saw the secret in `Authorization`, and remembers the headers.
async fn echo_api() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/echo",
        get(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let has = auth == format!("Bearer {SECRET}");
                record.lock().expect("seen").push(auth);
                axum::Json(json!({ "seen": has }))
            }
        }),
    );
    (serve_locally(app).await, seen)
}

struct Sdk<'a> {
    stack: &'a TestStack,
    token: String,
}

impl Sdk<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/projects/{}/sdk/{path}", self.stack.base_url, self.stack.project_id)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.stack.client().request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn trigger(&self, workflow: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, &format!("triggers/{workflow}"), Some(json!({}))).await
    }

    async fn enable(&self, path: &str, enabled: bool) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(json!({ "enabled": enabled }))).await
    }
}

async fn enablement_gates_triggers_per_user(stack: &TestStack) {
    let (api, _) = echo_api().await;
    let dir = project(&api);
    let deployed = stack.deploy_project(&dir).await;
    assert_eq!(deployed.len(), 5);
    let ada = Sdk { stack, token: stack.token("ada") };
    let bob = Sdk { stack, token: stack.token("bob") };

    assert_eq!(ada.trigger("plain").await.0, StatusCode::OK, "outside any integration: always enabled");
    assert_eq!(ada.trigger("greet").await.0, StatusCode::OK, "enabled by default");
    let (status, body) = ada.trigger("opt-in").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "workflow_not_enabled", "{body}");

    assert_eq!(ada.enable("workflows/opt-in", true).await.0, StatusCode::OK);
    assert_eq!(ada.trigger("opt-in").await.0, StatusCode::OK, "enabled by the user");
    assert_eq!(bob.trigger("opt-in").await.0, StatusCode::FORBIDDEN, "one user's choice is theirs alone");

    assert_eq!(ada.enable("integrations/slack", false).await.0, StatusCode::OK);
    for workflow in ["greet", "opt-in"] {
        assert_eq!(ada.trigger(workflow).await.0, StatusCode::FORBIDDEN, "{workflow}: its integration is off");
    }
    assert_eq!(ada.trigger("plain").await.0, StatusCode::OK);
    let (status, body) = ada.enable("workflows/greet", true).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("integration_disabled")), "{body}");
    assert_eq!(bob.trigger("greet").await.0, StatusCode::OK, "bob's integration is still on");
    assert_eq!(ada.enable("integrations/slack", true).await.0, StatusCode::OK);
    assert_eq!(ada.trigger("greet").await.0, StatusCode::OK);
    assert_eq!(ada.trigger("opt-in").await.0, StatusCode::OK, "the workflow's own choice comes back");

    for (path, status) in [
        ("integrations/trello", StatusCode::NOT_FOUND),
        ("workflows/nope", StatusCode::NOT_FOUND),
        ("workflows/plain", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(ada.enable(path, true).await.0, status, "{path}");
    }
    let (status, _) = ada.send(reqwest::Method::PUT, "workflows/opt-in", Some(json!({ "enabled": "yes" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, connect) = ada.send(reqwest::Method::GET, "connect", None).await;
    assert_eq!(status, StatusCode::OK, "{connect}");
    let names: Vec<&str> =
        connect["integrations"].as_array().expect("list").iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["custom.acme", "slack"]);
    let slack = &connect["integrations"][1];
    assert_eq!((&slack["enabled"], &slack["config"]["accentColor"]), (&json!(true), &json!("#4a154b")), "{slack}");
    let flags: Vec<(&str, bool)> = slack["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .map(|w| (w["id"].as_str().unwrap_or_default(), w["enabled"].as_bool().unwrap_or_default()))
        .collect();
    assert_eq!(flags, [("announce", true), ("greet", true), ("opt-in", true)]);
    let acme = &connect["integrations"][0];
    assert_eq!(acme["config"]["authenticationType"], "api_key");
    assert!(acme["config"].get("apiBaseUrl").is_none() && acme["config"].get("authorization").is_none(), "{acme}");
    let _ = std::fs::remove_dir_all(dir);
}

async fn settings_are_validated_read_by_workflows_and_secrets_never_shown(stack: &TestStack) {
    let (api, seen) = echo_api().await;
    let dir = project(&api);
    stack.deploy_project(&dir).await;
    let ada = Sdk { stack, token: stack.token("ada") };
    let bob = Sdk { stack, token: stack.token("bob") };

    let (status, body) = ada
        .send(
            reqwest::Method::PUT,
            "integrations/slack/settings",
            Some(json!({ "channel": 3, "kind": "c", "nope": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["violations"].as_array().map(Vec::len), Some(3), "every problem: {body}");
    let (status, body) = ada
        .send(
            reqwest::Method::PUT,
            "integrations/slack/settings",
            Some(json!({ "channel": "#deals", "token": SECRET })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["values"], json!({ "channel": "#deals", "token": "[redacted]" }), "{body}");
    assert!(!body.to_string().contains(SECRET));
    // Stored sealed: neither the secret nor its base64 is in what the store holds.
    let scope = sluice_shared::ports::SettingsScope::Integration("slack".into());
    let stored = stack.store.get_settings(&stack.project_id, "ada", &scope).await.expect("stored");
    let text = serde_json::to_string(&stored).expect("json");
    use base64::Engine as _;
    for encoded in [SECRET.to_string(), base64::engine::general_purpose::STANDARD.encode(format!("\"{SECRET}\""))] {
        assert!(!text.contains(&encoded), "the store holds `{encoded}`: {text}");
    }
    assert!(stored["botToken"].get("$sealed").is_some(), "{text}");
    assert_eq!(stored["channel"], "#deals", "other settings are stored as they are");
    let (status, body) =
        ada.send(reqwest::Method::PUT, "workflows/announce/settings", Some(json!({ "prefix": "Won" }))).await;
    assert_eq!((status, &body["values"]["prefix"]), (StatusCode::OK, &json!("Won")), "{body}");

    let (status, answer) = ada.trigger("announce").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({ "channel": "#deals", "prefix": "Won", "seen": true }), "ada's settings");
    assert_eq!(seen.lock().expect("seen").last().map(String::as_str), Some(format!("Bearer {SECRET}").as_str()));
    // Bob set nothing: the defaults, and a workflow that needs his unset token fails clearly.
    bob.send(reqwest::Method::PUT, "integrations/slack/settings", Some(json!({ "token": "bobs" }))).await;
    let (status, answer) = bob.trigger("announce").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({ "channel": "#sales", "prefix": "Deal", "seen": false }), "bob's are the defaults");
    let carl = Sdk { stack, token: stack.token("carl") };
    let (status, answer) = carl.trigger("announce").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert!(answer.to_string().contains("settings"), "the error names the setting: {answer}");

    // The execution record holds the request's input with the secret redacted.
    let response = stack
        .client()
        .post(stack.trigger_url("announce"))
        .bearer_auth(stack.token("ada"))
        .json(&json!({}))
        .send()
        .await
        .expect("trigger");
    let id = response.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    let record = stack.wait_until_ended(&id, Duration::from_secs(30)).await;
    let text = record.to_string();
    assert!(!text.contains(SECRET), "the secret is in the record: {text}");
    assert!(text.contains("token=[redacted]"), "{text}");
    let (_, connect) = ada.send(reqwest::Method::GET, "connect", None).await;
    assert!(!connect.to_string().contains(SECRET), "{connect}");
    assert_eq!(connect["integrations"][1]["settings"]["values"]["token"], "[redacted]");
    let (_, shown) = ada.send(reqwest::Method::GET, "integrations/slack/settings", None).await;
    assert!(!shown.to_string().contains(SECRET), "{shown}");

    // Clearing a value brings the default back.
    let (status, body) =
        ada.send(reqwest::Method::PUT, "integrations/slack/settings", Some(json!({ "channel": null }))).await;
    assert_eq!((status, &body["values"]["channel"]), (StatusCode::OK, &json!("#sales")), "{body}");
    let (status, body) = ada.send(reqwest::Method::PUT, "integrations/slack/settings", Some(json!([1]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = ada.send(reqwest::Method::GET, "integrations/trello/settings", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = std::fs::remove_dir_all(dir);
}

async fn users_are_recorded_and_described(stack: &TestStack) {
    let ada = Sdk { stack, token: stack.token("ada@example.com") };
    let (status, me) = ada.send(reqwest::Method::GET, "me", None).await;
    assert_eq!((status, &me["userId"]), (StatusCode::OK, &json!("ada@example.com")), "{me}");
    let meta = json!({ "name": "Ada", "email": "ada@example.com", "timezone": "Europe/Paris" });
    let (status, me) = ada.send(reqwest::Method::PATCH, "me", Some(meta.clone())).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!((&me["name"], &me["timezone"]), (&json!("Ada"), &json!("Europe/Paris")));
    let (status, body) = ada
        .send(reqwest::Method::PATCH, "me", Some(json!({ "timezone": "Mars/Olympus", "email": "nope", "age": 3 })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown keys are refused: {body}");
    let (status, body) =
        ada.send(reqwest::Method::PATCH, "me", Some(json!({ "timezone": "Mars/Olympus", "email": "nope" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["violations"].as_array().map(Vec::len), Some(2), "{body}");
    let (_, me) = ada.send(reqwest::Method::GET, "me", None).await;
    assert_eq!(me["timezone"], "Europe/Paris", "a refused update changes nothing");
    let user = stack.store.get_user(&stack.project_id, "ada@example.com").await.expect("get");
    assert_eq!(user.map(|u| u.meta.name), Some(Some("Ada".to_string())));
}

async fn no_token_crosses_users_projects_or_route_kinds(stack: &TestStack) {
    let (api, _) = echo_api().await;
    let dir = project(&api);
    stack.deploy_project(&dir).await;
    let base = &stack.base_url;
    let project = &stack.project_id;
    let http = stack.client();
    let user = stack.token("ada");
    // A token signed by another key (another project's) and the project API key on SDK routes.
    let other_key = sluice_shared::auth::generate_signing_key().expect("key");
    let foreign =
        sluice_shared::auth::issue_user_token(&other_key.private_pem, "ada", Duration::from_secs(60)).expect("token");
    for path in ["sdk/me", "sdk/connect", "sdk/integrations/slack/settings", "sdk/workflows/announce/settings"] {
        for (who, token) in [("foreign", foreign.as_str()), ("api key", stack.api_key.as_str()), ("none", "")] {
            let response =
                http.get(format!("{base}/projects/{project}/{path}")).bearer_auth(token).send().await.expect("get");
            let status = response.status();
            let body = response.text().await.expect("body");
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{who} on {path}: {body}");
            assert!(!body.contains("#sales") && !body.contains("slack"), "{who} on {path} leaks: {body}");
        }
        let missing =
            http.get(format!("{base}/projects/no-such-project/{path}")).bearer_auth(&user).send().await.expect("get");
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "a missing project answers as a foreign one");
    }
    // A user token on a management route.
    let response =
        http.get(format!("{base}/projects/{project}/executions/x")).bearer_auth(&user).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // What one user writes, another never reads.
    let ada = Sdk { stack, token: user };
    let bob = Sdk { stack, token: stack.token("bob") };
    ada.send(reqwest::Method::PUT, "integrations/slack/settings", Some(json!({ "token": SECRET, "channel": "#ada" })))
        .await;
    let (_, bob_settings) = bob.send(reqwest::Method::GET, "integrations/slack/settings", None).await;
    assert_eq!(bob_settings["values"], json!({ "channel": "#sales" }), "{bob_settings}");
    let _ = std::fs::remove_dir_all(dir);
}

async fn credentials_are_sealed_used_by_their_integration_and_never_shown(stack: &TestStack) {
    let (api, seen) = echo_api().await;
    let dir = project(&api);
    stack.deploy_project(&dir).await;
    let ada = Sdk { stack, token: stack.token("ada") };
    let bob = Sdk { stack, token: stack.token("bob") };

    let (status, answer) = ada.trigger("acme-call").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "no credentials yet: {answer}");
    assert!(answer.to_string().contains("credentials"), "{answer}");

    let path = "integrations/custom.acme/credentials";
    let (status, body) = ada.send(reqwest::Method::PUT, path, Some(json!({ "apiKey": "", "other": 3 }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["violations"].as_array().map(Vec::len), Some(2), "{body}");
    let (status, body) = ada.send(reqwest::Method::PUT, path, Some(json!({ "apiKey": SECRET }))).await;
    assert_eq!((status, &body["connected"]), (StatusCode::OK, &json!(true)), "{body}");
    assert!(!body.to_string().contains(SECRET));
    let (status, body) = ada.send(reqwest::Method::PUT, "integrations/trello/credentials", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Stored sealed.
    let stored =
        stack.store.get_credentials(&stack.project_id, "ada", "custom.acme").await.expect("get").expect("stored");
    let text = serde_json::to_string(&stored).expect("json");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
    assert!(!text.contains(SECRET) && !text.contains(&encoded), "{text}");

    let response = stack
        .client()
        .post(stack.trigger_url("acme-call"))
        .bearer_auth(stack.token("ada"))
        .json(&json!({}))
        .send()
        .await
        .expect("trigger");
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    assert_eq!(response.json::<Value>().await.expect("json"), json!({ "seen": true }), "the API got the key");
    assert_eq!(seen.lock().expect("seen").last().map(String::as_str), Some(format!("Bearer {SECRET}").as_str()));
    let record = stack.wait_until_ended(&id, Duration::from_secs(30)).await;
    assert!(!record.to_string().contains(SECRET), "the key is in the record: {record}");

    let (_, connect) = ada.send(reqwest::Method::GET, "connect", None).await;
    let acme = &connect["integrations"][0];
    assert_eq!(
        (&acme["name"], &acme["connected"], &acme["enabled"]),
        (&json!("custom.acme"), &json!(true), &json!(true)),
        "{acme}"
    );
    assert!(!connect.to_string().contains(SECRET));
    let (status, answer) = bob.trigger("acme-call").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "bob has no credentials of his own: {answer}");
    let (_, bob_connect) = bob.send(reqwest::Method::GET, "connect", None).await;
    assert_eq!(bob_connect["integrations"][0]["connected"], false);

    let (status, body) = ada.send(reqwest::Method::DELETE, path, None).await;
    assert_eq!((status, &body["connected"], &body["removed"]), (StatusCode::OK, &json!(false), &json!(true)), "{body}");
    let (_, connect) = ada.send(reqwest::Method::GET, "connect", None).await;
    assert_eq!(connect["integrations"][0]["connected"], false);
    let _ = std::fs::remove_dir_all(dir);
}

/// A fake OAuth 2.0 provider: `/authorize` answers with a redirect to the callback carrying a
/// code (after checking the client and the PKCE challenge method); `/token` exchanges the code
/// (checking the client secret, the redirect URI and the PKCE verifier) for tokens.
async fn fake_provider() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::extract::Query;
    use axum::response::IntoResponse;
    type Codes = Arc<Mutex<std::collections::HashMap<String, (String, String)>>>;
    let codes: Codes = Arc::default();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (codes_a, codes_t, log_t) = (codes.clone(), codes.clone(), log.clone());
    let app = Router::new()
        .route(
            "/authorize",
            get(move |Query(q): Query<std::collections::HashMap<String, String>>| {
                let codes = codes_a.clone();
                async move {
                    let ok = q.get("client_id").map(String::as_str) == Some("client-1")
                        && q.get("response_type").map(String::as_str) == Some("code")
                        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
                        && q.get("scope").map(String::as_str) == Some("contacts.read contacts.write");
                    if !ok {
                        return (StatusCode::BAD_REQUEST, format!("bad authorize request {q:?}")).into_response();
                    }
                    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
                    codes.lock().expect("codes").insert(code.clone(), (q["code_challenge"].clone(), q["redirect_uri"].clone()));
                    let location = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
                    (StatusCode::FOUND, [("location", location)], "").into_response()
                }
            }),
        )
        .route(
            "/token",
            axum::routing::post(move |body: String| {
                let (codes, log) = (codes_t.clone(), log_t.clone());
                async move {
                    let f: std::collections::HashMap<String, String> =
                        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    log.lock().expect("log").push(f.get("grant_type").cloned().unwrap_or_default());
                    if f.get("client_id").map(String::as_str) != Some("client-1")
                        || f.get("client_secret").map(String::as_str) != Some("secret-1")
                    {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" }))).into_response();
                    }
                    if f.get("grant_type").map(String::as_str) == Some("client_credentials") {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        return axum::Json(json!({ "access_token": "cc-1", "expires_in": 3600 })).into_response();
                    }
                    if f.get("grant_type").map(String::as_str) == Some("refresh_token") {
                        // Slow, so that steps needing a refresh at the same moment overlap.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        return match f.get("refresh_token").map(String::as_str) {
                            Some("rt-1") => axum::Json(json!({ "access_token": "at-2", "expires_in": 3600 })).into_response(),
                            _ => (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant", "error_description": "revoked" }))).into_response(),
                        };
                    }
                    let Some((challenge, redirect)) = f.get("code").and_then(|c| codes.lock().expect("codes").remove(c)) else {
                        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant" }))).into_response();
                    };
                    use base64::Engine as _;
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
                    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
                    if computed != challenge || f.get("redirect_uri") != Some(&redirect) {
                        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant", "error_description": "PKCE or redirect_uri mismatch" }))).into_response();
                    }
                    axum::Json(json!({
                        "access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600,
                        "token_type": "bearer", "instance_url": "https://instance.example"
                    }))
                    .into_response()
                }
            }),
        );
    (serve_locally(app).await, log)
}

/// The test project plus `custom.oauthy`, an OAuth integration at the fake `provider`, with
/// `oauth-call` (one request with the user's access token) and `oauth-fan` (five at once).
fn oauthy_project(api: &str, provider: &str) -> PathBuf {
    let dir = project(api);
    let put = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, text).expect("write");
    };
    put(
        "integrations/custom.oauthy/config.yaml",
        &format!(
            "authenticationType: oauth\nauthorizationUrl: {provider}/authorize\naccessTokenUrl: {provider}/token\n\
             clientId: \"{{{{env.TEST_CLIENT_ID}}}}\"\nclientSecret: \"{{{{env.TEST_CLIENT_SECRET}}}}\"\nscopes: [contacts.read, contacts.write]\n\
             usePKCEInCodeExchange: true\napiBaseUrl: https://api.oauthy.example\nreturnUrl: https://app.example/connected\n\
             authorization: {{ type: bearer, token: \"{{{{credentials.accessToken}}}}\" }}\n"
        ),
    );
    put(
        "integrations/custom.oauthy/workflows/oauth-call.yaml",
        &format!(
            "id: oauth-call\nenabled_by_default: true\ntrigger: {{ type: request }}\nsteps:\n\
             \x20 - {{ id: call, type: request, url: \"{api}/echo\", headers: {{ authorization: \"Bearer {{{{credentials.accessToken}}}}\" }} }}\n\
             \x20 - {{ id: reply, type: response, body: {{ instance: \"{{{{credentials.instanceUrl}}}}\" }} }}\n"
        ),
    );
    put(
        "integrations/custom.oauthy/workflows/oauth-fan.yaml",
        &format!(
            "id: oauth-fan\nenabled_by_default: true\ntrigger: {{ type: request }}\nsteps:\n\
             \x20 - id: each\n    type: fan_out\n    over: \"{{{{trigger.body.items}}}}\"\n    steps:\n\
             \x20     - {{ id: call, type: request, url: \"{api}/echo\", headers: {{ authorization: \"Bearer {{{{credentials.accessToken}}}}\" }} }}\n"
        ),
    );
    dir
}

async fn the_oauth_flow_connects_a_user_and_their_tokens_reach_the_api(stack: &TestStack) {
    let (api, seen) = echo_api().await;
    let (provider, token_calls) = fake_provider().await;
    let dir = oauthy_project(&api, &provider);
    // Workflows started by the connection itself, reporting through the echo API's log.
    for (id, trigger) in [("on-connected", "oauth_connected"), ("first-sync", "integration_enabled")] {
        let call = format!(
            "{{ id: call, type: request, url: \"{api}/echo\", headers: {{ authorization: \"Bearer {id} {{{{trigger.type}}}} \
             {{{{trigger.payload.integration}}}} {{{{trigger.payload.userId}}}} {{{{trigger.payload}}}}\" }} }}"
        );
        let text = format!("id: {id}\nenabled_by_default: true\ntrigger: {{ type: {trigger} }}\nsteps:\n  - {call}\n");
        std::fs::write(dir.join(format!("integrations/custom.oauthy/workflows/{id}.yaml")), text).expect("write");
    }
    stack.deploy_project(&dir).await;
    let ada = Sdk { stack, token: stack.token("ada") };
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    let (status, body) = ada.send(reqwest::Method::GET, "integrations/custom.acme/oauth/start", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an API-key integration has no OAuth flow: {body}");
    let (status, body) = ada.send(reqwest::Method::GET, "integrations/custom.oauthy/oauth/start", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let authorize = body["authorizationUrl"].as_str().expect("a URL").to_string();
    assert!(authorize.starts_with(&format!("{provider}/authorize?")), "{authorize}");

    // The browser at the provider: it sends the user back to the callback with a code.
    let at_provider = no_redirects.get(&authorize).send().await.expect("authorize");
    assert_eq!(at_provider.status(), StatusCode::FOUND, "{}", at_provider.text().await.unwrap_or_default());
    let back = at_provider.headers()["location"].to_str().expect("location").to_string();
    let back = url::Url::parse(&back).expect("callback URL");
    assert_eq!(back.path(), "/oauth/callback");
    let query = back.query().expect("query").to_string();
    let state = back.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.to_string()).expect("state");

    // A forged or altered state completes nothing.
    let forged =
        no_redirects.get(format!("{}/oauth/callback?code=x&state=AAAA", stack.base_url)).send().await.expect("forged");
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    let denied = no_redirects
        .get(format!("{}/oauth/callback?error=access_denied&state={state}", stack.base_url))
        .send()
        .await
        .expect("denied");
    assert_eq!(denied.status(), StatusCode::FOUND);
    let location = denied.headers()["location"].to_str().expect("location").to_string();
    assert!(location.starts_with("https://app.example/connected?integration=custom.oauthy&error="), "{location}");

    // The app's returnUrl tells a refusal at the provider (its own code and description) from
    // a malformed callback.
    let returned = |query: &str| {
        let url = format!("{}/oauth/callback?{query}&state={state}", stack.base_url);
        let (no_redirects, query) = (no_redirects.clone(), query.to_string());
        async move {
            let answer = no_redirects.get(url).send().await.expect("callback");
            assert_eq!(answer.status(), StatusCode::FOUND, "{query}");
            let location = answer.headers()["location"].to_str().expect("location").to_string();
            let location = url::Url::parse(&location).expect("a URL");
            location.query_pairs().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
        }
    };
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let integration = ("integration", "custom.oauthy");
    assert_eq!(
        returned("error=access_denied&error_description=The+user+said+no").await,
        pairs(&[integration, ("error", "access_denied"), ("error_description", "The user said no")])
    );
    assert_eq!(returned("error=invalid_scope").await, pairs(&[integration, ("error", "invalid_scope")]));
    let long = "d".repeat(500);
    assert_eq!(
        returned(&format!("error=%3Cscript%3E&error_description={long}")).await,
        pairs(&[integration, ("error", "provider_error"), ("error_description", &long[..200])])
    );
    assert_eq!(returned("nothing=here").await, pairs(&[integration, ("error", "bad_request")]));

    let done = no_redirects.get(format!("{}/oauth/callback?{query}", stack.base_url)).send().await.expect("callback");
    assert_eq!(done.status(), StatusCode::FOUND, "{}", done.text().await.unwrap_or_default());
    let location = done.headers()["location"].to_str().expect("location").to_string();
    assert_eq!(location, "https://app.example/connected?integration=custom.oauthy&connected=true");
    assert_eq!(token_calls.lock().expect("calls").as_slice(), ["authorization_code"], "one code exchange");
    let again = no_redirects.get(format!("{}/oauth/callback?{query}", stack.base_url)).send().await.expect("replayed");
    let location = again.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
    assert!(location.contains("error="), "a code works once: {location}");

    let (_, connect) = ada.send(reqwest::Method::GET, "connect", None).await;
    let oauthy =
        connect["integrations"].as_array().expect("list").iter().find(|i| i["name"] == "custom.oauthy").cloned();
    let oauthy = oauthy.expect("listed");
    assert_eq!((&oauthy["connected"], &oauthy["enabled"]), (&json!(true), &json!(true)), "{oauthy}");
    assert!(!connect.to_string().contains("at-1") && !connect.to_string().contains("rt-1"));

    // The completed flow started OAuth connected and (the integration was off) Integration
    // Enabled once each, with the connection's details and never a token.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let connection_calls = || -> Vec<String> {
        let calls = seen.lock().expect("seen").clone();
        calls.into_iter().filter(|c| c.contains("on-connected") || c.contains("first-sync")).collect()
    };
    while connection_calls().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection's workflows did not run: {:?}",
            connection_calls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = connection_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("Bearer on-connected oauth_connected custom.oauthy ada ")), "{calls:?}");
    assert!(
        calls.iter().any(|c| c.starts_with("Bearer first-sync integration_enabled custom.oauthy ada ")),
        "{calls:?}"
    );
    assert!(calls.iter().all(|c| !c.contains("at-1") && !c.contains("rt-1")), "no token in a payload: {calls:?}");
    let (status, answer) = ada.trigger("oauth-call").await;
    assert_eq!((status, &answer), (StatusCode::OK, &json!({ "instance": "https://instance.example" })), "{answer}");
    assert_eq!(seen.lock().expect("seen").last().map(String::as_str), Some("Bearer at-1"));
    let stored =
        stack.store.get_credentials(&stack.project_id, "ada", "custom.oauthy").await.expect("get").expect("stored");
    assert!(stored.expires_at.is_some(), "the expiry is kept");
    let text = serde_json::to_string(&stored).expect("json");
    assert!(!text.contains("at-1") && !text.contains("rt-1"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

async fn expired_tokens_are_refreshed_once_and_a_refused_refresh_needs_reauthorization(stack: &TestStack) {
    let (api, seen) = echo_api().await;
    let (provider, token_calls) = fake_provider().await;
    let dir = oauthy_project(&api, &provider);
    stack.deploy_project(&dir).await;
    let ada = Sdk { stack, token: stack.token("ada") };
    let path = "integrations/custom.oauthy/credentials";
    let expired = json!({ "accessToken": "at-old", "refreshToken": "rt-1", "expiresIn": 0 });
    assert_eq!(ada.send(reqwest::Method::PUT, path, Some(expired)).await.0, StatusCode::OK);

    // Two executions of five concurrent branches each need the token at the same moment.
    let fan = || async {
        let response = stack
            .client()
            .post(stack.trigger_url("oauth-fan"))
            .bearer_auth(stack.token("ada"))
            .json(&json!({ "items": [1, 2, 3, 4, 5] }))
            .send()
            .await
            .expect("trigger");
        let id = json_id(response).await;
        stack.wait_until_ended(&id, Duration::from_secs(30)).await
    };
    let (first, second) = tokio::join!(fan(), fan());
    for record in [&first, &second] {
        assert_eq!(record["status"], "succeeded", "{record:#}");
        assert!(!record.to_string().contains("at-2"), "the new token is not recorded");
    }
    let calls = seen.lock().expect("seen").clone();
    assert_eq!(calls.len(), 10, "{calls:?}");
    assert!(calls.iter().all(|auth| auth == "Bearer at-2"), "every call used the refreshed token: {calls:?}");
    assert_eq!(token_calls.lock().expect("log").as_slice(), ["refresh_token"], "one refresh for all of them");
    let stored =
        stack.store.get_credentials(&stack.project_id, "ada", "custom.oauthy").await.expect("get").expect("kept");
    assert!(stored.expires_at.is_some_and(|at| at > sluice_shared::record::now()), "the new expiry is kept");

    // A refresh token the provider refuses: the step fails saying so, the portal asks to reconnect.
    let bob = Sdk { stack, token: stack.token("bob") };
    let revoked = json!({ "accessToken": "x", "refreshToken": "rt-revoked", "expiresIn": 0 });
    assert_eq!(bob.send(reqwest::Method::PUT, path, Some(revoked)).await.0, StatusCode::OK);
    let (status, answer) = bob.trigger("oauth-call").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert!(answer.to_string().contains("re-authorisation"), "{answer}");
    let (_, connect) = bob.send(reqwest::Method::GET, "connect", None).await;
    let oauthy =
        connect["integrations"].as_array().expect("list").iter().find(|i| i["name"] == "custom.oauthy").cloned();
    let oauthy = oauthy.expect("listed");
    assert_eq!((&oauthy["connected"], &oauthy["needsReauthorization"]), (&json!(false), &json!(true)), "{oauthy}");
    let refreshes = token_calls.lock().expect("log").len();
    let (status, _) = bob.trigger("oauth-call").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(token_calls.lock().expect("log").len(), refreshes, "a revoked connection is not refreshed again");
    let _ = std::fs::remove_dir_all(dir);
}

/// The `executionId` of a 202.
async fn json_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    body["executionId"].as_str().expect("an executionId").to_string()
}

async fn a_client_credentials_token_is_the_apps_fetched_once_and_kept(stack: &TestStack) {
    let (api, seen) = echo_api().await;
    let (provider, token_calls) = fake_provider().await;
    let dir = oauthy_project(&api, &provider);
    let put = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, text).expect("write");
    };
    put(
        "integrations/custom.machine/config.yaml",
        &format!(
            "authenticationType: oauth_client_credential\naccessTokenUrl: {provider}/token\n\
             clientId: \"{{{{env.TEST_CLIENT_ID}}}}\"\nclientSecret: \"{{{{env.TEST_CLIENT_SECRET}}}}\"\napiBaseUrl: https://api.machine.example\n\
             authorization: {{ type: bearer, token: \"{{{{credentials.accessToken}}}}\" }}\n"
        ),
    );
    put(
        "integrations/custom.machine/workflows/machine-call.yaml",
        &format!(
            "id: machine-call\nenabled_by_default: true\ntrigger: {{ type: request }}\nsteps:\n\
             \x20 - {{ id: call, type: request, url: \"{api}/echo\", headers: {{ authorization: \"Bearer {{{{credentials.accessToken}}}}\" }} }}\n\
             \x20 - {{ id: reply, type: response, body: {{ ok: true }} }}\n"
        ),
    );
    stack.deploy_project(&dir).await;
    let (ada, bob) = (Sdk { stack, token: stack.token("ada") }, Sdk { stack, token: stack.token("bob") });
    let ((first, _), (second, _)) = tokio::join!(ada.trigger("machine-call"), bob.trigger("machine-call"));
    assert_eq!((first, second), (StatusCode::OK, StatusCode::OK));
    let (third, _) = ada.trigger("machine-call").await;
    assert_eq!(third, StatusCode::OK);
    let calls = seen.lock().expect("seen").clone();
    assert_eq!(calls, ["Bearer cc-1"; 3], "every user's steps carry the app's token");
    assert_eq!(token_calls.lock().expect("log").as_slice(), ["client_credentials"], "fetched once and kept");
    let _ = std::fs::remove_dir_all(dir);
}

/// A test run of an integration's workflow — whole or one step — sees the user's settings and
/// credentials through the same source, context and redaction as a real execution.
async fn test_runs_of_an_integrations_workflow_see_the_users_settings_and_credentials(stack: &TestStack) {
    let (api, seen) = echo_api().await;
    let dir = project(&api);
    stack.deploy_project(&dir).await;
    let ada = Sdk { stack, token: stack.token("ada") };
    let (status, _) =
        ada.send(reqwest::Method::PUT, "integrations/slack/settings", Some(json!({ "token": SECRET }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        ada.send(reqwest::Method::PUT, "integrations/custom.acme/credentials", Some(json!({ "apiKey": SECRET }))).await;
    assert_eq!(status, StatusCode::OK);
    let file = |path: &str| -> Value {
        let text = std::fs::read_to_string(dir.join(path)).expect("read");
        serde_yaml_ng::from_str(&text).expect("yaml")
    };
    let test_run = |body: Value| async move {
        let url = format!("{}/projects/{}/test-runs", stack.base_url, stack.project_id);
        let response = stack.client().post(url).bearer_auth(&stack.api_key).json(&body).send().await.expect("send");
        (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
    };

    let acme = file("integrations/custom.acme/workflows/acme-call.yaml");
    let (status, run) = test_run(json!({ "workflow": acme, "integration": "custom.acme", "userId": "ada" })).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"][1]["output"]["body"], json!({ "seen": true }), "the credential reached the API: {run}");
    assert!(!run.to_string().contains(SECRET), "{run}");

    let announce = file("integrations/slack/workflows/announce.yaml");
    let one_step = json!({ "workflow": announce, "integration": "slack", "userId": "ada", "step": "call" });
    let (status, step) = test_run(one_step).await;
    assert_eq!(status, StatusCode::OK, "{step}");
    assert_eq!(step["status"], "succeeded", "{step}");
    assert_eq!(step["output"]["body"]["seen"], true, "the password setting reached the API: {step}");
    assert_eq!(seen.lock().expect("seen").last().map(String::as_str), Some(format!("Bearer {SECRET}").as_str()));
    assert!(!step.to_string().contains(SECRET), "redacted as a real step is: {step}");
    assert!(step.to_string().contains("[redacted]"), "{step}");

    // Without its integration, credentials are refused at load; an undeployed integration is a 404.
    let (status, body) =
        test_run(json!({ "workflow": file("integrations/custom.acme/workflows/acme-call.yaml") })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = test_run(json!({ "workflow": announce_value(&dir), "integration": "custom.nope" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn announce_value(dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(dir.join("integrations/slack/workflows/announce.yaml")).expect("read");
    serde_yaml_ng::from_str(&text).expect("yaml")
}

on_both_backends! {
    test_runs_of_an_integrations_workflow_see_the_users_settings_and_credentials: Duration::from_secs(10);
    enablement_gates_triggers_per_user: Duration::from_secs(10);
    settings_are_validated_read_by_workflows_and_secrets_never_shown: Duration::from_secs(10);
    users_are_recorded_and_described: Duration::from_secs(10);
    no_token_crosses_users_projects_or_route_kinds: Duration::from_secs(10);
    credentials_are_sealed_used_by_their_integration_and_never_shown: Duration::from_secs(10);
    the_oauth_flow_connects_a_user_and_their_tokens_reach_the_api: Duration::from_secs(10);
    expired_tokens_are_refreshed_once_and_a_refused_refresh_needs_reauthorization: Duration::from_secs(10);
    a_client_credentials_token_is_the_apps_fetched_once_and_kept: Duration::from_secs(10);
    every_catalog_action_reaches_its_api_with_the_users_stored_credentials: Duration::from_secs(10);
    no_project_reaches_another_projects_users_config_or_executions: Duration::from_secs(10);
}

/// One fake of every catalog API, each under its own prefix: it records every call (method,
/// path, query, credentials, JSON body) and answers as the real API does, refusing what the
/// real one would refuse (a missing required field, an unknown path).
async fn fake_apis() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let record = record.clone();
        async move {
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let query = uri.query().unwrap_or_default().to_string();
            let path = uri.path().to_string();
            record.lock().expect("seen").push(json!({
                "method": method.as_str(), "path": path, "query": query,
                "auth": header("authorization"), "key": header("x-key"), "body": body,
            }));
            let page2 = query.contains("cursor=2") || query.contains("pageToken=2");
            let (status, answer) = match (method.as_str(), path.as_str()) {
                ("POST", "/slack/chat.postMessage") if body["channel"].is_string() && body["text"].is_string() => {
                    (200, json!({ "ok": true, "channel": "C002", "ts": "1700.000001" }))
                }
                ("POST", "/slack/chat.postMessage") => (200, json!({ "ok": false, "error": "invalid_arguments" })),
                ("GET", "/slack/conversations.list") if page2 => (200, json!({ "ok": true, "channels": [{ "id": "C3" }], "response_metadata": { "next_cursor": "" } })),
                ("GET", "/slack/conversations.list") => (200, json!({ "ok": true, "channels": [{ "id": "C1" }, { "id": "C2" }], "response_metadata": { "next_cursor": "2" } })),
                ("POST", "/hubspot/crm/v3/objects/contacts") if body["properties"]["email"].is_string() => {
                    (201, json!({ "id": "101", "properties": body["properties"] }))
                }
                ("PATCH", "/hubspot/crm/v3/objects/contacts/101") => (200, json!({ "id": "101", "properties": body["properties"] })),
                ("POST", "/hubspot/crm/v3/objects/contacts/search") if body["filterGroups"].is_array() => {
                    (200, json!({ "total": 1, "results": [{ "id": "101" }] }))
                }
                ("POST", "/sf/services/data/v66.0/sobjects/Lead") if body["LastName"].is_string() => {
                    (201, json!({ "id": "00Q1", "success": true, "errors": [] }))
                }
                ("GET", "/sf/services/data/v66.0/query") if query.starts_with("q=") => (200, json!({
                    "totalSize": 3, "done": false, "records": [{ "Id": "1" }, { "Id": "2" }],
                    "nextRecordsUrl": "/sf/services/data/v66.0/query/01gNext-2000",
                })),
                ("GET", "/sf/services/data/v66.0/query/01gNext-2000") => (200, json!({ "totalSize": 3, "done": true, "records": [{ "Id": "3" }] })),
                ("POST", "/gcal/calendars/primary/events") if body["start"]["dateTime"].is_string() => {
                    (200, json!({ "id": "ev1", "summary": body["summary"], "htmlLink": "https://calendar.example/ev1" }))
                }
                ("GET", "/gcal/calendars/primary/events") if page2 => (200, json!({ "items": [{ "id": "ev3" }] })),
                ("GET", "/gcal/calendars/primary/events") => (200, json!({ "items": [{ "id": "ev1" }, { "id": "ev2" }], "nextPageToken": "2" })),
                ("POST", "/acme/v2/things") => (201, json!({ "created": body })),
                _ => (404, json!({ "error": "not found", "path": path })),
            };
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(answer))
        }
    });
    (serve_locally(app).await, seen)
}

/// A project with one workflow per integration running its catalog actions against `api`.
fn actions_project(api: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-actions-{}", uuid::Uuid::new_v4().simple()));
    let put = |path: &str, text: String| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, text).expect("write");
    };
    let flow = |id: &str, steps: &str, reply: &str| {
        format!(
            "id: {id}\nenabled_by_default: true\ntrigger: {{ type: request }}\nsteps:\n{steps}  - {{ id: reply, type: response, body: {reply} }}\n"
        )
    };
    put("integrations/slack/config.yaml", format!("apiBaseUrl: \"{api}/slack\"\n"));
    put("integrations/slack/workflows/slack-flow.yaml", flow("slack-flow", "  - { id: send, type: action, integration: slack, action: send_message, params: { channel: \"#sales\", text: \"{{trigger.body.text}}\" } }
  - { id: list, type: action, action: list_channels }
", "{ ts: \"{{steps.send.output.ts}}\", channels: \"{{steps.list.output.channels}}\", pages: \"{{steps.list.output.pages}}\" }"));
    put("integrations/hubspot/config.yaml", format!("apiBaseUrl: \"{api}/hubspot\"\n"));
    put("integrations/hubspot/workflows/hubspot-flow.yaml", flow("hubspot-flow", "  - { id: create, type: action, action: create_contact, params: { properties: { email: \"{{trigger.body.email}}\" } } }
  - { id: update, type: action, action: update_contact, params: { contactId: \"{{steps.create.output.id}}\", properties: { lifecyclestage: customer } } }
  - id: search
    type: action
    action: search_contacts
    params: { filterGroups: [ { filters: [ { propertyName: email, operator: EQ, value: \"{{trigger.body.email}}\" } ] } ], limit: 10 }
", "{ id: \"{{steps.update.output.id}}\", stage: \"{{steps.update.output.properties.lifecyclestage}}\", total: \"{{steps.search.output.total}}\" }"));
    // Salesforce's API host is the user's own (`instanceUrl`, stored with their tokens).
    put("integrations/salesforce/config.yaml", "description: Salesforce\n".to_string());
    put("integrations/salesforce/workflows/salesforce-flow.yaml", flow("salesforce-flow", "  - { id: lead, type: action, action: create_record, params: { object: Lead, fields: { LastName: \"{{trigger.body.name}}\", Company: Acme } } }
  - { id: query, type: action, action: soql_query, params: { query: \"SELECT Id FROM Lead\" } }
", "{ lead: \"{{steps.lead.output.id}}\", records: \"{{steps.query.output.records}}\", pages: \"{{steps.query.output.pages}}\" }"));
    put("integrations/googlecalendar/config.yaml", format!("apiBaseUrl: \"{api}/gcal\"\n"));
    put("integrations/googlecalendar/workflows/calendar-flow.yaml", flow("calendar-flow", "  - id: event
    type: action
    action: create_event
    params: { calendarId: primary, summary: Demo, start: { dateTime: \"2026-12-03T10:00:00Z\" }, end: { dateTime: \"2026-12-03T10:30:00Z\" } }
  - { id: events, type: action, action: list_events, params: { calendarId: primary, singleEvents: true } }
", "{ event: \"{{steps.event.output.id}}\", events: \"{{steps.events.output.events}}\" }"));
    put(
        "integrations/custom.acme/config.yaml",
        format!(
            "authenticationType: api_key\napiBaseUrl: \"{api}/acme/v2\"\n\
         authorization: {{ type: header, name: X-Key, value: \"{{{{credentials.apiKey}}}}\" }}\n"
        ),
    );
    put("integrations/custom.acme/workflows/acme-flow.yaml", flow("acme-flow", "  - { id: call, type: action, action: request, params: { method: POST, path: /things, body: { n: \"{{trigger.body.n}}\" } } }
", "\"{{steps.call.output}}\""));
    dir
}

async fn every_catalog_action_reaches_its_api_with_the_users_stored_credentials(stack: &TestStack) {
    let (api, seen) = fake_apis().await;
    let dir = actions_project(&api);
    stack.deploy_project(&dir).await;
    let ada = Sdk { stack, token: stack.token("ada") };
    let credentials = [
        ("slack", json!({ "accessToken": "xoxb-ada" })),
        ("hubspot", json!({ "accessToken": "hs-ada" })),
        ("salesforce", json!({ "accessToken": "sf-ada", "instanceUrl": format!("{api}/sf") })),
        ("googlecalendar", json!({ "accessToken": "ya29-ada" })),
        ("custom.acme", json!({ "apiKey": "acme-ada" })),
    ];
    for (integration, body) in &credentials {
        let (status, answer) = ada
            .send(reqwest::Method::PUT, &format!("integrations/{integration}/credentials"), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{integration}: {answer}");
    }
    let trigger = |workflow: &'static str, body: Value| {
        let request = stack.client().post(stack.trigger_url(workflow)).bearer_auth(stack.token("ada")).json(&body);
        async move {
            let response = request.send().await.expect("trigger");
            let status = response.status();
            let id = response
                .headers()
                .get("x-sluice-execution-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (status, id, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let mut executions = Vec::new();
    let (status, id, body) = trigger("slack-flow", json!({ "text": "Deal {{won}}" })).await;
    assert_eq!(
        (status, &body),
        (
            StatusCode::OK,
            &json!({ "ts": "1700.000001", "channels": [{ "id": "C1" }, { "id": "C2" }, { "id": "C3" }], "pages": 2 })
        )
    );
    executions.push(id);
    let (status, id, body) = trigger("hubspot-flow", json!({ "email": "ada@example.com" })).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "id": "101", "stage": "customer", "total": 1 })));
    executions.push(id);
    let (status, id, body) = trigger("salesforce-flow", json!({ "name": "Lovelace" })).await;
    assert_eq!(
        (status, &body),
        (
            StatusCode::OK,
            &json!({ "lead": "00Q1", "records": [{ "Id": "1" }, { "Id": "2" }, { "Id": "3" }], "pages": 2 })
        )
    );
    executions.push(id);
    let (status, id, body) = trigger("calendar-flow", json!({})).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({ "event": "ev1", "events": [{ "id": "ev1" }, { "id": "ev2" }, { "id": "ev3" }] }))
    );
    executions.push(id);
    let (status, id, body) = trigger("acme-flow", json!({ "n": 7 })).await;
    assert_eq!(
        (status, &body["status"], &body["body"]),
        (StatusCode::OK, &json!(201), &json!({ "created": { "n": 7 } })),
        "{body}"
    );
    executions.push(id);

    let calls = seen.lock().expect("seen").clone();
    let call = |method: &str, path: &str| {
        calls
            .iter()
            .find(|c| c["method"] == method && c["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {method} {path} in {calls:#?}"))
    };
    // What the real APIs expect: paths, the user's own credentials, body shapes.
    let message = call("POST", "/slack/chat.postMessage");
    assert_eq!(
        (&message["auth"], &message["body"]),
        (&json!("Bearer xoxb-ada"), &json!({ "channel": "#sales", "text": "Deal {{won}}" }))
    );
    assert_eq!(calls.iter().filter(|c| c["path"] == "/slack/conversations.list").count(), 2);
    let update = call("PATCH", "/hubspot/crm/v3/objects/contacts/101");
    assert_eq!(
        (&update["auth"], &update["body"]),
        (&json!("Bearer hs-ada"), &json!({ "properties": { "lifecyclestage": "customer" } }))
    );
    let search = call("POST", "/hubspot/crm/v3/objects/contacts/search");
    assert_eq!(search["body"]["limit"], 10);
    assert_eq!(search["body"]["filterGroups"][0]["filters"][0]["value"], "ada@example.com");
    assert!(search["body"].get("after").is_none(), "absent optional params are left out: {search}");
    let lead = call("POST", "/sf/services/data/v66.0/sobjects/Lead");
    assert_eq!(
        (&lead["auth"], &lead["body"]),
        (&json!("Bearer sf-ada"), &json!({ "LastName": "Lovelace", "Company": "Acme" }))
    );
    assert_eq!(call("GET", "/sf/services/data/v66.0/query")["query"], "q=SELECT+Id+FROM+Lead");
    assert_eq!(call("GET", "/sf/services/data/v66.0/query/01gNext-2000")["auth"], "Bearer sf-ada");
    let event = call("POST", "/gcal/calendars/primary/events");
    assert_eq!((&event["auth"], &event["body"]["summary"]), (&json!("Bearer ya29-ada"), &json!("Demo")));
    assert!(event["body"].get("attendees").is_none(), "{event}");
    let things = call("POST", "/acme/v2/things");
    assert_eq!((&things["key"], &things["auth"]), (&json!("acme-ada"), &json!("")));

    for id in &executions {
        let record = stack.wait_until_ended(id, Duration::from_secs(30)).await.to_string();
        for secret in ["xoxb-ada", "hs-ada", "sf-ada", "ya29-ada", "acme-ada"] {
            assert!(!record.contains(secret), "`{secret}` is in the record: {record}");
        }
    }

    // Bob connected nothing: his action fails, saying so, and nothing is sent with his name.
    let before = seen.lock().expect("seen").len();
    let bob = stack
        .client()
        .post(stack.trigger_url("slack-flow"))
        .bearer_auth(stack.token("bob"))
        .json(&json!({ "text": "x" }));
    let response = bob.send().await.expect("trigger");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let answer = response.text().await.expect("text");
    assert!(answer.contains("credentials.accessToken"), "{answer}");
    assert_eq!(seen.lock().expect("seen").len(), before);
    let _ = std::fs::remove_dir_all(dir);
}

async fn no_project_reaches_another_projects_users_config_or_executions(stack: &TestStack) {
    let (api, _) = echo_api().await;
    let dir = project(&api);
    stack.deploy_project(&dir).await;
    // Project Q beside P in the same store: its own signing key, API key and `slack` config.
    let keys = sluice_shared::auth::generate_signing_key().expect("key");
    let q = format!("q{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let q_api_key = format!("sk_{}", uuid::Uuid::new_v4().simple());
    let project = sluice_shared::ports::Project {
        id: q.clone(),
        signing_public_key_pem: keys.public_pem.clone(),
        api_key_sha256: sluice_shared::auth::hash_api_key(&q_api_key),
        created_at: sluice_shared::record::now(),
    };
    stack.store.create_project(&project).await.expect("create Q");
    let q_dir = std::env::temp_dir().join(format!("sluice-connect-q-{q}"));
    std::fs::create_dir_all(q_dir.join("integrations/slack/workflows")).expect("folders");
    std::fs::write(
        q_dir.join("integrations/slack/config.yaml"),
        "description: Q's own Slack\naccentColor: \"#000000\"\n",
    )
    .expect("write");
    std::fs::write(
        q_dir.join("integrations/slack/workflows/q-only.yaml"),
        "id: q-only\nenabled_by_default: true\ntrigger: { type: request }\nsteps: [{ id: reply, type: response, body: { q: true } }]\n",
    )
    .expect("write");
    let definition = sluice_cli::project::load(&q_dir).expect("Q is valid");
    sluice_cli::project::deploy(stack.store.as_ref(), &q, &definition).await.expect("deploy Q");

    let base = &stack.base_url;
    let p = &stack.project_id;
    let http = stack.client();
    let p_token = stack.token("ada");
    let q_token =
        sluice_shared::auth::issue_user_token(&keys.private_pem, "ada", Duration::from_secs(60)).expect("token");
    let response = stack.trigger_request("greet").bearer_auth(&p_token).json(&json!({})).send().await.expect("trigger");
    let execution = response.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    stack.wait_until_ended(&execution, Duration::from_secs(30)).await;

    // Each project's config serves only its own users.
    let connect = |project: &str, token: &str| {
        let request = http.get(format!("{base}/projects/{project}/sdk/connect")).bearer_auth(token);
        async move {
            let response = request.send().await.expect("connect");
            (response.status(), response.text().await.expect("body"))
        }
    };
    let (status, q_sees) = connect(&q, &q_token).await;
    assert_eq!(status, StatusCode::OK, "{q_sees}");
    assert!(
        q_sees.contains("Q's own Slack") && !q_sees.contains("#4a154b") && !q_sees.contains("announce"),
        "{q_sees}"
    );
    let (_, p_sees) = connect(p, &p_token).await;
    assert!(!p_sees.contains("Q's own Slack") && !p_sees.contains("q-only"), "{p_sees}");
    // A user token of one project on the other's routes, both ways.
    for (project, token) in [(p.as_str(), q_token.as_str()), (q.as_str(), p_token.as_str())] {
        let (status, body) = connect(project, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(!body.contains("Slack") && !body.contains("#"), "{body}");
        let response = http
            .post(format!("{base}/projects/{project}/sdk/triggers/greet"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .expect("trigger");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // P's user on P cannot start Q's workflow; Q's API key reads none of P's executions.
    let response =
        stack.trigger_request("q-only").bearer_auth(&p_token).json(&json!({})).send().await.expect("trigger");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    for (project, key) in [(p.as_str(), q_api_key.as_str()), (q.as_str(), stack.api_key.as_str())] {
        let response = http
            .get(format!("{base}/projects/{project}/executions/{execution}"))
            .bearer_auth(key)
            .send()
            .await
            .expect("get");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert!(matches!(status, StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND), "{status}: {body}");
        assert!(!body.contains("greet") && !body.contains("\"hi\""), "{body}");
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(q_dir);
}
