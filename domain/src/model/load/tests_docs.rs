//! The examples of docs/workflow-format.md load as written.

use super::*;
use crate::model::{Step, StepKind};

/// The user-facing reference of the workflow format.
const REFERENCE: &str = include_str!("../../../../docs/workflow-format.md");

/// The ```yaml blocks of the reference, in order.
fn yaml_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in REFERENCE.lines() {
        match current.as_mut() {
            None if line.trim() == "```yaml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "a ```yaml block of the reference is never closed");
    blocks
}

/// The first example of the reference: a whole workflow with every key of the first step types.
pub(super) fn full_example() -> String {
    yaml_blocks().into_iter().next().expect("the reference starts with an example")
}

/// A block as a whole workflow: a list of steps is put into a workflow of its own.
fn as_workflow(block: &str) -> String {
    if block.starts_with("id:") {
        return block.to_string();
    }
    assert!(block.starts_with("- id:"), "a yaml block is a workflow or a list of steps:\n{block}");
    let steps: String = block.lines().map(|line| format!("  {line}\n")).collect();
    format!("id: doc-snippet\ntrigger: {{ type: request }}\nsteps:\n{steps}")
}

fn all_steps(steps: &[Step]) -> Vec<&Step> {
    steps.iter().flat_map(|s| std::iter::once(s).chain(s.kind.nested().into_iter().flat_map(all_steps))).collect()
}

#[test]
fn every_yaml_example_of_the_reference_loads() {
    let blocks = yaml_blocks();
    assert!(blocks.len() >= 5, "expected the reference's examples, found {} yaml blocks", blocks.len());
    let mut types = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let file = format!("docs-example-{i}.yaml");
        match load_str(&file, &as_workflow(block)) {
            Ok(workflow) => types.extend(all_steps(&workflow.steps).into_iter().map(|s| s.kind.type_name())),
            Err(found) => panic!("example {i} of docs/workflow-format.md does not load: {found:#?}\n{block}"),
        }
    }
    for step_type in ["request", "conditional", "response", "function", "fan_out", "delay"] {
        assert!(types.contains(&step_type), "no example of the reference shows a `{step_type}` step");
    }
}

#[test]
fn the_second_example_shows_the_new_step_types_and_request_options() {
    let blocks = yaml_blocks();
    let workflow = load_str("invoice-sync.yaml", &blocks[1]).expect("valid");
    assert_eq!(workflow.id, "invoice-sync");
    let StepKind::Request(invoices) = &workflow.steps[0].kind else { panic!("request step") };
    assert!(invoices.auth.is_some() && invoices.pagination.is_some());
    let StepKind::FanOut(fan_out) = &workflow.steps[1].kind else { panic!("fan-out step") };
    assert_eq!(fan_out.concurrency, Some(10));
    assert!(matches!(fan_out.steps[0].kind, StepKind::Function(_)));
    assert!(matches!(workflow.steps[2].kind, StepKind::Delay(_)));
    assert!(!workflow.has_response_step(), "the example is asynchronous: a delay would outlast a waiting caller");
}

#[test]
fn the_reference_lists_every_step_type_body_type_auth_type_and_pagination_style() {
    for word in [
        "`request`",
        "`conditional`",
        "`response`",
        "`function`",
        "`fan_out`",
        "`delay`",
        "`json`",
        "`form`",
        "`multipart`",
        "`raw`",
        "type: basic",
        "type: bearer",
        "`cursor`",
        "`link`",
        "`page`",
        "`offset`",
        "`waiting`",
        "`logs`",
        "`libraries`",
        "Retry-After",
    ] {
        assert!(REFERENCE.contains(word), "docs/workflow-format.md does not mention {word}");
    }
}
