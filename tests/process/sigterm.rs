//! SIGTERM while requests are in flight: the server stops accepting connections at once, lets
//! every accepted request finish with a complete answer, and exits with status 0.
//!
//! To have requests that are certainly in flight when the signal comes, the test holds the
//! database's write lock from its own connection (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an
//! `EXCLUSIVE` lock on the tables the requests write), so every write request waits in the
//! server until the test lets go, after the signal.

use crate::harness::*;
use sea_orm::{ConnectionTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait};
use serde_json::Value;
use std::time::{Duration, Instant};

const PURCHASES: usize = 16;
const REGISTRATIONS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_requests_in_flight_finish() {
    let started = Instant::now();
    let db = TestDb::fresh().await;
    let mut server = Server::start(&db, "server").await;
    // Its pooled client keeps an idle keep-alive connection open: shutdown must not wait for it.
    let api = Api::new(&db, &server);
    api.setup_catalog("15").await;
    let code_a = api.register_code("st-a", None).await;
    api.register_code("st-b", Some(&code_a)).await;

    // Hold the write lock.
    let conn = db.connect().await;
    let lock = conn
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .expect("begin the test's lock transaction");
    if db.postgres {
        lock.execute_unprepared("LOCK TABLE events, accounts IN EXCLUSIVE MODE")
            .await
            .expect("lock the tables");
    }

    // 24 writes at once, each on its own connection: 16 purchases by B (one of them is its first,
    // paying A 15 points) and 8 registrations with A's code.
    let purchase_op = contract_op("integration", "RecordPurchase");
    let register_op = contract_op("integration", "RegisterAccount");
    let mut batch: Vec<(String, String, Value)> = Vec::new();
    for n in 0..PURCHASES {
        let event_id = format!("st-b-{n}");
        batch.push((
            event_id.clone(),
            purchase_op.clone(),
            purchase_vars(&event_id, "st-b", RESIDENTIAL, "1"),
        ));
    }
    for n in 0..REGISTRATIONS {
        let external_id = format!("st-new-{n}");
        batch.push((
            external_id.clone(),
            register_op.clone(),
            register_vars(&external_id, Some(&code_a)),
        ));
    }
    let fresh_connections = client(false);
    let handles: Vec<_> = batch
        .iter()
        .map(|(label, query, vars)| {
            let (client, base, token) = (fresh_connections.clone(), server.base.clone(), api.service.clone());
            let (label, query, vars) = (label.clone(), query.clone(), vars.clone());
            tokio::spawn(async move { (label, post(&client, &base, &token, &query, &vars).await) })
        })
        .collect();
    // Time for every connection to be accepted and every request to reach the database.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if handles.iter().any(|h| h.is_finished()) {
        // Answered while the database was locked: failed fast instead of waiting, or the lock
        // does not hold them (then this test would prove nothing).
        let mut early = Vec::new();
        for handle in handles.into_iter().filter(|h| h.is_finished()) {
            early.push(handle.await.expect("request task panicked"));
        }
        panic!("requests finished while the database was locked: {early:#?}");
    }

    server.sigterm();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.try_status().is_none(),
        "the server exited with requests still in flight"
    );
    assert!(
        connection_refused(server.port),
        "a new connection was not refused after SIGTERM"
    );
    let still_waiting = handles.iter().filter(|h| !h.is_finished()).count();
    assert_eq!(
        still_waiting,
        batch.len(),
        "every request is still in flight when the lock is released"
    );

    // Let the requests finish.
    lock.rollback().await.expect("release the lock");
    let mut answers = Vec::new();
    for handle in handles {
        let (label, answer) = tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .unwrap_or_else(|_| panic!("a request did not finish within 20 s of the lock's release"))
            .expect("request task panicked");
        let (status, body) =
            answer.unwrap_or_else(|e| panic!("{label}: accepted before SIGTERM, but no complete answer: {e}"));
        assert_eq!(status, 200, "{label}: HTTP {status}: {body:#}");
        answers.push((label, body));
    }
    let status = server
        .wait_exit(Duration::from_secs(10).saturating_sub(signalled.elapsed()))
        .await
        .unwrap_or_else(|| panic!("the server did not exit within 10 s of SIGTERM"));
    assert_eq!(
        status.code(),
        Some(0),
        "the server's exit status after SIGTERM: {status}"
    );
    eprintln!("[{}] exited {:?} after SIGTERM", db.backend(), signalled.elapsed());
    assert!(
        connection_refused(server.port),
        "a connection was accepted after the server exited"
    );

    // Every answer is complete and right.
    let mut rewarded = 0;
    for (label, body) in &answers {
        if label.starts_with("st-b-") {
            assert!(succeeded(body, "recordPurchase"), "{label}: {body:#}");
            let payload = &body["data"]["recordPurchase"];
            assert_eq!(payload["event"]["eventId"], label.as_str(), "{body:#}");
            assert_eq!(payload["event"]["duplicate"], false, "{body:#}");
            match rewards_of(payload).as_slice() {
                [] => {}
                [reward] if *reward == points_reward("st-a", "15.00") => rewarded += 1,
                other => panic!("{label}: unexpected rewards {other:?}"),
            }
        } else {
            assert!(succeeded(body, "registerAccount"), "{label}: {body:#}");
            let registered = &body["data"]["registerAccount"];
            assert_eq!(registered["account"]["externalId"], label.as_str(), "{body:#}");
            assert_eq!(registered["referral"]["status"], "PENDING", "{body:#}");
            assert_eq!(
                registered["referral"]["referrer"]["referralCode"],
                code_a.as_str(),
                "{body:#}"
            );
        }
    }
    assert_eq!(rewarded, 1, "B's first purchase pays A once");

    // What was answered was committed.
    assert_eq!(count(&conn, "events").await, PURCHASES as i64);
    assert_eq!(count(&conn, "accounts").await, 2 + REGISTRATIONS as i64);
    assert_eq!(
        count(&conn, "referrals WHERE status <> 'REJECTED'").await,
        1 + REGISTRATIONS as i64
    );
    assert_eq!(count(&conn, "ledger_entries WHERE kind = 'REWARD'").await, 1);
    assert_eq!(balance_row(&conn, "st-a", "POINTS").await, (15_000_000, 15_000_000));
    conn.close().await.ok();
    db.assert_check_passes();
    drop(api);
    eprintln!(
        "[{}] sigterm_lets_requests_in_flight_finish took {:?}",
        db.backend(),
        started.elapsed()
    );
}
