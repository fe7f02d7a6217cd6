//! Facts reported by the billing system. Each event is recorded once per `eventId` (a unique
//! index), evaluated against every enabled reward rule inside the same transaction, and
//! answered again, unchanged, when the same eventId is delivered again.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::once::{self, Inserted};
use crate::service::rules::{self, Decision, EventFacts, PurchaseOrder};
use crate::service::{accounts, catalog, key_text, ledger, request_hash, required_text, rewards};
use chrono::{DateTime, Utc};
use entity::enums::EventKind;
use entity::{account, event, ledger_entry};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use serde_json::json;

/// What happened, as the billing system reports it.
#[derive(Debug, Clone)]
pub enum Fact {
    Purchase {
        product_key: String,
        quantity_gb: Amount,
        /// What the customer paid, if the billing system says.
        amount: Option<Amount>,
    },
    PaymentMethodVerified,
    TopUp {
        amount: Amount,
        successful: bool,
    },
}

#[derive(Debug, Clone)]
pub struct EventInput {
    pub event_id: String,
    pub external_id: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub fact: Fact,
}

#[derive(Debug)]
pub struct EventOutcome {
    pub event: event::Model,
    pub duplicate: bool,
    pub rewards: Vec<ledger_entry::Model>,
    pub decisions: Vec<Decision>,
}

impl Fact {
    fn kind(&self) -> EventKind {
        match self {
            Fact::Purchase { .. } => EventKind::Purchase,
            Fact::PaymentMethodVerified => EventKind::PaymentMethodVerified,
            Fact::TopUp { .. } => EventKind::TopUp,
        }
    }

    /// Checks the input and returns its canonical form: the same fact, however it was written,
    /// has the same form (and hash).
    fn canonical(&self) -> AppResult<(Fact, serde_json::Value)> {
        Ok(match self {
            Fact::Purchase {
                product_key,
                quantity_gb,
                amount,
            } => {
                let product_key = key_text("productKey", product_key)?;
                if !quantity_gb.is_positive() {
                    return Err(AppError::bad_input("quantityGb must be greater than 0"));
                }
                if amount.is_some_and(|a| a.micros() < 0) {
                    return Err(AppError::bad_input("amount must not be negative"));
                }
                let canonical = json!({
                    "productKey": product_key,
                    "quantityGb": quantity_gb.micros(),
                    "amount": amount.map(Amount::micros),
                });
                (
                    Fact::Purchase {
                        product_key,
                        quantity_gb: *quantity_gb,
                        amount: *amount,
                    },
                    canonical,
                )
            }
            Fact::PaymentMethodVerified => (Fact::PaymentMethodVerified, json!({})),
            Fact::TopUp { amount, successful } => {
                if !amount.is_positive() {
                    return Err(AppError::bad_input("amount must be greater than 0"));
                }
                let canonical = json!({ "amount": amount.micros(), "successful": successful });
                (
                    Fact::TopUp {
                        amount: *amount,
                        successful: *successful,
                    },
                    canonical,
                )
            }
        })
    }
}

pub async fn record(
    db: &DatabaseConnection,
    input: EventInput,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<EventOutcome> {
    let event_id = required_text("eventId", &input.event_id, 128)?;
    let external_id = required_text("externalId", &input.external_id, 128)?;
    let (fact, detail) = input.fact.canonical()?;
    let kind = fact.kind();
    let canonical = json!({
        "kind": kind,
        "externalId": external_id,
        "occurredAt": input.occurred_at.map(|t| t.to_rfc3339()),
        "detail": detail,
    });
    let key = EventKey {
        event_id: &event_id,
        hash: request_hash(&canonical),
    };
    // A replay is answered without taking the write lock.
    if let Some(first) = once::stored(db, &key).await? {
        return replay(db, first).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::get_by_external_id(&txn, &external_id).await?;
    let product = match &fact {
        Fact::Purchase { product_key, .. } => Some(catalog::get_product(&txn, product_key).await?),
        _ => None,
    };
    let occurred_at = input.occurred_at.unwrap_or(now);
    let row = event::ActiveModel {
        event_id: Set(event_id.clone()),
        kind: Set(kind),
        account_id: Set(account.id),
        request_hash: Set(key.hash.clone()),
        payload: Set(canonical.to_string()),
        decisions: Set("[]".into()),
        occurred_at: Set(occurred_at),
        created_at: Set(now),
        ..Default::default()
    };
    let (event, txn) = match once::insert(db, txn, &key, row).await? {
        Inserted::New(event, txn) => (event, txn),
        Inserted::First(first) => return replay(db, first).await,
    };

    let event_facts = match (&fact, &product) {
        (Fact::Purchase { quantity_gb, .. }, Some(product)) => EventFacts::Purchase {
            order: if mark_first_purchase(&txn, account.id, occurred_at).await? {
                PurchaseOrder::First
            } else {
                PurchaseOrder::Later
            },
            product_name: &product.name,
            product_category: &product.category,
            product_rate: product.product_rate.map(Amount::from_micros),
            quantity_gb: *quantity_gb,
        },
        (Fact::TopUp { amount, successful }, _) => EventFacts::TopUp {
            successful: *successful,
            total: add_top_up(&txn, &account, *amount, *successful).await?,
        },
        _ => {
            mark_payment_method_verified(&txn, account.id, occurred_at).await?;
            EventFacts::PaymentMethodVerified
        }
    };
    let (rewards, decisions) = rewards::apply(
        &txn,
        &account,
        Some(event.id),
        &event_facts,
        product.as_ref(),
        &rules::enabled_rules(&txn).await?,
        now,
    )
    .await?;

    let mut row = event.into_active_model();
    row.decisions = Set(serde_json::to_string(&decisions).map_err(AppError::internal)?);
    let event = row.update(&txn).await?;
    txn.commit().await?;
    tracing::info!(event_id = %event.event_id, kind = ?event.kind, rewards = rewards.len(), "event recorded");
    Ok(EventOutcome {
        event,
        duplicate: false,
        rewards,
        decisions,
    })
}

/// Marks the account's first purchase. A conditional update: of concurrent purchases, exactly
/// one finds `first_purchase_at` empty.
async fn mark_first_purchase(db: &impl ConnectionTrait, account_id: i64, at: DateTime<Utc>) -> AppResult<bool> {
    let result = account::Entity::update_many()
        .col_expr(account::Column::FirstPurchaseAt, Expr::value(at))
        .filter(account::Column::Id.eq(account_id))
        .filter(account::Column::FirstPurchaseAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

async fn mark_payment_method_verified(db: &impl ConnectionTrait, account_id: i64, at: DateTime<Utc>) -> AppResult<()> {
    account::Entity::update_many()
        .col_expr(account::Column::PaymentMethodVerifiedAt, Expr::value(at))
        .filter(account::Column::Id.eq(account_id))
        .filter(account::Column::PaymentMethodVerifiedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Adds a successful top-up to the account's own total and returns the new total. The update
/// and the read are one statement, under the row's lock: concurrent top-ups each see the total
/// that includes exactly the top-ups before them.
async fn add_top_up(
    db: &impl ConnectionTrait,
    account: &account::Model,
    amount: Amount,
    successful: bool,
) -> AppResult<Amount> {
    let delta = if successful { amount.micros() } else { 0 };
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::TopUpTotal,
            Expr::col(account::Column::TopUpTotal).add(delta),
        )
        .filter(account::Column::Id.eq(account.id))
        .exec_with_returning(db)
        .await?;
    let total = updated
        .first()
        .map(|a| a.top_up_total)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {} vanished", account.id)))?;
    Ok(Amount::from_micros(total))
}

/// An event is recorded once per eventId.
struct EventKey<'a> {
    event_id: &'a str,
    hash: String,
}

impl once::Key for EventKey<'_> {
    type Row = event::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::column(event::Column::EventId)
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<event::Model>> {
        Ok(event::Entity::find()
            .filter(event::Column::EventId.eq(self.event_id))
            .one(db)
            .await?)
    }

    fn same_request(&self, row: &event::Model) -> bool {
        row.request_hash == self.hash
    }

    fn conflict(&self, row: &event::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "eventId {:?} was already recorded with different input",
            row.event_id
        ))
    }
}

/// The eventId's first answer again: the entries it caused (as they are now) and its decisions.
async fn replay(db: &impl ConnectionTrait, event: event::Model) -> AppResult<EventOutcome> {
    let rewards = ledger::entries_of_event(db, event.id).await?;
    let decisions = serde_json::from_str(&event.decisions).map_err(AppError::internal)?;
    Ok(EventOutcome {
        event,
        duplicate: true,
        rewards,
        decisions,
    })
}
