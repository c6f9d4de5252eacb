//! Setting up a deployed stack: `sluice project create` and `sluice deploy` against the
//! stack's table (DynamoDB on the local AWS-API server; skipped when it is not configured).

use std::path::{Path, PathBuf};

use sluice_cli::aws::{create_project, deploy_dir};
use sluice_e2e::stack::{aws_endpoint, aws_sdk_config};
use sluice_shared::adapters::dynamodb::{DynamoStore, create_table};
use sluice_shared::auth;
use sluice_shared::ports::{ProjectStore, WorkflowStore};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-deploy-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/project"))
}

async fn table() -> Option<DynamoStore> {
    let endpoint = aws_endpoint()?;
    let client = aws_sdk_dynamodb::Client::new(&aws_sdk_config(&endpoint).await);
    let name = format!("sluice-deploy-{}", uuid::Uuid::new_v4().simple());
    create_table(&client, &name).await.expect("table");
    Some(DynamoStore::new(client, name))
}

#[tokio::test]
async fn project_create_then_deploy_sets_up_a_stack() {
    let Some(store) = table().await else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set");
        return;
    };
    let dir = temp_dir("project");
    let project = create_project(&store, &dir, "acme", "https://example.lambda-url.aws/").await.expect("create");
    assert!(project.api_key.starts_with("sk_"));
    let again = create_project(&store, &dir, "acme", "https://example.lambda-url.aws/").await.expect("again");
    assert_eq!(again.api_key, project.api_key, "re-running keeps the keys");

    let stored = store.get_project("acme").await.expect("get").expect("project");
    assert_eq!(stored.api_key_sha256, auth::hash_api_key(&project.api_key));
    let private_pem = std::fs::read_to_string(dir.join("signing-key.pem")).expect("key file");
    let token = auth::issue_user_token(&private_pem, "u1", std::time::Duration::from_secs(60)).expect("token");
    assert_eq!(auth::verify_user_token(&stored.signing_public_key_pem, &token).expect("valid"), "u1");

    let deployed = deploy_dir(&store, "acme", examples()).await.expect("deploy");
    assert_eq!(deployed.iter().map(|d| d.version).collect::<Vec<_>>(), [1, 1, 1, 1, 1]);
    let redeployed = deploy_dir(&store, "acme", examples()).await.expect("redeploy");
    assert_eq!(
        redeployed.iter().map(|d| d.version).collect::<Vec<_>>(),
        [1, 1, 1, 1, 1],
        "unchanged files keep their version"
    );
    assert!(store.get_deployed("acme", "contact-lookup").await.expect("get").is_some());
}

#[tokio::test]
async fn deploy_refuses_invalid_files_and_unknown_projects() {
    let Some(store) = table().await else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set");
        return;
    };
    let error = deploy_dir(&store, "nobody", examples()).await.expect_err("unknown project");
    assert!(error.to_string().contains("sluice project create"), "{error}");

    create_project(&store, &temp_dir("keys"), "acme", "").await.expect("create");
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("good.yaml"),
        "id: good\ntrigger: { type: request }\nsteps: [ { id: r, type: response } ]\n",
    )
    .expect("write");
    std::fs::write(dir.join("bad.yaml"), "id: bad\ntrigger: { type: request }\nsteps: [ { id: r, type: nope } ]\n")
        .expect("write");
    let error = deploy_dir(&store, "acme", &dir).await.expect_err("invalid file");
    assert!(error.to_string().contains("bad.yaml"), "{error}");
    assert!(
        store.get_deployed("acme", "good").await.expect("get").is_none(),
        "nothing is deployed when a file is invalid"
    );
}
