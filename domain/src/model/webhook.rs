//! How an integration receives webhooks (`webhooks:` in a built-in's catalog entry or a custom
//! integration's `config.yaml`): how a delivery is verified, which handshake it answers, where
//! its events, their type, their id and the connected user they are for are found.
//!
//! Paths are dotted (`event.type`, `events.0.id`) into one event; the body of a delivery is one
//! event unless `events` names where its list of events is (`.` when the body itself is one).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An integration's webhook declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    pub verify: Verification,
    /// A handshake the provider sends (Slack's `url_verification`): answered with the value it
    /// asks to be echoed, after the signature is verified; it starts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
    /// Where the list of events is in the body (`.`: the body is the list, as HubSpot sends
    /// them); absent: the body is one event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<String>,
    /// The event's type, what `trigger: {type: webhook, event: ...}` matches: the first of
    /// these paths the event has.
    pub event_type: Paths,
    /// The provider's id of the event, what redeliveries are recognised by (7 days): the
    /// values at these paths, joined by `:` (HubSpot's `eventId` alone is not unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Paths>,
    /// Which connected user an event is for: the identity key kept with their connection
    /// (`team` for Slack) and where the event names its value (`team_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityRoute>,
    /// Events to acknowledge and drop (Slack's `app_rate_limited` notices): path → values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ignore: BTreeMap<String, Vec<Value>>,
}

/// The signature scheme and its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verification {
    pub scheme: SchemeName,
    /// `{{env.NAME}}` (the deployment's environment), or `{{config.webhookSecret}}` /
    /// `{{config.clientSecret}}` (the integration's config key, itself `{{env.NAME}}`). Never
    /// a literal: no secret in a file you commit.
    pub secret: String,
    /// `hmac` only: the header carrying the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac` only: what the signature header starts with before the signature (`sha256=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `hmac` only: how the signature is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `hmac` only: the signed string, with `{body}`, `{timestamp}`, `{method}`, `{url}` and
    /// `{header:Name}` placeholders (default `{body}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<String>,
    /// `hmac` only: the header with the signed timestamp; when set, a timestamp more than five
    /// minutes from now is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// `hmac` only: the unit of that timestamp (default seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_unit: Option<TimestampUnit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    SlackV0,
    HubspotV3,
    StripeV1,
    GithubSha256,
    StandardWebhooks,
    Hmac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    Seconds,
    Milliseconds,
}

/// A handshake: when every `when` path of the body has one of its values, the answer is the
/// value at `echo`, as plain text or in a JSON object under `field`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Challenge {
    pub when: BTreeMap<String, Vec<Value>>,
    pub echo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Routing: the connection identity key and where the event holds its value (the first of
/// the paths it has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityRoute {
    pub key: String,
    pub path: Paths,
}

/// One dotted path, or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Paths::One(path) => vec![path.as_str()],
            Paths::Many(paths) => paths.iter().map(String::as_str).collect(),
        }
    }

    /// The first path's scalar value the event has, as text.
    pub fn first(&self, event: &Value) -> Option<String> {
        self.list().into_iter().find_map(|path| at(event, path).and_then(scalar_text))
    }

    /// Every path's scalar value, joined by `:`; None unless every path has one.
    pub fn joined(&self, event: &Value) -> Option<String> {
        let values: Option<Vec<String>> =
            self.list().into_iter().map(|path| at(event, path).and_then(scalar_text)).collect();
        values.filter(|v| !v.is_empty()).map(|v| v.join(":"))
    }
}

/// The value at dotted `path` of `value` (`.` or empty: the value itself); array indexes are
/// numbers.
pub fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() || path == "." {
        return Some(value);
    }
    path.split('.').try_fold(value, |value, part| match value {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A scalar as the text it is matched and routed by (`T123`, `62515`); None for objects,
/// arrays and null.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

impl WebhookSpec {
    /// Whether `body` is the handshake, and what answers it.
    pub fn challenge_answer(&self, body: &Value) -> Option<Result<ChallengeAnswer, String>> {
        let challenge = self.challenge.as_ref()?;
        let applies = challenge.when.iter().all(|(path, values)| at(body, path).is_some_and(|v| values.contains(v)));
        if !applies {
            return None;
        }
        let Some(echo) = at(body, &challenge.echo).and_then(scalar_text).filter(|text| !text.is_empty()) else {
            return Some(Err(format!("the handshake has no `{}` to answer with", challenge.echo)));
        };
        Some(Ok(match &challenge.field {
            Some(field) => ChallengeAnswer::Json(serde_json::json!({ field.as_str(): echo })),
            None => ChallengeAnswer::Text(echo),
        }))
    }

    /// The events of a delivery's body, or why it holds none that can be read.
    pub fn split<'a>(&self, body: &'a Value) -> Result<Vec<&'a Value>, String> {
        match &self.events {
            None => Ok(vec![body]),
            Some(path) => match at(body, path) {
                Some(Value::Array(events)) => Ok(events.iter().collect()),
                _ => Err(format!("the body has no list of events at `{path}`")),
            },
        }
    }

    /// Whether `event` is one to drop unseen.
    pub fn ignored(&self, event: &Value) -> bool {
        !self.ignore.is_empty()
            && self.ignore.iter().all(|(path, values)| at(event, path).is_some_and(|v| values.contains(v)))
    }

    /// Problems with the declaration, as `(path under webhooks, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let verify = &self.verify;
        let secret_ok = is_env_template(&verify.secret)
            || verify.secret == "{{config.webhookSecret}}"
            || verify.secret == "{{config.clientSecret}}";
        if !secret_ok {
            problems.push((
                "verify.secret".to_string(),
                "must be exactly `{{env.NAME}}` (or `{{config.webhookSecret}}`): no secret in a file you commit"
                    .to_string(),
            ));
        }
        let hmac_only = [
            ("header", verify.header.is_some()),
            ("prefix", verify.prefix.is_some()),
            ("encoding", verify.encoding.is_some()),
            ("signed", verify.signed.is_some()),
            ("timestampHeader", verify.timestamp_header.is_some()),
            ("timestampUnit", verify.timestamp_unit.is_some()),
        ];
        if verify.scheme == SchemeName::Hmac {
            match &verify.header {
                None => {
                    problems.push(("verify.header".into(), "the `hmac` scheme needs the signature's header".into()))
                }
                Some(name) if http_header_name(name).is_none() => {
                    problems.push(("verify.header".into(), format!("`{name}` is not a header name")))
                }
                Some(_) => {}
            }
            if let Some(name) = verify.timestamp_header.as_deref().filter(|name| http_header_name(name).is_none()) {
                problems.push(("verify.timestampHeader".into(), format!("`{name}` is not a header name")));
            }
            if let Some(signed) = &verify.signed
                && let Err(message) = signed_parts(signed)
            {
                problems.push(("verify.signed".into(), message));
            }
            if verify.signed.as_deref().is_some_and(|s| s.contains("{timestamp}")) && verify.timestamp_header.is_none()
            {
                problems.push(("verify.signed".into(), "`{timestamp}` needs `timestampHeader`".into()));
            }
        } else {
            for (key, set) in hmac_only {
                if set {
                    problems.push((format!("verify.{key}"), "only the `hmac` scheme takes this".into()));
                }
            }
        }
        if let Some(identity) = &self.identity
            && (identity.key.is_empty() || !identity.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            problems.push(("identity.key".into(), "an identity key is `[A-Za-z0-9_]`".into()));
        }
        if self.event_type.list().iter().all(|path| path.is_empty()) {
            problems.push(("eventType".into(), "must name where the event's type is".into()));
        }
        problems
    }
}

/// What a handshake is answered with.
#[derive(Debug, Clone, PartialEq)]
pub enum ChallengeAnswer {
    Text(String),
    Json(Value),
}

/// One part of an `hmac` scheme's signed string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    Literal(String),
    Body,
    Timestamp,
    Method,
    Url,
    Header(String),
}

/// The parts of a signed-string template, or why it is not one.
pub fn signed_parts(template: &str) -> Result<Vec<SignedPart>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(SignedPart::Literal(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err("a `{` is not closed".to_string());
        };
        let name = &rest[open + 1..open + close];
        parts.push(match name {
            "body" => SignedPart::Body,
            "timestamp" => SignedPart::Timestamp,
            "method" => SignedPart::Method,
            "url" => SignedPart::Url,
            other => match other.strip_prefix("header:").and_then(http_header_name) {
                Some(header) => SignedPart::Header(header),
                None => {
                    return Err(format!(
                        "`{{{other}}}` is not a placeholder (use {{body}}, {{timestamp}}, {{method}}, {{url}} or {{header:Name}})"
                    ));
                }
            },
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(SignedPart::Literal(rest.to_string()));
    }
    if !parts.contains(&SignedPart::Body) {
        return Err("the signed string must include `{body}`".to_string());
    }
    Ok(parts)
}

/// A header name in lower case, if `name` is one (RFC 9110 token characters).
pub fn http_header_name(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    valid.then(|| name.to_ascii_lowercase())
}

fn is_env_template(text: &str) -> bool {
    text.strip_prefix("{{env.")
        .and_then(|rest| rest.strip_suffix("}}"))
        .is_some_and(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slack() -> WebhookSpec {
        serde_yaml_ng::from_str(
            r#"
verify: { scheme: slack_v0, secret: "{{config.webhookSecret}}" }
challenge: { when: { type: [url_verification] }, echo: challenge, field: challenge }
eventType: event.type
eventId: event_id
identity: { key: team, path: team_id }
ignore: { type: [app_rate_limited] }
"#,
        )
        .expect("slack spec")
    }

    #[test]
    fn a_handshake_echoes_its_value_and_one_without_it_is_refused() {
        let spec = slack();
        let answer = spec.challenge_answer(&json!({"type": "url_verification", "challenge": "abc"}));
        assert_eq!(answer, Some(Ok(ChallengeAnswer::Json(json!({"challenge": "abc"})))));
        assert!(matches!(spec.challenge_answer(&json!({"type": "url_verification"})), Some(Err(_))));
        assert_eq!(spec.challenge_answer(&json!({"type": "event_callback"})), None);
    }

    #[test]
    fn events_are_split_where_declared() {
        let mut spec = slack();
        let body = json!([{"id": 1}, {"id": 2}]);
        assert_eq!(spec.split(&body).expect("a test value").len(), 1);
        spec.events = Some(".".into());
        assert_eq!(spec.split(&body).expect("a test value").len(), 2);
        spec.events = Some("items".into());
        assert!(spec.split(&body).is_err());
        assert!(spec.ignored(&json!({"type": "app_rate_limited"})));
        assert!(!spec.ignored(&json!({"type": "event_callback"})));
    }

    #[test]
    fn a_literal_secret_and_misplaced_hmac_keys_are_problems() {
        let mut spec = slack();
        assert!(spec.problems().is_empty(), "{:?}", spec.problems());
        spec.verify.secret = "abc123".into();
        spec.verify.header = Some("X-Sig".into());
        let paths: Vec<String> = spec.problems().into_iter().map(|(path, _)| path).collect();
        assert_eq!(paths, ["verify.secret", "verify.header"]);
        spec.verify = Verification {
            scheme: SchemeName::Hmac,
            secret: "{{env.ACME}}".into(),
            header: None,
            prefix: None,
            encoding: None,
            signed: Some("{timestamp}.{nope}".into()),
            timestamp_header: None,
            timestamp_unit: None,
        };
        let paths: Vec<String> = spec.problems().into_iter().map(|(path, _)| path).collect();
        assert_eq!(paths, ["verify.header", "verify.signed", "verify.signed"]);
    }

    #[test]
    fn signed_templates_parse_into_parts() {
        assert_eq!(
            signed_parts("{timestamp}.{body}").expect("a test value"),
            vec![SignedPart::Timestamp, SignedPart::Literal(".".into()), SignedPart::Body]
        );
        assert_eq!(
            signed_parts("{method}{url}{header:X-Id}:{body}").expect("a test value")[2],
            SignedPart::Header("x-id".into())
        );
        assert!(signed_parts("{timestamp}").is_err());
        assert!(signed_parts("{body").is_err());
    }

    #[test]
    fn paths_read_objects_and_arrays() {
        let value = json!({"a": [{"b": 7}]});
        assert_eq!(at(&value, "a.0.b"), Some(&json!(7)));
        assert_eq!(at(&value, "."), Some(&value));
        assert_eq!(at(&value, "a.x"), None);
        assert_eq!(scalar_text(&json!(62515)), Some("62515".into()));
        assert_eq!(scalar_text(&json!({})), None);
    }
}
