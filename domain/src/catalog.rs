//! The integration action catalog: one YAML data file per integration (`domain/catalog/`),
//! compiled in. An action is a request template on the integration's `apiBaseUrl`: method,
//! path, query, headers and body over `{{params.X}}`, optional pagination, an output mapping
//! over `{{response...}}` and, for APIs that answer 200 on failure, an `okWhen` check. Adding
//! an action is adding data, not code; `sluice actions` prints the catalog.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Pagination;
use crate::model::project::{Authorization, CUSTOM_PREFIX};

pub mod path;

/// The catalog key of every custom integration's actions.
pub const CUSTOM: &str = "custom";

const FILES: &[(&str, &str)] = &[
    ("googlecalendar", include_str!("../catalog/googlecalendar.yaml")),
    ("hubspot", include_str!("../catalog/hubspot.yaml")),
    ("salesforce", include_str!("../catalog/salesforce.yaml")),
    ("slack", include_str!("../catalog/slack.yaml")),
    (CUSTOM, include_str!("../catalog/custom.yaml")),
];

/// One integration's actions and API defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogIntegration {
    pub integration: String,
    pub description: String,
    /// The API's public base URL; a project's `config.yaml` may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    /// What every request carries, from the user's stored credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// The provider's OAuth 2.0 endpoints and the scopes the actions need: a project whose
    /// `config.yaml` gives `clientId` and `clientSecret` connects users with the hosted flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<CatalogOAuth>,
    /// The API version action paths use as `{{api.version}}` (Salesforce's `v66.0`); a
    /// project's `config.yaml` may set `apiVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// How the API answers failures its status code does not tell apart (rate limits that
    /// reset tomorrow, transient errors answered 200): checked in order on every page of every
    /// action before its status, the first match deciding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorRule>,
    /// How the provider's webhooks are verified, split into events and routed to the
    /// connected user (`POST /projects/{p}/webhooks/<integration>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<crate::model::webhook::WebhookSpec>,
    pub actions: BTreeMap<String, Action>,
}

/// Matches an API answer (`{status, headers, body}`): its status is one of `status` (any if
/// empty) and every field condition holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<u16>,
    /// Path in the answer (`body.error`, `body.0.errorCode`) → what its value must be.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldMatch>,
}

/// A condition on one value of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum FieldMatch {
    /// One of these values.
    OneOf(Vec<Value>),
    /// Text containing this.
    Contains { contains: String },
}

impl ResponseMatch {
    /// Whether `answer` (`{status, headers, body}`) matches.
    pub fn matches(&self, answer: &Value) -> bool {
        let status = answer.get("status").and_then(Value::as_u64);
        if !self.status.is_empty() && !status.is_some_and(|s| self.status.iter().any(|m| u64::from(*m) == s)) {
            return false;
        }
        self.fields.iter().all(|(path, condition)| {
            let Some(value) = value_at(answer, path) else { return false };
            match condition {
                FieldMatch::OneOf(values) => values.contains(value),
                FieldMatch::Contains { contains } => {
                    value.as_str().is_some_and(|text| text.contains(contains.as_str()))
                }
            }
        })
    }
}

/// The value at `path` (`body.errors.0.reason`) of `value`.
pub fn value_at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let path = crate::template::PathExpr::parse(path).ok()?;
    crate::template::lookup(value, &path)
}

/// What a matching answer means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub when: ResponseMatch,
    /// Retry the step (after `Retry-After` when the answer gives one), or fail it for good.
    pub retry: bool,
    /// What the step's error says, before the provider's own code.
    pub message: String,
    /// Where the provider's error code or message is, quoted in the step's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogOAuth {
    pub authorization_url: String,
    pub access_token_url: String,
    /// Scopes always requested, besides those of the actions the deployed workflows use.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How the `scope` parameter joins scopes: a space (RFC 6749), or what the provider
    /// documents (Slack: a comma).
    #[serde(default = "space")]
    pub scope_separator: String,
    /// The authorize URL parameter user scopes go in (Slack's `user_scope`), if the provider
    /// has them: a project sets them with `userScopes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_scope_param: Option<String>,
    /// Extra authorize URL parameters the provider requires (Google's `access_type=offline`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    /// Send a PKCE challenge (S256) and verifier.
    #[serde(default)]
    pub pkce: bool,
    /// Answers meaning the access token is no longer valid: the step refreshes the tokens
    /// once and sends the request again (for providers whose tokens end without a known
    /// expiry, as Salesforce sessions do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh_when: Vec<ResponseMatch>,
    /// The connection's non-secret identity, from the token answer: name → path
    /// (`team.id`), or `{ path, urlSegment }` for a segment of a URL (Salesforce's `id`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identity: BTreeMap<String, IdentityPath>,
    /// More credentials from nested fields of the token answer (Slack's user token): name →
    /// path. Top-level strings are kept anyway.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, String>,
    /// A token introspection endpoint (RFC 7662 style, client id and secret in the form)
    /// asked once at connect time for more identity (HubSpot's portal id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<Introspection>,
    /// Login hosts a user may choose at connect time, by name (Salesforce's production and
    /// sandbox); the first is the default. They replace the origin of both URLs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub login_hosts: BTreeMap<String, String>,
}

fn space() -> String {
    " ".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum IdentityPath {
    Path(String),
    UrlSegment {
        path: String,
        /// Counted from the end when negative (`-1`: the last).
        #[serde(rename = "urlSegment")]
        url_segment: i32,
    },
}

impl IdentityPath {
    /// The identity value in `answer`: a string or a number, as text.
    pub fn read(&self, answer: &Value) -> Option<String> {
        let (path, segment) = match self {
            IdentityPath::Path(path) => (path, None),
            IdentityPath::UrlSegment { path, url_segment } => (path, Some(*url_segment)),
        };
        let text = match value_at(answer, path)? {
            Value::String(text) if !text.is_empty() => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        let Some(index) = segment else { return Some(text) };
        let path = text.split_once("://").map_or(text.as_str(), |(_, rest)| rest);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let at = if index < 0 { segments.len().checked_sub(index.unsigned_abs() as usize)? } else { index as usize };
        segments.get(at).map(|s| s.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Introspection {
    pub url: String,
    pub identity: BTreeMap<String, IdentityPath>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    pub description: String,
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    pub request: ActionRequest,
    /// Fails the step unless the value at `path` of the response is `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_when: Option<OkWhen>,
    /// The step's output, templated over `{{response...}}` (default: the whole response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub output_description: String,
    /// The OAuth scopes the action needs: a project requests the union of the scopes of the
    /// actions its workflows use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Whether sending it again after a timeout is harmless (a read, an update to the same
    /// values, a create with the provider's own idempotency), and why not if not.
    pub retry_safe: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_note: Option<String>,
    /// A param the step fills, when the workflow does not, with an id derived from the
    /// execution and step, so a retried create names the same record (Google's event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Idempotency>,
    /// What to do when the provider answers that the record exists already: fetch it
    /// with `request` (over `params` and the `conflict` values extracted), as the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_conflict: Option<OnConflict>,
    /// Requests sent after the first, in order, each over `params`, `bytes` and the outputs
    /// of the ones before (`responses.0`): a two-step upload. The last one's answer is
    /// `response`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<ActionRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    pub param: String,
    /// `base32hex`: lowercase `0-9a-v` (Google's event ids).
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnConflict {
    pub when: ResponseMatch,
    /// Values taken from the conflict answer: name → `{ path, after }` (the word after
    /// `after` in the text at `path`, e.g. HubSpot's `Existing ID: 123`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, Extract>,
    pub request: ActionRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl Extract {
    pub fn read(&self, answer: &Value) -> Option<String> {
        let text = match value_at(answer, &self.path)? {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        let Some(after) = &self.after else { return Some(text) };
        let rest = &text[text.find(after.as_str())? + after.len()..];
        let word: String =
            rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
        (!word.is_empty()).then_some(word)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub required: bool,
    pub description: String,
    /// The values it may take.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<Value>,
    /// `path`: a URL path sent as given, which must stay under the base URL (see
    /// [`path::check`]); other values in a path are percent-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The value sent when the step gives none (e.g. a page size the provider's own default
    /// would make too large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
    Any,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Object => "object",
            ParamType::Array => "array",
            ParamType::Any => "any",
        }
    }

    pub fn matches(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Object => value.is_object(),
            ParamType::Array => value.is_array(),
            ParamType::Any => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, or `{{params.X}}` (default GET).
    pub method: String,
    /// Appended to `apiBaseUrl`; `{{params.X}}` values are percent-encoded.
    #[serde(default)]
    pub path: String,
    /// A whole URL instead of a path (a follow-up request to where the API said, such as an
    /// upload URL): `{{responses.N...}}`. It gets no credentials unless on the API's origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How `body` is encoded (default JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_type: Option<crate::model::BodyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OkWhen {
    pub path: String,
    /// Where the API's error message is.
    pub message: String,
}

static CATALOG: LazyLock<Result<BTreeMap<String, CatalogIntegration>, String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, text)| {
            let parsed: CatalogIntegration =
                serde_yaml_ng::from_str(text).map_err(|e| format!("catalog/{name}.yaml: {e}"))?;
            Ok((name.to_string(), parsed))
        })
        .collect()
});

/// The whole catalog, by integration (custom integrations under [`CUSTOM`]); an empty one if
/// a catalog file does not parse (a build defect, caught by this module's tests).
pub fn all() -> &'static BTreeMap<String, CatalogIntegration> {
    static EMPTY: BTreeMap<String, CatalogIntegration> = BTreeMap::new();
    CATALOG.as_ref().unwrap_or(&EMPTY)
}

/// The catalog entry of the integration named `name` (a folder name; `custom.*` → [`CUSTOM`]).
pub fn integration(name: &str) -> Option<&'static CatalogIntegration> {
    let key = if name.starts_with(CUSTOM_PREFIX) { CUSTOM } else { name };
    all().get(key)
}

/// `name`'s action `action`.
pub fn action(name: &str, action: &str) -> Option<&'static Action> {
    integration(name)?.actions.get(action)
}

/// The param every paginated action takes: the most pages it fetches.
pub const MAX_PAGES_PARAM: &str = "maxPages";

impl Action {
    /// The pages fetched unless the step's `maxPages` says otherwise, if it paginates.
    pub fn default_max_pages(&self) -> Option<u32> {
        self.request.pagination.as_ref().map(crate::model::Pagination::max_pages)
    }

    /// Its params, with the implicit `maxPages` of a paginated action.
    pub fn all_params(&self) -> BTreeMap<String, Param> {
        let mut params = self.params.clone();
        if let Some(default) = self.default_max_pages() {
            params.entry(MAX_PAGES_PARAM.to_string()).or_insert_with(|| Param {
                kind: ParamType::Integer,
                required: false,
                description: format!(
                    "The most pages fetched (1 to 1000, default {default}); the output says `truncated: true` \
                     when there were more"
                ),
                one_of: Vec::new(),
                format: None,
                default: None,
            });
        }
        params
    }
}

/// The scopes `name`'s OAuth connection requests for `actions`: the catalog's own and those
/// of each action, in order, once each.
pub fn scopes_for<'a>(name: &str, actions: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let Some(entry) = integration(name) else { return Vec::new() };
    let mut scopes: Vec<String> = entry.oauth.as_ref().map(|o| o.scopes.clone()).unwrap_or_default();
    for action in actions {
        for scope in entry.actions.get(action).map(|a| a.scopes.as_slice()).unwrap_or_default() {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
    }
    scopes
}

/// The catalog as Markdown: every integration, action, parameter and output.
pub fn markdown(only: Option<&str>) -> String {
    let mut out = String::new();
    for (key, entry) in all() {
        if only.is_some_and(|only| integration(only).map(|i| &i.integration) != Some(&entry.integration)) {
            continue;
        }
        let title = if key == CUSTOM { "custom.<name>".to_string() } else { key.clone() };
        out.push_str(&format!("## {title}\n\n{}\n\n", entry.description));
        if let Some(oauth) = &entry.oauth {
            out.push_str(&format!(
                "OAuth (with `clientId` and `clientSecret` in its `config.yaml`): `{}`, token `{}`",
                oauth.authorization_url, oauth.access_token_url
            ));
            if !oauth.scopes.is_empty() {
                out.push_str(&format!("; always requests `{}`", oauth.scopes.join(&oauth.scope_separator)));
            }
            out.push_str("; plus the scopes of the actions its workflows use.");
            if oauth.pkce {
                out.push_str(" PKCE (S256).");
            }
            if !oauth.authorize_params.is_empty() {
                let params: Vec<String> = oauth.authorize_params.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
                out.push_str(&format!(" Authorize parameters: {}.", params.join(", ")));
            }
            if !oauth.refresh_when.is_empty() {
                out.push_str(
                    " An answer saying the session ended refreshes the tokens once and sends the request again.",
                );
            }
            let mut identity: Vec<&String> = oauth.identity.keys().collect();
            if let Some(introspection) = &oauth.introspection {
                identity.extend(introspection.identity.keys());
            }
            if !identity.is_empty() {
                let names: Vec<String> = identity.iter().map(|k| format!("`{k}`")).collect();
                out.push_str(&format!(" Connection identity: {}.", names.join(", ")));
            }
            if !oauth.login_hosts.is_empty() {
                let hosts: Vec<String> = oauth.login_hosts.iter().map(|(k, v)| format!("`{k}` ({v})")).collect();
                out.push_str(&format!(" Login hosts (`?loginHost=` at connect): {}.", hosts.join(", ")));
            }
            out.push_str("\n\n");
        }
        if let Some(version) = &entry.api_version {
            out.push_str(&format!("API version: `{version}` (set `apiVersion` in `config.yaml` to change it).\n\n"));
        }
        if !entry.errors.is_empty() {
            out.push_str("Errors told apart:\n\n");
            for rule in &entry.errors {
                let then = if rule.retry { "retried" } else { "fails at once" };
                out.push_str(&format!("- {}: {then}\n", rule.message));
            }
            out.push('\n');
        }
        for (name, action) in &entry.actions {
            out.push_str(&format!("### `{name}`\n\n{}\n\n", action.description));
            let method = &action.request.method;
            out.push_str(&format!("`{method} {}`", action.request.path));
            for next in &action.then {
                out.push_str(&format!(", then `{} {}`", next.method, next.url.as_deref().unwrap_or(&next.path)));
            }
            out.push_str("\n\n");
            let params = action.all_params();
            if !params.is_empty() {
                out.push_str("| param | type | required | description |\n|---|---|---|---|\n");
                for (param, spec) in &params {
                    let mut kind = spec.kind.name().to_string();
                    if !spec.one_of.is_empty() {
                        let values: Vec<String> = spec.one_of.iter().map(Value::to_string).collect();
                        kind = format!("{kind} ({})", values.join(", "));
                    }
                    let required = if spec.required { "yes" } else { "no" };
                    let default = spec.default.as_ref().map(|d| format!(" (default `{d}`)")).unwrap_or_default();
                    out.push_str(&format!("| `{param}` | {kind} | {required} | {}{default} |\n", spec.description));
                }
                out.push('\n');
            }
            out.push_str(&format!("Output: {}\n\n", action.output_description));
            if !action.scopes.is_empty() {
                out.push_str(&format!("Scopes: `{}`\n\n", action.scopes.join("`, `")));
            }
            let safe = if action.retry_safe { "yes" } else { "no" };
            match &action.retry_note {
                Some(note) => out.push_str(&format!("Safe to retry: {safe}. {note}\n\n")),
                None => out.push_str(&format!("Safe to retry: {safe}.\n\n")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    #[test]
    fn every_catalog_file_parses_and_is_named_after_its_integration() {
        let catalog = CATALOG.as_ref().expect("the catalog parses");
        assert_eq!(catalog.len(), FILES.len());
        for (key, entry) in catalog {
            assert_eq!(&entry.integration, key);
            assert!(!entry.actions.is_empty(), "{key} has no actions");
        }
        for built_in in crate::model::project::BUILT_IN_INTEGRATIONS {
            let entry = integration(built_in).expect("every built-in integration has a catalog entry");
            assert!(entry.api_base_url.is_some() && entry.authorization.is_some(), "{built_in}");
            let oauth = entry.oauth.as_ref().expect("every built-in integration connects with OAuth");
            for url in [&oauth.authorization_url, &oauth.access_token_url] {
                assert!(url.starts_with("https://"), "{built_in}: {url}");
            }
        }
        assert_eq!(integration("custom.acme").map(|i| i.integration.as_str()), Some(CUSTOM));
    }

    fn params_read(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::String(text) => {
                let template = Template::parse(text).expect("a catalog template parses");
                for expr in template.expressions() {
                    let root = expr.root();
                    assert!(
                        matches!(root, Some("params" | "api" | "bytes" | "responses" | "conflict")),
                        "catalog request templates read params, api, bytes, responses and conflict: {text}"
                    );
                    if matches!(root, Some("params" | "bytes")) {
                        found.extend(expr.key_at(1).map(str::to_string));
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| params_read(v, found)),
            Value::Object(map) => map.values().for_each(|v| params_read(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_action_template_reads_only_declared_params_and_every_param_is_used() {
        for (key, entry) in all() {
            for (name, action) in &entry.actions {
                let mut read = Vec::new();
                let requests = std::iter::once(&action.request)
                    .chain(&action.then)
                    .chain(action.on_conflict.as_ref().map(|c| &c.request));
                for request in requests {
                    for value in [
                        Some(&Value::from(request.method.clone())),
                        Some(&Value::from(request.path.clone())),
                        request.url.as_ref().map(|u| Value::from(u.clone())).as_ref(),
                    ]
                    .into_iter()
                    .flatten()
                    .chain(
                        [request.query.as_ref(), request.headers.as_ref(), request.body.as_ref()].into_iter().flatten(),
                    ) {
                        params_read(value, &mut read);
                    }
                }
                for (param, spec) in &action.params {
                    if let Some(default) = &spec.default {
                        assert!(
                            spec.kind.matches(default),
                            "{key}.{name}.{param}: the default is a {}",
                            spec.kind.name()
                        );
                        assert!(!spec.required, "{key}.{name}.{param}: a required param has no default");
                    }
                }
                if let Some(idempotency) = &action.idempotency {
                    assert!(action.params.contains_key(&idempotency.param), "{key}.{name}: idempotency param");
                }
                for param in &read {
                    assert!(action.params.contains_key(param), "{key}.{name} reads undeclared `{param}`");
                }
                for param in action.params.keys() {
                    assert!(read.contains(param), "{key}.{name} never sends `{param}`");
                }
            }
        }
    }

    #[test]
    fn docs_actions_md_is_the_current_catalog() {
        let docs = include_str!("../../docs/actions.md");
        assert!(
            docs.ends_with(&markdown(None)),
            "docs/actions.md is out of date: run `cargo run -p sluice-cli -- actions` and replace its catalog part"
        );
    }

    #[test]
    fn the_markdown_documents_every_action_and_param() {
        let all_docs = markdown(None);
        for entry in all().values() {
            for (name, action) in &entry.actions {
                assert!(all_docs.contains(&format!("### `{name}`")), "{name}");
                for param in action.params.keys() {
                    assert!(all_docs.contains(&format!("| `{param}` |")), "{name}.{param}");
                }
            }
        }
        let slack = markdown(Some("slack"));
        assert!(slack.contains("send_message") && !slack.contains("soql_query"));
        assert!(markdown(Some("custom.acme")).contains("### `request`"));
    }
}
