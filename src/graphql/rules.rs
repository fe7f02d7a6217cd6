//! Reward rules (admin): the flat `RewardRuleInput` in, the `RewardRule` object out, both
//! built from the typed rule of `service/rules`. An option of a rule is one input field and
//! one output field here.

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::{Beneficiary, BillingScheme, Calculation, PlanPriceBase, RewardUnit, RuleTrigger};
use crate::graphql::ids::{Kind, from_id, to_id};
use crate::graphql::scalars::Decimal;
use crate::service::ledger::SpendLimit;
use crate::service::rules::{self, Rule, RuleInput, TierInput};
use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

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

/// A rule's whole definition.
#[derive(InputObject)]
pub struct RewardRuleInput {
    pub name: String,
    /// Default true.
    pub enabled: Option<bool>,
    pub trigger: RuleTrigger,
    pub beneficiary: Beneficiary,
    pub unit: RewardUnit,
    pub calculation: Calculation,
    /// The amount of a FIXED rule, or per active referral of a PER_ACTIVE_REFERRAL rule; the
    /// percentage of a PERCENT or PLAN_PRICE rule (more than 0, at most 1000).
    pub value: Option<Decimal>,
    /// Required for TOP_UP_TOTAL_REACHED: the total of the referee's own successful top-ups
    /// that qualifies it (0: any top-up). For SPEND_TOTAL_REACHED: the qualifying spend that
    /// qualifies (default 0); a PERCENT rule pays on the part above it.
    pub threshold: Option<Decimal>,
    /// INVOICE_PAID: the referee's paid invoice that pays (1 to 1000; from it on, when
    /// recurring). 0 or null: any (once), or from the first (recurring).
    pub invoice_number: Option<i32>,
    /// Days (1 to 3650) after the referee's sign-up within which events count: later ones
    /// earn nothing. Not for SIGNUP rules. 0 or null: no window.
    pub window_days: Option<i32>,
    /// Pay on every qualifying event instead of once per referral. Default false.
    pub recurring: Option<bool>,
    /// A recurring INVOICE_PAID rule pays on at most this many invoices (1 to 1000). 0 or
    /// null: no limit.
    pub max_occurrences: Option<i32>,
    /// The most one referral may pay the rule's beneficiary in the rule's unit, counting
    /// every rule's rewards (less what was taken back): the payment that reaches it is cut to
    /// fit, and the rule pays nothing after. Null: no cap.
    pub cap_per_referral: Option<Decimal>,
    /// Days (0 to 3650) a reward stays PENDING before it becomes available. 0 or null: no hold.
    pub hold_days: Option<i32>,
    /// Days (1 to 3650) after a reward becomes available that what is left of it expires.
    /// Null: never.
    pub expires_after_days: Option<i32>,
    /// FIRST_PURCHASE, INVOICE_PAID, SPEND_TOTAL_REACHED: the product categories that count
    /// (a first purchase's product, an invoice's lines).
    pub product_categories: Option<Vec<String>>,
    /// CREDIT: the product categories the credit this rule pays may be spent on (an
    /// allow-list); null or empty: any.
    pub redeemable_categories: Option<Vec<String>>,
    /// CREDIT: the product categories the credit this rule pays may not be spent on (an
    /// exclusion list); not with `redeemableCategories`. Left out of an update: unchanged.
    pub excluded_categories: MaybeUndefined<Vec<String>>,
    /// The referee's account groups that count.
    pub account_groups: Option<Vec<String>>,
    /// The referrer's account groups that count (a business referrer and a residential one can
    /// earn differently); null or empty: all of them. Left out of an update: unchanged.
    pub referrer_groups: MaybeUndefined<Vec<String>>,
    /// REFERRER_INVOICE_PAID: the active referrals the account needs for the rule to pay (1 to
    /// 1000). 0 or null: none.
    pub min_active_referrals: Option<i32>,
    /// Only referrers that are approved affiliates earn from it (for REFERRER_INVOICE_PAID:
    /// the paying account itself). Default false.
    pub affiliates_only: Option<bool>,
    /// TIERS: 1 to 20 tiers, each from a distinct number of active referrals. Left out of an
    /// update: unchanged.
    pub tiers: MaybeUndefined<Vec<RewardTierInput>>,
    /// PLAN_PRICE: whose plan; default BENEFICIARY. Left out of an update: unchanged.
    pub plan_price_base: MaybeUndefined<PlanPriceBase>,
    /// Only referees of this billing scheme count; null: both. Program 1 pays postpaid
    /// newcomers on a verified payment method and prepaid ones on their top-ups.
    /// Left out of an update: the rule keeps its billing scheme (a form that does not show it
    /// cannot clear it by accident); null clears it.
    pub billing_scheme: MaybeUndefined<BillingScheme>,
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
            hold_days: input.hold_days,
            expires_after_days: input.expires_after_days,
            product_categories: input.product_categories,
            account_groups: input.account_groups,
            referrer_groups: match input.referrer_groups {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(groups) => Some(Some(groups)),
            },
            billing_scheme: match input.billing_scheme {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(scheme) => Some(Some(scheme.into())),
            },
            invoice_number: input.invoice_number,
            window_days: input.window_days,
            max_occurrences: input.max_occurrences,
            cap_per_referral: input.cap_per_referral.map(|d| d.0),
            redeemable_categories: input.redeemable_categories,
            excluded_categories: match input.excluded_categories {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(categories) => Some(Some(categories)),
            },
            min_active_referrals: input.min_active_referrals,
            affiliates_only: input.affiliates_only,
            tiers: match input.tiers {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(tiers) => Some(Some(
                    tiers
                        .into_iter()
                        .map(|tier| TierInput {
                            min_active: tier.min_active,
                            amount: tier.amount.0,
                        })
                        .collect(),
                )),
            },
            plan_price_base: match input.plan_price_base {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(base) => Some(Some(base.into())),
            },
        }
    }
}

/// One tier of a TIERS rule.
#[derive(InputObject)]
pub struct RewardTierInput {
    /// From this many active referrals (1 to 1000).
    pub min_active: i32,
    /// What the rule pays from there (more than 0).
    pub amount: Decimal,
}

/// One tier of a TIERS rule.
#[derive(SimpleObject)]
pub struct RewardTier {
    pub min_active: i32,
    pub amount: Decimal,
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

/// A rule as the console reads it: the same fields as `RewardRuleInput`, so a form can send
/// back what it read.
pub struct RewardRule(pub Rule);

#[Object]
impl RewardRule {
    async fn id(&self) -> ID {
        to_id(Kind::Rule, self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    async fn trigger(&self) -> RuleTrigger {
        self.0.trigger.into()
    }

    async fn beneficiary(&self) -> Beneficiary {
        self.0.beneficiary.into()
    }

    async fn unit(&self) -> RewardUnit {
        self.0.unit.into()
    }

    async fn calculation(&self) -> Calculation {
        self.0.calculation.kind().into()
    }

    /// The amount of a FIXED or PER_ACTIVE_REFERRAL rule; the percentage of a PERCENT or
    /// PLAN_PRICE rule.
    async fn value(&self) -> Option<Decimal> {
        match self.0.calculation {
            rules::Calculation::Fixed(value)
            | rules::Calculation::Percent(value)
            | rules::Calculation::PerActiveReferral(value)
            | rules::Calculation::PlanPrice { percent: value, .. } => Some(Decimal(value)),
            rules::Calculation::ProductRate | rules::Calculation::Tiers(_) => None,
        }
    }

    /// The tiers of a TIERS rule, from the fewest active referrals; null for other rules.
    async fn tiers(&self) -> Option<Vec<RewardTier>> {
        self.0.tiers().map(|tiers| {
            tiers
                .iter()
                .map(|tier| RewardTier {
                    min_active: i32::from(tier.min_active),
                    amount: Decimal(tier.amount),
                })
                .collect()
        })
    }

    /// Whose plan a PLAN_PRICE rule takes its percentage of; null for other rules.
    async fn plan_price_base(&self) -> Option<PlanPriceBase> {
        self.0.plan_price_base().map(Into::into)
    }

    /// The product categories that count; null: all of them.
    async fn product_categories(&self) -> Option<&[String]> {
        self.0.product_categories()
    }

    /// For TOP_UP_TOTAL_REACHED: the top-up total that qualifies (0: any top-up); for
    /// SPEND_TOTAL_REACHED: the qualifying spend.
    async fn threshold(&self) -> Option<Decimal> {
        self.0.threshold().map(Decimal)
    }

    /// Whether the rule pays on every qualifying event instead of once per referral.
    async fn recurring(&self) -> bool {
        self.0.payout.recurring
    }

    /// The referee's account groups that count; null: all of them.
    async fn account_groups(&self) -> Option<&[String]> {
        self.0.account_groups()
    }

    /// The referrer's account groups that count; null: all of them.
    async fn referrer_groups(&self) -> Option<&[String]> {
        self.0.referrer_groups()
    }

    /// Only events within this many days of the referee's sign-up count; null: no window.
    async fn window_days(&self) -> Option<i32> {
        self.0.window_days().map(i32::from)
    }

    /// INVOICE_PAID: pays on the referee's n-th paid invoice (from it on, when recurring);
    /// null: any.
    async fn invoice_number(&self) -> Option<i32> {
        self.0.invoice_number().map(i32::from)
    }

    /// A recurring INVOICE_PAID rule pays on at most this many invoices; null: no limit.
    async fn max_occurrences(&self) -> Option<i32> {
        self.0.payout.max_occurrences.map(i32::from)
    }

    /// The most one referral pays the beneficiary in this unit, over all rules; null: no cap.
    async fn cap_per_referral(&self) -> Option<Decimal> {
        self.0.payout.cap_per_referral.map(Decimal)
    }

    /// Days a reward stays pending before it becomes available; null: available at once.
    async fn hold_days(&self) -> Option<i32> {
        Some(i32::from(self.0.payout.hold_days)).filter(|days| *days > 0)
    }

    /// Days after a reward becomes available that what is left of it expires; null: never.
    async fn expires_after_days(&self) -> Option<i32> {
        self.0.payout.expires_after_days.map(i32::from)
    }

    /// Product categories the credit it pays may be spent on; null: any.
    async fn redeemable_categories(&self) -> Option<&[String]> {
        match &self.0.payout.spend_limit {
            Some(SpendLimit::Only(categories)) => Some(categories),
            _ => None,
        }
    }

    /// Product categories the credit it pays may not be spent on; null: none.
    async fn excluded_categories(&self) -> Option<&[String]> {
        match &self.0.payout.spend_limit {
            Some(SpendLimit::Except(categories)) => Some(categories),
            _ => None,
        }
    }

    /// REFERRER_INVOICE_PAID: the active referrals the account needs; null: none.
    async fn min_active_referrals(&self) -> Option<i32> {
        self.0.min_active_referrals().map(i32::from)
    }

    /// Only referrers that are approved affiliates earn from it.
    async fn affiliates_only(&self) -> bool {
        self.0.conditions.contains(&rules::Condition::AffiliatesOnly)
    }

    /// The referee's billing scheme that counts; null: both.
    async fn billing_scheme(&self) -> Option<BillingScheme> {
        self.0.billing_scheme().map(Into::into)
    }
}
