//! Credit out: the billing system applies an account's available CREDIT to an invoice, once
//! per invoice. The lots spent are the ledger's usual order: soonest expiry first, then oldest.
//!
//! Some credit may be spent only on some product categories (`ledger::SpendLimit`). Given the
//! invoice's lines, each line, in order, is paid from the lots that may pay its category;
//! without lines only unrestricted credit is applied, the invoice's categories being unknown.
//! What each line got is planned here against the lots as the transaction reads them (after
//! settling, under the balance's lock), then the ledger takes exactly those parts.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::ledger::{SpendLimit, SpendOn};
use crate::service::once::{self, Inserted};
use crate::service::outbox::{self, payloads};
use crate::service::rules::InvoiceLine;
use crate::service::{accounts, key_text, ledger, request_hash, required_text};
use entity::enums::{EntryKind, Unit};
use entity::{credit_application, ledger_entry};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The most lines one application may have.
pub const MAX_LINES: usize = 100;

pub struct ApplyCredit {
    pub invoice_id: String,
    pub external_id: String,
    pub amount: Amount,
    /// The invoice's lines (they add up to `amount`); None: unknown.
    pub lines: Option<Vec<InvoiceLine>>,
}

pub struct CreditApplied {
    pub applied: Amount,
    /// The account's CREDIT still available afterwards.
    pub remaining: Amount,
    pub duplicate: bool,
    /// What each invoice line got; empty without lines.
    pub lines: Vec<AppliedLine>,
}

/// What one invoice line got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLine {
    pub category: String,
    pub amount: Amount,
    pub applied: Amount,
}

/// An `AppliedLine` as `credit_applications.lines` keeps it (amounts in millionths).
#[derive(Serialize, Deserialize)]
struct StoredLine {
    category: String,
    amount: i64,
    applied: i64,
}

fn store(lines: &[AppliedLine]) -> AppResult<String> {
    let stored: Vec<StoredLine> = lines
        .iter()
        .map(|line| StoredLine {
            category: line.category.clone(),
            amount: line.amount.micros(),
            applied: line.applied.micros(),
        })
        .collect();
    serde_json::to_string(&stored).map_err(AppError::internal)
}

fn stored(text: &str) -> AppResult<Vec<AppliedLine>> {
    let stored: Vec<StoredLine> = serde_json::from_str(text).map_err(AppError::internal)?;
    Ok(stored
        .into_iter()
        .map(|line| AppliedLine {
            category: line.category,
            amount: Amount::from_micros(line.amount),
            applied: Amount::from_micros(line.applied),
        })
        .collect())
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
    let lines = input
        .lines
        .as_deref()
        .map(|lines| checked_lines(lines, input.amount))
        .transpose()?;
    let mut request = json!({ "externalId": external_id, "amount": input.amount.micros() });
    if let Some(lines) = &lines {
        request["lines"] = lines
            .iter()
            .map(|line| json!({ "category": line.category, "amount": line.amount.micros() }))
            .collect();
    }
    let key = InvoiceKey {
        invoice_id: &invoice_id,
        hash: request_hash(&request),
    };
    if let Some(first) = once::stored(db, &key).await? {
        return replay(db, first).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::get_by_external_id(&txn, &external_id).await?;
    // Settling locks the balance row (on SQLite the transaction already holds the write lock)
    // and answers it as of now: holds that ended count, lots that expired do not. What it
    // answers is what the debit below sees, so min(available, amount) is exact.
    ledger::settle_account(&txn, account.id, Unit::Credit, now).await?;
    let lots = ledger::open_lots(&txn, account.id, Unit::Credit, now).await?;
    let (parts, applied_lines) = plan(&lots, input.amount, lines.as_deref());
    let applied = Amount::from_micros(parts.iter().map(|(_, part)| part).sum());
    let row = credit_application::ActiveModel {
        invoice_id: Set(invoice_id.clone()),
        account_id: Set(account.id),
        request_hash: Set(key.hash.clone()),
        requested: Set(input.amount.micros()),
        applied: Set(applied.micros()),
        entry_id: Set(None),
        created_at: Set(now),
        lines: Set(lines.is_some().then(|| store(&applied_lines)).transpose()?),
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
        let entry = ledger::debit_on(&txn, debit, &parts, now).await?;
        credit_application::Entity::update_many()
            .col_expr(
                credit_application::Column::EntryId,
                sea_orm::sea_query::Expr::value(entry.id),
            )
            .filter(credit_application::Column::Id.eq(application.id))
            .exec(&txn)
            .await?;
    }
    if applied.is_positive() {
        let event = payloads::credit_applied(&account, &invoice_id, input.amount.micros(), applied.micros());
        outbox::emit_all(&txn, vec![event], now).await?;
    }
    let remaining = Amount::from_micros(ledger::balance(&txn, account.id, Unit::Credit).await?.available);
    txn.commit().await?;
    tracing::info!(invoice = %invoice_id, applied = %applied, "credit applied");
    Ok(CreditApplied {
        applied,
        remaining,
        duplicate: false,
        lines: applied_lines,
    })
}

/// The lines, checked: 1 to `MAX_LINES`, categories as keys, amounts not negative, adding up
/// to the invoice's amount.
fn checked_lines(lines: &[InvoiceLine], amount: Amount) -> AppResult<Vec<InvoiceLine>> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(AppError::bad_input(format!(
            "lines: an invoice has 1 to {MAX_LINES} lines (or leave lines out)"
        )));
    }
    let mut total: i64 = 0;
    let mut checked = Vec::with_capacity(lines.len());
    for line in lines {
        if line.amount.micros() < 0 {
            return Err(AppError::bad_input("lines: a line's amount must not be negative"));
        }
        total = total.saturating_add(line.amount.micros());
        checked.push(InvoiceLine {
            category: key_text("category", &line.category)?,
            amount: line.amount,
        });
    }
    if total != amount.micros() {
        return Err(AppError::bad_input(format!(
            "lines: they add up to {}, not to the amount {amount}",
            Amount::from_micros(total)
        )));
    }
    Ok(checked)
}

/// What to take from which lots: each line, in order, from the lots that may pay its category,
/// in the ledger's order; without lines, up to `amount` from unrestricted lots. Returns the
/// ledger's parts and what each line got.
fn plan<'a>(
    lots: &[(ledger_entry::Model, Option<SpendLimit>)],
    amount: Amount,
    lines: Option<&'a [InvoiceLine]>,
) -> (Vec<(SpendOn<'a>, i64)>, Vec<AppliedLine>) {
    let mut left: Vec<i64> = lots.iter().map(|(lot, _)| lot.remaining.unwrap_or(0)).collect();
    let mut take = |on: SpendOn<'_>, wanted: i64| {
        let mut got = 0;
        for (i, (_, limit)) in lots.iter().enumerate() {
            if got == wanted {
                break;
            }
            if on.may_take(limit.as_ref()) {
                let part = left[i].min(wanted - got);
                left[i] -= part;
                got += part;
            }
        }
        got
    };
    let Some(lines) = lines else {
        let got = take(SpendOn::Unrestricted, amount.micros());
        return (vec![(SpendOn::Unrestricted, got)], Vec::new());
    };
    let mut parts = Vec::with_capacity(lines.len());
    let mut applied = Vec::with_capacity(lines.len());
    for line in lines {
        let on = SpendOn::Category(&line.category);
        let got = take(on, line.amount.micros());
        parts.push((on, got));
        applied.push(AppliedLine {
            category: line.category.clone(),
            amount: line.amount,
            applied: Amount::from_micros(got),
        });
    }
    (parts, applied)
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
    let lines = first.lines.as_deref().map(stored).transpose()?.unwrap_or_default();
    Ok(CreditApplied {
        applied: Amount::from_micros(first.applied),
        remaining: Amount::from_micros(remaining),
        duplicate: true,
        lines,
    })
}
