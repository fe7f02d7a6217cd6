//! Payment fingerprints: one person is one customer and one referrer. A friend whose payment
//! method is its referrer's, or another friend's of the same referrer, is rejected
//! (DUPLICATE_FINGERPRINT) and what its referral paid is taken back; a second account with an
//! eligible referrer's fingerprint cannot earn as a referrer (DUPLICATE_REFERRER); and the
//! program may require a verified payment method before a code is shared or attributes
//! (`requireVerifiedPaymentForLink`).

use crate::helpers::*;
use serde_json::{Value, json};

/// The admin's view of an account: its accepted referral, its rejected ones, and why it cannot
/// earn as a referrer.
const ACCOUNT_QUERY: &str = "query($id: ID!) { account(id: $id) { externalId \
     referral { id status rejectionReason } \
     rejectedReferrals { id status rejectionReason } \
     referrerIneligibleReason } }";

/// RecordPaymentMethodVerified's variables, with a fingerprint when given.
fn verified_vars(event_id: &str, external_id: &str, fingerprint: Option<&str>) -> Value {
    let mut input = json!({ "eventId": event_id, "externalId": external_id });
    if let Some(fingerprint) = fingerprint {
        input["fingerprint"] = json!(fingerprint);
    }
    json!({ "input": input })
}

/// RecordPaymentMethodVerified with a fingerprint, as the billing system; the whole body.
async fn verify_raw(app: &TestApp, event_id: &str, external_id: &str, fingerprint: &str) -> Value {
    app.run(
        Some(&app.service()),
        "integration",
        "RecordPaymentMethodVerified",
        verified_vars(event_id, external_id, Some(fingerprint)),
    )
    .await
}

/// RecordPaymentMethodVerified with a fingerprint that must succeed; `recordPaymentMethodVerified`.
async fn verify(app: &TestApp, event_id: &str, external_id: &str, fingerprint: &str) -> Value {
    let body = verify_raw(app, event_id, external_id, fingerprint).await;
    data_of(
        &body,
        &format!("RecordPaymentMethodVerified {event_id} ({fingerprint})"),
    )["recordPaymentMethodVerified"]
        .clone()
}

/// The account as an admin reads it (see `ACCOUNT_QUERY`).
async fn admin_account(app: &TestApp, account_id: &str) -> Value {
    let body = app
        .gql(Some(&app.admin()), ACCOUNT_QUERY, json!({ "id": account_id }))
        .await;
    let account = data_of(&body, &format!("account {account_id}"))["account"].clone();
    assert!(account.is_object(), "no account {account_id}: {body:#}");
    account
}

/// The referral with this id, as an admin reads it on its referee: the accepted one, or one of
/// the rejected ones.
async fn referral(app: &TestApp, account_id: &str, referral_id: &str) -> Value {
    let account = admin_account(app, account_id).await;
    std::iter::once(&account["referral"])
        .chain(account["rejectedReferrals"].as_array().into_iter().flatten())
        .find(|r| r["id"] == referral_id)
        .cloned()
        .unwrap_or_else(|| panic!("no referral {referral_id} on {account_id}: {account:#}"))
}

/// The referral's (status, rejectionReason), the reason null when there is none.
async fn referral_state(app: &TestApp, account_id: &str, referral_id: &str) -> (String, Value) {
    let r = referral(app, account_id, referral_id).await;
    (s(&r, "/status").to_owned(), r["rejectionReason"].clone())
}

/// The account's `referrerIneligibleReason` (null: it can earn as a referrer).
async fn ineligible(app: &TestApp, account_id: &str) -> Value {
    admin_account(app, account_id).await["referrerIneligibleReason"].clone()
}

/// An entry of an event's `rewards` as `rewards_of` lists it: (externalId, kind, unit, amount,
/// status).
type Entry = (String, String, String, String, String);

/// A CREDIT entry of an event's `rewards`, as `rewards_of` lists it.
fn entry(external_id: &str, kind: &str, amount: &str, status: &str) -> Entry {
    (
        external_id.to_owned(),
        kind.to_owned(),
        "CREDIT".to_owned(),
        amount.to_owned(),
        status.to_owned(),
    )
}

fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort();
    entries
}

/// Every decision of the event is SKIPPED, and those of `rules` give `why` in their reason.
fn all_skipped(payload: &Value, rules: &[&String], why: &str) {
    let decisions = payload["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions in {payload:#}"));
    assert!(!decisions.is_empty(), "{payload:#}");
    for decision in decisions {
        assert_eq!(decision["outcome"], "SKIPPED", "{payload:#}");
    }
    for rule in rules {
        assert!(reason(payload, rule).contains(why), "{why} in the reason: {payload:#}");
    }
}

/// The customer's (available, pending) CREDIT.
async fn credit_now(app: &TestApp, external_id: &str) -> (String, String) {
    let (available, pending, _) = app.credit(external_id).await;
    (available, pending)
}

fn amounts(available: &str, pending: &str) -> (String, String) {
    (available.to_owned(), pending.to_owned())
}

/// GenerateReferralLink as the customer; the whole response body.
async fn generate_link(app: &TestApp, external_id: &str) -> Value {
    app.run(
        Some(&app.customer(external_id)),
        "customer",
        "GenerateReferralLink",
        json!({}),
    )
    .await
}

/// GenerateReferralLink must give the customer its own code.
async fn assert_link(app: &TestApp, external_id: &str, code: &str) {
    let body = generate_link(app, external_id).await;
    let data = data_of(&body, &format!("GenerateReferralLink as {external_id}"));
    assert_eq!(data["generateReferralLink"]["code"], code, "{data:#}");
    assert!(s(&data, "/generateReferralLink/url").contains(code), "{data:#}");
}

/// Whether the event's answer pays a positive reward to anyone.
fn pays(payload: &Value) -> bool {
    rewards_of(payload)
        .iter()
        .any(|(_, kind, _, amount, _)| kind == "REWARD" && !amount.starts_with('-'))
}

#[tokio::test]
async fn a_friend_with_its_referrers_fingerprint_is_rejected_and_its_sign_up_bonus_taken_back() {
    let app = spawn_app().await;
    app.create_rule_id(fixed_credit_rule("Sign-up", "SIGNUP", "REFEREE", "5"))
        .await;
    let (referrer_rule, referee_rule) = app.postpaid_rules("10", "10").await;
    let p = app.register("acct-p", Some("Pat Parker"), None).await;
    let p_id = s(&p, "/account/id").to_owned();
    let code = s(&p, "/account/referralCode").to_owned();
    let p_verified = verify(&app, "evt-pm-p", "acct-p", "fp-1").await;
    assert!(rewards_of(&p_verified).is_empty(), "P has no referrer: {p_verified:#}");

    let f = app.register("acct-f", Some("Fay Fox"), Some(&code)).await;
    assert_eq!(f["referral"]["status"], "PENDING", "{f:#}");
    let f_id = s(&f, "/account/id").to_owned();
    let referral_id = s(&f, "/referral/id").to_owned();
    assert_eq!(credit_now(&app, "acct-f").await, amounts("5.00", "0.00"));

    let verified = verify(&app, "evt-pm-f", "acct-f", "fp-1").await;
    assert_eq!(verified["event"]["duplicate"], false, "{verified:#}");
    assert_eq!(verified["event"]["kind"], "PAYMENT_METHOD_VERIFIED", "{verified:#}");
    // The sign-up bonus is reversed, and nothing is paid.
    assert_eq!(
        rewards_of(&verified),
        vec![entry("acct-f", "REVERSAL", "-5.00", "POSTED")],
        "{verified:#}"
    );
    assert!(!pays(&verified), "{verified:#}");
    all_skipped(&verified, &[&referrer_rule, &referee_rule], "DUPLICATE_FINGERPRINT");

    assert_eq!(
        referral_state(&app, &f_id, &referral_id).await,
        ("REJECTED".to_owned(), json!("DUPLICATE_FINGERPRINT"))
    );
    assert_eq!(credit_now(&app, "acct-f").await, amounts("0.00", "0.00"));
    assert_eq!(credit_now(&app, "acct-p").await, amounts("0.00", "0.00"));
    assert_eq!(app.ledger_sum("acct-f", "CREDIT").await, 0);
    assert_eq!(app.ledger_sum("acct-p", "CREDIT").await, 0);
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE amount = 10000000")
            .await,
        0,
        "no 10.00 paid to anyone"
    );
    // P verified with fp-1 first: it is its eligible referrer, not F.
    assert_eq!(ineligible(&app, &p_id).await, Value::Null);
    assert_eq!(ineligible(&app, &f_id).await, json!("DUPLICATE_REFERRER"));
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_second_friend_with_the_first_friends_fingerprint_is_rejected_and_the_first_keeps_its_rewards() {
    let app = spawn_app().await;
    let (referrer_rule, referee_rule) = app.postpaid_rules("10", "5").await;
    // Each friend's sign-up holds 2.00 for the referrer.
    let mut held = fixed_credit_rule("Held sign-up credit for the referrer", "SIGNUP", "REFERRER", "2");
    held["holdDays"] = json!(30);
    app.create_rule_id(held).await;
    let code = app.register_code("acct-p", Some("Pat Parker"), None).await;
    let b = app.register("acct-b", Some("Bob Brown"), Some(&code)).await;
    let c = app.register("acct-c", Some("Carol Clark"), Some(&code)).await;
    let (b_id, b_referral) = (s(&b, "/account/id").to_owned(), s(&b, "/referral/id").to_owned());
    let (c_id, c_referral) = (s(&c, "/account/id").to_owned(), s(&c, "/referral/id").to_owned());
    assert_eq!(credit_now(&app, "acct-p").await, amounts("0.00", "4.00"));

    let first = verify(&app, "evt-pm-b", "acct-b", "fp-x").await;
    assert_eq!(
        rewards_of(&first),
        sorted(vec![credit_reward("acct-p", "10.00"), credit_reward("acct-b", "5.00")]),
        "{first:#}"
    );
    assert_eq!(outcome(&first, &referrer_rule), "REWARDED", "{first:#}");
    assert_eq!(outcome(&first, &referee_rule), "REWARDED", "{first:#}");

    let second = verify(&app, "evt-pm-c", "acct-c", "fp-x").await;
    // C's sign-up credit held for P is voided; nothing is paid.
    assert_eq!(
        rewards_of(&second),
        vec![entry("acct-p", "REWARD", "2.00", "VOIDED")],
        "{second:#}"
    );
    all_skipped(&second, &[&referrer_rule, &referee_rule], "DUPLICATE_FINGERPRINT");
    assert_eq!(
        referral_state(&app, &c_id, &c_referral).await,
        ("REJECTED".to_owned(), json!("DUPLICATE_FINGERPRINT"))
    );

    // What B's referral earned stays: P's 10.00 and B's held 2.00, B's 5.00.
    let (b_status, b_reason) = referral_state(&app, &b_id, &b_referral).await;
    assert_eq!((b_status.as_str(), &b_reason), ("QUALIFIED", &Value::Null));
    assert_eq!(credit_now(&app, "acct-p").await, amounts("10.00", "2.00"));
    assert_eq!(credit_now(&app, "acct-b").await, amounts("5.00", "0.00"));
    assert_eq!(credit_now(&app, "acct-c").await, amounts("0.00", "0.00"));
    assert_eq!(ineligible(&app, &b_id).await, Value::Null);
    assert_eq!(ineligible(&app, &c_id).await, json!("DUPLICATE_REFERRER"));
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_second_account_with_an_eligible_referrers_fingerprint_cannot_earn_as_a_referrer() {
    let app = spawn_app().await;
    let (referrer_rule, referee_rule) = app.postpaid_rules("10", "5").await;
    let a = app.register("acct-a", Some("Alice Adams"), None).await;
    let (a_id, a_code) = (
        s(&a, "/account/id").to_owned(),
        s(&a, "/account/referralCode").to_owned(),
    );
    // Z was referred by R, and shares A's payment method.
    let r_code = app.register_code("acct-r", Some("Rob Reed"), None).await;
    let z = app.register("acct-z", Some("Zoe Zane"), Some(&r_code)).await;
    assert_eq!(z["referral"]["status"], "PENDING", "{z:#}");
    let (z_id, z_code) = (
        s(&z, "/account/id").to_owned(),
        s(&z, "/account/referralCode").to_owned(),
    );

    let a_verified = verify(&app, "evt-pm-a", "acct-a", "fp-a").await;
    assert!(rewards_of(&a_verified).is_empty(), "{a_verified:#}");
    assert_eq!(ineligible(&app, &a_id).await, Value::Null);

    // Z can still be referred: its own verification pays R and Z.
    let z_verified = verify(&app, "evt-pm-z", "acct-z", "fp-a").await;
    assert_eq!(
        rewards_of(&z_verified),
        sorted(vec![credit_reward("acct-r", "10.00"), credit_reward("acct-z", "5.00")]),
        "{z_verified:#}"
    );
    assert_eq!(ineligible(&app, &z_id).await, json!("DUPLICATE_REFERRER"));
    assert_eq!(ineligible(&app, &a_id).await, Value::Null);

    // The same account verifying the same fingerprint again changes nothing.
    verify(&app, "evt-pm-a-2", "acct-a", "fp-a").await;
    assert_eq!(ineligible(&app, &a_id).await, Value::Null);
    verify(&app, "evt-pm-z-2", "acct-z", "fp-a").await;
    assert_eq!(ineligible(&app, &z_id).await, json!("DUPLICATE_REFERRER"));

    // A friend of Z: its code still attributes; the friend is paid, Z is not.
    let zf = app.register("acct-zf", Some("Zed Friend"), Some(&z_code)).await;
    assert_eq!(zf["referral"]["status"], "PENDING", "{zf:#}");
    let zf_verified = verify(&app, "evt-pm-zf", "acct-zf", "fp-f").await;
    assert_eq!(
        rewards_of(&zf_verified),
        vec![credit_reward("acct-zf", "5.00")],
        "{zf_verified:#}"
    );
    assert_eq!(outcome(&zf_verified, &referee_rule), "REWARDED", "{zf_verified:#}");
    assert_eq!(outcome(&zf_verified, &referrer_rule), "SKIPPED", "{zf_verified:#}");
    assert!(
        reason(&zf_verified, &referrer_rule).contains("DUPLICATE_REFERRER"),
        "{zf_verified:#}"
    );

    // A friend of A pays A.
    app.register("acct-af", Some("Amy Friend"), Some(&a_code)).await;
    let af_verified = verify(&app, "evt-pm-af", "acct-af", "fp-g").await;
    assert_eq!(
        rewards_of(&af_verified),
        sorted(vec![credit_reward("acct-a", "10.00"), credit_reward("acct-af", "5.00")]),
        "{af_verified:#}"
    );

    assert_eq!(app.available_credit("acct-a").await, "10.00");
    assert_eq!(app.available_credit("acct-z").await, "5.00");
    assert_eq!(app.available_credit("acct-r").await, "10.00");
    assert_eq!(app.available_credit("acct-zf").await, "5.00");
    assert_eq!(app.ledger_sum("acct-z", "CREDIT").await, 5_000_000);
    app.assert_invariants().await;
}

#[tokio::test]
async fn require_verified_payment_for_link_withholds_the_link_and_the_code_of_unverified_accounts() {
    let app = spawn_app().await;
    app.postpaid_rules("10", "5").await;
    let a_code = app.register_code("acct-a", Some("Alice Adams"), None).await;

    // Off by default: an unverified account shares its link, and its code attributes.
    assert_eq!(app.settings().await["requireVerifiedPaymentForLink"], false);
    assert_link(&app, "acct-a", &a_code).await;
    let d = app.register("acct-d", Some("Dan Dale"), Some(&a_code)).await;
    assert_eq!(d["referral"]["status"], "PENDING", "{d:#}");

    // On: no link before a payment method is verified, and the code does not attribute.
    let settings = app
        .update_settings(json!({ "requireVerifiedPaymentForLink": true }))
        .await;
    assert_eq!(settings["requireVerifiedPaymentForLink"], true, "{settings:#}");
    assert_eq!(app.settings().await["requireVerifiedPaymentForLink"], true);
    assert_failed(&generate_link(&app, "acct-a").await, "FORBIDDEN");
    let b = app.register("acct-b", Some("Bob Brown"), Some(&a_code)).await;
    assert_eq!(b["account"]["externalId"], "acct-b", "registered all the same: {b:#}");
    assert_eq!(b["referral"]["status"], "REJECTED", "{b:#}");
    assert_eq!(b["referral"]["rejectionReason"], "REFERRER_UNVERIFIED", "{b:#}");
    // B is nobody's referee: its verification pays no one.
    let b_verified = app.verify_payment("evt-pm-b", "acct-b").await;
    assert!(rewards_of(&b_verified).is_empty(), "{b_verified:#}");

    // Once A has verified, its link is given and its code attributes.
    app.verify_payment("evt-pm-a", "acct-a").await;
    assert_link(&app, "acct-a", &a_code).await;
    let c = app.register("acct-c", Some("Carol Clark"), Some(&a_code)).await;
    assert_eq!(c["referral"]["status"], "PENDING", "{c:#}");
    assert!(c["referral"]["rejectionReason"].is_null(), "{c:#}");
    let c_verified = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(
        rewards_of(&c_verified),
        sorted(vec![credit_reward("acct-a", "10.00"), credit_reward("acct-c", "5.00")]),
        "{c_verified:#}"
    );

    // Off again: an unverified account's link and code work.
    let e_code = app.register_code("acct-e", Some("Eve East"), None).await;
    assert_failed(&generate_link(&app, "acct-e").await, "FORBIDDEN");
    app.update_settings(json!({ "requireVerifiedPaymentForLink": false }))
        .await;
    assert_link(&app, "acct-e", &e_code).await;
    let g = app.register("acct-g", Some("Gus Gray"), Some(&e_code)).await;
    assert_eq!(g["referral"]["status"], "PENDING", "{g:#}");
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_fingerprint_is_checked_and_part_of_the_events_input() {
    let app = spawn_app().await;
    app.register("acct-a", Some("Alice Adams"), None).await;
    let c = app.register("acct-c", Some("Carol Clark"), None).await;
    let c_id = s(&c, "/account/id").to_owned();

    // Blank or longer than 200 characters: refused, nothing written.
    let before = app.snapshot().await;
    for bad in [String::new(), "   ".to_owned(), "x".repeat(201)] {
        let body = verify_raw(&app, "evt-bad", "acct-a", &bad).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(
            app.snapshot().await,
            before,
            "a refused fingerprint ({bad:?}) writes nothing"
        );
    }
    // 200 characters are taken.
    let longest = verify(&app, "evt-long", "acct-c", &"y".repeat(200)).await;
    assert_eq!(longest["event"]["duplicate"], false, "{longest:#}");

    let first = verify(&app, "evt-1", "acct-a", "fp-1").await;
    assert_eq!(first["event"]["duplicate"], false, "{first:#}");
    let settled = app.snapshot().await;
    // The same eventId and fingerprint: answered again, nothing changes.
    let again = verify(&app, "evt-1", "acct-a", "fp-1").await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    assert_eq!(again["event"]["id"], first["event"]["id"], "{again:#}");
    assert_eq!(again["rewards"], first["rewards"], "{again:#}");
    assert_eq!(app.snapshot().await, settled);
    // The same eventId with another fingerprint, or without one: a conflict.
    assert_failed(
        &verify_raw(&app, "evt-1", "acct-a", "fp-2").await,
        "IDEMPOTENCY_CONFLICT",
    );
    assert_eq!(app.snapshot().await, settled);
    assert_failed(&app.verify_payment_raw("evt-1", "acct-a").await, "IDEMPOTENCY_CONFLICT");
    assert_eq!(app.snapshot().await, settled);
    // The conflicting fingerprint was not taken: the first to verify with it is its eligible
    // referrer.
    verify(&app, "evt-c", "acct-c", "fp-2").await;
    assert_eq!(ineligible(&app, &c_id).await, Value::Null);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_friends_of_one_referrer_verifying_one_fingerprint_at_once_leave_one_referral() {
    let app = spawn_app().await;
    app.postpaid_rules("10", "5").await;
    let code = app.register_code("acct-p", Some("Pat Parker"), None).await;
    let mut friends = Vec::new();
    for i in 0..10 {
        let external_id = format!("acct-f{i}");
        let f = app.register(&external_id, None, Some(&code)).await;
        assert_eq!(f["referral"]["status"], "PENDING", "{f:#}");
        friends.push((
            external_id,
            s(&f, "/account/id").to_owned(),
            s(&f, "/referral/id").to_owned(),
        ));
    }

    let query = app.op("integration", "RecordPaymentMethodVerified");
    let vars = friends
        .iter()
        .enumerate()
        .map(|(i, (external_id, _, _))| verified_vars(&format!("evt-pm-{i}"), external_id, Some("fp-same")))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    let answers: Vec<Value> = bodies
        .iter()
        .map(|b| data_of(b, "RecordPaymentMethodVerified")["recordPaymentMethodVerified"].clone())
        .collect();
    let paid: Vec<&Value> = answers.iter().filter(|a| pays(a)).collect();
    assert_eq!(paid.len(), 1, "exactly one verification pays: {answers:#?}");
    let winner = paid[0]["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|r| s(r, "/account/externalId").to_owned())
        .find(|id| id != "acct-p")
        .unwrap_or_else(|| panic!("the friend is paid: {:#}", paid[0]));
    assert_eq!(
        rewards_of(paid[0]),
        sorted(vec![credit_reward("acct-p", "10.00"), credit_reward(&winner, "5.00")]),
        "{:#}",
        paid[0]
    );
    for answer in answers.iter().filter(|a| !pays(a)) {
        assert_eq!(answer["event"]["duplicate"], false, "{answer:#}");
        assert!(
            rewards_of(answer).is_empty(),
            "nothing was paid to take back: {answer:#}"
        );
        for decision in answer["decisions"].as_array().expect("decisions") {
            assert_eq!(decision["outcome"], "SKIPPED", "{answer:#}");
        }
    }

    let mut accepted = Vec::new();
    let mut rejected = 0;
    for (external_id, account_id, referral_id) in &friends {
        match referral_state(&app, account_id, referral_id).await {
            (status, reason) if status == "PENDING" || status == "QUALIFIED" => {
                assert_eq!(reason, Value::Null);
                accepted.push(external_id.clone());
            }
            (status, reason) => {
                assert_eq!(
                    (status.as_str(), reason),
                    ("REJECTED", json!("DUPLICATE_FINGERPRINT")),
                    "{external_id}"
                );
                rejected += 1;
            }
        }
    }
    assert_eq!(accepted, vec![winner.clone()], "the paid friend's referral stands");
    assert_eq!(rejected, 9);
    assert_eq!(app.ledger_sum("acct-p", "CREDIT").await, 10_000_000);
    assert_eq!(app.available_credit("acct-p").await, "10.00");
    assert_eq!(app.ledger_sum(&winner, "CREDIT").await, 5_000_000);

    // One of the ten is the fingerprint's eligible referrer.
    let mut eligible = 0;
    for (_, account_id, _) in &friends {
        match ineligible(&app, account_id).await {
            Value::Null => eligible += 1,
            reason => assert_eq!(reason, "DUPLICATE_REFERRER"),
        }
    }
    assert_eq!(eligible, 1);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_accounts_verifying_one_fingerprint_at_once_make_one_eligible_referrer() {
    let app = spawn_app().await;
    let (referrer_rule, _) = app.postpaid_rules("10", "5").await;
    let mut accounts = Vec::new();
    for i in 0..10 {
        let external_id = format!("acct-u{i}");
        let u = app.register(&external_id, None, None).await;
        accounts.push((
            external_id,
            s(&u, "/account/id").to_owned(),
            s(&u, "/account/referralCode").to_owned(),
        ));
    }

    let query = app.op("integration", "RecordPaymentMethodVerified");
    let vars = accounts
        .iter()
        .enumerate()
        .map(|(i, (external_id, _, _))| verified_vars(&format!("evt-pm-{i}"), external_id, Some("fp-one")))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;
    for body in &bodies {
        let answer = &data_of(body, "RecordPaymentMethodVerified")["recordPaymentMethodVerified"];
        assert_eq!(answer["event"]["duplicate"], false, "{answer:#}");
        assert!(rewards_of(answer).is_empty(), "{answer:#}");
    }

    let mut eligible = Vec::new();
    let mut duplicates = Vec::new();
    for (external_id, account_id, code) in &accounts {
        match ineligible(&app, account_id).await {
            Value::Null => eligible.push((external_id.clone(), code.clone())),
            reason => {
                assert_eq!(reason, "DUPLICATE_REFERRER", "{external_id}");
                duplicates.push((external_id.clone(), code.clone()));
            }
        }
    }
    assert_eq!(eligible.len(), 1, "{eligible:?}");
    assert_eq!(duplicates.len(), 9, "{duplicates:?}");

    // The eligible one earns as a referrer; another does not.
    let (eligible_id, eligible_code) = &eligible[0];
    app.register("acct-e-friend", None, Some(eligible_code)).await;
    let paid = verify(&app, "evt-pm-ef", "acct-e-friend", "fp-e1").await;
    assert_eq!(
        rewards_of(&paid),
        sorted(vec![
            credit_reward(eligible_id, "10.00"),
            credit_reward("acct-e-friend", "5.00")
        ]),
        "{paid:#}"
    );
    let (duplicate_id, duplicate_code) = &duplicates[0];
    app.register("acct-d-friend", None, Some(duplicate_code)).await;
    let unpaid = verify(&app, "evt-pm-df", "acct-d-friend", "fp-e2").await;
    assert_eq!(
        rewards_of(&unpaid),
        vec![credit_reward("acct-d-friend", "5.00")],
        "{unpaid:#}"
    );
    assert!(
        reason(&unpaid, &referrer_rule).contains("DUPLICATE_REFERRER"),
        "{unpaid:#}"
    );
    assert_eq!(app.available_credit(duplicate_id).await, "0.00");
    app.assert_invariants().await;
}

/// What the fraud checks decided is the staff's to see: a customer asking for it on its own
/// account is refused.
#[tokio::test]
async fn a_customer_cannot_read_the_fraud_decisions_on_its_own_account() {
    let app = spawn_app().await;
    app.register("acct-a", Some("Alice Adams"), None).await;
    for field in ["referrerIneligibleReason", "rejectedReferrals { id }"] {
        let body = app
            .gql(
                Some(&app.customer("acct-a")),
                &format!("query {{ me {{ id {field} }} }}"),
                json!({}),
            )
            .await;
        assert_error_code(&body, "FORBIDDEN");
    }
}
