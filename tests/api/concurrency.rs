//! Rules that must hold however requests interleave: no overspending, one reward per referral,
//! one event per eventId.

use crate::helpers::*;
use crate::link::{FIREFOX, browser};
use sea_orm::{DbBackend, TransactionTrait};
use serde_json::{Value, json};
use std::time::Duration;

fn succeeded(body: &Value, field: &str) -> bool {
    error_codes(body).is_empty() && body["data"][field].is_object()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_claims_against_a_balance_for_ten_spend_exactly_ten() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points
    app.set_redemption_rate(PROVIDER, "15").await; // 10 claims of 15
    assert_eq!(app.available_points("acct-a").await, "150.00");

    let query = app.op("customer", "ClaimReward");
    let vars = (0..50)
        .map(|_| json!({ "input": { "providerId": provider_id } }))
        .collect();
    // Two instances: within one, claims of an account take turns; between them only the
    // database keeps the balance from being overspent.
    let instances = [app.address.clone(), another_instance(&app).await];
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-a"), &query, vars).await;

    let ok: Vec<&Value> = bodies.iter().filter(|b| succeeded(b, "claimReward")).collect();
    let insufficient = bodies
        .iter()
        .filter(|b| error_codes(b) == vec!["INSUFFICIENT_BALANCE".to_owned()])
        .count();
    let other: Vec<&Value> = bodies
        .iter()
        .filter(|b| !succeeded(b, "claimReward") && error_codes(b) != vec!["INSUFFICIENT_BALANCE".to_owned()])
        .collect();
    assert!(
        other.is_empty(),
        "answers that are neither a claim nor INSUFFICIENT_BALANCE: {other:#?}"
    );
    assert_eq!(ok.len(), 10, "exactly 10 claims must succeed");
    assert_eq!(insufficient, 40);
    for body in &ok {
        assert_eq!(body["data"]["claimReward"]["claim"]["points"], "15.00", "{body:#}");
    }
    let mut ids: Vec<&str> = ok.iter().map(|b| s(b, "/data/claimReward/claim/id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ten distinct claims");

    assert_eq!(
        app.points("acct-a").await,
        ("0.00".into(), "0.00".into(), "150.00".into())
    );
    assert_eq!(app.balance_available("acct-a", "POINTS").await, 0);
    assert_eq!(
        app.ledger_sum("acct-a", "POINTS").await,
        0,
        "balance = sum of the ledger"
    );
    assert_eq!(app.count("claims").await, 10, "refused claims leave no row");
    let pending = app
        .run_ok(
            Some(&app.service()),
            "integration",
            "PendingClaims",
            json!({ "first": 100 }),
        )
        .await;
    assert_eq!(pending["claims"]["totalCount"], 10, "{pending:#}");
    let history = app
        .run_ok(
            Some(&app.customer("acct-a")),
            "customer",
            "HistoryPage",
            json!({ "first": 100 }),
        )
        .await;
    let history = &history["me"]["rewardHistory"];
    assert_eq!(history["totalCount"], 11, "one reward and ten claims: {history:#}");
    let sum: f64 = history["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| s(e, "/node/amount").parse::<f64>().expect("amount"))
        .sum();
    assert_eq!(sum, 0.0, "{history:#}");
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_first_purchases_pay_one_reward() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;

    let query = app.op("integration", "RecordPurchase");
    let vars = (0..20)
        .map(|i| TestApp::purchase_input(&format!("evt-race-{i}"), "acct-b", RESIDENTIAL, "10"))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    for body in &bodies {
        assert!(
            succeeded(body, "recordPurchase"),
            "every purchase is recorded: {body:#}"
        );
        assert_eq!(body["data"]["recordPurchase"]["event"]["duplicate"], false, "{body:#}");
    }
    let rewarded: Vec<&Value> = bodies
        .iter()
        .filter(|b| {
            !b["data"]["recordPurchase"]["rewards"]
                .as_array()
                .is_none_or(Vec::is_empty)
        })
        .collect();
    assert_eq!(rewarded.len(), 1, "exactly one purchase pays");
    assert_eq!(rewarded[0]["data"]["recordPurchase"]["rewards"][0]["amount"], "150.00");
    let skipped = bodies
        .iter()
        .filter(|b| b["data"]["recordPurchase"]["decisions"][0]["outcome"] == "SKIPPED")
        .count();
    assert_eq!(skipped, 19);

    assert_eq!(app.count("events").await, 20);
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind = 'REWARD'")
            .await,
        1
    );
    assert_eq!(
        app.points("acct-a").await,
        ("150.00".into(), "0.00".into(), "150.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 150_000_000);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deliveries_of_one_event_record_it_once() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;

    let query = app.op("integration", "RecordPurchase");
    let vars = (0..20)
        .map(|_| TestApp::purchase_input("evt-once", "acct-b", RESIDENTIAL, "10"))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    for body in &bodies {
        assert!(
            succeeded(body, "recordPurchase"),
            "every delivery is answered without error: {body:#}"
        );
    }
    let originals = bodies
        .iter()
        .filter(|b| b["data"]["recordPurchase"]["event"]["duplicate"] == false)
        .count();
    let duplicates = bodies
        .iter()
        .filter(|b| b["data"]["recordPurchase"]["event"]["duplicate"] == true)
        .count();
    assert_eq!((originals, duplicates), (1, 19));
    let first = &bodies[0]["data"]["recordPurchase"];
    for body in &bodies {
        let answer = &body["data"]["recordPurchase"];
        assert_eq!(answer["event"]["id"], first["event"]["id"], "one event: {body:#}");
        assert_eq!(answer["rewards"], first["rewards"], "the same rewards: {body:#}");
        assert_eq!(answer["decisions"], first["decisions"], "the same decisions: {body:#}");
    }
    assert_eq!(first["rewards"][0]["amount"], "150.00", "{first:#}");

    assert_eq!(app.count("events").await, 1);
    assert_eq!(app.count("ledger_entries").await, 1);
    assert_eq!(
        app.points("acct-a").await,
        ("150.00".into(), "0.00".into(), "150.00".into())
    );
    app.assert_invariants().await;
}

/// On SQLite a mutation waits in the instance for its turn (SQLite has one write lock, and its
/// own waiting is by naps, in no order); a query does not wait. PostgreSQL has no such queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_mutation_waits_its_turn_and_a_query_does_not() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "4").await;
    crate::time::customer(&app, "acct-q").await;
    let Some(writer) = app.state.sqlite_writer.as_ref() else {
        assert_eq!(app.state.db.get_database_backend(), DbBackend::Postgres);
        return;
    };
    let token = app.customer("acct-q");
    let turn = writer.turn().await;
    let claim = spawn_claim(&app, &token, &provider_id, "queued");
    assert_a_dashboard_answers(&app, &token).await;
    // Ample time for a claim that did not wait to be answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the claim waits for its turn");
    drop(turn);
    let claimed = within(claim)
        .await
        .expect("the claim goes once the turn is given up")
        .expect("the request task");
    assert_eq!(
        error_codes(&claimed),
        vec!["INSUFFICIENT_BALANCE".to_owned()],
        "{claimed:#}"
    );
}

/// On SQLite whatever writes goes through the writers' connection, so that its page cache stays
/// warm from one write to the next: while something else holds that connection (a transaction
/// that has run nothing yet, so it holds no lock of SQLite's), a mutation, a link click and a
/// webhook pass wait for it; a query does not. Work that wrote on a pooled connection would not
/// wait: nothing holds the database's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_whatever_writes_waits_for_the_writers_connection_and_a_query_does_not() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "4").await;
    let code = app.register_code("acct-w", Some("Wendy Writer"), None).await;
    let Some(writer) = app.state.sqlite_writer.as_ref() else {
        assert_eq!(app.state.db.get_database_backend(), DbBackend::Postgres);
        return;
    };
    let held = writer
        .db
        .begin()
        .await
        .expect("a transaction on the writers' connection");
    let token = app.customer("acct-w");
    let claim = spawn_claim(&app, &token, &provider_id, "held");
    let click = {
        let request = browser()
            .get(format!("{}/r/{code}", app.address))
            .header("user-agent", FIREFOX);
        tokio::spawn(async move { request.send().await.expect("the link answers").status() })
    };
    let pass = {
        let state = app.state.clone();
        tokio::spawn(async move { referral_server::dispatcher::deliver_now(&state).await.is_ok() })
    };
    assert_a_dashboard_answers(&app, &token).await;
    // Ample time for work that did not wait to be done.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the claim waits for the writers' connection");
    assert!(!click.is_finished(), "the click waits for the writers' connection");
    assert!(
        !pass.is_finished(),
        "the webhook pass waits for the writers' connection"
    );
    held.rollback().await.expect("the held transaction ends");
    let claimed = within(claim).await.expect("the claim goes").expect("the claim's task");
    assert_eq!(
        error_codes(&claimed),
        vec!["INSUFFICIENT_BALANCE".to_owned()],
        "{claimed:#}"
    );
    let clicked = within(click).await.expect("the click goes").expect("the click's task");
    assert_eq!(clicked, reqwest::StatusCode::FOUND);
    assert!(within(pass).await.expect("the pass goes").expect("the pass's task"));
    assert_eq!(app.count("clicks").await, 1, "the click was counted");
}

async fn within<F: std::future::IntoFuture>(work: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), work).await
}

/// A ClaimReward of `token`'s account, sent on a task of its own: its answer.
fn spawn_claim(app: &TestApp, token: &str, provider_id: &str, key: &str) -> tokio::task::JoinHandle<Value> {
    let (client, address, token) = (app.client.clone(), app.address.clone(), token.to_owned());
    let query = app.op("customer", "ClaimReward");
    let vars = json!({ "input": { "providerId": provider_id, "idempotencyKey": key } });
    tokio::spawn(async move { post_graphql(&client, &address, Some(&token), &query, vars).await.1 })
}

/// A Dashboard answers within seconds, without errors: a query waits for no writer.
async fn assert_a_dashboard_answers(app: &TestApp, token: &str) {
    let dashboard = app.op("customer", "Dashboard");
    let read = within(post_graphql(
        &app.client,
        &app.address,
        Some(token),
        &dashboard,
        json!({}),
    ))
    .await
    .expect("a query goes while writers wait");
    assert!(error_codes(&read.1).is_empty(), "{:#}", read.1);
}
