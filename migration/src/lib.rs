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
mod m20261208_000001_affiliate_area;
mod m20261209_000001_outbox;
mod postgres_only;

/// Runs plain SQL statements in order: the migrations that are a list of them (SQLite adds one
/// column per ALTER TABLE, so they are one statement each).
async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for statement in statements {
        manager.get_connection().execute_unprepared(statement).await?;
    }
    Ok(())
}

/// A name as customers other than its owner see it: the first two letters of the first word
/// and the initial of the last ("Jo*** S."). Here rather than in the server, which re-exports
/// it, because a migration stores it for the accounts that existed before.
pub fn mask_name(name: &str) -> String {
    let mut words = name.split_whitespace();
    let first: String = words.next().unwrap_or("").chars().take(2).collect();
    let last_initial = words.last().and_then(|w| w.chars().next());
    match last_initial {
        Some(initial) => format!("{first}*** {initial}."),
        None => format!("{first}***"),
    }
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
            Box::new(m20261208_000001_affiliate_area::Migration),
            Box::new(m20261209_000001_outbox::Migration),
        ]
    }
}
