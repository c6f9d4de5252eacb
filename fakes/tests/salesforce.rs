//! The fake Salesforce answers as Salesforce's documentation says, and refuses what Salesforce
//! refuses.

use std::time::Duration;

use base64::Engine as _;
use reqwest::redirect::Policy;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sluice_fakes::salesforce::{FakeFailure, FakeSalesforce, SalesforceConfig};

const REDIRECT: &str = "https://app.example.com/oauth/salesforce";
const VERIFIER: &str = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag";
const V: &str = "/services/data/v60.0";

fn http() -> Client {
    Client::builder().redirect(Policy::none()).build().expect("http client")
}

async fn start(config: SalesforceConfig) -> FakeSalesforce {
    FakeSalesforce::start(config).await.expect("fake Salesforce starts")
}

fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

async fn authorize(fake: &FakeSalesforce, params: &[(&str, &str)]) -> reqwest::Response {
    http().get(fake.authorize_url()).query(params).send().await.expect("authorize request")
}

fn location(response: &reqwest::Response) -> url::Url {
    let location = response.headers().get("location").expect("a Location header").to_str().expect("ascii");
    url::Url::parse(location).expect("a URL")
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// An authorization code for `scope`, with PKCE.
async fn code(fake: &FakeSalesforce, scope: &str) -> String {
    let response = authorize(
        fake,
        &[
            ("response_type", "code"),
            ("client_id", &fake.client_id()),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let url = location(&response);
    assert_eq!(param(&url, "state").as_deref(), Some("st"));
    param(&url, "code").expect("a code")
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = http().post(url).form(form).send().await.expect("form request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchange(fake: &FakeSalesforce, code: &str, verifier: Option<&str>) -> (StatusCode, Value) {
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    post_form(&fake.token_url(), &form).await
}

async fn connect(fake: &FakeSalesforce) -> Value {
    let code = code(fake, "api refresh_token").await;
    let (status, answer) = exchange(fake, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn refresh(fake: &FakeSalesforce, refresh_token: &str) -> (StatusCode, Value) {
    let (id, secret) = (fake.client_id(), fake.client_secret());
    post_form(
        &fake.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await
}

async fn call(
    fake: &FakeSalesforce,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http().request(method, format!("{}{path}", fake.base_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn token_of(answer: &Value) -> String {
    answer["access_token"].as_str().expect("access_token").to_string()
}

#[tokio::test]
async fn authorize_without_a_code_challenge_redirects_with_missing_required_code_challenge() {
    let fake = start(SalesforceConfig::default()).await;
    let response = authorize(
        &fake,
        &[("response_type", "code"), ("client_id", &fake.client_id()), ("redirect_uri", REDIRECT), ("state", "abc")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let url = location(&response);
    assert!(url.as_str().starts_with(REDIRECT));
    assert_eq!(param(&url, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&url, "error_description").as_deref(), Some("missing required code challenge"));
    assert_eq!(param(&url, "state").as_deref(), Some("abc"));
    assert!(param(&url, "code").is_none());

    let lenient = start(SalesforceConfig { require_pkce: false, ..SalesforceConfig::default() }).await;
    let response = authorize(
        &lenient,
        &[("response_type", "code"), ("client_id", &lenient.client_id()), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert!(param(&location(&response), "code").is_some());
}

#[tokio::test]
async fn authorize_refuses_an_unknown_client_an_unregistered_callback_and_a_scope_the_app_lacks() {
    let fake = start(SalesforceConfig { redirect_uris: vec![REDIRECT.into()], ..SalesforceConfig::default() }).await;
    let pkce = challenge(VERIFIER);
    let unknown =
        authorize(&fake, &[("response_type", "code"), ("client_id", "nope"), ("redirect_uri", REDIRECT)]).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.text().await.expect("body").contains("error=invalid_client_id"));
    let elsewhere = authorize(
        &fake,
        &[("response_type", "code"), ("client_id", &fake.client_id()), ("redirect_uri", "https://evil.example.com/cb")],
    )
    .await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert!(elsewhere.text().await.expect("body").contains("redirect_uri_mismatch"));
    let comma = authorize(
        &fake,
        &[
            ("response_type", "code"),
            ("client_id", &fake.client_id()),
            ("redirect_uri", REDIRECT),
            ("scope", "api,refresh_token"),
            ("code_challenge", &pkce),
        ],
    )
    .await;
    assert_eq!(param(&location(&comma), "error").as_deref(), Some("invalid_scope"));
}

#[tokio::test]
async fn the_token_answer_has_no_expires_in_and_a_verifiable_signature() {
    let fake = start(SalesforceConfig::default()).await;
    let answer = connect(&fake).await;
    assert!(answer.get("expires_in").is_none(), "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["instance_url"], fake.base_url.as_str());
    assert_eq!(answer["scope"], "api refresh_token");
    assert!(answer["refresh_token"].is_string());
    let id = answer["id"].as_str().expect("id");
    assert!(id.starts_with(&format!("{}/id/00D", fake.base_url)), "{id}");
    let issued_at = answer["issued_at"].as_str().expect("issued_at");
    assert!(issued_at.parse::<u64>().is_ok());
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, fake.client_secret().as_bytes());
    let expected = aws_lc_rs::hmac::sign(&key, format!("{id}{issued_at}").as_bytes());
    assert_eq!(answer["signature"], base64::engine::general_purpose::STANDARD.encode(expected.as_ref()));
    assert_eq!(fake.token_requests("authorization_code"), 1);

    let identity = call(&fake, &token_of(&answer), Method::GET, &id.replacen(&fake.base_url, "", 1), None).await;
    assert_eq!(identity.0, StatusCode::OK);
    assert_eq!(identity.1["id"], id);
}

#[tokio::test]
async fn no_refresh_token_without_the_refresh_token_scope() {
    let fake = start(SalesforceConfig::default()).await;
    let code = code(&fake, "api").await;
    let (status, answer) = exchange(&fake, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    assert!(answer.get("expires_in").is_none());
}

#[tokio::test]
async fn a_pkce_code_needs_its_verifier_and_redeems_once() {
    let fake = start(SalesforceConfig::default()).await;
    let code = code(&fake, "api refresh_token").await;
    let (status, error) = exchange(&fake, &code, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error, json!({ "error": "invalid_grant", "error_description": "invalid code verifier" }));
    let (status, error) = exchange(&fake, &code, Some("some-other-verifier-some-other-verifier-00000")).await;
    assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(exchange(&fake, &code, Some(VERIFIER)).await.0, StatusCode::OK);
    let (status, error) = exchange(&fake, &code, Some(VERIFIER)).await;
    assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
}

#[tokio::test]
async fn the_token_endpoint_checks_the_client_secret_and_the_redirect_uri() {
    let fake = start(SalesforceConfig::default()).await;
    let code = code(&fake, "api").await;
    let id = fake.client_id();
    let (status, error) = post_form(
        &fake.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &id),
            ("client_secret", "wrong"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_client")));
    let (status, error) = post_form(
        &fake.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &id),
            ("client_secret", &fake.client_secret()),
            ("redirect_uri", "https://app.example.com/elsewhere"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("redirect_uri_mismatch")));
}

#[tokio::test]
async fn a_connection_refreshes_on_its_own_login_host_and_the_other_answers_invalid_grant() {
    let production = start(SalesforceConfig::default()).await;
    let sandbox = start(SalesforceConfig::default()).await;
    let answer = connect(&sandbox).await;
    let refresh_token = answer["refresh_token"].as_str().expect("refresh_token");

    let (status, error) = refresh(&production, refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error, json!({ "error": "invalid_grant", "error_description": "expired access/refresh token" }));

    let (status, refreshed) = refresh(&sandbox, refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_ne!(refreshed["access_token"], answer["access_token"]);
    assert!(refreshed.get("refresh_token").is_none(), "no rotation: no new refresh token");
    assert!(refreshed.get("expires_in").is_none());
    assert_eq!(refreshed["instance_url"], sandbox.base_url.as_str());
    assert_eq!(refresh(&sandbox, refresh_token).await.0, StatusCode::OK, "the refresh token keeps working");
    assert_eq!(sandbox.token_requests("refresh_token"), 2);
    assert_eq!(production.token_requests("refresh_token"), 1);
}

#[tokio::test]
async fn with_rotation_a_refresh_answers_a_new_refresh_token_and_retires_the_old_one() {
    let fake = start(SalesforceConfig { rotate_refresh_tokens: true, ..SalesforceConfig::default() }).await;
    let answer = connect(&fake).await;
    let first = answer["refresh_token"].as_str().expect("refresh_token");
    let (status, refreshed) = refresh(&fake, first).await;
    assert_eq!(status, StatusCode::OK);
    let second = refreshed["refresh_token"].as_str().expect("a rotated refresh token");
    assert_ne!(first, second);
    assert_eq!(refresh(&fake, first).await.1["error"], "invalid_grant");
    assert_eq!(refresh(&fake, second).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_session_past_its_timeout_answers_401_invalid_session_id() {
    let fake = start(SalesforceConfig { session_timeout: Duration::from_secs(1), ..SalesforceConfig::default() }).await;
    let token = token_of(&connect(&fake).await);
    assert_eq!(call(&fake, &token, Method::GET, &format!("{V}/sobjects"), None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, error) = call(&fake, &token, Method::GET, &format!("{V}/sobjects"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error, json!([{ "message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID" }]));
}

#[tokio::test]
async fn expired_sessions_and_unknown_tokens_answer_401_and_a_token_without_api_scope_cannot_call_rest() {
    let fake = start(SalesforceConfig {
        app_scopes: vec!["api".into(), "id".into(), "refresh_token".into()],
        ..SalesforceConfig::default()
    })
    .await;
    let (status, error) = call(&fake, "00Dxx!bogus", Method::GET, &format!("{V}/sobjects"), None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::UNAUTHORIZED, Some("INVALID_SESSION_ID")));

    let code = code(&fake, "id").await;
    let (_, answer) = exchange(&fake, &code, Some(VERIFIER)).await;
    let (status, error) = call(&fake, &token_of(&answer), Method::GET, &format!("{V}/sobjects"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error[0]["message"], "This session is not valid for use with the REST API");

    let token = token_of(&connect(&fake).await);
    fake.expire_all_sessions();
    assert_eq!(call(&fake, &token, Method::GET, &format!("{V}/sobjects"), None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_api_version_is_recorded_and_retired_or_unknown_versions_are_refused() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    assert_eq!(call(&fake, &token, Method::GET, "/services/data/v60.0/sobjects", None).await.0, StatusCode::OK);
    let (status, _) = call(&fake, &token, Method::GET, "/services/data/v30.0/sobjects", None).await;
    assert_eq!(status, StatusCode::GONE);
    let (status, error) = call(&fake, &token, Method::GET, "/services/data/v99.0/sobjects", None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    assert_eq!(call(&fake, &token, Method::GET, "/services/data/60/sobjects", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(fake.api_versions(), vec!["60.0", "30.0", "99.0", "60"]);

    let versions: Value = http()
        .get(format!("{}/services/data/", fake.base_url))
        .send()
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    assert!(versions.as_array().expect("a list").iter().any(|v| v["version"] == "60.0" && v["label"] == "Spring '24"));
}

#[tokio::test]
async fn a_lead_without_last_name_and_company_is_refused_with_required_field_missing() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    let (status, error) =
        call(&fake, &token, Method::POST, &format!("{V}/sobjects/Lead"), Some(json!({ "FirstName": "Ada" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(error[0]["message"], "Required fields are missing: [LastName, Company]");
    assert_eq!(error[0]["fields"], json!(["LastName", "Company"]));

    let (status, error) = call(
        &fake,
        &token,
        Method::POST,
        &format!("{V}/sobjects/Lead"),
        Some(json!({ "LastName": "L", "Company": "C", "Shoe": 9 })),
    )
    .await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_FIELD")));

    let with_id = json!({ "Id": "00Q5g0000000001AAA", "LastName": "L", "Company": "C" });
    let (status, error) = call(&fake, &token, Method::POST, &format!("{V}/sobjects/Lead"), Some(with_id)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error,
        json!([{ "message": "The Id field should not be specified in the sobject data.", "errorCode": "INVALID_FIELD" }])
    );

    let (status, created) = call(
        &fake,
        &token,
        Method::POST,
        &format!("{V}/sobjects/Lead"),
        Some(json!({ "LastName": "Lovelace", "Company": "Acme" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["success"], true);
    assert_eq!(created["errors"], json!([]));
    let id = created["id"].as_str().expect("id");
    assert!(id.starts_with("00Q") && id.len() == 18, "{id}");
    assert_eq!(fake.record("Lead", id).expect("stored")["Status"], "Open - Not Contacted");
}

#[tokio::test]
async fn records_read_with_fields_update_with_204_and_delete_once() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    let id = fake.insert("Account", json!({ "Name": "Acme", "Industry": "Technology" }));
    let (status, account) =
        call(&fake, &token, Method::GET, &format!("{V}/sobjects/Account/{id}?fields=Name,industry"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["attributes"], json!({ "type": "Account", "url": format!("{V}/sobjects/Account/{id}") }));
    assert_eq!(account["Name"], "Acme");
    assert_eq!(account["Industry"], "Technology");
    assert!(account.get("Phone").is_none());

    let (status, _) =
        call(&fake, &token, Method::PATCH, &format!("{V}/sobjects/Account/{id}"), Some(json!({ "Phone": "555" })))
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(fake.record("Account", &id).expect("record")["Phone"], "555");
    let (status, error) = call(
        &fake,
        &token,
        Method::PATCH,
        &format!("{V}/sobjects/Account/{id}"),
        Some(json!({ "CreatedDate": "2020-01-01" })),
    )
    .await;
    assert_eq!(
        (status, error[0]["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_FIELD_FOR_INSERT_UPDATE"))
    );

    assert_eq!(
        call(&fake, &token, Method::DELETE, &format!("{V}/sobjects/Account/{id}"), None).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, error) = call(&fake, &token, Method::DELETE, &format!("{V}/sobjects/Account/{id}"), None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("ENTITY_IS_DELETED")));
    let (status, error) = call(&fake, &token, Method::GET, &format!("{V}/sobjects/Account/{id}"), None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    assert!(fake.record("Account", &id).is_none());
}

#[tokio::test]
async fn upsert_by_external_id_creates_with_201_then_updates_with_200() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    let path = format!("{V}/sobjects/Contact/External_Id__c/EXT-1");
    let (status, created) = call(&fake, &token, Method::PATCH, &path, Some(json!({ "LastName": "Hopper" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["created"], true);
    assert_eq!(created["success"], true);
    let id = created["id"].as_str().expect("id").to_string();

    let (status, updated) = call(&fake, &token, Method::PATCH, &path, Some(json!({ "FirstName": "Grace" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated, json!({ "id": id, "success": true, "errors": [], "created": false }));
    assert_eq!(fake.record("Contact", &id).expect("record")["Name"], "Grace Hopper");

    let (status, error) = call(
        &fake,
        &token,
        Method::PATCH,
        &format!("{V}/sobjects/Contact/Email/a@b.co"),
        Some(json!({ "LastName": "X" })),
    )
    .await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    let (status, error) =
        call(&fake, &token, Method::PATCH, &format!("{V}/sobjects/Contact/External_Id__c/EXT-2"), Some(json!({})))
            .await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("REQUIRED_FIELD_MISSING")));
}

#[tokio::test]
async fn describe_lists_fields_with_their_types_and_flags() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    let (status, describe) = call(&fake, &token, Method::GET, &format!("{V}/sobjects/Lead/describe"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(describe["name"], "Lead");
    assert_eq!(describe["keyPrefix"], "00Q");
    let fields = describe["fields"].as_array().expect("fields");
    let company = fields.iter().find(|f| f["name"] == "Company").expect("Company");
    assert_eq!(
        (company["type"].as_str(), company["nillable"].as_bool(), company["updateable"].as_bool()),
        (Some("string"), Some(false), Some(true))
    );
    let id = fields.iter().find(|f| f["name"] == "Id").expect("Id");
    assert_eq!(id["updateable"], false);
    assert!(fields.iter().any(|f| f["name"] == "External_Id__c" && f["externalId"] == true));
    assert_eq!(
        call(&fake, &token, Method::GET, &format!("{V}/sobjects/Widget__c/describe"), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_query_answers_in_batches_linked_by_next_records_url() {
    let fake = start(SalesforceConfig { query_batch_size: 2, ..SalesforceConfig::default() }).await;
    let token = token_of(&connect(&fake).await);
    for n in 0..5 {
        fake.insert("Account", json!({ "Name": format!("Acme {n}"), "Industry": "Technology" }));
    }
    fake.insert("Account", json!({ "Name": "Other", "Industry": "Banking" }));
    let q = "SELECT Id, Name FROM Account WHERE Industry = 'Technology' ORDER BY Name";
    let (status, first) =
        call(&fake, &token, Method::GET, &format!("{V}/query?q={}", q.replace(' ', "+").replace('=', "%3D")), None)
            .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["totalSize"], 5);
    assert_eq!(first["done"], false);
    assert_eq!(first["records"][0]["Name"], "Acme 0");
    assert_eq!(first["records"][0]["attributes"]["type"], "Account");
    let mut next = first["nextRecordsUrl"].as_str().map(str::to_string);
    let url = next.clone().expect("a nextRecordsUrl");
    assert!(url.starts_with("/services/data/v60.0/query/01g") && url.ends_with("-2"), "{url}");
    let mut names: Vec<String> =
        first["records"].as_array().expect("records").iter().map(|r| r["Name"].to_string()).collect();
    while let Some(url) = next {
        let (status, batch) = call(&fake, &token, Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::OK);
        names.extend(batch["records"].as_array().expect("records").iter().map(|r| r["Name"].to_string()));
        next = batch["nextRecordsUrl"].as_str().map(str::to_string);
        if next.is_none() {
            assert_eq!(batch["done"], true);
        }
    }
    assert_eq!(names.len(), 5);
    assert!(fake.api_versions().iter().all(|v| v == "60.0"));

    let (status, count) =
        call(&fake, &token, Method::GET, &format!("{V}/query?q=SELECT+COUNT()+FROM+Account"), None).await;
    assert_eq!((status, count["totalSize"].as_u64()), (StatusCode::OK, Some(6)));
}

#[tokio::test]
async fn a_malformed_query_or_an_unknown_field_or_object_is_refused() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    let cases = [
        ("SELEC+Id+FROM+Account", "MALFORMED_QUERY"),
        ("SELECT+Shoe+FROM+Account", "INVALID_FIELD"),
        ("SELECT+Id+FROM+Widget", "INVALID_TYPE"),
    ];
    for (q, code) in cases {
        let (status, error) = call(&fake, &token, Method::GET, &format!("{V}/query?q={q}"), None).await;
        assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{q}");
    }
    let (status, error) = call(&fake, &token, Method::GET, &format!("{V}/query/01gNOPE-2000"), None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY_LOCATOR")));
}

#[tokio::test]
async fn sosl_search_answers_search_records_with_their_types() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    fake.insert("Account", json!({ "Name": "Acme Corporation" }));
    fake.insert("Contact", json!({ "LastName": "Acme", "Email": "road@runner.com" }));
    fake.insert("Lead", json!({ "LastName": "Coyote", "Company": "Wile E" }));
    let search =
        |q: &str| format!("{V}/search?q={}", url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let (status, found) = call(
        &fake,
        &token,
        Method::GET,
        &search("FIND {acme} IN ALL FIELDS RETURNING Account(Id, Name), Contact(LastName)"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let records = found["searchRecords"].as_array().expect("searchRecords");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["attributes"]["type"], "Account");
    assert_eq!(records[0]["Name"], "Acme Corporation");
    assert_eq!(records[1]["attributes"]["type"], "Contact");

    let (_, by_email) = call(&fake, &token, Method::GET, &search("FIND {road@runner.com} IN EMAIL FIELDS"), None).await;
    assert_eq!(by_email["searchRecords"][0]["attributes"]["type"], "Contact");
    let (status, error) = call(&fake, &token, Method::GET, &search("FIND acme"), None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("MALFORMED_SEARCH")));
    let (status, _) = call(&fake, &token, Method::GET, &search("FIND {a}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fail_next_answers_request_limit_exceeded_and_server_unavailable_in_order() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    fake.fail_next(FakeFailure::TotalRequestsLimit);
    fake.fail_next(FakeFailure::ConcurrentRequestsLimit);
    fake.fail_next(FakeFailure::ConcurrentLongTxnLimit);
    fake.fail_next(FakeFailure::ServerUnavailable);
    let path = format!("{V}/sobjects");
    let (status, error) = call(&fake, &token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error, json!([{ "message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED" }]));
    let (status, error) = call(&fake, &token, Method::GET, &path, None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::FORBIDDEN, Some("REQUEST_LIMIT_EXCEEDED")));
    assert!(error[0]["message"].as_str().is_some_and(|m| m.starts_with("ConcurrentRequests")));
    let (_, error) = call(&fake, &token, Method::GET, &path, None).await;
    assert_eq!(error[0]["message"], "ConcurrentPerOrgLongTxn Limit exceeded.");
    let (status, error) = call(&fake, &token, Method::GET, &path, None).await;
    assert_eq!((status, error[0]["errorCode"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("SERVER_UNAVAILABLE")));
    assert_eq!(call(&fake, &token, Method::GET, &path, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_request_is_logged_with_its_authorization_body_and_version() {
    let fake = start(SalesforceConfig::default()).await;
    let token = token_of(&connect(&fake).await);
    call(&fake, &token, Method::POST, "/services/data/v61.0/sobjects/Account", Some(json!({ "Name": "Logged" }))).await;
    let requests = fake.requests();
    let create = requests.iter().find(|r| r.path == "/services/data/v61.0/sobjects/Account").expect("the create");
    assert_eq!(create.method, "POST");
    assert_eq!(create.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
    assert!(create.body.contains("Logged"));
    assert_eq!(create.api_version.as_deref(), Some("61.0"));
    assert_eq!(fake.last_authorize_param("code_challenge_method").as_deref(), Some("S256"));
    assert!(requests.iter().any(|r| r.path == "/services/oauth2/token" && r.body.contains("code_verifier=")));
}
