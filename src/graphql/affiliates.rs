//! The affiliate program: applying and the admin's decisions, withdrawals of cash commission.

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::{AffiliateDecision, WithdrawalDecision, WithdrawalStatus};
use crate::graphql::ids::{Kind, from_id};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Account, Affiliate, Page1, Withdrawal, connection, page_request};
use crate::service::{affiliates, withdrawals};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

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
pub struct DecideAffiliateInput {
    pub account_id: ID,
    pub decision: AffiliateDecision,
    /// Kept in the audit log.
    pub reason: Option<String>,
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
