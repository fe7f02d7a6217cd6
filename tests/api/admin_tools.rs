//! The admin's day-to-day tools: the referral list, rejecting a referral, adjusting a balance,
//! the program report.

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The number in an id such as `ref_12`.
fn id_number(id: &str) -> i64 {
    id.trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|e| panic!("no number in the id {id:?}: {e}"))
}

/// What a referral's referrer earned through it, every unit together, in millionths.
fn earned_micros(node: &Value) -> i64 {
    node["earned"]
        .as_array()
        .unwrap_or_else(|| panic!("no earned list in {node:#}"))
        .iter()
        .map(|e| micros(s(e, "/amount")))
        .sum()
}

fn parse_time(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("not a date-time {text:?}: {e}"))
}

/// One page of the admin's referral list; `referrals`.
async fn referral_page(app: &TestApp, filter: &Value, order: Option<&str>, first: i64, after: Option<&str>) -> Value {
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "Referrals",
            json!({ "filter": filter, "orderBy": order, "first": first, "after": after }),
        )
        .await;
    data["referrals"].clone()
}

/// How many referrals the filter lets through.
async fn referral_count(app: &TestApp, filter: Value) -> i64 {
    referral_page(app, &filter, None, 1, None).await["totalCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("no totalCount for {filter}"))
}

/// Every referral the filter lets through, in the given order, page by page (`first` each):
/// the total announced and the nodes, in the order the pages gave them.
async fn all_referrals(app: &TestApp, filter: Value, order: Option<&str>, first: i64) -> (i64, Vec<Value>) {
    let mut after: Option<String> = None;
    let mut out = Vec::new();
    let mut total: Option<i64> = None;
    for _ in 0..1000 {
        let page = referral_page(app, &filter, order, first, after.as_deref()).await;
        let count = page["totalCount"].as_i64().expect("totalCount");
        if let Some(total) = total {
            assert_eq!(total, count, "the total changes between pages: {page:#}");
        }
        total = Some(count);
        let page_nodes = nodes(&page);
        assert!(page_nodes.len() as i64 <= first, "a page longer than first: {page:#}");
        out.extend(page_nodes);
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            return (count, out);
        }
        after = Some(s(&page, "/pageInfo/endCursor").to_owned());
    }
    panic!("paging through the referrals never ends");
}

/// The actions of the audit log's latest 100 entries.
async fn audit_actions(app: &TestApp) -> Vec<String> {
    nodes(&app.audit_log(100, None).await)
        .iter()
        .map(|n| s(n, "/action").to_owned())
        .collect()
}

async fn close_account(app: &TestApp, event_id: &str, external_id: &str) {
    app.run_ok(
        Some(&app.service()),
        "integration",
        "CloseAccount",
        json!({ "input": { "eventId": event_id, "externalId": external_id } }),
    )
    .await;
}

/// AdjustBalance as an admin; the whole body.
async fn adjust_raw(app: &TestApp, vars: Value) -> Value {
    app.run(Some(&app.admin()), "admin", "AdjustBalance", vars).await
}

/// AdjustBalance that must succeed; its data.
async fn adjust_ok(app: &TestApp, vars: Value) -> Value {
    app.run_ok(Some(&app.admin()), "admin", "AdjustBalance", vars).await
}

#[tokio::test]
async fn the_referral_list_filters_orders_and_pages_through_every_referral() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let main = app.register("lst-referrer", Some("Main Referrer"), None).await;
    let main_code = s(&main, "/account/referralCode").to_owned();
    let main_id = s(&main, "/account/id").to_owned();
    let other = app.register("lst-other-referrer", Some("Other Referrer"), None).await;
    let other_code = s(&other, "/account/referralCode").to_owned();
    let other_id = s(&other, "/account/id").to_owned();

    // 200 friends of the main referrer; every third buys (1 to 5 GB residential, 15 points
    // per GB for the referrer); every tenth (from 1) closes its account afterwards.
    let mut expected_earned: BTreeMap<String, i64> = BTreeMap::new();
    let mut qualified = BTreeSet::new();
    let mut closed = BTreeSet::new();
    for i in 0..200 {
        let ext = format!("lst-friend-{i:03}");
        let registered = app.register(&ext, None, Some(&main_code)).await;
        assert_eq!(registered["referral"]["status"], "PENDING", "{registered:#}");
        expected_earned.insert(ext.clone(), 0);
    }
    for i in 0..200 {
        let ext = format!("lst-friend-{i:03}");
        if i % 3 == 0 {
            let gb = i % 5 + 1;
            let paid = app
                .purchase(&format!("lst-buy-{i}"), &ext, RESIDENTIAL, &gb.to_string())
                .await;
            let rewards = paid["rewards"].as_array().expect("rewards");
            assert_eq!(rewards.len(), 1, "{paid:#}");
            assert_eq!(micros(s(&rewards[0], "/amount")), 15 * gb * 1_000_000, "{paid:#}");
            expected_earned.insert(ext.clone(), 15 * gb * 1_000_000);
            qualified.insert(ext.clone());
        }
    }
    for i in 0..200 {
        if i % 10 == 1 {
            let ext = format!("lst-friend-{i:03}");
            close_account(&app, &format!("lst-close-{i}"), &ext).await;
            closed.insert(ext);
        }
    }
    // Five friends of another referrer, none buying.
    for i in 0..5 {
        let ext = format!("lst-other-{i}");
        app.register(&ext, None, Some(&other_code)).await;
        expected_earned.insert(ext, 0);
    }
    let total = 205_i64;
    let qualified_count = qualified.len() as i64;
    let closed_count = closed.len() as i64;
    assert_eq!((qualified_count, closed_count), (67, 20));

    // Totals per filter.
    assert_eq!(referral_count(&app, json!(null)).await, total);
    assert_eq!(referral_count(&app, json!({})).await, total);
    assert_eq!(
        referral_count(&app, json!({ "status": "QUALIFIED" })).await,
        qualified_count
    );
    assert_eq!(
        referral_count(&app, json!({ "status": "PENDING" })).await,
        total - qualified_count
    );
    assert_eq!(referral_count(&app, json!({ "status": "REJECTED" })).await, 0);
    assert_eq!(
        referral_count(&app, json!({ "refereeClosed": true })).await,
        closed_count
    );
    assert_eq!(
        referral_count(&app, json!({ "refereeClosed": false })).await,
        total - closed_count
    );
    let closed_and_qualified = closed.intersection(&qualified).count() as i64;
    assert_eq!(
        referral_count(&app, json!({ "status": "QUALIFIED", "refereeClosed": true })).await,
        closed_and_qualified
    );
    assert_eq!(referral_count(&app, json!({ "referrerId": main_id })).await, 200);
    assert_eq!(referral_count(&app, json!({ "referrerId": other_id })).await, 5);
    assert_eq!(
        referral_count(&app, json!({ "referrerId": other_id, "status": "QUALIFIED" })).await,
        0
    );

    // Search: a fragment of the referees' externalIds, in another case.
    let (found, found_nodes) = all_referrals(&app, json!({ "search": "FRIEND-04" }), None, 100).await;
    assert_eq!(found, 10);
    let mut found_ids: Vec<String> = found_nodes
        .iter()
        .map(|n| s(n, "/referee/account/externalId").to_owned())
        .collect();
    found_ids.sort();
    let expected: Vec<String> = (40..50).map(|i| format!("lst-friend-{i:03}")).collect();
    assert_eq!(found_ids, expected);
    assert_eq!(referral_count(&app, json!({ "search": "Lst-Other-" })).await, 5);
    assert_eq!(
        referral_count(&app, json!({ "search": "no-such-referee-zzz" })).await,
        0
    );

    // NEWEST (the default) and OLDEST, paging through everything: each referral once.
    let (count, newest) = all_referrals(&app, json!(null), Some("NEWEST"), 37).await;
    assert_eq!(count, total);
    assert_eq!(newest.len() as i64, total);
    let newest_ids: Vec<i64> = newest.iter().map(|n| id_number(s(n, "/id"))).collect();
    assert!(
        newest_ids.windows(2).all(|w| w[0] > w[1]),
        "NEWEST is not by descending id: {newest_ids:?}"
    );
    let distinct: BTreeSet<i64> = newest_ids.iter().copied().collect();
    assert_eq!(distinct.len() as i64, total, "paging visited a referral twice");
    let visited: BTreeSet<String> = newest
        .iter()
        .map(|n| s(n, "/referee/account/externalId").to_owned())
        .collect();
    let everyone: BTreeSet<String> = expected_earned.keys().cloned().collect();
    assert_eq!(visited, everyone, "paging must visit every referral");
    let (_, default_order) = all_referrals(&app, json!(null), None, 100).await;
    let default_ids: Vec<i64> = default_order.iter().map(|n| id_number(s(n, "/id"))).collect();
    assert_eq!(default_ids, newest_ids, "the default order is NEWEST");

    let (count, oldest) = all_referrals(&app, json!(null), Some("OLDEST"), 50).await;
    assert_eq!(count, total);
    let oldest_ids: Vec<i64> = oldest.iter().map(|n| id_number(s(n, "/id"))).collect();
    assert!(
        oldest_ids.windows(2).all(|w| w[0] < w[1]),
        "OLDEST is not by ascending id: {oldest_ids:?}"
    );
    assert_eq!(oldest_ids.len() as i64, total);

    // Each node's status, closure and earnings are what the test did.
    for node in &oldest {
        let ext = s(node, "/referee/account/externalId");
        let want_status = if qualified.contains(ext) {
            "QUALIFIED"
        } else {
            "PENDING"
        };
        assert_eq!(node["status"], want_status, "{node:#}");
        let want_account = if closed.contains(ext) { "CLOSED" } else { "ACTIVE" };
        assert_eq!(node["referee"]["accountStatus"], want_account, "{node:#}");
        assert_eq!(earned_micros(node), expected_earned[ext], "{node:#}");
    }

    // MOST_EARNED and LEAST_EARNED, through every page.
    let (count, most) = all_referrals(&app, json!(null), Some("MOST_EARNED"), 40).await;
    assert_eq!(count, total);
    assert_eq!(most.len() as i64, total);
    let most_earned: Vec<i64> = most.iter().map(earned_micros).collect();
    assert!(
        most_earned.windows(2).all(|w| w[0] >= w[1]),
        "MOST_EARNED is not non-increasing: {most_earned:?}"
    );
    assert_eq!(most_earned[0], 75_000_000, "the most any friend earned is 5 GB × 15");
    let most_ids: BTreeSet<i64> = most.iter().map(|n| id_number(s(n, "/id"))).collect();
    assert_eq!(
        most_ids.len() as i64,
        total,
        "MOST_EARNED paging visited a referral twice"
    );
    let (count, least) = all_referrals(&app, json!(null), Some("LEAST_EARNED"), 40).await;
    assert_eq!(count, total);
    let least_earned: Vec<i64> = least.iter().map(earned_micros).collect();
    assert!(
        least_earned.windows(2).all(|w| w[0] <= w[1]),
        "LEAST_EARNED is not non-decreasing: {least_earned:?}"
    );
    let least_ids: BTreeSet<i64> = least.iter().map(|n| id_number(s(n, "/id"))).collect();
    assert_eq!(
        least_ids.len() as i64,
        total,
        "LEAST_EARNED paging visited a referral twice"
    );

    // createdFrom (included) and createdTo (excluded) around the 100th oldest referral.
    let times: Vec<_> = oldest.iter().map(|n| parse_time(s(n, "/createdAt"))).collect();
    let bound_text = s(&oldest[100], "/createdAt").to_owned();
    let bound = parse_time(&bound_text);
    let from_expected = times.iter().filter(|t| **t >= bound).count() as i64;
    let to_expected = times.iter().filter(|t| **t < bound).count() as i64;
    assert_eq!(from_expected + to_expected, total);
    assert!(from_expected >= 105, "{from_expected}");
    assert_eq!(
        referral_count(&app, json!({ "createdFrom": bound_text })).await,
        from_expected
    );
    assert_eq!(
        referral_count(&app, json!({ "createdTo": bound_text })).await,
        to_expected
    );
    assert_eq!(
        referral_count(&app, json!({ "createdFrom": bound_text, "createdTo": bound_text })).await,
        0
    );
    assert_eq!(
        referral_count(&app, json!({ "createdTo": "2000-01-01T00:00:00Z" })).await,
        0
    );
    assert_eq!(
        referral_count(&app, json!({ "createdFrom": "2000-01-01T00:00:00Z" })).await,
        total
    );
    assert_eq!(
        referral_count(
            &app,
            json!({ "createdFrom": "2000-01-01T00:00:00Z", "status": "QUALIFIED" })
        )
        .await,
        qualified_count
    );

    // createdFrom after createdTo is refused.
    let body = app
        .run(
            Some(&app.admin()),
            "admin",
            "Referrals",
            json!({
                "filter": { "createdFrom": "2030-01-02T00:00:00Z", "createdTo": "2030-01-01T00:00:00Z" },
                "first": 10,
            }),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn rejecting_a_paid_referral_takes_its_reward_back_once_and_stops_later_rewards() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let referrer = app.register_code("rj-referrer", Some("Rita Referrer"), None).await;
    let paid_friend = app.register("rj-paid", Some("Paul Paid"), Some(&referrer)).await;
    let paid_referral = s(&paid_friend, "/referral/id").to_owned();
    app.register("rj-kept", Some("Kim Kept"), Some(&referrer)).await;
    let pending_friend = app.register("rj-pending", Some("Pat Pending"), Some(&referrer)).await;
    let pending_referral = s(&pending_friend, "/referral/id").to_owned();

    let paid = app.purchase("rj-buy-1", "rj-paid", RESIDENTIAL, "10").await;
    assert_eq!(paid["rewards"][0]["amount"], "150.00", "{paid:#}");
    assert_eq!(paid["rewards"][0]["status"], "POSTED", "{paid:#}");
    let kept = app.purchase("rj-buy-2", "rj-kept", RESIDENTIAL, "4").await;
    assert_eq!(kept["rewards"][0]["amount"], "60.00", "{kept:#}");
    assert_eq!(app.available_points("rj-referrer").await, "210.00");

    // The rejection: REJECTED, MANUAL, the 150 points reversed, audited.
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "RejectReferral",
            json!({ "input": { "referralId": paid_referral, "reason": "the same person twice" } }),
        )
        .await;
    let rejected = &data["rejectReferral"];
    assert_eq!(rejected["id"], json!(paid_referral), "{data:#}");
    assert_eq!(rejected["status"], "REJECTED", "{data:#}");
    assert_eq!(rejected["rejectionReason"], "MANUAL", "{data:#}");
    assert_eq!(app.available_points("rj-referrer").await, "60.00");
    let history = app.history("rj-referrer").await;
    let reversals: Vec<&Value> = history.iter().filter(|e| e["kind"] == "REVERSAL").collect();
    assert_eq!(reversals.len(), 1, "{history:#?}");
    assert_eq!(micros(s(reversals[0], "/amount")), -150_000_000, "{history:#?}");
    let rejections = |actions: Vec<String>| actions.iter().filter(|a| *a == "REJECT_REFERRAL").count();
    assert_eq!(rejections(audit_actions(&app).await), 1);

    // Again: the same answer, nothing changed.
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "RejectReferral",
            json!({ "input": { "referralId": paid_referral, "reason": "again" } }),
        )
        .await;
    assert_eq!(data["rejectReferral"]["status"], "REJECTED", "{data:#}");
    assert_eq!(data["rejectReferral"]["rejectionReason"], "MANUAL", "{data:#}");
    assert_eq!(app.available_points("rj-referrer").await, "60.00");
    let history_again = app.history("rj-referrer").await;
    assert_eq!(history_again.len(), history.len(), "{history_again:#?}");
    assert_eq!(rejections(audit_actions(&app).await), 1);

    // The rejected referee's later purchase pays nothing.
    let later = app.purchase("rj-buy-3", "rj-paid", RESIDENTIAL, "20").await;
    assert_eq!(later["rewards"], json!([]), "{later:#}");
    // A referral rejected before its first purchase: that first purchase pays nothing either.
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "RejectReferral",
            json!({ "input": { "referralId": pending_referral } }),
        )
        .await;
    assert_eq!(data["rejectReferral"]["status"], "REJECTED", "{data:#}");
    assert_eq!(app.available_points("rj-referrer").await, "60.00");
    let first = app.purchase("rj-buy-4", "rj-pending", RESIDENTIAL, "3").await;
    assert_eq!(first["rewards"], json!([]), "{first:#}");
    assert_eq!(app.points("rj-referrer").await.0, "60.00");
    assert_eq!(app.points("rj-referrer").await.1, "0.00");

    // The list shows both as rejected, the other still qualified.
    let (count, rejected_nodes) = all_referrals(&app, json!({ "status": "REJECTED" }), None, 10).await;
    assert_eq!(count, 2);
    for node in &rejected_nodes {
        assert_eq!(node["rejectionReason"], "MANUAL", "{node:#}");
    }
    assert_eq!(referral_count(&app, json!({ "status": "QUALIFIED" })).await, 1);

    // An unknown referral.
    let body = app
        .run(
            Some(&app.admin()),
            "admin",
            "RejectReferral",
            json!({ "input": { "referralId": "ref_999999", "reason": "nobody" } }),
        )
        .await;
    assert_failed(&body, "NOT_FOUND");

    app.assert_invariants().await;
}

#[tokio::test]
async fn adjusting_a_balance_posts_an_adjustment_once_per_key_and_never_below_zero() {
    let app = spawn_app().await;
    let account = app.register("adj-1", Some("Ada Adjusted"), None).await;
    let id = s(&account, "/account/id").to_owned();
    let adjust = |amount: &str, reason: &str, key: Option<&str>| {
        let mut input = json!({ "accountId": id, "unit": "CREDIT", "amount": amount, "reason": reason });
        if let Some(key) = key {
            input["idempotencyKey"] = json!(key);
        }
        json!({ "input": input })
    };

    // +5: a posted ADJUSTMENT, available at once.
    let data = adjust_ok(&app, adjust("5", "goodwill", Some("adj-key-1"))).await;
    let entry = data["adjustBalance"].clone();
    assert_eq!(entry["kind"], "ADJUSTMENT", "{entry:#}");
    assert_eq!(entry["unit"], "CREDIT", "{entry:#}");
    assert_eq!(entry["amount"], "5.00", "{entry:#}");
    assert_eq!(entry["status"], "POSTED", "{entry:#}");
    assert_eq!(app.available_credit("adj-1").await, "5.00");

    // The same key and input: the same entry, moved once.
    let data = adjust_ok(&app, adjust("5", "goodwill", Some("adj-key-1"))).await;
    assert_eq!(data["adjustBalance"]["id"], entry["id"], "{data:#}");
    assert_eq!(data["adjustBalance"]["amount"], "5.00", "{data:#}");
    assert_eq!(app.available_credit("adj-1").await, "5.00");

    // The same key, another amount: refused, nothing moved.
    let body = adjust_raw(&app, adjust("6", "goodwill", Some("adj-key-1"))).await;
    assert_failed(&body, "IDEMPOTENCY_CONFLICT");
    assert_eq!(app.available_credit("adj-1").await, "5.00");

    // -2: 3 left.
    let data = adjust_ok(&app, adjust("-2", "correction", None)).await;
    assert_eq!(data["adjustBalance"]["kind"], "ADJUSTMENT", "{data:#}");
    assert_eq!(data["adjustBalance"]["amount"], "-2.00", "{data:#}");
    assert_ne!(data["adjustBalance"]["id"], entry["id"], "{data:#}");
    assert_eq!(app.available_credit("adj-1").await, "3.00");

    // -10: more than is available.
    let body = adjust_raw(&app, adjust("-10", "too much", None)).await;
    assert_failed(&body, "INSUFFICIENT_BALANCE");
    assert_eq!(app.available_credit("adj-1").await, "3.00");

    // Zero, and no reason.
    let body = adjust_raw(&app, adjust("0", "nothing", None)).await;
    assert_failed(&body, "BAD_USER_INPUT");
    let body = adjust_raw(&app, adjust("1", "", None)).await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(app.available_credit("adj-1").await, "3.00");

    // The history shows both adjustments; the audit log both, once each.
    let history = app.history("adj-1").await;
    let mut amounts: Vec<String> = history
        .iter()
        .filter(|e| e["kind"] == "ADJUSTMENT")
        .map(|e| s(e, "/amount").to_owned())
        .collect();
    amounts.sort();
    assert_eq!(amounts, vec!["-2.00".to_owned(), "5.00".to_owned()], "{history:#?}");
    let adjustments = audit_actions(&app)
        .await
        .iter()
        .filter(|a| *a == "ADJUST_BALANCE")
        .count();
    assert_eq!(adjustments, 2);

    app.assert_invariants().await;
}

const REPORT: &str = "query Report($from: DateTime, $to: DateTime) {
  programReport(from: $from, to: $to) {
    accounts referrals qualifiedReferrals clicks
    granted { unit amount }
    reversed { unit amount }
    expired { unit amount }
    outstanding { unit amount }
  }
}";

async fn report(app: &TestApp, from: Option<&str>, to: Option<&str>) -> Value {
    let body = app
        .gql(Some(&app.admin()), REPORT, json!({ "from": from, "to": to }))
        .await;
    data_of(&body, "programReport")["programReport"].clone()
}

/// A report's list per unit, checked to be POINTS, CREDIT, CASH in that order: millionths.
fn per_unit(report: &Value, field: &str) -> [i64; 3] {
    let list = report[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {report:#}"));
    let units: Vec<&str> = list.iter().map(|u| s(u, "/unit")).collect();
    assert_eq!(units, ["POINTS", "CREDIT", "CASH"], "{field}: {report:#}");
    [
        micros(s(&list[0], "/amount")),
        micros(s(&list[1], "/amount")),
        micros(s(&list[2], "/amount")),
    ]
}

#[tokio::test]
async fn the_program_report_matches_what_the_accounts_show() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let p1 = app.register_code("rep-p1", Some("Penny One"), None).await;
    let p2 = app.register_code("rep-p2", Some("Peter Two"), None).await;
    let mut registered = vec!["rep-p1".to_owned(), "rep-p2".to_owned()];
    let mut referrals = Vec::new();
    for (ext, code) in [
        ("rep-f1", &p1),
        ("rep-f2", &p1),
        ("rep-f3", &p1),
        ("rep-f4", &p1),
        ("rep-g1", &p2),
        ("rep-g2", &p2),
    ] {
        let friend = app.register(ext, None, Some(code.as_str())).await;
        referrals.push((ext, s(&friend, "/referral/id").to_owned()));
        registered.push(ext.to_owned());
    }
    app.register("rep-solo", Some("Solo Sam"), None).await;
    registered.push("rep-solo".to_owned());

    // Purchases that pay the referrers: 150, 37.50 and 60 points.
    let mut granted_points = 0_i64;
    for (event, ext, gb) in [
        ("rep-buy-1", "rep-f1", "10"),
        ("rep-buy-2", "rep-f2", "2.5"),
        ("rep-buy-3", "rep-g1", "4"),
    ] {
        let paid = app.purchase(event, ext, RESIDENTIAL, gb).await;
        let rewards = paid["rewards"].as_array().expect("rewards");
        assert_eq!(rewards.len(), 1, "{paid:#}");
        assert_eq!(rewards[0]["unit"], "POINTS", "{paid:#}");
        granted_points += micros(s(&rewards[0], "/amount"));
    }
    assert_eq!(granted_points, 247_500_000);
    // A datacenter purchase pays nothing.
    let nothing = app.purchase("rep-buy-4", "rep-f3", DATACENTER, "8").await;
    assert_eq!(nothing["rewards"], json!([]), "{nothing:#}");

    // An adjustment of credit, and the rejection of f2's referral (37.50 points back).
    let solo = app.accounts(Some("rep-solo"), 1, None).await;
    let solo_id = s(&nodes(&solo)[0], "/id").to_owned();
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "AdjustBalance",
        json!({ "input": { "accountId": solo_id, "unit": "CREDIT", "amount": "12.50", "reason": "apology" } }),
    )
    .await;
    let f2_referral = &referrals.iter().find(|(ext, _)| *ext == "rep-f2").expect("f2").1;
    app.run_ok(
        Some(&app.admin()),
        "admin",
        "RejectReferral",
        json!({ "input": { "referralId": f2_referral } }),
    )
    .await;
    let reversed_points = 37_500_000_i64;

    // The figures the test knows: 9 accounts; f1 and g1 qualified, f3, f4, g2 pending, f2
    // rejected.
    let expected_accounts = registered.len() as i64;
    assert_eq!(expected_accounts, 9);
    let expected_referrals = 5;
    let expected_qualified = 2;

    // Outstanding: every account's available and pending, read one by one.
    let mut outstanding_points = 0_i64;
    let mut outstanding_credit = 0_i64;
    for ext in &registered {
        let (available, pending, _) = app.points(ext).await;
        outstanding_points += micros(&available) + micros(&pending);
        let (available, pending, _) = app.credit(ext).await;
        outstanding_credit += micros(&available) + micros(&pending);
    }
    assert_eq!(outstanding_points, granted_points - reversed_points);
    assert_eq!(outstanding_credit, 12_500_000);

    let all = report(&app, None, None).await;
    assert_eq!(all["accounts"], json!(expected_accounts), "{all:#}");
    assert_eq!(all["referrals"], json!(expected_referrals), "{all:#}");
    assert_eq!(all["qualifiedReferrals"], json!(expected_qualified), "{all:#}");
    assert_eq!(all["clicks"], json!(0), "{all:#}");
    assert_eq!(per_unit(&all, "granted"), [granted_points, 0, 0], "{all:#}");
    assert_eq!(per_unit(&all, "reversed"), [reversed_points, 0, 0], "{all:#}");
    assert_eq!(per_unit(&all, "expired"), [0, 0, 0], "{all:#}");
    assert_eq!(
        per_unit(&all, "outstanding"),
        [outstanding_points, outstanding_credit, 0],
        "{all:#}"
    );
    assert_eq!(all["granted"][0]["amount"], "247.50", "{all:#}");

    // A period around everything gives the same figures.
    let around = report(&app, Some("2000-01-01T00:00:00Z"), Some("2100-01-01T00:00:00Z")).await;
    assert_eq!(around, all);

    // A period that ended before anything happened: no counts, nothing granted; what is
    // outstanding is now's, whatever the period.
    let before = report(&app, None, Some("2000-01-01T00:00:00Z")).await;
    assert_eq!(before["accounts"], json!(0), "{before:#}");
    assert_eq!(before["referrals"], json!(0), "{before:#}");
    assert_eq!(before["qualifiedReferrals"], json!(0), "{before:#}");
    assert_eq!(before["clicks"], json!(0), "{before:#}");
    assert_eq!(per_unit(&before, "granted"), [0, 0, 0], "{before:#}");
    assert_eq!(per_unit(&before, "reversed"), [0, 0, 0], "{before:#}");
    assert_eq!(
        per_unit(&before, "outstanding"),
        [outstanding_points, outstanding_credit, 0],
        "{before:#}"
    );
    assert_eq!(before["granted"][0]["amount"], "0.00", "{before:#}");

    app.assert_invariants().await;
}
