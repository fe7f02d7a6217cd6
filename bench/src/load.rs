//! Bulk-loads the dataset into a database the server's migrations created: PostgreSQL by
//! `COPY … FROM STDIN` (foreign-key triggers off for the session), SQLite by multi-row
//! `INSERT`s in one transaction. Secondary indexes are dropped first and recreated from their
//! own definitions afterwards, which is several times faster than maintaining them row by row.

use crate::dataset::{self, Counters, PRODUCTS, PROVIDERS, Shape, Table, V};
use anyhow::{Context as _, Result};
use sea_orm::sqlx::{self, AssertSqlSafe, Connection as _, PgConnection, SqliteConnection};
use std::str::FromStr as _;
use std::time::Instant;

/// Accounts generated per round trip.
const CHUNK: u64 = 2_000;
/// Rows per SQLite INSERT statement.
const SQLITE_ROWS: usize = 500;

pub enum Conn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl Conn {
    pub async fn connect(url: &str) -> Result<Conn> {
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .foreign_keys(false)
                .busy_timeout(std::time::Duration::from_secs(30));
            Ok(Conn::Sqlite(
                SqliteConnection::connect_with(&options)
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            ))
        } else {
            Ok(Conn::Pg(
                PgConnection::connect(url)
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            ))
        }
    }

    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Pg(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(c).await.map(drop),
            Conn::Sqlite(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(c).await.map(drop),
        }
        .with_context(|| format!("running {}", short(sql)))
    }

    pub async fn scalar(&mut self, sql: &str) -> Result<i64> {
        match self {
            Conn::Pg(c) => {
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(c)
                    .await
            }
            Conn::Sqlite(c) => {
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(c)
                    .await
            }
        }
        .with_context(|| format!("running {}", short(sql)))
    }

    /// Rows of two text columns.
    pub async fn pairs(&mut self, sql: &str) -> Result<Vec<(String, String)>> {
        match self {
            Conn::Pg(c) => {
                sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(c)
                    .await
            }
            Conn::Sqlite(c) => {
                sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(c)
                    .await
            }
        }
        .with_context(|| format!("running {}", short(sql)))
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }
}

fn short(sql: &str) -> String {
    sql.chars().take(120).collect()
}

/// One row in PostgreSQL's COPY text format.
pub fn copy_line(row: &[V], out: &mut String) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match value {
            V::I(n) => out.push_str(&n.to_string()),
            V::Null => out.push_str("\\N"),
            V::S(s) => {
                for ch in s.chars() {
                    match ch {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

/// One row as an SQL tuple literal.
pub fn sql_tuple(row: &[V], out: &mut String) {
    out.push('(');
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match value {
            V::I(n) => out.push_str(&n.to_string()),
            V::Null => out.push_str("NULL"),
            V::S(s) => {
                out.push('\'');
                out.push_str(&s.replace('\'', "''"));
                out.push('\'');
            }
        }
    }
    out.push(')');
}

#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    /// (table, rows)
    pub rows: Vec<(&'static str, u64)>,
    pub seconds: f64,
}

impl LoadStats {
    pub fn count(&self, table: &str) -> u64 {
        self.rows.iter().find(|(t, _)| *t == table).map_or(0, |(_, n)| *n)
    }
}

const TABLES: &str = "'accounts','referrals','events','claims','ledger_entries','lot_allocations','balances'";

pub async fn load(conn: &mut Conn, shape: &Shape, rule_id: i64) -> Result<LoadStats> {
    let started = Instant::now();
    let pg = conn.is_pg();
    if pg {
        conn.execute(
            "SET session_replication_role = replica; SET synchronous_commit = off; \
             SET maintenance_work_mem = '256MB'",
        )
        .await?;
    } else {
        conn.execute("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144")
            .await?;
    }
    let indexes = if pg {
        conn.pairs(&format!(
            "SELECT i.indexname::text, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' \
             AND i.tablename IN ({TABLES}) AND NOT EXISTS \
             (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ))
        .await?
    } else {
        conn.pairs(&format!(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({TABLES})"
        ))
        .await?
    };
    for (name, _) in &indexes {
        conn.execute(&format!("DROP INDEX {name}")).await?;
    }
    eprintln!("bench: dropped {} secondary indexes for the load", indexes.len());

    let base = dataset::timestamp(1_735_689_600);
    let providers: Vec<String> = PROVIDERS
        .iter()
        .enumerate()
        .map(|(i, (key, name, rate))| {
            format!(
                "({}, '{key}', '{name}', {}, '{base}', '{base}')",
                i + 1,
                rate * dataset::MICROS
            )
        })
        .collect();
    let products: Vec<String> = PRODUCTS
        .iter()
        .enumerate()
        .map(|(i, (key, provider, name, category, rate))| {
            format!(
                "({}, '{key}', {}, '{name}', '{category}', {}, '{base}', '{base}')",
                i + 1,
                provider + 1,
                rate * dataset::MICROS
            )
        })
        .collect();
    if !pg {
        conn.execute("BEGIN").await?;
    }
    conn.execute(&format!(
        "INSERT INTO providers (id, key, name, redemption_rate, created_at, updated_at) VALUES {}",
        providers.join(",")
    ))
    .await?;
    conn.execute(&format!(
        "INSERT INTO products (id, key, provider_id, name, category, product_rate, created_at, updated_at) VALUES {}",
        products.join(",")
    ))
    .await?;

    let mut stats = LoadStats::default();
    for table in Table::ALL {
        let table_started = Instant::now();
        let columns = table.columns().join(", ");
        let mut counters = Counters::default();
        let mut rows = 0u64;
        let mut reported = 0u64;
        let mut first = 1;
        while first <= shape.accounts {
            let last = (first + CHUNK - 1).min(shape.accounts);
            let mut buf = String::new();
            let mut statements = Vec::new();
            let mut in_statement = 0usize;
            counters = dataset::rows(shape, table, rule_id, first..=last, counters, |row| {
                rows += 1;
                if pg {
                    copy_line(&row, &mut buf);
                } else {
                    if in_statement == 0 {
                        buf.push_str(&format!("INSERT INTO {} ({columns}) VALUES ", table.name()));
                    } else {
                        buf.push(',');
                    }
                    sql_tuple(&row, &mut buf);
                    in_statement += 1;
                    if in_statement == SQLITE_ROWS {
                        statements.push(std::mem::take(&mut buf));
                        in_statement = 0;
                    }
                }
            });
            match conn {
                Conn::Pg(c) if !buf.is_empty() => {
                    let mut copy = c
                        .copy_in_raw(&format!("COPY {} ({columns}) FROM STDIN", table.name()))
                        .await
                        .with_context(|| format!("starting COPY into {}", table.name()))?;
                    copy.send(buf.into_bytes())
                        .await
                        .with_context(|| format!("COPY into {}", table.name()))?;
                    copy.finish()
                        .await
                        .with_context(|| format!("finishing COPY into {}", table.name()))?;
                }
                Conn::Pg(_) => {}
                Conn::Sqlite(c) => {
                    if !buf.is_empty() {
                        statements.push(buf);
                    }
                    for statement in statements {
                        sqlx::raw_sql(AssertSqlSafe(statement))
                            .execute(&mut *c)
                            .await
                            .with_context(|| format!("inserting into {}", table.name()))?;
                    }
                }
            }
            if last * 10 / shape.accounts > reported || last == shape.accounts {
                reported = last * 10 / shape.accounts;
                eprintln!(
                    "bench: {:<16} {last:>9}/{} accounts, {rows:>10} rows, {:.1} s",
                    table.name(),
                    shape.accounts,
                    table_started.elapsed().as_secs_f64()
                );
            }
            first = last + 1;
        }
        stats.rows.push((table.name(), rows));
    }
    if !pg {
        conn.execute("COMMIT").await?;
    }
    for (name, definition) in &indexes {
        let index_started = Instant::now();
        conn.execute(definition).await?;
        eprintln!(
            "bench: recreated index {name} in {:.1} s",
            index_started.elapsed().as_secs_f64()
        );
    }
    if pg {
        for table in [
            "accounts",
            "referrals",
            "providers",
            "products",
            "events",
            "claims",
            "ledger_entries",
            "lot_allocations",
        ] {
            conn.scalar(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
            ))
            .await?;
        }
        conn.execute("SET session_replication_role = origin").await?;
        let analyze = Instant::now();
        conn.execute("VACUUM ANALYZE").await?;
        eprintln!("bench: VACUUM ANALYZE in {:.1} s", analyze.elapsed().as_secs_f64());
    }
    // The load wrote without syncing (gigabytes at 10^6): left to the kernel's write-back and
    // to PostgreSQL's next checkpoint (within its five minutes), those writes would land in
    // the measured rounds. They are written out here, before the first.
    let durable = Instant::now();
    if pg {
        conn.execute("CHECKPOINT").await?;
    } else {
        // With synchronous back on, the checkpoint syncs the WAL and the database file.
        conn.execute("PRAGMA synchronous = NORMAL").await?;
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    }
    eprintln!(
        "bench: the load written out to disk in {:.1} s",
        durable.elapsed().as_secs_f64()
    );
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_copy_and_sql_values() {
        let row = vec![V::I(-5), V::S("a\tb\\c'd".into()), V::Null];
        let mut copy = String::new();
        copy_line(&row, &mut copy);
        assert_eq!(copy, "-5\ta\\tb\\\\c'd\t\\N\n");
        let mut sql = String::new();
        sql_tuple(&row, &mut sql);
        assert_eq!(sql, "(-5,'a\tb\\c''d',NULL)");
    }
}
