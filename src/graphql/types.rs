//! Output types, built from domain values. Each wraps a row and exposes only chosen fields;
//! visibility rules (masked names, staff-only fields) live here, next to the fields.

use crate::amount::Amount;
use crate::auth::{RoleGuard, Viewer};
use crate::error::AppError;
use crate::graphql::context::{loader, now, settings, state, viewer};
use crate::graphql::enums::*;
use crate::graphql::ids::{Kind, Side, balance_id, participant_id, to_id};
use crate::graphql::loaders::*;
use crate::graphql::marketing::AffiliateMaterial;
use crate::graphql::rules::RewardRule;
use crate::graphql::scalars::Decimal;
use crate::service::accounts::dashboard::{self, FriendParts};
use crate::service::accounts::{self, ParticipantAccount, mask_name};
use crate::service::ledger::StatementLine;
use crate::service::page::{Page, PageRequest};
use crate::service::referral_list::{self, ReferralPage};
use crate::service::rules::{self, AffiliateTerms, Decision, Rule};
use crate::service::settings::referral_link;
use crate::service::{clicks, rewards, store, withdrawals};
use async_graphql::connection::{Connection, Edge, OpaqueCursor};
use async_graphql::{ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{account, balance, claim, event, ledger_entry, product, program_settings, provider, referral};

/// Extra fields of every connection.
#[derive(SimpleObject)]
pub struct ConnectionTotal {
    /// How many items there are in all pages together.
    pub total_count: i64,
}

pub type Page1<T> = Connection<OpaqueCursor<i64>, T, ConnectionTotal>;

/// Reads a Relay cursor into the id it stands for.
pub fn page_request(first: Option<i32>, after: Option<String>) -> Result<PageRequest, AppError> {
    use async_graphql::connection::CursorType;
    let after = after
        .map(|cursor| {
            OpaqueCursor::<i64>::decode_cursor(&cursor)
                .map(|c| c.0)
                .map_err(|_| AppError::bad_input("after is not a cursor of this list"))
        })
        .transpose()?;
    PageRequest::new(first, after)
}

pub fn connection<M, T>(page: Page<M>, id: impl Fn(&M) -> i64, node: impl Fn(M) -> T) -> Page1<T>
where
    T: async_graphql::OutputType,
{
    let total = i64::try_from(page.total).unwrap_or(i64::MAX);
    let mut conn = Connection::with_additional_fields(false, page.has_next, ConnectionTotal { total_count: total });
    conn.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(OpaqueCursor(id(&item)), node(item))),
    );
    conn
}

/// A page of a filtered, ordered list of referrals. Its cursors are positions in the order
/// (earnings change, so an id is no bookmark in an order by earnings).
pub fn referral_page(page: ReferralPage) -> Page1<Referral> {
    let total = i64::try_from(page.total).unwrap_or(i64::MAX);
    let mut conn =
        Connection::with_additional_fields(page.offset > 0, page.has_next, ConnectionTotal { total_count: total });
    let start = i64::try_from(page.offset).unwrap_or(i64::MAX);
    conn.edges.extend(
        page.items
            .into_iter()
            .zip(1..)
            .map(|(referral, position)| Edge::new(OpaqueCursor(start + position), Referral(referral))),
    );
    conn
}

/// Which of its friends a referrer's list shows; every field left out lets all through.
#[derive(InputObject, Default)]
pub struct FriendFilter {
    pub status: Option<ReferralStatus>,
    /// true: only friends whose account is closed; false: only open ones.
    pub closed: Option<bool>,
    /// Friends who joined at or after this.
    pub joined_from: Option<DateTime<Utc>>,
    /// Friends who joined before this.
    pub joined_to: Option<DateTime<Utc>>,
    /// Contained (any case) in the friend's masked name ("Jo*** S.") or current plan.
    pub search: Option<String>,
}

impl FriendFilter {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.closed.is_none()
            && self.joined_from.is_none()
            && self.joined_to.is_none()
            && self.search.as_deref().is_none_or(|s| s.trim().is_empty())
    }
}

/// A viewer may read an account's private parts (the account of `external_id`) when it is
/// staff or the account itself.
fn ensure_can_read(ctx: &Context<'_>, external_id: &str) -> Result<(), AppError> {
    match viewer(ctx) {
        Viewer::Admin { .. } | Viewer::Service { .. } => Ok(()),
        Viewer::Customer { external_id: own } if own == external_id => Ok(()),
        _ => Err(AppError::Forbidden("this account is not yours".into())),
    }
}

fn is_self_or_staff(ctx: &Context<'_>, external_id: &str) -> bool {
    ensure_can_read(ctx, external_id).is_ok()
}

pub struct Account(pub account::Model);

#[Object]
impl Account {
    async fn id(&self) -> ID {
        to_id(Kind::Account, self.0.id)
    }

    /// The host platform's id of the account.
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }

    async fn display_name(&self, ctx: &Context<'_>) -> Option<String> {
        let name = self.0.display_name.as_deref()?;
        Some(if is_self_or_staff(ctx, &self.0.external_id) {
            name.to_owned()
        } else {
            mask_name(name)
        })
    }

    /// Shown to the account itself and to staff, never to other customers.
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        is_self_or_staff(ctx, &self.0.external_id)
            .then_some(self.0.email.as_deref())
            .flatten()
    }

    async fn referral_code(&self) -> &str {
        &self.0.referral_code
    }

    async fn referral_link(&self, ctx: &Context<'_>) -> String {
        referral_link(settings(ctx), &state(ctx).config.public_url, &self.0.referral_code)
    }

    async fn account_status(&self) -> AccountStatus {
        self.0.status.into()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// The account group, such as `business`.
    async fn group(&self) -> Option<&str> {
        self.0.account_group.as_deref()
    }

    async fn billing_scheme(&self) -> BillingScheme {
        self.0.billing_scheme.into()
    }

    /// When an admin disqualified the account (it neither refers nor is rewarded); null when
    /// it is not disqualified. Staff only.
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn disqualified_at(&self) -> Option<DateTime<Utc>> {
        self.0.disqualified_at
    }

    /// Why the account is disqualified. Staff only.
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn disqualification_reason(&self) -> Option<&str> {
        self.0.disqualification_reason.as_deref()
    }

    /// Why the account cannot earn as a referrer (DUPLICATE_REFERRER: another account with its
    /// payment method is the eligible referrer); null: it can. Staff only.
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn referrer_ineligible_reason(&self) -> Option<RejectionReason> {
        self.0.referrer_ineligible_reason.map(Into::into)
    }

    /// The account's referrals that were refused or rejected later (an unknown code, an
    /// unverified referrer's code, a duplicate payment fingerprint...), newest first, at most
    /// 100. Staff only.
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn rejected_referrals(&self, ctx: &Context<'_>) -> Result<Vec<Referral>> {
        let rejected = accounts::rejected_referrals_of(&state(ctx).db, self.0.id).await?;
        Ok(rejected.into_iter().map(Referral).collect())
    }

    /// The referral code this account signed up with, when its referral was accepted.
    async fn signed_up_with_code(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let referral = loader(ctx).load_one(ReferralOfReferee(self.0.id)).await?.flatten();
        Ok(referral.and_then(|r| r.code_used))
    }

    /// The account's standing in the affiliate program, its own terms and (to itself and
    /// staff) its statement; null: it is not in the program.
    async fn affiliate(&self) -> Option<Affiliate> {
        self.0.affiliate_status.is_some().then(|| Affiliate(self.0.clone()))
    }

    /// Its requests to withdraw cash commission, newest first; of one status, or all.
    async fn withdrawals(
        &self,
        ctx: &Context<'_>,
        status: Option<WithdrawalStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<Withdrawal>> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let request = page_request(first, after)?;
        let page = withdrawals::list(&state(ctx).db, Some(self.0.id), status.map(Into::into), request).await?;
        Ok(connection(page, |w| w.id, Withdrawal))
    }

    /// How this account was referred, if it was.
    async fn referral(&self, ctx: &Context<'_>) -> Result<Option<Referral>> {
        let referral = loader(ctx).load_one(ReferralOfReferee(self.0.id)).await?.flatten();
        Ok(referral.map(Referral))
    }

    async fn balance(&self, ctx: &Context<'_>, unit: RewardUnit) -> Result<Balance> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let unit: entity::enums::Unit = unit.into();
        let balances = loader(ctx).load_one(BalancesOf(self.0.id)).await?.unwrap_or_default();
        let row = balances.into_iter().find(|b| b.unit == unit).unwrap_or(balance::Model {
            account_id: self.0.id,
            unit,
            available: 0,
            pending: 0,
            lifetime_earned: 0,
            debt: 0,
            next_due_at: None,
        });
        Ok(Balance(row))
    }

    /// The friends this account referred, newest first unless `orderBy` says otherwise,
    /// filtered by `filter`.
    async fn referred_friends(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<FriendFilter>,
        order_by: Option<ReferralOrder>,
    ) -> Result<Page1<Referral>> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let filter = filter.unwrap_or_default();
        let order = order_by.unwrap_or_default();
        if !filter.is_empty() || order != ReferralOrder::Newest {
            // Searched or ordered otherwise: the list the admin's is, of this referrer only,
            // searched only in what the referrer sees of its friends.
            let filter = referral_list::ReferralFilter {
                referrer_id: Some(self.0.id),
                status: filter.status.map(Into::into),
                referee_closed: filter.closed,
                created_from: filter.joined_from,
                created_to: filter.joined_to,
                search: filter.search,
                search_in: referral_list::SearchIn::MaskedNameOrPlan,
            };
            let page = referral_list::list(&state(ctx).db, filter, order.into(), page_request(first, after)?).await?;
            return Ok(referral_page(page));
        }
        // The page, its total, the friends' accounts and what each earned: one statement.
        let node = ctx.look_ahead().field("edges").field("node");
        let parts = FriendParts {
            referees: node.field("referee").exists(),
            earned: node.field("earned").exists(),
        };
        let request = page_request(first, after)?;
        let mut friends = dashboard::referred_friends(
            state(ctx).direct(),
            state(ctx).dashboard_batches.as_ref(),
            self.0.id,
            request,
            parts,
        )
        .await?;
        prime_friends(loader(ctx), self.0.id, &mut friends).await;
        Ok(connection(friends.page, |r| r.id, Referral))
    }

    /// Every change of this account's balances, newest first.
    async fn reward_history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        unit: Option<RewardUnit>,
    ) -> Result<Page1<LedgerEntry>> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let request = page_request(first, after)?;
        let page = dashboard::history(
            state(ctx).direct(),
            state(ctx).dashboard_batches.as_ref(),
            self.0.id,
            unit.map(Into::into),
            request,
        )
        .await?;
        Ok(connection(page, |e| e.id, LedgerEntry))
    }

    /// Clicks on its referral link (one per visitor a day), friends who signed up with its
    /// code (accepted referrals), and how many of them qualified.
    async fn referral_stats(&self, ctx: &Context<'_>) -> Result<ReferralStats> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let stats = loader(ctx)
            .load_one(ReferralStatsOf(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(ReferralStats {
            clicks: stats.clicks,
            signups: stats.signups,
            qualified: stats.qualified,
        })
    }

    /// Its active referrals (referees that are open and paid an invoice within the program's
    /// `activeReferralDays`) and the credit they earn it on its next invoice.
    async fn active_referrals(&self, ctx: &Context<'_>) -> Result<ActiveReferrals> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let standing = rewards::active_standing(&state(ctx).db, &self.0, now(ctx)).await?;
        Ok(ActiveReferrals {
            count: i32::try_from(standing.count).unwrap_or(i32::MAX),
            within_days: standing.within_days,
            next_invoice_credit: Decimal(standing.next_invoice_credit),
        })
    }

    /// This account's reward claims, newest first.
    async fn claims(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Page1<Claim>> {
        ensure_can_read(ctx, &self.0.external_id)?;
        let page = store::list(&state(ctx).db, Some(self.0.id), None, page_request(first, after)?).await?;
        Ok(connection(page, |c| c.id, Claim::from))
    }
}

/// An account's active referrals: what REFERRER_INVOICE_PAID rules pay on.
#[derive(SimpleObject)]
pub struct ActiveReferrals {
    /// Referees whose account is open and that paid an invoice within `withinDays`.
    pub count: i32,
    /// The program's `activeReferralDays`.
    pub within_days: i32,
    /// The credit the enabled REFERRER_INVOICE_PAID rules would pay on its next invoice now
    /// (fixed, per active referral, tiers; percentages and plan prices depend on the invoice
    /// and are not counted).
    pub next_invoice_credit: Decimal,
}

/// One side of a referral, as the viewer may see it.
pub struct Participant {
    pub account: ParticipantAccount,
    pub referral_id: i64,
    pub side: Side,
}

#[Object]
impl Participant {
    /// This side of this referral (`par_7_referee`): stable, and never the account's id.
    async fn id(&self) -> ID {
        participant_id(self.referral_id, self.side)
    }

    /// Masked ("Jo*** S.") for customers other than the person.
    async fn display_name(&self, ctx: &Context<'_>) -> Option<String> {
        let name = self.account.display_name.as_deref()?;
        Some(if is_self_or_staff(ctx, &self.account.external_id) {
            name.to_owned()
        } else {
            mask_name(name)
        })
    }

    async fn referral_code(&self) -> &str {
        &self.account.referral_code
    }

    async fn joined_at(&self) -> DateTime<Utc> {
        self.account.created_at
    }

    async fn account_status(&self) -> AccountStatus {
        self.account.status.into()
    }

    async fn first_purchase_at(&self) -> Option<DateTime<Utc>> {
        self.account.first_purchase_at
    }

    /// Its current plan, as its latest paid invoice that named one said.
    async fn plan(&self) -> Option<&str> {
        self.account.plan.as_deref()
    }

    /// How often its plan is billed, as its latest paid invoice that said so.
    async fn billing_cycle(&self) -> Option<BillingCycle> {
        self.account.billing_cycle.map(Into::into)
    }

    /// The full account: for admins and the billing system only (null, with a FORBIDDEN
    /// error at its path, for customers).
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn account(&self, ctx: &Context<'_>) -> Result<Option<Account>> {
        Ok(loader(ctx).load_one(AccountById(self.account.id)).await?.map(Account))
    }
}

pub struct Referral(pub referral::Model);

#[Object]
impl Referral {
    async fn id(&self) -> ID {
        to_id(Kind::Referral, self.0.id)
    }

    async fn status(&self) -> ReferralStatus {
        self.0.status.into()
    }

    async fn rejection_reason(&self) -> Option<RejectionReason> {
        self.0.rejection_reason.map(Into::into)
    }

    async fn source(&self) -> ReferralSource {
        self.0.source.into()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn qualified_at(&self) -> Option<DateTime<Utc>> {
        self.0.qualified_at
    }

    async fn referrer(&self, ctx: &Context<'_>) -> Result<Option<Participant>> {
        let Some(referrer_id) = self.0.referrer_id else {
            return Ok(None);
        };
        let referrer = loader(ctx).load_one(ParticipantById(referrer_id)).await?;
        Ok(referrer.map(|account| Participant {
            account,
            referral_id: self.0.id,
            side: Side::Referrer,
        }))
    }

    async fn referee(&self, ctx: &Context<'_>) -> Result<Participant> {
        let referee = loader(ctx).load_one(ParticipantById(self.0.referee_id)).await?;
        Ok(Participant {
            account: referee.ok_or_else(|| AppError::not_found("referee not found"))?,
            referral_id: self.0.id,
            side: Side::Referee,
        })
    }

    /// What the referrer earned through this referral, per unit.
    async fn earned(&self, ctx: &Context<'_>) -> Result<Vec<UnitAmount>> {
        let Some(referrer_id) = self.0.referrer_id else {
            return Ok(Vec::new());
        };
        let earned = loader(ctx)
            .load_one(EarnedThrough(self.0.id, referrer_id))
            .await?
            .unwrap_or_default();
        Ok(earned
            .into_iter()
            .map(|(unit, amount)| UnitAmount {
                unit: unit.into(),
                amount: amount.into(),
            })
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct UnitAmount {
    pub unit: RewardUnit,
    pub amount: Decimal,
}

pub struct Balance(pub balance::Model);

#[Object]
impl Balance {
    /// The account's balance of this unit (`bal_12_points`): the same object wherever it is
    /// shown, so a claim's answer updates every screen that shows it.
    async fn id(&self) -> ID {
        balance_id(self.0.account_id, self.0.unit)
    }

    async fn unit(&self) -> RewardUnit {
        self.0.unit.into()
    }

    /// What can be spent now. Never below zero: while there is debt, it is zero.
    async fn available(&self) -> Decimal {
        Decimal::micros(self.0.available)
    }

    /// Earned but still on hold (less what was taken back while held); available when the
    /// hold ends.
    async fn pending(&self) -> Decimal {
        Decimal::micros(self.0.pending)
    }

    /// Rewards that became available, less rewards taken back (spending and expiry do not
    /// lower it).
    async fn lifetime_earned(&self) -> Decimal {
        Decimal::micros(self.0.lifetime_earned)
    }

    /// What taking rewards back could not take from the available balance: owed, and paid
    /// first from the next earnings.
    async fn debt(&self) -> Decimal {
        Decimal::micros(self.0.debt)
    }

    /// The next expiry of this balance: when, and how much of it leaves then (what is left of
    /// every lot expiring at that time). Null when nothing of it expires.
    async fn expiring_soon(&self, ctx: &Context<'_>) -> Result<Option<ExpiringSoon>> {
        let soon = loader(ctx)
            .load_one(ExpiringSoonOf(self.0.account_id, self.0.unit))
            .await?;
        Ok(soon.map(|soon| ExpiringSoon {
            amount: soon.amount.into(),
            expires_at: soon.at,
        }))
    }
}

/// Part of a balance that will expire, and when.
#[derive(SimpleObject)]
pub struct ExpiringSoon {
    pub amount: Decimal,
    pub expires_at: DateTime<Utc>,
}

pub struct LedgerEntry(pub StatementLine);

impl From<ledger_entry::Model> for LedgerEntry {
    fn from(entry: ledger_entry::Model) -> Self {
        LedgerEntry(entry.into())
    }
}

#[Object]
impl LedgerEntry {
    async fn id(&self) -> ID {
        to_id(Kind::Entry, self.0.id)
    }

    async fn account(&self, ctx: &Context<'_>) -> Result<Account> {
        let account = loader(ctx).load_one(AccountById(self.0.account_id)).await?;
        let account = account.ok_or_else(|| AppError::not_found("account not found"))?;
        ensure_can_read(ctx, &account.external_id)?;
        Ok(Account(account))
    }

    async fn kind(&self) -> LedgerEntryKind {
        self.0.kind.into()
    }

    async fn unit(&self) -> RewardUnit {
        self.0.unit.into()
    }

    /// Positive for what the account receives, negative for what it spends or loses.
    async fn amount(&self) -> Decimal {
        Decimal::micros(self.0.amount)
    }

    async fn status(&self) -> LedgerEntryStatus {
        self.0.status.into()
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When a held amount becomes available.
    async fn available_at(&self) -> Option<DateTime<Utc>> {
        self.0.available_at
    }

    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
}

pub struct Provider(pub provider::Model);

#[Object]
impl Provider {
    async fn id(&self) -> ID {
        to_id(Kind::Provider, self.0.id)
    }

    async fn key(&self) -> &str {
        &self.0.key
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Points per GB claimed in the reward store; null until an admin sets it.
    async fn redemption_rate(&self) -> Option<Decimal> {
        self.0.redemption_rate.map(Decimal::micros)
    }

    /// For admins and the billing system (null, with a FORBIDDEN error at its path, for
    /// customers, who reach providers through the reward store).
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn products(&self, ctx: &Context<'_>) -> Result<Option<Vec<Product>>> {
        let products = loader(ctx).load_one(ProductsOf(self.0.id)).await?.unwrap_or_default();
        Ok(Some(products.into_iter().map(Product).collect()))
    }
}

pub struct Product(pub product::Model);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        to_id(Kind::Product, self.0.id)
    }

    async fn key(&self) -> &str {
        &self.0.key
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// A lower-case name such as `residential`; rules count or skip products by it.
    async fn category(&self) -> &str {
        &self.0.category
    }

    /// Points per GB bought that a referrer earns; null until an admin sets it.
    async fn product_rate(&self) -> Option<Decimal> {
        self.0.product_rate.map(Decimal::micros)
    }

    async fn provider(&self, ctx: &Context<'_>) -> Result<Provider> {
        let provider = loader(ctx).load_one(ProviderById(self.0.provider_id)).await?;
        Ok(Provider(
            provider.ok_or_else(|| AppError::not_found("provider not found"))?,
        ))
    }
}

/// A claim, and its provider when whoever made the value had it already (a claim just made
/// read it): the answer then needs no statement for it.
pub struct Claim(pub claim::Model, pub Option<provider::Model>);

impl From<claim::Model> for Claim {
    fn from(claim: claim::Model) -> Self {
        Claim(claim, None)
    }
}

#[Object]
impl Claim {
    async fn id(&self) -> ID {
        to_id(Kind::Claim, self.0.id)
    }

    async fn account(&self, ctx: &Context<'_>) -> Result<Account> {
        let account = loader(ctx).load_one(AccountById(self.0.account_id)).await?;
        let account = account.ok_or_else(|| AppError::not_found("account not found"))?;
        ensure_can_read(ctx, &account.external_id)?;
        Ok(Account(account))
    }

    async fn provider(&self, ctx: &Context<'_>) -> Result<Provider> {
        if let Some(provider) = &self.1 {
            return Ok(Provider(provider.clone()));
        }
        let provider = loader(ctx).load_one(ProviderById(self.0.provider_id)).await?;
        Ok(Provider(
            provider.ok_or_else(|| AppError::not_found("provider not found"))?,
        ))
    }

    async fn gb(&self) -> i32 {
        self.0.gb
    }

    /// Points spent.
    async fn points(&self) -> Decimal {
        Decimal::micros(self.0.points)
    }

    async fn status(&self) -> ClaimStatus {
        self.0.status.into()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn decided_at(&self) -> Option<DateTime<Utc>> {
        self.0.decided_at
    }
}

pub struct Event {
    pub row: event::Model,
    pub duplicate: bool,
}

#[Object]
impl Event {
    async fn id(&self) -> ID {
        to_id(Kind::Event, self.row.id)
    }

    /// The platform's own id of the fact.
    async fn event_id(&self) -> &str {
        &self.row.event_id
    }

    async fn kind(&self) -> EventKind {
        self.row.kind.into()
    }

    /// True when this eventId had been recorded before: nothing was changed this time.
    async fn duplicate(&self) -> bool {
        self.duplicate
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.row.occurred_at
    }
}

/// What one rule decided about one event, with the rule as the event read it when it is at
/// hand (a new event's answer): then no statement loads it again.
pub struct RuleDecision(pub Decision, pub Option<Rule>);

#[Object]
impl RuleDecision {
    async fn rule(&self, ctx: &Context<'_>) -> Result<RewardRule> {
        if let Some(rule) = &self.1 {
            return Ok(RewardRule(rule.clone()));
        }
        let rule = loader(ctx).load_one(RuleById(self.0.rule_id)).await?;
        Ok(RewardRule(rule.ok_or_else(|| AppError::not_found("rule not found"))?))
    }

    async fn outcome(&self) -> DecisionOutcome {
        self.0.outcome.into()
    }

    /// Why, in words a person understands.
    async fn reason(&self) -> &str {
        &self.0.reason
    }
}

/// The public face of the program.
pub struct Program(pub std::sync::Arc<program_settings::Model>);

#[Object]
impl Program {
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    async fn currency(&self) -> &str {
        &self.0.currency
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProgramSettings {
    pub enabled: bool,
    pub currency: String,
    /// The referral link, with `{code}` (and optionally `{publicUrl}`) filled in.
    pub referral_link_template: String,
    pub landing_url: Option<String>,
    pub cookie_days: i32,
    /// GB of data one reward-store claim gives.
    pub gb_per_claim: i32,
    #[graphql(skip)]
    pub minimum_withdrawal_micros: i64,
    /// An account without a verified payment method gets no referral link, and its code does
    /// not attribute.
    pub require_verified_payment_for_link: bool,
    /// Claims one account may have waiting for delivery at once; null: no limit. Beyond it a
    /// claim is refused with CLAIM_LIMIT.
    pub max_pending_claims: Option<i32>,
    /// Claims one account may make in any 24 hours; null: no limit. Beyond it a claim is
    /// refused with CLAIM_LIMIT.
    pub max_claims_per_day: Option<i32>,
    /// For how many hours after a referee's first purchase was taken as first a purchase that
    /// happened earlier, arriving late, still corrects it (what the wrong one paid is taken
    /// back, the true first is evaluated). Beyond it arrival order stands.
    pub reorder_window_hours: i32,
    /// A referee that paid an invoice within this many days (and whose account is open) is an
    /// active referral of its referrer (REFERRER_INVOICE_PAID rules, `minActiveReferrals`).
    pub active_referral_days: i32,
    #[graphql(skip)]
    pub affiliate_signup_bonus_micros: i64,
    /// When cash commission becomes withdrawable, for affiliates without a schedule of their
    /// own (`setPayoutSchedule`).
    pub payout_schedule: PayoutSchedule,
    #[graphql(skip)]
    pub commission_conversion_rate_micros: Option<i64>,
}

#[ComplexObject]
impl ProgramSettings {
    /// The least an affiliate may ask to withdraw (0: any amount).
    async fn minimum_withdrawal(&self) -> Decimal {
        Decimal::micros(self.minimum_withdrawal_micros)
    }

    /// CASH paid to an affiliate on its first approval (0: none).
    async fn affiliate_signup_bonus(&self) -> Decimal {
        Decimal::micros(self.affiliate_signup_bonus_micros)
    }

    /// Credit an affiliate gets for 1 of cash commission it converts (`convertCommission`);
    /// null: conversion is off.
    async fn commission_conversion_rate(&self) -> Option<Decimal> {
        self.commission_conversion_rate_micros.map(Decimal::micros)
    }

    /// Whether this server runs as a sandbox (SANDBOX=true): admins may then move its clock
    /// forward with `advanceClock`, which exists only there. Never true for a real program.
    async fn sandbox(&self, ctx: &Context<'_>) -> bool {
        state(ctx).config.sandbox
    }

    /// The server's now: the system time, or on a sandbox as far ahead as admins moved it.
    async fn clock(&self, ctx: &Context<'_>) -> DateTime<Utc> {
        crate::graphql::context::now(ctx)
    }
}

impl From<program_settings::Model> for ProgramSettings {
    fn from(row: program_settings::Model) -> Self {
        ProgramSettings {
            enabled: row.enabled,
            currency: row.currency,
            referral_link_template: row.referral_link_template,
            landing_url: row.landing_url,
            cookie_days: row.cookie_days,
            gb_per_claim: row.gb_per_claim,
            minimum_withdrawal_micros: row.minimum_withdrawal,
            require_verified_payment_for_link: row.require_verified_payment_for_link,
            max_pending_claims: row.max_pending_claims,
            max_claims_per_day: row.max_claims_per_day,
            reorder_window_hours: row.reorder_window_hours,
            active_referral_days: row.active_referral_days,
            affiliate_signup_bonus_micros: row.affiliate_signup_bonus,
            payout_schedule: row.payout_schedule.into(),
            commission_conversion_rate_micros: row.commission_conversion_rate,
        }
    }
}

#[derive(SimpleObject)]
pub struct ReferralStats {
    pub clicks: i64,
    pub signups: i64,
    pub qualified: i64,
}

/// An account's standing in the affiliate program.
pub struct Affiliate(pub account::Model);

#[Object]
impl Affiliate {
    async fn status(&self) -> AffiliateStatus {
        self.0
            .affiliate_status
            .unwrap_or(entity::enums::AffiliateStatus::Applied)
            .into()
    }

    /// When it applied; null: an admin enabled it without an application.
    async fn applied_at(&self) -> Option<DateTime<Utc>> {
        self.0.affiliate_applied_at
    }

    /// What it wrote when it applied; to itself and staff.
    async fn note(&self, ctx: &Context<'_>) -> Option<&str> {
        is_self_or_staff(ctx, &self.0.external_id)
            .then_some(self.0.affiliate_note.as_deref())
            .flatten()
    }

    /// When an admin last decided on it.
    async fn decided_at(&self) -> Option<DateTime<Utc>> {
        self.0.affiliate_decided_at
    }

    /// Its own terms; null: the rules' own values.
    async fn terms(&self) -> Result<Option<AffiliateTermsOut>> {
        Ok(AffiliateTerms::of(&self.0)?.map(|terms| AffiliateTermsOut {
            calculation: terms.calculation.kind().into(),
            value: Decimal(match terms.calculation {
                rules::Calculation::Fixed(value) | rules::Calculation::Percent(value) => value,
                _ => Amount::ZERO,
            }),
            recurring: terms.recurring,
        }))
    }

    /// The program's banners and snippets, rendered with its own referral link; to itself and
    /// staff, while approved (null otherwise).
    async fn marketing_materials(&self, ctx: &Context<'_>) -> Result<Option<Vec<AffiliateMaterial>>> {
        if !self.shows_material(ctx)? {
            return Ok(None);
        }
        let link = referral_link(settings(ctx), &state(ctx).config.public_url, &self.0.referral_code);
        let materials = crate::service::marketing::list(&state(ctx).db).await?;
        Ok(Some(
            materials
                .iter()
                .map(|m| AffiliateMaterial::rendered(m, &link))
                .collect(),
        ))
    }

    /// When its cash commission becomes withdrawable: its own schedule, or the program's.
    async fn payout_schedule(&self, ctx: &Context<'_>) -> PayoutSchedule {
        crate::service::payout_schedule::effective(self.0.payout_schedule, settings(ctx).payout_schedule).into()
    }

    /// Its own payout schedule (`setPayoutSchedule`); null: it follows the program's.
    async fn own_payout_schedule(&self) -> Option<PayoutSchedule> {
        self.0.payout_schedule.map(Into::into)
    }

    /// Clicks, sign-ups and conversions that happened in [from, to) (either end left out: no
    /// bound); to itself and staff, once approved (null before).
    async fn stats(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Option<AffiliateStats>> {
        if !self.shows_statement(ctx)? {
            return Ok(None);
        }
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(AppError::bad_input("from must not be after to").into());
        }
        let stats = clicks::stats_between(&state(ctx).db, self.0.id, from, to).await?;
        Ok(Some(AffiliateStats {
            from,
            to,
            clicks: stats.clicks,
            signups: stats.signups,
            conversions: stats.qualified,
        }))
    }

    /// Its cash commission: on hold, available, withdrawn; to itself and staff, once approved
    /// (null before).
    async fn commission(&self, ctx: &Context<'_>) -> Result<Option<AffiliateCommission>> {
        if !self.shows_statement(ctx)? {
            return Ok(None);
        }
        let balances = loader(ctx).load_one(BalancesOf(self.0.id)).await?.unwrap_or_default();
        let cash = balances.iter().find(|b| b.unit == entity::enums::Unit::Cash);
        let available = Amount::from_micros(cash.map_or(0, |b| b.available));
        let pending = Amount::from_micros(cash.map_or(0, |b| b.pending));
        let withdrawn = withdrawals::withdrawn(&state(ctx).db, self.0.id).await?;
        let settings = settings(ctx);
        let minimum = Amount::from_micros(settings.minimum_withdrawal);
        let needed = Amount::from_micros((minimum.micros() - available.micros()).max(0));
        let can_withdraw = self.0.affiliate_status == Some(entity::enums::AffiliateStatus::Approved)
            && available.is_positive()
            && available >= minimum
            && !withdrawn.open.is_positive();
        Ok(Some(AffiliateCommission {
            currency: settings.currency.clone(),
            pending: Decimal(pending),
            available: Decimal(available),
            in_withdrawal: Decimal(withdrawn.open),
            withdrawn: Decimal(withdrawn.paid),
            minimum_withdrawal: Decimal(minimum),
            needed_to_withdraw: Decimal(needed),
            can_withdraw,
            conversion_rate: settings.commission_conversion_rate.map(Decimal::micros),
        }))
    }
}

impl Affiliate {
    /// The statement is the affiliate area's: for the account itself and staff, and only once
    /// the account was approved (a suspended affiliate still sees what it earned).
    fn shows_statement(&self, ctx: &Context<'_>) -> Result<bool, AppError> {
        use entity::enums::AffiliateStatus::{Approved, Suspended};
        self.shows_to_self_or_staff_when(ctx, &[Approved, Suspended])
    }

    /// The marketing material is for affiliates at work: approved ones only.
    fn shows_material(&self, ctx: &Context<'_>) -> Result<bool, AppError> {
        self.shows_to_self_or_staff_when(ctx, &[entity::enums::AffiliateStatus::Approved])
    }

    /// For the account itself and staff, while its status is one of `statuses`.
    fn shows_to_self_or_staff_when(
        &self,
        ctx: &Context<'_>,
        statuses: &[entity::enums::AffiliateStatus],
    ) -> Result<bool, AppError> {
        ensure_can_read(ctx, &self.0.external_id)?;
        Ok(self.0.affiliate_status.is_some_and(|status| statuses.contains(&status)))
    }
}

/// An affiliate's clicks, sign-ups and conversions in a period.
#[derive(SimpleObject)]
pub struct AffiliateStats {
    /// The period's start (included); null: from the beginning.
    pub from: Option<DateTime<Utc>>,
    /// The period's end (excluded); null: until now.
    pub to: Option<DateTime<Utc>>,
    /// Clicks counted on its referral link (one per visitor a day).
    pub clicks: i64,
    /// Friends who signed up with its code (referrals accepted).
    pub signups: i64,
    /// Referrals that qualified.
    pub conversions: i64,
}

/// An affiliate's cash commission.
#[derive(SimpleObject)]
pub struct AffiliateCommission {
    pub currency: String,
    /// Earned, still on hold (the commission delay).
    pub pending: Decimal,
    /// Can be withdrawn now.
    pub available: Decimal,
    /// Asked for in the open withdrawal request, not paid yet.
    pub in_withdrawal: Decimal,
    /// Paid out.
    pub withdrawn: Decimal,
    /// The least a withdrawal may be.
    pub minimum_withdrawal: Decimal,
    /// How much more must be available before a withdrawal can be asked for (0: none).
    pub needed_to_withdraw: Decimal,
    /// Whether a withdrawal can be asked for now: approved, at least the minimum available,
    /// and no request open.
    pub can_withdraw: bool,
    /// Credit `convertCommission` gives for 1 of cash commission; null: the program does not
    /// convert.
    pub conversion_rate: Option<Decimal>,
}

/// A request to withdraw cash commission.
pub struct Withdrawal(pub entity::withdrawal::Model);

#[Object]
impl Withdrawal {
    async fn id(&self) -> ID {
        to_id(Kind::Withdrawal, self.0.id)
    }

    async fn amount(&self) -> Decimal {
        Decimal::micros(self.0.amount)
    }

    async fn currency(&self, ctx: &Context<'_>) -> String {
        settings(ctx).currency.clone()
    }

    async fn status(&self) -> WithdrawalStatus {
        self.0.status.into()
    }

    async fn requested_at(&self) -> DateTime<Utc> {
        self.0.requested_at
    }

    /// When an admin last decided on it.
    async fn decided_at(&self) -> Option<DateTime<Utc>> {
        self.0.decided_at
    }

    /// The payout's reference, once paid.
    async fn payout_reference(&self) -> Option<&str> {
        self.0.payout_reference.as_deref()
    }

    /// Why it was rejected, or the admin's note on the decision.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    /// The affiliate: for staff only.
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn account(&self, ctx: &Context<'_>) -> Result<Option<Account>> {
        Ok(loader(ctx).load_one(AccountById(self.0.account_id)).await?.map(Account))
    }
}

/// What the rules that pay an affiliate as a referrer pay it instead of their own value.
#[derive(SimpleObject)]
#[graphql(name = "AffiliateTerms")]
pub struct AffiliateTermsOut {
    /// FIXED or PERCENT.
    pub calculation: Calculation,
    /// The amount, or the percentage.
    pub value: Decimal,
    /// On every qualifying event (true) or once per referral.
    pub recurring: bool,
}

/// One admin change.
pub struct AuditEntry(pub entity::audit_log::Model);

#[Object]
impl AuditEntry {
    async fn id(&self) -> ID {
        to_id(Kind::Audit, self.0.id)
    }

    /// Who made the change: `admin:<sub>`, `service:<sub>` or `cli:<command>`.
    async fn actor(&self) -> &str {
        &self.0.actor
    }

    async fn action(&self) -> &str {
        &self.0.action
    }

    /// What was changed, such as `rule:3` or `account:cust-42`.
    async fn target(&self) -> &str {
        &self.0.target
    }

    /// A JSON object with the state `before` and `after` the change.
    async fn details(&self) -> &str {
        &self.0.details
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}
