//! Schedules: the `schedule` trigger's options and when it fires (a poll's interval too).
//!
//! Invariants, the DST policy of `docs/triggers.md`:
//! - An interval (`every: 30m`) counts elapsed time: it fires at every multiple of its length
//!   since the Unix epoch, whatever the zone (so two processes compute the same instants).
//! - Every other option is a wall-clock rule computed in the schedule's zone: its civil
//!   matches come from a cron pattern (croner, on civil date-times: named options are compiled
//!   to one), each resolved in the zone (jiff). A wall time that does not exist (spring
//!   forward) fires once, at the transition (the first valid instant after it; several wall
//!   times in one gap collapse into that one fire); a wall time that occurs twice (fall back)
//!   fires once, at its first occurrence.
//! - Resolution never goes backwards (a later wall time never resolves to an earlier instant),
//!   so the first civil match after `after`'s own wall time whose instant is strictly after
//!   `after` is the next fire.

use std::fmt;
use std::str::FromStr;

use chrono::{TimeZone as _, Utc};
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::{self, Date};
use jiff::tz::{AmbiguousOffset, TimeZone};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DurationSpec;
use crate::record::Timestamp;

/// The zone of schedules that name none, and of every interval.
pub const UTC: &str = "UTC";
/// `timezone: user`: the connected user's own zone (`PATCH /sdk/me`), UTC when they have none.
pub const USER_ZONE: &str = "user";
/// How many civil matches one `next_after` looks at before giving up (a cron every second
/// spends 3,600 of them in a repeated hour; a daily schedule every N days spends N).
const MAX_CANDIDATES: u32 = 100_000;

/// `trigger: {type: schedule, ...}`: exactly one rule, and how fires are run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleTrigger {
    #[serde(flatten)]
    pub rule: ScheduleRule,
    /// An IANA zone name (default UTC), or `user`: the connected user's zone. Not with `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub overlap: Overlap,
    #[serde(default, skip_serializing_if = "is_default")]
    pub catchup: Catchup,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleRule {
    /// Every N seconds, minutes or hours of elapsed time (`5s`, `30m`, `2h`), at the multiples
    /// of N since the Unix epoch.
    Every(DurationSpec),
    /// Every hour, at a minute.
    Hourly(Hourly),
    /// Every N days at a wall time.
    Daily(Daily),
    /// On some weekdays at a wall time.
    Weekly(Weekly),
    /// A cron pattern: 5 fields, or 6 with leading seconds.
    Cron(String),
}

impl fmt::Display for ScheduleRule {
    /// For people: `every 5s`, `hourly at :15`, `daily at 09:00`, `every 2 days at 09:00`,
    /// `weekly on monday, friday at 12:00`, `cron 0 */15 * * * *`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleRule::Every(every) => write!(f, "every {every}"),
            ScheduleRule::Hourly(Hourly { minute }) => write!(f, "hourly at :{minute:02}"),
            ScheduleRule::Daily(Daily { at, every: 1 }) => write!(f, "daily at {at}"),
            ScheduleRule::Daily(Daily { at, every }) => write!(f, "every {every} days at {at}"),
            ScheduleRule::Weekly(Weekly { days, at }) => {
                let names: Vec<&str> = days.iter().map(|day| day.name()).collect();
                write!(f, "weekly on {} at {at}", names.join(", "))
            }
            ScheduleRule::Cron(pattern) => write!(f, "cron {pattern}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Hourly {
    /// 0–59 (default 0).
    #[serde(default)]
    #[schemars(range(max = 59))]
    pub minute: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Daily {
    pub at: WallTime,
    /// Every N days (default 1): on the days whose count since 1970-01-01 (in the zone) is a
    /// multiple of N.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = 366))]
    pub every: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Weekly {
    pub days: Vec<Weekday>,
    pub at: WallTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    /// Cron's number of the day: 0 is Sunday.
    fn cron_number(self) -> u8 {
        match self {
            Weekday::Sunday => 0,
            Weekday::Monday => 1,
            Weekday::Tuesday => 2,
            Weekday::Wednesday => 3,
            Weekday::Thursday => 4,
            Weekday::Friday => 5,
            Weekday::Saturday => 6,
        }
    }
}

/// A wall time, written `HH:MM` (24-hour clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WallTime {
    pub hour: u8,
    pub minute: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time of day: write HH:MM on a 24-hour clock, e.g. \"09:00\" or \"17:30\"")]
pub struct BadWallTime(pub String);

impl FromStr for WallTime {
    type Err = BadWallTime;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadWallTime(text.to_string());
        let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
        let digits = |part: &str, len: std::ops::RangeInclusive<usize>| {
            len.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(hour, 1..=2) || !digits(minute, 2..=2) {
            return Err(bad());
        }
        let (hour, minute) = (hour.parse::<u8>().map_err(|_| bad())?, minute.parse::<u8>().map_err(|_| bad())?);
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(WallTime { hour, minute })
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl Serialize for WallTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for WallTime {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WallTime".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([01]?[0-9]|2[0-3]):[0-5][0-9]$",
            "description": "A time of day, HH:MM (24-hour clock), in the schedule's zone"
        })
    }
}

/// What a fire does while the user's previous run of the workflow is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// No execution; the skip is recorded.
    #[default]
    Skip,
    /// Start another execution anyway.
    Allow,
}

/// Which fires missed while nothing ran (an outage) run once it is over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Catchup {
    /// `latest`: the latest missed fire runs; older ones are recorded as missed.
    #[default]
    Latest,
    /// `none`: missed fires are only recorded.
    None,
    /// A duration (`1h`): every missed fire within that window before now runs, once each.
    Within(DurationSpec),
}

/// The longest `catchup` window.
pub const MAX_CATCHUP: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a catch-up rule: write `latest`, `none` or a duration such as 1h")]
pub struct BadCatchup(pub String);

impl FromStr for Catchup {
    type Err = BadCatchup;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "latest" => Ok(Catchup::Latest),
            "none" => Ok(Catchup::None),
            other => other.parse().map(Catchup::Within).map_err(|_| BadCatchup(text.to_string())),
        }
    }
}

impl fmt::Display for Catchup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Catchup::Latest => f.write_str("latest"),
            Catchup::None => f.write_str("none"),
            Catchup::Within(window) => window.fmt(f),
        }
    }
}

impl Serialize for Catchup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Catchup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Catchup {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Catchup".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(latest|none|[0-9]+(ms|s|m|h|d))$",
            "description": "Missed fires to run after an outage: latest (default), none, or a window such as 1h"
        })
    }
}

/// One instant a schedule fires at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fire {
    /// UTC, millisecond precision.
    pub at: Timestamp,
    /// Set when the wall time was moved or chosen by a DST transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
}

/// How a DST transition placed a wall-clock fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// The wall time (`2027-03-14 02:30`) did not exist (spring forward): fired at the first
    /// valid instant after it, the transition.
    Gap { wall: String },
    /// The wall time occurred twice (fall back): fired at the first occurrence only.
    Fold { wall: String },
}

impl Anomaly {
    pub fn wall(&self) -> &str {
        match self {
            Anomaly::Gap { wall } | Anomaly::Fold { wall } => wall,
        }
    }

    /// A note for people: `DST: 02:30 does not exist, fired at 03:00` (`fired` is the fire's
    /// own wall time, [`LocalTime::wall`]) or `DST: 01:30 occurs twice, fires at the first`.
    pub fn note(&self, fired: &LocalTime) -> String {
        match self {
            Anomaly::Gap { wall } => {
                format!("DST: {} does not exist, fired at {}", time_of_day(wall), time_of_day(&fired.wall))
            }
            Anomaly::Fold { wall } => format!("DST: {} occurs twice, fires at the first", time_of_day(wall)),
        }
    }
}

fn time_of_day(wall: &str) -> &str {
    wall.split_once(' ').map_or(wall, |(_, time)| time)
}

/// Why a schedule cannot be computed. Every variant is terminal: the definition (or the
/// user's zone) is wrong, and computing again gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone `{zone}`: use an IANA name such as America/New_York")]
    UnknownZone { zone: String },
    #[error("`{pattern}` is not a cron pattern: {reason}")]
    BadCron { pattern: String, reason: String },
    #[error("the schedule cannot be computed after {after}: {reason}")]
    OutOfRange { after: String, reason: String },
}

/// An instant as read on a zone's clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    /// `2027-03-14 03:00` (`:SS` added when the seconds are not 0).
    pub wall: String,
    /// `-04:00`.
    pub offset: String,
    /// `EDT`, as the zone's data names it (may be an offset such as `+0530`).
    pub abbreviation: String,
}

/// `at` on the clocks of `zone`.
pub fn local_time(at: Timestamp, zone: &str) -> Result<LocalTime, ScheduleError> {
    let tz = time_zone(zone)?;
    let instant = to_jiff(at)?;
    let info = tz.to_offset_info(instant);
    let seconds = info.offset().seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let (hours, minutes) = (seconds.unsigned_abs() / 3600, seconds.unsigned_abs() % 3600 / 60);
    Ok(LocalTime {
        wall: wall_text(tz.to_datetime(instant)),
        offset: format!("{sign}{hours:02}:{minutes:02}"),
        abbreviation: info.abbreviation().to_string(),
    })
}

/// The zone named `zone` (IANA names; `UTC`).
pub fn time_zone(zone: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(zone).map_err(|_| ScheduleError::UnknownZone { zone: zone.to_string() })
}

/// Parses a cron pattern as schedules take it: 5 fields, or 6 with leading seconds (no year).
pub fn parse_cron(pattern: &str) -> Result<Cron, ScheduleError> {
    let bad = |reason: String| ScheduleError::BadCron { pattern: pattern.to_string(), reason };
    let fields = pattern.split_whitespace().count();
    if !pattern.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(bad(format!(
            "it has {fields} field(s); write 5 (minute hour day-of-month month day-of-week) or 6 with leading seconds"
        )));
    }
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    parser.parse(pattern).map_err(|e| bad(e.to_string()))
}

impl ScheduleTrigger {
    /// Whether it counts elapsed time (`every`), not wall-clock time.
    pub fn is_interval(&self) -> bool {
        matches!(self.rule, ScheduleRule::Every(_))
    }

    /// Whether it runs in each user's own zone (`timezone: user`).
    pub fn uses_user_zone(&self) -> bool {
        !self.is_interval() && self.timezone.as_deref() == Some(USER_ZONE)
    }

    /// The zone fires are computed in: `UTC` for intervals and by default; for `user`, the
    /// user's zone (`user_zone`), or UTC when they have none.
    pub fn zone_name(&self, user_zone: Option<&str>) -> String {
        if self.is_interval() {
            return UTC.to_string();
        }
        match self.timezone.as_deref() {
            None => UTC,
            Some(USER_ZONE) => user_zone.map(str::trim).filter(|zone| !zone.is_empty()).unwrap_or(UTC),
            Some(zone) => zone,
        }
        .to_string()
    }

    /// The schedule ready to compute in `zone` (see [`ScheduleTrigger::zone_name`]).
    pub fn compile(&self, zone: &str) -> Result<CompiledSchedule, ScheduleError> {
        let wall = |pattern: String, every_days: u32| -> Result<CompiledSchedule, ScheduleError> {
            Ok(CompiledSchedule::Wall { cron: Box::new(parse_cron(&pattern)?), every_days, zone: time_zone(zone)? })
        };
        match &self.rule {
            ScheduleRule::Every(every) => Ok(CompiledSchedule::Interval {
                millis: i64::try_from(every.duration().as_millis()).unwrap_or(i64::MAX).max(1),
            }),
            ScheduleRule::Hourly(Hourly { minute }) => wall(format!("0 {minute} * * * *"), 1),
            ScheduleRule::Daily(Daily { at, every }) => wall(format!("0 {} {} * * *", at.minute, at.hour), *every),
            ScheduleRule::Weekly(Weekly { days, at }) => {
                let mut numbers: Vec<u8> = days.iter().map(|day| day.cron_number()).collect();
                numbers.sort_unstable();
                numbers.dedup();
                let list: Vec<String> = numbers.iter().map(u8::to_string).collect();
                wall(format!("0 {} {} * * {}", at.minute, at.hour, list.join(",")), 1)
            }
            ScheduleRule::Cron(pattern) => wall(pattern.clone(), 1),
        }
    }

    /// The first fire strictly after `after`, computed in `zone`; `None` if it never fires again.
    pub fn next_after(&self, after: Timestamp, zone: &str) -> Result<Option<Fire>, ScheduleError> {
        self.compile(zone)?.next_after(after)
    }

    /// The fires in (`after`, `until`], oldest first, at most `max`.
    pub fn fires_between(
        &self,
        after: Timestamp,
        until: Timestamp,
        zone: &str,
        max: usize,
    ) -> Result<Vec<Fire>, ScheduleError> {
        self.compile(zone)?.fires_between(after, until, max)
    }
}

/// A schedule with its cron pattern parsed and its zone found, to compute many fires.
#[derive(Debug, Clone)]
pub enum CompiledSchedule {
    /// Every `millis` of elapsed time, at the multiples since the epoch.
    Interval { millis: i64 },
    /// The civil matches of `cron` on the days whose count since 1970-01-01 is a multiple of
    /// `every_days`, resolved in `zone`.
    Wall { cron: Box<Cron>, every_days: u32, zone: TimeZone },
}

impl CompiledSchedule {
    /// See [`ScheduleTrigger::next_after`].
    pub fn next_after(&self, after: Timestamp) -> Result<Option<Fire>, ScheduleError> {
        match self {
            CompiledSchedule::Interval { millis } => {
                let next = after
                    .timestamp_millis()
                    .div_euclid(*millis)
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(*millis))
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
                Ok(next.map(|at| Fire { at, anomaly: None }))
            }
            CompiledSchedule::Wall { cron, every_days, zone } => wall_next_after(cron, *every_days, zone, after),
        }
    }

    /// See [`ScheduleTrigger::fires_between`].
    pub fn fires_between(&self, after: Timestamp, until: Timestamp, max: usize) -> Result<Vec<Fire>, ScheduleError> {
        let mut fires = Vec::new();
        let mut cursor = after;
        while fires.len() < max {
            match self.next_after(cursor)? {
                Some(fire) if fire.at <= until => {
                    cursor = fire.at;
                    fires.push(fire);
                }
                _ => break,
            }
        }
        Ok(fires)
    }
}

/// The first civil match after `after`'s wall time (seconds dropped) whose resolved instant is
/// strictly after `after` (see the module's invariants).
fn wall_next_after(
    cron: &Cron,
    every_days: u32,
    tz: &TimeZone,
    after: Timestamp,
) -> Result<Option<Fire>, ScheduleError> {
    let out_of_range = |reason: String| ScheduleError::OutOfRange { after: after.to_rfc3339(), reason };
    let after_ms = after.timestamp_millis();
    let whole_second =
        jiff::Timestamp::from_second(after_ms.div_euclid(1000)).map_err(|e| out_of_range(e.to_string()))?;
    let mut cursor = tz.to_datetime(whole_second);
    for _ in 0..MAX_CANDIDATES {
        cursor = match cron.find_next_occurrence(&cursor, false) {
            Ok(found) => found,
            // Croner searches a bounded range (years): past it, the pattern never matches.
            Err(CronError::TimeSearchLimitExceeded | CronError::InvalidDate | CronError::InvalidTime) => {
                return Ok(None);
            }
            Err(e) => return Err(out_of_range(e.to_string())),
        };
        if every_days > 1 && days_since_epoch(cursor.date()).rem_euclid(i64::from(every_days)) != 0 {
            continue;
        }
        let (instant, anomaly) = resolve(tz, cursor).map_err(out_of_range)?;
        if instant.as_millisecond() > after_ms {
            let at = Utc.timestamp_millis_opt(instant.as_millisecond()).single();
            return Ok(at.map(|at| Fire { at, anomaly }));
        }
    }
    Err(out_of_range(format!("no fire among the next {MAX_CANDIDATES} wall-clock matches")))
}

/// The instant a civil match fires at in `tz`: itself; the transition when it falls in a gap;
/// its first occurrence when it falls in a fold.
fn resolve(tz: &TimeZone, wall: civil::DateTime) -> Result<(jiff::Timestamp, Option<Anomaly>), String> {
    match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => Ok((offset.to_timestamp(wall).map_err(|e| e.to_string())?, None)),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the later offset, the wall time is an instant before the transition;
            // with the earlier one, an instant at or after it.
            let early = after.to_timestamp(wall).map_err(|e| e.to_string())?;
            let late = before.to_timestamp(wall).map_err(|e| e.to_string())?;
            let transition = tz.following(early).next().map(|t| t.timestamp()).filter(|t| *t <= late).unwrap_or(late);
            Ok((transition, Some(Anomaly::Gap { wall: wall_text(wall) })))
        }
        AmbiguousOffset::Fold { before, after } => {
            let first = before.to_timestamp(wall).map_err(|e| e.to_string())?;
            let second = after.to_timestamp(wall).map_err(|e| e.to_string())?;
            Ok((first.min(second), Some(Anomaly::Fold { wall: wall_text(wall) })))
        }
    }
}

fn days_since_epoch(date: Date) -> i64 {
    date.duration_since(Date::constant(1970, 1, 1)).as_secs().div_euclid(86_400)
}

/// `2027-03-14 02:30`, with `:SS` when the seconds are not 0.
fn wall_text(wall: civil::DateTime) -> String {
    let date =
        format!("{:04}-{:02}-{:02} {:02}:{:02}", wall.year(), wall.month(), wall.day(), wall.hour(), wall.minute());
    match wall.second() {
        0 => date,
        seconds => format!("{date}:{seconds:02}"),
    }
}

fn to_jiff(at: Timestamp) -> Result<jiff::Timestamp, ScheduleError> {
    jiff::Timestamp::from_millisecond(at.timestamp_millis())
        .map_err(|e| ScheduleError::OutOfRange { after: at.to_rfc3339(), reason: e.to_string() })
}

/// The fire instants of an interval of `every` (a poll's): see [`CompiledSchedule::Interval`].
/// A poll polls whatever its items' executions are doing (`overlap: allow`): each item starts
/// once anyway, and a long-running item must not hold the next items back.
pub fn interval(every: &DurationSpec) -> ScheduleTrigger {
    ScheduleTrigger {
        rule: ScheduleRule::Every(every.clone()),
        timezone: None,
        overlap: Overlap::Allow,
        catchup: Catchup::Latest,
    }
}

#[cfg(test)]
mod tests;
