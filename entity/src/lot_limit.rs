use sea_orm::entity::prelude::*;

/// Where one lot may be spent: the restriction its rule set, as JSON
/// (`service::ledger::SpendLimit`). A lot without a row may pay anything.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "lot_limits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub entry_id: i64,
    pub spend_limit: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
