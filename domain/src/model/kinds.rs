//! The step types added after the first three (function, fan-out, delay) and the Request
//! step's options (body encodings, auth, pagination). Serde types only; `load` checks them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DurationSpec, Step};

/// JavaScript run in a sandbox: `code` is one function taking `(parameters, libraries)` and
/// returning any JSON value or a Promise of one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionStep {
    /// The source of the function, e.g. `function (parameters, libraries) { return 1; }` or
    /// `(parameters, { lodash }) => ...`. Not templated; at most 100 KB.
    #[schemars(length(min = 1, max = 102400))]
    pub code: String,
    /// Templated, then passed as the first argument.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
    /// CPU time the function may use (default 5s, at most 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<DurationSpec>,
    /// Memory the function may use, in MB (default 64, at least 8, at most 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 512))]
    pub memory_limit_mb: Option<u32>,
}

/// Runs `steps` once per item of `over`, in parallel; the output is the list of each branch's
/// last step output, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FanOutStep {
    /// Exactly one `{{...}}` expression giving an array (at most 10,000 items), e.g.
    /// `{{steps.list.output.body.items}}`.
    #[schemars(with = "String")]
    pub over: Value,
    pub steps: Vec<Step>,
    /// At most this many branches run at once (default: all), 1–1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: Option<u32>,
}

/// Waits without holding a function: `for` a duration or `until` a timestamp (one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DelayStep {
    /// How long to wait, at most 366 days (e.g. `15m`, `2h`, `7d`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationSpec>,
    /// ISO 8601 timestamp or epoch seconds/milliseconds; may be a `{{...}}` expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Value>,
}

/// How a Request step's `body` is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyType {
    /// `application/json` (the default).
    #[default]
    Json,
    /// `application/x-www-form-urlencoded` from a flat object.
    Form,
    /// `multipart/form-data` from a flat object; file objects become file parts.
    Multipart,
    /// A string sent as-is (set `content-type` in `headers`; default `text/plain`).
    Raw,
}

/// An integration action (`type: action`): a catalog entry of the workflow's integration
/// (see `sluice actions`), run as a request on the integration's `apiBaseUrl` with its
/// `authorization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionStep {
    /// The integration whose action it is; when given it must be the workflow's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// The action's name in the catalog, e.g. `send_message`.
    pub action: String,
    /// The action's parameters (templated), checked against its catalog entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
}

/// Credentials a Request step sends (values may be templated, e.g. from settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestAuth {
    Basic { username: Value, password: Value },
    Bearer { token: Value },
}

/// Fetches every page of a paginated API, up to `max_pages`, collecting the array at
/// `items` (a path in the response, e.g. `body.data`) of each page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum Pagination {
    /// The next cursor is at `cursor` in each response (e.g. `body.meta.next_cursor`) and
    /// is sent back as the `param` query parameter; pagination stops when it is missing or empty.
    Cursor {
        items: String,
        cursor: String,
        param: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1000))]
        max_pages: Option<u32>,
    },
    /// Follows the `Link: <...>; rel="next"` response header.
    Link {
        items: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1000))]
        max_pages: Option<u32>,
    },
    /// Follows the URL at `next` in each response (e.g. Salesforce's `body.nextRecordsUrl`),
    /// resolved against the page's URL; pagination stops when it is missing or empty.
    NextUrl {
        items: String,
        next: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1000))]
        max_pages: Option<u32>,
    },
    /// Sends `param` = start, start+1, ... until a page has fewer than `page_size` items
    /// (or none, when no page size is given).
    Page {
        items: String,
        #[serde(default = "default_page_param")]
        param: String,
        #[serde(default = "default_start")]
        start: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        page_size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1000))]
        max_pages: Option<u32>,
    },
    /// Sends `param` = 0, limit, 2×limit, ... and `limit_param` = limit, until a page has
    /// fewer than `limit` items.
    Offset {
        items: String,
        #[serde(default = "default_offset_param")]
        param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        #[schemars(range(min = 1))]
        limit: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1000))]
        max_pages: Option<u32>,
    },
}

/// Pages fetched when `max_pages` is not set.
pub const DEFAULT_MAX_PAGES: u32 = 10;

impl Pagination {
    pub fn max_pages(&self) -> u32 {
        match self {
            Pagination::Cursor { max_pages, .. }
            | Pagination::Link { max_pages, .. }
            | Pagination::NextUrl { max_pages, .. }
            | Pagination::Page { max_pages, .. }
            | Pagination::Offset { max_pages, .. } => max_pages.unwrap_or(DEFAULT_MAX_PAGES),
        }
    }

    /// The path of the items array in each response.
    pub fn items(&self) -> &str {
        match self {
            Pagination::Cursor { items, .. }
            | Pagination::Link { items, .. }
            | Pagination::NextUrl { items, .. }
            | Pagination::Page { items, .. }
            | Pagination::Offset { items, .. } => items,
        }
    }
}

fn default_page_param() -> String {
    "page".into()
}

fn default_start() -> u64 {
    1
}

fn default_offset_param() -> String {
    "offset".into()
}

fn default_limit_param() -> String {
    "limit".into()
}
