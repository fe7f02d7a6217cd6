//! Program 1, cloud credit (two-sided): a newcomer who signed up with a code and the code's
//! owner each get a fixed credit once the newcomer qualifies: a postpaid account when its
//! payment method is verified, a prepaid one when its own successful top-ups reach a threshold.

use crate::helpers::*;
use serde_json::{Value, json};

/// The referrer's and the newcomer's credit in these tests: different, to tell them apart.
const REFERRER_CREDIT: &str = "10.00";
const NEWCOMER_CREDIT: &str = "5.00";

/// A (Alice Adams) refers B (Bob Brown) with the given billing scheme. Returns A's code.
async fn alice_refers_bob(app: &TestApp, scheme: &str) -> String {
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let b = app.register_scheme("acct-b", "Bob Brown", Some(&a), scheme).await;
    assert_eq!(b["referral"]["status"], "PENDING", "{b:#}");
    a
}

/// The referral of one friend as the referrer's dashboard shows it.
async fn friend(app: &TestApp, referrer: &str, masked_name: &str) -> Value {
    let friends = app.friends(referrer).await;
    friends
        .iter()
        .find(|f| f["referee"]["displayName"] == masked_name)
        .cloned()
        .unwrap_or_else(|| panic!("{masked_name} is not a friend of {referrer}: {friends:#?}"))
}

fn both_paid(referrer: &str, newcomer: &str) -> Vec<(String, String, String, String, String)> {
    let mut expected = vec![
        credit_reward(referrer, REFERRER_CREDIT),
        credit_reward(newcomer, NEWCOMER_CREDIT),
    ];
    expected.sort();
    expected
}

/// The top-up total a reason shows against a threshold of 10.00: "… 7.00 of 10.00" → "7.00".
fn progress(reason: &str) -> Option<String> {
    let end = reason.find(" of 10.00")?;
    let before = &reason[..end];
    let start = before
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    Some(before[start..].to_owned())
}

#[tokio::test]
async fn a_postpaid_newcomer_qualifies_when_its_payment_method_is_verified() {
    let app = spawn_app().await;
    let (referrer_rule, newcomer_rule) = app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    let seeded_id = s(&app.seeded_rule().await, "/id").to_owned();
    alice_refers_bob(&app, "POSTPAID").await;
    let pending = friend(&app, "acct-a", "Bo*** B.").await;
    assert_eq!(pending["status"], "PENDING", "{pending:#}");
    assert!(pending["qualifiedAt"].is_null(), "{pending:#}");

    let paid = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(paid["event"]["eventId"], "evt-pm-b", "{paid:#}");
    assert_eq!(paid["event"]["kind"], "PAYMENT_METHOD_VERIFIED", "{paid:#}");
    assert_eq!(paid["event"]["duplicate"], false, "{paid:#}");
    assert!(paid["event"]["occurredAt"].is_string(), "{paid:#}");
    assert_eq!(rewards_of(&paid), both_paid("acct-a", "acct-b"), "{paid:#}");
    // Every enabled rule is decided: the two of program 1 pay, program 3's is skipped.
    let mut all_rules = vec![referrer_rule.clone(), newcomer_rule.clone(), seeded_id.clone()];
    all_rules.sort();
    assert_eq!(decided_rule_ids(&paid), all_rules, "{paid:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&paid, rule);
        assert_eq!(decision["outcome"], "REWARDED", "{paid:#}");
        assert!(!s(decision, "/reason").is_empty(), "{paid:#}");
        assert!(!s(decision, "/rule/name").is_empty(), "{paid:#}");
    }
    let skipped = decision_for(&paid, &seeded_id);
    assert_eq!(skipped["outcome"], "SKIPPED", "{paid:#}");
    assert!(!s(skipped, "/reason").is_empty(), "{paid:#}");

    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(
        app.credit("acct-b").await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );
    assert_eq!(app.available_points("acct-a").await, "0.00");
    let qualified = friend(&app, "acct-a", "Bo*** B.").await;
    assert_eq!(qualified["status"], "QUALIFIED", "{qualified:#}");
    assert!(
        instant(&qualified["qualifiedAt"]) >= instant(&qualified["createdAt"]),
        "{qualified:#}"
    );
    assert_eq!(
        qualified["earned"],
        json!([{ "unit": "CREDIT", "amount": "10.00" }]),
        "{qualified:#}"
    );

    // Verified again (another card, say): nothing more, and the decisions say why.
    let again = app.verify_payment("evt-pm-b-2", "acct-b").await;
    assert_eq!(again["event"]["duplicate"], false, "{again:#}");
    assert_eq!(again["rewards"], json!([]), "{again:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&again, rule);
        assert_eq!(decision["outcome"], "SKIPPED", "{again:#}");
        assert!(s(decision, "/reason").to_lowercase().contains("already"), "{again:#}");
    }
    let still = friend(&app, "acct-a", "Bo*** B.").await;
    assert_eq!(still["qualifiedAt"], qualified["qualifiedAt"], "{still:#}");

    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.balance_available("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.count("ledger_entries").await, 2);
    assert_eq!(app.count("events").await, 2);
}

#[tokio::test]
async fn each_billing_scheme_qualifies_only_through_its_own_event() {
    let app = spawn_app().await;
    let (pm_referrer, pm_newcomer) = app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    let (tu_referrer, tu_newcomer) = app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    // B is postpaid because nothing else was said; C is prepaid.
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    app.register_scheme("acct-c", "Carol Clark", Some(&a), "PREPAID").await;

    // Top-ups of a postpaid account qualify nothing.
    let b_top_up = app.top_up("evt-tu-b", "acct-b", "50.00", None).await;
    assert_eq!(b_top_up["event"]["kind"], "TOP_UP", "{b_top_up:#}");
    assert_eq!(b_top_up["rewards"], json!([]), "{b_top_up:#}");
    for rule in [&pm_referrer, &pm_newcomer, &tu_referrer, &tu_newcomer] {
        assert_eq!(decision_for(&b_top_up, rule)["outcome"], "SKIPPED", "{b_top_up:#}");
    }
    // A verified payment method of a prepaid account qualifies nothing.
    let c_verified = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(c_verified["rewards"], json!([]), "{c_verified:#}");
    for rule in [&pm_referrer, &pm_newcomer, &tu_referrer, &tu_newcomer] {
        assert_eq!(decision_for(&c_verified, rule)["outcome"], "SKIPPED", "{c_verified:#}");
    }
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "PENDING");
    assert_eq!(friend(&app, "acct-a", "Ca*** C.").await["status"], "PENDING");
    assert_eq!(app.available_credit("acct-a").await, "0.00");

    // Each through its own event.
    let b = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(rewards_of(&b), both_paid("acct-a", "acct-b"), "{b:#}");
    assert_eq!(decision_for(&b, &pm_referrer)["outcome"], "REWARDED", "{b:#}");
    assert_eq!(decision_for(&b, &tu_referrer)["outcome"], "SKIPPED", "{b:#}");
    let c = app.top_up("evt-tu-c", "acct-c", "10.00", None).await;
    assert_eq!(rewards_of(&c), both_paid("acct-a", "acct-c"), "{c:#}");
    assert_eq!(decision_for(&c, &tu_referrer)["outcome"], "REWARDED", "{c:#}");
    assert_eq!(decision_for(&c, &tu_newcomer)["outcome"], "REWARDED", "{c:#}");
    assert_eq!(decision_for(&c, &pm_referrer)["outcome"], "SKIPPED", "{c:#}");

    assert_eq!(
        app.credit("acct-a").await,
        ("20.00".into(), "0.00".into(), "20.00".into())
    );
    assert_eq!(app.available_credit("acct-b").await, "5.00");
    assert_eq!(app.available_credit("acct-c").await, "5.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 20_000_000);
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "QUALIFIED");
    assert_eq!(friend(&app, "acct-a", "Ca*** C.").await["status"], "QUALIFIED");
}

#[tokio::test]
async fn a_prepaid_newcomer_qualifies_when_its_top_ups_reach_the_threshold() {
    let app = spawn_app().await;
    let (referrer_rule, newcomer_rule) = app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "PREPAID").await;

    // 3.00 of 10.00: not yet.
    let first = app.top_up("evt-tu-1", "acct-b", "3", None).await;
    assert_eq!(first["event"]["kind"], "TOP_UP", "{first:#}");
    assert_eq!(first["event"]["duplicate"], false, "{first:#}");
    assert_eq!(first["rewards"], json!([]), "{first:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&first, rule);
        assert_eq!(decision["outcome"], "SKIPPED", "{first:#}");
        assert!(
            s(decision, "/reason").contains("3.00 of 10.00"),
            "the reason shows the progress: {first:#}"
        );
    }
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "PENDING");
    assert_eq!(app.available_credit("acct-a").await, "0.00");
    assert_eq!(app.available_credit("acct-b").await, "0.00");

    // 3 + 7 = 10: qualified on the second top-up.
    let second = app.top_up("evt-tu-2", "acct-b", "7.00", None).await;
    assert_eq!(rewards_of(&second), both_paid("acct-a", "acct-b"), "{second:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        assert_eq!(decision_for(&second, rule)["outcome"], "REWARDED", "{second:#}");
    }
    let qualified = friend(&app, "acct-a", "Bo*** B.").await;
    assert_eq!(qualified["status"], "QUALIFIED", "{qualified:#}");
    assert!(qualified["qualifiedAt"].is_string(), "{qualified:#}");

    // Later top-ups pay nothing more.
    let third = app.top_up("evt-tu-3", "acct-b", "20", None).await;
    assert_eq!(third["rewards"], json!([]), "{third:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&third, rule);
        assert_eq!(decision["outcome"], "SKIPPED", "{third:#}");
        assert!(s(decision, "/reason").to_lowercase().contains("already"), "{third:#}");
    }

    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(
        app.credit("acct-b").await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.count("ledger_entries").await, 2);
}

#[tokio::test]
async fn with_threshold_zero_any_successful_top_up_qualifies() {
    let app = spawn_app().await;
    let (referrer_rule, newcomer_rule) = app.prepaid_rules("0", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "PREPAID").await;

    // A failed top-up is not a top-up.
    let failed = app.top_up("evt-tu-1", "acct-b", "25", Some(false)).await;
    assert_eq!(failed["event"]["kind"], "TOP_UP", "{failed:#}");
    assert_eq!(failed["rewards"], json!([]), "{failed:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        assert_eq!(decision_for(&failed, rule)["outcome"], "SKIPPED", "{failed:#}");
    }
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "PENDING");

    // The smallest successful one is.
    let small = app.top_up("evt-tu-2", "acct-b", "0.01", None).await;
    assert_eq!(rewards_of(&small), both_paid("acct-a", "acct-b"), "{small:#}");
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "QUALIFIED");
    let more = app.top_up("evt-tu-3", "acct-b", "100", Some(true)).await;
    assert_eq!(more["rewards"], json!([]), "{more:#}");
    assert_eq!(app.available_credit("acct-a").await, "10.00");
    assert_eq!(app.available_credit("acct-b").await, "5.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
}

#[tokio::test]
async fn only_the_newcomers_own_successful_top_ups_count() {
    let app = spawn_app().await;
    let (referrer_rule, newcomer_rule) = app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register_scheme("acct-b", "Bob Brown", Some(&a), "PREPAID").await;
    app.register_scheme("acct-c", "Carol Clark", Some(&a), "PREPAID").await;
    app.register_scheme("acct-lone", "Lone Wolf", None, "PREPAID").await;

    // C's, A's and a stranger's top-ups do not count for B.
    let c = app.top_up("evt-tu-c", "acct-c", "10", None).await;
    assert_eq!(rewards_of(&c), both_paid("acct-a", "acct-c"), "{c:#}");
    let own = app.top_up("evt-tu-a", "acct-a", "100", None).await;
    assert_eq!(own["rewards"], json!([]), "{own:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&own, rule);
        assert_eq!(decision["outcome"], "SKIPPED", "{own:#}");
        assert!(s(decision, "/reason").contains("no referrer"), "{own:#}");
    }
    let lone = app.top_up("evt-tu-lone", "acct-lone", "100", None).await;
    assert_eq!(lone["rewards"], json!([]), "{lone:#}");
    assert!(
        s(decision_for(&lone, &referrer_rule), "/reason").contains("no referrer"),
        "{lone:#}"
    );

    // B's unsuccessful top-ups do not count either: 9.99 of its own successful ones.
    let failed = app.top_up("evt-tu-b-1", "acct-b", "50", Some(false)).await;
    assert_eq!(failed["rewards"], json!([]), "{failed:#}");
    let short = app.top_up("evt-tu-b-2", "acct-b", "9.99", Some(true)).await;
    assert_eq!(short["rewards"], json!([]), "{short:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&short, rule);
        assert_eq!(decision["outcome"], "SKIPPED", "{short:#}");
        assert!(s(decision, "/reason").contains("9.99 of 10.00"), "{short:#}");
    }
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "PENDING");
    assert_eq!(app.available_credit("acct-b").await, "0.00");

    let enough = app.top_up("evt-tu-b-3", "acct-b", "0.01", None).await;
    assert_eq!(rewards_of(&enough), both_paid("acct-a", "acct-b"), "{enough:#}");
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "QUALIFIED");

    assert_eq!(
        app.credit("acct-a").await,
        ("20.00".into(), "0.00".into(), "20.00".into())
    );
    for ext in ["acct-b", "acct-c"] {
        assert_eq!(app.available_credit(ext).await, "5.00", "{ext}");
        assert_eq!(app.ledger_sum(ext, "CREDIT").await, 5_000_000, "{ext}");
    }
    assert_eq!(app.available_credit("acct-lone").await, "0.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 20_000_000);
}

#[tokio::test]
async fn a_replayed_qualifying_event_pays_nothing_more() {
    let app = spawn_app().await;
    app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    let a = alice_refers_bob(&app, "POSTPAID").await;
    app.register_scheme("acct-c", "Carol Clark", Some(&a), "PREPAID").await;

    let verified = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(rewards_of(&verified), both_paid("acct-a", "acct-b"), "{verified:#}");
    app.top_up("evt-tu-c-1", "acct-c", "4", None).await;
    let topped = app.top_up("evt-tu-c-2", "acct-c", "6", None).await;
    assert_eq!(rewards_of(&topped), both_paid("acct-a", "acct-c"), "{topped:#}");
    let before = app.snapshot().await;

    for _ in 0..2 {
        let again = app.verify_payment("evt-pm-b", "acct-b").await;
        assert_eq!(again["event"]["duplicate"], true, "{again:#}");
        assert_eq!(again["event"]["id"], verified["event"]["id"], "{again:#}");
        assert_eq!(again["rewards"], verified["rewards"], "{again:#}");
        assert_eq!(again["decisions"], verified["decisions"], "{again:#}");
        // "6" and "6.00" are the same amount.
        for amount in ["6", "6.00"] {
            let again = app.top_up("evt-tu-c-2", "acct-c", amount, Some(true)).await;
            assert_eq!(again["event"]["duplicate"], true, "{again:#}");
            assert_eq!(again["event"]["id"], topped["event"]["id"], "{again:#}");
            assert_eq!(again["rewards"], topped["rewards"], "{again:#}");
            assert_eq!(again["decisions"], topped["decisions"], "{again:#}");
        }
        assert_eq!(app.snapshot().await, before, "a replay changes nothing");
    }

    // The same eventId with other input is a conflict, and changes nothing.
    for body in [
        app.verify_payment_raw("evt-pm-b", "acct-c").await,
        app.top_up_raw("evt-tu-c-2", "acct-c", "7", None).await,
        app.top_up_raw("evt-tu-c-2", "acct-c", "6", Some(false)).await,
        app.top_up_raw("evt-tu-c-2", "acct-b", "6", None).await,
        // An eventId is one fact, whatever its kind.
        app.top_up_raw("evt-pm-b", "acct-b", "6", None).await,
    ] {
        assert_failed(&body, "IDEMPOTENCY_CONFLICT");
        assert_eq!(app.snapshot().await, before);
    }

    assert_eq!(
        app.credit("acct-a").await,
        ("20.00".into(), "0.00".into(), "20.00".into())
    );
    assert_eq!(app.available_credit("acct-b").await, "5.00");
    assert_eq!(app.available_credit("acct-c").await, "5.00");
    assert_eq!(app.count("events").await, 3);
}

#[tokio::test]
async fn a_switched_off_program_qualifies_nobody_until_it_is_on_again() {
    let app = spawn_app().await;
    let (referrer_rule, newcomer_rule) = app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "POSTPAID").await;

    app.set_enabled(false).await;
    let off = app.verify_payment("evt-pm-b-1", "acct-b").await;
    assert_eq!(off["rewards"], json!([]), "{off:#}");
    for rule in [&referrer_rule, &newcomer_rule] {
        let decision = decision_for(&off, rule);
        assert_eq!(decision["outcome"], "SKIPPED", "{off:#}");
        assert!(s(decision, "/reason").contains("program is off"), "{off:#}");
    }
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "PENDING");
    assert_eq!(app.available_credit("acct-a").await, "0.00");
    assert_eq!(app.available_credit("acct-b").await, "0.00");

    app.set_enabled(true).await;
    let on = app.verify_payment("evt-pm-b-2", "acct-b").await;
    assert_eq!(rewards_of(&on), both_paid("acct-a", "acct-b"), "{on:#}");
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "QUALIFIED");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
}

#[tokio::test]
async fn the_history_names_the_referral_action_and_the_masked_friend() {
    let app = spawn_app().await;
    app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    let a = alice_refers_bob(&app, "POSTPAID").await;
    app.register_with(json!({
        "externalId": "acct-c",
        "displayName": "Carol Clark",
        "email": "carol@example.com",
        "referralCode": a,
        "billingScheme": "PREPAID",
    }))
    .await;
    app.verify_payment("evt-pm-b", "acct-b").await;
    app.top_up("evt-tu-c", "acct-c", "12.50", None).await;

    // A's history: newest first, C's top-up, then B's verified payment method.
    let history = app.history("acct-a").await;
    assert_eq!(history.len(), 2, "{history:#?}");
    for entry in &history {
        assert_eq!(entry["kind"], "REWARD", "{entry:#}");
        assert_eq!(entry["unit"], "CREDIT", "{entry:#}");
        assert_eq!(entry["amount"], "10.00", "{entry:#}");
        assert_eq!(entry["status"], "POSTED", "{entry:#}");
    }
    let top_up = s(&history[0], "/description");
    assert!(top_up.contains("Ca*** C."), "the masked friend: {top_up}");
    assert!(top_up.to_lowercase().contains("top"), "the action: {top_up}");
    let verified = s(&history[1], "/description");
    assert!(verified.contains("Bo*** B."), "the masked friend: {verified}");
    assert!(
        verified.to_lowercase().contains("payment method"),
        "the action: {verified}"
    );

    // The newcomers' histories name the action and the friend who referred them.
    for (ext, action) in [("acct-b", "payment method"), ("acct-c", "top")] {
        let history = app.history(ext).await;
        assert_eq!(history.len(), 1, "{history:#?}");
        assert_eq!(history[0]["amount"], "5.00", "{history:#?}");
        let description = s(&history[0], "/description");
        assert!(description.contains("Al*** A."), "{ext}: {description}");
        assert!(description.to_lowercase().contains(action), "{ext}: {description}");
    }

    // No full name or email of anyone appears in a customer's history.
    for ext in ["acct-a", "acct-b", "acct-c"] {
        let text = serde_json::to_string(&app.history(ext).await).expect("json");
        for secret in ["Alice Adams", "Bob Brown", "Carol Clark", "carol@example.com"] {
            assert!(!text.contains(secret), "{ext} sees {secret:?}: {text}");
        }
    }
}

#[tokio::test]
async fn events_for_unknown_accounts_and_from_customers_are_refused() {
    let app = spawn_app().await;
    app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    app.prepaid_rules("0", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "PREPAID").await;
    let before = app.snapshot().await;

    assert_failed(&app.verify_payment_raw("evt-x", "nobody").await, "NOT_FOUND");
    assert_failed(&app.top_up_raw("evt-y", "nobody", "5", None).await, "NOT_FOUND");
    let customer = app.customer("acct-b");
    for (op, vars) in [
        (
            "RecordPaymentMethodVerified",
            TestApp::payment_verified_input("evt-z", "acct-b"),
        ),
        ("RecordTopUp", TestApp::top_up_input("evt-z", "acct-b", "5", None)),
    ] {
        let body = app.run(Some(&customer), "integration", op, vars.clone()).await;
        assert_failed(&body, "FORBIDDEN");
        let body = app.run(None, "integration", op, vars).await;
        assert_failed(&body, "UNAUTHENTICATED");
    }
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.available_credit("acct-b").await, "0.00");

    // A refused event leaves its eventId free; an admin token may report events too.
    let paid = app
        .run_ok(
            Some(&app.admin()),
            "integration",
            "RecordTopUp",
            TestApp::top_up_input("evt-y", "acct-b", "5", None),
        )
        .await;
    assert_eq!(
        rewards_of(&paid["recordTopUp"]),
        both_paid("acct-a", "acct-b"),
        "{paid:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_payment_verifications_pay_each_party_once() {
    let app = spawn_app().await;
    app.postpaid_rules(REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "POSTPAID").await;

    let query = app.op("integration", "RecordPaymentMethodVerified");
    let vars = (0..20)
        .map(|i| TestApp::payment_verified_input(&format!("evt-pm-race-{i}"), "acct-b"))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    let mut paid = Vec::new();
    for body in &bodies {
        let payload = data_of(body, "a concurrent RecordPaymentMethodVerified")["recordPaymentMethodVerified"].clone();
        assert_eq!(payload["event"]["duplicate"], false, "{payload:#}");
        paid.extend(rewards_of(&payload));
    }
    paid.sort();
    assert_eq!(paid, both_paid("acct-a", "acct-b"), "each party is paid exactly once");

    assert_eq!(app.count("events").await, 20);
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind = 'REWARD'")
            .await,
        2
    );
    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(
        app.credit("acct-b").await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.balance_available("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(friend(&app, "acct-a", "Bo*** B.").await["status"], "QUALIFIED");
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_top_ups_count_every_one_and_pay_each_party_once() {
    let app = spawn_app().await;
    let (referrer_rule, _) = app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "PREPAID").await;

    // Twenty top-ups of 1.00 at once: the tenth to be counted reaches 10.00.
    let query = app.op("integration", "RecordTopUp");
    let vars = (0..20)
        .map(|i| TestApp::top_up_input(&format!("evt-tu-race-{i}"), "acct-b", "1.00", None))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;

    let mut paid = Vec::new();
    let mut paying = 0;
    let mut progress_shown = Vec::new();
    for body in &bodies {
        let payload = data_of(body, "a concurrent RecordTopUp")["recordTopUp"].clone();
        assert_eq!(payload["event"]["duplicate"], false, "{payload:#}");
        let rewards = rewards_of(&payload);
        if !rewards.is_empty() {
            paying += 1;
        }
        paid.extend(rewards);
        let decision = decision_for(&payload, &referrer_rule);
        if decision["outcome"] == "SKIPPED"
            && let Some(total) = progress(s(decision, "/reason"))
            && micros(&total) < 10_000_000
        {
            progress_shown.push(total);
        }
    }
    paid.sort();
    assert_eq!(paid, both_paid("acct-a", "acct-b"), "each party is paid exactly once");
    assert_eq!(paying, 1, "one top-up qualifies");
    // Every top-up was counted once: the nine before the threshold saw 1.00 … 9.00.
    progress_shown.sort_by_key(|t| micros(t));
    let expected: Vec<String> = (1..=9).map(|i| format!("{i}.00")).collect();
    assert_eq!(progress_shown, expected, "the running totals the skipped top-ups saw");

    assert_eq!(app.count("events").await, 20);
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind = 'REWARD'")
            .await,
        2
    );
    assert_eq!(
        app.credit("acct-a").await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(
        app.credit("acct-b").await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.balance_available("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.balance_available("acct-b", "CREDIT").await, 5_000_000);

    // One more top-up: the total the server kept is 21.00, already paid.
    let after = app.top_up("evt-tu-after", "acct-b", "1", None).await;
    assert_eq!(after["rewards"], json!([]), "{after:#}");
    assert_eq!(decision_for(&after, &referrer_rule)["outcome"], "SKIPPED", "{after:#}");
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_qualifying_top_ups_of_the_threshold_pay_each_party_once() {
    let app = spawn_app().await;
    app.prepaid_rules("10.00", REFERRER_CREDIT, NEWCOMER_CREDIT).await;
    alice_refers_bob(&app, "PREPAID").await;

    let query = app.op("integration", "RecordTopUp");
    let vars = (0..20)
        .map(|i| TestApp::top_up_input(&format!("evt-tu-big-{i}"), "acct-b", "10.00", None))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), &query, vars).await;
    let mut paid = Vec::new();
    for body in &bodies {
        paid.extend(rewards_of(&data_of(body, "a concurrent RecordTopUp")["recordTopUp"]));
    }
    paid.sort();
    assert_eq!(paid, both_paid("acct-a", "acct-b"));
    assert_eq!(app.available_credit("acct-a").await, "10.00");
    assert_eq!(app.available_credit("acct-b").await, "5.00");
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 10_000_000);
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, 5_000_000);
    assert_eq!(app.count("ledger_entries").await, 2);
    app.assert_invariants().await;
}
