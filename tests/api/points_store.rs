//! Program 3, the proxy-data points store: the referrer earns `product rate × GB` points on a
//! friend's first residential purchase, and spends them in the reward store.

use crate::helpers::*;
use serde_json::{Value, json};

fn amounts(edges: &Value) -> Vec<String> {
    edges
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {edges:#}"))
        .iter()
        .map(|e| s(e, "/node/amount").to_owned())
        .collect()
}

fn kinds(edges: &Value) -> Vec<String> {
    edges
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {edges:#}"))
        .iter()
        .map(|e| s(e, "/node/kind").to_owned())
        .collect()
}

fn names(edges: &Value) -> Vec<String> {
    edges
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {edges:#}"))
        .iter()
        .map(|e| s(e, "/node/referee/displayName").to_owned())
        .collect()
}

#[tokio::test]
async fn a_referral_chain_pays_each_referrer_for_its_friends_first_residential_purchase() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let (a_code, b_code) = app.chain().await;

    // B's first purchase, 10 GB at 15 points per GB: A earns 150.
    let paid = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(paid["event"]["eventId"], "evt-b-1", "{paid:#}");
    assert_eq!(paid["event"]["kind"], "PURCHASE", "{paid:#}");
    assert_eq!(paid["event"]["duplicate"], false, "{paid:#}");
    let rewards = paid["rewards"].as_array().expect("rewards");
    assert_eq!(rewards.len(), 1, "{paid:#}");
    assert_eq!(rewards[0]["account"]["externalId"], "acct-a", "{paid:#}");
    assert_eq!(rewards[0]["kind"], "REWARD", "{paid:#}");
    assert_eq!(rewards[0]["unit"], "POINTS", "{paid:#}");
    assert_eq!(rewards[0]["amount"], "150.00", "{paid:#}");
    assert_eq!(rewards[0]["status"], "POSTED", "{paid:#}");
    let decisions = paid["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 1, "one seeded rule: {paid:#}");
    assert_eq!(decisions[0]["outcome"], "REWARDED", "{paid:#}");
    assert!(!s(&decisions[0], "/rule/name").is_empty(), "{paid:#}");
    assert!(!s(&decisions[0], "/reason").is_empty(), "{paid:#}");

    // C's first purchase, 2.5 GB: B earns 37.50, and A nothing (one level only).
    let paid = app.purchase("evt-c-1", "acct-c", RESIDENTIAL, "2.5").await;
    let rewards = paid["rewards"].as_array().expect("rewards");
    assert_eq!(rewards.len(), 1, "{paid:#}");
    assert_eq!(rewards[0]["account"]["externalId"], "acct-b", "{paid:#}");
    assert_eq!(rewards[0]["amount"], "37.50", "{paid:#}");

    assert_eq!(
        app.points("acct-a").await,
        ("150.00".into(), "0.00".into(), "150.00".into())
    );
    assert_eq!(
        app.points("acct-b").await,
        ("37.50".into(), "0.00".into(), "37.50".into())
    );
    assert_eq!(
        app.points("acct-c").await,
        ("0.00".into(), "0.00".into(), "0.00".into())
    );

    // A's dashboard: the balance, the friend and what it earned, the history.
    let data = app.dashboard("acct-a", 20).await;
    assert_eq!(
        data["program"],
        json!({ "enabled": true, "currency": "USD" }),
        "{data:#}"
    );
    let me = &data["me"];
    assert_eq!(me["externalId"], "acct-a");
    assert_eq!(me["referralCode"], a_code.as_str());
    assert_eq!(
        me["referralLink"],
        format!("{PUBLIC_URL}/r/{a_code}").as_str(),
        "{me:#}"
    );
    assert!(me["referral"].is_null(), "A was not referred: {me:#}");
    assert_eq!(me["credit"]["unit"], "CREDIT", "{me:#}");
    assert_eq!(me["credit"]["available"], "0.00", "{me:#}");
    let friends = &me["referredFriends"];
    assert_eq!(friends["totalCount"], 1, "{me:#}");
    assert_eq!(friends["pageInfo"]["hasNextPage"], false, "{me:#}");
    let friend = &friends["edges"][0]["node"];
    assert_eq!(friend["status"], "QUALIFIED", "{me:#}");
    assert!(friend["qualifiedAt"].is_string(), "{me:#}");
    assert!(friend["createdAt"].is_string(), "{me:#}");
    assert_eq!(
        friend["referee"]["displayName"], "Bo*** B.",
        "names of others are masked: {me:#}"
    );
    assert_eq!(friend["referee"]["accountStatus"], "ACTIVE", "{me:#}");
    assert!(friend["referee"]["joinedAt"].is_string(), "{me:#}");
    assert!(friend["referee"]["firstPurchaseAt"].is_string(), "{me:#}");
    assert_eq!(
        friend["earned"],
        json!([{ "unit": "POINTS", "amount": "150.00" }]),
        "{me:#}"
    );
    let history = &me["rewardHistory"];
    assert_eq!(history["totalCount"], 1, "{me:#}");
    let entry = &history["edges"][0]["node"];
    assert_eq!(entry["kind"], "REWARD", "{me:#}");
    assert_eq!(entry["unit"], "POINTS", "{me:#}");
    assert_eq!(entry["amount"], "150.00", "{me:#}");
    assert_eq!(entry["status"], "POSTED", "{me:#}");
    assert!(entry["createdAt"].is_string(), "{me:#}");
    let description = s(entry, "/description");
    assert!(!description.is_empty(), "{me:#}");
    assert!(
        !description.contains("Bob Brown"),
        "a friend's full name must not be shown: {description}"
    );

    // B sees who referred it (masked) and its own friend C.
    let data = app.dashboard("acct-b", 20).await;
    let me = &data["me"];
    assert_eq!(me["referral"]["referrer"]["referralCode"], a_code.as_str(), "{me:#}");
    assert_eq!(me["referral"]["referrer"]["displayName"], "Al*** A.", "{me:#}");
    assert_eq!(me["referralCode"], b_code.as_str(), "{me:#}");
    let friend = &me["referredFriends"]["edges"][0]["node"];
    assert_eq!(friend["referee"]["displayName"], "Ca*** C.", "{me:#}");
    assert_eq!(
        friend["earned"],
        json!([{ "unit": "POINTS", "amount": "37.50" }]),
        "{me:#}"
    );
    assert_eq!(amounts(&me["rewardHistory"]["edges"]), vec!["37.50"], "{me:#}");

    // The ledger and the balance rows agree.
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 150_000_000);
    assert_eq!(app.balance_available("acct-a", "POINTS").await, 150_000_000);
    assert_eq!(app.ledger_sum("acct-b", "POINTS").await, 37_500_000);
}

#[tokio::test]
async fn only_the_first_purchase_counts_and_only_if_it_is_residential() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    app.register("acct-d", Some("Dan Dale"), Some(&a)).await;
    app.register("acct-lone", Some("Lone Wolf"), None).await;

    let first = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(first["rewards"][0]["amount"], "150.00", "{first:#}");

    // B's second purchase pays nothing, and says why.
    let second = app.purchase("evt-b-2", "acct-b", RESIDENTIAL, "20").await;
    assert_eq!(second["rewards"], json!([]), "{second:#}");
    assert_eq!(second["event"]["duplicate"], false, "{second:#}");
    let decision = &second["decisions"][0];
    assert_eq!(decision["outcome"], "SKIPPED", "{second:#}");
    assert!(s(decision, "/reason").contains("first purchase"), "{second:#}");

    // D's first purchase is a datacenter product: nothing, and a later residential one is no
    // longer the first purchase.
    let dc = app.purchase("evt-d-1", "acct-d", DATACENTER, "10").await;
    assert_eq!(dc["rewards"], json!([]), "{dc:#}");
    assert_eq!(dc["decisions"][0]["outcome"], "SKIPPED", "{dc:#}");
    assert!(s(&dc["decisions"][0], "/reason").contains("datacenter"), "{dc:#}");
    let later = app.purchase("evt-d-2", "acct-d", RESIDENTIAL, "10").await;
    assert_eq!(later["rewards"], json!([]), "{later:#}");
    assert_eq!(later["decisions"][0]["outcome"], "SKIPPED", "{later:#}");
    assert!(
        s(&later["decisions"][0], "/reason").contains("first purchase"),
        "{later:#}"
    );

    // A purchase by an account nobody referred pays nobody.
    let lone = app.purchase("evt-lone-1", "acct-lone", RESIDENTIAL, "10").await;
    assert_eq!(lone["rewards"], json!([]), "{lone:#}");
    assert_eq!(lone["decisions"][0]["outcome"], "SKIPPED", "{lone:#}");

    assert_eq!(
        app.points("acct-a").await,
        ("150.00".into(), "0.00".into(), "150.00".into())
    );
    let data = app.dashboard("acct-a", 20).await;
    let friends = &data["me"]["referredFriends"];
    assert_eq!(friends["totalCount"], 2, "{data:#}");
    // Newest first: D (never qualified), then B.
    let d = &friends["edges"][0]["node"];
    assert_eq!(d["referee"]["displayName"], "Da*** D.", "{data:#}");
    assert_eq!(d["status"], "PENDING", "{data:#}");
    assert!(d["qualifiedAt"].is_null(), "{data:#}");
    assert_eq!(d["earned"], json!([]), "{data:#}");
    let b = &friends["edges"][1]["node"];
    assert_eq!(b["status"], "QUALIFIED", "{data:#}");
    assert_eq!(
        b["earned"],
        json!([{ "unit": "POINTS", "amount": "150.00" }]),
        "{data:#}"
    );
    assert_eq!(data["me"]["rewardHistory"]["totalCount"], 1, "{data:#}");
    assert_eq!(app.count("ledger_entries").await, 1);
}

#[tokio::test]
async fn history_and_friends_paginate_with_cursors() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    for (ext, name, gb) in [
        ("f-1", "Dana Doe", "1"),
        ("f-2", "Evan Ellis", "2"),
        ("f-3", "Fay Fox", "3"),
    ] {
        app.register(ext, Some(name), Some(&a)).await;
        app.purchase(&format!("evt-{ext}"), ext, RESIDENTIAL, gb).await;
    }
    let token = app.customer("acct-a");

    // History, newest first: 45, 30 | 15.
    let page1 = app
        .run_ok(Some(&token), "customer", "HistoryPage", json!({ "first": 2 }))
        .await;
    let history = &page1["me"]["rewardHistory"];
    assert_eq!(history["totalCount"], 3, "{page1:#}");
    assert_eq!(amounts(&history["edges"]), vec!["45.00", "30.00"], "{page1:#}");
    assert_eq!(history["pageInfo"]["hasNextPage"], true, "{page1:#}");
    let end = s(history, "/pageInfo/endCursor").to_owned();
    assert_eq!(
        history["edges"][1]["cursor"],
        end.as_str(),
        "endCursor is the last edge's cursor: {page1:#}"
    );
    let page2 = app
        .run_ok(
            Some(&token),
            "customer",
            "HistoryPage",
            json!({ "first": 2, "after": end }),
        )
        .await;
    let history2 = &page2["me"]["rewardHistory"];
    assert_eq!(history2["totalCount"], 3, "{page2:#}");
    assert_eq!(amounts(&history2["edges"]), vec!["15.00"], "{page2:#}");
    assert_eq!(history2["pageInfo"]["hasNextPage"], false, "{page2:#}");
    let mut ids: Vec<&str> = history["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| s(e, "/node/id"))
        .collect();
    ids.extend(
        history2["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| s(e, "/node/id")),
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "pages must not overlap: {page1:#} {page2:#}");

    // The unit filter.
    let credit = app
        .run_ok(
            Some(&token),
            "customer",
            "HistoryPage",
            json!({ "first": 10, "unit": "CREDIT" }),
        )
        .await;
    assert_eq!(credit["me"]["rewardHistory"]["totalCount"], 0, "{credit:#}");
    assert_eq!(credit["me"]["rewardHistory"]["edges"], json!([]), "{credit:#}");
    assert_eq!(
        credit["me"]["rewardHistory"]["pageInfo"]["hasNextPage"], false,
        "{credit:#}"
    );
    let points = app
        .run_ok(
            Some(&token),
            "customer",
            "HistoryPage",
            json!({ "first": 10, "unit": "POINTS" }),
        )
        .await;
    assert_eq!(points["me"]["rewardHistory"]["totalCount"], 3, "{points:#}");
    assert_eq!(
        amounts(&points["me"]["rewardHistory"]["edges"]),
        vec!["45.00", "30.00", "15.00"]
    );

    // Friends, newest first: Fay, Evan | Dana.
    let page1 = app
        .run_ok(Some(&token), "customer", "FriendsPage", json!({ "first": 2 }))
        .await;
    let friends = &page1["me"]["referredFriends"];
    assert_eq!(friends["totalCount"], 3, "{page1:#}");
    assert_eq!(names(&friends["edges"]), vec!["Fa*** F.", "Ev*** E."], "{page1:#}");
    assert_eq!(friends["edges"][0]["node"]["status"], "QUALIFIED", "{page1:#}");
    assert_eq!(friends["pageInfo"]["hasNextPage"], true, "{page1:#}");
    let end = s(friends, "/pageInfo/endCursor").to_owned();
    assert_eq!(friends["edges"][1]["cursor"], end.as_str(), "{page1:#}");
    let page2 = app
        .run_ok(
            Some(&token),
            "customer",
            "FriendsPage",
            json!({ "first": 2, "after": end }),
        )
        .await;
    let friends2 = &page2["me"]["referredFriends"];
    assert_eq!(friends2["totalCount"], 3, "{page2:#}");
    assert_eq!(names(&friends2["edges"]), vec!["Da*** D."], "{page2:#}");
    assert_eq!(friends2["pageInfo"]["hasNextPage"], false, "{page2:#}");

    // An empty page.
    let end = s(friends2, "/pageInfo/endCursor").to_owned();
    let page3 = app
        .run_ok(
            Some(&token),
            "customer",
            "FriendsPage",
            json!({ "first": 2, "after": end }),
        )
        .await;
    assert_eq!(page3["me"]["referredFriends"]["edges"], json!([]), "{page3:#}");
    assert_eq!(
        page3["me"]["referredFriends"]["pageInfo"]["hasNextPage"], false,
        "{page3:#}"
    );
}

#[tokio::test]
async fn claims_cost_the_redemption_rate_and_a_failed_claim_gives_the_points_back() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points
    let customer = app.customer("acct-a");
    let service = app.service();

    let store = app.run_ok(Some(&customer), "customer", "RewardStore", json!({})).await;
    let store = &store["rewardStore"];
    assert_eq!(store["enabled"], true, "{store:#}");
    assert_eq!(store["gbPerClaim"], 1, "{store:#}");
    assert_eq!(store["balance"]["available"], "150.00", "{store:#}");
    assert_eq!(store["balance"]["pending"], "0.00", "{store:#}");
    let offers = store["offers"].as_array().expect("offers");
    assert_eq!(offers.len(), 1, "{store:#}");
    assert_eq!(offers[0]["provider"]["id"], provider_id.as_str(), "{store:#}");
    assert_eq!(offers[0]["provider"]["key"], PROVIDER, "{store:#}");
    assert_eq!(offers[0]["provider"]["name"], PROVIDER_NAME, "{store:#}");
    assert_eq!(offers[0]["redemptionRate"], "100.00", "{store:#}");
    assert_eq!(offers[0]["affordable"], true, "{store:#}");

    // 1 GB at 100 points per GB.
    let first = app.claim("acct-a", &provider_id, None).await;
    let claim1 = &first["claim"];
    assert_eq!(claim1["gb"], 1, "{first:#}");
    assert_eq!(claim1["points"], "100.00", "{first:#}");
    assert_eq!(claim1["status"], "PENDING", "{first:#}");
    assert_eq!(
        claim1["provider"],
        json!({ "id": provider_id, "key": PROVIDER, "name": PROVIDER_NAME }),
        "{first:#}"
    );
    assert!(claim1["createdAt"].is_string(), "{first:#}");
    assert_eq!(first["balance"]["available"], "50.00", "{first:#}");
    let claim1_id = s(claim1, "/id").to_owned();

    // 50 left does not cover another 100.
    let refused = app.claim_raw("acct-a", &provider_id, None).await;
    assert_failed(&refused, "INSUFFICIENT_BALANCE");
    assert_eq!(app.available_points("acct-a").await, "50.00");
    let store = app.run_ok(Some(&customer), "customer", "RewardStore", json!({})).await;
    assert_eq!(store["rewardStore"]["offers"][0]["affordable"], false, "{store:#}");

    // The billing system sees the pending claim and delivers it.
    let pending = app
        .run_ok(Some(&service), "integration", "PendingClaims", json!({ "first": 10 }))
        .await;
    let claims = &pending["claims"];
    assert_eq!(claims["totalCount"], 1, "{pending:#}");
    let node = &claims["edges"][0]["node"];
    assert_eq!(node["id"], claim1_id.as_str(), "{pending:#}");
    assert_eq!(node["account"]["externalId"], "acct-a", "{pending:#}");
    assert_eq!(node["provider"]["key"], PROVIDER, "{pending:#}");
    assert_eq!(node["gb"], 1, "{pending:#}");
    assert_eq!(node["points"], "100.00", "{pending:#}");
    assert_eq!(node["status"], "PENDING", "{pending:#}");

    let done = app
        .run_ok(
            Some(&service),
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": claim1_id, "status": "COMPLETED" } }),
        )
        .await;
    assert_eq!(
        done["completeClaim"]["claim"],
        json!({ "id": claim1_id, "status": "COMPLETED" }),
        "{done:#}"
    );
    let pending = app
        .run_ok(Some(&service), "integration", "PendingClaims", json!({ "first": 10 }))
        .await;
    assert_eq!(pending["claims"]["totalCount"], 0, "{pending:#}");
    assert_eq!(app.available_points("acct-a").await, "50.00");

    // Deciding it again the same way answers the same; the other way is refused.
    let again = app
        .run_ok(
            Some(&service),
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": claim1_id, "status": "COMPLETED" } }),
        )
        .await;
    assert_eq!(again["completeClaim"]["claim"]["status"], "COMPLETED", "{again:#}");
    let flip = app
        .run(
            Some(&service),
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": claim1_id, "status": "FAILED" } }),
        )
        .await;
    assert_failed(&flip, "BAD_USER_INPUT");
    assert_eq!(app.available_points("acct-a").await, "50.00");

    // At 50 points per GB the last 50 buy one more; its delivery fails and they come back.
    app.set_redemption_rate(PROVIDER, "50").await;
    let second = app.claim("acct-a", &provider_id, None).await;
    assert_eq!(second["claim"]["points"], "50.00", "{second:#}");
    assert_eq!(second["balance"]["available"], "0.00", "{second:#}");
    let claim2_id = s(&second, "/claim/id").to_owned();
    let failed = app
        .run_ok(
            Some(&service),
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": claim2_id, "status": "FAILED" } }),
        )
        .await;
    assert_eq!(
        failed["completeClaim"]["claim"],
        json!({ "id": claim2_id, "status": "FAILED" }),
        "{failed:#}"
    );
    assert_eq!(
        app.points("acct-a").await,
        ("50.00".into(), "0.00".into(), "150.00".into())
    );

    let mine = app
        .run_ok(Some(&customer), "customer", "MyClaims", json!({ "first": 10 }))
        .await;
    let claims = &mine["me"]["claims"];
    assert_eq!(claims["totalCount"], 2, "{mine:#}");
    assert_eq!(claims["pageInfo"]["hasNextPage"], false, "{mine:#}");
    let nodes: Vec<(&str, &str, &str)> = claims["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (s(e, "/node/id"), s(e, "/node/status"), s(e, "/node/points")))
        .collect();
    assert_eq!(
        nodes,
        vec![
            (claim2_id.as_str(), "FAILED", "50.00"),
            (claim1_id.as_str(), "COMPLETED", "100.00")
        ],
        "{mine:#}"
    );
    assert_eq!(
        claims["edges"][0]["node"]["provider"]["name"], PROVIDER_NAME,
        "{mine:#}"
    );
    assert_eq!(claims["edges"][0]["node"]["gb"], 1, "{mine:#}");

    let history = app
        .run_ok(Some(&customer), "customer", "HistoryPage", json!({ "first": 10 }))
        .await;
    let edges = &history["me"]["rewardHistory"]["edges"];
    assert_eq!(
        kinds(edges),
        vec!["CLAIM_REFUND", "CLAIM", "CLAIM", "REWARD"],
        "{history:#}"
    );
    assert_eq!(
        amounts(edges),
        vec!["50.00", "-50.00", "-100.00", "150.00"],
        "{history:#}"
    );
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 50_000_000);
    assert_eq!(app.balance_available("acct-a", "POINTS").await, 50_000_000);
}

#[tokio::test]
async fn gb_per_claim_multiplies_the_cost_of_a_claim() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points
    app.set_redemption_rate(PROVIDER, "60").await;
    let settings = app.update_settings(json!({ "gbPerClaim": 2 })).await;
    assert_eq!(settings["gbPerClaim"], 2, "{settings:#}");

    let store = app
        .run_ok(Some(&app.customer("acct-a")), "customer", "RewardStore", json!({}))
        .await;
    assert_eq!(store["rewardStore"]["gbPerClaim"], 2, "{store:#}");
    assert_eq!(
        store["rewardStore"]["offers"][0]["redemptionRate"], "60.00",
        "{store:#}"
    );
    assert_eq!(store["rewardStore"]["offers"][0]["affordable"], true, "{store:#}");

    let claimed = app.claim("acct-a", &provider_id, None).await;
    assert_eq!(claimed["claim"]["gb"], 2, "{claimed:#}");
    assert_eq!(claimed["claim"]["points"], "120.00", "{claimed:#}");
    assert_eq!(claimed["balance"]["available"], "30.00", "{claimed:#}");
    assert_failed(
        &app.claim_raw("acct-a", &provider_id, None).await,
        "INSUFFICIENT_BALANCE",
    );
    assert_eq!(app.available_points("acct-a").await, "30.00");
}

#[tokio::test]
async fn registration_records_why_a_referral_code_was_rejected() {
    let app = spawn_app().await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    assert_eq!(a.len(), 8, "generated codes have 8 characters: {a}");
    assert!(
        a.bytes()
            .all(|b| referral_server::service::codes::ALPHABET.contains(&b)),
        "generated codes use the unambiguous alphabet: {a}"
    );

    // An unknown code: the account is created, the attempt recorded as rejected.
    let x = app.register("acct-x", Some("Xavier Xu"), Some("NOSUCH0CODE")).await;
    assert_eq!(x["account"]["externalId"], "acct-x", "{x:#}");
    assert_eq!(x["referral"]["status"], "REJECTED", "{x:#}");
    assert_eq!(x["referral"]["rejectionReason"], "UNKNOWN_CODE", "{x:#}");
    assert!(x["referral"]["referrer"].is_null(), "{x:#}");

    // An existing account re-registering with its own code: only newcomers are referred.
    let before = app.register("acct-a", None, None).await;
    let own = app
        .register("acct-a", Some("Alice Adams"), Some(&a.to_lowercase()))
        .await;
    assert_eq!(own["account"]["id"], before["account"]["id"], "{own:#}");
    assert_eq!(own["account"]["referralCode"], a.as_str(), "{own:#}");
    assert_eq!(own["referral"]["status"], "REJECTED", "{own:#}");
    assert_eq!(own["referral"]["rejectionReason"], "EXISTING_ACCOUNT", "{own:#}");

    // Codes are case-insensitive.
    let b = app.register("acct-b", Some("Bob Brown"), Some(&a.to_lowercase())).await;
    assert_eq!(b["referral"]["status"], "PENDING", "{b:#}");
    assert!(b["referral"]["rejectionReason"].is_null(), "{b:#}");
    assert_eq!(b["referral"]["referrer"]["referralCode"], a.as_str(), "{b:#}");
    let b_id = s(&b, "/account/id").to_owned();
    let b_referral = s(&b, "/referral/id").to_owned();

    // Registering again is idempotent, with the same code or without one.
    let again = app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    assert_eq!(again["account"], b["account"], "{again:#}");
    assert_eq!(again["referral"]["id"], b_referral.as_str(), "{again:#}");
    assert_eq!(again["referral"]["status"], "PENDING", "{again:#}");
    let plain = app.register("acct-b", None, None).await;
    assert_eq!(plain["account"]["id"], b_id.as_str(), "{plain:#}");
    assert_eq!(
        plain["account"]["referralCode"], b["account"]["referralCode"],
        "{plain:#}"
    );
    assert_eq!(plain["referral"]["id"], b_referral.as_str(), "{plain:#}");

    // B exists (and was referred already): another code is rejected, and A stays B's referrer.
    let c = app.register_code("acct-c", Some("Carol Clark"), None).await;
    let other = app.register("acct-b", None, Some(&c)).await;
    assert_eq!(other["account"]["id"], b_id.as_str(), "{other:#}");
    assert_eq!(other["referral"]["status"], "REJECTED", "{other:#}");
    assert_eq!(other["referral"]["rejectionReason"], "EXISTING_ACCOUNT", "{other:#}");
    let dash = app.dashboard("acct-b", 5).await;
    assert_eq!(
        dash["me"]["referral"]["referrer"]["referralCode"],
        a.as_str(),
        "{dash:#}"
    );

    // With the program off, a code is not honoured.
    app.set_enabled(false).await;
    let e = app.register("acct-e", Some("Eve Evans"), Some(&a)).await;
    assert_eq!(e["referral"]["status"], "REJECTED", "{e:#}");
    assert_eq!(e["referral"]["rejectionReason"], "PROGRAM_DISABLED", "{e:#}");
    app.set_enabled(true).await;

    // Only the accepted referral is A's friend; B's first purchase pays A, not C.
    let dash = app.dashboard("acct-a", 10).await;
    assert_eq!(dash["me"]["referredFriends"]["totalCount"], 1, "{dash:#}");
    assert_eq!(
        dash["me"]["referredFriends"]["edges"][0]["node"]["id"],
        b_referral.as_str(),
        "{dash:#}"
    );
    let dash = app.dashboard("acct-c", 10).await;
    assert_eq!(dash["me"]["referredFriends"]["totalCount"], 0, "{dash:#}");
    app.setup_catalog().await;
    let paid = app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "4").await;
    assert_eq!(paid["rewards"][0]["account"]["externalId"], "acct-a", "{paid:#}");
    assert_eq!(paid["rewards"][0]["amount"], "60.00", "{paid:#}");
    assert_eq!(app.available_points("acct-c").await, "0.00");
    assert_eq!(app.count("accounts").await, 5);
}

#[tokio::test]
async fn a_switched_off_program_pays_nothing_and_refuses_claims_but_still_reads() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points

    app.set_enabled(false).await;
    let off = app.purchase("evt-c-1", "acct-c", RESIDENTIAL, "10").await;
    assert_eq!(off["rewards"], json!([]), "{off:#}");
    assert_eq!(off["decisions"][0]["outcome"], "SKIPPED", "{off:#}");
    assert_eq!(off["decisions"][0]["reason"], "program is off", "{off:#}");
    assert_eq!(app.available_points("acct-b").await, "0.00");

    let refused = app.claim_raw("acct-a", &provider_id, None).await;
    assert_failed(&refused, "PROGRAM_DISABLED");

    let dash = app.dashboard("acct-a", 10).await;
    assert_eq!(dash["program"]["enabled"], false, "{dash:#}");
    assert_eq!(dash["me"]["points"]["available"], "150.00", "{dash:#}");
    assert_eq!(dash["me"]["rewardHistory"]["totalCount"], 1, "{dash:#}");
    let store = app
        .run_ok(Some(&app.customer("acct-a")), "customer", "RewardStore", json!({}))
        .await;
    assert_eq!(store["rewardStore"]["enabled"], false, "{store:#}");
    assert_eq!(store["rewardStore"]["balance"]["available"], "150.00", "{store:#}");

    // Back on: claims work again.
    app.set_enabled(true).await;
    let claimed = app.claim("acct-a", &provider_id, None).await;
    assert_eq!(claimed["balance"]["available"], "50.00", "{claimed:#}");
}

#[tokio::test]
async fn program_settings_are_read_and_changed_by_admins() {
    let app = spawn_app().await;
    let settings = app.settings().await;
    assert_eq!(
        settings,
        json!({
            "enabled": true,
            "currency": "USD",
            "referralLinkTemplate": "{publicUrl}/r/{code}",
            "landingUrl": null,
            "cookieDays": 30,
            "gbPerClaim": 1,
            "minimumWithdrawal": "0.00",
            "requireVerifiedPaymentForLink": false,
        })
    );

    let registered = app.register("acct-a", Some("Alice Adams"), None).await;
    let code = s(&registered, "/account/referralCode").to_owned();
    let default_link = format!("{PUBLIC_URL}/r/{code}");
    assert_eq!(
        registered["account"]["referralLink"],
        default_link.as_str(),
        "{registered:#}"
    );
    let customer = app.customer("acct-a");
    let link = app
        .run_ok(Some(&customer), "customer", "GenerateReferralLink", json!({}))
        .await;
    assert_eq!(
        link["generateReferralLink"],
        json!({ "code": code, "url": default_link }),
        "{link:#}"
    );

    // A new template changes every link.
    let template = "https://shop.example.com/join?ref={code}";
    let updated = app
        .update_settings(json!({ "referralLinkTemplate": template, "currency": "eur" }))
        .await;
    assert_eq!(updated["referralLinkTemplate"], template, "{updated:#}");
    assert_eq!(updated["currency"], "EUR", "{updated:#}");
    assert_eq!(updated["enabled"], true, "{updated:#}");
    let new_link = format!("https://shop.example.com/join?ref={code}");
    let dash = app.dashboard("acct-a", 1).await;
    assert_eq!(dash["me"]["referralLink"], new_link.as_str(), "{dash:#}");
    assert_eq!(dash["program"]["currency"], "EUR", "{dash:#}");
    let link = app
        .run_ok(Some(&customer), "customer", "GenerateReferralLink", json!({}))
        .await;
    assert_eq!(
        link["generateReferralLink"],
        json!({ "code": code, "url": new_link }),
        "{link:#}"
    );
    let settings = app.settings().await;
    assert_eq!(settings["referralLinkTemplate"], template, "{settings:#}");

    // Refused: a template without {code}, settings that are not built yet, a bad gbPerClaim,
    // landing URLs that are not absolute web addresses, cookies out of range.
    let before = app.settings().await;
    for input in [
        json!({ "referralLinkTemplate": "https://shop.example.com/join" }),
        json!({ "referralLinkTemplate": "javascript:alert({code})" }),
        json!({ "landingUrl": "/signup" }),
        json!({ "landingUrl": "javascript:alert(1)" }),
        json!({ "cookieDays": 0 }),
        json!({ "cookieDays": 366 }),
        json!({ "minimumWithdrawal": "-10" }),
        json!({ "gbPerClaim": 0 }),
        json!({ "currency": "EURO" }),
        // One refused field refuses the whole change.
        json!({ "enabled": false, "minimumWithdrawal": "-10" }),
        json!({ "enabled": false, "cookieDays": 0 }),
    ] {
        let body = app
            .run(
                Some(&app.admin()),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": input }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(app.settings().await, before, "after refusing {input}");
    }
    let dash = app.dashboard("acct-a", 1).await;
    assert_eq!(dash["me"]["referralLink"], new_link.as_str(), "{dash:#}");
}
