//! RecordPurchase on PostgreSQL in two round trips: one statement reads the purchase's facts
//! (the account, its accepted referral and referrer, the product, the program's switch, the
//! enabled rules, and whether the eventId is stored), the rules decide in Rust what they pay if
//! this purchase is the account's first and what they say if it is not, and one call of
//! `referral_record_purchase` (migration/src/sql/record_purchase.sql) writes the plan that
//! holds. The answers are the flow in steps' answers: the same decisions, entries and errors.
//!
//! The facts are read outside a transaction, as the flow in steps reads them inside its own at
//! READ COMMITTED without locking them: either way they may change before the writes commit,
//! and the writes are guarded the same way (one event per eventId, one first purchase by a
//! conditional update, one reward per slot by the unique index).
//!
//! `None` hands the purchase to the flow in steps, which decides from the start: a stored
//! eventId (a replay, answered there), a timed purchase that happened before the account's first
//! (a correction or a late one), a rule with a cap per referral (which reads what the referral
//! paid under the referee's lock), a spend limit or a PURCHASE trigger, or a reward into a
//! balance with something due or owed.

use super::Purchase;
use crate::amount::Amount;
use crate::db::Direct;
use crate::error::{AppError, AppResult};
use crate::service::events::{EventOutcome, Prepared, closed_skips};
use crate::service::rewards::{self, Parties, Plan};
use crate::service::rules::{self, AffiliateTerms, Decision, PurchaseOrder};
use crate::service::{accounts, catalog, ledger, settings};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::enums::{PayoutSchedule, RuleTrigger};
use entity::{account, event, ledger_entry, product, referral};
use sea_orm::{
    DbBackend, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryResult, RuntimeErr, Statement,
};
use serde_json::json;
use std::sync::LazyLock;

/// The facts of a purchase in one row: `$1` the external id, `$2` the product key, `$3` the
/// eventId, `$4` the settings row's id. Absent rows (no such account, product, referral) leave
/// their columns NULL.
static FACTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {account}, {referral}, {referrer}, {product}, s.enabled AS program_enabled, s.payout_schedule AS program_payout_schedule, \
         EXISTS (SELECT 1 FROM events e WHERE e.event_id = $3) AS stored, {rules}::text AS rules \
         FROM program_settings s \
         LEFT JOIN accounts a ON a.external_id = $1 \
         LEFT JOIN referrals r ON r.referee_id = a.id AND r.status <> 'REJECTED' \
         LEFT JOIN accounts rr ON rr.id = r.referrer_id \
         LEFT JOIN products p ON p.key = $2 \
         WHERE s.id = $4",
        account = columns::<account::Entity>("a", "account_"),
        referral = columns::<referral::Entity>("r", "referral_"),
        referrer = columns::<account::Entity>("rr", "referrer_"),
        product = columns::<product::Entity>("p", "product_"),
        rules = rules::ENABLED_AS_JSON,
    )
});

const RECORD: &str = "SELECT * FROM referral_record_purchase($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// The SQLSTATE `referral_record_purchase` raises for a purchase it leaves to the flow in steps.
const IN_STEPS: &str = "RS001";

/// Every column of `E` from the table aliased `alias`, each named `prefix` + its name.
fn columns<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    E::Column::iter()
        .map(|column| format!("{alias}.{name} AS {prefix}{name}", name = column.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(in crate::service::events) async fn record(
    db: Direct<'_>,
    prepared: &Prepared,
    purchase: &Purchase,
    now: DateTime<Utc>,
) -> AppResult<Option<EventOutcome>> {
    let facts = db
        .one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            FACTS.as_str(),
            [
                prepared.external_id.as_str().into(),
                purchase.product_key.as_str().into(),
                prepared.event_id.as_str().into(),
                settings::SETTINGS_ID.into(),
            ],
        ))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the program's settings row is missing")))?;
    if facts.try_get::<bool>("", "stored")? {
        return Ok(None);
    }
    let account = optional::<account::Model>(&facts, "account_")?
        .ok_or_else(|| accounts::no_such_external_id(&prepared.external_id))?;
    let product = optional::<product::Model>(&facts, "product_")?
        .ok_or_else(|| catalog::no_such_product(&purchase.product_key))?;
    let occurred_at = prepared.occurred_at.unwrap_or(now);
    if prepared.occurred_at.is_some() && account.first_purchase_at.is_some_and(|first_at| occurred_at < first_at) {
        return Ok(None);
    }
    let referral = optional::<referral::Model>(&facts, "referral_")?;
    let referrer = optional::<account::Model>(&facts, "referrer_")?;
    let rules = rules::enabled_from_json(&facts.try_get::<String>("", "rules")?)?;
    if rules.iter().any(|rule| {
        rule.payout.cap_per_referral.is_some()
            || rule.payout.spend_limit.is_some()
            || rule.trigger == RuleTrigger::Purchase
    }) {
        // A cap measures against what the referral paid so far, read under the referee's
        // lock, a restricted lot records where it may be spent, and a PURCHASE rule pays on
        // later purchases too, once per event: the steps do all three.
        return Ok(None);
    }
    let parties = Parties {
        program_enabled: facts.try_get("", "program_enabled")?,
        payout_schedule: facts.try_get::<PayoutSchedule>("", "program_payout_schedule")?,
        account: &account,
        referral: referral.as_ref(),
        referrer: referrer.as_ref(),
        referrer_terms: referrer.as_ref().map(AffiliateTerms::of).transpose()?.flatten(),
        paid: Default::default(),
    };
    let planned = |order| -> AppResult<serde_json::Value> {
        let plan = match closed_skips(&account, occurred_at, &rules) {
            Some(decisions) => Plan {
                decisions,
                credits: Vec::new(),
            },
            None => rewards::plan(
                &parties,
                None,
                &purchase.facts(order, &product),
                Some(&product),
                &rules,
                occurred_at,
                now,
            ),
        };
        plan_json(&plan, now)
    };

    let call = Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECORD,
        [
            prepared.event_id.as_str().into(),
            account.id.into(),
            prepared.hash.as_str().into(),
            prepared.payload.as_str().into(),
            occurred_at.into(),
            prepared.occurred_at.is_some().into(),
            purchase.amount.map(Amount::micros).into(),
            now.into(),
            // No first plan when the account made its first purchase before this one happened.
            match account.first_purchase_at {
                None => Some(planned(PurchaseOrder::First)?),
                Some(_) => None,
            }
            .into(),
            planned(PurchaseOrder::Later)?.into(),
        ],
    );
    let rows = match db.all(call).await {
        Ok(rows) => rows,
        Err(err) if raised_in_steps(&err) => {
            tracing::debug!(event_id = %prepared.event_id, reason = %err, "purchase recorded in steps");
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    let first = rows
        .first()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("referral_record_purchase returned no row")))?;
    match first.try_get::<String>("", "outcome")?.as_str() {
        "RECORDED" => {}
        "STORED" => return Ok(None),
        other => {
            return Err(AppError::internal(anyhow::anyhow!(
                "referral_record_purchase answered an unknown outcome {other:?}"
            )));
        }
    }
    let event = event::Model::from_query_result(first, "event_")?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(entry) = optional::<ledger_entry::Model>(row, "entry_")? {
            entries.push(entry);
        }
    }
    entries.sort_by_key(|entry| entry.id);
    let decisions: Vec<Decision> = serde_json::from_str(&event.decisions).map_err(AppError::internal)?;
    tracing::info!(event_id = %event.event_id, kind = ?event.kind, entries = entries.len(), "event recorded");
    Ok(Some(EventOutcome {
        event,
        duplicate: false,
        rewards: entries,
        decisions,
        rules,
    }))
}

/// A row of `M` under `prefix`, or `None` when its id is NULL (an outer join found nothing).
fn optional<M: FromQueryResult>(row: &QueryResult, prefix: &str) -> AppResult<Option<M>> {
    if row.try_get::<Option<i64>>(prefix, "id")?.is_none() {
        return Ok(None);
    }
    Ok(Some(M::from_query_result(row, prefix)?))
}

/// A plan as `referral_record_purchase` reads it.
fn plan_json(plan: &Plan, now: DateTime<Utc>) -> AppResult<serde_json::Value> {
    let credits = plan
        .credits
        .iter()
        .map(|planned| {
            let credit = &planned.credit;
            let held_until = ledger::checked_hold(credit, now)?;
            Ok(json!({
                "decision": planned.decision,
                "already_paid": planned.already_paid,
                "qualifies": planned.qualifies,
                "recurring": planned.recurring,
                "account_id": credit.account_id,
                "unit": credit.unit,
                "amount": credit.amount.micros(),
                "description": ledger::fit_description(credit.description.clone()),
                "referral_id": credit.referral_id,
                "rule_id": credit.rule_id,
                "rule_snapshot": credit.rule_snapshot,
                "available_at": held_until.map(timestamp),
                "expires_at": credit.expires_at.map(timestamp),
            }))
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(json!({ "decisions": plan.decisions, "credits": credits }))
}

/// A time as PostgreSQL stores it: to the microsecond, cut rather than rounded, as the driver
/// binds times.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn raised_in_steps(err: &DbErr) -> bool {
    let (DbErr::Query(RuntimeErr::SqlxError(err)) | DbErr::Exec(RuntimeErr::SqlxError(err))) = err else {
        return false;
    };
    err.as_database_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == IN_STEPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_name_every_column_once_under_its_prefix() {
        assert!(FACTS.contains("a.external_id AS account_external_id"));
        assert!(FACTS.contains("rr.disqualified_at AS referrer_disqualified_at"));
        assert!(FACTS.contains("p.product_rate AS product_product_rate"));
        assert!(FACTS.contains("r.referrer_id AS referral_referrer_id"));
    }

    #[test]
    fn times_are_cut_to_the_microsecond() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T05:10:33.123456789Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(at.map(timestamp).as_deref(), Some("2026-12-05T05:10:33.123456Z"));
    }
}
