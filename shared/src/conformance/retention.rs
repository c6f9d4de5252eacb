//! Store cases for retention: an execution past it is gone for every reader.
//!
//! Invariant: the store under test keeps executions for [`DEFAULT_RETENTION`] (30 days, what
//! every adapter starts with); the cases place executions an hour either side of it.

use std::collections::BTreeMap;

use super::{at_ms, unique};
use crate::ports::{HistoryFilter, HistoryQuery, Store};
use crate::record::{Execution, ExecutionStatus, TriggerData, TriggerKind, now};
use crate::retention::DEFAULT_RETENTION;

/// An execution started `age_ms` ago in `project`, searchable by `email`.
fn started_ago(project: &str, age_ms: i64) -> Execution {
    Execution {
        id: unique("e"),
        project_id: project.to_string(),
        workflow_id: "wf".into(),
        workflow_version: 1,
        user_id: "u".into(),
        status: ExecutionStatus::Running,
        started_at: at_ms(now().timestamp_millis() - age_ms),
        trigger: TriggerData::of(TriggerKind::Request, serde_json::json!({})),
        search: BTreeMap::from([("email".to_string(), "a@example.com".to_string())]),
        ..Default::default()
    }
}

/// An execution started more than the retention ago is not returned by `get_execution` nor
/// listed by any filter, though nothing deleted it; one an hour younger than the retention is.
pub async fn case_an_execution_past_its_retention_is_absent(store: &dyn Store) {
    let project = unique("p");
    let hour = 3_600_000;
    let retention_ms = i64::try_from(DEFAULT_RETENTION.as_millis()).expect("fits");
    let old = started_ago(&project, retention_ms + hour);
    let young = started_ago(&project, retention_ms - hour);
    for e in [&old, &young] {
        store.create_execution(e).await.expect("create an execution");
    }
    assert_eq!(store.get_execution(&old.id).await.expect("get old"), None, "past its retention");
    assert_eq!(store.get_execution(&young.id).await.expect("get young").map(|e| e.id), Some(young.id.clone()));

    let search = BTreeMap::from([("email".to_string(), "a@example.com".to_string())]);
    let filters = [
        HistoryFilter::default(),
        HistoryFilter { workflow_id: Some("wf".into()), ..HistoryFilter::default() },
        HistoryFilter { status: Some(ExecutionStatus::Running), ..HistoryFilter::default() },
        HistoryFilter { started_from: Some(at_ms(0)), ..HistoryFilter::default() },
        HistoryFilter { search, ..HistoryFilter::default() },
        HistoryFilter { id_prefix: Some("e-".into()), ..HistoryFilter::default() },
    ];
    for filter in filters {
        let query = HistoryQuery { project_id: project.clone(), filter: filter.clone(), after: None, limit: 10 };
        let page = store.list_executions(&query).await.expect("list");
        let ids: Vec<&str> = page.executions.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, vec![young.id.as_str()], "{filter:?} lists only the execution within its retention");
        assert_eq!(page.next, None);
    }
}
