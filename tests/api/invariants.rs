//! `referral-server check` must see a broken ledger, or the concurrent tests that end with it
//! prove nothing.

use crate::helpers::*;
use referral_server::service::check;
use sea_orm::ConnectionTrait;
use serde_json::json;

async fn broken(app: &TestApp) -> Vec<&'static str> {
    let findings = check::run(&app.state.db).await.expect("the checks run");
    findings
        .iter()
        .filter(|f| !f.violations.is_empty())
        .map(|f| f.invariant)
        .collect()
}

#[tokio::test]
async fn check_finds_a_balance_that_drifted_from_its_entries() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    app.assert_invariants().await;

    app.state
        .db
        .execute_unprepared("UPDATE balances SET available = available + 1 WHERE unit = 'POINTS' AND available > 0")
        .await
        .expect("tampering runs");
    assert_eq!(
        broken(&app).await,
        vec![
            "each balance's available equals the sum of its posted entries",
            "each balance's available equals what its lots have left",
        ]
    );
}

#[tokio::test]
async fn check_finds_a_lot_spent_twice_and_rewards_out_of_step() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    app.state
        .db
        .execute_unprepared("UPDATE ledger_entries SET remaining = 0 WHERE kind = 'REWARD'")
        .await
        .expect("tampering runs");
    app.state
        .db
        .execute_unprepared("UPDATE balances SET lifetime_earned = 0")
        .await
        .expect("tampering runs");
    assert_eq!(
        broken(&app).await,
        vec![
            "each balance's available equals what its lots have left",
            "each balance's lifetime earned equals its posted rewards, net of posted reversals",
            "each lot's remaining is its amount less what entries took from it, plus what refunds gave back",
        ]
    );
}

/// Runs `tamper`, expects exactly `expected` broken, and puts things back with `undo`.
async fn breaks(app: &TestApp, tamper: &str, undo: &str, expected: &[&str]) {
    let db = &app.state.db;
    db.execute_unprepared(tamper).await.expect("tampering runs");
    assert_eq!(broken(app).await, expected, "after {tamper}");
    db.execute_unprepared(undo).await.expect("undoing runs");
    assert!(broken(app).await.is_empty(), "after {undo}");
}

#[tokio::test]
async fn check_finds_debt_expiry_holds_and_reversals_out_of_step() {
    use crate::time::{advance, amount, customer, reward, settle, take_back};
    let app = spawn_app().await;
    let account = customer(&app, "acct-t").await;
    // Debt: 20.00 taken back of which 5.00 was spent.
    let earned = reward(&app, account, "20.00", 0, None).await;
    app.apply_credit("inv-1", "acct-t", "5.00").await;
    take_back(&app, earned.id, amount("20.00")).await;
    // A lot that expires and a reward held with 40 % of it taken back.
    let other = customer(&app, "acct-u").await;
    reward(&app, other, "7.00", 0, Some(10)).await;
    let held = reward(&app, other, "20.00", 30, None).await;
    take_back(&app, held.id, amount("8.00")).await;
    advance(&app, 11);
    settle(&app).await;
    app.assert_invariants().await;

    breaks(
        &app,
        "UPDATE balances SET debt = debt + 1 WHERE debt > 0",
        "UPDATE balances SET debt = debt - 1 WHERE debt > 0",
        &["each balance's debt equals the sum of its posted DEBT entries (owed less repaid)"],
    )
    .await;
    breaks(
        &app,
        // Stamped when its lot was created, before the lot's expiry.
        "UPDATE ledger_entries SET created_at = (SELECT l.created_at FROM lot_allocations a \
         JOIN ledger_entries l ON l.id = a.lot_entry_id WHERE a.debit_entry_id = ledger_entries.id) \
         WHERE kind = 'EXPIRY'",
        "UPDATE ledger_entries SET created_at = (SELECT l.expires_at FROM lot_allocations a \
         JOIN ledger_entries l ON l.id = a.lot_entry_id WHERE a.debit_entry_id = ledger_entries.id) \
         WHERE kind = 'EXPIRY'",
        &["each EXPIRY entry takes what its lot had left, from that one lot, once its expiry passed"],
    )
    .await;
    breaks(
        &app,
        // The expired lot given something back.
        "UPDATE ledger_entries SET remaining = remaining + 1 WHERE id IN \
         (SELECT a.lot_entry_id FROM lot_allocations a JOIN ledger_entries x ON x.id = a.debit_entry_id \
          WHERE x.kind = 'EXPIRY')",
        "UPDATE ledger_entries SET remaining = remaining - 1 WHERE id IN \
         (SELECT a.lot_entry_id FROM lot_allocations a JOIN ledger_entries x ON x.id = a.debit_entry_id \
          WHERE x.kind = 'EXPIRY')",
        // The lot is also out of step with its balance, its allocations and its balance's
        // next due time: the expiry check must be among them.
        &[
            "each balance's available equals what its lots have left",
            "each lot's remaining is its amount less what entries took from it, plus what refunds gave back",
            "a lot that expired has nothing left",
            "no balance's next due time is later than a hold's end or an open lot's expiry",
        ],
    )
    .await;
    breaks(
        &app,
        "UPDATE ledger_entries SET available_at = created_at WHERE kind = 'REVERSAL' AND status = 'PENDING'",
        &format!(
            "UPDATE ledger_entries SET available_at = (SELECT r.available_at FROM ledger_entries r WHERE r.id = {}) \
             WHERE kind = 'REVERSAL' AND status = 'PENDING'",
            held.id
        ),
        // Earlier than the balance's next due time, too.
        &[
            "a held REVERSAL waits with its held reward, until the same time",
            "no balance's next due time is later than a hold's end or an open lot's expiry",
        ],
    )
    .await;
    breaks(
        &app,
        "UPDATE ledger_entries SET reverses_entry_id = (SELECT MIN(id) FROM ledger_entries WHERE kind = 'DEBT') \
         WHERE kind = 'REVERSAL' AND status = 'POSTED'",
        &format!(
            "UPDATE ledger_entries SET reverses_entry_id = {} WHERE kind = 'REVERSAL' AND status = 'POSTED'",
            earned.id
        ),
        &["a REVERSAL takes back a reward of its own balance, and never more than the reward"],
    )
    .await;
    breaks(
        &app,
        "UPDATE balances SET next_due_at = NULL",
        &format!(
            "UPDATE balances SET next_due_at = (SELECT available_at FROM ledger_entries WHERE id = {}) \
             WHERE account_id = {other} AND unit = 'CREDIT'",
            held.id
        ),
        &["no balance's next due time is later than a hold's end or an open lot's expiry"],
    )
    .await;
    breaks(
        &app,
        &format!("UPDATE balances SET debt = 0 WHERE account_id = {account} AND unit = 'CREDIT'"),
        &format!("UPDATE balances SET debt = 5000000 WHERE account_id = {account} AND unit = 'CREDIT'"),
        &["each balance's debt equals the sum of its posted DEBT entries (owed less repaid)"],
    )
    .await;
}

/// An invoice's number is the account's count of paid invoices: a count out of step with the
/// recorded invoices would number the next one wrong.
#[tokio::test]
async fn check_finds_a_count_of_paid_invoices_out_of_step() {
    let app = spawn_app().await;
    app.register_code("acct-a", Some("Alice Adams"), None).await;
    let invoice = json!({ "input": {
        "eventId": "inv-1", "externalId": "acct-a", "lines": [{ "category": "compute", "amount": "10" }] } });
    app.run_ok(Some(&app.service()), "integration", "RecordInvoicePaid", invoice)
        .await;
    app.assert_invariants().await;
    app.state
        .db
        .execute_unprepared("UPDATE accounts SET paid_invoices = 2")
        .await
        .expect("tampering runs");
    assert_eq!(
        broken(&app).await,
        vec!["each account's count of paid invoices is the number of its recorded invoices"]
    );
}

/// A withdrawal whose amount, debit or return no longer agree would pay out what the ledger
/// never took, or give back twice.
#[tokio::test]
async fn check_finds_withdrawals_out_of_step_with_their_entries() {
    let app = spawn_app().await;
    let account = s(&app.register("aff-1", Some("Ada Affiliate"), None).await, "/account/id").to_owned();
    app.update_settings(json!({ "affiliateSignupBonus": "50" })).await;
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "DecideAffiliate",
        json!({ "input": { "accountId": account, "decision": "APPROVE" } }),
    )
    .await;
    let mut ids = Vec::new();
    for amount in ["20", "10"] {
        let requested = app
            .run_ok(
                Some(&app.customer("aff-1")),
                "customer",
                "RequestWithdrawal",
                json!({ "input": { "amount": amount } }),
            )
            .await;
        let id = s(&requested, "/requestWithdrawal/withdrawal/id").to_owned();
        app.run_ok(
            Some(&app.admin()),
            "admin",
            "DecideWithdrawal",
            json!({ "input": { "withdrawalId": id, "decision": "REJECT" } }),
        )
        .await;
        ids.push(id);
    }
    app.assert_invariants().await;
    let paired = "each withdrawal is paid by one posted CASH debit of its amount, and a rejected one given back once";
    let owned = "each WITHDRAWAL and WITHDRAWAL_RETURNED entry belongs to exactly one withdrawal";
    breaks(
        &app,
        "UPDATE withdrawals SET amount = amount + 1",
        "UPDATE withdrawals SET amount = amount - 1",
        &[paired],
    )
    .await;
    // Both requests point at the first one's return: one entry returned twice, one never.
    breaks(
        &app,
        "UPDATE withdrawals SET return_entry_id = return_entry_id + 1000000",
        "UPDATE withdrawals SET return_entry_id = return_entry_id - 1000000",
        &[paired, owned],
    )
    .await;
    breaks(
        &app,
        "UPDATE withdrawals SET status = 'PAID'",
        "UPDATE withdrawals SET status = 'REJECTED'",
        &[paired],
    )
    .await;
    assert_eq!(ids.len(), 2);
}
