//! File-level tests: formats, syntax errors, reading files and folders.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::tests_docs::full_example;
use super::*;

/// A fresh, empty folder under the system temp dir, removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("sluice-load-{name}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(unique);
        let _ignored_if_absent = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub(super) fn write(&self, name: &str, text: &str) {
        fs::write(self.0.join(name), text).expect("write temp file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _best_effort = fs::remove_dir_all(&self.0);
    }
}

fn workflow_yaml(id: &str) -> String {
    format!("id: {id}\ntrigger: {{ type: request }}\nsteps: [{{ id: reply, type: response }}]\n")
}

#[test]
fn json_files_load_like_yaml() {
    let json = r#"{
      "id": "json-flow",
      "trigger": {"type": "request"},
      "steps": [
        {"id": "call", "type": "request", "method": "POST", "url": "https://x/{{trigger.body.id}}", "body": {"n": 1}},
        {"id": "reply", "type": "response", "status": "{{steps.call.output.status}}", "body": "{{steps.call.output.body}}"}
      ]
    }"#;
    let workflow = load_str("flow.json", json).expect("valid JSON workflow");
    assert_eq!(workflow.id, "json-flow");
    assert_eq!(workflow.steps.len(), 2);
    let yaml = load_str("lead.yml", &full_example()).expect("valid");
    let as_json = serde_json::to_string(&yaml).expect("serializes");
    assert_eq!(load_str("lead.json", &as_json), Ok(yaml));
}

#[test]
fn json_problems_have_paths_too() {
    let found =
        load_str("flow.json", r#"{"id": "x", "trigger": {"type": "request"}, "steps": [{"id": "a", "type": "nope"}]}"#)
            .expect_err("invalid");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "steps[0].type");
}

#[test]
fn yaml_syntax_errors_name_line_and_column() {
    let text = "id: wf\nsteps:\n  - id: x\n   type: y\n";
    let found = load_str("bad.yaml", text).expect_err("syntax error");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "");
    assert!(found[0].message.starts_with("YAML syntax error at line 4, column 4:"), "{}", found[0]);
    let found = load_str("dup.yaml", "id: a\nid: b\n").expect_err("duplicate key");
    assert!(found[0].message.contains("line 1") && found[0].message.contains("duplicate"), "{}", found[0]);
}

#[test]
fn json_syntax_errors_name_line_and_column() {
    let found = load_str("bad.json", "{\"id\": \"a\",\n \"trigger\" 2}").expect_err("syntax error");
    assert_eq!(found[0].message, "JSON syntax error at line 2, column 12: expected `:`");
    assert_eq!(found[0].to_string(), "bad.json: JSON syntax error at line 2, column 12: expected `:`");
}

#[test]
fn unsupported_extensions_are_a_problem() {
    let found = load_str("flow.toml", "id = 1").expect_err("unsupported");
    assert!(found[0].message.contains(".yaml, .yml or .json"));
}

#[test]
fn yaml_merge_keys_and_anchors_are_applied() {
    let text = "id: wf\ntrigger: { type: request }\ndefaults: &d { type: request, retries: 2 }\nsteps:\n  - { <<: *d, id: a, url: 'https://a' }\n";
    // `defaults` is not a workflow key: anchors must live inside allowed keys.
    let found = load_str("wf.yaml", text).expect_err("unknown key");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "defaults");
    let text = "id: wf\ntrigger: { type: request }\nsteps:\n  - &a { id: a, type: request, url: 'https://a', retries: 2 }\n  - { <<: *a, id: b }\n";
    let workflow = load_str("wf.yaml", text).expect("merge keys work");
    assert_eq!(workflow.steps[1].retries, 2);
}

#[test]
fn load_file_reads_and_names_the_file() {
    let dir = TempDir::new("file");
    dir.write("lead.yaml", &full_example());
    let workflow = load_file(&dir.0.join("lead.yaml")).expect("valid file");
    assert_eq!(workflow.id, "lead-created");
    let missing = dir.0.join("missing.yaml");
    let found = load_file(&missing).expect_err("missing file");
    assert_eq!(found[0].file, missing.display().to_string());
    assert!(found[0].message.starts_with("cannot read the file"));
}

#[test]
fn load_dir_loads_workflow_files_sorted_by_name_and_ignores_others() {
    let dir = TempDir::new("sorted");
    dir.write("b.yml", &workflow_yaml("bee"));
    dir.write("a.json", r#"{"id":"ay","trigger":{"type":"request"},"steps":[{"id":"r","type":"response"}]}"#);
    dir.write("c.yaml", &workflow_yaml("sea"));
    dir.write("README.md", "not a workflow");
    dir.write(".hidden.yaml", "not: valid: yaml: [");
    fs::create_dir_all(dir.0.join("nested.yaml")).expect("create nested dir");
    let loaded = load_dir(&dir.0).expect("valid folder");
    let ids: Vec<&str> = loaded.iter().map(|(_, w)| w.id.as_str()).collect();
    assert_eq!(ids, ["ay", "bee", "sea"]);
    assert_eq!(loaded[0].0, dir.0.join("a.json"));
}

#[test]
fn load_dir_of_an_empty_folder_is_empty() {
    let dir = TempDir::new("empty");
    assert_eq!(load_dir(&dir.0), Ok(vec![]));
}

#[test]
fn load_dir_reports_duplicate_workflow_ids_and_problems_of_every_file() {
    let dir = TempDir::new("dups");
    dir.write("one.yaml", &workflow_yaml("same"));
    dir.write("two.yaml", &workflow_yaml("same"));
    dir.write("three.yaml", "id: Bad\ntrigger: { type: request }\nsteps: []\n");
    let found = load_dir(&dir.0).expect_err("problems");
    let described: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 3, "{described:#?}");
    let three = dir.0.join("three.yaml").display().to_string();
    assert!(found.iter().any(|p| p.file == three && p.path == "id"));
    assert!(found.iter().any(|p| p.file == three && p.path == "steps"));
    let two = dir.0.join("two.yaml").display().to_string();
    let duplicate = found.iter().find(|p| p.file == two).expect("duplicate reported on the second file");
    assert_eq!(duplicate.path, "id");
    assert!(
        duplicate.message.contains("workflow id `same` is already used by") && duplicate.message.contains("one.yaml")
    );
}

#[test]
fn load_dir_of_a_missing_folder_is_a_problem() {
    let dir = TempDir::new("gone");
    let missing = dir.0.join("nope");
    let found = load_dir(&missing).expect_err("missing folder");
    assert!(found[0].message.starts_with("cannot read the folder"));
}
