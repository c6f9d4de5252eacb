//! Loading workflow files (YAML or JSON) and validating them.
//!
//! Invariant: a [`Workflow`] comes out only when the file has no problem at all; otherwise
//! every problem found is returned (not just the first), each with its file, its path inside
//! the file (`steps[2].url`) and what is wrong. The raw JSON tree is validated before it is
//! turned into the serde types, so typos, unknown keys and bad `{{...}}` references are all
//! reported with their path.

mod check;
mod refs;
mod steps;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Workflow;

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
    let found = check::check_workflow(value);
    if !found.is_empty() {
        return Err(found
            .into_iter()
            .map(|(path, message)| Problem { file: file.to_string(), path, message })
            .collect());
    }
    serde_json::from_value::<Workflow>(value.clone())
        .map_err(|e| vec![Problem::whole_file(file, format!("the workflow could not be read: {e}"))])
}

/// Reads and validates one workflow file.
pub fn load_file(path: &Path) -> Result<Workflow, Vec<Problem>> {
    let file = path.display().to_string();
    let text =
        fs::read_to_string(path).map_err(|e| vec![Problem::whole_file(&file, format!("cannot read the file: {e}"))])?;
    load_str(&file, &text)
}

/// Loads every `*.yaml`, `*.yml` and `*.json` file directly inside `dir` (sorted by file
/// name; hidden files skipped). Problems of all files are returned together; two files with
/// the same workflow id are a problem. An empty folder gives `Ok(vec![])`.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Workflow)>, Vec<Problem>> {
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
    let mut first_file_of: HashMap<String, PathBuf> = HashMap::new();
    for path in files {
        match load_file(&path) {
            Ok(workflow) => {
                if let Some(first) = first_file_of.get(&workflow.id) {
                    problems.push(Problem {
                        file: path.display().to_string(),
                        path: "id".to_string(),
                        message: format!(
                            "workflow id `{}` is already used by {}; ids must be unique within a project",
                            workflow.id,
                            first.display()
                        ),
                    });
                } else {
                    first_file_of.insert(workflow.id.clone(), path.clone());
                    loaded.push((path, workflow));
                }
            }
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() { Ok(loaded) } else { Err(problems) }
}

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
fn parse_text(file: &str, text: &str) -> Result<Value, Problem> {
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
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(syntax)?;
    yaml.apply_merge().map_err(syntax)?;
    serde_json::to_value(&yaml).map_err(|e| format!("the YAML document cannot be read as workflow data: {e}"))
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
mod tests_kinds;
