use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub external_id: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub account_group: Option<String>,
    #[sea_orm(unique)]
    pub referral_code: String,
    pub status: crate::enums::AccountStatus,
    pub first_purchase_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub billing_scheme: crate::enums::BillingScheme,
    /// Sum of this account's successful top-ups, in millionths.
    pub top_up_total: i64,
    pub payment_method_verified_at: Option<DateTimeUtc>,
    /// Set while an admin has disqualified the account: it neither refers nor is rewarded.
    pub disqualified_at: Option<DateTimeUtc>,
    pub disqualification_reason: Option<String>,
    /// The purchase event taken as the first purchase; its arrival starts the reorder window.
    pub first_purchase_event_id: Option<i64>,
    /// When the platform closed the account (status `CLOSED`).
    pub closed_at: Option<DateTimeUtc>,
    /// How many paid invoices the account has had recorded: the last one's number.
    pub paid_invoices: i32,
    /// When the latest of its paid invoices happened.
    pub last_invoice_at: Option<DateTimeUtc>,
    /// The total of its paid invoice recorded last, in millionths: its plan's price.
    pub last_invoice_total: Option<i64>,
    /// Where it stands in the affiliate program; None: not in it.
    pub affiliate_status: Option<crate::enums::AffiliateStatus>,
    /// Its own terms as an affiliate, as JSON (`service::rules::AffiliateTerms`); None: the
    /// rules' own values.
    pub affiliate_terms: Option<String>,
    /// The fingerprint of its verified payment method, as the payment provider gives it.
    pub payment_fingerprint: Option<String>,
    /// Why it cannot earn as a referrer (`DUPLICATE_REFERRER`); None: it can.
    pub referrer_ineligible_reason: Option<crate::enums::RejectionReason>,
    /// When it applied to the affiliate program; None: it never applied (an admin may still
    /// have enabled it).
    pub affiliate_applied_at: Option<DateTimeUtc>,
    /// What it wrote when it applied.
    pub affiliate_note: Option<String>,
    /// When an admin last decided on it as an affiliate.
    pub affiliate_decided_at: Option<DateTimeUtc>,
    /// Its first approval as an affiliate, which paid the sign-up bonus; set once.
    pub affiliate_approved_at: Option<DateTimeUtc>,
    /// When its cash commission becomes withdrawable; None: the program's schedule.
    pub payout_schedule: Option<crate::enums::PayoutSchedule>,
    /// Its current plan and billing cycle, as its latest paid invoice that named them said.
    pub plan: Option<String>,
    pub billing_cycle: Option<crate::enums::BillingCycle>,
    /// `display_name` masked ("Jo*** S."), kept beside it: what an affiliate searches by.
    pub masked_name: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
