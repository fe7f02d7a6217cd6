//! Events in time: refunds and account closures, the order purchases happened in, and what has
//! been taken back of a reward.
//!
//! - `program_settings.reorder_window_hours` (default 72): for how long after a first purchase
//!   was taken as first a purchase that happened earlier, arriving late, still corrects it.
//! - `accounts.first_purchase_event_id`: which purchase was taken as first (its arrival starts
//!   the window); filled in for accounts that have one: the first purchase event that arrived.
//! - `accounts.closed_at`: when the platform closed the account (status `CLOSED`).
//! - `events.amount`: the money of the fact (a purchase's or top-up's amount, a refund's amount
//!   as resolved), filled in from the stored canonical input; `events.refund_of`: the event a
//!   refund refunds.
//! - `take_backs`: each time part or all of a reward entry was taken back (a refund, a
//!   corrected first purchase, a disqualification): how much, why, by which event, and which
//!   entries the ledger wrote or changed (what that event answers again on a replay).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    ClosedAt,
}

#[derive(DeriveIden)]
enum TakeBacks {
    Table,
    Id,
    EntryId,
    Amount,
    Cause,
    EventId,
    Written,
    CreatedAt,
}

/// One column per ALTER TABLE (SQLite). A column with a REFERENCES clause and no default may be
/// added on both databases.
const COLUMNS: [&str; 5] = [
    "ALTER TABLE program_settings ADD COLUMN reorder_window_hours INTEGER NOT NULL DEFAULT 72 \
     CHECK (reorder_window_hours >= 0)",
    "ALTER TABLE accounts ADD COLUMN first_purchase_event_id BIGINT NULL REFERENCES events (id)",
    "ALTER TABLE events ADD COLUMN amount BIGINT NULL",
    "ALTER TABLE events ADD COLUMN refund_of BIGINT NULL REFERENCES events (id)",
    "CREATE INDEX ix_events_refund_of ON events (refund_of)",
];

/// The purchase taken as first was the first purchase event to arrive (the lowest id).
const FIRST_PURCHASE_EVENTS: &str = "UPDATE accounts SET first_purchase_event_id = \
     (SELECT MIN(e.id) FROM events e WHERE e.account_id = accounts.id AND e.kind = 'PURCHASE') \
     WHERE first_purchase_at IS NOT NULL";

/// The amount inside the canonical input (`detail.amount`, micros or null), per database.
const AMOUNTS_POSTGRES: &str = "UPDATE events SET amount = (payload::jsonb #>> '{detail,amount}')::BIGINT \
     WHERE kind IN ('PURCHASE', 'TOP_UP')";
const AMOUNTS_SQLITE: &str = "UPDATE events SET amount = CAST(json_extract(payload, '$.detail.amount') AS INTEGER) \
     WHERE kind IN ('PURCHASE', 'TOP_UP')";

const DOWN: [&str; 6] = [
    "DROP TABLE take_backs",
    "DROP INDEX ix_events_refund_of",
    "ALTER TABLE events DROP COLUMN refund_of",
    "ALTER TABLE events DROP COLUMN amount",
    "ALTER TABLE accounts DROP COLUMN first_purchase_event_id",
    "ALTER TABLE program_settings DROP COLUMN reorder_window_hours",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in COLUMNS {
            db.execute_unprepared(statement).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .add_column(timestamp_with_time_zone_null(Accounts::ClosedAt))
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(FIRST_PURCHASE_EVENTS).await?;
        db.execute_unprepared(match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => AMOUNTS_POSTGRES,
            _ => AMOUNTS_SQLITE,
        })
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(TakeBacks::Table)
                    .col(big_pk_auto(TakeBacks::Id))
                    .col(big_integer(TakeBacks::EntryId))
                    .col(big_integer(TakeBacks::Amount))
                    .col(string_len(TakeBacks::Cause, 32))
                    .col(big_integer_null(TakeBacks::EventId))
                    .col(text(TakeBacks::Written))
                    .col(timestamp_with_time_zone(TakeBacks::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_take_backs_entry")
                            .from(TakeBacks::Table, TakeBacks::EntryId)
                            .to("ledger_entries", "id")
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_take_backs_event")
                            .from(TakeBacks::Table, TakeBacks::EventId)
                            .to("events", "id")
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .check(Expr::col(TakeBacks::Amount).gt(0))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ix_take_backs_entry", TakeBacks::EntryId),
            ("ix_take_backs_event", TakeBacks::EventId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(TakeBacks::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .drop_column(Accounts::ClosedAt)
                    .to_owned(),
            )
            .await?;
        for statement in DOWN {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
