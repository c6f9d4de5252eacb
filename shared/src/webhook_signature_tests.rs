//! Each scheme against its provider's published example where there is one (GitHub's,
//! Standard Webhooks'), and every way a delivery must be refused.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(*name), HeaderValue::from_str(value)) {
            map.append(name, value);
        }
    }
    map
}

fn delivery<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Delivery<'a> {
    Delivery { method: "POST", uri: "https://sluice.example/projects/p/webhooks/x", headers, body }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn githubs_published_example_verifies_and_a_changed_body_does_not() {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    let secret = "It's a Secret to Everybody";
    let signed =
        headers(&[("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")]);
    assert_eq!(verify(&Scheme::GitHubSha256, secret, &delivery(&signed, b"Hello, World!"), 0), Ok(()));
    assert_eq!(verify(&Scheme::GitHubSha256, secret, &delivery(&signed, b"Hello, World?"), 0), Err(Refused::Mismatch));
    let unprefixed =
        headers(&[("x-hub-signature-256", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")]);
    let refused = verify(&Scheme::GitHubSha256, secret, &delivery(&unprefixed, b"Hello, World!"), 0);
    assert_eq!(refused, Err(Refused::Malformed("x-hub-signature-256")));
}

#[test]
fn the_standard_webhooks_example_verifies_within_its_window_only() {
    // The example of https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let signed = headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", "v1,bm9ldGhlcnNpZ25hdHVyZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    ]);
    let at = 1_614_265_330;
    assert_eq!(
        verify(&Scheme::StandardWebhooks, secret, &delivery(&signed, body), at + 10),
        Ok(()),
        "any v1 may match"
    );
    let late = verify(&Scheme::StandardWebhooks, secret, &delivery(&signed, body), at + WINDOW_SECONDS + 1);
    assert_eq!(late, Err(Refused::Stale(WINDOW_SECONDS + 1)));
    let early = verify(&Scheme::StandardWebhooks, secret, &delivery(&signed, body), at - WINDOW_SECONDS - 1);
    assert!(matches!(early, Err(Refused::Stale(_))), "a timestamp from the future is refused too");
    assert_eq!(verify(&Scheme::StandardWebhooks, "whsec_***", &delivery(&signed, body), at), Err(Refused::BadSecret));
}

/// Slack's published example (https://docs.slack.dev/authentication/verifying-requests-from-slack,
/// "Validating a request"): a slash command's form body, its timestamp and signing secret,
/// and the signature Slack computed.
#[test]
fn slacks_published_example_verifies() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let signed = headers(&[
        ("x-slack-request-timestamp", "1531420618"),
        ("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
    ]);
    assert_eq!(verify(&Scheme::SlackV0, secret, &delivery(&signed, body), 1_531_420_618), Ok(()));
    let mut changed = body.to_vec();
    changed[6] = b'X';
    assert_eq!(verify(&Scheme::SlackV0, secret, &delivery(&signed, &changed), 1_531_420_618), Err(Refused::Mismatch));
}

#[test]
fn duplicated_signature_headers_are_refused_for_every_scheme() {
    let mut twice = HeaderMap::new();
    twice.append("x-hub-signature-256", "sha256=00".parse().expect("header"));
    twice.append("x-hub-signature-256", "sha256=11".parse().expect("header"));
    let refused = verify(&Scheme::GitHubSha256, "s", &delivery(&twice, b"{}"), 0);
    assert_eq!(refused, Err(Refused::Duplicated("x-hub-signature-256".into())));
}

#[test]
fn slack_v0_signs_the_timestamp_and_the_raw_body() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = b"token=x&team_id=T1&text=a%20b";
    let signature = format!("v0={}", hex(&sign(secret.as_bytes(), &[b"v0:1531420618:", body])));
    let signed = headers(&[("x-slack-request-timestamp", "1531420618"), ("x-slack-signature", &signature)]);
    assert_eq!(verify(&Scheme::SlackV0, secret, &delivery(&signed, body), 1_531_420_700), Ok(()));
    // The same body re-encoded (`+` for a space) is another body.
    let reencoded = b"token=x&team_id=T1&text=a+b";
    assert_eq!(verify(&Scheme::SlackV0, secret, &delivery(&signed, reencoded), 1_531_420_700), Err(Refused::Mismatch));
    assert_eq!(verify(&Scheme::SlackV0, "other", &delivery(&signed, body), 1_531_420_700), Err(Refused::Mismatch));
    assert!(matches!(
        verify(&Scheme::SlackV0, secret, &delivery(&signed, body), 1_531_430_000),
        Err(Refused::Stale(_))
    ));
    let missing = headers(&[("x-slack-signature", &signature)]);
    let refused = verify(&Scheme::SlackV0, secret, &delivery(&missing, body), 1_531_420_700);
    assert_eq!(refused, Err(Refused::Missing("x-slack-request-timestamp")));
}

#[test]
fn hubspot_v3_signs_method_uri_body_and_the_millisecond_timestamp() {
    let secret = "hs-secret";
    let body = br#"[{"eventId":1}]"#;
    fn d<'a>(h: &'a HeaderMap, body: &'a [u8]) -> Delivery<'a> {
        Delivery { method: "POST", uri: "https://sluice.example/hooks?x=1", headers: h, body }
    }
    let parts: [&[u8]; 4] = [b"POST", b"https://sluice.example/hooks?x=1", body, b"1700000000000"];
    let signature = STANDARD.encode(sign(secret.as_bytes(), &parts));
    let signed = headers(&[("x-hubspot-request-timestamp", "1700000000000"), ("x-hubspot-signature-v3", &signature)]);
    assert_eq!(verify(&Scheme::HubSpotV3, secret, &d(&signed, body), 1_700_000_100), Ok(()));
    assert!(matches!(verify(&Scheme::HubSpotV3, secret, &d(&signed, body), 1_700_000_301), Err(Refused::Stale(301))));
    let other_uri = Delivery { uri: "https://sluice.example/hooks?x=2", ..d(&signed, body) };
    assert_eq!(verify(&Scheme::HubSpotV3, secret, &other_uri, 1_700_000_100), Err(Refused::Mismatch));
}

#[test]
fn stripe_accepts_any_of_several_v1_signatures_while_secrets_rotate() {
    let body = br#"{"id":"evt_1"}"#;
    let good = hex(&sign(b"whsec_new", &[b"1700000000.", body]));
    let value = format!("t=1700000000,v1={},v1={good},v0=ignored", "ab".repeat(32));
    let signed = headers(&[("stripe-signature", &value)]);
    assert_eq!(verify(&Scheme::StripeV1, "whsec_new", &delivery(&signed, body), 1_700_000_200), Ok(()));
    assert_eq!(verify(&Scheme::StripeV1, "whsec_old", &delivery(&signed, body), 1_700_000_200), Err(Refused::Mismatch));
    assert!(matches!(
        verify(&Scheme::StripeV1, "whsec_new", &delivery(&signed, body), 1_700_000_301),
        Err(Refused::Stale(_))
    ));
    for malformed in ["v1=abc", "t=soon,v1=ab", "t=1700000000"] {
        let bad = headers(&[("stripe-signature", malformed)]);
        let refused = verify(&Scheme::StripeV1, "whsec_new", &delivery(&bad, body), 1_700_000_000);
        assert_eq!(refused, Err(Refused::Malformed("stripe-signature")), "{malformed}");
    }
}

#[test]
fn refusals_never_quote_the_secret_or_the_expected_signature() {
    let secret = "s3cr3t-signing-key";
    let signed = headers(&[("x-hub-signature-256", "sha256=00")]);
    let refused = verify(&Scheme::GitHubSha256, secret, &delivery(&signed, b"{}"), 0).expect_err("refused");
    let expected = hex(&sign(secret.as_bytes(), &[b"{}"]));
    let text = refused.to_string();
    assert!(!text.contains(secret) && !text.contains(&expected), "{text}");
}
