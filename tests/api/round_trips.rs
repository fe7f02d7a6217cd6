//! What clients naturally send back: a rule form returned whole (neutral values of options the
//! server does not run yet included), a claim retried after the settings changed; and the
//! reward store's claim limits (`CLAIM_LIMIT`).

use crate::helpers::*;
use serde_json::{Value, json};

/// A rule as `RewardRules` shows it, turned into the input an admin console sends back: the
/// same fields without the id.
fn as_input(rule: &Value) -> Value {
    let mut input = rule.clone();
    input.as_object_mut().expect("a rule object").remove("id");
    input
}

#[tokio::test]
async fn a_rule_read_from_the_console_goes_back_unchanged() {
    let app = spawn_app().await;
    let mut top_up = fixed_credit_rule("Top-up credit", "TOP_UP_TOTAL_REACHED", "REFERRER", "10");
    top_up["threshold"] = json!("25");
    top_up["accountGroups"] = json!(["business"]);
    app.create_rule(top_up).await;
    app.create_rule(fixed_credit_rule("Sign-up credit", "SIGNUP", "REFEREE", "2"))
        .await;

    let before = app.rules().await;
    assert!(before.len() >= 3, "{before:#?}");
    for rule in &before {
        let id = s(rule, "/id");
        let updated = app.update_rule(id, as_input(rule)).await;
        assert_eq!(&updated, rule, "sending a rule back as it was read changes nothing");
    }
    assert_eq!(app.rules().await, before);
}

#[tokio::test]
async fn neutral_values_of_options_not_built_are_accepted_and_set_ones_are_not() {
    let app = spawn_app().await;
    let mut form = fixed_credit_rule("From a form", "PAYMENT_METHOD_VERIFIED", "REFERRER", "5");
    for (field, neutral) in [
        ("productCategories", json!([])),
        ("accountGroups", json!([])),
        ("redeemableCategories", json!([])),
        ("holdDays", json!(0)),
        ("minActiveReferrals", json!(0)),
        ("affiliatesOnly", json!(false)),
        ("recurring", json!(false)),
        ("invoiceNumber", Value::Null),
        ("windowDays", json!(0)),
        ("maxOccurrences", Value::Null),
        ("capPerReferral", Value::Null),
        ("expiresAfterDays", Value::Null),
        ("threshold", Value::Null),
    ] {
        form[field] = neutral;
    }
    let created = app.create_rule(form.clone()).await;
    // Empty lists are no condition at all, as the rule shows.
    assert!(created["productCategories"].is_null(), "{created:#}");
    assert!(created["accountGroups"].is_null(), "{created:#}");
    let id = s(&created, "/id").to_owned();
    app.update_rule(&id, form.clone()).await;

    // Anything else than the neutral value of an option not built, or a value out of range,
    // is still refused, by create and update alike.
    let rules_before = app.rules().await;
    for (field, value) in [
        ("holdDays", json!(-1)),
        ("minActiveReferrals", json!(2)),
        ("productCategories", json!(["residential"])),
    ] {
        let mut input = form.clone();
        input[field] = value;
        assert_failed(&app.create_rule_raw(input.clone()).await, "BAD_USER_INPUT");
        assert_failed(&app.update_rule_raw(&id, input).await, "BAD_USER_INPUT");
    }
    assert_eq!(app.rules().await, rules_before);
}

#[tokio::test]
async fn a_claim_retried_after_gb_per_claim_changed_answers_the_first_claim() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "20").await; // A: 300 points
    let first = app.claim("acct-a", &provider_id, Some("claim-1")).await;
    assert_eq!(first["claim"]["gb"], 1, "{first:#}");
    assert_eq!(app.available_points("acct-a").await, "200.00");

    app.update_settings(json!({ "gbPerClaim": 2 })).await;
    let retry = app.claim("acct-a", &provider_id, Some("claim-1")).await;
    assert_eq!(
        retry["claim"], first["claim"],
        "the retry answers the first claim: {retry:#}"
    );
    assert_eq!(app.available_points("acct-a").await, "200.00", "and debits nothing");
    assert_eq!(app.count("claims").await, 1);

    // Another provider under the same key is another request.
    let other = app.upsert_provider("otherco", "OtherCo", Some("10")).await;
    assert_failed(
        &app.claim_raw("acct-a", &other, Some("claim-1")).await,
        "IDEMPOTENCY_CONFLICT",
    );
    // A new key claims at the new size.
    let second = app.claim("acct-a", &provider_id, Some("claim-2")).await;
    assert_eq!(second["claim"]["gb"], 2, "{second:#}");
    app.assert_invariants().await;
}

#[tokio::test]
async fn deciding_a_claim_the_other_way_says_so_in_plain_case() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let claim_id = s(&app.claim("acct-a", &provider_id, None).await, "/claim/id").to_owned();
    let complete = |status: &'static str| {
        let claim_id = claim_id.clone();
        let app = &app;
        async move {
            app.run(
                Some(&app.service()),
                "integration",
                "CompleteClaim",
                json!({ "input": { "claimId": claim_id, "status": status } }),
            )
            .await
        }
    };
    assert!(complete("FAILED").await["errors"].is_null());
    let refused = complete("COMPLETED").await;
    assert_failed(&refused, "BAD_USER_INPUT");
    assert_eq!(
        refused["errors"][0]["message"], "the claim is already FAILED",
        "{refused:#}"
    );
}

const LIMITS: &str = "{ programSettings { maxPendingClaims maxClaimsPerDay } }";

#[tokio::test]
async fn claims_beyond_the_pending_limit_are_refused_until_one_is_delivered() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "100").await; // A: 1,500 points
    let admin = app.admin();
    assert_eq!(
        app.gql(Some(&admin), LIMITS, json!({})).await["data"]["programSettings"],
        json!({ "maxPendingClaims": null, "maxClaimsPerDay": null }),
        "no limits by default"
    );
    app.update_settings(json!({ "maxPendingClaims": 2 })).await;

    let first = app.claim("acct-a", &provider_id, None).await;
    app.claim("acct-a", &provider_id, None).await;
    let before = app.snapshot().await;
    let refused = app.claim_raw("acct-a", &provider_id, Some("third")).await;
    assert_failed(&refused, "CLAIM_LIMIT");
    assert_eq!(app.snapshot().await, before, "a refused claim writes nothing");
    assert_eq!(app.available_points("acct-a").await, "1300.00");

    // Delivered (or failed), a claim no longer waits: the same request now goes through.
    app.run_ok(
        Some(&app.service()),
        "integration",
        "CompleteClaim",
        json!({ "input": { "claimId": s(&first, "/claim/id"), "status": "COMPLETED" } }),
    )
    .await;
    app.claim("acct-a", &provider_id, Some("third")).await;
    assert_failed(&app.claim_raw("acct-a", &provider_id, None).await, "CLAIM_LIMIT");

    // null removes the limit; values out of range are refused.
    app.update_settings(json!({ "maxPendingClaims": null })).await;
    app.claim("acct-a", &provider_id, None).await;
    for bad in [json!(0), json!(-1), json!(10_001)] {
        let body = app
            .run(
                Some(&admin),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": { "maxPendingClaims": bad } }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    app.assert_invariants().await;
}

#[tokio::test]
async fn claims_beyond_the_daily_limit_are_refused_even_when_delivered() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "100").await;
    app.update_settings(json!({ "maxClaimsPerDay": 2 })).await;
    for _ in 0..2 {
        let claim = app.claim("acct-a", &provider_id, None).await;
        app.run_ok(
            Some(&app.service()),
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": s(&claim, "/claim/id"), "status": "COMPLETED" } }),
        )
        .await;
    }
    assert_failed(&app.claim_raw("acct-a", &provider_id, None).await, "CLAIM_LIMIT");
    // The limit is per account: B has points of its own from C's purchase.
    app.purchase("evt-c-1", "acct-c", RESIDENTIAL, "10").await;
    app.claim("acct-b", &provider_id, None).await;
    app.assert_invariants().await;
}

#[tokio::test]
async fn concurrent_claims_never_pass_the_pending_limit() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "100").await; // 1,500: enough for 15
    app.update_settings(json!({ "maxPendingClaims": 3 })).await;
    let attempts = (0..20).map(|_| app.claim_raw("acct-a", &provider_id, None));
    let bodies = futures::future::join_all(attempts).await;
    let ok = bodies.iter().filter(|b| b["errors"].is_null()).count();
    let limited = bodies.iter().filter(|b| error_codes(b) == ["CLAIM_LIMIT"]).count();
    assert_eq!((ok, limited), (3, 17), "{bodies:#?}");
    assert_eq!(app.available_points("acct-a").await, "1200.00");
    app.assert_invariants().await;
}
