//! Cases for `NotificationStore`: destinations round-trip whole (their sealed secret
//! included), are listed per project in id order, are limited per project even under
//! concurrent adds, and are deleted once.

use super::{at_ms, join_all, unique};
use crate::crypto::Sealed;
use crate::ports::{NotificationDestination, Store, StoreError};

/// A destination of `project_id` with a fresh time-ordered id.
fn destination(project_id: &str) -> NotificationDestination {
    NotificationDestination {
        project_id: project_id.to_string(),
        id: uuid::Uuid::now_v7().simple().to_string(),
        url: format!("https://hooks.example.com/{}", unique("h")),
        description: Some("on-call — ünïcode".to_string()),
        created_at: at_ms(1_765_000_000_123),
        secret: Sealed {
            version: 1,
            wrapped_key: "d3JhcHBlZA==".to_string(),
            nonce: "bm9uY2Vub25jZTEy".to_string(),
            ciphertext: unique("c"),
        },
    }
}

pub async fn case_destinations_round_trip_and_are_listed_per_project(store: &dyn Store) {
    let (project, other) = (unique("p"), unique("p"));
    assert!(store.list_destinations(&project).await.expect("list").is_empty());
    let first = destination(&project);
    let second = NotificationDestination { description: None, ..destination(&project) };
    let elsewhere = destination(&other);
    for d in [&second, &first, &elsewhere] {
        assert!(store.add_destination(d, 10).await.expect("add"), "added {}", d.id);
    }
    assert_eq!(store.get_destination(&project, &first.id).await.expect("get"), Some(first.clone()));
    assert_eq!(store.get_destination(&other, &first.id).await.expect("get"), None, "scoped to its project");
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(store.list_destinations(&project).await.expect("list"), expected, "in id order");
    assert_eq!(store.list_destinations(&other).await.expect("list"), vec![elsewhere]);
}

pub async fn case_a_taken_destination_id_already_exists(store: &dyn Store) {
    let project = unique("p");
    let first = destination(&project);
    assert!(store.add_destination(&first, 10).await.expect("add"));
    let again = NotificationDestination { url: "https://other.example.com/".into(), ..first.clone() };
    match store.add_destination(&again, 10).await {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get_destination(&project, &first.id).await.expect("get"), Some(first));
    assert_eq!(store.list_destinations(&project).await.expect("list").len(), 1);
}

pub async fn case_destinations_are_limited_per_project_and_deleted_once(store: &dyn Store) {
    let project = unique("p");
    let mut added = Vec::new();
    for _ in 0..3 {
        let d = destination(&project);
        assert!(store.add_destination(&d, 3).await.expect("add"));
        added.push(d);
    }
    let extra = destination(&project);
    assert!(!store.add_destination(&extra, 3).await.expect("add"), "over the limit");
    assert_eq!(store.get_destination(&project, &extra.id).await.expect("get"), None, "nothing written");
    assert!(store.add_destination(&destination(&unique("p")), 3).await.expect("add"), "another project has room");

    assert!(store.delete_destination(&project, &added[1].id).await.expect("delete"));
    assert!(!store.delete_destination(&project, &added[1].id).await.expect("delete"), "deleted once");
    assert!(!store.delete_destination(&project, "missing").await.expect("delete"));
    assert_eq!(store.get_destination(&project, &added[1].id).await.expect("get"), None);
    assert!(store.add_destination(&extra, 3).await.expect("add"), "a delete makes room");
    assert!(!store.add_destination(&destination(&project), 3).await.expect("add"), "full again");
    assert_eq!(store.list_destinations(&project).await.expect("list").len(), 3);
}

pub async fn case_concurrent_adds_never_exceed_the_limit(store: &dyn Store) {
    let project = unique("p");
    let candidates: Vec<NotificationDestination> = (0..16).map(|_| destination(&project)).collect();
    let results = join_all(candidates.iter().map(|d| store.add_destination(d, 10))).await;
    let mut added = 0;
    for result in results {
        match result {
            Ok(true) => added += 1,
            Ok(false) => {}
            // A transaction that lost a race with another (DynamoDB) is the backend's, not
            // an add: it wrote nothing.
            Err(StoreError::Backend(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let listed = store.list_destinations(&project).await.expect("list").len();
    assert_eq!(listed, added, "every add that said so is there, and only those");
    assert!(added <= 10, "{added} added");
    // What is left of the limit is still usable.
    let mut more = 0;
    while store.add_destination(&destination(&project), 10).await.expect("add") {
        more += 1;
        assert!(more <= 10);
    }
    assert_eq!(store.list_destinations(&project).await.expect("list").len(), 10);
}
