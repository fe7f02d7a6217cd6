//! Facts reported by the billing system. Each event is recorded once per `eventId` (a unique
//! index), evaluated against the reward rules inside the same transaction, and answered again,
//! unchanged, when the same eventId is delivered again.

use crate::amount::Amount;
use crate::db::{begin_write, inserted};
use crate::error::{AppError, AppResult};
use crate::service::accounts::{self, mask_name};
use crate::service::ledger::{self, NewCredit};
use crate::service::rules::{self, Decision, Outcome, PurchaseFacts, ReferralFacts, Verdict};
use crate::service::{catalog, key_text, request_hash, required_text, settings};
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EventKind, ReferralStatus, RuleTrigger};
use entity::{account, event, ledger_entry, referral};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryFilter, Set,
};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Purchase {
    pub event_id: String,
    pub external_id: String,
    pub product_key: String,
    pub quantity_gb: Amount,
    /// What the customer paid, if the billing system says.
    pub amount: Option<Amount>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct EventOutcome {
    pub event: event::Model,
    pub duplicate: bool,
    pub rewards: Vec<ledger_entry::Model>,
    pub decisions: Vec<Decision>,
}

pub async fn record_purchase(db: &DatabaseConnection, input: Purchase) -> AppResult<EventOutcome> {
    let event_id = required_text("eventId", &input.event_id, 128)?;
    let external_id = required_text("externalId", &input.external_id, 128)?;
    let product_key = key_text("productKey", &input.product_key)?;
    if !input.quantity_gb.is_positive() {
        return Err(AppError::bad_input("quantityGb must be greater than 0"));
    }
    if input.amount.is_some_and(|a| a.micros() < 0) {
        return Err(AppError::bad_input("amount must not be negative"));
    }
    let canonical = json!({
        "kind": "PURCHASE",
        "externalId": external_id,
        "productKey": product_key,
        "quantityGb": input.quantity_gb.micros(),
        "amount": input.amount.map(Amount::micros),
        "occurredAt": input.occurred_at.map(|t| t.to_rfc3339()),
    });
    let hash = request_hash(&canonical);
    // A replay is answered without taking the write lock.
    if let Some(existing) = find_event(db, &event_id).await? {
        return replay(db, existing, &hash).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::get_by_external_id(&txn, &external_id).await?;
    let product = catalog::get_product(&txn, &product_key).await?;
    let occurred_at = input.occurred_at.unwrap_or_else(Utc::now);
    let inserted_event = event::Entity::insert(event::ActiveModel {
        event_id: Set(event_id.clone()),
        kind: Set(EventKind::Purchase),
        account_id: Set(account.id),
        request_hash: Set(hash.clone()),
        payload: Set(canonical.to_string()),
        decisions: Set("[]".into()),
        occurred_at: Set(occurred_at),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(OnConflict::column(event::Column::EventId).do_nothing().to_owned())
    .try_insert()
    .exec_with_returning(&txn)
    .await;
    let Some(event) = inserted(inserted_event)? else {
        // Delivered concurrently and recorded by the other request: answer as a replay.
        txn.rollback().await?;
        let existing = find_event(db, &event_id).await?.ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("event {event_id} conflicted but was not found"))
        })?;
        return replay(db, existing, &hash).await;
    };

    let first_purchase = mark_first_purchase(&txn, account.id, occurred_at).await?;
    let referral = accounts::accepted_referral_of(&txn, account.id).await?;
    let program = settings::get(&txn).await?;
    let facts = PurchaseFacts {
        program_enabled: program.enabled,
        referral: referral.as_ref().and_then(|r| {
            r.referrer_id.map(|referrer_id| ReferralFacts {
                referral_id: r.id,
                referrer_id,
                referee_id: r.referee_id,
            })
        }),
        first_purchase,
        product_name: &product.name,
        product_category: &product.category,
        product_rate: product.product_rate.map(Amount::from_micros),
        quantity_gb: input.quantity_gb,
    };
    let description = format!(
        "Referral reward: {} made a first purchase ({} GB of {})",
        display_name(&account),
        input.quantity_gb,
        product.name
    );

    let mut rewards = Vec::new();
    let mut decisions = Vec::new();
    for rule in rules::enabled_rules_for(&txn, RuleTrigger::FirstPurchase).await? {
        let (outcome, reason) = match rules::evaluate_purchase(&rule, &facts) {
            Verdict::Skip { reason } => (Outcome::Skipped, reason),
            Verdict::Pay { account_id, referral_id, unit, amount, reason } => {
                let credit = NewCredit {
                    account_id,
                    unit,
                    amount,
                    kind: EntryKind::Reward,
                    description: description.clone(),
                    event_id: Some(event.id),
                    referral_id: Some(referral_id),
                    rule_id: Some(rule.id),
                    occurrence: Some(1),
                };
                match ledger::post_credit(&txn, credit).await? {
                    Some(entry) => {
                        rewards.push(entry);
                        (Outcome::Rewarded, reason)
                    }
                    None => (Outcome::Skipped, "first purchase already rewarded".to_owned()),
                }
            }
        };
        decisions.push(Decision { rule_id: rule.id, rule_name: rule.name.clone(), outcome, reason });
    }
    if !rewards.is_empty()
        && let Some(referral) = &referral {
            qualify(&txn, referral).await?;
        }
    let mut row = event.into_active_model();
    row.decisions = Set(serde_json::to_string(&decisions).map_err(AppError::internal)?);
    let event = row.update(&txn).await?;
    txn.commit().await?;
    tracing::info!(event_id = %event.event_id, rewards = rewards.len(), "purchase recorded");
    Ok(EventOutcome { event, duplicate: false, rewards, decisions })
}

/// Marks the account's first purchase. A conditional update: of concurrent purchases, exactly
/// one finds `first_purchase_at` empty.
async fn mark_first_purchase(db: &impl ConnectionTrait, account_id: i64, at: DateTime<Utc>) -> AppResult<bool> {
    let result = account::Entity::update_many()
        .col_expr(account::Column::FirstPurchaseAt, sea_orm::sea_query::Expr::value(at))
        .filter(account::Column::Id.eq(account_id))
        .filter(account::Column::FirstPurchaseAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

async fn qualify(db: &impl ConnectionTrait, referral: &referral::Model) -> AppResult<()> {
    referral::Entity::update_many()
        .col_expr(referral::Column::Status, sea_orm::sea_query::Expr::value(ReferralStatus::Qualified))
        .col_expr(referral::Column::QualifiedAt, sea_orm::sea_query::Expr::value(Utc::now()))
        .filter(referral::Column::Id.eq(referral.id))
        .filter(referral::Column::Status.eq(ReferralStatus::Pending))
        .exec(db)
        .await?;
    Ok(())
}

async fn find_event(db: &impl ConnectionTrait, event_id: &str) -> AppResult<Option<event::Model>> {
    Ok(event::Entity::find().filter(event::Column::EventId.eq(event_id)).one(db).await?)
}

/// The same eventId again: the first answer if the input is the same, a conflict if not.
async fn replay(db: &impl ConnectionTrait, event: event::Model, hash: &str) -> AppResult<EventOutcome> {
    if event.request_hash != hash {
        return Err(AppError::IdempotencyConflict(format!(
            "eventId {:?} was already recorded with different input",
            event.event_id
        )));
    }
    let rewards = ledger::entries_of_event(db, event.id).await?;
    let decisions = serde_json::from_str(&event.decisions).map_err(AppError::internal)?;
    Ok(EventOutcome { event, duplicate: true, rewards, decisions })
}

fn display_name(account: &account::Model) -> String {
    account.display_name.as_deref().map(mask_name).unwrap_or_else(|| "a friend".to_owned())
}
