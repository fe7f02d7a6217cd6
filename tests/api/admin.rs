//! The admin console: finding accounts, one account's detail, changing an account's referral
//! code, and the audit log of every admin change. None of it is open to customers or the
//! billing system.

use crate::helpers::*;
use serde_json::{Value, json};

/// The externalIds of a connection's nodes, sorted.
fn external_ids(connection: &Value) -> Vec<String> {
    let mut ids: Vec<String> = nodes(connection)
        .iter()
        .map(|n| s(n, "/externalId").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Four accounts: Alice; Bob, referred by Alice, in the business group; Carol, who tried an
/// unknown code; and one with neither name nor email. Returns Alice's and Bob's codes.
async fn four_accounts(app: &TestApp) -> (String, String) {
    let alice = app
        .register_with(json!({
            "externalId": "cust-alice",
            "displayName": "Alice Adams",
            "email": "alice@example.com",
        }))
        .await;
    let a = s(&alice, "/account/referralCode").to_owned();
    let bob = app
        .register_with(json!({
            "externalId": "cust-bob",
            "displayName": "Bob Brown",
            "email": "Bob.Brown@Example.org",
            "referralCode": a,
            "group": "business",
        }))
        .await;
    assert_eq!(bob["referral"]["status"], "PENDING", "{bob:#}");
    let b = s(&bob, "/account/referralCode").to_owned();
    let carol = app
        .register_with(json!({
            "externalId": "cust-carol",
            "displayName": "Carol Clark",
            "email": "carol@example.net",
            "referralCode": "NOSUCHCODE",
        }))
        .await;
    assert_eq!(carol["referral"]["status"], "REJECTED", "{carol:#}");
    app.register_with(json!({ "externalId": "cust-4711" })).await;
    (a, b)
}

#[tokio::test]
async fn accounts_are_found_by_external_id_code_name_or_email_in_any_case() {
    let app = spawn_app().await;
    let (a, b) = four_accounts(&app).await;

    let all = app.accounts(None, 20, None).await;
    assert_eq!(all["totalCount"], 4, "{all:#}");
    assert_eq!(all["pageInfo"]["hasNextPage"], false, "{all:#}");
    assert_eq!(
        external_ids(&all),
        vec!["cust-4711", "cust-alice", "cust-bob", "cust-carol"],
        "{all:#}"
    );

    for (search, expected) in [
        // externalId
        ("CUST-BOB", vec!["cust-bob"]),
        ("4711", vec!["cust-4711"]),
        // name
        ("alice ad", vec!["cust-alice"]),
        ("CLARK", vec!["cust-carol"]),
        // email
        ("bob.brown@example.ORG", vec!["cust-bob"]),
        ("example", vec!["cust-alice", "cust-bob", "cust-carol"]),
        (".net", vec!["cust-carol"]),
        // code, in any case
        (b.as_str(), vec!["cust-bob"]),
        (&b.to_lowercase(), vec!["cust-bob"]),
        // the empty search is no filter
        ("", vec!["cust-4711", "cust-alice", "cust-bob", "cust-carol"]),
        ("nobody-has-this", vec![]),
    ] {
        let found = app.accounts(Some(search), 20, None).await;
        assert_eq!(external_ids(&found), expected, "search {search:?}: {found:#}");
        assert_eq!(found["totalCount"], expected.len(), "search {search:?}: {found:#}");
    }
    let by_code = app.accounts(Some(&a.to_lowercase()), 20, None).await;
    assert!(external_ids(&by_code).contains(&"cust-alice".to_owned()), "{by_code:#}");

    // What a row shows.
    let row = |external_id: &str| -> Value {
        nodes(&all)
            .into_iter()
            .find(|n| n["externalId"] == external_id)
            .unwrap_or_else(|| panic!("no {external_id} in {all:#}"))
    };
    let alice = row("cust-alice");
    let bob = row("cust-bob");
    assert!(!s(&bob, "/id").is_empty(), "{bob:#}");
    assert_eq!(bob["displayName"], "Bob Brown", "admins see full names: {bob:#}");
    assert_eq!(bob["email"], "Bob.Brown@Example.org", "{bob:#}");
    assert_eq!(bob["group"], "business", "{bob:#}");
    assert_eq!(bob["referralCode"], b.as_str(), "{bob:#}");
    assert_eq!(bob["signedUpWithCode"], a.as_str(), "{bob:#}");
    assert_eq!(bob["accountStatus"], "ACTIVE", "{bob:#}");
    assert!(bob["createdAt"].is_string(), "{bob:#}");
    assert!(bob["affiliate"].is_null(), "{bob:#}");
    assert_eq!(
        bob["referral"]["referrer"],
        json!({ "referralCode": a, "account": { "id": s(&alice, "/id"), "externalId": "cust-alice" } }),
        "{bob:#}"
    );
    assert!(alice["signedUpWithCode"].is_null(), "{alice:#}");
    assert!(alice["referral"].is_null(), "{alice:#}");
    assert!(alice["group"].is_null(), "{alice:#}");
    let plain = row("cust-4711");
    assert!(plain["displayName"].is_null(), "{plain:#}");
    assert!(plain["email"].is_null(), "{plain:#}");
    assert!(plain["signedUpWithCode"].is_null(), "{plain:#}");
    let carol = row("cust-carol");
    assert!(
        carol["referral"].is_null() || carol["referral"]["referrer"].is_null(),
        "an unknown code is nobody's referral: {carol:#}"
    );
}

#[tokio::test]
async fn accounts_paginate_with_cursors() {
    let app = spawn_app().await;
    four_accounts(&app).await;
    app.register("other-1", Some("Example Person"), None).await;

    // All five, two at a time.
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = app.accounts(None, 2, after.as_deref()).await;
        assert_eq!(page["totalCount"], 5, "{page:#}");
        let edges = page["edges"].as_array().expect("edges").clone();
        pages += 1;
        assert!(edges.len() <= 2, "{page:#}");
        seen.extend(edges.iter().map(|e| s(e, "/node/externalId").to_owned()));
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        assert_eq!(edges.len(), 2, "{page:#}");
        assert_eq!(
            edges[1]["cursor"], page["pageInfo"]["endCursor"],
            "endCursor is the last edge's cursor: {page:#}"
        );
        after = Some(s(&page, "/pageInfo/endCursor").to_owned());
        assert!(pages < 5, "pagination does not end: {page:#}");
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(
        seen,
        vec!["cust-4711", "cust-alice", "cust-bob", "cust-carol", "other-1"],
        "every account once"
    );

    // A filtered search pages too: "example" matches 3 emails and one name.
    let first = app.accounts(Some("EXAMPLE"), 3, None).await;
    assert_eq!(first["totalCount"], 4, "{first:#}");
    assert_eq!(first["edges"].as_array().map(Vec::len), Some(3), "{first:#}");
    assert_eq!(first["pageInfo"]["hasNextPage"], true, "{first:#}");
    let end = s(&first, "/pageInfo/endCursor").to_owned();
    let second = app.accounts(Some("EXAMPLE"), 3, Some(&end)).await;
    assert_eq!(second["totalCount"], 4, "{second:#}");
    assert_eq!(second["edges"].as_array().map(Vec::len), Some(1), "{second:#}");
    assert_eq!(second["pageInfo"]["hasNextPage"], false, "{second:#}");
    let mut both: Vec<String> = external_ids(&first);
    both.extend(external_ids(&second));
    both.sort();
    assert_eq!(both, vec!["cust-alice", "cust-bob", "cust-carol", "other-1"]);

    // Page sizes and cursors are checked.
    for first in [0, 101, -1] {
        let body = app
            .run(Some(&app.admin()), "admin", "Accounts", json!({ "first": first }))
            .await;
        if first == 0 {
            // An empty page is a fair answer to first: 0; an error must be BAD_USER_INPUT.
            if error_codes(&body).is_empty() {
                assert_eq!(body["data"]["accounts"]["edges"], json!([]), "{body:#}");
            } else {
                assert_failed(&body, "BAD_USER_INPUT");
            }
        } else {
            assert_failed(&body, "BAD_USER_INPUT");
        }
    }
    let body = app
        .run(
            Some(&app.admin()),
            "admin",
            "Accounts",
            json!({ "first": 2, "after": "not-a-cursor" }),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    let hundred = app.accounts(None, 100, None).await;
    assert_eq!(hundred["totalCount"], 5, "{hundred:#}");
}

#[tokio::test]
async fn account_detail_shows_balances_friends_and_history() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.postpaid_rules("10", "5").await;
    let alice = app.register("acct-a", Some("Alice Adams"), None).await;
    let a_id = s(&alice, "/account/id").to_owned();
    let a_code = s(&alice, "/account/referralCode").to_owned();
    app.register("acct-b", Some("Bob Brown"), Some(&a_code)).await;
    app.register("acct-c", Some("Carol Clark"), Some(&a_code)).await;
    app.verify_payment("evt-pm-b", "acct-b").await; // A: 10 credit
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points

    let detail = app.account_detail(&a_id).await;
    assert_eq!(detail["id"], a_id.as_str(), "{detail:#}");
    assert_eq!(detail["externalId"], "acct-a", "{detail:#}");
    assert_eq!(detail["referralCode"], a_code.as_str(), "{detail:#}");
    assert_eq!(
        detail["referralLink"],
        format!("{PUBLIC_URL}/r/{a_code}").as_str(),
        "{detail:#}"
    );
    assert_eq!(
        detail["points"],
        json!({ "available": "150.00", "pending": "0.00", "lifetimeEarned": "150.00" }),
        "{detail:#}"
    );
    assert_eq!(
        detail["credit"],
        json!({ "available": "10.00", "pending": "0.00", "lifetimeEarned": "10.00" }),
        "{detail:#}"
    );
    assert_eq!(
        detail["cash"],
        json!({ "available": "0.00", "pending": "0.00", "lifetimeEarned": "0.00" }),
        "{detail:#}"
    );

    let friends = &detail["referredFriends"];
    assert_eq!(friends["totalCount"], 2, "{detail:#}");
    let friend = |external_id: &str| -> Value {
        nodes(friends)
            .into_iter()
            .find(|n| n["referee"]["account"]["externalId"] == external_id)
            .unwrap_or_else(|| panic!("no friend {external_id} in {detail:#}"))
    };
    let b = friend("acct-b");
    assert_eq!(b["status"], "QUALIFIED", "{b:#}");
    assert_eq!(b["referee"]["displayName"], "Bob Brown", "admins see full names: {b:#}");
    let mut earned: Vec<(String, String)> = b["earned"]
        .as_array()
        .expect("earned")
        .iter()
        .map(|e| (s(e, "/unit").to_owned(), s(e, "/amount").to_owned()))
        .collect();
    earned.sort();
    assert_eq!(
        earned,
        vec![
            ("CREDIT".to_owned(), "10.00".to_owned()),
            ("POINTS".to_owned(), "150.00".to_owned())
        ],
        "{b:#}"
    );
    let c = friend("acct-c");
    assert_eq!(c["status"], "PENDING", "{c:#}");
    assert_eq!(c["earned"], json!([]), "{c:#}");

    let history = &detail["rewardHistory"];
    assert_eq!(history["totalCount"], 2, "{detail:#}");
    let mut entries: Vec<(String, String, String, String)> = nodes(history)
        .iter()
        .map(|e| {
            assert!(!s(e, "/description").is_empty(), "{e:#}");
            assert!(e["createdAt"].is_string(), "{e:#}");
            (
                s(e, "/kind").to_owned(),
                s(e, "/unit").to_owned(),
                s(e, "/amount").to_owned(),
                s(e, "/status").to_owned(),
            )
        })
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("REWARD".into(), "CREDIT".into(), "10.00".into(), "POSTED".into()),
            ("REWARD".into(), "POINTS".into(), "150.00".into(), "POSTED".into()),
        ],
        "{detail:#}"
    );

    // B's detail: its own credit, and no friends.
    let b_id = s(&nodes(&app.accounts(Some("acct-b"), 5, None).await)[0], "/id").to_owned();
    let b_detail = app.account_detail(&b_id).await;
    assert_eq!(b_detail["externalId"], "acct-b", "{b_detail:#}");
    assert_eq!(b_detail["credit"]["available"], "5.00", "{b_detail:#}");
    assert_eq!(b_detail["points"]["available"], "0.00", "{b_detail:#}");
    assert_eq!(b_detail["referredFriends"]["totalCount"], 0, "{b_detail:#}");

    // An unknown account is null, not an error.
    let unknown = app.account_detail(&unknown_id_like(&a_id)).await;
    assert!(unknown.is_null(), "{unknown:#}");
}

#[tokio::test]
async fn an_admin_changes_an_accounts_referral_code_and_the_old_one_stops_working() {
    let app = spawn_app().await;
    let alice = app.register("acct-a", Some("Alice Adams"), None).await;
    let a_id = s(&alice, "/account/id").to_owned();
    let old_code = s(&alice, "/account/referralCode").to_owned();
    let dan = app.register("acct-d", Some("Dan Dale"), None).await;
    let d_id = s(&dan, "/account/id").to_owned();
    let d_code = s(&dan, "/account/referralCode").to_owned();

    // Stored upper-case; the link follows.
    let changed = app.set_referral_code(&a_id, "cloud21").await;
    assert_eq!(
        changed,
        json!({
            "id": a_id,
            "referralCode": "CLOUD21",
            "referralLink": format!("{PUBLIC_URL}/r/CLOUD21"),
        }),
        "{changed:#}"
    );
    let dash = app.dashboard("acct-a", 5).await;
    assert_eq!(dash["me"]["referralCode"], "CLOUD21", "{dash:#}");
    assert_eq!(
        dash["me"]["referralLink"],
        format!("{PUBLIC_URL}/r/CLOUD21").as_str(),
        "{dash:#}"
    );
    let link = app
        .run_ok(
            Some(&app.customer("acct-a")),
            "customer",
            "GenerateReferralLink",
            json!({}),
        )
        .await;
    assert_eq!(
        link["generateReferralLink"],
        json!({ "code": "CLOUD21", "url": format!("{PUBLIC_URL}/r/CLOUD21") }),
        "{link:#}"
    );
    let detail = app.account_detail(&a_id).await;
    assert_eq!(detail["referralCode"], "CLOUD21", "{detail:#}");

    // The new code works in any case; the old one no longer does.
    let b = app.register("acct-b", Some("Bob Brown"), Some("Cloud21")).await;
    assert_eq!(b["referral"]["status"], "PENDING", "{b:#}");
    assert_eq!(b["referral"]["referrer"]["referralCode"], "CLOUD21", "{b:#}");
    let c = app.register("acct-c", Some("Carol Clark"), Some(&old_code)).await;
    assert_eq!(c["referral"]["status"], "REJECTED", "{c:#}");
    assert_eq!(c["referral"]["rejectionReason"], "UNKNOWN_CODE", "{c:#}");
    assert!(c["referral"]["referrer"].is_null(), "{c:#}");

    // Taken, in any case, by another account.
    let before = app.accounts(None, 20, None).await;
    for code in ["cloud21", "CLOUD21", "Cloud21", d_code.as_str()] {
        let target = if code == d_code { &a_id } else { &d_id };
        let body = app.set_referral_code_raw(target, code).await;
        assert_failed(&body, "CODE_TAKEN");
    }
    // Not 4 to 32 letters and digits.
    for code in [
        "",
        "abc",
        "cloud-21",
        "cloud 21",
        "cloud_21",
        "ÄBCD1",
        "A123456789012345678901234567890123",
        "'; DROP TABLE accounts; --",
    ] {
        let body = app.set_referral_code_raw(&d_id, code).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    assert_eq!(app.accounts(None, 20, None).await, before, "refusals change nothing");
    let body = app.set_referral_code_raw(&unknown_id_like(&d_id), "FRESH123").await;
    assert_failed(&body, "NOT_FOUND");

    // The shortest and the longest codes.
    let four = app.set_referral_code(&d_id, "ab12").await;
    assert_eq!(four["referralCode"], "AB12", "{four:#}");
    let long = "abcdefghij0123456789ABCDEFGHIJ12";
    assert_eq!(long.len(), 32);
    let long = app.set_referral_code(&d_id, long).await;
    assert_eq!(long["referralCode"], "ABCDEFGHIJ0123456789ABCDEFGHIJ12", "{long:#}");
    let e = app.register("acct-e", Some("Eve Evans"), Some("ab12")).await;
    assert_eq!(e["referral"]["rejectionReason"], "UNKNOWN_CODE", "{e:#}");

    // B signed up with CLOUD21: that stays, while its referrer's code moves on.
    app.set_referral_code(&a_id, "NEWCODE7").await;
    let found = app.accounts(Some("acct-b"), 5, None).await;
    let b_row = &nodes(&found)[0];
    assert_eq!(b_row["signedUpWithCode"], "CLOUD21", "{found:#}");
    assert_eq!(b_row["referral"]["referrer"]["referralCode"], "NEWCODE7", "{found:#}");
    let dash = app.dashboard("acct-b", 5).await;
    assert_eq!(
        dash["me"]["referral"]["referrer"]["referralCode"], "NEWCODE7",
        "{dash:#}"
    );
    let f = app.register("acct-f", Some("Fay Fox"), Some("cloud21")).await;
    assert_eq!(f["referral"]["rejectionReason"], "UNKNOWN_CODE", "{f:#}");
    let g = app.register("acct-g", Some("Gus Gray"), Some("newcode7")).await;
    assert_eq!(g["referral"]["status"], "PENDING", "{g:#}");
    assert_eq!(app.friends("acct-a").await.len(), 2);
}

/// The audit entries as (action, target, details as JSON, actor), newest first.
async fn audit_entries(app: &TestApp) -> Vec<Value> {
    let log = app.audit_log(100, None).await;
    let entries = nodes(&log);
    assert_eq!(log["totalCount"], entries.len(), "{log:#}");
    entries
}

/// The `before` and `after` of an audit entry's details, as JSON text.
fn before_after(entry: &Value) -> (String, String) {
    let details: Value = serde_json::from_str(s(entry, "/details"))
        .unwrap_or_else(|err| panic!("details are not JSON ({err}): {entry:#}"));
    assert!(
        details.get("before").is_some() && details.get("after").is_some(),
        "details have before and after: {entry:#}"
    );
    (details["before"].to_string(), details["after"].to_string())
}

/// The entry's `before` mentions `before` and its `after` mentions `after`.
fn assert_change(entry: &Value, what: &str, before: &str, after: &str) {
    let (was, is) = before_after(entry);
    assert!(
        was.contains(before) && is.contains(after),
        "{what}: expected a change from {before:?} to {after:?}: {entry:#}"
    );
    assert!(
        s(entry, "/actor").contains("admin-1"),
        "{what}: the actor names the admin (the token's subject): {entry:#}"
    );
}

#[tokio::test]
async fn the_audit_log_records_every_admin_change_with_its_actor_and_before_and_after() {
    let app = spawn_app().await;
    let baseline = app.audit_log(100, None).await["totalCount"]
        .as_i64()
        .expect("totalCount");
    let alice = app.register("acct-a", Some("Alice Adams"), None).await;
    let a_id = s(&alice, "/account/id").to_owned();
    let old_code = s(&alice, "/account/referralCode").to_owned();
    app.setup_catalog().await;
    let after_catalog = audit_entries(&app).await.len() as i64;
    assert!(
        after_catalog >= baseline + 3,
        "a provider and two products were written: {after_catalog} entries"
    );

    app.update_settings(json!({ "currency": "eur" })).await;
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "SetProductRate",
        json!({ "input": { "productKey": RESIDENTIAL, "productRate": "27" } }),
    )
    .await;
    app.set_redemption_rate(PROVIDER, "83").await;
    let rule_id = app
        .create_rule_id(fixed_credit_rule(
            "Audited rule",
            "PAYMENT_METHOD_VERIFIED",
            "REFERRER",
            "10",
        ))
        .await;
    app.update_rule(
        &rule_id,
        fixed_credit_rule("Audited rule, renamed", "PAYMENT_METHOD_VERIFIED", "REFERRER", "20"),
    )
    .await;
    app.set_referral_code(&a_id, "AUDIT42").await;

    let entries = audit_entries(&app).await;
    assert_eq!(entries.len() as i64, after_catalog + 6, "{entries:#?}");
    for entry in &entries {
        assert!(!s(entry, "/id").is_empty(), "{entry:#}");
        assert!(!s(entry, "/action").is_empty(), "{entry:#}");
        assert!(!s(entry, "/target").is_empty(), "{entry:#}");
        assert!(entry["createdAt"].is_string(), "{entry:#}");
        before_after(entry);
    }
    // The six changes, newest first, each with the admin who made it.
    assert_change(&entries[0], "the code", &old_code, "AUDIT42");
    assert_change(
        &entries[1],
        "the rule's update",
        "Audited rule",
        "Audited rule, renamed",
    );
    assert_change(&entries[2], "the rule's creation", "", "Audited rule");
    let (created_before, _) = before_after(&entries[2]);
    assert!(
        !created_before.contains("Audited rule"),
        "a created rule has no before: {:#}",
        entries[2]
    );
    assert_change(&entries[3], "the redemption rate", "100", "83");
    assert_change(&entries[4], "the product rate", "15", "27");
    assert_change(&entries[5], "the settings", "USD", "EUR");
    let mut targets: Vec<&str> = entries[..6].iter().map(|e| s(e, "/target")).collect();
    assert_eq!(
        targets[1], targets[2],
        "the rule's creation and update name the same target: {entries:#?}"
    );
    targets.dedup();
    assert_eq!(
        targets.len(),
        5,
        "the other changes name their own targets: {entries:#?}"
    );
    let times: Vec<_> = entries.iter().map(|e| instant(&e["createdAt"])).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {entries:#?}");

    // Refused changes and reads are not logged.
    let count = entries.len();
    let body = app.set_referral_code_raw(&a_id, "x").await;
    assert_failed(&body, "BAD_USER_INPUT");
    let body = app
        .create_rule_raw(fixed_credit_rule("Refused", "PAYMENT_METHOD_VERIFIED", "REFERRER", "0"))
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    app.rules().await;
    app.settings().await;
    app.accounts(None, 10, None).await;
    assert_eq!(audit_entries(&app).await.len(), count);

    // The log pages with cursors. The console's AuditLog reads only the first page, so the
    // cursors are asked for here with a query of our own.
    let query = "query AuditPage($first: Int!, $after: String) { auditLog(first: $first, after: $after) \
                 { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }";
    let ids = |page: &Value| -> Vec<String> {
        nodes(&page["data"]["auditLog"])
            .iter()
            .map(|n| s(n, "/id").to_owned())
            .collect()
    };
    let all_ids: Vec<String> = entries.iter().map(|e| s(e, "/id").to_owned()).collect();
    let first = app.gql(Some(&app.admin()), query, json!({ "first": 4 })).await;
    data_of(&first, "the audit log's first page");
    assert_eq!(first["data"]["auditLog"]["totalCount"], count, "{first:#}");
    assert_eq!(ids(&first), all_ids[..4].to_vec(), "{first:#}");
    assert_eq!(first["data"]["auditLog"]["pageInfo"]["hasNextPage"], true, "{first:#}");
    let end = s(&first, "/data/auditLog/pageInfo/endCursor").to_owned();
    let second = app
        .gql(Some(&app.admin()), query, json!({ "first": 4, "after": end }))
        .await;
    data_of(&second, "the audit log's second page");
    assert_eq!(ids(&second), all_ids[4..count.min(8)].to_vec(), "{second:#}");
}

#[tokio::test]
async fn customers_and_the_billing_system_cannot_run_admin_operations() {
    let app = spawn_app().await;
    let rule_id = app
        .create_rule_id(fixed_credit_rule(
            "Secret rule 7f3",
            "PAYMENT_METHOD_VERIFIED",
            "REFERRER",
            "10",
        ))
        .await;
    let alice = app.register("acct-a", Some("Alice Adams"), None).await;
    let a_id = s(&alice, "/account/id").to_owned();
    let customer = app.customer("acct-a");
    let service = app.service();
    let rules_before = app.rules().await;
    let accounts_before = app.accounts(None, 20, None).await;
    let audit_before = app.audit_log(100, None).await;
    let snapshot_before = app.snapshot().await;

    let cases = [
        ("RewardRules", json!({})),
        (
            "CreateRewardRule",
            json!({ "input": fixed_credit_rule("Evil", "SIGNUP", "REFEREE", "1000") }),
        ),
        (
            "UpdateRewardRule",
            json!({ "id": rule_id, "input": fixed_credit_rule("Evil", "SIGNUP", "REFEREE", "1000") }),
        ),
        ("Accounts", json!({ "first": 10 })),
        ("Accounts", json!({ "search": "acct", "first": 10 })),
        ("AccountDetail", json!({ "id": a_id })),
        (
            "SetReferralCode",
            json!({ "input": { "accountId": a_id, "code": "EVIL1234" } }),
        ),
        ("AuditLog", json!({ "first": 10 })),
    ];
    for (op, vars) in cases {
        for (who, token) in [("customer", Some(&customer)), ("service", Some(&service))] {
            let body = app.run(token.map(String::as_str), "admin", op, vars.clone()).await;
            assert_failed(&body, "FORBIDDEN");
            let text = body.to_string();
            assert!(
                !text.contains("Alice Adams") && !text.contains("Secret rule 7f3"),
                "{who} sees admin data through {op}: {body:#}"
            );
        }
        let body = app.run(None, "admin", op, vars).await;
        assert_failed(&body, "UNAUTHENTICATED");
    }

    assert_eq!(app.rules().await, rules_before);
    assert_eq!(app.accounts(None, 20, None).await, accounts_before);
    assert_eq!(app.audit_log(100, None).await, audit_before);
    assert_eq!(app.snapshot().await, snapshot_before);
}
