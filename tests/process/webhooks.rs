//! Webhook delivery across processes: the background dispatcher of the real binary posting to a
//! receiver in the test process (an axum server on 127.0.0.1 that records every request).
//!
//! - A server killed with SIGKILL while its attempt is in flight (sent, not answered) leaves the
//!   delivery leased; a new server on the same database sends it again, under the same
//!   `webhook-id`, once the lease (timeout + 5 s) has run out, and it ends DELIVERED once.
//! - Two servers on one database deliver 1,000 events between them, each exactly once.
//!
//! Every server runs with `WEBHOOK_ALLOW_PRIVATE_TARGETS=true` (the receiver is on loopback),
//! `WEBHOOK_POLL_INTERVAL=100ms` and `WEBHOOK_TIMEOUT=2s`, so a lease lasts 7 s.

use crate::harness::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as route_post;
use futures::stream::{self, StreamExt};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One GraphQL answer: its HTTP status and body, or why there was none.
type Answer = Result<(u16, Value), String>;

/// What every server of these tests runs with.
const WEBHOOK_ENV: &[(&str, &str)] = &[
    ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOK_POLL_INTERVAL", "100ms"),
    ("WEBHOOK_TIMEOUT", "2s"),
];
/// The lease of an attempt in flight: `WEBHOOK_TIMEOUT` + 5 s.
const LEASE: Duration = Duration::from_secs(7);
/// How long the receiver holds a request open in `Hang` at most (then it answers 503).
const HANG_AT_MOST: Duration = Duration::from_secs(60);
/// After everything is delivered, how long no further request may arrive.
const QUIET: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The receiver

/// What the receiver does with a request when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Holds the request open without answering (at most `HANG_AT_MOST`, then 503).
    Hang,
    /// Answers 200 at once.
    Answer200,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    webhook_id: String,
    body: Value,
    arrived: Instant,
    /// The status it answered; `None` while held open (and for good when the sender died).
    answered: Option<u16>,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    hits: Mutex<Vec<Hit>>,
}

/// An HTTP server in the test process, on 127.0.0.1, stopped on drop.
struct Receiver {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver on 127.0.0.1:0");
        let port = listener.local_addr().expect("the receiver's address").port();
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            hits: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/hook", route_post(hook))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the receiver stopped serving");
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            shared,
            task,
        }
    }

    /// How requests arriving from now on are answered (requests held open stay held).
    fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Every request so far, in arrival order.
    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// The requests for one webhook-id, in arrival order.
    fn hits_for(&self, webhook_id: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.webhook_id == webhook_id).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let behaviour = *shared.behaviour.lock().unwrap();
    let index = {
        let mut hits = shared.hits.lock().unwrap();
        hits.push(Hit {
            webhook_id,
            body,
            arrived: Instant::now(),
            answered: None,
        });
        hits.len() - 1
    };
    let status = match behaviour {
        Behaviour::Hang => {
            tokio::time::sleep(HANG_AT_MOST).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
        Behaviour::Answer200 => StatusCode::OK,
    };
    shared.hits.lock().unwrap()[index].answered = Some(status.as_u16());
    status
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The last lines of each server's log, for a failure message.
fn logs(servers: &[&Server]) -> String {
    let mut out = String::new();
    for server in servers {
        let log = server.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(100)..];
        out.push_str(&format!(
            "---- log of server {} (last {} lines) ----\n{}\n",
            server.name,
            tail.len(),
            tail.join("\n")
        ));
    }
    out
}

/// The same API as `api`, through another server.
fn via(api: &Api, server: &Server) -> Api {
    Api {
        client: api.client.clone(),
        base: server.base.clone(),
        admin: api.admin.clone(),
        service: api.service.clone(),
    }
}

/// Creates an enabled endpoint at `url` that wants referral.attributed only; its id.
async fn create_endpoint(api: &Api, url: &str) -> String {
    let data = run_ok(
        &api.client,
        &api.base,
        &api.admin,
        &contract_op("admin", "CreateWebhookEndpoint"),
        json!({ "input": {
            "url": url,
            "description": "process test receiver",
            "eventTypes": ["REFERRAL_ATTRIBUTED"],
            "enabled": true,
        } }),
    )
    .await;
    let endpoint = &data["createWebhookEndpoint"];
    assert_eq!(endpoint["url"], url, "{data:#}");
    assert_eq!(endpoint["eventTypes"], json!(["REFERRAL_ATTRIBUTED"]), "{data:#}");
    assert_eq!(endpoint["enabled"], true, "{data:#}");
    s(endpoint, "/id").to_owned()
}

/// Every delivery row: (webhook-id of its event, status, attempts), in id order.
async fn deliveries(conn: &DatabaseConnection) -> Vec<(String, String, i64)> {
    let sql = "SELECT CAST(event_id AS BIGINT), status, CAST(attempts AS BIGINT) FROM webhook_deliveries ORDER BY id";
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|row| {
            let event_id = row
                .try_get_by_index::<i64>(0)
                .unwrap_or_else(|e| panic!("{sql}: event_id: {e:?}"));
            let status = row
                .try_get_by_index::<String>(1)
                .unwrap_or_else(|e| panic!("{sql}: status: {e:?}"));
            let attempts = row
                .try_get_by_index::<i64>(2)
                .unwrap_or_else(|e| panic!("{sql}: attempts: {e:?}"));
            (format!("de_{event_id}"), status, attempts)
        })
        .collect()
}

/// How many deliveries have each (status, attempts).
async fn delivery_summary(conn: &DatabaseConnection) -> BTreeMap<(String, i64), usize> {
    let mut summary = BTreeMap::new();
    for (_, status, attempts) in deliveries(conn).await {
        *summary.entry((status, attempts)).or_insert(0) += 1;
    }
    summary
}

/// Waits until the receiver holds `n` requests open (arrived, not answered), each for another
/// event and none sent twice; their webhook-ids, sorted.
async fn wait_in_hand(receiver: &Receiver, n: usize, servers: &[&Server]) -> Vec<String> {
    let within = Duration::from_secs(15);
    let deadline = Instant::now() + within;
    loop {
        let hits = receiver.hits();
        let held: BTreeSet<String> = hits
            .iter()
            .filter(|h| h.answered.is_none())
            .map(|h| h.webhook_id.clone())
            .collect();
        if held.len() >= n {
            assert_eq!(held.len(), n, "more events in flight than produced: {hits:#?}");
            assert_eq!(hits.len(), n, "each event sent once so far, none answered: {hits:#?}");
            return held.into_iter().collect();
        }
        assert!(
            Instant::now() < deadline,
            "the receiver got {} of {n} requests within {within:?}: {hits:#?}\n{}",
            held.len(),
            logs(servers)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `n` deliveries are DELIVERED in the database.
async fn wait_delivered(conn: &DatabaseConnection, n: usize, within: Duration, servers: &[&Server]) {
    let deadline = Instant::now() + within;
    loop {
        let delivered = count(conn, "webhook_deliveries WHERE status = 'DELIVERED'").await;
        if delivered >= n as i64 {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{delivered} of {n} deliveries DELIVERED after {within:?}; (status, attempts) → rows: {:?}\n{}",
                delivery_summary(conn).await,
                logs(servers)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Right after the kill: `n` deliveries, each claimed once (attempts 1, still leased) and never
/// finished (no last attempt recorded): the kill came between send and finish.
async fn assert_left_in_flight(conn: &DatabaseConnection, n: usize, servers: &[&Server]) {
    let rows = deliveries(conn).await;
    let in_flight = count(
        conn,
        "webhook_deliveries WHERE status = 'PENDING' AND attempts = 1 \
         AND locked_until IS NOT NULL AND last_attempt_at IS NULL",
    )
    .await;
    assert!(
        rows.len() == n && in_flight == n as i64,
        "expected {n} deliveries left in flight by the kill (PENDING, attempts 1, leased, no \
         attempt recorded), got {in_flight} such among {rows:?}\n{}",
        logs(servers)
    );
}

/// The request(s) of one event: the ones cut off by the kill (held open, never answered) and,
/// after the lease ran out, one answered 200 with the same body.
fn assert_cut_off_then_delivered_once(receiver: &Receiver, webhook_id: &str, servers: &[&Server]) {
    let hits = receiver.hits_for(webhook_id);
    let answers: Vec<Option<u16>> = hits.iter().map(|h| h.answered).collect();
    assert_eq!(
        answers,
        vec![None, Some(200)],
        "{webhook_id}: the request cut off by the kill, then one answered 200: {hits:#?}\n{}",
        logs(servers)
    );
    assert_eq!(
        hits[1].body, hits[0].body,
        "{webhook_id}: the event is sent again as it was"
    );
    assert_eq!(
        hits[0].body["id"], webhook_id,
        "{webhook_id}: the body's id is the webhook-id"
    );
    assert_eq!(hits[0].body["type"], "referral.attributed", "{:#}", hits[0].body);
    let gap = hits[1].arrived - hits[0].arrived;
    assert!(
        gap >= LEASE - Duration::from_secs(1),
        "{webhook_id} was sent again {gap:?} after the cut-off attempt: before its {LEASE:?} lease ran out"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_cut_off_by_kill_minus_9_is_sent_again_after_a_restart_and_delivered_once() {
    let started = Instant::now();
    let db = TestDb::fresh().await;
    let receiver = Receiver::start(Behaviour::Hang).await;
    let mut first = Server::start_with_env(&db, "first", WEBHOOK_ENV).await;
    let api = Api::new(&db, &first);
    let endpoint_id = create_endpoint(&api, &receiver.url).await;

    // One referral.attributed: the friend registers with the referrer's code.
    let code = api.register_code("wh-referrer", None).await;
    api.register_code("wh-friend-1", Some(&code)).await;

    // The receiver has the request in hand: kill -9 before it answers.
    let in_hand = wait_in_hand(&receiver, 1, &[&first]).await;
    let webhook_id = in_hand[0].clone();
    let status = first.sigkill();
    assert_eq!(status.signal(), Some(9), "the first server died of SIGKILL: {status}");
    receiver.set(Behaviour::Answer200);
    let conn = db.connect().await;
    assert_left_in_flight(&conn, 1, &[&first]).await;

    // A new server on the same database sends it again once the lease has run out.
    let second = Server::start_with_env(&db, "second", WEBHOOK_ENV).await;
    wait_delivered(&conn, 1, Duration::from_secs(30), &[&first, &second]).await;
    tokio::time::sleep(QUIET).await;
    assert_cut_off_then_delivered_once(&receiver, &webhook_id, &[&first, &second]);
    assert_eq!(receiver.hits().len(), 2, "no other request: {:#?}", receiver.hits());
    assert_eq!(
        deliveries(&conn).await,
        vec![(webhook_id.clone(), "DELIVERED".to_owned(), 2)],
        "one delivery, DELIVERED at its second attempt, and no other"
    );
    assert_eq!(
        receiver.hits()[0].body["data"]["refereeExternalId"],
        "wh-friend-1",
        "{:#?}",
        receiver.hits()
    );

    // The API tells the same.
    let api = via(&api, &second);
    let data = run_ok(
        &api.client,
        &api.base,
        &api.admin,
        &contract_op("admin", "WebhookDeliveries"),
        json!({ "endpointId": endpoint_id, "first": 10 }),
    )
    .await;
    let page = &data["webhookDeliveries"];
    assert_eq!(page["totalCount"], 1, "{data:#}");
    let node = &page["nodes"][0];
    assert_eq!(node["endpointId"], endpoint_id.as_str(), "{data:#}");
    assert_eq!(node["status"], "DELIVERED", "{data:#}");
    assert_eq!(node["attempts"], 2, "{data:#}");
    assert_eq!(node["lastResponseCode"], 200, "{data:#}");
    assert_eq!(node["nextAttemptAt"], Value::Null, "{data:#}");
    assert_eq!(node["event"]["id"], webhook_id.as_str(), "{data:#}");
    assert_eq!(node["event"]["type"], "REFERRAL_ATTRIBUTED", "{data:#}");

    // An event after the restart: delivered at its first attempt, once.
    api.register_code("wh-friend-2", Some(&code)).await;
    wait_delivered(&conn, 2, Duration::from_secs(30), &[&first, &second]).await;
    tokio::time::sleep(QUIET).await;
    let hits = receiver.hits();
    let later: Vec<&Hit> = hits.iter().filter(|h| h.webhook_id != webhook_id).collect();
    assert_eq!(later.len(), 1, "the later event is sent once: {hits:#?}");
    let later_id = later[0].webhook_id.clone();
    assert_eq!(later[0].answered, Some(200), "{hits:#?}");
    assert_eq!(later[0].body["id"], later_id.as_str(), "{hits:#?}");
    assert_eq!(later[0].body["data"]["refereeExternalId"], "wh-friend-2", "{hits:#?}");
    assert_eq!(
        hits.len(),
        3,
        "two requests for the first event, one for the later: {hits:#?}"
    );
    assert_eq!(
        deliveries(&conn).await,
        vec![
            (webhook_id, "DELIVERED".to_owned(), 2),
            (later_id, "DELIVERED".to_owned(), 1),
        ],
        "the later event delivered at its first attempt"
    );

    conn.close().await.ok();
    drop(second);
    db.assert_check_passes();
    eprintln!(
        "[{}] a delivery cut off by kill -9: took {:?}",
        db.backend(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_deliveries_in_flight_at_kill_minus_9_are_each_delivered_once_after_a_restart() {
    const FRIENDS: usize = 5;
    let started = Instant::now();
    let db = TestDb::fresh().await;
    let receiver = Receiver::start(Behaviour::Hang).await;
    let mut first = Server::start_with_env(&db, "first", WEBHOOK_ENV).await;
    let api = Api::new(&db, &first);

    // Five referral.attributed, ordered in the feed before the endpoint exists; then the
    // endpoint and a replay of them: five deliveries due at once, which the endpoint's worker
    // claims as one batch and sends together (8 at a time), all held open by the receiver.
    let code = api.register_code("wh5-referrer", None).await;
    let friends: Vec<String> = (1..=FRIENDS).map(|n| format!("wh5-friend-{n}")).collect();
    futures::future::join_all(friends.iter().map(|friend| api.register_code(friend, Some(&code)))).await;
    let conn = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&conn, "outbox_events WHERE position IS NOT NULL").await < FRIENDS as i64 {
        assert!(
            Instant::now() < deadline,
            "the events were not ordered within 10 s\n{}",
            logs(&[&first])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let endpoint_id = create_endpoint(&api, &receiver.url).await;
    let first_event = sql_i64(&conn, "SELECT MIN(id) FROM outbox_events").await;
    let replayed = run_ok(
        &api.client,
        &api.base,
        &api.admin,
        &contract_op("admin", "ReplayWebhookEvents"),
        json!({ "endpointId": endpoint_id, "sinceEventId": format!("de_{first_event}") }),
    )
    .await;
    assert_eq!(replayed["replayWebhookEvents"]["events"], FRIENDS, "{replayed:#}");
    let in_hand = wait_in_hand(&receiver, FRIENDS, &[&first]).await;
    let status = first.sigkill();
    assert_eq!(status.signal(), Some(9), "the first server died of SIGKILL: {status}");
    receiver.set(Behaviour::Answer200);
    assert_left_in_flight(&conn, FRIENDS, &[&first]).await;

    let second = Server::start_with_env(&db, "second", WEBHOOK_ENV).await;
    wait_delivered(&conn, FRIENDS, Duration::from_secs(30), &[&first, &second]).await;
    tokio::time::sleep(QUIET).await;
    for webhook_id in &in_hand {
        assert_cut_off_then_delivered_once(&receiver, webhook_id, &[&first, &second]);
    }
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2 * FRIENDS, "no other request: {hits:#?}");
    let referees: BTreeSet<String> = hits
        .iter()
        .map(|h| s(&h.body, "/data/refereeExternalId").to_owned())
        .collect();
    assert_eq!(
        referees,
        friends.iter().cloned().collect::<BTreeSet<String>>(),
        "one event per friend"
    );
    let rows = deliveries(&conn).await;
    let expected: Vec<(String, String, i64)> = in_hand
        .iter()
        .map(|id| (id.clone(), "DELIVERED".to_owned(), 2))
        .collect();
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "each delivery DELIVERED at its second attempt");

    conn.close().await.ok();
    drop(second);
    db.assert_check_passes();
    eprintln!(
        "[{}] five deliveries cut off by kill -9: took {:?}",
        db.backend(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deliver_1000_events_exactly_once_between_them() {
    const EVENTS: usize = 1_000;
    const CONCURRENCY: usize = 16;
    let db = TestDb::fresh().await;
    let receiver = Receiver::start(Behaviour::Answer200).await;
    // Each finished attempt is logged at debug: which instance delivered what.
    let mut env: Vec<(&str, &str)> = WEBHOOK_ENV.to_vec();
    env.push(("RUST_LOG", "warn,referral_server::dispatcher=debug"));
    let mut one = Server::start_with_env(&db, "one", &env).await;
    let mut two = Server::start_with_env(&db, "two", &env).await;
    let api = Api::new(&db, &one);
    create_endpoint(&api, &receiver.url).await;
    let code = api.register_code("wh-many-referrer", None).await;

    // 1,000 friends register with the code, alternating between the servers, 16 at a time.
    let started = Instant::now();
    let friend = |i: usize| format!("wh-many-friend-{i:04}");
    let register_op = contract_op("integration", "RegisterAccount");
    let bases = [one.base.clone(), two.base.clone()];
    let answers: Vec<(usize, Answer)> = stream::iter(0..EVENTS)
        .map(|i| {
            let client = api.client.clone();
            let base = bases[i % 2].clone();
            let token = api.service.clone();
            let query = register_op.clone();
            let vars = register_vars(&friend(i), Some(&code));
            async move { (i, post(&client, &base, &token, &query, &vars).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|(i, answer)| match answer {
            Ok((200, body))
                if succeeded(body, "registerAccount")
                    && body["data"]["registerAccount"]["referral"]["status"] == "PENDING" =>
            {
                None
            }
            Ok((status, body)) => Some(format!("{} via server {}: HTTP {status}: {body}", friend(*i), i % 2)),
            Err(error) => Some(format!("{} via server {}: {error}", friend(*i), i % 2)),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {EVENTS} registrations failed, e.g. {:#?}\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        logs(&[&one, &two])
    );
    let registered = started.elapsed();

    // Every event reaches the receiver.
    let within = Duration::from_secs(45);
    let deadline = Instant::now() + within;
    loop {
        let distinct: BTreeSet<String> = receiver.hits().into_iter().map(|h| h.webhook_id).collect();
        if distinct.len() >= EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver got {} of {EVENTS} events within {within:?} after the registrations; \
             (status, attempts) → rows: {:?}\n{}",
            distinct.len(),
            delivery_summary(&db.connect().await).await,
            logs(&[&one, &two])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_received = started.elapsed();
    let conn = db.connect().await;
    wait_delivered(&conn, EVENTS, Duration::from_secs(15), &[&one, &two]).await;
    // Nothing more may come.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let hits = receiver.hits();
    let distinct: BTreeSet<String> = hits.iter().map(|h| h.webhook_id.clone()).collect();
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for hit in &hits {
        *per_id.entry(hit.webhook_id.as_str()).or_insert(0) += 1;
    }
    let duplicated: Vec<(&str, usize)> = per_id.into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        hits.len() == EVENTS && distinct.len() == EVENTS,
        "{} requests for {} events (expected {EVENTS} for {EVENTS}); sent more than once: {:?}\n{}",
        hits.len(),
        distinct.len(),
        &duplicated[..duplicated.len().min(20)],
        logs(&[&one, &two])
    );
    let not_200: Vec<&Hit> = hits.iter().filter(|h| h.answered != Some(200)).collect();
    assert!(not_200.is_empty(), "requests not answered 200: {not_200:#?}");
    for hit in &hits {
        assert_eq!(hit.body["id"], hit.webhook_id.as_str(), "{:#}", hit.body);
        assert_eq!(hit.body["type"], "referral.attributed", "{:#}", hit.body);
    }
    let referees: BTreeSet<String> = hits
        .iter()
        .map(|h| s(&h.body, "/data/refereeExternalId").to_owned())
        .collect();
    assert_eq!(
        referees,
        (0..EVENTS).map(friend).collect::<BTreeSet<String>>(),
        "one event per friend"
    );

    // The database: one delivery per event, each DELIVERED at its first attempt.
    let rows = deliveries(&conn).await;
    assert_eq!(rows.len(), EVENTS, "one delivery per event");
    let row_ids: BTreeSet<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(row_ids, distinct, "the deliveries are the events the receiver got");
    let summary = delivery_summary(&conn).await;
    assert_eq!(
        summary,
        BTreeMap::from([(("DELIVERED".to_owned(), 1), EVENTS)]),
        "(status, attempts) → deliveries"
    );
    assert_eq!(
        count(&conn, "outbox_events WHERE event_type = 'referral.attributed'").await,
        EVENTS as i64
    );
    conn.close().await.ok();

    // Both instances delivered, and between them each event once.
    let delivered_by = |server: &Server| {
        server
            .log()
            .lines()
            .filter(|l| l.contains("webhook attempt") && l.contains("finished=Delivered"))
            .count()
    };
    let (by_one, by_two) = (delivered_by(&one), delivered_by(&two));
    eprintln!(
        "[{}] {EVENTS} events: registered in {registered:?}, all received {all_received:?} after the \
         first registration; delivered by server one {by_one}, by server two {by_two}",
        db.backend()
    );
    assert_eq!(
        by_one + by_two,
        EVENTS,
        "the servers' logs count one delivered attempt per event (debug line \"webhook attempt … \
         finished=Delivered\")\n{}",
        logs(&[&one, &two])
    );
    assert!(
        by_one > 0 && by_two > 0,
        "both instances deliver: one {by_one}, two {by_two}"
    );

    assert!(one.try_status().is_none(), "server one is still running");
    assert!(two.try_status().is_none(), "server two is still running");
    db.assert_check_passes();
}
