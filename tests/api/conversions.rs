//! Converting cash commission into credit (`convertCommission`): at the program's
//! `commissionConversionRate`, rounded down to the cent, idempotent under the affiliate's key,
//! refused without writing anything, safe under concurrent requests, and watched by
//! `referral-server check`.

use crate::helpers::*;
use referral_server::service::check;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

/// The commission statement's figures this feature shows.
const COMMISSION: &str = "query { me { affiliate { status commission { available conversionRate } } } }";

/// updateProgramSettings answering the conversion rate (the contract's document leaves it out).
const SET_RATE: &str = "mutation($input: ProgramSettingsInput!) { \
    updateProgramSettings(input: $input) { commissionConversionRate } }";

/// The program's conversion rate as an admin reads it.
const READ_RATE: &str = "query { programSettings { commissionConversionRate } }";

/// The invariants `check` holds conversions to.
const PAIRED: &str = "each commission conversion is one posted CASH debit of its cash and one CREDIT credit of \
                      its cash times its rate, rounded down to the cent";
const OWNED: &str = "each COMMISSION_CONVERTED entry belongs to exactly one conversion";

// ---------------------------------------------------------------------------------------------
// Helpers

/// DecideAffiliate APPROVE as an admin, which must succeed.
async fn approve(app: &TestApp, account_id: &str) {
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "DecideAffiliate",
            json!({ "input": { "accountId": account_id, "decision": "APPROVE" } }),
        )
        .await;
    assert_eq!(s(&data, "/decideAffiliate/affiliate/status"), "APPROVED", "{data:#}");
}

/// Sets the program's sign-up bonus, registers an account and approves it: an affiliate with
/// `bonus` of cash commission available. Its account id.
async fn funded_affiliate(app: &TestApp, external_id: &str, bonus: &str) -> String {
    app.update_settings(json!({ "affiliateSignupBonus": bonus })).await;
    let id = s(&app.register(external_id, None, None).await, "/account/id").to_owned();
    approve(app, &id).await;
    let commission = commission(app, external_id).await;
    assert_eq!(micros(s(&commission, "/available")), micros(bonus), "{commission:#}");
    id
}

/// The customer's `me.affiliate.commission`, which must be shown.
async fn commission(app: &TestApp, external_id: &str) -> Value {
    let body = app.gql(Some(&app.customer(external_id)), COMMISSION, json!({})).await;
    let data = data_of(&body, &format!("the commission of {external_id}"));
    let commission = data["me"]["affiliate"]["commission"].clone();
    assert!(commission.is_object(), "{external_id} has no commission: {data:#}");
    commission
}

/// updateProgramSettings with only `commissionConversionRate` (a string, or null); the whole
/// response body.
async fn set_rate_raw(app: &TestApp, rate: Value) -> Value {
    app.gql(
        Some(&app.admin()),
        SET_RATE,
        json!({ "input": { "commissionConversionRate": rate } }),
    )
    .await
}

/// Sets the conversion rate (None: off), which must succeed; the rate answered.
async fn set_rate(app: &TestApp, rate: Option<&str>) -> Value {
    let body = set_rate_raw(app, json!(rate)).await;
    data_of(&body, &format!("commissionConversionRate {rate:?}"))["updateProgramSettings"]["commissionConversionRate"]
        .clone()
}

/// The program's conversion rate as an admin reads it.
async fn program_rate(app: &TestApp) -> Value {
    let body = app.gql(Some(&app.admin()), READ_RATE, json!({})).await;
    data_of(&body, "programSettings.commissionConversionRate")["programSettings"]["commissionConversionRate"].clone()
}

fn convert_vars(amount: &str, key: Option<&str>) -> Value {
    let mut input = json!({ "amount": amount });
    if let Some(key) = key {
        input["idempotencyKey"] = json!(key);
    }
    json!({ "input": input })
}

/// ConvertCommission (the contract's document) as the customer; the whole response body.
async fn convert_raw(app: &TestApp, external_id: &str, amount: &str, key: Option<&str>) -> Value {
    app.run(
        Some(&app.customer(external_id)),
        "customer",
        "ConvertCommission",
        convert_vars(amount, key),
    )
    .await
}

/// ConvertCommission that must succeed; `convertCommission` (`duplicate`, `conversion`).
async fn convert(app: &TestApp, external_id: &str, amount: &str, key: Option<&str>) -> Value {
    let body = convert_raw(app, external_id, amount, key).await;
    data_of(
        &body,
        &format!("convertCommission of {amount} by {external_id} ({key:?})"),
    )["convertCommission"]
        .clone()
}

/// The audit entries of conversions, newest first.
async fn audited(app: &TestApp) -> Vec<Value> {
    nodes(&app.audit_log(100, None).await)
        .into_iter()
        .filter(|entry| entry["action"] == "CONVERT_COMMISSION")
        .collect()
}

/// An audit entry's details (`before`, `after`) as JSON.
fn details(entry: &Value) -> Value {
    serde_json::from_str(s(entry, "/details")).expect("the details are JSON")
}

/// Conversion rows of one account.
async fn conversions_of(app: &TestApp, external_id: &str) -> i64 {
    app.sql_i64(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM commission_conversions \
         WHERE account_id = (SELECT id FROM accounts WHERE external_id = '{external_id}')"
    ))
    .await
}

/// Everything a conversion writes, to compare before and after a request that must write
/// nothing: the domain tables and balances, the conversions, and the conversions' audit.
async fn written(app: &TestApp) -> (Vec<(String, i64)>, i64, usize) {
    (
        app.snapshot().await,
        app.count("commission_conversions").await,
        audited(app).await.len(),
    )
}

/// The customer's COMMISSION_CONVERTED entries as (unit, amount, status), sorted.
async fn converted_entries(app: &TestApp, external_id: &str) -> Vec<(String, String, String)> {
    let mut entries: Vec<_> = app
        .history(external_id)
        .await
        .iter()
        .filter(|entry| entry["kind"] == "COMMISSION_CONVERTED")
        .map(|entry| {
            (
                s(entry, "/unit").to_owned(),
                s(entry, "/amount").to_owned(),
                s(entry, "/status").to_owned(),
            )
        })
        .collect();
    entries.sort();
    entries
}

fn entry(unit: &str, amount: &str) -> (String, String, String) {
    (unit.to_owned(), amount.to_owned(), "POSTED".to_owned())
}

/// The account's CASH and CREDIT, each read four ways that must agree: the statement or the
/// balance the customer reads, the balance row, and the sum of the ledger's entries.
async fn assert_balances(app: &TestApp, external_id: &str, cash: &str, credit: &str) {
    assert_eq!(
        micros(s(&commission(app, external_id).await, "/available")),
        micros(cash),
        "the commission's available cash of {external_id}"
    );
    let (cash_available, cash_pending, _) = app.balance(external_id, "CASH").await;
    assert_eq!(
        micros(&cash_available),
        micros(cash),
        "the CASH balance of {external_id}"
    );
    assert_eq!(micros(&cash_pending), 0, "the CASH pending of {external_id}");
    assert_eq!(app.balance_available(external_id, "CASH").await, micros(cash));
    assert_eq!(app.ledger_sum(external_id, "CASH").await, micros(cash));

    let (credit_available, credit_pending, _) = app.credit(external_id).await;
    assert_eq!(
        micros(&credit_available),
        micros(credit),
        "the CREDIT balance of {external_id}"
    );
    assert_eq!(
        micros(&credit_pending),
        0,
        "converted credit is available at once ({external_id})"
    );
    if micros(credit) != 0 {
        assert_eq!(app.balance_available(external_id, "CREDIT").await, micros(credit));
    }
    assert_eq!(app.ledger_sum(external_id, "CREDIT").await, micros(credit));
}

/// Two answers name the same conversion, with the same figures and time.
fn assert_same_conversion(answer: &Value, first: &Value) {
    for field in ["id", "cash", "credit", "rate"] {
        assert_eq!(answer[field], first[field], "{field}: {answer:#} is not {first:#}");
    }
    assert_eq!(
        instant(&answer["createdAt"]),
        instant(&first["createdAt"]),
        "{answer:#} is not {first:#}"
    );
}

/// The invariants `check` finds broken, in its order.
async fn broken(app: &TestApp) -> Vec<&'static str> {
    let findings = check::run(&app.state.db).await.expect("the checks run");
    findings
        .iter()
        .filter(|f| !f.violations.is_empty())
        .map(|f| f.invariant)
        .collect()
}

/// Runs `tamper`, expects exactly `expected` broken, and puts things back with `undo`.
async fn breaks(app: &TestApp, tamper: &str, undo: &str, expected: &[&str]) {
    let db = &app.state.db;
    db.execute_unprepared(tamper).await.expect("tampering runs");
    assert_eq!(broken(app).await, expected, "after {tamper}");
    db.execute_unprepared(undo).await.expect("undoing runs");
    assert!(broken(app).await.is_empty(), "after {undo}");
}

/// The successful and refused answers of concurrent requests; each refused one must fail as a
/// whole with `code` alone.
fn split_answers<'a>(bodies: &'a [Value], code: &str) -> (Vec<&'a Value>, usize) {
    let (ok, refused): (Vec<&Value>, Vec<&Value>) = bodies.iter().partition(|b| error_codes(b).is_empty());
    for body in &refused {
        assert_eq!(error_codes(body), vec![code.to_owned()], "{body:#}");
        assert_failed(body, code);
    }
    (ok, refused.len())
}

// ---------------------------------------------------------------------------------------------
// Idempotency

/// 40.00 converted at 1.25 is 50.00 of credit, available at once, in one CASH debit and one
/// CREDIT credit, one row and one audit entry; the same key and amount (however written)
/// answers the first conversion again and moves nothing; the same key with another amount is a
/// conflict. Keys are the affiliate's own, and without one each request converts.
#[tokio::test]
async fn a_conversion_sent_twice_with_the_same_key_moves_the_amount_once() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100").await;
    assert_eq!(set_rate(&app, Some("1.25")).await, "1.25");
    assert_eq!(commission(&app, "acct-a").await["conversionRate"], "1.25");
    assert_eq!(program_rate(&app).await, "1.25");

    let first = convert(&app, "acct-a", "40.00", Some("k")).await;
    assert_eq!(first["duplicate"], false, "{first:#}");
    let conversion = first["conversion"].clone();
    assert_eq!(conversion["cash"], "40.00", "{first:#}");
    assert_eq!(conversion["credit"], "50.00", "{first:#}");
    assert_eq!(conversion["rate"], "1.25", "{first:#}");
    instant(&conversion["createdAt"]);
    let id = s(&conversion, "/id").to_owned();
    assert!(id.starts_with("cnv_"), "{first:#}");

    assert_balances(&app, "acct-a", "60.00", "50.00").await;
    assert_eq!(
        converted_entries(&app, "acct-a").await,
        [entry("CASH", "-40.00"), entry("CREDIT", "50.00")]
    );
    assert_eq!(app.count("commission_conversions").await, 1);
    let entries = audited(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["actor"], "customer:acct-a", "{entries:#?}");
    assert_eq!(entries[0]["target"], "account:acct-a", "{entries:#?}");
    let change = details(&entries[0]);
    let after = &change["after"];
    assert_eq!(after["cash"], "40.00", "{entries:#?}");
    assert_eq!(after["credit"], "50.00", "{entries:#?}");
    assert_eq!(after["rate"], "1.25", "{entries:#?}");
    app.assert_invariants().await;

    // The same key and amount, however written: the first conversion again, nothing moved.
    let before = written(&app).await;
    for amount in ["40.00", "40"] {
        let replay = convert(&app, "acct-a", amount, Some("k")).await;
        assert_eq!(replay["duplicate"], true, "{replay:#}");
        assert_same_conversion(&replay["conversion"], &conversion);
    }
    // The same key with another amount.
    assert_failed(
        &convert_raw(&app, "acct-a", "41.00", Some("k")).await,
        "IDEMPOTENCY_CONFLICT",
    );
    assert_eq!(written(&app).await, before, "replays and conflicts write nothing");
    assert_balances(&app, "acct-a", "60.00", "50.00").await;
    assert_eq!(app.count("commission_conversions").await, 1);
    assert_eq!(audited(&app).await.len(), 1);

    // Another affiliate's key of the same name is its own.
    funded_affiliate(&app, "acct-b", "100").await;
    let theirs = convert(&app, "acct-b", "40.00", Some("k")).await;
    assert_eq!(theirs["duplicate"], false, "{theirs:#}");
    assert_ne!(theirs["conversion"]["id"], id.as_str(), "{theirs:#}");
    assert_balances(&app, "acct-b", "60.00", "50.00").await;

    // Without a key, each request is a conversion of its own.
    for _ in 0..2 {
        let unkeyed = convert(&app, "acct-a", "10", None).await;
        assert_eq!(unkeyed["duplicate"], false, "{unkeyed:#}");
        assert_eq!(unkeyed["conversion"]["credit"], "12.50", "{unkeyed:#}");
    }
    assert_balances(&app, "acct-a", "40.00", "75.00").await;
    assert_balances(&app, "acct-b", "60.00", "50.00").await;
    assert_eq!(conversions_of(&app, "acct-a").await, 3);
    assert_eq!(conversions_of(&app, "acct-b").await, 1);
    assert_eq!(audited(&app).await.len(), 4);
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Rounding, refusals and the setting

/// Credit is the cash times the rate rounded down to the cent (33.33 at 0.333333 is 11.10;
/// 10.01 at 1.5 is 15.01), and a conversion keeps the rate it was made at. Refused, writing
/// nothing: an account that is not an approved affiliate, conversion off, an amount not above
/// 0, above what is available, or worth less than a cent of credit. The rate must be above 0
/// and at most 1000; null turns conversion off.
#[tokio::test]
async fn credit_is_rounded_down_to_the_cent_and_refused_conversions_write_nothing() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100").await;
    // A registered account, and an applicant not approved yet.
    app.register("acct-n", None, None).await;
    app.register("acct-p", None, None).await;
    let applied = app
        .run_ok(
            Some(&app.customer("acct-p")),
            "customer",
            "ApplyForAffiliate",
            json!({}),
        )
        .await;
    assert_eq!(applied["applyForAffiliate"]["status"], "APPLIED", "{applied:#}");

    // Conversion is off until an admin sets a rate.
    assert!(program_rate(&app).await.is_null());
    assert!(commission(&app, "acct-a").await["conversionRate"].is_null());
    let before = written(&app).await;
    assert_failed(&convert_raw(&app, "acct-a", "10", Some("off")).await, "BAD_USER_INPUT");
    assert_eq!(written(&app).await, before, "nothing written while conversion is off");

    assert_eq!(set_rate(&app, Some("0.333333")).await, "0.333333");
    assert_eq!(commission(&app, "acct-a").await["conversionRate"], "0.333333");

    let before = written(&app).await;
    for external_id in ["acct-n", "acct-p"] {
        assert_failed(
            &convert_raw(&app, external_id, "10", Some("not-yet")).await,
            "NOT_AN_AFFILIATE",
        );
    }
    for (amount, code) in [
        ("0", "BAD_USER_INPUT"),
        ("-5", "BAD_USER_INPUT"),
        ("-0.01", "BAD_USER_INPUT"),
        ("100.01", "INSUFFICIENT_BALANCE"),
        ("1000", "INSUFFICIENT_BALANCE"),
        // 0.03 × 0.333333 = 0.00999999: less than a cent of credit.
        ("0.03", "BAD_USER_INPUT"),
        ("0.01", "BAD_USER_INPUT"),
    ] {
        let key = format!("refused-{amount}");
        assert_failed(&convert_raw(&app, "acct-a", amount, Some(key.as_str())).await, code);
        assert_failed(&convert_raw(&app, "acct-a", amount, None).await, code);
    }
    assert_eq!(written(&app).await, before, "refused conversions write nothing");
    assert_eq!(app.count("commission_conversions").await, 0);
    assert!(audited(&app).await.is_empty());
    assert_balances(&app, "acct-a", "100.00", "0").await;

    // 33.33 × 0.333333 = 11.10998889: 11.10, never 11.11.
    let first = convert(&app, "acct-a", "33.33", Some("r-1")).await;
    assert_eq!(first["duplicate"], false, "{first:#}");
    assert_eq!(first["conversion"]["cash"], "33.33", "{first:#}");
    assert_eq!(first["conversion"]["credit"], "11.10", "{first:#}");
    assert_eq!(first["conversion"]["rate"], "0.333333", "{first:#}");
    assert_balances(&app, "acct-a", "66.67", "11.10").await;

    // 10.01 × 1.5 = 15.015: 15.01.
    assert_eq!(set_rate(&app, Some("1.5")).await, "1.50");
    let second = convert(&app, "acct-a", "10.01", Some("r-2")).await;
    assert_eq!(second["conversion"]["cash"], "10.01", "{second:#}");
    assert_eq!(second["conversion"]["credit"], "15.01", "{second:#}");
    assert_eq!(second["conversion"]["rate"], "1.50", "{second:#}");
    assert_balances(&app, "acct-a", "56.66", "26.11").await;
    // The first conversion keeps its rate and credit when answered again.
    let replay = convert(&app, "acct-a", "33.33", Some("r-1")).await;
    assert_eq!(replay["duplicate"], true, "{replay:#}");
    assert_same_conversion(&replay["conversion"], &first["conversion"]);
    assert_eq!(
        converted_entries(&app, "acct-a").await,
        [
            entry("CASH", "-10.01"),
            entry("CASH", "-33.33"),
            entry("CREDIT", "11.10"),
            entry("CREDIT", "15.01"),
        ]
    );
    assert_eq!(app.count("commission_conversions").await, 2);
    assert_eq!(audited(&app).await.len(), 2);
    // Now more than is available.
    assert_failed(
        &convert_raw(&app, "acct-a", "56.67", Some("r-3")).await,
        "INSUFFICIENT_BALANCE",
    );
    assert_eq!(app.count("commission_conversions").await, 2);
    app.assert_invariants().await;

    // The setting: above 0 and at most 1000, or null.
    for rate in ["0", "-1", "1000.01"] {
        assert_failed(&set_rate_raw(&app, json!(rate)).await, "BAD_USER_INPUT");
        assert_eq!(
            program_rate(&app).await,
            "1.50",
            "a refused rate {rate} changes nothing"
        );
    }
    assert_eq!(set_rate(&app, Some("1000")).await, "1000.00");
    assert_eq!(commission(&app, "acct-a").await["conversionRate"], "1000.00");
    assert!(set_rate(&app, None).await.is_null());
    assert!(program_rate(&app).await.is_null());
    assert!(commission(&app, "acct-a").await["conversionRate"].is_null());
    // Off again: refused, nothing written.
    let before = written(&app).await;
    assert_failed(&convert_raw(&app, "acct-a", "10", Some("r-4")).await, "BAD_USER_INPUT");
    assert_eq!(written(&app).await, before);
    assert_balances(&app, "acct-a", "56.66", "26.11").await;
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// Eight conversions of the whole 100.00 at once, each with its own key, sent to two instances
/// so that only the database can keep them apart: one conversion, the others
/// INSUFFICIENT_BALANCE. Then eight requests with one key, for an amount each could afford:
/// all answer the same conversion, and it moves the amount once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conversions_spend_the_cash_once_and_one_key_makes_one_conversion() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100").await;
    funded_affiliate(&app, "acct-b", "100").await;
    set_rate(&app, Some("1.25")).await;
    let instances = [app.address.clone(), another_instance(&app).await];
    let query = app.op("customer", "ConvertCommission");

    let vars = (0..8)
        .map(|i| convert_vars("100.00", Some(format!("race-{i}").as_str())))
        .collect();
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-a"), &query, vars).await;
    let (ok, refused) = split_answers(&bodies, "INSUFFICIENT_BALANCE");
    assert_eq!(ok.len(), 1, "exactly one conversion succeeds: {bodies:#?}");
    assert_eq!(refused, 7);
    let payload = &ok[0]["data"]["convertCommission"];
    assert_eq!(payload["duplicate"], false, "{payload:#}");
    assert_eq!(payload["conversion"]["cash"], "100.00", "{payload:#}");
    assert_eq!(payload["conversion"]["credit"], "125.00", "{payload:#}");
    assert_eq!(conversions_of(&app, "acct-a").await, 1);
    assert_eq!(audited(&app).await.len(), 1);
    assert_balances(&app, "acct-a", "0", "125.00").await;
    app.assert_invariants().await;

    // One key, eight requests at once: one conversion, answered to all.
    let vars = (0..8).map(|_| convert_vars("30.00", Some("same"))).collect();
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-b"), &query, vars).await;
    let payloads: Vec<Value> = bodies
        .iter()
        .map(|body| data_of(body, "a concurrent conversion with one key")["convertCommission"].clone())
        .collect();
    let id = s(&payloads[0], "/conversion/id").to_owned();
    for payload in &payloads {
        assert_eq!(payload["conversion"]["id"], id.as_str(), "{payloads:#?}");
        assert_eq!(payload["conversion"]["cash"], "30.00", "{payload:#}");
        assert_eq!(payload["conversion"]["credit"], "37.50", "{payload:#}");
    }
    let firsts = payloads.iter().filter(|p| p["duplicate"] == false).count();
    assert_eq!(
        firsts, 1,
        "one answer is the conversion, the others its duplicates: {payloads:#?}"
    );
    assert_eq!(conversions_of(&app, "acct-b").await, 1);
    assert_eq!(app.count("commission_conversions").await, 2);
    assert_eq!(audited(&app).await.len(), 2);
    assert_balances(&app, "acct-b", "70.00", "37.50").await;
    assert_balances(&app, "acct-a", "0", "125.00").await;
    app.assert_invariants().await;
}

/// A client that retries "convert everything" while its first request is still running must
/// get that conversion back, not INSUFFICIENT_BALANCE: eight requests with one key for the
/// whole 100.00 at once, on two instances, all answer the one conversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_converting_everything_all_answer_the_one_conversion() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100").await;
    set_rate(&app, Some("1.25")).await;
    let instances = [app.address.clone(), another_instance(&app).await];
    let query = app.op("customer", "ConvertCommission");

    let vars = (0..8).map(|_| convert_vars("100.00", Some("all-in"))).collect();
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-a"), &query, vars).await;
    let ids: Vec<&str> = bodies
        .iter()
        .map(|body| {
            let data = body["data"]["convertCommission"]["conversion"]["id"].as_str();
            data.unwrap_or_else(|| {
                panic!(
                    "a request with the key of a conversion being made must answer that conversion \
                     (the key must be looked at again once the account is locked, before the debit): \
                     {body:#}\nall answers: {bodies:#?}"
                )
            })
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one conversion: {bodies:#?}");
    let firsts = bodies
        .iter()
        .filter(|b| b["data"]["convertCommission"]["duplicate"] == false)
        .count();
    assert_eq!(firsts, 1, "{bodies:#?}");
    assert_eq!(app.count("commission_conversions").await, 1);
    assert_eq!(audited(&app).await.len(), 1);
    assert_balances(&app, "acct-a", "0", "125.00").await;

    // Retried later, with nothing left: still the first conversion.
    let replay = convert(&app, "acct-a", "100", Some("all-in")).await;
    assert_eq!(replay["duplicate"], true, "{replay:#}");
    assert_eq!(replay["conversion"]["id"], ids[0], "{replay:#}");
    assert_balances(&app, "acct-a", "0", "125.00").await;
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// The checker

/// A conversion whose cash, credit, rate or entries no longer agree would have given credit
/// the ledger never took cash for: `check` must say so.
#[tokio::test]
async fn check_finds_conversions_out_of_step_with_their_entries() {
    let app = spawn_app().await;
    funded_affiliate(&app, "acct-a", "100").await;
    set_rate(&app, Some("1.25")).await;
    convert(&app, "acct-a", "40", Some("k")).await;
    app.assert_invariants().await;

    breaks(
        &app,
        "UPDATE commission_conversions SET credit_amount = credit_amount + 10000",
        "UPDATE commission_conversions SET credit_amount = credit_amount - 10000",
        &[PAIRED],
    )
    .await;
    breaks(
        &app,
        "UPDATE commission_conversions SET cash_amount = cash_amount + 1",
        "UPDATE commission_conversions SET cash_amount = cash_amount - 1",
        &[PAIRED],
    )
    .await;
    // The entries agree with the row, but not with the rate it records.
    breaks(
        &app,
        "UPDATE commission_conversions SET rate = rate * 2",
        "UPDATE commission_conversions SET rate = rate / 2",
        &[PAIRED],
    )
    .await;
    // The credit side pointing at the cash debit: no CREDIT credit, and the real one owned by
    // no conversion.
    breaks(
        &app,
        "UPDATE commission_conversions SET credit_entry_id = cash_entry_id",
        "UPDATE commission_conversions SET credit_entry_id = (SELECT e.id FROM ledger_entries e \
         WHERE e.kind = 'COMMISSION_CONVERTED' AND e.unit = 'CREDIT')",
        &[PAIRED, OWNED],
    )
    .await;

    // The credit entry itself changed: its balance is out of step too, and the conversion check
    // must be among what is found.
    let db = &app.state.db;
    let tamper = "UPDATE ledger_entries SET amount = amount + 10000 \
                  WHERE kind = 'COMMISSION_CONVERTED' AND unit = 'CREDIT'";
    db.execute_unprepared(tamper).await.expect("tampering runs");
    let found = broken(&app).await;
    assert!(found.contains(&PAIRED), "after {tamper}: {found:#?}");
    assert!(!found.contains(&OWNED), "after {tamper}: {found:#?}");
    db.execute_unprepared(
        "UPDATE ledger_entries SET amount = amount - 10000 \
         WHERE kind = 'COMMISSION_CONVERTED' AND unit = 'CREDIT'",
    )
    .await
    .expect("undoing runs");
    assert!(broken(&app).await.is_empty());

    // Entries whose conversion is gone.
    db.execute_unprepared("DELETE FROM commission_conversions")
        .await
        .expect("tampering runs");
    assert_eq!(broken(&app).await, [OWNED]);
}
