//! Cases for the connect layer's ports: integrations, users, enablement and settings.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::unique;
use crate::model::project::IntegrationConfig;
use crate::ports::{
    CredentialRecord, CredentialStatus, Enablement, IntegrationRecord, MAX_CREDENTIAL_BYTES, MAX_SETTING_VALUE_BYTES,
    MAX_SETTING_VALUES, SettingsScope, Store, StoreError, Switch, UserMeta,
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
        identity: Default::default(),
        expires_at: Some(super::at_ms(1_900_000_000_123)),
        updated_at: super::at_ms(1_800_000_000_456),
        refreshing_until: None,
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
