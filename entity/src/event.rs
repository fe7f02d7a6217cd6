use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub event_id: String,
    pub kind: crate::enums::EventKind,
    pub account_id: i64,
    /// SHA-256 of the canonical input: a replay with other input is an idempotency conflict.
    pub request_hash: String,
    pub payload: String,
    /// The rule decisions taken when the event was first recorded, as JSON, so a replay
    /// answers exactly what the first delivery answered.
    pub decisions: String,
    pub occurred_at: DateTimeUtc,
    /// When it arrived (was recorded).
    pub created_at: DateTimeUtc,
    /// The money of the fact, in millionths: a purchase's amount (if the platform said), a
    /// top-up's amount, a refund's amount as resolved (the whole rest when none was given).
    pub amount: Option<i64>,
    /// The event a refund refunds.
    pub refund_of: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
