//! `SetAffiliateTerms`: an affiliate's own terms replace the value of the rules that pay it as
//! a referrer: fixed or a percentage (of an invoice), once per referral or on every event.
//! Setting them makes the account an approved affiliate, and is audited.

use crate::helpers::*;
use serde_json::{Value, json};

/// An affiliate with its own 15 % recurring terms earns 15 % of each of its friend's invoices,
/// where the rule pays others 5 % of the first invoice only; the decision says why.
#[tokio::test]
async fn an_affiliate_with_its_own_recurring_percentage_earns_it_on_every_invoice() {
    let app = spawn_app().await;
    let mut rule = rule_input(
        "5 % of the first invoice",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    rule["value"] = json!("5");
    rule["invoiceNumber"] = json!(1);
    let rule = app.create_rule_id(rule).await;
    let affiliate = app.register("acct-a", Some("Alice Adams"), None).await;
    let plain = app.register_code("acct-p", Some("Paul Plain"), None).await;
    app.register(
        "acct-b",
        Some("Bob Brown"),
        Some(s(&affiliate, "/account/referralCode")),
    )
    .await;
    app.register("acct-c", Some("Carol Clark"), Some(&plain)).await;

    let set = set_terms(
        &app,
        s(&affiliate, "/account/id"),
        json!({ "calculation": "PERCENT", "value": "15", "recurring": true }),
    )
    .await;
    assert_eq!(
        set["affiliate"],
        json!({ "status": "APPROVED", "terms": { "calculation": "PERCENT", "value": "15.00", "recurring": true } })
    );

    for n in 1..=2 {
        let invoice = paid(&app, &format!("inv-b-{n}"), "acct-b", "internet", "100.00").await;
        assert_eq!(rewards_of(&invoice), [credit_reward("acct-a", "15.00")], "{invoice:#}");
        assert!(
            reason(&invoice, &rule).ends_with("by the referrer's affiliate terms"),
            "{invoice:#}"
        );
        let other = paid(&app, &format!("inv-c-{n}"), "acct-c", "internet", "100.00").await;
        let expected = if n == 1 {
            vec![credit_reward("acct-p", "5.00")]
        } else {
            vec![]
        };
        assert_eq!(rewards_of(&other), expected, "{other:#}");
    }
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 30_000_000);
    assert_eq!(app.ledger_sum("acct-p", "CREDIT").await, 5_000_000);
    app.assert_invariants().await;
}

/// Fixed terms replace a fixed rule's amount; a percentage needs an invoice, so on a verified
/// payment method the rule's own amount stands; the referee's own reward is never touched.
#[tokio::test]
async fn fixed_terms_replace_the_amount_and_a_percentage_applies_to_invoices_only() {
    let app = spawn_app().await;
    app.create_rule_id(fixed_credit_rule(
        "10.00 for the referrer",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "10",
    ))
    .await;
    app.create_rule_id(fixed_credit_rule(
        "3.00 for the newcomer",
        "PAYMENT_METHOD_VERIFIED",
        "REFEREE",
        "3",
    ))
    .await;
    let fixed = app.register("acct-a", Some("Alice Adams"), None).await;
    let percent = app.register("acct-p", Some("Paul Plain"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(s(&fixed, "/account/referralCode")))
        .await;
    app.register(
        "acct-c",
        Some("Carol Clark"),
        Some(s(&percent, "/account/referralCode")),
    )
    .await;
    set_terms(
        &app,
        s(&fixed, "/account/id"),
        json!({ "calculation": "FIXED", "value": "25" }),
    )
    .await;
    set_terms(
        &app,
        s(&percent, "/account/id"),
        json!({ "calculation": "PERCENT", "value": "50" }),
    )
    .await;

    let b = app.verify_payment("pmv-b", "acct-b").await;
    let mut expected = vec![credit_reward("acct-a", "25.00"), credit_reward("acct-b", "3.00")];
    expected.sort();
    let mut got = rewards_of(&b);
    got.sort();
    assert_eq!(got, expected, "{b:#}");
    let c = app.verify_payment("pmv-c", "acct-c").await;
    let mut expected = vec![credit_reward("acct-p", "10.00"), credit_reward("acct-c", "3.00")];
    expected.sort();
    let mut got = rewards_of(&c);
    got.sort();
    assert_eq!(got, expected, "{c:#}");
    app.assert_invariants().await;
}

/// The answer, the audit log, an unchanged repeat that writes nothing, removing the terms, and
/// what is refused.
#[tokio::test]
async fn terms_are_audited_once_removable_and_checked() {
    let app = spawn_app().await;
    let account = app.register("acct-a", Some("Alice Adams"), None).await;
    let id = s(&account, "/account/id").to_owned();
    let audited = || async { nodes(&app.audit_log(100, None).await).len() };
    let before = audited().await;
    let terms = json!({ "calculation": "FIXED", "value": "7.5" });
    set_terms(&app, &id, terms.clone()).await;
    assert_eq!(audited().await, before + 1);
    let entry = &nodes(&app.audit_log(1, None).await)[0];
    assert_eq!(entry["action"], "SET_AFFILIATE_TERMS", "{entry:#}");
    set_terms(&app, &id, terms).await;
    assert_eq!(audited().await, before + 1, "the same terms again change nothing");

    let removed = set_terms(&app, &id, json!({ "calculation": null })).await;
    assert_eq!(removed["affiliate"], json!({ "status": "APPROVED", "terms": null }));
    assert_eq!(audited().await, before + 2);

    let snapshot = app.snapshot().await;
    for (input, code) in [
        (json!({ "calculation": "TIERS" }), "BAD_USER_INPUT"),
        (json!({ "calculation": "FIXED", "value": "0" }), "BAD_USER_INPUT"),
        (json!({ "calculation": "FIXED" }), "BAD_USER_INPUT"),
        (json!({ "calculation": "PERCENT", "value": "1001" }), "BAD_USER_INPUT"),
        (json!({ "calculation": null, "value": "5" }), "BAD_USER_INPUT"),
    ] {
        let body = set_terms_raw(&app, &id, input.clone()).await;
        assert_failed(&body, code);
    }
    let unknown = set_terms_raw(
        &app,
        &unknown_id_like(&id),
        json!({ "calculation": "FIXED", "value": "5" }),
    )
    .await;
    assert_failed(&unknown, "NOT_FOUND");
    assert_eq!(app.snapshot().await, snapshot, "nothing written");
}

async fn set_terms_raw(app: &TestApp, account_id: &str, terms: Value) -> Value {
    let mut input = terms;
    input["accountId"] = json!(account_id);
    app.run(
        Some(&app.admin()),
        "admin",
        "SetAffiliateTerms",
        json!({ "input": input }),
    )
    .await
}

/// SetAffiliateTerms that must succeed; `setAffiliateTerms`.
async fn set_terms(app: &TestApp, account_id: &str, terms: Value) -> Value {
    let body = set_terms_raw(app, account_id, terms).await;
    data_of(&body, "SetAffiliateTerms")["setAffiliateTerms"].clone()
}

/// An `affiliatesOnly` rule pays referrers that are approved affiliates (here made so by their
/// terms) and skips the others, saying why.
#[tokio::test]
async fn an_affiliates_only_rule_pays_approved_affiliates_only() {
    let app = spawn_app().await;
    let mut rule = fixed_credit_rule("Affiliates: 7.00", "PAYMENT_METHOD_VERIFIED", "REFERRER", "7");
    rule["affiliatesOnly"] = json!(true);
    let created = app.create_rule(rule).await;
    assert_eq!(created["affiliatesOnly"], true, "{created:#}");
    let rule = s(&created, "/id").to_owned();
    let affiliate = app.register("acct-a", Some("Alice Adams"), None).await;
    let plain = app.register_code("acct-p", Some("Paul Plain"), None).await;
    app.register(
        "acct-b",
        Some("Bob Brown"),
        Some(s(&affiliate, "/account/referralCode")),
    )
    .await;
    app.register("acct-c", Some("Carol Clark"), Some(&plain)).await;
    set_terms(
        &app,
        s(&affiliate, "/account/id"),
        json!({ "calculation": "FIXED", "value": "7" }),
    )
    .await;

    let b = app.verify_payment("pmv-b", "acct-b").await;
    assert_eq!(rewards_of(&b), [credit_reward("acct-a", "7.00")], "{b:#}");
    let c = app.verify_payment("pmv-c", "acct-c").await;
    assert_eq!(outcome(&c, &rule), "SKIPPED", "{c:#}");
    assert!(reason(&c, &rule).contains("approved affiliates only"), "{c:#}");
    app.assert_invariants().await;
}
