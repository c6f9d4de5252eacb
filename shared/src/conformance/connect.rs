//! Cases for the connect layer's ports: integrations, users, enablement, settings,
//! credentials and the index of their identity.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::unique;
use crate::model::project::IntegrationConfig;
use crate::ports::{
    CredentialRecord, CredentialStatus, Enablement, IntegrationRecord, MAX_CREDENTIAL_BYTES, MAX_IDENTITY_ENTRIES,
    MAX_IDENTITY_KEY_CHARS, MAX_IDENTITY_VALUE_CHARS, MAX_SETTING_VALUE_BYTES, MAX_SETTING_VALUES,
    MAX_USERS_BY_IDENTITY, SettingsScope, Store, StoreError, Switch, UserMeta,
};

fn record(name: &str, workflows: &[&str]) -> IntegrationRecord {
    IntegrationRecord {
        name: name.to_string(),
        config: IntegrationConfig { description: Some(format!("{name} integration")), ..IntegrationConfig::default() },
        inputs: BTreeMap::new(),
        workflows: workflows.iter().map(|w| w.to_string()).collect(),
    }
}

/// A deploy replaces a project's integrations; listing is by name; another project sees none.
pub async fn case_integrations_are_replaced_per_project(store: &dyn Store) {
    let (project, other) = (unique("p"), unique("p"));
    assert_eq!(store.list_integrations(&project).await.expect("none yet"), vec![]);
    let first = [record("slack", &["a", "b"]), record("custom.acme", &["c"])];
    store.put_integrations(&project, &first).await.expect("put");
    let listed = store.list_integrations(&project).await.expect("list");
    assert_eq!(listed, vec![first[1].clone(), first[0].clone()], "by name");
    assert_eq!(store.get_integration(&project, "slack").await.expect("get"), Some(first[0].clone()));
    assert_eq!(store.get_integration(&other, "slack").await.expect("other project"), None);
    assert_eq!(store.list_integrations(&other).await.expect("other project"), vec![]);
    let second = [record("slack", &["a"])];
    store.put_integrations(&project, &second).await.expect("redeploy");
    assert_eq!(store.list_integrations(&project).await.expect("list"), second.to_vec(), "custom.acme is gone");
    assert_eq!(store.get_integration(&project, "custom.acme").await.expect("gone"), None);
    store.put_integrations(&project, &[]).await.expect("none");
    assert_eq!(store.list_integrations(&project).await.expect("list"), vec![]);
}

/// A user is created once; metadata updates set what is given and keep the rest; users of
/// one project are not another's.
pub async fn case_users_are_created_once_and_updated_in_part(store: &dyn Store) {
    let (project, other, user) = (unique("p"), unique("p"), unique("u"));
    assert_eq!(store.get_user(&project, &user).await.expect("none"), None);
    assert!(store.ensure_user(&project, &user).await.expect("create"));
    assert!(!store.ensure_user(&project, &user).await.expect("again"), "created once");
    let created = store.get_user(&project, &user).await.expect("get").expect("exists");
    assert_eq!(created.meta, UserMeta::default());
    let meta = UserMeta { name: Some("Ada".into()), email: Some("ada@example.com".into()), timezone: None };
    let updated = store.update_user(&project, &user, &meta).await.expect("update");
    assert_eq!(updated.meta, meta);
    assert_eq!(updated.created_at, created.created_at, "created_at is kept");
    let zone = UserMeta { timezone: Some("Europe/Paris".into()), ..UserMeta::default() };
    let updated = store.update_user(&project, &user, &zone).await.expect("update");
    assert_eq!(updated.meta, UserMeta { timezone: Some("Europe/Paris".into()), ..meta });
    assert_eq!(store.get_user(&project, &user).await.expect("get"), Some(updated));
    assert_eq!(store.get_user(&other, &user).await.expect("other project"), None);
    // A user whose id holds the key separator is still one user of one project.
    let odd = format!("{user}#x@example.com");
    let fresh = store.update_user(&project, &odd, &zone).await.expect("created by an update");
    assert_eq!(fresh.user_id, odd);
    assert_eq!(store.get_user(&project, &odd).await.expect("get").map(|u| u.meta), Some(zone));
}

/// Explicit choices are kept per user, the latest wins, and nobody else sees them.
pub async fn case_enablement_is_per_user_and_the_latest_choice_wins(store: &dyn Store) {
    let (project, user, other) = (unique("p"), unique("u"), unique("u"));
    assert_eq!(store.enablement(&project, &user).await.expect("none"), Enablement::default());
    let first = store.set_enabled(&project, &user, &Switch::Integration("slack".into()), true).await.expect("on");
    assert_eq!(first, None, "never chosen before");
    store.set_enabled(&project, &user, &Switch::Workflow("w1".into()), true).await.expect("on");
    store.set_enabled(&project, &user, &Switch::Workflow("w2".into()), false).await.expect("off");
    let before =
        store.set_enabled(&project, &user, &Switch::Integration("slack".into()), false).await.expect("off again");
    assert_eq!(before, Some(true), "the choice it replaced");
    let enablement = store.enablement(&project, &user).await.expect("read");
    assert_eq!(enablement.integrations, BTreeMap::from([("slack".to_string(), false)]));
    assert_eq!(enablement.workflows, BTreeMap::from([("w1".to_string(), true), ("w2".to_string(), false)]));
    assert_eq!(store.enablement(&project, &other).await.expect("other user"), Enablement::default());
    assert_eq!(store.enablement(&unique("p"), &user).await.expect("other project"), Enablement::default());
}

/// Settings are kept per user and scope; a put sets the given values and keeps the others,
/// `null` removes one; over the limits nothing is stored.
pub async fn case_settings_are_per_user_and_scope(store: &dyn Store) {
    let (project, user, other) = (unique("p"), unique("u"), unique("u"));
    let slack = SettingsScope::Integration("slack".into());
    let workflow = SettingsScope::Workflow("slack".into());
    let values = |pairs: &[(&str, Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    assert_eq!(store.get_settings(&project, &user, &slack).await.expect("none"), BTreeMap::new());
    let first: BTreeMap<String, Value> =
        values(&[("channel", json!("#sales")), ("mapping", json!({ "email": "Email" })), ("n", json!(3))]);
    store.put_settings(&project, &user, &slack, &first).await.expect("put");
    assert_eq!(store.get_settings(&project, &user, &slack).await.expect("get"), first);
    store
        .put_settings(&project, &user, &slack, &values(&[("n", json!(4)), ("mapping", Value::Null)]))
        .await
        .expect("update");
    assert_eq!(
        store.get_settings(&project, &user, &slack).await.expect("get"),
        values(&[("channel", json!("#sales")), ("n", json!(4))])
    );
    assert_eq!(store.get_settings(&project, &user, &workflow).await.expect("other scope"), BTreeMap::new());
    assert_eq!(store.get_settings(&project, &other, &slack).await.expect("other user"), BTreeMap::new());
    assert_eq!(store.get_settings(&unique("p"), &user, &slack).await.expect("other project"), BTreeMap::new());

    let too_big = values(&[("a", json!("x")), ("big", json!("b".repeat(MAX_SETTING_VALUE_BYTES)))]);
    let refused = store.put_settings(&project, &user, &workflow, &too_big).await;
    assert!(matches!(refused, Err(StoreError::TooLarge(_))), "{refused:?}");
    let too_many: BTreeMap<String, Value> = (0..=MAX_SETTING_VALUES).map(|i| (format!("s{i}"), json!(i))).collect();
    let refused = store.put_settings(&project, &user, &workflow, &too_many).await;
    assert!(matches!(refused, Err(StoreError::TooLarge(_))), "{refused:?}");
    assert_eq!(store.get_settings(&project, &user, &workflow).await.expect("nothing stored"), BTreeMap::new());
    let most: BTreeMap<String, Value> = (0..MAX_SETTING_VALUES).map(|i| (format!("s{i}"), json!(i))).collect();
    store.put_settings(&project, &user, &workflow, &most).await.expect("the most at once");
    assert_eq!(store.get_settings(&project, &user, &workflow).await.expect("get").len(), MAX_SETTING_VALUES);
}

fn credential(ciphertext: &str, status: CredentialStatus) -> CredentialRecord {
    CredentialRecord {
        sealed: crate::crypto::Sealed {
            version: 1,
            wrapped_key: "d2s=".into(),
            nonce: "bm9uY2U=".into(),
            ciphertext: ciphertext.into(),
        },
        status,
        expires_at: Some(super::at_ms(1_900_000_000_123)),
        updated_at: super::at_ms(1_800_000_000_456),
        refreshing_until: None,
        identity: BTreeMap::new(),
    }
}

/// Credentials are kept per user and integration, replaced whole, removed once; too large
/// is refused.
pub async fn case_credentials_are_per_user_and_integration(store: &dyn Store) {
    let (project, user, other) = (unique("p"), unique("u"), unique("u"));
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("none"), None);
    let first = credential("Zmlyc3Q=", CredentialStatus::Connected);
    store.put_credentials(&project, &user, "slack", &first).await.expect("put");
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(first));
    let second = credential("c2Vjb25k", CredentialStatus::NeedsReauthorization);
    store.put_credentials(&project, &user, "slack", &second).await.expect("replace");
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(second));
    assert_eq!(store.get_credentials(&project, &user, "custom.acme").await.expect("other integration"), None);
    assert_eq!(store.get_credentials(&project, &other, "slack").await.expect("other user"), None);
    assert_eq!(store.get_credentials(&unique("p"), &user, "slack").await.expect("other project"), None);
    let huge = credential(&"A".repeat(MAX_CREDENTIAL_BYTES), CredentialStatus::Connected);
    let refused = store.put_credentials(&project, &user, "custom.acme", &huge).await;
    assert!(matches!(refused, Err(StoreError::TooLarge(_))), "{refused:?}");
    // Compare and swap: only from exactly the stored record, once.
    let stored = store.get_credentials(&project, &user, "slack").await.expect("get").expect("stored");
    let leased = CredentialRecord { refreshing_until: Some(super::at_ms(1_800_000_010_000)), ..stored.clone() };
    assert!(store.swap_credentials(&project, &user, "slack", &stored, &leased).await.expect("swap"));
    assert!(!store.swap_credentials(&project, &user, "slack", &stored, &leased).await.expect("stale"), "once");
    assert!(!store.swap_credentials(&project, &user, "custom.acme", &stored, &leased).await.expect("none"));
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(leased));
    assert!(store.delete_credentials(&project, &user, "slack").await.expect("delete"));
    assert!(!store.delete_credentials(&project, &user, "slack").await.expect("again"), "removed once");
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("gone"), None);
}

/// Of concurrent calls switching an integration on, exactly one sees it was not on before;
/// after switching it off, the next switch on sees that again.
pub async fn case_concurrent_enables_see_the_switch_once(store: &dyn Store) {
    let (project, user) = (unique("p"), unique("u"));
    let slack = Switch::Integration("slack".into());
    for round in 0..2 {
        let calls = (0..16).map(|_| store.set_enabled(&project, &user, &slack, true));
        let befores = super::join_all(calls).await;
        let switched = befores.into_iter().map(|b| b.expect("set")).filter(|b| *b != Some(true)).count();
        assert_eq!(switched, 1, "round {round}: exactly one call switched it on");
        assert_eq!(store.set_enabled(&project, &user, &slack, false).await.expect("off"), Some(true));
    }
}

fn identity(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Connected credentials with `pairs` as their identity.
fn identified(ciphertext: &str, pairs: &[(&str, &str)]) -> CredentialRecord {
    CredentialRecord { identity: identity(pairs), ..credential(ciphertext, CredentialStatus::Connected) }
}

fn sorted(users: &[&String]) -> Vec<String> {
    let mut users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    users.sort();
    users
}

/// Credentials are found by each entry of their identity; the users who share an identity are
/// all found, sorted; credentials without one are found by nothing.
pub async fn case_users_are_found_by_their_credentials_identity(store: &dyn Store) {
    let (project, ada, bob) = (unique("p"), unique("u"), unique("u"));
    let lookup = |key: &'static str, value: &'static str| store.users_by_identity(&project, "slack", key, value);
    assert_eq!(lookup("team", "T1").await.expect("nobody yet"), Vec::<String>::new());
    let ada_record = identified("YWRh", &[("team", "T1"), ("user", "U1")]);
    store.put_credentials(&project, &ada, "slack", &ada_record).await.expect("put");
    assert_eq!(store.get_credentials(&project, &ada, "slack").await.expect("get"), Some(ada_record));
    assert_eq!(lookup("team", "T1").await.expect("by team"), sorted(&[&ada]));
    assert_eq!(lookup("user", "U1").await.expect("by user"), sorted(&[&ada]));
    // Two users who connected the same workspace.
    store
        .put_credentials(&project, &bob, "slack", &identified("Ym9i", &[("team", "T1"), ("user", "U2")]))
        .await
        .expect("put");
    assert_eq!(lookup("team", "T1").await.expect("by team"), sorted(&[&ada, &bob]));
    assert_eq!(lookup("user", "U2").await.expect("by user"), sorted(&[&bob]));
    assert_eq!(lookup("user", "U1").await.expect("by user"), sorted(&[&ada]));
    // A user whose id holds the key separator is found as they are.
    let odd = format!("{ada}#x@example.com");
    store.put_credentials(&project, &odd, "slack", &identified("b2Rk", &[("team", "T1")])).await.expect("put");
    assert_eq!(lookup("team", "T1").await.expect("by team"), sorted(&[&ada, &bob, &odd]));
    let plain = unique("u");
    store
        .put_credentials(&project, &plain, "slack", &credential("cGxhaW4=", CredentialStatus::Connected))
        .await
        .expect("put");
    assert_eq!(lookup("team", "T1").await.expect("by team").len(), 3, "no identity, in no index");
}

/// A lookup returns at most `MAX_USERS_BY_IDENTITY` users: the first ones in order.
pub async fn case_identity_lookup_returns_at_most_the_first_users(store: &dyn Store) {
    let project = unique("p");
    let users: Vec<String> = (0..=MAX_USERS_BY_IDENTITY).map(|i| format!("u{i:03}-{}", unique("u"))).collect();
    let record = identified("bWFueQ==", &[("portal", "62515")]);
    let puts = users.iter().map(|user| store.put_credentials(&project, user, "hubspot", &record));
    for put in super::join_all(puts).await {
        put.expect("put");
    }
    let found = store.users_by_identity(&project, "hubspot", "portal", "62515").await.expect("lookup");
    assert_eq!(found, users[..MAX_USERS_BY_IDENTITY].to_vec());
    store.delete_credentials(&project, &users[0], "hubspot").await.expect("delete");
    let found = store.users_by_identity(&project, "hubspot", "portal", "62515").await.expect("lookup");
    assert_eq!(found, users[1..].to_vec(), "the one left out before comes in");
}

/// Replacing credentials replaces their identity: entries the new record lacks find nobody,
/// and concurrent replaces leave the index agreeing with whichever record is stored.
pub async fn case_replaced_credentials_are_found_by_their_new_identity_only(store: &dyn Store) {
    let (project, user) = (unique("p"), unique("u"));
    let lookup = |key: &'static str, value: &'static str| store.users_by_identity(&project, "slack", key, value);
    store
        .put_credentials(&project, &user, "slack", &identified("b25l", &[("team", "T1"), ("user", "U1")]))
        .await
        .expect("put");
    store
        .put_credentials(&project, &user, "slack", &identified("dHdv", &[("team", "T2"), ("user", "U1")]))
        .await
        .expect("replace");
    assert_eq!(lookup("team", "T1").await.expect("old team"), Vec::<String>::new());
    assert_eq!(lookup("team", "T2").await.expect("new team"), vec![user.clone()]);
    assert_eq!(lookup("user", "U1").await.expect("kept entry"), vec![user.clone()]);
    let same = identified("c2FtZQ==", &[("team", "T2"), ("user", "U1")]);
    store.put_credentials(&project, &user, "slack", &same).await.expect("replace, same identity");
    assert_eq!(lookup("team", "T2").await.expect("same identity"), vec![user.clone()]);
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(same));
    store
        .put_credentials(&project, &user, "slack", &credential("bm9uZQ==", CredentialStatus::Connected))
        .await
        .expect("replace");
    assert_eq!(lookup("team", "T2").await.expect("no identity"), Vec::<String>::new());
    assert_eq!(lookup("user", "U1").await.expect("no identity"), Vec::<String>::new());
    store.put_credentials(&project, &user, "slack", &identified("YWdhaW4=", &[("team", "T1")])).await.expect("put");
    assert_eq!(lookup("team", "T1").await.expect("found again"), vec![user.clone()]);

    let teams = ["C0", "C1", "C2", "C3"];
    let records: Vec<CredentialRecord> = teams.iter().map(|team| identified("cmFjZQ==", &[("team", team)])).collect();
    let puts = records.iter().map(|record| store.put_credentials(&project, &user, "slack", record));
    for put in super::join_all(puts).await {
        // A replace that kept losing to the others may give up, retryably.
        assert!(put.as_ref().err().is_none_or(StoreError::is_retryable), "{put:?}");
    }
    let stored = store.get_credentials(&project, &user, "slack").await.expect("get").expect("stored");
    for team in ["T1"].iter().chain(&teams) {
        let found = lookup("team", team).await.expect("lookup");
        let holds = stored.identity.get("team").map(String::as_str) == Some(*team);
        assert_eq!(found, if holds { vec![user.clone()] } else { vec![] }, "team {team}, stored {stored:?}");
    }
}

/// A swap moves the identity with the record, in the same write; a swap that keeps the
/// identity keeps its entries; a lost swap changes nothing, the index included.
pub async fn case_a_swap_moves_the_identity_and_a_lost_swap_changes_nothing(store: &dyn Store) {
    let (project, user) = (unique("p"), unique("u"));
    let lookup = |key: &'static str, value: &'static str| store.users_by_identity(&project, "slack", key, value);
    let first = identified("Zmlyc3Q=", &[("team", "T1"), ("user", "U1")]);
    store.put_credentials(&project, &user, "slack", &first).await.expect("put");
    let leased = CredentialRecord { refreshing_until: Some(super::at_ms(1_800_000_010_000)), ..first.clone() };
    assert!(store.swap_credentials(&project, &user, "slack", &first, &leased).await.expect("lease"));
    assert_eq!(lookup("team", "T1").await.expect("kept"), vec![user.clone()], "same identity, same entries");
    let moved = CredentialRecord { identity: identity(&[("team", "T2"), ("user", "U1")]), ..leased.clone() };
    assert!(store.swap_credentials(&project, &user, "slack", &leased, &moved).await.expect("move"));
    assert_eq!(lookup("team", "T1").await.expect("old team"), Vec::<String>::new());
    assert_eq!(lookup("team", "T2").await.expect("new team"), vec![user.clone()]);
    assert_eq!(lookup("user", "U1").await.expect("kept entry"), vec![user.clone()]);
    // Lost: the stored record is no longer `leased`.
    let elsewhere = CredentialRecord { identity: identity(&[("team", "T3")]), ..leased.clone() };
    assert!(!store.swap_credentials(&project, &user, "slack", &leased, &elsewhere).await.expect("lost"));
    assert!(!store.swap_credentials(&project, &user, "slack", &first, &first).await.expect("lost, same identity"));
    assert_eq!(lookup("team", "T3").await.expect("not moved"), Vec::<String>::new());
    assert_eq!(lookup("team", "T2").await.expect("kept"), vec![user.clone()]);
    assert_eq!(lookup("user", "U1").await.expect("kept"), vec![user.clone()], "the lost swap removed nothing");
    assert_eq!(lookup("team", "T1").await.expect("not restored"), Vec::<String>::new());
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(moved.clone()));
    // Nothing stored: a swap has nothing to compare with and writes nothing.
    let other = unique("u");
    assert!(!store.swap_credentials(&project, &other, "slack", &leased, &elsewhere).await.expect("none stored"));
    assert_eq!(lookup("team", "T3").await.expect("nobody"), Vec::<String>::new());
    // Swapping an identity away removes its entries.
    let bare = CredentialRecord { identity: BTreeMap::new(), ..moved.clone() };
    assert!(store.swap_credentials(&project, &user, "slack", &moved, &bare).await.expect("bare"));
    assert_eq!(lookup("team", "T2").await.expect("gone"), Vec::<String>::new());
    assert_eq!(lookup("user", "U1").await.expect("gone"), Vec::<String>::new());
}

/// Deleted credentials are found by their identity no more; the identity's other users still
/// are.
pub async fn case_deleted_credentials_are_no_longer_found_by_identity(store: &dyn Store) {
    let (project, ada, bob) = (unique("p"), unique("u"), unique("u"));
    let lookup = || store.users_by_identity(&project, "slack", "team", "T1");
    let record = identified("ZGVs", &[("team", "T1"), ("user", "U1")]);
    store.put_credentials(&project, &ada, "slack", &record).await.expect("put");
    store.put_credentials(&project, &bob, "slack", &record).await.expect("put");
    assert!(store.delete_credentials(&project, &ada, "slack").await.expect("delete"));
    assert_eq!(lookup().await.expect("lookup"), vec![bob.clone()]);
    assert!(store.delete_credentials(&project, &bob, "slack").await.expect("delete"));
    assert!(!store.delete_credentials(&project, &bob, "slack").await.expect("again"), "removed once");
    assert_eq!(lookup().await.expect("lookup"), Vec::<String>::new());
    assert_eq!(store.users_by_identity(&project, "slack", "user", "U1").await.expect("lookup"), Vec::<String>::new());
    store.put_credentials(&project, &ada, "slack", &record).await.expect("connect again");
    assert_eq!(lookup().await.expect("lookup"), vec![ada.clone()]);
}

/// A lookup finds only its project, integration and key, and only the exact value; a key or
/// value no identity can hold finds nobody.
pub async fn case_identity_lookups_are_isolated_by_project_integration_and_key(store: &dyn Store) {
    let (project, other_project) = (unique("p"), unique("p"));
    let (ada, bob, cy) = (unique("u"), unique("u"), unique("u"));
    store
        .put_credentials(&project, &ada, "slack", &identified("YQ==", &[("team", "T1"), ("user", "T1")]))
        .await
        .expect("put");
    store.put_credentials(&project, &bob, "hubspot", &identified("Yg==", &[("portal", "T1")])).await.expect("put");
    store.put_credentials(&other_project, &cy, "slack", &identified("Yw==", &[("team", "T1")])).await.expect("put");
    let cases: [(&str, &str, &str, &str, Vec<String>); 12] = [
        (&project, "slack", "team", "T1", vec![ada.clone()]),
        (&project, "slack", "user", "T1", vec![ada.clone()]),
        (&project, "slack", "portal", "T1", vec![]),
        (&project, "hubspot", "portal", "T1", vec![bob.clone()]),
        (&project, "hubspot", "team", "T1", vec![]),
        (&project, "custom.acme", "team", "T1", vec![]),
        (&other_project, "slack", "team", "T1", vec![cy.clone()]),
        (&other_project, "hubspot", "portal", "T1", vec![]),
        (&project, "slack", "team", "T", vec![]),
        (&project, "slack", "team", "T1 ", vec![]),
        (&project, "slack", "team#x", "T1", vec![]),
        (&project, "slack", "", "T1", vec![]),
    ];
    for (project, integration, key, value, expected) in cases {
        let found = store.users_by_identity(project, integration, key, value).await.expect("lookup");
        assert_eq!(found, expected, "{integration} {key}={value:?}");
    }
    for value in ["", "\n", &"x".repeat(MAX_IDENTITY_VALUE_CHARS + 1)] {
        let found = store.users_by_identity(&project, "slack", "team", value).await.expect("unfit value");
        assert_eq!(found, Vec::<String>::new());
    }
}

/// Identity values may hold `#`, `%`, `/`, spaces and any Unicode text: each round-trips and
/// is found by exactly itself, never by another value it could be confused with.
pub async fn case_identity_values_with_separators_and_unicode_are_found_exactly(store: &dyn Store) {
    let project = unique("p");
    let values =
        ["a#b", "a", "a%23b", "a%b", "a/b", "a b", " a", "a#", "#", "%", "x#team#y", "日本語 ✓", "e\u{301}", "é"];
    let mut users = Vec::new();
    for value in values {
        let user = unique("u");
        let record = identified("dmFs", &[("team", value), ("user", "U1")]);
        store.put_credentials(&project, &user, "slack", &record).await.expect("put");
        assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(record));
        users.push(user);
    }
    for (value, user) in values.iter().zip(&users) {
        let found = store.users_by_identity(&project, "slack", "team", value).await.expect("lookup");
        assert_eq!(found, vec![user.clone()], "value {value:?}");
    }
    let everyone: Vec<&String> = users.iter().collect();
    assert_eq!(store.users_by_identity(&project, "slack", "user", "U1").await.expect("lookup"), sorted(&everyone));
}

/// An identity over the limits is refused (`TooLarge`) by a put and by a swap, and nothing is
/// stored or indexed; an identity at the limits is accepted.
pub async fn case_identity_over_the_limits_is_refused(store: &dyn Store) {
    let (project, user) = (unique("p"), unique("u"));
    let long_key = "k".repeat(MAX_IDENTITY_KEY_CHARS + 1);
    let long_value = "v".repeat(MAX_IDENTITY_VALUE_CHARS + 1);
    let mut too_many: Vec<(String, String)> =
        (0..=MAX_IDENTITY_ENTRIES).map(|i| (format!("k{i}"), "T9".to_string())).collect();
    too_many.sort();
    let refused: Vec<Vec<(&str, &str)>> = vec![
        too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        vec![("team", "T9"), ("", "x")],
        vec![("team", "T9"), (&long_key, "x")],
        vec![("team", "T9"), ("team-id", "x")],
        vec![("team", "T9"), ("team#", "x")],
        vec![("team", "T9"), ("tëam", "x")],
        vec![("team", "T9"), ("user", "")],
        vec![("team", "T9"), ("user", &long_value)],
        vec![("team", "T9"), ("user", "U\n1")],
        vec![("team", "T9"), ("user", "U\u{7f}1")],
    ];
    for pairs in &refused {
        let result = store.put_credentials(&project, &user, "slack", &identified("bGltaXQ=", pairs)).await;
        assert!(matches!(result, Err(StoreError::TooLarge(_))), "{pairs:?}: {result:?}");
    }
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("nothing stored"), None);
    assert_eq!(store.users_by_identity(&project, "slack", "team", "T9").await.expect("lookup"), Vec::<String>::new());
    assert_eq!(store.users_by_identity(&project, "slack", "k0", "T9").await.expect("lookup"), Vec::<String>::new());

    // At the limits: the most entries, the longest key, the longest value (in characters).
    let widest_key = "K".repeat(MAX_IDENTITY_KEY_CHARS);
    let widest_value = "日".repeat(MAX_IDENTITY_VALUE_CHARS);
    let mut most: Vec<(String, String)> =
        (1..MAX_IDENTITY_ENTRIES).map(|i| (format!("key_{i}"), format!("v#{i}"))).collect();
    most.push((widest_key.clone(), widest_value.clone()));
    let pairs: Vec<(&str, &str)> = most.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let record = identified("bW9zdA==", &pairs);
    store.put_credentials(&project, &user, "slack", &record).await.expect("at the limits");
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(record.clone()));
    let found = store.users_by_identity(&project, "slack", &widest_key, &widest_value).await.expect("lookup");
    assert_eq!(found, vec![user.clone()]);
    assert_eq!(store.users_by_identity(&project, "slack", "key_9", "v#9").await.expect("lookup"), vec![user.clone()]);

    // A swap to an identity over the limits is refused, and the record and index stay.
    for pairs in &refused {
        let over = CredentialRecord { identity: identity(pairs), ..record.clone() };
        let result = store.swap_credentials(&project, &user, "slack", &record, &over).await;
        assert!(matches!(result, Err(StoreError::TooLarge(_))), "{pairs:?}: {result:?}");
    }
    assert_eq!(store.get_credentials(&project, &user, "slack").await.expect("get"), Some(record));
    assert_eq!(store.users_by_identity(&project, "slack", "team", "T9").await.expect("lookup"), Vec::<String>::new());
    assert_eq!(store.users_by_identity(&project, "slack", "key_1", "v#1").await.expect("lookup"), vec![user]);
}
