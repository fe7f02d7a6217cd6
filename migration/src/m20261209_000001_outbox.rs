//! What leaves the server: the outbox of domain events, written in the transaction of the
//! change they tell of, and the webhook endpoints and deliveries that carry them out.
//!
//! - `outbox_events`: one row per event. `position` is NULL when written and set afterwards by
//!   the sequencer (one at a time across instances, under the lock of `outbox_sequence`'s row),
//!   so that positions grow in the order events became visible: a reader of the feed that has
//!   seen position p never later finds an event below p. Ids alone cannot promise that on
//!   PostgreSQL, where a transaction that took a smaller id can commit after a larger one.
//! - `webhook_endpoints`: where to post, which event types (empty: all), the signing secret,
//!   and the endpoint's failing streak (`failing_since`), which disables it after days.
//! - `webhook_deliveries`: one per (endpoint, event), unique: the fan-out of an event is written
//!   once. `locked_until` is an instance's lease on an attempt in flight.
//!
//! On PostgreSQL the claim and purchase functions write their events too (re-created here from
//! `sql/`, which now insert into `outbox_events`; PL/pgSQL resolves tables when a function runs,
//! so the earlier migrations that create them from the same files still apply on a new database).

use crate::{postgres_only, run_all};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    EventType,
    Payload,
    OccurredAt,
    Position,
}

#[derive(DeriveIden)]
enum OutboxSequence {
    Table,
    Id,
    LastPosition,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    Url,
    Description,
    EventTypes,
    Enabled,
    Secret,
    FailingSince,
    DisabledReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    EndpointId,
    EventId,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastAttemptAt,
    LastStatusCode,
    LastLatencyMs,
    LastError,
    DeliveredAt,
    CreatedAt,
}

const HELPERS: &str = include_str!("sql/outbox_helpers.sql");
const CLAIM_FUNCTION: &str = include_str!("sql/claim_reward.sql");
const PURCHASE_FUNCTION: &str = include_str!("sql/record_purchase.sql");

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(big_pk_auto(OutboxEvents::Id))
                    .col(string_len(OutboxEvents::EventType, 64))
                    .col(text(OutboxEvents::Payload))
                    .col(timestamp_with_time_zone(OutboxEvents::OccurredAt))
                    .col(big_integer_null(OutboxEvents::Position))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxSequence::Table)
                    .col(integer(OutboxSequence::Id).primary_key())
                    .col(big_integer(OutboxSequence::LastPosition))
                    .check(Expr::col(OutboxSequence::Id).eq(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(big_pk_auto(WebhookEndpoints::Id))
                    .col(string_len(WebhookEndpoints::Url, 2000))
                    .col(string_len(WebhookEndpoints::Description, 500))
                    .col(text(WebhookEndpoints::EventTypes))
                    .col(boolean(WebhookEndpoints::Enabled))
                    .col(string_len(WebhookEndpoints::Secret, 100))
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::FailingSince))
                    .col(string_len_null(WebhookEndpoints::DisabledReason, 500))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoints::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(big_pk_auto(WebhookDeliveries::Id))
                    .col(big_integer(WebhookDeliveries::EndpointId))
                    .col(big_integer(WebhookDeliveries::EventId))
                    .col(string_len(WebhookDeliveries::Status, 32))
                    .col(integer(WebhookDeliveries::Attempts))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::LockedUntil))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::LastAttemptAt))
                    .col(integer_null(WebhookDeliveries::LastStatusCode))
                    .col(integer_null(WebhookDeliveries::LastLatencyMs))
                    .col(string_len_null(WebhookDeliveries::LastError, 500))
                    .col(timestamp_with_time_zone_null(WebhookDeliveries::DeliveredAt))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .check(Expr::col(WebhookDeliveries::Status).is_in(["PENDING", "DELIVERED", "FAILED"]))
                    .check(Expr::col(WebhookDeliveries::Attempts).gte(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_endpoint")
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_event")
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EventId)
                            .to(OutboxEvents::Table, OutboxEvents::Id),
                    )
                    .to_owned(),
            )
            .await?;
        run_all(
            manager,
            &[
                "INSERT INTO outbox_sequence (id, last_position) VALUES (1, 0)",
                "CREATE UNIQUE INDEX ux_outbox_events_position ON outbox_events (position)",
                // What the sequencer looks for: few rows, for a moment each.
                "CREATE INDEX ix_outbox_events_unsequenced ON outbox_events (id) WHERE position IS NULL",
                "CREATE UNIQUE INDEX ux_webhook_deliveries_event ON webhook_deliveries (endpoint_id, event_id)",
                // What the dispatcher claims: an endpoint's pending deliveries that are due.
                "CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) \
                 WHERE status = 'PENDING'",
                "CREATE INDEX ix_webhook_deliveries_event ON webhook_deliveries (event_id)",
            ],
        )
        .await?;
        postgres_only::execute(manager, HELPERS).await?;
        postgres_only::execute(manager, CLAIM_FUNCTION).await?;
        postgres_only::execute(manager, PURCHASE_FUNCTION).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
            OutboxSequence::Table.into_iden(),
            OutboxEvents::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
