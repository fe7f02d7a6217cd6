//! Webhook endpoints and their deliveries, as admins see and manage them. The outbox
//! (`service::outbox`) writes the deliveries; `dispatch` carries them out.

pub mod dispatch;
pub mod schedule;
pub mod signature;
pub mod target;

use crate::db::{begin_write, in_ids};
use crate::error::{AppError, AppResult};
use crate::service::outbox::{self, EventType, NewDelivery};
use crate::service::page::{self, Page, PageRequest};
use crate::service::{audit, optional_text, settings};
use chrono::{DateTime, Utc};
use entity::enums::DeliveryStatus;
use entity::{outbox_event, webhook_delivery, webhook_endpoint};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};

/// Endpoints a program keeps at most: each event is written once per endpoint that wants it.
pub const MAX_ENDPOINTS: u64 = 20;
pub const MAX_DESCRIPTION: usize = 500;
/// Events one `replayWebhookEvents` call schedules at most; the answer says where to go on.
pub const MAX_REPLAY: u64 = 10_000;

/// What an admin sends to create or change an endpoint; absent fields are left as they are
/// (a create needs `url`). `event_types`: empty or absent on create means every type.
#[derive(Clone, Debug, Default)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub enabled: Option<bool>,
}

fn target(id: i64) -> String {
    format!("webhook_endpoint:{id}")
}

/// What the audit log keeps of an endpoint: never its secret.
fn described(endpoint: &webhook_endpoint::Model) -> Value {
    json!({
        "url": endpoint.url,
        "description": endpoint.description,
        "eventTypes": endpoint.event_types,
        "enabled": endpoint.enabled,
    })
}

/// The stored form of a list of types: comma-separated names in a fixed order, each once.
fn stored_types(types: &[EventType]) -> String {
    EventType::ALL
        .iter()
        .filter(|t| types.contains(t))
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// The types an endpoint wants; empty: all of them.
pub fn event_types(endpoint: &webhook_endpoint::Model) -> Vec<EventType> {
    endpoint
        .event_types
        .split(',')
        .filter_map(EventType::from_name)
        .collect()
}

fn description(text: Option<&str>) -> AppResult<String> {
    Ok(optional_text("description", text, MAX_DESCRIPTION)?.unwrap_or_default())
}

async fn checked_url(url: &str, allow_private: bool) -> AppResult<String> {
    target::check(url, allow_private)
        .await
        .map(|url| url.to_string())
        .map_err(AppError::bad_input)
}

pub async fn create(
    db: &DatabaseConnection,
    actor: &str,
    input: EndpointInput,
    allow_private: bool,
    now: DateTime<Utc>,
) -> AppResult<webhook_endpoint::Model> {
    let url = input
        .url
        .as_deref()
        .ok_or_else(|| AppError::bad_input("url is required"))?;
    let url = checked_url(url, allow_private).await?;
    let description = description(input.description.as_deref())?;
    let txn = begin_write(db).await?;
    let count = webhook_endpoint::Entity::find().count(&txn);
    settings::room_for_one_more(&txn, count, MAX_ENDPOINTS, "webhook endpoints").await?;
    let endpoint = webhook_endpoint::ActiveModel {
        url: Set(url),
        description: Set(description),
        event_types: Set(stored_types(&input.event_types.unwrap_or_default())),
        enabled: Set(input.enabled.unwrap_or(true)),
        secret: Set(signature::new_secret()),
        failing_since: Set(None),
        disabled_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        "CREATE_WEBHOOK_ENDPOINT",
        &target(endpoint.id),
        json!(null),
        described(&endpoint),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(endpoint)
}

/// Changes what the input gives; the same values again change nothing and write nothing.
/// Enabling an endpoint clears its failing streak: its pending deliveries go out again.
pub async fn update(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    input: EndpointInput,
    allow_private: bool,
    now: DateTime<Utc>,
) -> AppResult<webhook_endpoint::Model> {
    let url = match input.url.as_deref() {
        Some(url) => Some(checked_url(url, allow_private).await?),
        None => None,
    };
    let description = input.description.as_deref().map(|d| description(Some(d))).transpose()?;
    let txn = begin_write(db).await?;
    let before = find_locked(&txn, id).await?;
    let mut changed: webhook_endpoint::ActiveModel = before.clone().into();
    if let Some(url) = url.filter(|url| *url != before.url) {
        changed.url = Set(url);
    }
    if let Some(description) = description.filter(|d| *d != before.description) {
        changed.description = Set(description);
    }
    if let Some(types) = input
        .event_types
        .map(|t| stored_types(&t))
        .filter(|t| *t != before.event_types)
    {
        changed.event_types = Set(types);
    }
    if let Some(enabled) = input.enabled.filter(|e| *e != before.enabled) {
        changed.enabled = Set(enabled);
        if enabled {
            changed.failing_since = Set(None);
            changed.disabled_reason = Set(None);
        }
    }
    if !changed.is_changed() {
        txn.rollback().await?;
        return Ok(before);
    }
    changed.updated_at = Set(now);
    let after = changed.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "UPDATE_WEBHOOK_ENDPOINT",
        &target(id),
        described(&before),
        described(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// A new secret; the old one stops signing at once.
pub async fn rotate_secret(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    now: DateTime<Utc>,
) -> AppResult<webhook_endpoint::Model> {
    let txn = begin_write(db).await?;
    let before = find_locked(&txn, id).await?;
    let mut changed: webhook_endpoint::ActiveModel = before.clone().into();
    changed.secret = Set(signature::new_secret());
    changed.updated_at = Set(now);
    let after = changed.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "ROTATE_WEBHOOK_SECRET",
        &target(id),
        json!(null),
        json!(null),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes an endpoint and its deliveries; the events stay in the feed.
pub async fn delete(db: &DatabaseConnection, actor: &str, id: i64, now: DateTime<Utc>) -> AppResult<()> {
    let txn = begin_write(db).await?;
    let before = find_locked(&txn, id).await?;
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::EndpointId.eq(id))
        .exec(&txn)
        .await?;
    webhook_endpoint::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        "DELETE_WEBHOOK_ENDPOINT",
        &target(id),
        described(&before),
        json!(null),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

async fn find_locked(txn: &impl ConnectionTrait, id: i64) -> AppResult<webhook_endpoint::Model> {
    webhook_endpoint::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such webhook endpoint"))
}

/// Every endpoint, oldest first (there are at most `MAX_ENDPOINTS`).
pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<webhook_endpoint::Model>> {
    Ok(webhook_endpoint::Entity::find()
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await?)
}

/// Deliveries, newest first: of one endpoint or all, optionally of one status.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    endpoint_id: Option<i64>,
    status: Option<DeliveryStatus>,
    page: PageRequest,
) -> AppResult<Page<webhook_delivery::Model>> {
    let mut query = webhook_delivery::Entity::find();
    if let Some(endpoint_id) = endpoint_id {
        query = query.filter(webhook_delivery::Column::EndpointId.eq(endpoint_id));
    }
    if let Some(status) = status {
        query = query.filter(webhook_delivery::Column::Status.eq(status));
    }
    Ok(page::fetch(db, query, webhook_delivery::Column::Id, page).await?)
}

/// Deliveries that gave up after their last attempt.
pub async fn failed_count(db: &impl ConnectionTrait) -> AppResult<u64> {
    Ok(webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Failed))
        .count(db)
        .await?)
}

/// Fields that make a delivery due again as a first attempt.
fn again(
    update: sea_orm::UpdateMany<webhook_delivery::Entity>,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<webhook_delivery::Entity> {
    update
        .col_expr(webhook_delivery::Column::Status, Expr::value(DeliveryStatus::Pending))
        .col_expr(webhook_delivery::Column::Attempts, Expr::value(0))
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
        .col_expr(
            webhook_delivery::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            webhook_delivery::Column::DeliveredAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
}

/// Sends one delivery again, whatever became of it: due now, attempts from zero. An attempt in
/// flight still finishes, but its outcome no longer counts (its lease is gone).
pub async fn replay_delivery(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    now: DateTime<Utc>,
) -> AppResult<webhook_delivery::Model> {
    let txn = begin_write(db).await?;
    let before = webhook_delivery::Entity::find_by_id(id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such webhook delivery"))?;
    again(webhook_delivery::Entity::update_many(), now)
        .filter(webhook_delivery::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        actor,
        "REPLAY_WEBHOOK_DELIVERY",
        &format!("webhook_delivery:{id}"),
        json!({ "status": before.status, "attempts": before.attempts }),
        json!({ "status": DeliveryStatus::Pending, "attempts": 0 }),
        now,
    )
    .await?;
    let after = webhook_delivery::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such webhook delivery"))?;
    txn.commit().await?;
    Ok(after)
}

/// What `replay_since` scheduled: how many events, and the last of them (the next call's
/// `since` when `complete` is false).
#[derive(Clone, Debug)]
pub struct Replayed {
    pub events: u64,
    pub last_event_id: Option<i64>,
    pub complete: bool,
}

/// Sends an endpoint every event it wants from `since_event_id` on (in feed order, that event
/// included) again: deliveries it had are due again, those it did not have (events from
/// before it existed, or while it was disabled) are written. At most `MAX_REPLAY` per call.
pub async fn replay_since(
    db: &DatabaseConnection,
    actor: &str,
    endpoint_id: i64,
    since_event_id: i64,
    now: DateTime<Utc>,
) -> AppResult<Replayed> {
    outbox::sequence(db).await?;
    let txn = begin_write(db).await?;
    let endpoint = find_locked(&txn, endpoint_id).await?;
    let since = outbox_event::Entity::find_by_id(since_event_id)
        .one(&txn)
        .await?
        .and_then(|event| event.position)
        .ok_or_else(|| AppError::not_found("no such event"))?;
    let mut query = outbox_event::Entity::find()
        .select_only()
        .column(outbox_event::Column::Id)
        .filter(outbox_event::Column::Position.gte(since))
        .order_by_asc(outbox_event::Column::Position)
        .limit(MAX_REPLAY + 1);
    let types = event_types(&endpoint);
    if !types.is_empty() {
        query = query.filter(outbox_event::Column::EventType.is_in(types.iter().map(|t| t.name())));
    }
    let mut ids: Vec<i64> = query.into_tuple().all(&txn).await?;
    let complete = ids.len() as u64 <= MAX_REPLAY;
    ids.truncate(MAX_REPLAY as usize);
    let backend = txn.get_database_backend();
    for chunk in ids.chunks(1_000) {
        again(webhook_delivery::Entity::update_many(), now)
            .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
            .filter(in_ids(backend, webhook_delivery::Column::EventId, chunk))
            .exec(&txn)
            .await?;
    }
    let deliveries: Vec<NewDelivery> = ids
        .iter()
        .map(|event_id| NewDelivery {
            endpoint_id,
            event_id: *event_id,
        })
        .collect();
    outbox::insert_deliveries(&txn, &deliveries, Some(now)).await?;
    let replayed = Replayed {
        events: ids.len() as u64,
        last_event_id: ids.last().copied(),
        complete,
    };
    audit::record(
        &txn,
        actor,
        "REPLAY_WEBHOOK_EVENTS",
        &target(endpoint_id),
        json!(null),
        json!({ "since": outbox::public_id(since_event_id), "events": replayed.events, "complete": complete }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(replayed)
}
