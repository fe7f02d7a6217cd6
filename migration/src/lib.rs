//! The database schema, as an ordered list of migrations. The server applies them at start,
//! and the tests build every database from them, never from the entities.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_rules_and_credit;
mod m20261123_000003_open_lots_index;
mod m20261201_000001_referral_integrity;
mod m20261201_000002_link_clicks;
mod m20261201_000003_claim_limits;
mod m20261204_000001_rule_spec;
mod m20261204_000002_ledger_time;
mod m20261204_000003_events_time;
mod m20261204_000004_sandbox_clock;
mod m20261205_000001_claim_function;
mod m20261205_000002_purchase_function;
mod m20261206_000001_invoices;
mod m20261206_000002_affiliate_terms;
mod m20261206_000003_fingerprints;
mod m20261206_000004_spend_limits;
mod m20261207_000001_withdrawals;
mod m20261207_000002_adjustments;
mod postgres_only;

/// Runs plain SQL statements in order: the migrations that are a list of them (SQLite adds one
/// column per ALTER TABLE, so they are one statement each).
async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for statement in statements {
        manager.get_connection().execute_unprepared(statement).await?;
    }
    Ok(())
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_rules_and_credit::Migration),
            Box::new(m20261123_000003_open_lots_index::Migration),
            Box::new(m20261201_000001_referral_integrity::Migration),
            Box::new(m20261201_000002_link_clicks::Migration),
            Box::new(m20261201_000003_claim_limits::Migration),
            Box::new(m20261204_000004_sandbox_clock::Migration),
            Box::new(m20261204_000001_rule_spec::Migration),
            Box::new(m20261204_000002_ledger_time::Migration),
            Box::new(m20261204_000003_events_time::Migration),
            Box::new(m20261205_000001_claim_function::Migration),
            Box::new(m20261205_000002_purchase_function::Migration),
            Box::new(m20261206_000001_invoices::Migration),
            Box::new(m20261206_000002_affiliate_terms::Migration),
            Box::new(m20261206_000003_fingerprints::Migration),
            Box::new(m20261206_000004_spend_limits::Migration),
            Box::new(m20261207_000001_withdrawals::Migration),
            Box::new(m20261207_000002_adjustments::Migration),
        ]
    }
}
