//! Connecting to the database, and the one way the services open a write transaction.

use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{BinOper, Expr, ExprTrait, IntoColumnRef};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    RuntimeErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, TryInsertResult, Values,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Each SQLite reading connection's own page cache (`PRAGMA cache_size`, negative: KiB).
/// SQLite's default of 2 MiB per connection, times the pool, held the same pages many times over
/// (the OS keeps the file's pages anyway): on the 10^6 dataset 512 KiB kept the server's peak
/// RSS at 64-72 MiB instead of 82-105, with throughput unchanged within noise (BENCHMARKS.md).
/// A reader's cache lasts only until someone writes: SQLite empties a connection's whole cache
/// when its next transaction finds the file changed by another connection.
const SQLITE_CACHE_KIB: &str = "-512";

/// The SQLite writer's page cache. Only its own writes touch the file, so what it caches stays
/// valid from one write to the next: the interior pages of the large tables and indexes that
/// every write walks down.
const SQLITE_WRITER_CACHE_KIB: &str = "-8192";

/// `column IN (ids)`, with the ids bound as one JSON array: one statement text whatever their
/// number. A list bound value by value (`is_in`) is a new statement for every length, which each
/// pooled connection prepares and keeps (a third of the server's heap under a webhook's load,
/// once: BENCHMARKS.md).
pub fn in_ids(backend: DbBackend, column: impl IntoColumnRef, ids: &[i64]) -> Expr {
    let set = match backend {
        DbBackend::Postgres => "(SELECT jsonb_array_elements_text($1::jsonb)::bigint)",
        _ => "(SELECT value FROM json_each(?))",
    };
    let ids = serde_json::Value::from(ids).to_string();
    Expr::col(column).binary(BinOper::In, Expr::cust_with_values(set, [ids]))
}

/// Counts every SQL statement the server runs: tests use it to prove that a query's cost does
/// not grow with the page size.
#[derive(Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The hot paths' statements (the Dashboard's three reads, the claim's one statement, the
/// purchase's two) on their way to the database. On PostgreSQL a statement goes straight to
/// sqlx's pool: SeaORM's layer around it (its span, its metric hook, its boxed futures) cost the
/// Dashboard about 5 % of the server's instructions for its three statements (callgrind, same
/// requests). Each is counted here, as SeaORM's metric hook counts the others. SQLite keeps
/// SeaORM's path, where that layer weighs little beside the statement itself.
#[derive(Clone, Copy)]
pub struct Direct<'a> {
    pub db: &'a DatabaseConnection,
    statements: &'a StatementCounter,
}

impl<'a> Direct<'a> {
    pub fn new(db: &'a DatabaseConnection, statements: &'a StatementCounter) -> Self {
        Direct { db, statements }
    }

    /// Every row of `statement`.
    pub async fn all(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if !self.on_postgres() {
            return self.db.query_all_raw(statement).await;
        }
        let rows = self
            .postgres(statement)
            .fetch_all(self.db.get_postgres_connection_pool())
            .await
            .map_err(query_error)?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }

    /// The first row of `statement`, if any.
    pub async fn one(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        if !self.on_postgres() {
            return self.db.query_one_raw(statement).await;
        }
        let row = self
            .postgres(statement)
            .fetch_optional(self.db.get_postgres_connection_pool())
            .await
            .map_err(query_error)?;
        Ok(row.map(QueryResult::from))
    }

    fn on_postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// `statement` for sqlx, counted.
    fn postgres(&self, statement: Statement) -> PgQuery {
        self.statements.0.fetch_add(1, Ordering::Relaxed);
        let values = sea_query_sqlx::SqlxValues(statement.values.unwrap_or(Values(Vec::new())));
        sea_orm::sqlx::query_with(sea_orm::sqlx::AssertSqlSafe(statement.sql), values)
    }
}

/// A [`Direct`] that owns its pool and counter (both are shared handles), for work that outlives
/// any one request.
#[derive(Clone)]
pub struct OwnedDirect {
    db: DatabaseConnection,
    statements: StatementCounter,
}

impl OwnedDirect {
    pub fn new(db: DatabaseConnection, statements: StatementCounter) -> Self {
        OwnedDirect { db, statements }
    }

    pub fn direct(&self) -> Direct<'_> {
        Direct::new(&self.db, &self.statements)
    }
}

type PgQuery = sea_orm::sqlx::query::Query<'static, sea_orm::sqlx::Postgres, sea_query_sqlx::SqlxValues>;

/// A statement's error as SeaORM reports it, so that callers read its code the same way.
fn query_error(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

/// The server's pool of connections, and the counter of their statements.
pub async fn connect(url: &str) -> Result<(DatabaseConnection, StatementCounter), DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let statements = StatementCounter::default();
    let db = open(url, if sqlite { 8 } else { 16 }, SQLITE_CACHE_KIB, &statements).await?;
    Ok((db, statements))
}

/// On SQLite, the one connection that every writer uses (mutations, background work, link
/// clicks), beside the pool, counting into the same `statements`; `None` on PostgreSQL.
///
/// A writer on a pooled connection found its page cache emptied by the previous write, made on
/// another connection (`SQLITE_CACHE_KIB`): at 10^6 accounts a claim read ~90 pages from the
/// file, ~27 on this connection (BENCHMARKS.md). Writers took turns at SQLite's one write lock
/// anyway; now they take turns at this connection, whose cache only its own writes change.
pub async fn connect_sqlite_writer(
    url: &str,
    statements: &StatementCounter,
) -> Result<Option<DatabaseConnection>, DbErr> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    open(url, 1, SQLITE_WRITER_CACHE_KIB, statements).await.map(Some)
}

/// A pool of up to `connections`, each counting its statements into `statements`; on SQLite each
/// with a page cache of `sqlite_cache` (`PRAGMA cache_size`).
async fn open(
    url: &str,
    connections: u32,
    sqlite_cache: &'static str,
    statements: &StatementCounter,
) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    // The check before each checkout proves the connection alive: no ping too.
    guard_pooled_connections(&mut options);
    if sqlite {
        // WAL lets readers run beside the writer; the busy timeout makes writers queue for the
        // lock instead of failing; foreign keys are off by default in SQLite.
        options.map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .create_if_missing(true)
                .pragma("cache_size", sqlite_cache)
        });
    }
    let mut db = connect_with_retry(options, sqlite).await?;
    let counter = statements.0.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    Ok(db)
}

/// A pooled connection is never handed out inside a transaction it did not open.
///
/// sqlx 0.9.0 counts a transaction only once its `BEGIN` has answered, so a future dropped
/// while `BEGIN` is in flight returns the connection to the pool inside a transaction no one
/// owns (on PostgreSQL and on SQLite alike); the next borrower's statements would run in it, and
/// after an error every statement on it would fail. Checking each connection at checkout costs
/// every request one more round trip per statement group, so instead no `BEGIN` is ever cut
/// off: [`begin`] runs it as a task of its own, and a caller that goes away drops a transaction
/// that sqlx knows about and rolls back. The checkout keeps only sqlx's own count, which costs
/// nothing: a connection that still counts an open transaction is closed.
fn guard_pooled_connections(options: &mut ConnectOptions) {
    options.test_before_acquire(false);
    options.map_sqlx_postgres_before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }));
    options.map_sqlx_sqlite_before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }));
}

fn outside_transaction(conn: &impl sea_orm::sqlx::Connection) -> bool {
    let inside = conn.is_in_transaction();
    if inside {
        tracing::warn!("a pooled connection still counts an open transaction: closing it");
    }
    !inside
}

/// Opens a transaction so that it cannot be cut off half-way: the `BEGIN` runs as a task of its
/// own, so a caller dropped while it is in flight leaves a transaction that sqlx counts, which
/// it rolls back when the task's result is dropped (see [`guard_pooled_connections`]).
pub async fn begin(db: &DatabaseConnection, options: TransactionOptions) -> Result<DatabaseTransaction, DbErr> {
    let db = db.clone();
    tokio::spawn(async move { db.begin_with_options(options).await })
        .await
        .map_err(|err| DbErr::Custom(format!("opening a transaction: {err}")))?
}

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
    begin(
        db,
        TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        },
    )
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
