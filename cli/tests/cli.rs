//! The `sluice` binary's offline commands: validate, schema, token.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().expect("run sluice")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn validate_accepts_the_bundled_examples() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/workflows");
    let out = sluice(&["validate", examples]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 workflow file(s) OK"));
}

#[test]
fn validate_lists_every_problem_with_file_and_path_and_fails() {
    let dir = temp_dir("validate");
    std::fs::write(
        dir.join("bad.yaml"),
        r#"
id: Bad_Id
trigger: { type: request }
steps:
  - { id: a, type: request, url: "https://x/{{steps.b.output.id}}" }
  - { id: a, type: teleport }
  - id: c
    type: conditional
    when: { left: 1, op: bigger_than, right: 2 }
  - { id: d, type: response, body: "{{trigger.body.x" }
"#,
    )
    .expect("write");
    let out = sluice(&["validate", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in
        ["bad.yaml: id:", "steps[0].url", "steps[1].id", "steps[1].type", "steps[2].when.op", "steps[3].body"]
    {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
    assert!(stdout.lines().count() >= 6, "{stdout}");
}

#[test]
fn schema_prints_a_json_schema_of_workflow_files() {
    let out = sluice(&["schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(schema["properties"]["steps"].is_object(), "{schema}");
}

#[test]
fn token_without_a_project_folder_says_what_to_do() {
    let dir = temp_dir("token");
    let out = sluice(&["token", "--user", "u1", "--data-dir", dir.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sluice dev"));
}
