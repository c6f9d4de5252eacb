//! Loading `webhook`, `schedule` and `poll` triggers: the shapes accepted, their defaults, and
//! every mistake reported with its path.

use std::fs;

use crate::model::load::tests::assert_problems;
use crate::model::load::tests_files::TempDir;
use crate::model::load::{load_project, load_str};
use crate::model::schedule::{Catchup, Daily, Hourly, Overlap, ScheduleRule, WallTime, Weekday, Weekly};
use crate::model::{Comparison, Condition, Method, Operator, PollInitial, Trigger};

fn with_trigger(trigger: &str) -> String {
    format!("id: wf\ntrigger: {trigger}\nsteps: [{{ id: r, type: response }}]\n")
}

fn trigger(trigger: &str) -> Trigger {
    match load_str("wf.yaml", &with_trigger(trigger)) {
        Ok(workflow) => workflow.trigger,
        Err(problems) => panic!("`{trigger}` should load: {problems:#?}"),
    }
}

fn rule(text: &str) -> ScheduleRule {
    match trigger(text) {
        Trigger::Schedule(schedule) => schedule.rule,
        other => panic!("a schedule, not {other:?}"),
    }
}

#[test]
fn every_schedule_option_loads() {
    assert_eq!(rule("{ type: schedule, every: 5s }"), ScheduleRule::Every("5s".parse().expect("duration")));
    assert_eq!(rule("{ type: schedule, hourly: { minute: 15 } }"), ScheduleRule::Hourly(Hourly { minute: 15 }));
    assert_eq!(
        rule("{ type: schedule, daily: { at: \"09:00\", every: 2 } }"),
        ScheduleRule::Daily(Daily { at: WallTime { hour: 9, minute: 0 }, every: 2 })
    );
    assert_eq!(
        rule("{ type: schedule, weekly: { days: [monday, friday], at: \"12:00\" } }"),
        ScheduleRule::Weekly(Weekly {
            days: vec![Weekday::Monday, Weekday::Friday],
            at: WallTime { hour: 12, minute: 0 }
        })
    );
    assert_eq!(rule("{ type: schedule, cron: \"0 */15 * * * *\" }"), ScheduleRule::Cron("0 */15 * * * *".into()));
    assert_eq!(
        rule("{ type: schedule, cron: \"*/5 9-17 * * MON-FRI\" }"),
        ScheduleRule::Cron("*/5 9-17 * * MON-FRI".into())
    );
    // Unquoted, YAML reads 09:00 as text too.
    let block =
        "\n  type: schedule\n  daily:\n    at: 09:30\n  timezone: America/New_York\n  overlap: allow\n  catchup: 1h";
    let Trigger::Schedule(schedule) = trigger(block) else { panic!("a schedule") };
    assert_eq!(schedule.rule, ScheduleRule::Daily(Daily { at: WallTime { hour: 9, minute: 30 }, every: 1 }));
    assert_eq!(schedule.timezone.as_deref(), Some("America/New_York"));
    assert_eq!((schedule.overlap, schedule.catchup), (Overlap::Allow, Catchup::Within("1h".parse().expect("1h"))));
    let Trigger::Schedule(per_user) = trigger("{ type: schedule, hourly: {}, timezone: user, catchup: none }") else {
        panic!("a schedule")
    };
    assert!(per_user.uses_user_zone());
    assert_eq!((per_user.overlap, per_user.catchup), (Overlap::Skip, Catchup::None));
}

#[test]
fn a_schedule_has_exactly_one_rule() {
    assert_problems(&with_trigger("{ type: schedule }"), &[("trigger", "needs one of `every`")]);
    assert_problems(
        &with_trigger("{ type: schedule, every: 5s, cron: \"* * * * *\" }"),
        &[("trigger", "exactly one of `every`, `hourly`, `daily`, `weekly` or `cron`, not `every` and `cron`")],
    );
    assert_problems(
        &with_trigger("{ type: schedule, every: 5s, at: \"09:00\" }"),
        &[(
            "trigger.at",
            "unknown key `at` (allowed here: type, every, hourly, daily, weekly, cron, timezone, overlap, catchup)",
        )],
    );
}

#[test]
fn schedule_mistakes_are_reported_with_their_paths() {
    let cases: &[(&str, &str, &str)] = &[
        ("every: 500ms", "trigger.every", "seconds, minutes or hours"),
        ("every: 0s", "trigger.every", "too short: at least 1s"),
        ("every: 1d", "trigger.every", "for days use `daily`"),
        ("every: 5", "trigger.every", "must be a duration such as 5s, 30m or 2h, not a number"),
        ("every: soon", "trigger.every", "is not a duration"),
        ("every: 5s, timezone: Europe/Paris", "trigger.timezone", "`every` counts elapsed time"),
        ("hourly: { minute: 60 }", "trigger.hourly.minute", "from 0 to 59"),
        ("hourly: { minute: 5, second: 1 }", "trigger.hourly.second", "unknown key"),
        ("hourly: 15", "trigger.hourly", "must be a mapping"),
        ("daily: { at: \"25:00\" }", "trigger.daily.at", "not a time of day"),
        ("daily: { at: \"9\" }", "trigger.daily.at", "not a time of day"),
        ("daily: { every: 2 }", "trigger.daily.at", "`at` is required"),
        ("daily: { at: 900 }", "trigger.daily.at", "in quotes"),
        ("daily: { at: \"09:00\", every: 0 }", "trigger.daily.every", "from 1 to 366"),
        ("weekly: { days: [], at: \"12:00\" }", "trigger.weekly.days", "at least one day"),
        ("weekly: { days: [fri], at: \"12:00\" }", "trigger.weekly.days[0]", "`fri` is not a weekday"),
        ("weekly: { days: monday, at: \"12:00\" }", "trigger.weekly.days", "must be a list of weekdays"),
        ("weekly: { at: \"12:00\" }", "trigger.weekly.days", "`days` is required"),
        ("cron: \"61 * * * *\"", "trigger.cron", "is not a cron pattern"),
        ("cron: \"* * * *\"", "trigger.cron", "it has 4 field(s)"),
        ("cron: \"0 0 0 1 1 * 2030\"", "trigger.cron", "it has 7 field(s)"),
        ("cron: \"0 0 30 2 *\"", "trigger.cron", "never fires"),
        ("cron: 5", "trigger.cron", "must be a string"),
        ("hourly: {}, timezone: Mars/Olympus", "trigger.timezone", "unknown time zone `Mars/Olympus`"),
        ("hourly: {}, overlap: queue", "trigger.overlap", "`queue` is not one of skip, allow"),
        ("hourly: {}, catchup: soon", "trigger.catchup", "not a catch-up rule"),
        ("hourly: {}, catchup: 8d", "trigger.catchup", "too long: at most 7d"),
        ("hourly: {}, catchup: 0s", "trigger.catchup", "longer than 0"),
    ];
    for (keys, path, words) in cases {
        assert_problems(&with_trigger(&format!("{{ type: schedule, {keys} }}")), &[(path, words)]);
    }
    assert_problems(
        &with_trigger("{ type: schedule, weekly: { days: [monday, funday, monday], at: \"24:00\" } }"),
        &[
            ("trigger.weekly.days[1]", "`funday` is not a weekday (use monday, tuesday"),
            ("trigger.weekly.days[2]", "`monday` is listed twice"),
            ("trigger.weekly.at", "`24:00` is not a time of day"),
        ],
    );
    // A rule that never fires is found whatever else is wrong.
    assert_problems(
        &with_trigger("{ type: schedule, cron: \"0 0 30 2 *\", catchup: 9d, overlap: no }"),
        &[
            ("trigger.cron", "this schedule never fires"),
            ("trigger.catchup", "too long"),
            ("trigger.overlap", "`no` is not one of skip, allow"),
        ],
    );
}

#[test]
fn a_webhook_trigger_names_its_event_and_filters_with_the_conditional_operators() {
    let loaded = trigger(
        "{ type: webhook, event: contact.creation, filter: { all: [{ left: \"{{trigger.body.country}}\", op: equals, right: FR }] } }",
    );
    let Trigger::Webhook { event, filter: Some(Condition::All { all }) } = &loaded else { panic!("{loaded:?}") };
    assert_eq!(event, "contact.creation");
    assert_eq!(
        all,
        &[Condition::Compare(Comparison {
            left: "{{trigger.body.country}}".into(),
            op: Operator::Equals,
            right: Some("FR".into())
        })]
    );
    assert_eq!(loaded.webhook_event(), Some("contact.creation"));
    assert_eq!(
        trigger("{ type: webhook, event: message }"),
        Trigger::Webhook { event: "message".into(), filter: None }
    );
}

#[test]
fn webhook_mistakes_are_reported_with_their_paths() {
    assert_problems(&with_trigger("{ type: webhook }"), &[("trigger.event", "`event` is required")]);
    let long = "e".repeat(129);
    assert_problems(
        &with_trigger(&format!("{{ type: webhook, event: {long} }}")),
        &[("trigger.event", "1 to 128 characters")],
    );
    assert_problems(
        &with_trigger("{ type: webhook, event: message, filter: { left: \"{{trigger.body.x}}\", op: bigger } }"),
        &[("trigger.filter.op", "unknown operator `bigger`")],
    );
    assert_problems(
        &with_trigger("{ type: webhook, event: message, filter: [{ left: \"{{steps.r.output}}\", op: exists }] }"),
        &[("trigger.filter[0].left", "`steps` does not exist in a webhook filter")],
    );
    assert_problems(
        &with_trigger(
            "{ type: webhook, event: message, filter: { left: \"{{settings.team}}\", op: equals, right: \"{{user.id}}\" } }",
        ),
        &[("trigger.filter.left", "`settings` does not exist in a webhook filter")],
    );
    assert_problems(
        &with_trigger("{ type: webhook, event: message, filter: { left: 1, op: equals } }"),
        &[("trigger.filter.right", "needs a `right` value")],
    );
    assert_problems(&with_trigger("{ type: webhook, event: message, every: 5s }"), &[("trigger.every", "unknown key")]);
}

#[test]
fn a_webhook_trigger_belongs_to_an_integrations_workflows() {
    let dir = TempDir::new("webhook-trigger");
    let flow = "id: {id}\ntrigger: { type: webhook, event: message }\nsteps: [{ id: r, type: response }]\n";
    let workflows = dir.0.join("integrations/slack/workflows");
    fs::create_dir_all(&workflows).expect("folders");
    fs::write(dir.0.join("integrations/slack/config.yaml"), "description: Slack\n").expect("config");
    fs::write(workflows.join("on-message.yaml"), flow.replace("{id}", "on-message")).expect("workflow");
    let project = load_project(&dir.0).expect("a webhook workflow of an integration loads");
    let (_, workflow) = project.workflows().next().expect("one workflow");
    assert_eq!(workflow.integration.as_deref(), Some("slack"));

    fs::write(dir.0.join("plain.yaml"), flow.replace("{id}", "plain")).expect("workflow");
    let problems = load_project(&dir.0).expect_err("outside an integration");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "trigger.type");
    assert!(problems[0].message.contains("a `webhook` trigger belongs to an integration's workflows"), "{problems:#?}");
}

#[test]
fn a_poll_takes_a_request_and_defaults_to_the_body_the_item_id_and_skip() {
    let Trigger::Poll(poll) = trigger(
        "{ type: poll, every: 5m, request: { url: \"https://api.example.com/contacts?since={{settings.since}}\", \
         headers: { authorization: \"Bearer {{env.TOKEN}}\" } } }",
    ) else {
        panic!("a poll")
    };
    assert_eq!(poll.every.duration().as_secs(), 300);
    assert_eq!(poll.request.method, Method::Get);
    assert_eq!((poll.items.as_str(), poll.key.as_str(), poll.initial), ("body", "{{item.id}}", PollInitial::Skip));
    let Trigger::Poll(poll) = trigger(
        "{ type: poll, every: 10s, request: { method: POST, url: \"https://x.example/search\", body: { q: new } }, \
         items: body.results, key: \"{{item.kind}}-{{item.id}}\", initial: fire }",
    ) else {
        panic!("a poll")
    };
    assert_eq!(
        (poll.items.as_str(), poll.key.as_str(), poll.initial),
        ("body.results", "{{item.kind}}-{{item.id}}", PollInitial::Fire)
    );
}

#[test]
fn poll_mistakes_are_reported_with_their_paths() {
    let request = "request: { url: \"https://x.example/items\" }";
    let cases: &[(String, &str, &str)] = &[
        (format!("every: 5s, {request}"), "trigger.every", "too short: at least 10s"),
        (request.to_string(), "trigger.every", "`every` is required"),
        ("every: 1m".to_string(), "trigger.request", "`request` is required"),
        ("every: 1m, request: { method: GET }".to_string(), "trigger.request.url", "`url` is required"),
        (
            "every: 1m, request: { url: \"https://x.example/{{trigger.body.id}}\" }".to_string(),
            "trigger.request.url",
            "`trigger` does not exist in a poll's request",
        ),
        (
            "every: 1m, request: { url: \"https://x.example/\", pagination: { style: link, items: body } }".to_string(),
            "trigger.request.pagination",
            "`pagination` is not available here",
        ),
        (
            "every: 1m, request: { url: \"https://x.example/\", retries: 2 }".to_string(),
            "trigger.request.retries",
            "unknown key",
        ),
        (format!("every: 1m, {request}, items: status"), "trigger.items", "must be `body` or a path"),
        (format!("every: 1m, {request}, key: same"), "trigger.key", "the same for every item"),
        (format!("every: 1m, {request}, key: \"{{{{steps.r.output}}}}\""), "trigger.key", "only `item` is available"),
        (format!("every: 1m, {request}, key: \"{{{{item.id\""), "trigger.key", "{{"),
        (format!("every: 1m, {request}, initial: all"), "trigger.initial", "`all` is not one of skip, fire"),
        (format!("every: 1m, {request}, timezone: UTC"), "trigger.timezone", "unknown key"),
    ];
    for (keys, path, words) in cases {
        assert_problems(&with_trigger(&format!("{{ type: poll, {keys} }}")), &[(path, words)]);
    }
}

#[test]
fn trigger_item_exists_only_in_a_poll_workflow() {
    let poll = "id: wf\ntrigger: { type: poll, every: 1m, request: { url: \"https://x.example/\" } }\n\
                steps: [{ id: r, type: response, body: \"{{trigger.item.name}}\" }]\n";
    assert!(load_str("wf.yaml", poll).is_ok());
    assert_problems(
        "id: wf\ntrigger: { type: request }\nsteps: [{ id: r, type: response, body: \"{{trigger.item.name}}\" }]\n",
        &[("steps[0].body", "`trigger.item` exists only in a workflow with a `poll` trigger")],
    );
}
