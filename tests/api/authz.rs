//! The authorization matrix: every operation of the contract that the server implements, sent
//! by every kind of caller (no token, customer A, customer B, admin, billing system), and the
//! nested paths by which a customer might reach another account.
//!
//! The rules (operations/README.md, src/auth.rs): customer operations are for customers,
//! each about itself only; admin operations need `admin`; integration operations need `service`,
//! and an admin may run them too. No token: UNAUTHENTICATED; the wrong role: FORBIDDEN, with no
//! data and nothing changed.

use crate::helpers::*;
use async_graphql::ID;
use referral_server::graphql::ids::{Kind, from_id};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const FILES: [&str; 3] = ["customer", "admin", "integration"];

/// The contract's operations of programs not built yet (affiliates, withdrawals, referral
/// search, adjustments, reports, invoices, refunds, closing accounts): their documents do not
/// validate against schema.graphql. Exactly these are skipped; a newly built one must be
/// taken out of this list, and then the matrix covers it.
const NOT_BUILT: [&str; 0] = [];

/// Root query fields a customer may use; every other one is FORBIDDEN for customers.
const CUSTOMER_ROOT_QUERIES: [&str; 3] = ["me", "program", "rewardStore"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    NoToken,
    CustomerA,
    CustomerB,
    Admin,
    Service,
}

const CALLERS: [Caller; 5] = [
    Caller::NoToken,
    Caller::CustomerA,
    Caller::CustomerB,
    Caller::Admin,
    Caller::Service,
];

/// One person of the test world.
struct Person {
    external_id: &'static str,
    name: &'static str,
    email: &'static str,
}

const ALICE: Person = Person {
    external_id: "cust-alice",
    name: "Alice Anderson",
    email: "alice.anderson@example.com",
};
const BOB: Person = Person {
    external_id: "cust-bob",
    name: "Bob Baker",
    email: "bob.baker@example.com",
};
/// Alice's referrer.
const RITA: Person = Person {
    external_id: "cust-rita",
    name: "Rita Reed",
    email: "rita.reed@example.com",
};
/// Bob's referrer.
const SAM: Person = Person {
    external_id: "cust-sam",
    name: "Sam Stone",
    email: "sam.stone@example.com",
};
/// Referred by Alice.
const FRED: Person = Person {
    external_id: "cust-fred",
    name: "Fred Fox",
    email: "fred.fox@example.com",
};
/// Referred by Bob.
const GINA: Person = Person {
    external_id: "cust-gina",
    name: "Gina Gold",
    email: "gina.gold@example.com",
};

const ALICE_CODE: &str = "ALICEQ7K9";
const BOB_CODE: &str = "BOBW3X8Z";

/// What the setup made: ids the operations need, and what each customer must never see.
struct World {
    provider_id: String,
    alice_id: String,
    bob_id: String,
    rita_id: String,
    sam_id: String,
    alice_claim: String,
    bob_claim: String,
    rule_id: String,
    /// Rita's open withdrawal request.
    rita_withdrawal: String,
    /// Two marketing materials: one to update, one to delete.
    material_id: String,
    doomed_material_id: String,
    /// Two webhook endpoints (one to delete), a delivery to the first, and the first event.
    endpoint_id: String,
    doomed_endpoint_id: String,
    delivery_id: String,
    first_event_id: String,
    /// Rita → Alice and Sam → Bob.
    alice_referral: String,
    bob_referral: String,
    /// Per customer: the strings of other accounts that must never be in its answers
    /// (external ids, emails, full names, the codes of strangers).
    secrets_hidden_from: BTreeMap<&'static str, Vec<String>>,
    /// Per customer: other accounts' ids, which must never be a value in its answers.
    ids_hidden_from: BTreeMap<&'static str, Vec<String>>,
}

async fn register_person(app: &TestApp, person: &Person, code: Option<&str>) -> Value {
    let mut input = json!({
        "externalId": person.external_id,
        "displayName": person.name,
        "email": person.email,
    });
    if let Some(code) = code {
        input["referralCode"] = json!(code);
    }
    app.register_with(input).await
}

/// Rita → Alice → Fred and Sam → Bob → Gina; Fred and Gina bought 20 GB (300 points for
/// Alice and for Bob), Alice and Bob bought 1 GB each (15 points for Rita and Sam), Alice and
/// Bob each claimed once (200 points left each), and a disabled rule exists.
async fn world(app: &TestApp) -> World {
    let provider_id = app.setup_catalog().await;
    let rita = register_person(app, &RITA, None).await;
    let sam = register_person(app, &SAM, None).await;
    let rita_code = s(&rita, "/account/referralCode").to_owned();
    let sam_code = s(&sam, "/account/referralCode").to_owned();
    let alice = register_person(app, &ALICE, Some(&rita_code)).await;
    let bob = register_person(app, &BOB, Some(&sam_code)).await;
    assert_eq!(alice["referral"]["status"], "PENDING", "{alice:#}");
    assert_eq!(bob["referral"]["status"], "PENDING", "{bob:#}");
    let alice_id = s(&alice, "/account/id").to_owned();
    let bob_id = s(&bob, "/account/id").to_owned();
    app.set_referral_code(&alice_id, ALICE_CODE).await;
    app.set_referral_code(&bob_id, BOB_CODE).await;
    let fred = register_person(app, &FRED, Some(ALICE_CODE)).await;
    let gina = register_person(app, &GINA, Some(BOB_CODE)).await;
    assert_eq!(fred["referral"]["status"], "PENDING", "{fred:#}");
    assert_eq!(gina["referral"]["status"], "PENDING", "{gina:#}");

    app.purchase("setup-fred-1", FRED.external_id, RESIDENTIAL, "20").await;
    app.purchase("setup-gina-1", GINA.external_id, RESIDENTIAL, "20").await;
    app.purchase("setup-alice-1", ALICE.external_id, RESIDENTIAL, "1").await;
    app.purchase("setup-bob-1", BOB.external_id, RESIDENTIAL, "1").await;
    let alice_claim = app.claim(ALICE.external_id, &provider_id, None).await;
    let bob_claim = app.claim(BOB.external_id, &provider_id, None).await;
    assert_eq!(app.available_points(ALICE.external_id).await, "200.00");
    assert_eq!(app.available_points(BOB.external_id).await, "200.00");

    let mut rule = fixed_credit_rule("Disabled sign-up credit", "SIGNUP", "REFEREE", "1");
    rule["enabled"] = json!(false);
    let rule_id = app.create_rule_id(rule).await;

    // Alice, Bob and Rita are approved affiliates with 50.00 of cash commission each (the
    // sign-up bonus); Rita asked to withdraw 20.00 of it.
    app.update_settings(json!({ "affiliateSignupBonus": "50", "minimumWithdrawal": "5",
                                "commissionConversionRate": "1.5" }))
        .await;
    let mut materials = Vec::new();
    for name in ["Spring banner", "Old snippet"] {
        let created = app
            .run_ok(
                Some(&app.admin()),
                "admin",
                "CreateMarketingMaterial",
                json!({ "input": { "kind": "BANNER", "name": name, "format": "HTML",
                                   "template": "<a href=\"{link}\">Join</a>" } }),
            )
            .await;
        materials.push(s(&created, "/createMarketingMaterial/id").to_owned());
    }
    for account_id in [&alice_id, &bob_id, &s(&rita, "/account/id").to_owned()] {
        app.run_ok(
            Some(&app.admin()),
            "admin",
            "DecideAffiliate",
            json!({ "input": { "accountId": account_id, "decision": "APPROVE" } }),
        )
        .await;
    }
    let mut endpoints = Vec::new();
    for name in ["billing", "old desk"] {
        let created = app
            .run_ok(
                Some(&app.admin()),
                "admin",
                "CreateWebhookEndpoint",
                json!({ "input": { "url": "https://hooks.example.test/matrix", "description": name } }),
            )
            .await;
        endpoints.push(s(&created, "/createWebhookEndpoint/id").to_owned());
    }
    // Ordering the events so far writes their deliveries to both endpoints.
    referral_server::service::outbox::sequence(&app.state.db)
        .await
        .expect("events ordered");
    // A delivery of the first endpoint: the other endpoint's go with it when it is deleted.
    let first_endpoint = from_id(Kind::WebhookEndpoint, &ID(endpoints[0].clone())).expect("an endpoint id");
    let delivery_id = format!(
        "whd_{}",
        app.sql_i64(&format!(
            "SELECT MIN(id) FROM webhook_deliveries WHERE endpoint_id = {first_endpoint}"
        ))
        .await
    );
    let first_event_id = format!("de_{}", app.sql_i64("SELECT MIN(id) FROM outbox_events").await);
    let rita_withdrawal = app
        .run_ok(
            Some(&app.customer(RITA.external_id)),
            "customer",
            "RequestWithdrawal",
            json!({ "input": { "amount": "20" } }),
        )
        .await;
    let rita_withdrawal = s(&rita_withdrawal, "/requestWithdrawal/withdrawal/id").to_owned();

    let everyone = [
        (&ALICE, ALICE_CODE.to_owned(), alice_id.clone()),
        (&BOB, BOB_CODE.to_owned(), bob_id.clone()),
        (&RITA, rita_code, s(&rita, "/account/id").to_owned()),
        (&SAM, sam_code, s(&sam, "/account/id").to_owned()),
        (
            &FRED,
            s(&fred, "/account/referralCode").to_owned(),
            s(&fred, "/account/id").to_owned(),
        ),
        (
            &GINA,
            s(&gina, "/account/referralCode").to_owned(),
            s(&gina, "/account/id").to_owned(),
        ),
    ];
    // A customer may see the referral code of its referrer (Dashboard) and of its friends.
    let related: [(&str, [&str; 2]); 2] = [
        (ALICE.external_id, [RITA.external_id, FRED.external_id]),
        (BOB.external_id, [SAM.external_id, GINA.external_id]),
    ];
    let mut secrets_hidden_from = BTreeMap::new();
    let mut ids_hidden_from = BTreeMap::new();
    for (customer, relations) in related {
        let mut secrets = Vec::new();
        let mut ids = Vec::new();
        for (person, code, id) in &everyone {
            if person.external_id == customer {
                continue;
            }
            secrets.extend([
                person.external_id.to_owned(),
                person.name.to_owned(),
                person.email.to_owned(),
            ]);
            if !relations.contains(&person.external_id) {
                secrets.push(code.clone());
            }
            ids.push(id.clone());
        }
        secrets_hidden_from.insert(customer, secrets);
        ids_hidden_from.insert(customer, ids);
    }

    World {
        provider_id,
        alice_id,
        bob_id,
        rita_id: s(&rita, "/account/id").to_owned(),
        sam_id: s(&sam, "/account/id").to_owned(),
        alice_claim: s(&alice_claim, "/claim/id").to_owned(),
        bob_claim: s(&bob_claim, "/claim/id").to_owned(),
        rule_id,
        rita_withdrawal,
        material_id: materials[0].clone(),
        doomed_material_id: materials[1].clone(),
        endpoint_id: endpoints[0].clone(),
        doomed_endpoint_id: endpoints[1].clone(),
        delivery_id,
        first_event_id,
        alice_referral: s(&alice, "/referral/id").to_owned(),
        bob_referral: s(&bob, "/referral/id").to_owned(),
        secrets_hidden_from,
        ids_hidden_from,
    }
}

fn token(app: &TestApp, caller: Caller) -> Option<String> {
    match caller {
        Caller::NoToken => None,
        Caller::CustomerA => Some(app.customer(ALICE.external_id)),
        Caller::CustomerB => Some(app.customer(BOB.external_id)),
        Caller::Admin => Some(app.admin()),
        Caller::Service => Some(app.service()),
    }
}

fn customer_of(caller: Caller) -> Option<&'static str> {
    match caller {
        Caller::CustomerA => Some(ALICE.external_id),
        Caller::CustomerB => Some(BOB.external_id),
        _ => None,
    }
}

/// Who may run the operations of a contract file (src/auth.rs: RoleGuard).
fn allowed(file: &str, caller: Caller) -> bool {
    match file {
        "customer" => matches!(caller, Caller::CustomerA | Caller::CustomerB),
        "admin" => caller == Caller::Admin,
        "integration" => matches!(caller, Caller::Service | Caller::Admin),
        "sandbox" => caller == Caller::Admin,
        other => panic!("unknown contract file {other}"),
    }
}

/// The variables of an operation for a caller: a harmless change when the caller may run it,
/// a hostile one when it may not (so that a hole would show as a change). `None`: the matrix
/// has no row for this operation yet.
fn variables(op: &str, caller: Caller, allowed: bool, w: &World) -> Option<Value> {
    let who = format!("{caller:?}").to_ascii_lowercase();
    let vars = match op {
        // customer
        "Dashboard" => json!({ "first": 20 }),
        "FriendsPage" | "HistoryPage" | "MyClaims" => json!({ "first": 20 }),
        "GenerateReferralLink" | "RewardStore" | "RewardStoreScreen" | "ReferralStats" => json!({}),
        "BalanceDetails" => json!({}),
        "ApplyForAffiliate" => json!({}),
        "AffiliateDashboard" => json!({ "first": 10 }),
        "RequestWithdrawal" => json!({ "input": { "amount": "10", "idempotencyKey": format!("matrix-{who}") } }),
        "ConvertCommission" => json!({ "input": { "amount": "2", "idempotencyKey": format!("matrix-{who}") } }),
        "AffiliateMaterials" => json!({}),
        "AffiliateFriends" => json!({ "first": 20, "filter": { "search": "r" }, "orderBy": "MOST_EARNED" }),
        // The same key for both: the second answers the first claim again and spends nothing.
        "ClaimReward" | "ClaimRewardAndBalance" => {
            json!({ "input": { "providerId": w.provider_id, "idempotencyKey": format!("matrix-{who}") } })
        }
        // admin
        "ProgramSettings" | "Catalog" | "RewardRules" => json!({}),
        "UpdateProgramSettings" if allowed => json!({ "input": { "currency": "EUR" } }),
        "UpdateProgramSettings" => {
            json!({ "input": { "enabled": false, "gbPerClaim": 1000,
                               "referralLinkTemplate": "https://evil.example/{code}" } })
        }
        "UpsertProvider" if allowed => {
            json!({ "input": { "key": "otherco", "name": "OtherCo", "redemptionRate": "50" } })
        }
        "UpsertProvider" => {
            json!({ "input": { "key": PROVIDER, "name": "Hijacked", "redemptionRate": "0.01" } })
        }
        "UpsertProduct" if allowed => json!({ "input": {
            "key": "resi-yearly", "providerKey": PROVIDER, "name": "Residential yearly",
            "category": "residential", "productRate": "10" } }),
        "UpsertProduct" => json!({ "input": {
            "key": RESIDENTIAL, "providerKey": PROVIDER, "name": "Hijacked",
            "category": "residential", "productRate": "100000" } }),
        "SetProductRate" => json!({ "input": {
            "productKey": RESIDENTIAL, "productRate": if allowed { "15" } else { "100000" } } }),
        "SetRedemptionRate" => json!({ "input": {
            "providerKey": PROVIDER, "redemptionRate": if allowed { "100" } else { "0.01" } } }),
        "CreateRewardRule" => {
            let mut rule = fixed_credit_rule(&format!("Rule by {who}"), "SIGNUP", "REFEREE", "1000");
            rule["enabled"] = json!(!allowed);
            json!({ "input": rule })
        }
        "UpdateRewardRule" => {
            let mut rule = fixed_credit_rule("Disabled sign-up credit", "SIGNUP", "REFEREE", "1000");
            rule["enabled"] = json!(!allowed);
            json!({ "id": w.rule_id, "input": rule })
        }
        "Accounts" => json!({ "search": null, "first": 20 }),
        "AccountDetail" => json!({ "id": w.alice_id }),
        // Allowed: Rita's terms; hostile: Sam's, which must stay unset.
        "SetAffiliateTerms" if allowed => json!({ "input": {
            "accountId": w.rita_id, "calculation": "PERCENT", "value": "15", "recurring": true } }),
        "SetAffiliateTerms" => json!({ "input": { "accountId": w.sam_id, "calculation": "FIXED", "value": "500" } }),
        "SetReferralCode" if allowed => {
            json!({ "input": { "accountId": w.rita_id, "code": "RITA2024" } })
        }
        "SetReferralCode" => json!({ "input": { "accountId": w.alice_id, "code": "STOLEN42" } }),
        "AuditLog" => json!({ "first": 20 }),
        // Allowed: Sam, who never applied, is enabled; hostile: Alice is suspended.
        "DecideAffiliate" if allowed => json!({ "input": { "accountId": w.sam_id, "decision": "APPROVE" } }),
        "DecideAffiliate" => json!({ "input": { "accountId": w.alice_id, "decision": "SUSPEND" } }),
        "Withdrawals" => json!({ "status": null, "first": 20 }),
        "Referrals" => json!({ "filter": { "status": "PENDING" }, "orderBy": "MOST_EARNED", "first": 20 }),
        // Allowed: Rita's referral of Alice (Rita's 15 points are taken back); hostile: Sam's of Bob.
        "RejectReferral" if allowed => json!({ "input": { "referralId": w.alice_referral, "reason": "matrix" } }),
        "RejectReferral" => json!({ "input": { "referralId": w.bob_referral, "reason": format!("by {who}") } }),
        "AdjustBalance" if allowed => json!({ "input": {
            "accountId": w.rita_id, "unit": "CREDIT", "amount": "5", "reason": "goodwill", "idempotencyKey": "matrix" } }),
        "AdjustBalance" => json!({ "input": {
            "accountId": w.alice_id, "unit": "POINTS", "amount": "1000", "reason": format!("by {who}") } }),
        "ProgramReport" => json!({}),
        // Allowed: Rita pays out monthly; hostile: Sam yearly.
        "SetPayoutSchedule" if allowed => json!({ "input": { "accountId": w.rita_id, "schedule": "MONTHLY" } }),
        "SetPayoutSchedule" => json!({ "input": { "accountId": w.sam_id, "schedule": "YEARLY" } }),
        "MarketingMaterials" => json!({}),
        "CreateMarketingMaterial" => json!({ "input": { "kind": "SNIPPET", "name": format!("By {who}"),
                                                         "format": "TEXT", "template": "Join me: {link}" } }),
        "UpdateMarketingMaterial" if allowed => json!({ "id": w.material_id, "input": { "name": "Summer banner" } }),
        "UpdateMarketingMaterial" => json!({ "id": w.material_id, "input": { "template": format!("{who} {{link}}") } }),
        "DeleteMarketingMaterial" => json!({ "id": w.doomed_material_id }),
        "WebhookEndpoints" => json!({}),
        "WebhookDeliveries" => json!({ "endpointId": w.endpoint_id, "status": "PENDING", "first": 20 }),
        // Allowed: a new endpoint for the desk; hostile: one that would receive every event.
        "CreateWebhookEndpoint" if allowed => json!({ "input": {
            "url": "https://desk.example.test/hooks", "eventTypes": ["AFFILIATE_APPLIED"] } }),
        "CreateWebhookEndpoint" => json!({ "input": { "url": format!("https://{who}.example.test/all") } }),
        "UpdateWebhookEndpoint" if allowed => {
            json!({ "id": w.endpoint_id, "input": { "description": "billing (prod)" } })
        }
        "UpdateWebhookEndpoint" => json!({ "id": w.endpoint_id, "input": {
            "url": format!("https://{who}.example.test/stolen") } }),
        "RotateWebhookSecret" => json!({ "id": w.endpoint_id }),
        "DeleteWebhookEndpoint" => json!({ "id": w.doomed_endpoint_id }),
        "ReplayWebhookDelivery" => json!({ "id": w.delivery_id }),
        "ReplayWebhookEvents" => json!({ "endpointId": w.endpoint_id, "sinceEventId": w.first_event_id }),
        // Refused callers run first: the hostile rejection finds Rita's request open.
        "DecideWithdrawal" if allowed => {
            json!({ "input": { "withdrawalId": w.rita_withdrawal, "decision": "APPROVE" } })
        }
        "DecideWithdrawal" => json!({ "input": { "withdrawalId": w.rita_withdrawal, "decision": "REJECT" } }),
        // Rita and Sam have no referrer. Allowed: Bob refers Rita (Bob's chain is Sam, no
        // cycle); hostile: Alice becomes Sam's referrer.
        "AssignReferrer" if allowed => json!({ "input": {
            "accountId": w.rita_id, "referrerAccountId": w.bob_id, "reason": "support ticket 1" } }),
        "AssignReferrer" => json!({ "input": {
            "accountId": w.sam_id, "referrerAccountId": w.alice_id, "reason": format!("by {who}") } }),
        // Refused callers run first: the hostile disqualification finds Sam not disqualified,
        // the hostile reinstatement finds Rita disqualified by the admin's row before it.
        "DisqualifyAccount" if allowed => json!({ "input": { "accountId": w.rita_id, "reason": "matrix" } }),
        "DisqualifyAccount" => json!({ "input": { "accountId": w.sam_id, "reason": format!("by {who}") } }),
        "ReinstateAccount" => json!({ "input": { "accountId": w.rita_id, "reason": format!("by {who}") } }),
        // A query that writes nothing: the same preview for everyone, with a draft rule.
        "SimulateEvent" => json!({
            "event": { "purchase": TestApp::purchase_input(&format!("sim-{who}"), FRED.external_id, RESIDENTIAL, "5")["input"] },
            "rules": [fixed_credit_rule("Draft purchase credit", "FIRST_PURCHASE", "REFERRER", "3")],
        }),
        // integration
        "RegisterAccount" => json!({ "input": {
            "externalId": format!("cust-new-{who}"), "referralCode": ALICE_CODE } }),
        "RecordPaymentMethodVerified" => TestApp::payment_verified_input(&format!("pmv-{who}"), ALICE.external_id),
        "RecordTopUp" => TestApp::top_up_input(&format!("top-{who}"), ALICE.external_id, "10", None),
        "RecordPurchase" => TestApp::purchase_input(&format!("buy-{who}"), FRED.external_id, RESIDENTIAL, "100"),
        "RecordInvoicePaid" => json!({ "input": {
            "eventId": format!("invoice-{who}"), "externalId": FRED.external_id,
            "lines": [{ "category": "compute", "amount": "30" }] } }),
        // Allowed: the caller's own later purchase of Fred's (above), which paid nothing; hostile:
        // Fred's first purchase, which paid Alice.
        "RecordRefund" if allowed => json!({ "input": {
            "eventId": format!("refund-{who}"), "externalId": FRED.external_id, "refundOf": format!("buy-{who}") } }),
        "RecordRefund" => json!({ "input": {
            "eventId": format!("refund-{who}"), "externalId": FRED.external_id, "refundOf": "setup-fred-1" } }),
        // Allowed: the account the caller registered (above); hostile: Alice's.
        "CloseAccount" if allowed => json!({ "input": {
            "eventId": format!("close-{who}"), "externalId": format!("cust-new-{who}") } }),
        "CloseAccount" => json!({ "input": { "eventId": format!("close-{who}"), "externalId": ALICE.external_id } }),
        // Allowed: the account the caller closed (above); hostile: Alice's.
        "ReopenAccount" if allowed => json!({ "input": {
            "eventId": format!("reopen-{who}"), "externalId": format!("cust-new-{who}") } }),
        "ReopenAccount" => json!({ "input": { "eventId": format!("reopen-{who}"), "externalId": ALICE.external_id } }),
        "ApplyCredit" => TestApp::apply_credit_input(&format!("inv-{who}"), ALICE.external_id, "5"),
        "PendingClaims" => json!({ "first": 20 }),
        "Events" => json!({ "types": ["REFERRAL_ATTRIBUTED", "CLAIM_REQUESTED"], "first": 50 }),
        "CompleteClaim" => {
            let claim = match caller {
                Caller::Admin => &w.bob_claim,
                _ => &w.alice_claim,
            };
            let status = if allowed { "COMPLETED" } else { "FAILED" };
            json!({ "input": { "claimId": claim, "status": status } })
        }
        // sandbox (its own test below: the matrix's server is not a sandbox)
        "SandboxClock" => json!({}),
        "AdvanceClock" => json!({ "days": if allowed { 1 } else { 3650 } }),
        _ => return None,
    };
    Some(vars)
}

/// Whether the server refused a document as not valid against its schema because the schema
/// lacks a field or type it uses: the mark of an operation of a program not built yet.
fn unknown_to_schema(body: &Value) -> bool {
    let no_data = body.get("data").is_none_or(Value::is_null);
    let unknown = body["errors"].as_array().into_iter().flatten().any(|e| {
        let message = e["message"].as_str().unwrap_or_default();
        message.starts_with("Unknown field") || message.starts_with("Unknown type")
    });
    no_data && unknown
}

/// Everything the matrix checks "nothing changed" against: every table, the settings, the
/// catalog, the rules and every account as an admin sees it.
async fn state_of(app: &TestApp) -> Value {
    json!({
        "snapshot": app.snapshot().await,
        "settings": app.settings().await,
        "catalog": app.catalog().await,
        "rules": app.rules().await,
        "accounts": app.accounts(None, 100, None).await,
    })
}

/// Every string value in a JSON document.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// What of another account's data a customer's answer shows: empty when nothing.
fn leaks(w: &World, customer: &str, body: &Value) -> Vec<String> {
    let mut values = Vec::new();
    strings(body, &mut values);
    let mut found = Vec::new();
    for secret in &w.secrets_hidden_from[customer] {
        if values.iter().any(|v| v.contains(secret.as_str())) {
            found.push(secret.clone());
        }
    }
    for id in &w.ids_hidden_from[customer] {
        if values.iter().any(|v| v == id) {
            found.push(id.clone());
        }
    }
    found
}

/// Refused: every error has `code` (at least one), and no root field has data, but `program`,
/// which any signed-in viewer may read.
fn refused(body: &Value, code: &str, signed_in: bool) -> Result<(), String> {
    let codes = error_codes(body);
    if codes.is_empty() || codes.iter().any(|c| c != code) {
        return Err(format!("expected only {code} errors, got {codes:?}"));
    }
    match body.get("data") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(fields)) => {
            let with_data: Vec<&String> = fields
                .iter()
                .filter(|(name, value)| !value.is_null() && (!signed_in || *name != "program"))
                .map(|(name, _)| name)
                .collect();
            if with_data.is_empty() {
                Ok(())
            } else {
                Err(format!("expected no data, got data in {with_data:?}"))
            }
        }
        Some(other) => Err(format!("unexpected data {other}")),
    }
}

/// Refused where it asked: every error has `code` (at least one), and has a path to a field
/// that has no value (the field, or an object around it, is null).
fn refused_where_asked(body: &Value, code: &str) -> Result<(), String> {
    let codes = error_codes(body);
    if codes.is_empty() || codes.iter().any(|c| c != code) {
        return Err(format!("expected only {code} errors, got {codes:?}"));
    }
    for error in body["errors"].as_array().into_iter().flatten() {
        let path = error["path"]
            .as_array()
            .ok_or_else(|| format!("an error without a path: {error}"))?;
        let mut value = body.get("data").unwrap_or(&Value::Null);
        for step in path {
            if value.is_null() {
                break;
            }
            value = match step {
                Value::String(field) => value.get(field.as_str()).unwrap_or(&Value::Null),
                Value::Number(i) => value
                    .get(i.as_u64().unwrap_or(u64::MAX) as usize)
                    .unwrap_or(&Value::Null),
                other => return Err(format!("a path step {other}")),
            };
        }
        if !value.is_null() {
            return Err(format!("the refused field {path:?} has a value: {value}"));
        }
    }
    Ok(())
}

/// Answered: no errors, and every root field has data.
fn answered(body: &Value) -> Result<(), String> {
    if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
        return Err(format!("expected no errors, got {errors}"));
    }
    match body.get("data") {
        Some(Value::Object(fields)) if !fields.is_empty() => {
            let null: Vec<&String> = fields.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k).collect();
            if null.is_empty() {
                Ok(())
            } else {
                Err(format!("expected data, got null {null:?}"))
            }
        }
        other => Err(format!("expected data, got {other:?}")),
    }
}

#[tokio::test]
async fn every_contract_operation_answers_exactly_the_roles_it_is_for() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let admin = app.admin();

    let mut skipped = BTreeSet::new();
    let mut no_row = Vec::new();
    let mut failures = Vec::new();
    let mut cells = 0;
    let mut covered_ops = Vec::new();

    for file in FILES {
        for (kind, op) in contract_operations(file) {
            let name = format!("{file}/{op}");
            // Built or not: does the document validate against the server's schema?
            let probe = app.run(Some(&admin), file, &op, json!({})).await;
            if unknown_to_schema(&probe) {
                assert_failed(&probe, "BAD_USER_INPUT");
                skipped.insert(name);
                continue;
            }
            if variables(&op, Caller::Admin, true, &w).is_none() {
                no_row.push(name);
                continue;
            }
            covered_ops.push((file, op.clone()));
            // Refused callers first, so that an allowed change cannot hide a refused one.
            let mut callers: Vec<Caller> = CALLERS.to_vec();
            callers.sort_by_key(|caller| allowed(file, *caller));
            for caller in callers {
                let ok = allowed(file, caller);
                let vars = variables(&op, caller, ok, &w).expect("a row");
                let token = token(&app, caller);
                let what = format!("{name} × {caller:?} with {vars}");
                let before = if !ok && kind == "mutation" {
                    Some(state_of(&app).await)
                } else {
                    None
                };
                let body = app.run(token.as_deref(), file, &op, vars).await;
                cells += 1;
                let verdict = if ok {
                    answered(&body)
                } else if caller == Caller::NoToken {
                    refused(&body, "UNAUTHENTICATED", false)
                } else {
                    refused(&body, "FORBIDDEN", true)
                };
                if let Err(why) = verdict {
                    failures.push(format!("{what}: {why}; body: {body}"));
                    continue;
                }
                if let Some(customer) = customer_of(caller) {
                    let leaked = leaks(&w, customer, &body);
                    if !leaked.is_empty() {
                        failures.push(format!("{what}: shows other accounts' {leaked:?}: {body}"));
                    }
                    if let Some(me) = body.pointer("/data/me/externalId")
                        && me != customer
                    {
                        failures.push(format!("{what}: `me` is {me}, not {customer}"));
                    }
                }
                if let Some(before) = before {
                    let after = state_of(&app).await;
                    if after != before {
                        failures.push(format!(
                            "{what}: refused, but changed the state: before {before:#}, after {after:#}"
                        ));
                    }
                }
            }
        }
    }

    let expected_skipped: BTreeSet<String> = NOT_BUILT.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        skipped, expected_skipped,
        "the operations whose documents do not validate (not built) must be exactly NOT_BUILT"
    );
    assert!(
        no_row.is_empty(),
        "built operations with no row in the authorization matrix (add them to `variables`): {no_row:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {cells} cells of the authorization matrix failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // 7 customer, 14 admin and 7 integration operations are built today; every one ran for
    // every caller.
    assert!(covered_ops.len() >= 28, "{covered_ops:?}");
    assert_eq!(cells, covered_ops.len() * CALLERS.len());

    // The allowed calls did what they were asked: the matrix ran real operations.
    assert_eq!(app.available_points(ALICE.external_id).await, "100.00");
    assert_eq!(app.available_points(BOB.external_id).await, "100.00");
    let settings = app.settings().await;
    assert_eq!(settings["currency"], "EUR", "{settings:#}");
    assert_eq!(settings["gbPerClaim"], 1, "{settings:#}");
    assert_eq!(settings["enabled"], true, "{settings:#}");
    assert!(
        !settings["referralLinkTemplate"]
            .as_str()
            .unwrap_or_default()
            .contains("evil"),
        "{settings:#}"
    );
    let alice = app.account_detail(&w.alice_id).await;
    assert_eq!(alice["referralCode"], ALICE_CODE, "{alice:#}");
    assert_eq!(app.count("accounts").await, 8, "6 people and 2 new ones");
    let admin_acts = "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log \
         WHERE action IN ('ASSIGN_REFERRER', 'DISQUALIFY_ACCOUNT', 'REINSTATE_ACCOUNT')";
    assert_eq!(
        app.sql_i64(admin_acts).await,
        3,
        "Bob referred Rita; Rita disqualified, reinstated"
    );
}

/// The data the matrix hides from customers is really there for admins: the leak checks look
/// for the right strings.
#[tokio::test]
async fn the_secrets_the_matrix_looks_for_are_what_admins_see() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let accounts = app.accounts(None, 100, None).await;
    for customer in [ALICE.external_id, BOB.external_id] {
        let mut shown = leaks(&w, customer, &accounts);
        shown.sort();
        let mut expected: Vec<String> = w.secrets_hidden_from[customer]
            .iter()
            .chain(&w.ids_hidden_from[customer])
            .cloned()
            .collect();
        expected.sort();
        assert_eq!(shown, expected, "{accounts:#}");
        assert_eq!(expected.len(), 5 * 3 + 3 + 5, "{expected:?}");
    }
    // And each customer's own answers have content about itself.
    let a = app.dashboard(ALICE.external_id, 20).await;
    assert_eq!(a["me"]["externalId"], ALICE.external_id, "{a:#}");
    assert_eq!(a["me"]["referralCode"], ALICE_CODE, "{a:#}");
    assert_eq!(a["me"]["referredFriends"]["totalCount"], 1, "{a:#}");
    // Two purchases' points and the affiliate sign-up bonus.
    assert_eq!(a["me"]["rewardHistory"]["totalCount"], 3, "{a:#}");
    assert_eq!(a["me"]["points"]["available"], "200.00", "{a:#}");
    assert_eq!(
        a["me"]["referredFriends"]["edges"][0]["node"]["referee"]["displayName"], "Fr*** F.",
        "{a:#}"
    );
    let b = app.dashboard(BOB.external_id, 20).await;
    assert_eq!(b["me"]["externalId"], BOB.external_id, "{b:#}");
    assert_eq!(b["me"]["referralCode"], BOB_CODE, "{b:#}");
    assert_eq!(b["me"]["referral"]["referrer"]["displayName"], "Sa*** S.", "{b:#}");
    assert!(leaks(&w, BOB.external_id, &b).is_empty(), "{b:#}");
    assert!(leaks(&w, ALICE.external_id, &a).is_empty(), "{a:#}");
}

/// Nested paths and lookups by id: a customer gets FORBIDDEN (or nothing), never another
/// account.
#[tokio::test]
async fn customers_reach_no_other_account_through_nested_fields_or_lookups() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let alice = app.customer(ALICE.external_id);
    let bob = app.customer(BOB.external_id);

    let forbidden = [
        (
            "account(id:) of another",
            &bob,
            format!(
                r#"{{ account(id: "{}") {{ externalId email displayName referralCode }} }}"#,
                w.alice_id
            ),
        ),
        (
            "account(id:) of another, the other way",
            &alice,
            format!(r#"{{ account(id: "{}") {{ email }} }}"#, w.bob_id),
        ),
        (
            "account(id:) of itself",
            &alice,
            format!(r#"{{ account(id: "{}") {{ externalId }} }}"#, w.alice_id),
        ),
        (
            "accounts search",
            &bob,
            r#"{ accounts(search: "alice", first: 5) { edges { node { externalId email } } } }"#.to_owned(),
        ),
        (
            "every claim",
            &bob,
            "{ claims(first: 10) { edges { node { id account { externalId email } } } } }".to_owned(),
        ),
        (
            "the audit log",
            &bob,
            "{ auditLog(first: 10) { edges { node { target details } } } }".to_owned(),
        ),
        (
            "the catalog",
            &bob,
            "{ providers { key products { key productRate } } }".to_owned(),
        ),
        (
            "products through the store",
            &bob,
            "{ rewardStore { offers { provider { products { key productRate } } } } }".to_owned(),
        ),
        (
            "Participant.account of itself",
            &alice,
            "{ me { referral { referee { account { externalId email } } } } }".to_owned(),
        ),
        (
            "Participant.account of a friend",
            &bob,
            "{ me { referredFriends(first: 5) { edges { node { referee { account { id \
             referredFriends(first: 5) { totalCount } } } } } } } }"
                .to_owned(),
        ),
        (
            "Participant.account of the referrer's referrer",
            &alice,
            "{ me { referral { referrer { account { referral { referrer { displayName } } } } } } }".to_owned(),
        ),
        (
            "the billing system's view of a claim",
            &alice,
            format!(
                r#"mutation {{ completeClaim(input: {{ claimId: "{}", status: FAILED }}) {{ claim {{ id account {{ email }} }} }} }}"#,
                w.bob_claim
            ),
        ),
    ];
    let before = app.snapshot().await;
    for (what, token, query) in forbidden {
        let body = app.gql(Some(token), &query, json!({})).await;
        refused_where_asked(&body, "FORBIDDEN").unwrap_or_else(|why| panic!("{what}: {why}: {body:#}"));
        for product in [RESIDENTIAL, DATACENTER] {
            assert!(!body.to_string().contains(product), "{what}: {body:#}");
        }
        let customer = if token == &alice {
            ALICE.external_id
        } else {
            BOB.external_id
        };
        let leaked = leaks(&w, customer, &body);
        assert!(leaked.is_empty(), "{what}: shows {leaked:?}: {body:#}");
    }
    assert_eq!(app.snapshot().await, before);

    // There is no `node(id:)`-style lookup in the schema to try.
    let body = app
        .gql(
            Some(&bob),
            &format!(r#"{{ node(id: "{}") {{ id }} }}"#, w.alice_id),
            json!({}),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert!(unknown_to_schema(&body), "{body:#}");

    // Where a customer may follow a path to an account, it arrives at its own.
    let own = [
        "{ me { rewardHistory(first: 50) { edges { node { account { externalId email displayName } } } } } }",
        "{ me { claims(first: 50) { edges { node { account { externalId email displayName } } } } } }",
    ];
    for (customer, token) in [(&ALICE, &alice), (&BOB, &bob)] {
        for query in own {
            let body = app.gql(Some(token), query, json!({})).await;
            let data = data_of(&body, query);
            let mut accounts = Vec::new();
            for connection in [&data["me"]["rewardHistory"], &data["me"]["claims"]] {
                if connection.is_null() {
                    continue;
                }
                accounts.extend(nodes(connection).into_iter().map(|n| n["account"].clone()));
            }
            assert!(!accounts.is_empty(), "{query}: {body:#}");
            for account in accounts {
                assert_eq!(
                    account,
                    json!({ "externalId": customer.external_id, "email": customer.email,
                            "displayName": customer.name }),
                    "{query}: {body:#}"
                );
            }
        }
        let claimed = app
            .gql(
                Some(token),
                &format!(
                    r#"mutation {{ claimReward(input: {{ providerId: "{}" }}) {{ claim {{ account {{ externalId email }} }} }} }}"#,
                    w.provider_id
                ),
                json!({}),
            )
            .await;
        let data = data_of(&claimed, "claimReward");
        assert_eq!(
            data["claimReward"]["claim"]["account"],
            json!({ "externalId": customer.external_id, "email": customer.email }),
            "{claimed:#}"
        );
    }
    // The friends' rows show masked names and nothing else of the friend.
    let friends = app
        .gql(
            Some(&alice),
            "{ me { referredFriends(first: 5) { edges { node { referee { displayName referralCode } } } } } }",
            json!({}),
        )
        .await;
    let data = data_of(&friends, "friends");
    assert_eq!(
        nodes(&data["me"]["referredFriends"])[0]["referee"]["displayName"],
        "Fr*** F.",
        "{friends:#}"
    );
    let leaked = leaks(&w, ALICE.external_id, &friends);
    assert!(leaked.is_empty(), "{leaked:?}: {friends:#}");
}

/// Every root query field of the schema (read by introspection, so that a new one is covered
/// without a change here): customers may use only `me`, `program` and `rewardStore`; no token
/// may use none.
#[tokio::test]
async fn every_root_query_field_outside_the_customers_own_is_forbidden_to_customers() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let bob = app.customer(BOB.external_id);
    let introspection = app
        .gql(
            Some(&app.admin()),
            "{ __schema { queryType { fields { name \
               args { name type { kind name ofType { kind name } } } \
               type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }",
            json!({}),
        )
        .await;
    let data = data_of(&introspection, "introspection");
    let fields = data["__schema"]["queryType"]["fields"]
        .as_array()
        .expect("fields")
        .clone();
    let mut seen = Vec::new();
    for field in fields {
        let name = s(&field, "/name").to_owned();
        let mut args = Vec::new();
        for arg in field["args"].as_array().into_iter().flatten() {
            if arg["type"]["kind"] != "NON_NULL" {
                continue;
            }
            let value = match arg["type"]["ofType"]["name"].as_str() {
                Some("ID") => format!("\"{}\"", w.alice_id),
                Some("String") => "\"alice\"".to_owned(),
                Some("Int") => "5".to_owned(),
                Some("SimulatedEventInput") => {
                    "{ paymentMethodVerified: { eventId: \"probe\", externalId: \"cust-alice\" } }".to_owned()
                }
                other => panic!("{name}: cannot make a required argument of type {other:?}"),
            };
            args.push(format!("{}: {value}", s(arg, "/name")));
        }
        let mut ty = &field["type"];
        while ty["kind"] == "NON_NULL" || ty["kind"] == "LIST" {
            ty = &ty["ofType"];
        }
        let selection = match ty["kind"].as_str() {
            Some("SCALAR" | "ENUM") => "",
            _ => " { __typename }",
        };
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        let query = format!("{{ {name}{args}{selection} }}");

        let body = app.gql(None, &query, json!({})).await;
        refused(&body, "UNAUTHENTICATED", false)
            .unwrap_or_else(|why| panic!("{query} without a token: {why}: {body:#}"));
        let body = app.gql(Some(&bob), &query, json!({})).await;
        let verdict = if CUSTOMER_ROOT_QUERIES.contains(&name.as_str()) {
            answered(&body)
        } else {
            refused(&body, "FORBIDDEN", true)
        };
        verdict.unwrap_or_else(|why| panic!("{query} as a customer: {why}: {body:#}"));
        seen.push(name);
    }
    // Today's fields at least (a new one is checked above like these).
    for name in [
        "account",
        "accounts",
        "auditLog",
        "claims",
        "me",
        "program",
        "programSettings",
        "providers",
        "rewardRules",
        "rewardStore",
    ] {
        assert!(seen.iter().any(|s| s == name), "no root field {name} in {seen:?}");
    }
}

/// Every root mutation field is sent by some built contract operation, so the matrix above
/// covers it.
#[tokio::test]
async fn every_root_mutation_field_is_in_the_matrix() {
    let app = spawn_app().await;
    let body = app
        .gql(
            Some(&app.admin()),
            "{ __schema { mutationType { fields { name } } } }",
            json!({}),
        )
        .await;
    let data = data_of(&body, "introspection");
    let mut documents = Vec::new();
    for file in FILES {
        for (_, op) in contract_operations(file) {
            if !NOT_BUILT.contains(&format!("{file}/{op}").as_str()) {
                documents.push(contract_op(file, &op));
            }
        }
    }
    let fields: Vec<String> = data["__schema"]["mutationType"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| s(f, "/name").to_owned())
        .collect();
    assert!(fields.len() >= 16, "{fields:?}");
    for field in &fields {
        let used = documents
            .iter()
            .any(|doc| doc.contains(&format!(" {field}(")) || doc.contains(&format!(" {field} {{")));
        assert!(
            used,
            "mutation field {field} is in no built contract operation: the authorization matrix does not cover it"
        );
    }
}

/// The operations of operations/sandbox.graphql, which the matrix above cannot cover: its
/// server is not a sandbox, and there `advanceClock` does not exist at all (tests/api/sandbox.rs).
/// Here on a sandbox server, every caller, the same verdicts; a refused call changes nothing,
/// the clock included.
#[tokio::test]
async fn the_sandbox_operations_answer_only_admins() {
    let app = spawn_app_with(|config| config.sandbox = true).await;
    let w = world(&app).await;
    let clock_of = |app: &TestApp| (app.state.clock.offset(), app.state.config.sandbox);
    let recorded = "SELECT CAST(clock_offset_ms AS BIGINT) FROM program_settings";

    let mut failures = Vec::new();
    let mut moves = 0;
    let operations = contract_operations("sandbox");
    assert!(operations.iter().any(|(_, op)| op == "AdvanceClock"), "{operations:?}");
    for (kind, op) in operations {
        let mut callers: Vec<Caller> = CALLERS.to_vec();
        callers.sort_by_key(|caller| allowed("sandbox", *caller));
        for caller in callers {
            let ok = allowed("sandbox", caller);
            let vars =
                variables(&op, caller, ok, &w).unwrap_or_else(|| panic!("sandbox/{op} has no row in `variables`"));
            let what = format!("sandbox/{op} × {caller:?} with {vars}");
            let before = (state_of(&app).await, clock_of(&app), app.sql_i64(recorded).await);
            let body = app.run(token(&app, caller).as_deref(), "sandbox", &op, vars).await;
            let verdict = if ok {
                answered(&body)
            } else if caller == Caller::NoToken {
                refused(&body, "UNAUTHENTICATED", false)
            } else {
                refused(&body, "FORBIDDEN", true)
            };
            if let Err(why) = verdict {
                failures.push(format!("{what}: {why}; body: {body}"));
                continue;
            }
            let after = (state_of(&app).await, clock_of(&app), app.sql_i64(recorded).await);
            if ok && kind == "mutation" {
                moves += 1;
            } else if after != before {
                failures.push(format!(
                    "{what}: changed the state or the clock: {before:?} → {after:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The admin's calls did what they asked: a day per move, and no more.
    assert_eq!(moves, 1);
    assert_eq!(app.state.clock.offset(), chrono::Duration::days(moves));
    assert_eq!(app.sql_i64(recorded).await, moves * 86_400_000);
}
