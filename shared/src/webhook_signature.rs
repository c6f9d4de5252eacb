//! Verifying that a webhook delivery comes from its provider: the signature schemes the
//! providers document, each checked on the raw body exactly as received.
//!
//! Invariants: signatures are compared in constant time; a missing or malformed signature
//! header, a signature that does not match, or a timestamp outside the scheme's window is
//! refused with a reason that never quotes the secret or the expected signature; nothing here
//! parses or re-encodes the body.

use crate::model::webhook::SignedPart;
use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

/// How long a signed timestamp stays acceptable, either way, unless the scheme says otherwise.
pub const WINDOW_SECONDS: i64 = 5 * 60;

/// A signature scheme a provider documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// Slack's v0 (https://docs.slack.dev/authentication/verifying-requests-from-slack):
    /// `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">` with
    /// `X-Slack-Request-Timestamp` (seconds) within five minutes.
    SlackV0,
    /// HubSpot's v3 (https://developers.hubspot.com/docs/api/webhooks/validating-requests):
    /// `X-HubSpot-Signature-v3: <base64 HMAC-SHA256 of method + URI + body + timestamp>` with
    /// `X-HubSpot-Request-Timestamp` (milliseconds) at most five minutes old.
    HubSpotV3,
    /// Stripe's (https://docs.stripe.com/webhooks#verify-manually): `Stripe-Signature:
    /// t=<seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">` — several `v1` while secrets rotate,
    /// any one matching — within 300 seconds.
    StripeV1,
    /// GitHub's (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; no timestamp.
    GitHubSha256,
    /// Standard Webhooks (https://www.standardwebhooks.com/): `webhook-signature: v1,<base64
    /// HMAC-SHA256 of "{id}.{timestamp}.{body}">` (several, space-separated) with `webhook-id`
    /// and `webhook-timestamp` (seconds) within five minutes; the secret is `whsec_<base64>`.
    StandardWebhooks,
    /// A custom integration's own HMAC-SHA256 (`webhooks.verify.scheme: hmac`).
    Hmac(HmacScheme),
}

/// A generic HMAC-SHA256 signature: where it is, how it is written and what is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    /// The signature's header, lower case.
    pub header: String,
    /// What the header's value starts with before the signature (`sha256=`).
    pub prefix: String,
    pub base64: bool,
    /// The signed string's parts.
    pub signed: Vec<SignedPart>,
    /// The signed timestamp's header (lower case) and whether it counts milliseconds.
    pub timestamp: Option<(String, bool)>,
}

/// What a provider sent, as received.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub method: &'a str,
    /// The URI the provider called, as it signed it (HubSpot signs scheme, host, path and query).
    pub uri: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the `{0}` header is missing")]
    Missing(&'static str),
    #[error("the `{0}` header is malformed")]
    Malformed(&'static str),
    #[error("the signed timestamp is {0} s away from now, outside the {WINDOW_SECONDS} s window")]
    Stale(i64),
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signing secret is not in the scheme's format")]
    BadSecret,
    #[error("the `{0}` header is sent more than once")]
    Duplicated(String),
}

/// Checks `delivery` against `secret` under `scheme`, at `now` (Unix seconds).
pub fn verify(scheme: &Scheme, secret: &str, delivery: &Delivery, now: i64) -> Result<(), Refused> {
    for name in scheme.headers() {
        if delivery.headers.get_all(name.as_str()).iter().count() > 1 {
            return Err(Refused::Duplicated(name));
        }
    }
    match scheme {
        Scheme::SlackV0 => {
            let timestamp = header(delivery, "x-slack-request-timestamp")?;
            fresh(parse_seconds(timestamp, "x-slack-request-timestamp")?, now)?;
            let signature = header(delivery, "x-slack-signature")?;
            let hex = signature.strip_prefix("v0=").ok_or(Refused::Malformed("x-slack-signature"))?;
            let expected = sign(secret.as_bytes(), &[b"v0:", timestamp.as_bytes(), b":", delivery.body]);
            matches_hex(&expected, hex)
        }
        Scheme::HubSpotV3 => {
            let timestamp = header(delivery, "x-hubspot-request-timestamp")?;
            let millis: i64 = timestamp.parse().map_err(|_| Refused::Malformed("x-hubspot-request-timestamp"))?;
            let age = now - millis / 1000;
            if age > WINDOW_SECONDS {
                return Err(Refused::Stale(age));
            }
            let signature = header(delivery, "x-hubspot-signature-v3")?;
            let parts = [delivery.method.as_bytes(), delivery.uri.as_bytes(), delivery.body, timestamp.as_bytes()];
            matches_base64(&sign(secret.as_bytes(), &parts), signature, "x-hubspot-signature-v3")
        }
        Scheme::StripeV1 => {
            let value = header(delivery, "stripe-signature")?;
            let mut timestamp = None;
            let mut candidates = Vec::new();
            for part in value.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => timestamp = Some(t),
                    Some(("v1", signature)) => candidates.push(signature),
                    _ => {}
                }
            }
            let timestamp = timestamp.ok_or(Refused::Malformed("stripe-signature"))?;
            fresh(parse_seconds(timestamp, "stripe-signature")?, now)?;
            let expected = sign(secret.as_bytes(), &[timestamp.as_bytes(), b".", delivery.body]);
            any_matches(candidates.into_iter().map(|hex| matches_hex(&expected, hex)), "stripe-signature")
        }
        Scheme::GitHubSha256 => {
            let signature = header(delivery, "x-hub-signature-256")?;
            let hex = signature.strip_prefix("sha256=").ok_or(Refused::Malformed("x-hub-signature-256"))?;
            matches_hex(&sign(secret.as_bytes(), &[delivery.body]), hex)
        }
        Scheme::StandardWebhooks => {
            let key = secret.strip_prefix("whsec_").unwrap_or(secret);
            let key = STANDARD.decode(key).map_err(|_| Refused::BadSecret)?;
            let id = header(delivery, "webhook-id")?;
            let timestamp = header(delivery, "webhook-timestamp")?;
            fresh(parse_seconds(timestamp, "webhook-timestamp")?, now)?;
            let expected = sign(&key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", delivery.body]);
            let signatures = header(delivery, "webhook-signature")?;
            let candidates = signatures.split(' ').filter_map(|s| s.strip_prefix("v1,"));
            any_matches(candidates.map(|b64| matches_base64(&expected, b64, "webhook-signature")), "webhook-signature")
        }
        Scheme::Hmac(hmac) => {
            let signature = named_header(delivery, &hmac.header)?;
            let timestamp = match &hmac.timestamp {
                Some((name, millis)) => {
                    let text = named_header(delivery, name)?;
                    let value: i64 = text.parse().map_err(|_| Refused::Malformed("timestamp"))?;
                    fresh(if *millis { value / 1000 } else { value }, now)?;
                    Some(text)
                }
                None => None,
            };
            let mut parts: Vec<Vec<u8>> = Vec::with_capacity(hmac.signed.len());
            for part in &hmac.signed {
                parts.push(match part {
                    SignedPart::Literal(text) => text.as_bytes().to_vec(),
                    SignedPart::Body => delivery.body.to_vec(),
                    SignedPart::Timestamp => timestamp.unwrap_or_default().as_bytes().to_vec(),
                    SignedPart::Method => delivery.method.as_bytes().to_vec(),
                    SignedPart::Url => delivery.uri.as_bytes().to_vec(),
                    SignedPart::Header(name) => named_header(delivery, name)?.as_bytes().to_vec(),
                });
            }
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let expected = sign(secret.as_bytes(), &parts);
            let given = signature.strip_prefix(hmac.prefix.as_str()).ok_or(Refused::Mismatch)?;
            if hmac.base64 { matches_base64(&expected, given, "signature") } else { matches_hex(&expected, given) }
        }
    }
}

impl Scheme {
    /// The headers the scheme reads (each must be sent at most once).
    pub fn headers(&self) -> Vec<String> {
        let names: &[&str] = match self {
            Scheme::SlackV0 => &["x-slack-request-timestamp", "x-slack-signature"],
            Scheme::HubSpotV3 => &["x-hubspot-request-timestamp", "x-hubspot-signature-v3"],
            Scheme::StripeV1 => &["stripe-signature"],
            Scheme::GitHubSha256 => &["x-hub-signature-256"],
            Scheme::StandardWebhooks => &["webhook-id", "webhook-timestamp", "webhook-signature"],
            Scheme::Hmac(hmac) => {
                let mut names = vec![hmac.header.clone()];
                names.extend(hmac.timestamp.iter().map(|(name, _)| name.clone()));
                names.extend(hmac.signed.iter().filter_map(|part| match part {
                    SignedPart::Header(name) => Some(name.clone()),
                    _ => None,
                }));
                return names;
            }
        };
        names.iter().map(|name| name.to_string()).collect()
    }

    /// The headers that carry signatures (redacted where deliveries are kept).
    pub fn secret_headers(&self) -> Vec<String> {
        match self {
            Scheme::SlackV0 => vec!["x-slack-signature".into()],
            Scheme::HubSpotV3 => vec!["x-hubspot-signature-v3".into(), "x-hubspot-signature".into()],
            Scheme::StripeV1 => vec!["stripe-signature".into()],
            Scheme::GitHubSha256 => vec!["x-hub-signature-256".into(), "x-hub-signature".into()],
            Scheme::StandardWebhooks => vec!["webhook-signature".into()],
            Scheme::Hmac(hmac) => vec![hmac.header.clone()],
        }
    }
}

fn named_header<'a>(delivery: &Delivery<'a>, name: &str) -> Result<&'a str, Refused> {
    let value = delivery.headers.get(name).ok_or(Refused::Missing("signature"))?;
    value.to_str().map(str::trim).map_err(|_| Refused::Malformed("signature"))
}

fn header<'a>(delivery: &Delivery<'a>, name: &'static str) -> Result<&'a str, Refused> {
    let value = delivery.headers.get(name).ok_or(Refused::Missing(name))?;
    value.to_str().map(str::trim).map_err(|_| Refused::Malformed(name))
}

fn parse_seconds(text: &str, name: &'static str) -> Result<i64, Refused> {
    text.parse().map_err(|_| Refused::Malformed(name))
}

fn fresh(timestamp: i64, now: i64) -> Result<(), Refused> {
    let age = now.saturating_sub(timestamp);
    if age.abs() > WINDOW_SECONDS { Err(Refused::Stale(age)) } else { Ok(()) }
}

fn sign(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    context.sign().as_ref().to_vec()
}

fn matches_hex(expected: &[u8], hex: &str) -> Result<(), Refused> {
    let given = decode_hex(hex).ok_or(Refused::Mismatch)?;
    constant_time::verify_slices_are_equal(expected, &given).map_err(|_| Refused::Mismatch)
}

fn matches_base64(expected: &[u8], text: &str, name: &'static str) -> Result<(), Refused> {
    let given = STANDARD.decode(text.trim()).map_err(|_| Refused::Malformed(name))?;
    constant_time::verify_slices_are_equal(expected, &given).map_err(|_| Refused::Mismatch)
}

/// Ok if any candidate matched; a header with no candidate at all is malformed.
fn any_matches(results: impl Iterator<Item = Result<(), Refused>>, name: &'static str) -> Result<(), Refused> {
    let mut seen = false;
    for result in results {
        seen = true;
        if result.is_ok() {
            return Ok(());
        }
    }
    if seen { Err(Refused::Mismatch) } else { Err(Refused::Malformed(name)) }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
#[path = "webhook_signature_tests.rs"]
mod tests;
