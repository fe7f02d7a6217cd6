//! Reward rules, evaluated on every recorded event. Evaluation is pure: it takes the facts the
//! event established and answers, per rule, what to pay or why nothing is paid. Paying (and
//! refusing to pay twice) is the ledger's job.

use crate::amount::Amount;
use crate::error::AppResult;
use crate::service::ledger::unit_word;
use entity::enums::{Beneficiary, Calculation, RuleTrigger, Unit};
use entity::reward_rule;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub async fn enabled_rules_for(db: &impl ConnectionTrait, trigger: RuleTrigger) -> AppResult<Vec<reward_rule::Model>> {
    Ok(reward_rule::Entity::find()
        .filter(reward_rule::Column::Enabled.eq(true))
        .filter(reward_rule::Column::Trigger.eq(trigger))
        .order_by_asc(reward_rule::Column::Id)
        .all(db)
        .await?)
}

pub async fn by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashMap<i64, reward_rule::Model>> {
    let rows = reward_rule::Entity::find().filter(reward_rule::Column::Id.is_in(ids.iter().copied())).all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, r)).collect())
}

/// The referral an event's account came through.
#[derive(Debug, Clone, Copy)]
pub struct ReferralFacts {
    pub referral_id: i64,
    pub referrer_id: i64,
    pub referee_id: i64,
}

/// What a purchase established.
#[derive(Debug, Clone)]
pub struct PurchaseFacts<'a> {
    pub program_enabled: bool,
    pub referral: Option<ReferralFacts>,
    /// Whether this purchase is the account's first one.
    pub first_purchase: bool,
    pub product_name: &'a str,
    pub product_category: &'a str,
    pub product_rate: Option<Amount>,
    pub quantity_gb: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pay { account_id: i64, referral_id: i64, unit: Unit, amount: Amount, reason: String },
    Skip { reason: String },
}

pub fn evaluate_purchase(rule: &reward_rule::Model, facts: &PurchaseFacts<'_>) -> Verdict {
    let skip = |reason: String| Verdict::Skip { reason };
    if !facts.program_enabled {
        return skip("program is off".into());
    }
    let Some(referral) = facts.referral else {
        return skip("account has no referrer".into());
    };
    if rule.trigger == RuleTrigger::FirstPurchase && !facts.first_purchase {
        return skip("only the first purchase counts, and this account made its first purchase before".into());
    }
    if let Some(categories) = categories_of(rule)
        && !categories.iter().any(|c| c == facts.product_category) {
            return skip(format!(
                "product category {} does not count (counted: {})",
                facts.product_category,
                categories.join(", ")
            ));
        }
    let amount = match rule.calculation {
        Calculation::Fixed => rule.value.map(Amount::from_micros),
        Calculation::ProductRate => match facts.product_rate {
            None => return skip(format!("product {} has no product rate set", facts.product_name)),
            Some(rate) => rate.checked_mul(facts.quantity_gb),
        },
    };
    let Some(amount) = amount.filter(|a| a.is_positive()) else {
        return skip("the reward computes to nothing".into());
    };
    let account_id = match rule.beneficiary {
        Beneficiary::Referrer => referral.referrer_id,
        Beneficiary::Referee => referral.referee_id,
    };
    let how = match (rule.calculation, facts.product_rate) {
        (Calculation::ProductRate, Some(rate)) => format!(" (rate {rate} × {} GB)", facts.quantity_gb),
        _ => String::new(),
    };
    Verdict::Pay {
        account_id,
        referral_id: referral.referral_id,
        unit: rule.unit,
        amount,
        reason: format!("{amount} {} to the {}{how}", unit_word(rule.unit), beneficiary_word(rule.beneficiary)),
    }
}

fn beneficiary_word(beneficiary: Beneficiary) -> &'static str {
    match beneficiary {
        Beneficiary::Referrer => "referrer",
        Beneficiary::Referee => "referred friend",
    }
}

/// The categories a rule is limited to; `None` when every category counts.
pub fn categories_of(rule: &reward_rule::Model) -> Option<Vec<String>> {
    rule.product_categories.as_deref().and_then(|json| serde_json::from_str(json).ok())
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

    fn rule(calculation: Calculation, value: Option<i64>, categories: Option<&str>) -> reward_rule::Model {
        let now = chrono::Utc::now();
        reward_rule::Model {
            id: 1,
            name: "r".into(),
            enabled: true,
            trigger: RuleTrigger::FirstPurchase,
            beneficiary: Beneficiary::Referrer,
            unit: Unit::Points,
            calculation,
            value,
            product_categories: categories.map(str::to_owned),
            created_at: now,
            updated_at: now,
        }
    }

    fn facts<'a>() -> PurchaseFacts<'a> {
        PurchaseFacts {
            program_enabled: true,
            referral: Some(ReferralFacts { referral_id: 7, referrer_id: 1, referee_id: 2 }),
            first_purchase: true,
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

    #[test]
    fn pays_rate_times_gigabytes_to_the_referrer() {
        let r = rule(Calculation::ProductRate, None, Some("[\"residential\"]"));
        assert_eq!(paid(evaluate_purchase(&r, &facts())), Some((1, 37_500_000)));
    }

    #[test]
    fn skips_with_a_reason() {
        let r = rule(Calculation::ProductRate, None, Some("[\"residential\"]"));
        let reason = |f: PurchaseFacts<'_>| match evaluate_purchase(&r, &f) {
            Verdict::Skip { reason } => reason,
            Verdict::Pay { .. } => String::new(),
        };
        assert_eq!(reason(PurchaseFacts { program_enabled: false, ..facts() }), "program is off");
        assert_eq!(reason(PurchaseFacts { referral: None, ..facts() }), "account has no referrer");
        assert!(reason(PurchaseFacts { first_purchase: false, ..facts() }).contains("first purchase"));
        assert!(reason(PurchaseFacts { product_category: "datacenter", ..facts() }).contains("datacenter"));
        assert!(reason(PurchaseFacts { product_rate: None, ..facts() }).contains("no product rate"));
    }

    #[test]
    fn fixed_rules_pay_their_value_in_any_category_when_unrestricted() {
        let r = rule(Calculation::Fixed, Some(5_000_000), None);
        let f = PurchaseFacts { product_category: "datacenter", ..facts() };
        assert_eq!(paid(evaluate_purchase(&r, &f)), Some((1, 5_000_000)));
    }
}
