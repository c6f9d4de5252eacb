//! When schedules fire: every option, elapsed-time intervals, and the DST nights of real zones
//! (America/New_York on 2027-03-14 and 2027-11-07, Europe/London, Asia/Kolkata).

use chrono::{DateTime, Utc};

use super::*;
use crate::model::{PollTrigger, Trigger};

fn at(text: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(text).expect("an RFC 3339 instant").with_timezone(&Utc)
}

fn schedule(yaml: &str) -> ScheduleTrigger {
    serde_yaml_ng::from_str(yaml).expect("a schedule")
}

fn utc(fire: &Fire) -> String {
    fire.at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The next `n` fires after `after` in `zone`, as UTC instants.
fn next(yaml: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
    fires(yaml, zone, after, n).iter().map(utc).collect()
}

fn fires(yaml: &str, zone: &str, after: &str, n: usize) -> Vec<Fire> {
    let until = at(after) + chrono::Duration::days(3660);
    schedule(yaml).fires_between(at(after), until, zone, n).expect("computable")
}

fn gap(wall: &str) -> Option<Anomaly> {
    Some(Anomaly::Gap { wall: wall.to_string() })
}

fn fold(wall: &str) -> Option<Anomaly> {
    Some(Anomaly::Fold { wall: wall.to_string() })
}

const NEW_YORK: &str = "America/New_York";
const LONDON: &str = "Europe/London";

#[test]
fn every_counts_elapsed_time_from_the_epoch_multiples() {
    assert_eq!(
        next("every: 5s", UTC, "2027-01-01T10:00:03.250Z", 3),
        ["2027-01-01T10:00:05Z", "2027-01-01T10:00:10Z", "2027-01-01T10:00:15Z"]
    );
    assert_eq!(next("every: 30m", UTC, "2027-01-01T10:17:00Z", 2), ["2027-01-01T10:30:00Z", "2027-01-01T11:00:00Z"]);
    assert_eq!(next("every: 2h", UTC, "2027-01-01T01:00:00Z", 1), ["2027-01-01T02:00:00Z"]);
    // 7 s does not divide a minute: the multiples of 7 s since 1970-01-01T00:00:00Z.
    assert_eq!(next("every: 7s", UTC, "1970-01-01T00:00:00Z", 2), ["1970-01-01T00:00:07Z", "1970-01-01T00:00:14Z"]);
    let fire = fires("every: 7s", UTC, "2027-01-01T00:00:00Z", 1).remove(0);
    assert_eq!(fire.at.timestamp() % 7, 0);
    // Strictly after: an instant on a multiple gives the next one.
    assert_eq!(next("every: 5s", UTC, "2027-01-01T10:00:05Z", 1), ["2027-01-01T10:00:10Z"]);
}

#[test]
fn hourly_fires_at_its_minute() {
    assert_eq!(
        next("hourly: {minute: 15}", UTC, "2027-01-01T10:20:00Z", 2),
        ["2027-01-01T11:15:00Z", "2027-01-01T12:15:00Z"]
    );
    assert_eq!(next("hourly: {}", UTC, "2027-01-01T10:20:00Z", 1), ["2027-01-01T11:00:00Z"]);
}

#[test]
fn daily_fires_at_its_wall_time_in_its_zone() {
    let yaml = "daily: {at: \"09:00\"}";
    assert_eq!(next(yaml, UTC, "2027-01-01T10:00:00Z", 2), ["2027-01-02T09:00:00Z", "2027-01-03T09:00:00Z"]);
    // 09:00 EST is 14:00Z in winter, 09:00 EDT 13:00Z in summer.
    assert_eq!(next(yaml, NEW_YORK, "2027-01-01T10:00:00Z", 1), ["2027-01-01T14:00:00Z"]);
    assert_eq!(next(yaml, NEW_YORK, "2027-07-01T10:00:00Z", 1), ["2027-07-01T13:00:00Z"]);
}

#[test]
fn daily_every_n_days_fires_on_the_days_counted_from_1970_divisible_by_n() {
    let found = fires("daily: {at: \"06:00\", every: 3}", UTC, "2027-01-01T00:00:00Z", 4);
    for fire in &found {
        assert_eq!(fire.at.timestamp().div_euclid(86_400) % 3, 0, "{}", utc(fire));
        assert_eq!(fire.at.format("%H:%M").to_string(), "06:00");
    }
    for pair in found.windows(2) {
        assert_eq!(pair[1].at - pair[0].at, chrono::Duration::days(3));
    }
    // In a zone, the day is the zone's civil day: the fire is at 06:00 there.
    let found = fires("daily: {at: \"06:00\", every: 2}", NEW_YORK, "2027-01-01T00:00:00Z", 2);
    let local: Vec<String> = found.iter().map(|f| local_time(f.at, NEW_YORK).expect("zone").wall).collect();
    assert_eq!(found[1].at - found[0].at, chrono::Duration::days(2));
    assert!(local.iter().all(|wall| wall.ends_with(" 06:00")), "{local:?}");
}

#[test]
fn weekly_fires_on_its_days_at_its_time() {
    // 2027-01-06 is a Wednesday.
    assert_eq!(
        next("weekly: {days: [monday, friday], at: \"12:00\"}", UTC, "2027-01-06T00:00:00Z", 3),
        ["2027-01-08T12:00:00Z", "2027-01-11T12:00:00Z", "2027-01-15T12:00:00Z"]
    );
    assert_eq!(
        next("weekly: {days: [sunday], at: \"7:05\"}", UTC, "2027-01-06T00:00:00Z", 1),
        ["2027-01-10T07:05:00Z"]
    );
}

#[test]
fn cron_takes_five_fields_or_six_with_seconds() {
    assert_eq!(
        next("cron: \"*/15 * * * *\"", UTC, "2027-01-01T10:07:00Z", 2),
        ["2027-01-01T10:15:00Z", "2027-01-01T10:30:00Z"]
    );
    assert_eq!(
        next("cron: \"30 */15 * * * *\"", UTC, "2027-01-01T10:07:00Z", 2),
        ["2027-01-01T10:15:30Z", "2027-01-01T10:30:30Z"]
    );
    // Weekday names, and Vixie's OR of day-of-month and day-of-week.
    assert_eq!(next("cron: \"0 9 * * MON-FRI\"", UTC, "2027-01-08T10:00:00Z", 1), ["2027-01-11T09:00:00Z"]);
    for bad in ["* * * *", "0 0 0 1 1 * 2027", "61 * * * *", "* * * * * * * *", "0 0 32 * *", "nonsense"] {
        assert!(parse_cron(bad).is_err(), "`{bad}` should be refused");
    }
}

#[test]
fn a_cron_that_never_matches_never_fires() {
    let started = std::time::Instant::now();
    assert_eq!(schedule("cron: \"0 0 30 2 *\"").next_after(at("2027-01-01T00:00:00Z"), UTC), Ok(None));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    // Once every four years is not never.
    assert_eq!(next("cron: \"0 0 29 2 *\"", UTC, "2027-01-01T00:00:00Z", 1), ["2028-02-29T00:00:00Z"]);
}

// --- Spring forward: America/New_York, 2027-03-14, 02:00 EST (07:00Z) becomes 03:00 EDT. ---

#[test]
fn spring_forward_a_daily_wall_time_in_the_gap_fires_once_at_the_transition() {
    let found = fires("daily: {at: \"02:30\"}", NEW_YORK, "2027-03-13T12:00:00Z", 3);
    let got: Vec<(String, Option<Anomaly>)> = found.iter().map(|f| (utc(f), f.anomaly.clone())).collect();
    assert_eq!(
        got,
        [
            ("2027-03-14T07:00:00Z".to_string(), gap("2027-03-14 02:30")), // 03:00 EDT, not 03:30
            ("2027-03-15T06:30:00Z".to_string(), None),                    // 02:30 EDT
            ("2027-03-16T06:30:00Z".to_string(), None),
        ]
    );
    let fired = local_time(found[0].at, NEW_YORK).expect("zone");
    assert_eq!(
        (fired.wall.as_str(), fired.offset.as_str(), fired.abbreviation.as_str()),
        ("2027-03-14 03:00", "-04:00", "EDT")
    );
    assert_eq!(
        found[0].anomaly.as_ref().map(|a| a.note(&fired)).as_deref(),
        Some("DST: 02:30 does not exist, fired at 03:00")
    );
}

#[test]
fn spring_forward_hourly_fires_once_for_the_missing_hour() {
    let found = fires("hourly: {minute: 30}", NEW_YORK, "2027-03-14T05:00:00Z", 4);
    let got: Vec<(String, Option<Anomaly>)> = found.iter().map(|f| (utc(f), f.anomaly.clone())).collect();
    assert_eq!(
        got,
        [
            ("2027-03-14T05:30:00Z".to_string(), None),                    // 00:30 EST
            ("2027-03-14T06:30:00Z".to_string(), None),                    // 01:30 EST
            ("2027-03-14T07:00:00Z".to_string(), gap("2027-03-14 02:30")), // 03:00 EDT
            ("2027-03-14T07:30:00Z".to_string(), None),                    // 03:30 EDT
        ]
    );
}

#[test]
fn spring_forward_a_cron_collapses_every_wall_time_of_the_gap_into_one_fire() {
    let found = fires("cron: \"*/15 * * * *\"", NEW_YORK, "2027-03-14T06:40:00Z", 3);
    let got: Vec<(String, Option<Anomaly>)> = found.iter().map(|f| (utc(f), f.anomaly.clone())).collect();
    assert_eq!(
        got,
        [
            ("2027-03-14T06:45:00Z".to_string(), None),                    // 01:45 EST
            ("2027-03-14T07:00:00Z".to_string(), gap("2027-03-14 02:00")), // 02:00–02:45 and 03:00: once
            ("2027-03-14T07:15:00Z".to_string(), None),                    // 03:15 EDT
        ]
    );
}

#[test]
fn spring_forward_every_n_minutes_counts_elapsed_time() {
    let found = fires("every: 30m", NEW_YORK, "2027-03-14T05:45:00Z", 4);
    assert_eq!(
        found.iter().map(utc).collect::<Vec<_>>(),
        ["2027-03-14T06:00:00Z", "2027-03-14T06:30:00Z", "2027-03-14T07:00:00Z", "2027-03-14T07:30:00Z"]
    );
    assert!(found.iter().all(|f| f.anomaly.is_none()));
    assert_eq!(schedule("every: 30m").zone_name(Some(NEW_YORK)), UTC);
}

// --- Fall back: America/New_York, 2027-11-07, 02:00 EDT (06:00Z) becomes 01:00 EST. ---

#[test]
fn fall_back_a_daily_wall_time_that_occurs_twice_fires_once_at_the_first() {
    let found = fires("daily: {at: \"01:30\"}", NEW_YORK, "2027-11-06T12:00:00Z", 2);
    let got: Vec<(String, Option<Anomaly>)> = found.iter().map(|f| (utc(f), f.anomaly.clone())).collect();
    assert_eq!(
        got,
        [
            ("2027-11-07T05:30:00Z".to_string(), fold("2027-11-07 01:30")), // 01:30 EDT, not 01:30 EST
            ("2027-11-08T06:30:00Z".to_string(), None),                     // 01:30 EST
        ]
    );
    let fired = local_time(found[0].at, NEW_YORK).expect("zone");
    assert_eq!(
        found[0].anomaly.as_ref().map(|a| a.note(&fired)).as_deref(),
        Some("DST: 01:30 occurs twice, fires at the first")
    );
    // Asked during the second 01:10, the next fire is the next day's.
    assert_eq!(next("daily: {at: \"01:30\"}", NEW_YORK, "2027-11-07T06:10:00Z", 1), ["2027-11-08T06:30:00Z"]);
}

#[test]
fn fall_back_hourly_fires_once_in_the_repeated_hour() {
    let found = fires("hourly: {minute: 30}", NEW_YORK, "2027-11-07T03:00:00Z", 4);
    let got: Vec<(String, Option<Anomaly>)> = found.iter().map(|f| (utc(f), f.anomaly.clone())).collect();
    assert_eq!(
        got,
        [
            ("2027-11-07T03:30:00Z".to_string(), None), // 23:30 EDT (Nov 6)
            ("2027-11-07T04:30:00Z".to_string(), None), // 00:30 EDT
            ("2027-11-07T05:30:00Z".to_string(), fold("2027-11-07 01:30")), // 01:30 EDT; not 01:30 EST
            ("2027-11-07T07:30:00Z".to_string(), None), // 02:30 EST
        ]
    );
}

#[test]
fn fall_back_a_cron_does_not_fire_again_in_the_repeated_hour() {
    assert_eq!(
        next("cron: \"*/30 * * * *\"", NEW_YORK, "2027-11-07T04:50:00Z", 4),
        // 01:00 EDT, 01:30 EDT, then 02:00 EST: the second 01:00 and 01:30 (06:00Z, 06:30Z) do not fire.
        ["2027-11-07T05:00:00Z", "2027-11-07T05:30:00Z", "2027-11-07T07:00:00Z", "2027-11-07T07:30:00Z"]
    );
}

#[test]
fn fall_back_every_n_minutes_fires_twice_in_the_repeated_hour() {
    let found = next("every: 30m", NEW_YORK, "2027-11-07T04:59:00Z", 8);
    assert_eq!(
        found,
        [
            "2027-11-07T05:00:00Z", // 01:00 EDT
            "2027-11-07T05:30:00Z", // 01:30 EDT
            "2027-11-07T06:00:00Z", // 01:00 EST
            "2027-11-07T06:30:00Z", // 01:30 EST
            "2027-11-07T07:00:00Z",
            "2027-11-07T07:30:00Z",
            "2027-11-07T08:00:00Z",
            "2027-11-07T08:30:00Z",
        ]
    );
}

#[test]
fn europe_london_spring_and_autumn_nights() {
    // 2027-03-28: 01:00 GMT becomes 02:00 BST at 01:00Z.
    let spring = fires("daily: {at: \"01:30\"}", LONDON, "2027-03-27T12:00:00Z", 2);
    assert_eq!(
        (utc(&spring[0]), spring[0].anomaly.clone()),
        ("2027-03-28T01:00:00Z".to_string(), gap("2027-03-28 01:30"))
    );
    assert_eq!(utc(&spring[1]), "2027-03-29T00:30:00Z");
    // 2027-10-31: 02:00 BST becomes 01:00 GMT at 01:00Z; 01:30 is 00:30Z, then 01:30Z.
    let autumn = fires("daily: {at: \"01:30\"}", LONDON, "2027-10-30T12:00:00Z", 2);
    assert_eq!(
        (utc(&autumn[0]), autumn[0].anomaly.clone()),
        ("2027-10-31T00:30:00Z".to_string(), fold("2027-10-31 01:30"))
    );
    assert_eq!(utc(&autumn[1]), "2027-11-01T01:30:00Z");
}

#[test]
fn a_half_hour_zone_without_dst() {
    assert_eq!(next("daily: {at: \"09:00\"}", "Asia/Kolkata", "2027-03-14T00:00:00Z", 1), ["2027-03-14T03:30:00Z"]);
    assert_eq!(
        next("hourly: {minute: 0}", "Asia/Kolkata", "2027-03-14T00:00:00Z", 2),
        ["2027-03-14T00:30:00Z", "2027-03-14T01:30:00Z"]
    );
    let local = local_time(at("2027-03-14T03:30:00Z"), "Asia/Kolkata").expect("zone");
    assert_eq!((local.wall.as_str(), local.offset.as_str()), ("2027-03-14 09:00", "+05:30"));
}

#[test]
fn the_zone_is_utc_by_default_the_named_one_or_the_users_own() {
    assert_eq!(schedule("daily: {at: \"09:00\"}").zone_name(Some("Europe/Paris")), UTC);
    assert_eq!(
        schedule("{daily: {at: \"09:00\"}, timezone: Asia/Tokyo}").zone_name(Some("Europe/Paris")),
        "Asia/Tokyo"
    );
    let per_user = schedule("{daily: {at: \"09:00\"}, timezone: user}");
    assert!(per_user.uses_user_zone());
    assert_eq!(per_user.zone_name(Some("Europe/Paris")), "Europe/Paris");
    assert_eq!(per_user.zone_name(None), UTC);
    assert_eq!(per_user.zone_name(Some(" ")), UTC);
    assert_eq!(
        per_user.next_after(at("2027-01-01T00:00:00Z"), "Mars/Olympus"),
        Err(ScheduleError::UnknownZone { zone: "Mars/Olympus".to_string() })
    );
}

#[test]
fn fires_between_stops_at_until_inclusive_and_at_max() {
    let daily = schedule("daily: {at: \"09:00\"}");
    let (after, until) = (at("2027-01-01T09:00:00Z"), at("2027-01-04T09:00:00Z"));
    let found = daily.fires_between(after, until, UTC, 10).expect("fires");
    assert_eq!(
        found.iter().map(utc).collect::<Vec<_>>(),
        ["2027-01-02T09:00:00Z", "2027-01-03T09:00:00Z", "2027-01-04T09:00:00Z"]
    );
    assert_eq!(daily.fires_between(after, until, UTC, 2).expect("fires").len(), 2);
    assert!(daily.fires_between(after, until, UTC, 0).expect("fires").is_empty());
}

#[test]
fn every_shape_reads_and_writes_back_unchanged() {
    let shapes = [
        r#"{"type":"schedule","every":"5s"}"#,
        r#"{"type":"schedule","hourly":{"minute":15},"timezone":"user"}"#,
        r#"{"type":"schedule","daily":{"at":"09:00","every":2},"timezone":"America/New_York","overlap":"allow","catchup":"1h"}"#,
        r#"{"type":"schedule","weekly":{"days":["monday","friday"],"at":"12:00"},"catchup":"none"}"#,
        r#"{"type":"schedule","cron":"0 */15 * * * *"}"#,
        r#"{"type":"poll","every":"5m","request":{"method":"GET","url":"https://api.example.com/items"},"items":"body.results","initial":"fire"}"#,
        r#"{"type":"webhook","event":"contact.created","filter":{"left":"{{trigger.body.owner}}","op":"equals","right":"me"}}"#,
    ];
    for text in shapes {
        let trigger: Trigger = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let written = serde_json::to_value(&trigger).expect("serializes");
        assert_eq!(written, serde_json::from_str::<serde_json::Value>(text).expect("JSON"), "{text}");
    }
    let Trigger::Schedule(daily) =
        serde_json::from_str::<Trigger>(r#"{"type":"schedule","daily":{"at":"9:00"}}"#).expect("daily")
    else {
        panic!("a schedule")
    };
    assert_eq!(daily.rule, ScheduleRule::Daily(Daily { at: WallTime { hour: 9, minute: 0 }, every: 1 }));
    assert_eq!((daily.overlap, &daily.catchup), (Overlap::Skip, &Catchup::Latest));
}

#[test]
fn rules_describe_themselves_for_people() {
    let shown: Vec<String> = [
        "every: 5s",
        "hourly: {minute: 5}",
        "daily: {at: \"9:00\"}",
        "daily: {at: \"09:00\", every: 2}",
        "weekly: {days: [monday, friday], at: \"12:00\"}",
        "cron: \"0 */15 * * * *\"",
    ]
    .iter()
    .map(|yaml| schedule(yaml).rule.to_string())
    .collect();
    assert_eq!(
        shown,
        [
            "every 5s",
            "hourly at :05",
            "daily at 09:00",
            "every 2 days at 09:00",
            "weekly on monday, friday at 12:00",
            "cron 0 */15 * * * *"
        ]
    );
}

#[test]
fn a_poll_defaults_to_the_body_the_item_id_and_skipping_what_exists() {
    let poll: PollTrigger =
        serde_json::from_str(r#"{"every":"1m","request":{"url":"https://x.example/new"}}"#).expect("poll");
    assert_eq!(
        (poll.items.as_str(), poll.key.as_str(), poll.initial),
        ("body", "{{item.id}}", crate::model::PollInitial::Skip)
    );
    let schedule = poll.schedule();
    assert!(schedule.is_interval());
    assert_eq!(
        schedule.next_after(at("2027-01-01T10:00:30Z"), UTC).expect("fires").map(|f| utc(&f)).as_deref(),
        Some("2027-01-01T10:01:00Z")
    );
}

mod properties {
    use std::collections::HashSet;

    use chrono::TimeZone as _;
    use proptest::prelude::*;

    use super::*;

    const ZONES: &[&str] =
        &["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago", "UTC"];

    fn rules() -> impl Strategy<Value = (String, Option<u32>)> {
        prop_oneof![
            (0u32..60).prop_map(|m| (format!("hourly: {{minute: {m}}}"), Some(m))),
            (0u32..24, 0u32..60).prop_map(|(h, m)| (format!("daily: {{at: \"{h:02}:{m:02}\"}}"), Some(m))),
            (1u32..4, 0u32..24, 0u32..60)
                .prop_map(|(n, h, m)| (format!("daily: {{at: \"{h:02}:{m:02}\", every: {n}}}"), Some(m))),
            prop::sample::select(vec![5u32, 10, 15, 20, 30]).prop_map(|n| (format!("cron: \"*/{n} * * * *\""), None)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Around any instant of 2026–2030 in zones with DST (including Lord Howe's half-hour
        /// shift and Santiago's midnight transitions): fires strictly increase, each is after the
        /// previous, no wall time fires twice, and a fire without an anomaly is at its rule's minute.
        #[test]
        fn wall_clock_fires_increase_and_each_wall_time_fires_once(
            zone in prop::sample::select(ZONES.to_vec()),
            (rule, minute) in rules(),
            start in 1_767_225_600i64..1_924_992_000,
        ) {
            let after = Utc.timestamp_opt(start, 0).single().expect("in range");
            let found = schedule(&rule).fires_between(after, after + chrono::Duration::days(800), zone, 40).expect("computable");
            prop_assert_eq!(found.len(), 40);
            prop_assert!(found[0].at > after);
            let mut walls = HashSet::new();
            for pair in found.windows(2) {
                prop_assert!(pair[1].at > pair[0].at, "{} then {}", utc(&pair[0]), utc(&pair[1]));
            }
            for fire in &found {
                let local = local_time(fire.at, zone).expect("zone");
                let wall = fire.anomaly.as_ref().map_or(local.wall.clone(), |a| a.wall().to_string());
                prop_assert!(walls.insert(wall.clone()), "{wall} fired twice ({rule} in {zone})");
                if let (None, Some(minute)) = (&fire.anomaly, minute) {
                    prop_assert!(local.wall.ends_with(&format!(":{minute:02}")), "{} for {rule} in {zone}", local.wall);
                }
            }
        }
    }
}
