//! `sluice history`: Task History from the command line, through the History API of
//! `sluice dev` (the project of `<data-dir>/dev-project.json`) or of a deployed stack
//! (`--url`, `--api-key`, `--project`). Lists executions as a table (or JSON lines), shows one
//! record as a step timeline, and replays, redrives or cancels executions by id or in bulk by
//! filter (a dry run first, then the real run with a progress display).
//!
//! The API key is sent only in the `Authorization` header and never printed: error messages
//! carry the API's own message and the URL path, nothing of the request's headers.

mod actions;
mod render;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dev::DevProject;

/// `sluice history`: without a subcommand, the list.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub command: Option<HistoryCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// Print one execution: header, step timeline (fan-out branches grouped), the error.
    Show {
        /// The execution id.
        id: String,
        /// Print the raw execution record (one JSON document).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Start new executions with the same trigger data and user (linked by `replayOf`).
    Replay(ActionArgs),
    /// Resume failed executions from their failed step.
    Redrive(ActionArgs),
    /// Cancel running or waiting executions.
    Cancel(ActionArgs),
}

/// The filters of the list and of bulk actions (every one optional; they combine with AND).
#[derive(Args, Debug, Default, Clone)]
pub struct Filter {
    /// A workflow id.
    #[arg(long)]
    pub workflow: Option<String>,
    /// An integration (`slack`, `custom.acme`, ...).
    #[arg(long)]
    pub integration: Option<String>,
    /// A user id.
    #[arg(long)]
    pub user: Option<String>,
    /// running, waiting, succeeded, failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// request, app_event, webhook, integration_enabled, oauth_connected, schedule or poll.
    #[arg(long)]
    pub trigger: Option<String>,
    /// Started at or after: ISO 8601 (2026-12-01T10:00:00Z) or a duration back from now (30m, 24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Started before: ISO 8601 or a duration back from now.
    #[arg(long)]
    pub until: Option<String>,
    /// A search attribute equal to a value, `key=value` (repeatable; a workflow declares them
    /// with `search:`).
    #[arg(long = "search", value_name = "KEY=VALUE", value_parser = parse_search)]
    pub search: Vec<(String, String)>,
    /// Executions whose id starts with this.
    #[arg(long)]
    pub id_prefix: Option<String>,
}

/// Which stack and project: `sluice dev` (from its data folder) unless `--url` is given.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// A deployed stack's base URL (the TriggerUrl output); without it, the running `sluice dev`.
    #[arg(long, env = "SLUICE_URL")]
    pub url: Option<String>,
    /// The project's API key (with --url).
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The project id (with --url).
    #[arg(long)]
    pub project: Option<String>,
    /// `sluice dev`'s data folder (where dev-project.json is).
    #[arg(long, default_value = ".sluice")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// At most this many executions (pages are fetched until then).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Every matching execution (all pages).
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// One JSON object per line (the API's rows), for scripts.
    #[arg(long)]
    pub json: bool,
    /// Full execution ids and error summaries.
    #[arg(long)]
    pub wide: bool,
    /// Rows asked per page (the tests page through small pages).
    #[arg(long, hide = true, default_value_t = MAX_PAGE)]
    pub page_size: usize,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    /// Execution ids (or, instead, filter flags for a bulk action).
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: Filter,
    /// Bulk: only print how many executions the filter matches and a sample.
    #[arg(long)]
    pub dry_run: bool,
    /// Bulk: run without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Replay: on the `live` (deployed) version or the execution's `original` one.
    #[arg(long, value_parser = ["live", "original"])]
    pub version: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

fn parse_search(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}`: expected key=value")),
    }
}

impl Filter {
    /// The list route's query parameters.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut query = Vec::new();
        let fields = [
            ("workflow", &self.workflow),
            ("integration", &self.integration),
            ("user", &self.user),
            ("status", &self.status),
            ("trigger", &self.trigger),
            ("since", &self.since),
            ("until", &self.until),
            ("idPrefix", &self.id_prefix),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                query.push((name.to_string(), value.clone()));
            }
        }
        for (key, value) in &self.search {
            query.push((format!("search.{key}"), value.clone()));
        }
        query
    }

    /// The bulk route's `filter` object.
    pub fn body(&self) -> Value {
        let mut filter = serde_json::Map::new();
        for (name, value) in self.query() {
            if !name.starts_with("search.") {
                filter.insert(name, Value::String(value));
            }
        }
        if !self.search.is_empty() {
            filter.insert(
                "search".into(),
                json!(self.search.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()),
            );
        }
        Value::Object(filter)
    }

    pub fn is_empty(&self) -> bool {
        self.query().is_empty()
    }
}

/// The History API of one project, with its key.
pub struct Api {
    base: String,
    project: String,
    api_key: String,
    http: reqwest::Client,
}

/// A refusal of the API: its status and `error.message` (and the execution's current status
/// on a 409).
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub current: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)?;
        if let Some(current) = &self.current {
            write!(f, " [status: {current}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

impl Api {
    pub fn new(target: &Target) -> anyhow::Result<Api> {
        let (base, project, api_key) = match &target.url {
            Some(url) => {
                let Some(api_key) = target.api_key.clone() else { bail!("--url needs --api-key (or SLUICE_API_KEY)") };
                let Some(project) = target.project.clone() else { bail!("--url needs --project") };
                (url.clone(), project, api_key)
            }
            None => {
                let path = target.data_dir.join("dev-project.json");
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("no {}: start `sluice dev` first, or give --url, --api-key and --project", path.display())
                })?;
                let dev: DevProject =
                    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
                (dev.base_url, target.project.clone().unwrap_or(dev.project_id), dev.api_key)
            }
        };
        let http = reqwest::Client::builder().build().context("cannot build an HTTP client")?;
        Ok(Api { base: base.trim_end_matches('/').to_string(), project, api_key, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/projects/{}{path}", self.base, self.project)
    }

    /// `GET /projects/{p}{path}?query`.
    pub async fn get(&self, path: &str, query: &[(String, String)]) -> anyhow::Result<Value> {
        let request = self.http.get(self.url(path)).query(query);
        self.send(path, request).await
    }

    /// `POST /projects/{p}{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.http.post(self.url(path)).json(body);
        self.send(path, request).await
    }

    /// The full id of an execution given by a prefix of its id (as the list shows them);
    /// a full id (36 characters) as it is. Refused when no or several executions match.
    pub async fn resolve(&self, id: &str) -> anyhow::Result<String> {
        if id.len() >= FULL_ID {
            return Ok(id.to_string());
        }
        let query = [("idPrefix".to_string(), id.to_string()), ("limit".to_string(), "2".to_string())];
        let page = self.get("/executions", &query).await?;
        let found: Vec<&str> =
            page["executions"].as_array().into_iter().flatten().filter_map(|r| r["executionId"].as_str()).collect();
        match found.as_slice() {
            [one] => Ok((*one).to_string()),
            [] => bail!("no execution id starts with `{id}`"),
            _ => bail!("several execution ids start with `{id}` (give more of it)"),
        }
    }

    async fn send(&self, path: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.bearer_auth(&self.api_key).send().await.map_err(|e| {
            // reqwest's message names the URL, never the headers.
            anyhow::anyhow!("cannot reach the stack at {}: {e} (is it running?)", self.base)
        })?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("cannot read the answer to {path}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("no error message: {}", text.chars().take(200).collect::<String>()));
        Err(Refusal { status, message, current: error["status"].as_str().map(str::to_string) }.into())
    }
}

/// Whether to colour stdout: a terminal, and `NO_COLOR` unset or empty.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => list(&args.list).await,
        Some(HistoryCommand::Show { id, json, target }) => {
            let api = Api::new(&target)?;
            let id = api.resolve(&id).await?;
            let record = api.get(&format!("/executions/{id}"), &[]).await?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&record)?));
            } else {
                out(&render::record(&record, colour(), chrono::Utc::now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(HistoryCommand::Replay(action)) => actions::run("replay", &action).await,
        Some(HistoryCommand::Redrive(action)) => actions::run("redrive", &action).await,
        Some(HistoryCommand::Cancel(action)) => actions::run("cancel", &action).await,
    }
}

/// The length of a full execution id (a UUID).
const FULL_ID: usize = 36;

/// The most rows one page asks for.
const MAX_PAGE: usize = 1000;

async fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.target)?;
    let wanted = if args.all { usize::MAX } else { args.limit };
    if wanted == 0 || args.page_size == 0 {
        bail!("--limit must be at least 1");
    }
    let filter = args.filter.query();
    let mut rows: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let more = loop {
        let mut query = filter.clone();
        query.push(("limit".into(), (wanted - rows.len()).min(args.page_size.min(MAX_PAGE)).to_string()));
        if let Some(cursor) = &cursor {
            query.push(("cursor".into(), cursor.clone()));
        }
        let page = api.get("/executions", &query).await?;
        let listed = page["executions"].as_array().cloned().unwrap_or_default();
        if args.json {
            // JSON lines as the pages come: a script can start on the first rows.
            let lines: String = listed.iter().map(|row| format!("{row}\n")).collect();
            out(&lines);
        }
        rows.extend(listed);
        cursor = page["next"].as_str().map(str::to_string);
        match &cursor {
            None => break false,
            Some(_) if rows.len() >= wanted => break true,
            Some(_) => {}
        }
    };
    if !args.json {
        if rows.is_empty() {
            eprintln!("no executions match");
        } else {
            out(&render::table(&rows, colour(), args.wide, chrono::Utc::now()));
        }
    }
    if more {
        eprintln!("(more executions match: raise --limit or use --all)");
    }
    Ok(ExitCode::SUCCESS)
}
