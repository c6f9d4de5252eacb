//! The built-in `slack` integration end to end against its provider's fake (Slack), on both
//! backends: the hosted connect (comma-joined scopes, user scopes, the workspace and installer
//! as identity); rotating tokens renewed once per lifetime under concurrent runs, and once when
//! Slack says `token_expired` early; Slack's refusals failing the step with its own code, its
//! transient errors and rate limits retried; every page of the paginated lists unless
//! `maxPages` stops them; and each action as Slack receives it (method, bearer, arguments) and
//! as the step answers it, the two-step file uploads included.
//!
//! The API is reached as `localhost` while the fake hands out upload URLs on `127.0.0.1`: another
//! origin, as Slack's `files.slack.com` is to `slack.com`, so the upload gets no Slack token.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use serde_json::{Value, json};
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::on_both_backends;
use sluice_e2e::providers::{
    self, action_step, connection, deploy, error, oauth_config, output, retried_step, together,
};
use sluice_e2e::stack::{Backend, TestStack};
use sluice_fakes::slack::{FakeFailure, FakeSlack, Recorded, SlackConfig};

/// The user who connects Slack in every scenario.
const USER: &str = "ada";

/// A small PNG-looking binary with bytes no text encoding keeps (NUL, 0xFF, 0xFE, 0x80).
const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe, 0x00, 0x10, 0x80, 0x7f, 0x01];

/// The bot scopes the project's workflows need: those of every action they run.
const PROJECT_SCOPES: [&str; 6] =
    ["chat:write", "channels:read", "users:read", "users:read.email", "reactions:write", "files:write"];

/// The project's workflows: each runs one action as step `a` with params from the trigger body.
fn workflows(downloads: &str) -> Vec<(&'static str, String)> {
    let step = |action: &str, params: &str| action_step(action, params);
    vec![
        ("post", step("send_message", r#"{ channel: "{{trigger.body.channel}}", text: "{{trigger.body.text}}" }"#)),
        (
            "post-retried",
            retried_step(
                "send_message",
                r#"{ channel: "{{trigger.body.channel}}", text: "{{trigger.body.text}}" }"#,
                1,
                "100ms",
            ),
        ),
        ("dm", step("send_direct_message", r#"{ user: "{{trigger.body.user}}", text: "{{trigger.body.text}}" }"#)),
        ("find", step("find_user_by_email", r#"{ email: "{{trigger.body.email}}" }"#)),
        (
            "update",
            step(
                "update_message",
                r#"{ channel: "{{trigger.body.channel}}", ts: "{{trigger.body.ts}}", text: "{{trigger.body.text}}" }"#,
            ),
        ),
        ("delete", step("delete_message", r#"{ channel: "{{trigger.body.channel}}", ts: "{{trigger.body.ts}}" }"#)),
        (
            "react",
            step(
                "add_reaction",
                r#"{ channel: "{{trigger.body.channel}}", timestamp: "{{trigger.body.ts}}", name: "{{trigger.body.name}}" }"#,
            ),
        ),
        ("channels", step("list_channels", r#"{ limit: "{{trigger.body.limit}}" }"#)),
        (
            "channels-capped",
            step("list_channels", r#"{ limit: "{{trigger.body.limit}}", maxPages: "{{trigger.body.maxPages}}" }"#),
        ),
        ("private-channels", step("list_channels", "{ types: private_channel }")),
        ("users", step("list_users", r#"{ limit: "{{trigger.body.limit}}" }"#)),
        (
            "users-capped",
            step("list_users", r#"{ limit: "{{trigger.body.limit}}", maxPages: "{{trigger.body.maxPages}}" }"#),
        ),
        (
            "upload-text",
            step(
                "upload_text_file",
                r#"{ content: "{{trigger.body.content}}", filename: "{{trigger.body.filename}}", title: "{{trigger.body.title}}", channel: "{{trigger.body.channel}}", initial_comment: "{{trigger.body.comment}}" }"#,
            ),
        ),
        (
            "upload",
            format!(
                "  - {{ id: dl, type: request, url: \"{downloads}/report.png\" }}\n{}",
                step(
                    "upload_file",
                    r#"{ file: "{{steps.dl.output.file}}", title: "{{trigger.body.title}}", channel: "{{trigger.body.channel}}", initial_comment: "{{trigger.body.comment}}" }"#,
                )
            ),
        ),
    ]
}

/// A server a Request step downloads [`PNG`] from, as `report.png`.
async fn downloads() -> String {
    serve_locally(Router::new().route("/report.png", get(|| async { ([(CONTENT_TYPE, "image/png")], PNG) }))).await
}

/// A fake Slack with the test stack's OAuth client and `config`'s workspace and rotation, the
/// project deployed against it (with `extra` config lines) and [`USER`] connected.
async fn connected(stack: &TestStack, config: SlackConfig, extra: &str) -> FakeSlack {
    let config = SlackConfig { client_id: "client-1".into(), client_secret: "secret-1".into(), ..config };
    let fake = FakeSlack::start(config).await.expect("the fake Slack");
    let api = fake.api_url().replace("127.0.0.1", "localhost");
    let settings = oauth_config(&fake.authorize_url(), &fake.token_url(), &api, extra);
    deploy(stack, "slack", &settings, &workflows(&downloads().await)).await;
    providers::connect(stack, USER, "slack", "").await.expect("ada connects");
    fake
}

/// Runs `workflow` for [`USER`] with `body`: what its step `a` did, from the execution record
/// (see [`providers::run`]), which never shows a Slack token.
async fn run(stack: &TestStack, workflow: &str, body: Value) -> Value {
    providers::run_hiding(stack, USER, workflow, body, "xox").await
}

/// The requests the fake received on `path` (`/api/chat.postMessage`), oldest first.
fn calls(fake: &FakeSlack, path: &str) -> Vec<Recorded> {
    fake.requests().into_iter().filter(|r| r.path == path).collect()
}

/// The one bot token every Web API call (OAuth aside) carried: the connection's.
fn bot_bearer(fake: &FakeSlack) -> String {
    let api: Vec<Recorded> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/") && r.path != "/api/oauth.v2.access")
        .collect();
    let bearers: BTreeSet<Option<String>> = api.iter().map(|r| r.authorization.clone()).collect();
    assert_eq!(bearers.len(), 1, "one token for every call: {bearers:?}");
    let bearer = bearers.into_iter().next().flatten().expect("a bearer token");
    assert!(bearer.starts_with("Bearer xoxb-") || bearer.starts_with("Bearer xoxe.xoxb-"), "the bot token: {bearer}");
    bearer
}

fn json_body(call: &Recorded) -> Value {
    assert_eq!(call.content_type.as_deref(), Some("application/json"), "{} sends JSON", call.path);
    serde_json::from_str(&call.body).expect("a JSON body")
}

fn query(call: &Recorded) -> Vec<(String, String)> {
    url::form_urlencoded::parse(call.query.as_bytes()).into_owned().collect()
}

/// The step's error message, after asserting it failed with `retryable`.
fn failure(answer: &Value, retryable: bool) -> String {
    let (message, was_retryable) = error(answer);
    assert_eq!(was_retryable, retryable, "{answer}");
    message.to_string()
}

async fn the_hosted_connect_asks_the_actions_scopes_comma_joined_and_shows_the_workspace_and_installer(
    stack: &TestStack,
) {
    let fake = connected(stack, SlackConfig::default(), "userScopes: [search:read, users:read]\n").await;
    // The same scopes space-joined, as Sluice sent them before it used the catalog's separator:
    // Slack (and its fake) refuse them, so this connect could not have succeeded then.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let spaced = browser
        .get(fake.authorize_url())
        .query(&[("client_id", "client-1"), ("scope", "chat:write channels:read"), ("redirect_uri", "http://app/cb")])
        .send()
        .await
        .expect("authorize");
    let location = spaced.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default();
    assert!(location.contains("error=invalid_scope"), "space-joined scopes are refused: {location}");

    // A second user walks the flow to show the authorize URL Sluice built.
    let (authorize, _) = providers::connect(stack, "bob", "slack", "").await.expect("bob connects");
    let param = |name: &str| authorize.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let scope = param("scope").expect("a scope parameter");
    assert!(!scope.contains(char::is_whitespace), "comma-joined: {scope}");
    let asked: BTreeSet<&str> = scope.split(',').collect();
    assert_eq!(asked, BTreeSet::from(PROJECT_SCOPES), "the scopes of the project's actions, once each: {scope}");
    assert_eq!(scope.split(',').count(), PROJECT_SCOPES.len(), "{scope}");
    assert_eq!(param("user_scope").as_deref(), Some("search:read,users:read"), "userScopes as `user_scope`");
    assert_eq!(param("client_id").as_deref(), Some("client-1"));
    assert_eq!(fake.token_requests("authorization_code"), 2, "one code exchange per user");

    let installer = fake.user_ids()[0].clone();
    for user in [USER, "bob"] {
        let slack = connection(stack, user, "slack").await;
        assert_eq!((&slack["connected"], &slack["needsReauthorization"]), (&json!(true), &json!(false)), "{slack}");
        let identity = &slack["identity"];
        assert_eq!(identity["team"], json!(fake.config().team_id), "{identity}");
        assert_eq!(identity["user"], json!(installer), "the installing user: {identity}");
        assert_eq!(identity["botUser"], json!(sluice_fakes::slack::BOT_USER_ID), "{identity}");
        assert!(!slack.to_string().contains("xox"), "no token shown: {slack}");
    }

    let general = fake.channel_id("general").expect("#general");
    let answer = run(stack, "post", json!({ "channel": general, "text": "connected" })).await;
    assert_eq!(output(&answer)["channel"], json!(general), "{answer}");
    let bearer = bot_bearer(&fake);
    assert!(bearer.starts_with("Bearer xoxb-"), "the bot token, not the user token: {bearer}");
}

async fn rotating_tokens_are_renewed_once_per_lifetime_under_concurrent_runs(stack: &TestStack) {
    let lifetime = Duration::from_secs(2);
    let fake = connected(stack, SlackConfig { rotation: Some(lifetime), ..SlackConfig::default() }, "").await;
    let general = fake.channel_id("general").expect("#general");
    let mut seen = 0;
    let mut tokens: Vec<String> = Vec::new();
    for lifetime_n in 0..4 {
        let runs =
            (0..5).map(|n| run(stack, "post", json!({ "channel": general, "text": format!("{lifetime_n}/{n}") })));
        for answer in together(runs).await {
            assert!(output(&answer)["ts"].is_string(), "lifetime {lifetime_n}: {answer}");
        }
        assert_eq!(fake.token_requests("refresh_token"), lifetime_n, "one renewal per lifetime after the first");
        let posts = calls(&fake, "/api/chat.postMessage");
        let round = &posts[seen..];
        seen = posts.len();
        assert_eq!(round.len(), 5, "lifetime {lifetime_n}: no post was refused and sent again");
        let bearers: BTreeSet<&str> = round.iter().filter_map(|p| p.authorization.as_deref()).collect();
        assert_eq!(bearers.len(), 1, "lifetime {lifetime_n}: every post carried the current token: {bearers:?}");
        let bearer = bearers.into_iter().next().expect("a token").to_string();
        assert!(bearer.starts_with("Bearer xoxe.xoxb-1-"), "a rotating bot token: {bearer}");
        assert!(!tokens.contains(&bearer), "lifetime {lifetime_n}: a fresh token");
        tokens.push(bearer);
        if lifetime_n < 3 {
            tokio::time::sleep(lifetime + Duration::from_millis(300)).await;
        }
    }
    let slack = connection(stack, USER, "slack").await;
    assert_eq!((&slack["connected"], &slack["needsReauthorization"]), (&json!(true), &json!(false)), "{slack}");
    let texts: BTreeSet<String> = fake.messages().into_iter().filter_map(|m| m.text).collect();
    assert_eq!(texts.len(), 20, "every run posted once");
}

async fn a_token_slack_expired_early_is_renewed_once_and_the_post_sent_again(stack: &TestStack) {
    let hour = Duration::from_secs(3600);
    let fake = connected(stack, SlackConfig { rotation: Some(hour), ..SlackConfig::default() }, "").await;
    let general = fake.channel_id("general").expect("#general");
    fake.expire_all_tokens();
    let answer = run(stack, "post", json!({ "channel": general, "text": "after expiry" })).await;
    assert!(output(&answer)["ts"].is_string(), "{answer}");
    assert_eq!(fake.token_requests("refresh_token"), 1, "one renewal");
    let posts = calls(&fake, "/api/chat.postMessage");
    assert_eq!(posts.len(), 2, "refused with token_expired, then sent again");
    assert_ne!(posts[0].authorization, posts[1].authorization, "the second with the renewed token");
    let renewed = posts[1].authorization.clone();

    fake.expire_all_tokens();
    let runs = (0..5).map(|n| run(stack, "post", json!({ "channel": general, "text": format!("concurrent {n}") })));
    for answer in together(runs).await {
        assert!(output(&answer)["ts"].is_string(), "{answer}");
    }
    assert_eq!(fake.token_requests("refresh_token"), 2, "one renewal for all five runs");
    let posts = &calls(&fake, "/api/chat.postMessage")[2..];
    let newest: Vec<&Recorded> = posts.iter().filter(|p| p.authorization != renewed).collect();
    assert_eq!(newest.len(), 5, "each run posted once with the newest token");
    assert!(newest.windows(2).all(|w| w[0].authorization == w[1].authorization), "one newest token");
    assert!(posts.len() <= 10, "no run sent its post more than twice: {}", posts.len());
    let slack = connection(stack, USER, "slack").await;
    assert_eq!(slack["connected"], json!(true), "{slack}");
}

async fn slack_refusals_fail_the_step_for_good_with_slacks_code(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let answer = run(stack, "post-retried", json!({ "channel": "C0000NOPE", "text": "hi" })).await;
    let message = failure(&answer, false);
    assert!(message.contains("channel_not_found"), "{message}");
    assert_eq!(answer["attempts"], json!(1), "not retried despite `retries: 1`: {answer}");
    assert_eq!(calls(&fake, "/api/chat.postMessage").len(), 1);

    let general = fake.channel_id("general").expect("#general");
    fake.fail_next("chat.postMessage", FakeFailure::Error("missing_scope".into()));
    let answer = run(stack, "post-retried", json!({ "channel": general, "text": "hi" })).await;
    assert!(failure(&answer, false).contains("missing_scope"), "{answer}");
    assert_eq!(answer["attempts"], json!(1), "not retried: {answer}");
    assert_eq!(calls(&fake, "/api/chat.postMessage").len(), 2);

    // A paginated action: the first page's refusal (private channels need `groups:read`, which
    // the project does not ask for) is Slack's code, not a missing items array.
    let answer = run(stack, "private-channels", json!({})).await;
    let message = failure(&answer, false);
    assert!(message.contains("missing_scope") && !message.contains("items"), "{message}");
    let list = calls(&fake, "/api/conversations.list");
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(query(&list[0]).contains(&("types".into(), "private_channel".into())));
    assert!(fake.messages().is_empty());
}

async fn slacks_transient_errors_and_rate_limits_are_retried(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let general = fake.channel_id("general").expect("#general");
    let transient = [
        (FakeFailure::InternalError, "internal_error"),
        (FakeFailure::FatalError, "fatal_error"),
        (FakeFailure::ServiceUnavailable, "service_unavailable"),
        (FakeFailure::RequestTimeout, "request_timeout"),
    ];
    for (failure_kind, code) in transient {
        fake.fail_next("chat.postMessage", failure_kind.clone());
        let answer = run(stack, "post", json!({ "channel": general, "text": "once" })).await;
        let message = failure(&answer, true);
        assert!(message.contains(code), "{message}");

        let before = calls(&fake, "/api/chat.postMessage").len();
        fake.fail_next("chat.postMessage", failure_kind);
        let answer = run(stack, "post-retried", json!({ "channel": general, "text": code })).await;
        assert_eq!(output(&answer)["channel"], json!(general), "{code}: the retry succeeds: {answer}");
        assert_eq!(calls(&fake, "/api/chat.postMessage").len(), before + 2, "{code}: sent twice");
    }

    fake.fail_next("chat.postMessage", FakeFailure::RateLimited { retry_after_secs: 1 });
    let started = Instant::now();
    let answer = run(stack, "post-retried", json!({ "channel": general, "text": "after the limit" })).await;
    assert!(output(&answer)["ts"].is_string(), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after Retry-After, not the 100ms retry_delay");
    let posted: Vec<String> = fake.messages().into_iter().filter_map(|m| m.text).collect();
    assert_eq!(posted.iter().filter(|t| *t == "after the limit").count(), 1, "{posted:?}");
    assert_eq!(posted.len(), 5, "one message per successful run: {posted:?}");
}

async fn list_channels_and_list_users_read_every_page_unless_max_pages_stops_them(stack: &TestStack) {
    let config = SlackConfig { channels: 25, users: 24, ..SlackConfig::default() };
    let fake = connected(stack, config, "").await;

    let answer = run(stack, "channels", json!({ "limit": 10 })).await;
    let out = output(&answer);
    assert_eq!((&out["pages"], &out["truncated"]), (&json!(3), &json!(false)), "{answer}");
    let ids: Vec<&str> =
        out["channels"].as_array().expect("channels").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 25, "every public channel of every page");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 25, "none twice");
    assert!(ids.contains(&fake.channel_id("channel-0025").expect("the last").as_str()));
    let pages = calls(&fake, "/api/conversations.list");
    assert_eq!(pages.len(), 3);
    assert!(!query(&pages[0]).iter().any(|(k, _)| k == "cursor"), "the first page has no cursor");
    for page in &pages[1..] {
        assert!(query(page).iter().any(|(k, v)| k == "cursor" && !v.is_empty()), "{page:?}");
        assert!(query(page).contains(&("limit".into(), "10".into())), "{page:?}");
        assert_eq!(page.method, "GET");
    }

    let answer = run(stack, "channels-capped", json!({ "limit": 10, "maxPages": 2 })).await;
    let out = output(&answer);
    assert_eq!((&out["pages"], &out["truncated"]), (&json!(2), &json!(true)), "{answer}");
    assert_eq!(out["channels"].as_array().map(Vec::len), Some(20));
    assert_eq!(calls(&fake, "/api/conversations.list").len(), 5, "stopped after two pages");

    let answer = run(stack, "users", json!({ "limit": 10 })).await;
    let out = output(&answer);
    assert_eq!((&out["pages"], &out["truncated"]), (&json!(3), &json!(false)), "{answer}");
    let users: Vec<&str> = out["users"].as_array().expect("users").iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(users.len(), 25, "24 people and the bot");
    for id in fake.user_ids() {
        assert!(users.contains(&id.as_str()), "{id}");
    }
    let user = out["users"].as_array().and_then(|u| u.first()).expect("a user");
    assert_eq!(user["profile"]["email"], json!("user1@example.com"), "emails with users:read.email: {user}");

    let answer = run(stack, "users-capped", json!({ "limit": 10, "maxPages": 1 })).await;
    let out = output(&answer);
    assert_eq!((&out["pages"], &out["truncated"]), (&json!(1), &json!(true)), "{answer}");
    assert_eq!(out["users"].as_array().map(Vec::len), Some(10));
    assert_eq!(calls(&fake, "/api/users.list").len(), 4);
    bot_bearer(&fake);
}

async fn send_direct_message_posts_in_the_apps_dm_with_the_user(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let bob = fake.user_ids()[1].clone();
    let answer = run(stack, "dm", json!({ "user": bob, "text": "Your deal closed" })).await;
    let out = output(&answer);
    let channel = out["channel"].as_str().expect("the DM's id");
    assert!(channel.starts_with('D'), "Slack answers the DM's id: {answer}");
    let ts = out["ts"].as_str().expect("the message's ts");
    assert_eq!(out["message"]["text"], json!("Your deal closed"), "{answer}");

    let posts = calls(&fake, "/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "one call: no conversations.open");
    assert_eq!(posts[0].method, "POST");
    assert_eq!(json_body(&posts[0]), json!({ "channel": bob, "text": "Your deal closed" }));
    assert!(calls(&fake, "/api/conversations.open").is_empty());
    let message = fake.messages().pop().expect("a message");
    assert_eq!((message.channel.as_str(), message.ts.as_str()), (channel, ts));
    assert_eq!(message.user, sluice_fakes::slack::BOT_USER_ID, "posted by the app");

    // The DM's id answered updates it; an unknown user is Slack's refusal.
    let answer = run(stack, "update", json!({ "channel": channel, "ts": ts, "text": "Closed: $10k" })).await;
    assert_eq!(output(&answer)["text"], json!("Closed: $10k"), "{answer}");
    let answer = run(stack, "dm", json!({ "user": "U9999999999", "text": "hi" })).await;
    assert!(failure(&answer, false).contains("channel_not_found"), "{answer}");
    bot_bearer(&fake);
}

async fn find_user_by_email_answers_the_member_or_users_not_found(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let answer = run(stack, "find", json!({ "email": "user2@example.com" })).await;
    let out = output(&answer);
    assert_eq!(out["id"], json!(fake.user_id_by_email("user2@example.com")), "{answer}");
    assert_eq!(out["user"]["profile"]["email"], json!("user2@example.com"), "{answer}");
    assert_eq!(out["user"]["real_name"], json!("User 2"), "{answer}");
    let lookups = calls(&fake, "/api/users.lookupByEmail");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].method, "GET");
    assert_eq!(query(&lookups[0]), [("email".to_string(), "user2@example.com".to_string())]);
    assert!(lookups[0].body.is_empty());

    let answer = run(stack, "find", json!({ "email": "nobody@example.com" })).await;
    let message = failure(&answer, false);
    assert!(message.contains("users_not_found"), "{message}");
    bot_bearer(&fake);
}

async fn a_posted_message_is_updated_reacted_to_and_deleted(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let general = fake.channel_id("general").expect("#general");
    let posted = run(stack, "post", json!({ "channel": general, "text": "Deal won" })).await;
    let ts = output(&posted)["ts"].as_str().expect("ts").to_string();

    let answer = run(stack, "update", json!({ "channel": general, "ts": ts, "text": "Deal won: $10k" })).await;
    let out = output(&answer);
    assert_eq!((&out["channel"], &out["ts"], &out["text"]), (&json!(general), &json!(ts), &json!("Deal won: $10k")));
    let update = calls(&fake, "/api/chat.update");
    assert_eq!(json_body(&update[0]), json!({ "channel": general, "ts": ts, "text": "Deal won: $10k" }));
    let message = fake.messages().into_iter().find(|m| m.ts == ts).expect("the message");
    assert!(message.edited && message.text.as_deref() == Some("Deal won: $10k"), "{message:?}");

    let answer = run(stack, "react", json!({ "channel": general, "ts": ts, "name": "tada" })).await;
    assert_eq!(output(&answer), &json!({ "ok": true }), "{answer}");
    let reaction = calls(&fake, "/api/reactions.add");
    assert_eq!(json_body(&reaction[0]), json!({ "channel": general, "timestamp": ts, "name": "tada" }));
    let again = run(stack, "react", json!({ "channel": general, "ts": ts, "name": "tada" })).await;
    assert!(failure(&again, false).contains("already_reacted"), "{again}");
    let message = fake.messages().into_iter().find(|m| m.ts == ts).expect("the message");
    assert_eq!(message.reactions, ["tada"]);

    let answer = run(stack, "delete", json!({ "channel": general, "ts": ts })).await;
    assert_eq!(output(&answer), &json!({ "channel": general, "ts": ts }), "{answer}");
    assert_eq!(json_body(&calls(&fake, "/api/chat.delete")[0]), json!({ "channel": general, "ts": ts }));
    assert!(fake.messages().into_iter().any(|m| m.ts == ts && m.deleted));
    let again = run(stack, "delete", json!({ "channel": general, "ts": ts })).await;
    assert!(failure(&again, false).contains("message_not_found"), "{again}");
    let missing = run(stack, "update", json!({ "channel": general, "ts": "1.000001", "text": "x" })).await;
    assert!(failure(&missing, false).contains("message_not_found"), "{missing}");
    bot_bearer(&fake);
}

/// The three calls of an upload: the upload URL asked for (its form), the bytes sent to it,
/// the completion (its JSON); the first and last with the bot token, the upload without.
fn upload_calls(fake: &FakeSlack) -> (Vec<(String, String)>, Recorded, Value) {
    let ask = calls(fake, "/api/files.getUploadURLExternal");
    assert_eq!(ask.len(), 1);
    assert_eq!(ask[0].method, "POST");
    assert_eq!(ask[0].content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = url::form_urlencoded::parse(ask[0].body.as_bytes()).into_owned().collect();
    let uploads: Vec<Recorded> = fake.requests().into_iter().filter(|r| r.path.starts_with("/upload/v1/")).collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].method, "POST");
    assert_eq!(uploads[0].authorization, None, "the upload URL gets no Slack token");
    assert!(!uploads[0].body.contains("xox") && !uploads[0].query.contains("xox"));
    let complete = calls(fake, "/api/files.completeUploadExternal");
    assert_eq!(complete.len(), 1);
    bot_bearer(fake);
    (form, uploads[0].clone(), json_body(&complete[0]))
}

async fn upload_text_file_sends_the_text_to_the_upload_url_without_the_token_and_shares_it(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let general = fake.channel_id("general").expect("#general");
    let content = "name,amount\nZoë,1200\nJosé,€300\n";
    let body = json!({
        "content": content, "filename": "deals.csv", "title": "Deals won", "channel": general, "comment": "This week",
    });
    let answer = run(stack, "upload-text", body).await;
    let out = output(&answer);
    let id = out["id"].as_str().expect("the file's id");
    assert_eq!(out["files"], json!([{ "id": id, "title": "Deals won", "name": "deals.csv", "size": content.len() }]));

    let (form, upload, complete) = upload_calls(&fake);
    let length = content.len().to_string();
    assert_eq!(form, [("filename".to_string(), "deals.csv".to_string()), ("length".to_string(), length)]);
    assert!(content.len() > content.chars().count(), "the length counts bytes, not characters");
    assert_eq!(upload.body, content, "the text as the raw body");
    assert_eq!(
        complete,
        json!({ "files": [{ "id": id, "title": "Deals won" }], "channel_id": general, "initial_comment": "This week" })
    );
    let file = fake.files().into_iter().find(|f| f.id == id).expect("the file");
    assert_eq!(file.bytes.as_deref(), Some(content.as_bytes()), "the bytes arrive intact");
    assert_eq!(file.length, content.len());
    assert!(file.completed, "{file:?}");
    assert_eq!((file.title.as_deref(), file.channel.as_deref()), (Some("Deals won"), Some(general.as_str())));
    assert_eq!(file.initial_comment.as_deref(), Some("This week"));
    let share = fake.messages().pop().expect("the share");
    assert_eq!((share.channel.as_str(), share.files.as_slice()), (general.as_str(), [id.to_string()].as_slice()));
    assert_eq!(share.text.as_deref(), Some("This week"));
}

async fn upload_file_sends_a_downloaded_binary_as_multipart_without_the_token_and_shares_it(stack: &TestStack) {
    let fake = connected(stack, SlackConfig::default(), "").await;
    let random = fake.channel_id("random").expect("#random");
    let answer = run(stack, "upload", json!({ "title": "Pipeline", "channel": random, "comment": "Q3" })).await;
    let id = output(&answer)["id"].as_str().expect("the file's id");
    assert_eq!(output(&answer)["files"][0]["title"], json!("Pipeline"), "{answer}");

    let (form, upload, complete) = upload_calls(&fake);
    let length = PNG.len().to_string();
    assert_eq!(form, [("filename".to_string(), "report.png".to_string()), ("length".to_string(), length)]);
    let content_type = upload.content_type.as_deref().unwrap_or_default();
    assert!(content_type.starts_with("multipart/form-data"), "{content_type}");
    assert!(upload.body.contains("filename=\"report.png\"") && upload.body.contains("Content-Type: image/png"));
    assert_eq!(
        complete,
        json!({ "files": [{ "id": id, "title": "Pipeline" }], "channel_id": random, "initial_comment": "Q3" })
    );
    let file = fake.files().into_iter().find(|f| f.id == id).expect("the file");
    assert_eq!(file.bytes.as_deref(), Some(PNG), "the binary arrives intact");
    assert!(file.completed, "{file:?}");
    assert_eq!((file.title.as_deref(), file.channel.as_deref()), (Some("Pipeline"), Some(random.as_str())));
    assert_eq!(file.initial_comment.as_deref(), Some("Q3"));
    let share = fake.messages().pop().expect("the share");
    assert_eq!((share.channel.as_str(), share.text.as_deref()), (random.as_str(), Some("Q3")));
}

on_both_backends! {
    the_hosted_connect_asks_the_actions_scopes_comma_joined_and_shows_the_workspace_and_installer: Duration::from_secs(30);
    rotating_tokens_are_renewed_once_per_lifetime_under_concurrent_runs: Duration::from_secs(30);
    a_token_slack_expired_early_is_renewed_once_and_the_post_sent_again: Duration::from_secs(30);
    slack_refusals_fail_the_step_for_good_with_slacks_code: Duration::from_secs(30);
    slacks_transient_errors_and_rate_limits_are_retried: Duration::from_secs(30);
    list_channels_and_list_users_read_every_page_unless_max_pages_stops_them: Duration::from_secs(30);
    send_direct_message_posts_in_the_apps_dm_with_the_user: Duration::from_secs(30);
    find_user_by_email_answers_the_member_or_users_not_found: Duration::from_secs(30);
    a_posted_message_is_updated_reacted_to_and_deleted: Duration::from_secs(30);
    upload_text_file_sends_the_text_to_the_upload_url_without_the_token_and_shares_it: Duration::from_secs(30);
    upload_file_sends_a_downloaded_binary_as_multipart_without_the_token_and_shares_it: Duration::from_secs(30);
}
