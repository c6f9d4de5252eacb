//! `sluice dev` watches its project folder: a change (debounced; editors write files in
//! several steps) reloads the whole project and redeploys what changed, printing one line per
//! workflow that is new, changed or undeployed. A project with a problem is reported and the
//! live versions are kept: nothing is deployed until every file is valid again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::event::ModifyKind;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sluice_shared::deploy::{Change, Outcome};
use sluice_shared::ports::Store;

/// How long the folder must be quiet before a change is redeployed.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches `dir` while the returned watcher lives; every change redeploys it to `project_id`.
pub fn watch(dir: &Path, store: Arc<dyn Store>, project_id: String) -> anyhow::Result<RecommendedWatcher> {
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    // Events name absolute paths: compare them to the folder's absolute path (a relative
    // `.sluice/example-project` would otherwise look hidden as a whole).
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| match result {
        // Only writes, creations, removals and renames: reading the files (as a redeploy
        // does) must not look like a change.
        Ok(event) if is_write(&event.kind) && event.paths.iter().any(|path| relevant(&root, path)) => {
            // A full channel already holds a pending redeploy, which reads the folder afresh.
            if changed.try_send(()).is_err() {
                tracing::trace!("a redeploy is already pending");
            }
        }
        Ok(_) => {}
        Err(error) => say(format!("watching the project folder failed: {error}")),
    })
    .context("cannot watch the project folder")?;
    watcher.watch(dir, RecursiveMode::Recursive).with_context(|| format!("cannot watch {}", dir.display()))?;
    let dir: PathBuf = dir.to_path_buf();
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Editors write a file in several steps: wait for the folder to be quiet.
            tokio::time::sleep(DEBOUNCE).await;
            while changes.try_recv().is_ok() {}
            redeploy(&dir, store.as_ref(), &project_id).await;
        }
    });
    Ok(watcher)
}

/// Whether an event changes a file's content or the folder's entries.
fn is_write(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
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
    use notify::event::{AccessKind, MetadataKind};

    use super::*;

    #[test]
    fn reading_the_files_is_not_a_change() {
        assert!(is_write(&EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Content))));
        assert!(is_write(&EventKind::Create(notify::event::CreateKind::File)));
        assert!(is_write(&EventKind::Remove(notify::event::RemoveKind::File)));
        assert!(!is_write(&EventKind::Access(AccessKind::Open(notify::event::AccessMode::Read))));
        assert!(!is_write(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))));
    }

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
