//! The Response step: status, headers, and a body or a file.

use serde_json::{Map, Value};

use crate::model::load::check::{Checker, key_path};
use crate::model::load::refs::Scope;

pub(super) const KEYS: &[&str] = &["status", "headers", "body", "file"];

impl Checker {
    pub(super) fn response(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        if let Some(status) = map.get("status") {
            let status_path = key_path(path, "status");
            match status {
                Value::Number(n) if n.as_u64().is_some_and(|n| (200..=599).contains(&n)) => {}
                Value::String(text) if text.contains("{{") => self.templates(status, &status_path, scope),
                Value::String(text) if text.trim().parse::<u64>().is_ok() => {
                    self.problem(
                        &status_path,
                        format!("write the status as a number, without quotes: {}", text.trim()),
                    );
                }
                _ => self
                    .problem(&status_path, "must be an integer from 200 to 599 or a `{{...}}` expression".to_string()),
            }
        }
        if let Some(headers) = map.get("headers") {
            let headers_path = key_path(path, "headers");
            if let Some(headers_map) = self.mapping(headers, &headers_path, "`headers`") {
                for (name, value) in headers_map {
                    self.string(value, &key_path(&headers_path, name));
                }
                self.templates(headers, &headers_path, scope);
            }
        }
        if let Some(body) = map.get("body") {
            self.templates(body, &key_path(path, "body"), scope);
        }
        if let Some(file) = map.get("file") {
            let file_path = key_path(path, "file");
            self.single_expression(file, &file_path, scope, "a file object", "{{steps.download.output.file}}");
            if map.contains_key("body") {
                self.problem(&file_path, "`file` and `body` cannot be used together: answer with one of them");
            }
        }
    }
}
