//! Store cases for the files of executions (`FileStore`).
//!
//! Invariant: every case works on fresh execution ids, so cases never see each other's files.
//! Byte contents are position-dependent, so a store that reorders or drops chunks fails.

use bytes::Bytes;

use super::unique;
use crate::ports::{MAX_FILE_BYTES, Store, StoreError};
use crate::record::FileObject;

/// `len` bytes where each depends on its position (and `seed`).
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed).collect::<Vec<u8>>().into()
}

/// Compares without dumping megabytes into the failure message.
fn assert_same_bytes(what: &str, got: &Bytes, want: &Bytes) {
    if got != want {
        let first = got.iter().zip(want.iter()).position(|(a, b)| a != b);
        panic!("{what}: read {} bytes, wrote {}; first difference at {first:?}", got.len(), want.len());
    }
}

/// The bytes of `file` in `execution_id`, which must exist.
async fn read(store: &dyn Store, execution_id: &str, file: &FileObject, what: &str) -> Bytes {
    let got = store.get_file(execution_id, file).await.expect("get file");
    got.unwrap_or_else(|| panic!("{what}: the file reads as None"))
}

async fn put(store: &dyn Store, execution_id: &str, name: &str, bytes: &Bytes) -> FileObject {
    store.put_file(execution_id, name, "application/octet-stream", bytes.clone()).await.expect("put file")
}

/// A file reads back byte for byte: small, empty, ~1 MiB (several chunks on DynamoDB) and
/// exactly `MAX_FILE_BYTES`; its file object names it and survives a JSON round trip.
pub async fn case_file_round_trips(store: &dyn Store) {
    let execution_id = unique("e");
    let sizes = [
        ("hello.txt", "text/plain; charset=utf-8", 13),
        ("empty.bin", "application/octet-stream", 0),
        ("report.pdf", "application/pdf", 1024 * 1024 + 3),
        ("largest.bin", "application/octet-stream", MAX_FILE_BYTES),
    ];
    for (name, mime_type, len) in sizes {
        let bytes = pattern(len, len as u8);
        let file = store.put_file(&execution_id, name, mime_type, bytes.clone()).await.expect("put file");
        assert_eq!((file.name.as_str(), file.mime_type.as_str(), file.size), (name, mime_type, len as u64));
        assert!(file.id().is_some_and(|id| !id.is_empty()), "{name}: data is a file reference: {}", file.data);

        assert_same_bytes(name, &read(store, &execution_id, &file, name).await, &bytes);

        let text = serde_json::to_string(&file).expect("file object to JSON");
        let copied: FileObject = serde_json::from_str(&text).expect("file object from JSON");
        let what = format!("{name} (copied object)");
        assert_same_bytes(&what, &read(store, &execution_id, &copied, &what).await, &bytes);
    }
}

/// One byte over `MAX_FILE_BYTES` is `TooLarge`.
pub async fn case_file_over_the_limit_is_too_large(store: &dyn Store) {
    let result =
        store.put_file(&unique("e"), "big.bin", "application/octet-stream", pattern(MAX_FILE_BYTES + 1, 1)).await;
    assert!(matches!(result, Err(StoreError::TooLarge(_))), "MAX_FILE_BYTES + 1: {:?}", result.map(|f| f.data));
}

/// A file object copied into another execution never reads the first execution's file.
pub async fn case_file_is_scoped_to_its_execution(store: &dyn Store) {
    let (owner, other) = (unique("e"), unique("e"));
    let bytes = pattern(2048, 7);
    let file = put(store, &owner, "secret.bin", &bytes).await;
    assert_eq!(store.get_file(&other, &file).await.expect("get from another execution"), None);
    assert_same_bytes("owner", &read(store, &owner, &file, "owner").await, &bytes);
}

/// Unknown ids, forged ids and `data` that is not a file reference read as None.
pub async fn case_unknown_or_forged_file_is_none(store: &dyn Store) {
    let execution_id = unique("e");
    let real = put(store, &execution_id, "real.bin", &pattern(4096, 3)).await;
    let id = real.id().expect("file reference").to_string();
    let forged = [
        format!("{}{}", FileObject::DATA_PREFIX, uuid::Uuid::new_v4()),
        id.clone(),
        format!("{}{}", FileObject::DATA_PREFIX, id.to_uppercase()),
        format!("{}{id}#0000", FileObject::DATA_PREFIX),
        format!("{}../{id}", FileObject::DATA_PREFIX),
        format!("{}' OR '1'='1", FileObject::DATA_PREFIX),
        FileObject::DATA_PREFIX.to_string(),
        "https://example.com/file.bin".to_string(),
        String::new(),
    ];
    for data in forged {
        let file = FileObject { data: data.clone(), ..real.clone() };
        assert_eq!(store.get_file(&execution_id, &file).await.expect("get forged"), None, "data = {data:?}");
    }
    read(store, &execution_id, &real, "the real file").await;
}

/// Two files of one execution (even with one name) get distinct ids and keep their own bytes.
pub async fn case_files_of_one_execution_are_independent(store: &dyn Store) {
    let execution_id = unique("e");
    let (a_bytes, b_bytes) = (pattern(400 * 1024, 11), pattern(1500, 12));
    let a = put(store, &execution_id, "same-name.bin", &a_bytes).await;
    let b = put(store, &execution_id, "same-name.bin", &b_bytes).await;
    assert_ne!(a.data, b.data, "each put makes a new file");
    assert_same_bytes("first file", &read(store, &execution_id, &a, "first file").await, &a_bytes);
    assert_same_bytes("second file", &read(store, &execution_id, &b, "second file").await, &b_bytes);
}
