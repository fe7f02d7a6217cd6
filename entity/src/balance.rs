use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "balances")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub unit: crate::enums::Unit,
    pub available: i64,
    pub pending: i64,
    /// Rewards made available, less rewards taken back (expiry and spending do not lower it).
    pub lifetime_earned: i64,
    /// What reversals could not take from `available`; later earnings pay it first, so while
    /// it is above 0, `available` is 0.
    pub debt: i64,
    /// No hold of this balance ends and no lot of it expires before this time (a lower bound;
    /// None: nothing will). Until then, nothing about the balance changes by time alone.
    pub next_due_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
