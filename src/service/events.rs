//! Facts reported by the billing system. Each event is recorded once per `eventId` (a unique
//! index), evaluated against every enabled reward rule inside the same transaction, and
//! answered again, unchanged, when the same eventId is delivered again.

use crate::amount::Amount;
use crate::db::{begin_write, inserted};
use crate::error::{AppError, AppResult};
use crate::service::accounts::{self, mask_name};
use crate::service::ledger::{self, NewCredit};
use crate::service::rules::{self, Decision, EventFacts, Facts, Outcome, ReferralFacts, Verdict};
use crate::service::{catalog, key_text, request_hash, required_text, settings};
use chrono::{DateTime, Utc};
use entity::enums::{Beneficiary, EntryKind, EventKind, ReferralStatus, RuleTrigger};
use entity::{account, event, ledger_entry, product, referral};
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

pub async fn record(db: &DatabaseConnection, input: EventInput) -> AppResult<EventOutcome> {
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
    let hash = request_hash(&canonical);
    // A replay is answered without taking the write lock.
    if let Some(existing) = find_event(db, &event_id).await? {
        return replay(db, existing, &hash).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::get_by_external_id(&txn, &external_id).await?;
    let product = match &fact {
        Fact::Purchase { product_key, .. } => Some(catalog::get_product(&txn, product_key).await?),
        _ => None,
    };
    let occurred_at = input.occurred_at.unwrap_or_else(Utc::now);
    let insert = event::Entity::insert(event::ActiveModel {
        event_id: Set(event_id.clone()),
        kind: Set(kind),
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
    let Some(event) = inserted(insert)? else {
        // Delivered concurrently and recorded by the other request: answer as a replay.
        txn.rollback().await?;
        let existing = find_event(db, &event_id)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("event {event_id} conflicted but was not found")))?;
        return replay(db, existing, &hash).await;
    };

    let event_facts = match (&fact, &product) {
        (Fact::Purchase { quantity_gb, .. }, Some(product)) => EventFacts::Purchase {
            first: mark_first_purchase(&txn, account.id, occurred_at).await?,
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
    let (rewards, decisions) = apply_rules(&txn, &account, Some(event.id), &event_facts, product.as_ref()).await?;

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

/// Evaluates every enabled rule against what an event established and pays what they decide,
/// in the caller's transaction. A reward paid for a referral (sign-up bonuses aside) qualifies
/// it. Also used at registration, for SIGNUP rules.
pub async fn apply_rules(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    event_id: Option<i64>,
    event_facts: &EventFacts<'_>,
    product: Option<&product::Model>,
) -> AppResult<(Vec<ledger_entry::Model>, Vec<Decision>)> {
    let referral = accounts::accepted_referral_of(txn, account.id).await?;
    let referrer = match referral.as_ref().and_then(|r| r.referrer_id) {
        Some(id) => accounts::by_ids(txn, &[id]).await?.remove(&id),
        None => None,
    };
    let program = settings::get(txn).await?;
    let facts = Facts {
        program_enabled: program.enabled,
        referral: referral.as_ref().and_then(|r| {
            r.referrer_id.map(|referrer_id| ReferralFacts {
                referral_id: r.id,
                referrer_id,
                referee_id: r.referee_id,
                // The flags as this transaction reads them: an event that commits while an
                // admin disqualifies one side is ordered before the disqualification (what
                // it posted stays, as posted rewards do).
                referrer_disqualified: referrer.as_ref().is_some_and(|a| a.disqualified_at.is_some()),
                referee_disqualified: account.disqualified_at.is_some(),
            })
        }),
        account_group: account.account_group.as_deref(),
        billing_scheme: account.billing_scheme,
        event: event_facts.clone(),
    };

    let mut rewards = Vec::new();
    let mut decisions = Vec::new();
    let mut qualifies = false;
    for rule in rules::enabled_rules(txn).await? {
        let (outcome, reason) = match rules::evaluate(&rule, &facts) {
            Verdict::Skip { reason } => (Outcome::Skipped, reason),
            Verdict::Pay {
                account_id,
                referral_id,
                unit,
                amount,
                reason,
            } => {
                let credit = NewCredit {
                    account_id,
                    unit,
                    amount,
                    kind: EntryKind::Reward,
                    description: describe(rule.beneficiary, event_facts, account, referrer.as_ref(), product),
                    event_id,
                    referral_id: Some(referral_id),
                    rule_id: Some(rule.id),
                    // Once per referral, or once per event for a recurring rule.
                    occurrence: Some(if rule.recurring { event_id.unwrap_or(0) } else { 1 }),
                    rule_snapshot: Some(rules::json(&rule).to_string()),
                };
                match ledger::post_credit(txn, credit).await? {
                    Some(entry) => {
                        rewards.push(entry);
                        qualifies |= rule.trigger != RuleTrigger::Signup;
                        (Outcome::Rewarded, reason)
                    }
                    None => (Outcome::Skipped, rules::already_paid_reason(&rule)),
                }
            }
        };
        decisions.push(Decision {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            outcome,
            reason,
        });
    }
    if let (true, Some(referral)) = (qualifies, &referral) {
        qualify(txn, referral).await?;
    }
    Ok((rewards, decisions))
}

/// "Referral reward: Jo*** S. verified a payment method", or, for the newcomer,
/// "Referral reward: you verified a payment method (invited by Al*** S.)".
fn describe(
    beneficiary: Beneficiary,
    facts: &EventFacts<'_>,
    referee: &account::Model,
    referrer: Option<&account::Model>,
    product: Option<&product::Model>,
) -> String {
    let action = match facts {
        EventFacts::Signup => "signed up with a referral code".to_owned(),
        EventFacts::PaymentMethodVerified => "verified a payment method".to_owned(),
        EventFacts::TopUp { total, .. } => format!("topped up to a total of {total}"),
        EventFacts::Purchase { quantity_gb, .. } => match product {
            Some(product) => format!("made a first purchase ({quantity_gb} GB of {})", product.name),
            None => "made a first purchase".to_owned(),
        },
    };
    match beneficiary {
        Beneficiary::Referrer => format!("Referral reward: {} {action}", display_name(referee)),
        Beneficiary::Referee => {
            let inviter = referrer.map(display_name).unwrap_or_else(|| "a friend".to_owned());
            format!("Referral reward: you {action} (invited by {inviter})")
        }
    }
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

async fn qualify(db: &impl ConnectionTrait, referral: &referral::Model) -> AppResult<()> {
    referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(ReferralStatus::Qualified))
        .col_expr(referral::Column::QualifiedAt, Expr::value(Utc::now()))
        .filter(referral::Column::Id.eq(referral.id))
        .filter(referral::Column::Status.eq(ReferralStatus::Pending))
        .exec(db)
        .await?;
    Ok(())
}

async fn find_event(db: &impl ConnectionTrait, event_id: &str) -> AppResult<Option<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::EventId.eq(event_id))
        .one(db)
        .await?)
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
    Ok(EventOutcome {
        event,
        duplicate: true,
        rewards,
        decisions,
    })
}

fn display_name(account: &account::Model) -> String {
    account
        .display_name
        .as_deref()
        .map(mask_name)
        .unwrap_or_else(|| "a friend".to_owned())
}
