//! Property tests of the parsers and evaluators that see user input: the template parser
//! and renderer, conditions, durations, the workflow loader (random and mutated files) and
//! token parsing. None may panic, and the loader stays fast on any input. `PROPTEST_CASES`
//! raises the number of cases (256 by default here) for a longer run.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_shared::condition::{ALL_OPERATORS, evaluate, op_name};
use sluice_shared::model::load::load_str;
use sluice_shared::model::{Condition, DurationSpec};
use sluice_shared::template::{self, PathExpr, Template};

const EXAMPLES: [&str; 2] = [
    include_str!("../../examples/project/integrations/custom.democrm/workflows/contact-lookup.yaml"),
    include_str!("../../examples/project/integrations/custom.democrm/workflows/lead-created.yaml"),
];

/// One signing key for every case (generating one takes a while).
static KEYS: std::sync::LazyLock<sluice_shared::auth::SigningKeyPair> =
    std::sync::LazyLock::new(|| sluice_shared::auth::generate_signing_key().expect("a signing key"));

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that looks like templates some of the time.
fn template_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        r"(\{\{|\}\}|steps|\.|trigger|body|\[|\]|[0-9]|'|x| |\||-)*",
        "\\{\\{ ?(trigger|steps|item|env|user)(\\.[a-z0-9_]{1,6}|\\[[0-9]{1,3}\\]){0,5} ?\\}\\}",
    ]
}

/// A file with a few random edits: characters replaced, removed or inserted.
fn mutated(text: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8);
    edits.prop_map(move |edits| {
        let mut chars: Vec<char> = text.chars().collect();
        for (at, kind, c) in edits {
            if chars.is_empty() {
                chars.push(c);
                continue;
            }
            let at = at.index(chars.len());
            match kind {
                0 => chars[at] = c,
                1 => {
                    chars.remove(at);
                }
                _ => chars.insert(at, c),
            }
        }
        chars.into_iter().collect()
    })
}

fn load_quickly(file: &str, text: &str) {
    let begun = Instant::now();
    let _result = load_str(file, text);
    let took = begun.elapsed();
    assert!(took < Duration::from_secs(2), "loading {} bytes took {took:?}", text.len());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn templates_parse_and_render_without_panicking(text in template_text(), ctx in json_value()) {
        if let Ok(parsed) = Template::parse(&text) {
            let _ = parsed.render(&ctx);
        }
        let _ = PathExpr::parse(&text);
        let _ = template::render(&json!({ "a": text, "b": [text] }), &ctx);
    }

    #[test]
    fn conditions_evaluate_without_panicking(
        op in prop::sample::select(ALL_OPERATORS.to_vec()),
        left in json_value(),
        right in json_value(),
        ctx in json_value(),
    ) {
        let document = json!({ "left": left, "op": op_name(op), "right": right });
        if let Ok(condition) = serde_json::from_value::<Condition>(document) {
            let _ = evaluate(&condition, &ctx);
            let _ = evaluate(&Condition::List(vec![condition.clone(), condition]), &ctx);
        }
    }

    #[test]
    fn durations_parse_without_panicking(text in prop_oneof![".{0,12}", "[0-9]{0,25}(ms|s|m|h|d|w|)", "-?[0-9.]{0,8} ?[a-z]{0,3}"]) {
        if let Ok(spec) = text.parse::<DurationSpec>() {
            let _ = spec.duration();
        }
    }

    #[test]
    fn random_documents_never_panic_the_loader(text in ".{0,400}") {
        load_quickly("random.yaml", &text);
        load_quickly("random.json", &text);
    }

    #[test]
    fn mutated_examples_never_panic_the_loader(first in mutated(EXAMPLES[0]), second in mutated(EXAMPLES[1])) {
        load_quickly("first.yaml", &first);
        load_quickly("second.yaml", &second);
    }

    #[test]
    fn tokens_and_authorization_headers_never_panic(token in ".{0,300}", header in ".{0,80}") {
        let _ = sluice_shared::auth::verify_user_token(&KEYS.public_pem, &token);
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(&header) {
            headers.insert(http::header::AUTHORIZATION, value);
            let _ = sluice_shared::auth::bearer_token(&headers);
        }
    }
}
