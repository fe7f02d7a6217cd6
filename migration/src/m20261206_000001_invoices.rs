//! What the rules need to know of each account's paid invoices, kept on the account's row:
//!
//! - `paid_invoices`: how many were recorded. An invoice's number (the referee's 1st, 2nd,
//!   3rd paid invoice, which `INVOICE_PAID` rules pay on) is this count as the invoice's own
//!   update of it returns: one statement that also locks the account's row, so concurrent
//!   invoices of one account are numbered one after the other, without gaps or repeats, and
//!   each reads the spend of every invoice numbered before it.
//! - `last_invoice_at`: when the latest of them happened: a referee that paid within the
//!   program's `active_referral_days` (default 45) is an active referral of its referrer.
//! - `last_invoice_total`: the total of the one recorded last: the price of the account's
//!   plan, for `PLAN_PRICE` rules ("a free month of your own plan").

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    LastInvoiceAt,
}

const UP: [&str; 3] = [
    "ALTER TABLE accounts ADD COLUMN paid_invoices INTEGER NOT NULL DEFAULT 0 CHECK (paid_invoices >= 0)",
    "ALTER TABLE accounts ADD COLUMN last_invoice_total BIGINT CHECK (last_invoice_total >= 0)",
    "ALTER TABLE program_settings ADD COLUMN active_referral_days INTEGER NOT NULL DEFAULT 45 \
     CHECK (active_referral_days BETWEEN 1 AND 3650)",
];

const DOWN: [&str; 4] = [
    "ALTER TABLE program_settings DROP COLUMN active_referral_days",
    "ALTER TABLE accounts DROP COLUMN last_invoice_total",
    "ALTER TABLE accounts DROP COLUMN last_invoice_at",
    "ALTER TABLE accounts DROP COLUMN paid_invoices",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &UP).await?;
        // The timestamp type differs between the databases: the schema builder picks it.
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .add_column(timestamp_with_time_zone_null(Accounts::LastInvoiceAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &DOWN).await
    }
}
