//! Webhooks from users' connected apps: `POST /projects/{p}/webhooks/{integration}`.
//!
//! A delivery is verified on its raw body with the integration's scheme (the built-in
//! catalog's `webhooks`, or a custom integration's `config.yaml`), answered at once if it is
//! the provider's handshake, split into its events, and each event is:
//! 1. dropped if the integration says so (Slack's `app_rate_limited`);
//! 2. recognised by the provider's event id: a redelivery within
//!    [`WEBHOOK_RETENTION_DAYS`](crate::ports::WEBHOOK_RETENTION_DAYS) is acknowledged and
//!    starts nothing (the event ids of kept deliveries are read once per delivery; a
//!    concurrent or half-done earlier delivery is caught by the derived execution ids);
//! 3. routed to the connected users whose connection has the identity the event names
//!    (`users_by_identity`, an index), or recorded as unrouted;
//! 4. started, for each such user, in every deployed workflow of the integration subscribed to
//!    its type whose `filter` holds, through the connect gate — under execution ids derived
//!    from the event id, so a delivery retried after a crash cannot start one twice.
//!
//! The delivery is then kept (headers with signatures redacted, the raw body, each event's
//! outcome and executions) and the provider gets 200. Nothing is started or kept for a
//! delivery that is refused (401 for the signature, 4xx for the body).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::condition;
use crate::model::Trigger;
use crate::model::project::IntegrationConfig;
use crate::model::webhook::{ChallengeAnswer, Encoding, SchemeName, TimestampUnit, WebhookSpec, http_header_name};
use crate::ports::{
    DeliveredEvent, Deployment, MAX_EVENT_ID_CHARS, RouteLookup, Routes, StartError, StoreError, WebhookDelivery,
};
use crate::record::{MAX_JSON_DEPTH, TriggerData, TriggerKind, now, too_deep};
use crate::runner::Runner;
use crate::start;
use crate::triggers::{self, StartFor};
use crate::webhook_signature::{self, Delivery, HmacScheme, Refused, Scheme};

/// The largest delivery body (Slack's and HubSpot's are far smaller; a kept delivery must fit
/// one DynamoDB item).
pub const MAX_WEBHOOK_BODY: usize = 256 * 1024;
/// The most events one delivery may carry (HubSpot sends at most 100).
pub const MAX_EVENTS: usize = 100;
/// Headers never kept: they authenticate (or could) whoever sent them.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization", "x-api-key"];

/// A webhook request as received.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub project_id: &'a str,
    pub integration: &'a str,
    pub method: &'a str,
    /// The URL the provider called, as it signs it: scheme, host, path and query.
    pub url: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

/// What a delivery is answered with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The provider's handshake.
    Challenge(ChallengeAnswer),
    /// The delivery was kept; each event's outcome.
    Accepted(Accepted),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub delivery_id: String,
    pub events: Vec<DeliveredEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no integration `{0}` is deployed in this project")]
    UnknownIntegration(String),
    #[error("integration `{0}` declares no webhooks")]
    NotDeclared(String),
    /// The deployment lacks the signing secret: the provider should retry once it is set.
    #[error("integration `{integration}` cannot verify webhooks: {reason}")]
    NotConfigured { integration: String, reason: String },
    #[error("the webhook is refused: {0}")]
    Refused(#[from] Refused),
    #[error("{0}")]
    BadBody(String),
    #[error("the body is {size} bytes, over the {limit}-byte limit for webhooks")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
}

impl WebhookError {
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::Store(error) => error.is_retryable(),
            WebhookError::Start(error) => error.is_retryable(),
            WebhookError::NotConfigured { .. } => true,
            _ => false,
        }
    }
}

impl From<triggers::TriggerError> for WebhookError {
    fn from(error: triggers::TriggerError) -> Self {
        match error {
            triggers::TriggerError::Store(error) => WebhookError::Store(error),
            triggers::TriggerError::Start(error) => WebhookError::Start(error),
            other => WebhookError::BadBody(other.to_string()),
        }
    }
}

/// What a delivery to one integration of one project needs from the deployment: its webhook
/// declaration, its config, and the deployed workflows listening to its webhooks.
#[derive(Clone)]
struct Receiver {
    spec: WebhookSpec,
    config: IntegrationConfig,
    listeners: Vec<Arc<Deployment>>,
}

/// How long a process reuses what it read of a deployment for deliveries (a burst of webhooks
/// reads it once): a deploy in this process forgets it at once ([`forget_project`]); one in
/// another process is seen within this.
const RECEIVER_TTL: Duration = Duration::from_secs(2);

type Receivers = std::sync::Mutex<HashMap<(String, String), (std::time::Instant, Arc<Receiver>)>>;
static RECEIVERS: std::sync::LazyLock<Receivers> = std::sync::LazyLock::new(Default::default);

/// Forgets what deliveries read of `project_id`'s deployment (it was deployed again).
pub fn forget_project(project_id: &str) {
    if let Ok(mut receivers) = RECEIVERS.lock() {
        receivers.retain(|(project, _), _| project != project_id);
    }
}

/// The webhook declaration of `integration`, its config and its listeners, if it is deployed.
async fn receiver(runner: &Runner, inbound: &Inbound<'_>) -> Result<Arc<Receiver>, WebhookError> {
    let key = (inbound.project_id.to_string(), inbound.integration.to_string());
    if let Ok(receivers) = RECEIVERS.lock()
        && let Some((read_at, receiver)) = receivers.get(&key)
        && read_at.elapsed() < RECEIVER_TTL
    {
        return Ok(receiver.clone());
    }
    let store = runner.runtime().store.as_ref();
    let record = store
        .get_integration(inbound.project_id, inbound.integration)
        .await?
        .ok_or_else(|| WebhookError::UnknownIntegration(inbound.integration.to_string()))?;
    let spec = match &record.config.webhooks {
        Some(spec) => Some(spec.clone()),
        None => crate::catalog::integration(inbound.integration).and_then(|entry| entry.webhooks.clone()),
    };
    let spec = spec.ok_or_else(|| WebhookError::NotDeclared(inbound.integration.to_string()))?;
    let live = crate::deploy::live(store, inbound.project_id).await?;
    let listeners: Vec<Arc<Deployment>> = live
        .into_values()
        .filter(|d| matches!(d.workflow.trigger, Trigger::Webhook { .. }))
        .filter(|d| d.workflow.integration.as_deref() == Some(inbound.integration))
        .map(Arc::new)
        .collect();
    let receiver = Arc::new(Receiver { spec, config: record.config, listeners });
    if let Ok(mut receivers) = RECEIVERS.lock() {
        if receivers.len() > 1000 {
            receivers.clear();
        }
        receivers.insert(key, (std::time::Instant::now(), receiver.clone()));
    }
    Ok(receiver)
}

/// The secret `template` names: `{{env.NAME}}`, or a config key holding one.
fn secret(template: &str, config: &IntegrationConfig, env: &BTreeMap<String, String>) -> Result<String, String> {
    let from_config = |key: &str, value: &Option<String>| {
        value.clone().ok_or_else(|| format!("its config.yaml sets no `{key}` (`{key}: \"{{{{env.NAME}}}}\"`)"))
    };
    let template = match template {
        "{{config.webhookSecret}}" => from_config("webhookSecret", &config.webhook_secret)?,
        "{{config.clientSecret}}" => from_config("clientSecret", &config.client_secret)?,
        other => other.to_string(),
    };
    let name = template
        .strip_prefix("{{env.")
        .and_then(|rest| rest.strip_suffix("}}"))
        .ok_or_else(|| "its signing secret is not `{{env.NAME}}`".to_string())?;
    match env.get(name) {
        Some(value) if !value.is_empty() => Ok(value.clone()),
        _ => Err(format!("the environment has no `{name}` (set SLUICE_ENV_{name} on the functions)")),
    }
}

/// The signature scheme a declaration names.
pub fn scheme(spec: &WebhookSpec) -> Scheme {
    let verify = &spec.verify;
    match verify.scheme {
        SchemeName::SlackV0 => Scheme::SlackV0,
        SchemeName::HubspotV3 => Scheme::HubSpotV3,
        SchemeName::StripeV1 => Scheme::StripeV1,
        SchemeName::GithubSha256 => Scheme::GitHubSha256,
        SchemeName::StandardWebhooks => Scheme::StandardWebhooks,
        SchemeName::Hmac => Scheme::Hmac(HmacScheme {
            header: verify.header.as_deref().and_then(http_header_name).unwrap_or_default(),
            prefix: verify.prefix.clone().unwrap_or_default(),
            base64: verify.encoding == Some(Encoding::Base64),
            signed: crate::model::webhook::signed_parts(verify.signed.as_deref().unwrap_or("{body}"))
                .unwrap_or_default(),
            timestamp: verify
                .timestamp_header
                .as_deref()
                .and_then(http_header_name)
                .map(|name| (name, verify.timestamp_unit == Some(TimestampUnit::Milliseconds))),
        }),
    }
}

/// Receives one delivery (see the module doc).
pub async fn receive(runner: &Runner, inbound: Inbound<'_>) -> Result<Answer, WebhookError> {
    if inbound.body.len() > MAX_WEBHOOK_BODY {
        return Err(WebhookError::TooLarge { size: inbound.body.len(), limit: MAX_WEBHOOK_BODY });
    }
    let runtime = runner.runtime();
    let receiver = receiver(runner, &inbound).await?;
    let (spec, config, listeners) = (&receiver.spec, &receiver.config, &receiver.listeners);
    let secret = secret(&spec.verify.secret, config, &runtime.settings.env)
        .map_err(|reason| WebhookError::NotConfigured { integration: inbound.integration.to_string(), reason })?;
    let scheme = scheme(spec);
    let delivery = Delivery { method: inbound.method, uri: inbound.url, headers: inbound.headers, body: inbound.body };
    let received_at = now();
    webhook_signature::verify(&scheme, &secret, &delivery, received_at.timestamp())?;

    let text =
        std::str::from_utf8(inbound.body).map_err(|_| WebhookError::BadBody("the body is not UTF-8 text".into()))?;
    let body = parse_body(text, inbound.headers)?;
    if let Some(answer) = spec.challenge_answer(&body) {
        return answer.map(Answer::Challenge).map_err(WebhookError::BadBody);
    }
    let events = spec.split(&body).map_err(WebhookError::BadBody)?;
    if events.len() > MAX_EVENTS {
        return Err(WebhookError::BadBody(format!(
            "a delivery carries at most {MAX_EVENTS} events, not {}",
            events.len()
        )));
    }
    let headers = kept_headers(inbound.headers, &scheme);
    let query = inbound.query.map(parse_query).unwrap_or_default();
    let delivery_id = start::new_execution_id();

    // Redeliveries: the event ids kept deliveries named (one read for the whole delivery); an
    // id twice in one delivery counts once.
    // An event without an id (Slack's slash commands, interactivity) is known by the signature
    // of the request that carried it: a replay of that request within the scheme's window is
    // the same request, while a new request is signed anew (another timestamp or body).
    let signature: String = scheme
        .secret_headers()
        .iter()
        .flat_map(|name| inbound.headers.get_all(name.as_str()))
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join("|");
    let ids: Vec<Option<String>> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let id = spec.event_id.as_ref().and_then(|paths| paths.joined(event));
            let id = id.or_else(|| {
                (!signature.is_empty())
                    .then(|| format!("request:{}", crate::fires::key_hash(&format!("{signature}|{index}"))))
            });
            id.map(|id| if id.chars().count() <= MAX_EVENT_ID_CHARS { id } else { crate::fires::key_hash(&id) })
        })
        .collect();
    let known: Vec<String> = ids.iter().flatten().cloned().collect();
    // Each event's identity value, and the distinct values to look up.
    let identity_of: Vec<Option<String>> =
        events.iter().map(|event| spec.identity.as_ref().and_then(|route| route.path.first(event))).collect();
    let mut identities: Vec<String> = Vec::new();
    for value in identity_of.iter().flatten() {
        if !identities.contains(value) {
            identities.push(value.clone());
        }
    }
    // One read for the whole delivery: the redeliveries among its event ids (an id twice in
    // one delivery counts once), the users its identities name, and their choices.
    let lookup = RouteLookup {
        project_id: inbound.project_id,
        integration: inbound.integration,
        event_ids: &known,
        identity_key: spec.identity.as_ref().map(|route| route.key.as_str()),
        identities: &identities,
    };
    let Routes { delivered, users: named, enablement } =
        runtime.store.route_lookup(&lookup, runtime.store.as_ref()).await?;
    let mut redelivered: HashSet<String> =
        known.iter().zip(&delivered).filter(|(_, seen)| **seen).map(|(id, _)| id.clone()).collect();

    let mut outcomes = Vec::with_capacity(events.len());
    let mut starts = Vec::new();
    for ((event, event_id), identity) in events.into_iter().zip(ids).zip(identity_of) {
        let event_type = spec.event_type.first(event);
        let mut outcome = DeliveredEvent {
            event_id: event_id.clone(),
            event_type: event_type.clone(),
            outcome: "routed".into(),
            identity: None,
            users: Vec::new(),
            executions: Vec::new(),
        };
        if spec.ignored(event) {
            outcome.outcome = "ignored".into();
            outcomes.push(outcome);
            continue;
        }
        if let Some(id) = &event_id
            && !redelivered.insert(id.clone())
        {
            outcome.outcome = "duplicate".into();
            outcomes.push(outcome);
            continue;
        }
        let subscribed: Vec<Arc<Deployment>> = listeners
            .iter()
            .filter(|d| match &d.workflow.trigger {
                Trigger::Webhook { event: wanted, .. } => {
                    wanted == "*" || Some(wanted.as_str()) == event_type.as_deref()
                }
                _ => false,
            })
            .cloned()
            .collect();
        let users = match identity {
            Some(value) => {
                let at = identities.iter().position(|known| *known == value);
                outcome.identity = Some(value);
                at.and_then(|at| named.get(at)).cloned().unwrap_or_default()
            }
            None => Vec::new(),
        };
        if users.is_empty() {
            outcome.outcome = "unrouted".into();
            outcomes.push(outcome);
            continue;
        }
        if subscribed.is_empty() {
            outcome.outcome = "ignored".into();
        }
        outcome.users = users.clone();
        let data = TriggerData {
            kind: TriggerKind::Webhook,
            query: query.clone(),
            headers: headers.clone(),
            body: (*event).clone(),
            event: event_type.clone(),
        };
        for user in users {
            let passing: Vec<Arc<Deployment>> =
                subscribed.iter().filter(|d| filter_holds(&d.workflow.trigger, &data, &user)).cloned().collect();
            if passing.is_empty() {
                continue;
            }
            // Derived from the event alone (not the time it arrived): every delivery of it, at
            // once or days apart, names the same executions.
            let id_key = event_id
                .as_ref()
                .map(|id| (format!("webhook:{}:{id}", inbound.integration), chrono::DateTime::UNIX_EPOCH));
            let chosen = enablement.get(&user).cloned();
            starts.push((
                outcomes.len(),
                StartFor {
                    user_id: user,
                    event: event_type.clone(),
                    deployments: passing,
                    data: data.clone(),
                    id_key,
                    enablement: chosen,
                },
            ));
        }
        outcomes.push(outcome);
    }

    let (positions, starts): (Vec<usize>, Vec<StartFor>) = starts.into_iter().unzip();
    let planned = match starts.is_empty() {
        true => None,
        false => Some(triggers::plan_for(runner, inbound.project_id, starts).await?),
    };
    if let Some(planned) = &planned {
        for (position, report) in positions.iter().zip(&planned.reports) {
            outcomes[*position].executions.extend(report.executions.iter().map(|e| e.execution_id.clone()));
        }
    }
    let mut kept = WebhookDelivery {
        id: delivery_id.clone(),
        project_id: inbound.project_id.to_string(),
        integration: inbound.integration.to_string(),
        received_at,
        headers,
        body: text.to_string(),
        unrouted: outcomes.iter().any(|o| o.outcome == "unrouted"),
        events: outcomes,
    };
    match planned {
        None => runtime.store.put_delivery(&kept).await?,
        Some(planned) if planned.news.is_empty() => runtime.store.put_delivery(&kept).await?,
        // Where the executions are created one by one (DynamoDB), a concurrent delivery of
        // the same events may create some of them between ours: each is started on its own,
        // so that the ones this delivery created are known, and the delivery kept after.
        Some(planned) if !runtime.starter.is_atomic() => {
            let existed = start_all(runner, planned).await?;
            mark_duplicates(&mut kept, &existed);
            runtime.store.put_delivery(&kept).await?;
        }
        // The executions and the delivery in one write (SQLite: one transaction, all or none).
        Some(planned) => match start::start_many_and_keep(runner, planned.news.clone(), &kept).await {
            Ok(_) => {}
            Err(StartError::Store(StoreError::AlreadyExists(_))) => {
                // Some were started already (a concurrent delivery of the same events, or an
                // earlier one that stopped before it was kept): start the others one by one,
                // and call the events whose executions all existed duplicates.
                let existed = start_all(runner, planned).await?;
                mark_duplicates(&mut kept, &existed);
                runtime.store.put_delivery(&kept).await?;
            }
            Err(error) => return Err(error.into()),
        },
    }
    let outcomes = kept.events;
    Ok(Answer::Accepted(Accepted { delivery_id, events: outcomes }))
}

/// Calls `duplicate` each event of `kept` whose executions all `existed` before this delivery.
fn mark_duplicates(kept: &mut WebhookDelivery, existed: &HashSet<String>) {
    for outcome in &mut kept.events {
        if !outcome.executions.is_empty() && outcome.executions.iter().all(|id| existed.contains(id)) {
            outcome.outcome = "duplicate".into();
        }
    }
}

/// Starts what was planned one by one, where some were started already (their derived ids
/// are taken: a concurrent delivery of the same events, or an earlier one that stopped before
/// it was kept). The ids that existed already.
async fn start_all(runner: &Runner, planned: triggers::Planned) -> Result<HashSet<String>, WebhookError> {
    let mut existed = HashSet::new();
    for new in planned.news {
        let id = new.id.clone();
        match start::start(runner, new).await {
            Ok(_) => {}
            Err(StartError::Store(StoreError::AlreadyExists(_))) => {
                existed.insert(id);
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(existed)
}

/// Whether a webhook trigger's `filter` holds for the event (no filter: it does). A filter
/// that cannot be evaluated (a type mismatch) does not hold.
fn filter_holds(trigger: &Trigger, data: &TriggerData, user_id: &str) -> bool {
    let Trigger::Webhook { filter: Some(filter), .. } = trigger else { return true };
    let ctx = json!({
        "trigger": {
            "query": data.query,
            "headers": data.headers,
            "body": data.body,
            "payload": data.body,
            "type": data.kind,
            "event": data.event,
        },
        "user": { "id": user_id },
    });
    condition::evaluate(filter, &ctx).unwrap_or(false)
}

/// The body as JSON, or a form (`application/x-www-form-urlencoded`, Slack's slash commands
/// and interactivity) as an object of its fields, a JSON `payload` field parsed.
fn parse_body(text: &str, headers: &HeaderMap) -> Result<Value, WebhookError> {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let value = if form {
        let mut fields = Map::new();
        for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
            let value = match serde_json::from_str::<Value>(&value) {
                Ok(parsed @ Value::Object(_)) if name == "payload" => parsed,
                _ => Value::String(value.into_owned()),
            };
            fields.insert(name.into_owned(), value);
        }
        Value::Object(fields)
    } else {
        serde_json::from_str(text).map_err(|e| WebhookError::BadBody(format!("the body is not JSON: {e}")))?
    };
    if too_deep(&value) {
        return Err(WebhookError::BadBody(format!("the body nests deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(value)
}

/// The delivery's headers as kept and shown to workflows: lower-case names, the signature and
/// credential headers redacted, repeated headers joined.
fn kept_headers(headers: &HeaderMap, scheme: &Scheme) -> BTreeMap<String, String> {
    let secret = scheme.secret_headers();
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let value = if SECRET_HEADERS.contains(&name.as_str()) || secret.contains(&name) {
            "[redacted]".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        kept.entry(name).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    kept
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_headers_and_credentials_are_redacted_where_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-signature", "v0=abc".parse().expect("a test value"));
        headers.insert("authorization", "Bearer x".parse().expect("a test value"));
        headers.insert("x-slack-request-timestamp", "1".parse().expect("a test value"));
        let kept = kept_headers(&headers, &Scheme::SlackV0);
        assert_eq!(kept["x-slack-signature"], "[redacted]");
        assert_eq!(kept["authorization"], "[redacted]");
        assert_eq!(kept["x-slack-request-timestamp"], "1");
    }

    #[test]
    fn form_bodies_become_objects_with_a_parsed_payload() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/x-www-form-urlencoded".parse().expect("a test value"));
        let body = parse_body("command=%2Fdeploy&team_id=T1&payload=%7B%22type%22%3A%22block_actions%22%7D", &headers)
            .expect("a test value");
        assert_eq!(body["command"], "/deploy");
        assert_eq!(body["payload"]["type"], "block_actions");
        assert!(parse_body("{", &HeaderMap::new()).is_err());
    }

    #[test]
    fn secrets_come_from_the_environment_only() {
        let env = BTreeMap::from([("SLACK_SIGNING".to_string(), "s3".to_string())]);
        let config = IntegrationConfig { webhook_secret: Some("{{env.SLACK_SIGNING}}".into()), ..Default::default() };
        assert_eq!(secret("{{config.webhookSecret}}", &config, &env).expect("a test value"), "s3");
        assert!(secret("{{config.clientSecret}}", &config, &env).is_err());
        assert!(secret("{{env.MISSING}}", &config, &env).is_err());
        assert!(secret("literal", &config, &env).is_err());
    }
}
