//! `sluice test`: one test run of a workflow file on the running `sluice dev`, printed step
//! by step (input, output, error, logs).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sluice_shared::model::load;

use crate::dev::DevProject;

pub async fn run(file: &Path, data: Option<&Path>, step: Option<&str>, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let integration = integration_of(file);
    let workflow = match &integration {
        // Checked by the stack against the deployed integration (its settings and credentials).
        Some(_) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            load::parse_text(&file.display().to_string(), &text).map_err(|problem| anyhow::anyhow!("{problem}"))?
        }
        None => {
            let workflow =
                load::load_file(file).map_err(|problems| anyhow::anyhow!(crate::dev::problem_list(&problems)))?;
            serde_json::to_value(&workflow)?
        }
    };
    let workflow_id = workflow["id"].as_str().unwrap_or_default().to_string();
    let project_path = data_dir.join("dev-project.json");
    let project: DevProject = serde_json::from_str(
        &std::fs::read_to_string(&project_path)
            .with_context(|| format!("no {}: start `sluice dev` first", project_path.display()))?,
    )
    .with_context(|| format!("{} is not valid", project_path.display()))?;
    let mut request = json!({ "workflow": workflow });
    if let Some(integration) = integration {
        // A file of a project's integration runs as a workflow of that deployed integration:
        // its settings, credentials and actions.
        request["integration"] = json!(integration);
    }
    if let Some(data) = data {
        let text = std::fs::read_to_string(data).with_context(|| format!("cannot read {}", data.display()))?;
        let data: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", data.display()))?;
        let is_request = data.as_object().is_some_and(|o| {
            !o.is_empty() && o.keys().all(|k| ["body", "query", "headers", "steps", "userId"].contains(&k.as_str()))
        });
        if is_request {
            for (key, value) in data.as_object().into_iter().flatten() {
                let target = if key == "steps" || key == "userId" { key.clone() } else { format!("trigger.{key}") };
                match target.split_once('.') {
                    Some((_, field)) => request["trigger"][field] = value.clone(),
                    None => request[target] = value.clone(),
                }
            }
        } else {
            request["trigger"] = json!({ "body": data });
        }
    }
    if data.is_none()
        && let Some(sample) = captured_sample(&project, &workflow_id).await?
    {
        eprintln!("using the test request captured at {}", sample["capturedAt"].as_str().unwrap_or("?"));
        request["trigger"] = json!({ "query": sample["query"], "headers": sample["headers"], "body": sample["body"] });
    }
    if let Some(step) = step {
        request["step"] = json!(step);
    }
    let url = format!("{}/projects/{}/test-runs", project.base_url, project.project_id);
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&project.api_key)
        .json(&request)
        .send()
        .await
        .with_context(|| format!("cannot reach sluice dev at {}: is it running?", project.base_url))?;
    let status = response.status();
    let body: Value = response.json().await.context("sluice dev answered something that is not JSON")?;
    if !status.is_success() {
        bail!("the test run was refused ({status}): {}", serde_json::to_string_pretty(&body)?);
    }
    let steps = if step.is_some() { vec![body.clone()] } else { body["steps"].as_array().cloned().unwrap_or_default() };
    let mut out = String::new();
    for shown in &steps {
        show_step(&mut out, shown);
    }
    if step.is_none() {
        let (id, status) = (body["executionId"].as_str().unwrap_or("?"), body["status"].as_str().unwrap_or("?"));
        out.push_str(&format!("execution {id}: {status}\n"));
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            out.push_str(&format!("  error: {}\n", error["message"].as_str().unwrap_or_default()));
        }
    }
    // A closed pipe (`| head`) is not an error of the test run.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    Ok(if body["status"] == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The integration of a file at `.../integrations/<name>/workflows/<file>`.
fn integration_of(file: &Path) -> Option<String> {
    let parts: Vec<String> = file.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let n = parts.len();
    (n >= 4 && parts[n - 2] == "workflows" && parts[n - 4] == "integrations").then(|| parts[n - 3].clone())
}

/// The request captured by the workflow's test URL on the running stack, if there is one.
async fn captured_sample(project: &DevProject, workflow_id: &str) -> anyhow::Result<Option<Value>> {
    let url = format!("{}/projects/{}/workflows/{workflow_id}/test-request", project.base_url, project.project_id);
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&project.api_key)
        .send()
        .await
        .with_context(|| format!("cannot reach sluice dev at {}: is it running?", project.base_url))?;
    match response.status() {
        reqwest::StatusCode::OK => Ok(Some(response.json().await.context("the captured test request is not JSON")?)),
        _ => Ok(None),
    }
}

fn show_step(out: &mut String, step: &Value) {
    let id = step["id"].as_str().or_else(|| step["step"].as_str()).unwrap_or("?");
    let attempts = step["attempts"].as_u64().map(|n| format!(", {n} attempt(s)")).unwrap_or_default();
    out.push_str(&format!("── {id} ({}{attempts})\n", step["status"].as_str().unwrap_or("?")));
    for field in ["input", "output", "error"] {
        if let Some(value) = step.get(field).filter(|v| !v.is_null()) {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            out.push_str(&format!("  {field}: {}\n", text.replace('\n', "\n  ")));
        }
    }
    for line in step["logs"].as_array().into_iter().flatten() {
        out.push_str(&format!("  log: {}\n", line.as_str().unwrap_or_default()));
    }
}
