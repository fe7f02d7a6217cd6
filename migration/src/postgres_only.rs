//! Migrations that exist only on PostgreSQL: stored functions. SQLite runs statements
//! in-process and has no stored functions; the server runs the same flows in Rust there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Runs `sql` on PostgreSQL; nothing on SQLite.
pub async fn execute(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
