//! RecordPurchase's writes as one PL/pgSQL function on PostgreSQL (`sql/record_purchase.sql`),
//! so that a purchase costs two round trips: one read of its facts, one call. SQLite runs
//! statements in-process and has no stored functions: the server records purchases in steps
//! there.

use crate::postgres_only;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = include_str!("sql/record_purchase.sql");
const DOWN: &str = "DROP FUNCTION referral_record_purchase(text, bigint, text, text, timestamptz, boolean, bigint, \
                    timestamptz, jsonb, jsonb)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only::execute(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only::execute(manager, DOWN).await
    }
}
