//! Store cases for projects and workflow deployments.
//!
//! Invariant: every case works on fresh project ids, so cases never see each other's data.

use std::collections::BTreeSet;

use serde_json::json;

use super::{at_ms, unique};
use crate::model::Workflow;
use crate::ports::{Project, Store, StoreError};

fn workflow(id: &str, url: &str) -> Workflow {
    serde_json::from_value(json!({
        "id": id,
        "name": "Conformance",
        "trigger": { "type": "request" },
        "steps": [{ "id": "fetch", "type": "request", "method": "POST", "url": url, "body": { "n": 1.5 } }],
    }))
    .expect("conformance workflow parses")
}

fn project(id: &str) -> Project {
    Project {
        id: id.to_string(),
        signing_public_key_pem: "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n".into(),
        api_key_sha256: "ab".repeat(32),
        created_at: at_ms(1_764_000_000_123),
    }
}
/// A created project reads back equal; a second create of its id is `AlreadyExists` and
/// changes nothing; an unknown id reads as None.
pub async fn case_project_create_get_and_duplicate(store: &dyn Store) {
    let id = unique("p");
    let p = project(&id);
    store.create_project(&p).await.expect("create project");
    assert_eq!(store.get_project(&id).await.expect("get project"), Some(p.clone()));

    let mut other = project(&id);
    other.api_key_sha256 = "cd".repeat(32);
    let duplicate = store.create_project(&other).await;
    assert!(matches!(duplicate, Err(StoreError::AlreadyExists(_))), "duplicate project: {duplicate:?}");
    assert_eq!(store.get_project(&id).await.expect("get project"), Some(p), "the first project is kept");

    assert_eq!(store.get_project(&unique("p")).await.expect("get unknown project"), None);
}

/// Versions start at 1, only a changed definition gets the next one, old versions stay
/// readable, and deployments of one project are invisible to another.
pub async fn case_deploy_versions_only_on_change(store: &dyn Store) {
    let project_id = unique("p");
    let v1 = workflow("orders-sync", "https://example.com/v1");
    let first = store.deploy_workflow(&project_id, &v1).await.expect("first deploy");
    assert_eq!((first.version, &first.workflow, first.workflow_id.as_str()), (1, &v1, "orders-sync"));
    assert_eq!(first.project_id, project_id);

    let again = store.deploy_workflow(&project_id, &v1).await.expect("identical redeploy");
    assert_eq!(again, first, "an identical redeploy returns the live deployment unchanged");

    let v2 = workflow("orders-sync", "https://example.com/v2");
    let second = store.deploy_workflow(&project_id, &v2).await.expect("changed deploy");
    assert_eq!((second.version, &second.workflow), (2, &v2));
    assert_eq!(store.get_deployed(&project_id, "orders-sync").await.expect("get deployed"), Some(second.clone()));
    assert_eq!(store.get_version(&project_id, "orders-sync", 1).await.expect("get v1"), Some(first.clone()));
    assert_eq!(store.get_version(&project_id, "orders-sync", 2).await.expect("get v2"), Some(second));
    assert_eq!(store.get_version(&project_id, "orders-sync", 3).await.expect("get v3"), None);

    // Going back to an older definition is a change too: it gets the next number.
    let third = store.deploy_workflow(&project_id, &v1).await.expect("redeploy v1 definition");
    assert_eq!((third.version, &third.workflow), (3, &v1));

    // Tenant isolation: the same workflow id in another project is another workflow.
    let other = unique("p");
    assert_eq!(store.get_deployed(&other, "orders-sync").await.expect("other project"), None);
    assert_eq!(store.get_version(&other, "orders-sync", 1).await.expect("other project v1"), None);
    assert_eq!(store.get_deployed(&project_id, "unknown").await.expect("unknown workflow"), None);
    let theirs = store.deploy_workflow(&other, &v2).await.expect("deploy in the other project");
    assert_eq!(theirs.version, 1, "versions count per project");
}

/// Concurrent deploys of different definitions never share a version number.
pub async fn case_concurrent_deploys_get_distinct_versions(store: &dyn Store) {
    let project_id = unique("p");
    let (a, b, c) = (
        workflow("race", "https://example.com/a"),
        workflow("race", "https://example.com/b"),
        workflow("race", "https://example.com/c"),
    );
    let (ra, rb, rc) = tokio::join!(
        store.deploy_workflow(&project_id, &a),
        store.deploy_workflow(&project_id, &b),
        store.deploy_workflow(&project_id, &c)
    );
    let deployments = [ra.expect("deploy a"), rb.expect("deploy b"), rc.expect("deploy c")];
    let versions: BTreeSet<u32> = deployments.iter().map(|d| d.version).collect();
    assert_eq!(versions, BTreeSet::from([1, 2, 3]), "each changed definition gets its own version");
    for d in &deployments {
        let stored = store.get_version(&project_id, "race", d.version).await.expect("get version");
        assert_eq!(stored.as_ref().map(|s| &s.workflow), Some(&d.workflow));
    }
    let live = store.get_deployed(&project_id, "race").await.expect("get deployed").expect("deployed");
    assert_eq!(live.version, 3, "the live pointer ends on the last version written");
}
