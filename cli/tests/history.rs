//! `sluice history` run as a process against a running `sluice dev`: the list (table, filters,
//! JSON lines, paging), `show` (timeline with fan-out branches), the actions by id and in bulk,
//! and a deployed-stack target by --url with a wrong key.

mod support;

use std::process::Output;

use serde_json::Value;
use support::{free_port, http, json, sluice, start_dev, temp_dir, token, trigger};

const OK: &str = "id: ok\ntrigger: { type: request }\nsearch: { email: \"{{trigger.body.email}}\" }\nsteps:\n  - { id: compute, type: function, code: \"(p) => 1\" }\n  - { id: reply, type: response, body: { ok: true } }\n";

/// A fan-out over three items whose second branch throws when asked to.
const FLAKY: &str = r#"id: flaky
trigger: { type: request }
search: { email: "{{trigger.body.email}}" }
steps:
  - { id: items, type: function, code: "(p) => [1, 2, 3]" }
  - id: each
    type: fan_out
    over: "{{steps.items.output}}"
    steps:
      - id: check
        type: function
        code: "(p) => { if (p.fail && p.n === 2) { throw new Error('asked to fail on ' + p.n); } return p.n; }"
        parameters: { n: "{{item}}", fail: "{{trigger.body.fail}}" }
  - { id: reply, type: response, body: { ok: true } }
"#;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let Output { status, stdout, stderr } = sluice(args);
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `sluice history ARGS --data-dir DATA`, which must succeed.
fn history_ok(data: &str, args: &[&str]) -> String {
    let mut all = vec!["history"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", data]);
    let out = run(&all);
    assert_eq!(out.code, Some(0), "sluice {all:?}\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    out.stdout
}

/// `sluice ARGS` with its stdin and stdout on a pseudo-terminal (util-linux `script`), `input`
/// typed in; what it printed, or None without `script` (the check is then skipped, and said).
fn on_terminal_with_input(args: &[&str], vars: &[(&str, &str)], input: &str) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let line = std::iter::once(env!("CARGO_BIN_EXE_sluice")).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    let child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("no `script` command: the terminal checks are skipped");
        return None;
    };
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("type into the terminal");
    let out = child.wait_with_output().expect("script");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_terminal(args: &[&str], vars: &[(&str, &str)]) -> Option<String> {
    on_terminal_with_input(args, vars, "")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(json).collect()
}

#[test]
fn history_lists_shows_and_acts_on_the_executions_of_sluice_dev() {
    let data = temp_dir("history-data");
    let workflows = temp_dir("history-workflows");
    std::fs::write(workflows.join("ok.yaml"), OK).expect("write");
    std::fs::write(workflows.join("flaky.yaml"), FLAKY).expect("write");
    let port = free_port();
    let port_arg = port.to_string();
    let (d, w) = (data.to_str().expect("utf-8"), workflows.to_str().expect("utf-8"));
    let (_dev, printed) = start_dev(&["--port", &port_arg, "--data-dir", d, "--workflows", w]);
    assert!(printed.contains("deployed flaky") && printed.contains("deployed ok"), "{printed}");
    let project = json(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"));
    let api_key = project["apiKey"].as_str().expect("an API key").to_string();

    let (alice, bob) = (token(d, "alice"), token(d, "bob"));
    assert_eq!(trigger(port, "ok", &alice, r#"{"email":"a@x.io"}"#).0, 200);
    let (status, body) = trigger(port, "flaky", &bob, r#"{"email":"b@x.io","fail":true}"#);
    assert!(status >= 500, "the failing branch fails the call: {status} {body}");
    assert_eq!(trigger(port, "flaky", &alice, r#"{"email":"a@x.io","fail":false}"#).0, 200);

    // The table: a header, one line per execution, newest first, no colour codes in a pipe.
    let table = history_ok(d, &[]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS") && lines[0].contains("FAILURE"), "{table}");
    assert!(lines[1].contains("✓ succeeded") && lines[1].contains("flaky v1") && lines[1].contains("alice"), "{table}");
    assert!(lines[2].contains("✗ failed") && lines[2].contains("bob") && lines[2].contains("each: "), "{table}");
    assert!(lines[2].contains("request") && lines[2].contains("just now ("), "{table}");
    assert!(lines[3].contains("ok v1"), "{table}");
    assert!(!table.contains('\x1b'), "no colour outside a terminal: {table}");

    // On a terminal (a pseudo-terminal by `script`, when there is one): colour, unless NO_COLOR.
    if let Some(coloured) = on_terminal(&["history", "--data-dir", d], &[]) {
        assert!(coloured.contains("\x1b[32m✓ succeeded") && coloured.contains("\x1b[31m✗ failed"), "{coloured:?}");
        let plain = on_terminal(&["history", "--data-dir", d], &[("NO_COLOR", "1")]).expect("script ran before");
        assert!(plain.contains("✓ succeeded") && !plain.contains('\x1b'), "{plain:?}");
    }

    // JSON lines: the API's rows, newest first.
    let rows = json_lines(&history_ok(d, &["--json"]));
    assert_eq!(rows.len(), 3);
    let ids: Vec<String> = rows.iter().map(|r| r["executionId"].as_str().expect("an id").to_string()).collect();
    assert_eq!(rows[1]["status"], "failed");
    assert_eq!(rows[1]["failedStep"], "each");
    let failed_id = ids[1].clone();
    let ok_id = ids[2].clone();

    // Filters.
    let failed = history_ok(d, &["--status", "failed", "--wide"]);
    assert_eq!(failed.lines().count(), 2, "{failed}");
    assert!(failed.contains(&failed_id) && failed.contains("asked to fail on 2 (line 1)"), "{failed}");
    let by_email = json_lines(&history_ok(d, &["--search", "email=a@x.io", "--json"]));
    assert_eq!(by_email.len(), 2);
    assert!(by_email.iter().all(|r| r["search"]["email"] == "a@x.io" && r["userId"] == "alice"), "{by_email:?}");
    let by_user = json_lines(&history_ok(d, &["--user", "bob", "--workflow", "flaky", "--json"]));
    assert_eq!(by_user.len(), 1);
    assert_eq!(by_user[0]["executionId"], failed_id.as_str());

    // Paging: page after page until --limit, or to the end with --all.
    let paged = json_lines(&history_ok(d, &["--all", "--page-size", "1", "--json"]));
    let paged_ids: Vec<&str> = paged.iter().filter_map(|r| r["executionId"].as_str()).collect();
    assert_eq!(paged_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "three pages of one, in order");
    let limited = run(&["history", "--limit", "2", "--page-size", "1", "--json", "--data-dir", d]);
    assert_eq!(json_lines(&limited.stdout).len(), 2);
    assert!(limited.stderr.contains("more executions match"), "{}", limited.stderr);

    // A refused filter: the API's message and a non-zero exit.
    let bad = run(&["history", "--status", "exploded", "--data-dir", d]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("400") && bad.stderr.contains("status"), "{}", bad.stderr);
    let undeclared = run(&["history", "--search", "phone=1", "--data-dir", d]);
    assert_eq!(undeclared.code, Some(1));
    assert!(undeclared.stderr.contains("phone"), "{}", undeclared.stderr);

    // `show`: header, timeline, fan-out branches grouped with the failed one listed, the error.
    let shown = history_ok(d, &["show", &failed_id]);
    assert!(shown.starts_with(&format!("execution {failed_id}  ✗ failed")), "{shown}");
    for part in ["workflow:  flaky v1", "user:      bob", "search:    email=b@x.io", "items", "|"] {
        assert!(shown.contains(part), "`{part}` in:\n{shown}");
    }
    assert!(shown.contains("branches: 3 (2 succeeded, 1 failed)"), "{shown}");
    assert!(shown.contains("✗ branch 1: check: Error: asked to fail on 2"), "{shown}");
    assert!(shown.contains("error in step each:"), "{shown}");
    // By a prefix of its id, as the table shows it.
    let prefix = &failed_id[..14];
    assert!(history_ok(d, &["show", prefix]).starts_with(&format!("execution {failed_id}")));
    let raw = json(&history_ok(d, &["show", &failed_id, "--json"]));
    assert_eq!(raw["executionId"], failed_id.as_str());
    assert!(raw["steps"].as_array().is_some_and(|s| !s.is_empty()), "{raw}");
    let missing = run(&["history", "show", "00000000-0000-7000-8000-000000000000", "--data-dir", d]);
    assert_eq!(missing.code, Some(1));
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    // A deployed stack by --url: the same list; a wrong key is refused, and never printed.
    let url = format!("http://127.0.0.1:{port}");
    let remote = run(&["history", "--url", &url, "--api-key", &api_key, "--project", "dev", "--json"]);
    assert_eq!(remote.code, Some(0), "{}", remote.stderr);
    assert_eq!(json_lines(&remote.stdout).len(), 3);
    let wrong = run(&["history", "--url", &url, "--api-key", "sk_wrong_key_123", "--project", "dev"]);
    assert_eq!(wrong.code, Some(1));
    assert!(wrong.stderr.contains("401") && !wrong.stderr.contains("sk_wrong_key_123"), "{}", wrong.stderr);

    // The actions (replay, redrive, cancel, bulk) landed on `main` during this work: checked
    // only when the stack has them.
    let auth = format!("Bearer {api_key}");
    let probe =
        http(port, "POST", &format!("/projects/dev/executions/{ok_id}/cancel"), &[("authorization", &auth)], "");
    let has_actions = probe.as_ref().is_some_and(|(status, body)| !(*status == 404 && body.contains("no route")));
    if !has_actions {
        eprintln!("the stack has no action routes yet: replay/redrive/cancel not checked ({probe:?})");
    } else {
        check_actions(d, &ok_id);
    }
    let body = r#"{"action":"cancel","filter":{"status":"running"},"dryRun":true}"#;
    let probe = http(port, "POST", "/projects/dev/executions/bulk", &[("authorization", &auth)], body);
    if probe.as_ref().is_some_and(|(status, _)| *status == 200) {
        check_bulk(d, &failed_id);
    } else {
        eprintln!("the stack has no bulk route yet: bulk actions not checked ({probe:?})");
    }
    if has_actions {
        check_redrive(d, &ok_id, &failed_id);
    }

    let everything = [table, failed, shown, remote.stdout, remote.stderr, bad.stderr].concat();
    assert!(!everything.contains(&api_key), "the API key is never printed");
}

fn check_actions(d: &str, ok_id: &str) {
    // Replay of one id: a new execution, linked both ways.
    let replayed = history_ok(d, &["replay", ok_id]);
    assert!(replayed.contains(&format!("replay {ok_id}: new execution ")), "{replayed}");
    let new_id = replayed.split("new execution ").nth(1).and_then(|t| t.split_whitespace().next()).expect("an id");
    let record = json(&history_ok(d, &["show", new_id, "--json"]));
    assert_eq!(record["replayOf"], ok_id);

    // Cancel of an ended execution: refused with the 409 message and its status, exit 1.
    let cancel = run(&["history", "cancel", ok_id, "--data-dir", d]);
    assert_eq!(cancel.code, Some(1), "{}", cancel.stdout);
    assert!(cancel.stdout.contains("409") && cancel.stdout.contains("status: succeeded"), "{}", cancel.stdout);
}

fn check_redrive(d: &str, ok_id: &str, failed_id: &str) {
    // Several ids, one line each: redrive of a succeeded one is refused, of the failed one done
    // (it fails again: its trigger asks for it); exit 1 since one was refused.
    let redrive = run(&["history", "redrive", ok_id, failed_id, "--data-dir", d]);
    assert_eq!(redrive.code, Some(1), "{}", redrive.stdout);
    assert!(redrive.stdout.contains(&format!("redrive {ok_id}: failed: ")), "{}", redrive.stdout);
    assert!(redrive.stdout.contains(&format!("redrive {failed_id}: running (redrive 1)")), "{}", redrive.stdout);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let record = json(&history_ok(d, &["show", failed_id, "--json"]));
        if record["status"] == "failed" {
            assert_eq!(record["redrives"], 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the redrive did not end: {record}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn check_bulk(d: &str, failed_id: &str) {
    // Bulk: the dry run counts and shows a sample; without --yes outside a terminal, nothing runs.
    let dry = history_ok(d, &["redrive", "--status", "failed", "--dry-run"]);
    assert!(dry.contains("redrive would act on 1 execution(s)") && dry.contains(&failed_id[..8]), "{dry}");
    let unconfirmed = run(&["history", "redrive", "--status", "failed", "--data-dir", d]);
    assert_eq!(unconfirmed.code, Some(1));
    assert!(unconfirmed.stderr.contains("--yes"), "{}", unconfirmed.stderr);

    // Bulk replay with --yes: plain progress lines (not a terminal) until done.
    let bulk = history_ok(d, &["replay", "--workflow", "ok", "--yes"]);
    assert!(bulk.contains("progress: ") && bulk.contains("done: "), "{bulk}");
    assert!(bulk.contains(" 0 failed"), "{bulk}");

    // On a terminal: the question; `n` does nothing, `y` runs it with a bar redrawn in place.
    let replay_ok = ["history", "replay", "--workflow", "ok", "--data-dir", d];
    if let Some(declined) = on_terminal_with_input(&replay_ok, &[], "n\n") {
        assert!(declined.contains("execution(s)? [y/N]") && declined.contains("nothing done"), "{declined:?}");
        let confirmed = on_terminal_with_input(&replay_ok, &[], "y\n").expect("script ran before");
        assert!(confirmed.contains("\r\x1b[") || confirmed.contains("\r["), "a bar redrawn: {confirmed:?}");
        assert!(confirmed.contains("done: ") && confirmed.contains(" 0 failed"), "{confirmed:?}");
    }
}
