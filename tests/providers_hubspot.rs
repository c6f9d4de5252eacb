//! The built-in `hubspot` integration end to end against its provider's fake (HubSpot,
//! `sluice_fakes::hubspot`), on both backends: the hosted OAuth flow on HubSpot's 2026-03 token
//! endpoints (the legacy v1 ones retired) with the portal read by introspection, a connection
//! that outlives its 30-minute (here 2-second) access tokens, no refresh on a 401 (HubSpot does
//! not document one), HubSpot's rate limits told apart, and every catalog action as HubSpot's
//! reference documents its request and answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::on_both_backends;
use sluice_e2e::providers::{
    self, action_step, connection, deploy, error, oauth_config, output, retried_step, since, together,
};
use sluice_e2e::stack::{Backend, TestStack};
use sluice_fakes::hubspot::{Association, FakeFailure, FakeHubSpot, HubSpotConfig, Recorded};

const INTEGRATION: &str = "hubspot";
const ADA: &str = "ada";
/// The access token lifetime of the lifetime tests: Sluice refreshes a tenth of it before the end.
const LIFETIME: Duration = Duration::from_secs(2);

/// The fake with the test stack's OAuth client (`TEST_CLIENT_ID` / `TEST_CLIENT_SECRET`).
fn hubspot(config: HubSpotConfig) -> HubSpotConfig {
    HubSpotConfig { client_id: "client-1".to_string(), client_secret: "secret-1".to_string(), ..config }
}

/// A project on a fake HubSpot with `workflows` (id, steps), deployed; `ada` connects with
/// [`HubSpot::connect`] (or at once with [`HubSpot::start`]).
struct HubSpot<'a> {
    stack: &'a TestStack,
    fake: FakeHubSpot,
}

impl<'a> HubSpot<'a> {
    async fn deploy(stack: &'a TestStack, config: HubSpotConfig, workflows: &[(&str, String)]) -> HubSpot<'a> {
        let fake = FakeHubSpot::start(hubspot(config)).await.expect("the fake HubSpot starts");
        let config = oauth_config(&fake.authorize_url(), &fake.token_url(), &fake.base_url, "");
        deploy(stack, INTEGRATION, &config, workflows).await;
        HubSpot { stack, fake }
    }

    async fn start(stack: &'a TestStack, config: HubSpotConfig, workflows: &[(&str, String)]) -> HubSpot<'a> {
        let hubspot = HubSpot::deploy(stack, config, workflows).await;
        hubspot.connect().await;
        hubspot
    }

    /// `ada` walks the hosted flow (see [`providers::connect`]) and answers the authorize URL
    /// Sluice built.
    async fn connect(&self) -> url::Url {
        let connected = providers::connect(self.stack, ADA, INTEGRATION, "").await;
        let (authorize, _) =
            connected.unwrap_or_else(|stop| panic!("ada connects: {stop:?}; HubSpot received {:#?}", self.oauth()));
        authorize
    }

    /// Runs `workflow` for `ada` with `body`: what its step `a` did, from the execution record
    /// (see [`providers::run`]).
    async fn run(&self, workflow: &str, body: Value) -> Value {
        providers::run(self.stack, ADA, workflow, body).await
    }

    /// Five runs of `workflow` at once.
    async fn five(&self, workflow: &str) -> Vec<Value> {
        together((0..5).map(|_| self.run(workflow, json!({})))).await
    }

    /// The CRM API requests received, oldest first.
    fn api(&self) -> Vec<Recorded> {
        self.fake.requests().into_iter().filter(|r| r.path.starts_with("/crm/")).collect()
    }

    /// The CRM API requests received since the first `from`.
    fn api_since(&self, from: usize) -> Vec<Recorded> {
        since(self.api(), from)
    }

    /// The OAuth requests received (authorize, token, introspection), oldest first.
    fn oauth(&self) -> Vec<Recorded> {
        self.fake.requests().into_iter().filter(|r| r.path.starts_with("/oauth/")).collect()
    }

    /// The access token Sluice got at connect time (the one it asked the introspection about).
    fn connected_token(&self) -> String {
        let introspected = self.oauth().into_iter().rfind(|r| r.path == "/oauth/2026-03/token/introspect");
        let request = introspected.expect("Sluice introspected the token it got");
        form(&request.body).remove("token").expect("the introspected token")
    }

    /// Runs `workflow` with `body`: the step's answer and the one API request it made.
    async fn one_request(&self, workflow: &str, body: Value) -> (Value, Recorded) {
        let from = self.api().len();
        let answer = self.run(workflow, body).await;
        let mut sent = self.api_since(from);
        assert_eq!(sent.len(), 1, "{workflow}: one request: {sent:#?}");
        (answer, sent.remove(0))
    }
}

fn bearer(request: &Recorded) -> &str {
    let header = request.authorization.as_deref().unwrap_or_default();
    header.strip_prefix("Bearer ").unwrap_or_else(|| panic!("a bearer token: {request:?}"))
}

fn form(text: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

fn query(request: &Recorded) -> BTreeMap<String, String> {
    form(&request.query)
}

fn body(request: &Recorded) -> Value {
    serde_json::from_str(&request.body).unwrap_or_else(|e| panic!("a JSON body ({e}): {request:?}"))
}

fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `request` is `method path` with `token` as its bearer.
fn sent(request: &Recorded, method: &str, path: &str, token: &str) {
    assert_eq!((request.method.as_str(), request.path.as_str()), (method, path), "{request:?}");
    assert_eq!(bearer(request), token, "the user's token: {request:?}");
}

fn association(from_type: &str, from_id: &str, to_type: &str, to_id: &str, type_id: u32) -> Association {
    Association {
        from_type: from_type.to_string(),
        from_id: from_id.to_string(),
        to_type: to_type.to_string(),
        to_id: to_id.to_string(),
        type_id,
    }
}

const PIPELINES: &str = "list_deal_pipelines";

async fn connecting_exchanges_the_code_at_the_2026_03_endpoint_for_the_actions_scopes_and_reads_the_portal(
    stack: &TestStack,
) {
    let workflows = [
        ("get", action_step("get_contact", "{ contactId: \"1\" }")),
        ("owners", action_step("list_owners", "{}")),
        ("fields", action_step("list_properties", "{ objectType: deals }")),
        ("deal", action_step("create_deal", "{ properties: { dealname: X } }")),
    ];
    let hubspot = HubSpot::deploy(stack, HubSpotConfig::default(), &workflows).await;
    let authorize = hubspot.connect().await;

    let asked: BTreeMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(hubspot.fake.last_authorize_query().map(|q| form(&q)), Some(asked.clone()), "where Sluice sent ada");
    assert_eq!(asked.get("client_id").map(String::as_str), Some("client-1"), "{asked:?}");
    let scope = asked.get("scope").cloned().unwrap_or_default();
    assert!(!scope.contains(','), "HubSpot's scopes are space-separated: {scope}");
    let requested: Vec<&str> = scope.split(' ').collect();
    let expected = [
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.owners.read",
        "crm.schemas.contacts.read",
        "crm.schemas.companies.read",
        "crm.schemas.deals.read",
        "crm.objects.deals.write",
    ];
    assert_eq!(requested.len(), expected.len(), "each scope once: {scope}");
    assert_eq!(requested.into_iter().collect::<BTreeSet<_>>(), expected.into_iter().collect(), "{scope}");

    // The code went to the 2026-03 token endpoint, the new token to its introspection, and
    // nothing to the legacy v1 endpoints.
    let oauth = hubspot.oauth();
    let paths: Vec<(&str, &str)> = oauth.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    assert_eq!(
        paths,
        [("GET", "/oauth/authorize"), ("POST", "/oauth/2026-03/token"), ("POST", "/oauth/2026-03/token/introspect")],
    );
    let exchange = form(&oauth[1].body);
    assert_eq!(exchange.get("grant_type").map(String::as_str), Some("authorization_code"), "{exchange:?}");
    assert_eq!(exchange.get("client_id").map(String::as_str), Some("client-1"), "{exchange:?}");
    assert_eq!(exchange.get("redirect_uri"), asked.get("redirect_uri"), "the redirect URI of the authorize step");
    assert_eq!(hubspot.fake.token_requests("authorization_code"), 1);
    let introspect = form(&oauth[2].body);
    assert_eq!(introspect.get("client_id").map(String::as_str), Some("client-1"), "{introspect:?}");
    assert!(introspect.get("token").is_some_and(|t| !t.is_empty()), "{introspect:?}");

    // HubSpot's token answer does not say which portal: the introspection does.
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(true), &json!(false)), "{shown:#}");
    assert_eq!(shown["identity"]["portal"], json!("62515"), "the fake's hub_id, as text: {shown:#}");
    assert_eq!(shown["identity"]["user"], json!("9586504"), "the installing user: {shown:#}");
    assert_eq!(shown["identity"]["domain"], json!("demo-account.hubspot.com"), "{shown:#}");

    // The connection works: the action carries the token Sluice was given.
    let (answer, request) = hubspot.one_request("owners", json!({})).await;
    assert_eq!(output(&answer)["owners"].as_array().map(Vec::len), Some(3), "{answer:#}");
    sent(&request, "GET", "/crm/v3/owners", &hubspot.connected_token());
}

async fn with_the_v1_oauth_endpoints_retired_connecting_and_refreshing_still_work(stack: &TestStack) {
    let config = HubSpotConfig { access_token_lifetime: LIFETIME, ..HubSpotConfig::default() };
    let hubspot = HubSpot::deploy(stack, config, &[("pipelines", action_step(PIPELINES, "{}"))]).await;
    hubspot.fake.retire_v1();
    hubspot.connect().await;
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!(shown["identity"]["portal"], json!("62515"), "introspected on 2026-03: {shown:#}");

    let (answer, first) = hubspot.one_request("pipelines", json!({})).await;
    output(&answer);
    tokio::time::sleep(LIFETIME + Duration::from_millis(150)).await;
    let (answer, second) = hubspot.one_request("pipelines", json!({})).await;
    output(&answer);
    assert_eq!(hubspot.fake.token_requests("refresh_token"), 1, "the expired token was refreshed");
    assert_ne!(bearer(&first), bearer(&second), "with a new token");

    let oauth = hubspot.oauth();
    assert!(oauth.iter().all(|r| !r.path.starts_with("/oauth/v1/")), "nothing went to v1: {oauth:#?}");
    let refresh = oauth.last().expect("the refresh request");
    assert_eq!(refresh.path, "/oauth/2026-03/token");
    assert_eq!(form(&refresh.body).get("grant_type").map(String::as_str), Some("refresh_token"), "{refresh:?}");
}

async fn a_connection_outlives_three_token_lifetimes_with_one_refresh_each_under_concurrent_runs(stack: &TestStack) {
    let config = HubSpotConfig { access_token_lifetime: LIFETIME, ..HubSpotConfig::default() };
    let hubspot = HubSpot::start(stack, config, &[("pipelines", action_step(PIPELINES, "{}"))]).await;

    // Four access-token lifetimes, five runs at once in each: one refresh per lifetime, and
    // every request carries that lifetime's token (none is refused: HubSpot would not say why).
    let mut tokens = vec![hubspot.connected_token()];
    for lifetime in 0..4 {
        if lifetime > 0 {
            tokio::time::sleep(LIFETIME + Duration::from_millis(150)).await;
        }
        let from = hubspot.api().len();
        for answer in hubspot.five("pipelines").await {
            assert_eq!(output(&answer)["pipelines"][0]["id"], json!("default"), "lifetime {lifetime}: {answer:#}");
        }
        assert_eq!(hubspot.fake.token_requests("refresh_token"), lifetime, "one refresh per lifetime");
        let sent = hubspot.api_since(from);
        assert_eq!(sent.len(), 5, "lifetime {lifetime}: no request refused and sent again: {sent:#?}");
        let used: BTreeSet<&str> = sent.iter().map(bearer).collect();
        assert_eq!(used.len(), 1, "lifetime {lifetime}: one token at a time: {used:?}");
        let token = used.into_iter().next().unwrap_or_default().to_string();
        if lifetime == 0 {
            assert_eq!(token, tokens[0], "the token of the connection");
        } else {
            assert!(!tokens.contains(&token), "lifetime {lifetime}: a fresh token");
            tokens.push(token);
        }
    }
    assert_eq!(hubspot.fake.token_requests("authorization_code"), 1, "never asked to connect again");
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(true), &json!(false)), "{shown:#}");
}

async fn a_401_fails_the_step_at_once_without_a_refresh(stack: &TestStack) {
    let workflows = [("pipelines", retried_step(PIPELINES, "{}", 2, "1s"))];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;
    output(&hubspot.run("pipelines", json!({})).await);

    // Sluice believes the token good for another half hour; HubSpot does not. HubSpot does not
    // document a 401 as a reason to refresh, so the step fails with its message.
    hubspot.fake.expire_all_tokens();
    let (answer, request) = hubspot.one_request("pipelines", json!({})).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable, "terminal, not retried although the step allows two retries: {answer:#}");
    assert!(message.contains("HubSpot refused the request"), "{message}");
    assert!(message.contains("The OAuth token used to make this call expired"), "HubSpot's message: {message}");
    assert_eq!(bearer(&request), hubspot.connected_token());
    assert_eq!(hubspot.fake.token_requests("refresh_token"), 0, "no refresh request");
}

async fn rate_limits_are_retried_except_the_daily_one_and_gateway_errors_are_retried(stack: &TestStack) {
    let workflows = [
        ("once", action_step(PIPELINES, "{}")),
        ("retried", retried_step(PIPELINES, "{}", 1, "1s")),
        ("retried-twice", retried_step(PIPELINES, "{}", 2, "1s")),
    ];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;

    // The ten-second burst limit passes within seconds.
    hubspot.fake.fail_next(FakeFailure::TenSecondlyRollingLimit);
    let (answer, _) = hubspot.one_request("once", json!({})).await;
    let (message, retryable) = error(&answer);
    assert!(retryable, "{answer:#}");
    assert!(message.contains("rate limit") && message.contains("TEN_SECONDLY_ROLLING"), "{message}");
    hubspot.fake.fail_next(FakeFailure::TenSecondlyRollingLimit);
    let from = hubspot.api().len();
    let answer = hubspot.run("retried", json!({})).await;
    assert_eq!(output(&answer)["pipelines"][0]["id"], json!("default"), "{answer:#}");
    assert_eq!(hubspot.api_since(from).len(), 2, "refused, then retried once");

    // The daily limit resets at midnight: retrying now only spends more of tomorrow's.
    hubspot.fake.fail_next(FakeFailure::DailyLimit);
    let (answer, _) = hubspot.one_request("retried-twice", json!({})).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable, "{answer:#}");
    assert!(message.contains("daily API limit is used up"), "{message}");
    assert!(message.contains("You have reached your daily limit."), "HubSpot's own message: {message}");

    // HubSpot's guidelines: pause on a 502 or 504, then retry.
    for failure in [FakeFailure::BadGateway, FakeFailure::GatewayTimeout] {
        let status = if failure == FakeFailure::BadGateway { "502" } else { "504" };
        hubspot.fake.fail_next(failure);
        let (answer, _) = hubspot.one_request("once", json!({})).await;
        let (message, retryable) = error(&answer);
        assert!(retryable && message.contains(status), "{failure:?}: {answer:#}");
        hubspot.fake.fail_next(failure);
        let from = hubspot.api().len();
        let answer = hubspot.run("retried", json!({})).await;
        output(&answer);
        assert_eq!(hubspot.api_since(from).len(), 2, "{failure:?}: refused, then retried once");
    }
}

async fn creating_a_contact_twice_with_one_email_answers_the_existing_contact(stack: &TestStack) {
    let workflows = [
        ("create", action_step("create_contact", "{ properties: { email: Ada@Example.com, firstname: Ada } }")),
        ("all", action_step("search_contacts", "{ filterGroups: [] }")),
    ];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;
    let token = hubspot.connected_token();

    let (answer, request) = hubspot.one_request("create", json!({})).await;
    sent(&request, "POST", "/crm/v3/objects/contacts", &token);
    assert_eq!(body(&request), json!({ "properties": { "email": "Ada@Example.com", "firstname": "Ada" } }));
    let created = output(&answer).clone();
    let id = created["id"].as_str().expect("the new contact's id").to_string();
    assert_eq!(created["properties"]["email"], json!("ada@example.com"), "{created:#}");

    // HubSpot answers 409 CONFLICT naming the existing contact: the step answers that contact.
    let from = hubspot.api().len();
    let answer = hubspot.run("create", json!({})).await;
    assert_eq!(output(&answer)["id"], json!(id), "the existing contact: {answer:#}");
    assert_eq!(output(&answer)["properties"]["email"], json!("ada@example.com"), "{answer:#}");
    let again = hubspot.api_since(from);
    assert_eq!(again.len(), 2, "{again:#?}");
    sent(&again[0], "POST", "/crm/v3/objects/contacts", &token);
    sent(&again[1], "GET", &format!("/crm/v3/objects/contacts/{id}"), &token);

    let (answer, request) = hubspot.one_request("all", json!({})).await;
    sent(&request, "POST", "/crm/v3/objects/contacts/search", &token);
    assert_eq!(body(&request), json!({ "filterGroups": [] }), "absent params are left out");
    assert_eq!(output(&answer)["total"], json!(1), "HubSpot holds one contact: {answer:#}");
}

async fn contact_actions_read_upsert_and_update_contacts_and_an_unknown_one_fails_with_hubspots_message(
    stack: &TestStack,
) {
    let workflows = [
        (
            "get",
            action_step(
                "get_contact",
                "{ contactId: \"{{trigger.body.id}}\", properties: \"email,firstname,lifecyclestage\" }",
            ),
        ),
        ("by-email", action_step("get_contact", "{ contactId: \"{{trigger.body.email}}\", idProperty: email }")),
        (
            "upsert",
            action_step(
                "upsert_contact",
                "{ email: \"{{trigger.body.email}}\", properties: \"{{trigger.body.properties}}\" }",
            ),
        ),
        (
            "update",
            action_step(
                "update_contact",
                "{ contactId: \"{{trigger.body.id}}\", properties: \"{{trigger.body.properties}}\" }",
            ),
        ),
    ];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;
    let token = hubspot.connected_token();
    let grace = hubspot.fake.insert(
        "contacts",
        json!({ "email": "grace@example.com", "firstname": "Grace", "lastname": "Hopper", "lifecyclestage": "lead" }),
    );

    let (answer, request) = hubspot.one_request("get", json!({ "id": grace })).await;
    sent(&request, "GET", &format!("/crm/v3/objects/contacts/{grace}"), &token);
    assert_eq!(query(&request), pairs(&[("properties", "email,firstname,lifecyclestage")]));
    let contact = output(&answer);
    assert_eq!(contact["id"], json!(grace), "{contact:#}");
    assert_eq!(contact["properties"]["lifecyclestage"], json!("lead"), "{contact:#}");
    assert_eq!(contact["properties"]["firstname"], json!("Grace"), "{contact:#}");
    assert!(contact["properties"].get("lastname").is_none(), "only the properties asked for: {contact:#}");

    // By email: the address is one path segment, percent-encoded.
    let (answer, request) = hubspot.one_request("by-email", json!({ "email": "grace@example.com" })).await;
    sent(&request, "GET", "/crm/v3/objects/contacts/grace%40example.com", &token);
    assert_eq!(query(&request), pairs(&[("idProperty", "email")]));
    assert_eq!(output(&answer)["id"], json!(grace), "{answer:#}");

    // Upsert by email: created, then updated, one record.
    let (answer, request) = hubspot
        .one_request("upsert", json!({ "email": "new@example.com", "properties": { "firstname": "Nova" } }))
        .await;
    sent(&request, "POST", "/crm/v3/objects/contacts/batch/upsert", &token);
    assert_eq!(
        body(&request),
        json!({ "inputs": [{ "idProperty": "email", "id": "new@example.com", "properties": { "firstname": "Nova" } }] })
    );
    let upserted = output(&answer).clone();
    assert_eq!(upserted["new"], json!(true), "{upserted:#}");
    assert_eq!(upserted["properties"]["email"], json!("new@example.com"), "{upserted:#}");
    let nova = upserted["id"].as_str().expect("the contact's id").to_string();
    let (answer, _) = hubspot
        .one_request("upsert", json!({ "email": "new@example.com", "properties": { "lastname": "Star" } }))
        .await;
    assert_eq!((&output(&answer)["id"], &output(&answer)["new"]), (&json!(nova), &json!(false)), "{answer:#}");
    let record = hubspot.fake.record("contacts", &nova).expect("the upserted contact");
    assert_eq!(
        (&record["properties"]["firstname"], &record["properties"]["lastname"]),
        (&json!("Nova"), &json!("Star")),
        "{record:#}"
    );

    let (answer, request) = hubspot
        .one_request("update", json!({ "id": grace, "properties": { "lifecyclestage": "customer", "firstname": "" } }))
        .await;
    sent(&request, "PATCH", &format!("/crm/v3/objects/contacts/{grace}"), &token);
    assert_eq!(body(&request), json!({ "properties": { "lifecyclestage": "customer", "firstname": "" } }));
    assert_eq!(output(&answer)["properties"]["lifecyclestage"], json!("customer"), "{answer:#}");
    let record = hubspot.fake.record("contacts", &grace).expect("grace");
    assert_eq!(record["properties"]["lifecyclestage"], json!("customer"), "{record:#}");
    assert!(record["properties"].get("firstname").is_none(), "\"\" cleared it: {record:#}");

    // An unknown contact: HubSpot's 404 OBJECT_NOT_FOUND, at once.
    let (answer, request) = hubspot.one_request("get", json!({ "id": "999999" })).await;
    sent(&request, "GET", "/crm/v3/objects/contacts/999999", &token);
    let (message, retryable) = error(&answer);
    assert!(!retryable, "{answer:#}");
    assert!(message.contains("Object not found.") && message.contains("HubSpot refused"), "{message}");
    // A property HubSpot does not have: its 400 VALIDATION_ERROR, at once.
    let (answer, _) = hubspot.one_request("update", json!({ "id": grace, "properties": { "shoe_size": "9" } })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("Property values were not valid"), "{answer:#}");
}

async fn company_and_deal_actions_create_update_read_and_search_them(stack: &TestStack) {
    let workflows = [
        ("create-company", action_step("create_company", "{ properties: { name: Acme, domain: acme.example } }")),
        (
            "update-company",
            action_step("update_company", "{ companyId: \"{{trigger.body.id}}\", properties: { city: Zurich } }"),
        ),
        (
            "get-company",
            action_step(
                "get_company",
                "{ companyId: \"{{trigger.body.id}}\", properties: \"name,city\", associations: deals }",
            ),
        ),
        (
            "search-companies",
            action_step(
                "search_companies",
                "{ filterGroups: [{ filters: [{ propertyName: domain, operator: EQ, value: acme.example }] }], \
                 properties: [name, domain], limit: 5 }",
            ),
        ),
        (
            "create-deal",
            action_step(
                "create_deal",
                "{ properties: { dealname: Renewal, pipeline: default, dealstage: appointmentscheduled, amount: \"5000\" }, \
                 associations: [{ to: { id: \"{{trigger.body.company}}\" }, \
                 types: [{ associationCategory: HUBSPOT_DEFINED, associationTypeId: 341 }] }] }",
            ),
        ),
        (
            "update-deal",
            action_step("update_deal", "{ dealId: \"{{trigger.body.id}}\", properties: { dealstage: closedwon } }"),
        ),
        ("get-deal", action_step("get_deal", "{ dealId: \"{{trigger.body.id}}\", associations: companies }")),
        (
            "search-deals",
            action_step(
                "search_deals",
                "{ filterGroups: [{ filters: [{ propertyName: dealstage, operator: EQ, value: closedwon }] }], \
                 sorts: [{ propertyName: amount, direction: DESCENDING }] }",
            ),
        ),
    ];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;
    let token = hubspot.connected_token();

    let (answer, request) = hubspot.one_request("create-company", json!({})).await;
    sent(&request, "POST", "/crm/v3/objects/companies", &token);
    assert_eq!(body(&request), json!({ "properties": { "name": "Acme", "domain": "acme.example" } }));
    let company = output(&answer)["id"].as_str().expect("the company's id").to_string();
    assert_eq!(output(&answer)["properties"]["name"], json!("Acme"), "{answer:#}");

    let (answer, request) = hubspot.one_request("update-company", json!({ "id": company })).await;
    sent(&request, "PATCH", &format!("/crm/v3/objects/companies/{company}"), &token);
    assert_eq!(body(&request), json!({ "properties": { "city": "Zurich" } }));
    assert_eq!(output(&answer)["properties"]["city"], json!("Zurich"), "{answer:#}");

    let (answer, request) = hubspot.one_request("search-companies", json!({})).await;
    sent(&request, "POST", "/crm/v3/objects/companies/search", &token);
    assert_eq!(
        body(&request),
        json!({
            "filterGroups": [{ "filters": [{ "propertyName": "domain", "operator": "EQ", "value": "acme.example" }] }],
            "properties": ["name", "domain"],
            "limit": 5,
        })
    );
    assert_eq!(output(&answer)["total"], json!(1), "{answer:#}");
    assert_eq!(output(&answer)["results"][0]["id"], json!(company), "{answer:#}");

    let (answer, request) = hubspot.one_request("create-deal", json!({ "company": company })).await;
    sent(&request, "POST", "/crm/v3/objects/deals", &token);
    assert_eq!(
        body(&request),
        json!({
            "properties": { "dealname": "Renewal", "pipeline": "default", "dealstage": "appointmentscheduled", "amount": "5000" },
            "associations": [{ "to": { "id": company }, "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 341 }] }],
        })
    );
    let deal = output(&answer)["id"].as_str().expect("the deal's id").to_string();
    assert!(hubspot.fake.associations().contains(&association("deals", &deal, "companies", &company, 341)));

    let (answer, request) = hubspot.one_request("update-deal", json!({ "id": deal })).await;
    sent(&request, "PATCH", &format!("/crm/v3/objects/deals/{deal}"), &token);
    assert_eq!(body(&request), json!({ "properties": { "dealstage": "closedwon" } }));
    assert_eq!(output(&answer)["properties"]["dealstage"], json!("closedwon"), "{answer:#}");

    let (answer, request) = hubspot.one_request("get-deal", json!({ "id": deal })).await;
    sent(&request, "GET", &format!("/crm/v3/objects/deals/{deal}"), &token);
    assert_eq!(query(&request), pairs(&[("associations", "companies")]));
    let got = output(&answer);
    assert_eq!(got["properties"]["dealname"], json!("Renewal"), "{got:#}");
    assert_eq!(got["associations"]["companies"]["results"][0]["id"], json!(company), "{got:#}");

    let (answer, request) = hubspot.one_request("get-company", json!({ "id": company })).await;
    sent(&request, "GET", &format!("/crm/v3/objects/companies/{company}"), &token);
    assert_eq!(query(&request), pairs(&[("properties", "name,city"), ("associations", "deals")]));
    let got = output(&answer);
    assert_eq!((&got["properties"]["name"], &got["properties"]["city"]), (&json!("Acme"), &json!("Zurich")));
    assert_eq!(got["associations"]["deals"]["results"][0]["id"], json!(deal), "{got:#}");

    let (answer, request) = hubspot.one_request("search-deals", json!({})).await;
    sent(&request, "POST", "/crm/v3/objects/deals/search", &token);
    assert_eq!(body(&request)["sorts"], json!([{ "propertyName": "amount", "direction": "DESCENDING" }]));
    assert_eq!(output(&answer)["total"], json!(1), "{answer:#}");
    assert_eq!(output(&answer)["results"][0]["id"], json!(deal), "{answer:#}");

    // An unknown deal: HubSpot's 404, at once.
    let (answer, _) = hubspot.one_request("get-deal", json!({ "id": "424242" })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("Object not found."), "{answer:#}");
}

async fn associate_links_two_records_both_ways_and_create_note_logs_a_note_on_records(stack: &TestStack) {
    let on = |id: &str, type_id: u32| {
        format!(
            "{{ to: {{ id: \"{{{{trigger.body.{id}}}}}\" }}, types: [{{ associationCategory: HUBSPOT_DEFINED, associationTypeId: {type_id} }}] }}"
        )
    };
    let note = format!(
        "{{ body: \"Called about the renewal\", timestamp: \"2030-01-15T10:30:00Z\", ownerId: \"41629780\", \
         associations: [{}, {}, {}] }}",
        on("contact", 202),
        on("company", 190),
        on("deal", 214)
    );
    let workflows = [
        (
            "associate",
            action_step(
                "associate",
                "{ fromObjectType: contacts, fromObjectId: \"{{trigger.body.from}}\", toObjectType: companies, \
                 toObjectId: \"{{trigger.body.to}}\" }",
            ),
        ),
        ("note", action_step("create_note", &note)),
        ("bare-note", action_step("create_note", "{ body: Hello, timestamp: \"1893456000000\" }")),
    ];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;
    let token = hubspot.connected_token();
    let contact = hubspot.fake.insert("contacts", json!({ "email": "lin@example.com" }));
    let company = hubspot.fake.insert("companies", json!({ "name": "Acme" }));
    let deal = hubspot.fake.insert("deals", json!({ "dealname": "Renewal" }));

    let (answer, request) = hubspot.one_request("associate", json!({ "from": contact, "to": company })).await;
    sent(
        &request,
        "PUT",
        &format!("/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}"),
        &token,
    );
    assert_eq!(request.body, "", "no body");
    let results = output(&answer)["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 2, "both directions: {answer:#}");
    let stored = hubspot.fake.associations();
    assert!(stored.contains(&association("contacts", &contact, "companies", &company, 279)), "{stored:?}");
    assert!(stored.contains(&association("companies", &company, "contacts", &contact, 280)), "{stored:?}");
    // Sent again (a retry): nothing changes.
    output(&hubspot.run("associate", json!({ "from": contact, "to": company })).await);
    assert_eq!(hubspot.fake.associations(), stored);
    // A record that does not exist: HubSpot's 404, at once.
    let (answer, _) = hubspot.one_request("associate", json!({ "from": contact, "to": "777777" })).await;
    let (message, retryable) = error(&answer);
    assert!(!retryable && message.contains("Object not found."), "{answer:#}");

    let ids = json!({ "contact": contact, "company": company, "deal": deal });
    let (answer, request) = hubspot.one_request("note", ids).await;
    sent(&request, "POST", "/crm/v3/objects/notes", &token);
    let spec = |id: &str, type_id: u32| json!({ "to": { "id": id }, "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id }] });
    assert_eq!(
        body(&request),
        json!({
            "properties": {
                "hs_note_body": "Called about the renewal",
                "hs_timestamp": "2030-01-15T10:30:00Z",
                "hubspot_owner_id": "41629780",
            },
            "associations": [spec(&contact, 202), spec(&company, 190), spec(&deal, 214)],
        })
    );
    let note = output(&answer)["id"].as_str().expect("the note's id").to_string();
    assert_eq!(output(&answer)["properties"]["hs_note_body"], json!("Called about the renewal"), "{answer:#}");
    let stored = hubspot.fake.associations();
    for (to_type, to_id, type_id) in [("contacts", &contact, 202), ("companies", &company, 190), ("deals", &deal, 214)]
    {
        assert!(stored.contains(&association("notes", &note, to_type, to_id, type_id)), "{to_type}: {stored:?}");
    }

    let (answer, request) = hubspot.one_request("bare-note", json!({})).await;
    assert_eq!(
        body(&request),
        json!({ "properties": { "hs_note_body": "Hello", "hs_timestamp": "1893456000000" } }),
        "no owner, no associations"
    );
    output(&answer);
}

async fn list_actions_read_pipelines_properties_and_every_page_of_owners_unless_max_pages_stops_them(
    stack: &TestStack,
) {
    let workflows = [
        ("pipelines", action_step(PIPELINES, "{}")),
        ("owners", action_step("list_owners", "{ limit: 1 }")),
        ("two-pages", action_step("list_owners", "{ limit: 1, maxPages: 2 }")),
        ("one-owner", action_step("list_owners", "{ email: grace@example.com, archived: false }")),
        ("fields", action_step("list_properties", "{ objectType: deals }")),
    ];
    let hubspot = HubSpot::start(stack, HubSpotConfig::default(), &workflows).await;
    let token = hubspot.connected_token();

    let (answer, request) = hubspot.one_request("pipelines", json!({})).await;
    sent(&request, "GET", "/crm/v3/pipelines/deals", &token);
    let pipeline = &output(&answer)["pipelines"][0];
    assert_eq!(pipeline["id"], json!("default"), "{answer:#}");
    let stages: Vec<&Value> =
        pipeline["stages"].as_array().map(|s| s.iter().map(|s| &s["id"]).collect()).unwrap_or_default();
    assert_eq!(stages.len(), 7, "{pipeline:#}");
    assert_eq!(stages[0], &json!("appointmentscheduled"));

    // One owner a page: every page, each asking for the cursor of the one before.
    let from = hubspot.api().len();
    let answer = hubspot.run("owners", json!({})).await;
    let pages = hubspot.api_since(from);
    let queries: Vec<BTreeMap<String, String>> = pages.iter().map(query).collect();
    assert_eq!(
        queries,
        [pairs(&[("limit", "1")]), pairs(&[("limit", "1"), ("after", "1")]), pairs(&[("limit", "1"), ("after", "2")])],
        "{pages:#?}"
    );
    for page in &pages {
        sent(page, "GET", "/crm/v3/owners", &token);
    }
    let listed = output(&answer);
    let ids: Vec<&Value> =
        listed["owners"].as_array().map(|o| o.iter().map(|o| &o["id"]).collect()).unwrap_or_default();
    assert_eq!(ids, [&json!("41629779"), &json!("41629780"), &json!("41629781")], "{listed:#}");
    assert_eq!((&listed["pages"], &listed["truncated"]), (&json!(3), &json!(false)), "{listed:#}");

    let from = hubspot.api().len();
    let answer = hubspot.run("two-pages", json!({})).await;
    assert_eq!(hubspot.api_since(from).len(), 2, "maxPages stops it");
    let listed = output(&answer);
    assert_eq!(listed["owners"].as_array().map(Vec::len), Some(2), "{listed:#}");
    assert_eq!((&listed["pages"], &listed["truncated"]), (&json!(2), &json!(true)), "{listed:#}");

    let (answer, request) = hubspot.one_request("one-owner", json!({})).await;
    assert_eq!(query(&request), pairs(&[("email", "grace@example.com"), ("archived", "false")]));
    let listed = output(&answer);
    assert_eq!(listed["owners"][0]["firstName"], json!("Grace"), "{listed:#}");
    assert_eq!((&listed["pages"], &listed["truncated"]), (&json!(1), &json!(false)), "{listed:#}");

    let (answer, request) = hubspot.one_request("fields", json!({})).await;
    sent(&request, "GET", "/crm/v3/properties/deals", &token);
    let properties = output(&answer)["properties"].as_array().cloned().unwrap_or_default();
    let stage = properties.iter().find(|p| p["name"] == "dealstage").expect("the deal stage property");
    assert_eq!((&stage["type"], &stage["label"]), (&json!("enumeration"), &json!("Deal Stage")), "{stage:#}");
    assert_eq!(stage["options"][0]["value"], json!("appointmentscheduled"), "{stage:#}");
}

on_both_backends! {
    connecting_exchanges_the_code_at_the_2026_03_endpoint_for_the_actions_scopes_and_reads_the_portal: Duration::from_secs(30);
    with_the_v1_oauth_endpoints_retired_connecting_and_refreshing_still_work: Duration::from_secs(30);
    a_connection_outlives_three_token_lifetimes_with_one_refresh_each_under_concurrent_runs: Duration::from_secs(30);
    a_401_fails_the_step_at_once_without_a_refresh: Duration::from_secs(30);
    rate_limits_are_retried_except_the_daily_one_and_gateway_errors_are_retried: Duration::from_secs(30);
    creating_a_contact_twice_with_one_email_answers_the_existing_contact: Duration::from_secs(30);
    contact_actions_read_upsert_and_update_contacts_and_an_unknown_one_fails_with_hubspots_message: Duration::from_secs(30);
    company_and_deal_actions_create_update_read_and_search_them: Duration::from_secs(30);
    associate_links_two_records_both_ways_and_create_note_logs_a_note_on_records: Duration::from_secs(30);
    list_actions_read_pipelines_properties_and_every_page_of_owners_unless_max_pages_stops_them: Duration::from_secs(30);
}
