//! How many paid invoices each account has had recorded. An invoice's number (the referee's
//! 1st, 2nd, 3rd paid invoice, which `INVOICE_PAID` rules pay on) is this count as the
//! invoice's own update of it returns: one statement that also locks the account's row, so
//! concurrent invoices of one account are numbered one after the other, without gaps or
//! repeats, and each reads the spend of every invoice numbered before it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE accounts ADD COLUMN paid_invoices INTEGER NOT NULL DEFAULT 0 CHECK (paid_invoices >= 0)";
const DOWN: &str = "ALTER TABLE accounts DROP COLUMN paid_invoices";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
