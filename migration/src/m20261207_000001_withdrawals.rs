//! The affiliate program (program 5): applications and decisions, a sign-up bonus, and
//! withdrawals of cash commission.
//!
//! - `accounts.affiliate_applied_at` / `affiliate_note`: when the account applied and what it
//!   wrote; `affiliate_decided_at`: an admin's last decision; `affiliate_approved_at`: its
//!   first approval, set once, by the conditional update that pays the sign-up bonus, so a
//!   second approval (after a suspension) pays nothing.
//! - `program_settings.affiliate_signup_bonus`: CASH paid on that first approval (0: none).
//! - `withdrawals`: one request each, its amount taken from the available CASH at once (the
//!   `entry_id` debit) and given back by a rejection (`return_entry_id`). One open request per
//!   account: a partial unique index, so two requests at once cannot both be open.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    AffiliateAppliedAt,
    AffiliateDecidedAt,
    AffiliateApprovedAt,
}

#[derive(DeriveIden)]
enum Withdrawals {
    Table,
    Id,
    AccountId,
    Amount,
    Status,
    IdempotencyKey,
    RequestHash,
    EntryId,
    ReturnEntryId,
    PayoutReference,
    Reason,
    RequestedAt,
    DecidedAt,
    DecidedBy,
}

const UP: [&str; 2] = [
    "ALTER TABLE accounts ADD COLUMN affiliate_note VARCHAR(1000)",
    "ALTER TABLE program_settings ADD COLUMN affiliate_signup_bonus BIGINT NOT NULL DEFAULT 0 \
     CHECK (affiliate_signup_bonus >= 0)",
];

const INDEXES: [&str; 3] = [
    "CREATE UNIQUE INDEX ux_withdrawals_idempotency ON withdrawals (account_id, idempotency_key)",
    "CREATE UNIQUE INDEX ux_withdrawals_one_open ON withdrawals (account_id) \
     WHERE status IN ('REQUESTED', 'APPROVED')",
    "CREATE INDEX ix_withdrawals_status ON withdrawals (status, id)",
];

const DOWN: [&str; 6] = [
    "DROP TABLE withdrawals",
    "ALTER TABLE program_settings DROP COLUMN affiliate_signup_bonus",
    "ALTER TABLE accounts DROP COLUMN affiliate_note",
    "ALTER TABLE accounts DROP COLUMN affiliate_applied_at",
    "ALTER TABLE accounts DROP COLUMN affiliate_decided_at",
    "ALTER TABLE accounts DROP COLUMN affiliate_approved_at",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &UP).await?;
        // The timestamp type differs between the databases: the schema builder picks it, one
        // column per statement for SQLite.
        for column in [
            Accounts::AffiliateAppliedAt,
            Accounts::AffiliateDecidedAt,
            Accounts::AffiliateApprovedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Withdrawals::Table)
                    .col(big_pk_auto(Withdrawals::Id))
                    .col(big_integer(Withdrawals::AccountId))
                    .col(big_integer(Withdrawals::Amount))
                    .col(string_len(Withdrawals::Status, 16))
                    .col(string_len_null(Withdrawals::IdempotencyKey, 128))
                    .col(string_len_null(Withdrawals::RequestHash, 64))
                    .col(big_integer(Withdrawals::EntryId))
                    .col(big_integer_null(Withdrawals::ReturnEntryId))
                    .col(string_len_null(Withdrawals::PayoutReference, 200))
                    .col(string_len_null(Withdrawals::Reason, 1000))
                    .col(timestamp_with_time_zone(Withdrawals::RequestedAt))
                    .col(timestamp_with_time_zone_null(Withdrawals::DecidedAt))
                    .col(string_len_null(Withdrawals::DecidedBy, 200))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_withdrawals_account")
                            .from(Withdrawals::Table, Withdrawals::AccountId)
                            .to(Accounts::Table, Alias::new("id")),
                    )
                    .check(Expr::col(Withdrawals::Amount).gt(0))
                    .check(Expr::col(Withdrawals::Status).is_in(["REQUESTED", "APPROVED", "REJECTED", "PAID"]))
                    .to_owned(),
            )
            .await?;
        crate::run_all(manager, &INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &DOWN).await
    }
}
