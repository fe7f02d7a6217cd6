//! Admins adjust a balance by hand (a goodwill credit, a correction): an ADJUSTMENT entry,
//! positive (available at once; not an earning, so lifetime earned stays) or negative (spent
//! from what is available, INSUFFICIENT_BALANCE beyond it). Audited with its reason, and
//! idempotent under the admin's own key: a retry answers the first entry.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::once::{self, Inserted};
use crate::service::{accounts, audit, ledger, request_hash, required_text};
use entity::enums::{EntryKind, Unit};
use entity::{adjustment, ledger_entry};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::json;

/// The longest reason an admin may give.
pub const MAX_REASON: usize = 500;

pub struct Adjust {
    pub account_id: i64,
    pub unit: Unit,
    /// Signed: what the account receives (positive) or loses (negative); never 0.
    pub amount: Amount,
    pub reason: String,
    pub idempotency_key: Option<String>,
}

/// The entry the adjustment wrote, and whether it is the first request's answer again.
pub struct Adjusted {
    pub entry: ledger_entry::Model,
    pub duplicate: bool,
}

pub async fn adjust(
    db: &DatabaseConnection,
    actor: &str,
    input: Adjust,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Adjusted> {
    if input.amount == Amount::ZERO {
        return Err(AppError::bad_input("amount must not be 0"));
    }
    let reason = required_text("reason", &input.reason, MAX_REASON)?;
    let idempotency_key = input
        .idempotency_key
        .as_deref()
        .map(|key| required_text("idempotencyKey", key, 128))
        .transpose()?;
    let key = AdjustmentKey {
        actor,
        key: idempotency_key.as_deref(),
        hash: request_hash(&json!({
            "accountId": input.account_id,
            "unit": input.unit,
            "amount": input.amount.micros(),
            "reason": reason,
        })),
    };
    if let Some(first) = once::stored(db, &key).await? {
        return replay(db, first).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::find(&txn, input.account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    let description = ledger::fit_description(format!("Adjustment: {reason}"));
    let entry = if input.amount.is_positive() {
        ledger::post_credit(
            &txn,
            ledger::NewCredit::outside_rules(account.id, input.unit, input.amount, EntryKind::Adjustment, description),
            now,
        )
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("an adjustment was refused by the ledger")))?
    } else {
        let debit = ledger::NewDebit {
            account_id: account.id,
            unit: input.unit,
            amount: Amount::from_micros(-input.amount.micros()),
            kind: EntryKind::Adjustment,
            description,
            claim_id: None,
        };
        ledger::debit(&txn, debit, now).await?
    };
    let row = adjustment::ActiveModel {
        actor: Set(actor.to_owned()),
        idempotency_key: Set(idempotency_key.clone()),
        request_hash: Set(key.hash.clone()),
        account_id: Set(account.id),
        entry_id: Set(entry.id),
        reason: Set(reason.clone()),
        created_at: Set(now),
        ..Default::default()
    };
    let txn = match once::insert(db, txn, &key, row).await? {
        Inserted::New(_, txn) => txn,
        Inserted::First(first) => return replay(db, first).await,
    };
    audit::record(
        &txn,
        actor,
        "ADJUST_BALANCE",
        &format!("account:{}", account.external_id),
        json!(null),
        json!({ "unit": input.unit, "amount": input.amount.to_string(), "reason": reason, "entry": entry.id }),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(account = account.id, entry = entry.id, amount = %input.amount, "balance adjusted");
    Ok(Adjusted {
        entry,
        duplicate: false,
    })
}

async fn replay(db: &impl ConnectionTrait, first: adjustment::Model) -> AppResult<Adjusted> {
    let entry = ledger_entry::Entity::find_by_id(first.entry_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("adjustment {} has no entry", first.id)))?;
    Ok(Adjusted { entry, duplicate: true })
}

/// An adjustment under its idempotency key: the admin's own (actor, key).
struct AdjustmentKey<'a> {
    actor: &'a str,
    key: Option<&'a str>,
    hash: String,
}

impl once::Key for AdjustmentKey<'_> {
    type Row = adjustment::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::columns([adjustment::Column::Actor, adjustment::Column::IdempotencyKey])
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<adjustment::Model>> {
        let Some(key) = self.key else {
            return Ok(None);
        };
        Ok(adjustment::Entity::find()
            .filter(adjustment::Column::Actor.eq(self.actor))
            .filter(adjustment::Column::IdempotencyKey.eq(key))
            .one(db)
            .await?)
    }

    fn same_request(&self, row: &adjustment::Model) -> bool {
        row.request_hash == self.hash
    }

    fn conflict(&self, _row: &adjustment::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "idempotencyKey {} was used for another adjustment",
            self.key.unwrap_or_default()
        ))
    }
}
