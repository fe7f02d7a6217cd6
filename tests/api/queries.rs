//! How queries are served: their cost does not grow with the page size (no N+1), GET works
//! for queries and only for queries, and the health check answers.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The SQL statements one request ran, with its body. The least of three runs, so that a
/// statement of some background task that happens to run meanwhile cannot count.
async fn statements_for(app: &TestApp, token: &str, query: &str, variables: Value) -> (u64, Value) {
    let mut least = u64::MAX;
    let mut body = Value::Null;
    for _ in 0..3 {
        let before = app.state.statements.get();
        body = app.gql(Some(token), query, variables.clone()).await;
        let after = app.state.statements.get();
        data_of(&body, "the measured request");
        least = least.min(after - before);
    }
    (least, body)
}

#[tokio::test]
async fn the_dashboard_runs_no_more_statements_for_thirty_friends_than_for_one() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    for i in 0..30 {
        let ext = format!("friend-{i:02}");
        app.register(&ext, Some(&format!("Friend Number{i:02}")), Some(&a))
            .await;
        app.purchase(&format!("evt-{ext}"), &ext, RESIDENTIAL, "1").await;
    }
    let token = app.customer("acct-a");
    let dashboard = app.op("customer", "Dashboard");

    let (one, small) = statements_for(&app, &token, &dashboard, json!({ "first": 1 })).await;
    let (thirty, large) = statements_for(&app, &token, &dashboard, json!({ "first": 30 })).await;

    // The answers are what was asked for...
    let me = &small["data"]["me"];
    assert_eq!(me["referredFriends"]["totalCount"], 30, "{small:#}");
    assert_eq!(
        me["referredFriends"]["edges"].as_array().map(Vec::len),
        Some(1),
        "{small:#}"
    );
    assert_eq!(me["rewardHistory"]["totalCount"], 30, "{small:#}");
    assert_eq!(
        me["rewardHistory"]["edges"].as_array().map(Vec::len),
        Some(1),
        "{small:#}"
    );
    let me = &large["data"]["me"];
    assert_eq!(me["points"]["available"], "450.00", "{large:#}");
    // Counted from the page itself: it holds every row.
    assert_eq!(me["referredFriends"]["totalCount"], 30, "{large:#}");
    assert_eq!(me["rewardHistory"]["totalCount"], 30, "{large:#}");
    let friends = me["referredFriends"]["edges"].as_array().expect("friends");
    assert_eq!(friends.len(), 30, "{large:#}");
    assert_eq!(me["referredFriends"]["pageInfo"]["hasNextPage"], false, "{large:#}");
    for friend in friends {
        assert_eq!(friend["node"]["status"], "QUALIFIED", "{friend:#}");
        assert_eq!(
            friend["node"]["earned"],
            json!([{ "unit": "POINTS", "amount": "15.00" }]),
            "{friend:#}"
        );
        assert!(
            s(friend, "/node/referee/displayName").starts_with("Fr*** N"),
            "{friend:#}"
        );
        assert!(friend["node"]["referee"]["firstPurchaseAt"].is_string(), "{friend:#}");
    }
    assert_eq!(
        me["rewardHistory"]["edges"].as_array().map(Vec::len),
        Some(30),
        "{large:#}"
    );

    // ...and the cost does not depend on how many.
    assert!(one > 0, "the statement counter must count the dashboard's statements");
    // Fewer, if anything: a first page that holds every row needs no count.
    assert!(
        thirty <= one,
        "Dashboard ran {one} statements for 1 friend and {thirty} for 30"
    );

    for op in ["FriendsPage", "HistoryPage"] {
        let query = app.op("customer", op);
        let (one, _) = statements_for(&app, &token, &query, json!({ "first": 1 })).await;
        let (thirty, _) = statements_for(&app, &token, &query, json!({ "first": 30 })).await;
        assert!(
            thirty <= one,
            "{op} ran {one} statements for 1 item and {thirty} for 30"
        );
    }
}

/// What the contract's Dashboard may cost: the account with its referral, referrer and
/// balances; the page of friends with their accounts and earnings; the page of history. The
/// program's settings come from memory.
const DASHBOARD_STATEMENTS: u64 = 3;
/// The reward store: the account, its balances, the offers (settings from memory).
const REWARD_STORE_STATEMENTS: u64 = 3;

#[tokio::test]
async fn the_dashboard_runs_three_statements_at_most_with_every_part_filled() {
    let app = spawn_app().await;
    let provider = app.setup_catalog().await;
    // B was referred by A and referred C and D; C bought, so B has points, friends with and
    // without earnings, and a history longer than one page.
    let (a, b) = app.chain().await;
    app.register("acct-d", Some("Dan Dunn"), Some(&b)).await;
    app.purchase("evt-c-1", "acct-c", RESIDENTIAL, "10").await; // B: 150 points
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "1").await; // A: 15 points
    app.claim("acct-b", &provider, Some("claim-b-1")).await; // B: 100 points spent
    let token = app.customer("acct-b");
    let dashboard = app.op("customer", "Dashboard");

    for first in [1, 20] {
        let (statements, body) = statements_for(&app, &token, &dashboard, json!({ "first": first })).await;
        assert!(
            statements <= DASHBOARD_STATEMENTS,
            "Dashboard (first: {first}) ran {statements} statements, more than {DASHBOARD_STATEMENTS}"
        );
        let data = data_of(&body, "Dashboard");
        assert_eq!(data["program"]["enabled"], true, "{body:#}");
        let me = &data["me"];
        assert_eq!(me["externalId"], "acct-b", "{body:#}");
        assert_eq!(me["referral"]["referrer"]["referralCode"], a.as_str(), "{body:#}");
        assert_eq!(me["referral"]["referrer"]["displayName"], "Al*** A.", "{body:#}");
        assert_eq!(me["points"]["available"], "50.00", "{body:#}");
        assert_eq!(me["points"]["lifetimeEarned"], "150.00", "{body:#}");
        assert_eq!(me["credit"]["available"], "0.00", "{body:#}");
        assert_eq!(me["credit"]["unit"], "CREDIT", "{body:#}");

        let friends = &me["referredFriends"];
        assert_eq!(friends["totalCount"], 2, "{body:#}");
        assert_eq!(friends["pageInfo"]["hasNextPage"], first < 2, "{body:#}");
        let edges = friends["edges"].as_array().expect("friends");
        assert_eq!(edges.len(), first.min(2), "{body:#}");
        // Newest first: D, who bought nothing, then C.
        assert_eq!(edges[0]["node"]["referee"]["displayName"], "Da*** D.", "{body:#}");
        assert_eq!(edges[0]["node"]["earned"], json!([]), "{body:#}");
        if first > 1 {
            assert_eq!(edges[1]["node"]["referee"]["displayName"], "Ca*** C.", "{body:#}");
            assert_eq!(
                edges[1]["node"]["earned"],
                json!([{ "unit": "POINTS", "amount": "150.00" }]),
                "{body:#}"
            );
            assert!(edges[1]["node"]["referee"]["firstPurchaseAt"].is_string(), "{body:#}");
        }

        let history = &me["rewardHistory"];
        assert_eq!(history["totalCount"], 2, "{body:#}");
        assert_eq!(history["pageInfo"]["hasNextPage"], first < 2, "{body:#}");
        assert_eq!(history["edges"][0]["node"]["kind"], "CLAIM", "{body:#}");
    }

    // The next page of each list, after its cursor: the total is still the whole list's.
    let friends_page = app.op("customer", "FriendsPage");
    let (_, first_page) = statements_for(&app, &token, &friends_page, json!({ "first": 1 })).await;
    let after = s(&first_page, "/data/me/referredFriends/pageInfo/endCursor").to_owned();
    let (_, next) = statements_for(&app, &token, &friends_page, json!({ "first": 1, "after": after })).await;
    let friends = &next["data"]["me"]["referredFriends"];
    assert_eq!(friends["totalCount"], 2, "{next:#}");
    assert_eq!(friends["pageInfo"]["hasNextPage"], false, "{next:#}");
    assert_eq!(
        friends["edges"][0]["node"]["referee"]["displayName"], "Ca*** C.",
        "{next:#}"
    );
    let after = s(&next, "/data/me/referredFriends/pageInfo/endCursor").to_owned();
    let (_, past_the_end) = statements_for(&app, &token, &friends_page, json!({ "first": 1, "after": after })).await;
    let friends = &past_the_end["data"]["me"]["referredFriends"];
    assert_eq!(
        friends["totalCount"], 2,
        "an empty page still counts the list: {past_the_end:#}"
    );
    assert_eq!(friends["edges"], json!([]), "{past_the_end:#}");

    let store = app.op("customer", "RewardStore");
    let (statements, body) = statements_for(&app, &token, &store, json!({})).await;
    assert_eq!(body["data"]["rewardStore"]["balance"]["available"], "50.00", "{body:#}");
    assert!(
        statements <= REWARD_STORE_STATEMENTS,
        "RewardStore ran {statements} statements, more than {REWARD_STORE_STATEMENTS}"
    );
}

#[tokio::test]
async fn claim_lists_run_no_more_statements_for_ten_claims_than_for_one() {
    let app = spawn_app().await;
    let first_provider = app.setup_catalog().await;
    let second_provider = app.upsert_provider("otherco", "OtherCo", Some("15")).await;
    app.set_redemption_rate(PROVIDER, "15").await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points = 10 claims
    for i in 0..10 {
        let provider = if i % 2 == 0 { &first_provider } else { &second_provider };
        app.claim("acct-a", provider, None).await;
    }
    assert_eq!(app.available_points("acct-a").await, "0.00");

    let service = app.service();
    let pending = app.op("integration", "PendingClaims");
    let (one, _) = statements_for(&app, &service, &pending, json!({ "first": 1 })).await;
    let (ten, body) = statements_for(&app, &service, &pending, json!({ "first": 10 })).await;
    assert_eq!(body["data"]["claims"]["totalCount"], 10, "{body:#}");
    assert_eq!(
        body["data"]["claims"]["edges"].as_array().map(Vec::len),
        Some(10),
        "{body:#}"
    );
    assert!(
        ten <= one,
        "PendingClaims ran {one} statements for 1 claim and {ten} for 10"
    );

    let customer = app.customer("acct-a");
    let mine = app.op("customer", "MyClaims");
    let (one, _) = statements_for(&app, &customer, &mine, json!({ "first": 1 })).await;
    let (ten, body) = statements_for(&app, &customer, &mine, json!({ "first": 10 })).await;
    let providers: Vec<&str> = body["data"]["me"]["claims"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| s(e, "/node/provider/name"))
        .collect();
    assert_eq!(providers.len(), 10, "{body:#}");
    assert!(
        providers.contains(&"OtherCo") && providers.contains(&PROVIDER_NAME),
        "{body:#}"
    );
    assert!(ten <= one, "MyClaims ran {one} statements for 1 claim and {ten} for 10");
}

#[tokio::test]
async fn get_graphql_runs_a_query_from_the_url() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .bearer_auth(app.customer("acct-a"))
        .header("Accept", "application/json")
        .query(&[
            ("query", app.op("customer", "Dashboard")),
            ("variables", json!({ "first": 1 }).to_string()),
            ("operationName", "Dashboard".to_owned()),
        ])
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON body");
    let data = data_of(&body, "GET /graphql");
    assert_eq!(data["me"]["referralCode"], code.as_str(), "{body:#}");
    assert_eq!(data["program"]["enabled"], true, "{body:#}");
}

#[tokio::test]
async fn get_graphql_does_not_run_mutations() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .bearer_auth(app.admin())
        .header("Accept", "application/json")
        .query(&[
            ("query", app.op("admin", "UpdateProgramSettings")),
            ("variables", json!({ "input": { "enabled": false } }).to_string()),
        ])
        .send()
        .await
        .expect("GET /graphql");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        body.pointer("/data/updateProgramSettings").is_none_or(Value::is_null),
        "a mutation ran over GET: {status} {text}"
    );
    assert!(
        status == StatusCode::METHOD_NOT_ALLOWED || status.is_client_error() || !error_codes(&body).is_empty(),
        "a mutation over GET must be refused: {status} {text}"
    );
    assert_eq!(
        app.settings().await["enabled"],
        true,
        "a mutation over GET changed the settings"
    );
}

#[tokio::test]
async fn graphiql_is_served_to_browsers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.text().await.expect("body");
    assert!(html.to_ascii_lowercase().contains("graphiql"), "{html}");
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(response.status(), StatusCode::OK);
}
