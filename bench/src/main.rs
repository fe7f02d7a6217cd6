//! `cargo run --release -p bench -- --db postgres --accounts 1000`
//!
//! Builds the release server, creates a database with the server's own migrations and the
//! points-store preset, bulk-loads a seeded dataset, runs `referral-server check` on it,
//! starts the server and drives it with `wrk` (bench/wrk/graphql.lua) through the contract's
//! Dashboard, RewardStore, ClaimReward (uniform, with a webhook endpoint subscribed to every
//! event, and one hot account) and RecordPurchase, each in rounds of the server's run and its
//! reference's, reporting the median round; the claims with a webhook subscriber are reported
//! against the claims without, of the same run. On
//! PostgreSQL it also counts the statements each operation issues, and measures the
//! references each rate is reported against: PostGraphile 4 answering the same Dashboard
//! (bench/postgraphile/), and pgbench running the best single statement for a claim and a
//! purchase (bench/pgbench/*_one.sql) and the server's own statements (the other scripts).
//! Prints the figures and writes them into BENCHMARKS.md. See BENCHMARKS.md for what each
//! column means.

mod dataset;
mod load;
mod load_gen;
mod measure;
mod pgbench;
mod postgraphile;
mod report;
mod server;
mod statements;
mod webhook;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use load_gen::WrkRun;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use report::{Reference, RoundFigures, RunReport, ScenarioResult};
use statements::StatementLog;
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
        default_value = "dashboard,store,claim,claim-webhook,claim-hot,purchase"
    )]
    scenarios: Vec<String>,
    /// PostgreSQL server (the database `bench_<size>` is created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg_url: String,
    /// Connect the server and every reference (PostGraphile, pgbench) to PostgreSQL over TLS
    /// when it offers it. Off by default: a PostgreSQL on the same host is reached in plain TCP,
    /// as the README advises (`?sslmode=disable`); with it, all of them pay for TLS alike.
    #[arg(long)]
    pg_tls: bool,
    /// The PostgreSQL database to create instead of `bench_<size>` (dropped first): runs at the
    /// same time on one PostgreSQL need one each.
    #[arg(long)]
    pg_db: Option<String>,
    /// PostgreSQL's log file, read to count the statements of each operation.
    #[arg(long, default_value = "/var/log/postgresql/postgresql-15-main.log")]
    pg_log: PathBuf,
    /// pgbench clients running the server's own statements (default: the server's pool size on
    /// PostgreSQL, 16). The one-statement references run with the scenario's connections.
    #[arg(long, default_value_t = 16)]
    pgbench_clients: u32,
    /// Do not install and run PostGraphile (the Dashboard's reference).
    #[arg(long)]
    no_postgraphile: bool,
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
    /// Rounds per scenario, each the server's run then its reference's: the median round is
    /// reported (a single run of a reference moves by 20 % from one minute to the next).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
}

const ALL_SCENARIOS: [&str; 6] = ["dashboard", "store", "claim", "claim-webhook", "claim-hot", "purchase"];
const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";
const ISSUER: &str = "referral-server";
const AUDIENCE: &str = "referral-api";

fn operation_of(scenario: &str) -> &'static str {
    match scenario {
        "dashboard" => "Dashboard",
        "store" => "RewardStore",
        "claim" | "claim-webhook" | "claim-hot" => "ClaimReward",
        _ => "RecordPurchase",
    }
}

/// The load wrk sends (bench/wrk/graphql.lua): `claim-webhook` sends `claim`'s, so that the
/// subscriber is the only difference between the two.
fn load_of(scenario: &str) -> &str {
    match scenario {
        "claim-webhook" => "claim",
        other => other,
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
    // A run on its own database keeps its own outputs too.
    let out = root.join("bench/out").join(args.pg_db.as_deref().unwrap_or(&label));
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
    // The Dashboard's reference, installed once into bench/out; a failed install is reported as
    // a reference not run, and the run goes on without it.
    let postgraphile_cli: Option<Result<PathBuf, String>> = (pg && args.scenarios.iter().any(|s| s == "dashboard"))
        .then(|| {
            if args.no_postgraphile {
                return Err("--no-postgraphile".to_owned());
            }
            let dir = root.join(format!("bench/out/postgraphile-{}", postgraphile::VERSION));
            postgraphile::install(&dir).map_err(|err| {
                eprintln!("bench: PostGraphile will not run: {err:#}");
                format!("{err:#}")
            })
        });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let binary = target.join("release/referral-server");

    let db_name = args
        .pg_db
        .clone()
        .unwrap_or_else(|| format!("bench_{}", size_label(args.accounts)));
    // TLS to PostgreSQL for the server and every reference alike, or for none of them.
    let pg_tls = pg && args.pg_tls;
    let pg_database_url = format!("{}/{db_name}", args.pg_url.trim_end_matches('/'));
    let database_url = if pg {
        format!(
            "{pg_database_url}?sslmode={}",
            if pg_tls { "prefer" } else { "disable" }
        )
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
        // An earlier run's pgbench may have left lots out of step with balances (its claim
        // script took the newest lot before claims became one function).
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
    let sampled: Vec<String> = sample(&mut rng, usize::try_from(args.accounts)?, count)
        .into_iter()
        .map(|i| format!("u{}", i + 1))
        .collect();
    let customers: Vec<String> = sampled.iter().map(|id| mint("customer", id)).collect::<Result<_>>()?;
    write(&out.join("tokens-customers.txt"), &customers.join("\n"))?;
    // PostGraphile's Dashboard is asked for the same accounts, by external id.
    write(&out.join("accounts-customers.txt"), &sampled.join("\n"))?;
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

    // The admin operations that subscribe `claim-webhook`'s endpoint and delete it again.
    let webhook_api = if args.scenarios.iter().any(|s| s == "claim-webhook") {
        let admin_doc = std::fs::read_to_string(contract.join("admin.graphql"))
            .with_context(|| format!("reading {}", contract.join("admin.graphql").display()))?;
        Some(webhook::AdminApi::new(&admin_doc, args.port, mint("admin", "bench")?)?)
    } else {
        None
    };

    // The Dashboard in PostGraphile's schema (bench/postgraphile/dashboard.graphql).
    let postgraphile_source = root.join("bench/postgraphile/dashboard.graphql");
    let postgraphile_document = load_gen::operation_document(
        &std::fs::read_to_string(&postgraphile_source)
            .with_context(|| format!("reading {}", postgraphile_source.display()))?,
        "Dashboard",
    )?;
    write(
        &out.join("query-postgraphile-Dashboard.json"),
        &serde_json::to_string(&postgraphile_document)?,
    )?;
    // Connected as the server is (`--pg-tls`): node-postgres understands `disable`, but
    // `prefer` only as "require and verify", so over TLS it is told not to verify, as sqlx does not.
    let postgraphile_url = if postgraphile_cli.is_some() && pg_tls {
        let mut conn = load::Conn::connect(&database_url).await?;
        let tls = conn
            .scalar("SELECT CAST(CAST(current_setting('ssl') = 'on' AS INTEGER) AS BIGINT)")
            .await?
            == 1;
        format!("{pg_database_url}{}", if tls { "?sslmode=no-verify" } else { "" })
    } else {
        database_url.clone()
    };
    let postgraphile: Option<Result<postgraphile::Setup, String>> = postgraphile_cli.map(|cli| {
        cli.map(|cli| postgraphile::Setup {
            cli,
            database_url: postgraphile_url,
            document: postgraphile_document,
            port: args.port + 1,
        })
    });

    // Statements per operation, from PostgreSQL's log.
    let mut statements: BTreeMap<String, usize> = BTreeMap::new();
    if pg {
        let setup = postgraphile.as_ref().and_then(|p| p.as_ref().ok());
        match capture_statements(&args, &env, &out, &db_name, &documents, &service, setup).await {
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
            let setup = ScenarioSetup {
                pid,
                pg,
                out: &out,
                script: &script,
                tag: &tag,
                env: &env,
                database_url: &database_url,
                pgbench_dir: &root.join("bench/pgbench"),
                postgraphile: postgraphile.as_ref(),
                server_dashboard: &documents["Dashboard"],
                statements: &statements,
            };
            let result = if scenario == "claim-webhook" {
                let api = webhook_api.as_ref().context("claim-webhook's admin operations")?;
                run_with_webhook(&args, scenario, setup, api, &mut notes).await?
            } else {
                run_scenario(&args, scenario, setup, &mut notes).await?
            };
            results.push(result);
        }
        report::refer_to_claim(&mut results);
        Ok(())
    }
    .await;
    server.stop()?;
    run_result?;

    let check_after = run_check(&env, "after the load and its references", args.reuse);
    eprintln!("bench: check {check_after}");

    // pgbench on the server's own statements (PostgreSQL), once the server has stopped: no
    // ratio of a target, what PostgreSQL alone does with them. Every script keeps the ledger
    // right, and `check` runs once more after them all.
    let mut check_pgbench = String::new();
    if pg {
        let dir = root.join("bench/pgbench");
        for result in &mut results {
            let (file, hot) = match result.scenario.as_str() {
                "dashboard" => ("dashboard.sql", false),
                "claim" => ("claim.sql", false),
                "claim-hot" => ("claim.sql", true),
                "purchase" => ("purchase.sql", false),
                _ => continue,
            };
            let name = format!(
                "pgbench `{file}`{} (the server's statements)",
                if hot { " on u1" } else { "" }
            );
            let server_rps = result.server.wrk.rps;
            match run_pgbench(
                &database_url,
                &dir.join(file),
                &result.scenario,
                server_rps,
                args.pgbench_clients,
                &args,
                &out,
            ) {
                Ok(p) => result.references.push(Reference::pgbench(name, false, &p)),
                Err(reason) => notes.push(format!("pgbench {file} ({}) failed: {reason}", result.scenario)),
            }
        }
        if results
            .iter()
            .any(|r| r.references.iter().any(|reference| !reference.target))
        {
            check_pgbench = format!("; {}", run_check(&env, "after pgbench", args.reuse));
            eprintln!("bench: check {}", check_pgbench.trim_start_matches("; "));
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
    if pg_tls {
        command.push_str(" --pg-tls");
    }
    if args.reuse {
        command.push_str(" --reuse");
    }
    let report = RunReport {
        // A run over TLS keeps its own block beside the plain one.
        key: format!("{label}{scenarios_key}{}", if pg_tls { "-tls" } else { "" }),
        title: format!(
            "{}, {} accounts{}",
            if pg_tls {
                "PostgreSQL 15 over TLS"
            } else if pg {
                "PostgreSQL 15"
            } else {
                "SQLite"
            },
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
        check: format!("{check_before}; {check_after}{check_pgbench}"),
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

/// What every scenario's rounds share.
struct ScenarioSetup<'a> {
    pid: u32,
    pg: bool,
    out: &'a Path,
    script: &'a Path,
    tag: &'a str,
    env: &'a server::Env,
    database_url: &'a str,
    /// bench/pgbench, the scripts of the references.
    pgbench_dir: &'a Path,
    postgraphile: Option<&'a Result<postgraphile::Setup, String>>,
    server_dashboard: &'a str,
    statements: &'a BTreeMap<String, usize>,
}

/// The reference a scenario's target ratio is taken against.
enum Target {
    PostGraphile,
    /// A one-statement pgbench script, on u1 alone for the hot account.
    Pgbench {
        file: &'static str,
        hot: bool,
    },
}

/// Runs `scenario` (`claim-webhook`) with one webhook endpoint subscribed to every event type
/// for its rounds: subscribed before them, deleted after them, even when they fail, so that no
/// endpoint is left to deliver the next scenarios' events to a receiver that is gone. No pgbench
/// reference: its reference is the `claim` scenario (`report::refer_to_claim`).
async fn run_with_webhook(
    args: &Args,
    scenario: &str,
    setup: ScenarioSetup<'_>,
    api: &webhook::AdminApi,
    notes: &mut Vec<String>,
) -> Result<ScenarioResult> {
    let database_url = setup.database_url;
    let subscription = webhook::Subscription::start(api, database_url, notes).await?;
    let result = run_scenario(args, scenario, setup, notes).await;
    let figures = subscription.finish(api, database_url, notes).await;
    let mut result = result?;
    result.webhook = Some(figures);
    Ok(result)
}

/// Runs `scenario` in `--rounds` rounds, each the server's measured run followed at once by its
/// target reference's (PostgreSQL), so that both see the machine in the same minute. The round
/// whose ratio (or, without a reference, whose rate) is the median is the one reported; every
/// round's figure is kept beside it. Peak RSS is the highest of all rounds.
async fn run_scenario(
    args: &Args,
    scenario: &str,
    setup: ScenarioSetup<'_>,
    notes: &mut Vec<String>,
) -> Result<ScenarioResult> {
    let operation = operation_of(scenario);
    let load = load_of(scenario);
    let write_scenario = matches!(load, "claim" | "claim-hot" | "purchase");
    let connections = if write_scenario {
        args.write_connections
            .unwrap_or(if setup.pg { args.connections } else { 64 })
    } else {
        args.connections
    };
    let tokens = match load {
        "claim-hot" => setup.out.join("tokens-hot.txt"),
        "purchase" => setup.out.join("tokens-service.txt"),
        _ => setup.out.join("tokens-customers.txt"),
    };
    let query_file = setup.out.join(format!("query-{operation}.json"));
    let target = match scenario {
        "dashboard" => setup.postgraphile.map(|_| Target::PostGraphile),
        "claim" if setup.pg => Some(Target::Pgbench {
            file: "claim_one.sql",
            hot: false,
        }),
        "claim-hot" if setup.pg => Some(Target::Pgbench {
            file: "claim_one.sql",
            hot: true,
        }),
        "purchase" if setup.pg => Some(Target::Pgbench {
            file: "purchase_one.sql",
            hot: false,
        }),
        _ => None,
    };
    let server_log = setup.out.join("server.log");
    let log_offset = std::fs::metadata(&server_log).map(|m| m.len()).unwrap_or(0);
    let mut rounds: Vec<(measure::Measurement, Option<Reference>)> = Vec::new();
    for round in 1..=args.rounds {
        let tag = format!("{}-{scenario}-r{round}", setup.tag);
        let run = WrkRun {
            script: setup.script,
            port: args.port,
            threads: args.threads,
            connections,
            seconds: args.duration,
            scenario: load,
            query_file: &query_file,
            tokens_file: &tokens,
            tag: &tag,
            accounts: args.accounts,
        };
        let measured = measure::measure(&[setup.pid], setup.pg, run, args.warmup)?;
        if !measured.peak_reset {
            notes.push("VmHWM could not be reset between scenarios: peak RSS is the process's peak so far".into());
        }
        eprintln!(
            "bench: {scenario:<10} round {round}/{} c={connections:<3} {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  \
             errors {}  rejected {}  CPU {:.2} ms/req  peak RSS {:.1} MiB  CPU srv {:.0}% pg {:.0}% other {:.0}%{}",
            args.rounds,
            measured.wrk.rps,
            measured.wrk.p50_us / 1000.0,
            measured.wrk.p99_us / 1000.0,
            measured.wrk.errors,
            measured.wrk.rejected,
            measured.cpu_ms_per_request,
            measured.peak_rss_mib,
            measured.cpu_server,
            measured.cpu_postgres,
            measured.cpu_other,
            if measured.wrk.sample.is_empty() {
                String::new()
            } else {
                format!("\n      first error: {}", measured.wrk.sample)
            }
        );
        let reference = match &target {
            None => None,
            // PostGraphile right after the server's own Dashboard run: same data, same load.
            Some(Target::PostGraphile) => {
                let postgraphile_tag = format!("{}-postgraphile-r{round}", setup.tag);
                let load = postgraphile::DashboardLoad {
                    wrk: WrkRun {
                        port: args.port + 1,
                        scenario: "postgraphile",
                        query_file: &setup.out.join("query-postgraphile-Dashboard.json"),
                        tokens_file: &setup.out.join("accounts-customers.txt"),
                        tag: &postgraphile_tag,
                        ..run
                    },
                    warmup: args.warmup,
                };
                let statements = setup.statements.get(postgraphile::STATEMENTS_MARKER).copied();
                let pg_setup = setup.postgraphile.context("PostGraphile's setup")?;
                let reference =
                    postgraphile::reference(pg_setup, setup.env, setup.server_dashboard, load, setup.out, statements)
                        .await?;
                if let Some(f) = &reference.figures {
                    eprintln!(
                        "bench: {:<10} round {round}/{} c={connections:<3} {:>8.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  \
                         errors {}  CPU {:.2} ms/req  peak RSS {:.1} MiB; server/PostGraphile {}",
                        "PostGraphile",
                        args.rounds,
                        f.rate,
                        f.p50_ms.unwrap_or(0.0),
                        f.p99_ms.unwrap_or(0.0),
                        f.errors,
                        f.cpu_ms_per_request.unwrap_or(0.0),
                        f.peak_rss_mib.unwrap_or(0.0),
                        reference.ratio(measured.wrk.rps),
                    );
                }
                if let Some(reason) = &reference.not_run {
                    notes.push(format!("PostGraphile not run: {reason}"));
                }
                Some(reference)
            }
            // The one-statement reference right after the server's run, the server idling.
            Some(Target::Pgbench { file, hot }) => {
                // On one row, more clients only queue longer for its lock: 32 reach about half
                // of what 16 do. The hot reference runs at the server's pool size (16), the
                // most that the server itself ever has in flight on that row, so that it is
                // the database's best for the work and not a straw man.
                let clients = if *hot { args.pgbench_clients } else { connections };
                let name = format!("pgbench `{file}`{}", if *hot { " on u1" } else { "" });
                Some(
                    run_pgbench(
                        setup.database_url,
                        &setup.pgbench_dir.join(file),
                        scenario,
                        measured.wrk.rps,
                        clients,
                        args,
                        setup.out,
                    )
                    .map_or_else(
                        |reason| {
                            notes.push(format!("pgbench {file} ({scenario}) failed: {reason}"));
                            Reference::not_run(name.clone(), true, false, clients, reason)
                        },
                        |p| Reference::pgbench(name.clone(), true, &p),
                    ),
                )
            }
        };
        rounds.push((measured, reference));
    }
    let locked_in_log = count_in_file_from(&server_log, log_offset, "database is locked");
    let round_figures: Vec<RoundFigures> = rounds
        .iter()
        .map(|(measured, reference)| RoundFigures {
            server_rate: measured.wrk.rps,
            reference_rate: reference.as_ref().and_then(|r| r.figures.as_ref()).map(|f| f.rate),
        })
        .collect();
    let peak_rss_mib = rounds.iter().map(|(m, _)| m.peak_rss_mib).fold(0.0, f64::max);
    let chosen = report::median_round(&round_figures);
    let (mut server, reference) = rounds.swap_remove(chosen);
    server.peak_rss_mib = peak_rss_mib;
    Ok(ScenarioResult {
        scenario: scenario.to_owned(),
        operation: operation.into(),
        connections,
        server,
        locked_in_log,
        statements: setup.statements.get(operation).copied(),
        references: reference.into_iter().collect(),
        rounds: round_figures,
        webhook: None,
    })
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

/// `referral-server check` after something ran, as the report's check line says it.
fn run_check(env: &server::Env, after: &str, reuse: bool) -> String {
    let started = Instant::now();
    match env.run(&["check"]) {
        Ok(_) => format!("passes {after} too ({:.1} s)", started.elapsed().as_secs_f64()),
        Err(err) => {
            let text = format!("{err:#}");
            let first = text
                .lines()
                .find(|l| l.starts_with("FAIL"))
                .unwrap_or("see the log")
                .trim()
                .to_owned();
            if reuse {
                format!("fails {after} too (the reused database's pgbench writes): {first}")
            } else {
                format!("FAILS {after}: {first}")
            }
        }
    }
}

/// Runs one pgbench script beside `scenario` with `clients` clients, on u1 alone for the hot
/// account and on every account otherwise; its output is kept in bench/out. A failure is
/// returned as its reason.
fn run_pgbench(
    url: &str,
    script: &Path,
    scenario: &str,
    server_rps: f64,
    clients: u32,
    args: &Args,
    out: &Path,
) -> Result<pgbench::PgbenchResult, String> {
    let file = script.file_name().and_then(|f| f.to_str()).unwrap_or("script");
    let stem = file.trim_end_matches(".sql");
    let amax = if scenario == "claim-hot" { 1 } else { args.accounts };
    let log_prefix = out.join(format!("pgbench-log-{scenario}-{stem}"));
    let run = pgbench::Script {
        path: script,
        clients,
        seconds: args.duration,
        defines: vec![("amin".into(), "1".into()), ("amax".into(), amax.to_string())],
        log_prefix: &log_prefix,
    };
    match pgbench::run(url, &run) {
        Ok(result) => {
            eprintln!(
                "bench: pgbench {file} ({}) c={clients}: {:.1} tps, p99 {:.2} ms, {} failed; server/pgbench {:.0} %",
                scenario,
                result.tps,
                result.p99_ms.unwrap_or(0.0),
                result.failed,
                100.0 * server_rps / result.tps
            );
            let _ = write(&out.join(format!("pgbench-{}-{stem}.txt", scenario)), &result.output);
            Ok(result)
        }
        Err(err) => {
            let reason = format!("{err:#}");
            eprintln!("bench: pgbench {file} ({}) failed: {reason}", scenario);
            Err(reason)
        }
    }
}

/// Sends one of each operation (and PostGraphile one Dashboard) with PostgreSQL's
/// `log_statement = 'all'` set on the database for this probe only, and counts the statements
/// logged for each. They are kept in `statements-<Operation>.log` beside the results.
async fn capture_statements(
    args: &Args,
    env: &server::Env,
    out: &Path,
    db_name: &str,
    documents: &BTreeMap<&str, String>,
    service: &str,
    postgraphile: Option<&postgraphile::Setup>,
) -> Result<BTreeMap<String, usize>> {
    let mut log = StatementLog::open(&args.pg_url, db_name, &env.database_url, &args.pg_log).await?;
    let mut probed = probe_operations(&mut log, args, env, out, documents, service).await;
    if let (Ok(()), Some(setup)) = (&probed, postgraphile) {
        probed = postgraphile::probe(&mut log, setup, out).await;
    }
    if let Err(err) = probed {
        log.abandon().await?;
        return Err(err);
    }
    let segments = log.close().await?;
    let names = ["Dashboard", "RewardStore", "ClaimReward", "RecordPurchase"];
    let mut counts = BTreeMap::new();
    for name in names
        .into_iter()
        .chain(postgraphile.map(|_| postgraphile::STATEMENTS_MARKER))
    {
        let lines = segments.get(name).cloned().unwrap_or_default();
        write(
            &out.join(format!("statements-{}.log", name.replace(' ', "-"))),
            &lines.join("\n"),
        )?;
        eprintln!("bench: {name}: {} SQL statements", lines.len());
        counts.insert(name.to_owned(), lines.len());
    }
    Ok(counts)
}

/// Waits until the server's sequencer has numbered every event in the outbox. On a reused
/// database an earlier run's backlog is still being sequenced when the probe server starts,
/// and the sequencer's statements would be counted as the probed requests' (seen: 8 and 9
/// statements for one ClaimReward).
async fn outbox_sequenced(database_url: &str) -> Result<()> {
    let mut conn = load::Conn::connect(database_url).await?;
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        let backlog = conn
            .scalar("SELECT COUNT(*) FROM outbox_events WHERE position IS NULL")
            .await?;
        if backlog == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the server left {backlog} outbox events unsequenced for 10 minutes");
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("bench: waiting for the server to sequence {backlog} outbox events before the probe");
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One request of each operation to a server started for the probe, each after its marker.
async fn probe_operations(
    log: &mut StatementLog,
    args: &Args,
    env: &server::Env,
    out: &Path,
    documents: &BTreeMap<&str, String>,
    service: &str,
) -> Result<()> {
    let server = env.start(&out.join("server-probe.log")).await?;
    let result: Result<()> = async {
        outbox_sequenced(&env.database_url).await?;
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
            log.mark(operation).await?;
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
        Ok(())
    }
    .await;
    server.stop()?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sizes() {
        assert_eq!(size_label(1_000_000), "1m");
        assert_eq!(size_label(1_000), "1k");
        assert_eq!(size_label(1_500), "1500");
    }
}
