//! `sluice deploy PROJECT --url URL --api-key KEY --project ID`: the project folder is
//! validated here (every problem listed, nothing sent), then sent as one bundle to the stack's
//! management API (`POST /projects/{id}/deploy`), which validates it again as a whole and
//! deploys it; one line per workflow is printed (new / changed vN→vN+1 / unchanged /
//! undeployed) and a summary.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sluice_shared::deploy::{Change, Outcome};

/// The files of a project folder a deploy sends: the workflow files at its root and
/// everything under `integrations/` and `events/` (hidden files left out), by relative path.
pub fn bundle(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() && (name == "integrations" || name == "events") {
            collect(dir, &path, &mut files)?;
        } else if path.is_file() && [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext)) {
            files.insert(name, read(&path)?);
        }
    }
    Ok(files)
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if path.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            files.insert(relative.join("/"), read(&path)?);
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Validates `dir`, sends it to `url` for project `project_id` and prints the outcome.
pub async fn deploy(dir: &Path, url: &str, api_key: &str, project_id: &str) -> anyhow::Result<()> {
    crate::project::load(dir)?;
    let files = bundle(dir)?;
    let endpoint = format!("{}/projects/{project_id}/deploy", url.trim_end_matches('/'));
    let client = reqwest::Client::builder().build().context("cannot build an HTTP client")?;
    let response = client
        .post(&endpoint)
        .bearer_auth(api_key)
        .json(&json!({ "files": files }))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {endpoint}: {e} (is the stack running at {url}?)"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = &body["error"];
        let mut message = format!(
            "the stack refused the deploy ({status}): {}",
            error["message"].as_str().unwrap_or("no error message")
        );
        for violation in error["violations"].as_array().into_iter().flatten() {
            message.push_str(&format!("\n  {}", violation.as_str().unwrap_or_default()));
        }
        bail!(message);
    }
    let outcomes: Vec<Outcome> = body["workflows"].as_array().into_iter().flatten().filter_map(outcome_of).collect();
    print_outcomes(&outcomes);
    Ok(())
}

/// An outcome line of the API's answer.
fn outcome_of(line: &Value) -> Option<Outcome> {
    let version = |key: &str| line[key].as_u64().and_then(|v| u32::try_from(v).ok());
    let change = match line["change"].as_str()? {
        "new" => Change::New { version: version("version")? },
        "changed" => Change::Changed { from: version("from")?, to: version("to")? },
        "unchanged" => Change::Unchanged { version: version("version")? },
        "undeployed" => Change::Undeployed { version: version("version")? },
        _ => return None,
    };
    Some(Outcome {
        workflow_id: line["workflowId"].as_str()?.to_string(),
        integration: line["integration"].as_str().map(str::to_string),
        trigger: line["trigger"].as_str().unwrap_or_default().to_string(),
        change,
    })
}

/// One line per workflow and a summary.
pub fn print_outcomes(outcomes: &[Outcome]) {
    for outcome in outcomes {
        let integration = outcome.integration.as_deref().map(|i| format!("  ({i})")).unwrap_or_default();
        println!("  {:<28} {:<22} {}{integration}", outcome.workflow_id, outcome.describe(), outcome.trigger);
    }
    let count = |f: fn(&Change) -> bool| outcomes.iter().filter(|o| f(&o.change)).count();
    println!(
        "{} new, {} changed, {} unchanged, {} undeployed",
        count(|c| matches!(c, Change::New { .. })),
        count(|c| matches!(c, Change::Changed { .. })),
        count(|c| matches!(c, Change::Unchanged { .. })),
        count(|c| matches!(c, Change::Undeployed { .. })),
    );
}
