//! Rules that pay a referrer on its own invoices (`REFERRER_INVOICE_PAID`) while its referrals are
//! active, and the plan-price rewards (`PLAN_PRICE`).
//!
//! A referral is active while the friend's account is open, not disqualified, and paid an invoice
//! within the program's `activeReferralDays` (default 45) before the referrer's invoice. A
//! referrer rule pays the account whose invoice it is (a REWARD with no referral): a fixed
//! discount from `minActiveReferrals` on, an amount per active referral, the amount of the highest
//! tier reached, a percentage of the invoice, or a share of a plan's price. ReopenAccount makes a
//! closed friend count again once it pays. The customer's dashboard shows its active referrals and
//! what its next invoice would earn.
//!
//! In every test the referrer `acct-a` has friends (`acct-b`, `acct-c`, ...) who signed up with its
//! code; a friend is made active by paying an invoice of 30.00.

use crate::helpers::*;
use serde_json::{Value, json};

const REFERRER: &str = "acct-a";
const FRIENDS: [&str; 5] = ["acct-b", "acct-c", "acct-d", "acct-e", "acct-f"];

/// A rule with the fields this file reads that the contract's `Rule` fragment leaves out.
const CREATE_RULE: &str = "mutation C($input: RewardRuleInput!) { createRewardRule(input: $input) \
                           { id tiers { minActive amount } minActiveReferrals calculation } }";

const ACTIVE_REFERRALS: &str = "query Active { me { activeReferrals { count withinDays nextInvoiceCredit } } }";

// ---------------------------------------------------------------------------------------------
// A discount while enough referrals are active

/// 10.00 off each of the referrer's invoices while 4 referrals are active: with 3 active friends
/// the referrer's invoice is skipped (3 of 4), with 4 it pays 10.00 to the referrer (a REWARD of
/// no referral; the referrer has no referrer itself); a friend's closure makes the next invoice
/// skipped again; reopened (ACCOUNT_REOPENED, ACTIVE again) and paying again, it counts again.
#[tokio::test]
async fn a_discount_is_paid_on_each_referrer_invoice_while_four_referrals_are_active() {
    let app = spawn_app().await;
    let rule = app.create_rule_id(discount_rule()).await;
    referral(&app, &FRIENDS[..4]).await;

    for friend in &FRIENDS[..3] {
        let answer = activate(&app, friend, "1").await;
        assert_eq!(
            answer["rewards"],
            json!([]),
            "a friend's invoice pays no one: {answer:#}"
        );
    }
    let three = referrer_invoice(&app, "inv-a-1").await;
    assert_eq!(outcome(&three, &rule), "SKIPPED", "{three:#}");
    assert_active_reason(&three, &rule, "3", "4");
    assert_eq!(three["rewards"], json!([]), "{three:#}");

    activate(&app, FRIENDS[3], "1").await;
    let four = referrer_invoice(&app, "inv-a-2").await;
    assert_eq!(outcome(&four, &rule), "REWARDED", "{four:#}");
    assert_eq!(rewards_of(&four), [credit_reward(REFERRER, "10.00")], "{four:#}");

    let closed = close(&app, "close-e", FRIENDS[3]).await;
    assert_eq!(closed["event"]["kind"], "ACCOUNT_CLOSED", "{closed:#}");
    assert_eq!(account_status(&app, FRIENDS[3]).await, "CLOSED");
    let after_closure = referrer_invoice(&app, "inv-a-3").await;
    assert_eq!(outcome(&after_closure, &rule), "SKIPPED", "{after_closure:#}");
    assert_active_reason(&after_closure, &rule, "3", "4");
    assert_eq!(after_closure["rewards"], json!([]), "{after_closure:#}");

    let reopened = reopen(&app, "reopen-e", FRIENDS[3]).await;
    assert_eq!(reopened["event"]["kind"], "ACCOUNT_REOPENED", "{reopened:#}");
    assert_eq!(reopened["event"]["duplicate"], false, "{reopened:#}");
    assert_eq!(reopened["rewards"], json!([]), "{reopened:#}");
    assert_eq!(account_status(&app, FRIENDS[3]).await, "ACTIVE");
    activate(&app, FRIENDS[3], "2").await;
    let again = referrer_invoice(&app, "inv-a-4").await;
    assert_eq!(outcome(&again, &rule), "REWARDED", "{again:#}");
    assert_eq!(rewards_of(&again), [credit_reward(REFERRER, "10.00")], "{again:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 20_000_000);
    for friend in &FRIENDS[..4] {
        assert_eq!(app.ledger_sum(friend, "CREDIT").await, 0, "{friend} earns nothing");
    }
    let without_referral = app
        .sql_i64(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind = 'REWARD' \
             AND referral_id IS NULL AND account_id = (SELECT id FROM accounts WHERE external_id = 'acct-a')",
        )
        .await;
    assert_eq!(without_referral, 2, "the referrer's rewards belong to no referral");
    app.assert_invariants().await;
}

/// A referral that stops paying stops counting by itself: 4 friends paid on day 0; on day 46 the
/// referrer's invoice is skipped (0 active, with the default `activeReferralDays` 45); with
/// `activeReferralDays` 60 a new invoice on day 46 pays, and the dashboard follows the setting.
#[tokio::test]
async fn a_referral_that_stopped_paying_stops_counting_after_the_active_referral_days() {
    let app = spawn_app().await;
    let rule = app.create_rule_id(discount_rule()).await;
    referral(&app, &FRIENDS[..4]).await;
    assert_eq!(active_referral_days(&app).await, 45, "the default");
    for friend in &FRIENDS[..4] {
        activate(&app, friend, "1").await;
    }

    crate::time::advance(&app, 46);
    let day_46 = referrer_invoice(&app, "inv-a-1").await;
    assert_eq!(outcome(&day_46, &rule), "SKIPPED", "{day_46:#}");
    assert!(reason(&day_46, &rule).contains("active referral"), "{day_46:#}");
    assert!(reason(&day_46, &rule).contains('0'), "0 active: {day_46:#}");
    assert_eq!(day_46["rewards"], json!([]), "{day_46:#}");
    assert_eq!(
        dashboard(&app, REFERRER).await,
        json!({ "count": 0, "withinDays": 45, "nextInvoiceCredit": "0.00" })
    );

    app.update_settings(json!({ "activeReferralDays": 60 })).await;
    assert_eq!(active_referral_days(&app).await, 60);
    let longer = referrer_invoice(&app, "inv-a-2").await;
    assert_eq!(outcome(&longer, &rule), "REWARDED", "{longer:#}");
    assert_eq!(rewards_of(&longer), [credit_reward(REFERRER, "10.00")], "{longer:#}");
    assert_eq!(
        dashboard(&app, REFERRER).await,
        json!({ "count": 4, "withinDays": 60, "nextInvoiceCredit": "10.00" })
    );

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 10_000_000);
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Per active referral, tiers

/// 5.00 per active referral on each referrer invoice: with no friend active (4 registered) the
/// invoice is skipped; with 3 of the 4 active it pays 15.00.
#[tokio::test]
async fn each_active_referral_adds_five_to_the_referrers_invoice_and_none_pays_nothing() {
    let app = spawn_app().await;
    let mut per_active = referrer_rule("5.00 per active referral", "PER_ACTIVE_REFERRAL");
    per_active["value"] = json!("5");
    let created = app.create_rule(per_active).await;
    assert_eq!(created["calculation"], "PER_ACTIVE_REFERRAL", "{created:#}");
    assert_eq!(created["trigger"], "REFERRER_INVOICE_PAID", "{created:#}");
    assert_eq!(created["recurring"], true, "{created:#}");
    let rule = s(&created, "/id").to_owned();
    referral(&app, &FRIENDS[..4]).await;

    let none = referrer_invoice(&app, "inv-a-1").await;
    assert_eq!(outcome(&none, &rule), "SKIPPED", "{none:#}");
    assert!(!reason(&none, &rule).is_empty(), "{none:#}");
    assert_eq!(none["rewards"], json!([]), "{none:#}");

    for friend in &FRIENDS[..3] {
        let answer = activate(&app, friend, "1").await;
        assert_eq!(
            outcome(&answer, &rule),
            "SKIPPED",
            "a friend has no referral: {answer:#}"
        );
        assert_eq!(answer["rewards"], json!([]), "{answer:#}");
    }
    let three = referrer_invoice(&app, "inv-a-2").await;
    assert_eq!(outcome(&three, &rule), "REWARDED", "{three:#}");
    assert_eq!(rewards_of(&three), [credit_reward(REFERRER, "15.00")], "{three:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 15_000_000);
    app.assert_invariants().await;
}

/// Tiers 1 → 2.00, 3 → 5.00, 5 → 10.00 (given out of order, answered sorted by minActive): no
/// active referral is below the lowest tier (skipped), 1 pays 2.00, 4 pays 5.00, 5 pays 10.00. An
/// update that leaves `tiers` out keeps them.
#[tokio::test]
async fn the_highest_tier_reached_by_the_active_referrals_is_paid() {
    let app = spawn_app().await;
    let mut input = tiers_rule();
    input["tiers"] = json!([
        { "minActive": 5, "amount": "10" },
        { "minActive": 1, "amount": "2" },
        { "minActive": 3, "amount": "5" },
    ]);
    let created = create_with_tiers(&app, input.clone()).await;
    assert_eq!(created["calculation"], "TIERS", "{created:#}");
    assert_eq!(created["tiers"], sorted_tiers(), "{created:#}");
    let rule = s(&created, "/id").to_owned();
    referral(&app, &FRIENDS).await;

    let none = referrer_invoice(&app, "inv-a-0").await;
    assert_eq!(outcome(&none, &rule), "SKIPPED", "{none:#}");
    assert_eq!(none["rewards"], json!([]), "{none:#}");

    activate(&app, FRIENDS[0], "1").await;
    let one = referrer_invoice(&app, "inv-a-1").await;
    assert_eq!(outcome(&one, &rule), "REWARDED", "{one:#}");
    assert_eq!(rewards_of(&one), [credit_reward(REFERRER, "2.00")], "{one:#}");

    for friend in &FRIENDS[1..4] {
        activate(&app, friend, "1").await;
    }
    let four = referrer_invoice(&app, "inv-a-4").await;
    assert_eq!(rewards_of(&four), [credit_reward(REFERRER, "5.00")], "{four:#}");

    activate(&app, FRIENDS[4], "1").await;
    let five = referrer_invoice(&app, "inv-a-5").await;
    assert_eq!(rewards_of(&five), [credit_reward(REFERRER, "10.00")], "{five:#}");
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 17_000_000);

    // Renamed with the whole definition but its tiers: the tiers stay.
    let mut renamed = input;
    renamed.as_object_mut().expect("an input").remove("tiers");
    renamed["name"] = json!("Tiers, renamed");
    let updated = app.update_rule(&rule, renamed).await;
    assert_eq!(updated["name"], "Tiers, renamed", "{updated:#}");
    assert_eq!(rule_extras(&app, &rule).await["tiers"], sorted_tiers());
    let after = referrer_invoice(&app, "inv-a-6").await;
    assert_eq!(rewards_of(&after), [credit_reward(REFERRER, "10.00")], "{after:#}");
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Plan prices

/// A free month for the referrer, as much as the lesser of the two plans, on a friend's first
/// invoice: the referrer's last invoice 49.99 and the friend's 29.99 pay 29.99; a second friend's
/// 59.99 pays 49.99; a referrer who never paid an invoice gets nothing (no paid invoice).
#[tokio::test]
async fn a_free_month_is_worth_the_lesser_of_the_referrers_and_the_friends_plan() {
    let app = spawn_app().await;
    let mut free_month = rule_input(
        "A free month, the lesser plan",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PLAN_PRICE",
    );
    free_month["value"] = json!("100");
    free_month["invoiceNumber"] = json!(1);
    free_month["planPriceBase"] = json!("LESSER");
    let rule = app.create_rule_id(free_month).await;
    referral(&app, &FRIENDS[..2]).await;

    paid(&app, "inv-a-1", REFERRER, "internet", "49.99").await;
    let cheaper = paid(&app, "inv-b-1", FRIENDS[0], "internet", "29.99").await;
    assert_eq!(outcome(&cheaper, &rule), "REWARDED", "{cheaper:#}");
    assert_eq!(rewards_of(&cheaper), [credit_reward(REFERRER, "29.99")], "{cheaper:#}");
    let dearer = paid(&app, "inv-c-1", FRIENDS[1], "internet", "59.99").await;
    assert_eq!(outcome(&dearer, &rule), "REWARDED", "{dearer:#}");
    assert_eq!(rewards_of(&dearer), [credit_reward(REFERRER, "49.99")], "{dearer:#}");

    let code = app.register_code("acct-z", Some("Zoe Zero"), None).await;
    app.register("acct-y", Some("Yann Young"), Some(&code)).await;
    let no_invoice = paid(&app, "inv-y-1", "acct-y", "internet", "29.99").await;
    assert_eq!(outcome(&no_invoice, &rule), "SKIPPED", "{no_invoice:#}");
    assert!(reason(&no_invoice, &rule).contains("no paid invoice"), "{no_invoice:#}");
    assert_eq!(no_invoice["rewards"], json!([]), "{no_invoice:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 79_980_000);
    assert_eq!(app.ledger_sum("acct-z", "CREDIT").await, 0);
    app.assert_invariants().await;
}

/// Half a month of the referrer's own plan on a friend's first invoice: of its last invoice
/// (39.99, after one of 25.00), 19.995 paid as 19.99 (rounded down); the friend's 100.00 does not
/// matter.
#[tokio::test]
async fn half_a_month_of_the_referrers_own_last_plan_is_rounded_down_to_the_cent() {
    let app = spawn_app().await;
    let mut half_month = rule_input(
        "Half a month of your plan",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PLAN_PRICE",
    );
    half_month["value"] = json!("50");
    half_month["invoiceNumber"] = json!(1);
    half_month["planPriceBase"] = json!("BENEFICIARY");
    let rule = app.create_rule_id(half_month).await;
    referral(&app, &FRIENDS[..1]).await;

    paid(&app, "inv-a-1", REFERRER, "internet", "25.00").await;
    paid(&app, "inv-a-2", REFERRER, "internet", "39.99").await;
    let first = paid(&app, "inv-b-1", FRIENDS[0], "internet", "100.00").await;
    assert_eq!(outcome(&first, &rule), "REWARDED", "{first:#}");
    assert_eq!(rewards_of(&first), [credit_reward(REFERRER, "19.99")], "{first:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 19_990_000);
    app.assert_invariants().await;
}

/// On the referrer's own invoice (39.99), while a referral is active: 10 % of it (3.999, paid
/// 3.99) and half of it as a plan price (19.995, paid 19.99); with no active referral, neither.
#[tokio::test]
async fn a_percentage_and_a_plan_price_of_the_referrers_own_invoice_are_paid_while_a_referral_is_active() {
    let app = spawn_app().await;
    let mut percent = referrer_rule("10 % of your invoice", "PERCENT");
    percent["value"] = json!("10");
    percent["minActiveReferrals"] = json!(1);
    let percent = app.create_rule_id(percent).await;
    let mut plan = referrer_rule("Half of your plan", "PLAN_PRICE");
    plan["value"] = json!("50");
    plan["minActiveReferrals"] = json!(1);
    let plan = app.create_rule_id(plan).await;
    referral(&app, &FRIENDS[..1]).await;

    let alone = paid(&app, "inv-a-1", REFERRER, "internet", "39.99").await;
    for rule in [&percent, &plan] {
        assert_eq!(outcome(&alone, rule), "SKIPPED", "{alone:#}");
        assert!(reason(&alone, rule).contains("active referral"), "{alone:#}");
    }
    assert_eq!(alone["rewards"], json!([]), "{alone:#}");

    activate(&app, FRIENDS[0], "1").await;
    let active = paid(&app, "inv-a-2", REFERRER, "internet", "39.99").await;
    assert_eq!(outcome(&active, &percent), "REWARDED", "{active:#}");
    assert_eq!(outcome(&active, &plan), "REWARDED", "{active:#}");
    assert_eq!(
        rewards_of(&active),
        [credit_reward(REFERRER, "19.99"), credit_reward(REFERRER, "3.99")],
        "{active:#}"
    );

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 23_980_000);
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Groups, validation, the dashboard, concurrency

/// A 5.00 discount for business referrers (`accountGroups` ["business"]: on this trigger, the
/// groups of the account whose invoice it is): each referrer has one active friend; the business
/// referrer's invoice pays 5.00, the residential referrer's is skipped.
#[tokio::test]
async fn a_business_referrer_gets_a_discount_a_residential_referrer_does_not() {
    let app = spawn_app().await;
    let mut business = referrer_rule("5.00 off for business referrers", "FIXED");
    business["value"] = json!("5");
    business["accountGroups"] = json!(["business"]);
    let rule = app.create_rule_id(business).await;

    for (referrer, group, friend) in [
        ("biz-ref", "business", "friend-of-biz"),
        ("home-ref", "residential", "friend-of-home"),
    ] {
        let registered = app
            .register_with(json!({ "externalId": referrer, "displayName": "Rita Referrer", "group": group }))
            .await;
        let code = s(&registered, "/account/referralCode").to_owned();
        app.register(friend, Some("Fred Friend"), Some(&code)).await;
        let answer = activate(&app, friend, "1").await;
        assert_eq!(answer["rewards"], json!([]), "{answer:#}");
    }

    let biz = paid(&app, "inv-biz-1", "biz-ref", "internet", "80.00").await;
    assert_eq!(outcome(&biz, &rule), "REWARDED", "{biz:#}");
    assert_eq!(rewards_of(&biz), [credit_reward("biz-ref", "5.00")], "{biz:#}");
    let home = paid(&app, "inv-home-1", "home-ref", "internet", "80.00").await;
    assert_eq!(outcome(&home, &rule), "SKIPPED", "{home:#}");
    assert!(reason(&home, &rule).contains("residential"), "{home:#}");
    assert_eq!(home["rewards"], json!([]), "{home:#}");

    assert_eq!(app.ledger_sum("biz-ref", "CREDIT").await, 5_000_000);
    assert_eq!(app.ledger_sum("home-ref", "CREDIT").await, 0);
    app.assert_invariants().await;
}

/// Invalid referrer-invoice, tier and plan-price rules are refused with BAD_USER_INPUT naming the
/// field, and so is an `activeReferralDays` out of 1..3650; nothing is written. Their valid
/// neighbours are accepted.
#[tokio::test]
async fn invalid_referrer_invoice_tier_and_plan_price_rules_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut fixed = referrer_rule("10.00 off", "FIXED");
    fixed["value"] = json!("10");
    let mut tiers = tiers_rule();
    tiers["tiers"] = json!([{ "minActive": 1, "amount": "2" }]);
    let mut invoice_fixed = fixed_credit_rule("10.00 per friend's invoice", "INVOICE_PAID", "REFERRER", "10");
    invoice_fixed["recurring"] = json!(true);
    let mut plan = referrer_rule("A free month", "PLAN_PRICE");
    plan["value"] = json!("100");
    let mut top_up_plan = rule_input(
        "A free month",
        "TOP_UP_TOTAL_REACHED",
        "REFERRER",
        "CREDIT",
        "PLAN_PRICE",
    );
    top_up_plan["value"] = json!("100");
    top_up_plan["threshold"] = json!("10");
    let mut invoice_per_active = rule_input(
        "5.00 per active referral",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PER_ACTIVE_REFERRAL",
    );
    invoice_per_active["value"] = json!("5");
    invoice_per_active["recurring"] = json!(true);
    let twenty_one: Vec<Value> = (1..=21)
        .map(|n| json!({ "minActive": n, "amount": format!("{n}") }))
        .collect();

    let cases = [
        (with(&fixed, json!({ "beneficiary": "REFEREE" })), "beneficiary"),
        (with(&fixed, json!({ "recurring": false })), "recurring"),
        (with(&fixed, json!({ "recurring": null })), "recurring"),
        (with(&fixed, json!({ "capPerReferral": "50" })), "capPerReferral"),
        (with(&fixed, json!({ "invoiceNumber": 1 })), "invoiceNumber"),
        (
            with(&invoice_fixed, json!({ "minActiveReferrals": 2 })),
            "minActiveReferrals",
        ),
        (
            with(&fixed, json!({ "minActiveReferrals": 1001 })),
            "minActiveReferrals",
        ),
        (with(&fixed, json!({ "minActiveReferrals": -1 })), "minActiveReferrals"),
        (with(&tiers, json!({ "tiers": null })), "tiers"),
        (with(&tiers, json!({ "tiers": [] })), "tiers"),
        (
            with(&fixed, json!({ "tiers": [{ "minActive": 1, "amount": "2" }] })),
            "tiers",
        ),
        (
            with(
                &tiers,
                json!({ "tiers": [{ "minActive": 2, "amount": "2" }, { "minActive": 2, "amount": "5" }] }),
            ),
            "tiers",
        ),
        (
            with(&tiers, json!({ "tiers": [{ "minActive": 1, "amount": "0" }] })),
            "tiers",
        ),
        (
            with(&tiers, json!({ "tiers": [{ "minActive": 0, "amount": "2" }] })),
            "tiers",
        ),
        (with(&tiers, json!({ "tiers": twenty_one })), "tiers"),
        (invoice_per_active, "calculation"),
        (top_up_plan, "calculation"),
        (with(&plan, json!({ "planPriceBase": "REFEREE" })), "planPriceBase"),
        (with(&plan, json!({ "planPriceBase": "LESSER" })), "planPriceBase"),
        (with(&plan, json!({ "value": "0" })), "value"),
        (with(&plan, json!({ "value": "1001" })), "value"),
    ];
    let rules_before = app.rules().await;
    let snapshot_before = app.snapshot().await;
    for (input, field) in &cases {
        let body = app.create_rule_raw(input.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "the refusal of {input} names {field}: {body:#}"
        );
    }
    for days in [0, -1, 3651] {
        let body = app
            .run(
                Some(&app.admin()),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": { "activeReferralDays": days } }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("activeReferralDays"), "{days}: {body:#}");
    }
    assert_eq!(app.rules().await, rules_before);
    assert_eq!(app.snapshot().await, snapshot_before, "nothing written");
    assert_eq!(active_referral_days(&app).await, 45);

    // The valid neighbours.
    let twenty: Vec<Value> = (1..=20)
        .map(|n| json!({ "minActive": n, "amount": format!("{n}") }))
        .collect();
    let most = app
        .create_rule(with(&fixed, json!({ "name": "most", "minActiveReferrals": 1000 })))
        .await;
    assert_eq!(most["minActiveReferrals"], 1000, "{most:#}");
    let emptied = app
        .create_rule(with(&fixed, json!({ "name": "emptied", "minActiveReferrals": 0 })))
        .await;
    assert_eq!(emptied["minActiveReferrals"], Value::Null, "0 is not set: {emptied:#}");
    let twenty_tiers = create_with_tiers(&app, with(&tiers, json!({ "name": "twenty", "tiers": twenty }))).await;
    assert_eq!(
        twenty_tiers["tiers"].as_array().map(Vec::len),
        Some(20),
        "{twenty_tiers:#}"
    );
    for neighbour in [
        with(&plan, json!({ "name": "own plan", "planPriceBase": "BENEFICIARY" })),
        with(&plan, json!({ "name": "ten months", "value": "1000" })),
        with(
            &plan,
            json!({ "name": "on spend", "trigger": "SPEND_TOTAL_REACHED", "recurring": false }),
        ),
    ] {
        let created = app.create_rule(neighbour.clone()).await;
        assert_eq!(created["calculation"], "PLAN_PRICE", "{neighbour}: {created:#}");
    }
    assert_eq!(app.rules().await.len(), rules_before.len() + 6);
    for days in [1, 3650] {
        app.update_settings(json!({ "activeReferralDays": days })).await;
        assert_eq!(active_referral_days(&app).await, days);
    }
    app.assert_invariants().await;
}

/// The referrer's dashboard with the 10.00 discount from 4 active referrals and the tiers
/// enabled (a percentage rule and a disabled rule do not count): 4 active within 45 days, 15.00
/// on the next invoice; after a friend's closure 3 and 5.00. A friend's own dashboard: none.
#[tokio::test]
async fn the_dashboard_shows_the_active_referrals_and_what_the_next_invoice_earns() {
    let app = spawn_app().await;
    app.create_rule_id(discount_rule()).await;
    let mut tiers = tiers_rule();
    tiers["tiers"] = sorted_tiers();
    app.create_rule_id(tiers).await;
    let mut percent = referrer_rule("10 % of your invoice", "PERCENT");
    percent["value"] = json!("10");
    app.create_rule_id(percent).await;
    let mut disabled = referrer_rule("Disabled: 100.00 off", "FIXED");
    disabled["value"] = json!("100");
    disabled["enabled"] = json!(false);
    app.create_rule_id(disabled).await;
    referral(&app, &FRIENDS[..4]).await;
    for friend in &FRIENDS[..4] {
        activate(&app, friend, "1").await;
    }
    let before = app.snapshot().await;

    assert_eq!(
        dashboard(&app, REFERRER).await,
        json!({ "count": 4, "withinDays": 45, "nextInvoiceCredit": "15.00" })
    );
    assert_eq!(app.snapshot().await, before, "reading the dashboard writes nothing");

    close(&app, "close-e", FRIENDS[3]).await;
    assert_eq!(
        dashboard(&app, REFERRER).await,
        json!({ "count": 3, "withinDays": 45, "nextInvoiceCredit": "5.00" })
    );
    let friend = dashboard(&app, FRIENDS[0]).await;
    assert_eq!(friend["count"], 0, "{friend:#}");
    assert_eq!(friend["withinDays"], 45, "{friend:#}");
    assert_eq!(friend["nextInvoiceCredit"], "0.00", "{friend:#}");
    app.assert_invariants().await;
}

/// The referrer's 10 invoices sent at once, with 2 active friends and 1.00 per active referral:
/// every one is recorded and pays 2.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_referrer_invoices_each_pay_for_the_active_referrals() {
    let app = spawn_app().await;
    let mut per_active = referrer_rule("1.00 per active referral", "PER_ACTIVE_REFERRAL");
    per_active["value"] = json!("1");
    let rule = app.create_rule_id(per_active).await;
    referral(&app, &FRIENDS[..2]).await;
    for friend in &FRIENDS[..2] {
        activate(&app, friend, "1").await;
    }
    let events = app.count("events").await;

    let query = app.op("integration", "RecordInvoicePaid");
    let vars = (0..10)
        .map(|i| {
            invoice_vars(
                &format!("inv-a-race-{i}"),
                REFERRER,
                &[("internet", "50.00")],
                None,
                None,
            )
        })
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;
    for body in &bodies {
        let answer = data_of(body, "a concurrent referrer invoice")["recordInvoicePaid"].clone();
        assert_eq!(answer["event"]["duplicate"], false, "{body:#}");
        assert_eq!(outcome(&answer, &rule), "REWARDED", "{answer:#}");
        assert_eq!(rewards_of(&answer), [credit_reward(REFERRER, "2.00")], "{answer:#}");
    }
    assert_eq!(app.count("events").await, events + 10);
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 20_000_000);
    app.assert_invariants().await;
}

/// ReopenAccount of an open account changes nothing (still ACTIVE, nothing paid); sent again it is
/// its replay; of an unknown account, NOT_FOUND.
#[tokio::test]
async fn reopening_an_open_account_changes_nothing() {
    let app = spawn_app().await;
    referral(&app, &FRIENDS[..1]).await;
    let before = app.ledger_sum(FRIENDS[0], "CREDIT").await;

    let reopened = reopen(&app, "reopen-b", FRIENDS[0]).await;
    assert_eq!(reopened["event"]["kind"], "ACCOUNT_REOPENED", "{reopened:#}");
    assert_eq!(reopened["rewards"], json!([]), "{reopened:#}");
    assert_eq!(account_status(&app, FRIENDS[0]).await, "ACTIVE");
    let again = reopen(&app, "reopen-b", FRIENDS[0]).await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(again["event"]["id"], reopened["event"]["id"], "{again:#}");
    let unknown = reopen_raw(&app, "reopen-x", "acct-x").await;
    assert_failed(&unknown, "NOT_FOUND");

    assert_eq!(account_status(&app, FRIENDS[0]).await, "ACTIVE");
    assert_eq!(app.ledger_sum(FRIENDS[0], "CREDIT").await, before);
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Rules and set-ups

/// A REFERRER_INVOICE_PAID rule paying CREDIT to the referrer on each of its invoices; set
/// `value` and the rest.
fn referrer_rule(name: &str, calculation: &str) -> Value {
    let mut rule = rule_input(name, "REFERRER_INVOICE_PAID", "REFERRER", "CREDIT", calculation);
    rule["recurring"] = json!(true);
    rule
}

/// 10.00 off each of the referrer's invoices while 4 referrals are active.
fn discount_rule() -> Value {
    let mut rule = referrer_rule("10.00 off with 4 active referrals", "FIXED");
    rule["value"] = json!("10");
    rule["minActiveReferrals"] = json!(4);
    rule
}

/// A TIERS rule without its tiers.
fn tiers_rule() -> Value {
    referrer_rule("Tiers of active referrals", "TIERS")
}

/// Tiers 1 → 2.00, 3 → 5.00, 5 → 10.00, as the rule answers them.
fn sorted_tiers() -> Value {
    json!([
        { "minActive": 1, "amount": "2.00" },
        { "minActive": 3, "amount": "5.00" },
        { "minActive": 5, "amount": "10.00" },
    ])
}

/// CreateRewardRule with the fields the contract's fragment leaves out; `createRewardRule`.
async fn create_with_tiers(app: &TestApp, input: Value) -> Value {
    let body = app
        .gql(Some(&app.admin()), CREATE_RULE, json!({ "input": input.clone() }))
        .await;
    data_of(&body, &format!("CreateRewardRule {input}"))["createRewardRule"].clone()
}

/// A rule's fields the contract's fragment leaves out, as RewardRules lists them.
async fn rule_extras(app: &TestApp, id: &str) -> Value {
    let body = app
        .gql(
            Some(&app.admin()),
            "{ rewardRules { id tiers { minActive amount } minActiveReferrals calculation } }",
            json!({}),
        )
        .await;
    let data = data_of(&body, "rewardRules with tiers");
    data["rewardRules"]
        .as_array()
        .expect("rewardRules")
        .iter()
        .find(|rule| rule["id"] == id)
        .unwrap_or_else(|| panic!("rule {id} listed: {data:#}"))
        .clone()
}

/// The program's `activeReferralDays`.
async fn active_referral_days(app: &TestApp) -> i64 {
    let body = app
        .gql(
            Some(&app.admin()),
            "{ programSettings { activeReferralDays } }",
            json!({}),
        )
        .await;
    data_of(&body, "activeReferralDays")["programSettings"]["activeReferralDays"]
        .as_i64()
        .unwrap_or_else(|| panic!("activeReferralDays is an Int: {body:#}"))
}

/// The referrer and friends who signed up with its code.
async fn referral(app: &TestApp, friends: &[&str]) {
    let code = app.register_code(REFERRER, Some("Alice Adams"), None).await;
    for friend in friends {
        app.register(friend, Some("Bob Brown"), Some(&code)).await;
    }
}

/// The customer's `me.activeReferrals`.
async fn dashboard(app: &TestApp, external_id: &str) -> Value {
    let body = app
        .gql(Some(&app.customer(external_id)), ACTIVE_REFERRALS, json!({}))
        .await;
    data_of(&body, &format!("the active referrals of {external_id}"))["me"]["activeReferrals"].clone()
}

// ---------------------------------------------------------------------------------------------
// Events

/// A friend's invoice of 30.00, which makes it active; `tag` tells its invoices apart.
async fn activate(app: &TestApp, friend: &str, tag: &str) -> Value {
    paid(app, &format!("inv-{friend}-{tag}"), friend, "internet", "30.00").await
}

/// The referrer's own invoice of 50.00.
async fn referrer_invoice(app: &TestApp, event_id: &str) -> Value {
    paid(app, event_id, REFERRER, "internet", "50.00").await
}

/// CloseAccount, now, that must succeed; `closeAccount`.
async fn close(app: &TestApp, event_id: &str, external_id: &str) -> Value {
    let vars = json!({ "input": { "eventId": event_id, "externalId": external_id } });
    simulated_then_sent(app, "accountClosed", "CloseAccount", vars).await
}

/// ReopenAccount, now; the whole body.
async fn reopen_raw(app: &TestApp, event_id: &str, external_id: &str) -> Value {
    app.run(
        Some(&app.service()),
        "integration",
        "ReopenAccount",
        json!({ "input": { "eventId": event_id, "externalId": external_id } }),
    )
    .await
}

/// ReopenAccount, now, that must succeed; `reopenAccount`.
async fn reopen(app: &TestApp, event_id: &str, external_id: &str) -> Value {
    let vars = json!({ "input": { "eventId": event_id, "externalId": external_id } });
    simulated_then_sent(app, "accountReopened", "ReopenAccount", vars).await
}

// ---------------------------------------------------------------------------------------------
// Reading answers

/// The rule was skipped for too few active referrals, and the reason says how many of how many.
fn assert_active_reason(payload: &Value, rule_id: &str, active: &str, needed: &str) {
    let reason = reason(payload, rule_id);
    assert!(reason.contains("active referral"), "{payload:#}");
    assert!(
        reason.contains(active) && reason.contains(needed),
        "{active} of {needed}: {payload:#}"
    );
}
