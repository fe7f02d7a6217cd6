//! Withdrawals of cash commission (the affiliate program): an approved affiliate asks for at
//! least the program's minimum and at most what is available; the amount leaves the available
//! CASH at once (a `WITHDRAWAL` debit, so no two requests can spend the same money); an admin
//! approves, rejects (a `WITHDRAWAL_RETURNED` entry gives it back) or marks it paid (withdrawn,
//! with the payout's reference).
//!
//! One open request (REQUESTED or APPROVED) per account at a time: the request locks the
//! account's row and looks, and a partial unique index backs it. Decisions lock the request's
//! row and change it only from the status they expect, so two admins deciding at once cannot
//! both give the amount back.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::once::{self, Inserted};
use crate::service::outbox::{self, payloads};
use crate::service::page::{self, Page, PageRequest};
use crate::service::{accounts, audit, ledger, optional_text, request_hash, required_text, settings};
use chrono::{DateTime, Utc};
use entity::enums::{AffiliateStatus, EntryKind, Unit, WithdrawalStatus};
use entity::{account, withdrawal};
use sea_orm::sea_query::{Expr, Func, LockType, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect, Set,
};
use serde_json::json;

/// The longest payout reference and reason an admin may write.
const MAX_REFERENCE: usize = 200;
const MAX_REASON: usize = 1000;

/// The statuses of a request still open: its amount has left the balance and is not paid yet.
pub const OPEN: [WithdrawalStatus; 2] = [WithdrawalStatus::Requested, WithdrawalStatus::Approved];

/// A request as it was answered: the row, and whether it was the first request's answer given
/// again (same idempotency key, same amount).
pub struct Requested {
    pub withdrawal: withdrawal::Model,
    pub duplicate: bool,
}

/// An approved affiliate asks to withdraw `amount` of its available cash commission.
pub async fn request(
    db: &DatabaseConnection,
    external_id: &str,
    amount: Amount,
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<Requested> {
    if !amount.is_positive() {
        return Err(AppError::bad_input("amount must be greater than 0"));
    }
    let idempotency_key = idempotency_key
        .map(|key| required_text("idempotencyKey", key, 128))
        .transpose()?;
    let account = accounts::get_by_external_id(db, external_id).await?;
    let key = RequestKey {
        account_id: account.id,
        key: idempotency_key.as_deref(),
        hash: request_hash(&json!({ "amount": amount.micros() })),
    };
    if let Some(first) = once::stored(db, &key).await? {
        return Ok(Requested {
            withdrawal: first,
            duplicate: true,
        });
    }

    let txn = begin_write(db).await?;
    // The account's row lock puts one affiliate's requests one after the other (SQLite's
    // write lock does the same), so the look for an open request below is exact.
    let account = accounts::lock(&txn, account.id).await?;
    // A retry of a request still running when it was sent waited for the lock above: it finds
    // the first one's withdrawal now, rather than a balance that withdrawal already took.
    if let Some(first) = once::stored(&txn, &key).await? {
        return Ok(Requested {
            withdrawal: first,
            duplicate: true,
        });
    }
    ensure_affiliate(&account)?;
    let minimum = Amount::from_micros(settings::get(&txn).await?.minimum_withdrawal);
    if amount < minimum {
        return Err(AppError::BelowMinimumWithdrawal(format!(
            "the least that can be withdrawn is {minimum}"
        )));
    }
    if let Some(open) = open_request(&txn, account.id).await? {
        return Err(AppError::bad_input(format!(
            "a withdrawal of {} is already waiting for a decision; one request at a time",
            Amount::from_micros(open.amount)
        )));
    }
    let debit = ledger::debit(
        &txn,
        ledger::NewDebit {
            account_id: account.id,
            unit: Unit::Cash,
            amount,
            kind: EntryKind::Withdrawal,
            description: "Withdrawal requested".to_owned(),
            claim_id: None,
        },
        now,
    )
    .await?;
    let row = withdrawal::ActiveModel {
        account_id: Set(account.id),
        amount: Set(amount.micros()),
        status: Set(WithdrawalStatus::Requested),
        idempotency_key: Set(idempotency_key.clone()),
        request_hash: Set(Some(key.hash.clone())),
        entry_id: Set(debit.id),
        return_entry_id: Set(None),
        payout_reference: Set(None),
        reason: Set(None),
        requested_at: Set(now),
        decided_at: Set(None),
        decided_by: Set(None),
        ..Default::default()
    };
    let (withdrawal, txn) = match once::insert(db, txn, &key, row).await? {
        Inserted::New(withdrawal, txn) => (withdrawal, txn),
        Inserted::First(first) => {
            return Ok(Requested {
                withdrawal: first,
                duplicate: true,
            });
        }
    };
    audit::record(
        &txn,
        &format!("customer:{}", account.external_id),
        "REQUEST_WITHDRAWAL",
        &format!("withdrawal:{}", withdrawal.id),
        json!(null),
        json!({ "amount": amount.to_string(), "status": withdrawal.status }),
        now,
    )
    .await?;
    let event = payloads::withdrawal_requested(&withdrawal, &account.external_id);
    outbox::emit_all(&txn, vec![event], now).await?;
    txn.commit().await?;
    tracing::info!(account = account.id, withdrawal = withdrawal.id, %amount, "withdrawal requested");
    Ok(Requested {
        withdrawal,
        duplicate: false,
    })
}

/// NOT_AN_AFFILIATE unless the account is an approved affiliate.
pub fn ensure_affiliate(account: &account::Model) -> AppResult<()> {
    if account.affiliate_status == Some(AffiliateStatus::Approved) {
        Ok(())
    } else {
        Err(AppError::NotAnAffiliate(
            "only an approved affiliate can withdraw commission".to_owned(),
        ))
    }
}

async fn open_request(db: &impl ConnectionTrait, account_id: i64) -> AppResult<Option<withdrawal::Model>> {
    Ok(withdrawal::Entity::find()
        .filter(withdrawal::Column::AccountId.eq(account_id))
        .filter(withdrawal::Column::Status.is_in(OPEN))
        .one(db)
        .await?)
}

/// A request under its idempotency key: (account, key); the fingerprint is the amount.
struct RequestKey<'a> {
    account_id: i64,
    key: Option<&'a str>,
    hash: String,
}

impl once::Key for RequestKey<'_> {
    type Row = withdrawal::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::columns([withdrawal::Column::AccountId, withdrawal::Column::IdempotencyKey])
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<withdrawal::Model>> {
        let Some(key) = self.key else {
            return Ok(None);
        };
        Ok(withdrawal::Entity::find()
            .filter(withdrawal::Column::AccountId.eq(self.account_id))
            .filter(withdrawal::Column::IdempotencyKey.eq(key))
            .one(db)
            .await?)
    }

    fn same_request(&self, row: &withdrawal::Model) -> bool {
        row.request_hash.as_deref() == Some(self.hash.as_str())
    }

    fn conflict(&self, _row: &withdrawal::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "idempotencyKey {} was used for another withdrawal request",
            self.key.unwrap_or_default()
        ))
    }
}

/// An admin's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// REQUESTED → APPROVED.
    Approve,
    /// REQUESTED or APPROVED → REJECTED: the amount goes back to the available balance.
    Reject,
    /// REQUESTED or APPROVED → PAID, with the payout's reference: withdrawn.
    MarkPaid,
}

impl Decision {
    fn status(self) -> WithdrawalStatus {
        match self {
            Decision::Approve => WithdrawalStatus::Approved,
            Decision::Reject => WithdrawalStatus::Rejected,
            Decision::MarkPaid => WithdrawalStatus::Paid,
        }
    }
}

/// Decides on a request, audited. The decision the request already has is answered as it is
/// (a retried click changes nothing); a request that is rejected or paid is final.
pub async fn decide(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    decision: Decision,
    payout_reference: Option<&str>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<withdrawal::Model> {
    let payout_reference = optional_text("payoutReference", payout_reference, MAX_REFERENCE)?;
    let reason = optional_text("reason", reason, MAX_REASON)?;
    if decision == Decision::MarkPaid && payout_reference.is_none() {
        return Err(AppError::bad_input(
            "payoutReference is required to mark a withdrawal paid",
        ));
    }
    let txn = begin_write(db).await?;
    let before = withdrawal::Entity::find_by_id(id)
        .lock(LockType::Update)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such withdrawal"))?;
    let status = decision.status();
    if before.status == status {
        if decision == Decision::MarkPaid && before.payout_reference != payout_reference {
            return Err(AppError::bad_input(
                "the withdrawal was already paid with another payout reference",
            ));
        }
        return Ok(before);
    }
    let allowed = match decision {
        Decision::Approve => before.status == WithdrawalStatus::Requested,
        Decision::Reject | Decision::MarkPaid => OPEN.contains(&before.status),
    };
    if !allowed {
        return Err(AppError::bad_input(format!(
            "a withdrawal that is {} cannot be {}",
            word(before.status),
            word(status)
        )));
    }
    let mut row = before.clone().into_active_model();
    row.status = Set(status);
    row.decided_at = Set(Some(now));
    row.decided_by = Set(Some(actor.to_owned()));
    if reason.is_some() {
        row.reason = Set(reason);
    }
    if decision == Decision::MarkPaid {
        row.payout_reference = Set(payout_reference);
    }
    if decision == Decision::Reject {
        let returned = ledger::post_credit(
            &txn,
            ledger::NewCredit::outside_rules(
                before.account_id,
                Unit::Cash,
                Amount::from_micros(before.amount),
                EntryKind::WithdrawalReturned,
                "Withdrawal rejected: the amount is available again".to_owned(),
            ),
            now,
        )
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a returned withdrawal was refused by the ledger")))?;
        row.return_entry_id = Set(Some(returned.id));
    }
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "DECIDE_WITHDRAWAL",
        &format!("withdrawal:{}", after.id),
        json!({ "status": before.status }),
        json!({ "status": after.status, "payoutReference": after.payout_reference, "reason": after.reason }),
        now,
    )
    .await?;
    let owner = accounts::find(&txn, after.account_id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("withdrawal {} has no account", after.id)))?;
    let event = payloads::withdrawal_decided(&after, &owner.external_id, status);
    outbox::emit_all(&txn, vec![event], now).await?;
    txn.commit().await?;
    tracing::info!(withdrawal = after.id, status = ?status, "withdrawal decided");
    Ok(after)
}

fn word(status: WithdrawalStatus) -> &'static str {
    match status {
        WithdrawalStatus::Requested => "requested",
        WithdrawalStatus::Approved => "approved",
        WithdrawalStatus::Rejected => "rejected",
        WithdrawalStatus::Paid => "paid",
    }
}

/// Requests, newest first: one account's, or every account's; of one status, or all.
pub async fn list(
    db: &impl ConnectionTrait,
    account_id: Option<i64>,
    status: Option<WithdrawalStatus>,
    request: PageRequest,
) -> AppResult<Page<withdrawal::Model>> {
    let mut select = withdrawal::Entity::find();
    if let Some(account_id) = account_id {
        select = select.filter(withdrawal::Column::AccountId.eq(account_id));
    }
    if let Some(status) = status {
        select = select.filter(withdrawal::Column::Status.eq(status));
    }
    Ok(page::fetch(db, select, withdrawal::Column::Id, request).await?)
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<Option<withdrawal::Model>> {
    Ok(withdrawal::Entity::find_by_id(id).one(db).await?)
}

/// What an account's withdrawals add up to: paid out (withdrawn), and still open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Withdrawn {
    pub paid: Amount,
    pub open: Amount,
}

/// One grouped statement.
pub async fn withdrawn(db: &impl ConnectionTrait, account_id: i64) -> AppResult<Withdrawn> {
    let sums: Vec<(WithdrawalStatus, i64)> = withdrawal::Entity::find()
        .select_only()
        .column(withdrawal::Column::Status)
        .column_as(
            Expr::from(Func::cast_as(
                Func::sum(Expr::col(withdrawal::Column::Amount)),
                "BIGINT",
            )),
            "total",
        )
        .filter(withdrawal::Column::AccountId.eq(account_id))
        .filter(withdrawal::Column::Status.ne(WithdrawalStatus::Rejected))
        .group_by(withdrawal::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut withdrawn = Withdrawn::default();
    for (status, total) in sums {
        let total = Amount::from_micros(total);
        if status == WithdrawalStatus::Paid {
            withdrawn.paid = total;
        } else {
            withdrawn.open = Amount::from_micros(withdrawn.open.micros() + total.micros());
        }
    }
    Ok(withdrawn)
}
