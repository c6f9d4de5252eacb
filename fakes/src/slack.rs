//! A fake Slack, written from Slack's developer documentation (docs.slack.dev): the OAuth v2
//! install flow with optional token rotation, and the Web API methods Sluice's Slack integration
//! calls. One local port serves both `GET /oauth/v2/authorize` and `/api/<method>`, plus the
//! upload URLs `files.getUploadURLExternal` hands out (`/upload/v1/<ticket>`).
//!
//! What it covers, and refuses as Slack documents:
//!
//! * **Authorize** (`GET /oauth/v2/authorize`): `client_id`, `scope` and `user_scope` as
//!   COMMA-separated lists, `redirect_uri`, `state`, optional PKCE `code_challenge` /
//!   `code_challenge_method`. A scope list with whitespace in it, an unknown scope, or Sign in
//!   with Slack scopes mixed with others redirects back with `error=invalid_scope`. An unknown
//!   `client_id`, or a `redirect_uri` outside [`SlackConfig::redirect_urls`], is answered with a
//!   400 page: Slack cannot trust such a URI to redirect to. Codes are single use, expire after
//!   [`SlackConfig::code_lifetime`] (ten minutes, as documented) and are bound to the client, the
//!   redirect URI, the scopes and the PKCE challenge. Scopes are additive across installs.
//! * **`oauth.v2.access`**: client credentials by HTTP Basic or as `client_id`/`client_secret`
//!   parameters (form, query or JSON). Errors are HTTP 200 `{ok:false,error}`: `invalid_client_id`,
//!   `bad_client_secret`, `invalid_code`, `bad_redirect_uri`, `invalid_code_verifier`,
//!   `invalid_grant_type`, `invalid_refresh_token`. With [`SlackConfig::rotation`] set, tokens are
//!   `xoxe.xoxb-1-…`/`xoxe.xoxp-1-…` (the documented prefix of rotating tokens) with `expires_in`
//!   and an `xoxe-1-…` refresh token; a refresh answers a new access token AND a new refresh token,
//!   the refresh token used is revoked after [`SlackConfig::refresh_grace`], the old access token
//!   keeps working until it expires, and at most two access tokens per installation stay active
//!   (the oldest is revoked). Without rotation tokens are `xoxb-…`/`xoxp-…`, never expire, and a
//!   re-install answers the same token with the union of the scopes.
//! * **Web API** under `/api/<method>`: the token as `Authorization: Bearer` or as a form `token`
//!   parameter (never in the query string nor in a JSON body: `not_authed`); arguments as query
//!   string, form body, multipart body or — for the write methods that support it — a JSON body
//!   (`invalid_json`, `json_not_object`, `missing_post_type`, `invalid_post_type`). Unknown or
//!   revoked token: `invalid_auth`; expired: `token_expired`; missing scope: `missing_scope` with
//!   `needed` and `provided`. Every answer to a valid token carries `x-oauth-scopes`. Methods:
//!   `auth.test`, `auth.revoke`, `chat.postMessage` (a `U…` user id posts to the app's DM with
//!   that user), `chat.update`, `chat.delete`, `conversations.open`, `conversations.list`,
//!   `users.list`, `users.lookupByEmail`, `reactions.add`, `files.getUploadURLExternal`,
//!   `files.completeUploadExternal`; the retired `files.upload` answers `method_deprecated`; an
//!   unknown method answers 404 `unknown_method`.
//!
//! Knobs: [`SlackConfig`] (credentials, registered redirect URLs, rotation lifetime, refresh grace,
//! workspace size: public/private channels and users, whether the bot was invited to the
//! channels); [`FakeSlack::fail_next`] queues per-method failures ([`FakeFailure`]: HTTP 429
//! with `Retry-After`, `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`, or
//! any error code); [`FakeSlack::expire_all_tokens`], [`FakeSlack::revoke_all_tokens`],
//! [`FakeSlack::deny_next_authorization`]. Observation: [`FakeSlack::requests`],
//! [`FakeSlack::token_requests`], [`FakeSlack::last_authorize_query`], [`FakeSlack::messages`],
//! [`FakeSlack::files`].
//!
//! Time: lifetimes are [`Duration`]s measured with [`Instant`], so tests can use lifetimes of a
//! second or two; the `expires_in` answered is the lifetime in whole seconds, rounded up.

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
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// The app's id, as `oauth.v2.access` answers it.
pub const APP_ID: &str = "A0FAKEAPP01";
/// The bot user's id.
pub const BOT_USER_ID: &str = "U0FAKEBOT01";
/// The bot's id (`bot_id` of its messages).
pub const BOT_ID: &str = "B0FAKEBOT01";

/// Bot-token scopes this fake knows (https://docs.slack.dev/reference/scopes). Any other scope in
/// `scope` is refused as `invalid_scope`.
const BOT_SCOPES: &[&str] = &[
    "app_mentions:read",
    "assistant:write",
    "bookmarks:read",
    "bookmarks:write",
    "calls:read",
    "calls:write",
    "canvases:read",
    "canvases:write",
    "channels:history",
    "channels:join",
    "channels:manage",
    "channels:read",
    "channels:write.invites",
    "channels:write.topic",
    "chat:write",
    "chat:write.customize",
    "chat:write.public",
    "commands",
    "dnd:read",
    "emoji:read",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "groups:write",
    "groups:write.invites",
    "groups:write.topic",
    "im:history",
    "im:read",
    "im:write",
    "incoming-webhook",
    "links:read",
    "links:write",
    "metadata.message:read",
    "mpim:history",
    "mpim:read",
    "mpim:write",
    "pins:read",
    "pins:write",
    "reactions:read",
    "reactions:write",
    "reminders:read",
    "reminders:write",
    "team:read",
    "usergroups:read",
    "usergroups:write",
    "users.profile:read",
    "users:read",
    "users:read.email",
    "users:write",
];

/// User-token scopes this fake knows; `identity.*` are the Sign in with Slack scopes, which cannot
/// be combined with others (https://docs.slack.dev/authentication/installing-with-oauth#errors).
const USER_SCOPES: &[&str] = &[
    "bookmarks:read",
    "bookmarks:write",
    "channels:history",
    "channels:read",
    "channels:write",
    "chat:write",
    "dnd:read",
    "emoji:read",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "groups:write",
    "im:history",
    "im:read",
    "im:write",
    "links:read",
    "links:write",
    "mpim:history",
    "mpim:read",
    "mpim:write",
    "pins:read",
    "pins:write",
    "reactions:read",
    "reactions:write",
    "reminders:read",
    "reminders:write",
    "search:read",
    "stars:read",
    "stars:write",
    "team:read",
    "usergroups:read",
    "usergroups:write",
    "users.profile:read",
    "users.profile:write",
    "users:read",
    "users:read.email",
    "users:write",
    "identity.basic",
    "identity.email",
    "identity.avatar",
    "identity.team",
];

/// The fake's configuration; [`Default`] gives a small workspace without token rotation.
#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// The client id `oauth.v2.access` and the authorize page accept.
    pub client_id: String,
    /// The client secret `oauth.v2.access` accepts.
    pub client_secret: String,
    /// The app's registered Redirect URLs: a `redirect_uri` must equal one or be a subdirectory of
    /// one; without `redirect_uri` the first is used. Empty: any `redirect_uri` is accepted (and one
    /// must be sent).
    pub redirect_urls: Vec<String>,
    /// Token rotation: `Some(lifetime)` of the access tokens (Slack's is 12 hours); `None`: off.
    pub rotation: Option<Duration>,
    /// How long a refresh token keeps working after its first use. Slack revokes it "after a short
    /// grace period" without saying how short; zero (the default) makes any reuse fail.
    pub refresh_grace: Duration,
    /// Lifetime of an authorization code (Slack: ten minutes).
    pub code_lifetime: Duration,
    /// Public channels in the workspace (`general`, `random`, then `channel-0003`, …).
    pub channels: usize,
    /// Private channels (`private-0001`, …); the bot is a member of them iff `bot_in_channels`.
    pub private_channels: usize,
    /// Human users (`user1@example.com`, …); the first one installs the app.
    pub users: usize,
    /// Whether the bot was invited to every channel. When false, posting to a public channel
    /// needs `chat:write.public` (else `not_in_channel`) and private channels are invisible to it.
    pub bot_in_channels: bool,
    /// The workspace's id and name, as `team` in `oauth.v2.access`.
    pub team_id: String,
    /// See `team_id`.
    pub team_name: String,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            client_id: "1111111111.2222222222".to_string(),
            client_secret: "fake-slack-client-secret".to_string(),
            redirect_urls: Vec::new(),
            rotation: None,
            refresh_grace: Duration::ZERO,
            code_lifetime: Duration::from_secs(600),
            channels: 2,
            private_channels: 1,
            users: 3,
            bot_in_channels: true,
            team_id: "T0FAKETEAM1".to_string(),
            team_name: "Sluice Test Workspace".to_string(),
        }
    }
}

/// A failure [`FakeSlack::fail_next`] makes a method answer once, instead of running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeFailure {
    /// HTTP 429 with `Retry-After: N` and `{ok:false,error:"ratelimited"}`
    /// (https://docs.slack.dev/apis/web-api/rate-limits).
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// `{ok:false,error:"internal_error"}` (HTTP 200), a transient error.
    InternalError,
    /// `{ok:false,error:"fatal_error"}`.
    FatalError,
    /// `{ok:false,error:"service_unavailable"}`.
    ServiceUnavailable,
    /// `{ok:false,error:"request_timeout"}`.
    RequestTimeout,
    /// `{ok:false,error:<code>}` for any other documented code.
    Error(String),
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/api/chat.postMessage`.
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

/// A message posted through the API, as the fake stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct PostedMessage {
    /// The conversation id (`C…`, or the `D…` DM the message went to).
    pub channel: String,
    /// The message's `ts`.
    pub ts: String,
    /// `text`, if any.
    pub text: Option<String>,
    /// `blocks` (parsed JSON), if any.
    pub blocks: Option<Value>,
    /// `attachments` (parsed JSON), if any.
    pub attachments: Option<Value>,
    /// `thread_ts` the message replies to, if any.
    pub thread_ts: Option<String>,
    /// The author: the bot user id or the user of a user token.
    pub user: String,
    /// Whether `chat.update` changed it.
    pub edited: bool,
    /// Whether `chat.delete` removed it.
    pub deleted: bool,
    /// Reaction names added with `reactions.add`.
    pub reactions: Vec<String>,
    /// File ids shared with it (`files.completeUploadExternal`).
    pub files: Vec<String>,
}

/// A file announced with `files.getUploadURLExternal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedFile {
    /// `F…` id.
    pub id: String,
    /// `filename` announced.
    pub filename: String,
    /// `length` announced.
    pub length: usize,
    /// The bytes posted to the upload URL, once posted.
    pub bytes: Option<Vec<u8>>,
    /// `title` given at completion.
    pub title: Option<String>,
    /// Whether `files.completeUploadExternal` finished it.
    pub completed: bool,
    /// Channel it was shared to, if any.
    pub channel: Option<String>,
    /// `initial_comment`, if any.
    pub initial_comment: Option<String>,
    /// `thread_ts`, if any.
    pub thread_ts: Option<String>,
}

/// The running fake: `base_url` serves the OAuth pages and the API.
#[derive(Clone)]
pub struct FakeSlack {
    /// `http://127.0.0.1:PORT`; the API is `{base_url}/api`.
    pub base_url: String,
    shared: Arc<Shared>,
}

struct Shared {
    config: SlackConfig,
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Bot,
    User,
}

struct AccessToken {
    kind: Kind,
    /// The bot user id, or the user's id.
    owner: String,
    expires_at: Option<Instant>,
    revoked: bool,
}

struct RefreshToken {
    kind: Kind,
    owner: String,
    used_at: Option<Instant>,
    revoked: bool,
}

struct Code {
    client_id: String,
    redirect_sent: Option<String>,
    redirect_used: String,
    bot_scopes: Vec<String>,
    user_scopes: Vec<String>,
    challenge: Option<(String, String)>,
    issued: Instant,
    used: bool,
    user: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelKind {
    Public,
    Private,
    Im,
    Mpim,
}

struct Channel {
    id: String,
    name: Option<String>,
    kind: ChannelKind,
    created: u64,
    bot_member: bool,
    /// For IMs and MPIMs: the users in it besides the opener.
    members: Vec<String>,
}

struct User {
    id: String,
    name: String,
    real_name: String,
    email: String,
    is_bot: bool,
}

#[derive(Default)]
struct State {
    base_url: String,
    requests: Vec<Recorded>,
    token_requests: HashMap<String, usize>,
    last_authorize: Option<BTreeMap<String, String>>,
    deny_next: bool,
    codes: HashMap<String, Code>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    /// Rotating access tokens per owner, oldest first (the 2-active-tokens rule).
    rotated: HashMap<(Kind, String), VecDeque<String>>,
    bot_scopes: BTreeSet<String>,
    user_scopes: HashMap<String, BTreeSet<String>>,
    stable_tokens: HashMap<(Kind, String), String>,
    failures: HashMap<String, VecDeque<FakeFailure>>,
    channels: Vec<Channel>,
    users: Vec<User>,
    messages: Vec<PostedMessage>,
    files: Vec<UploadedFile>,
    uploads: HashMap<String, String>,
    counter: u64,
}

struct Req {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl FakeSlack {
    /// Starts the fake on a free local port.
    pub async fn start(config: SlackConfig) -> std::io::Result<FakeSlack> {
        let state = seed(&config);
        let shared = Arc::new(Shared { config, state: Mutex::new(state) });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let base_url = crate::serve(app).await?;
        lock(&shared).base_url = base_url.clone();
        Ok(FakeSlack { base_url, shared })
    }

    /// `{base_url}/oauth/v2/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/v2/authorize", self.base_url)
    }

    /// `{base_url}/api/oauth.v2.access`.
    pub fn token_url(&self) -> String {
        format!("{}/api/oauth.v2.access", self.base_url)
    }

    /// `{base_url}/api`, the Web API base.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base_url)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SlackConfig {
        &self.shared.config
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// How many `oauth.v2.access` calls carried this `grant_type` (an absent `grant_type` counts as
    /// `authorization_code`).
    pub fn token_requests(&self, grant_type: &str) -> usize {
        lock(&self.shared).token_requests.get(grant_type).copied().unwrap_or(0)
    }

    /// The query parameters of the last authorize request.
    pub fn last_authorize_query(&self) -> Option<BTreeMap<String, String>> {
        lock(&self.shared).last_authorize.clone()
    }

    /// Makes the next call of `method` (e.g. `chat.postMessage`) answer `failure`; queued
    /// failures are answered in order.
    pub fn fail_next(&self, method: &str, failure: FakeFailure) {
        lock(&self.shared).failures.entry(method.to_string()).or_default().push_back(failure);
    }

    /// Makes every access token issued so far expired (`token_expired`).
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for token in lock(&self.shared).access.values_mut() {
            token.expires_at = Some(now);
        }
    }

    /// Revokes every access and refresh token issued so far (`invalid_auth`,
    /// `invalid_refresh_token`), as an uninstall does.
    pub fn revoke_all_tokens(&self) {
        let mut state = lock(&self.shared);
        for token in state.access.values_mut() {
            token.revoked = true;
        }
        for token in state.refresh.values_mut() {
            token.revoked = true;
        }
    }

    /// Makes the next authorization redirect back with `error=access_denied` (the user clicked
    /// Cancel).
    pub fn deny_next_authorization(&self) {
        lock(&self.shared).deny_next = true;
    }

    /// Installs the app without going through OAuth and answers a bot token with `scopes`
    /// (a rotating one when rotation is on). For tests of the API alone.
    pub fn install(&self, scopes: &[&str]) -> String {
        let config = &self.shared.config;
        let mut state = lock(&self.shared);
        state.bot_scopes.extend(scopes.iter().map(|s| s.to_string()));
        mint(config, &mut state, Kind::Bot, BOT_USER_ID).0
    }

    /// Messages posted, oldest first (deleted ones included, flagged).
    pub fn messages(&self) -> Vec<PostedMessage> {
        lock(&self.shared).messages.clone()
    }

    /// Files announced, with their bytes once uploaded.
    pub fn files(&self) -> Vec<UploadedFile> {
        lock(&self.shared).files.clone()
    }

    /// The id of the channel named `name` (`general`, `random`, `channel-0003`, `private-0001`).
    pub fn channel_id(&self, name: &str) -> Option<String> {
        lock(&self.shared).channels.iter().find(|c| c.name.as_deref() == Some(name)).map(|c| c.id.clone())
    }

    /// Ids of the human users, in order (the first one installs the app).
    pub fn user_ids(&self) -> Vec<String> {
        lock(&self.shared).users.iter().filter(|u| !u.is_bot).map(|u| u.id.clone()).collect()
    }

    /// The id of the user with this email.
    pub fn user_id_by_email(&self, email: &str) -> Option<String> {
        lock(&self.shared).users.iter().find(|u| u.email.eq_ignore_ascii_case(email)).map(|u| u.id.clone())
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn seed(config: &SlackConfig) -> State {
    let created = unix_now();
    let mut state = State::default();
    let mut n = 0u64;
    for i in 0..config.channels {
        n += 1;
        let name = match i {
            0 => "general".to_string(),
            1 => "random".to_string(),
            _ => format!("channel-{:04}", i + 1),
        };
        state.channels.push(Channel {
            id: format!("C{n:010}"),
            name: Some(name),
            kind: ChannelKind::Public,
            created,
            bot_member: config.bot_in_channels,
            members: Vec::new(),
        });
    }
    for i in 0..config.private_channels {
        n += 1;
        state.channels.push(Channel {
            id: format!("C{n:010}"),
            name: Some(format!("private-{:04}", i + 1)),
            kind: ChannelKind::Private,
            created,
            bot_member: config.bot_in_channels,
            members: Vec::new(),
        });
    }
    for i in 0..config.users {
        state.users.push(User {
            id: format!("U{:010}", i + 1),
            name: format!("user{}", i + 1),
            real_name: format!("User {}", i + 1),
            email: format!("user{}@example.com", i + 1),
            is_bot: false,
        });
    }
    state.users.push(User {
        id: BOT_USER_ID.to_string(),
        name: "sluice".to_string(),
        real_name: "Sluice".to_string(),
        email: String::new(),
        is_bot: true,
    });
    state
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 256 * 1024 * 1024).await.unwrap_or_default();
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
    if req.path == "/oauth/v2/authorize" && req.method == Method::GET {
        return authorize(&shared, &req);
    }
    if let Some(ticket) = req.path.strip_prefix("/upload/v1/") {
        return upload(&shared, &req, ticket);
    }
    if let Some(method) = req.path.strip_prefix("/api/") {
        let method = method.to_string();
        let failure = lock(&shared).failures.get_mut(&method).and_then(VecDeque::pop_front);
        if let Some(failure) = failure {
            return failure_response(&failure);
        }
        if method == "oauth.v2.access" {
            return oauth_access(&shared, &req);
        }
        return api(&shared, &req, &method);
    }
    text(StatusCode::NOT_FOUND, "not found")
}

// ---------------------------------------------------------------------------------------------
// OAuth
// ---------------------------------------------------------------------------------------------

// https://docs.slack.dev/authentication/installing-with-oauth — "Requesting scopes": client_id, a
// comma-separated `scope` (bot) and `user_scope` (user), `redirect_uri` (must match or be a
// subdirectory of a configured Redirect URL), `state`; errors `invalid_scope`, `bad_redirect_uri`.
fn authorize(shared: &Shared, req: &Req) -> Response {
    let config = &shared.config;
    let query = pairs(&req.query);
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let mut state = lock(shared);
    state.last_authorize = Some(query.iter().cloned().collect());

    if get("client_id").as_deref() != Some(config.client_id.as_str()) {
        return page(StatusCode::BAD_REQUEST, "invalid_client_id", "The client_id parameter is missing or unknown.");
    }
    let sent_redirect = get("redirect_uri").filter(|r| !r.is_empty());
    let redirect = match &sent_redirect {
        Some(r) if redirect_allowed(config, r) => r.clone(),
        Some(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "bad_redirect_uri",
                "redirect_uri does not match a Redirect URL configured for the app.",
            );
        }
        None => match config.redirect_urls.first() {
            Some(r) => r.clone(),
            None => {
                return page(StatusCode::BAD_REQUEST, "bad_redirect_uri", "No redirect_uri sent and none configured.");
            }
        },
    };
    let st = get("state");
    if std::mem::take(&mut state.deny_next) {
        return redirect_with(&redirect, &[("error", "access_denied")], st.as_deref());
    }
    let bot = parse_scopes(get("scope").as_deref(), BOT_SCOPES);
    let user = parse_scopes(get("user_scope").as_deref(), USER_SCOPES);
    let (Some(bot), Some(user)) = (bot, user) else {
        return redirect_with(&redirect, &[("error", "invalid_scope")], st.as_deref());
    };
    let identity = user.iter().any(|s| s.starts_with("identity."));
    let other = !bot.is_empty() || user.iter().any(|s| !s.starts_with("identity."));
    if (bot.is_empty() && user.is_empty()) || (identity && other) {
        return redirect_with(&redirect, &[("error", "invalid_scope")], st.as_deref());
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), method) => {
            let method = method.unwrap_or_else(|| "plain".to_string());
            if method != "S256" && method != "plain" {
                return redirect_with(&redirect, &[("error", "invalid_request")], st.as_deref());
            }
            Some((c, method))
        }
        (None, Some(_)) => return redirect_with(&redirect, &[("error", "invalid_request")], st.as_deref()),
    };
    let code = format!("{}.{}.{}", random(10, DIGITS), random(13, DIGITS), random(64, HEX));
    let installer = state.users.first().map(|u| u.id.clone()).unwrap_or_default();
    state.codes.insert(
        code.clone(),
        Code {
            client_id: config.client_id.clone(),
            redirect_sent: sent_redirect,
            redirect_used: redirect.clone(),
            bot_scopes: bot,
            user_scopes: user,
            challenge,
            issued: Instant::now(),
            used: false,
            user: installer,
        },
    );
    redirect_with(&redirect, &[("code", &code)], st.as_deref())
}

fn redirect_allowed(config: &SlackConfig, uri: &str) -> bool {
    if uri.contains('#') {
        return false;
    }
    config.redirect_urls.is_empty()
        || config
            .redirect_urls
            .iter()
            .any(|r| uri == r || uri.strip_prefix(r.trim_end_matches('/')).is_some_and(|rest| rest.starts_with('/')))
}

/// A comma-separated scope list: `None` when it has whitespace or an unknown scope.
fn parse_scopes(list: Option<&str>, known: &[&str]) -> Option<Vec<String>> {
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Some(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    for scope in list.split(',') {
        if scope.is_empty() {
            continue;
        }
        if scope.chars().any(char::is_whitespace) || !known.contains(&scope) {
            return None;
        }
        if !out.iter().any(|s| s == scope) {
            out.push(scope.to_string());
        }
    }
    Some(out)
}

// https://docs.slack.dev/reference/methods/oauth.v2.access — client_id/client_secret (or HTTP Basic),
// code, code_verifier, redirect_uri ("required if your app passed it ... to oauth/authorization"),
// grant_type, refresh_token; errors invalid_client_id, bad_client_secret, invalid_code,
// invalid_code_verifier, bad_redirect_uri, invalid_grant_type, invalid_refresh_token.
// https://docs.slack.dev/authentication/using-token-rotation — refresh with grant_type=refresh_token;
// new access and refresh tokens; the used refresh token is revoked after a short grace period; the
// old access token is not invalidated; at most 2 active tokens.
fn oauth_access(shared: &Shared, req: &Req) -> Response {
    let config = &shared.config;
    let args = match parse_args(req, true) {
        Ok(args) => args,
        Err(error) => return slack_error(error),
    };
    let grant = args.str("grant_type").unwrap_or_else(|| "authorization_code".to_string());
    let mut state = lock(shared);
    *state.token_requests.entry(grant.clone()).or_default() += 1;
    let (client_id, client_secret) = match basic_credentials(&req.headers) {
        Some(pair) => (Some(pair.0), Some(pair.1)),
        None => (args.str("client_id"), args.str("client_secret")),
    };
    if client_id.as_deref() != Some(config.client_id.as_str()) {
        return slack_error("invalid_client_id");
    }
    if client_secret.as_deref() != Some(config.client_secret.as_str()) {
        return slack_error("bad_client_secret");
    }
    match grant.as_str() {
        "authorization_code" => code_grant(config, &mut state, &args),
        "refresh_token" => refresh_grant(config, &mut state, &args),
        _ => slack_error("invalid_grant_type"),
    }
}

fn code_grant(config: &SlackConfig, state: &mut State, args: &Args) -> Response {
    let Some(code_value) = args.str("code") else {
        return slack_error("invalid_code");
    };
    let Some(code) = state.codes.get(&code_value) else {
        return slack_error("invalid_code");
    };
    if code.used || code.issued.elapsed() >= config.code_lifetime || code.client_id != config.client_id {
        return slack_error("invalid_code");
    }
    let sent = args.str("redirect_uri");
    match (&code.redirect_sent, &sent) {
        (Some(expected), got) if got.as_ref() != Some(expected) => return slack_error("bad_redirect_uri"),
        (None, Some(got)) if *got != code.redirect_used => return slack_error("bad_redirect_uri"),
        _ => {}
    }
    if let Some((challenge, method)) = &code.challenge {
        let Some(verifier) = args.str("code_verifier") else {
            return slack_error("invalid_code_verifier");
        };
        if !pkce_matches(challenge, method, &verifier) {
            return slack_error("invalid_code_verifier");
        }
    }
    let bot_scopes = code.bot_scopes.clone();
    let user_scopes = code.user_scopes.clone();
    let user = code.user.clone();
    if let Some(code) = state.codes.get_mut(&code_value) {
        code.used = true;
    }

    let mut body = json!({
        "ok": true,
        "app_id": APP_ID,
        "team": {"id": config.team_id, "name": config.team_name},
        "enterprise": null,
        "is_enterprise_install": false,
    });
    if !bot_scopes.is_empty() {
        state.bot_scopes.extend(bot_scopes);
        let (access, refresh) = mint(config, state, Kind::Bot, BOT_USER_ID);
        body["access_token"] = json!(access);
        body["token_type"] = json!("bot");
        body["scope"] = json!(join(&state.bot_scopes));
        body["bot_user_id"] = json!(BOT_USER_ID);
        if let (Some(refresh), Some(lifetime)) = (refresh, config.rotation) {
            body["expires_in"] = json!(whole_seconds(lifetime));
            body["refresh_token"] = json!(refresh);
        }
    }
    let mut authed = json!({"id": user});
    if !user_scopes.is_empty() {
        let granted = state.user_scopes.entry(user.clone()).or_default();
        granted.extend(user_scopes);
        let scope = join(granted);
        let (access, refresh) = mint(config, state, Kind::User, &user);
        authed["scope"] = json!(scope);
        authed["access_token"] = json!(access);
        authed["token_type"] = json!("user");
        if let (Some(refresh), Some(lifetime)) = (refresh, config.rotation) {
            authed["expires_in"] = json!(whole_seconds(lifetime));
            authed["refresh_token"] = json!(refresh);
        }
    }
    body["authed_user"] = authed;
    slack_json(body)
}

fn refresh_grant(config: &SlackConfig, state: &mut State, args: &Args) -> Response {
    let Some(token) = args.str("refresh_token") else {
        return slack_error("invalid_refresh_token");
    };
    let now = Instant::now();
    let Some(entry) = state.refresh.get_mut(&token) else {
        return slack_error("invalid_refresh_token");
    };
    let spent = entry.used_at.is_some_and(|used| now >= used + config.refresh_grace);
    if entry.revoked || spent {
        entry.revoked = true;
        return slack_error("invalid_refresh_token");
    }
    entry.used_at.get_or_insert(now);
    let (kind, owner) = (entry.kind, entry.owner.clone());
    let (access, refresh) = mint(config, state, kind, &owner);
    let mut body = json!({
        "ok": true,
        "app_id": APP_ID,
        "access_token": access,
        "expires_in": config.rotation.map(whole_seconds),
        "refresh_token": refresh,
        "team": {"id": config.team_id, "name": config.team_name},
        "enterprise": null,
        "is_enterprise_install": false,
    });
    match kind {
        Kind::Bot => {
            body["token_type"] = json!("bot");
            body["scope"] = json!(join(&state.bot_scopes));
            body["bot_user_id"] = json!(BOT_USER_ID);
        }
        Kind::User => {
            body["token_type"] = json!("user");
            body["scope"] = json!(state.user_scopes.get(&owner).map(join).unwrap_or_default());
            body["user_id"] = json!(owner);
        }
    }
    slack_json(body)
}

/// Issues an access token (and, with rotation, a refresh token) for `owner`.
fn mint(config: &SlackConfig, state: &mut State, kind: Kind, owner: &str) -> (String, Option<String>) {
    let now = Instant::now();
    let Some(lifetime) = config.rotation else {
        let key = (kind, owner.to_string());
        if let Some(token) = state.stable_tokens.get(&key)
            && state.access.get(token).is_some_and(|t| !t.revoked && t.expires_at.is_none_or(|at| now < at))
        {
            return (token.clone(), None);
        }
        let prefix = if kind == Kind::Bot { "xoxb" } else { "xoxp" };
        let token = format!("{prefix}-{}-{}-{}", random(11, DIGITS), random(13, DIGITS), random(24, ALNUM));
        state
            .access
            .insert(token.clone(), AccessToken { kind, owner: owner.to_string(), expires_at: None, revoked: false });
        state.stable_tokens.insert(key, token.clone());
        return (token, None);
    };
    let prefix = if kind == Kind::Bot { "xoxe.xoxb-1" } else { "xoxe.xoxp-1" };
    let access = format!("{prefix}-{}", random(40, ALNUM));
    let refresh = format!("xoxe-1-{}", random(40, ALNUM));
    state.access.insert(
        access.clone(),
        AccessToken { kind, owner: owner.to_string(), expires_at: Some(now + lifetime), revoked: false },
    );
    state
        .refresh
        .insert(refresh.clone(), RefreshToken { kind, owner: owner.to_string(), used_at: None, revoked: false });
    // "we will enforce a limit of 2 active tokens ... the oldest additional token will be revoked".
    let mut active: VecDeque<String> = state.rotated.remove(&(kind, owner.to_string())).unwrap_or_default();
    active.push_back(access.clone());
    active.retain(|t| state.access.get(t).is_some_and(|t| !t.revoked && t.expires_at.is_none_or(|at| now < at)));
    while active.len() > 2 {
        if let Some(oldest) = active.pop_front()
            && let Some(token) = state.access.get_mut(&oldest)
        {
            token.revoked = true;
        }
    }
    state.rotated.insert((kind, owner.to_string()), active);
    (access, Some(refresh))
}

fn pkce_matches(challenge: &str, method: &str, verifier: &str) -> bool {
    match method {
        "S256" => crate::s256(verifier) == challenge,
        _ => verifier == challenge,
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Web API
// ---------------------------------------------------------------------------------------------

/// The arguments of a call, with the token if it came in an accepted place.
struct Args {
    values: Map<String, Value>,
    token: Option<String>,
}

impl Args {
    /// A string argument; absent, `null` and `""` are all `None`.
    fn str(&self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    fn bool(&self, key: &str) -> bool {
        match self.values.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }

    /// A JSON argument: given as JSON in a JSON body, or as a JSON-encoded string in a form.
    fn json(&self, key: &str) -> Result<Option<Value>, ()> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(other) => Ok(Some(other.clone())),
        }
    }
}

/// https://docs.slack.dev/apis/web-api/ — "Pass arguments as GET querystring parameters, POST
/// parameters presented as application/x-www-form-urlencoded, or a mix of both"; JSON bodies only
/// for write methods that support them, with the token in the Authorization header ("You cannot
/// send your token as part of the query string or as an attribute in your posted JSON"); errors
/// invalid_json, json_not_object; common errors missing_post_type, invalid_post_type,
/// invalid_charset, invalid_form_data.
fn parse_args(req: &Req, json_ok: bool) -> Result<Args, &'static str> {
    let mut values = Map::new();
    for (k, v) in pairs(&req.query) {
        if k != "token" {
            values.insert(k, Value::String(v));
        }
    }
    let mut token = None;
    if !req.body.is_empty() {
        let Some(content_type) = header_str(&req.headers, header::CONTENT_TYPE.as_str()) else {
            return Err("missing_post_type");
        };
        let lower = content_type.to_ascii_lowercase();
        let mime = lower.split(';').next().unwrap_or("").trim().to_string();
        if let Some(charset) = lower.split(';').find_map(|p| p.trim().strip_prefix("charset=").map(str::to_string)) {
            let charset = charset.trim_matches('"');
            if charset != "utf-8" && charset != "utf8" && charset != "iso-8859-1" {
                return Err("invalid_charset");
            }
        }
        match mime.as_str() {
            "application/x-www-form-urlencoded" => {
                let body = std::str::from_utf8(&req.body).map_err(|_| "invalid_form_data")?;
                for (k, v) in pairs(body) {
                    if k == "token" {
                        token = Some(v);
                    } else {
                        values.insert(k, Value::String(v));
                    }
                }
            }
            "multipart/form-data" => {
                let parts = parse_multipart(&content_type, &req.body).ok_or("invalid_form_data")?;
                for part in parts {
                    let Some(name) = part.name else { continue };
                    let value = String::from_utf8_lossy(&part.data).into_owned();
                    if name == "token" {
                        token = Some(value);
                    } else {
                        values.insert(name, Value::String(value));
                    }
                }
            }
            "application/json" => {
                if json_ok {
                    let parsed: Value = serde_json::from_slice(&req.body).map_err(|_| "invalid_json")?;
                    let Value::Object(object) = parsed else {
                        return Err("json_not_object");
                    };
                    // "Do not mix arguments between query string, URL-encoded POST body, and JSON".
                    values = object;
                    values.remove("token");
                }
            }
            "text/plain" => {}
            _ => return Err("invalid_post_type"),
        }
    }
    if let Some(bearer) = header_str(&req.headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
    {
        token = Some(bearer);
    }
    Ok(Args { values, token })
}

/// Whether a method accepts `application/json` (its page lists the content type).
fn json_method(method: &str) -> Option<bool> {
    Some(match method {
        "auth.test"
        | "auth.revoke"
        | "chat.postMessage"
        | "chat.update"
        | "chat.delete"
        | "conversations.open"
        | "reactions.add"
        | "files.getUploadURLExternal"
        | "files.completeUploadExternal" => true,
        "conversations.list" | "users.list" | "users.lookupByEmail" => false,
        _ => return None,
    })
}

/// Who is calling: the token's identity and its scopes.
struct Caller {
    token: String,
    kind: Kind,
    user: String,
    scopes: BTreeSet<String>,
}

impl Caller {
    /// `missing_scope` with `needed` and `provided` when `scope` is not granted.
    fn need(&self, scope: &str) -> Result<(), Value> {
        if self.scopes.contains(scope) {
            return Ok(());
        }
        Err(json!({
            "ok": false,
            "error": "missing_scope",
            "needed": scope,
            "provided": join(&self.scopes),
        }))
    }
}

fn api(shared: &Shared, req: &Req, method: &str) -> Response {
    let config = &shared.config;
    let mut state = lock(shared);
    // https://docs.slack.dev/reference/methods/files.upload — "The files.upload API method has been
    // deprecated. It will stop functioning and be officially sunset on November 12, 2025"; error
    // method_deprecated: "This API is deprecated. Please refer to ...".
    if method == "files.upload" {
        return slack_error("method_deprecated");
    }
    let Some(json_ok) = json_method(method) else {
        let mut response = slack_json(json!({"ok": false, "error": "unknown_method", "req_method": method}));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let args = match parse_args(req, json_ok) {
        Ok(args) => args,
        Err(error) => return slack_error(error),
    };
    let caller = match authenticate(&state, &args) {
        Ok(caller) => caller,
        Err(body) => return slack_json(body),
    };
    let result = match method {
        "auth.test" => auth_test(config, &caller),
        "auth.revoke" => auth_revoke(&mut state, &caller, &args),
        "chat.postMessage" => post_message(&mut state, &caller, &args),
        "chat.update" => update_message(&mut state, &caller, &args),
        "chat.delete" => delete_message(&mut state, &caller, &args),
        "conversations.open" => open_conversation(&mut state, &caller, &args),
        "conversations.list" => list_conversations(&state, &caller, &args),
        "users.list" => list_users(&state, &caller, &args),
        "users.lookupByEmail" => lookup_by_email(&state, &caller, &args),
        "reactions.add" => add_reaction(&mut state, &caller, &args),
        "files.getUploadURLExternal" => get_upload_url(&mut state, &caller, &args),
        "files.completeUploadExternal" => complete_upload(&mut state, &caller, &args),
        _ => Err(err("unknown_method")),
    };
    let mut response = slack_json(result.unwrap_or_else(|body| body));
    if let Ok(value) = HeaderValue::from_str(&join(&caller.scopes)) {
        response.headers_mut().insert("x-oauth-scopes", value);
    }
    response
}

/// https://docs.slack.dev/reference/methods/oauth.v2.access (common errors): not_authed "No
/// authentication token provided", invalid_auth, token_expired "Authentication token has expired".
fn authenticate(state: &State, args: &Args) -> Result<Caller, Value> {
    let Some(token) = args.token.clone() else {
        return Err(err("not_authed"));
    };
    let Some(entry) = state.access.get(&token) else {
        return Err(err("invalid_auth"));
    };
    if entry.revoked {
        return Err(err("invalid_auth"));
    }
    if entry.expires_at.is_some_and(|at| Instant::now() >= at) {
        return Err(err("token_expired"));
    }
    let scopes = match entry.kind {
        Kind::Bot => state.bot_scopes.clone(),
        Kind::User => state.user_scopes.get(&entry.owner).cloned().unwrap_or_default(),
    };
    Ok(Caller { token, kind: entry.kind, user: entry.owner.clone(), scopes })
}

type ApiResult = Result<Value, Value>;

// https://docs.slack.dev/reference/methods/auth.test — no scope; answers url, team, user, team_id,
// user_id (and bot_id for bot tokens).
fn auth_test(config: &SlackConfig, caller: &Caller) -> ApiResult {
    let mut body = json!({
        "ok": true,
        "url": "https://sluice-test.slack.com/",
        "team": config.team_name,
        "user": if caller.kind == Kind::Bot { "sluice" } else { "user1" },
        "team_id": config.team_id,
        "user_id": caller.user,
        "is_enterprise_install": false,
    });
    if caller.kind == Kind::Bot {
        body["bot_id"] = json!(BOT_ID);
    }
    Ok(body)
}

// https://docs.slack.dev/reference/methods/auth.revoke — revokes the calling token; `test`
// leaves it alone; answers {ok, revoked}.
fn auth_revoke(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    let test = args.bool("test");
    if !test && let Some(token) = state.access.get_mut(&caller.token) {
        token.revoked = true;
    }
    Ok(json!({"ok": true, "revoked": !test}))
}

// https://docs.slack.dev/reference/methods/chat.postMessage — scope chat:write; `channel` (an id, a
// name, or a user id U… which posts to the app's DM with the user), `text`/`blocks`/`attachments`
// (text not required with blocks or attachments; none of them: no_text), `thread_ts`; answers
// channel, ts, message; errors channel_not_found, not_in_channel, no_text, invalid_blocks_format.
// "New Slack apps do not begin life with the ability to post in all public channels" without
// chat:write.public.
fn post_message(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("chat:write")?;
    let Some(target) = args.str("channel") else {
        return Err(err("channel_not_found"));
    };
    let index = resolve_channel(state, &target).ok_or_else(|| err("channel_not_found"))?;
    check_can_post(&state.channels[index], caller, true)?;
    let text = args.str("text").or_else(|| args.str("markdown_text"));
    let blocks = args.json("blocks").map_err(|()| err("invalid_blocks_format"))?;
    if blocks.as_ref().is_some_and(|b| !b.is_array()) {
        return Err(err("invalid_blocks_format"));
    }
    let attachments = args.json("attachments").map_err(|()| err("invalid_attachments"))?;
    if text.is_none() && blocks.is_none() && attachments.is_none() {
        return Err(err("no_text"));
    }
    let channel = state.channels[index].id.clone();
    let ts = next_ts(state);
    let message = PostedMessage {
        channel: channel.clone(),
        ts: ts.clone(),
        text,
        blocks,
        attachments,
        thread_ts: args.str("thread_ts"),
        user: caller.user.clone(),
        edited: false,
        deleted: false,
        reactions: Vec::new(),
        files: Vec::new(),
    };
    let body = json!({"ok": true, "channel": channel, "ts": ts, "message": message_json(&message, caller)});
    state.messages.push(message);
    Ok(body)
}

fn check_can_post(channel: &Channel, caller: &Caller, public_scope_helps: bool) -> Result<(), Value> {
    if caller.kind == Kind::User || channel.bot_member {
        return Ok(());
    }
    match channel.kind {
        ChannelKind::Public if public_scope_helps && caller.scopes.contains("chat:write.public") => Ok(()),
        ChannelKind::Public => Err(err("not_in_channel")),
        _ => Err(err("channel_not_found")),
    }
}

fn message_json(message: &PostedMessage, caller: &Caller) -> Value {
    let mut body = json!({
        "type": "message",
        "text": message.text.clone().unwrap_or_default(),
        "user": message.user,
        "ts": message.ts,
        "team": Value::Null,
    });
    if caller.kind == Kind::Bot {
        body["bot_id"] = json!(BOT_ID);
        body["app_id"] = json!(APP_ID);
    }
    if let Some(blocks) = &message.blocks {
        body["blocks"] = blocks.clone();
    }
    if let Some(attachments) = &message.attachments {
        body["attachments"] = attachments.clone();
    }
    if let Some(thread) = &message.thread_ts {
        body["thread_ts"] = json!(thread);
    }
    body
}

// https://docs.slack.dev/reference/methods/chat.update — scope chat:write; `channel` (for DMs the D…
// id, not a user id) and `ts` required; errors channel_not_found, message_not_found,
// cant_update_message, no_text; answers channel, ts, text, message.
fn update_message(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("chat:write")?;
    let channel = args.str("channel").unwrap_or_default();
    if !state.channels.iter().any(|c| c.id == channel) {
        return Err(err("channel_not_found"));
    }
    let ts = args.str("ts").unwrap_or_default();
    let text = args.str("text").or_else(|| args.str("markdown_text"));
    let blocks = args.json("blocks").map_err(|()| err("invalid_blocks_format"))?;
    if blocks.as_ref().is_some_and(|b| !b.is_array()) {
        return Err(err("invalid_blocks_format"));
    }
    let attachments = args.json("attachments").map_err(|()| err("invalid_attachments"))?;
    let message = state
        .messages
        .iter_mut()
        .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
        .ok_or_else(|| err("message_not_found"))?;
    if message.user != caller.user {
        return Err(err("cant_update_message"));
    }
    if text.is_none() && blocks.is_none() && attachments.is_none() {
        return Err(err("no_text"));
    }
    if text.is_some() || blocks.is_none() {
        message.text = text;
    }
    if blocks.is_some() {
        message.blocks = blocks;
    }
    if attachments.is_some() {
        message.attachments = attachments;
    }
    message.edited = true;
    let body = json!({
        "ok": true,
        "channel": channel,
        "ts": ts,
        "text": message.text.clone().unwrap_or_default(),
        "message": message_json(message, caller),
    });
    Ok(body)
}

// https://docs.slack.dev/reference/methods/chat.delete — scope chat:write; `channel`, `ts`; errors
// channel_not_found, message_not_found, cant_delete_message; answers channel, ts.
fn delete_message(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("chat:write")?;
    let channel = args.str("channel").unwrap_or_default();
    if !state.channels.iter().any(|c| c.id == channel) {
        return Err(err("channel_not_found"));
    }
    let ts = args.str("ts").unwrap_or_default();
    let message = state
        .messages
        .iter_mut()
        .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
        .ok_or_else(|| err("message_not_found"))?;
    if message.user != caller.user {
        return Err(err("cant_delete_message"));
    }
    message.deleted = true;
    Ok(json!({"ok": true, "channel": channel, "ts": ts}))
}

// https://docs.slack.dev/reference/methods/conversations.open — `users` (1 to 8 ids; one opens a DM,
// more an MPIM) or `channel` (an im/mpim id), `return_im`, `prevent_creation`; scopes im:write /
// mpim:write; errors users_list_not_supplied, user_not_found, too_many_users, channel_not_found,
// method_not_supported_for_channel_type; an existing conversation answers no_op/already_open.
fn open_conversation(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    if let Some(channel) = args.str("channel") {
        let found = state.channels.iter().find(|c| c.id == channel).ok_or_else(|| err("channel_not_found"))?;
        match found.kind {
            ChannelKind::Im => caller.need("im:write")?,
            ChannelKind::Mpim => caller.need("mpim:write")?,
            _ => return Err(err("method_not_supported_for_channel_type")),
        }
        return Ok(json!({"ok": true, "no_op": true, "already_open": true, "channel": {"id": channel}}));
    }
    let Some(users) = args.str("users") else {
        return Err(err("users_list_not_supplied"));
    };
    let mut ids: Vec<String> = users.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
    ids.retain(|u| *u != caller.user);
    if ids.is_empty() {
        return Err(err("users_list_not_supplied"));
    }
    if ids.len() > 8 {
        return Err(err("too_many_users"));
    }
    caller.need(if ids.len() == 1 { "im:write" } else { "mpim:write" })?;
    if ids.iter().any(|id| !state.users.iter().any(|u| u.id == *id && !u.is_bot)) {
        return Err(err("user_not_found"));
    }
    let kind = if ids.len() == 1 { ChannelKind::Im } else { ChannelKind::Mpim };
    let existing = state.channels.iter().position(|c| c.kind == kind && c.members == ids);
    let (index, already) = match existing {
        Some(index) => (index, true),
        None if args.bool("prevent_creation") => return Err(err("channel_not_found")),
        None => (open_channel(state, kind, ids), false),
    };
    let channel = &state.channels[index];
    let mut body = json!({"ok": true, "channel": {"id": channel.id}});
    if already {
        body["no_op"] = json!(true);
        body["already_open"] = json!(true);
    }
    if args.bool("return_im") {
        body["channel"] = channel_json(channel, caller);
    }
    Ok(body)
}

fn open_channel(state: &mut State, kind: ChannelKind, members: Vec<String>) -> usize {
    state.counter += 1;
    let prefix = if kind == ChannelKind::Im { 'D' } else { 'G' };
    state.channels.push(Channel {
        id: format!("{prefix}{:010}", state.counter),
        name: (kind == ChannelKind::Mpim).then(|| format!("mpdm-{}", members.join("--"))),
        kind,
        created: unix_now(),
        bot_member: true,
        members,
    });
    state.channels.len() - 1
}

/// A channel by id or name; a user id opens (or finds) the DM with that user.
fn resolve_channel(state: &mut State, target: &str) -> Option<usize> {
    if let Some(index) = state.channels.iter().position(|c| c.id == target) {
        return Some(index);
    }
    if target.starts_with('U') || target.starts_with('W') {
        state.users.iter().find(|u| u.id == target && !u.is_bot)?;
        let members = vec![target.to_string()];
        let existing = state.channels.iter().position(|c| c.kind == ChannelKind::Im && c.members == members);
        return Some(existing.unwrap_or_else(|| open_channel(state, ChannelKind::Im, members)));
    }
    let name = target.strip_prefix('#').unwrap_or(target);
    state.channels.iter().position(|c| c.name.as_deref() == Some(name) && c.kind != ChannelKind::Mpim)
}

fn channel_json(channel: &Channel, caller: &Caller) -> Value {
    match channel.kind {
        ChannelKind::Im => json!({
            "id": channel.id,
            "created": channel.created,
            "is_im": true,
            "is_org_shared": false,
            "user": channel.members.first(),
            "is_user_deleted": false,
            "priority": 0,
        }),
        kind => {
            let name = channel.name.clone().unwrap_or_default();
            json!({
                "id": channel.id,
                "name": name,
                "name_normalized": name,
                "is_channel": kind == ChannelKind::Public,
                "is_group": kind == ChannelKind::Private,
                "is_im": false,
                "is_mpim": kind == ChannelKind::Mpim,
                "is_private": kind != ChannelKind::Public,
                "created": channel.created,
                "is_archived": false,
                "is_general": name == "general",
                "is_shared": false,
                "is_org_shared": false,
                "is_member": caller.kind == Kind::User || channel.bot_member,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "num_members": channel.members.len(),
            })
        }
    }
}

/// `limit`: absent → `default`; not an integer or negative → `invalid_limit`; capped at 1000.
fn parse_limit(args: &Args, default: Option<usize>) -> Result<Option<usize>, Value> {
    let Some(raw) = args.str("limit") else {
        return Ok(default);
    };
    let limit: i64 = raw.parse().map_err(|_| err("invalid_limit"))?;
    if limit < 0 {
        return Err(err("invalid_limit"));
    }
    if limit == 0 {
        return Ok(default);
    }
    Ok(Some((limit as usize).min(1000)))
}

/// One page of `ids` after `cursor` (base64 of `<kind>:<id>` of the first item of the page), and
/// the next cursor ("" on the last page).
fn page_of(
    ids: &[String],
    kind: &str,
    cursor: Option<String>,
    limit: Option<usize>,
) -> Result<(usize, usize, String), Value> {
    let start = match cursor {
        None => 0,
        Some(cursor) => {
            let decoded = STANDARD.decode(cursor.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
            let id = decoded.as_deref().and_then(|d| d.strip_prefix(kind)).and_then(|d| d.strip_prefix(':'));
            id.and_then(|id| ids.iter().position(|i| i == id)).ok_or_else(|| err("invalid_cursor"))?
        }
    };
    let end = limit.map_or(ids.len(), |l| (start + l).min(ids.len()));
    let next = match ids.get(end) {
        Some(id) => STANDARD.encode(format!("{kind}:{id}")),
        None => String::new(),
    };
    Ok((start, end, next))
}

// https://docs.slack.dev/reference/methods/conversations.list — `types` (public_channel default,
// private_channel, mpim, im; scopes channels:read, groups:read, mpim:read, im:read), `limit` (default
// 100, "no larger than 1000"), `cursor`, `exclude_archived`; errors invalid_types, invalid_limit,
// invalid_cursor. https://docs.slack.dev/apis/web-api/pagination — `response_metadata.next_cursor`;
// "An empty, null, or non-existent next_cursor in the response indicates no further results."
fn list_conversations(state: &State, caller: &Caller, args: &Args) -> ApiResult {
    let types = args.str("types").unwrap_or_else(|| "public_channel".to_string());
    let mut kinds = Vec::new();
    for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (kind, scope) = match t {
            "public_channel" => (ChannelKind::Public, "channels:read"),
            "private_channel" => (ChannelKind::Private, "groups:read"),
            "mpim" => (ChannelKind::Mpim, "mpim:read"),
            "im" => (ChannelKind::Im, "im:read"),
            _ => return Err(err("invalid_types")),
        };
        caller.need(scope)?;
        kinds.push(kind);
    }
    if kinds.is_empty() {
        caller.need("channels:read")?;
        kinds.push(ChannelKind::Public);
    }
    let limit = parse_limit(args, Some(100))?;
    let visible: Vec<&Channel> = state
        .channels
        .iter()
        .filter(|c| kinds.contains(&c.kind))
        .filter(|c| c.kind == ChannelKind::Public || caller.kind == Kind::User || c.bot_member)
        .collect();
    let ids: Vec<String> = visible.iter().map(|c| c.id.clone()).collect();
    let (start, end, next) = page_of(&ids, "channel", args.str("cursor"), limit)?;
    let channels: Vec<Value> = visible[start..end].iter().map(|c| channel_json(c, caller)).collect();
    Ok(json!({"ok": true, "channels": channels, "response_metadata": {"next_cursor": next}}))
}

// https://docs.slack.dev/reference/methods/users.list — scope users:read (the profile's email only
// with users:read.email); `limit` ("Providing no limit value will result in Slack attempting to
// deliver you the entire result set"), `cursor`; error invalid_cursor; answers members, cache_ts,
// response_metadata.next_cursor.
fn list_users(state: &State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("users:read")?;
    let limit = parse_limit(args, None)?;
    let ids: Vec<String> = state.users.iter().map(|u| u.id.clone()).collect();
    let (start, end, next) = page_of(&ids, "user", args.str("cursor"), limit)?;
    let with_email = caller.scopes.contains("users:read.email");
    let members: Vec<Value> = state.users[start..end].iter().map(|u| user_json(u, with_email)).collect();
    Ok(json!({
        "ok": true,
        "members": members,
        "cache_ts": unix_now(),
        "response_metadata": {"next_cursor": next},
    }))
}

fn user_json(user: &User, with_email: bool) -> Value {
    let mut profile = json!({
        "real_name": user.real_name,
        "display_name": user.name,
        "real_name_normalized": user.real_name,
        "display_name_normalized": user.name,
    });
    if with_email && !user.email.is_empty() {
        profile["email"] = json!(user.email);
    }
    json!({
        "id": user.id,
        "team_id": Value::Null,
        "name": user.name,
        "deleted": false,
        "real_name": user.real_name,
        "tz": "Etc/UTC",
        "tz_offset": 0,
        "is_admin": false,
        "is_owner": false,
        "is_bot": user.is_bot,
        "is_app_user": false,
        "updated": unix_now(),
        "profile": profile,
    })
}

// https://docs.slack.dev/reference/methods/users.lookupByEmail — scope users:read.email; `email`
// required; error users_not_found.
fn lookup_by_email(state: &State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("users:read.email")?;
    let Some(email) = args.str("email") else {
        return Err(err("invalid_arguments"));
    };
    let user = state
        .users
        .iter()
        .find(|u| !u.is_bot && u.email.eq_ignore_ascii_case(&email))
        .ok_or_else(|| err("users_not_found"))?;
    Ok(json!({"ok": true, "user": user_json(user, true)}))
}

// https://docs.slack.dev/reference/methods/reactions.add — scope reactions:write; `channel`,
// `timestamp`, `name` required; errors no_item_specified, channel_not_found, message_not_found,
// invalid_name, already_reacted.
fn add_reaction(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("reactions:write")?;
    let (Some(channel), Some(timestamp)) = (args.str("channel"), args.str("timestamp")) else {
        return Err(err("no_item_specified"));
    };
    if !state.channels.iter().any(|c| c.id == channel) {
        return Err(err("channel_not_found"));
    }
    let name = args.str("name").unwrap_or_default();
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-+'".contains(c));
    if !valid {
        return Err(err("invalid_name"));
    }
    let message = state
        .messages
        .iter_mut()
        .find(|m| m.channel == channel && m.ts == timestamp && !m.deleted)
        .ok_or_else(|| err("message_not_found"))?;
    if message.reactions.contains(&name) {
        return Err(err("already_reacted"));
    }
    message.reactions.push(name);
    Ok(json!({"ok": true}))
}

// https://docs.slack.dev/reference/methods/files.getUploadURLExternal — scope files:write;
// `filename`, `length` required ("missing_argument: ... Typically only occurs when the length
// provided is 0"); answers upload_url and file_id.
fn get_upload_url(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("files:write")?;
    let Some(filename) = args.str("filename") else {
        return Err(err("invalid_arguments"));
    };
    let Some(length) = args.str("length") else {
        return Err(err("invalid_arguments"));
    };
    let length: usize = length.parse().map_err(|_| err("invalid_arguments"))?;
    if length == 0 {
        return Err(err("missing_argument"));
    }
    let id = format!("F{}", random(10, UPPER_ALNUM));
    let ticket = random(32, ALNUM);
    state.uploads.insert(ticket.clone(), id.clone());
    state.files.push(UploadedFile {
        id: id.clone(),
        filename,
        length,
        bytes: None,
        title: None,
        completed: false,
        channel: None,
        initial_comment: None,
        thread_ts: None,
    });
    let upload_url = format!("{}/upload/v1/{ticket}", state.base_url);
    Ok(json!({"ok": true, "upload_url": upload_url, "file_id": id}))
}

// https://docs.slack.dev/reference/methods/files.getUploadURLExternal — "Upload a file by making a
// POST request to the upload URL ... Files can be sent as raw bytes or can be multipart form
// encoded. Slack will return HTTP 200 if the upload is successful; a non-200 response indicates a
// failure." A body whose size differs from the announced `length` is refused (400).
fn upload(shared: &Shared, req: &Req, ticket: &str) -> Response {
    if req.method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let mut state = lock(shared);
    let Some(id) = state.uploads.get(ticket).cloned() else {
        return text(StatusCode::NOT_FOUND, "unknown upload url");
    };
    let content_type = header_str(&req.headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let bytes = if content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        let Some(parts) = parse_multipart(&content_type, &req.body) else {
            return text(StatusCode::BAD_REQUEST, "malformed multipart body");
        };
        let named =
            parts.iter().position(|p| p.filename.is_some() || matches!(p.name.as_deref(), Some("file" | "filename")));
        match named.or(if parts.is_empty() { None } else { Some(0) }) {
            Some(i) => parts[i].data.clone(),
            None => return text(StatusCode::BAD_REQUEST, "no file part"),
        }
    } else {
        req.body.to_vec()
    };
    let Some(file) = state.files.iter_mut().find(|f| f.id == id) else {
        return text(StatusCode::NOT_FOUND, "unknown upload url");
    };
    if file.completed {
        return text(StatusCode::BAD_REQUEST, "upload already completed");
    }
    if bytes.len() != file.length {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("length mismatch: announced {} bytes, received {}", file.length, bytes.len()),
        );
    }
    let len = bytes.len();
    file.bytes = Some(bytes);
    text(StatusCode::OK, &format!("OK - {len}"))
}

// https://docs.slack.dev/reference/methods/files.completeUploadExternal — scope files:write; `files`
// (JSON array of {id, title}) required, `channel_id` or `channels`, `initial_comment`, `thread_ts`
// (one channel only); errors file_not_found ("Could not find the file from the upload ticket"),
// channel_not_found, not_in_channel; answers files.
fn complete_upload(state: &mut State, caller: &Caller, args: &Args) -> ApiResult {
    caller.need("files:write")?;
    let files = args.json("files").map_err(|()| err("invalid_arguments"))?;
    let Some(Value::Array(files)) = files else {
        return Err(err("invalid_arguments"));
    };
    if files.is_empty() {
        return Err(err("invalid_arguments"));
    }
    let mut wanted = Vec::new();
    for entry in &files {
        let Some(id) = entry.get("id").and_then(Value::as_str) else {
            return Err(err("invalid_arguments"));
        };
        let title = entry.get("title").and_then(Value::as_str).map(str::to_string);
        let ok = state.files.iter().any(|f| f.id == id && f.bytes.is_some() && !f.completed);
        if !ok {
            return Err(err("file_not_found"));
        }
        wanted.push((id.to_string(), title));
    }
    let mut targets: Vec<String> = Vec::new();
    if let Some(channel) = args.str("channel_id") {
        targets.push(channel);
    }
    if let Some(channels) = args.str("channels") {
        targets.extend(channels.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()));
    }
    let thread_ts = args.str("thread_ts");
    if thread_ts.is_some() && targets.len() != 1 {
        return Err(err("invalid_arguments"));
    }
    let mut indexes = Vec::new();
    for target in &targets {
        let index = resolve_channel(state, target).ok_or_else(|| err("channel_not_found"))?;
        check_can_post(&state.channels[index], caller, false)?;
        indexes.push(index);
    }
    let initial_comment = args.str("initial_comment");
    let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
    let mut answered = Vec::new();
    for (id, title) in wanted {
        if let Some(file) = state.files.iter_mut().find(|f| f.id == id) {
            file.completed = true;
            file.title = title.clone().or_else(|| Some(file.filename.clone()));
            file.initial_comment = initial_comment.clone();
            file.thread_ts = thread_ts.clone();
            answered.push(json!({"id": file.id, "title": file.title, "name": file.filename, "size": file.length}));
        }
    }
    for &index in &indexes {
        let channel = state.channels[index].id.clone();
        for id in &ids {
            if let Some(file) = state.files.iter_mut().find(|f| f.id == *id) {
                file.channel = Some(channel.clone());
            }
        }
        let ts = next_ts(state);
        state.messages.push(PostedMessage {
            channel,
            ts,
            text: initial_comment.clone(),
            blocks: None,
            attachments: None,
            thread_ts: thread_ts.clone(),
            user: caller.user.clone(),
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            files: ids.clone(),
        });
    }
    Ok(json!({"ok": true, "files": answered}))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const DIGITS: &[u8] = b"0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn next_ts(state: &mut State) -> String {
    state.counter += 1;
    format!("{}.{:06}", unix_now(), state.counter % 1_000_000)
}

fn whole_seconds(lifetime: Duration) -> u64 {
    let secs = lifetime.as_secs();
    if lifetime.subsec_nanos() > 0 { secs + 1 } else { secs }
}

fn join(scopes: &BTreeSet<String>) -> String {
    scopes.iter().cloned().collect::<Vec<_>>().join(",")
}

fn pairs(encoded: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded.as_bytes()).into_owned().collect()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn slack_json(body: Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

fn err(error: &str) -> Value {
    json!({"ok": false, "error": error})
}

fn slack_error(error: &str) -> Response {
    slack_json(json!({"ok": false, "error": error}))
}

fn failure_response(failure: &FakeFailure) -> Response {
    let error = match failure {
        FakeFailure::RateLimited { retry_after_secs } => {
            let mut response = slack_error("ratelimited");
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        FakeFailure::InternalError => "internal_error",
        FakeFailure::FatalError => "fatal_error",
        FakeFailure::ServiceUnavailable => "service_unavailable",
        FakeFailure::RequestTimeout => "request_timeout",
        FakeFailure::Error(code) => code.as_str(),
    };
    slack_error(error)
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The error page the authorize endpoint shows when it cannot redirect.
fn page(status: StatusCode, error: &str, detail: &str) -> Response {
    let body = format!("<html><body><h1>Slack</h1><p>error={error}</p><p>{detail}</p></body></html>");
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// 302 to `base` with `params` (and `state` when the request had one) added to its query.
fn redirect_with(base: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    if let Some(state) = state {
        query.append_pair("state", state);
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

struct Part {
    name: Option<String>,
    filename: Option<String>,
    data: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// A minimal `multipart/form-data` reader: each part's name, filename and bytes.
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary=").map(|b| b.trim_matches('"').to_string()))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Some(parts);
        }
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let next = find(body, &delimiter, pos)?;
        let section = &body[pos..next];
        let split = find(section, b"\r\n\r\n", 0)?;
        let headers = std::str::from_utf8(&section[..split]).ok()?;
        let mut data = &section[split + 4..];
        if data.ends_with(b"\r\n") {
            data = &data[..data.len() - 2];
        }
        let mut part = Part { name: None, filename: None, data: data.to_vec() };
        for line in headers.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            if !key.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for attribute in value.split(';').map(str::trim) {
                if let Some(name) = attribute.strip_prefix("name=") {
                    part.name = Some(name.trim_matches('"').to_string());
                } else if let Some(filename) = attribute.strip_prefix("filename=") {
                    part.filename = Some(filename.trim_matches('"').to_string());
                }
            }
        }
        parts.push(part);
        pos = next + delimiter.len();
    }
}
