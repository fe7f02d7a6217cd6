//! Webhooks as a receiver sees them. Each test starts a small HTTP receiver of its own on
//! 127.0.0.1 (an axum server that records every request and answers as the test scripts it),
//! points webhook endpoints at it through the admin API, produces domain events through the
//! API, and runs the dispatcher's passes itself (`dispatcher::deliver_now`: no background
//! dispatcher runs in these tests). The receiver checks every request the way a real one
//! would (Standard Webhooks: HMAC-SHA256 of `id.timestamp.body` with the endpoint's secret,
//! and a timestamp within 5 minutes of its own clock).
//!
//! What the file shows: signed deliveries carry the feed's events, each once; failed attempts
//! back off on the documented schedule, move with the application's clock and give up after
//! 10 attempts; a hung receiver times out without holding another endpoint back; non-public
//! addresses are refused when saved and again at delivery; endpoint administration (types,
//! disabling, rotating the secret, deleting, the limit of 20, the audit log without secrets);
//! an endpoint that keeps failing for days is disabled; replays of one delivery or of every
//! event since one; and a huge answer does not hold an attempt.

use crate::helpers::*;
use async_graphql::ID;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use referral_server::dispatcher::{Pass, deliver_now};
use referral_server::graphql::ids::{Kind, from_id};
use referral_server::service::outbox::{DELIVERIES_PER_STATEMENT, Sequenced, sequence};
use referral_server::service::webhooks::{MAX_ENDPOINTS, dispatch};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far a receiver lets `webhook-timestamp` be from its own clock (Standard Webhooks'
/// usual tolerance).
const TOLERANCE_SECONDS: i64 = 5 * 60;

/// The most attempts a delivery gets (README: after attempt 10 it is FAILED).
const MAX_ATTEMPTS: i64 = 10;

// ---------------------------------------------------------------------------------------------
// The receiver

/// How the receiver answers.
#[derive(Clone, Debug)]
enum Behaviour {
    /// Every request gets this status (and an empty body).
    Status(u16),
    /// The n-th request (from 0) gets the n-th status; every request after the list, 200.
    Script(Vec<u16>),
    /// Never answers in time: sleeps far longer than any webhook timeout of these tests.
    Hang,
    /// 200 with a 10 MiB body: the first MiB at once, the rest slowly (the whole of it would
    /// take longer than the server's timeout to read).
    HugeBody,
}

/// One request as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: String,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }
}

#[derive(Clone)]
struct Receiver {
    /// `http://127.0.0.1:PORT/hook`
    url: String,
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Receiver {
    /// A receiver on 127.0.0.1 and a port of its own, answering POST /hook.
    async fn start(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().expect("the receiver's address").port();
        let receiver = Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            requests: Arc::new(Mutex::new(Vec::new())),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("the test receiver stopped: {e}");
            }
        });
        receiver
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The `webhook-id` of every request, in arrival order.
    fn ids(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.id).collect()
    }

    /// Checks every request as a receiver would, with this endpoint secret; the requests.
    fn verify(&self, secret: &str) -> Vec<Received> {
        let requests = self.requests();
        for (n, request) in requests.iter().enumerate() {
            if let Err(why) = check_signature(secret, request) {
                panic!("request {n} does not verify: {why}\n{request:#?}");
            }
        }
        requests
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let received = Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body,
        at: Instant::now(),
    };
    let (index, behaviour) = {
        let mut requests = receiver.requests.lock().unwrap();
        requests.push(received);
        let behaviour = receiver.behaviour.lock().unwrap().clone();
        (requests.len() - 1, behaviour)
    };
    match behaviour {
        Behaviour::Status(code) => status(code),
        Behaviour::Script(codes) => status(codes.get(index).copied().unwrap_or(200)),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            status(200)
        }
        Behaviour::HugeBody => huge_body(),
    }
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code).expect("a status code").into_response()
}

/// 10 MiB in chunks of 64 KiB: the first MiB at once, then a chunk every 50 ms (over 7 s for
/// the whole body).
fn huge_body() -> Response {
    const CHUNK: usize = 64 * 1024;
    const MIB: usize = 1024 * 1024;
    let chunks = futures::stream::unfold(0usize, |sent| async move {
        if sent >= 10 * MIB {
            return None;
        }
        if sent >= MIB {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some((
            Ok::<Bytes, std::io::Error>(Bytes::from(vec![b'x'; CHUNK])),
            sent + CHUNK,
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::from_stream(chunks))
        .expect("a response")
}

/// What a receiver does with a request: the timestamp within its tolerance of the system
/// time, and one of the `v1,` signatures the HMAC-SHA256 of `id.timestamp.body` under the
/// base64-decoded secret (without `whsec_`). Why not, if it fails.
fn check_signature(secret: &str, request: &Received) -> Result<(), String> {
    let key = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| format!("the secret {secret:?} does not start with whsec_"))?;
    let key = STANDARD
        .decode(key)
        .map_err(|e| format!("the secret is not base64: {e}"))?;
    if request.id.is_empty() {
        return Err("no webhook-id".to_owned());
    }
    let sent: i64 = request
        .timestamp
        .parse()
        .map_err(|e| format!("webhook-timestamp {:?} is not a number: {e}", request.timestamp))?;
    let skew = (chrono::Utc::now().timestamp() - sent).abs();
    if skew > TOLERANCE_SECONDS {
        return Err(format!("webhook-timestamp {sent} is {skew} s from now"));
    }
    let message = format!("{}.{}.{}", request.id, request.timestamp, request.body);
    for candidate in request.signature.split(' ') {
        let Some(value) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(signature) = STANDARD.decode(value) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(message.as_bytes());
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no v1 signature matches: {:?}", request.signature))
}

/// A correct signature for a message, computed here (to show the verifier's other checks).
fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("a key");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------------------------------------
// The API

async fn create_endpoint_raw(app: &TestApp, input: Value) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "CreateWebhookEndpoint",
        json!({ "input": input }),
    )
    .await
}

/// CreateWebhookEndpoint that must succeed; the endpoint.
async fn create_endpoint(app: &TestApp, input: Value) -> Value {
    let body = create_endpoint_raw(app, input.clone()).await;
    data_of(&body, &format!("CreateWebhookEndpoint {input}"))["createWebhookEndpoint"].clone()
}

async fn update_endpoint_raw(app: &TestApp, id: &str, input: Value) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "UpdateWebhookEndpoint",
        json!({ "id": id, "input": input }),
    )
    .await
}

/// UpdateWebhookEndpoint that must succeed; the endpoint.
async fn update_endpoint(app: &TestApp, id: &str, input: Value) -> Value {
    let body = update_endpoint_raw(app, id, input.clone()).await;
    data_of(&body, &format!("UpdateWebhookEndpoint {id} {input}"))["updateWebhookEndpoint"].clone()
}

/// WebhookEndpoints: every endpoint, oldest first.
async fn endpoints(app: &TestApp) -> Vec<Value> {
    let data = app
        .run_ok(Some(&app.admin()), "admin", "WebhookEndpoints", json!({}))
        .await;
    data["webhookEndpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("webhookEndpoints is not a list: {data:#}"))
        .clone()
}

/// One endpoint as WebhookEndpoints lists it.
async fn find_endpoint(app: &TestApp, id: &str) -> Value {
    let all = endpoints(app).await;
    all.iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no endpoint {id} in {all:#?}"))
        .clone()
}

/// A page of an endpoint's deliveries, newest first: (totalCount, nodes, hasNextPage).
async fn deliveries_page(app: &TestApp, endpoint_id: &str, first: i64) -> (i64, Vec<Value>, bool) {
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "WebhookDeliveries",
            json!({ "endpointId": endpoint_id, "first": first }),
        )
        .await;
    let page = &data["webhookDeliveries"];
    let total = page["totalCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("no totalCount: {data:#}"));
    let rows = page["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes: {data:#}"))
        .clone();
    (total, rows, page["pageInfo"]["hasNextPage"] == true)
}

/// An endpoint's deliveries, newest first: (totalCount, nodes).
async fn deliveries(app: &TestApp, endpoint_id: &str) -> (i64, Vec<Value>) {
    let (total, rows, more) = deliveries_page(app, endpoint_id, 100).await;
    assert!(!more, "{rows:#?}");
    (total, rows)
}

/// An endpoint's deliveries, however many: (totalCount, the newest).
async fn count_and_newest_delivery(app: &TestApp, endpoint_id: &str) -> (i64, Value) {
    let (total, rows, _) = deliveries_page(app, endpoint_id, 1).await;
    (total, rows.first().cloned().unwrap_or(Value::Null))
}

/// The endpoint's one delivery.
async fn only_delivery(app: &TestApp, endpoint_id: &str) -> Value {
    let (total, rows) = deliveries(app, endpoint_id).await;
    assert_eq!(total, 1, "one delivery for {endpoint_id}: {rows:#?}");
    rows[0].clone()
}

/// The endpoint's delivery of one event.
async fn delivery_of(app: &TestApp, endpoint_id: &str, event_id: &str) -> Value {
    let (_, rows) = deliveries(app, endpoint_id).await;
    rows.iter()
        .find(|d| d["event"]["id"] == event_id)
        .unwrap_or_else(|| panic!("no delivery of {event_id} for {endpoint_id}: {rows:#?}"))
        .clone()
}

/// ReplayWebhookEvents that must succeed; `replayWebhookEvents`.
async fn replay_events(app: &TestApp, endpoint_id: &str, since_event_id: &str) -> Value {
    let vars = json!({ "endpointId": endpoint_id, "sinceEventId": since_event_id });
    app.run_ok(Some(&app.admin()), "admin", "ReplayWebhookEvents", vars)
        .await["replayWebhookEvents"]
        .clone()
}

/// ProgramReport's `failedWebhookDeliveries`. Not one of the admin console's documents: its
/// `ProgramReport` is the contract's, and a second document selecting other fields of the same
/// unidentified object would make a normalizing cache replace one with the other.
async fn failed_deliveries(app: &TestApp) -> i64 {
    let body = app
        .gql(
            Some(&app.admin()),
            "query { programReport { failedWebhookDeliveries } }",
            json!({}),
        )
        .await;
    let data = data_of(&body, "programReport { failedWebhookDeliveries }");
    data["programReport"]["failedWebhookDeliveries"]
        .as_i64()
        .unwrap_or_else(|| panic!("no failedWebhookDeliveries: {data:#}"))
}

/// The whole event feed as the billing system reads it (Events, service token): its nodes.
async fn feed(app: &TestApp) -> Vec<Value> {
    let data = app
        .run_ok(Some(&app.service()), "integration", "Events", json!({ "first": 1000 }))
        .await;
    assert_eq!(data["events"]["pageInfo"]["hasNextPage"], false, "{data:#}");
    nodes(&data["events"])
}

/// One dispatcher pass, waiting for its attempts.
async fn deliver(app: &TestApp) -> Pass {
    deliver_now(&app.state).await.expect("a delivery pass runs")
}

/// Passes until nothing is due; the attempts they made.
async fn drain(app: &TestApp) -> u64 {
    let mut attempts = 0;
    for _ in 0..20 {
        let pass = deliver(app).await;
        if pass.attempts == 0 {
            return attempts;
        }
        attempts += pass.attempts;
    }
    panic!("deliveries were still due after 20 passes");
}

/// Moves the application's clock a second past `at` (a DateTime output).
fn move_past(app: &TestApp, at: &Value) {
    let due = instant(at);
    let wait = (due - app.state.clock.now()).max(chrono::Duration::zero()) + chrono::Duration::seconds(1);
    app.state.clock.advance(wait).expect("the clock moves forward");
}

/// The number of a `prefix_<n>` id.
fn number(id: &str) -> i64 {
    id.rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an id with a number: {id}"))
}

/// Registers a referrer (no event); its code.
async fn referrer(app: &TestApp, external_id: &str) -> String {
    app.register_code(external_id, Some("Rita Referrer"), None).await
}

/// A friend registers with the code: one `referral.attributed` event.
async fn attributed(app: &TestApp, code: &str, friend: &str) {
    let registered = app.register(friend, Some("Fred Friend"), Some(code)).await;
    assert!(
        registered["referral"]["rejectionReason"].is_null() && registered["referral"]["id"].is_string(),
        "the code attributes the friend: {registered:#}"
    );
}

/// Exactly one event in a fresh app: a referrer and a friend that registers with its code.
async fn one_event(app: &TestApp) {
    let code = referrer(app, "ref-1").await;
    attributed(app, &code, "friend-1").await;
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_receiver_gets_each_event_once_signed_and_as_the_feed_tells_it() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behaviour::Status(200)).await;
    let created = create_endpoint(&app, json!({ "url": receiver.url, "description": "all events" })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    let secret = s(&created, "/secret").to_owned();
    assert!(endpoint_id.starts_with("whe_"), "{created:#}");
    assert_eq!(created["eventTypes"], json!([]), "{created:#}");
    assert_eq!(created["enabled"], true, "{created:#}");
    let key = secret.strip_prefix("whsec_").expect("the secret starts with whsec_");
    assert_eq!(STANDARD.decode(key).expect("base64").len(), 32, "{created:#}");

    // A friend registers with A's code, buys (A earns points, the referral qualifies), A claims
    // and the billing system completes the claim.
    let provider_id = app.setup_catalog().await;
    let code = referrer(&app, "acct-a").await;
    attributed(&app, &code, "acct-b").await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let claimed = app.claim("acct-a", &provider_id, Some("claim-1")).await;
    let claim_id = s(&claimed, "/claim/id").to_owned();
    app.run_ok(
        Some(&app.service()),
        "integration",
        "CompleteClaim",
        json!({ "input": { "claimId": claim_id, "status": "COMPLETED" } }),
    )
    .await;

    let attempts = drain(&app).await;
    let events = feed(&app).await;
    let names: BTreeSet<String> = events.iter().map(|e| s(e, "/name").to_owned()).collect();
    for expected in [
        "referral.attributed",
        "referral.qualified",
        "reward.granted",
        "claim.requested",
        "claim.completed",
    ] {
        assert!(names.contains(expected), "the feed has {expected}: {events:#?}");
    }
    assert_eq!(attempts, events.len() as u64, "one attempt per event: {events:#?}");

    // Every request verifies, and each event came exactly once.
    let requests = receiver.verify(&secret);
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for request in &requests {
        *times.entry(request.id.clone()).or_default() += 1;
    }
    let feed_ids: BTreeSet<String> = events.iter().map(|e| s(e, "/id").to_owned()).collect();
    assert_eq!(
        times.keys().cloned().collect::<BTreeSet<_>>(),
        feed_ids,
        "the receiver got every event of the feed and nothing else"
    );
    assert!(times.values().all(|n| *n == 1), "each webhook-id once: {times:?}");

    // Each body is the feed's event under the header's id.
    let by_id: BTreeMap<&str, &Value> = events.iter().map(|e| (s(e, "/id"), e)).collect();
    let mut received_types = BTreeSet::new();
    for request in &requests {
        assert_eq!(request.content_type, "application/json", "{request:#?}");
        let body = request.json();
        assert_eq!(
            body["id"],
            request.id.as_str(),
            "the body's id is the webhook-id: {body:#}"
        );
        let event = by_id[request.id.as_str()];
        assert_eq!(body["type"], event["name"], "{body:#}\n{event:#}");
        assert_eq!(body["data"], event["data"], "{body:#}\n{event:#}");
        assert!(body["data"].is_object(), "{body:#}");
        assert_eq!(body["version"], 1, "{body:#}");
        assert_eq!(event["version"], 1, "{event:#}");
        // The body's time is written to the microsecond; the feed's may carry more digits.
        let apart = (instant(&body["timestamp"]) - instant(&event["occurredAt"])).abs();
        assert!(
            apart < chrono::Duration::milliseconds(1),
            "the event's time: {body:#}\n{event:#}"
        );
        received_types.insert(s(&body, "/type").to_owned());
    }
    assert_eq!(received_types, names);

    // What the claim events say.
    let claim_event = events
        .iter()
        .find(|e| e["name"] == "claim.requested")
        .expect("claim.requested");
    assert_eq!(claim_event["type"], "CLAIM_REQUESTED", "{claim_event:#}");
    assert_eq!(claim_event["data"]["claimId"], claim_id.as_str(), "{claim_event:#}");
    assert_eq!(claim_event["data"]["externalId"], "acct-a", "{claim_event:#}");
    assert_eq!(
        claim_event["data"]["providerId"],
        provider_id.as_str(),
        "{claim_event:#}"
    );
    let completed = events
        .iter()
        .find(|e| e["name"] == "claim.completed")
        .expect("claim.completed");
    assert_eq!(completed["data"]["status"], "COMPLETED", "{completed:#}");

    // The admin's view: every delivery delivered at the first attempt.
    let (total, rows) = deliveries(&app, &endpoint_id).await;
    assert_eq!(total, events.len() as i64, "{rows:#?}");
    let delivered: BTreeSet<String> = rows.iter().map(|d| s(d, "/event/id").to_owned()).collect();
    assert_eq!(delivered, feed_ids);
    for d in &rows {
        assert_eq!(d["endpointId"], endpoint_id.as_str(), "{d:#}");
        assert_eq!(d["status"], "DELIVERED", "{d:#}");
        assert_eq!(d["attempts"], 1, "{d:#}");
        assert_eq!(d["lastResponseCode"], 200, "{d:#}");
        assert!(d["lastLatencyMs"].is_i64(), "{d:#}");
        assert!(d["lastError"].is_null(), "{d:#}");
        assert!(d["nextAttemptAt"].is_null(), "{d:#}");
        assert!(d["deliveredAt"].is_string(), "{d:#}");
        assert_eq!(d["event"]["name"], by_id[s(d, "/event/id")]["name"], "{d:#}");
    }
    assert_eq!(receiver.count(), events.len(), "nothing more came");

    // The verifier is real: one byte changed in a body, the timestamp, the id, the secret, or
    // a correctly signed message from 10 minutes ago, and it refuses.
    let original = requests[0].clone();
    let mut tampered = original.clone();
    let mut bytes = original.body.clone().into_bytes();
    let at = bytes.iter().position(u8::is_ascii_digit).expect("a digit in the body");
    bytes[at] = if bytes[at] == b'9' { b'8' } else { bytes[at] + 1 };
    tampered.body = String::from_utf8(bytes).expect("still UTF-8");
    assert_ne!(tampered.body, original.body);
    assert!(
        check_signature(&secret, &tampered).is_err(),
        "a changed body must not verify"
    );
    let mut tampered = original.clone();
    let sent: i64 = original.timestamp.parse().expect("a timestamp");
    tampered.timestamp = (sent - 1).to_string();
    assert!(
        check_signature(&secret, &tampered).is_err(),
        "a changed timestamp must not verify"
    );
    let mut tampered = original.clone();
    tampered.id = format!("{}0", original.id);
    assert!(
        check_signature(&secret, &tampered).is_err(),
        "a changed id must not verify"
    );
    let other_secret = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    assert!(
        check_signature(&other_secret, &original).is_err(),
        "another secret must not verify"
    );
    let mut stale = original.clone();
    stale.timestamp = (chrono::Utc::now().timestamp() - 600).to_string();
    stale.signature = sign(&secret, &stale.id, &stale.timestamp, &stale.body);
    assert!(
        check_signature(&secret, &stale).is_err(),
        "a message 10 minutes old is refused"
    );
    let mut fresh = original;
    fresh.timestamp = chrono::Utc::now().timestamp().to_string();
    fresh.signature = sign(&secret, &fresh.id, &fresh.timestamp, &fresh.body);
    assert!(
        check_signature(&secret, &fresh).is_ok(),
        "the verifier's own signature verifies"
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_on_the_backoff_schedule_until_it_answers() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behaviour::Script(vec![500, 500, 500])).await;
    let created = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    let secret = s(&created, "/secret").to_owned();
    one_event(&app).await;

    // The documented waits after attempts 1, 2, 3: 10 s, 40 s, 160 s, each ±15 %.
    let bands_ms = [(8_500, 11_500), (34_000, 46_000), (136_000, 184_000)];
    let mut waits = Vec::new();
    for (n, (low, high)) in bands_ms.into_iter().enumerate() {
        let attempt = n as i64 + 1;
        let pass = deliver(&app).await;
        assert_eq!(pass.attempts, 1, "attempt {attempt}");
        assert_eq!(receiver.count(), n + 1, "attempt {attempt} reached the receiver");
        let d = only_delivery(&app, &endpoint_id).await;
        assert_eq!(d["status"], "PENDING", "{d:#}");
        assert_eq!(d["attempts"], attempt, "{d:#}");
        assert_eq!(d["lastResponseCode"], 500, "{d:#}");
        assert!(s(&d, "/lastError").contains("500"), "{d:#}");
        assert!(d["deliveredAt"].is_null(), "{d:#}");
        let wait = (instant(&d["nextAttemptAt"]) - instant(&d["lastAttemptAt"])).num_milliseconds();
        // A millisecond either side for the database's rounding of times.
        assert!(
            (low - 1..=high + 1).contains(&wait),
            "after attempt {attempt} the wait is {wait} ms, not within {low}..={high}: {d:#}"
        );
        waits.push(wait);

        // Not due yet: a pass sends nothing.
        let pass = deliver(&app).await;
        assert_eq!(pass.attempts, 0, "nothing is due before nextAttemptAt: {d:#}");
        assert_eq!(receiver.count(), n + 1, "nothing sent before nextAttemptAt");
        move_past(&app, &d["nextAttemptAt"]);
    }
    assert!(waits.windows(2).all(|w| w[0] < w[1]), "the waits grow: {waits:?}");

    // The fourth attempt gets 200.
    let pass = deliver(&app).await;
    assert_eq!(pass.attempts, 1);
    let d = only_delivery(&app, &endpoint_id).await;
    assert_eq!(d["status"], "DELIVERED", "{d:#}");
    assert_eq!(d["attempts"], 4, "{d:#}");
    assert_eq!(d["lastResponseCode"], 200, "{d:#}");
    assert!(d["lastError"].is_null(), "{d:#}");
    assert!(d["nextAttemptAt"].is_null(), "{d:#}");
    assert!(d["deliveredAt"].is_string(), "{d:#}");
    assert_eq!(drain(&app).await, 0, "nothing more is due");

    // Four requests of the same message, each signed.
    let requests = receiver.verify(&secret);
    assert_eq!(requests.len(), 4);
    let event_id = s(&d, "/event/id");
    assert!(requests.iter().all(|r| r.id == event_id), "{requests:#?}");
    assert!(
        requests.iter().all(|r| r.body == requests[0].body),
        "the same body each time"
    );
    let found = find_endpoint(&app, &endpoint_id).await;
    assert!(
        found["failingSince"].is_null(),
        "a success ends the failing streak: {found:#}"
    );
    assert_eq!(found["enabled"], true, "{found:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receiver_times_out_without_delaying_another_endpoint() {
    let timeout = Duration::from_secs(1);
    let app = spawn_app_with(|c| c.webhook_timeout = timeout).await;
    let hung = Receiver::start(Behaviour::Hang).await;
    let fast = Receiver::start(Behaviour::Status(200)).await;
    let a = create_endpoint(&app, json!({ "url": hung.url, "description": "hangs" })).await;
    let b = create_endpoint(&app, json!({ "url": fast.url, "description": "answers" })).await;
    let (a_id, b_id) = (s(&a, "/id").to_owned(), s(&b, "/id").to_owned());
    one_event(&app).await;

    let started = Instant::now();
    let pass = deliver(&app).await;
    let took = started.elapsed();
    assert_eq!(pass.attempts, 2, "{pass:?}");

    // B's request came at once, not after A's timeout.
    let fast_requests = fast.verify(s(&b, "/secret"));
    assert_eq!(fast_requests.len(), 1);
    let arrived = fast_requests[0].at.saturating_duration_since(started);
    assert!(
        arrived < Duration::from_millis(700),
        "B's request came {arrived:?} after the pass began; A's hung receiver held it back"
    );
    let b_delivery = only_delivery(&app, &b_id).await;
    assert_eq!(b_delivery["status"], "DELIVERED", "{b_delivery:#}");
    assert_eq!(b_delivery["lastResponseCode"], 200, "{b_delivery:#}");

    // A got its request and never answered: a timed-out attempt.
    assert_eq!(hung.verify(s(&a, "/secret")).len(), 1);
    let a_delivery = only_delivery(&app, &a_id).await;
    assert_eq!(a_delivery["status"], "PENDING", "{a_delivery:#}");
    assert_eq!(a_delivery["attempts"], 1, "{a_delivery:#}");
    assert!(a_delivery["lastResponseCode"].is_null(), "{a_delivery:#}");
    let error = s(&a_delivery, "/lastError").to_ascii_lowercase();
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "the error says it timed out: {a_delivery:#}"
    );
    let latency = a_delivery["lastLatencyMs"].as_i64().expect("lastLatencyMs");
    assert!(
        (900..3_000).contains(&latency),
        "the attempt lasted about the timeout: {a_delivery:#}"
    );
    assert!(a_delivery["nextAttemptAt"].is_string(), "{a_delivery:#}");

    // The pass waited for A's attempt as long as the timeout, and not much more.
    assert!(
        took >= timeout,
        "the pass returned after {took:?}, before A's attempt could time out"
    );
    assert!(
        took < timeout + Duration::from_secs(2),
        "the pass took {took:?} with a timeout of {timeout:?}"
    );
    let found = find_endpoint(&app, &a_id).await;
    assert!(found["failingSince"].is_string(), "{found:#}");
    assert!(
        find_endpoint(&app, &b_id).await["failingSince"].is_null(),
        "B is not failing"
    );
}

#[tokio::test]
async fn non_public_targets_are_refused_when_saved_and_again_when_delivering() {
    let strict = spawn_app_with(|c| c.webhook_allow_private_targets = false).await;
    let receiver = Receiver::start(Behaviour::Status(200)).await;
    let port = receiver.port;
    let private = [
        format!("http://127.0.0.1:{port}/hook"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/".to_owned(),
        format!("http://[::1]:{port}/"),
        format!("http://localhost:{port}/"),
    ];
    for url in &private {
        let body = create_endpoint_raw(&strict, json!({ "url": url })).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    assert_eq!(endpoints(&strict).await, Vec::<Value>::new(), "nothing stored");
    assert_eq!(strict.count("webhook_endpoints").await, 0);

    // Where private targets are allowed (the tests' default), the same URLs are accepted.
    let open = spawn_app().await;
    for url in &private {
        let created = create_endpoint(&open, json!({ "url": url })).await;
        assert!(created["id"].is_string(), "{url}: {created:#}");
    }
    assert_eq!(endpoints(&open).await.len(), private.len());

    // An endpoint saved with a public address whose URL then points at 127.0.0.1 (changed in
    // the database): the delivery is refused without connecting.
    let created = create_endpoint(&strict, json!({ "url": "https://93.184.216.34/hook" })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    let changed = strict
        .state
        .db
        .execute_unprepared(&format!(
            "UPDATE webhook_endpoints SET url = '{}' WHERE id = {}",
            receiver.url,
            number(&endpoint_id)
        ))
        .await
        .expect("the url is changed");
    assert_eq!(changed.rows_affected(), 1);
    assert_eq!(find_endpoint(&strict, &endpoint_id).await["url"], receiver.url.as_str());
    one_event(&strict).await;
    let pass = deliver(&strict).await;
    assert_eq!(pass.attempts, 1, "{pass:?}");
    assert_eq!(receiver.count(), 0, "nothing reached the private address");
    let d = only_delivery(&strict, &endpoint_id).await;
    assert_eq!(d["status"], "PENDING", "{d:#}");
    assert_eq!(d["attempts"], 1, "{d:#}");
    assert!(d["lastResponseCode"].is_null(), "{d:#}");
    assert!(s(&d, "/lastError").contains("non-public"), "the error says why: {d:#}");
    assert_eq!(receiver.count(), 0, "nothing reached the private address");
}

#[tokio::test]
async fn a_stored_name_that_resolves_only_to_loopback_is_refused_at_delivery_and_says_why() {
    let strict = spawn_app_with(|c| c.webhook_allow_private_targets = false).await;
    let receiver = Receiver::start(Behaviour::Status(200)).await;
    let created = create_endpoint(&strict, json!({ "url": "https://93.184.216.34/hook" })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    let url = format!("http://localhost:{}/hook", receiver.port);
    let changed = strict
        .state
        .db
        .execute_unprepared(&format!(
            "UPDATE webhook_endpoints SET url = '{url}' WHERE id = {}",
            number(&endpoint_id)
        ))
        .await
        .expect("the url is changed");
    assert_eq!(changed.rows_affected(), 1);
    one_event(&strict).await;
    let pass = deliver(&strict).await;
    assert_eq!(pass.attempts, 1, "{pass:?}");
    assert_eq!(receiver.count(), 0, "nothing reached the loopback address");
    let d = only_delivery(&strict, &endpoint_id).await;
    assert_eq!(d["status"], "PENDING", "{d:#}");
    assert_eq!(d["attempts"], 1, "{d:#}");
    assert!(d["lastResponseCode"].is_null(), "{d:#}");
    let error = s(&d, "/lastError");
    assert!(
        error.contains("no public address") || error.contains("non-public"),
        "the error says the name has no public address: {d:#}"
    );
}

#[tokio::test]
async fn admins_choose_what_each_endpoint_receives_and_every_change_is_audited_without_the_secret() {
    let app = spawn_app().await;

    // The input is checked.
    let body = create_endpoint_raw(&app, json!({ "description": "no url" })).await;
    assert_failed(&body, "BAD_USER_INPUT");
    for url in ["ftp://x", "not a url", "https://u:p@example.com/"] {
        let body = create_endpoint_raw(&app, json!({ "url": url })).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    assert!(endpoints(&app).await.is_empty());

    // One endpoint for everything ([] = every type), one for claims only.
    let all_receiver = Receiver::start(Behaviour::Status(200)).await;
    let claims_receiver = Receiver::start(Behaviour::Status(200)).await;
    let all = create_endpoint(
        &app,
        json!({ "url": all_receiver.url, "description": "everything", "eventTypes": [] }),
    )
    .await;
    assert_eq!(all["eventTypes"], json!([]), "{all:#}");
    let claims = create_endpoint(
        &app,
        json!({ "url": claims_receiver.url, "description": "claims", "eventTypes": ["CLAIM_REQUESTED"] }),
    )
    .await;
    assert_eq!(claims["eventTypes"], json!(["CLAIM_REQUESTED"]), "{claims:#}");
    assert_eq!(claims["url"], claims_receiver.url.as_str(), "{claims:#}");
    assert_eq!(claims["description"], "claims", "{claims:#}");
    assert_eq!(claims["enabled"], true, "{claims:#}");
    assert!(
        claims["failingSince"].is_null() && claims["disabledReason"].is_null(),
        "{claims:#}"
    );
    assert_ne!(all["secret"], claims["secret"], "each endpoint has its own secret");
    let (all_id, claims_id) = (s(&all, "/id").to_owned(), s(&claims, "/id").to_owned());
    let all_secret = s(&all, "/secret").to_owned();
    let old_claims_secret = s(&claims, "/secret").to_owned();
    assert_eq!(
        endpoints(&app).await,
        vec![all.clone(), claims.clone()],
        "oldest first, as created"
    );

    // Events of several types.
    let provider_id = app.setup_catalog().await;
    let code = referrer(&app, "acct-a").await;
    attributed(&app, &code, "acct-b").await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "20").await;
    app.claim("acct-a", &provider_id, Some("claim-1")).await;
    drain(&app).await;
    let events = feed(&app).await;
    let every: BTreeSet<String> = events.iter().map(|e| s(e, "/id").to_owned()).collect();
    let claim_ids: BTreeSet<String> = events
        .iter()
        .filter(|e| e["type"] == "CLAIM_REQUESTED")
        .map(|e| s(e, "/id").to_owned())
        .collect();
    assert_eq!(claim_ids.len(), 1, "{events:#?}");
    assert!(every.len() > claim_ids.len(), "other types too: {events:#?}");
    let got_all: BTreeSet<String> = all_receiver.verify(&all_secret).into_iter().map(|r| r.id).collect();
    assert_eq!(got_all, every, "the endpoint of every type got every event");
    assert_eq!(all_receiver.count(), every.len());
    let got_claims: Vec<String> = claims_receiver
        .verify(&old_claims_secret)
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        got_claims.into_iter().collect::<BTreeSet<_>>(),
        claim_ids,
        "the claims endpoint got claim.requested only"
    );
    assert_eq!(claims_receiver.count(), 1);
    let (total, rows) = deliveries(&app, &claims_id).await;
    assert_eq!(total, 1, "no deliveries of other types are written: {rows:#?}");
    assert_eq!(rows[0]["event"]["type"], "CLAIM_REQUESTED", "{rows:#?}");

    // The same values again change nothing.
    let same = update_endpoint(
        &app,
        &claims_id,
        json!({
            "url": claims["url"],
            "description": claims["description"],
            "eventTypes": claims["eventTypes"],
            "enabled": claims["enabled"],
        }),
    )
    .await;
    assert_eq!(same, claims, "the same values change nothing, updatedAt included");
    let body = update_endpoint_raw(&app, &claims_id, json!({ "url": "ftp://x" })).await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(
        find_endpoint(&app, &claims_id).await,
        claims,
        "a refused update changes nothing"
    );

    // Disabled: no new deliveries.
    let disabled = update_endpoint(&app, &all_id, json!({ "enabled": false })).await;
    assert_eq!(disabled["enabled"], false, "{disabled:#}");
    assert!(
        disabled["disabledReason"].is_null(),
        "an admin disabled it: {disabled:#}"
    );
    assert_eq!(disabled["url"], all["url"], "{disabled:#}");
    assert!(
        instant(&disabled["updatedAt"]) >= instant(&all["updatedAt"]),
        "{disabled:#}"
    );
    let (before, _) = deliveries(&app, &all_id).await;
    attributed(&app, &code, "acct-c").await;
    assert_eq!(
        drain(&app).await,
        0,
        "nothing for the disabled endpoint, nor for the claims one"
    );
    assert_eq!(feed(&app).await.len(), events.len() + 1, "the event is in the feed");
    assert_eq!(
        deliveries(&app, &all_id).await.0,
        before,
        "no delivery for a disabled endpoint"
    );
    assert_eq!(
        all_receiver.count(),
        every.len(),
        "a disabled endpoint receives nothing"
    );

    // A new secret signs from now on; the old one no longer verifies.
    let rotated = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "RotateWebhookSecret",
            json!({ "id": claims_id }),
        )
        .await["rotateWebhookSecret"]
        .clone();
    let new_claims_secret = s(&rotated, "/secret").to_owned();
    assert!(new_claims_secret.starts_with("whsec_"), "{rotated:#}");
    assert_ne!(new_claims_secret, old_claims_secret);
    assert_eq!(
        find_endpoint(&app, &claims_id).await["secret"],
        new_claims_secret.as_str()
    );
    app.claim("acct-a", &provider_id, Some("claim-2")).await;
    assert_eq!(
        drain(&app).await,
        1,
        "the second claim goes to the claims endpoint only"
    );
    let latest = claims_receiver.requests().last().cloned().expect("a request");
    assert_eq!(claims_receiver.count(), 2);
    assert!(
        check_signature(&new_claims_secret, &latest).is_ok(),
        "the new secret verifies: {latest:#?}"
    );
    assert!(
        check_signature(&old_claims_secret, &latest).is_err(),
        "the old secret no longer does"
    );

    // Deleted: gone, with its deliveries.
    let before_delete = app
        .sql_i64(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM webhook_deliveries WHERE endpoint_id = {}",
            number(&all_id)
        ))
        .await;
    assert!(before_delete > 0);
    let deleted = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "DeleteWebhookEndpoint",
            json!({ "id": all_id }),
        )
        .await;
    assert_eq!(deleted["deleteWebhookEndpoint"], all_id.as_str(), "{deleted:#}");
    let left = endpoints(&app).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["id"], claims_id.as_str(), "{left:#?}");
    assert_eq!(deliveries(&app, &all_id).await.0, 0);
    let after_delete = app
        .sql_i64(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM webhook_deliveries WHERE endpoint_id = {}",
            number(&all_id)
        ))
        .await;
    assert_eq!(after_delete, 0, "its deliveries are deleted");

    // At most 20 endpoints (the rest created disabled, so that nothing is sent to them).
    let mut secrets = vec![all_secret, old_claims_secret, new_claims_secret];
    for n in 2..=20 {
        let created = create_endpoint(
            &app,
            json!({ "url": format!("https://hooks.example.com/{n}"), "enabled": false }),
        )
        .await;
        assert_eq!(created["enabled"], false, "{created:#}");
        secrets.push(s(&created, "/secret").to_owned());
    }
    assert_eq!(endpoints(&app).await.len(), 20);
    let body = create_endpoint_raw(&app, json!({ "url": "https://hooks.example.com/21" })).await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(endpoints(&app).await.len(), 20, "the 21st is not stored");

    // The audit log has each change and never a secret.
    let log = app.audit_log(100, None).await;
    assert_eq!(
        log["pageInfo"]["hasNextPage"], false,
        "the whole log on one page: {log:#}"
    );
    let actions: Vec<String> = nodes(&log).iter().map(|e| s(e, "/action").to_owned()).collect();
    let count = |action: &str| actions.iter().filter(|a| *a == action).count();
    assert_eq!(count("CREATE_WEBHOOK_ENDPOINT"), 21, "{actions:?}");
    assert_eq!(
        count("UPDATE_WEBHOOK_ENDPOINT"),
        1,
        "the disabling only: the same values and a refused update are not changes: {actions:?}"
    );
    assert_eq!(count("ROTATE_WEBHOOK_SECRET"), 1, "{actions:?}");
    assert_eq!(count("DELETE_WEBHOOK_ENDPOINT"), 1, "{actions:?}");
    let text = log.to_string();
    for secret in &secrets {
        let key = secret.strip_prefix("whsec_").expect("whsec_");
        assert!(!text.contains(key), "the audit log holds a secret: {text}");
    }
    assert!(!text.contains("whsec_"), "the audit log holds a secret: {text}");
}

#[tokio::test]
async fn a_delivery_gives_up_after_ten_attempts_days_of_failures_disable_the_endpoint_and_replays_recover() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behaviour::Status(503)).await;
    let created = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    let secret = s(&created, "/secret").to_owned();
    let code = referrer(&app, "ref-1").await;
    attributed(&app, &code, "friend-1").await;

    let mut first_failure = None;
    for attempt in 1..=MAX_ATTEMPTS {
        let pass = deliver(&app).await;
        assert_eq!(pass.attempts, 1, "attempt {attempt}");
        let d = only_delivery(&app, &endpoint_id).await;
        assert_eq!(d["attempts"], attempt, "{d:#}");
        assert_eq!(d["lastResponseCode"], 503, "{d:#}");
        if first_failure.is_none() {
            let found = find_endpoint(&app, &endpoint_id).await;
            assert_eq!(
                found["failingSince"], d["lastAttemptAt"],
                "set at the first failure: {found:#}"
            );
            first_failure = Some(instant(&found["failingSince"]));
        }
        if attempt < MAX_ATTEMPTS {
            assert_eq!(d["status"], "PENDING", "{d:#}");
            assert_eq!(deliver(&app).await.attempts, 0, "not due before nextAttemptAt: {d:#}");
            move_past(&app, &d["nextAttemptAt"]);
        } else {
            assert_eq!(d["status"], "FAILED", "after attempt {MAX_ATTEMPTS}: {d:#}");
            assert!(d["nextAttemptAt"].is_null(), "{d:#}");
        }
    }
    let first_failure = first_failure.expect("a first failure");
    let failed = only_delivery(&app, &endpoint_id).await;
    let delivery_id = s(&failed, "/id").to_owned();
    let event_1 = s(&failed, "/event/id").to_owned();
    assert_eq!(failed_deliveries(&app).await, 1);
    app.state
        .clock
        .advance(chrono::Duration::days(1))
        .expect("the clock moves");
    assert_eq!(deliver(&app).await.attempts, 0, "a FAILED delivery is not tried again");
    assert_eq!(receiver.count(), MAX_ATTEMPTS as usize);

    // The 10 attempts span well under 5 days (the schedule's sum is 34 to 46 hours), so the
    // endpoint is still enabled, failing since its first failure.
    let span = instant(&failed["lastAttemptAt"]) - first_failure;
    assert!(
        span >= chrono::Duration::hours(24) && span <= chrono::Duration::hours(48),
        "the attempts spanned {span}"
    );
    let found = find_endpoint(&app, &endpoint_id).await;
    assert_eq!(found["enabled"], true, "{found:#}");
    assert!(found["disabledReason"].is_null(), "{found:#}");
    assert_eq!(instant(&found["failingSince"]), first_failure, "{found:#}");

    // Five days after the first failure, another failed attempt disables it.
    app.state
        .clock
        .advance(chrono::Duration::days(5))
        .expect("the clock moves");
    attributed(&app, &code, "friend-2").await;
    assert_eq!(deliver(&app).await.attempts, 1);
    let disabled = find_endpoint(&app, &endpoint_id).await;
    assert_eq!(disabled["enabled"], false, "{disabled:#}");
    assert!(
        disabled["disabledReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{disabled:#}"
    );
    assert_eq!(instant(&disabled["failingSince"]), first_failure, "{disabled:#}");
    let events = feed(&app).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let event_2 = s(&events[1], "/id").to_owned();
    let second = delivery_of(&app, &endpoint_id, &event_2).await;
    assert_eq!(second["status"], "PENDING", "{second:#}");
    assert_eq!(second["attempts"], 1, "{second:#}");
    app.state
        .clock
        .advance(chrono::Duration::hours(1))
        .expect("the clock moves");
    assert_eq!(deliver(&app).await.attempts, 0, "a disabled endpoint gets no attempts");
    assert_eq!(receiver.count(), MAX_ATTEMPTS as usize + 1);

    // The receiver recovers; the admin replays the failed delivery and enables the endpoint.
    receiver.set(Behaviour::Status(200));
    let replayed = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "ReplayWebhookDelivery",
            json!({ "id": delivery_id }),
        )
        .await["replayWebhookDelivery"]
        .clone();
    assert_eq!(replayed["id"], delivery_id.as_str(), "{replayed:#}");
    assert_eq!(replayed["status"], "PENDING", "{replayed:#}");
    assert_eq!(replayed["attempts"], 0, "{replayed:#}");
    assert!(
        instant(&replayed["nextAttemptAt"]) <= app.state.clock.now(),
        "due now: {replayed:#}"
    );
    assert_eq!(failed_deliveries(&app).await, 0, "no delivery is FAILED any more");
    assert_eq!(deliver(&app).await.attempts, 0, "still disabled");
    let enabled = update_endpoint(&app, &endpoint_id, json!({ "enabled": true })).await;
    assert_eq!(enabled["enabled"], true, "{enabled:#}");
    assert!(enabled["disabledReason"].is_null(), "{enabled:#}");
    assert!(enabled["failingSince"].is_null(), "{enabled:#}");
    assert_eq!(drain(&app).await, 2);

    let first = delivery_of(&app, &endpoint_id, &event_1).await;
    assert_eq!(first["status"], "DELIVERED", "{first:#}");
    assert_eq!(first["attempts"], 1, "{first:#}");
    assert_eq!(first["lastResponseCode"], 200, "{first:#}");
    let second = delivery_of(&app, &endpoint_id, &event_2).await;
    assert_eq!(second["status"], "DELIVERED", "{second:#}");
    assert_eq!(second["attempts"], 2, "{second:#}");
    assert_eq!(failed_deliveries(&app).await, 0);
    let found = find_endpoint(&app, &endpoint_id).await;
    assert_eq!(found["enabled"], true, "{found:#}");
    assert!(found["failingSince"].is_null(), "{found:#}");

    // Every request was signed (the late ones too), under the events' ids.
    let ids = receiver.ids();
    receiver.verify(&secret);
    assert_eq!(
        ids.iter().filter(|id| **id == event_1).count(),
        MAX_ATTEMPTS as usize + 1,
        "{ids:?}"
    );
    assert_eq!(ids.iter().filter(|id| **id == event_2).count(), 2, "{ids:?}");
    assert_eq!(ids.len(), MAX_ATTEMPTS as usize + 3, "{ids:?}");

    let log = app.audit_log(100, None).await;
    let actions: Vec<String> = nodes(&log).iter().map(|e| s(e, "/action").to_owned()).collect();
    assert!(actions.contains(&"REPLAY_WEBHOOK_DELIVERY".to_owned()), "{actions:?}");
}

#[tokio::test]
async fn an_endpoint_created_later_gets_earlier_events_only_when_replayed_under_the_same_ids() {
    let app = spawn_app().await;
    let code = referrer(&app, "ref-1").await;
    for friend in ["friend-1", "friend-2", "friend-3"] {
        attributed(&app, &code, friend).await;
    }
    // Reading the feed orders the events (as the dispatcher would) before the endpoint exists.
    let events = feed(&app).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let ids: Vec<String> = events.iter().map(|e| s(e, "/id").to_owned()).collect();

    let receiver = Receiver::start(Behaviour::Status(200)).await;
    let created = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    let secret = s(&created, "/secret").to_owned();
    assert_eq!(deliver(&app).await.attempts, 0, "earlier events are not sent");
    assert_eq!(receiver.count(), 0);
    assert_eq!(deliveries(&app, &endpoint_id).await.0, 0);

    // From the second event on: the second and the third.
    let replayed = replay_events(&app, &endpoint_id, &ids[1]).await;
    assert_eq!(
        replayed,
        json!({ "events": 2, "lastEventId": ids[2], "complete": true }),
        "{replayed:#}"
    );
    assert_eq!(drain(&app).await, 2);
    let expected: BTreeSet<String> = ids[1..].iter().cloned().collect();
    let got: Vec<String> = receiver.verify(&secret).into_iter().map(|r| r.id).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let (total, rows) = deliveries(&app, &endpoint_id).await;
    assert_eq!(total, 2, "{rows:#?}");
    for d in &rows {
        assert_eq!(d["status"], "DELIVERED", "{d:#}");
        assert_eq!(d["attempts"], 1, "{d:#}");
    }

    // Again: the same deliveries, due again, sent again under the same ids.
    let replayed = replay_events(&app, &endpoint_id, &ids[1]).await;
    assert_eq!(replayed["events"], 2, "{replayed:#}");
    assert_eq!(replayed["complete"], true, "{replayed:#}");
    let (total, rows) = deliveries(&app, &endpoint_id).await;
    assert_eq!(total, 2, "no new deliveries: {rows:#?}");
    for d in &rows {
        assert_eq!(d["status"], "PENDING", "{d:#}");
        assert_eq!(d["attempts"], 0, "{d:#}");
    }
    assert_eq!(drain(&app).await, 2);
    let all: Vec<String> = receiver.verify(&secret).into_iter().map(|r| r.id).collect();
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[2..].iter().cloned().collect::<BTreeSet<_>>(), expected, "{all:?}");
    for d in &deliveries(&app, &endpoint_id).await.1 {
        assert_eq!(d["status"], "DELIVERED", "{d:#}");
        assert_eq!(d["attempts"], 1, "{d:#}");
    }

    let log = app.audit_log(100, None).await;
    let actions: Vec<String> = nodes(&log).iter().map(|e| s(e, "/action").to_owned()).collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "REPLAY_WEBHOOK_EVENTS").count(),
        2,
        "{actions:?}"
    );
}

/// The sequencer's and a worker's claim's statements have one text whatever the number of
/// events and deliveries: a list bound value by value is a new statement for each length, which
/// every connection then prepares and keeps (a third of the server's heap under a webhook's
/// load, once).
#[tokio::test]
async fn the_sequencer_and_a_claim_run_the_same_statements_whatever_the_number_of_events() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behaviour::Status(200)).await;
    let created = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = from_id(Kind::WebhookEndpoint, &ID(s(&created, "/id").to_owned())).expect("an endpoint id");
    let code = referrer(&app, "ref-1").await;

    // The server's pool, with a hook that keeps the text of every statement run through it.
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut db = app.state.db.clone();
    let record = seen.clone();
    db.set_metric_callback(move |info| {
        record.lock().unwrap().insert(info.statement.sql.clone());
    });
    let mut passes = Vec::new();
    let mut friends = 0;
    for events in 1..=3 {
        for _ in 0..events {
            friends += 1;
            attributed(&app, &code, &format!("friend-{friends}")).await;
        }
        seen.lock().unwrap().clear();
        let pass = sequence(&db).await.expect("a sequencer pass");
        assert_eq!(
            pass,
            Sequenced {
                events,
                deliveries: events
            }
        );
        let now = app.state.clock.now();
        let claimed = dispatch::claim(&db, endpoint_id, 64, Duration::from_secs(5), now)
            .await
            .expect("a claim");
        assert_eq!(claimed.len() as u64, events, "each delivery with its event");
        passes.push(std::mem::take(&mut *seen.lock().unwrap()));
    }
    assert!(!passes[0].is_empty(), "the hook saw the pass");
    assert_eq!(passes[0], passes[1], "1 and 2 events");
    assert_eq!(passes[1], passes[2], "2 and 3 events");
}

/// One pass fanning out more deliveries than one statement writes (`DELIVERIES_PER_STATEMENT`):
/// every endpoint gets every event once, due when the event occurred, whatever statement wrote it.
#[tokio::test]
async fn a_pass_with_more_deliveries_than_one_statement_writes_gives_every_endpoint_every_event_once() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behaviour::Status(200)).await;
    let endpoint_count = MAX_ENDPOINTS as usize;
    let mut endpoint_ids = Vec::new();
    for _ in 0..endpoint_count {
        endpoint_ids.push(s(&create_endpoint(&app, json!({ "url": receiver.url })).await, "/id").to_owned());
    }
    // Written after the endpoints, before any pass: one pass orders them all.
    let event_count = DELIVERIES_PER_STATEMENT / endpoint_count + 1;
    let code = referrer(&app, "ref-1").await;
    for friend in 0..event_count {
        attributed(&app, &code, &format!("friend-{friend}")).await;
    }
    let events = feed(&app).await;
    assert_eq!(events.len(), event_count);
    assert!(endpoint_count * event_count > DELIVERIES_PER_STATEMENT);

    let occurred: BTreeMap<String, String> = events
        .iter()
        .map(|e| (s(e, "/id").to_owned(), s(e, "/occurredAt").to_owned()))
        .collect();
    // Numbered in the order of their events, so that deliveries due at the same instant go out
    // in that order.
    let out_of_order = "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT e.position, \
         LAG(e.position) OVER (PARTITION BY d.endpoint_id ORDER BY d.id) AS previous \
         FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id) AS t \
         WHERE t.previous > t.position";
    assert_eq!(app.sql_i64(out_of_order).await, 0);
    // The last event's deliveries are the newest, written by the last statement.
    let last = s(events.last().expect("events"), "/id");
    for endpoint_id in &endpoint_ids {
        let (total, newest) = count_and_newest_delivery(&app, endpoint_id).await;
        assert_eq!(total, event_count as i64, "endpoint {endpoint_id}");
        assert_eq!(newest["event"]["id"], last, "{newest:#}");
        assert_eq!(newest["status"], "PENDING", "{newest:#}");
        assert_eq!(newest["attempts"], 0, "{newest:#}");
        assert_eq!(
            instant(&newest["nextAttemptAt"]),
            instant(&json!(occurred[last])),
            "due when its event occurred: {newest:#}"
        );
    }
    // Another pass has nothing new to write.
    feed(&app).await;
    assert_eq!(
        count_and_newest_delivery(&app, &endpoint_ids[0]).await.0,
        event_count as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_read_only_in_part_and_the_attempt_ends_promptly() {
    let app = spawn_app().await;
    let timeout = app.state.config.webhook_timeout;
    let receiver = Receiver::start(Behaviour::HugeBody).await;
    let created = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = s(&created, "/id").to_owned();
    one_event(&app).await;

    let started = Instant::now();
    let pass = deliver(&app).await;
    let took = started.elapsed();
    assert_eq!(pass.attempts, 1);
    assert_eq!(receiver.verify(s(&created, "/secret")).len(), 1);
    let d = only_delivery(&app, &endpoint_id).await;
    assert_eq!(d["status"], "DELIVERED", "{d:#}");
    assert_eq!(d["attempts"], 1, "{d:#}");
    assert_eq!(d["lastResponseCode"], 200, "{d:#}");
    // Reading the whole body would take over 7 s (and so run into the timeout).
    let latency = d["lastLatencyMs"].as_i64().expect("lastLatencyMs");
    assert!(latency < 2_500, "the attempt read too much of the answer: {d:#}");
    assert!(
        took < Duration::from_millis(2_500) && took < timeout,
        "the pass took {took:?}: the answer was read past 64 KiB"
    );
}
