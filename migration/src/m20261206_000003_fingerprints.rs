//! Payment fingerprints (program 4's fraud checks):
//!
//! - `accounts.payment_fingerprint`: the fingerprint of the account's verified payment method,
//!   as the payment provider gives it. A referee with its referrer's, or with another referee's
//!   of the same referrer, is rejected (`DUPLICATE_FINGERPRINT`).
//! - `payment_fingerprints`: one eligible referrer per fingerprint, the first account that
//!   verified with it; its primary key decides between accounts that verify at once.
//! - `accounts.referrer_ineligible_reason`: why an account cannot earn as a referrer
//!   (`DUPLICATE_REFERRER`: another account is the eligible referrer of its fingerprint).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 5] = [
    "ALTER TABLE accounts ADD COLUMN payment_fingerprint VARCHAR(200)",
    "ALTER TABLE accounts ADD COLUMN referrer_ineligible_reason VARCHAR(32)",
    "CREATE INDEX ix_accounts_payment_fingerprint ON accounts (payment_fingerprint)",
    "CREATE TABLE payment_fingerprints (\
        fingerprint VARCHAR(200) NOT NULL PRIMARY KEY, \
        account_id BIGINT NOT NULL REFERENCES accounts (id))",
    "CREATE INDEX ix_payment_fingerprints_account ON payment_fingerprints (account_id)",
];

const DOWN: [&str; 5] = [
    "DROP INDEX ix_payment_fingerprints_account",
    "DROP TABLE payment_fingerprints",
    "DROP INDEX ix_accounts_payment_fingerprint",
    "ALTER TABLE accounts DROP COLUMN referrer_ineligible_reason",
    "ALTER TABLE accounts DROP COLUMN payment_fingerprint",
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
