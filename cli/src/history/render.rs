//! Text views of History API answers: the list table and an execution's record with its step
//! timeline. Pure functions of the JSON, the colour choice and "now", so they are tested
//! without a stack. Colour codes wrap already padded cells, so columns line up either way.

use chrono::{DateTime, Local, Utc};
use serde_json::Value;

const RESET: &str = "\x1b[0m";

/// The icon, word and colour of an execution or step status.
fn status_parts(status: &str) -> (&'static str, &'static str) {
    match status {
        "succeeded" => ("✓", "\x1b[32m"),
        "failed" => ("✗", "\x1b[31m"),
        "running" => ("▶", "\x1b[34m"),
        "waiting" => ("◷", "\x1b[33m"),
        "cancelled" => ("⊘", "\x1b[90m"),
        _ => ("?", ""),
    }
}

fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour && !code.is_empty() && !text.is_empty() { format!("{code}{text}{RESET}") } else { text.to_string() }
}

/// `✓ succeeded`, padded to `width` before colouring.
fn status_cell(status: &str, width: usize, colour: bool) -> String {
    let (icon, code) = status_parts(status);
    paint(&pad(&format!("{icon} {status}"), width), code, colour)
}

fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len >= width { text.to_string() } else { format!("{text}{}", " ".repeat(width - len)) }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

/// `350ms`, `1.2s`, `2m05s`, `1h02m`, `3d04h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `5m ago`, `just now`, `in 2m` (clock skew).
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let ms = (now - at).num_milliseconds();
    if ms.abs() < 1_000 {
        return "just now".into();
    }
    let coarse = |ms: i64| {
        let s = ms / 1000;
        match s {
            0..60 => format!("{s}s"),
            60..3600 => format!("{}m", s / 60),
            3600..86_400 => format!("{}h", s / 3600),
            _ => format!("{}d", s / 86_400),
        }
    };
    if ms > 0 { format!("{} ago", coarse(ms)) } else { format!("in {}", coarse(-ms)) }
}

/// `5m ago (2026-12-08 01:02:03)` in local time.
fn started(value: &Value, now: DateTime<Utc>) -> String {
    match parse_time(value) {
        Some(at) => format!("{} ({})", relative(at, now), at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S")),
        None => value.as_str().unwrap_or("-").to_string(),
    }
}

fn text<'a>(value: &'a Value, default: &'a str) -> &'a str {
    value.as_str().unwrap_or(default)
}

/// The list as a table, one execution per line, under a header.
pub fn table(rows: &[Value], colour: bool, wide: bool, now: DateTime<Utc>) -> String {
    const HEADER: [&str; 8] = ["ID", "STATUS", "WORKFLOW", "USER", "TRIGGER", "STARTED", "DURATION", "FAILURE"];
    let ids: Vec<&str> = rows.iter().map(|row| text(&row["executionId"], "?")).collect();
    let short = if wide { usize::MAX } else { short_length(&ids) };
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|row| {
            let id: String = text(&row["executionId"], "?").chars().take(short).collect();
            let workflow = match row["workflowVersion"].as_u64() {
                Some(v) => format!("{} v{v}", text(&row["workflowId"], "?")),
                None => text(&row["workflowId"], "?").to_string(),
            };
            let failure = match (row["failedStep"].as_str(), row["error"].as_str()) {
                (Some(step), Some(error)) => format!("{step}: {}", error.lines().next().unwrap_or_default()),
                (Some(step), None) => step.to_string(),
                (None, Some(error)) => error.lines().next().unwrap_or_default().to_string(),
                (None, None) => String::new(),
            };
            let status = text(&row["status"], "?");
            [
                id,
                format!("{} {status}", status_parts(status).0),
                workflow,
                text(&row["userId"], "-").to_string(),
                text(&row["trigger"], "-").to_string(),
                started(&row["startedAt"], now),
                row["durationMs"].as_i64().map_or_else(|| "-".to_string(), duration),
                if wide { failure } else { truncate(&failure, 60) },
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = HEADER.iter().zip(widths).map(|(h, w)| pad(h, w)).collect();
    out.push_str(&paint(header.join("  ").trim_end(), "\x1b[1m", colour));
    out.push('\n');
    for (row, source) in cells.iter().zip(rows) {
        let mut line: Vec<String> = Vec::with_capacity(8);
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            line.push(match i {
                1 => status_cell(text(&source["status"], "?"), width, colour),
                7 => paint(cell, "\x1b[31m", colour),
                _ => pad(cell, width),
            });
        }
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// How many leading characters tell the listed ids apart: at least 8. Execution ids are
/// UUIDv7, which start with their millisecond timestamp, so executions started within about a
/// minute share 8 characters; the short ids then grow until they differ (and still work as
/// `--id-prefix` or as the id of `show`, `replay`, ...).
pub fn short_length(ids: &[&str]) -> usize {
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let common = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    sorted.windows(2).map(|pair| common(pair[0], pair[1]) + 1).max().unwrap_or(0).max(8)
}

/// The width of the timeline's bars.
const BAR: usize = 24;

/// An execution record: header, step timeline, failing step's error, response.
pub fn record(record: &Value, colour: bool, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let status = text(&record["status"], "?");
    let (icon, code) = status_parts(status);
    out.push_str(&format!(
        "execution {}  {}\n",
        text(&record["executionId"], "?"),
        paint(&format!("{icon} {status}"), code, colour)
    ));
    let mut field = |name: &str, value: String| out.push_str(&format!("  {:<10} {value}\n", format!("{name}:")));
    let workflow = format!("{} v{}", text(&record["workflowId"], "?"), record["workflowVersion"]);
    field("workflow", workflow);
    if let Some(integration) = record["integration"].as_str() {
        field("integration", integration.to_string());
    }
    field("user", text(&record["userId"], "-").to_string());
    let trigger = &record["trigger"];
    let event = trigger["event"].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
    field("trigger", format!("{}{event}", text(&trigger["kind"], "-")));
    field("started", started(&record["startedAt"], now));
    let start = parse_time(&record["startedAt"]);
    let end = parse_time(&record["endedAt"]);
    match (record["durationMs"].as_i64(), end) {
        (Some(ms), Some(end)) => {
            field("ended", format!("{} (took {})", end.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"), duration(ms)))
        }
        _ => field("ended", "not yet".to_string()),
    }
    if let Some(of) = record["replayOf"].as_str() {
        field("replay of", of.to_string());
    }
    if let Some(replays) = record["replays"].as_array().filter(|r| !r.is_empty()) {
        field("replays", replays.iter().map(|r| text(r, "?")).collect::<Vec<_>>().join(", "));
    }
    if record["redrives"].as_u64().is_some_and(|n| n > 0) {
        field("redrives", record["redrives"].to_string());
    }
    if let Some(search) = record["search"].as_object().filter(|s| !s.is_empty()) {
        field("search", search.iter().map(|(k, v)| format!("{k}={}", text(v, "?"))).collect::<Vec<_>>().join(" "));
    }
    if record["test"] == true {
        field("test", "yes (a test run)".to_string());
    }
    if let Some(trace) = record["traceId"].as_str() {
        field("trace", trace.to_string());
    }

    // The timeline spans the execution (until now while it runs).
    let span = match (start, end) {
        (Some(start), Some(end)) => Some((start, (end - start).num_milliseconds().max(1))),
        (Some(start), None) => Some((start, (now - start).num_milliseconds().max(1))),
        _ => None,
    };
    out.push_str("\nsteps:\n");
    let steps = record["steps"].as_array().cloned().unwrap_or_default();
    if steps.is_empty() {
        out.push_str("  (none yet)\n");
    }
    let width = steps.iter().map(|s| text(&s["id"], "?").chars().count()).max().unwrap_or(0).max(8);
    for step in &steps {
        timeline_step(&mut out, step, 1, width, span, colour);
    }

    if let Some(error) = record["error"].as_object() {
        let step = error.get("step").and_then(Value::as_str).unwrap_or("?");
        out.push_str(&paint(&format!("\nerror in step {step}:\n"), "\x1b[31m", colour));
        let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
        for line in message.lines() {
            out.push_str(&format!("  {line}\n"));
        }
        let details = steps.iter().find(|s| s["id"] == step).map(|s| &s["error"]["details"]);
        if let Some(details) = details.filter(|d| !d.is_null()) {
            out.push_str(&format!("  details: {details}\n"));
        }
    }
    if let Some(response) = record["response"].as_object() {
        let status = response.get("status").map(Value::to_string).unwrap_or_default();
        out.push_str(&format!("\nresponse: {status}\n"));
    }
    out
}

/// One line per step (per attempt when the record lists `attemptHistory`), then a fan-out's
/// branches: counts, and each failed branch with its failing step.
fn timeline_step(
    out: &mut String,
    step: &Value,
    depth: usize,
    width: usize,
    span: Option<(DateTime<Utc>, i64)>,
    colour: bool,
) {
    let indent = "  ".repeat(depth);
    let id = text(&step["id"], "?");
    let attempts: Vec<&Value> = match step["attemptHistory"].as_array() {
        Some(history) if !history.is_empty() => history.iter().collect(),
        _ => vec![step],
    };
    let count = step["attempts"].as_u64().unwrap_or(1);
    for (i, attempt) in attempts.iter().enumerate() {
        let status = text(&attempt["status"], "?");
        let (icon, code) = status_parts(status);
        let (mut from, mut to) = (parse_time(&attempt["startedAt"]), parse_time(&attempt["endedAt"]));
        if attempts.len() == 1 {
            // A fan-out's entry is its join; its line spans its branches too.
            let (first, last) = branch_span(step);
            from = [from, first].into_iter().flatten().min();
            to = [to, last].into_iter().flatten().max();
        }
        let offset = match (span, from) {
            (Some((start, _)), Some(from)) => format!("+{}", duration((from - start).num_milliseconds())),
            _ => "-".into(),
        };
        let took = match (from, to) {
            (Some(from), Some(to)) => duration((to - from).num_milliseconds()),
            _ => "-".into(),
        };
        let bar = match (span, from, to) {
            (Some((start, total)), Some(from), Some(to)) => {
                bar((from - start).num_milliseconds(), (to - from).num_milliseconds(), total)
            }
            _ => " ".repeat(BAR),
        };
        let note = if attempts.len() > 1 {
            format!("  attempt {}", attempt["attempt"].as_u64().unwrap_or(i as u64 + 1))
        } else if count > 1 {
            format!("  {count} attempts")
        } else {
            String::new()
        };
        let label = paint(&pad(&format!("{icon} {status}"), 11), code, colour);
        let name = pad(id, width.saturating_sub(2 * (depth - 1)));
        out.push_str(&format!("{indent}{name}  {label} {offset:>9} {took:>8}  |{bar}|{note}\n"));
        // A fan-out's failure is its branches' (listed below).
        if status == "failed"
            && step.get("branches").is_none()
            && let Some(message) = attempt["error"]["message"].as_str()
        {
            let first = message.lines().next().unwrap_or_default();
            out.push_str(&paint(&format!("{indent}  └ {}\n", truncate(first, 100)), "\x1b[31m", colour));
        }
    }
    if let Some(branches) = step["branches"].as_array() {
        let failed: Vec<&Value> = branches
            .iter()
            .filter(|b| b["steps"].as_array().is_some_and(|s| s.iter().any(|s| s["status"] == "failed")))
            .collect();
        out.push_str(&format!(
            "{indent}  branches: {} ({} succeeded, {} failed)\n",
            branches.len(),
            branches.len() - failed.len(),
            failed.len()
        ));
        for branch in failed {
            let index = &branch["index"];
            let steps = branch["steps"].as_array().cloned().unwrap_or_default();
            let failing = steps.iter().find(|s| s["status"] == "failed");
            let (step, message) = failing
                .map_or(("?", ""), |s| (text(&s["id"], "?"), s["error"]["message"].as_str().unwrap_or_default()));
            let first = message.lines().next().unwrap_or_default();
            let line = format!("{indent}  ✗ branch {index}: {step}: {}\n", truncate(first, 100));
            out.push_str(&paint(&line, "\x1b[31m", colour));
        }
    }
}

/// The earliest start and the latest end of the steps in a fan-out's branches (nested
/// fan-outs included).
fn branch_span(step: &Value) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let (mut first, mut last) = (None, None);
    let inner = step["branches"].as_array().into_iter().flatten().flat_map(|b| b["steps"].as_array()).flatten();
    for inner in inner {
        let (start, end) = branch_span(inner);
        let start = [parse_time(&inner["startedAt"]), start].into_iter().flatten().min();
        let end = [parse_time(&inner["endedAt"]), end].into_iter().flatten().max();
        first = [first, start].into_iter().flatten().min();
        last = [last, end].into_iter().flatten().max();
    }
    (first, last)
}

/// A bar of [`BAR`] cells: blank before `offset`, filled for `length`, out of `total` ms
/// (at least one cell filled).
fn bar(offset: i64, length: i64, total: i64) -> String {
    let total = total.max(1) as f64;
    let cells = BAR as f64;
    let start = ((offset.max(0) as f64 / total) * cells).floor().min(cells - 1.0) as usize;
    let filled = (((length.max(0) as f64) / total) * cells).round().max(1.0) as usize;
    let filled = filled.min(BAR - start);
    format!("{}{}{}", " ".repeat(start), "█".repeat(filled), " ".repeat(BAR - start - filled))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-08T12:00:00Z").expect("a time").with_timezone(&Utc)
    }

    #[test]
    fn durations_and_relative_times_read_at_a_glance() {
        assert_eq!(duration(350), "350ms");
        assert_eq!(duration(1_250), "1.2s");
        assert_eq!(duration(125_000), "2m05s");
        assert_eq!(duration(3_720_000), "1h02m");
        let at = now() - chrono::Duration::minutes(5);
        assert_eq!(relative(at, now()), "5m ago");
        assert_eq!(relative(now(), now()), "just now");
    }

    #[test]
    fn short_ids_grow_until_the_listed_ids_differ() {
        assert_eq!(short_length(&["01a25330-aaaa", "01b00000-bbbb"]), 8);
        assert_eq!(short_length(&["01a25330-c4d4-1", "01a25330-c4ed-2"]), 12);
        assert_eq!(short_length(&["x", "x"]), 8, "one id listed twice is one id");
    }

    #[test]
    fn bars_are_scaled_to_the_execution() {
        assert_eq!(bar(0, 100, 100), "█".repeat(BAR));
        let half = bar(50, 50, 100);
        assert!(half.starts_with(&" ".repeat(BAR / 2)) && half.ends_with('█'), "{half}");
        assert_eq!(bar(99, 0, 100).chars().filter(|c| *c == '█').count(), 1, "a short step still shows");
    }

    #[test]
    fn the_table_has_short_ids_status_words_and_the_failing_step_without_colour_codes() {
        let rows = [json!({
            "executionId": "0123456789abcdef", "workflowId": "sync", "workflowVersion": 2, "userId": "u1",
            "status": "failed", "trigger": "request", "startedAt": "2026-12-08T11:55:00.000Z",
            "durationMs": 1250, "failedStep": "fetch", "error": "HTTP 500\nmore"
        })];
        let table = table(&rows, false, false, now());
        assert!(table.starts_with("ID "), "{table}");
        let line = table.lines().nth(1).expect("a row");
        for part in ["01234567 ", "✗ failed", "sync v2", "u1", "request", "5m ago", "1.2s", "fetch: HTTP 500"] {
            assert!(line.contains(part), "`{part}` in {line}");
        }
        assert!(!line.contains("0123456789") && !line.contains("more") && !table.contains('\x1b'), "{table}");
        assert!(super::table(&rows, true, true, now()).contains("\x1b[31m"), "colour when asked");
    }

    #[test]
    fn the_record_groups_fan_out_branches_and_lists_the_failed_ones() {
        let record = json!({
            "executionId": "e1", "workflowId": "w", "workflowVersion": 1, "userId": "u", "status": "failed",
            "startedAt": "2026-12-08T11:59:00.000Z", "endedAt": "2026-12-08T11:59:02.000Z", "durationMs": 2000,
            "trigger": { "kind": "request" }, "error": { "step": "each", "message": "branch 1 failed" },
            "steps": [
                { "id": "a", "status": "succeeded", "attempts": 2,
                  "startedAt": "2026-12-08T11:59:00.000Z", "endedAt": "2026-12-08T11:59:01.000Z" },
                { "id": "each", "status": "failed", "attempts": 1,
                  "startedAt": "2026-12-08T11:59:01.000Z", "endedAt": "2026-12-08T11:59:02.000Z",
                  "branches": [
                    { "index": 0, "steps": [{ "id": "d", "status": "succeeded",
                      "startedAt": "2026-12-08T11:59:00.500Z", "endedAt": "2026-12-08T11:59:01.000Z" }] },
                    { "index": 1, "steps": [{ "id": "d", "status": "failed", "error": { "message": "boom\nstack" } }] }
                  ] }
            ]
        });
        let shown = super::record(&record, false, now());
        assert!(shown.contains("execution e1  ✗ failed"), "{shown}");
        assert!(shown.contains("2 attempts") && shown.contains("+0ms"), "{shown}");
        assert!(shown.contains("branches: 2 (1 succeeded, 1 failed)"), "{shown}");
        let each = shown.lines().find(|l| l.trim_start().starts_with("each")).expect("the fan-out's line");
        assert!(each.contains("+500ms") && each.contains("1.5s"), "spans its branches: {each}");
        assert!(shown.contains("✗ branch 1: d: boom") && !shown.contains("stack"), "{shown}");
        assert!(shown.contains("error in step each:\n  branch 1 failed"), "{shown}");
    }
}
