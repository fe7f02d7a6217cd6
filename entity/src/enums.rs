//! The closed sets of values stored as text columns.

use sea_orm::entity::prelude::*;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize, serde::Deserialize,
        )]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[sea_orm(
            rs_type = "String",
            db_type = "String(StringLen::N(32))",
            rename_all = "SCREAMING_SNAKE_CASE"
        )]
        pub enum $name { $($variant),+ }
    };
}

text_enum!(
    /// What a balance counts.
    Unit { Points, Credit, Cash }
);
text_enum!(
    /// Why a ledger entry exists. `Debt`: positive, the part of a reversal the balance could not
    /// cover (owed); negative, a repayment of it from later earnings.
    EntryKind { Reward, Claim, ClaimRefund, Reversal, Expiry, Adjustment, CreditApplied, Withdrawal, Debt, WithdrawalReturned, CommissionConverted }
);
text_enum!(EntryStatus {
    Pending,
    Posted,
    Voided
});
text_enum!(AccountStatus { Active, Closed });
text_enum!(
    /// Where a webhook delivery stands: still to be tried (again), delivered, or given up on.
    DeliveryStatus { Pending, Delivered, Failed }
);
text_enum!(
    /// When cash commission becomes withdrawable: when its hold ends, or at the end of the
    /// (UTC) month or year its hold ends in.
    PayoutSchedule { AsEarned, Monthly, Yearly }
);
text_enum!(
    /// How often a plan is billed, as the platform reports it with an invoice.
    BillingCycle { OneTime, Monthly, Quarterly, SemiAnnual, Annual, Biennial, Triennial }
);
text_enum!(
    /// A piece of marketing material: an image banner or a text snippet.
    MaterialKind { Banner, Snippet }
);
text_enum!(
    /// How a material's template is written: HTML (the link is escaped into it) or plain text.
    MaterialFormat { Html, Text }
);
text_enum!(
    /// Where an account stands in the affiliate program.
    AffiliateStatus { Applied, Approved, Rejected, Suspended }
);
text_enum!(ReferralStatus {
    Pending,
    Qualified,
    Rejected
});
text_enum!(RejectionReason {
    UnknownCode,
    SelfReferral,
    AlreadyReferred,
    ProgramDisabled,
    // A code given for an account that already existed: only newcomers are referred.
    ExistingAccount,
    // An unknown code beyond the client's quota of unknown-code lookups.
    RateLimited,
    // The code's owner is disqualified and can no longer refer.
    ReferrerDisqualified,
    // The referee's payment fingerprint is its referrer's, or another referee's of the same
    // referrer.
    DuplicateFingerprint,
    // Another account is the eligible referrer of the same payment fingerprint.
    DuplicateReferrer,
    // The code's owner has no verified payment method, and the program requires one.
    ReferrerUnverified,
    // An admin rejected it (`rejectReferral`).
    Manual
});
text_enum!(
    /// How the referee came with the code: typed at sign-up, through a referral link, or
    /// attached by an admin.
    ReferralSource { Code, Link, Admin }
);
text_enum!(ClaimStatus {
    Pending,
    Completed,
    Failed
});
text_enum!(EventKind {
    Purchase,
    PaymentMethodVerified,
    TopUp,
    Refund,
    AccountClosed,
    InvoicePaid,
    AccountReopened
});
text_enum!(RuleTrigger {
    Signup,
    PaymentMethodVerified,
    TopUpTotalReached,
    FirstPurchase,
    InvoicePaid,
    SpendTotalReached,
    ReferrerInvoicePaid,
    Purchase
});
text_enum!(BillingScheme { Prepaid, Postpaid });
text_enum!(Beneficiary { Referrer, Referee });
text_enum!(Calculation {
    Fixed,
    ProductRate,
    Percent,
    PerActiveReferral,
    Tiers,
    PlanPrice
});
text_enum!(
    /// Why part or all of a reward was taken back.
    TakeBackCause { Refund, Correction, Disqualification, DuplicateFingerprint, ManualRejection }
);
text_enum!(
    /// Where a withdrawal request stands: `Requested` and `Approved` are open (one per account
    /// at a time); `Rejected` gave the amount back; `Paid` is withdrawn.
    WithdrawalStatus { Requested, Approved, Rejected, Paid }
);
