//! Lots: positive posted entries and what is left of them. Spending takes from them in the
//! ledger's order (soonest expiry first, then oldest) and never from a lot that has expired;
//! every movement of a lot is a lot allocation of the entry that moved it (taken by a negative
//! entry, given back by a refund). Debt is repaid here too: it is a spend from the lots.

use super::limits::{self, SpendLimit, SpendOn};
use super::{expect_one_row, posted_entry, unit_word};
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use entity::enums::EntryKind;
use entity::{balance, ledger_entry, lot_allocation};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};

/// Lots read at a time while consuming them.
const LOT_BATCH: u64 = 100;

/// Takes `cost` from the account's lots for `entry` (a negative entry), from the lot `first`
/// before any other when given (a reversal takes from the reward it reverses), then in the
/// ledger's order, from the lots `on` may take from. The balance row was updated or locked
/// first in this transaction, which holds its lock (or SQLite's write lock): lots of one
/// balance are never consumed by two transactions at once.
pub(super) async fn consume(
    db: &impl ConnectionTrait,
    entry: &ledger_entry::Model,
    cost: i64,
    first: Option<i64>,
    on: SpendOn<'_>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if on != SpendOn::Anything {
        return consume_where(db, entry, cost, on, now).await;
    }
    let mut left = cost;
    let mut taken = Vec::new();
    if let Some(first) = first {
        let lot = ledger_entry::Entity::find_by_id(first).one(db).await?;
        if let Some(lot) = lot.filter(|lot| is_open(lot, now)) {
            let take = std::cmp::min(lot.remaining.unwrap_or(0), left);
            adjust(db, lot.id, -take).await?;
            taken.push((entry.id, lot.id, take));
            left -= take;
        }
    }
    while left > 0 {
        let lots = in_order(entry.account_id, entry.unit, now)
            .limit(LOT_BATCH)
            .all(db)
            .await?;
        if lots.is_empty() {
            return Err(AppError::internal(anyhow::anyhow!(
                "account {} has {left} less in {} lots than its balance says",
                entry.account_id,
                unit_word(entry.unit)
            )));
        }
        for lot in lots {
            let take = std::cmp::min(lot.remaining.unwrap_or(0), left);
            adjust(db, lot.id, -take).await?;
            taken.push((entry.id, lot.id, take));
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    record(db, taken).await
}

/// The account's open lots of `unit`, in the ledger's order: soonest expiry first, then oldest.
fn in_order(account_id: i64, unit: entity::enums::Unit, now: DateTime<Utc>) -> Select<ledger_entry::Entity> {
    ledger_entry::Entity::find()
        .filter(ledger_entry::Column::AccountId.eq(account_id))
        .filter(ledger_entry::Column::Unit.eq(unit))
        // Literals, not parameters: the predicate of the partial index ix_ledger_open_lots,
        // which a planner matches only against constants.
        .filter(Expr::col(ledger_entry::Column::Status).eq(Expr::cust("'POSTED'")))
        .filter(Expr::col(ledger_entry::Column::Remaining).gt(Expr::cust("0")))
        // Settling came first, so no open lot has expired; this only makes sure of it.
        .filter(
            ledger_entry::Column::ExpiresAt
                .is_null()
                .or(ledger_entry::Column::ExpiresAt.gt(now)),
        )
        .order_by_asc(Expr::col(ledger_entry::Column::ExpiresAt).is_null())
        .order_by_asc(ledger_entry::Column::ExpiresAt)
        .order_by_asc(ledger_entry::Column::Id)
}

/// The account's open lots of `unit`, in the ledger's order (soonest expiry first, then
/// oldest), with their restrictions: all of them, for spends that must skip some.
pub(super) async fn open_lots(
    db: &impl ConnectionTrait,
    account_id: i64,
    unit: entity::enums::Unit,
    now: DateTime<Utc>,
) -> AppResult<Vec<(ledger_entry::Model, Option<SpendLimit>)>> {
    let lots = in_order(account_id, unit, now).all(db).await?;
    let ids: Vec<i64> = lots.iter().map(|lot| lot.id).collect();
    let mut limits = limits::of_lots(db, &ids).await?;
    Ok(lots
        .into_iter()
        .map(|lot| {
            let limit = limits.remove(&lot.id);
            (lot, limit)
        })
        .collect())
}

/// `consume` from the lots `on` may take from only.
async fn consume_where(
    db: &impl ConnectionTrait,
    entry: &ledger_entry::Model,
    cost: i64,
    on: SpendOn<'_>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let mut left = cost;
    let mut taken = Vec::new();
    for (lot, limit) in open_lots(db, entry.account_id, entry.unit, now).await? {
        if left == 0 {
            break;
        }
        if !on.may_take(limit.as_ref()) {
            continue;
        }
        let take = std::cmp::min(lot.remaining.unwrap_or(0), left);
        adjust(db, lot.id, -take).await?;
        taken.push((entry.id, lot.id, take));
        left -= take;
    }
    if left > 0 {
        return Err(AppError::internal(anyhow::anyhow!(
            "account {} has {left} less in the {} lots it may spend than was planned",
            entry.account_id,
            unit_word(entry.unit)
        )));
    }
    record(db, taken).await
}

fn is_open(lot: &ledger_entry::Model, now: DateTime<Utc>) -> bool {
    lot.status == entity::enums::EntryStatus::Posted
        && lot.remaining.is_some_and(|r| r > 0)
        && lot.expires_at.is_none_or(|at| at > now)
}

/// Moves a lot's remaining by `delta`; taking more than it has is refused (the CHECK on
/// `remaining` would refuse it too).
pub(super) async fn adjust(db: &impl ConnectionTrait, lot_id: i64, delta: i64) -> AppResult<()> {
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

/// Records lot movements `(entry, lot, amount)` in one statement.
pub(super) async fn record(db: &impl ConnectionTrait, movements: Vec<(i64, i64, i64)>) -> AppResult<()> {
    let rows: Vec<_> = movements
        .into_iter()
        .filter(|(_, _, amount)| *amount > 0)
        .map(|(entry, lot, amount)| lot_allocation::ActiveModel {
            debit_entry_id: Set(entry),
            lot_entry_id: Set(lot),
            amount: Set(amount),
            ..Default::default()
        })
        .collect();
    if !rows.is_empty() {
        lot_allocation::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Expires what is left of a lot at `now` (a claim refund gave back to a lot whose time had
/// passed): an EXPIRY entry, its allocation, and the balance lowered.
pub(super) async fn expire_now(
    db: &impl ConnectionTrait,
    lot: &ledger_entry::Model,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let fresh = ledger_entry::Entity::find_by_id(lot.id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("lot {} vanished", lot.id)))?;
    let left = fresh.remaining.unwrap_or(0);
    if left <= 0 {
        return Ok(());
    }
    let entry = posted_entry(
        lot.account_id,
        lot.unit,
        -left,
        EntryKind::Expiry,
        super::plan::expiry_description(&lot.description),
        None,
        now,
    )
    .insert(db)
    .await?;
    adjust(db, lot.id, -left).await?;
    record(db, vec![(entry.id, lot.id, left)]).await?;
    let lowered = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).sub(left),
        )
        .filter(balance::Column::AccountId.eq(lot.account_id))
        .filter(balance::Column::Unit.eq(lot.unit))
        .exec(db)
        .await?;
    expect_one_row(lowered.rows_affected, "balance row")
}

/// Pays the balance's debt from what it has available, with a negative DEBT entry that takes
/// from the lots like a spend. Called whenever `available` rose (a credit posted, a debit given
/// back), so that while debt remains, nothing is available: later earnings pay debt first.
/// `balance` is the row as this transaction last wrote it.
pub(super) async fn repay_debt(
    db: &impl ConnectionTrait,
    balance: &balance::Model,
    now: DateTime<Utc>,
) -> AppResult<Option<ledger_entry::Model>> {
    let repaid = std::cmp::min(balance.debt, balance.available);
    if repaid <= 0 {
        return Ok(None);
    }
    let entry = posted_entry(
        balance.account_id,
        balance.unit,
        -repaid,
        EntryKind::Debt,
        super::plan::REPAID.to_owned(),
        None,
        now,
    )
    .insert(db)
    .await?;
    consume(db, &entry, repaid, None, SpendOn::Anything, now).await?;
    let lowered = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).sub(repaid),
        )
        .col_expr(balance::Column::Debt, Expr::col(balance::Column::Debt).sub(repaid))
        .filter(balance::Column::AccountId.eq(balance.account_id))
        .filter(balance::Column::Unit.eq(balance.unit))
        .exec(db)
        .await?;
    expect_one_row(lowered.rows_affected, "balance row")?;
    Ok(Some(entry))
}
