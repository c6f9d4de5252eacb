//! `FileStore` on DynamoDB: a file is chunk items plus one manifest item, all in its
//! execution's partition `EXEC#<executionId>` (see `infra/dynamodb.md`).
//!
//! Invariants: chunks (`FILE#<fileId>#<chunk:04>`, at most [`CHUNK_BYTES`] bytes each in a
//! binary `data` attribute, so every item stays far below the 400 KB limit) are all written
//! before the manifest (`FILE#<fileId>`), and a file exists only once its manifest does: a put
//! that fails half-way leaves invisible chunks, never a readable partial file. Every item is
//! created once (`attribute_not_exists(pk)`) under a fresh v4 uuid and never updated. A read
//! returns bytes only if the chunks are exactly `0..chunks` and add up to the manifest's size.

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use tokio::task::JoinSet;

use super::{DynamoStore, Item, TTL_ATTRIBUTE, backend, execution_pk, get_n, n, s};
use crate::adapters::{check_file_size, new_file_id, stored_file_id};
use crate::ports::{FileStore, MAX_FILE_BYTES, StoreError};
use crate::record::FileObject;

/// The most bytes one chunk item holds: 300 KiB of data plus keys and attribute names stays
/// well under DynamoDB's 400 KB per item. A file of `MAX_FILE_BYTES` (5 MiB) has 18 chunks.
pub(super) const CHUNK_BYTES: usize = 300 * 1024;

/// Chunk numbers are 4 digits, so string order is numeric order up to this many chunks.
const MAX_CHUNKS: u64 = 10_000;

fn manifest_sk(file_id: &str) -> String {
    format!("FILE#{file_id}")
}

/// The prefix of the file's chunk keys; the `#` after the id keeps the manifest (and any
/// other file) out of a `begins_with` on it.
fn chunk_prefix(file_id: &str) -> String {
    format!("FILE#{file_id}#")
}

fn chunk_sk(file_id: &str, chunk: usize) -> String {
    format!("{}{chunk:04}", chunk_prefix(file_id))
}

fn item(attributes: Vec<(&str, AttributeValue)>) -> Item {
    attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

impl DynamoStore {
    /// Writes the chunk items of a file concurrently; fails (leaving any written chunks
    /// invisible, as no manifest names them) if any write fails.
    async fn put_chunks(&self, execution_id: &str, file_id: &str, bytes: &Bytes) -> Result<usize, StoreError> {
        let mut writes = JoinSet::new();
        let mut count = 0;
        for start in (0..bytes.len()).step_by(CHUNK_BYTES) {
            let data = bytes.slice(start..(start + CHUNK_BYTES).min(bytes.len()));
            let chunk = item(vec![
                ("pk", s(execution_pk(execution_id))),
                ("sk", s(chunk_sk(file_id, count))),
                ("file_id", s(file_id)),
                ("chunk", n(count)),
                ("data", AttributeValue::B(Blob::new(data.to_vec()))),
                // A chunk no manifest names (its put failed half-way) is collected by the TTL.
                (TTL_ATTRIBUTE, self.expiry(None)),
            ]);
            let store = self.clone();
            writes.spawn(async move { store.put_new(chunk).await });
            count += 1;
        }
        while let Some(written) = writes.join_next().await {
            let written = written.map_err(|e| StoreError::Backend(format!("file chunk write task failed: {e}")))?;
            if !written? {
                // A fresh v4 uuid is never taken; refuse rather than mix two files' bytes.
                return Err(StoreError::Backend(format!("a chunk of file {file_id} already exists")));
            }
        }
        Ok(count)
    }

    /// The bytes of the `chunks` chunk items of a file, in order, paging through the query.
    async fn read_chunks(&self, execution_id: &str, file_id: &str, chunks: u64) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        let mut next: u64 = 0;
        let mut start: Option<Item> = None;
        loop {
            // A query page stops at 1 MB: about three chunks per page.
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(execution_pk(execution_id)))
                .expression_attribute_values(":prefix", s(chunk_prefix(file_id)))
                .projection_expression("#chunk, #data")
                .expression_attribute_names("#chunk", "chunk")
                .expression_attribute_names("#data", "data")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for mut chunk in page.items.unwrap_or_default() {
                let index: u64 = get_n(&chunk, "chunk")?;
                if index != next {
                    return Err(StoreError::Corrupt(format!(
                        "file {file_id}: chunk {index} where {next} was expected"
                    )));
                }
                match chunk.remove("data") {
                    Some(AttributeValue::B(blob)) => bytes.extend_from_slice(blob.as_ref()),
                    _ => return Err(StoreError::Corrupt(format!("file {file_id}: chunk {index} has no binary data"))),
                }
                if bytes.len() > MAX_FILE_BYTES {
                    return Err(StoreError::Corrupt(format!("file {file_id}: chunks exceed {MAX_FILE_BYTES} bytes")));
                }
                next += 1;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        if next != chunks {
            return Err(StoreError::Corrupt(format!("file {file_id}: {next} chunks found, {chunks} recorded")));
        }
        Ok(bytes)
    }
}

#[async_trait]
impl FileStore for DynamoStore {
    async fn put_file(
        &self,
        execution_id: &str,
        name: &str,
        mime_type: &str,
        bytes: Bytes,
    ) -> Result<FileObject, StoreError> {
        check_file_size(bytes.len())?;
        let file_id = new_file_id();
        let chunks = self.put_chunks(execution_id, &file_id, &bytes).await?;
        let manifest = item(vec![
            ("pk", s(execution_pk(execution_id))),
            ("sk", s(manifest_sk(&file_id))),
            ("file_id", s(&file_id)),
            ("name", s(name)),
            ("mime_type", s(mime_type)),
            ("size", n(bytes.len())),
            ("chunks", n(chunks)),
            (TTL_ATTRIBUTE, self.expiry(None)),
        ]);
        if !self.put_new(manifest).await? {
            return Err(StoreError::Backend(format!("file {file_id} already exists")));
        }
        Ok(FileObject {
            name: name.to_string(),
            mime_type: mime_type.to_string(),
            size: bytes.len() as u64,
            data: format!("{}{file_id}", FileObject::DATA_PREFIX),
        })
    }

    async fn get_file(&self, execution_id: &str, file: &FileObject) -> Result<Option<Bytes>, StoreError> {
        let Some(file_id) = stored_file_id(file) else {
            return Ok(None);
        };
        let Some(manifest) = self.get(execution_pk(execution_id), &manifest_sk(file_id)).await? else {
            return Ok(None);
        };
        let size: u64 = get_n(&manifest, "size")?;
        let chunks: u64 = get_n(&manifest, "chunks")?;
        if size > MAX_FILE_BYTES as u64 || chunks > MAX_CHUNKS {
            return Err(StoreError::Corrupt(format!(
                "file {file_id}: {size} bytes in {chunks} chunks is out of range"
            )));
        }
        let bytes = self.read_chunks(execution_id, file_id, chunks).await?;
        if bytes.len() as u64 != size {
            return Err(StoreError::Corrupt(format!("file {file_id}: {} bytes found, {size} recorded", bytes.len())));
        }
        Ok(Some(Bytes::from(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_order_numerically_and_exclude_the_manifest() {
        let id = "0b0e6f0e-8d39-4c1c-9a53-6f0b2f4c1e11";
        assert!(chunk_sk(id, 9) < chunk_sk(id, 10));
        assert_eq!(chunk_sk(id, 3), format!("FILE#{id}#0003"));
        assert!(chunk_sk(id, 0).starts_with(&chunk_prefix(id)));
        assert!(!manifest_sk(id).starts_with(&chunk_prefix(id)));
        assert_eq!(MAX_FILE_BYTES.div_ceil(CHUNK_BYTES), 18);
    }

    #[test]
    fn a_full_chunk_item_fits_in_400_kb() {
        let keys = "pk".len() + "EXEC#".len() + 64 + "sk".len() + chunk_sk(&new_file_id(), 9999).len();
        let attributes = "file_id".len() + 36 + "chunk".len() + 21 + "data".len();
        assert!(CHUNK_BYTES + keys + attributes < 400 * 1024);
    }
}
