//! What both test binaries (tests/api, tests/process) need to give a test a database of its
//! own: a temporary directory, and a database that is either empty or already migrated, as a
//! SQLite file or as a new database on the PostgreSQL server of `TEST_DATABASE_URL`. Each binary
//! includes this file with `#[path]`.
//!
//! Migrating is the larger part of what a new test database costs (on PostgreSQL, where every
//! table, index and seed row is DDL, more than creating the database), so each test binary
//! migrates once per run, into a template, and every test that wants a migrated database gets a
//! copy of it: on PostgreSQL a `CREATE DATABASE ...
//! TEMPLATE`, on SQLite the template file's bytes written to the test's own file. The server
//! still runs its migrations when it starts, and finds nothing to do.

// Each binary uses a part of it.
#![allow(dead_code)]

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use std::path::Path;
use std::time::Duration;
pub use tempfile::TempDir;
use tokio::sync::OnceCell;

/// A temporary directory, removed when dropped.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

pub fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// The SQLite URL of a file (created by the first connection if it does not exist).
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// `TEST_DATABASE_URL` when it names a PostgreSQL server; `None` when it is unset or empty (the
/// tests use SQLite). Anything else panics.
fn postgres_server_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Some(url),
        Ok(url) if !url.trim().is_empty() => {
            panic!("TEST_DATABASE_URL must be a postgres:// URL or unset (got {url:?})")
        }
        _ => None,
    }
}

/// With `TEST_DATABASE_URL` set to a PostgreSQL URL: creates an empty `rs_test_<random>` on that
/// server and returns its URL. Unset (or empty): `None`, the test uses SQLite.
pub async fn fresh_postgres_database() -> Option<String> {
    let server = postgres_server_url()?;
    Some(create_postgres_database(&server, None).await)
}

/// Like `fresh_postgres_database`, but the new database is a copy of one migrated once per run
/// (`rs_tpl_<random>`, made by the first test that asks).
pub async fn migrated_postgres_database() -> Option<String> {
    let server = postgres_server_url()?;
    let template = postgres_template(&server).await;
    Some(create_postgres_database(&server, Some(template)).await)
}

/// Writes a migrated SQLite database to `path` (a copy of the one this run migrated first) and
/// returns its URL.
pub async fn migrated_sqlite_database(path: &Path) -> String {
    let bytes = sqlite_template().await;
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write the test database {path:?}: {e}"));
    sqlite_url(path)
}

// ---------------------------------------------------------------------------------------------
// The templates, made once per test binary run

/// The name of this run's migrated PostgreSQL template. Only the name is kept: tests run on
/// many threads, each with a runtime of its own, and a pool kept here would belong to the
/// runtime of whichever test made the template, and end with it.
static POSTGRES_TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// This run's migrated SQLite database, as the bytes of its file. Kept in memory rather than
/// as a file: a static is never dropped, so a temporary directory kept here would outlive the
/// run. The database is small (a few hundred kB).
static SQLITE_TEMPLATE: OnceCell<Vec<u8>> = OnceCell::const_new();

async fn postgres_template(server: &str) -> &'static str {
    POSTGRES_TEMPLATE
        .get_or_init(|| async {
            let name = format!("rs_tpl_{}", random_suffix());
            let admin = connect_admin(server).await;
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap_or_else(|e| panic!("cannot create the template database {name}: {e}"));
            // Migrated the way the server migrates (`referral_server::db`), then closed: a
            // database someone is connected to cannot be copied.
            let url = replace_database_name(server, &name);
            let db = migrate(&url).await;
            db.close()
                .await
                .unwrap_or_else(|e| panic!("cannot close the connections to {name}: {e}"));
            // Nobody connects to it again (autovacuum neither), so copies are not refused because
            // "source database is being accessed by other users". It can still be dropped.
            admin
                .execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"))
                .await
                .unwrap_or_else(|e| panic!("cannot close {name} to connections: {e}"));
            admin.close().await.ok();
            name
        })
        .await
}

async fn sqlite_template() -> &'static [u8] {
    SQLITE_TEMPLATE
        .get_or_init(|| async {
            let dir = temp_dir("rs-template-");
            let path = dir.path().join("template.db");
            let db = migrate(&sqlite_url(&path)).await;
            // The server opens SQLite in WAL mode: everything must be in the main file before it
            // is read, with no -wal file beside it that a copy would lack. Closing the last
            // connection moves the log into the main file and removes it. (An explicit
            // `wal_checkpoint(TRUNCATE)` instead waits out the busy timeout for the pool's other
            // connections.)
            db.close()
                .await
                .unwrap_or_else(|e| panic!("cannot close the SQLite template: {e}"));
            let wal = dir.path().join("template.db-wal");
            let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            assert_eq!(wal_len, 0, "the SQLite template still has a write-ahead log: {wal:?}");
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read the SQLite template {path:?}: {e}"))
        })
        .await
}

/// Connects as the server does and applies every migration.
async fn migrate(url: &str) -> DatabaseConnection {
    let (db, _) = referral_server::db::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the template {url}: {e}"));
    referral_server::db::migrate(&db)
        .await
        .unwrap_or_else(|e| panic!("cannot migrate the template {url}: {e}"));
    db
}

async fn connect_admin(server: &str) -> DatabaseConnection {
    Database::connect(server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL {server}: {e}"))
}

/// Creates `rs_test_<random>`, empty or as a copy of `template`, and returns its URL.
async fn create_postgres_database(server: &str, template: Option<&str>) -> String {
    // PostgreSQL refuses to copy a database while another session is connected to it (it waits
    // a few seconds first). None should be, but the template's own sessions may still be on
    // their way out just after it was made: try again a little later.
    const ATTEMPTS: u32 = 20;
    let name = format!("rs_test_{}", random_suffix());
    let sql = match template {
        Some(template) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    let admin = connect_admin(server).await;
    let mut attempt = 1;
    loop {
        match admin.execute_unprepared(&sql).await {
            Ok(_) => break,
            Err(e) if attempt < ATTEMPTS && e.to_string().contains("is being accessed by other users") => {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => panic!("cannot create database {name} (attempt {attempt}): {e}"),
        }
    }
    admin.close().await.ok();
    replace_database_name(server, &name)
}

/// `postgres://user@host:5432/test?x=y` → `postgres://user@host:5432/{name}?x=y`
pub fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_and_path = &base[scheme_end..];
    let authority = match authority_and_path.find('/') {
        Some(slash) => &authority_and_path[..slash],
        None => authority_and_path,
    };
    let mut out = format!("{}{}/{}", &base[..scheme_end], authority, name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use migration::MigratorTrait;
    use sea_orm::Statement;

    /// A migrated database of the run's kind (SQLite file or PostgreSQL copy), and the directory
    /// to keep alive.
    async fn migrated() -> (String, TempDir) {
        let dir = temp_dir("rs-common-");
        let url = match migrated_postgres_database().await {
            Some(url) => url,
            None => migrated_sqlite_database(&dir.path().join("test.db")).await,
        };
        (url, dir)
    }

    async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"))
            .try_get_by_index::<i64>(0)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[tokio::test]
    async fn a_copy_has_every_migration_and_is_a_database_of_its_own() {
        let ((url_a, _dir_a), (url_b, _dir_b)) = (migrated().await, migrated().await);
        assert_ne!(url_a, url_b);
        let a = Database::connect(url_a.as_str()).await.expect("connect to copy a");
        let b = Database::connect(url_b.as_str()).await.expect("connect to copy b");
        let applied = "SELECT CAST(COUNT(*) AS BIGINT) FROM seaql_migrations";
        let all = i64::try_from(migration::Migrator::migrations().len()).expect("a few migrations");
        assert_eq!(count(&a, applied).await, all, "{url_a}");
        assert_eq!(count(&b, applied).await, all, "{url_b}");

        // What one test writes, another does not see.
        a.execute_unprepared("DELETE FROM seaql_migrations")
            .await
            .expect("delete in a");
        assert_eq!(count(&a, applied).await, 0);
        assert_eq!(count(&b, applied).await, all, "a copy shares rows with another");

        // The server migrates again when it starts: on a copy that succeeds and changes nothing.
        referral_server::db::migrate(&b).await.expect("migrate copy b again");
        assert_eq!(count(&b, applied).await, all);
        a.close().await.ok();
        b.close().await.ok();
    }

    #[test]
    fn a_database_url_gets_another_database_name() {
        assert_eq!(
            replace_database_name("postgres://postgres@127.0.0.1:5432/test", "rs_test_x"),
            "postgres://postgres@127.0.0.1:5432/rs_test_x"
        );
        assert_eq!(
            replace_database_name("postgres://u:p@h/db?sslmode=disable", "n"),
            "postgres://u:p@h/n?sslmode=disable"
        );
        assert_eq!(replace_database_name("postgres://h:5432", "n"), "postgres://h:5432/n");
    }
}
