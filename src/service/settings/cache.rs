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
//! A watcher's read can start before this instance's own write commits and end after it:
//! stored, it would put back the settings the write replaced. So each `replace` counts, and a
//! read is kept only if no `replace` happened while it ran; otherwise it is read again.
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
pub struct SettingsCache(Arc<Held>);

/// What the cache holds, and how many times this instance's own writes replaced it: both
/// under one lock, so that a watcher's check and store cannot straddle a replacement.
struct Held(RwLock<Snapshot>);

struct Snapshot {
    settings: Arc<program_settings::Model>,
    replaced: u64,
}

impl Held {
    fn snapshot(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn snapshot_mut(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SettingsCache {
    /// Reads the settings and starts watching the database for other instances' changes.
    pub async fn start(db: &DatabaseConnection) -> AppResult<SettingsCache> {
        let cache = SettingsCache(Arc::new(Held(RwLock::new(Snapshot {
            settings: Arc::new(settings::get(db).await?),
            replaced: 0,
        }))));
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
        self.0.snapshot().settings.clone()
    }

    /// What this instance itself wrote, once committed.
    pub fn replace(&self, settings: program_settings::Model) {
        let mut held = self.0.snapshot_mut();
        held.replaced += 1;
        held.settings = Arc::new(settings);
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

/// What became of a watcher's read.
enum Kept {
    /// Held in the cache.
    Yes,
    /// This instance wrote while it ran: it may be older than the write, so read again.
    Overtaken,
    /// The state the cache belonged to is gone: the watcher ends.
    Gone,
}

/// The number of this instance's replacements, before a watcher reads (0 if it is gone).
fn replacements(held: &Weak<Held>) -> u64 {
    held.upgrade().map_or(0, |held| held.snapshot().replaced)
}

/// Holds `settings`, read after `before` replacements, in the cache.
fn keep(held: &Weak<Held>, settings: program_settings::Model, before: u64) -> Kept {
    let Some(held) = held.upgrade() else {
        return Kept::Gone;
    };
    let mut held = held.snapshot_mut();
    if held.replaced != before {
        return Kept::Overtaken;
    }
    if *held.settings != settings {
        held.settings = Arc::new(settings);
    }
    Kept::Yes
}

async fn listen_postgres(pool: sqlx::PgPool, held: Weak<Held>) {
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
        let before = replacements(&held);
        let read = sqlx::query(SELECT_POSTGRES)
            .bind(SETTINGS_ID)
            .fetch_one(&mut listener)
            .await;
        match read.map(QueryResult::from).and_then(decode) {
            Ok(settings) => match keep(&held, settings, before) {
                Kept::Yes => {}
                Kept::Overtaken => continue,
                Kept::Gone => return,
            },
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

async fn watch_sqlite(options: sqlx::sqlite::SqliteConnectOptions, held: Weak<Held>) {
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
            if seen == Some(version) {
                return Ok(Some(Some(version)));
            }
            let before = replacements(&held);
            let row = sqlx::query(SELECT_SQLITE)
                .bind(SETTINGS_ID)
                .fetch_one(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>(match keep(&held, decode(QueryResult::from(row))?, before) {
                Kept::Yes => Some(Some(version)),
                // Not seen yet: the next tick reads the row again.
                Kept::Overtaken => Some(None),
                Kept::Gone => None,
            })
        }
        .await;
        match checked {
            Ok(Some(version)) => seen = version,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, "settings: watching for changes failed; reconnecting");
                connection = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(minimum_withdrawal: i64) -> program_settings::Model {
        program_settings::Model {
            id: SETTINGS_ID,
            enabled: true,
            currency: "USD".to_owned(),
            referral_link_template: "{code}".to_owned(),
            landing_url: None,
            cookie_days: 30,
            gb_per_claim: 1,
            minimum_withdrawal,
            require_verified_payment_for_link: false,
            max_pending_claims: None,
            max_claims_per_day: None,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            clock_offset_ms: 0,
            reorder_window_hours: 0,
            active_referral_days: 45,
            affiliate_signup_bonus: 0,
            payout_schedule: entity::enums::PayoutSchedule::AsEarned,
            commission_conversion_rate: None,
        }
    }

    fn cache(held: program_settings::Model) -> SettingsCache {
        SettingsCache(Arc::new(Held(RwLock::new(Snapshot {
            settings: Arc::new(held),
            replaced: 0,
        }))))
    }

    #[test]
    fn a_read_that_started_before_this_instances_write_does_not_put_back_the_old_settings() {
        let cache = cache(settings(0));
        let watcher = Arc::downgrade(&cache.0);
        let before = replacements(&watcher);
        // The watcher read the row (minimum 0), then this instance's write committed.
        cache.replace(settings(10));
        assert!(matches!(keep(&watcher, settings(0), before), Kept::Overtaken));
        assert_eq!(cache.current().minimum_withdrawal, 10);
        // Read again, it is kept.
        let before = replacements(&watcher);
        assert!(matches!(keep(&watcher, settings(10), before), Kept::Yes));
        assert!(matches!(keep(&watcher, settings(7), before), Kept::Yes));
        assert_eq!(
            cache.current().minimum_withdrawal,
            7,
            "another instance's later write is taken"
        );
        drop(cache);
        assert!(matches!(keep(&watcher, settings(7), before), Kept::Gone));
    }
}
