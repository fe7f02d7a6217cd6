//! Purchases in the order they happened: a referee's first purchase is its earliest by
//! `occurredAt`. One that happened before the purchase taken as first, arriving within
//! `reorderWindowHours` (default 72) of that one's arrival, corrects the decision: what the
//! wrong first paid is taken back and the true first is paid. Beyond the window arrival order
//! stands, and the decision says so.
//!
//! The seeded rule pays A 15 points per GB of B's first residential purchase.

use crate::helpers::*;
use chrono::Duration;
use serde_json::{Value, json};

fn purchase_vars(event_id: &str, product: &str, gb: &str, occurred_at: &str) -> Value {
    let mut vars = TestApp::purchase_input(event_id, "acct-b", product, gb);
    vars["input"]["occurredAt"] = json!(occurred_at);
    vars
}

/// B's purchase that happened at `occurred_at` (2026-01-10 at that hour), arriving now.
async fn purchase_at(app: &TestApp, event_id: &str, product: &str, gb: &str, hour: u32) -> Value {
    let vars = purchase_vars(event_id, product, gb, &format!("2026-01-10T{hour:02}:00:00Z"));
    let body = app
        .run(Some(&app.service()), "integration", "RecordPurchase", vars)
        .await;
    data_of(&body, event_id)["recordPurchase"].clone()
}

/// (kind, amount) of each entry an event answered, for A.
fn amounts(payload: &Value) -> Vec<(String, String)> {
    payload["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|e| {
            assert_eq!(e["account"]["externalId"], "acct-a", "{payload:#}");
            (s(e, "/kind").to_owned(), s(e, "/amount").to_owned())
        })
        .collect()
}

fn pair(kind: &str, amount: &str) -> (String, String) {
    (kind.into(), amount.into())
}

fn later(hours: i64, app: &TestApp) {
    app.state.clock.advance(Duration::hours(hours)).expect("clock");
}

async fn seeded_rule_id(app: &TestApp) -> String {
    s(&app.seeded_rule().await, "/id").to_owned()
}

#[tokio::test]
async fn a_late_first_purchase_within_the_window_corrects_the_decision_and_beyond_it_does_not() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let rule = seeded_rule_id(&app).await;

    // Taken as first on arrival: 10 GB at noon.
    let noon = purchase_at(&app, "p-noon", RESIDENTIAL, "10", 12).await;
    assert_eq!(amounts(&noon), [pair("REWARD", "150.00")], "{noon:#}");

    // 2 hours later, 4 GB bought at 8: within the window, it is the first.
    later(2, &app);
    let eight = purchase_at(&app, "p-eight", RESIDENTIAL, "4", 8).await;
    assert_eq!(
        amounts(&eight),
        [pair("REVERSAL", "-150.00"), pair("REWARD", "60.00")],
        "{eight:#}"
    );
    assert_eq!(decision_for(&eight, &rule)["outcome"], "REWARDED", "{eight:#}");
    assert_eq!(app.available_points("acct-a").await, "60.00");
    // Its replay answers the same.
    let vars = purchase_vars("p-eight", RESIDENTIAL, "4", "2026-01-10T08:00:00Z");
    let again = app
        .run(Some(&app.service()), "integration", "RecordPurchase", vars)
        .await;
    let again = data_of(&again, "replay")["recordPurchase"].clone();
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(again["rewards"], eight["rewards"], "{again:#}");
    app.assert_invariants().await;

    // 71 hours after 8's arrival (the window runs from the arrival of the one taken as first),
    // 2 GB bought at 7: corrected again.
    later(71, &app);
    let seven = purchase_at(&app, "p-seven", RESIDENTIAL, "2", 7).await;
    assert_eq!(
        amounts(&seven),
        [pair("REVERSAL", "-60.00"), pair("REWARD", "30.00")],
        "{seven:#}"
    );

    // 73 hours after 7's arrival, 1 GB bought at 6: beyond the window, arrival order stands.
    later(73, &app);
    let six = purchase_at(&app, "p-six", RESIDENTIAL, "1", 6).await;
    assert_eq!(six["rewards"], json!([]), "{six:#}");
    let decision = decision_for(&six, &rule);
    assert_eq!(decision["outcome"], "SKIPPED", "{six:#}");
    assert!(s(decision, "/reason").contains("72 h"), "{six:#}");

    // A purchase after the first is a later one, as ever.
    let nine = purchase_at(&app, "p-nine", RESIDENTIAL, "9", 9).await;
    assert_eq!(nine["rewards"], json!([]), "{nine:#}");
    assert_eq!(app.available_points("acct-a").await, "30.00");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 30_000_000);
    app.assert_invariants().await;
}

#[tokio::test]
async fn beyond_the_window_arrival_order_stands_and_the_decision_says_so() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let rule = seeded_rule_id(&app).await;
    purchase_at(&app, "p-noon", RESIDENTIAL, "10", 12).await;

    later(72, &app);
    later(1, &app);
    let before = app.snapshot().await;
    let eight = purchase_at(&app, "p-eight", RESIDENTIAL, "4", 8).await;
    assert_eq!(eight["rewards"], json!([]), "{eight:#}");
    let decision = decision_for(&eight, &rule);
    assert_eq!(decision["outcome"], "SKIPPED", "{eight:#}");
    let reason = s(decision, "/reason");
    assert!(
        reason.contains("happened before") && reason.contains("72 h reorder window"),
        "{reason}"
    );
    // Only the event itself was added: the first purchase and its reward stand.
    let after = app.snapshot().await;
    let changed: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0.0, "events");
    assert_eq!(app.available_points("acct-a").await, "150.00");
}

#[tokio::test]
async fn a_wrong_first_that_paid_nothing_is_corrected_with_nothing_to_take_back() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let rule = seeded_rule_id(&app).await;
    // The datacenter purchase arrives first; the seeded rule counts residential only.
    let dc = purchase_at(&app, "p-dc", DATACENTER, "10", 12).await;
    assert_eq!(dc["rewards"], json!([]), "{dc:#}");
    assert!(s(decision_for(&dc, &rule), "/reason").contains("datacenter"), "{dc:#}");

    // The residential one happened before it: it is the first, and it pays.
    later(5, &app);
    let resi = purchase_at(&app, "p-resi", RESIDENTIAL, "2", 9).await;
    assert_eq!(amounts(&resi), [pair("REWARD", "30.00")], "{resi:#}");
    // Without a time of its own, a purchase happened when it arrived: after both.
    let untimed = app.purchase("p-untimed", "acct-b", RESIDENTIAL, "7").await;
    assert_eq!(untimed["rewards"], json!([]), "{untimed:#}");
    assert_eq!(app.available_points("acct-a").await, "30.00");
    app.assert_invariants().await;
}

#[tokio::test]
async fn the_reorder_window_is_a_setting() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let admin = app.admin();
    let read = "{ programSettings { reorderWindowHours } }";
    let hours = app.gql(Some(&admin), read, json!({})).await;
    assert_eq!(data_of(&hours, "default")["programSettings"]["reorderWindowHours"], 72);
    for bad in [-1, 721] {
        let body = app
            .run(
                Some(&admin),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": { "reorderWindowHours": bad } }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert!(body.to_string().contains("reorderWindowHours"), "{body:#}");
    }
    app.update_settings(json!({ "reorderWindowHours": 1 })).await;
    let hours = app.gql(Some(&admin), read, json!({})).await;
    assert_eq!(data_of(&hours, "set")["programSettings"]["reorderWindowHours"], 1);

    // One hour is now the window: two hours late is too late.
    let rule = seeded_rule_id(&app).await;
    purchase_at(&app, "p-dc", DATACENTER, "10", 12).await;
    later(2, &app);
    let late = purchase_at(&app, "p-resi", RESIDENTIAL, "2", 9).await;
    assert_eq!(late["rewards"], json!([]), "{late:#}");
    assert!(
        s(decision_for(&late, &rule), "/reason").contains("1 h reorder window"),
        "{late:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purchases_arriving_in_any_order_leave_the_earliest_paid_once() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let query = app.op("integration", "RecordPurchase");
    // 12 purchases of 1..=12 GB; the one of 7 GB happened first.
    let vars = (1..=12)
        .map(|gb| {
            let hour = if gb == 7 { 1 } else { 2 + gb };
            purchase_vars(
                &format!("p-{gb}"),
                RESIDENTIAL,
                &gb.to_string(),
                &format!("2026-01-10T{hour:02}:00:00Z"),
            )
        })
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;
    for body in &bodies {
        data_of(body, "a concurrent purchase");
    }
    assert_eq!(app.available_points("acct-a").await, "105.00");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 105_000_000);
    let standing = app
        .sql_i64(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries e WHERE e.kind = 'REWARD' \
             AND e.amount > COALESCE((SELECT SUM(t.amount) FROM take_backs t WHERE t.entry_id = e.id), 0)",
        )
        .await;
    assert_eq!(standing, 1, "one reward stands");
    let first = app
        .sql_i64(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM accounts a JOIN events e ON e.id = a.first_purchase_event_id \
             WHERE a.external_id = 'acct-b' AND e.event_id = 'p-7'",
        )
        .await;
    assert_eq!(first, 1, "the account names the earliest purchase as its first");
    app.assert_invariants().await;
}
