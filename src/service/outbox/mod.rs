//! The outbox: domain events, written by the flows in the transaction of the change they tell
//! of (an event exists if and only if its change committed), then read by the pull feed and
//! carried to webhook endpoints.
//!
//! An event's place in the feed is its `position`, set after it committed by [`sequence`]: one
//! sequencer at a time across instances (the lock of `outbox_sequence`'s row) gives positions
//! above every earlier one to the events that have become visible since. So a client that has
//! read up to position p never later finds an event below p, which ids alone cannot promise on
//! PostgreSQL, where a transaction holding a smaller id can commit after one holding a larger.
//! The same pass fans each event out to the webhook endpoints that want it.

pub mod payloads;

use crate::db::{begin_write, in_ids};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use entity::{outbox_event, webhook_endpoint};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, Statement,
};
use serde_json::{Value, json};

/// The version of every payload's `data`; a change that is not only an added field raises it.
pub const PAYLOAD_VERSION: i32 = 1;

/// Events one sequencer pass orders at most.
pub const SEQUENCE_BATCH: u64 = 1_000;
pub const DEFAULT_FEED_PAGE: u64 = 100;
pub const MAX_FEED_PAGE: u64 = 1_000;

// The delivery insert takes its rows as one JSON parameter, as `db::in_ids` takes a list of
// ids: one statement text whatever the batch's length, not one per length prepared by every
// connection.

/// Pending deliveries for `$1`, a JSON array of `{endpoint_id, event_id}`, due at `$2` or, when
/// it is null, when their event occurred. Numbered in the array's order: deliveries due at the
/// same instant go out by id, so an endpoint gets its events in the order they are listed.
const DELIVERIES_POSTGRES: &str = "INSERT INTO webhook_deliveries \
     (endpoint_id, event_id, status, attempts, next_attempt_at, created_at) \
     SELECT v.endpoint_id, e.id, 'PENDING', 0, COALESCE($2, e.occurred_at), COALESCE($2, e.occurred_at) \
     FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (endpoint_id bigint, event_id bigint)) \
          WITH ORDINALITY AS v(endpoint_id, event_id, n) \
     JOIN outbox_events e ON e.id = v.event_id ORDER BY v.n \
     ON CONFLICT (endpoint_id, event_id) DO NOTHING";
/// SQLite reads `ON CONFLICT` after a join's `ON` only past a `WHERE`.
const DELIVERIES_SQLITE: &str = "INSERT INTO webhook_deliveries \
     (endpoint_id, event_id, status, attempts, next_attempt_at, created_at) \
     SELECT json_extract(v.value, '$.endpoint_id'), e.id, 'PENDING', 0, \
            COALESCE(?2, e.occurred_at), COALESCE(?2, e.occurred_at) \
     FROM json_each(?1) AS v JOIN outbox_events e ON e.id = json_extract(v.value, '$.event_id') \
     WHERE true ORDER BY v.key ON CONFLICT (endpoint_id, event_id) DO NOTHING";

macro_rules! event_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// What happened. The name (`referral.qualified`) is what payloads and webhooks carry.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant),+ }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $(EventType::$variant => $name),+ }
            }

            pub fn from_name(name: &str) -> Option<EventType> {
                match name { $($name => Some(EventType::$variant),)+ _ => None }
            }
        }
    };
}

event_types! {
    ReferralAttributed => "referral.attributed",
    ReferralQualified => "referral.qualified",
    ReferralRejected => "referral.rejected",
    RewardGranted => "reward.granted",
    RewardAvailable => "reward.available",
    RewardExpired => "reward.expired",
    RewardReversed => "reward.reversed",
    ClaimRequested => "claim.requested",
    ClaimCompleted => "claim.completed",
    CreditApplied => "credit.applied",
    AffiliateApplied => "affiliate.applied",
    AffiliateDecided => "affiliate.decided",
    WithdrawalRequested => "withdrawal.requested",
    WithdrawalDecided => "withdrawal.decided",
    AccountDisqualified => "account.disqualified",
}

/// One event to write: its type and its `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventType,
    pub data: Value,
}

impl NewEvent {
    pub fn new(kind: EventType, data: Value) -> Self {
        NewEvent { kind, data }
    }
}

/// Writes events in the caller's transaction, in one statement; nothing for none.
pub async fn emit_all(db: &impl ConnectionTrait, events: Vec<NewEvent>, now: DateTime<Utc>) -> AppResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = events.into_iter().map(|event| outbox_event::ActiveModel {
        event_type: Set(event.kind.name().to_owned()),
        payload: Set(event.data.to_string()),
        occurred_at: Set(now),
        position: Set(None),
        ..Default::default()
    });
    outbox_event::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The id clients see: `de_12` ("domain event"), stable for the event's life.
pub fn public_id(id: i64) -> String {
    format!("de_{id}")
}

/// The event as the feed and every webhook carry it: the Standard Webhooks shape (`type`,
/// `timestamp`, `data`) with the event's id and the payload's version.
pub fn envelope(event: &outbox_event::Model) -> Value {
    let data: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
    json!({
        "id": public_id(event.id),
        "type": event.event_type,
        "timestamp": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "version": PAYLOAD_VERSION,
        "data": data,
    })
}

/// What one sequencer pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sequenced {
    pub events: u64,
    pub deliveries: u64,
}

/// Gives feed positions to the events that committed since the last pass, and writes their
/// deliveries to the enabled endpoints that want them, in one transaction. Several instances
/// may call it at once: they take turns on the sequence row. Nothing to order costs one read.
pub async fn sequence(db: &DatabaseConnection) -> AppResult<Sequenced> {
    if unsequenced(db, 1).await?.is_empty() {
        return Ok(Sequenced::default());
    }
    let txn = begin_write(db).await?;
    let last = last_position(&txn).await?;
    // Read after the lock, in a statement of its own: on PostgreSQL it sees everything that
    // committed before the lock was ours, and nothing another pass has already ordered.
    let events = unsequenced(&txn, SEQUENCE_BATCH).await?;
    let (Some(first), Some(newest)) = (events.first(), events.last()) else {
        txn.rollback().await?;
        return Ok(Sequenced::default());
    };
    // Positions keep the gaps between ids (an id not yet committed gets a later position): a
    // cursor needs order, not density, and one UPDATE does it.
    let offset = last + 1 - first.id;
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    outbox_event::Entity::update_many()
        .col_expr(
            outbox_event::Column::Position,
            Expr::col(outbox_event::Column::Id).add(offset),
        )
        .filter(in_ids(txn.get_database_backend(), outbox_event::Column::Id, &ids))
        .exec(&txn)
        .await?;
    txn.execute(
        Query::update()
            .table(Alias::new("outbox_sequence"))
            .value(Alias::new("last_position"), newest.id + offset)
            .and_where(Expr::col(Alias::new("id")).eq(1)),
    )
    .await?;
    let deliveries = fan_out(&txn, &events).await?;
    txn.commit().await?;
    Ok(Sequenced {
        events: events.len() as u64,
        deliveries,
    })
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct Unsequenced {
    id: i64,
    event_type: String,
}

async fn unsequenced(db: &impl ConnectionTrait, limit: u64) -> AppResult<Vec<Unsequenced>> {
    Ok(outbox_event::Entity::find()
        .select_only()
        .columns([outbox_event::Column::Id, outbox_event::Column::EventType])
        .filter(outbox_event::Column::Position.is_null())
        .order_by_asc(outbox_event::Column::Id)
        .limit(limit)
        .into_model::<Unsequenced>()
        .all(db)
        .await?)
}

/// The sequence row, locked until the pass commits (SQLite's write transaction already holds
/// the one write lock).
async fn last_position(txn: &impl ConnectionTrait) -> AppResult<i64> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT last_position FROM outbox_sequence WHERE id = 1 FOR UPDATE",
        _ => "SELECT last_position FROM outbox_sequence WHERE id = 1",
    };
    let row = txn
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("outbox_sequence has no row")))?;
    Ok(row.try_get("", "last_position")?)
}

/// One delivery per (event, enabled endpoint that wants its type), due when the event occurred.
async fn fan_out(txn: &impl ConnectionTrait, events: &[Unsequenced]) -> AppResult<u64> {
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(txn)
        .await?;
    let mut deliveries = Vec::new();
    for event in events {
        for endpoint in endpoints.iter().filter(|e| wants(e, &event.event_type)) {
            deliveries.push(NewDelivery {
                endpoint_id: endpoint.id,
                event_id: event.id,
            });
        }
    }
    insert_deliveries(txn, &deliveries, None).await
}

/// A delivery to write: one event for one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NewDelivery {
    pub endpoint_id: i64,
    pub event_id: i64,
}

/// Deliveries written per statement: a JSON parameter of ~200 KB at most.
pub const DELIVERIES_PER_STATEMENT: usize = 5_000;

/// Writes pending deliveries, due at `due` (or when their event occurred), leaving alone those
/// an (endpoint, event) already has. The rows go as one JSON parameter (`DELIVERIES_*`).
pub async fn insert_deliveries(
    txn: &impl ConnectionTrait,
    deliveries: &[NewDelivery],
    due: Option<DateTime<Utc>>,
) -> AppResult<u64> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => DELIVERIES_POSTGRES,
        _ => DELIVERIES_SQLITE,
    };
    let mut written = 0;
    for chunk in deliveries.chunks(DELIVERIES_PER_STATEMENT) {
        let rows = serde_json::to_string(chunk).map_err(AppError::internal)?;
        let result = txn
            .execute_raw(Statement::from_sql_and_values(backend, sql, [rows.into(), due.into()]))
            .await?;
        written += result.rows_affected();
    }
    Ok(written)
}

/// Whether an endpoint subscribes to events of this type (an empty list: to all of them).
pub fn wants(endpoint: &webhook_endpoint::Model, event_type: &str) -> bool {
    endpoint.event_types.is_empty() || endpoint.event_types.split(',').any(|t| t == event_type)
}

/// A page of the feed: events after a position, in position order, optionally of some types.
pub struct FeedPage {
    pub events: Vec<outbox_event::Model>,
    pub has_next: bool,
}

pub async fn feed(
    db: &DatabaseConnection,
    after: Option<i64>,
    types: &[EventType],
    first: Option<i32>,
) -> AppResult<FeedPage> {
    let first = match first {
        None => DEFAULT_FEED_PAGE,
        Some(n) if n < 0 => return Err(AppError::bad_input("first must not be negative")),
        Some(n) if n as u64 > MAX_FEED_PAGE => {
            return Err(AppError::bad_input(format!("first must be at most {MAX_FEED_PAGE}")));
        }
        Some(n) => n as u64,
    };
    // What committed before this request is in the answer: the reader's own writes included.
    sequence(db).await?;
    let mut query = outbox_event::Entity::find()
        .filter(outbox_event::Column::Position.gt(after.unwrap_or(0)))
        .order_by_asc(outbox_event::Column::Position)
        .limit(first + 1);
    if !types.is_empty() {
        query = query.filter(outbox_event::Column::EventType.is_in(types.iter().map(|t| t.name())));
    }
    let mut events = query.all(db).await?;
    let has_next = events.len() as u64 > first;
    events.truncate(first as usize);
    Ok(FeedPage { events, has_next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_name_that_reads_back() {
        assert_eq!(EventType::ALL.len(), 15);
        for kind in EventType::ALL {
            assert_eq!(EventType::from_name(kind.name()), Some(*kind));
        }
        assert_eq!(EventType::from_name("reward.granted "), None);
    }
}
