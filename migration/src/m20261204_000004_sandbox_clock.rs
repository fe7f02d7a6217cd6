//! The sandbox clock's offset: how far ahead of the system time admins of a sandbox server
//! (`SANDBOX=true`) have moved its clock, in milliseconds. Kept with the program's settings so
//! that a restarted server, or a second instance on the same database, carries on from there
//! instead of going back in time. Only ever grows; 0 on every database that never ran as a
//! sandbox, and ignored by a server that does not run as one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE program_settings ADD COLUMN clock_offset_ms BIGINT NOT NULL DEFAULT 0 \
                  CHECK (clock_offset_ms >= 0)";
const DOWN: &str = "ALTER TABLE program_settings DROP COLUMN clock_offset_ms";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
