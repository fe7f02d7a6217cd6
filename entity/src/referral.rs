use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "referrals")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub referee_id: i64,
    pub referrer_id: Option<i64>,
    pub status: crate::enums::ReferralStatus,
    pub rejection_reason: Option<crate::enums::RejectionReason>,
    pub code_used: Option<String>,
    pub source: crate::enums::ReferralSource,
    pub created_at: DateTimeUtc,
    pub qualified_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
