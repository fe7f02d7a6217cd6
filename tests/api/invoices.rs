//! Paid invoices (`RecordInvoicePaid`) and the rules they drive.
//!
//! Program 4, cloud refer-a-friend: the referrer gets 20.00 credit once the friend's cash spend on
//! compute reaches 20.00 (rule A), plus 10 % of the compute spend above that (rule B), both within
//! the friend's first 90 days, held 30 days, expiring 180 days after, at most 300.00 per friend.
//! Program 2, ISP billing: a credit or a percentage of the friend's n-th paid invoice, or of each
//! invoice for a number of invoices, per referrer group.
//!
//! What counts as spend is what was paid in cash, in the share of the qualifying lines; credit and
//! coupons count for nothing. A refund takes back what its invoice caused, in proportion. In every
//! test the referrer `acct-a` is the beneficiary and its friends (`acct-b`, ...) pay the invoices.

use crate::helpers::*;
use chrono::Duration;
use serde_json::{Value, json};

const REFERRER: &str = "acct-a";
const FRIEND: &str = "acct-b";

// ---------------------------------------------------------------------------------------------
// Program 4: cloud refer-a-friend with spend rules

/// Program 4, in order: a 20.00 invoice on compute reaches A's threshold (20.00 on hold for 30
/// days, expiring 180 days after it becomes available) and adds nothing above it for B; a 480.00
/// invoice then pays B 10 % of it, and A nothing more.
#[tokio::test]
async fn a_friends_compute_spend_pays_the_threshold_credit_then_ten_percent_of_the_spend_above_it() {
    let app = spawn_app().await;
    let (a, b) = program_4(&app, &[FRIEND]).await;

    let before = app.state.clock.now();
    let first = paid(&app, "inv-1", FRIEND, "compute", "20.00").await;
    let after = app.state.clock.now();
    assert_eq!(first["event"]["kind"], "INVOICE_PAID", "{first:#}");
    assert_eq!(first["event"]["eventId"], "inv-1", "{first:#}");
    assert_eq!(first["event"]["duplicate"], false, "{first:#}");
    assert_eq!(outcome(&first, &a), "REWARDED", "{first:#}");
    assert_eq!(
        outcome(&first, &b),
        "SKIPPED",
        "nothing above the threshold yet: {first:#}"
    );
    assert_eq!(rewards_of(&first), [held(REFERRER, "20.00")], "{first:#}");
    let reward = &first["rewards"][0];
    let available_at = instant(&reward["availableAt"]);
    assert!(
        before + Duration::days(30) <= available_at && available_at <= after + Duration::days(30),
        "available 30 days after the invoice: {first:#}"
    );
    assert_eq!(
        instant(&reward["expiresAt"]),
        available_at + Duration::days(180),
        "{first:#}"
    );

    let second = paid(&app, "inv-2", FRIEND, "compute", "480.00").await;
    assert_eq!(outcome(&second, &b), "REWARDED", "{second:#}");
    assert_eq!(outcome(&second, &a), "SKIPPED", "{second:#}");
    assert!(reason(&second, &a).contains("already"), "{second:#}");
    assert_eq!(rewards_of(&second), [held(REFERRER, "48.00")], "{second:#}");

    assert_eq!(app.credit(REFERRER).await, figures("0.00", "68.00", "0.00"));
    assert_eq!(
        app.ledger_sum(FRIEND, "CREDIT").await,
        0,
        "the friend earns nothing here"
    );
    app.assert_invariants().await;
}

/// Spend paid with credit or coupons is no spend: an invoice paid wholly with credit counts
/// nothing towards A's threshold nor, later, towards B's share above it; an invoice paid half
/// with credit counts its cash half.
#[tokio::test]
async fn spend_paid_with_credit_counts_for_nothing() {
    let app = spawn_app().await;
    let (a, b) = program_4(&app, &[FRIEND]).await;

    let with_credit = invoice(&app, "inv-1", FRIEND, &[("compute", "100.00")], None, Some("100.00")).await;
    assert_eq!(with_credit["rewards"], json!([]), "{with_credit:#}");
    assert_eq!(outcome(&with_credit, &a), "SKIPPED", "{with_credit:#}");
    assert_eq!(outcome(&with_credit, &b), "SKIPPED", "{with_credit:#}");

    // Had the 100.00 counted, A would have paid already, and B would pay 10 % of 100.00 now.
    let cash = paid(&app, "inv-2", FRIEND, "compute", "20.00").await;
    assert_eq!(outcome(&cash, &a), "REWARDED", "{cash:#}");
    assert_eq!(outcome(&cash, &b), "SKIPPED", "{cash:#}");
    assert_eq!(rewards_of(&cash), [held(REFERRER, "20.00")], "{cash:#}");

    // Half in cash, half with credit: 50.00 of the 100.00 counts, all of it above the threshold.
    let half = invoice(
        &app,
        "inv-3",
        FRIEND,
        &[("compute", "100.00")],
        Some("50.00"),
        Some("50.00"),
    )
    .await;
    assert_eq!(rewards_of(&half), [held(REFERRER, "5.00")], "{half:#}");
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "25.00", "0.00"));
    app.assert_invariants().await;
}

/// Only the rules' product categories count as spend: 100.00 on storage counts nothing; an
/// invoice of 50.00 compute and 50.00 storage paid 100.00 in cash counts 50.00 (so A pays and B
/// pays 10 % of the 30.00 above the threshold). A category is a key: "Compute" is compute.
#[tokio::test]
async fn only_qualifying_categories_count_as_spend_in_their_share_of_the_cash_paid() {
    let app = spawn_app().await;
    let (a, b) = program_4(&app, &[FRIEND]).await;

    let storage = paid(&app, "inv-1", FRIEND, "storage", "100.00").await;
    assert_eq!(storage["rewards"], json!([]), "{storage:#}");
    assert_eq!(outcome(&storage, &a), "SKIPPED", "{storage:#}");
    assert_eq!(outcome(&storage, &b), "SKIPPED", "{storage:#}");

    let mixed = invoice(
        &app,
        "inv-2",
        FRIEND,
        &[("Compute", "50.00"), ("storage", "50.00")],
        Some("100.00"),
        None,
    )
    .await;
    assert_eq!(outcome(&mixed, &a), "REWARDED", "{mixed:#}");
    assert_eq!(outcome(&mixed, &b), "REWARDED", "{mixed:#}");
    assert_eq!(
        rewards_of(&mixed),
        [held(REFERRER, "20.00"), held(REFERRER, "3.00")],
        "{mixed:#}"
    );
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "23.00", "0.00"));
    app.assert_invariants().await;
}

/// `windowDays` 90: a friend's spend on day 89 pays, another friend's first spend on day 100
/// earns nothing from either rule, and the decisions say why.
#[tokio::test]
async fn spend_after_the_friends_first_90_days_earns_nothing() {
    let app = spawn_app().await;
    let (a, b) = program_4(&app, &[FRIEND, "acct-c"]).await;

    crate::time::advance(&app, 89);
    let day_89 = paid(&app, "inv-c-1", "acct-c", "compute", "30.00").await;
    assert_eq!(
        rewards_of(&day_89),
        [held(REFERRER, "1.00"), held(REFERRER, "20.00")],
        "{day_89:#}"
    );

    crate::time::advance(&app, 11);
    let day_100 = paid(&app, "inv-b-1", FRIEND, "compute", "30.00").await;
    assert_eq!(day_100["rewards"], json!([]), "{day_100:#}");
    for rule in [&a, &b] {
        assert_eq!(outcome(&day_100, rule), "SKIPPED", "{day_100:#}");
        assert_eq!(
            reason(&day_100, rule),
            "happened 100 days after sign-up, after the rule's 90-day window",
            "{day_100:#}"
        );
    }
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 21_000_000);
    app.assert_invariants().await;
}

/// `capPerReferral` 300.00: a friend who spends 5,000.00 earns the referrer 300.00 in all, A's
/// 20.00 included (20.00 + 48.00 + 232.00, the last of B's payments cut to fit); B then pays
/// nothing more for that friend, and says it is the cap.
#[tokio::test]
async fn a_friends_spend_stops_paying_at_the_cap_per_friend_with_the_last_payment_cut_to_fit() {
    let app = spawn_app().await;
    let (a, b) = program_4(&app, &[FRIEND]).await;
    let shown = rule_by_id(&app, &b).await;
    assert_eq!(shown["capPerReferral"], "300.00", "{shown:#}");
    assert_eq!(shown["recurring"], true, "{shown:#}");

    let first = paid(&app, "inv-1", FRIEND, "compute", "20.00").await;
    assert_eq!(rewards_of(&first), [held(REFERRER, "20.00")], "{first:#}");
    let second = paid(&app, "inv-2", FRIEND, "compute", "480.00").await;
    assert_eq!(rewards_of(&second), [held(REFERRER, "48.00")], "{second:#}");
    // 10 % of 4,500.00 is 450.00; 300.00 - 68.00 is what is left under the cap.
    let third = paid(&app, "inv-3", FRIEND, "compute", "4500.00").await;
    assert_eq!(outcome(&third, &b), "REWARDED", "{third:#}");
    assert_eq!(rewards_of(&third), [held(REFERRER, "232.00")], "{third:#}");

    let fourth = paid(&app, "inv-4", FRIEND, "compute", "100.00").await;
    assert_eq!(fourth["rewards"], json!([]), "{fourth:#}");
    assert_eq!(outcome(&fourth, &b), "SKIPPED", "{fourth:#}");
    assert!(reason(&fourth, &b).contains("cap"), "{fourth:#}");
    assert_eq!(outcome(&fourth, &a), "SKIPPED", "{fourth:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 300_000_000);
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "300.00", "0.00"));
    app.assert_invariants().await;
}

/// Program 4's credit is on hold 30 days, then available; what is left of it 180 days later
/// expires (lifetime earnings stay).
#[tokio::test]
async fn program_4_credit_is_available_after_the_hold_and_what_is_unused_expires_180_days_later() {
    let app = spawn_app().await;
    program_4(&app, &[FRIEND]).await;
    paid(&app, "inv-1", FRIEND, "compute", "20.00").await;
    paid(&app, "inv-2", FRIEND, "compute", "480.00").await;
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "68.00", "0.00"));

    crate::time::advance(&app, 29);
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "68.00", "0.00"));
    crate::time::advance(&app, 1);
    assert_eq!(app.credit(REFERRER).await, figures("68.00", "0.00", "68.00"));
    let applied = app.apply_credit("bill-a-1", REFERRER, "18.00").await;
    assert_eq!(applied["applied"], "18.00", "{applied:#}");
    assert_eq!(app.credit(REFERRER).await, figures("50.00", "0.00", "68.00"));

    crate::time::advance(&app, 179);
    assert_eq!(app.credit(REFERRER).await, figures("50.00", "0.00", "68.00"));
    crate::time::advance(&app, 1);
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "0.00", "68.00"));
    let nothing = app.apply_credit_raw("bill-a-2", REFERRER, "10.00").await;
    assert_eq!(nothing["data"]["applyCredit"]["applied"], "0.00", "{nothing:#}");
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Program 2: ISP billing

/// A one-time 20.00 credit after the friend's first paid invoice (a fixed credit, whatever paid
/// the invoice: here credit); the second invoice pays nothing.
#[tokio::test]
async fn a_one_time_credit_is_paid_on_the_first_paid_invoice_and_not_on_the_second() {
    let app = spawn_app().await;
    let mut rule = fixed_credit_rule("20.00 after a friend's first invoice", "INVOICE_PAID", "REFERRER", "20");
    rule["invoiceNumber"] = json!(1);
    let (id, created) = program_2(&app, rule).await;
    assert_eq!(created["invoiceNumber"], 1, "{created:#}");
    assert_eq!(created["recurring"], false, "{created:#}");

    let first = invoice(&app, "inv-1", FRIEND, &[("internet", "40.00")], None, Some("40.00")).await;
    assert_eq!(outcome(&first, &id), "REWARDED", "{first:#}");
    assert_eq!(rewards_of(&first), [credit_reward(REFERRER, "20.00")], "{first:#}");
    let second = paid(&app, "inv-2", FRIEND, "internet", "40.00").await;
    assert_eq!(outcome(&second, &id), "SKIPPED", "{second:#}");
    assert_eq!(second["rewards"], json!([]), "{second:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 20_000_000);
    assert_eq!(app.credit(REFERRER).await, figures("20.00", "0.00", "20.00"));
    app.assert_invariants().await;
}

/// 50 % of the friend's second paid invoice: the first (40.00) pays nothing, the second (30.00)
/// pays 15.00, the third nothing.
#[tokio::test]
async fn half_of_the_friends_second_invoice_is_paid_and_no_other() {
    let app = spawn_app().await;
    let mut rule = rule_input(
        "50 % of the 2nd invoice",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    rule["value"] = json!("50");
    rule["invoiceNumber"] = json!(2);
    let (id, created) = program_2(&app, rule).await;
    assert_eq!(created["invoiceNumber"], 2, "{created:#}");
    assert_eq!(created["calculation"], "PERCENT", "{created:#}");

    let first = paid(&app, "inv-1", FRIEND, "internet", "40.00").await;
    assert_eq!(outcome(&first, &id), "SKIPPED", "{first:#}");
    assert_eq!(first["rewards"], json!([]), "{first:#}");
    let second = paid(&app, "inv-2", FRIEND, "internet", "30.00").await;
    assert_eq!(outcome(&second, &id), "REWARDED", "{second:#}");
    assert_eq!(rewards_of(&second), [credit_reward(REFERRER, "15.00")], "{second:#}");
    let third = paid(&app, "inv-3", FRIEND, "internet", "30.00").await;
    assert_eq!(outcome(&third, &id), "SKIPPED", "{third:#}");
    assert_eq!(third["rewards"], json!([]), "{third:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 15_000_000);
    app.assert_invariants().await;
}

/// 150 % of the friend's first month: 150 % of 29.99 is 44.985, paid as 44.98 (rounded down to
/// the cent).
#[tokio::test]
async fn a_percentage_above_100_of_the_first_invoice_is_rounded_down_to_the_cent() {
    let app = spawn_app().await;
    let mut rule = rule_input(
        "150 % of the first month",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    rule["value"] = json!("150");
    rule["invoiceNumber"] = json!(1);
    let (id, _) = program_2(&app, rule).await;

    let first = paid(&app, "inv-1", FRIEND, "internet", "29.99").await;
    assert_eq!(outcome(&first, &id), "REWARDED", "{first:#}");
    assert_eq!(rewards_of(&first), [credit_reward(REFERRER, "44.98")], "{first:#}");
    let second = paid(&app, "inv-2", FRIEND, "internet", "29.99").await;
    assert_eq!(second["rewards"], json!([]), "{second:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 44_980_000);
    app.assert_invariants().await;
}

/// 5 % of each of the friend's invoices for 12 invoices (`recurring`, `maxOccurrences` 12):
/// 13 invoices of 100.00 pay 12 × 5.00, and the 13th is skipped with a reason.
#[tokio::test]
async fn a_recurring_percentage_pays_each_invoice_up_to_its_max_occurrences_then_nothing() {
    let app = spawn_app().await;
    let (id, created) = program_2(&app, residual_rule()).await;
    assert_eq!(created["maxOccurrences"], 12, "{created:#}");
    assert_eq!(created["recurring"], true, "{created:#}");
    assert_eq!(created["invoiceNumber"], Value::Null, "{created:#}");

    for n in 1..=12 {
        let body = paid(&app, &format!("inv-{n}"), FRIEND, "internet", "100.00").await;
        assert_eq!(outcome(&body, &id), "REWARDED", "invoice {n}: {body:#}");
        assert_eq!(
            rewards_of(&body),
            [credit_reward(REFERRER, "5.00")],
            "invoice {n}: {body:#}"
        );
    }
    let thirteenth = paid(&app, "inv-13", FRIEND, "internet", "100.00").await;
    assert_eq!(outcome(&thirteenth, &id), "SKIPPED", "{thirteenth:#}");
    assert!(!reason(&thirteenth, &id).is_empty(), "{thirteenth:#}");
    assert_eq!(thirteenth["rewards"], json!([]), "{thirteenth:#}");

    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 60_000_000);
    app.assert_invariants().await;
}

/// Different rules per referrer group: a business referrer gets a fixed 50.00 for a friend's first
/// invoice, a residential one 10 % of it; neither gets the other's.
#[tokio::test]
async fn a_business_referrer_rule_pays_a_business_referrer_and_not_a_residential_one() {
    let app = spawn_app().await;
    let mut business = fixed_credit_rule("Business: 50.00 per friend", "INVOICE_PAID", "REFERRER", "50");
    business["invoiceNumber"] = json!(1);
    business["referrerGroups"] = json!(["business"]);
    let business = app.create_rule_id(business).await;
    let mut residential = rule_input(
        "Residential: 10 % of the first invoice",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    residential["value"] = json!("10");
    residential["invoiceNumber"] = json!(1);
    residential["referrerGroups"] = json!(["residential"]);
    let residential = app.create_rule_id(residential).await;

    for (referrer, group, friend) in [
        ("biz-ref", "business", "friend-of-biz"),
        ("home-ref", "residential", "friend-of-home"),
    ] {
        let registered = app
            .register_with(json!({ "externalId": referrer, "displayName": "Rita Referrer", "group": group }))
            .await;
        let code = s(&registered, "/account/referralCode").to_owned();
        app.register(friend, Some("Fred Friend"), Some(&code)).await;
    }

    let biz = paid(&app, "inv-biz-1", "friend-of-biz", "internet", "100.00").await;
    assert_eq!(outcome(&biz, &business), "REWARDED", "{biz:#}");
    assert_eq!(outcome(&biz, &residential), "SKIPPED", "{biz:#}");
    assert_eq!(rewards_of(&biz), [credit_reward("biz-ref", "50.00")], "{biz:#}");

    let home = paid(&app, "inv-home-1", "friend-of-home", "internet", "100.00").await;
    assert_eq!(outcome(&home, &residential), "REWARDED", "{home:#}");
    assert_eq!(outcome(&home, &business), "SKIPPED", "{home:#}");
    assert_eq!(
        reason(&home, &business),
        "the referrer's account group residential does not count (counted: business)",
        "{home:#}"
    );
    assert_eq!(rewards_of(&home), [credit_reward("home-ref", "10.00")], "{home:#}");

    assert_eq!(app.ledger_sum("biz-ref", "CREDIT").await, 50_000_000);
    assert_eq!(app.ledger_sum("home-ref", "CREDIT").await, 10_000_000);
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Refunds of invoices

/// A refund of half an invoice on day 10, inside the 30-day hold, takes back half of what the
/// invoice earned while still pending: of a percentage rule's 20.00 and a threshold rule's 25.00,
/// 22.50 is left, and that is what becomes available on day 30.
#[tokio::test]
async fn a_refund_of_half_an_invoice_inside_the_hold_halves_the_pending_rewards_it_earned() {
    let app = spawn_app().await;
    let (percent, threshold) = held_refund_rules(&app).await;
    referral(&app, &[FRIEND]).await;
    let bought = paid(&app, "inv-1", FRIEND, "internet", "200.00").await;
    assert_eq!(outcome(&bought, &percent), "REWARDED", "{bought:#}");
    assert_eq!(outcome(&bought, &threshold), "REWARDED", "{bought:#}");
    assert_eq!(
        rewards_of(&bought),
        [held(REFERRER, "20.00"), held(REFERRER, "25.00")],
        "{bought:#}"
    );

    crate::time::advance(&app, 10);
    let half = refund(&app, "ref-1", FRIEND, "inv-1", Some("100.00")).await;
    assert_eq!(half["event"]["kind"], "REFUND", "{half:#}");
    assert_eq!(half["decisions"], json!([]), "{half:#}");
    assert_eq!(
        rewards_of(&half),
        [
            credit_entry(REFERRER, "REVERSAL", "-10.00", "PENDING"),
            credit_entry(REFERRER, "REVERSAL", "-12.50", "PENDING"),
        ],
        "{half:#}"
    );
    assert_eq!(app.credit(REFERRER).await, figures("0.00", "22.50", "0.00"));
    app.assert_invariants().await;

    crate::time::advance(&app, 20);
    assert_eq!(app.credit(REFERRER).await, figures("22.50", "0.00", "22.50"));
    app.assert_invariants().await;
}

/// A whole refund on day 40, after the hold, reverses the posted rewards the invoice earned, of
/// a percentage rule (20.00) and of a threshold rule (25.00), each with a negative REVERSAL entry;
/// another invoice's reward is untouched.
#[tokio::test]
async fn a_whole_refund_after_the_hold_reverses_the_posted_percentage_and_threshold_rewards() {
    let app = spawn_app().await;
    let (percent, threshold) = held_refund_rules(&app).await;
    referral(&app, &[FRIEND]).await;
    paid(&app, "inv-1", FRIEND, "internet", "200.00").await;
    let other = paid(&app, "inv-2", FRIEND, "internet", "50.00").await;
    assert_eq!(outcome(&other, &percent), "REWARDED", "{other:#}");
    assert_eq!(outcome(&other, &threshold), "SKIPPED", "{other:#}");
    assert_eq!(rewards_of(&other), [held(REFERRER, "5.00")], "{other:#}");

    crate::time::advance(&app, 40);
    assert_eq!(app.credit(REFERRER).await, figures("50.00", "0.00", "50.00"));
    let whole = refund(&app, "ref-1", FRIEND, "inv-1", None).await;
    assert_eq!(whole["event"]["kind"], "REFUND", "{whole:#}");
    assert_eq!(
        rewards_of(&whole),
        [
            credit_entry(REFERRER, "REVERSAL", "-20.00", "POSTED"),
            credit_entry(REFERRER, "REVERSAL", "-25.00", "POSTED"),
        ],
        "{whole:#}"
    );
    assert_eq!(app.credit(REFERRER).await, figures("5.00", "0.00", "5.00"));
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 5_000_000);

    // Refunded in full: nothing is left to refund.
    let again = refund_raw(&app, "ref-2", FRIEND, "inv-1", None).await;
    assert_failed(&again, "BAD_USER_INPUT");
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// The engine: idempotency, validation, concurrency, simulation

/// The same eventId with the same input is the invoice's replay (duplicate, the same event and
/// rewards, nothing more paid); with other lines or another split of the payment it is an
/// IDEMPOTENCY_CONFLICT, and nothing is written.
#[tokio::test]
async fn an_invoice_sent_again_is_its_replay_and_with_other_input_a_conflict() {
    let app = spawn_app().await;
    let mut rule = rule_input("10 % of each invoice", "INVOICE_PAID", "REFERRER", "CREDIT", "PERCENT");
    rule["value"] = json!("10");
    rule["recurring"] = json!(true);
    program_2(&app, rule).await;
    let lines = [("internet", "60.00"), ("tv", "40.00")];

    // 10 % of the 80.00 paid in cash.
    let first = invoice(&app, "inv-1", FRIEND, &lines, Some("80.00"), Some("20.00")).await;
    assert_eq!(first["event"]["duplicate"], false, "{first:#}");
    assert_eq!(rewards_of(&first), [credit_reward(REFERRER, "8.00")], "{first:#}");
    let before = app.snapshot().await;

    let again = invoice(&app, "inv-1", FRIEND, &lines, Some("80.00"), Some("20.00")).await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(again["event"]["id"], first["event"]["id"], "{again:#}");
    assert_eq!(again["rewards"], first["rewards"], "{again:#}");
    assert_eq!(app.snapshot().await, before, "a replay writes nothing");

    for (what, vars) in [
        (
            "another amount",
            invoice_vars(
                "inv-1",
                FRIEND,
                &[("internet", "60.00"), ("tv", "45.00")],
                Some("85.00"),
                Some("20.00"),
            ),
        ),
        (
            "another category",
            invoice_vars(
                "inv-1",
                FRIEND,
                &[("internet", "60.00"), ("phone", "40.00")],
                Some("80.00"),
                Some("20.00"),
            ),
        ),
        ("one line less", invoice_vars("inv-1", FRIEND, &lines[..1], None, None)),
        (
            "another split of the payment",
            invoice_vars("inv-1", FRIEND, &lines, Some("70.00"), Some("30.00")),
        ),
    ] {
        let body = app
            .run(Some(&app.service()), "integration", "RecordInvoicePaid", vars)
            .await;
        assert_failed(&body, "IDEMPOTENCY_CONFLICT");
        assert_eq!(app.snapshot().await, before, "a conflict with {what} writes nothing");
    }
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 8_000_000);
    app.assert_invariants().await;
}

/// Bad invoices are refused with BAD_USER_INPUT and nothing written: no lines, 101 lines, a
/// negative line, a negative payment, payments that do not add up to the lines' total, more
/// credit than the total. Their valid neighbours are recorded.
#[tokio::test]
async fn an_invalid_invoice_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    referral(&app, &[FRIEND]).await;
    let total = [("internet", "40.00")];
    let too_many = [("internet", "1.00"); 101];
    let before = app.snapshot().await;
    let events = app.count("events").await;

    for (what, vars) in [
        ("without lines", invoice_vars("inv-x", FRIEND, &[], None, None)),
        ("with 101 lines", invoice_vars("inv-x", FRIEND, &too_many, None, None)),
        (
            "with a negative line",
            invoice_vars(
                "inv-x",
                FRIEND,
                &[("internet", "50.00"), ("discount", "-10.00")],
                None,
                None,
            ),
        ),
        (
            "paid with negative cash",
            invoice_vars("inv-x", FRIEND, &total, Some("-1.00"), Some("41.00")),
        ),
        (
            "paid with negative credit",
            invoice_vars("inv-x", FRIEND, &total, Some("41.00"), Some("-1.00")),
        ),
        (
            "paid less than its total",
            invoice_vars("inv-x", FRIEND, &total, Some("30.00"), Some("5.00")),
        ),
        (
            "paid more than its total",
            invoice_vars("inv-x", FRIEND, &total, Some("40.00"), Some("5.00")),
        ),
        (
            "paid with more credit than its total",
            invoice_vars("inv-x", FRIEND, &total, None, Some("40.01")),
        ),
    ] {
        let body = app
            .run(Some(&app.service()), "integration", "RecordInvoicePaid", vars)
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(app.count("events").await, events, "an invoice {what} records no event");
        assert_eq!(app.snapshot().await, before, "an invoice {what} writes nothing");
    }

    // The valid neighbours: 100 lines, a line of 0, all paid with credit, the split given.
    let hundred = [("internet", "1.00"); 100];
    invoice(&app, "inv-1", FRIEND, &hundred, None, None).await;
    invoice(
        &app,
        "inv-2",
        FRIEND,
        &[("internet", "40.00"), ("promo", "0")],
        None,
        None,
    )
    .await;
    invoice(&app, "inv-3", FRIEND, &total, None, Some("40.00")).await;
    invoice(&app, "inv-4", FRIEND, &total, Some("30.00"), Some("10.00")).await;
    assert_eq!(app.count("events").await, events + 4);
    app.assert_invariants().await;
}

/// Invalid invoice and spend rules are refused with BAD_USER_INPUT naming the field: PERCENT
/// without a value, of 0 or of more than 1000; maxOccurrences without recurring or on another
/// trigger; invoiceNumber on another trigger or out of 1..1000; capPerReferral of 0; the options
/// still not built. Their valid neighbours are created and answered as set.
#[tokio::test]
async fn invalid_invoice_and_spend_rules_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut percent = rule_input("10 % of each invoice", "INVOICE_PAID", "REFERRER", "CREDIT", "PERCENT");
    percent["value"] = json!("10");
    percent["recurring"] = json!(true);
    let mut top_up = fixed_credit_rule("Top-ups", "TOP_UP_TOTAL_REACHED", "REFERRER", "10");
    top_up["threshold"] = json!("10");
    let cases = [
        (with(&percent, json!({ "value": null })), "value"),
        (with(&percent, json!({ "value": "0" })), "value"),
        (with(&percent, json!({ "value": "-10" })), "value"),
        (with(&percent, json!({ "value": "1001" })), "value"),
        (
            with(&percent, json!({ "recurring": false, "maxOccurrences": 12 })),
            "maxOccurrences",
        ),
        (with(&percent, json!({ "maxOccurrences": 1001 })), "maxOccurrences"),
        (with(&percent_rule(), json!({ "maxOccurrences": 12 })), "maxOccurrences"),
        (with(&top_up, json!({ "invoiceNumber": 1 })), "invoiceNumber"),
        (with(&threshold_rule(), json!({ "invoiceNumber": 1 })), "invoiceNumber"),
        (with(&percent, json!({ "invoiceNumber": 1001 })), "invoiceNumber"),
        (with(&percent, json!({ "capPerReferral": "0" })), "capPerReferral"),
        (with(&percent, json!({ "capPerReferral": "-5" })), "capPerReferral"),
        (
            with(
                &percent,
                json!({ "unit": "POINTS", "redeemableCategories": ["compute"] }),
            ),
            "redeemableCategories",
        ),
        (with(&percent, json!({ "minActiveReferrals": 2 })), "minActiveReferrals"),
    ];
    let rules_before = app.rules().await;
    let snapshot_before = app.snapshot().await;
    for (input, field) in &cases {
        let body = app.create_rule_raw(input.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "the refusal names {field}: {body:#}");
    }
    assert_eq!(app.rules().await, rules_before);
    assert_eq!(app.snapshot().await, snapshot_before, "nothing written");

    // The valid neighbours, answered as set.
    let neighbours = [
        with(&percent, json!({ "value": "1000" })),
        with(&percent, json!({ "recurring": false, "invoiceNumber": 1000 })),
        with(&percent, json!({ "invoiceNumber": 3, "maxOccurrences": 1000 })),
        with(&percent, json!({ "capPerReferral": "0.01" })),
        threshold_rule(),
        percent_rule(),
    ];
    for (n, input) in neighbours.iter().enumerate() {
        let created = app
            .create_rule(with(input, json!({ "name": format!("neighbour {n}") })))
            .await;
        for field in ["invoiceNumber", "maxOccurrences", "recurring", "trigger", "calculation"] {
            if let Some(set) = input.get(field) {
                assert_eq!(&created[field], set, "{field} of {input}: {created:#}");
            }
        }
    }
    assert_eq!(app.rules().await.len(), rules_before.len() + neighbours.len());

    // 0 is what a form with the field left empty sends: not set.
    let emptied = app
        .create_rule(with(
            &percent,
            json!({ "name": "emptied", "invoiceNumber": 0, "maxOccurrences": 0 }),
        ))
        .await;
    assert_eq!(
        (&emptied["invoiceNumber"], &emptied["maxOccurrences"]),
        (&Value::Null, &Value::Null),
        "{emptied:#}"
    );
}

/// 20 invoices of one friend sent at once, against 5 % of each invoice for 12 invoices: every
/// invoice is recorded, exactly 12 pay 5.00 and 8 are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_invoices_pay_a_recurring_rule_exactly_its_twelve_occurrences() {
    let app = spawn_app().await;
    let (id, _) = program_2(&app, residual_rule()).await;
    let events = app.count("events").await;

    let answers = concurrent_invoices(&app, 20, "100.00").await;
    let rewarded = answers.iter().filter(|a| outcome(a, &id) == "REWARDED").count();
    let skipped = answers.iter().filter(|a| outcome(a, &id) == "SKIPPED").count();
    assert_eq!((rewarded, skipped), (12, 8), "{answers:#?}");
    for answer in answers.iter().filter(|a| outcome(a, &id) == "REWARDED") {
        assert_eq!(rewards_of(answer), [credit_reward(REFERRER, "5.00")], "{answer:#}");
    }
    assert_eq!(app.count("events").await, events + 20);
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 60_000_000);
    app.assert_invariants().await;
}

/// 20 invoices of 100.00 of one friend sent at once, against 10 % of each invoice capped at 55.00
/// per friend: exactly 55.00 is paid in all (five payments of 10.00 and one cut to 5.00), and the
/// other invoices are skipped for the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_invoices_never_pay_beyond_the_cap_per_friend() {
    let app = spawn_app().await;
    let mut capped = rule_input(
        "10 % of each invoice, 55.00 per friend",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    capped["value"] = json!("10");
    capped["recurring"] = json!(true);
    capped["capPerReferral"] = json!("55");
    let (id, _) = program_2(&app, capped).await;

    let answers = concurrent_invoices(&app, 20, "100.00").await;
    let mut amounts: Vec<i64> = answers
        .iter()
        .flat_map(|a| a["rewards"].as_array().expect("rewards").clone())
        .map(|r| micros(s(&r, "/amount")))
        .collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        [5_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000],
        "{answers:#?}"
    );
    for answer in answers.iter().filter(|a| outcome(a, &id) == "SKIPPED") {
        assert!(reason(answer, &id).contains("cap"), "{answer:#}");
    }
    assert_eq!(answers.iter().filter(|a| outcome(a, &id) == "SKIPPED").count(), 14);
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 55_000_000);
    assert_eq!(app.credit(REFERRER).await, figures("55.00", "0.00", "55.00"));
    app.assert_invariants().await;
}

/// The simulator answers what a paid invoice would do now (after a real 20.00 invoice, B's
/// 48.00 for 480.00), writes nothing, and the real invoice then does just that.
#[tokio::test]
async fn the_simulator_answers_what_an_invoice_would_pay_and_writes_nothing() {
    let app = spawn_app().await;
    let (a, b) = program_4(&app, &[FRIEND]).await;
    paid(&app, "inv-1", FRIEND, "compute", "20.00").await;
    let next = invoice_vars("inv-2", FRIEND, &[("compute", "480.00")], None, None);
    let before = app.snapshot().await;
    let events = app.count("events").await;

    let body = app
        .run(
            Some(&app.admin()),
            "admin",
            "SimulateEvent",
            json!({ "event": { "invoicePaid": next["input"] }, "rules": null }),
        )
        .await;
    let simulated = data_of(&body, "SimulateEvent of an invoice")["simulateEvent"].clone();
    assert_eq!(simulated["kind"], "INVOICE_PAID", "{simulated:#}");
    assert_eq!(simulated["duplicate"], false, "{simulated:#}");
    assert_eq!(outcome(&simulated, &b), "REWARDED", "{simulated:#}");
    assert_eq!(outcome(&simulated, &a), "SKIPPED", "{simulated:#}");
    assert_eq!(rewards_of(&simulated), [held(REFERRER, "48.00")], "{simulated:#}");
    assert_eq!(app.count("events").await, events, "a simulation records no event");
    assert_eq!(app.snapshot().await, before, "a simulation writes nothing");

    let body = app
        .run(Some(&app.service()), "integration", "RecordInvoicePaid", next)
        .await;
    let real = data_of(&body, "RecordInvoicePaid inv-2")["recordInvoicePaid"].clone();
    assert_eq!(rewards_of(&real), rewards_of(&simulated), "{real:#}");
    for rule in [&a, &b] {
        assert_eq!(outcome(&real, rule), outcome(&simulated, rule), "{real:#}");
        assert_eq!(reason(&real, rule), reason(&simulated, rule), "{real:#}");
    }
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Rules and set-ups

/// Program 4's rule A: 20.00 credit for the referrer once the friend's cash spend on compute
/// reaches 20.00 within 90 days of its sign-up; held 30 days, expiring 180 days after.
fn threshold_rule() -> Value {
    let mut rule = fixed_credit_rule(
        "A: 20.00 once a friend's compute spend reaches 20.00",
        "SPEND_TOTAL_REACHED",
        "REFERRER",
        "20",
    );
    rule["threshold"] = json!("20");
    rule["productCategories"] = json!(["compute"]);
    rule["holdDays"] = json!(30);
    rule["expiresAfterDays"] = json!(180);
    rule["windowDays"] = json!(90);
    rule
}

/// Program 4's rule B: 10 % of the friend's compute spend above 20.00, on each invoice, within 90
/// days of its sign-up, at most 300.00 per friend (A's 20.00 included); held and expiring as A.
fn percent_rule() -> Value {
    let mut rule = rule_input(
        "B: 10 % of a friend's compute spend above 20.00",
        "SPEND_TOTAL_REACHED",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    rule["value"] = json!("10");
    rule["threshold"] = json!("20");
    rule["recurring"] = json!(true);
    rule["productCategories"] = json!(["compute"]);
    rule["windowDays"] = json!(90);
    rule["capPerReferral"] = json!("300");
    rule["holdDays"] = json!(30);
    rule["expiresAfterDays"] = json!(180);
    rule
}

/// Program 2's residual: 5 % of each of the friend's invoices, for 12 invoices.
fn residual_rule() -> Value {
    let mut rule = rule_input(
        "5 % of each invoice for a year",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    rule["value"] = json!("5");
    rule["recurring"] = json!(true);
    rule["maxOccurrences"] = json!(12);
    rule
}

/// The referrer and friends who signed up with its code.
async fn referral(app: &TestApp, friends: &[&str]) {
    let code = app.register_code(REFERRER, Some("Alice Adams"), None).await;
    for friend in friends {
        app.register(friend, Some("Bob Brown"), Some(&code)).await;
    }
}

/// Program 4's rules A and B, and the referrer's friends. Returns the ids of A and B.
async fn program_4(app: &TestApp, friends: &[&str]) -> (String, String) {
    let a = app.create_rule_id(threshold_rule()).await;
    let b = app.create_rule_id(percent_rule()).await;
    referral(app, friends).await;
    (a, b)
}

/// One program 2 rule and the referrer's friend `acct-b`. Returns the rule's id and the rule as
/// created.
async fn program_2(app: &TestApp, rule: Value) -> (String, Value) {
    let created = app.create_rule(rule).await;
    referral(app, &[FRIEND]).await;
    (s(&created, "/id").to_owned(), created)
}

/// For the refund tests, both held 30 days: 10 % of each invoice, and 25.00 once the friend's
/// spend reaches 100.00. Returns their ids (percentage, threshold).
async fn held_refund_rules(app: &TestApp) -> (String, String) {
    let mut percent = rule_input(
        "10 % of each invoice, held",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    percent["value"] = json!("10");
    percent["recurring"] = json!(true);
    percent["holdDays"] = json!(30);
    let mut threshold = fixed_credit_rule(
        "25.00 once a friend spent 100.00, held",
        "SPEND_TOTAL_REACHED",
        "REFERRER",
        "25",
    );
    threshold["threshold"] = json!("100");
    threshold["holdDays"] = json!(30);
    (app.create_rule_id(percent).await, app.create_rule_id(threshold).await)
}

/// A rule as RewardRules lists it.
async fn rule_by_id(app: &TestApp, id: &str) -> Value {
    let rules = app.rules().await;
    rules
        .iter()
        .find(|rule| rule["id"] == id)
        .unwrap_or_else(|| panic!("rule {id} listed: {rules:#?}"))
        .clone()
}

// ---------------------------------------------------------------------------------------------
// Invoices and refunds

/// `count` invoices of one line of `amount` by the friend, sent at once: each must be recorded.
/// Their `recordInvoicePaid` answers.
async fn concurrent_invoices(app: &TestApp, count: usize, amount: &str) -> Vec<Value> {
    let query = app.op("integration", "RecordInvoicePaid");
    let vars = (0..count)
        .map(|i| invoice_vars(&format!("inv-race-{i}"), FRIEND, &[("internet", amount)], None, None))
        .collect();
    let bodies = send_concurrently(app, &app.service(), &query, vars).await;
    bodies
        .iter()
        .map(|body| {
            let answer = data_of(body, "a concurrent invoice")["recordInvoicePaid"].clone();
            assert_eq!(answer["event"]["duplicate"], false, "{body:#}");
            answer
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading answers

/// An entry as `rewards_of` lists it: (owner, kind, unit, amount, status).
type Entry = (String, String, String, String, String);

/// A CREDIT entry as `rewards_of` lists it.
fn credit_entry(owner: &str, kind: &str, amount: &str, status: &str) -> Entry {
    (
        owner.to_owned(),
        kind.to_owned(),
        "CREDIT".to_owned(),
        amount.to_owned(),
        status.to_owned(),
    )
}

/// A CREDIT reward on hold.
fn held(owner: &str, amount: &str) -> Entry {
    credit_entry(owner, "REWARD", amount, "PENDING")
}

/// A balance as `TestApp::credit` answers it: (available, pending, lifetimeEarned).
fn figures(available: &str, pending: &str, lifetime: &str) -> (String, String, String) {
    (available.to_owned(), pending.to_owned(), lifetime.to_owned())
}

/// PURCHASE pays on every purchase, not only the first: 10 % of what each cost, and a purchase
/// sent without its amount is skipped with the reason.
#[tokio::test]
async fn a_purchase_rule_pays_a_percentage_of_every_purchase() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let mut rule = rule_input("10 % of every purchase", "PURCHASE", "REFERRER", "CREDIT", "PERCENT");
    rule["value"] = json!("10");
    rule["recurring"] = json!(true);
    let (id, _) = program_2(&app, rule).await;
    for (n, amount) in [(1, Some("50.00")), (2, Some("30.00")), (3, None)] {
        let mut input = TestApp::purchase_input(&format!("buy-{n}"), FRIEND, RESIDENTIAL, "5");
        if let Some(amount) = amount {
            input["input"]["amount"] = json!(amount);
        }
        let body = app
            .run(Some(&app.service()), "integration", "RecordPurchase", input)
            .await;
        let answer = &data_of(&body, "RecordPurchase")["recordPurchase"];
        match amount {
            Some(_) => assert_eq!(outcome(answer, &id), "REWARDED", "{answer:#}"),
            None => assert!(reason(answer, &id).contains("without its amount"), "{answer:#}"),
        }
    }
    assert_eq!(app.ledger_sum(REFERRER, "CREDIT").await, 8_000_000);
    app.assert_invariants().await;
}
