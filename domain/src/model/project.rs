//! A project as code: the integrations of a project folder, each with its Connect Portal
//! configuration (`config.yaml`), its user settings (`inputs.yaml`) and its workflows
//! (`workflows/*.yaml`), as laid out in `docs/projects.md`. Loaded and checked by
//! [`super::load::load_project`].
//!
//! A plain folder of workflow files is a project too: one implicit integration,
//! [`IMPLICIT_INTEGRATION`], whose workflows every user has enabled.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Workflow;

/// The name of the integration that workflow files outside `integrations/` belong to.
pub const IMPLICIT_INTEGRATION: &str = "default";

/// The folder prefix of custom integrations: `integrations/custom.<name>/`.
pub const CUSTOM_PREFIX: &str = "custom.";

/// The integrations Sluice knows (their authentication and actions are built in); any other
/// integration is a custom one.
pub const BUILT_IN_INTEGRATIONS: &[&str] = &["googlecalendar", "hubspot", "salesforce", "slack"];

/// Everything a project folder defines.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectDefinition {
    /// By name; the implicit integration (if it has workflows) among them.
    pub integrations: Vec<Integration>,
    /// The app events the project declares (`events/*.yaml`), by name.
    pub events: Vec<AppEvent>,
}

/// `events/<file>.yaml`: an app event your application sends. Its `example` payload is the
/// test data of the workflows that listen to it; live payloads are not checked against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppEvent {
    /// What the application sends as `name` (e.g. `Contact Created`).
    pub name: String,
    /// An example payload: a JSON object.
    #[serde(default)]
    pub example: Value,
}

impl ProjectDefinition {
    /// Every workflow of the project with the file it came from.
    pub fn workflows(&self) -> impl Iterator<Item = &(String, Workflow)> {
        self.integrations.iter().flat_map(|integration| integration.workflows.iter())
    }
}

/// One integration of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// Its folder name: `slack`, `custom.acme`, or [`IMPLICIT_INTEGRATION`].
    pub name: String,
    pub config: IntegrationConfig,
    /// Integration-level user settings, by the key workflows use (`{{settings.KEY}}`).
    pub inputs: BTreeMap<String, Input>,
    /// (file, workflow), sorted by file name; each workflow's `integration` is this one's name.
    pub workflows: Vec<(String, Workflow)>,
}

impl Integration {
    pub fn is_custom(&self) -> bool {
        self.name.starts_with(CUSTOM_PREFIX)
    }
}

/// `integrations/<name>/config.yaml`: how the integration is shown in the Connect Portal and,
/// for a custom integration, how its users authenticate and where its API is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Display name (defaults to the folder name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A short description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An overview, in Markdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overview: Option<String>,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    /// Where the user's browser goes back to in your app once an OAuth flow ends (with
    /// `?integration=<name>&connected=true`, or `&error=...`); may use `{{env.NAME}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// How a user connects a custom integration (custom integrations only, required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<AuthenticationType>,
    /// OAuth: where the user is sent to authorise (`oauth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// OAuth: where codes and refresh tokens are exchanged for tokens (`oauth`,
    /// `oauth_client_credential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_url: Option<String>,
    /// OAuth scopes, space-separated or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Scopes>,
    /// OAuth: send a PKCE challenge (S256) and verifier.
    #[serde(default, rename = "usePKCEInCodeExchange", skip_serializing_if = "Option::is_none")]
    pub use_pkce_in_code_exchange: Option<bool>,
    /// OAuth: the app's client id, exactly `{{env.NAME}}` (a literal is a load problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth: the app's client secret, exactly `{{env.NAME}}` (a literal is a load problem: no
    /// secret in a file you commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The base URL the integration's requests and actions go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    /// A path under `apiBaseUrl` that answers 2xx when the credentials work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_endpoint_path: Option<String>,
    /// What every request to the integration carries, templated from `{{credentials.X}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Built-in, where the provider has them (Slack): user scopes, requested beside `scopes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_scopes: Option<Scopes>,
    /// Built-in, where the API is versioned in its paths (Salesforce): e.g. `v66.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Built-in, where users choose a login host at connect time (Salesforce): name → base
    /// URL, replacing the catalog's (`production`, `sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hosts: Option<std::collections::BTreeMap<String, String>>,
    /// The secret the provider signs webhooks with, exactly `{{env.NAME}}` (Slack's signing
    /// secret; a custom integration's `webhooks.verify.secret` may name it as
    /// `{{config.webhookSecret}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Custom integrations: how their webhooks are verified and routed
    /// (`POST /projects/{p}/webhooks/custom.<name>`); built-ins declare theirs in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<super::webhook::WebhookSpec>,
}

/// How the users of a custom integration authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticationType {
    /// OAuth 2.0 authorization code flow, hosted by Sluice.
    Oauth,
    /// OAuth 2.0 client credentials: tokens fetched with the app's client id and secret.
    OauthClientCredential,
    /// A username and password.
    Basic,
    /// An API key.
    ApiKey,
}

impl AuthenticationType {
    pub const ALL: &[&str] = &["oauth", "oauth_client_credential", "basic", "api_key"];
}

/// OAuth scopes: `"a b"` or `[a, b]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scopes {
    Text(String),
    List(Vec<String>),
}

impl Scopes {
    /// The scopes as one space-separated string, as OAuth sends them.
    pub fn joined(&self) -> String {
        match self {
            Scopes::Text(text) => text.split_whitespace().collect::<Vec<_>>().join(" "),
            Scopes::List(list) => list.join(" "),
        }
    }
}

/// What a custom integration's requests carry; values are templates (`{{credentials.X}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Authorization {
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// A header of its own, e.g. `X-API-Key`.
    Header { name: String, value: String },
}

/// An integration's API as its Action steps use it: the base URL (it may hold `{{env.NAME}}`)
/// and the `authorization` template every request carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationApi {
    pub base_url: String,
    pub authorization: Authorization,
    /// What action paths read as `{{api.version}}` (the catalog's, or `apiVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One user setting, shown in the Connect Portal and read in workflows as `{{settings.KEY}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The stable key stored values hang on: renaming the YAML key keeps a user's value,
    /// changing `id` drops it. `[A-Za-z0-9_-]`, at most 64 characters.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: InputType,
    /// What the Connect Portal shows.
    pub title: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tooltip: Option<String>,
    /// The value until the user sets one (not for `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// `select` and `multi_select`: the values to choose from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// `field_mapping`: field id → title; the value maps each field to a field of the
    /// user's app.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// The kinds of user setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// A string.
    Text,
    /// A number.
    Number,
    /// true or false.
    Boolean,
    /// A secret string: never shown again, never recorded.
    Password,
    /// One of `options`.
    Select,
    /// Any of `options` (a list).
    MultiSelect,
    /// An object mapping each of `fields` to a string.
    FieldMapping,
}

impl InputType {
    pub const ALL: &[&str] = &["text", "number", "boolean", "password", "select", "multi_select", "field_mapping"];
}
