//! What has been taken back of each reward. A refund takes back its share of what an event
//! paid, a corrected first purchase takes back what the wrong one paid, a disqualification
//! takes back what the account was paid; one entry may meet several of them (40 % refunded,
//! then the account disqualified), and none may take what another already took. So each take
//! is recorded here (`take_backs`: the entry, its original amount, what was taken), the ledger
//! does the taking (`ledger::take_back`: void what is pending, reverse what is posted), and
//! what is left of an entry is its original amount less its takes, whatever the ledger did to
//! the entry's own row.
//!
//! The owners' balances are locked before the takes are read, so two transactions that take
//! from the same entry (a refund and a disqualification) run one after the other, and the
//! second sees the first's take.

use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::ledger::{self, TakeBack};
use entity::enums::{EntryKind, EntryStatus, TakeBackCause};
use entity::{balance, ledger_entry, take_back};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set,
};
use std::collections::{BTreeSet, HashMap};

/// A reward entry and what has been taken back of it so far.
#[derive(Debug, Clone)]
pub struct Standing {
    pub entry: ledger_entry::Model,
    /// The entry's amount before anything was taken back.
    pub original: i64,
    /// What has been taken back of it.
    pub taken: i64,
}

impl Standing {
    /// What is left to take back.
    pub fn left(&self) -> i64 {
        self.original - self.taken
    }
}

/// The reward entries of `entries` that are not voided, each with what has been taken back of
/// it; in entry order. Their owners' balance rows are locked first, until the caller's
/// transaction ends: every take changes that balance, so two takes from one entry run one
/// after the other, and the entries and takes read after the lock include the other's. The
/// balance comes first as in every ledger write (a claim locks the balance, then its lots), so
/// a take never waits on a lot while holding what a spend waits for. `FOR NO KEY UPDATE`:
/// rows that reference the balance's account keep being inserted meanwhile.
pub async fn standing(txn: &impl ConnectionTrait, entries: Select<ledger_entry::Entity>) -> AppResult<Vec<Standing>> {
    let entries = entries
        .filter(ledger_entry::Column::Kind.eq(EntryKind::Reward))
        .filter(ledger_entry::Column::Status.ne(EntryStatus::Voided))
        .order_by_asc(ledger_entry::Column::Id);
    let seen = entries.clone().all(txn).await?;
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let owners: BTreeSet<(i64, String)> = seen.iter().map(|e| (e.account_id, e.unit.to_value())).collect();
    for (account_id, unit) in owners {
        balance::Entity::find()
            .filter(balance::Column::AccountId.eq(account_id))
            .filter(balance::Column::Unit.eq(unit))
            .lock(LockType::NoKeyUpdate)
            .one(txn)
            .await?;
    }
    let entries = entries.all(txn).await?;
    let takes = take_back::Entity::find()
        .filter(take_back::Column::EntryId.is_in(entries.iter().map(|e| e.id)))
        .all(txn)
        .await?;
    let mut of_entry: HashMap<i64, (i64, i64)> = HashMap::new();
    for take in takes {
        let (original, taken) = of_entry.entry(take.entry_id).or_insert((take.original, 0));
        *original = take.original;
        *taken += take.amount;
    }
    Ok(entries
        .into_iter()
        .map(|entry| {
            let (original, taken) = of_entry.get(&entry.id).copied().unwrap_or((entry.amount, 0));
            Standing { entry, original, taken }
        })
        .collect())
}

/// One take: how much of a standing entry, why, and what the ledger entry says.
pub struct Take<'a> {
    pub standing: &'a Standing,
    /// Millionths; more than 0 and at most what is left.
    pub amount: i64,
    pub cause: TakeBackCause,
    /// The event that takes it back, if one does (a refund, a correcting purchase).
    pub event_id: Option<i64>,
    pub description: String,
}

/// Takes back part or all of a reward through the ledger and records the take, in the caller's
/// transaction. Returns the entries the ledger wrote or changed.
pub async fn take(
    txn: &impl ConnectionTrait,
    take: Take<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Vec<ledger_entry::Model>> {
    let standing = take.standing;
    if take.amount <= 0 || take.amount > standing.left() {
        return Err(AppError::internal(anyhow::anyhow!(
            "taking back {} of entry {}, of which {} is left",
            take.amount,
            standing.entry.id,
            standing.left()
        )));
    }
    let written = ledger::take_back(
        txn,
        TakeBack {
            entry: &standing.entry,
            amount: Amount::from_micros(take.amount),
            description: take.description,
            event_id: take.event_id,
        },
        now,
    )
    .await?;
    let ids: Vec<i64> = written.iter().map(|e| e.id).collect();
    take_back::ActiveModel {
        entry_id: Set(standing.entry.id),
        original: Set(standing.original),
        amount: Set(take.amount),
        cause: Set(take.cause),
        event_id: Set(take.event_id),
        written: Set(serde_json::to_string(&ids).map_err(AppError::internal)?),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(written)
}

/// The entries written or changed by the takes of one event, for its replays.
pub async fn written_by_event(db: &impl ConnectionTrait, event_id: i64) -> AppResult<BTreeSet<i64>> {
    let rows: Vec<String> = take_back::Entity::find()
        .select_only()
        .column(take_back::Column::Written)
        .filter(take_back::Column::EventId.eq(event_id))
        .into_tuple()
        .all(db)
        .await?;
    let mut ids = BTreeSet::new();
    for row in rows {
        let written: Vec<i64> = serde_json::from_str(&row).map_err(AppError::internal)?;
        ids.extend(written);
    }
    Ok(ids)
}

/// `original × part ÷ whole`, rounded down, in exact integer arithmetic: a refund's share of a
/// reward. `part ≤ whole` and `whole > 0`.
pub fn share(original: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 || part >= whole {
        return original;
    }
    let share = i128::from(original) * i128::from(part.max(0)) / i128::from(whole);
    i64::try_from(share).unwrap_or(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_down_and_the_whole_is_exact() {
        assert_eq!(share(20_000_000, 40, 100), 8_000_000);
        assert_eq!(share(10_000_000, 1, 3), 3_333_333);
        // Cumulative shares: after two thirds and then all of it, the three takes add up.
        let a = share(10_000_000, 1, 3);
        let b = share(10_000_000, 2, 3) - a;
        let c = share(10_000_000, 3, 3) - a - b;
        assert_eq!((a, b, c), (3_333_333, 3_333_333, 3_333_334));
        assert_eq!(share(i64::MAX, i64::MAX - 1, i64::MAX), i64::MAX - 1);
        assert_eq!(share(5, 0, 7), 0);
    }
}
