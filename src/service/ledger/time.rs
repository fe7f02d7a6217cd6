//! Time in the ledger: settling a balance (its holds that ended mature, its lots that expired
//! leave), the background task's pass over every balance with something due, and balance
//! reads as of now that write nothing.
//!
//! `balances.next_due_at` is a lower bound of the next time anything of a balance is due; every
//! write that adds a hold or a lot with an expiry lowers it, and settling sets it exactly. So
//! the usual spend or read, with nothing due, looks at no entry for time at all.

use super::plan::{self, Figures, Plan};
use super::{expect_one_row, lots, posted_entry};
use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::outbox::{self, payloads};
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus, Unit};
use entity::{account, balance, ledger_entry};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, Query, SelectStatement, UnionType};
use sea_orm::{
    AccessMode, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionOptions,
};
use std::collections::{HashMap, HashSet};

/// What one pass of `settle_due` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Held entries whose hold ended: rewards that became available, and the partial
    /// reversals held with them.
    pub matured: u64,
    /// Lots whose remainder expired.
    pub expired: u64,
}

impl std::ops::AddAssign for Settled {
    fn add_assign(&mut self, other: Settled) {
        self.matured += other.matured;
        self.expired += other.expired;
    }
}

/// A lot still open at now: when it expires, what it has left.
type OpenLot = (DateTime<Utc>, i64);

/// The next expiry of a balance: when, and how much leaves then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiring {
    pub amount: Amount,
    pub at: DateTime<Utc>,
}

/// A filter for a balance update: nothing of this balance is due at `now`, so settling has
/// nothing to do and the update may go ahead without it.
pub(super) fn nothing_due(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(balance::Column::NextDueAt.is_null())
        .add(balance::Column::NextDueAt.gt(now))
}

fn is_due(balance: &balance::Model, now: DateTime<Utc>) -> bool {
    balance.next_due_at.is_some_and(|at| at <= now)
}

/// Settles one balance at `now`, in the caller's transaction: locks its row (every writer of a
/// balance does, so settling and spending never interleave), matures its holds that ended,
/// expires its lots whose time has passed, and repays debt from what matured. Returns the row
/// after. Every spend and take-back calls it first.
pub async fn settle_account(
    db: &impl ConnectionTrait,
    account_id: i64,
    unit: Unit,
    now: DateTime<Utc>,
) -> AppResult<balance::Model> {
    let locked = balance::Entity::find_by_id((account_id, unit))
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {account_id} has no {unit:?} balance")))?;
    Ok(settle_locked(db, locked, now).await?.0)
}

/// Settles every balance of an account (in the order of their units, so that two callers
/// lock them in the same order).
pub(super) async fn settle_all_units(db: &impl ConnectionTrait, account_id: i64, now: DateTime<Utc>) -> AppResult<()> {
    let locked = balance::Entity::find()
        .filter(balance::Column::AccountId.eq(account_id))
        .order_by_asc(balance::Column::Unit)
        .lock_exclusive()
        .all(db)
        .await?;
    for balance in locked {
        settle_locked(db, balance, now).await?;
    }
    Ok(())
}

async fn settle_locked(
    db: &impl ConnectionTrait,
    balance: balance::Model,
    now: DateTime<Utc>,
) -> AppResult<(balance::Model, Settled)> {
    if !is_due(&balance, now) {
        return Ok((balance, Settled::default()));
    }
    let due = due_entries(db, &[balance.account_id], Some(balance.unit), now).await?;
    let plan = plan::settle(Figures::of(&balance), &due, now);
    let settled = Settled {
        matured: plan.matured.len() as u64,
        expired: plan.expired(),
    };
    let after = write(db, &balance, &plan).await?;
    announce(db, balance.account_id, &due, &plan, now).await?;
    // Debt with something available cannot come from settling; should an older row hold it,
    // it is paid now.
    lots::repay_debt(db, &after, now).await?;
    Ok((after, settled))
}

/// The events of a settled plan: each reward whose hold ended (`reward.available`), and what
/// was left of each lot that expired (`reward.expired`).
async fn announce(
    db: &impl ConnectionTrait,
    account_id: i64,
    due: &[ledger_entry::Model],
    plan: &Plan,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let entry = |id: i64| due.iter().find(|entry| entry.id == id);
    let matured = plan
        .matured
        .iter()
        .filter_map(|(id, _)| entry(*id))
        .filter(|entry| entry.kind == EntryKind::Reward && entry.amount > 0);
    let expired = plan
        .written
        .iter()
        .filter(|written| written.kind == EntryKind::Expiry)
        .flat_map(|written| written.takes.iter())
        .filter_map(|(lot, amount)| Some((entry(*lot)?, *amount)));
    let (matured, expired): (Vec<_>, Vec<_>) = (matured.collect(), expired.collect());
    if matured.is_empty() && expired.is_empty() {
        return Ok(());
    }
    let external_id = account::Entity::find_by_id(account_id)
        .one(db)
        .await?
        .map(|account| account.external_id)
        .unwrap_or_default();
    let mut events: Vec<_> = matured
        .into_iter()
        .map(|entry| payloads::reward_available(entry, &external_id))
        .collect();
    events.extend(
        expired
            .into_iter()
            .map(|(lot, amount)| payloads::reward_expired(lot, &external_id, amount)),
    );
    outbox::emit_all(db, events, now).await
}

/// Writes a plan: entries mature, lots change, new entries and their allocations, and the
/// balance row with its next due time recomputed.
async fn write(db: &impl ConnectionTrait, balance: &balance::Model, plan: &Plan) -> AppResult<balance::Model> {
    for (id, left) in &plan.matured {
        let matured = ledger_entry::Entity::update_many()
            .col_expr(ledger_entry::Column::Status, Expr::value(EntryStatus::Posted))
            .col_expr(ledger_entry::Column::Remaining, Expr::value(*left))
            .filter(ledger_entry::Column::Id.eq(*id))
            .filter(ledger_entry::Column::Status.eq(EntryStatus::Pending))
            .exec(db)
            .await?;
        expect_one_row(matured.rows_affected, "held entry")?;
    }
    for (id, before, after) in &plan.lots {
        let changed = ledger_entry::Entity::update_many()
            .col_expr(ledger_entry::Column::Remaining, Expr::value(*after))
            .filter(ledger_entry::Column::Id.eq(*id))
            .filter(ledger_entry::Column::Remaining.eq(*before))
            .exec(db)
            .await?;
        expect_one_row(changed.rows_affected, "lot")?;
    }
    let mut movements = plan.takes.clone();
    for written in &plan.written {
        let entry = posted_entry(
            balance.account_id,
            balance.unit,
            written.amount,
            written.kind,
            written.description.clone(),
            None,
            written.at,
        )
        .insert(db)
        .await?;
        movements.extend(written.takes.iter().map(|(lot, amount)| (entry.id, *lot, *amount)));
    }
    lots::record(db, movements).await?;

    let change = |after: i64, before: i64| after - before;
    let figures = plan.figures;
    let before = Figures::of(balance);
    let updated = balance::Entity::update_many()
        .col_expr(
            balance::Column::Available,
            Expr::col(balance::Column::Available).add(change(figures.available, before.available)),
        )
        .col_expr(
            balance::Column::Pending,
            Expr::col(balance::Column::Pending).add(change(figures.pending, before.pending)),
        )
        .col_expr(
            balance::Column::Debt,
            Expr::col(balance::Column::Debt).add(change(figures.debt, before.debt)),
        )
        .col_expr(
            balance::Column::LifetimeEarned,
            Expr::col(balance::Column::LifetimeEarned).add(change(figures.lifetime_earned, before.lifetime_earned)),
        )
        .col_expr(
            balance::Column::NextDueAt,
            Expr::from(next_due(balance.account_id, balance.unit)),
        )
        .filter(balance::Column::AccountId.eq(balance.account_id))
        .filter(balance::Column::Unit.eq(balance.unit))
        .exec_with_returning(db)
        .await?;
    updated
        .into_iter()
        .next()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("balance of account {} vanished", balance.account_id)))
}

/// The first time anything of a balance will be due, from its entries: the end of its first
/// hold or the expiry of its first expiring lot (NULL: none). The predicates are the literals
/// of the partial indexes ix_ledger_holds and ix_ledger_expiring_lots.
fn next_due(account_id: i64, unit: Unit) -> SelectStatement {
    let time = Alias::new("t");
    let mut holds = Query::select()
        .expr_as(Func::min(Expr::col(ledger_entry::Column::AvailableAt)), time.clone())
        .from(ledger_entry::Entity)
        .and_where(ledger_entry::Column::AccountId.eq(account_id))
        .and_where(ledger_entry::Column::Unit.eq(unit))
        .and_where(Expr::col(ledger_entry::Column::Status).eq(Expr::cust("'PENDING'")))
        .to_owned();
    let expiries = expiring_lots(Query::select())
        .expr_as(Func::min(Expr::col(ledger_entry::Column::ExpiresAt)), time.clone())
        .from(ledger_entry::Entity)
        .and_where(ledger_entry::Column::AccountId.eq(account_id))
        .and_where(ledger_entry::Column::Unit.eq(unit))
        .to_owned();
    holds.union(UnionType::All, expiries);
    Query::select()
        .expr(Func::min(Expr::col(time)))
        .from_subquery(holds, Alias::new("due"))
        .to_owned()
}

/// The predicate of ix_ledger_expiring_lots, as literals: a planner matches a partial index
/// only against constants.
fn expiring_lots(mut query: SelectStatement) -> SelectStatement {
    query
        .and_where(Expr::col(ledger_entry::Column::Status).eq(Expr::cust("'POSTED'")))
        .and_where(Expr::col(ledger_entry::Column::Remaining).gt(Expr::cust("0")))
        .and_where(Expr::col(ledger_entry::Column::ExpiresAt).is_not_null());
    query
}

/// The due entries of some accounts (of one unit, or all): holds that ended by `now` and lots
/// whose expiry has passed, in one statement over the two partial indexes.
async fn due_entries(
    db: &impl ConnectionTrait,
    account_ids: &[i64],
    unit: Option<Unit>,
    now: DateTime<Utc>,
) -> AppResult<Vec<ledger_entry::Model>> {
    let of_accounts = || {
        let mut select =
            ledger_entry::Entity::find().filter(ledger_entry::Column::AccountId.is_in(account_ids.to_vec()));
        if let Some(unit) = unit {
            select = select.filter(ledger_entry::Column::Unit.eq(unit));
        }
        select
    };
    let mut holds = of_accounts()
        .filter(Expr::col(ledger_entry::Column::Status).eq(Expr::cust("'PENDING'")))
        .filter(ledger_entry::Column::AvailableAt.lte(now))
        .into_query();
    let mut expired = expiring_lots(of_accounts().into_query());
    expired.and_where(ledger_entry::Column::ExpiresAt.lte(now));
    holds.union(UnionType::All, expired);
    let statement = db.get_database_backend().build(&holds);
    Ok(ledger_entry::Entity::find().from_raw_sql(statement).all(db).await?)
}

/// Balances of many accounts, all units, as of `now`: a hold that has ended counts as
/// available, what is left of an expired lot does not, debt is repaid from what matured, even
/// when the background task has not written it yet. Writes nothing. One statement when nothing
/// is due (the usual case); otherwise the balances with something due are read again with
/// their due entries in one snapshot, so that a settling committed in between is seen whole or
/// not at all.
pub async fn balances_of(
    db: &DatabaseConnection,
    account_ids: &[i64],
    now: DateTime<Utc>,
) -> AppResult<HashMap<i64, Vec<balance::Model>>> {
    let read = read_now(db, account_ids, now, false).await?;
    let mut map: HashMap<i64, Vec<balance::Model>> = HashMap::new();
    for row in read.balances {
        map.entry(row.account_id).or_default().push(row);
    }
    Ok(map)
}

/// The next expiry of each balance asked for, as of `now` (None: nothing of it expires): the
/// earliest expiry of its open lots, and what all lots expiring at that instant hold. Two
/// statements, or a few more in one snapshot when some balance has something due.
pub async fn expiring_soon(
    db: &DatabaseConnection,
    keys: &[(i64, Unit)],
    now: DateTime<Utc>,
) -> AppResult<HashMap<(i64, Unit), Expiring>> {
    let account_ids: Vec<i64> = keys
        .iter()
        .map(|(account, _)| *account)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let read = read_now(db, &account_ids, now, true).await?;
    let mut candidates = read.stored_expiries;
    for (key, plan) in read.plans {
        candidates.entry(key).or_default().extend(plan.open);
    }
    let wanted: HashSet<(i64, Unit)> = keys.iter().copied().collect();
    Ok(candidates
        .into_iter()
        .filter(|(key, _)| wanted.contains(key))
        .filter_map(|(key, lots)| {
            let at = lots.iter().map(|(at, _)| *at).min()?;
            let amount: i64 = lots.iter().filter(|(when, _)| *when == at).map(|(_, left)| left).sum();
            (amount > 0).then(|| {
                (
                    key,
                    Expiring {
                        amount: Amount::from_micros(amount),
                        at,
                    },
                )
            })
        })
        .collect())
}

/// What a read as of now found.
struct ReadNow {
    /// The balance rows as of now.
    balances: Vec<balance::Model>,
    /// Per balance with something due, the plan that got its row.
    plans: HashMap<(i64, Unit), Plan>,
    /// Per balance, its first expiring lots after now as stored (asked for only).
    stored_expiries: HashMap<(i64, Unit), Vec<OpenLot>>,
}

async fn read_now(
    db: &DatabaseConnection,
    account_ids: &[i64],
    now: DateTime<Utc>,
    with_expiries: bool,
) -> AppResult<ReadNow> {
    let mut balances = balance::Entity::find()
        .filter(balance::Column::AccountId.is_in(account_ids.iter().copied()))
        .all(db)
        .await?;
    let due_accounts: Vec<i64> = balances
        .iter()
        .filter(|row| is_due(row, now))
        .map(|row| row.account_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut read = ReadNow {
        balances: Vec::new(),
        plans: HashMap::new(),
        stored_expiries: HashMap::new(),
    };
    if due_accounts.is_empty() {
        if with_expiries {
            read.stored_expiries = stored_expiries(db, account_ids, now).await?;
        }
        read.balances = balances;
        return Ok(read);
    }

    // Settling may commit between the first read and the next ones: the due accounts' rows,
    // their due entries (and stored expiries) are read again together, in one snapshot.
    let txn = snapshot(db).await?;
    let again = balance::Entity::find()
        .filter(balance::Column::AccountId.is_in(due_accounts.iter().copied()))
        .all(&txn)
        .await?;
    let mut due: HashMap<(i64, Unit), Vec<ledger_entry::Model>> = HashMap::new();
    for entry in due_entries(&txn, &due_accounts, None, now).await? {
        due.entry((entry.account_id, entry.unit)).or_default().push(entry);
    }
    if with_expiries {
        read.stored_expiries = stored_expiries(&txn, account_ids, now).await?;
    }
    txn.commit().await?;

    let due_set: HashSet<i64> = due_accounts.into_iter().collect();
    balances.retain(|row| !due_set.contains(&row.account_id));
    for mut row in again {
        if is_due(&row, now) {
            let key = (row.account_id, row.unit);
            let plan = plan::settle(Figures::of(&row), due.get(&key).map_or(&[], Vec::as_slice), now);
            plan.figures.apply_to(&mut row);
            read.plans.insert(key, plan);
        }
        balances.push(row);
    }
    read.balances = balances;
    Ok(read)
}

/// A read-only transaction that sees one snapshot: REPEATABLE READ on PostgreSQL; on SQLite
/// (WAL) every read transaction does.
async fn snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    crate::db::begin(
        db,
        TransactionOptions {
            isolation_level: postgres.then_some(IsolationLevel::RepeatableRead),
            access_mode: postgres.then_some(AccessMode::ReadOnly),
            sqlite_transaction_mode: None,
        },
    )
    .await
}

/// Each balance's first expiring lots after `now`, as stored: the lot that expires first and
/// the others expiring at that instant. Per balance row, a correlated MIN seeks
/// ix_ledger_expiring_lots, and the lots at that instant are found on the same index by
/// equality; CROSS JOIN keeps the balances as the outer loop on SQLite, which would otherwise
/// walk every entry of the account.
async fn stored_expiries(
    db: &impl ConnectionTrait,
    account_ids: &[i64],
    now: DateTime<Utc>,
) -> AppResult<HashMap<(i64, Unit), Vec<OpenLot>>> {
    use ledger_entry::Column as Entry;
    let entries = ledger_entry::Entity;
    let first = Alias::new("first");
    let soonest = Query::select()
        .expr(Func::min(Expr::col((first.clone(), Entry::ExpiresAt))))
        .from_as(entries, first.clone())
        .and_where(Expr::col((first.clone(), Entry::Status)).eq(Expr::cust("'POSTED'")))
        .and_where(Expr::col((first.clone(), Entry::Remaining)).gt(Expr::cust("0")))
        .and_where(Expr::col((first.clone(), Entry::ExpiresAt)).is_not_null())
        .and_where(Expr::col((first.clone(), Entry::AccountId)).equals((balance::Entity, balance::Column::AccountId)))
        .and_where(Expr::col((first.clone(), Entry::Unit)).equals((balance::Entity, balance::Column::Unit)))
        .and_where(Expr::col((first, Entry::ExpiresAt)).gt(now))
        .to_owned();
    let query = Query::select()
        .columns([
            (entries, Entry::AccountId),
            (entries, Entry::Unit),
            (entries, Entry::ExpiresAt),
            (entries, Entry::Remaining),
        ])
        .from(balance::Entity)
        .cross_join(entries)
        .and_where(Expr::col((balance::Entity, balance::Column::AccountId)).is_in(account_ids.to_vec()))
        .and_where(Expr::col((entries, Entry::AccountId)).equals((balance::Entity, balance::Column::AccountId)))
        .and_where(Expr::col((entries, Entry::Unit)).equals((balance::Entity, balance::Column::Unit)))
        // The predicate of ix_ledger_expiring_lots, as literals.
        .and_where(Expr::col((entries, Entry::Status)).eq(Expr::cust("'POSTED'")))
        .and_where(Expr::col((entries, Entry::Remaining)).gt(Expr::cust("0")))
        .and_where(Expr::col((entries, Entry::ExpiresAt)).is_not_null())
        .and_where(Expr::col((entries, Entry::ExpiresAt)).eq(Expr::from(soonest)))
        .to_owned();
    let statement = db.get_database_backend().build(&query);
    let mut found: HashMap<(i64, Unit), Vec<OpenLot>> = HashMap::new();
    for row in db.query_all_raw(statement).await? {
        let account: i64 = row.try_get_by_index(0)?;
        let unit: Unit = row.try_get_by_index(1)?;
        let at: DateTime<Utc> = row.try_get_by_index(2)?;
        let left: Option<i64> = row.try_get_by_index(3)?;
        found.entry((account, unit)).or_default().push((at, left.unwrap_or(0)));
    }
    Ok(found)
}

/// The background task's work: settles every balance with something due by `now` (holds that
/// ended mature, lots whose time has come expire), `limit` balances per batch read, each
/// balance in its own short write transaction, until none is due. A balance that fails is
/// logged and left for the next pass; the others go on. Returns what it did; 0 and 0 means
/// nothing was due.
pub async fn settle_due(db: &DatabaseConnection, now: DateTime<Utc>, limit: u64) -> AppResult<Settled> {
    let batch = std::cmp::max(limit, 1);
    let mut total = Settled::default();
    let mut seen: HashSet<(i64, Unit)> = HashSet::new();
    let mut balances = 0_u64;
    let mut failed = 0_u64;
    loop {
        // Balances already settled by this pass drop out (their next due time moved past now);
        // the LIMIT leaves room for those still listed (a failure), so that the batch brings
        // new ones.
        let keys: Vec<(i64, Unit)> = balance::Entity::find()
            .select_only()
            .column(balance::Column::AccountId)
            .column(balance::Column::Unit)
            .filter(balance::Column::NextDueAt.lte(now))
            .order_by_asc(balance::Column::NextDueAt)
            .order_by_asc(balance::Column::AccountId)
            .order_by_asc(balance::Column::Unit)
            .limit(batch + seen.len() as u64)
            .into_tuple()
            .all(db)
            .await?;
        let fresh: Vec<(i64, Unit)> = keys.into_iter().filter(|key| !seen.contains(key)).collect();
        if fresh.is_empty() {
            break;
        }
        for (account_id, unit) in fresh {
            seen.insert((account_id, unit));
            match settle_one(db, account_id, unit, now).await {
                Ok(settled) => {
                    total += settled;
                    balances += 1;
                }
                Err(err) => {
                    failed += 1;
                    tracing::warn!(account = account_id, ?unit, error = ?err, "settling a balance failed; the next pass tries again");
                }
            }
        }
        tracing::debug!(
            balances,
            matured = total.matured,
            expired = total.expired,
            "settling due holds and expiries"
        );
    }
    if total != Settled::default() || failed > 0 {
        tracing::info!(
            balances,
            failed,
            matured = total.matured,
            expired = total.expired,
            "settled due holds and expiries"
        );
    }
    Ok(total)
}

async fn settle_one(db: &DatabaseConnection, account_id: i64, unit: Unit, now: DateTime<Utc>) -> AppResult<Settled> {
    let txn = begin_write(db).await?;
    let locked = balance::Entity::find_by_id((account_id, unit))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {account_id} has no {unit:?} balance")))?;
    let (_, settled) = settle_locked(&txn, locked, now).await?;
    txn.commit().await?;
    Ok(settled)
}
