//! Reward rules: admins create and change them through the contract; every recorded event is
//! decided by every enabled rule; a rule pays at most once per referral unless it is recurring;
//! a rule's edit never changes what it already paid. Program 3 runs on the seeded rule.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn the_seeded_rule_is_listed_and_rules_are_created_and_changed_through_the_contract() {
    let app = spawn_app().await;

    // The migration seeds program 3's rule.
    let rules = app.rules().await;
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let seeded = &rules[0];
    assert!(!s(seeded, "/id").is_empty(), "{seeded:#}");
    let mut expected = rule_with_defaults(&rule_input(
        SEEDED_RULE,
        "FIRST_PURCHASE",
        "REFERRER",
        "POINTS",
        "PRODUCT_RATE",
    ));
    expected["productCategories"] = json!(["residential"]);
    assert_eq!(without_id(seeded), expected, "{seeded:#}");

    // A rule with only what is required: the defaults are filled in.
    let postpaid_input = fixed_credit_rule("Credit for the referrer", "PAYMENT_METHOD_VERIFIED", "REFERRER", "25");
    let postpaid = app.create_rule(postpaid_input.clone()).await;
    let mut expected_postpaid = rule_with_defaults(&postpaid_input);
    expected_postpaid["value"] = json!("25.00");
    assert_eq!(without_id(&postpaid), expected_postpaid, "{postpaid:#}");
    let postpaid_id = s(&postpaid, "/id").to_owned();

    // Every option that is built: disabled, recurring, groups, a threshold.
    let mut top_up_input = fixed_credit_rule(
        "Credit for business newcomers who top up",
        "TOP_UP_TOTAL_REACHED",
        "REFEREE",
        "7.5",
    );
    top_up_input["enabled"] = json!(false);
    top_up_input["recurring"] = json!(true);
    top_up_input["threshold"] = json!("10");
    top_up_input["accountGroups"] = json!(["business", "enterprise"]);
    top_up_input["affiliatesOnly"] = json!(false);
    let top_up = app.create_rule(top_up_input.clone()).await;
    let mut expected_top_up = rule_with_defaults(&top_up_input);
    expected_top_up["value"] = json!("7.50");
    expected_top_up["threshold"] = json!("10.00");
    assert_eq!(without_id(&top_up), expected_top_up, "{top_up:#}");
    let top_up_id = s(&top_up, "/id").to_owned();

    // Threshold 0 (any top-up), a product-rate rule limited to categories, a signup bonus.
    let mut any_top_up = fixed_credit_rule("Any top-up", "TOP_UP_TOTAL_REACHED", "REFERRER", "1");
    any_top_up["threshold"] = json!("0");
    let any_top_up = app.create_rule(any_top_up).await;
    assert_eq!(any_top_up["threshold"], "0.00", "{any_top_up:#}");
    assert_eq!(any_top_up["value"], "1.00", "{any_top_up:#}");
    let mut rate = rule_input(
        "Points for datacenter purchases",
        "FIRST_PURCHASE",
        "REFERRER",
        "POINTS",
        "PRODUCT_RATE",
    );
    rate["productCategories"] = json!(["datacenter"]);
    let rate = app.create_rule(rate).await;
    assert_eq!(rate["value"], Value::Null, "{rate:#}");
    assert_eq!(rate["productCategories"], json!(["datacenter"]), "{rate:#}");
    let signup = app
        .create_rule(fixed_credit_rule("Signup bonus", "SIGNUP", "REFEREE", "2"))
        .await;
    assert_eq!(signup["trigger"], "SIGNUP", "{signup:#}");
    assert_eq!(signup["beneficiary"], "REFEREE", "{signup:#}");

    let rules = app.rules().await;
    assert_eq!(rules.len(), 6, "{rules:#?}");
    let mut ids: Vec<&str> = rules.iter().map(|r| s(r, "/id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "every rule has its own id: {rules:#?}");
    let listed = |id: &str| -> Value {
        rules
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("rule {id} is not listed: {rules:#?}"))
    };
    assert_eq!(listed(&postpaid_id), postpaid, "the list shows what was created");
    assert_eq!(listed(&top_up_id), top_up, "disabled rules are listed too");
    assert_eq!(listed(s(seeded, "/id")), *seeded);

    // An update replaces the whole definition and keeps the id.
    let mut changed_input = fixed_credit_rule(
        "Credit for the referrer (raised)",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "30.00",
    );
    changed_input["enabled"] = json!(false);
    changed_input["accountGroups"] = json!(["residential"]);
    let changed = app.update_rule(&postpaid_id, changed_input.clone()).await;
    let mut expected_changed = rule_with_defaults(&changed_input);
    expected_changed["value"] = json!("30.00");
    assert_eq!(changed["id"], postpaid_id.as_str(), "{changed:#}");
    assert_eq!(without_id(&changed), expected_changed, "{changed:#}");
    let rules = app.rules().await;
    assert_eq!(rules.len(), 6, "an update creates no rule: {rules:#?}");
    let listed: Vec<&Value> = rules.iter().filter(|r| r["id"] == postpaid_id.as_str()).collect();
    assert_eq!(listed, vec![&changed], "{rules:#?}");

    // Options left out of an update go back to their defaults.
    let plain = fixed_credit_rule(
        "Credit for business newcomers who top up",
        "TOP_UP_TOTAL_REACHED",
        "REFEREE",
        "7.50",
    );
    let mut plain_with_threshold = plain.clone();
    plain_with_threshold["threshold"] = json!("10.00");
    plain_with_threshold["enabled"] = json!(true);
    let reset = app.update_rule(&top_up_id, plain_with_threshold.clone()).await;
    let mut expected_reset = rule_with_defaults(&plain_with_threshold);
    expected_reset["value"] = json!("7.50");
    assert_eq!(without_id(&reset), expected_reset, "{reset:#}");

    // An unknown rule is not found, and nothing changes.
    let before = app.rules().await;
    let body = app.update_rule_raw(&unknown_id_like(&postpaid_id), changed_input).await;
    assert_failed(&body, "NOT_FOUND");
    assert_eq!(app.rules().await, before);
}

#[tokio::test]
async fn invalid_rules_and_options_that_are_not_built_are_refused() {
    let app = spawn_app().await;
    let valid = fixed_credit_rule("Credit for the referrer", "PAYMENT_METHOD_VERIFIED", "REFERRER", "10");
    let existing = app.create_rule(valid.clone()).await;
    let existing_id = s(&existing, "/id").to_owned();

    let with = |base: &Value, changes: Value| -> Value {
        let mut input = base.clone();
        for (key, value) in changes.as_object().expect("changes") {
            input[key] = value.clone();
        }
        input
    };
    let mut top_up = fixed_credit_rule("Top-up", "TOP_UP_TOTAL_REACHED", "REFERRER", "10");
    top_up["threshold"] = json!("10");
    let rate = {
        let mut rate = rule_input("Rate", "FIRST_PURCHASE", "REFERRER", "POINTS", "PRODUCT_RATE");
        rate["productCategories"] = json!(["residential"]);
        rate
    };
    let cases = [
        ("FIXED without a value", with(&valid, json!({ "value": null }))),
        ("FIXED with value 0", with(&valid, json!({ "value": "0" }))),
        ("FIXED with a negative value", with(&valid, json!({ "value": "-5" }))),
        (
            "PRODUCT_RATE with another trigger",
            with(&valid, json!({ "calculation": "PRODUCT_RATE", "value": null })),
        ),
        ("PRODUCT_RATE with a value", with(&rate, json!({ "value": "5" }))),
        (
            "a threshold on a payment-method rule",
            with(&valid, json!({ "threshold": "10" })),
        ),
        (
            "a top-up rule without a threshold",
            with(&top_up, json!({ "threshold": null })),
        ),
        ("a negative threshold", with(&top_up, json!({ "threshold": "-1" }))),
        (
            "product categories on a payment-method rule",
            with(&valid, json!({ "productCategories": ["residential"] })),
        ),
        (
            "product categories on a top-up rule",
            with(&top_up, json!({ "productCategories": ["residential"] })),
        ),
        ("unit CASH", with(&valid, json!({ "unit": "CASH" }))),
        ("invoiceNumber", with(&valid, json!({ "invoiceNumber": 1 }))),
        ("windowDays", with(&valid, json!({ "windowDays": 30 }))),
        ("maxOccurrences", with(&valid, json!({ "maxOccurrences": 3 }))),
        ("capPerReferral", with(&valid, json!({ "capPerReferral": "50" }))),
        ("holdDays", with(&valid, json!({ "holdDays": 30 }))),
        ("expiresAfterDays", with(&valid, json!({ "expiresAfterDays": 180 }))),
        (
            "redeemableCategories",
            with(&valid, json!({ "redeemableCategories": ["compute"] })),
        ),
        ("minActiveReferrals", with(&valid, json!({ "minActiveReferrals": 2 }))),
        ("affiliatesOnly", with(&valid, json!({ "affiliatesOnly": true }))),
    ];

    let rules_before = app.rules().await;
    let snapshot_before = app.snapshot().await;
    for (what, input) in &cases {
        let body = app.create_rule_raw(input.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert!(
            body["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: the refusal says why: {body:#}"
        );
        let body = app.update_rule_raw(&existing_id, input.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(app.rules().await, rules_before, "after refusing {what}");
    }
    assert_eq!(app.snapshot().await, snapshot_before);

    // The valid neighbours of those cases are accepted.
    for input in [
        with(
            &valid,
            json!({ "affiliatesOnly": false, "name": "affiliatesOnly false" }),
        ),
        with(&top_up, json!({ "threshold": "0", "name": "threshold 0" })),
        with(&rate, json!({ "name": "rate" })),
        with(&valid, json!({ "unit": "POINTS", "name": "points" })),
    ] {
        app.create_rule(input).await;
    }
    assert_eq!(app.rules().await.len(), rules_before.len() + 4);
}

#[tokio::test]
async fn a_disabled_rule_pays_nothing_and_is_left_out_of_the_decisions() {
    let app = spawn_app().await;
    let (referrer_rule, referee_rule) = app.postpaid_rules("10", "5").await;
    let seeded_id = s(&app.seeded_rule().await, "/id").to_owned();
    // The referrer's rule is switched off.
    let off = fixed_credit_rule(
        "Credit for the referrer: friend verified a payment method",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "10",
    );
    let mut off_input = off.clone();
    off_input["enabled"] = json!(false);
    let updated = app.update_rule(&referrer_rule, off_input).await;
    assert_eq!(updated["enabled"], false, "{updated:#}");

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    let paid = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(
        rewards_of(&paid),
        vec![credit_reward("acct-b", "5.00")],
        "only the enabled rule pays: {paid:#}"
    );
    assert!(
        !has_decision(&paid, &referrer_rule),
        "a disabled rule has no decision: {paid:#}"
    );
    let mut expected_ids = vec![referee_rule.clone(), seeded_id.clone()];
    expected_ids.sort();
    assert_eq!(decided_rule_ids(&paid), expected_ids, "{paid:#}");
    assert_eq!(decision_for(&paid, &referee_rule)["outcome"], "REWARDED", "{paid:#}");
    assert_eq!(decision_for(&paid, &seeded_id)["outcome"], "SKIPPED", "{paid:#}");
    assert_eq!(
        app.credit("acct-a").await,
        ("0.00".into(), "0.00".into(), "0.00".into())
    );
    assert_eq!(
        app.credit("acct-b").await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );

    // The seeded rule switched off: a first residential purchase pays nothing.
    app.setup_catalog().await;
    let mut seeded_off = rule_input(SEEDED_RULE, "FIRST_PURCHASE", "REFERRER", "POINTS", "PRODUCT_RATE");
    seeded_off["productCategories"] = json!(["residential"]);
    seeded_off["enabled"] = json!(false);
    app.update_rule(&seeded_id, seeded_off).await;
    let bought = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(bought["rewards"], json!([]), "{bought:#}");
    assert!(!has_decision(&bought, &seeded_id), "{bought:#}");
    assert!(!has_decision(&bought, &referrer_rule), "{bought:#}");
    assert_eq!(decided_rule_ids(&bought), vec![referee_rule.clone()], "{bought:#}");
    assert_eq!(decision_for(&bought, &referee_rule)["outcome"], "SKIPPED", "{bought:#}");
    assert_eq!(app.available_points("acct-a").await, "0.00");

    // With every rule off, an event is recorded with no decision at all.
    let mut referee_off = fixed_credit_rule(
        "Credit for the newcomer: payment method verified",
        "PAYMENT_METHOD_VERIFIED",
        "REFEREE",
        "5",
    );
    referee_off["enabled"] = json!(false);
    app.update_rule(&referee_rule, referee_off).await;
    app.register("acct-c", Some("Carol Clark"), Some(&a)).await;
    let quiet = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(quiet["event"]["duplicate"], false, "{quiet:#}");
    assert_eq!(quiet["rewards"], json!([]), "{quiet:#}");
    assert_eq!(quiet["decisions"], json!([]), "{quiet:#}");
    assert_eq!(app.available_credit("acct-c").await, "0.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 0);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.ledger_sum("acct-c", "CREDIT").await, 0);
}

#[tokio::test]
async fn a_rule_edit_leaves_what_it_already_paid_untouched() {
    let app = spawn_app().await;
    let rule_id = app
        .create_rule_id(fixed_credit_rule(
            "Credit for the referrer",
            "PAYMENT_METHOD_VERIFIED",
            "REFERRER",
            "10",
        ))
        .await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    app.register("acct-c", Some("Carol Clark"), Some(&a)).await;

    let first = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(rewards_of(&first), vec![credit_reward("acct-a", "10.00")], "{first:#}");
    let history_before = app.history("acct-a").await;
    assert_eq!(history_before.len(), 1, "{history_before:#?}");

    // The rule pays 50 from now on, under a new name.
    let edited = app
        .update_rule(
            &rule_id,
            fixed_credit_rule(
                "Credit for the referrer (raised)",
                "PAYMENT_METHOD_VERIFIED",
                "REFERRER",
                "50",
            ),
        )
        .await;
    assert_eq!(edited["value"], "50.00", "{edited:#}");

    // What was paid stays: the balance, the entry and its description, the replayed answer.
    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(app.history("acct-a").await, history_before);
    let replay = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(replay["event"]["duplicate"], true, "{replay:#}");
    assert_eq!(replay["rewards"], first["rewards"], "{replay:#}");
    let friends = app.friends("acct-a").await;
    let b = friends
        .iter()
        .find(|f| f["referee"]["displayName"] == "Bo*** B.")
        .expect("B is A's friend");
    assert_eq!(b["earned"], json!([{ "unit": "CREDIT", "amount": "10.00" }]), "{b:#}");

    // B's second verification does not top up the difference.
    let again = app.verify_payment("evt-pm-b-2", "acct-b").await;
    assert_eq!(again["rewards"], json!([]), "{again:#}");
    assert_eq!(decision_for(&again, &rule_id)["outcome"], "SKIPPED", "{again:#}");

    // A new qualification is paid at the new value.
    let second = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(
        rewards_of(&second),
        vec![credit_reward("acct-a", "50.00")],
        "{second:#}"
    );
    assert_eq!(
        app.credit("acct-a").await,
        ("60.00".into(), "0.00".into(), "60.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 60_000_000);
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 60_000_000);
    let history = app.history("acct-a").await;
    let amounts: Vec<&str> = history.iter().map(|e| s(e, "/amount")).collect();
    assert_eq!(amounts, vec!["50.00", "10.00"], "{history:#?}");
    assert_eq!(history[1], history_before[0], "the old entry is unchanged");
}

#[tokio::test]
async fn a_rule_pays_once_per_referral_unless_it_is_recurring() {
    let app = spawn_app().await;
    let once = app
        .create_rule_id(fixed_credit_rule(
            "Credit once",
            "PAYMENT_METHOD_VERIFIED",
            "REFERRER",
            "10",
        ))
        .await;
    let mut recurring_input = rule_input(
        "Points every time",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "POINTS",
        "FIXED",
    );
    recurring_input["value"] = json!("3");
    recurring_input["recurring"] = json!(true);
    let recurring = app.create_rule(recurring_input).await;
    assert_eq!(recurring["recurring"], true, "{recurring:#}");
    let recurring = s(&recurring, "/id").to_owned();

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;

    let first = app.verify_payment("evt-1", "acct-b").await;
    assert_eq!(
        rewards_of(&first),
        vec![
            credit_reward("acct-a", "10.00"),
            (
                "acct-a".into(),
                "REWARD".into(),
                "POINTS".into(),
                "3.00".into(),
                "POSTED".into()
            ),
        ],
        "{first:#}"
    );
    assert_eq!(decision_for(&first, &once)["outcome"], "REWARDED", "{first:#}");
    assert_eq!(decision_for(&first, &recurring)["outcome"], "REWARDED", "{first:#}");

    for event_id in ["evt-2", "evt-3"] {
        let later = app.verify_payment(event_id, "acct-b").await;
        assert_eq!(
            rewards_of(&later),
            vec![(
                "acct-a".into(),
                "REWARD".into(),
                "POINTS".into(),
                "3.00".into(),
                "POSTED".into()
            )],
            "{later:#}"
        );
        let skipped = decision_for(&later, &once);
        assert_eq!(skipped["outcome"], "SKIPPED", "{later:#}");
        assert!(
            s(skipped, "/reason").to_lowercase().contains("already"),
            "the reason says it was paid already: {later:#}"
        );
        assert_eq!(decision_for(&later, &recurring)["outcome"], "REWARDED", "{later:#}");
    }
    // A replayed event is not a new occurrence.
    let replay = app.verify_payment("evt-3", "acct-b").await;
    assert_eq!(replay["event"]["duplicate"], true, "{replay:#}");

    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(
        app.points("acct-a").await,
        ("9.00".into(), "0.00".into(), "9.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 9_000_000);
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 0);
    assert_eq!(app.count("ledger_entries").await, 4);
}

#[tokio::test]
async fn account_groups_limit_a_rule_to_referees_of_those_groups() {
    let app = spawn_app().await;
    let mut business = fixed_credit_rule("Business referral", "PAYMENT_METHOD_VERIFIED", "REFERRER", "20");
    business["accountGroups"] = json!(["business"]);
    let business = app.create_rule_id(business).await;
    let mut residential = fixed_credit_rule("Residential referral", "PAYMENT_METHOD_VERIFIED", "REFERRER", "5");
    residential["accountGroups"] = json!(["residential"]);
    let residential = app.create_rule_id(residential).await;

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    for (ext, name, group) in [
        ("acct-b", "Bob Brown", Some("business")),
        ("acct-c", "Carol Clark", Some("residential")),
        ("acct-d", "Dan Dale", None),
    ] {
        let mut input = json!({ "externalId": ext, "displayName": name, "referralCode": a });
        if let Some(group) = group {
            input["group"] = json!(group);
        }
        let registered = app.register_with(input).await;
        assert_eq!(registered["referral"]["status"], "PENDING", "{registered:#}");
    }

    let b = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(rewards_of(&b), vec![credit_reward("acct-a", "20.00")], "{b:#}");
    assert_eq!(decision_for(&b, &business)["outcome"], "REWARDED", "{b:#}");
    let skipped = decision_for(&b, &residential);
    assert_eq!(skipped["outcome"], "SKIPPED", "{b:#}");
    assert!(!s(skipped, "/reason").is_empty(), "{b:#}");

    let c = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(rewards_of(&c), vec![credit_reward("acct-a", "5.00")], "{c:#}");
    assert_eq!(decision_for(&c, &business)["outcome"], "SKIPPED", "{c:#}");
    assert_eq!(decision_for(&c, &residential)["outcome"], "REWARDED", "{c:#}");

    // An account in no group matches neither.
    let d = app.verify_payment("evt-pm-d", "acct-d").await;
    assert_eq!(d["rewards"], json!([]), "{d:#}");
    assert_eq!(decision_for(&d, &business)["outcome"], "SKIPPED", "{d:#}");
    assert_eq!(decision_for(&d, &residential)["outcome"], "SKIPPED", "{d:#}");

    assert_eq!(
        app.credit("acct-a").await,
        ("25.00".into(), "0.00".into(), "25.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 25_000_000);
    let friends = app.friends("acct-a").await;
    for name in ["Bo*** B.", "Ca*** C."] {
        let friend = friends
            .iter()
            .find(|f| f["referee"]["displayName"] == name)
            .unwrap_or_else(|| panic!("{name} is not A's friend: {friends:#?}"));
        assert_eq!(friend["status"], "QUALIFIED", "{friend:#}");
    }
}

#[tokio::test]
async fn product_categories_limit_a_first_purchase_rule() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let seeded = app.seeded_rule().await;
    let seeded_id = s(&seeded, "/id").to_owned();
    let mut dc_bonus = fixed_credit_rule(
        "Credit for a newcomer's first datacenter purchase",
        "FIRST_PURCHASE",
        "REFEREE",
        "5",
    );
    dc_bonus["productCategories"] = json!(["datacenter"]);
    let dc_bonus = app.create_rule_id(dc_bonus).await;

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    app.register("acct-c", Some("Carol Clark"), Some(&a)).await;

    // B's first purchase is residential: the seeded rule pays A, the datacenter rule skips.
    let b = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(
        rewards_of(&b),
        vec![(
            "acct-a".into(),
            "REWARD".into(),
            "POINTS".into(),
            "150.00".into(),
            "POSTED".into()
        )],
        "{b:#}"
    );
    assert_eq!(decision_for(&b, &seeded_id)["outcome"], "REWARDED", "{b:#}");
    assert_eq!(decision_for(&b, &dc_bonus)["outcome"], "SKIPPED", "{b:#}");

    // C's first purchase is datacenter: the other way round.
    let c = app.purchase("evt-c-1", "acct-c", DATACENTER, "4").await;
    assert_eq!(rewards_of(&c), vec![credit_reward("acct-c", "5.00")], "{c:#}");
    assert_eq!(decision_for(&c, &seeded_id)["outcome"], "SKIPPED", "{c:#}");
    assert!(
        s(decision_for(&c, &seeded_id), "/reason").contains("datacenter"),
        "{c:#}"
    );
    assert_eq!(decision_for(&c, &dc_bonus)["outcome"], "REWARDED", "{c:#}");

    // The seeded rule widened to datacenter products: D's first datacenter purchase pays A
    // 5 points per GB, and what B's purchase paid stays.
    let mut widened = rule_input(SEEDED_RULE, "FIRST_PURCHASE", "REFERRER", "POINTS", "PRODUCT_RATE");
    widened["productCategories"] = json!(["residential", "datacenter"]);
    let widened = app.update_rule(&seeded_id, widened).await;
    let mut categories: Vec<&str> = widened["productCategories"]
        .as_array()
        .unwrap_or_else(|| panic!("productCategories: {widened:#}"))
        .iter()
        .map(|c| c.as_str().expect("a category"))
        .collect();
    categories.sort();
    assert_eq!(categories, vec!["datacenter", "residential"], "{widened:#}");
    app.register("acct-d", Some("Dan Dale"), Some(&a)).await;
    let d = app.purchase("evt-d-1", "acct-d", DATACENTER, "6").await;
    let mut expected = vec![
        (
            "acct-a".to_owned(),
            "REWARD".to_owned(),
            "POINTS".to_owned(),
            "30.00".to_owned(),
            "POSTED".to_owned(),
        ),
        credit_reward("acct-d", "5.00"),
    ];
    expected.sort();
    assert_eq!(rewards_of(&d), expected, "{d:#}");

    assert_eq!(
        app.points("acct-a").await,
        ("180.00".into(), "0.00".into(), "180.00".into())
    );
    assert_eq!(app.available_credit("acct-a").await, "0.00");
    assert_eq!(app.available_credit("acct-b").await, "0.00");
    assert_eq!(app.available_credit("acct-c").await, "5.00");
    assert_eq!(app.available_credit("acct-d").await, "5.00");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 180_000_000);
}

#[tokio::test]
async fn program_three_is_paid_through_the_seeded_rule_with_a_description_of_the_purchase() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let seeded_id = s(&app.seeded_rule().await, "/id").to_owned();
    app.chain().await;

    let paid = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let decisions = paid["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 1, "{paid:#}");
    assert_eq!(decisions[0]["rule"]["id"], seeded_id.as_str(), "{paid:#}");
    assert_eq!(decisions[0]["rule"]["name"], SEEDED_RULE, "{paid:#}");
    assert_eq!(decisions[0]["outcome"], "REWARDED", "{paid:#}");
    assert_eq!(paid["rewards"][0]["amount"], "150.00", "{paid:#}");

    // The friend's second purchase is not its first.
    let second = app.purchase("evt-b-2", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(second["rewards"], json!([]), "{second:#}");
    assert_eq!(decision_for(&second, &seeded_id)["outcome"], "SKIPPED", "{second:#}");
    assert!(
        s(decision_for(&second, &seeded_id), "/reason").contains("first purchase"),
        "{second:#}"
    );

    // The history names the action and the masked friend.
    let history = app.history("acct-a").await;
    assert_eq!(history.len(), 1, "{history:#?}");
    let description = s(&history[0], "/description");
    assert!(description.contains("Bo*** B."), "{description}");
    assert!(description.to_lowercase().contains("purchase"), "{description}");
    assert!(!description.contains("Bob Brown"), "{description}");

    // A product rate changed later pays the new rate on the next first purchase.
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "SetProductRate",
        json!({ "input": { "productKey": RESIDENTIAL, "productRate": "20" } }),
    )
    .await;
    let c = app.purchase("evt-c-1", "acct-c", RESIDENTIAL, "2").await;
    assert_eq!(c["rewards"][0]["account"]["externalId"], "acct-b", "{c:#}");
    assert_eq!(c["rewards"][0]["amount"], "40.00", "{c:#}");
    assert_eq!(app.available_points("acct-a").await, "150.00");
    assert_eq!(app.available_points("acct-b").await, "40.00");
}

#[tokio::test]
async fn a_signup_rule_pays_when_an_accepted_referral_is_created() {
    let app = spawn_app().await;
    let bonus = app
        .create_rule_id(fixed_credit_rule(
            "Signup bonus for the newcomer",
            "SIGNUP",
            "REFEREE",
            "2.50",
        ))
        .await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    assert_eq!(app.available_credit("acct-a").await, "0.00", "no referral, no bonus");

    let b = app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    assert_eq!(b["referral"]["status"], "PENDING", "{b:#}");
    assert_eq!(
        app.credit("acct-b").await,
        ("2.50".into(), "0.00".into(), "2.50".into())
    );
    assert_eq!(
        app.available_credit("acct-a").await,
        "0.00",
        "the bonus is the newcomer's"
    );
    let history = app.history("acct-b").await;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["kind"], "REWARD", "{history:#?}");
    assert_eq!(history[0]["unit"], "CREDIT", "{history:#?}");
    assert_eq!(history[0]["amount"], "2.50", "{history:#?}");
    assert_eq!(history[0]["status"], "POSTED", "{history:#?}");
    assert!(!s(&history[0], "/description").is_empty(), "{history:#?}");

    // Registering again pays nothing more; rejected codes and no code pay nothing.
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    app.register("acct-b", None, None).await;
    let x = app.register("acct-x", Some("Xavier Xu"), Some("NOSUCHCODE")).await;
    assert_eq!(x["referral"]["status"], "REJECTED", "{x:#}");
    app.register("acct-y", Some("Yves Young"), None).await;
    app.set_enabled(false).await;
    let z = app.register("acct-z", Some("Zoe Zane"), Some(&a)).await;
    assert_eq!(z["referral"]["rejectionReason"], "PROGRAM_DISABLED", "{z:#}");
    app.set_enabled(true).await;
    for ext in ["acct-x", "acct-y", "acct-z"] {
        assert_eq!(app.available_credit(ext).await, "0.00", "{ext}");
    }
    assert_eq!(app.available_credit("acct-b").await, "2.50");
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 2_500_000);
    assert_eq!(app.count("ledger_entries").await, 1);

    // A signup rule does not decide other events.
    let mut pm = fixed_credit_rule("Credit for the referrer", "PAYMENT_METHOD_VERIFIED", "REFERRER", "10");
    pm["enabled"] = json!(true);
    app.create_rule(pm).await;
    let verified = app.verify_payment("evt-pm-b", "acct-b").await;
    // Every enabled rule is decided, whatever its trigger.
    assert_eq!(decision_for(&verified, &bonus)["outcome"], "SKIPPED", "{verified:#}");
    assert_eq!(
        rewards_of(&verified),
        vec![credit_reward("acct-a", "10.00")],
        "{verified:#}"
    );
    assert_eq!(app.available_credit("acct-b").await, "2.50");
}
