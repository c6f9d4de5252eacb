//! A fake Google (OAuth 2.0 for web server applications + Calendar API v3), written from Google's
//! documentation: developers.google.com/identity/protocols/oauth2/web-server, the Calendar API
//! reference (developers.google.com/workspace/calendar/api/v3/reference) and its errors guide
//! (developers.google.com/workspace/calendar/api/guides/errors). One local port serves the
//! authorization endpoint (`GET /o/oauth2/v2/auth`), the token endpoint (`POST /token`), token
//! revocation (`POST /revoke`) and the Calendar API (`/calendar/v3/...`).
//!
//! What it covers, and refuses as Google documents:
//!
//! * **Authorization**: `client_id`, `redirect_uri` (exact match with
//!   [`GoogleConfig::redirect_uris`]), `response_type=code`, `scope` (SPACE-delimited; an unknown
//!   scope — including a comma-joined list, which is one unknown scope — is `invalid_scope`),
//!   `state`, `access_type` (`online`|`offline`), `prompt` (`none`|`consent`|`select_account`),
//!   `include_granted_scopes`, `login_hint`, `code_challenge`/`code_challenge_method`
//!   (`S256`|`plain`, plain by default). Errors are shown as an HTTP 400 error page (`Error 400:
//!   invalid_request`, `invalid_scope`, `redirect_uri_mismatch`; 401 `invalid_client`), not
//!   redirected; a denial redirects with `error=access_denied`, `prompt=none` when consent is needed
//!   with `error=consent_required`. The user is prompted for consent the first time, when new scopes
//!   are requested, or with `prompt=consent`; a refresh token is issued only for
//!   `access_type=offline` AND a prompted consent ("The refresh_token is only returned on the first
//!   authorization"). [`GoogleConfig::already_consented`] starts with the user having consented.
//! * **Token endpoint** (`application/x-www-form-urlencoded`; client credentials in the body or by
//!   HTTP Basic): `authorization_code` (code single use, bound to client, `redirect_uri` and the PKCE
//!   challenge) and `refresh_token` (new access token, no new refresh token). Errors:
//!   400 `invalid_request`, `invalid_grant` (`Token has been expired or revoked.` for a refresh
//!   token), `redirect_uri_mismatch`, `unsupported_grant_type`; 401 `invalid_client`. At most
//!   [`GoogleConfig::refresh_token_limit`] refresh tokens live per user and client; a new one
//!   invalidates the oldest.
//! * **Calendar API**: the token as `Authorization: Bearer` (or `access_token` query parameter).
//!   Unknown, expired or revoked: 401 `authError`; a token without a scope the method accepts: 403
//!   `insufficientPermissions`. `events` insert (client `id` validated: base32hex `a-v0-9`, 5 to
//!   1024 characters, 409 `duplicate` when taken, deleted events included; `start`/`end` required,
//!   `timeRangeEmpty`; `sendUpdates` validated and recorded), get, patch, update, delete (204; 410
//!   `deleted`; 404 `notFound`; `If-Match` → 412), list (`maxResults` default 250 capped at 2500,
//!   `pageToken`/`nextPageToken`, `timeMin`/`timeMax` RFC 3339 with offset, `q`, `singleEvents`,
//!   `orderBy`, `showDeleted`), `POST /freeBusy`, `GET /users/me/calendarList` (`maxResults`
//!   default 100 capped at 250).
//!
//! Knobs: [`GoogleConfig`] (credentials, redirect URIs, token lifetime, prior consent, calendars and
//! events to pre-fill); [`FakeGoogle::fail_next`] queues Calendar API failures ([`FakeFailure`]: 403
//! `rateLimitExceeded`/`userRateLimitExceeded`/`quotaExceeded`, 429 `rateLimitExceeded`, 500/503
//! `backendError`, any status); [`FakeGoogle::expire_all_tokens`],
//! [`FakeGoogle::revoke_refresh_tokens`], [`FakeGoogle::deny_next_authorization`]. Observation:
//! [`FakeGoogle::requests`], [`FakeGoogle::token_requests`], [`FakeGoogle::last_authorize_query`],
//! [`FakeGoogle::events`], [`FakeGoogle::writes`].
//!
//! Time: lifetimes are [`Duration`]s measured with [`Instant`]; `expires_in` is the lifetime in
//! whole seconds, rounded up. Event times are compared as instants: a `dateTime` with an offset is
//! exact; one without an offset but with a `timeZone` is read as UTC (the fake has no time zone
//! database); an all-day `date` starts at midnight UTC. Recurring events are not expanded.

use crate::random;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// Scopes the authorization endpoint knows: the Calendar API's, and the sign-in ones.
const KNOWN_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/calendar.events.owned",
    "https://www.googleapis.com/auth/calendar.events.owned.readonly",
    "https://www.googleapis.com/auth/calendar.events.freebusy",
    "https://www.googleapis.com/auth/calendar.freebusy",
    "https://www.googleapis.com/auth/calendar.events.public.readonly",
    "https://www.googleapis.com/auth/calendar.calendarlist",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    "https://www.googleapis.com/auth/calendar.calendars",
    "https://www.googleapis.com/auth/calendar.calendars.readonly",
    "https://www.googleapis.com/auth/calendar.acls",
    "https://www.googleapis.com/auth/calendar.acls.readonly",
    "https://www.googleapis.com/auth/calendar.settings.readonly",
    "https://www.googleapis.com/auth/calendar.app.created",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "openid",
    "email",
    "profile",
];

/// Scopes accepted by events insert/patch/update/delete (the reference's "Authorization scopes").
const WRITE_SCOPES: &[&str] = &["calendar", "calendar.app.created", "calendar.events", "calendar.events.owned"];
/// Scopes accepted by events get/list.
const READ_SCOPES: &[&str] = &[
    "calendar",
    "calendar.readonly",
    "calendar.app.created",
    "calendar.events",
    "calendar.events.readonly",
    "calendar.events.owned",
    "calendar.events.owned.readonly",
    "calendar.events.freebusy",
    "calendar.events.public.readonly",
];
/// Scopes accepted by freebusy.query.
const FREEBUSY_SCOPES: &[&str] = &["calendar", "calendar.readonly", "calendar.freebusy", "calendar.events.freebusy"];
/// Scopes accepted by calendarList.list.
const CALENDAR_LIST_SCOPES: &[&str] =
    &["calendar", "calendar.readonly", "calendar.calendarlist", "calendar.calendarlist.readonly"];

/// The fake's configuration; [`Default`] gives a user who never consented, one secondary calendar
/// and no events.
#[derive(Clone, Debug)]
pub struct GoogleConfig {
    /// The OAuth client id accepted.
    pub client_id: String,
    /// The OAuth client secret accepted.
    pub client_secret: String,
    /// Authorized redirect URIs (exact match: scheme, case and trailing slash). Empty: any.
    pub redirect_uris: Vec<String>,
    /// Access token lifetime (Google's is about an hour).
    pub access_token_lifetime: Duration,
    /// Authorization code lifetime (not documented by Google; ten minutes here).
    pub code_lifetime: Duration,
    /// Whether the user already consented to this client before the test (then no consent screen,
    /// so no refresh token, unless `prompt=consent`).
    pub already_consented: bool,
    /// The user's email, also the id of the primary calendar.
    pub user_email: String,
    /// Secondary calendars in the calendar list (`secondary-N@group.calendar.google.com`).
    pub secondary_calendars: usize,
    /// Events pre-filled on the primary calendar: `seed000001`, … one hour apart from
    /// 2030-01-01T09:00:00Z, 30 minutes long.
    pub events: usize,
    /// Live refresh tokens per user and client (Google: 100).
    pub refresh_token_limit: usize,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        GoogleConfig {
            client_id: "fake-client-id.apps.googleusercontent.com".to_string(),
            client_secret: "fake-google-client-secret".to_string(),
            redirect_uris: Vec::new(),
            access_token_lifetime: Duration::from_secs(3599),
            code_lifetime: Duration::from_secs(600),
            already_consented: false,
            user_email: "user@example.com".to_string(),
            secondary_calendars: 1,
            events: 0,
            refresh_token_limit: 100,
        }
    }
}

/// A failure [`FakeGoogle::fail_next`] makes the next Calendar API request answer, with the JSON of
/// https://developers.google.com/workspace/calendar/api/guides/errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeFailure {
    /// 403, domain `usageLimits`, reason `rateLimitExceeded`, "Rate Limit Exceeded".
    RateLimitExceeded,
    /// 403, domain `usageLimits`, reason `userRateLimitExceeded`, "User Rate Limit Exceeded".
    UserRateLimitExceeded,
    /// 403, domain `usageLimits`, reason `quotaExceeded`, "Calendar usage limits exceeded.".
    QuotaExceeded,
    /// 429, domain `usageLimits`, reason `rateLimitExceeded`, "Rate Limit Exceeded".
    TooManyRequests,
    /// 500, domain `global`, reason `backendError`, "Backend Error".
    BackendError,
    /// 503, reason `backendError` (not on the Calendar errors page; Google's APIs answer 503 when a
    /// backend is unavailable).
    ServiceUnavailable,
    /// Any status, with this reason and message (domain `global`).
    Status {
        /// HTTP status.
        code: u16,
        /// `errors[0].reason`.
        reason: String,
        /// `message`.
        message: String,
    },
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/calendar/v3/calendars/primary/events`.
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, as text (lossy UTF-8).
    pub body: String,
}

/// A write to an event, with the `sendUpdates` it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventWrite {
    /// `insert`, `patch`, `update` or `delete`.
    pub op: String,
    /// The calendar id (`primary` resolved to the user's email).
    pub calendar_id: String,
    /// The event id.
    pub event_id: String,
    /// `sendUpdates`, if sent.
    pub send_updates: Option<String>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeGoogle {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    shared: Arc<Shared>,
}

struct Shared {
    config: GoogleConfig,
    state: Mutex<State>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scopes: BTreeSet<String>,
    refresh: bool,
    challenge: Option<(String, String)>,
    issued: Instant,
    used: bool,
}

struct AccessToken {
    scopes: BTreeSet<String>,
    expires_at: Instant,
    revoked: bool,
    refresh: Option<String>,
}

struct RefreshToken {
    scopes: BTreeSet<String>,
    revoked: bool,
}

struct Calendar {
    id: String,
    summary: String,
    primary: bool,
    events: Vec<Value>,
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    token_requests: HashMap<String, usize>,
    last_authorize: Option<BTreeMap<String, String>>,
    deny_next: bool,
    consent_all: bool,
    consented: BTreeSet<String>,
    granted: BTreeSet<String>,
    codes: HashMap<String, Code>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    refresh_order: VecDeque<String>,
    failures: VecDeque<FakeFailure>,
    calendars: Vec<Calendar>,
    writes: Vec<EventWrite>,
    counter: u64,
}

struct Req {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl FakeGoogle {
    /// Starts the fake on a free local port.
    pub async fn start(config: GoogleConfig) -> std::io::Result<FakeGoogle> {
        let state = seed(&config);
        let shared = Arc::new(Shared { config, state: Mutex::new(state) });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let base_url = crate::serve(app).await?;
        Ok(FakeGoogle { base_url, shared })
    }

    /// `{base_url}/o/oauth2/v2/auth`.
    pub fn authorize_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base_url)
    }

    /// `{base_url}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }

    /// `{base_url}/revoke`.
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.base_url)
    }

    /// `{base_url}/calendar/v3`, the Calendar API base.
    pub fn api_url(&self) -> String {
        format!("{}/calendar/v3", self.base_url)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GoogleConfig {
        &self.shared.config
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// How many token requests carried this `grant_type`.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        lock(&self.shared).token_requests.get(grant_type).copied().unwrap_or(0)
    }

    /// The query parameters of the last authorization request.
    pub fn last_authorize_query(&self) -> Option<BTreeMap<String, String>> {
        lock(&self.shared).last_authorize.clone()
    }

    /// Makes the next Calendar API request answer `failure` (queued failures in order).
    pub fn fail_next(&self, failure: FakeFailure) {
        lock(&self.shared).failures.push_back(failure);
    }

    /// Makes every access token issued so far expired (401 `authError`).
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for token in lock(&self.shared).access.values_mut() {
            token.expires_at = now;
        }
    }

    /// Revokes every refresh token (`invalid_grant`), as a user removing the app's access does,
    /// together with the access tokens.
    pub fn revoke_refresh_tokens(&self) {
        let mut state = lock(&self.shared);
        for token in state.refresh.values_mut() {
            token.revoked = true;
        }
        for token in state.access.values_mut() {
            token.revoked = true;
        }
    }

    /// Makes the next authorization redirect back with `error=access_denied`.
    pub fn deny_next_authorization(&self) {
        lock(&self.shared).deny_next = true;
    }

    /// An access token with `scopes` (full URLs), without going through OAuth. For tests of the
    /// API alone.
    pub fn issue_access_token(&self, scopes: &[&str]) -> String {
        let config = &self.shared.config;
        let mut state = lock(&self.shared);
        let scopes: BTreeSet<String> = scopes.iter().map(|s| s.to_string()).collect();
        mint_access(config, &mut state, scopes, None)
    }

    /// The events of a calendar (`primary` or an id), deleted ones included (status `cancelled`).
    pub fn events(&self, calendar_id: &str) -> Vec<Value> {
        let state = lock(&self.shared);
        let id = if calendar_id == "primary" { self.shared.config.user_email.as_str() } else { calendar_id };
        state.calendars.iter().find(|c| c.id == id).map(|c| c.events.clone()).unwrap_or_default()
    }

    /// Every event write, oldest first.
    pub fn writes(&self) -> Vec<EventWrite> {
        lock(&self.shared).writes.clone()
    }

    /// Ids of the calendars in the user's calendar list (the primary first).
    pub fn calendar_ids(&self) -> Vec<String> {
        lock(&self.shared).calendars.iter().map(|c| c.id.clone()).collect()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn seed(config: &GoogleConfig) -> State {
    let mut state = State { consent_all: config.already_consented, ..State::default() };
    let base = parse_rfc3339("2030-01-01T09:00:00Z").map(|(t, _)| t).unwrap_or(0);
    let created = format_time(unix_now(), true);
    let events = (0..config.events)
        .map(|i| {
            let start = base + 3600 * i as i64;
            let id = format!("seed{:06}", i + 1);
            json!({
                "kind": "calendar#event",
                "etag": format!("\"{}\"", 1000 + i),
                "id": id,
                "status": "confirmed",
                "htmlLink": format!("https://www.google.com/calendar/event?eid={id}"),
                "created": created,
                "updated": created,
                "summary": format!("Seeded event {}", i + 1),
                "creator": {"email": config.user_email, "self": true},
                "organizer": {"email": config.user_email, "self": true},
                "start": {"dateTime": format_time(start, false), "timeZone": "UTC"},
                "end": {"dateTime": format_time(start + 1800, false), "timeZone": "UTC"},
                "iCalUID": format!("{id}@google.com"),
                "sequence": 0,
                "reminders": {"useDefault": true},
                "eventType": "default",
            })
        })
        .collect();
    state.calendars.push(Calendar {
        id: config.user_email.clone(),
        summary: config.user_email.clone(),
        primary: true,
        events,
    });
    for i in 0..config.secondary_calendars {
        state.calendars.push(Calendar {
            id: format!("secondary-{}@group.calendar.google.com", i + 1),
            summary: format!("Secondary {}", i + 1),
            primary: false,
            events: Vec::new(),
        });
    }
    state
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    };
    lock(&shared).requests.push(Recorded {
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        authorization: header_str(&req.headers, header::AUTHORIZATION.as_str()),
        content_type: header_str(&req.headers, header::CONTENT_TYPE.as_str()),
        body: String::from_utf8_lossy(&req.body).into_owned(),
    });
    match (req.method.clone(), req.path.as_str()) {
        (Method::GET, "/o/oauth2/v2/auth") => authorize(&shared, &req),
        (Method::POST, "/token") => token(&shared, &req),
        (Method::POST, "/revoke") => revoke(&shared, &req),
        (_, path) if path.starts_with("/calendar/v3/") => calendar_api(&shared, &req),
        _ => plain(StatusCode::NOT_FOUND, "Not Found"),
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth
// ---------------------------------------------------------------------------------------------

// https://developers.google.com/identity/protocols/oauth2/web-server#creatingclient ("Step 1: Set
// authorization parameters": client_id, redirect_uri — must exactly match an authorized redirect
// URI, else redirect_uri_mismatch —, response_type=code, scope — space-delimited —, access_type
// online|offline, state, include_granted_scopes, login_hint, prompt none|consent|select_account,
// code_challenge, code_challenge_method S256|plain) and #handlingresponse / #authorization-errors
// (errors shown to the user: invalid_client, invalid_request, redirect_uri_mismatch, ...;
// `error=access_denied` redirected when the user declines).
fn authorize(shared: &Shared, req: &Req) -> Response {
    let config = &shared.config;
    let query = pairs(&req.query);
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let mut state = lock(shared);
    state.last_authorize = Some(query.iter().cloned().collect());

    let Some(client_id) = get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: client_id");
    };
    if client_id != config.client_id {
        return error_page(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: redirect_uri");
    };
    if !config.redirect_uris.is_empty() && !config.redirect_uris.contains(&redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "The redirect URI in the request does not match the ones authorized for the OAuth client.",
        );
    }
    match get("response_type").as_deref() {
        None => {
            return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: response_type");
        }
        Some("code") => {}
        Some(other) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                &format!("Invalid response_type: {other}"),
            );
        }
    }
    let Some(scope) = get("scope") else {
        return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: scope");
    };
    let requested: BTreeSet<String> = scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let invalid: Vec<&String> = requested.iter().filter(|s| !KNOWN_SCOPES.contains(&s.as_str())).collect();
    if requested.is_empty() || !invalid.is_empty() {
        let valid: Vec<&String> = requested.iter().filter(|s| KNOWN_SCOPES.contains(&s.as_str())).collect();
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("Some requested scopes were invalid. {{valid={valid:?}, invalid={invalid:?}}}"),
        );
    }
    let offline = match get("access_type").as_deref() {
        None | Some("online") => false,
        Some("offline") => true,
        Some(other) => {
            return error_page(StatusCode::BAD_REQUEST, "invalid_request", &format!("Invalid access_type: {other}"));
        }
    };
    let prompts: Vec<String> =
        get("prompt").unwrap_or_default().split(' ').filter(|p| !p.is_empty()).map(str::to_string).collect();
    if prompts.iter().any(|p| !["none", "consent", "select_account"].contains(&p.as_str()))
        || (prompts.iter().any(|p| p == "none") && prompts.len() > 1)
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Invalid prompt: {}", prompts.join(" ")),
        );
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: code_challenge",
            );
        }
        (Some(challenge), method) => {
            let method = method.unwrap_or_else(|| "plain".to_string());
            if method != "S256" && method != "plain" {
                return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Invalid code_challenge_method.");
            }
            let well_formed = (43..=128).contains(&challenge.len())
                && challenge.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
            if !well_formed {
                return error_page(StatusCode::BAD_REQUEST, "invalid_request", "Invalid code_challenge.");
            }
            Some((challenge, method))
        }
    };
    let st = get("state");
    if std::mem::take(&mut state.deny_next) {
        return redirect_with(&redirect_uri, &[("error", "access_denied")], st.as_deref());
    }
    // "If you don't specify this parameter, the user will be prompted only the first time your
    // project requests access."
    let prompted = prompts.iter().any(|p| p == "consent")
        || (!state.consent_all && !requested.iter().all(|s| state.consented.contains(s)));
    if prompted && prompts.iter().any(|p| p == "none") {
        return redirect_with(&redirect_uri, &[("error", "consent_required")], st.as_deref());
    }
    state.consented.extend(requested.iter().cloned());
    let mut scopes = requested.clone();
    if get("include_granted_scopes").as_deref() == Some("true") {
        scopes.extend(state.granted.iter().cloned());
    }
    state.granted.extend(requested);
    let code = format!("4/0A{}", random(70, URL_SAFE));
    state.codes.insert(
        code.clone(),
        Code {
            client_id,
            redirect_uri: redirect_uri.clone(),
            scopes,
            refresh: offline && prompted,
            challenge,
            issued: Instant::now(),
            used: false,
        },
    );
    redirect_with(&redirect_uri, &[("code", &code)], st.as_deref())
}

// https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code
// (POST /token with code, client_id, client_secret, redirect_uri, grant_type=authorization_code,
// code_verifier; answers access_token, expires_in, refresh_token — "only returned if your
// application set the access_type parameter to offline", and only on the first authorization —,
// scope, token_type Bearer) and #offline (grant_type=refresh_token answers a new access_token;
// invalid_grant when the refresh token was revoked or expired).
fn token(shared: &Shared, req: &Req) -> Response {
    let config = &shared.config;
    let content_type = header_str(&req.headers, header::CONTENT_TYPE.as_str()).unwrap_or_default().to_ascii_lowercase();
    let form = if content_type.starts_with("application/x-www-form-urlencoded") {
        std::str::from_utf8(&req.body).map(pairs).unwrap_or_default()
    } else {
        Vec::new()
    };
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let grant = get("grant_type");
    let mut state = lock(shared);
    *state.token_requests.entry(grant.clone().unwrap_or_default()).or_default() += 1;
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid Content-Type; expected application/x-www-form-urlencoded",
        );
    }
    let (client_id, client_secret) = match basic_credentials(&req.headers) {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (get("client_id"), get("client_secret")),
    };
    let Some(client_id) = client_id else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Could not determine client ID from request.");
    };
    if client_id != config.client_id {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
    }
    if client_secret.as_deref() != Some(config.client_secret.as_str()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    match grant.as_deref() {
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: grant_type"),
        Some("authorization_code") => code_grant(config, &mut state, &get),
        Some("refresh_token") => refresh_grant(config, &mut state, &get),
        Some(other) => {
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", &format!("Invalid grant_type: {other}"))
        }
    }
}

fn code_grant(config: &GoogleConfig, state: &mut State, get: &dyn Fn(&str) -> Option<String>) -> Response {
    let Some(code_value) = get("code") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: code");
    };
    let Some(code) = state.codes.get(&code_value) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Malformed auth code.");
    };
    if code.used || code.issued.elapsed() >= config.code_lifetime || code.client_id != config.client_id {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing parameter: redirect_uri");
    };
    if redirect_uri != code.redirect_uri {
        return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "Bad Request");
    }
    if let Some((challenge, method)) = &code.challenge {
        let Some(verifier) = get("code_verifier") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Missing code verifier.");
        };
        let computed = if method == "S256" { crate::s256(&verifier) } else { verifier };
        if computed != *challenge {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code verifier.");
        }
    }
    let scopes = code.scopes.clone();
    let with_refresh = code.refresh;
    if let Some(code) = state.codes.get_mut(&code_value) {
        code.used = true;
    }
    let refresh = with_refresh.then(|| mint_refresh(config, state, scopes.clone()));
    let access = mint_access(config, state, scopes.clone(), refresh.clone());
    let mut body = json!({
        "access_token": access,
        "expires_in": whole_seconds(config.access_token_lifetime),
        "scope": scopes.iter().cloned().collect::<Vec<_>>().join(" "),
        "token_type": "Bearer",
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    token_json(body)
}

fn refresh_grant(config: &GoogleConfig, state: &mut State, get: &dyn Fn(&str) -> Option<String>) -> Response {
    let Some(token) = get("refresh_token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: refresh_token");
    };
    let scopes = match state.refresh.get(&token) {
        Some(entry) if !entry.revoked => entry.scopes.clone(),
        _ => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked."),
    };
    let access = mint_access(config, state, scopes.clone(), Some(token));
    token_json(json!({
        "access_token": access,
        "expires_in": whole_seconds(config.access_token_lifetime),
        "scope": scopes.iter().cloned().collect::<Vec<_>>().join(" "),
        "token_type": "Bearer",
    }))
}

fn mint_access(config: &GoogleConfig, state: &mut State, scopes: BTreeSet<String>, refresh: Option<String>) -> String {
    let token = format!("ya29.{}", random(120, URL_SAFE));
    state.access.insert(
        token.clone(),
        AccessToken { scopes, expires_at: Instant::now() + config.access_token_lifetime, revoked: false, refresh },
    );
    token
}

/// A new refresh token; past the limit, the oldest live one is invalidated "without warning".
fn mint_refresh(config: &GoogleConfig, state: &mut State, scopes: BTreeSet<String>) -> String {
    let token = format!("1//0{}", random(100, URL_SAFE));
    state.refresh.insert(token.clone(), RefreshToken { scopes, revoked: false });
    state.refresh_order.push_back(token.clone());
    let live = |state: &State| {
        state.refresh_order.iter().filter(|t| state.refresh.get(*t).is_some_and(|r| !r.revoked)).count()
    };
    while live(state) > config.refresh_token_limit.max(1) {
        let Some(oldest) = state.refresh_order.pop_front() else { break };
        if let Some(entry) = state.refresh.get_mut(&oldest) {
            entry.revoked = true;
        }
    }
    token
}

// https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke — POST
// /revoke?token=...; revoking an access token with a refresh token revokes both; 200 on success,
// 400 otherwise.
fn revoke(shared: &Shared, req: &Req) -> Response {
    let mut params = pairs(&req.query);
    if let Ok(body) = std::str::from_utf8(&req.body) {
        params.extend(pairs(body));
    }
    let Some(token) = params.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: token");
    };
    let mut state = lock(shared);
    let refresh = match state.access.get(&token) {
        Some(access) if !access.revoked => Some(access.refresh.clone()),
        _ => None,
    };
    let target = match refresh {
        Some(refresh) => refresh,
        None if state.refresh.get(&token).is_some_and(|r| !r.revoked) => Some(token.clone()),
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Token expired or revoked"),
    };
    if let Some(access) = state.access.get_mut(&token) {
        access.revoked = true;
    }
    if let Some(refresh) = target {
        if let Some(entry) = state.refresh.get_mut(&refresh) {
            entry.revoked = true;
        }
        for access in state.access.values_mut() {
            if access.refresh.as_deref() == Some(refresh.as_str()) {
                access.revoked = true;
            }
        }
    }
    token_json(json!({}))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Calendar API
// ---------------------------------------------------------------------------------------------

type ApiResult = Result<Response, ApiError>;

/// An error answer in the Calendar API's JSON (https://developers.google.com/workspace/calendar/api/guides/errors).
struct ApiError {
    status: u16,
    domain: &'static str,
    reason: String,
    message: String,
    location: Option<(&'static str, String)>,
}

impl ApiError {
    fn new(status: u16, domain: &'static str, reason: &str, message: &str) -> ApiError {
        ApiError { status, domain, reason: reason.to_string(), message: message.to_string(), location: None }
    }

    fn at(mut self, location_type: &'static str, location: &str) -> ApiError {
        self.location = Some((location_type, location.to_string()));
        self
    }

    fn bad_request() -> ApiError {
        ApiError::new(400, "global", "badRequest", "Bad Request")
    }

    fn not_found() -> ApiError {
        ApiError::new(404, "global", "notFound", "Not Found")
    }

    fn response(&self) -> Response {
        let mut error = json!({"domain": self.domain, "reason": self.reason, "message": self.message});
        if let Some((location_type, location)) = &self.location {
            error["locationType"] = json!(location_type);
            error["location"] = json!(location);
        }
        let mut body = json!({"error": {"errors": [error], "code": self.status, "message": self.message}});
        let status_name = match self.status {
            400 => Some("INVALID_ARGUMENT"),
            401 => Some("UNAUTHENTICATED"),
            403 => Some("PERMISSION_DENIED"),
            404 => Some("NOT_FOUND"),
            409 => Some("ALREADY_EXISTS"),
            412 => Some("FAILED_PRECONDITION"),
            429 => Some("RESOURCE_EXHAUSTED"),
            500 => Some("INTERNAL"),
            503 => Some("UNAVAILABLE"),
            _ => None,
        };
        if let Some(name) = status_name {
            body["error"]["status"] = json!(name);
        }
        let mut response = json_response(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST), &body);
        if self.status == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}

fn failure_error(failure: &FakeFailure) -> ApiError {
    match failure {
        FakeFailure::RateLimitExceeded => ApiError::new(403, "usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
        FakeFailure::UserRateLimitExceeded => {
            ApiError::new(403, "usageLimits", "userRateLimitExceeded", "User Rate Limit Exceeded")
        }
        FakeFailure::QuotaExceeded => {
            ApiError::new(403, "usageLimits", "quotaExceeded", "Calendar usage limits exceeded.")
        }
        FakeFailure::TooManyRequests => ApiError::new(429, "usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
        FakeFailure::BackendError => ApiError::new(500, "global", "backendError", "Backend Error"),
        FakeFailure::ServiceUnavailable => ApiError::new(503, "global", "backendError", "Backend Error"),
        FakeFailure::Status { code, reason, message } => ApiError::new(*code, "global", reason, message),
    }
}

fn calendar_api(shared: &Shared, req: &Req) -> Response {
    let config = &shared.config;
    let mut state = lock(shared);
    if let Some(failure) = state.failures.pop_front() {
        return failure_error(&failure).response();
    }
    let query = pairs(&req.query);
    // https://developers.google.com/workspace/calendar/api/guides/errors#401_invalid_credentials —
    // "Invalid authorization header. The access token you're using is either expired or invalid."
    let token = header_str(&req.headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
        .or_else(|| query.iter().find(|(k, _)| k == "access_token").map(|(_, v)| v.clone()));
    let scopes = match token.as_ref().and_then(|t| state.access.get(t)) {
        Some(t) if !t.revoked && Instant::now() < t.expires_at => t.scopes.clone(),
        _ => {
            return ApiError::new(401, "global", "authError", "Invalid Credentials")
                .at("header", "Authorization")
                .response();
        }
    };
    let segments: Vec<String> = req.path.trim_start_matches("/calendar/v3/").split('/').map(decode_segment).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let params = Params(query);
    let result = match (&req.method, segments.as_slice()) {
        (&Method::GET, ["users", "me", "calendarList"]) => {
            need(&scopes, CALENDAR_LIST_SCOPES).and_then(|()| calendar_list(&state, &params))
        }
        (&Method::GET, ["users", "me", "calendarList", id]) => {
            need(&scopes, CALENDAR_LIST_SCOPES).and_then(|()| calendar_list_entry(config, &state, id))
        }
        (&Method::POST, ["freeBusy"]) => need(&scopes, FREEBUSY_SCOPES).and_then(|()| free_busy(config, &state, req)),
        (&Method::GET, ["calendars", calendar, "events"]) => {
            need(&scopes, READ_SCOPES).and_then(|()| list_events(config, &state, calendar, &params))
        }
        (&Method::POST, ["calendars", calendar, "events"]) => {
            need(&scopes, WRITE_SCOPES).and_then(|()| insert_event(config, &mut state, calendar, &params, req))
        }
        (&Method::GET, ["calendars", calendar, "events", event]) => {
            need(&scopes, READ_SCOPES).and_then(|()| get_event(config, &state, calendar, event))
        }
        (&Method::PATCH, ["calendars", calendar, "events", event]) => need(&scopes, WRITE_SCOPES)
            .and_then(|()| modify_event(config, &mut state, calendar, event, &params, req, true)),
        (&Method::PUT, ["calendars", calendar, "events", event]) => need(&scopes, WRITE_SCOPES)
            .and_then(|()| modify_event(config, &mut state, calendar, event, &params, req, false)),
        (&Method::DELETE, ["calendars", calendar, "events", event]) => {
            need(&scopes, WRITE_SCOPES).and_then(|()| delete_event(config, &mut state, calendar, event, &params, req))
        }
        _ => Err(ApiError::not_found()),
    };
    result.unwrap_or_else(|error| error.response())
}

/// 403 `insufficientPermissions` unless the token has one of `accepted` (Google's answer when a
/// token lacks every scope a method lists under "Authorization").
fn need(scopes: &BTreeSet<String>, accepted: &[&str]) -> Result<(), ApiError> {
    if accepted.iter().any(|s| scopes.contains(&format!("{SCOPE_PREFIX}{s}"))) {
        return Ok(());
    }
    Err(ApiError::new(403, "global", "insufficientPermissions", "Request had insufficient authentication scopes."))
}

struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn bool(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    /// `maxResults` within `1..`, capped at `max` ("The page size can never be larger than ...").
    fn max_results(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(raw) = self.get("maxResults") else {
            return Ok(default);
        };
        let value: i64 = raw.parse().map_err(|_| invalid_parameter("maxResults", raw))?;
        if value < 1 {
            return Err(invalid_parameter("maxResults", raw));
        }
        Ok((value as usize).min(max))
    }

    /// `pageToken`: the offset it encodes.
    fn page_offset(&self) -> Result<usize, ApiError> {
        let Some(token) = self.get("pageToken").filter(|t| !t.is_empty()) else {
            return Ok(0);
        };
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| ApiError::new(400, "global", "invalid", "Invalid page token.").at("parameter", "pageToken"))
    }

    /// An RFC 3339 timestamp parameter ("Must be an RFC3339 timestamp with mandatory time zone
    /// offset").
    fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        match parse_rfc3339(raw) {
            Some((t, true)) => Ok(Some(t)),
            _ => Err(ApiError::bad_request()),
        }
    }
}

fn invalid_parameter(name: &str, value: &str) -> ApiError {
    ApiError::new(400, "global", "invalidParameter", &format!("Invalid value '{value}' for parameter {name}."))
        .at("parameter", name)
}

fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn resolve_calendar<'a>(config: &GoogleConfig, state: &'a State, id: &str) -> Result<&'a Calendar, ApiError> {
    let id = if id == "primary" { config.user_email.as_str() } else { id };
    state.calendars.iter().find(|c| c.id == id).ok_or_else(ApiError::not_found)
}

fn calendar_index(config: &GoogleConfig, state: &State, id: &str) -> Result<usize, ApiError> {
    let id = if id == "primary" { config.user_email.as_str() } else { id };
    state.calendars.iter().position(|c| c.id == id).ok_or_else(ApiError::not_found)
}

fn calendar_entry(calendar: &Calendar) -> Value {
    let mut entry = json!({
        "kind": "calendar#calendarListEntry",
        "etag": format!("\"{}\"", calendar.id.len()),
        "id": calendar.id,
        "summary": calendar.summary,
        "timeZone": "UTC",
        "colorId": "1",
        "backgroundColor": "#9fe1e7",
        "foregroundColor": "#000000",
        "selected": true,
        "accessRole": "owner",
        "defaultReminders": [],
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    });
    if calendar.primary {
        entry["primary"] = json!(true);
    }
    entry
}

// https://developers.google.com/workspace/calendar/api/v3/reference/calendarList/list — maxResults
// ("By default the value is 100 entries. The page size can never be larger than 250 entries."),
// pageToken; answers kind calendar#calendarList, etag, nextPageToken, items.
fn calendar_list(state: &State, params: &Params) -> ApiResult {
    let max = params.max_results(100, 250)?;
    let offset = params.page_offset()?;
    let items: Vec<Value> = state.calendars.iter().skip(offset).take(max).map(calendar_entry).collect();
    let mut body = json!({"kind": "calendar#calendarList", "etag": "\"p33c9nrdl7fsdo0o\"", "items": items});
    if offset + max < state.calendars.len() {
        body["nextPageToken"] = json!(page_token(offset + max));
    }
    Ok(json_response(StatusCode::OK, &body))
}

// https://developers.google.com/workspace/calendar/api/v3/reference/calendarList/get
fn calendar_list_entry(config: &GoogleConfig, state: &State, id: &str) -> ApiResult {
    let calendar = resolve_calendar(config, state, id)?;
    Ok(json_response(StatusCode::OK, &calendar_entry(calendar)))
}

// https://developers.google.com/workspace/calendar/api/v3/reference/freebusy/query — body timeMin,
// timeMax (RFC 3339), timeZone, items [{id}]; answers kind calendar#freeBusy, timeMin, timeMax,
// calendars {id: {busy: [{start, end}], errors: [{domain, reason: notFound}]}}.
fn free_busy(config: &GoogleConfig, state: &State, req: &Req) -> ApiResult {
    let body = json_body(req)?;
    let time = |key: &str| -> Result<i64, ApiError> {
        let raw = body
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "global", "required", &format!("Missing {key}.")).at("parameter", key))?;
        match parse_rfc3339(raw) {
            Some((t, true)) => Ok(t),
            _ => Err(ApiError::bad_request()),
        }
    };
    let (min, max) = (time("timeMin")?, time("timeMax")?);
    if max <= min {
        return Err(time_range_empty("timeMax"));
    }
    let mut calendars = Map::new();
    for item in body.get("items").and_then(Value::as_array).into_iter().flatten() {
        let Some(id) = item.get("id").and_then(Value::as_str) else { continue };
        let entry = match resolve_calendar(config, state, id) {
            Ok(calendar) => json!({"busy": busy_periods(calendar, min, max)}),
            Err(_) => json!({"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}),
        };
        calendars.insert(id.to_string(), entry);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": "calendar#freeBusy",
            "timeMin": format_time(min, true),
            "timeMax": format_time(max, true),
            "calendars": calendars,
        }),
    ))
}

fn busy_periods(calendar: &Calendar, min: i64, max: i64) -> Vec<Value> {
    let mut spans: Vec<(i64, i64)> = calendar
        .events
        .iter()
        .filter(|e| e["status"] != "cancelled" && e["transparency"] != "transparent")
        .filter_map(event_span)
        .filter(|(start, end)| *start < max && *end > min)
        .map(|(start, end)| (start.max(min), end.min(max)))
        .collect();
    spans.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.into_iter().map(|(s, e)| json!({"start": format_time(s, false), "end": format_time(e, false)})).collect()
}

// https://developers.google.com/workspace/calendar/api/v3/reference/events/list — maxResults ("By
// default the value is 250 events. The page size can never be larger than 2500 events."),
// pageToken/nextPageToken, timeMin ("Lower bound (exclusive) for an event's end time"), timeMax
// ("Upper bound (exclusive) for an event's start time ... If timeMin is set, timeMax must be greater
// than timeMin"), both "RFC3339 timestamp with mandatory time zone offset", q, singleEvents,
// orderBy (startTime "only available when querying single events"), showDeleted.
fn list_events(config: &GoogleConfig, state: &State, calendar: &str, params: &Params) -> ApiResult {
    let calendar = resolve_calendar(config, state, calendar)?;
    let max = params.max_results(250, 2500)?;
    let offset = params.page_offset()?;
    let min_time = params.time("timeMin")?;
    let max_time = params.time("timeMax")?;
    if let (Some(min), Some(max)) = (min_time, max_time)
        && max <= min
    {
        return Err(time_range_empty("timeMax"));
    }
    let order = params.get("orderBy");
    match order {
        None | Some("updated") => {}
        Some("startTime") if params.bool("singleEvents") => {}
        Some("startTime") => {
            return Err(ApiError::new(
                400,
                "global",
                "badRequest",
                "The requested ordering is not available for the particular query.",
            ));
        }
        Some(other) => return Err(invalid_parameter("orderBy", other)),
    }
    let needle = params.get("q").map(str::to_lowercase);
    let show_deleted = params.bool("showDeleted");
    let mut matching: Vec<&Value> = calendar
        .events
        .iter()
        .filter(|e| show_deleted || e["status"] != "cancelled")
        .filter(|e| {
            let Some((start, end)) = event_span(e) else { return true };
            min_time.is_none_or(|min| end > min) && max_time.is_none_or(|max| start < max)
        })
        .filter(|e| needle.as_ref().is_none_or(|n| searchable(e).contains(n.as_str())))
        .collect();
    match order {
        Some("startTime") => matching.sort_by_key(|e| event_span(e).map(|(s, _)| s).unwrap_or(i64::MAX)),
        Some("updated") => matching.sort_by_key(|e| e["updated"].as_str().unwrap_or("").to_string()),
        _ => {}
    }
    let items: Vec<Value> = matching.iter().skip(offset).take(max).map(|e| (*e).clone()).collect();
    let mut body = json!({
        "kind": "calendar#events",
        "etag": format!("\"{}\"", calendar.events.len()),
        "summary": calendar.summary,
        "description": "",
        "updated": format_time(unix_now(), true),
        "timeZone": "UTC",
        "accessRole": "owner",
        "defaultReminders": [],
        "items": items,
    });
    if offset + max < matching.len() {
        body["nextPageToken"] = json!(page_token(offset + max));
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn searchable(event: &Value) -> String {
    let mut text = String::new();
    for key in ["summary", "description", "location"] {
        if let Some(value) = event[key].as_str() {
            text.push_str(value);
            text.push('\n');
        }
    }
    for attendee in event["attendees"].as_array().into_iter().flatten() {
        for key in ["email", "displayName"] {
            if let Some(value) = attendee[key].as_str() {
                text.push_str(value);
                text.push('\n');
            }
        }
    }
    text.to_lowercase()
}

fn time_range_empty(location: &str) -> ApiError {
    ApiError::new(400, "calendar", "timeRangeEmpty", "The specified time range is empty.").at("parameter", location)
}

/// `sendUpdates`: `all`, `externalOnly` or `none`.
fn send_updates(params: &Params) -> Result<Option<String>, ApiError> {
    match params.get("sendUpdates") {
        None => Ok(None),
        Some(value @ ("all" | "externalOnly" | "none")) => Ok(Some(value.to_string())),
        Some(other) => Err(invalid_parameter("sendUpdates", other)),
    }
}

fn json_body(req: &Req) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ApiError::new(400, "global", "parseError", "Parse Error")),
    }
}

/// The event's id rule: "characters allowed in the ID are those used in base32hex encoding, i.e.
/// lowercase letters a-v and digits 0-9 ... the length of the ID must be between 5 and 1024".
fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len()) && id.chars().all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c))
}

/// Checks `start`/`end` ("required" for insert and update; "A time zone offset is required unless a
/// time zone is explicitly specified in timeZone"; end not before start).
fn check_times(event: &Map<String, Value>) -> Result<(), ApiError> {
    let mut instants = Vec::new();
    for key in ["start", "end"] {
        let Some(value) = event.get(key).filter(|v| !v.is_null()) else {
            return Err(ApiError::new(400, "global", "required", &format!("Missing {key} time.")));
        };
        let all_day = value.get("date").and_then(Value::as_str);
        let date_time = value.get("dateTime").and_then(Value::as_str);
        let time_zone = value.get("timeZone").and_then(Value::as_str);
        let instant = match (all_day, date_time) {
            (Some(date), None) => (parse_date(date).ok_or_else(ApiError::bad_request)?, true),
            (None, Some(date_time)) => match parse_rfc3339(date_time) {
                Some((t, true)) => (t, false),
                Some((t, false)) if time_zone.is_some() => (t, false),
                Some(_) => {
                    return Err(ApiError::new(
                        400,
                        "global",
                        "required",
                        &format!("Missing time zone definition for {key} time."),
                    ));
                }
                None => return Err(ApiError::bad_request()),
            },
            _ => return Err(ApiError::new(400, "global", "required", &format!("Missing {key} time."))),
        };
        instants.push(instant);
    }
    if instants[0].1 != instants[1].1 {
        return Err(ApiError::new(
            400,
            "global",
            "invalid",
            "Start and end times must either both be date or both be dateTime.",
        ));
    }
    if instants[1].0 < instants[0].0 {
        return Err(ApiError::new(400, "calendar", "timeRangeEmpty", "The specified time range is empty."));
    }
    Ok(())
}

fn check_attendees(event: &Map<String, Value>) -> Result<(), ApiError> {
    for attendee in event.get("attendees").and_then(Value::as_array).into_iter().flatten() {
        let email = attendee.get("email").and_then(Value::as_str).unwrap_or("");
        let valid = email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !valid {
            return Err(ApiError::new(400, "global", "invalid", "Invalid attendee email."));
        }
    }
    Ok(())
}

fn next_etag(state: &mut State) -> String {
    state.counter += 1;
    format!("\"{}\"", 3_000_000_000_000_000u64 + state.counter)
}

// https://developers.google.com/workspace/calendar/api/v3/reference/events/insert — body Event
// (start and end required; client-chosen `id` under the rules quoted in `valid_event_id`), query
// sendUpdates all|externalOnly|none; https://developers.google.com/workspace/calendar/api/guides/errors
// "409: The requested identifier already exists" (reason duplicate).
fn insert_event(config: &GoogleConfig, state: &mut State, calendar: &str, params: &Params, req: &Req) -> ApiResult {
    let index = calendar_index(config, state, calendar)?;
    let send = send_updates(params)?;
    let mut event = json_body(req)?;
    let id = match event.get("id").and_then(Value::as_str) {
        Some(id) if !valid_event_id(id) => {
            return Err(ApiError::new(400, "global", "invalid", "Invalid resource id value."));
        }
        Some(id) => id.to_string(),
        None => random(26, BASE32HEX),
    };
    if state.calendars[index].events.iter().any(|e| e["id"] == id.as_str()) {
        return Err(ApiError::new(409, "global", "duplicate", "The requested identifier already exists."));
    }
    check_times(&event)?;
    check_attendees(&event)?;
    let now = format_time(unix_now(), true);
    let etag = next_etag(state);
    for (key, value) in [
        ("kind", json!("calendar#event")),
        ("etag", json!(etag)),
        ("id", json!(id)),
        ("htmlLink", json!(format!("https://www.google.com/calendar/event?eid={id}"))),
        ("created", json!(now)),
        ("updated", json!(now)),
        ("creator", json!({"email": config.user_email, "self": true})),
        ("organizer", json!({"email": state.calendars[index].id, "self": true})),
        ("iCalUID", json!(format!("{id}@google.com"))),
    ] {
        event.insert(key.to_string(), value);
    }
    for (key, value) in [
        ("status", json!("confirmed")),
        ("sequence", json!(0)),
        ("reminders", json!({"useDefault": true})),
        ("eventType", json!("default")),
    ] {
        event.entry(key.to_string()).or_insert(value);
    }
    let event = Value::Object(event);
    let calendar_id = state.calendars[index].id.clone();
    state.calendars[index].events.push(event.clone());
    state.writes.push(EventWrite { op: "insert".to_string(), calendar_id, event_id: id, send_updates: send });
    Ok(json_response(StatusCode::OK, &event))
}

// https://developers.google.com/workspace/calendar/api/v3/reference/events/get — "The get method
// always returns" cancelled events; 404 notFound for an unknown id.
fn get_event(config: &GoogleConfig, state: &State, calendar: &str, event: &str) -> ApiResult {
    let calendar = resolve_calendar(config, state, calendar)?;
    let found = calendar.events.iter().find(|e| e["id"] == event).ok_or_else(ApiError::not_found)?;
    Ok(json_response(StatusCode::OK, found))
}

/// The `If-Match` check (https://developers.google.com/workspace/calendar/api/guides/version-resources,
/// errors guide "412: Precondition Failed").
fn check_if_match(req: &Req, event: &Value) -> Result<(), ApiError> {
    match header_str(&req.headers, header::IF_MATCH.as_str()) {
        Some(etag) if etag != "*" && event["etag"].as_str() != Some(etag.as_str()) => {
            Err(ApiError::new(412, "global", "conditionNotMet", "Precondition Failed").at("header", "If-Match"))
        }
        _ => Ok(()),
    }
}

/// Fields the server owns: a patch or update cannot change them.
const SERVER_FIELDS: &[&str] = &["kind", "etag", "id", "htmlLink", "created", "updated", "creator", "iCalUID"];

// https://developers.google.com/workspace/calendar/api/v3/reference/events/patch ("This method
// supports patch semantics") and .../events/update (PUT, the whole resource; start and end required);
// sendUpdates; 404 notFound.
fn modify_event(
    config: &GoogleConfig,
    state: &mut State,
    calendar: &str,
    event_id: &str,
    params: &Params,
    req: &Req,
    patch: bool,
) -> ApiResult {
    let index = calendar_index(config, state, calendar)?;
    let send = send_updates(params)?;
    let body = json_body(req)?;
    let position =
        state.calendars[index].events.iter().position(|e| e["id"] == event_id).ok_or_else(ApiError::not_found)?;
    let current = state.calendars[index].events[position].clone();
    check_if_match(req, &current)?;
    let Value::Object(current_map) = current else {
        return Err(ApiError::not_found());
    };
    let mut next = if patch {
        let mut merged = current_map.clone();
        merge(&mut merged, &body);
        merged
    } else {
        let mut replaced = body.clone();
        for key in ["organizer", "status", "sequence", "reminders", "eventType"] {
            if !replaced.contains_key(key)
                && let Some(value) = current_map.get(key)
            {
                replaced.insert(key.to_string(), value.clone());
            }
        }
        replaced
    };
    for key in SERVER_FIELDS {
        match current_map.get(*key) {
            Some(value) => next.insert(key.to_string(), value.clone()),
            None => next.remove(*key),
        };
    }
    check_times(&next)?;
    check_attendees(&next)?;
    let etag = next_etag(state);
    next.insert("etag".to_string(), json!(etag));
    next.insert("updated".to_string(), json!(format_time(unix_now(), true)));
    let next = Value::Object(next);
    state.calendars[index].events[position] = next.clone();
    let calendar_id = state.calendars[index].id.clone();
    state.writes.push(EventWrite {
        op: if patch { "patch" } else { "update" }.to_string(),
        calendar_id,
        event_id: event_id.to_string(),
        send_updates: send,
    });
    Ok(json_response(StatusCode::OK, &next))
}

/// Patch semantics: objects merge recursively, other values (arrays included) replace, `null`
/// clears.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match (target.get_mut(key), value) {
            (_, Value::Null) => {
                target.remove(key);
            }
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

// https://developers.google.com/workspace/calendar/api/v3/reference/events/delete — "If successful,
// this method returns an empty response body" (204); errors guide: 410 deleted "if a request attempts
// to delete an event that has already been deleted", 404 notFound.
fn delete_event(
    config: &GoogleConfig,
    state: &mut State,
    calendar: &str,
    event_id: &str,
    params: &Params,
    req: &Req,
) -> ApiResult {
    let index = calendar_index(config, state, calendar)?;
    let send = send_updates(params)?;
    let position =
        state.calendars[index].events.iter().position(|e| e["id"] == event_id).ok_or_else(ApiError::not_found)?;
    let event = &state.calendars[index].events[position];
    if event["status"] == "cancelled" {
        return Err(ApiError::new(410, "global", "deleted", "Resource has been deleted"));
    }
    check_if_match(req, event)?;
    let etag = next_etag(state);
    let event = &mut state.calendars[index].events[position];
    event["status"] = json!("cancelled");
    event["etag"] = json!(etag);
    event["updated"] = json!(format_time(unix_now(), true));
    let calendar_id = state.calendars[index].id.clone();
    state.writes.push(EventWrite {
        op: "delete".to_string(),
        calendar_id,
        event_id: event_id.to_string(),
        send_updates: send,
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// The `[start, end)` of an event in Unix seconds, when its times parse.
fn event_span(event: &Value) -> Option<(i64, i64)> {
    let instant = |value: &Value| -> Option<i64> {
        if let Some(date) = value.get("date").and_then(Value::as_str) {
            return parse_date(date);
        }
        value.get("dateTime").and_then(Value::as_str).and_then(parse_rfc3339).map(|(t, _)| t)
    };
    Some((instant(&event["start"])?, instant(&event["end"])?))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const URL_SAFE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
const BASE32HEX: &[u8] = b"0123456789abcdefghijklmnopqrstuv";

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn whole_seconds(lifetime: Duration) -> u64 {
    let secs = lifetime.as_secs();
    if lifetime.subsec_nanos() > 0 { secs + 1 } else { secs }
}

fn pairs(encoded: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded.as_bytes()).into_owned().collect()
}

fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    response
}

/// A token endpoint answer (`Cache-Control: no-store`, as OAuth token responses carry).
fn token_json(body: Value) -> Response {
    let mut response = json_response(StatusCode::OK, &body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = json_response(status, &json!({"error": error, "error_description": description}));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"));
    response
}

fn plain(status: StatusCode, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Google's authorization error page ("Error 400: invalid_request" and the details), which the
/// user sees instead of being redirected.
fn error_page(status: StatusCode, error: &str, detail: &str) -> Response {
    let body = format!(
        "<html><body><h1>Access blocked: authorization error</h1><p>Error {}: {error}</p><p>{detail}</p>\
         <p>error={error}</p></body></html>",
        status.as_u16()
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn redirect_with(base: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    let location = format!("{base}{separator}{}", query.finish());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn number(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `YYYY-MM-DD` to Unix seconds at midnight UTC.
fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (year, month, day) = (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) || text.len() != 10 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400)
}

/// An RFC 3339 date-time: Unix seconds, and whether it carried an offset (without one it is read
/// as UTC).
fn parse_rfc3339(text: &str) -> Option<(i64, bool)> {
    if text.len() < 19 {
        return None;
    }
    let (date, rest) = text.split_at(10);
    let separator = rest.chars().next()?;
    if !matches!(separator, 'T' | 't' | ' ') {
        return None;
    }
    let rest = &rest[1..];
    let days = parse_date(date)?;
    let (clock, zone) = rest.split_at(8.min(rest.len()));
    let mut fields = clock.split(':');
    let (hour, minute, second) = (number(fields.next()?)?, number(fields.next()?)?, number(fields.next()?)?);
    if hour > 23 || minute > 59 || second > 60 || clock.len() != 8 {
        return None;
    }
    let mut zone = zone;
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        zone = &fraction[digits..];
    }
    let base = days + hour * 3600 + minute * 60 + second;
    match zone {
        "" => Some((base, false)),
        "Z" | "z" => Some((base, true)),
        offset => {
            let sign = match offset.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = offset[1..].split_once(':')?;
            let (hours, minutes) = (number(hours)?, number(minutes)?);
            if hours > 23 || minutes > 59 || offset.len() != 6 {
                return None;
            }
            Some((base - sign * (hours * 3600 + minutes * 60), true))
        }
    }
}

/// Unix seconds as RFC 3339 in UTC (`2030-01-01T09:00:00Z`, or with `.000` milliseconds).
fn format_time(secs: i64, millis: bool) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let fraction = if millis { ".000" } else { "" };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}
