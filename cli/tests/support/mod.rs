//! Helpers for the tests that run the `sluice` binary as a process: temporary folders, free
//! ports, `sluice dev` as a child process killed when dropped, and a minimal HTTP client.
// Each test file uses only some of them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `sluice ARGS` to completion.
pub fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().expect("run sluice")
}

/// An empty folder of its own for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A free local port (released before `sluice dev` binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `sluice dev` as a child process, killed when dropped.
pub struct Dev(pub std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_dev(args: &[&str]) -> (Dev, String) {
    start_dev_logging_to(args, Stdio::inherit())
}

/// Starts `sluice dev` (the default log filter, whatever RUST_LOG the tests run with) and
/// returns once it has printed everything, with what it printed.
pub fn start_dev_logging_to(args: &[&str], stderr: Stdio) -> (Dev, String) {
    start_dev_with_env(args, stderr, &[])
}

/// [`start_dev_logging_to`] with these environment variables set for `sluice dev`.
pub fn start_dev_with_env(args: &[&str], stderr: Stdio, vars: &[(&str, &str)]) -> (Dev, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dev")
        .args(args)
        .envs(vars.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr)
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

/// One HTTP/1.0 request to `127.0.0.1:port` (the answer is read until the server closes the
/// connection): its status and body, or None when the connection is refused or broken.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nhost: 127.0.0.1:{port}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A POST of a JSON body to a trigger of the dev project with a user token.
pub fn trigger(port: u16, workflow: &str, token: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    http(port, "POST", &format!("/projects/dev/sdk/triggers/{workflow}"), &headers, body).expect("trigger request")
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A user token made by `sluice token` for the project of `data_dir`.
pub fn token(data_dir: &str, user: &str) -> String {
    let out = sluice(&["token", "--user", user, "--data-dir", data_dir]);
    assert!(out.status.success(), "sluice token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
