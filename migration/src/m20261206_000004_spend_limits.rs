//! Credit that may be spent only on some product categories (program 4):
//!
//! - `lot_limits`: the restriction of one lot (a reward whose rule restricts where its credit
//!   may be spent), as JSON; a lot without a row may pay anything. A table of its own, so that
//!   the ledger's entries, which the PostgreSQL functions write column by column, stay as they
//!   are.
//! - `credit_applications.lines`: what an application with invoice lines applied to each line,
//!   as JSON, so that a replay answers it again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 2] = [
    "CREATE TABLE lot_limits (\
        entry_id BIGINT NOT NULL PRIMARY KEY REFERENCES ledger_entries (id), \
        spend_limit TEXT NOT NULL)",
    "ALTER TABLE credit_applications ADD COLUMN lines TEXT",
];

const DOWN: [&str; 2] = [
    "ALTER TABLE credit_applications DROP COLUMN lines",
    "DROP TABLE lot_limits",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &DOWN).await
    }
}
