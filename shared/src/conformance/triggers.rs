//! Cases for the triggers' ports: the schedule ledger (rows, the due listing across projects,
//! compare and swap, per-project listing), polling seen-sets, kept webhook deliveries, and the
//! project's user listing the scheduler walks.
//!
//! Invariants: every case uses fresh project ids. The due listing spans every project, so the
//! due case puts its rows at a random instant of 1990 and only ever asks up to a moment after
//! it; every other ledger row of these cases fires in 2030 or later, and what a page holds of
//! other cases' rows is skipped by project id. Delivery ids are UUIDv7 made from the
//! delivery's `received_at`, as the webhook route makes them (the order both stores list in).

use std::collections::{BTreeMap, BTreeSet};

use super::{at_ms, join_all, unique};
use crate::ports::{
    CredentialRecord, CredentialStatus, DeliveredEvent, DueCursor, MAX_DUE_PAGE, MAX_SEEN_KEYS, RouteLookup, Routes,
    ScheduleEntry, SeenSet, Store, Switch, WEBHOOK_RETENTION_DAYS, WebhookDelivery,
};
use crate::record::{Timestamp, now};

/// 2030-01-01T00:00:00.001Z: when the rows of the cases that do not list due rows fire.
const LATER: i64 = 1_893_456_000_001;

fn entry(project_id: &str, workflow_id: &str, user_id: &str, next_fire: Option<Timestamp>) -> ScheduleEntry {
    ScheduleEntry {
        project_id: project_id.to_string(),
        workflow_id: workflow_id.to_string(),
        user_id: user_id.to_string(),
        next_fire,
        version: 1,
        zone: "UTC".to_string(),
        last_fire: None,
        last_execution_id: None,
        fired: 0,
        skipped: 0,
        missed: 0,
        last_note: None,
        updated_at: at_ms(1_764_000_000_007),
    }
}

/// Every row due by `until`, page after page of `limit`, of the given projects only; and how
/// many pages it took.
async fn all_due(
    store: &dyn Store,
    until: Timestamp,
    limit: usize,
    projects: &BTreeSet<String>,
) -> (Vec<ScheduleEntry>, usize) {
    let (mut found, mut pages, mut cursor): (Vec<ScheduleEntry>, usize, Option<DueCursor>) = (Vec::new(), 0, None);
    loop {
        let (page, next) = store.due_schedules(until, cursor.as_ref(), limit).await.expect("due page");
        pages += 1;
        assert!(page.len() <= limit, "a page of {} rows for a limit of {limit}", page.len());
        assert!(page.iter().all(|e| e.next_fire.is_some_and(|at| at <= until)), "only rows due by `until`");
        found.extend(page.into_iter().filter(|e| projects.contains(&e.project_id)));
        match next {
            Some(next) => cursor = Some(next),
            None => return (found, pages),
        }
        assert!(pages < 10_000, "the due listing does not end");
    }
}

/// A row is written whole, replaced whole, read back exactly (timestamps to the millisecond,
/// a user id holding the key separator) and deleted once.
pub async fn case_schedule_rows_are_put_replaced_and_deleted(store: &dyn Store) {
    let (project, user) = (unique("p"), format!("{}#x@example.com", unique("u")));
    assert_eq!(store.get_schedule(&project, "wf", &user).await.expect("none yet"), None);
    let first = ScheduleEntry {
        last_fire: Some(at_ms(LATER - 60_000)),
        last_execution_id: Some(unique("e")),
        fired: 3,
        skipped: 2,
        missed: 1,
        last_note: Some("skipped: the previous run is still going".to_string()),
        zone: "America/New_York".to_string(),
        ..entry(&project, "wf", &user, Some(at_ms(LATER)))
    };
    store.put_schedule(&first).await.expect("put");
    assert_eq!(store.get_schedule(&project, "wf", &user).await.expect("get"), Some(first.clone()));
    assert_eq!(store.get_schedule(&project, "wf", "other").await.expect("another user"), None);
    assert_eq!(store.get_schedule(&project, "wf-2", &user).await.expect("another workflow"), None);
    assert_eq!(store.get_schedule(&unique("p"), "wf", &user).await.expect("another project"), None);
    let parked = ScheduleEntry { version: 2, last_note: None, ..entry(&project, "wf", &user, None) };
    store.put_schedule(&parked).await.expect("replace");
    assert_eq!(store.get_schedule(&project, "wf", &user).await.expect("get"), Some(parked), "replaced whole");
    assert!(store.delete_schedule(&project, "wf", &user).await.expect("delete"));
    assert_eq!(store.get_schedule(&project, "wf", &user).await.expect("gone"), None);
    assert!(!store.delete_schedule(&project, "wf", &user).await.expect("delete again"), "nothing left");
}

/// Rows of several projects come out of the due listing in `next_fire` order, every one
/// exactly once across pages (ties at one millisecond straddle a page boundary); parked rows
/// and rows due after `until` never do, and parking a row takes it out at once.
pub async fn case_due_rows_are_listed_in_order_once_each_across_pages(store: &dyn Store) {
    let base = 631_152_000_000 + i64::from(uuid::Uuid::new_v4().as_u128() as u32 % 1_000_000_000);
    let projects: Vec<String> = (0..3).map(|_| unique("p")).collect();
    let mut expected = Vec::new();
    for i in 0..25i64 {
        // Three rows per millisecond, spread over the projects.
        let project = &projects[(i % 3) as usize];
        let row = entry(project, &format!("wf-{}", i % 2), &format!("u{i:02}"), Some(at_ms(base + (i / 3) * 7)));
        store.put_schedule(&row).await.expect("put due row");
        expected.push(row);
    }
    for project in &projects {
        store.put_schedule(&entry(project, "parked", "u", None)).await.expect("put parked row");
        store.put_schedule(&entry(project, "later", "u", Some(at_ms(base + 1_000)))).await.expect("put later row");
    }
    let until = at_ms(base + 999);
    let wanted: BTreeSet<String> = projects.iter().cloned().collect();
    let (found, pages) = all_due(store, until, 10, &wanted).await;
    assert!(pages >= 3, "25 rows in pages of 10 take at least 3 pages, took {pages}");
    assert!(found.windows(2).all(|w| w[0].next_fire <= w[1].next_fire), "ordered by next fire");
    let key = |e: &ScheduleEntry| (e.project_id.clone(), e.workflow_id.clone(), e.user_id.clone());
    let mut seen: Vec<_> = found.iter().map(key).collect();
    seen.sort();
    let mut want: Vec<_> = expected.iter().map(key).collect();
    want.sort();
    assert_eq!(seen, want, "every due row exactly once, no parked or later row");
    let mut by_key: BTreeMap<_, _> = found.iter().map(|e| (key(e), e.clone())).collect();
    assert!(expected.iter().all(|e| by_key.remove(&key(e)).as_ref() == Some(e)), "rows read back whole");

    // One page as large as allowed, and a limit over the cap, read the same rows.
    let (whole, pages) = all_due(store, until, MAX_DUE_PAGE + 1, &wanted).await;
    assert_eq!((whole.len(), pages <= 2), (25, true), "a page holds up to MAX_DUE_PAGE rows");

    // Parked now: gone from the listing at once; due again: back.
    let moved = expected[0].clone();
    store.put_schedule(&ScheduleEntry { next_fire: None, ..moved.clone() }).await.expect("park");
    let (found, _) = all_due(store, until, 100, &wanted).await;
    assert!(found.iter().all(|e| key(e) != key(&moved)), "a parked row is not due");
    assert_eq!(found.len(), 24);
    store.put_schedule(&moved).await.expect("due again");
    let (found, _) = all_due(store, until, 100, &wanted).await;
    assert_eq!(found.len(), 25);
    let (none, _) = all_due(store, at_ms(base - 1), 10, &wanted).await;
    assert_eq!(none, Vec::new(), "nothing is due before the first row");
}

/// Of concurrent advances of one expected row exactly one wins; stale expectations (next
/// fire or version) lose; a parked row advances from parked; a deleted row is not recreated.
pub async fn case_advance_is_a_compare_and_swap(store: &dyn Store) {
    let project = unique("p");
    let row = entry(&project, "wf", "u", Some(at_ms(LATER)));
    store.put_schedule(&row).await.expect("put");
    let nexts: Vec<ScheduleEntry> = (1..=8i64)
        .map(|i| ScheduleEntry {
            next_fire: Some(at_ms(LATER + i * 60_000)),
            last_fire: row.next_fire,
            last_execution_id: Some(format!("e{i}")),
            fired: 1,
            ..row.clone()
        })
        .collect();
    let won = join_all(nexts.iter().map(|next| store.advance_schedule(&row, next))).await;
    let winners: Vec<usize> =
        won.iter().enumerate().filter(|(_, w)| *w.as_ref().expect("advance")).map(|(i, _)| i).collect();
    let [winner] = winners.as_slice() else { panic!("exactly one of 8 concurrent advances wins: {winners:?}") };
    let stored = store.get_schedule(&project, "wf", "u").await.expect("get").expect("kept");
    assert_eq!(stored, nexts[*winner], "the winner's row is stored");

    assert!(!store.advance_schedule(&row, &nexts[0]).await.expect("stale"), "its next fire moved on");
    let other_version = ScheduleEntry { version: 9, ..stored.clone() };
    assert!(!store.advance_schedule(&other_version, &stored).await.expect("stale version"), "the version differs");
    let parked = ScheduleEntry { next_fire: None, version: 2, ..stored.clone() };
    assert!(store.advance_schedule(&stored, &parked).await.expect("park"));
    assert!(!store.advance_schedule(&stored, &nexts[0]).await.expect("parked meanwhile"), "a parked row is not due");
    assert!(store.advance_schedule(&parked, &stored).await.expect("unpark"), "a parked row advances from parked");
    assert_eq!(store.get_schedule(&project, "wf", "u").await.expect("get"), Some(stored.clone()));

    assert!(store.delete_schedule(&project, "wf", "u").await.expect("delete"));
    assert!(!store.advance_schedule(&stored, &nexts[1]).await.expect("gone"), "a deleted row stays deleted");
    let parked_gone = ScheduleEntry { next_fire: None, ..stored.clone() };
    assert!(!store.advance_schedule(&parked_gone, &stored).await.expect("gone"), "even one expected parked");
    assert_eq!(store.get_schedule(&project, "wf", "u").await.expect("get"), None, "not recreated");
}

/// A project's rows list by workflow then user, one workflow's only when asked (never a
/// workflow whose id starts with it), in pages that resume after a (workflow, user).
pub async fn case_list_schedules_filters_by_workflow_and_pages(store: &dyn Store) {
    let (project, other) = (unique("p"), unique("p"));
    let mut rows = Vec::new();
    for workflow in ["wa", "wa-b", "wb"] {
        for user in ["u1", "u#3", "u2"] {
            let row = entry(&project, workflow, user, Some(at_ms(LATER)));
            store.put_schedule(&row).await.expect("put");
            rows.push(row);
        }
    }
    store.put_schedule(&entry(&other, "wa", "u1", None)).await.expect("another project's row");
    rows.sort_by(|a, b| (&a.workflow_id, &a.user_id).cmp(&(&b.workflow_id, &b.user_id)));
    assert_eq!(store.list_schedules(&project, None, None, 100).await.expect("list"), rows);

    let mut paged = Vec::new();
    loop {
        let after = paged.last().map(|e: &ScheduleEntry| (e.workflow_id.clone(), e.user_id.clone()));
        let after = after.as_ref().map(|(w, u)| (w.as_str(), u.as_str()));
        let page = store.list_schedules(&project, None, after, 2).await.expect("page");
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, rows, "pages of 2 list every row once");

    let wa: Vec<ScheduleEntry> = rows.iter().filter(|e| e.workflow_id == "wa").cloned().collect();
    assert_eq!(store.list_schedules(&project, Some("wa"), None, 100).await.expect("wa"), wa, "not wa-b's rows");
    let after_first = store.list_schedules(&project, Some("wa"), Some(("wa", &wa[0].user_id)), 1).await.expect("page");
    assert_eq!(after_first, wa[1..2].to_vec());
    let from_before = store.list_schedules(&project, Some("wb"), Some(("wa-b", "u2")), 100).await.expect("before wb");
    assert_eq!(from_before.len(), 3, "a position before the workflow's rows starts at its first");
    let past = store.list_schedules(&project, Some("wa"), Some(("wb", "u1")), 100).await.expect("after wa");
    assert_eq!(past, Vec::new(), "a position after the workflow's rows leaves none");
    assert_eq!(store.list_schedules(&project, None, None, 0).await.expect("limit 0"), Vec::new());
    assert_eq!(store.list_schedules(&unique("p"), None, None, 10).await.expect("unknown project"), Vec::new());
}

/// A seen-set starts empty at version 0; each put is a compare and swap on the version; it is
/// kept per (workflow, user) until deleted.
pub async fn case_seen_sets_are_swapped_by_version(store: &dyn Store) {
    let (project, user) = (unique("p"), format!("{}#1", unique("u")));
    let keys = |names: &[&str]| names.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(store.get_seen(&project, "wf", &user).await.expect("none"), SeenSet::default());
    assert!(store.put_seen(&project, "wf", &user, &keys(&["a", "b"]), 0).await.expect("first"));
    assert!(!store.put_seen(&project, "wf", &user, &keys(&["x"]), 0).await.expect("first again"), "a second first");
    assert_eq!(
        store.get_seen(&project, "wf", &user).await.expect("read"),
        SeenSet { keys: keys(&["a", "b"]), version: 1 }
    );
    assert!(!store.put_seen(&project, "wf", &user, &keys(&["x"]), 2).await.expect("ahead"), "version 2 is not stored");
    let (p, u) = (project.as_str(), user.as_str());
    let both = join_all((0..4).map(|i| {
        let next = keys(&["a", "b", ["c", "d", "e", "f"][i]]);
        async move { store.put_seen(p, "wf", u, &next, 1).await.expect("swap") }
    }))
    .await;
    assert_eq!(both.iter().filter(|won| **won).count(), 1, "one of concurrent swaps from version 1 wins");
    let stored = store.get_seen(&project, "wf", &user).await.expect("read");
    assert_eq!((stored.version, stored.keys.len()), (2, 3));
    assert!(store.put_seen(&project, "wf", &user, &[], 2).await.expect("empty"), "an empty set is a set");
    assert_eq!(store.get_seen(&project, "wf", &user).await.expect("read"), SeenSet { keys: vec![], version: 3 });

    assert_eq!(store.get_seen(&project, "wf-2", &user).await.expect("other workflow"), SeenSet::default());
    assert_eq!(store.get_seen(&project, "wf", "u").await.expect("other user"), SeenSet::default());
    assert_eq!(store.get_seen(&unique("p"), "wf", &user).await.expect("other project"), SeenSet::default());
    assert!(store.delete_seen(&project, "wf", &user).await.expect("delete"));
    assert!(!store.delete_seen(&project, "wf", &user).await.expect("delete again"));
    assert_eq!(store.get_seen(&project, "wf", &user).await.expect("gone"), SeenSet::default());
    assert!(store.put_seen(&project, "wf", &user, &keys(&["z"]), 0).await.expect("first after a delete"));
}

/// A seen-set keeps the newest [`MAX_SEEN_KEYS`] keys (the last given), oldest first.
pub async fn case_seen_sets_keep_the_newest_keys(store: &dyn Store) {
    let project = unique("p");
    // 24 hex characters: the size of the key hashes polls store (`crate::fires::key_hash`).
    let keys: Vec<String> = (0..MAX_SEEN_KEYS + 5).map(|i| format!("{i:024x}")).collect();
    assert!(store.put_seen(&project, "wf", "u", &keys, 0).await.expect("put"));
    let stored = store.get_seen(&project, "wf", "u").await.expect("read");
    assert_eq!(stored.keys, keys[5..].to_vec(), "the oldest 5 are forgotten");
    assert!(store.put_seen(&project, "wf", "u", &keys[..3], 1).await.expect("put fewer"));
    assert_eq!(store.get_seen(&project, "wf", "u").await.expect("read").keys, keys[..3].to_vec());
}

/// A delivery received `ago` ms before now (to the millisecond), with a UUIDv7 id of then.
fn delivery(project_id: &str, integration: &str, ago: i64, unrouted: bool) -> WebhookDelivery {
    let received_at = at_ms(now().timestamp_millis() - ago);
    let ms = u64::try_from(received_at.timestamp_millis()).expect("after 1970");
    let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000));
    WebhookDelivery {
        id: id.to_string(),
        project_id: project_id.to_string(),
        integration: integration.to_string(),
        received_at,
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        body: format!(r#"{{"integration":"{integration}","ago":{ago},"text":"a \"quote\"\nand é"}}"#),
        events: vec![DeliveredEvent {
            event_id: Some(unique("ev")),
            event_type: Some("message".to_string()),
            outcome: if unrouted { "unrouted" } else { "routed" }.to_string(),
            identity: Some("T1".to_string()),
            users: if unrouted { vec![] } else { vec!["u1".to_string()] },
            executions: if unrouted { vec![] } else { vec![unique("e")] },
        }],
        unrouted,
    }
}

fn ids(deliveries: &[WebhookDelivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

/// Deliveries read back whole and list newest first, of one integration or only the unrouted
/// ones when asked, in pages before an earlier page's last id; expired ones and other
/// projects' never show.
pub async fn case_deliveries_are_listed_newest_first(store: &dyn Store) {
    let (project, other) = (unique("p"), unique("p"));
    let mut kept = Vec::new();
    for i in 0..12i64 {
        let integration = if i % 3 == 0 { "hubspot" } else { "slack" };
        let delivery = delivery(&project, integration, (i + 1) * 60_000, i % 4 == 1);
        store.put_delivery(&delivery).await.expect("put");
        kept.push(delivery);
    }
    let day = 24 * 60 * 60 * 1000;
    let expired = delivery(&project, "slack", WEBHOOK_RETENTION_DAYS * day + 60_000, true);
    store.put_delivery(&expired).await.expect("put an expired delivery");
    store.put_delivery(&delivery(&other, "slack", 30_000, true)).await.expect("another project's");

    assert_eq!(store.get_delivery(&project, &kept[4].id).await.expect("get"), Some(kept[4].clone()));
    assert_eq!(store.get_delivery(&project, &expired.id).await.expect("get expired"), None, "expired");
    assert_eq!(store.get_delivery(&other, &kept[4].id).await.expect("other project"), None);
    let replaced = WebhookDelivery { events: vec![], unrouted: false, ..kept[5].clone() };
    store.put_delivery(&replaced).await.expect("replace");
    assert_eq!(store.get_delivery(&project, &replaced.id).await.expect("get"), Some(replaced.clone()));
    kept[5] = replaced;

    // `kept` is oldest last: newest first is its order.
    let all = store.list_deliveries(&project, None, false, None, 100).await.expect("list");
    assert_eq!(all, kept, "newest first, whole, never the expired one");
    let mut paged = Vec::new();
    loop {
        let before = paged.last().map(|d: &WebhookDelivery| d.id.clone());
        let page = store.list_deliveries(&project, None, false, before.as_deref(), 5).await.expect("page");
        assert!(page.len() <= 5);
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(ids(&paged), ids(&kept), "pages of 5 before the last id list each once");

    let slack: Vec<_> = kept.iter().filter(|d| d.integration == "slack").cloned().collect();
    assert_eq!(store.list_deliveries(&project, Some("slack"), false, None, 100).await.expect("slack"), slack);
    let unrouted: Vec<_> = kept.iter().filter(|d| d.unrouted).cloned().collect();
    assert_eq!(unrouted.len(), 2, "one was replaced as routed");
    assert_eq!(store.list_deliveries(&project, None, true, None, 100).await.expect("unrouted"), unrouted);
    let both: Vec<_> = unrouted.iter().filter(|d| d.integration == "slack").cloned().collect();
    assert_eq!(store.list_deliveries(&project, Some("slack"), true, None, 100).await.expect("both"), both);
    let first_slack = store.list_deliveries(&project, Some("slack"), false, None, 2).await.expect("page");
    assert_eq!(ids(&first_slack), ids(&slack[..2]));
    let next_slack =
        store.list_deliveries(&project, Some("slack"), false, Some(&slack[1].id), 3).await.expect("next page");
    assert_eq!(ids(&next_slack), ids(&slack[2..5]));
    let last = kept.last().map(|d| d.id.clone()).expect("deliveries");
    assert_eq!(store.list_deliveries(&project, None, false, Some(&last), 10).await.expect("after the last"), vec![]);
    assert_eq!(store.list_deliveries(&project, Some("github"), false, None, 10).await.expect("none"), vec![]);
    assert_eq!(store.list_deliveries(&unique("p"), None, false, None, 10).await.expect("unknown"), vec![]);
}

/// A kept delivery's event ids are known to `delivered_events` (not those of `duplicate`
/// events, nor another integration's or project's), in the order asked.
pub async fn case_delivered_event_ids_are_recognised(store: &dyn Store) {
    let project = unique("p");
    let mut kept = delivery(&project, "slack", 0, false);
    let first = kept.events[0].event_id.clone().expect("an id");
    let mut duplicate = kept.events[0].clone();
    duplicate.event_id = Some(unique("dup"));
    duplicate.outcome = "duplicate".to_string();
    kept.events.push(duplicate.clone());
    store.put_delivery(&kept).await.expect("put");
    let asked = [unique("never"), first.clone(), duplicate.event_id.clone().expect("an id"), first.clone()];
    let seen = store.delivered_events(&project, "slack", &asked).await.expect("read");
    assert_eq!(seen, [false, true, false, true]);
    assert_eq!(store.delivered_events(&project, "hubspot", std::slice::from_ref(&first)).await.expect("read"), [false]);
    assert_eq!(store.delivered_events(&unique("p"), "slack", &[first]).await.expect("read"), [false]);
    assert!(store.delivered_events(&project, "slack", &[]).await.expect("read").is_empty());
    let too_many: Vec<String> = (0..=crate::ports::MAX_EVENT_IDS).map(|i| i.to_string()).collect();
    assert!(matches!(
        store.delivered_events(&project, "slack", &too_many).await,
        Err(crate::ports::StoreError::TooLarge(_))
    ));
}

/// A body of 256 KiB full of characters JSON escapes (quotes, newlines, control characters)
/// is kept exactly.
pub async fn case_a_large_delivery_body_round_trips(store: &dyn Store) {
    let project = unique("p");
    let pattern = "\"\n\u{1}é\\x";
    let body: String = pattern.repeat(256 * 1024 / pattern.len());
    let big = WebhookDelivery { body, ..delivery(&project, "custom.acme", 1_000, false) };
    store.put_delivery(&big).await.expect("put a large delivery");
    assert_eq!(store.get_delivery(&project, &big.id).await.expect("get"), Some(big.clone()));
    assert_eq!(store.list_deliveries(&project, None, false, None, 10).await.expect("list"), vec![big]);
}

/// `route_lookup` answers in one call what `delivered_events`, `users_by_identity` and
/// `enablement` answer one at a time: per event id and per identity value, in order, and the
/// choices of every user named (and of no one else).
pub async fn case_route_lookup_reads_what_the_single_reads_read(store: &dyn Store) {
    let project = unique("p");
    let kept = delivery(&project, "slack", 0, false);
    let first = kept.events[0].event_id.clone().expect("an id");
    store.put_delivery(&kept).await.expect("put");
    let (ada, bob, cy, other) = (unique("u"), unique("u"), unique("u"), unique("u"));
    for (user, team) in [(&ada, "T1"), (&bob, "T1"), (&cy, "T2"), (&other, "T9")] {
        let record = CredentialRecord {
            sealed: crate::crypto::Sealed {
                version: 1,
                wrapped_key: "d2s=".into(),
                nonce: "bm9uY2U=".into(),
                ciphertext: "Y3Q=".into(),
            },
            status: CredentialStatus::Connected,
            expires_at: None,
            updated_at: at_ms(1_800_000_000_000),
            refreshing_until: None,
            identity: BTreeMap::from([("team".to_string(), team.to_string())]),
        };
        store.put_credentials(&project, user, "slack", &record).await.expect("credentials");
    }
    store.set_enabled(&project, &ada, &Switch::Integration("slack".into()), false).await.expect("switch");
    store.set_enabled(&project, &bob, &Switch::Workflow("w".into()), true).await.expect("switch");

    let event_ids = [unique("never"), first.clone()];
    let identities = ["T1".to_string(), "T2".to_string(), "T3".to_string()];
    let lookup = RouteLookup {
        project_id: &project,
        integration: "slack",
        event_ids: &event_ids,
        identity_key: Some("team"),
        identities: &identities,
    };
    let routes = store.route_lookup(&lookup, store).await.expect("lookup");
    assert_eq!(routes.delivered, store.delivered_events(&project, "slack", &event_ids).await.expect("read"));
    assert_eq!(routes.delivered, [false, true]);
    let mut t1 = vec![ada.clone(), bob.clone()];
    t1.sort();
    assert_eq!(routes.users, [t1, vec![cy.clone()], vec![]]);
    for value in &identities {
        let single = store.users_by_identity(&project, "slack", "team", value).await.expect("read");
        let at = identities.iter().position(|v| v == value).expect("asked");
        assert_eq!(routes.users[at], single, "identity {value}");
    }
    assert_eq!(routes.enablement.len(), 3, "ada, bob and cy; not the user of T9");
    for user in [&ada, &bob, &cy] {
        assert_eq!(routes.enablement.get(user), Some(&store.enablement(&project, user).await.expect("read")));
    }
    assert_eq!(routes.enablement[&ada].integrations.get("slack"), Some(&false));
    assert_eq!(routes.enablement[&bob].workflows.get("w"), Some(&true));

    // Without an identity key no event routes; another integration's ids and users are its own.
    let unkeyed = RouteLookup { identity_key: None, ..lookup };
    let routes = store.route_lookup(&unkeyed, store).await.expect("lookup");
    assert_eq!(routes.users, [Vec::<String>::new(), vec![], vec![]]);
    assert!(routes.enablement.is_empty());
    let elsewhere = RouteLookup { integration: "hubspot", ..lookup };
    let routes = store.route_lookup(&elsewhere, store).await.expect("lookup");
    assert_eq!(routes.delivered, [false, false]);
    assert_eq!(routes.users, [Vec::<String>::new(), vec![], vec![]]);
    let empty = RouteLookup { event_ids: &[], identities: &[], ..lookup };
    assert_eq!(store.route_lookup(&empty, store).await.expect("lookup"), Routes::default());
    let too_many: Vec<String> = (0..=crate::ports::MAX_EVENT_IDS).map(|i| i.to_string()).collect();
    for over in [RouteLookup { event_ids: &too_many, ..lookup }, RouteLookup { identities: &too_many, ..lookup }] {
        assert!(matches!(store.route_lookup(&over, store).await, Err(crate::ports::StoreError::TooLarge(_))));
    }
}

/// Every user `ensure_user` or `update_user` recorded is listed once, in id (UTF-8 byte)
/// order, in pages after an earlier page's last id; other projects' users are not.
pub async fn case_users_are_listed_in_order_and_paged(store: &dyn Store) {
    let (project, other) = (unique("p"), unique("p"));
    assert_eq!(store.list_users(&project, None, 10).await.expect("none yet"), Vec::<String>::new());
    let mut users: Vec<String> =
        ["zoe", "Ann", "bob#2", "bob", "émile", "b", "user@example.com"].iter().map(|u| u.to_string()).collect();
    for user in &users {
        assert!(store.ensure_user(&project, user).await.expect("ensure"));
    }
    assert!(!store.ensure_user(&project, "bob").await.expect("again"));
    let described = crate::ports::UserMeta { timezone: Some("Europe/Paris".into()), ..Default::default() };
    store.update_user(&project, "carol", &described).await.expect("a user created by an update");
    store.update_user(&project, "bob", &described).await.expect("an update of a listed user");
    store.ensure_user(&other, "zed").await.expect("another project's user");
    users.push("carol".to_string());
    users.sort();
    assert_eq!(store.list_users(&project, None, 100).await.expect("list"), users);
    let mut paged: Vec<String> = Vec::new();
    loop {
        let page = store.list_users(&project, paged.last().map(String::as_str), 3).await.expect("page");
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, users, "pages of 3 list each user once");
    assert_eq!(store.list_users(&project, Some("bob"), 2).await.expect("after bob"), users[3..5].to_vec());
    assert_eq!(store.list_users(&project, Some("\u{10ffff}"), 10).await.expect("past the end"), Vec::<String>::new());
    assert_eq!(store.list_users(&project, None, 0).await.expect("limit 0"), Vec::<String>::new());
    assert_eq!(store.list_users(&project, Some(""), 2).await.expect("after nothing"), users[..2].to_vec());
    assert_eq!(store.list_users(&other, None, 10).await.expect("other project"), vec!["zed".to_string()]);
}
