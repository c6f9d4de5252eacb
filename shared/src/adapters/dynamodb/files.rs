//! Files of executions (PLACEHOLDER: being written).

use async_trait::async_trait;
use bytes::Bytes;

use super::DynamoStore;
use crate::ports::{FileStore, StoreError};
use crate::record::FileObject;

#[async_trait]
impl FileStore for DynamoStore {
    async fn put_file(&self, _: &str, _: &str, _: &str, _: Bytes) -> Result<FileObject, StoreError> {
        Err(StoreError::Backend("files are not implemented yet".into()))
    }

    async fn get_file(&self, _: &str, _: &FileObject) -> Result<Option<Bytes>, StoreError> {
        Err(StoreError::Backend("files are not implemented yet".into()))
    }
}
