//! Connecting to the database, and the one way the services open a write transaction.

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait, TryInsertResult,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts every SQL statement the server runs: tests use it to prove that a query's cost does
/// not grow with the page size.
#[derive(Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub async fn connect(url: &str) -> Result<(DatabaseConnection, StatementCounter), DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(if sqlite { 8 } else { 16 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    // The check before each checkout proves the connection alive: no ping too.
    guard_pooled_connections(&mut options);
    if sqlite {
        // WAL lets readers run beside the writer; the busy timeout makes writers queue for the
        // lock instead of failing; foreign keys are off by default in SQLite.
        options.map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .create_if_missing(true)
        });
    }
    let mut db = connect_with_retry(options, sqlite).await?;
    let counter = StatementCounter::default();
    let inner = counter.0.clone();
    db.set_metric_callback(move |_| {
        inner.fetch_add(1, Ordering::Relaxed);
    });
    Ok((db, counter))
}

/// A pooled connection is never handed out inside a transaction it did not open.
///
/// PostgreSQL: sqlx 0.9.0 counts a transaction only once its `BEGIN` has answered, so a future
/// dropped while `BEGIN` is in flight returns the connection to the pool inside a transaction
/// no one owns; the next borrower's statements run in it, and after an error every statement
/// on it fails. SQLite: a `BEGIN` that sqlx did not send itself (a raw statement) stays open on
/// the connection in the same way. sqlx keeps the database's own transaction status to itself,
/// but `begin_with` reports it on both: a statement that is not a `BEGIN` "begins" a
/// transaction only when the connection is already inside one. So instead of sqlx's ping
/// before each checkout (one round trip), the check sends `SELECT 1` that way (the same one
/// round trip, and it proves the connection alive just as well). A connection inside a
/// transaction is rolled back and closed; one inside an aborted transaction is closed; the
/// pool opens new ones.
fn guard_pooled_connections(options: &mut ConnectOptions) {
    options.test_before_acquire(false);
    options.map_sqlx_postgres_before_acquire(|conn, _| Box::pin(postgres_outside_transaction(conn)));
    options.map_sqlx_sqlite_before_acquire(|conn, _| Box::pin(sqlite_outside_transaction(conn)));
}

/// Whether a pooled connection may be handed out: `Ok(false)` closes it. A macro rather than a
/// generic function: `begin_with` is not callable through the `Connection` bound here (its
/// statement type's lifetime is not general enough), so each database gets its own copy.
macro_rules! outside_transaction {
    ($name:ident, $connection:ty, $database:literal) => {
        async fn $name(conn: &mut $connection) -> Result<bool, sea_orm::sqlx::Error> {
            use sea_orm::sqlx::{Connection, Error};
            if conn.is_in_transaction() {
                tracing::warn!(
                    database = $database,
                    "a pooled connection still counts an open transaction: closing it"
                );
                return Ok(false);
            }
            match conn.begin_with("SELECT 1").await {
                // Not inside a transaction: the usual answer.
                Err(Error::BeginFailed) => Ok(true),
                Ok(leaked) => {
                    tracing::warn!(
                        database = $database,
                        "a pooled connection was inside a transaction it did not open (a request cut \
                         off during BEGIN): rolling it back and closing the connection"
                    );
                    leaked.rollback().await?;
                    Ok(false)
                }
                Err(Error::Database(err)) if err.code().as_deref() == Some(IN_FAILED_TRANSACTION) => {
                    tracing::warn!(
                        database = $database,
                        "a pooled connection was inside an aborted transaction: closing it"
                    );
                    Ok(false)
                }
                Err(err) => Err(err),
            }
        }
    };
}

outside_transaction!(
    postgres_outside_transaction,
    sea_orm::sqlx::postgres::PgConnection,
    "PostgreSQL"
);
outside_transaction!(
    sqlite_outside_transaction,
    sea_orm::sqlx::sqlite::SqliteConnection,
    "SQLite"
);

/// SQLSTATE 25P02, "current transaction is aborted, commands ignored until end of transaction
/// block".
const IN_FAILED_TRANSACTION: &str = "25P02";

/// Applies pending migrations. Several instances may start at once on a new database (or a
/// release that brings a migration), so migrating is serialized in the database: on PostgreSQL
/// by a transaction-scoped advisory lock, on SQLite by the write lock `BEGIN IMMEDIATE` takes.
/// Whoever comes second finds nothing pending. DDL is transactional on both.
/// Switching a new SQLite file to WAL needs an exclusive lock and does not wait on the busy
/// timeout, so an instance starting beside another one can be told "database is locked" while
/// connecting: it tries again for a few seconds instead of exiting.
async fn connect_with_retry(options: ConnectOptions, sqlite: bool) -> Result<DatabaseConnection, DbErr> {
    const ATTEMPTS: u32 = 40;
    let mut attempt = 1;
    loop {
        match Database::connect(options.clone()).await {
            Err(err) if sqlite && attempt < ATTEMPTS && err.to_string().contains("database is locked") => {
                tracing::debug!(
                    attempt,
                    "SQLite is locked by another process while connecting; retrying"
                );
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            result => return result,
        }
    }
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = begin_write(db).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
    }
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// The advisory lock key that serializes migrations on PostgreSQL (any constant will do, so
/// long as nothing else in the database uses it).
const MIGRATION_LOCK: i64 = 0x7265_6665_7272_616c;

/// Every transaction that writes starts here. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes cannot wait for the
/// lock and fails at once with "database is locked". PostgreSQL ignores the SQLite mode and
/// runs READ COMMITTED; the services make that exact with conditional updates, row locks and
/// unique indexes, never read-then-write.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// The row of an `INSERT … ON CONFLICT DO NOTHING RETURNING`, or `None` when a unique index
/// refused it. SeaORM reports the refusal as `Conflicted` on SQLite but as
/// `RecordNotFound("Failed to find inserted item")` on PostgreSQL; both mean the same here.
pub fn inserted<M>(result: Result<TryInsertResult<M>, DbErr>) -> Result<Option<M>, DbErr> {
    match result {
        Ok(TryInsertResult::Inserted(row)) => Ok(Some(row)),
        Ok(TryInsertResult::Conflicted | TryInsertResult::Empty) => Ok(None),
        Err(DbErr::RecordNotInserted | DbErr::RecordNotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}
