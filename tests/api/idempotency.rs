//! The same eventId (or idempotencyKey) with the same input is answered again and changes
//! nothing; with a different input it is an IDEMPOTENCY_CONFLICT.

use crate::helpers::*;
use serde_json::{Value, json};

fn purchase_vars(event_id: &str, external_id: &str, product: &str, gb: &str, amount: &str) -> Value {
    json!({ "input": {
        "eventId": event_id,
        "externalId": external_id,
        "productKey": product,
        "quantityGb": gb,
        "amount": amount,
        "occurredAt": "2026-01-15T10:00:00Z",
    } })
}

#[tokio::test]
async fn a_replayed_purchase_is_answered_again_and_changes_nothing() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let service = app.service();

    let first = app
        .run_ok(
            Some(&service),
            "integration",
            "RecordPurchase",
            purchase_vars("inv-1001", "acct-b", RESIDENTIAL, "10", "49.90"),
        )
        .await["recordPurchase"]
        .clone();
    assert_eq!(first["event"]["duplicate"], false, "{first:#}");
    assert_eq!(
        instant(&first["event"]["occurredAt"]),
        instant(&json!("2026-01-15T10:00:00Z")),
        "{first:#}"
    );
    assert_eq!(first["rewards"][0]["amount"], "150.00", "{first:#}");
    let before = app.snapshot().await;

    // The same input again, also written differently ("10.0" is 10).
    for gb in ["10", "10.0"] {
        let again = app
            .run_ok(
                Some(&service),
                "integration",
                "RecordPurchase",
                purchase_vars("inv-1001", "acct-b", RESIDENTIAL, gb, "49.90"),
            )
            .await["recordPurchase"]
            .clone();
        assert_eq!(again["event"]["duplicate"], true, "{again:#}");
        assert_eq!(again["event"]["id"], first["event"]["id"], "{again:#}");
        assert_eq!(again["event"]["eventId"], "inv-1001", "{again:#}");
        assert_eq!(again["event"]["kind"], "PURCHASE", "{again:#}");
        assert_eq!(again["event"]["occurredAt"], first["event"]["occurredAt"], "{again:#}");
        assert_eq!(
            again["rewards"], first["rewards"],
            "the same rewards are answered: {again:#}"
        );
        assert_eq!(
            again["decisions"], first["decisions"],
            "the same decisions are answered: {again:#}"
        );
        assert_eq!(app.snapshot().await, before, "a replay must change nothing");
    }
    assert_eq!(
        app.points("acct-a").await,
        ("150.00".into(), "0.00".into(), "150.00".into())
    );
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn an_event_id_reused_with_different_input_is_a_conflict() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    app.chain().await;
    let service = app.service();
    app.run_ok(
        Some(&service),
        "integration",
        "RecordPurchase",
        purchase_vars("inv-1001", "acct-b", RESIDENTIAL, "10", "49.90"),
    )
    .await;
    let before = app.snapshot().await;

    for (what, vars) in [
        (
            "quantity",
            purchase_vars("inv-1001", "acct-b", RESIDENTIAL, "11", "49.90"),
        ),
        (
            "amount",
            purchase_vars("inv-1001", "acct-b", RESIDENTIAL, "10", "59.90"),
        ),
        (
            "product",
            purchase_vars("inv-1001", "acct-b", DATACENTER, "10", "49.90"),
        ),
        (
            "account",
            purchase_vars("inv-1001", "acct-c", RESIDENTIAL, "10", "49.90"),
        ),
    ] {
        let body = app.run(Some(&service), "integration", "RecordPurchase", vars).await;
        assert_failed(&body, "IDEMPOTENCY_CONFLICT");
        assert_eq!(app.snapshot().await, before, "a conflicting {what} must change nothing");
    }
    // C's own first purchase, under a fresh eventId, still counts for B.
    let paid = app.purchase("inv-1002", "acct-c", RESIDENTIAL, "2").await;
    assert_eq!(paid["rewards"][0]["account"]["externalId"], "acct-b", "{paid:#}");
    assert_eq!(paid["rewards"][0]["amount"], "30.00", "{paid:#}");
    assert_eq!(app.available_points("acct-a").await, "150.00");
}

#[tokio::test]
async fn a_replayed_claim_answers_the_same_claim_and_debits_once() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points
    app.purchase("evt-c-1", "acct-c", RESIDENTIAL, "10").await; // B: 150 points

    let first = app.claim("acct-a", &provider_id, Some("claim-key-1")).await;
    assert_eq!(first["claim"]["points"], "100.00", "{first:#}");
    assert_eq!(first["balance"]["available"], "50.00", "{first:#}");

    // Replayed: the same claim, although 50 points would no longer cover a new one.
    let again = app.claim("acct-a", &provider_id, Some("claim-key-1")).await;
    assert_eq!(again["claim"], first["claim"], "{again:#}");
    assert_eq!(again["balance"]["available"], "50.00", "{again:#}");
    assert_eq!(app.available_points("acct-a").await, "50.00");
    let mine = app
        .run_ok(
            Some(&app.customer("acct-a")),
            "customer",
            "MyClaims",
            json!({ "first": 10 }),
        )
        .await;
    assert_eq!(mine["me"]["claims"]["totalCount"], 1, "{mine:#}");
    assert_eq!(app.ledger_sum("acct-a", "POINTS").await, 50_000_000);

    // The same key for another provider is a conflict.
    let other_id = app.upsert_provider("otherco", "OtherCo", Some("10")).await;
    let before = app.snapshot().await;
    let conflict = app.claim_raw("acct-a", &other_id, Some("claim-key-1")).await;
    assert_failed(&conflict, "IDEMPOTENCY_CONFLICT");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.available_points("acct-a").await, "50.00");

    // Keys are scoped to the caller: B's "claim-key-1" is B's own claim.
    let b_claim = app.claim("acct-b", &provider_id, Some("claim-key-1")).await;
    assert_ne!(b_claim["claim"]["id"], first["claim"]["id"], "{b_claim:#}");
    assert_eq!(b_claim["balance"]["available"], "50.00", "{b_claim:#}");
    assert_eq!(app.available_points("acct-a").await, "50.00");

    // A new key is a new claim.
    let cheap = app.claim("acct-a", &other_id, Some("claim-key-2")).await;
    assert_ne!(cheap["claim"]["id"], first["claim"]["id"], "{cheap:#}");
    assert_eq!(cheap["claim"]["points"], "10.00", "{cheap:#}");
    assert_eq!(cheap["balance"]["available"], "40.00", "{cheap:#}");
}

/// Claims recorded before the claim fingerprint left `gbPerClaim` out hashed the GB in too
/// (`legacy_claim_fingerprint` in store.rs): a retry of one is still the same request, even
/// after the admin changed `gbPerClaim`; another provider under its key is still a conflict.
#[tokio::test]
async fn a_claim_stored_under_the_legacy_fingerprint_is_still_answered_again() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.chain().await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await; // A: 150 points
    let first = app.claim("acct-a", &provider_id, Some("old-key")).await;
    let provider = app
        .sql_i64("SELECT CAST(id AS BIGINT) FROM providers WHERE key = 'proxyco'")
        .await;
    let legacy = referral_server::service::request_hash(&json!({ "providerId": provider, "gb": 1 }));
    app.state
        .db
        .execute_unprepared(&format!("UPDATE claims SET request_hash = '{legacy}'"))
        .await
        .expect("store the legacy fingerprint");
    app.update_settings(json!({ "gbPerClaim": 2 })).await;

    let before = app.snapshot().await;
    let again = app.claim("acct-a", &provider_id, Some("old-key")).await;
    assert_eq!(again["claim"], first["claim"], "{again:#}");
    assert_eq!(app.snapshot().await, before, "a replay changes nothing");
    let other_id = app.upsert_provider("otherco", "OtherCo", Some("10")).await;
    let conflict = app.claim_raw("acct-a", &other_id, Some("old-key")).await;
    assert_failed(&conflict, "IDEMPOTENCY_CONFLICT");
    assert_eq!(app.available_points("acct-a").await, "50.00");
}
