//! Refunds and closures: a refund takes back what the refunded purchase or top-up caused, in
//! proportion (voided while pending, reversed once posted), never more than once in all; a
//! closed account's later events earn nothing; a disqualification reverses what is left.
//!
//! The seeded rule pays the referrer 15 points per GB of a friend's first residential purchase
//! (A → B → C: B's purchases pay A, C's pay B).

use crate::helpers::*;
use serde_json::{Value, json};

/// RecordPurchase with an amount and, if given, a time it happened; the whole body.
async fn purchase_raw(app: &TestApp, event_id: &str, external_id: &str, gb: &str, amount: Option<&str>) -> Value {
    let mut vars = TestApp::purchase_input(event_id, external_id, RESIDENTIAL, gb);
    if let Some(amount) = amount {
        vars["input"]["amount"] = json!(amount);
    }
    app.run(Some(&app.service()), "integration", "RecordPurchase", vars)
        .await
}

async fn purchase(app: &TestApp, event_id: &str, external_id: &str, gb: &str, amount: Option<&str>) -> Value {
    let body = purchase_raw(app, event_id, external_id, gb, amount).await;
    data_of(&body, event_id)["recordPurchase"].clone()
}

async fn close_raw(app: &TestApp, event_id: &str, external_id: &str, occurred_at: Option<&str>) -> Value {
    let mut input = json!({ "eventId": event_id, "externalId": external_id });
    if let Some(at) = occurred_at {
        input["occurredAt"] = json!(at);
    }
    app.run(
        Some(&app.service()),
        "integration",
        "CloseAccount",
        json!({ "input": input }),
    )
    .await
}

/// (kind, status, amount, owner) of each entry an event answered.
fn entries(payload: &Value) -> Vec<(String, String, String, String)> {
    payload["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|e| {
            (
                s(e, "/kind").to_owned(),
                s(e, "/status").to_owned(),
                s(e, "/amount").to_owned(),
                s(e, "/account/externalId").to_owned(),
            )
        })
        .collect()
}

fn entry(kind: &str, status: &str, amount: &str, owner: &str) -> (String, String, String, String) {
    (kind.into(), status.into(), amount.into(), owner.into())
}

#[tokio::test]
async fn a_partial_refund_of_40_percent_reverses_40_percent_and_the_rest_reverses_the_rest() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let paid = purchase(&app, "inv-1", "acct-b", "10", Some("100")).await;
    assert_eq!(
        entries(&paid),
        [entry("REWARD", "POSTED", "150.00", "acct-a")],
        "{paid:#}"
    );

    let part = refund(&app, "ref-1", "acct-b", "inv-1", Some("40")).await;
    assert_eq!(part["event"]["kind"], "REFUND", "{part:#}");
    assert_eq!(part["event"]["duplicate"], false, "{part:#}");
    assert_eq!(part["decisions"], json!([]), "no rule triggers on a refund: {part:#}");
    assert_eq!(
        entries(&part),
        [entry("REVERSAL", "POSTED", "-60.00", "acct-a")],
        "{part:#}"
    );
    assert_eq!(app.available_points("acct-a").await, "90.00");
    app.assert_invariants().await;

    // Replayed: the same entries, nothing more taken.
    let before = app.snapshot().await;
    let again = refund(&app, "ref-1", "acct-b", "inv-1", Some("40")).await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(again["rewards"], part["rewards"], "{again:#}");
    assert_eq!(app.snapshot().await, before);

    // The rest (no amount): what is left of the reward, exactly.
    let rest = refund(&app, "ref-2", "acct-b", "inv-1", None).await;
    assert_eq!(
        entries(&rest),
        [entry("REVERSAL", "POSTED", "-90.00", "acct-a")],
        "{rest:#}"
    );
    assert_eq!(app.available_points("acct-a").await, "0.00");
    assert_failed(
        &refund_raw(&app, "ref-3", "acct-b", "inv-1", Some("1")).await,
        "BAD_USER_INPUT",
    );
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_refund_on_day_10_voids_a_held_reward_and_on_day_40_reverses_it() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let mut held = fixed_credit_rule("Held credit for a first purchase", "FIRST_PURCHASE", "REFERRER", "20");
    held["holdDays"] = json!(30);
    app.create_rule(held).await;
    // Day 0: B's and C's first purchases; A and B each have 20.00 credit on hold.
    purchase(&app, "inv-b", "acct-b", "10", Some("100")).await;
    purchase(&app, "inv-c", "acct-c", "10", Some("100")).await;
    assert_eq!(app.credit("acct-a").await.1, "20.00");
    assert_eq!(app.credit("acct-b").await.1, "20.00");

    // Day 10: B's purchase refunded: A's held credit is voided (and its posted points reversed).
    app.state.clock.advance(chrono::Duration::days(10)).expect("clock");
    let voided = refund(&app, "ref-b", "acct-b", "inv-b", None).await;
    let got = entries(&voided);
    assert!(
        got.contains(&entry("REWARD", "VOIDED", "20.00", "acct-a")),
        "{voided:#}"
    );
    assert!(
        got.contains(&entry("REVERSAL", "POSTED", "-150.00", "acct-a")),
        "{voided:#}"
    );
    assert_eq!(app.credit("acct-a").await.0, "0.00");
    assert_eq!(app.credit("acct-a").await.1, "0.00");
    // Its replay answers the voided reward again, though it carries the purchase's event.
    let again = refund(&app, "ref-b", "acct-b", "inv-b", None).await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(entries(&again), got, "{again:#}");
    app.assert_invariants().await;

    // Day 40: B's held credit became available on day 30; C's refund reverses it.
    app.state.clock.advance(chrono::Duration::days(30)).expect("clock");
    assert_eq!(app.available_credit("acct-b").await, "20.00");
    let reversed = refund(&app, "ref-c", "acct-c", "inv-c", None).await;
    assert!(
        entries(&reversed).contains(&entry("REVERSAL", "POSTED", "-20.00", "acct-b")),
        "{reversed:#}"
    );
    assert_eq!(app.credit("acct-b").await.0, "0.00");
    app.assert_invariants().await;
}

#[tokio::test]
async fn refunds_are_checked_and_answered_once() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    purchase(&app, "inv-1", "acct-b", "10", Some("100")).await;
    // A later purchase: it caused nothing, so its refunds take nothing.
    let later = purchase(&app, "inv-2", "acct-b", "4", Some("50")).await;
    assert_eq!(later["rewards"], json!([]), "{later:#}");
    // Without an amount (and, datacenter, paying nothing).
    let c = app.purchase("inv-c", "acct-c", DATACENTER, "1").await;
    assert_eq!(c["rewards"], json!([]), "{c:#}");
    app.verify_payment("pmv-b", "acct-b").await;
    let before = app.snapshot().await;

    let unknown = refund_raw(&app, "ref-x", "acct-b", "no-such-event", None).await;
    assert_failed(&unknown, "NOT_FOUND");
    for (what, vars, field) in [
        (
            "of another account's purchase",
            refund_vars("ref-x", "acct-b", "inv-c", None),
            "refundOf",
        ),
        (
            "of a payment method",
            refund_vars("ref-x", "acct-b", "pmv-b", None),
            "refundOf",
        ),
        (
            "of nothing",
            refund_vars("ref-x", "acct-b", "inv-2", Some("0")),
            "amount",
        ),
        (
            "negative",
            refund_vars("ref-x", "acct-b", "inv-2", Some("-5")),
            "amount",
        ),
        (
            "beyond the amount",
            refund_vars("ref-x", "acct-b", "inv-2", Some("50.01")),
            "amount",
        ),
        (
            "a part of a purchase without an amount",
            refund_vars("ref-x", "acct-c", "inv-c", Some("1")),
            "amount",
        ),
        (
            "without a refundOf",
            refund_vars("ref-x", "acct-b", " ", None),
            "refundOf",
        ),
    ] {
        let body = app.run(Some(&app.service()), "integration", "RecordRefund", vars).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert!(
            body.to_string().contains(field),
            "a refund {what} names {field}: {body:#}"
        );
        assert_eq!(app.snapshot().await, before, "a refused refund {what} changes nothing");
    }

    // A refund of an event that caused no reward is recorded and takes nothing.
    let first = refund(&app, "ref-1", "acct-b", "inv-2", Some("20")).await;
    assert_eq!(first["event"]["kind"], "REFUND", "{first:#}");
    assert_eq!(first["event"]["duplicate"], false, "{first:#}");
    assert_eq!(first["rewards"], json!([]), "{first:#}");
    assert_eq!(app.count("events").await, 5);
    let again = refund(&app, "ref-1", "acct-b", "inv-2", Some("20.00")).await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(again["event"]["id"], first["event"]["id"], "{again:#}");
    for conflicting in [
        refund_vars("ref-1", "acct-b", "inv-2", Some("25")),
        refund_vars("ref-1", "acct-b", "inv-2", None),
        refund_vars("ref-1", "acct-b", "inv-1", Some("20")),
    ] {
        let body = app
            .run(Some(&app.service()), "integration", "RecordRefund", conflicting)
            .await;
        assert_failed(&body, "IDEMPOTENCY_CONFLICT");
    }
    // 30 of 50 is left: 31 is refused, the rest (no amount) is 30, and then nothing is left.
    assert_failed(
        &refund_raw(&app, "ref-2", "acct-b", "inv-2", Some("31")).await,
        "BAD_USER_INPUT",
    );
    refund(&app, "ref-2", "acct-b", "inv-2", None).await;
    let full = refund_raw(&app, "ref-3", "acct-b", "inv-2", None).await;
    assert_failed(&full, "BAD_USER_INPUT");
    assert!(full.to_string().contains("refunded in full"), "{full:#}");
    // A purchase without an amount is refunded whole, once.
    refund(&app, "ref-c", "acct-c", "inv-c", None).await;
    assert_failed(
        &refund_raw(&app, "ref-c2", "acct-c", "inv-c", None).await,
        "BAD_USER_INPUT",
    );
    assert_eq!(app.available_points("acct-a").await, "150.00");
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_refunded_top_up_no_longer_counts_towards_the_threshold() {
    let app = spawn_app().await;
    let (referrer_rule, _) = app.prepaid_rules("50", "10", "5").await;
    let code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register_scheme("acct-p", "Pat Prepaid", Some(&code), "PREPAID")
        .await;

    app.top_up("top-1", "acct-p", "30", None).await;
    app.top_up("top-failed", "acct-p", "40", Some(false)).await;
    let failed = app
        .run(
            Some(&app.service()),
            "integration",
            "RecordRefund",
            refund_vars("ref-failed", "acct-p", "top-failed", None),
        )
        .await;
    assert_failed(&failed, "BAD_USER_INPUT");
    // 30 of the 30 refunded: the next 30 makes 30 in all, not 60.
    let refunded = refund(&app, "ref-1", "acct-p", "top-1", Some("30")).await;
    assert_eq!(refunded["rewards"], json!([]), "{refunded:#}");
    let next = app.top_up("top-2", "acct-p", "30", None).await;
    assert_eq!(
        decision_for(&next, &referrer_rule)["reason"],
        "top-ups 30.00 of 50.00",
        "{next:#}"
    );
    let paid = app.top_up("top-3", "acct-p", "20", None).await;
    assert_eq!(decision_for(&paid, &referrer_rule)["outcome"], "REWARDED", "{paid:#}");
    assert_eq!(app.available_credit("acct-a").await, "10.00");
}

#[tokio::test]
async fn a_closed_account_is_inactive_and_what_it_does_after_the_closure_earns_nothing() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let closed = close_raw(&app, "close-b", "acct-b", Some("2026-03-01T00:00:00Z")).await;
    let closed = data_of(&closed, "CloseAccount")["closeAccount"].clone();
    assert_eq!(closed["event"]["kind"], "ACCOUNT_CLOSED", "{closed:#}");
    assert_eq!(closed["event"]["duplicate"], false, "{closed:#}");
    assert_eq!(closed["rewards"], json!([]), "{closed:#}");
    assert_eq!(closed["decisions"], json!([]), "{closed:#}");
    assert_eq!(account_status(&app, "acct-b").await, "CLOSED");
    assert_eq!(account_status(&app, "acct-c").await, "ACTIVE");
    let closed_at = app
        .sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM accounts WHERE closed_at IS NOT NULL")
        .await;
    assert_eq!(closed_at, 1);

    // Replayed: the same event; closed again under another eventId: recorded, still closed.
    let again = close_raw(&app, "close-b", "acct-b", Some("2026-03-01T00:00:00Z")).await;
    assert_eq!(data_of(&again, "replay")["closeAccount"]["event"]["duplicate"], true);
    let conflict = close_raw(&app, "close-b", "acct-b", Some("2026-03-02T00:00:00Z")).await;
    assert_failed(&conflict, "IDEMPOTENCY_CONFLICT");
    let unknown = close_raw(&app, "close-x", "acct-x", None).await;
    assert_failed(&unknown, "NOT_FOUND");
    close_raw(&app, "close-b-2", "acct-b", None).await;
    assert_eq!(account_status(&app, "acct-b").await, "CLOSED");

    // A purchase that happened after the closure records and pays no one.
    let mut vars = TestApp::purchase_input("inv-after", "acct-b", RESIDENTIAL, "10");
    vars["input"]["occurredAt"] = json!("2026-03-05T00:00:00Z");
    let after = app
        .run(Some(&app.service()), "integration", "RecordPurchase", vars)
        .await;
    let after = data_of(&after, "after")["recordPurchase"].clone();
    assert_eq!(after["rewards"], json!([]), "{after:#}");
    for decision in after["decisions"].as_array().expect("decisions") {
        assert_eq!(decision["outcome"], "SKIPPED", "{after:#}");
        assert!(s(decision, "/reason").contains("closed"), "{after:#}");
    }
    // One that happened before it, arriving late, is evaluated as usual: it is the first.
    let mut vars = TestApp::purchase_input("inv-before", "acct-b", RESIDENTIAL, "10");
    vars["input"]["occurredAt"] = json!("2026-02-20T00:00:00Z");
    let before = app
        .run(Some(&app.service()), "integration", "RecordPurchase", vars)
        .await;
    let before = data_of(&before, "before")["recordPurchase"].clone();
    assert_eq!(
        entries(&before),
        [entry("REWARD", "POSTED", "150.00", "acct-a")],
        "{before:#}"
    );
    assert_eq!(app.available_points("acct-a").await, "150.00");
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_disqualification_reverses_what_a_partial_refund_left_and_nothing_twice() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    purchase(&app, "inv-1", "acct-b", "10", Some("100")).await;
    refund(&app, "ref-1", "acct-b", "inv-1", Some("40")).await;
    assert_eq!(app.available_points("acct-a").await, "90.00");

    let a = s(&nodes(&app.accounts(Some("acct-a"), 1, None).await)[0], "/id").to_owned();
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "DisqualifyAccount",
        json!({ "input": { "accountId": a, "reason": "fraud ring" } }),
    )
    .await;
    assert_eq!(app.available_points("acct-a").await, "0.00");
    let reversals: Vec<String> = app
        .history("acct-a")
        .await
        .iter()
        .filter(|h| h["kind"] == "REVERSAL")
        .map(|h| s(h, "/amount").to_owned())
        .collect();
    assert_eq!(reversals, ["-90.00", "-60.00"], "newest first");

    // The rest of the purchase refunded: nothing is left of the reward to take back.
    let rest = refund(&app, "ref-2", "acct-b", "inv-1", None).await;
    assert_eq!(rest["rewards"], json!([]), "{rest:#}");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 0);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_of_one_purchase_never_take_back_more_than_it_paid() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    purchase(&app, "inv-1", "acct-b", "10", Some("100")).await;
    let query = app.op("integration", "RecordRefund");
    let vars = (0..12)
        .map(|i| refund_vars(&format!("ref-{i}"), "acct-b", "inv-1", Some("10")))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;
    let refunded = bodies.iter().filter(|b| error_codes(b).is_empty()).count();
    let refused = bodies.iter().filter(|b| error_codes(b) == ["BAD_USER_INPUT"]).count();
    assert_eq!((refunded, refused), (10, 2), "{bodies:#?}");
    for body in bodies.iter().filter(|b| error_codes(b).is_empty()) {
        assert_eq!(
            entries(&body["data"]["recordRefund"]),
            [entry("REVERSAL", "POSTED", "-15.00", "acct-a")],
            "{body:#}"
        );
    }
    assert_eq!(app.available_points("acct-a").await, "0.00");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 0);
    app.assert_invariants().await;
}
