//! The load: the contract's own documents, sent by `wrk` with `bench/wrk/graphql.lua`, whose
//! `done()` prints one `BENCH_RESULT {json}` line that is parsed here.

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;

/// The operation named `name` in a `.graphql` file, with the fragments it spreads (and theirs),
/// exactly as written there.
pub fn operation_document(source: &str, name: &str) -> Result<String> {
    let definitions = top_level_definitions(source);
    let find = |keyword: &str, wanted: &str| {
        definitions.iter().find(|d| {
            let mut words = d
                .split(|c: char| c.is_whitespace() || c == '(' || c == '{')
                .filter(|w| !w.is_empty());
            words.next() == Some(keyword) && words.next() == Some(wanted)
        })
    };
    let operation = ["query", "mutation"]
        .iter()
        .find_map(|k| find(k, name))
        .with_context(|| format!("no operation {name} in the contract"))?;
    let mut document = vec![operation.clone()];
    let mut index = 0;
    while index < document.len() {
        let spreads: Vec<String> = document[index]
            .match_indices("...")
            .filter_map(|(at, _)| {
                let rest = &document[index][at + 3..];
                let fragment: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                (!fragment.is_empty() && fragment != "on").then_some(fragment)
            })
            .collect();
        for fragment in spreads {
            let definition = find("fragment", &fragment).with_context(|| format!("no fragment {fragment}"))?;
            if !document.contains(definition) {
                document.push(definition.clone());
            }
        }
        index += 1;
    }
    Ok(document.join("\n\n"))
}

/// Splits a GraphQL document into its top-level definitions (comments dropped).
fn top_level_definitions(source: &str) -> Vec<String> {
    let mut definitions = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    for line in source.lines() {
        let code = line.split('#').next().unwrap_or("");
        if depth == 0 && code.trim().is_empty() {
            continue;
        }
        current.push_str(code.trim_end());
        current.push('\n');
        depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        if depth == 0 {
            definitions.push(current.trim().to_owned());
            current.clear();
        }
    }
    definitions
}

/// What one wrk run measured.
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Non-200 answers, bodies with "errors" (expected rejections aside), socket errors.
    pub errors: u64,
    /// INSUFFICIENT_BALANCE answers in the hot-account scenario: expected, not errors.
    pub rejected: u64,
    /// Bodies that mention "database is locked" (also counted in errors).
    pub locked: u64,
    /// Bodies with an INTERNAL error code (also counted in errors).
    pub internal: u64,
    pub non200: u64,
    pub socket_errors: u64,
    /// The first error body seen, for the report.
    #[serde(default)]
    pub sample: String,
}

pub fn parse_wrk_output(stdout: &str) -> Result<WrkResult> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .with_context(|| format!("wrk printed no BENCH_RESULT line:\n{stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("parsing {line}"))
}

#[derive(Clone, Copy)]
pub struct WrkRun<'a> {
    pub script: &'a Path,
    pub port: u16,
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
    pub scenario: &'a str,
    pub query_file: &'a Path,
    pub tokens_file: &'a Path,
    pub tag: &'a str,
    pub accounts: u64,
}

pub fn run_wrk(run: &WrkRun<'_>) -> Result<WrkResult> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", run.threads))
        .arg(format!("-c{}", run.connections))
        .arg(format!("-d{}s", run.seconds))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(run.script)
        .arg(format!("http://127.0.0.1:{}", run.port))
        .arg("--")
        .arg(run.scenario)
        .arg(run.query_file)
        .arg(run.tokens_file)
        .arg(run.tag)
        .arg(run.accounts.to_string())
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk_output(&stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = r#"
# comment
query Dashboard($first: Int = 20) {
  me {
    rewardHistory(first: $first) { edges { node { ...HistoryEntry } } }
  }
}

query Other { me { id } }

fragment HistoryEntry on LedgerEntry {
  id # the id
  ...Inner
}

fragment Inner on LedgerEntry { kind }
"#;

    #[test]
    fn extracts_an_operation_with_its_fragments() -> Result<()> {
        let doc = operation_document(CONTRACT, "Dashboard")?;
        assert!(doc.starts_with("query Dashboard($first: Int = 20) {"));
        assert!(doc.contains("fragment HistoryEntry on LedgerEntry {"));
        assert!(doc.contains("fragment Inner on LedgerEntry { kind }"));
        assert!(!doc.contains("query Other"));
        assert!(!doc.contains('#'));
        assert!(operation_document(CONTRACT, "Missing").is_err());
        Ok(())
    }

    #[test]
    fn parses_the_lua_summary() -> Result<()> {
        let out = "Running 12s test\nBENCH_RESULT {\"requests\":1200,\"duration_us\":12000000,\"rps\":100.0,\
                   \"p50_us\":1500,\"p90_us\":3000,\"p99_us\":9000,\"max_us\":20000,\"errors\":2,\"rejected\":0,\
                   \"locked\":0,\"internal\":1,\"non200\":0,\"socket_errors\":1,\"sample\":\"x\"}\n";
        let result = parse_wrk_output(out)?;
        assert_eq!(result.requests, 1200);
        assert_eq!(result.p99_us, 9000.0);
        assert_eq!(result.errors, 2);
        assert!(parse_wrk_output("no summary").is_err());
        Ok(())
    }
}
