//! The Action step: an action of the workflow's own integration, with its params checked
//! against the catalog (unknown, missing required, and literal values of the wrong type).

use serde_json::{Map, Value};

use crate::catalog;
use crate::model::load::check::{Checker, key_path};
use crate::model::load::refs::Scope;
use crate::model::project::IMPLICIT_INTEGRATION;
use crate::template::kind;

pub(super) const KEYS: &[&str] = &["integration", "action", "params"];

impl Checker {
    pub(super) fn action(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        let own = self.integration.clone();
        let integration_path = key_path(path, "integration");
        if let Some(value) = map.get("integration")
            && let Some(named) = self.string(value, &integration_path)
            && own.as_deref() != Some(named)
        {
            let message = match &own {
                Some(own) => format!(
                    "this workflow belongs to `{own}`: an action step uses its own integration's actions, not `{named}` \
                     (move the workflow to `integrations/{named}/workflows/`)"
                ),
                None => format!(
                    "a workflow outside `integrations/` has no integration; put it in `integrations/{named}/workflows/` \
                     to use `{named}` actions"
                ),
            };
            self.problem(&integration_path, message);
            return;
        }
        let Some(own) = own else {
            self.problem(
                path,
                format!(
                    "action steps belong to an integration's workflows (`integrations/<name>/workflows/`); \
                     this workflow is in the `{IMPLICIT_INTEGRATION}` one"
                ),
            );
            return;
        };
        let action_path = key_path(path, "action");
        let Some(name) = map.get("action").and_then(|value| self.string(value, &action_path)) else {
            if !map.contains_key("action") {
                self.problem(&action_path, "`action` is required (see `sluice actions`)");
            }
            return;
        };
        let Some(entry) = catalog::integration(&own) else {
            self.problem(&action_path, format!("integration `{own}` has no actions"));
            return;
        };
        let Some(action) = entry.actions.get(name) else {
            let known: Vec<&str> = entry.actions.keys().map(String::as_str).collect();
            self.problem(&action_path, format!("`{own}` has no action `{name}` (its actions: {})", known.join(", ")));
            return;
        };
        let params_path = key_path(path, "params");
        let empty = Map::new();
        let params = match map.get("params") {
            None => &empty,
            Some(value) => match self.mapping(value, &params_path, "`params`") {
                Some(params) => params,
                None => return,
            },
        };
        let declared = action.all_params();
        for (param, value) in params {
            let at = key_path(&params_path, param);
            match declared.get(param) {
                None => {
                    let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                    self.problem(&at, format!("`{name}` has no param `{param}` (its params: {})", known.join(", ")));
                }
                Some(spec) => {
                    let templated = matches!(value, Value::String(text) if text.contains("{{"));
                    if !templated && !spec.kind.matches(value) {
                        self.problem(&at, format!("must be {}, not {}", spec.kind.name(), kind(value)));
                    } else if !templated && !spec.one_of.is_empty() && !spec.one_of.contains(value) {
                        let allowed: Vec<String> = spec.one_of.iter().map(Value::to_string).collect();
                        self.problem(&at, format!("must be one of {}", allowed.join(", ")));
                    } else if let (false, Some("path"), Value::String(text)) =
                        (templated, spec.format.as_deref(), value)
                        && let Err(why) = catalog::path::check(text)
                    {
                        self.problem(&at, format!("must be a path under `apiBaseUrl`: {why}"));
                    }
                    self.templates(value, &at, scope);
                }
            }
        }
        if let Some(Value::Number(pages)) = params.get(catalog::MAX_PAGES_PARAM)
            && !pages.as_u64().is_some_and(|n| (1..=1000).contains(&n))
        {
            self.problem(&key_path(&params_path, catalog::MAX_PAGES_PARAM), "must be 1 to 1000".to_string());
        }
        for (param, spec) in &action.params {
            if spec.required && !params.contains_key(param) {
                let message = format!("`{param}` is required by `{name}`: {}", spec.description);
                self.problem(&key_path(&params_path, param), message);
            }
        }
    }
}
