//! The audit log: every admin change, written in the same transaction as the change.

use crate::error::AppResult;
use crate::service::page::{self, Page, PageRequest};
use entity::audit_log;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use serde_json::json;

pub async fn record(
    db: &impl ConnectionTrait,
    actor: &str,
    action: &str,
    target: &str,
    before: serde_json::Value,
    after: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    audit_log::ActiveModel {
        actor: Set(actor.to_owned()),
        action: Set(action.to_owned()),
        target: Set(target.to_owned()),
        details: Set(json!({ "before": before, "after": after }).to_string()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The log, newest first.
pub async fn list(db: &impl ConnectionTrait, page: PageRequest) -> AppResult<Page<audit_log::Model>> {
    Ok(page::fetch(db, audit_log::Entity::find(), audit_log::Column::Id, page).await?)
}
