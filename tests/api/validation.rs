//! Refused input and refused callers: each refusal has its code, and changes nothing.

use crate::helpers::*;
use referral_server::auth::{JwtKeys, Role};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// What an admin's refused change must leave as it was: the catalog, the settings and every
/// table.
async fn state_of(app: &TestApp) -> (Value, Value, Vec<(String, i64)>) {
    (app.catalog().await, app.settings().await, app.snapshot().await)
}

#[tokio::test]
async fn zero_and_negative_rates_are_refused() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let admin = app.admin();
    let before = state_of(&app).await;

    for rate in ["0", "-5", "0.000000", "-0.000001"] {
        let cases = [
            (
                "SetProductRate",
                json!({ "productKey": RESIDENTIAL, "productRate": rate }),
            ),
            (
                "SetRedemptionRate",
                json!({ "providerKey": PROVIDER, "redemptionRate": rate }),
            ),
            (
                "UpsertProvider",
                json!({ "key": PROVIDER, "name": PROVIDER_NAME, "redemptionRate": rate }),
            ),
            (
                "UpsertProvider",
                json!({ "key": "newco", "name": "NewCo", "redemptionRate": rate }),
            ),
            (
                "UpsertProduct",
                json!({ "key": RESIDENTIAL, "providerKey": PROVIDER, "name": "Residential proxies",
                        "category": "residential", "productRate": rate }),
            ),
            (
                "UpsertProduct",
                json!({ "key": "new-product", "providerKey": PROVIDER, "name": "New",
                        "category": "residential", "productRate": rate }),
            ),
        ];
        for (op, input) in cases {
            let body = app.run(Some(&admin), "admin", op, json!({ "input": input })).await;
            assert_failed(&body, "BAD_USER_INPUT");
        }
        assert_eq!(
            state_of(&app).await,
            before,
            "refused rates of {rate} must change nothing"
        );
    }
}

#[tokio::test]
async fn zero_and_negative_quantities_are_refused() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let before = app.snapshot().await;

    for gb in ["0", "-1", "-0.5"] {
        let body = app.purchase_raw(&format!("evt-{gb}"), "acct-b", RESIDENTIAL, gb).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    let mut negative_amount = TestApp::purchase_input("evt-neg", "acct-b", RESIDENTIAL, "1");
    negative_amount["input"]["amount"] = json!("-10");
    let body = app
        .run(Some(&app.service()), "integration", "RecordPurchase", negative_amount)
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);

    // None of them counted as B's first purchase, and their eventIds are still free.
    let paid = app.purchase("evt-0", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(paid["event"]["duplicate"], false, "{paid:#}");
    assert_eq!(paid["rewards"][0]["amount"], "150.00", "{paid:#}");
}

#[tokio::test]
async fn unknown_providers_products_accounts_and_claims_are_not_found() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points
    let claim = app.claim("acct-a", &provider_id, None).await;
    let claim_id = s(&claim, "/claim/id").to_owned();
    let admin = app.admin();
    let service = app.service();
    let before = state_of(&app).await;

    let cases = [
        (
            "admin",
            "UpsertProduct",
            json!({ "key": "orphan", "providerKey": "nosuchprovider", "name": "Orphan",
                    "category": "residential", "productRate": "5" }),
        ),
        (
            "admin",
            "SetProductRate",
            json!({ "productKey": "nosuchproduct", "productRate": "5" }),
        ),
        (
            "admin",
            "SetRedemptionRate",
            json!({ "providerKey": "nosuchprovider", "redemptionRate": "5" }),
        ),
        (
            "integration",
            "RecordPurchase",
            json!({ "eventId": "evt-x", "externalId": "acct-c", "productKey": "nosuchproduct", "quantityGb": "1" }),
        ),
        (
            "integration",
            "RecordPurchase",
            json!({ "eventId": "evt-y", "externalId": "nobody", "productKey": RESIDENTIAL, "quantityGb": "1" }),
        ),
        (
            "integration",
            "CompleteClaim",
            json!({ "claimId": unknown_id_like(&claim_id), "status": "COMPLETED" }),
        ),
    ];
    for (file, op, input) in cases {
        let token = if file == "admin" { &admin } else { &service };
        let body = app.run(Some(token), file, op, json!({ "input": input })).await;
        assert_failed(&body, "NOT_FOUND");
    }
    let body = app.claim_raw("acct-a", &unknown_id_like(&provider_id), None).await;
    assert_failed(&body, "NOT_FOUND");
    assert_eq!(state_of(&app).await, before);
    assert_eq!(app.available_points("acct-a").await, "50.00");

    // A refused event leaves its eventId free.
    let paid = app.purchase("evt-x", "acct-c", RESIDENTIAL, "1").await;
    assert_eq!(paid["event"]["duplicate"], false, "{paid:#}");
    assert_eq!(paid["rewards"][0]["amount"], "15.00", "{paid:#}");
}

#[tokio::test]
async fn decimals_that_are_not_exact_numbers_are_refused() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let admin = app.admin();
    let before = state_of(&app).await;

    for bad in ["abc", "1e5", "1.1234567", "", "1,5", "NaN", "0x10", "12 GB"] {
        let body = app
            .run(
                Some(&admin),
                "admin",
                "SetProductRate",
                json!({ "input": { "productKey": RESIDENTIAL, "productRate": bad } }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
        let body = app
            .purchase_raw(&format!("evt-bad-{bad}"), "acct-b", RESIDENTIAL, bad)
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    // A JSON number that does not convert exactly is refused too.
    let mut vars = TestApp::purchase_input("evt-float", "acct-b", RESIDENTIAL, "1");
    vars["input"]["quantityGb"] = json!(1e-7);
    let body = app
        .run(Some(&app.service()), "integration", "RecordPurchase", vars)
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(state_of(&app).await, before);

    // A JSON number that converts exactly is taken.
    let data = app
        .run_ok(
            Some(&admin),
            "admin",
            "SetProductRate",
            json!({ "input": { "productKey": RESIDENTIAL, "productRate": 20 } }),
        )
        .await;
    assert_eq!(data["setProductRate"]["productRate"], "20.00", "{data:#}");
    app.run_ok(
        Some(&admin),
        "admin",
        "SetProductRate",
        json!({ "input": { "productKey": RESIDENTIAL, "productRate": "15" } }),
    )
    .await;

    // Six places are kept exactly: 15 × 0.123456 = 1.85184.
    let paid = app.purchase("evt-exact", "acct-b", RESIDENTIAL, "0.123456").await;
    assert_eq!(paid["rewards"][0]["amount"], "1.85184", "{paid:#}");
}

#[tokio::test]
async fn overlong_strings_are_refused() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    let long = "x".repeat(1000);
    let before = state_of(&app).await;

    let cases = [
        ("integration", "RegisterAccount", json!({ "externalId": long })),
        (
            "integration",
            "RegisterAccount",
            json!({ "externalId": "acct-new", "displayName": long }),
        ),
        (
            "integration",
            "RecordPurchase",
            json!({ "eventId": long, "externalId": "acct-b", "productKey": RESIDENTIAL, "quantityGb": "1" }),
        ),
        (
            "integration",
            "RecordPurchase",
            json!({ "eventId": "evt-1", "externalId": long, "productKey": RESIDENTIAL, "quantityGb": "1" }),
        ),
        (
            "admin",
            "UpsertProvider",
            json!({ "key": "newco", "name": long, "redemptionRate": "5" }),
        ),
        (
            "admin",
            "UpsertProvider",
            json!({ "key": long, "name": "NewCo", "redemptionRate": "5" }),
        ),
    ];
    for (file, op, input) in cases {
        let token = if file == "admin" { app.admin() } else { app.service() };
        let body = app.run(Some(&token), file, op, json!({ "input": input })).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    let claim = app.claim_raw("acct-a", &provider_id, Some(&long)).await;
    assert_failed(&claim, "BAD_USER_INPUT");
    assert_eq!(state_of(&app).await, before);
}

#[tokio::test]
async fn referral_codes_and_keys_with_illegal_characters_are_refused() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.register("acct-a", Some("Alice Adams"), None).await;
    let before = state_of(&app).await;

    for code in ["AB-12!", "ab 12cd", "ÄBCDE", "abc", &"A".repeat(33)] {
        let body = app
            .run(
                Some(&app.service()),
                "integration",
                "RegisterAccount",
                json!({ "input": { "externalId": "acct-new", "referralCode": code } }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    for key in ["Bad Key", "-leading", "naïve", ""] {
        let body = app
            .run(
                Some(&app.admin()),
                "admin",
                "UpsertProvider",
                json!({ "input": { "key": key, "name": "Bad", "redemptionRate": "5" } }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    assert_eq!(
        state_of(&app).await,
        before,
        "nothing is created by a refused registration"
    );
}

#[tokio::test]
async fn requests_without_a_token_are_unauthenticated() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let before = state_of(&app).await;

    let cases = [
        (
            "integration",
            "RecordPurchase",
            TestApp::purchase_input("evt-anon", "acct-c", RESIDENTIAL, "1"),
        ),
        (
            "integration",
            "RegisterAccount",
            json!({ "input": { "externalId": "acct-anon" } }),
        ),
        ("integration", "PendingClaims", json!({ "first": 10 })),
        (
            "admin",
            "UpsertProvider",
            json!({ "input": { "key": "anonco", "name": "AnonCo" } }),
        ),
        (
            "admin",
            "UpdateProgramSettings",
            json!({ "input": { "enabled": false } }),
        ),
        ("admin", "Catalog", json!({})),
        (
            "customer",
            "ClaimReward",
            json!({ "input": { "providerId": provider_id } }),
        ),
        ("customer", "MyClaims", json!({ "first": 10 })),
        ("customer", "HistoryPage", json!({ "first": 10 })),
    ];
    for (file, op, vars) in cases {
        let body = app.run(None, file, op, vars).await;
        assert_failed(&body, "UNAUTHENTICATED");
    }
    // The dashboard's `me` needs a customer; the program's public part may still answer.
    let body = app.run(None, "customer", "Dashboard", json!({ "first": 5 })).await;
    assert_error_code(&body, "UNAUTHENTICATED");
    assert!(body.pointer("/data/me").is_none_or(Value::is_null), "{body:#}");
    assert_eq!(state_of(&app).await, before);
}

#[tokio::test]
async fn invalid_tokens_fail_the_whole_request_as_unauthenticated() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let before = state_of(&app).await;

    let other_key = "another-secret-that-is-long-enough-0123456789";
    let forged = JwtKeys::new(&test_config_with_secret(other_key))
        .mint(Role::Admin, "admin-1", Duration::from_secs(3600))
        .expect("mint");
    let now = jsonwebtoken::get_current_timestamp();
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("encode")
    };
    let claims = |iss: &str, aud: &str, exp: u64| json!({ "sub": "admin-1", "role": "admin", "iss": iss, "aud": aud, "iat": now, "exp": exp });
    let expired = sign(claims(JWT_ISSUER, JWT_AUDIENCE, now - 3600));
    let wrong_audience = sign(claims(JWT_ISSUER, "someone-else", now + 3600));
    let wrong_issuer = sign(claims("someone-else", JWT_AUDIENCE, now + 3600));
    let no_expiry = sign(json!({ "sub": "admin-1", "role": "admin", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE }));
    // alg "none": header {"alg":"none","typ":"JWT"}, the valid token's claims, no signature.
    let valid = app.admin();
    let payload = valid.split('.').nth(1).expect("payload");
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");

    let headers = [
        ("forged", format!("Bearer {forged}")),
        ("expired", format!("Bearer {expired}")),
        ("wrong audience", format!("Bearer {wrong_audience}")),
        ("wrong issuer", format!("Bearer {wrong_issuer}")),
        ("no expiry", format!("Bearer {no_expiry}")),
        ("alg none", format!("Bearer {alg_none}")),
        ("garbage", "Bearer not-a-jwt".to_owned()),
        ("not bearer", "Basic YWRtaW46YWRtaW4=".to_owned()),
    ];
    let query = contract_op("admin", "UpdateProgramSettings");
    for (what, header) in headers {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .header("Authorization", header)
            .json(&json!({ "query": query, "variables": { "input": { "enabled": false } } }))
            .send()
            .await
            .expect("POST /graphql");
        // The answer a missing token gets: a GraphQL error, which clients' error handling sees.
        assert_eq!(response.status(), StatusCode::OK, "{what} token");
        let body: Value = response.json().await.expect("JSON body");
        assert_failed(&body, "UNAUTHENTICATED");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{what}: {body:#}"
        );
        assert!(body["errors"][0]["message"].is_string(), "{what}: {body:#}");
    }
    assert_eq!(state_of(&app).await, before);
    assert_eq!(app.settings().await["enabled"], true);
}

fn test_config_with_secret(secret: &str) -> referral_server::config::Config {
    let mut config = test_config("sqlite::memory:".to_owned());
    config.jwt_secret = secrecy::SecretString::from(secret.to_owned());
    config
}

#[tokio::test]
async fn roles_are_enforced() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let claim = app.claim("acct-a", &provider_id, None).await;
    let claim_id = s(&claim, "/claim/id").to_owned();
    let customer = app.customer("acct-a");
    let service = app.service();
    let before = state_of(&app).await;

    // A customer runs neither admin nor integration operations.
    let customer_cases = [
        (
            "admin",
            "UpsertProvider",
            json!({ "input": { "key": "evilco", "name": "EvilCo", "redemptionRate": "1" } }),
        ),
        (
            "admin",
            "SetProductRate",
            json!({ "input": { "productKey": RESIDENTIAL, "productRate": "1000" } }),
        ),
        (
            "admin",
            "SetRedemptionRate",
            json!({ "input": { "providerKey": PROVIDER, "redemptionRate": "0.01" } }),
        ),
        (
            "admin",
            "UpsertProduct",
            json!({ "input": { "key": "evil", "providerKey": PROVIDER, "name": "Evil", "category": "residential" } }),
        ),
        (
            "admin",
            "UpdateProgramSettings",
            json!({ "input": { "enabled": false } }),
        ),
        ("admin", "ProgramSettings", json!({})),
        ("admin", "Catalog", json!({})),
        (
            "integration",
            "RecordPurchase",
            TestApp::purchase_input("evt-evil", "acct-c", RESIDENTIAL, "100"),
        ),
        (
            "integration",
            "RegisterAccount",
            json!({ "input": { "externalId": "acct-evil" } }),
        ),
        ("integration", "PendingClaims", json!({ "first": 10 })),
        (
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": claim_id, "status": "FAILED" } }),
        ),
    ];
    for (file, op, vars) in customer_cases {
        let body = app.run(Some(&customer), file, op, vars).await;
        assert_failed(&body, "FORBIDDEN");
    }
    // The billing system does not run admin operations.
    let service_cases = [
        (
            "UpsertProvider",
            json!({ "input": { "key": "evilco", "name": "EvilCo", "redemptionRate": "1" } }),
        ),
        (
            "SetProductRate",
            json!({ "input": { "productKey": RESIDENTIAL, "productRate": "1000" } }),
        ),
        ("UpdateProgramSettings", json!({ "input": { "enabled": false } })),
    ];
    for (op, vars) in service_cases {
        let body = app.run(Some(&service), "admin", op, vars).await;
        assert_failed(&body, "FORBIDDEN");
    }
    assert_eq!(state_of(&app).await, before);
    assert_eq!(app.available_points("acct-a").await, "50.00");

    // An admin token may run integration operations.
    let admin = app.admin();
    let pending = app
        .run_ok(Some(&admin), "integration", "PendingClaims", json!({ "first": 10 }))
        .await;
    assert_eq!(pending["claims"]["totalCount"], 1, "{pending:#}");
    let paid = app
        .run_ok(
            Some(&admin),
            "integration",
            "RecordPurchase",
            TestApp::purchase_input("evt-c-1", "acct-c", RESIDENTIAL, "1"),
        )
        .await;
    assert_eq!(paid["recordPurchase"]["rewards"][0]["amount"], "15.00", "{paid:#}");
}

#[tokio::test]
async fn page_sizes_over_one_hundred_are_refused() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    let customer = app.customer("acct-a");
    let service = app.service();

    for first in [101, 1000, -1] {
        for op in ["FriendsPage", "HistoryPage", "MyClaims"] {
            let body = app
                .run(Some(&customer), "customer", op, json!({ "first": first }))
                .await;
            assert_error_code(&body, "BAD_USER_INPUT");
            assert!(
                body.pointer("/data/me/referredFriends").is_none_or(Value::is_null),
                "{body:#}"
            );
            assert!(
                body.pointer("/data/me/rewardHistory").is_none_or(Value::is_null),
                "{body:#}"
            );
            assert!(body.pointer("/data/me/claims").is_none_or(Value::is_null), "{body:#}");
        }
        let body = app
            .run(Some(&customer), "customer", "Dashboard", json!({ "first": first }))
            .await;
        assert_error_code(&body, "BAD_USER_INPUT");
        let body = app
            .run(
                Some(&service),
                "integration",
                "PendingClaims",
                json!({ "first": first }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    // 100 is allowed.
    let data = app
        .run_ok(Some(&customer), "customer", "HistoryPage", json!({ "first": 100 }))
        .await;
    assert_eq!(data["me"]["rewardHistory"]["totalCount"], 1, "{data:#}");
    let data = app
        .run_ok(Some(&customer), "customer", "FriendsPage", json!({ "first": 100 }))
        .await;
    assert_eq!(data["me"]["referredFriends"]["totalCount"], 1, "{data:#}");
}

#[tokio::test]
async fn a_cursor_that_was_not_issued_by_the_server_is_refused() {
    let app = spawn_app().await;
    app.register("acct-a", None, None).await;
    let body = app
        .run(
            Some(&app.customer("acct-a")),
            "customer",
            "HistoryPage",
            json!({ "first": 10, "after": "'; DROP TABLE accounts; --" }),
        )
        .await;
    assert_error_code(&body, "BAD_USER_INPUT");
    assert_eq!(app.count("accounts").await, 1);
}

#[tokio::test]
async fn customers_never_see_another_accounts_details() {
    let app = spawn_app().await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let registered = app
        .run_ok(
            Some(&app.service()),
            "integration",
            "RegisterAccount",
            json!({ "input": { "externalId": "acct-b", "displayName": "Bob Brown",
                               "email": "bob@example.com", "referralCode": a } }),
        )
        .await;
    assert_eq!(
        registered["registerAccount"]["referral"]["status"], "PENDING",
        "{registered:#}"
    );

    // A asks for its friend's full account: refused, and nothing of it is shown.
    let query = "query { me { referredFriends(first: 5) { edges { node { referee { displayName \
                 account { externalId email displayName } } } } } } }";
    let body = app.gql(Some(&app.customer("acct-a")), query, json!({})).await;
    assert_error_code(&body, "FORBIDDEN");
    let text = body.to_string();
    for secret in ["acct-b", "bob@example.com", "Bob Brown"] {
        assert!(!text.contains(secret), "A sees {secret:?} of B: {body:#}");
    }

    // B asks for its referrer's full account: the same.
    let query = "query { me { referral { referrer { displayName account { externalId email } } } } }";
    let body = app.gql(Some(&app.customer("acct-b")), query, json!({})).await;
    assert_error_code(&body, "FORBIDDEN");
    let text = body.to_string();
    for secret in ["acct-a", "Alice Adams"] {
        assert!(!text.contains(secret), "B sees {secret:?} of A: {body:#}");
    }

    // The dashboards show masked names only.
    let text = app.dashboard("acct-a", 5).await.to_string();
    assert!(
        text.contains("Bo*** B.") && !text.contains("Bob Brown") && !text.contains("bob@example.com"),
        "{text}"
    );
    let text = app.dashboard("acct-b", 5).await.to_string();
    assert!(text.contains("Al*** A.") && !text.contains("Alice Adams"), "{text}");

    // A token for an account the billing system has not registered sees no account.
    let data = app.dashboard("acct-unregistered", 5).await;
    assert!(data["me"].is_null(), "{data:#}");
}

#[tokio::test]
async fn unknown_codes_beyond_the_rate_limit_are_registered_as_rate_limited() {
    let app = spawn_app_with(|config| config.code_lookups_per_minute = 3).await;
    let code = app.register_code("owner", Some("Owner"), None).await;

    // Registrations without a code look nothing up, and valid codes are never counted.
    for i in 0..5 {
        app.register(&format!("plain-{i}"), None, None).await;
        let payload = app.register(&format!("friend-{i}"), None, Some(&code)).await;
        assert_eq!(s(&payload, "/referral/status"), "PENDING", "{payload}");
    }
    for i in 0..3 {
        let payload = app
            .register(&format!("guess-{i}"), None, Some(&format!("NOSUCH0{i}")))
            .await;
        assert_eq!(s(&payload, "/referral/rejectionReason"), "UNKNOWN_CODE", "{payload}");
    }
    // The fourth unknown code of the minute: the account is registered all the same, and the
    // attempt is recorded with the code it came with.
    let accounts = app.count("accounts").await;
    let limited = app.register("guess-3", None, Some("NOSUCH03")).await;
    assert_eq!(s(&limited, "/account/externalId"), "guess-3", "{limited}");
    assert_eq!(s(&limited, "/referral/status"), "REJECTED", "{limited}");
    assert_eq!(s(&limited, "/referral/rejectionReason"), "RATE_LIMITED", "{limited}");
    assert_eq!(app.count("accounts").await, accounts + 1);
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM referrals WHERE code_used = 'NOSUCH03'")
            .await,
        1
    );
    // A valid code from the same caller is still accepted.
    let payload = app.register("friend-late", None, Some(&code)).await;
    assert_eq!(s(&payload, "/referral/status"), "PENDING", "{payload}");
}
