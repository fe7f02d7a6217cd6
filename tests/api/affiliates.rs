//! The affiliate program: applying, the admin's decisions, the statement, cash commission and
//! withdrawals.

use crate::helpers::*;
use crate::time::advance;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The customer's own affiliate record, with the fields the contract's operations leave out.
const ME_AFFILIATE: &str = "query { me { id affiliate { status appliedAt note decidedAt \
    stats { clicks signups conversions } \
    commission { currency pending available inWithdrawal withdrawn minimumWithdrawal neededToWithdraw canWithdraw } \
    } } }";

/// applyForAffiliate with a note (the contract's ApplyForAffiliate sends none).
const APPLY: &str = "mutation($note: String) { applyForAffiliate(note: $note) { status appliedAt note decidedAt } }";

/// requestWithdrawal with `duplicate` (the contract's RequestWithdrawal leaves it out).
const REQUEST: &str = "mutation($input: RequestWithdrawalInput!) { requestWithdrawal(input: $input) { duplicate \
    withdrawal { id amount currency status requestedAt decidedAt payoutReference reason } } }";

/// decideWithdrawal with the payout's reference and the reason in the answer.
const DECIDE: &str = "mutation($input: DecideWithdrawalInput!) { decideWithdrawal(input: $input) { \
    id amount status requestedAt decidedAt payoutReference reason } }";

// ---------------------------------------------------------------------------------------------
// Helpers

async fn register_id(app: &TestApp, external_id: &str, code: Option<&str>) -> String {
    s(&app.register(external_id, None, code).await, "/account/id").to_owned()
}

/// DecideAffiliate as an admin; the whole response body.
async fn decide_affiliate_raw(app: &TestApp, account_id: &str, decision: &str, reason: Option<&str>) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "DecideAffiliate",
        json!({ "input": { "accountId": account_id, "decision": decision, "reason": reason } }),
    )
    .await
}

/// DecideAffiliate that must succeed; the affiliate status it answers.
async fn decide_affiliate(app: &TestApp, account_id: &str, decision: &str) -> String {
    let body = decide_affiliate_raw(app, account_id, decision, None).await;
    let data = data_of(&body, &format!("DecideAffiliate {decision} {account_id}"));
    assert_eq!(data["decideAffiliate"]["id"], account_id, "{data:#}");
    s(&data, "/decideAffiliate/affiliate/status").to_owned()
}

async fn approve(app: &TestApp, account_id: &str) {
    assert_eq!(decide_affiliate(app, account_id, "APPROVE").await, "APPROVED");
}

/// applyForAffiliate with a note, as the customer; `applyForAffiliate`.
async fn apply(app: &TestApp, external_id: &str, note: Option<&str>) -> Value {
    let body = app
        .gql(Some(&app.customer(external_id)), APPLY, json!({ "note": note }))
        .await;
    data_of(&body, &format!("applyForAffiliate by {external_id}"))["applyForAffiliate"].clone()
}

/// The customer's `me.affiliate` (null: not in the program).
async fn affiliate(app: &TestApp, external_id: &str) -> Value {
    let body = app.gql(Some(&app.customer(external_id)), ME_AFFILIATE, json!({})).await;
    data_of(&body, &format!("me.affiliate of {external_id}"))["me"]["affiliate"].clone()
}

/// The customer's `me.affiliate.commission`, which must be shown.
async fn commission(app: &TestApp, external_id: &str) -> Value {
    let commission = affiliate(app, external_id).await["commission"].clone();
    assert!(
        commission.is_object(),
        "{external_id} has no commission: {commission:#}"
    );
    commission
}

/// A commission's figures: [pending, available, inWithdrawal, withdrawn, neededToWithdraw,
/// canWithdraw].
fn figures(commission: &Value) -> Value {
    json!([
        commission["pending"],
        commission["available"],
        commission["inWithdrawal"],
        commission["withdrawn"],
        commission["neededToWithdraw"],
        commission["canWithdraw"],
    ])
}

/// requestWithdrawal as the customer; the whole response body.
async fn request_raw(app: &TestApp, external_id: &str, amount: &str, key: Option<&str>) -> Value {
    let mut input = json!({ "amount": amount });
    if let Some(key) = key {
        input["idempotencyKey"] = json!(key);
    }
    app.gql(Some(&app.customer(external_id)), REQUEST, json!({ "input": input }))
        .await
}

/// requestWithdrawal that must succeed; `requestWithdrawal` (`withdrawal`, `duplicate`).
async fn request(app: &TestApp, external_id: &str, amount: &str, key: Option<&str>) -> Value {
    let body = request_raw(app, external_id, amount, key).await;
    data_of(&body, &format!("requestWithdrawal of {amount} by {external_id}"))["requestWithdrawal"].clone()
}

/// decideWithdrawal as an admin; the whole response body.
async fn decide_withdrawal_raw(
    app: &TestApp,
    id: &str,
    decision: &str,
    reference: Option<&str>,
    reason: Option<&str>,
) -> Value {
    let input = json!({
        "withdrawalId": id,
        "decision": decision,
        "payoutReference": reference,
        "reason": reason,
    });
    app.gql(Some(&app.admin()), DECIDE, json!({ "input": input })).await
}

/// decideWithdrawal that must succeed; `decideWithdrawal`.
async fn decide_withdrawal(app: &TestApp, id: &str, decision: &str, reference: Option<&str>) -> Value {
    let body = decide_withdrawal_raw(app, id, decision, reference, None).await;
    data_of(&body, &format!("decideWithdrawal {decision} {id}"))["decideWithdrawal"].clone()
}

/// The audit entries of one action, newest first.
async fn audited(app: &TestApp, action: &str) -> Vec<Value> {
    nodes(&app.audit_log(100, None).await)
        .into_iter()
        .filter(|entry| entry["action"] == action)
        .collect()
}

/// An audit entry's details (`before`, `after`) as JSON.
fn details(entry: &Value) -> Value {
    serde_json::from_str(s(entry, "/details")).expect("the details are JSON")
}

/// The customer's CASH entries, newest first, as (kind, amount, status).
async fn cash_history(app: &TestApp, external_id: &str) -> Vec<(String, String, String)> {
    app.history(external_id)
        .await
        .iter()
        .filter(|entry| entry["unit"] == "CASH")
        .map(|entry| {
            (
                s(entry, "/kind").to_owned(),
                s(entry, "/amount").to_owned(),
                s(entry, "/status").to_owned(),
            )
        })
        .collect()
}

fn entry(kind: &str, amount: &str, status: &str) -> (String, String, String) {
    (kind.to_owned(), amount.to_owned(), status.to_owned())
}

async fn returned_entries(app: &TestApp) -> i64 {
    app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind = 'WITHDRAWAL_RETURNED'")
        .await
}

/// The number in a withdrawal's id (`wdr_7` → `7`), as the audit log's target names it.
fn number(withdrawal_id: &str) -> &str {
    withdrawal_id
        .strip_prefix("wdr_")
        .unwrap_or_else(|| panic!("not a withdrawal id: {withdrawal_id}"))
}

/// Sets the program's sign-up bonus and minimum withdrawal, then registers an account and
/// approves it: an affiliate with `bonus` of cash commission available. Its account id.
async fn funded_affiliate(app: &TestApp, external_id: &str, bonus: &str, minimum: &str) -> String {
    let settings = app
        .update_settings(json!({ "affiliateSignupBonus": bonus, "minimumWithdrawal": minimum }))
        .await;
    assert_eq!(
        micros(s(&settings, "/minimumWithdrawal")),
        micros(minimum),
        "{settings:#}"
    );
    let id = register_id(app, external_id, None).await;
    approve(app, &id).await;
    let commission = commission(app, external_id).await;
    assert_eq!(micros(s(&commission, "/available")), micros(bonus), "{commission:#}");
    id
}

/// The customer's AffiliateDashboard (the contract's operation); `me`.
async fn affiliate_dashboard(app: &TestApp, external_id: &str) -> Value {
    app.run_ok(
        Some(&app.customer(external_id)),
        "customer",
        "AffiliateDashboard",
        json!({}),
    )
    .await["me"]
        .clone()
}

fn counts(clicks: i64, signups: i64, conversions: i64) -> Value {
    json!({ "clicks": clicks, "signups": signups, "conversions": conversions })
}

/// The ids of a connection's nodes, in order.
fn ids(connection: &Value) -> Vec<String> {
    nodes(connection).iter().map(|node| s(node, "/id").to_owned()).collect()
}

/// The admin's Withdrawals (the contract's operation) of one status or all: (id, externalId,
/// status) of each, newest first; totalCount must agree.
async fn admin_withdrawals(app: &TestApp, status: Option<&str>) -> Vec<(String, String, String)> {
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "Withdrawals",
            json!({ "status": status, "first": 100 }),
        )
        .await;
    let connection = &data["withdrawals"];
    let list: Vec<(String, String, String)> = nodes(connection)
        .iter()
        .map(|node| {
            (
                s(node, "/id").to_owned(),
                s(node, "/account/externalId").to_owned(),
                s(node, "/status").to_owned(),
            )
        })
        .collect();
    assert_eq!(connection["totalCount"].as_u64(), Some(list.len() as u64), "{data:#}");
    list
}

fn row(id: &str, external_id: &str, status: &str) -> (String, String, String) {
    (id.to_owned(), external_id.to_owned(), status.to_owned())
}

/// A DateTime variable.
fn at(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Follows `/r/{code}` as a browser would (Firefox, from the test's address, redirects not
/// followed); the code the referral cookie carries.
async fn click(app: &TestApp, code: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client");
    let response = browser
        .get(format!("{}/r/{code}", app.address))
        .header("user-agent", FIREFOX)
        .send()
        .await
        .expect("the link answers");
    assert_eq!(response.status(), StatusCode::FOUND);
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("a text header").to_owned())
        .collect();
    assert_eq!(cookies.len(), 1, "one cookie: {cookies:?}");
    cookies[0]
        .split(';')
        .next()
        .and_then(|pair| pair.trim().strip_prefix("ref="))
        .unwrap_or_else(|| panic!("no ref cookie: {cookies:?}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Applying and the admin's decisions on affiliates

/// An account outside the program has no affiliate record and cannot withdraw; applying
/// records the date and the note once (applying again changes nothing), an applicant sees no
/// statement and cannot withdraw, a rejection is audited, and a rejected account may apply
/// anew. Rejecting or suspending an account that never applied is refused.
#[tokio::test]
async fn an_application_is_recorded_once_and_a_rejected_applicant_may_apply_again() {
    let app = spawn_app().await;
    let id = register_id(&app, "acct-a", None).await;
    assert!(affiliate(&app, "acct-a").await.is_null(), "not in the program yet");
    assert_failed(&request_raw(&app, "acct-a", "10", None).await, "NOT_AN_AFFILIATE");

    let note = "I review proxy providers on my blog";
    let applied = apply(&app, "acct-a", Some(note)).await;
    assert_eq!(applied["status"], "APPLIED", "{applied:#}");
    assert_eq!(applied["note"], note, "{applied:#}");
    assert!(applied["decidedAt"].is_null(), "{applied:#}");
    let applied_at = instant(&applied["appliedAt"]);

    // Applying again, a day later, through the contract's operation and with another note:
    // the same application.
    advance(&app, 1);
    let again = app
        .run_ok(
            Some(&app.customer("acct-a")),
            "customer",
            "ApplyForAffiliate",
            json!({}),
        )
        .await;
    assert_eq!(again["applyForAffiliate"]["status"], "APPLIED", "{again:#}");
    assert_eq!(instant(&again["applyForAffiliate"]["appliedAt"]), applied_at);
    let other_note = apply(&app, "acct-a", Some("Another note")).await;
    assert_eq!(other_note["note"], note, "{other_note:#}");
    assert_eq!(instant(&other_note["appliedAt"]), applied_at);

    // An applicant sees no statement and cannot withdraw.
    let record = affiliate(&app, "acct-a").await;
    assert_eq!(record["status"], "APPLIED", "{record:#}");
    assert!(record["stats"].is_null(), "{record:#}");
    assert!(record["commission"].is_null(), "{record:#}");
    let dashboard = affiliate_dashboard(&app, "acct-a").await;
    assert_eq!(
        dashboard["affiliate"],
        json!({ "status": "APPLIED", "stats": null, "commission": null }),
        "{dashboard:#}"
    );
    assert_eq!(dashboard["withdrawals"]["totalCount"], 0, "{dashboard:#}");
    assert_failed(&request_raw(&app, "acct-a", "10", None).await, "NOT_AN_AFFILIATE");
    // Staff read the application, note included.
    let staff = app
        .gql(
            Some(&app.admin()),
            "query($id: ID!) { account(id: $id) { affiliate { status appliedAt note } } }",
            json!({ "id": id }),
        )
        .await;
    let staff = data_of(&staff, "account.affiliate")["account"]["affiliate"].clone();
    assert_eq!(staff["status"], "APPLIED", "{staff:#}");
    assert_eq!(staff["note"], note, "{staff:#}");

    // Only an approved affiliate can be suspended.
    assert_failed(
        &decide_affiliate_raw(&app, &id, "SUSPEND", None).await,
        "BAD_USER_INPUT",
    );
    assert!(audited(&app, "DECIDE_AFFILIATE").await.is_empty());

    // Rejected, with the reason in the audit log; rejecting again changes nothing.
    let rejected = decide_affiliate_raw(&app, &id, "REJECT", Some("Not a fit yet")).await;
    assert_eq!(
        data_of(&rejected, "REJECT")["decideAffiliate"]["affiliate"]["status"],
        "REJECTED"
    );
    let entries = audited(&app, "DECIDE_AFFILIATE").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["actor"], "admin:admin-1", "{entries:#?}");
    assert_eq!(entries[0]["target"], "account:acct-a", "{entries:#?}");
    let change = details(&entries[0]);
    assert_eq!(change["before"]["affiliateStatus"], "APPLIED", "{change:#}");
    assert_eq!(change["after"]["affiliateStatus"], "REJECTED", "{change:#}");
    assert_eq!(change["after"]["reason"], "Not a fit yet", "{change:#}");
    assert_eq!(decide_affiliate(&app, &id, "REJECT").await, "REJECTED");
    assert_eq!(audited(&app, "DECIDE_AFFILIATE").await.len(), 1);
    let record = affiliate(&app, "acct-a").await;
    assert_eq!(record["status"], "REJECTED", "{record:#}");
    assert!(record["decidedAt"].is_string(), "{record:#}");
    assert!(
        record["stats"].is_null() && record["commission"].is_null(),
        "{record:#}"
    );
    assert_failed(&request_raw(&app, "acct-a", "10", None).await, "NOT_AN_AFFILIATE");

    // A rejected account applies anew: a new date and note.
    advance(&app, 1);
    let anew = apply(&app, "acct-a", Some("Now with 10k readers")).await;
    assert_eq!(anew["status"], "APPLIED", "{anew:#}");
    assert_eq!(anew["note"], "Now with 10k readers", "{anew:#}");
    assert!(instant(&anew["appliedAt"]) > applied_at, "{anew:#}");

    // An account that never applied can be neither rejected nor suspended.
    let never = register_id(&app, "acct-n", None).await;
    for decision in ["REJECT", "SUSPEND"] {
        assert_failed(
            &decide_affiliate_raw(&app, &never, decision, None).await,
            "BAD_USER_INPUT",
        );
    }
    assert!(affiliate(&app, "acct-n").await.is_null());
    assert_eq!(audited(&app, "DECIDE_AFFILIATE").await.len(), 1);
}

/// Approval needs no application; the first approval pays the program's sign-up bonus in
/// CASH, available at once and audited; approving again changes nothing and is not audited. An
/// applicant's approval keeps its application and pays it its bonus too.
#[tokio::test]
async fn the_first_approval_pays_the_signup_bonus_at_once_and_approving_again_changes_nothing() {
    let app = spawn_app().await;
    app.update_settings(json!({ "affiliateSignupBonus": "25", "minimumWithdrawal": "10" }))
        .await;
    let currency = s(&app.settings().await, "/currency").to_owned();
    let id = register_id(&app, "acct-a", None).await;
    approve(&app, &id).await;

    let record = affiliate(&app, "acct-a").await;
    assert_eq!(record["status"], "APPROVED", "{record:#}");
    assert!(record["appliedAt"].is_null(), "approved without applying: {record:#}");
    let decided_at = instant(&record["decidedAt"]);
    assert_eq!(
        record["commission"],
        json!({
            "currency": currency,
            "pending": "0.00",
            "available": "25.00",
            "inWithdrawal": "0.00",
            "withdrawn": "0.00",
            "minimumWithdrawal": "10.00",
            "neededToWithdraw": "0.00",
            "canWithdraw": true,
        }),
        "{record:#}"
    );
    assert_eq!(record["stats"], counts(0, 0, 0), "{record:#}");
    assert_eq!(cash_history(&app, "acct-a").await, [entry("REWARD", "25.00", "POSTED")]);
    assert_eq!(
        app.balance("acct-a", "CASH").await,
        ("25.00".into(), "0.00".into(), "25.00".into())
    );
    let entries = audited(&app, "DECIDE_AFFILIATE").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["target"], "account:acct-a", "{entries:#?}");
    let change = details(&entries[0]);
    assert_eq!(change["before"]["affiliateStatus"], Value::Null, "{change:#}");
    assert_eq!(change["after"]["affiliateStatus"], "APPROVED", "{change:#}");
    assert_eq!(change["after"]["signupBonus"], "25.00", "{change:#}");

    // The same decision a day later: nothing written, nothing audited, no second bonus.
    advance(&app, 1);
    let snapshot = app.snapshot().await;
    approve(&app, &id).await;
    assert_eq!(
        app.snapshot().await,
        snapshot,
        "approving an approved affiliate writes nothing"
    );
    assert_eq!(audited(&app, "DECIDE_AFFILIATE").await.len(), 1);
    assert_eq!(instant(&affiliate(&app, "acct-a").await["decidedAt"]), decided_at);
    // Applying while approved changes nothing either.
    let applied = apply(&app, "acct-a", Some("late application")).await;
    assert_eq!(applied["status"], "APPROVED", "{applied:#}");
    assert!(applied["appliedAt"].is_null(), "{applied:#}");
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 25_000_000);

    // An applicant approved: its application kept, its own bonus paid.
    let applicant_id = register_id(&app, "acct-b", None).await;
    assert_eq!(apply(&app, "acct-b", None).await["status"], "APPLIED");
    approve(&app, &applicant_id).await;
    let record = affiliate(&app, "acct-b").await;
    assert_eq!(record["status"], "APPROVED", "{record:#}");
    assert!(record["appliedAt"].is_string(), "{record:#}");
    assert_eq!(record["commission"]["available"], "25.00", "{record:#}");
    assert_eq!(cash_history(&app, "acct-b").await, [entry("REWARD", "25.00", "POSTED")]);
    assert_eq!(audited(&app, "DECIDE_AFFILIATE").await.len(), 2);
    app.assert_invariants().await;
}

/// A suspended affiliate still sees what it earned but cannot withdraw; suspending again
/// changes nothing; approved again it can withdraw, and is paid no second bonus.
#[tokio::test]
async fn a_suspended_affiliate_sees_its_commission_cannot_withdraw_and_earns_no_second_bonus() {
    let app = spawn_app().await;
    let id = funded_affiliate(&app, "acct-a", "50", "10").await;
    assert_eq!(decide_affiliate(&app, &id, "SUSPEND").await, "SUSPENDED");
    assert_eq!(audited(&app, "DECIDE_AFFILIATE").await.len(), 2);

    let record = affiliate(&app, "acct-a").await;
    assert_eq!(record["status"], "SUSPENDED", "{record:#}");
    assert_eq!(
        figures(&record["commission"]),
        json!(["0.00", "50.00", "0.00", "0.00", "0.00", false]),
        "{record:#}"
    );
    assert_eq!(record["stats"], counts(0, 0, 0), "{record:#}");
    assert_failed(&request_raw(&app, "acct-a", "10", None).await, "NOT_AN_AFFILIATE");
    assert_eq!(app.count("withdrawals").await, 0);
    // Suspending again and applying change nothing.
    assert_eq!(decide_affiliate(&app, &id, "SUSPEND").await, "SUSPENDED");
    assert_eq!(audited(&app, "DECIDE_AFFILIATE").await.len(), 2);
    assert_eq!(apply(&app, "acct-a", Some("let me back")).await["status"], "SUSPENDED");

    // Approved again, with a higher bonus in force: no second bonus.
    app.update_settings(json!({ "affiliateSignupBonus": "40" })).await;
    approve(&app, &id).await;
    let entries = audited(&app, "DECIDE_AFFILIATE").await;
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let change = details(&entries[0]);
    assert_eq!(change["before"]["affiliateStatus"], "SUSPENDED", "{change:#}");
    assert_eq!(change["after"]["affiliateStatus"], "APPROVED", "{change:#}");
    assert_eq!(change["after"]["signupBonus"], "0.00", "{change:#}");
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "50.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(cash_history(&app, "acct-a").await, [entry("REWARD", "50.00", "POSTED")]);
    let requested = request(&app, "acct-a", "10", None).await;
    assert_eq!(requested["withdrawal"]["status"], "REQUESTED", "{requested:#}");
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// The statement

/// A browser follows an approved affiliate's link (one click, however often that visitor
/// comes that day), a newcomer signs up with the code its cookie carried, and qualifies two days
/// later with a residential purchase: the statement counts each in the period it happened.
#[tokio::test]
async fn the_statement_counts_the_click_the_signup_and_the_conversion_in_their_period() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let registered = app.register("acct-a", Some("Alice Adams"), None).await;
    let id = s(&registered, "/account/id").to_owned();
    let code = s(&registered, "/account/referralCode").to_owned();
    approve(&app, &id).await;
    assert_eq!(
        affiliate_dashboard(&app, "acct-a").await["affiliate"]["stats"],
        counts(0, 0, 0)
    );
    let start = app.state.clock.now() - Duration::minutes(1);

    let carried = click(&app, &code).await;
    assert_eq!(carried, code);
    assert_eq!(click(&app, &code).await, code);
    assert_eq!(app.count("clicks").await, 1, "one visitor, one day: one click");
    assert_eq!(
        affiliate_dashboard(&app, "acct-a").await["affiliate"]["stats"],
        counts(1, 0, 0)
    );

    let newcomer = app.register("acct-b", Some("Bob Brown"), Some(&carried)).await;
    assert_eq!(newcomer["referral"]["status"], "PENDING", "{newcomer:#}");
    assert_eq!(
        affiliate_dashboard(&app, "acct-a").await["affiliate"]["stats"],
        counts(1, 1, 0)
    );

    let mid = app.state.clock.now() + Duration::days(1);
    advance(&app, 2);
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let friends = app.friends("acct-a").await;
    assert_eq!(friends.len(), 1, "{friends:#?}");
    assert_eq!(friends[0]["status"], "QUALIFIED", "{friends:#?}");
    assert_eq!(
        affiliate_dashboard(&app, "acct-a").await["affiliate"]["stats"],
        counts(1, 1, 1)
    );

    let end = app.state.clock.now() + Duration::hours(1);
    let early = start - Duration::days(1);
    let query = "query($early: DateTime!, $start: DateTime!, $mid: DateTime!, $end: DateTime!) { me { affiliate { \
        all: stats { from to clicks signups conversions } \
        whole: stats(from: $start, to: $end) { from to clicks signups conversions } \
        before: stats(to: $early) { clicks signups conversions } \
        opening: stats(from: $start, to: $mid) { clicks signups conversions } \
        closing: stats(from: $mid) { clicks signups conversions } \
        after: stats(from: $end) { clicks signups conversions } } } }";
    let vars = json!({ "early": at(early), "start": at(start), "mid": at(mid), "end": at(end) });
    let body = app.gql(Some(&app.customer("acct-a")), query, vars).await;
    let stats = data_of(&body, "stats over periods")["me"]["affiliate"].clone();
    assert_eq!(
        stats["all"],
        json!({ "from": null, "to": null, "clicks": 1, "signups": 1, "conversions": 1 }),
        "no bounds: all time"
    );
    let whole = &stats["whole"];
    assert_eq!(instant(&whole["from"]), instant(&json!(at(start))), "{whole:#}");
    assert_eq!(instant(&whole["to"]), instant(&json!(at(end))), "{whole:#}");
    assert_eq!(
        json!([whole["clicks"], whole["signups"], whole["conversions"]]),
        json!([1, 1, 1]),
        "{whole:#}"
    );
    assert_eq!(stats["before"], counts(0, 0, 0), "a period that ends before everything");
    assert_eq!(
        stats["opening"],
        counts(1, 1, 0),
        "the click and the sign-up, before the conversion"
    );
    assert_eq!(
        stats["closing"],
        counts(0, 0, 1),
        "the conversion counts when it qualified"
    );
    assert_eq!(stats["after"], counts(0, 0, 0));

    // Staff read the same statement.
    let staff = app
        .gql(
            Some(&app.admin()),
            "query($id: ID!, $mid: DateTime!) { account(id: $id) { affiliate { \
             stats(to: $mid) { clicks signups conversions } } } }",
            json!({ "id": id, "mid": at(mid) }),
        )
        .await;
    assert_eq!(
        data_of(&staff, "account.affiliate.stats")["account"]["affiliate"]["stats"],
        counts(1, 1, 0)
    );

    // A period that ends before it starts is refused.
    let reversed = app
        .gql(
            Some(&app.customer("acct-a")),
            "query($from: DateTime!, $to: DateTime!) { me { affiliate { status \
             stats(from: $from, to: $to) { clicks } } } }",
            json!({ "from": at(end), "to": at(start) }),
        )
        .await;
    assert_error_code(&reversed, "BAD_USER_INPUT");
    assert!(reversed["data"]["me"]["affiliate"]["stats"].is_null(), "{reversed:#}");
}

// ---------------------------------------------------------------------------------------------
// Commission and withdrawals

/// A rule paying the referrer 30.00 CASH with a 30-day hold: the commission is pending, cannot
/// be withdrawn, and is available once the hold is over.
#[tokio::test]
async fn a_held_cash_commission_is_pending_then_available_after_its_hold() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.update_settings(json!({ "minimumWithdrawal": "20" })).await;
    let mut rule = rule_input("Cash commission", "FIRST_PURCHASE", "REFERRER", "CASH", "FIXED");
    rule["value"] = json!("30");
    rule["holdDays"] = json!(30);
    app.create_rule_id(rule).await;
    let registered = app.register("acct-a", Some("Alice Adams"), None).await;
    approve(&app, s(&registered, "/account/id")).await;
    app.register(
        "acct-b",
        Some("Bob Brown"),
        Some(s(&registered, "/account/referralCode")),
    )
    .await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;

    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["30.00", "0.00", "0.00", "0.00", "20.00", false])
    );
    assert_eq!(
        cash_history(&app, "acct-a").await,
        [entry("REWARD", "30.00", "PENDING")]
    );
    // Held money cannot be withdrawn.
    assert_failed(&request_raw(&app, "acct-a", "30", None).await, "INSUFFICIENT_BALANCE");

    advance(&app, 29);
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["30.00", "0.00", "0.00", "0.00", "20.00", false]),
        "still held on day 29"
    );
    advance(&app, 2);
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "30.00", "0.00", "0.00", "0.00", true]),
        "available on day 31"
    );

    let requested = request(&app, "acct-a", "30", None).await;
    assert_eq!(requested["withdrawal"]["amount"], "30.00", "{requested:#}");
    assert_eq!(requested["withdrawal"]["status"], "REQUESTED", "{requested:#}");
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "0.00", "30.00", "0.00", "20.00", false])
    );
    assert_eq!(
        cash_history(&app, "acct-a").await,
        [
            entry("WITHDRAWAL", "-30.00", "POSTED"),
            entry("REWARD", "30.00", "POSTED")
        ]
    );
    app.assert_invariants().await;
}

/// What a request is checked against (amount, minimum, balance, the open request), and its
/// idempotency key: the same key and amount answer the first request, another amount is a
/// conflict. A request is audited once.
#[tokio::test]
async fn a_withdrawal_request_is_checked_takes_the_amount_at_once_and_is_idempotent() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100", "150").await;
    // Below the minimum: how much is missing, and no withdrawal.
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "100.00", "0.00", "0.00", "50.00", false])
    );
    assert_failed(
        &request_raw(&app, "acct-a", "100", None).await,
        "BELOW_MINIMUM_WITHDRAWAL",
    );
    app.update_settings(json!({ "minimumWithdrawal": "20" })).await;
    let before = commission(&app, "acct-a").await;
    assert_eq!(before["minimumWithdrawal"], "20.00", "{before:#}");
    assert_eq!(
        figures(&before),
        json!(["0.00", "100.00", "0.00", "0.00", "0.00", true])
    );

    let snapshot = app.snapshot().await;
    for (amount, code) in [
        ("0", "BAD_USER_INPUT"),
        ("-5", "BAD_USER_INPUT"),
        ("19.99", "BELOW_MINIMUM_WITHDRAWAL"),
        ("100.01", "INSUFFICIENT_BALANCE"),
    ] {
        let key = format!("refused-{amount}");
        let body = request_raw(&app, "acct-a", amount, Some(key.as_str())).await;
        assert_failed(&body, code);
    }
    assert_eq!(app.snapshot().await, snapshot, "refused requests write nothing");
    assert_eq!(app.count("withdrawals").await, 0);
    assert!(audited(&app, "REQUEST_WITHDRAWAL").await.is_empty());

    let first = request(&app, "acct-a", "60.00", Some("w-1")).await;
    assert_eq!(first["duplicate"], false, "{first:#}");
    let withdrawal = &first["withdrawal"];
    assert_eq!(withdrawal["amount"], "60.00", "{first:#}");
    assert_eq!(withdrawal["status"], "REQUESTED", "{first:#}");
    assert_eq!(withdrawal["currency"], before["currency"], "{first:#}");
    assert!(withdrawal["decidedAt"].is_null() && withdrawal["payoutReference"].is_null());
    let id = s(withdrawal, "/id").to_owned();
    // The amount left the available balance at once.
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "40.00", "60.00", "0.00", "0.00", false])
    );
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 40_000_000);
    let entries = audited(&app, "REQUEST_WITHDRAWAL").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["actor"], "customer:acct-a", "{entries:#?}");
    assert_eq!(
        entries[0]["target"],
        format!("withdrawal:{}", number(&id)),
        "{entries:#?}"
    );
    assert_eq!(details(&entries[0])["after"]["amount"], "60.00", "{entries:#?}");

    // The same key and amount (however written): the first request again, nothing moved.
    let snapshot = app.snapshot().await;
    for amount in ["60.00", "60"] {
        let replay = request(&app, "acct-a", amount, Some("w-1")).await;
        assert_eq!(replay["duplicate"], true, "{replay:#}");
        assert_eq!(replay["withdrawal"]["id"], id.as_str(), "{replay:#}");
        assert_eq!(replay["withdrawal"]["amount"], "60.00", "{replay:#}");
    }
    // The same key with another amount.
    assert_failed(
        &request_raw(&app, "acct-a", "30", Some("w-1")).await,
        "IDEMPOTENCY_CONFLICT",
    );
    assert_eq!(app.snapshot().await, snapshot, "replays write nothing");
    assert_eq!(app.count("withdrawals").await, 1);
    assert_eq!(audited(&app, "REQUEST_WITHDRAWAL").await.len(), 1);

    // One open request at a time: 30.00 is above the minimum and available, but refused while
    // the first is requested, and while it is approved.
    assert_failed(&request_raw(&app, "acct-a", "30", Some("w-2")).await, "BAD_USER_INPUT");
    assert_eq!(
        decide_withdrawal(&app, &id, "APPROVE", None).await["status"],
        "APPROVED"
    );
    assert_failed(&request_raw(&app, "acct-a", "30", Some("w-3")).await, "BAD_USER_INPUT");
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "40.00", "60.00", "0.00", "0.00", false])
    );
    assert_eq!(app.count("withdrawals").await, 1);
    app.assert_invariants().await;
}

/// An admin approves a request and marks it paid (with the payout's reference), or rejects it
/// (from requested or approved) and the amount is available again; the same decision again
/// changes nothing; paid and rejected are final; each decision is audited. The admin's list
/// filters by status; a customer's lists only its own.
#[tokio::test]
async fn an_admin_pays_or_rejects_a_withdrawal_and_paid_and_rejected_are_final() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100", "10").await;
    let paid_id = s(&request(&app, "acct-a", "40", None).await, "/withdrawal/id").to_owned();

    let approved = decide_withdrawal(&app, &paid_id, "APPROVE", None).await;
    assert_eq!(approved["id"], paid_id.as_str(), "{approved:#}");
    assert_eq!(approved["status"], "APPROVED", "{approved:#}");
    let approved_at = instant(&approved["decidedAt"]);
    advance(&app, 1);
    let again = decide_withdrawal(&app, &paid_id, "APPROVE", None).await;
    assert_eq!(again["status"], "APPROVED", "{again:#}");
    assert_eq!(
        instant(&again["decidedAt"]),
        approved_at,
        "the same decision changes nothing"
    );
    assert_eq!(audited(&app, "DECIDE_WITHDRAWAL").await.len(), 1);
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "60.00", "40.00", "0.00", "0.00", false])
    );

    // Paying needs the payout's reference.
    for reference in [None, Some("   ")] {
        assert_failed(
            &decide_withdrawal_raw(&app, &paid_id, "MARK_PAID", reference, None).await,
            "BAD_USER_INPUT",
        );
    }
    let paid = decide_withdrawal(&app, &paid_id, "MARK_PAID", Some("TRX-2026-0042")).await;
    assert_eq!(paid["status"], "PAID", "{paid:#}");
    assert_eq!(paid["payoutReference"], "TRX-2026-0042", "{paid:#}");
    assert_eq!(paid["amount"], "40.00", "{paid:#}");
    let paid_at = instant(&paid["decidedAt"]);
    assert!(paid_at > approved_at, "{paid:#}");
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "60.00", "0.00", "40.00", "0.00", true])
    );
    let again = decide_withdrawal(&app, &paid_id, "MARK_PAID", Some("TRX-2026-0042")).await;
    assert_eq!(again["status"], "PAID", "{again:#}");
    assert_eq!(instant(&again["decidedAt"]), paid_at, "{again:#}");
    // Paid is final.
    for decision in ["APPROVE", "REJECT"] {
        assert_failed(
            &decide_withdrawal_raw(&app, &paid_id, decision, None, None).await,
            "BAD_USER_INPUT",
        );
    }
    assert_eq!(returned_entries(&app).await, 0);
    assert_eq!(audited(&app, "DECIDE_WITHDRAWAL").await.len(), 2);

    // Rejected from requested: the amount is available again, once.
    let rejected_id = s(&request(&app, "acct-a", "25", None).await, "/withdrawal/id").to_owned();
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "35.00", "25.00", "40.00", "0.00", false])
    );
    let body = decide_withdrawal_raw(&app, &rejected_id, "REJECT", None, Some("Bank details do not match")).await;
    let rejected = data_of(&body, "REJECT")["decideWithdrawal"].clone();
    assert_eq!(rejected["status"], "REJECTED", "{rejected:#}");
    assert_eq!(rejected["reason"], "Bank details do not match", "{rejected:#}");
    assert!(rejected["payoutReference"].is_null(), "{rejected:#}");
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "60.00", "0.00", "40.00", "0.00", true])
    );
    assert_eq!(
        cash_history(&app, "acct-a").await,
        [
            entry("WITHDRAWAL_RETURNED", "25.00", "POSTED"),
            entry("WITHDRAWAL", "-25.00", "POSTED"),
            entry("WITHDRAWAL", "-40.00", "POSTED"),
            entry("REWARD", "100.00", "POSTED"),
        ]
    );
    assert_eq!(
        decide_withdrawal(&app, &rejected_id, "REJECT", None).await["status"],
        "REJECTED"
    );
    assert_eq!(returned_entries(&app).await, 1, "given back once");
    // Rejected is final.
    for (decision, reference) in [("APPROVE", None), ("MARK_PAID", Some("TRX-2026-0043"))] {
        assert_failed(
            &decide_withdrawal_raw(&app, &rejected_id, decision, reference, None).await,
            "BAD_USER_INPUT",
        );
    }
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 60_000_000);
    let entries = audited(&app, "DECIDE_WITHDRAWAL").await;
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert_eq!(entries[0]["actor"], "admin:admin-1", "{entries:#?}");
    assert_eq!(entries[0]["target"], format!("withdrawal:{}", number(&rejected_id)));
    let change = details(&entries[0]);
    assert_eq!(change["before"]["status"], "REQUESTED", "{change:#}");
    assert_eq!(change["after"]["status"], "REJECTED", "{change:#}");

    // An unknown withdrawal.
    assert_failed(
        &decide_withdrawal_raw(&app, &unknown_id_like(&paid_id), "APPROVE", None, None).await,
        "NOT_FOUND",
    );

    // Another affiliate: one rejected after approval (given back), one still requested.
    funded_affiliate(&app, "acct-o", "100", "10").await;
    let other_rejected = s(&request(&app, "acct-o", "15", None).await, "/withdrawal/id").to_owned();
    assert_eq!(
        decide_withdrawal(&app, &other_rejected, "APPROVE", None).await["status"],
        "APPROVED"
    );
    assert_eq!(
        decide_withdrawal(&app, &other_rejected, "REJECT", None).await["status"],
        "REJECTED"
    );
    assert_eq!(commission(&app, "acct-o").await["available"], "100.00");
    let other_open = s(&request(&app, "acct-o", "20", None).await, "/withdrawal/id").to_owned();

    // The admin's list, newest first, by status.
    assert_eq!(
        admin_withdrawals(&app, Some("PAID")).await,
        [row(&paid_id, "acct-a", "PAID")]
    );
    assert_eq!(
        admin_withdrawals(&app, Some("REJECTED")).await,
        [
            row(&other_rejected, "acct-o", "REJECTED"),
            row(&rejected_id, "acct-a", "REJECTED")
        ]
    );
    assert_eq!(
        admin_withdrawals(&app, Some("REQUESTED")).await,
        [row(&other_open, "acct-o", "REQUESTED")]
    );
    assert!(admin_withdrawals(&app, Some("APPROVED")).await.is_empty());
    assert_eq!(admin_withdrawals(&app, None).await.len(), 4);

    // A customer's own, newest first.
    let mine = affiliate_dashboard(&app, "acct-a").await;
    assert_eq!(
        ids(&mine["withdrawals"]),
        [rejected_id.clone(), paid_id.clone()],
        "{mine:#}"
    );
    assert_eq!(mine["withdrawals"]["totalCount"], 2, "{mine:#}");
    let theirs = affiliate_dashboard(&app, "acct-o").await;
    assert_eq!(
        ids(&theirs["withdrawals"]),
        [other_open.clone(), other_rejected.clone()]
    );
    let by_status = "query($status: WithdrawalStatus) { me { withdrawals(status: $status, first: 10) { \
                     totalCount edges { node { id status payoutReference } } } } }";
    let paid_only = app
        .gql(Some(&app.customer("acct-a")), by_status, json!({ "status": "PAID" }))
        .await;
    let paid_only = data_of(&paid_only, "me.withdrawals(PAID)")["me"]["withdrawals"].clone();
    assert_eq!(ids(&paid_only), std::slice::from_ref(&paid_id), "{paid_only:#}");
    assert_eq!(nodes(&paid_only)[0]["payoutReference"], "TRX-2026-0042");
    let none_paid = app
        .gql(Some(&app.customer("acct-o")), by_status, json!({ "status": "PAID" }))
        .await;
    let none_paid = data_of(&none_paid, "me.withdrawals(PAID)")["me"]["withdrawals"].clone();
    assert_eq!(none_paid["totalCount"], 0, "{none_paid:#}");
    app.assert_invariants().await;
}

/// Eight requests for the whole 100.00 at once, each with its own idempotency key, sent to two
/// instances so that only the database can keep them apart: one withdrawal; then concurrent
/// rejections of it all answer REJECTED and give the amount back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_make_one_withdrawal_and_concurrent_rejections_return_it_once() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100", "10").await;
    let instances = [app.address.clone(), another_instance(&app).await];

    let query = app.op("customer", "RequestWithdrawal");
    let vars = (0..8)
        .map(|i| json!({ "input": { "amount": "100.00", "idempotencyKey": format!("race-{i}") } }))
        .collect();
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-a"), &query, vars).await;
    let (ok, refused): (Vec<&Value>, Vec<&Value>) = bodies.iter().partition(|b| error_codes(b).is_empty());
    assert_eq!(ok.len(), 1, "exactly one request succeeds: {bodies:#?}");
    assert_eq!(refused.len(), 7);
    for body in &refused {
        let codes = error_codes(body);
        assert_eq!(codes.len(), 1, "{body:#}");
        assert!(
            codes[0] == "INSUFFICIENT_BALANCE" || codes[0] == "BAD_USER_INPUT",
            "a refused request is INSUFFICIENT_BALANCE or BAD_USER_INPUT: {body:#}"
        );
        assert_failed(body, &codes[0]);
    }
    let withdrawal = &ok[0]["data"]["requestWithdrawal"]["withdrawal"];
    assert_eq!(withdrawal["amount"], "100.00", "{withdrawal:#}");
    assert_eq!(withdrawal["status"], "REQUESTED", "{withdrawal:#}");
    let id = s(withdrawal, "/id").to_owned();

    assert_eq!(app.count("withdrawals").await, 1);
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "0.00", "100.00", "0.00", "10.00", false])
    );
    assert_eq!(app.balance_available("acct-a", "CASH").await, 0);
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 0);
    assert_eq!(audited(&app, "REQUEST_WITHDRAWAL").await.len(), 1);
    app.assert_invariants().await;

    let decide = app.op("admin", "DecideWithdrawal");
    let vars = (0..4)
        .map(|_| json!({ "input": { "withdrawalId": id, "decision": "REJECT" } }))
        .collect();
    let bodies = send_concurrently_across(&app, &instances, &app.admin(), &decide, vars).await;
    for body in &bodies {
        let data = data_of(body, "a concurrent REJECT");
        assert_eq!(data["decideWithdrawal"]["id"], id.as_str(), "{body:#}");
        assert_eq!(data["decideWithdrawal"]["status"], "REJECTED", "{body:#}");
    }
    assert_eq!(returned_entries(&app).await, 1, "the amount comes back exactly once");
    assert_eq!(
        figures(&commission(&app, "acct-a").await),
        json!(["0.00", "100.00", "0.00", "0.00", "0.00", true])
    );
    assert_eq!(app.balance_available("acct-a", "CASH").await, 100_000_000);
    assert_eq!(app.ledger_sum("acct-a", "CASH").await, 100_000_000);
    assert_eq!(audited(&app, "DECIDE_WITHDRAWAL").await.len(), 1);
    assert_eq!(admin_withdrawals(&app, None).await, [row(&id, "acct-a", "REJECTED")]);
    app.assert_invariants().await;
}
