//! `sluice history replay|redrive|cancel`: by id (one outcome line per id), or in bulk by
//! filter through `POST /executions/bulk` — always a dry run first (count and sample), then,
//! with `--yes` or a confirmation typed on a terminal, the real run, followed until done.
//! The exit status is non-zero when any execution could not be acted on.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};

use super::{ActionArgs, Api, Refusal, colour, out, render};

pub async fn run(action: &str, args: &ActionArgs) -> anyhow::Result<ExitCode> {
    if args.version.is_some() && action != "replay" {
        bail!("--version is for replay only");
    }
    let api = Api::new(&args.target)?;
    match (args.ids.is_empty(), args.filter.is_empty()) {
        (false, false) => bail!("give execution ids or filter flags, not both"),
        (true, true) => bail!(
            "give execution ids, or filter flags (--workflow, --status, --since, --search...) for a bulk {action}"
        ),
        (false, true) => {
            if args.dry_run || args.yes {
                bail!("--dry-run and --yes are for bulk actions (by filter)");
            }
            by_ids(&api, action, args).await
        }
        (true, false) => bulk(&api, action, args).await,
    }
}

async fn by_ids(api: &Api, action: &str, args: &ActionArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.version {
        Some(version) => json!({ "version": version }),
        None => json!({}),
    };
    let mut failed = 0;
    for given in &args.ids {
        let id = match api.resolve(given).await {
            Ok(id) => id,
            Err(error) => {
                failed += 1;
                out(&format!("{action} {given}: failed: {error}\n"));
                continue;
            }
        };
        match api.post(&format!("/executions/{id}/{action}"), &body).await {
            Ok(answer) => out(&format!("{action} {id}: {}\n", done_line(action, &answer))),
            Err(error) => {
                failed += 1;
                // A refusal is this id's outcome; not reaching the stack ends the command.
                if error.downcast_ref::<Refusal>().is_none() {
                    return Err(error);
                }
                out(&format!("{action} {id}: failed: {error}\n"));
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} failed", args.ids.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn done_line(action: &str, answer: &Value) -> String {
    match action {
        "replay" => format!(
            "new execution {} (workflow v{})",
            answer["executionId"].as_str().unwrap_or("?"),
            answer["workflowVersion"]
        ),
        "redrive" => format!("{} (redrive {})", answer["status"].as_str().unwrap_or("?"), answer["redrives"]),
        _ => answer["status"].as_str().unwrap_or("done").to_string(),
    }
}

async fn bulk(api: &Api, action: &str, args: &ActionArgs) -> anyhow::Result<ExitCode> {
    let mut request = json!({ "action": action, "filter": args.filter.body(), "dryRun": true });
    if let Some(version) = &args.version {
        request["version"] = json!(version);
    }
    let dry = api.post("/executions/bulk", &request).await?;
    let count = dry["count"].as_u64().unwrap_or(0);
    let at_least = if dry["countCapped"] == true { "at least " } else { "" };
    let sample = dry["sample"].as_array().cloned().unwrap_or_default();
    out(&format!("{action} would act on {at_least}{count} execution(s)\n"));
    if !sample.is_empty() {
        out(&format!("sample ({} shown):\n", sample.len()));
        out(&render::table(&sample, colour(), false, chrono::Utc::now()));
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if count == 0 {
        out("nothing to do\n");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            bail!("not on a terminal: add --yes to {action} them (or --dry-run to only look)");
        }
        if !confirm(&format!("{action} {at_least}{count} execution(s)? [y/N] "))? {
            out("nothing done\n");
            return Ok(ExitCode::SUCCESS);
        }
    }
    request["dryRun"] = json!(false);
    let started = api.post("/executions/bulk", &request).await?;
    let Some(bulk_id) = started["bulkId"].as_str() else { bail!("the stack's answer has no bulkId: {started}") };
    out(&format!("bulk {action} {bulk_id}: {} execution(s)\n", started["total"]));
    follow(api, bulk_id).await
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout();
    stdout.write_all(question.as_bytes())?;
    stdout.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Polls the bulk job until it is done: a bar redrawn in place on a terminal, a line per
/// change otherwise; then the errors, and the exit status.
async fn follow(api: &Api, bulk_id: &str) -> anyhow::Result<ExitCode> {
    let terminal = std::io::stdout().is_terminal();
    let mut last = None;
    let mut changed = std::time::Instant::now();
    let state = loop {
        let state = api.get(&format!("/bulk/{bulk_id}"), &[]).await?;
        let numbers = ["total", "done", "succeeded", "failed", "skipped"].map(|k| state[k].as_u64().unwrap_or(0));
        let [total, done, succeeded, failed, skipped] = numbers;
        let counts = format!("{done}/{total}  ✓ {succeeded}  ✗ {failed}  skipped {skipped}");
        if terminal {
            out(&format!("\r{} {counts}", progress_bar(done, total)));
        } else if last != Some(numbers) {
            out(&format!("progress: {counts}\n"));
        }
        if last != Some(numbers) {
            changed = std::time::Instant::now();
        }
        last = Some(numbers);
        if state["state"] == "done" {
            break state;
        }
        if changed.elapsed() > STALLED {
            if terminal {
                out("\n");
            }
            bail!("bulk {bulk_id} made no progress for {} minutes; it goes on in the stack", STALLED.as_secs() / 60);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if terminal {
        out("\n");
    }
    let errors = state["errors"].as_array().cloned().unwrap_or_default();
    for error in &errors {
        out(&format!(
            "  ✗ {}: {}\n",
            error["executionId"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or_default()
        ));
    }
    let failed = state["failed"].as_u64().unwrap_or(0);
    out(&format!(
        "done: {} succeeded, {failed} failed, {} skipped\n",
        state["succeeded"].as_u64().unwrap_or(0),
        state["skipped"].as_u64().unwrap_or(0)
    ));
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// How long the command follows a bulk job that makes no progress.
const STALLED: Duration = Duration::from_secs(600);

fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!("[{}{}]", "#".repeat(filled as usize), "-".repeat((WIDTH - filled) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_with_the_work_done() {
        assert_eq!(progress_bar(0, 10), format!("[{}]", "-".repeat(30)));
        assert_eq!(progress_bar(5, 10), format!("[{}{}]", "#".repeat(15), "-".repeat(15)));
        assert_eq!(progress_bar(0, 0), format!("[{}]", "#".repeat(30)), "nothing to do is done");
    }
}
