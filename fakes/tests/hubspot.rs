//! The fake HubSpot answers as HubSpot's documentation says, and refuses what HubSpot refuses.

use std::time::Duration;

use base64::Engine as _;
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sluice_fakes::hubspot::{FakeFailure, FakeHubSpot, HubSpotConfig};

const REDIRECT: &str = "https://app.example.com/oauth/callback";
const CRM_SCOPES: &str = "oauth crm.objects.contacts.read crm.objects.contacts.write crm.objects.companies.read \
                          crm.objects.companies.write crm.objects.deals.read crm.objects.deals.write crm.objects.owners.read";

fn http() -> Client {
    Client::builder().redirect(Policy::none()).build().expect("http client")
}

async fn start(config: HubSpotConfig) -> FakeHubSpot {
    FakeHubSpot::start(config).await.expect("fake HubSpot starts")
}

async fn authorize(fake: &FakeHubSpot, params: &[(&str, &str)]) -> reqwest::Response {
    http().get(fake.authorize_url()).query(params).send().await.expect("authorize request")
}

fn location(response: &reqwest::Response) -> url::Url {
    let location = response.headers().get("location").expect("a Location header").to_str().expect("ascii Location");
    url::Url::parse(location).expect("Location is a URL")
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

async fn code(fake: &FakeHubSpot, scope: &str) -> String {
    let response = authorize(
        fake,
        &[("client_id", &fake.client_id()), ("redirect_uri", REDIRECT), ("scope", scope), ("state", "s-1")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    param(&location(&response), "code").expect("a code")
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = http().post(url).form(form).send().await.expect("form request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchange(fake: &FakeHubSpot, code: &str) -> (StatusCode, Value) {
    let (id, secret) = (fake.client_id(), fake.client_secret());
    post_form(
        &fake.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("redirect_uri", REDIRECT),
            ("code", code),
        ],
    )
    .await
}

/// A connection with every CRM scope; its access token.
async fn connect(fake: &FakeHubSpot, scope: &str) -> String {
    let code = code(fake, scope).await;
    let (status, answer) = exchange(fake, &code).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["access_token"].as_str().expect("access_token").to_string()
}

async fn api(
    fake: &FakeHubSpot,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http().request(method, format!("{}{path}", fake.base_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("API request")
}

async fn call(
    fake: &FakeHubSpot,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let response = api(fake, token, method, path, body).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn authorize_redirects_with_a_code_and_the_state_and_the_code_exchanges_for_the_documented_answer() {
    let fake = start(HubSpotConfig::default()).await;
    let response = authorize(
        &fake,
        &[
            ("client_id", &fake.client_id()),
            ("redirect_uri", REDIRECT),
            ("scope", "oauth crm.objects.contacts.read"),
            ("optional_scope", "crm.objects.deals.read"),
            ("state", "xyz 1"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let url = location(&response);
    assert!(url.as_str().starts_with(REDIRECT), "{url}");
    assert_eq!(param(&url, "state").as_deref(), Some("xyz 1"));
    assert_eq!(fake.last_authorize_param("scope").as_deref(), Some("oauth crm.objects.contacts.read"));

    let (status, answer) = exchange(&fake, &param(&url, "code").expect("code")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["token_type"], "bearer");
    assert_eq!(answer["token_use"], "access_token");
    assert_eq!(answer["expires_in"], 1800);
    assert_eq!(answer["hub_id"], 62515);
    assert!(answer["user_id"].is_u64());
    assert!(answer["refresh_token"].is_string());
    assert_eq!(answer["scopes"], json!(["oauth", "crm.objects.contacts.read", "crm.objects.deals.read"]));
    assert_eq!(fake.token_requests("authorization_code"), 1);
}

#[tokio::test]
async fn authorize_refuses_comma_joined_scopes_without_redirecting() {
    let fake = start(HubSpotConfig::default()).await;
    let response = authorize(
        &fake,
        &[
            ("client_id", &fake.client_id()),
            ("redirect_uri", REDIRECT),
            ("scope", "crm.objects.contacts.read,crm.objects.contacts.write"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn authorize_refuses_an_install_url_without_a_required_scope_an_unknown_client_or_an_ip_redirect() {
    let fake = start(HubSpotConfig { required_scopes: vec!["oauth".into()], ..HubSpotConfig::default() }).await;
    let id = fake.client_id();
    let missing =
        authorize(&fake, &[("client_id", &id), ("redirect_uri", REDIRECT), ("scope", "crm.objects.contacts.read")])
            .await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let unknown =
        authorize(&fake, &[("client_id", "someone-else"), ("redirect_uri", REDIRECT), ("scope", "oauth")]).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let ip =
        authorize(&fake, &[("client_id", &id), ("redirect_uri", "http://127.0.0.1:9/cb"), ("scope", "oauth")]).await;
    assert_eq!(ip.status(), StatusCode::BAD_REQUEST);
    let localhost =
        authorize(&fake, &[("client_id", &id), ("redirect_uri", "http://localhost:9/cb"), ("scope", "oauth")]).await;
    assert_eq!(localhost.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_code_is_single_use_and_bound_to_its_redirect_uri_and_the_client_secret_is_checked() {
    let fake = start(HubSpotConfig::default()).await;
    let first = code(&fake, "oauth").await;
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let (status, answer) = post_form(
        &fake.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("redirect_uri", "https://app.example.com/other"),
            ("code", &first),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_grant");
    assert_eq!(answer["status"], "MISMATCH_REDIRECT_URI_AUTH_CODE");

    let (status, answer) = post_form(
        &fake.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", "wrong"),
            ("redirect_uri", REDIRECT),
            ("code", &first),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_client");

    assert_eq!(exchange(&fake, &first).await.0, StatusCode::OK);
    let (status, answer) = exchange(&fake, &first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_grant");
    assert_eq!(answer["status"], "BAD_AUTH_CODE");
}

#[tokio::test]
async fn the_2026_03_token_endpoint_reads_the_body_not_the_query_string() {
    let fake = start(HubSpotConfig::default()).await;
    let code = code(&fake, "oauth").await;
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let response = http()
        .post(fake.token_url())
        .query(&[
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["error"], "invalid_client");
}

#[tokio::test]
async fn a_pkce_code_needs_the_matching_verifier() {
    let fake = start(HubSpotConfig::default()).await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-long-enough";
    let response = authorize(
        &fake,
        &[
            ("client_id", &fake.client_id()),
            ("redirect_uri", REDIRECT),
            ("scope", "oauth"),
            ("code_challenge", &challenge(verifier)),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let code = param(&location(&response), "code").expect("code");
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let base = [
        ("grant_type", "authorization_code"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("redirect_uri", REDIRECT),
        ("code", code.as_str()),
    ];
    let (status, answer) = post_form(&fake.token_url(), &base).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let mut wrong = base.to_vec();
    wrong.push(("code_verifier", "not-the-verifier-not-the-verifier-not-the-verifier"));
    assert_eq!(post_form(&fake.token_url(), &wrong).await.0, StatusCode::BAD_REQUEST);
    let mut right = base.to_vec();
    right.push(("code_verifier", verifier));
    assert_eq!(post_form(&fake.token_url(), &right).await.0, StatusCode::OK);

    let plain = authorize(
        &fake,
        &[
            ("client_id", &fake.client_id()),
            ("redirect_uri", REDIRECT),
            ("scope", "oauth"),
            ("code_challenge", &challenge(verifier)),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_refresh_answers_a_new_access_token_and_a_revoked_refresh_token_answers_bad_refresh_token() {
    let fake = start(HubSpotConfig::default()).await;
    let (_, answer) = exchange(&fake, &code(&fake, "oauth crm.objects.contacts.read").await).await;
    let refresh = answer["refresh_token"].as_str().expect("refresh_token").to_string();
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("refresh_token", &refresh),
    ];
    let (status, refreshed) = post_form(&fake.token_url(), &form).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_ne!(refreshed["access_token"], answer["access_token"]);
    assert_eq!(refreshed["refresh_token"], refresh.as_str());
    assert_eq!(refreshed["scopes"], json!(["oauth", "crm.objects.contacts.read"]));
    assert_eq!(fake.token_requests("refresh_token"), 1);

    fake.revoke_refresh_tokens();
    let (status, error) = post_form(&fake.token_url(), &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant");
    assert_eq!(error["status"], "BAD_REFRESH_TOKEN");
    assert!(error["error_description"].is_string() && error["message"].is_string());
}

#[tokio::test]
async fn introspection_describes_an_active_token_and_answers_inactive_for_an_expired_one() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, "oauth crm.objects.contacts.read").await;
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let url = format!("{}/oauth/2026-03/token/introspect", fake.base_url);
    let form = [
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("token", &token),
        ("token_type_hint", "access_token"),
    ];
    let (status, info) = post_form(&url, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["active"], true);
    assert_eq!(info["token_use"], "access_token");
    assert_eq!(info["hub_id"], 62515);
    assert_eq!(info["user"], "admin@example.com");
    assert_eq!(info["hub_domain"], "demo-account.hubspot.com");
    assert!(info["app_id"].is_u64() && info["user_id"].is_u64());
    assert!(info["expires_in"].as_u64().is_some_and(|s| s <= 1800));
    assert_eq!(info["scopes"], json!(["oauth", "crm.objects.contacts.read"]));

    fake.expire_all_tokens();
    let (status, info) = post_form(&url, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info, json!({ "active": false }));
}

#[tokio::test]
async fn the_v1_endpoints_work_until_retired_then_answer_404() {
    let fake = start(HubSpotConfig::default()).await;
    let code = code(&fake, "oauth").await;
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let v1 = format!("{}/oauth/v1/token", fake.base_url);
    let (status, answer) = post_form(
        &v1,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let token = answer["access_token"].as_str().expect("token").to_string();
    let metadata =
        http().get(format!("{}/oauth/v1/access-tokens/{token}", fake.base_url)).send().await.expect("metadata");
    assert_eq!(metadata.status(), StatusCode::OK);

    fake.retire_v1();
    let refresh = answer["refresh_token"].as_str().expect("refresh").to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("refresh_token", &refresh),
    ];
    let (status, error) = post_form(&v1, &form).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["status"], "error");
    let metadata =
        http().get(format!("{}/oauth/v1/access-tokens/{token}", fake.base_url)).send().await.expect("metadata");
    assert_eq!(metadata.status(), StatusCode::NOT_FOUND);
    assert_eq!(post_form(&fake.token_url(), &form).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_config_can_start_with_v1_already_retired() {
    let fake = start(HubSpotConfig { v1_retired: true, ..HubSpotConfig::default() }).await;
    let (status, _) = post_form(&format!("{}/oauth/v1/token", fake.base_url), &[("grant_type", "refresh_token")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_access_token_past_its_lifetime_answers_401_expired_authentication() {
    let fake = start(HubSpotConfig { access_token_lifetime: Duration::from_secs(1), ..HubSpotConfig::default() }).await;
    let code = code(&fake, CRM_SCOPES).await;
    let (_, answer) = exchange(&fake, &code).await;
    assert_eq!(answer["expires_in"], 1);
    let token = answer["access_token"].as_str().expect("token");
    assert_eq!(call(&fake, token, reqwest::Method::GET, "/crm/v3/owners", None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, error) = call(&fake, token, reqwest::Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["status"], "error");
    assert_eq!(error["category"], "EXPIRED_AUTHENTICATION");
    assert!(error["correlationId"].is_string());
}

#[tokio::test]
async fn an_unknown_token_answers_401_invalid_authentication_and_a_missing_scope_403() {
    let fake = start(HubSpotConfig::default()).await;
    let (status, error) = call(&fake, "not-a-token", reqwest::Method::GET, "/crm/v3/objects/contacts/1", None).await;
    assert_eq!((status, error["category"].as_str()), (StatusCode::UNAUTHORIZED, Some("INVALID_AUTHENTICATION")));

    let token = connect(&fake, "oauth crm.objects.contacts.read").await;
    let (status, error) = call(
        &fake,
        &token,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({ "properties": { "email": "a@b.co" } })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["category"], "MISSING_SCOPES");
    assert_eq!(error["errors"][0]["context"]["requiredGranularScopes"], json!(["crm.objects.contacts.write"]));
}

#[tokio::test]
async fn a_second_contact_with_the_same_email_answers_409_with_the_existing_id() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    let contact = json!({ "properties": { "email": "Ada@Example.com", "firstname": "Ada" } });
    let (status, created) =
        call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts", Some(contact.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["properties"]["email"], "ada@example.com");
    assert_eq!(created["archived"], false);

    let again = json!({ "properties": { "email": "ada@example.com" } });
    let (status, error) = call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts", Some(again)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["message"], format!("Contact already exists. Existing ID: {id}"));
    assert_eq!(error["category"], "CONFLICT");
}

#[tokio::test]
async fn writes_with_unknown_properties_or_invalid_values_answer_400_validation_error() {
    let fake = start(HubSpotConfig {
        custom_properties: vec![("contacts".into(), "plan".into())],
        ..HubSpotConfig::default()
    })
    .await;
    let token = connect(&fake, CRM_SCOPES).await;
    let (status, error) = call(
        &fake,
        &token,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({ "properties": { "email": "x@y.co", "favorite_color": "blue" } })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["category"], "VALIDATION_ERROR");
    assert_eq!(error["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert!(error["message"].as_str().is_some_and(|m| m.starts_with("Property values were not valid")));

    let (status, _) = call(
        &fake,
        &token,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({ "properties": { "email": "not-an-email" } })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &fake,
        &token,
        reqwest::Method::POST,
        "/crm/v3/objects/deals",
        Some(json!({ "properties": { "dealname": "Big", "dealstage": "won-ish" } })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &fake,
        &token,
        reqwest::Method::POST,
        "/crm/v3/objects/contacts",
        Some(json!({ "properties": { "email": "p@y.co", "plan": "pro" } })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_contact_reads_and_updates_by_email_and_a_missing_one_answers_404_object_not_found() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    let id = fake.insert("contacts", json!({ "email": "grace@example.com", "firstname": "Grace", "phone": "555" }));
    let (status, contact) = call(
        &fake,
        &token,
        reqwest::Method::GET,
        "/crm/v3/objects/contacts/grace@example.com?idProperty=email&properties=phone",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{contact}");
    assert_eq!(contact["id"], id.as_str());
    assert_eq!(contact["properties"]["phone"], "555");
    assert!(contact["properties"].get("firstname").is_none());

    let (status, updated) = call(
        &fake,
        &token,
        reqwest::Method::PATCH,
        "/crm/v3/objects/contacts/grace%40example.com?idProperty=email",
        Some(json!({ "properties": { "lastname": "Hopper" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["properties"]["lastname"], "Hopper");
    assert_eq!(fake.record("contacts", &id).expect("record")["properties"]["lastname"], "Hopper");

    let (status, error) = call(&fake, &token, reqwest::Method::GET, "/crm/v3/objects/contacts/999999", None).await;
    assert_eq!((status, error["category"].as_str()), (StatusCode::NOT_FOUND, Some("OBJECT_NOT_FOUND")));
    let (status, _) =
        call(&fake, &token, reqwest::Method::GET, "/crm/v3/objects/companies/x?idProperty=name", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn search_filters_pages_with_after_and_refuses_a_limit_over_200() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    for n in 0..5 {
        fake.insert("contacts", json!({ "email": format!("p{n}@acme.com"), "firstname": format!("Person {n}") }));
    }
    fake.insert("contacts", json!({ "email": "solo@other.org", "firstname": "Solo" }));
    let body = |after: Option<&str>| {
        json!({
            "filterGroups": [{ "filters": [{ "propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@acme.com" }] }],
            "properties": ["email"],
            "limit": 2,
            "after": after,
        })
    };
    let response = api(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/search", Some(body(None))).await;
    assert!(
        response.headers().get("x-hubspot-ratelimit-remaining").is_none(),
        "search answers carry no rate-limit headers"
    );
    let first: Value = response.json().await.expect("json");
    assert_eq!(first["total"], 5);
    assert_eq!(first["results"].as_array().map(Vec::len), Some(2));
    let mut after = first["paging"]["next"]["after"].as_str().map(str::to_string);
    let mut seen = 2;
    while let Some(cursor) = after {
        let (_, page) =
            call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/search", Some(body(Some(&cursor))))
                .await;
        seen += page["results"].as_array().map_or(0, Vec::len);
        after = page["paging"]["next"]["after"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 5);

    let eq = json!({ "filterGroups": [{ "filters": [{ "propertyName": "email", "operator": "EQ", "value": "SOLO@other.org" }] }] });
    let (_, found) = call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/search", Some(eq)).await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["properties"]["firstname"], "Solo");
    let neq = json!({ "filterGroups": [{ "filters": [{ "propertyName": "email", "operator": "NEQ", "value": "solo@other.org" }] }] });
    let (_, others) = call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/search", Some(neq)).await;
    assert_eq!(others["total"], 5);

    let (status, error) =
        call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/search", Some(json!({ "limit": 201 })))
            .await;
    assert_eq!((status, error["category"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));
}

#[tokio::test]
async fn batch_upsert_by_email_creates_and_updates_and_says_which() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    let existing = fake.insert("contacts", json!({ "email": "old@example.com", "firstname": "Old" }));
    let body = json!({ "inputs": [
        { "idProperty": "email", "id": "old@example.com", "properties": { "firstname": "Renamed" } },
        { "idProperty": "email", "id": "new@example.com", "properties": { "firstname": "New" } },
    ] });
    let (status, answer) =
        call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/batch/upsert", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "COMPLETE");
    let results = answer["results"].as_array().expect("results");
    let old = results.iter().find(|r| r["id"] == existing.as_str()).expect("the existing contact");
    assert_eq!(old["new"], false);
    assert_eq!(old["properties"]["firstname"], "Renamed");
    let new = results.iter().find(|r| r["properties"]["email"] == "new@example.com").expect("the new contact");
    assert_eq!(new["new"], true);

    let bad = json!({ "inputs": [{ "idProperty": "firstname", "id": "x", "properties": {} }] });
    assert_eq!(
        call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/contacts/batch/upsert", Some(bad)).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_default_association_links_both_ways_and_a_missing_record_answers_404() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    let contact = fake.insert("contacts", json!({ "email": "a@acme.com" }));
    let company = fake.insert("companies", json!({ "name": "Acme" }));
    let path = format!("/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}");
    let (status, answer) = call(&fake, &token, reqwest::Method::PUT, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "COMPLETE");
    assert_eq!(
        answer["results"][0]["associationSpec"],
        json!({ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279 })
    );
    assert_eq!(fake.associations().len(), 2);
    let (_, read) = call(
        &fake,
        &token,
        reqwest::Method::GET,
        &format!("/crm/v3/objects/contacts/{contact}?associations=companies"),
        None,
    )
    .await;
    assert_eq!(read["associations"]["companies"]["results"][0]["id"], company.as_str());

    let missing = format!("/crm/v4/objects/contacts/{contact}/associations/default/companies/424242");
    assert_eq!(call(&fake, &token, reqwest::Method::PUT, &missing, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_note_needs_hs_timestamp_and_is_associated_on_create() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    let contact = fake.insert("contacts", json!({ "email": "n@acme.com" }));
    let without = json!({ "properties": { "hs_note_body": "Called" } });
    let (status, error) = call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/notes", Some(without)).await;
    assert_eq!((status, error["category"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));

    let note = json!({
        "properties": { "hs_timestamp": "2026-01-15T10:30:00.000Z", "hs_note_body": "Called" },
        "associations": [{ "to": { "id": contact }, "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202 }] }],
    });
    let (status, created) = call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/notes", Some(note)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    assert!(
        fake.associations()
            .iter()
            .any(|a| a.from_type == "notes" && a.from_id == id && a.to_id == contact && a.type_id == 202)
    );

    let dangling = json!({
        "properties": { "hs_timestamp": "1768473000000" },
        "associations": [{ "to": { "id": "77777" }, "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202 }] }],
    });
    assert_eq!(
        call(&fake, &token, reqwest::Method::POST, "/crm/v3/objects/notes", Some(dangling)).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn pipelines_owners_and_properties_answer_their_documented_shapes() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    let (status, pipelines) = call(&fake, &token, reqwest::Method::GET, "/crm/v3/pipelines/deals", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pipelines["results"][0]["id"], "default");
    assert_eq!(pipelines["results"][0]["stages"][0]["id"], "appointmentscheduled");

    let (_, first) = call(&fake, &token, reqwest::Method::GET, "/crm/v3/owners?limit=2", None).await;
    assert_eq!(first["results"].as_array().map(Vec::len), Some(2));
    let after = first["paging"]["next"]["after"].as_str().expect("a next page");
    let (_, second) =
        call(&fake, &token, reqwest::Method::GET, &format!("/crm/v3/owners?limit=2&after={after}"), None).await;
    assert_eq!(second["results"].as_array().map(Vec::len), Some(1));
    assert!(second.get("paging").is_none());

    let (status, properties) = call(&fake, &token, reqwest::Method::GET, "/crm/v3/properties/contacts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        properties["results"]
            .as_array()
            .expect("results")
            .iter()
            .any(|p| p["name"] == "email" && p["hasUniqueValue"] == true)
    );

    let narrow = connect(&fake, "oauth crm.objects.contacts.read").await;
    assert_eq!(call(&fake, &narrow, reqwest::Method::GET, "/crm/v3/owners", None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn fail_next_answers_429_daily_then_the_request_after_succeeds() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    fake.fail_next(FakeFailure::DailyLimit);
    let response = api(&fake, &token, reqwest::Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers().get("x-hubspot-ratelimit-interval-milliseconds").map(|v| v.as_bytes()),
        Some(&b"10000"[..])
    );
    assert!(response.headers().get("x-hubspot-ratelimit-daily").is_none(), "OAuth calls carry no daily headers");
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["status"], "error");
    assert_eq!(error["errorType"], "RATE_LIMIT");
    assert_eq!(error["policyName"], "DAILY");
    assert_eq!(call(&fake, &token, reqwest::Method::GET, "/crm/v3/owners", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn fail_next_queues_ten_secondly_limits_and_gateway_errors_in_order() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    fake.fail_next(FakeFailure::TenSecondlyRollingLimit);
    fake.fail_next(FakeFailure::BadGateway);
    fake.fail_next(FakeFailure::GatewayTimeout);
    let response = api(&fake, &token, reqwest::Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers().get("x-hubspot-ratelimit-remaining").map(|v| v.as_bytes()), Some(&b"0"[..]));
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(error["message"], "You have reached your ten_secondly_rolling limit.");
    assert_eq!(
        api(&fake, &token, reqwest::Method::GET, "/crm/v3/owners", None).await.status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        api(&fake, &token, reqwest::Method::GET, "/crm/v3/owners", None).await.status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    let ok = api(&fake, &token, reqwest::Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get("x-hubspot-ratelimit-max").is_some());
}

#[tokio::test]
async fn every_request_is_logged_with_its_authorization_and_body() {
    let fake = start(HubSpotConfig::default()).await;
    let token = connect(&fake, CRM_SCOPES).await;
    call(
        &fake,
        &token,
        reqwest::Method::POST,
        "/crm/v3/objects/companies",
        Some(json!({ "properties": { "name": "Acme" } })),
    )
    .await;
    let requests = fake.requests();
    let create = requests.iter().find(|r| r.path == "/crm/v3/objects/companies").expect("the create request");
    assert_eq!(create.method, "POST");
    assert_eq!(create.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
    assert!(create.body.contains("Acme"));
    assert!(requests.iter().any(|r| r.path == "/oauth/authorize" && r.query.contains("client_id=")));
    assert!(
        requests.iter().any(|r| r.path == "/oauth/2026-03/token" && r.body.contains("grant_type=authorization_code"))
    );
}
