//! OAuth 2.0 for integrations: the authorization-code flow Sluice hosts (start → the
//! provider → callback), with PKCE when the integration asks for it, and the token exchange.
//!
//! Invariants: the `state` a flow carries is sealed (AES-256-GCM under the stack's key
//! wrapper) and names its project, user and integration, so a callback can only complete the
//! flow it belongs to, within [`STATE_TTL`]; the PKCE verifier lives only inside it. Token
//! endpoints are called through the guarded HTTP client; their answers are read within
//! [`MAX_TOKEN_RESPONSE_BYTES`] and never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::crypto::{self, CryptoError, KeyWrap};
use crate::model::project::IntegrationConfig;
use crate::net::HttpClient;
use crate::record::now;

/// How long a started flow can be completed.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// The largest token endpoint answer read.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// How long a token request may take: less than a refresh lease lasts (see
/// [`crate::connect`]), so that no other process takes the lease while it is under way.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The encryption context of flow states.
const STATE_CONTEXT: &str = "sluice/oauth-state";

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The integration is not set up for this flow (not OAuth, a missing URL or client).
    #[error("{0}")]
    NotConfigured(String),
    /// The callback's state is not one this stack issued, or it expired.
    #[error("the OAuth state is not valid: {0}")]
    BadState(String),
    /// The provider refused (an `error` in the callback or the token answer).
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The refresh token no longer works: the user must connect again.
    #[error("the provider no longer accepts the refresh token ({0}): the user must connect again")]
    Revoked(String),
    /// The provider could not be reached or answered something unusable.
    #[error("the token endpoint failed: {0}")]
    Endpoint(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl OAuthError {
    pub fn is_retryable(&self) -> bool {
        match self {
            OAuthError::Endpoint(_) => true,
            OAuthError::Crypto(error) => error.is_retryable(),
            _ => false,
        }
    }
}

/// An integration's OAuth endpoints and client, its `{{env.NAME}}` values filled in, with
/// what a built-in provider's catalog entry adds (see [`crate::catalog::CatalogOAuth`]).
#[derive(Clone, PartialEq)]
pub struct Provider {
    pub authorization_url: Option<url::Url>,
    pub token_url: url::Url,
    pub client_id: String,
    client_secret: String,
    /// Joined as the provider documents.
    pub scopes: String,
    /// `(parameter, scopes)`: Slack's `user_scope`.
    pub user_scopes: Option<(String, String)>,
    pub pkce: bool,
    /// Extra authorize URL parameters.
    pub authorize_params: BTreeMap<String, String>,
    /// Identity fields of the token answer.
    pub identity: BTreeMap<String, crate::catalog::IdentityPath>,
    /// Nested credentials of the token answer.
    pub nested_credentials: BTreeMap<String, String>,
    /// Where to ask for more identity after connecting, and what to read there.
    pub introspection: Option<(url::Url, BTreeMap<String, crate::catalog::IdentityPath>)>,
    /// Login hosts to choose from: name → origin (the first name is the default).
    pub login_hosts: BTreeMap<String, url::Url>,
    /// The login host chosen, if any.
    pub login_host: Option<String>,
}

/// The identity key a connection's chosen login host is kept under.
pub const LOGIN_HOST: &str = "loginHost";

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("authorization_url", &self.authorization_url.as_ref().map(url::Url::as_str))
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The provider of a custom OAuth integration's `config`, with the stack's `env`.
    pub fn of(name: &str, config: &IntegrationConfig, env: &BTreeMap<String, String>) -> Result<Provider, OAuthError> {
        let missing = |key: &str| OAuthError::NotConfigured(format!("integration `{name}` has no `{key}`"));
        let fill = |key: &str, value: &Option<String>| -> Result<String, OAuthError> {
            let text = value.as_deref().ok_or_else(|| missing(key))?;
            fill_env(text, env).map_err(|e| OAuthError::NotConfigured(format!("`{key}` of integration `{name}`: {e}")))
        };
        let parse = |key: &str, text: String| {
            url::Url::parse(&text)
                .map_err(|e| OAuthError::NotConfigured(format!("`{key}` of integration `{name}` is not a URL: {e}")))
        };
        let authorization_url = match &config.authorization_url {
            Some(_) => Some(parse("authorizationUrl", fill("authorizationUrl", &config.authorization_url)?)?),
            None => None,
        };
        let token_url = parse("accessTokenUrl", fill("accessTokenUrl", &config.access_token_url)?)?;
        let catalog = (!name.starts_with(crate::model::project::CUSTOM_PREFIX))
            .then(|| crate::catalog::integration(name).and_then(|entry| entry.oauth.as_ref()))
            .flatten();
        let separator = catalog.map_or(" ", |oauth| oauth.scope_separator.as_str());
        let join = |scopes: &crate::model::project::Scopes| match scopes {
            crate::model::project::Scopes::List(list) => list.join(separator),
            crate::model::project::Scopes::Text(text) => text.split_whitespace().collect::<Vec<_>>().join(separator),
        };
        let mut provider = Provider {
            authorization_url,
            token_url: token_url.clone(),
            client_id: fill("clientId", &config.client_id)?,
            client_secret: fill("clientSecret", &config.client_secret)?,
            scopes: config.scopes.as_ref().map(join).unwrap_or_default(),
            user_scopes: None,
            pkce: config.use_pkce_in_code_exchange.unwrap_or(false),
            authorize_params: BTreeMap::new(),
            identity: BTreeMap::new(),
            nested_credentials: BTreeMap::new(),
            introspection: None,
            login_hosts: BTreeMap::new(),
            login_host: None,
        };
        let Some(oauth) = catalog else { return Ok(provider) };
        provider.pkce = oauth.pkce;
        provider.authorize_params = oauth.authorize_params.clone();
        provider.identity = oauth.identity.clone();
        provider.nested_credentials = oauth.credentials.clone();
        if let (Some(param), Some(scopes)) = (&oauth.user_scope_param, &config.user_scopes) {
            provider.user_scopes = Some((param.clone(), join(scopes)));
        }
        if let Some(introspection) = &oauth.introspection {
            // Overriding `accessTokenUrl` (a local fake, a proxy) moves the introspection
            // endpoint to the same origin.
            let mut url = parse("introspection url", introspection.url.clone())?;
            if config.access_token_url.as_deref() != Some(oauth.access_token_url.as_str()) {
                let mut origin = token_url.clone();
                origin.set_path("/");
                origin.set_query(None);
                url = with_origin(&url, &origin);
            }
            provider.introspection = Some((url, introspection.identity.clone()));
        }
        let hosts = config.login_hosts.clone().unwrap_or_else(|| oauth.login_hosts.clone());
        for (host, text) in hosts {
            provider.login_hosts.insert(host.clone(), parse(&format!("loginHosts.{host}"), text)?);
        }
        Ok(provider)
    }

    /// This provider on the login host named `host` (the origin of both URLs replaced); a
    /// host it does not offer is refused, naming those it does.
    pub fn on_login_host(mut self, host: Option<&str>) -> Result<Provider, OAuthError> {
        let Some(host) = host else { return Ok(self) };
        let Some(origin) = self.login_hosts.get(host).cloned() else {
            let known: Vec<&str> = self.login_hosts.keys().map(String::as_str).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(OAuthError::NotConfigured(format!("no login host `{host}` (this integration's: {known})")));
        };
        self.authorization_url = self.authorization_url.map(|url| with_origin(&url, &origin));
        self.token_url = with_origin(&self.token_url, &origin);
        self.login_host = Some(host.to_string());
        Ok(self)
    }
}

/// `url` with the scheme, host and port of `origin` (and the path prefix of `origin`, if it
/// has one other than `/`).
fn with_origin(url: &url::Url, origin: &url::Url) -> url::Url {
    let mut moved = origin.clone();
    let prefix = origin.path().trim_end_matches('/');
    moved.set_path(&format!("{prefix}{}", url.path()));
    moved.set_query(url.query());
    moved
}

/// `text` with its `{{env.NAME}}` expressions replaced by the stack's values.
fn fill_env(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let ctx = json!({ "env": env });
    match crate::template::render(&Value::from(text), &ctx) {
        Ok(Value::String(filled)) => Ok(filled),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a flow's sealed state holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowState {
    #[serde(rename = "p")]
    pub project_id: String,
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "i")]
    pub integration: String,
    /// The PKCE code verifier, when the integration uses PKCE.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// The login host the user chose, when the provider has several.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub login_host: Option<String>,
    /// Expiry, epoch milliseconds.
    #[serde(rename = "x")]
    pub expires_ms: i64,
}

/// 32 random bytes, base64url without padding (a PKCE verifier: 43 characters).
fn random_token() -> Result<String, CryptoError> {
    let key = crypto::KeyBytes::random()?;
    Ok(URL_SAFE_NO_PAD.encode(key.as_bytes()))
}

/// Starts a flow: the provider's authorization URL to send the user to, with a sealed state.
pub async fn authorization_url(
    keys: &dyn KeyWrap,
    provider: &Provider,
    state: FlowState,
    redirect_uri: &str,
) -> Result<String, OAuthError> {
    let Some(mut url) = provider.authorization_url.clone() else {
        return Err(OAuthError::NotConfigured("this integration has no `authorizationUrl`".into()));
    };
    let mut state = state;
    let verifier = if provider.pkce { Some(random_token()?) } else { None };
    state.verifier = verifier.clone();
    state.login_host = provider.login_host.clone();
    let sealed = crypto::seal(
        keys,
        STATE_CONTEXT,
        &serde_json::to_vec(&state).map_err(|e| CryptoError::Refused(e.to_string()))?,
    )
    .await?;
    let sealed = serde_json::to_vec(&sealed).map_err(|e| CryptoError::Refused(e.to_string()))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &URL_SAFE_NO_PAD.encode(sealed));
        if !provider.scopes.is_empty() {
            query.append_pair("scope", &provider.scopes);
        }
        if let Some((param, scopes)) = &provider.user_scopes {
            query.append_pair(param, scopes);
        }
        for (name, value) in &provider.authorize_params {
            query.append_pair(name, value);
        }
        if let Some(verifier) = &verifier {
            let challenge = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            query.append_pair("code_challenge", &URL_SAFE_NO_PAD.encode(challenge.as_ref()));
            query.append_pair("code_challenge_method", "S256");
        }
    }
    Ok(url.into())
}

/// A new flow's state for `project_id`, `user_id` and `integration`, valid for [`STATE_TTL`].
pub fn new_state(project_id: &str, user_id: &str, integration: &str) -> FlowState {
    let ttl = chrono::Duration::from_std(STATE_TTL).unwrap_or_else(|_| chrono::Duration::minutes(10));
    FlowState {
        project_id: project_id.to_string(),
        user_id: user_id.to_string(),
        integration: integration.to_string(),
        verifier: None,
        login_host: None,
        expires_ms: (now() + ttl).timestamp_millis(),
    }
}

/// The state a callback carries, opened and checked.
pub async fn open_state(keys: &dyn KeyWrap, state: &str) -> Result<FlowState, OAuthError> {
    let bad = |why: &str| OAuthError::BadState(why.to_string());
    if state.len() > 4096 {
        return Err(bad("too long"));
    }
    let bytes = URL_SAFE_NO_PAD.decode(state).map_err(|_| bad("not base64url"))?;
    let sealed: crypto::Sealed = serde_json::from_slice(&bytes).map_err(|_| bad("malformed"))?;
    let opened = crypto::open(keys, STATE_CONTEXT, &sealed).await.map_err(|e| match e {
        CryptoError::Backend(message) => OAuthError::Endpoint(message),
        _ => bad("not issued by this stack"),
    })?;
    let state: FlowState = serde_json::from_slice(&opened).map_err(|_| bad("malformed"))?;
    if state.expires_ms < now().timestamp_millis() {
        return Err(bad("expired: start again"));
    }
    Ok(state)
}

/// What a token endpoint gave.
#[derive(Clone, PartialEq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    /// Every other string the provider answered (e.g. Salesforce's `instance_url`), by its
    /// camelCase name, and the nested credentials the provider's catalog names.
    pub extra: Map<String, Value>,
    /// The connection's non-secret identity, as the provider's catalog reads it.
    pub identity: BTreeMap<String, String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

impl Tokens {
    /// When the access token expires, if the provider said.
    pub fn expires_at(&self) -> Option<crate::record::Timestamp> {
        self.expires_in.map(|seconds| now() + chrono::Duration::seconds(seconds.min(10 * 365 * 86_400) as i64))
    }

    /// The credentials object stored for them: `accessToken`, `refreshToken`, and the extras.
    pub fn credentials(&self) -> Map<String, Value> {
        let mut credentials = self.extra.clone();
        credentials.insert("accessToken".into(), Value::from(self.access_token.clone()));
        if let Some(refresh) = &self.refresh_token {
            credentials.insert("refreshToken".into(), Value::from(refresh.clone()));
        }
        credentials
    }
}

/// Exchanges an authorization code for tokens.
pub async fn exchange_code(
    http: &HttpClient,
    provider: &Provider,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<Tokens, OAuthError> {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    token_request(http, provider, &form).await
}

/// Exchanges a refresh token for new tokens; a refused grant is [`OAuthError::Revoked`].
pub async fn refresh(http: &HttpClient, provider: &Provider, refresh_token: &str) -> Result<Tokens, OAuthError> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    match token_request(http, provider, &form).await {
        Err(OAuthError::Refused(reason)) => Err(OAuthError::Revoked(reason)),
        other => other,
    }
}

/// Fetches a token with the client's own credentials (`oauth_client_credential`).
pub async fn client_credentials(http: &HttpClient, provider: &Provider) -> Result<Tokens, OAuthError> {
    let mut form = vec![("grant_type", "client_credentials")];
    if !provider.scopes.is_empty() {
        form.push(("scope", provider.scopes.as_str()));
    }
    token_request(http, provider, &form).await
}

/// POSTs `form` (with the client's id and secret) to the token endpoint and reads the tokens.
async fn token_request(http: &HttpClient, provider: &Provider, form: &[(&str, &str)]) -> Result<Tokens, OAuthError> {
    let (status, bytes) = post_form(http, provider, &provider.token_url, form).await?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        // invalid_grant and friends: the provider refused; never echo the tokens sent.
        let description = answer.get("error_description").and_then(Value::as_str).unwrap_or_default();
        let reason = if description.is_empty() { error.to_string() } else { format!("{error}: {description}") };
        return Err(OAuthError::Refused(reason.chars().take(300).collect()));
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(OAuthError::Endpoint(format!("HTTP {status}")));
    }
    if !status.is_success() {
        return Err(OAuthError::Refused(format!("HTTP {status}")));
    }
    let Some(Value::String(access_token)) = answer.get("access_token") else {
        return Err(OAuthError::Endpoint("the answer has no `access_token`".into()));
    };
    let mut extra = Map::new();
    if let Value::Object(fields) = &answer {
        for (key, value) in fields {
            if ["access_token", "refresh_token", "expires_in", "token_type", "scope"].contains(&key.as_str()) {
                continue;
            }
            if let Value::String(text) = value {
                extra.insert(camel_case(key), Value::from(text.clone()));
            }
        }
    }
    for (name, path) in &provider.nested_credentials {
        if let Some(Value::String(text)) = crate::catalog::value_at(&answer, path)
            && !text.is_empty()
        {
            extra.insert(name.clone(), Value::from(text.clone()));
        }
    }
    Ok(Tokens {
        access_token: access_token.clone(),
        refresh_token: answer.get("refresh_token").and_then(Value::as_str).map(str::to_string),
        expires_in: answer.get("expires_in").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())),
        extra,
        identity: identity_of(&provider.identity, &answer),
    })
}

/// The identity `paths` read in `answer`, each value cut to what a store keeps.
fn identity_of(paths: &BTreeMap<String, crate::catalog::IdentityPath>, answer: &Value) -> BTreeMap<String, String> {
    paths
        .iter()
        .filter_map(|(name, path)| {
            let value = path.read(answer)?;
            let value: String = value.chars().filter(|c| !c.is_control()).take(256).collect();
            (!value.is_empty()).then(|| (name.clone(), value))
        })
        .collect()
}

/// Asks the provider's introspection endpoint about `access_token`: the identity it reads
/// there (empty when the provider has no such endpoint).
pub async fn introspect(
    http: &HttpClient,
    provider: &Provider,
    access_token: &str,
) -> Result<BTreeMap<String, String>, OAuthError> {
    let Some((url, paths)) = &provider.introspection else { return Ok(BTreeMap::new()) };
    let form = [("token", access_token), ("token_type_hint", "access_token")];
    let (status, bytes) = post_form(http, provider, url, &form).await?;
    if !status.is_success() {
        return Err(OAuthError::Endpoint(format!("introspection answered HTTP {status}")));
    }
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if answer.get("active") == Some(&Value::Bool(false)) {
        return Err(OAuthError::Refused("the provider says the new access token is not active".into()));
    }
    Ok(identity_of(paths, &answer))
}

/// POSTs `form` with the client's id and secret to `url` (checked by the outbound guard):
/// the answer's status and body, read within [`MAX_TOKEN_RESPONSE_BYTES`].
async fn post_form(
    http: &HttpClient,
    provider: &Provider,
    url: &url::Url,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, Vec<u8>), OAuthError> {
    http.check_url(url).map_err(|e| OAuthError::Endpoint(e.to_string()))?;
    // Built in a block of its own: the serializer is not `Send` and must not live across an await.
    let body = {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in form {
            body.append_pair(key, value);
        }
        body.append_pair("client_id", &provider.client_id).append_pair("client_secret", &provider.client_secret);
        body.finish()
    };
    // A refresh inside a step attempt is a span of that attempt (none elsewhere).
    let span = crate::telemetry::HttpSpan::start("POST", url);
    let response = http
        .client()
        .post(url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .timeout(TOKEN_TIMEOUT)
        .body(body)
        .send()
        .await;
    span.ended(&response);
    let response = response.map_err(|e| OAuthError::Endpoint(format!("{url}: {}", e.without_url())))?;
    let status = response.status();
    Ok((status, read_limited(response).await?))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, OAuthError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| OAuthError::Endpoint(e.without_url().to_string()))? {
        if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(OAuthError::Endpoint(format!("the answer is over {MAX_TOKEN_RESPONSE_BYTES} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The code passed on for a provider's `error` that is not a short `[a-z0-9_]` word.
pub const PROVIDER_ERROR: &str = "provider_error";
/// The longest provider `error` code passed on as it is.
const MAX_REFUSAL_CODE: usize = 64;
/// The most characters of a provider's `error_description` passed on.
pub const MAX_REFUSAL_DESCRIPTION: usize = 200;

/// Why the provider sent the user back without a code (RFC 6749 §4.1.2.1), as the app's
/// `returnUrl` gets it: the provider's `error` (`access_denied`, `invalid_scope`, …) when it
/// is a short `[a-z0-9_]` word, else [`PROVIDER_ERROR`]; its `error_description` with control
/// characters as spaces, at most [`MAX_REFUSAL_DESCRIPTION`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefusal {
    pub code: String,
    pub description: Option<String>,
}

impl ProviderRefusal {
    /// The refusal a callback's query `params` carry, if they carry an `error`.
    pub fn of_callback(params: &BTreeMap<String, String>) -> Option<ProviderRefusal> {
        let error = params.get("error")?;
        let valid = !error.is_empty()
            && error.len() <= MAX_REFUSAL_CODE
            && error.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let code = if valid { error.clone() } else { PROVIDER_ERROR.to_string() };
        let description = params
            .get("error_description")
            .map(|text| {
                text.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(MAX_REFUSAL_DESCRIPTION)
                    .collect::<String>()
            })
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty());
        Some(ProviderRefusal { code, description })
    }
}

/// `instance_url` → `instanceUrl`.
fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_providers_refusal_keeps_its_error_code_and_description() {
        let refusal = ProviderRefusal::of_callback(&callback(&[
            ("error", "access_denied"),
            ("error_description", " The user\ndenied access "),
            ("state", "s"),
        ]));
        let expected =
            ProviderRefusal { code: "access_denied".into(), description: Some("The user denied access".into()) };
        assert_eq!(refusal, Some(expected));
        let refusal = ProviderRefusal::of_callback(&callback(&[("error", "temporarily_unavailable")]));
        assert_eq!(refusal, Some(ProviderRefusal { code: "temporarily_unavailable".into(), description: None }));
        assert_eq!(ProviderRefusal::of_callback(&callback(&[("code", "c"), ("state", "s")])), None);
    }

    #[test]
    fn an_unusual_provider_error_code_becomes_provider_error_and_a_long_description_is_cut() {
        let long = "x".repeat(64);
        for odd in ["Access_Denied", "access-denied", "<script>", "", "a b", &format!("{long}y"), "dénié"] {
            let refusal = ProviderRefusal::of_callback(&callback(&[("error", odd)])).expect("a refusal");
            assert_eq!(refusal.code, PROVIDER_ERROR, "{odd:?}");
        }
        let refusal = ProviderRefusal::of_callback(&callback(&[("error", &long)])).expect("a refusal");
        assert_eq!(refusal.code, long, "64 characters pass");
        let description = "é".repeat(MAX_REFUSAL_DESCRIPTION + 50);
        let refusal = ProviderRefusal::of_callback(&callback(&[("error", "x"), ("error_description", &description)]));
        let kept = refusal.and_then(|r| r.description).expect("a description");
        assert_eq!(kept.chars().count(), MAX_REFUSAL_DESCRIPTION);
        let blank = ProviderRefusal::of_callback(&callback(&[("error", "x"), ("error_description", "\u{0}\t ")]));
        assert_eq!(blank.and_then(|r| r.description), None);
    }

    #[test]
    fn an_overridden_token_url_moves_the_introspection_endpoint_to_its_origin_only() {
        let config = IntegrationConfig {
            authorization_url: Some("http://127.0.0.1:9/oauth/authorize".into()),
            access_token_url: Some("http://127.0.0.1:9/oauth/2026-03/token".into()),
            client_id: Some("c".into()),
            client_secret: Some("s".into()),
            ..IntegrationConfig::default()
        };
        let provider = Provider::of("hubspot", &config, &BTreeMap::new()).expect("provider");
        let (url, identity) = provider.introspection.expect("hubspot introspects");
        assert_eq!(url.as_str(), "http://127.0.0.1:9/oauth/2026-03/token/introspect");
        assert!(identity.contains_key("portal"));
        let config =
            IntegrationConfig { access_token_url: Some("https://api.hubapi.com/oauth/2026-03/token".into()), ..config };
        let provider = Provider::of("hubspot", &config, &BTreeMap::new()).expect("provider");
        let url = provider.introspection.map(|(url, _)| url.to_string());
        assert_eq!(url.as_deref(), Some("https://api.hubapi.com/oauth/2026-03/token/introspect"));
    }

    #[test]
    fn a_login_host_replaces_the_origin_of_both_urls_and_an_unknown_one_is_refused() {
        let config = IntegrationConfig {
            authorization_url: Some("https://login.salesforce.com/services/oauth2/authorize".into()),
            access_token_url: Some("https://login.salesforce.com/services/oauth2/token".into()),
            client_id: Some("c".into()),
            client_secret: Some("s".into()),
            ..IntegrationConfig::default()
        };
        let provider = Provider::of("salesforce", &config, &BTreeMap::new()).expect("provider");
        assert!(provider.pkce, "Salesforce connects with PKCE");
        let sandbox = provider.clone().on_login_host(Some("sandbox")).expect("sandbox");
        assert_eq!(sandbox.token_url.as_str(), "https://test.salesforce.com/services/oauth2/token");
        let authorize = sandbox.authorization_url.map(|u| u.to_string());
        assert_eq!(authorize.as_deref(), Some("https://test.salesforce.com/services/oauth2/authorize"));
        match provider.on_login_host(Some("staging")) {
            Err(OAuthError::NotConfigured(message)) => assert!(message.contains("production, sandbox"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_provider_joins_scopes_and_adds_the_authorize_parameters_it_documents() {
        let config = |scopes: &[&str]| IntegrationConfig {
            authorization_url: Some("https://auth.example/authorize".into()),
            access_token_url: Some("https://auth.example/token".into()),
            client_id: Some("c".into()),
            client_secret: Some("s".into()),
            scopes: Some(crate::model::project::Scopes::List(scopes.iter().map(|s| s.to_string()).collect())),
            user_scopes: Some(crate::model::project::Scopes::Text("search:read users:read".into())),
            ..IntegrationConfig::default()
        };
        let slack = Provider::of("slack", &config(&["chat:write", "channels:read"]), &BTreeMap::new()).expect("slack");
        assert_eq!(slack.scopes, "chat:write,channels:read");
        assert_eq!(slack.user_scopes, Some(("user_scope".to_string(), "search:read,users:read".to_string())));
        let google = Provider::of("googlecalendar", &config(&["a", "b"]), &BTreeMap::new()).expect("google");
        assert_eq!(google.scopes, "a b");
        assert_eq!(google.authorize_params.get("access_type").map(String::as_str), Some("offline"));
        assert_eq!(google.authorize_params.get("prompt").map(String::as_str), Some("consent"));
        let custom = Provider::of("custom.x", &config(&["a"]), &BTreeMap::new()).expect("custom");
        assert!(custom.authorize_params.is_empty() && custom.user_scopes.is_none() && !custom.pkce);
    }

    #[test]
    fn snake_case_extras_become_camel_case() {
        assert_eq!(camel_case("instance_url"), "instanceUrl");
        assert_eq!(camel_case("id"), "id");
    }

    #[tokio::test]
    async fn a_state_opens_only_unexpired_and_unchanged() {
        let dir = std::env::temp_dir().join(format!("sluice-oauth-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let keys = crypto::LocalKeyFile::open_or_create(dir.join("k")).expect("key");
        let config = IntegrationConfig {
            authorization_url: Some("https://auth.example/authorize".into()),
            access_token_url: Some("https://auth.example/token".into()),
            client_id: Some("{{env.ID}}".into()),
            client_secret: Some("shh".into()),
            scopes: Some(crate::model::project::Scopes::List(vec!["a".into(), "b".into()])),
            use_pkce_in_code_exchange: Some(true),
            ..IntegrationConfig::default()
        };
        let env = BTreeMap::from([("ID".to_string(), "client-1".to_string())]);
        let provider = Provider::of("custom.x", &config, &env).expect("provider");
        assert_eq!(provider.client_id, "client-1");
        assert!(!format!("{provider:?}").contains("shh"), "no secret in Debug");
        let url =
            authorization_url(&keys, &provider, new_state("p", "u", "custom.x"), "https://s.example/oauth/callback")
                .await
                .expect("url");
        let url = url::Url::parse(&url).expect("a URL");
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["client_id"], "client-1");
        assert_eq!(query["scope"], "a b");
        assert_eq!(query["code_challenge_method"], "S256");
        let state = open_state(&keys, &query["state"]).await.expect("opens");
        assert_eq!((state.project_id.as_str(), state.user_id.as_str()), ("p", "u"));
        let verifier = state.verifier.expect("a verifier");
        let challenge = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        assert_eq!(query["code_challenge"], URL_SAFE_NO_PAD.encode(challenge.as_ref()));
        assert!(!query["state"].contains(&verifier), "the verifier is sealed");
        for bad in ["", "x", "not!base64", &query["state"][..query["state"].len() - 2]] {
            assert!(matches!(open_state(&keys, bad).await, Err(OAuthError::BadState(_))), "{bad}");
        }
        let mut expired = new_state("p", "u", "i");
        expired.expires_ms = 0;
        let sealed =
            crypto::seal(&keys, STATE_CONTEXT, &serde_json::to_vec(&expired).expect("json")).await.expect("seal");
        let text = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&sealed).expect("json"));
        assert!(matches!(open_state(&keys, &text).await, Err(OAuthError::BadState(m)) if m.contains("expired")));
        let _ = std::fs::remove_dir_all(dir);
    }
}
