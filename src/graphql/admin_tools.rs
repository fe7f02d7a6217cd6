//! The admin's day-to-day tools: the referral list, rejecting a referral, adjusting a balance by
//! hand, and the program's report.

use crate::amount::Amount;
use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::{ReferralOrder, ReferralStatus, RewardUnit};
use crate::graphql::ids::{Kind, from_id};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{LedgerEntry, Page1, Referral, UnitAmount, page_request, referral_page};
use crate::service::adjustments::{self, Adjust};
use crate::service::referral_list::{self, ReferralFilter as Filter, SearchIn};
use crate::service::referrals;
use crate::service::report::{self, UNITS};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

/// Which referrals the admin's list shows; every field left out lets all through.
#[derive(InputObject, Default)]
pub struct ReferralFilter {
    /// Only this referrer's referrals.
    pub referrer_id: Option<ID>,
    pub status: Option<ReferralStatus>,
    /// true: only referrals whose referee's account is closed; false: only open ones.
    pub referee_closed: Option<bool>,
    /// Referrals that began at or after this.
    pub created_from: Option<DateTime<Utc>>,
    /// Referrals that began before this.
    pub created_to: Option<DateTime<Utc>>,
    /// Contained (any case) in the referee's externalId, name, email or code, or in the code
    /// used.
    pub search: Option<String>,
}

#[derive(InputObject)]
pub struct RejectReferralInput {
    pub referral_id: ID,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

#[derive(InputObject)]
pub struct AdjustBalanceInput {
    pub account_id: ID,
    pub unit: RewardUnit,
    /// What the account receives (positive) or loses (negative, at most what is available).
    pub amount: Decimal,
    /// Why, for the account's history and the audit log (at most 500 characters).
    pub reason: String,
    /// The same key (the admin's own) with the same input answers the first adjustment again.
    pub idempotency_key: Option<String>,
}

/// The program's figures for a period.
#[derive(SimpleObject)]
pub struct ProgramReport {
    /// The period's start (included); null: from the beginning.
    pub from: Option<DateTime<Utc>>,
    /// The period's end (excluded); null: until now.
    pub to: Option<DateTime<Utc>>,
    /// Accounts registered.
    pub accounts: i64,
    /// Referrals accepted (pending or qualified) that began.
    pub referrals: i64,
    /// Referrals that qualified.
    pub qualified_referrals: i64,
    /// Clicks counted on referral links.
    pub clicks: i64,
    /// Rewards granted (held or posted, not voided), per unit.
    pub granted: Vec<UnitAmount>,
    /// What reversals took back, per unit.
    pub reversed: Vec<UnitAmount>,
    /// What expired, per unit.
    pub expired: Vec<UnitAmount>,
    /// Available and pending in every balance now (whatever the period), per unit.
    pub outstanding: Vec<UnitAmount>,
    /// Webhook deliveries that failed after their last attempt and were not replayed since
    /// (now, whatever the period).
    pub failed_webhook_deliveries: i64,
}

fn per_unit(amounts: [Amount; 3]) -> Vec<UnitAmount> {
    UNITS
        .iter()
        .zip(amounts)
        .map(|(unit, amount)| UnitAmount {
            unit: (*unit).into(),
            amount: Decimal(amount),
        })
        .collect()
}

#[derive(Default)]
pub struct AdminToolsQuery;

#[Object]
impl AdminToolsQuery {
    /// Every referral, filtered and ordered (newest first by default).
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn referrals(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReferralFilter>,
        order_by: Option<ReferralOrder>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<Referral>> {
        let filter = filter.unwrap_or_default();
        let filter = Filter {
            referrer_id: filter.referrer_id.map(|id| from_id(Kind::Account, &id)).transpose()?,
            status: filter.status.map(Into::into),
            referee_closed: filter.referee_closed,
            created_from: filter.created_from,
            created_to: filter.created_to,
            search: filter.search,
            search_in: SearchIn::Everything,
        };
        let order = order_by.unwrap_or_default().into();
        let page = referral_list::list(&state(ctx).db, filter, order, page_request(first, after)?).await?;
        Ok(referral_page(page))
    }

    /// The program's figures for [from, to) (either end left out: no bound).
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn program_report(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<ProgramReport> {
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(crate::error::AppError::bad_input("from must not be after to").into());
        }
        let db = &state(ctx).db;
        let figures = report::program_report(db, from, to, now(ctx)).await?;
        let failed = crate::service::webhooks::failed_count(db).await?;
        Ok(ProgramReport {
            from,
            to,
            accounts: figures.accounts,
            referrals: figures.referrals,
            qualified_referrals: figures.qualified,
            clicks: figures.clicks,
            granted: per_unit(figures.granted),
            reversed: per_unit(figures.reversed),
            expired: per_unit(figures.expired),
            outstanding: per_unit(figures.outstanding),
            failed_webhook_deliveries: i64::try_from(failed).unwrap_or(i64::MAX),
        })
    }
}

#[derive(Default)]
pub struct AdminToolsMutation;

#[Object]
impl AdminToolsMutation {
    /// Rejects a referral (reason MANUAL): what it caused that is pending is voided, what was
    /// posted is reversed, and later events pay nothing for it. Rejecting it again changes
    /// nothing. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn reject_referral(&self, ctx: &Context<'_>, input: RejectReferralInput) -> Result<Referral> {
        let id = from_id(Kind::Referral, &input.referral_id)?;
        let (referral, _) = referrals::reject(
            &state(ctx).db,
            &viewer(ctx).actor(),
            id,
            input.reason.as_deref(),
            now(ctx),
        )
        .await?;
        Ok(Referral(referral))
    }

    /// Adjusts a balance by hand: an ADJUSTMENT entry, available at once when positive, spent
    /// from what is available when negative (INSUFFICIENT_BALANCE beyond it). Audited;
    /// idempotent under the admin's key.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn adjust_balance(&self, ctx: &Context<'_>, input: AdjustBalanceInput) -> Result<LedgerEntry> {
        let account_id = from_id(Kind::Account, &input.account_id)?;
        let adjusted = adjustments::adjust(
            &state(ctx).db,
            &viewer(ctx).actor(),
            Adjust {
                account_id,
                unit: input.unit.into(),
                amount: input.amount.0,
                reason: input.reason,
                idempotency_key: input.idempotency_key,
            },
            now(ctx),
        )
        .await?;
        Ok(adjusted.entry.into())
    }
}
