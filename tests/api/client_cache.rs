//! What a browser client with a normalizing cache (Apollo Client) relies on: stable ids on the
//! objects it caches, guarded fields that null as the GraphQL spec says, automatic persisted
//! queries, and one answer to every kind of missing or bad token.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use referral_server::graphql::MAX_PERSISTED_QUERY_BYTES;

/// Alice referred Bob, whose 20 GB purchase earned her 300 points. The provider's id.
async fn alice_and_bob(app: &TestApp) -> String {
    let provider_id = app.setup_catalog().await;
    let alice = app
        .register_with(json!({ "externalId": "acct-a", "displayName": "Alice Adams" }))
        .await;
    let code = s(&alice, "/account/referralCode").to_owned();
    app.register("acct-b", Some("Bob Brown"), Some(&code)).await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "20").await;
    provider_id
}

#[tokio::test]
async fn a_claim_answers_the_same_balance_object_that_the_screens_show() {
    let app = spawn_app().await;
    let provider_id = alice_and_bob(&app).await;
    let alice = app.customer("acct-a");

    let store = app
        .run_ok(Some(&alice), "customer", "RewardStoreScreen", json!({}))
        .await;
    let balance_id = s(&store, "/rewardStore/balance/id").to_owned();
    assert_eq!(store["rewardStore"]["balance"]["available"], "300.00", "{store:#}");
    let me = app
        .gql(
            Some(&alice),
            "{ me { id points: balance(unit: POINTS) { id } credit: balance(unit: CREDIT) { id } } }",
            json!({}),
        )
        .await;
    let me = data_of(&me, "the balances' ids");
    assert_eq!(s(&me, "/me/points/id"), balance_id, "{me:#}");
    assert_ne!(s(&me, "/me/credit/id"), balance_id, "one object per unit: {me:#}");

    let input = json!({ "input": { "providerId": provider_id, "idempotencyKey": "k-1" } });
    let claimed = app
        .run_ok(Some(&alice), "customer", "ClaimRewardAndBalance", input.clone())
        .await;
    assert_eq!(s(&claimed, "/claimReward/balance/id"), balance_id, "{claimed:#}");
    assert_eq!(claimed["claimReward"]["balance"]["available"], "200.00", "{claimed:#}");
    // Answered again for the same key: the same object, as it is now.
    let again = app
        .run_ok(Some(&alice), "customer", "ClaimRewardAndBalance", input)
        .await;
    assert_eq!(again["claimReward"]["duplicate"], true, "{again:#}");
    assert_eq!(s(&again, "/claimReward/balance/id"), balance_id, "{again:#}");

    // Bob's balance is another object.
    let bob = app
        .run_ok(
            Some(&app.customer("acct-b")),
            "customer",
            "RewardStoreScreen",
            json!({}),
        )
        .await;
    assert_ne!(s(&bob, "/rewardStore/balance/id"), balance_id, "{bob:#}");
}

#[tokio::test]
async fn participants_have_ids_of_their_referral_that_name_no_account() {
    let app = spawn_app().await;
    alice_and_bob(&app).await;
    let query = "{ me { id referral { id referrer { id displayName } referee { id } } \
                 referredFriends { edges { node { id referrer { id } referee { id displayName } } } } } }";

    let alice = data_of(&app.gql(Some(&app.customer("acct-a")), query, json!({})).await, "alice");
    let bob = data_of(&app.gql(Some(&app.customer("acct-b")), query, json!({})).await, "bob");
    let referral = s(&bob, "/me/referral/id").to_owned();
    let number = referral.trim_start_matches("ref_");
    let friend = &alice["me"]["referredFriends"]["edges"][0]["node"];
    assert_eq!(s(friend, "/id"), referral, "{alice:#}");

    // Each side of the referral is one object, the same for both customers' screens.
    assert_eq!(s(&bob, "/me/referral/referrer/id"), format!("par_{number}_referrer"));
    assert_eq!(s(&bob, "/me/referral/referee/id"), format!("par_{number}_referee"));
    assert_eq!(s(friend, "/referrer/id"), format!("par_{number}_referrer"));
    assert_eq!(s(friend, "/referee/id"), format!("par_{number}_referee"));
    assert_eq!(
        app.gql(Some(&app.customer("acct-b")), query, json!({})).await["data"],
        bob,
        "stable across requests"
    );

    // Neither sees the other's account id anywhere.
    let alice_account = s(&alice, "/me/id");
    let bob_account = s(&bob, "/me/id");
    assert!(!bob.to_string().contains(&format!("\"{alice_account}\"")), "{bob:#}");
    assert!(!alice.to_string().contains(&format!("\"{bob_account}\"")), "{alice:#}");
    assert_eq!(bob["me"]["referral"]["referrer"]["displayName"], "Al*** A.", "{bob:#}");
}

#[tokio::test]
async fn a_guarded_field_is_null_with_its_error_at_its_path() {
    let app = spawn_app().await;
    alice_and_bob(&app).await;
    let bob = app.customer("acct-b");

    // Participant.account is for staff: for a customer, the key is there with null, the
    // participant around it stays, and the error names the path.
    let query = "{ me { externalId referral { id referrer { displayName account { id } } } } }";
    let body = app.gql(Some(&bob), query, json!({})).await;
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{body:#}");
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{body:#}");
    assert_eq!(
        errors[0]["path"],
        json!(["me", "referral", "referrer", "account"]),
        "{body:#}"
    );
    let referrer = &body["data"]["me"]["referral"]["referrer"];
    assert_eq!(referrer["displayName"], "Al*** A.", "{body:#}");
    assert_eq!(
        referrer.get("account"),
        Some(&Value::Null),
        "the key stays, null: {body:#}"
    );
    assert_eq!(body["data"]["me"]["externalId"], "acct-b", "{body:#}");

    // Provider.products through the store: the same.
    let query = "{ rewardStore { gbPerClaim offers { provider { id name products { key } } } } }";
    let body = app.gql(Some(&bob), query, json!({})).await;
    assert_eq!(error_codes(&body), ["FORBIDDEN"], "{body:#}");
    assert_eq!(
        body["errors"][0]["path"],
        json!(["rewardStore", "offers", 0, "provider", "products"]),
        "{body:#}"
    );
    let provider = &body["data"]["rewardStore"]["offers"][0]["provider"];
    assert_eq!(provider["name"], PROVIDER_NAME, "{body:#}");
    assert_eq!(provider.get("products"), Some(&Value::Null), "{body:#}");

    // A non-null field that fails nulls its nearest nullable parent: here, at the root, `data`.
    let body = app
        .gql(
            Some(&bob),
            "{ me { externalId } programSettings { enabled } }",
            json!({}),
        )
        .await;
    assert_eq!(body.get("data"), Some(&Value::Null), "{body:#}");
    assert_eq!(error_codes(&body), ["FORBIDDEN"], "{body:#}");
    assert_eq!(body["errors"][0]["path"], json!(["programSettings"]), "{body:#}");
    // Without a token: `me` (nullable) is null with its error, `program` (non-null) nulls data.
    let body = app
        .gql(None, "{ me { externalId } program { enabled } }", json!({}))
        .await;
    assert_eq!(body.get("data"), Some(&Value::Null), "{body:#}");
    assert_eq!(error_codes(&body), ["UNAUTHENTICATED", "UNAUTHENTICATED"], "{body:#}");
    let body = app.gql(None, "{ me { externalId } }", json!({})).await;
    assert_eq!(body["data"], json!({ "me": null }), "{body:#}");
    assert_eq!(body["errors"][0]["path"], json!(["me"]), "{body:#}");

    // Staff get both.
    let body = app
        .gql(
            Some(&app.admin()),
            "{ accounts(search: \"acct-b\") { edges { node { referral { referrer { account { externalId } } } } } } \
               providers { products { key } } }",
            json!({}),
        )
        .await;
    let data = data_of(&body, "staff");
    assert_eq!(
        data["accounts"]["edges"][0]["node"]["referral"]["referrer"]["account"]["externalId"],
        "acct-a"
    );
    assert_eq!(
        data["providers"][0]["products"].as_array().map(Vec::len),
        Some(2),
        "{data:#}"
    );
}

fn sha256(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

async fn post(app: &TestApp, token: &str, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST /graphql");
    (response.status(), response.json().await.expect("JSON"))
}

async fn get(app: &TestApp, token: &str, params: &[(&str, String)]) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .bearer_auth(token)
        .query(params)
        .send()
        .await
        .expect("GET /graphql");
    (response.status(), response.json().await.expect("JSON"))
}

#[tokio::test]
async fn automatic_persisted_queries_work_as_apollo_sends_them() {
    let app = spawn_app().await;
    let provider_id = alice_and_bob(&app).await;
    let alice = app.customer("acct-a");
    let query = contract_op("customer", "RewardStore");
    let hash = sha256(&query);

    // The hash alone, unknown: the answer Apollo falls back from (it then sends the query).
    let (status, body) = post(&app, &alice, &json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound", "{body:#}");
    assert_eq!(error_codes(&body), ["PERSISTED_QUERY_NOT_FOUND"], "{body:#}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body:#}");

    // The query with its hash: run and kept.
    let (_, body) = post(&app, &alice, &json!({ "query": query, "extensions": persisted(&hash) })).await;
    let full = data_of(&body, "the query with its hash");
    assert_eq!(full["rewardStore"]["balance"]["available"], "300.00");

    // From now on the hash alone, by POST and by GET.
    let (_, body) = post(&app, &alice, &json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(data_of(&body, "the hash alone"), full);
    let (status, body) = get(&app, &alice, &[("extensions", persisted(&hash).to_string())]).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(data_of(&body, "the hash alone by GET"), full);

    // A hash that is not the query's is refused and keeps nothing under it.
    let other = contract_op("customer", "MyClaims");
    let (_, body) = post(
        &app,
        &alice,
        &json!({ "query": other, "variables": { "first": 5 }, "extensions": persisted(&sha256("something else")) }),
    )
    .await;
    assert_failed(&body, "BAD_USER_INPUT");
    let (_, body) = post(
        &app,
        &alice,
        &json!({ "extensions": persisted(&sha256("something else")) }),
    )
    .await;
    assert_eq!(error_codes(&body), ["PERSISTED_QUERY_NOT_FOUND"], "{body:#}");

    // A persisted mutation is not run by GET, hash or not.
    let claim = contract_op("customer", "ClaimReward");
    let claim_hash = sha256(&claim);
    let vars = json!({ "input": { "providerId": provider_id, "idempotencyKey": "k-1" } });
    let (_, body) = post(
        &app,
        &alice,
        &json!({ "query": claim, "variables": vars, "extensions": persisted(&claim_hash) }),
    )
    .await;
    data_of(&body, "a claim with its hash");
    assert_eq!(app.available_points("acct-a").await, "200.00");
    let vars = json!({ "input": { "providerId": provider_id, "idempotencyKey": "k-2" } });
    let (status, body) = get(
        &app,
        &alice,
        &[
            ("extensions", persisted(&claim_hash).to_string()),
            ("variables", vars.to_string()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body:#}");
    assert_eq!(app.available_points("acct-a").await, "200.00");

    // A document too large to keep is refused with persistedQuery, and runs without it.
    let padded = format!("{query}\n#{}", "x".repeat(MAX_PERSISTED_QUERY_BYTES));
    let (_, body) = post(
        &app,
        &alice,
        &json!({ "query": padded, "extensions": persisted(&sha256(&padded)) }),
    )
    .await;
    assert_failed(&body, "BAD_USER_INPUT");
    let (_, body) = post(&app, &alice, &json!({ "query": padded })).await;
    data_of(&body, "a large document sent as it is");
}

#[tokio::test]
async fn a_missing_an_expired_and_a_malformed_token_get_the_same_answer() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let now = jsonwebtoken::get_current_timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "acct-a", "role": "customer", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE,
                 "iat": now - 7200, "exp": now - 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let headers = [
        ("missing", None),
        ("expired", Some(format!("Bearer {expired}"))),
        ("malformed", Some("Bearer not-a-jwt".to_owned())),
        ("not bearer", Some("Basic YWxpY2U6c2VjcmV0".to_owned())),
    ];
    let before = app.snapshot().await;
    let mut answers = Vec::new();
    for (what, header) in &headers {
        for (file, op, vars) in [
            ("customer", "Dashboard", json!({ "first": 5 })),
            ("customer", "ClaimReward", json!({ "input": { "providerId": "prv_1" } })),
            (
                "admin",
                "UpdateProgramSettings",
                json!({ "input": { "enabled": false } }),
            ),
        ] {
            let mut request = app
                .client
                .post(format!("{}/graphql", app.address))
                .json(&json!({ "query": contract_op(file, op), "variables": vars }));
            if let Some(header) = header {
                request = request.header("Authorization", header);
            }
            let response = request.send().await.expect("POST /graphql");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(status, StatusCode::OK, "{what} token, {op}: {body:#}");
            assert_failed(&body, "UNAUTHENTICATED");
            assert!(
                error_codes(&body).iter().all(|c| c == "UNAUTHENTICATED"),
                "{what} token, {op}: {body:#}"
            );
            // The same shape whatever the token: data and the paths of the errors.
            let paths: Vec<Value> = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["path"].clone())
                .collect();
            answers.push((op, body["data"].clone(), paths));
        }
    }
    let first = &answers[..3];
    for chunk in answers.chunks(3) {
        assert_eq!(chunk, first, "every kind of token gets the same answer");
    }
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.settings().await["enabled"], true);
}
