//! A fake HubSpot: the app-install (authorize) page, the OAuth token endpoints (the 2026-03 ones and
//! the legacy v1 ones until they are retired) and the CRM API, on one local port.
//!
//! What it covers, each handler citing the page it follows:
//! - `GET /oauth/authorize` (HubSpot serves it on app.hubspot.com): `client_id`, `redirect_uri`,
//!   `scope` (SPACE-separated; a comma-joined list is one malformed scope and is refused),
//!   `optional_scope`, `state`, and PKCE (`code_challenge` with `code_challenge_method=S256`).
//!   The fake plays a user who approves at once: `302` to `redirect_uri?code=…&state=…`. What
//!   HubSpot's authorization page shows as an error (unknown client, unregistered or non-https
//!   redirect URI, a missing required scope, a malformed scope) is a `400` HTML page without a
//!   redirect.
//! - `POST /oauth/2026-03/token` and `POST /oauth/2026-03/token/introspect` (form bodies only:
//!   parameters in the query string are not read), `POST /oauth/v1/token` and
//!   `GET /oauth/v1/access-tokens/{token}` until [`FakeHubSpot::retire_v1`] (or
//!   [`HubSpotConfig::v1_retired`]), after which they answer `404` with HubSpot's error JSON.
//! - CRM API with `Authorization: Bearer`: contacts, companies, deals and notes (create, read,
//!   list, update, search, contacts batch upsert by email), default associations (v4), deal
//!   pipelines, owners, properties. An unknown token answers `401 INVALID_AUTHENTICATION`, an expired one
//!   `401 EXPIRED_AUTHENTICATION`, a token without the object's scope `403 MISSING_SCOPES`.
//!
//! Token lifetimes: an access token lives [`HubSpotConfig::access_token_lifetime`] (HubSpot: 30
//! minutes) from its issue; `expires_in` is that lifetime in whole seconds, rounded DOWN, so a
//! client that trusts `expires_in` never presents a token the fake already considers expired.
//! The refresh token does not expire and is not rotated (the same one comes back on a refresh),
//! until [`FakeHubSpot::revoke_refresh_tokens`].
//!
//! Knobs: [`FakeHubSpot::fail_next`] queues answers for the next CRM API requests (a `429` of the
//! `TEN_SECONDLY_ROLLING` or `DAILY` policy, a `502`, a `504`), served before the token is even
//! looked at; [`FakeHubSpot::expire_all_tokens`]; [`FakeHubSpot::revoke_refresh_tokens`];
//! [`FakeHubSpot::retire_v1`]; [`FakeHubSpot::insert`] seeds records. [`FakeHubSpot::requests`]
//! is the log of every request received, [`FakeHubSpot::token_requests`] counts token-endpoint
//! requests (v1 and 2026-03) by `grant_type`, [`FakeHubSpot::last_authorize_query`] is the raw
//! query of the last authorize request.

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
}

/// An answer [`FakeHubSpot::fail_next`] makes the next CRM API request receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeFailure {
    /// `429`, `policyName: TEN_SECONDLY_ROLLING` (the per-10-seconds burst limit).
    TenSecondlyRollingLimit,
    /// `429`, `policyName: DAILY` (the daily allocation).
    DailyLimit,
    /// `502 Bad Gateway` (transient; HubSpot's guidelines say to pause and retry).
    BadGateway,
    /// `504 Gateway Timeout` (transient).
    GatewayTimeout,
}

/// An owner `GET /crm/v3/owners` lists (and `hubspot_owner_id` accepts).
#[derive(Clone, Debug)]
pub struct HubSpotOwner {
    pub id: String,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// An association between two records, in one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Association {
    pub from_type: String,
    pub from_id: String,
    pub to_type: String,
    pub to_id: String,
    pub type_id: u32,
}

/// What the fake app and account look like.
#[derive(Clone, Debug)]
pub struct HubSpotConfig {
    /// The app's client ID and secret the token endpoints accept.
    pub client_id: String,
    pub client_secret: String,
    /// The redirect URLs set in the app's auth settings; empty accepts any URL HubSpot would
    /// (https, or http on `localhost`; never an IP address).
    pub redirect_uris: Vec<String>,
    /// Scopes checked as required in the app's settings: the install URL's `scope` must list
    /// them all or the authorization page shows an error.
    pub required_scopes: Vec<String>,
    /// Optional scopes the account cannot grant (dropped from the grant, as HubSpot drops them).
    pub unavailable_scopes: Vec<String>,
    /// How long an access token lives (HubSpot: 30 minutes).
    pub access_token_lifetime: Duration,
    /// How long an authorization code can be exchanged (HubSpot says "a short window").
    pub auth_code_lifetime: Duration,
    /// The legacy `/oauth/v1/*` endpoints answer as sunset.
    pub v1_retired: bool,
    pub hub_id: u64,
    pub hub_domain: String,
    pub app_id: u64,
    /// The installing user.
    pub user_id: u64,
    pub user_email: String,
    pub owners: Vec<HubSpotOwner>,
    /// Extra string properties, as `(object type, property name)` (e.g. `("contacts", "plan")`).
    pub custom_properties: Vec<(String, String)>,
    /// `X-HubSpot-RateLimit-Max`: requests allowed per 10-second window.
    pub rate_limit_max: u32,
}

impl Default for HubSpotConfig {
    fn default() -> Self {
        let owner = |id: &str, user_id, email: &str, first: &str, last: &str| HubSpotOwner {
            id: id.to_string(),
            user_id,
            email: email.to_string(),
            first_name: first.to_string(),
            last_name: last.to_string(),
        };
        HubSpotConfig {
            client_id: "5f0c3d8e-1b2a-4c6d-9e7f-hubspot-client".to_string(),
            client_secret: "hubspot-client-secret".to_string(),
            redirect_uris: Vec::new(),
            required_scopes: Vec::new(),
            unavailable_scopes: Vec::new(),
            access_token_lifetime: Duration::from_secs(1800),
            auth_code_lifetime: Duration::from_secs(600),
            v1_retired: false,
            hub_id: 62515,
            hub_domain: "demo-account.hubspot.com".to_string(),
            app_id: 456789,
            user_id: 9586504,
            user_email: "admin@example.com".to_string(),
            owners: vec![
                owner("41629779", 9586504, "ada@example.com", "Ada", "Lovelace"),
                owner("41629780", 9586505, "grace@example.com", "Grace", "Hopper"),
                owner("41629781", 9586506, "alan@example.com", "Alan", "Turing"),
            ],
            custom_properties: Vec::new(),
            rate_limit_max: 110,
        }
    }
}

/// A running fake HubSpot.
pub struct FakeHubSpot {
    /// `http://127.0.0.1:PORT`: the authorize page, the token endpoints and the API.
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeHubSpot {
    /// Serves the fake on a free local port.
    pub async fn start(config: HubSpotConfig) -> std::io::Result<FakeHubSpot> {
        let v1_retired = config.v1_retired;
        let inner = Arc::new(Mutex::new(Inner {
            config,
            v1_retired,
            requests: Vec::new(),
            token_requests: HashMap::new(),
            last_authorize_query: None,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            failures: VecDeque::new(),
            window: VecDeque::new(),
            objects: HashMap::new(),
            next_id: 1001,
            associations: Vec::new(),
            started_ms: now_ms(),
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let base_url = crate::serve(app).await?;
        Ok(FakeHubSpot { base_url, inner })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client ID the fake accepts.
    pub fn client_id(&self) -> String {
        self.lock().config.client_id.clone()
    }

    /// The client secret the fake accepts.
    pub fn client_secret(&self) -> String {
        self.lock().config.client_secret.clone()
    }

    /// `{base_url}/oauth/authorize` (app.hubspot.com's install URL).
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.base_url)
    }

    /// `{base_url}/oauth/2026-03/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/2026-03/token", self.base_url)
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many token-endpoint requests (2026-03 and v1) carried this `grant_type`, whatever the
    /// answer.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.lock().token_requests.get(grant_type).copied().unwrap_or(0)
    }

    /// The raw query string of the last `GET /oauth/authorize`.
    pub fn last_authorize_query(&self) -> Option<String> {
        self.lock().last_authorize_query.clone()
    }

    /// One parameter of the last authorize request, decoded.
    pub fn last_authorize_param(&self, name: &str) -> Option<String> {
        let query = self.last_authorize_query()?;
        form(query.as_bytes()).remove(name)
    }

    /// The next CRM API request (after those already queued) answers `failure`.
    pub fn fail_next(&self, failure: FakeFailure) {
        self.lock().failures.push_back(failure);
    }

    /// Every access token issued so far is expired from now on.
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for token in self.lock().access.values_mut() {
            token.expires_at = token.expires_at.min(now);
        }
    }

    /// Every refresh token issued so far is revoked (as when the user uninstalls the app).
    pub fn revoke_refresh_tokens(&self) {
        for token in self.lock().refresh.values_mut() {
            token.revoked = true;
        }
    }

    /// The legacy `/oauth/v1/*` endpoints answer as sunset from now on.
    pub fn retire_v1(&self) {
        self.lock().v1_retired = true;
    }

    /// Stores a record without validation; its id. `object_type` is `contacts`, `companies`,
    /// `deals` or `notes`; `properties` a JSON object of property values.
    pub fn insert(&self, object_type: &str, properties: Value) -> String {
        let Some(kind) = Kind::parse(object_type) else { panic!("unknown HubSpot object type {object_type}") };
        let mut values = BTreeMap::new();
        if let Some(map) = properties.as_object() {
            for (name, value) in map {
                if let Some(text) = property_text(value) {
                    let text = if kind == Kind::Contacts && name == "email" { text.to_lowercase() } else { text };
                    values.insert(name.clone(), text);
                }
            }
        }
        let mut st = self.lock();
        st.store(kind, values).to_string()
    }

    /// A record as the API would answer with every property it has, or `None`.
    pub fn record(&self, object_type: &str, id: &str) -> Option<Value> {
        let kind = Kind::parse(object_type)?;
        let id: u64 = id.parse().ok()?;
        let st = self.lock();
        let obj = st.objects.get(&kind)?.get(&id)?;
        Some(object_json(kind, id, obj, &Shown::All, None, &[]))
    }

    /// Every association stored, both directions.
    pub fn associations(&self) -> Vec<Association> {
        self.lock().associations.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Inner {
    config: HubSpotConfig,
    v1_retired: bool,
    requests: Vec<Recorded>,
    token_requests: HashMap<String, usize>,
    last_authorize_query: Option<String>,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    failures: VecDeque<FakeFailure>,
    window: VecDeque<Instant>,
    objects: HashMap<Kind, BTreeMap<u64, Obj>>,
    next_id: u64,
    associations: Vec<Association>,
    started_ms: u64,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    challenge: Option<String>,
    expires_at: Instant,
}

struct Access {
    scopes: Vec<String>,
    expires_at: Instant,
}

struct Refresh {
    client_id: String,
    scopes: Vec<String>,
    revoked: bool,
}

struct Obj {
    properties: BTreeMap<String, String>,
    created_ms: u64,
    updated_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Contacts,
    Companies,
    Deals,
    Notes,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "contacts" | "contact" | "0-1" => Some(Kind::Contacts),
            "companies" | "company" | "0-2" => Some(Kind::Companies),
            "deals" | "deal" | "0-3" => Some(Kind::Deals),
            "notes" | "note" | "0-46" => Some(Kind::Notes),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Contacts => "contacts",
            Kind::Companies => "companies",
            Kind::Deals => "deals",
            Kind::Notes => "notes",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Kind::Contacts => "contact",
            Kind::Companies => "company",
            Kind::Deals => "deal",
            Kind::Notes => "note",
        }
    }

    /// Notes are engagements: the notes guide lists the contacts scopes.
    fn read_scope(self) -> &'static str {
        match self {
            Kind::Contacts | Kind::Notes => "crm.objects.contacts.read",
            Kind::Companies => "crm.objects.companies.read",
            Kind::Deals => "crm.objects.deals.read",
        }
    }

    fn write_scope(self) -> &'static str {
        match self {
            Kind::Contacts | Kind::Notes => "crm.objects.contacts.write",
            Kind::Companies => "crm.objects.companies.write",
            Kind::Deals => "crm.objects.deals.write",
        }
    }

    fn created_property(self) -> &'static str {
        if self == Kind::Notes { "hs_createdate" } else { "createdate" }
    }

    fn modified_property(self) -> &'static str {
        if self == Kind::Contacts { "lastmodifieddate" } else { "hs_lastmodifieddate" }
    }

    /// The properties a read or search returns when none are asked for (CRM guides).
    fn default_properties(self) -> &'static [&'static str] {
        match self {
            Kind::Contacts => &["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
            Kind::Companies => &["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
            Kind::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            Kind::Notes => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    fn properties(self) -> &'static [Prop] {
        match self {
            Kind::Contacts => CONTACT_PROPERTIES,
            Kind::Companies => COMPANY_PROPERTIES,
            Kind::Deals => DEAL_PROPERTIES,
            Kind::Notes => NOTE_PROPERTIES,
        }
    }
}

/// A property definition `GET /crm/v3/properties/{objectType}` lists.
struct Prop {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    field_type: &'static str,
    group: &'static str,
    read_only: bool,
    unique: bool,
}

const fn prop(name: &'static str, label: &'static str, kind: &'static str, field_type: &'static str) -> Prop {
    Prop { name, label, kind, field_type, group: "", read_only: false, unique: false }
}

const fn read_only(mut p: Prop) -> Prop {
    p.read_only = true;
    p
}

const fn grouped(mut p: Prop, group: &'static str) -> Prop {
    p.group = group;
    p
}

const CONTACT_PROPERTIES: &[Prop] = &[
    Prop {
        name: "email",
        label: "Email",
        kind: "string",
        field_type: "text",
        group: "contactinformation",
        read_only: false,
        unique: true,
    },
    grouped(prop("firstname", "First Name", "string", "text"), "contactinformation"),
    grouped(prop("lastname", "Last Name", "string", "text"), "contactinformation"),
    grouped(prop("phone", "Phone Number", "string", "phonenumber"), "contactinformation"),
    grouped(prop("company", "Company Name", "string", "text"), "contactinformation"),
    grouped(prop("website", "Website URL", "string", "text"), "contactinformation"),
    grouped(prop("jobtitle", "Job Title", "string", "text"), "contactinformation"),
    grouped(prop("city", "City", "string", "text"), "contactinformation"),
    grouped(prop("country", "Country/Region", "string", "text"), "contactinformation"),
    grouped(prop("lifecyclestage", "Lifecycle Stage", "enumeration", "radio"), "contactinformation"),
    grouped(prop("hs_lead_status", "Lead Status", "enumeration", "radio"), "sales_properties"),
    grouped(prop("hubspot_owner_id", "Contact owner", "enumeration", "select"), "sales_properties"),
    grouped(prop("createdate", "Create Date", "datetime", "date"), "contactinformation"),
    grouped(read_only(prop("lastmodifieddate", "Last Modified Date", "datetime", "date")), "contactinformation"),
    grouped(read_only(prop("hs_object_id", "Record ID", "number", "number")), "contactinformation"),
];

const COMPANY_PROPERTIES: &[Prop] = &[
    grouped(prop("name", "Company name", "string", "text"), "companyinformation"),
    grouped(prop("domain", "Company Domain Name", "string", "text"), "companyinformation"),
    grouped(prop("industry", "Industry", "enumeration", "select"), "companyinformation"),
    grouped(prop("phone", "Phone Number", "string", "phonenumber"), "companyinformation"),
    grouped(prop("city", "City", "string", "text"), "companyinformation"),
    grouped(prop("country", "Country/Region", "string", "text"), "companyinformation"),
    grouped(prop("numberofemployees", "Number of Employees", "number", "number"), "companyinformation"),
    grouped(prop("annualrevenue", "Annual Revenue", "number", "number"), "companyinformation"),
    grouped(prop("description", "Description", "string", "textarea"), "companyinformation"),
    grouped(prop("hubspot_owner_id", "Company owner", "enumeration", "select"), "companyinformation"),
    grouped(prop("createdate", "Create Date", "datetime", "date"), "companyinformation"),
    grouped(read_only(prop("hs_lastmodifieddate", "Last Modified Date", "datetime", "date")), "companyinformation"),
    grouped(read_only(prop("hs_object_id", "Record ID", "number", "number")), "companyinformation"),
];

const DEAL_PROPERTIES: &[Prop] = &[
    grouped(prop("dealname", "Deal Name", "string", "text"), "dealinformation"),
    grouped(prop("dealstage", "Deal Stage", "enumeration", "radio"), "dealinformation"),
    grouped(prop("pipeline", "Pipeline", "enumeration", "select"), "dealinformation"),
    grouped(prop("amount", "Amount", "number", "number"), "dealinformation"),
    grouped(prop("closedate", "Close Date", "datetime", "date"), "dealinformation"),
    grouped(prop("dealtype", "Deal Type", "enumeration", "radio"), "dealinformation"),
    grouped(prop("description", "Deal Description", "string", "textarea"), "dealinformation"),
    grouped(prop("hubspot_owner_id", "Deal owner", "enumeration", "select"), "dealinformation"),
    grouped(prop("createdate", "Create Date", "datetime", "date"), "dealinformation"),
    grouped(read_only(prop("hs_lastmodifieddate", "Last Modified Date", "datetime", "date")), "dealinformation"),
    grouped(read_only(prop("hs_object_id", "Record ID", "number", "number")), "dealinformation"),
];

const NOTE_PROPERTIES: &[Prop] = &[
    grouped(prop("hs_timestamp", "Activity date", "datetime", "date"), "engagement"),
    grouped(prop("hs_note_body", "Note body", "string", "html"), "engagement"),
    grouped(prop("hubspot_owner_id", "Activity assigned to", "enumeration", "select"), "engagement"),
    grouped(prop("hs_attachment_ids", "Attached file IDs", "enumeration", "checkbox"), "engagement"),
    grouped(read_only(prop("hs_createdate", "Create date", "datetime", "date")), "engagement"),
    grouped(read_only(prop("hs_lastmodifieddate", "Last modified date", "datetime", "date")), "engagement"),
    grouped(read_only(prop("hs_object_id", "Record ID", "number", "number")), "engagement"),
];

const LIFECYCLE_STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

const LEAD_STATUSES: &[&str] =
    &["NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"];

/// The default sales pipeline's stages: `(id, label, probability, closed)`.
const DEAL_STAGES: &[(&str, &str, &str, bool)] = &[
    ("appointmentscheduled", "Appointment Scheduled", "0.2", false),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", false),
    ("presentationscheduled", "Presentation Scheduled", "0.6", false),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", false),
    ("contractsent", "Contract Sent", "0.9", false),
    ("closedwon", "Closed Won", "1.0", true),
    ("closedlost", "Closed Lost", "0.0", true),
];

/// Search limits since August 2024 (changelog "Expanded Filtering Capabilities…").
const MAX_FILTER_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 10;
const MAX_FILTERS: usize = 25;
const MAX_SEARCH_LIMIT: usize = 200;
const MAX_SEARCH_RESULTS: usize = 10_000;

impl Inner {
    /// Stores a new record with its system properties; its id.
    fn store(&mut self, kind: Kind, mut properties: BTreeMap<String, String>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let now = now_ms();
        properties.insert("hs_object_id".to_string(), id.to_string());
        properties.entry(kind.created_property().to_string()).or_insert_with(|| iso_ms(now));
        properties.insert(kind.modified_property().to_string(), iso_ms(now));
        self.objects.entry(kind).or_default().insert(id, Obj { properties, created_ms: now, updated_ms: now });
        id
    }

    fn exists(&self, kind: Kind, id: u64) -> bool {
        self.objects.get(&kind).is_some_and(|records| records.contains_key(&id))
    }

    fn contact_by_email(&self, email: &str) -> Option<u64> {
        let email = email.to_lowercase();
        self.objects.get(&Kind::Contacts)?.iter().find_map(|(id, obj)| {
            (obj.properties.get("email").map(|e| e.to_lowercase()) == Some(email.clone())).then_some(*id)
        })
    }

    fn associate(&mut self, from: Kind, from_id: u64, to: Kind, to_id: u64, type_id: u32) {
        let association = Association {
            from_type: from.name().to_string(),
            from_id: from_id.to_string(),
            to_type: to.name().to_string(),
            to_id: to_id.to_string(),
            type_id,
        };
        if !self.associations.contains(&association) {
            self.associations.push(association);
        }
        if let Some(reverse) = default_association(to, from) {
            let back = Association {
                from_type: to.name().to_string(),
                from_id: to_id.to_string(),
                to_type: from.name().to_string(),
                to_id: from_id.to_string(),
                type_id: reverse,
            };
            if !self.associations.contains(&back) {
                self.associations.push(back);
            }
        }
    }

    fn known_property(&self, kind: Kind, name: &str) -> bool {
        kind.properties().iter().any(|p| p.name == name)
            || self.config.custom_properties.iter().any(|(k, p)| Kind::parse(k) == Some(kind) && p == name)
    }

    /// Counts this request in the 10-second window; the requests left in it.
    fn count_request(&mut self) -> u32 {
        let now = Instant::now();
        while self.window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(10)) {
            self.window.pop_front();
        }
        self.window.push_back(now);
        let used = u32::try_from(self.window.len()).unwrap_or(u32::MAX);
        self.config.rate_limit_max.saturating_sub(used)
    }

    fn issue_access_token(&mut self, scopes: &[String]) -> (String, u64) {
        let token = format!("CJ{}", Uuid::new_v4().simple());
        let lifetime = self.config.access_token_lifetime;
        self.access.insert(token.clone(), Access { scopes: scopes.to_vec(), expires_at: Instant::now() + lifetime });
        (token, lifetime.as_secs())
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch

type Shared = Arc<Mutex<Inner>>;

async fn handle(State(shared): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut st = shared.lock().unwrap_or_else(PoisonError::into_inner);
    st.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["oauth", "authorize"]) => authorize(&mut st, &query),
        ("POST", ["oauth", "2026-03", "token"]) => token(&mut st, &body),
        ("POST", ["oauth", "2026-03", "token", "introspect"]) => introspect(&st, &body),
        ("POST", ["oauth", "v1", "token"]) => {
            if st.v1_retired {
                sunset()
            } else {
                token(&mut st, &body)
            }
        }
        ("GET", ["oauth", "v1", "access-tokens", token]) => {
            if st.v1_retired {
                sunset()
            } else {
                v1_token_metadata(&st, token)
            }
        }
        (_, ["crm", rest @ ..]) => crm(&mut st, &method, rest, &query, authorization.as_deref(), &body),
        _ => hs_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found", Map::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth

/// The install URL: <https://developers.hubspot.com/docs/apps/legacy-apps/authentication/working-with-oauth>
/// (query parameters; https required except on localhost, no IP addresses; scopes checked as
/// required in the app settings must be in `scope` or "the authorization page will display an
/// error"; `optional_scope` dropped when the account lacks them) and
/// <https://developers.hubspot.com/docs/api-reference/latest/authentication/manage-oauth-tokens>
/// (the code is single-use and short-lived). PKCE: the token endpoint takes `code_verifier`
/// (<https://developers.hubspot.com/docs/api-reference/2026-03/authentication/oauth-tokens/refresh-oauth-token>).
fn authorize(st: &mut Inner, query: &str) -> Response {
    st.last_authorize_query = Some(query.to_string());
    let q = form(query.as_bytes());
    let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
    if client_id.is_empty() || client_id != st.config.client_id {
        return error_page("The client_id is missing or doesn't belong to an app.");
    }
    let redirect_uri = q.get("redirect_uri").map(String::as_str).unwrap_or("");
    if let Err(why) = acceptable_redirect(redirect_uri) {
        return error_page(&why);
    }
    if !st.config.redirect_uris.is_empty() && !st.config.redirect_uris.iter().any(|u| u == redirect_uri) {
        return error_page("The redirect_uri doesn't match a redirect URL in the app's auth settings.");
    }
    let requested = scope_list(q.get("scope").map(String::as_str).unwrap_or(""));
    if requested.is_empty() {
        return error_page("The scope parameter is missing.");
    }
    let optional = scope_list(q.get("optional_scope").map(String::as_str).unwrap_or(""));
    if let Some(bad) = requested.iter().chain(optional.iter()).find(|s| !valid_scope(s)) {
        return error_page(&format!("Invalid scope \"{bad}\" (scopes are separated by spaces)."));
    }
    if let Some(missing) = st.config.required_scopes.iter().find(|s| !requested.contains(s)) {
        return error_page(&format!(
            "The app requires the scope \"{missing}\", which the install URL doesn't request."
        ));
    }
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method").map(String::as_str)) {
        (None, _) => None,
        (Some(c), Some("S256")) if is_base64url_sha256(c) => Some(c.clone()),
        (Some(_), Some("S256")) => return error_page("The code_challenge isn't a base64url SHA-256 value."),
        (Some(_), _) => return error_page("code_challenge_method must be S256."),
    };
    let mut scopes = requested;
    for scope in optional {
        if !st.config.unavailable_scopes.contains(&scope) && !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let code = format!("na1-{}", Uuid::new_v4());
    st.codes.insert(
        code.clone(),
        Code {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scopes,
            challenge,
            expires_at: Instant::now() + st.config.auth_code_lifetime,
        },
    );
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    params.append_pair("code", &code);
    if let Some(state) = q.get("state") {
        params.append_pair("state", state);
    }
    redirect(&append_query(redirect_uri, &params.finish()))
}

/// `POST /oauth/2026-03/token` and the legacy `POST /oauth/v1/token`:
/// <https://developers.hubspot.com/docs/api-reference/2026-03/authentication/oauth-tokens/refresh-oauth-token>
/// (form body: grant_type, client_id, client_secret, code, code_verifier, redirect_uri,
/// refresh_token; the answer is `AccessTokenResponse`: access_token, refresh_token, expires_in,
/// token_type, token_use, hub_id, user_id, scopes),
/// <https://developers.hubspot.com/changelog/additional-details-returned-when-generating-oauth-access-tokens>
/// (hub_id and scopes in every answer) and, for errors,
/// <https://developers.hubspot.com/changelog/new-oauth-v3-api-endpoints-and-standardized-error-responses>
/// (RFC 6749 `error`/`error_description` plus HubSpot's `status`/`message`).
/// v1: <https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/refresh-oauth-token>.
fn token(st: &mut Inner, body: &[u8]) -> Response {
    let f = form(body);
    let grant_type = f.get("grant_type").cloned().unwrap_or_default();
    *st.token_requests.entry(grant_type.clone()).or_insert(0) += 1;
    if grant_type.is_empty() {
        return oauth_error("invalid_request", "BAD_GRANT_TYPE", "missing grant_type");
    }
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        return oauth_error("unsupported_grant_type", "BAD_GRANT_TYPE", "unsupported grant_type");
    }
    if let Err(response) = check_client(st, &f) {
        return response;
    }
    let client_id = f.get("client_id").cloned().unwrap_or_default();
    if grant_type == "authorization_code" {
        let code_value = f.get("code").map(String::as_str).unwrap_or("");
        let Some(code) = st.codes.get(code_value) else {
            return oauth_error("invalid_grant", "BAD_AUTH_CODE", "missing or unknown auth code");
        };
        if code.expires_at <= Instant::now() {
            return oauth_error("invalid_grant", "EXPIRED_AUTH_CODE", "auth code is expired");
        }
        if code.client_id != client_id {
            return oauth_error("invalid_grant", "BAD_AUTH_CODE", "auth code was issued to another client");
        }
        let Some(redirect_uri) = f.get("redirect_uri") else {
            return oauth_error("invalid_request", "BAD_REDIRECT_URI", "missing redirect_uri");
        };
        if *redirect_uri != code.redirect_uri {
            return oauth_error(
                "invalid_grant",
                "MISMATCH_REDIRECT_URI_AUTH_CODE",
                "redirect_uri does not match the redirect_uri of the auth code",
            );
        }
        if let Some(challenge) = &code.challenge {
            let Some(verifier) = f.get("code_verifier") else {
                return oauth_error("invalid_grant", "BAD_AUTH_CODE", "missing code_verifier");
            };
            if s256(verifier) != *challenge {
                return oauth_error("invalid_grant", "BAD_AUTH_CODE", "code_verifier does not match code_challenge");
            }
        }
        let Some(code) = st.codes.remove(code_value) else {
            return oauth_error("invalid_grant", "BAD_AUTH_CODE", "missing or unknown auth code");
        };
        let refresh_token = format!("na1-{}-{}", &Uuid::new_v4().simple().to_string()[..4], Uuid::new_v4());
        st.refresh.insert(
            refresh_token.clone(),
            Refresh { client_id: client_id.clone(), scopes: code.scopes.clone(), revoked: false },
        );
        token_answer(st, &code.scopes, &refresh_token)
    } else {
        let value = f.get("refresh_token").map(String::as_str).unwrap_or("");
        let scopes = match st.refresh.get(value) {
            Some(r) if !r.revoked && r.client_id == client_id => r.scopes.clone(),
            _ => {
                return oauth_error(
                    "invalid_grant",
                    "BAD_REFRESH_TOKEN",
                    "refresh token is invalid, expired or revoked",
                );
            }
        };
        token_answer(st, &scopes, value)
    }
}

fn token_answer(st: &mut Inner, scopes: &[String], refresh_token: &str) -> Response {
    let (access_token, expires_in) = st.issue_access_token(scopes);
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "bearer",
            "token_use": "access_token",
            "refresh_token": refresh_token,
            "access_token": access_token,
            "expires_in": expires_in,
            "hub_id": st.config.hub_id,
            "user_id": st.config.user_id,
            "scopes": scopes,
        }),
    )
}

fn check_client(st: &Inner, f: &HashMap<String, String>) -> Result<(), Response> {
    if f.get("client_id") != Some(&st.config.client_id) {
        return Err(oauth_error("invalid_client", "BAD_CLIENT_ID", "missing or unknown client id"));
    }
    if f.get("client_secret") != Some(&st.config.client_secret) {
        return Err(oauth_error("invalid_client", "BAD_CLIENT_SECRET", "missing or invalid client secret"));
    }
    Ok(())
}

/// `POST /oauth/2026-03/token/introspect`:
/// <https://developers.hubspot.com/docs/api-reference/2026-03/authentication/oauth-tokens/token-introspect>
/// (form body: client_id, client_secret, token, token_type_hint; the answer is
/// `PublicAccessTokenInfoResponse` or `PublicRefreshTokenInfoResponse`). The docs show no answer
/// for a token that is not active; the fake answers RFC 7662's `{"active": false}` (200).
fn introspect(st: &Inner, body: &[u8]) -> Response {
    let f = form(body);
    if let Err(response) = check_client(st, &f) {
        return response;
    }
    let Some(token) = f.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error("invalid_request", "BAD_TOKEN", "missing token");
    };
    match token_info(st, token) {
        Some(info) => json_response(StatusCode::OK, &info),
        None => json_response(StatusCode::OK, &json!({ "active": false })),
    }
}

fn token_info(st: &Inner, token: &str) -> Option<Value> {
    let c = &st.config;
    if let Some(access) = st.access.get(token) {
        let now = Instant::now();
        if access.expires_at <= now {
            return None;
        }
        let expires_in = access.expires_at.duration_since(now).as_secs();
        return Some(json!({
            "active": true,
            "token": token,
            "token_use": "access_token",
            "token_type": "access",
            "client_id": c.client_id,
            "app_id": c.app_id,
            "hub_id": c.hub_id,
            "hub_domain": c.hub_domain,
            "user_id": c.user_id,
            "user": c.user_email,
            "scopes": access.scopes,
            "expires_in": expires_in,
            "is_private_distribution": false,
            "signed_access_token": {
                "appId": c.app_id,
                "hubId": c.hub_id,
                "userId": c.user_id,
                "installingUserId": c.user_id,
                "expiresAt": now_ms() + expires_in * 1000,
                "scopes": access.scopes.join(","),
                "hublet": "na1",
                "isUserLevel": false,
                "isServiceAccount": false,
                "isPrivateDistribution": false,
            },
        }));
    }
    let refresh = st.refresh.get(token).filter(|r| !r.revoked)?;
    Some(json!({
        "active": true,
        "token": token,
        "token_use": "refresh_token",
        "token_type": "refresh",
        "client_id": c.client_id,
        "app_id": c.app_id,
        "hub_id": c.hub_id,
        "hub_domain": c.hub_domain,
        "user_id": c.user_id,
        "user": c.user_email,
        "scopes": refresh.scopes,
    }))
}

/// `GET /oauth/v1/access-tokens/{token}`:
/// <https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/get-oauth-token-metadata>.
/// The page shows no answer for an unknown or expired token; the fake answers `404` with
/// HubSpot's error JSON.
fn v1_token_metadata(st: &Inner, token: &str) -> Response {
    match token_info(st, token) {
        Some(mut info) if info["token_use"] == "access_token" => {
            if let Some(map) = info.as_object_mut() {
                map.remove("active");
                map.remove("token_use");
                map.remove("client_id");
            }
            json_response(StatusCode::OK, &info)
        }
        _ => hs_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "access token not found or expired", Map::new()),
    }
}

/// What a retired v1 endpoint answers. <https://developers.hubspot.com/changelog/v1-oauth-api-deprecation>
/// and the migration guide
/// (<https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/migration-guide>)
/// say the v1 endpoints stop working on February 16, 2027 ("authentication failures after the
/// sunset date"), and <https://developers.hubspot.com/docs/api-reference/deprecated-apis> that
/// sunsetted APIs "return an error" — neither gives the status. The fake answers `404` (the route
/// no longer exists) with HubSpot's error JSON.
fn sunset() -> Response {
    hs_error(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        "The OAuth v1 API has been sunset. Use /oauth/2026-03/token and /oauth/2026-03/token/introspect.",
        Map::new(),
    )
}

fn oauth_error(error: &str, status: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": error, "error_description": description, "status": status, "message": description }),
    )
}

fn error_page(message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html><head><title>HubSpot</title></head><body><h1>Authorization failed</h1><p>{}</p></body></html>",
        html_escape(message)
    );
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn acceptable_redirect(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|_| "The redirect_uri is missing or isn't a URL.".to_string())?;
    match parsed.host() {
        Some(url::Host::Domain(host)) => {
            if parsed.scheme() == "https" || (parsed.scheme() == "http" && host == "localhost") {
                Ok(())
            } else {
                Err("The redirect_uri must use https (http is allowed on localhost only).".to_string())
            }
        }
        Some(_) => Err("The redirect_uri must use a domain: IP addresses are not supported.".to_string()),
        None => Err("The redirect_uri has no host.".to_string()),
    }
}

fn scope_list(value: &str) -> Vec<String> {
    value.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

// ---------------------------------------------------------------------------------------------
// CRM API

/// Every `/crm/*` request: queued failures, then the bearer token, then the endpoint. Errors
/// follow <https://developers.hubspot.com/docs/api-reference/error-handling> (`401` for invalid
/// authentication, `403` for a token without the needed scope); the rate-limit headers follow
/// <https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines> (not on
/// search responses) and
/// <https://developers.hubspot.com/changelog/rate-limit-headers-will-now-appear-for-oauth-authenticated-calls>
/// (OAuth calls carry no `X-HubSpot-RateLimit-Daily*` headers).
fn crm(st: &mut Inner, method: &Method, path: &[&str], query: &str, auth: Option<&str>, body: &[u8]) -> Response {
    if let Some(failure) = st.failures.pop_front() {
        let remaining = st.count_request();
        return failure_response(failure, st.config.rate_limit_max, remaining);
    }
    let scopes = match authenticate(st, auth) {
        Ok(scopes) => scopes,
        Err(response) => return response,
    };
    let remaining = st.count_request();
    let is_search = path.last() == Some(&"search");
    let q = query_pairs(query);
    let mut response = match (method.as_str(), path) {
        ("POST", ["v3", "objects", kind, "batch", "upsert"]) => {
            with_kind(kind, |k| require(&scopes, k.write_scope()).and_then(|()| batch_upsert(st, k, body)))
        }
        ("POST", ["v3", "objects", kind, "search"]) => {
            with_kind(kind, |k| require(&scopes, k.read_scope()).and_then(|()| search(st, k, body)))
        }
        ("POST", ["v3", "objects", kind]) => {
            with_kind(kind, |k| require(&scopes, k.write_scope()).and_then(|()| create(st, k, body)))
        }
        ("GET", ["v3", "objects", kind]) => {
            with_kind(kind, |k| require(&scopes, k.read_scope()).and_then(|()| list(st, k, &q)))
        }
        ("GET", ["v3", "objects", kind, id]) => {
            with_kind(kind, |k| require(&scopes, k.read_scope()).and_then(|()| read(st, k, id, &q)))
        }
        ("PATCH", ["v3", "objects", kind, id]) => {
            with_kind(kind, |k| require(&scopes, k.write_scope()).and_then(|()| update(st, k, id, &q, body)))
        }
        ("PUT", ["v4", "objects", from, from_id, "associations", "default", to, to_id]) => with_kind(from, |f| {
            let Some(t) = Kind::parse(to) else { return Err(unknown_type(to)) };
            require(&scopes, f.write_scope())?;
            associate_default(st, f, from_id, t, to_id)
        }),
        ("GET", ["v3", "pipelines", kind]) => with_kind(kind, |k| {
            if k != Kind::Deals {
                return Err(unknown_type(kind));
            }
            require(&scopes, k.read_scope())?;
            Ok(json_response(StatusCode::OK, &json!({ "results": [deal_pipeline(st.started_ms)] })))
        }),
        ("GET", ["v3", "owners"]) => require(&scopes, "crm.objects.owners.read").and_then(|()| owners(st, &q)),
        ("GET", ["v3", "properties", kind]) => with_kind(kind, |k| {
            let schema = format!("crm.schemas.{}.read", k.name());
            if !scopes.iter().any(|s| s == k.read_scope() || *s == schema) {
                require(&scopes, k.read_scope())?;
            }
            Ok(properties(st, k))
        }),
        _ => Err(hs_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found", Map::new())),
    }
    .unwrap_or_else(|response| response);
    if !is_search {
        rate_headers(&mut response, st.config.rate_limit_max, remaining);
    }
    response
}

fn with_kind(name: &str, f: impl FnOnce(Kind) -> Result<Response, Response>) -> Result<Response, Response> {
    match Kind::parse(name) {
        Some(kind) => f(kind),
        None => Err(unknown_type(name)),
    }
}

fn unknown_type(name: &str) -> Response {
    hs_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        &format!("Unable to infer object type from: {name}"),
        Map::new(),
    )
}

fn authenticate(st: &Inner, auth: Option<&str>) -> Result<Vec<String>, Response> {
    let not_found = || {
        hs_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            Map::new(),
        )
    };
    let token = auth
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(not_found)?;
    let access = st.access.get(token).ok_or_else(not_found)?;
    let now = Instant::now();
    if access.expires_at <= now {
        let ago = now.duration_since(access.expires_at).as_secs();
        return Err(hs_error(
            StatusCode::UNAUTHORIZED,
            "EXPIRED_AUTHENTICATION",
            &format!("The OAuth token used to make this call expired {ago} second(s) ago."),
            Map::new(),
        ));
    }
    Ok(access.scopes.clone())
}

/// `403 MISSING_SCOPES` (<https://developers.hubspot.com/docs/api-reference/error-handling>).
fn require(scopes: &[String], scope: &str) -> Result<(), Response> {
    if scopes.iter().any(|s| s == scope) {
        return Ok(());
    }
    let mut extra = Map::new();
    extra.insert(
        "errors".to_string(),
        json!([{ "message": "One or more of the following scopes are required.", "context": { "requiredGranularScopes": [scope] } }]),
    );
    extra.insert("links".to_string(), json!({ "scopes": "https://developers.hubspot.com/scopes" }));
    Err(hs_error(
        StatusCode::FORBIDDEN,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
        extra,
    ))
}

/// `POST /crm/v3/objects/{objectType}`: <https://developers.hubspot.com/docs/api/crm/contacts>
/// (a `properties` object and optional `associations`; email is the contacts' unique identifier:
/// a second contact with the same email answers `409` "Contact already exists. Existing ID: …",
/// a wording the docs don't show — it is what HubSpot sends), notes:
/// <https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide> (`hs_timestamp`
/// required, Unix milliseconds or UTC; `hs_note_body` at most 65,536 characters).
fn create(st: &mut Inner, kind: Kind, body: &[u8]) -> Result<Response, Response> {
    let input = json_body(body)?;
    let empty = Map::new();
    let properties = match input.get("properties") {
        None => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid_input("properties must be an object")),
    };
    let values = validate(st, kind, properties)?;
    if kind == Kind::Notes && values.get("hs_timestamp").is_none_or(|v| v.is_empty()) {
        return Err(validation_error(&[(
            "REQUIRED_PROPERTY",
            "hs_timestamp",
            "Property \"hs_timestamp\" is required".to_string(),
        )]));
    }
    let associations = parse_associations(st, kind, input.get("associations"))?;
    let values: BTreeMap<String, String> = values.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    if kind == Kind::Contacts
        && let Some(email) = values.get("email")
        && let Some(existing) = st.contact_by_email(email)
    {
        return Err(contact_exists(existing));
    }
    let id = st.store(kind, values);
    for (to, to_id, type_id) in associations {
        st.associate(kind, id, to, to_id, type_id);
    }
    let obj = &st.objects[&kind][&id];
    Ok(json_response(StatusCode::CREATED, &object_json(kind, id, obj, &Shown::All, None, &[])))
}

fn contact_exists(existing: u64) -> Response {
    hs_error(StatusCode::CONFLICT, "CONFLICT", &format!("Contact already exists. Existing ID: {existing}"), Map::new())
}

/// `associations` of a create request:
/// <https://developers.hubspot.com/docs/api-reference/latest/crm/associations/overview>.
fn parse_associations(st: &Inner, kind: Kind, value: Option<&Value>) -> Result<Vec<(Kind, u64, u32)>, Response> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let Some(list) = value.as_array() else { return Err(invalid_input("associations must be an array")) };
    let mut out = Vec::new();
    for item in list {
        let to_id = match &item["to"]["id"] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let Some(to_id) = to_id else { return Err(invalid_input("association to.id is missing or not a record id")) };
        let Some(types) = item["types"].as_array().filter(|t| !t.is_empty()) else {
            return Err(invalid_input("association types are missing"));
        };
        for t in types {
            let category = t["associationCategory"].as_str().unwrap_or("");
            let type_id = t["associationTypeId"].as_u64().and_then(|n| u32::try_from(n).ok());
            let target = type_id.filter(|_| category == "HUBSPOT_DEFINED").and_then(|id| association_target(kind, id));
            let (Some(type_id), Some(target)) = (type_id, target) else {
                return Err(invalid_input(&format!(
                    "association type {category}/{} is not defined from {}",
                    t["associationTypeId"],
                    kind.name()
                )));
            };
            if !st.exists(target, to_id) {
                return Err(invalid_input(&format!(
                    "One or more associations are invalid: {} {to_id} does not exist",
                    target.singular()
                )));
            }
            out.push((target, to_id, type_id));
        }
    }
    Ok(out)
}

/// `GET /crm/v3/objects/{objectType}/{id}` (`properties`, `associations`, `idProperty` query
/// parameters): <https://developers.hubspot.com/docs/api/crm/contacts>.
fn read(st: &Inner, kind: Kind, id: &str, q: &[(String, String)]) -> Result<Response, Response> {
    let id = resolve_id(st, kind, id, q)?;
    let obj = &st.objects[&kind][&id];
    let requested: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "properties")
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let shown = if requested.is_empty() { Shown::Defaults } else { Shown::These(requested) };
    let with: Vec<Kind> = q
        .iter()
        .filter(|(k, _)| k == "associations")
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|s| Kind::parse(s.trim()))
        .collect();
    Ok(json_response(StatusCode::OK, &object_json(kind, id, obj, &shown, Some(&st.associations), &with)))
}

/// `GET /crm/v3/objects/{objectType}` (`limit` default 10, at most 100; `after`;
/// `properties`): <https://developers.hubspot.com/docs/api/crm/contacts>.
fn list(st: &Inner, kind: Kind, q: &[(String, String)]) -> Result<Response, Response> {
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let limit = match get("limit") {
        None => 10,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| invalid_input(&format!("limit must be an integer between 1 and 100, got {v}")))?,
    };
    let after = match get("after") {
        None | Some("") => 0,
        Some(v) => v.parse::<usize>().map_err(|_| invalid_input("after is not a paging cursor this list returned"))?,
    };
    let requested: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "properties")
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let shown = if requested.is_empty() { Shown::Defaults } else { Shown::These(requested) };
    let empty = BTreeMap::new();
    let records = st.objects.get(&kind).unwrap_or(&empty);
    let results: Vec<Value> = records
        .iter()
        .skip(after)
        .take(limit)
        .map(|(id, obj)| object_json(kind, *id, obj, &shown, None, &[]))
        .collect();
    let mut answer = json!({ "results": results });
    if after + limit < records.len() {
        let next = (after + limit).to_string();
        answer["paging"] = json!({ "next": { "after": next, "link": format!("?after={next}") } });
    }
    Ok(json_response(StatusCode::OK, &answer))
}

/// `PATCH /crm/v3/objects/{objectType}/{id}`: <https://developers.hubspot.com/docs/api/crm/contacts>.
fn update(st: &mut Inner, kind: Kind, id: &str, q: &[(String, String)], body: &[u8]) -> Result<Response, Response> {
    let id = resolve_id(st, kind, id, q)?;
    let input = json_body(body)?;
    let Some(properties) = input.get("properties").and_then(Value::as_object) else {
        return Err(invalid_input("properties must be an object"));
    };
    let values = validate(st, kind, properties)?;
    if kind == Kind::Contacts
        && let Some(email) = values.get("email").filter(|e| !e.is_empty())
        && let Some(existing) = st.contact_by_email(email).filter(|other| *other != id)
    {
        return Err(contact_exists(existing));
    }
    let now = now_ms();
    let Some(obj) = st.objects.get_mut(&kind).and_then(|m| m.get_mut(&id)) else {
        return Err(not_found(kind, &id.to_string()));
    };
    for (name, value) in values {
        if value.is_empty() {
            obj.properties.remove(&name);
        } else {
            obj.properties.insert(name, value);
        }
    }
    obj.updated_ms = now;
    obj.properties.insert(kind.modified_property().to_string(), iso_ms(now));
    let shown = Shown::Set(properties.keys().cloned().collect());
    Ok(json_response(StatusCode::OK, &object_json(kind, id, obj, &shown, None, &[])))
}

/// The record an `{id}` path segment names, by `hs_object_id` or by `idProperty` (a unique
/// property: `email` for contacts).
fn resolve_id(st: &Inner, kind: Kind, id: &str, q: &[(String, String)]) -> Result<u64, Response> {
    let id_property = q.iter().find(|(k, _)| k == "idProperty").map(|(_, v)| v.as_str()).unwrap_or("hs_object_id");
    let found = match (kind, id_property) {
        (_, "hs_object_id") => id.parse::<u64>().ok().filter(|n| st.exists(kind, *n)),
        (Kind::Contacts, "email") => st.contact_by_email(id),
        (_, other) => {
            return Err(invalid_input(&format!(
                "{other} is not a unique property of {} and can't be used as idProperty",
                kind.name()
            )));
        }
    };
    found.ok_or_else(|| not_found(kind, id))
}

fn not_found(kind: Kind, id: &str) -> Response {
    let mut extra = Map::new();
    extra.insert("context".to_string(), json!({ "id": [id], "type": [kind.singular()] }));
    hs_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.", extra)
}

/// Property values of a create or update, as HubSpot validates them (unknown property,
/// read-only property, invalid email, an option outside an enumeration); a value of `""` or
/// `null` clears the property. Errors answer `400 VALIDATION_ERROR` in the
/// "Property values were not valid" form (<https://developers.hubspot.com/docs/api-reference/error-handling>).
fn validate(st: &Inner, kind: Kind, properties: &Map<String, Value>) -> Result<BTreeMap<String, String>, Response> {
    let mut errors: Vec<(&str, String, String)> = Vec::new();
    let mut values = BTreeMap::new();
    for (name, value) in properties {
        if !st.known_property(kind, name) {
            errors.push(("PROPERTY_DOESNT_EXIST", name.clone(), format!("Property \"{name}\" does not exist")));
            continue;
        }
        if kind.properties().iter().any(|p| p.name == name && p.read_only) {
            errors.push(("READ_ONLY_VALUE", name.clone(), format!("Property \"{name}\" is read-only")));
            continue;
        }
        let Some(text) = property_text(value) else {
            errors.push((
                "INVALID_VALUE",
                name.clone(),
                format!("{value} is not a valid value for property \"{name}\""),
            ));
            continue;
        };
        values.insert(name.clone(), text);
    }
    for (name, value) in values.iter_mut() {
        if value.is_empty() {
            continue;
        }
        match (kind, name.as_str()) {
            (Kind::Contacts, "email") => {
                *value = value.to_lowercase();
                if !valid_email(value) {
                    errors.push(("INVALID_EMAIL", name.clone(), format!("Email address {value} is invalid")));
                }
            }
            (Kind::Contacts, "lifecyclestage") if !LIFECYCLE_STAGES.contains(&value.as_str()) => {
                errors.push(("INVALID_OPTION", name.clone(), option_message(value, LIFECYCLE_STAGES)));
            }
            (Kind::Contacts, "hs_lead_status") if !LEAD_STATUSES.contains(&value.as_str()) => {
                errors.push(("INVALID_OPTION", name.clone(), option_message(value, LEAD_STATUSES)));
            }
            (_, "hubspot_owner_id") if !st.config.owners.iter().any(|o| o.id == *value) => {
                errors.push(("INVALID_OWNER_ID", name.clone(), format!("{value} is not a valid owner id")));
            }
            (Kind::Deals, "pipeline") if value != "default" => {
                errors.push(("INVALID_OPTION", name.clone(), option_message(value, &["default"])));
            }
            (Kind::Deals, "dealstage") if !DEAL_STAGES.iter().any(|(id, ..)| id == value) => {
                let stages: Vec<&str> = DEAL_STAGES.iter().map(|(id, ..)| *id).collect();
                errors.push(("INVALID_OPTION", name.clone(), option_message(value, &stages)));
            }
            (Kind::Notes, "hs_timestamp") if parse_timestamp(value).is_none() => {
                errors.push((
                    "INVALID_DATETIME",
                    name.clone(),
                    format!("{value} is not a Unix timestamp in milliseconds or a UTC date"),
                ));
            }
            (Kind::Notes, "hs_note_body") if value.chars().count() > 65_536 => {
                errors.push((
                    "INVALID_VALUE",
                    name.clone(),
                    "hs_note_body is limited to 65,536 characters".to_string(),
                ));
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        let errors: Vec<(&str, &str, String)> = errors.iter().map(|(c, n, m)| (*c, n.as_str(), m.clone())).collect();
        Err(validation_error(&errors))
    }
}

fn option_message(value: &str, options: &[&str]) -> String {
    format!("{value} was not one of the allowed options: [{}]", options.join(", "))
}

fn validation_error(errors: &[(&str, &str, String)]) -> Response {
    let inner: Vec<Value> = errors
        .iter()
        .map(|(code, name, message)| {
            json!({ "isValid": false, "message": message, "error": code, "name": name, "localizedErrorMessage": message })
        })
        .collect();
    let mut extra = Map::new();
    extra.insert(
        "errors".to_string(),
        Value::Array(
            errors
                .iter()
                .map(|(code, name, message)| json!({ "message": message, "code": code, "context": { "propertyName": [name] } }))
                .collect(),
        ),
    );
    hs_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        &format!("Property values were not valid: {}", Value::Array(inner)),
        extra,
    )
}

fn invalid_input(message: &str) -> Response {
    hs_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message, Map::new())
}

fn json_body(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid_input("Invalid input JSON: the request body must be a JSON object")),
    }
}

/// `POST /crm/v3/objects/{objectType}/search`:
/// <https://developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm> (filterGroups
/// ORed, filters ANDed; default properties; `limit` at most 200; `after`; at most 10,000 results)
/// and the filter limits of
/// <https://developers.hubspot.com/changelog/breaking-change-expanded-filtering-capabilities-and-error-messaging-in-hubspots-search-api>
/// (5 groups, 10 filters a group, 25 in all).
fn search(st: &Inner, kind: Kind, body: &[u8]) -> Result<Response, Response> {
    let input = json_body(body)?;
    let limit = match input.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| invalid_input("limit must be a positive integer"))?,
    };
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(invalid_input(&format!("limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}")));
    }
    let after = match input.get("after") {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) if s.is_empty() => 0,
        Some(Value::String(s)) => {
            s.parse::<usize>().map_err(|_| invalid_input("after is not a paging cursor this search returned"))?
        }
        Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(usize::MAX),
        Some(_) => return Err(invalid_input("after must be a string")),
    };
    if after >= MAX_SEARCH_RESULTS {
        return Err(invalid_input(&format!(
            "The search API returns at most {MAX_SEARCH_RESULTS} results; after={after} is past them"
        )));
    }
    let groups = match input.get("filterGroups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(groups)) => groups.clone(),
        Some(_) => return Err(invalid_input("filterGroups must be an array")),
    };
    if groups.len() > MAX_FILTER_GROUPS {
        return Err(invalid_input(&format!(
            "There can be at most {MAX_FILTER_GROUPS} filterGroups, got {}",
            groups.len()
        )));
    }
    let mut total_filters = 0;
    for group in &groups {
        let n = group["filters"].as_array().map_or(0, Vec::len);
        if n > MAX_FILTERS_PER_GROUP {
            return Err(invalid_input(&format!(
                "A filterGroup can have at most {MAX_FILTERS_PER_GROUP} filters, got {n}"
            )));
        }
        total_filters += n;
    }
    if total_filters > MAX_FILTERS {
        return Err(invalid_input(&format!("A search can have at most {MAX_FILTERS} filters, got {total_filters}")));
    }
    let text = input.get("query").and_then(Value::as_str).map(str::to_lowercase).filter(|s| !s.is_empty());
    let shown = match input.get("properties").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            Shown::These(list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        }
        _ => Shown::Defaults,
    };
    let empty = BTreeMap::new();
    let records = st.objects.get(&kind).unwrap_or(&empty);
    let mut matched: Vec<(u64, &Obj)> = Vec::new();
    for (id, obj) in records {
        let mut keep = groups.is_empty();
        for group in &groups {
            let mut all = true;
            for filter in group["filters"].as_array().into_iter().flatten() {
                if !filter_matches(obj, filter)? {
                    all = false;
                    break;
                }
            }
            if all {
                keep = true;
                break;
            }
        }
        if keep && let Some(text) = &text {
            keep = kind
                .default_properties()
                .iter()
                .any(|p| obj.properties.get(*p).is_some_and(|v| v.to_lowercase().contains(text)));
        }
        if keep {
            matched.push((*id, obj));
        }
    }
    if let Some(sort) = input.get("sorts").and_then(Value::as_array).and_then(|s| s.first()) {
        let (name, descending) = match sort {
            Value::String(s) => (s.trim_start_matches('-').to_string(), s.starts_with('-')),
            other => (other["propertyName"].as_str().unwrap_or("").to_string(), other["direction"] == "DESCENDING"),
        };
        matched.sort_by(|(_, a), (_, b)| {
            let (a, b) = (a.properties.get(&name), b.properties.get(&name));
            let order = match (a.and_then(|v| comparable(v)), b.and_then(|v| comparable(v))) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                _ => a.cmp(&b),
            };
            if descending { order.reverse() } else { order }
        });
    }
    let total = matched.len();
    let page: Vec<Value> = matched
        .iter()
        .skip(after)
        .take(limit)
        .map(|(id, obj)| object_json(kind, *id, obj, &shown, None, &[]))
        .collect();
    let mut answer = json!({ "total": total, "results": page });
    let next = after + limit;
    if next < total && next < MAX_SEARCH_RESULTS {
        answer["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    Ok(json_response(StatusCode::OK, &answer))
}

fn filter_matches(obj: &Obj, filter: &Value) -> Result<bool, Response> {
    let name = filter["propertyName"].as_str().ok_or_else(|| invalid_input("filter propertyName is missing"))?;
    let operator = filter["operator"].as_str().ok_or_else(|| invalid_input("filter operator is missing"))?;
    let actual = obj.properties.get(name).filter(|v| !v.is_empty());
    let value = match &filter["value"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let need_value =
        || value.clone().ok_or_else(|| invalid_input(&format!("filter on {name} with {operator} needs a value")));
    let equal = |a: &str, b: &str| match (comparable(a), comparable(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    };
    let order = |a: &str, b: &str| match (comparable(a), comparable(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y),
        _ => Some(a.to_lowercase().cmp(&b.to_lowercase())),
    };
    let values = || -> Result<Vec<String>, Response> {
        filter["values"]
            .as_array()
            .map(|list| list.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect())
            .ok_or_else(|| invalid_input(&format!("filter on {name} with {operator} needs values")))
    };
    Ok(match operator {
        "EQ" => {
            let v = need_value()?;
            actual.is_some_and(|a| equal(a, &v))
        }
        "NEQ" => {
            let v = need_value()?;
            !actual.is_some_and(|a| equal(a, &v))
        }
        "LT" | "LTE" | "GT" | "GTE" => {
            let v = need_value()?;
            actual.and_then(|a| order(a, &v)).is_some_and(|o| match operator {
                "LT" => o.is_lt(),
                "LTE" => o.is_le(),
                "GT" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "BETWEEN" => {
            let low = need_value()?;
            let high = filter["highValue"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid_input("BETWEEN needs highValue"))?;
            actual.is_some_and(|a| {
                order(a, &low).is_some_and(|o| o.is_ge()) && order(a, &high).is_some_and(|o| o.is_le())
            })
        }
        "IN" => {
            let list = values()?;
            actual.is_some_and(|a| list.iter().any(|v| equal(a, v)))
        }
        "NOT_IN" => {
            let list = values()?;
            !actual.is_some_and(|a| list.iter().any(|v| equal(a, v)))
        }
        "HAS_PROPERTY" => actual.is_some(),
        "NOT_HAS_PROPERTY" => actual.is_none(),
        "CONTAINS_TOKEN" => {
            let v = need_value()?;
            actual.is_some_and(|a| contains_token(a, &v))
        }
        "NOT_CONTAINS_TOKEN" => {
            let v = need_value()?;
            !actual.is_some_and(|a| contains_token(a, &v))
        }
        other => return Err(invalid_input(&format!("Unknown filter operator {other}"))),
    })
}

/// A value contains a token when a word of it (split on anything not a letter or digit) or the
/// whole value matches; `*` is a wildcard.
fn contains_token(actual: &str, token: &str) -> bool {
    let actual = actual.to_lowercase();
    let token = token.to_lowercase();
    if glob(&token, &actual) {
        return true;
    }
    actual.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).any(|word| glob(&token, word))
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

/// `POST /crm/v3/objects/{objectType}/batch/upsert`:
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts>
/// (`inputs` of `{idProperty, id, properties}`; `idProperty` must be a unique property; the
/// answer is `200` with `status`, `results` each carrying `new`, `startedAt`, `completedAt`).
/// A batch holds at most 100 inputs.
fn batch_upsert(st: &mut Inner, kind: Kind, body: &[u8]) -> Result<Response, Response> {
    let started = now_ms();
    let input = json_body(body)?;
    let Some(inputs) = input.get("inputs").and_then(Value::as_array) else {
        return Err(invalid_input("inputs must be an array"));
    };
    if inputs.is_empty() || inputs.len() > 100 {
        return Err(invalid_input(&format!("inputs must hold between 1 and 100 items, got {}", inputs.len())));
    }
    let mut plan = Vec::new();
    for item in inputs {
        let id_property = item["idProperty"].as_str().unwrap_or("");
        if kind != Kind::Contacts || id_property != "email" {
            return Err(invalid_input(&format!(
                "idProperty \"{id_property}\" is not a unique property of {}",
                kind.name()
            )));
        }
        let Some(id) = item["id"].as_str().filter(|s| !s.is_empty()) else {
            return Err(invalid_input("each input needs an id"));
        };
        let empty = Map::new();
        let properties = item["properties"].as_object().unwrap_or(&empty);
        let mut values = validate(st, kind, properties)?;
        let email = id.to_lowercase();
        if !valid_email(&email) {
            return Err(validation_error(&[("INVALID_EMAIL", "email", format!("Email address {email} is invalid"))]));
        }
        values.insert("email".to_string(), email.clone());
        plan.push((email, values, properties.keys().cloned().collect::<Vec<_>>()));
    }
    let mut results = Vec::new();
    for (email, values, touched) in plan {
        let now = now_ms();
        let (id, new) = match st.contact_by_email(&email) {
            Some(id) => {
                if let Some(obj) = st.objects.get_mut(&kind).and_then(|m| m.get_mut(&id)) {
                    for (name, value) in values {
                        if value.is_empty() {
                            obj.properties.remove(&name);
                        } else {
                            obj.properties.insert(name, value);
                        }
                    }
                    obj.updated_ms = now;
                    obj.properties.insert(kind.modified_property().to_string(), iso_ms(now));
                }
                (id, false)
            }
            None => (st.store(kind, values.into_iter().filter(|(_, v)| !v.is_empty()).collect()), true),
        };
        let obj = &st.objects[&kind][&id];
        let mut shown = touched;
        shown.push("email".to_string());
        let mut result = object_json(kind, id, obj, &Shown::Set(shown), None, &[]);
        result["new"] = Value::Bool(new);
        results.push(result);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "status": "COMPLETE",
            "results": results,
            "requestedAt": iso_ms(started),
            "startedAt": iso_ms(started),
            "completedAt": iso_ms(now_ms()),
        }),
    ))
}

/// `PUT /crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}`:
/// <https://developers.hubspot.com/docs/api-reference/latest/crm/associations/associate-records/update-association>
/// (the default, most generic, association; the answer lists the associations made, both
/// directions, under `results` with `associationSpec`). A missing record answers `404`.
fn associate_default(st: &mut Inner, from: Kind, from_id: &str, to: Kind, to_id: &str) -> Result<Response, Response> {
    let started = now_ms();
    let from_num =
        from_id.parse::<u64>().ok().filter(|n| st.exists(from, *n)).ok_or_else(|| not_found(from, from_id))?;
    let to_num = to_id.parse::<u64>().ok().filter(|n| st.exists(to, *n)).ok_or_else(|| not_found(to, to_id))?;
    let Some(type_id) = default_association(from, to) else {
        return Err(invalid_input(&format!("No default association from {} to {}", from.name(), to.name())));
    };
    st.associate(from, from_num, to, to_num, type_id);
    let spec = |id: u32| json!({ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": id });
    let mut results =
        vec![json!({ "from": { "id": from_id }, "to": { "id": to_id }, "associationSpec": spec(type_id) })];
    if let Some(reverse) = default_association(to, from) {
        results.push(json!({ "from": { "id": to_id }, "to": { "id": from_id }, "associationSpec": spec(reverse) }));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "status": "COMPLETE", "results": results, "startedAt": iso_ms(started), "completedAt": iso_ms(now_ms()) }),
    ))
}

/// HubSpot-defined default association type ids
/// (<https://developers.hubspot.com/docs/api-reference/latest/crm/associations/overview>).
fn default_association(from: Kind, to: Kind) -> Option<u32> {
    use Kind::*;
    match (from, to) {
        (Contacts, Companies) => Some(279),
        (Companies, Contacts) => Some(280),
        (Deals, Contacts) => Some(3),
        (Contacts, Deals) => Some(4),
        (Deals, Companies) => Some(341),
        (Companies, Deals) => Some(342),
        (Contacts, Notes) => Some(201),
        (Notes, Contacts) => Some(202),
        (Companies, Notes) => Some(189),
        (Notes, Companies) => Some(190),
        (Deals, Notes) => Some(213),
        (Notes, Deals) => Some(214),
        _ => None,
    }
}

/// The object type a HubSpot-defined association type id points to from `from` (the default
/// ids and the "primary" ones: 1 contact→company, 2 company→contact, 5 deal→company,
/// 6 company→deal).
fn association_target(from: Kind, type_id: u32) -> Option<Kind> {
    use Kind::*;
    match (from, type_id) {
        (Contacts, 1) => Some(Companies),
        (Companies, 2) => Some(Contacts),
        (Deals, 5) => Some(Companies),
        (Companies, 6) => Some(Deals),
        _ => [Contacts, Companies, Deals, Notes].into_iter().find(|to| default_association(from, *to) == Some(type_id)),
    }
}

/// `GET /crm/v3/pipelines/deals`: <https://developers.hubspot.com/docs/api/crm/pipelines> (the
/// default "Sales Pipeline" and its stages).
fn deal_pipeline(started_ms: u64) -> Value {
    let at = iso_ms(started_ms);
    let stages: Vec<Value> = DEAL_STAGES
        .iter()
        .enumerate()
        .map(|(i, (id, label, probability, closed))| {
            json!({
                "id": id,
                "label": label,
                "displayOrder": i,
                "metadata": { "isClosed": closed.to_string(), "probability": probability },
                "createdAt": at,
                "updatedAt": at,
                "archived": false,
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            })
        })
        .collect();
    json!({
        "id": "default",
        "label": "Sales Pipeline",
        "displayOrder": 0,
        "stages": stages,
        "createdAt": at,
        "updatedAt": at,
        "archived": false,
    })
}

/// `GET /crm/v3/owners` (`limit` default 100 at most 500, `after`, `email`):
/// <https://developers.hubspot.com/docs/api-reference/crm-crm-owners-v3/guide>.
fn owners(st: &Inner, q: &[(String, String)]) -> Result<Response, Response> {
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let limit = match get("limit") {
        None => 100,
        Some(v) => v.parse::<usize>().map_err(|_| invalid_input("limit must be an integer"))?.clamp(1, 500),
    };
    let after = match get("after") {
        None | Some("") => 0,
        Some(v) => v.parse::<usize>().map_err(|_| invalid_input("after is not a paging cursor"))?,
    };
    let listed: Vec<&HubSpotOwner> =
        st.config.owners.iter().filter(|o| get("email").is_none_or(|e| o.email.eq_ignore_ascii_case(e))).collect();
    let at = iso_ms(st.started_ms);
    let results: Vec<Value> = listed
        .iter()
        .skip(after)
        .take(limit)
        .map(|o| {
            json!({
                "id": o.id,
                "email": o.email,
                "type": "PERSON",
                "firstName": o.first_name,
                "lastName": o.last_name,
                "userId": o.user_id,
                "userIdIncludingInactive": o.user_id,
                "createdAt": at,
                "updatedAt": at,
                "archived": false,
            })
        })
        .collect();
    let mut answer = json!({ "results": results });
    if after + limit < listed.len() {
        let next = (after + limit).to_string();
        answer["paging"] = json!({ "next": { "after": next, "link": format!("?after={next}") } });
    }
    Ok(json_response(StatusCode::OK, &answer))
}

/// `GET /crm/v3/properties/{objectType}`: <https://developers.hubspot.com/docs/api/crm/properties>.
fn properties(st: &Inner, kind: Kind) -> Response {
    let options = |name: &str| -> Vec<Value> {
        let list: Vec<(String, String)> = match (kind, name) {
            (Kind::Contacts, "lifecyclestage") => {
                LIFECYCLE_STAGES.iter().map(|s| (s.to_string(), s.to_string())).collect()
            }
            (Kind::Contacts, "hs_lead_status") => {
                LEAD_STATUSES.iter().map(|s| (s.to_string(), s.to_string())).collect()
            }
            (Kind::Deals, "dealstage") => {
                DEAL_STAGES.iter().map(|(id, label, ..)| (id.to_string(), label.to_string())).collect()
            }
            (Kind::Deals, "pipeline") => vec![("default".to_string(), "Sales Pipeline".to_string())],
            (_, "hubspot_owner_id") => {
                st.config.owners.iter().map(|o| (o.id.clone(), format!("{} {}", o.first_name, o.last_name))).collect()
            }
            _ => Vec::new(),
        };
        list.into_iter()
            .enumerate()
            .map(|(i, (value, label))| json!({ "value": value, "label": label, "displayOrder": i, "hidden": false }))
            .collect()
    };
    let mut results: Vec<Value> = kind
        .properties()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "name": p.name,
                "label": p.label,
                "type": p.kind,
                "fieldType": p.field_type,
                "description": "",
                "groupName": p.group,
                "options": options(p.name),
                "displayOrder": i,
                "calculated": false,
                "externalOptions": false,
                "hasUniqueValue": p.unique,
                "hidden": false,
                "formField": !p.read_only,
                "modificationMetadata": { "archivable": false, "readOnlyDefinition": true, "readOnlyValue": p.read_only },
            })
        })
        .collect();
    for (object, name) in &st.config.custom_properties {
        if Kind::parse(object) == Some(kind) {
            results.push(json!({
                "name": name,
                "label": name,
                "type": "string",
                "fieldType": "text",
                "description": "",
                "groupName": format!("{}information", kind.singular()),
                "options": [],
                "displayOrder": -1,
                "calculated": false,
                "externalOptions": false,
                "hasUniqueValue": false,
                "hidden": false,
                "formField": true,
                "modificationMetadata": { "archivable": true, "readOnlyDefinition": false, "readOnlyValue": false },
            }));
        }
    }
    json_response(StatusCode::OK, &json!({ "results": results }))
}

enum Shown {
    /// The object's default properties (plus the system ones).
    Defaults,
    /// The properties asked for, `null` when unset (plus the system ones).
    These(Vec<String>),
    /// The properties just set (plus the system ones).
    Set(Vec<String>),
    /// Every property the record has.
    All,
}

fn object_json(
    kind: Kind,
    id: u64,
    obj: &Obj,
    shown: &Shown,
    associations: Option<&[Association]>,
    with: &[Kind],
) -> Value {
    let system = ["hs_object_id", kind.created_property(), kind.modified_property()];
    let mut props = Map::new();
    let mut show = |name: &str| {
        props.insert(name.to_string(), obj.properties.get(name).map_or(Value::Null, |v| Value::String(v.clone())));
    };
    match shown {
        Shown::Defaults => kind.default_properties().iter().chain(system.iter()).copied().for_each(&mut show),
        Shown::These(list) | Shown::Set(list) => {
            list.iter().map(String::as_str).chain(system.iter().copied()).for_each(&mut show);
        }
        Shown::All => obj.properties.keys().map(String::as_str).for_each(&mut show),
    }
    if let Shown::These(list) = shown {
        // HubSpot leaves out names that aren't properties of the object.
        for name in list {
            if !kind.properties().iter().any(|p| p.name == name) && !obj.properties.contains_key(name) {
                props.remove(name);
            }
        }
    }
    let mut answer = json!({
        "id": id.to_string(),
        "properties": props,
        "createdAt": iso_ms(obj.created_ms),
        "updatedAt": iso_ms(obj.updated_ms),
        "archived": false,
    });
    if let Some(all) = associations
        && !with.is_empty()
    {
        let mut map = Map::new();
        for to in with {
            let results: Vec<Value> = all
                .iter()
                .filter(|a| a.from_type == kind.name() && a.from_id == id.to_string() && a.to_type == to.name())
                .map(|a| json!({ "id": a.to_id, "type": format!("{}_to_{}", kind.singular(), to.singular()) }))
                .collect();
            if !results.is_empty() {
                map.insert(to.name().to_string(), json!({ "results": results }));
            }
        }
        if !map.is_empty() {
            answer["associations"] = Value::Object(map);
        }
    }
    answer
}

/// The `429`s of <https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines>
/// (`errorType: RATE_LIMIT` with the exhausted `policyName`) and the transient `502`/`504` the
/// guidelines tell integrations to retry.
fn failure_response(failure: FakeFailure, max: u32, remaining: u32) -> Response {
    let limit = |message: &str, policy: &str, remaining: u32| {
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({
                "status": "error",
                "message": message,
                "errorType": "RATE_LIMIT",
                "correlationId": Uuid::new_v4().to_string(),
                "policyName": policy,
                "requestId": Uuid::new_v4().to_string(),
            }),
        );
        rate_headers(&mut response, max, remaining);
        response
    };
    match failure {
        FakeFailure::TenSecondlyRollingLimit => {
            limit("You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING", 0)
        }
        FakeFailure::DailyLimit => limit("You have reached your daily limit.", "DAILY", remaining),
        FakeFailure::BadGateway => gateway(StatusCode::BAD_GATEWAY),
        FakeFailure::GatewayTimeout => gateway(StatusCode::GATEWAY_TIMEOUT),
    }
}

fn gateway(status: StatusCode) -> Response {
    let text = format!("<html><body><h1>{status}</h1></body></html>");
    (status, [(header::CONTENT_TYPE, "text/html")], text).into_response()
}

fn rate_headers(response: &mut Response, max: u32, remaining: u32) {
    let headers = response.headers_mut();
    headers.insert("x-hubspot-ratelimit-interval-milliseconds", HeaderValue::from_static("10000"));
    headers.insert("x-hubspot-ratelimit-max", HeaderValue::from(max));
    headers.insert("x-hubspot-ratelimit-remaining", HeaderValue::from(remaining));
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn hs_error(status: StatusCode, category: &str, message: &str, extra: Map<String, Value>) -> Response {
    let mut body = Map::new();
    body.insert("status".to_string(), json!("error"));
    body.insert("message".to_string(), json!(message));
    body.insert("correlationId".to_string(), json!(Uuid::new_v4().to_string()));
    body.insert("category".to_string(), json!(category));
    body.extend(extra);
    json_response(status, &Value::Object(body))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json;charset=utf-8")], body.to_string()).into_response()
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => error_page("The redirect_uri can't be used in a Location header."),
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

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// HubSpot stores property values as strings.
fn property_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
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

fn is_base64url_sha256(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A number, or a date (`YYYY-MM-DD[THH:MM:SS[.fff]Z]`) as Unix milliseconds, for ordering.
fn comparable(value: &str) -> Option<f64> {
    if let Ok(n) = value.parse::<f64>() {
        return Some(n);
    }
    parse_iso_ms(value).map(|ms| ms as f64)
}

fn parse_timestamp(value: &str) -> Option<u64> {
    if value.chars().all(|c| c.is_ascii_digit()) {
        return value.parse().ok();
    }
    parse_iso_ms(value)
}

fn parse_iso_ms(value: &str) -> Option<u64> {
    let (date, time) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let mut parts = date.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day).checked_mul(86_400_000)?;
    if let Some(time) = time {
        let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?;
        let (clock, fraction) = match time.split_once('.') {
            Some((c, f)) => (c, f),
            None => (time, "0"),
        };
        let mut hms = clock.split(':');
        let h: i64 = hms.next()?.parse().ok()?;
        let m: i64 = hms.next()?.parse().ok()?;
        let s: i64 = hms.next().unwrap_or("0").parse().ok()?;
        let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
        ms += ((h * 60 + m) * 60 + s) * 1000 + millis;
    }
    u64::try_from(ms).ok()
}

/// `2026-01-15T10:30:00.123Z`.
fn iso_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rest / 3600, rest % 3600 / 60, rest % 60, ms % 1000)
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
