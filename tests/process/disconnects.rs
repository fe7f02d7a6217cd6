//! Clients that hang up mid-request, and a request timeout that fires mid-request, must leave
//! nothing behind: 2,000 claims and purchases sent over raw TCP whose clients close at random
//! moments (after the whole request, in the middle of its body, or after reading the answer),
//! to a server whose `REQUEST_TIMEOUT` is a few milliseconds. Then: no pooled connection is
//! left inside a transaction (PostgreSQL shows each one's state), every pooled connection
//! answers, neither the server's log nor PostgreSQL's shows a transaction begun inside another
//! one or an aborted one, and `referral-server check` passes.

use crate::harness::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: usize = 2_000;
const REFEREES: usize = 200;
const CLIENTS: usize = 48;
/// Plain reads after the storm, a few at a time: the pool hands out its idle connections
/// oldest first, so a Dashboard's several statements each, 48 times over, pass through every
/// pooled connection (16 on PostgreSQL, 8 on SQLite) many times.
const READS: usize = 4;
const READ_ROUNDS: usize = 12;
/// What a cut-off request must never leave in a log.
const NESTED: &str = "already a transaction in progress";
const ABORTED: &str = "current transaction is aborted";

fn referee(i: usize) -> String {
    format!("dc-referee-{i:03}")
}

/// How a client treats one request.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Sends the whole request, waits 0 to 3 ms, closes (FIN, or RST when `reset`).
    AfterSending { wait_us: u64, reset: bool },
    /// Sends the headers and part of the body, then closes.
    MidBody,
    /// Sends the whole request and reads the answer (which may be the server's 408).
    Reads,
}

/// One HTTP/1.1 request as bytes.
fn http_request(port: u16, token: &str, query: &str, variables: &Value) -> (Vec<u8>, usize) {
    let body = serde_json::to_vec(&json!({ "query": query, "variables": variables })).expect("json");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n\
         accept: application/json\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    let head_len = head.len();
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    (bytes, head_len)
}

/// Sends one request as `cut` says. For `Reads`: the status and body (None when the connection
/// failed, which the test tolerates: the server may be busy).
async fn send(port: u16, request: &[u8], head_len: usize, cut: Cut) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    match cut {
        Cut::AfterSending { wait_us, reset } => {
            stream.write_all(request).await.ok()?;
            tokio::time::sleep(Duration::from_micros(wait_us)).await;
            if reset {
                // SO_LINGER 0: the close sends RST instead of FIN.
                let _ = stream.set_zero_linger();
            }
            drop(stream);
            None
        }
        Cut::MidBody => {
            let cut_at = head_len + (request.len() - head_len) / 2;
            stream.write_all(&request[..cut_at]).await.ok()?;
            drop(stream);
            None
        }
        Cut::Reads => {
            stream.write_all(request).await.ok()?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&answer).into_owned();
            let status = text.split(' ').nth(1)?.parse().ok()?;
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            Some((status, body))
        }
    }
}

/// The PIDs of the server processes PostgreSQL runs for this database's connections, and
/// (for the few not idle) their states, other than the asking connection's.
async fn backends(db: &DatabaseConnection) -> Vec<(i32, String)> {
    let sql = "SELECT pid, COALESCE(state, '') FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid()";
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| {
            (
                row.try_get_by_index::<i32>(0).expect("pid"),
                row.try_get_by_index::<String>(1).expect("state"),
            )
        })
        .collect()
}

/// PostgreSQL's own log files, if this machine has them where Debian puts them and they are
/// readable: (path, length now).
fn postgres_logs() -> Vec<(std::path::PathBuf, u64)> {
    let Ok(dir) = std::fs::read_dir("/var/log/postgresql") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .filter(|path| std::fs::File::open(path).is_ok())
        .filter_map(|path| std::fs::metadata(&path).ok().map(|m| (path, m.len())))
        .collect()
}

/// What the PostgreSQL logs gained since `marks`, line by line.
fn postgres_log_lines_since(marks: &[(std::path::PathBuf, u64)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, from) in marks {
        let Ok(bytes) = std::fs::read(path) else { continue };
        let from = (*from as usize).min(bytes.len());
        lines.extend(String::from_utf8_lossy(&bytes[from..]).lines().map(str::to_owned));
    }
    lines
}

/// The `[pid]` of a line of PostgreSQL's default log format (`%m [%p] `).
fn pid_of_log_line(line: &str) -> Option<i32> {
    let start = line.find('[')? + 1;
    let end = start + line[start..].find(']')?;
    line[start..end].parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_hang_up_leave_nothing_behind() {
    let started = Instant::now();
    let db = TestDb::fresh().await;
    let pg_marks = if db.postgres { postgres_logs() } else { Vec::new() };

    // Setup through a server with the default timeout: the catalog (a claim costs 15 points),
    // the claimant with 1,500 points (a friend's first purchase of 100 GB), and referees whose
    // first purchases during the storm pay the claimant more.
    let setup = Server::start(&db, "setup").await;
    let api = Api::new(&db, &setup);
    let provider_id = api.setup_catalog("15").await;
    let code = api.register_code("dc-claimant", None).await;
    api.register_code("dc-friend", Some(&code)).await;
    let funded = api.purchase("dc-fund", "dc-friend", RESIDENTIAL, "100").await;
    assert_eq!(
        rewards_of(&funded),
        vec![points_reward("dc-claimant", "1500.00")],
        "{funded:#}"
    );
    for i in 0..REFEREES {
        api.register_code(&referee(i), Some(&code)).await;
    }
    // The request timeout of the storm: three times what a purchase takes alone here (a debug
    // build on a busy machine is slow), so that a request alone passes and requests queued
    // behind others time out in the middle of their work.
    api.register_code("dc-timer", None).await;
    let mut took = Vec::new();
    for n in 0..15 {
        let one = Instant::now();
        api.purchase(&format!("dc-time-{n}"), "dc-timer", DATACENTER, "1").await;
        took.push(one.elapsed());
    }
    took.sort();
    let storm_timeout = (took[took.len() / 2] * 3).clamp(Duration::from_millis(5), Duration::from_millis(500));
    let storm_timeout = format!("{}ms", storm_timeout.as_millis());
    drop(setup);
    let claimant = db.token("customer", "dc-claimant");

    // The storm, on a server that gives up on a request after a few milliseconds.
    let mut server = Server::start_with_env(
        &db,
        "storm",
        &[
            ("REQUEST_TIMEOUT", &storm_timeout),
            ("RUST_LOG", "info,sqlx::postgres::notice=warn"),
        ],
    )
    .await;
    let observer = if db.postgres { Some(db.connect().await) } else { None };
    let pids: Arc<Mutex<BTreeSet<i32>>> = Arc::default();

    let claim_op = contract_op("customer", "ClaimReward");
    let purchase_op = contract_op("integration", "RecordPurchase");
    let mut rng = StdRng::seed_from_u64(8);
    let mut requests = Vec::with_capacity(REQUESTS);
    for n in 0..REQUESTS {
        let (bytes, head_len) = if n % 2 == 0 {
            let vars = claim_vars(&provider_id, &format!("dc-claim-{n}"));
            http_request(server.port, &claimant, &claim_op, &vars)
        } else {
            let i = rng.random_range(0..REFEREES);
            let product = [RESIDENTIAL, RESIDENTIAL_LITE, DATACENTER][rng.random_range(0..3)];
            let vars = purchase_vars(&format!("dc-buy-{n}"), &referee(i), product, "1");
            http_request(server.port, &api.service, &purchase_op, &vars)
        };
        let cut = match rng.random_range(0..100) {
            0..50 => Cut::AfterSending {
                wait_us: rng.random_range(0..3_000),
                reset: rng.random_bool(0.5),
            },
            50..60 => Cut::MidBody,
            _ => Cut::Reads,
        };
        requests.push((bytes, head_len, cut));
    }
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let storm_started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (requests, next, port) = (requests.clone(), next.clone(), server.port);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((bytes, head_len, cut)) = requests.get(n) else {
                        break;
                    };
                    if let Some(answer) = send(port, bytes, *head_len, *cut).await {
                        answers.push(answer);
                    }
                }
                answers
            })
        })
        .collect();
    // Meanwhile, which PostgreSQL processes serve this database (to read their log lines).
    let sampler = observer.as_ref().map(|_| {
        let (url, pids) = (db.url.clone(), pids.clone());
        tokio::spawn(async move {
            let conn = sea_orm::Database::connect(url.as_str()).await.expect("connect");
            loop {
                let seen = backends(&conn).await;
                pids.lock().expect("pids").extend(seen.iter().map(|(pid, _)| *pid));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let mut answered = Vec::new();
    for client in futures::future::join_all(clients).await {
        answered.extend(client.expect("client task panicked"));
    }
    let storm = storm_started.elapsed();

    // Each answer read is a 200 without an internal error, a refusal of the business (e.g.
    // INSUFFICIENT_BALANCE), or the timeout's 408.
    let mut timed_out = 0;
    let mut ok = 0;
    let mut bad = Vec::new();
    for (status, body) in &answered {
        match status {
            408 => timed_out += 1,
            200 => {
                let body: Value = serde_json::from_str(body).unwrap_or(Value::String(body.clone()));
                if error_codes(&body).iter().any(|c| c == "INTERNAL") || !body.is_object() {
                    bad.push((*status, body));
                } else {
                    ok += 1;
                }
            }
            _ => bad.push((*status, Value::String(body.clone()))),
        }
    }
    eprintln!(
        "disconnects on {}: REQUEST_TIMEOUT={storm_timeout}; {REQUESTS} requests in {storm:?}; {} answers \
         read: {ok} ok, {timed_out} timed out, {} bad",
        db.backend(),
        answered.len(),
        bad.len()
    );

    // What the cut-off requests started runs on after they are gone: wait until the server has
    // been idle for a while (on PostgreSQL: no connection of this database active or inside a
    // transaction three looks in a row; what stays inside one is left behind), at most 60 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut left_in_transaction = Vec::new();
    let mut quiet = 0;
    while quiet < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(observer) = &observer {
            let seen = backends(observer).await;
            pids.lock().expect("pids").extend(seen.iter().map(|(pid, _)| *pid));
            let active = seen
                .iter()
                .any(|(_, state)| state == "active" || state.starts_with("idle in transaction"));
            left_in_transaction = seen
                .into_iter()
                .filter(|(_, state)| state.starts_with("idle in transaction"))
                .collect();
            quiet = if active { 0 } else { quiet + 1 };
        } else {
            // SQLite: the log stops growing.
            let before = server.log().len();
            tokio::time::sleep(Duration::from_millis(300)).await;
            quiet = if server.log().len() == before { quiet + 1 } else { 0 };
        }
    }
    let drained = storm_started.elapsed();
    if let Some(sampler) = sampler {
        sampler.abort();
    }

    // Every pooled connection answers a plain read: rounds of more concurrent Dashboards than
    // the pool holds. A 408 (the timeout is short) is sent again.
    let client = client(false);
    let dashboard = contract_op("customer", "Dashboard");
    let mut failed_reads = Vec::new();
    for _ in 0..READ_ROUNDS {
        let reads: Vec<_> = (0..READS)
            .map(|_| {
                let (client, base, token, query) =
                    (client.clone(), server.base.clone(), claimant.clone(), dashboard.clone());
                tokio::spawn(async move {
                    for attempt in 0..20 {
                        match post(&client, &base, &token, &query, &json!({ "first": 1 })).await {
                            Ok((408, _)) => tokio::time::sleep(Duration::from_millis(7 * attempt)).await,
                            other => return other,
                        }
                    }
                    Err("still 408 after 20 tries".to_owned())
                })
            })
            .collect();
        for read in futures::future::join_all(reads).await {
            match read.expect("read task panicked") {
                Ok((200, body)) if succeeded(&body, "me") => {}
                other => failed_reads.push(format!("{other:?}")),
            }
        }
    }

    server.sigterm();
    server.wait_exit(Duration::from_secs(10)).await;
    let log = server.log();
    let nested_in_log = log.matches(NESTED).count();
    let aborted_in_log = log.matches(ABORTED).count();
    let ours = pids.lock().expect("pids").clone();
    let pg_lines: Vec<String> = postgres_log_lines_since(&pg_marks)
        .into_iter()
        .filter(|line| line.contains(NESTED) || line.contains(ABORTED))
        .collect();
    let pg_ours: Vec<&String> = pg_lines
        .iter()
        .filter(|line| pid_of_log_line(line).is_some_and(|pid| ours.contains(&pid)))
        .collect();
    eprintln!(
        "disconnects on {}: quiet {drained:?} after the storm began; left in a transaction {}, failed reads {} of {}, server log: {nested_in_log} \
         \"{NESTED}\", {aborted_in_log} \"{ABORTED}\"; PostgreSQL log ({} files): {} such lines of this \
         database's {} processes ({} of any)",
        db.backend(),
        left_in_transaction.len(),
        failed_reads.len(),
        READS * READ_ROUNDS,
        pg_marks.len(),
        pg_ours.len(),
        ours.len(),
        pg_lines.len(),
    );

    assert!(
        left_in_transaction.is_empty(),
        "pooled connections left inside a transaction: {left_in_transaction:?}"
    );
    assert!(
        failed_reads.is_empty(),
        "plain reads failed after the storm: {:#?}",
        &failed_reads[..failed_reads.len().min(5)]
    );
    assert!(
        bad.is_empty(),
        "answers that are errors of the server: {:#?}",
        &bad[..bad.len().min(5)]
    );
    assert_eq!(
        (nested_in_log, aborted_in_log),
        (0, 0),
        "the server's log shows a transaction begun inside another one or an aborted one"
    );
    assert!(pg_ours.is_empty(), "PostgreSQL's log: {pg_ours:#?}");

    // The ledger is whole, and the Dashboard agrees with it.
    db.assert_check_passes();
    let conn = db.connect().await;
    let (available, lifetime) = balance_row(&conn, "dc-claimant", "POINTS").await;
    let claimed = sql_i64(
        &conn,
        "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM claims WHERE account_id = \
         (SELECT id FROM accounts WHERE external_id = 'dc-claimant')",
    )
    .await;
    assert_eq!(available, lifetime - claimed, "available = earned - claimed");
    // The storm did something although its clients heard little of it.
    let recorded = count(&conn, "events WHERE event_id LIKE 'dc-buy-%'").await;
    eprintln!(
        "disconnects on {}: {recorded} purchases of the storm recorded",
        db.backend()
    );
    assert!(recorded > 0, "no purchase of the storm was recorded");
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the test took {:?}",
        started.elapsed()
    );
}

#[test]
fn postgres_log_lines_name_their_process() {
    assert_eq!(
        pid_of_log_line("2026-12-01 20:55:13.778 UTC [2215] WARNING:  there is already a transaction in progress"),
        Some(2215)
    );
    assert_eq!(pid_of_log_line("no pid here"), None);
}
