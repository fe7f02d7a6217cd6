//! Referral integrity: an admin may disqualify an account (it no longer refers nor is
//! rewarded). The new rejection reasons and the `ADMIN` referral source are text values of
//! existing columns and need no change here.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    DisqualifiedAt,
    DisqualificationReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            timestamp_with_time_zone_null(Accounts::DisqualifiedAt),
            string_len_null(Accounts::DisqualificationReason, 500),
        ] {
            manager
                .alter_table(Table::alter().table(Accounts::Table).add_column(column).to_owned())
                .await?;
        }
        // The two are set and cleared together, in one statement, by the service: SQLite cannot
        // add a CHECK constraint to an existing table.
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Accounts::DisqualificationReason, Accounts::DisqualifiedAt] {
            manager
                .alter_table(Table::alter().table(Accounts::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
