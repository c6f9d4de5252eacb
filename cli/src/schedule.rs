//! `sluice schedule next WORKFLOW`: the next fires of a scheduled (or polling) workflow, each
//! as an instant in UTC and as the wall time of the schedule's zone, with its DST anomaly
//! (a wall time that did not exist, or that occurred twice) marked.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sluice_shared::adapters::sqlite::Sqlite;
use sluice_shared::model::schedule::{self, Fire, ScheduleTrigger, UTC};
use sluice_shared::model::{Workflow, load};
use sluice_shared::ports::UserStore;
use sluice_shared::record::{Timestamp, format_timestamp, now};

use crate::dev::DEV_PROJECT_ID;

/// What to print the fires of.
#[derive(Debug, Clone)]
pub struct NextOptions {
    /// A workflow id of the project, or a workflow file.
    pub workflow: String,
    pub project: PathBuf,
    /// Read this user's zone from `sluice dev`'s database (for `timezone: user`).
    pub user: Option<String>,
    /// Compute in this zone instead.
    pub zone: Option<String>,
    pub count: usize,
    pub data_dir: PathBuf,
    /// From this instant (RFC 3339) instead of now.
    pub after: Option<String>,
}

/// Prints the next fires; the lines, for tests.
pub async fn next(options: &NextOptions) -> anyhow::Result<Vec<String>> {
    let workflow = find_workflow(&options.workflow, &options.project)?;
    let Some(spec) = workflow.trigger.schedule() else {
        bail!(
            "workflow `{}` has a `{}` trigger: only `schedule` and `poll` workflows fire on a clock",
            workflow.id,
            workflow.trigger.type_name()
        );
    };
    let (zone, why) = zone_of(&spec, options).await?;
    let after = match &options.after {
        None => now(),
        Some(text) => text
            .parse::<Timestamp>()
            .with_context(|| format!("--after `{text}` is not an RFC 3339 instant (e.g. 2027-03-13T12:00:00Z)"))?,
    };
    let until = after + std::time::Duration::from_secs(30 * 366 * 24 * 3600);
    let fires = spec.fires_between(after, until, &zone, options.count)?;
    let mut lines = vec![format!("{}: {}, in {zone}{why}", workflow.id, spec.rule)];
    for fire in &fires {
        lines.push(line(fire, &zone)?);
    }
    if fires.len() < options.count {
        lines.push(format!("  (no further fire within 30 years of {})", format_timestamp(&after)));
    }
    for line in &lines {
        println!("{line}");
    }
    Ok(lines)
}

/// `  2027-03-14T07:00:00.000Z  2027-03-14 03:00 EDT (-04:00)  (DST: 02:30 does not exist, fired at 03:00)`
fn line(fire: &Fire, zone: &str) -> anyhow::Result<String> {
    let local = schedule::local_time(fire.at, zone)?;
    let mut text =
        format!("  {}  {} {} ({})", format_timestamp(&fire.at), local.wall, local.abbreviation, local.offset);
    if let Some(anomaly) = &fire.anomaly {
        text.push_str(&format!("  ({})", anomaly.note(&local)));
    }
    Ok(text)
}

/// The zone to compute in, and how it was chosen (for the header line).
async fn zone_of(spec: &ScheduleTrigger, options: &NextOptions) -> anyhow::Result<(String, String)> {
    if spec.is_interval() {
        let ignored =
            if options.zone.is_some() || options.user.is_some() { "; --zone and --user do not apply" } else { "" };
        return Ok((UTC.to_string(), format!(" (elapsed time: zones do not change it{ignored})")));
    }
    if let Some(zone) = &options.zone {
        schedule::time_zone(zone)?;
        return Ok((zone.clone(), " (--zone)".to_string()));
    }
    if !spec.uses_user_zone() {
        let note = if options.user.is_some() { " (the schedule's own zone; --user does not change it)" } else { "" };
        return Ok((spec.zone_name(None), note.to_string()));
    }
    let Some(user) = &options.user else {
        return Ok((
            UTC.to_string(),
            " (timezone: user: each user's own zone; UTC shown, give --user U or --zone Z)".to_string(),
        ));
    };
    let user_zone = user_zone(&options.data_dir, user).await?;
    let note = match &user_zone {
        Some(_) => format!(" (timezone: user: the zone of `{user}`)"),
        None => format!(" (timezone: user: `{user}` has no timezone, so UTC)"),
    };
    Ok((spec.zone_name(user_zone.as_deref()), note))
}

/// The timezone `user` set through `PATCH /sdk/me`, from `sluice dev`'s database.
async fn user_zone(data_dir: &Path, user: &str) -> anyhow::Result<Option<String>> {
    let path = data_dir.join("sluice.db");
    if !path.is_file() {
        bail!(
            "no `sluice dev` database at {} (run `sluice dev` with --data-dir {} first)",
            path.display(),
            data_dir.display()
        );
    }
    let db = Sqlite::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let Some(found) = db.get_user(DEV_PROJECT_ID, user).await? else {
        bail!("no user `{user}` in project `{DEV_PROJECT_ID}` of {}", path.display());
    };
    Ok(found.meta.timezone)
}

/// The workflow `name`: a workflow file, or the id of a workflow of the project at `project`.
fn find_workflow(name: &str, project: &Path) -> anyhow::Result<Workflow> {
    let file = Path::new(name);
    let is_file = ["yaml", "yml", "json"].iter().any(|ext| file.extension().is_some_and(|e| e == *ext));
    if is_file && file.is_file() {
        return load::load_file(file).map_err(|problems| anyhow::anyhow!(crate::dev::problem_list(&problems)));
    }
    if !project.exists() {
        bail!("no project folder at {} (give --project DIR, or a workflow file)", project.display());
    }
    let definition = crate::project::load(project)?;
    let found = definition.workflows().find(|(_, workflow)| workflow.id == name).map(|(_, workflow)| workflow.clone());
    found.ok_or_else(|| {
        let ids: Vec<&str> = definition.workflows().map(|(_, workflow)| workflow.id.as_str()).collect();
        anyhow::anyhow!("no workflow `{name}` in {} (its workflows: {})", project.display(), ids.join(", "))
    })
}
