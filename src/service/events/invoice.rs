//! A paid invoice: lines with a product category and an amount, and how it was paid, in cash
//! or with credit and coupons. Only cash counts as spend: a rule's percentage and its spend
//! threshold see the cash share of the lines it counts (see `PaidInvoice::qualifying`).
//!
//! Each paid invoice of an account has a number, 1 for its first: the account's count of paid
//! invoices as this invoice's own update of it returns (`number`). That update locks the
//! account's row until the event commits, so invoices of one account are numbered and decided
//! one after the other, each against the spend of every invoice numbered before it, as refunds
//! have left them (`earlier`). The same update keeps the account's latest invoice (when it
//! happened: a referee that paid lately is an active referral; its total: the price of its
//! plan, for PLAN_PRICE rules).
//!
//! An invoice of a referrer counts its active referrals for REFERRER_INVOICE_PAID rules (only
//! when one is enabled): its referees, open and not disqualified, that paid an invoice within
//! the program's `active_referral_days` before this one happened.

use super::{Recorded, Step};
use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::rules::{EventFacts, InvoiceLine, PaidInvoice};
use crate::service::{accounts, key_text, optional_text, settings};
use chrono::{DateTime, Duration, Utc};
use entity::enums::{BillingCycle, EventKind, RuleTrigger};
use entity::{account, event};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveEnum, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

/// The most lines one invoice may have.
pub const MAX_LINES: usize = 100;

#[derive(Debug, Clone)]
pub struct Invoice {
    pub lines: Vec<InvoiceLine>,
    /// Paid in cash; absent: what credit did not pay.
    pub paid_in_cash: Option<Amount>,
    /// Paid with credit or coupons; absent: nothing.
    pub paid_with_credit: Option<Amount>,
    /// The plan it bills and how often: the account's current ones, if it is its latest.
    pub plan: Option<String>,
    pub billing_cycle: Option<BillingCycle>,
}

/// The longest plan name.
pub const MAX_PLAN: usize = 100;

fn bad(message: impl Into<String>) -> AppError {
    AppError::bad_input(message)
}

impl Invoice {
    /// Checks the invoice and returns it with both payments resolved: they must add up to the
    /// lines' total.
    pub(super) fn canonical(&self) -> AppResult<(Invoice, serde_json::Value)> {
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(bad(format!("lines: an invoice has 1 to {MAX_LINES} lines")));
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut total: i64 = 0;
        for line in &self.lines {
            if line.amount.micros() < 0 {
                return Err(bad("lines: a line's amount must not be negative"));
            }
            total = total
                .checked_add(line.amount.micros())
                .ok_or_else(|| bad("lines: the invoice's total is too large"))?;
            lines.push(InvoiceLine {
                category: key_text("category", &line.category)?,
                amount: line.amount,
            });
        }
        let credit = self.paid_with_credit.unwrap_or(Amount::ZERO);
        let cash = self
            .paid_in_cash
            .unwrap_or(Amount::from_micros(total - credit.micros()));
        if credit.micros() < 0 || cash.micros() < 0 {
            return Err(bad(format!(
                "paidInCash and paidWithCredit must not be negative, and together they are the lines' total {}",
                Amount::from_micros(total)
            )));
        }
        if cash.micros().checked_add(credit.micros()) != Some(total) {
            return Err(bad(format!(
                "paidInCash {cash} and paidWithCredit {credit} add up to the lines' total {}, or leave paidInCash out",
                Amount::from_micros(total)
            )));
        }
        let plan = optional_text("plan", self.plan.as_deref(), MAX_PLAN)?;
        let mut detail = json!({
            "lines": lines
                .iter()
                .map(|line| json!({ "category": line.category, "amount": line.amount.micros() }))
                .collect::<Vec<_>>(),
            "paidInCash": cash.micros(),
            "paidWithCredit": credit.micros(),
        });
        // Only when given: an invoice recorded before they existed is the same request again.
        if let Some(plan) = &plan {
            detail["plan"] = json!(plan);
        }
        if let Some(cycle) = self.billing_cycle {
            detail["billingCycle"] = json!(cycle);
        }
        let invoice = Invoice {
            lines,
            paid_in_cash: Some(cash),
            paid_with_credit: Some(credit),
            plan,
            billing_cycle: self.billing_cycle,
        };
        Ok((invoice, detail))
    }
}

pub(super) async fn record(step: &Step<'_>, invoice: &Invoice) -> AppResult<Recorded> {
    let paid = PaidInvoice {
        lines: invoice.lines.clone(),
        cash: invoice.paid_in_cash.unwrap_or(Amount::ZERO),
        refunded: Amount::ZERO,
    };
    let occurred_at = step.event.occurred_at;
    let number = number(step.txn, step.account.id, occurred_at, paid.total(), invoice).await?;
    let earlier = earlier(step.txn, step.account.id, step.event.id).await?;
    let active_referrals = match step.rules.iter().any(|r| r.trigger == RuleTrigger::ReferrerInvoicePaid) {
        true => {
            let days = settings::get(step.txn).await?.active_referral_days;
            let since = occurred_at - Duration::days(i64::from(days));
            Some(accounts::active_referrals(step.txn, step.account.id, since).await?)
        }
        false => None,
    };
    let facts = EventFacts::InvoicePaid {
        number,
        invoice: &paid,
        earlier: &earlier,
        active_referrals,
    };
    let (rewards, decisions) = step.apply(&facts, None).await?;
    Ok(Recorded {
        rewards,
        decisions,
        amount: Some(paid.total()),
        refund_of: None,
    })
}

/// Counts the invoice among the account's paid invoices, keeps it as the latest (its time, if
/// no other happened later; its total; its plan and billing cycle, when it names them and no
/// other happened later) and returns its number; the update holds the account's row until the
/// event ends.
async fn number(
    db: &impl ConnectionTrait,
    account_id: i64,
    occurred_at: DateTime<Utc>,
    total: Amount,
    invoice: &Invoice,
) -> AppResult<u32> {
    let last_at = Expr::col(account::Column::LastInvoiceAt);
    let latest = last_at.clone().is_null().or(last_at.clone().lte(occurred_at));
    let mut update = account::Entity::update_many();
    if let Some(plan) = &invoice.plan {
        update = update.col_expr(
            account::Column::Plan,
            Expr::case(latest.clone(), plan.clone())
                .finally(Expr::col(account::Column::Plan))
                .into(),
        );
    }
    if let Some(cycle) = invoice.billing_cycle {
        update = update.col_expr(
            account::Column::BillingCycle,
            Expr::case(latest.clone(), Expr::val(cycle.to_value()))
                .finally(Expr::col(account::Column::BillingCycle))
                .into(),
        );
    }
    let updated = update
        .col_expr(
            account::Column::PaidInvoices,
            Expr::col(account::Column::PaidInvoices).add(1),
        )
        .col_expr(
            account::Column::LastInvoiceAt,
            Expr::case(
                last_at.clone().is_null().or(last_at.clone().lt(occurred_at)),
                occurred_at,
            )
            .finally(last_at)
            .into(),
        )
        .col_expr(account::Column::LastInvoiceTotal, Expr::value(total.micros()))
        .filter(account::Column::Id.eq(account_id))
        .exec_with_returning(db)
        .await?;
    let count = updated
        .first()
        .map(|a| a.paid_invoices)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {account_id} vanished")))?;
    u32::try_from(count).map_err(AppError::internal)
}

/// The account's other paid invoices (those numbered before this one: it holds the account's
/// row), each with what refunds took back of it, oldest first.
async fn earlier(db: &impl ConnectionTrait, account_id: i64, this: i64) -> AppResult<Vec<PaidInvoice>> {
    let events = event::Entity::find()
        .filter(event::Column::AccountId.eq(account_id))
        .filter(event::Column::Kind.is_in([EventKind::InvoicePaid, EventKind::Refund]))
        .filter(event::Column::Id.ne(this))
        .order_by_asc(event::Column::Id)
        .all(db)
        .await?;
    let mut invoices = Vec::new();
    for event in events.iter().filter(|e| e.kind == EventKind::InvoicePaid) {
        let refunded = events
            .iter()
            .filter(|refund| refund.refund_of == Some(event.id))
            .filter_map(|refund| refund.amount)
            .sum::<i64>();
        let mut invoice = stored(event)?;
        invoice.refunded = Amount::from_micros(std::cmp::min(refunded, invoice.total().micros()));
        invoices.push(invoice);
    }
    Ok(invoices)
}

/// A recorded invoice, from its canonical form.
fn stored(event: &event::Model) -> AppResult<PaidInvoice> {
    let corrupt = || AppError::internal(anyhow::anyhow!("invoice event {} has no readable detail", event.id));
    let payload: serde_json::Value = serde_json::from_str(&event.payload).map_err(AppError::internal)?;
    let detail = &payload["detail"];
    let lines = detail["lines"]
        .as_array()
        .ok_or_else(corrupt)?
        .iter()
        .map(|line| {
            Some(InvoiceLine {
                category: line["category"].as_str()?.to_owned(),
                amount: Amount::from_micros(line["amount"].as_i64()?),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(corrupt)?;
    Ok(PaidInvoice {
        lines,
        cash: Amount::from_micros(detail["paidInCash"].as_i64().ok_or_else(corrupt)?),
        refunded: Amount::ZERO,
    })
}
