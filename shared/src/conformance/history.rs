//! Store cases for Task History listings (`HistoryStore`).
//!
//! Invariant: every case works in a fresh project, so its listings hold only its own rows.

use std::collections::BTreeMap;

use super::{at_ms, unique};
use crate::ports::{ExecutionSummary, HistoryFilter, HistoryPosition, HistoryQuery, Store};
use crate::record::{Execution, ExecutionError, ExecutionStatus, TriggerData, TriggerKind};

/// A project's executions, with every filterable field varied: 24 rows, two of them started in
/// the same millisecond (the id breaks the tie).
async fn seed(store: &dyn Store, project: &str) -> Vec<Execution> {
    let kinds = [TriggerKind::Request, TriggerKind::Webhook, TriggerKind::Schedule];
    let base = 1_800_000_000_000i64;
    let mut all = Vec::new();
    for i in 0..24u32 {
        let ms = base + i64::from(i) * 1_000 - if i == 7 { 1_000 } else { 0 };
        let mut search = BTreeMap::from([("email".to_string(), format!("user{}@example.com", i % 4))]);
        if i % 2 == 0 {
            search.insert("plan".into(), if i % 4 == 0 { "pro" } else { "free" }.into());
        }
        let e = Execution {
            id: format!("{:08x}-{}", 0x1000 + i, unique("e")),
            project_id: project.to_string(),
            workflow_id: format!("wf-{}", i % 2),
            workflow_version: 1,
            user_id: format!("user #{}", i % 3),
            status: ExecutionStatus::Running,
            started_at: at_ms(ms),
            trigger: TriggerData::of(kinds[(i % 3) as usize], serde_json::json!({ "i": i })),
            integration: (i % 3 != 2).then(|| "slack".to_string()),
            search,
            replay_of: None,
            ..Default::default()
        };
        store.create_execution(&e).await.expect("create an execution");
        all.push(e);
    }
    // Move some on: the listing must read statuses as they are now.
    for (i, e) in all.iter_mut().enumerate() {
        let (status, error) = match i % 5 {
            0 => (ExecutionStatus::Succeeded, None),
            1 => (ExecutionStatus::Failed, Some(ExecutionError { step: Some("post".into()), message: "boom".into() })),
            2 => (ExecutionStatus::Cancelled, None),
            3 => {
                assert!(
                    store
                        .set_execution_status(project, &e.id, ExecutionStatus::Running, ExecutionStatus::Waiting)
                        .await
                        .expect("to waiting")
                );
                e.status = ExecutionStatus::Waiting;
                continue;
            }
            _ => continue,
        };
        let ended = at_ms(e.started_at.timestamp_millis() + 500);
        assert!(store.finish_execution(project, &e.id, status, error.as_ref(), ended).await.expect("finish"));
        e.status = status;
        e.error = error;
        e.ended_at = Some(ended);
    }
    all
}

/// What `filter` must list from `all`, in listing order.
fn expected(all: &[Execution], filter: &HistoryFilter) -> Vec<String> {
    let mut rows: Vec<ExecutionSummary> = all.iter().map(ExecutionSummary::of).filter(|e| filter.keeps(e)).collect();
    if filter.id_prefix.is_some() {
        rows.sort_by(|a, b| b.id.cmp(&a.id));
    } else {
        rows.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    }
    rows.into_iter().map(|e| e.id).collect()
}

/// Every page of `filter`, `limit` rows at a time: the ids in order.
async fn list_all(store: &dyn Store, project: &str, filter: &HistoryFilter, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<HistoryPosition> = None;
    for _ in 0..100 {
        let query = HistoryQuery { project_id: project.to_string(), filter: filter.clone(), after, limit };
        let page = store.list_executions(&query).await.expect("list");
        assert!(page.executions.len() <= limit, "a page of {} rows for a limit of {limit}", page.executions.len());
        ids.extend(page.executions.iter().map(|e| e.id.clone()));
        match page.next {
            Some(next) => {
                assert_eq!(page.executions.len(), limit, "a page with a next page is full");
                after = Some(next);
            }
            None => return ids,
        }
    }
    panic!("more than 100 pages");
}

pub async fn case_history_lists_every_filter_newest_first_across_pages(store: &dyn Store) {
    let project = unique("p");
    let all = seed(store, &project).await;
    // Another project's executions share every value and are never listed.
    let other = unique("p");
    let intruder = Execution { id: unique("e"), project_id: other.clone(), ..all[0].clone() };
    store.create_execution(&intruder).await.expect("another project's execution");

    let search = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let filters = [
        HistoryFilter::default(),
        HistoryFilter { workflow_id: Some("wf-1".into()), ..HistoryFilter::default() },
        HistoryFilter { user_id: Some("user #2".into()), ..HistoryFilter::default() },
        HistoryFilter { status: Some(ExecutionStatus::Failed), ..HistoryFilter::default() },
        HistoryFilter { status: Some(ExecutionStatus::Waiting), ..HistoryFilter::default() },
        HistoryFilter { status: Some(ExecutionStatus::Running), ..HistoryFilter::default() },
        HistoryFilter { status: Some(ExecutionStatus::Cancelled), ..HistoryFilter::default() },
        HistoryFilter { integration: Some("slack".into()), ..HistoryFilter::default() },
        HistoryFilter { trigger: Some(TriggerKind::Webhook), ..HistoryFilter::default() },
        HistoryFilter { started_from: Some(at_ms(1_800_000_005_000)), ..HistoryFilter::default() },
        HistoryFilter { started_before: Some(at_ms(1_800_000_010_000)), ..HistoryFilter::default() },
        HistoryFilter {
            started_from: Some(at_ms(1_800_000_003_000)),
            started_before: Some(at_ms(1_800_000_020_000)),
            workflow_id: Some("wf-0".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter { search: search(&[("email", "user1@example.com")]), ..HistoryFilter::default() },
        HistoryFilter {
            search: search(&[("email", "user0@example.com"), ("plan", "pro")]),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            search: search(&[("email", "user2@example.com")]),
            status: Some(ExecutionStatus::Succeeded),
            ..HistoryFilter::default()
        },
        HistoryFilter { search: search(&[("email", "nobody@example.com")]), ..HistoryFilter::default() },
        HistoryFilter {
            user_id: Some("user #1".into()),
            workflow_id: Some("wf-0".into()),
            trigger: Some(TriggerKind::Request),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            integration: Some("slack".into()),
            status: Some(ExecutionStatus::Failed),
            ..HistoryFilter::default()
        },
        HistoryFilter { id_prefix: Some("0000100".into()), ..HistoryFilter::default() },
        HistoryFilter {
            id_prefix: Some("000010".into()),
            status: Some(ExecutionStatus::Succeeded),
            ..HistoryFilter::default()
        },
        HistoryFilter { id_prefix: Some(all[5].id.clone()), ..HistoryFilter::default() },
        HistoryFilter { workflow_id: Some("no-such-workflow".into()), ..HistoryFilter::default() },
    ];
    for filter in &filters {
        let want = expected(&all, filter);
        for limit in [1, 5, 100] {
            let got = list_all(store, &project, filter, limit).await;
            assert_eq!(got, want, "filter {filter:?}, pages of {limit}");
        }
    }
    assert_eq!(list_all(store, &other, &HistoryFilter::default(), 10).await, vec![intruder.id.clone()]);

    // A row carries what the execution is now.
    let failed = all.iter().find(|e| e.status == ExecutionStatus::Failed).expect("a failed one");
    let page = store
        .list_executions(&HistoryQuery {
            project_id: project.clone(),
            filter: HistoryFilter { id_prefix: Some(failed.id.clone()), ..HistoryFilter::default() },
            after: None,
            limit: 10,
        })
        .await
        .expect("list one");
    assert_eq!(page.executions, vec![ExecutionSummary::of(failed)]);
}

pub async fn case_history_status_follows_every_move(store: &dyn Store) {
    let project = unique("p");
    let e = Execution {
        id: unique("e"),
        project_id: project.clone(),
        workflow_id: "w".into(),
        user_id: "u".into(),
        started_at: at_ms(1_800_000_000_000),
        ..Default::default()
    };
    store.create_execution(&e).await.expect("create");
    let listed = |status: ExecutionStatus| {
        let query = HistoryQuery {
            project_id: project.clone(),
            filter: HistoryFilter { status: Some(status), ..HistoryFilter::default() },
            after: None,
            limit: 10,
        };
        async move { store.list_executions(&query).await.expect("list").executions.len() }
    };
    assert_eq!((listed(ExecutionStatus::Running).await, listed(ExecutionStatus::Waiting).await), (1, 0));
    store
        .set_execution_status(&project, &e.id, ExecutionStatus::Running, ExecutionStatus::Waiting)
        .await
        .expect("wait");
    assert_eq!((listed(ExecutionStatus::Running).await, listed(ExecutionStatus::Waiting).await), (0, 1));
    store
        .finish_execution(&project, &e.id, ExecutionStatus::Failed, None, at_ms(1_800_000_001_000))
        .await
        .expect("end");
    assert_eq!((listed(ExecutionStatus::Waiting).await, listed(ExecutionStatus::Failed).await), (0, 1));
}

pub async fn case_replays_are_linked_to_their_original(store: &dyn Store) {
    let project = unique("p");
    let original = Execution {
        id: unique("e"),
        project_id: project.clone(),
        workflow_id: "w".into(),
        user_id: "u".into(),
        started_at: at_ms(1_800_000_000_000),
        ..Default::default()
    };
    store.create_execution(&original).await.expect("create the original");
    assert!(store.replays_of(&project, &original.id, 10).await.expect("no replays").is_empty());
    let mut replays = Vec::new();
    for i in 0..3 {
        let replay = Execution {
            id: unique("e"),
            replay_of: Some(original.id.clone()),
            started_at: at_ms(1_800_000_010_000 + i),
            ..original.clone()
        };
        store.create_execution(&replay).await.expect("create a replay");
        let stored = store.get_execution(&replay.id).await.expect("get").expect("the replay");
        assert_eq!(stored.replay_of.as_deref(), Some(original.id.as_str()));
        replays.push(replay.id);
    }
    assert_eq!(store.replays_of(&project, &original.id, 10).await.expect("replays"), replays);
    assert_eq!(store.replays_of(&project, &original.id, 2).await.expect("replays").len(), 2);
    assert!(store.replays_of("another-project", &original.id, 10).await.expect("elsewhere").is_empty());
}

pub async fn case_only_a_failed_execution_is_redriven_and_each_redrive_counts(store: &dyn Store) {
    let project = unique("p");
    let e = Execution {
        id: unique("e"),
        project_id: project.clone(),
        workflow_id: "w".into(),
        user_id: "u".into(),
        started_at: at_ms(1_800_000_000_000),
        ..Default::default()
    };
    store.create_execution(&e).await.expect("create");
    assert_eq!(store.redrive_execution(&project, &e.id).await.expect("running"), None, "not failed: no redrive");
    let error = ExecutionError { step: Some("post".into()), message: "HTTP 503".into() };
    for expected in 1..=2u32 {
        let ended = at_ms(1_800_000_001_000);
        assert!(
            store.finish_execution(&project, &e.id, ExecutionStatus::Failed, Some(&error), ended).await.expect("fail")
        );
        assert_eq!(store.redrive_execution(&project, &e.id).await.expect("redrive"), Some(expected));
        let stored = store.get_execution(&e.id).await.expect("get").expect("the execution");
        assert_eq!(
            (stored.status, stored.error, stored.ended_at, stored.redrives),
            (ExecutionStatus::Running, None, None, expected)
        );
        assert_eq!(
            store.redrive_execution(&project, &e.id).await.expect("again"),
            None,
            "running again: no second redrive"
        );
        let listed = store
            .list_executions(&HistoryQuery {
                project_id: project.clone(),
                filter: HistoryFilter { status: Some(ExecutionStatus::Running), ..HistoryFilter::default() },
                after: None,
                limit: 10,
            })
            .await
            .expect("list running");
        assert_eq!(listed.executions.len(), 1, "listed as running again");
        assert_eq!(listed.executions[0].redrives, expected);
    }
    for status in [ExecutionStatus::Succeeded, ExecutionStatus::Cancelled] {
        let other = Execution { id: unique("e"), ..e.clone() };
        store.create_execution(&other).await.expect("create");
        store.finish_execution(&project, &other.id, status, None, at_ms(1_800_000_001_000)).await.expect("end");
        assert_eq!(store.redrive_execution(&project, &other.id).await.expect("ended"), None, "{status:?}");
        let stored = store.get_execution(&other.id).await.expect("get").expect("the execution");
        assert_eq!(stored.status, status, "every status reads back");
    }
    assert_eq!(store.redrive_execution(&project, &unique("e")).await.expect("unknown"), None);
}
