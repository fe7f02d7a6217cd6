//! What a resolver needs from the request: the state, the viewer, per-request caches.

use crate::auth::Viewer;
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
use crate::service::settings;
use crate::state::AppState;
use async_graphql::Context;
use async_graphql::dataloader::DataLoader;
use entity::program_settings;
use tokio::sync::OnceCell;

/// Per-request data: the settings are read at most once per request.
#[derive(Default)]
pub struct RequestCache {
    settings: OnceCell<program_settings::Model>,
}

pub fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// The time this request acts at, from the application's clock.
pub fn now(ctx: &Context<'_>) -> chrono::DateTime<chrono::Utc> {
    state(ctx).clock.now()
}

pub fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_unchecked::<Viewer>()
}

pub fn loader<'a>(ctx: &Context<'a>) -> &'a DataLoader<DbLoader> {
    ctx.data_unchecked::<DataLoader<DbLoader>>()
}

pub async fn program_settings<'a>(ctx: &Context<'a>) -> Result<&'a program_settings::Model, AppError> {
    let cache = ctx.data_unchecked::<RequestCache>();
    cache.settings.get_or_try_init(|| settings::get(&state(ctx).db)).await
}

/// Builds the data a request runs with.
pub fn request_data(state: &AppState, viewer: Viewer) -> async_graphql::Data {
    let mut data = async_graphql::Data::default();
    data.insert(DataLoader::new(
        DbLoader {
            db: state.db.clone(),
            clock: state.clock.clone(),
        },
        tokio::spawn,
    ));
    data.insert(RequestCache::default());
    data.insert(state.clone());
    data.insert(viewer);
    data
}
