use sea_orm::entity::prelude::*;

/// An admin's adjustment of a balance: who, why, under which idempotency key; the entry it
/// wrote is `entry_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "adjustments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub account_id: i64,
    pub entry_id: i64,
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
