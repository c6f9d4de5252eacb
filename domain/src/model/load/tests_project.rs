//! Project folders: integrations, their configs and settings, and their workflows.

use serde_json::json;

use super::inputs::{Declared, value_problem};
use super::tests_files::TempDir;
use super::*;
use crate::model::project::{AuthenticationType, IMPLICIT_INTEGRATION, InputType};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/project");

impl TempDir {
    /// Writes `name` (a path with folders) under the temp dir.
    fn put(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        fs::write(path, text).expect("write");
    }
}

fn workflow(id: &str, extra: &str) -> String {
    format!("id: {id}\n{extra}trigger: {{ type: request }}\nsteps: [{{ id: reply, type: response }}]\n")
}

fn problems(dir: &TempDir) -> Vec<String> {
    let found = load_project(&dir.0).expect_err("problems");
    let root = format!("{}/", dir.0.display());
    found.iter().map(|p| p.to_string().replace(&root, "")).collect()
}

fn has(found: &[String], needle: &str) {
    assert!(found.iter().any(|p| p.contains(needle)), "no problem with `{needle}` in:\n{}", found.join("\n"));
}

#[test]
fn the_example_project_loads_two_integrations_and_their_settings() {
    let project = load_project(Path::new(EXAMPLE)).expect("the example project loads");
    let names: Vec<&str> = project.integrations.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["custom.democrm", "slack"]);
    let crm = &project.integrations[0];
    assert!(crm.is_custom());
    assert_eq!(crm.config.authentication_type, Some(AuthenticationType::ApiKey));
    assert_eq!(crm.inputs["lead_source"].kind, InputType::Select);
    let ids: Vec<&str> = project.workflows().map(|(_, wf)| wf.id.as_str()).collect();
    assert_eq!(ids, ["contact-created", "contact-lookup", "lead-created", "new-leads", "deal-won"]);
    assert_eq!(project.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["Contact Created"]);
    let lead = &project.integrations[0].workflows[2].1;
    assert_eq!(lead.integration.as_deref(), Some("custom.democrm"));
    assert_eq!(
        Value::Object(lead.setting_defaults()),
        json!({ "lead_owner": "sales@example.com", "lead_source": "app" })
    );
    let deal = &project.integrations[1].workflows[0].1;
    assert!(deal.enabled_by_default);
    assert_eq!(Value::Object(deal.setting_defaults()), json!({ "channel": "#sales", "min_amount": 0 }));
}

#[test]
fn a_plain_folder_is_the_implicit_integration_and_settings_are_not_checked() {
    let dir = TempDir::new("plain");
    dir.write("a.yaml", &workflow("a", ""));
    dir.write(
        "b.yaml",
        "id: b\ntrigger: { type: request }\nsteps: [{ id: r, type: response, body: \"{{settings.anything}}\" }]\n",
    );
    let project = load_project(&dir.0).expect("loads");
    assert_eq!(project.integrations.len(), 1);
    assert_eq!(project.integrations[0].name, IMPLICIT_INTEGRATION);
    assert!(project.workflows().all(|(_, wf)| wf.integration.is_none()));
    assert_eq!(project.workflows().count(), 2);
}

#[test]
fn workflow_settings_shadow_the_integrations_and_undeclared_ones_are_load_errors() {
    let dir = TempDir::new("shadow");
    dir.put("integrations/slack/config.yaml", "description: Slack\n");
    dir.put(
        "integrations/slack/inputs.yaml",
        "channel: { id: channel, type: text, title: Channel, default: \"#a\" }\n",
    );
    dir.put(
        "integrations/slack/workflows/w.yaml",
        &workflow("w", "inputs:\n  channel: { id: own, type: text, title: Mine, default: \"#b\" }\n"),
    );
    let project = load_project(&dir.0).expect("loads");
    let (_, wf) = project.workflows().next().expect("one workflow");
    assert_eq!(Value::Object(wf.setting_defaults()), json!({ "channel": "#b" }));

    dir.put(
        "integrations/slack/workflows/x.yaml",
        "id: x\ntrigger: { type: request }\nsteps: [{ id: r, type: response, body: \"{{settings.chanel}} {{settings}}\" }]\n",
    );
    let found = problems(&dir);
    has(&found, "integrations/slack/workflows/x.yaml: steps[0].body: `{{settings.chanel}}`: no setting `chanel`");
    has(&found, "(declared: channel)");
    has(&found, "`{{settings}}`: write `settings.<key>`");
}

#[test]
fn every_problem_of_every_file_is_listed_with_its_file_and_path() {
    let dir = TempDir::new("problems");
    dir.put("integrations/trello/config.yaml", "description: x\n");
    dir.put("integrations/slack/inputs.yaml", "{}\n");
    dir.put("integrations/hubspot/config.yaml", "authenticationType: oauth\naccentColor: red\ncolour: blue\n");
    dir.put("integrations/hubspot/notes.txt", "stray\n");
    dir.put("integrations/custom.Acme!/config.yaml", "description: bad name\n");
    dir.put("integrations/custom.acme/config.yaml", "authenticationType: telepathy\n");
    dir.put(
        "integrations/custom.oauthy/config.yaml",
        "authenticationType: oauth\nclientId: \"{{credentials.id}}\"\napiBaseUrl: not a url\nauthorization: { type: bearer }\n",
    );
    dir.put(
        "integrations/custom.keyed/config.yaml",
        "authenticationType: api_key\napiBaseUrl: https://api.example.com\naccessTokenUrl: https://x.example/t\n\
         testEndpointPath: me\nauthorization: { type: header, name: X-Key, value: \"{{trigger.body.key}}\" }\n",
    );
    dir.put(
        "integrations/custom.keyed/inputs.yaml",
        r#"
a: { type: text, title: A }
b: { id: same, type: colour, title: B }
c: { id: same, type: select, title: C }
d: { id: d, type: select, title: D, options: [x, y], default: z }
e: { id: e, type: password, title: E, default: hunter2 }
f: { id: f, type: field_mapping, title: F, fields: { email: Email }, default: { phone: Phone } }
g: { id: g, type: number, title: G, default: "3", options: [a] }
"bad key": { id: "bad id", title: H, type: boolean }
"#,
    );
    let found = problems(&dir);
    for needle in [
        "integrations/trello: unknown integration `trello`",
        "integrations/slack/config.yaml: missing",
        "integrations/hubspot/config.yaml: authenticationType: `authenticationType` is for custom integrations only",
        "integrations/hubspot/config.yaml: accentColor: `red` is not a colour",
        "integrations/hubspot/config.yaml: colour: unknown key `colour`",
        "integrations/hubspot/notes.txt: not part of an integration",
        "integrations/custom.Acme!: `Acme!` is not a valid custom integration name",
        "integrations/custom.acme/config.yaml: authenticationType: unknown authentication type `telepathy`",
        "integrations/custom.acme/config.yaml: apiBaseUrl: `apiBaseUrl` is required",
        "integrations/custom.acme/config.yaml: authorization: `authorization` is required",
        "integrations/custom.oauthy/config.yaml: authorizationUrl: `authorizationUrl` is required",
        "integrations/custom.oauthy/config.yaml: accessTokenUrl: `accessTokenUrl` is required",
        "integrations/custom.oauthy/config.yaml: clientId: `{{credentials.id}}`: only `env` can be used here",
        "integrations/custom.oauthy/config.yaml: clientSecret: `clientSecret` is required",
        "integrations/custom.oauthy/config.yaml: apiBaseUrl: `not a url` is not an absolute http(s) URL",
        "integrations/custom.oauthy/config.yaml: authorization.token: `token` is required for `bearer`",
        "integrations/custom.keyed/config.yaml: accessTokenUrl: `accessTokenUrl` is for OAuth integrations",
        "integrations/custom.keyed/config.yaml: testEndpointPath: must start with `/`",
        "integrations/custom.keyed/config.yaml: authorization.value: `{{trigger.body.key}}`: only `credentials`, `settings`, `env` can be used here",
        "integrations/custom.keyed/inputs.yaml: a.id: `id` is required",
        "integrations/custom.keyed/inputs.yaml: b.type: unknown setting type `colour`",
        "integrations/custom.keyed/inputs.yaml: c.id: id `same` is already the id of `b`",
        "integrations/custom.keyed/inputs.yaml: c.options: `options` is required",
        "integrations/custom.keyed/inputs.yaml: d.default: `z` is not one of the options (x, y)",
        "integrations/custom.keyed/inputs.yaml: e.default: a `password` setting has no default",
        "integrations/custom.keyed/inputs.yaml: f.default: `phone` is not a field of this mapping (email)",
        "integrations/custom.keyed/inputs.yaml: g.options: `options` is only for `select` and `multi_select`",
        "integrations/custom.keyed/inputs.yaml: g.default: must be a number, not a string",
        "integrations/custom.keyed/inputs.yaml: [\"bad key\"]: `bad key` is not a valid setting key",
        "integrations/custom.keyed/inputs.yaml: [\"bad key\"].id: `bad id` is not a valid setting id",
    ] {
        has(&found, needle);
    }
}

#[test]
fn workflow_ids_are_unique_across_the_project() {
    let dir = TempDir::new("unique");
    dir.put(
        "integrations/slack/config.yaml",
        "description: Slack
",
    );
    dir.put(
        "integrations/hubspot/config.yaml",
        "description: HubSpot
",
    );
    dir.put("integrations/hubspot/workflows/one.yaml", &workflow("dup", ""));
    dir.put("integrations/slack/workflows/two.yaml", &workflow("dup", ""));
    dir.write("three.yaml", &workflow("dup", ""));
    let found = problems(&dir);
    assert_eq!(found.len(), 2, "{found:?}");
    has(&found, "integrations/hubspot/workflows/one.yaml: id: workflow id `dup` is already used by");
    has(&found, "integrations/slack/workflows/two.yaml: id: workflow id `dup` is already used by");
}

#[test]
fn a_custom_oauth_integration_with_everything_loads() {
    let dir = TempDir::new("oauth");
    dir.put(
        "integrations/custom.acme/config.yaml",
        r#"
name: Acme
authenticationType: oauth
authorizationUrl: https://acme.example/oauth/authorize
accessTokenUrl: https://acme.example/oauth/token
clientId: "{{env.ACME_CLIENT_ID}}"
clientSecret: "{{env.ACME_CLIENT_SECRET}}"
scopes: [contacts.read, contacts.write]
usePKCEInCodeExchange: true
apiBaseUrl: "{{env.ACME_API}}/v2"
authorization: { type: bearer, token: "{{credentials.accessToken}}" }
"#,
    );
    let project = load_project(&dir.0).expect("loads");
    let config = &project.integrations[0].config;
    assert_eq!(config.scopes.as_ref().map(|s| s.joined()).as_deref(), Some("contacts.read contacts.write"));
    assert_eq!(config.use_pkce_in_code_exchange, Some(true));
}

#[test]
fn setting_values_are_checked_against_their_type() {
    let options = ["a".to_string(), "b".to_string()];
    let fields = ["email".to_string()];
    let declared = Declared { options: Some(&options), fields: Some(&fields) };
    let ok = |kind, value: Value| value_problem(kind, &value, &declared).is_none();
    assert!(ok(InputType::Text, json!("x")));
    assert!(ok(InputType::Number, json!(2.5)));
    assert!(ok(InputType::Boolean, json!(false)));
    assert!(ok(InputType::Select, json!("b")));
    assert!(ok(InputType::MultiSelect, json!(["a", "b"])));
    assert!(ok(InputType::FieldMapping, json!({ "email": "Email__c" })));
    assert!(!ok(InputType::Number, json!("2")));
    assert!(!ok(InputType::Select, json!("c")));
    assert!(!ok(InputType::MultiSelect, json!(["a", 1])));
    assert!(!ok(InputType::FieldMapping, json!({ "email": 3 })));
    assert!(!ok(InputType::Password, json!("x".repeat(3000))));
}

#[test]
fn credentials_are_read_only_in_the_workflows_of_an_integration() {
    let dir = TempDir::new("credentials");
    dir.put("integrations/custom.acme/config.yaml", "authenticationType: api_key\napiBaseUrl: https://a.example\nauthorization: { type: bearer, token: \"{{credentials.apiKey}}\" }\n");
    dir.put(
        "integrations/custom.acme/workflows/ok.yaml",
        "id: ok\ntrigger: { type: request }\nsteps: [{ id: r, type: response, body: \"{{credentials.apiKey}}\" }]\n",
    );
    assert!(load_project(&dir.0).is_ok(), "{:?}", load_project(&dir.0).err());
    dir.put(
        "integrations/custom.acme/workflows/bad.yaml",
        "id: bad\ntrigger: { type: request }\nsteps: [{ id: r, type: response, body: \"{{credentials}}\" }]\n",
    );
    dir.write(
        "plain.yaml",
        "id: plain\ntrigger: { type: request }\nsteps: [{ id: r, type: response, body: \"{{credentials.apiKey}}\" }]\n",
    );
    let found = problems(&dir);
    has(
        &found,
        "integrations/custom.acme/workflows/bad.yaml: steps[0].body: `{{credentials}}`: write `credentials.<name>`",
    );
    has(
        &found,
        "plain.yaml: steps[0].body: `{{credentials.apiKey}}`: `credentials` exist only in the workflows of an integration",
    );
}

#[test]
fn action_steps_are_checked_against_the_catalog_of_their_own_integration() {
    let dir = TempDir::new("actions");
    dir.put("integrations/slack/config.yaml", "apiBaseUrl: \"{{env.SLACK_API}}\"\n");
    let step = |body: &str| {
        format!("id: w{}\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: s, type: action, {body} }}\n", body.len())
    };
    dir.put(
        "integrations/slack/workflows/ok.yaml",
        &step("action: send_message, params: { channel: C1, text: \"{{trigger.body.t}}\" }"),
    );
    let project = load_project(&dir.0).expect("a valid action loads");
    let slack = project.integrations.iter().find(|i| i.name == "slack").expect("slack");
    let api = slack.workflows[0].1.integration_api.clone().expect("the catalog's API, its URL from the config");
    assert_eq!(api.base_url, "{{env.SLACK_API}}");
    assert_eq!(
        api.authorization,
        crate::model::project::Authorization::Bearer { token: "{{credentials.accessToken}}".into() }
    );
    dir.put("integrations/slack/workflows/a.yaml", &step("action: send_mesage"));
    dir.put("integrations/slack/workflows/b.yaml", &step("action: send_message, params: { channel: 3, colour: red }"));
    dir.put("integrations/slack/workflows/c.yaml", &step("integration: hubspot, action: create_contact"));
    dir.put(
        "integrations/slack/workflows/d.yaml",
        &step("action: list_channels, params: { limit: \"{{steps.nope.output}}\" }"),
    );
    dir.write("plain.yaml", &step("action: request"));
    let found = problems(&dir);
    has(
        &found,
        "a.yaml: steps[0].action: `slack` has no action `send_mesage` (its actions: add_reaction, delete_message, find_user_by_email, list_channels, list_users, send_direct_message, send_message, update_message, upload_file, upload_text_file)",
    );
    has(&found, "b.yaml: steps[0].params.channel: must be string, not a number");
    has(&found, "b.yaml: steps[0].params.colour: `send_message` has no param `colour`");
    has(&found, "b.yaml: steps[0].params.text: `text` is required by `send_message`");
    has(&found, "c.yaml: steps[0].integration: this workflow belongs to `slack`");
    has(&found, "d.yaml: steps[0].params.limit:");
    has(&found, "plain.yaml: steps[0]: action steps belong to an integration's workflows");
}

#[test]
fn a_built_in_integration_with_an_oauth_client_connects_on_the_catalogs_endpoints() {
    let dir = TempDir::new("builtin-oauth");
    dir.put(
        "integrations/hubspot/config.yaml",
        "clientId: \"{{env.HUBSPOT_CLIENT_ID}}\"\nclientSecret: \"{{env.HUBSPOT_CLIENT_SECRET}}\"\n",
    );
    dir.put(
        "integrations/hubspot/workflows/find.yaml",
        "id: find\ntrigger: { type: request }\nsteps:\n  - id: a\n    type: conditional\n    when: { all: [{ left: 1, op: equals, right: 1 }] }\n    then:\n      - { id: s, type: action, action: search_contacts, params: { filterGroups: [] } }\n  - { id: u, type: action, action: update_contact, params: { contactId: \"1\", properties: {} } }\n",
    );
    dir.put("integrations/slack/config.yaml", "description: \"no OAuth client, tokens are handed over\"\n");
    let project = load_project(&dir.0).expect("loads");
    let config = |name: &str| project.integrations.iter().find(|i| i.name == name).expect("integration").config.clone();
    let hubspot = config("hubspot");
    assert_eq!(hubspot.authentication_type, Some(AuthenticationType::Oauth));
    assert_eq!(hubspot.authorization_url.as_deref(), Some("https://app.hubspot.com/oauth/authorize"));
    assert_eq!(hubspot.access_token_url.as_deref(), Some("https://api.hubapi.com/oauth/2026-03/token"));
    assert_eq!(
        hubspot.scopes.map(|s| s.joined()).as_deref(),
        Some("oauth crm.objects.contacts.read crm.objects.contacts.write"),
        "the catalog's scopes and those of the actions the workflows run, nested ones included"
    );
    assert_eq!(config("slack").authentication_type, None);

    dir.put("integrations/hubspot/config.yaml", "clientId: literal-id\nscopes: 3\n");
    let found = problems(&dir);
    has(&found, "integrations/hubspot/config.yaml: clientSecret: `clientSecret` is required with `clientId`");
    has(&found, "integrations/hubspot/config.yaml: scopes: must be a string or a list of strings");

    dir.put(
        "integrations/hubspot/config.yaml",
        "userScopes: [a]\napiVersion: v1.0\nloginHosts: { x: https://x.example }\n",
    );
    dir.put("integrations/salesforce/config.yaml", "apiVersion: \"66\"\nloginHosts: { \"bad host\": nope }\n");
    let found = problems(&dir);
    has(&found, "integrations/hubspot/config.yaml: userScopes: `hubspot` has no user scopes");
    has(&found, "integrations/hubspot/config.yaml: apiVersion: `hubspot`'s API has no version");
    has(&found, "integrations/hubspot/config.yaml: loginHosts: `hubspot` has no login hosts");
    has(&found, "integrations/salesforce/config.yaml: apiVersion: `66` is not an API version");
    has(&found, "integrations/salesforce/config.yaml: loginHosts.bad host: a login host is a name");
}

#[test]
fn a_literal_request_path_or_test_endpoint_that_leaves_the_api_base_url_is_a_load_error() {
    let dir = TempDir::new("escaping-paths");
    dir.put(
        "integrations/custom.acme/config.yaml",
        "authenticationType: api_key\napiBaseUrl: https://a.example/ledger\ntestEndpointPath: \"/me/..%2f..%2fadmin\"\n\
         authorization: { type: bearer, token: \"{{credentials.apiKey}}\" }\n",
    );
    let request = |id: &str, path: &str| {
        format!(
            "id: {id}\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: s, type: action, action: request, params: {{ path: \"{path}\" }} }}\n"
        )
    };
    dir.put("integrations/custom.acme/workflows/ok.yaml", &request("ok", "/things/{{trigger.body.id}}"));
    dir.put("integrations/custom.acme/workflows/dots.yaml", &request("dots", "/a/%252e%252e/admin"));
    dir.put("integrations/custom.acme/workflows/slash.yaml", &request("slash", "/x/%2e%2e%2f%2e%2e%2fadmin"));
    let found = problems(&dir);
    assert_eq!(found.len(), 3, "{found:?}");
    has(&found, "config.yaml: testEndpointPath: must be a path under `apiBaseUrl`: it may not contain an encoded `/`");
    has(&found, "dots.yaml: steps[0].params.path: must be a path under `apiBaseUrl`: it may not contain a `.` or `..`");
    has(
        &found,
        "slash.yaml: steps[0].params.path: must be a path under `apiBaseUrl`: it may not contain an encoded `/`",
    );
}

#[test]
fn a_duplicate_workflow_id_is_reported_beside_every_other_problem() {
    let dir = TempDir::new("unique-with-problems");
    dir.put("integrations/slack/config.yaml", "accentColor: red\n");
    dir.put("integrations/slack/workflows/one.yaml", &workflow("dup", ""));
    dir.put("integrations/slack/workflows/two.yaml", &workflow("dup", ""));
    dir.put("integrations/hubspot/config.yaml", "description: HubSpot\n");
    // A duplicate in a file with a problem of its own, and a sibling file with a problem.
    dir.put(
        "integrations/hubspot/workflows/three.yaml",
        "id: dup\ntrigger: { type: request }\nsteps: [{ id: r, type: teleport }]\n",
    );
    dir.put("integrations/hubspot/workflows/broken.yaml", "id: [not, text\n");
    dir.write("four.yaml", &workflow("solo", ""));
    dir.write("five.yaml", &workflow("solo", "colour: blue\n"));
    let found = problems(&dir);
    has(&found, "integrations/slack/config.yaml: accentColor: `red` is not a colour");
    has(&found, "integrations/hubspot/workflows/three.yaml: steps[0].type");
    has(&found, "integrations/hubspot/workflows/broken.yaml");
    has(&found, "five.yaml: colour");
    has(&found, "integrations/slack/workflows/one.yaml: id: workflow id `dup` is already used by");
    has(&found, "integrations/slack/workflows/two.yaml: id: workflow id `dup` is already used by");
    has(&found, "four.yaml: id: workflow id `solo` is already used by");
    let duplicates = found.iter().filter(|p| p.contains("is already used by")).count();
    assert_eq!(duplicates, 3, "the first file of each id is not a duplicate: {found:#?}");
}

#[test]
fn a_literal_client_id_or_secret_is_refused_with_its_file_and_path() {
    let dir = TempDir::new("literal-client");
    dir.put("integrations/hubspot/config.yaml", "clientId: literal-id\nclientSecret: hunter2-secret\n");
    dir.put(
        "integrations/custom.acme/config.yaml",
        "authenticationType: oauth\nauthorizationUrl: https://a.example/auth\naccessTokenUrl: https://a.example/token\n\
         clientId: \"acme-{{env.ACME_ID}}\"\nclientSecret: \"{{env.A}}{{env.B}}\"\napiBaseUrl: https://a.example\n\
         authorization: { type: bearer, token: \"{{credentials.accessToken}}\" }\n",
    );
    dir.put(
        "integrations/custom.machine/config.yaml",
        "authenticationType: oauth_client_credential\naccessTokenUrl: https://m.example/token\n\
         clientId: 42\nclientSecret: \"{{env}}\"\napiBaseUrl: https://m.example\n\
         authorization: { type: bearer, token: \"{{credentials.accessToken}}\" }\n",
    );
    let found = problems(&dir);
    let must = "must be exactly `{{env.NAME}}`, not a literal value";
    has(&found, &format!("integrations/hubspot/config.yaml: clientId: `clientId` {must}"));
    has(&found, &format!("integrations/hubspot/config.yaml: clientSecret: `clientSecret` {must}"));
    has(&found, &format!("integrations/custom.acme/config.yaml: clientId: `clientId` {must}"));
    has(&found, &format!("integrations/custom.acme/config.yaml: clientSecret: `clientSecret` {must}"));
    has(&found, "integrations/custom.machine/config.yaml: clientId: must be a string");
    has(&found, "integrations/custom.machine/config.yaml: clientSecret:");
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(!found.iter().any(|p| p.contains("hunter2")), "the secret is not repeated: {found:#?}");

    dir.put(
        "integrations/hubspot/config.yaml",
        "clientId: \"{{env.HUBSPOT_ID}}\"\nclientSecret: \"{{ env.HUBSPOT_SECRET }}\"\n",
    );
    std::fs::remove_dir_all(dir.0.join("integrations/custom.acme")).expect("remove");
    std::fs::remove_dir_all(dir.0.join("integrations/custom.machine")).expect("remove");
    load_project(&dir.0).expect("`{{env.NAME}}` values load");
}

#[test]
fn app_events_are_declared_in_events_and_listeners_must_name_a_declared_one() {
    let dir = TempDir::new("events");
    dir.put("integrations/slack/config.yaml", "description: Slack\n");
    dir.put("events/contact-created.yaml", "name: Contact Created\nexample: { email: ada@example.com, tags: [a] }\n");
    dir.put("events/deal.json", r#"{ "name": "Deal Won", "example": { "amount": 5 } }"#);
    let listen = |id: &str, event: &str| {
        format!("id: {id}\ntrigger: {{ type: app_event, event: {event} }}\nsteps: [{{ id: r, type: response }}]\n")
    };
    dir.put("integrations/slack/workflows/on-contact.yaml", &listen("on-contact", "Contact Created"));
    dir.put("plain-deal.yaml", &listen("plain-deal", "Deal Won"));
    let project = load_project(&dir.0).expect("loads");
    let names: Vec<&str> = project.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Contact Created", "Deal Won"]);
    assert_eq!(project.events[0].example, json!({ "email": "ada@example.com", "tags": ["a"] }));

    dir.put("integrations/slack/workflows/typo.yaml", &listen("typo", "Contact Creatd"));
    dir.put(
        "enabled-plain.yaml",
        "id: enabled-plain\ntrigger: { type: integration_enabled }\nsteps: [{ id: r, type: response }]\n",
    );
    dir.put("events/dup.yaml", "name: Deal Won\n");
    dir.put("events/bad.yaml", "name: \" x\"\nexample: [1]\nextra: 1\n");
    dir.put("events/notes.txt", "hello");
    let found = problems(&dir);
    has(
        &found,
        "typo.yaml: trigger.event: no app event `Contact Creatd` is declared (declared: Contact Created, Deal Won)",
    );
    has(
        &found,
        "enabled-plain.yaml: trigger.type: a `integration_enabled` trigger belongs to an integration's workflows",
    );
    has(&found, "events/dup.yaml: name: event `Deal Won` is already declared by");
    has(&found, "events/bad.yaml: name: `  x` begins or ends with blanks".replace("  x", " x").as_str());
    has(&found, "events/bad.yaml: example: must be a JSON object");
    has(&found, "events/bad.yaml: extra: unknown key");
    has(&found, "events/notes.txt: only app event files");
    assert_eq!(found.len(), 7, "{found:#?}");
}

#[test]
fn a_listener_without_any_declared_event_is_told_where_to_declare_it() {
    let dir = TempDir::new("no-events");
    dir.put("integrations/slack/config.yaml", "description: Slack\n");
    dir.put(
        "integrations/slack/workflows/l.yaml",
        "id: l\ntrigger: { type: app_event, event: Ping }\nsteps: [{ id: r, type: response }]\n",
    );
    has(&problems(&dir), "no app event `Ping` is declared (declare it in events/<name>.yaml");
}
