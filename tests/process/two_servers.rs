//! Two server processes on one database, requests alternating between them: what must hold
//! across instances is enforced by the database, not by one process's memory.

use crate::harness::*;
use serde_json::Value;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_one_database() {
    let started = Instant::now();
    let db = TestDb::empty().await;
    // One after the other: the first applies the migrations, the second finds them applied.
    let mut one = Server::start(&db, "one").await;
    let mut two = Server::start(&db, "two").await;
    let api = Api::new(&db, &one);

    // A refers B and C. B's first residential purchase: 10 GB × 15 = 150 points for A, exactly
    // 10 claims at 15 points. C's first purchase (1 GB × 5, during the race) adds 5 points for A:
    // never enough for an 11th claim, however the requests interleave.
    let provider_id = api.setup_catalog("15").await;
    let code_a = api.register_code("acct-a", None).await;
    api.register_code("acct-b", Some(&code_a)).await;
    api.register_code("acct-c", Some(&code_a)).await;
    let first = api.purchase("setup-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(rewards_of(&first), vec![points_reward("acct-a", "150.00")], "{first:#}");

    let customer_a = db.token("customer", "acct-a");
    assert_eq!(
        points(&api.client, &two.base, &customer_a).await,
        ("150.00".into(), "0.00".into(), "150.00".into()),
        "the second server reads what the first wrote"
    );

    // 80 requests at once, alternating between the servers.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Kind {
        Claim,
        PurchaseB,
        DeliveryC,
    }
    let claim_op = contract_op("customer", "ClaimReward");
    let purchase_op = contract_op("integration", "RecordPurchase");
    let mut requests: Vec<(Kind, String, String, Value)> = Vec::new();
    for n in 0..40 {
        requests.push((
            Kind::Claim,
            customer_a.clone(),
            claim_op.clone(),
            claim_vars(&provider_id, &format!("two-claim-{n}")),
        ));
        if n < 20 {
            requests.push((
                Kind::PurchaseB,
                api.service.clone(),
                purchase_op.clone(),
                purchase_vars(&format!("b-more-{n}"), "acct-b", RESIDENTIAL, "1"),
            ));
            requests.push((
                Kind::DeliveryC,
                api.service.clone(),
                purchase_op.clone(),
                purchase_vars("c-first", "acct-c", RESIDENTIAL_LITE, "1"),
            ));
        }
    }
    let bases = [one.base.clone(), two.base.clone()];
    let tasks: Vec<_> = requests
        .iter()
        .enumerate()
        .map(|(i, (kind, token, query, vars))| {
            let client = api.client.clone();
            let base = bases[i % 2].clone();
            let (kind, token, query, vars) = (*kind, token.clone(), query.clone(), vars.clone());
            tokio::spawn(async move {
                let answer = post(&client, &base, &token, &query, &vars).await;
                (kind, i % 2, answer)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let (kind, server, answer) = task.expect("request task panicked");
        let (status, body) =
            answer.unwrap_or_else(|e| panic!("a {kind:?} request to server {server} got no answer: {e}"));
        assert_eq!(status, 200, "{kind:?} via server {server}: HTTP {status}: {body:#}");
        answers.push((kind, server, body));
    }

    // Claims: exactly 10 succeed, the other 30 are INSUFFICIENT_BALANCE.
    let claims: Vec<&(Kind, usize, Value)> = answers.iter().filter(|a| a.0 == Kind::Claim).collect();
    let ok: Vec<&Value> = claims
        .iter()
        .map(|a| &a.2)
        .filter(|b| succeeded(b, "claimReward"))
        .collect();
    let refused = claims.iter().filter(|a| is_insufficient_balance(&a.2)).count();
    let other: Vec<_> = claims
        .iter()
        .filter(|a| !succeeded(&a.2, "claimReward") && !is_insufficient_balance(&a.2))
        .collect();
    assert!(
        other.is_empty(),
        "claims that are neither a claim nor INSUFFICIENT_BALANCE: {other:#?}"
    );
    assert_eq!(
        (ok.len(), refused),
        (10, 30),
        "exactly 10 claims succeed across both servers"
    );
    let mut claim_ids: Vec<&str> = ok.iter().map(|b| s(b, "/data/claimReward/claim/id")).collect();
    claim_ids.sort_unstable();
    claim_ids.dedup();
    assert_eq!(claim_ids.len(), 10, "ten distinct claims");
    for body in &ok {
        let claim = &body["data"]["claimReward"]["claim"];
        assert_eq!(
            (claim["points"].as_str(), claim["gb"].as_i64(), claim["status"].as_str()),
            (Some("15.00"), Some(1), Some("PENDING")),
            "{body:#}"
        );
    }
    let per_server = |server: usize| {
        claims
            .iter()
            .filter(|a| a.1 == server && succeeded(&a.2, "claimReward"))
            .count()
    };
    eprintln!(
        "[{}] successful claims per server: one {}, two {}",
        db.backend(),
        per_server(0),
        per_server(1)
    );

    // B's further purchases: each recorded once, none pays (B's first purchase was in setup).
    let mut b_events: Vec<&str> = Vec::new();
    for (_, server, body) in answers.iter().filter(|a| a.0 == Kind::PurchaseB) {
        assert!(
            succeeded(body, "recordPurchase"),
            "B's purchase via server {server}: {body:#}"
        );
        let payload = &body["data"]["recordPurchase"];
        assert_eq!(payload["event"]["duplicate"], false, "{body:#}");
        assert!(
            rewards_of(payload).is_empty(),
            "a later purchase pays nothing: {body:#}"
        );
        b_events.push(s(payload, "/event/eventId"));
    }
    b_events.sort_unstable();
    b_events.dedup();
    assert_eq!(b_events.len(), 20);

    // C's first purchase, delivered 20 times: one event, A paid 5 points once; every delivery
    // answers the same event and rewards.
    let deliveries: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == Kind::DeliveryC)
        .map(|a| &a.2)
        .collect();
    for body in &deliveries {
        assert!(succeeded(body, "recordPurchase"), "a delivery of c-first: {body:#}");
    }
    let originals: Vec<&&Value> = deliveries
        .iter()
        .filter(|b| b["data"]["recordPurchase"]["event"]["duplicate"] == false)
        .collect();
    let duplicates = deliveries
        .iter()
        .filter(|b| b["data"]["recordPurchase"]["event"]["duplicate"] == true)
        .count();
    assert_eq!(
        (originals.len(), duplicates),
        (1, 19),
        "one delivery records c-first, 19 are duplicates"
    );
    let original = &originals[0]["data"]["recordPurchase"];
    assert_eq!(
        rewards_of(original),
        vec![points_reward("acct-a", "5.00")],
        "{original:#}"
    );
    for body in &deliveries {
        let payload = &body["data"]["recordPurchase"];
        assert_eq!(payload["event"]["id"], original["event"]["id"], "one event: {body:#}");
        assert_eq!(payload["rewards"], original["rewards"], "the same rewards: {body:#}");
        assert_eq!(
            payload["decisions"], original["decisions"],
            "the same decisions: {body:#}"
        );
    }

    // A: 150 + 5 earned, 10 × 15 spent; both servers show the same.
    for base in [&one.base, &two.base] {
        assert_eq!(
            points(&api.client, base, &customer_a).await,
            ("5.00".into(), "0.00".into(), "155.00".into()),
            "A's points via {base}"
        );
    }
    let conn = db.connect().await;
    assert_eq!(balance_row(&conn, "acct-a", "POINTS").await, (5_000_000, 155_000_000));
    assert_eq!(
        count(&conn, "events").await,
        1 + 20 + 1,
        "setup-b-1, b-more-0..19, c-first"
    );
    assert_eq!(count(&conn, "events WHERE event_id = 'c-first'").await, 1);
    assert_eq!(
        count(&conn, "ledger_entries WHERE kind = 'REWARD'").await,
        2,
        "B's and C's first purchases"
    );
    assert_eq!(count(&conn, "claims").await, 10);
    assert_eq!(count(&conn, "ledger_entries WHERE kind = 'CLAIM'").await, 10);
    assert_eq!(
        sql_i64(&conn, "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries WHERE account_id = (SELECT id FROM accounts WHERE external_id = 'acct-a')").await,
        5_000_000,
        "A's ledger sums to its balance"
    );
    conn.close().await.ok();

    assert!(one.try_status().is_none(), "server one is still running");
    assert!(two.try_status().is_none(), "server two is still running");
    db.assert_check_passes();
    eprintln!(
        "[{}] two_servers_one_database took {:?}",
        db.backend(),
        started.elapsed()
    );
}

/// Instances deployed at the same moment on a new database (the first rollout of a deployment
/// with two replicas): each applies the migrations at start, and none may fail because the
/// other is applying them. Three fresh databases, as the race is not lost every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_start_together_on_a_fresh_database() {
    for round in 0..3 {
        let db = TestDb::empty().await;
        let servers = Server::start_together(&db, &["left", "right"]).await;
        let (left, right) = (&servers[0], &servers[1]);

        // Both serve, on one migrated database: what one writes, the other reads.
        let api = Api::new(&db, left);
        let code = api.register_code("together-a", None).await;
        let via_right = Api::new(&db, right);
        via_right.setup_catalog("15").await;
        via_right.register_code("together-b", Some(&code)).await;
        let paid = api.purchase("together-1", "together-b", RESIDENTIAL, "2").await;
        assert_eq!(
            rewards_of(&paid),
            vec![points_reward("together-a", "30.00")],
            "round {round}: {paid:#}"
        );
        let token = db.token("customer", "together-a");
        assert_eq!(
            points(&via_right.client, &right.base, &token).await,
            ("30.00".into(), "0.00".into(), "30.00".into()),
            "round {round}"
        );
        db.assert_check_passes();
    }
}
