//! `referral-server check` must see a broken ledger, or the concurrent tests that end with it
//! prove nothing.

use crate::helpers::*;
use referral_server::service::check;
use sea_orm::ConnectionTrait;

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
