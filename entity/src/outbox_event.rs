use sea_orm::entity::prelude::*;

/// A domain event, written in the transaction of the change it tells of. `payload` is the
/// event's versioned JSON data; `position` is its place in the feed, set once it is visible.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_type: String,
    pub payload: String,
    pub occurred_at: DateTimeUtc,
    pub position: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
