//! The state every request shares: cheap to clone.

use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{self, OwnedDirect, StatementCounter};
use crate::limits::Limits;
use crate::service::accounts::dashboard::DashboardBatches;
use crate::service::events::{self, PurchaseBatches};
use crate::service::settings::cache::SettingsCache;
use crate::service::store::{self, ClaimLanes};
use crate::service::webhooks::dispatch::Webhooks;
use crate::service::{self, presets};
use crate::sqlite_writer::SqliteWriter;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    /// Where this state's statements go: the pool, or on SQLite, for work that writes, the
    /// writers' connection (`for_writes`).
    pub db: DatabaseConnection,
    shared: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub keys: JwtKeys,
    pub statements: StatementCounter,
    pub limits: Limits,
    /// The one time source: services take `now` from it through their callers.
    pub clock: Clock,
    /// The program's settings for reads, kept up to date with every instance's writes.
    pub settings: SettingsCache,
    /// Claims of one account take turns within the instance (see `ClaimLanes`).
    pub claim_lanes: ClaimLanes,
    /// Purchases that wait go to the database together (see `PurchaseBatches`).
    pub purchase_batches: PurchaseBatches,
    /// On PostgreSQL, the dashboard's reads that wait go to the database together (see
    /// `DashboardBatches`); None on SQLite, whose statements are calls within the process.
    pub dashboard_batches: Option<DashboardBatches>,
    /// SQLite's writers' connection and mutations' queue; None on PostgreSQL.
    pub sqlite_writer: Option<SqliteWriter>,
    /// The webhook dispatcher's client and the attempts this instance has in flight.
    pub webhooks: Webhooks,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.shared
    }
}

impl AppState {
    /// The hot paths' way to the database (`db::Direct`).
    pub fn direct(&self) -> db::Direct<'_> {
        db::Direct::new(&self.db, &self.statements)
    }

    /// This state for work that writes: on SQLite its statements go to the writers' connection,
    /// reads included, so that they find what the last write left in its cache.
    pub fn for_writes(&self) -> AppState {
        match &self.sqlite_writer {
            Some(writer) => AppState {
                db: writer.db.clone(),
                shared: self.shared.clone(),
            },
            None => self.clone(),
        }
    }

    /// Connects to the configured database, brings its schema up to date, and seeds a new
    /// installation with the default preset. A sandbox's clock starts where the database's
    /// record of it is, never behind.
    pub async fn connect(config: Config) -> Result<Self, DbErr> {
        let (db, statements) = db::connect(&config.database_url).await?;
        db::migrate(&db).await?;
        let keys = JwtKeys::new(&config);
        let limits = Limits::new(config.code_lookups_per_minute).with_link_clicks(config.link_clicks_per_minute);
        let clock = start_clock(&db, config.sandbox).await?;
        let settings = SettingsCache::start(&db)
            .await
            .map_err(|err| DbErr::Custom(format!("reading the program settings: {err:?}")))?;
        let sqlite_writer = db::connect_sqlite_writer(&config.database_url, &statements)
            .await?
            .map(SqliteWriter::new);
        let webhooks = Webhooks::new(config.webhook_timeout, config.webhook_allow_private_targets)
            .map_err(|err| DbErr::Custom(format!("building the webhook client: {err}")))?;
        let claim_lanes = store::claim_lanes(OwnedDirect::new(db.clone(), statements.clone()));
        let purchase_batches = events::purchase_batches(OwnedDirect::new(db.clone(), statements.clone()));
        let dashboard_batches = (db.get_database_backend() == DbBackend::Postgres)
            .then(|| DashboardBatches::new(OwnedDirect::new(db.clone(), statements.clone())));
        let state = AppState {
            db,
            shared: Arc::new(Inner {
                config,
                keys,
                statements,
                limits,
                clock,
                settings,
                claim_lanes,
                purchase_batches,
                dashboard_batches,
                sqlite_writer,
                webhooks,
            }),
        };
        presets::seed(&state.for_writes().db, state.clock.now())
            .await
            .map_err(|err| DbErr::Custom(format!("seeding the default preset: {err:?}")))?;
        Ok(state)
    }
}

/// The system time, or for a sandbox the recorded offset ahead of it. A database that a
/// sandbox moved ahead and that is now served without SANDBOX goes back to the system time:
/// what the sandbox stamped in its future (entries, holds, expiries, events) lies ahead of the
/// clock again, so holds it did not mature wait for their real date. Said at start, loudly.
async fn start_clock(db: &DatabaseConnection, sandbox: bool) -> Result<Clock, DbErr> {
    let recorded = service::sandbox::recorded_offset(db).await?;
    let clock = Clock::system();
    if sandbox {
        clock.catch_up(recorded);
        if !recorded.is_zero() {
            tracing::warn!(
                offset_days = recorded.num_days(),
                "SANDBOX: the clock carries on where this database left it: {} days and {} hours ahead of the system time",
                recorded.num_days(),
                recorded.num_hours() % 24
            );
        }
    } else if !recorded.is_zero() {
        tracing::warn!(
            offset_days = recorded.num_days(),
            "this database was served by a SANDBOX server whose clock was {} days ahead; without SANDBOX the \
             clock is the system time, and rows the sandbox stamped in its future lie ahead of it. A real \
             program needs a database that never ran as a sandbox.",
            recorded.num_days()
        );
    }
    Ok(clock)
}
