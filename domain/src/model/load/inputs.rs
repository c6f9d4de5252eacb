//! Checks of user settings declarations: an integration's `inputs.yaml` and a workflow's
//! `inputs` (see [`crate::model::project::Input`]).
//!
//! Invariant: every input is checked whole (id, type, title, the type's own keys, a default
//! that fits the type) and ids are unique within one declaration.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::check::{Checker, index_path, key_path};
use crate::model::project::InputType;
use crate::template::kind;

/// Setting keys and ids: `[A-Za-z0-9_-]`, starting with a letter or digit.
static SETTING_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("^[A-Za-z0-9][A-Za-z0-9_-]*$").ok());
const MAX_NAME_LEN: usize = 64;
/// At most this many settings in one declaration, options of a select, fields of a mapping.
pub const MAX_INPUTS: usize = 100;
const MAX_TEXT_LEN: usize = 2000;
const INPUT_KEYS: &[&str] = &["id", "type", "title", "required", "tooltip", "default", "options", "fields"];

impl Checker {
    /// A mapping of setting key → input at `path` (empty for a file's top level); returns
    /// the keys declared, whatever their problems.
    pub(super) fn inputs(&mut self, value: &Value, path: &str) -> Vec<String> {
        let what = if path.is_empty() { "an inputs file" } else { "`inputs`" };
        let Some(map) = self.mapping(value, path, what) else { return Vec::new() };
        if map.len() > MAX_INPUTS {
            self.problem(path, format!("{} settings; at most {MAX_INPUTS}", map.len()));
        }
        let mut first_id: HashMap<String, String> = HashMap::new();
        for (key, input) in map {
            let at = key_path(path, key);
            self.setting_name(key, &at, "setting key");
            if let Some(id) = self.input(input, &at) {
                match first_id.get(&id) {
                    Some(first) => self.problem(
                        &key_path(&at, "id"),
                        format!("id `{id}` is already the id of `{first}`; ids must be unique"),
                    ),
                    None => {
                        first_id.insert(id, key.clone());
                    }
                }
            }
        }
        map.keys().cloned().collect()
    }

    fn setting_name(&mut self, name: &str, path: &str, what: &str) -> bool {
        if name.len() > MAX_NAME_LEN {
            self.problem(path, format!("{what} is {} characters long; at most {MAX_NAME_LEN}", name.len()));
            return false;
        }
        if !SETTING_NAME.as_ref().is_some_and(|re| re.is_match(name)) {
            self.problem(
                path,
                format!(
                    "`{name}` is not a valid {what}: use letters, digits, `_` and `-`, starting with a letter or digit"
                ),
            );
            return false;
        }
        true
    }

    /// One input; its id if it is a valid one.
    fn input(&mut self, value: &Value, path: &str) -> Option<String> {
        let map = self.mapping(value, path, "a setting")?;
        self.only_keys(map, path, INPUT_KEYS);
        let id = match map.get("id") {
            None => {
                self.problem(&key_path(path, "id"), "`id` is required: the stable key the users' values hang on");
                None
            }
            Some(id) => {
                let at = key_path(path, "id");
                self.string(id, &at).filter(|id| self.setting_name(id, &at, "setting id")).map(str::to_string)
            }
        };
        match map.get("title") {
            None => self.problem(&key_path(path, "title"), "`title` is required: what the Connect Portal shows"),
            Some(title) => self.text(title, &key_path(path, "title")),
        }
        if let Some(tooltip) = map.get("tooltip") {
            self.text(tooltip, &key_path(path, "tooltip"));
        }
        if let Some(required) = map.get("required") {
            self.boolean(required, &key_path(path, "required"));
        }
        let kind = match map.get("type") {
            None => {
                let message = format!("`type` is required ({})", InputType::ALL.join(", "));
                self.problem(&key_path(path, "type"), message);
                None
            }
            Some(value) => {
                let at = key_path(path, "type");
                match self.string(value, &at) {
                    Some(name) => match serde_json::from_value::<InputType>(Value::from(name)) {
                        Ok(kind) => Some(kind),
                        Err(_) => {
                            let message =
                                format!("unknown setting type `{name}` (valid: {})", InputType::ALL.join(", "));
                            self.problem(&at, message);
                            None
                        }
                    },
                    None => None,
                }
            }
        };
        if let Some(kind) = kind {
            self.input_kind(map, path, kind);
        }
        id
    }

    fn text(&mut self, value: &Value, path: &str) {
        if let Some(text) = self.string(value, path)
            && text.len() > MAX_TEXT_LEN
        {
            self.problem(path, format!("{} characters; at most {MAX_TEXT_LEN}", text.len()));
        }
    }

    /// The keys only some types have, and the default.
    fn input_kind(&mut self, map: &Map<String, Value>, path: &str, kind: InputType) {
        let choices = matches!(kind, InputType::Select | InputType::MultiSelect);
        let options = match map.get("options") {
            Some(options) if choices => self.options(options, &key_path(path, "options")),
            Some(_) => {
                self.problem(&key_path(path, "options"), "`options` is only for `select` and `multi_select`");
                None
            }
            None if choices => {
                self.problem(&key_path(path, "options"), "`options` is required: the values to choose from");
                None
            }
            None => None,
        };
        let fields = match map.get("fields") {
            Some(fields) if kind == InputType::FieldMapping => self.fields(fields, &key_path(path, "fields")),
            Some(_) => {
                self.problem(&key_path(path, "fields"), "`fields` is only for `field_mapping`");
                None
            }
            None if kind == InputType::FieldMapping => {
                self.problem(&key_path(path, "fields"), "`fields` is required: field id → title");
                None
            }
            None => None,
        };
        let Some(default) = map.get("default") else { return };
        let at = key_path(path, "default");
        if kind == InputType::Password {
            self.problem(&at, "a `password` setting has no default (it would be a secret in the file)");
            return;
        }
        let declared = Declared { options: options.as_deref(), fields: fields.as_deref() };
        if let Some(message) = value_problem(kind, default, &declared) {
            self.problem(&at, message);
        }
    }

    fn options(&mut self, value: &Value, path: &str) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.problem(path, format!("must be a list of strings, not {}", kind(value)));
            return None;
        };
        if items.is_empty() || items.len() > MAX_INPUTS {
            self.problem(path, format!("{} options; from 1 to {MAX_INPUTS}", items.len()));
        }
        let mut seen = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = index_path(path, i);
            if let Some(text) = self.string(item, &at) {
                if seen.iter().any(|s| s == text) {
                    self.problem(&at, format!("option `{text}` is listed twice"));
                }
                seen.push(text.to_string());
            }
        }
        Some(seen)
    }

    fn fields(&mut self, value: &Value, path: &str) -> Option<Vec<String>> {
        let map = self.mapping(value, path, "`fields`")?;
        if map.is_empty() || map.len() > MAX_INPUTS {
            self.problem(path, format!("{} fields; from 1 to {MAX_INPUTS}", map.len()));
        }
        for (field, title) in map {
            let at = key_path(path, field);
            self.setting_name(field, &at, "field id");
            self.text(title, &at);
        }
        Some(map.keys().cloned().collect())
    }
}

/// What an input declares that its values must fit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Declared<'a> {
    pub options: Option<&'a [String]>,
    pub fields: Option<&'a [String]>,
}

/// Why `value` is not a value of an input of type `kind`, if it is not.
pub fn value_problem(input_type: InputType, value: &Value, declared: &Declared) -> Option<String> {
    let choose = |text: &str| {
        declared
            .options
            .filter(|options| !options.iter().any(|o| o == text))
            .map(|options| format!("`{text}` is not one of the options ({})", options.join(", ")))
    };
    match (input_type, value) {
        (InputType::Text | InputType::Password, Value::String(text)) => {
            (text.len() > MAX_TEXT_LEN).then(|| format!("{} characters; at most {MAX_TEXT_LEN}", text.len()))
        }
        (InputType::Number, Value::Number(_)) | (InputType::Boolean, Value::Bool(_)) => None,
        (InputType::Select, Value::String(text)) => choose(text),
        (InputType::MultiSelect, Value::Array(items)) => items.iter().find_map(|item| match item {
            Value::String(text) => choose(text),
            other => Some(format!("every choice must be a string, not {}", kind(other))),
        }),
        (InputType::FieldMapping, Value::Object(map)) => {
            let fields = declared.fields.unwrap_or_default();
            map.iter().find_map(|(field, mapped)| {
                if !fields.iter().any(|f| f == field) {
                    Some(format!("`{field}` is not a field of this mapping ({})", fields.join(", ")))
                } else if !mapped.is_string() {
                    Some(format!("field `{field}` must map to a string, not {}", kind(mapped)))
                } else {
                    None
                }
            })
        }
        (input_type, other) => Some(format!("must be {}, not {}", expected(input_type), kind(other))),
    }
}

fn expected(kind: InputType) -> &'static str {
    match kind {
        InputType::Text | InputType::Password | InputType::Select => "a string",
        InputType::Number => "a number",
        InputType::Boolean => "true or false",
        InputType::MultiSelect => "a list of strings",
        InputType::FieldMapping => "a mapping of field → string",
    }
}
