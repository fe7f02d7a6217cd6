//! Reward rules: admin-managed records, evaluated on every recorded event inside the event's
//! transaction. Evaluation is pure: it takes what the event established and answers, per rule,
//! what to pay or why nothing is paid. Paying, and refusing to pay twice, is the ledger's job.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::ledger::unit_word;
use crate::service::{audit, key_text, required_text};
use entity::enums::{Beneficiary, BillingScheme, Calculation, RuleTrigger, Unit};
use entity::reward_rule;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, Set, TryIntoModel,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// More rules than this is a mistake: every event evaluates all of them.
pub const MAX_RULES: u64 = 200;
/// Categories or groups one rule may name.
pub const MAX_CONDITION_VALUES: usize = 50;

pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<reward_rule::Model>> {
    Ok(reward_rule::Entity::find()
        .order_by_asc(reward_rule::Column::Id)
        .all(db)
        .await?)
}

pub async fn enabled_rules(db: &impl ConnectionTrait) -> AppResult<Vec<reward_rule::Model>> {
    Ok(reward_rule::Entity::find()
        .filter(reward_rule::Column::Enabled.eq(true))
        .order_by_asc(reward_rule::Column::Id)
        .all(db)
        .await?)
}

pub async fn by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashMap<i64, reward_rule::Model>> {
    let rows = reward_rule::Entity::find()
        .filter(reward_rule::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r)).collect())
}

/// A rule as the engine evaluates it.
pub type Rule = reward_rule::Model;

/// A rule an admin has written but not saved (for the simulator): validated as `create` would,
/// never stored.
pub fn draft(input: RuleInput, now: chrono::DateTime<chrono::Utc>) -> AppResult<Rule> {
    let mut row = reward_rule::ActiveModel {
        id: Set(0),
        created_at: Set(now),
        ..Default::default()
    };
    assign(&mut row, validate(input)?, now);
    row.try_into_model().map_err(AppError::internal)
}

/// A rule as an admin writes it. The options after `account_groups` are part of the API but
/// not built yet: setting one is refused rather than stored and ignored.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub name: String,
    pub enabled: Option<bool>,
    pub trigger: Option<RuleTrigger>,
    pub beneficiary: Option<Beneficiary>,
    pub unit: Option<Unit>,
    pub calculation: Option<Calculation>,
    pub value: Option<Amount>,
    pub threshold: Option<Amount>,
    pub recurring: Option<bool>,
    pub product_categories: Option<Vec<String>>,
    pub account_groups: Option<Vec<String>>,
    pub invoice_number: Option<i32>,
    pub window_days: Option<i32>,
    pub max_occurrences: Option<i32>,
    pub cap_per_referral: Option<Amount>,
    pub hold_days: Option<i32>,
    pub expires_after_days: Option<i32>,
    pub redeemable_categories: Option<Vec<String>>,
    pub min_active_referrals: Option<i32>,
    pub affiliates_only: Option<bool>,
}

/// A validated rule, ready to store.
struct ValidRule {
    name: String,
    enabled: bool,
    trigger: RuleTrigger,
    beneficiary: Beneficiary,
    unit: Unit,
    calculation: Calculation,
    value: Option<i64>,
    threshold: Option<i64>,
    recurring: bool,
    product_categories: Option<String>,
    account_groups: Option<String>,
}

fn validate(input: RuleInput) -> AppResult<ValidRule> {
    // Options this server does not run yet are refused when set, never stored and ignored. A
    // form sends back what it read, so the neutral value of each (null, an empty list, no
    // hold, no minimum, false) is taken as "not set".
    let not_built = [
        ("invoiceNumber", input.invoice_number.is_some()),
        ("windowDays", input.window_days.is_some()),
        ("maxOccurrences", input.max_occurrences.is_some()),
        ("capPerReferral", input.cap_per_referral.is_some()),
        ("holdDays", input.hold_days.is_some_and(|days| days != 0)),
        ("expiresAfterDays", input.expires_after_days.is_some()),
        (
            "redeemableCategories",
            input.redeemable_categories.as_ref().is_some_and(|c| !c.is_empty()),
        ),
        ("minActiveReferrals", input.min_active_referrals.is_some_and(|n| n != 0)),
        ("affiliatesOnly", input.affiliates_only == Some(true)),
    ];
    if let Some((field, _)) = not_built.iter().find(|(_, set)| *set) {
        return Err(AppError::bad_input(format!(
            "{field} is not supported by this server yet"
        )));
    }
    let missing = |field: &str| AppError::bad_input(format!("{field} is required"));
    let name = required_text("name", &input.name, 200)?;
    let trigger = input.trigger.ok_or_else(|| missing("trigger"))?;
    let beneficiary = input.beneficiary.ok_or_else(|| missing("beneficiary"))?;
    let unit = input.unit.ok_or_else(|| missing("unit"))?;
    let calculation = input.calculation.ok_or_else(|| missing("calculation"))?;
    if unit == Unit::Cash {
        return Err(AppError::bad_input(
            "rules pay POINTS or CREDIT; CASH commission is not supported yet",
        ));
    }
    let value = match (calculation, input.value) {
        (Calculation::Fixed, Some(value)) if value.is_positive() => Some(value.micros()),
        (Calculation::Fixed, _) => return Err(AppError::bad_input("a FIXED rule needs a value greater than 0")),
        (Calculation::ProductRate, Some(_)) => {
            return Err(AppError::bad_input(
                "a PRODUCT_RATE rule takes its rate from the product, not from value",
            ));
        }
        (Calculation::ProductRate, None) => None,
    };
    if calculation == Calculation::ProductRate && trigger != RuleTrigger::FirstPurchase {
        return Err(AppError::bad_input("PRODUCT_RATE applies to FIRST_PURCHASE rules only"));
    }
    let threshold = match (trigger, input.threshold) {
        (RuleTrigger::TopUpTotalReached, Some(t)) if t.micros() >= 0 => Some(t.micros()),
        (RuleTrigger::TopUpTotalReached, Some(_)) => return Err(AppError::bad_input("threshold must not be negative")),
        (RuleTrigger::TopUpTotalReached, None) => {
            return Err(AppError::bad_input(
                "a TOP_UP_TOTAL_REACHED rule needs a threshold (0: any top-up)",
            ));
        }
        (_, Some(_)) => {
            return Err(AppError::bad_input(
                "threshold applies to TOP_UP_TOTAL_REACHED rules only",
            ));
        }
        (_, None) => None,
    };
    let product_categories = input.product_categories.filter(|c| !c.is_empty());
    if product_categories.is_some() && trigger != RuleTrigger::FirstPurchase {
        return Err(AppError::bad_input(
            "productCategories applies to FIRST_PURCHASE rules only",
        ));
    }
    Ok(ValidRule {
        name,
        enabled: input.enabled.unwrap_or(true),
        trigger,
        beneficiary,
        unit,
        calculation,
        value,
        threshold,
        recurring: input.recurring.unwrap_or(false),
        product_categories: condition_list("productCategories", product_categories)?,
        account_groups: condition_list("accountGroups", input.account_groups)?,
    })
}

/// A list condition stored as a JSON array of lower-case keys; absent or empty (what a form
/// with nothing picked sends): no condition.
fn condition_list(field: &str, values: Option<Vec<String>>) -> AppResult<Option<String>> {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if values.len() > MAX_CONDITION_VALUES {
        return Err(AppError::bad_input(format!(
            "{field} may name at most {MAX_CONDITION_VALUES} values"
        )));
    }
    let mut keys = values
        .iter()
        .map(|v| key_text(field, v))
        .collect::<AppResult<Vec<_>>>()?;
    keys.sort();
    keys.dedup();
    serde_json::to_string(&keys).map(Some).map_err(AppError::internal)
}

pub async fn create(
    db: &DatabaseConnection,
    actor: &str,
    input: RuleInput,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<reward_rule::Model> {
    let rule = validate(input)?;
    let txn = begin_write(db).await?;
    if reward_rule::Entity::find().count(&txn).await? >= MAX_RULES {
        return Err(AppError::bad_input(format!(
            "a program may have at most {MAX_RULES} rules"
        )));
    }
    let mut row = reward_rule::ActiveModel {
        created_at: Set(now),
        ..Default::default()
    };
    assign(&mut row, rule, now);
    let created = row.insert(&txn).await?;
    audit::record(
        &txn,
        actor,
        "CREATE_REWARD_RULE",
        &format!("rule:{}", created.id),
        serde_json::Value::Null,
        json(&created),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(created)
}

/// Replaces a rule's definition. What it already paid stays as it was: each ledger entry keeps
/// its amount and the rule's values at the time.
pub async fn update(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    input: RuleInput,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<reward_rule::Model> {
    let rule = validate(input)?;
    let txn = begin_write(db).await?;
    let before = reward_rule::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such reward rule"))?;
    let mut row = before.clone().into_active_model();
    assign(&mut row, rule, now);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "UPDATE_REWARD_RULE",
        &format!("rule:{id}"),
        json(&before),
        json(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// Whether storing `input` over `rule` would change it.
pub fn would_change(rule: &reward_rule::Model, input: RuleInput) -> AppResult<bool> {
    let new = validate(input)?;
    Ok((
        &rule.name,
        rule.enabled,
        rule.trigger,
        rule.beneficiary,
        rule.unit,
        rule.calculation,
    ) != (
        &new.name,
        new.enabled,
        new.trigger,
        new.beneficiary,
        new.unit,
        new.calculation,
    ) || (rule.value, rule.threshold, rule.recurring) != (new.value, new.threshold, new.recurring)
        || (&rule.product_categories, &rule.account_groups) != (&new.product_categories, &new.account_groups))
}

fn assign(row: &mut reward_rule::ActiveModel, rule: ValidRule, now: chrono::DateTime<chrono::Utc>) {
    row.name = Set(rule.name);
    row.enabled = Set(rule.enabled);
    row.trigger = Set(rule.trigger);
    row.beneficiary = Set(rule.beneficiary);
    row.unit = Set(rule.unit);
    row.calculation = Set(rule.calculation);
    row.value = Set(rule.value);
    row.threshold = Set(rule.threshold);
    row.recurring = Set(rule.recurring);
    row.product_categories = Set(rule.product_categories);
    row.account_groups = Set(rule.account_groups);
    row.updated_at = Set(now);
}

pub fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// The referral an event's account came through.
#[derive(Debug, Clone, Copy)]
pub struct ReferralFacts {
    pub referral_id: i64,
    pub referrer_id: i64,
    pub referee_id: i64,
    /// A disqualified account on either side stops the referral paying anyone: its rewards
    /// would reach the fraud an admin stopped, through one side or the other.
    pub referrer_disqualified: bool,
    pub referee_disqualified: bool,
}

/// Where a purchase stands among the account's purchases, as the events flow decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseOrder {
    /// The earliest by `occurredAt` (a late one within the reorder window included).
    First,
    /// A first purchase happened before this one.
    Later,
    /// Happened before the purchase taken as first, but arrived too late to correct it.
    EarlierButLate {
        first_taken_at: chrono::DateTime<chrono::Utc>,
        window_hours: i64,
    },
}

/// What the event itself established.
#[derive(Debug, Clone)]
pub enum EventFacts<'a> {
    Signup,
    PaymentMethodVerified,
    TopUp {
        successful: bool,
        /// The account's successful top-ups so far, this one included.
        total: Amount,
    },
    Purchase {
        /// Where this purchase stands among the account's purchases.
        order: PurchaseOrder,
        product_name: &'a str,
        product_category: &'a str,
        product_rate: Option<Amount>,
        quantity_gb: Amount,
    },
}

impl EventFacts<'_> {
    fn trigger(&self) -> RuleTrigger {
        match self {
            EventFacts::Signup => RuleTrigger::Signup,
            EventFacts::PaymentMethodVerified => RuleTrigger::PaymentMethodVerified,
            EventFacts::TopUp { .. } => RuleTrigger::TopUpTotalReached,
            EventFacts::Purchase { .. } => RuleTrigger::FirstPurchase,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub program_enabled: bool,
    pub referral: Option<ReferralFacts>,
    /// The group of the account the event is about (the referee).
    pub account_group: Option<&'a str>,
    pub billing_scheme: BillingScheme,
    pub event: EventFacts<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pay {
        account_id: i64,
        referral_id: i64,
        unit: Unit,
        amount: Amount,
        reason: String,
    },
    Skip {
        reason: String,
    },
}

pub fn evaluate(rule: &reward_rule::Model, facts: &Facts<'_>) -> Verdict {
    let skip = |reason: String| Verdict::Skip { reason };
    if !facts.program_enabled {
        return skip("program is off".into());
    }
    if rule.trigger != facts.event.trigger() {
        return skip(format!(
            "pays on {}, not on {}",
            trigger_words(rule.trigger),
            trigger_words(facts.event.trigger())
        ));
    }
    let Some(referral) = facts.referral else {
        return skip("account has no referrer".into());
    };
    if referral.referrer_disqualified {
        return skip("the referrer is disqualified".into());
    }
    if referral.referee_disqualified {
        return skip("the referred account is disqualified".into());
    }
    if let Some(groups) = list_of(rule.account_groups.as_deref())
        && !facts.account_group.is_some_and(|g| groups.iter().any(|x| x == g))
    {
        let group = facts.account_group.unwrap_or("none");
        return skip(format!(
            "account group {group} does not count (counted: {})",
            groups.join(", ")
        ));
    }
    let mut how = String::new();
    let amount = match &facts.event {
        EventFacts::Signup => rule.value.map(Amount::from_micros),
        EventFacts::PaymentMethodVerified => {
            if facts.billing_scheme == BillingScheme::Prepaid {
                return skip("prepaid accounts qualify by their top-ups, not by a payment method".into());
            }
            rule.value.map(Amount::from_micros)
        }
        EventFacts::TopUp { successful, total } => {
            if facts.billing_scheme == BillingScheme::Postpaid {
                return skip("postpaid accounts qualify by a verified payment method, not by top-ups".into());
            }
            if !successful {
                return skip("the top-up did not succeed".into());
            }
            let threshold = Amount::from_micros(rule.threshold.unwrap_or(0));
            if *total < threshold || !total.is_positive() {
                return skip(format!("top-ups {total} of {threshold}"));
            }
            how = format!(" (top-ups {total} of {threshold})");
            rule.value.map(Amount::from_micros)
        }
        EventFacts::Purchase {
            order,
            product_name,
            product_category,
            product_rate,
            quantity_gb,
        } => {
            match order {
                PurchaseOrder::First => {}
                PurchaseOrder::Later => {
                    return skip(
                        "only the first purchase counts, and this account made its first purchase before".into(),
                    );
                }
                PurchaseOrder::EarlierButLate {
                    first_taken_at,
                    window_hours,
                } => {
                    return skip(format!(
                        "only the first purchase counts: this one happened before the one taken as first \
                         ({first_taken_at}) but arrived after the {window_hours} h reorder window, so arrival \
                         order stands"
                    ));
                }
            }
            if let Some(categories) = categories_of(rule)
                && !categories.iter().any(|c| c == product_category)
            {
                return skip(format!(
                    "product category {product_category} does not count (counted: {})",
                    categories.join(", ")
                ));
            }
            match rule.calculation {
                Calculation::Fixed => rule.value.map(Amount::from_micros),
                Calculation::ProductRate => match product_rate {
                    None => return skip(format!("product {product_name} has no product rate set")),
                    Some(rate) => {
                        how = format!(" (rate {rate} × {quantity_gb} GB)");
                        rate.checked_mul(*quantity_gb)
                    }
                },
            }
        }
    };
    let Some(amount) = amount.filter(|a| a.is_positive()) else {
        return skip("the reward computes to nothing".into());
    };
    let account_id = match rule.beneficiary {
        Beneficiary::Referrer => referral.referrer_id,
        Beneficiary::Referee => referral.referee_id,
    };
    Verdict::Pay {
        account_id,
        referral_id: referral.referral_id,
        unit: rule.unit,
        amount,
        reason: format!(
            "{amount} {} to the {}{how}",
            unit_word(rule.unit),
            beneficiary_words(rule.beneficiary)
        ),
    }
}

/// What a decision says when the unique index refused a second payment.
pub fn already_paid_reason(rule: &reward_rule::Model) -> String {
    match rule.trigger {
        RuleTrigger::FirstPurchase => "first purchase already rewarded".to_owned(),
        _ => "already rewarded for this referral".to_owned(),
    }
}

fn trigger_words(trigger: RuleTrigger) -> &'static str {
    match trigger {
        RuleTrigger::Signup => "sign-up",
        RuleTrigger::PaymentMethodVerified => "a verified payment method",
        RuleTrigger::TopUpTotalReached => "top-ups",
        RuleTrigger::FirstPurchase => "a first purchase",
    }
}

fn beneficiary_words(beneficiary: Beneficiary) -> &'static str {
    match beneficiary {
        Beneficiary::Referrer => "referrer",
        Beneficiary::Referee => "referred friend",
    }
}

fn list_of(json: Option<&str>) -> Option<Vec<String>> {
    json.and_then(|json| serde_json::from_str(json).ok())
}

/// The categories a rule is limited to; `None` when every category counts.
pub fn categories_of(rule: &reward_rule::Model) -> Option<Vec<String>> {
    list_of(rule.product_categories.as_deref())
}

/// The account groups a rule is limited to; `None` when every group counts.
pub fn groups_of(rule: &reward_rule::Model) -> Option<Vec<String>> {
    list_of(rule.account_groups.as_deref())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Rewarded,
    Skipped,
}

/// A rule's decision on one event, as stored with the event and answered on replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub rule_id: i64,
    pub rule_name: String,
    pub outcome: Outcome,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: RuleTrigger, calculation: Calculation, value: Option<i64>) -> reward_rule::Model {
        let now = chrono::Utc::now();
        reward_rule::Model {
            id: 1,
            name: "r".into(),
            enabled: true,
            trigger,
            beneficiary: Beneficiary::Referrer,
            unit: Unit::Points,
            calculation,
            value,
            product_categories: None,
            created_at: now,
            updated_at: now,
            threshold: None,
            recurring: false,
            account_groups: None,
        }
    }

    fn facts<'a>(event: EventFacts<'a>) -> Facts<'a> {
        Facts {
            program_enabled: true,
            referral: Some(ReferralFacts {
                referral_id: 7,
                referrer_id: 1,
                referee_id: 2,
                referrer_disqualified: false,
                referee_disqualified: false,
            }),
            account_group: None,
            billing_scheme: BillingScheme::Postpaid,
            event,
        }
    }

    fn purchase<'a>() -> EventFacts<'a> {
        EventFacts::Purchase {
            order: PurchaseOrder::First,
            product_name: "Residential",
            product_category: "residential",
            product_rate: Some(Amount::from_micros(15_000_000)),
            quantity_gb: Amount::from_micros(2_500_000),
        }
    }

    fn paid(verdict: Verdict) -> Option<(i64, i64)> {
        match verdict {
            Verdict::Pay { account_id, amount, .. } => Some((account_id, amount.micros())),
            Verdict::Skip { .. } => None,
        }
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Skip { reason } => reason,
            Verdict::Pay { .. } => "PAID".into(),
        }
    }

    #[test]
    fn a_disqualified_side_stops_the_referral_paying_anyone() {
        let rule = rule(RuleTrigger::PaymentMethodVerified, Calculation::Fixed, Some(5_000_000));
        let mut both = Vec::new();
        for beneficiary in [Beneficiary::Referrer, Beneficiary::Referee] {
            let rule = reward_rule::Model {
                beneficiary,
                ..rule.clone()
            };
            let base = facts(EventFacts::PaymentMethodVerified);
            assert!(paid(evaluate(&rule, &base)).is_some());
            let Some(mut referral) = base.referral else {
                panic!("the facts have a referral")
            };
            referral.referrer_disqualified = true;
            let f = Facts {
                referral: Some(referral),
                ..base.clone()
            };
            both.push(reason(evaluate(&rule, &f)));
            referral.referrer_disqualified = false;
            referral.referee_disqualified = true;
            let f = Facts {
                referral: Some(referral),
                ..base.clone()
            };
            both.push(reason(evaluate(&rule, &f)));
        }
        assert_eq!(
            both,
            [
                "the referrer is disqualified",
                "the referred account is disqualified",
                "the referrer is disqualified",
                "the referred account is disqualified"
            ]
        );
    }

    #[test]
    fn pays_rate_times_gigabytes_on_a_first_residential_purchase() {
        let mut r = rule(RuleTrigger::FirstPurchase, Calculation::ProductRate, None);
        r.product_categories = Some("[\"residential\"]".into());
        assert_eq!(paid(evaluate(&r, &facts(purchase()))), Some((1, 37_500_000)));
        let datacenter = EventFacts::Purchase {
            order: PurchaseOrder::First,
            product_name: "Datacenter",
            product_category: "datacenter",
            product_rate: Some(Amount::from_micros(15_000_000)),
            quantity_gb: Amount::from_micros(1_000_000),
        };
        assert!(reason(evaluate(&r, &facts(datacenter))).contains("does not count"));
    }

    #[test]
    fn top_ups_pay_once_the_threshold_is_reached_by_prepaid_accounts() {
        let mut r = rule(RuleTrigger::TopUpTotalReached, Calculation::Fixed, Some(10_000_000));
        r.threshold = Some(10_000_000);
        let top_up = |total| Facts {
            billing_scheme: BillingScheme::Prepaid,
            ..facts(EventFacts::TopUp {
                successful: true,
                total: Amount::from_micros(total),
            })
        };
        assert_eq!(reason(evaluate(&r, &top_up(3_000_000))), "top-ups 3.00 of 10.00");
        assert_eq!(paid(evaluate(&r, &top_up(10_000_000))), Some((1, 10_000_000)));
        let postpaid = Facts {
            billing_scheme: BillingScheme::Postpaid,
            ..top_up(10_000_000)
        };
        assert!(reason(evaluate(&r, &postpaid)).contains("postpaid"));
        r.threshold = Some(0);
        assert!(paid(evaluate(&r, &top_up(1))).is_some());
    }

    #[test]
    fn payment_method_verification_pays_postpaid_referees_only() {
        let mut r = rule(RuleTrigger::PaymentMethodVerified, Calculation::Fixed, Some(5_000_000));
        r.beneficiary = Beneficiary::Referee;
        assert_eq!(
            paid(evaluate(&r, &facts(EventFacts::PaymentMethodVerified))),
            Some((2, 5_000_000))
        );
        let prepaid = Facts {
            billing_scheme: BillingScheme::Prepaid,
            ..facts(EventFacts::PaymentMethodVerified)
        };
        assert!(reason(evaluate(&r, &prepaid)).contains("prepaid"));
    }

    #[test]
    fn skips_with_a_reason_a_person_understands() {
        let r = rule(RuleTrigger::PaymentMethodVerified, Calculation::Fixed, Some(5_000_000));
        let off = Facts {
            program_enabled: false,
            ..facts(EventFacts::PaymentMethodVerified)
        };
        assert_eq!(reason(evaluate(&r, &off)), "program is off");
        let alone = Facts {
            referral: None,
            ..facts(EventFacts::PaymentMethodVerified)
        };
        assert_eq!(reason(evaluate(&r, &alone)), "account has no referrer");
        assert!(reason(evaluate(&r, &facts(purchase()))).contains("not on a first purchase"));
        let mut grouped = r.clone();
        grouped.account_groups = Some("[\"business\"]".into());
        assert!(reason(evaluate(&grouped, &facts(EventFacts::PaymentMethodVerified))).contains("group none"));
        let business = Facts {
            account_group: Some("business"),
            ..facts(EventFacts::PaymentMethodVerified)
        };
        assert!(paid(evaluate(&grouped, &business)).is_some());
    }

    #[test]
    fn validation_refuses_what_is_not_built_or_does_not_fit() {
        let base = RuleInput {
            name: "r".into(),
            trigger: Some(RuleTrigger::Signup),
            beneficiary: Some(Beneficiary::Referee),
            unit: Some(Unit::Credit),
            calculation: Some(Calculation::Fixed),
            value: Some(Amount::from_micros(1_000_000)),
            ..Default::default()
        };
        assert!(validate(base.clone()).is_ok());
        assert!(
            validate(RuleInput {
                hold_days: Some(30),
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            validate(RuleInput {
                affiliates_only: Some(true),
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            validate(RuleInput {
                affiliates_only: Some(false),
                ..base.clone()
            })
            .is_ok()
        );
        assert!(
            validate(RuleInput {
                unit: Some(Unit::Cash),
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            validate(RuleInput {
                value: None,
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            validate(RuleInput {
                threshold: Some(Amount::ZERO),
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            validate(RuleInput {
                calculation: Some(Calculation::ProductRate),
                value: None,
                ..base.clone()
            })
            .is_err()
        );
        assert!(
            validate(RuleInput {
                product_categories: Some(vec!["x".into()]),
                ..base.clone()
            })
            .is_err()
        );
        let top_up = RuleInput {
            trigger: Some(RuleTrigger::TopUpTotalReached),
            ..base
        };
        assert!(validate(top_up.clone()).is_err());
        assert!(
            validate(RuleInput {
                threshold: Some(Amount::ZERO),
                ..top_up
            })
            .is_ok()
        );
    }
}
