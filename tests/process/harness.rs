//! The harness: a fresh database per test (a migrated copy, or empty for the tests of how servers
//! migrate), server processes of the real binary on free ports (killed when the test ends, even
//! on panic), tokens minted by the binary's `token` command, `referral-server check`, a GraphQL
//! client that sends the contract's operations by name, and direct SQL for what the API does not
//! show.

#![allow(dead_code)]

use crate::common::{
    TempDir, fresh_postgres_database, migrated_postgres_database, migrated_sqlite_database, sqlite_url, temp_dir,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_referral-server");
/// The HS256 key every process of a test shares (40 bytes).
pub const JWT_SECRET: &str = "process-tests-secret-0123456789abcdefghi";
const _: () = assert!(JWT_SECRET.len() == 40);

/// The settings a developer's environment might hold and that would change what the binary does:
/// removed from every child, then the test's own values are set.
const CONFIG_VARS: &[&str] = &[
    "DATABASE_URL",
    "BIND_ADDR",
    "JWT_SECRET",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "PUBLIC_URL",
    "INTROSPECTION",
    "REQUEST_TIMEOUT",
    "RUST_LOG",
    "SANDBOX",
    "SETTLE_INTERVAL",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_POLL_INTERVAL",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
];

const HEALTH_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A temporary directory and a fresh database

/// One test's database, and the directory its processes run in.
pub struct TestDb {
    pub url: String,
    pub postgres: bool,
    pub dir: TempDir,
}

impl TestDb {
    /// A fresh, migrated database: `rs_test_<random>` on `TEST_DATABASE_URL`'s PostgreSQL server
    /// when it is set, else a SQLite file in a new temporary directory; either way a copy of one
    /// migrated once per run (`tests/common`). The servers' own migrations find nothing to do.
    pub async fn fresh() -> TestDb {
        // The SQLite file, the servers' logs and their working directory.
        let dir = temp_dir("rs-process-");
        match migrated_postgres_database().await {
            Some(url) => TestDb {
                url,
                postgres: true,
                dir,
            },
            None => {
                let url = migrated_sqlite_database(&dir.path().join("test.db")).await;
                TestDb {
                    url,
                    postgres: false,
                    dir,
                }
            }
        }
    }

    /// A new database with nothing in it, for the tests of how servers migrate: the first
    /// server process does that.
    pub async fn empty() -> TestDb {
        let dir = temp_dir("rs-process-");
        match fresh_postgres_database().await {
            Some(url) => TestDb {
                url,
                postgres: true,
                dir,
            },
            None => {
                let url = sqlite_url(&dir.path().join("test.db"));
                TestDb {
                    url,
                    postgres: false,
                    dir,
                }
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.postgres { "PostgreSQL" } else { "SQLite" }
    }

    /// A connection of the test's own, for SQL the API does not offer.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    /// The binary with this database and the test's key, run in the test's directory (so that it
    /// never writes `./.jwt-secret` or `./referral-server.db` anywhere else).
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        for var in CONFIG_VARS {
            command.env_remove(var);
        }
        command
            .env("DATABASE_URL", &self.url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "warn")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// `referral-server token --role ROLE --sub SUB`: the token it prints.
    pub fn token(&self, role: &str, sub: &str) -> String {
        let output = self
            .command()
            .args(["token", "--role", role, "--sub", sub])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {BIN} token: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success() && stdout.split('.').count() == 3,
            "`token --role {role} --sub {sub}` failed: {}; stdout {stdout:?}; stderr {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs `referral-server check` on the database: it must exit 0 and report no FAIL. Returns
    /// what it printed.
    pub fn assert_check_passes(&self) -> String {
        let output = self
            .command()
            .arg("check")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {BIN} check: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "`referral-server check` exited with {} on {}:\n{stdout}\n{stderr}",
            output.status,
            self.backend()
        );
        assert!(
            !stdout.contains("FAIL"),
            "`referral-server check` reports a violation:\n{stdout}"
        );
        let ok_lines = stdout.lines().filter(|l| l.starts_with("ok ")).count();
        assert!(ok_lines >= 9, "`referral-server check` checked too little:\n{stdout}");
        stdout
    }
}

/// One integer from SQL that runs unchanged on SQLite and PostgreSQL.
pub async fn sql_i64(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get_by_index::<i64>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn count(db: &DatabaseConnection, table_and_filter: &str) -> i64 {
    sql_i64(db, &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table_and_filter}")).await
}

/// The account's balance row of one unit: (available, lifetime earned), in millionths.
pub async fn balance_row(db: &DatabaseConnection, external_id: &str, unit: &str) -> (i64, i64) {
    let account = format!(
        "(SELECT id FROM accounts WHERE external_id = '{}')",
        external_id.replace('\'', "''")
    );
    let available = sql_i64(
        db,
        &format!("SELECT CAST(available AS BIGINT) FROM balances WHERE unit = '{unit}' AND account_id = {account}"),
    )
    .await;
    let lifetime = sql_i64(
        db,
        &format!(
            "SELECT CAST(lifetime_earned AS BIGINT) FROM balances WHERE unit = '{unit}' AND account_id = {account}"
        ),
    )
    .await;
    (available, lifetime)
}

// ---------------------------------------------------------------------------------------------
// Server processes

/// A running `referral-server serve`; killed (SIGKILL) and reaped on drop, and its log printed
/// when the test is failing.
pub struct Server {
    pub name: String,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A port that was free a moment ago: bound on 127.0.0.1:0 and released.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl Server {
    /// Starts a server on the database and waits until `GET /healthz` answers 200 (at most
    /// 20 s). A port taken between choosing and binding it is retried with another one.
    pub async fn start(db: &TestDb, name: &str) -> Server {
        Server::start_together(db, &[name]).await.pop().expect("one server")
    }

    /// Starts servers at the same moment (all processes first, then waits for each), e.g. to
    /// see them race to migrate a fresh database.
    pub async fn start_together(db: &TestDb, names: &[&str]) -> Vec<Server> {
        let mut servers: Vec<Server> = names.iter().map(|name| Server::spawn(db, name, 1, &[])).collect();
        for server in &mut servers {
            let mut attempt = 1;
            while !server.wait_healthy(attempt < 3).await {
                attempt += 1;
                *server = Server::spawn(db, &server.name.clone(), attempt, &[]);
            }
        }
        servers
    }

    /// Starts a server with more environment variables (e.g. `REQUEST_TIMEOUT`, `RUST_LOG`).
    pub async fn start_with_env(db: &TestDb, name: &str, env: &[(&str, &str)]) -> Server {
        let mut attempt = 1;
        let mut server = Server::spawn(db, name, attempt, env);
        while !server.wait_healthy(attempt < 3).await {
            attempt += 1;
            server = Server::spawn(db, name, attempt, env);
        }
        server
    }

    fn spawn(db: &TestDb, name: &str, attempt: u32, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = db.dir.path().join(format!("{name}-{attempt}.log"));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {log:?}: {e}"));
        let child = db
            .command()
            .arg("serve")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Server {
            name: name.to_owned(),
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            log,
        }
    }

    /// Waits for `GET /healthz` to answer 200. False when the port was taken meanwhile and
    /// `may_retry` (the caller starts it again on another port); a panic on any other failure.
    async fn wait_healthy(&mut self, may_retry: bool) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client");
        let deadline = Instant::now() + HEALTH_DEADLINE;
        loop {
            if let Some(status) = self.try_status() {
                let log = self.log();
                if log.contains("binding") && may_retry {
                    return false;
                }
                panic!("server {} exited at start with {status}; its log:\n{log}", self.name);
            }
            let health = client.get(format!("{}/healthz", self.base)).send().await;
            if let Ok(response) = health
                && response.status() == reqwest::StatusCode::OK
            {
                // Ours answered, not another process that took the port: ours still runs.
                if self.try_status().is_none() {
                    return true;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "server {} did not answer GET /healthz with 200 within {HEALTH_DEADLINE:?}; its log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server was reaped").id()
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }

    /// SIGKILL, then reap; the exit status.
    pub fn sigkill(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the server was reaped");
        child
            .kill()
            .unwrap_or_else(|e| panic!("cannot SIGKILL {}: {e}", self.name));
        child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }

    /// Sends SIGTERM (with `kill`: the workspace forbids unsafe code, so no `libc::kill`).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- log of server {} (last {} lines) ----", self.name, tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Whether a new TCP connection to the port is refused.
pub fn connection_refused(port: u16) -> bool {
    match std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

// ---------------------------------------------------------------------------------------------
// GraphQL over HTTP

/// A client for the tests' requests; `pooled: false` opens a connection per request.
pub fn client(pooled: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
    if !pooled {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().expect("reqwest client")
}

/// One GraphQL POST: the HTTP status and the body (JSON, or the raw text as a JSON string), or
/// the transport error (refused, reset, cut off) as text.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: &Value,
) -> Result<(u16, Value), String> {
    let response = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Sends an operation that must succeed; its `data`.
pub async fn run_ok(client: &reqwest::Client, base: &str, token: &str, query: &str, variables: Value) -> Value {
    let (status, body) = post(client, base, token, query, &variables)
        .await
        .unwrap_or_else(|e| panic!("POST {base}/graphql failed: {e}"));
    assert_eq!(status, 200, "HTTP {status}: {body:#}");
    data_of(&body, &format!("{} with {variables}", first_line(query)))
}

fn first_line(query: &str) -> &str {
    query.lines().next().unwrap_or_default()
}

/// `data` of a response that must have no errors.
pub fn data_of(body: &Value, what: &str) -> Value {
    let errors = body.get("errors");
    assert!(
        errors.is_none() || errors == Some(&Value::Null) || errors == Some(&json!([])),
        "{what}: expected no errors, got: {body:#}"
    );
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    assert!(data.is_object(), "{what}: expected data, got: {body:#}");
    data
}

/// Whether a response is a success: data with the field, and no errors.
pub fn succeeded(body: &Value, field: &str) -> bool {
    error_codes(body).is_empty()
        && body.get("errors").is_none_or(|e| e.is_null() || e == &json!([]))
        && body.pointer(&format!("/data/{field}")).is_some_and(Value::is_object)
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

/// Whether a response is exactly one INSUFFICIENT_BALANCE error and no data.
pub fn is_insufficient_balance(body: &Value) -> bool {
    error_codes(body) == ["INSUFFICIENT_BALANCE"]
        && match body.get("data") {
            None | Some(Value::Null) => true,
            Some(Value::Object(fields)) => fields.values().all(Value::is_null),
            Some(_) => false,
        }
}

/// The string at a JSON pointer, or a panic that shows the value.
pub fn s<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
}

// ---------------------------------------------------------------------------------------------
// The contract's documents

/// The text of operation `name` of `operations/{file}.graphql` with the fragments it
/// spreads, transitively (a whole file would not do: it holds operations of features the
/// server does not have yet).
pub fn contract_op(file: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("operations")
        .join(format!("{file}.graphql"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
    // Comments out (the operations hold no strings, so `#` always starts one).
    let source: String = source
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = vec![
        definition(&source, &["query", "mutation"], name).unwrap_or_else(|| panic!("no operation {name} in {path:?}")),
    ];
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < out.len() {
        for fragment in fragment_spreads(&out[i]) {
            if !seen.contains(&fragment) {
                out.push(
                    definition(&source, &["fragment"], &fragment)
                        .unwrap_or_else(|| panic!("{name} spreads {fragment}, not in {path:?}")),
                );
                seen.push(fragment);
            }
        }
        i += 1;
    }
    out.join("\n\n")
}

/// The definition `{kind} {name}` at the start of a line, up to its closing brace.
fn definition(source: &str, kinds: &[&str], name: &str) -> Option<String> {
    for kind in kinds {
        let header = format!("{kind} {name}");
        let mut from = 0;
        while let Some(pos) = source[from..].find(&header).map(|p| p + from) {
            from = pos + header.len();
            let at_line_start = pos == 0 || source[..pos].ends_with('\n');
            let ends_name = source[from..]
                .chars()
                .next()
                .is_some_and(|c| c == '(' || c == '{' || c.is_whitespace());
            if !(at_line_start && ends_name) {
                continue;
            }
            let mut depth = 0usize;
            for (offset, c) in source[pos..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(source[pos..=pos + offset].to_owned());
                        }
                    }
                    _ => {}
                }
            }
            panic!("unbalanced braces after {header:?}");
        }
    }
    None
}

/// The fragments a definition spreads (`...Name`, not `... on Type`).
fn fragment_spreads(text: &str) -> Vec<String> {
    text.split("...")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty() && name != "on")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The program-3 setup every test uses, through a server

pub const PROVIDER: &str = "proxyco";
pub const RESIDENTIAL: &str = "resi-monthly";
pub const RESIDENTIAL_LITE: &str = "resi-lite";
pub const DATACENTER: &str = "dc-monthly";

/// A server's address with the admin and service tokens and a client.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub admin: String,
    pub service: String,
}

impl Api {
    pub fn new(db: &TestDb, server: &Server) -> Api {
        Api {
            client: client(true),
            base: server.base.clone(),
            admin: db.token("admin", "admin-1"),
            service: db.token("service", "billing"),
        }
    }

    /// The catalog: provider `proxyco` claimed at `redemption_rate` points per GB; residential
    /// products at 15 and 5 points per GB bought, a datacenter one at 5. The provider's id.
    pub async fn setup_catalog(&self, redemption_rate: &str) -> String {
        let data = run_ok(
            &self.client,
            &self.base,
            &self.admin,
            &contract_op("admin", "UpsertProvider"),
            json!({ "input": { "key": PROVIDER, "name": "ProxyCo", "redemptionRate": redemption_rate } }),
        )
        .await;
        assert_eq!(
            data["upsertProvider"]["redemptionRate"],
            format!("{redemption_rate}.00"),
            "{data:#}"
        );
        for (key, category, rate) in [
            (RESIDENTIAL, "residential", "15"),
            (RESIDENTIAL_LITE, "residential", "5"),
            (DATACENTER, "datacenter", "5"),
        ] {
            let data = run_ok(
                &self.client,
                &self.base,
                &self.admin,
                &contract_op("admin", "UpsertProduct"),
                json!({ "input": { "key": key, "providerKey": PROVIDER, "name": key, "category": category, "productRate": rate } }),
            )
            .await;
            assert_eq!(data["upsertProduct"]["productRate"], format!("{rate}.00"), "{data:#}");
        }
        s(&data, "/upsertProvider/id").to_owned()
    }

    /// RegisterAccount as the billing system; `registerAccount`.
    pub async fn register(&self, external_id: &str, code: Option<&str>) -> Value {
        let data = run_ok(
            &self.client,
            &self.base,
            &self.service,
            &contract_op("integration", "RegisterAccount"),
            register_vars(external_id, code),
        )
        .await;
        data["registerAccount"].clone()
    }

    /// Registers an account; its referral code.
    pub async fn register_code(&self, external_id: &str, code: Option<&str>) -> String {
        let registered = self.register(external_id, code).await;
        if let Some(code) = code {
            assert_eq!(registered["referral"]["status"], "PENDING", "{registered:#}");
            assert_eq!(
                registered["referral"]["referrer"]["referralCode"], code,
                "{registered:#}"
            );
        }
        s(&registered, "/account/referralCode").to_owned()
    }

    /// RecordPurchase as the billing system that must succeed; `recordPurchase`.
    pub async fn purchase(&self, event_id: &str, external_id: &str, product: &str, gb: &str) -> Value {
        let data = run_ok(
            &self.client,
            &self.base,
            &self.service,
            &contract_op("integration", "RecordPurchase"),
            purchase_vars(event_id, external_id, product, gb),
        )
        .await;
        data["recordPurchase"].clone()
    }
}

pub fn register_vars(external_id: &str, code: Option<&str>) -> Value {
    let mut input = json!({ "externalId": external_id, "displayName": format!("Name {external_id}") });
    if let Some(code) = code {
        input["referralCode"] = json!(code);
    }
    json!({ "input": input })
}

pub fn purchase_vars(event_id: &str, external_id: &str, product: &str, gb: &str) -> Value {
    json!({ "input": { "eventId": event_id, "externalId": external_id, "productKey": product, "quantityGb": gb } })
}

pub fn claim_vars(provider_id: &str, key: &str) -> Value {
    json!({ "input": { "providerId": provider_id, "idempotencyKey": key } })
}

/// The customer's POINTS balance as its Dashboard shows it: (available, pending, lifetimeEarned).
pub async fn points(client: &reqwest::Client, base: &str, customer_token: &str) -> (String, String, String) {
    let data = run_ok(
        client,
        base,
        customer_token,
        &contract_op("customer", "Dashboard"),
        json!({ "first": 1 }),
    )
    .await;
    let points = &data["me"]["points"];
    assert_eq!(points["unit"], "POINTS", "{data:#}");
    (
        s(points, "/available").to_owned(),
        s(points, "/pending").to_owned(),
        s(points, "/lifetimeEarned").to_owned(),
    )
}

/// The rewards of an event's payload as (externalId, kind, unit, amount, status).
pub fn rewards_of(payload: &Value) -> Vec<(String, String, String, String, String)> {
    payload["rewards"]
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
        .collect()
}

pub fn points_reward(external_id: &str, amount: &str) -> (String, String, String, String, String) {
    (
        external_id.to_owned(),
        "REWARD".to_owned(),
        "POINTS".to_owned(),
        amount.to_owned(),
        "POSTED".to_owned(),
    )
}

/// Millionths as the API writes points: 150_000_000 → "150.00" (two decimals at least).
pub fn decimal(micros: i64) -> String {
    assert!(
        micros >= 0 && micros % 10_000 == 0,
        "not a two-decimal amount: {micros}"
    );
    format!("{}.{:02}", micros / 1_000_000, (micros % 1_000_000) / 10_000)
}

/// The contract's test of the harness itself.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_operations_come_with_their_fragments() {
        let purchase = contract_op("integration", "RecordPurchase");
        assert!(purchase.starts_with("mutation RecordPurchase("), "{purchase}");
        assert!(
            purchase.contains("fragment EventResult on RecordEventPayload"),
            "{purchase}"
        );
        assert!(!purchase.contains("RecordRefund"), "{purchase}");
        let dashboard = contract_op("customer", "Dashboard");
        assert!(
            dashboard.contains("fragment HistoryEntry on LedgerEntry"),
            "{dashboard}"
        );
        assert_eq!(dashboard.matches('{').count(), dashboard.matches('}').count());
        let register = contract_op("integration", "RegisterAccount");
        assert!(!register.contains("fragment"), "{register}");
    }

    #[test]
    fn decimals_are_written_like_the_api() {
        assert_eq!(decimal(150_000_000), "150.00");
        assert_eq!(decimal(5_000_000), "5.00");
        assert_eq!(decimal(0), "0.00");
    }
}
