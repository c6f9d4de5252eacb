//! One due minute of a schedule for many users (`cargo bench -p sluice-e2e --bench
//! schedule_tick`): a workflow firing every minute for `BENCH_TICK_USERS` users (default 10,000
//! on SQLite, `BENCH_TICK_AWS_USERS` default 1,000 on the local AWS-API server when
//! `SLUICE_AWS_ENDPOINT` is set), on a manual clock. Measures the tick that arms the rows, the
//! tick of the due minute (from its start to the last execution started: the tick returns
//! once every start went through) and a repeated tick of the same minute, beside an idle tick
//! (nothing due: the floor); then counts the executions: exactly one per user, zero
//! duplicates. Prints a Markdown table (also written to `target/bench-schedule-tick.md`) and
//! exits non-zero on a duplicate or a missing start.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice_e2e::stack::{Backend, StackConfig, TestStack, aws_endpoint};
use sluice_shared::fires::schedule_fire;
use sluice_shared::runner::Runner;
use sluice_shared::scheduler::{self, Clock, SchedulerSettings, TickReport};

const WORKFLOW: &str = "id: bench-minute\ntrigger: { type: schedule, every: 1m, overlap: allow }\n\
    steps: [{ id: add, type: function, code: \"(p) => p.at\", parameters: { at: \"{{trigger.body.scheduledAt}}\" } }]\n";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("an instant").with_timezone(&Utc)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Row {
    backend: &'static str,
    users: usize,
    setup_s: f64,
    idle_ms: f64,
    arm_s: f64,
    due_s: f64,
    repeat_s: f64,
    started: usize,
    repeat_started: usize,
    executions: usize,
}

async fn tick(stack: &TestStack) -> (TickReport, f64) {
    let runner = Runner::new(stack.runtime.clone());
    let settings = SchedulerSettings { page: 1000, ..SchedulerSettings::default() };
    let begun = Instant::now();
    let report = scheduler::tick(&runner, &settings, None, Duration::from_secs(3600)).await.expect("tick");
    (report, begun.elapsed().as_secs_f64())
}

async fn run(backend: Backend, label: &'static str, users: usize) -> Option<Row> {
    let config = StackConfig { clock: Clock::manual(at("2027-05-03T09:00:10Z")), ..StackConfig::default() };
    let stack = TestStack::start_with(backend, config).await?;
    let (_, idle) = tick(&stack).await;
    stack.deploy(WORKFLOW).await;
    let begun = Instant::now();
    for n in 0..users {
        stack.store.ensure_user(&stack.project_id, &format!("user-{n:05}")).await.expect("user");
    }
    scheduler::sync_project(stack.store.as_ref(), &stack.project_id).await.expect("sync");
    let setup_s = begun.elapsed().as_secs_f64();
    let (armed, arm_s) = tick(&stack).await;
    assert_eq!(armed.due, users, "every row armed");
    stack.runtime.settings.clock.set(at("2027-05-03T09:01:00Z"));
    let (due, due_s) = tick(&stack).await;
    let (repeat, repeat_s) = tick(&stack).await;
    let mut executions = 0;
    for n in 0..users {
        let id = schedule_fire(&stack.project_id, "bench-minute", &format!("user-{n:05}"), at("2027-05-03T09:01:00Z"));
        if stack.store.get_execution(&id).await.expect("read").is_some() {
            executions += 1;
        }
    }
    Some(Row {
        backend: label,
        users,
        setup_s,
        idle_ms: idle * 1000.0,
        arm_s,
        due_s,
        repeat_s,
        started: due.started,
        repeat_started: repeat.started,
        executions,
    })
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    rows.extend(run(Backend::Sqlite, "SQLite (sluice dev)", env_usize("BENCH_TICK_USERS", 10_000)).await);
    if aws_endpoint().is_some() {
        rows.extend(
            run(Backend::Aws, "DynamoDB + SQS (local AWS-API server)", env_usize("BENCH_TICK_AWS_USERS", 1_000)).await,
        );
    }
    let mut table = String::from(
        "| backend | users | idle tick (floor) | arming tick | due minute: tick → last start | starts/s | repeated tick | started | repeat started | executions |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut bad = false;
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {:.1} ms | {:.2} s | {:.2} s | {:.0} | {:.2} s | {} | {} | {} |\n",
            r.backend,
            r.users,
            r.idle_ms,
            r.arm_s,
            r.due_s,
            r.started as f64 / r.due_s,
            r.repeat_s,
            r.started,
            r.repeat_started,
            r.executions
        ));
        bad |= r.started != r.users || r.repeat_started != 0 || r.executions != r.users;
        eprintln!("{}: setup (users and rows) {:.1} s", r.backend, r.setup_s);
    }
    println!("{table}");
    let _ = std::fs::write(sluice_e2e::rie::target_dir().join("bench-schedule-tick.md"), &table);
    if bad {
        eprintln!("a fire was missing or started twice");
        std::process::exit(1);
    }
}
