//! `sluice schedule next` as a process: the next fires of a project's scheduled workflow in its
//! zone with the DST night marked, a user's own zone read from `sluice dev`'s database, and
//! what it refuses.

mod support;

use std::path::Path;

use sluice_shared::adapters::sqlite::Sqlite;
use sluice_shared::ports::{UserMeta, UserStore};
use support::{sluice, temp_dir};

fn write_workflow(project: &Path, id: &str, trigger: &str) {
    let text = format!("id: {id}\ntrigger: {trigger}\nsteps: [{{ id: r, type: response }}]\n");
    std::fs::write(project.join(format!("{id}.yaml")), text).expect("write the workflow");
}

fn stdout_of(args: &[&str]) -> String {
    let out = sluice(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn schedule_next_prints_fires_in_the_zone_and_marks_the_dst_nights() {
    let project = temp_dir("schedule-next");
    write_workflow(&project, "nightly", "{ type: schedule, daily: { at: \"02:30\" }, timezone: America/New_York }");
    write_workflow(&project, "late", "{ type: schedule, daily: { at: \"01:30\" }, timezone: America/New_York }");
    let dir = project.to_str().expect("utf-8 path");
    let spring =
        stdout_of(&["schedule", "next", "nightly", "--project", dir, "--after", "2027-03-13T12:00:00Z", "-n", "2"]);
    assert_eq!(
        spring.lines().collect::<Vec<_>>(),
        [
            "nightly: daily at 02:30, in America/New_York",
            "  2027-03-14T07:00:00.000Z  2027-03-14 03:00 EDT (-04:00)  (DST: 02:30 does not exist, fired at 03:00)",
            "  2027-03-15T06:30:00.000Z  2027-03-15 02:30 EDT (-04:00)",
        ]
    );
    let autumn =
        stdout_of(&["schedule", "next", "late", "--project", dir, "--after", "2027-11-06T12:00:00Z", "-n", "2"]);
    assert!(
        autumn.contains(
            "  2027-11-07T05:30:00.000Z  2027-11-07 01:30 EDT (-04:00)  (DST: 01:30 occurs twice, fires at the first)"
        ),
        "{autumn}"
    );
    assert!(autumn.contains("  2027-11-08T06:30:00.000Z  2027-11-08 01:30 EST (-05:00)"), "{autumn}");
    // A workflow file works as well as an id; --zone computes elsewhere.
    let file = project.join("nightly.yaml");
    let elsewhere = stdout_of(&[
        "schedule",
        "next",
        file.to_str().expect("utf-8 path"),
        "--zone",
        "Asia/Kolkata",
        "--after",
        "2027-03-13T12:00:00Z",
        "-n",
        "1",
    ]);
    assert!(elsewhere.contains("in Asia/Kolkata (--zone)"), "{elsewhere}");
    assert!(elsewhere.contains("  2027-03-13T21:00:00.000Z  2027-03-14 02:30 IST (+05:30)"), "{elsewhere}");
}

#[test]
fn schedule_next_reads_a_users_own_zone_from_the_dev_database() {
    let project = temp_dir("schedule-user");
    write_workflow(&project, "per-user", "{ type: schedule, hourly: { minute: 30 }, timezone: user }");
    let data = project.join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    let db = Sqlite::open(&data.join("sluice.db")).expect("the dev database");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let london = UserMeta { timezone: Some("Europe/London".into()), ..UserMeta::default() };
        db.update_user("dev", "ada", &london).await.expect("ada's zone");
        db.ensure_user("dev", "bob").await.expect("bob, without a zone");
    });
    drop(db);
    let (dir, data) = (project.to_str().expect("utf-8 path"), data.to_str().expect("utf-8 path"));
    let common =
        ["schedule", "next", "per-user", "--project", dir, "--data-dir", data, "--after", "2027-03-28T00:00:00Z"];
    let ada = stdout_of(&[&common[..], &["--user", "ada", "-n", "2"]].concat());
    assert_eq!(
        ada.lines().collect::<Vec<_>>(),
        [
            "per-user: hourly at :30, in Europe/London (timezone: user: the zone of `ada`)",
            "  2027-03-28T00:30:00.000Z  2027-03-28 00:30 GMT (+00:00)",
            "  2027-03-28T01:00:00.000Z  2027-03-28 02:00 BST (+01:00)  (DST: 01:30 does not exist, fired at 02:00)",
        ]
    );
    let bob = stdout_of(&[&common[..], &["--user", "bob", "-n", "1"]].concat());
    assert!(
        bob.starts_with("per-user: hourly at :30, in UTC (timezone: user: `bob` has no timezone, so UTC)"),
        "{bob}"
    );
    let nobody = stdout_of(&[&common[..], &["-n", "1"]].concat());
    assert!(
        nobody.contains("in UTC (timezone: user: each user's own zone; UTC shown, give --user U or --zone Z)"),
        "{nobody}"
    );
    let stranger = sluice(&[&common[..], &["--user", "carol"]].concat());
    assert_eq!(stranger.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("no user `carol`"));
}

#[test]
fn schedule_next_refuses_a_workflow_without_a_clock_and_an_unknown_one() {
    let project = temp_dir("schedule-refuses");
    write_workflow(&project, "hook", "{ type: request }");
    let dir = project.to_str().expect("utf-8 path");
    let out = sluice(&["schedule", "next", "hook", "--project", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workflow `hook` has a `request` trigger"));
    let out = sluice(&["schedule", "next", "ghost", "--project", dir]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workflow `ghost` in"), "{out:?}");
}
