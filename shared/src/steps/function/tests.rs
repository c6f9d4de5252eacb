use serde_json::json;

use super::*;

async fn call(code: &str, parameters: Value) -> Result<FunctionRun, FunctionFailure> {
    run(code, parameters, Duration::from_secs(5), 64).await
}

fn message(result: Result<FunctionRun, FunctionFailure>) -> String {
    let failure = result.expect_err("the function should fail");
    assert!(!failure.error.retryable, "function failures are terminal");
    failure.error.message
}

#[tokio::test]
async fn returns_every_json_type_and_undefined_as_null() {
    for (code, expected) in [
        ("() => 1.5", json!(1.5)),
        ("() => 'text'", json!("text")),
        ("() => [1, { a: true }]", json!([1, { "a": true }])),
        ("() => null", json!(null)),
        ("() => undefined", json!(null)),
        ("function () { return { n: NaN } }", json!({ "n": null })),
    ] {
        assert_eq!(call(code, json!({})).await.expect(code).output, expected, "{code}");
    }
}

#[tokio::test]
async fn parameters_arrive_and_async_functions_are_awaited() {
    let run = call("async function (p, libraries) { await null; return p.a + p.b; }", json!({ "a": 2, "b": 3 }))
        .await
        .expect("runs");
    assert_eq!(run.output, json!(5));
    let run = call("function named(p) { return Promise.resolve(p.items.length) }", json!({ "items": [1, 2] }))
        .await
        .expect("runs");
    assert_eq!(run.output, json!(2));
}

#[tokio::test]
async fn console_output_is_captured_in_order() {
    let run = call("(p) => { console.log('a', 1, { b: 2 }); console.error('oops'); return 0 }", json!({}))
        .await
        .expect("runs");
    assert_eq!(run.logs, ["a 1 {\"b\":2}", "oops"]);
    let run = call("() => { for (let i = 0; i < 5000; i++) console.log(i); return 0 }", json!({})).await.expect("runs");
    assert_eq!(run.logs.len(), 1001);
    assert!(run.logs[1000].contains("4000 more console lines were dropped"), "{}", run.logs[1000]);
}

#[tokio::test]
async fn thrown_errors_carry_message_and_line() {
    let text = message(call("function (p) {\n  const x = 1;\n  throw new TypeError('bad ' + x);\n}", json!({})).await);
    assert!(text.starts_with("TypeError: bad 1"), "{text}");
    assert!(text.contains("(line 3)"), "{text}");
    let text = message(call("function (p) {\n  return p..x\n}", json!({})).await);
    assert!(text.starts_with("SyntaxError"), "{text}");
    let text = message(call("42", json!({})).await);
    assert!(text.contains("must be a function"), "{text}");
}

#[tokio::test]
async fn sandbox_escapes_are_refused() {
    for code in [
        "() => require('fs').readFileSync('/etc/passwd', 'utf8')",
        "() => fetch('http://169.254.169.254/')",
        "() => process.env",
        "() => std.loadFile('/etc/passwd')",
        "() => os.exec(['ls'])",
        "() => setTimeout(() => {}, 1)",
    ] {
        let text = message(call(code, json!({})).await);
        assert!(text.starts_with("ReferenceError"), "{code}: {text}");
    }
    let text = message(call("async () => await import('os')", json!({})).await);
    assert!(text.contains("Error"), "{text}");
}

#[tokio::test]
async fn an_infinite_loop_stops_at_the_time_limit() {
    let begun = Instant::now();
    let result = run("() => { while (true) {} }", json!({}), Duration::from_millis(200), 64).await;
    assert_eq!(message(result), "the function ran longer than its time limit of 200ms");
    assert!(begun.elapsed() < Duration::from_secs(3));
    let caught = run(
        "() => { try { while (true) {} } catch (e) { return 'escaped' } }",
        json!({}),
        Duration::from_millis(200),
        64,
    )
    .await;
    assert_eq!(message(caught), "the function ran longer than its time limit of 200ms");
}

#[tokio::test]
async fn a_memory_bomb_stops_at_the_memory_limit_even_when_caught() {
    let bomb = "() => { const chunks = []; while (true) chunks.push('x'.repeat(1 << 20) + chunks.length); }";
    assert_eq!(
        message(run(bomb, json!({}), Duration::from_secs(10), 16).await),
        "the function used more than its memory limit of 16 MB"
    );
    let caught =
        "() => { const a = []; try { while (true) a.push(new Array(100000).fill(1)); } catch (e) { throw e } }";
    assert_eq!(
        message(run(caught, json!({}), Duration::from_secs(10), 16).await),
        "the function used more than its memory limit of 16 MB"
    );
}

#[tokio::test]
async fn deep_recursion_fails_cleanly() {
    let text = message(call("() => { const f = (n) => f(n + 1) + 1; return f(0) }", json!({})).await);
    assert!(text.contains("stack overflow") || text.contains("RangeError"), "{text}");
}
