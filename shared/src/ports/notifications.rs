//! The port of failure notifications: the destinations a project registered (a webhook URL
//! each) that are told when one of its executions fails after its retries.
//!
//! Invariant: a destination's signing secret is stored sealed ([`crate::crypto::seal`] under
//! [`secret_context`]), never in plaintext; adapters store and return the sealed record as
//! they got it, and nothing but the delivery opens it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::Sealed;
use crate::record::Timestamp;

/// The most destinations one project may register.
pub const MAX_NOTIFICATION_DESTINATIONS: usize = 10;

/// One registered destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDestination {
    pub project_id: String,
    /// `[A-Za-z0-9_-]`, unique per project (a UUIDv7 without dashes: ids sort by creation).
    pub id: String,
    /// Where the notifications are POSTed (validated when registered).
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: Timestamp,
    /// The signing key (the bytes behind `whsec_…`), sealed under [`secret_context`].
    pub secret: Sealed,
}

/// The encryption context a destination's secret is sealed under: a sealed secret moved to
/// another destination does not open.
pub fn secret_context(project_id: &str, destination_id: &str) -> String {
    format!("project/{project_id}/notification-destination/{destination_id}")
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Registers `destination` unless its project has `max` destinations already: `false`,
    /// writing nothing, when it has (atomically: concurrent adds never exceed `max`).
    /// `AlreadyExists` if the project has a destination with its id.
    async fn add_destination(&self, destination: &NotificationDestination, max: usize) -> Result<bool, StoreError>;
    /// One destination of the project, if registered.
    async fn get_destination(
        &self,
        project_id: &str,
        destination_id: &str,
    ) -> Result<Option<NotificationDestination>, StoreError>;
    /// Every destination of the project, by id (which is creation order).
    async fn list_destinations(&self, project_id: &str) -> Result<Vec<NotificationDestination>, StoreError>;
    /// Removes the destination; whether there was one.
    async fn delete_destination(&self, project_id: &str, destination_id: &str) -> Result<bool, StoreError>;
}
