use sea_orm::entity::prelude::*;

/// A reward rule as stored. What a rule pays on (trigger), to whom (beneficiary) and in which
/// unit are columns, for queries and indexes; its conditions, calculation and payout are one
/// JSON document (`spec`), read and written only by `service/rules/spec.rs`, so a new option
/// is a new variant there and needs no migration.
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
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// `{"conditions": [...], "calculation": ..., "payout": {...}}` (service/rules/spec.rs).
    pub spec: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
