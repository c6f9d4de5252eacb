//! Cases for `IdempotencyStore`: one claim per live key, what a second claim sees, expiry,
//! completion and release by the claim's own token, and keys scoped by project, route and
//! caller. Expiries are short ones passed in: no case waits more than a fraction of a second.

use std::time::Duration;

use serde_json::json;

use super::{at_ms, join_all, unique};
use crate::ports::{ClaimState, FirstWrite, IdempotencyKey, IdempotencyRecord, Store, StoredAnswer};
use crate::record::{Timestamp, now};

/// How long a short-lived claim of these cases lives.
const SHORT: Duration = Duration::from_millis(300);

fn key(project_id: &str) -> IdempotencyKey {
    IdempotencyKey {
        project_id: project_id.to_string(),
        route: "trigger:wf".to_string(),
        caller: unique("user"),
        key: unique("key"),
    }
}

/// Now, to the millisecond (what the stores keep), plus `ahead`.
fn in_ms(ahead: Duration) -> Timestamp {
    let at = now() + chrono::Duration::from_std(ahead).expect("a short duration");
    at_ms(at.timestamp_millis())
}

fn record(hash: &str, token: &str, lives: Duration) -> IdempotencyRecord {
    IdempotencyRecord {
        request_hash: hash.to_string(),
        answer: StoredAnswer::Fixed { status: 202, body: json!({ "executionId": unique("e"), "token": token }) },
        token: token.to_string(),
        state: ClaimState::Pending,
        claimed_at: in_ms(Duration::ZERO),
        expires_at: in_ms(lives),
    }
}

fn written<T: std::fmt::Debug>(claim: FirstWrite<T>) -> bool {
    matches!(claim, FirstWrite::Written)
}

/// The first claim writes; a second claim of the live key changes nothing and sees the first
/// record as written (hash, answer, token, state, times to the millisecond), as a read does.
pub async fn case_idempotency_key_is_claimed_once(store: &dyn Store) {
    let key = key(&unique("p"));
    assert_eq!(store.get_key(&key).await.expect("none yet"), None);
    let first = record("hash-a", "t1", Duration::from_secs(60));
    assert!(written(store.claim_key(&key, &first).await.expect("claim")));
    let again = store.claim_key(&key, &record("hash-a", "t2", Duration::from_secs(60))).await.expect("claim again");
    assert_eq!(again, FirstWrite::Existing(first.clone()));
    assert_eq!(store.get_key(&key).await.expect("read"), Some(first));
    let settled = IdempotencyRecord {
        answer: StoredAnswer::Settled { execution_id: unique("e") },
        ..record("hash-s", "t3", Duration::from_secs(60))
    };
    let other = IdempotencyKey { key: unique("key"), ..key };
    assert!(written(store.claim_key(&other, &settled).await.expect("claim settled")));
    assert_eq!(store.get_key(&other).await.expect("read settled"), Some(settled), "both answers round-trip");
}

/// A claim made for another request (another hash) sees the first request's hash: the store
/// keeps the first, and the caller can tell the requests apart.
pub async fn case_idempotency_claim_with_another_hash_sees_the_first_hash(store: &dyn Store) {
    let key = key(&unique("p"));
    let first = record("hash-a", "t1", Duration::from_secs(60));
    assert!(written(store.claim_key(&key, &first).await.expect("claim")));
    match store.claim_key(&key, &record("hash-b", "t2", Duration::from_secs(60))).await.expect("claim") {
        FirstWrite::Existing(existing) => {
            assert_eq!((existing.request_hash.as_str(), existing.token.as_str()), ("hash-a", "t1"));
        }
        FirstWrite::Written => panic!("a live key was claimed twice"),
    }
    assert_eq!(store.get_key(&key).await.expect("read").map(|r| r.request_hash), Some("hash-a".to_string()));
}

/// Once its expiry has passed, a record reads as absent, and a new claim (even for another
/// request) writes over it.
pub async fn case_expired_idempotency_key_can_be_claimed_again(store: &dyn Store) {
    let key = key(&unique("p"));
    assert!(written(store.claim_key(&key, &record("hash-a", "t1", SHORT)).await.expect("claim")));
    assert!(!written(store.claim_key(&key, &record("hash-a", "t2", SHORT)).await.expect("while live")));
    tokio::time::sleep(SHORT + Duration::from_millis(50)).await;
    assert_eq!(store.get_key(&key).await.expect("read"), None, "an expired record is absent");
    let fresh = record("hash-b", "t3", Duration::from_secs(60));
    assert!(written(store.claim_key(&key, &fresh).await.expect("claim after expiry")));
    assert_eq!(store.get_key(&key).await.expect("read"), Some(fresh));
    assert!(!store.complete_key(&key, "t1", in_ms(Duration::from_secs(60))).await.expect("stale complete"));
    assert!(!store.release_key(&key, "t1").await.expect("stale release"), "the old claim's token is no longer it");
}

/// Only the claim's own token completes it (Done, with the new expiry) or releases it; a
/// released key can be claimed again.
pub async fn case_idempotency_claim_is_completed_or_released_by_its_token(store: &dyn Store) {
    let key = key(&unique("p"));
    let first = record("hash-a", "t1", SHORT);
    assert!(written(store.claim_key(&key, &first).await.expect("claim")));
    let day = in_ms(Duration::from_secs(24 * 3600));
    assert!(!store.complete_key(&key, "not-mine", day).await.expect("complete with another token"));
    assert!(store.complete_key(&key, "t1", day).await.expect("complete"));
    let done = store.get_key(&key).await.expect("read").expect("live");
    assert_eq!((done.state, done.expires_at), (ClaimState::Done, day));
    tokio::time::sleep(SHORT + Duration::from_millis(50)).await;
    assert!(store.get_key(&key).await.expect("read").is_some(), "completion moved the expiry on");

    let other = IdempotencyKey { key: unique("key"), ..key.clone() };
    assert!(written(store.claim_key(&other, &record("hash-a", "t2", Duration::from_secs(60))).await.expect("claim")));
    assert!(!store.release_key(&other, "not-mine").await.expect("release with another token"));
    assert!(store.get_key(&other).await.expect("read").is_some());
    assert!(store.release_key(&other, "t2").await.expect("release"));
    assert_eq!(store.get_key(&other).await.expect("read"), None);
    assert!(!store.release_key(&other, "t2").await.expect("release twice"));
    assert!(!store.complete_key(&other, "t2", day).await.expect("complete after release"));
    assert!(written(store.claim_key(&other, &record("hash-b", "t3", Duration::from_secs(60))).await.expect("again")));
}

/// Of `concurrency` claims of one key made at once, exactly one writes; every other sees the
/// winner's record.
pub async fn case_concurrent_idempotency_claims_have_one_winner(store: &dyn Store, concurrency: usize) {
    let key = key(&unique("p"));
    let records: Vec<IdempotencyRecord> =
        (0..concurrency).map(|i| record("hash-a", &format!("t{i}"), Duration::from_secs(60))).collect();
    let outcomes = join_all(records.iter().map(|r| store.claim_key(&key, r))).await;
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for (outcome, record) in outcomes.into_iter().zip(&records) {
        match outcome.expect("claim") {
            FirstWrite::Written => winners.push(record.token.clone()),
            FirstWrite::Existing(existing) => seen.push(existing.token),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    assert!(seen.iter().all(|token| *token == winners[0]), "every loser sees the winner: {seen:?}");
    assert_eq!(store.get_key(&key).await.expect("read").map(|r| r.token), Some(winners[0].clone()));
}

/// The same key in another project, on another route or from another caller is another key.
pub async fn case_idempotency_keys_are_isolated_by_project_route_and_caller(store: &dyn Store) {
    let key = key(&unique("p"));
    let first = record("hash-a", "t1", Duration::from_secs(60));
    assert!(written(store.claim_key(&key, &first).await.expect("claim")));
    let others = [
        IdempotencyKey { project_id: unique("p"), ..key.clone() },
        IdempotencyKey { route: "trigger:other".into(), ..key.clone() },
        IdempotencyKey { route: "sdk-events".into(), ..key.clone() },
        IdempotencyKey { caller: unique("user"), ..key.clone() },
        // Parts that run together the same way are still different keys.
        IdempotencyKey {
            caller: format!("{}{}", key.caller, &key.key[..1]),
            key: key.key[1..].to_string(),
            ..key.clone()
        },
    ];
    for (i, other) in others.iter().enumerate() {
        assert_eq!(store.get_key(other).await.expect("read"), None, "{other:?}");
        let own = record("hash-b", &format!("o{i}"), Duration::from_secs(60));
        assert!(written(store.claim_key(other, &own).await.expect("claim")), "{other:?} is its own key");
        assert!(store.release_key(other, &own.token).await.expect("release"));
    }
    assert_eq!(store.get_key(&key).await.expect("read"), Some(first), "the first key is untouched");
}
