//! Adapters for the ports: SQLite (embedded, `sqlite` feature) and DynamoDB + SQS, KMS and
//! EventBridge (`aws`).
//!
//! Invariant: every adapter passes the same `crate::conformance` suites; where a backend
//! cannot behave exactly like the others, the difference is written down in that suite.

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod eventbridge;
#[cfg(feature = "aws")]
pub mod kms;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;

#[cfg(any(feature = "sqlite", feature = "aws"))]
use crate::{ports::MAX_FAN_OUT_ITEMS, ports::MAX_FILE_BYTES, ports::StoreError, record::FileObject};

/// The largest fan-out item or branch result (its JSON text) the adapters store: with its keys
/// it stays under DynamoDB's 400 KB per item, and it is the limit of a step record. Larger
/// values are `StoreError::TooLarge` on every adapter.
pub const MAX_FAN_OUT_VALUE_BYTES: usize = 350 * 1024;

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

/// The JSON text of a fan-out item or branch result (`what`), or `TooLarge` over
/// [`MAX_FAN_OUT_VALUE_BYTES`].
#[cfg(any(feature = "sqlite", feature = "aws"))]
fn fan_out_value_json(what: &str, value: &serde_json::Value) -> Result<String, StoreError> {
    let text =
        serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode {what} as JSON: {e}")))?;
    if text.len() > MAX_FAN_OUT_VALUE_BYTES {
        return Err(StoreError::TooLarge(format!(
            "{what} of {} bytes is over the {MAX_FAN_OUT_VALUE_BYTES}-byte limit",
            text.len()
        )));
    }
    Ok(text)
}

/// `TooLarge` for a fan-out of more than [`MAX_FAN_OUT_ITEMS`] items.
#[cfg(any(feature = "sqlite", feature = "aws"))]
fn check_fan_out_len(len: usize) -> Result<(), StoreError> {
    if len > MAX_FAN_OUT_ITEMS {
        return Err(StoreError::TooLarge(format!(
            "a fan-out of {len} items is over the {MAX_FAN_OUT_ITEMS}-item limit"
        )));
    }
    Ok(())
}

/// `TooLarge` for a branch index no fan-out can have (one of at most [`MAX_FAN_OUT_ITEMS`]).
#[cfg(any(feature = "sqlite", feature = "aws"))]
fn check_branch_index(index: u32, total: u32) -> Result<(), StoreError> {
    if usize::try_from(total).map_or(true, |t| t > MAX_FAN_OUT_ITEMS) {
        return Err(StoreError::TooLarge(format!(
            "a fan-out of {total} branches is beyond the {MAX_FAN_OUT_ITEMS}-item limit"
        )));
    }
    if index >= total {
        return Err(StoreError::TooLarge(format!("branch {index} is beyond the {total} branches of its fan-out")));
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

    #[test]
    fn fan_out_values_and_counts_over_the_limit_are_too_large() {
        // A JSON string costs its length plus two quotes.
        let fits = serde_json::Value::String("x".repeat(MAX_FAN_OUT_VALUE_BYTES - 2));
        assert_eq!(fan_out_value_json("a result", &fits).map(|t| t.len()).ok(), Some(MAX_FAN_OUT_VALUE_BYTES));
        let over = serde_json::Value::String("x".repeat(MAX_FAN_OUT_VALUE_BYTES - 1));
        assert!(matches!(fan_out_value_json("a result", &over), Err(StoreError::TooLarge(_))));
        assert!(check_fan_out_len(MAX_FAN_OUT_ITEMS).is_ok());
        assert!(matches!(check_fan_out_len(MAX_FAN_OUT_ITEMS + 1), Err(StoreError::TooLarge(_))));
        let max = MAX_FAN_OUT_ITEMS as u32;
        assert!(check_branch_index(max - 1, max).is_ok());
        assert!(matches!(check_branch_index(max, max), Err(StoreError::TooLarge(_))));
        assert!(matches!(check_branch_index(3, 3), Err(StoreError::TooLarge(_))));
        assert!(matches!(check_branch_index(0, max + 1), Err(StoreError::TooLarge(_))));
    }
}
