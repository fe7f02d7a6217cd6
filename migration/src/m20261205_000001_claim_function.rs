//! ClaimReward as one PL/pgSQL function on PostgreSQL (`sql/claim_reward.sql`), so that a
//! claim costs one round trip. SQLite runs statements in-process and has no stored functions:
//! nothing to do there, the server runs the same flow in Rust.

use crate::postgres_only;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = include_str!("sql/claim_reward.sql");
const DOWN: &str = "DROP FUNCTION referral_claim_reward(text, bigint, text, text, timestamptz)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only::execute(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only::execute(manager, DOWN).await
    }
}
