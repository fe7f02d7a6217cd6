//! Reward rules: admin-managed records, evaluated on every recorded event inside the event's
//! transaction. `spec` is the typed rule and its parsing, `evaluate` the pure decision; this
//! file stores and reads rules, with an audit entry for every change.

mod evaluate;
mod spec;
mod terms;

pub use evaluate::{
    Decision, EventFacts, Facts, InvoiceLine, Outcome, PaidForReferral, PaidInvoice, PurchaseOrder, ReferralFacts,
    Verdict, already_paid_reason, evaluate, summary,
};
pub use spec::{
    Calculation, Condition, MAX_CONDITION_VALUES, MAX_DAYS, MAX_INVOICES, Payout, PlanPriceBase, Rule, RuleInput, Tier,
    TierInput,
};
pub use terms::AffiliateTerms;

use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::audit;
use chrono::{DateTime, Utc};
use entity::enums::{Beneficiary, RuleTrigger, Unit};
use entity::{program_settings, reward_rule};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;

/// More rules than this is a mistake: every event evaluates all of them.
pub const MAX_RULES: u64 = 200;

/// A rule an admin has written but not saved (for the simulator): parsed and checked as
/// `create` would, never stored.
pub fn draft(input: RuleInput) -> AppResult<Rule> {
    spec::parse(input)
}

pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<Rule>> {
    let rows = reward_rule::Entity::find()
        .order_by_asc(reward_rule::Column::Id)
        .all(db)
        .await?;
    rows.into_iter().map(from_row).collect()
}

pub async fn enabled_rules(db: &impl ConnectionTrait) -> AppResult<Vec<Rule>> {
    let rows = reward_rule::Entity::find()
        .filter(reward_rule::Column::Enabled.eq(true))
        .order_by_asc(reward_rule::Column::Id)
        .all(db)
        .await?;
    rows.into_iter().map(from_row).collect()
}

/// The enabled rules as one JSON value, for a statement that reads them beside other facts
/// (PostgreSQL): read back with [`enabled_from_json`].
pub const ENABLED_AS_JSON: &str = "(SELECT COALESCE(json_agg(json_build_object('id', r.id, 'name', r.name, \
     'trigger', r.trigger, 'beneficiary', r.beneficiary, 'unit', r.unit, 'spec', r.spec) ORDER BY r.id), '[]') \
     FROM reward_rules r WHERE r.enabled)";

/// The rules [`ENABLED_AS_JSON`] read.
pub fn enabled_from_json(json: &str) -> AppResult<Vec<Rule>> {
    #[derive(serde::Deserialize)]
    struct Row {
        id: i64,
        name: String,
        trigger: RuleTrigger,
        beneficiary: Beneficiary,
        unit: Unit,
        spec: String,
    }
    let rows: Vec<Row> = serde_json::from_str(json)
        .map_err(|e| AppError::internal(anyhow::anyhow!("enabled reward rules as JSON: {e}")))?;
    rows.into_iter()
        .map(|row| {
            from_parts(
                row.id,
                row.name,
                true,
                (row.trigger, row.beneficiary, row.unit),
                &row.spec,
            )
        })
        .collect()
}

pub async fn by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashMap<i64, Rule>> {
    let rows = reward_rule::Entity::find()
        .filter(reward_rule::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| from_row(row).map(|rule| (rule.id, rule)))
        .collect()
}

/// A stored row as a typed rule. A spec this server cannot read was not written by it: that
/// is an internal error, not a rule to skip quietly.
fn from_row(row: reward_rule::Model) -> AppResult<Rule> {
    from_parts(
        row.id,
        row.name,
        row.enabled,
        (row.trigger, row.beneficiary, row.unit),
        &row.spec,
    )
}

fn from_parts(
    id: i64,
    name: String,
    enabled: bool,
    (trigger, beneficiary, unit): (RuleTrigger, Beneficiary, Unit),
    spec: &str,
) -> AppResult<Rule> {
    let (conditions, calculation, payout) = spec::read_spec(spec)
        .map_err(|e| AppError::internal(anyhow::anyhow!("reward rule {id}: unreadable spec: {e}")))?;
    Ok(Rule {
        id,
        name,
        enabled,
        trigger,
        beneficiary,
        unit,
        conditions,
        calculation,
        payout,
    })
}

fn assign(row: &mut reward_rule::ActiveModel, rule: &Rule, now: DateTime<Utc>) {
    row.name = Set(rule.name.clone());
    row.enabled = Set(rule.enabled);
    row.trigger = Set(rule.trigger);
    row.beneficiary = Set(rule.beneficiary);
    row.unit = Set(rule.unit);
    row.spec = Set(rule.spec_json());
    row.updated_at = Set(now);
}

pub async fn create(db: &DatabaseConnection, actor: &str, input: RuleInput, now: DateTime<Utc>) -> AppResult<Rule> {
    let rule = spec::parse(input)?;
    let txn = begin_write(db).await?;
    let created = insert(&txn, actor, rule, now).await?;
    txn.commit().await?;
    Ok(created)
}

/// Writes a draft rule in the caller's transaction, which the simulator always rolls back,
/// and returns it with the id it got there (its ledger entries name it). No audit and no
/// limit: it is never kept.
pub async fn stage(db: &impl ConnectionTrait, mut rule: Rule, now: DateTime<Utc>) -> AppResult<Rule> {
    let mut row = reward_rule::ActiveModel {
        created_at: Set(now),
        ..Default::default()
    };
    assign(&mut row, &rule, now);
    rule.id = row.insert(db).await?.id;
    Ok(rule)
}

async fn insert(db: &impl ConnectionTrait, actor: &str, mut rule: Rule, now: DateTime<Utc>) -> AppResult<Rule> {
    if reward_rule::Entity::find().count(db).await? >= MAX_RULES {
        return Err(AppError::bad_input(format!(
            "a program may have at most {MAX_RULES} rules"
        )));
    }
    let mut row = reward_rule::ActiveModel {
        created_at: Set(now),
        ..Default::default()
    };
    assign(&mut row, &rule, now);
    rule.id = row.insert(db).await?.id;
    audit::record(
        db,
        actor,
        "CREATE_REWARD_RULE",
        &format!("rule:{}", rule.id),
        serde_json::Value::Null,
        rule.snapshot(),
        now,
    )
    .await?;
    Ok(rule)
}

/// Replaces a rule's definition. What it already paid stays as it was: each ledger entry keeps
/// its amount and the rule as it was then.
pub async fn update(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    input: RuleInput,
    now: DateTime<Utc>,
) -> AppResult<Rule> {
    let txn = begin_write(db).await?;
    let row = reward_rule::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such reward rule"))?;
    let before = from_row(row.clone())?;
    let mut input = input;
    spec::keep_unsent(&mut input, &before);
    let rule = Rule {
        id,
        ..spec::parse(input)?
    };
    let mut row = row.into_active_model();
    assign(&mut row, &rule, now);
    row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "UPDATE_REWARD_RULE",
        &format!("rule:{id}"),
        before.snapshot(),
        rule.snapshot(),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(rule)
}

/// Whether storing `input` over `rule` would change it.
pub fn would_change(rule: &Rule, input: RuleInput) -> AppResult<bool> {
    Ok(!spec::parse(input)?.same_definition(rule))
}

/// Stores `inputs` when there is no rule at all, as one change; returns whether it did. A
/// table with no rule is one that was never given any (rules are never deleted), so this
/// seeds a new installation once. Instances starting together on a new database queue on the
/// settings row, and the ones after the first find the rules there.
pub async fn seed(db: &DatabaseConnection, actor: &str, inputs: Vec<RuleInput>, now: DateTime<Utc>) -> AppResult<bool> {
    let rules = inputs.into_iter().map(spec::parse).collect::<AppResult<Vec<_>>>()?;
    let txn = begin_write(db).await?;
    program_settings::Entity::find_by_id(1)
        .lock_exclusive()
        .one(&txn)
        .await?;
    if reward_rule::Entity::find().count(&txn).await? > 0 {
        return Ok(false);
    }
    for rule in rules {
        insert(&txn, actor, rule, now).await?;
    }
    txn.commit().await?;
    Ok(true)
}
