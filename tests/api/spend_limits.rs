//! Program 4's credit that may be spent only where it may be spent: a CREDIT rule's
//! `redeemableCategories` (an allow-list) or `excludedCategories` (an exclusion list) travel
//! with each lot it pays, and `ApplyCredit` with the invoice's lines pays each line only from
//! the lots that may pay its category, soonest-expiring first; without lines, only credit that
//! may be spent on anything is applied.
//!
//! Every account's credit here comes from SIGNUP rules paying the newcomer (REFEREE) at once:
//! `acct-a` refers, `acct-b` (and `acct-c`) are the newcomers who hold the credit.

use crate::helpers::*;
use crate::time::{advance, settle};
use serde_json::{Value, json};

/// Invoice lines as (category, amount).
type Lines<'a> = Vec<(&'a str, &'a str)>;

const REFERRER: &str = "acct-a";
const NEWCOMER: &str = "acct-b";

/// ApplyCredit with the lines it answers (the contract's document does not read them).
const APPLY: &str = "mutation A($input: ApplyCreditInput!) { \
    applyCredit(input: $input) { applied remaining duplicate lines { category amount applied } } }";

/// A SIGNUP rule paying the newcomer `value` CREDIT at once, with `changes` (the restriction,
/// an expiry) on top.
fn signup_credit(name: &str, value: &str, changes: Value) -> Value {
    with(&fixed_credit_rule(name, "SIGNUP", "REFEREE", value), changes)
}

/// Registers the referrer `acct-a` and each of `newcomers` with its code: the SIGNUP rules
/// created before pay each newcomer. Returns the referrer's code.
async fn register_newcomers(app: &TestApp, newcomers: &[&str]) -> String {
    let code = app.register_code(REFERRER, Some("Alice Adams"), None).await;
    for newcomer in newcomers {
        app.register(newcomer, Some("Nina Newcomer"), Some(&code)).await;
    }
    code
}

/// ApplyCredit's variables; `lines` as (category, amount), left out when None.
fn apply_input(invoice_id: &str, external_id: &str, amount: &str, lines: Option<&[(&str, &str)]>) -> Value {
    let mut input = json!({ "invoiceId": invoice_id, "externalId": external_id, "amount": amount });
    if let Some(lines) = lines {
        input["lines"] = lines
            .iter()
            .map(|(category, amount)| json!({ "category": category, "amount": amount }))
            .collect();
    }
    json!({ "input": input })
}

/// ApplyCredit (with `lines` read) as the billing system; the whole response body.
async fn apply_raw(
    app: &TestApp,
    invoice_id: &str,
    external_id: &str,
    amount: &str,
    lines: Option<&[(&str, &str)]>,
) -> Value {
    app.gql(
        Some(&app.service()),
        APPLY,
        apply_input(invoice_id, external_id, amount, lines),
    )
    .await
}

/// ApplyCredit that must succeed; `applyCredit`.
async fn apply(
    app: &TestApp,
    invoice_id: &str,
    external_id: &str,
    amount: &str,
    lines: Option<&[(&str, &str)]>,
) -> Value {
    let body = apply_raw(app, invoice_id, external_id, amount, lines).await;
    data_of(&body, &format!("ApplyCredit {invoice_id}"))["applyCredit"].clone()
}

/// One line of the answer.
fn line(category: &str, amount: &str, applied: &str) -> Value {
    json!({ "category": category, "amount": amount, "applied": applied })
}

/// The whole answer.
fn answer(applied: &str, remaining: &str, duplicate: bool, lines: Vec<Value>) -> Value {
    json!({ "applied": applied, "remaining": remaining, "duplicate": duplicate, "lines": lines })
}

/// Each rule's (redeemableCategories, excludedCategories), by id, as an admin reads them.
async fn rule_limits(app: &TestApp) -> std::collections::BTreeMap<String, (Value, Value)> {
    let body = app
        .gql(
            Some(&app.admin()),
            "{ rewardRules { id redeemableCategories excludedCategories } }",
            json!({}),
        )
        .await;
    let data = data_of(&body, "rewardRules with their spend limits");
    data["rewardRules"]
        .as_array()
        .unwrap_or_else(|| panic!("rewardRules is not a list: {data:#}"))
        .iter()
        .map(|r| {
            (
                s(r, "/id").to_owned(),
                (r["redeemableCategories"].clone(), r["excludedCategories"].clone()),
            )
        })
        .collect()
}

/// 30.00 that may be spent only on compute pays the compute line of an invoice of 20.00
/// compute and 20.00 storage, and nothing of the storage line: 10.00 is left, still only for
/// compute. Categories are keys: `COMPUTE` is compute.
#[tokio::test]
async fn an_allow_list_credit_pays_only_lines_of_its_categories() {
    let app = spawn_app().await;
    let id = app
        .create_rule_id(signup_credit(
            "Compute credit",
            "30",
            json!({ "redeemableCategories": ["compute"] }),
        ))
        .await;
    assert_eq!(
        rule_limits(&app).await[&id],
        (json!(["compute"]), Value::Null),
        "the rule answers its allow-list as set"
    );
    register_newcomers(&app, &[NEWCOMER]).await;
    assert_eq!(
        app.credit(NEWCOMER).await,
        ("30.00".into(), "0.00".into(), "30.00".into())
    );

    let first = apply(
        &app,
        "inv-1",
        NEWCOMER,
        "40.00",
        Some(&[("compute", "20.00"), ("storage", "20.00")]),
    )
    .await;
    assert_eq!(
        first,
        answer(
            "20.00",
            "10.00",
            false,
            vec![line("compute", "20.00", "20.00"), line("storage", "20.00", "0.00")]
        )
    );
    assert_eq!(
        app.credit(NEWCOMER).await,
        ("10.00".into(), "0.00".into(), "30.00".into())
    );
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 10_000_000);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 10_000_000);

    // A storage-only invoice gets nothing; the category in another case is the same key.
    let storage = apply(&app, "inv-2", NEWCOMER, "5.00", Some(&[("storage", "5.00")])).await;
    assert_eq!(storage["applied"], "0.00", "{storage:#}");
    assert_eq!(storage["remaining"], "10.00", "{storage:#}");
    let upper = apply(&app, "inv-3", NEWCOMER, "4.00", Some(&[("COMPUTE", "4.00")])).await;
    assert_eq!(upper["applied"], "4.00", "{upper:#}");
    assert_eq!(upper["remaining"], "6.00", "{upper:#}");
    assert_eq!(upper["lines"].as_array().map(Vec::len), Some(1), "{upper:#}");
    assert_eq!(upper["lines"][0]["applied"], "4.00", "{upper:#}");
    assert_eq!(
        s(&upper, "/lines/0/category").to_ascii_lowercase(),
        "compute",
        "{upper:#}"
    );
    assert_eq!(app.available_credit(NEWCOMER).await, "6.00");
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 6_000_000);
    assert_eq!(
        app.ledger_sum(REFERRER, "CREDIT").await,
        0,
        "the referrer earns nothing here"
    );
    app.assert_invariants().await;
}

/// 25.00 that may be spent on anything but domains pays the compute line of an invoice of
/// 10.00 domains and 10.00 compute, and nothing of the domains line; without lines it pays
/// nothing at all. The rule answers its exclusion list, and keeps it through an update that
/// leaves the field out.
#[tokio::test]
async fn an_exclusion_list_credit_cannot_pay_an_excluded_line() {
    let app = spawn_app().await;
    let input = signup_credit(
        "Credit but not for domains",
        "25",
        json!({ "excludedCategories": ["domains"] }),
    );
    let id = app.create_rule_id(input.clone()).await;
    assert_eq!(rule_limits(&app).await[&id], (Value::Null, json!(["domains"])));

    // A console that does not know the field sends the rule back without it.
    let mut without = input.clone();
    without.as_object_mut().map(|o| o.remove("excludedCategories"));
    app.update_rule(&id, with(&without, json!({ "name": "Credit, renamed" })))
        .await;
    assert_eq!(
        rule_limits(&app).await[&id],
        (Value::Null, json!(["domains"])),
        "an update that leaves excludedCategories out keeps it"
    );

    register_newcomers(&app, &[NEWCOMER]).await;
    assert_eq!(app.available_credit(NEWCOMER).await, "25.00");

    // Without lines the invoice's categories are unknown: restricted credit pays nothing.
    let unknown = apply(&app, "inv-0", NEWCOMER, "5.00", None).await;
    assert_eq!(unknown, answer("0.00", "25.00", false, vec![]));

    let first = apply(
        &app,
        "inv-1",
        NEWCOMER,
        "20.00",
        Some(&[("domains", "10.00"), ("compute", "10.00")]),
    )
    .await;
    assert_eq!(
        first,
        answer(
            "10.00",
            "15.00",
            false,
            vec![line("domains", "10.00", "0.00"), line("compute", "10.00", "10.00")]
        )
    );
    assert_eq!(
        app.credit(NEWCOMER).await,
        ("15.00".into(), "0.00".into(), "25.00".into())
    );
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 15_000_000);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 15_000_000);
    app.assert_invariants().await;
}

/// 10.00 that may be spent on anything and 30.00 only on compute: an invoice of 35.00 storage
/// then 40.00 compute pays the storage line from the unrestricted credit only (10.00) and the
/// compute line from the compute credit (30.00). An invoice without lines applies only the
/// unrestricted credit; `remaining` counts the restricted credit too.
#[tokio::test]
async fn unrestricted_credit_pays_any_line_and_alone_pays_an_invoice_without_lines() {
    let app = spawn_app().await;
    app.create_rule_id(signup_credit("Credit for anything", "10", json!({})))
        .await;
    app.create_rule_id(signup_credit(
        "Compute credit",
        "30",
        json!({ "redeemableCategories": ["compute"] }),
    ))
    .await;
    let code = register_newcomers(&app, &[NEWCOMER]).await;
    assert_eq!(
        app.credit(NEWCOMER).await,
        ("40.00".into(), "0.00".into(), "40.00".into())
    );

    let both = apply(
        &app,
        "inv-1",
        NEWCOMER,
        "75.00",
        Some(&[("storage", "35.00"), ("compute", "40.00")]),
    )
    .await;
    assert_eq!(
        both,
        answer(
            "40.00",
            "0.00",
            false,
            vec![line("storage", "35.00", "10.00"), line("compute", "40.00", "30.00")]
        )
    );
    assert_eq!(
        app.credit(NEWCOMER).await,
        ("0.00".into(), "0.00".into(), "40.00".into())
    );
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 0);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 0);

    // A fresh account with the same two lots, and an invoice whose lines are unknown.
    app.register("acct-c", Some("Carol Clark"), Some(&code)).await;
    assert_eq!(app.available_credit("acct-c").await, "40.00");
    let unknown = apply(&app, "inv-c-1", "acct-c", "100.00", None).await;
    assert_eq!(unknown, answer("10.00", "30.00", false, vec![]));
    assert_eq!(
        app.credit("acct-c").await,
        ("30.00".into(), "0.00".into(), "40.00".into())
    );
    // The contract's own document gets the same: only the unrestricted credit.
    let contract = app.apply_credit("inv-c-2", "acct-c", "100.00").await;
    assert_eq!(
        contract,
        json!({ "applied": "0.00", "remaining": "30.00", "duplicate": false })
    );
    // The compute credit is still there for a compute line.
    let compute = apply(&app, "inv-c-3", "acct-c", "50.00", Some(&[("compute", "50.00")])).await;
    assert_eq!(
        compute,
        answer("30.00", "0.00", false, vec![line("compute", "50.00", "30.00")])
    );
    assert_eq!(app.ledger_sum("acct-c", "CREDIT").await, 0);
    assert_eq!(app.balance_available("acct-c", "CREDIT").await, 0);
    app.assert_invariants().await;
}

/// Two lots that may pay compute, 20.00 expiring in 200 days (paid by the rule created first)
/// and 20.00 expiring in 100 days: a compute line of 20.00 spends the one expiring sooner, so
/// that 150 days later the 20.00 expiring on day 200 is still there (had the other been spent,
/// nothing would be left), and is gone after day 200.
#[tokio::test]
async fn a_line_spends_the_soonest_expiring_lot_it_may_use_first() {
    let app = spawn_app().await;
    app.create_rule_id(signup_credit(
        "Compute credit for 200 days",
        "20",
        json!({ "redeemableCategories": ["compute"], "expiresAfterDays": 200 }),
    ))
    .await;
    app.create_rule_id(signup_credit(
        "Compute credit for 100 days",
        "20",
        json!({ "redeemableCategories": ["compute"], "expiresAfterDays": 100 }),
    ))
    .await;
    register_newcomers(&app, &[NEWCOMER]).await;
    assert_eq!(
        app.credit(NEWCOMER).await,
        ("40.00".into(), "0.00".into(), "40.00".into())
    );

    let spent = apply(&app, "inv-1", NEWCOMER, "20.00", Some(&[("compute", "20.00")])).await;
    assert_eq!(
        spent,
        answer("20.00", "20.00", false, vec![line("compute", "20.00", "20.00")])
    );

    advance(&app, 150);
    assert_eq!(
        app.available_credit(NEWCOMER).await,
        "20.00",
        "the lot expiring on day 100 was the one spent"
    );
    // What the background task would do by now: the day-100 lot, spent, leaves nothing to expire.
    settle(&app).await;
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 20_000_000);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 20_000_000);

    // Day 210: the lot expiring on day 200 goes.
    advance(&app, 60);
    assert_eq!(app.available_credit(NEWCOMER).await, "0.00");
    settle(&app).await;
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 0);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 0);
    app.assert_invariants().await;
}

/// Refused with BAD_USER_INPUT, writing nothing: lines that do not add up to the amount,
/// 101 lines or none (each naming `lines`), a negative line. The refused invoice ids stay
/// free: 100 lines are taken. Rules: both lists (naming `excludedCategories`), either list on a
/// POINTS rule (naming it), on create and on update; an empty allow-list with an exclusion list
/// is taken.
#[tokio::test]
async fn invalid_lines_and_spend_limits_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let compute = signup_credit("Compute credit", "30", json!({ "redeemableCategories": ["compute"] }));
    let id = app.create_rule_id(compute.clone()).await;
    register_newcomers(&app, &[NEWCOMER]).await;
    assert_eq!(app.available_credit(NEWCOMER).await, "30.00");

    let before = app.snapshot().await;
    let applications = app.count("credit_applications").await;
    let limits = app.count("lot_limits").await;
    let hundred_and_one: Vec<(&str, &str)> = (0..101).map(|_| ("compute", "1.00")).collect();
    let cases: [(&str, &str, Lines, Option<&str>); 6] = [
        (
            "inv-sum",
            "40.00",
            vec![("compute", "20.00"), ("storage", "10.00")],
            Some("lines"),
        ),
        (
            "inv-sum",
            "20.00",
            vec![("compute", "20.00"), ("storage", "10.00")],
            Some("lines"),
        ),
        ("inv-many", "101.00", hundred_and_one, Some("lines")),
        ("inv-empty", "10.00", vec![], Some("lines")),
        (
            "inv-negative",
            "10.00",
            vec![("compute", "15.00"), ("storage", "-5.00")],
            None,
        ),
        ("inv-negative", "10.00", vec![("compute", "-10.00")], None),
    ];
    for (invoice, amount, lines, field) in &cases {
        let body = apply_raw(&app, invoice, NEWCOMER, amount, Some(lines.as_slice())).await;
        assert_failed(&body, "BAD_USER_INPUT");
        if let Some(field) = field {
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains(field), "the refusal names {field}: {body:#}");
        }
    }
    assert_eq!(app.snapshot().await, before, "nothing written");
    assert_eq!(app.count("credit_applications").await, applications);
    assert_eq!(app.count("lot_limits").await, limits);
    assert_eq!(app.available_credit(NEWCOMER).await, "30.00");

    // 100 lines are taken, on an invoice id refused before: 30 of the 50 compute lines get 1.00.
    let hundred: Vec<(&str, &str)> = (0..100)
        .map(|i| (if i % 2 == 0 { "compute" } else { "storage" }, "1.00"))
        .collect();
    let many = apply(&app, "inv-many", NEWCOMER, "100.00", Some(&hundred)).await;
    assert_eq!(many["applied"], "30.00", "{many:#}");
    assert_eq!(many["remaining"], "0.00", "{many:#}");
    let answered = many["lines"].as_array().expect("lines");
    assert_eq!(answered.len(), 100, "{many:#}");
    let paid_lines: Vec<usize> = answered
        .iter()
        .enumerate()
        .filter(|(_, l)| l["applied"] == "1.00")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(paid_lines, (0..30).map(|i| 2 * i).collect::<Vec<_>>(), "{many:#}");
    assert!(
        answered
            .iter()
            .all(|l| l["applied"] == "1.00" || l["applied"] == "0.00"),
        "{many:#}"
    );

    // Rules.
    let mut points = rule_input("Points", "PAYMENT_METHOD_VERIFIED", "REFERRER", "POINTS", "FIXED");
    points["value"] = json!("10");
    let rule_cases = [
        (
            with(&compute, json!({ "excludedCategories": ["domains"] })),
            "excludedCategories",
        ),
        (
            with(&points, json!({ "redeemableCategories": ["compute"] })),
            "redeemableCategories",
        ),
        (
            with(&points, json!({ "excludedCategories": ["domains"] })),
            "excludedCategories",
        ),
    ];
    let rules_before = app.rules().await;
    let limits_before = rule_limits(&app).await;
    let before = app.snapshot().await;
    for (input, field) in &rule_cases {
        for body in [
            app.create_rule_raw(input.clone()).await,
            app.update_rule_raw(&id, input.clone()).await,
        ] {
            assert_failed(&body, "BAD_USER_INPUT");
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains(field), "the refusal names {field}: {body:#}");
        }
    }
    assert_eq!(app.rules().await, rules_before);
    assert_eq!(rule_limits(&app).await, limits_before);
    assert_eq!(app.snapshot().await, before, "nothing written");

    // Their valid neighbours: an empty allow-list is no allow-list; POINTS without the lists.
    let neighbour = app
        .create_rule_id(signup_credit(
            "Credit but not for domains",
            "5",
            json!({ "redeemableCategories": [], "excludedCategories": ["domains"] }),
        ))
        .await;
    assert_eq!(rule_limits(&app).await[&neighbour].1, json!(["domains"]));
    app.create_rule_id(with(
        &points,
        json!({ "redeemableCategories": null, "excludedCategories": [] }),
    ))
    .await;
    app.assert_invariants().await;
}

/// The same ApplyCredit with lines, again (amounts also written differently): a duplicate
/// answering the same applied amounts per line, nothing moved. The same invoice with other
/// lines, or without its lines, is an IDEMPOTENCY_CONFLICT; so is adding lines to an invoice
/// applied without them.
#[tokio::test]
async fn a_replayed_invoice_with_lines_answers_its_lines_again_and_other_lines_conflict() {
    let app = spawn_app().await;
    app.create_rule_id(signup_credit(
        "Compute credit",
        "30",
        json!({ "redeemableCategories": ["compute"] }),
    ))
    .await;
    register_newcomers(&app, &[NEWCOMER]).await;

    let lines = [("compute", "15.00"), ("storage", "10.00")];
    let first = apply(&app, "inv-1", NEWCOMER, "25.00", Some(&lines)).await;
    let expected_lines = vec![line("compute", "15.00", "15.00"), line("storage", "10.00", "0.00")];
    assert_eq!(first, answer("15.00", "15.00", false, expected_lines.clone()));
    let before = app.snapshot().await;

    for (amount, lines) in [
        ("25.00", [("compute", "15.00"), ("storage", "10.00")]),
        ("25", [("compute", "15"), ("storage", "10.0")]),
    ] {
        let again = apply(&app, "inv-1", NEWCOMER, amount, Some(&lines)).await;
        assert_eq!(
            again,
            answer("15.00", "15.00", true, expected_lines.clone()),
            "{amount}"
        );
        assert_eq!(app.snapshot().await, before, "a replay changes nothing");
    }

    let other: [(&str, Option<Lines>); 4] = [
        ("25.00", Some(vec![("compute", "10.00"), ("storage", "15.00")])),
        ("25.00", Some(vec![("compute", "15.00"), ("domains", "10.00")])),
        ("25.00", Some(vec![("compute", "25.00")])),
        ("25.00", None),
    ];
    for (amount, lines) in &other {
        let body = apply_raw(&app, "inv-1", NEWCOMER, amount, lines.as_deref()).await;
        assert_failed(&body, "IDEMPOTENCY_CONFLICT");
        assert_eq!(app.snapshot().await, before);
    }
    assert_eq!(app.available_credit(NEWCOMER).await, "15.00");

    // An invoice applied without lines (nothing: the credit is restricted) is answered again
    // without them, and conflicts with lines.
    let bare = apply(&app, "inv-2", NEWCOMER, "10.00", None).await;
    assert_eq!(bare, answer("0.00", "15.00", false, vec![]));
    let again = apply(&app, "inv-2", NEWCOMER, "10.00", None).await;
    assert_eq!(again, answer("0.00", "15.00", true, vec![]));
    let body = apply_raw(&app, "inv-2", NEWCOMER, "10.00", Some(&[("compute", "10.00")])).await;
    assert_failed(&body, "IDEMPOTENCY_CONFLICT");

    // After more is spent, the replay still answers what its lines got, once.
    let second = apply(&app, "inv-3", NEWCOMER, "5.00", Some(&[("compute", "5.00")])).await;
    assert_eq!(second["applied"], "5.00", "{second:#}");
    let replay = apply(&app, "inv-1", NEWCOMER, "25.00", Some(&lines)).await;
    assert_eq!(replay["duplicate"], true, "{replay:#}");
    assert_eq!(replay["applied"], "15.00", "{replay:#}");
    assert_eq!(replay["lines"], json!(expected_lines), "{replay:#}");
    assert_eq!(app.available_credit(NEWCOMER).await, "10.00");
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 10_000_000);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 10_000_000);
    app.assert_invariants().await;
}

/// Ten ApplyCredit calls at once for one account, each a compute line of 5.00 on its own
/// invoice, against 30.00 that may be spent only on compute: six get 5.00, four nothing, never
/// more than there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applications_with_lines_never_overdraw_restricted_credit() {
    let app = spawn_app().await;
    app.create_rule_id(signup_credit(
        "Compute credit",
        "30",
        json!({ "redeemableCategories": ["compute"] }),
    ))
    .await;
    register_newcomers(&app, &[NEWCOMER]).await;
    assert_eq!(app.available_credit(NEWCOMER).await, "30.00");

    let vars = (0..10)
        .map(|i| apply_input(&format!("inv-race-{i}"), NEWCOMER, "5.00", Some(&[("compute", "5.00")])))
        .collect();
    let bodies = send_concurrently(&app, &app.service(), APPLY, vars).await;

    let mut applied: Vec<String> = Vec::new();
    for body in &bodies {
        let answer = data_of(body, "a concurrent ApplyCredit")["applyCredit"].clone();
        assert_eq!(answer["duplicate"], false, "{answer:#}");
        assert!(micros(s(&answer, "/applied")) >= 0, "{answer:#}");
        assert!(micros(s(&answer, "/remaining")) >= 0, "{answer:#}");
        assert!(
            micros(s(&answer, "/remaining")) <= 30_000_000 - micros(s(&answer, "/applied")),
            "{answer:#}"
        );
        assert_eq!(answer["lines"].as_array().map(Vec::len), Some(1), "{answer:#}");
        assert_eq!(answer["lines"][0]["applied"], answer["applied"], "{answer:#}");
        applied.push(s(&answer, "/applied").to_owned());
    }
    let total: i64 = applied.iter().map(|a| micros(a)).sum();
    assert_eq!(
        total, 30_000_000,
        "the applied amounts add up to the credit: {applied:?}"
    );
    applied.sort_by_key(|a| std::cmp::Reverse(micros(a)));
    let mut expected = vec!["5.00".to_owned(); 6];
    expected.extend(vec!["0.00".to_owned(); 4]);
    assert_eq!(applied, expected);

    assert_eq!(
        app.credit(NEWCOMER).await,
        ("0.00".into(), "0.00".into(), "30.00".into())
    );
    assert_eq!(app.ledger_sum(NEWCOMER, "CREDIT").await, 0);
    assert_eq!(app.balance_available(NEWCOMER, "CREDIT").await, 0);
    app.assert_invariants().await;
}
