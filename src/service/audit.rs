//! The audit log: every admin change, written in the same transaction as the change.

use crate::error::AppResult;
use crate::service::page::{Page, PageRequest};
use entity::audit_log;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;

pub async fn record(
    db: &impl ConnectionTrait,
    actor: &str,
    action: &str,
    target: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> AppResult<()> {
    audit_log::ActiveModel {
        actor: Set(actor.to_owned()),
        action: Set(action.to_owned()),
        target: Set(target.to_owned()),
        details: Set(json!({ "before": before, "after": after }).to_string()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The log, newest first.
pub async fn list(db: &impl ConnectionTrait, page: PageRequest) -> AppResult<Page<audit_log::Model>> {
    let total = audit_log::Entity::find().count(db).await?;
    let mut query = audit_log::Entity::find().order_by_desc(audit_log::Column::Id).limit(page.fetch_limit());
    if let Some(after) = page.after {
        query = query.filter(audit_log::Column::Id.lt(after));
    }
    Ok(Page::from_rows(query.all(db).await?, page, total))
}
