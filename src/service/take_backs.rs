//! Taking rewards back on behalf of an event or an admin act. A refund takes back its share of
//! what an event paid, a corrected first purchase takes back what the wrong one paid, a
//! disqualification takes back what the account was paid; one reward may meet several of them
//! (40 % refunded, then the account disqualified), and none may take what another took.
//!
//! The ledger does the taking (`ledger::take_back`: void what is pending, reverse what is
//! posted, owe what the balance cannot cover) and knows what is left of a reward: its amount
//! less its reversals, which point at it (`reverses_entry_id`). This module adds who took it:
//! each take is recorded in `take_backs` with its cause, the event that took it and the
//! entries the ledger wrote or changed, so an event's replay answers the entries it changed,
//! a voided reward included, which keeps the id of the event that paid it.
//!
//! The owners' balances are locked before what is left is read, so two transactions that take
//! from the same reward (a refund and a disqualification) run one after the other, and the
//! second sees the first's reversal.

use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::accounts;
use crate::service::ledger::{self, TakeBack};
use crate::service::outbox::{self, payloads};
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
    /// What has been taken back of it: its reversals that stand (not voided), as a positive
    /// amount.
    pub taken: i64,
}

impl Standing {
    /// What the reward paid (the ledger never edits an entry's amount).
    pub fn original(&self) -> i64 {
        self.entry.amount
    }

    /// What is left to take back.
    pub fn left(&self) -> i64 {
        self.entry.amount - self.taken
    }
}

/// The reward entries of `entries` that are not voided, each with what has been taken back of
/// it; in entry order. Their owners' balance rows are locked first, until the caller's
/// transaction ends: every take changes that balance, so two takes from one reward run one
/// after the other, and the entries and reversals read after the lock include the other's.
/// The balance comes first as in every ledger write (a spend locks the balance, then its
/// lots), so a take never waits on a lot while holding what a spend waits for.
/// `FOR NO KEY UPDATE`: rows that reference the balance's account keep being inserted
/// meanwhile.
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
    let reversals = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::ReversesEntryId.is_in(entries.iter().map(|e| e.id)))
        .filter(ledger_entry::Column::Status.ne(EntryStatus::Voided))
        .all(txn)
        .await?;
    let mut taken: HashMap<i64, i64> = HashMap::new();
    for reversal in reversals {
        if let Some(reward) = reversal.reverses_entry_id {
            *taken.entry(reward).or_default() -= reversal.amount;
        }
    }
    Ok(entries
        .into_iter()
        .map(|entry| Standing {
            taken: taken.get(&entry.id).copied().unwrap_or(0),
            entry,
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
        amount: Set(take.amount),
        cause: Set(take.cause),
        event_id: Set(take.event_id),
        written: Set(serde_json::to_string(&ids).map_err(AppError::internal)?),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    let owner = accounts::find(txn, standing.entry.account_id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("entry {} has no account", standing.entry.id)))?;
    let event = payloads::reward_reversed(&standing.entry, &owner.external_id, take.amount, take.cause, &ids);
    outbox::emit_all(txn, vec![event], now).await?;
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
