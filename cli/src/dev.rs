//! `sluice dev`: the local stack on SQLite under a data folder, with a dev project created on
//! first start (its signing key and API key kept in the data folder), every workflow file of
//! a folder deployed, and a ready-to-paste curl command printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sluice_shared::adapters::sqlite::Sqlite;
use sluice_shared::auth;
use sluice_shared::deploy::Change;
use sluice_shared::model::project::ProjectDefinition;
use sluice_shared::model::{Trigger, Workflow, load};
use sluice_shared::net::{HttpClient, OutboundPolicy};
use sluice_shared::ports::{Project, Queue, Store};
use sluice_shared::record::now;
use sluice_shared::runtime::{Runtime, Settings};

use crate::stack::{LocalStack, StackOptions, Sweep};
use sluice_shared::crypto::LocalKeyFile;

/// The project every `sluice dev` data folder holds.
pub const DEV_PROJECT_ID: &str = "dev";
const PROJECT_FILE: &str = "dev-project.json";
const KEY_FILE: &str = "signing-key.pem";
const PUBLIC_KEY_FILE: &str = "signing-key.pub.pem";
/// The master key that seals users' credentials and `password` settings (0600, created on
/// first start; keep it with the database: without it they cannot be read).
pub const KEY_FILE_NAME: &str = "master.key";

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub port: u16,
    pub data_dir: PathBuf,
    pub workflows: PathBuf,
    pub response_timeout: Duration,
    /// See `sluice_shared::runtime::DEFAULT_RECOVERY_DELAY`.
    pub recovery_delay: Duration,
    pub allow_private_network: bool,
    pub workers: usize,
    /// Workflows' `{{env.NAME}}` values (see [`crate::workflow_env::dev_env`]); `SLUICE_BASE_URL`
    /// is always the stack's own address.
    pub env: BTreeMap<String, String>,
    /// How long an execution is kept after its start (`--retention`, default 30 days).
    pub retention: Duration,
}

/// `<data-dir>/dev-project.json`: what a developer needs to call the local stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevProject {
    pub project_id: String,
    pub api_key: String,
    pub base_url: String,
}

pub use sluice_shared::runtime::BASE_URL_ENV;

/// How often `sluice dev` deletes the executions past their retention.
pub const EXPIRY_EVERY: Duration = Duration::from_secs(60);
/// The most executions one round of [`delete_expired_every`] deletes (the rest wait a minute).
const EXPIRY_MAX_ROWS: usize = 10_000;

/// Aborts the expiry loop when dropped.
struct ExpiryLoop(tokio::task::JoinHandle<()>);

impl Drop for ExpiryLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every `every` (first right away), deletes up to [`EXPIRY_MAX_ROWS`] executions of `db` past
/// its retention with all their rows, and orphaned files; a failure is logged and retried on
/// the next round.
pub async fn delete_expired_every(every: Duration, db: Sqlite) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match db.delete_expired(now(), db.retention(), EXPIRY_MAX_ROWS).await {
            Ok(expired) if expired.executions > 0 || expired.orphan_files > 0 => tracing::info!(
                executions = expired.executions,
                orphan_files = expired.orphan_files,
                "deleted executions past their retention"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete expired executions"),
        }
    }
}

/// Runs `sluice dev` until Ctrl-C.
///
/// The listener is bound first (so the base URL is known), then the dev project, its keys and
/// the workflows are set up, and only then does the stack serve HTTP: whatever answers, even
/// `GET /health`, finds the project ready and `sluice token` finds its signing key. A client
/// that connects earlier waits in the listener's backlog for that moment.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let db = Arc::new(
        Sqlite::open(&options.data_dir.join("sluice.db"))
            .context("cannot open the SQLite database")?
            .with_retention(options.retention),
    );
    // Dropped (aborting the loop) when `run` returns.
    let _expiry = ExpiryLoop(tokio::spawn(delete_expired_every(EXPIRY_EVERY, (*db).clone())));
    let store: Arc<dyn Store> = db.clone();
    let queue: Arc<dyn Queue> = db.clone();
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let bound = LocalStack::bind(StackOptions {
        addr,
        workers: options.workers,
        demo_routes: true,
        limits: Default::default(),
        sweep: Some(Sweep::dev((*db).clone())),
        visibility: crate::stack::VISIBILITY,
        scheduler_every: Some(crate::stack::SCHEDULER_EVERY),
    })
    .await?;
    let base_url = bound.base_url.clone();
    let project_dir = project_dir(&options.workflows, &options.data_dir, &base_url)?;
    let definition = crate::project::load(&project_dir)?;
    let workflows: Vec<(String, Workflow)> = definition.workflows().cloned().collect();
    let project = ensure_dev_project(store.as_ref(), &options.data_dir, &base_url).await?;

    println!("Sluice dev is running at {base_url}  (data in {})", options.data_dir.display());
    let outcomes = crate::project::deploy_outcomes(store.as_ref(), &project.project_id, &definition).await?;
    for (outcome, (source, workflow)) in outcomes.iter().zip(definition.workflows()) {
        let how = match &workflow.trigger {
            Trigger::Request { method, .. } => {
                format!("{} {base_url}/projects/{}/sdk/triggers/{}", method.as_str(), project.project_id, workflow.id)
            }
            Trigger::AppEvent { event } => format!("on app event `{event}`"),
            Trigger::Webhook { event, .. } => format!(
                "on webhook `{event}`: POST {base_url}/projects/{}/webhooks/{}",
                project.project_id,
                workflow.integration.as_deref().unwrap_or("?")
            ),
            Trigger::Schedule(schedule) => format!(
                "on schedule: {}{}",
                schedule.rule,
                schedule.timezone.as_deref().map(|zone| format!(" ({zone})")).unwrap_or_default()
            ),
            Trigger::Poll(poll) => format!("polls every {}", poll.every),
            other => format!("on {}", other.type_name()),
        };
        println!("  deployed {:<24} {:<14} {how}   ({source})", outcome.workflow_id, outcome.describe());
    }
    for outcome in outcomes.iter().filter(|o| matches!(o.change, Change::Undeployed { .. })) {
        println!("  {:<33} {}", outcome.workflow_id, outcome.describe());
    }
    // Kept alive until the stack stops: every change to the folder redeploys it.
    let _watching = crate::watch::watch(&project_dir, store.clone(), project.project_id.clone())?;
    println!("  watching {} for changes", project_dir.display());
    let policy = OutboundPolicy { allow_loopback: true, allow_private: options.allow_private_network };
    let mut env = options.env.clone();
    env.insert(BASE_URL_ENV.to_string(), base_url.clone());
    let settings = Settings {
        response_timeout: options.response_timeout,
        recovery_delay: options.recovery_delay,
        env,
        ..Settings::default()
    };
    let keys = LocalKeyFile::open_or_create(options.data_dir.join(KEY_FILE_NAME))
        .context("cannot open the key that seals users' secrets")?;
    let runtime =
        Runtime::new(store.clone(), queue.clone(), db, HttpClient::new(policy)?, settings).with_keys(Arc::new(keys));
    // The user the printed token names exists from the start, so that schedules and polls
    // (which run for every user who enabled them) fire for someone before any request.
    runtime.connect.known_user(&project.project_id, "dev-user").await.context("cannot record the dev user")?;
    let stack = bound.start(runtime, queue);
    let token = user_token(&options.data_dir, "dev-user", Duration::from_secs(24 * 3600))?;
    print_try_it(&project, &workflows, &token);
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    println!("stopping...");
    stack.shutdown().await;
    Ok(())
}

/// The project (or plain folder) at `dir`, or the bundled example project when `dir` does
/// not exist, written to `<data_dir>/example-project` (its workflows call the demo CRM of the
/// stack at `base_url` through `{{env.SLUICE_BASE_URL}}`).
pub fn load_project(dir: &Path, data_dir: &Path, base_url: &str) -> anyhow::Result<ProjectDefinition> {
    crate::project::load(&project_dir(dir, data_dir, base_url)?)
}

/// The project folder `sluice dev` serves: `dir`, or the bundled example project written to
/// `<data_dir>/example-project` when `dir` does not exist.
pub fn project_dir(dir: &Path, data_dir: &Path, base_url: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = if dir.exists() {
        dir.to_path_buf()
    } else {
        sluice_shared::adapters::sqlite::create_private_dir(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let example = data_dir.join(EXAMPLE_PROJECT_DIR);
        crate::project::write_bundled(&example)?;
        println!(
            "{} does not exist: deploying the bundled example project, written to {} (it calls the demo \
             services at {base_url}/demo)",
            dir.display(),
            example.display()
        );
        example
    };
    Ok(dir)
}

/// Where `sluice dev` writes the bundled example project inside its data folder.
pub const EXAMPLE_PROJECT_DIR: &str = "example-project";

pub fn problem_list(problems: &[load::Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    format!("{} problem(s) in the workflow files:\n{}", problems.len(), lines.join("\n"))
}

/// Creates the dev project and its keys on first start; later starts reuse them.
pub async fn ensure_dev_project(store: &dyn Store, data_dir: &Path, base_url: &str) -> anyhow::Result<DevProject> {
    ensure_project(store, data_dir, PROJECT_FILE, DEV_PROJECT_ID, base_url).await
}

/// Makes sure project `project_id` exists in `store`, with its signing key pair and API key
/// kept in `dir` (created on first use and reused after), and writes `dir/project_file`.
pub async fn ensure_project(
    store: &dyn Store,
    dir: &Path,
    project_file: &str,
    project_id: &str,
    base_url: &str,
) -> anyhow::Result<DevProject> {
    sluice_shared::adapters::sqlite::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let project_path = dir.join(project_file);
    let (private_key, public_key) = (dir.join(KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    let (api_key, public_pem) = if project_path.exists() && private_key.exists() && public_key.exists() {
        let existing: DevProject = serde_json::from_str(&std::fs::read_to_string(&project_path)?)
            .with_context(|| format!("{} is not valid; delete the folder to start over", project_path.display()))?;
        if existing.project_id != project_id {
            bail!("{} belongs to project `{}`, not `{project_id}`", project_path.display(), existing.project_id);
        }
        (existing.api_key, std::fs::read_to_string(&public_key)?)
    } else {
        let keys = auth::generate_signing_key()?;
        write_private(&private_key, &keys.private_pem)?;
        std::fs::write(&public_key, &keys.public_pem)?;
        (auth::generate_api_key(), keys.public_pem)
    };
    match store.get_project(project_id).await? {
        None => {
            let project = Project {
                id: project_id.to_string(),
                signing_public_key_pem: public_pem,
                api_key_sha256: auth::hash_api_key(&api_key),
                created_at: now(),
            };
            store.create_project(&project).await?;
        }
        Some(stored) if stored.signing_public_key_pem.trim() != public_pem.trim() => {
            bail!("project `{project_id}` already exists with another signing key than the one in {}", dir.display())
        }
        Some(_) => {}
    }
    let project = DevProject { project_id: project_id.to_string(), api_key, base_url: base_url.to_string() };
    write_private(&project_path, &serde_json::to_string_pretty(&project)?)?;
    Ok(project)
}

/// A connected-user token for the project whose keys are in `data_dir`.
pub fn user_token(data_dir: &Path, user_id: &str, ttl: Duration) -> anyhow::Result<String> {
    let key_path = data_dir.join(KEY_FILE);
    let private_pem = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "no signing key at {}: run `sluice dev` (or `sluice project create`) with this folder first",
            key_path.display()
        )
    })?;
    Ok(auth::issue_user_token(&private_pem, user_id, ttl)?)
}

/// Writes a file only its owner can read (keys and the API key).
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn print_try_it(project: &DevProject, workflows: &[(String, Workflow)], token: &str) {
    let base = &project.base_url;
    let request = workflows.iter().find(|(_, wf)| matches!(wf.trigger, Trigger::Request { .. }));
    let event = workflows.iter().find_map(|(_, wf)| wf.trigger.event());
    println!("\nTry it (the token is valid for 24 hours; `sluice token --user ID` makes more):\n");
    println!("  export SLUICE_TOKEN='{token}'");
    match (request, event) {
        (Some((_, workflow)), _) => {
            let method = match &workflow.trigger {
                Trigger::Request { method, .. } => method.as_str(),
                _ => "POST",
            };
            let data = match method {
                "GET" | "DELETE" => String::new(),
                _ => format!(" \\\n    -H 'content-type: application/json' \\\n    -d '{}'", example_body(workflow)),
            };
            println!(
                "  curl -i -X {method} {base}/projects/{}/sdk/triggers/{} \\\n    -H \"Authorization: Bearer $SLUICE_TOKEN\"{data}",
                project.project_id, workflow.id
            );
        }
        (None, Some(event)) => {
            let body = serde_json::json!({ "name": event, "payload": {} });
            println!(
                "  curl -i -X POST {base}/projects/{}/sdk/events/trigger \\\n    -H \"Authorization: Bearer $SLUICE_TOKEN\" \\\n    -H 'content-type: application/json' \\\n    -d '{body}'",
                project.project_id
            );
        }
        (None, None) => {}
    }
    println!("\nThen read the execution record (executionId from a 202 body or the x-sluice-execution-id header):\n");
    println!(
        "  curl -s {base}/projects/{}/executions/EXECUTION_ID -H 'Authorization: Bearer {}'\n",
        project.project_id, project.api_key
    );
}

/// A body that passes the workflow's `validate.body` rules.
fn example_body(workflow: &Workflow) -> String {
    use sluice_shared::model::{JsonType, Trigger};
    let Trigger::Request { validate, .. } = &workflow.trigger else { return "{}".to_string() };
    let mut body = serde_json::Map::new();
    for (field, kind) in validate.iter().flat_map(|v| &v.body) {
        let value = match (field.as_str(), kind) {
            ("email", JsonType::String) => serde_json::json!("ada@example.com"),
            ("name", JsonType::String) => serde_json::json!("Ada Lovelace"),
            (_, JsonType::String) => serde_json::json!("text"),
            (_, JsonType::Number) => serde_json::json!(1),
            (_, JsonType::Boolean) => serde_json::json!(true),
            (_, JsonType::Object) => serde_json::json!({}),
            (_, JsonType::Array) => serde_json::json!([]),
        };
        body.insert(field.clone(), value);
    }
    serde_json::Value::Object(body).to_string()
}
