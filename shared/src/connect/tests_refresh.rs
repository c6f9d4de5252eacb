//! Refreshing a user's OAuth tokens against a local token endpoint and a real SQLite store:
//! once however many steps need it, on a refused token as on an expiring one, and without
//! losing fresh tokens when another process changed the record under the lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::adapters::sqlite::Sqlite;
use crate::crypto::LocalKeyFile;
use crate::model::project::{AuthenticationType, IntegrationConfig};
use crate::net::{HttpClient, OutboundPolicy, test_server};
use crate::ports::IntegrationRecord;
use crate::runtime::Host;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PROJECT: &str = "p1";
const USER: &str = "ada";
const INTEGRATION: &str = "custom.crm";

/// A token endpoint that rotates refresh tokens (`rt-N` → `at-N+1`, `rt-N+1`), refuses a
/// spent one with `invalid_grant`, counts the refreshes, and holds each answer until the
/// test lets it go when `hold` is set.
#[derive(Default)]
struct TokenEndpoint {
    refreshes: AtomicUsize,
    current: Mutex<u32>,
    hold: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

async fn token_endpoint(endpoint: Arc<TokenEndpoint>) -> Result<String, Box<dyn std::error::Error>> {
    let router = axum::Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let endpoint = endpoint.clone();
            async move {
                let form: BTreeMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                endpoint.refreshes.fetch_add(1, Ordering::SeqCst);
                let hold = endpoint.hold.lock().ok().and_then(|h| h.clone());
                if let Some(hold) = hold {
                    hold.notified().await;
                }
                let mut current = endpoint.current.lock().map(|c| *c).unwrap_or(0);
                let expected = format!("rt-{current}");
                if form.get("refresh_token") != Some(&expected) {
                    let refused = json!({ "error": "invalid_grant", "error_description": "spent" });
                    return (axum::http::StatusCode::BAD_REQUEST, axum::Json(refused));
                }
                current += 1;
                if let Ok(mut stored) = endpoint.current.lock() {
                    *stored = current;
                }
                let answer =
                    json!({ "access_token": format!("at-{current}"), "refresh_token": format!("rt-{current}") });
                (axum::http::StatusCode::OK, axum::Json(answer))
            }
        }),
    );
    Ok(format!("http://{}", test_server::spawn(router).await?))
}

struct Setup {
    connect: Connect,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A connect service on a fresh SQLite store, with `ada` connected to `custom.crm` by
/// `at-0` / `rt-0`, expiring at `expires_at`.
async fn setup(
    token_url: &str,
    expires_at: Option<crate::record::Timestamp>,
) -> Result<Setup, Box<dyn std::error::Error>> {
    let dir = TempDir(std::env::temp_dir().join(format!("sluice-refresh-{}", uuid::Uuid::new_v4().simple())));
    std::fs::create_dir_all(&dir.0)?;
    let keys: Arc<dyn KeyWrap> = Arc::new(LocalKeyFile::open_or_create(dir.0.join("key"))?);
    let store: Arc<dyn Store> = Arc::new(Sqlite::in_memory()?);
    let config = IntegrationConfig {
        authentication_type: Some(AuthenticationType::Oauth),
        authorization_url: Some(format!("{token_url}/authorize")),
        access_token_url: Some(format!("{token_url}/token")),
        client_id: Some("c".into()),
        client_secret: Some("s".into()),
        ..IntegrationConfig::default()
    };
    let record = IntegrationRecord { name: INTEGRATION.into(), config, inputs: BTreeMap::new(), workflows: Vec::new() };
    store.put_integrations(PROJECT, &[record]).await?;
    let http = HttpClient::new(OutboundPolicy { allow_loopback: true, allow_private: false })?;
    let connect = Connect::new(store, Some(keys), http, BTreeMap::new(), Host::Local);
    let values = json!({ "accessToken": "at-0", "refreshToken": "rt-0" });
    let context = credential_context(PROJECT, USER, INTEGRATION);
    let sealed = crypto::seal(connect.keys()?, &context, &serde_json::to_vec(&values)?).await?;
    let identity = BTreeMap::from([("team".to_string(), "T1".to_string())]);
    let record = CredentialRecord {
        sealed,
        status: CredentialStatus::Connected,
        expires_at,
        updated_at: now() - chrono::Duration::hours(1),
        refreshing_until: None,
        identity,
    };
    connect.store().put_credentials(PROJECT, USER, INTEGRATION, &record).await?;
    Ok(Setup { connect, _dir: dir })
}

fn access_token(settings: &UserSettings) -> Option<&str> {
    settings.values.get("accessToken").and_then(Value::as_str)
}

async fn stored_access_token(connect: &Connect) -> Result<(CredentialRecord, String), Box<dyn std::error::Error>> {
    let record = connect.store().get_credentials(PROJECT, USER, INTEGRATION).await?.ok_or("no credentials")?;
    let context = credential_context(PROJECT, USER, INTEGRATION);
    let values = open_credentials(connect.keys_opt(), &context, &record).await?;
    let token = values.get("accessToken").and_then(Value::as_str).ok_or("no token")?.to_string();
    Ok((record, token))
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_for_every_step_that_saw_it_refused() -> TestResult {
    let endpoint = Arc::new(TokenEndpoint::default());
    let url = token_endpoint(endpoint.clone()).await?;
    // No expiry known (Salesforce's sessions): only a refusal says the token ended.
    let setup = setup(&url, None).await?;
    let connect = &setup.connect;
    let fresh = user_credentials(connect, PROJECT, USER, INTEGRATION, None).await?;
    assert_eq!(access_token(&fresh), Some("at-0"), "not refreshed without a reason");
    let steps = (0..8).map(|_| user_credentials(connect, PROJECT, USER, INTEGRATION, Some("at-0")));
    for renewed in futures_util::future::join_all(steps).await {
        assert_eq!(access_token(&renewed?), Some("at-1"));
    }
    assert_eq!(endpoint.refreshes.load(Ordering::SeqCst), 1, "one refresh for eight refusals");
    // A step that saw the old token refused after the renewal gets the new one, no refresh.
    let late = user_credentials(connect, PROJECT, USER, INTEGRATION, Some("at-0")).await?;
    assert_eq!(access_token(&late), Some("at-1"));
    assert_eq!(endpoint.refreshes.load(Ordering::SeqCst), 1);
    let (record, token) = stored_access_token(connect).await?;
    assert_eq!(token, "at-1");
    assert_eq!(record.identity.get("team").map(String::as_str), Some("T1"), "the identity is kept");
    Ok(())
}

#[tokio::test]
async fn fresh_tokens_survive_another_process_marking_the_connection_under_the_lease() -> TestResult {
    let endpoint = Arc::new(TokenEndpoint::default());
    let url = token_endpoint(endpoint.clone()).await?;
    let setup = setup(&url, Some(now() - chrono::Duration::seconds(1))).await?;
    let connect = &setup.connect;
    let hold = Arc::new(tokio::sync::Notify::new());
    if let Ok(mut slot) = endpoint.hold.lock() {
        *slot = Some(hold.clone());
    }
    let refreshing = user_credentials(connect, PROJECT, USER, INTEGRATION, None);
    let other_process = async {
        // Wait for the refresh to be under way, then do what a second process does after
        // spending the same rotated refresh token: mark the connection for re-authorisation.
        while endpoint.refreshes.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let store = connect.store();
        let leased = store.get_credentials(PROJECT, USER, INTEGRATION).await?.ok_or("no credentials")?;
        assert!(leased.refreshing_until.is_some_and(|until| until > now() + chrono::Duration::seconds(30)));
        let marked = CredentialRecord {
            status: CredentialStatus::NeedsReauthorization,
            refreshing_until: None,
            ..leased.clone()
        };
        assert!(store.swap_credentials(PROJECT, USER, INTEGRATION, &leased, &marked).await?);
        hold.notify_one();
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    let (refreshed, other) = tokio::join!(refreshing, other_process);
    other?;
    assert_eq!(access_token(&refreshed?), Some("at-1"));
    let (record, token) = stored_access_token(connect).await?;
    assert_eq!((record.status, token.as_str()), (CredentialStatus::Connected, "at-1"), "the fresh tokens were kept");
    Ok(())
}

#[tokio::test]
async fn a_refused_token_without_a_refresh_token_marks_the_connection_for_reauthorization() -> TestResult {
    let endpoint = Arc::new(TokenEndpoint::default());
    let url = token_endpoint(endpoint.clone()).await?;
    let setup = setup(&url, None).await?;
    let connect = &setup.connect;
    let store = connect.store();
    let record = store.get_credentials(PROJECT, USER, INTEGRATION).await?.ok_or("no credentials")?;
    let context = credential_context(PROJECT, USER, INTEGRATION);
    let sealed =
        crypto::seal(connect.keys()?, &context, &serde_json::to_vec(&json!({ "accessToken": "at-0" }))?).await?;
    store.put_credentials(PROJECT, USER, INTEGRATION, &CredentialRecord { sealed, ..record }).await?;
    let refused = user_credentials(connect, PROJECT, USER, INTEGRATION, Some("at-0")).await;
    assert!(matches!(refused, Err(ConnectError::NeedsReauthorization(_))), "{refused:?}");
    let record = store.get_credentials(PROJECT, USER, INTEGRATION).await?.ok_or("no credentials")?;
    assert_eq!(record.status, CredentialStatus::NeedsReauthorization, "the portal no longer says connected");
    assert_eq!(endpoint.refreshes.load(Ordering::SeqCst), 0);
    Ok(())
}

#[test]
fn the_lease_outlives_the_token_request_it_guards() {
    let request = chrono::Duration::from_std(crate::oauth::TOKEN_TIMEOUT).unwrap_or_default();
    assert!(REFRESH_LEASE > request + chrono::Duration::seconds(10));
    assert!(REFRESH_WAIT_AT_MOST > REFRESH_LEASE.to_std().unwrap_or_default());
}

#[test]
fn short_lived_tokens_are_refreshed_a_tenth_of_their_lifetime_before_they_expire() {
    let sealed = crate::crypto::Sealed {
        version: 1,
        wrapped_key: String::new(),
        nonce: String::new(),
        ciphertext: String::new(),
    };
    let record = |lifetime_ms: i64, left_ms: i64| CredentialRecord {
        sealed: sealed.clone(),
        status: CredentialStatus::Connected,
        expires_at: Some(now() + chrono::Duration::milliseconds(left_ms)),
        updated_at: now() - chrono::Duration::milliseconds(lifetime_ms - left_ms),
        refreshing_until: None,
        identity: BTreeMap::new(),
    };
    assert!(!expiring(&record(2_000, 1_000)), "half of a 2 s token left");
    assert!(expiring(&record(2_000, 100)), "within a tenth of a 2 s token");
    assert!(!expiring(&record(3_600_000, 120_000)), "two minutes of an hour left");
    assert!(expiring(&record(3_600_000, 50_000)), "within the minute of an hour-long token");
}
