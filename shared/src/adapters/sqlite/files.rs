//! `FileStore` on SQLite: one row of the `files` table per file, bytes in a BLOB.
//!
//! Invariants: a row is keyed by (execution, file id), so a file is only ever read through
//! the execution it was stored for; ids are fresh v4 uuids and rows are never updated; no row
//! holds more than `MAX_FILE_BYTES` bytes, and a row whose blob length differs from its
//! recorded size is reported as corrupt rather than returned.

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};

use super::{Cached, Sqlite, backend};
use crate::adapters::{check_file_size, new_file_id, stored_file_id};
use crate::ports::{FileStore, StoreError};
use crate::record::FileObject;

#[async_trait]
impl FileStore for Sqlite {
    async fn put_file(
        &self,
        execution_id: &str,
        name: &str,
        mime_type: &str,
        bytes: Bytes,
    ) -> Result<FileObject, StoreError> {
        check_file_size(bytes.len())?;
        let id = new_file_id();
        let file = FileObject {
            name: name.to_string(),
            mime_type: mime_type.to_string(),
            size: bytes.len() as u64,
            data: format!("{}{id}", FileObject::DATA_PREFIX),
        };
        let (execution_id, row) = (execution_id.to_string(), file.clone());
        self.call(move |conn| {
            let size = i64::try_from(bytes.len()).map_err(|_| StoreError::TooLarge("file size".into()))?;
            conn.run(
                "INSERT INTO files (execution_id, id, name, mime_type, size, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![execution_id, id, row.name, row.mime_type, size, bytes.as_ref()],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(file)
    }

    async fn get_file(&self, execution_id: &str, file: &FileObject) -> Result<Option<Bytes>, StoreError> {
        let Some(id) = stored_file_id(file) else {
            return Ok(None);
        };
        let (execution_id, id) = (execution_id.to_string(), id.to_string());
        self.call(move |conn| {
            let row: Option<(i64, Vec<u8>)> = conn
                .row(
                    "SELECT size, bytes FROM files WHERE execution_id = ?1 AND id = ?2",
                    params![execution_id, id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((size, bytes)) = row else {
                return Ok(None);
            };
            if usize::try_from(size).ok() != Some(bytes.len()) {
                return Err(StoreError::Corrupt(format!("file {id} records {size} bytes but holds {}", bytes.len())));
            }
            Ok(Some(Bytes::from(bytes)))
        })
        .await
    }
}
