//! Balance adjustments by admins (`adjustBalance`): each is a ledger entry of kind ADJUSTMENT,
//! and this table keeps who made it, why, and under which idempotency key, so that a retried
//! adjustment answers the first one's entry instead of moving the balance again. The key is
//! the caller's own: (actor, idempotency_key) is unique.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Adjustments {
    Table,
    Id,
    Actor,
    IdempotencyKey,
    RequestHash,
    AccountId,
    EntryId,
    Reason,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Adjustments::Table)
                    .col(big_pk_auto(Adjustments::Id))
                    .col(string_len(Adjustments::Actor, 200))
                    .col(string_len_null(Adjustments::IdempotencyKey, 128))
                    .col(string_len(Adjustments::RequestHash, 64))
                    .col(big_integer(Adjustments::AccountId))
                    .col(big_integer(Adjustments::EntryId))
                    .col(string_len(Adjustments::Reason, 500))
                    .col(timestamp_with_time_zone(Adjustments::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_adjustments_account")
                            .from(Adjustments::Table, Adjustments::AccountId)
                            .to(Alias::new("accounts"), Alias::new("id")),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_adjustments_entry")
                            .from(Adjustments::Table, Adjustments::EntryId)
                            .to(Alias::new("ledger_entries"), Alias::new("id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_adjustments_idempotency")
                    .table(Adjustments::Table)
                    .col(Adjustments::Actor)
                    .col(Adjustments::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Adjustments::Table).to_owned())
            .await
    }
}
