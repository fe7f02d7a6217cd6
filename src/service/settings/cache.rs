//! The program's settings held in memory for reads: nearly every request reads them, and they
//! change a few times a year. Writes that need the exact settings (claims, purchases,
//! sign-ups) read the row in their own transaction as before; only reads are served from here.
//!
//! Kept right across instances on one database:
//! - this instance's own writes replace the held settings after their commit (`replace`);
//! - PostgreSQL: every write sends `NOTIFY program_settings` inside its transaction, so that
//!   the notification leaves with the commit and never before it; each instance listens on a
//!   connection of its own and reads the row again when one arrives. Notifications sent while
//!   that connection was down are lost, so the row is read again after every reconnect too;
//! - SQLite (instances share one file and there are no notifications): a connection of its own
//!   asks `PRAGMA data_version` every `SQLITE_CHECK_EVERY`, a counter SQLite keeps in the shared
//!   WAL index that moves whenever another connection commits. The row is read again only when
//!   it moved. Staleness is bounded by the interval; the cost is one in-memory pragma per
//!   interval, whatever the write load.
//!
//! The watchers run on connections outside the application's pool: they take none of its
//! connections, and their statements are not counted as the requests' statements.

use crate::error::{AppError, AppResult};
use crate::service::settings::{self, SETTINGS_ID};
use entity::program_settings;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::sqlx::{self, ConnectOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, QueryResult};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// The PostgreSQL channel that settings writes notify.
pub const CHANNEL: &str = "program_settings";
/// How often a SQLite instance looks whether another connection wrote: the longest another
/// instance's change stays unseen.
pub const SQLITE_CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a watcher waits before it tries again after its connection failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The settings reads use: cheap to clone, shared by every request of an instance.
#[derive(Clone)]
pub struct SettingsCache(Arc<RwLock<Arc<program_settings::Model>>>);

impl SettingsCache {
    /// Reads the settings and starts watching the database for other instances' changes.
    pub async fn start(db: &DatabaseConnection) -> AppResult<SettingsCache> {
        let cache = SettingsCache(Arc::new(RwLock::new(Arc::new(settings::get(db).await?))));
        let held = Arc::downgrade(&cache.0);
        match db.get_database_backend() {
            DbBackend::Postgres => {
                let options = (*db.get_postgres_connection_pool().connect_options()).clone();
                // A pool of one that only reconnects the listener; it never holds more.
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .min_connections(0)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_lazy_with(options);
                tokio::spawn(listen_postgres(pool, held));
            }
            DbBackend::Sqlite => {
                let options = (*db.get_sqlite_connection_pool().connect_options()).clone();
                tokio::spawn(watch_sqlite(options, held));
            }
            other => {
                return Err(AppError::internal(anyhow::anyhow!("no settings watcher for {other:?}")));
            }
        }
        Ok(cache)
    }

    /// The settings as last read or written.
    pub fn current(&self) -> Arc<program_settings::Model> {
        read(&self.0)
    }

    /// What this instance itself wrote, once committed.
    pub fn replace(&self, settings: program_settings::Model) {
        store(&self.0, settings);
    }
}

fn read(held: &RwLock<Arc<program_settings::Model>>) -> Arc<program_settings::Model> {
    held.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

fn store(held: &RwLock<Arc<program_settings::Model>>, settings: program_settings::Model) {
    if *read(held) != settings {
        *held.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(settings);
    }
}

/// Tells the other instances that the settings changed: on PostgreSQL a notification that is
/// delivered when `conn`'s transaction commits (at once outside one); nothing on SQLite, whose
/// watchers see the commit by themselves.
pub async fn announce_change(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await?;
    }
    Ok(())
}

/// The settings row, on PostgreSQL and on SQLite.
const SELECT_POSTGRES: &str = "SELECT * FROM program_settings WHERE id = $1";
const SELECT_SQLITE: &str = "SELECT * FROM program_settings WHERE id = ?";

fn decode(row: QueryResult) -> Result<program_settings::Model, sqlx::Error> {
    program_settings::Model::from_query_result(&row, "").map_err(|err| sqlx::Error::Decode(err.to_string().into()))
}

/// Holds `settings` in the cache, if it still exists; false when it does not (the state it
/// belonged to is gone, and the watcher ends).
fn keep(held: &Weak<RwLock<Arc<program_settings::Model>>>, settings: program_settings::Model) -> bool {
    match held.upgrade() {
        Some(held) => {
            store(&held, settings);
            true
        }
        None => false,
    }
}

async fn listen_postgres(pool: sqlx::PgPool, held: Weak<RwLock<Arc<program_settings::Model>>>) {
    let mut listener = loop {
        match subscribe(&pool).await {
            Ok(listener) => break listener,
            Err(err) => {
                tracing::warn!(error = %err, "settings: cannot listen for changes yet; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    };
    // Every turn reads the row: first for what changed between the first read and the
    // LISTEN, then after each notification, reconnect or failure.
    loop {
        let read = sqlx::query(SELECT_POSTGRES)
            .bind(SETTINGS_ID)
            .fetch_one(&mut listener)
            .await;
        match read.map(QueryResult::from).and_then(decode) {
            Ok(settings) => {
                if !keep(&held, settings) {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "settings: cannot read them again; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        }
        match listener.try_recv().await {
            // One read for every notification already waiting.
            Ok(Some(_)) => while listener.next_buffered().is_some() {},
            // The connection was lost and is back: what was notified meanwhile is lost.
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "settings: listening for changes failed; reconnecting");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

async fn subscribe(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn watch_sqlite(options: sqlx::sqlite::SqliteConnectOptions, held: Weak<RwLock<Arc<program_settings::Model>>>) {
    let mut connection: Option<SqliteConnection> = None;
    let mut seen: Option<i64> = None;
    let mut ticks = tokio::time::interval(SQLITE_CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if held.strong_count() == 0 {
            return;
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match options.connect().await {
                Ok(conn) => {
                    // A new connection's counter starts anew: read the row once more.
                    seen = None;
                    connection.insert(conn)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "settings: cannot open a connection to watch for changes");
                    continue;
                }
            },
        };
        let checked = async {
            let version: i64 = sqlx::query_scalar("PRAGMA data_version").fetch_one(&mut *conn).await?;
            if seen != Some(version) {
                let row = sqlx::query(SELECT_SQLITE)
                    .bind(SETTINGS_ID)
                    .fetch_one(&mut *conn)
                    .await?;
                if !keep(&held, decode(QueryResult::from(row))?) {
                    return Ok(None);
                }
            }
            Ok::<_, sqlx::Error>(Some(version))
        }
        .await;
        match checked {
            Ok(Some(version)) => seen = Some(version),
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, "settings: watching for changes failed; reconnecting");
                connection = None;
            }
        }
    }
}
