//! Adapters for the ports: SQLite (embedded, `sqlite` feature) and DynamoDB + SQS (`aws`).
//!
//! Invariant: every adapter passes the same `crate::conformance` suites; where a backend
//! cannot behave exactly like the others, the difference is written down in that suite.

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;

#[cfg(any(feature = "sqlite", feature = "aws"))]
use crate::{ports::MAX_FILE_BYTES, ports::StoreError, record::FileObject};

/// A fresh file id: a v4 uuid, hyphenated lower case (the only form [`stored_file_id`] accepts).
#[cfg(any(feature = "sqlite", feature = "aws"))]
fn new_file_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// The id of `file` if it can name a stored file: `data` is `sluice-file:<id>` and the id is in
/// the exact form [`new_file_id`] makes. Anything else (forged, foreign or not a reference) is
/// None, so it never reaches a key or a query (on DynamoDB a `#` could name a chunk item).
#[cfg(any(feature = "sqlite", feature = "aws"))]
fn stored_file_id(file: &FileObject) -> Option<&str> {
    let id = file.id()?;
    let parsed = uuid::Uuid::try_parse(id).ok()?;
    (parsed.hyphenated().to_string() == id).then_some(id)
}

/// `TooLarge` for a file over [`MAX_FILE_BYTES`].
#[cfg(any(feature = "sqlite", feature = "aws"))]
fn check_file_size(len: usize) -> Result<(), StoreError> {
    if len > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge(format!("a file of {len} bytes is over the {MAX_FILE_BYTES}-byte limit")));
    }
    Ok(())
}

#[cfg(all(test, any(feature = "sqlite", feature = "aws")))]
mod tests {
    use super::*;

    fn file(data: &str) -> FileObject {
        FileObject { name: "a.bin".into(), mime_type: "application/octet-stream".into(), size: 1, data: data.into() }
    }

    #[test]
    fn only_canonical_file_ids_are_accepted() {
        let id = new_file_id();
        assert_eq!(stored_file_id(&file(&format!("sluice-file:{id}"))), Some(id.as_str()));
        assert_eq!(stored_file_id(&file(&id)), None, "no prefix");
        assert_eq!(stored_file_id(&file(&format!("sluice-file:{}", id.to_uppercase()))), None);
        assert_eq!(stored_file_id(&file(&format!("sluice-file:{}", id.replace('-', "")))), None);
        assert_eq!(stored_file_id(&file(&format!("sluice-file:{id}#0000"))), None);
        assert_eq!(stored_file_id(&file("sluice-file:")), None);
    }

    #[test]
    fn files_over_the_limit_are_too_large() {
        assert!(check_file_size(MAX_FILE_BYTES).is_ok());
        assert!(matches!(check_file_size(MAX_FILE_BYTES + 1), Err(StoreError::TooLarge(_))));
    }
}
