//! Statements per request, from PostgreSQL's own log: `log_statement = 'all'` is set on the
//! benchmark's database for a probe (connections opened after it log every statement), the
//! probe sends one request of each kind between marker queries, and the statements logged
//! between two markers are that request's.

use crate::load;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};

/// `log_statement = 'all'` on one database, from `open` to `close`.
pub struct StatementLog {
    admin: load::Conn,
    marker: load::Conn,
    db_name: String,
    log: PathBuf,
    offset: u64,
}

impl StatementLog {
    /// Turns statement logging on for `db_name`; only connections opened from now on log, so
    /// start the processes to probe after this.
    pub async fn open(pg_url: &str, db_name: &str, database_url: &str, log: &Path) -> Result<StatementLog> {
        let mut admin = load::Conn::connect(&format!("{}/postgres", pg_url.trim_end_matches('/'))).await?;
        admin
            .execute(&format!("ALTER DATABASE {db_name} SET log_statement = 'all'"))
            .await?;
        let offset = std::fs::metadata(log)
            .map(|m| m.len())
            .with_context(|| format!("reading {}", log.display()))?;
        let marker = load::Conn::connect(database_url).await?;
        Ok(StatementLog {
            admin,
            marker,
            db_name: db_name.to_owned(),
            log: log.to_path_buf(),
            offset,
        })
    }

    /// What follows, until the next marker, is `name`'s.
    pub async fn mark(&mut self, name: &str) -> Result<()> {
        self.marker.execute(&format!("SELECT 'bench-marker {name}'")).await
    }

    /// Turns logging off again and returns the statements logged after each marker.
    pub async fn close(mut self) -> Result<BTreeMap<String, Vec<String>>> {
        self.mark("end").await?;
        // The log is written asynchronously by the server's logger.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.admin
            .execute(&format!("ALTER DATABASE {} RESET log_statement", self.db_name))
            .await?;
        let mut file = std::fs::File::open(&self.log)?;
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(split_statements(&text, &self.db_name))
    }

    /// Turns logging off without reading it (a probe that failed).
    pub async fn abandon(mut self) -> Result<()> {
        self.admin
            .execute(&format!("ALTER DATABASE {} RESET log_statement", self.db_name))
            .await
    }
}

/// The statements PostgreSQL logged for database `db`, grouped by the marker before them.
pub fn split_statements(log: &str, db: &str) -> BTreeMap<String, Vec<String>> {
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
2026-01-01 00:00:00 UTC [1] postgres@bench_1k LOG:  statement: SELECT 'bench-marker PostGraphile Dashboard'
2026-01-01 00:00:00 UTC [4] postgres@bench_1k LOG:  execute GKd6I+syh9hR7NtI+AaUDd3apNE=: select to_json(1)
2026-01-01 00:00:00 UTC [1] postgres@bench_1k LOG:  statement: SELECT 'bench-marker end'
2026-01-01 00:00:00 UTC [2] postgres@bench_1k LOG:  execute <unnamed>: SELECT 2
";
        let segments = split_statements(log, "bench_1k");
        assert_eq!(segments["Dashboard"], vec!["SELECT 1".to_owned(), "BEGIN".to_owned()]);
        assert_eq!(segments["PostGraphile Dashboard"], vec!["select to_json(1)".to_owned()]);
        assert_eq!(segments["end"], vec!["SELECT 2".to_owned()]);
    }
}
