//! The rule simulator: what an event would do now, under the published rules or a draft set,
//! writing nothing; and what it answers is what the real event then does.

use crate::helpers::*;
use serde_json::{Value, json};

async fn simulate_raw(app: &TestApp, event: Value, rules: Option<Value>) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "SimulateEvent",
        json!({ "event": event, "rules": rules }),
    )
    .await
}

async fn simulate(app: &TestApp, event: Value, rules: Option<Value>) -> Value {
    let body = simulate_raw(app, event, rules).await;
    data_of(&body, "SimulateEvent")["simulateEvent"].clone()
}

fn purchase_event(event_id: &str, external_id: &str, product: &str, gb: &str) -> Value {
    json!({ "purchase": TestApp::purchase_input(event_id, external_id, product, gb)["input"] })
}

#[tokio::test]
async fn the_simulator_answers_what_the_real_event_then_does_and_writes_nothing() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let (referrer_rule, _) = app.postpaid_rules("10", "5").await;

    for (event, record) in [
        (purchase_event("inv-1", "acct-b", RESIDENTIAL, "10"), "RecordPurchase"),
        (purchase_event("inv-2", "acct-b", RESIDENTIAL, "3"), "RecordPurchase"),
        (purchase_event("inv-3", "acct-c", DATACENTER, "3"), "RecordPurchase"),
        (
            json!({ "paymentMethodVerified": TestApp::payment_verified_input("pmv-c", "acct-c")["input"] }),
            "RecordPaymentMethodVerified",
        ),
    ] {
        let before = app.snapshot().await;
        let rules_before = app.rules().await;
        let simulated = simulate(&app, event.clone(), None).await;
        assert_eq!(
            app.snapshot().await,
            before,
            "a simulation writes nothing: {simulated:#}"
        );
        assert_eq!(app.rules().await, rules_before);
        assert_eq!(simulated["duplicate"], false, "{simulated:#}");

        let input = event
            .as_object()
            .expect("one field")
            .values()
            .next()
            .expect("input")
            .clone();
        let body = app
            .run(Some(&app.service()), "integration", record, json!({ "input": input }))
            .await;
        let data = data_of(&body, record);
        let real = data.as_object().expect("one field").values().next().expect("payload");
        assert_eq!(simulated["kind"], real["event"]["kind"], "{simulated:#}");
        assert_eq!(comparable(&simulated), comparable(real), "{simulated:#} vs {real:#}");
    }
    // The real events did pay: the simulations were not empty answers.
    assert_eq!(app.available_points("acct-a").await, "150.00");
    assert_eq!(app.available_credit("acct-b").await, "10.00");
    let paid = simulate(&app, purchase_event("inv-1", "acct-b", RESIDENTIAL, "10"), None).await;
    assert_eq!(
        paid["duplicate"], true,
        "an eventId already recorded is its replay: {paid:#}"
    );
    assert_eq!(paid["rewards"][0]["amount"], "150.00", "{paid:#}");
    let verified = simulate(
        &app,
        json!({ "paymentMethodVerified": TestApp::payment_verified_input("pmv-c", "acct-c")["input"] }),
        None,
    )
    .await;
    assert_eq!(verified["duplicate"], true, "{verified:#}");
    assert!(
        verified["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .any(|d| d["rule"]["id"] == referrer_rule.as_str()),
        "{verified:#}"
    );
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_draft_rule_set_is_simulated_in_place_of_the_published_rules_and_never_saved() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let seeded = s(&app.seeded_rule().await, "/id").to_owned();
    let mut disabled = fixed_credit_rule("Disabled draft", "FIRST_PURCHASE", "REFEREE", "99");
    disabled["enabled"] = json!(false);
    let mut rate = rule_input("Draft: 200 points", "FIRST_PURCHASE", "REFERRER", "POINTS", "FIXED");
    rate["value"] = json!("200");
    rate["productCategories"] = json!(["residential"]);
    let drafts = json!([
        fixed_credit_rule("Draft: credit for the newcomer", "FIRST_PURCHASE", "REFEREE", "3"),
        disabled,
        rate,
    ]);
    let before = app.snapshot().await;
    let rules_before = app.rules().await;
    let event = purchase_event("inv-1", "acct-b", RESIDENTIAL, "10");
    let simulated = simulate(&app, event.clone(), Some(drafts.clone())).await;
    assert_eq!(app.snapshot().await, before, "{simulated:#}");
    assert_eq!(app.rules().await, rules_before, "nothing is saved");

    // The enabled drafts decide, by position; the published rule does not.
    let decisions = simulated["decisions"].as_array().expect("decisions");
    let indexes: Vec<&Value> = decisions.iter().map(|d| &d["draftIndex"]).collect();
    assert_eq!(indexes, [&json!(0), &json!(2)], "{simulated:#}");
    assert!(decisions.iter().all(|d| d["rule"].is_null()), "{simulated:#}");
    assert!(decisions.iter().all(|d| d["outcome"] == "REWARDED"), "{simulated:#}");
    assert!(!simulated.to_string().contains(&seeded), "{simulated:#}");
    let entries: Vec<(String, String, String)> = simulated["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|e| {
            (
                s(e, "/account/externalId").into(),
                s(e, "/unit").into(),
                s(e, "/amount").into(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("acct-b".into(), "CREDIT".into(), "3.00".into()),
            ("acct-a".into(), "POINTS".into(), "200.00".into()),
        ],
        "{simulated:#}"
    );

    // Under the published rules the same event pays 150 points, as the real event then does.
    let published = simulate(&app, event.clone(), None).await;
    assert_eq!(published["rewards"][0]["amount"], "150.00", "{published:#}");
    assert_eq!(
        published["decisions"][0]["rule"]["id"],
        seeded.as_str(),
        "{published:#}"
    );
    let real = app.purchase("inv-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(comparable(&published), comparable(&real));

    // A draft is checked as a new rule would be, and named by its position.
    let bad = fixed_credit_rule("Bad draft", "FIRST_PURCHASE", "REFERRER", "-1");
    let body = simulate_raw(&app, event, Some(json!([drafts[0].clone(), bad]))).await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert!(body.to_string().contains("rules[1]"), "{body:#}");
}

#[tokio::test]
async fn a_simulated_correction_of_the_first_purchase_is_what_the_real_one_does() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let mut first = TestApp::purchase_input("p-noon", "acct-b", RESIDENTIAL, "10");
    first["input"]["occurredAt"] = json!("2026-01-10T12:00:00Z");
    app.run_ok(Some(&app.service()), "integration", "RecordPurchase", first)
        .await;
    let mut late = TestApp::purchase_input("p-eight", "acct-b", RESIDENTIAL, "4");
    late["input"]["occurredAt"] = json!("2026-01-10T08:00:00Z");

    let before = app.snapshot().await;
    let simulated = simulate(&app, json!({ "purchase": late["input"] }), None).await;
    assert_eq!(app.snapshot().await, before, "{simulated:#}");
    assert_eq!(app.available_points("acct-a").await, "150.00");
    let real = app
        .run_ok(Some(&app.service()), "integration", "RecordPurchase", late)
        .await["recordPurchase"]
        .clone();
    assert_eq!(comparable(&simulated), comparable(&real), "{simulated:#} vs {real:#}");
    let kinds: Vec<&Value> = simulated["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|e| &e["kind"])
        .collect();
    assert_eq!(kinds, [&json!("REVERSAL"), &json!("REWARD")], "{simulated:#}");
    app.assert_invariants().await;
}
