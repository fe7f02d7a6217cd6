//! On PostgreSQL, the dashboard's reads that wait for a reader go to the database together, one
//! statement per kind of read, and each request still answers as if it had read alone. The
//! readers are held by a lock on a table the reads need, the reads queue behind them, and the
//! lock goes.

use crate::helpers::*;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};

/// Batches of one kind of read in flight at once (`READERS` in the server's dashboard batches).
const READERS: usize = 2;

/// The chain acct-a → acct-b → acct-c, five more friends of acct-a, and purchases that pay
/// acct-a and acct-b: accounts with and without a referrer, friends, earnings and history.
/// `None` on SQLite, where reads are not batched.
async fn postgres_friends() -> Option<TestApp> {
    let app = spawn_app().await;
    if !postgres(&app) {
        return None;
    }
    app.setup_catalog().await;
    let (a, _) = app.chain().await;
    for friend in ["acct-d", "acct-e", "acct-f", "acct-g", "acct-h"] {
        app.register(friend, Some(&format!("Friend {friend}")), Some(&a)).await;
    }
    for (event, account) in [
        ("evt-b", "acct-b"),
        ("evt-c", "acct-c"),
        ("evt-d", "acct-d"),
        ("evt-e", "acct-e"),
    ] {
        app.purchase(event, account, RESIDENTIAL, "10").await;
    }
    Some(app)
}

/// Each of `accounts`' answers to `query`, read one after the other (each alone), every one
/// without errors.
async fn read_alone(app: &TestApp, query: &str, accounts: &[&str]) -> Vec<Value> {
    let answers = read_alone_or_failed(app, query, accounts).await;
    for body in &answers {
        assert!(error_codes(body).is_empty(), "{body:#}");
    }
    answers
}

/// Each of `accounts`' answers to `query`, read one after the other (each alone).
async fn read_alone_or_failed(app: &TestApp, query: &str, accounts: &[&str]) -> Vec<Value> {
    let mut answers = Vec::new();
    for account in accounts {
        let (_, body) = post_graphql(
            &app.client,
            &app.address,
            Some(&app.customer(account)),
            query,
            json!({}),
        )
        .await;
        answers.push(body);
    }
    answers
}

/// `accounts`' answers to `query` while `table` is locked: the first `READERS` sent one at a
/// time, each until `held` of its statements reached the database (where the last waits), then
/// the rest one at a time, each until `queued` of its statements were sent (and its next read
/// queued); then the lock goes. The answers in the order of `accounts`, and the statements they
/// all ran.
async fn read_behind_busy_readers(
    app: &TestApp,
    query: &str,
    accounts: &[&str],
    table: &str,
    (held, queued): (u64, u64),
) -> (Vec<Value>, u64) {
    let lock = app.state.db.begin().await.expect("a transaction");
    lock.execute_unprepared(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("the table is locked");
    let before = app.state.statements.get();
    let mut requests = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let sent = app.state.statements.get();
        requests.push(spawn_request(app, &app.customer(account), query, json!({})));
        let statements = if i < READERS { held } else { queued };
        until_statements(app, sent + statements, "the read's statements reach the database").await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    lock.commit().await.expect("the lock goes");
    let mut answers = Vec::new();
    for request in requests {
        let (_, body) = request.await.expect("a read's request");
        answers.push(body);
    }
    (answers, app.state.statements.get() - before)
}

/// Dashboards whose pages waited for a reader read them together: each kind of page (friends,
/// history) in one statement for all of them, and each Dashboard answers what it answers alone:
/// a referrer with friends and earnings, its friends (one with friends of its own), an account
/// with a history and no friends, the same account twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboards_that_waited_for_a_reader_read_their_pages_together_and_each_answers_as_alone() {
    let Some(app) = postgres_friends().await else {
        return;
    };
    let dashboard = app.op("customer", "Dashboard");
    let accounts = [
        "acct-b", "acct-a", "acct-c", "acct-d", "acct-e", "acct-f", "acct-g", "acct-h", "acct-a", "acct-c",
    ];
    let alone = read_alone(&app, &dashboard, &accounts).await;
    assert_eq!(
        alone[1]["data"]["me"]["referredFriends"]["totalCount"], 6,
        "{:#}",
        alone[1]
    );

    // Both pages read a table the lock holds: the held Dashboards' pages wait in the database
    // (3 statements each), the others' account reads go at once and their pages queue.
    let (together, statements) = read_behind_busy_readers(&app, &dashboard, &accounts, "ledger_entries", (3, 1)).await;
    assert_eq!(together, alone, "each Dashboard answers what it answers alone");
    let queued = (accounts.len() - READERS) as u64;
    assert_eq!(
        statements,
        3 * READERS as u64 + queued + 2,
        "the held Dashboards' 3 statements each, the others' account reads, then one statement for \
         the friends' pages that waited and one for their histories"
    );
}

/// Accounts that waited for a reader are read in one statement, each with its referral,
/// referrer and balances as it would be alone, and an account not registered reads as none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_that_waited_for_a_reader_are_read_in_one_statement() {
    let Some(app) = postgres_friends().await else {
        return;
    };
    let me = "query Me { me { id externalId referralCode referral { id status referrer { displayName } } \
              points: balance(unit: POINTS) { available pending lifetimeEarned } } }";
    let accounts = [
        "acct-c",
        "acct-a",
        "acct-b",
        "acct-none",
        "acct-d",
        "acct-a",
        "acct-h",
        "acct-e",
    ];
    let alone = read_alone(&app, me, &accounts).await;
    assert_eq!(alone[3]["data"]["me"], Value::Null, "{:#}", alone[3]);
    assert_eq!(
        s(&alone[0], "/data/me/referral/referrer/displayName"),
        "Bo*** B.",
        "{:#}",
        alone[0]
    );

    let (together, statements) = read_behind_busy_readers(&app, me, &accounts, "accounts", (1, 0)).await;
    assert_eq!(together, alone, "each account reads as it reads alone");
    assert_eq!(
        statements,
        READERS as u64 + 1,
        "one statement per held read, then one for all that waited"
    );
}

/// A batch whose statement fails as a whole is read again one read at a time, so that one
/// read's failure stays its own: a token whose account id holds a NUL (which PostgreSQL's JSON
/// refuses, so the batch's list fails, and its text refuses too, so that read fails alone)
/// queued between two accounts that answer as they do alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_fails_as_a_whole_is_read_one_by_one() {
    let Some(app) = postgres_friends().await else {
        return;
    };
    let me = "query Me { me { id externalId referralCode } }";
    let accounts = ["acct-a", "acct-b", "acct-c", "acct\u{0}nul", "acct-d"];
    let alone = read_alone_or_failed(&app, me, &accounts).await;
    assert!(!error_codes(&alone[3]).is_empty(), "{:#}", alone[3]);

    let (together, statements) = read_behind_busy_readers(&app, me, &accounts, "accounts", (1, 0)).await;
    assert_eq!(together, alone, "each read answers as it answers alone");
    assert_eq!(
        statements,
        READERS as u64 + 1 + 3,
        "one statement per held read, the batch that failed, then each of its reads alone"
    );
}
