//! The ledger and the clock: holds that mature, lots that expire, rewards taken back, debt.
//! The test moves the application's clock; balances are read through the API (BalanceDetails,
//! HistoryPage), spends go through it (ApplyCredit, ClaimReward, CompleteClaim).
//!
//! One test pays its held, expiring reward through a rule (`holdDays`, `expiresAfterDays`).
//! The others post rewards through the service (`ledger::post_credit` on the test's database)
//! to set up exact lots (several per account, amounts to the cent), and take them back through
//! `ledger::take_back`, until the refund flow that calls it (another branch) is merged.

use crate::helpers::*;
use chrono::Duration;
use entity::enums::{EntryKind, Unit};
use entity::ledger_entry;
use referral_server::amount::Amount;
use referral_server::db::begin_write;
use referral_server::service::ledger::{self, NewCredit, Settled, TakeBack};
use sea_orm::{ActiveEnum, EntityTrait};
use serde_json::{Value, json};

pub(crate) fn amount(text: &str) -> Amount {
    Amount::parse(text).expect("an amount")
}

async fn account_id(app: &TestApp, external_id: &str) -> i64 {
    app.sql_i64(&format!(
        "SELECT id FROM accounts WHERE external_id = '{}'",
        external_id.replace('\'', "''")
    ))
    .await
}

/// A customer with nothing yet.
pub(crate) async fn customer(app: &TestApp, external_id: &str) -> i64 {
    app.register(external_id, Some("Tess Time"), None).await;
    account_id(app, external_id).await
}

/// A reward of `value` CREDIT posted now, held `hold_days` (0: available at once), expiring
/// `expires_after_days` after it becomes available.
pub(crate) async fn reward(
    app: &TestApp,
    account: i64,
    value: &str,
    hold_days: i64,
    expires_after_days: Option<i64>,
) -> ledger_entry::Model {
    reward_in(app, account, Unit::Credit, value, hold_days, expires_after_days).await
}

pub(crate) async fn reward_in(
    app: &TestApp,
    account: i64,
    unit: Unit,
    value: &str,
    hold_days: i64,
    expires_after_days: Option<i64>,
) -> ledger_entry::Model {
    let now = app.state.clock.now();
    let available_at = (hold_days > 0).then(|| now + Duration::days(hold_days));
    let credit = NewCredit {
        account_id: account,
        unit,
        amount: amount(value),
        kind: EntryKind::Reward,
        description: format!("Test reward of {value}"),
        event_id: None,
        referral_id: None,
        rule_id: None,
        occurrence: None,
        rule_snapshot: None,
        available_at,
        expires_at: expires_after_days.map(|days| available_at.unwrap_or(now) + Duration::days(days)),
        spend_limit: None,
    };
    let txn = begin_write(&app.state.db).await.expect("a transaction");
    let entry = ledger::post_credit(&txn, credit, now)
        .await
        .expect("the credit posts")
        .expect("no rule, so never a duplicate");
    txn.commit().await.expect("commit");
    entry
}

/// Takes back `value` of an entry, now; the entries written or voided.
pub(crate) async fn take_back(app: &TestApp, entry_id: i64, value: Amount) -> Vec<ledger_entry::Model> {
    let entry = ledger_entry::Entity::find_by_id(entry_id)
        .one(&app.state.db)
        .await
        .expect("reads")
        .expect("the entry exists");
    let txn = begin_write(&app.state.db).await.expect("a transaction");
    let written = ledger::take_back(
        &txn,
        TakeBack {
            entry: &entry,
            amount: value,
            description: "Refund of the purchase that earned it".to_owned(),
            event_id: None,
        },
        app.state.clock.now(),
    )
    .await
    .expect("the take-back is written");
    txn.commit().await.expect("commit");
    written
}

pub(crate) fn advance(app: &TestApp, days: i64) {
    app.state
        .clock
        .advance(Duration::days(days))
        .expect("the clock moves forward");
}

/// One pass of the background task's work, now.
pub(crate) async fn settle(app: &TestApp) -> Settled {
    ledger::settle_due(&app.state.db, app.state.clock.now(), 100)
        .await
        .expect("settling runs")
}

/// The customer's CREDIT balance as BalanceDetails shows it.
async fn credit_balance(app: &TestApp, external_id: &str) -> Value {
    let data = app
        .run_ok(
            Some(&app.customer(external_id)),
            "customer",
            "BalanceDetails",
            json!({}),
        )
        .await;
    data["me"]["credit"].clone()
}

/// (available, pending, lifetimeEarned, debt) of a Balance object.
fn figures(balance: &Value) -> (String, String, String, String) {
    (
        s(balance, "/available").to_owned(),
        s(balance, "/pending").to_owned(),
        s(balance, "/lifetimeEarned").to_owned(),
        s(balance, "/debt").to_owned(),
    )
}

fn four(available: &str, pending: &str, lifetime: &str, debt: &str) -> (String, String, String, String) {
    (available.into(), pending.into(), lifetime.into(), debt.into())
}

/// The stored row's (available, pending, debt), in millionths: what is written, not what a
/// read computes.
async fn stored(app: &TestApp, account: i64) -> (i64, i64, i64) {
    let column = |name: &str| {
        format!("SELECT CAST({name} AS BIGINT) FROM balances WHERE account_id = {account} AND unit = 'CREDIT'")
    };
    (
        app.sql_i64(&column("available")).await,
        app.sql_i64(&column("pending")).await,
        app.sql_i64(&column("debt")).await,
    )
}

async fn entry_status(app: &TestApp, id: i64) -> String {
    ledger_entry::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .expect("reads")
        .map(|e| e.status.to_value())
        .expect("the entry exists")
}

/// The history's (kind, amount, status), oldest first.
async fn history(app: &TestApp, external_id: &str) -> Vec<(String, String, String)> {
    let mut entries: Vec<_> = app
        .history(external_id)
        .await
        .iter()
        .map(|e| {
            (
                s(e, "/kind").to_owned(),
                s(e, "/amount").to_owned(),
                s(e, "/status").to_owned(),
            )
        })
        .collect();
    entries.reverse();
    entries
}

fn row(kind: &str, amount: &str, status: &str) -> (String, String, String) {
    (kind.into(), amount.into(), status.into())
}

#[tokio::test]
async fn a_held_reward_is_pending_then_available_on_its_day_before_the_task_runs() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-h").await;
    let held = reward(&app, account, "20.00", 30, None).await;

    let balance = credit_balance(&app, "acct-h").await;
    assert_eq!(figures(&balance), four("0.00", "20.00", "0.00", "0.00"), "{balance:#}");
    assert_eq!(history(&app, "acct-h").await, vec![row("REWARD", "20.00", "PENDING")]);
    // Nothing due yet: spending finds nothing available.
    let refused = app.apply_credit_raw("inv-early", "acct-h", "1.00").await;
    assert_eq!(refused["data"]["applyCredit"]["applied"], "0.00", "{refused:#}");

    advance(&app, 29);
    assert_eq!(
        figures(&credit_balance(&app, "acct-h").await),
        four("0.00", "20.00", "0.00", "0.00")
    );

    advance(&app, 1);
    // Day 30: the read shows it available, though nothing has been written yet.
    assert_eq!(
        figures(&credit_balance(&app, "acct-h").await),
        four("20.00", "0.00", "20.00", "0.00")
    );
    assert_eq!(entry_status(&app, held.id).await, "PENDING");
    assert_eq!(stored(&app, account).await, (0, 20_000_000, 0));
    app.assert_invariants().await;

    // The background task's pass posts it: the same figures, now written.
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 0 });
    assert_eq!(entry_status(&app, held.id).await, "POSTED");
    assert_eq!(stored(&app, account).await, (20_000_000, 0, 0));
    assert_eq!(
        figures(&credit_balance(&app, "acct-h").await),
        four("20.00", "0.00", "20.00", "0.00")
    );
    assert_eq!(history(&app, "acct-h").await, vec![row("REWARD", "20.00", "POSTED")]);
    assert_eq!(settle(&app).await, Settled::default(), "nothing is due twice");
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_spend_on_the_day_a_hold_ends_can_use_it_before_the_task_runs() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-s").await;
    let held = reward(&app, account, "20.00", 30, None).await;
    advance(&app, 30);
    let applied = app.apply_credit("inv-1", "acct-s", "12.50").await;
    assert_eq!(applied["applied"], "12.50", "{applied:#}");
    assert_eq!(applied["remaining"], "7.50", "{applied:#}");
    // The spend settled the hold in its own transaction.
    assert_eq!(entry_status(&app, held.id).await, "POSTED");
    assert_eq!(stored(&app, account).await, (7_500_000, 0, 0));
    assert_eq!(settle(&app).await, Settled::default());
    app.assert_invariants().await;
}

#[tokio::test]
async fn what_is_left_of_a_lot_expires_on_its_day_with_an_expiry_entry() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-x").await;
    let expiring = reward(&app, account, "20.00", 0, Some(180)).await;
    let lasting = reward(&app, account, "3.00", 0, None).await;
    let expires_at = expiring.expires_at.expect("an expiry");
    // Spending takes from the lot that expires first.
    assert_eq!(app.apply_credit("inv-1", "acct-x", "5.00").await["applied"], "5.00");

    let balance = credit_balance(&app, "acct-x").await;
    assert_eq!(figures(&balance), four("18.00", "0.00", "23.00", "0.00"), "{balance:#}");
    assert_eq!(balance["expiringSoon"]["amount"], "15.00", "{balance:#}");
    assert_eq!(
        instant(&balance["expiringSoon"]["expiresAt"]),
        expires_at,
        "{balance:#}"
    );

    advance(&app, 179);
    let balance = credit_balance(&app, "acct-x").await;
    assert_eq!(figures(&balance), four("18.00", "0.00", "23.00", "0.00"), "{balance:#}");
    assert_eq!(balance["expiringSoon"]["amount"], "15.00", "{balance:#}");

    advance(&app, 1);
    // Day 180: the 15.00 left of the lot is gone from a read at once; the lot without expiry
    // stays, and nothing else expires.
    let balance = credit_balance(&app, "acct-x").await;
    assert_eq!(figures(&balance), four("3.00", "0.00", "23.00", "0.00"), "{balance:#}");
    assert!(balance["expiringSoon"].is_null(), "{balance:#}");
    assert_eq!(stored(&app, account).await.0, 18_000_000, "not written yet");

    // A spend never takes from the expired lot: of 10.00 asked, 3.00 is there.
    let applied = app.apply_credit("inv-2", "acct-x", "10.00").await;
    assert_eq!(applied["applied"], "3.00", "{applied:#}");
    assert_eq!(
        history(&app, "acct-x").await,
        vec![
            row("REWARD", "20.00", "POSTED"),
            row("REWARD", "3.00", "POSTED"),
            row("CREDIT_APPLIED", "-5.00", "POSTED"),
            row("EXPIRY", "-15.00", "POSTED"),
            row("CREDIT_APPLIED", "-3.00", "POSTED"),
        ]
    );
    let expiry_at = app
        .sql_i64(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries x \
             JOIN lot_allocations a ON a.debit_entry_id = x.id AND a.lot_entry_id = {} \
             WHERE x.kind = 'EXPIRY' AND x.amount = -15000000 AND a.amount = 15000000",
            expiring.id
        ))
        .await;
    assert_eq!(expiry_at, 1, "the EXPIRY entry is linked to its lot");
    let lot = ledger_entry::Entity::find_by_id(expiring.id)
        .one(&app.state.db)
        .await
        .expect("reads")
        .expect("the lot");
    assert_eq!(lot.remaining, Some(0));
    let untouched = ledger_entry::Entity::find_by_id(lasting.id)
        .one(&app.state.db)
        .await
        .expect("reads")
        .expect("the lot");
    assert_eq!(untouched.remaining, Some(0), "spent by the second invoice");
    app.assert_invariants().await;
}

#[tokio::test]
async fn the_background_task_expires_lots_and_stamps_the_expiry_with_its_day() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-e").await;
    let lot = reward(&app, account, "20.00", 0, Some(180)).await;
    advance(&app, 200);
    assert_eq!(settle(&app).await, Settled { matured: 0, expired: 1 });
    assert_eq!(stored(&app, account).await, (0, 0, 0));
    let stamped = ledger_entry::Entity::find()
        .all(&app.state.db)
        .await
        .expect("reads")
        .into_iter()
        .find(|e| e.kind == EntryKind::Expiry)
        .expect("an EXPIRY entry");
    assert_eq!(
        (stamped.amount, stamped.created_at),
        (-20_000_000, lot.expires_at.expect("expiry"))
    );
    assert_eq!(
        figures(&credit_balance(&app, "acct-e").await),
        four("0.00", "0.00", "20.00", "0.00")
    );
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_hold_with_an_expiry_expires_counted_from_when_it_became_available() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-he").await;
    reward(&app, account, "20.00", 30, Some(180)).await;
    advance(&app, 30);
    let balance = credit_balance(&app, "acct-he").await;
    assert_eq!(figures(&balance), four("20.00", "0.00", "20.00", "0.00"), "{balance:#}");
    // Matured only in the read: its expiry shows all the same.
    assert_eq!(balance["expiringSoon"]["amount"], "20.00", "{balance:#}");
    advance(&app, 180);
    // Day 210, the task never ran: matured on day 30, expired on day 210.
    let balance = credit_balance(&app, "acct-he").await;
    assert_eq!(figures(&balance), four("0.00", "0.00", "20.00", "0.00"), "{balance:#}");
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 1 });
    assert_eq!(stored(&app, account).await, (0, 0, 0));
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_reversal_beyond_the_balance_leaves_debt_that_the_next_reward_repays() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-d").await;
    let earned = reward(&app, account, "20.00", 0, None).await;
    assert_eq!(app.apply_credit("inv-1", "acct-d", "5.00").await["applied"], "5.00");

    // 20.00 taken back against 15.00 available: 15.00 taken, 5.00 owed.
    let written = take_back(&app, earned.id, amount("20.00")).await;
    let kinds: Vec<_> = written.iter().map(|e| (e.kind, e.amount)).collect();
    assert_eq!(
        kinds,
        vec![(EntryKind::Reversal, -20_000_000), (EntryKind::Debt, 5_000_000)]
    );
    assert_eq!(
        entry_status(&app, earned.id).await,
        "POSTED",
        "a posted reward is never edited"
    );
    assert_eq!(
        figures(&credit_balance(&app, "acct-d").await),
        four("0.00", "0.00", "0.00", "5.00")
    );
    app.assert_invariants().await;
    // Nothing is left to take back of it.
    assert!(take_back(&app, earned.id, amount("1.00")).await.is_empty());

    reward(&app, account, "20.00", 0, None).await;
    assert_eq!(
        figures(&credit_balance(&app, "acct-d").await),
        four("15.00", "0.00", "20.00", "0.00")
    );
    assert_eq!(
        history(&app, "acct-d").await,
        vec![
            row("REWARD", "20.00", "POSTED"),
            row("CREDIT_APPLIED", "-5.00", "POSTED"),
            row("REVERSAL", "-20.00", "POSTED"),
            row("DEBT", "5.00", "POSTED"),
            row("REWARD", "20.00", "POSTED"),
            row("DEBT", "-5.00", "POSTED"),
        ]
    );
    assert_eq!(stored(&app, account).await, (15_000_000, 0, 0));
    app.assert_invariants().await;
}

#[tokio::test]
async fn debt_is_repaid_by_a_hold_when_it_ends_even_before_the_task_runs() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-dh").await;
    let earned = reward(&app, account, "10.00", 0, None).await;
    assert_eq!(app.apply_credit("inv-1", "acct-dh", "10.00").await["applied"], "10.00");
    take_back(&app, earned.id, amount("10.00")).await;
    reward(&app, account, "4.00", 30, Some(60)).await;
    assert_eq!(
        figures(&credit_balance(&app, "acct-dh").await),
        four("0.00", "4.00", "0.00", "10.00")
    );
    advance(&app, 30);
    let balance = credit_balance(&app, "acct-dh").await;
    assert_eq!(figures(&balance), four("0.00", "0.00", "4.00", "6.00"), "{balance:#}");
    assert!(balance["expiringSoon"].is_null(), "all of it repaid debt: {balance:#}");
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 0 });
    assert_eq!(stored(&app, account).await, (0, 0, 6_000_000));
    app.assert_invariants().await;
}

#[tokio::test]
async fn forty_percent_taken_back_of_a_posted_reward_reverses_forty_percent() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-p").await;
    let earned = reward(&app, account, "20.00", 0, None).await;
    let share = ledger::share_of(amount("20.00"), amount("40.00"), amount("100.00"));
    assert_eq!(share, amount("8.00"));
    let written = take_back(&app, earned.id, share).await;
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].reverses_entry_id, Some(earned.id));
    assert_eq!(
        figures(&credit_balance(&app, "acct-p").await),
        four("12.00", "0.00", "12.00", "0.00")
    );
    // The rest, asked as more than is left, takes what is left.
    take_back(&app, earned.id, amount("20.00")).await;
    assert_eq!(
        figures(&credit_balance(&app, "acct-p").await),
        four("0.00", "0.00", "0.00", "0.00")
    );
    assert_eq!(
        history(&app, "acct-p").await,
        vec![
            row("REWARD", "20.00", "POSTED"),
            row("REVERSAL", "-8.00", "POSTED"),
            row("REVERSAL", "-12.00", "POSTED"),
        ]
    );
    app.assert_invariants().await;
}

#[tokio::test]
async fn forty_percent_taken_back_of_a_held_reward_is_held_beside_it() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-ph").await;
    let held = reward(&app, account, "20.00", 30, None).await;
    let written = take_back(&app, held.id, amount("8.00")).await;
    assert_eq!(written.len(), 1);
    assert_eq!(
        (written[0].kind, written[0].amount, written[0].available_at),
        (EntryKind::Reversal, -8_000_000, held.available_at)
    );
    assert_eq!(
        figures(&credit_balance(&app, "acct-ph").await),
        four("0.00", "12.00", "0.00", "0.00")
    );
    assert_eq!(
        history(&app, "acct-ph").await,
        vec![row("REWARD", "20.00", "PENDING"), row("REVERSAL", "-8.00", "PENDING")]
    );
    app.assert_invariants().await;

    advance(&app, 30);
    assert_eq!(
        figures(&credit_balance(&app, "acct-ph").await),
        four("12.00", "0.00", "12.00", "0.00")
    );
    assert_eq!(settle(&app).await, Settled { matured: 2, expired: 0 });
    assert_eq!(stored(&app, account).await, (12_000_000, 0, 0));
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_held_reward_taken_back_whole_is_voided_with_its_partial_reversals() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-v").await;
    let held = reward(&app, account, "20.00", 30, None).await;
    take_back(&app, held.id, amount("8.00")).await;
    let voided = take_back(&app, held.id, amount("20.00")).await;
    let statuses: Vec<_> = voided.iter().map(|e| (e.id == held.id, e.status.to_value())).collect();
    assert_eq!(
        statuses,
        vec![(true, "VOIDED".to_owned()), (false, "VOIDED".to_owned())]
    );
    assert_eq!(
        figures(&credit_balance(&app, "acct-v").await),
        four("0.00", "0.00", "0.00", "0.00")
    );
    advance(&app, 30);
    assert_eq!(settle(&app).await, Settled::default());
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_failed_claim_gives_points_back_to_a_lot_that_expired_meanwhile_and_they_expire() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    let account = customer(&app, "acct-c").await;
    reward_in(&app, account, Unit::Points, "100.00", 0, Some(30)).await;
    let claimed = app.claim("acct-c", &provider_id, None).await;
    let claim_id = s(&claimed, "/claim/id").to_owned();
    assert_eq!(claimed["balance"]["available"], "0.00", "{claimed:#}");
    advance(&app, 31);
    app.run_ok(
        Some(&app.service()),
        "integration",
        "CompleteClaim",
        json!({ "input": { "claimId": claim_id, "status": "FAILED" } }),
    )
    .await;
    let data = app
        .run_ok(Some(&app.customer("acct-c")), "customer", "BalanceDetails", json!({}))
        .await;
    assert_eq!(data["me"]["points"]["available"], "0.00", "{data:#}");
    let kinds: Vec<String> = app
        .history("acct-c")
        .await
        .iter()
        .map(|e| format!("{} {}", s(e, "/kind"), s(e, "/amount")))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "EXPIRY -100.00",
            "CLAIM_REFUND 100.00",
            "CLAIM -100.00",
            "REWARD 100.00"
        ]
    );
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_spends_while_a_hold_matures_overspend_nothing() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-r").await;
    reward(&app, account, "10.00", 0, None).await;
    reward(&app, account, "20.00", 1, None).await;
    let query = app.op("integration", "ApplyCredit");
    let token = app.service();
    let tasks: Vec<_> = (0..50_u64)
        .map(|i| {
            let client = app.client.clone();
            let address = app.address.clone();
            let token = token.clone();
            let query = query.clone();
            tokio::spawn(async move {
                // Spread over 50 ms, so that the run straddles the end of the hold.
                tokio::time::sleep(std::time::Duration::from_millis(i)).await;
                let vars = TestApp::apply_credit_input(&format!("inv-{i}"), "acct-r", "1.00");
                post_graphql(&client, &address, Some(&token), &query, vars).await.1
            })
        })
        .collect();
    // The hold ends while the spends are under way.
    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    advance(&app, 1);
    let mut applied = 0_i64;
    for task in tasks {
        let body = task.await.expect("the request task");
        assert!(error_codes(&body).is_empty(), "{body:#}");
        applied += micros(s(&body, "/data/applyCredit/applied"));
    }
    assert!(applied <= 30_000_000, "spent {applied} of 30.00");
    let balance = credit_balance(&app, "acct-r").await;
    assert_eq!(micros(s(&balance, "/available")), 30_000_000 - applied, "{balance:#}");
    app.assert_invariants().await;
    // What is left is exactly what was not spent: all of it, in one more invoice.
    let rest = app.apply_credit("inv-rest", "acct-r", "100.00").await;
    assert_eq!(applied + micros(s(&rest, "/applied")), 30_000_000, "{rest:#}");
    assert_eq!(settle(&app).await, Settled::default(), "the spends settled the hold");
    app.assert_invariants().await;
}

#[tokio::test]
async fn balance_reads_cost_the_same_for_one_account_as_for_nine_with_holds_due() {
    let app = spawn_app().await;
    for i in 0..10 {
        let account = customer(&app, &format!("acct-{i:02}")).await;
        reward(&app, account, "5.00", 1, Some(90)).await;
        reward(&app, account, "2.00", 0, Some(10)).await;
    }
    advance(&app, 2);
    let query = "query ($first: Int!) { accounts(first: $first) { edges { node { \
                 credit: balance(unit: CREDIT) { available pending debt SELECTED } } } } }";
    let count = |first: i64, selected: &'static str| {
        let app = &app;
        let query = query.replace("SELECTED", selected);
        async move {
            let before = app.state.statements.get();
            let body = app.gql(Some(&app.admin()), &query, json!({ "first": first })).await;
            let after = app.state.statements.get();
            let nodes: Vec<Value> = body["data"]["accounts"]["edges"]
                .as_array()
                .unwrap_or_else(|| panic!("{body:#}"))
                .clone();
            assert_eq!(nodes.len() as i64, first, "{body:#}");
            for node in &nodes {
                let credit = &node["node"]["credit"];
                assert_eq!(credit["available"], "7.00", "{body:#}");
                assert_eq!(credit["pending"], "0.00", "{body:#}");
            }
            (after - before, nodes)
        }
    };
    // Pages that both have a next page, so that both count the total the same way.
    let (one, _) = count(1, "").await;
    let (nine, _) = count(9, "").await;
    assert_eq!(one, nine, "balances of 1 and of 9 accounts");
    let (one_soon, _) = count(1, "expiringSoon { amount expiresAt }").await;
    let (nine_soon, nodes) = count(9, "expiringSoon { amount expiresAt }").await;
    assert_eq!(one_soon, nine_soon, "expiring soon of 1 and of 9 accounts");
    assert!(one_soon > one, "expiringSoon is read only when asked for");
    for node in nodes {
        assert_eq!(node["node"]["credit"]["expiringSoon"]["amount"], "2.00", "{node:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_due_works_through_every_due_balance_in_batches() {
    let app = spawn_app().await;
    for i in 0..5 {
        let account = customer(&app, &format!("acct-b{i}")).await;
        reward(&app, account, "1.00", 1, None).await;
        reward(&app, account, "2.00", 0, Some(1)).await;
    }
    advance(&app, 2);
    // Two balances per batch: all five in one call.
    let settled = ledger::settle_due(&app.state.db, app.state.clock.now(), 2)
        .await
        .expect("settling runs");
    assert_eq!(settled, Settled { matured: 5, expired: 5 });
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM balances WHERE next_due_at IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        app.sql_i64("SELECT CAST(SUM(available) AS BIGINT) FROM balances WHERE unit = 'CREDIT'")
            .await,
        5_000_000
    );
    assert_eq!(settle(&app).await, Settled::default());
    app.assert_invariants().await;
}

/// The migration gives claim refunds recorded before it the lot allocations that refunds now
/// write, and each balance its next due time, so that `check` holds on an older database.
#[tokio::test]
async fn the_migration_brings_older_ledgers_up_to_the_checks() {
    use migration::MigratorTrait;
    use referral_server::service::check;
    use sea_orm::ConnectionTrait;

    let dir = crate::common::temp_dir("rs-migrate-");
    let url = match crate::common::fresh_postgres_database().await {
        Some(url) => url,
        None => crate::common::sqlite_url(&dir.path().join("old.db")),
    };
    let (db, _) = referral_server::db::connect(&url).await.expect("connects");
    // The six migrations before this issue's.
    migration::Migrator::up(&db, Some(6)).await.expect("older migrations");
    let at = "'2026-12-01T00:00:00+00:00'";
    let later = "'2036-12-01T00:00:00+00:00'";
    for statement in [
        format!(
            "INSERT INTO accounts (id, external_id, referral_code, status, created_at) \
             VALUES (1, 'acct-old', 'OLDCODE1', 'ACTIVE', {at})"
        ),
        "INSERT INTO balances (account_id, unit, available, pending, lifetime_earned) VALUES \
         (1, 'POINTS', 105000000, 0, 105000000), (1, 'CREDIT', 0, 0, 0), (1, 'CASH', 0, 0, 0)"
            .to_owned(),
        format!(
            "INSERT INTO providers (id, key, name, redemption_rate, created_at, updated_at) \
             VALUES (1, 'p', 'P', 100000000, {at}, {at})"
        ),
        format!(
            "INSERT INTO claims (id, account_id, provider_id, gb, points, status, created_at) \
             VALUES (1, 1, 1, 1, 100000000, 'FAILED', {at})"
        ),
        // A lot, spent by a claim and given back by its refund; and a lot that expires later.
        format!(
            "INSERT INTO ledger_entries (id, account_id, unit, amount, remaining, kind, status, description, \
             claim_id, expires_at, created_at) VALUES \
             (1, 1, 'POINTS', 100000000, 100000000, 'REWARD', 'POSTED', 'reward', NULL, NULL, {at}), \
             (2, 1, 'POINTS', -100000000, NULL, 'CLAIM', 'POSTED', 'claim', 1, NULL, {at}), \
             (3, 1, 'POINTS', 100000000, NULL, 'CLAIM_REFUND', 'POSTED', 'refund', 1, NULL, {at}), \
             (4, 1, 'POINTS', 5000000, 5000000, 'REWARD', 'POSTED', 'expiring', NULL, {later}, {at})"
        ),
        "INSERT INTO lot_allocations (debit_entry_id, lot_entry_id, amount) VALUES (2, 1, 100000000)".to_owned(),
    ] {
        db.execute_unprepared(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    referral_server::db::migrate(&db)
        .await
        .expect("this issue's migrations");
    let findings = check::run(&db).await.expect("the checks run");
    let broken: Vec<_> = findings.iter().filter(|f| !f.violations.is_empty()).collect();
    assert!(broken.is_empty(), "{broken:#?}");
    let given_back = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(SUM(amount) AS BIGINT) FROM lot_allocations WHERE debit_entry_id = 3".to_owned(),
        ))
        .await
        .expect("reads")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a sum");
    assert_eq!(given_back, 100_000_000);
}

#[tokio::test]
async fn taken_back_while_held_it_is_voided_after_its_hold_ended_it_is_reversed() {
    let app = spawn_app().await;
    let account = customer(&app, "acct-w").await;
    let early = reward(&app, account, "20.00", 30, None).await;
    let late = reward(&app, account, "20.00", 30, None).await;
    advance(&app, 10);
    let voided = take_back(&app, early.id, amount("20.00")).await;
    assert_eq!(voided.iter().map(|e| e.id).collect::<Vec<_>>(), vec![early.id]);
    assert_eq!(entry_status(&app, early.id).await, "VOIDED");
    advance(&app, 30);
    // Day 40: the hold ended on day 30 (the task has not run); it is posted, then reversed.
    let reversed = take_back(&app, late.id, amount("20.00")).await;
    let kinds: Vec<_> = reversed.iter().map(|e| (e.kind, e.amount)).collect();
    assert_eq!(kinds, vec![(EntryKind::Reversal, -20_000_000)]);
    assert_eq!(entry_status(&app, late.id).await, "POSTED");
    assert_eq!(
        figures(&credit_balance(&app, "acct-w").await),
        four("0.00", "0.00", "0.00", "0.00")
    );
    assert_eq!(
        history(&app, "acct-w").await,
        vec![
            row("REWARD", "20.00", "VOIDED"),
            row("REWARD", "20.00", "POSTED"),
            row("REVERSAL", "-20.00", "POSTED"),
        ]
    );
    app.assert_invariants().await;
}

/// The same through a reward rule (holdDays, expiresAfterDays) and a sign-up: pending, then
/// available on day 30 without the task, then expired 180 days later.
#[tokio::test]
async fn a_rule_with_a_hold_and_an_expiry_pays_a_reward_that_waits_then_expires() {
    let app = spawn_app().await;
    let mut rule = fixed_credit_rule("Held sign-up credit", "SIGNUP", "REFEREE", "20");
    rule["holdDays"] = json!(30);
    rule["expiresAfterDays"] = json!(180);
    app.create_rule_id(rule).await;
    let code = app.register_code("acct-ref", None, None).await;
    app.register_code("acct-new", None, Some(&code)).await;
    let balance = credit_balance(&app, "acct-new").await;
    assert_eq!(figures(&balance), four("0.00", "20.00", "0.00", "0.00"), "{balance:#}");
    assert!(
        balance["expiringSoon"].is_null(),
        "nothing expires while held: {balance:#}"
    );

    advance(&app, 30);
    let balance = credit_balance(&app, "acct-new").await;
    assert_eq!(figures(&balance), four("20.00", "0.00", "20.00", "0.00"), "{balance:#}");
    assert_eq!(balance["expiringSoon"]["amount"], "20.00", "{balance:#}");
    assert_eq!(history(&app, "acct-new").await, vec![row("REWARD", "20.00", "PENDING")]);

    advance(&app, 180);
    let balance = credit_balance(&app, "acct-new").await;
    assert_eq!(figures(&balance), four("0.00", "0.00", "20.00", "0.00"), "{balance:#}");
    assert!(balance["expiringSoon"].is_null(), "{balance:#}");
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 1 });
    assert_eq!(
        history(&app, "acct-new").await,
        vec![row("REWARD", "20.00", "POSTED"), row("EXPIRY", "-20.00", "POSTED")]
    );
    app.assert_invariants().await;
}
