//! Reward rules as admin-managed records, and program 1 (cloud credit): billing schemes and
//! top-up totals on accounts, rule conditions, the rule's values recorded on each entry, and
//! credit applied to invoices, once per invoice.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    BillingScheme,
    TopUpTotal,
    PaymentMethodVerifiedAt,
}

#[derive(DeriveIden)]
enum RewardRules {
    Table,
    Threshold,
    Recurring,
    AccountGroups,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    RuleSnapshot,
}

#[derive(DeriveIden)]
enum CreditApplications {
    Table,
    Id,
    InvoiceId,
    AccountId,
    RequestHash,
    Requested,
    Applied,
    EntryId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            string_len(Accounts::BillingScheme, 16).default("POSTPAID").to_owned(),
            big_integer(Accounts::TopUpTotal).default(0).to_owned(),
            timestamp_with_time_zone_null(Accounts::PaymentMethodVerifiedAt),
        ] {
            manager
                .alter_table(Table::alter().table(Accounts::Table).add_column(column).to_owned())
                .await?;
        }
        for column in [
            big_integer_null(RewardRules::Threshold),
            boolean(RewardRules::Recurring).default(false).to_owned(),
            text_null(RewardRules::AccountGroups),
        ] {
            manager
                .alter_table(Table::alter().table(RewardRules::Table).add_column(column).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .add_column(text_null(LedgerEntries::RuleSnapshot))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditApplications::Table)
                    .col(big_pk_auto(CreditApplications::Id))
                    .col(string_len_uniq(CreditApplications::InvoiceId, 128))
                    .col(big_integer(CreditApplications::AccountId))
                    .col(string_len(CreditApplications::RequestHash, 64))
                    .col(big_integer(CreditApplications::Requested))
                    .col(big_integer(CreditApplications::Applied))
                    .col(big_integer_null(CreditApplications::EntryId))
                    .col(timestamp_with_time_zone(CreditApplications::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credit_applications_account")
                            .from(CreditApplications::Table, CreditApplications::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credit_applications_entry")
                            .from(CreditApplications::Table, CreditApplications::EntryId)
                            .to(LedgerEntries::Table, LedgerEntries::Id),
                    )
                    .check(Expr::col(CreditApplications::Requested).gt(0))
                    .check(Expr::col(CreditApplications::Applied).gte(0))
                    .check(Expr::col(CreditApplications::Applied).lte(Expr::col(CreditApplications::Requested)))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CreditApplications::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .drop_column(LedgerEntries::RuleSnapshot)
                    .to_owned(),
            )
            .await?;
        for column in [
            RewardRules::Threshold,
            RewardRules::Recurring,
            RewardRules::AccountGroups,
        ] {
            manager
                .alter_table(Table::alter().table(RewardRules::Table).drop_column(column).to_owned())
                .await?;
        }
        for column in [
            Accounts::BillingScheme,
            Accounts::TopUpTotal,
            Accounts::PaymentMethodVerifiedAt,
        ] {
            manager
                .alter_table(Table::alter().table(Accounts::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
