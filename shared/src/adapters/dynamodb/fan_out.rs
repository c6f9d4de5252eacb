//! Fan-out joins and step lookups by key (PLACEHOLDER: being written).

use async_trait::async_trait;
use serde_json::Value;

use super::DynamoStore;
use crate::ports::{FanOutStore, StoreError};
use crate::record::StepAttempt;

fn pending() -> StoreError {
    StoreError::Backend("fan-out storage is not implemented yet".into())
}

#[async_trait]
impl FanOutStore for DynamoStore {
    async fn latest_step(&self, _: &str, _: &str) -> Result<Option<StepAttempt>, StoreError> {
        Err(pending())
    }

    async fn put_fan_out_items(&self, _: &str, _: &str, _: &[Value]) -> Result<(), StoreError> {
        Err(pending())
    }

    async fn fan_out_item(&self, _: &str, _: &str, _: u32) -> Result<Option<Value>, StoreError> {
        Err(pending())
    }

    async fn complete_branch(&self, _: &str, _: &str, _: u32, _: &Value) -> Result<u32, StoreError> {
        Err(pending())
    }

    async fn branch_results(&self, _: &str, _: &str) -> Result<Vec<(u32, Value)>, StoreError> {
        Err(pending())
    }
}
