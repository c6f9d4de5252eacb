//! The Delay step: works out when the wait ends. It does not wait itself: the due time goes
//! to the engine as a typed signal (and into the output as `{ "waitedUntil": ... }`), and the
//! interpreter carries the wait through queue delays (re-sent past the 15-minute maximum).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::condition::time::parse_timestamp;
use crate::model::DelayStep;
use crate::record::{StepError, format_timestamp, now};
use crate::template;

/// The longest wait a Delay step may ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);

/// When the wait ends, and the step's output saying so.
pub(super) struct Until {
    pub waited_until: DateTime<Utc>,
    pub output: Value,
}

/// Works out the end of the wait; a test run (`skip`) does not wait: the wait ends now.
pub(super) fn run(step: &DelayStep, ctx: &Value, skip: bool) -> (Value, Result<Until, StepError>) {
    let started = now();
    let until = match (&step.duration, &step.until) {
        (Some(duration), None) => (json!({ "for": duration.to_string() }), wait_for(started, duration.duration())),
        (None, Some(until)) => match template::render(until, ctx) {
            Ok(rendered) => {
                let until = parse_timestamp(&rendered).ok_or_else(|| {
                    StepError::terminal(format!("`until` is not a timestamp (ISO 8601 or epoch): {rendered}"))
                });
                (json!({ "until": rendered }), until)
            }
            Err(error) => (Value::Null, Err(StepError::terminal(error.to_string()))),
        },
        _ => (Value::Null, Err(StepError::terminal("a Delay step needs exactly one of `for` and `until`"))),
    };
    let (input, until) = until;
    let result = until.and_then(|until| {
        let limit = started + chrono::Duration::from_std(MAX_DELAY).unwrap_or(chrono::Duration::MAX);
        if until > limit {
            return Err(StepError::terminal(format!(
                "`until` {} is more than 366 days away",
                format_timestamp(&until)
            )));
        }
        if skip {
            let output = json!({ "waitedUntil": format_timestamp(&started), "skipped": "test runs do not wait" });
            return Ok(Until { waited_until: started, output });
        }
        let waited_until = until.max(started);
        Ok(Until { waited_until, output: json!({ "waitedUntil": format_timestamp(&waited_until) }) })
    });
    (input, result)
}

fn wait_for(from: DateTime<Utc>, duration: Duration) -> Result<DateTime<Utc>, StepError> {
    if duration > MAX_DELAY {
        return Err(StepError::terminal("`for` is longer than the 366 days a Delay step may wait"));
    }
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| from.checked_add_signed(d))
        .ok_or_else(|| StepError::terminal("`for` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(value: Value) -> DelayStep {
        serde_json::from_value(value).expect("delay step")
    }

    fn waited_until(output: &Result<Until, StepError>) -> DateTime<Utc> {
        let until = output.as_ref().expect("succeeded");
        assert_eq!(parse_timestamp(&until.output["waitedUntil"]), Some(until.waited_until));
        until.waited_until
    }

    #[test]
    fn for_waits_that_long_from_now() {
        let before = now();
        let (_, output) = run(&delay(json!({ "for": "90s" })), &json!({}), false);
        let until = waited_until(&output);
        assert!(until >= before + chrono::Duration::seconds(90) && until <= now() + chrono::Duration::seconds(90));
    }

    #[test]
    fn until_takes_a_templated_timestamp_and_a_past_one_means_now() {
        let ctx = json!({ "trigger": { "body": { "at": "2099-01-02T03:04:05Z" } } });
        let (input, output) = run(&delay(json!({ "until": "{{trigger.body.at}}" })), &ctx, false);
        assert_eq!(input["until"], "2099-01-02T03:04:05Z");
        assert!(output.is_err(), "2099 is more than 366 days away");
        let soon = format_timestamp(&(now() + chrono::Duration::days(2)));
        assert!(run(&delay(json!({ "until": soon })), &json!({}), false).1.is_ok());
        let before = now();
        let past = run(&delay(json!({ "until": "2020-01-01T00:00:00Z" })), &json!({}), false).1;
        assert!(waited_until(&past) >= before);
    }

    #[test]
    fn a_test_run_does_not_wait() {
        let before = now();
        let (_, output) = run(&delay(json!({ "for": "30d" })), &json!({}), true);
        assert!(waited_until(&output) <= now() && waited_until(&output) >= before);
    }

    #[test]
    fn bad_waits_fail_terminally() {
        for step in [json!({ "until": "tomorrow" }), json!({ "for": "400d" }), json!({})] {
            let (_, output) = run(&delay(step.clone()), &json!({}), false);
            assert!(output.is_err_and(|e| !e.retryable), "{step}");
        }
    }
}
