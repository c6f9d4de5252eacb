//! An in-memory [`FileStore`] for tests: files keyed by (execution, id), so that a file object
//! read from another execution is not found, as the port requires.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::ports::{FileStore, MAX_FILE_BYTES, StoreError};
use crate::record::FileObject;

#[derive(Debug, Default)]
pub(crate) struct MemoryFiles {
    files: Mutex<HashMap<(String, String), Bytes>>,
}

impl MemoryFiles {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many files are stored.
    pub(crate) fn len(&self) -> usize {
        self.files.lock().map_or(0, |files| files.len())
    }
}

#[async_trait]
impl FileStore for MemoryFiles {
    async fn put_file(
        &self,
        execution_id: &str,
        name: &str,
        mime_type: &str,
        bytes: Bytes,
    ) -> Result<FileObject, StoreError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge(format!("{} bytes", bytes.len())));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let file = FileObject {
            name: name.to_string(),
            mime_type: mime_type.to_string(),
            size: bytes.len() as u64,
            data: format!("{}{id}", FileObject::DATA_PREFIX),
        };
        let mut files = self.files.lock().map_err(|_| StoreError::Backend("poisoned".into()))?;
        files.insert((execution_id.to_string(), id), bytes);
        Ok(file)
    }

    async fn get_file(&self, execution_id: &str, file: &FileObject) -> Result<Option<Bytes>, StoreError> {
        let Some(id) = file.id() else { return Ok(None) };
        let files = self.files.lock().map_err(|_| StoreError::Backend("poisoned".into()))?;
        Ok(files.get(&(execution_id.to_string(), id.to_string())).cloned())
    }
}
