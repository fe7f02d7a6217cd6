use sea_orm::entity::prelude::*;

/// An affiliate's request to be paid out its available cash commission.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "withdrawals")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    /// In millionths of the program's currency.
    pub amount: i64,
    pub status: crate::enums::WithdrawalStatus,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    /// The CASH debit that took the amount from the available balance at the request.
    pub entry_id: i64,
    /// The entry that gave it back when the request was rejected.
    pub return_entry_id: Option<i64>,
    /// The payout's reference (a bank transfer's, a PayPal transaction's) once paid.
    pub payout_reference: Option<String>,
    /// Why it was rejected, or a note on the decision.
    pub reason: Option<String>,
    pub requested_at: DateTimeUtc,
    pub decided_at: Option<DateTimeUtc>,
    /// The admin who decided last.
    pub decided_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
