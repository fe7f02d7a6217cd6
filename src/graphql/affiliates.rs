//! The affiliate program: applying and the admin's decisions, withdrawals of cash commission.

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::{AffiliateDecision, PayoutSchedule, WithdrawalDecision, WithdrawalStatus};
use crate::graphql::ids::{Kind, from_id, to_id};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Account, Affiliate, Page1, Withdrawal, connection, page_request};
use crate::service::{affiliates, conversions, withdrawals};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::commission_conversion;

#[derive(Default)]
pub struct AffiliateQuery;

#[Object]
impl AffiliateQuery {
    /// Every account's withdrawal requests, newest first; of one status, or all.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn withdrawals(
        &self,
        ctx: &Context<'_>,
        status: Option<WithdrawalStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<Withdrawal>> {
        let page = withdrawals::list(
            &state(ctx).db,
            None,
            status.map(Into::into),
            page_request(first, after)?,
        )
        .await?;
        Ok(connection(page, |w| w.id, Withdrawal))
    }
}

#[derive(InputObject)]
pub struct RequestWithdrawalInput {
    /// At least the program's `minimumWithdrawal`, at most the available cash commission.
    pub amount: Decimal,
    /// The same key with the same amount answers the first request again (`duplicate`).
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct RequestWithdrawalPayload {
    pub withdrawal: Withdrawal,
    /// True when this answers an earlier request with the same idempotency key.
    pub duplicate: bool,
}

#[derive(InputObject)]
pub struct ConvertCommissionInput {
    /// The cash commission to convert: above 0, at most what is available.
    pub amount: Decimal,
    /// The same key with the same amount answers the first conversion again (`duplicate`)
    /// and moves nothing.
    pub idempotency_key: Option<String>,
}

/// Cash commission converted into credit.
pub struct CommissionConversion(pub commission_conversion::Model);

#[Object]
impl CommissionConversion {
    async fn id(&self) -> ID {
        to_id(Kind::Conversion, self.0.id)
    }

    /// The cash commission taken.
    async fn cash(&self) -> Decimal {
        Decimal::micros(self.0.cash_amount)
    }

    /// The credit given: the cash times the rate, rounded down to the cent.
    async fn credit(&self) -> Decimal {
        Decimal::micros(self.0.credit_amount)
    }

    /// Credit for 1 of cash, as the program's rate was.
    async fn rate(&self) -> Decimal {
        Decimal::micros(self.0.rate)
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(SimpleObject)]
pub struct ConvertCommissionPayload {
    pub conversion: CommissionConversion,
    /// True when this answers an earlier conversion with the same idempotency key.
    pub duplicate: bool,
}

#[derive(InputObject)]
pub struct DecideAffiliateInput {
    pub account_id: ID,
    pub decision: AffiliateDecision,
    /// Kept in the audit log.
    pub reason: Option<String>,
}

#[derive(InputObject)]
pub struct SetPayoutScheduleInput {
    pub account_id: ID,
    /// The account's own schedule; null: the program's again.
    pub schedule: Option<PayoutSchedule>,
}

#[derive(InputObject)]
pub struct DecideWithdrawalInput {
    pub withdrawal_id: ID,
    pub decision: WithdrawalDecision,
    /// The payout's reference (a transfer's, a transaction's); required to MARK_PAID.
    pub payout_reference: Option<String>,
    /// Why, shown to the affiliate.
    pub reason: Option<String>,
}

#[derive(Default)]
pub struct AffiliateMutation;

#[Object]
impl AffiliateMutation {
    /// The customer applies to the affiliate program, with an optional note for the admins.
    /// Applying again changes nothing; after a rejection it applies anew.
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn apply_for_affiliate(&self, ctx: &Context<'_>, note: Option<String>) -> Result<Affiliate> {
        let external_id = viewer(ctx).customer_external_id()?;
        let account = affiliates::apply(&state(ctx).db, external_id, note.as_deref(), now(ctx)).await?;
        Ok(Affiliate(account))
    }

    /// An approved affiliate asks to withdraw cash commission: the amount leaves its available
    /// balance at once. NOT_AN_AFFILIATE unless approved; BELOW_MINIMUM_WITHDRAWAL under the
    /// program's minimum; INSUFFICIENT_BALANCE beyond what is available; one open request at a
    /// time.
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn request_withdrawal(
        &self,
        ctx: &Context<'_>,
        input: RequestWithdrawalInput,
    ) -> Result<RequestWithdrawalPayload> {
        let external_id = viewer(ctx).customer_external_id()?;
        let requested = withdrawals::request(
            &state(ctx).db,
            external_id,
            input.amount.0,
            input.idempotency_key.as_deref(),
            now(ctx),
        )
        .await?;
        Ok(RequestWithdrawalPayload {
            withdrawal: Withdrawal(requested.withdrawal),
            duplicate: requested.duplicate,
        })
    }

    /// An approved affiliate converts available cash commission into credit on its own account
    /// at the program's `commissionConversionRate`, rounded down to the cent; the credit is
    /// available at once. NOT_AN_AFFILIATE unless approved; INSUFFICIENT_BALANCE beyond what is
    /// available; BAD_USER_INPUT when the program does not convert. Audited.
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn convert_commission(
        &self,
        ctx: &Context<'_>,
        input: ConvertCommissionInput,
    ) -> Result<ConvertCommissionPayload> {
        let external_id = viewer(ctx).customer_external_id()?;
        let converted = conversions::convert(
            &state(ctx).db,
            external_id,
            input.amount.0,
            input.idempotency_key.as_deref(),
            now(ctx),
        )
        .await?;
        Ok(ConvertCommissionPayload {
            conversion: CommissionConversion(converted.conversion),
            duplicate: converted.duplicate,
        })
    }

    /// Approves, rejects or suspends an affiliate (approving needs no application). The first
    /// approval pays the program's `affiliateSignupBonus`. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn decide_affiliate(&self, ctx: &Context<'_>, input: DecideAffiliateInput) -> Result<Account> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let decision = match input.decision {
            AffiliateDecision::Approve => affiliates::Decision::Approve,
            AffiliateDecision::Reject => affiliates::Decision::Reject,
            AffiliateDecision::Suspend => affiliates::Decision::Suspend,
        };
        let account = affiliates::decide(
            &state(ctx).db,
            &viewer(ctx).actor(),
            id,
            decision,
            input.reason.as_deref(),
            now(ctx),
        )
        .await?;
        Ok(Account(account))
    }

    /// Gives one affiliate a payout schedule of its own (null: the program's again). Commission
    /// given from then on becomes withdrawable by it; what was given keeps its date. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn set_payout_schedule(&self, ctx: &Context<'_>, input: SetPayoutScheduleInput) -> Result<Account> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let account = affiliates::set_payout_schedule(
            &state(ctx).db,
            &viewer(ctx).actor(),
            id,
            input.schedule.map(Into::into),
            now(ctx),
        )
        .await?;
        Ok(Account(account))
    }

    /// Approves a withdrawal request, rejects it (the amount goes back to the available
    /// balance) or marks it paid (withdrawn, with the payout's reference). Deciding what it
    /// already is changes nothing; a rejected or paid request is final. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn decide_withdrawal(&self, ctx: &Context<'_>, input: DecideWithdrawalInput) -> Result<Withdrawal> {
        let id = from_id(Kind::Withdrawal, &input.withdrawal_id)?;
        let decision = match input.decision {
            WithdrawalDecision::Approve => withdrawals::Decision::Approve,
            WithdrawalDecision::Reject => withdrawals::Decision::Reject,
            WithdrawalDecision::MarkPaid => withdrawals::Decision::MarkPaid,
        };
        let withdrawal = withdrawals::decide(
            &state(ctx).db,
            &viewer(ctx).actor(),
            id,
            decision,
            input.payout_reference.as_deref(),
            input.reason.as_deref(),
            now(ctx),
        )
        .await?;
        Ok(Withdrawal(withdrawal))
    }
}
