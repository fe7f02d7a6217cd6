//! `referral-server preset <points-store|cloud-credit|isp|refer-a-friend>`: the built binary writes a program's
//! rules into the database the test server runs on, and the server then runs that program.

use crate::helpers::*;
use serde_json::{Value, json};

/// Runs the built binary with the test database; its stdout, or a panic with its output.
async fn run_cli(app: &TestApp, args: &[&str]) -> String {
    let database_url = app.database_url.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_referral-server"))
            .args(&args)
            .env("DATABASE_URL", &database_url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("PUBLIC_URL", PUBLIC_URL)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run referral-server {args:?}: {e}"))
    })
    .await
    .expect("the CLI task panicked");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "referral-server failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    stdout
}

/// The one enabled rule with this trigger and beneficiary.
fn the_rule<'a>(rules: &'a [Value], trigger: &str, beneficiary: &str) -> &'a Value {
    let matching: Vec<&Value> = rules
        .iter()
        .filter(|r| r["enabled"] == true && r["trigger"] == trigger && r["beneficiary"] == beneficiary)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one enabled {trigger} rule for the {beneficiary}: {rules:#?}"
    );
    matching[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_credit_preset_runs_program_one() {
    let app = spawn_app().await;
    run_cli(&app, &["preset", "cloud-credit"]).await;
    let rules = app.rules().await;

    let mut values = Vec::new();
    for trigger in ["PAYMENT_METHOD_VERIFIED", "TOP_UP_TOTAL_REACHED"] {
        for beneficiary in ["REFERRER", "REFEREE"] {
            let rule = the_rule(&rules, trigger, beneficiary);
            assert_eq!(rule["unit"], "CREDIT", "{rule:#}");
            assert_eq!(rule["calculation"], "FIXED", "{rule:#}");
            assert_eq!(rule["recurring"], false, "{rule:#}");
            assert!(micros(s(rule, "/value")) > 0, "{rule:#}");
            values.push(s(rule, "/value").to_owned());
        }
    }
    let threshold = s(the_rule(&rules, "TOP_UP_TOTAL_REACHED", "REFERRER"), "/threshold").to_owned();
    assert_eq!(
        the_rule(&rules, "TOP_UP_TOTAL_REACHED", "REFEREE")["threshold"],
        threshold.as_str()
    );

    // The billing-scheme policy is the preset's: a condition on each of its rules.
    let body = app
        .gql(
            Some(&app.admin()),
            "{ rewardRules { trigger enabled billingScheme } }",
            json!({}),
        )
        .await;
    let mut schemes: Vec<(String, String)> = body["data"]["rewardRules"]
        .as_array()
        .unwrap_or_else(|| panic!("{body:#}"))
        .iter()
        .filter(|r| r["enabled"] == true && r["trigger"] != "FIRST_PURCHASE")
        .map(|r| (s(r, "/trigger").to_owned(), s(r, "/billingScheme").to_owned()))
        .collect();
    schemes.sort();
    let pair = |t: &str, b: &str| (t.to_owned(), b.to_owned());
    assert_eq!(
        schemes,
        [
            pair("PAYMENT_METHOD_VERIFIED", "POSTPAID"),
            pair("PAYMENT_METHOD_VERIFIED", "POSTPAID"),
            pair("TOP_UP_TOTAL_REACHED", "PREPAID"),
            pair("TOP_UP_TOTAL_REACHED", "PREPAID"),
        ]
    );

    // Applying it again changes nothing.
    run_cli(&app, &["preset", "cloud-credit"]).await;
    assert_eq!(app.rules().await, rules, "a preset applied twice");

    // A postpaid friend qualifies by a verified payment method, a prepaid one by top-ups, and
    // neither by the other's event.
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register_scheme("acct-b", "Bob Brown", Some(&a), "POSTPAID").await;
    app.register_scheme("acct-c", "Carol Clark", Some(&a), "PREPAID").await;
    let b_top_up = app.top_up("evt-tu-b", "acct-b", "50.00", None).await;
    assert_eq!(b_top_up["rewards"], json!([]), "{b_top_up:#}");
    let c_verified = app.verify_payment("evt-pm-c", "acct-c").await;
    assert_eq!(c_verified["rewards"], json!([]), "{c_verified:#}");
    let b = app.verify_payment("evt-pm-b", "acct-b").await;
    let mut expected = vec![credit_reward("acct-a", &values[0]), credit_reward("acct-b", &values[1])];
    expected.sort();
    assert_eq!(rewards_of(&b), expected, "{b:#}");
    let top_up = if micros(&threshold) == 0 {
        "1.00".to_owned()
    } else {
        threshold.clone()
    };
    let c = app.top_up("evt-tu-c", "acct-c", &top_up, None).await;
    let mut expected = vec![credit_reward("acct-a", &values[2]), credit_reward("acct-c", &values[3])];
    expected.sort();
    assert_eq!(rewards_of(&c), expected, "{c:#}");
    assert_eq!(
        app.ledger_sum("acct-a", "CREDIT").await,
        micros(&values[0]) + micros(&values[2])
    );
    assert_eq!(app.ledger_sum("acct-b", "CREDIT").await, micros(&values[1]));
    assert_eq!(app.ledger_sum("acct-c", "CREDIT").await, micros(&values[3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_points_store_preset_keeps_one_first_purchase_rule() {
    let app = spawn_app().await;
    let before = app.rules().await;
    run_cli(&app, &["preset", "points-store"]).await;
    run_cli(&app, &["preset", "points-store"]).await;
    let rules = app.rules().await;
    let rule = the_rule(&rules, "FIRST_PURCHASE", "REFERRER");
    assert_eq!(rule["calculation"], "PRODUCT_RATE", "{rule:#}");
    assert_eq!(rule["unit"], "POINTS", "{rule:#}");
    assert_eq!(rule["productCategories"], json!(["residential"]), "{rule:#}");
    assert_eq!(rules.len(), before.len(), "{rules:#?}");

    app.setup_catalog().await;
    app.chain().await;
    let paid = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(paid["rewards"].as_array().map(Vec::len), Some(1), "{paid:#}");
    assert_eq!(paid["rewards"][0]["amount"], "150.00", "{paid:#}");
    assert_eq!(app.available_points("acct-a").await, "150.00");
}

/// Program 2 from its preset: 20.00 and 5 % on a friend's first invoice, 5 % of the next ones,
/// and 10.00 off the referrer's own invoice once 4 friends are active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isp_preset_runs_program_two() {
    let app = spawn_app().await;
    run_cli(&app, &["preset", "isp"]).await;
    let rules = app.rules().await;
    run_cli(&app, &["preset", "isp"]).await;
    assert_eq!(app.rules().await, rules, "a preset applied twice");

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let friends = ["acct-b", "acct-c", "acct-d", "acct-e"];
    for friend in friends {
        app.register(friend, Some("Friend Fox"), Some(&a)).await;
    }
    let first = paid(&app, "inv-b-1", "acct-b", "internet", "40.00").await;
    let mut expected = vec![credit_reward("acct-a", "20.00"), credit_reward("acct-a", "2.00")];
    expected.sort();
    let mut rewarded = rewards_of(&first);
    rewarded.sort();
    assert_eq!(rewarded, expected, "{first:#}");
    let own = paid(&app, "inv-a-1", "acct-a", "internet", "50.00").await;
    assert_eq!(own["rewards"], json!([]), "one active referral of 4: {own:#}");
    for friend in &friends[1..] {
        paid(&app, &format!("inv-{friend}-1"), friend, "internet", "40.00").await;
    }
    let own = paid(&app, "inv-a-2", "acct-a", "internet", "50.00").await;
    assert_eq!(rewards_of(&own), [credit_reward("acct-a", "10.00")], "{own:#}");
    // 4 × (20.00 + 2.00) + 10.00
    assert_eq!(app.ledger_sum("acct-a", "CREDIT").await, 98_000_000);
    app.assert_invariants().await;
}

/// Program 4 from its preset: 5.00 for the newcomer at sign-up, 20.00 held for the referrer
/// once the friend spends 20.00 on compute, then 10 % of the compute spend above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refer_a_friend_preset_runs_program_four() {
    let app = spawn_app().await;
    run_cli(&app, &["preset", "refer-a-friend"]).await;
    let rules = app.rules().await;
    run_cli(&app, &["preset", "refer-a-friend"]).await;
    assert_eq!(app.rules().await, rules, "a preset applied twice");

    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    assert_eq!(
        app.ledger_sum("acct-b", "CREDIT").await,
        5_000_000,
        "the sign-up credit"
    );
    paid(&app, "inv-1", "acct-b", "storage", "100.00").await;
    assert_eq!(
        app.ledger_sum("acct-a", "CREDIT").await,
        0,
        "storage is no qualifying spend"
    );
    let first = paid(&app, "inv-2", "acct-b", "compute", "500.00").await;
    let held: Vec<_> = first["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|r| (s(r, "/amount").to_owned(), s(r, "/status").to_owned()))
        .collect();
    assert_eq!(
        held,
        [
            ("20.00".to_owned(), "PENDING".to_owned()),
            ("48.00".to_owned(), "PENDING".to_owned())
        ],
        "{first:#}"
    );
    app.assert_invariants().await;
}

/// Program 5 from its preset: an approved affiliate earns 20 % of each invoice its referred
/// customers pay, held 30 days; a referrer that is no affiliate earns nothing; the first
/// approval pays 10.00; withdrawals start at 50.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_affiliate_preset_runs_program_five() {
    let app = spawn_app().await;
    run_cli(&app, &["preset", "affiliate"]).await;
    let rules = app.rules().await;
    // Read from the table: the command wrote it, and a server's held settings follow within
    // a moment (`settings::cache`).
    let settings = "SELECT minimum_withdrawal * 1000 + affiliate_signup_bonus FROM program_settings";
    let written = app.sql_i64(settings).await;
    let audited = app.count("audit_log").await;
    run_cli(&app, &["preset", "affiliate"]).await;
    assert_eq!(app.rules().await, rules, "a preset applied twice");
    assert_eq!(
        app.count("audit_log").await,
        audited,
        "a preset applied twice changes nothing"
    );
    assert_eq!(written, 50_000_000 * 1000 + 10_000_000, "minimum 50.00, bonus 10.00");

    let a = app.register_code("aff-a", Some("Alice Adams"), None).await;
    let n = app.register_code("not-n", Some("Nina North"), None).await;
    app.register("cust-b", Some("Bob Brown"), Some(&a)).await;
    app.register("cust-c", Some("Carl Cole"), Some(&n)).await;
    let alice = s(&nodes(&app.accounts(Some("aff-a"), 1, None).await)[0], "/id").to_owned();
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "DecideAffiliate",
        json!({ "input": { "accountId": alice, "decision": "APPROVE" } }),
    )
    .await;
    assert_eq!(app.balance("aff-a", "CASH").await.0, "10.00", "the sign-up bonus");

    let paid_b = paid(&app, "inv-b", "cust-b", "internet", "45.00").await;
    let commission: Vec<_> = rewards_of(&paid_b).into_iter().map(|r| (r.0, r.2, r.3, r.4)).collect();
    assert_eq!(
        commission,
        [(
            "aff-a".to_owned(),
            "CASH".to_owned(),
            "9.00".to_owned(),
            "PENDING".to_owned()
        )],
        "{paid_b:#}"
    );
    let paid_c = paid(&app, "inv-c", "cust-c", "internet", "45.00").await;
    assert!(rewards_of(&paid_c).is_empty(), "not an affiliate: {paid_c:#}");
    app.assert_invariants().await;
}
