//! Validation of the function, fan-out and delay steps and of the Request and Response step
//! options added with them (body types, auth, pagination, files).

use super::tests::{assert_problems, steps_yaml};
use super::*;
use crate::model::{BodyType, Pagination, RequestAuth, StepKind};

/// The largest Function step `code` (100 KB).
const MAX_CODE_BYTES: usize = 100 * 1024;

/// Loads `yaml`, failing the test with every problem when it does not load.
fn loads(yaml: &str) -> Workflow {
    load_str("wf.yaml", yaml).unwrap_or_else(|found| panic!("expected a valid workflow, got {found:#?}"))
}

#[test]
fn a_workflow_using_every_new_feature_loads() {
    let yaml = steps_yaml(
        r#"  - id: list
    type: request
    url: "https://api.example.com/orders"
    auth: { type: bearer, token: "{{settings.token}}" }
    pagination: { style: cursor, items: body.data, cursor: body.meta.next, param: after, max_pages: 1000 }
  - id: linked
    type: request
    url: "https://api.example.com/repos"
    pagination: { style: link, items: body.items, max_pages: 1 }
  - id: paged
    type: request
    url: "https://api.example.com/pages"
    pagination: { style: page, items: body.results, param: p, start: 0, page_size: 50, max_pages: 5 }
  - id: offsets
    type: request
    url: "https://api.example.com/offsets"
    pagination: { style: offset, items: headers.x-items, param: skip, limit_param: take, limit: 100 }
  - id: each
    type: fan_out
    over: "{{steps.list.output.items}}"
    concurrency: 1000
    steps:
      - id: shape
        type: function
        code: "(parameters, { lodash }) => lodash.pick(parameters.order, ['id', 'total'])"
        parameters: { order: "{{item}}", position: "{{index}}", first: "{{steps.linked.output.items.0}}" }
        time_limit: 60s
        memory_limit_mb: 512
      - id: send
        type: request
        method: POST
        url: "https://ledger.example.com/{{item.id}}"
        body_type: form
        body: { total: "{{steps.shape.output.total}}", at: "{{index}}" }
        auth: { type: basic, username: "{{settings.user}}", password: "{{settings.password}}" }
  - id: upload
    type: request
    method: PUT
    url: "https://files.example.com/upload"
    body_type: multipart
    body: { file: "{{steps.paged.output.file}}", note: results }
  - id: raw
    type: request
    method: POST
    url: "https://hooks.example.com/raw"
    body_type: raw
    body: "{{steps.each.output}} done"
  - id: form_from_expression
    type: request
    method: POST
    url: "https://hooks.example.com/form"
    body_type: form
    body: "{{trigger.body.fields}}"
  - { id: wait_for, type: delay, for: 366d }
  - { id: wait_iso, type: delay, until: "2026-12-01T09:00:00Z" }
  - { id: wait_epoch, type: delay, until: 1796115600 }
  - { id: wait_epoch_ms, type: delay, until: 1796115600000 }
  - { id: wait_template, type: delay, until: "{{trigger.body.remind_at}}" }
  - id: reply
    type: response
    status: 200
    headers: { content-disposition: attachment }
    file: "{{steps.upload.output.file}}"
    retries: 10
"#,
    );
    let workflow = loads(&yaml);
    let kinds: Vec<&str> =
        workflow.step_order().into_iter().filter_map(|id| workflow.find_step(id)).map(|s| s.kind.type_name()).collect();
    for step_type in ["request", "function", "fan_out", "delay", "response"] {
        assert!(kinds.contains(&step_type), "{step_type} missing from {kinds:?}");
    }
    let StepKind::Request(list) = &workflow.steps[0].kind else { panic!("request") };
    assert!(matches!(&list.auth, Some(RequestAuth::Bearer { .. })));
    assert!(matches!(&list.pagination, Some(Pagination::Cursor { param, .. }) if param == "after"));
    let StepKind::Request(offsets) = &workflow.steps[3].kind else { panic!("request") };
    assert!(matches!(&offsets.pagination, Some(Pagination::Offset { limit: 100, .. })));
    let StepKind::FanOut(each) = &workflow.steps[4].kind else { panic!("fan-out") };
    assert_eq!(each.concurrency, Some(1000));
    let StepKind::Function(shape) = &each.steps[0].kind else { panic!("function") };
    assert_eq!(shape.memory_limit_mb, Some(512));
    assert_eq!(shape.time_limit.as_ref().map(|t| t.duration().as_secs()), Some(60));
    let StepKind::Request(send) = &each.steps[1].kind else { panic!("request") };
    assert_eq!(send.body_type, BodyType::Form);
    assert!(matches!(&send.auth, Some(RequestAuth::Basic { .. })));
    let StepKind::Delay(wait_for) = &workflow.find_step("wait_for").expect("delay").kind else { panic!("delay") };
    assert_eq!(wait_for.duration.as_ref().map(|d| d.duration().as_secs()), Some(366 * 86_400));
    let StepKind::Response(reply) = &workflow.find_step("reply").expect("response").kind else { panic!("response") };
    assert!(reply.file.is_some() && reply.body.is_none());
}

#[test]
fn a_file_with_many_mistakes_in_the_new_keys_reports_every_one_with_its_path() {
    let yaml = steps_yaml(
        r#"  - id: fn
    type: function
    code: "   "
    parameters: [1]
    time_limit: 2m
    memory_limit_mb: 1024
    runtime: node
  - id: fn2
    type: function
    code: 42
    time_limit: 0s
    memory_limit_mb: "64"
  - id: fan
    type: fan_out
    over: "items: {{trigger.body.items}}"
    steps: []
    concurrency: 0
    parallel: 2
  - id: fan2
    type: fan_out
    over: [1, 2]
    steps: { id: x }
    concurrency: 1001
  - { id: wait1, type: delay, for: 367d, until: tomorrow }
  - { id: wait2, type: delay, until: true }
  - { id: wait3, type: delay, for: 1h, until: 1796115600 }
  - id: call
    type: request
    url: "https://a"
    body_type: xml
    auth: { type: oauth }
    pagination: { items: body.data }
  - id: call2
    type: request
    url: "https://a"
    body_type: raw
    body: { a: 1 }
    auth: { type: basic, username: u, token: t }
    pagination: { style: cursor, items: data, max_pages: 0 }
  - id: call3
    type: request
    url: "https://a"
    body_type: form
    body: [1]
    auth: { type: bearer, token: 5 }
    pagination: { style: offset, items: "{{body.data}}", limit: 0, limit_param: "", size: 3 }
  - id: call4
    type: request
    url: "https://a"
    body_type: multipart
    body: "name={{trigger.body.name}}"
    auth: bearer-token
    pagination: { style: page, items: headers, start: -1, page_size: 0, cursor: x }
  - { id: call5, type: request, url: "https://a", pagination: { style: scroll, items: body.x } }
  - id: reply
    type: response
    body: { a: 1 }
    file: "{{steps.call.output.file}}"
  - { id: reply2, type: response, file: { name: a } }
  - { id: reply3, type: response, file: "report-{{steps.call.output.file}}" }
  - { id: r, type: request, url: "https://a", retries: 11 }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].code", "must not be empty"),
            ("steps[0].parameters", "`parameters` must be a mapping"),
            ("steps[0].time_limit", "`2m` is too long: at most 60s"),
            ("steps[0].memory_limit_mb", "must be a whole number from 8 to 512, not 1024"),
            (
                "steps[0].runtime",
                concat!(
                    "unknown key `runtime` (allowed here: id, type, retries, retry_delay, ",
                    "continue_on_failure, code, parameters, time_limit, memory_limit_mb)"
                ),
            ),
            ("steps[1].code", "must be a string, not a number"),
            ("steps[1].time_limit", "must be longer than 0"),
            ("steps[1].memory_limit_mb", "must be a whole number from 8 to 512, not a string"),
            ("steps[2].over", "must be exactly one `{{...}}` expression giving a list, with nothing around it"),
            ("steps[2].steps", "a fan-out needs at least one step"),
            ("steps[2].concurrency", "must be a whole number from 1 to 1000, not 0"),
            (
                "steps[2].parallel",
                concat!(
                    "unknown key `parallel` (allowed here: id, type, retries, ",
                    "retry_delay, continue_on_failure, over, steps, concurrency)"
                ),
            ),
            (
                "steps[3].over",
                concat!(
                    "must be one `{{...}}` expression giving a list (e.g. ",
                    "`{{steps.list.output.body.items}}`), not an array"
                ),
            ),
            ("steps[3].steps", "must be a list of steps, not an object"),
            ("steps[3].concurrency", "from 1 to 1000, not 1001"),
            ("steps[4].for", "`367d` is too long: at most 366d"),
            ("steps[4].until", "`tomorrow` is not a time"),
            ("steps[4].until", "`for` and `until` cannot be used together"),
            (
                "steps[5].until",
                concat!(
                    "must be an ISO 8601 timestamp (e.g. 2026-12-01T09:00:00Z), epoch seconds ",
                    "or milliseconds, or a `{{...}}` expression, not a boolean"
                ),
            ),
            ("steps[6].until", "`for` and `until` cannot be used together"),
            ("steps[7].body_type", "unknown body type `xml` (use json, form, multipart, raw)"),
            ("steps[7].auth.type", "unknown auth type `oauth` (known: basic, bearer)"),
            ("steps[7].pagination.style", "`style` is required (cursor, link, next_url, page, offset)"),
            ("steps[8].body", "with `body_type: raw` the body must be a string (the text to send), not an object"),
            ("steps[8].auth.token", "unknown key `token` (allowed here: type, username, password)"),
            ("steps[8].auth.password", "`password` is required for `basic` auth"),
            (
                "steps[8].pagination.items",
                "`data` must be `body` or a path in the response starting with `body.` or `headers.`",
            ),
            ("steps[8].pagination.cursor", "`cursor` is required for `cursor` pagination"),
            ("steps[8].pagination.param", "`param` is required for `cursor` pagination"),
            ("steps[8].pagination.max_pages", "must be a whole number from 1 to 1000, not 0"),
            ("steps[9].body", "with `body_type: form` the body must be a mapping of fields"),
            ("steps[9].auth.token", "must be a string, not a number"),
            ("steps[9].pagination.items", "without `{{ }}`"),
            ("steps[9].pagination.limit", "must be a whole number of at least 1, not 0"),
            ("steps[9].pagination.limit_param", "must not be empty"),
            (
                "steps[9].pagination.size",
                "unknown key `size` (allowed here: style, items, param, limit_param, limit, max_pages)",
            ),
            (
                "steps[10].body",
                concat!(
                    "with `body_type: multipart` the body must be a mapping of fields (or ",
                    "one `{{...}}` expression giving one), not a string"
                ),
            ),
            ("steps[10].auth", "`auth` must be a mapping, not a string"),
            (
                "steps[10].pagination.items",
                "`headers` must be `body` or a path in the response starting with `body.` or `headers.`",
            ),
            ("steps[10].pagination.start", "must be a whole number (0 or more), not -1"),
            ("steps[10].pagination.page_size", "of at least 1, not 0"),
            (
                "steps[10].pagination.cursor",
                "unknown key `cursor` (allowed here: style, items, param, start, page_size, max_pages)",
            ),
            (
                "steps[11].pagination.style",
                "unknown pagination style `scroll` (known: cursor, link, next_url, page, offset)",
            ),
            ("steps[12].file", "`file` and `body` cannot be used together"),
            (
                "steps[13].file",
                concat!(
                    "must be one `{{...}}` expression giving a file object (e.g. ",
                    "`{{steps.download.output.file}}`), not an object"
                ),
            ),
            ("steps[14].file", "must be exactly one `{{...}}` expression giving a file object"),
            ("steps[15].retries", "must be a whole number from 0 to 10, not 11"),
        ],
    );
}

#[test]
fn function_limits_accept_their_bounds_and_reject_beyond() {
    let function = |extra: &str| steps_yaml(&format!("  - {{ id: f, type: function, code: 'x => x'{extra} }}\n"));
    loads(&function(", time_limit: 1ms, memory_limit_mb: 8"));
    loads(&function(", time_limit: 60s, memory_limit_mb: 512"));
    assert_problems(&function(", time_limit: 61s"), &[("steps[0].time_limit", "at most 60s")]);
    assert_problems(&function(", memory_limit_mb: 7"), &[("steps[0].memory_limit_mb", "from 8 to 512, not 7")]);
    assert_problems(&function(", memory_limit_mb: 64.5"), &[("steps[0].memory_limit_mb", "not 64.5")]);
    assert_problems(&steps_yaml("  - { id: f, type: function }\n"), &[("steps[0].code", "`code` is required")]);
}

#[test]
fn function_code_is_at_most_100_kb_and_is_not_templated() {
    let body = |len: usize| format!("// {}\n(p) => ({{ a: {{ b: 1 }}}})", "x".repeat(len));
    let within = body(MAX_CODE_BYTES - body(0).len());
    let workflow = loads(&steps_yaml(&format!(
        "  - id: f\n    type: function\n    code: {}\n",
        serde_json::to_string(&within).expect("json")
    )));
    let StepKind::Function(function) = &workflow.steps[0].kind else { panic!("function") };
    assert_eq!(function.code.len(), MAX_CODE_BYTES, "`}}` in code is not a template problem");
    let beyond = body(MAX_CODE_BYTES - body(0).len() + 1);
    assert_problems(
        &steps_yaml(&format!(
            "  - id: f\n    type: function\n    code: {}\n",
            serde_json::to_string(&beyond).expect("json")
        )),
        &[("steps[0].code", "the code is 102401 bytes long; at most 102400 (100 KB)")],
    );
}

#[test]
fn function_parameters_are_templated_and_checked() {
    assert_problems(
        &steps_yaml(
            "  - { id: f, type: function, code: 'p => p', parameters: { a: '{{steps.g.output}}', b: ['{{nope}}'] } }\n",
        ),
        &[("steps[0].parameters.a", "no step `g`"), ("steps[0].parameters.b[0]", "unknown variable `nope`")],
    );
}

#[test]
fn delay_needs_exactly_one_of_for_and_until() {
    assert_problems(
        &steps_yaml("  - { id: d, type: delay }\n"),
        &[("steps[0]", "a delay needs `for` (a duration, e.g. 10m) or `until`")],
    );
    assert_problems(
        &steps_yaml("  - { id: d, type: delay, for: 1m, until: '2026-01-01' }\n"),
        &[("steps[0].until", "`for` and `until` cannot be used together: keep one")],
    );
    assert_problems(&steps_yaml("  - { id: d, type: delay, for: 0s }\n"), &[("steps[0].for", "longer than 0")]);
    assert_problems(&steps_yaml("  - { id: d, type: delay, for: 10 }\n"), &[("steps[0].for", "must be a string")]);
}

#[test]
fn delay_until_accepts_timestamps_epochs_and_templates() {
    for until in [
        "'2026-12-01T09:00:00Z'",
        "'2026-12-01T10:00:00+01:00'",
        "'2026-12-01'",
        "1796115600",
        "1796115600000",
        "'1796115600'",
        "'{{trigger.body.at}}'",
        "'{{trigger.body.day}}T09:00:00Z'",
    ] {
        loads(&steps_yaml(&format!("  - {{ id: d, type: delay, until: {until} }}\n")));
    }
    assert_problems(
        &steps_yaml(concat!(
            "  - { id: d, type: delay, until: '2026-13-45' }\n  - { id: e, ",
            "type: delay, until: '{{steps.d.outptu}}' }\n"
        )),
        &[
            ("steps[0].until", "`2026-13-45` is not a time"),
            ("steps[1].until", "must be followed by `.output` or `.error`"),
        ],
    );
}

#[test]
fn body_literals_must_fit_the_body_type_and_templates_may_give_them() {
    let request = |body_type: &str, body: &str| {
        steps_yaml(&format!(
            "  - {{ id: r, type: request, method: POST, url: 'https://a', body_type: {body_type}, body: {body} }}\n"
        ))
    };
    for (body_type, body) in [
        ("json", "[1, 2]"),
        ("json", "'text'"),
        ("raw", "'a,b\\n1,2'"),
        ("raw", "'{{trigger.body}}'"),
        ("form", "{ a: 1, b: '{{trigger.body.b}}' }"),
        ("form", "'{{trigger.body}}'"),
        ("multipart", "{ file: '{{trigger.body.file}}' }"),
        ("multipart", "'{{trigger.body}}'"),
    ] {
        loads(&request(body_type, body));
    }
    assert_problems(&request("raw", "42"), &[("steps[0].body", "must be a string (the text to send), not a number")]);
    assert_problems(&request("form", "'a=1'"), &[("steps[0].body", "must be a mapping of fields")]);
    assert_problems(&request("multipart", "[1]"), &[("steps[0].body", "not an array")]);
    assert_problems(&request("Form", "{}"), &[("steps[0].body_type", "unknown body type `Form`")]);
    loads(&steps_yaml("  - { id: r, type: request, url: 'https://a', body_type: raw }\n"));
}

#[test]
fn auth_shapes_are_checked_per_type() {
    let request = |auth: &str| steps_yaml(&format!("  - {{ id: r, type: request, url: 'https://a', auth: {auth} }}\n"));
    loads(&request("{ type: basic, username: u, password: '{{settings.pw}}' }"));
    loads(&request("{ type: bearer, token: '{{settings.token}}' }"));
    assert_problems(&request("{ username: u }"), &[("steps[0].auth.type", "`type` is required (basic, bearer)")]);
    assert_problems(
        &request("{ type: bearer, token: '{{settings.t}}', username: u }"),
        &[("steps[0].auth.username", "unknown key `username` (allowed here: type, token)")],
    );
    assert_problems(
        &request("{ type: basic, username: '{{secrets.u}}' }"),
        &[
            ("steps[0].auth.username", "unknown variable `secrets`"),
            ("steps[0].auth.password", "`password` is required for `basic` auth"),
        ],
    );
    assert_problems(&request("{ type: bearer }"), &[("steps[0].auth.token", "`token` is required for `bearer` auth")]);
}

#[test]
fn pagination_needs_a_style_its_required_keys_and_response_paths() {
    let request = |pagination: &str| {
        steps_yaml(&format!("  - {{ id: r, type: request, url: 'https://a', pagination: {pagination} }}\n"))
    };
    loads(&request("{ style: link, items: headers.x-items }"));
    loads(&request("{ style: page, items: 'body.data[0].rows' }"));
    assert_problems(&request("[]"), &[("steps[0].pagination", "`pagination` must be a mapping, not an array")]);
    assert_problems(
        &request("{ style: offset }"),
        &[
            ("steps[0].pagination.items", "`items` is required for `offset` pagination: the path of the array"),
            ("steps[0].pagination.limit", "`limit` is required for `offset` pagination"),
        ],
    );
    assert_problems(
        &request("{ style: 1, items: body.x }"),
        &[("steps[0].pagination.style", "must be a string, not a number")],
    );
    assert_problems(
        &request("{ style: link, items: 'body..x' }"),
        &[("steps[0].pagination.items", "invalid template")],
    );
    assert_problems(
        &request("{ style: link, items: trigger.body.x }"),
        &[("steps[0].pagination.items", "starting with `body.` or `headers.`")],
    );
    assert_problems(
        &request("{ style: link, items: body.x, max_pages: 1001 }"),
        &[("steps[0].pagination.max_pages", "from 1 to 1000, not 1001")],
    );
}

#[test]
fn response_file_is_one_expression_and_its_references_are_checked() {
    assert_problems(
        &steps_yaml(concat!(
            "  - { id: reply, type: response, file: '{{steps.later.output.file}}' ",
            "}\n  - { id: later, type: request, url: 'https://a' }\n"
        )),
        &[("steps[0].file", "step `later` does not run before `reply`")],
    );
    assert_problems(
        &steps_yaml("  - { id: reply, type: response, file: report.pdf }\n"),
        &[("steps[0].file", "must be exactly one `{{...}}` expression")],
    );
}
