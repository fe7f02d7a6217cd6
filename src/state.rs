//! The state every request shares: cheap to clone.

use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{self, StatementCounter};
use crate::limits::Limits;
use sea_orm::{DatabaseConnection, DbErr};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: DatabaseConnection,
    pub config: Config,
    pub keys: JwtKeys,
    pub statements: StatementCounter,
    pub limits: Limits,
    /// The one time source: services take `now` from it through their callers.
    pub clock: Clock,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Connects to the configured database and brings its schema up to date.
    pub async fn connect(config: Config) -> Result<Self, DbErr> {
        let (db, statements) = db::connect(&config.database_url).await?;
        db::migrate(&db).await?;
        let keys = JwtKeys::new(&config);
        let limits = Limits::new(config.code_lookups_per_minute).with_link_clicks(config.link_clicks_per_minute);
        Ok(AppState(Arc::new(Inner {
            db,
            config,
            keys,
            statements,
            limits,
            clock: Clock::system(),
        })))
    }
}
