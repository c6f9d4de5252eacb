//! Task History listing benchmark (`cargo bench -p sluice-e2e --bench history_list`, release
//! build): seeds `HISTORY_ROWS` executions (default 10,000) of one project — four workflows,
//! three users, a fifth of them failed, each with a search attribute — then lists them page by
//! page (`HISTORY_PAGE`, default 100) through the store port, newest first, unfiltered and
//! filtered by status and by search attribute, and prints the time per page at the start, the
//! middle and the end of the listing: a listing whose pages get slower as it goes deeper is
//! not linear. Runs on SQLite (a file, WAL) and, when `SLUICE_AWS_ENDPOINT` names the local
//! AWS-API server, on DynamoDB (the same indexes as on AWS; moto's own query cost is its
//! floor, not DynamoDB's). Writes the table to `target/bench-history-list.md`.

use std::time::{Duration, Instant};

use sluice_shared::adapters::dynamodb::{self, DynamoStore};
use sluice_shared::adapters::sqlite::Sqlite;
use sluice_shared::ports::{HistoryFilter, HistoryPosition, HistoryQuery, Store};
use sluice_shared::record::{Execution, ExecutionError, ExecutionStatus, TriggerData, TriggerKind};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn seed(store: &dyn Store, project: &str, rows: usize) {
    let base = chrono::Utc::now().timestamp_millis() - rows as i64 * 10;
    let mut pending = Vec::new();
    for i in 0..rows {
        let started_at = chrono::DateTime::from_timestamp_millis(base + i as i64 * 10).expect("time");
        let id = sluice_shared::fires::derived_id(started_at, &["bench", project, &i.to_string()]);
        let e = Execution {
            id,
            project_id: project.to_string(),
            workflow_id: format!("wf-{}", i % 4),
            workflow_version: 1,
            user_id: format!("user-{}", i % 3),
            started_at,
            trigger: TriggerData::of(TriggerKind::Webhook, serde_json::json!({ "row": i, "note": "x".repeat(200) })),
            integration: Some("crm".into()),
            search: [("email".to_string(), format!("u{}@example.com", i % 50))].into_iter().collect(),
            ..Default::default()
        };
        pending.push(async move {
            store.create_execution(&e).await.expect("create");
            let (status, error) = if i % 5 == 0 {
                (ExecutionStatus::Failed, Some(ExecutionError { step: Some("post".into()), message: "HTTP 500".into() }))
            } else {
                (ExecutionStatus::Succeeded, None)
            };
            store.finish_execution(&e.project_id, &e.id, status, error.as_ref(), started_at).await.expect("finish");
        });
        if pending.len() == 32 {
            futures_util::future::join_all(pending.drain(..)).await;
        }
    }
    futures_util::future::join_all(pending).await;
}

/// Lists every page of `filter`; the time of each page.
async fn pages(store: &dyn Store, project: &str, filter: &HistoryFilter, limit: usize) -> (usize, Vec<Duration>) {
    let (mut rows, mut times) = (0, Vec::new());
    let mut after: Option<HistoryPosition> = None;
    loop {
        let query = HistoryQuery { project_id: project.to_string(), filter: filter.clone(), after, limit };
        let began = Instant::now();
        let page = store.list_executions(&query).await.expect("list");
        times.push(began.elapsed());
        rows += page.executions.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return (rows, times),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn mean(times: &[Duration]) -> Duration {
    if times.is_empty() { Duration::ZERO } else { times.iter().sum::<Duration>() / times.len() as u32 }
}

async fn run(backend: &str, store: &dyn Store, table: &mut String) {
    let rows = env_usize("HISTORY_ROWS", 10_000);
    let limit = env_usize("HISTORY_PAGE", 100);
    let project = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let began = Instant::now();
    seed(store, &project, rows).await;
    eprintln!("{backend}: seeded {rows} executions in {:.1} s", began.elapsed().as_secs_f64());
    let filters = [
        ("all", HistoryFilter::default()),
        ("status=failed", HistoryFilter { status: Some(ExecutionStatus::Failed), ..HistoryFilter::default() }),
        (
            "search.email",
            HistoryFilter {
                search: [("email".to_string(), "u7@example.com".to_string())].into_iter().collect(),
                ..HistoryFilter::default()
            },
        ),
        ("workflow+user", HistoryFilter { workflow_id: Some("wf-1".into()), user_id: Some("user-2".into()), ..HistoryFilter::default() }),
    ];
    for (name, filter) in filters {
        let (listed, times) = pages(store, &project, &filter, limit).await;
        let n = times.len();
        let tenth = (n / 10).max(1);
        let first = mean(&times[..tenth.min(n)]);
        let middle = mean(&times[n / 2 - tenth.min(n / 2) / 2..(n / 2 + tenth / 2).max(n / 2 + 1).min(n)]);
        let last = mean(&times[n - tenth.min(n)..]);
        let total: Duration = times.iter().sum();
        table.push_str(&format!(
            "| {backend} | {name} | {listed} | {n} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
            ms(first),
            ms(middle),
            ms(last),
            ms(last) / ms(first).max(1e-9),
            ms(total)
        ));
        eprintln!("{backend} {name}: {listed} rows in {n} pages, {:.0} ms", ms(total));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut table = String::from(
        "| backend | filter | rows | pages | first 10% ms/page | middle ms/page | last 10% ms/page | last ÷ first | total ms |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let dir = std::env::temp_dir().join(format!("sluice-bench-history-{}", uuid::Uuid::new_v4().simple()));
    let sqlite = Sqlite::open(&dir.join("sluice.db")).expect("database");
    run("SQLite", &sqlite, &mut table).await;
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
    if let Ok(endpoint) = std::env::var("SLUICE_AWS_ENDPOINT") {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let name = format!("sluice-bench-{}", uuid::Uuid::new_v4().simple());
        dynamodb::create_table(&client, &name).await.expect("table");
        run("DynamoDB (moto)", &DynamoStore::new(client.clone(), name.clone()), &mut table).await;
        let _ = client.delete_table().table_name(&name).send().await;
    }
    println!("{table}");
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write("target/bench-history-list.md", &table);
}
