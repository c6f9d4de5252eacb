//! Helpers for the end-to-end tests: the local stack started in-process on a free port over
//! either backend, a fake third-party API, and an HTTP client speaking the Sluice API.

pub mod chaos;
pub mod cost;
pub mod counting;
pub mod duplicating;
pub mod fake_api;
pub mod otlp;
pub mod providers;
pub mod record;
pub mod rie;
pub mod stack;

/// Runs each `scenario: response_timeout;` twice: on SQLite, and on DynamoDB + SQS served by
/// the local AWS-API server (skipped when `SLUICE_AWS_ENDPOINT` is unset, unless
/// `SLUICE_REQUIRE_AWS=1`). A scenario is `async fn(&TestStack)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident: $timeout:expr;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let stack = TestStack::start(Backend::Sqlite, $timeout).await.expect("SQLite stack");
                    super::$scenario(&stack).await;
                }
            )*
        }
        mod aws {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(stack) = TestStack::start(Backend::Aws, $timeout).await {
                        super::$scenario(&stack).await;
                    }
                }
            )*
        }
    };
}
