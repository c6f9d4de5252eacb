//! The `sluice` binary run as a process: its offline commands (validate, schema, token) and
//! `sluice dev` called over HTTP.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    Dev, free_port, http, json, sluice, start_dev, start_dev_logging_to, start_dev_with_env, temp_dir, token, trigger,
};

#[test]
fn validate_accepts_the_bundled_examples() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/project");
    let out = sluice(&["validate", examples]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 integration(s), 5 workflow file(s), 1 app event(s) OK"));
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
    assert!(printed.contains("deploying the bundled example project"), "{printed}");
    for id in ["contact-lookup", "lead-created", "deal-won"] {
        assert!(printed.contains(&format!("deployed {id} ")), "{id}: {printed}");
    }
    let written = data.join("example-project/integrations/custom.democrm/config.yaml");
    assert!(written.is_file(), "the example project is written to the data folder");
}

/// A free port other than the default 8787 (what the examples used to hard-code).
fn free_non_default_port() -> u16 {
    loop {
        let port = free_port();
        if port != 8787 {
            return port;
        }
    }
}

#[test]
fn dev_on_another_port_runs_the_bundled_example_project() {
    let data = temp_dir("dev-port");
    let port = free_non_default_port();
    let missing = data.join("no-such-folder");
    let data_arg = data.to_str().expect("utf-8");
    let (_dev, printed) = start_dev(&[
        "--port",
        &port.to_string(),
        "--data-dir",
        data_arg,
        "--workflows",
        missing.to_str().expect("utf-8"),
    ]);
    assert!(printed.contains(&format!("demo services at http://127.0.0.1:{port}/demo")), "{printed}");
    let token = token(data_arg, "user-1");

    let (status, body) = trigger(port, "contact-lookup", &token, r#"{"email":"ada@example.com"}"#);
    assert_eq!(status, 200, "contact-lookup: {body}");
    let answer = json(&body);
    assert_eq!(answer["found"], true, "{answer}");
    assert_eq!(answer["contact"]["email"], "ada@example.com", "{answer}");

    let (status, body) = trigger(port, "lead-created", &token, r#"{"email":"grace@example.org","name":"Grace"}"#);
    assert_eq!(status, 202, "lead-created: {body}");
    let execution_id = json(&body)["executionId"].as_str().expect("an executionId").to_string();
    let project = json(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"));
    let api_key = format!("Bearer {}", project["apiKey"].as_str().expect("apiKey"));
    let path = format!("/projects/dev/executions/{execution_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let (status, body) = http(port, "GET", &path, &[("authorization", &api_key)], "").expect("execution request");
        assert_eq!(status, 200, "GET execution: {body}");
        let record = json(&body);
        if record["status"] == "succeeded" || record["status"] == "failed" {
            break record;
        }
        assert!(Instant::now() < deadline, "lead-created still running: {record}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["steps"][0]["output"]["status"], 201, "{record:#}");
    // The lead carries the integration's settings (their defaults: no user value is stored).
    let lead = &record["steps"][0]["input"]["body"];
    assert_eq!((&lead["owner"], &lead["source"]), (&json("\"sales@example.com\""), &json("\"app\"")), "{record:#}");

    // The app event starts its listener for the user.
    let bearer = format!("Bearer {token}");
    let event = r#"{"name":"Contact Created","payload":{"email":"ada@example.com","name":"Ada"}}"#;
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let (status, body) = http(port, "POST", "/projects/dev/sdk/events/trigger", &headers, event).expect("event");
    assert_eq!(status, 202, "{body}");
    let answer = json(&body);
    assert_eq!(answer["executions"][0]["workflowId"], "contact-created", "{answer}");

    // deal-won posts with the Slack action: it needs the user's Slack token first.
    let (status, body) = trigger(port, "deal-won", &token, r#"{"name":"Acme","amount":12500}"#);
    assert_eq!(status, 500, "deal-won without credentials: {body}");
    assert_eq!(json(&body)["error"]["step"], "post", "{body}");
    let credentials = "/projects/dev/sdk/integrations/slack/credentials";
    let (status, body) =
        http(port, "PUT", credentials, &headers, r#"{"accessToken":"xoxb-demo"}"#).expect("credentials");
    assert_eq!(status, 200, "credentials: {body}");
    let (status, body) = trigger(port, "deal-won", &token, r#"{"name":"Acme","amount":12500}"#);
    assert_eq!(status, 200, "deal-won: {body}");
    let history = "/demo/slack/api/conversations.history?channel=sales";
    let (_, posted) = http(port, "GET", history, &[("authorization", "Bearer xoxb-demo")], "").expect("history");
    assert_eq!(json(&posted)["messages"][0]["text"], ":tada: Acme won for $12,500", "{posted}");
    let answer = json(&body);
    assert_eq!(answer["channel"], "#sales", "the integration's setting: {answer}");
    assert_eq!(answer["announce"], true, "the workflow's own setting, 0: {answer}");
    assert_eq!(answer["text"], ":tada: Acme won for $12,500", "{answer}");
}

#[test]
fn new_integration_scaffolds_folders_that_validate() {
    let dir = temp_dir("new-integration");
    let project = dir.to_str().expect("utf-8");
    for args in [["new", "integration", "slack", "--dir", project], ["new", "integration", "acme", "--dir", project]] {
        let custom = args[2] == "acme";
        let mut args = args.to_vec();
        if custom {
            args.push("--custom");
        }
        let out = sluice(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for file in ["slack/config.yaml", "slack/inputs.yaml", "custom.acme/config.yaml", "custom.acme/workflows"] {
        assert!(dir.join("integrations").join(file).exists(), "{file}");
    }
    let out = sluice(&["validate", project]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 integration(s), 0 workflow file(s) OK"));

    let again = sluice(&["new", "integration", "slack", "--dir", project]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let unknown = sluice(&["new", "integration", "trello", "--dir", project]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown integration `trello`"), "{unknown:?}");
    let bad = sluice(&["new", "integration", "Big Co", "--custom", "--dir", project]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid custom integration name"), "{bad:?}");
}

#[test]
fn schema_prints_the_integration_and_inputs_schemas_too() {
    for (file, key) in [("integration", "authenticationType"), ("inputs", "additionalProperties")] {
        let out = sluice(&["schema", file]);
        assert!(out.status.success());
        let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(schema.to_string().contains(key), "{file}: {schema}");
    }
}

#[test]
fn dev_gives_workflows_its_base_url_as_env_and_an_unknown_env_name_fails_the_step() {
    let data = temp_dir("dev-env");
    let workflows = temp_dir("dev-env-workflows");
    std::fs::write(
        workflows.join("base.yaml"),
        "id: base\ntrigger: { type: request }\nsteps:\n  - { id: reply, type: response, body: { base: \"{{env.SLUICE_BASE_URL}}\" } }\n",
    )
    .expect("write");
    std::fs::write(
        workflows.join("unknown.yaml"),
        "id: unknown\ntrigger: { type: request }\nsteps:\n  - { id: reply, type: response, body: { x: \"{{env.NOPE}}\" } }\n",
    )
    .expect("write");
    let port = free_port();
    let data_arg = data.to_str().expect("utf-8");
    let (_dev, printed) = start_dev(&[
        "--port",
        &port.to_string(),
        "--data-dir",
        data_arg,
        "--workflows",
        workflows.to_str().expect("utf-8"),
    ]);
    assert!(printed.contains("deployed unknown"), "{printed}");
    let token = token(data_arg, "user-1");

    let (status, body) = trigger(port, "base", &token, "{}");
    assert_eq!((status, json(&body)), (200, serde_json::json!({ "base": format!("http://127.0.0.1:{port}") })));
    let (status, body) = trigger(port, "unknown", &token, "{}");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("env.NOPE") && body.contains("reply"), "the error names the step and the path: {body}");
}

#[test]
fn dev_gives_workflows_its_sluice_env_variables_and_env_file_values_as_env() {
    let data = temp_dir("dev-env-vars");
    let workflows = temp_dir("dev-env-vars-workflows");
    std::fs::write(
        workflows.join("env.yaml"),
        "id: env\ntrigger: { type: request }\nsteps:\n  - id: reply\n    type: response\n    \
         body: { x: \"{{env.X}}\", y: \"{{env.Y}}\", z: \"{{env.Z}}\", base: \"{{env.SLUICE_BASE_URL}}\" }\n",
    )
    .expect("write");
    let env_file = data.join("dev.env");
    std::fs::write(&env_file, "# values for dev\n\nX=from the file\nexport Y=\"y # not a comment\"\nZ='z'\n")
        .expect("write");
    let port = free_port();
    let data_arg = data.to_str().expect("utf-8");
    let args = [
        "--port",
        &port.to_string(),
        "--data-dir",
        data_arg,
        "--workflows",
        workflows.to_str().expect("utf-8"),
        "--env-file",
        env_file.to_str().expect("utf-8"),
    ];
    let vars = [("SLUICE_ENV_X", "from the variable"), ("SLUICE_ENV_SLUICE_BASE_URL", "http://elsewhere.example")];
    let (_dev, printed) = start_dev_with_env(&args, Stdio::inherit(), &vars);
    assert!(printed.contains("deployed env"), "{printed}");

    let (status, body) = trigger(port, "env", &token(data_arg, "user-1"), "{}");
    let expected = serde_json::json!({
        "x": "from the variable",
        "y": "y # not a comment",
        "z": "z",
        "base": format!("http://127.0.0.1:{port}"),
    });
    assert_eq!((status, json(&body)), (200, expected));
}

#[test]
fn dev_with_a_malformed_env_file_names_the_line_and_does_not_start() {
    let data = temp_dir("dev-env-file-bad");
    let env_file = data.join("bad.env");
    std::fs::write(&env_file, "# ok\nA=1\nB 2\n").expect("write");
    let port = free_port().to_string();
    let data_arg = data.to_str().expect("utf-8");
    let out =
        sluice(&["dev", "--port", &port, "--data-dir", data_arg, "--env-file", env_file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.env is not an env file: line 3: expected NAME=value, got `B 2`"), "{stderr}");
    assert!(!data.join("sluice.db").exists(), "nothing was started");
}

#[test]
fn dev_log_has_no_colour_codes_when_it_is_not_a_terminal() {
    let data = temp_dir("dev-log");
    let workflows = temp_dir("dev-log-workflows");
    // A header value with a line break cannot be sent: the stack logs a warning and skips it.
    std::fs::write(
        workflows.join("echo.yaml"),
        "id: echo\ntrigger: { type: request }\nsteps:\n  - { id: reply, type: response, headers: { x-echo: \"{{trigger.body.v}}\" }, body: ok }\n",
    )
    .expect("write");
    let port = free_port();
    let data_arg = data.to_str().expect("utf-8");
    let args = ["--port", &port.to_string(), "--data-dir", data_arg, "--workflows", workflows.to_str().expect("utf-8")];
    let (mut dev, _) = start_dev_logging_to(&args, Stdio::piped());
    let mut stderr = dev.0.stderr.take().expect("stderr");
    let (status, body) = trigger(port, "echo", &token(data_arg, "user-1"), r#"{"v":"a\nb"}"#);
    assert_eq!(status, 200, "{body}");
    drop(dev);
    let mut log = String::new();
    stderr.read_to_string(&mut log).expect("read the log");
    assert!(log.contains("WARN") && log.contains("response header skipped"), "the warning was logged:\n{log}");
    assert!(!log.contains("\x1b["), "colour codes in a piped log:\n{log:?}");
}

#[test]
fn health_answers_only_once_the_dev_project_signing_key_exists() {
    for round in 0..5 {
        let data = temp_dir(&format!("dev-health-{round}"));
        let data_arg = data.to_str().expect("utf-8");
        let missing = data.join("no-such-folder");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["dev", "--port", &port.to_string(), "--data-dir", data_arg])
            .args(["--workflows", missing.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sluice dev");
        let _dev = Dev(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // As fast as possible: the first 200 must already find the project ready.
        while http(port, "GET", "/health", &[], "").map(|(status, _)| status) != Some(200) {
            assert!(Instant::now() < deadline, "round {round}: /health never answered 200");
        }
        let out = sluice(&["token", "--user", "u", "--data-dir", data_arg]);
        assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `sluice ARGS` with only the AWS settings given (no profile or config of the machine), its
/// table at `endpoint`; `dir` holds the empty AWS config files.
fn sluice_on_aws(args: &[&str], endpoint: &str, dir: &std::path::Path) -> std::process::Output {
    let empty = dir.join("empty-aws-config");
    std::fs::write(&empty, "").expect("write");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_clear()
        .envs([
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .output()
        .expect("run sluice")
}

#[test]
fn deploy_lists_every_file_problem_before_asking_aws_anything() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let dir = temp_dir("deploy-problems");
    std::fs::write(dir.join("bad.yaml"), "id: bad\ntrigger: { type: request }\nsteps: [ { id: r, type: nope } ]\n")
        .expect("write");
    std::fs::write(dir.join("worse.yaml"), "id: Worse\ntrigger: { type: request }\nsteps: []\n").expect("write");
    let out =
        sluice_on_aws(&["deploy", dir.to_str().expect("utf-8"), "--table", "t1", "--project", "acme"], &endpoint, &dir);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("problem(s) in the workflow files"), "{stderr}");
    assert!(stderr.contains("bad.yaml: steps[0].type") && stderr.contains("worse.yaml: id"), "{stderr}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing may reach AWS while a file has a problem"
    );

    let missing = dir.join("no-such-folder");
    let out = sluice_on_aws(
        &["deploy", missing.to_str().expect("utf-8"), "--table", "t1", "--project", "acme"],
        &endpoint,
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-folder"), "{out:?}");
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}

#[test]
fn deploy_and_project_create_on_an_unreachable_table_say_so_in_one_line() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let dir = temp_dir("deploy-unreachable");
    std::fs::write(
        dir.join("good.yaml"),
        "id: good\ntrigger: { type: request }\nsteps: [ { id: r, type: response } ]\n",
    )
    .expect("write");
    let keys = dir.join("keys");
    for (args, what) in [
        (vec!["deploy", dir.to_str().expect("utf-8"), "--table", "t1", "--project", "acme"], "sluice deploy"),
        (
            vec!["project", "create", "--id", "acme", "--table", "t1", "--dir", keys.to_str().expect("utf-8")],
            "sluice project create",
        ),
    ] {
        let out = sluice_on_aws(&args, &closed, &dir);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "error: {what} failed: cannot reach {closed} (table `t1`); check AWS_REGION, AWS_ENDPOINT_URL if you \
             set one, and your network\n"
        );
        assert_eq!(stderr, expected, "one clear line");
    }
}

/// `sluice dev` with its output read line by line as it comes.
fn dev_streaming(args: &[&str]) -> (Dev, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dev")
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice dev");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (Dev(child), received)
}

/// Reads lines until one contains `needle` (within 10 s); what was read.
fn read_until(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = String::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        read.push_str(&line);
        read.push('\n');
        if line.contains(needle) {
            return read;
        }
    }
    panic!("no line with `{needle}` within 10 s; read:\n{read}");
}

#[test]
fn dev_redeploys_its_folder_on_change_and_sluice_deploy_goes_through_the_api() {
    let data = temp_dir("watch-data");
    let project = temp_dir("watch-project");
    let ping = |v: u32| {
        format!("id: ping\ntrigger: {{ type: request }}\nsteps: [{{ id: r, type: response, body: {{ v: {v} }} }}]\n")
    };
    std::fs::write(project.join("ping.yaml"), ping(1)).expect("write");
    let port = free_non_default_port();
    let (data_arg, project_arg) = (data.to_str().expect("utf-8"), project.to_str().expect("utf-8"));
    let (_dev, lines) = dev_streaming(&["--port", &port.to_string(), "--data-dir", data_arg, "--project", project_arg]);
    let printed = read_until(&lines, "/executions/EXECUTION_ID");
    assert!(printed.contains("deployed ping") && printed.contains("new v1"), "{printed}");
    assert!(printed.contains("watching"), "{printed}");
    let user = token(data_arg, "u1");
    let answer = |expected: u32| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = trigger(port, "ping", &user, "{}");
            if status == 200 && json(&body)["v"] == expected {
                return;
            }
            assert!(Instant::now() < deadline, "ping still answers {body}, not v {expected}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    answer(1);

    let changed_at = Instant::now();
    std::fs::write(project.join("ping.yaml"), ping(2)).expect("write");
    let printed = read_until(&lines, "redeployed ping");
    assert!(printed.contains("changed v1→v2"), "{printed}");
    answer(2);
    assert!(changed_at.elapsed() < Duration::from_secs(3), "redeployed in {:?}", changed_at.elapsed());
    // Redeploying reads the files: that is not a change, and nothing is redeployed again.
    let quiet_until = Instant::now() + Duration::from_millis(1000);
    while let Ok(line) = lines.recv_timeout(quiet_until.saturating_duration_since(Instant::now())) {
        assert!(!line.contains("changed"), "redeployed again without a change: {line}");
    }

    // A file with a problem: reported, and the live versions kept.
    std::fs::write(project.join("bad.yaml"), "id: bad\ntrigger: { type: request }\nsteps: [{ id: r, type: nope }]\n")
        .expect("write");
    let printed = read_until(&lines, "not deployed, the live versions are kept");
    let printed = printed + &read_until(&lines, "bad.yaml");
    assert!(printed.contains("steps[0].type"), "{printed}");
    answer(2);
    std::fs::remove_file(project.join("bad.yaml")).expect("remove");
    std::fs::write(project.join("added.yaml"), ping(3).replace("id: ping", "id: added")).expect("write");
    let printed = read_until(&lines, "redeployed added");
    assert!(printed.contains("new v1"), "{printed}");

    // `sluice deploy --url` sends another folder through the API: lines and a summary.
    let other = temp_dir("watch-other");
    std::fs::write(other.join("ping.yaml"), ping(2)).expect("write");
    std::fs::write(other.join("fresh.yaml"), ping(4).replace("id: ping", "id: fresh")).expect("write");
    let dev_project = json(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"));
    let key = dev_project["apiKey"].as_str().expect("apiKey").to_string();
    let url = format!("http://127.0.0.1:{port}");
    let out = sluice(&["deploy", other.to_str().expect("utf-8"), "--url", &url, "--api-key", &key, "--project", "dev"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "ping",
        "unchanged v2",
        "fresh",
        "new v1",
        "added",
        "undeployed (was v1)",
        "1 new, 0 changed, 1 unchanged, 1 undeployed",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    let (status, _) = trigger(port, "added", &user, "{}");
    assert_eq!(status, 404, "undeployed by the remote deploy");

    // A wrong key, and a folder with a problem (listed before anything is sent).
    let out =
        sluice(&["deploy", other.to_str().expect("utf-8"), "--url", &url, "--api-key", "sk_wrong", "--project", "dev"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(other.join("bad.yaml"), "id: bad\ntrigger: { type: request }\nsteps: []\n").expect("write");
    let out = sluice(&["deploy", other.to_str().expect("utf-8"), "--url", &url, "--api-key", &key, "--project", "dev"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sluice_test_runs_with_the_request_captured_by_the_test_url() {
    let data = temp_dir("capture-data");
    let project = temp_dir("capture-project");
    let file = project.join("echo.yaml");
    std::fs::write(
        &file,
        "id: echo\ntrigger: { type: request }\nsteps: [{ id: reply, type: response, body: { note: \"{{trigger.body.note}}\", q: \"{{trigger.query.q}}\" } }]\n",
    )
    .expect("write");
    let port = free_non_default_port();
    let data_arg = data.to_str().expect("utf-8");
    let (_dev, _) = start_dev(&[
        "--port",
        &port.to_string(),
        "--data-dir",
        data_arg,
        "--project",
        project.to_str().expect("utf-8"),
    ]);
    let dev_project = json(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"));
    let key = format!("Bearer {}", dev_project["apiKey"].as_str().expect("apiKey"));
    let (status, armed) =
        http(port, "POST", "/projects/dev/workflows/echo/test-request", &[("authorization", &key)], "").expect("arm");
    assert_eq!(status, 200, "{armed}");
    let url = json(&armed)["url"].as_str().expect("url").to_string();
    let path = url.split_once(&format!("127.0.0.1:{port}")).map(|(_, path)| path.to_string()).expect("a local URL");
    let (status, body) = http(
        port,
        "POST",
        &format!("{path}?q=from-the-app"),
        &[("content-type", "application/json")],
        r#"{"note":"captured"}"#,
    )
    .expect("capture");
    assert_eq!(status, 200, "{body}");
    let out = sluice(&["test", file.to_str().expect("utf-8"), "--data-dir", data_arg]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("\"captured\"") && printed.contains("from-the-app"), "{printed}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("using the test request captured at"));
}
