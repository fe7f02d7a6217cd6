//! The rest of the affiliate area (program 5):
//!
//! - payout schedules: `program_settings.payout_schedule` for the program and
//!   `accounts.payout_schedule` for one affiliate (null: the program's). Cash commission earned
//!   under MONTHLY or YEARLY becomes withdrawable at the end of the period its hold ends in;
//! - conversions of cash commission into credit (`commission_conversions`), at the rate
//!   `program_settings.commission_conversion_rate` (credit per 1 cash, in millionths; null:
//!   conversion is off), each a CASH debit and a CREDIT credit, idempotent per account and key;
//! - marketing material (`marketing_materials`): banners and snippets with a `{link}`
//!   placeholder, rendered for each affiliate with its own link;
//! - what an affiliate's list of referred friends shows and searches: the referee's current
//!   plan and billing cycle (`accounts.plan`, `billing_cycle`, from its latest paid invoice
//!   that names them), and its masked name (`accounts.masked_name`, the only name an
//!   affiliate may search by; filled in here for the accounts that exist).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{FromQueryResult, Statement, Value};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 9] = [
    "ALTER TABLE program_settings ADD COLUMN payout_schedule VARCHAR(16) NOT NULL DEFAULT 'AS_EARNED' \
     CHECK (payout_schedule IN ('AS_EARNED', 'MONTHLY', 'YEARLY'))",
    "ALTER TABLE program_settings ADD COLUMN commission_conversion_rate BIGINT \
     CHECK (commission_conversion_rate > 0)",
    "ALTER TABLE accounts ADD COLUMN payout_schedule VARCHAR(16) \
     CHECK (payout_schedule IN ('AS_EARNED', 'MONTHLY', 'YEARLY'))",
    "ALTER TABLE accounts ADD COLUMN plan VARCHAR(100)",
    "ALTER TABLE accounts ADD COLUMN billing_cycle VARCHAR(16)",
    "ALTER TABLE accounts ADD COLUMN masked_name VARCHAR(64)",
    "CREATE TABLE commission_conversions (\
       id BIGINT_PK, \
       account_id BIGINT NOT NULL REFERENCES accounts (id), \
       idempotency_key VARCHAR(128), \
       request_hash VARCHAR(64) NOT NULL, \
       cash_amount BIGINT NOT NULL CHECK (cash_amount > 0), \
       credit_amount BIGINT NOT NULL CHECK (credit_amount > 0), \
       rate BIGINT NOT NULL CHECK (rate > 0), \
       cash_entry_id BIGINT NOT NULL REFERENCES ledger_entries (id), \
       credit_entry_id BIGINT NOT NULL REFERENCES ledger_entries (id), \
       created_at TIMESTAMPTZ NOT NULL)",
    "CREATE UNIQUE INDEX ux_commission_conversions_idempotency \
     ON commission_conversions (account_id, idempotency_key)",
    "CREATE TABLE marketing_materials (\
       id BIGINT_PK, \
       kind VARCHAR(16) NOT NULL CHECK (kind IN ('BANNER', 'SNIPPET')), \
       name VARCHAR(200) NOT NULL, \
       format VARCHAR(16) NOT NULL CHECK (format IN ('HTML', 'TEXT')), \
       template TEXT NOT NULL, \
       created_at TIMESTAMPTZ NOT NULL, \
       updated_at TIMESTAMPTZ NOT NULL)",
];

const DOWN: [&str; 8] = [
    "DROP TABLE marketing_materials",
    "DROP TABLE commission_conversions",
    "ALTER TABLE accounts DROP COLUMN masked_name",
    "ALTER TABLE accounts DROP COLUMN billing_cycle",
    "ALTER TABLE accounts DROP COLUMN plan",
    "ALTER TABLE accounts DROP COLUMN payout_schedule",
    "ALTER TABLE program_settings DROP COLUMN commission_conversion_rate",
    "ALTER TABLE program_settings DROP COLUMN payout_schedule",
];

/// Accounts whose masked names are filled in per statement.
const BATCH: u64 = 1000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let (id_pk, timestamp) = match backend {
            sea_orm_migration::sea_orm::DbBackend::Postgres => ("BIGSERIAL PRIMARY KEY", "TIMESTAMPTZ"),
            _ => ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
        };
        for statement in UP {
            let statement = statement.replace("BIGINT_PK", id_pk).replace("TIMESTAMPTZ", timestamp);
            manager.get_connection().execute_unprepared(&statement).await?;
        }
        mask_existing_names(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, &DOWN).await
    }
}

#[derive(FromQueryResult)]
struct Named {
    id: i64,
    display_name: String,
}

/// Fills in `masked_name` for every account with a name, a batch per statement, in id order.
async fn mask_existing_names(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let placeholder = |n: usize| match backend {
        sea_orm_migration::sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let mut after = 0_i64;
    loop {
        let batch = Named::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT id, display_name FROM accounts WHERE display_name IS NOT NULL AND id > {} \
                 ORDER BY id LIMIT {BATCH}",
                placeholder(1)
            ),
            [after.into()],
        ))
        .all(db)
        .await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = last.id;
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 2);
        let rows: Vec<String> = batch
            .iter()
            .enumerate()
            .map(|(i, named)| {
                values.push(named.id.into());
                values.push(crate::mask_name(&named.display_name).into());
                match backend {
                    // PostgreSQL types the list from its first row: the id is a BIGINT.
                    sea_orm_migration::sea_orm::DbBackend::Postgres => {
                        format!("({}::BIGINT, {})", placeholder(2 * i + 1), placeholder(2 * i + 2))
                    }
                    _ => format!("({}, {})", placeholder(2 * i + 1), placeholder(2 * i + 2)),
                }
            })
            .collect();
        // SQLite and PostgreSQL both name a VALUES list's columns column1, column2.
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE accounts SET masked_name = v.column2 FROM (VALUES {}) AS v \
                 WHERE accounts.id = v.column1",
                rows.join(", ")
            ),
            values,
        ))
        .await?;
    }
}
