//! The figures of a run: printed as a Markdown table and written into BENCHMARKS.md between
//! the run's markers, leaving the prose around them alone.

use crate::load_gen::{PgbenchResult, WrkResult};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct ScenarioResult {
    pub scenario: String,
    pub operation: String,
    pub connections: u32,
    pub wrk: WrkResult,
    /// Peak RSS of the server during the scenario (warm-up included), MiB.
    pub peak_rss_mib: f64,
    /// CPU during the measured run, in % of one core: server, PostgreSQL, everything else.
    pub cpu_server: f64,
    pub cpu_postgres: f64,
    pub cpu_other: f64,
    /// Lines of the server log that say "database is locked".
    pub locked_in_log: u64,
    pub statements: Option<usize>,
    pub pgbench: Option<PgbenchResult>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    pub key: String,
    pub title: String,
    pub command: String,
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub dataset: String,
    pub check: String,
    pub scenarios: Vec<ScenarioResult>,
    pub notes: Vec<String>,
}

fn ms(us: f64) -> String {
    let v = us / 1000.0;
    if v < 10.0 { format!("{v:.2}") } else { format!("{v:.1}") }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl RunReport {
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| scenario | conns | req/s | p50 ms | p99 ms | errors | rejected | peak RSS MiB | CPU % server / pg / other | SQL stmts/req | pgbench tps | server / pgbench |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n",
        );
        for s in &self.scenarios {
            let (pgbench, ratio) = match &s.pgbench {
                Some(p) => (
                    format!("{} (c={})", thousands(p.tps), p.clients),
                    format!("{:.0} %", 100.0 * s.wrk.rps / p.tps),
                ),
                None => ("–".into(), "–".into()),
            };
            let mut errors = s.wrk.errors.to_string();
            if s.wrk.locked > 0 || s.locked_in_log > 0 {
                errors.push_str(&format!(" ({} locked)", s.wrk.locked.max(s.locked_in_log)));
            }
            out.push_str(&format!(
                "| {} (`{}`) | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} / {:.0} / {:.0} | {} | {} | {} |\n",
                s.scenario,
                s.operation,
                s.connections,
                thousands(s.wrk.rps),
                ms(s.wrk.p50_us),
                ms(s.wrk.p99_us),
                errors,
                s.wrk.rejected,
                s.peak_rss_mib,
                s.cpu_server,
                s.cpu_postgres,
                s.cpu_other,
                s.statements.map_or("–".into(), |n| n.to_string()),
                pgbench,
                ratio,
            ));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "#### {}\n\n- command: `{}`\n- date: {}; machine: {}; load average before: {}\n- dataset: {}\n- `referral-server check`: {}\n\n",
            self.title, self.command, self.date, self.machine, self.load_before, self.dataset, self.check
        );
        out.push_str(&self.table());
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// Replaces the block between `<!-- bench:KEY -->` and `<!-- /bench:KEY -->` in `document`,
/// or appends one at the end.
pub fn splice(document: &str, key: &str, block: &str) -> String {
    let open = format!("<!-- bench:{key} -->");
    let close = format!("<!-- /bench:{key} -->");
    let fresh = format!("{open}\n{}\n{close}", block.trim_end());
    match (document.find(&open), document.find(&close)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{fresh}{}", &document[..start], &document[end + close.len()..])
        }
        _ => format!("{}\n\n{fresh}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_a_run_into_its_markers_and_keeps_the_prose() {
        let doc = "# Benchmarks\n\nprose\n\n<!-- bench:pg-1 -->\nold\n<!-- /bench:pg-1 -->\n\nmore prose\n";
        let out = splice(doc, "pg-1", "new table\n");
        assert_eq!(
            out,
            "# Benchmarks\n\nprose\n\n<!-- bench:pg-1 -->\nnew table\n<!-- /bench:pg-1 -->\n\nmore prose\n"
        );
        let appended = splice("# B\n", "sqlite-1", "t");
        assert_eq!(
            appended,
            "# B\n\n<!-- bench:sqlite-1 -->\nt\n<!-- /bench:sqlite-1 -->\n"
        );
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(1500.0), "1.50");
        assert_eq!(ms(45_000.0), "45.0");
    }
}
