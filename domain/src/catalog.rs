//! The integration action catalog: one YAML data file per integration (`domain/catalog/`),
//! compiled in. An action is a request template on the integration's `apiBaseUrl`: method,
//! path, query, headers and body over `{{params.X}}`, optional pagination, an output mapping
//! over `{{response...}}` and, for APIs that answer 200 on failure, an `okWhen` check. Adding
//! an action is adding data, not code; `sluice actions` prints the catalog.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Pagination;
use crate::model::project::{Authorization, CUSTOM_PREFIX};

pub mod path;

/// The catalog key of every custom integration's actions.
pub const CUSTOM: &str = "custom";

const FILES: &[(&str, &str)] = &[
    ("googlecalendar", include_str!("../catalog/googlecalendar.yaml")),
    ("hubspot", include_str!("../catalog/hubspot.yaml")),
    ("salesforce", include_str!("../catalog/salesforce.yaml")),
    ("slack", include_str!("../catalog/slack.yaml")),
    (CUSTOM, include_str!("../catalog/custom.yaml")),
];

/// One integration's actions and API defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogIntegration {
    pub integration: String,
    pub description: String,
    /// The API's public base URL; a project's `config.yaml` may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    /// What every request carries, from the user's stored credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// The provider's OAuth 2.0 endpoints and the scopes the actions need: a project whose
    /// `config.yaml` gives `clientId` and `clientSecret` connects users with the hosted flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<CatalogOAuth>,
    pub actions: BTreeMap<String, Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogOAuth {
    pub authorization_url: String,
    pub access_token_url: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    pub description: String,
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    pub request: ActionRequest,
    /// Fails the step unless the value at `path` of the response is `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_when: Option<OkWhen>,
    /// The step's output, templated over `{{response...}}` (default: the whole response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub output_description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub required: bool,
    pub description: String,
    /// The values it may take.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<Value>,
    /// `path`: a URL path sent as given, which must stay under the base URL (see
    /// [`path::check`]); other values in a path are percent-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
    Any,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Object => "object",
            ParamType::Array => "array",
            ParamType::Any => "any",
        }
    }

    pub fn matches(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Object => value.is_object(),
            ParamType::Array => value.is_array(),
            ParamType::Any => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, or `{{params.X}}` (default GET).
    pub method: String,
    /// Appended to `apiBaseUrl`; `{{params.X}}` values are percent-encoded.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OkWhen {
    pub path: String,
    /// Where the API's error message is.
    pub message: String,
}

static CATALOG: LazyLock<Result<BTreeMap<String, CatalogIntegration>, String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, text)| {
            let parsed: CatalogIntegration =
                serde_yaml_ng::from_str(text).map_err(|e| format!("catalog/{name}.yaml: {e}"))?;
            Ok((name.to_string(), parsed))
        })
        .collect()
});

/// The whole catalog, by integration (custom integrations under [`CUSTOM`]); an empty one if
/// a catalog file does not parse (a build defect, caught by this module's tests).
pub fn all() -> &'static BTreeMap<String, CatalogIntegration> {
    static EMPTY: BTreeMap<String, CatalogIntegration> = BTreeMap::new();
    CATALOG.as_ref().unwrap_or(&EMPTY)
}

/// The catalog entry of the integration named `name` (a folder name; `custom.*` → [`CUSTOM`]).
pub fn integration(name: &str) -> Option<&'static CatalogIntegration> {
    let key = if name.starts_with(CUSTOM_PREFIX) { CUSTOM } else { name };
    all().get(key)
}

/// `name`'s action `action`.
pub fn action(name: &str, action: &str) -> Option<&'static Action> {
    integration(name)?.actions.get(action)
}

/// The catalog as Markdown: every integration, action, parameter and output.
pub fn markdown(only: Option<&str>) -> String {
    let mut out = String::new();
    for (key, entry) in all() {
        if only.is_some_and(|only| integration(only).map(|i| &i.integration) != Some(&entry.integration)) {
            continue;
        }
        let title = if key == CUSTOM { "custom.<name>".to_string() } else { key.clone() };
        out.push_str(&format!("## {title}\n\n{}\n\n", entry.description));
        if let Some(oauth) = &entry.oauth {
            out.push_str(&format!(
                "OAuth (with `clientId` and `clientSecret` in its `config.yaml`): `{}`, token `{}`, scopes `{}`.\n\n",
                oauth.authorization_url,
                oauth.access_token_url,
                oauth.scopes.join(" ")
            ));
        }
        for (name, action) in &entry.actions {
            out.push_str(&format!("### `{name}`\n\n{}\n\n", action.description));
            let method = &action.request.method;
            out.push_str(&format!("`{method} {}`\n\n", action.request.path));
            if !action.params.is_empty() {
                out.push_str("| param | type | required | description |\n|---|---|---|---|\n");
                for (param, spec) in &action.params {
                    let mut kind = spec.kind.name().to_string();
                    if !spec.one_of.is_empty() {
                        let values: Vec<String> = spec.one_of.iter().map(Value::to_string).collect();
                        kind = format!("{kind} ({})", values.join(", "));
                    }
                    let required = if spec.required { "yes" } else { "no" };
                    out.push_str(&format!("| `{param}` | {kind} | {required} | {} |\n", spec.description));
                }
                out.push('\n');
            }
            out.push_str(&format!("Output: {}\n\n", action.output_description));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    #[test]
    fn every_catalog_file_parses_and_is_named_after_its_integration() {
        let catalog = CATALOG.as_ref().expect("the catalog parses");
        assert_eq!(catalog.len(), FILES.len());
        for (key, entry) in catalog {
            assert_eq!(&entry.integration, key);
            assert!(!entry.actions.is_empty(), "{key} has no actions");
        }
        for built_in in crate::model::project::BUILT_IN_INTEGRATIONS {
            let entry = integration(built_in).expect("every built-in integration has a catalog entry");
            assert!(entry.api_base_url.is_some() && entry.authorization.is_some(), "{built_in}");
            let oauth = entry.oauth.as_ref().expect("every built-in integration connects with OAuth");
            for url in [&oauth.authorization_url, &oauth.access_token_url] {
                assert!(url.starts_with("https://"), "{built_in}: {url}");
            }
        }
        assert_eq!(integration("custom.acme").map(|i| i.integration.as_str()), Some(CUSTOM));
    }

    fn params_read(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::String(text) => {
                let template = Template::parse(text).expect("a catalog template parses");
                for expr in template.expressions() {
                    assert_eq!(expr.root(), Some("params"), "catalog request templates read only params: {text}");
                    found.extend(expr.key_at(1).map(str::to_string));
                }
            }
            Value::Array(items) => items.iter().for_each(|v| params_read(v, found)),
            Value::Object(map) => map.values().for_each(|v| params_read(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_action_template_reads_only_declared_params_and_every_param_is_used() {
        for (key, entry) in all() {
            for (name, action) in &entry.actions {
                let request = &action.request;
                let mut read = Vec::new();
                for value in [Some(&Value::from(request.method.clone())), Some(&Value::from(request.path.clone()))]
                    .into_iter()
                    .chain([request.query.as_ref(), request.headers.as_ref(), request.body.as_ref()])
                    .flatten()
                {
                    params_read(value, &mut read);
                }
                for param in &read {
                    assert!(action.params.contains_key(param), "{key}.{name} reads undeclared `{param}`");
                }
                for param in action.params.keys() {
                    assert!(read.contains(param), "{key}.{name} never sends `{param}`");
                }
            }
        }
    }

    #[test]
    fn docs_actions_md_is_the_current_catalog() {
        let docs = include_str!("../../docs/actions.md");
        assert!(
            docs.ends_with(&markdown(None)),
            "docs/actions.md is out of date: run `cargo run -p sluice-cli -- actions` and replace its catalog part"
        );
    }

    #[test]
    fn the_markdown_documents_every_action_and_param() {
        let all_docs = markdown(None);
        for entry in all().values() {
            for (name, action) in &entry.actions {
                assert!(all_docs.contains(&format!("### `{name}`")), "{name}");
                for param in action.params.keys() {
                    assert!(all_docs.contains(&format!("| `{param}` |")), "{name}.{param}");
                }
            }
        }
        let slack = markdown(Some("slack"));
        assert!(slack.contains("send_message") && !slack.contains("soql_query"));
        assert!(markdown(Some("custom.acme")).contains("### `request`"));
    }
}
