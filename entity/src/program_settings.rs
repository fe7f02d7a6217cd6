use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "program_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub enabled: bool,
    pub currency: String,
    pub referral_link_template: String,
    pub landing_url: Option<String>,
    pub cookie_days: i32,
    pub gb_per_claim: i32,
    pub minimum_withdrawal: i64,
    pub require_verified_payment_for_link: bool,
    /// Claims one account may have waiting for delivery at once; `None`: no limit.
    pub max_pending_claims: Option<i32>,
    /// Claims one account may make in 24 hours; `None`: no limit.
    pub max_claims_per_day: Option<i32>,
    pub updated_at: DateTimeUtc,
    /// How far a sandbox server's clock is ahead of the system time, in milliseconds (only
    /// `service::sandbox` writes it, and only forward; a server without SANDBOX ignores it).
    pub clock_offset_ms: i64,
    /// Hours after a first purchase was taken as first during which a purchase that happened
    /// earlier, arriving late, still corrects it.
    pub reorder_window_hours: i32,
    /// Days within which a referee must have paid an invoice to count as an active referral.
    pub active_referral_days: i32,
    /// CASH paid to an affiliate on its first approval, in millionths; 0: none.
    pub affiliate_signup_bonus: i64,
    /// When cash commission becomes withdrawable, unless an affiliate has its own schedule.
    pub payout_schedule: crate::enums::PayoutSchedule,
    /// Credit given for 1 of cash commission converted, in millionths; None: no conversion.
    pub commission_conversion_rate: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
