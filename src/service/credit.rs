//! Credit out: the billing system applies an account's available CREDIT to an invoice, once
//! per invoice. The lots spent are the ledger's usual order: soonest expiry first, then oldest.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::once::{self, Inserted};
use crate::service::{accounts, ledger, request_hash, required_text};
use entity::credit_application;
use entity::enums::{EntryKind, Unit};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::json;

pub struct ApplyCredit {
    pub invoice_id: String,
    pub external_id: String,
    pub amount: Amount,
}

pub struct CreditApplied {
    pub applied: Amount,
    /// The account's CREDIT still available afterwards.
    pub remaining: Amount,
    pub duplicate: bool,
}

pub async fn apply(
    db: &DatabaseConnection,
    input: ApplyCredit,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<CreditApplied> {
    let invoice_id = required_text("invoiceId", &input.invoice_id, 128)?;
    let external_id = required_text("externalId", &input.external_id, 128)?;
    if !input.amount.is_positive() {
        return Err(AppError::bad_input("amount must be greater than 0"));
    }
    let key = InvoiceKey {
        invoice_id: &invoice_id,
        hash: request_hash(&json!({ "externalId": external_id, "amount": input.amount.micros() })),
    };
    if let Some(first) = once::stored(db, &key).await? {
        return replay(db, first).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::get_by_external_id(&txn, &external_id).await?;
    // Settling locks the balance row (on SQLite the transaction already holds the write lock)
    // and answers it as of now: holds that ended count, lots that expired do not. What it
    // answers is what the debit below sees, so min(available, amount) is exact.
    let available = ledger::settle_account(&txn, account.id, Unit::Credit, now)
        .await?
        .available;
    let applied = Amount::from_micros(available.min(input.amount.micros()));
    let row = credit_application::ActiveModel {
        invoice_id: Set(invoice_id.clone()),
        account_id: Set(account.id),
        request_hash: Set(key.hash.clone()),
        requested: Set(input.amount.micros()),
        applied: Set(applied.micros()),
        entry_id: Set(None),
        created_at: Set(now),
        ..Default::default()
    };
    let (application, txn) = match once::insert(db, txn, &key, row).await? {
        Inserted::New(application, txn) => (application, txn),
        Inserted::First(first) => return replay(db, first).await,
    };
    if applied.is_positive() {
        let description = format!("Credit applied to invoice {invoice_id}");
        let debit = ledger::NewDebit {
            account_id: account.id,
            unit: Unit::Credit,
            amount: applied,
            kind: EntryKind::CreditApplied,
            description,
            claim_id: None,
        };
        let entry = ledger::debit(&txn, debit, now).await?;
        credit_application::Entity::update_many()
            .col_expr(
                credit_application::Column::EntryId,
                sea_orm::sea_query::Expr::value(entry.id),
            )
            .filter(credit_application::Column::Id.eq(application.id))
            .exec(&txn)
            .await?;
    }
    let remaining = Amount::from_micros(ledger::balance(&txn, account.id, Unit::Credit).await?.available);
    txn.commit().await?;
    tracing::info!(invoice = %invoice_id, applied = %applied, "credit applied");
    Ok(CreditApplied {
        applied,
        remaining,
        duplicate: false,
    })
}

/// A credit application is recorded once per invoice.
struct InvoiceKey<'a> {
    invoice_id: &'a str,
    hash: String,
}

impl once::Key for InvoiceKey<'_> {
    type Row = credit_application::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::column(credit_application::Column::InvoiceId)
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<credit_application::Model>> {
        Ok(credit_application::Entity::find()
            .filter(credit_application::Column::InvoiceId.eq(self.invoice_id))
            .one(db)
            .await?)
    }

    fn same_request(&self, row: &credit_application::Model) -> bool {
        row.request_hash == self.hash
    }

    fn conflict(&self, row: &credit_application::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "invoiceId {:?} was already used with different input",
            row.invoice_id
        ))
    }
}

/// The invoice's first application again: what it applied then, and the credit left now.
async fn replay(db: &impl ConnectionTrait, first: credit_application::Model) -> AppResult<CreditApplied> {
    let remaining = ledger::balance(db, first.account_id, Unit::Credit).await?.available;
    Ok(CreditApplied {
        applied: Amount::from_micros(first.applied),
        remaining: Amount::from_micros(remaining),
        duplicate: true,
    })
}
