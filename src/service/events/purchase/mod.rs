//! A purchase: a product, a quantity, and what the customer paid. A referee's first purchase
//! (its earliest by `occurredAt`) can earn rewards; later ones earn nothing.
//!
//! Purchases arrive in any order. The account names the purchase taken as first
//! (`first_purchase_event_id`, `first_purchase_at`). The first purchase to arrive is taken as
//! first by a conditional update, so of concurrent purchases exactly one is. A purchase that
//! arrives after it:
//!
//! - happened at or after the first (or says nothing of when it happened, and so happened when
//!   it arrived): a later purchase;
//! - happened before it, and arrives within the program's reorder window, which is
//!   `reorderWindowHours` (default 72) from the moment the first was taken as first (its
//!   arrival), bounds included: the decision is corrected. What the wrong first caused is taken
//!   back (`take_backs`, through `ledger::take_back`), its rewards release their
//!   once-per-referral slot (see [`release_slots`]), and this purchase is evaluated as the
//!   first;
//! - happened before it, but arrives after the window: arrival order stands, and the decision
//!   says so (`PurchaseOrder::EarlierButLate`).
//!
//! The late cases lock the account row before they read the first purchase, so concurrent
//! late purchases are decided one after the other, each against the first the one before it
//! left; whatever the interleaving, one first purchase stands paid.

pub(super) mod planned;

use super::{Recorded, Step};
use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::rules::{EventFacts, PurchaseOrder};
use crate::service::take_backs::{self, Take};
use crate::service::{accounts, catalog, key_text, settings};
use entity::enums::{EntryKind, TakeBackCause};
use entity::{account, event, ledger_entry, product};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Purchase {
    pub product_key: String,
    pub quantity_gb: Amount,
    /// What the customer paid, if the billing system says. A refund's share is measured
    /// against it; a purchase without it can only be refunded whole.
    pub amount: Option<Amount>,
}

impl Purchase {
    pub(super) fn canonical(&self) -> AppResult<(Purchase, serde_json::Value)> {
        let product_key = key_text("productKey", &self.product_key)?;
        if !self.quantity_gb.is_positive() {
            return Err(AppError::bad_input("quantityGb must be greater than 0"));
        }
        if self.amount.is_some_and(|a| a.micros() < 0) {
            return Err(AppError::bad_input("amount must not be negative"));
        }
        let detail = json!({
            "productKey": product_key,
            "quantityGb": self.quantity_gb.micros(),
            "amount": self.amount.map(Amount::micros),
        });
        let purchase = Purchase {
            product_key,
            quantity_gb: self.quantity_gb,
            amount: self.amount,
        };
        Ok((purchase, detail))
    }
}

impl Purchase {
    /// What the rules see of this purchase of `product`, standing at `order` among the
    /// account's purchases.
    fn facts<'a>(&self, order: PurchaseOrder, product: &'a product::Model) -> EventFacts<'a> {
        EventFacts::Purchase {
            order,
            product_name: &product.name,
            product_category: &product.category,
            product_rate: product.product_rate.map(Amount::from_micros),
            quantity_gb: self.quantity_gb,
            amount: self.amount,
        }
    }
}

pub(super) async fn record(step: &Step<'_>, purchase: &Purchase) -> AppResult<Recorded> {
    let product = catalog::get_product(step.txn, &purchase.product_key).await?;
    let (order, mut taken_back) = order(step).await?;
    let (rewards, decisions) = step.apply(&purchase.facts(order, &product), Some(&product)).await?;
    taken_back.extend(rewards);
    Ok(Recorded {
        rewards: taken_back,
        decisions,
        amount: purchase.amount,
        refund_of: None,
    })
}

/// Where this purchase stands among the account's purchases, correcting the first purchase
/// when this one happened before it and arrives within the window. Returns what the
/// correction took back.
async fn order(step: &Step<'_>) -> AppResult<(PurchaseOrder, Vec<ledger_entry::Model>)> {
    let (txn, event) = (step.txn, step.event);
    let taken = account::Entity::update_many()
        .col_expr(account::Column::FirstPurchaseAt, Expr::value(event.occurred_at))
        .col_expr(account::Column::FirstPurchaseEventId, Expr::value(event.id))
        .filter(account::Column::Id.eq(event.account_id))
        .filter(account::Column::FirstPurchaseAt.is_null())
        .exec(txn)
        .await?;
    if taken.rows_affected == 1 {
        return Ok((PurchaseOrder::First, Vec::new()));
    }
    if !step.timed {
        return Ok((PurchaseOrder::Later, Vec::new()));
    }
    let account = accounts::lock(txn, event.account_id).await?;
    let (Some(first_at), Some(first_id)) = (account.first_purchase_at, account.first_purchase_event_id) else {
        return Ok((PurchaseOrder::Later, Vec::new()));
    };
    if event.occurred_at >= first_at {
        return Ok((PurchaseOrder::Later, Vec::new()));
    }
    let first = event::Entity::find_by_id(first_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("first purchase event {first_id} vanished")))?;
    let window_hours = i64::from(settings::get(txn).await?.reorder_window_hours);
    if step.now > first.created_at + chrono::Duration::hours(window_hours) {
        return Ok((
            PurchaseOrder::EarlierButLate {
                first_taken_at: first.created_at,
                window_hours,
            },
            Vec::new(),
        ));
    }

    account::Entity::update_many()
        .col_expr(account::Column::FirstPurchaseAt, Expr::value(event.occurred_at))
        .col_expr(account::Column::FirstPurchaseEventId, Expr::value(event.id))
        .filter(account::Column::Id.eq(account.id))
        .exec(txn)
        .await?;
    let mut taken_back = Vec::new();
    let of_first = ledger_entry::Entity::find().filter(ledger_entry::Column::EventId.eq(first.id));
    for standing in take_backs::standing(txn, of_first).await? {
        if standing.left() <= 0 {
            continue;
        }
        let take = Take {
            standing: &standing,
            amount: standing.left(),
            cause: TakeBackCause::Correction,
            event_id: Some(event.id),
            description: format!(
                "Correction: purchase {} happened before purchase {}, which was rewarded as the first purchase",
                event.event_id, first.event_id
            ),
        };
        taken_back.extend(take_backs::take(txn, take, step.now).await?);
    }
    release_slots(txn, first.id).await?;
    tracing::info!(
        event_id = %event.event_id,
        wrong_first = %first.event_id,
        taken_back = taken_back.len(),
        "first purchase corrected"
    );
    Ok((PurchaseOrder::First, taken_back))
}

/// A reward is paid once per (rule, referral, occurrence): a unique index. The wrong first
/// purchase's rewards hold that slot even once taken back, so the true first could never be
/// paid. Their `occurrence` becomes minus their own id: unique by construction and never a
/// real occurrence (1, or the id of a recurring rule's event, both positive), so the slot is
/// free again while the taken-back entries stay in the ledger as they were and still name
/// their rule and referral. (NULL would free the slot as well, NULLs never colliding in a
/// unique index, but the ledger checker's one-reward-per-slot query groups NULLs together.)
/// A purchase that is not first pays nothing, so every reward of the wrong first goes.
async fn release_slots(txn: &impl sea_orm::ConnectionTrait, event_id: i64) -> AppResult<()> {
    ledger_entry::Entity::update_many()
        .col_expr(
            ledger_entry::Column::Occurrence,
            Expr::col(ledger_entry::Column::Id).mul(-1),
        )
        .filter(ledger_entry::Column::EventId.eq(event_id))
        .filter(ledger_entry::Column::Kind.eq(EntryKind::Reward))
        .filter(ledger_entry::Column::Occurrence.gt(0))
        .exec(txn)
        .await?;
    Ok(())
}
