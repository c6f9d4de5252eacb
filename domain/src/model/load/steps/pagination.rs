//! A Request step's `pagination`: one shape per `style`.

use serde_json::{Map, Value};

use crate::model::load::check::{Checker, key_path};
use crate::template::PathExpr;

const STYLES: &[&str] = &["cursor", "link", "next_url", "page", "offset"];
const MAX_PAGES: u64 = 1000;

/// The keys of a pagination `style` besides `style` itself, and which of them are required.
fn style_keys(style: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match style {
        "cursor" => (&["items", "cursor", "param", "max_pages"], &["items", "cursor", "param"]),
        "link" => (&["items", "max_pages"], &["items"]),
        "next_url" => (&["items", "next", "max_pages"], &["items", "next"]),
        "page" => (&["items", "param", "start", "page_size", "max_pages"], &["items"]),
        "offset" => (&["items", "param", "limit_param", "limit", "max_pages"], &["items", "limit"]),
        _ => return None,
    })
}

/// Why a required pagination key is needed.
fn required_because(key: &str) -> &'static str {
    match key {
        "items" => "the path of the array to collect in each response, e.g. `body.data`",
        "cursor" => "the path of the next cursor in each response, e.g. `body.meta.next_cursor`",
        "param" => "the query parameter that sends the cursor back",
        "next" => "the path of the next page's URL in each response, e.g. `body.nextRecordsUrl`",
        _ => "the number of items to ask for per page",
    }
}

impl Checker {
    pub(super) fn pagination(&mut self, value: &Value, path: &str) {
        let Some(map) = self.mapping(value, path, "`pagination`") else {
            return;
        };
        let style_path = key_path(path, "style");
        let style = match map.get("style") {
            None => {
                self.problem(&style_path, format!("`style` is required ({})", STYLES.join(", ")));
                return;
            }
            Some(value) => self.string(value, &style_path),
        };
        let Some(style) = style else { return };
        let Some((keys, required)) = style_keys(style) else {
            let known = STYLES.join(", ");
            self.problem(&style_path, format!("unknown pagination style `{style}` (known: {known})"));
            return;
        };
        let allowed: Vec<&str> = ["style"].iter().chain(keys).copied().collect();
        self.only_keys(map, path, &allowed);
        for key in required {
            if !map.contains_key(*key) {
                let message = format!("`{key}` is required for `{style}` pagination: {}", required_because(key));
                self.problem(&key_path(path, key), message);
            }
        }
        self.pagination_values(map, path, keys);
    }

    /// The values of the keys of `keys` that are present (unknown keys were reported before).
    fn pagination_values(&mut self, map: &Map<String, Value>, path: &str, keys: &[&str]) {
        for (key, value) in map.iter().filter(|(key, _)| keys.contains(&key.as_str())) {
            let key_p = key_path(path, key);
            match key.as_str() {
                "items" | "cursor" | "next" => self.response_path(value, &key_p),
                // A name that is not a string is reported by `string`, in the guard.
                "param" | "limit_param" if self.string(value, &key_p).is_some_and(|name| name.trim().is_empty()) => {
                    self.problem(&key_p, "must not be empty: it is the name of a query parameter");
                }
                "start" => {
                    self.whole_number(value, &key_p, 0, None);
                }
                "page_size" | "limit" => {
                    self.whole_number(value, &key_p, 1, None);
                }
                "max_pages" => {
                    self.whole_number(value, &key_p, 1, Some(MAX_PAGES));
                }
                _ => {}
            }
        }
    }

    /// A path inside each page's response: `body.` or `headers.` and more, without braces.
    pub(in crate::model::load) fn response_path(&mut self, value: &Value, path: &str) {
        let Some(text) = self.string(value, path) else {
            return;
        };
        let example = "e.g. `body.data` or `body.meta.next_cursor`";
        if text.contains("{{") || text.contains("}}") {
            self.problem(path, format!("write a path in the response without `{{{{ }}}}`, {example}"));
            return;
        }
        match PathExpr::parse(text) {
            Err(e) => self.problem(path, e.to_string()),
            Ok(expr) if matches!(expr.root(), Some("body" | "headers")) && expr.segments.len() > 1 => {}
            // A top-level array (`items: body`), as many APIs paginated by `Link` return.
            Ok(expr) if path.ends_with(".items") && expr.root() == Some("body") => {}
            Ok(_) => self.problem(
                path,
                format!(
                    "`{text}` must be `body` or a path in the response starting with `body.` or `headers.`, {example}"
                ),
            ),
        }
    }
}
