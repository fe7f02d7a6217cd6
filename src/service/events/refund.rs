//! A refund of a purchase, a top-up or a paid invoice, whole or in part. What the refunded event caused is taken
//! back in proportion: a pending reward is voided (reduced, for a part), a posted one reversed
//! (`take_backs`, through `ledger::take_back`).
//!
//! The share is the refund's amount over the refunded event's amount; without an amount the
//! refund is of the whole rest (what earlier refunds left). Shares are cumulative: after
//! refunds totalling `r` of an event's amount `a`, `original × r ÷ a` (rounded down) of each
//! reward has been taken back, so refunds that add up to the whole take back exactly all of it.
//! A refunded event without an amount (a purchase the platform gave no amount for) can only be
//! refunded whole, once. Refunds of one event cannot add up to more than its amount.
//!
//! A refunded top-up also leaves the account's total of successful top-ups; a refunded invoice
//! leaves the account's qualifying spend in the same share, for the invoices after it (the
//! invoice's amount is its lines' total, of which the refund is a share). Refunds of one
//! event are decided one after the other: the refunded event's row is locked first.

use super::{Recorded, Step, find_event, top_up};
use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::ledger::share_of;
use crate::service::required_text;
use crate::service::take_backs::{self, Take};
use entity::enums::{EventKind, TakeBackCause};
use entity::{event, ledger_entry};
use sea_orm::sea_query::{Expr, Func, LockType};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Refund {
    /// The eventId of the refunded purchase, top-up or invoice.
    pub refund_of: String,
    /// How much was refunded; absent: all that is left.
    pub amount: Option<Amount>,
}

impl Refund {
    pub(super) fn canonical(&self) -> AppResult<(Refund, serde_json::Value)> {
        let refund_of = required_text("refundOf", &self.refund_of, 128)?;
        if self.amount.is_some_and(|a| !a.is_positive()) {
            return Err(AppError::bad_input(
                "amount must be greater than 0 (or left out for the whole rest)",
            ));
        }
        let detail = json!({
            "refundOf": refund_of,
            "amount": self.amount.map(Amount::micros),
        });
        Ok((
            Refund {
                refund_of,
                amount: self.amount,
            },
            detail,
        ))
    }
}

pub(super) async fn record(step: &Step<'_>, refund: &Refund) -> AppResult<Recorded> {
    let txn = step.txn;
    let refunded = find_event(txn, &refund.refund_of)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no event with eventId {:?} to refund", refund.refund_of)))?;
    if refunded.account_id != step.account.id {
        return Err(AppError::bad_input(format!(
            "refundOf: event {:?} is not an event of this account",
            refund.refund_of
        )));
    }
    let what = match refunded.kind {
        EventKind::Purchase => "purchase",
        EventKind::TopUp => {
            if !top_up::succeeded(&refunded)? {
                return Err(AppError::bad_input(format!(
                    "refundOf: top-up {:?} did not succeed; there is nothing to refund",
                    refund.refund_of
                )));
            }
            "top-up"
        }
        EventKind::InvoicePaid => "invoice",
        EventKind::PaymentMethodVerified
        | EventKind::Refund
        | EventKind::AccountClosed
        | EventKind::AccountReopened => {
            return Err(AppError::bad_input(format!(
                "refundOf: event {:?} is not a purchase, a top-up or an invoice",
                refund.refund_of
            )));
        }
    };
    // Refunds of one event one after the other: each reads what the ones before it refunded.
    event::Entity::find_by_id(refunded.id)
        .lock(LockType::NoKeyUpdate)
        .one(txn)
        .await?;
    let before = refunded_so_far(txn, refunded.id).await?;

    // The refund's amount as resolved, and the share of the event refunded once it is counted:
    // (refunded, of). `of` is 0 for an event without an amount (refunded whole).
    let (amount, refunded_after, of) = match refunded.amount.filter(|a| *a > 0) {
        None => {
            if refund.amount.is_some() {
                return Err(AppError::bad_input(format!(
                    "amount: {what} {:?} has no amount, so it can only be refunded whole (leave amount out)",
                    refund.refund_of
                )));
            }
            if before.1 > 0 {
                return Err(AppError::bad_input(format!(
                    "refundOf: {what} {:?} was already refunded",
                    refund.refund_of
                )));
            }
            (None, 0, 0)
        }
        Some(total) => {
            let rest = total - before.0;
            if rest <= 0 {
                return Err(AppError::bad_input(format!(
                    "refundOf: {what} {:?} was already refunded in full",
                    refund.refund_of
                )));
            }
            let amount = refund.amount.map_or(rest, Amount::micros);
            if amount > rest {
                return Err(AppError::bad_input(format!(
                    "amount: refunds of {what} {:?} cannot exceed its amount {}; {} is left to refund",
                    refund.refund_of,
                    Amount::from_micros(total),
                    Amount::from_micros(rest)
                )));
            }
            (Some(amount), before.0 + amount, total)
        }
    };

    let description = match amount {
        Some(amount) if refunded_after < of => format!(
            "Refund of {} of {what} {} ({}): reward taken back in proportion",
            Amount::from_micros(amount),
            refunded.event_id,
            Amount::from_micros(of),
        ),
        _ => format!("Refund of {what} {}: reward taken back", refunded.event_id),
    };
    let mut rewards = Vec::new();
    let of_refunded = ledger_entry::Entity::find().filter(ledger_entry::Column::EventId.eq(refunded.id));
    for standing in take_backs::standing(txn, of_refunded).await? {
        // What of this reward the refunds so far, this one included, take back in all.
        let due = share_of(
            Amount::from_micros(standing.original()),
            Amount::from_micros(refunded_after),
            Amount::from_micros(of),
        )
        .micros();
        let amount = due - standing.taken;
        if amount <= 0 {
            continue;
        }
        let take = Take {
            standing: &standing,
            amount: amount.min(standing.left()),
            cause: TakeBackCause::Refund,
            event_id: Some(step.event.id),
            description: description.clone(),
        };
        rewards.extend(take_backs::take(txn, take, step.now).await?);
    }
    if refunded.kind == EventKind::TopUp
        && let Some(amount) = amount
    {
        top_up::add_to_total(txn, step.account.id, Amount::from_micros(-amount)).await?;
    }
    Ok(Recorded {
        rewards,
        decisions: Vec::new(),
        amount: amount.map(Amount::from_micros),
        refund_of: Some(refunded.id),
    })
}

/// What the refunds recorded so far took of an event: (the sum of their amounts, how many).
async fn refunded_so_far(db: &impl ConnectionTrait, event_id: i64) -> AppResult<(i64, i64)> {
    let row: Option<(Option<i64>, i64)> = event::Entity::find()
        .select_only()
        // SUM(bigint) is NUMERIC on PostgreSQL; cast it back so both databases give an i64.
        .column_as(
            Expr::from(Func::cast_as(Func::sum(Expr::col(event::Column::Amount)), "BIGINT")),
            "total",
        )
        .column_as(
            Expr::from(Func::cast_as(Func::count(Expr::col(event::Column::Id)), "BIGINT")),
            "count",
        )
        .filter(event::Column::RefundOf.eq(event_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.map_or((0, 0), |(total, count)| (total.unwrap_or(0), count)))
}
