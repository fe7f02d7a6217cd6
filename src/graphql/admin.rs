//! Account administration and the audit log (admin).

use crate::auth::RoleGuard;
use crate::error::AppError;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::Calculation;
use crate::graphql::ids::{Kind, from_id};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Account, AuditEntry, LedgerEntry, Page1, Referral, connection, page_request};
use crate::service::rules::{AffiliateTerms, RuleInput};
use crate::service::{accounts, affiliates, audit, referrals};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Accounts whose externalId, referral code, name or email contains `search` (any case),
    /// newest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<Account>> {
        let page = accounts::search(&state(ctx).db, search.as_deref(), page_request(first, after)?).await?;
        Ok(connection(page, |a| a.id, Account))
    }

    /// One account; null when there is none with this id.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn account(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Account>> {
        let id = from_id(Kind::Account, &id)?;
        Ok(accounts::find(&state(ctx).db, id).await?.map(Account))
    }

    /// Every admin change, newest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<AuditEntry>> {
        let page = audit::list(&state(ctx).db, page_request(first, after)?).await?;
        Ok(connection(page, |e| e.id, AuditEntry))
    }
}

#[derive(InputObject)]
pub struct SetReferralCodeInput {
    pub account_id: ID,
    /// 4 to 32 letters and digits, in any case; kept upper-case.
    pub code: String,
}

/// An affiliate's own terms, which replace the value of the rules that pay it as a referrer.
#[derive(InputObject)]
pub struct AffiliateTermsInput {
    pub account_id: ID,
    /// FIXED or PERCENT; null removes the account's terms (the rules' own values apply again).
    pub calculation: Option<Calculation>,
    /// The amount (FIXED, above 0) or the percentage (PERCENT, above 0, at most 1000).
    pub value: Option<Decimal>,
    /// Pay on every qualifying event (true) or once per referral (false, the default).
    pub recurring: Option<bool>,
}

#[derive(InputObject)]
pub struct AssignReferrerInput {
    /// The account to attach a referrer to; it must have no accepted referral.
    pub account_id: ID,
    /// The account that becomes its referrer.
    pub referrer_account_id: ID,
    /// Why, for the audit log (at most 500 characters).
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct AssignReferrerPayload {
    /// The account, whose `referral` is now the new one.
    pub account: Account,
    /// The new referral: PENDING, source ADMIN.
    pub referral: Referral,
}

#[derive(InputObject)]
pub struct DisqualifyAccountInput {
    pub account_id: ID,
    /// Why, for the account's record and the audit log (at most 500 characters).
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct DisqualifyAccountPayload {
    pub account: Account,
    /// The account's pending entries that this disqualification voided.
    pub voided_entries: Vec<LedgerEntry>,
}

#[derive(InputObject)]
pub struct ReinstateAccountInput {
    pub account_id: ID,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Gives an account another referral code; the old one stops working at once.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn set_referral_code(&self, ctx: &Context<'_>, input: SetReferralCodeInput) -> Result<Account> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let account =
            accounts::set_referral_code(&state(ctx).db, &viewer(ctx).actor(), id, &input.code, now(ctx)).await?;
        Ok(Account(account))
    }

    /// Sets an affiliate's own terms: the rules that pay the account as a referrer pay these
    /// instead of their value (a percentage only where the rule pays on an invoice; elsewhere
    /// the rule's value stands), once per referral or on every event. Makes the account an
    /// approved affiliate. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn set_affiliate_terms(&self, ctx: &Context<'_>, input: AffiliateTermsInput) -> Result<Account> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let terms = match input.calculation {
            None if input.value.is_some() => {
                return Err(
                    AppError::bad_input("value: terms without a calculation are removed; leave value out").into(),
                );
            }
            None => None,
            Some(calculation) => {
                let written = RuleInput {
                    value: input.value.map(|d| d.0),
                    ..Default::default()
                };
                Some(AffiliateTerms::parse(calculation.into(), &written, input.recurring)?)
            }
        };
        let account = affiliates::set_terms(&state(ctx).db, &viewer(ctx).actor(), id, terms, now(ctx)).await?;
        Ok(Account(account))
    }

    /// Attaches a referrer to an account on purpose. Refused (BAD_USER_INPUT): self-referral,
    /// an account that already has an accepted referral, a disqualified account on either
    /// side, and any assignment that would close a cycle of referrals. Pays no SIGNUP rule;
    /// later events pay as for any referral. Audited with the reason.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn assign_referrer(&self, ctx: &Context<'_>, input: AssignReferrerInput) -> Result<AssignReferrerPayload> {
        let account_id = from_id(Kind::Account, &input.account_id)?;
        let referrer_id = from_id(Kind::Account, &input.referrer_account_id)?;
        let (account, referral) = referrals::assign_referrer(
            &state(ctx).db,
            &viewer(ctx).actor(),
            account_id,
            referrer_id,
            &input.reason,
            now(ctx),
        )
        .await?;
        Ok(AssignReferrerPayload {
            account: Account(account),
            referral: Referral(referral),
        })
    }

    /// Disqualifies an account: its code is rejected (`REFERRER_DISQUALIFIED`), no rule
    /// rewards it or its referrals, and its pending entries are voided (posted ones stay).
    /// Audited. Again on a disqualified account: answered as it is, nothing changed.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn disqualify_account(
        &self,
        ctx: &Context<'_>,
        input: DisqualifyAccountInput,
    ) -> Result<DisqualifyAccountPayload> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let (account, voided) =
            referrals::disqualify(&state(ctx).db, &viewer(ctx).actor(), id, &input.reason, now(ctx)).await?;
        Ok(DisqualifyAccountPayload {
            account: Account(account),
            voided_entries: voided.into_iter().map(LedgerEntry::from).collect(),
        })
    }

    /// Lifts a disqualification; voided entries stay voided. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn reinstate_account(&self, ctx: &Context<'_>, input: ReinstateAccountInput) -> Result<Account> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let account = referrals::reinstate(
            &state(ctx).db,
            &viewer(ctx).actor(),
            id,
            input.reason.as_deref(),
            now(ctx),
        )
        .await?;
        Ok(Account(account))
    }
}
