//! Loading workflow files (YAML or JSON) and validating them.
//!
//! Invariant: a [`Workflow`] comes out only when the file has no problem at all; otherwise
//! every problem found is returned (not just the first), each with its file, its path inside
//! the file (`steps[2].url`) and what is wrong. The raw JSON tree is validated before it is
//! turned into the serde types, so typos, unknown keys and bad `{{...}}` references are all
//! reported with their path.

mod check;

pub use check::{MAX_EVENT_NAME_LEN, event_name_problem};
pub mod inputs;
pub mod project;
mod refs;
mod steps;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Workflow;
use super::project::Input;

/// One thing wrong with a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as given to the loader.
    pub file: String,
    /// Where in the file, e.g. `steps[1].then[0].id`; empty for the file as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

impl Problem {
    fn whole_file(file: &str, message: String) -> Problem {
        Problem { file: file.to_string(), path: String::new(), message }
    }
}

/// Parses and validates one workflow; the format comes from the extension of `file`
/// (`.yaml`/`.yml` or `.json`).
pub fn load_str(file: &str, text: &str) -> Result<Workflow, Vec<Problem>> {
    let value = parse_text(file, text).map_err(|problem| vec![problem])?;
    load_value(file, &value)
}

/// Validates an already parsed workflow document (e.g. a JSON body) and converts it.
pub fn load_value(file: &str, value: &Value) -> Result<Workflow, Vec<Problem>> {
    load_value_in(file, value, None)
}

/// An integration a workflow belongs to, as its loader sees it: its name and the settings
/// of its `inputs.yaml`.
pub type IntegrationOf<'a> = Option<(&'a str, &'a BTreeMap<String, Input>)>;

/// [`load_value`] for a workflow of `integration`: `{{settings.KEY}}` must name a declared
/// setting, and the workflow comes out with its `integration` set.
pub fn load_value_in(file: &str, value: &Value, integration: IntegrationOf) -> Result<Workflow, Vec<Problem>> {
    if crate::record::too_deep(value) {
        return Err(vec![Problem::whole_file(
            file,
            format!("the workflow nests deeper than {MAX_WORKFLOW_DEPTH} levels"),
        )]);
    }
    let keys: Option<(&str, Vec<String>)> = integration.map(|(name, inputs)| (name, inputs.keys().cloned().collect()));
    let found = check::check_workflow(value, keys.as_ref().map(|(name, keys)| (*name, keys.as_slice())));
    if !found.is_empty() {
        return Err(found
            .into_iter()
            .map(|(path, message)| Problem { file: file.to_string(), path, message })
            .collect());
    }
    let mut workflow = serde_json::from_value::<Workflow>(value.clone())
        .map_err(|e| vec![Problem::whole_file(file, format!("the workflow could not be read: {e}"))])?;
    if let Some((name, inputs)) = integration {
        workflow.integration = Some(name.to_string());
        workflow.integration_inputs = inputs.clone();
    }
    Ok(workflow)
}

/// Reads and validates one workflow file.
pub fn load_file(path: &Path) -> Result<Workflow, Vec<Problem>> {
    load_file_in(path, None)
}

fn load_file_in(path: &Path, integration: IntegrationOf) -> Result<Workflow, Vec<Problem>> {
    load_file_with_id(path, integration).1
}

/// [`load_file_in`], with the file's `id` whenever it is text, even when the file has other
/// problems (so a duplicate id is reported beside them).
fn load_file_with_id(path: &Path, integration: IntegrationOf) -> (Option<String>, Result<Workflow, Vec<Problem>>) {
    let file = path.display().to_string();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return (None, Err(vec![Problem::whole_file(&file, format!("cannot read the file: {e}"))])),
    };
    let value = match parse_text(&file, &text) {
        Ok(value) => value,
        Err(problem) => return (None, Err(vec![problem])),
    };
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    (id, load_value_in(&file, &value, integration))
}

/// Loads every `*.yaml`, `*.yml` and `*.json` file directly inside `dir` (sorted by file
/// name; hidden files skipped). Problems of all files are returned together; two files with
/// the same workflow id are a problem. An empty folder gives `Ok(vec![])`.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Workflow)>, Vec<Problem>> {
    let mut ids = Vec::new();
    let loaded = load_dir_files(dir, None, &mut ids);
    let duplicates = duplicate_ids(&ids);
    match loaded {
        Ok(found) if duplicates.is_empty() => {
            Ok(found.into_iter().map(|(file, wf)| (PathBuf::from(file), wf)).collect())
        }
        Ok(_) => Err(duplicates),
        Err(mut problems) => {
            problems.extend(duplicates);
            Err(problems)
        }
    }
}

/// A problem for every file whose workflow id an earlier file of `ids` (file, id) already has.
fn duplicate_ids(ids: &[(String, String)]) -> Vec<Problem> {
    let mut first_file_of: HashMap<&str, &str> = HashMap::new();
    let mut problems = Vec::new();
    for (file, id) in ids {
        match first_file_of.get(id.as_str()) {
            Some(first) => problems.push(Problem {
                file: file.clone(),
                path: "id".to_string(),
                message: format!("workflow id `{id}` is already used by {first}; ids must be unique within a project"),
            }),
            None => {
                first_file_of.insert(id, file);
            }
        }
    }
    problems
}

/// [`load_dir`] for the workflows of `integration` (or of none); files as strings. Every
/// file's id (even of a file with problems) is added to `ids`, for [`duplicate_ids`].
fn load_dir_files(
    dir: &Path,
    integration: IntegrationOf,
    ids: &mut Vec<(String, String)>,
) -> Result<Vec<(String, Workflow)>, Vec<Problem>> {
    let folder = dir.display().to_string();
    let entries =
        fs::read_dir(dir).map_err(|e| vec![Problem::whole_file(&folder, format!("cannot read the folder: {e}"))])?;
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if is_workflow_file(&path) && path.is_file() {
                    files.push(path);
                }
            }
            Err(e) => problems.push(Problem::whole_file(&folder, format!("cannot list the folder: {e}"))),
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let mut loaded = Vec::new();
    for path in files {
        let (id, workflow) = load_file_with_id(&path, integration);
        if let Some(id) = id {
            ids.push((path.display().to_string(), id));
        }
        match workflow {
            Ok(workflow) => loaded.push((path.display().to_string(), workflow)),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() { Ok(loaded) } else { Err(problems) }
}

pub use project::{is_project, load_project};

fn is_workflow_file(path: &Path) -> bool {
    let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
    !hidden && format_of(&path.display().to_string()).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

fn format_of(file: &str) -> Option<Format> {
    let extension = Path::new(file).extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "yaml" | "yml" => Some(Format::Yaml),
        "json" => Some(Format::Json),
        _ => None,
    }
}

/// The document as a JSON tree; syntax errors name their line and column.
pub fn parse_text(file: &str, text: &str) -> Result<Value, Problem> {
    if text.len() > MAX_WORKFLOW_BYTES {
        return Err(Problem::whole_file(
            file,
            format!("the file is {} bytes; a workflow file may have at most {MAX_WORKFLOW_BYTES}", text.len()),
        ));
    }
    match format_of(file) {
        Some(Format::Yaml) => parse_yaml(text).map_err(|message| Problem::whole_file(file, message)),
        Some(Format::Json) => serde_json::from_str(text).map_err(|e| {
            let message = without_location(&e.to_string(), e.line(), e.column());
            Problem::whole_file(
                file,
                format!("JSON syntax error at line {}, column {}: {message}", e.line(), e.column()),
            )
        }),
        None => Err(Problem::whole_file(
            file,
            "unsupported file type: workflow files end in .yaml, .yml or .json".to_string(),
        )),
    }
}

/// The largest workflow file the loader reads.
pub const MAX_WORKFLOW_BYTES: usize = 256 * 1024;
/// How deeply a workflow document may nest (mappings and lists).
pub const MAX_WORKFLOW_DEPTH: usize = 64;
/// How many values a YAML document may expand to, aliases counted at each use (a 256 KiB file
/// without aliases has far fewer): past it, the loader stops before building the expansion.
pub const MAX_YAML_VALUES: usize = 250_000;

fn parse_yaml(text: &str) -> Result<Value, String> {
    let syntax = |e: serde_yaml_ng::Error| match e.location() {
        Some(at) => format!(
            "YAML syntax error at line {}, column {}: {}",
            at.line(),
            at.column(),
            without_location(&e.to_string(), at.line(), at.column())
        ),
        None => format!("YAML syntax error: {e}"),
    };
    // libyaml's scanner takes time quadratic in the depth of flow collections (`[[[[...`):
    // refuse those before it sees them.
    if flow_depth(text) > MAX_WORKFLOW_DEPTH {
        return Err(format!("the YAML document nests deeper than {MAX_WORKFLOW_DEPTH} levels"));
    }
    let budget = std::cell::Cell::new(MAX_YAML_VALUES);
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let mut yaml =
        serde::de::DeserializeSeed::deserialize(bounded::Bounded { budget: &budget, depth: 0 }, deserializer).map_err(
            |e| match bounded::limit_message(&e) {
                Some(message) => message,
                None => syntax(e),
            },
        )?;
    yaml.apply_merge().map_err(syntax)?;
    serde_json::to_value(&yaml).map_err(|e| format!("the YAML document cannot be read as workflow data: {e}"))
}

/// The deepest nesting of `[`/`{` in `text` outside quoted strings and comments: an upper
/// bound of its flow collections' depth (brackets inside plain scalars count too, which only
/// matters for a scalar with dozens of unclosed brackets).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        match c {
            '#' if previous.is_whitespace() => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                previous = '\n';
                continue;
            }
            '"' => {
                while let Some(inner) = chars.next() {
                    match inner {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if !previous.is_alphanumeric() => {
                while let Some(inner) = chars.next() {
                    if inner == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    deepest
}

/// Reading a YAML document into a `serde_yaml_ng::Value` under the loader's limits: every
/// value read (each use of an alias expands again) spends one unit of a budget, and nesting
/// is counted, so a document that would expand past [`MAX_YAML_VALUES`] or nest past
/// [`MAX_WORKFLOW_DEPTH`] is refused before its expansion is built.
mod bounded {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_yaml_ng::{Mapping, Value};

    use super::{MAX_WORKFLOW_DEPTH, MAX_YAML_VALUES};

    const TOO_MANY: &str = "sluice-limit: values";
    const TOO_DEEP: &str = "sluice-limit: depth";

    /// The load error for a limit hit while reading, if `error` is one.
    pub(super) fn limit_message(error: &serde_yaml_ng::Error) -> Option<String> {
        let text = error.to_string();
        if text.contains(TOO_MANY) {
            Some(format!("the YAML document expands to more than {MAX_YAML_VALUES} values (aliases count at each use)"))
        } else if text.contains(TOO_DEEP) {
            Some(format!("the YAML document nests deeper than {MAX_WORKFLOW_DEPTH} levels"))
        } else {
            None
        }
    }

    #[derive(Clone, Copy)]
    pub(super) struct Bounded<'b> {
        pub(super) budget: &'b Cell<usize>,
        pub(super) depth: usize,
    }

    impl Bounded<'_> {
        fn spend<E: de::Error>(self) -> Result<(), E> {
            match self.budget.get().checked_sub(1) {
                Some(left) => {
                    self.budget.set(left);
                    Ok(())
                }
                None => Err(E::custom(TOO_MANY)),
            }
        }

        fn nested<E: de::Error>(self) -> Result<Self, E> {
            if self.depth >= MAX_WORKFLOW_DEPTH {
                return Err(E::custom(TOO_DEEP));
            }
            Ok(Bounded { depth: self.depth + 1, ..self })
        }
    }

    impl<'de> DeserializeSeed<'de> for Bounded<'_> {
        type Value = Value;

        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Bounded<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a YAML value")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Bool(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Number(v.into()))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Number(v.into()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Number(v.into()))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::String(v.to_string()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::String(v))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Null)
        }

        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }

        fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            self.deserialize(deserializer)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.spend()?;
            let inner = self.nested()?;
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(inner)? {
                items.push(item);
            }
            Ok(Value::Sequence(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.spend()?;
            let inner = self.nested()?;
            let mut mapping = Mapping::new();
            while let Some(key) = map.next_key_seed(inner)? {
                if mapping.contains_key(&key) {
                    let shown = match &key {
                        Value::String(text) => format!("`{text}`"),
                        _ => "a repeated key".to_string(),
                    };
                    return Err(de::Error::custom(format!("duplicate entry with key {shown}")));
                }
                let value = map.next_value_seed(inner)?;
                mapping.insert(key, value);
            }
            Ok(Value::Mapping(mapping))
        }
    }
}

/// `message` without its first " at line L column C" (the caller puts the location first).
fn without_location(message: &str, line: usize, column: usize) -> String {
    message.replacen(&format!(" at line {line} column {column}"), "", 1)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_docs;
#[cfg(test)]
mod tests_fan_out;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_kinds;
#[cfg(test)]
mod tests_project;
