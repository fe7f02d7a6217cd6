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
//! Purchases that had to wait for a writer go together (`batches::group_commit`): their facts
//! in one statement, and their calls of the function in one statement and one commit, each
//! call seeing what the calls before it wrote, as if they had come one after the other. Still
//! two round trips per batch, whatever its size.
//!
//! `InSteps` hands the purchase to the flow in steps, which decides from the start: a stored
//! eventId (a replay, answered there), a timed purchase that happened before the account's first
//! (a correction or a late one), a rule with a cap per referral (which reads what the referral
//! paid under the referee's lock), a spend limit or a PURCHASE trigger, or a reward into a
//! balance with something due or owed.

use super::Purchase;
use crate::amount::Amount;
use crate::db::Direct;
use crate::error::{AppError, AppResult};
use crate::service::events::{EventOutcome, Fact, Prepared, closed_skips};
use crate::service::rewards::{self, Parties, Plan};
use crate::service::rules::{self, AffiliateTerms, Decision, PurchaseOrder, Rule};
use crate::service::{accounts, catalog, ledger, settings};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::enums::{PayoutSchedule, RuleTrigger};
use entity::{account, event, ledger_entry, product, referral};
use sea_orm::{
    DbBackend, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryResult, RuntimeErr, Statement,
};
use serde_json::json;
use std::sync::LazyLock;

/// The facts of a batch's purchases, one row each in the batch's order (`n`, from 1): `$1` a
/// JSON list of `{external_id, product_key, event_id}`, `$2` the settings row's id. Absent rows
/// (no such account, product, referral) leave their columns NULL. The rules are the same for
/// every purchase (a subquery that does not depend on the row: read once).
static FACTS: LazyLock<String> = LazyLock::new(|| {
    // Each purchase's rows are looked up by their keys' indexes in a subquery of its own, run
    // once per purchase (`OFFSET 0` keeps the planner from merging it into one join, where it
    // would plan for a hundred purchases and scan whole tables).
    format!(
        "SELECT q.n, f.*, {rules}::text AS rules \
         FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (external_id text, product_key text, event_id text)) \
         WITH ORDINALITY AS q(external_id, product_key, event_id, n) \
         CROSS JOIN LATERAL (SELECT {account}, {referral}, {referrer}, {product}, s.enabled AS program_enabled, \
         s.payout_schedule AS program_payout_schedule, \
         EXISTS (SELECT 1 FROM events e WHERE e.event_id = q.event_id) AS stored \
         FROM program_settings s \
         LEFT JOIN accounts a ON a.external_id = q.external_id \
         LEFT JOIN referrals r ON r.referee_id = a.id AND r.status <> 'REJECTED' \
         LEFT JOIN accounts rr ON rr.id = r.referrer_id \
         LEFT JOIN products p ON p.key = q.product_key \
         WHERE s.id = $2 OFFSET 0) AS f \
         ORDER BY q.n",
        account = columns::<account::Entity>("a", "account_"),
        referral = columns::<referral::Entity>("r", "referral_"),
        referrer = columns::<account::Entity>("rr", "referrer_"),
        product = columns::<product::Entity>("p", "product_"),
        rules = rules::ENABLED_AS_JSON,
    )
});

/// `referral_record_purchase` once per purchase of `$1` (a JSON list of its arguments), in the
/// list's order (a nested loop: each call sees what the calls before it wrote), in the
/// statement's one transaction and one commit. Each call answers one row or one per entry,
/// under its purchase's `n` (from 1).
const RECORD: &str = "SELECT q.n, r.* FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (event_id text, \
     account_id bigint, hash text, payload text, occurred_at timestamptz, timed boolean, amount bigint, \
     now timestamptz, first jsonb, later jsonb)) \
     WITH ORDINALITY AS q(event_id, account_id, hash, payload, occurred_at, timed, amount, now, first, later, n) \
     CROSS JOIN LATERAL referral_record_purchase(q.event_id, q.account_id, q.hash, q.payload, q.occurred_at, \
     q.timed, q.amount, q.now, q.first, q.later) AS r ORDER BY q.n";

/// The SQLSTATE `referral_record_purchase` raises for a purchase it leaves to the flow in steps.
const IN_STEPS: &str = "RS001";

/// Every column of `E` from the table aliased `alias`, each named `prefix` + its name.
fn columns<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    E::Column::iter()
        .map(|column| format!("{alias}.{name} AS {prefix}{name}", name = column.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A purchase waiting for its batch.
pub(in crate::service::events) struct Pending {
    pub prepared: Prepared,
    pub now: DateTime<Utc>,
}

/// What a batch answers for a purchase.
pub(in crate::service::events) enum Planned {
    Recorded(EventOutcome),
    /// Nothing was written for it: the flow in steps records it (or answers its replay).
    InSteps(Prepared),
}

/// A purchase whose plans are made, ready for `referral_record_purchase`.
struct Call {
    pending: Pending,
    arguments: serde_json::Value,
    rules: Vec<Rule>,
    lock_order: LockOrder,
}

/// Where a purchase's call goes in its batch: by the referrer whose balance a reward raises,
/// then the account whose first purchase it may take, then when it happened, then the eventId
/// it inserts. Every lock a call can wait on (the referrer's balance, the account's row, the
/// referral's reward slot, the eventId's unique entry) belongs to its own key, so two batches in
/// flight take their locks in the same order and never wait on each other in a circle; and of
/// one account's purchases the earliest goes first, so that none has to be corrected for
/// another of the same batch. (Purchases of one batch came at once: no order among them was
/// promised.)
type LockOrder = (i64, i64, DateTime<Utc>, String);

/// Records a batch of purchases in two round trips whatever its size: their facts in one
/// statement, then, for those the plans decide, `referral_record_purchase` once each in one
/// statement. Answers each purchase, in order. When the second statement fails as a whole
/// (the function left one of them to the steps, say), nothing of it was written, and each
/// purchase is recorded alone, so that one purchase's failure is its own.
pub(in crate::service::events) async fn record_together(
    db: Direct<'_>,
    batch: Vec<Pending>,
) -> Vec<AppResult<Planned>> {
    let facts = match read_facts(db, &batch).await {
        Ok(facts) => facts,
        Err(err) => {
            let err = format!("{err:?}");
            return batch
                .iter()
                .map(|_| Err(AppError::internal(anyhow::anyhow!("reading a purchase's facts: {err}"))))
                .collect();
        }
    };
    let mut answers: Vec<Option<AppResult<Planned>>> = Vec::with_capacity(batch.len());
    let mut calls = Vec::new();
    for (pending, row) in batch.into_iter().zip(facts) {
        match row.ok_or_else(|| AppError::internal(anyhow::anyhow!("the program's settings row is missing"))) {
            Ok(row) => match plan(pending, &row) {
                Ok(Planning::Call(call)) => {
                    answers.push(None);
                    calls.push((answers.len() - 1, call));
                }
                Ok(Planning::InSteps(prepared)) => answers.push(Some(Ok(Planned::InSteps(prepared)))),
                Err(err) => answers.push(Some(Err(err))),
            },
            Err(err) => answers.push(Some(Err(err))),
        }
    }
    for (index, answer) in record_calls(db, calls).await {
        answers[index] = Some(answer);
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                Err(AppError::internal(anyhow::anyhow!(
                    "a purchase of the batch was not answered"
                )))
            })
        })
        .collect()
}

/// The facts row of each purchase of `batch`, in order (`None` when the settings row is
/// missing).
async fn read_facts(db: Direct<'_>, batch: &[Pending]) -> AppResult<Vec<Option<QueryResult>>> {
    let list: Vec<serde_json::Value> = batch
        .iter()
        .map(|pending| {
            json!({
                "external_id": pending.prepared.external_id,
                "product_key": purchase_of(&pending.prepared).map(|purchase| purchase.product_key.as_str()),
                "event_id": pending.prepared.event_id,
            })
        })
        .collect();
    let rows = db
        .all(Statement::from_sql_and_values(
            DbBackend::Postgres,
            FACTS.as_str(),
            [serde_json::Value::Array(list).into(), settings::SETTINGS_ID.into()],
        ))
        .await?;
    let mut facts: Vec<Option<QueryResult>> = (0..batch.len()).map(|_| None).collect();
    for row in rows {
        let n = usize::try_from(row.try_get::<i64>("", "n")?).map_err(AppError::internal)?;
        // The first row of each purchase: an account has at most one accepted referral.
        if let Some(slot) = n.checked_sub(1).and_then(|index| facts.get_mut(index))
            && slot.is_none()
        {
            *slot = Some(row);
        }
    }
    Ok(facts)
}

fn purchase_of(prepared: &Prepared) -> Option<&Purchase> {
    match &prepared.fact {
        Fact::Purchase(purchase) => Some(purchase),
        _ => None,
    }
}

/// What its facts decide for a purchase: a call of the function, or the steps.
enum Planning {
    Call(Call),
    InSteps(Prepared),
}

/// Decides from its facts what a purchase pays if it is the account's first and what its
/// rules say if it is not; or that the steps must record it.
fn plan(pending: Pending, facts: &QueryResult) -> AppResult<Planning> {
    let (prepared, now) = (&pending.prepared, pending.now);
    let Some(purchase) = purchase_of(prepared) else {
        return Ok(Planning::InSteps(pending.prepared));
    };
    if facts.try_get::<bool>("", "stored")? {
        return Ok(Planning::InSteps(pending.prepared));
    }
    let account = optional::<account::Model>(facts, "account_")?
        .ok_or_else(|| accounts::no_such_external_id(&prepared.external_id))?;
    let product = optional::<product::Model>(facts, "product_")?
        .ok_or_else(|| catalog::no_such_product(&purchase.product_key))?;
    let occurred_at = prepared.occurred_at.unwrap_or(now);
    if prepared.occurred_at.is_some() && account.first_purchase_at.is_some_and(|first_at| occurred_at < first_at) {
        return Ok(Planning::InSteps(pending.prepared));
    }
    let referral = optional::<referral::Model>(facts, "referral_")?;
    let referrer = optional::<account::Model>(facts, "referrer_")?;
    let rules = rules::enabled_from_json(&facts.try_get::<String>("", "rules")?)?;
    if rules.iter().any(|rule| {
        rule.payout.cap_per_referral.is_some()
            || rule.payout.spend_limit.is_some()
            || rule.trigger == RuleTrigger::Purchase
    }) {
        // A cap measures against what the referral paid so far, read under the referee's
        // lock, a restricted lot records where it may be spent, and a PURCHASE rule pays on
        // later purchases too, once per event: the steps do all three.
        return Ok(Planning::InSteps(pending.prepared));
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
    let arguments = json!({
        "event_id": prepared.event_id,
        "account_id": account.id,
        "hash": prepared.hash,
        "payload": prepared.payload,
        "occurred_at": timestamp(occurred_at),
        "timed": prepared.occurred_at.is_some(),
        "amount": purchase.amount.map(Amount::micros),
        "now": timestamp(now),
        // No first plan when the account made its first purchase before this one happened.
        "first": match account.first_purchase_at {
            None => Some(planned(PurchaseOrder::First)?),
            Some(_) => None,
        },
        "later": planned(PurchaseOrder::Later)?,
    });
    let lock_order = (
        referrer.as_ref().map_or(0, |referrer| referrer.id),
        account.id,
        occurred_at,
        prepared.event_id.clone(),
    );
    Ok(Planning::Call(Call {
        pending,
        arguments,
        rules,
        lock_order,
    }))
}

/// Records `calls` (each with its index in the batch) in one statement, or each alone when
/// that statement fails as a whole; answers each with its index.
async fn record_calls(db: Direct<'_>, mut calls: Vec<(usize, Call)>) -> Vec<(usize, AppResult<Planned>)> {
    if calls.len() > 1 {
        calls.sort_by(|(_, a), (_, b)| a.lock_order.cmp(&b.lock_order));
        let all: Vec<&Call> = calls.iter().map(|(_, call)| call).collect();
        match call_together(db, &all).await {
            Ok(rows) => {
                return calls
                    .into_iter()
                    .zip(rows)
                    .map(|((index, call), rows)| (index, answer(call, &rows)))
                    .collect();
            }
            Err(err) => tracing::warn!(
                error = ?err,
                purchases = calls.len(),
                "a batch of purchases failed as a whole: each is recorded alone"
            ),
        }
    }
    let mut answers = Vec::with_capacity(calls.len());
    for (index, call) in calls {
        answers.push((index, record_alone(db, call).await));
    }
    answers
}

async fn record_alone(db: Direct<'_>, call: Call) -> AppResult<Planned> {
    match call_together(db, &[&call]).await {
        Ok(mut rows) => answer(call, &rows.pop().unwrap_or_default()),
        Err(err) if raised_in_steps(&err) => {
            tracing::debug!(event_id = %call.pending.prepared.event_id, reason = %err, "purchase recorded in steps");
            Ok(Planned::InSteps(call.pending.prepared))
        }
        Err(err) => Err(err.into()),
    }
}

/// `referral_record_purchase` for each of `calls` in one statement: the rows of each, in order.
async fn call_together(db: Direct<'_>, calls: &[&Call]) -> Result<Vec<Vec<QueryResult>>, DbErr> {
    let list = calls.iter().map(|call| call.arguments.clone()).collect();
    let rows = db
        .all(Statement::from_sql_and_values(
            DbBackend::Postgres,
            RECORD,
            [serde_json::Value::Array(list).into()],
        ))
        .await?;
    let mut grouped: Vec<Vec<QueryResult>> = (0..calls.len()).map(|_| Vec::new()).collect();
    for row in rows {
        let n = row.try_get::<i64>("", "n")?;
        let group = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|index| grouped.get_mut(index))
            .ok_or_else(|| {
                DbErr::Custom(format!(
                    "referral_record_purchase answered for purchase {n} of {}",
                    calls.len()
                ))
            })?;
        group.push(row);
    }
    Ok(grouped)
}

/// The answer of one purchase from the rows `referral_record_purchase` returned for it.
fn answer(call: Call, rows: &[QueryResult]) -> AppResult<Planned> {
    let first = rows
        .first()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("referral_record_purchase returned no row")))?;
    match first.try_get::<String>("", "outcome")?.as_str() {
        "RECORDED" => {}
        "STORED" => return Ok(Planned::InSteps(call.pending.prepared)),
        other => {
            return Err(AppError::internal(anyhow::anyhow!(
                "referral_record_purchase answered an unknown outcome {other:?}"
            )));
        }
    }
    let event = event::Model::from_query_result(first, "event_")?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(entry) = optional::<ledger_entry::Model>(row, "entry_")? {
            entries.push(entry);
        }
    }
    entries.sort_by_key(|entry| entry.id);
    let decisions: Vec<Decision> = serde_json::from_str(&event.decisions).map_err(AppError::internal)?;
    tracing::info!(event_id = %event.event_id, kind = ?event.kind, entries = entries.len(), "event recorded");
    Ok(Planned::Recorded(EventOutcome {
        event,
        duplicate: false,
        rewards: entries,
        decisions,
        rules: call.rules,
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
