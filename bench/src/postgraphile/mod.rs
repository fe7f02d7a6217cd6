//! PostGraphile 4, the Dashboard's reference on PostgreSQL: installed from the npm registry
//! into bench/out (once), started over the benchmark's database with production flags, asked
//! the Dashboard in the schema it generates from the server's tables
//! (bench/postgraphile/dashboard.graphql), and its answer compared value by value with the
//! server's once mapped to the server's shape. The Dashboard's account comes from a variable:
//! PostGraphile knows nothing of the server's tokens.

mod dashboard;

use crate::load_gen::WrkRun;
use crate::report::Reference;
use crate::statements::StatementLog;
use crate::{measure, server};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The exact version installed: the latest 4.x (`npm view postgraphile@4 version`).
pub const VERSION: &str = "4.14.1";
/// Cluster workers: one per core of this machine.
pub const WORKERS: u32 = 2;
/// Database connections per worker: together, the server's pool (16).
pub const POOL_PER_WORKER: u32 = 8;

/// The command-line flags after the connection and port: production settings (no GraphiQL, no
/// query log), the recommended schema options, and the default mutations left out (the
/// Dashboard is a query).
/// `workers` 0: one process, without the cluster.
pub fn flags(workers: u32) -> Vec<String> {
    let cluster = ["--cluster-workers".to_owned(), workers.to_string()];
    let options = [
        "--schema",
        "public",
        "--max-pool-size",
        &POOL_PER_WORKER.to_string(),
        "--disable-graphiql",
        "--disable-query-log",
        "--dynamic-json",
        "--no-setof-functions-contain-nulls",
        "--disable-default-mutations",
        "--no-ignore-rbac",
        "--no-ignore-indexes",
    ]
    .map(str::to_owned);
    let cluster = if workers > 0 { &cluster[..] } else { &[] };
    cluster.iter().cloned().chain(options).collect()
}

/// Installs `postgraphile@VERSION` under `dir` with npm unless it is there; returns its CLI.
pub fn install(dir: &Path) -> Result<PathBuf> {
    let cli = dir.join("node_modules/postgraphile/cli.js");
    if cli.exists() {
        return Ok(cli);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("bench: npm install postgraphile@{VERSION} into {}", dir.display());
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .arg(format!("postgraphile@{VERSION}"))
        .output()
        .context("running npm (is node installed?)")?;
    if !output.status.success() || !cli.exists() {
        // The exact error on the terminal; its first lines in the report.
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{stderr}");
        let summary: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("npm error ").or_else(|| l.strip_prefix("npm ERR! ")))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('{'))
            .filter(|l| !["at ", "syscall ", "errno "].iter().any(|p| l.starts_with(p)))
            .take(2)
            .collect();
        bail!(
            "npm install postgraphile@{VERSION} failed ({}): {}",
            output.status,
            summary.join("; ")
        );
    }
    Ok(cli)
}

/// A running PostGraphile: its master process and its cluster workers.
pub struct PostGraphile {
    master: Child,
    pub port: u16,
}

impl PostGraphile {
    /// Starts PostGraphile on `port` with `workers` cluster workers (0: one process, no
    /// cluster) and its output in `log`, and waits until it answers.
    pub async fn start(cli: &Path, database_url: &str, port: u16, workers: u32, log: &Path) -> Result<PostGraphile> {
        let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let master = Command::new("node")
            .arg(cli)
            .args([
                "--connection",
                database_url,
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(flags(workers))
            .env("NODE_ENV", "production")
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .context("starting PostGraphile (node)")?;
        let postgraphile = PostGraphile { master, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let probe = r#"{"query":"{ __typename }"}"#;
            if let Ok((200, body)) = server::http(port, "POST", "/graphql", None, Some(probe)).await
                && body.contains("Query")
                // The master and every worker.
                && postgraphile.pids().len() > workers as usize
            {
                return Ok(postgraphile);
            }
            if Instant::now() > deadline {
                postgraphile.stop()?;
                bail!("PostGraphile did not answer within 90 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        server::process_tree(self.master.id())
    }

    /// The Dashboard of `external_id`, as PostGraphile answers it.
    pub async fn dashboard(&self, document: &str, external_id: &str) -> Result<Value> {
        let body = json!({
            "operationName": "Dashboard",
            "query": document,
            "variables": { "externalId": external_id },
        });
        let (status, answer) = server::http(self.port, "POST", "/graphql", None, Some(&body.to_string())).await?;
        let answer: Value =
            serde_json::from_str(&answer).with_context(|| format!("PostGraphile answered {status}: {answer}"))?;
        if status != 200 || answer.get("errors").is_some() {
            bail!("PostGraphile answered the Dashboard with {status}: {answer}");
        }
        Ok(answer)
    }

    /// Stops the master and its workers (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(mut self) -> Result<()> {
        let pids = self.pids();
        for pid in &pids {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let master_done = self.master.try_wait()?.is_some();
            if master_done && pids.iter().all(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in pids.iter().skip(1) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        if self.master.try_wait()?.is_none() {
            self.master.kill().context("killing PostGraphile")?;
        }
        self.master.wait()?;
        Ok(())
    }
}

/// PostGraphile as installed, and what it is asked.
pub struct Setup {
    pub cli: PathBuf,
    pub database_url: String,
    /// The Dashboard in its schema.
    pub document: String,
    pub port: u16,
}

/// The load PostGraphile gets: the server's dashboard scenario's (its wrk run sends the same
/// accounts' external ids as variables), and the same warm-up.
pub struct DashboardLoad<'a> {
    pub wrk: WrkRun<'a>,
    pub warmup: u32,
}

/// The marker of PostGraphile's Dashboard in the statement log.
pub const STATEMENTS_MARKER: &str = "PostGraphile Dashboard";

/// PostGraphile answering the Dashboard under the server's dashboard load, right after the
/// server's run (the server idles meanwhile). Its Dashboard of u2 must be the server's
/// (`server_document`, asked of the server at `env`), value by value once mapped to the
/// server's shape: a difference fails the run. PostGraphile not installed, or not starting, is a
/// reference not run.
pub async fn reference(
    setup: &Result<Setup, String>,
    env: &server::Env,
    server_document: &str,
    load: DashboardLoad<'_>,
    out: &Path,
    statements: Option<usize>,
) -> Result<Reference> {
    let name = format!("PostGraphile {VERSION} ({WORKERS} workers)");
    let connections = load.wrk.connections;
    let not_run = |reason: String| Reference::not_run(name.clone(), true, true, connections, reason);
    let setup = match setup {
        Ok(setup) => setup,
        Err(reason) => return Ok(not_run(reason.clone())),
    };
    let log = out.join("postgraphile.log");
    let instance = match PostGraphile::start(&setup.cli, &setup.database_url, setup.port, WORKERS, &log).await {
        Ok(instance) => instance,
        Err(err) => return Ok(not_run(format!("{err:#}"))),
    };
    let measured = async {
        compare(env, server_document, setup, &instance, out).await?;
        measure::measure(&instance.pids(), true, load.wrk, load.warmup)
    }
    .await;
    instance.stop()?;
    let measured = measured?;
    if !measured.wrk.sample.is_empty() {
        eprintln!("bench: PostGraphile's first error: {}", measured.wrk.sample);
    }
    Ok(Reference::server(name, connections, &measured, statements))
}

/// The server's and PostGraphile's Dashboard of u2 (three friends, a referrer), compared value
/// by value; both answers are kept in `out`.
async fn compare(
    env: &server::Env,
    server_document: &str,
    setup: &Setup,
    instance: &PostGraphile,
    out: &Path,
) -> Result<()> {
    let body = json!({ "operationName": "Dashboard", "query": server_document, "variables": {} });
    let token = crate::mint("customer", "u2")?;
    let (status, answer) = server::http(env.port, "POST", "/graphql", Some(&token), Some(&body.to_string())).await?;
    let server_answer: Value =
        serde_json::from_str(&answer).with_context(|| format!("the server answered {status}: {answer}"))?;
    if status != 200 || server_answer.get("errors").is_some() {
        bail!("the server answered the Dashboard of u2 with {status}: {answer}");
    }
    crate::write(
        &out.join("compare-Dashboard-server.json"),
        &serde_json::to_string_pretty(&server_answer)?,
    )?;
    let reference = instance.dashboard(&setup.document, "u2").await?;
    crate::write(
        &out.join("compare-Dashboard-postgraphile.json"),
        &serde_json::to_string_pretty(&reference)?,
    )?;
    let mapped = dashboard::as_dashboard(&reference, &format!("http://127.0.0.1:{}", env.port))?;
    if let Some(difference) = dashboard::first_difference(&server_answer["data"], &mapped) {
        bail!(
            "PostGraphile's Dashboard of u2 is not the server's: {difference} (both answers in {})",
            out.display()
        );
    }
    eprintln!("bench: PostGraphile's Dashboard of u2 is the server's, value by value");
    Ok(())
}

/// PostGraphile's Dashboard of u2 after its marker in the statement log. A single process,
/// without cluster workers: once it answers, its schema is built, so no worker's introspection
/// falls after the marker.
pub async fn probe(log: &mut StatementLog, setup: &Setup, out: &Path) -> Result<()> {
    // Its start (introspection) is nobody's request.
    log.mark("PostGraphile start").await?;
    let probe_log = out.join("postgraphile-probe.log");
    let instance = PostGraphile::start(&setup.cli, &setup.database_url, setup.port, 0, &probe_log).await?;
    let result: Result<()> = async {
        log.mark(STATEMENTS_MARKER).await?;
        instance.dashboard(&setup.document, "u2").await?;
        log.mark("end").await?;
        Ok(())
    }
    .await;
    instance.stop()?;
    result
}
