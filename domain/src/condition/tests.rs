use serde_json::{Value, json};

use super::*;

fn ctx() -> Value {
    json!({
        "trigger": {"query": {"source": "crm"}, "headers": {}, "body": {
            "email": "ada@example.com", "age": 42, "score": "7.5", "tags": ["a", "b", 3],
            "profile": {"plan": "pro"}, "nothing": null, "blank": "", "none": [], "empty": {},
            "yes": true, "no": "false", "when": "2026-11-23T10:00:00Z", "epoch": 1_795_428_000
        }},
        "steps": {"lookup": {"output": {"status": 200}}}
    })
}

fn cond(value: Value) -> Condition {
    serde_json::from_value(value).expect("test condition deserializes")
}

fn eval(left: Value, op: &str, right: Option<Value>) -> Result<bool, ConditionError> {
    let mut c = json!({"left": left, "op": op});
    if let Some(right) = right {
        c["right"] = right;
    }
    evaluate(&cond(c), &ctx())
}

fn check(left: Value, op: &str, right: Value) -> bool {
    eval(left.clone(), op, Some(right.clone())).unwrap_or_else(|e| panic!("{left} {op} {right}: {e}"))
}

fn check1(left: Value, op: &str) -> bool {
    eval(left.clone(), op, None).unwrap_or_else(|e| panic!("{left} {op}: {e}"))
}

fn error(left: Value, op: &str, right: Option<Value>) -> String {
    match eval(left.clone(), op, right) {
        Err(e) => e.to_string(),
        Ok(answer) => panic!("{left} {op} should fail, answered {answer}"),
    }
}

#[test]
fn all_and_lists_need_every_member_and_empty_is_true() {
    let c = ctx();
    let yes = json!({"left": 1, "op": "equals", "right": 1});
    let no = json!({"left": 1, "op": "equals", "right": 2});
    assert_eq!(evaluate(&cond(json!({"all": [yes, yes]})), &c), Ok(true));
    assert_eq!(evaluate(&cond(json!({"all": [yes, no]})), &c), Ok(false));
    assert_eq!(evaluate(&cond(json!([yes, no])), &c), Ok(false));
    assert_eq!(evaluate(&cond(json!([yes])), &c), Ok(true));
    assert_eq!(evaluate(&cond(json!({"all": []})), &c), Ok(true));
    assert_eq!(evaluate(&cond(json!([])), &c), Ok(true));
}

#[test]
fn any_needs_one_member_and_empty_is_false() {
    let c = ctx();
    let yes = json!({"left": 1, "op": "equals", "right": 1});
    let no = json!({"left": 1, "op": "equals", "right": 2});
    assert_eq!(evaluate(&cond(json!({"any": [no, yes]})), &c), Ok(true));
    assert_eq!(evaluate(&cond(json!({"any": [no, no]})), &c), Ok(false));
    assert_eq!(evaluate(&cond(json!({"any": []})), &c), Ok(false));
    assert_eq!(evaluate(&cond(json!({"all": [yes, {"any": [no, yes]}]})), &c), Ok(true));
}

#[test]
fn equals_compares_numbers_numerically_and_strings_with_scalars_by_text() {
    assert!(check(json!("{{steps.lookup.output.status}}"), "equals", json!(200)));
    assert!(check(json!(1), "equals", json!(1.0)));
    assert!(check(json!("200"), "equals", json!(200)));
    assert!(check(json!(200), "equals", json!("200")));
    assert!(check(json!("1.0"), "equals", json!(1)));
    assert!(check(json!("true"), "equals", json!(true)));
    assert!(check(json!("{{trigger.query.source}}"), "equals", json!("crm")));
    assert!(check(json!({"a": [1]}), "equals", json!({"a": [1.0]})));
    assert!(!check(json!("crm"), "equals", json!("CRM")));
    assert!(!check(json!("abc"), "equals", json!(1)));
    assert!(!check(json!(null), "equals", json!("null")));
    assert!(!check(json!(1), "equals", json!(true)));
    assert!(check(json!(1), "not_equals", json!(2)));
    assert!(!check(json!("200"), "not_equals", json!(200)));
}

#[test]
fn ordering_operators_compare_numbers_and_numeric_strings() {
    assert!(check(json!("{{trigger.body.age}}"), "greater_than", json!(41)));
    assert!(!check(json!(42), "greater_than", json!(42)));
    assert!(check(json!(42), "greater_or_equal", json!("42")));
    assert!(!check(json!(41), "greater_or_equal", json!(42)));
    assert!(check(json!("{{trigger.body.score}}"), "less_than", json!(8)));
    assert!(!check(json!(8), "less_than", json!(8)));
    assert!(check(json!(8), "less_or_equal", json!(8.0)));
    assert!(!check(json!(9), "less_or_equal", json!(8)));
}

#[test]
fn ordering_a_non_number_is_an_error_naming_operator_and_value() {
    let message = error(json!("abc"), "greater_than", Some(json!(1)));
    assert!(message.starts_with("`greater_than`"), "{message}");
    assert!(message.contains("\"abc\""), "{message}");
    let message = error(json!(1), "less_than", Some(json!([2])));
    assert!(message.contains("`less_than`") && message.contains("an array [2]"), "{message}");
}

#[test]
fn contains_looks_into_strings_arrays_and_object_keys() {
    assert!(check(json!("{{trigger.body.email}}"), "contains", json!("@example")));
    assert!(!check(json!("{{trigger.body.email}}"), "contains", json!("@other")));
    assert!(check(json!("v42"), "contains", json!(42)));
    assert!(check(json!("{{trigger.body.tags}}"), "contains", json!("b")));
    assert!(check(json!("{{trigger.body.tags}}"), "contains", json!("3")));
    assert!(!check(json!("{{trigger.body.tags}}"), "contains", json!("c")));
    assert!(check(json!("{{trigger.body.profile}}"), "contains", json!("plan")));
    assert!(!check(json!("{{trigger.body.profile}}"), "contains", json!("tier")));
    assert!(check(json!("{{trigger.body.tags}}"), "not_contains", json!("z")));
    assert!(!check(json!("abc"), "not_contains", json!("b")));
    let message = error(json!(5), "contains", Some(json!("5")));
    assert!(message.contains("`contains`") && message.contains("a number"), "{message}");
}

#[test]
fn starts_and_ends_with_compare_string_forms() {
    assert!(check(json!("{{trigger.body.email}}"), "starts_with", json!("ada")));
    assert!(!check(json!("{{trigger.body.email}}"), "starts_with", json!("bob")));
    assert!(check(json!(2026), "starts_with", json!(20)));
    assert!(check(json!("{{trigger.body.email}}"), "ends_with", json!(".com")));
    assert!(!check(json!("{{trigger.body.email}}"), "ends_with", json!(".org")));
    assert!(error(json!(["a"]), "starts_with", Some(json!("a"))).contains("`starts_with`"));
}

#[test]
fn is_in_checks_arrays_and_strings_on_the_right() {
    assert!(check(json!("crm"), "is_in", json!(["crm", "web"])));
    assert!(check(json!("200"), "is_in", json!([200, 201])));
    assert!(!check(json!("app"), "is_in", json!(["crm", "web"])));
    assert!(check(json!("pro"), "is_in", json!("pro,team")));
    assert!(check(json!("app"), "not_in", json!(["crm"])));
    assert!(!check(json!("crm"), "not_in", json!(["crm"])));
    let message = error(json!("a"), "is_in", Some(json!(3)));
    assert!(message.contains("`is_in`") && message.contains("a number"), "{message}");
}

#[test]
fn exists_uses_optional_rendering_and_counts_null_as_existing() {
    assert!(check1(json!("{{trigger.body.email}}"), "exists"));
    assert!(check1(json!("{{trigger.body.nothing}}"), "exists"));
    assert!(!check1(json!("{{trigger.body.missing}}"), "exists"));
    assert!(!check1(json!("{{steps.other.output.id}}"), "exists"));
    assert!(check1(json!("{{trigger.body.missing}}"), "not_exists"));
    assert!(!check1(json!("{{trigger.body.email}}"), "not_exists"));
}

#[test]
fn null_checks() {
    assert!(check1(json!("{{trigger.body.nothing}}"), "is_null"));
    assert!(!check1(json!("{{trigger.body.email}}"), "is_null"));
    assert!(check1(json!("{{trigger.body.email}}"), "is_not_null"));
    assert!(!check1(json!(null), "is_not_null"));
}

#[test]
fn null_empty_string_array_and_object_are_empty() {
    for path in ["nothing", "blank", "none", "empty"] {
        assert!(check1(json!(format!("{{{{trigger.body.{path}}}}}")), "is_empty"), "{path}");
        assert!(!check1(json!(format!("{{{{trigger.body.{path}}}}}")), "is_not_empty"), "{path}");
    }
    for value in [json!("x"), json!([0]), json!({"a": 1}), json!(0), json!(false)] {
        assert!(!check1(value.clone(), "is_empty"), "{value}");
        assert!(check1(value.clone(), "is_not_empty"), "{value}");
    }
}

#[test]
fn is_true_and_is_false_accept_booleans_and_their_strings() {
    assert!(check1(json!("{{trigger.body.yes}}"), "is_true"));
    assert!(check1(json!("TRUE"), "is_true"));
    assert!(!check1(json!(false), "is_true"));
    assert!(!check1(json!(1), "is_true"));
    assert!(check1(json!("{{trigger.body.no}}"), "is_false"));
    assert!(check1(json!(false), "is_false"));
    assert!(!check1(json!(true), "is_false"));
    assert!(!check1(json!(null), "is_false"));
}

#[test]
fn matches_uses_regular_expressions_and_rejects_invalid_ones() {
    assert!(check(json!("{{trigger.body.email}}"), "matches", json!("^[a-z]+@example\\.com$")));
    assert!(!check(json!("{{trigger.body.email}}"), "matches", json!("^bob@")));
    assert!(check(json!(12345), "matches", json!("^\\d+$")));
    let message = error(json!("x"), "matches", Some(json!("(unclosed")));
    assert!(message.contains("`matches`") && message.contains("not a valid regular expression"), "{message}");
    assert!(error(json!("x"), "matches", Some(json!(5))).contains("`matches`"));
}

#[test]
fn time_operators_compare_instants_across_forms() {
    assert!(check(json!("{{trigger.body.when}}"), "before", json!("2026-11-24")));
    assert!(!check(json!("{{trigger.body.when}}"), "before", json!("2026-11-23")));
    assert!(check(json!("{{trigger.body.when}}"), "after", json!("2026-11-23")));
    assert!(!check(json!("{{trigger.body.when}}"), "after", json!("2026-11-23T11:00:00+01:00")));
    assert!(check(json!("{{trigger.body.when}}"), "same_time", json!("2026-11-23T11:00:00+01:00")));
    assert!(check(json!("{{trigger.body.when}}"), "same_time", json!("{{trigger.body.epoch}}")));
    assert!(check(json!("{{trigger.body.when}}"), "same_time", json!(1_795_428_000_000_i64)));
    assert!(check(json!("2026-11-23T10:00:00"), "same_time", json!("{{trigger.body.when}}")));
    assert!(!check(json!("2026-11-23T10:00:01Z"), "same_time", json!("{{trigger.body.when}}")));
}

#[test]
fn unparsable_timestamps_are_errors() {
    let message = error(json!("next tuesday"), "before", Some(json!("2026-11-23")));
    assert!(message.contains("`before`") && message.contains("next tuesday"), "{message}");
    assert!(error(json!("2026-11-23"), "after", Some(json!(true))).contains("`after`"));
}

#[test]
fn right_null_compares_against_null() {
    // `right: null` and a missing `right` deserialize alike; the loader rejects the latter.
    assert!(check(json!("{{trigger.body.nothing}}"), "equals", json!(null)));
    assert!(!check(json!("{{trigger.body.email}}"), "equals", json!(null)));
    assert!(check(json!("{{trigger.body.email}}"), "not_equals", json!(null)));
}

#[test]
fn missing_paths_are_template_errors_outside_exists() {
    let err = eval(json!("{{trigger.body.missing}}"), "equals", Some(json!(1))).expect_err("missing");
    assert!(matches!(err, ConditionError::Template(TemplateError::MissingPath { .. })));
    assert!(err.to_string().contains("trigger.body.missing"));
    assert!(matches!(eval(json!("{{trigger.body.missing}}"), "is_null", None), Err(ConditionError::Template(_))));
}

#[test]
fn operator_names_round_trip_and_unary_set_is_exact() {
    for op in ALL_OPERATORS {
        assert_eq!(parse_op(op_name(op)), Some(op));
        let serialized = serde_json::to_value(op).expect("operator serializes");
        assert_eq!(serialized, json!(op_name(op)));
    }
    let unary: Vec<&str> = ALL_OPERATORS.into_iter().filter(|op| is_unary(*op)).map(op_name).collect();
    assert_eq!(
        unary,
        ["exists", "not_exists", "is_null", "is_not_null", "is_empty", "is_not_empty", "is_true", "is_false"]
    );
    assert_eq!(parse_op("equal"), None);
}
