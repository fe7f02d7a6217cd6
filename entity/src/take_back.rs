use sea_orm::entity::prelude::*;

/// Part or all of a reward entry taken back: by a refund, a corrected first purchase or a
/// disqualification. What is left of a reward is the ledger's (its reversals point at it);
/// this records who took it and what that wrote, for the taking event's replays.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "take_backs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The reward entry taken back.
    pub entry_id: i64,
    /// What this take took, in millionths (positive).
    pub amount: i64,
    pub cause: crate::enums::TakeBackCause,
    /// The event that took it back (a refund, the purchase that corrected a first purchase).
    pub event_id: Option<i64>,
    /// The ids of the entries the ledger wrote or changed for it, as a JSON array: what the
    /// taking event answers again on a replay.
    pub written: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
