use sea_orm::entity::prelude::*;

/// Credit applied to one invoice of the billing system: at most one row per invoice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "credit_applications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub invoice_id: String,
    pub account_id: i64,
    pub request_hash: String,
    pub requested: i64,
    pub applied: i64,
    pub entry_id: Option<i64>,
    pub created_at: DateTimeUtc,
    /// What it applied to each invoice line, as JSON; None: it had no lines.
    pub lines: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
