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

/// A free local port (released before `sluice dev` binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `sluice dev` as a child process, killed when dropped.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dev(args: &[&str]) -> (Dev, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dev")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start sluice dev");
    let stdout = child.stdout.take().expect("stdout");
    let dev = Dev(child);
    let mut printed = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("/executions/EXECUTION_ID") {
            return (dev, printed);
        }
    }
    panic!("sluice dev stopped before it was ready:\n{printed}");
}

#[test]
fn dev_creates_the_project_deploys_the_folder_and_answers_the_printed_curl() {
    let data = temp_dir("dev-data");
    let workflows = temp_dir("dev-workflows");
    std::fs::write(
        workflows.join("hello.yaml"),
        "id: hello\ntrigger: { type: request }\nsteps:\n  - { id: reply, type: response, status: 201, body: { hello: \"{{user.id}}\" } }\n",
    )
    .expect("write");
    let port = free_port().to_string();
    let (data_arg, workflows_arg) = (data.to_str().expect("utf-8"), workflows.to_str().expect("utf-8"));
    let (_dev, printed) = start_dev(&["--port", &port, "--data-dir", data_arg, "--workflows", workflows_arg]);
    assert!(printed.contains("deployed hello"), "{printed}");

    let project: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"))
            .expect("JSON");
    assert_eq!(project["projectId"], "dev");
    assert_eq!(project["baseUrl"], format!("http://127.0.0.1:{port}"));
    assert!(project["apiKey"].as_str().is_some_and(|k| k.starts_with("sk_")));

    // The printed curl command, run as printed (with the printed token).
    let token = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("export SLUICE_TOKEN='")?.strip_suffix('\''))
        .expect("a token line");
    let curl = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{port}/projects/dev/sdk/triggers/hello"))
        .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "content-type: application/json", "-d", "{}"])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "{\"hello\":\"dev-user\"}\n201");

    // `sluice token` makes tokens for the same project.
    let out = sluice(&["token", "--user", "u-42", "--data-dir", data_arg]);
    assert!(out.status.success());
    let other = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let curl = Command::new("curl")
        .args(["-s", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{port}/projects/dev/sdk/triggers/hello"))
        .args(["-H", &format!("Authorization: Bearer {other}")])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "{\"hello\":\"u-42\"}");

    // `sluice test` runs the file once on the running stack and prints every step.
    let file = workflows.join("hello.yaml");
    let out = sluice(&["test", file.to_str().expect("utf-8"), "--data-dir", data_arg]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("── reply (succeeded") && printed.contains("test-user"), "{printed}");
    assert!(printed.contains(": succeeded"), "{printed}");
}

#[test]
fn dev_without_a_workflows_folder_deploys_the_bundled_examples() {
    let data = temp_dir("dev-bundled");
    let port = free_port().to_string();
    let missing = data.join("no-such-folder");
    let (_dev, printed) = start_dev(&[
        "--port",
        &port,
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--workflows",
        missing.to_str().expect("utf-8"),
    ]);
    assert!(printed.contains("deploying the bundled examples"), "{printed}");
    assert!(printed.contains("deployed contact-lookup") && printed.contains("deployed lead-created"), "{printed}");
}
