//! The Google fake (OAuth 2.0 web server flow + Calendar API v3) behaves as Google's documentation
//! says, and refuses what Google refuses.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sluice_fakes::google::{FakeFailure, FakeGoogle, GoogleConfig};

const REDIRECT: &str = "https://app.example.com/oauth/google/callback";
const EVENTS: &str = "https://www.googleapis.com/auth/calendar.events";
const READONLY: &str = "https://www.googleapis.com/auth/calendar.readonly";

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

async fn start(config: GoogleConfig) -> FakeGoogle {
    FakeGoogle::start(config).await.expect("fake google starts")
}

struct Authorized {
    status: u16,
    params: HashMap<String, String>,
    body: String,
}

async fn authorize(fake: &FakeGoogle, extra: &[(&str, &str)]) -> Authorized {
    let client_id = fake.config().client_id.clone();
    let mut query = vec![
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", EVENTS),
        ("state", "st-1"),
    ];
    for (key, value) in extra {
        query.retain(|(k, _)| k != key);
        query.push((key, value));
    }
    query.retain(|(_, v)| !v.is_empty());
    let response = client().get(fake.authorize_url()).query(&query).send().await.expect("authorize");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("location is text").to_string())
        .unwrap_or_default();
    let body = response.text().await.expect("body");
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    Authorized { status, params: url::form_urlencoded::parse(query.as_bytes()).into_owned().collect(), body }
}

async fn token_request(fake: &FakeGoogle, form: &[(&str, &str)]) -> (u16, Value) {
    let response = client().post(fake.token_url()).form(form).send().await.expect("token");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn exchange(fake: &FakeGoogle, code: &str) -> (u16, Value) {
    let config = fake.config().clone();
    token_request(
        fake,
        &[
            ("code", code),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("redirect_uri", REDIRECT),
            ("grant_type", "authorization_code"),
        ],
    )
    .await
}

/// Authorizes with `extra` and exchanges the code.
async fn connect(fake: &FakeGoogle, extra: &[(&str, &str)]) -> Value {
    let authorized = authorize(fake, extra).await;
    let code = authorized.params.get("code").cloned().expect("a code");
    let (status, body) = exchange(fake, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(fake: &FakeGoogle, refresh_token: &str) -> (u16, Value) {
    let config = fake.config().clone();
    token_request(
        fake,
        &[
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("refresh_token", refresh_token),
            ("grant_type", "refresh_token"),
        ],
    )
    .await
}

async fn api(fake: &FakeGoogle, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().request(method, format!("{}{path}", fake.api_url())).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("api call");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json") };
    (status, value)
}

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

fn event(summary: &str, start: &str, end: &str) -> Value {
    json!({"summary": summary, "start": {"dateTime": start}, "end": {"dateTime": end}})
}

#[tokio::test]
async fn comma_joined_scopes_get_an_invalid_scope_error_page() {
    let fake = start(GoogleConfig::default()).await;
    let scope = format!("{EVENTS},{READONLY}");
    let answer = authorize(&fake, &[("scope", scope.as_str())]).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("invalid_scope"), "{}", answer.body);
    assert!(answer.params.is_empty(), "no redirect");
    let space_joined = format!("{EVENTS} {READONLY}");
    assert_eq!(authorize(&fake, &[("scope", space_joined.as_str())]).await.status, 302);
}

#[tokio::test]
async fn missing_parameters_unknown_clients_and_unregistered_redirects_get_error_pages() {
    let fake = start(GoogleConfig { redirect_uris: vec![REDIRECT.to_string()], ..GoogleConfig::default() }).await;
    let no_client = authorize(&fake, &[("client_id", "")]).await;
    assert_eq!(no_client.status, 400);
    assert!(no_client.body.contains("invalid_request"));
    let unknown = authorize(&fake, &[("client_id", "someone-else.apps.googleusercontent.com")]).await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("invalid_client"));
    let mismatch = authorize(&fake, &[("redirect_uri", "https://app.example.com/oauth/google/callback/")]).await;
    assert_eq!(mismatch.status, 400, "the trailing slash must match too");
    assert!(mismatch.body.contains("redirect_uri_mismatch"));
    let no_scope = authorize(&fake, &[("scope", "")]).await;
    assert_eq!(no_scope.status, 400);
    assert!(no_scope.body.contains("invalid_request"));
    let no_response_type = authorize(&fake, &[("response_type", "")]).await;
    assert_eq!(no_response_type.status, 400);
    let bad_access_type = authorize(&fake, &[("access_type", "forever")]).await;
    assert_eq!(bad_access_type.status, 400);
}

#[tokio::test]
async fn a_code_and_the_state_come_back_and_the_exchange_answers_the_documented_fields() {
    let fake = start(GoogleConfig::default()).await;
    let authorized = authorize(&fake, &[("access_type", "offline")]).await;
    assert_eq!(authorized.status, 302);
    assert_eq!(authorized.params.get("state").map(String::as_str), Some("st-1"));
    let code = authorized.params.get("code").cloned().expect("code");
    let (status, body) = exchange(&fake, &code).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().expect("access").starts_with("ya29."));
    assert!(body["refresh_token"].as_str().expect("refresh").starts_with("1//"));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["scope"], EVENTS);
    assert_eq!(fake.token_requests("authorization_code"), 1);
}

#[tokio::test]
async fn without_access_type_offline_there_is_no_refresh_token() {
    let fake = start(GoogleConfig::default()).await;
    let body = connect(&fake, &[]).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn a_reconnect_without_prompt_consent_gets_no_refresh_token() {
    let fake = start(GoogleConfig::default()).await;
    let first = connect(&fake, &[("access_type", "offline")]).await;
    assert!(first["refresh_token"].is_string(), "first consent");
    let again = connect(&fake, &[("access_type", "offline")]).await;
    assert!(again.get("refresh_token").is_none(), "already consented: {again}");
    let forced = connect(&fake, &[("access_type", "offline"), ("prompt", "consent")]).await;
    assert!(forced["refresh_token"].is_string(), "prompt=consent shows the consent screen again");
}

#[tokio::test]
async fn a_user_who_already_consented_gets_no_refresh_token_unless_prompted() {
    let fake = start(GoogleConfig { already_consented: true, ..GoogleConfig::default() }).await;
    assert!(connect(&fake, &[("access_type", "offline")]).await.get("refresh_token").is_none());
    assert!(connect(&fake, &[("access_type", "offline"), ("prompt", "consent")]).await["refresh_token"].is_string());
}

#[tokio::test]
async fn prompt_none_when_consent_is_needed_redirects_with_consent_required() {
    let fake = start(GoogleConfig::default()).await;
    let answer = authorize(&fake, &[("prompt", "none")]).await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.params.get("error").map(String::as_str), Some("consent_required"));
}

#[tokio::test]
async fn include_granted_scopes_adds_the_scopes_granted_before() {
    let fake = start(GoogleConfig::default()).await;
    connect(&fake, &[("scope", READONLY)]).await;
    let body = connect(&fake, &[("include_granted_scopes", "true")]).await;
    assert_eq!(body["scope"], format!("{EVENTS} {READONLY}"));
}

#[tokio::test]
async fn a_code_is_single_use() {
    let fake = start(GoogleConfig::default()).await;
    let code = authorize(&fake, &[]).await.params.get("code").cloned().expect("code");
    assert_eq!(exchange(&fake, &code).await.0, 200);
    let (status, body) = exchange(&fake, &code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn the_exchange_checks_the_client_the_redirect_uri_and_the_grant_type() {
    let fake = start(GoogleConfig::default()).await;
    let code = authorize(&fake, &[]).await.params.get("code").cloned().expect("code");
    let config = fake.config().clone();
    let (status, body) = token_request(
        &fake,
        &[
            ("code", code.as_str()),
            ("client_id", config.client_id.as_str()),
            ("client_secret", "wrong"),
            ("redirect_uri", REDIRECT),
            ("grant_type", "authorization_code"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let (status, body) = token_request(
        &fake,
        &[
            ("code", code.as_str()),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("redirect_uri", "https://app.example.com/elsewhere"),
            ("grant_type", "authorization_code"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("redirect_uri_mismatch")));
    let (status, body) = token_request(
        &fake,
        &[
            ("code", code.as_str()),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("redirect_uri", REDIRECT),
            ("grant_type", "authorisation_code"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    let json_body = client()
        .post(fake.token_url())
        .json(&json!({"code": code, "client_id": config.client_id, "grant_type": "authorization_code"}))
        .send()
        .await
        .expect("token");
    assert_eq!(json_body.status().as_u16(), 400, "the token endpoint takes a form");
    assert_eq!(exchange(&fake, &code).await.0, 200, "failed attempts did not spend the code");
}

#[tokio::test]
async fn a_pkce_challenge_requires_the_matching_verifier() {
    let fake = start(GoogleConfig::default()).await;
    let verifier = "verifier-0123456789-0123456789-0123456789-abcdef";
    let challenge =
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    let answer = authorize(&fake, &[("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")]).await;
    let code = answer.params.get("code").cloned().expect("code");
    let config = fake.config().clone();
    let form = |verifier: &'static str| {
        vec![
            ("code", code.clone()),
            ("client_id", config.client_id.clone()),
            ("client_secret", config.client_secret.clone()),
            ("redirect_uri", REDIRECT.to_string()),
            ("grant_type", "authorization_code".to_string()),
            ("code_verifier", verifier.to_string()),
        ]
    };
    let url = fake.token_url();
    let send = |form: Vec<(&'static str, String)>| {
        let url = url.clone();
        async move {
            let response = client().post(url).form(&form).send().await.expect("token");
            (response.status().as_u16(), response.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = send(form("the-wrong-verifier-0123456789-0123456789-0123")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = send(form("verifier-0123456789-0123456789-0123456789-abcdef")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_refresh_answers_a_new_access_token_without_a_new_refresh_token() {
    let fake = start(GoogleConfig::default()).await;
    let first = connect(&fake, &[("access_type", "offline")]).await;
    let refresh_token = first["refresh_token"].as_str().expect("refresh");
    let (status, body) = refresh(&fake, refresh_token).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["access_token"], first["access_token"]);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["token_type"], "Bearer");
    let (status, again) = refresh(&fake, refresh_token).await;
    assert_eq!(status, 200, "a Google refresh token is reusable: {again}");
    assert_eq!(fake.token_requests("refresh_token"), 2);
}

#[tokio::test]
async fn an_unknown_or_revoked_refresh_token_is_invalid_grant() {
    let fake = start(GoogleConfig::default()).await;
    let (status, body) = refresh(&fake, "1//0not-a-token").await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}));
    let first = connect(&fake, &[("access_type", "offline")]).await;
    fake.revoke_refresh_tokens();
    let (status, body) = refresh(&fake, first["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn revoking_through_the_endpoint_invalidates_access_and_refresh_tokens() {
    let fake = start(GoogleConfig::default()).await;
    let first = connect(&fake, &[("access_type", "offline")]).await;
    let access = first["access_token"].as_str().expect("access");
    let revoked = client().post(fake.revoke_url()).query(&[("token", access)]).send().await.expect("revoke");
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(api(&fake, access, reqwest::Method::GET, "/calendars/primary/events", None).await.0, 401);
    assert_eq!(refresh(&fake, first["refresh_token"].as_str().expect("refresh")).await.0, 400);
}

#[tokio::test]
async fn the_oldest_refresh_token_dies_past_the_limit() {
    let fake = start(GoogleConfig { refresh_token_limit: 2, ..GoogleConfig::default() }).await;
    let consent = [("access_type", "offline"), ("prompt", "consent")];
    let tokens: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(connect(&fake, &consent).await["refresh_token"].as_str().expect("refresh").to_string());
        }
        out
    };
    assert_eq!(refresh(&fake, &tokens[0]).await.0, 400);
    assert_eq!(refresh(&fake, &tokens[1]).await.0, 200);
    assert_eq!(refresh(&fake, &tokens[2]).await.0, 200);
}

#[tokio::test]
async fn an_expired_access_token_gets_401_auth_error_and_a_refresh_recovers() {
    let fake = start(GoogleConfig { access_token_lifetime: Duration::from_secs(1), ..GoogleConfig::default() }).await;
    let body = connect(&fake, &[("access_type", "offline")]).await;
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().expect("access");
    assert_eq!(api(&fake, token, reqwest::Method::GET, "/calendars/primary/events", None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, error) = api(&fake, token, reqwest::Method::GET, "/calendars/primary/events", None).await;
    assert_eq!(status, 401);
    assert_eq!(reason(&error), "authError");
    assert_eq!(error["error"]["code"], 401);
    assert_eq!(error["error"]["errors"][0]["location"], "Authorization");
    let (_, refreshed) = refresh(&fake, body["refresh_token"].as_str().expect("refresh")).await;
    let fresh = refreshed["access_token"].as_str().expect("access");
    assert_eq!(api(&fake, fresh, reqwest::Method::GET, "/calendars/primary/events", None).await.0, 200);
}

#[tokio::test]
async fn expire_all_tokens_and_unknown_tokens_get_401() {
    let fake = start(GoogleConfig::default()).await;
    let token = fake.issue_access_token(&[EVENTS]);
    assert_eq!(api(&fake, "ya29.unknown", reqwest::Method::GET, "/calendars/primary/events", None).await.0, 401);
    fake.expire_all_tokens();
    let (status, body) = api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events", None).await;
    assert_eq!((status, reason(&body)), (401, "authError"));
}

#[tokio::test]
async fn a_token_without_an_accepted_scope_gets_403_insufficient_permissions() {
    let fake = start(GoogleConfig::default()).await;
    let token = fake.issue_access_token(&[READONLY]);
    let (status, body) = api(
        &fake,
        &token,
        reqwest::Method::POST,
        "/calendars/primary/events",
        Some(event("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")),
    )
    .await;
    assert_eq!((status, reason(&body)), (403, "insufficientPermissions"));
    let events_only = fake.issue_access_token(&[EVENTS]);
    let (status, _) = api(&fake, &events_only, reqwest::Method::GET, "/users/me/calendarList", None).await;
    assert_eq!(status, 403, "calendarList needs a calendar list scope");
}

#[tokio::test]
async fn insert_validates_client_ids_and_refuses_a_duplicate_with_409() {
    let fake = start(GoogleConfig::default()).await;
    let token = fake.issue_access_token(&[EVENTS]);
    let mut body = event("Kickoff", "2030-02-01T10:00:00+01:00", "2030-02-01T11:00:00+01:00");
    body["id"] = json!("sluice0deal0042");
    let (status, created) =
        api(&fake, &token, reqwest::Method::POST, "/calendars/primary/events?sendUpdates=all", Some(body.clone()))
            .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["id"], "sluice0deal0042");
    assert_eq!(created["kind"], "calendar#event");
    assert_eq!(created["status"], "confirmed");
    assert!(created["etag"].is_string() && created["htmlLink"].is_string());
    let (status, duplicate) = api(&fake, &token, reqwest::Method::POST, "/calendars/primary/events", Some(body)).await;
    assert_eq!((status, reason(&duplicate)), (409, "duplicate"));
    for bad in ["UPPER0case", "abc", "has-dash-0001", "wxyz00001"] {
        let mut body = event("x", "2030-02-01T10:00:00Z", "2030-02-01T11:00:00Z");
        body["id"] = json!(bad);
        let (status, _) = api(&fake, &token, reqwest::Method::POST, "/calendars/primary/events", Some(body)).await;
        assert_eq!(status, 400, "{bad} is not base32hex of 5 to 1024 characters");
    }
    let writes = fake.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].send_updates.as_deref(), Some("all"));
    assert_eq!(writes[0].calendar_id, "user@example.com");
}

#[tokio::test]
async fn insert_requires_start_end_a_time_zone_and_a_nonempty_range() {
    let fake = start(GoogleConfig::default()).await;
    let token = fake.issue_access_token(&[EVENTS]);
    let cases = [
        json!({"summary": "no end", "start": {"dateTime": "2030-01-01T10:00:00Z"}}),
        json!({"summary": "no zone", "start": {"dateTime": "2030-01-01T10:00:00"}, "end": {"dateTime": "2030-01-01T11:00:00"}}),
        event("backwards", "2030-01-01T11:00:00Z", "2030-01-01T10:00:00Z"),
        json!({"summary": "mixed", "start": {"date": "2030-01-01"}, "end": {"dateTime": "2030-01-01T11:00:00Z"}}),
        json!({"summary": "bad guest", "start": {"date": "2030-01-01"}, "end": {"date": "2030-01-02"}, "attendees": [{"displayName": "No email"}]}),
    ];
    for body in cases {
        let (status, answer) =
            api(&fake, &token, reqwest::Method::POST, "/calendars/primary/events", Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    let zoned = json!({"summary": "zoned", "start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "Europe/Zurich"}, "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "Europe/Zurich"}});
    assert_eq!(api(&fake, &token, reqwest::Method::POST, "/calendars/primary/events", Some(zoned)).await.0, 200);
    let (status, bad_send) = api(
        &fake,
        &token,
        reqwest::Method::POST,
        "/calendars/primary/events?sendUpdates=everyone",
        Some(event("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")),
    )
    .await;
    assert_eq!((status, reason(&bad_send)), (400, "invalidParameter"));
    let (status, _) = api(
        &fake,
        &token,
        reqwest::Method::POST,
        "/calendars/nobody@example.com/events",
        Some(event("x", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn get_patch_update_and_delete_follow_the_reference() {
    let fake = start(GoogleConfig::default()).await;
    let token = fake.issue_access_token(&[EVENTS]);
    let (_, created) = api(
        &fake,
        &token,
        reqwest::Method::POST,
        "/calendars/primary/events",
        Some(json!({"summary": "Demo", "description": "first", "start": {"dateTime": "2030-03-01T10:00:00Z"}, "end": {"dateTime": "2030-03-01T11:00:00Z"}})),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/calendars/primary/events/{id}");
    let (status, patched) = api(
        &fake,
        &token,
        reqwest::Method::PATCH,
        &format!("{path}?sendUpdates=none"),
        Some(json!({"summary": "Demo v2"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!((patched["summary"].as_str(), patched["description"].as_str()), (Some("Demo v2"), Some("first")));
    assert_ne!(patched["etag"], created["etag"]);
    let (status, replaced) = api(
        &fake,
        &token,
        reqwest::Method::PUT,
        &path,
        Some(event("Demo v3", "2030-03-01T12:00:00Z", "2030-03-01T13:00:00Z")),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert!(replaced.get("description").is_none(), "update replaces the whole resource");
    assert_eq!(replaced["id"], id.as_str());
    let (status, _) = api(&fake, &token, reqwest::Method::PUT, &path, Some(json!({"summary": "no times"}))).await;
    assert_eq!(status, 400, "update requires start and end");
    let stale = client()
        .delete(format!("{}{path}", fake.api_url()))
        .bearer_auth(&token)
        .header("if-match", created["etag"].as_str().expect("etag"))
        .send()
        .await
        .expect("delete");
    assert_eq!(stale.status().as_u16(), 412);
    assert_eq!(api(&fake, &token, reqwest::Method::DELETE, &path, None).await, (204, Value::Null));
    let (status, gone) = api(&fake, &token, reqwest::Method::DELETE, &path, None).await;
    assert_eq!((status, reason(&gone)), (410, "deleted"));
    let (status, fetched) = api(&fake, &token, reqwest::Method::GET, &path, None).await;
    assert_eq!((status, fetched["status"].as_str()), (200, Some("cancelled")), "get returns deleted events");
    let (status, missing) =
        api(&fake, &token, reqwest::Method::DELETE, "/calendars/primary/events/nosuchevent", None).await;
    assert_eq!((status, reason(&missing)), (404, "notFound"));
    let ops: Vec<String> = fake.writes().into_iter().map(|w| w.op).collect();
    assert_eq!(ops, ["insert", "patch", "update", "delete"]);
}

#[tokio::test]
async fn events_list_pages_through_with_page_tokens_and_max_results_defaults() {
    let fake = start(GoogleConfig { events: 600, ..GoogleConfig::default() }).await;
    let token = fake.issue_access_token(&[READONLY]);
    let mut sizes = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let path = match &page_token {
            Some(t) => format!("/calendars/primary/events?pageToken={t}"),
            None => "/calendars/primary/events".to_string(),
        };
        let (status, page) = api(&fake, &token, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        sizes.push(page["items"].as_array().expect("items").len());
        match page["nextPageToken"].as_str() {
            Some(next) => page_token = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(sizes, [250, 250, 100], "250 by default, no nextPageToken on the last page");
    let (_, capped) = api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events?maxResults=5000", None).await;
    assert_eq!(capped["items"].as_array().expect("items").len(), 600, "capped at 2500");
    let (status, _) = api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events?maxResults=0", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn events_list_filters_by_time_and_text_and_refuses_malformed_bounds() {
    let fake = start(GoogleConfig { events: 10, ..GoogleConfig::default() }).await;
    let token = fake.issue_access_token(&[READONLY]);
    // Seeded events start hourly from 2030-01-01T09:00Z and last 30 minutes.
    let (_, window) = api(
        &fake,
        &token,
        reqwest::Method::GET,
        "/calendars/primary/events?timeMin=2030-01-01T10:15:00Z&timeMax=2030-01-01T12:00:00%2B00:00&singleEvents=true&orderBy=startTime",
        None,
    )
    .await;
    let ids: Vec<&str> = window["items"].as_array().expect("items").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["seed000002", "seed000003"]);
    let (_, text) =
        api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events?q=seeded%20EVENT%207", None).await;
    assert_eq!(text["items"][0]["id"], "seed000007");
    let (status, body) =
        api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events?timeMin=2030-01-01T10:00:00", None).await;
    assert_eq!(status, 400, "the offset is mandatory: {body}");
    let (status, empty) = api(
        &fake,
        &token,
        reqwest::Method::GET,
        "/calendars/primary/events?timeMin=2030-01-02T00:00:00Z&timeMax=2030-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!((status, reason(&empty)), (400, "timeRangeEmpty"));
    let (status, _) =
        api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events?orderBy=startTime", None).await;
    assert_eq!(status, 400, "orderBy=startTime needs singleEvents=true");
}

#[tokio::test]
async fn free_busy_answers_busy_periods_and_not_found_per_calendar() {
    let fake = start(GoogleConfig { events: 3, ..GoogleConfig::default() }).await;
    let token = fake.issue_access_token(&[READONLY]);
    let (status, body) = api(
        &fake,
        &token,
        reqwest::Method::POST,
        "/freeBusy",
        Some(json!({
            "timeMin": "2030-01-01T09:15:00Z",
            "timeMax": "2030-01-01T12:00:00Z",
            "items": [{"id": "primary"}, {"id": "nobody@example.com"}],
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "calendar#freeBusy");
    assert_eq!(
        body["calendars"]["primary"]["busy"],
        json!([
            {"start": "2030-01-01T09:15:00Z", "end": "2030-01-01T09:30:00Z"},
            {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T10:30:00Z"},
            {"start": "2030-01-01T11:00:00Z", "end": "2030-01-01T11:30:00Z"},
        ])
    );
    assert_eq!(body["calendars"]["nobody@example.com"]["errors"][0]["reason"], "notFound");
    let (status, _) =
        api(&fake, &token, reqwest::Method::POST, "/freeBusy", Some(json!({"timeMin": "2030-01-01T09:15:00Z"}))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_calendar_list_is_paginated() {
    let fake = start(GoogleConfig { secondary_calendars: 4, ..GoogleConfig::default() }).await;
    let token = fake.issue_access_token(&["https://www.googleapis.com/auth/calendar.calendarlist.readonly"]);
    let (_, first) = api(&fake, &token, reqwest::Method::GET, "/users/me/calendarList?maxResults=3", None).await;
    assert_eq!(first["kind"], "calendar#calendarList");
    assert_eq!(first["items"][0]["primary"], true);
    assert_eq!(first["items"].as_array().expect("items").len(), 3);
    let next = first["nextPageToken"].as_str().expect("next page");
    let (_, last) = api(
        &fake,
        &token,
        reqwest::Method::GET,
        &format!("/users/me/calendarList?maxResults=3&pageToken={next}"),
        None,
    )
    .await;
    assert_eq!(last["items"].as_array().expect("items").len(), 2);
    assert!(last.get("nextPageToken").is_none());
}

#[tokio::test]
async fn fail_next_answers_the_documented_rate_limit_and_backend_errors() {
    let fake = start(GoogleConfig::default()).await;
    let token = fake.issue_access_token(&[READONLY]);
    fake.fail_next(FakeFailure::RateLimitExceeded);
    fake.fail_next(FakeFailure::UserRateLimitExceeded);
    fake.fail_next(FakeFailure::TooManyRequests);
    fake.fail_next(FakeFailure::BackendError);
    let expected =
        [(403, "rateLimitExceeded"), (403, "userRateLimitExceeded"), (429, "rateLimitExceeded"), (500, "backendError")];
    for (code, why) in expected {
        let (status, body) = api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events", None).await;
        assert_eq!((status, reason(&body)), (code, why), "{body}");
        assert_eq!(body["error"]["code"], code);
    }
    let (status, _) = api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events", None).await;
    assert_eq!(status, 200, "the queue is spent");
    let (status, body) = {
        fake.fail_next(FakeFailure::RateLimitExceeded);
        api(&fake, &token, reqwest::Method::GET, "/calendars/primary/events", None).await
    };
    assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_last_authorize_query_and_every_request_are_recorded() {
    let fake = start(GoogleConfig::default()).await;
    connect(&fake, &[("access_type", "offline"), ("login_hint", "user@example.com")]).await;
    let query = fake.last_authorize_query().expect("recorded");
    assert_eq!(query.get("access_type").map(String::as_str), Some("offline"));
    assert_eq!(query.get("login_hint").map(String::as_str), Some("user@example.com"));
    let token_call = fake.requests().into_iter().find(|r| r.path == "/token").expect("token request");
    assert!(token_call.body.contains("grant_type=authorization_code"));
    assert_eq!(token_call.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
}
