//! What a resolver needs from the request: the state, the viewer, per-request caches.

use crate::auth::Viewer;
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
pub use crate::graphql::loaders::RequestLoader;
use crate::state::AppState;
use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, HashMapCache};
use entity::program_settings;
use std::sync::{Arc, OnceLock};

/// Per-request data: the settings are taken once per request, so that all of an answer sees
/// the same ones.
#[derive(Default)]
pub struct RequestCache {
    settings: OnceLock<Arc<program_settings::Model>>,
    /// A mutation's state on SQLite, whose statements go to the writers' connection.
    writing: OnceLock<AppState>,
}

impl RequestCache {
    /// Sends this request's statements through `state` (`AppState::for_writes`): set before
    /// execution starts, by the mutation's turn on SQLite.
    pub fn write_with(&self, state: AppState) {
        let _ = self.writing.set(state);
    }
}

/// The state a resolver works with: the pool's, or a SQLite mutation's (`RequestCache::write_with`).
pub fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    let writing = ctx.data_unchecked::<RequestCache>().writing.get();
    writing.unwrap_or_else(|| ctx.data_unchecked::<AppState>())
}

/// The time this request acts at, from the application's clock.
pub fn now(ctx: &Context<'_>) -> chrono::DateTime<chrono::Utc> {
    state(ctx).clock.now()
}

pub fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_unchecked::<Viewer>()
}

pub fn loader<'a>(ctx: &Context<'a>) -> &'a RequestLoader {
    ctx.data_unchecked::<RequestLoader>()
}

/// The program's settings, from memory (`service::settings::cache`): for reads only; a write
/// reads them in its own transaction.
pub fn settings<'a>(ctx: &Context<'a>) -> &'a Arc<program_settings::Model> {
    ctx.data_unchecked::<RequestCache>()
        .settings
        .get_or_init(|| state(ctx).settings.current())
}

/// `settings`, for the resolvers that await it.
pub async fn program_settings<'a>(ctx: &Context<'a>) -> Result<&'a program_settings::Model, AppError> {
    Ok(settings(ctx))
}

/// Builds the data a request runs with.
pub fn request_data(state: &AppState, viewer: Viewer) -> async_graphql::Data {
    let mut data = async_graphql::Data::default();
    let loader = DataLoader::with_cache(
        DbLoader {
            db: state.db.clone(),
            clock: state.clock.clone(),
        },
        tokio::spawn,
        HashMapCache::default(),
    );
    loader.enable_all_cache(false);
    data.insert(loader);
    data.insert(RequestCache::default());
    data.insert(state.clone());
    data.insert(viewer);
    data
}
