//! The Function step: JavaScript code, its parameters and its limits.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::model::load::check::{Checker, MaxDuration, key_path};
use crate::model::load::refs::Scope;

pub(super) const KEYS: &[&str] = &["code", "parameters", "time_limit", "memory_limit_mb"];
/// The largest `code`, in bytes (100 KB).
const MAX_CODE_BYTES: usize = 100 * 1024;
const MAX_TIME_LIMIT: MaxDuration = MaxDuration { value: Duration::from_secs(60), text: "60s" };
const MAX_MEMORY_MB: u64 = 512;
/// The bundled libraries need about 3 MB.
const MIN_MEMORY_MB: u64 = 8;

impl Checker {
    pub(super) fn function(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        let code_path = key_path(path, "code");
        match map.get("code") {
            None => self.problem(
                &code_path,
                "`code` is required: a JavaScript function, e.g. `(parameters, libraries) => parameters.total * 2`",
            ),
            Some(code) => {
                // Code is not templated: values come in through `parameters`.
                if let Some(text) = self.string(code, &code_path) {
                    if text.trim().is_empty() {
                        self.problem(&code_path, "must not be empty");
                    } else if text.len() > MAX_CODE_BYTES {
                        let message =
                            format!("the code is {} bytes long; at most {MAX_CODE_BYTES} (100 KB)", text.len());
                        self.problem(&code_path, message);
                    }
                }
            }
        }
        self.templated_mapping(map, path, "parameters", scope);
        if let Some(limit) = map.get("time_limit") {
            self.duration(limit, &key_path(path, "time_limit"), MAX_TIME_LIMIT, true);
        }
        if let Some(memory) = map.get("memory_limit_mb") {
            self.whole_number(memory, &key_path(path, "memory_limit_mb"), MIN_MEMORY_MB, Some(MAX_MEMORY_MB));
        }
    }
}
