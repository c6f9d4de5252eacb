//! Webhook triggers end to end on both backends, as providers send them: every signature
//! scheme (valid, tampered, stale, missing, duplicated, a rotated Stripe secret), Slack's
//! handshake, redeliveries acknowledged without a second start, HubSpot's batches routed
//! event by event, events for no connected user kept as unrouted, filters, form-encoded
//! bodies, and what is refused before anything is kept.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::stack::{Backend, StackConfig, TestStack};

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const HUBSPOT_SECRET: &str = "secret-1";
const STRIPE_SECRET: &str = "whsec_stripe_test";
const STRIPE_OLD_SECRET: &str = "whsec_stripe_old";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HMAC_SECRET: &str = "acme-hmac-secret";

fn hmac_bytes(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn stack(backend: Backend) -> Option<TestStack> {
    let mut config = StackConfig::default();
    for (name, value) in [
        ("SLACK_SIGNING_SECRET", SLACK_SECRET),
        ("STRIPE_SECRET", STRIPE_SECRET),
        ("GITHUB_SECRET", GITHUB_SECRET),
        ("STANDARD_SECRET", STANDARD_SECRET),
        ("HMAC_SECRET", HMAC_SECRET),
    ] {
        config.env.insert(name.to_string(), value.to_string());
    }
    TestStack::start_with(backend, config).await
}

/// A workflow file answering with what it was started by.
fn listener(id: &str, trigger: &str) -> String {
    format!(
        "id: {id}\nenabled_by_default: true\ntrigger: {trigger}\nsteps:\n  - {{ id: seen, type: function, code: \"(p) => ({{ event: p.event, body: p.body }})\", parameters: {{ event: \"{{{{trigger.event}}}}\", body: \"{{{{trigger.body}}}}\" }} }}\n"
    )
}

/// One integration of a test project: its name, config.yaml and workflows (id, file text).
type Integration<'a> = (&'a str, String, Vec<(&'a str, String)>);

/// Deploys a project of `integrations`.
async fn deploy(stack: &TestStack, integrations: &[Integration<'_>]) {
    let dir = std::env::temp_dir().join(format!("sluice-webhooks-{}", uuid::Uuid::new_v4().simple()));
    for (name, config, workflows) in integrations {
        let folder = dir.join("integrations").join(name);
        std::fs::create_dir_all(folder.join("workflows")).expect("folders");
        std::fs::write(folder.join("config.yaml"), config).expect("config");
        for (id, text) in workflows {
            std::fs::write(folder.join("workflows").join(format!("{id}.yaml")), text).expect("workflow");
        }
    }
    stack.deploy_project(&dir).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Stores `user`'s credentials for `integration` with `identity`.
async fn connect(stack: &TestStack, user: &str, integration: &str, credentials: Value) {
    let url = format!("{}/projects/{}/sdk/integrations/{integration}/credentials", stack.base_url, stack.project_id);
    let answer = stack.client().put(url).bearer_auth(stack.token(user)).json(&credentials).send().await.expect("put");
    assert_eq!(answer.status(), 200, "credentials: {:?}", answer.text().await);
}

fn webhook_url(stack: &TestStack, integration: &str) -> String {
    format!("{}/projects/{}/webhooks/{integration}", stack.base_url, stack.project_id)
}

async fn post(stack: &TestStack, integration: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, Value) {
    let mut request = stack.client().post(webhook_url(stack, integration)).body(body.to_string());
    let mut typed = false;
    for (name, value) in headers {
        typed |= name.eq_ignore_ascii_case("content-type");
        request = request.header(*name, value);
    }
    if !typed {
        request = request.header("content-type", "application/json");
    }
    let answer = request.send().await.expect("webhook");
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn slack_headers(body: &str, timestamp: i64, secret: &str) -> Vec<(&'static str, String)> {
    let signed = format!("v0:{timestamp}:{body}");
    let signature = format!("v0={}", hex(&hmac_bytes(secret.as_bytes(), signed.as_bytes())));
    vec![("x-slack-request-timestamp", timestamp.to_string()), ("x-slack-signature", signature)]
}

async fn deliveries(stack: &TestStack, query: &str) -> Vec<Value> {
    let url = format!("{}/projects/{}/webhook-deliveries?{query}", stack.base_url, stack.project_id);
    let answer = stack.client().get(url).bearer_auth(&stack.api_key).send().await.expect("deliveries");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// The executions each event started.
fn executions(answer: &Value) -> Vec<Vec<String>> {
    answer["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    e["executions"]
                        .as_array()
                        .map(|l| l.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn outcomes(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .map(|events| events.iter().map(|e| e["outcome"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

const SLACK_CONFIG: &str = "webhookSecret: \"{{env.SLACK_SIGNING_SECRET}}\"\nclientId: \"{{env.TEST_CLIENT_ID}}\"\nclientSecret: \"{{env.TEST_CLIENT_SECRET}}\"\n";

async fn slack_project(stack: &TestStack) {
    let messages = listener(
        "on-message",
        "{ type: webhook, event: message, filter: [{ left: \"{{trigger.body.event.channel}}\", op: equals, right: C1 }] }",
    );
    deploy(
        stack,
        &[(
            "slack",
            SLACK_CONFIG.to_string(),
            vec![
                ("on-message", messages),
                ("on-reaction", listener("on-reaction", "{ type: webhook, event: reaction_added }")),
                ("on-command", listener("on-command", "{ type: webhook, event: /deploy }")),
            ],
        )],
    )
    .await;
    for (user, team) in [("ada", "T1"), ("bob", "T1"), ("cyd", "T2")] {
        connect(stack, user, "slack", json!({"accessToken": "xoxb-1", "identity": {"team": team}})).await;
    }
}

fn slack_event(event_id: &str, team: &str, event: Value) -> String {
    json!({"type": "event_callback", "team_id": team, "api_app_id": "A1", "event": event, "event_id": event_id, "event_time": 1})
        .to_string()
}

async fn slack_signatures_handshake_routing_and_redelivery(stack: &TestStack) {
    slack_project(stack).await;
    let now = unix_now();

    // The handshake, signed, answers its challenge and keeps nothing.
    let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let (status, answer) = post(stack, "slack", &slack_headers(&challenge, now, SLACK_SECRET), &challenge).await;
    assert_eq!(
        (status, answer["challenge"].as_str()),
        (StatusCode::OK, Some("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"))
    );
    let (status, _) = post(stack, "slack", &slack_headers(&challenge, now, "wrong-secret"), &challenge).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a handshake with a bad signature is refused");
    let empty = json!({"type": "url_verification"}).to_string();
    let (status, _) = post(stack, "slack", &slack_headers(&empty, now, SLACK_SECRET), &empty).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a handshake without its challenge");

    // Refusals: tampered body, stale and future timestamps, missing and duplicated headers.
    let body = slack_event("Ev1", "T1", json!({"type": "message", "channel": "C1", "text": "hi"}));
    let headers = slack_headers(&body, now, SLACK_SECRET);
    let tampered = body.replace("hi", "ho");
    assert_eq!(post(stack, "slack", &headers, &tampered).await.0, StatusCode::UNAUTHORIZED);
    for skew in [-301, 301] {
        let stale = slack_headers(&body, now + skew, SLACK_SECRET);
        assert_eq!(post(stack, "slack", &stale, &body).await.0, StatusCode::UNAUTHORIZED, "skew {skew}");
    }
    assert_eq!(post(stack, "slack", &headers[..1], &body).await.0, StatusCode::UNAUTHORIZED, "no signature");
    let mut twice = headers.clone();
    twice.push(("x-slack-signature", headers[1].1.clone()));
    assert_eq!(post(stack, "slack", &twice, &body).await.0, StatusCode::UNAUTHORIZED, "the signature twice");
    assert!(deliveries(stack, "").await.is_empty(), "nothing refused is kept");

    // A message in C1 of team T1 starts on-message for both of T1's users.
    let (status, answer) = post(stack, "slack", &headers, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(outcomes(&answer), ["routed"]);
    let started = executions(&answer).concat();
    assert_eq!(started.len(), 2, "{answer}");
    let mut users = Vec::new();
    for id in &started {
        let record = stack.wait_until_ended(id, Duration::from_secs(20)).await;
        assert_eq!(record["status"], "succeeded", "{record:#}");
        let output = &record["steps"][0]["output"];
        assert_eq!(output["event"], "message");
        assert_eq!(output["body"]["event"]["text"], "hi");
        users.push(record["userId"].as_str().unwrap_or_default().to_string());
    }
    users.sort();
    assert_eq!(users, ["ada", "bob"]);

    // Slack's retry of the same event (another timestamp, X-Slack-Retry-Num) starts nothing.
    let mut retry = slack_headers(&body, now + 2, SLACK_SECRET);
    retry.push(("x-slack-retry-num", "1".into()));
    let (status, again) = post(stack, "slack", &retry, &body).await;
    assert_eq!((status, outcomes(&again)), (StatusCode::OK, vec!["duplicate".to_string()]));
    assert!(executions(&again).concat().is_empty());

    // Filtered out (channel C2), another type for T2 only, and a team nobody connected.
    let c2 = slack_event("Ev2", "T1", json!({"type": "message", "channel": "C2", "text": "x"}));
    let (_, answer) = post(stack, "slack", &slack_headers(&c2, now, SLACK_SECRET), &c2).await;
    assert!(executions(&answer).concat().is_empty(), "the filter holds back C2: {answer}");
    let reaction = slack_event("Ev3", "T2", json!({"type": "reaction_added", "reaction": "tada"}));
    let (_, answer) = post(stack, "slack", &slack_headers(&reaction, now, SLACK_SECRET), &reaction).await;
    assert_eq!(executions(&answer).concat().len(), 1, "cyd's reaction: {answer}");
    let nobody = slack_event("Ev4", "T9", json!({"type": "message", "channel": "C1"}));
    let (status, answer) = post(stack, "slack", &slack_headers(&nobody, now, SLACK_SECRET), &nobody).await;
    assert_eq!((status, outcomes(&answer)), (StatusCode::OK, vec!["unrouted".to_string()]));
    let unrouted = deliveries(stack, "unrouted=true").await;
    assert_eq!(unrouted.len(), 1, "{unrouted:#?}");
    assert_eq!(unrouted[0]["events"][0]["identity"], "T9");
    assert_eq!(unrouted[0]["headers"]["x-slack-signature"], "[redacted]", "signatures are not kept");
    assert_eq!(unrouted[0]["body"].as_str(), Some(nobody.as_str()), "the raw body as received");
    let all = deliveries(stack, "integration=slack").await;
    assert_eq!(all.len(), 5, "the five accepted deliveries, newest first");
    assert_eq!(all[0]["id"], unrouted[0]["id"]);
    let one = format!("{}/projects/{}/webhook-deliveries/{}", stack.base_url, stack.project_id, started_delivery(&all));
    let answer = stack.client().get(one).bearer_auth(&stack.api_key).send().await.expect("one");
    assert_eq!(answer.status(), 200);

    // The same new event delivered three times at once: its executions start once.
    let racing = slack_event("Ev5", "T1", json!({"type": "message", "channel": "C1", "text": "race"}));
    let signed = slack_headers(&racing, now, SLACK_SECRET);
    let (a, b, c) = tokio::join!(
        post(stack, "slack", &signed, &racing),
        post(stack, "slack", &signed, &racing),
        post(stack, "slack", &signed, &racing)
    );
    let answers = [a.1, b.1, c.1];
    let routed: Vec<&Value> = answers.iter().filter(|a| outcomes(a) == ["routed"]).collect();
    if stack.aws.is_none() {
        assert_eq!(routed.len(), 1, "one delivery starts them (one transaction): {answers:#?}");
    } else {
        // DynamoDB creates them one by one: racing deliveries may each start some, never one twice.
        assert!(!routed.is_empty(), "a delivery starts them: {answers:#?}");
    }
    assert!(answers.iter().all(|a| matches!(outcomes(a).as_slice(), [o] if o == "routed" || o == "duplicate")));
    let raced = executions(routed[0]).concat();
    assert_eq!(raced.len(), 2, "ada's and bob's");
    for id in &raced {
        assert_eq!(stack.wait_until_ended(id, Duration::from_secs(20)).await["status"], "succeeded");
    }

    // A slash command: a signed form, routed by its `team_id`.
    let form = "token=x&team_id=T2&command=%2Fdeploy&text=prod&user_id=U1";
    let mut headers = slack_headers(form, now, SLACK_SECRET);
    headers.push(("content-type", "application/x-www-form-urlencoded".into()));
    let (status, answer) = post(stack, "slack", &headers, form).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let started = executions(&answer).concat();
    assert_eq!(started.len(), 1, "{answer}");
    let record = stack.wait_until_ended(&started[0], Duration::from_secs(20)).await;
    assert_eq!(record["steps"][0]["output"]["body"]["text"], "prod");
    // A slash command has no event id: the same signed request replayed is recognised by its
    // signature and starts nothing; the same command sent again (signed anew) starts again.
    let (status, replayed) = post(stack, "slack", &headers, form).await;
    assert_eq!((status, outcomes(&replayed)), (StatusCode::OK, vec!["duplicate".to_string()]), "{replayed}");
    let mut again = slack_headers(form, now + 1, SLACK_SECRET);
    again.push(("content-type", "application/x-www-form-urlencoded".into()));
    let (_, resent) = post(stack, "slack", &again, form).await;
    assert_eq!(executions(&resent).concat().len(), 1, "{resent}");
}

/// The id of the delivery that started executions.
fn started_delivery(all: &[Value]) -> String {
    all.iter()
        .find(|d| d["events"][0]["executions"].as_array().is_some_and(|l| !l.is_empty()))
        .and_then(|d| d["id"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn hubspot_batches_are_routed_event_by_event(stack: &TestStack) {
    let config = "clientId: \"{{env.TEST_CLIENT_ID}}\"\nclientSecret: \"{{env.TEST_CLIENT_SECRET}}\"\n";
    deploy(
        stack,
        &[(
            "hubspot",
            config.to_string(),
            vec![("on-contact", listener("on-contact", "{ type: webhook, event: contact.creation }"))],
        )],
    )
    .await;
    connect(stack, "dan", "hubspot", json!({"accessToken": "t", "identity": {"portal": "62515"}})).await;
    let event = |id: u64, portal: u64, kind: &str| {
        json!({"eventId": id, "subscriptionId": 7, "portalId": portal, "appId": 1, "occurredAt": 1_700_000_000_000u64 + id,
               "subscriptionType": kind, "attemptNumber": 0, "objectId": 100 + id})
    };
    let body = json!([
        event(1, 62515, "contact.creation"),
        event(2, 999, "contact.creation"),
        event(3, 62515, "deal.creation"),
        event(4, 62515, "contact.creation")
    ])
    .to_string();
    let sign = |body: &str, millis: i64| {
        let url = webhook_url(stack, "hubspot");
        let signed = format!("POST{url}{body}{millis}");
        vec![
            ("x-hubspot-request-timestamp", millis.to_string()),
            ("x-hubspot-signature-v3", STANDARD.encode(hmac_bytes(HUBSPOT_SECRET.as_bytes(), signed.as_bytes()))),
        ]
    };
    let millis = chrono::Utc::now().timestamp_millis();
    let (status, answer) = post(stack, "hubspot", &sign(&body, millis), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(outcomes(&answer), ["routed", "unrouted", "ignored", "routed"], "deal.creation has no listener");
    let per_event: Vec<usize> = executions(&answer).iter().map(Vec::len).collect();
    assert_eq!(per_event, [1, 0, 0, 1], "deal.creation has no listener: {answer}");
    // HubSpot retries the whole batch: every event is a duplicate.
    let later = millis + 1_000;
    let (_, again) = post(stack, "hubspot", &sign(&body, later), &body).await;
    assert_eq!(outcomes(&again), ["duplicate"; 4]);
    // Older than five minutes, or signed for another URL: refused.
    let (status, _) = post(stack, "hubspot", &sign(&body, millis - 301_000), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut elsewhere = sign(&body, millis);
    elsewhere[1].1 = STANDARD
        .encode(hmac_bytes(HUBSPOT_SECRET.as_bytes(), format!("POSThttps://evil.example/x{body}{millis}").as_bytes()));
    assert_eq!(post(stack, "hubspot", &elsewhere, &body).await.0, StatusCode::UNAUTHORIZED);
    for id in executions(&answer).concat() {
        let record = stack.wait_until_ended(&id, Duration::from_secs(20)).await;
        assert_eq!(record["userId"], "dan");
        assert_eq!(record["steps"][0]["output"]["body"]["portalId"], 62515);
    }
}

fn custom_config(verify: &str, extra: &str) -> String {
    format!(
        "authenticationType: api_key\napiBaseUrl: https://api.example.com\nauthorization: {{ type: bearer, token: \"{{{{credentials.apiKey}}}}\" }}\nwebhooks:\n  verify: {verify}\n  eventType: type\n  eventId: id\n  identity: {{ key: account, path: account }}\n{extra}"
    )
}

async fn custom_schemes_verify_as_documented(stack: &TestStack) {
    let on = |id: &'static str| (id, listener(id, "{ type: webhook, event: thing.created }"));
    let integrations = [
        ("custom.stripey", custom_config("{ scheme: stripe_v1, secret: \"{{env.STRIPE_SECRET}}\" }", "")),
        ("custom.hubby", custom_config("{ scheme: github_sha256, secret: \"{{env.GITHUB_SECRET}}\" }", "")),
        ("custom.std", custom_config("{ scheme: standard_webhooks, secret: \"{{env.STANDARD_SECRET}}\" }", "")),
        (
            "custom.hexy",
            custom_config(
                "{ scheme: hmac, secret: \"{{env.HMAC_SECRET}}\", header: X-Acme-Signature, prefix: \"sha256=\", encoding: hex, signed: \"{timestamp}.{body}\", timestampHeader: X-Acme-Timestamp }",
                "",
            ),
        ),
        (
            "custom.b64",
            custom_config("{ scheme: hmac, secret: \"{{env.HMAC_SECRET}}\", header: X-Sig, encoding: base64 }", ""),
        ),
    ];
    let projects: Vec<Integration> = integrations
        .iter()
        .enumerate()
        .map(|(i, (name, config))| (*name, config.clone(), vec![on(["a", "b", "c", "d", "e"][i])]))
        .collect();
    deploy(stack, &projects).await;
    for (name, _) in &integrations {
        connect(stack, "eve", name, json!({"apiKey": "k", "identity": {"account": "A1"}})).await;
    }
    let now = unix_now();
    let body = |id: &str| json!({"id": id, "type": "thing.created", "account": "A1"}).to_string();

    // Stripe: `t=…,v1=…`, two v1 while the secret rotates (either may be the valid one).
    let stripe = |body: &str, t: i64, secrets: &[&str]| {
        let mut value = format!("t={t}");
        for secret in secrets {
            value.push_str(&format!(",v1={}", hex(&hmac_bytes(secret.as_bytes(), format!("{t}.{body}").as_bytes()))));
        }
        vec![("stripe-signature", value)]
    };
    let b = body("evt_1");
    let (status, answer) =
        post(stack, "custom.stripey", &stripe(&b, now, &[STRIPE_OLD_SECRET, STRIPE_SECRET]), &b).await;
    assert_eq!((status, executions(&answer).concat().len()), (StatusCode::OK, 1), "{answer}");
    assert_eq!(
        post(stack, "custom.stripey", &stripe(&b, now, &[STRIPE_OLD_SECRET]), &b).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(stack, "custom.stripey", &stripe(&b, now - 301, &[STRIPE_SECRET]), &b).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, again) = post(stack, "custom.stripey", &stripe(&b, now, &[STRIPE_SECRET]), &b).await;
    assert_eq!(outcomes(&again), ["duplicate"]);

    // GitHub: sha256= over the body.
    let b = body("gh_1");
    let github = |body: &str, secret: &str| {
        vec![("x-hub-signature-256", format!("sha256={}", hex(&hmac_bytes(secret.as_bytes(), body.as_bytes()))))]
    };
    assert_eq!(post(stack, "custom.hubby", &github(&b, GITHUB_SECRET), &b).await.0, StatusCode::OK);
    assert_eq!(post(stack, "custom.hubby", &github(&b, "nope"), &b).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(stack, "custom.hubby", &[], &b).await.0, StatusCode::UNAUTHORIZED);

    // Standard Webhooks: id.timestamp.body, base64 key, space-separated signatures.
    let key = STANDARD.decode(STANDARD_SECRET.trim_start_matches("whsec_")).expect("base64 secret");
    let standard = |body: &str, id: &str, t: i64| {
        let signature = STANDARD.encode(hmac_bytes(&key, format!("{id}.{t}.{body}").as_bytes()));
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", t.to_string()),
            ("webhook-signature", format!("v1,bm9wZQ== v1,{signature}")),
        ]
    };
    let b = body("msg_1");
    let (status, answer) = post(stack, "custom.std", &standard(&b, "msg_1", now), &b).await;
    assert_eq!((status, executions(&answer).concat().len()), (StatusCode::OK, 1), "{answer}");
    assert_eq!(post(stack, "custom.std", &standard(&b, "msg_1", now - 400), &b).await.0, StatusCode::UNAUTHORIZED);

    // A custom HMAC over "{timestamp}.{body}", hex with a prefix; and base64 over the body.
    let b = body("h_1");
    let sig = hex(&hmac_bytes(HMAC_SECRET.as_bytes(), format!("{now}.{b}").as_bytes()));
    let hexy = vec![("x-acme-signature", format!("sha256={sig}")), ("x-acme-timestamp", now.to_string())];
    assert_eq!(post(stack, "custom.hexy", &hexy, &b).await.0, StatusCode::OK);
    let stale = vec![("x-acme-signature", format!("sha256={sig}")), ("x-acme-timestamp", (now - 1000).to_string())];
    assert_eq!(post(stack, "custom.hexy", &stale, &b).await.0, StatusCode::UNAUTHORIZED);
    let b64 = vec![("x-sig", STANDARD.encode(hmac_bytes(HMAC_SECRET.as_bytes(), b.as_bytes())))];
    let (status, answer) = post(stack, "custom.b64", &b64, &b).await;
    assert_eq!((status, executions(&answer).concat().len()), (StatusCode::OK, 1), "{answer}");
}

async fn bad_deliveries_are_refused_before_anything_is_kept(stack: &TestStack) {
    slack_project(stack).await;
    let now = unix_now();
    let (status, _) = post(stack, "nosuch", &[], "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an integration that is not deployed");
    let (status, _) = post(stack, "custom.nope", &[], "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let big = format!("{{\"type\":\"event_callback\",\"x\":\"{}\"}}", "a".repeat(300 * 1024));
    let (status, _) = post(stack, "slack", &slack_headers(&big, now, SLACK_SECRET), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let garbage = "{not json";
    let (status, _) = post(stack, "slack", &slack_headers(garbage, now, SLACK_SECRET), garbage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "signed but not JSON");
    let (status, _) = post(
        stack,
        "slack",
        &[("x-slack-signature", "v0=zz".into()), ("x-slack-request-timestamp", "soon".into())],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a malformed timestamp");
    assert!(deliveries(stack, "").await.is_empty(), "nothing refused is kept");
}

async fn a_missing_signing_secret_is_unavailable_not_accepted(stack: &TestStack) {
    let config = "webhookSecret: \"{{env.NOT_SET_ANYWHERE}}\"\n";
    deploy(stack, &[("slack", config.to_string(), vec![("m", listener("m", "{ type: webhook, event: message }"))])])
        .await;
    let body = slack_event("Ev1", "T1", json!({"type": "message"}));
    let (status, answer) = post(stack, "slack", &slack_headers(&body, unix_now(), SLACK_SECRET), &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(answer.to_string().contains("NOT_SET_ANYWHERE"), "names what is missing: {answer}");
}

macro_rules! webhook_tests {
    ($($scenario:ident;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let stack = stack(Backend::Sqlite).await.expect("SQLite stack");
                    super::$scenario(&stack).await;
                }
            )*
        }
        mod aws {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(stack) = stack(Backend::Aws).await else { return };
                    super::$scenario(&stack).await;
                }
            )*
        }
    };
}

webhook_tests! {
    slack_signatures_handshake_routing_and_redelivery;
    hubspot_batches_are_routed_event_by_event;
    custom_schemes_verify_as_documented;
    bad_deliveries_are_refused_before_anything_is_kept;
    a_missing_signing_secret_is_unavailable_not_accepted;
}
