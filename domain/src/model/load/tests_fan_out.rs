//! Fan-out scoping: where `{{item}}` and `{{index}}` exist, and which steps a step inside or
//! after a fan-out branch may refer to.

use super::tests::{assert_problems, steps_yaml};
use super::*;

fn loads(yaml: &str) {
    if let Err(found) = load_str("wf.yaml", yaml) {
        panic!("expected a valid workflow, got {found:#?}");
    }
}

#[test]
fn item_and_index_are_available_at_any_depth_inside_a_branch() {
    loads(&steps_yaml(
        r#"  - id: fan
    type: fan_out
    over: "{{trigger.body.orders}}"
    steps:
      - { id: call, type: request, url: "https://a/{{item.id}}/{{index}}", body: "{{item}}" }
      - id: check
        type: conditional
        when: { left: "{{item.total}}", op: greater_than, right: "{{index}}" }
        then:
          - id: deeper
            type: conditional
            when: { left: "{{item.lines[0].sku}}", op: exists }
            then:
              - { id: note, type: function, code: "p => p", parameters: { item: "{{item}}", at: "{{index}}" } }
"#,
    ));
}

#[test]
fn item_and_index_outside_a_branch_are_rejected_including_in_the_fan_outs_own_over() {
    let yaml = steps_yaml(
        r#"  - { id: before, type: request, url: "https://a/{{item.id}}" }
  - id: fan
    type: fan_out
    over: "{{item.children}}"
    steps:
      - { id: inside, type: request, url: "https://a/{{item.id}}" }
  - id: after
    type: response
    body: { at: "{{index}}", what: "{{item}}" }
  - id: route
    type: conditional
    when: { left: "{{index}}", op: equals, right: 0 }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].url", "`item` is only available inside a fan-out branch"),
            ("steps[1].over", "`item` is only available inside a fan-out branch"),
            ("steps[2].body.at", "`index` is only available inside a fan-out branch"),
            ("steps[2].body.what", "`item` is only available inside a fan-out branch"),
            ("steps[3].when.left", "`index` is only available inside a fan-out branch"),
        ],
    );
}

#[test]
fn a_nested_fan_out_sees_the_outer_item_in_over_and_its_own_inside() {
    loads(&steps_yaml(
        r#"  - id: orders
    type: fan_out
    over: "{{trigger.body.orders}}"
    steps:
      - { id: order, type: request, url: "https://a/orders/{{item.id}}" }
      - id: lines
        type: fan_out
        over: "{{item.lines}}"
        concurrency: 2
        steps:
          - id: line
            type: request
            url: "https://a/orders/{{steps.order.output.body.id}}/lines/{{item.sku}}?n={{index}}"
      - { id: summary, type: function, code: "p => p.lines.length", parameters: { lines: "{{steps.lines.output}}" } }
  - { id: reply, type: response, body: "{{steps.orders.output}}" }
"#,
    ));
}

#[test]
fn index_is_a_number_and_branch_variables_are_listed_inside_a_branch() {
    let yaml = steps_yaml(
        r#"  - id: fan
    type: fan_out
    over: "{{trigger.body.list}}"
    steps:
      - { id: a, type: response, body: ["{{index.value}}", "{{items}}"] }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].steps[0].body[0]", "`index` is a number (the item's position, from 0): write `{{index}}` alone"),
            (
                "steps[0].steps[0].body[1]",
                concat!(
                    "unknown variable `items` (available: trigger, steps, ",
                    "settings, env, user, execution, workflow, item, index)"
                ),
            ),
        ],
    );
}

#[test]
fn a_branch_step_may_use_earlier_branch_steps_and_steps_before_the_fan_out() {
    loads(&steps_yaml(
        r#"  - { id: list, type: request, url: "https://a/list" }
  - id: fan
    type: fan_out
    over: "{{steps.list.output.body.items}}"
    steps:
      - { id: first, type: request, url: "https://a/{{steps.list.output.body.token}}/{{item}}" }
      - { id: second, type: request, url: "https://a/{{steps.first.output.body.next}}" }
  - { id: after, type: response, body: { all: "{{steps.fan.output}}", list: "{{steps.list.output.status}}" } }
"#,
    ));
}

#[test]
fn a_branch_step_may_not_use_later_branch_steps_nor_the_fan_out_itself() {
    let yaml = steps_yaml(
        r#"  - id: fan
    type: fan_out
    over: "{{steps.first.output.body}}"
    steps:
      - { id: first, type: request, url: "https://a/{{steps.second.output.body.id}}" }
      - { id: second, type: request, url: "https://a/{{steps.fan.output}}" }
  - { id: again, type: fan_out, over: "{{steps.again.output}}", steps: [ { id: x, type: delay, for: 1s } ] }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].over", "step `first` does not run before `fan`"),
            ("steps[0].steps[0].url", "step `second` does not run before `first`"),
            (
                "steps[0].steps[1].url",
                "`second` runs inside fan-out `fan`, whose output exists only once every branch has finished",
            ),
            ("steps[1].over", "a step cannot use its own output"),
        ],
    );
}

#[test]
fn references_into_a_fan_out_branch_from_after_it_are_rejected() {
    let yaml = steps_yaml(
        r#"  - id: fan
    type: fan_out
    over: "{{trigger.body.items}}"
    steps:
      - id: pick
        type: conditional
        when: { left: "{{item}}", op: exists }
        then:
          - { id: call, type: request, url: "https://a/{{item}}" }
  - id: route
    type: conditional
    when: { left: "{{steps.call.output.status}}", op: equals, right: 200 }
  - { id: reply, type: response, body: ["{{steps.pick.output.branch}}", "{{steps.fan.output}}"] }
  - id: other
    type: fan_out
    over: "{{steps.call.output.body}}"
    steps:
      - { id: again, type: request, url: "https://a/{{steps.call.output.body.id}}" }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[1].when.left", "step `call` runs inside fan-out `fan`; use `steps.fan.output`"),
            ("steps[2].body[0]", "step `pick` runs inside fan-out `fan`; use `steps.fan.output`"),
            ("steps[3].over", "step `call` runs inside fan-out `fan`; use `steps.fan.output`"),
            ("steps[3].steps[0].url", "step `call` runs inside fan-out `fan`; use `steps.fan.output`"),
        ],
    );
}

#[test]
fn references_into_a_nested_fan_out_name_the_fan_out_to_use() {
    let yaml = steps_yaml(
        r#"  - id: outer
    type: fan_out
    over: "{{trigger.body.orders}}"
    steps:
      - id: inner
        type: fan_out
        over: "{{item.lines}}"
        steps:
          - { id: line, type: request, url: "https://a/{{item.sku}}" }
      - { id: sum, type: response, body: ["{{steps.line.output}}", "{{steps.inner.output}}"] }
  - { id: reply, type: response, body: ["{{steps.line.output}}", "{{steps.inner.output}}", "{{steps.outer.output}}"] }
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[0].steps[1].body[0]", "step `line` runs inside fan-out `inner`; use `steps.inner.output`"),
            ("steps[1].body[0]", "step `line` runs inside fan-out `outer`; use `steps.outer.output`"),
            ("steps[1].body[1]", "step `inner` runs inside fan-out `outer`; use `steps.outer.output`"),
        ],
    );
}

#[test]
fn step_ids_are_unique_across_fan_out_branches_too() {
    let yaml = steps_yaml(
        r#"  - { id: call, type: request, url: "https://a" }
  - id: fan
    type: fan_out
    over: "{{trigger.body.items}}"
    steps:
      - { id: call, type: request, url: "https://b" }
      - id: nested
        type: fan_out
        over: "{{item.children}}"
        steps: [ { id: fan, type: delay, for: 1s } ]
"#,
    );
    assert_problems(
        &yaml,
        &[
            ("steps[1].steps[0].id", "step id `call` is already used at steps[0].id"),
            ("steps[1].steps[1].steps[0].id", "step id `fan` is already used at steps[1].id"),
        ],
    );
}
