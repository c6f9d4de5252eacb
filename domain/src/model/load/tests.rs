//! Validation tests: what is reported, where, and in which words.

use super::tests_docs::full_example;
use super::*;
use crate::model::{Condition, Method, StepKind, Trigger};

pub(super) fn problems(yaml: &str) -> Vec<(String, String)> {
    match load_str("wf.yaml", yaml) {
        Ok(workflow) => panic!("expected problems, loaded {workflow:?}"),
        Err(found) => {
            assert!(found.iter().all(|p| p.file == "wf.yaml"));
            found.into_iter().map(|p| (p.path, p.message)).collect()
        }
    }
}

/// Asserts that exactly these (path, keyword) problems were reported, in any order.
pub(super) fn assert_problems(yaml: &str, expected: &[(&str, &str)]) {
    let found = problems(yaml);
    for (path, word) in expected {
        assert!(
            found.iter().any(|(p, m)| p == path && m.contains(word)),
            "missing problem at `{path}` containing `{word}`; found:\n{found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "unexpected problems:\n{found:#?}");
}

pub(super) fn steps_yaml(steps: &str) -> String {
    format!("id: wf\ntrigger: {{ type: request }}\nsteps:\n{steps}")
}

#[test]
fn the_documented_example_loads() {
    let workflow = load_str("lead-created.yaml", &full_example()).expect("the documented example is valid");
    assert_eq!(workflow.id, "lead-created");
    assert_eq!(workflow.name.as_deref(), Some("Lead created"));
    let Trigger::Request { validate: Some(validate), .. } = &workflow.trigger else { panic!("request trigger") };
    assert_eq!(validate.query.as_ref().map(|q| q.required.clone()), Some(vec!["source".to_string()]));
    assert_eq!(validate.headers.get("x-source").map(String::as_str), Some("crm"));
    assert_eq!(workflow.steps.len(), 3);
    let StepKind::Request(lookup) = &workflow.steps[0].kind else { panic!("request step") };
    assert_eq!(lookup.method, Method::Get);
    assert_eq!(lookup.timeout.as_ref().map(|t| t.duration().as_secs()), Some(10));
    assert_eq!(workflow.steps[0].retries, 3);
    let StepKind::Conditional(route) = &workflow.steps[1].kind else { panic!("conditional step") };
    assert!(matches!(&route.when, Condition::All { all } if all.len() == 2));
    assert!(workflow.has_response_step());
}

#[test]
fn a_file_with_many_mistakes_reports_every_one_with_its_path() {
    let yaml = r#"
id: Lead_Created
nmae: typo
trigger:
  type: request
  validate:
    headers: { x-version: 2 }
    body: { age: int }
    query: { required: source }
steps:
  - id: lookup
    type: request
    method: post
    url: "https://api.example.com/{{trigger.bdy.id}}"
    urll: x
    timeout: 20m
    retries: 11
    retry_delay: soon
    continue_on_failure: "no"
  - id: lookup
    type: request
    url: ftp://example.com
    headers: { authorization: "Bearer {{secrets.key}}" }
    body: { nested: ["{{steps.reply.output.id}}", "{{steps.ghost.output}}", "{{ oops"] }
  - type: response
    status: 700
  - id: route
    type: conditional
    when:
      all:
        - { left: "{{steps.lookup.output.status}}", op: eq, right: 200 }
        - { left: "{{trigger.body.x}}", op: exists, right: true }
        - { left: "{{trigger.body.x}}", op: greater_than }
        - { left: "{{trigger.body.x}}", op: matches, right: "(" }
        - { op: equals, right: 1 }
      any: []
    then: {}
  - id: reply
    type: response
    status: "201"
    headers: { x-count: 3 }
  - id: fan
    type: fan_out
  - id: wait
    type: delay
"#;
    assert_problems(
        yaml,
        &[
            ("nmae", "unknown key `nmae`"),
            ("id", "not a valid workflow id"),
            ("trigger.validate.headers.x-version", "must be a string"),
            ("trigger.validate.body.age", "`int` is not a JSON type"),
            ("trigger.validate.query.required", "must be a list"),
            ("steps[0].method", "must be uppercase: write `POST`"),
            ("steps[0].url", "`trigger.bdy` does not exist"),
            ("steps[0].urll", "unknown key `urll`"),
            ("steps[0].timeout", "at most 15m"),
            ("steps[0].retries", "from 0 to 10"),
            ("steps[0].retry_delay", "not a duration"),
            ("steps[0].continue_on_failure", "true or false"),
            ("steps[1].id", "already used at steps[0].id"),
            ("steps[1].url", "http:// or https://"),
            ("steps[1].headers.authorization", "unknown variable `secrets`"),
            ("steps[1].body.nested[0]", "step `reply` does not run before `lookup`"),
            ("steps[1].body.nested[1]", "no step `ghost`"),
            ("steps[1].body.nested[2]", "never closed"),
            ("steps[2].id", "`id` is required"),
            ("steps[2].status", "200 to 599"),
            ("steps[3].when", "exactly one key"),
            ("steps[3].when.all[0].op", "unknown operator `eq`"),
            ("steps[3].when.all[1].right", "`exists` takes no `right`"),
            ("steps[3].when.all[2].right", "`greater_than` needs a `right`"),
            ("steps[3].when.all[3].right", "not a valid regular expression"),
            ("steps[3].when.all[4].left", "`left` is required"),
            ("steps[3].then", "must be a list of steps"),
            ("steps[4].status", "without quotes"),
            ("steps[4].headers.x-count", "must be a string"),
            ("steps[5].over", "`over` is required"),
            ("steps[5].steps", "`steps` is required"),
            ("steps[6]", "a delay needs `for`"),
        ],
    );
}

#[test]
fn problems_display_file_path_and_message() {
    let problem = Problem { file: "a.yaml".into(), path: "steps[2].url".into(), message: "`url` is required".into() };
    assert_eq!(problem.to_string(), "a.yaml: steps[2].url: `url` is required");
    let problem = Problem { file: "a.yaml".into(), path: String::new(), message: "bad".into() };
    assert_eq!(problem.to_string(), "a.yaml: bad");
}

#[test]
fn missing_top_level_parts_are_reported() {
    assert_problems(
        "name: x\n",
        &[("id", "`id` is required"), ("trigger", "`trigger` is required"), ("steps", "`steps` is required")],
    );
    assert_problems("- 1\n", &[("", "top level must be a mapping")]);
    assert_problems("", &[("", "top level must be a mapping")]);
    assert_problems("id: wf\ntrigger: { type: request }\nsteps: []\n", &[("steps", "at least one step")]);
    assert_problems("id: wf\ntrigger: { type: request }\nsteps: {}\n", &[("steps", "must be a list of steps")]);
}

#[test]
fn workflow_ids_are_limited_to_64_characters() {
    let long = "a".repeat(65);
    assert_problems(
        &format!("id: {long}\ntrigger: {{ type: request }}\nsteps: [{{ id: r, type: response }}]\n"),
        &[("id", "at most 64")],
    );
    let ok = "a".repeat(64);
    assert!(
        load_str("wf.yaml", &format!("id: {ok}\ntrigger: {{ type: request }}\nsteps: [{{ id: r, type: response }}]\n"))
            .is_ok()
    );
}

#[test]
fn unknown_trigger_types_are_listed() {
    let with = |t: &str| format!("id: wf\ntrigger: {{ type: {t} }}\nsteps: [{{ id: r, type: response }}]\n");
    assert_problems(
        &with("cron"),
        &[(
            "trigger.type",
            "unknown trigger type `cron` (valid: request, app_event, integration_enabled, oauth_connected, webhook, schedule, poll)",
        )],
    );
    assert_problems(
        "id: wf\ntrigger: {}\nsteps: [{ id: r, type: response }]\n",
        &[("trigger.type", "`type` is required")],
    );
}

#[test]
fn app_event_connection_and_method_triggers_load_and_their_mistakes_are_reported() {
    let with = |t: &str| format!("id: wf\ntrigger: {t}\nsteps: [{{ id: r, type: response }}]\n");
    let load = |t: &str| load_str("wf.yaml", &with(t)).expect("loads").trigger;
    assert_eq!(
        load("{ type: app_event, event: Contact Created }"),
        Trigger::AppEvent { event: "Contact Created".into() }
    );
    assert_eq!(load("{ type: integration_enabled }"), Trigger::IntegrationEnabled);
    assert_eq!(load("{ type: oauth_connected }"), Trigger::OauthConnected);
    let Trigger::Request { method, .. } =
        load("{ type: request, method: GET, validate: { query: { required: [q] } } }")
    else {
        panic!("a request trigger")
    };
    assert_eq!(method, crate::model::TriggerMethod::Get);
    let Trigger::Request { method, .. } = load("{ type: request }") else { panic!("a request trigger") };
    assert_eq!(method, crate::model::TriggerMethod::Post, "POST by default");
    assert_problems(&with("{ type: app_event }"), &[("trigger.event", "`event` is required")]);
    assert_problems(&with("{ type: app_event, event: 7 }"), &[("trigger.event", "must be")]);
    assert_problems(&with("{ type: app_event, event: \"a\\u0007b\" }"), &[("trigger.event", "control characters")]);
    assert_problems(&with("{ type: app_event, event: \" padded\" }"), &[("trigger.event", "blanks")]);
    assert_problems(
        &with(&format!("{{ type: app_event, event: {} }}", "e".repeat(129))),
        &[("trigger.event", "1 to 128")],
    );
    assert_problems(&with("{ type: app_event, event: X, validate: {} }"), &[("trigger.validate", "unknown")]);
    assert_problems(&with("{ type: integration_enabled, event: X }"), &[("trigger.event", "unknown")]);
    assert_problems(&with("{ type: request, method: TRACE }"), &[("trigger.method", "not a trigger method")]);
    assert_problems(&with("{ type: request, method: get }"), &[("trigger.method", "not a trigger method")]);
}

#[test]
fn unknown_step_types_list_the_known_ones_and_every_type_is_supported() {
    assert_problems(
        &steps_yaml("  - { id: a, type: email }\n  - { id: b, type: function }\n  - { id: c }\n"),
        &[
            (
                "steps[0].type",
                "unknown step type `email` (known: request, conditional, response, function, fan_out, delay, action)",
            ),
            ("steps[1].code", "`code` is required"),
            ("steps[2].type", "`type` is required"),
        ],
    );
}

#[test]
fn invalid_step_ids_and_unknown_methods_are_reported() {
    assert_problems(
        &steps_yaml(
            "  - { id: -a, type: request, url: 'https://x', method: FETCH }\n  - { id: 'b c', type: response }\n",
        ),
        &[
            ("steps[0].id", "not a valid step id"),
            ("steps[0].method", "unknown method `FETCH`"),
            ("steps[1].id", "not a valid step id"),
        ],
    );
}

#[test]
fn duplicate_step_ids_across_branches_are_reported_at_the_second_use() {
    let yaml = steps_yaml(
        r#"  - id: route
    type: conditional
    when: { left: 1, op: equals, right: 1 }
    then:
      - { id: call, type: request, url: "https://a" }
    else:
      - { id: call, type: request, url: "https://b" }
  - { id: route, type: response }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].else[0].id", "step id `call` is already used at steps[0].then[0].id"),
            ("steps[1].id", "step id `route` is already used at steps[0].id"),
        ],
    );
}

#[test]
fn references_to_later_steps_and_to_the_step_itself_are_rejected() {
    let yaml = steps_yaml(
        r#"  - { id: first, type: request, url: "https://a/{{steps.second.output.body.id}}" }
  - { id: second, type: request, url: "https://a/{{steps.second.output.body.id}}" }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].url", "step `second` does not run before `first`"),
            ("steps[1].url", "a step cannot use its own output"),
        ],
    );
}

#[test]
fn references_into_the_other_branch_or_own_branches_from_when_are_rejected() {
    let yaml = steps_yaml(
        r#"  - id: route
    type: conditional
    when: { left: "{{steps.yes.output.status}}", op: equals, right: 200 }
    then:
      - { id: yes, type: request, url: "https://a" }
    else:
      - { id: no, type: response, body: "{{steps.yes.output.body}}" }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].when.left", "step `yes` does not run before `route`"),
            ("steps[0].else[0].body", "step `yes` does not run before `no`"),
        ],
    );
}

#[test]
fn earlier_steps_enclosing_conditionals_and_earlier_branches_are_in_scope() {
    let yaml = steps_yaml(
        r#"  - { id: a, type: request, url: "https://a" }
  - id: route
    type: conditional
    when: [ { left: "{{steps.a.output.status}}", op: equals, right: 200 } ]
    then:
      - { id: b, type: request, url: "https://b/{{steps.a.output.body.id}}" }
      - id: inner
        type: conditional
        when: { any: [ { left: "{{steps.route.output.branch}}", op: equals, right: then } ] }
        then:
          - { id: c, type: request, url: "https://c/{{steps.b.output.body.id}}/{{steps.inner.output.branch}}" }
  - id: reply
    type: response
    status: "{{steps.a.output.status}}"
    headers: { x-id: "{{steps.c.output.body.id}}" }
    body:
      a: "{{steps.a.error}}"
      b: ["{{steps.b.output.body}}", "{{user.id}}", "{{execution.id}}", "{{workflow.id}}", "{{settings.token}}", "{{env.SLUICE_BASE_URL}}"]
      t: "{{trigger.headers.x-source}} {{trigger.payload.x}} {{trigger.query.q}} {{trigger}}"
"#,
    );
    if let Err(found) = load_str("wf.yaml", &yaml) {
        panic!("expected a valid workflow, got {found:#?}");
    }
}

#[test]
fn variable_roots_and_their_allowed_shapes_are_checked() {
    let yaml = steps_yaml(
        r#"  - id: reply
    type: response
    body:
      - "{{item.id}}"
      - "{{index}}"
      - "{{user.email}}"
      - "{{execution}}"
      - "{{trigger.cookies.a}}"
      - "{{steps}}"
      - "{{steps.reply}}"
      - "{{steps.reply.result}}"
      - "{{secrets.HOME}}"
      - "text }} stray"
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].body[0]", "`item` is only available inside a fan-out branch"),
            ("steps[0].body[1]", "`index` is only available inside a fan-out branch"),
            ("steps[0].body[2]", "only `user.id` is available"),
            ("steps[0].body[3]", "only `execution.id` is available"),
            ("steps[0].body[4]", "`trigger.cookies` does not exist"),
            ("steps[0].body[5]", "write `steps.<step id>.output`"),
            ("steps[0].body[6]", "must be followed by `.output` or `.error`"),
            ("steps[0].body[7]", "must be followed by `.output` or `.error`"),
            ("steps[0].body[8]", "unknown variable `secrets` (available: trigger, steps, settings, env, user"),
            ("steps[0].body[9]", "without a matching"),
        ],
    );
}

#[test]
fn branches_must_be_lists_but_may_be_empty_and_when_is_required() {
    assert_problems(
        &steps_yaml("  - { id: c, type: conditional, then: [], else: x }\n"),
        &[("steps[0].when", "`when` is required"), ("steps[0].else", "must be a list of steps")],
    );
    assert_problems(
        &steps_yaml("  - { id: c, type: conditional, when: 5 }\n  - { id: d, type: conditional, when: { all: 1 } }\n"),
        &[("steps[0].when", "a condition must be a mapping"), ("steps[1].when.all", "must be a list of conditions")],
    );
}

#[test]
fn right_null_is_accepted_for_binary_operators() {
    let yaml = steps_yaml("  - { id: c, type: conditional, when: { left: 1, op: equals, right: null } }\n");
    assert!(load_str("wf.yaml", &yaml).is_ok());
}

#[test]
fn comparison_keys_are_checked_and_templated_regex_is_not_compiled() {
    assert_problems(
        &steps_yaml(
            "  - { id: c, type: conditional, when: { left: 1, op: matches, right: '{{trigger.body.re}}', rigth: 2 } }\n",
        ),
        &[("steps[0].when.rigth", "unknown key `rigth` (allowed here: left, op, right)")],
    );
}

#[test]
fn request_needs_a_url_and_valid_timeout() {
    assert_problems(
        &steps_yaml("  - { id: r, type: request, timeout: 0s, query: [1], headers: { a: 1 } }\n"),
        &[
            ("steps[0].url", "`url` is required"),
            ("steps[0].timeout", "longer than 0"),
            ("steps[0].query", "must be a mapping"),
        ],
    );
}
