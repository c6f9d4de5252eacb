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

#[tokio::test]
async fn lodash_is_there_under_both_names() {
    let code = "(p, { lodash, _ }) => ({ same: lodash === _, sum: _.sumBy(p.rows, 'n'), groups: _.groupBy(p.rows, 'k'), chunks: _.chunk([1, 2, 3], 2), version: _.VERSION })";
    let rows = json!([{ "k": "a", "n": 1 }, { "k": "b", "n": 2 }, { "k": "a", "n": 4 }]);
    let run = call(code, json!({ "rows": rows })).await.expect("runs");
    assert_eq!(
        run.output,
        json!({
            "same": true,
            "sum": 7,
            "groups": { "a": [{ "k": "a", "n": 1 }, { "k": "a", "n": 4 }], "b": [{ "k": "b", "n": 2 }] },
            "chunks": [[1, 2], [3]],
            "version": "4.17.21",
        })
    );
}

#[tokio::test]
async fn date_fns_formats_and_does_arithmetic() {
    let code = "(p, { dateFns }) => { const d = dateFns.parseISO(p.at); return { plus: dateFns.formatISO(dateFns.addDays(d, 30), { representation: 'date' }), diff: dateFns.differenceInCalendarDays(dateFns.parseISO('2026-03-01'), d), valid: dateFns.isValid(d), fmt: dateFns.format(d, 'yyyy/MM/dd') } }";
    let run = call(code, json!({ "at": "2026-02-15T10:00:00" })).await.expect("runs");
    assert_eq!(run.output, json!({ "plus": "2026-03-17", "diff": 14, "valid": true, "fmt": "2026/02/15" }));
}

#[tokio::test]
async fn uuid_makes_distinct_v4_ids_from_the_system_generator() {
    let code = "(p, { uuid }) => { const ids = Array.from({ length: 200 }, () => uuid.v4()); return { distinct: new Set(ids).size, valid: ids.every(id => uuid.validate(id) && uuid.version(id) === 4), v5: uuid.v5('hello', uuid.v5.DNS) } }";
    let run = call(code, json!({})).await.expect("runs");
    assert_eq!(run.output["distinct"], json!(200));
    assert_eq!(run.output["valid"], json!(true));
    // RFC 4122 v5 is deterministic: the same name in the same namespace gives the same id.
    assert_eq!(run.output["v5"], json!("9342d47a-1bab-5709-9869-c840b2eac501"));
    let first = call("(p, { uuid }) => uuid.v4()", json!({})).await.expect("runs").output;
    let second = call("(p, { uuid }) => uuid.v4()", json!({})).await.expect("runs").output;
    assert_ne!(first, second, "every run draws fresh randomness");
}

#[tokio::test]
async fn libraries_are_frozen_per_run_and_the_loader_is_hidden() {
    let code = "(p, libraries) => { libraries._.map = () => 'patched'; libraries.extra = 1; return { keys: Object.keys(libraries), extra: libraries.extra ?? null, loader: typeof __librarySource, random: typeof __randomBytes, crypto: typeof crypto } }";
    let run = call(code, json!({})).await.expect("runs");
    assert_eq!(
        run.output,
        json!({ "keys": ["lodash", "_", "dateFns", "uuid"], "extra": null, "loader": "undefined", "random": "undefined", "crypto": "undefined" })
    );
    let run = call("(p, { _ }) => _.map([1, 2], x => x * 2)", json!({})).await.expect("runs");
    assert_eq!(run.output, json!([2, 4]), "a patch in one run does not reach the next");
}

#[tokio::test]
async fn the_documented_libraries_example_runs() {
    let code = "({ start, weeks }, { dateFns, uuid, _ }) =>\n  _.range(weeks).map((week) => ({\n    id: uuid.v4(),\n    due: dateFns.formatISO(dateFns.addWeeks(dateFns.parseISO(start), week), { representation: \"date\" }),\n  }))";
    let reference = include_str!("../../../../docs/workflow-format.md");
    let indented: String = code.lines().map(|line| format!("    {line}\n")).collect();
    assert!(reference.contains(&indented), "the example in docs/workflow-format.md changed: update this test");
    let run = call(code, json!({ "start": "2026-01-05", "weeks": 3 })).await.expect("runs");
    let dues: Vec<&Value> = run.output.as_array().expect("an array").iter().map(|week| &week["due"]).collect();
    assert_eq!(dues, [&json!("2026-01-05"), &json!("2026-01-12"), &json!("2026-01-19")]);
}

#[tokio::test]
async fn every_library_fits_in_the_smallest_memory_limit() {
    let code =
        "(p, { dateFns, _, uuid }) => [dateFns.addDays(new Date(0), 1).getTime(), _.VERSION, uuid.validate(uuid.v4())]";
    let run = run(code, json!({}), Duration::from_secs(5), MIN_MEMORY_MB).await.expect("the libraries fit");
    assert_eq!(run.output, json!([86_400_000, "4.17.21", true]));
    let failure = run_with_less_memory_than_allowed().await;
    assert!(failure.contains("memory limit of 8 MB"), "below the minimum is raised to it: {failure}");
}

async fn run_with_less_memory_than_allowed() -> String {
    let code = "() => { const keep = []; for (;;) keep.push(new Array(100000).fill(1)); }";
    message(run(code, json!({}), Duration::from_secs(5), 1).await)
}

#[tokio::test]
async fn throwing_null_is_reported_as_such() {
    let text = message(call("() => { throw null }", json!({})).await);
    assert!(text.contains("threw null"), "{text}");
}
