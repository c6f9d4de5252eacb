//! Idempotency at ingestion: a trigger request that carries an `Idempotency-Key` starts
//! something at most once per key, and every repeat within [`REMEMBERED`] gets the first
//! request's answer (`docs/workflow-format.md`, "Triggering: Idempotency-Key").
//!
//! The protocol, on [`IdempotencyStore`]:
//! 1. [`earlier`]: before a keyed request is checked, an earlier request with the same key
//!    (scoped by project, route and caller) answers it — a repeat of a request whose
//!    workflow was undeployed since still gets the first answer.
//! 2. [`claim`]: just before anything starts, the key is claimed with a conditional write
//!    recording the request's hash and the answer it will get (execution ids are chosen
//!    before the start, so the answer is known; a synchronous execution's answer is whatever
//!    is settled for it). The claim is [`ClaimState::Pending`] and lives only
//!    [`PENDING_LEASE`]. Of concurrent duplicates exactly one wins; the others wait while it
//!    is pending, then answer what it recorded.
//! 3. After the start, the winner [completes](Claim::complete) the claim: `Done`, remembered
//!    [`REMEMBERED`] from the claim.
//!
//! A repeat with another request (another method, path, query or body; headers are not
//! compared) is refused as [`IdempotencyError::Reused`], whatever the earlier one's state.
//!
//! Failures, and the choices made:
//! - **The start failed before anything was created** (a throttled or unreachable backend,
//!   a refused write): the claim is [released](Claim::release), so the client's retry with
//!   the same key starts afresh rather than being answered with an execution that does not
//!   exist.
//! - **The start failed after the execution was created** (`ApiError::AfterStart`): the claim
//!   is completed: a retry gets the started execution's answer instead of starting a second
//!   one (the first call itself answered 500).
//! - **The process died between the claim and its completion or release** (a Lambda timeout
//!   or crash): nothing can release the claim, so a pending claim lapses by itself after
//!   [`PENDING_LEASE`] — a key never stays blocked longer than that. A retry after the lease
//!   claims anew; if the dead process had created its execution, that retry starts a second
//!   one (at-least-once in this narrow window, as without a key). Duplicates within the lease
//!   wait for it, then claim.
//! - **A completion that failed** (the store unreachable right after the start) is tried
//!   [`COMPLETE_TRIES`] times, then logged: the claim then lapses like a dead process's.

use std::time::{Duration, Instant};

use http::HeaderMap;

use crate::ports::{
    ClaimState, FirstWrite, IdempotencyKey, IdempotencyRecord, IdempotencyStore, StoreError, StoredAnswer,
};
use crate::record::{Timestamp, now};

/// The request header carrying the client's key.
pub const HEADER: &str = "idempotency-key";
/// The longest key, in characters.
pub const MAX_KEY_LEN: usize = 255;
/// How long a started request's key is remembered, from its claim.
pub const REMEMBERED: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a claim whose start is under way lives unless completed: far longer than a start
/// takes, short enough that a claimant that died does not block its key for long.
pub const PENDING_LEASE: Duration = Duration::from_secs(30);
/// How many times a claim's completion is tried.
pub const COMPLETE_TRIES: usize = 3;

/// The first wait of a duplicate for a pending claim; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The header is not a key.
    #[error(
        "the Idempotency-Key header must be sent once, as 1 to {MAX_KEY_LEN} visible ASCII characters \
         (no spaces, control characters or non-ASCII text)"
    )]
    Malformed,
    /// The key was used before with another request.
    #[error(
        "this Idempotency-Key was already used with a different request (method, path, query or body); \
         use a new key for a new request"
    )]
    Reused,
    /// The earlier request with this key is still starting after the whole lease (the store
    /// keeps answering with new claims): nothing was started.
    #[error("an earlier request with this Idempotency-Key is still starting")]
    StillStarting,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `Idempotency-Key` of a request, if it sent one; [`IdempotencyError::Malformed`] for a
/// repeated header or a value that is not 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn key_in(headers: &HeaderMap) -> Result<Option<String>, IdempotencyError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let visible = |b: &u8| (0x21..=0x7e).contains(b);
    if values.next().is_some() || bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(visible) {
        return Err(IdempotencyError::Malformed);
    }
    // Visible ASCII is UTF-8.
    String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| IdempotencyError::Malformed)
}

/// The hash two requests with one key are compared by: lower-case hex SHA-256 of the method,
/// path, query and body, each length-prefixed (so no two different requests run together
/// into the same text).
pub fn request_hash(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let query = query.map(str::as_bytes);
    for part in [Some(method.as_bytes()), Some(path.as_bytes()), query, Some(body)] {
        match part {
            Some(bytes) => {
                context.update(format!("{}:", bytes.len()).as_bytes());
                context.update(bytes);
            }
            None => context.update(b"-"),
        }
    }
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A request that carries a key: the key in its scope, and the request's hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed {
    pub key: IdempotencyKey,
    pub request_hash: String,
}

/// How a claim went.
#[derive(Debug)]
pub enum Claimed {
    /// This request holds the key: it starts, then completes or releases the claim.
    Won(Claim),
    /// An earlier request with the key answers this one.
    Repeat(StoredAnswer),
}

/// A won claim.
#[derive(Debug)]
pub struct Claim {
    key: IdempotencyKey,
    token: String,
    claimed_at: Timestamp,
}

/// The answer of an earlier request with `request`'s key, waiting while it is starting; None
/// when there is none (the caller goes on, and claims before it starts anything).
pub async fn earlier(store: &dyn IdempotencyStore, request: &Keyed) -> Result<Option<StoredAnswer>, IdempotencyError> {
    match store.get_key(&request.key).await? {
        Some(existing) => answer_of(store, request, existing, Instant::now() + PENDING_LEASE).await,
        None => Ok(None),
    }
}

/// Claims `request`'s key with the answer it will get (see the module doc).
pub async fn claim(
    store: &dyn IdempotencyStore,
    request: &Keyed,
    answer: StoredAnswer,
) -> Result<Claimed, IdempotencyError> {
    let give_up_at = Instant::now() + PENDING_LEASE;
    loop {
        let claimed_at = now();
        let record = IdempotencyRecord {
            request_hash: request.request_hash.clone(),
            answer: answer.clone(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            state: ClaimState::Pending,
            claimed_at,
            expires_at: after(claimed_at, PENDING_LEASE),
        };
        let existing = match store.claim_key(&request.key, &record).await? {
            FirstWrite::Written => {
                return Ok(Claimed::Won(Claim { key: request.key.clone(), token: record.token, claimed_at }));
            }
            FirstWrite::Existing(existing) => existing,
        };
        if let Some(answer) = answer_of(store, request, existing, give_up_at).await? {
            return Ok(Claimed::Repeat(answer));
        }
        // The earlier claim was released or lapsed: claim again.
    }
}

/// What the live record `existing` answers `request`: its answer once it is done (polling
/// while it is pending), None if it disappears meanwhile.
async fn answer_of(
    store: &dyn IdempotencyStore,
    request: &Keyed,
    mut existing: IdempotencyRecord,
    give_up_at: Instant,
) -> Result<Option<StoredAnswer>, IdempotencyError> {
    let mut interval = FIRST_POLL;
    loop {
        if existing.request_hash != request.request_hash {
            return Err(IdempotencyError::Reused);
        }
        if existing.state == ClaimState::Done {
            return Ok(Some(existing.answer));
        }
        if Instant::now() >= give_up_at {
            return Err(IdempotencyError::StillStarting);
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_POLL);
        match store.get_key(&request.key).await? {
            Some(record) => existing = record,
            None => return Ok(None),
        }
    }
}

impl Claim {
    /// The start went through (or created its execution before failing): the answer stands
    /// for [`REMEMBERED`] from the claim. Tried [`COMPLETE_TRIES`] times; false when the
    /// claim was not this one's any more (it lapsed and was claimed again).
    pub async fn complete(&self, store: &dyn IdempotencyStore) -> Result<bool, StoreError> {
        let expires_at = after(self.claimed_at, REMEMBERED);
        let mut tries = 0;
        loop {
            tries += 1;
            match store.complete_key(&self.key, &self.token, expires_at).await {
                Err(error) if error.is_retryable() && tries < COMPLETE_TRIES => {
                    tokio::time::sleep(FIRST_POLL * 10 * tries as u32).await;
                }
                done => return done,
            }
        }
    }

    /// Nothing was started: frees the key for the client's retry.
    pub async fn release(&self, store: &dyn IdempotencyStore) -> Result<bool, StoreError> {
        store.release_key(&self.key, &self.token).await
    }
}

fn after(at: Timestamp, duration: Duration) -> Timestamp {
    at + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(HEADER, HeaderValue::from_bytes(value).expect("a header value"));
        }
        headers
    }

    #[test]
    fn a_key_of_1_to_255_visible_ascii_characters_is_taken_as_sent() {
        assert_eq!(key_in(&headers(&[])).expect("no key"), None);
        let longest = "k".repeat(MAX_KEY_LEN);
        for key in ["a", "8e03978e-40d5-43e8-bc93-6894a57f9324", "~!#$%&'*+.^_`|:\"(),/;<=>?@[]{}\\", &longest] {
            assert_eq!(key_in(&headers(&[key.as_bytes()])).expect(key).as_deref(), Some(key));
        }
    }

    #[test]
    fn an_empty_long_spaced_control_non_ascii_or_repeated_key_is_malformed() {
        let too_long = "k".repeat(MAX_KEY_LEN + 1);
        let refused: [&[&[u8]]; 6] =
            [&[b""], &[too_long.as_bytes()], &[b"two words"], &[b"tab\there"], &[b"caf\xc3\xa9"], &[b"a", b"a"]];
        for values in refused {
            assert!(matches!(key_in(&headers(values)), Err(IdempotencyError::Malformed)), "{values:?}");
        }
    }

    #[test]
    fn the_request_hash_tells_method_path_query_and_body_apart() {
        let base = request_hash("POST", "/p/x", Some("a=1"), b"{}");
        assert_eq!(base, request_hash("POST", "/p/x", Some("a=1"), b"{}"), "stable");
        assert_eq!(base.len(), 64);
        for other in [
            request_hash("PUT", "/p/x", Some("a=1"), b"{}"),
            request_hash("POST", "/p/y", Some("a=1"), b"{}"),
            request_hash("POST", "/p/x", Some("a=2"), b"{}"),
            request_hash("POST", "/p/x", None, b"{}"),
            request_hash("POST", "/p/x", Some(""), b"{}"),
            request_hash("POST", "/p/x", Some("a=1"), b"{ }"),
            request_hash("POST", "/p/x", Some("a=1{"), b"}"),
        ] {
            assert_ne!(base, other);
        }
    }
}
