//! Hostile workflow files: every limit of the loader is a clear load error, reached in time
//! linear in the file (they used to run out of memory or take seconds to minutes).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::*;

/// Loads `text` as `file`, returning the problems and how long it took.
fn timed(file: &str, text: &str) -> (Result<Workflow, Vec<Problem>>, Duration) {
    let begun = Instant::now();
    let result = load_str(file, text);
    (result, begun.elapsed())
}

fn only_problem(result: Result<Workflow, Vec<Problem>>) -> String {
    match result {
        Ok(workflow) => panic!("loaded `{}`", workflow.id),
        Err(problems) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            problems[0].message.clone()
        }
    }
}

#[test]
fn aliases_that_expand_past_the_budget_are_refused_before_they_are_built() {
    // About 2 KB that would expand to 100 × 1000 × 1000 values.
    let mut text = String::from("id: laughs\ntrigger: { type: request }\nsteps: []\na: &a [");
    text.push_str(&vec!["x"; 100].join(", "));
    text.push_str("]\nb: &b [");
    text.push_str(&vec!["*a"; 1000].join(", "));
    text.push_str("]\nc: [");
    text.push_str(&vec!["*b"; 1000].join(", "));
    text.push_str("]\n");
    let (result, took) = timed("laughs.yaml", &text);
    let message = only_problem(result);
    assert_eq!(
        message,
        format!("the YAML document expands to more than {MAX_YAML_VALUES} values (aliases count at each use)")
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn deep_nesting_is_refused_at_the_depth_limit() {
    let deep = 100_000;
    for (file, text) in [
        ("flow.yaml", format!("{}{}", "[".repeat(deep), "]".repeat(deep))),
        ("flow.json", format!("{}{}", "[".repeat(deep), "]".repeat(deep))),
        (
            "block.yaml",
            (0..deep.min(20_000)).fold(String::new(), |mut text, level| {
                let _ = writeln!(text, "{}k{level}:", " ".repeat(level));
                text
            }),
        ),
    ] {
        let text = &text[..text.len().min(MAX_WORKFLOW_BYTES)];
        let (result, took) = timed(file, text);
        let message = only_problem(result);
        assert!(
            message.contains(&format!("deeper than {MAX_WORKFLOW_DEPTH} levels"))
                || message.contains("recursion limit exceeded"),
            "{file}: {message}"
        );
        assert!(took < Duration::from_secs(2), "{file}: {took:?}");
    }
    // At the limit, a document still loads as far as nesting goes.
    let at_limit = format!(
        "id: x\ntrigger: {{ type: request }}\nsteps: [ {{ id: r, type: response, body: {}1{} }} ]\n",
        "[".repeat(59),
        "]".repeat(59)
    );
    assert!(load_str("limit.yaml", &at_limit).is_ok(), "{:?}", load_str("limit.yaml", &at_limit).err());
}

#[test]
fn a_file_past_the_size_limit_is_refused_unread() {
    let text = format!("id: big\n# {}\n", "x".repeat(MAX_WORKFLOW_BYTES));
    let message = only_problem(load_str("big.yaml", &text));
    assert_eq!(
        message,
        format!("the file is {} bytes; a workflow file may have at most {MAX_WORKFLOW_BYTES}", text.len())
    );
}

#[test]
fn thousands_of_sequential_conditionals_are_checked_in_linear_time() {
    // 12,500 took 8-10 s (each conditional copied the ids of every step before it); a file
    // that size is past the size limit, but documents arrive parsed too (test runs).
    let count = 12_500;
    let steps: Vec<serde_json::Value> = (0..count)
        .map(|n| {
            let left = if n == 0 { "{{trigger.body.n}}".to_string() } else { format!("{{{{steps.c{}.output}}}}", n - 1) };
            serde_json::json!({ "id": format!("c{n}"), "type": "conditional", "when": { "left": left, "op": "equals", "right": 1 } })
        })
        .collect();
    let document = serde_json::json!({ "id": "many", "trigger": { "type": "request" }, "steps": steps });
    let begun = Instant::now();
    let workflow = load_value("many.json", &document)
        .unwrap_or_else(|problems| panic!("{:?}", &problems[..problems.len().min(3)]));
    let took = begun.elapsed();
    assert_eq!(workflow.steps.len(), count);
    assert!(took < Duration::from_secs(2), "{count} conditionals took {took:?}");
}
