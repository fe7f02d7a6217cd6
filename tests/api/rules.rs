//! Reward rules end to end: what needs the server and its database. Admins create and change
//! rules through the contract (refusals name the field; every change is audited); a new
//! installation is seeded from the default preset, once; an enabled rule decides every event,
//! a disabled one none; a rule pays at most once per referral unless it is recurring; an edit
//! never changes what a rule already paid; rules written before the typed spec keep paying as
//! they did. What each rule decides about each event is a table of unit tests beside the
//! evaluator (src/service/rules/evaluate.rs).

use crate::common::{TempDir, fresh_postgres_database, temp_dir};
use crate::helpers::*;
use migration::{Migrator, MigratorTrait};
use referral_server::AppState;
use referral_server::service::presets;
use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The rule fields the contract's `Rule` fragment leaves out, by rule id.
async fn extra_fields(app: &TestApp) -> BTreeMap<String, Value> {
    let body = app
        .gql(Some(&app.admin()), "{ rewardRules { id billingScheme } }", json!({}))
        .await;
    data_of(&body, "rewardRules with billingScheme")["rewardRules"]
        .as_array()
        .expect("rewardRules")
        .iter()
        .map(|r| (s(r, "/id").to_owned(), r["billingScheme"].clone()))
        .collect()
}

/// The input as the `Rule` fragment answers it: without what the fragment leaves out.
fn as_shown(input: &Value) -> Value {
    let mut shown = rule_with_defaults(input);
    shown.as_object_mut().expect("a rule").remove("billingScheme");
    shown
}

/// Audit entries (action, actor, target, details as JSON), newest first.
async fn audit(app: &TestApp) -> Vec<(String, String, String, Value)> {
    nodes(&app.audit_log(100, None).await)
        .iter()
        .map(|e| {
            (
                s(e, "/action").to_owned(),
                s(e, "/actor").to_owned(),
                s(e, "/target").to_owned(),
                serde_json::from_str(s(e, "/details")).expect("details are JSON"),
            )
        })
        .collect()
}

/// The numeric part of a rule id (`rule:{n}` in the audit log).
fn audit_target(id: &str) -> String {
    format!("rule:{}", id.rsplit('_').next().expect("an id"))
}

#[tokio::test]
async fn rules_are_created_listed_and_changed_through_the_contract_and_audited() {
    let app = spawn_app().await;
    let seeded = app.seeded_rule().await;
    let mut expected = rule_with_defaults(&rule_input(
        SEEDED_RULE,
        "FIRST_PURCHASE",
        "REFERRER",
        "POINTS",
        "PRODUCT_RATE",
    ));
    expected["productCategories"] = json!(["residential"]);
    assert_eq!(without_id(&seeded), expected, "{seeded:#}");

    // Only what is required: the defaults are filled in.
    let minimal_input = fixed_credit_rule("Credit for the referrer", "PAYMENT_METHOD_VERIFIED", "REFERRER", "25");
    let minimal = app.create_rule(minimal_input.clone()).await;
    let mut expected_minimal = as_shown(&minimal_input);
    expected_minimal["value"] = json!("25.00");
    assert_eq!(without_id(&minimal), expected_minimal, "{minimal:#}");
    let minimal_id = s(&minimal, "/id").to_owned();

    // Every option that is built.
    let mut full_input = fixed_credit_rule(
        "Held credit for prepaid business newcomers",
        "TOP_UP_TOTAL_REACHED",
        "REFEREE",
        "7.5",
    );
    for (field, value) in [
        ("enabled", json!(false)),
        ("recurring", json!(true)),
        ("threshold", json!("10")),
        ("accountGroups", json!(["Enterprise", "business", "business"])),
        ("billingScheme", json!("PREPAID")),
        ("holdDays", json!(30)),
        ("expiresAfterDays", json!(180)),
        ("affiliatesOnly", json!(false)),
    ] {
        full_input[field] = value;
    }
    let full = app.create_rule(full_input.clone()).await;
    let mut expected_full = as_shown(&full_input);
    expected_full["value"] = json!("7.50");
    expected_full["threshold"] = json!("10.00");
    expected_full["accountGroups"] = json!(["business", "enterprise"]);
    assert_eq!(without_id(&full), expected_full, "{full:#}");
    let full_id = s(&full, "/id").to_owned();

    let rules = app.rules().await;
    assert_eq!(rules.len(), 3, "{rules:#?}");
    assert_eq!(
        rules,
        vec![seeded.clone(), minimal.clone(), full.clone()],
        "oldest first, as created"
    );
    let schemes = extra_fields(&app).await;
    assert_eq!(schemes[&full_id], "PREPAID");
    assert_eq!(schemes[&minimal_id], Value::Null);
    assert_eq!(schemes[s(&seeded, "/id")], Value::Null);

    // An update replaces the whole definition and keeps the id; what it leaves out goes
    // back to its default.
    let mut changed_input = fixed_credit_rule(
        "Credit for postpaid business newcomers",
        "PAYMENT_METHOD_VERIFIED",
        "REFEREE",
        "30.00",
    );
    changed_input["accountGroups"] = json!(["business"]);
    changed_input["billingScheme"] = json!("POSTPAID");
    changed_input["holdDays"] = json!(0);
    let changed = app.update_rule(&full_id, changed_input.clone()).await;
    let mut expected_changed = as_shown(&changed_input);
    expected_changed["value"] = json!("30.00");
    expected_changed["holdDays"] = Value::Null;
    assert_eq!(changed["id"], full_id.as_str(), "{changed:#}");
    assert_eq!(without_id(&changed), expected_changed, "{changed:#}");
    assert_eq!(extra_fields(&app).await[&full_id], "POSTPAID");
    assert_eq!(app.rules().await.len(), 3, "an update creates no rule");

    // An unknown rule is not found, and nothing changes.
    let before = app.rules().await;
    let body = app.update_rule_raw(&unknown_id_like(&minimal_id), changed_input).await;
    assert_failed(&body, "NOT_FOUND");
    assert_eq!(app.rules().await, before);

    // Each change is audited with the whole rule before and after.
    let entries = audit(&app).await;
    let (action, actor, target, details) = &entries[0];
    assert_eq!(
        (action.as_str(), target.as_str()),
        ("UPDATE_REWARD_RULE", audit_target(&full_id).as_str())
    );
    assert!(actor.contains("admin"), "{actor}");
    assert_eq!(
        details["before"]["payout"],
        json!({ "recurring": true, "holdDays": 30, "expiresAfterDays": 180 })
    );
    assert_eq!(
        details["after"]["payout"],
        json!({ "recurring": false, "holdDays": 0, "expiresAfterDays": null })
    );
    assert_eq!(
        details["after"]["conditions"],
        json!([{ "accountGroups": ["business"] }, { "billingScheme": "POSTPAID" }])
    );
    let (action, _, target, details) = &entries[1];
    assert_eq!(
        (action.as_str(), target.as_str()),
        ("CREATE_REWARD_RULE", audit_target(&full_id).as_str())
    );
    assert_eq!(details["before"], Value::Null);
    assert_eq!(details["after"]["calculation"], json!({ "fixed": 7_500_000 }));
    assert_eq!(entries[2].0, "CREATE_REWARD_RULE");
    assert_eq!(entries[2].2, audit_target(&minimal_id));
}

#[tokio::test]
async fn a_rule_read_with_its_hold_expiry_and_scheme_goes_back_unchanged() {
    let app = spawn_app().await;
    let mut input = fixed_credit_rule("Held credit", "PAYMENT_METHOD_VERIFIED", "REFERRER", "20");
    input["holdDays"] = json!(30);
    input["expiresAfterDays"] = json!(180);
    input["billingScheme"] = json!("POSTPAID");
    let created = app.create_rule(input).await;
    let id = s(&created, "/id").to_owned();
    let mut read = without_id(&created);
    read["billingScheme"] = extra_fields(&app).await[&id].clone();
    let rules_before = app.rules().await;
    let audit_before = app.count("audit_log").await;
    assert_eq!(app.update_rule(&id, read).await, created);
    assert_eq!(app.rules().await, rules_before);
    assert_eq!(extra_fields(&app).await[&id], "POSTPAID");
    // An update that changes nothing is still an admin's act, and audited.
    assert_eq!(app.count("audit_log").await, audit_before + 1);
}

#[tokio::test]
async fn a_rule_sent_back_without_its_billing_scheme_keeps_it_and_null_clears_it() {
    let app = spawn_app().await;
    let mut input = fixed_credit_rule("Postpaid credit", "PAYMENT_METHOD_VERIFIED", "REFERRER", "10");
    input["billingScheme"] = json!("POSTPAID");
    let created = app.create_rule(input).await;
    let id = s(&created, "/id").to_owned();
    // The contract's rule fragment does not read billingScheme: a console built on it sends the
    // rule back without the field, and must not clear program 1's policy by saving a form.
    let mut read = without_id(&created);
    read.as_object_mut().map(|o| o.remove("billingScheme"));
    read["value"] = json!("12");
    app.update_rule(&id, read.clone()).await;
    assert_eq!(extra_fields(&app).await[&id], "POSTPAID");
    read["billingScheme"] = Value::Null;
    app.update_rule(&id, read).await;
    assert_eq!(extra_fields(&app).await[&id], Value::Null);
}

#[tokio::test]
async fn invalid_rules_are_refused_naming_the_field_and_options_not_built_are_refused() {
    let app = spawn_app().await;
    let valid = fixed_credit_rule("Credit for the referrer", "PAYMENT_METHOD_VERIFIED", "REFERRER", "10");
    let existing_id = app.create_rule_id(valid.clone()).await;
    let with = |base: &Value, changes: Value| -> Value {
        let mut input = base.clone();
        for (key, value) in changes.as_object().expect("changes") {
            input[key] = value.clone();
        }
        input
    };
    let mut top_up = fixed_credit_rule("Top-up", "TOP_UP_TOTAL_REACHED", "REFERRER", "10");
    top_up["threshold"] = json!("10");
    let mut rate = rule_input("Rate", "FIRST_PURCHASE", "REFERRER", "POINTS", "PRODUCT_RATE");
    rate["productCategories"] = json!(["residential"]);
    let cases = [
        (with(&valid, json!({ "name": " " })), "name"),
        (with(&valid, json!({ "value": null })), "value"),
        (with(&valid, json!({ "value": "-5" })), "value"),
        (with(&rate, json!({ "value": "5" })), "value"),
        (
            with(&valid, json!({ "calculation": "PRODUCT_RATE", "value": null })),
            "calculation",
        ),
        (with(&valid, json!({ "threshold": "10" })), "threshold"),
        (with(&top_up, json!({ "threshold": null })), "threshold"),
        (with(&top_up, json!({ "threshold": "-1" })), "threshold"),
        (
            with(&top_up, json!({ "productCategories": ["residential"] })),
            "productCategories",
        ),
        (with(&valid, json!({ "accountGroups": ["no spaces"] })), "accountGroups"),
        (with(&valid, json!({ "holdDays": -1 })), "holdDays"),
        (with(&valid, json!({ "holdDays": 3651 })), "holdDays"),
        (with(&valid, json!({ "expiresAfterDays": 0 })), "expiresAfterDays"),
        (with(&valid, json!({ "expiresAfterDays": 3651 })), "expiresAfterDays"),
        (with(&valid, json!({ "invoiceNumber": 1 })), "invoiceNumber"),
        (with(&valid, json!({ "windowDays": -1 })), "windowDays"),
        (with(&valid, json!({ "windowDays": 3651 })), "windowDays"),
        (
            with(&valid, json!({ "trigger": "SIGNUP", "windowDays": 30 })),
            "windowDays",
        ),
        (with(&valid, json!({ "maxOccurrences": 3 })), "maxOccurrences"),
        (with(&valid, json!({ "capPerReferral": "0" })), "capPerReferral"),
        (
            with(&valid, json!({ "unit": "POINTS", "redeemableCategories": ["compute"] })),
            "redeemableCategories",
        ),
        (with(&valid, json!({ "minActiveReferrals": 2 })), "minActiveReferrals"),
    ];
    let rules_before = app.rules().await;
    let snapshot_before = app.snapshot().await;
    for (input, field) in &cases {
        for body in [
            app.create_rule_raw(input.clone()).await,
            app.update_rule_raw(&existing_id, input.clone()).await,
        ] {
            assert_failed(&body, "BAD_USER_INPUT");
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains(field), "the refusal names {field}: {body:#}");
        }
    }
    assert_eq!(app.rules().await, rules_before);
    assert_eq!(
        app.snapshot().await,
        snapshot_before,
        "nothing written, nothing audited"
    );

    // The valid neighbours of those cases are taken.
    for (n, input) in [
        with(&valid, json!({ "affiliatesOnly": false })),
        with(&top_up, json!({ "threshold": "0" })),
        rate,
        with(&valid, json!({ "unit": "POINTS" })),
        with(&valid, json!({ "holdDays": 0, "expiresAfterDays": 1 })),
        with(&valid, json!({ "holdDays": 3650, "expiresAfterDays": 3650 })),
        with(&valid, json!({ "billingScheme": null })),
        with(&valid, json!({ "windowDays": 3650 })),
        with(&valid, json!({ "capPerReferral": "50" })),
    ]
    .into_iter()
    .enumerate()
    {
        app.create_rule(with(&input, json!({ "name": format!("neighbour {n}") })))
            .await;
    }
    assert_eq!(app.rules().await.len(), rules_before.len() + 9);
}

/// A new database, and what keeps it alive (the SQLite file's directory).
pub(crate) async fn new_database() -> (String, Option<TempDir>) {
    if let Some(url) = fresh_postgres_database().await {
        return (url, None);
    }
    let dir = temp_dir("rs-rules-");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
    (url, Some(dir))
}

async fn rule_names(db: &DatabaseConnection) -> Vec<String> {
    referral_server::service::rules::list(db)
        .await
        .expect("rules")
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[tokio::test]
async fn a_new_installation_is_seeded_once_from_the_default_preset() {
    let app = spawn_app().await;
    assert_eq!(rule_names(&app.state.db).await, [SEEDED_RULE]);
    let entries = audit(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let (action, actor, _, details) = &entries[0];
    assert_eq!((action.as_str(), actor.as_str()), ("CREATE_REWARD_RULE", "seed"));
    assert_eq!(details["after"]["name"], SEEDED_RULE);
    // The preset itself finds its program in place.
    let done = presets::apply(&app.state.db, presets::DEFAULT, app.state.clock.now())
        .await
        .expect("preset");
    assert_eq!(done, ["preset points-store is in place already: nothing changed"]);

    // Starting again seeds nothing, even once the seeded rule is switched off (rules are
    // never deleted: a database with none was never seeded).
    let mut off = rule_input(SEEDED_RULE, "FIRST_PURCHASE", "REFERRER", "POINTS", "PRODUCT_RATE");
    off["productCategories"] = json!(["residential"]);
    off["enabled"] = json!(false);
    app.update_rule(s(&app.seeded_rule().await, "/id"), off).await;
    let audit_before = app.count("audit_log").await;
    let again = AppState::connect(test_config(app.database_url.clone()))
        .await
        .expect("connect again");
    assert_eq!(rule_names(&again.db).await, [SEEDED_RULE]);
    assert_eq!(app.count("audit_log").await, audit_before);

    // Instances starting together on a new database seed it once.
    let (url, _dir) = new_database().await;
    let starts = futures::future::join_all((0..3).map(|_| AppState::connect(test_config(url.clone())))).await;
    for start in &starts {
        assert!(start.is_ok(), "{:?}", start.as_ref().err());
    }
    let first = starts.into_iter().next().expect("three").expect("connected");
    assert_eq!(rule_names(&first.db).await, [SEEDED_RULE]);
}

#[tokio::test]
async fn a_disabled_rule_pays_nothing_and_is_left_out_of_the_decisions() {
    let app = spawn_app().await;
    let seeded_id = s(&app.seeded_rule().await, "/id").to_owned();
    let (referrer_rule, referee_rule) = app.postpaid_rules("10", "5").await;
    let mut off = fixed_credit_rule(
        "Credit for the referrer: friend verified a payment method",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "10",
    );
    off["enabled"] = json!(false);
    assert_eq!(app.update_rule(&referrer_rule, off).await["enabled"], false);

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    let paid = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(rewards_of(&paid), vec![credit_reward("acct-b", "5.00")], "{paid:#}");
    let mut expected_ids = vec![referee_rule.clone(), seeded_id.clone()];
    expected_ids.sort();
    assert_eq!(
        decided_rule_ids(&paid),
        expected_ids,
        "a disabled rule has no decision: {paid:#}"
    );
    assert_eq!(decision_for(&paid, &referee_rule)["outcome"], "REWARDED", "{paid:#}");
    assert_eq!(decision_for(&paid, &seeded_id)["outcome"], "SKIPPED", "{paid:#}");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 0);

    // With every rule off, an event is recorded with no decision at all.
    let mut seeded_off = rule_input(SEEDED_RULE, "FIRST_PURCHASE", "REFERRER", "POINTS", "PRODUCT_RATE");
    seeded_off["enabled"] = json!(false);
    app.update_rule(&seeded_id, seeded_off).await;
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
    assert_eq!(app.ledger_sum("acct-c", "CREDIT").await, 0);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
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

    // What was paid stays: the balance, the entry, the replayed answer.
    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(app.history("acct-a").await, history_before);
    let replay = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(replay["event"]["duplicate"], true, "{replay:#}");
    assert_eq!(replay["rewards"], first["rewards"], "{replay:#}");
    // B's second verification does not top up the difference.
    let again = app.verify_payment("evt-pm-b-2", "acct-b").await;
    assert_eq!(again["rewards"], json!([]), "{again:#}");
    assert_eq!(decision_for(&again, &rule_id)["outcome"], "SKIPPED", "{again:#}");

    // A new qualification is paid at the new value; each entry keeps the rule as it paid.
    let second = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(
        rewards_of(&second),
        vec![credit_reward("acct-a", "50.00")],
        "{second:#}"
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 60_000_000);
    for (value, name) in [(10_000_000, "Credit for the referrer\""), (50_000_000, "(raised)")] {
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE amount = {value} \
             AND rule_snapshot LIKE '%\"fixed\":{value}%' AND rule_snapshot LIKE '%{name}%'"
        );
        assert_eq!(app.sql_i64(&sql).await, 1, "{sql}");
    }
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
    let recurring = app.create_rule_id(recurring_input).await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;

    let points = |amount: &str| {
        (
            "acct-a".to_owned(),
            "REWARD".to_owned(),
            "POINTS".to_owned(),
            amount.to_owned(),
            "POSTED".to_owned(),
        )
    };
    let first = app.verify_payment("evt-1", "acct-b").await;
    assert_eq!(
        rewards_of(&first),
        vec![credit_reward("acct-a", "10.00"), points("3.00")],
        "{first:#}"
    );
    for event_id in ["evt-2", "evt-3"] {
        let later = app.verify_payment(event_id, "acct-b").await;
        assert_eq!(rewards_of(&later), vec![points("3.00")], "{later:#}");
        let skipped = decision_for(&later, &once);
        assert_eq!(skipped["outcome"], "SKIPPED", "{later:#}");
        assert!(s(skipped, "/reason").contains("already"), "{later:#}");
        assert_eq!(decision_for(&later, &recurring)["outcome"], "REWARDED", "{later:#}");
    }
    // A replayed event is not a new occurrence.
    let replay = app.verify_payment("evt-3", "acct-b").await;
    assert_eq!(replay["event"]["duplicate"], true, "{replay:#}");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 9_000_000);
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.count("ledger_entries").await, 4);
}

#[tokio::test]
async fn conditions_read_the_account_as_registered_and_a_held_reward_says_when() {
    let app = spawn_app().await;
    let mut business = fixed_credit_rule("Business referral", "PAYMENT_METHOD_VERIFIED", "REFERRER", "20");
    business["accountGroups"] = json!(["business"]);
    business["holdDays"] = json!(30);
    business["expiresAfterDays"] = json!(180);
    let business = app.create_rule_id(business).await;
    // A billing-scheme condition is a condition like any other: here on a payment method.
    let mut prepaid_points = rule_input(
        "Prepaid points",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "POINTS",
        "FIXED",
    );
    prepaid_points["value"] = json!("3");
    prepaid_points["billingScheme"] = json!("PREPAID");
    let prepaid_points = app.create_rule_id(prepaid_points).await;

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register_with(
        json!({ "externalId": "acct-b", "displayName": "Bob Brown", "referralCode": a, "group": "business" }),
    )
    .await;
    app.register_scheme("acct-c", "Carol Clark", Some(&a), "PREPAID").await;

    let before = app.state.clock.now();
    let b = app.verify_payment("evt-pm-b", "acct-b").await;
    let after = app.state.clock.now();
    assert_eq!(decision_for(&b, &business)["outcome"], "REWARDED", "{b:#}");
    assert_eq!(decision_for(&b, &prepaid_points)["outcome"], "SKIPPED", "{b:#}");
    let reason = s(decision_for(&b, &business), "/reason");
    let day = |at: chrono::DateTime<chrono::Utc>, days: i64| {
        (at + chrono::Duration::days(days)).format("%Y-%m-%d").to_string()
    };
    assert!(
        [before, after].iter().any(|at| reason
            == format!(
                "20.00 credit to the referrer, on hold until {}, expires {}",
                day(*at, 30),
                day(*at, 210)
            )),
        "{reason}"
    );

    let c = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(decision_for(&c, &business)["outcome"], "SKIPPED", "{c:#}");
    assert!(
        s(decision_for(&c, &business), "/reason").contains("account group none"),
        "{c:#}"
    );
    assert_eq!(decision_for(&c, &prepaid_points)["outcome"], "REWARDED", "{c:#}");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 3_000_000);
}

/// `windowDays` counts from the referee's sign-up to when the event happened (`occurredAt`),
/// not to when it arrives: a late event from inside the window still pays.
#[tokio::test]
async fn a_window_pays_events_within_its_days_of_the_referees_sign_up_and_not_after() {
    let app = spawn_app().await;
    let mut windowed = fixed_credit_rule("Top-ups in the first 90 days", "TOP_UP_TOTAL_REACHED", "REFERRER", "5");
    windowed["threshold"] = json!("0");
    windowed["recurring"] = json!(true);
    windowed["windowDays"] = json!(90);
    let created = app.create_rule(windowed).await;
    assert_eq!(created["windowDays"], 90, "{created:#}");
    let windowed = s(&created, "/id").to_owned();
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register_scheme("acct-b", "Bob Brown", Some(&a), "PREPAID").await;
    let signed_up = app.state.clock.now();

    let day_0 = app.top_up("evt-day-0", "acct-b", "20", None).await;
    assert_eq!(decision_for(&day_0, &windowed)["outcome"], "REWARDED", "{day_0:#}");
    crate::time::advance(&app, 89);
    let day_89 = app.top_up("evt-day-89", "acct-b", "20", None).await;
    assert_eq!(decision_for(&day_89, &windowed)["outcome"], "REWARDED", "{day_89:#}");
    crate::time::advance(&app, 11);
    let day_100 = app.top_up("evt-day-100", "acct-b", "20", None).await;
    let skipped = decision_for(&day_100, &windowed);
    assert_eq!(skipped["outcome"], "SKIPPED", "{day_100:#}");
    assert_eq!(
        skipped["reason"], "happened 100 days after sign-up, after the rule's 90-day window",
        "{day_100:#}"
    );
    // Sent on day 100, happened on day 80.
    let mut late = TestApp::top_up_input("evt-day-80", "acct-b", "20", None);
    late["input"]["occurredAt"] = json!((signed_up + chrono::Duration::days(80)).to_rfc3339());
    let body = app.run(Some(&app.service()), "integration", "RecordTopUp", late).await;
    let late = &data_of(&body, "a late top-up")["recordTopUp"];
    assert_eq!(decision_for(late, &windowed)["outcome"], "REWARDED", "{late:#}");

    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 15_000_000);
    app.assert_invariants().await;
}

/// A rule's `referrerGroups`, read by a query of its own (the contract's fragment leaves it out).
async fn referrer_groups_of(app: &TestApp, id: &str) -> Value {
    let body = app
        .gql(
            Some(&app.admin()),
            "query Groups { rewardRules { id referrerGroups } }",
            json!({}),
        )
        .await;
    let rules = data_of(&body, "the rules' referrer groups")["rewardRules"].clone();
    let rule = rules
        .as_array()
        .expect("a list")
        .iter()
        .find(|rule| rule["id"] == id)
        .unwrap_or_else(|| panic!("rule {id} listed: {rules:#}"));
    rule["referrerGroups"].clone()
}

/// `referrerGroups` looks at the referrer's group, `accountGroups` at the referee's; a console
/// built on the contract's rule fragment, which does not read `referrerGroups`, sends the rule
/// back without it and keeps it.
#[tokio::test]
async fn a_business_referrer_rule_pays_business_referrers_only_and_an_update_without_it_keeps_it() {
    let app = spawn_app().await;
    let mut business = fixed_credit_rule("Business referrers", "PAYMENT_METHOD_VERIFIED", "REFERRER", "25");
    business["referrerGroups"] = json!(["Business"]);
    let id = app.create_rule_id(business.clone()).await;
    assert_eq!(referrer_groups_of(&app, &id).await, json!(["business"]));

    let b = app
        .register_with(json!({ "externalId": "acct-biz", "displayName": "Bea Business", "group": "business" }))
        .await;
    let biz_code = s(&b, "/account/referralCode").to_owned();
    let home = app.register_code("acct-home", Some("Hal Home"), None).await;
    // A business friend of a referrer without a group: the referee's group does not count here.
    app.register_with(
        json!({ "externalId": "friend-of-home", "displayName": "Fay Friend", "referralCode": home, "group": "business" }),
    )
    .await;
    app.register("friend-of-biz", Some("Finn Friend"), Some(&biz_code))
        .await;

    let paid = app.verify_payment("evt-biz", "friend-of-biz").await;
    assert_eq!(decision_for(&paid, &id)["outcome"], "REWARDED", "{paid:#}");
    let skipped = app.verify_payment("evt-home", "friend-of-home").await;
    assert_eq!(decision_for(&skipped, &id)["outcome"], "SKIPPED", "{skipped:#}");
    assert_eq!(
        decision_for(&skipped, &id)["reason"],
        "the referrer's account group none does not count (counted: business)",
        "{skipped:#}"
    );
    assert_eq!(app.ledger_sum("acct-biz", "CREDIT").await, 25_000_000);
    assert_eq!(app.ledger_sum("acct-home", "CREDIT").await, 0);

    // Sent back as the contract's fragment reads it (no referrerGroups): kept. Null: cleared.
    let mut renamed = business.clone();
    renamed.as_object_mut().expect("an object").remove("referrerGroups");
    renamed["name"] = json!("Business referrers, renamed");
    app.update_rule(&id, renamed.clone()).await;
    assert_eq!(referrer_groups_of(&app, &id).await, json!(["business"]));
    renamed["referrerGroups"] = Value::Null;
    app.update_rule(&id, renamed).await;
    assert_eq!(referrer_groups_of(&app, &id).await, Value::Null);
    app.assert_invariants().await;
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
    assert_eq!(
        b["referral"]["status"], "PENDING",
        "a sign-up bonus qualifies nothing: {b:#}"
    );
    assert_eq!(app.available_credit("acct-b").await, "2.50");
    let history = app.history("acct-b").await;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(
        (&history[0]["kind"], &history[0]["amount"]),
        (&json!("REWARD"), &json!("2.50"))
    );

    // Registering again pays nothing more; a rejected code and no code pay nothing.
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    app.register("acct-x", Some("Xavier Xu"), Some("NOSUCHCODE")).await;
    app.register("acct-y", Some("Yves Young"), None).await;
    assert_eq!(app.count("ledger_entries").await, 1);

    // A sign-up rule is decided, and skipped, on other events.
    app.create_rule(fixed_credit_rule(
        "Credit for the referrer",
        "PAYMENT_METHOD_VERIFIED",
        "REFERRER",
        "10",
    ))
    .await;
    let verified = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(decision_for(&verified, &bonus)["outcome"], "SKIPPED", "{verified:#}");
    assert_eq!(
        rewards_of(&verified),
        vec![credit_reward("acct-a", "10.00")],
        "{verified:#}"
    );
    assert_eq!(app.available_credit("acct-b").await, "2.50");
}

/// An old-style `reward_rules` row, as the server wrote it before the typed spec.
struct OldRow {
    name: &'static str,
    enabled: bool,
    trigger: &'static str,
    beneficiary: &'static str,
    unit: &'static str,
    calculation: &'static str,
    value: Option<i64>,
    product_categories: Option<&'static str>,
    threshold: Option<i64>,
    recurring: bool,
    account_groups: Option<&'static str>,
}

async fn insert_old(db: &DatabaseConnection, row: OldRow) {
    let now = chrono::Utc::now();
    let column = |name: &str| Alias::new(name);
    let insert = Query::insert()
        .into_table(column("reward_rules"))
        .columns(
            [
                "name",
                "enabled",
                "trigger",
                "beneficiary",
                "unit",
                "calculation",
                "value",
                "product_categories",
                "threshold",
                "recurring",
                "account_groups",
                "created_at",
                "updated_at",
            ]
            .map(column),
        )
        .values_panic([
            row.name.into(),
            row.enabled.into(),
            row.trigger.into(),
            row.beneficiary.into(),
            row.unit.into(),
            row.calculation.into(),
            row.value.into(),
            row.product_categories.map(str::to_owned).into(),
            row.threshold.into(),
            row.recurring.into(),
            row.account_groups.map(str::to_owned).into(),
            now.into(),
            now.into(),
        ])
        .to_owned();
    db.execute(&insert).await.expect("an old-style rule");
}

#[tokio::test]
async fn rules_written_before_the_typed_spec_keep_paying_as_they_did() {
    // A database as the release before wrote it: migrated up to the spec, its rules in columns.
    let (url, _dir) = new_database().await;
    let (db, _) = referral_server::db::connect(&url).await.expect("connect");
    let before_spec = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261204_000001_rule_spec")
        .expect("the spec migration");
    Migrator::up(&db, Some(u32::try_from(before_spec).expect("a few")))
        .await
        .expect("the earlier migrations");
    let old = |name, trigger, beneficiary, unit, calculation, value| OldRow {
        name,
        enabled: true,
        trigger,
        beneficiary,
        unit,
        calculation,
        value,
        product_categories: None,
        threshold: None,
        recurring: false,
        account_groups: None,
    };
    // The rule the initial migration seeded then.
    insert_old(
        &db,
        OldRow {
            product_categories: Some(r#"["residential"]"#),
            ..old(
                SEEDED_RULE,
                "FIRST_PURCHASE",
                "REFERRER",
                "POINTS",
                "PRODUCT_RATE",
                None,
            )
        },
    )
    .await;
    insert_old(
        &db,
        old(
            "Credit on a payment method",
            "PAYMENT_METHOD_VERIFIED",
            "REFERRER",
            "CREDIT",
            "FIXED",
            Some(10_000_000),
        ),
    )
    .await;
    insert_old(
        &db,
        OldRow {
            threshold: Some(10_000_000),
            ..old(
                "Credit on top-ups",
                "TOP_UP_TOTAL_REACHED",
                "REFEREE",
                "CREDIT",
                "FIXED",
                Some(5_000_000),
            )
        },
    )
    .await;
    insert_old(
        &db,
        OldRow {
            recurring: true,
            account_groups: Some(r#"["business"]"#),
            ..old(
                "Business points every time",
                "PAYMENT_METHOD_VERIFIED",
                "REFERRER",
                "POINTS",
                "FIXED",
                Some(3_000_000),
            )
        },
    )
    .await;
    insert_old(
        &db,
        OldRow {
            enabled: false,
            ..old("Switched off", "SIGNUP", "REFEREE", "CREDIT", "FIXED", Some(1_000_000))
        },
    )
    .await;
    db.close().await.ok();

    // This release migrates it on start, and seeds nothing: it has rules.
    let app = spawn_app_with(|config| config.database_url = url.clone()).await;
    let rules = app.rules().await;
    let names: Vec<&str> = rules.iter().map(|r| s(r, "/name")).collect();
    assert_eq!(
        names,
        [
            SEEDED_RULE,
            "Credit on a payment method",
            "Credit on top-ups",
            "Business points every time",
            "Switched off"
        ]
    );
    let ids: Vec<String> = rules.iter().map(|r| s(r, "/id").to_owned()).collect();
    let schemes = extra_fields(&app).await;
    let shown: Vec<(Value, Value, Value, Value, Value, Value)> = rules
        .iter()
        .map(|r| {
            (
                r["calculation"].clone(),
                r["value"].clone(),
                r["threshold"].clone(),
                r["productCategories"].clone(),
                r["accountGroups"].clone(),
                schemes[s(r, "/id")].clone(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                json!("PRODUCT_RATE"),
                Value::Null,
                Value::Null,
                json!(["residential"]),
                Value::Null,
                Value::Null
            ),
            (
                json!("FIXED"),
                json!("10.00"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!("POSTPAID")
            ),
            (
                json!("FIXED"),
                json!("5.00"),
                json!("10.00"),
                Value::Null,
                Value::Null,
                json!("PREPAID")
            ),
            (
                json!("FIXED"),
                json!("3.00"),
                Value::Null,
                Value::Null,
                json!(["business"]),
                json!("POSTPAID")
            ),
            (
                json!("FIXED"),
                json!("1.00"),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ),
        ]
    );
    assert_eq!(rules[3]["recurring"], true);
    assert_eq!(rules[4]["enabled"], false);
    // The migrated seed is exactly what the preset declares.
    let done = presets::apply(&app.state.db, presets::DEFAULT, app.state.clock.now())
        .await
        .expect("preset");
    assert_eq!(done, ["preset points-store is in place already: nothing changed"]);

    // And the rules decide as before: each billing scheme qualifies through its own event.
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register_with(
        json!({ "externalId": "acct-b", "displayName": "Bob Brown", "referralCode": a, "group": "business" }),
    )
    .await;
    app.register_scheme("acct-c", "Carol Clark", Some(&a), "PREPAID").await;
    let b_top_up = app.top_up("evt-tu-b", "acct-b", "50.00", None).await;
    assert_eq!(
        b_top_up["rewards"],
        json!([]),
        "a postpaid account's top-ups: {b_top_up:#}"
    );
    let c_verified = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(
        c_verified["rewards"],
        json!([]),
        "a prepaid account's payment method: {c_verified:#}"
    );
    let b = app.verify_payment("evt-pm-b", "acct-b").await;
    let points = (
        "acct-a".to_owned(),
        "REWARD".to_owned(),
        "POINTS".to_owned(),
        "3.00".to_owned(),
        "POSTED".to_owned(),
    );
    assert_eq!(
        rewards_of(&b),
        vec![credit_reward("acct-a", "10.00"), points.clone()],
        "{b:#}"
    );
    let again = app.verify_payment("evt-pm-b-2", "acct-b").await;
    assert_eq!(rewards_of(&again), vec![points], "recurring still: {again:#}");
    let c = app.top_up("evt-tu-c", "acct-c", "10.00", None).await;
    assert_eq!(rewards_of(&c), vec![credit_reward("acct-c", "5.00")], "{c:#}");
    assert!(!has_decision(&c, &ids[4]), "the disabled rule stays off: {c:#}");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 6_000_000);
    assert_eq!(app.ledger_sum("acct-c", "CREDIT").await, 5_000_000);
}
