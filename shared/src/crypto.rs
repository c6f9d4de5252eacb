//! Credentials encryption at rest: envelope encryption under a [`KeyWrap`] port.
//!
//! Every record is sealed with its own random 256-bit data key (AES-256-GCM, a random 96-bit
//! nonce, the record's encryption context as associated data); only the data key's wrapped
//! form is stored beside the ciphertext, and only the key wrapper (KMS, or a local master key
//! file for `sluice dev`) can unwrap it, for the same context only.
//!
//! Invariants: a sealed record opens only under the context it was sealed with, and any change
//! to its wrapped key, nonce or ciphertext is refused, never decrypted to something else; key
//! material and plaintext never appear in `Debug` output or error messages; plaintext keys live
//! in [`KeyBytes`], which is zeroed when dropped.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// The length of a data key and of a local master key: 256 bits.
pub const KEY_LEN: usize = 32;
/// The AES-GCM tag length.
const TAG_LEN: usize = 16;
/// The [`Sealed::version`] this module writes (and the only one it opens).
pub const SEALED_VERSION: u8 = 1;
/// A wrapped key of [`LocalKeyFile`]: nonce || encrypted data key || tag.
const LOCAL_WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Why a key could not be made, wrapped or unwrapped, or a record sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key service failed, was unreachable or throttled us; worth retrying.
    #[error("key service error: {0}")]
    Backend(String),
    /// The key or record was refused: wrong context, tampered with, malformed, or wrapped under
    /// another master key. Retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The local master key file cannot be used (missing folder, unsafe permissions, wrong size).
    #[error("bad key file: {0}")]
    BadKeyFile(String),
}

impl CryptoError {
    /// Whether doing the same again may succeed (the key service failed or was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CryptoError::Backend(_))
    }
}

/// 256 bits of key material, on the heap (moves do not copy it) and overwritten with zeros when
/// dropped. Not `Clone`; its `Debug` shows nothing of the key.
pub struct KeyBytes(Box<[u8; KEY_LEN]>);

impl KeyBytes {
    /// A key of random bytes from the system's secure generator.
    pub fn random() -> Result<KeyBytes, CryptoError> {
        let mut key = KeyBytes(Box::new([0; KEY_LEN]));
        aws_lc_rs::rand::fill(&mut key.0[..])
            .map_err(|_| CryptoError::Backend("the secure random generator failed".into()))?;
        Ok(key)
    }

    /// A copy of `bytes` if it is exactly [`KEY_LEN`] long. The caller still owns (and should
    /// clear) `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Option<KeyBytes> {
        let array: &[u8; KEY_LEN] = bytes.try_into().ok()?;
        let mut key = KeyBytes(Box::new([0; KEY_LEN]));
        key.0.copy_from_slice(array);
        Some(key)
    }

    /// The key material.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        // Best effort without `unsafe` volatile writes: `black_box` keeps the compiler from
        // proving the zeros are never read and removing the store.
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

/// A fresh data key from [`KeyWrap::new_data_key`].
pub struct DataKey {
    /// The key itself: use it for one record, then drop it.
    pub plaintext: KeyBytes,
    /// Its wrapped form, stored beside the ciphertext; only the same wrapper unwraps it.
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("plaintext", &self.plaintext).field("wrapped_len", &self.wrapped.len()).finish()
    }
}

/// Makes and unwraps data keys under a master key the application never sees (KMS) or keeps
/// in one place (a local key file).
///
/// `context` is the encryption context of a record (for example
/// `project/p1/user/u1/integration/slack`); it is bound to the wrapped key, so a wrapped key
/// moved to another record does not unwrap.
#[async_trait]
pub trait KeyWrap: Send + Sync {
    /// A new 256-bit data key: its plaintext (use once, then drop) and its wrapped form (stored
    /// beside the ciphertext).
    async fn new_data_key(&self, context: &str) -> Result<DataKey, CryptoError>;

    /// The plaintext of a data key this wrapper wrapped; `context` must be the one it was
    /// wrapped with, else `Refused`.
    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<KeyBytes, CryptoError>;
}

/// An encrypted record as stored: everything but the key wrapper's master key needed to open
/// it. The byte fields are standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The format: [`SEALED_VERSION`].
    pub version: u8,
    /// The data key as its [`KeyWrap`] wrapped it.
    pub wrapped_key: String,
    /// The 96-bit AES-GCM nonce.
    pub nonce: String,
    /// The AES-256-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: String,
}

/// Encrypts `plaintext` under a new data key from `wrap`, bound to `context`.
pub async fn seal(wrap: &dyn KeyWrap, context: &str, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
    let data_key = wrap.new_data_key(context).await?;
    let (nonce, ciphertext) = aes_gcm_seal(&data_key.plaintext, context, plaintext)?;
    Ok(Sealed {
        version: SEALED_VERSION,
        wrapped_key: BASE64.encode(&data_key.wrapped),
        nonce: BASE64.encode(nonce.as_ref()),
        ciphertext: BASE64.encode(ciphertext),
    })
}

/// Decrypts a record [`seal`] made with the same `wrap` and `context`; `Refused` for any other
/// context, an unknown version, malformed fields or any tampering.
pub async fn open(wrap: &dyn KeyWrap, context: &str, sealed: &Sealed) -> Result<Vec<u8>, CryptoError> {
    if sealed.version != SEALED_VERSION {
        return Err(CryptoError::Refused(format!("unsupported sealed record version {}", sealed.version)));
    }
    let wrapped = decode("wrapped key", &sealed.wrapped_key)?;
    let nonce = decode("nonce", &sealed.nonce)?;
    let nonce = Nonce::try_assume_unique_for_key(&nonce)
        .map_err(|_| CryptoError::Refused(format!("the nonce is {} bytes, not {NONCE_LEN}", nonce.len())))?;
    let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::Refused("the ciphertext is shorter than its tag".into()));
    }
    let data_key = wrap.unwrap(&wrapped, context).await?;
    aes_gcm_open(&data_key, context, nonce, ciphertext)
        .map_err(|()| CryptoError::Refused("the record does not decrypt under this context".into()))
}

fn decode(what: &str, text: &str) -> Result<Vec<u8>, CryptoError> {
    BASE64.decode(text).map_err(|e| CryptoError::Refused(format!("the {what} is not base64: {e}")))
}

/// AES-256-GCM of `plaintext` under `key` with a random nonce and AAD `context`: the nonce and
/// the ciphertext with its tag appended.
fn aes_gcm_seal(key: &KeyBytes, context: &str, plaintext: &[u8]) -> Result<(Nonce, Vec<u8>), CryptoError> {
    let failed = |_| CryptoError::Backend("AES-256-GCM encryption failed".into());
    let key = RandomizedNonceKey::new(&AES_256_GCM, key.as_bytes()).map_err(failed)?;
    let mut in_out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    in_out.extend_from_slice(plaintext);
    let nonce = key.seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut in_out).map_err(failed)?;
    Ok((nonce, in_out))
}

/// Opens what [`aes_gcm_seal`] made; `Err(())` if anything (key, nonce, AAD, bytes) differs.
fn aes_gcm_open(key: &KeyBytes, context: &str, nonce: Nonce, mut in_out: Vec<u8>) -> Result<Vec<u8>, ()> {
    let key = RandomizedNonceKey::new(&AES_256_GCM, key.as_bytes()).map_err(|_| ())?;
    let len = key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out).map_err(|_| ())?.len();
    in_out.truncate(len);
    Ok(in_out)
}

/// A [`KeyWrap`] over a 256-bit master key in a local file (for `sluice dev` and tests; KMS in
/// production). A wrapped key is nonce || AES-256-GCM(data key, AAD = context) || tag.
pub struct LocalKeyFile {
    path: PathBuf,
    master: KeyBytes,
}

impl fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl LocalKeyFile {
    /// The master key in the file at `path`, made (32 random bytes, mode 0600) if there is none.
    /// Its folder must exist. An existing file is refused unless it is a regular file of exactly
    /// 32 bytes that neither group nor others may read or write. Two processes creating the same
    /// file at once end up with the same key: the file appears complete or not at all.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<LocalKeyFile, CryptoError> {
        let path = path.as_ref();
        let master = match create(path)? {
            Some(master) => master,
            None => read(path)?,
        };
        Ok(LocalKeyFile { path: path.to_path_buf(), master })
    }

    /// The file the master key is in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn bad_file(path: &Path, what: impl fmt::Display) -> CryptoError {
    CryptoError::BadKeyFile(format!("{}: {what}", path.display()))
}

/// Writes a new master key to `path`, or None if a file is already there. The key goes to a
/// temporary file in the same folder first and is hard-linked into place, which fails if
/// `path` exists: no reader ever sees a partly written key.
fn create(path: &Path) -> Result<Option<KeyBytes>, CryptoError> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(None);
    }
    let file_name = path.file_name().ok_or_else(|| bad_file(path, "not a file name"))?;
    let mut temp_name = file_name.to_os_string();
    temp_name.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let temp = path.with_file_name(temp_name);
    let master = KeyBytes::random()?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(master.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&temp, path));
    // The temporary name is removed whatever happened; `path` keeps the key if it was linked.
    if let Err(e) = std::fs::remove_file(&temp)
        && e.kind() != ErrorKind::NotFound
    {
        tracing::warn!(file = %temp.display(), error = %e, "cannot remove a temporary key file");
    }
    match written {
        Ok(()) => {
            // The new name must survive a crash, or the next start would make another key and
            // every record sealed under this one would be lost.
            let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::File::open(folder)
                .and_then(|folder| folder.sync_all())
                .map_err(|e| bad_file(path, format!("cannot sync its folder: {e}")))?;
            Ok(Some(master))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(bad_file(path, "its folder does not exist")),
        Err(e) => Err(bad_file(path, format!("cannot create it: {e}"))),
    }
}

/// The master key in the existing file at `path`, after checking its type, mode and size.
fn read(path: &Path) -> Result<KeyBytes, CryptoError> {
    let mut file = std::fs::File::open(path).map_err(|e| bad_file(path, format!("cannot open it: {e}")))?;
    // The checks look at the opened file, not at the path again.
    let metadata = file.metadata().map_err(|e| bad_file(path, format!("cannot read its metadata: {e}")))?;
    if !metadata.is_file() {
        return Err(bad_file(path, "not a regular file"));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad_file(path, format!("mode {mode:04o} lets group or others at it; it must be 0600 or stricter")));
    }
    if metadata.len() != KEY_LEN as u64 {
        return Err(bad_file(path, format!("it is {} bytes, a master key is exactly {KEY_LEN}", metadata.len())));
    }
    let mut master = KeyBytes(Box::new([0; KEY_LEN]));
    file.read_exact(&mut master.0[..]).map_err(|e| bad_file(path, format!("cannot read it: {e}")))?;
    // It may have grown since the size check.
    let mut extra = [0u8; 1];
    match file.read(&mut extra) {
        Ok(0) => Ok(master),
        Ok(_) => Err(bad_file(path, format!("it is longer than {KEY_LEN} bytes"))),
        Err(e) => Err(bad_file(path, format!("cannot read it: {e}"))),
    }
}

#[async_trait]
impl KeyWrap for LocalKeyFile {
    async fn new_data_key(&self, context: &str) -> Result<DataKey, CryptoError> {
        let plaintext = KeyBytes::random()?;
        let (nonce, sealed) = aes_gcm_seal(&self.master, context, plaintext.as_bytes())?;
        let mut wrapped = Vec::with_capacity(LOCAL_WRAPPED_LEN);
        wrapped.extend_from_slice(nonce.as_ref());
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<KeyBytes, CryptoError> {
        if wrapped.len() != LOCAL_WRAPPED_LEN {
            return Err(CryptoError::Refused(format!(
                "a wrapped key is {LOCAL_WRAPPED_LEN} bytes, this one is {}",
                wrapped.len()
            )));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let refused =
            || CryptoError::Refused("the wrapped key does not unwrap under this context and master key".into());
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut plaintext = aes_gcm_open(&self.master, context, nonce, sealed.to_vec()).map_err(|()| refused())?;
        let key = KeyBytes::from_slice(&plaintext);
        plaintext.fill(0);
        std::hint::black_box(&mut plaintext);
        key.ok_or_else(refused)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const CONTEXT: &str = "project/p1/user/u1/integration/slack";

    /// A temporary folder removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir().join(format!("sluice-crypto-{}", uuid::Uuid::new_v4().simple()));
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

    fn key_file(dir: &TempDir) -> LocalKeyFile {
        LocalKeyFile::open_or_create(dir.0.join("master.key")).expect("key file")
    }

    fn assert_refused<T: fmt::Debug>(result: Result<T, CryptoError>, what: &str) {
        match result {
            Err(CryptoError::Refused(_)) => {}
            other => panic!("{what}: expected Refused, got {other:?}"),
        }
    }

    /// `text` (base64) with one bit of its `index`th byte flipped.
    fn flip(text: &str, index: usize) -> String {
        let mut bytes = BASE64.decode(text).expect("base64");
        bytes[index] ^= 0x01;
        BASE64.encode(bytes)
    }

    #[tokio::test]
    async fn sealed_records_open_to_their_plaintext() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        for plaintext in [&b""[..], b"xoxb-secret-token", &[7u8; 70_000][..]] {
            let sealed = seal(&wrap, CONTEXT, plaintext).await.expect("seal");
            assert_eq!(sealed.version, SEALED_VERSION);
            assert_eq!(open(&wrap, CONTEXT, &sealed).await.expect("open"), plaintext);
        }
    }

    #[tokio::test]
    async fn a_reopened_key_file_opens_what_it_sealed() {
        let dir = TempDir::new();
        let sealed = seal(&key_file(&dir), CONTEXT, b"secret").await.expect("seal");
        assert_eq!(open(&key_file(&dir), CONTEXT, &sealed).await.expect("open"), b"secret");
    }

    #[tokio::test]
    async fn another_context_is_refused() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        let sealed = seal(&wrap, CONTEXT, b"secret").await.expect("seal");
        assert_refused(open(&wrap, "project/p1/user/u2/integration/slack", &sealed).await, "other context");
        assert_refused(open(&wrap, "", &sealed).await, "empty context");
        let data_key = wrap.new_data_key(CONTEXT).await.expect("data key");
        assert_refused(wrap.unwrap(&data_key.wrapped, "other").await, "unwrap under another context");
    }

    #[tokio::test]
    async fn another_master_key_is_refused() {
        let (one, two) = (TempDir::new(), TempDir::new());
        let sealed = seal(&key_file(&one), CONTEXT, b"secret").await.expect("seal");
        assert_refused(open(&key_file(&two), CONTEXT, &sealed).await, "other master key");
    }

    #[tokio::test]
    async fn tampered_records_are_refused() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        let sealed = seal(&wrap, CONTEXT, b"secret").await.expect("seal");
        let tampered = [
            ("ciphertext", Sealed { ciphertext: flip(&sealed.ciphertext, 0), ..sealed.clone() }),
            ("tag", Sealed { ciphertext: flip(&sealed.ciphertext, 6 + TAG_LEN - 1), ..sealed.clone() }),
            ("nonce", Sealed { nonce: flip(&sealed.nonce, 3), ..sealed.clone() }),
            ("wrapped nonce", Sealed { wrapped_key: flip(&sealed.wrapped_key, 0), ..sealed.clone() }),
            ("wrapped key", Sealed { wrapped_key: flip(&sealed.wrapped_key, NONCE_LEN + 1), ..sealed.clone() }),
            ("short nonce", Sealed { nonce: BASE64.encode([0u8; 8]), ..sealed.clone() }),
            ("short ciphertext", Sealed { ciphertext: BASE64.encode([0u8; 4]), ..sealed.clone() }),
            ("short wrapped key", Sealed { wrapped_key: BASE64.encode([0u8; 20]), ..sealed.clone() }),
            ("not base64", Sealed { ciphertext: "not base64!".into(), ..sealed.clone() }),
            ("version", Sealed { version: 2, ..sealed.clone() }),
        ];
        for (what, record) in tampered {
            assert_refused(open(&wrap, CONTEXT, &record).await, what);
        }
    }

    #[tokio::test]
    async fn two_seals_of_the_same_plaintext_differ() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        let one = seal(&wrap, CONTEXT, b"secret").await.expect("seal");
        let two = seal(&wrap, CONTEXT, b"secret").await.expect("seal");
        assert_ne!(one.wrapped_key, two.wrapped_key);
        assert_ne!(one.nonce, two.nonce);
        assert_ne!(one.ciphertext, two.ciphertext);
    }

    #[tokio::test]
    async fn sealed_json_shows_neither_the_plaintext_nor_its_base64() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        let plaintext = "xoxb-1234567890-very-secret-slack-token";
        let json =
            serde_json::to_string(&seal(&wrap, CONTEXT, plaintext.as_bytes()).await.expect("seal")).expect("json");
        assert!(!json.contains(plaintext), "{json}");
        // Any alignment of the plaintext inside a longer base64 text starts with one of these.
        for skip in 0..3 {
            let encoded = BASE64.encode(&plaintext.as_bytes()[skip..]);
            assert!(!json.contains(&encoded[4..20]), "{json}");
        }
        let back: Sealed = serde_json::from_str(&json).expect("parse");
        assert_eq!(open(&wrap, CONTEXT, &back).await.expect("open"), plaintext.as_bytes());
    }

    #[tokio::test]
    async fn debug_output_shows_no_key_material() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        let master = std::fs::read(wrap.path()).expect("read");
        let data_key = wrap.new_data_key(CONTEXT).await.expect("data key");
        let shown = format!("{wrap:?} {data_key:?} {:?}", data_key.plaintext);
        for key in [&master[..], &data_key.plaintext.as_bytes()[..]] {
            assert!(!shown.contains(&format!("{key:?}")), "{shown}");
            assert!(!shown.contains(&format!("{:?}", &key[..8]).replace(']', "")), "{shown}");
            assert!(!shown.contains(&BASE64.encode(key)), "{shown}");
        }
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn a_new_key_file_is_32_bytes_with_mode_0600() {
        let dir = TempDir::new();
        let wrap = key_file(&dir);
        let metadata = std::fs::metadata(wrap.path()).expect("metadata");
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(metadata.len(), KEY_LEN as u64);
        let leftovers = std::fs::read_dir(&dir.0).expect("read dir").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[tokio::test]
    async fn processes_creating_the_same_key_file_at_once_share_one_key() {
        let dir = TempDir::new();
        let path = dir.0.join("master.key");
        let opened: Vec<LocalKeyFile> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8).map(|_| scope.spawn(|| LocalKeyFile::open_or_create(&path))).collect();
            threads.into_iter().map(|t| t.join().expect("thread").expect("key file")).collect()
        });
        let sealed = seal(&opened[0], CONTEXT, b"secret").await.expect("seal");
        for wrap in &opened {
            assert_eq!(open(wrap, CONTEXT, &sealed).await.expect("open"), b"secret");
        }
        assert_eq!(std::fs::read_dir(&dir.0).expect("read dir").count(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = TempDir::new();
        let path = key_file(&dir).path().to_path_buf();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let error = LocalKeyFile::open_or_create(&path).expect_err("refused");
            assert!(matches!(&error, CryptoError::BadKeyFile(m) if m.contains("0600")), "{mode:o}: {error}");
            assert!(!error.is_retryable());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(LocalKeyFile::open_or_create(&path).is_ok(), "read-only for its owner is fine");
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused() {
        let dir = TempDir::new();
        for len in [0, 31, 33] {
            let path = dir.0.join(format!("key-{len}"));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(&vec![1u8; len]))
                .expect("write");
            let error = LocalKeyFile::open_or_create(&path).expect_err("refused");
            assert!(matches!(&error, CryptoError::BadKeyFile(m) if m.contains("exactly 32")), "{len}: {error}");
        }
    }

    #[test]
    fn a_key_file_in_a_missing_folder_or_a_folder_is_refused() {
        let dir = TempDir::new();
        let error = LocalKeyFile::open_or_create(dir.0.join("missing/master.key")).expect_err("refused");
        assert!(matches!(&error, CryptoError::BadKeyFile(m) if m.contains("folder does not exist")), "{error}");
        let error = LocalKeyFile::open_or_create(&dir.0).expect_err("refused");
        assert!(matches!(error, CryptoError::BadKeyFile(_)), "{error}");
    }

    #[test]
    fn only_backend_errors_are_retryable() {
        assert!(CryptoError::Backend("throttled".into()).is_retryable());
        assert!(!CryptoError::Refused("tampered".into()).is_retryable());
        assert!(!CryptoError::BadKeyFile("mode".into()).is_retryable());
    }
}
