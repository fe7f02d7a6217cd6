use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "reward_rules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub trigger: crate::enums::RuleTrigger,
    pub beneficiary: crate::enums::Beneficiary,
    pub unit: crate::enums::Unit,
    pub calculation: crate::enums::Calculation,
    pub value: Option<i64>,
    /// A JSON array of category names; NULL: every category counts.
    pub product_categories: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub threshold: Option<i64>,
    pub recurring: bool,
    /// A JSON array of account groups; NULL: every group.
    pub account_groups: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
