//! Checks of `{{...}}` expressions inside step values.
//!
//! Invariant: every string that contains `{{` or `}}` is parsed; each expression's root is a
//! known variable, `item` and `index` are used only inside a fan-out branch, and every
//! `steps.ID` reference names a step that ran before the step using it (see [`super::steps`]
//! for how that set is built) and, when that step is inside a fan-out branch, is used from
//! inside the same branch (elsewhere it ran once per item: only the fan-out's output exists).

use std::collections::HashSet;

use serde_json::Value;

use super::check::{Checker, index_path, key_path};
use crate::template::{PathExpr, Segment, Template};

const ROOTS: &[&str] = &["trigger", "steps", "settings", "env", "user", "execution", "workflow"];
/// Roots that exist only inside a fan-out branch.
const BRANCH_ROOTS: &[&str] = &["item", "index"];
const TRIGGER_PARTS: &[&str] = &["body", "query", "headers", "payload", "event", "type"];

/// Where the templates being checked are evaluated: in a step (the rules above), or in a
/// trigger, before any execution exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum RefContext {
    #[default]
    Steps,
    /// A webhook trigger's `filter`: the event (`trigger.*`) and `user.id`.
    WebhookFilter,
    /// A poll trigger's `request`: the user's values, no trigger yet.
    PollRequest,
    /// A search attribute: evaluated when the execution starts, from the trigger and the user.
    Search,
    /// A poll trigger's `key`: one listed `item`.
    PollKey,
}

impl RefContext {
    /// Why `root` cannot be used in this context, before the general rules apply.
    fn refuses(self, root: &str) -> Option<String> {
        match (self, root) {
            (RefContext::WebhookFilter, "trigger" | "user") => None,
            (RefContext::WebhookFilter, _) => Some(format!(
                "`{root}` does not exist in a webhook filter: it is checked on the event before an \
                 execution starts (use trigger.body, trigger.headers, trigger.event or user.id)"
            )),
            (RefContext::Search, "trigger" | "user") => None,
            (RefContext::Search, _) => Some(format!(
                "`{root}` does not exist in a search attribute: it is evaluated when the execution \
                 starts (use trigger.body, trigger.query, trigger.headers, trigger.event or user.id)"
            )),
            (RefContext::PollRequest, "steps" | "trigger" | "execution" | "item" | "index") => Some(format!(
                "`{root}` does not exist in a poll's request: it runs before any execution \
                 (use settings, env, user, workflow or credentials)"
            )),
            (RefContext::PollKey, "item") => None,
            (RefContext::PollKey, _) => Some(
                "a poll's `key` is computed from each listed item: only `item` is available (e.g. `{{item.id}}`)"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// The ids of the steps that certainly ran before a point of the workflow: those added at
/// this level (a list's earlier steps, a conditional's own id) and, through `outer`, those
/// before the enclosing list. A chain, not a copy per level, so that checking is linear in
/// the workflow (12,500 conditionals used to copy the growing set 12,500 times).
pub(super) struct RanBefore<'a> {
    pub(super) here: HashSet<String>,
    pub(super) outer: Option<&'a RanBefore<'a>>,
}

impl<'a> RanBefore<'a> {
    pub(super) fn inside(outer: &'a RanBefore<'a>) -> RanBefore<'a> {
        RanBefore { here: HashSet::new(), outer: Some(outer) }
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        let mut level = Some(self);
        while let Some(current) = level {
            if current.here.contains(id) {
                return true;
            }
            level = current.outer;
        }
        false
    }
}

/// What a step may refer to.
pub(super) struct Scope<'a> {
    /// Ids of the steps that certainly ran before this one.
    pub(super) ran_before: &'a RanBefore<'a>,
    /// The id of the step being checked (for messages).
    pub(super) current: &'a str,
    /// The fan-outs whose branch the step runs in, outermost first (empty outside any): their
    /// ids, or their paths when they have no id.
    pub(super) fan_outs: &'a [String],
}

impl Checker {
    /// Checks every string inside `value` (object values and array items, not keys).
    pub(super) fn templates(&mut self, value: &Value, path: &str, scope: &Scope) {
        match value {
            Value::String(text) => self.template_string(text, path, scope),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.templates(item, &index_path(path, i), scope);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.templates(item, &key_path(path, key), scope);
                }
            }
            _ => {}
        }
    }

    fn template_string(&mut self, text: &str, path: &str, scope: &Scope) {
        if !text.contains("{{") && !text.contains("}}") {
            return;
        }
        match Template::parse(text) {
            Err(e) => self.problem(path, e.to_string()),
            Ok(template) => {
                for expr in template.expressions() {
                    if let Some(message) = self.reference_problem(expr, scope) {
                        self.problem(path, format!("`{{{{{expr}}}}}`: {message}"));
                    }
                }
            }
        }
    }

    /// Why `expr` cannot be used here, if it cannot.
    fn reference_problem(&self, expr: &PathExpr, scope: &Scope) -> Option<String> {
        let root = expr.root().unwrap_or_default();
        if self.refs_in == RefContext::PollKey && root == "item" {
            return None;
        }
        if let Some(problem) = self.refs_in.refuses(root) {
            return Some(problem);
        }
        let poll = self.trigger_type.as_deref() == Some("poll");
        match root {
            "trigger" => match expr.segments.get(1) {
                None => None,
                Some(Segment::Key(part)) if TRIGGER_PARTS.contains(&part.as_str()) => None,
                Some(Segment::Key(part)) if part == "item" && poll => None,
                Some(Segment::Key(part)) if part == "item" => {
                    Some("`trigger.item` exists only in a workflow with a `poll` trigger".to_string())
                }
                Some(_) => Some(format!(
                    "`{}` does not exist (use trigger.body, trigger.query, trigger.headers, trigger.payload, trigger.event{} or trigger.type)",
                    prefix(expr, 2),
                    if poll { ", trigger.item" } else { "" }
                )),
            },
            "steps" => self.step_reference_problem(expr, scope),
            // Values of the stack (`Settings::env`), known only at run time: a name it does not
            // hold fails the step like any missing path.
            "env" => None,
            "settings" => self.setting_reference_problem(expr),
            // The connected user's credentials for the workflow's integration.
            "credentials" if self.known_settings.is_some() => match expr.key_at(1) {
                Some(_) => None,
                None => Some("write `credentials.<name>`, e.g. `credentials.accessToken`".to_string()),
            },
            "credentials" => Some(
                "`credentials` exist only in the workflows of an integration (integrations/<name>/workflows/)".into(),
            ),
            "user" | "execution" | "workflow" => {
                let only_id = expr.segments.len() == 2 && expr.key_at(1) == Some("id");
                (!only_id).then(|| format!("only `{root}.id` is available"))
            }
            "item" | "index" if scope.fan_outs.is_empty() => {
                Some(format!("`{root}` is only available inside a fan-out branch"))
            }
            "item" => None,
            "index" => (expr.segments.len() > 1)
                .then(|| "`index` is a number (the item's position, from 0): write `{{index}}` alone".to_string()),
            other => {
                let mut available = ROOTS.to_vec();
                if !scope.fan_outs.is_empty() {
                    available.extend(BRANCH_ROOTS);
                }
                Some(format!("unknown variable `{other}` (available: {})", available.join(", ")))
            }
        }
    }

    /// In an integration's workflow, `settings.KEY` names a declared setting.
    fn setting_reference_problem(&self, expr: &PathExpr) -> Option<String> {
        let known = self.known_settings.as_ref()?;
        let Some(key) = expr.key_at(1) else {
            return Some("write `settings.<key>` to use one user setting".to_string());
        };
        if known.contains(key) {
            return None;
        }
        let mut declared: Vec<&str> = known.iter().map(String::as_str).collect();
        declared.sort_unstable();
        let declared = if declared.is_empty() { "none".to_string() } else { declared.join(", ") };
        Some(format!(
            "no setting `{key}` in the integration's inputs.yaml or the workflow's `inputs` (declared: {declared})"
        ))
    }

    fn step_reference_problem(&self, expr: &PathExpr, scope: &Scope) -> Option<String> {
        let Some(id) = expr.key_at(1) else {
            return Some("write `steps.<step id>.output` to use an earlier step's output".to_string());
        };
        if !matches!(expr.key_at(2), Some("output" | "error")) {
            return Some(format!("`steps.{id}` must be followed by `.output` or `.error`"));
        }
        let Some(runs_in) = self.known_steps.get(id) else {
            return Some(format!("no step `{id}`"));
        };
        if id == scope.current {
            return Some(format!("step `{id}` does not run before `{id}` (a step cannot use its own output)"));
        }
        if scope.fan_outs.iter().any(|fan_out| fan_out == id) {
            return Some(format!(
                "`{}` runs inside fan-out `{id}`, whose output exists only once every branch has finished",
                scope.current
            ));
        }
        if !scope.ran_before.contains(id) {
            return Some(format!("step `{id}` does not run before `{}`", scope.current));
        }
        // The first fan-out around `id` that is not around the current step: `id` ran once per
        // item of it, so outside its branch there is no single output to use.
        let outside = runs_in.iter().enumerate().find(|&(depth, fan_out)| scope.fan_outs.get(depth) != Some(fan_out));
        outside.map(|(_, fan_out)| format!("step `{id}` runs inside fan-out `{fan_out}`; use `steps.{fan_out}.output`"))
    }
}

/// The first `len` segments of `expr`, as text.
fn prefix(expr: &PathExpr, len: usize) -> String {
    PathExpr { segments: expr.segments.iter().take(len).cloned().collect() }.to_string()
}
