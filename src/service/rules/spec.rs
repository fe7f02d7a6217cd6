//! A reward rule as the engine knows it: typed, parsed once from what an admin (or a preset)
//! wrote, and checked there. Past this file nothing reads a flat input or a JSON column: the
//! evaluator, the ledger snapshot and the GraphQL output all work on `Rule`.
//!
//! Each option is one variant: its parse and its check are here, its evaluation is one arm
//! in `evaluate.rs`, its GraphQL input and output one field each in `graphql/rules.rs`. The
//! variants are also the stored form (`reward_rules.spec`, through serde), so a new option
//! needs no migration.
//!
//! Parsing is generous with what a console sends back and strict with what is wrong: the
//! neutral value of an option (null, an empty list, 0 days, false) is "not set"; anything
//! that does not fit the rule is BAD_USER_INPUT naming the field.

use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::ledger::SpendLimit;
use crate::service::{key_text, required_text};
use entity::enums::{self, Beneficiary, BillingScheme, RuleTrigger, Unit};
use serde::{Deserialize, Serialize};

/// Categories or groups one rule may name.
pub const MAX_CONDITION_VALUES: usize = 50;
/// The longest hold, and the latest expiry, a rule may set: ten years.
pub const MAX_DAYS: u16 = 3650;
/// The highest `invoiceNumber` and `maxOccurrences`: monthly invoices for 83 years.
pub const MAX_INVOICES: u16 = 1000;
/// The highest percentage a PERCENT or PLAN_PRICE rule may pay.
pub const MAX_PERCENT: i64 = 1000;
/// The most tiers a TIERS rule may have.
pub const MAX_TIERS: usize = 20;

/// A reward rule: what it pays on, to whom, on which conditions, how much, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// 0 for a rule not stored (a draft).
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub trigger: RuleTrigger,
    pub beneficiary: Beneficiary,
    pub unit: Unit,
    /// All must hold for the rule to pay; in the order `parse` gives them (see `Condition::rank`).
    pub conditions: Vec<Condition>,
    pub calculation: Calculation,
    pub payout: Payout,
}

/// One thing that must hold of an event, beyond its trigger, for a rule to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Condition {
    /// Only products of these categories count: a first purchase's product, an invoice's
    /// lines (INVOICE_PAID, SPEND_TOTAL_REACHED: the others count for nothing).
    ProductCategories(Vec<String>),
    /// Only referees of these account groups count.
    AccountGroups(Vec<String>),
    /// Only referees of this billing scheme count. Program 1 sets it: a postpaid newcomer
    /// qualifies by a verified payment method, a prepaid one by its top-ups.
    BillingScheme(BillingScheme),
    /// TOP_UP_TOTAL_REACHED: the referee's own successful top-ups reach this total (0: any
    /// top-up).
    TopUpTotalAtLeast(#[serde(with = "micros")] Amount),
    /// Only events that happen within this many days of the referee's sign-up count
    /// (`windowDays`).
    WithinDaysOfSignUp(u16),
    /// Only referrers of these account groups count (`referrerGroups`): a business referrer
    /// and a residential one can earn differently from the same friends.
    ReferrerGroups(Vec<String>),
    /// SPEND_TOTAL_REACHED: the referee's qualifying spend reaches this total (0: any).
    SpendTotalAtLeast(#[serde(with = "micros")] Amount),
    /// INVOICE_PAID: the referee's n-th paid invoice pays (from it on, when recurring).
    InvoiceNumber(u16),
    /// REFERRER_INVOICE_PAID: the account has at least this many active referrals.
    MinActiveReferrals(u16),
    /// Only referrers that are approved affiliates count (`affiliatesOnly`).
    AffiliatesOnly,
}

/// How much a rule pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Calculation {
    Fixed(#[serde(with = "micros")] Amount),
    /// FIRST_PURCHASE: the product's rate × the GB bought.
    ProductRate,
    /// This many percent of the qualifying amount (INVOICE_PAID: the invoice's;
    /// SPEND_TOTAL_REACHED: the part of the spend above the threshold the invoice adds).
    Percent(#[serde(with = "micros")] Amount),
    /// REFERRER_INVOICE_PAID: this much per active referral of the account.
    PerActiveReferral(#[serde(with = "micros")] Amount),
    /// REFERRER_INVOICE_PAID: the amount of the highest tier the account's active referrals
    /// reach; in ascending `min_active`, distinct.
    Tiers(Vec<Tier>),
    /// This many percent (100: a free month) of a plan's price: an account's last paid invoice.
    PlanPrice {
        #[serde(with = "micros")]
        percent: Amount,
        base: PlanPriceBase,
    },
}

/// One step of a TIERS rule: from `min_active` active referrals, `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub min_active: u16,
    #[serde(with = "micros")]
    pub amount: Amount,
}

/// Whose plan a PLAN_PRICE rule takes its percentage of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanPriceBase {
    /// The beneficiary's own last paid invoice ("half a month of your own plan").
    #[default]
    Beneficiary,
    /// The referee's invoice the rule pays on.
    Referee,
    /// The lesser of the two ("a free month of equal or lesser value").
    Lesser,
}

/// When, and how often, what a rule pays reaches the beneficiary, and where it may be spent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Payout {
    /// Pay on every qualifying event instead of once per referral.
    pub recurring: bool,
    /// Days a reward stays pending before it becomes available; 0: available at once.
    pub hold_days: u16,
    /// Days after it becomes available that what is left of a reward expires; None: never.
    pub expires_after_days: Option<u16>,
    /// A recurring INVOICE_PAID rule pays on at most this many invoices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_occurrences: Option<u16>,
    /// What one referral may pay the rule's beneficiary in the rule's unit, over all rules:
    /// this rule's payment is cut to fit, and it pays nothing once the total is reached.
    #[serde(with = "optional_micros", skip_serializing_if = "Option::is_none")]
    pub cap_per_referral: Option<Amount>,
    /// The product categories the credit it pays may be spent on, or may not; None: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_limit: Option<SpendLimit>,
}

/// A rule as an admin (or a preset) writes it: the flat shape of `RewardRuleInput`.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub name: String,
    pub enabled: Option<bool>,
    pub trigger: Option<RuleTrigger>,
    pub beneficiary: Option<Beneficiary>,
    pub unit: Option<Unit>,
    pub calculation: Option<enums::Calculation>,
    pub value: Option<Amount>,
    pub threshold: Option<Amount>,
    pub recurring: Option<bool>,
    pub hold_days: Option<i32>,
    pub expires_after_days: Option<i32>,
    pub product_categories: Option<Vec<String>>,
    pub account_groups: Option<Vec<String>>,
    /// Like `billing_scheme`: `None` when not given (an update keeps the rule's condition; the
    /// contract's rule fragment does not read it either), `Some(None)` or an empty list: none.
    pub referrer_groups: Option<Option<Vec<String>>>,
    /// `None`: not given (an update keeps the rule's condition: the contract's own rule
    /// fragment does not read this field, so a console built on it sends a rule back without
    /// it); `Some(None)`: no condition; `Some(Some(scheme))`: that scheme only.
    pub billing_scheme: Option<Option<BillingScheme>>,
    pub invoice_number: Option<i32>,
    pub window_days: Option<i32>,
    pub max_occurrences: Option<i32>,
    pub cap_per_referral: Option<Amount>,
    pub redeemable_categories: Option<Vec<String>>,
    pub min_active_referrals: Option<i32>,
    pub affiliates_only: Option<bool>,
    /// Like `referrer_groups`: `None` when not given (an update keeps the rule's list).
    pub excluded_categories: Option<Option<Vec<String>>>,
    /// Like `referrer_groups`: `None` when not given (an update keeps the rule's tiers).
    pub tiers: Option<Option<Vec<TierInput>>>,
    /// Like `referrer_groups`: `None` when not given (an update keeps the rule's base).
    pub plan_price_base: Option<Option<PlanPriceBase>>,
}

/// A tier as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierInput {
    pub min_active: i32,
    pub amount: Amount,
}

fn bad(message: impl Into<String>) -> AppError {
    AppError::bad_input(message)
}

/// Fills in what an update left out of the fields the contract's rule fragment does not read
/// (a console built on it sends a rule back without them) from the stored rule: its billing
/// scheme, its referrer groups, and, while it stays a TIERS or PLAN_PRICE rule, its tiers and
/// its plan's base. Null, sent, clears them.
pub fn keep_unsent(input: &mut RuleInput, stored: &Rule) {
    input.billing_scheme.get_or_insert(stored.billing_scheme());
    input
        .excluded_categories
        .get_or_insert_with(|| match &stored.payout.spend_limit {
            Some(SpendLimit::Except(categories)) => Some(categories.clone()),
            _ => None,
        });
    input
        .referrer_groups
        .get_or_insert_with(|| stored.referrer_groups().map(<[String]>::to_vec));
    if input.calculation == Some(enums::Calculation::Tiers) {
        input.tiers.get_or_insert_with(|| {
            stored.tiers().map(|tiers| {
                tiers
                    .iter()
                    .map(|tier| TierInput {
                        min_active: i32::from(tier.min_active),
                        amount: tier.amount,
                    })
                    .collect()
            })
        });
    }
    if input.calculation == Some(enums::Calculation::PlanPrice) {
        input.plan_price_base.get_or_insert(stored.plan_price_base());
    }
}

/// Parses and checks a rule as written. The rule has id 0 until it is stored.
pub fn parse(input: RuleInput) -> AppResult<Rule> {
    let missing = |field: &str| bad(format!("{field} is required"));
    let name = required_text("name", &input.name, 200)?;
    let trigger = input.trigger.ok_or_else(|| missing("trigger"))?;
    let beneficiary = input.beneficiary.ok_or_else(|| missing("beneficiary"))?;
    let unit = input.unit.ok_or_else(|| missing("unit"))?;
    let calculation = Calculation::parse(input.calculation.ok_or_else(|| missing("calculation"))?, &input)?;
    calculation.check(trigger)?;
    let conditions = Condition::parse_all(&input, trigger)?;
    let payout = Payout::parse(&input)?;
    check_trigger(trigger, beneficiary, &payout)?;
    Ok(Rule {
        id: 0,
        name,
        enabled: input.enabled.unwrap_or(true),
        trigger,
        beneficiary,
        unit,
        conditions,
        calculation,
        payout,
    })
}

/// What a REFERRER_INVOICE_PAID rule must be: it pays the account that paid the invoice, as
/// a referrer, on each of its invoices, without a referral to cap.
fn check_trigger(trigger: RuleTrigger, beneficiary: Beneficiary, payout: &Payout) -> AppResult<()> {
    if trigger != RuleTrigger::ReferrerInvoicePaid {
        return Ok(());
    }
    if beneficiary != Beneficiary::Referrer {
        return Err(bad(
            "beneficiary must be REFERRER for a REFERRER_INVOICE_PAID rule: it pays the account whose invoice it is",
        ));
    }
    if !payout.recurring {
        return Err(bad(
            "recurring must be true for a REFERRER_INVOICE_PAID rule: it pays on each of the referrer's invoices",
        ));
    }
    if payout.cap_per_referral.is_some() {
        return Err(bad(
            "capPerReferral does not apply to REFERRER_INVOICE_PAID rules: they pay for no one referral",
        ));
    }
    Ok(())
}

impl Condition {
    /// Every condition the input sets, checked against the trigger, in rank order. One line
    /// per option.
    fn parse_all(input: &RuleInput, trigger: RuleTrigger) -> AppResult<Vec<Condition>> {
        let mut conditions: Vec<Condition> = [
            key_list("productCategories", input.product_categories.as_deref())?.map(Condition::ProductCategories),
            key_list("accountGroups", input.account_groups.as_deref())?.map(Condition::AccountGroups),
            input.billing_scheme.flatten().map(Condition::BillingScheme),
            non_negative("threshold", input.threshold)?.map(|threshold| match trigger {
                RuleTrigger::SpendTotalReached => Condition::SpendTotalAtLeast(threshold),
                _ => Condition::TopUpTotalAtLeast(threshold),
            }),
            window_days(input.window_days)?.map(Condition::WithinDaysOfSignUp),
            key_list(
                "referrerGroups",
                input.referrer_groups.as_ref().and_then(Option::as_deref),
            )?
            .map(Condition::ReferrerGroups),
            invoice_count("invoiceNumber", input.invoice_number)?.map(Condition::InvoiceNumber),
            invoice_count("minActiveReferrals", input.min_active_referrals)?.map(Condition::MinActiveReferrals),
            (input.affiliates_only == Some(true)).then_some(Condition::AffiliatesOnly),
        ]
        .into_iter()
        .flatten()
        .collect();
        for condition in &conditions {
            condition.check(trigger)?;
        }
        if trigger == RuleTrigger::TopUpTotalReached
            && !conditions.iter().any(|c| matches!(c, Condition::TopUpTotalAtLeast(_)))
        {
            return Err(bad(
                "threshold is required for a TOP_UP_TOTAL_REACHED rule (0: any top-up)",
            ));
        }
        if trigger == RuleTrigger::SpendTotalReached
            && !conditions.iter().any(|c| matches!(c, Condition::SpendTotalAtLeast(_)))
        {
            // No threshold: any qualifying spend.
            conditions.push(Condition::SpendTotalAtLeast(Amount::ZERO));
        }
        conditions.sort_by_key(Condition::rank);
        Ok(conditions)
    }

    /// Whether the condition fits a rule with this trigger.
    fn check(&self, trigger: RuleTrigger) -> AppResult<()> {
        match self {
            Condition::ProductCategories(_) if !counts_products(trigger) => Err(bad(
                "productCategories applies to FIRST_PURCHASE, PURCHASE and invoice rules only",
            )),
            Condition::TopUpTotalAtLeast(_) if trigger != RuleTrigger::TopUpTotalReached => Err(bad(
                "threshold applies to TOP_UP_TOTAL_REACHED and SPEND_TOTAL_REACHED rules only",
            )),
            Condition::InvoiceNumber(_) if trigger != RuleTrigger::InvoicePaid => {
                Err(bad("invoiceNumber applies to INVOICE_PAID rules only"))
            }
            Condition::MinActiveReferrals(_) if trigger != RuleTrigger::ReferrerInvoicePaid => {
                Err(bad("minActiveReferrals applies to REFERRER_INVOICE_PAID rules only"))
            }
            Condition::WithinDaysOfSignUp(_) if trigger == RuleTrigger::Signup => Err(bad(
                "windowDays does not apply to SIGNUP rules: a sign-up is always within days of itself",
            )),
            Condition::ProductCategories(_)
            | Condition::AccountGroups(_)
            | Condition::BillingScheme(_)
            | Condition::TopUpTotalAtLeast(_)
            | Condition::WithinDaysOfSignUp(_)
            | Condition::ReferrerGroups(_)
            | Condition::SpendTotalAtLeast(_)
            | Condition::InvoiceNumber(_)
            | Condition::MinActiveReferrals(_)
            | Condition::AffiliatesOnly => Ok(()),
        }
    }

    /// A fixed order, so that one definition has one stored form whatever the order it was
    /// written in (a preset applied again compares equal).
    pub fn rank(&self) -> u8 {
        match self {
            Condition::ProductCategories(_) => 0,
            Condition::AccountGroups(_) => 1,
            Condition::BillingScheme(_) => 2,
            Condition::TopUpTotalAtLeast(_) => 3,
            Condition::WithinDaysOfSignUp(_) => 4,
            Condition::ReferrerGroups(_) => 5,
            Condition::SpendTotalAtLeast(_) => 6,
            Condition::InvoiceNumber(_) => 7,
            Condition::MinActiveReferrals(_) => 8,
            Condition::AffiliatesOnly => 9,
        }
    }
}

/// `windowDays`: 1 to `MAX_DAYS`; absent or 0 (what a form with no window sends): no window.
fn window_days(days: Option<i32>) -> AppResult<Option<u16>> {
    match days {
        None | Some(0) => Ok(None),
        Some(days) => u16::try_from(days)
            .ok()
            .filter(|days| *days <= MAX_DAYS)
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "windowDays must be between 1 and {MAX_DAYS} (0 or null: no window)"
                ))
            }),
    }
}

/// Whether events of `trigger` carry products (a purchase's, an invoice's lines) that
/// `productCategories` can limit.
fn counts_products(trigger: RuleTrigger) -> bool {
    matches!(trigger, RuleTrigger::FirstPurchase | RuleTrigger::Purchase) || counts_spend(trigger)
}

/// Whether events of `trigger` are invoices, with spend a percentage can be taken of.
pub(super) fn counts_spend(trigger: RuleTrigger) -> bool {
    matches!(
        trigger,
        RuleTrigger::InvoicePaid | RuleTrigger::SpendTotalReached | RuleTrigger::ReferrerInvoicePaid
    )
}

/// `invoiceNumber`, `maxOccurrences`, `minActiveReferrals`: 1 to `MAX_INVOICES`; absent or 0 (what a form with the
/// field empty sends): not set.
fn invoice_count(field: &str, count: Option<i32>) -> AppResult<Option<u16>> {
    match count {
        None | Some(0) => Ok(None),
        Some(count) => u16::try_from(count)
            .ok()
            .filter(|count| *count <= MAX_INVOICES)
            .map(Some)
            .ok_or_else(|| {
                bad(format!(
                    "{field} must be between 1 and {MAX_INVOICES} (0 or null: not set)"
                ))
            }),
    }
}

/// The tiers of a TIERS rule: 1 to `MAX_TIERS`, each from a distinct number of active
/// referrals (1 to `MAX_INVOICES`) with an amount above 0; kept in ascending order.
fn parse_tiers(tiers: Option<&[TierInput]>) -> AppResult<Vec<Tier>> {
    let tiers = tiers.ok_or_else(|| bad("tiers are required for a TIERS rule: [{minActive, amount}]"))?;
    if tiers.len() > MAX_TIERS {
        return Err(bad(format!("tiers: at most {MAX_TIERS}")));
    }
    let mut parsed = tiers
        .iter()
        .map(|tier| {
            let min_active = invoice_count("tiers: minActive", Some(tier.min_active))?
                .ok_or_else(|| bad(format!("tiers: minActive must be between 1 and {MAX_INVOICES}")))?;
            if !tier.amount.is_positive() {
                return Err(bad("tiers: each amount must be greater than 0"));
            }
            Ok(Tier {
                min_active,
                amount: tier.amount,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    parsed.sort_by_key(|tier| tier.min_active);
    if parsed.windows(2).any(|pair| pair[0].min_active == pair[1].min_active) {
        return Err(bad("tiers: each minActive may appear once"));
    }
    Ok(parsed)
}

/// A calculation as the API spells it.
fn calculation_word(kind: enums::Calculation) -> &'static str {
    match kind {
        enums::Calculation::Fixed => "FIXED",
        enums::Calculation::ProductRate => "PRODUCT_RATE",
        enums::Calculation::Percent => "PERCENT",
        enums::Calculation::PerActiveReferral => "PER_ACTIVE_REFERRAL",
        enums::Calculation::Tiers => "TIERS",
        enums::Calculation::PlanPrice => "PLAN_PRICE",
    }
}

fn non_negative(field: &str, value: Option<Amount>) -> AppResult<Option<Amount>> {
    match value {
        Some(amount) if amount.micros() < 0 => Err(bad(format!("{field} must not be negative"))),
        value => Ok(value),
    }
}

/// A list condition as lower-case keys, sorted and without repeats; absent or empty (what a
/// form with nothing picked sends): no condition.
fn key_list(field: &str, values: Option<&[String]>) -> AppResult<Option<Vec<String>>> {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if values.len() > MAX_CONDITION_VALUES {
        return Err(bad(format!("{field} may name at most {MAX_CONDITION_VALUES} values")));
    }
    let mut keys = values
        .iter()
        .map(|v| key_text(field, v))
        .collect::<AppResult<Vec<_>>>()?;
    keys.sort();
    keys.dedup();
    Ok(Some(keys))
}

/// A calculation as written (its value, tiers or plan base from `input`), checked on its own.
pub(super) fn parse_calculation(kind: enums::Calculation, input: &RuleInput) -> AppResult<Calculation> {
    Calculation::parse(kind, input)
}

impl Calculation {
    fn parse(kind: enums::Calculation, input: &RuleInput) -> AppResult<Calculation> {
        let tiers = input
            .tiers
            .as_ref()
            .and_then(Option::as_deref)
            .filter(|tiers| !tiers.is_empty());
        if tiers.is_some() && kind != enums::Calculation::Tiers {
            return Err(bad("tiers applies to TIERS rules only"));
        }
        let base = input.plan_price_base.flatten();
        if base.is_some() && kind != enums::Calculation::PlanPrice {
            return Err(bad("planPriceBase applies to PLAN_PRICE rules only"));
        }
        let percent = |value: Option<Amount>| match value {
            Some(value) if value.is_positive() && value.micros() <= MAX_PERCENT * 1_000_000 => Ok(value),
            _ => Err(bad(format!(
                "value must be a percentage greater than 0 and at most {MAX_PERCENT} for a {} rule",
                calculation_word(kind)
            ))),
        };
        let positive = |value: Option<Amount>| match value {
            Some(value) if value.is_positive() => Ok(value),
            _ => Err(bad(format!(
                "value must be greater than 0 for a {} rule",
                calculation_word(kind)
            ))),
        };
        let no_value = || match input.value {
            Some(_) => Err(bad(format!(
                "value is not taken by a {} rule: {}",
                calculation_word(kind),
                match kind {
                    enums::Calculation::ProductRate => "the rate comes from the product",
                    _ => "the amounts come from its tiers",
                }
            ))),
            None => Ok(()),
        };
        Ok(match kind {
            enums::Calculation::Fixed => Calculation::Fixed(positive(input.value)?),
            enums::Calculation::ProductRate => {
                no_value()?;
                Calculation::ProductRate
            }
            enums::Calculation::Percent => Calculation::Percent(percent(input.value)?),
            enums::Calculation::PerActiveReferral => Calculation::PerActiveReferral(positive(input.value)?),
            enums::Calculation::Tiers => {
                no_value()?;
                Calculation::Tiers(parse_tiers(tiers)?)
            }
            enums::Calculation::PlanPrice => Calculation::PlanPrice {
                percent: percent(input.value)?,
                base: base.unwrap_or_default(),
            },
        })
    }

    fn check(&self, trigger: RuleTrigger) -> AppResult<()> {
        let only = |triggers: &str| {
            Err(bad(format!(
                "calculation {} applies to {triggers} rules only",
                calculation_word(self.kind())
            )))
        };
        match self {
            Calculation::ProductRate if !matches!(trigger, RuleTrigger::FirstPurchase | RuleTrigger::Purchase) => {
                only("FIRST_PURCHASE and PURCHASE")
            }
            Calculation::Percent(_) if !counts_spend(trigger) && trigger != RuleTrigger::Purchase => {
                only("INVOICE_PAID, SPEND_TOTAL_REACHED, REFERRER_INVOICE_PAID and PURCHASE")
            }
            Calculation::PlanPrice { .. } if !counts_spend(trigger) => {
                only("INVOICE_PAID, SPEND_TOTAL_REACHED and REFERRER_INVOICE_PAID")
            }
            Calculation::PlanPrice {
                base: PlanPriceBase::Referee | PlanPriceBase::Lesser,
                ..
            } if trigger == RuleTrigger::ReferrerInvoicePaid => Err(bad(
                "planPriceBase REFEREE and LESSER need a referee's invoice: a REFERRER_INVOICE_PAID rule pays on the \
                 referrer's own (BENEFICIARY)",
            )),
            Calculation::PerActiveReferral(_) | Calculation::Tiers(_)
                if trigger != RuleTrigger::ReferrerInvoicePaid =>
            {
                only("REFERRER_INVOICE_PAID")
            }
            Calculation::Fixed(_)
            | Calculation::ProductRate
            | Calculation::Percent(_)
            | Calculation::PerActiveReferral(_)
            | Calculation::Tiers(_)
            | Calculation::PlanPrice { .. } => Ok(()),
        }
    }

    pub fn kind(&self) -> enums::Calculation {
        match self {
            Calculation::Fixed(_) => enums::Calculation::Fixed,
            Calculation::ProductRate => enums::Calculation::ProductRate,
            Calculation::Percent(_) => enums::Calculation::Percent,
            Calculation::PerActiveReferral(_) => enums::Calculation::PerActiveReferral,
            Calculation::Tiers(_) => enums::Calculation::Tiers,
            Calculation::PlanPrice { .. } => enums::Calculation::PlanPrice,
        }
    }
}

impl Payout {
    fn parse(input: &RuleInput) -> AppResult<Payout> {
        let hold_days = match input.hold_days {
            None => 0,
            Some(days) => u16::try_from(days)
                .ok()
                .filter(|days| *days <= MAX_DAYS)
                .ok_or_else(|| bad(format!("holdDays must be between 0 and {MAX_DAYS} (0: no hold)")))?,
        };
        let expires_after_days = match input.expires_after_days {
            None => None,
            Some(days) => Some(
                u16::try_from(days)
                    .ok()
                    .filter(|days| (1..=MAX_DAYS).contains(days))
                    .ok_or_else(|| {
                        bad(format!(
                            "expiresAfterDays must be between 1 and {MAX_DAYS} (null: never expires)"
                        ))
                    })?,
            ),
        };
        let recurring = input.recurring.unwrap_or(false);
        let max_occurrences = invoice_count("maxOccurrences", input.max_occurrences)?;
        if max_occurrences.is_some() && !(recurring && input.trigger == Some(RuleTrigger::InvoicePaid)) {
            return Err(bad(
                "maxOccurrences applies to recurring INVOICE_PAID rules only: a rule that is not recurring pays once",
            ));
        }
        let cap_per_referral = match input.cap_per_referral {
            Some(cap) if !cap.is_positive() => {
                return Err(bad("capPerReferral must be greater than 0 (null: no cap)"));
            }
            cap => cap,
        };
        let spend_limit = match (
            key_list("redeemableCategories", input.redeemable_categories.as_deref())?,
            key_list(
                "excludedCategories",
                input.excluded_categories.as_ref().and_then(Option::as_deref),
            )?,
        ) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "excludedCategories: set redeemableCategories (where the credit may be spent) or \
                     excludedCategories (where it may not), not both",
                ));
            }
            (Some(only), None) => Some(SpendLimit::Only(only)),
            (None, Some(except)) => Some(SpendLimit::Except(except)),
            (None, None) => None,
        };
        if spend_limit.is_some() && input.unit != Some(Unit::Credit) {
            let field = match spend_limit {
                Some(SpendLimit::Except(_)) => "excludedCategories",
                _ => "redeemableCategories",
            };
            return Err(bad(format!(
                "{field} applies to CREDIT rules only: credit is what invoices are paid with"
            )));
        }
        Ok(Payout {
            recurring,
            hold_days,
            expires_after_days,
            max_occurrences,
            cap_per_referral,
            spend_limit,
        })
    }
}

/// The stored part of a rule (`reward_rules.spec`); the rest are columns. An option this
/// server does not know (written by a later release, then rolled back) makes the rule
/// unreadable rather than quietly ignored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    conditions: Vec<Condition>,
    calculation: Calculation,
    #[serde(default)]
    payout: Payout,
}

impl Rule {
    /// The `spec` column of this rule.
    pub fn spec_json(&self) -> String {
        let spec = Spec {
            conditions: self.conditions.clone(),
            calculation: self.calculation.clone(),
            payout: self.payout.clone(),
        };
        serde_json::to_string(&spec).unwrap_or_default()
    }

    /// The rule as a JSON value: for the audit log, and for each reward's `rule_snapshot`
    /// (the rule as it was when it paid).
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Whether `other` defines the same rule (ids aside).
    pub fn same_definition(&self, other: &Rule) -> bool {
        Rule {
            id: other.id,
            ..self.clone()
        } == *other
    }

    /// The categories the rule is limited to; `None` when every category counts.
    pub fn product_categories(&self) -> Option<&[String]> {
        self.conditions.iter().find_map(|c| match c {
            Condition::ProductCategories(categories) => Some(categories.as_slice()),
            _ => None,
        })
    }

    /// The account groups the rule is limited to; `None` when every group counts.
    pub fn account_groups(&self) -> Option<&[String]> {
        self.conditions.iter().find_map(|c| match c {
            Condition::AccountGroups(groups) => Some(groups.as_slice()),
            _ => None,
        })
    }

    /// The referrers' account groups the rule is limited to; `None` when every group counts.
    pub fn referrer_groups(&self) -> Option<&[String]> {
        self.conditions.iter().find_map(|c| match c {
            Condition::ReferrerGroups(groups) => Some(groups.as_slice()),
            _ => None,
        })
    }

    /// The billing scheme the rule is limited to; `None` when both count.
    pub fn billing_scheme(&self) -> Option<BillingScheme> {
        self.conditions.iter().find_map(|c| match c {
            Condition::BillingScheme(scheme) => Some(*scheme),
            _ => None,
        })
    }

    /// The days after the referee's sign-up within which events count; `None`: no window.
    pub fn window_days(&self) -> Option<u16> {
        self.conditions.iter().find_map(|c| match c {
            Condition::WithinDaysOfSignUp(days) => Some(*days),
            _ => None,
        })
    }

    /// The total that qualifies: of top-ups for a TOP_UP_TOTAL_REACHED rule, of qualifying
    /// spend for a SPEND_TOTAL_REACHED one.
    pub fn threshold(&self) -> Option<Amount> {
        self.conditions.iter().find_map(|c| match c {
            Condition::TopUpTotalAtLeast(threshold) | Condition::SpendTotalAtLeast(threshold) => Some(*threshold),
            _ => None,
        })
    }

    /// The active referrals a REFERRER_INVOICE_PAID rule needs.
    pub fn min_active_referrals(&self) -> Option<u16> {
        self.conditions.iter().find_map(|c| match c {
            Condition::MinActiveReferrals(n) => Some(*n),
            _ => None,
        })
    }

    /// The tiers of a TIERS rule.
    pub fn tiers(&self) -> Option<&[Tier]> {
        match &self.calculation {
            Calculation::Tiers(tiers) => Some(tiers),
            _ => None,
        }
    }

    /// Whose plan a PLAN_PRICE rule takes its percentage of.
    pub fn plan_price_base(&self) -> Option<PlanPriceBase> {
        match self.calculation {
            Calculation::PlanPrice { base, .. } => Some(base),
            _ => None,
        }
    }

    /// The referee's paid invoice an INVOICE_PAID rule pays on (from, when recurring).
    pub fn invoice_number(&self) -> Option<u16> {
        self.conditions.iter().find_map(|c| match c {
            Condition::InvoiceNumber(number) => Some(*number),
            _ => None,
        })
    }
}

/// Reads a stored spec. `Err` names what is wrong, for an INTERNAL error: a row this server
/// did not write.
pub fn read_spec(text: &str) -> Result<(Vec<Condition>, Calculation, Payout), serde_json::Error> {
    let mut spec: Spec = serde_json::from_str(text)?;
    spec.conditions.sort_by_key(Condition::rank);
    Ok((spec.conditions, spec.calculation, spec.payout))
}

/// Amounts are stored as whole millionths, as in every column.
mod micros {
    use crate::amount::Amount;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(amount: &Amount, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(amount.micros())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        i64::deserialize(deserializer).map(Amount::from_micros)
    }
}

/// An optional amount, stored as whole millionths or null.
mod optional_micros {
    use crate::amount::Amount;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(amount: &Option<Amount>, serializer: S) -> Result<S::Ok, S::Error> {
        match amount {
            Some(amount) => serializer.serialize_some(&amount.micros()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Amount>, D::Error> {
        Option::<i64>::deserialize(deserializer).map(|micros| micros.map(Amount::from_micros))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signup() -> RuleInput {
        RuleInput {
            name: " Sign-up credit ".into(),
            trigger: Some(RuleTrigger::Signup),
            beneficiary: Some(Beneficiary::Referee),
            unit: Some(Unit::Credit),
            calculation: Some(enums::Calculation::Fixed),
            value: Some(Amount::from_micros(1_000_000)),
            ..Default::default()
        }
    }

    fn top_up() -> RuleInput {
        RuleInput {
            trigger: Some(RuleTrigger::TopUpTotalReached),
            threshold: Some(Amount::from_micros(10_000_000)),
            ..signup()
        }
    }

    fn first_purchase() -> RuleInput {
        RuleInput {
            trigger: Some(RuleTrigger::FirstPurchase),
            calculation: Some(enums::Calculation::ProductRate),
            value: None,
            ..signup()
        }
    }

    /// The message of a refusal, or a panic when the input was taken.
    fn refused(input: RuleInput) -> String {
        match parse(input) {
            Err(AppError::BadInput(message)) => message,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_rule_gets_its_defaults() {
        let rule = parse(signup()).expect("valid");
        assert_eq!(
            rule,
            Rule {
                id: 0,
                name: "Sign-up credit".into(),
                enabled: true,
                trigger: RuleTrigger::Signup,
                beneficiary: Beneficiary::Referee,
                unit: Unit::Credit,
                conditions: vec![],
                calculation: Calculation::Fixed(Amount::from_micros(1_000_000)),
                payout: Payout::default(),
            }
        );
    }

    #[test]
    fn every_built_option_is_parsed_into_its_variant() {
        let rule = parse(RuleInput {
            enabled: Some(false),
            recurring: Some(true),
            hold_days: Some(30),
            expires_after_days: Some(180),
            account_groups: Some(vec!["Enterprise".into(), "business".into(), "business".into()]),
            billing_scheme: Some(Some(BillingScheme::Prepaid)),
            ..top_up()
        })
        .expect("valid");
        assert!(!rule.enabled);
        assert_eq!(
            rule.conditions,
            vec![
                Condition::AccountGroups(vec!["business".into(), "enterprise".into()]),
                Condition::BillingScheme(BillingScheme::Prepaid),
                Condition::TopUpTotalAtLeast(Amount::from_micros(10_000_000)),
            ]
        );
        assert_eq!(
            rule.payout,
            Payout {
                recurring: true,
                hold_days: 30,
                expires_after_days: Some(180),
                ..Payout::default()
            }
        );
        let rate = parse(RuleInput {
            product_categories: Some(vec!["residential".into()]),
            ..first_purchase()
        })
        .expect("valid");
        assert_eq!(rate.calculation, Calculation::ProductRate);
        assert_eq!(rate.product_categories(), Some(&["residential".to_owned()][..]));
        assert_eq!(rate.threshold(), None);
        assert_eq!(rate.billing_scheme(), None);
    }

    #[test]
    fn neutral_values_a_form_sends_back_are_not_set() {
        let neutral = parse(RuleInput {
            recurring: Some(false),
            hold_days: Some(0),
            expires_after_days: None,
            product_categories: Some(vec![]),
            account_groups: Some(vec![]),
            billing_scheme: None,
            redeemable_categories: Some(vec![]),
            min_active_referrals: Some(0),
            affiliates_only: Some(false),
            ..signup()
        })
        .expect("valid");
        assert_eq!(neutral, parse(signup()).expect("valid"));
        // A threshold of 0 is a condition, not a neutral value: any top-up.
        let any = parse(RuleInput {
            threshold: Some(Amount::ZERO),
            ..top_up()
        })
        .expect("valid");
        assert_eq!(any.threshold(), Some(Amount::ZERO));
    }

    #[test]
    fn what_does_not_fit_is_refused_naming_the_field() {
        let cases: Vec<(RuleInput, &str)> = vec![
            (
                RuleInput {
                    name: "  ".into(),
                    ..signup()
                },
                "name",
            ),
            (
                RuleInput {
                    trigger: None,
                    ..signup()
                },
                "trigger",
            ),
            (
                RuleInput {
                    value: None,
                    ..signup()
                },
                "value",
            ),
            (
                RuleInput {
                    value: Some(Amount::ZERO),
                    ..signup()
                },
                "value",
            ),
            (
                RuleInput {
                    value: Some(Amount::from_micros(-1)),
                    ..signup()
                },
                "value",
            ),
            (
                RuleInput {
                    value: Some(Amount::from_micros(1)),
                    ..first_purchase()
                },
                "value",
            ),
            (
                RuleInput {
                    calculation: Some(enums::Calculation::ProductRate),
                    value: None,
                    ..signup()
                },
                "calculation",
            ),
            (
                RuleInput {
                    threshold: Some(Amount::ZERO),
                    ..signup()
                },
                "threshold",
            ),
            (
                RuleInput {
                    threshold: None,
                    ..top_up()
                },
                "threshold",
            ),
            (
                RuleInput {
                    threshold: Some(Amount::from_micros(-1)),
                    ..top_up()
                },
                "threshold",
            ),
            (
                RuleInput {
                    product_categories: Some(vec!["residential".into()]),
                    ..top_up()
                },
                "productCategories",
            ),
            (
                RuleInput {
                    product_categories: Some(vec!["not a key!".into()]),
                    ..first_purchase()
                },
                "productCategories",
            ),
            (
                RuleInput {
                    account_groups: Some((0..=MAX_CONDITION_VALUES).map(|n| format!("g{n}")).collect()),
                    ..signup()
                },
                "accountGroups",
            ),
            (
                RuleInput {
                    hold_days: Some(-1),
                    ..signup()
                },
                "holdDays",
            ),
            (
                RuleInput {
                    hold_days: Some(3651),
                    ..signup()
                },
                "holdDays",
            ),
            (
                RuleInput {
                    expires_after_days: Some(0),
                    ..signup()
                },
                "expiresAfterDays",
            ),
            (
                RuleInput {
                    expires_after_days: Some(-5),
                    ..signup()
                },
                "expiresAfterDays",
            ),
            (
                RuleInput {
                    expires_after_days: Some(3651),
                    ..signup()
                },
                "expiresAfterDays",
            ),
        ];
        for (input, field) in cases {
            let message = refused(input.clone());
            assert!(message.contains(field), "{field}: {message:?} ({input:?})");
        }
        // The edges of the ranges are taken.
        for (hold, expiry) in [(0, 1), (3650, 3650)] {
            let rule = parse(RuleInput {
                hold_days: Some(hold),
                expires_after_days: Some(expiry),
                ..signup()
            })
            .expect("valid");
            assert_eq!(
                (i32::from(rule.payout.hold_days), rule.payout.expires_after_days),
                (hold, Some(expiry as u16))
            );
        }
    }

    #[test]
    fn affiliates_only_is_a_condition_and_false_is_none() {
        let only = parse(RuleInput {
            affiliates_only: Some(true),
            ..signup()
        })
        .expect("valid");
        assert_eq!(only.conditions, vec![Condition::AffiliatesOnly]);
        let not = parse(RuleInput {
            affiliates_only: Some(false),
            ..signup()
        })
        .expect("valid");
        assert!(not.conditions.is_empty());
    }

    #[test]
    fn credit_may_be_limited_to_categories_or_away_from_them_but_not_both() {
        let only = parse(RuleInput {
            redeemable_categories: Some(vec!["Compute".into()]),
            ..signup()
        })
        .expect("valid");
        assert_eq!(only.payout.spend_limit, Some(SpendLimit::Only(vec!["compute".into()])));
        let except = parse(RuleInput {
            excluded_categories: Some(Some(vec!["domains".into()])),
            redeemable_categories: Some(vec![]),
            ..signup()
        })
        .expect("valid");
        assert_eq!(
            except.payout.spend_limit,
            Some(SpendLimit::Except(vec!["domains".into()]))
        );
        let (_, _, payout) = read_spec(&except.spec_json()).expect("readable");
        assert_eq!(payout, except.payout);
        assert!(
            refused(RuleInput {
                redeemable_categories: Some(vec!["compute".into()]),
                excluded_categories: Some(Some(vec!["domains".into()])),
                ..signup()
            })
            .starts_with("excludedCategories: set redeemableCategories")
        );
        assert!(
            refused(RuleInput {
                unit: Some(Unit::Points),
                redeemable_categories: Some(vec!["compute".into()]),
                ..signup()
            })
            .starts_with("redeemableCategories applies to CREDIT rules only")
        );
    }

    fn invoice_paid() -> RuleInput {
        RuleInput {
            trigger: Some(RuleTrigger::InvoicePaid),
            calculation: Some(enums::Calculation::Percent),
            value: Some(Amount::from_micros(5_000_000)),
            ..signup()
        }
    }

    #[test]
    fn invoice_and_spend_options_are_parsed_and_checked_against_the_trigger() {
        let run = parse(RuleInput {
            invoice_number: Some(2),
            recurring: Some(true),
            max_occurrences: Some(12),
            cap_per_referral: Some(Amount::from_micros(300_000_000)),
            product_categories: Some(vec!["Internet".into()]),
            ..invoice_paid()
        })
        .expect("valid");
        assert_eq!(run.invoice_number(), Some(2));
        assert_eq!(run.payout.max_occurrences, Some(12));
        assert_eq!(run.payout.cap_per_referral, Some(Amount::from_micros(300_000_000)));
        assert_eq!(run.calculation, Calculation::Percent(Amount::from_micros(5_000_000)));
        let (conditions, calculation, payout) = read_spec(&run.spec_json()).expect("readable");
        assert_eq!(
            (conditions, calculation, payout),
            (run.conditions.clone(), run.calculation.clone(), run.payout)
        );

        let spend = parse(RuleInput {
            trigger: Some(RuleTrigger::SpendTotalReached),
            ..invoice_paid()
        })
        .expect("valid");
        assert_eq!(
            spend.threshold(),
            Some(Amount::ZERO),
            "no threshold: any qualifying spend"
        );
        for (input, message) in [
            (
                RuleInput {
                    max_occurrences: Some(3),
                    ..invoice_paid()
                },
                "maxOccurrences applies to recurring INVOICE_PAID rules only",
            ),
            (
                RuleInput {
                    invoice_number: Some(1),
                    ..top_up()
                },
                "invoiceNumber applies to INVOICE_PAID rules only",
            ),
            (
                RuleInput {
                    invoice_number: Some(1001),
                    ..invoice_paid()
                },
                "invoiceNumber must be between 1 and 1000",
            ),
            (
                RuleInput {
                    calculation: Some(enums::Calculation::Percent),
                    ..top_up()
                },
                "calculation PERCENT applies to INVOICE_PAID, SPEND_TOTAL_REACHED, REFERRER_INVOICE_PAID and PURCHASE rules only",
            ),
            (
                RuleInput {
                    value: Some(Amount::from_micros(1_000_000_001)),
                    ..invoice_paid()
                },
                "value must be a percentage greater than 0 and at most 1000",
            ),
            (
                RuleInput {
                    cap_per_referral: Some(Amount::ZERO),
                    ..invoice_paid()
                },
                "capPerReferral must be greater than 0",
            ),
        ] {
            let refusal = refused(input);
            assert!(refusal.starts_with(message), "{refusal}");
        }
    }

    #[test]
    fn a_window_counts_days_after_sign_up_and_none_is_no_window() {
        for none in [None, Some(0)] {
            let rule = parse(RuleInput {
                window_days: none,
                ..top_up()
            })
            .expect("valid");
            assert_eq!(rule.window_days(), None, "{none:?}");
        }
        for days in [1, 90, 3650] {
            let rule = parse(RuleInput {
                window_days: Some(days),
                ..top_up()
            })
            .expect("valid");
            assert_eq!(rule.window_days().map(i32::from), Some(days));
        }
        for days in [-1, 3651, i32::MAX] {
            assert_eq!(
                refused(RuleInput {
                    window_days: Some(days),
                    ..top_up()
                }),
                "windowDays must be between 1 and 3650 (0 or null: no window)"
            );
        }
        assert!(
            refused(RuleInput {
                window_days: Some(30),
                ..signup()
            })
            .starts_with("windowDays does not apply to SIGNUP rules")
        );
    }

    #[test]
    fn the_stored_form_reads_back_to_the_same_rule() {
        let rule = parse(RuleInput {
            hold_days: Some(30),
            expires_after_days: Some(180),
            recurring: Some(true),
            billing_scheme: Some(Some(BillingScheme::Prepaid)),
            account_groups: Some(vec!["business".into()]),
            referrer_groups: Some(Some(vec!["Reseller".into()])),
            window_days: Some(90),
            ..top_up()
        })
        .expect("valid");
        let stored: serde_json::Value = serde_json::from_str(&rule.spec_json()).expect("JSON");
        assert_eq!(
            stored,
            json!({
                "conditions": [
                    { "accountGroups": ["business"] },
                    { "billingScheme": "PREPAID" },
                    { "topUpTotalAtLeast": 10_000_000 },
                    { "withinDaysOfSignUp": 90 },
                    { "referrerGroups": ["reseller"] },
                ],
                "calculation": { "fixed": 1_000_000 },
                "payout": { "recurring": true, "holdDays": 30, "expiresAfterDays": 180 },
            })
        );
        let (conditions, calculation, payout) = read_spec(&rule.spec_json()).expect("readable");
        assert_eq!(
            (conditions, calculation, payout),
            (rule.conditions.clone(), rule.calculation.clone(), rule.payout)
        );
    }

    /// What `m20261204_000001_rule_spec` writes for existing rows must read as the rule it was.
    #[test]
    fn specs_as_the_migration_writes_them_are_read() {
        let seeded = r#"{"conditions":[{"productCategories":["residential"]}],"calculation":"productRate","payout":{"recurring":false,"holdDays":0,"expiresAfterDays":null}}"#;
        assert_eq!(
            read_spec(seeded).expect("readable"),
            (
                vec![Condition::ProductCategories(vec!["residential".into()])],
                Calculation::ProductRate,
                Payout::default()
            )
        );
        let top_up = r#"{"conditions":[{"billingScheme":"PREPAID"},{"topUpTotalAtLeast":0}],"calculation":{"fixed":5000000},"payout":{"recurring":true,"holdDays":0,"expiresAfterDays":null}}"#;
        assert_eq!(
            read_spec(top_up).expect("readable"),
            (
                vec![
                    Condition::BillingScheme(BillingScheme::Prepaid),
                    Condition::TopUpTotalAtLeast(Amount::ZERO)
                ],
                Calculation::Fixed(Amount::from_micros(5_000_000)),
                Payout {
                    recurring: true,
                    ..Payout::default()
                }
            )
        );
        assert!(read_spec("{}").is_err(), "a spec without a calculation is not a rule");
        for unknown in [
            r#"{"conditions":[{"windowDays":30}],"calculation":"productRate"}"#,
            r#"{"calculation":"productRate","payout":{"maxPayouts":5}}"#,
            r#"{"calculation":"productRate","percent":5}"#,
        ] {
            assert!(
                read_spec(unknown).is_err(),
                "an option this server does not know: {unknown}"
            );
        }
    }
}
