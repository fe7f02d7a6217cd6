//! The ledger learns time: holds that mature, lots that expire, rewards taken back, and debt.
//!
//! - `balances.debt`: what reversals could not take because the balance did not hold it; later
//!   earnings pay it first. Never negative.
//! - `balances.next_due_at`: no hold of the balance matures and no lot of it expires before this
//!   time (a lower bound; NULL: nothing will). Reads and spends look at due entries only when it
//!   has passed, and the background task finds the balances to settle through its index, so
//!   neither scans the ledger for time.
//! - `ledger_entries.reverses_entry_id`: the reward a REVERSAL takes back.
//! - Partial indexes for an account's holds and its lots that expire (the literals of their
//!   predicates must be repeated as literals by the queries: see `ledger::time`), for the
//!   reversals of a reward, and for the balances with something due.
//! - A claim refund now records, as lot allocations of its own entry, what it gave back to each
//!   lot, so that a lot's remaining is its amount less what took from it plus what was given
//!   back; refunds recorded before this migration get those rows here.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Balances {
    Table,
    NextDueAt,
}

/// One statement each: SQLite adds one column per ALTER TABLE. The CHECK holds on both databases.
const ADD_DEBT: &str = "ALTER TABLE balances ADD COLUMN debt BIGINT NOT NULL DEFAULT 0 CHECK (debt >= 0)";
const ADD_REVERSES: &str =
    "ALTER TABLE ledger_entries ADD COLUMN reverses_entry_id BIGINT NULL REFERENCES ledger_entries (id)";

const INDEXES: [&str; 4] = [
    // An account's holds, by when they end: what is due for one balance.
    "CREATE INDEX ix_ledger_holds ON ledger_entries (account_id, unit, available_at) \
     WHERE status = 'PENDING'",
    // An account's lots that still hold something and expire, by when: what is due, and the
    // next expiry a balance shows.
    "CREATE INDEX ix_ledger_expiring_lots ON ledger_entries (account_id, unit, expires_at) \
     WHERE status = 'POSTED' AND remaining > 0 AND expires_at IS NOT NULL",
    "CREATE INDEX ix_ledger_reversals ON ledger_entries (reverses_entry_id) \
     WHERE reverses_entry_id IS NOT NULL",
    "CREATE INDEX ix_balances_next_due ON balances (next_due_at) WHERE next_due_at IS NOT NULL",
];

/// Earlier claim refunds gave back exactly what their claim's debit took from each lot.
const BACKFILL_REFUND_ALLOCATIONS: &str = "INSERT INTO lot_allocations (debit_entry_id, lot_entry_id, amount) \
     SELECT r.id, a.lot_entry_id, a.amount FROM ledger_entries r \
     JOIN ledger_entries d ON d.claim_id = r.claim_id AND d.kind = 'CLAIM' \
     JOIN lot_allocations a ON a.debit_entry_id = d.id \
     WHERE r.kind = 'CLAIM_REFUND'";

/// The first hold to end or lot to expire of each balance, from what is already recorded.
const BACKFILL_NEXT_DUE: &str = "UPDATE balances SET next_due_at = (SELECT MIN(t) FROM ( \
       SELECT MIN(e.available_at) AS t FROM ledger_entries e \
        WHERE e.account_id = balances.account_id AND e.unit = balances.unit AND e.status = 'PENDING' \
       UNION ALL \
       SELECT MIN(e.expires_at) AS t FROM ledger_entries e \
        WHERE e.account_id = balances.account_id AND e.unit = balances.unit AND e.status = 'POSTED' \
          AND e.remaining > 0 AND e.expires_at IS NOT NULL) due)";

const DOWN: [&str; 5] = [
    "DROP INDEX ix_balances_next_due",
    "DROP INDEX ix_ledger_reversals",
    "DROP INDEX ix_ledger_expiring_lots",
    "DROP INDEX ix_ledger_holds",
    "DELETE FROM lot_allocations WHERE debit_entry_id IN \
     (SELECT id FROM ledger_entries WHERE kind = 'CLAIM_REFUND')",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(ADD_DEBT).await?;
        // The builder, so that the column has the same timestamp type as every other one on
        // each database.
        manager
            .alter_table(
                Table::alter()
                    .table(Balances::Table)
                    .add_column(timestamp_with_time_zone_null(Balances::NextDueAt))
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(ADD_REVERSES).await?;
        for statement in INDEXES {
            db.execute_unprepared(statement).await?;
        }
        db.execute_unprepared(BACKFILL_REFUND_ALLOCATIONS).await?;
        db.execute_unprepared(BACKFILL_NEXT_DUE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in DOWN {
            db.execute_unprepared(statement).await?;
        }
        // A column with a foreign key cannot be dropped by SQLite's ALTER TABLE; it stays there
        // (always NULL once the code that writes it is gone).
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("ALTER TABLE ledger_entries DROP COLUMN reverses_entry_id")
                .await?;
        }
        db.execute_unprepared("ALTER TABLE balances DROP COLUMN next_due_at")
            .await?;
        db.execute_unprepared("ALTER TABLE balances DROP COLUMN debt").await?;
        Ok(())
    }
}
