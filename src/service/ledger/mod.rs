//! The ledger: every change of a balance is an entry, and the balance row changes in the same
//! transaction. A positive posted entry is a lot; spending consumes lots soonest-expiry first,
//! then oldest, and records which lots it took from so that a refund can put them back.
//! `available >= 0` is a CHECK constraint, and debits are conditional updates, so no
//! interleaving of requests can overspend.
//!
//! Time (`time.rs`, `plan.rs`): a credit may be held (PENDING until `available_at`) and its
//! lot may expire. Every write to a balance first settles what the clock has made due for it
//! (in its transaction, under the balance row's lock), and reads show the balance as of now
//! without writing, so nothing waits for the background task to be right.
//! Taking back (`reverse.rs`): a reward still pending is voided or reduced; a posted one is
//! reversed, and what the balance cannot cover becomes debt that later earnings pay first.
//!
//! This file: the entries that move a balance (credits, debits, refunds of debits, voiding),
//! and the reads of entries. `lots.rs`: taking from lots and repaying debt.

mod limits;
mod lots;
mod plan;
mod reverse;
mod time;

pub use limits::{SpendLimit, SpendOn};
pub use reverse::{TakeBack, share_of, take_back};
pub use time::{Expiring, Settled, balances_of, expiring_soon, settle_account, settle_due};

use crate::amount::Amount;
use crate::db::inserted;
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus, Unit};
use entity::{balance, ledger_entry, lot_allocation};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DerivePartialModel, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use std::collections::HashMap;

/// A positive entry to post.
#[derive(Debug, Clone)]
pub struct NewCredit {
    pub account_id: i64,
    pub unit: Unit,
    pub amount: Amount,
    pub kind: EntryKind,
    pub description: String,
    pub event_id: Option<i64>,
    pub referral_id: Option<i64>,
    pub rule_id: Option<i64>,
    /// Once per referral (1) for most rules; the event's id for recurring ones.
    pub occurrence: Option<i64>,
    /// The rule's values at the time, as JSON.
    pub rule_snapshot: Option<String>,
    /// The end of a hold: until then the entry is PENDING and counts in `pending`. None (or a
    /// time not after `now`): available at once.
    pub available_at: Option<DateTime<Utc>>,
    /// When what is left of the lot expires (counted from availability). None: never. Must be
    /// after the credit becomes available.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where the credit may be spent; None: anywhere.
    pub spend_limit: Option<SpendLimit>,
}

impl NewCredit {
    /// A credit that no rule or event paid (a bonus, an adjustment, money given back):
    /// available at once, never expiring, spendable anywhere.
    pub fn outside_rules(account_id: i64, unit: Unit, amount: Amount, kind: EntryKind, description: String) -> Self {
        NewCredit {
            account_id,
            unit,
            amount,
            kind,
            description,
            event_id: None,
            referral_id: None,
            rule_id: None,
            occurrence: None,
            rule_snapshot: None,
            available_at: None,
            expires_at: None,
            spend_limit: None,
        }
    }
}

/// A negative entry to post: something spent from the available balance.
#[derive(Debug, Clone)]
pub struct NewDebit {
    pub account_id: i64,
    pub unit: Unit,
    /// What is spent (positive; the entry records it negative).
    pub amount: Amount,
    pub kind: EntryKind,
    pub description: String,
    /// The claim this debit pays, if it pays one.
    pub claim_id: Option<i64>,
}

/// Posts a reward (or any credit) and raises the balance: held, a PENDING entry that raises
/// `pending`; otherwise a POSTED lot that raises `available` (and, for a reward,
/// `lifetime_earned`), of which any debt is repaid first. Returns `None`, writing nothing, when
/// the same (rule, referral, occurrence) was already paid: the unique index decides, so
/// concurrent events cannot both pay.
///
/// `lifetime_earned` rises when a reward becomes available (now, or when its hold ends), not
/// while it is held: a held reward may still be voided.
pub async fn post_credit(
    db: &impl ConnectionTrait,
    credit: NewCredit,
    now: DateTime<Utc>,
) -> AppResult<Option<ledger_entry::Model>> {
    if !credit.amount.is_positive() {
        return Err(AppError::internal(anyhow::anyhow!(
            "credit of {} is not positive",
            credit.amount
        )));
    }
    let held_until = checked_hold(&credit, now)?;
    let amount = credit.amount.micros();
    let row = ledger_entry::ActiveModel {
        status: Set(if held_until.is_some() {
            EntryStatus::Pending
        } else {
            EntryStatus::Posted
        }),
        // A positive posted entry is a lot: all of it is there to spend. A held one becomes a
        // lot when it matures.
        remaining: Set(if held_until.is_some() { None } else { Some(amount) }),
        event_id: Set(credit.event_id),
        referral_id: Set(credit.referral_id),
        rule_id: Set(credit.rule_id),
        occurrence: Set(credit.occurrence),
        rule_snapshot: Set(credit.rule_snapshot),
        available_at: Set(held_until),
        expires_at: Set(credit.expires_at),
        ..posted_entry(
            credit.account_id,
            credit.unit,
            amount,
            credit.kind,
            credit.description,
            None,
            now,
        )
    };
    let insert = ledger_entry::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                ledger_entry::Column::RuleId,
                ledger_entry::Column::ReferralId,
                ledger_entry::Column::Occurrence,
            ])
            .do_nothing()
            .to_owned(),
        )
        .try_insert()
        .exec_with_returning(db)
        .await;
    let Some(entry) = inserted(insert)? else {
        return Ok(None);
    };
    if let Some(limit) = &credit.spend_limit {
        limits::restrict(db, entry.id, limit).await?;
    }
    match held_until {
        Some(at) => {
            // Nothing due before `now` is changed by a hold that ends later: no settling.
            let raised = balance::Entity::update_many()
                .col_expr(
                    balance::Column::Pending,
                    Expr::col(balance::Column::Pending).add(amount),
                )
                .col_expr(balance::Column::NextDueAt, earliest_due(at))
                .filter(balance::Column::AccountId.eq(entry.account_id))
                .filter(balance::Column::Unit.eq(entry.unit))
                .exec(db)
                .await?;
            expect_one_row(raised.rows_affected, "balance row")?;
        }
        None => {
            let earned = if entry.kind == EntryKind::Reward { amount } else { 0 };
            let raise = |settled: bool| {
                let mut update = balance::Entity::update_many()
                    .col_expr(
                        balance::Column::Available,
                        Expr::col(balance::Column::Available).add(amount),
                    )
                    .col_expr(
                        balance::Column::LifetimeEarned,
                        Expr::col(balance::Column::LifetimeEarned).add(earned),
                    )
                    .filter(balance::Column::AccountId.eq(entry.account_id))
                    .filter(balance::Column::Unit.eq(entry.unit));
                if let Some(expires_at) = entry.expires_at {
                    update = update.col_expr(balance::Column::NextDueAt, earliest_due(expires_at));
                }
                if !settled {
                    update = update.filter(time::nothing_due(now));
                }
                update.exec_with_returning(db)
            };
            // Usually nothing is due and one statement does it; otherwise what time changed
            // comes first (a hold that matured earlier repays debt before this credit does).
            let mut raised = raise(false).await?;
            if raised.is_empty() {
                settle_account(db, entry.account_id, entry.unit, now).await?;
                raised = raise(true).await?;
            }
            let [balance] = <[balance::Model; 1]>::try_from(raised).map_err(|rows| {
                AppError::internal(anyhow::anyhow!("expected one balance row, updated {}", rows.len()))
            })?;
            lots::repay_debt(db, &balance, now).await?;
        }
    }
    Ok(Some(entry))
}

/// The end of a credit's hold, `None` when it is available at once (a hold that has already
/// ended is no hold); an error for a credit that would expire before it is available.
pub fn checked_hold(credit: &NewCredit, now: DateTime<Utc>) -> AppResult<Option<DateTime<Utc>>> {
    let held_until = credit.available_at.filter(|at| *at > now);
    if let Some(expires_at) = credit.expires_at
        && expires_at <= held_until.unwrap_or(now)
    {
        return Err(AppError::internal(anyhow::anyhow!(
            "credit expiring at {expires_at} would expire before it is available"
        )));
    }
    Ok(held_until)
}

/// `next_due_at` lowered to `at` if that is sooner: the balance's lower bound stays one.
fn earliest_due(at: DateTime<Utc>) -> Expr {
    Expr::case(
        Expr::col(balance::Column::NextDueAt)
            .is_null()
            .or(Expr::col(balance::Column::NextDueAt).gt(at)),
        at,
    )
    .finally(Expr::col(balance::Column::NextDueAt))
    .into()
}

/// Spends from the available balance: a conditional update that fails with
/// `INSUFFICIENT_BALANCE` when the balance does not cover it, then a negative entry, then the
/// lots it consumed. The caller's transaction makes it all or nothing. What the clock has made
/// due (a hold that ended, a lot that expired) is settled first, so a spend is right before the
/// background task runs.
pub async fn debit(db: &impl ConnectionTrait, debit: NewDebit, now: DateTime<Utc>) -> AppResult<ledger_entry::Model> {
    let cost = debit.amount.micros();
    debit_on(db, debit, &[(SpendOn::Anything, cost)], now).await
}

/// `debit`, whose lots are taken in parts, each from the lots it may spend (an invoice line's
/// category): the parts add up to the debit's amount, and the caller planned them against the
/// lots it read in this transaction (`open_lots`), so each part finds what it needs.
pub async fn debit_on(
    db: &impl ConnectionTrait,
    debit: NewDebit,
    parts: &[(SpendOn<'_>, i64)],
    now: DateTime<Utc>,
) -> AppResult<ledger_entry::Model> {
    let cost = debit.amount.micros();
    if parts.iter().map(|(_, part)| part).sum::<i64>() != cost || parts.iter().any(|(_, part)| *part < 0) {
        return Err(AppError::internal(anyhow::anyhow!(
            "the parts of a debit of {} do not add up to it",
            debit.amount
        )));
    }
    if cost <= 0 {
        return Err(AppError::internal(anyhow::anyhow!(
            "debit of {} is not positive",
            debit.amount
        )));
    }
    let lower = |settled: bool| {
        let mut update = balance::Entity::update_many()
            .col_expr(
                balance::Column::Available,
                Expr::col(balance::Column::Available).sub(cost),
            )
            .filter(balance::Column::AccountId.eq(debit.account_id))
            .filter(balance::Column::Unit.eq(debit.unit))
            .filter(balance::Column::Available.gte(cost));
        if !settled {
            update = update.filter(time::nothing_due(now));
        }
        update.exec(db)
    };
    // The usual case, nothing due: one statement, as before holds existed.
    let mut lowered = lower(false).await?.rows_affected;
    if lowered == 0 {
        settle_account(db, debit.account_id, debit.unit, now).await?;
        lowered = lower(true).await?.rows_affected;
    }
    if lowered == 0 {
        return Err(insufficient(debit.amount, debit.unit));
    }
    let entry = posted_entry(
        debit.account_id,
        debit.unit,
        -cost,
        debit.kind,
        debit.description,
        debit.claim_id,
        now,
    )
    .insert(db)
    .await?;
    for (on, part) in parts {
        if *part > 0 {
            lots::consume(db, &entry, *part, None, *on, now).await?;
        }
    }
    Ok(entry)
}

/// The account's open lots of `unit` in the order spending takes them, each with what it may
/// pay, as of now (settle the balance first).
pub async fn open_lots(
    db: &impl ConnectionTrait,
    account_id: i64,
    unit: Unit,
    now: DateTime<Utc>,
) -> AppResult<Vec<(ledger_entry::Model, Option<SpendLimit>)>> {
    lots::open_lots(db, account_id, unit, now).await
}

/// Gives a debit back: the lots it consumed regain what it took (keeping their expiry, so a
/// lot that expired meanwhile gives it up again at once, with an EXPIRY entry), the balance
/// rises again, and a positive entry records it, with lot allocations of what it gave back to
/// each lot. The entry is not a lot itself; the restored lots are. Debt, if any, is repaid
/// from it first, like from any earning.
pub async fn refund_debit(
    db: &impl ConnectionTrait,
    debit: &ledger_entry::Model,
    kind: EntryKind,
    description: String,
    now: DateTime<Utc>,
) -> AppResult<ledger_entry::Model> {
    settle_account(db, debit.account_id, debit.unit, now).await?;
    let allocations = lot_allocation::Entity::find()
        .filter(lot_allocation::Column::DebitEntryId.eq(debit.id))
        .all(db)
        .await?;
    let amount = -debit.amount;
    let refund = posted_entry(
        debit.account_id,
        debit.unit,
        amount,
        kind,
        description,
        debit.claim_id,
        now,
    )
    .insert(db)
    .await?;
    for allocation in &allocations {
        lots::adjust(db, allocation.lot_entry_id, allocation.amount).await?;
    }
    lots::record(
        db,
        allocations
            .iter()
            .map(|a| (refund.id, a.lot_entry_id, a.amount))
            .collect(),
    )
    .await?;
    let restored = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::Id.is_in(allocations.iter().map(|a| a.lot_entry_id)))
        .all(db)
        .await?;
    let mut raise = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).add(amount),
        )
        .filter(balance::Column::AccountId.eq(debit.account_id))
        .filter(balance::Column::Unit.eq(debit.unit));
    if let Some(next) = restored
        .iter()
        .filter_map(|lot| lot.expires_at)
        .filter(|at| *at > now)
        .min()
    {
        raise = raise.col_expr(balance::Column::NextDueAt, earliest_due(next));
    }
    expect_one_row(raise.exec(db).await?.rows_affected, "balance row")?;
    for lot in restored.iter().filter(|lot| lot.expires_at.is_some_and(|at| at <= now)) {
        lots::expire_now(db, lot, now).await?;
    }
    let balance = balance(db, debit.account_id, debit.unit).await?;
    lots::repay_debt(db, &balance, now).await?;
    Ok(refund)
}

/// Voids every pending entry of an account and takes them out of its balances' `pending`, in
/// the caller's transaction. Holds that have already ended are not pending any more: they are
/// settled first (they mature), so only what is still on hold is voided. The conditional update
/// decides which entries this call voided, so an entry that something else posts or voids
/// concurrently is counted by exactly one of them.
pub async fn void_pending(
    db: &impl ConnectionTrait,
    account_id: i64,
    now: DateTime<Utc>,
) -> AppResult<Vec<ledger_entry::Model>> {
    time::settle_all_units(db, account_id, now).await?;
    let voided = ledger_entry::Entity::update_many()
        .col_expr(ledger_entry::Column::Status, Expr::value(EntryStatus::Voided))
        .filter(ledger_entry::Column::AccountId.eq(account_id))
        .filter(ledger_entry::Column::Status.eq(EntryStatus::Pending))
        .exec_with_returning(db)
        .await?;
    let mut per_unit: HashMap<Unit, i64> = HashMap::new();
    for entry in &voided {
        *per_unit.entry(entry.unit).or_default() += entry.amount;
    }
    for (unit, amount) in per_unit {
        lower_pending(db, account_id, unit, amount).await?;
    }
    let mut voided = voided;
    voided.sort_by_key(|e| e.id);
    Ok(voided)
}

/// Takes `amount` (the sum of voided entries, negative ones included) out of `pending`.
async fn lower_pending(db: &impl ConnectionTrait, account_id: i64, unit: Unit, amount: i64) -> AppResult<()> {
    let lowered = balance::Entity::update_many()
        .col_expr(
            balance::Column::Pending,
            Expr::col(balance::Column::Pending).sub(amount),
        )
        .filter(balance::Column::AccountId.eq(account_id))
        .filter(balance::Column::Unit.eq(unit))
        .exec(db)
        .await?;
    expect_one_row(lowered.rows_affected, "balance row")
}

/// A posted entry that no event or rule caused (and, as built here, no lot).
fn posted_entry(
    account_id: i64,
    unit: Unit,
    amount: i64,
    kind: EntryKind,
    description: String,
    claim_id: Option<i64>,
    now: DateTime<Utc>,
) -> ledger_entry::ActiveModel {
    ledger_entry::ActiveModel {
        account_id: Set(account_id),
        unit: Set(unit),
        amount: Set(amount),
        remaining: Set(None),
        kind: Set(kind),
        status: Set(EntryStatus::Posted),
        description: Set(fit_description(description)),
        event_id: Set(None),
        referral_id: Set(None),
        rule_id: Set(None),
        occurrence: Set(None),
        rule_snapshot: Set(None),
        claim_id: Set(claim_id),
        available_at: Set(None),
        expires_at: Set(None),
        created_at: Set(now),
        reverses_entry_id: Set(None),
        ..Default::default()
    }
}

/// What an entry shows to whoever reads it (`LedgerEntry`): its columns less the links to
/// what made it and the rule's snapshot, which a page of an account's history would otherwise
/// read twenty times for nothing.
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "ledger_entry::Entity")]
pub struct StatementLine {
    pub id: i64,
    pub account_id: i64,
    pub unit: Unit,
    pub amount: i64,
    pub kind: EntryKind,
    pub status: EntryStatus,
    pub description: String,
    pub available_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<ledger_entry::Model> for StatementLine {
    fn from(entry: ledger_entry::Model) -> Self {
        StatementLine {
            id: entry.id,
            account_id: entry.account_id,
            unit: entry.unit,
            amount: entry.amount,
            kind: entry.kind,
            status: entry.status,
            description: entry.description,
            available_at: entry.available_at,
            expires_at: entry.expires_at,
            created_at: entry.created_at,
        }
    }
}

/// The balance row as stored (not as of now: see `balances_of`). Inside a transaction that
/// settled it (every spend does), the two are the same.
pub async fn balance(db: &impl ConnectionTrait, account_id: i64, unit: Unit) -> AppResult<balance::Model> {
    balance::Entity::find_by_id((account_id, unit))
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {account_id} has no {unit:?} balance")))
}

/// What each beneficiary earned through each referral (rewards, net of reversals, not voided),
/// for many (referral, beneficiary) pairs in one query.
pub async fn earned_by_referrals(
    db: &impl ConnectionTrait,
    keys: &[(i64, i64)],
) -> AppResult<HashMap<(i64, i64), Vec<(Unit, Amount)>>> {
    let referral_ids: Vec<i64> = keys.iter().map(|(referral, _)| *referral).collect();
    let rows: Vec<(i64, i64, Unit, i64)> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::ReferralId)
        .column(ledger_entry::Column::AccountId)
        .column(ledger_entry::Column::Unit)
        // SUM(bigint) is NUMERIC on PostgreSQL; cast it back so both databases give an i64.
        .column_as(
            Expr::from(Func::cast_as(
                Func::sum(Expr::col(ledger_entry::Column::Amount)),
                "BIGINT",
            )),
            "total",
        )
        .filter(ledger_entry::Column::ReferralId.is_in(referral_ids))
        .filter(ledger_entry::Column::Kind.is_in([EntryKind::Reward, EntryKind::Reversal]))
        .filter(ledger_entry::Column::Status.ne(EntryStatus::Voided))
        .group_by(ledger_entry::Column::ReferralId)
        .group_by(ledger_entry::Column::AccountId)
        .group_by(ledger_entry::Column::Unit)
        .into_tuple()
        .all(db)
        .await?;
    let mut map: HashMap<(i64, i64), Vec<(Unit, Amount)>> = HashMap::new();
    for (referral_id, account_id, unit, total) in rows {
        map.entry((referral_id, account_id))
            .or_default()
            .push((unit, Amount::from_micros(total)));
    }
    Ok(map)
}

/// The rules whose once-per-referral reward (occurrence 1) `referral_id` has: its slot is
/// taken, whatever became of the reward.
pub async fn rules_paid_once(db: &impl ConnectionTrait, referral_id: i64) -> AppResult<Vec<i64>> {
    let rule_ids: Vec<Option<i64>> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::RuleId)
        .filter(ledger_entry::Column::ReferralId.eq(referral_id))
        .filter(ledger_entry::Column::Kind.eq(EntryKind::Reward))
        .filter(ledger_entry::Column::Occurrence.eq(1))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rule_ids.into_iter().flatten().collect())
}

pub async fn entries_of_event(db: &impl ConnectionTrait, event_id: i64) -> AppResult<Vec<ledger_entry::Model>> {
    Ok(ledger_entry::Entity::find()
        .filter(ledger_entry::Column::EventId.eq(event_id))
        .order_by_asc(ledger_entry::Column::Id)
        .all(db)
        .await?)
}

/// The answer to a spend that the available balance does not cover.
pub fn insufficient(amount: Amount, unit: Unit) -> AppError {
    AppError::InsufficientBalance(format!(
        "the available balance does not cover {amount} {}",
        unit_word(unit)
    ))
}

pub fn unit_word(unit: Unit) -> &'static str {
    match unit {
        Unit::Points => "points",
        Unit::Credit => "credit",
        Unit::Cash => "cash",
    }
}

fn expect_one_row(rows: u64, what: &str) -> AppResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(AppError::internal(anyhow::anyhow!(
            "expected to update one {what}, updated {rows}"
        )))
    }
}

/// Descriptions are for people; the column holds 500 characters.
pub fn fit_description(mut text: String) -> String {
    if let Some((index, _)) = text.char_indices().nth(500) {
        text.truncate(index);
    }
    text
}
