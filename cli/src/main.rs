//! `sluice`: run the local stack, validate and deploy projects, scaffold integrations, print
//! the JSON Schemas, make tokens, show when schedules fire.

mod schedule;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sluice_cli::dev::{self, DevOptions};
use sluice_cli::{aws, project, test_run, workflow_env};
use sluice_shared::model::project::IMPLICIT_INTEGRATION;
use sluice_shared::model::{DurationSpec, load, schema};

#[derive(Parser)]
#[command(name = "sluice", version, about = "Sluice: durable workflows for product integrations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole stack locally on SQLite: HTTP API, step runners, response waiter.
    Dev {
        #[arg(long, default_value_t = 8787)]
        port: u16,
        #[arg(long, default_value = ".sluice")]
        data_dir: PathBuf,
        /// Project folder (with `integrations/`) or plain folder of workflow files to deploy
        /// (the bundled example project if it does not exist).
        #[arg(long, visible_alias = "project", default_value = "workflows")]
        workflows: PathBuf,
        /// How long a synchronous caller waits for a Response step before getting 542.
        #[arg(long, default_value = "55s")]
        response_timeout: DurationSpec,
        /// How long after its start an execution whose first segment was cut short (the
        /// process died) is resumed from its last recorded step.
        #[arg(long, default_value = "90s")]
        recovery_delay: DurationSpec,
        /// Let Request steps reach private and link-local addresses (loopback is always allowed in dev).
        #[arg(long)]
        allow_private_network: bool,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// A file of `NAME=value` lines giving workflows' `{{env.NAME}}` values (`#` comments,
        /// blank lines and quoted values allowed); every `SLUICE_ENV_<NAME>` variable gives
        /// `{{env.NAME}}` too, over the file. `SLUICE_BASE_URL` is always this stack's address.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// How long executions (with their steps, files and fan-out items) are kept after
        /// their start: whole days, 1d to 3650d. Older ones are deleted every minute.
        #[arg(long, default_value = "30d", value_parser = parse_retention)]
        retention: Duration,
    },
    /// Check a project folder, a plain folder of workflow files or one workflow file, and
    /// list every problem (file and path).
    Validate { path: PathBuf },
    /// Print the integration action catalog (every action's params and output), as Markdown.
    Actions {
        /// Only this integration's actions (`slack`, `custom.acme`, ...).
        integration: Option<String>,
    },
    /// Print the JSON Schema of a kind of project file (for editor autocompletion).
    Schema {
        #[arg(value_enum, default_value = "workflow")]
        file: SchemaFile,
    },
    /// Scaffold part of a project.
    #[command(subcommand)]
    New(NewCommand),
    /// Run a workflow file once on the running `sluice dev` (a test run: delays skipped, at
    /// most 3 pages per paginated request, arrays shown up to 20 items) and print each step.
    Test {
        /// The workflow file.
        file: PathBuf,
        /// A JSON file with the trigger request: `{"body": ..., "query": {...}, "headers": {...}}`
        /// (a file without those keys is taken as the body).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Test only this step (earlier steps' outputs can be given in the data file as `steps`).
        #[arg(long)]
        step: Option<String>,
        #[arg(long, default_value = ".sluice")]
        data_dir: PathBuf,
    },
    /// Manage projects of a deployed stack (its DynamoDB table).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// When scheduled and polling workflows fire.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Validate a project folder (or plain folder of workflow files) and deploy its workflows
    /// to a deployed stack's table: nothing is deployed if any file has a problem.
    ///
    /// With --url and --api-key, through the stack's management API (any stack: `sluice dev`
    /// or the trigger function's URL); with --table, straight to a deployed stack's table.
    /// Prints one line per workflow (new, changed vN→vN+1, unchanged, undeployed).
    Deploy {
        /// Project folder or folder of workflow files.
        path: PathBuf,
        /// The stack's base URL (e.g. http://127.0.0.1:8787 or the TriggerUrl output).
        #[arg(long, env = "SLUICE_URL", conflicts_with = "table")]
        url: Option<String>,
        /// The project's API key (with --url).
        #[arg(long, env = "SLUICE_API_KEY", requires = "url")]
        api_key: Option<String>,
        /// The stack's DynamoDB table (the `TableName` output of the stack).
        #[arg(long, env = "SLUICE_TABLE")]
        table: Option<String>,
        #[arg(long)]
        project: String,
    },
    /// Task History: list executions (filters, table or --json), `show ID` (step timeline),
    /// `replay|redrive|cancel ID...` or by filter in bulk (a dry run first). Against `sluice dev`
    /// by default, or a deployed stack with --url, --api-key and --project.
    History(Box<sluice_cli::history::HistoryArgs>),
    /// Print a connected-user token for the project whose keys are in --data-dir.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = ".sluice")]
        data_dir: PathBuf,
        #[arg(long, default_value = "24h")]
        ttl: DurationSpec,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaFile {
    /// A workflow file.
    Workflow,
    /// An integration's config.yaml.
    Integration,
    /// An inputs.yaml (user settings).
    Inputs,
}

#[derive(Subcommand)]
enum NewCommand {
    /// Write `integrations/NAME/` (config.yaml, inputs.yaml, workflows/) in a project folder.
    Integration {
        /// A built-in integration (googlecalendar, hubspot, salesforce, slack) or, with
        /// --custom, the lowercase alphanumeric name of a custom one.
        name: String,
        /// A custom integration: `integrations/custom.NAME/`, with its authentication.
        #[arg(long)]
        custom: bool,
        /// The project folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Print the next fires of a workflow: each instant in UTC and on the clocks of the
    /// schedule's zone, with DST anomalies marked (a wall time that does not exist fires at
    /// the transition; one that occurs twice fires at the first).
    Next {
        /// The workflow's id in the project, or a workflow file.
        workflow: String,
        /// The project folder (or plain folder of workflow files).
        #[arg(long, default_value = "workflows")]
        project: PathBuf,
        /// For `timezone: user`: this user's zone, as `sluice dev` stores it (PATCH /sdk/me).
        #[arg(long)]
        user: Option<String>,
        /// Compute in this IANA zone instead (over the schedule's and the user's).
        #[arg(long)]
        zone: Option<String>,
        /// How many fires.
        #[arg(short = 'n', long = "count", default_value_t = 10)]
        count: usize,
        /// `sluice dev`'s data folder (where --user is looked up).
        #[arg(long, default_value = ".sluice")]
        data_dir: PathBuf,
        /// From this instant (RFC 3339, e.g. 2027-03-13T12:00:00Z) instead of now.
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project (signing key pair and API key kept in --dir) in a deployed stack.
    Create {
        #[arg(long)]
        id: String,
        /// The stack's DynamoDB table (the `TableName` output of the stack).
        #[arg(long, env = "SLUICE_TABLE")]
        table: String,
        /// Where the keys and project.json are written (keep it private).
        #[arg(long, default_value = ".sluice-aws")]
        dir: PathBuf,
        /// The stack's `TriggerUrl` output, recorded in project.json.
        #[arg(long, default_value = "")]
        base_url: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Colour codes only on a terminal: a log written to a file or a pipe stays plain text.
    sluice_shared::telemetry::logs::init_terminal("warn,sluice=info");
    match run(Cli::parse().command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--retention`: whole days (`30d`), see `sluice_shared::retention::parse`.
fn parse_retention(text: &str) -> Result<Duration, String> {
    sluice_shared::retention::parse(text).map_err(|e| e.to_string())
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Dev {
            port,
            data_dir,
            workflows,
            response_timeout,
            recovery_delay,
            allow_private_network,
            workers,
            env_file,
            retention,
        } => {
            let response_timeout = response_timeout.duration();
            if response_timeout < Duration::from_millis(100) {
                anyhow::bail!("--response-timeout must be at least 100ms");
            }
            let recovery_delay = recovery_delay.duration();
            if recovery_delay.is_zero() {
                anyhow::bail!("--recovery-delay must be more than 0");
            }
            let env = workflow_env::dev_env(env_file.as_deref(), std::env::vars_os())?;
            let options = DevOptions {
                port,
                data_dir,
                workflows,
                response_timeout,
                recovery_delay,
                allow_private_network,
                workers,
                env,
                retention,
            };
            // Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set (off otherwise).
            if sluice_shared::telemetry::init(Vec::new())? {
                tracing::info!("exporting traces over OTLP");
            }
            let ran = dev::run(options).await;
            sluice_shared::telemetry::shutdown().await;
            ran?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { path } => {
            let result = if path.is_dir() {
                load::load_project(&path).map(|project| {
                    let workflows = project.workflows().count();
                    let integrations = project.integrations.iter().filter(|i| i.name != IMPLICIT_INTEGRATION).count();
                    let events = match project.events.len() {
                        0 => String::new(),
                        n => format!(", {n} app event(s)"),
                    };
                    if integrations == 0 {
                        format!("{workflows} workflow file(s){events} OK")
                    } else {
                        format!("{integrations} integration(s), {workflows} workflow file(s){events} OK")
                    }
                })
            } else {
                load::load_file(&path).map(|_| "1 workflow file(s) OK".to_string())
            };
            match result {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for problem in &problems {
                        println!("{problem}");
                    }
                    eprintln!("{} problem(s)", problems.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Actions { integration } => {
            if let Some(name) = &integration
                && sluice_shared::catalog::integration(name).is_none()
            {
                anyhow::bail!(
                    "no actions for `{name}` (built in: googlecalendar, hubspot, salesforce, slack; or custom.<name>)"
                );
            }
            print!("{}", sluice_shared::catalog::markdown(integration.as_deref()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { file } => {
            let schema = match file {
                SchemaFile::Workflow => schema::workflow_schema(),
                SchemaFile::Integration => schema::integration_schema(),
                SchemaFile::Inputs => schema::inputs_schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::New(NewCommand::Integration { name, custom, dir }) => {
            let folder = project::scaffold(&dir, &name, custom)?;
            println!("wrote {} (config.yaml, inputs.yaml, workflows/)", folder.display());
            println!("check it with: sluice validate {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { file, data, step, data_dir } => {
            test_run::run(&file, data.as_deref(), step.as_deref(), &data_dir).await
        }
        Command::Schedule(ScheduleCommand::Next { workflow, project, user, zone, count, data_dir, after }) => {
            let options = schedule::NextOptions { workflow, project, user, zone, count, data_dir, after };
            schedule::next(&options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Project(ProjectCommand::Create { id, table, dir, base_url }) => {
            let (store, target) = aws::table_store(&table).await;
            let project = aws::create_project(&store, &dir, &id, &base_url)
                .await
                .map_err(|e| target.explain("sluice project create", e))?;
            println!("project `{}` is ready; its API key and keys are in {}", project.project_id, dir.display());
            println!("user tokens: sluice token --user USER_ID --data-dir {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy { path, url: Some(url), api_key, project, .. } => {
            let Some(api_key) = api_key else { anyhow::bail!("--url needs --api-key (or SLUICE_API_KEY)") };
            sluice_cli::remote::deploy(&path, &url, &api_key, &project).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy { path, table, project, .. } => {
            let Some(table) = table else {
                anyhow::bail!("say where to deploy: --url URL --api-key KEY, or --table TABLE (or SLUICE_TABLE)")
            };
            // Every file problem is listed before anything is asked of AWS.
            let definition = sluice_cli::project::load(&path)?;
            let (store, target) = aws::table_store(&table).await;
            let outcomes = aws::deploy_definition(&store, &project, &definition)
                .await
                .map_err(|e| target.explain("sluice deploy", e))?;
            sluice_cli::remote::print_outcomes(&outcomes);
            Ok(ExitCode::SUCCESS)
        }
        Command::History(args) => sluice_cli::history::run(*args).await,
        Command::Token { user, data_dir, ttl } => {
            println!("{}", dev::user_token(&data_dir, &user, ttl.duration())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
