//! ApplyCredit: the billing system asks how much of an account's credit to apply to an
//! invoice; the answer is min(available credit, amount), once per invoice.

use crate::helpers::*;
use serde_json::{Value, json};

/// A (acct-a) earns `referrer` CREDIT and B (acct-b) 5.00 through program 1.
async fn alice_earns_credit(app: &TestApp, referrer: &str) {
    app.postpaid_rules(referrer, "5").await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    let paid = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(paid["rewards"].as_array().map(Vec::len), Some(2), "{paid:#}");
}

fn answer(applied: &str, remaining: &str, duplicate: bool) -> Value {
    json!({ "applied": applied, "remaining": remaining, "duplicate": duplicate })
}

/// The non-zero CREDIT_APPLIED amounts of a customer's history, newest first.
async fn applied_entries(app: &TestApp, external_id: &str) -> Vec<String> {
    app.history(external_id)
        .await
        .iter()
        .filter(|e| e["kind"] == "CREDIT_APPLIED" && micros(s(e, "/amount")) != 0)
        .map(|e| {
            assert_eq!(e["unit"], "CREDIT", "{e:#}");
            assert_eq!(e["status"], "POSTED", "{e:#}");
            s(e, "/amount").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn credit_is_applied_up_to_what_is_available() {
    let app = spawn_app().await;
    alice_earns_credit(&app, "25").await;
    assert_eq!(
        app.credit("acct-a").await,
        ("25.00".into(), "0.00".into(), "25.00".into())
    );

    let first = app.apply_credit("inv-1", "acct-a", "10").await;
    assert_eq!(first, answer("10.00", "15.00", false));
    assert_eq!(
        app.credit("acct-a").await,
        ("15.00".into(), "0.00".into(), "25.00".into()),
        "spending does not change what was earned"
    );

    let second = app.apply_credit("inv-2", "acct-a", "2.5").await;
    assert_eq!(second, answer("2.50", "12.50", false));

    // More than is available: what is available.
    let third = app.apply_credit("inv-3", "acct-a", "40.00").await;
    assert_eq!(third, answer("12.50", "0.00", false));

    // Nothing left: nothing applied.
    let fourth = app.apply_credit("inv-4", "acct-a", "5").await;
    assert_eq!(fourth, answer("0.00", "0.00", false));

    assert_eq!(
        app.credit("acct-a").await,
        ("0.00".into(), "0.00".into(), "25.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 0);
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 0);
    assert_eq!(
        applied_entries(&app, "acct-a").await,
        vec!["-12.50", "-2.50", "-10.00"],
        "each application is a negative entry, newest first"
    );
    let history = app.history("acct-a").await;
    assert_eq!(
        history.last().map(|e| s(e, "/amount").to_owned()),
        Some("25.00".to_owned()),
        "{history:#?}"
    );

    // B's credit is its own.
    assert_eq!(
        app.credit("acct-b").await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );
    let b = app.apply_credit("inv-b-1", "acct-b", "3").await;
    assert_eq!(b, answer("3.00", "2.00", false));
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 2_000_000);
    assert_eq!(app.available_credit("acct-a").await, "0.00");
}

#[tokio::test]
async fn a_replayed_invoice_is_answered_again_and_other_input_for_it_is_a_conflict() {
    let app = spawn_app().await;
    alice_earns_credit(&app, "25").await;

    let first = app.apply_credit("inv-1", "acct-a", "10").await;
    assert_eq!(first, answer("10.00", "15.00", false));
    let before = app.snapshot().await;

    // The same input, also written differently.
    for amount in ["10", "10.00", "10.0"] {
        let again = app.apply_credit("inv-1", "acct-a", amount).await;
        assert_eq!(again, answer("10.00", "15.00", true), "amount {amount}");
        assert_eq!(app.snapshot().await, before, "a replay changes nothing");
    }

    // The same invoice with another amount or account.
    for (amount, account) in [("11", "acct-a"), ("9.99", "acct-a"), ("10", "acct-b")] {
        let body = app.apply_credit_raw("inv-1", account, amount).await;
        assert_failed(&body, "IDEMPOTENCY_CONFLICT");
        assert_eq!(app.snapshot().await, before);
    }
    assert_eq!(app.available_credit("acct-a").await, "15.00");
    assert_eq!(app.available_credit("acct-b").await, "5.00");

    // After more credit was spent, the replay still answers what was applied, once.
    let second = app.apply_credit("inv-2", "acct-a", "5").await;
    assert_eq!(second, answer("5.00", "10.00", false));
    let again = app.apply_credit("inv-1", "acct-a", "10").await;
    assert_eq!(again["applied"], "10.00", "{again:#}");
    assert_eq!(again["duplicate"], true, "{again:#}");
    assert_eq!(app.available_credit("acct-a").await, "10.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(applied_entries(&app, "acct-a").await, vec!["-5.00", "-10.00"]);
}

#[tokio::test]
async fn an_account_without_credit_gets_nothing_applied() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points, no credit
    assert_eq!(app.available_points("acct-a").await, "150.00");

    // Points are not credit.
    let none = app.apply_credit("inv-a-1", "acct-a", "20").await;
    assert_eq!(none, answer("0.00", "0.00", false));
    assert_eq!(app.available_points("acct-a").await, "150.00");
    // An account that never earned anything.
    let c = app.apply_credit("inv-c-1", "acct-c", "20").await;
    assert_eq!(c, answer("0.00", "0.00", false));
    let again = app.apply_credit("inv-c-1", "acct-c", "20").await;
    assert_eq!(again, answer("0.00", "0.00", true));

    // The answer for an invoice stays the answer even once credit arrives.
    app.postpaid_rules("10", "5").await;
    app.verify_payment("evt-pm-c", "acct-c").await; // B: 10, C: 5
    assert_eq!(app.available_credit("acct-c").await, "5.00");
    let replay = app.apply_credit("inv-c-1", "acct-c", "20").await;
    assert_eq!(replay["applied"], "0.00", "{replay:#}");
    assert_eq!(replay["duplicate"], true, "{replay:#}");
    assert_eq!(app.available_credit("acct-c").await, "5.00");
    let fresh = app.apply_credit("inv-c-2", "acct-c", "20").await;
    assert_eq!(fresh, answer("5.00", "0.00", false));
    assert_eq!(app.ledger_sum("acct-c", "CREDIT").await, 0);
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 0);
    assert_eq!(app.balance_available("acct-c", "CREDIT").await, 0);
}

#[tokio::test]
async fn invalid_credit_requests_are_refused() {
    let app = spawn_app().await;
    alice_earns_credit(&app, "25").await;
    let before = app.snapshot().await;

    assert_failed(&app.apply_credit_raw("inv-x", "nobody", "10").await, "NOT_FOUND");
    for amount in ["-5", "-0.01"] {
        let body = app.apply_credit_raw("inv-y", "acct-a", amount).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    // An invoice of 0 is refused, or applies nothing; it never fails otherwise.
    for (invoice, amount) in [("inv-zero-1", "0"), ("inv-zero-2", "0.00")] {
        let body = app.apply_credit_raw(invoice, "acct-a", amount).await;
        if error_codes(&body).is_empty() {
            assert_eq!(body["data"]["applyCredit"], answer("0.00", "25.00", false), "{body:#}");
        } else {
            assert_failed(&body, "BAD_USER_INPUT");
        }
    }
    let vars = TestApp::apply_credit_input("inv-z", "acct-a", "10");
    let body = app
        .run(
            Some(&app.customer("acct-a")),
            "integration",
            "ApplyCredit",
            vars.clone(),
        )
        .await;
    assert_failed(&body, "FORBIDDEN");
    let body = app.run(None, "integration", "ApplyCredit", vars).await;
    assert_failed(&body, "UNAUTHENTICATED");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.available_credit("acct-a").await, "25.00");

    // Refused requests leave their invoice ids free; an admin token may apply credit too.
    let applied = app
        .run_ok(
            Some(&app.admin()),
            "integration",
            "ApplyCredit",
            TestApp::apply_credit_input("inv-y", "acct-a", "4"),
        )
        .await;
    assert_eq!(applied["applyCredit"], answer("4.00", "21.00", false));
    let applied = app.apply_credit("inv-x", "acct-a", "1").await;
    assert_eq!(applied, answer("1.00", "20.00", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applications_for_different_invoices_never_overdraw() {
    let app = spawn_app().await;
    alice_earns_credit(&app, "25").await;

    // Twenty invoices of 3.00 against 25.00: 8 × 3.00, 1 × 1.00, 11 × 0.00.
    let query = app.op("integration", "ApplyCredit");
    let vars = (0..20)
        .map(|i| TestApp::apply_credit_input(&format!("inv-race-{i}"), "acct-a", "3.00"))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    let mut applied: Vec<String> = Vec::new();
    for body in &bodies {
        let answer = data_of(body, "a concurrent ApplyCredit")["applyCredit"].clone();
        assert_eq!(answer["duplicate"], false, "{answer:#}");
        assert!(micros(s(&answer, "/remaining")) >= 0, "{answer:#}");
        assert!(
            micros(s(&answer, "/remaining")) <= 25_000_000 - micros(s(&answer, "/applied")),
            "{answer:#}"
        );
        applied.push(s(&answer, "/applied").to_owned());
    }
    let total: i64 = applied.iter().map(|a| micros(a)).sum();
    assert_eq!(
        total, 25_000_000,
        "the applied amounts add up to the credit: {applied:?}"
    );
    applied.sort_by_key(|a| std::cmp::Reverse(micros(a)));
    let mut expected = vec!["3.00".to_owned(); 8];
    expected.push("1.00".to_owned());
    expected.extend(vec!["0.00".to_owned(); 11]);
    assert_eq!(applied, expected);

    assert_eq!(
        app.credit("acct-a").await,
        ("0.00".into(), "0.00".into(), "25.00".into())
    );
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 0);
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 0);
    let mut entries = applied_entries(&app, "acct-a").await;
    entries.sort();
    let mut expected_entries = vec!["-3.00".to_owned(); 8];
    expected_entries.push("-1.00".to_owned());
    expected_entries.sort();
    assert_eq!(entries, expected_entries);
    assert_eq!(app.available_credit("acct-b").await, "5.00");
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_invoice_apply_credit_once() {
    let app = spawn_app().await;
    alice_earns_credit(&app, "25").await;

    let query = app.op("integration", "ApplyCredit");
    let vars = (0..20)
        .map(|_| TestApp::apply_credit_input("inv-once", "acct-a", "10"))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    let answers: Vec<Value> = bodies
        .iter()
        .map(|b| data_of(b, "a concurrent ApplyCredit")["applyCredit"].clone())
        .collect();
    let originals = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(originals, 1, "{answers:#?}");
    for answer in &answers {
        assert_eq!(answer["applied"], "10.00", "{answer:#}");
    }
    assert!(
        answers
            .iter()
            .any(|a| *a == json!({ "applied": "10.00", "remaining": "15.00", "duplicate": false })),
        "{answers:#?}"
    );
    assert_eq!(app.available_credit("acct-a").await, "15.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 15_000_000);
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 15_000_000);
    assert_eq!(applied_entries(&app, "acct-a").await, vec!["-10.00"]);
    app.assert_invariants().await;
}
