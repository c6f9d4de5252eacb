//! Loading a project folder (see [`crate::model::project`] and `docs/projects.md`):
//!
//! ```text
//! PROJECT/
//!   integrations/
//!     slack/                  a built-in integration
//!       config.yaml           Connect Portal display: name, description, overview, accentColor
//!       inputs.yaml           integration-level user settings (optional)
//!       workflows/*.yaml      its workflows
//!     custom.acme/            a custom integration: config.yaml also says how users authenticate
//!   events/*.yaml             app events: `name` and an `example` payload
//!   *.yaml                    workflows outside any integration (the implicit one)
//! ```
//!
//! A folder without `integrations/` is a plain folder of workflow files: the implicit
//! integration alone, as before projects existed.
//!
//! Invariant: as for workflow files, every problem of every file is reported together (file
//! and path), and a definition comes out only when there is none.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::check::{Checker, key_path};
use super::{Problem, duplicate_ids, load_dir_files, parse_text};
use crate::catalog::path::UnsafePath;
use crate::model::Trigger;
use crate::model::project::{
    AppEvent, AuthenticationType, BUILT_IN_INTEGRATIONS, CUSTOM_PREFIX, IMPLICIT_INTEGRATION, Input, Integration,
    IntegrationApi, IntegrationConfig, ProjectDefinition,
};
use crate::template::{Template, kind};

/// The folder of integrations inside a project.
pub const INTEGRATIONS_DIR: &str = "integrations";
pub const CONFIG_FILE: &str = "config.yaml";
pub const INPUTS_FILE: &str = "inputs.yaml";
pub const WORKFLOWS_DIR: &str = "workflows";
/// The folder of app event declarations inside a project.
pub const EVENTS_DIR: &str = "events";
/// At most this many app events in a project.
pub const MAX_EVENTS: usize = 500;
/// The largest example payload of an app event, in bytes of JSON.
pub const MAX_EVENT_EXAMPLE_BYTES: usize = 64 * 1024;
/// At most this many integrations in a project.
pub const MAX_INTEGRATIONS: usize = 200;

/// Custom integration names: lowercase letters and digits (`GitHub Enterprise` →
/// `custom.githubenterprise`).
static CUSTOM_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("^[a-z0-9]{1,40}$").ok());
static COLOR: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("^#[0-9a-fA-F]{6}$").ok());

const COMMON_KEYS: &[&str] = &["name", "description", "overview", "accentColor", "returnUrl"];
/// What a built-in integration's config may set besides [`COMMON_KEYS`]: where its API is
/// (a local fake, a proxy), your app's OAuth client (which turns the hosted OAuth flow on),
/// and, to reach another OAuth server or ask for other scopes, its endpoints and scopes.
const BUILT_IN_KEYS: &[&str] = &[
    "apiBaseUrl",
    "clientId",
    "clientSecret",
    "authorizationUrl",
    "accessTokenUrl",
    "scopes",
    "userScopes",
    "apiVersion",
    "loginHosts",
    "webhookSecret",
];
const CUSTOM_KEYS: &[&str] = &[
    "authenticationType",
    "authorizationUrl",
    "accessTokenUrl",
    "scopes",
    "usePKCEInCodeExchange",
    "clientId",
    "clientSecret",
    "apiBaseUrl",
    "testEndpointPath",
    "authorization",
    "webhookSecret",
    "webhooks",
];

/// Whether `dir` is laid out as a project (it has an `integrations/` folder).
pub fn is_project(dir: &Path) -> bool {
    dir.join(INTEGRATIONS_DIR).is_dir()
}

/// Whether `name` is a valid integration folder name, and why not.
pub fn integration_name_problem(name: &str) -> Option<String> {
    if let Some(custom) = name.strip_prefix(CUSTOM_PREFIX) {
        return (!CUSTOM_NAME.as_ref().is_some_and(|re| re.is_match(custom))).then(|| {
            format!("`{custom}` is not a valid custom integration name: 1 to 40 lowercase letters and digits")
        });
    }
    if name == IMPLICIT_INTEGRATION {
        return Some(format!(
            "`{IMPLICIT_INTEGRATION}` is the integration of workflows outside `integrations/`; name this one otherwise"
        ));
    }
    (!BUILT_IN_INTEGRATIONS.contains(&name)).then(|| {
        format!(
            "unknown integration `{name}` (built in: {}); a custom integration's folder is `custom.<name>`",
            BUILT_IN_INTEGRATIONS.join(", ")
        )
    })
}

/// Loads the project (or plain folder of workflow files) at `dir`. Workflow ids are unique
/// across the whole project.
pub fn load_project(dir: &Path) -> Result<ProjectDefinition, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut integrations = Vec::new();
    // Every workflow file's id, even of files (or integrations) with problems.
    let mut ids = Vec::new();
    // Workflows outside `integrations/`: the implicit integration.
    match load_dir_files(dir, None, &mut ids) {
        Ok(workflows) if !workflows.is_empty() || !is_project(dir) => integrations.push(Integration {
            name: IMPLICIT_INTEGRATION.to_string(),
            config: IntegrationConfig::default(),
            inputs: Default::default(),
            workflows,
        }),
        Ok(_) => {}
        Err(found) => problems.extend(found),
    }
    if is_project(dir) {
        let folder = dir.join(INTEGRATIONS_DIR);
        let mut names = Vec::new();
        match fs::read_dir(&folder) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
                    if name.starts_with('.') {
                        continue;
                    }
                    if !path.is_dir() {
                        problems.push(whole(
                            &path.display().to_string(),
                            "only integration folders belong in `integrations/` (workflow files go in \
                             `integrations/<name>/workflows/`)",
                        ));
                        continue;
                    }
                    names.push(name);
                }
            }
            Err(e) => problems.push(whole(&folder.display().to_string(), &format!("cannot read the folder: {e}"))),
        }
        names.sort();
        if names.len() > MAX_INTEGRATIONS {
            problems.push(whole(
                &folder.display().to_string(),
                &format!("{} integrations; at most {MAX_INTEGRATIONS}", names.len()),
            ));
            names.truncate(MAX_INTEGRATIONS);
        }
        for name in names {
            match load_integration(&folder.join(&name), &name, &mut ids) {
                Ok(integration) => integrations.push(integration),
                Err(found) => problems.extend(found),
            }
        }
    }
    let (events, found) = load_events(dir);
    problems.extend(found);
    problems.extend(trigger_problems(&integrations, &events));
    // Workflow ids name trigger routes: unique in the project.
    problems.extend(duplicate_ids(&ids));
    if problems.is_empty() { Ok(ProjectDefinition { integrations, events }) } else { Err(problems) }
}

/// The app events declared in `dir/events/` (none without the folder), and every problem of
/// its files: the valid declarations are kept beside the problems, so that listeners of a
/// valid event are not reported too.
fn load_events(dir: &Path) -> (Vec<AppEvent>, Vec<Problem>) {
    let folder = dir.join(EVENTS_DIR);
    if !folder.is_dir() {
        return (Vec::new(), Vec::new());
    }
    let mut problems = Vec::new();
    let mut paths: Vec<_> = match fs::read_dir(&folder) {
        Ok(entries) => entries.flatten().map(|entry| entry.path()).collect(),
        Err(e) => {
            return (Vec::new(), vec![whole(&folder.display().to_string(), &format!("cannot read the folder: {e}"))]);
        }
    };
    paths.sort();
    let mut events: Vec<AppEvent> = Vec::new();
    let mut first_file_of: HashMap<String, String> = HashMap::new();
    for path in paths {
        let file = path.display().to_string();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if !path.is_file() || !super::is_workflow_file(&path) {
            problems.push(whole(&file, "only app event files (*.yaml, *.yml, *.json) belong in `events/`"));
            continue;
        }
        let value = match read_document(&path) {
            Ok((_, value)) => value,
            Err(found) => {
                problems.extend(found);
                continue;
            }
        };
        let mut found = Vec::new();
        let Value::Object(map) = &value else {
            problems.push(whole(
                &file,
                &format!("an app event is a mapping with `name` and `example`, not {}", kind(&value)),
            ));
            continue;
        };
        for key in map.keys().filter(|key| !["name", "example"].contains(&key.as_str())) {
            found.push((key_path("", key), "unknown key (an app event has `name` and `example`)".to_string()));
        }
        let event_name = match map.get("name") {
            Some(Value::String(name)) => match super::check::event_name_problem(name) {
                Some(problem) => {
                    found.push(("name".to_string(), problem));
                    None
                }
                None => Some(name.clone()),
            },
            Some(other) => {
                found.push(("name".to_string(), format!("must be text, not {}", kind(other))));
                None
            }
            None => {
                found.push(("name".to_string(), "`name` is required: what your app sends as the event's name".into()));
                None
            }
        };
        let example = map.get("example").cloned().unwrap_or_else(|| Value::Object(Default::default()));
        if !example.is_object() {
            found.push((
                "example".to_string(),
                format!("must be a JSON object (an example payload), not {}", kind(&example)),
            ));
        } else if serde_json::to_vec(&example).map_or(0, |bytes| bytes.len()) > MAX_EVENT_EXAMPLE_BYTES {
            found.push(("example".to_string(), format!("is larger than {MAX_EVENT_EXAMPLE_BYTES} bytes")));
        }
        if let Some(event_name) = &event_name
            && let Some(first) = first_file_of.get(event_name)
        {
            found.push(("name".to_string(), format!("event `{event_name}` is already declared by {first}")));
        }
        if !found.is_empty() {
            problems.extend(problems_of(&file, found));
            continue;
        }
        if let Some(name) = event_name {
            first_file_of.insert(name.clone(), file);
            events.push(AppEvent { name, example });
        }
    }
    if events.len() > MAX_EVENTS {
        problems
            .push(whole(&folder.display().to_string(), &format!("{} app events; at most {MAX_EVENTS}", events.len())));
    }
    (events, problems)
}

/// Triggers that need the project: an app event must be declared, and the triggers of a
/// connection (`integration_enabled`, `oauth_connected`) and of its app's webhooks (`webhook`)
/// belong to an integration's workflows.
fn trigger_problems(integrations: &[Integration], events: &[AppEvent]) -> Vec<Problem> {
    let declared: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    let mut problems = Vec::new();
    for integration in integrations {
        for (file, workflow) in &integration.workflows {
            let problem = match &workflow.trigger {
                Trigger::AppEvent { event } if !declared.contains(&event.as_str()) => Some((
                    "trigger.event",
                    if declared.is_empty() {
                        format!(
                            "no app event `{event}` is declared (declare it in {EVENTS_DIR}/<name>.yaml: `name` and an `example` payload)"
                        )
                    } else {
                        format!("no app event `{event}` is declared (declared: {})", declared.join(", "))
                    },
                )),
                trigger @ (Trigger::IntegrationEnabled | Trigger::OauthConnected | Trigger::Webhook { .. })
                    if integration.name == IMPLICIT_INTEGRATION =>
                {
                    Some((
                        "trigger.type",
                        format!(
                            "a `{}` trigger belongs to an integration's workflows (integrations/<name>/workflows/)",
                            trigger.type_name()
                        ),
                    ))
                }
                Trigger::Webhook { .. } if !receives_webhooks(integration) => Some((
                    "trigger.type",
                    if integration.is_custom() {
                        format!(
                            "integration `{}` declares no webhooks: add `webhooks:` to its config.yaml (see docs/triggers.md#custom-integrations)",
                            integration.name
                        )
                    } else {
                        format!(
                            "integration `{}` has no webhooks Sluice can verify (built-in webhooks: {})",
                            integration.name,
                            crate::catalog::all()
                                .iter()
                                .filter(|(_, entry)| entry.webhooks.is_some())
                                .map(|(name, _)| name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                )),
                _ => None,
            };
            if let Some((path, message)) = problem {
                problems.push(Problem { file: file.clone(), path: path.to_string(), message });
            }
        }
    }
    problems
}

/// Whether webhooks can reach `integration`'s workflows: its config declares them (custom) or
/// the catalog does (built-in).
fn receives_webhooks(integration: &Integration) -> bool {
    integration.config.webhooks.is_some()
        || (!integration.is_custom()
            && crate::catalog::integration(&integration.name).is_some_and(|entry| entry.webhooks.is_some()))
}

fn whole(file: &str, message: &str) -> Problem {
    Problem { file: file.to_string(), path: String::new(), message: message.to_string() }
}

/// One folder of `integrations/`.
fn load_integration(dir: &Path, name: &str, ids: &mut Vec<(String, String)>) -> Result<Integration, Vec<Problem>> {
    let mut problems = Vec::new();
    let folder = dir.display().to_string();
    if let Some(message) = integration_name_problem(name) {
        problems.push(whole(&folder, &message));
    }
    let custom = name.starts_with(CUSTOM_PREFIX);
    let config_path = dir.join(CONFIG_FILE);
    let config = if config_path.is_file() {
        read_document(&config_path).and_then(|(file, value)| config_of(&file, &value, custom))
    } else {
        Err(vec![whole(
            &config_path.display().to_string(),
            "missing: every integration has a config.yaml (`sluice new integration` writes one)",
        )])
    };
    let config = config.map_err(|found| problems.extend(found)).ok();
    if let Some(config) = &config
        && !custom
    {
        problems.extend(built_in_config_problems(&config_path.display().to_string(), name, config));
    }
    let inputs_path = dir.join(INPUTS_FILE);
    let inputs = if inputs_path.is_file() {
        read_document(&inputs_path).and_then(|(file, value)| inputs_of(&file, &value))
    } else {
        Ok(Default::default())
    };
    let inputs = inputs.map_err(|found| problems.extend(found)).ok();
    let declared = inputs.clone().unwrap_or_default();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let known = [CONFIG_FILE, INPUTS_FILE, WORKFLOWS_DIR].contains(&file_name.as_str());
        if !known && !file_name.starts_with('.') {
            problems.push(whole(
                &path.display().to_string(),
                &format!("not part of an integration (it has {CONFIG_FILE}, {INPUTS_FILE} and {WORKFLOWS_DIR}/)"),
            ));
        }
    }
    let workflows_dir = dir.join(WORKFLOWS_DIR);
    let workflows = if workflows_dir.is_dir() {
        load_dir_files(&workflows_dir, Some((name, &declared)), ids).map_err(|found| problems.extend(found)).ok()
    } else {
        Some(Vec::new())
    };
    match (config, inputs, workflows) {
        (Some(config), Some(inputs), Some(mut workflows)) if problems.is_empty() => {
            let actions = workflows.iter().flat_map(|(_, workflow)| actions_of(&workflow.steps)).collect::<Vec<_>>();
            let config = with_catalog_oauth(name, config, actions.iter().map(String::as_str));
            let api = integration_api(name, &config);
            for (_, workflow) in &mut workflows {
                workflow.integration_auth = config.authentication_type;
                workflow.integration_api = api.clone();
            }
            Ok(Integration { name: name.to_string(), config, inputs, workflows })
        }
        _ => Err(problems),
    }
}

/// The actions the steps (and their nested steps) run.
fn actions_of(steps: &[crate::model::Step]) -> Vec<String> {
    let mut found = Vec::new();
    for step in steps {
        if let crate::model::StepKind::Action(action) = &step.kind {
            found.push(action.action.clone());
        }
        for nested in step.kind.nested() {
            found.extend(actions_of(nested));
        }
    }
    found
}

/// What a built-in integration's config may not say: `userScopes`, `apiVersion` or
/// `loginHosts` where the provider has no such thing, a malformed API version.
fn built_in_config_problems(file: &str, name: &str, config: &IntegrationConfig) -> Vec<Problem> {
    let Some(entry) = crate::catalog::integration(name) else { return Vec::new() };
    let oauth = entry.oauth.as_ref();
    let mut found = Vec::new();
    let mut problem = |path: &str, message: String| {
        found.push(Problem { file: file.to_string(), path: path.to_string(), message });
    };
    if config.user_scopes.is_some() && oauth.is_none_or(|o| o.user_scope_param.is_none()) {
        problem("userScopes", format!("`{name}` has no user scopes (only slack does)"));
    }
    match (&config.api_version, &entry.api_version) {
        (Some(_), None) => problem("apiVersion", format!("`{name}`'s API has no version to choose")),
        (Some(version), Some(_)) if !API_VERSION.as_ref().is_ok_and(|re| re.is_match(version)) => {
            problem("apiVersion", format!("`{version}` is not an API version: write e.g. `v66.0`"));
        }
        _ => {}
    }
    if let Some(hosts) = &config.login_hosts {
        if oauth.is_none_or(|o| o.login_hosts.is_empty()) {
            problem("loginHosts", format!("`{name}` has no login hosts to choose (only salesforce does)"));
        }
        for (host, url) in hosts {
            let valid =
                url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
            if !valid || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                problem(
                    &format!("loginHosts.{host}"),
                    "a login host is a name (letters, digits, - and _) and a URL".into(),
                );
            }
        }
    }
    found
}

static API_VERSION: std::sync::LazyLock<Result<regex::Regex, regex::Error>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^v[0-9]{1,3}\.[0-9]$"));

/// A built-in integration whose config gives an OAuth client connects with the hosted
/// authorization-code flow, on the catalog's endpoints unless the config sets its own, and
/// asks for the catalog's scopes plus those of the `actions` its workflows run (unless the
/// config lists its own).
fn with_catalog_oauth<'a>(
    name: &str,
    mut config: IntegrationConfig,
    actions: impl IntoIterator<Item = &'a str>,
) -> IntegrationConfig {
    let Some(oauth) = (!name.starts_with(CUSTOM_PREFIX))
        .then(|| crate::catalog::integration(name))
        .flatten()
        .and_then(|c| c.oauth.as_ref())
    else {
        return config;
    };
    if config.client_id.is_some() && config.client_secret.is_some() {
        config.authentication_type = Some(AuthenticationType::Oauth);
        config.authorization_url.get_or_insert_with(|| oauth.authorization_url.clone());
        config.access_token_url.get_or_insert_with(|| oauth.access_token_url.clone());
        config
            .scopes
            .get_or_insert_with(|| crate::model::project::Scopes::List(crate::catalog::scopes_for(name, actions)));
    }
    config
}

/// Where the integration's actions go and what they carry: a custom integration's own
/// `apiBaseUrl` and `authorization`; a built-in's from the catalog, its URL overridable.
/// Loads one workflow document as a workflow of the deployed integration `name` (its config
/// and settings), exactly as `load_project` makes it: settings and credentials references
/// checked against the integration, its authentication and API attached. Test runs of an
/// integration's workflow go through this.
pub fn load_value_of_integration(
    file: &str,
    value: &Value,
    name: &str,
    config: &IntegrationConfig,
    inputs: &std::collections::BTreeMap<String, Input>,
) -> Result<crate::model::Workflow, Vec<Problem>> {
    let mut workflow = super::load_value_in(file, value, Some((name, inputs)))?;
    workflow.integration_auth = config.authentication_type;
    workflow.integration_api = integration_api(name, config);
    Ok(workflow)
}

fn integration_api(name: &str, config: &IntegrationConfig) -> Option<IntegrationApi> {
    let catalog = crate::catalog::integration(name);
    let base_url = config.api_base_url.clone().or_else(|| catalog.and_then(|c| c.api_base_url.clone()))?;
    let authorization = config.authorization.clone().or_else(|| catalog.and_then(|c| c.authorization.clone()))?;
    let version = config.api_version.clone().or_else(|| catalog.and_then(|c| c.api_version.clone()));
    Some(IntegrationApi { base_url, authorization, version })
}

fn read_document(path: &Path) -> Result<(String, Value), Vec<Problem>> {
    let file = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| vec![whole(&file, &format!("cannot read the file: {e}"))])?;
    let value = parse_text(&file, &text).map_err(|problem| vec![problem])?;
    Ok((file, value))
}

fn problems_of(file: &str, found: Vec<(String, String)>) -> Vec<Problem> {
    found.into_iter().map(|(path, message)| Problem { file: file.to_string(), path, message }).collect()
}

/// Checks and reads an integration's `config.yaml`.
pub fn config_of(file: &str, value: &Value, custom: bool) -> Result<IntegrationConfig, Vec<Problem>> {
    let mut checker = Checker::new(None);
    checker.config(value, custom);
    if !checker.problems.is_empty() {
        return Err(problems_of(file, checker.problems));
    }
    serde_json::from_value(value.clone())
        .map_err(|e| vec![whole(file, &format!("the integration config could not be read: {e}"))])
}

/// Checks and reads an `inputs.yaml` (an empty file declares no settings).
pub fn inputs_of(file: &str, value: &Value) -> Result<std::collections::BTreeMap<String, Input>, Vec<Problem>> {
    if value.is_null() {
        return Ok(Default::default());
    }
    let mut checker = Checker::new(None);
    checker.inputs(value, "");
    if !checker.problems.is_empty() {
        return Err(problems_of(file, checker.problems));
    }
    serde_json::from_value(value.clone())
        .map_err(|e| vec![whole(file, &format!("the settings could not be read: {e}"))])
}

impl Checker {
    fn config(&mut self, value: &Value, custom: bool) {
        if value.is_null() {
            if custom {
                self.problem("", "a custom integration's config.yaml says how its users authenticate");
            }
            return;
        }
        let Some(map) = self.mapping(value, "", "an integration config") else { return };
        for key in map.keys() {
            let key = key.as_str();
            if COMMON_KEYS.contains(&key)
                || (custom && CUSTOM_KEYS.contains(&key))
                || (!custom && BUILT_IN_KEYS.contains(&key))
            {
                continue;
            }
            if CUSTOM_KEYS.contains(&key) {
                let message = format!(
                    "`{key}` is for custom integrations only: a built-in integration's authentication is built in"
                );
                self.problem(key, message);
            } else {
                let allowed: Vec<&str> =
                    COMMON_KEYS.iter().chain(if custom { CUSTOM_KEYS } else { BUILT_IN_KEYS }).copied().collect();
                self.problem(key, format!("unknown key `{key}` (allowed here: {})", allowed.join(", ")));
            }
        }
        for key in ["name", "description", "overview"] {
            if let Some(text) = map.get(key) {
                self.string(text, key);
            }
        }
        if let Some(color) = map.get("accentColor")
            && let Some(text) = self.string(color, "accentColor")
            && !COLOR.as_ref().is_some_and(|re| re.is_match(text))
        {
            self.problem("accentColor", format!("`{text}` is not a colour: write `#rrggbb`"));
        }
        if let Some(url) = map.get("returnUrl") {
            self.url(url, "returnUrl", true);
        }
        if custom {
            self.custom_auth(map);
        } else {
            self.built_in_api(map);
        }
        self.webhooks(map, custom);
    }

    /// `webhookSecret` (exactly `{{env.NAME}}`) and a custom integration's `webhooks`
    /// declaration (`crate::model::webhook`).
    fn webhooks(&mut self, map: &serde_json::Map<String, Value>, custom: bool) {
        if let Some(secret) = map.get("webhookSecret") {
            self.env_only(secret, "webhookSecret");
        }
        let Some(spec) = map.get("webhooks") else { return };
        if !custom {
            self.problem("webhooks", "built-in integrations declare their webhooks in the catalog");
            return;
        }
        match serde_json::from_value::<crate::model::webhook::WebhookSpec>(spec.clone()) {
            Err(error) => self.problem("webhooks", format!("not a webhook declaration: {error}")),
            Ok(spec) => {
                for (path, message) in spec.problems() {
                    self.problem(&format!("webhooks.{path}"), message);
                }
                if spec.verify.secret == "{{config.webhookSecret}}" && !map.contains_key("webhookSecret") {
                    self.problem("webhooks.verify.secret", "names `webhookSecret`, which this config does not set");
                }
            }
        }
    }

    /// A built-in integration's overrides: `apiBaseUrl`, and an OAuth client (both halves).
    fn built_in_api(&mut self, map: &serde_json::Map<String, Value>) {
        if let Some(url) = map.get("apiBaseUrl") {
            self.url(url, "apiBaseUrl", true);
        }
        for key in ["authorizationUrl", "accessTokenUrl"] {
            if let Some(url) = map.get(key) {
                self.url(url, key, true);
            }
        }
        for (key, other) in [("clientId", "clientSecret"), ("clientSecret", "clientId")] {
            match map.get(key) {
                Some(value) => self.env_only(value, key),
                None if map.contains_key(other) => {
                    self.problem(key, format!("`{key}` is required with `{other}`: the hosted OAuth flow needs both"));
                }
                None => {}
            }
        }
        for key in ["scopes", "userScopes"] {
            if let Some(scopes) = map.get(key) {
                self.scopes(scopes, key);
            }
        }
        if let Some(version) = map.get("apiVersion") {
            self.string(version, "apiVersion");
        }
        if let Some(hosts) = map.get("loginHosts") {
            self.mapping(hosts, "loginHosts", "`loginHosts`");
        }
    }

    fn scopes(&mut self, scopes: &Value, key: &str) {
        match scopes {
            Value::String(_) => {}
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.string(item, &super::check::index_path(key, i));
                }
            }
            other => self.problem(key, format!("must be a string or a list of strings, not {}", kind(other))),
        }
    }

    /// A custom integration's authentication and API.
    fn custom_auth(&mut self, map: &serde_json::Map<String, Value>) {
        let auth_type = match map.get("authenticationType") {
            None => {
                let message = format!("`authenticationType` is required ({})", AuthenticationType::ALL.join(", "));
                self.problem("authenticationType", message);
                None
            }
            Some(value) => self.string(value, "authenticationType").and_then(|name| {
                let parsed = serde_json::from_value::<AuthenticationType>(Value::from(name)).ok();
                if parsed.is_none() {
                    let valid = AuthenticationType::ALL.join(", ");
                    self.problem(
                        "authenticationType",
                        format!("unknown authentication type `{name}` (valid: {valid})"),
                    );
                }
                parsed
            }),
        };
        let oauth = matches!(auth_type, Some(AuthenticationType::Oauth | AuthenticationType::OauthClientCredential));
        let needs = |key: &str| match auth_type {
            Some(AuthenticationType::Oauth) => {
                ["authorizationUrl", "accessTokenUrl", "clientId", "clientSecret"].contains(&key)
            }
            Some(AuthenticationType::OauthClientCredential) => {
                ["accessTokenUrl", "clientId", "clientSecret"].contains(&key)
            }
            _ => false,
        };
        for key in ["authorizationUrl", "accessTokenUrl"] {
            match map.get(key) {
                Some(_) if !oauth && auth_type.is_some() => {
                    self.problem(key, format!("`{key}` is for OAuth integrations"));
                }
                Some(url) => self.url(url, key, false),
                None if needs(key) => self.problem(key, format!("`{key}` is required for this authentication type")),
                None => {}
            }
        }
        for key in ["clientId", "clientSecret"] {
            match map.get(key) {
                Some(_) if !oauth && auth_type.is_some() => {
                    self.problem(key, format!("`{key}` is for OAuth integrations"));
                }
                Some(value) => self.env_only(value, key),
                None if needs(key) => self
                    .problem(key, format!("`{key}` is required for this authentication type, as `{{{{env.NAME}}}}`")),
                None => {}
            }
        }
        if let Some(scopes) = map.get("scopes") {
            self.scopes(scopes, "scopes");
        }
        if let Some(pkce) = map.get("usePKCEInCodeExchange") {
            self.boolean(pkce, "usePKCEInCodeExchange");
        }
        match map.get("apiBaseUrl") {
            None => self.problem("apiBaseUrl", "`apiBaseUrl` is required: where the integration's requests go"),
            Some(url) => self.url(url, "apiBaseUrl", true),
        }
        if let Some(path) = map.get("testEndpointPath")
            && let Some(text) = self.string(path, "testEndpointPath")
            && let Err(why) = crate::catalog::path::check(text)
        {
            let message = match why {
                UnsafePath::NotAbsolute => "must start with `/` (a path under `apiBaseUrl`)".to_string(),
                why => format!("must be a path under `apiBaseUrl`: {why}"),
            };
            self.problem("testEndpointPath", message);
        }
        match map.get("authorization") {
            None => self.problem(
                "authorization",
                "`authorization` is required: what requests carry, e.g. \
                 `{ type: bearer, token: \"{{credentials.accessToken}}\" }`",
            ),
            Some(value) => self.authorization(value),
        }
    }

    /// An absolute http(s) URL; `templated`: it may hold `{{env.NAME}}`.
    fn url(&mut self, value: &Value, path: &str, templated: bool) {
        let Some(text) = self.string(value, path) else { return };
        if templated && text.contains("{{") {
            self.env_template(value, path);
            return;
        }
        match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => self.problem(path, format!("`{text}` is not an absolute http(s) URL")),
        }
    }

    /// A string whose `{{...}}` expressions may only read `env`.
    fn env_template(&mut self, value: &Value, path: &str) {
        self.restricted_template(value, path, &["env"]);
    }

    /// `clientId` or `clientSecret`: exactly `{{env.NAME}}`, so your app's OAuth client is never
    /// committed with the project (the literal is not repeated in the problem).
    fn env_only(&mut self, value: &Value, path: &str) {
        let before = self.problems.len();
        self.env_template(value, path);
        if self.problems.len() > before {
            return;
        }
        let one_env_name = value.as_str().and_then(|text| Template::parse(text).ok()).is_some_and(|template| {
            template
                .as_single_expr()
                .is_some_and(|expr| expr.root() == Some("env") && expr.segments.len() == 2 && expr.key_at(1).is_some())
        });
        if !one_env_name {
            self.problem(
                path,
                format!(
                    "`{path}` must be exactly `{{{{env.NAME}}}}`, not a literal value: set it in the stack's \
                     environment (`SLUICE_ENV_NAME`) so no OAuth client is committed"
                ),
            );
        }
    }

    /// A string whose `{{...}}` expressions read only the variables `roots`.
    fn restricted_template(&mut self, value: &Value, path: &str, roots: &[&str]) {
        let Some(text) = self.string(value, path) else { return };
        match Template::parse(text) {
            Err(e) => self.problem(path, e.to_string()),
            Ok(template) => {
                for expr in template.expressions() {
                    if !expr.root().is_some_and(|root| roots.contains(&root)) {
                        let names: Vec<String> = roots.iter().map(|r| format!("`{r}`")).collect();
                        let message = format!("`{{{{{expr}}}}}`: only {} can be used here", names.join(", "));
                        self.problem(path, message);
                    }
                }
            }
        }
    }

    fn authorization(&mut self, value: &Value) {
        let Some(map) = self.mapping(value, "authorization", "`authorization`") else { return };
        let path = "authorization";
        let Some(kind_name) = map.get("type").and_then(Value::as_str) else {
            self.problem(&key_path(path, "type"), "`type` is required (bearer, basic or header)");
            return;
        };
        let keys: &[&str] = match kind_name {
            "bearer" => &["token"],
            "basic" => &["username", "password"],
            "header" => &["name", "value"],
            other => {
                self.problem(
                    &key_path(path, "type"),
                    format!("unknown authorization `{other}` (bearer, basic or header)"),
                );
                return;
            }
        };
        let allowed: Vec<&str> = ["type"].into_iter().chain(keys.iter().copied()).collect();
        self.only_keys(map, path, &allowed);
        for key in keys {
            let at = key_path(path, key);
            match map.get(*key) {
                None => self.problem(&at, format!("`{key}` is required for `{kind_name}`")),
                Some(value) => self.restricted_template(value, &at, &["credentials", "settings", "env"]),
            }
        }
    }
}
