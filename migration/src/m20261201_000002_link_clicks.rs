//! Clicks on referral links: one row per visitor, per account whose code was followed, per
//! day (UTC). The unique index is what makes a click count once, however many times or how
//! concurrently the visitor follows the link; it also serves counting an account's clicks,
//! as its leading column is the account.
//!
//! A visitor is a salted hash of its address and user agent (`service::clicks`): no address is
//! ever stored.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clicks {
    Table,
    Id,
    AccountId,
    VisitorHash,
    Day,
    Code,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Clicks::Table)
                    .col(big_pk_auto(Clicks::Id))
                    .col(big_integer(Clicks::AccountId))
                    // SHA-256, hex.
                    .col(string_len(Clicks::VisitorHash, 64))
                    .col(date(Clicks::Day))
                    // The code followed, as it was then (an admin may change an account's code).
                    .col(string_len(Clicks::Code, 32))
                    .col(timestamp_with_time_zone(Clicks::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_clicks_account")
                            .from(Clicks::Table, Clicks::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_clicks_once_a_day")
                    .table(Clicks::Table)
                    .col(Clicks::AccountId)
                    .col(Clicks::VisitorHash)
                    .col(Clicks::Day)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Clicks::Table).to_owned()).await
    }
}
