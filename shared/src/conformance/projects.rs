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

/// `list_deployed` gives the live version of each deployed workflow of the project only;
/// undeploying takes one down (true once, then false), keeps its versions readable, and a
/// later deploy makes the next version live.
pub async fn case_list_and_undeploy_keep_versions(store: &dyn Store) {
    let project_id = unique("p");
    assert!(store.list_deployed(&project_id).await.expect("list empty").is_empty());
    let a1 = store.deploy_workflow(&project_id, &workflow("a-flow", "https://example.com/a1")).await.expect("a1");
    let a2 = store.deploy_workflow(&project_id, &workflow("a-flow", "https://example.com/a2")).await.expect("a2");
    let b1 = store.deploy_workflow(&project_id, &workflow("b-flow", "https://example.com/b1")).await.expect("b1");
    let other = unique("p");
    store.deploy_workflow(&other, &workflow("c-flow", "https://example.com/c1")).await.expect("other project");
    let mut listed = store.list_deployed(&project_id).await.expect("list");
    listed.sort_by(|x, y| x.workflow_id.cmp(&y.workflow_id));
    assert_eq!(listed, vec![a2.clone(), b1.clone()], "the live version of each, and nothing of another project");

    assert!(store.undeploy_workflow(&project_id, "a-flow").await.expect("undeploy"), "it was deployed");
    assert!(!store.undeploy_workflow(&project_id, "a-flow").await.expect("undeploy again"), "not any more");
    assert!(!store.undeploy_workflow(&project_id, "never-deployed").await.expect("undeploy unknown"));
    assert!(!store.undeploy_workflow(&other, "a-flow").await.expect("undeploy across projects"));
    assert_eq!(store.get_deployed(&project_id, "a-flow").await.expect("get undeployed"), None);
    assert_eq!(store.get_version(&project_id, "a-flow", 1).await.expect("v1 kept"), Some(a1));
    assert_eq!(store.get_version(&project_id, "a-flow", 2).await.expect("v2 kept"), Some(a2.clone()));
    assert_eq!(store.list_deployed(&project_id).await.expect("list after undeploy"), vec![b1]);

    let again = store.deploy_workflow(&project_id, &a2.workflow).await.expect("deploy after undeploy");
    assert_eq!(again.version, 3, "a deploy after an undeploy makes a new version live");
    assert_eq!(store.get_deployed(&project_id, "a-flow").await.expect("live again").map(|d| d.version), Some(3));
}

/// A project's app events are replaced as a whole by each deploy and read back in order;
/// another project's are separate.
pub async fn case_app_events_are_replaced_per_project(store: &dyn Store) {
    use crate::model::project::AppEvent;
    let (project_id, other) = (unique("p"), unique("p"));
    assert!(store.app_events(&project_id).await.expect("none yet").is_empty());
    let created = AppEvent { name: "Contact Created".into(), example: json!({ "email": "a@b.c", "n": [1, 2] }) };
    let deleted = AppEvent { name: "Contact Deleted".into(), example: json!({}) };
    store.put_app_events(&project_id, &[created.clone(), deleted.clone()]).await.expect("put");
    store.put_app_events(&other, std::slice::from_ref(&deleted)).await.expect("put other");
    assert_eq!(store.app_events(&project_id).await.expect("read"), vec![created.clone(), deleted.clone()]);
    store.put_app_events(&project_id, std::slice::from_ref(&created)).await.expect("replace");
    assert_eq!(store.app_events(&project_id).await.expect("read replaced"), vec![created]);
    assert_eq!(store.app_events(&other).await.expect("read other"), vec![deleted]);
    store.put_app_events(&project_id, &[]).await.expect("clear");
    assert!(store.app_events(&project_id).await.expect("cleared").is_empty());
}
