//! Everything a handler needs, built once per process (Lambda cold start or `sluice dev`).

use std::{sync::Arc, time::Duration};

use crate::net::HttpClient;
use crate::ports::{Queue, Store};

/// The default time a synchronous caller waits for a Response step.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(55);
/// The largest trigger request body accepted (DynamoDB items are at most 400 KB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a synchronous caller waits before getting 542.
    pub response_timeout: Duration,
    /// How often the trigger handler looks for a settled response while it waits.
    pub poll_interval: Duration,
    /// Trigger request bodies larger than this get 413.
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            poll_interval: Duration::from_millis(50),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The ports and clients, shared by every handler.
#[derive(Clone)]
pub struct Runtime {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub http: HttpClient,
    pub settings: Settings,
}
