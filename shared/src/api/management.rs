//! Management routes of deployments, with the project API key:
//! - `POST /projects/{p}/deploy` `{"files": {"relative/path": "text", ...}}`: the bundle of a
//!   project folder (its `integrations/`, `events/` and root workflow files), validated as a
//!   whole — nothing changes if any file has a problem, and the 400 lists every problem with
//!   file and path — then deployed (`crate::deploy`): one line per workflow (new, changed,
//!   unchanged, undeployed).
//! - `GET /projects/{p}/workflows`: the deployed workflows with live version, trigger,
//!   integration and deploy time.
//! - `DELETE /projects/{p}/workflows/{w}` and `DELETE /projects/{p}/integrations/{i}`:
//!   undeploy one workflow or a whole integration (history kept; running executions finish on
//!   their version); 404 when it is not deployed.
//! - `POST /projects/{p}/workflows/{w}/test-request`: a test URL (valid an hour) whose next
//!   request — any method; query, headers without credentials or cookies, body — is kept as
//!   the workflow's sample trigger data without running anything; `GET` on the same route
//!   reads the sample (`sluice test` runs with it when given no `--data`).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::executions::authorize;
use crate::deploy::{self, Change, Outcome};
use crate::error::{ApiError, json_response};
use crate::model::load;
use crate::record::format_timestamp;
use crate::runtime::Runtime;

/// The largest deploy bundle (within Lambda's 6 MB request limit).
pub const MAX_BUNDLE_BYTES: usize = 5 * 1024 * 1024;
/// The most files a bundle may hold.
pub const MAX_BUNDLE_FILES: usize = 2_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    files: BTreeMap<String, String>,
}

/// `POST /projects/{p}/deploy`.
pub(super) async fn deploy(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    if body.len() > MAX_BUNDLE_BYTES {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit: MAX_BUNDLE_BYTES });
    }
    authorize(runtime, project_id, headers).await?;
    let bundle: Bundle = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be {{\"files\": {{\"relative/path\": \"text\", ...}}}}: {e}"))
    })?;
    if bundle.files.is_empty() || bundle.files.len() > MAX_BUNDLE_FILES {
        return Err(ApiError::BadRequest(format!(
            "a bundle holds 1 to {MAX_BUNDLE_FILES} files, not {}",
            bundle.files.len()
        )));
    }
    let problems: Vec<String> =
        bundle.files.keys().filter_map(|path| path_problem(path).map(|p| format!("`{path}`: {p}"))).collect();
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let folder = BundleDir::write(&bundle.files)?;
    let definition = load::load_project(&folder.0).map_err(|found| {
        let root = format!("{}/", folder.0.display());
        ApiError::Validation(
            found
                .iter()
                .map(|problem| {
                    let file = problem.file.strip_prefix(&root).unwrap_or(&problem.file);
                    let problem = load::Problem { file: file.to_string(), ..problem.clone() };
                    problem.to_string()
                })
                .collect(),
        )
    })?;
    drop(folder);
    let outcomes = deploy::deploy_project(runtime.store.as_ref(), project_id, &definition).await?;
    crate::scheduler::switch_rule(runtime, project_id).await;
    Ok(json_response(StatusCode::OK, &report(&outcomes)))
}

/// `{"workflows": [...], "summary": {"new", "changed", "unchanged", "undeployed"}}`.
pub fn report(outcomes: &[Outcome]) -> Value {
    let count = |f: fn(&Change) -> bool| outcomes.iter().filter(|o| f(&o.change)).count();
    json!({
        "workflows": outcomes,
        "summary": {
            "new": count(|c| matches!(c, Change::New { .. })),
            "changed": count(|c| matches!(c, Change::Changed { .. })),
            "unchanged": count(|c| matches!(c, Change::Unchanged { .. })),
            "undeployed": count(|c| matches!(c, Change::Undeployed { .. })),
        },
    })
}

/// `GET /projects/{p}/workflows`.
pub(super) async fn list(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let live = deploy::live(runtime.store.as_ref(), project_id).await?;
    let workflows: Vec<Value> = live
        .values()
        .map(|deployment| {
            let workflow = &deployment.workflow;
            let mut entry = json!({
                "id": deployment.workflow_id,
                "version": deployment.version,
                "trigger": workflow.trigger.type_name(),
                "deployedAt": format_timestamp(&deployment.deployed_at),
            });
            if let Some(integration) = &workflow.integration {
                entry["integration"] = json!(integration);
            }
            if let Some(name) = &workflow.name {
                entry["name"] = json!(name);
            }
            if let Some(event) = workflow.trigger.event() {
                entry["event"] = json!(event);
            }
            if let crate::model::Trigger::Request { method, .. } = &workflow.trigger {
                entry["method"] = json!(method.as_str());
            }
            entry
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "workflows": workflows })))
}

/// `DELETE /projects/{p}/workflows/{w}`.
pub(super) async fn undeploy_workflow(
    runtime: &Runtime,
    project_id: &str,
    workflow_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let outcome = deploy::undeploy_workflow(runtime.store.as_ref(), project_id, workflow_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflow `{workflow_id}` is not deployed in this project")))?;
    crate::scheduler::switch_rule(runtime, project_id).await;
    Ok(json_response(StatusCode::OK, &report(&[outcome])))
}

/// `DELETE /projects/{p}/integrations/{i}`.
pub(super) async fn undeploy_integration(
    runtime: &Runtime,
    project_id: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let outcomes = deploy::undeploy_integration(runtime.store.as_ref(), project_id, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("integration `{name}` is not deployed in this project")))?;
    crate::scheduler::switch_rule(runtime, project_id).await;
    Ok(json_response(StatusCode::OK, &report(&outcomes)))
}

/// Why `path` cannot be a file of a bundle: relative, `/`-separated, at most 5 parts of
/// `[A-Za-z0-9._ -]` that are not `.`, `..` or hidden, at most 255 characters.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() || path.len() > 255 {
        return Some("a path is 1 to 255 characters");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 5 {
        return Some("at most 5 levels deep");
    }
    for part in parts {
        if part.is_empty() || part == "." || part == ".." || part.starts_with('.') {
            return Some("a relative path without empty, `.`, `..` or hidden parts");
        }
        if !part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b' ')) {
            return Some("only letters, digits, `.`, `_`, `-` and spaces");
        }
    }
    let normal = Path::new(path).components().all(|c| matches!(c, Component::Normal(_)));
    if !normal {
        return Some("a relative path");
    }
    None
}

/// A bundle written to a fresh private folder, removed on drop.
struct BundleDir(PathBuf);

impl BundleDir {
    fn write(files: &BTreeMap<String, String>) -> Result<BundleDir, ApiError> {
        let root = std::env::temp_dir().join(format!("sluice-deploy-{}", uuid::Uuid::new_v4().simple()));
        let dir = BundleDir(root);
        let io = |e: std::io::Error| ApiError::Internal(format!("cannot write the bundle: {e}"));
        std::fs::create_dir_all(&dir.0).map_err(io)?;
        for (path, text) in files {
            let target = dir.0.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            if target.is_dir() {
                return Err(ApiError::Validation(vec![format!("`{path}`: is also a folder of the bundle")]));
            }
            std::fs::write(&target, text).map_err(|e| match e.kind() {
                std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory => {
                    ApiError::Validation(vec![format!("`{path}`: a file and a folder of the bundle share a name")])
                }
                _ => io(e),
            })?;
        }
        Ok(dir)
    }
}

impl Drop for BundleDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(folder = %self.0.display(), error = %e, "cannot remove a deploy bundle's folder");
        }
    }
}

/// How long a test URL waits for its request.
const TEST_URL_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// `POST /projects/{p}/workflows/{w}/test-request`: arms a capture, answers its URL.
pub(super) async fn arm_test_request(
    runtime: &Runtime,
    project_id: &str,
    workflow_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::Internal("no randomness for a test URL".into()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let expires_at = crate::record::now() + TEST_URL_LIFETIME;
    runtime.store.arm_capture(project_id, workflow_id, &crate::auth::hash_api_key(&token), expires_at).await?;
    let base = super::connect::base_url(&runtime.connect, headers);
    let url = format!("{base}/projects/{project_id}/test-requests/{workflow_id}/{token}");
    Ok(json_response(StatusCode::OK, &json!({ "url": url, "expiresAt": format_timestamp(&expires_at) })))
}

/// `GET /projects/{p}/workflows/{w}/test-request`: the captured sample, or 404.
pub(super) async fn test_request(
    runtime: &Runtime,
    project_id: &str,
    workflow_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let sample = runtime.store.sample(project_id, workflow_id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no test request captured for `{workflow_id}`: POST /projects/{project_id}/workflows/{workflow_id}/test-request \
             for a test URL, then send it a request"
        ))
    })?;
    Ok(json_response(StatusCode::OK, &sample))
}

/// Any request to `/projects/{p}/test-requests/{w}/{token}`: kept as the workflow's sample if
/// the token is the armed one (once), else 404. Nothing runs.
pub(super) async fn capture_test_request(
    runtime: &Runtime,
    project_id: &str,
    workflow_id: &str,
    token: &str,
    request: http::Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = runtime.settings.max_body_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit });
    }
    let data = super::trigger::trigger_data(&parts, &body)?;
    let now = crate::record::now();
    let sample = json!({
        "method": parts.method.as_str(),
        "query": data.query,
        "headers": data.headers,
        "body": data.body,
        "capturedAt": format_timestamp(&now),
    });
    let hash = crate::auth::hash_api_key(token);
    if !runtime.store.capture(project_id, workflow_id, &hash, &sample, now).await? {
        return Err(ApiError::NotFound("this test URL is unknown, used or expired: ask for a new one".into()));
    }
    Ok(json_response(StatusCode::OK, &json!({ "captured": true, "workflowId": workflow_id })))
}

#[cfg(test)]
mod tests {
    use super::path_problem;

    #[test]
    fn bundle_paths_stay_inside_the_bundle() {
        for good in ["a.yaml", "integrations/slack/config.yaml", "events/contact created.yaml", "x/y/z/w/v.json"] {
            assert_eq!(path_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x.yaml",
            "a/../../x",
            "a/./b",
            "a//b",
            ".env",
            "a/.git/config",
            "a\\b",
            "a/b%2f",
            "a/b:c",
            "x/y/z/w/v/u.yaml",
            "a\0b",
            "é.yaml",
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?} must be refused");
        }
        assert!(path_problem(&"a".repeat(256)).is_some());
    }
}
