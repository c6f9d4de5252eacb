//! The Slack fake behaves as Slack's documentation says, and refuses what Slack refuses.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sluice_fakes::slack::{FakeFailure, FakeSlack, SlackConfig};

const REDIRECT: &str = "https://app.example.com/oauth/slack/callback";

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

async fn start(config: SlackConfig) -> FakeSlack {
    FakeSlack::start(config).await.expect("fake slack starts")
}

/// GETs the authorize page; answers the status and the Location's query parameters.
async fn authorize(fake: &FakeSlack, params: &[(&str, &str)]) -> (u16, HashMap<String, String>) {
    let response = client().get(fake.authorize_url()).query(params).send().await.expect("authorize");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("location is text").to_string())
        .unwrap_or_default();
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    (status, params)
}

async fn code_for(fake: &FakeSlack, scope: &str, user_scope: &str) -> String {
    let client_id = fake.config().client_id.clone();
    let (status, params) = authorize(
        fake,
        &[
            ("client_id", client_id.as_str()),
            ("scope", scope),
            ("user_scope", user_scope),
            ("redirect_uri", REDIRECT),
            ("state", "st-1"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    params.get("code").cloned().expect("a code")
}

async fn access(fake: &FakeSlack, form: &[(&str, &str)]) -> Value {
    let response = client().post(fake.token_url()).form(form).send().await.expect("oauth.v2.access");
    assert_eq!(response.status().as_u16(), 200, "Slack answers errors with HTTP 200");
    response.json().await.expect("json")
}

async fn exchange(fake: &FakeSlack, code: &str) -> Value {
    let config = fake.config().clone();
    access(
        fake,
        &[
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await
}

async fn refresh(fake: &FakeSlack, refresh_token: &str) -> Value {
    let config = fake.config().clone();
    access(
        fake,
        &[
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Calls a method with a JSON body and the token as a Bearer header.
async fn call(fake: &FakeSlack, token: &str, method: &str, body: Value) -> Value {
    let response = client()
        .post(format!("{}/{method}", fake.api_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("api call");
    response.json().await.expect("json")
}

/// Calls a method with a query string and the token as a Bearer header.
async fn get(fake: &FakeSlack, token: &str, method: &str, query: &[(&str, &str)]) -> Value {
    let response = client()
        .get(format!("{}/{method}", fake.api_url()))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .expect("api call");
    response.json().await.expect("json")
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

#[tokio::test]
async fn space_joined_scopes_redirect_back_with_invalid_scope_and_the_state() {
    let fake = start(SlackConfig::default()).await;
    let client_id = fake.config().client_id.clone();
    let (status, params) = authorize(
        &fake,
        &[
            ("client_id", client_id.as_str()),
            ("scope", "chat:write channels:read"),
            ("redirect_uri", REDIRECT),
            ("state", "abc"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(params.get("error").map(String::as_str), Some("invalid_scope"));
    assert_eq!(params.get("state").map(String::as_str), Some("abc"));
    assert!(!params.contains_key("code"));
    let recorded = fake.last_authorize_query().expect("recorded");
    assert_eq!(recorded.get("scope").map(String::as_str), Some("chat:write channels:read"));
}

#[tokio::test]
async fn an_unknown_scope_or_no_scope_at_all_is_invalid_scope() {
    let fake = start(SlackConfig::default()).await;
    let client_id = fake.config().client_id.clone();
    for scope in ["chat:write,chat:shout", ""] {
        let (status, params) =
            authorize(&fake, &[("client_id", client_id.as_str()), ("scope", scope), ("redirect_uri", REDIRECT)]).await;
        assert_eq!(status, 302, "{scope}");
        assert_eq!(params.get("error").map(String::as_str), Some("invalid_scope"), "{scope}");
    }
}

#[tokio::test]
async fn an_unknown_client_or_an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let fake = start(SlackConfig {
        redirect_urls: vec!["https://app.example.com/oauth".to_string()],
        ..SlackConfig::default()
    })
    .await;
    let (status, _) = authorize(&fake, &[("client_id", "nope"), ("scope", "chat:write")]).await;
    assert_eq!(status, 400);
    let client_id = fake.config().client_id.clone();
    let (status, _) = authorize(
        &fake,
        &[("client_id", client_id.as_str()), ("scope", "chat:write"), ("redirect_uri", "https://evil.example.com/cb")],
    )
    .await;
    assert_eq!(status, 400);
    // A subdirectory of a registered Redirect URL is accepted.
    let (status, params) = authorize(
        &fake,
        &[
            ("client_id", client_id.as_str()),
            ("scope", "chat:write"),
            ("redirect_uri", "https://app.example.com/oauth/slack"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert!(params.contains_key("code"));
}

#[tokio::test]
async fn a_code_is_exchanged_for_a_bot_token_in_the_documented_shape() {
    let fake = start(SlackConfig::default()).await;
    let code = code_for(&fake, "chat:write,channels:read", "").await;
    let body = exchange(&fake, &code).await;
    assert_eq!(body["ok"], true, "{body}");
    assert!(body["access_token"].as_str().expect("token").starts_with("xoxb-"));
    assert_eq!(body["token_type"], "bot");
    assert_eq!(body["scope"], "channels:read,chat:write");
    assert_eq!(body["bot_user_id"], sluice_fakes::slack::BOT_USER_ID);
    assert_eq!(body["app_id"], sluice_fakes::slack::APP_ID);
    assert_eq!(body["team"]["id"], fake.config().team_id);
    assert!(body["enterprise"].is_null());
    assert!(body["authed_user"]["id"].is_string());
    assert!(body["authed_user"].get("access_token").is_none(), "no user token without user_scope");
    assert!(body.get("refresh_token").is_none() && body.get("expires_in").is_none(), "no rotation");
    assert_eq!(fake.token_requests("authorization_code"), 1);
}

#[tokio::test]
async fn a_code_is_single_use() {
    let fake = start(SlackConfig::default()).await;
    let code = code_for(&fake, "chat:write", "").await;
    assert_eq!(exchange(&fake, &code).await["ok"], true);
    let again = exchange(&fake, &code).await;
    assert_eq!(again, json!({"ok": false, "error": "invalid_code"}));
}

#[tokio::test]
async fn the_exchange_checks_client_id_secret_and_redirect_uri() {
    let fake = start(SlackConfig::default()).await;
    let code = code_for(&fake, "chat:write", "").await;
    let config = fake.config().clone();
    let wrong_secret = access(
        &fake,
        &[
            ("client_id", config.client_id.as_str()),
            ("client_secret", "wrong"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(wrong_secret["error"], "bad_client_secret");
    let wrong_client = access(
        &fake,
        &[
            ("client_id", "999.999"),
            ("client_secret", config.client_secret.as_str()),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(wrong_client["error"], "invalid_client_id");
    let other_redirect = access(
        &fake,
        &[
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("code", &code),
            ("redirect_uri", "https://app.example.com/other"),
        ],
    )
    .await;
    assert_eq!(other_redirect["error"], "bad_redirect_uri");
    let no_redirect = access(
        &fake,
        &[("client_id", config.client_id.as_str()), ("client_secret", config.client_secret.as_str()), ("code", &code)],
    )
    .await;
    assert_eq!(no_redirect["error"], "bad_redirect_uri", "required when sent to authorize");
    let unknown_grant = access(
        &fake,
        &[
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("grant_type", "password"),
        ],
    )
    .await;
    assert_eq!(unknown_grant["error"], "invalid_grant_type");
    // The failed attempts did not spend the code.
    assert_eq!(exchange(&fake, &code).await["ok"], true);
}

#[tokio::test]
async fn client_credentials_by_http_basic_are_accepted() {
    let fake = start(SlackConfig::default()).await;
    let code = code_for(&fake, "chat:write", "").await;
    let config = fake.config().clone();
    let response = client()
        .post(fake.token_url())
        .basic_auth(&config.client_id, Some(&config.client_secret))
        .form(&[("code", code.as_str()), ("redirect_uri", REDIRECT)])
        .send()
        .await
        .expect("oauth.v2.access");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["ok"], true, "{body}");
}

#[tokio::test]
async fn a_pkce_challenge_requires_the_matching_verifier() {
    let fake = start(SlackConfig::default()).await;
    let verifier = "a-verifier-of-at-least-forty-three-characters-0123456789";
    let client_id = fake.config().client_id.clone();
    let challenge = s256(verifier);
    let (_, params) = authorize(
        &fake,
        &[
            ("client_id", client_id.as_str()),
            ("scope", "chat:write"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let code = params.get("code").cloned().expect("code");
    let config = fake.config().clone();
    let base = [
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    assert_eq!(access(&fake, &base).await["error"], "invalid_code_verifier");
    let mut wrong = base.to_vec();
    wrong.push(("code_verifier", "not-the-verifier"));
    assert_eq!(access(&fake, &wrong).await["error"], "invalid_code_verifier");
    let mut right = base.to_vec();
    right.push(("code_verifier", verifier));
    assert_eq!(access(&fake, &right).await["ok"], true);
}

#[tokio::test]
async fn user_scopes_give_a_user_token_under_authed_user() {
    let fake = start(SlackConfig::default()).await;
    let code = code_for(&fake, "", "search:read,users:read").await;
    let body = exchange(&fake, &code).await;
    assert_eq!(body["ok"], true, "{body}");
    assert!(body.get("access_token").is_none(), "no bot token without bot scopes");
    let user = &body["authed_user"];
    assert!(user["access_token"].as_str().expect("user token").starts_with("xoxp-"));
    assert_eq!(user["token_type"], "user");
    assert_eq!(user["scope"], "search:read,users:read");
}

#[tokio::test]
async fn reinstalling_adds_scopes_to_the_same_non_rotating_token() {
    let fake = start(SlackConfig::default()).await;
    let first = exchange(&fake, &code_for(&fake, "chat:write", "").await).await;
    let second = exchange(&fake, &code_for(&fake, "channels:read", "").await).await;
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(second["scope"], "channels:read,chat:write");
}

#[tokio::test]
async fn rotation_refresh_answers_new_tokens_and_the_used_refresh_token_stops_working() {
    let fake = start(SlackConfig { rotation: Some(Duration::from_secs(60)), ..SlackConfig::default() }).await;
    let body = exchange(&fake, &code_for(&fake, "chat:write", "").await).await;
    let first_access = body["access_token"].as_str().expect("access").to_string();
    let first_refresh = body["refresh_token"].as_str().expect("refresh").to_string();
    assert!(first_access.starts_with("xoxe.xoxb-1-"), "{first_access}");
    assert!(first_refresh.starts_with("xoxe-1-"), "{first_refresh}");
    assert_eq!(body["expires_in"], 60);

    let refreshed = refresh(&fake, &first_refresh).await;
    assert_eq!(refreshed["ok"], true, "{refreshed}");
    let second_access = refreshed["access_token"].as_str().expect("access");
    let second_refresh = refreshed["refresh_token"].as_str().expect("refresh");
    assert_ne!(second_access, first_access);
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(refreshed["token_type"], "bot");
    assert_eq!(refreshed["expires_in"], 60);

    assert_eq!(refresh(&fake, &first_refresh).await, json!({"ok": false, "error": "invalid_refresh_token"}));
    // "Calling oauth.v2.access will not immediately invalidate your existing access token."
    assert_eq!(call(&fake, &first_access, "auth.test", json!({})).await["ok"], true);
    assert_eq!(call(&fake, second_access, "auth.test", json!({})).await["ok"], true);
    assert_eq!(fake.token_requests("refresh_token"), 2);
}

#[tokio::test]
async fn a_refresh_token_can_be_reused_within_the_configured_grace_period() {
    let fake = start(SlackConfig {
        rotation: Some(Duration::from_secs(60)),
        refresh_grace: Duration::from_secs(30),
        ..SlackConfig::default()
    })
    .await;
    let body = exchange(&fake, &code_for(&fake, "chat:write", "").await).await;
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    assert_eq!(refresh(&fake, &token).await["ok"], true);
    assert_eq!(refresh(&fake, &token).await["ok"], true);
}

#[tokio::test]
async fn at_most_two_rotated_access_tokens_stay_active() {
    let fake = start(SlackConfig { rotation: Some(Duration::from_secs(60)), ..SlackConfig::default() }).await;
    let body = exchange(&fake, &code_for(&fake, "chat:write", "").await).await;
    let first = body["access_token"].as_str().expect("access").to_string();
    let second = refresh(&fake, body["refresh_token"].as_str().expect("refresh")).await;
    let third = refresh(&fake, second["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(call(&fake, &first, "auth.test", json!({})).await["error"], "invalid_auth");
    for token in [&second["access_token"], &third["access_token"]] {
        assert_eq!(call(&fake, token.as_str().expect("token"), "auth.test", json!({})).await["ok"], true);
    }
}

#[tokio::test]
async fn a_rotating_token_expires_after_its_lifetime_and_a_refresh_recovers() {
    let fake = start(SlackConfig { rotation: Some(Duration::from_secs(1)), ..SlackConfig::default() }).await;
    let body = exchange(&fake, &code_for(&fake, "chat:write", "").await).await;
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().expect("access");
    assert_eq!(call(&fake, token, "auth.test", json!({})).await["ok"], true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&fake, token, "auth.test", json!({})).await, json!({"ok": false, "error": "token_expired"}));
    let refreshed = refresh(&fake, body["refresh_token"].as_str().expect("refresh")).await;
    let fresh = refreshed["access_token"].as_str().expect("access");
    assert_eq!(call(&fake, fresh, "auth.test", json!({})).await["ok"], true);
}

#[tokio::test]
async fn expire_all_tokens_makes_calls_answer_token_expired() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    fake.expire_all_tokens();
    assert_eq!(call(&fake, &token, "auth.test", json!({})).await["error"], "token_expired");
}

#[tokio::test]
async fn unknown_missing_and_misplaced_tokens_are_refused() {
    let fake = start(SlackConfig::default()).await;
    assert_eq!(call(&fake, "xoxb-not-a-token", "auth.test", json!({})).await["error"], "invalid_auth");
    let token = fake.install(&["chat:write"]);
    let no_header: Value = client()
        .post(format!("{}/auth.test", fake.api_url()))
        .query(&[("token", token.as_str())])
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(no_header["error"], "not_authed", "tokens cannot be sent as a query parameter");
    let in_json: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .json(&json!({"token": token, "channel": "C0000000001", "text": "hi"}))
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(in_json["error"], "not_authed", "nor as an attribute of a JSON body");
    let in_form: Value = client()
        .post(format!("{}/auth.test", fake.api_url()))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(in_form["ok"], true, "a POST body token is accepted");
    fake.revoke_all_tokens();
    assert_eq!(call(&fake, &token, "auth.test", json!({})).await["error"], "invalid_auth");
}

#[tokio::test]
async fn a_method_without_its_scope_answers_missing_scope_with_needed_and_provided() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["channels:read", "users:read"]);
    let body = call(&fake, &token, "chat.postMessage", json!({"channel": "C0000000001", "text": "hi"})).await;
    assert_eq!(
        body,
        json!({"ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "channels:read,users:read"})
    );
}

#[tokio::test]
async fn post_message_answers_channel_ts_and_message_and_is_recorded() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    let general = fake.channel_id("general").expect("general");
    let response = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(&token)
        .json(&json!({"channel": general, "text": "Deal won", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deal won*"}}]}))
        .send()
        .await
        .expect("call");
    assert!(response.headers().get("x-oauth-scopes").is_some());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["channel"], general);
    assert_eq!(body["message"]["text"], "Deal won");
    let ts = body["ts"].as_str().expect("ts").to_string();
    let reply =
        call(&fake, &token, "chat.postMessage", json!({"channel": general, "text": "details", "thread_ts": ts})).await;
    assert_eq!(reply["message"]["thread_ts"], ts.as_str());
    let messages = fake.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].text.as_deref(), Some("Deal won"));
    assert!(messages[0].blocks.is_some());
    assert_eq!(messages[1].thread_ts.as_deref(), Some(ts.as_str()));
}

#[tokio::test]
async fn post_message_with_form_encoded_blocks_is_accepted() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    let body: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(&token)
        .form(&[("channel", "#general"), ("blocks", r#"[{"type":"divider"}]"#)])
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(body["ok"], true, "{body}");
    let bad: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(&token)
        .form(&[("channel", "#general"), ("blocks", "not json")])
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(bad["error"], "invalid_blocks_format");
}

#[tokio::test]
async fn post_message_refuses_no_text_unknown_channels_and_malformed_json() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    let general = fake.channel_id("general").expect("general");
    assert_eq!(call(&fake, &token, "chat.postMessage", json!({"channel": general})).await["error"], "no_text");
    assert_eq!(
        call(&fake, &token, "chat.postMessage", json!({"channel": "C9999999999", "text": "x"})).await["error"],
        "channel_not_found"
    );
    let send = |body: &'static str, content_type: &'static str| {
        client()
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let invalid: Value = send("{not json", "application/json").await.expect("call").json().await.expect("json");
    assert_eq!(invalid["error"], "invalid_json");
    let array: Value = send("[1,2]", "application/json").await.expect("call").json().await.expect("json");
    assert_eq!(array["error"], "json_not_object");
    let xml: Value = send("<x/>", "application/xml").await.expect("call").json().await.expect("json");
    assert_eq!(xml["error"], "invalid_post_type");
}

#[tokio::test]
async fn a_user_id_as_channel_posts_to_the_apps_dm_with_that_user() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    let user = fake.user_ids()[1].clone();
    let body = call(&fake, &token, "chat.postMessage", json!({"channel": user, "text": "psst"})).await;
    assert_eq!(body["ok"], true, "{body}");
    let dm = body["channel"].as_str().expect("channel");
    assert!(dm.starts_with('D'), "{dm}");
    let opened = call(&fake, &token, "conversations.open", json!({"users": user})).await;
    assert_eq!(opened["error"], "missing_scope", "conversations.open needs im:write");
    let token = fake.install(&["im:write"]);
    let opened = call(&fake, &token, "conversations.open", json!({"users": user})).await;
    assert_eq!(opened["channel"]["id"], dm);
    assert_eq!(opened["already_open"], true);
}

#[tokio::test]
async fn a_bot_not_in_the_channel_needs_chat_write_public() {
    let fake = start(SlackConfig { bot_in_channels: false, ..SlackConfig::default() }).await;
    let token = fake.install(&["chat:write"]);
    let general = fake.channel_id("general").expect("general");
    let private = fake.channel_id("private-0001").expect("private");
    assert_eq!(
        call(&fake, &token, "chat.postMessage", json!({"channel": general, "text": "x"})).await["error"],
        "not_in_channel"
    );
    assert_eq!(
        call(&fake, &token, "chat.postMessage", json!({"channel": private, "text": "x"})).await["error"],
        "channel_not_found"
    );
    let token = fake.install(&["chat:write.public"]);
    assert_eq!(call(&fake, &token, "chat.postMessage", json!({"channel": general, "text": "x"})).await["ok"], true);
}

#[tokio::test]
async fn update_delete_and_reactions_act_on_the_posted_message() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write", "reactions:write"]);
    let general = fake.channel_id("general").expect("general");
    let posted = call(&fake, &token, "chat.postMessage", json!({"channel": general, "text": "v1"})).await;
    let ts = posted["ts"].as_str().expect("ts");
    let updated = call(&fake, &token, "chat.update", json!({"channel": general, "ts": ts, "text": "v2"})).await;
    assert_eq!(updated["ok"], true, "{updated}");
    assert_eq!(updated["text"], "v2");
    let reaction = json!({"channel": general, "timestamp": ts, "name": "tada"});
    assert_eq!(call(&fake, &token, "reactions.add", reaction.clone()).await["ok"], true);
    assert_eq!(call(&fake, &token, "reactions.add", reaction).await["error"], "already_reacted");
    let colons = json!({"channel": general, "timestamp": ts, "name": ":tada:"});
    assert_eq!(call(&fake, &token, "reactions.add", colons).await["error"], "invalid_name");
    let missing = json!({"channel": general, "timestamp": "1.000001", "name": "tada"});
    assert_eq!(call(&fake, &token, "reactions.add", missing).await["error"], "message_not_found");
    let deleted = call(&fake, &token, "chat.delete", json!({"channel": general, "ts": ts})).await;
    assert_eq!(deleted, json!({"ok": true, "channel": general, "ts": ts}));
    assert_eq!(
        call(&fake, &token, "chat.delete", json!({"channel": general, "ts": ts})).await["error"],
        "message_not_found"
    );
    let message = &fake.messages()[0];
    assert_eq!((message.text.as_deref(), message.edited, message.deleted), (Some("v2"), true, true));
    assert_eq!(message.reactions, vec!["tada".to_string()]);
}

#[tokio::test]
async fn conversations_list_paginates_with_cursors_and_ends_with_an_empty_cursor() {
    let fake = start(SlackConfig { channels: 2500, ..SlackConfig::default() }).await;
    let token = fake.install(&["channels:read"]);
    let first = get(&fake, &token, "conversations.list", &[]).await;
    assert_eq!(first["channels"].as_array().expect("channels").len(), 100, "default limit");
    let mut cursor = String::new();
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "1000")];
        if !cursor.is_empty() {
            query.push(("cursor", cursor.as_str()));
        }
        let page = get(&fake, &token, "conversations.list", &query).await;
        assert_eq!(page["ok"], true, "{page}");
        seen += page["channels"].as_array().expect("channels").len();
        pages += 1;
        cursor = page["response_metadata"]["next_cursor"].as_str().expect("next_cursor is a string").to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!((seen, pages), (2500, 3));
    let capped = get(&fake, &token, "conversations.list", &[("limit", "5000")]).await;
    assert_eq!(capped["channels"].as_array().expect("channels").len(), 1000);
    assert_eq!(get(&fake, &token, "conversations.list", &[("cursor", "bm9wZQ==")]).await["error"], "invalid_cursor");
    assert_eq!(get(&fake, &token, "conversations.list", &[("limit", "ten")]).await["error"], "invalid_limit");
}

#[tokio::test]
async fn conversations_list_needs_the_scope_of_each_requested_type() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["channels:read"]);
    let body = get(&fake, &token, "conversations.list", &[("types", "public_channel,private_channel")]).await;
    assert_eq!(body["error"], "missing_scope");
    assert_eq!(body["needed"], "groups:read");
    assert_eq!(get(&fake, &token, "conversations.list", &[("types", "secret")]).await["error"], "invalid_types");
    let token = fake.install(&["groups:read"]);
    let body = get(&fake, &token, "conversations.list", &[("types", "public_channel,private_channel")]).await;
    assert_eq!(body["channels"].as_array().expect("channels").len(), 3);
}

#[tokio::test]
async fn users_list_paginates_and_shows_emails_only_with_users_read_email() {
    let fake = start(SlackConfig { users: 5, ..SlackConfig::default() }).await;
    let token = fake.install(&["users:read"]);
    let page = get(&fake, &token, "users.list", &[("limit", "4")]).await;
    assert_eq!(page["members"].as_array().expect("members").len(), 4);
    assert!(page["members"][0]["profile"].get("email").is_none());
    let cursor = page["response_metadata"]["next_cursor"].as_str().expect("cursor").to_string();
    let last = get(&fake, &token, "users.list", &[("limit", "4"), ("cursor", cursor.as_str())]).await;
    assert_eq!(last["members"].as_array().expect("members").len(), 2, "5 users and the bot");
    assert_eq!(last["response_metadata"]["next_cursor"], "");
    let token = fake.install(&["users:read.email"]);
    let page = get(&fake, &token, "users.list", &[]).await;
    assert_eq!(page["members"][0]["profile"]["email"], "user1@example.com");
}

#[tokio::test]
async fn lookup_by_email_finds_a_user_or_answers_users_not_found() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["users:read.email"]);
    let found = get(&fake, &token, "users.lookupByEmail", &[("email", "user2@example.com")]).await;
    assert_eq!(found["user"]["id"], fake.user_ids()[1]);
    let missing = get(&fake, &token, "users.lookupByEmail", &[("email", "nobody@example.com")]).await;
    assert_eq!(missing, json!({"ok": false, "error": "users_not_found"}));
}

#[tokio::test]
async fn the_external_upload_flow_stores_the_bytes_and_shares_the_file() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["files:write", "chat:write"]);
    let general = fake.channel_id("general").expect("general");
    let bytes = b"id,amount\n1,42\n".to_vec();
    let length = bytes.len().to_string();
    let ticket: Value = client()
        .post(format!("{}/files.getUploadURLExternal", fake.api_url()))
        .bearer_auth(&token)
        .form(&[("filename", "report.csv"), ("length", length.as_str())])
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(ticket["ok"], true, "{ticket}");
    let upload_url = ticket["upload_url"].as_str().expect("upload_url");
    assert!(upload_url.starts_with(&fake.base_url));
    let file_id = ticket["file_id"].as_str().expect("file_id");

    let short = client().post(upload_url).body(b"id".to_vec()).send().await.expect("upload");
    assert_eq!(short.status().as_u16(), 400, "the length must be the announced one");
    let uploaded = client().post(upload_url).body(bytes.clone()).send().await.expect("upload");
    assert_eq!(uploaded.status().as_u16(), 200);

    let done = call(
        &fake,
        &token,
        "files.completeUploadExternal",
        json!({"files": [{"id": file_id, "title": "Report"}], "channel_id": general, "initial_comment": "Here it is"}),
    )
    .await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["files"][0]["id"], file_id);
    let file = fake.files().into_iter().find(|f| f.id == file_id).expect("file");
    assert_eq!(file.bytes.as_deref(), Some(bytes.as_slice()));
    assert_eq!(file.title.as_deref(), Some("Report"));
    assert_eq!(file.channel.as_deref(), Some(general.as_str()));
    assert!(file.completed);
    let message = fake.messages().pop().expect("the share message");
    assert_eq!(message.text.as_deref(), Some("Here it is"));
    assert_eq!(message.files, vec![file_id.to_string()]);
}

#[tokio::test]
async fn a_multipart_upload_is_accepted_and_unknown_files_are_not_completed() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["files:write"]);
    let ticket = call(&fake, &token, "files.getUploadURLExternal", json!({"filename": "a.txt", "length": 5})).await;
    let upload_url = ticket["upload_url"].as_str().expect("upload_url");
    let file_id = ticket["file_id"].as_str().expect("file_id");
    let boundary = "XyZ123";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    );
    let response = client()
        .post(upload_url)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 200);
    let never_uploaded =
        call(&fake, &token, "files.getUploadURLExternal", json!({"filename": "b.txt", "length": 3})).await;
    let unknown =
        call(&fake, &token, "files.completeUploadExternal", json!({"files": [{"id": never_uploaded["file_id"]}]}))
            .await;
    assert_eq!(unknown["error"], "file_not_found");
    let zero = call(&fake, &token, "files.getUploadURLExternal", json!({"filename": "c.txt", "length": 0})).await;
    assert_eq!(zero["error"], "missing_argument");
    let done = call(&fake, &token, "files.completeUploadExternal", json!({"files": [{"id": file_id}]})).await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(fake.files()[0].bytes.as_deref(), Some(b"hello".as_slice()));
}

#[tokio::test]
async fn the_retired_files_upload_answers_method_deprecated_and_unknown_methods_404() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["files:write"]);
    let body: Value = client()
        .post(format!("{}/files.upload", fake.api_url()))
        .bearer_auth(&token)
        .form(&[("content", "hello"), ("channels", "C0000000001")])
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(body, json!({"ok": false, "error": "method_deprecated"}));
    let unknown =
        client().post(format!("{}/chat.shout", fake.api_url())).bearer_auth(&token).send().await.expect("call");
    assert_eq!(unknown.status().as_u16(), 404);
    let unknown: Value = unknown.json().await.expect("json");
    assert_eq!(unknown["error"], "unknown_method");
}

#[tokio::test]
async fn fail_next_answers_429_with_retry_after_then_transient_errors_then_recovers() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    fake.fail_next("chat.postMessage", FakeFailure::RateLimited { retry_after_secs: 7 });
    fake.fail_next("chat.postMessage", FakeFailure::InternalError);
    fake.fail_next("chat.postMessage", FakeFailure::ServiceUnavailable);
    let request = || {
        client()
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .bearer_auth(&token)
            .json(&json!({"channel": "C0000000001", "text": "retry me"}))
            .send()
    };
    let limited = request().await.expect("call");
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    assert_eq!(limited.json::<Value>().await.expect("json")["error"], "ratelimited");
    let internal: Value = request().await.expect("call").json().await.expect("json");
    assert_eq!(internal, json!({"ok": false, "error": "internal_error"}));
    let unavailable: Value = request().await.expect("call").json().await.expect("json");
    assert_eq!(unavailable["error"], "service_unavailable");
    let ok: Value = request().await.expect("call").json().await.expect("json");
    assert_eq!(ok["ok"], true);
    assert_eq!(fake.messages().len(), 1, "failed calls post nothing");
}

#[tokio::test]
async fn fail_next_can_fail_the_token_endpoint_too() {
    let fake = start(SlackConfig::default()).await;
    let code = code_for(&fake, "chat:write", "").await;
    fake.fail_next("oauth.v2.access", FakeFailure::FatalError);
    assert_eq!(exchange(&fake, &code).await["error"], "fatal_error");
    assert_eq!(exchange(&fake, &code).await["ok"], true);
}

#[tokio::test]
async fn a_denied_authorization_redirects_with_access_denied() {
    let fake = start(SlackConfig::default()).await;
    fake.deny_next_authorization();
    let client_id = fake.config().client_id.clone();
    let (status, params) = authorize(
        &fake,
        &[("client_id", client_id.as_str()), ("scope", "chat:write"), ("redirect_uri", REDIRECT), ("state", "s")],
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(params.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(params.get("state").map(String::as_str), Some("s"));
}

#[tokio::test]
async fn every_request_is_recorded_with_its_authorization_and_body() {
    let fake = start(SlackConfig::default()).await;
    let token = fake.install(&["chat:write"]);
    call(&fake, &token, "chat.postMessage", json!({"channel": "C0000000001", "text": "logged"})).await;
    let last = fake.requests().pop().expect("a request");
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/api/chat.postMessage");
    assert_eq!(last.authorization, Some(format!("Bearer {token}")));
    assert!(last.body.contains("logged"));
}
