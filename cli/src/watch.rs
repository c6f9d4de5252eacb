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
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
        // A full channel already holds a pending redeploy, which reads the folder afresh.
        Ok(events) if !events.is_empty() => drop(changed.try_send(())),
        Ok(_) => {}
        Err(error) => eprintln!("watching the project folder failed: {error}"),
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

/// Reloads `dir` and deploys it, printing what changed (or why nothing was).
async fn redeploy(dir: &Path, store: &dyn Store, project_id: &str) {
    let definition = match crate::project::load(dir) {
        Ok(definition) => definition,
        Err(problems) => {
            println!("{} changed; not deployed, the live versions are kept:\n{problems:#}", dir.display());
            return;
        }
    };
    match crate::project::deploy_outcomes(store, project_id, &definition).await {
        Ok(outcomes) => {
            let changed: Vec<&Outcome> =
                outcomes.iter().filter(|o| !matches!(o.change, Change::Unchanged { .. })).collect();
            if changed.is_empty() {
                println!("{} changed; every workflow is unchanged", dir.display());
            }
            for outcome in changed {
                println!("  redeployed {:<24} {}", outcome.workflow_id, outcome.describe());
            }
        }
        Err(error) => println!("{} changed but could not be deployed: {error:#}", dir.display()),
    }
}
