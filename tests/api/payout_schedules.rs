//! Payout schedules for cash commission: the program's (`payoutSchedule`: AS_EARNED, MONTHLY,
//! YEARLY) and one affiliate's own (`setPayoutSchedule`, null: the program's again). Under
//! MONTHLY, commission whose hold ends in a month becomes withdrawable at 00:00 UTC on the 1st
//! of the next one; under YEARLY on January 1st of the next year. The schedule is applied when
//! the commission is given: changing it later moves nothing already given. Only CASH waits;
//! CREDIT and POINTS keep their hold.
//!
//! Each test first moves the clock to the 10th of a month (never December) at noon UTC, so that
//! a hold of a few days ends mid-month and the month's end is never the year's. The dates the
//! tests expect are computed here, with chrono, from the clock.

use crate::helpers::*;
use crate::time::{advance, settle};
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use referral_server::service::ledger::Settled;
use serde_json::{Value, json};

/// The customer's own affiliate record: its schedule and its commission.
const ME_AFFILIATE: &str = "query { me { affiliate { status payoutSchedule \
    commission { pending available inWithdrawal withdrawn neededToWithdraw canWithdraw } } } }";

/// An account's affiliate record as staff read it.
const STAFF_AFFILIATE: &str =
    "query($id: ID!) { account(id: $id) { affiliate { status payoutSchedule ownPayoutSchedule } } }";

/// updateProgramSettings with the schedule in the answer (the contract's document leaves it
/// out).
const UPDATE_SCHEDULE: &str =
    "mutation($input: ProgramSettingsInput!) { updateProgramSettings(input: $input) { payoutSchedule } }";

const READ_SCHEDULE: &str = "query { programSettings { payoutSchedule } }";

// ---------------------------------------------------------------------------------------------
// Dates, computed here

/// 00:00 UTC on the 1st of the month `at` is in.
fn first_of_month(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .expect("the first of a month")
}

/// 00:00 UTC on the 1st of the month after the one `at` is in.
fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = match at.month() {
        12 => (at.year() + 1, 1),
        month => (at.year(), month + 1),
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .expect("the first of a month")
}

/// 00:00 UTC on January 1st of the year after the one `at` is in.
fn next_year(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year() + 1, 1, 1, 0, 0, 0)
        .single()
        .expect("a new year")
}

/// When commission held until `held_until` is withdrawable under MONTHLY: the first 1st of a
/// month at or after it.
fn monthly_release(held_until: DateTime<Utc>) -> DateTime<Utc> {
    if held_until == first_of_month(held_until) {
        held_until
    } else {
        next_month(held_until)
    }
}

/// When commission held until `held_until` is withdrawable under YEARLY: the first January 1st
/// at or after it.
fn yearly_release(held_until: DateTime<Utc>) -> DateTime<Utc> {
    let new_year = Utc
        .with_ymd_and_hms(held_until.year(), 1, 1, 0, 0, 0)
        .single()
        .expect("a new year");
    if held_until == new_year {
        held_until
    } else {
        next_year(held_until)
    }
}

/// A date as a decision's reason writes it.
fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Moves the clock forward to the next 10th of a month, January to November, at 12:00 UTC;
/// the new now.
fn to_mid_month(app: &TestApp) -> DateTime<Utc> {
    let now = app.state.clock.now();
    let mut month = first_of_month(now);
    let target = loop {
        let candidate = month + Duration::days(9) + Duration::hours(12);
        if candidate > now + Duration::hours(1) && month.month() != 12 {
            break candidate;
        }
        month = next_month(month);
    };
    app.state
        .clock
        .advance(target - app.state.clock.now())
        .expect("the clock moves forward");
    let now = app.state.clock.now();
    assert!(now.day() == 10 && now.month() != 12, "the clock is at {now}");
    now
}

/// Moves the clock forward by whole days to the last day before `boundary`: less than a day is
/// left.
fn to_the_eve_of(app: &TestApp, boundary: DateTime<Utc>) {
    let days = (boundary - app.state.clock.now()).num_days();
    advance(app, days);
    let left = boundary - app.state.clock.now();
    assert!(
        left > Duration::zero() && left < Duration::days(1),
        "{left} left before {boundary}"
    );
}

/// One more day: past `boundary`.
fn past(app: &TestApp, boundary: DateTime<Utc>) {
    advance(app, 1);
    let now = app.state.clock.now();
    assert!(now > boundary, "the clock ({now}) is past {boundary}");
}

// ---------------------------------------------------------------------------------------------
// The program, its affiliates and their commission

/// Sets the program's payout schedule; the answer must show it, and so must a read.
async fn set_program_schedule(app: &TestApp, schedule: &str) {
    let body = app
        .gql(
            Some(&app.admin()),
            UPDATE_SCHEDULE,
            json!({ "input": { "payoutSchedule": schedule } }),
        )
        .await;
    let data = data_of(&body, &format!("updateProgramSettings payoutSchedule {schedule}"));
    assert_eq!(data["updateProgramSettings"]["payoutSchedule"], schedule, "{data:#}");
    assert_eq!(program_schedule(app).await, schedule);
}

/// The program's payout schedule as an admin reads it.
async fn program_schedule(app: &TestApp) -> String {
    let body = app.gql(Some(&app.admin()), READ_SCHEDULE, json!({})).await;
    s(
        &data_of(&body, "programSettings.payoutSchedule"),
        "/programSettings/payoutSchedule",
    )
    .to_owned()
}

/// The usual start: the clock on the 10th at noon, withdrawals from 10.00, the program's
/// schedule (None: left at its default) and a rule paying approved affiliates 20 % of each
/// invoice their friends pay, in CASH, held `hold_days`. The rule's id.
async fn program(app: &TestApp, schedule: Option<&str>, hold_days: i64) -> String {
    to_mid_month(app);
    let settings = app.update_settings(json!({ "minimumWithdrawal": "10" })).await;
    assert_eq!(micros(s(&settings, "/minimumWithdrawal")), 10_000_000, "{settings:#}");
    if let Some(schedule) = schedule {
        set_program_schedule(app, schedule).await;
    }
    let mut rule = rule_input(
        "Affiliates: 20 % of each invoice in cash",
        "INVOICE_PAID",
        "REFERRER",
        "CASH",
        "PERCENT",
    );
    rule["value"] = json!("20");
    rule["recurring"] = json!(true);
    rule["affiliatesOnly"] = json!(true);
    if hold_days > 0 {
        rule["holdDays"] = json!(hold_days);
    }
    app.create_rule_id(rule).await
}

async fn approve(app: &TestApp, account_id: &str) {
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "DecideAffiliate",
            json!({ "input": { "accountId": account_id, "decision": "APPROVE" } }),
        )
        .await;
    assert_eq!(data["decideAffiliate"]["affiliate"]["status"], "APPROVED", "{data:#}");
}

/// Registers an approved affiliate and a friend it referred; the affiliate's account id.
async fn affiliate_with_friend(app: &TestApp, external_id: &str, friend: &str) -> String {
    let registered = app.register(external_id, Some("Alice Adams"), None).await;
    let id = s(&registered, "/account/id").to_owned();
    approve(app, &id).await;
    app.register(friend, Some("Bob Brown"), Some(s(&registered, "/account/referralCode")))
        .await;
    id
}

/// SetPayoutSchedule with a token; the whole response body.
async fn set_schedule_raw(app: &TestApp, token: Option<&str>, account_id: &str, schedule: Option<&str>) -> Value {
    app.run(
        token,
        "admin",
        "SetPayoutSchedule",
        json!({ "input": { "accountId": account_id, "schedule": schedule } }),
    )
    .await
}

/// SetPayoutSchedule as an admin, which must succeed; `setPayoutSchedule`.
async fn set_schedule(app: &TestApp, account_id: &str, schedule: Option<&str>) -> Value {
    let body = set_schedule_raw(app, Some(&app.admin()), account_id, schedule).await;
    data_of(&body, &format!("SetPayoutSchedule {account_id} {schedule:?}"))["setPayoutSchedule"].clone()
}

/// An approved affiliate's record as an answer or a read shows it.
fn record(schedule: &str, own: Option<&str>) -> Value {
    json!({ "status": "APPROVED", "payoutSchedule": schedule, "ownPayoutSchedule": own })
}

/// The account's affiliate record as staff read it.
async fn staff_affiliate(app: &TestApp, account_id: &str) -> Value {
    let body = app
        .gql(Some(&app.admin()), STAFF_AFFILIATE, json!({ "id": account_id }))
        .await;
    data_of(&body, "account.affiliate")["account"]["affiliate"].clone()
}

/// The customer's own affiliate record.
async fn me_affiliate(app: &TestApp, external_id: &str) -> Value {
    let body = app.gql(Some(&app.customer(external_id)), ME_AFFILIATE, json!({})).await;
    data_of(&body, &format!("me.affiliate of {external_id}"))["me"]["affiliate"].clone()
}

/// The customer's commission: [pending, available, inWithdrawal, withdrawn, neededToWithdraw,
/// canWithdraw].
async fn commission(app: &TestApp, external_id: &str) -> Value {
    let affiliate = me_affiliate(app, external_id).await;
    let c = &affiliate["commission"];
    assert!(c.is_object(), "{external_id} has no commission: {affiliate:#}");
    json!([
        c["pending"],
        c["available"],
        c["inWithdrawal"],
        c["withdrawn"],
        c["neededToWithdraw"],
        c["canWithdraw"],
    ])
}

/// RequestWithdrawal as the customer; the whole response body.
async fn request_withdrawal(app: &TestApp, external_id: &str, amount: &str) -> Value {
    app.run(
        Some(&app.customer(external_id)),
        "customer",
        "RequestWithdrawal",
        json!({ "input": { "amount": amount } }),
    )
    .await
}

/// A withdrawal that cannot be made yet: INSUFFICIENT_BALANCE, and nothing written.
async fn refused_withdrawal(app: &TestApp, external_id: &str, amount: &str) {
    let snapshot = app.snapshot().await;
    let body = request_withdrawal(app, external_id, amount).await;
    assert_failed(&body, "INSUFFICIENT_BALANCE");
    assert_eq!(app.snapshot().await, snapshot, "a refused withdrawal writes nothing");
    assert_eq!(app.count("withdrawals").await, 0);
}

/// The customer's CASH entries in its history, newest first.
async fn cash_entries(app: &TestApp, external_id: &str) -> Vec<Value> {
    app.history(external_id)
        .await
        .into_iter()
        .filter(|entry| entry["unit"] == "CASH")
        .collect()
}

/// The customer's only CASH entry: (kind, amount, status) and when it is available.
async fn only_cash_entry(app: &TestApp, external_id: &str) -> ((String, String, String), DateTime<Utc>) {
    let entries = cash_entries(app, external_id).await;
    assert_eq!(entries.len(), 1, "one CASH entry for {external_id}: {entries:#?}");
    let entry = &entries[0];
    (
        (
            s(entry, "/kind").to_owned(),
            s(entry, "/amount").to_owned(),
            s(entry, "/status").to_owned(),
        ),
        instant(&entry["availableAt"]),
    )
}

fn cash_reward(external_id: &str, amount: &str, status: &str) -> (String, String, String, String, String) {
    (
        external_id.to_owned(),
        "REWARD".to_owned(),
        "CASH".to_owned(),
        amount.to_owned(),
        status.to_owned(),
    )
}

fn entry(kind: &str, amount: &str, status: &str) -> (String, String, String) {
    (kind.to_owned(), amount.to_owned(), status.to_owned())
}

/// The one reward of a unit in an event's answer.
fn reward_in<'a>(payload: &'a Value, unit: &str) -> &'a Value {
    let rewards: Vec<&Value> = payload["rewards"]
        .as_array()
        .unwrap_or_else(|| panic!("no rewards in {payload:#}"))
        .iter()
        .filter(|reward| reward["unit"] == unit)
        .collect();
    assert_eq!(rewards.len(), 1, "one {unit} reward: {payload:#}");
    rewards[0]
}

/// The reward is available exactly `days` after the event, which happened between `before`
/// and `after`.
fn assert_held_exactly(reward: &Value, days: i64, before: DateTime<Utc>, after: DateTime<Utc>) {
    let available_at = instant(&reward["availableAt"]);
    let hold = Duration::days(days);
    assert!(
        before + hold <= available_at && available_at <= after + hold,
        "available {days} days after the event ({before} to {after}): {reward:#}"
    );
}

/// The SET_PAYOUT_SCHEDULE entries of the audit log, newest first.
async fn audited(app: &TestApp) -> Vec<Value> {
    nodes(&app.audit_log(100, None).await)
        .into_iter()
        .filter(|entry| entry["action"] == "SET_PAYOUT_SCHEDULE")
        .collect()
}

/// An audit entry's details (`before`, `after`) as JSON.
fn details(entry: &Value) -> Value {
    serde_json::from_str(s(entry, "/details")).expect("the details are JSON")
}

// ---------------------------------------------------------------------------------------------
// The tests

/// A MONTHLY program: 20 % of a friend's 100.00 invoice, held 3 days from the 10th, is pending
/// until 00:00 UTC on the 1st of the next month, whatever the hold says; the decision says
/// from when. The end of the hold releases nothing, nor does the eve of the 1st; past the 1st
/// the background pass posts it and it can be withdrawn.
#[tokio::test]
async fn monthly_commission_is_withdrawable_from_the_first_of_the_next_month() {
    let app = spawn_app().await;
    let rule = program(&app, Some("MONTHLY"), 3).await;
    let affiliate_id = affiliate_with_friend(&app, "acct-a", "acct-b").await;
    assert_eq!(staff_affiliate(&app, &affiliate_id).await, record("MONTHLY", None));
    assert_eq!(me_affiliate(&app, "acct-a").await["payoutSchedule"], "MONTHLY");

    let before = app.state.clock.now();
    let invoice = paid(&app, "inv-b-1", "acct-b", "internet", "100.00").await;
    let after = app.state.clock.now();
    // Held until the 13th: withdrawable on the 1st of the next month.
    let release = monthly_release(before + Duration::days(3));
    assert_eq!(release, monthly_release(after + Duration::days(3)));
    assert_eq!(release, next_month(before), "the hold ends mid-month");

    assert_eq!(outcome(&invoice, &rule), "REWARDED", "{invoice:#}");
    assert_eq!(
        rewards_of(&invoice),
        [cash_reward("acct-a", "20.00", "PENDING")],
        "{invoice:#}"
    );
    assert_eq!(
        instant(&reward_in(&invoice, "CASH")["availableAt"]),
        release,
        "{invoice:#}"
    );
    let why = reason(&invoice, &rule);
    let held_until = day(before + Duration::days(3));
    assert!(why.contains(&format!(", on hold until {held_until}")), "{why}");
    assert!(
        why.ends_with(&format!(", withdrawable from {} (monthly payouts)", day(release))),
        "{why}"
    );
    assert_eq!(
        only_cash_entry(&app, "acct-a").await,
        (entry("REWARD", "20.00", "PENDING"), release)
    );
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["20.00", "0.00", "0.00", "0.00", "10.00", false])
    );
    refused_withdrawal(&app, "acct-a", "20").await;

    // The hold is over (the 14th): still pending.
    advance(&app, 4);
    assert_eq!(settle(&app).await, Settled::default());
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["20.00", "0.00", "0.00", "0.00", "10.00", false]),
        "the hold ended, the month did not"
    );
    refused_withdrawal(&app, "acct-a", "20").await;

    // The last day of the month: still pending.
    to_the_eve_of(&app, release);
    assert_eq!(settle(&app).await, Settled::default());
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["20.00", "0.00", "0.00", "0.00", "10.00", false]),
        "the eve of the 1st"
    );
    refused_withdrawal(&app, "acct-a", "20").await;
    app.assert_invariants().await;

    // The 1st has come: available, and withdrawn.
    past(&app, release);
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 0 });
    assert_eq!(settle(&app).await, Settled::default(), "nothing is due twice");
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["0.00", "20.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(
        only_cash_entry(&app, "acct-a").await,
        (entry("REWARD", "20.00", "POSTED"), release)
    );
    let body = request_withdrawal(&app, "acct-a", "20").await;
    let withdrawal = data_of(&body, "RequestWithdrawal of 20")["requestWithdrawal"]["withdrawal"].clone();
    assert_eq!(withdrawal["amount"], "20.00", "{withdrawal:#}");
    assert_eq!(withdrawal["status"], "REQUESTED", "{withdrawal:#}");
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["0.00", "0.00", "20.00", "0.00", "10.00", false])
    );
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 0);
    app.assert_invariants().await;
}

/// In a MONTHLY program one affiliate is set to YEARLY (answered, audited once however often
/// it is set): of two commissions earned the same day, the other affiliate's is withdrawable
/// on the 1st of the next month and the YEARLY one's on January 1st. Its own schedule taken
/// away, it follows the program's again; the program's changed, everyone without their own
/// follows it, and commission already given keeps its date.
#[tokio::test]
async fn an_affiliate_on_yearly_payouts_waits_for_new_year_while_the_others_follow_the_monthly_program() {
    let app = spawn_app().await;
    let rule = program(&app, Some("MONTHLY"), 0).await;
    let yearly = affiliate_with_friend(&app, "acct-y", "acct-yf").await;
    let monthly = affiliate_with_friend(&app, "acct-m", "acct-mf").await;
    assert!(audited(&app).await.is_empty());

    let set = set_schedule(&app, &yearly, Some("YEARLY")).await;
    assert_eq!(
        set,
        json!({ "id": yearly, "affiliate": record("YEARLY", Some("YEARLY")) }),
        "{set:#}"
    );
    let entries = audited(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["actor"], "admin:admin-1", "{entries:#?}");
    assert_eq!(entries[0]["target"], "account:acct-y", "{entries:#?}");
    let change = details(&entries[0]);
    assert_eq!(change["before"]["payoutSchedule"], Value::Null, "{change:#}");
    assert_eq!(change["after"]["payoutSchedule"], "YEARLY", "{change:#}");
    // The same again: the same answer, nothing written, nothing audited.
    let snapshot = app.snapshot().await;
    assert_eq!(set_schedule(&app, &yearly, Some("YEARLY")).await, set);
    assert_eq!(app.snapshot().await, snapshot);
    assert_eq!(audited(&app).await.len(), 1, "the same schedule again is not audited");

    assert_eq!(staff_affiliate(&app, &yearly).await, record("YEARLY", Some("YEARLY")));
    assert_eq!(staff_affiliate(&app, &monthly).await, record("MONTHLY", None));
    assert_eq!(me_affiliate(&app, "acct-y").await["payoutSchedule"], "YEARLY");
    assert_eq!(me_affiliate(&app, "acct-m").await["payoutSchedule"], "MONTHLY");

    // Both earn the same day (no hold: it ends when they earn).
    let before = app.state.clock.now();
    let y_invoice = paid(&app, "inv-yf-1", "acct-yf", "internet", "100.00").await;
    let m_invoice = paid(&app, "inv-mf-1", "acct-mf", "internet", "100.00").await;
    let after = app.state.clock.now();
    let month_end = monthly_release(before);
    let year_end = yearly_release(before);
    assert_eq!((month_end, year_end), (monthly_release(after), yearly_release(after)));
    assert_eq!(month_end, next_month(before));
    assert_eq!(year_end, next_year(before));
    assert!(month_end < year_end, "never in December: {month_end} {year_end}");

    assert_eq!(
        rewards_of(&y_invoice),
        [cash_reward("acct-y", "20.00", "PENDING")],
        "{y_invoice:#}"
    );
    assert_eq!(
        instant(&reward_in(&y_invoice, "CASH")["availableAt"]),
        year_end,
        "{y_invoice:#}"
    );
    let why = reason(&y_invoice, &rule);
    assert!(
        why.ends_with(&format!(", withdrawable from {} (yearly payouts)", day(year_end))),
        "{why}"
    );
    assert_eq!(
        rewards_of(&m_invoice),
        [cash_reward("acct-m", "20.00", "PENDING")],
        "{m_invoice:#}"
    );
    assert_eq!(
        instant(&reward_in(&m_invoice, "CASH")["availableAt"]),
        month_end,
        "{m_invoice:#}"
    );
    let why = reason(&m_invoice, &rule);
    assert!(
        why.ends_with(&format!(", withdrawable from {} (monthly payouts)", day(month_end))),
        "{why}"
    );

    // Its own schedule taken away: the program's again; audited once.
    let back = set_schedule(&app, &yearly, None).await;
    assert_eq!(back["id"], yearly.as_str(), "{back:#}");
    assert_eq!(back["affiliate"], record("MONTHLY", None), "{back:#}");
    let entries = audited(&app).await;
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(entries[0]["target"], "account:acct-y", "{entries:#?}");
    let change = details(&entries[0]);
    assert_eq!(change["before"]["payoutSchedule"], "YEARLY", "{change:#}");
    assert_eq!(change["after"]["payoutSchedule"], Value::Null, "{change:#}");
    assert_eq!(set_schedule(&app, &yearly, None).await, back);
    assert_eq!(audited(&app).await.len(), 2, "null again is not audited");

    // The program pays as earned from now on: those without their own schedule follow it,
    // and what was given keeps its date.
    set_program_schedule(&app, "AS_EARNED").await;
    assert_eq!(staff_affiliate(&app, &yearly).await, record("AS_EARNED", None));
    assert_eq!(staff_affiliate(&app, &monthly).await, record("AS_EARNED", None));
    assert_eq!(
        only_cash_entry(&app, "acct-y").await,
        (entry("REWARD", "20.00", "PENDING"), year_end)
    );
    assert_eq!(
        only_cash_entry(&app, "acct-m").await,
        (entry("REWARD", "20.00", "PENDING"), month_end)
    );
    for external_id in ["acct-y", "acct-m"] {
        assert_eq!(
            commission(&app, external_id).await,
            json!(["20.00", "0.00", "0.00", "0.00", "10.00", false]),
            "{external_id}"
        );
    }

    // The end of the month: the monthly one's only.
    to_the_eve_of(&app, month_end);
    assert_eq!(settle(&app).await, Settled::default());
    assert_eq!(commission(&app, "acct-m").await[0], "20.00", "the eve of the 1st");
    past(&app, month_end);
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 0 });
    assert_eq!(
        commission(&app, "acct-m").await,
        json!(["0.00", "20.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(
        commission(&app, "acct-y").await,
        json!(["20.00", "0.00", "0.00", "0.00", "10.00", false]),
        "the yearly commission waits for the new year"
    );
    refused_withdrawal(&app, "acct-y", "20").await;
    app.assert_invariants().await;

    // The end of the year: the yearly one's.
    to_the_eve_of(&app, year_end);
    assert_eq!(settle(&app).await, Settled::default());
    assert_eq!(
        commission(&app, "acct-y").await,
        json!(["20.00", "0.00", "0.00", "0.00", "10.00", false]),
        "New Year's Eve"
    );
    past(&app, year_end);
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 0 });
    assert_eq!(
        commission(&app, "acct-y").await,
        json!(["0.00", "20.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(
        only_cash_entry(&app, "acct-y").await,
        (entry("REWARD", "20.00", "POSTED"), year_end)
    );
    app.assert_invariants().await;
}

/// AS_EARNED, the default, keeps the hold exactly: cash and credit held 5 days are available
/// 5 days after the invoice. The program switched to MONTHLY, the next invoice's cash waits for
/// the 1st of the next month, its credit still only for its 5 days.
#[tokio::test]
async fn as_earned_keeps_the_hold_and_a_monthly_program_leaves_credit_alone() {
    let app = spawn_app().await;
    assert_eq!(program_schedule(&app).await, "AS_EARNED", "the default");
    let cash_rule = program(&app, None, 5).await;
    let mut credit = rule_input(
        "10 % of each invoice in credit",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    credit["value"] = json!("10");
    credit["recurring"] = json!(true);
    credit["holdDays"] = json!(5);
    let credit_rule = app.create_rule_id(credit).await;
    let affiliate_id = affiliate_with_friend(&app, "acct-a", "acct-b").await;
    assert_eq!(staff_affiliate(&app, &affiliate_id).await, record("AS_EARNED", None));

    // As earned: both held exactly 5 days.
    let before = app.state.clock.now();
    let first = paid(&app, "inv-b-1", "acct-b", "internet", "100.00").await;
    let after = app.state.clock.now();
    let mut expected = vec![
        cash_reward("acct-a", "20.00", "PENDING"),
        (
            "acct-a".to_owned(),
            "REWARD".to_owned(),
            "CREDIT".to_owned(),
            "10.00".to_owned(),
            "PENDING".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(rewards_of(&first), expected, "{first:#}");
    assert_held_exactly(reward_in(&first, "CASH"), 5, before, after);
    assert_held_exactly(reward_in(&first, "CREDIT"), 5, before, after);
    let held_until = day(before + Duration::days(5));
    for rule in [&cash_rule, &credit_rule] {
        let why = reason(&first, rule);
        assert!(why.contains(&format!(", on hold until {held_until}")), "{why}");
        assert!(!why.contains("withdrawable"), "as earned: {why}");
    }

    // Monthly from now on: the cash waits for the month's end, the credit does not.
    set_program_schedule(&app, "MONTHLY").await;
    assert_eq!(staff_affiliate(&app, &affiliate_id).await, record("MONTHLY", None));
    let before = app.state.clock.now();
    let second = paid(&app, "inv-b-2", "acct-b", "internet", "100.00").await;
    let after = app.state.clock.now();
    let release = monthly_release(before + Duration::days(5));
    assert_eq!(release, monthly_release(after + Duration::days(5)));
    assert_eq!(release, next_month(before), "the hold ends mid-month");
    assert_eq!(rewards_of(&second), expected, "{second:#}");
    assert_eq!(
        instant(&reward_in(&second, "CASH")["availableAt"]),
        release,
        "{second:#}"
    );
    assert_held_exactly(reward_in(&second, "CREDIT"), 5, before, after);
    let why = reason(&second, &cash_rule);
    assert!(
        why.ends_with(&format!(", withdrawable from {} (monthly payouts)", day(release))),
        "{why}"
    );
    let why = reason(&second, &credit_rule);
    let held_until = day(before + Duration::days(5));
    assert!(why.contains(&format!(", on hold until {held_until}")), "{why}");
    assert!(!why.contains("withdrawable"), "credit keeps its hold: {why}");
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["40.00", "0.00", "0.00", "0.00", "10.00", false])
    );
    assert_eq!(
        app.credit("acct-a").await,
        ("0.00".into(), "20.00".into(), "0.00".into())
    );

    // Five days on: the first cash and both credits are available; the second cash waits.
    advance(&app, 5);
    assert_eq!(settle(&app).await, Settled { matured: 3, expired: 0 });
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["20.00", "20.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(
        app.credit("acct-a").await,
        ("20.00".into(), "0.00".into(), "20.00".into())
    );
    to_the_eve_of(&app, release);
    assert_eq!(settle(&app).await, Settled::default());
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["20.00", "20.00", "0.00", "0.00", "0.00", true])
    );
    past(&app, release);
    assert_eq!(settle(&app).await, Settled { matured: 1, expired: 0 });
    assert_eq!(
        commission(&app, "acct-a").await,
        json!(["0.00", "40.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 40_000_000);
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 20_000_000);
    app.assert_invariants().await;
}

/// Only an admin sets a schedule: a customer (even for itself) and the billing system are
/// FORBIDDEN, no token UNAUTHENTICATED; an unknown account is NOT_FOUND and an id of another
/// kind BAD_USER_INPUT. None of them writes or audits anything.
#[tokio::test]
async fn only_an_admin_sets_a_payout_schedule_and_only_for_an_account_that_exists() {
    let app = spawn_app().await;
    let id = affiliate_with_friend(&app, "acct-a", "acct-b").await;
    let snapshot = app.snapshot().await;

    let customer = app.customer("acct-a");
    let service = app.service();
    for (token, code) in [
        (Some(customer.as_str()), "FORBIDDEN"),
        (Some(service.as_str()), "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
    ] {
        let body = set_schedule_raw(&app, token, &id, Some("YEARLY")).await;
        assert_failed(&body, code);
    }
    let unknown = set_schedule_raw(&app, Some(&app.admin()), &unknown_id_like(&id), Some("YEARLY")).await;
    assert_failed(&unknown, "NOT_FOUND");
    let other_kind = set_schedule_raw(&app, Some(&app.admin()), "wdr_1", Some("YEARLY")).await;
    assert_failed(&other_kind, "BAD_USER_INPUT");

    assert_eq!(app.snapshot().await, snapshot, "nothing written");
    assert!(audited(&app).await.is_empty(), "nothing audited");
    assert_eq!(staff_affiliate(&app, &id).await, record("AS_EARNED", None));

    // An admin may.
    let set = set_schedule(&app, &id, Some("YEARLY")).await;
    assert_eq!(set["affiliate"], record("YEARLY", Some("YEARLY")), "{set:#}");
    assert_eq!(audited(&app).await.len(), 1);
    app.assert_invariants().await;
}
