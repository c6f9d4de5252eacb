//! The built-in `googlecalendar` integration end to end against its provider's fake (Google
//! Calendar, `sluice_fakes::google`), on both backends: the hosted OAuth flow asking for
//! offline access so a connection outlives its access tokens, refreshes when Google refuses a
//! token, a revoked grant shown to the user, Google's rate limits retried and its other refusals
//! not, and every catalog action as Google's reference documents its request and answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::on_both_backends;
use sluice_e2e::providers::{
    self, action_step, connection, deploy, error, oauth_config, output, retried_step, since, together,
};
use sluice_e2e::stack::{Backend, TestStack};
use sluice_fakes::google::{EventWrite, FakeFailure, FakeGoogle, GoogleConfig, Recorded};

const INTEGRATION: &str = "googlecalendar";
const ADA: &str = "ada";
const SCOPES: &str = "https://www.googleapis.com/auth/";
/// A calendar id that must be percent-encoded in a path (`@`).
const SHARED: &str = "secondary-1@group.calendar.google.com";
const SHARED_PATH: &str = "/calendar/v3/calendars/secondary-1%40group.calendar.google.com";
/// The access token lifetime of the lifetime test: Sluice refreshes a tenth of it before the
/// end, so five runs at once must be done within nine tenths of it.
const LIFETIME: Duration = Duration::from_secs(3);

/// The fake with the test stack's OAuth client (`TEST_CLIENT_ID` / `TEST_CLIENT_SECRET`).
fn google(config: GoogleConfig) -> GoogleConfig {
    GoogleConfig { client_id: "client-1".to_string(), client_secret: "secret-1".to_string(), ..config }
}

/// Walks the hosted OAuth flow for `user` (see [`providers::connect`]) and answers the
/// authorize URL Sluice built, once the portal shows `user` connected.
async fn connect(stack: &TestStack, user: &str) -> url::Url {
    let (authorize, _) = providers::connect(stack, user, INTEGRATION, "").await.expect("Google sends the browser back");
    let shown = connection(stack, user, INTEGRATION).await;
    assert_eq!(shown["connected"], json!(true), "{user} is connected: {shown:#}");
    authorize
}

/// A project on `fake` with `workflows` (id, steps), deployed, and `ada` connected through the
/// hosted flow: the fake, and the authorize URL Sluice built.
struct Google<'a> {
    stack: &'a TestStack,
    fake: FakeGoogle,
    authorize: url::Url,
}

impl<'a> Google<'a> {
    async fn start(stack: &'a TestStack, config: GoogleConfig, workflows: &[(&str, String)]) -> Google<'a> {
        let fake = FakeGoogle::start(google(config)).await.expect("the fake Google starts");
        let config = oauth_config(&fake.authorize_url(), &fake.token_url(), &fake.api_url(), "");
        deploy(stack, INTEGRATION, &config, workflows).await;
        let authorize = connect(stack, ADA).await;
        Google { stack, fake, authorize }
    }

    /// Runs `workflow` for `user`: step `a` as the execution record shows it (`status`,
    /// `output`, `error` with `message`, `retryable` and `details`, `attempts`).
    async fn run_as(&self, user: &str, workflow: &str) -> Value {
        providers::run(self.stack, user, workflow, json!({})).await
    }

    async fn run(&self, workflow: &str) -> Value {
        self.run_as(ADA, workflow).await
    }

    /// Five runs of `workflow` at once.
    async fn five(&self, workflow: &str) -> Vec<Value> {
        together((0..5).map(|_| self.run(workflow))).await
    }

    /// The Calendar API requests received, oldest first.
    fn api(&self) -> Vec<Recorded> {
        self.fake.requests().into_iter().filter(|r| r.path.starts_with("/calendar/v3/")).collect()
    }

    /// The Calendar API requests received since the first `from`.
    fn api_since(&self, from: usize) -> Vec<Recorded> {
        since(self.api(), from)
    }
}

fn bearer(request: &Recorded) -> &str {
    let header = request.authorization.as_deref().unwrap_or_default();
    header.strip_prefix("Bearer ").unwrap_or_else(|| panic!("a bearer token: {request:?}"))
}

fn query(request: &Recorded) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(request.query.as_bytes()).into_owned().collect()
}

fn body(request: &Recorded) -> Value {
    serde_json::from_str(&request.body).unwrap_or_else(|e| panic!("a JSON body ({e}): {request:?}"))
}

fn method_and_path(requests: &[Recorded]) -> Vec<(String, String)> {
    requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect()
}

fn scopes(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| format!("{SCOPES}{name}")).collect()
}

const LIST_PRIMARY: &str = "{ calendarId: primary }";
const KICKOFF: &str = "summary: Kickoff, start: { dateTime: \"2030-02-01T10:00:00Z\" }, \
                       end: { dateTime: \"2030-02-01T11:00:00Z\" }, attendees: [{ email: bob@example.com }], \
                       sendUpdates: all";

async fn the_hosted_connect_asks_for_offline_access_and_the_connection_outlives_three_token_lifetimes(
    stack: &TestStack,
) {
    // The user consented before: only `prompt=consent` gets a refresh token out of Google again.
    let config = GoogleConfig { access_token_lifetime: LIFETIME, already_consented: true, ..GoogleConfig::default() };
    let workflows = [
        ("list", action_step("list_events", LIST_PRIMARY)),
        ("create", action_step("create_event", &format!("{{ calendarId: primary, {KICKOFF} }}"))),
        ("calendars", action_step("list_calendars", "{}")),
        (
            "busy",
            action_step(
                "free_busy",
                "{ timeMin: \"2030-01-01T00:00:00Z\", timeMax: \"2030-01-02T00:00:00Z\", items: [{ id: primary }] }",
            ),
        ),
    ];
    let google = Google::start(stack, config, &workflows).await;

    let asked: BTreeMap<String, String> = google.authorize.query_pairs().into_owned().collect();
    assert_eq!(google.fake.last_authorize_query().as_ref(), Some(&asked), "the browser went where Sluice said");
    assert_eq!(asked.get("access_type").map(String::as_str), Some("offline"), "{asked:?}");
    assert_eq!(asked.get("prompt").map(String::as_str), Some("consent"), "{asked:?}");
    assert_eq!(asked.get("response_type").map(String::as_str), Some("code"), "{asked:?}");
    assert_eq!(asked.get("client_id").map(String::as_str), Some("client-1"), "{asked:?}");
    assert_eq!(asked.get("code_challenge_method").map(String::as_str), Some("S256"), "{asked:?}");
    assert_eq!(asked.get("code_challenge").map(String::len), Some(43), "a SHA-256 PKCE challenge: {asked:?}");
    let scope = asked.get("scope").cloned().unwrap_or_default();
    assert!(!scope.contains(','), "Google's scopes are space-joined: {scope}");
    let requested: Vec<&str> = scope.split(' ').collect();
    assert_eq!(requested.len(), 4, "each scope once: {scope}");
    assert_eq!(
        requested.into_iter().map(str::to_string).collect::<BTreeSet<_>>(),
        scopes(&["calendar.events.readonly", "calendar.events", "calendar.calendarlist.readonly", "calendar.freebusy"]),
        "the narrowest scopes of the project's actions"
    );
    assert_eq!(google.fake.token_requests("authorization_code"), 1);
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(true), &json!(false)), "{shown:#}");

    // Four access-token lifetimes, five runs at once in each: one refresh per lifetime, and
    // every request carries that lifetime's token (none is refused and sent again).
    let mut tokens: Vec<String> = Vec::new();
    for lifetime in 0..4 {
        if lifetime > 0 {
            tokio::time::sleep(LIFETIME + Duration::from_millis(150)).await;
        }
        let from = google.api().len();
        let began = std::time::Instant::now();
        for answer in google.five("list").await {
            assert_eq!(output(&answer)["events"], json!([]), "lifetime {lifetime}");
        }
        let took = began.elapsed();
        assert_eq!(google.fake.token_requests("refresh_token"), lifetime, "one refresh per lifetime (took {took:?})");
        let sent = google.api_since(from);
        assert_eq!(sent.len(), 5, "lifetime {lifetime} (took {took:?}): no request refused and sent again: {sent:#?}");
        let used: BTreeSet<&str> = sent.iter().map(bearer).collect();
        assert_eq!(used.len(), 1, "lifetime {lifetime}: one token at a time: {used:?}");
        let token = used.into_iter().next().unwrap_or_default().to_string();
        assert!(token.starts_with("ya29.") && !tokens.contains(&token), "lifetime {lifetime}: a fresh token");
        tokens.push(token);
    }
    assert_eq!(google.fake.token_requests("authorization_code"), 1, "never asked to connect again");
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!(shown["connected"], json!(true), "{shown:#}");
}

async fn a_token_google_expired_early_is_refreshed_once_for_concurrent_runs_that_then_succeed(stack: &TestStack) {
    let google =
        Google::start(stack, GoogleConfig::default(), &[("list", action_step("list_events", LIST_PRIMARY))]).await;
    output(&google.run("list").await);
    let old = bearer(&google.api()[0]).to_string();

    // Sluice believes the token good for another hour; Google does not.
    google.fake.expire_all_tokens();
    let from = google.api().len();
    for answer in google.five("list").await {
        output(&answer);
    }
    assert_eq!(google.fake.token_requests("refresh_token"), 1, "one refresh for every run that saw the 401");
    let sent = google.api_since(from);
    let refused = sent.iter().filter(|r| bearer(r) == old).count();
    let renewed: Vec<&str> = sent.iter().map(bearer).filter(|token| *token != old).collect();
    assert!(refused >= 1, "the expired token was sent and refused: {sent:#?}");
    assert_eq!(renewed.len(), 5, "each run succeeded once with the new token: {sent:#?}");
    assert_eq!(renewed.iter().collect::<BTreeSet<_>>().len(), 1, "one new token: {renewed:?}");

    let from = google.api().len();
    output(&google.run("list").await);
    assert_eq!(google.api_since(from).len(), 1, "the new token is kept");
    assert_eq!(google.fake.token_requests("refresh_token"), 1);
}

async fn a_revoked_grant_fails_the_step_and_the_portal_asks_the_user_to_connect_again(stack: &TestStack) {
    let google =
        Google::start(stack, GoogleConfig::default(), &[("list", action_step("list_events", LIST_PRIMARY))]).await;
    output(&google.run("list").await);

    // The user removed the app's access in their Google account.
    google.fake.revoke_refresh_tokens();
    google.fake.expire_all_tokens();
    let answer = google.run("list").await;
    let (message, retryable) = error(&answer);
    assert!(message.contains("needs re-authorisation"), "{message}");
    assert!(!retryable, "retrying cannot mend a revoked grant: {answer:#}");
    assert_eq!(google.fake.token_requests("refresh_token"), 1, "one refresh tried");
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(false), &json!(true)), "{shown:#}");

    connect(stack, ADA).await;
    let shown = connection(stack, ADA, INTEGRATION).await;
    assert_eq!((&shown["connected"], &shown["needsReauthorization"]), (&json!(true), &json!(false)), "{shown:#}");
    output(&google.run("list").await);
}

async fn rate_limits_and_quota_are_retried_and_other_refusals_fail_at_once(stack: &TestStack) {
    let workflows =
        [("once", action_step("list_calendars", "{}")), ("retried", retried_step("list_calendars", "{}", 1, "1s"))];
    let google = Google::start(stack, GoogleConfig::default(), &workflows).await;
    let retryable = [
        (FakeFailure::RateLimitExceeded, "rateLimitExceeded"),
        (FakeFailure::UserRateLimitExceeded, "userRateLimitExceeded"),
        (FakeFailure::TooManyRequests, "rateLimitExceeded"),
        (FakeFailure::QuotaExceeded, "quotaExceeded"),
    ];
    for (failure, reason) in retryable {
        google.fake.fail_next(failure.clone());
        let answer = google.run("once").await;
        let (message, retryable) = error(&answer);
        assert!(retryable && message.contains(reason), "{failure:?}: {answer:#}");

        google.fake.fail_next(failure.clone());
        let from = google.api().len();
        let answer = google.run("retried").await;
        assert_eq!(output(&answer)["calendars"][0]["id"], json!("user@example.com"), "{failure:?}");
        assert_eq!(answer["attempts"], json!(2), "{failure:?}: refused, then retried once: {answer:#}");
        assert_eq!(google.api_since(from).len(), 2, "{failure:?}");
    }

    let terminal = [
        (403, "forbidden", "Forbidden"),
        (403, "insufficientPermissions", "Request had insufficient authentication scopes."),
        (403, "dailyLimitExceeded", "Daily Limit Exceeded"),
        (400, "invalid", "Invalid Value"),
    ];
    for (code, reason, google_message) in terminal {
        google.fake.fail_next(FakeFailure::Status {
            code,
            reason: reason.to_string(),
            message: google_message.to_string(),
        });
        let from = google.api().len();
        let answer = google.run("retried").await;
        let (message, retryable) = error(&answer);
        assert!(!retryable && message.contains(google_message), "{reason}: {answer:#}");
        assert_eq!(answer["error"]["details"]["status"], json!(code), "{answer:#}");
        assert_eq!(answer["attempts"], json!(1), "{reason}: not retried: {answer:#}");
        assert_eq!(google.api_since(from).len(), 1, "{reason}");
    }
}

async fn create_event_names_its_event_so_a_create_sent_again_returns_the_one_event(stack: &TestStack) {
    let workflows = [
        ("create", retried_step("create_event", &format!("{{ calendarId: primary, {KICKOFF} }}"), 1, "1s")),
        (
            "create-named",
            action_step("create_event", &format!("{{ calendarId: {SHARED}, eventId: kickoff2030, {KICKOFF} }}")),
        ),
    ];
    let google = Google::start(stack, GoogleConfig::default(), &workflows).await;

    // A 500 after which the step is retried: the same id both times.
    google.fake.fail_next(FakeFailure::BackendError);
    let answer = google.run("create").await;
    let event = output(&answer);
    let sent = google.api();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let ids: Vec<Value> = sent.iter().map(|r| body(r)["id"].clone()).collect();
    let id = ids[0].as_str().unwrap_or_default().to_string();
    assert_eq!(ids[1], json!(id), "the retry names the same event");
    assert!(
        (5..=1024).contains(&id.len()) && id.chars().all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c)),
        "a base32hex event id: {id}"
    );
    for request in &sent {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/calendar/v3/calendars/primary/events"));
        assert_eq!(query(request).get("sendUpdates").map(String::as_str), Some("all"));
        assert_eq!(request.content_type.as_deref().map(|c| c.starts_with("application/json")), Some(true));
        assert_eq!(
            body(request),
            json!({
                "id": id,
                "summary": "Kickoff",
                "start": { "dateTime": "2030-02-01T10:00:00Z" },
                "end": { "dateTime": "2030-02-01T11:00:00Z" },
                "attendees": [{ "email": "bob@example.com" }],
            }),
            "only the params given"
        );
    }
    assert_eq!(bearer(&sent[0]), bearer(&sent[1]));
    assert_eq!((&event["id"], &event["summary"]), (&json!(id), &json!("Kickoff")), "{event:#}");
    assert_eq!(google.fake.events("primary").len(), 1);

    // The same create twice with an explicit id: Google's 409, then the event itself.
    let first = google.run("create-named").await;
    let from = google.api().len();
    let second = google.run("create-named").await;
    assert_eq!(output(&second), output(&first), "the second answer is the event the first made");
    assert_eq!(output(&first)["id"], json!("kickoff2030"));
    assert_eq!(
        method_and_path(&google.api_since(from)),
        [
            ("POST".to_string(), format!("{SHARED_PATH}/events")),
            ("GET".to_string(), format!("{SHARED_PATH}/events/kickoff2030")),
        ]
    );
    assert_eq!(google.fake.events(SHARED).len(), 1, "one event");
    let inserts: Vec<EventWrite> = google.fake.writes().into_iter().filter(|w| w.event_id == "kickoff2030").collect();
    assert_eq!(inserts.len(), 1, "one insert, one round of invitations: {inserts:?}");
    assert_eq!(inserts[0].send_updates.as_deref(), Some("all"));
}

async fn list_events_and_list_calendars_read_every_page_unless_max_pages_stops_them(stack: &TestStack) {
    let config = GoogleConfig { events: 25, secondary_calendars: 4, ..GoogleConfig::default() };
    let workflows = [
        ("events", action_step("list_events", "{ calendarId: primary, maxResults: 10 }")),
        ("events-two", action_step("list_events", "{ calendarId: primary, maxResults: 10, maxPages: 2 }")),
        (
            "events-filtered",
            action_step(
                "list_events",
                "{ calendarId: primary, singleEvents: true, orderBy: startTime, timeMin: \"2030-01-01T10:00:00Z\", \
                 timeMax: \"2030-01-01T13:00:00Z\", updatedMin: \"2020-01-01T00:00:00Z\", showDeleted: true, \
                 q: seeded, timeZone: Europe/Zurich }",
            ),
        ),
        ("calendars", action_step("list_calendars", "{ maxResults: 2 }")),
        ("calendars-one", action_step("list_calendars", "{ maxResults: 2, maxPages: 1, minAccessRole: owner }")),
    ];
    let google = Google::start(stack, config, &workflows).await;
    let seeded = |range: std::ops::RangeInclusive<usize>| -> Vec<Value> {
        range.map(|i| json!(format!("seed{i:06}"))).collect()
    };
    let ids = |list: &Value| -> Vec<Value> { list.as_array().into_iter().flatten().map(|e| e["id"].clone()).collect() };

    let answer = google.run("events").await;
    let all = output(&answer);
    assert_eq!(ids(&all["events"]), seeded(1..=25));
    assert_eq!((&all["pages"], &all["truncated"]), (&json!(3), &json!(false)));
    let sent = google.api();
    assert_eq!(sent.len(), 3);
    let tokens: Vec<Option<String>> = sent.iter().map(|r| query(r).get("pageToken").cloned()).collect();
    assert!(tokens[0].is_none() && tokens[1].is_some() && tokens[2].is_some() && tokens[1] != tokens[2], "{sent:#?}");
    for request in &sent {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/calendar/v3/calendars/primary/events"));
        assert_eq!(query(request).get("maxResults").map(String::as_str), Some("10"), "every page asks the same size");
    }

    let from = google.api().len();
    let answer = google.run("events-two").await;
    let two = output(&answer);
    assert_eq!(ids(&two["events"]), seeded(1..=20));
    assert_eq!((&two["pages"], &two["truncated"]), (&json!(2), &json!(true)));
    assert_eq!(google.api_since(from).len(), 2);

    let from = google.api().len();
    let answer = google.run("events-filtered").await;
    assert_eq!(ids(&output(&answer)["events"]), seeded(2..=4), "ending after 10:00, starting before 13:00");
    let sent = google.api_since(from);
    let expected: BTreeMap<String, String> = [
        ("singleEvents", "true"),
        ("orderBy", "startTime"),
        ("timeMin", "2030-01-01T10:00:00Z"),
        ("timeMax", "2030-01-01T13:00:00Z"),
        ("updatedMin", "2020-01-01T00:00:00Z"),
        ("showDeleted", "true"),
        ("q", "seeded"),
        ("timeZone", "Europe/Zurich"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(sent.iter().map(query).collect::<Vec<_>>(), [expected]);

    let from = google.api().len();
    let answer = google.run("calendars").await;
    let calendars = output(&answer);
    let mut expected = vec![json!("user@example.com")];
    expected.extend((1..=4).map(|i| json!(format!("secondary-{i}@group.calendar.google.com"))));
    assert_eq!(ids(&calendars["calendars"]), expected);
    assert_eq!(calendars["calendars"][0]["primary"], json!(true));
    assert_eq!((&calendars["pages"], &calendars["truncated"]), (&json!(3), &json!(false)));
    let sent = google.api_since(from);
    assert_eq!(method_and_path(&sent), vec![("GET".to_string(), "/calendar/v3/users/me/calendarList".to_string()); 3]);

    let from = google.api().len();
    let answer = google.run("calendars-one").await;
    let one = output(&answer);
    assert_eq!(ids(&one["calendars"]), expected[..2]);
    assert_eq!((&one["pages"], &one["truncated"]), (&json!(1), &json!(true)));
    let sent = google.api_since(from);
    assert_eq!(sent.len(), 1);
    assert_eq!(query(&sent[0]).get("minAccessRole").map(String::as_str), Some("owner"));
}

async fn get_update_delete_and_free_busy_send_what_google_documents(stack: &TestStack) {
    let workflows = [
        (
            "create",
            action_step(
                "create_event",
                &format!(
                    "{{ calendarId: {SHARED}, eventId: standup01, summary: Standup, description: Daily, \
                     start: {{ dateTime: \"2030-03-01T09:00:00Z\" }}, end: {{ dateTime: \"2030-03-01T09:15:00Z\" }} }}"
                ),
            ),
        ),
        ("get", action_step("get_event", &format!("{{ calendarId: {SHARED}, eventId: standup01, timeZone: UTC }}"))),
        (
            "update",
            action_step(
                "update_event",
                &format!(
                    "{{ calendarId: {SHARED}, eventId: standup01, summary: Standup (moved), location: Room 2, \
                     end: {{ dateTime: \"2030-03-01T09:30:00Z\" }}, sendUpdates: externalOnly }}"
                ),
            ),
        ),
        (
            "busy",
            action_step(
                "free_busy",
                &format!(
                    "{{ timeMin: \"2030-03-01T00:00:00Z\", timeMax: \"2030-03-02T00:00:00Z\", timeZone: UTC, \
                     items: [{{ id: {SHARED} }}, {{ id: nobody@example.com }}], calendarExpansionMax: 10 }}"
                ),
            ),
        ),
        (
            "delete",
            action_step("delete_event", &format!("{{ calendarId: {SHARED}, eventId: standup01, sendUpdates: all }}")),
        ),
        ("get-unknown", action_step("get_event", "{ calendarId: primary, eventId: nosuchevent }")),
        ("update-unknown", action_step("update_event", "{ calendarId: primary, eventId: nosuchevent, summary: x }")),
        ("delete-unknown", action_step("delete_event", "{ calendarId: primary, eventId: nosuchevent }")),
    ];
    let google = Google::start(stack, GoogleConfig::default(), &workflows).await;
    let created = output(&google.run("create").await).clone();
    let token = bearer(&google.api()[0]).to_string();

    let from = google.api().len();
    let answer = google.run("get").await;
    assert_eq!(output(&answer), &created, "the event as created");
    let sent = google.api_since(from);
    assert_eq!(method_and_path(&sent), [("GET".to_string(), format!("{SHARED_PATH}/events/standup01"))]);
    assert_eq!(query(&sent[0]), BTreeMap::from([("timeZone".to_string(), "UTC".to_string())]));
    assert_eq!(bearer(&sent[0]), token, "ada's token");

    let from = google.api().len();
    let answer = google.run("update").await;
    let updated = output(&answer);
    assert_eq!((&updated["summary"], &updated["location"]), (&json!("Standup (moved)"), &json!("Room 2")));
    assert_eq!(
        (&updated["description"], &updated["start"], &updated["end"]),
        (&json!("Daily"), &created["start"], &json!({ "dateTime": "2030-03-01T09:30:00Z" })),
        "fields not given are left as they were"
    );
    let sent = google.api_since(from);
    assert_eq!(method_and_path(&sent), [("PATCH".to_string(), format!("{SHARED_PATH}/events/standup01"))]);
    assert_eq!(query(&sent[0]).get("sendUpdates").map(String::as_str), Some("externalOnly"));
    assert_eq!(
        body(&sent[0]),
        json!({ "summary": "Standup (moved)", "location": "Room 2", "end": { "dateTime": "2030-03-01T09:30:00Z" } }),
        "a patch carries only the fields given"
    );
    assert_eq!(bearer(&sent[0]), token);

    let from = google.api().len();
    let answer = google.run("busy").await;
    let busy = output(&answer);
    assert_eq!(
        busy["calendars"][SHARED]["busy"],
        json!([{ "start": "2030-03-01T09:00:00Z", "end": "2030-03-01T09:30:00Z" }]),
        "{busy:#}"
    );
    assert_eq!(busy["calendars"]["nobody@example.com"]["errors"][0]["reason"], json!("notFound"), "{busy:#}");
    assert_eq!(busy["timeMin"], json!("2030-03-01T00:00:00.000Z"), "{busy:#}");
    let sent = google.api_since(from);
    assert_eq!(method_and_path(&sent), [("POST".to_string(), "/calendar/v3/freeBusy".to_string())]);
    assert_eq!(
        body(&sent[0]),
        json!({
            "timeMin": "2030-03-01T00:00:00Z",
            "timeMax": "2030-03-02T00:00:00Z",
            "timeZone": "UTC",
            "items": [{ "id": SHARED }, { "id": "nobody@example.com" }],
            "calendarExpansionMax": 10,
        })
    );
    assert_eq!(bearer(&sent[0]), token);

    let from = google.api().len();
    assert_eq!(output(&google.run("delete").await), &json!({ "deleted": true }));
    let sent = google.api_since(from);
    assert_eq!(method_and_path(&sent), [("DELETE".to_string(), format!("{SHARED_PATH}/events/standup01"))]);
    assert_eq!(query(&sent[0]).get("sendUpdates").map(String::as_str), Some("all"));
    assert_eq!((sent[0].body.as_str(), bearer(&sent[0])), ("", token.as_str()));
    assert_eq!(google.fake.events(SHARED)[0]["status"], json!("cancelled"));

    // Deleting it again (a retry after a timeout): Google's 410 `deleted` counts as done.
    let from = google.api().len();
    assert_eq!(output(&google.run("delete").await), &json!({ "deleted": true }));
    assert_eq!(
        method_and_path(&google.api_since(from)),
        [
            ("DELETE".to_string(), format!("{SHARED_PATH}/events/standup01")),
            ("GET".to_string(), format!("{SHARED_PATH}/events/standup01")),
        ]
    );
    let deletes: Vec<EventWrite> = google.fake.writes().into_iter().filter(|w| w.op == "delete").collect();
    assert_eq!(deletes.len(), 1, "deleted and cancellations sent once: {deletes:?}");
    assert_eq!(deletes[0].send_updates.as_deref(), Some("all"));

    // An unknown event: Google's 404, not retried, its message quoted.
    for workflow in ["get-unknown", "update-unknown", "delete-unknown"] {
        let from = google.api().len();
        let answer = google.run(workflow).await;
        let (message, retryable) = error(&answer);
        assert!(!retryable, "{workflow}: {answer:#}");
        assert!(message.contains("`Not Found`") && message.contains("nosuchevent"), "{workflow}: {message}");
        assert_eq!(answer["error"]["details"]["status"], json!(404), "{workflow}: {answer:#}");
        assert_eq!(google.api_since(from).len(), 1, "{workflow}");
    }
    assert_eq!(google.fake.writes().len(), 3, "insert, patch, delete: nothing else changed");

    // Another user's runs carry their own token.
    connect(stack, "bob").await;
    let from = google.api().len();
    let answer = google.run_as("bob", "get").await;
    assert_eq!(output(&answer)["status"], json!("cancelled"), "get returns a deleted event");
    let bob = bearer(&google.api_since(from)[0]).to_string();
    assert!(bob.starts_with("ya29.") && bob != token, "bob's own token");
}

on_both_backends! {
    the_hosted_connect_asks_for_offline_access_and_the_connection_outlives_three_token_lifetimes: Duration::from_secs(30);
    a_token_google_expired_early_is_refreshed_once_for_concurrent_runs_that_then_succeed: Duration::from_secs(30);
    a_revoked_grant_fails_the_step_and_the_portal_asks_the_user_to_connect_again: Duration::from_secs(30);
    rate_limits_and_quota_are_retried_and_other_refusals_fail_at_once: Duration::from_secs(30);
    create_event_names_its_event_so_a_create_sent_again_returns_the_one_event: Duration::from_secs(30);
    list_events_and_list_calendars_read_every_page_unless_max_pages_stops_them: Duration::from_secs(30);
    get_update_delete_and_free_busy_send_what_google_documents: Duration::from_secs(30);
}
