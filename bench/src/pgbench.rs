//! pgbench on the benchmark's database: the one-statement references the write scenarios are
//! measured against (bench/pgbench/{claim,purchase}_one.sql), each right after a round of the
//! server's (which idles meanwhile), and, once the server has stopped, the statements the server
//! itself issues (bench/pgbench/{claim,purchase,dashboard}.sql), which say what PostgreSQL alone
//! does with them.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::process::Command;

/// One pgbench script and how to run it.
pub struct Script<'a> {
    pub path: &'a Path,
    pub clients: u32,
    pub seconds: u32,
    /// `-D name=value`: the accounts u:amin..u:amax to draw from.
    pub defines: Vec<(String, String)>,
    /// Where pgbench writes its per-transaction log (read for latencies, then removed).
    pub log_prefix: &'a Path,
}

/// What one pgbench run measured.
#[derive(Debug, Clone, serde::Serialize, Default)]
pub struct PgbenchResult {
    pub tps: f64,
    pub clients: u32,
    pub failed: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// SQL statements per transaction in the script.
    pub statements: usize,
    #[serde(skip)]
    pub output: String,
}

pub fn run(url: &str, script: &Script<'_>) -> Result<PgbenchResult> {
    let text = std::fs::read_to_string(script.path).with_context(|| format!("reading {}", script.path.display()))?;
    let mut command = Command::new("pgbench");
    command
        .arg("-n")
        .args(["-M", "prepared"])
        .arg(format!("-c{}", script.clients))
        .arg("-j2")
        .arg(format!("-T{}", script.seconds))
        .arg("--log")
        .arg(format!("--log-prefix={}", script.log_prefix.display()))
        .arg("-f")
        .arg(script.path);
    for (name, value) in &script.defines {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let output = command.arg(url).output().context("running pgbench")?;
    let latencies = take_latencies(script.log_prefix);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let tps = parse_tps(&stdout).with_context(|| {
        let error = stderr
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("error"))
            .unwrap_or(stderr.lines().next().unwrap_or(""));
        format!("pgbench printed no tps ({}): {error}", output.status)
    })?;
    Ok(PgbenchResult {
        tps,
        clients: script.clients,
        failed: parse_failed(&stdout),
        p50_ms: percentile(&latencies, 0.50).map(|us| us / 1000.0),
        p99_ms: percentile(&latencies, 0.99).map(|us| us / 1000.0),
        statements: statements_in(&text),
        output: stdout,
    })
}

/// The SQL statements of a script: what is not a meta-command (`\set`) or a comment. Each
/// statement ends with a `;`, or with `\gset`/`\aset` (which keep its answer in variables).
pub fn statements_in(script: &str) -> usize {
    let mut count = 0;
    let mut open = false;
    for line in script.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("--") || (line.starts_with('\\') && !open) {
            continue;
        }
        open = true;
        let code = line.split(" --").next().unwrap_or(line).trim_end();
        if code.ends_with(';') || code.contains("\\gset") || code.contains("\\aset") {
            count += 1;
            open = false;
        }
    }
    count
}

/// Latencies (µs) of the transactions pgbench logged under `prefix` (one file per thread),
/// removing the files.
fn take_latencies(prefix: &Path) -> Vec<f64> {
    let (Some(dir), Some(name)) = (prefix.parent(), prefix.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let mut latencies = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return latencies;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if !file_name.starts_with(&format!("{name}.")) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            latencies.extend(parse_latencies(&text));
        }
        let _ = std::fs::remove_file(entry.path());
    }
    latencies
}

/// The third field of each line of a pgbench transaction log: the latency in µs ("failed"
/// and "skipped" transactions have none).
fn parse_latencies(log: &str) -> impl Iterator<Item = f64> + '_ {
    log.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse::<f64>().ok())
}

fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The transactions per second pgbench reports (without the initial connection time).
pub fn parse_tps(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("tps = "))
        .find(|l| l.contains("without initial connection time"))
        .or_else(|| stdout.lines().find(|l| l.trim_start().starts_with("tps = ")))
        .and_then(|l| {
            l.trim_start()
                .strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

fn parse_failed(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_output_and_log() {
        let out = "number of failed transactions: 3 (0.1%)\nlatency average = 9.1 ms\n\
                   initial connection time = 20.5 ms\ntps = 1751.234567 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(1751.234567));
        assert_eq!(parse_tps("nothing"), None);
        assert_eq!(parse_failed(out), 3);
        let log = "0 1 1500 0 1700000000 123\n1 1 2500 0 1700000000 456\n2 1 failed 0 1700000000 789\n";
        let latencies: Vec<f64> = parse_latencies(log).collect();
        assert_eq!(latencies, vec![1500.0, 2500.0]);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.50), Some(50.0));
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn counts_the_statements_of_a_script() {
        let script = "-- a comment; with a semicolon\n\\set aid random(1, 9)\nBEGIN;\n\
                      SELECT 1 FROM t WHERE a = :aid \\gset acc_\nWITH x AS (\n  SELECT 1\n)\nSELECT * FROM x;\nCOMMIT;\n";
        assert_eq!(statements_in(script), 4);
    }
}
