//! An account's standing in the affiliate program and its own terms:
//!
//! - `affiliate_status`: `APPLIED`, `APPROVED` or `REJECTED`; null for an account that is not
//!   in the program. An admin who sets an account's terms makes it `APPROVED`.
//! - `affiliate_terms`: what the rules that pay the account as a referrer pay it instead of
//!   their own value (fixed or percentage, one-time or recurring), as JSON; null: the rules'.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 2] = [
    "ALTER TABLE accounts ADD COLUMN affiliate_status VARCHAR(32)",
    "ALTER TABLE accounts ADD COLUMN affiliate_terms TEXT",
];

const DOWN: [&str; 2] = [
    "ALTER TABLE accounts DROP COLUMN affiliate_terms",
    "ALTER TABLE accounts DROP COLUMN affiliate_status",
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
