//! The foundation: accounts and referrals, the catalog, reward rules, events, the ledger
//! (entries, lots, allocations, balances), claims, settings and the audit log.
//!
//! Every rule that must hold under concurrency is a constraint here: one active referral per
//! referee, one event per eventId, one reward per (rule, referral, occurrence), one claim per
//! idempotency key, and balances that can never go below zero.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProgramSettings {
    Table,
    Id,
    Enabled,
    Currency,
    ReferralLinkTemplate,
    LandingUrl,
    CookieDays,
    GbPerClaim,
    MinimumWithdrawal,
    RequireVerifiedPaymentForLink,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    ExternalId,
    DisplayName,
    Email,
    AccountGroup,
    ReferralCode,
    Status,
    FirstPurchaseAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
    RefereeId,
    ReferrerId,
    Status,
    RejectionReason,
    CodeUsed,
    Source,
    CreatedAt,
    QualifiedAt,
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
    Key,
    Name,
    RedemptionRate,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Key,
    ProviderId,
    Name,
    Category,
    ProductRate,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RewardRules {
    Table,
    Id,
    Name,
    Enabled,
    Trigger,
    Beneficiary,
    Unit,
    Calculation,
    Value,
    ProductCategories,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    EventId,
    Kind,
    AccountId,
    RequestHash,
    Payload,
    Decisions,
    OccurredAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Claims {
    Table,
    Id,
    AccountId,
    ProviderId,
    Gb,
    Points,
    Status,
    IdempotencyKey,
    RequestHash,
    CreatedAt,
    DecidedAt,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    AccountId,
    Unit,
    Amount,
    Remaining,
    Kind,
    Status,
    Description,
    EventId,
    ReferralId,
    RuleId,
    Occurrence,
    ClaimId,
    AvailableAt,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LotAllocations {
    Table,
    Id,
    DebitEntryId,
    LotEntryId,
    Amount,
}

#[derive(DeriveIden)]
enum Balances {
    Table,
    AccountId,
    Unit,
    Available,
    Pending,
    LifetimeEarned,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Actor,
    Action,
    Target,
    Details,
    CreatedAt,
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    stmt.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row, id = 1: the program's settings.
        manager
            .create_table(
                Table::create()
                    .table(ProgramSettings::Table)
                    .col(integer(ProgramSettings::Id).primary_key())
                    .col(boolean(ProgramSettings::Enabled))
                    .col(string_len(ProgramSettings::Currency, 8))
                    .col(string_len(ProgramSettings::ReferralLinkTemplate, 500))
                    .col(string_len_null(ProgramSettings::LandingUrl, 500))
                    .col(integer(ProgramSettings::CookieDays))
                    .col(integer(ProgramSettings::GbPerClaim))
                    .col(big_integer(ProgramSettings::MinimumWithdrawal))
                    .col(boolean(ProgramSettings::RequireVerifiedPaymentForLink))
                    .col(timestamp_with_time_zone(ProgramSettings::UpdatedAt))
                    .check(Expr::col(ProgramSettings::Id).eq(1))
                    .check(Expr::col(ProgramSettings::GbPerClaim).gt(0))
                    .check(Expr::col(ProgramSettings::CookieDays).gte(0))
                    .check(Expr::col(ProgramSettings::MinimumWithdrawal).gte(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(big_pk_auto(Accounts::Id))
                    .col(string_len_uniq(Accounts::ExternalId, 128))
                    .col(string_len_null(Accounts::DisplayName, 200))
                    .col(string_len_null(Accounts::Email, 320))
                    .col(string_len_null(Accounts::AccountGroup, 64))
                    // Stored upper-case, so this unique index is case-insensitive by construction.
                    .col(string_len_uniq(Accounts::ReferralCode, 32))
                    .col(string_len(Accounts::Status, 16))
                    .col(timestamp_with_time_zone_null(Accounts::FirstPurchaseAt))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Referrals::Table)
                    .col(big_pk_auto(Referrals::Id))
                    .col(big_integer(Referrals::RefereeId))
                    .col(big_integer_null(Referrals::ReferrerId))
                    .col(string_len(Referrals::Status, 16))
                    .col(string_len_null(Referrals::RejectionReason, 32))
                    .col(string_len_null(Referrals::CodeUsed, 64))
                    .col(string_len(Referrals::Source, 16))
                    .col(timestamp_with_time_zone(Referrals::CreatedAt))
                    .col(timestamp_with_time_zone_null(Referrals::QualifiedAt))
                    .foreign_key(&mut fk(
                        "fk_referrals_referee",
                        (Referrals::Table, Referrals::RefereeId),
                        (Accounts::Table, Accounts::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_referrals_referrer",
                        (Referrals::Table, Referrals::ReferrerId),
                        (Accounts::Table, Accounts::Id),
                    ))
                    .check(Expr::col(Referrals::ReferrerId).ne(Expr::col(Referrals::RefereeId)))
                    .to_owned(),
            )
            .await?;
        // One referrer per referee: rejected attempts are kept for the record, but at most one
        // referral of a referee is not rejected. Same syntax on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_referrals_one_per_referee ON referrals (referee_id) \
                 WHERE status <> 'REJECTED'",
            )
            .await?;
        // The same rejected attempt is recorded once, so registering again answers the same row.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_referrals_rejected_once ON referrals \
                 (referee_id, code_used, rejection_reason) WHERE status = 'REJECTED'",
            )
            .await?;
        manager
            .create_index(index("ix_referrals_referrer", Referrals::Table, &["referrer_id", "id"]))
            .await?;
        manager
            .create_index(index("ix_referrals_referee", Referrals::Table, &["referee_id", "id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Providers::Table)
                    .col(big_pk_auto(Providers::Id))
                    .col(string_len_uniq(Providers::Key, 64))
                    .col(string_len(Providers::Name, 200))
                    .col(big_integer_null(Providers::RedemptionRate))
                    .col(timestamp_with_time_zone(Providers::CreatedAt))
                    .col(timestamp_with_time_zone(Providers::UpdatedAt))
                    .check(Expr::col(Providers::RedemptionRate).gt(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(big_pk_auto(Products::Id))
                    .col(string_len_uniq(Products::Key, 64))
                    .col(big_integer(Products::ProviderId))
                    .col(string_len(Products::Name, 200))
                    .col(string_len(Products::Category, 64))
                    .col(big_integer_null(Products::ProductRate))
                    .col(timestamp_with_time_zone(Products::CreatedAt))
                    .col(timestamp_with_time_zone(Products::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_products_provider",
                        (Products::Table, Products::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .check(Expr::col(Products::ProductRate).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_products_provider", Products::Table, &["provider_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RewardRules::Table)
                    .col(big_pk_auto(RewardRules::Id))
                    .col(string_len(RewardRules::Name, 200))
                    .col(boolean(RewardRules::Enabled))
                    .col(string_len(RewardRules::Trigger, 32))
                    .col(string_len(RewardRules::Beneficiary, 16))
                    .col(string_len(RewardRules::Unit, 16))
                    .col(string_len(RewardRules::Calculation, 16))
                    .col(big_integer_null(RewardRules::Value))
                    .col(text_null(RewardRules::ProductCategories))
                    .col(timestamp_with_time_zone(RewardRules::CreatedAt))
                    .col(timestamp_with_time_zone(RewardRules::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Id))
                    .col(string_len_uniq(Events::EventId, 128))
                    .col(string_len(Events::Kind, 32))
                    .col(big_integer(Events::AccountId))
                    .col(string_len(Events::RequestHash, 64))
                    .col(text(Events::Payload))
                    .col(text(Events::Decisions))
                    .col(timestamp_with_time_zone(Events::OccurredAt))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_events_account",
                        (Events::Table, Events::AccountId),
                        (Accounts::Table, Accounts::Id),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Claims::Table)
                    .col(big_pk_auto(Claims::Id))
                    .col(big_integer(Claims::AccountId))
                    .col(big_integer(Claims::ProviderId))
                    .col(integer(Claims::Gb))
                    .col(big_integer(Claims::Points))
                    .col(string_len(Claims::Status, 16))
                    .col(string_len_null(Claims::IdempotencyKey, 128))
                    .col(string_len_null(Claims::RequestHash, 64))
                    .col(timestamp_with_time_zone(Claims::CreatedAt))
                    .col(timestamp_with_time_zone_null(Claims::DecidedAt))
                    .foreign_key(&mut fk(
                        "fk_claims_account",
                        (Claims::Table, Claims::AccountId),
                        (Accounts::Table, Accounts::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_claims_provider",
                        (Claims::Table, Claims::ProviderId),
                        (Providers::Table, Providers::Id),
                    ))
                    .check(Expr::col(Claims::Gb).gt(0))
                    .check(Expr::col(Claims::Points).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_claims_idempotency",
                    Claims::Table,
                    &["account_id", "idempotency_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_claims_status", Claims::Table, &["status", "id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(big_pk_auto(LedgerEntries::Id))
                    .col(big_integer(LedgerEntries::AccountId))
                    .col(string_len(LedgerEntries::Unit, 16))
                    .col(big_integer(LedgerEntries::Amount))
                    // Set on positive posted entries (lots): what spending has not consumed yet.
                    .col(big_integer_null(LedgerEntries::Remaining))
                    .col(string_len(LedgerEntries::Kind, 32))
                    .col(string_len(LedgerEntries::Status, 16))
                    .col(string_len(LedgerEntries::Description, 500))
                    .col(big_integer_null(LedgerEntries::EventId))
                    .col(big_integer_null(LedgerEntries::ReferralId))
                    .col(big_integer_null(LedgerEntries::RuleId))
                    .col(big_integer_null(LedgerEntries::Occurrence))
                    .col(big_integer_null(LedgerEntries::ClaimId))
                    .col(timestamp_with_time_zone_null(LedgerEntries::AvailableAt))
                    .col(timestamp_with_time_zone_null(LedgerEntries::ExpiresAt))
                    .col(timestamp_with_time_zone(LedgerEntries::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_ledger_account",
                        (LedgerEntries::Table, LedgerEntries::AccountId),
                        (Accounts::Table, Accounts::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_ledger_event",
                        (LedgerEntries::Table, LedgerEntries::EventId),
                        (Events::Table, Events::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_ledger_referral",
                        (LedgerEntries::Table, LedgerEntries::ReferralId),
                        (Referrals::Table, Referrals::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_ledger_rule",
                        (LedgerEntries::Table, LedgerEntries::RuleId),
                        (RewardRules::Table, RewardRules::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_ledger_claim",
                        (LedgerEntries::Table, LedgerEntries::ClaimId),
                        (Claims::Table, Claims::Id),
                    ))
                    .check(Expr::col(LedgerEntries::Amount).ne(0))
                    .check(
                        Expr::col(LedgerEntries::Remaining)
                            .is_null()
                            .or(Expr::col(LedgerEntries::Remaining)
                                .gte(0)
                                .and(Expr::col(LedgerEntries::Remaining).lte(Expr::col(LedgerEntries::Amount)))),
                    )
                    .to_owned(),
            )
            .await?;
        // One reward per (rule, referral, occurrence). NULLs are distinct in a unique index on
        // both databases, so entries that no rule caused are not constrained by it.
        manager
            .create_index(
                index(
                    "ux_ledger_reward_once",
                    LedgerEntries::Table,
                    &["rule_id", "referral_id", "occurrence"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_ledger_account", LedgerEntries::Table, &["account_id", "id"]))
            .await?;
        manager
            .create_index(index(
                "ix_ledger_account_unit",
                LedgerEntries::Table,
                &["account_id", "unit", "id"],
            ))
            .await?;
        manager
            .create_index(index("ix_ledger_event", LedgerEntries::Table, &["event_id"]))
            .await?;
        manager
            .create_index(index("ix_ledger_referral", LedgerEntries::Table, &["referral_id"]))
            .await?;
        manager
            .create_index(index("ix_ledger_claim", LedgerEntries::Table, &["claim_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LotAllocations::Table)
                    .col(big_pk_auto(LotAllocations::Id))
                    .col(big_integer(LotAllocations::DebitEntryId))
                    .col(big_integer(LotAllocations::LotEntryId))
                    .col(big_integer(LotAllocations::Amount))
                    .foreign_key(&mut fk(
                        "fk_alloc_debit",
                        (LotAllocations::Table, LotAllocations::DebitEntryId),
                        (LedgerEntries::Table, LedgerEntries::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_alloc_lot",
                        (LotAllocations::Table, LotAllocations::LotEntryId),
                        (LedgerEntries::Table, LedgerEntries::Id),
                    ))
                    .check(Expr::col(LotAllocations::Amount).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_alloc_debit", LotAllocations::Table, &["debit_entry_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Balances::Table)
                    .col(big_integer(Balances::AccountId))
                    .col(string_len(Balances::Unit, 16))
                    .col(big_integer(Balances::Available))
                    .col(big_integer(Balances::Pending))
                    .col(big_integer(Balances::LifetimeEarned))
                    .primary_key(Index::create().col(Balances::AccountId).col(Balances::Unit))
                    .foreign_key(&mut fk(
                        "fk_balances_account",
                        (Balances::Table, Balances::AccountId),
                        (Accounts::Table, Accounts::Id),
                    ))
                    // The ledger's last line of defence: no code path can overspend.
                    .check(Expr::col(Balances::Available).gte(0))
                    .check(Expr::col(Balances::Pending).gte(0))
                    .check(Expr::col(Balances::LifetimeEarned).gte(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(string_len(AuditLog::Actor, 200))
                    .col(string_len(AuditLog::Action, 64))
                    .col(string_len(AuditLog::Target, 200))
                    .col(text(AuditLog::Details))
                    .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                    .to_owned(),
            )
            .await?;

        // The defaults a fresh installation starts from: the program on. This migration also
        // seeded program 3's rule here once; program 3 is now declared only in
        // `service/presets.rs`, and a fresh installation gets it from there (`AppState::connect`
        // applies the default preset to a database that never had a rule). Databases migrated
        // before that keep the row this migration wrote then.
        let now = Expr::current_timestamp();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(ProgramSettings::Table)
                    .columns([
                        ProgramSettings::Id,
                        ProgramSettings::Enabled,
                        ProgramSettings::Currency,
                        ProgramSettings::ReferralLinkTemplate,
                        ProgramSettings::CookieDays,
                        ProgramSettings::GbPerClaim,
                        ProgramSettings::MinimumWithdrawal,
                        ProgramSettings::RequireVerifiedPaymentForLink,
                        ProgramSettings::UpdatedAt,
                    ])
                    .values_panic([
                        1.into(),
                        true.into(),
                        "USD".into(),
                        "{publicUrl}/r/{code}".into(),
                        30.into(),
                        1.into(),
                        0i64.into(),
                        false.into(),
                        now,
                    ])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Balances::Table.into_iden(),
            LotAllocations::Table.into_iden(),
            LedgerEntries::Table.into_iden(),
            Claims::Table.into_iden(),
            Events::Table.into_iden(),
            RewardRules::Table.into_iden(),
            Products::Table.into_iden(),
            Providers::Table.into_iden(),
            Referrals::Table.into_iden(),
            Accounts::Table.into_iden(),
            ProgramSettings::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
