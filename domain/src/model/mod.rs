//! Workflow definitions, format version 1 (see `docs/workflow-format.md`).
//!
//! These serde types are what the engine runs. Files are checked by [`load`] before they are
//! turned into these types, so every problem is reported with its file and path; the types
//! themselves are lenient about unknown keys because [`load`] already rejected them.

pub mod duration;
pub mod kinds;
pub mod load;
pub mod project;
pub mod schedule;
pub mod schema;
pub mod webhook;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use duration::DurationSpec;
pub use kinds::{ActionStep, BodyType, DelayStep, FanOutStep, FunctionStep, Pagination, RequestAuth};
pub use schedule::ScheduleTrigger;

/// One workflow: a trigger and the steps it runs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workflow {
    /// `[a-z0-9][a-z0-9-]*`, unique within a project.
    pub id: String,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    /// Workflow-level user settings (`{{settings.KEY}}`; they shadow the integration's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, project::Input>,
    /// Search attributes (Task History): name → template evaluated when an execution starts,
    /// from `trigger.*` and `user.id`; the history lists executions by their values exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search: BTreeMap<String, String>,
    /// Enabled for every user who has not disabled it (otherwise a user enables it first).
    /// Workflows outside any integration are always enabled by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled_by_default: bool,
    /// The integration it belongs to: set from its folder by the project loader, never
    /// written in the file; `None` outside any integration ([`project::IMPLICIT_INTEGRATION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub integration: Option<String>,
    /// The integration's own settings (its `inputs.yaml`), set by the project loader, so a
    /// deployed version carries every setting it can read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub integration_inputs: BTreeMap<String, project::Input>,
    /// How the users of its (custom) integration authenticate, set by the project loader: an
    /// `oauth_client_credential` integration's token is the app's, not a user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub integration_auth: Option<project::AuthenticationType>,
    /// Where its integration's API is and what its requests carry (the config's `apiBaseUrl`
    /// and `authorization`, a built-in's from the action catalog), set by the project loader:
    /// what Action steps run against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub integration_api: Option<project::IntegrationApi>,
}

impl Workflow {
    /// A request-triggered workflow `id` with no steps: what an execution whose own workflow
    /// cannot be read is decided with (it can only end).
    pub fn without_steps(id: &str) -> Workflow {
        Workflow {
            id: id.to_string(),
            name: None,
            trigger: Trigger::Request { method: TriggerMethod::Post, validate: None },
            steps: Vec::new(),
            inputs: BTreeMap::new(),
            search: BTreeMap::new(),
            enabled_by_default: false,
            integration: None,
            integration_inputs: BTreeMap::new(),
            integration_auth: None,
            integration_api: None,
        }
    }

    /// The settings a workflow reads (`{{settings.KEY}}`) before any user value is stored:
    /// each declared setting's default (a workflow-level setting shadows the integration's
    /// of the same key); settings without a default are absent.
    pub fn setting_defaults(&self) -> serde_json::Map<String, Value> {
        self.integration_inputs
            .iter()
            .chain(&self.inputs)
            .filter_map(|(key, input)| input.default.clone().map(|value| (key.clone(), value)))
            .collect()
    }
}

/// What starts an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// `/projects/{projectId}/sdk/triggers/{workflowId}` with a connected-user token, called
    /// with `method` (POST by default).
    Request {
        #[serde(default, skip_serializing_if = "is_default_trigger_method")]
        method: TriggerMethod,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        validate: Option<RequestValidation>,
    },
    /// An app event your application sends (`events/<name>.yaml` declares it); its payload is
    /// `{{trigger.payload}}`.
    AppEvent {
        /// The event's `name`, as declared.
        event: String,
    },
    /// A connected user enables the workflow's integration (through the SDK or by completing
    /// the hosted OAuth flow); again after disabling and enabling it again.
    IntegrationEnabled,
    /// A connected user (re)connects the workflow's integration through the hosted OAuth flow.
    OauthConnected,
    /// An event of the integration's webhooks (`POST /projects/{p}/webhooks/{integration}`)
    /// for a connected user, whose type is `event` and which meets `filter`; the event is
    /// `{{trigger.body}}`. Only in an integration's workflows.
    Webhook {
        /// The event's type, as the integration's webhook declaration finds it (1–128 characters).
        event: String,
        /// Conditions on the event (the conditional step's `when`): events that do not meet
        /// them start nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Condition>,
    },
    /// A clock: at each fire of the schedule, a run for every user who enabled the workflow.
    Schedule(ScheduleTrigger),
    /// A request run on an interval for each enabled user; each new item it returns starts an
    /// execution with `{{trigger.item}}`.
    Poll(Box<PollTrigger>),
}

impl Trigger {
    /// The `type` of the trigger, as written in workflow files.
    pub fn type_name(&self) -> &'static str {
        match self {
            Trigger::Request { .. } => "request",
            Trigger::AppEvent { .. } => "app_event",
            Trigger::IntegrationEnabled => "integration_enabled",
            Trigger::OauthConnected => "oauth_connected",
            Trigger::Webhook { .. } => "webhook",
            Trigger::Schedule(_) => "schedule",
            Trigger::Poll(_) => "poll",
        }
    }

    /// The app event the workflow listens to, if it does.
    pub fn event(&self) -> Option<&str> {
        match self {
            Trigger::AppEvent { event } => Some(event),
            _ => None,
        }
    }

    /// The webhook event type the workflow listens to, if it does.
    pub fn webhook_event(&self) -> Option<&str> {
        match self {
            Trigger::Webhook { event, .. } => Some(event),
            _ => None,
        }
    }

    /// The schedule of a `schedule` trigger, or the interval of a `poll` trigger: what the
    /// scheduler computes fires from.
    pub fn schedule(&self) -> Option<std::borrow::Cow<'_, ScheduleTrigger>> {
        match self {
            Trigger::Schedule(schedule) => Some(std::borrow::Cow::Borrowed(schedule)),
            Trigger::Poll(poll) => Some(std::borrow::Cow::Owned(poll.schedule())),
            _ => None,
        }
    }

    /// Whether the clock starts it (`schedule` and `poll`), so the scheduler has to tick.
    pub fn is_clocked(&self) -> bool {
        matches!(self, Trigger::Schedule(_) | Trigger::Poll(_))
    }
}

/// `trigger: {type: poll, ...}`: a Request step's request, run every `every` for each enabled
/// user (with the integration's credentials); the items it lists whose `key` the user has not
/// seen start one execution each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PollTrigger {
    /// How often (elapsed time, at least 10s), at the multiples of it since the Unix epoch.
    pub every: DurationSpec,
    /// The request (a Request step's fields, without `pagination`); it may use `settings`,
    /// `env`, `user`, `workflow` and `credentials`.
    pub request: RequestStep,
    /// Where the list of items is in the response `{status, headers, body}` (default `body`).
    #[serde(default = "default_poll_items", skip_serializing_if = "is_default_poll_items")]
    pub items: String,
    /// What tells items apart: a template over `item` (default `{{item.id}}`).
    #[serde(default = "default_poll_key", skip_serializing_if = "is_default_poll_key")]
    pub key: String,
    /// What the first poll after a user enables the workflow does with what it lists.
    #[serde(default, skip_serializing_if = "is_default")]
    pub initial: PollInitial,
}

/// The shortest interval of a poll.
/// Whether `key` can name a search attribute: a letter, then up to 39 letters, digits or `_`.
pub fn is_search_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.len() <= 40
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The most search attributes one workflow declares.
pub const MAX_SEARCH_ATTRIBUTES: usize = 5;

pub const MIN_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const DEFAULT_POLL_ITEMS: &str = "body";
pub const DEFAULT_POLL_KEY: &str = "{{item.id}}";

fn default_poll_items() -> String {
    DEFAULT_POLL_ITEMS.to_string()
}

fn is_default_poll_items(items: &String) -> bool {
    items == DEFAULT_POLL_ITEMS
}

fn default_poll_key() -> String {
    DEFAULT_POLL_KEY.to_string()
}

fn is_default_poll_key(key: &String) -> bool {
    key == DEFAULT_POLL_KEY
}

impl PollTrigger {
    /// Its interval as a schedule (UTC, `overlap: skip`, `catchup: latest`: a poll missed in an
    /// outage runs once, and lists everything new since the last one anyway).
    pub fn schedule(&self) -> ScheduleTrigger {
        schedule::interval(&self.every)
    }
}

/// The first poll's items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PollInitial {
    /// Only recorded as seen: what existed before the user enabled the workflow starts nothing.
    #[default]
    Skip,
    /// Each starts an execution, as later new items do.
    Fire,
}

/// The HTTP method a request trigger answers to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TriggerMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl TriggerMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerMethod::Get => "GET",
            TriggerMethod::Post => "POST",
            TriggerMethod::Put => "PUT",
            TriggerMethod::Patch => "PATCH",
            TriggerMethod::Delete => "DELETE",
        }
    }
}

fn is_default_trigger_method(method: &TriggerMethod) -> bool {
    *method == TriggerMethod::Post
}

/// Rules an incoming request must meet; every violation is reported with status 400.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestValidation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryValidation>,
    /// Header name (case-insensitive) → the exact value it must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Required top-level body field → its JSON type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body: BTreeMap<String, JsonType>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueryValidation {
    /// Query parameters that must be present.
    #[serde(default)]
    pub required: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    String,
    Number,
    Boolean,
    Object,
    Array,
}

impl JsonType {
    /// Whether `value` is of this JSON type.
    pub fn matches(self, value: &Value) -> bool {
        match self {
            JsonType::String => value.is_string(),
            JsonType::Number => value.is_number(),
            JsonType::Boolean => value.is_boolean(),
            JsonType::Object => value.is_object(),
            JsonType::Array => value.is_array(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
            JsonType::Object => "object",
            JsonType::Array => "array",
        }
    }
}

/// One step. `id` is unique across the whole workflow, branches included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub kind: StepKind,
    /// Automatic retries of a retryable failure, with exponential backoff (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Delay before the first retry; each further retry doubles it (default 10s, at most 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<DurationSpec>,
    /// When the step fails for good, record the failure and go on with the next step.
    #[serde(default, skip_serializing_if = "is_false")]
    pub continue_on_failure: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepKind {
    Request(RequestStep),
    Conditional(ConditionalStep),
    Response(ResponseStep),
    Function(FunctionStep),
    FanOut(FanOutStep),
    Delay(DelayStep),
    Action(ActionStep),
}

impl StepKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Request(_) => "request",
            StepKind::Conditional(_) => "conditional",
            StepKind::Response(_) => "response",
            StepKind::Function(_) => "function",
            StepKind::FanOut(_) => "fan_out",
            StepKind::Delay(_) => "delay",
            StepKind::Action(_) => "action",
        }
    }

    /// The lists of steps nested in this step: a conditional's branches, a fan-out's branch.
    pub fn nested(&self) -> Vec<&[Step]> {
        match self {
            StepKind::Conditional(c) => vec![&c.then, &c.otherwise],
            StepKind::FanOut(f) => vec![&f.steps],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An HTTP request. Every string value may hold `{{...}}` dynamic variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestStep {
    #[serde(default)]
    pub method: Method,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Value>,
    /// Encoded as `body_type` says (JSON by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub body_type: BodyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RequestAuth>,
    /// Whole-request timeout (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Branches on a condition; after the branch the flow continues below the conditional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConditionalStep {
    pub when: Condition,
    #[serde(default)]
    pub then: Vec<Step>,
    #[serde(default, rename = "else")]
    pub otherwise: Vec<Step>,
}

/// `all` / `any` groups (nestable; a bare list means `all`) of comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Condition {
    All { all: Vec<Condition> },
    Any { any: Vec<Condition> },
    List(Vec<Condition>),
    Compare(Comparison),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    pub left: Value,
    pub op: Operator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterOrEqual,
    LessThan,
    LessOrEqual,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    IsIn,
    NotIn,
    Exists,
    NotExists,
    IsNull,
    IsNotNull,
    IsEmpty,
    IsNotEmpty,
    IsTrue,
    IsFalse,
    Matches,
    Before,
    After,
    SameTime,
}

/// The answer to a synchronous caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseStep {
    /// HTTP status, 200–599 (default 200); may be a `{{...}}` expression.
    #[serde(default = "default_status")]
    pub status: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Value>,
    /// JSON body (a string body is sent as `text/plain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// A file object (`{{steps.x.output.file}}`), answered as raw bytes with its MIME type;
    /// instead of `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Value>,
}

fn default_status() -> Value {
    Value::from(200)
}

impl Workflow {
    /// Whether any step (in any branch) is a Response step: the caller then waits for it.
    pub fn has_response_step(&self) -> bool {
        fn any(steps: &[Step]) -> bool {
            steps.iter().any(|s| matches!(s.kind, StepKind::Response(_)) || s.kind.nested().into_iter().any(any))
        }
        any(&self.steps)
    }

    /// Every step id in the order steps can run: each step, then its branches (`then`
    /// before `else`), then the next step.
    pub fn step_order(&self) -> Vec<&str> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a str>) {
            for s in steps {
                out.push(&s.id);
                for nested in s.kind.nested() {
                    walk(nested, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// For every step inside a fan-out's branch (at any depth, conditionals included), the
    /// id of its innermost enclosing fan-out.
    pub fn enclosing_fan_outs(&self) -> std::collections::HashMap<&str, &str> {
        fn walk<'a>(
            steps: &'a [Step],
            fan_out: Option<&'a str>,
            out: &mut std::collections::HashMap<&'a str, &'a str>,
        ) {
            for s in steps {
                if let Some(fan_out) = fan_out {
                    out.insert(&s.id, fan_out);
                }
                let inner = if matches!(s.kind, StepKind::FanOut(_)) { Some(s.id.as_str()) } else { fan_out };
                for nested in s.kind.nested() {
                    walk(nested, inner, out);
                }
            }
        }
        let mut out = std::collections::HashMap::new();
        walk(&self.steps, None, &mut out);
        out
    }

    /// The step with this id, wherever it is.
    pub fn find_step(&self, id: &str) -> Option<&Step> {
        fn find<'a>(steps: &'a [Step], id: &str) -> Option<&'a Step> {
            for s in steps {
                if s.id == id {
                    return Some(s);
                }
                if let Some(found) = s.kind.nested().into_iter().find_map(|list| find(list, id)) {
                    return Some(found);
                }
            }
            None
        }
        find(&self.steps, id)
    }
}
