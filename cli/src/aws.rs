//! Commands for a deployed stack: create a project in its DynamoDB table and deploy workflow
//! files to it. They use the same adapters as the Lambda functions, with the AWS credentials
//! and region of the environment (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`...).

use std::path::Path;

use sluice_shared::adapters::dynamodb::DynamoStore;
use sluice_shared::ports::{Deployment, Store};

use crate::dev::{self, DevProject};

/// The file `sluice project create` writes in its folder.
pub const PROJECT_FILE: &str = "project.json";

/// The store of a deployed stack's table.
pub async fn table_store(table: &str) -> DynamoStore {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.to_string())
}

/// Creates project `project_id` (or checks the one that exists) with keys kept in `dir`.
pub async fn create_project(
    store: &dyn Store,
    dir: &Path,
    project_id: &str,
    base_url: &str,
) -> anyhow::Result<DevProject> {
    if !valid_id(project_id) {
        anyhow::bail!("a project id is 1–64 characters of a-z, 0-9, `-` and `_`");
    }
    dev::ensure_project(store, dir, PROJECT_FILE, project_id, base_url).await
}

/// Validates every workflow file of `dir` (nothing is deployed if one has a problem), then
/// deploys them all; unchanged workflows keep their version.
pub async fn deploy_dir(store: &dyn Store, project_id: &str, dir: &Path) -> anyhow::Result<Vec<Deployment>> {
    if store.get_project(project_id).await?.is_none() {
        anyhow::bail!("no project `{project_id}` in this table: run `sluice project create` first");
    }
    let definition = crate::project::load(dir)?;
    let deployed = crate::project::deploy(store, project_id, &definition).await?;
    Ok(deployed.into_iter().map(|(_, deployment)| deployment).collect())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
