//! Schedules and polling triggers end to end on both backends, on a manual clock that the
//! tests move (no sleeping through minutes or DST nights): every fire starts exactly one
//! execution per enabled user whatever duplicate or concurrent ticks happen; daylight-saving
//! nights in America/New_York follow the documented policy; a user's own time zone; overlap
//! skip; catch-up after an outage; undeploying and disabling stop the fires; and polls start
//! only what they have not seen, through a failing poll and a redeploy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::stack::{Backend, StackConfig, TestStack};
use sluice_shared::fires::schedule_fire;
use sluice_shared::runner::Runner;
use sluice_shared::scheduler::{self, Clock, SchedulerSettings, TickReport};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("an RFC 3339 instant").with_timezone(&Utc)
}

async fn stack(backend: Backend, at: &str) -> Option<TestStack> {
    let config = StackConfig { clock: Clock::manual(utc(at)), ..StackConfig::default() };
    TestStack::start_with(backend, config).await
}

fn clock(stack: &TestStack) -> &Clock {
    &stack.runtime.settings.clock
}

/// One tick now, with `grace` (how late a fire may be and still count as on time).
async fn tick_with(stack: &TestStack, grace: Duration) -> TickReport {
    let settings = SchedulerSettings { grace, ..SchedulerSettings::default() };
    let runner = Runner::new(stack.runtime.clone());
    scheduler::tick(&runner, &settings, None, Duration::from_secs(60)).await.expect("tick")
}

async fn tick(stack: &TestStack) -> TickReport {
    tick_with(stack, Duration::from_secs(90)).await
}

/// Deploys `workflows` (id, trigger, steps) in the custom integration `custom.acme`, every
/// workflow enabled by default.
async fn deploy(stack: &TestStack, workflows: &[(&str, &str, &str)]) {
    let dir = std::env::temp_dir().join(format!("sluice-schedules-{}", uuid::Uuid::new_v4().simple()));
    let folder = dir.join("integrations").join("custom.acme");
    std::fs::create_dir_all(folder.join("workflows")).expect("folders");
    std::fs::write(
        folder.join("config.yaml"),
        "authenticationType: api_key\napiBaseUrl: https://api.example.com\nauthorization: { type: bearer, token: \"{{credentials.apiKey}}\" }\n",
    )
    .expect("config");
    for (id, trigger, steps) in workflows {
        let text = format!("id: {id}\nenabled_by_default: true\ntrigger: {trigger}\nsteps:\n{steps}\n");
        std::fs::write(folder.join("workflows").join(format!("{id}.yaml")), text).expect("workflow");
    }
    stack.deploy_project(&dir).await;
    let _ = std::fs::remove_dir_all(dir);
}

const NOTE: &str =
    "  - { id: note, type: function, code: \"(p) => p\", parameters: { at: \"{{trigger.body.scheduledAt}}\" } }";

async fn connect(stack: &TestStack, user: &str) {
    let url = format!("{}/projects/{}/sdk/integrations/custom.acme/credentials", stack.base_url, stack.project_id);
    let body = json!({"apiKey": "k"});
    let answer = stack.client().put(url).bearer_auth(stack.token(user)).json(&body).send().await.expect("put");
    assert_eq!(answer.status(), 200);
}

async fn switch(stack: &TestStack, user: &str, what: &str, enabled: bool) {
    let url = format!("{}/projects/{}/sdk/{what}", stack.base_url, stack.project_id);
    let answer = stack
        .client()
        .put(url)
        .bearer_auth(stack.token(user))
        .json(&json!({"enabled": enabled}))
        .send()
        .await
        .expect("put");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
}

/// The ledger row of (workflow, user).
async fn row(stack: &TestStack, workflow: &str, user: &str) -> Value {
    let url = format!("{}/projects/{}/schedules?workflow={workflow}", stack.base_url, stack.project_id);
    let answer = stack.client().get(url).bearer_auth(&stack.api_key).send().await.expect("schedules");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    body["schedules"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["userId"] == user).cloned())
        .unwrap_or(Value::Null)
}

/// Whether the fire of (workflow, user) at `at` started its execution.
async fn fired(stack: &TestStack, workflow: &str, user: &str, at: DateTime<Utc>) -> bool {
    let id = schedule_fire(&stack.project_id, workflow, user, at);
    stack.store.get_execution(&id).await.expect("get execution").is_some()
}

async fn a_five_second_schedule_fires_once_per_instant_for_each_enabled_user(stack: &TestStack) {
    deploy(stack, &[("every5", "{ type: schedule, every: 5s, overlap: allow }", NOTE)]).await;
    for user in ["ada", "bob", "cyd", "dan"] {
        connect(stack, user).await;
    }
    switch(stack, "dan", "workflows/every5", false).await;
    // The first tick arms the rows: fires start after it.
    assert_eq!(tick(stack).await.started, 0);
    let t0 = utc("2027-01-04T10:00:02Z");
    let mut total = 0;
    for step in 1..=6 {
        clock(stack).advance(Duration::from_secs(5));
        let report = tick(stack).await;
        total += report.started;
        // A duplicate tick at the same instant starts nothing.
        assert_eq!(tick(stack).await.started, 0, "step {step}");
    }
    assert_eq!(total, 18, "6 fires for each of the three enabled users");
    for user in ["ada", "bob", "cyd"] {
        assert_eq!(row(stack, "every5", user).await["fired"], 6, "{user}");
        for n in 1..=6 {
            let at = t0 - chrono::Duration::seconds(2) + chrono::Duration::seconds(5 * n);
            assert!(fired(stack, "every5", user, at).await, "{user} at {at}");
        }
    }
    assert!(row(stack, "every5", "dan").await.is_null(), "the disabled user has no row");
    // Concurrent ticks over the same due minute: each fire starts once.
    clock(stack).advance(Duration::from_secs(5));
    let (a, b, c, d) = tokio::join!(tick(stack), tick(stack), tick(stack), tick(stack));
    let reports = [a, b, c, d];
    assert_eq!(reports.iter().map(|r| r.started).sum::<usize>(), 3, "{reports:#?}");
    let last = stack
        .store
        .get_execution(&schedule_fire(&stack.project_id, "every5", "ada", utc("2027-01-04T10:00:35Z")))
        .await;
    let last = last.expect("read").expect("the concurrent fire started");
    let record = stack.wait_until_ended(&last.id, Duration::from_secs(20)).await;
    assert_eq!(record["steps"][0]["output"]["at"], "2027-01-04T10:00:35.000Z");
}

/// (zone-local rule, expected UTC fire instants) across one night, with the clock jumping
/// over it in one go (grace of two days: every fire counts as on time).
async fn dst_nights_fire_once_per_wall_time(stack: &TestStack) {
    let ny = "timezone: America/New_York, overlap: allow";
    deploy(
        stack,
        &[
            ("daily-0230", &format!("{{ type: schedule, daily: {{ at: \"02:30\" }}, {ny} }}"), NOTE),
            ("daily-0130", &format!("{{ type: schedule, daily: {{ at: \"01:30\" }}, {ny} }}"), NOTE),
            ("hourly-30", &format!("{{ type: schedule, hourly: {{ minute: 30 }}, {ny} }}"), NOTE),
            ("every-30m", "{ type: schedule, every: 30m, overlap: allow }", NOTE),
        ],
    )
    .await;
    connect(stack, "ada").await;
    let grace = Duration::from_secs(2 * 86_400);

    // Spring forward, 2027-03-14: 02:00 EST becomes 03:00 EDT (07:00Z).
    clock(stack).set(utc("2027-03-14T04:00:00Z")); // 23:00 EST on the 13th
    tick_with(stack, grace).await;
    clock(stack).set(utc("2027-03-14T09:10:00Z")); // 05:10 EDT
    tick_with(stack, grace).await;
    // 02:30 does not exist: it fires once, at the first valid instant after it (03:00 EDT).
    assert!(fired(stack, "daily-0230", "ada", utc("2027-03-14T07:00:00Z")).await);
    assert!(!fired(stack, "daily-0230", "ada", utc("2027-03-14T07:30:00Z")).await, "not jiff's 03:30");
    assert!(fired(stack, "daily-0130", "ada", utc("2027-03-14T06:30:00Z")).await);
    // Hourly at :30: 00:30, 01:30 EST, (02:30 →) 03:00, 03:30, 04:30, 05:30 … EDT.
    let hourly = ["04:30", "05:30", "06:30", "07:00", "07:30", "08:30"];
    for hm in hourly {
        assert!(fired(stack, "hourly-30", "ada", utc(&format!("2027-03-14T{hm}:00Z"))).await, "hourly at {hm}Z");
    }
    assert_eq!(row(stack, "hourly-30", "ada").await["fired"], hourly.len());
    // Every 30 minutes counts elapsed time: 04:30Z … 09:00Z, 10 fires.
    assert_eq!(row(stack, "every-30m", "ada").await["fired"], 10);

    // Fall back, 2027-11-07: 02:00 EDT becomes 01:00 EST (06:00Z); 01:xx happens twice.
    clock(stack).set(utc("2027-11-07T03:00:00Z")); // 23:00 EDT on the 6th
    tick_with(stack, Duration::from_secs(90)).await; // a long outage since March: catch-up, not a flood
    let before = row(stack, "daily-0130", "ada").await["fired"].as_u64().unwrap_or(0);
    clock(stack).set(utc("2027-11-07T09:10:00Z")); // 04:10 EST
    tick_with(stack, grace).await;
    // 01:30 occurs twice: it fires once, at the first (EDT, 05:30Z).
    assert!(fired(stack, "daily-0130", "ada", utc("2027-11-07T05:30:00Z")).await);
    assert!(!fired(stack, "daily-0130", "ada", utc("2027-11-07T06:30:00Z")).await, "not again at 01:30 EST");
    assert_eq!(row(stack, "daily-0130", "ada").await["fired"].as_u64().unwrap_or(0), before + 1);
    // Hourly at :30 fires once at 01:30 (EDT) and not at the repeated 01:30 EST.
    assert!(fired(stack, "hourly-30", "ada", utc("2027-11-07T05:30:00Z")).await);
    assert!(!fired(stack, "hourly-30", "ada", utc("2027-11-07T06:30:00Z")).await);
    assert!(fired(stack, "hourly-30", "ada", utc("2027-11-07T07:30:00Z")).await, "02:30 EST");
    // Every 30 minutes still every 30 minutes of real time, through the repeated hour.
    for hm in ["05:00", "05:30", "06:00", "06:30", "07:00"] {
        assert!(fired(stack, "every-30m", "ada", utc(&format!("2027-11-07T{hm}:00Z"))).await, "every 30m at {hm}Z");
    }
}

async fn a_users_own_time_zone_sets_their_fires(stack: &TestStack) {
    deploy(stack, &[("morning", "{ type: schedule, daily: { at: \"09:00\" }, timezone: user }", NOTE)]).await;
    for (user, zone) in [("ada", Some("Asia/Tokyo")), ("bob", Some("Europe/Paris")), ("cyd", None)] {
        connect(stack, user).await;
        if let Some(zone) = zone {
            let url = format!("{}/projects/{}/sdk/me", stack.base_url, stack.project_id);
            let answer =
                stack.client().patch(url).bearer_auth(stack.token(user)).json(&json!({"timezone": zone})).send().await;
            assert_eq!(answer.expect("patch").status(), 200);
        }
    }
    clock(stack).set(utc("2027-01-10T20:00:00Z"));
    tick(stack).await;
    clock(stack).set(utc("2027-01-11T12:00:00Z"));
    tick_with(stack, Duration::from_secs(86_400)).await;
    assert!(fired(stack, "morning", "ada", utc("2027-01-11T00:00:00Z")).await, "09:00 in Tokyo");
    assert!(fired(stack, "morning", "bob", utc("2027-01-11T08:00:00Z")).await, "09:00 in Paris");
    assert!(fired(stack, "morning", "cyd", utc("2027-01-11T09:00:00Z")).await, "no zone: UTC");
    assert_eq!(row(stack, "morning", "ada").await["zone"], "Asia/Tokyo");
}

async fn overlap_skip_and_catch_up_after_an_outage(stack: &TestStack) {
    let wait = "  - { id: hold, type: delay, for: 1h }";
    deploy(
        stack,
        &[
            ("slow", "{ type: schedule, every: 5s }", wait),
            ("slow-allowed", "{ type: schedule, every: 5s, overlap: allow }", wait),
            ("latest", "{ type: schedule, every: 1m, overlap: allow }", NOTE),
            ("none", "{ type: schedule, every: 1m, catchup: none, overlap: allow }", NOTE),
            ("window", "{ type: schedule, every: 1m, catchup: 5m, overlap: allow }", NOTE),
        ],
    )
    .await;
    connect(stack, "ada").await;
    clock(stack).set(utc("2027-02-01T00:00:01Z"));
    tick(stack).await;
    for _ in 0..3 {
        clock(stack).advance(Duration::from_secs(5));
        tick(stack).await;
    }
    let slow = row(stack, "slow", "ada").await;
    assert_eq!((slow["fired"].as_u64(), slow["skipped"].as_u64()), (Some(1), Some(2)), "{slow:#}");
    assert!(slow["lastNote"].as_str().unwrap_or_default().contains("still going"), "{slow:#}");
    assert_eq!(row(stack, "slow-allowed", "ada").await["fired"], 3);

    // An outage of ten minutes (every fire more than a second late counts as missed): latest
    // runs the last missed fire only; none runs nothing; a 5-minute window the five within it.
    clock(stack).advance(Duration::from_secs(10 * 60));
    let report = tick_with(stack, Duration::from_secs(1)).await;
    assert!(report.missed > 0, "{report:?}");
    let latest = row(stack, "latest", "ada").await;
    assert_eq!((latest["fired"].as_u64(), latest["missed"].as_u64()), (Some(1), Some(9)), "{latest:#}");
    let none = row(stack, "none", "ada").await;
    assert_eq!((none["fired"].as_u64(), none["missed"].as_u64()), (Some(0), Some(10)), "{none:#}");
    let window = row(stack, "window", "ada").await;
    assert_eq!((window["fired"].as_u64(), window["missed"].as_u64()), (Some(5), Some(5)), "{window:#}");
}

async fn undeploying_or_disabling_stops_the_fires_at_once(stack: &TestStack) {
    deploy(stack, &[("a", "{ type: schedule, every: 5s }", NOTE), ("b", "{ type: schedule, every: 5s }", NOTE)]).await;
    connect(stack, "ada").await;
    connect(stack, "bob").await;
    tick(stack).await;
    clock(stack).advance(Duration::from_secs(5));
    assert_eq!(tick(stack).await.started, 4);
    let url = format!("{}/projects/{}/workflows/a", stack.base_url, stack.project_id);
    let answer = stack.client().delete(url).bearer_auth(&stack.api_key).send().await.expect("undeploy");
    assert_eq!(answer.status(), 200);
    switch(stack, "bob", "integrations/custom.acme", false).await;
    clock(stack).advance(Duration::from_secs(5));
    let report = tick(stack).await;
    assert_eq!(report.started, 1, "only ada's b: {report:?}");
    assert!(row(stack, "a", "ada").await.is_null(), "the undeployed workflow's row is gone");
    assert!(row(stack, "b", "bob").await.is_null(), "the disabled user's row is gone");
}

/// A fake API listing items; `items` is what it lists now; it fails while `failing` is set.
struct ItemsApi {
    url: String,
    items: Arc<std::sync::Mutex<Vec<Value>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<AtomicUsize>,
}

async fn items_api() -> ItemsApi {
    let items = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let (i, f, c) = (items.clone(), failing.clone(), calls.clone());
    let app = Router::new().route(
        "/contacts",
        get(move || {
            let (i, f, c) = (i.clone(), f.clone(), c.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if f.load(Ordering::SeqCst) {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "down"})));
                }
                let list = i.lock().map(|l| l.clone()).unwrap_or_default();
                (axum::http::StatusCode::OK, axum::Json(json!({ "results": list })))
            }
        }),
    );
    ItemsApi { url: serve_locally(app).await, items, failing, calls }
}

async fn polls_start_only_new_items_through_failures_and_redeploys(stack: &TestStack) {
    let api = items_api().await;
    let contact = |id: u32| json!({"id": format!("c{id}"), "email": format!("c{id}@example.com")});
    api.items.lock().expect("items").extend([contact(1), contact(2)]);
    let poll = |version: &str| {
        format!(
            "{{ type: poll, every: 10s, request: {{ url: \"{}/contacts\", headers: {{ X-Version: \"{version}\" }} }}, items: body.results, key: \"{{{{item.id}}}}\" }}",
            api.url
        )
    };
    let steps =
        "  - { id: got, type: function, code: \"(p) => p\", parameters: { email: \"{{trigger.item.email}}\" } }";
    deploy(stack, &[("contacts", &poll("1"), steps)]).await;
    connect(stack, "ada").await;
    clock(stack).set(utc("2027-03-01T00:00:05Z"));
    tick(stack).await; // arms
    clock(stack).advance(Duration::from_secs(10));
    let first = tick(stack).await;
    assert_eq!((first.polls, first.started), (1, 0), "the first poll only records: {first:?}");
    api.items.lock().expect("items").push(contact(3));
    clock(stack).advance(Duration::from_secs(10));
    let second = tick(stack).await;
    assert_eq!(second.started, 1, "only c3 is new: {second:?}");
    let last = row(stack, "contacts", "ada").await["lastExecutionId"].as_str().unwrap_or_default().to_string();
    let record = stack.wait_until_ended(&last, Duration::from_secs(20)).await;
    assert_eq!(record["steps"][0]["output"]["email"], "c3@example.com");

    // A failing poll starts nothing and is recorded; the next one goes on where it was.
    api.failing.store(true, Ordering::SeqCst);
    api.items.lock().expect("items").push(contact(4));
    clock(stack).advance(Duration::from_secs(10));
    assert_eq!(tick(stack).await.started, 0);
    assert!(row(stack, "contacts", "ada").await["lastNote"].as_str().unwrap_or_default().contains("failed"));
    api.failing.store(false, Ordering::SeqCst);
    clock(stack).advance(Duration::from_secs(10));
    assert_eq!(tick(stack).await.started, 1, "c4, and nothing old");

    // A redeploy (the request changed) keeps what was seen.
    deploy(stack, &[("contacts", &poll("2"), steps)]).await;
    clock(stack).advance(Duration::from_secs(10));
    tick(stack).await; // re-arms
    api.items.lock().expect("items").push(contact(5));
    clock(stack).advance(Duration::from_secs(10));
    assert_eq!(tick(stack).await.started, 1, "c5 only after the redeploy");
    assert!(api.calls.load(Ordering::SeqCst) >= 5);
}

macro_rules! schedule_tests {
    ($($scenario:ident;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let stack = stack(Backend::Sqlite, "2027-01-04T10:00:02Z").await.expect("SQLite stack");
                    super::$scenario(&stack).await;
                }
            )*
        }
        mod aws {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(stack) = stack(Backend::Aws, "2027-01-04T10:00:02Z").await else { return };
                    super::$scenario(&stack).await;
                }
            )*
        }
    };
}

schedule_tests! {
    a_five_second_schedule_fires_once_per_instant_for_each_enabled_user;
    dst_nights_fire_once_per_wall_time;
    a_users_own_time_zone_sets_their_fires;
    overlap_skip_and_catch_up_after_an_outage;
    undeploying_or_disabling_stops_the_fires_at_once;
    polls_start_only_new_items_through_failures_and_redeploys;
}

#[test]
fn utc_parses() {
    assert_eq!(utc("2027-01-01T00:00:00Z"), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
}
