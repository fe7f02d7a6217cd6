//! The test harness: a server on a random port over a fresh database per test, a GraphQL
//! client that sends the contract's operations by name, tokens, and small domain helpers.
//!
//! The database is SQLite in a temporary file unless `TEST_DATABASE_URL` names a PostgreSQL
//! server, in which case every test gets its own `rs_test_<random>` database on it (left in
//! place: CI drops leftovers). Either way it is a copy of one migrated once per run
//! (`tests/common`); the server's own migration at start finds nothing left to do.

#![allow(dead_code)]

use crate::common::{TempDir, migrated_postgres_database, migrated_sqlite_database, temp_dir};
use referral_server::AppState;
use referral_server::auth::Role;
use referral_server::config::Config;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const JWT_SECRET: &str = "integration-tests-secret-0123456789abcdefghij";
pub const JWT_ISSUER: &str = "referral-server";
pub const JWT_AUDIENCE: &str = "referral-api";
pub const PUBLIC_URL: &str = "https://refer.example.test";

/// The catalog most tests use (see `TestApp::setup_catalog`).
pub const PROVIDER: &str = "proxyco";
pub const PROVIDER_NAME: &str = "ProxyCo";
pub const RESIDENTIAL: &str = "resi-monthly";
pub const DATACENTER: &str = "dc-monthly";

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    /// Which database the test runs on, for messages.
    pub database_url: String,
    _dir: Option<TempDir>,
}

/// The database URL for a fresh, migrated test database, and the directory to keep alive for
/// SQLite.
async fn fresh_database() -> (String, Option<TempDir>) {
    if let Some(url) = migrated_postgres_database().await {
        return (url, None);
    }
    let dir = temp_dir("rs-test-");
    let url = migrated_sqlite_database(&dir.path().join("test.db")).await;
    (url, Some(dir))
}

pub fn test_config(database_url: String) -> Config {
    Config {
        database_url,
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        jwt_secret: SecretString::from(JWT_SECRET.to_owned()),
        jwt_issuer: JWT_ISSUER.to_owned(),
        jwt_audience: JWT_AUDIENCE.to_owned(),
        public_url: PUBLIC_URL.to_owned(),
        introspection: true,
        // High enough for every test but the one about the limit.
        code_lookups_per_minute: 100_000,
        cors_origins: Vec::new(),
        link_clicks_per_minute: 100_000,
        trust_forwarded_for: false,
        request_timeout: std::time::Duration::from_secs(30),
        settle_interval: std::time::Duration::from_secs(60),
        sandbox: false,
        webhook_timeout: std::time::Duration::from_secs(5),
        webhook_poll_interval: std::time::Duration::from_millis(100),
        webhook_allow_private_targets: true,
    }
}

/// With `TEST_LOG` set, the server's logs go to the test's output (at that filter, e.g.
/// `TEST_LOG=debug`; `TEST_LOG=1` means `info`).
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let filter = if filter == "1" { "info".to_owned() } else { filter };
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A server on 127.0.0.1:0 over a fresh, migrated database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with the configuration changed first.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    init_logging();
    let (database_url, dir) = fresh_database().await;
    let mut config = test_config(database_url.clone());
    change(&mut config);
    let state = AppState::connect(config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to / migrate {database_url}: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let app = referral_server::build_app(state.clone());
    tokio::spawn(async move {
        if let Err(e) = referral_server::serve(listener, app).await {
            eprintln!("test server stopped: {e}");
        }
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client");
    TestApp {
        address: format!("http://{addr}"),
        addr,
        state,
        client,
        database_url,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------------
// The operation documents the clients send (operations/, a copy of the contract's and more)

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("operations")
}

/// One top-level definition of a GraphQL document.
#[derive(Debug, Clone)]
struct Definition {
    /// `query`, `mutation`, `subscription` or `fragment`.
    kind: String,
    name: String,
    text: String,
}

/// Splits a document into its top-level definitions by matching braces (comments and strings
/// are skipped while counting).
fn split_definitions(source: &str) -> Vec<Definition> {
    let chars: Vec<char> = source.chars().collect();
    let mut defs = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' => {
                if start.is_none() {
                    start = Some(i);
                }
                let block = chars.get(i..i + 3).is_some_and(|s| s == ['"', '"', '"']);
                if block {
                    i += 3;
                    while i < chars.len() && chars.get(i..i + 3).is_none_or(|s| s != ['"', '"', '"']) {
                        i += 1;
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        if chars[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            '{' => {
                if start.is_none() {
                    start = Some(i);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.checked_sub(1).expect("unbalanced braces in a contract document");
                if depth == 0 {
                    let s = start.take().expect("definition start");
                    let text: String = chars[s..=i].iter().collect();
                    defs.push(parse_header(text));
                }
            }
            c if !c.is_whitespace() && c != ',' && start.is_none() => start = Some(i),
            _ => {}
        }
        i += 1;
    }
    assert_eq!(depth, 0, "unbalanced braces in a contract document");
    defs
}

fn parse_header(text: String) -> Definition {
    let header: String = text.chars().take_while(|c| *c != '{' && *c != '(').collect();
    let mut words = header.split_whitespace();
    let kind = words.next().unwrap_or_default().to_owned();
    let name = words.next().unwrap_or_default().to_owned();
    Definition { kind, name, text }
}

/// The names of the fragments spread in a definition (`...Name`, not `... on Type`).
fn fragment_spreads(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find("...") {
        rest = &rest[pos + 3..];
        let trimmed = rest.trim_start();
        let name: String = trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name != "on" {
            names.push(name);
        }
    }
    names
}

/// The text of the operation `name` from `operations/{file}.graphql`, with the
/// fragments it uses, transitively. A whole file would not validate: it also holds operations
/// of features that are not built yet.
pub fn contract_op(file: &str, name: &str) -> String {
    let path = contract_dir().join(format!("{file}.graphql"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
    let defs = split_definitions(&source);
    let op = defs
        .iter()
        .find(|d| d.kind != "fragment" && d.name == name)
        .unwrap_or_else(|| panic!("no operation {name} in {path:?}"));
    let fragments: BTreeMap<&str, &Definition> = defs
        .iter()
        .filter(|d| d.kind == "fragment")
        .map(|d| (d.name.as_str(), d))
        .collect();
    let mut out = vec![op.text.clone()];
    let mut seen: Vec<String> = Vec::new();
    let mut queue = fragment_spreads(&op.text);
    while let Some(frag) = queue.pop() {
        if seen.contains(&frag) {
            continue;
        }
        let def = fragments
            .get(frag.as_str())
            .unwrap_or_else(|| panic!("operation {name} uses fragment {frag}, not in {path:?}"));
        queue.extend(fragment_spreads(&def.text));
        out.push(def.text.clone());
        seen.push(frag);
    }
    out.join("\n\n")
}

// ---------------------------------------------------------------------------------------------
// Requests

impl TestApp {
    /// Runs `referral-server check`'s invariants on this test's database; every concurrent
    /// scenario ends with it.
    pub async fn assert_invariants(&self) {
        let findings = referral_server::service::check::run(&self.state.db)
            .await
            .expect("the invariant checks run");
        let broken: Vec<_> = findings.iter().filter(|f| !f.violations.is_empty()).collect();
        assert!(broken.is_empty(), "ledger invariants broken: {broken:#?}");
    }

    pub fn op(&self, file: &str, name: &str) -> String {
        contract_op(file, name)
    }

    pub fn token(&self, role: Role, subject: &str) -> String {
        self.state
            .keys
            .mint(role, subject, Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("cannot mint a token: {e:?}"))
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, "admin-1")
    }

    pub fn service(&self) -> String {
        self.token(Role::Service, "billing")
    }

    pub fn customer(&self, external_id: &str) -> String {
        self.token(Role::Customer, external_id)
    }

    /// POSTs a GraphQL request; the HTTP status and the whole body.
    pub async fn gql_raw(&self, token: Option<&str>, query: &str, variables: Value) -> (StatusCode, Value) {
        post_graphql(&self.client, &self.address, token, query, variables).await
    }

    /// POSTs a GraphQL request; the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_raw(token, query, variables).await.1
    }

    /// Runs the contract operation `name` of `file`; the whole response body.
    pub async fn run(&self, token: Option<&str>, file: &str, name: &str, variables: Value) -> Value {
        self.gql(token, &contract_op(file, name), variables).await
    }

    /// Like `run`, but the operation must succeed: returns `data`.
    pub async fn run_ok(&self, token: Option<&str>, file: &str, name: &str, variables: Value) -> Value {
        let body = self.run(token, file, name, variables.clone()).await;
        data_of(&body, &format!("{file}/{name} with {variables}"))
    }
}

/// One GraphQL POST with a given client: usable from spawned tasks.
pub async fn post_graphql(
    client: &reqwest::Client,
    address: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, Value) {
    let mut request = client
        .post(format!("{address}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /graphql failed: {e}"));
    let status = response.status();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading the body failed: {e}"));
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the body is not JSON ({e}); status {status}, body: {text}"));
    (status, body)
}

/// `data` of a response that must have no errors.
pub fn data_of(body: &Value, what: &str) -> Value {
    let errors = body.get("errors");
    assert!(
        errors.is_none() || errors == Some(&Value::Null) || errors == Some(&json!([])),
        "{what}: expected no errors, got: {body:#}"
    );
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    assert!(!data.is_null(), "{what}: expected data, got: {body:#}");
    data
}

/// The `extensions.code` of every error of a response.
pub fn error_codes(body: &Value) -> Vec<String> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e.pointer("/extensions/code")
                        .and_then(Value::as_str)
                        .unwrap_or("<no extensions.code>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The response has an error with this code (and every error has a code).
pub fn assert_error_code(body: &Value, code: &str) {
    let codes = error_codes(body);
    assert!(
        codes.iter().any(|c| c == code),
        "expected an error with code {code}, got: {body:#}"
    );
    assert!(
        codes.iter().all(|c| c != "<no extensions.code>"),
        "every error must carry extensions.code: {body:#}"
    );
    // INTERNAL never carries database text; no other error should either.
    for error in body["errors"].as_array().into_iter().flatten() {
        let message = error["message"].as_str().unwrap_or_default().to_ascii_lowercase();
        for leak in [
            "sqlx",
            "sqlite",
            "postgres",
            "constraint",
            "select ",
            "insert into",
            "syntax error",
        ] {
            assert!(
                !message.contains(leak),
                "an error message leaks database text ({leak}): {body:#}"
            );
        }
    }
}

/// The request failed as a whole: an error with this code, and no data (`data` absent, null,
/// or with every top-level field null).
pub fn assert_failed(body: &Value, code: &str) {
    assert_error_code(body, code);
    match body.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => assert!(
            fields.values().all(Value::is_null),
            "expected no data with error {code}, got: {body:#}"
        ),
        Some(other) => panic!("unexpected data {other} in {body:#}"),
    }
}

/// A well-formed id of the same kind as `id` that names nothing: its trailing digits replaced.
pub fn unknown_id_like(id: &str) -> String {
    let prefix = id.trim_end_matches(|c: char| c.is_ascii_digit());
    assert!(prefix.len() < id.len(), "cannot make an unknown id like {id:?}");
    format!("{prefix}987654")
}

/// The string at a JSON pointer, or a panic that shows the value.
pub fn s<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
}

// ---------------------------------------------------------------------------------------------
// Domain helpers

impl TestApp {
    /// Registers an account through the billing system's RegisterAccount; `registerAccount`.
    pub async fn register(&self, external_id: &str, display_name: Option<&str>, code: Option<&str>) -> Value {
        let mut input = json!({ "externalId": external_id });
        if let Some(name) = display_name {
            input["displayName"] = json!(name);
        }
        if let Some(code) = code {
            input["referralCode"] = json!(code);
        }
        let data = self
            .run_ok(
                Some(&self.service()),
                "integration",
                "RegisterAccount",
                json!({ "input": input }),
            )
            .await;
        data["registerAccount"].clone()
    }

    /// Registers an account and returns its referral code.
    pub async fn register_code(&self, external_id: &str, display_name: Option<&str>, code: Option<&str>) -> String {
        s(
            &self.register(external_id, display_name, code).await,
            "/account/referralCode",
        )
        .to_owned()
    }

    /// A provider with a redemption rate; returns its id.
    pub async fn upsert_provider(&self, key: &str, name: &str, redemption_rate: Option<&str>) -> String {
        let mut input = json!({ "key": key, "name": name });
        if let Some(rate) = redemption_rate {
            input["redemptionRate"] = json!(rate);
        }
        let data = self
            .run_ok(
                Some(&self.admin()),
                "admin",
                "UpsertProvider",
                json!({ "input": input }),
            )
            .await;
        s(&data, "/upsertProvider/id").to_owned()
    }

    pub async fn upsert_product(
        &self,
        key: &str,
        provider_key: &str,
        name: &str,
        category: &str,
        rate: Option<&str>,
    ) -> Value {
        let mut input = json!({ "key": key, "providerKey": provider_key, "name": name, "category": category });
        if let Some(rate) = rate {
            input["productRate"] = json!(rate);
        }
        let data = self
            .run_ok(Some(&self.admin()), "admin", "UpsertProduct", json!({ "input": input }))
            .await;
        data["upsertProduct"].clone()
    }

    /// The usual catalog: provider `proxyco` ("ProxyCo", 100 points per GB), a residential
    /// product at 15 points per GB and a datacenter product at 5. Returns the provider's id.
    pub async fn setup_catalog(&self) -> String {
        let id = self.upsert_provider(PROVIDER, PROVIDER_NAME, Some("100")).await;
        self.upsert_product(RESIDENTIAL, PROVIDER, "Residential proxies", "residential", Some("15"))
            .await;
        self.upsert_product(DATACENTER, PROVIDER, "Datacenter proxies", "datacenter", Some("5"))
            .await;
        id
    }

    pub async fn set_redemption_rate(&self, provider_key: &str, rate: &str) {
        self.run_ok(
            Some(&self.admin()),
            "admin",
            "SetRedemptionRate",
            json!({ "input": { "providerKey": provider_key, "redemptionRate": rate } }),
        )
        .await;
    }

    pub async fn update_settings(&self, input: Value) -> Value {
        let data = self
            .run_ok(
                Some(&self.admin()),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": input }),
            )
            .await;
        data["updateProgramSettings"].clone()
    }

    pub async fn set_enabled(&self, enabled: bool) {
        let settings = self.update_settings(json!({ "enabled": enabled })).await;
        assert_eq!(settings["enabled"], json!(enabled));
    }

    pub fn purchase_input(event_id: &str, external_id: &str, product_key: &str, gb: &str) -> Value {
        json!({ "input": {
            "eventId": event_id,
            "externalId": external_id,
            "productKey": product_key,
            "quantityGb": gb,
        } })
    }

    /// RecordPurchase as the billing system; the whole response body.
    pub async fn purchase_raw(&self, event_id: &str, external_id: &str, product_key: &str, gb: &str) -> Value {
        self.run(
            Some(&self.service()),
            "integration",
            "RecordPurchase",
            Self::purchase_input(event_id, external_id, product_key, gb),
        )
        .await
    }

    /// RecordPurchase that must succeed; `recordPurchase`.
    pub async fn purchase(&self, event_id: &str, external_id: &str, product_key: &str, gb: &str) -> Value {
        let body = self.purchase_raw(event_id, external_id, product_key, gb).await;
        data_of(&body, &format!("RecordPurchase {event_id}"))["recordPurchase"].clone()
    }

    /// The customer's Dashboard; `me` and `program` as `data`.
    pub async fn dashboard(&self, external_id: &str, first: i64) -> Value {
        self.run_ok(
            Some(&self.customer(external_id)),
            "customer",
            "Dashboard",
            json!({ "first": first }),
        )
        .await
    }

    /// The customer's POINTS balance: (available, pending, lifetimeEarned). The balance part of
    /// the Dashboard only, so that a balance check does not depend on the rest of it.
    pub async fn points(&self, external_id: &str) -> (String, String, String) {
        let query = "query Balance { me { points: balance(unit: POINTS) { unit available pending lifetimeEarned } } }";
        let body = self.gql(Some(&self.customer(external_id)), query, json!({})).await;
        let data = data_of(&body, &format!("the POINTS balance of {external_id}"));
        let points = &data["me"]["points"];
        assert_eq!(points["unit"], "POINTS", "{data:#}");
        (
            s(points, "/available").to_owned(),
            s(points, "/pending").to_owned(),
            s(points, "/lifetimeEarned").to_owned(),
        )
    }

    pub async fn available_points(&self, external_id: &str) -> String {
        self.points(external_id).await.0
    }

    /// ClaimReward as the customer; the whole response body.
    pub async fn claim_raw(&self, external_id: &str, provider_id: &str, key: Option<&str>) -> Value {
        let mut input = json!({ "providerId": provider_id });
        if let Some(key) = key {
            input["idempotencyKey"] = json!(key);
        }
        self.run(
            Some(&self.customer(external_id)),
            "customer",
            "ClaimReward",
            json!({ "input": input }),
        )
        .await
    }

    pub async fn claim(&self, external_id: &str, provider_id: &str, key: Option<&str>) -> Value {
        let body = self.claim_raw(external_id, provider_id, key).await;
        data_of(&body, &format!("ClaimReward by {external_id}"))["claimReward"].clone()
    }

    pub async fn catalog(&self) -> Value {
        self.run_ok(Some(&self.admin()), "admin", "Catalog", json!({})).await
    }

    pub async fn settings(&self) -> Value {
        self.run_ok(Some(&self.admin()), "admin", "ProgramSettings", json!({}))
            .await["programSettings"]
            .clone()
    }

    /// A → B → C: A refers B, B refers C. Returns the codes of A and B.
    pub async fn chain(&self) -> (String, String) {
        let a = self.register_code("acct-a", Some("Alice Adams"), None).await;
        let b = self.register_code("acct-b", Some("Bob Brown"), Some(&a)).await;
        self.register_code("acct-c", Some("Carol Clark"), Some(&b)).await;
        (a, b)
    }
}

// ---------------------------------------------------------------------------------------------
// Reward rules, program 1 (cloud credit), credit and the admin console

/// The name of program 3's rule, which a new installation is seeded with.
pub const SEEDED_RULE: &str = "Points for a friend's first residential purchase";

/// A reward rule's input with only the required fields; add the others with `input["x"] = ..`.
pub fn rule_input(name: &str, trigger: &str, beneficiary: &str, unit: &str, calculation: &str) -> Value {
    json!({
        "name": name,
        "trigger": trigger,
        "beneficiary": beneficiary,
        "unit": unit,
        "calculation": calculation,
    })
}

/// A FIXED rule paying `value` of CREDIT.
pub fn fixed_credit_rule(name: &str, trigger: &str, beneficiary: &str, value: &str) -> Value {
    let mut input = rule_input(name, trigger, beneficiary, "CREDIT", "FIXED");
    input["value"] = json!(value);
    input
}

/// The `Rule` fragment of a rule that has only the required fields and `value` set, as the
/// server must answer it (without the id).
pub fn rule_with_defaults(input: &Value) -> Value {
    let mut out = json!({
        "name": input["name"],
        "enabled": true,
        "trigger": input["trigger"],
        "beneficiary": input["beneficiary"],
        "unit": input["unit"],
        "calculation": input["calculation"],
        "value": null,
        "threshold": null,
        "invoiceNumber": null,
        "windowDays": null,
        "recurring": false,
        "maxOccurrences": null,
        "capPerReferral": null,
        "holdDays": null,
        "expiresAfterDays": null,
        "productCategories": null,
        "redeemableCategories": null,
        "accountGroups": null,
        "minActiveReferrals": null,
        "affiliatesOnly": false,
    });
    if let Some(fields) = input.as_object() {
        for (key, value) in fields {
            out[key] = value.clone();
        }
    }
    out
}

/// A rule as answered, without its id (to compare with `rule_with_defaults`).
pub fn without_id(rule: &Value) -> Value {
    let mut rule = rule.clone();
    if let Some(fields) = rule.as_object_mut() {
        fields.remove("id");
    }
    rule
}

/// The nodes of a connection's edges.
pub fn nodes(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges in {connection:#}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// The decision of one rule in an event's payload (`recordX`): there must be exactly one.
pub fn decision_for<'a>(payload: &'a Value, rule_id: &str) -> &'a Value {
    let matching: Vec<&Value> = payload["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions in {payload:#}"))
        .iter()
        .filter(|d| d["rule"]["id"] == rule_id)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one decision of rule {rule_id}: {payload:#}"
    );
    matching[0]
}

/// Whether a payload has a decision for the rule.
pub fn has_decision(payload: &Value, rule_id: &str) -> bool {
    payload["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions in {payload:#}"))
        .iter()
        .any(|d| d["rule"]["id"] == rule_id)
}

/// The ids of the rules an event's payload decided on, sorted.
pub fn decided_rule_ids(payload: &Value) -> Vec<String> {
    let mut ids: Vec<String> = payload["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions in {payload:#}"))
        .iter()
        .map(|d| s(d, "/rule/id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// The rewards of an event's payload as (externalId, kind, unit, amount, status), sorted.
pub fn rewards_of(payload: &Value) -> Vec<(String, String, String, String, String)> {
    let mut out: Vec<_> = payload["rewards"]
        .as_array()
        .unwrap_or_else(|| panic!("no rewards in {payload:#}"))
        .iter()
        .map(|r| {
            (
                s(r, "/account/externalId").to_owned(),
                s(r, "/kind").to_owned(),
                s(r, "/unit").to_owned(),
                s(r, "/amount").to_owned(),
                s(r, "/status").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A posted CREDIT reward for an account, as `rewards_of` lists it.
pub fn credit_reward(external_id: &str, amount: &str) -> (String, String, String, String, String) {
    (
        external_id.to_owned(),
        "REWARD".to_owned(),
        "CREDIT".to_owned(),
        amount.to_owned(),
        "POSTED".to_owned(),
    )
}

/// Sends the same query `variables.len()` times at once (each with its own variables) and
/// returns the bodies in order.
pub async fn send_concurrently(app: &TestApp, token: &str, query: &str, variables: Vec<Value>) -> Vec<Value> {
    send_concurrently_across(app, std::slice::from_ref(&app.address), token, query, variables).await
}

/// Like `send_concurrently`, the requests dealt in turn to the servers at `addresses` (the
/// test's and others on its database), so that they race in the database and not only in one
/// instance.
pub async fn send_concurrently_across(
    app: &TestApp,
    addresses: &[String],
    token: &str,
    query: &str,
    variables: Vec<Value>,
) -> Vec<Value> {
    let tasks: Vec<_> = variables
        .into_iter()
        .zip(addresses.iter().cycle())
        .map(|(vars, address)| {
            let client = app.client.clone();
            let address = address.clone();
            let token = token.to_owned();
            let query = query.to_owned();
            tokio::spawn(async move { post_graphql(&client, &address, Some(&token), &query, vars).await.1 })
        })
        .collect();
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("request task panicked"))
        .collect()
}

/// A second server on the test's database, as another instance of the deployment is.
pub async fn another_instance(app: &TestApp) -> String {
    let state = AppState::connect(test_config(app.database_url.clone()))
        .await
        .expect("a second instance connects");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("local_addr"));
    let router = referral_server::build_app(state);
    tokio::spawn(async move { referral_server::serve(listener, router).await });
    address
}

/// An exact decimal string ("10.00", "-3.5") in millionths, for sums without floating point.
pub fn micros(text: &str) -> i64 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(fraction.len() <= 6 && !whole.is_empty(), "not a decimal: {text:?}");
    let whole: i64 = whole.parse().unwrap_or_else(|e| panic!("not a decimal {text:?}: {e}"));
    let fraction: i64 = format!("{fraction:0<6}")
        .parse()
        .unwrap_or_else(|e| panic!("not a decimal {text:?}: {e}"));
    let value = whole * 1_000_000 + fraction;
    if negative { -value } else { value }
}

impl TestApp {
    /// RewardRules as an admin.
    pub async fn rules(&self) -> Vec<Value> {
        let data = self
            .run_ok(Some(&self.admin()), "admin", "RewardRules", json!({}))
            .await;
        data["rewardRules"]
            .as_array()
            .unwrap_or_else(|| panic!("rewardRules is not a list: {data:#}"))
            .clone()
    }

    /// Program 3's rule, which a new installation is seeded with (the points-store preset).
    pub async fn seeded_rule(&self) -> Value {
        let rules = self.rules().await;
        let seeded: Vec<&Value> = rules.iter().filter(|r| r["name"] == SEEDED_RULE).collect();
        assert_eq!(seeded.len(), 1, "one seeded rule: {rules:#?}");
        seeded[0].clone()
    }

    /// CreateRewardRule as an admin; the whole response body.
    pub async fn create_rule_raw(&self, input: Value) -> Value {
        self.run(
            Some(&self.admin()),
            "admin",
            "CreateRewardRule",
            json!({ "input": input }),
        )
        .await
    }

    /// CreateRewardRule that must succeed; `createRewardRule`.
    pub async fn create_rule(&self, input: Value) -> Value {
        let body = self.create_rule_raw(input.clone()).await;
        data_of(&body, &format!("CreateRewardRule {input}"))["createRewardRule"].clone()
    }

    /// Creates a rule and returns its id.
    pub async fn create_rule_id(&self, input: Value) -> String {
        s(&self.create_rule(input).await, "/id").to_owned()
    }

    /// UpdateRewardRule as an admin; the whole response body.
    pub async fn update_rule_raw(&self, id: &str, input: Value) -> Value {
        self.run(
            Some(&self.admin()),
            "admin",
            "UpdateRewardRule",
            json!({ "id": id, "input": input }),
        )
        .await
    }

    /// UpdateRewardRule that must succeed; `updateRewardRule`.
    pub async fn update_rule(&self, id: &str, input: Value) -> Value {
        let body = self.update_rule_raw(id, input.clone()).await;
        data_of(&body, &format!("UpdateRewardRule {id} {input}"))["updateRewardRule"].clone()
    }

    /// Program 1 for postpaid newcomers: a PAYMENT_METHOD_VERIFIED rule for the referrer and
    /// one for the newcomer, limited to postpaid referees as the cloud-credit preset limits
    /// them. Returns their ids (referrer's, newcomer's).
    pub async fn postpaid_rules(&self, referrer: &str, referee: &str) -> (String, String) {
        let mut r = fixed_credit_rule(
            "Credit for the referrer: friend verified a payment method",
            "PAYMENT_METHOD_VERIFIED",
            "REFERRER",
            referrer,
        );
        r["billingScheme"] = json!("POSTPAID");
        let mut e = fixed_credit_rule(
            "Credit for the newcomer: payment method verified",
            "PAYMENT_METHOD_VERIFIED",
            "REFEREE",
            referee,
        );
        e["billingScheme"] = json!("POSTPAID");
        (self.create_rule_id(r).await, self.create_rule_id(e).await)
    }

    /// Program 1 for prepaid newcomers: a TOP_UP_TOTAL_REACHED rule for the referrer and one
    /// for the newcomer, limited to prepaid referees as the cloud-credit preset limits them.
    /// Returns their ids (referrer's, newcomer's).
    pub async fn prepaid_rules(&self, threshold: &str, referrer: &str, referee: &str) -> (String, String) {
        let mut r = fixed_credit_rule(
            "Credit for the referrer: friend topped up",
            "TOP_UP_TOTAL_REACHED",
            "REFERRER",
            referrer,
        );
        r["threshold"] = json!(threshold);
        r["billingScheme"] = json!("PREPAID");
        let mut e = fixed_credit_rule(
            "Credit for the newcomer: topped up",
            "TOP_UP_TOTAL_REACHED",
            "REFEREE",
            referee,
        );
        e["threshold"] = json!(threshold);
        e["billingScheme"] = json!("PREPAID");
        (self.create_rule_id(r).await, self.create_rule_id(e).await)
    }

    /// RegisterAccount with any input, as the billing system; `registerAccount`.
    pub async fn register_with(&self, input: Value) -> Value {
        let data = self
            .run_ok(
                Some(&self.service()),
                "integration",
                "RegisterAccount",
                json!({ "input": input }),
            )
            .await;
        data["registerAccount"].clone()
    }

    /// Registers an account with a billing scheme (`PREPAID` or `POSTPAID`).
    pub async fn register_scheme(
        &self,
        external_id: &str,
        display_name: &str,
        code: Option<&str>,
        scheme: &str,
    ) -> Value {
        let mut input = json!({
            "externalId": external_id,
            "displayName": display_name,
            "billingScheme": scheme,
        });
        if let Some(code) = code {
            input["referralCode"] = json!(code);
        }
        self.register_with(input).await
    }

    pub fn payment_verified_input(event_id: &str, external_id: &str) -> Value {
        json!({ "input": { "eventId": event_id, "externalId": external_id } })
    }

    /// RecordPaymentMethodVerified as the billing system; the whole response body.
    pub async fn verify_payment_raw(&self, event_id: &str, external_id: &str) -> Value {
        self.run(
            Some(&self.service()),
            "integration",
            "RecordPaymentMethodVerified",
            Self::payment_verified_input(event_id, external_id),
        )
        .await
    }

    /// RecordPaymentMethodVerified that must succeed; `recordPaymentMethodVerified`.
    pub async fn verify_payment(&self, event_id: &str, external_id: &str) -> Value {
        let body = self.verify_payment_raw(event_id, external_id).await;
        data_of(&body, &format!("RecordPaymentMethodVerified {event_id}"))["recordPaymentMethodVerified"].clone()
    }

    pub fn top_up_input(event_id: &str, external_id: &str, amount: &str, successful: Option<bool>) -> Value {
        let mut input = json!({ "eventId": event_id, "externalId": external_id, "amount": amount });
        if let Some(successful) = successful {
            input["successful"] = json!(successful);
        }
        json!({ "input": input })
    }

    /// RecordTopUp as the billing system; the whole response body.
    pub async fn top_up_raw(&self, event_id: &str, external_id: &str, amount: &str, successful: Option<bool>) -> Value {
        self.run(
            Some(&self.service()),
            "integration",
            "RecordTopUp",
            Self::top_up_input(event_id, external_id, amount, successful),
        )
        .await
    }

    /// RecordTopUp that must succeed; `recordTopUp`.
    pub async fn top_up(&self, event_id: &str, external_id: &str, amount: &str, successful: Option<bool>) -> Value {
        let body = self.top_up_raw(event_id, external_id, amount, successful).await;
        data_of(&body, &format!("RecordTopUp {event_id}"))["recordTopUp"].clone()
    }

    /// The customer's balance of one unit: (available, pending, lifetimeEarned).
    pub async fn balance(&self, external_id: &str, unit: &str) -> (String, String, String) {
        let query = format!(
            "query Balance {{ me {{ b: balance(unit: {unit}) {{ unit available pending lifetimeEarned }} }} }}"
        );
        let body = self.gql(Some(&self.customer(external_id)), &query, json!({})).await;
        let data = data_of(&body, &format!("the {unit} balance of {external_id}"));
        let balance = &data["me"]["b"];
        assert_eq!(balance["unit"], unit, "{data:#}");
        (
            s(balance, "/available").to_owned(),
            s(balance, "/pending").to_owned(),
            s(balance, "/lifetimeEarned").to_owned(),
        )
    }

    /// The customer's CREDIT balance: (available, pending, lifetimeEarned).
    pub async fn credit(&self, external_id: &str) -> (String, String, String) {
        self.balance(external_id, "CREDIT").await
    }

    pub async fn available_credit(&self, external_id: &str) -> String {
        self.credit(external_id).await.0
    }

    pub fn apply_credit_input(invoice_id: &str, external_id: &str, amount: &str) -> Value {
        json!({ "input": { "invoiceId": invoice_id, "externalId": external_id, "amount": amount } })
    }

    /// ApplyCredit as the billing system; the whole response body.
    pub async fn apply_credit_raw(&self, invoice_id: &str, external_id: &str, amount: &str) -> Value {
        self.run(
            Some(&self.service()),
            "integration",
            "ApplyCredit",
            Self::apply_credit_input(invoice_id, external_id, amount),
        )
        .await
    }

    /// ApplyCredit that must succeed; `applyCredit`.
    pub async fn apply_credit(&self, invoice_id: &str, external_id: &str, amount: &str) -> Value {
        let body = self.apply_credit_raw(invoice_id, external_id, amount).await;
        data_of(&body, &format!("ApplyCredit {invoice_id}"))["applyCredit"].clone()
    }

    /// Accounts as an admin; `accounts`.
    pub async fn accounts(&self, search: Option<&str>, first: i64, after: Option<&str>) -> Value {
        let data = self
            .run_ok(
                Some(&self.admin()),
                "admin",
                "Accounts",
                json!({ "search": search, "first": first, "after": after }),
            )
            .await;
        data["accounts"].clone()
    }

    /// AccountDetail as an admin; `account` (null when unknown).
    pub async fn account_detail(&self, id: &str) -> Value {
        let data = self
            .run_ok(Some(&self.admin()), "admin", "AccountDetail", json!({ "id": id }))
            .await;
        data["account"].clone()
    }

    /// SetReferralCode as an admin; the whole response body.
    pub async fn set_referral_code_raw(&self, account_id: &str, code: &str) -> Value {
        self.run(
            Some(&self.admin()),
            "admin",
            "SetReferralCode",
            json!({ "input": { "accountId": account_id, "code": code } }),
        )
        .await
    }

    /// SetReferralCode that must succeed; `setReferralCode`.
    pub async fn set_referral_code(&self, account_id: &str, code: &str) -> Value {
        let body = self.set_referral_code_raw(account_id, code).await;
        data_of(&body, &format!("SetReferralCode {account_id} {code}"))["setReferralCode"].clone()
    }

    /// AuditLog as an admin; `auditLog`.
    pub async fn audit_log(&self, first: i64, after: Option<&str>) -> Value {
        let data = self
            .run_ok(
                Some(&self.admin()),
                "admin",
                "AuditLog",
                json!({ "first": first, "after": after }),
            )
            .await;
        data["auditLog"].clone()
    }

    /// The customer's reward history (HistoryPage, up to 100 entries): its nodes.
    pub async fn history(&self, external_id: &str) -> Vec<Value> {
        let data = self
            .run_ok(
                Some(&self.customer(external_id)),
                "customer",
                "HistoryPage",
                json!({ "first": 100 }),
            )
            .await;
        nodes(&data["me"]["rewardHistory"])
    }

    /// The referrals an account made, as its Dashboard shows them: the friends' nodes.
    pub async fn friends(&self, external_id: &str) -> Vec<Value> {
        nodes(&self.dashboard(external_id, 100).await["me"]["referredFriends"])
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the database directly, for what the API does not show

impl TestApp {
    /// One integer from SQL that runs unchanged on SQLite and PostgreSQL.
    pub async fn sql_i64(&self, sql: &str) -> i64 {
        let db = &self.state.db;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index::<i64>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.sql_i64(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
            .await
    }

    /// Sum of an account's ledger entries of one unit, in millionths.
    pub async fn ledger_sum(&self, external_id: &str, unit: &str) -> i64 {
        self.sql_i64(&format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries \
             WHERE unit = '{unit}' AND account_id = (SELECT id FROM accounts WHERE external_id = '{}')",
            external_id.replace('\'', "''")
        ))
        .await
    }

    /// The balance row's `available` of one account and unit, in millionths.
    pub async fn balance_available(&self, external_id: &str, unit: &str) -> i64 {
        self.sql_i64(&format!(
            "SELECT CAST(available AS BIGINT) FROM balances \
             WHERE unit = '{unit}' AND account_id = (SELECT id FROM accounts WHERE external_id = '{}')",
            external_id.replace('\'', "''")
        ))
        .await
    }

    /// Row counts of every domain table and the sum of all balances: "nothing changed" is
    /// this snapshot being equal before and after. (The audit log is left out: it records
    /// only changes that happened.)
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for table in [
            "accounts",
            "referrals",
            "providers",
            "products",
            "reward_rules",
            "events",
            "claims",
            "ledger_entries",
            "lot_allocations",
            "balances",
            "outbox_events",
            "webhook_endpoints",
            "webhook_deliveries",
        ] {
            out.push((table.to_owned(), self.count(table).await));
        }
        out.push((
            "sum(balances.available)".to_owned(),
            self.sql_i64("SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM balances")
                .await,
        ));
        out.push((
            "sum(balances.lifetime_earned)".to_owned(),
            self.sql_i64("SELECT CAST(COALESCE(SUM(lifetime_earned), 0) AS BIGINT) FROM balances")
                .await,
        ));
        out.push((
            "sum(balances.pending)".to_owned(),
            self.sql_i64("SELECT CAST(COALESCE(SUM(pending), 0) AS BIGINT) FROM balances")
                .await,
        ));
        out.push((
            "disqualified accounts".to_owned(),
            self.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM accounts WHERE disqualified_at IS NOT NULL")
                .await,
        ));
        out.push((
            "pending claims".to_owned(),
            self.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM claims WHERE status = 'PENDING'")
                .await,
        ));
        out
    }
}

/// A DateTime output as an instant (RFC 3339; `Z` and `+00:00` are the same).
pub fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a DateTime string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Every operation of `operations/{file}.graphql`, in the file's order: its kind
/// (`query`, `mutation`) and name. Fragments are left out.
pub fn contract_operations(file: &str) -> Vec<(String, String)> {
    let path = contract_dir().join(format!("{file}.graphql"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
    split_definitions(&source)
        .into_iter()
        .filter(|d| d.kind != "fragment")
        .map(|d| (d.kind, d.name))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Invoices, and reading an event's decisions

/// `base` with some fields changed.
pub fn with(base: &Value, changes: Value) -> Value {
    let mut input = base.clone();
    for (key, value) in changes.as_object().expect("changes") {
        input[key] = value.clone();
    }
    input
}

/// RecordInvoicePaid's variables: the lines as (category, amount), and the payment split when
/// given (left out: all of it in cash).
pub fn invoice_vars(
    event_id: &str,
    external_id: &str,
    lines: &[(&str, &str)],
    cash: Option<&str>,
    credit: Option<&str>,
) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(category, amount)| json!({ "category": category, "amount": amount }))
        .collect();
    let mut input = json!({ "eventId": event_id, "externalId": external_id, "lines": lines });
    if let Some(cash) = cash {
        input["paidInCash"] = json!(cash);
    }
    if let Some(credit) = credit {
        input["paidWithCredit"] = json!(credit);
    }
    json!({ "input": input })
}

/// RecordInvoicePaid that must succeed, as the billing system; `recordInvoicePaid`.
pub async fn invoice(
    app: &TestApp,
    event_id: &str,
    external_id: &str,
    lines: &[(&str, &str)],
    cash: Option<&str>,
    credit: Option<&str>,
) -> Value {
    let vars = invoice_vars(event_id, external_id, lines, cash, credit);
    simulated_then_sent(app, "invoicePaid", "RecordInvoicePaid", vars).await
}

/// What a simulation and a real event's answer have in common, comparable: (rule name,
/// outcome, reason) of each decision and (owner, kind, unit, amount, status) of each entry.
pub fn comparable(payload: &Value) -> Value {
    let decisions: Vec<Value> = payload["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            let name = d.get("ruleName").unwrap_or(&d["rule"]["name"]);
            json!([name, d["outcome"], d["reason"]])
        })
        .collect();
    let entries: Vec<Value> = payload["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .map(|e| {
            json!([
                e["account"]["externalId"],
                e["kind"],
                e["unit"],
                e["amount"],
                e["status"]
            ])
        })
        .collect();
    json!({ "decisions": decisions, "entries": entries })
}

/// Sends a billing event that must succeed, after asking the simulator what it will do: the
/// event's answer must be what the simulator said, and the simulation must have written
/// nothing. Every test that sends invoices and refunds through the helpers below checks the
/// simulator on its own figures this way. `field` is the event's field of
/// `SimulatedEventInput`; the answer is the mutation's payload.
pub async fn simulated_then_sent(app: &TestApp, field: &str, operation: &str, vars: Value) -> Value {
    let before = app.snapshot().await;
    let body = app
        .run(
            Some(&app.admin()),
            "admin",
            "SimulateEvent",
            json!({ "event": { field: vars["input"].clone() }, "rules": null }),
        )
        .await;
    let simulated = data_of(&body, &format!("SimulateEvent before {operation}"))["simulateEvent"].clone();
    assert_eq!(
        app.snapshot().await,
        before,
        "a simulation writes nothing: {simulated:#}"
    );
    let body = app.run(Some(&app.service()), "integration", operation, vars).await;
    let data = data_of(&body, operation);
    let real = data
        .as_object()
        .expect("one field")
        .values()
        .next()
        .expect("payload")
        .clone();
    assert_eq!(
        comparable(&simulated),
        comparable(&real),
        "{operation}: the simulator said otherwise than the event did\nsimulated: {simulated:#}\nreal: {real:#}"
    );
    real
}

/// An invoice of one line, paid in cash.
pub async fn paid(app: &TestApp, event_id: &str, external_id: &str, category: &str, amount: &str) -> Value {
    invoice(app, event_id, external_id, &[(category, amount)], None, None).await
}

/// The outcome of the rule's decision in an event's (or a simulation's) answer.
pub fn outcome<'a>(payload: &'a Value, rule_id: &str) -> &'a str {
    s(decision_for(payload, rule_id), "/outcome")
}

/// The reason of the rule's decision in an event's (or a simulation's) answer.
pub fn reason<'a>(payload: &'a Value, rule_id: &str) -> &'a str {
    s(decision_for(payload, rule_id), "/reason")
}

/// The account's status as an admin reads it (`ACTIVE`, `CLOSED`).
pub async fn account_status(app: &TestApp, external_id: &str) -> String {
    let accounts = app.accounts(Some(external_id), 1, None).await;
    let id = s(&nodes(&accounts)[0], "/id").to_owned();
    let body = app
        .gql(
            Some(&app.admin()),
            "query($id: ID!) { account(id: $id) { accountStatus } }",
            json!({ "id": id }),
        )
        .await;
    s(&data_of(&body, "accountStatus")["account"], "/accountStatus").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Refunds

/// RecordRefund's variables.
pub fn refund_vars(event_id: &str, external_id: &str, refund_of: &str, amount: Option<&str>) -> Value {
    let mut input = json!({ "eventId": event_id, "externalId": external_id, "refundOf": refund_of });
    if let Some(amount) = amount {
        input["amount"] = json!(amount);
    }
    json!({ "input": input })
}

/// RecordRefund as the billing system; the whole response body.
pub async fn refund_raw(
    app: &TestApp,
    event_id: &str,
    external_id: &str,
    refund_of: &str,
    amount: Option<&str>,
) -> Value {
    app.run(
        Some(&app.service()),
        "integration",
        "RecordRefund",
        refund_vars(event_id, external_id, refund_of, amount),
    )
    .await
}

/// RecordRefund that must succeed; `recordRefund`.
pub async fn refund(app: &TestApp, event_id: &str, external_id: &str, refund_of: &str, amount: Option<&str>) -> Value {
    let vars = refund_vars(event_id, external_id, refund_of, amount);
    simulated_then_sent(app, "refund", "RecordRefund", vars).await
}

/// Whether the test's server runs on PostgreSQL.
pub fn postgres(app: &TestApp) -> bool {
    app.state.db.get_database_backend() == DbBackend::Postgres
}

/// Waits until the server has run `count` statements since it started (10 s at most).
pub async fn until_statements(app: &TestApp, count: u64, what: &str) {
    let reached = async {
        while app.state.statements.get() < count {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reached)
        .await
        .expect(what);
}

/// A request to the test's server, sent at once, answered when it ends.
pub fn spawn_request(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (client, address, token, query) = (
        app.client.clone(),
        app.address.clone(),
        token.to_owned(),
        query.to_owned(),
    );
    tokio::spawn(async move { post_graphql(&client, &address, Some(&token), &query, variables).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_operations_come_with_their_fragments() {
        let history = contract_op("customer", "HistoryPage");
        assert!(history.starts_with("query HistoryPage("), "{history}");
        assert!(history.contains("fragment HistoryEntry on LedgerEntry"), "{history}");
        assert!(!history.contains("query Dashboard"), "{history}");
        let purchase = contract_op("integration", "RecordPurchase");
        assert!(
            purchase.contains("fragment EventResult on RecordEventPayload"),
            "{purchase}"
        );
        assert!(!purchase.contains("RecordRefund"), "{purchase}");
        let register = contract_op("integration", "RegisterAccount");
        assert!(!register.contains("fragment"), "{register}");
        assert_eq!(register.matches('{').count(), register.matches('}').count());
    }

    #[test]
    fn unknown_ids_keep_their_prefix() {
        assert_eq!(unknown_id_like("prv_12"), "prv_987654");
        assert_eq!(unknown_id_like("7"), "987654");
    }
}
