//! The reward store's claim limits: claims waiting for delivery at once, and claims a day, per
//! account. Unset (NULL) by default: no limit. The indexes serve the two counts a claim makes
//! when a limit is set, so that they stay cheap on accounts with a long history.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One statement each: SQLite adds one column per ALTER TABLE. The CHECKs hold on both databases.
const UP: [&str; 4] = [
    "ALTER TABLE program_settings ADD COLUMN max_pending_claims INTEGER NULL \
     CHECK (max_pending_claims IS NULL OR max_pending_claims >= 1)",
    "ALTER TABLE program_settings ADD COLUMN max_claims_per_day INTEGER NULL \
     CHECK (max_claims_per_day IS NULL OR max_claims_per_day >= 1)",
    "CREATE INDEX ix_claims_pending_by_account ON claims (account_id) WHERE status = 'PENDING'",
    "CREATE INDEX ix_claims_account_created ON claims (account_id, created_at)",
];

const DOWN: [&str; 4] = [
    "DROP INDEX ix_claims_account_created",
    "DROP INDEX ix_claims_pending_by_account",
    "ALTER TABLE program_settings DROP COLUMN max_claims_per_day",
    "ALTER TABLE program_settings DROP COLUMN max_pending_claims",
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
