//! `sluice dev` watches its project folder: a change (debounced; editors write files in
//! several steps) reloads the whole project and redeploys what changed, printing one line per
//! workflow that is new, changed or undeployed. A project with a problem is reported and the
//! live versions are kept: nothing is deployed until every file is valid again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use sluice_shared::deploy::{Change, Outcome};
use sluice_shared::ports::Store;

/// How long the folder must be quiet before a change is redeployed.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches `dir` while the returned guard lives; every change redeploys it to `project_id`.
pub fn watch(
    dir: &Path,
    store: Arc<dyn Store>,
    project_id: String,
) -> anyhow::Result<Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>> {
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let root = dir.to_path_buf();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
        // A full channel already holds a pending redeploy, which reads the folder afresh.
        Ok(events) if events.iter().any(|event| relevant(&root, &event.path)) => drop(changed.try_send(())),
        Ok(_) => {}
        Err(error) => say(format!("watching the project folder failed: {error}")),
    })
    .context("cannot watch the project folder")?;
    debouncer
        .watcher()
        .watch(dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    let dir: PathBuf = dir.to_path_buf();
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            redeploy(&dir, store.as_ref(), &project_id).await;
        }
    });
    Ok(debouncer)
}

/// Whether a change at `path` can change the project: not inside a hidden folder or file (the
/// data folder `.sluice`, editors' swap files, `.git`), and a project file or a folder.
fn relevant(root: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let hidden = relative.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    let kind = path.extension().and_then(|e| e.to_str());
    !hidden && matches!(kind, None | Some("yaml" | "yml" | "json"))
}

/// Reloads `dir` and deploys it, printing what changed (or why nothing was).
async fn redeploy(dir: &Path, store: &dyn Store, project_id: &str) {
    let definition = match crate::project::load(dir) {
        Ok(definition) => definition,
        Err(problems) => {
            say(format!("{} changed; not deployed, the live versions are kept:\n{problems:#}", dir.display()));
            return;
        }
    };
    match crate::project::deploy_outcomes(store, project_id, &definition).await {
        Ok(outcomes) => {
            let changed: Vec<&Outcome> =
                outcomes.iter().filter(|o| !matches!(o.change, Change::Unchanged { .. })).collect();
            if changed.is_empty() {
                say(format!("{} changed; every workflow is unchanged", dir.display()));
            }
            for outcome in changed {
                say(format!("  redeployed {:<24} {}", outcome.workflow_id, outcome.describe()));
            }
        }
        Err(error) => say(format!("{} changed but could not be deployed: {error:#}", dir.display())),
    }
}

/// Prints a line; a closed stdout (the terminal went away) is not worth stopping the stack for.
fn say(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        tracing::debug!(line, "stdout is closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_project_files_outside_hidden_folders_trigger_a_redeploy() {
        let root = Path::new("/p");
        for yes in ["/p/a.yaml", "/p/integrations/slack/workflows/x.yml", "/p/events/e.json", "/p/integrations/new"] {
            assert!(relevant(root, Path::new(yes)), "{yes}");
        }
        for no in [
            "/p/.sluice/sluice.db-wal",
            "/p/.git/index",
            "/p/a.yaml.swp",
            "/p/.a.yaml",
            "/p/notes.txt",
            "/p/x/.#a.yaml",
        ] {
            assert!(!relevant(root, Path::new(no)), "{no}");
        }
    }
}
