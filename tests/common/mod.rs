//! What both test binaries (tests/api, tests/process) need to give a test a database of its
//! own: a temporary directory, or a new database on the PostgreSQL server of
//! `TEST_DATABASE_URL`. Each binary includes this file with `#[path]`.

use sea_orm::{ConnectionTrait, Database};
pub use tempfile::TempDir;

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

/// With `TEST_DATABASE_URL` set to a PostgreSQL URL: creates `rs_test_<random>` on that server
/// and returns its URL. Unset (or empty): `None`, the test uses SQLite. Anything else panics.
pub async fn fresh_postgres_database() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let name = format!("rs_test_{}", random_suffix());
            let admin = Database::connect(url.as_str())
                .await
                .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL {url}: {e}"));
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
            admin.close().await.ok();
            Some(replace_database_name(&url, &name))
        }
        Ok(url) if !url.trim().is_empty() => {
            panic!("TEST_DATABASE_URL must be a postgres:// URL or unset (got {url:?})")
        }
        _ => None,
    }
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
    use super::replace_database_name;

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
