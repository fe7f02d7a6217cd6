//! An index of the lots that still hold something, in the order a debit consumes them.
//! Without it, a claim reads and sorts every entry the account ever had: on an account with
//! 7,400 spent lots the lots query took 3.1 ms and went on growing (BENCHMARKS.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Partial and with an expression, which the schema builder cannot state; the same SQL holds
/// on SQLite and PostgreSQL. The query must repeat the predicate with the same literals
/// (not parameters) for either planner to use it: see `ledger::consume_lots`.
const CREATE: &str = "CREATE INDEX ix_ledger_open_lots ON ledger_entries \
    (account_id, unit, (expires_at IS NULL), expires_at, id) \
    WHERE status = 'POSTED' AND remaining > 0";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(CREATE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_ledger_open_lots")
                    .table(Alias::new("ledger_entries"))
                    .to_owned(),
            )
            .await
    }
}
