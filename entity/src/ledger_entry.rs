use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub unit: crate::enums::Unit,
    pub amount: i64,
    pub remaining: Option<i64>,
    pub kind: crate::enums::EntryKind,
    pub status: crate::enums::EntryStatus,
    pub description: String,
    pub event_id: Option<i64>,
    pub referral_id: Option<i64>,
    pub rule_id: Option<i64>,
    pub occurrence: Option<i64>,
    pub claim_id: Option<i64>,
    pub available_at: Option<DateTimeUtc>,
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// The rule's values when it paid this entry, as JSON: later edits of the rule do not
    /// change what was paid or why.
    pub rule_snapshot: Option<String>,
    /// For a REVERSAL: the reward it takes back.
    pub reverses_entry_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
