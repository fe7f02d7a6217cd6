//! GraphQL enums, mirrored from the stored ones (`remote` generates the conversions).

use async_graphql::Enum;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::Unit")]
pub enum RewardUnit {
    Points,
    Credit,
    Cash,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::EntryKind")]
pub enum LedgerEntryKind {
    Reward,
    Claim,
    ClaimRefund,
    Reversal,
    Expiry,
    Adjustment,
    CreditApplied,
    Withdrawal,
    /// Positive: what a reversal could not take from the balance, owed. Negative: that debt
    /// repaid from later earnings.
    Debt,
    /// A rejected withdrawal's amount, given back to the available balance.
    WithdrawalReturned,
    /// Cash commission converted into credit: the cash taken (negative) and the credit given.
    CommissionConverted,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::EntryStatus")]
pub enum LedgerEntryStatus {
    Pending,
    Posted,
    Voided,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::AccountStatus")]
pub enum AccountStatus {
    Active,
    Closed,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::ReferralStatus")]
pub enum ReferralStatus {
    Pending,
    Qualified,
    Rejected,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::RejectionReason")]
pub enum RejectionReason {
    UnknownCode,
    SelfReferral,
    AlreadyReferred,
    ProgramDisabled,
    /// The account existed already: only newcomers are referred by a code.
    ExistingAccount,
    /// An unknown code, past the client's quota of unknown codes a minute.
    RateLimited,
    /// The code's owner is disqualified and can no longer refer.
    ReferrerDisqualified,
    /// The referee's payment fingerprint is its referrer's, or another referee's of the same
    /// referrer: the referral is rejected and what it paid taken back.
    DuplicateFingerprint,
    /// Another account is the eligible referrer of the same payment fingerprint (one person is
    /// one referrer): this one cannot earn as a referrer.
    DuplicateReferrer,
    /// The code's owner has no verified payment method, and the program requires one
    /// (`requireVerifiedPaymentForLink`).
    ReferrerUnverified,
    /// An admin rejected it (`rejectReferral`).
    Manual,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::ReferralSource")]
pub enum ReferralSource {
    Code,
    Link,
    /// Attached by an admin (`assignReferrer`).
    Admin,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::ClaimStatus")]
pub enum ClaimStatus {
    Pending,
    Completed,
    Failed,
}

/// How the billing side reports a claim's delivery.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ClaimOutcome {
    Completed,
    Failed,
}

impl From<ClaimOutcome> for entity::enums::ClaimStatus {
    fn from(outcome: ClaimOutcome) -> Self {
        match outcome {
            ClaimOutcome::Completed => entity::enums::ClaimStatus::Completed,
            ClaimOutcome::Failed => entity::enums::ClaimStatus::Failed,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::EventKind")]
pub enum EventKind {
    Purchase,
    PaymentMethodVerified,
    TopUp,
    /// A purchase or top-up refunded, in whole or in part.
    Refund,
    /// The platform closed the account.
    AccountClosed,
    /// An invoice of the account was paid.
    InvoicePaid,
    /// The platform reopened a closed account.
    AccountReopened,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::RuleTrigger")]
pub enum RuleTrigger {
    /// An accepted referral is created at registration.
    Signup,
    /// The referee's payment method is verified (program 1 counts postpaid referees only:
    /// `billingScheme: POSTPAID`).
    PaymentMethodVerified,
    /// The referee's successful top-ups reach the rule's threshold (program 1 counts prepaid
    /// referees only: `billingScheme: PREPAID`).
    TopUpTotalReached,
    /// The referee's first purchase.
    FirstPurchase,
    /// The referee pays an invoice: its `invoiceNumber`-th (the account's paid invoices are
    /// numbered in the order they are recorded), or every one from it when `recurring`, up to
    /// `maxOccurrences` invoices.
    InvoicePaid,
    /// The referee's qualifying spend (invoices' cash share on the rule's
    /// `productCategories`; what credit or coupons paid counts for nothing) reaches the
    /// rule's `threshold` (0: any qualifying spend).
    SpendTotalReached,
    /// The account pays an invoice of its own: pays the account itself as a referrer
    /// (beneficiary REFERRER, recurring), on each of its invoices, while it has
    /// `minActiveReferrals` active referrals (referees that are open and paid an invoice within
    /// the program's `activeReferralDays`).
    ReferrerInvoicePaid,
    /// Every purchase of the referee (FIRST_PURCHASE pays on the first only): a fixed amount,
    /// the product's rate × GB, or a PERCENT of what it paid (`amount`).
    Purchase,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::BillingScheme")]
pub enum BillingScheme {
    /// Pays in advance by topping up.
    Prepaid,
    /// Pays invoices after use, with a payment method on file.
    Postpaid,
}

/// Where an account stands in the affiliate program.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::AffiliateStatus")]
pub enum AffiliateStatus {
    Applied,
    Approved,
    Rejected,
    /// Was approved; earns nothing from `affiliatesOnly` rules and cannot withdraw until an
    /// admin approves it again.
    Suspended,
}

/// An admin's decision on an affiliate.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum AffiliateDecision {
    /// Makes the account an approved affiliate, whether or not it applied; its first approval
    /// pays the program's `affiliateSignupBonus`.
    Approve,
    Reject,
    /// Stops an approved affiliate.
    Suspend,
}

/// Where a withdrawal request stands.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::WithdrawalStatus")]
pub enum WithdrawalStatus {
    /// Waiting for an admin; its amount has left the available balance.
    Requested,
    /// Approved, to be paid out.
    Approved,
    /// Refused: the amount went back to the available balance.
    Rejected,
    /// Paid out: withdrawn.
    Paid,
}

/// An admin's decision on a withdrawal request.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum WithdrawalDecision {
    Approve,
    /// Refuses it and gives the amount back.
    Reject,
    /// Records it as paid out, with the payout's reference.
    MarkPaid,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::Beneficiary")]
pub enum Beneficiary {
    Referrer,
    Referee,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::Calculation")]
pub enum Calculation {
    /// `value`, in the rule's unit.
    Fixed,
    /// The product's rate × the GB bought (FIRST_PURCHASE).
    ProductRate,
    /// `value` percent (above 100 allowed: 150 is one and a half times) of the qualifying
    /// amount, rounded down to the cent: of the invoice (INVOICE_PAID), or of the part of
    /// the referee's qualifying spend above `threshold` that the invoice adds
    /// (SPEND_TOTAL_REACHED).
    Percent,
    /// `value` per active referral of the account (REFERRER_INVOICE_PAID): 3 active × 5.00 =
    /// 15.00.
    PerActiveReferral,
    /// The amount of the highest of `tiers` that the account's active referrals reach
    /// (REFERRER_INVOICE_PAID).
    Tiers,
    /// `value` percent (100: a free month, 50: half a month) of a plan's price, the last paid
    /// invoice of the account `planPriceBase` names, rounded down to the cent.
    PlanPrice,
}

/// Whose plan a PLAN_PRICE rule takes its percentage of.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::service::rules::PlanPriceBase")]
pub enum PlanPriceBase {
    /// The beneficiary's own last paid invoice ("half a month of your own plan"); for a
    /// REFERRER_INVOICE_PAID rule, the invoice it pays on.
    Beneficiary,
    /// The referee's invoice the rule pays on.
    Referee,
    /// The lesser of the two ("a free month of equal or lesser value").
    Lesser,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::service::rules::Outcome")]
pub enum DecisionOutcome {
    Rewarded,
    Skipped,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::PayoutSchedule")]
pub enum PayoutSchedule {
    /// When its hold ends.
    AsEarned,
    /// At the end of the (UTC) month its hold ends in.
    Monthly,
    /// At the end of the (UTC) year its hold ends in.
    Yearly,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::BillingCycle")]
pub enum BillingCycle {
    OneTime,
    Monthly,
    Quarterly,
    SemiAnnual,
    Annual,
    Biennial,
    Triennial,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::MaterialKind")]
pub enum MarketingMaterialKind {
    /// An image banner.
    Banner,
    /// A text snippet (a post, an email).
    Snippet,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::MaterialFormat")]
pub enum MarketingMaterialFormat {
    /// HTML: the link is HTML-escaped where `{link}` stands.
    Html,
    /// Plain text: the link stands as it is.
    Text,
}

/// The order of a list of referrals.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Default)]
#[graphql(remote = "crate::service::referral_list::ReferralOrder")]
pub enum ReferralOrder {
    #[default]
    Newest,
    Oldest,
    /// By what the referrer earned through it (every unit together), most first.
    MostEarned,
    LeastEarned,
}
