//! What the writes on the hot paths cost in statements (a regression in round trips fails
//! here), and the one-statement claim under load. On PostgreSQL a purchase is two statements
//! (its facts read, its writes in one call), and so are the purchases that waited for a writer
//! together, and every answer to ClaimReward (a claim, a retry answered again, a key reused for another
//! claim, a balance too small, a claim limit) is one statement, and claims of one account that
//! waited for their turn are one statement together; on SQLite the claim runs in steps in one
//! transaction. Either way, 200 concurrent claims on one account spend exactly what the balance
//! holds, lot by lot.

use crate::helpers::*;
use crate::time::{customer, reward_in};
use entity::enums::Unit;
use serde_json::{Value, json};

/// The statements one RecordPurchase ran, and its body.
async fn purchase_costs(app: &TestApp, event_id: &str, external_id: &str, gb: &str) -> (u64, Value) {
    let before = app.state.statements.get();
    let body = app.purchase_raw(event_id, external_id, RESIDENTIAL, gb).await;
    (app.state.statements.get() - before, body)
}

/// On PostgreSQL a purchase reads its facts in one statement and writes in one call, paying or
/// not; when it paid, its answer then loads the accounts credited (the rules its decisions
/// name are those it read). On SQLite it runs in steps in one transaction, and these bound the
/// whole request.
const POSTGRES_FIRST_PURCHASE_STATEMENTS: u64 = 3;
const POSTGRES_LATER_PURCHASE_STATEMENTS: u64 = 2;
/// With its events: one statement reads the rewarded accounts' external ids, one writes them.
const SQLITE_FIRST_PURCHASE_STATEMENTS: u64 = 17;
const SQLITE_LATER_PURCHASE_STATEMENTS: u64 = 11;

#[tokio::test]
async fn a_purchase_is_two_statements_on_postgresql() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let (first, paid) = purchase_costs(&app, "evt-1", "acct-b", "10").await;
    assert_eq!(
        paid["data"]["recordPurchase"]["rewards"][0]["amount"], "150.00",
        "{paid:#}"
    );
    let (later, unpaid) = purchase_costs(&app, "evt-2", "acct-b", "10").await;
    assert_eq!(unpaid["data"]["recordPurchase"]["rewards"], json!([]), "{unpaid:#}");
    let (_, replayed_later) = purchase_costs(&app, "evt-2", "acct-b", "10").await;
    assert_eq!(
        replayed_later["data"]["recordPurchase"]["decisions"], unpaid["data"]["recordPurchase"]["decisions"],
        "a later purchase's decisions are stored as answered"
    );
    let (_, mut replayed) = purchase_costs(&app, "evt-1", "acct-b", "10").await;
    assert_eq!(
        replayed["data"]["recordPurchase"]["event"]["duplicate"], true,
        "{replayed:#}"
    );
    replayed["data"]["recordPurchase"]["event"]["duplicate"] = json!(false);
    assert_eq!(
        replayed["data"]["recordPurchase"], paid["data"]["recordPurchase"],
        "a retry is answered as the first time"
    );
    if postgres(&app) {
        assert_eq!(
            (first, later),
            (POSTGRES_FIRST_PURCHASE_STATEMENTS, POSTGRES_LATER_PURCHASE_STATEMENTS),
            "statements of a first and of a later purchase"
        );
    } else {
        assert!(
            first <= SQLITE_FIRST_PURCHASE_STATEMENTS && later <= SQLITE_LATER_PURCHASE_STATEMENTS,
            "a first purchase ran {first} statements, a later one {later}"
        );
    }
    app.assert_invariants().await;
}

/// The catalog and the chain acct-a → acct-b → acct-c, where acct-a's points balance has a
/// hold of 20 points that has just ended: something due.
async fn chain_with_a_hold_that_ended(app: &TestApp) {
    app.setup_catalog().await;
    app.chain().await;
    let referrer = app
        .sql_i64("SELECT id FROM accounts WHERE external_id = 'acct-a'")
        .await;
    reward_in(app, referrer, Unit::Points, "20.00", 3, None).await;
    app.state
        .clock
        .advance(chrono::Duration::days(3))
        .expect("the clock moves");
}

/// A reward into a balance with something due (here a hold that ended) comes after what is
/// due is settled: on PostgreSQL the call leaves such a purchase to the steps, having written
/// nothing, and the steps settle and pay.
#[tokio::test]
async fn a_purchase_paying_into_a_balance_with_something_due_settles_it_first() {
    let app = spawn_app().await;
    chain_with_a_hold_that_ended(&app).await;
    let (statements, paid) = purchase_costs(&app, "evt-due", "acct-b", "10").await;
    assert_eq!(
        paid["data"]["recordPurchase"]["rewards"][0]["amount"], "150.00",
        "{paid:#}"
    );
    if postgres(&app) {
        assert!(
            statements > POSTGRES_FIRST_PURCHASE_STATEMENTS,
            "the purchase took the steps: {statements} statements"
        );
    }
    let (available, pending, _) = app.balance("acct-a", "POINTS").await;
    assert_eq!((available.as_str(), pending.as_str()), ("170.00", "0.00"));
    app.assert_invariants().await;
}

/// The statements one ClaimReward ran, and its body.
async fn claim_costs(app: &TestApp, external_id: &str, provider_id: &str, key: &str) -> (u64, Value) {
    let before = app.state.statements.get();
    let body = app.claim_raw(external_id, provider_id, Some(key)).await;
    (app.state.statements.get() - before, body)
}

/// On SQLite the claim is a transaction of steps (settings, account, provider, the claim, the
/// debit and its lots, its event, the balance); a regression in round trips shows there too.
const SQLITE_CLAIM_STATEMENTS: u64 = 11;

#[tokio::test]
async fn every_answer_to_a_claim_is_one_statement_on_postgresql() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "30").await;
    let account = customer(&app, "acct-s").await;
    reward_in(&app, account, Unit::Points, "100.00", 0, None).await;
    let most = |sqlite: u64| if postgres(&app) { 1 } else { sqlite };

    let (claimed, body) = claim_costs(&app, "acct-s", &provider_id, "k-1").await;
    assert!(error_codes(&body).is_empty(), "{body:#}");
    assert_eq!(body["data"]["claimReward"]["balance"]["available"], "70.00", "{body:#}");
    assert_eq!(
        body["data"]["claimReward"]["claim"]["provider"]["id"], provider_id,
        "{body:#}"
    );
    assert!(
        claimed <= most(SQLITE_CLAIM_STATEMENTS),
        "a claim ran {claimed} statements"
    );
    // The bounds above hold for a statement the counter misses too; this one does not.
    assert!(claimed >= 1, "the statement counter must count the claim's statement");

    let (replayed, again) = claim_costs(&app, "acct-s", &provider_id, "k-1").await;
    assert_eq!(again["data"], body["data"], "a retry answers the first claim");
    assert!(
        replayed <= most(SQLITE_CLAIM_STATEMENTS),
        "a retry ran {replayed} statements"
    );

    let other = app.upsert_provider("other", "Other Proxies", Some("10")).await;
    let (conflicted, reused) = claim_costs(&app, "acct-s", &other, "k-1").await;
    assert_error_code(&reused, "IDEMPOTENCY_CONFLICT");
    assert!(
        conflicted <= most(SQLITE_CLAIM_STATEMENTS),
        "a reused key ran {conflicted} statements"
    );

    app.claim("acct-s", &provider_id, Some("k-2")).await;
    app.claim("acct-s", &provider_id, Some("k-3")).await;
    let (refused, poor) = claim_costs(&app, "acct-s", &provider_id, "k-4").await;
    assert_error_code(&poor, "INSUFFICIENT_BALANCE");
    assert!(
        refused <= most(SQLITE_CLAIM_STATEMENTS),
        "a refusal ran {refused} statements"
    );
    assert_eq!(app.available_points("acct-s").await, "10.00");

    app.update_settings(json!({ "maxPendingClaims": 1 })).await;
    app.set_redemption_rate(PROVIDER, "1").await;
    let (limited, over) = claim_costs(&app, "acct-s", &provider_id, "k-5").await;
    assert_error_code(&over, "CLAIM_LIMIT");
    assert!(
        limited <= most(SQLITE_CLAIM_STATEMENTS),
        "a limit ran {limited} statements"
    );
    assert_eq!(app.count("claims").await, 3, "refusals leave no claim");
    app.assert_invariants().await;
}

/// A balance with something due (here a hold that ended) is settled before the claim spends
/// it: on PostgreSQL the claim then takes the steps, and the matured reward pays for it.
#[tokio::test]
async fn a_claim_on_the_day_a_hold_ends_spends_it() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "30").await;
    let account = customer(&app, "acct-h").await;
    reward_in(&app, account, Unit::Points, "20.00", 0, None).await;
    reward_in(&app, account, Unit::Points, "40.00", 3, None).await;
    let (_, early) = claim_costs(&app, "acct-h", &provider_id, "k-early").await;
    assert_error_code(&early, "INSUFFICIENT_BALANCE");
    app.state
        .clock
        .advance(chrono::Duration::days(3))
        .expect("the clock moves");
    let claimed = app.claim("acct-h", &provider_id, Some("k-due")).await;
    assert_eq!(claimed["balance"]["available"], "30.00", "{claimed:#}");
    app.assert_invariants().await;
}

/// 200 claims at once on one account whose points are spread over lots of uneven sizes, some
/// expiring, sent to three instances on one database (within an instance claims of one account
/// take turns; across instances only the database keeps them apart): exactly as many succeed as
/// the balance covers, the rest are refused with INSUFFICIENT_BALANCE, every claim's lot
/// allocations add up to its cost, lots are taken soonest expiry first, and `check` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_claims_on_one_account_spend_exactly_the_balance() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "4").await;
    let account = customer(&app, "acct-hot").await;
    // 450 points: 112 claims of 4, and 2 left over. The expiring lots go first.
    for (value, expires) in [
        ("45.00", None),
        ("105.00", Some(90)),
        ("150.00", None),
        ("60.00", Some(30)),
        ("90.00", None),
    ] {
        reward_in(&app, account, Unit::Points, value, 0, expires).await;
    }
    let query = app.op("customer", "ClaimReward");
    let vars = (0..200)
        .map(|i| json!({ "input": { "providerId": provider_id, "idempotencyKey": format!("hot-{i}") } }))
        .collect();
    let instances = [
        app.address.clone(),
        another_instance(&app).await,
        another_instance(&app).await,
    ];
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-hot"), &query, vars).await;

    let claimed = bodies.iter().filter(|b| error_codes(b).is_empty()).count();
    let refused = bodies
        .iter()
        .filter(|b| error_codes(b) == vec!["INSUFFICIENT_BALANCE".to_owned()])
        .count();
    assert_eq!((claimed, refused), (112, 88), "claimed and refused");
    assert_eq!(app.available_points("acct-hot").await, "2.00");
    assert_eq!(app.count("claims").await, 112, "refused claims leave no row");
    let short = app
        .sql_i64(
            "SELECT COUNT(*) FROM ledger_entries e WHERE e.kind = 'CLAIM' AND -e.amount <> \
             (SELECT COALESCE(SUM(a.amount), 0) FROM lot_allocations a WHERE a.debit_entry_id = e.id)",
        )
        .await;
    assert_eq!(short, 0, "every claim's allocations add up to its cost");
    // The two expiring lots were spent before the others, the sooner one first.
    let left_in_expiring = app
        .sql_i64("SELECT COUNT(*) FROM ledger_entries WHERE expires_at IS NOT NULL AND remaining > 0")
        .await;
    assert_eq!(left_in_expiring, 0, "the expiring lots are spent first");
    app.assert_invariants().await;
}

/// Holds the lock of `external_id`'s points balance, as another instance's claim would, while
/// `claims` are sent to the test's server: the first alone, until its statement reached the
/// database (and waits there on the lock), then the rest at once, which queue in the account's
/// lane. The lock goes after they had time to queue. Returns the answers, the first's first, and
/// the statements the server ran meanwhile.
async fn claims_behind_a_locked_balance(app: &TestApp, external_id: &str, claims: Vec<Value>) -> (Vec<Value>, u64) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let lock = app.state.db.begin().await.expect("a transaction");
    lock.execute_unprepared(&format!(
        "SELECT 1 FROM balances WHERE unit = 'POINTS' AND account_id = \
         (SELECT id FROM accounts WHERE external_id = '{external_id}') FOR UPDATE"
    ))
    .await
    .expect("the balance is locked");
    let query = app.op("customer", "ClaimReward");
    let token = app.customer(external_id);
    let before = app.state.statements.get();
    let mut claims = claims.into_iter();
    let first_vars = claims.next().expect("a first claim");
    let first = post_graphql(&app.client, &app.address, Some(&token), &query, first_vars);
    let the_rest_behind_it = async {
        until_statements(app, before + 1, "the first claim's statement reaches the database").await;
        send_then_release(app, &token, &query, claims.collect(), lock).await
    };
    let ((_, first), rest) = tokio::join!(first, the_rest_behind_it);
    let mut answers = vec![first];
    answers.extend(rest);
    (answers, app.state.statements.get() - before)
}

/// Sends `variables` at once, and ends `lock` once they had time to queue behind it.
async fn send_then_release(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Vec<Value>,
    lock: sea_orm::DatabaseTransaction,
) -> Vec<Value> {
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        lock.commit().await.expect("the lock goes");
    };
    let (answers, ()) = tokio::join!(send_concurrently(app, token, query, variables), release);
    answers
}

/// A server on PostgreSQL whose provider's claim costs 4 points, and that provider's id; `None`
/// on SQLite, where claims are not batched (its writers take turns on one connection anyway).
async fn postgres_store_at_4() -> Option<(TestApp, String)> {
    let app = spawn_app().await;
    if !postgres(&app) {
        return None;
    }
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "4").await;
    Some((app, provider_id))
}

fn claim_vars(provider_id: &str, key: &str) -> Value {
    json!({ "input": { "providerId": provider_id, "idempotencyKey": key } })
}

/// On PostgreSQL the claims of one account that waited for their turn in the instance go to the
/// database together, in one statement and one commit, and each is answered as if alone: a
/// claim, a retry of a key in the same batch answered with the same claim, a key reused for
/// another provider refused, a provider that does not exist refused. Without the batch these 26
/// claims are 26 statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_that_waited_on_one_account_are_one_statement_and_each_is_answered_alone() {
    let Some((app, provider_id)) = postgres_store_at_4().await else {
        return;
    };
    let other_provider = app.upsert_provider("other", "Other data", Some("8")).await;
    let account = customer(&app, "acct-lane").await;
    reward_in(&app, account, Unit::Points, "500.00", 0, None).await;
    let mut claims: Vec<Value> = (0..22).map(|i| claim_vars(&provider_id, &format!("k-{i}"))).collect();
    claims.push(claim_vars(&provider_id, "k-5"));
    claims.push(claim_vars(&other_provider, "k-7"));
    claims.push(claim_vars("prv_999999", "k-missing"));
    claims.push(claim_vars(&other_provider, "k-other"));
    let (answers, statements) = claims_behind_a_locked_balance(&app, "acct-lane", claims).await;
    assert_eq!(statements, 2, "the first claim alone, then the 25 that waited together");

    let claim_id = |body: &Value| body["data"]["claimReward"]["claim"]["id"].clone();
    let answered = answers.iter().filter(|b| error_codes(b).is_empty()).count();
    let claims: std::collections::HashSet<String> = answers
        .iter()
        .filter_map(|b| claim_id(b).as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        (answered, claims.len()),
        (24, 23),
        "k-0..k-21 but the k-7 that lost, the retry of k-5, k-other: {answers:#?}"
    );
    assert_eq!(
        claim_id(&answers[5]),
        claim_id(&answers[22]),
        "a retry in the batch answers the first claim"
    );
    let k7_codes = [error_codes(&answers[7]), error_codes(&answers[23])];
    assert!(
        k7_codes.contains(&vec![]) && k7_codes.contains(&vec!["IDEMPOTENCY_CONFLICT".to_owned()]),
        "one k-7 claims, the other is refused: {k7_codes:?}"
    );
    assert_error_code(&answers[24], "NOT_FOUND");
    assert_eq!(
        answers[25]["data"]["claimReward"]["claim"]["points"], "8.00",
        "{:#}",
        answers[25]
    );
    // 21 claims of 4 and one of 8 besides the k-7 that won (4 or 8).
    let spent = 500
        - app
            .available_points("acct-lane")
            .await
            .trim_end_matches(".00")
            .parse::<i64>()
            .unwrap();
    assert!(spent == 21 * 4 + 8 + 4 || spent == 21 * 4 + 8 + 8, "spent {spent}");
    assert_eq!(app.count("claims").await, 23);
    app.assert_invariants().await;
}

/// A batch whose statement fails as a whole wrote nothing, and each of its claims is then made
/// alone, so that one claim's failure stays its own. Here the account's lots hold less than
/// its balance says (written so by hand), so the function raises for the claim that finds them
/// empty: of 10 claims, the lots' 5 succeed and only the other 5 fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_batch_fails_as_a_whole_its_claims_are_made_one_by_one() {
    let Some((app, provider_id)) = postgres_store_at_4().await else {
        return;
    };
    let account = customer(&app, "acct-short").await;
    reward_in(&app, account, Unit::Points, "100.00", 0, None).await;
    let shortened = sea_orm::ConnectionTrait::execute_unprepared(
        &app.state.db,
        &format!("UPDATE ledger_entries SET remaining = 20000000 WHERE account_id = {account} AND remaining > 0"),
    )
    .await
    .expect("the lot is made short");
    assert_eq!(shortened.rows_affected(), 1, "the account has one lot");
    let claims = (0..10).map(|i| claim_vars(&provider_id, &format!("s-{i}"))).collect();
    let (answers, statements) = claims_behind_a_locked_balance(&app, "acct-short", claims).await;
    let codes: Vec<Vec<String>> = answers.iter().map(error_codes).collect();
    let claimed = codes.iter().filter(|c| c.is_empty()).count();
    let failed = codes.iter().filter(|c| *c == &vec!["INTERNAL".to_owned()]).count();
    assert_eq!((claimed, failed), (5, 5), "{codes:?}");
    assert_eq!(
        statements,
        1 + 1 + 9,
        "the first alone, the batch, then each of the batch alone"
    );
    assert_eq!(app.count("claims").await, 5, "the failed batch left nothing");
}

/// Batches of purchases the server writes at once (`PURCHASE_WRITERS`): that many purchases
/// held in the database keep every writer busy, and the purchases that come meanwhile wait.
const PURCHASE_WRITERS: usize = 2;

/// Holds a lock on `acct-held`'s row, as another instance's transaction could, while
/// `PURCHASE_WRITERS` purchases of that account are sent one after the other, each until its
/// writes reached the database (and wait there on the lock): every writer is then busy. Then
/// `purchases` are sent one after the other and queue in that order; the lock goes once they
/// all wait. Returns their answers, in order, and the statements the server ran for all of them.
async fn purchases_behind_busy_writers(app: &TestApp, purchases: Vec<Value>) -> (Vec<Value>, u64) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    customer(app, "acct-held").await;
    let lock = app.state.db.begin().await.expect("a transaction");
    lock.execute_unprepared("SELECT 1 FROM accounts WHERE external_id = 'acct-held' FOR UPDATE")
        .await
        .expect("the account is locked");
    let query = app.op("integration", "RecordPurchase");
    let token = app.service();
    let before = app.state.statements.get();
    let mut held = Vec::new();
    for i in 0..PURCHASE_WRITERS {
        let vars = TestApp::purchase_input(&format!("evt-held-{i}"), "acct-held", RESIDENTIAL, "1");
        held.push(spawn_request(app, &token, &query, vars));
        // Its facts read, and its call waiting on the lock.
        let held_so_far = 2 * (i as u64 + 1);
        until_statements(
            app,
            before + held_so_far,
            "the held purchase's call reaches the database",
        )
        .await;
    }
    // One after the other, each queued before the next is sent: they wait in the order listed.
    let mut queued = Vec::new();
    for vars in purchases {
        queued.push(spawn_request(app, &token, &query, vars));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    lock.commit().await.expect("the lock goes");
    let mut answers = Vec::new();
    for request in queued {
        answers.push(request.await.expect("a queued purchase's request").1);
    }
    for held in held {
        let (_, body) = held.await.expect("the held purchase's request");
        assert!(error_codes(&body).is_empty(), "{body:#}");
    }
    (answers, app.state.statements.get() - before)
}

/// A server on PostgreSQL with the catalog and the chain acct-a → acct-b → acct-c; `None` on
/// SQLite, where purchases are not batched.
async fn postgres_chain() -> Option<TestApp> {
    let app = spawn_app().await;
    if !postgres(&app) {
        return None;
    }
    app.setup_catalog().await;
    app.chain().await;
    Some(app)
}

/// On PostgreSQL the purchases that waited for a writer go to the database together: their
/// facts in one statement, their writes in one call and one commit, and each is answered as if
/// alone: a first purchase that pays (and a second of the same account, which then is not
/// first), another referee's first purchase, later purchases, an unknown account, an unknown
/// product. Written one by one, each purchase would be its own statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_that_waited_for_a_writer_are_two_statements_and_each_is_answered_alone() {
    let Some(app) = postgres_chain().await else {
        return;
    };
    let mut purchases = vec![
        TestApp::purchase_input("evt-b-1", "acct-b", RESIDENTIAL, "10"),
        TestApp::purchase_input("evt-b-2", "acct-b", RESIDENTIAL, "10"),
        TestApp::purchase_input("evt-c-1", "acct-c", RESIDENTIAL, "4"),
        TestApp::purchase_input("evt-nobody", "acct-nobody", RESIDENTIAL, "1"),
        TestApp::purchase_input("evt-no-product", "acct-a", "no-such-product", "1"),
    ];
    purchases.extend((0..15).map(|i| TestApp::purchase_input(&format!("evt-a-{i}"), "acct-a", RESIDENTIAL, "1")));
    let (answers, statements) = purchases_behind_busy_writers(&app, purchases).await;
    assert_eq!(
        statements,
        2 * PURCHASE_WRITERS as u64 + 2 + 2,
        "two for each held purchase, two for the 20 that waited, and one for each paying answer's \
         credited account"
    );

    let recorded = |body: &Value| body["data"]["recordPurchase"].clone();
    // Either of acct-b's two came first (they were sent at once): that one pays, the other not.
    let (first, later) = match recorded(&answers[0])["rewards"].as_array().map(Vec::len) {
        Some(1) => (recorded(&answers[0]), recorded(&answers[1])),
        _ => (recorded(&answers[1]), recorded(&answers[0])),
    };
    assert_eq!(first["rewards"][0]["amount"], "150.00", "{first:#}");
    assert_eq!(first["rewards"][0]["account"]["externalId"], "acct-a", "{first:#}");
    assert_eq!(later["rewards"], json!([]), "the other is not first: {later:#}");
    assert_eq!(later["decisions"][0]["outcome"], "SKIPPED", "{later:#}");
    let c1 = recorded(&answers[2]);
    assert_eq!(c1["rewards"][0]["amount"], "60.00", "{c1:#}");
    assert_error_code(&answers[3], "NOT_FOUND");
    assert_error_code(&answers[4], "NOT_FOUND");
    for answer in &answers[5..] {
        assert!(error_codes(answer).is_empty(), "{answer:#}");
        assert_eq!(recorded(answer)["event"]["duplicate"], false, "{answer:#}");
    }
    assert_eq!(app.available_points("acct-a").await, "150.00");
    assert_eq!(app.available_points("acct-b").await, "60.00");
    assert_eq!(
        app.count("events").await,
        PURCHASE_WRITERS as i64 + 18,
        "the held ones and all but the two refused"
    );
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM referrals WHERE status = 'QUALIFIED'")
            .await,
        2
    );
    app.assert_invariants().await;
}

/// A batch of purchases whose call fails as a whole wrote nothing, and each purchase is then
/// recorded alone, so that one purchase's failure stays its own. Here the referrer's balance has
/// a hold that ended, which the call leaves to the steps by failing: the steps settle it and
/// pay, the other purchases are recorded, and a purchase sent twice in the batch is recorded
/// once and answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_batch_of_purchases_fails_as_a_whole_each_is_recorded_alone() {
    let app = spawn_app().await;
    if !postgres(&app) {
        return;
    }
    chain_with_a_hold_that_ended(&app).await;
    let mut purchases: Vec<Value> = (0..6)
        .map(|i| TestApp::purchase_input(&format!("evt-c-{i}"), "acct-c", RESIDENTIAL, "1"))
        .collect();
    purchases.insert(2, TestApp::purchase_input("evt-b-1", "acct-b", RESIDENTIAL, "10"));
    purchases.push(TestApp::purchase_input("evt-c-1", "acct-c", RESIDENTIAL, "1"));
    let (answers, _) = purchases_behind_busy_writers(&app, purchases).await;
    for answer in &answers {
        assert!(error_codes(answer).is_empty(), "{answer:#}");
    }
    let recorded = |i: usize| answers[i]["data"]["recordPurchase"].clone();
    assert_eq!(recorded(2)["rewards"][0]["amount"], "150.00", "{:#}", recorded(2));
    let paid_by_c: Vec<Value> = [0, 1, 3, 4, 5, 6, 7]
        .into_iter()
        .flat_map(|i| recorded(i)["rewards"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        paid_by_c.len(),
        1,
        "acct-c's first purchase, whichever it was, pays: {paid_by_c:#?}"
    );
    assert_eq!(paid_by_c[0]["amount"], "15.00");
    // The purchase sent twice: one of the two records it, the other is answered the same.
    let (mut one, mut other) = (recorded(1), recorded(7));
    let duplicates = [&one, &other]
        .iter()
        .filter(|r| r["event"]["duplicate"] == true)
        .count();
    assert_eq!(duplicates, 1, "{one:#} {other:#}");
    one["event"]["duplicate"] = json!(false);
    other["event"]["duplicate"] = json!(false);
    assert_eq!(one, other, "the purchase sent twice is answered as the first time");
    assert_eq!(
        app.available_points("acct-a").await,
        "170.00",
        "the hold settled, then paid"
    );
    assert_eq!(app.count("events").await, PURCHASE_WRITERS as i64 + 7);
    app.assert_invariants().await;
}

/// Of one account's purchases in one batch the earliest is recorded first, whatever the order
/// they came in: here the one that happened an hour later is sent first (and has the smaller
/// eventId), and yet the earlier one is the account's first purchase and is paid, and nothing is
/// corrected. (In the order they came, the later one would be first, the earlier one would then
/// fail the batch's call and, recorded alone, correct the first purchase: a take-back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_one_accounts_purchases_in_a_batch_the_earliest_is_recorded_first() {
    let Some(app) = postgres_chain().await else {
        return;
    };
    let now = app.state.clock.now();
    let timed = |event_id: &str, hours_ago: i64, gb: &str| {
        let mut vars = TestApp::purchase_input(event_id, "acct-b", RESIDENTIAL, gb);
        vars["input"]["occurredAt"] = json!((now - chrono::Duration::hours(hours_ago)).to_rfc3339());
        vars
    };
    // The later one also has the smaller eventId: neither order decides for time.
    let purchases = vec![timed("evt-1", 1, "2"), timed("evt-2", 2, "10")];
    let (answers, _) = purchases_behind_busy_writers(&app, purchases).await;
    let (later, earlier) = (
        answers[0]["data"]["recordPurchase"].clone(),
        answers[1]["data"]["recordPurchase"].clone(),
    );
    assert_eq!(earlier["rewards"][0]["amount"], "150.00", "{earlier:#}");
    assert_eq!(later["rewards"], json!([]), "{later:#}");
    assert_eq!(app.count("take_backs").await, 0, "nothing was corrected");
    assert_eq!(app.available_points("acct-a").await, "150.00");
    app.assert_invariants().await;
}
