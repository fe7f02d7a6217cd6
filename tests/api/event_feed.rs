//! The event feed (`events`, integration.graphql `Events`): every domain event a flow commits is
//! listed once, with the ids and figures the API answered for the change; none is listed for a
//! request that was refused or replayed; pages follow `endCursor` in commit order, and a client
//! polling while others write never finds an event behind a cursor it was already handed.
//!
//! The flows are driven through the API as the other tests drive them (points_store.rs,
//! time.rs, refunds.rs, affiliates.rs, admin_tools.rs, fingerprints.rs); the feed is read as the
//! billing system reads it, with the service token, and nothing here calls the sequencer: the
//! feed must do that itself. On PostgreSQL `claim.requested`, `reward.granted` and
//! `referral.qualified` of a plain claim or first purchase are written by SQL functions
//! (migration/src/sql), elsewhere in Rust (src/service/outbox/payloads.rs): the same tests run on
//! both, so the exact key sets and text formats asserted here are what keeps the two alike.
//!
//! Cursors are compared by the feed position they hold (async-graphql's `OpaqueCursor<i64>`:
//! URL-safe base64 of the JSON number).

use crate::helpers::*;
use crate::time::{advance, settle};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Every event type's dotted name (`DomainEventType` spells it `REFERRAL_ATTRIBUTED`).
const NAMES: [&str; 15] = [
    "referral.attributed",
    "referral.qualified",
    "referral.rejected",
    "reward.granted",
    "reward.available",
    "reward.expired",
    "reward.reversed",
    "claim.requested",
    "claim.completed",
    "credit.applied",
    "affiliate.applied",
    "affiliate.decided",
    "withdrawal.requested",
    "withdrawal.decided",
    "account.disqualified",
];

/// The types whose `data` has exactly the documented keys: on PostgreSQL a SQL function writes
/// them for the usual claim and purchase, and SQLite's Rust must write the same.
const EXACT_KEYS: [&str; 2] = ["reward.granted", "claim.requested"];

/// The keys of each type's `data`, version 1 (src/service/outbox/payloads.rs).
fn documented_keys(name: &str) -> &'static [&'static str] {
    match name {
        "referral.attributed" => &[
            "referralId",
            "status",
            "referrerAccountId",
            "referrerExternalId",
            "refereeAccountId",
            "refereeExternalId",
            "source",
            "attributedAt",
        ],
        "referral.qualified" => &[
            "referralId",
            "status",
            "referrerAccountId",
            "referrerExternalId",
            "refereeAccountId",
            "refereeExternalId",
            "qualifiedAt",
        ],
        "referral.rejected" => &[
            "referralId",
            "status",
            "referrerAccountId",
            "referrerExternalId",
            "refereeAccountId",
            "refereeExternalId",
            "reason",
        ],
        "reward.granted" => &[
            "entryId",
            "accountId",
            "externalId",
            "unit",
            "amount",
            "status",
            "availableAt",
            "expiresAt",
            "referralId",
            "ruleId",
        ],
        "reward.available" => &["entryId", "accountId", "externalId", "unit", "amount", "expiresAt"],
        "reward.expired" => &[
            "entryId",
            "accountId",
            "externalId",
            "unit",
            "amount",
            "originalAmount",
            "expiredAt",
        ],
        "reward.reversed" => &[
            "entryId",
            "accountId",
            "externalId",
            "unit",
            "amount",
            "originalAmount",
            "cause",
            "entries",
        ],
        "claim.requested" => &[
            "claimId",
            "accountId",
            "externalId",
            "providerId",
            "gb",
            "points",
            "status",
        ],
        "claim.completed" => &[
            "claimId",
            "accountId",
            "externalId",
            "providerId",
            "gb",
            "points",
            "status",
            "decidedAt",
        ],
        "credit.applied" => &["accountId", "externalId", "invoiceId", "requested", "applied"],
        "affiliate.applied" => &["accountId", "externalId", "status", "appliedAt"],
        "affiliate.decided" => &["accountId", "externalId", "status", "note"],
        "withdrawal.requested" => &[
            "withdrawalId",
            "accountId",
            "externalId",
            "amount",
            "status",
            "requestedAt",
        ],
        "withdrawal.decided" => &[
            "withdrawalId",
            "accountId",
            "externalId",
            "amount",
            "status",
            "requestedAt",
            "payoutReference",
            "reason",
            "decidedAt",
        ],
        "account.disqualified" => &["accountId", "externalId", "reason", "disqualifiedAt"],
        other => panic!("not an event type: {other:?}"),
    }
}

/// The keys of `data` that hold an amount as text ("150.00").
const AMOUNT_KEYS: [&str; 5] = ["amount", "originalAmount", "points", "requested", "applied"];

/// The prefix of the API's ids that a key of `data` holds, if it holds one.
fn id_prefix(key: &str) -> Option<&'static str> {
    match key {
        "accountId" | "referrerAccountId" | "refereeAccountId" => Some("acc_"),
        "referralId" => Some("ref_"),
        "entryId" => Some("led_"),
        "claimId" => Some("clm_"),
        "providerId" => Some("prv_"),
        "ruleId" => Some("rul_"),
        "withdrawalId" => Some("wdr_"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the feed

/// One edge of the feed: its cursor, the position the cursor holds, and the node.
#[derive(Clone, Debug)]
struct Seen {
    cursor: String,
    position: i64,
    node: Value,
}

impl Seen {
    fn id(&self) -> &str {
        s(&self.node, "/id")
    }

    fn name(&self) -> &str {
        s(&self.node, "/name")
    }

    fn data(&self) -> &Value {
        &self.node["data"]
    }
}

/// The feed position a cursor holds.
fn position(cursor: &str) -> i64 {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .unwrap_or_else(|e| panic!("cursor {cursor:?} is not URL-safe base64: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("cursor {cursor:?} holds no position: {e}"))
}

/// The edges of a page of the feed.
fn edges_of(page: &Value) -> Vec<Seen> {
    page["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges in {page:#}"))
        .iter()
        .map(|edge| {
            let cursor = s(edge, "/cursor").to_owned();
            Seen {
                position: position(&cursor),
                cursor,
                node: edge["node"].clone(),
            }
        })
        .collect()
}

/// One page of the feed as the billing system reads it; `events`.
async fn feed_page(app: &TestApp, after: Option<&str>, types: Option<&[&str]>, first: Option<i64>) -> Value {
    let vars = json!({ "after": after, "types": types, "first": first });
    let data = app.run_ok(Some(&app.service()), "integration", "Events", vars).await;
    data["events"].clone()
}

/// Every event after `after` (from the start with none), in pages of `first` that follow
/// `endCursor`. A page says it has a next one exactly when it is full and more follow.
async fn read_from(app: &TestApp, after: Option<&str>, types: Option<&[&str]>, first: i64) -> Vec<Seen> {
    let mut cursor = after.map(str::to_owned);
    let mut out = Vec::new();
    loop {
        let page = feed_page(app, cursor.as_deref(), types, Some(first)).await;
        let edges = edges_of(&page);
        let more = page["pageInfo"]["hasNextPage"]
            .as_bool()
            .unwrap_or_else(|| panic!("no hasNextPage in {page:#}"));
        assert!(edges.len() as i64 <= first, "a page of at most {first}: {page:#}");
        if let Some(last) = edges.last() {
            assert_eq!(
                page["pageInfo"]["endCursor"],
                last.cursor.as_str(),
                "endCursor is the last edge's cursor: {page:#}"
            );
            cursor = Some(last.cursor.clone());
        }
        let full = edges.len() as i64 == first;
        out.extend(edges);
        if !more {
            break;
        }
        assert!(full, "a page with a next page is full: {page:#}");
    }
    out
}

/// The whole feed, from the start.
async fn all_events(app: &TestApp) -> Vec<Seen> {
    read_from(app, None, None, 1000).await
}

/// The ids of events, in order.
fn ids<'a>(events: impl IntoIterator<Item = &'a Seen>) -> Vec<String> {
    events.into_iter().map(|e| e.id().to_owned()).collect()
}

/// The events, one line each, for messages.
fn summary(events: &[Seen]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} @{} {} {}", e.id(), e.position, e.name(), e.data()))
        .collect()
}

/// How many events of each type.
fn counts(events: &[Seen]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for event in events {
        *out.entry(event.name().to_owned()).or_insert(0) += 1;
    }
    out
}

fn count_map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(name, n)| ((*name).to_owned(), *n)).collect()
}

/// The `data` of the one event of this type whose `key` is `value`.
fn the<'a>(events: &'a [Seen], name: &str, key: &str, value: &str) -> &'a Value {
    let found: Vec<&Seen> = events
        .iter()
        .filter(|e| e.name() == name && e.data()[key] == value)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {name} with {key} = {value} in the feed: {:#?}",
        summary(events)
    );
    found[0].data()
}

/// `data` has these values (and may have other keys).
fn assert_fields(data: &Value, expected: Value, what: &str) {
    for (key, value) in expected.as_object().expect("expected fields are an object") {
        assert_eq!(&data[key], value, "{what}: {key} of {data:#}");
    }
}

/// A payload time: RFC 3339 in UTC with microseconds, "2026-12-09T10:00:00.123456Z".
fn assert_time(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a time is a string, got {value}"));
    let bytes = text.as_bytes();
    let shaped = text.len() == 27
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && bytes[20..26].iter().all(u8::is_ascii_digit)
        && text.ends_with('Z');
    assert!(shaped, "{what}: {text:?} is not RFC 3339 UTC with 6 fractional digits");
    instant(value);
}

/// A payload amount: a decimal string with 2 to 6 decimals, "150.00", "0.125".
fn assert_amount_text(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: an amount is a string, got {value}"));
    let digits = text.strip_prefix('-').unwrap_or(text);
    let shaped = digits.split_once('.').is_some_and(|(whole, fraction)| {
        !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (2..=6).contains(&fraction.len())
            && fraction.bytes().all(|b| b.is_ascii_digit())
    });
    assert!(shaped, "{what}: {text:?} is not an amount as the API writes it");
}

/// A payload time is the API's instant (to the microsecond the payload keeps).
fn same_instant(payload: &Value, api: &Value, what: &str) {
    assert_time(payload, what);
    assert_eq!(
        instant(payload).timestamp_micros(),
        instant(api).timestamp_micros(),
        "{what}: the payload's {payload} is not the API's {api}"
    );
}

/// An event as the feed lists it: a known type, its enum value, version 1, a `de_` id, and
/// `data` with the documented keys (exactly those for EXACT_KEYS), ids with their prefixes,
/// amounts and times in the API's text.
fn assert_well_formed(event: &Seen) {
    let node = &event.node;
    let name = event.name();
    assert!(NAMES.contains(&name), "an unknown event type: {node:#}");
    let enum_value = name.replace('.', "_").to_ascii_uppercase();
    assert_eq!(node["type"], enum_value.as_str(), "{node:#}");
    assert_eq!(node["version"], 1, "{node:#}");
    let id = event.id();
    assert!(
        id.strip_prefix("de_")
            .is_some_and(|n| n.parse::<i64>().is_ok_and(|n| n > 0)),
        "an event id is de_<n>: {node:#}"
    );
    instant(&node["occurredAt"]);
    let data = node["data"]
        .as_object()
        .unwrap_or_else(|| panic!("data is an object: {node:#}"));
    let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    let documented: BTreeSet<&str> = documented_keys(name).iter().copied().collect();
    if EXACT_KEYS.contains(&name) {
        assert_eq!(keys, documented, "the keys of {name}: {node:#}");
    } else {
        let missing: Vec<&&str> = documented.difference(&keys).collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}: {node:#}");
    }
    for (key, value) in data {
        let what = format!("{name}.{key} of {id}");
        if value.is_null() {
            continue;
        }
        if key.ends_with("At") {
            assert_time(value, &what);
        }
        if AMOUNT_KEYS.contains(&key.as_str()) {
            assert_amount_text(value, &what);
        }
        if let Some(prefix) = id_prefix(key) {
            let text = value.as_str().unwrap_or_else(|| panic!("{what}: an id is a string"));
            assert!(
                text.strip_prefix(prefix).is_some_and(|n| n.parse::<i64>().is_ok()),
                "{what}: {text:?} is not a {prefix}<n> id"
            );
        }
    }
    if let Some(entries) = data.get("entries") {
        for entry in entries
            .as_array()
            .unwrap_or_else(|| panic!("entries is a list: {node:#}"))
        {
            assert!(
                entry.as_str().is_some_and(|e| e.starts_with("led_")),
                "entries are ledger entry ids: {node:#}"
            );
        }
    }
}

/// The feed's order: cursors strictly increasing, each event once, each well formed.
fn assert_feed(events: &[Seen]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "cursors must increase: {:#?}",
            summary(pair)
        );
    }
    let unique: BTreeSet<&str> = events.iter().map(Seen::id).collect();
    assert_eq!(
        unique.len(),
        events.len(),
        "an event listed twice: {:#?}",
        summary(events)
    );
    for event in events {
        assert_well_formed(event);
    }
}

/// The response refused the request (with whatever code) and carries no data.
fn assert_refused(body: &Value, what: &str) {
    let codes = error_codes(body);
    assert!(!codes.is_empty(), "{what}: expected a refusal, got {body:#}");
    assert_failed(body, &codes[0]);
}

/// A reader of the feed that keeps its cursor, as the billing system does.
struct Reader {
    cursor: Option<String>,
    read: usize,
}

impl Reader {
    fn new() -> Self {
        Reader { cursor: None, read: 0 }
    }

    /// The events since the last read. The table holds no event the feed has not shown.
    async fn since_last(&mut self, app: &TestApp) -> Vec<Seen> {
        let events = read_from(app, self.cursor.as_deref(), None, 1000).await;
        if let Some(last) = events.last() {
            self.cursor = Some(last.cursor.clone());
        }
        self.read += events.len();
        for event in &events {
            assert_well_formed(event);
        }
        assert_eq!(
            app.count("outbox_events").await,
            self.read as i64,
            "every event the table holds has been read, once; the last read: {:#?}",
            summary(&events)
        );
        events
    }

    /// The events since the last read are of exactly these types, in any order.
    async fn expect(&mut self, app: &TestApp, names: &[&str], what: &str) -> Vec<Seen> {
        let events = self.since_last(app).await;
        let mut got: Vec<&str> = events.iter().map(Seen::name).collect();
        got.sort_unstable();
        let mut want = names.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{what}: {:#?}", summary(&events));
        events
    }
}

// ---------------------------------------------------------------------------------------------
// Every type, with its payload

#[tokio::test]
async fn every_event_type_is_listed_with_the_ids_and_figures_the_api_answered() {
    let app = spawn_app().await;
    let admin = app.admin();
    let service = app.service();
    let provider_id = app.setup_catalog().await;
    let seeded_rule = s(&app.seeded_rule().await, "/id").to_owned();
    // A newcomer's sign-up credit: held 30 days, then good for 180.
    let mut held = fixed_credit_rule("Held sign-up credit", "SIGNUP", "REFEREE", "20");
    held["holdDays"] = json!(30);
    held["expiresAfterDays"] = json!(180);
    let held_rule = app.create_rule_id(held).await;
    app.update_settings(json!({ "affiliateSignupBonus": "25", "minimumWithdrawal": "10" }))
        .await;
    assert!(all_events(&app).await.is_empty(), "no flow has run yet");

    // referral.attributed, and reward.granted for the held sign-up credit (Rust on both).
    let a = app.register("ef-a", Some("Alice Adams"), None).await;
    let a_id = s(&a, "/account/id").to_owned();
    let a_code = s(&a, "/account/referralCode").to_owned();
    let b = app.register("ef-b", Some("Bob Brown"), Some(&a_code)).await;
    assert_eq!(b["referral"]["status"], "PENDING", "{b:#}");
    let b_id = s(&b, "/account/id").to_owned();
    let b_referral = s(&b, "/referral/id").to_owned();
    let history = app.history("ef-b").await;
    assert_eq!(history.len(), 1, "{history:#?}");
    let held_entry = history[0].clone();
    assert_eq!(
        (
            &held_entry["kind"],
            &held_entry["unit"],
            &held_entry["amount"],
            &held_entry["status"]
        ),
        (&json!("REWARD"), &json!("CREDIT"), &json!("20.00"), &json!("PENDING")),
        "{held_entry:#}"
    );
    let held_id = s(&held_entry, "/id").to_owned();

    // referral.rejected: an unknown code.
    let x = app.register("ef-x", Some("Xavier Xu"), Some("NOSUCH0CODE")).await;
    assert_eq!(x["referral"]["status"], "REJECTED", "{x:#}");
    assert_eq!(x["referral"]["rejectionReason"], "UNKNOWN_CODE", "{x:#}");
    let x_id = s(&x, "/account/id").to_owned();
    let x_referral = s(&x, "/referral/id").to_owned();

    // reward.granted and referral.qualified: B's first residential purchase pays A 150 points
    // (on PostgreSQL, written by referral_record_purchase).
    let mut buy = TestApp::purchase_input("ef-buy-b", "ef-b", RESIDENTIAL, "10");
    buy["input"]["amount"] = json!("100");
    let paid = app.run_ok(Some(&service), "integration", "RecordPurchase", buy).await["recordPurchase"].clone();
    let rewards = paid["rewards"].as_array().expect("rewards");
    assert_eq!(rewards.len(), 1, "{paid:#}");
    let points_reward = rewards[0].clone();
    assert_eq!(points_reward["account"]["id"], a_id.as_str(), "{paid:#}");
    assert_eq!(points_reward["amount"], "150.00", "{paid:#}");
    let points_id = s(&points_reward, "/id").to_owned();
    let friends = app.friends("ef-a").await;
    assert_eq!(friends.len(), 1, "{friends:#?}");
    assert_eq!(friends[0]["status"], "QUALIFIED", "{friends:#?}");
    let qualified_at = friends[0]["qualifiedAt"].clone();

    // claim.requested (on PostgreSQL, written by referral_claim_reward) and claim.completed.
    let claimed = app.claim("ef-a", &provider_id, Some("ef-claim-1")).await;
    let claim = claimed["claim"].clone();
    assert_eq!(claim["points"], "100.00", "{claimed:#}");
    let claim_id = s(&claim, "/id").to_owned();
    let done = app
        .run_ok(
            Some(&service),
            "integration",
            "CompleteClaim",
            json!({ "input": { "claimId": claim_id, "status": "COMPLETED" } }),
        )
        .await;
    assert_eq!(done["completeClaim"]["claim"]["status"], "COMPLETED", "{done:#}");

    // reward.reversed: 20 of the 100 paid refunded takes back 20 % of A's 150 points.
    let refunded = refund(&app, "ef-refund-b", "ef-b", "ef-buy-b", Some("20")).await;
    let reversal = refunded["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .find(|e| e["kind"] == "REVERSAL" && e["account"]["externalId"] == "ef-a")
        .cloned()
        .unwrap_or_else(|| panic!("no reversal for A: {refunded:#}"));
    assert_eq!(reversal["amount"], "-30.00", "{refunded:#}");

    // affiliate.applied, affiliate.decided (and the sign-up bonus: reward.granted),
    // withdrawal.requested, withdrawal.decided.
    let c = app.register("ef-c", Some("Carol Clark"), None).await;
    let c_id = s(&c, "/account/id").to_owned();
    let customer_c = app.customer("ef-c");
    let applied = app
        .run_ok(Some(&customer_c), "customer", "ApplyForAffiliate", json!({}))
        .await["applyForAffiliate"]
        .clone();
    assert_eq!(applied["status"], "APPLIED", "{applied:#}");
    let decided = app
        .run_ok(
            Some(&admin),
            "admin",
            "DecideAffiliate",
            json!({ "input": { "accountId": c_id, "decision": "APPROVE", "reason": "Welcome aboard" } }),
        )
        .await;
    assert_eq!(
        decided["decideAffiliate"]["affiliate"]["status"], "APPROVED",
        "{decided:#}"
    );
    let history = app.history("ef-c").await;
    assert_eq!(history.len(), 1, "{history:#?}");
    let bonus = history[0].clone();
    assert_eq!(
        (&bonus["kind"], &bonus["unit"], &bonus["amount"], &bonus["status"]),
        (&json!("REWARD"), &json!("CASH"), &json!("25.00"), &json!("POSTED")),
        "{bonus:#}"
    );
    let requested = app
        .run_ok(
            Some(&customer_c),
            "customer",
            "RequestWithdrawal",
            json!({ "input": { "amount": "10", "idempotencyKey": "ef-wdr-1" } }),
        )
        .await["requestWithdrawal"]["withdrawal"]
        .clone();
    assert_eq!(requested["status"], "REQUESTED", "{requested:#}");
    assert_eq!(requested["amount"], "10.00", "{requested:#}");
    let withdrawal_id = s(&requested, "/id").to_owned();
    let paid_out = app
        .run_ok(
            Some(&admin),
            "admin",
            "DecideWithdrawal",
            json!({ "input": { "withdrawalId": withdrawal_id, "decision": "MARK_PAID",
                               "payoutReference": "PAYOUT-42" } }),
        )
        .await["decideWithdrawal"]
        .clone();
    assert_eq!(paid_out["status"], "PAID", "{paid_out:#}");

    // account.disqualified.
    let disqualified = app
        .run_ok(
            Some(&admin),
            "admin",
            "DisqualifyAccount",
            json!({ "input": { "accountId": x_id, "reason": "One person, many accounts" } }),
        )
        .await["disqualifyAccount"]
        .clone();
    assert!(
        disqualified["account"]["disqualifiedAt"].is_string(),
        "{disqualified:#}"
    );

    // reward.available: day 30, the hold ended, and the balance is settled.
    advance(&app, 30);
    let settled = settle(&app).await;
    assert_eq!(settled.matured, 1, "{settled:?}");
    // credit.applied: 5.00 of B's 20.00.
    let applied_credit = app.apply_credit("ef-inv-1", "ef-b", "5.00").await;
    assert_eq!(applied_credit["applied"], "5.00", "{applied_credit:#}");
    // reward.expired: day 211, the 15.00 left of the lot expired on day 210.
    advance(&app, 181);
    let settled = settle(&app).await;
    assert_eq!(settled.expired, 1, "{settled:?}");

    let events = all_events(&app).await;
    assert_feed(&events);
    assert_eq!(
        app.count("outbox_events").await,
        events.len() as i64,
        "the feed lists every event the table holds"
    );
    let expected = count_map(&[
        ("referral.attributed", 1),
        ("referral.qualified", 1),
        ("referral.rejected", 1),
        ("reward.granted", 3),
        ("reward.available", 1),
        ("reward.expired", 1),
        ("reward.reversed", 1),
        ("claim.requested", 1),
        ("claim.completed", 1),
        ("credit.applied", 1),
        ("affiliate.applied", 1),
        ("affiliate.decided", 1),
        ("withdrawal.requested", 1),
        ("withdrawal.decided", 1),
        ("account.disqualified", 1),
    ]);
    assert_eq!(expected.len(), NAMES.len());
    assert_eq!(counts(&events), expected, "{:#?}", summary(&events));
    // One request after another: the feed's order is the order they happened in.
    for pair in events.windows(2) {
        assert!(
            instant(&pair[0].node["occurredAt"]) <= instant(&pair[1].node["occurredAt"]),
            "listed out of the order they committed in: {:#?}",
            summary(pair)
        );
    }

    let attributed = the(&events, "referral.attributed", "referralId", &b_referral);
    assert_fields(
        attributed,
        json!({
            "status": "PENDING",
            "referrerAccountId": a_id,
            "referrerExternalId": "ef-a",
            "refereeAccountId": b_id,
            "refereeExternalId": "ef-b",
            "source": "CODE",
        }),
        "referral.attributed",
    );

    let rejected = the(&events, "referral.rejected", "referralId", &x_referral);
    assert_fields(
        rejected,
        json!({
            "status": "REJECTED",
            "reason": "UNKNOWN_CODE",
            "referrerAccountId": null,
            "referrerExternalId": null,
            "refereeAccountId": x_id,
            "refereeExternalId": "ef-x",
        }),
        "referral.rejected",
    );

    let qualified = the(&events, "referral.qualified", "referralId", &b_referral);
    assert_fields(
        qualified,
        json!({
            "status": "QUALIFIED",
            "referrerAccountId": a_id,
            "referrerExternalId": "ef-a",
            "refereeAccountId": b_id,
            "refereeExternalId": "ef-b",
        }),
        "referral.qualified",
    );
    same_instant(
        &qualified["qualifiedAt"],
        &qualified_at,
        "referral.qualified.qualifiedAt",
    );

    // reward.granted of the purchase (a SQL function's on PostgreSQL), of the sign-up and of the
    // affiliate bonus (Rust's): the same keys, the same formats.
    let points = the(&events, "reward.granted", "entryId", &points_id);
    assert_fields(
        points,
        json!({
            "accountId": a_id,
            "externalId": "ef-a",
            "unit": points_reward["unit"],
            "amount": points_reward["amount"],
            "status": points_reward["status"],
            "availableAt": null,
            "expiresAt": null,
            "referralId": b_referral,
            "ruleId": seeded_rule,
        }),
        "reward.granted of the purchase",
    );
    assert_eq!(points["unit"], "POINTS");
    assert_eq!(points["status"], "POSTED");
    let signup = the(&events, "reward.granted", "entryId", &held_id);
    assert_fields(
        signup,
        json!({
            "accountId": b_id,
            "externalId": "ef-b",
            "unit": "CREDIT",
            "amount": "20.00",
            "status": "PENDING",
            "referralId": b_referral,
            "ruleId": held_rule,
        }),
        "reward.granted of the sign-up",
    );
    same_instant(
        &signup["availableAt"],
        &held_entry["availableAt"],
        "reward.granted.availableAt",
    );
    same_instant(
        &signup["expiresAt"],
        &held_entry["expiresAt"],
        "reward.granted.expiresAt",
    );
    let bonus_granted = the(&events, "reward.granted", "entryId", s(&bonus, "/id"));
    assert_fields(
        bonus_granted,
        json!({
            "accountId": c_id,
            "externalId": "ef-c",
            "unit": "CASH",
            "amount": "25.00",
            "status": "POSTED",
            "availableAt": null,
            "expiresAt": null,
            "referralId": null,
            "ruleId": null,
        }),
        "reward.granted of the affiliate bonus",
    );

    let available = the(&events, "reward.available", "entryId", &held_id);
    assert_fields(
        available,
        json!({ "accountId": b_id, "externalId": "ef-b", "unit": "CREDIT", "amount": "20.00" }),
        "reward.available",
    );
    same_instant(
        &available["expiresAt"],
        &held_entry["expiresAt"],
        "reward.available.expiresAt",
    );

    let expired = the(&events, "reward.expired", "entryId", &held_id);
    assert_fields(
        expired,
        json!({
            "accountId": b_id,
            "externalId": "ef-b",
            "unit": "CREDIT",
            "amount": "15.00",
            "originalAmount": "20.00",
        }),
        "reward.expired",
    );
    same_instant(
        &expired["expiredAt"],
        &held_entry["expiresAt"],
        "reward.expired.expiredAt",
    );

    let reversed = the(&events, "reward.reversed", "entryId", &points_id);
    assert_fields(
        reversed,
        json!({
            "accountId": a_id,
            "externalId": "ef-a",
            "unit": "POINTS",
            "amount": "30.00",
            "originalAmount": "150.00",
            "cause": "REFUND",
            "entries": [reversal["id"]],
        }),
        "reward.reversed",
    );

    let requested_claim = the(&events, "claim.requested", "claimId", &claim_id);
    assert_fields(
        requested_claim,
        json!({
            "accountId": a_id,
            "externalId": "ef-a",
            "providerId": provider_id,
            "gb": claim["gb"],
            "points": claim["points"],
            "status": "PENDING",
        }),
        "claim.requested",
    );
    assert_eq!(requested_claim["gb"], 1, "{requested_claim:#}");
    assert_eq!(requested_claim["points"], "100.00", "{requested_claim:#}");
    let completed = the(&events, "claim.completed", "claimId", &claim_id);
    assert_fields(
        completed,
        json!({
            "accountId": a_id,
            "externalId": "ef-a",
            "providerId": provider_id,
            "gb": 1,
            "points": "100.00",
            "status": "COMPLETED",
        }),
        "claim.completed",
    );

    let credit = the(&events, "credit.applied", "invoiceId", "ef-inv-1");
    assert_fields(
        credit,
        json!({
            "accountId": b_id,
            "externalId": "ef-b",
            "requested": "5.00",
            "applied": applied_credit["applied"],
        }),
        "credit.applied",
    );

    let affiliate_applied = the(&events, "affiliate.applied", "accountId", &c_id);
    assert_fields(
        affiliate_applied,
        json!({ "externalId": "ef-c", "status": "APPLIED" }),
        "affiliate.applied",
    );
    same_instant(
        &affiliate_applied["appliedAt"],
        &applied["appliedAt"],
        "affiliate.applied.appliedAt",
    );
    let affiliate_decided = the(&events, "affiliate.decided", "accountId", &c_id);
    assert_fields(
        affiliate_decided,
        json!({ "externalId": "ef-c", "status": "APPROVED", "note": "Welcome aboard" }),
        "affiliate.decided",
    );

    let withdrawal_requested = the(&events, "withdrawal.requested", "withdrawalId", &withdrawal_id);
    assert_fields(
        withdrawal_requested,
        json!({
            "accountId": c_id,
            "externalId": "ef-c",
            "amount": requested["amount"],
            "status": "REQUESTED",
        }),
        "withdrawal.requested",
    );
    same_instant(
        &withdrawal_requested["requestedAt"],
        &requested["requestedAt"],
        "withdrawal.requested.requestedAt",
    );
    let withdrawal_decided = the(&events, "withdrawal.decided", "withdrawalId", &withdrawal_id);
    assert_fields(
        withdrawal_decided,
        json!({
            "accountId": c_id,
            "externalId": "ef-c",
            "amount": "10.00",
            "status": "PAID",
            "payoutReference": "PAYOUT-42",
            "reason": null,
        }),
        "withdrawal.decided",
    );
    same_instant(
        &withdrawal_decided["decidedAt"],
        &paid_out["decidedAt"],
        "withdrawal.decided.decidedAt",
    );
    same_instant(
        &withdrawal_decided["requestedAt"],
        &requested["requestedAt"],
        "withdrawal.decided.requestedAt",
    );

    let account_disqualified = the(&events, "account.disqualified", "accountId", &x_id);
    assert_fields(
        account_disqualified,
        json!({ "externalId": "ef-x", "reason": "One person, many accounts" }),
        "account.disqualified",
    );
    same_instant(
        &account_disqualified["disqualifiedAt"],
        &disqualified["account"]["disqualifiedAt"],
        "account.disqualified.disqualifiedAt",
    );
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// An event if and only if its change committed

#[tokio::test]
async fn a_refused_or_replayed_request_writes_no_event_and_a_committed_one_writes_only_its_own() {
    let app = spawn_app().await;
    let admin = app.admin();
    let service = app.service();
    let provider_id = app.setup_catalog().await;
    app.update_settings(json!({ "affiliateSignupBonus": "25", "minimumWithdrawal": "10" }))
        .await;
    let mut reader = Reader::new();
    let a = app.register("nx-a", Some("Alice Adams"), None).await;
    let a_id = s(&a, "/account/id").to_owned();
    let a_code = s(&a, "/account/referralCode").to_owned();
    reader.expect(&app, &[], "a registration without a code").await;

    // Registrations: attributed once, however often the same registration comes.
    let b = app.register("nx-b", Some("Bob Brown"), Some(&a_code)).await;
    let b_referral = s(&b, "/referral/id").to_owned();
    let events = reader
        .expect(&app, &["referral.attributed"], "a registration with a code")
        .await;
    assert_eq!(events[0].data()["referralId"], b_referral.as_str());
    let again = app.register("nx-b", Some("Bob Brown"), Some(&a_code)).await;
    assert_eq!(again["referral"]["id"], b_referral.as_str(), "{again:#}");
    app.register("nx-b", None, None).await;
    reader.expect(&app, &[], "the same registration again").await;
    let x = app.register("nx-x", None, Some("NOSUCH0CODE")).await;
    let x_id = s(&x, "/account/id").to_owned();
    reader
        .expect(&app, &["referral.rejected"], "a registration with an unknown code")
        .await;
    let again = app.register("nx-x", None, Some("NOSUCH0CODE")).await;
    assert_eq!(again["referral"]["id"], x["referral"]["id"], "{again:#}");
    reader.expect(&app, &[], "the same rejected registration again").await;

    // Purchases refused as BAD_USER_INPUT write nothing.
    let mut buy = TestApp::purchase_input("nx-buy-b", "nx-b", RESIDENTIAL, "10");
    buy["input"]["amount"] = json!("100");
    for gb in ["0", "-1"] {
        let mut bad = buy.clone();
        bad["input"]["eventId"] = json!(format!("nx-bad-{gb}"));
        bad["input"]["quantityGb"] = json!(gb);
        let body = app.run(Some(&service), "integration", "RecordPurchase", bad).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    let mut negative = buy.clone();
    negative["input"]["eventId"] = json!("nx-bad-amount");
    negative["input"]["amount"] = json!("-10");
    let body = app.run(Some(&service), "integration", "RecordPurchase", negative).await;
    assert_failed(&body, "BAD_USER_INPUT");
    reader.expect(&app, &[], "purchases refused as BAD_USER_INPUT").await;

    // The first purchase: its reward and the qualification; replayed, or its eventId reused
    // for another purchase: nothing.
    let paid = app
        .run_ok(Some(&service), "integration", "RecordPurchase", buy.clone())
        .await["recordPurchase"]
        .clone();
    let events = reader
        .expect(&app, &["referral.qualified", "reward.granted"], "a first purchase")
        .await;
    assert_eq!(
        the(&events, "reward.granted", "entryId", s(&paid, "/rewards/0/id"))["amount"],
        "150.00"
    );
    let replayed = app
        .run_ok(Some(&service), "integration", "RecordPurchase", buy.clone())
        .await;
    assert_eq!(replayed["recordPurchase"]["event"]["duplicate"], true, "{replayed:#}");
    let mut conflicting = buy.clone();
    conflicting["input"]["quantityGb"] = json!("11");
    let body = app
        .run(Some(&service), "integration", "RecordPurchase", conflicting)
        .await;
    assert_failed(&body, "IDEMPOTENCY_CONFLICT");
    reader
        .expect(&app, &[], "a replayed purchase and a conflicting one")
        .await;

    // Claims: one event per claim; a replay under its key and a claim the balance does not
    // cover write none.
    let first = app.claim("nx-a", &provider_id, Some("nx-claim-1")).await;
    let claim_id = s(&first, "/claim/id").to_owned();
    let events = reader.expect(&app, &["claim.requested"], "a claim").await;
    assert_eq!(events[0].data()["claimId"], claim_id.as_str());
    let again = app.claim("nx-a", &provider_id, Some("nx-claim-1")).await;
    assert_eq!(again["claim"]["id"], claim_id.as_str(), "{again:#}");
    let short = app.claim_raw("nx-a", &provider_id, Some("nx-claim-2")).await;
    assert_failed(&short, "INSUFFICIENT_BALANCE");
    reader
        .expect(&app, &[], "a replayed claim and one for 100 of 50 points")
        .await;
    let complete = |status: &str| json!({ "input": { "claimId": claim_id, "status": status } });
    app.run_ok(Some(&service), "integration", "CompleteClaim", complete("COMPLETED"))
        .await;
    reader.expect(&app, &["claim.completed"], "a claim completed").await;
    app.run_ok(Some(&service), "integration", "CompleteClaim", complete("COMPLETED"))
        .await;
    let flip = app
        .run(Some(&service), "integration", "CompleteClaim", complete("FAILED"))
        .await;
    assert_failed(&flip, "BAD_USER_INPUT");
    reader.expect(&app, &[], "a completion again and a refused flip").await;

    // Refunds: a part refunded takes back once; its replay and a refund beyond what is left
    // write nothing.
    refund(&app, "nx-refund-1", "nx-b", "nx-buy-b", Some("20")).await;
    reader.expect(&app, &["reward.reversed"], "a partial refund").await;
    let again = refund(&app, "nx-refund-1", "nx-b", "nx-buy-b", Some("20")).await;
    assert_eq!(again["event"]["duplicate"], true, "{again:#}");
    let beyond = refund_raw(&app, "nx-refund-2", "nx-b", "nx-buy-b", Some("81")).await;
    assert_failed(&beyond, "BAD_USER_INPUT");
    reader
        .expect(&app, &[], "a replayed refund and one beyond what is left")
        .await;

    // Credit applied of nothing (A has no credit) is no credit.applied.
    let nothing = app.apply_credit("nx-inv-1", "nx-a", "5.00").await;
    assert_eq!(nothing["applied"], "0.00", "{nothing:#}");
    reader.expect(&app, &[], "credit applied of nothing").await;

    // Affiliates: applied once, approved once (with its bonus); the same again, and a
    // rejection of an account that never applied, write nothing.
    let customer_a = app.customer("nx-a");
    app.run_ok(Some(&customer_a), "customer", "ApplyForAffiliate", json!({}))
        .await;
    reader.expect(&app, &["affiliate.applied"], "an application").await;
    app.run_ok(Some(&customer_a), "customer", "ApplyForAffiliate", json!({}))
        .await;
    reader.expect(&app, &[], "applying again").await;
    let approve = json!({ "input": { "accountId": a_id, "decision": "APPROVE" } });
    app.run_ok(Some(&admin), "admin", "DecideAffiliate", approve.clone())
        .await;
    reader
        .expect(
            &app,
            &["affiliate.decided", "reward.granted"],
            "the first approval, with its sign-up bonus",
        )
        .await;
    app.run_ok(Some(&admin), "admin", "DecideAffiliate", approve).await;
    let body = app
        .run(
            Some(&admin),
            "admin",
            "DecideAffiliate",
            json!({ "input": { "accountId": x_id, "decision": "REJECT" } }),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    reader
        .expect(&app, &[], "approving again and rejecting a non-applicant")
        .await;

    // Withdrawals: requested once under its key; refused requests write nothing; decided once.
    let request = |amount: &str, key: &str| json!({ "input": { "amount": amount, "idempotencyKey": key } });
    let requested = app
        .run_ok(
            Some(&customer_a),
            "customer",
            "RequestWithdrawal",
            request("10", "nx-wdr-1"),
        )
        .await;
    let withdrawal_id = s(&requested, "/requestWithdrawal/withdrawal/id").to_owned();
    reader
        .expect(&app, &["withdrawal.requested"], "a withdrawal request")
        .await;
    let again = app
        .run_ok(
            Some(&customer_a),
            "customer",
            "RequestWithdrawal",
            request("10", "nx-wdr-1"),
        )
        .await;
    assert_eq!(
        again["requestWithdrawal"]["withdrawal"]["id"],
        withdrawal_id.as_str(),
        "{again:#}"
    );
    for (amount, key) in [("1000", "nx-wdr-2"), ("5", "nx-wdr-3")] {
        let body = app
            .run(Some(&customer_a), "customer", "RequestWithdrawal", request(amount, key))
            .await;
        assert_refused(&body, &format!("a withdrawal of {amount}"));
    }
    reader.expect(&app, &[], "a replayed request and refused ones").await;
    let mark_paid = json!({ "input": { "withdrawalId": withdrawal_id, "decision": "MARK_PAID",
                                       "payoutReference": "PAYOUT-7" } });
    app.run_ok(Some(&admin), "admin", "DecideWithdrawal", mark_paid.clone())
        .await;
    reader.expect(&app, &["withdrawal.decided"], "a withdrawal paid").await;
    app.run_ok(Some(&admin), "admin", "DecideWithdrawal", mark_paid).await;
    let body = app
        .run(
            Some(&admin),
            "admin",
            "DecideWithdrawal",
            json!({ "input": { "withdrawalId": withdrawal_id, "decision": "REJECT" } }),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    reader
        .expect(&app, &[], "paid again, and a paid withdrawal rejected")
        .await;

    // An admin's rejection of a referral: the rejection and what it takes back, once.
    let reject = json!({ "input": { "referralId": b_referral, "reason": "the same person twice" } });
    app.run_ok(Some(&admin), "admin", "RejectReferral", reject.clone())
        .await;
    reader
        .expect(
            &app,
            &["referral.rejected", "reward.reversed"],
            "a referral rejected by an admin",
        )
        .await;
    app.run_ok(Some(&admin), "admin", "RejectReferral", reject).await;
    reader.expect(&app, &[], "rejecting it again").await;

    // A disqualification, once; without a reason it is refused.
    let disqualify = json!({ "input": { "accountId": x_id, "reason": "one person, many accounts" } });
    app.run_ok(Some(&admin), "admin", "DisqualifyAccount", disqualify.clone())
        .await;
    reader
        .expect(&app, &["account.disqualified"], "a disqualification")
        .await;
    app.run_ok(Some(&admin), "admin", "DisqualifyAccount", disqualify).await;
    let body = app
        .run(
            Some(&admin),
            "admin",
            "DisqualifyAccount",
            json!({ "input": { "accountId": a_id, "reason": "" } }),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    reader
        .expect(&app, &[], "disqualifying again, and without a reason")
        .await;
    app.assert_invariants().await;
}

/// Requests that race to do one thing (the same purchase delivered twenty times, twenty claims
/// under one key, four approvals, eight withdrawal requests for all of the money, four
/// rejections of it), across two instances: one change committed, so one event each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_racing_to_do_one_thing_write_its_events_once() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.update_settings(json!({ "affiliateSignupBonus": "100", "minimumWithdrawal": "10" }))
        .await;
    app.chain().await;
    let instances = [app.address.clone(), another_instance(&app).await];
    let service = app.service();

    let query = app.op("integration", "RecordPurchase");
    let vars = (0..20)
        .map(|_| TestApp::purchase_input("rc-buy-b", "acct-b", RESIDENTIAL, "10"))
        .collect();
    let bodies = send_concurrently_across(&app, &instances, &service, &query, vars).await;
    let answers: Vec<Value> = bodies
        .iter()
        .map(|b| data_of(b, "one purchase delivered at once")["recordPurchase"].clone())
        .collect();
    for answer in &answers {
        assert_eq!(answer["rewards"], answers[0]["rewards"], "{answer:#}");
    }
    let entry_id = s(&answers[0], "/rewards/0/id").to_owned();

    let query = app.op("customer", "ClaimReward");
    let vars = (0..20)
        .map(|_| json!({ "input": { "providerId": provider_id, "idempotencyKey": "rc-claim" } }))
        .collect();
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-a"), &query, vars).await;
    let claim_ids: BTreeSet<String> = bodies
        .iter()
        .map(|b| s(&data_of(b, "one claim sent at once"), "/claimReward/claim/id").to_owned())
        .collect();
    assert_eq!(claim_ids.len(), 1, "one claim: {claim_ids:?}");
    let claim_id = claim_ids.into_iter().next().expect("a claim");

    let a_id = s(&app.register("acct-a", None, None).await, "/account/id").to_owned();
    let query = app.op("admin", "DecideAffiliate");
    let vars = (0..4)
        .map(|_| json!({ "input": { "accountId": a_id, "decision": "APPROVE" } }))
        .collect();
    for body in send_concurrently_across(&app, &instances, &app.admin(), &query, vars).await {
        let data = data_of(&body, "one approval sent at once");
        assert_eq!(data["decideAffiliate"]["affiliate"]["status"], "APPROVED", "{body:#}");
    }

    let query = app.op("customer", "RequestWithdrawal");
    let vars = (0..8)
        .map(|i| json!({ "input": { "amount": "100.00", "idempotencyKey": format!("rc-wdr-{i}") } }))
        .collect();
    let bodies = send_concurrently_across(&app, &instances, &app.customer("acct-a"), &query, vars).await;
    let made: Vec<&Value> = bodies.iter().filter(|b| error_codes(b).is_empty()).collect();
    assert_eq!(made.len(), 1, "one withdrawal of all of it: {bodies:#?}");
    for body in bodies.iter().filter(|b| !error_codes(b).is_empty()) {
        assert_refused(body, "a second withdrawal of all of it");
    }
    let withdrawal_id = s(made[0], "/data/requestWithdrawal/withdrawal/id").to_owned();
    let query = app.op("admin", "DecideWithdrawal");
    let vars = (0..4)
        .map(|_| json!({ "input": { "withdrawalId": withdrawal_id, "decision": "REJECT" } }))
        .collect();
    for body in send_concurrently_across(&app, &instances, &app.admin(), &query, vars).await {
        let data = data_of(&body, "one rejection sent at once");
        assert_eq!(data["decideWithdrawal"]["status"], "REJECTED", "{body:#}");
    }

    let events = all_events(&app).await;
    assert_feed(&events);
    assert_eq!(app.count("outbox_events").await, events.len() as i64);
    assert_eq!(
        counts(&events),
        count_map(&[
            ("referral.attributed", 2),
            ("referral.qualified", 1),
            ("reward.granted", 2),
            ("claim.requested", 1),
            ("affiliate.decided", 1),
            ("withdrawal.requested", 1),
            ("withdrawal.decided", 1),
        ]),
        "{:#?}",
        summary(&events)
    );
    assert_eq!(the(&events, "reward.granted", "entryId", &entry_id)["amount"], "150.00");
    the(&events, "claim.requested", "claimId", &claim_id);
    the(&events, "affiliate.decided", "accountId", &a_id);
    the(&events, "withdrawal.requested", "withdrawalId", &withdrawal_id);
    assert_eq!(
        the(&events, "withdrawal.decided", "withdrawalId", &withdrawal_id)["status"],
        "REJECTED"
    );
    app.assert_invariants().await;
}

/// On PostgreSQL a first purchase is written by `referral_record_purchase`, which gives up
/// (RS001) when a reward would go into a balance with something due, after it may have written
/// other rewards and their events; the flow in steps then records the purchase. What the
/// function wrote must be gone with it: each reward's event once, and no event of an entry that
/// does not exist. (On SQLite the steps record it at once; the same must hold.)
#[tokio::test]
async fn a_purchase_the_database_function_hands_to_the_steps_writes_each_event_once() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let mut held = fixed_credit_rule("Held sign-up credit for the referrer", "SIGNUP", "REFERRER", "2");
    held["holdDays"] = json!(1);
    app.create_rule_id(held).await;
    app.create_rule_id(fixed_credit_rule(
        "Credit for a friend's first purchase",
        "FIRST_PURCHASE",
        "REFERRER",
        "20",
    ))
    .await;
    let code = app.register_code("st-a", None, None).await;
    let b = app.register("st-b", None, Some(&code)).await;
    let b_referral = s(&b, "/referral/id").to_owned();
    // A's 2.00 held for B's sign-up is due, and not settled: A's CREDIT balance has something due.
    advance(&app, 2);

    let paid = app.purchase("st-buy-b", "st-b", RESIDENTIAL, "10").await;
    // A's 150 points and 20.00 credit for B's first purchase.
    let rewards: Vec<Value> = [("POINTS", "150.00"), ("CREDIT", "20.00")]
        .iter()
        .map(|(unit, amount)| {
            paid["rewards"]
                .as_array()
                .expect("rewards")
                .iter()
                .find(|e| {
                    e["kind"] == "REWARD"
                        && e["unit"] == *unit
                        && e["amount"] == *amount
                        && e["account"]["externalId"] == "st-a"
                })
                .cloned()
                .unwrap_or_else(|| panic!("no {amount} {unit} for A: {paid:#}"))
        })
        .collect();

    let events = all_events(&app).await;
    assert_feed(&events);
    assert_eq!(app.count("outbox_events").await, events.len() as i64);
    for reward in &rewards {
        let granted = the(&events, "reward.granted", "entryId", s(reward, "/id"));
        assert_fields(
            granted,
            json!({ "externalId": "st-a", "unit": reward["unit"], "amount": reward["amount"],
                    "status": "POSTED", "referralId": b_referral }),
            "reward.granted of the purchase",
        );
    }
    let granted = counts(&events).get("reward.granted").copied().unwrap_or(0) as i64;
    assert_eq!(
        granted,
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind = 'REWARD'")
            .await,
        "one reward.granted per reward in the ledger: {:#?}",
        summary(&events)
    );
    assert_eq!(granted, 3, "the held sign-up credit and the purchase's two rewards");
    the(&events, "referral.qualified", "referralId", &b_referral);
    assert_eq!(counts(&events).get("referral.qualified"), Some(&1));
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Paging

#[tokio::test]
async fn the_feed_pages_by_cursor_filters_by_type_and_refuses_bad_pages_and_customers() {
    let app = spawn_app().await;
    let code = app.register_code("pg-a", None, None).await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let external_id = format!("pg-{i:02}");
        if i % 2 == 0 {
            app.register(&external_id, None, Some(&code)).await;
            expected.push(("referral.attributed".to_owned(), external_id));
        } else {
            app.register(&external_id, None, Some("NOSUCH0CODE")).await;
            expected.push(("referral.rejected".to_owned(), external_id));
        }
    }

    // 25 events in pages of 10: 10, 10 and 5, each once, in order.
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    for (size, more) in [(10, true), (10, true), (5, false)] {
        let page = feed_page(&app, cursor.as_deref(), None, Some(10)).await;
        let edges = edges_of(&page);
        assert_eq!(edges.len(), size, "{page:#}");
        assert_eq!(page["pageInfo"]["hasNextPage"], more, "{page:#}");
        let last = edges.last().expect("a page with events");
        assert_eq!(page["pageInfo"]["endCursor"], last.cursor.as_str(), "{page:#}");
        cursor = Some(last.cursor.clone());
        events.extend(edges);
    }
    let after_last = feed_page(&app, cursor.as_deref(), None, Some(10)).await;
    assert_eq!(after_last["edges"], json!([]), "{after_last:#}");
    assert_eq!(after_last["pageInfo"]["hasNextPage"], false, "{after_last:#}");
    assert_feed(&events);
    let listed: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.name().to_owned(), s(e.data(), "/refereeExternalId").to_owned()))
        .collect();
    assert_eq!(listed, expected, "the feed lists the registrations in their order");
    assert_eq!(app.count("outbox_events").await, 25);

    // One page of all of them: by default, or asking for 25 or the most.
    for first in [None, Some(25), Some(1000)] {
        let page = feed_page(&app, None, None, first).await;
        assert_eq!(ids(&edges_of(&page)), ids(&events), "first: {first:?}");
        assert_eq!(page["pageInfo"]["hasNextPage"], false, "first: {first:?}");
    }
    let page = feed_page(&app, None, None, Some(24)).await;
    assert_eq!(ids(&edges_of(&page)), ids(&events[..24]));
    assert_eq!(page["pageInfo"]["hasNextPage"], true, "{page:#}");
    // From each event's cursor: exactly the events after it.
    for (i, event) in events.iter().enumerate() {
        let rest = feed_page(&app, Some(&event.cursor), None, Some(100)).await;
        assert_eq!(ids(&edges_of(&rest)), ids(&events[i + 1..]), "after event {i}");
    }

    // Types: only those asked for, in feed order, paged the same way.
    let rejected: Vec<&Seen> = events.iter().filter(|e| e.name() == "referral.rejected").collect();
    assert_eq!(rejected.len(), 12);
    let only = read_from(&app, None, Some(&["REFERRAL_REJECTED"][..]), 5).await;
    assert_eq!(ids(&only), ids(rejected.iter().copied()));
    assert!(only.iter().all(|e| e.node["type"] == "REFERRAL_REJECTED"));
    let both = read_from(&app, None, Some(&["REFERRAL_ATTRIBUTED", "REFERRAL_REJECTED"][..]), 100).await;
    assert_eq!(ids(&both), ids(&events));
    let none = feed_page(&app, None, Some(&["CLAIM_REQUESTED", "REWARD_GRANTED"][..]), Some(100)).await;
    assert_eq!(none["edges"], json!([]), "{none:#}");
    assert_eq!(none["pageInfo"]["hasNextPage"], false, "{none:#}");
    let later = read_from(&app, Some(&events[9].cursor), Some(&["REFERRAL_ATTRIBUTED"][..]), 3).await;
    let later_attributed: Vec<&Seen> = events[10..]
        .iter()
        .filter(|e| e.name() == "referral.attributed")
        .collect();
    assert_eq!(ids(&later), ids(later_attributed.iter().copied()));

    // first: 0 is an empty page; more than 1,000 or negative is refused.
    let empty = feed_page(&app, None, None, Some(0)).await;
    assert_eq!(empty["edges"], json!([]), "{empty:#}");
    let service = app.service();
    for first in [1001, -1] {
        let body = app
            .run(Some(&service), "integration", "Events", json!({ "first": first }))
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    // A cursor the feed did not hand out is refused.
    let not_a_position = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("\"position\"");
    for after in ["not-a-cursor", "%%%", "", not_a_position.as_str()] {
        let body = app
            .run(
                Some(&service),
                "integration",
                "Events",
                json!({ "after": after, "first": 10 }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }

    // Staff only: a customer is FORBIDDEN, no token UNAUTHENTICATED; an admin reads it.
    let body = app
        .run(Some(&app.customer("pg-00")), "integration", "Events", json!({}))
        .await;
    assert_failed(&body, "FORBIDDEN");
    let body = app.run(None, "integration", "Events", json!({})).await;
    assert_failed(&body, "UNAUTHENTICATED");
    let data = app
        .run_ok(Some(&app.admin()), "integration", "Events", json!({ "first": 100 }))
        .await;
    assert_eq!(ids(&edges_of(&data["events"])), ids(&events));
}

// ---------------------------------------------------------------------------------------------
// Commit order under concurrent writers

/// Polls the feed as a client does, `first: 7` after its stored cursor, a few milliseconds
/// apart, taking turns between the instances, until a poll that began after `done` was set
/// finds nothing. Every edge it was handed, in order.
async fn poll_until_caught_up(
    client: reqwest::Client,
    instances: Vec<String>,
    token: String,
    start: Option<String>,
    done: Arc<AtomicBool>,
    turn: usize,
) -> Vec<Seen> {
    let query = contract_op("integration", "Events");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cursor = start;
    let mut seen: Vec<Seen> = Vec::new();
    let mut turn = turn;
    loop {
        assert!(Instant::now() < deadline, "the poller never caught up");
        // Read before the poll: a poll that began after the writers finished and found
        // nothing has seen everything.
        let finished = done.load(Ordering::SeqCst);
        let address = &instances[turn % instances.len()];
        turn += 1;
        let vars = json!({ "after": cursor, "first": 7 });
        let (_, body) = post_graphql(&client, address, Some(&token), &query, vars).await;
        let page = data_of(&body, "a poll of the feed")["events"].clone();
        let edges = edges_of(&page);
        assert!(edges.len() <= 7, "{page:#}");
        if let Some(last) = edges.last() {
            assert_eq!(page["pageInfo"]["endCursor"], last.cursor.as_str(), "{page:#}");
            cursor = Some(last.cursor.clone());
        }
        let empty = edges.is_empty();
        seen.extend(edges);
        if finished && empty {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_polling_during_concurrent_writes_see_every_event_once_in_commit_order() {
    const WRITERS: usize = 8;
    const WRITES: usize = 15;
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    app.set_redemption_rate(PROVIDER, "10").await;
    // Each writer's account has 150 points from its friend's first purchase: 15 claims of 10.
    let mut codes = Vec::new();
    for w in 0..WRITERS {
        let code = app.register_code(&format!("cw-{w}"), None, None).await;
        app.register(&format!("cw-{w}-friend"), None, Some(&code)).await;
        app.purchase(&format!("cw-buy-{w}"), &format!("cw-{w}-friend"), RESIDENTIAL, "10")
            .await;
        codes.push(code);
    }
    let setup = all_events(&app).await;
    assert_eq!(setup.len(), WRITERS * 3, "{:#?}", summary(&setup));
    let start = setup.last().map(|e| e.cursor.clone());
    let instances = vec![app.address.clone(), another_instance(&app).await];

    // Two clients poll from the setup's end, each on both instances in turn.
    let done = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = (0..2)
        .map(|turn| {
            tokio::spawn(poll_until_caught_up(
                app.client.clone(),
                instances.clone(),
                app.service(),
                start.clone(),
                done.clone(),
                turn,
            ))
        })
        .collect();

    // Eight writers, fifteen writes each, one after another: registrations with the writer's
    // code (referral.attributed) and claims (claim.requested).
    let register = app.op("integration", "RegisterAccount");
    let claim = app.op("customer", "ClaimReward");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = app.client.clone();
            let address = instances[w % instances.len()].clone();
            let service = app.service();
            let customer = app.customer(&format!("cw-{w}"));
            let (register, claim) = (register.clone(), claim.clone());
            let (code, provider_id) = (codes[w].clone(), provider_id.clone());
            tokio::spawn(async move {
                let mut wrote: Vec<(String, String)> = Vec::new();
                for k in 0..WRITES {
                    if k % 2 == 0 {
                        let vars = json!({ "input": {
                            "externalId": format!("cw-{w}-new-{k}"), "referralCode": code } });
                        let (_, body) = post_graphql(&client, &address, Some(&service), &register, vars).await;
                        let data = data_of(&body, "a registration with a code");
                        assert_eq!(data["registerAccount"]["referral"]["status"], "PENDING", "{body:#}");
                        let id = s(&data, "/registerAccount/referral/id").to_owned();
                        wrote.push(("referral.attributed".to_owned(), id));
                    } else {
                        let vars = json!({ "input": {
                            "providerId": provider_id, "idempotencyKey": format!("cw-{w}-claim-{k}") } });
                        let (_, body) = post_graphql(&client, &address, Some(&customer), &claim, vars).await;
                        let data = data_of(&body, "a claim");
                        let id = s(&data, "/claimReward/claim/id").to_owned();
                        wrote.push(("claim.requested".to_owned(), id));
                    }
                }
                wrote
            })
        })
        .collect();
    let mut written: Vec<Vec<(String, String)>> = Vec::new();
    for writer in writers {
        written.push(writer.await.expect("a writer"));
    }
    done.store(true, Ordering::SeqCst);
    let mut polled = Vec::new();
    for poller in pollers {
        polled.push(poller.await.expect("a poller"));
    }

    // The whole feed, read afterwards from the start: everything the table holds, in order.
    let all = all_events(&app).await;
    assert_feed(&all);
    assert_eq!(
        app.count("outbox_events").await,
        all.len() as i64,
        "the feed lists every event the table holds"
    );
    assert_eq!(
        app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM outbox_events WHERE position IS NULL")
            .await,
        0,
        "every event has its place"
    );
    assert_eq!(
        ids(&all[..setup.len()]),
        ids(&setup),
        "no event appeared before the setup's"
    );
    let tail = &all[setup.len()..];
    assert_eq!(tail.len(), WRITERS * WRITES, "{:#?}", summary(tail));

    // Each poller saw exactly those events, in that order, each once, at the same cursors: no
    // event appeared behind a cursor a poller had already been handed.
    for seen in &polled {
        for pair in seen.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "a poller's cursors must increase: {:#?}",
                summary(pair)
            );
        }
        assert_eq!(
            ids(seen),
            ids(tail),
            "a poller saw other events than the feed holds: polled {:#?}\nfeed {:#?}",
            summary(seen),
            summary(tail)
        );
        for (mine, theirs) in seen.iter().zip(tail) {
            assert_eq!(mine.position, theirs.position, "{} moved", mine.id());
        }
    }

    // They are the writes, each once; and each writer's writes are in the order it made them.
    let subject = |e: &Seen| {
        let key = if e.name() == "claim.requested" {
            "claimId"
        } else {
            "referralId"
        };
        (e.name().to_owned(), s(e.data(), &format!("/{key}")).to_owned())
    };
    let place: BTreeMap<(String, String), i64> = tail.iter().map(|e| (subject(e), e.position)).collect();
    let mut listed: Vec<(String, String)> = tail.iter().map(subject).collect();
    listed.sort();
    let mut wrote: Vec<(String, String)> = written.iter().flatten().cloned().collect();
    wrote.sort();
    assert_eq!(listed, wrote, "the feed lists the writes, each once");
    for writes in &written {
        let positions: Vec<i64> = writes.iter().map(|w| place[w]).collect();
        assert!(
            positions.windows(2).all(|p| p[0] < p[1]),
            "one writer's writes, one after another, are listed in that order: {writes:?} at {positions:?}"
        );
    }
    app.assert_invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Reading one's own writes

/// The events after `after` as one instance's feed answers them (one page).
async fn read_at(app: &TestApp, address: &str, after: Option<&str>) -> Vec<Seen> {
    let query = app.op("integration", "Events");
    let vars = json!({ "after": after, "first": 100 });
    let (_, body) = post_graphql(&app.client, address, Some(&app.service()), &query, vars).await;
    let page = data_of(&body, "a read of the feed")["events"].clone();
    assert_eq!(page["pageInfo"]["hasNextPage"], false, "{page:#}");
    edges_of(&page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_read_right_after_a_write_lists_that_writes_event() {
    let app = spawn_app().await;
    let provider_id = app.setup_catalog().await;
    let instances = [app.address.clone(), another_instance(&app).await];
    let code = app.register_code("ow-a", Some("Alice Adams"), None).await;
    let register = app.op("integration", "RegisterAccount");
    let service = app.service();
    let mut cursor: Option<String> = None;

    // Written on one instance, read at once on the same one or the other.
    for i in 0..8 {
        let writer = &instances[i % 2];
        let reader = &instances[(i / 2) % 2];
        let vars = json!({ "input": { "externalId": format!("ow-{i}"), "referralCode": code } });
        let (_, body) = post_graphql(&app.client, writer, Some(&service), &register, vars).await;
        let referral = s(&data_of(&body, "a registration"), "/registerAccount/referral/id").to_owned();
        let events = read_at(&app, reader, cursor.as_deref()).await;
        assert_eq!(events.len(), 1, "write {i}: {:#?}", summary(&events));
        assert_eq!(events[0].name(), "referral.attributed", "write {i}");
        assert_eq!(events[0].data()["referralId"], referral.as_str(), "write {i}");
        assert_well_formed(&events[0]);
        cursor = Some(events[0].cursor.clone());
    }

    // A first purchase and a claim (on PostgreSQL, written by SQL functions) too.
    let paid = app.purchase("ow-buy-0", "ow-0", RESIDENTIAL, "10").await;
    let events = read_at(&app, &instances[1], cursor.as_deref()).await;
    let mut names: Vec<&str> = events.iter().map(Seen::name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["referral.qualified", "reward.granted"],
        "{:#?}",
        summary(&events)
    );
    the(&events, "reward.granted", "entryId", s(&paid, "/rewards/0/id"));
    cursor = events.last().map(|e| e.cursor.clone());

    let claimed = app.claim("ow-a", &provider_id, None).await;
    let events = read_at(&app, &instances[0], cursor.as_deref()).await;
    assert_eq!(events.len(), 1, "{:#?}", summary(&events));
    assert_eq!(events[0].name(), "claim.requested");
    assert_eq!(events[0].data()["claimId"], claimed["claim"]["id"]);
    assert_well_formed(&events[0]);
}
