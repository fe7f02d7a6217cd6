//! Reward rules (admin).

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::{Beneficiary, Calculation, RewardUnit, RuleTrigger};
use crate::graphql::ids::{Kind, from_id};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::RewardRule;
use crate::service::rules::{self, RuleInput};
use async_graphql::{Context, ID, InputObject, Object, Result};

#[derive(Default)]
pub struct RuleQuery;

#[Object]
impl RuleQuery {
    /// Every rule, enabled or not, oldest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn reward_rules(&self, ctx: &Context<'_>) -> Result<Vec<RewardRule>> {
        Ok(rules::list(&state(ctx).db).await?.into_iter().map(RewardRule).collect())
    }
}

/// A rule's whole definition. Options this server does not offer yet are refused with
/// BAD_USER_INPUT when set: invoiceNumber, windowDays, maxOccurrences, capPerReferral,
/// holdDays, expiresAfterDays, redeemableCategories, minActiveReferrals, affiliatesOnly.
#[derive(InputObject)]
pub struct RewardRuleInput {
    pub name: String,
    /// Default true.
    pub enabled: Option<bool>,
    pub trigger: RuleTrigger,
    pub beneficiary: Beneficiary,
    pub unit: RewardUnit,
    pub calculation: Calculation,
    /// The amount of a FIXED rule.
    pub value: Option<Decimal>,
    /// Required for TOP_UP_TOTAL_REACHED: the total of the referee's own successful top-ups
    /// that qualifies it (0: any top-up).
    pub threshold: Option<Decimal>,
    pub invoice_number: Option<i32>,
    pub window_days: Option<i32>,
    /// Pay on every qualifying event instead of once per referral. Default false.
    pub recurring: Option<bool>,
    pub max_occurrences: Option<i32>,
    pub cap_per_referral: Option<Decimal>,
    pub hold_days: Option<i32>,
    pub expires_after_days: Option<i32>,
    /// FIRST_PURCHASE only: the product categories that count.
    pub product_categories: Option<Vec<String>>,
    pub redeemable_categories: Option<Vec<String>>,
    /// The referee's account groups that count.
    pub account_groups: Option<Vec<String>>,
    pub min_active_referrals: Option<i32>,
    pub affiliates_only: Option<bool>,
}

impl From<RewardRuleInput> for RuleInput {
    fn from(input: RewardRuleInput) -> Self {
        RuleInput {
            name: input.name,
            enabled: input.enabled,
            trigger: Some(input.trigger.into()),
            beneficiary: Some(input.beneficiary.into()),
            unit: Some(input.unit.into()),
            calculation: Some(input.calculation.into()),
            value: input.value.map(|d| d.0),
            threshold: input.threshold.map(|d| d.0),
            recurring: input.recurring,
            product_categories: input.product_categories,
            account_groups: input.account_groups,
            invoice_number: input.invoice_number,
            window_days: input.window_days,
            max_occurrences: input.max_occurrences,
            cap_per_referral: input.cap_per_referral.map(|d| d.0),
            hold_days: input.hold_days,
            expires_after_days: input.expires_after_days,
            redeemable_categories: input.redeemable_categories,
            min_active_referrals: input.min_active_referrals,
            affiliates_only: input.affiliates_only,
        }
    }
}

#[derive(Default)]
pub struct RuleMutation;

#[Object]
impl RuleMutation {
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn create_reward_rule(&self, ctx: &Context<'_>, input: RewardRuleInput) -> Result<RewardRule> {
        let rule = rules::create(&state(ctx).db, &viewer(ctx).actor(), input.into(), now(ctx)).await?;
        Ok(RewardRule(rule))
    }

    /// Replaces a rule's definition; what it already paid is not changed.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn update_reward_rule(&self, ctx: &Context<'_>, id: ID, input: RewardRuleInput) -> Result<RewardRule> {
        let id = from_id(Kind::Rule, &id)?;
        let rule = rules::update(&state(ctx).db, &viewer(ctx).actor(), id, input.into(), now(ctx)).await?;
        Ok(RewardRule(rule))
    }
}
