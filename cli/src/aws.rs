//! Commands for a deployed stack: create a project in its DynamoDB table and deploy workflow
//! files to it. They use the same adapters as the Lambda functions, with the AWS credentials
//! and region of the environment (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`...).

use std::path::Path;

use sluice_shared::adapters::dynamodb::DynamoStore;
use sluice_shared::model::project::ProjectDefinition;
use sluice_shared::ports::{Deployment, Store, StoreError};

use crate::dev::{self, DevProject};

/// The file `sluice project create` writes in its folder.
pub const PROJECT_FILE: &str = "project.json";

/// The store of a deployed stack's table, and where that table is (for errors that say so).
pub async fn table_store(table: &str) -> (DynamoStore, TableTarget) {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let region = sdk.region().map(|r| r.to_string());
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok().or_else(|| sdk.endpoint_url().map(str::to_string));
    let endpoint = match (endpoint, &region) {
        (Some(endpoint), _) => endpoint,
        (None, Some(region)) => format!("DynamoDB in {region}"),
        (None, None) => "DynamoDB (no region set)".to_string(),
    };
    let target = TableTarget { table: table.to_string(), endpoint, region };
    (DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.to_string()), target)
}

/// Which table a command works on, and at which endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    pub table: String,
    pub endpoint: String,
    pub region: Option<String>,
}

impl TableTarget {
    /// `error` as one line when it is the table's backend failing: what failed, on which table
    /// and endpoint, and the likely fix (the SDK's own chain is logged at debug level). Any
    /// other error (a missing project, a file problem) is returned as it is.
    pub fn explain(&self, what: &str, error: anyhow::Error) -> anyhow::Error {
        let Some(StoreError::Backend(detail)) = error.downcast_ref::<StoreError>() else { return error };
        tracing::debug!(%detail, "{what} failed");
        let TableTarget { table, endpoint, region } = self;
        let has = |needles: &[&str]| needles.iter().any(|needle| detail.contains(needle));
        let (why, fix) = if has(&["ResourceNotFoundException"]) {
            (
                format!("table `{table}` does not exist at {endpoint}"),
                "check --table (or SLUICE_TABLE: the stack's `TableName` output) and AWS_REGION".to_string(),
            )
        } else if has(&[
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredToken",
            "MissingAuthenticationToken",
            "security token",
            "credentials",
        ]) {
            (
                format!("the AWS credentials were refused or are missing (table `{table}` at {endpoint})"),
                "check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and that they have not expired".into(),
            )
        } else if has(&["dispatch failure", "Connection refused", "connection refused", "timed out", "dns error"]) {
            (
                format!("cannot reach {endpoint} (table `{table}`)"),
                "check AWS_REGION, AWS_ENDPOINT_URL if you set one, and your network".to_string(),
            )
        } else if has(&["AccessDenied"]) {
            (
                format!("access to table `{table}` at {endpoint} was denied"),
                "the credentials need DynamoDB read and write on the table".to_string(),
            )
        } else {
            let region = region.as_deref().unwrap_or("no region");
            (
                format!("DynamoDB failed on table `{table}` at {endpoint} ({region})"),
                "run again with RUST_LOG=debug to see the SDK's error".to_string(),
            )
        };
        anyhow::anyhow!("{what} failed: {why}; {fix}")
    }
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

/// Validates every workflow file of `dir` before anything is read from the table (nothing is
/// deployed if one has a problem), then deploys them all; unchanged workflows keep their version.
pub async fn deploy_dir(store: &dyn Store, project_id: &str, dir: &Path) -> anyhow::Result<Vec<Deployment>> {
    let definition = crate::project::load(dir)?;
    deploy_definition(store, project_id, &definition).await?;
    let mut deployed = Vec::new();
    for (_, workflow) in definition.workflows() {
        if let Some(live) = store.get_deployed(project_id, &workflow.id).await? {
            deployed.push(live);
        }
    }
    Ok(deployed)
}

/// Deploys an already validated project to project `project_id`, which must exist.
pub async fn deploy_definition(
    store: &dyn Store,
    project_id: &str,
    definition: &ProjectDefinition,
) -> anyhow::Result<Vec<sluice_shared::deploy::Outcome>> {
    if store.get_project(project_id).await?.is_none() {
        anyhow::bail!("no project `{project_id}` in this table: run `sluice project create` first");
    }
    crate::project::deploy_outcomes(store, project_id, definition).await
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> TableTarget {
        TableTarget { table: "t1".into(), endpoint: "http://127.0.0.1:9".into(), region: Some("eu-west-1".into()) }
    }

    fn explained(detail: &str) -> String {
        let error = anyhow::Error::from(StoreError::Backend(format!("DynamoDB GetItem: {detail}")));
        target().explain("sluice deploy", error).to_string()
    }

    #[test]
    fn a_backend_failure_becomes_one_line_with_the_table_the_endpoint_and_a_fix() {
        for (detail, expected) in [
            (
                "dispatch failure: io error: tcp connect error: Connection refused (os error 111)",
                "sluice deploy failed: cannot reach http://127.0.0.1:9 (table `t1`); check AWS_REGION",
            ),
            (
                "service error: ResourceNotFoundException: Requested resource not found",
                "sluice deploy failed: table `t1` does not exist at http://127.0.0.1:9; check --table",
            ),
            (
                "dispatch failure: other: the credential provider was not enabled: no credentials found in chain",
                "sluice deploy failed: the AWS credentials were refused or are missing (table `t1`",
            ),
            ("service error: UnrecognizedClientException: The security token", "the AWS credentials were refused"),
            (
                "service error: AccessDeniedException: not authorized",
                "access to table `t1` at http://127.0.0.1:9 was denied",
            ),
            ("service error: InternalServerError", "DynamoDB failed on table `t1` at http://127.0.0.1:9 (eu-west-1)"),
        ] {
            let line = explained(detail);
            assert!(line.starts_with(expected) || line.contains(expected), "{detail}: {line}");
            assert!(!line.contains('\n') && !line.contains(detail), "one line without the SDK's text: {line}");
        }
    }

    #[test]
    fn other_errors_are_left_as_they_are() {
        let error = target().explain("sluice deploy", anyhow::anyhow!("no project `acme` in this table"));
        assert_eq!(error.to_string(), "no project `acme` in this table");
        let corrupt = target().explain("sluice deploy", StoreError::Corrupt("bad item".into()).into());
        assert_eq!(corrupt.to_string(), "stored data is corrupt: bad item");
    }
}
