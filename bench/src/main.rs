//! `cargo run --release -p bench -- --db postgres --accounts 1000`
//!
//! Builds the release server, creates a database with the server's own migrations and the
//! points-store preset, bulk-loads a seeded dataset, runs `referral-server check` on it,
//! starts the server and drives it with `wrk` (bench/wrk/graphql.lua) through the contract's
//! Dashboard, RewardStore, ClaimReward (uniform and one hot account) and RecordPurchase; on
//! PostgreSQL it also counts the statements each operation issues and runs the same
//! statements with `pgbench` (bench/pgbench/*.sql). Prints the figures and writes them into
//! BENCHMARKS.md. See BENCHMARKS.md for what each column means.

mod dataset;
mod load;
mod load_gen;
mod report;
mod server;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use load_gen::WrkRun;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use report::{RunReport, ScenarioResult};
use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Db {
    Postgres,
    Sqlite,
}

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Benchmarks the release server on a generated dataset (see BENCHMARKS.md)"
)]
struct Args {
    #[arg(long, value_enum, default_value = "postgres")]
    db: Db,
    /// Accounts in the dataset (1000 and 1000000 are the reference sizes).
    #[arg(long, default_value_t = 1_000)]
    accounts: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds of each measured wrk run.
    #[arg(long, default_value_t = 12)]
    duration: u32,
    /// Seconds of the warm-up run before each measured run.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// wrk connections of the read scenarios.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk connections of the write scenarios (ClaimReward, RecordPurchase); default 32 on
    /// PostgreSQL, 64 on SQLite (64 concurrent writers).
    #[arg(long)]
    write_connections: Option<u32>,
    #[arg(long, default_value_t = 2)]
    threads: u32,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "dashboard,store,claim,claim-hot,purchase"
    )]
    scenarios: Vec<String>,
    /// PostgreSQL server (the database `bench_<size>` is created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg_url: String,
    /// PostgreSQL's log file, read to count the statements of each operation.
    #[arg(long, default_value = "/var/log/postgresql/postgresql-15-main.log")]
    pg_log: PathBuf,
    /// pgbench clients (default: the server's pool size on PostgreSQL, 16).
    #[arg(long, default_value_t = 16)]
    pgbench_clients: u32,
    #[arg(long, default_value_t = 18_480)]
    port: u16,
    /// Customers to mint tokens for (random ones; at most all of them).
    #[arg(long, default_value_t = 20_000)]
    tokens: usize,
    /// Keep the database of an earlier run instead of generating it again.
    #[arg(long)]
    reuse: bool,
    /// Do not run `cargo build --release -p referral-server` first.
    #[arg(long)]
    no_build: bool,
    /// Do not write BENCHMARKS.md.
    #[arg(long)]
    no_report: bool,
}

const ALL_SCENARIOS: [&str; 5] = ["dashboard", "store", "claim", "claim-hot", "purchase"];
const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";
const ISSUER: &str = "referral-server";
const AUDIENCE: &str = "referral-api";

fn operation_of(scenario: &str) -> &'static str {
    match scenario {
        "dashboard" => "Dashboard",
        "store" => "RewardStore",
        "claim" | "claim-hot" => "ClaimReward",
        _ => "RecordPurchase",
    }
}

fn size_label(accounts: u64) -> String {
    match accounts {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

#[tokio::main]
async fn main() {
    if let Err(err) = run(Args::parse()).await {
        eprintln!("bench: {err:#}");
        std::process::exit(1);
    }
}

fn sh(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo");
    format!("`nproc` {}, {}, {} RAM", sh("nproc"), cpu.trim(), mem)
}

#[derive(serde::Serialize)]
struct TokenClaims<'a> {
    sub: &'a str,
    role: &'a str,
    iss: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
}

fn mint(role: &str, sub: &str) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = TokenClaims {
        sub,
        role,
        iss: ISSUER,
        aud: AUDIENCE,
        exp: now + 6 * 3600,
        iat: now,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("bench: wrk is missing: apt-get install -y wrk");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status()?
        .success()
        || (Command::new("apt-get").args(["update", "-qq"]).status()?.success()
            && Command::new("apt-get")
                .args(["install", "-y", "-qq", "wrk"])
                .status()?
                .success());
    if !installed {
        bail!("could not install wrk (apt-get install wrk)");
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has no parent")?
        .to_path_buf();
    for scenario in &args.scenarios {
        if !ALL_SCENARIOS.contains(&scenario.as_str()) {
            bail!("unknown scenario {scenario}; scenarios: {}", ALL_SCENARIOS.join(","));
        }
    }
    let pg = args.db == Db::Postgres;
    let label = format!(
        "{}-{}",
        if pg { "postgres" } else { "sqlite" },
        size_label(args.accounts)
    );
    let out = root.join("bench/out").join(&label);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let load_before = sh("cut -d' ' -f1-3 /proc/loadavg");
    let started = Instant::now();

    if !args.no_build {
        eprintln!("bench: cargo build --release -p referral-server");
        let ok = Command::new("cargo")
            .args(["build", "--release", "-p", "referral-server"])
            .current_dir(&root)
            .status()
            .context("running cargo build")?
            .success();
        if !ok {
            bail!("cargo build --release failed");
        }
    }
    ensure_wrk()?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let binary = target.join("release/referral-server");

    let db_name = format!("bench_{}", size_label(args.accounts));
    let database_url = if pg {
        format!("{}/{db_name}", args.pg_url.trim_end_matches('/'))
    } else {
        format!("sqlite://{}?mode=rwc", out.join(format!("{db_name}.db")).display())
    };
    let env = server::Env {
        binary,
        database_url: database_url.clone(),
        port: args.port,
        secret: SECRET.into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        workdir: out.clone(),
    };
    let shape = dataset::Shape {
        accounts: args.accounts,
        seed: args.seed,
    };
    let mut notes = Vec::new();
    let dataset_line;
    if args.reuse {
        dataset_line =
            format!("reused from an earlier run of `{db_name}` (it holds that run's claims and purchases too)");
    } else {
        if pg {
            let mut admin = load::Conn::connect(&format!("{}/postgres", args.pg_url.trim_end_matches('/'))).await?;
            admin
                .execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                .await?;
            admin.execute(&format!("CREATE DATABASE {db_name}")).await?;
        } else {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(out.join(format!("{db_name}.db{suffix}")));
            }
        }
        eprintln!("bench: referral-server migrate && preset points-store on {database_url}");
        env.run(&["migrate"])?;
        env.run(&["preset", "points-store"])?;
        let mut conn = load::Conn::connect(&database_url).await?;
        let rule_id = conn
            .scalar("SELECT id FROM reward_rules WHERE name = 'Points for a friend''s first residential purchase'")
            .await?;
        let stats = load::load(&mut conn, &shape, rule_id).await?;
        let entries = stats.count("ledger_entries");
        dataset_line = format!(
            "{} accounts in referral trees of depth ≤ {} ({} referrals), {} ledger entries ({:.1} per account), {} claims, \
             {} lot allocations, {} purchase events, 3 providers, 6 products, the points-store preset; seed {}; \
             generated and loaded in {:.1} s",
            args.accounts,
            (1..=args.accounts.min(dataset::TREE))
                .map(|a| shape.depth(a))
                .max()
                .unwrap_or(0),
            stats.count("referrals"),
            entries,
            entries as f64 / args.accounts as f64,
            stats.count("claims"),
            stats.count("lot_allocations"),
            stats.count("events"),
            args.seed,
            stats.seconds
        );
        eprintln!("bench: {dataset_line}");
    }
    let check_started = Instant::now();
    let check_before = match env.run(&["check"]) {
        Ok(output) => {
            eprintln!("{output}");
            format!("passes on the dataset ({:.1} s)", check_started.elapsed().as_secs_f64())
        }
        // pgbench's claims take the newest lot (see bench/pgbench/claim.sql), so a database an
        // earlier run's pgbench wrote to may have lots out of step with balances.
        Err(err) if args.reuse => {
            let text = format!("{err:#}");
            let first = text
                .lines()
                .find(|l| l.starts_with("FAIL"))
                .unwrap_or("see the log")
                .to_owned();
            notes.push(format!(
                "`check` failed on the reused database, which holds an earlier run's pgbench writes: {first}"
            ));
            "fails on the reused database (pgbench writes of an earlier run)".to_owned()
        }
        Err(err) => return Err(err.context("referral-server check on the generated dataset")),
    };
    eprintln!("bench: check {check_before}");

    // Tokens: random customers, the hot account, the billing system.
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x70_6b);
    let count = args.tokens.min(usize::try_from(args.accounts)?);
    let customers: Vec<String> = sample(&mut rng, usize::try_from(args.accounts)?, count)
        .into_iter()
        .map(|i| mint("customer", &format!("u{}", i + 1)))
        .collect::<Result<_>>()?;
    write(&out.join("tokens-customers.txt"), &customers.join("\n"))?;
    write(&out.join("tokens-hot.txt"), &mint("customer", "u1")?)?;
    let service = mint("service", "billing")?;
    write(&out.join("tokens-service.txt"), &service)?;

    // The operation documents the clients send (operations/).
    let contract = std::env::var("CONTRACT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("operations"));
    let customer_doc = std::fs::read_to_string(contract.join("customer.graphql"))
        .with_context(|| format!("reading {}", contract.join("customer.graphql").display()))?;
    let integration_doc = std::fs::read_to_string(contract.join("integration.graphql"))
        .with_context(|| format!("reading {}", contract.join("integration.graphql").display()))?;
    let mut documents = BTreeMap::new();
    for operation in ["Dashboard", "RewardStore", "ClaimReward"] {
        documents.insert(operation, load_gen::operation_document(&customer_doc, operation)?);
    }
    documents.insert(
        "RecordPurchase",
        load_gen::operation_document(&integration_doc, "RecordPurchase")?,
    );
    for (operation, document) in &documents {
        write(
            &out.join(format!("query-{operation}.json")),
            &serde_json::to_string(document)?,
        )?;
    }

    // Statements per operation, from PostgreSQL's log.
    let mut statements: BTreeMap<&str, usize> = BTreeMap::new();
    if pg {
        match capture_statements(&args, &env, &out, &db_name, &documents, &service).await {
            Ok(found) => statements = found,
            Err(err) => notes.push(format!("statements were not counted: {err:#}")),
        }
    }

    let server = env.start(&out.join("server.log")).await?;
    let pid = server.pid();
    let script = root.join("bench/wrk/graphql.lua");
    let tag = format!(
        "b{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let mut results = Vec::new();
    let run_result: Result<()> = async {
        for scenario in &args.scenarios {
            let operation = operation_of(scenario);
            let write_scenario = matches!(scenario.as_str(), "claim" | "claim-hot" | "purchase");
            let connections = if write_scenario {
                args.write_connections.unwrap_or(if pg { args.connections } else { 64 })
            } else {
                args.connections
            };
            let tokens = match scenario.as_str() {
                "claim-hot" => out.join("tokens-hot.txt"),
                "purchase" => out.join("tokens-service.txt"),
                _ => out.join("tokens-customers.txt"),
            };
            let query_file = out.join(format!("query-{operation}.json"));
            let reset = server::reset_peak_rss(pid);
            let log_offset = std::fs::metadata(out.join("server.log")).map(|m| m.len()).unwrap_or(0);
            let mut run = WrkRun {
                script: &script,
                port: args.port,
                threads: args.threads,
                connections,
                seconds: args.warmup,
                scenario,
                query_file: &query_file,
                tokens_file: &tokens,
                tag: &format!("{tag}-{scenario}-warm"),
                accounts: args.accounts,
            };
            if args.warmup > 0 {
                load_gen::run_wrk(&run)?;
            }
            let main_tag = format!("{tag}-{scenario}");
            run.seconds = args.duration;
            run.tag = &main_tag;
            let (server0, pg0, machine0) = (server::cpu_ticks(pid), server::cpu_ticks_named("postgres"), server::machine_ticks());
            let wrk = load_gen::run_wrk(&run)?;
            let (server1, pg1, machine1) = (server::cpu_ticks(pid), server::cpu_ticks_named("postgres"), server::machine_ticks());
            let peak_kb = server::status_kb(pid, "VmHWM").unwrap_or(0);
            let locked_in_log = count_in_file_from(&out.join("server.log"), log_offset, "database is locked");
            // % of one core; ticks are 1/100 s.
            let seconds = wrk.duration_us / 1e6;
            let pct = |ticks: u64| ticks as f64 / seconds;
            let busy_cores = if machine1.1 > machine0.1 {
                (machine1.0 - machine0.0) as f64 / (machine1.1 - machine0.1) as f64 * num_cpus() * 100.0
            } else {
                0.0
            };
            let cpu_server = pct(server1.saturating_sub(server0));
            let cpu_postgres = if pg { pct(pg1.saturating_sub(pg0)) } else { 0.0 };
            let result = ScenarioResult {
                scenario: scenario.clone(),
                operation: operation.into(),
                connections,
                peak_rss_mib: peak_kb as f64 / 1024.0,
                cpu_server,
                cpu_postgres,
                cpu_other: (busy_cores - cpu_server - cpu_postgres).max(0.0),
                locked_in_log,
                statements: statements.get(operation).copied(),
                pgbench: None,
                wrk,
            };
            if !reset {
                notes.push("VmHWM could not be reset between scenarios: peak RSS is the process's peak so far".into());
            }
            eprintln!(
                "bench: {scenario:<10} c={connections:<3} {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  rejected {}  peak RSS {:.1} MiB  CPU srv {:.0}% pg {:.0}% other {:.0}%{}",
                result.wrk.rps,
                result.wrk.p50_us / 1000.0,
                result.wrk.p99_us / 1000.0,
                result.wrk.errors,
                result.wrk.rejected,
                result.peak_rss_mib,
                result.cpu_server,
                result.cpu_postgres,
                result.cpu_other,
                if result.wrk.sample.is_empty() { String::new() } else { format!("\n      first error: {}", result.wrk.sample) }
            );
            results.push(result);
        }
        Ok(())
    }
    .await;
    server.stop()?;
    run_result?;

    let check_started = Instant::now();
    let check_after = match env.run(&["check"]) {
        Ok(_) => format!(
            "passes after the load too ({:.1} s)",
            check_started.elapsed().as_secs_f64()
        ),
        Err(err) => {
            let text = format!("{err:#}");
            let first = text
                .lines()
                .find(|l| l.starts_with("FAIL"))
                .unwrap_or("see the log")
                .trim()
                .to_owned();
            if args.reuse {
                format!("fails after the load too (the reused database's pgbench writes): {first}")
            } else {
                format!("FAILS after the load: {first}")
            }
        }
    };
    eprintln!("bench: check {check_after}");

    // pgbench on the same statements (PostgreSQL).
    if pg {
        let pgbench_dir = root.join("bench/pgbench");
        for result in &mut results {
            let (file, amin, amax) = match result.scenario.as_str() {
                // Not a ratio target: what PostgreSQL alone reaches on the Dashboard's statements.
                "dashboard" => ("dashboard.sql", 1, args.accounts),
                "claim" => ("claim.sql", 1, args.accounts),
                "claim-hot" => ("claim.sql", 1, 1),
                "purchase" => ("purchase.sql", 1, args.accounts),
                _ => continue,
            };
            let defines = vec![
                ("amin".to_owned(), amin.to_string()),
                ("amax".to_owned(), amax.to_string()),
            ];
            match load_gen::run_pgbench(
                &database_url,
                &pgbench_dir.join(file),
                args.pgbench_clients,
                args.duration,
                &defines,
            ) {
                Ok(p) => {
                    eprintln!(
                        "bench: pgbench {file} ({}) c={}: {:.1} tps; server/pgbench {:.0} %",
                        result.scenario,
                        p.clients,
                        p.tps,
                        100.0 * result.wrk.rps / p.tps
                    );
                    write(&out.join(format!("pgbench-{}.txt", result.scenario)), &p.output)?;
                    result.pgbench = Some(p);
                }
                Err(err) => {
                    let text = format!("{err:#}");
                    let reason = text
                        .lines()
                        .rev()
                        .find(|l| l.contains("ERROR"))
                        .unwrap_or(text.lines().next().unwrap_or(""));
                    notes.push(format!("pgbench {file} failed: {}", reason.trim()));
                }
            }
        }
    }

    let scenarios_key = if args.scenarios.len() == ALL_SCENARIOS.len() {
        String::new()
    } else {
        format!("-{}", args.scenarios.join("+"))
    };
    let mut command = format!(
        "cargo run --release -p bench -- --db {} --accounts {}",
        if pg { "postgres" } else { "sqlite" },
        args.accounts
    );
    if !scenarios_key.is_empty() {
        command.push_str(&format!(" --scenarios {}", args.scenarios.join(",")));
    }
    if args.reuse {
        command.push_str(" --reuse");
    }
    let report = RunReport {
        key: format!("{label}{scenarios_key}"),
        title: format!(
            "{}, {} accounts{}",
            if pg { "PostgreSQL 15" } else { "SQLite" },
            size_label(args.accounts)
                .replace('k', " thousand")
                .replace('m', " million"),
            if scenarios_key.is_empty() {
                String::new()
            } else {
                format!(" ({})", args.scenarios.join(", "))
            }
        ),
        command,
        date: sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        machine: machine(),
        load_before,
        dataset: dataset_line,
        check: format!("{check_before}; {check_after}"),
        scenarios: results,
        notes,
    };
    write(&out.join("results.json"), &serde_json::to_string_pretty(&report)?)?;
    println!("\n{}", report.markdown());
    if !args.no_report {
        let path = root.join("BENCHMARKS.md");
        let existing = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        write(&path, &report::splice(&existing, &report.key, &report.markdown()))?;
        eprintln!("bench: wrote the figures into {}", path.display());
    }
    eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn num_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn count_in_file_from(path: &Path, offset: u64, needle: &str) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text.lines().filter(|l| l.contains(needle)).count() as u64
}

/// Sends one of each operation with PostgreSQL's `log_statement = 'all'` set on the database
/// (for this probe only), and counts the statements logged between markers. The statements are
/// kept in `statements-<Operation>.log` beside the results.
async fn capture_statements(
    args: &Args,
    env: &server::Env,
    out: &Path,
    db_name: &str,
    documents: &BTreeMap<&str, String>,
    service: &str,
) -> Result<BTreeMap<&'static str, usize>> {
    let base = args.pg_url.trim_end_matches('/');
    let mut admin = load::Conn::connect(&format!("{base}/postgres")).await?;
    admin
        .execute(&format!("ALTER DATABASE {db_name} SET log_statement = 'all'"))
        .await?;
    let offset = std::fs::metadata(&args.pg_log)
        .map(|m| m.len())
        .with_context(|| format!("reading {}", args.pg_log.display()))?;
    let probe = async {
        let server = env.start(&out.join("server-probe.log")).await?;
        let result: Result<()> = async {
            let mut marker = load::Conn::connect(&env.database_url).await?;
            // u2 has three friends, as every inner account of a tree: the Dashboard's full set of
            // statements (a leaf account's has two fewer: no friends to look up).
            let customer = &mint("customer", "u2")?;
            // Fresh ids, so that a reused database answers no replay.
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            let probes: [(&str, &str, String); 4] = [
                ("Dashboard", customer, "{}".into()),
                ("RewardStore", customer, "{}".into()),
                (
                    "ClaimReward",
                    customer,
                    format!(r#"{{"input":{{"providerId":"prv_1","idempotencyKey":"probe-claim-{stamp}"}}}}"#),
                ),
                (
                    "RecordPurchase",
                    service,
                    format!(
                        r#"{{"input":{{"eventId":"probe-purchase-{stamp}","externalId":"u{}","productKey":"acme-res","quantityGb":"10"}}}}"#,
                        // A referred account that has not purchased yet: the rule pays.
                        (2..=args.accounts)
                            .find(|a| dataset::Shape { accounts: args.accounts, seed: args.seed }.purchase(*a).is_none())
                            .unwrap_or(2)
                    ),
                ),
            ];
            for (operation, token, variables) in &probes {
                marker.execute(&format!("SELECT 'bench-marker {operation}'")).await?;
                let body = format!(
                    r#"{{"operationName":"{operation}","query":{},"variables":{variables}}}"#,
                    serde_json::to_string(&documents[operation])?
                );
                let (status, answer) = server::http(server.port, "POST", "/graphql", Some(token), Some(&body)).await?;
                if status != 200 || answer.contains("\"errors\"") {
                    bail!("probe {operation} answered {status}: {answer}");
                }
                write(&out.join(format!("probe-{operation}.json")), &answer)?;
            }
            marker.execute("SELECT 'bench-marker end'").await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        }
        .await;
        server.stop()?;
        result
    }
    .await;
    admin
        .execute(&format!("ALTER DATABASE {db_name} RESET log_statement"))
        .await?;
    probe?;
    let mut file = std::fs::File::open(&args.pg_log)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let segments = split_statements(&text, db_name);
    let mut counts = BTreeMap::new();
    for operation in ["Dashboard", "RewardStore", "ClaimReward", "RecordPurchase"] {
        let lines = segments.get(operation).cloned().unwrap_or_default();
        write(&out.join(format!("statements-{operation}.log")), &lines.join("\n"))?;
        eprintln!("bench: {operation}: {} SQL statements", lines.len());
        counts.insert(operation, lines.len());
    }
    Ok(counts)
}

/// The statements PostgreSQL logged for database `db`, grouped by the marker before them.
fn split_statements(log: &str, db: &str) -> BTreeMap<String, Vec<String>> {
    let mut segments: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let tag = format!("@{db} LOG:  ");
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(&tag) else {
            continue;
        };
        let statement = rest.strip_prefix("statement: ").or_else(|| {
            rest.strip_prefix("execute ")
                .and_then(|r| r.split_once(": ").map(|(_, s)| s))
        });
        let Some(statement) = statement else { continue };
        if let Some(name) = statement.strip_prefix("SELECT 'bench-marker ") {
            current = Some(name.trim_end_matches('\'').to_owned());
            continue;
        }
        if let Some(name) = &current {
            segments.entry(name.clone()).or_default().push(statement.to_owned());
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_logged_statements_by_marker() {
        let log = "\
2026-01-01 00:00:00 UTC [1] postgres@bench_1k LOG:  statement: SELECT 'bench-marker Dashboard'
2026-01-01 00:00:00 UTC [2] postgres@bench_1k LOG:  execute sqlx_s_1: SELECT 1
2026-01-01 00:00:00 UTC [2] postgres@bench_1k DETAIL:  parameters: $1 = 'x'
2026-01-01 00:00:00 UTC [3] postgres@other LOG:  execute sqlx_s_1: SELECT 9
2026-01-01 00:00:00 UTC [2] postgres@bench_1k LOG:  statement: BEGIN
2026-01-01 00:00:00 UTC [1] postgres@bench_1k LOG:  statement: SELECT 'bench-marker end'
2026-01-01 00:00:00 UTC [2] postgres@bench_1k LOG:  execute <unnamed>: SELECT 2
";
        let segments = split_statements(log, "bench_1k");
        assert_eq!(segments["Dashboard"], vec!["SELECT 1".to_owned(), "BEGIN".to_owned()]);
        assert_eq!(segments["end"], vec!["SELECT 2".to_owned()]);
        assert_eq!(size_label(1_000_000), "1m");
        assert_eq!(size_label(1_000), "1k");
        assert_eq!(size_label(1_500), "1500");
    }
}
