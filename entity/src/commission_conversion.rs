use sea_orm::entity::prelude::*;

/// Cash commission an affiliate converted into credit: the CASH debit and the CREDIT credit it
/// wrote, and the rate it used. Idempotent per (account, key).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "commission_conversions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    /// Millionths of cash taken.
    pub cash_amount: i64,
    /// Millionths of credit given.
    pub credit_amount: i64,
    /// Credit per 1 of cash, in millionths, as the setting was.
    pub rate: i64,
    pub cash_entry_id: i64,
    pub credit_entry_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
