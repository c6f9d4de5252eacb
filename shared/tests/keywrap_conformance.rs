//! The conformance suite of the `KeyWrap` port, run through `crypto::seal` / `crypto::open`
//! against both adapters: `LocalKeyFile` on a temporary folder, and `KmsKeyWrap` on the local
//! AWS-API server (moto) named by `SLUICE_AWS_ENDPOINT` (start it with `infra/moto.sh start`).
//! Without that variable the KMS test prints a notice and passes, unless `SLUICE_REQUIRE_AWS=1`,
//! which makes it fail.
//!
//! Backend differences, written down here (moto 5.2.5, checked by hand against its KMS):
//! - moto does enforce the encryption context: it is AES-GCM associated data of its own
//!   ciphertext-blob format, so a wrong or missing context is `InvalidCiphertextException`, as
//!   on AWS. (It concatenates keys and values without a separator, so `{"sluic": "ea"}` would
//!   pass for `{"sluice": "a"}`; the adapter always uses the one key `sluice`, so this suite
//!   cannot tell.)
//! - A changed byte in the key-id part of moto's blob, or `Decrypt` naming another key, is
//!   `AccessDeniedException` (AWS: `InvalidCiphertextException` / `IncorrectKeyException`).
//!   All are 400s, so the suite's assertion (`Refused`, not retryable) holds on both.
//! - moto does not refuse disabled keys, never throttles and never answers 5xx: the
//!   `Backend` (retryable) side of the KMS adapter is covered by its unit tests only.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::future::try_join_all;
use sluice_shared::adapters::kms::KmsKeyWrap;
use sluice_shared::crypto::{CryptoError, KeyWrap, LocalKeyFile, Sealed, open, seal};

const CONTEXT: &str = "project/p1/user/u1/integration/slack";
const OTHER_CONTEXT: &str = "project/p1/user/u2/integration/slack";

/// Every case, in order.
async fn suite(wrap: &dyn KeyWrap) {
    round_trip(wrap).await;
    another_context_is_refused(wrap).await;
    a_wrapped_key_moved_to_another_record_is_refused(wrap).await;
    tampering_is_refused(wrap).await;
    two_seals_of_the_same_plaintext_differ(wrap).await;
    concurrent_seals_all_open(wrap).await;
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, CryptoError>, what: &str) {
    match result {
        Err(error @ CryptoError::Refused(_)) => assert!(!error.is_retryable(), "{what}: {error}"),
        other => panic!("{what}: expected Refused, got {other:?}"),
    }
}

/// `text` (base64) with one bit of its byte at `index` (from the end if negative) flipped.
fn flip(text: &str, index: isize) -> String {
    let mut bytes = BASE64.decode(text).expect("base64");
    let at = if index < 0 { bytes.len() - index.unsigned_abs() } else { index.unsigned_abs() };
    bytes[at] ^= 0x01;
    BASE64.encode(bytes)
}

async fn round_trip(wrap: &dyn KeyWrap) {
    let large: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    for plaintext in [&b""[..], b"xoxb-secret-token", &large[..]] {
        let sealed = seal(wrap, CONTEXT, plaintext).await.expect("seal");
        assert_eq!(open(wrap, CONTEXT, &sealed).await.expect("open"), plaintext, "{} bytes", plaintext.len());
        // The stored form survives JSON.
        let json = serde_json::to_string(&sealed).expect("json");
        let back: Sealed = serde_json::from_str(&json).expect("parse");
        assert_eq!(open(wrap, CONTEXT, &back).await.expect("open"), plaintext, "{} bytes via JSON", plaintext.len());
    }
}

async fn another_context_is_refused(wrap: &dyn KeyWrap) {
    let sealed = seal(wrap, CONTEXT, b"secret").await.expect("seal");
    assert_refused(open(wrap, OTHER_CONTEXT, &sealed).await, "open under another context");
    assert_refused(open(wrap, "", &sealed).await, "open under the empty context");
    let data_key = wrap.new_data_key(CONTEXT).await.expect("data key");
    assert_refused(wrap.unwrap(&data_key.wrapped, OTHER_CONTEXT).await, "unwrap under another context");
    let unwrapped = wrap.unwrap(&data_key.wrapped, CONTEXT).await.expect("unwrap");
    assert_eq!(unwrapped.as_bytes(), data_key.plaintext.as_bytes());
}

async fn a_wrapped_key_moved_to_another_record_is_refused(wrap: &dyn KeyWrap) {
    let mine = seal(wrap, CONTEXT, b"my secret").await.expect("seal");
    let theirs = seal(wrap, OTHER_CONTEXT, b"their secret").await.expect("seal");
    // Their record with my wrapped key, opened under their context, and the other way round.
    let moved = Sealed { wrapped_key: mine.wrapped_key.clone(), ..theirs.clone() };
    assert_refused(open(wrap, OTHER_CONTEXT, &moved).await, "my wrapped key in their record");
    let moved = Sealed { wrapped_key: theirs.wrapped_key.clone(), ..mine.clone() };
    assert_refused(open(wrap, CONTEXT, &moved).await, "their wrapped key in my record");
    assert_refused(open(wrap, OTHER_CONTEXT, &moved).await, "their wrapped key in my record, their context");
}

async fn tampering_is_refused(wrap: &dyn KeyWrap) {
    let sealed = seal(wrap, CONTEXT, b"secret").await.expect("seal");
    let tampered = [
        ("first ciphertext byte", Sealed { ciphertext: flip(&sealed.ciphertext, 0), ..sealed.clone() }),
        ("last tag byte", Sealed { ciphertext: flip(&sealed.ciphertext, -1), ..sealed.clone() }),
        ("nonce", Sealed { nonce: flip(&sealed.nonce, 5), ..sealed.clone() }),
        ("first wrapped key byte", Sealed { wrapped_key: flip(&sealed.wrapped_key, 0), ..sealed.clone() }),
        ("middle wrapped key byte", Sealed { wrapped_key: flip(&sealed.wrapped_key, 40), ..sealed.clone() }),
        ("last wrapped key byte", Sealed { wrapped_key: flip(&sealed.wrapped_key, -1), ..sealed.clone() }),
        ("truncated ciphertext", Sealed { ciphertext: BASE64.encode([0u8; 8]), ..sealed.clone() }),
        ("empty wrapped key", Sealed { wrapped_key: String::new(), ..sealed.clone() }),
        ("short wrapped key", Sealed { wrapped_key: BASE64.encode([1u8; 8]), ..sealed.clone() }),
        ("unknown version", Sealed { version: sealed.version + 1, ..sealed.clone() }),
    ];
    for (what, record) in tampered {
        assert_refused(open(wrap, CONTEXT, &record).await, what);
    }
    assert_eq!(open(wrap, CONTEXT, &sealed).await.expect("open"), b"secret", "the original still opens");
}

async fn two_seals_of_the_same_plaintext_differ(wrap: &dyn KeyWrap) {
    let one = seal(wrap, CONTEXT, b"secret").await.expect("seal");
    let two = seal(wrap, CONTEXT, b"secret").await.expect("seal");
    assert_ne!(one.wrapped_key, two.wrapped_key, "a new data key per record");
    assert_ne!(one.ciphertext, two.ciphertext);
}

async fn concurrent_seals_all_open(wrap: &dyn KeyWrap) {
    let records: Vec<(String, String)> =
        (0..20).map(|i| (format!("project/p1/user/u{i}/integration/slack"), format!("token {i}"))).collect();
    let sealed = try_join_all(records.iter().map(|(context, text)| seal(wrap, context, text.as_bytes())))
        .await
        .expect("20 concurrent seals");
    let opened = try_join_all(records.iter().zip(&sealed).map(|((context, _), sealed)| open(wrap, context, sealed)))
        .await
        .expect("20 concurrent opens");
    for ((_, text), plaintext) in records.iter().zip(opened) {
        assert_eq!(plaintext, text.as_bytes());
    }
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("sluice-keywrap-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("cannot remove {}: {e}", self.0.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_key_file_passes_the_suite() {
    let dir = TempDir::new();
    let wrap = LocalKeyFile::open_or_create(dir.0.join("master.key")).expect("key file");
    suite(&wrap).await;
}

/// The local AWS-API server, or None (with a notice) when it is not configured; a panic then
/// if `SLUICE_REQUIRE_AWS=1`.
fn aws_endpoint() -> Option<String> {
    match std::env::var("SLUICE_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var("SLUICE_REQUIRE_AWS").as_deref() == Ok("1") => {
            panic!("SLUICE_REQUIRE_AWS=1 but SLUICE_AWS_ENDPOINT is not set: start it with infra/moto.sh")
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_passes_the_suite() {
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipping kms_passes_the_suite: SLUICE_AWS_ENDPOINT is not set (start infra/moto.sh)");
        return;
    };
    let credentials = aws_sdk_kms::config::Credentials::new("test", "test", None, None, "sluice-tests");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&config);
    let created = client.create_key().description("sluice keywrap conformance").send().await.expect("CreateKey");
    let key_id = created.key_metadata().map(|m| m.key_id().to_string()).expect("key id");
    let wrap = KmsKeyWrap::new(client.clone(), &key_id);
    suite(&wrap).await;

    // A wrapped key of another KMS key is refused, not decrypted by it.
    let other = client.create_key().send().await.expect("CreateKey");
    let other_id = other.key_metadata().map(|m| m.key_id().to_string()).expect("key id");
    let sealed = seal(&KmsKeyWrap::new(client.clone(), other_id), CONTEXT, b"secret").await.expect("seal");
    assert_refused(open(&wrap, CONTEXT, &sealed).await, "a record of another KMS key");

    // An unknown key is a refusal too (NotFoundException), not worth retrying.
    let missing = KmsKeyWrap::new(client, "11111111-2222-3333-4444-555555555555");
    assert_refused(missing.new_data_key(CONTEXT).await, "GenerateDataKey under an unknown key");
}
