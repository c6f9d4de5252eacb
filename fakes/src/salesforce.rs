//! A fake Salesforce: one login host (`/services/oauth2/authorize`, `/services/oauth2/token`, the
//! identity URL) that is also the org's instance (the REST API under `/services/data/`), on one
//! local port. Its `base_url` is both the login host and the `instance_url` its token answers
//! carry.
//!
//! Two login hosts (production `login.salesforce.com` and sandbox `test.salesforce.com`) are two
//! fakes: start one per host. Each knows only the codes and refresh tokens it issued, so a
//! connection made on one host and refreshed on the other is refused with `invalid_grant`, as
//! Salesforce refuses it.
//!
//! What it covers, each handler citing the page it follows:
//! - The OAuth 2.0 web server flow with PKCE (required by default, as for connected apps and
//!   external client apps since 2026: a request without `code_challenge` is refused with
//!   `error=invalid_request&error_description=missing required code challenge`), the refresh
//!   token flow (with refresh token rotation when [`SalesforceConfig::rotate_refresh_tokens`]).
//!   Token answers carry `access_token`, `signature`, `scope`, `instance_url`, `id`,
//!   `token_type`, `issued_at` and, only when the `refresh_token` (or `offline_access`) scope
//!   was granted, `refresh_token` — and never `expires_in`: an access token lives until the
//!   session times out.
//! - The REST API (`/services/data/vXX.X/`): sObject create, read (`fields`), update, delete,
//!   upsert and read by external ID, describe, describe global, SOQL query (a subset:
//!   `SELECT f, … | COUNT() FROM Object [WHERE f op v [AND|OR …]] [ORDER BY f [ASC|DESC]]
//!   [LIMIT n] [OFFSET n]`) in batches with `nextRecordsUrl`, query more, SOSL search
//!   (`FIND {term} [IN … FIELDS] [RETURNING Object(fields) …] [LIMIT n]`). Errors are
//!   Salesforce's `[{"message", "errorCode", "fields"}]` arrays.
//! - Objects: `Account`, `Contact`, `Lead`, `Opportunity` with their standard required fields
//!   (e.g. a Lead needs `LastName` and `Company`), plus a custom external ID field
//!   `External_Id__c` on each.
//!
//! Sessions: an access token stops working after [`SalesforceConfig::session_timeout`] without
//! use (Salesforce's session timeout is an inactivity timeout; every accepted API request
//! restarts it), then answers `401 INVALID_SESSION_ID`. [`FakeSalesforce::expire_all_sessions`]
//! ends them all at once.
//!
//! API versions: every request's version is recorded ([`FakeSalesforce::api_versions`]);
//! versions 7.0–30.0 are retired and answer `410`, versions above
//! [`SalesforceConfig::latest_api_version`] or malformed ones `404 NOT_FOUND`.
//!
//! Knobs: [`FakeSalesforce::fail_next`] queues answers for the next REST API requests
//! (`403 REQUEST_LIMIT_EXCEEDED` for the 24-hour allocation or the concurrent long-running
//! request limits, `503 SERVER_UNAVAILABLE`), served before the session is even looked at;
//! [`FakeSalesforce::revoke_refresh_tokens`]; [`FakeSalesforce::insert`] seeds records.

// Handlers return `Result<Response, Response>`: the error is the HTTP answer itself.
#![allow(clippy::result_large_err)]

use crate::{form, now_ms, query_pairs, s256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string (empty when there was none).
    pub query: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    pub body: String,
    /// The REST API version of a `/services/data/vXX.X/…` request (`"60.0"`).
    pub api_version: Option<String>,
}

/// An answer [`FakeSalesforce::fail_next`] makes the next REST API request receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeFailure {
    /// `403 REQUEST_LIMIT_EXCEEDED`, "TotalRequests Limit exceeded." (the 24-hour allocation).
    TotalRequestsLimit,
    /// `403 REQUEST_LIMIT_EXCEEDED`, "ConcurrentRequests (Concurrent API Requests) Limit
    /// exceeded." (too many API requests running 20 seconds or longer).
    ConcurrentRequestsLimit,
    /// `403 REQUEST_LIMIT_EXCEEDED`, "ConcurrentPerOrgLongTxn Limit exceeded." (too many
    /// long-running Apex transactions in the org).
    ConcurrentLongTxnLimit,
    /// `503 SERVER_UNAVAILABLE`.
    ServerUnavailable,
}

/// What the fake connected app (or external client app) and org look like.
#[derive(Clone, Debug)]
pub struct SalesforceConfig {
    /// The consumer key and secret.
    pub client_id: String,
    pub client_secret: String,
    /// The app's callback URLs; empty accepts any.
    pub redirect_uris: Vec<String>,
    /// "Require Proof Key for Code Exchange (PKCE)": an authorize request without
    /// `code_challenge` is refused.
    pub require_pkce: bool,
    /// "Require Secret for Web Server Flow".
    pub require_secret_for_web_server_flow: bool,
    /// "Require Secret for Refresh Token Flow".
    pub require_secret_for_refresh_token_flow: bool,
    /// "Enable Refresh Token Rotation": a refresh answers a new refresh token and the old one
    /// stops working.
    pub rotate_refresh_tokens: bool,
    /// The app's selected OAuth scopes; an authorize request asking for another is refused, one
    /// without `scope` is granted these.
    pub app_scopes: Vec<String>,
    /// The session timeout (inactivity).
    pub session_timeout: Duration,
    /// The newest API version the org serves (the major number: 66 is `v66.0`).
    pub latest_api_version: u32,
    /// Records a query answers per batch when the request sets no `Sforce-Query-Options`
    /// `batchSize` (Salesforce: up to 2,000).
    pub query_batch_size: usize,
    pub org_id: String,
    pub user_id: String,
    pub username: String,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        SalesforceConfig {
            client_id: "3MVG9FakeConsumerKey.salesforce.client".to_string(),
            client_secret: "FAKE0123456789CONSUMERSECRET".to_string(),
            redirect_uris: Vec::new(),
            require_pkce: true,
            require_secret_for_web_server_flow: true,
            require_secret_for_refresh_token_flow: true,
            rotate_refresh_tokens: false,
            app_scopes: vec!["api".to_string(), "refresh_token".to_string()],
            session_timeout: Duration::from_secs(2 * 3600),
            latest_api_version: 66,
            query_batch_size: 2000,
            org_id: sf_id("00D", 1),
            user_id: sf_id("005", 1),
            username: "admin@example.org".to_string(),
        }
    }
}

/// A running fake Salesforce login host and org instance.
pub struct FakeSalesforce {
    /// `http://127.0.0.1:PORT`: the login host and the `instance_url`.
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSalesforce {
    /// Serves the fake on a free local port.
    pub async fn start(config: SalesforceConfig) -> std::io::Result<FakeSalesforce> {
        let inner = Arc::new(Mutex::new(Inner {
            config,
            base_url: String::new(),
            requests: Vec::new(),
            token_requests: HashMap::new(),
            last_authorize_query: None,
            codes: HashMap::new(),
            sessions: HashMap::new(),
            refresh: HashMap::new(),
            failures: VecDeque::new(),
            records: BTreeMap::new(),
            counter: 0,
            locators: HashMap::new(),
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let base_url = crate::serve(app).await?;
        inner.lock().unwrap_or_else(PoisonError::into_inner).base_url = base_url.clone();
        Ok(FakeSalesforce { base_url, inner })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The consumer key the fake accepts.
    pub fn client_id(&self) -> String {
        self.lock().config.client_id.clone()
    }

    /// The consumer secret the fake accepts.
    pub fn client_secret(&self) -> String {
        self.lock().config.client_secret.clone()
    }

    /// `{base_url}/services/oauth2/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/services/oauth2/authorize", self.base_url)
    }

    /// `{base_url}/services/oauth2/token`.
    pub fn token_url(&self) -> String {
        format!("{}/services/oauth2/token", self.base_url)
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The API version of every `/services/data/vXX.X/…` request, in order.
    pub fn api_versions(&self) -> Vec<String> {
        self.lock().requests.iter().filter_map(|r| r.api_version.clone()).collect()
    }

    /// How many token requests carried this `grant_type`, whatever the answer.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.lock().token_requests.get(grant_type).copied().unwrap_or(0)
    }

    /// The raw query string of the last `GET /services/oauth2/authorize`.
    pub fn last_authorize_query(&self) -> Option<String> {
        self.lock().last_authorize_query.clone()
    }

    /// One parameter of the last authorize request, decoded.
    pub fn last_authorize_param(&self, name: &str) -> Option<String> {
        let query = self.last_authorize_query()?;
        form(query.as_bytes()).remove(name)
    }

    /// The next REST API request (after those already queued) answers `failure`.
    pub fn fail_next(&self, failure: FakeFailure) {
        self.lock().failures.push_back(failure);
    }

    /// Every session (access token) issued so far is over.
    pub fn expire_all_sessions(&self) {
        for session in self.lock().sessions.values_mut() {
            session.ended = true;
        }
    }

    /// Every refresh token issued so far is revoked.
    pub fn revoke_refresh_tokens(&self) {
        for token in self.lock().refresh.values_mut() {
            token.revoked = true;
        }
    }

    /// Stores a record without validation (the system fields are filled in); its 18-character
    /// id. `fields` is a JSON object of API field names.
    pub fn insert(&self, object: &str, fields: Value) -> String {
        let Some(schema) = sobject(object) else { panic!("unknown sObject {object}") };
        let mut st = self.lock();
        let mut values = Map::new();
        if let Some(map) = fields.as_object() {
            for (name, value) in map {
                let name = schema.field(name).map_or(name.as_str(), |f| f.name);
                values.insert(name.to_string(), value.clone());
            }
        }
        st.store(schema, values)
    }

    /// A record's fields (every field of the object), or `None` when it doesn't exist or is
    /// deleted.
    pub fn record(&self, object: &str, id: &str) -> Option<Value> {
        let schema = sobject(object)?;
        let st = self.lock();
        let id = normalize_id(id)?;
        let rec = st.records.get(&id).filter(|r| r.object == schema.name && !r.deleted)?;
        Some(Value::Object(rec.fields.clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Inner {
    config: SalesforceConfig,
    base_url: String,
    requests: Vec<Recorded>,
    token_requests: HashMap<String, usize>,
    last_authorize_query: Option<String>,
    codes: HashMap<String, Code>,
    sessions: HashMap<String, Session>,
    refresh: HashMap<String, RefreshToken>,
    failures: VecDeque<FakeFailure>,
    records: BTreeMap<String, Rec>,
    counter: u64,
    locators: HashMap<String, Vec<Value>>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    challenge: Option<String>,
    expires_at: Instant,
}

struct Session {
    scopes: Vec<String>,
    last_used: Instant,
    ended: bool,
}

struct RefreshToken {
    client_id: String,
    scopes: Vec<String>,
    revoked: bool,
}

struct Rec {
    object: &'static str,
    fields: Map<String, Value>,
    deleted: bool,
}

/// An authorization code can be redeemed for 15 minutes (web server flow docs).
const CODE_LIFETIME: Duration = Duration::from_secs(15 * 60);

impl Inner {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn store(&mut self, schema: &'static SObject, mut fields: Map<String, Value>) -> String {
        let n = self.next();
        let id = sf_id(schema.prefix, n);
        let now = sf_datetime(now_ms());
        fields.insert("Id".to_string(), json!(id));
        fields.entry("OwnerId").or_insert_with(|| json!(self.config.user_id));
        fields.insert("CreatedDate".to_string(), json!(now));
        fields.insert("LastModifiedDate".to_string(), json!(now));
        fields.insert("SystemModstamp".to_string(), json!(now));
        fields.insert("IsDeleted".to_string(), json!(false));
        for field in schema.fields {
            if let Some(default) = field.default {
                fields.entry(field.name).or_insert_with(|| json!(default));
            }
        }
        compute_name(schema, &mut fields);
        let ordered = schema
            .fields
            .iter()
            .map(|f| (f.name.to_string(), fields.get(f.name).cloned().unwrap_or(Value::Null)))
            .collect();
        self.records.insert(id.clone(), Rec { object: schema.name, fields: ordered, deleted: false });
        id
    }

    fn live(&self, schema: &SObject) -> impl Iterator<Item = (&String, &Rec)> {
        let name = schema.name;
        self.records.iter().filter(move |(_, r)| r.object == name && !r.deleted)
    }

    /// A login-host URL: the identity URL `{login host}/id/{org}/{user}`.
    fn identity_url(&self) -> String {
        format!("{}/id/{}/{}", self.base_url, self.config.org_id, self.config.user_id)
    }
}

// ---------------------------------------------------------------------------------------------
// Schema

struct SObject {
    name: &'static str,
    label: &'static str,
    plural: &'static str,
    prefix: &'static str,
    fields: &'static [Field],
}

impl SObject {
    fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    length: u32,
    createable: bool,
    updateable: bool,
    nillable: bool,
    /// A value Salesforce sets on create when none is given.
    default: Option<&'static str>,
    defaulted: bool,
    external_id: bool,
    reference_to: &'static str,
    picklist: &'static [&'static str],
}

impl Field {
    fn required_on_create(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted
    }

    fn text(&self) -> bool {
        matches!(self.kind, "string" | "email" | "phone" | "url" | "textarea" | "picklist")
    }
}

const fn field(name: &'static str, label: &'static str, kind: &'static str, length: u32) -> Field {
    Field {
        name,
        label,
        kind,
        length,
        createable: true,
        updateable: true,
        nillable: true,
        default: None,
        defaulted: false,
        external_id: false,
        reference_to: "",
        picklist: &[],
    }
}

const fn required(mut f: Field) -> Field {
    f.nillable = false;
    f
}

const fn system(mut f: Field) -> Field {
    f.createable = false;
    f.updateable = false;
    f.nillable = false;
    f.defaulted = true;
    f
}

const fn picklist(mut f: Field, values: &'static [&'static str]) -> Field {
    f.picklist = values;
    f
}

const fn reference(mut f: Field, to: &'static str) -> Field {
    f.reference_to = to;
    f
}

const fn external(mut f: Field) -> Field {
    f.external_id = true;
    f
}

const fn defaults_to(mut f: Field, value: &'static str) -> Field {
    f.default = Some(value);
    f.defaulted = true;
    f.nillable = false;
    f
}

const fn calculated(mut f: Field) -> Field {
    f.createable = false;
    f.updateable = false;
    f
}

const OWNER: Field = {
    let mut f = reference(field("OwnerId", "Owner ID", "reference", 18), "User");
    f.nillable = false;
    f.defaulted = true;
    f
};

const ACCOUNT_FIELDS: &[Field] = &[
    system(field("Id", "Account ID", "id", 18)),
    system(field("IsDeleted", "Deleted", "boolean", 0)),
    required(field("Name", "Account Name", "string", 255)),
    picklist(
        field("Type", "Account Type", "picklist", 255),
        &["Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"],
    ),
    picklist(
        field("Industry", "Industry", "picklist", 255),
        &["Agriculture", "Banking", "Education", "Technology", "Other"],
    ),
    field("Website", "Website", "url", 255),
    field("Phone", "Account Phone", "phone", 40),
    field("BillingCity", "Billing City", "string", 40),
    field("AnnualRevenue", "Annual Revenue", "currency", 0),
    field("NumberOfEmployees", "Employees", "int", 0),
    field("Description", "Account Description", "textarea", 32000),
    external(field("External_Id__c", "External Id", "string", 255)),
    OWNER,
    system(field("CreatedDate", "Created Date", "datetime", 0)),
    system(field("LastModifiedDate", "Last Modified Date", "datetime", 0)),
    system(field("SystemModstamp", "System Modstamp", "datetime", 0)),
];

const CONTACT_FIELDS: &[Field] = &[
    system(field("Id", "Contact ID", "id", 18)),
    system(field("IsDeleted", "Deleted", "boolean", 0)),
    field("FirstName", "First Name", "string", 40),
    required(field("LastName", "Last Name", "string", 80)),
    calculated(required(field("Name", "Full Name", "string", 121))),
    field("Email", "Email", "email", 80),
    field("Phone", "Business Phone", "phone", 40),
    field("Title", "Title", "string", 128),
    reference(field("AccountId", "Account ID", "reference", 18), "Account"),
    external(field("External_Id__c", "External Id", "string", 255)),
    OWNER,
    system(field("CreatedDate", "Created Date", "datetime", 0)),
    system(field("LastModifiedDate", "Last Modified Date", "datetime", 0)),
    system(field("SystemModstamp", "System Modstamp", "datetime", 0)),
];

const LEAD_STATUSES: &[&str] =
    &["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"];

const LEAD_FIELDS: &[Field] = &[
    system(field("Id", "Lead ID", "id", 18)),
    system(field("IsDeleted", "Deleted", "boolean", 0)),
    field("FirstName", "First Name", "string", 40),
    required(field("LastName", "Last Name", "string", 80)),
    calculated(required(field("Name", "Full Name", "string", 121))),
    required(field("Company", "Company", "string", 255)),
    field("Email", "Email", "email", 80),
    field("Phone", "Phone", "phone", 40),
    field("Title", "Title", "string", 128),
    defaults_to(picklist(field("Status", "Lead Status", "picklist", 255), LEAD_STATUSES), "Open - Not Contacted"),
    picklist(
        field("LeadSource", "Lead Source", "picklist", 255),
        &["Web", "Phone Inquiry", "Partner Referral", "Other"],
    ),
    external(field("External_Id__c", "External Id", "string", 255)),
    OWNER,
    system(field("CreatedDate", "Created Date", "datetime", 0)),
    system(field("LastModifiedDate", "Last Modified Date", "datetime", 0)),
    system(field("SystemModstamp", "System Modstamp", "datetime", 0)),
];

const OPPORTUNITY_FIELDS: &[Field] = &[
    system(field("Id", "Opportunity ID", "id", 18)),
    system(field("IsDeleted", "Deleted", "boolean", 0)),
    required(field("Name", "Name", "string", 120)),
    required(picklist(
        field("StageName", "Stage", "picklist", 255),
        &["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Closed Won", "Closed Lost"],
    )),
    required(field("CloseDate", "Close Date", "date", 0)),
    field("Amount", "Amount", "currency", 0),
    reference(field("AccountId", "Account ID", "reference", 18), "Account"),
    external(field("External_Id__c", "External Id", "string", 255)),
    OWNER,
    system(field("CreatedDate", "Created Date", "datetime", 0)),
    system(field("LastModifiedDate", "Last Modified Date", "datetime", 0)),
    system(field("SystemModstamp", "System Modstamp", "datetime", 0)),
];

const SOBJECTS: &[SObject] = &[
    SObject { name: "Account", label: "Account", plural: "Accounts", prefix: "001", fields: ACCOUNT_FIELDS },
    SObject { name: "Contact", label: "Contact", plural: "Contacts", prefix: "003", fields: CONTACT_FIELDS },
    SObject { name: "Lead", label: "Lead", plural: "Leads", prefix: "00Q", fields: LEAD_FIELDS },
    SObject {
        name: "Opportunity",
        label: "Opportunity",
        plural: "Opportunities",
        prefix: "006",
        fields: OPPORTUNITY_FIELDS,
    },
];

fn sobject(name: &str) -> Option<&'static SObject> {
    SOBJECTS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

fn compute_name(schema: &SObject, fields: &mut Map<String, Value>) {
    if schema.name == "Contact" || schema.name == "Lead" {
        let part = |n: &str| fields.get(n).and_then(Value::as_str).unwrap_or("").to_string();
        let name = format!("{} {}", part("FirstName"), part("LastName")).trim().to_string();
        fields.insert("Name".to_string(), json!(name));
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch

type Shared = Arc<Mutex<Inner>>;

async fn handle(State(shared): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let api_version = match segments.as_slice() {
        ["services", "data", version, ..] => Some(version.strip_prefix('v').unwrap_or(version).to_string()),
        _ => None,
    };
    let mut st = shared.lock().unwrap_or_else(PoisonError::into_inner);
    st.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        api_version,
    });
    let batch = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|kv| kv.trim().strip_prefix("batchSize=")?.trim().parse::<usize>().ok()))
        .map(|n| n.clamp(200, 2000));
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["services", "oauth2", "authorize"]) => authorize(&mut st, &query),
        ("POST", ["services", "oauth2", "token"]) => token(&mut st, &body),
        ("GET", ["id", org, user]) => identity(&mut st, authorization.as_deref(), org, user),
        ("GET", ["services", "data"]) => versions(&st),
        (_, ["services", "data", version, rest @ ..]) => {
            let request =
                Request { method: &method, query: &query, auth: authorization.as_deref(), body: &body, batch };
            data_api(&mut st, version, rest, &request)
        }
        _ => not_found(),
    }
}

struct Request<'a> {
    method: &'a Method,
    query: &'a str,
    auth: Option<&'a str>,
    body: &'a [u8],
    batch: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// OAuth

/// `GET /services/oauth2/authorize` (web server flow):
/// <https://help.salesforce.com/HTViewHelpDoc?id=remoteaccess_oauth_web_server_flow.htm&language=en_US>
/// (`response_type=code`, `client_id`, `redirect_uri` required; `scope` space-separated;
/// `code_challenge` the base64url SHA-256 of the verifier), PKCE:
/// <https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_pkce.htm&language=en_US&type=5>
/// and <https://developer.salesforce.com/docs/atlas.en-us.packagingGuide.meta/packagingGuide/secure_code_ac_eca.htm>
/// (required for connected apps and external client apps), errors:
/// <https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flow_errors.htm&language=en_US&type=5>
/// ("the authorizing server sends an error to the callback URL"). An unknown `client_id` or a
/// `redirect_uri` that isn't a callback URL of the app can't be redirected to: those answer
/// `400` with the error in the body (`error=invalid_client_id…`, `error=redirect_uri_mismatch…`).
fn authorize(st: &mut Inner, query: &str) -> Response {
    st.last_authorize_query = Some(query.to_string());
    let q = form(query.as_bytes());
    let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
    if client_id != st.config.client_id {
        return error_body("invalid_client_id", "client identifier invalid");
    }
    let redirect_uri = q.get("redirect_uri").map(String::as_str).unwrap_or("");
    if redirect_uri.is_empty()
        || url::Url::parse(redirect_uri).is_err()
        || (!st.config.redirect_uris.is_empty() && !st.config.redirect_uris.iter().any(|u| u == redirect_uri))
    {
        return error_body("redirect_uri_mismatch", "redirect_uri must match configuration");
    }
    let state = q.get("state").map(String::as_str);
    let fail = |error: &str, description: &str| {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        params.append_pair("error", error);
        params.append_pair("error_description", description);
        if let Some(state) = state {
            params.append_pair("state", state);
        }
        redirect(&append_query(redirect_uri, &params.finish()))
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return fail("unsupported_response_type", "response type not supported");
    }
    let challenge = q.get("code_challenge").filter(|c| !c.is_empty()).cloned();
    if challenge.is_none() && st.config.require_pkce {
        return fail("invalid_request", "missing required code challenge");
    }
    if let Some(c) = &challenge
        && !(c.len() == 43 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'))
    {
        return fail("invalid_request", "invalid code challenge");
    }
    let scopes = match q.get("scope").map(|s| scope_list(s)) {
        None => st.config.app_scopes.clone(),
        Some(list) if list.is_empty() => st.config.app_scopes.clone(),
        Some(list) => {
            if list.iter().any(|s| !scope_allowed(&st.config.app_scopes, s)) {
                return fail("invalid_scope", "the requested scope is not allowed");
            }
            list
        }
    };
    let code = format!("aPrx{}==", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Uuid::new_v4().as_bytes()));
    st.codes.insert(
        code.clone(),
        Code {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scopes,
            challenge,
            expires_at: Instant::now() + CODE_LIFETIME,
        },
    );
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    params.append_pair("code", &code);
    if let Some(state) = state {
        params.append_pair("state", state);
    }
    redirect(&append_query(redirect_uri, &params.finish()))
}

/// `refresh_token` and `offline_access` are one scope; `full` includes every other.
fn scope_allowed(app: &[String], scope: &str) -> bool {
    let same = |a: &str| {
        a == scope
            || (matches!(a, "refresh_token" | "offline_access") && matches!(scope, "refresh_token" | "offline_access"))
    };
    app.iter().any(|a| same(a))
        || (app.iter().any(|a| a == "full") && !matches!(scope, "refresh_token" | "offline_access"))
}

/// `POST /services/oauth2/token`: the web server flow's code exchange
/// (<https://help.salesforce.com/HTViewHelpDoc?id=remoteaccess_oauth_web_server_flow.htm&language=en_US>:
/// `grant_type=authorization_code`, `code`, `client_id`, `client_secret`, `redirect_uri`,
/// `code_verifier`; a verifier that is missing when a challenge was sent fails with
/// `invalid_grant`) and the refresh token flow
/// (<https://developer.salesforce.com/docs/atlas.en-us.198.0.api_rest.meta/api_rest/intro_understanding_refresh_token_oauth.htm>).
/// The answer: `access_token`, `signature` (base64 HMAC-SHA256 of `id` + `issued_at` keyed with
/// the consumer secret), `scope`, `instance_url`, `id`, `token_type: Bearer`, `issued_at`
/// (milliseconds), `refresh_token` only when the `refresh_token`/`offline_access` scope was
/// granted (and, on a refresh, only with rotation on:
/// <https://developer.salesforce.com/docs/atlas.en-us.packagingGuide.meta/packagingGuide/secure_code_ac_eca.htm>);
/// no `expires_in`. Errors are `400 {"error", "error_description"}`.
fn token(st: &mut Inner, body: &[u8]) -> Response {
    let f = form(body);
    let grant_type = f.get("grant_type").cloned().unwrap_or_default();
    *st.token_requests.entry(grant_type.clone()).or_insert(0) += 1;
    let client_id = f.get("client_id").map(String::as_str).unwrap_or("");
    let secret_ok = f.get("client_secret") == Some(&st.config.client_secret);
    match grant_type.as_str() {
        "authorization_code" => {
            if client_id != st.config.client_id {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            let value = f.get("code").map(String::as_str).unwrap_or("");
            let Some(code) = st.codes.get(value) else {
                return oauth_error("invalid_grant", "invalid authorization code");
            };
            if code.expires_at <= Instant::now() {
                return oauth_error("invalid_grant", "expired authorization code");
            }
            if code.client_id != client_id {
                return oauth_error("invalid_grant", "invalid authorization code");
            }
            if f.get("redirect_uri").map(String::as_str) != Some(code.redirect_uri.as_str()) {
                return oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration");
            }
            if (st.config.require_secret_for_web_server_flow || f.contains_key("client_secret")) && !secret_ok {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            if let Some(challenge) = &code.challenge
                && f.get("code_verifier").is_none_or(|v| s256(v) != *challenge)
            {
                return oauth_error("invalid_grant", "invalid code verifier");
            }
            let Some(code) = st.codes.remove(value) else {
                return oauth_error("invalid_grant", "invalid authorization code");
            };
            let refresh = offline(&code.scopes).then(|| {
                let token = refresh_token_value();
                st.refresh.insert(
                    token.clone(),
                    RefreshToken { client_id: client_id.to_string(), scopes: code.scopes.clone(), revoked: false },
                );
                token
            });
            token_answer(st, &code.scopes, refresh)
        }
        "refresh_token" => {
            if client_id != st.config.client_id {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if (st.config.require_secret_for_refresh_token_flow || f.contains_key("client_secret")) && !secret_ok {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            let value = f.get("refresh_token").map(String::as_str).unwrap_or("");
            let scopes = match st.refresh.get(value) {
                Some(r) if !r.revoked && r.client_id == client_id => r.scopes.clone(),
                _ => return oauth_error("invalid_grant", "expired access/refresh token"),
            };
            let rotated = st.config.rotate_refresh_tokens.then(|| {
                if let Some(old) = st.refresh.get_mut(value) {
                    old.revoked = true;
                }
                let token = refresh_token_value();
                st.refresh.insert(
                    token.clone(),
                    RefreshToken { client_id: client_id.to_string(), scopes: scopes.clone(), revoked: false },
                );
                token
            });
            token_answer(st, &scopes, rotated)
        }
        _ => oauth_error("unsupported_grant_type", "grant type not supported"),
    }
}

fn offline(scopes: &[String]) -> bool {
    scopes.iter().any(|s| s == "refresh_token" || s == "offline_access")
}

fn refresh_token_value() -> String {
    format!("5Aep861{}", Uuid::new_v4().simple())
}

fn token_answer(st: &mut Inner, scopes: &[String], refresh_token: Option<String>) -> Response {
    let org15 = st.config.org_id.get(..15).unwrap_or(&st.config.org_id).to_string();
    let access_token = format!("{org15}!AQ{}", Uuid::new_v4().simple());
    st.sessions
        .insert(access_token.clone(), Session { scopes: scopes.to_vec(), last_used: Instant::now(), ended: false });
    let issued_at = now_ms().to_string();
    let id = st.identity_url();
    let signature = sign(&st.config.client_secret, &format!("{id}{issued_at}"));
    let mut answer = json!({
        "access_token": access_token,
        "signature": signature,
        "scope": scopes.join(" "),
        "instance_url": st.base_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
    });
    if let Some(refresh_token) = refresh_token {
        answer["refresh_token"] = json!(refresh_token);
    }
    json_response(StatusCode::OK, &answer)
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": error, "error_description": description }))
}

fn error_body(error: &str, description: &str) -> Response {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    body.append_pair("error", error);
    body.append_pair("error_description", description);
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.finish()).into_response()
}

/// The identity URL (`id` of the token answer):
/// <https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_openid.htm&type=5>.
fn identity(st: &mut Inner, auth: Option<&str>, org: &str, user: &str) -> Response {
    if let Err(response) = session(st, auth, false) {
        return response;
    }
    if org != st.config.org_id || user != st.config.user_id {
        return sf_error(StatusCode::FORBIDDEN, "Bad_Id", "Bad_Id", &[]);
    }
    let c = &st.config;
    let rest = format!("{}/services/data/v{{version}}/", st.base_url);
    json_response(
        StatusCode::OK,
        &json!({
            "id": st.identity_url(),
            "asserted_user": true,
            "user_id": c.user_id,
            "organization_id": c.org_id,
            "username": c.username,
            "nick_name": c.username.split('@').next().unwrap_or(""),
            "display_name": "Admin User",
            "email": c.username,
            "email_verified": true,
            "active": true,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "urls": {
                "rest": rest,
                "sobjects": format!("{rest}sobjects/"),
                "query": format!("{rest}query/"),
                "search": format!("{rest}search/"),
            },
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// REST API

/// `GET /services/data/`: the versions the org serves
/// (<https://developer.salesforce.com/docs/platform/api-rest/guide/resources-versions.html>).
fn versions(st: &Inner) -> Response {
    let list: Vec<Value> = (31..=st.config.latest_api_version)
        .map(|v| json!({ "label": release_label(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0") }))
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

fn release_label(version: u32) -> String {
    let n = i64::from(version) - 60;
    let season = ["Spring", "Summer", "Winter"][usize::try_from(n.rem_euclid(3)).unwrap_or(0)];
    format!("{season} '{:02}", 24 + (n + 1).div_euclid(3))
}

/// `/services/data/vXX.X/…`. Versions: <https://developer.salesforce.com/docs/atlas.en-us.252.0.securityImplGuide.meta/securityImplGuide/api_rest_eol.htm>
/// ("If you request any resource or use an operation from a retired API version, REST API
/// returns the 410:GONE error code": 7.0–30.0 are retired). A version the org doesn't serve
/// (newer than the latest, or not `vNN.0`) is a resource that doesn't exist: `404 NOT_FOUND`.
/// Status codes and error bodies:
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>.
/// Limits: <https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html>
/// (`REQUEST_LIMIT_EXCEEDED` for the total and the concurrent long-running request limits).
fn data_api(st: &mut Inner, version: &str, rest: &[&str], req: &Request) -> Response {
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok());
    match major {
        Some(7..=30) => {
            return sf_error(StatusCode::GONE, "GONE", "The requested resource has been retired or removed.", &[]);
        }
        Some(v) if (31..=st.config.latest_api_version).contains(&v) => {}
        _ => return not_found(),
    }
    let Some(major) = major else { return not_found() };
    if let Some(failure) = st.failures.pop_front() {
        return failure_response(failure);
    }
    if let Err(response) = session(st, req.auth, true) {
        return response;
    }
    let base = format!("/services/data/{version}");
    let q = query_pairs(req.query);
    let method = req.method.as_str();
    let result = match (method, rest) {
        ("GET", []) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "sobjects": format!("{base}/sobjects"),
                "query": format!("{base}/query"),
                "search": format!("{base}/search"),
                "limits": format!("{base}/limits"),
            }),
        )),
        ("GET", ["sobjects"]) => Ok(describe_global(&base)),
        (_, ["sobjects", object, rest @ ..]) => match sobject(object) {
            None => Err(not_found()),
            Some(schema) => match (method, rest) {
                ("POST", []) => create(st, schema, req.body),
                ("GET", []) => Ok(json_response(
                    StatusCode::OK,
                    &json!({ "objectDescribe": describe_summary(schema, &base), "recentItems": [] }),
                )),
                ("GET", ["describe"]) => Ok(describe(schema, &base)),
                ("GET", [id]) => read(st, schema, id, &base, &q),
                ("PATCH", [id]) => update(st, schema, id, req.body),
                ("DELETE", [id]) => delete(st, schema, id),
                ("GET", [field, value]) => read_by_external_id(st, schema, field, value, &base, &q),
                ("PATCH", [field, value]) => upsert(st, schema, field, value, major, &q, req.body),
                (_, []) => Err(not_allowed(method, "GET,HEAD,POST")),
                (_, [_]) => Err(not_allowed(method, "GET,HEAD,PATCH,DELETE")),
                (_, [_, _]) => Err(not_allowed(method, "GET,HEAD,PATCH")),
                _ => Err(not_found()),
            },
        },
        ("GET", ["query"]) => query(st, &base, &q, req.batch),
        ("GET", ["query", locator]) => query_more(st, &base, locator, req.batch),
        ("GET", ["search"]) => search(st, &base, &q),
        _ => Err(not_found()),
    };
    result.unwrap_or_else(|response| response)
}

/// The bearer session: unknown, ended or timed out answers `401 INVALID_SESSION_ID`
/// ("Session expired or invalid", <https://developer.salesforce.com/docs/atlas.en-us.198.0.api_rest.meta/api_rest/intro_understanding_refresh_token_oauth.htm>);
/// a token without the `api` (or `full`) scope can't call the REST API.
fn session(st: &mut Inner, auth: Option<&str>, rest_api: bool) -> Result<(), Response> {
    let expired = || sf_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid", &[]);
    let token = auth
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .map(|(_, token)| token.trim())
        .ok_or_else(expired)?;
    let timeout = st.config.session_timeout;
    let session = st.sessions.get_mut(token).ok_or_else(expired)?;
    let now = Instant::now();
    if session.ended || now.duration_since(session.last_used) >= timeout {
        session.ended = true;
        return Err(expired());
    }
    session.last_used = now;
    if rest_api && !session.scopes.iter().any(|s| s == "api" || s == "full") {
        return Err(sf_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
            &[],
        ));
    }
    Ok(())
}

fn failure_response(failure: FakeFailure) -> Response {
    match failure {
        FakeFailure::TotalRequestsLimit => {
            sf_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", &[])
        }
        FakeFailure::ConcurrentRequestsLimit => sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            &[],
        ),
        FakeFailure::ConcurrentLongTxnLimit => {
            sf_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", &[])
        }
        FakeFailure::ServerUnavailable => sf_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server is unavailable. Please try again later.",
            &[],
        ),
    }
}

/// `POST /services/data/vXX.X/sobjects/{object}`: `201 {"id", "success", "errors"}`;
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-sobject-create.html>.
fn create(st: &mut Inner, schema: &'static SObject, body: &[u8]) -> Result<Response, Response> {
    let input = json_object(body)?;
    let values = validate(st, schema, &input, Write::Create)?;
    let id = st.store(schema, values);
    Ok(json_response(StatusCode::CREATED, &json!({ "id": id, "success": true, "errors": [] })))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Update,
}

/// Field values of a create or update, as Salesforce checks them: `INVALID_FIELD` for a field the
/// object doesn't have or for `Id` in the body ("The Id field should not be specified in the
/// sobject data."), `INVALID_FIELD_FOR_INSERT_UPDATE` for a read-only one,
/// `REQUIRED_FIELD_MISSING`, `INVALID_EMAIL_ADDRESS`, `STRING_TOO_LONG`, `MALFORMED_ID` /
/// `INVALID_CROSS_REFERENCE_KEY` for a lookup, `JSON_PARSER_ERROR` for a value of the wrong type.
fn validate(
    st: &Inner,
    schema: &SObject,
    input: &Map<String, Value>,
    write: Write,
) -> Result<Map<String, Value>, Response> {
    let mut errors: Vec<Value> = Vec::new();
    let mut values = Map::new();
    let mut read_only = Vec::new();
    for (name, value) in input {
        if name == "attributes" {
            continue;
        }
        if name.eq_ignore_ascii_case("Id") {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                "The Id field should not be specified in the sobject data.",
                &[],
            ));
        }
        let Some(f) = schema.field(name) else {
            return Err(sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &format!("No such column '{name}' on sobject of type {}", schema.name),
                &[],
            ));
        };
        if (write == Write::Create && !f.createable) || (write == Write::Update && !f.updateable) {
            read_only.push(f.name);
            continue;
        }
        let converted = match convert(f, value) {
            Ok(v) => v,
            Err(message) => return Err(sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &message, &[])),
        };
        if let Some(text) = converted.as_str() {
            if f.kind == "email" && !valid_email(text) {
                errors.push(error_item(
                    "INVALID_EMAIL_ADDRESS",
                    &format!("{}: invalid email address: {text}", f.label),
                    &[f.name],
                ));
            }
            if f.length > 0 && f.text() && u32::try_from(text.chars().count()).unwrap_or(u32::MAX) > f.length {
                errors.push(error_item(
                    "STRING_TOO_LONG",
                    &format!("{}: data value too large: {text} (max length={})", f.label, f.length),
                    &[f.name],
                ));
            }
            if f.kind == "reference" {
                let target = if f.reference_to == "User" {
                    normalize_id(text).filter(|id| *id == st.config.user_id).map(|_| true)
                } else {
                    normalize_id(text)
                        .filter(|id| id.starts_with(sobject(f.reference_to).map_or("", |o| o.prefix)))
                        .map(|id| st.records.get(&id).is_some_and(|r| r.object == f.reference_to && !r.deleted))
                };
                match target {
                    None => errors.push(error_item(
                        "MALFORMED_ID",
                        &format!("{}: id value of incorrect type: {text}", f.label),
                        &[f.name],
                    )),
                    Some(false) => {
                        errors.push(error_item("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[f.name]))
                    }
                    Some(true) => {}
                }
            }
        }
        values.insert(f.name.to_string(), converted);
    }
    if !read_only.is_empty() {
        errors.push(error_item(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            &format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                read_only.join(", ")
            ),
            &read_only,
        ));
    }
    let missing: Vec<&str> = schema
        .fields
        .iter()
        .filter(|f| f.required_on_create())
        .filter(|f| match write {
            Write::Create => values.get(f.name).is_none_or(|v| v.is_null() || v.as_str() == Some("")),
            Write::Update => values.get(f.name).is_some_and(|v| v.is_null() || v.as_str() == Some("")),
        })
        .map(|f| f.name)
        .collect();
    if !missing.is_empty() {
        errors.push(error_item(
            "REQUIRED_FIELD_MISSING",
            &format!("Required fields are missing: [{}]", missing.join(", ")),
            &missing,
        ));
    }
    if errors.is_empty() { Ok(values) } else { Err(json_response(StatusCode::BAD_REQUEST, &Value::Array(errors))) }
}

fn convert(f: &Field, value: &Value) -> Result<Value, String> {
    let wrong = |kind: &str| {
        format!(
            "Cannot deserialize instance of {kind} from {} value {value} or request may be missing a required field",
            token_kind(value)
        )
    };
    Ok(match (f.kind, value) {
        (_, Value::Null) => Value::Null,
        ("boolean", Value::Bool(_)) => value.clone(),
        ("boolean", _) => return Err(wrong("boolean")),
        ("int", Value::Number(n)) if n.is_i64() => value.clone(),
        ("int", Value::String(s)) => s.trim().parse::<i64>().map(|n| json!(n)).map_err(|_| wrong("int"))?,
        ("int", _) => return Err(wrong("int")),
        ("currency" | "double", Value::Number(_)) => value.clone(),
        ("currency" | "double", Value::String(s)) => {
            s.trim().parse::<f64>().map(|n| json!(n)).map_err(|_| wrong("double"))?
        }
        ("currency" | "double", _) => return Err(wrong("double")),
        ("date", Value::String(s)) if is_date(s) => value.clone(),
        ("date", _) => return Err(wrong("date")),
        (_, Value::String(_)) => value.clone(),
        (_, Value::Number(n)) => Value::String(n.to_string()),
        (_, Value::Bool(b)) => Value::String(b.to_string()),
        _ => return Err(wrong("string")),
    })
}

fn token_kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
        Value::Null => "VALUE_NULL",
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && s[5..7].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
        && s[8..10].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
}

/// The record an `{id}` path segment names (15 or 18 characters, of this object's key prefix).
fn find<'a>(st: &'a Inner, schema: &SObject, id: &str) -> Result<(String, &'a Rec), Response> {
    let Some(normal) = normalize_id(id) else {
        return Err(sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {id}"),
            &[],
        ));
    };
    match st.records.get(&normal) {
        Some(rec) if rec.object == schema.name => Ok((normal, rec)),
        _ => Err(not_found()),
    }
}

/// `GET /services/data/vXX.X/sobjects/{object}/{id}[?fields=…]`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-get-field-values.html>.
fn read(st: &Inner, schema: &SObject, id: &str, base: &str, q: &[(String, String)]) -> Result<Response, Response> {
    let (_, rec) = find(st, schema, id)?;
    if rec.deleted {
        return Err(not_found());
    }
    let fields = requested_fields(schema, q)?;
    Ok(json_response(StatusCode::OK, &record_json(schema, rec, base, fields.as_deref())))
}

fn requested_fields(schema: &SObject, q: &[(String, String)]) -> Result<Option<Vec<&'static str>>, Response> {
    let Some((_, list)) = q.iter().find(|(k, _)| k == "fields") else { return Ok(None) };
    let mut fields = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        fields.push(schema.field(name).ok_or_else(|| no_such_column(name, schema.name))?.name);
    }
    Ok(Some(fields))
}

fn no_such_column(name: &str, object: &str) -> Response {
    sf_error(
        StatusCode::BAD_REQUEST,
        "INVALID_FIELD",
        &format!(
            "No such column '{name}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
        ),
        &[],
    )
}

fn record_json(schema: &SObject, rec: &Rec, base: &str, fields: Option<&[&str]>) -> Value {
    let id = rec.fields.get("Id").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert(
        "attributes".to_string(),
        json!({ "type": schema.name, "url": format!("{base}/sobjects/{}/{id}", schema.name) }),
    );
    match fields {
        Some(list) => {
            for name in list {
                out.insert((*name).to_string(), rec.fields.get(*name).cloned().unwrap_or(Value::Null));
            }
        }
        None => {
            for f in schema.fields {
                out.insert(f.name.to_string(), rec.fields.get(f.name).cloned().unwrap_or(Value::Null));
            }
        }
    }
    Value::Object(out)
}

/// `PATCH /services/data/vXX.X/sobjects/{object}/{id}`: `204`;
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-update-fields.html>.
fn update(st: &mut Inner, schema: &SObject, id: &str, body: &[u8]) -> Result<Response, Response> {
    let (id, rec) = find(st, schema, id)?;
    if rec.deleted {
        return Err(entity_is_deleted());
    }
    let input = json_object(body)?;
    let values = validate(st, schema, &input, Write::Update)?;
    apply(st, schema, &id, values);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn apply(st: &mut Inner, schema: &SObject, id: &str, values: Map<String, Value>) {
    if let Some(rec) = st.records.get_mut(id) {
        let now = sf_datetime(now_ms());
        rec.fields.extend(values);
        rec.fields.insert("LastModifiedDate".to_string(), json!(now));
        rec.fields.insert("SystemModstamp".to_string(), json!(now));
        compute_name(schema, &mut rec.fields);
    }
}

/// `DELETE /services/data/vXX.X/sobjects/{object}/{id}`: `204`; a deleted record answers
/// `404 ENTITY_IS_DELETED`;
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-delete-record.html>.
fn delete(st: &mut Inner, schema: &SObject, id: &str) -> Result<Response, Response> {
    let (id, rec) = find(st, schema, id)?;
    if rec.deleted {
        return Err(entity_is_deleted());
    }
    if let Some(rec) = st.records.get_mut(&id) {
        rec.deleted = true;
        rec.fields.insert("IsDeleted".to_string(), json!(true));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn entity_is_deleted() -> Response {
    sf_error(StatusCode::NOT_FOUND, "ENTITY_IS_DELETED", "entity is deleted", &[])
}

/// The records whose external ID field (or `Id`) holds `value`.
fn by_external_id(
    st: &Inner,
    schema: &SObject,
    field: &str,
    value: &str,
) -> Result<(&'static str, Vec<String>), Response> {
    let f = schema.field(field).filter(|f| f.external_id || f.name == "Id").ok_or_else(|| {
        sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
            &[],
        )
    })?;
    let wanted = if f.name == "Id" { normalize_id(value).unwrap_or_default() } else { value.to_lowercase() };
    let ids = st
        .live(schema)
        .filter(|(_, r)| {
            r.fields.get(f.name).and_then(Value::as_str).is_some_and(|v| v.to_lowercase() == wanted.to_lowercase())
        })
        .map(|(id, _)| id.clone())
        .collect();
    Ok((f.name, ids))
}

fn multiple_choices(schema: &SObject, base: &str, ids: &[String]) -> Response {
    let urls: Vec<String> = ids.iter().map(|id| format!("{base}/sobjects/{}/{id}", schema.name)).collect();
    json_response(StatusCode::MULTIPLE_CHOICES, &json!(urls))
}

/// `GET /services/data/vXX.X/sobjects/{object}/{field}/{value}`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-upsert.html>.
fn read_by_external_id(
    st: &Inner,
    schema: &SObject,
    field: &str,
    value: &str,
    base: &str,
    q: &[(String, String)],
) -> Result<Response, Response> {
    let (_, ids) = by_external_id(st, schema, field, value)?;
    match ids.as_slice() {
        [] => Err(not_found()),
        [id] => {
            let fields = requested_fields(schema, q)?;
            Ok(json_response(StatusCode::OK, &record_json(schema, &st.records[id], base, fields.as_deref())))
        }
        many => Ok(multiple_choices(schema, base, many)),
    }
}

/// `PATCH /services/data/vXX.X/sobjects/{object}/{externalIdField}/{value}`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/dome-upsert.html> — no match
/// creates (`201 {id, success, errors, created: true}`; not with `updateOnly=true`, which answers
/// `404`), one match updates (`200 {…, created: false}` since API 46.0, `204` before), several
/// answer `300` with the matching records.
fn upsert(
    st: &mut Inner,
    schema: &'static SObject,
    field: &str,
    value: &str,
    major: u32,
    q: &[(String, String)],
    body: &[u8],
) -> Result<Response, Response> {
    let base = format!("/services/data/v{major}.0");
    let (field_name, ids) = by_external_id(st, schema, field, value)?;
    let input = json_object(body)?;
    match ids.as_slice() {
        [] => {
            if q.iter().any(|(k, v)| k == "updateOnly" && v == "true") {
                return Err(not_found());
            }
            let mut values = validate(st, schema, &input, Write::Create)?;
            if field_name != "Id" {
                values.insert(field_name.to_string(), json!(value));
            }
            let id = st.store(schema, values);
            Ok(json_response(StatusCode::CREATED, &json!({ "id": id, "success": true, "errors": [], "created": true })))
        }
        [id] => {
            let values = validate(st, schema, &input, Write::Update)?;
            let id = id.clone();
            apply(st, schema, &id, values);
            if major >= 46 {
                Ok(json_response(StatusCode::OK, &json!({ "id": id, "success": true, "errors": [], "created": false })))
            } else {
                Ok(StatusCode::NO_CONTENT.into_response())
            }
        }
        many => Ok(multiple_choices(schema, &base, many)),
    }
}

/// `GET /services/data/vXX.X/sobjects`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-describe-global.html>.
fn describe_global(base: &str) -> Response {
    let sobjects: Vec<Value> = SOBJECTS.iter().map(|s| describe_summary(s, base)).collect();
    json_response(StatusCode::OK, &json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects }))
}

fn describe_summary(schema: &SObject, base: &str) -> Value {
    let url = format!("{base}/sobjects/{}", schema.name);
    json!({
        "name": schema.name,
        "label": schema.label,
        "labelPlural": schema.plural,
        "keyPrefix": schema.prefix,
        "custom": false,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
        "searchable": true,
        "retrieveable": true,
        "urls": {
            "sobject": url,
            "describe": format!("{url}/describe"),
            "rowTemplate": format!("{url}/{{ID}}"),
        },
    })
}

/// `GET /services/data/vXX.X/sobjects/{object}/describe`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-sobject-describe.html>.
fn describe(schema: &SObject, base: &str) -> Response {
    let mut answer = describe_summary(schema, base);
    let fields: Vec<Value> = schema
        .fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "label": f.label,
                "type": f.kind,
                "length": f.length,
                "createable": f.createable,
                "updateable": f.updateable,
                "nillable": f.nillable,
                "defaultedOnCreate": f.defaulted,
                "defaultValue": f.default,
                "externalId": f.external_id,
                "idLookup": f.external_id || f.name == "Id",
                "unique": false,
                "custom": f.name.ends_with("__c"),
                "calculated": !f.createable && !f.updateable && f.name == "Name",
                "filterable": true,
                "sortable": f.kind != "textarea",
                "referenceTo": if f.reference_to.is_empty() { json!([]) } else { json!([f.reference_to]) },
                "relationshipName": f.name.strip_suffix("Id").filter(|_| f.kind == "reference"),
                "picklistValues": f.picklist.iter().map(|v| json!({
                    "active": true,
                    "defaultValue": f.default == Some(*v),
                    "label": v,
                    "validFor": null,
                    "value": v,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    answer["fields"] = Value::Array(fields);
    answer["childRelationships"] = json!([]);
    answer["recordTypeInfos"] = json!([]);
    json_response(StatusCode::OK, &answer)
}

// ---------------------------------------------------------------------------------------------
// SOQL

/// `GET /services/data/vXX.X/query?q=…`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query.html> (up to
/// 2,000 records a batch; `totalSize`, `done`, `nextRecordsUrl`
/// `/services/data/vXX.X/query/01g…-2000`, `records`; `MALFORMED_QUERY` for an invalid query)
/// and the batch size header `Sforce-Query-Options: batchSize=` (200 to 2,000).
fn query(st: &mut Inner, base: &str, q: &[(String, String)], batch: Option<usize>) -> Result<Response, Response> {
    let Some((_, text)) = q.iter().find(|(k, _)| k == "q") else {
        return Err(sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "A query string has to be specified", &[]));
    };
    let soql = parse_soql(text)?;
    let mut rows: Vec<(&String, &Rec)> = st.live(soql.object).collect();
    rows.retain(|(_, rec)| soql.matches(rec));
    if let Some((field, descending)) = soql.order {
        rows.sort_by(|(_, a), (_, b)| {
            let order =
                compare(a.fields.get(field).unwrap_or(&Value::Null), b.fields.get(field).unwrap_or(&Value::Null));
            if descending { order.reverse() } else { order }
        });
    }
    let rows: Vec<&Rec> =
        rows.into_iter().map(|(_, r)| r).skip(soql.offset).take(soql.limit.unwrap_or(usize::MAX)).collect();
    if soql.count {
        return Ok(json_response(StatusCode::OK, &json!({ "totalSize": rows.len(), "done": true, "records": [] })));
    }
    let records: Vec<Value> = rows.iter().map(|r| record_json(soql.object, r, base, Some(&soql.fields))).collect();
    let batch = batch.unwrap_or(st.config.query_batch_size).max(1);
    if records.len() <= batch {
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "totalSize": records.len(), "done": true, "records": records }),
        ));
    }
    let n = st.next();
    let locator = sf_id("01g", n);
    let total = records.len();
    let first: Vec<Value> = records[..batch].to_vec();
    st.locators.insert(locator.clone(), records);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "totalSize": total, "done": false, "nextRecordsUrl": format!("{base}/query/{locator}-{batch}"), "records": first }),
    ))
}

/// `GET /services/data/vXX.X/query/{locator}-{offset}`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query-more-results.html>.
fn query_more(st: &Inner, base: &str, locator: &str, batch: Option<usize>) -> Result<Response, Response> {
    let invalid = || sf_error(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator", &[]);
    let (id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let records = st.locators.get(id).ok_or_else(invalid)?;
    if offset >= records.len() {
        return Err(invalid());
    }
    let batch = batch.unwrap_or(st.config.query_batch_size).max(1);
    let end = (offset + batch).min(records.len());
    let mut answer =
        json!({ "totalSize": records.len(), "done": end == records.len(), "records": records[offset..end].to_vec() });
    if end < records.len() {
        answer["nextRecordsUrl"] = json!(format!("{base}/query/{id}-{end}"));
    }
    Ok(json_response(StatusCode::OK, &answer))
}

struct Soql {
    object: &'static SObject,
    fields: Vec<&'static str>,
    count: bool,
    conditions: Vec<Condition>,
    any: bool,
    order: Option<(&'static str, bool)>,
    limit: Option<usize>,
    offset: usize,
}

struct Condition {
    field: &'static str,
    op: String,
    values: Vec<Value>,
    negate: bool,
}

impl Soql {
    fn matches(&self, rec: &Rec) -> bool {
        let test = |c: &Condition| {
            let actual = rec.fields.get(c.field).unwrap_or(&Value::Null);
            let hit = match c.op.as_str() {
                "=" => c.values.first().is_some_and(|v| equal(actual, v)),
                "!=" | "<>" => c.values.first().is_some_and(|v| !equal(actual, v)),
                "<" | "<=" | ">" | ">=" => c.values.first().is_some_and(|v| {
                    !actual.is_null() && {
                        let o = compare(actual, v);
                        match c.op.as_str() {
                            "<" => o.is_lt(),
                            "<=" => o.is_le(),
                            ">" => o.is_gt(),
                            _ => o.is_ge(),
                        }
                    }
                }),
                "LIKE" => c.values.first().and_then(Value::as_str).is_some_and(|pattern| like(actual, pattern)),
                "IN" => c.values.iter().any(|v| equal(actual, v)),
                _ => false,
            };
            hit != c.negate
        };
        if self.conditions.is_empty() {
            true
        } else if self.any {
            self.conditions.iter().any(test)
        } else {
            self.conditions.iter().all(test)
        }
    }
}

fn equal(actual: &Value, wanted: &Value) -> bool {
    match (actual, wanted) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(a), Value::String(b)) => match (normalize_id(a), normalize_id(b)) {
            (Some(x), Some(y)) if a.len() >= 15 && b.len() >= 15 => x == y,
            _ => a.eq_ignore_ascii_case(b),
        },
        _ => compare(actual, wanted).is_eq(),
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let number = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse::<f64>().ok()));
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => {
                let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_lowercase);
                text(a).cmp(&text(b))
            }
        },
    }
}

fn like(actual: &Value, pattern: &str) -> bool {
    let Some(text) = actual.as_str() else { return false };
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Punct(String),
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Word(w) | Token::Punct(w) => w.clone(),
            Token::Text(t) => format!("'{t}'"),
        }
    }

    fn is(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

fn malformed(code: &str, message: &str) -> Response {
    sf_error(StatusCode::BAD_REQUEST, code, message, &[])
}

fn tokenize(text: &str, code: &str) -> Result<Vec<Token>, Response> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(malformed(code, "unexpected end of query: unterminated string")),
                    Some('\\') => {
                        let escaped = chars.get(i + 1).copied().unwrap_or('\\');
                        s.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        s.push(*other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(s));
        } else if matches!(c, ',' | '(' | ')') {
            tokens.push(Token::Punct(c.to_string()));
            i += 1;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if matches!(two.as_str(), "!=" | "<=" | ">=" | "<>") { two } else { c.to_string() };
            if op == "!" {
                return Err(malformed(code, "unexpected token: '!'"));
            }
            i += op.len();
            tokens.push(Token::Punct(op));
        } else if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '+') {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '-' | ':' | '+')) {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            return Err(malformed(code, &format!("unexpected token: '{c}'")));
        }
    }
    Ok(tokens)
}

struct Cursor {
    tokens: Vec<Token>,
    at: usize,
    code: &'static str,
}

impl Cursor {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, Response> {
        let token = self.tokens.get(self.at).cloned().ok_or_else(|| malformed(self.code, "unexpected end of query"))?;
        self.at += 1;
        Ok(token)
    }

    fn expect_word(&mut self, keyword: &str) -> Result<(), Response> {
        let token = self.next()?;
        if token.is(keyword) { Ok(()) } else { Err(self.unexpected(&token)) }
    }

    fn expect_punct(&mut self, punct: &str) -> Result<(), Response> {
        let token = self.next()?;
        if token == Token::Punct(punct.to_string()) { Ok(()) } else { Err(self.unexpected(&token)) }
    }

    fn word(&mut self) -> Result<String, Response> {
        match self.next()? {
            Token::Word(w) => Ok(w),
            other => Err(self.unexpected(&other)),
        }
    }

    fn number(&mut self) -> Result<usize, Response> {
        let token = self.next()?;
        match &token {
            Token::Word(w) => w.parse().map_err(|_| self.unexpected(&token)),
            _ => Err(self.unexpected(&token)),
        }
    }

    fn unexpected(&self, token: &Token) -> Response {
        malformed(self.code, &format!("unexpected token: '{}'", token.show()))
    }

    fn take_if(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|t| t.is(keyword)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
}

fn field_of(schema: &'static SObject, name: &str) -> Result<&'static str, Response> {
    if let Some((relationship, _)) = name.split_once('.') {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            &format!(
                "Didn't understand relationship '{relationship}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
            ),
            &[],
        ));
    }
    schema.field(name).map(|f| f.name).ok_or_else(|| no_such_column(name, schema.name))
}

fn object_of(name: &str) -> Result<&'static SObject, Response> {
    sobject(name).ok_or_else(|| {
        sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            &format!("sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."),
            &[],
        )
    })
}

fn literal(cursor: &mut Cursor) -> Result<Value, Response> {
    Ok(match cursor.next()? {
        Token::Text(s) => Value::String(s),
        Token::Word(w) if w.eq_ignore_ascii_case("null") => Value::Null,
        Token::Word(w) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
        Token::Word(w) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
        Token::Word(w) if is_date(&w) => Value::String(w),
        Token::Word(w) => match w.parse::<f64>() {
            Ok(n) => json!(n),
            Err(_) => return Err(cursor.unexpected(&Token::Word(w))),
        },
        other => return Err(cursor.unexpected(&other)),
    })
}

fn parse_soql(text: &str) -> Result<Soql, Response> {
    let tokens = tokenize(text, "MALFORMED_QUERY")?;
    let mut c = Cursor { tokens, at: 0, code: "MALFORMED_QUERY" };
    c.expect_word("SELECT")?;
    let mut names = Vec::new();
    let mut count = false;
    if c.peek().is_some_and(|t| t.is("COUNT")) && c.tokens.get(c.at + 1) == Some(&Token::Punct("(".to_string())) {
        c.at += 1;
        c.expect_punct("(")?;
        c.expect_punct(")")?;
        count = true;
    } else {
        loop {
            let name = c.word()?;
            if name.eq_ignore_ascii_case("FROM") {
                return Err(c.unexpected(&Token::Word(name)));
            }
            names.push(name);
            if c.peek() == Some(&Token::Punct(",".to_string())) {
                c.at += 1;
            } else {
                break;
            }
        }
    }
    c.expect_word("FROM")?;
    let object = object_of(&c.word()?)?;
    let fields = names.iter().map(|n| field_of(object, n)).collect::<Result<Vec<_>, _>>()?;
    let mut soql =
        Soql { object, fields, count, conditions: Vec::new(), any: false, order: None, limit: None, offset: 0 };
    if c.take_if("WHERE") {
        let mut joiner: Option<bool> = None;
        loop {
            let field = field_of(object, &c.word()?)?;
            let negate = c.take_if("NOT");
            let op = match c.next()? {
                Token::Punct(p) if p != "(" && p != ")" && p != "," && !negate => p,
                Token::Word(w) if w.eq_ignore_ascii_case("LIKE") && !negate => "LIKE".to_string(),
                Token::Word(w) if w.eq_ignore_ascii_case("IN") => "IN".to_string(),
                other => return Err(c.unexpected(&other)),
            };
            let values = if op == "IN" {
                c.expect_punct("(")?;
                let mut list = vec![literal(&mut c)?];
                while c.peek() == Some(&Token::Punct(",".to_string())) {
                    c.at += 1;
                    list.push(literal(&mut c)?);
                }
                c.expect_punct(")")?;
                list
            } else {
                vec![literal(&mut c)?]
            };
            soql.conditions.push(Condition { field, op, values, negate });
            let any = if c.take_if("AND") {
                false
            } else if c.take_if("OR") {
                true
            } else {
                break;
            };
            if joiner.is_some_and(|j| j != any) {
                return Err(malformed("MALFORMED_QUERY", "unexpected token: mixing AND and OR needs parentheses"));
            }
            joiner = Some(any);
            soql.any = any;
        }
    }
    if c.take_if("ORDER") {
        c.expect_word("BY")?;
        let field = field_of(object, &c.word()?)?;
        let descending = if c.take_if("DESC") {
            true
        } else {
            c.take_if("ASC");
            false
        };
        if c.take_if("NULLS") && !(c.take_if("FIRST") || c.take_if("LAST")) {
            return Err(malformed("MALFORMED_QUERY", "unexpected token after NULLS"));
        }
        soql.order = Some((field, descending));
    }
    if c.take_if("LIMIT") {
        soql.limit = Some(c.number()?);
    }
    if c.take_if("OFFSET") {
        soql.offset = c.number()?;
    }
    if let Some(extra) = c.peek().cloned() {
        return Err(c.unexpected(&extra));
    }
    Ok(soql)
}

// ---------------------------------------------------------------------------------------------
// SOSL

/// `GET /services/data/vXX.X/search?q=FIND {…} …`:
/// <https://developer.salesforce.com/docs/platform/api-rest/guide/resources-search.html>
/// (the answer is `{"searchRecords": [...]}`, each record with `attributes.type`). The term is
/// matched word by word, case-insensitively, `*` a wildcard; at least two characters.
fn search(st: &Inner, base: &str, q: &[(String, String)]) -> Result<Response, Response> {
    let code = "MALFORMED_SEARCH";
    let Some((_, text)) = q.iter().find(|(k, _)| k == "q") else {
        return Err(malformed(code, "No search term found. The search term must be enclosed in braces."));
    };
    let trimmed = text.trim_start();
    let after_find = trimmed
        .get(..4)
        .filter(|w| w.eq_ignore_ascii_case("FIND"))
        .map(|_| trimmed[4..].trim_start())
        .ok_or_else(|| malformed(code, "unexpected token: the search must start with FIND"))?;
    let Some(inner) = after_find.strip_prefix('{') else {
        return Err(malformed(code, "No search term found. The search term must be enclosed in braces."));
    };
    let mut term = String::new();
    let mut rest = None;
    let mut chars = inner.char_indices();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    term.push(escaped);
                }
            }
            '}' => {
                rest = Some(&inner[i + 1..]);
                break;
            }
            other => term.push(other),
        }
    }
    let Some(rest) = rest else {
        return Err(malformed(code, "No search term found. The search term must be enclosed in braces."));
    };
    let words: Vec<String> = term.trim().trim_matches('"').split_whitespace().map(str::to_lowercase).collect();
    if words.iter().map(|w| w.trim_matches('*').chars().count()).sum::<usize>() < 2 {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_SEARCH",
            &format!("search term must be longer than one character: {}", term.trim()),
            &[],
        ));
    }
    let mut c = Cursor { tokens: tokenize(rest, code)?, at: 0, code: "MALFORMED_SEARCH" };
    let mut group = "ALL";
    if c.take_if("IN") {
        let g = c.word()?.to_uppercase();
        if !matches!(g.as_str(), "ALL" | "NAME" | "EMAIL" | "PHONE" | "SIDEBAR") {
            return Err(c.unexpected(&Token::Word(g)));
        }
        c.expect_word("FIELDS")?;
        group = match g.as_str() {
            "NAME" => "NAME",
            "EMAIL" => "EMAIL",
            "PHONE" => "PHONE",
            _ => "ALL",
        };
    }
    let mut specs: Vec<(&'static SObject, Vec<&'static str>, Option<usize>)> = Vec::new();
    if c.take_if("RETURNING") {
        loop {
            let object = object_of(&c.word()?)?;
            let mut fields = Vec::new();
            let mut limit = None;
            if c.peek() == Some(&Token::Punct("(".to_string())) {
                c.at += 1;
                loop {
                    if c.take_if("LIMIT") {
                        limit = Some(c.number()?);
                        break;
                    }
                    fields.push(field_of(object, &c.word()?)?);
                    if c.peek() == Some(&Token::Punct(",".to_string())) {
                        c.at += 1;
                    } else {
                        if c.take_if("LIMIT") {
                            limit = Some(c.number()?);
                        }
                        break;
                    }
                }
                c.expect_punct(")")?;
            }
            specs.push((object, fields, limit));
            if c.peek() == Some(&Token::Punct(",".to_string())) {
                c.at += 1;
            } else {
                break;
            }
        }
    } else {
        specs = SOBJECTS.iter().map(|o| (o, Vec::new(), None)).collect();
    }
    let overall = if c.take_if("LIMIT") { Some(c.number()?) } else { None };
    if let Some(extra) = c.peek().cloned() {
        return Err(c.unexpected(&extra));
    }
    let mut found = Vec::new();
    for (object, fields, limit) in specs {
        let searched: Vec<&str> = object
            .fields
            .iter()
            .filter(|f| match group {
                "NAME" => matches!(f.name, "Name" | "FirstName" | "LastName" | "Company"),
                "EMAIL" => f.kind == "email",
                "PHONE" => f.kind == "phone",
                _ => f.text(),
            })
            .map(|f| f.name)
            .collect();
        let shown: Vec<&str> = if fields.is_empty() { vec!["Id"] } else { fields };
        let hits = st
            .live(object)
            .filter(|(_, rec)| {
                let tokens: Vec<String> = searched
                    .iter()
                    .filter_map(|name| rec.fields.get(*name).and_then(Value::as_str))
                    .flat_map(|v| {
                        v.split(|ch: char| !ch.is_alphanumeric() && ch != '@' && ch != '.')
                            .map(str::to_lowercase)
                            .collect::<Vec<_>>()
                    })
                    .filter(|t| !t.is_empty())
                    .collect();
                words.iter().all(|w| tokens.iter().any(|t| glob(w, t) || glob(w, t.trim_end_matches('.'))))
            })
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, rec)| record_json(object, rec, base, Some(&shown)));
        found.extend(hits);
    }
    found.truncate(overall.unwrap_or(usize::MAX));
    Ok(json_response(StatusCode::OK, &json!({ "searchRecords": found })))
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(stripped) = rest.strip_prefix(part) else { return false };
            rest = stripped;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn sf_error(status: StatusCode, code: &str, message: &str, fields: &[&str]) -> Response {
    json_response(status, &json!([error_item(code, message, fields)]))
}

fn error_item(code: &str, message: &str, fields: &[&str]) -> Value {
    let mut item = json!({ "message": message, "errorCode": code });
    if !fields.is_empty() {
        item["fields"] = json!(fields);
    }
    item
}

fn not_found() -> Response {
    sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", &[])
}

fn not_allowed(method: &str, allowed: &str) -> Response {
    sf_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
        &[],
    )
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            &format!("Cannot deserialize instance of object from {} value", token_kind(&other)),
            &[],
        )),
        Err(e) => {
            Err(sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &format!("Unexpected character: {e}"), &[]))
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json;charset=UTF-8")], body.to_string()).into_response()
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => error_body("redirect_uri_mismatch", "redirect_uri must match configuration"),
    }
}

fn append_query(uri: &str, query: &str) -> String {
    let (base, fragment) = match uri.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (uri, None),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{separator}{query}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn scope_list(value: &str) -> Vec<String> {
    value.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

fn sign(secret: &str, message: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, message.as_bytes()).as_ref())
}

/// A Salesforce record id: the 3-character key prefix, the rest of the 15-character
/// case-sensitive id, and the 3-character case-insensitivity suffix.
fn sf_id(prefix: &str, n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut body = Vec::new();
    let mut rest = n;
    for _ in 0..9 {
        body.push(DIGITS[usize::try_from(rest % 62).unwrap_or(0)]);
        rest /= 62;
    }
    body.reverse();
    let id15 = format!("{prefix}5g0{}", String::from_utf8_lossy(&body));
    let suffix = checksum(&id15);
    format!("{id15}{suffix}")
}

fn checksum(id15: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let index = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            char::from(ALPHABET[index])
        })
        .collect()
}

/// A 15- or 18-character id in its 18-character form (`None` when it isn't an id).
fn normalize_id(id: &str) -> Option<String> {
    if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(format!("{id}{}", checksum(id))),
        18 => {
            let id15 = &id[..15];
            let suffix = checksum(id15);
            id[15..].eq_ignore_ascii_case(&suffix).then(|| format!("{id15}{suffix}"))
        }
        _ => None,
    }
}

/// `2026-01-15T10:30:00.000+0000`, Salesforce's dateTime format.
fn sf_datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+0000", rest / 3600, rest % 3600 / 60, rest % 60, ms % 1000)
}
