//! The Request step: URL, method, query, headers, body and its encoding, auth, timeout
//! (pagination in [`super::pagination`]).

use serde_json::{Map, Value};

use super::MAX_WAIT;
use crate::model::load::check::{Checker, key_path};
use crate::model::load::refs::Scope;
use crate::template::{Template, kind};

pub(super) const KEYS: &[&str] =
    &["method", "url", "query", "headers", "body", "body_type", "auth", "timeout", "pagination"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const BODY_TYPES: &[&str] = &["json", "form", "multipart", "raw"];
const AUTH_TYPES: &[&str] = &["basic", "bearer"];

impl Checker {
    pub(in crate::model::load) fn request(&mut self, map: &Map<String, Value>, path: &str, scope: &Scope) {
        let url_path = key_path(path, "url");
        match map.get("url") {
            None => self.problem(&url_path, "`url` is required"),
            Some(value) => {
                if let Some(url) = self.string(value, &url_path) {
                    if url.trim().is_empty() {
                        self.problem(&url_path, "must not be empty");
                    } else if !is_http_url_or_template(url) {
                        self.problem(&url_path, format!("`{url}` must start with http:// or https://"));
                    }
                }
                self.templates(value, &url_path, scope);
            }
        }
        if let Some(value) = map.get("method") {
            self.method(value, &key_path(path, "method"));
        }
        self.templated_mapping(map, path, "query", scope);
        self.templated_mapping(map, path, "headers", scope);
        if let Some(body) = map.get("body") {
            self.templates(body, &key_path(path, "body"), scope);
        }
        self.body_type(map, path);
        if let Some(auth) = map.get("auth") {
            self.auth(auth, &key_path(path, "auth"), scope);
        }
        if let Some(timeout) = map.get("timeout") {
            self.duration(timeout, &key_path(path, "timeout"), MAX_WAIT, true);
        }
        if let Some(pagination) = map.get("pagination") {
            self.pagination(pagination, &key_path(path, "pagination"));
        }
    }

    fn method(&mut self, value: &Value, path: &str) {
        if let Some(method) = self.string(value, path)
            && !METHODS.contains(&method)
        {
            let upper = method.to_ascii_uppercase();
            let message = if METHODS.contains(&upper.as_str()) {
                format!("method must be uppercase: write `{upper}`")
            } else {
                format!("unknown method `{method}` (use {})", METHODS.join(", "))
            };
            self.problem(path, message);
        }
    }

    /// `body_type`, and whether a literal `body` fits it.
    fn body_type(&mut self, map: &Map<String, Value>, path: &str) {
        let type_path = key_path(path, "body_type");
        let body_type = match map.get("body_type") {
            None => "json",
            Some(value) => match self.string(value, &type_path) {
                Some(name) if BODY_TYPES.contains(&name) => name,
                Some(name) => {
                    let known = BODY_TYPES.join(", ");
                    self.problem(&type_path, format!("unknown body type `{name}` (use {known})"));
                    return;
                }
                None => return,
            },
        };
        let Some(body) = map.get("body") else { return };
        let body_path = key_path(path, "body");
        match (body_type, body) {
            ("raw", Value::String(_)) | ("form" | "multipart", Value::Object(_)) => {}
            ("raw", other) => self.problem(
                &body_path,
                format!("with `body_type: raw` the body must be a string (the text to send), not {}", kind(other)),
            ),
            ("form" | "multipart", Value::String(text)) if is_single_expression(text) => {}
            ("form" | "multipart", other) => self.problem(
                &body_path,
                format!(
                    "with `body_type: {body_type}` the body must be a mapping of fields \
                     (or one `{{{{...}}}}` expression giving one), not {}",
                    kind(other)
                ),
            ),
            _ => {}
        }
    }

    /// `auth`: `{type: basic, username, password}` or `{type: bearer, token}`.
    fn auth(&mut self, value: &Value, path: &str, scope: &Scope) {
        let Some(map) = self.mapping(value, path, "`auth`") else {
            return;
        };
        let type_path = key_path(path, "type");
        let auth_type = match map.get("type") {
            None => {
                self.problem(&type_path, format!("`type` is required ({})", AUTH_TYPES.join(", ")));
                return;
            }
            Some(value) => self.string(value, &type_path),
        };
        let Some(auth_type) = auth_type else { return };
        let fields: &[&str] = match auth_type {
            "basic" => &["username", "password"],
            "bearer" => &["token"],
            other => {
                let known = AUTH_TYPES.join(", ");
                self.problem(&type_path, format!("unknown auth type `{other}` (known: {known})"));
                return;
            }
        };
        let allowed: Vec<&str> = ["type"].iter().chain(fields).copied().collect();
        self.only_keys(map, path, &allowed);
        for field in fields {
            let field_path = key_path(path, field);
            match map.get(*field) {
                None => self.problem(&field_path, format!("`{field}` is required for `{auth_type}` auth")),
                Some(value) => {
                    if self.string(value, &field_path).is_some() {
                        self.templates(value, &field_path, scope);
                    }
                }
            }
        }
    }
}

/// Whether `url` starts with http(s):// or holds a `{{...}}` that may produce the scheme.
fn is_http_url_or_template(url: &str) -> bool {
    url.contains("{{") || url.starts_with("http://") || url.starts_with("https://")
}

/// Whether `text` is exactly one `{{...}}` expression (whose value keeps its JSON type).
fn is_single_expression(text: &str) -> bool {
    Template::parse(text).is_ok_and(|template| template.as_single_expr().is_some())
}
