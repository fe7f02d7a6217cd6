//! The evaluator: a pure function of a rule, what an event established and the time, that
//! answers what to pay (to whom, how much, when it becomes available and when it expires) or
//! why nothing is paid. It reads nothing and writes nothing; paying, and refusing to pay
//! twice, is `rewards` and the ledger's job.

use super::spec::{Calculation, Condition, PlanPriceBase, Rule, Tier};
use crate::amount::Amount;
use crate::service::ledger::{SpendLimit, unit_word};
use chrono::{DateTime, Duration, Utc};
use entity::enums::{Beneficiary, BillingScheme, RuleTrigger, Unit};
use serde::{Deserialize, Serialize};

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
    /// The referrer shares its payment fingerprint with another account, the eligible
    /// referrer of it: it cannot earn as a referrer (`DUPLICATE_REFERRER`).
    pub referrer_ineligible: bool,
    /// The referrer is an approved affiliate.
    pub referrer_affiliate: bool,
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
        first_taken_at: DateTime<Utc>,
        window_hours: i64,
    },
}

/// One line of an invoice: what it was for (a product category, as a key) and its amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub category: String,
    pub amount: Amount,
}

/// A paid invoice as the rules count it: its lines, the part paid in cash (the rest was paid
/// with credit or coupons, and counts for nothing), and what refunds took back of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidInvoice {
    pub lines: Vec<InvoiceLine>,
    pub cash: Amount,
    /// The part of the total refunded so far (at most the total).
    pub refunded: Amount,
}

impl PaidInvoice {
    pub fn total(&self) -> Amount {
        Amount::from_micros(self.lines.iter().map(|line| line.amount.micros()).sum())
    }

    /// Whether a line of `categories` (any line, when `None`) has an amount.
    fn has_line_of(&self, categories: Option<&[String]>) -> bool {
        self.lines
            .iter()
            .any(|line| line.amount.is_positive() && counted(categories, &line.category))
    }

    /// The cash paid for the lines of `categories` (every line, when `None`), less the share of
    /// it that refunds took back: cash is spread over the lines in proportion to their amounts.
    /// Rounded down to the millionth.
    pub fn qualifying(&self, categories: Option<&[String]>) -> Amount {
        let total = i128::from(self.total().micros());
        if total <= 0 {
            return Amount::ZERO;
        }
        let lines: i128 = self
            .lines
            .iter()
            .filter(|line| counted(categories, &line.category))
            .map(|line| i128::from(line.amount.micros()))
            .sum();
        let standing = (total - i128::from(self.refunded.micros())).max(0);
        let paid = i128::from(self.cash.micros()) * lines / total;
        Amount::from_micros(i64::try_from(paid * standing / total).unwrap_or(0))
    }
}

/// Whether a line of `category` counts for a rule limited to `categories` (`None`: all).
fn counted(categories: Option<&[String]>, category: &str) -> bool {
    categories.is_none_or(|categories| categories.iter().any(|c| c == category))
}

/// What the rules paid so far, for one referral, to each side in each unit (rewards not
/// voided, less what was taken back): what `capPerReferral` measures against. Read only when
/// a rule has a cap, with the rules whose once-per-referral reward is paid already, so that
/// a payment the ledger would refuse is not counted against the cap either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaidForReferral {
    totals: Vec<(Beneficiary, Unit, Amount)>,
    paid_once: Vec<i64>,
}

impl PaidForReferral {
    pub fn of(&self, beneficiary: Beneficiary, unit: Unit) -> Amount {
        self.totals
            .iter()
            .find(|(b, u, _)| *b == beneficiary && *u == unit)
            .map_or(Amount::ZERO, |(_, _, amount)| *amount)
    }

    pub fn add(&mut self, beneficiary: Beneficiary, unit: Unit, amount: Amount) {
        match self.totals.iter_mut().find(|(b, u, _)| *b == beneficiary && *u == unit) {
            Some((_, _, paid)) => *paid = Amount::from_micros(paid.micros().saturating_add(amount.micros())),
            None => self.totals.push((beneficiary, unit, amount)),
        }
    }

    /// Notes that `rule_id`'s once-per-referral reward was paid.
    pub fn paid_once(&mut self, rule_id: i64) {
        self.paid_once.push(rule_id);
    }

    /// Whether `rule` pays once per referral and has paid.
    pub fn has_paid(&self, rule: &Rule) -> bool {
        !rule.payout.recurring && self.paid_once.contains(&rule.id)
    }
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
        /// What the customer paid, if the billing system said.
        amount: Option<Amount>,
    },
    InvoicePaid {
        /// The invoice's number among the account's paid invoices (1 for its first).
        number: u32,
        invoice: &'a PaidInvoice,
        /// The account's invoices numbered before it, as refunds left them.
        earlier: &'a [PaidInvoice],
        /// The account's active referrals when the invoice was paid; counted only when a
        /// REFERRER_INVOICE_PAID rule is enabled.
        active_referrals: Option<u32>,
    },
}

impl EventFacts<'_> {
    pub fn trigger(&self) -> RuleTrigger {
        match self {
            EventFacts::Signup => RuleTrigger::Signup,
            EventFacts::PaymentMethodVerified => RuleTrigger::PaymentMethodVerified,
            EventFacts::TopUp { .. } => RuleTrigger::TopUpTotalReached,
            EventFacts::Purchase { .. } => RuleTrigger::FirstPurchase,
            EventFacts::InvoicePaid { .. } => RuleTrigger::InvoicePaid,
        }
    }

    /// Whether rules of `trigger` are evaluated on this event: an invoice is both a paid
    /// invoice and spend.
    pub fn fires_on(&self, trigger: RuleTrigger) -> bool {
        trigger == self.trigger()
            || matches!(self, EventFacts::InvoicePaid { .. })
                && matches!(
                    trigger,
                    RuleTrigger::SpendTotalReached | RuleTrigger::ReferrerInvoicePaid
                )
            || matches!(self, EventFacts::Purchase { .. }) && trigger == RuleTrigger::Purchase
    }

    fn active_referrals(&self) -> u32 {
        match self {
            EventFacts::InvoicePaid { active_referrals, .. } => active_referrals.unwrap_or(0),
            _ => 0,
        }
    }

    /// An invoice's number among the account's paid invoices.
    pub fn invoice_number(&self) -> Option<u32> {
        match self {
            EventFacts::InvoicePaid { number, .. } => Some(*number),
            _ => None,
        }
    }

    /// The account's qualifying spend on `categories` before this invoice and with it.
    fn spend(&self, categories: Option<&[String]>) -> Option<(Amount, Amount)> {
        let EventFacts::InvoicePaid { invoice, earlier, .. } = self else {
            return None;
        };
        let before = earlier
            .iter()
            .map(|invoice| invoice.qualifying(categories).micros())
            .sum::<i64>();
        let after = before.saturating_add(invoice.qualifying(categories).micros());
        Some((Amount::from_micros(before), Amount::from_micros(after)))
    }
}

/// Everything the evaluator may know: the event, the program, the referral and the account
/// the event is about (the referee; for REFERRER_INVOICE_PAID rules, the referrer itself).
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub program_enabled: bool,
    pub account_id: i64,
    pub account_disqualified: bool,
    /// The account itself cannot earn as a referrer (`DUPLICATE_REFERRER`).
    pub account_ineligible_referrer: bool,
    /// The account itself is an approved affiliate.
    pub account_affiliate: bool,
    pub referral: Option<ReferralFacts>,
    /// The total of the referrer's paid invoice recorded last: its plan's price.
    pub referrer_plan_price: Option<Amount>,
    pub account_group: Option<&'a str>,
    /// The referrer's account group, when the account has a referrer with one.
    pub referrer_group: Option<&'a str>,
    pub billing_scheme: BillingScheme,
    /// When the account signed up (its creation).
    pub signed_up_at: DateTime<Utc>,
    /// When the event happened (`occurredAt`, or when it was recorded).
    pub occurred_at: DateTime<Utc>,
    pub event: EventFacts<'a>,
    /// What the referral paid so far (for `capPerReferral`); the planner adds each payment
    /// of the event as it decides it.
    pub paid: PaidForReferral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pay {
        account_id: i64,
        /// None for a REFERRER_INVOICE_PAID rule: it pays for no one referral.
        referral_id: Option<i64>,
        unit: Unit,
        amount: Amount,
        reason: String,
        /// The end of the rule's hold; `None`: available at once.
        available_at: Option<DateTime<Utc>>,
        /// When what is left of the reward expires; `None`: never.
        expires_at: Option<DateTime<Utc>>,
    },
    Skip {
        reason: String,
    },
}

/// What `rule` decides about the event in `facts`, at `now`.
pub fn evaluate(rule: &Rule, facts: &Facts<'_>, now: DateTime<Utc>) -> Verdict {
    decide(rule, facts, now).unwrap_or_else(|reason| Verdict::Skip { reason })
}

fn decide(rule: &Rule, facts: &Facts<'_>, now: DateTime<Utc>) -> Result<Verdict, String> {
    if !facts.program_enabled {
        return Err("program is off".into());
    }
    if !facts.event.fires_on(rule.trigger) {
        return Err(format!(
            "pays on {}, not on {}",
            trigger_words(rule.trigger),
            trigger_words(facts.event.trigger())
        ));
    }
    let (account_id, referral_id) = beneficiary(rule, facts)?;
    fires(rule.trigger, &facts.event)?;
    let mut how = Vec::new();
    for condition in &rule.conditions {
        how.extend(holds(condition, rule, facts)?);
    }
    within_occurrences(rule, &facts.event)?;
    let mut amount = match &rule.calculation {
        Calculation::Fixed(value) => *value,
        Calculation::ProductRate => {
            let EventFacts::Purchase {
                product_name,
                product_rate,
                quantity_gb,
                ..
            } = &facts.event
            else {
                return Err("a product rate pays on purchases only".into());
            };
            let rate = product_rate.ok_or_else(|| format!("product {product_name} has no product rate set"))?;
            how.push(format!("rate {rate} × {quantity_gb} GB"));
            rate.checked_mul(*quantity_gb).unwrap_or(Amount::ZERO)
        }
        Calculation::Percent(percent) => {
            let (base, of) = percentage_base(rule, &facts.event)?;
            how.push(format!("{percent} % of {base}{of}"));
            percent_of(*percent, base)
        }
        Calculation::PerActiveReferral(value) => {
            let active = facts.event.active_referrals();
            if active == 0 {
                return Err("no active referrals".into());
            }
            how.push(format!("{value} × {active} active referrals"));
            value.checked_mul_int(i64::from(active)).unwrap_or(Amount::ZERO)
        }
        Calculation::Tiers(tiers) => {
            let (tier, active) = tier(tiers, facts.event.active_referrals())?;
            how.push(format!("{active} active referrals: the tier from {}", tier.min_active));
            tier.amount
        }
        Calculation::PlanPrice { percent, base } => {
            let (price, whose) = plan_price(rule, *base, facts)?;
            how.push(format!("{percent} % of {whose} plan, {price}"));
            percent_of(*percent, price)
        }
    };
    if !amount.is_positive() {
        return Err("the reward computes to nothing".into());
    }
    if let Some(cap) = rule.payout.cap_per_referral {
        let paid = facts.paid.of(rule.beneficiary, rule.unit);
        let room = Amount::from_micros(cap.micros().saturating_sub(paid.micros()));
        if !room.is_positive() {
            return Err(format!(
                "the cap per referral of {cap} {} is reached ({paid} paid)",
                unit_word(rule.unit)
            ));
        }
        if amount > room {
            how.push(format!("{amount} cut to fit the cap per referral of {cap}"));
            amount = room;
        }
    }
    let hold_days = i64::from(rule.payout.hold_days);
    let available_at = (hold_days > 0).then(|| now + Duration::days(hold_days));
    let expires_at = rule
        .payout
        .expires_after_days
        .map(|days| available_at.unwrap_or(now) + Duration::days(i64::from(days)));
    let mut reason = format!(
        "{amount} {} to the {}",
        unit_word(rule.unit),
        beneficiary_words(rule.beneficiary)
    );
    if !how.is_empty() {
        reason += &format!(" ({})", how.join("; "));
    }
    if let Some(at) = available_at {
        reason += &format!(", on hold until {}", at.format("%Y-%m-%d"));
    }
    if let Some(at) = expires_at {
        reason += &format!(", expires {}", at.format("%Y-%m-%d"));
    }
    Ok(Verdict::Pay {
        account_id,
        referral_id,
        unit: rule.unit,
        amount,
        reason,
        available_at,
        expires_at,
    })
}

/// What each trigger means beyond the event's kind: a top-up that succeeded, a purchase that is
/// the account's first (any purchase, for PURCHASE).
fn fires(trigger: RuleTrigger, event: &EventFacts<'_>) -> Result<(), String> {
    match event {
        EventFacts::Purchase { .. } if trigger == RuleTrigger::Purchase => Ok(()),
        EventFacts::Signup | EventFacts::PaymentMethodVerified | EventFacts::InvoicePaid { .. } => Ok(()),
        EventFacts::TopUp { successful, .. } => match successful {
            true => Ok(()),
            false => Err("the top-up did not succeed".into()),
        },
        EventFacts::Purchase { order, .. } => match order {
            PurchaseOrder::First => Ok(()),
            PurchaseOrder::Later => {
                Err("only the first purchase counts, and this account made its first purchase before".into())
            }
            PurchaseOrder::EarlierButLate {
                first_taken_at,
                window_hours,
            } => Err(format!(
                "only the first purchase counts: this one happened before the one taken as first \
                 ({first_taken_at}) but arrived after the {window_hours} h reorder window, so arrival order stands"
            )),
        },
    }
}

/// Who the rule pays and for which referral: the referrer or the referee of the account's
/// referral, or, for a REFERRER_INVOICE_PAID rule, the account itself (no referral). A
/// disqualified account on either side of the referral, or the account itself, stops it.
fn beneficiary(rule: &Rule, facts: &Facts<'_>) -> Result<(i64, Option<i64>), String> {
    const INELIGIBLE: &str = "the referrer cannot earn as a referrer (DUPLICATE_REFERRER): another account with \
                              its payment method is the eligible referrer";
    if rule.trigger == RuleTrigger::ReferrerInvoicePaid {
        return match (facts.account_disqualified, facts.account_ineligible_referrer) {
            (true, _) => Err("the account is disqualified".into()),
            (false, true) => Err(INELIGIBLE.into()),
            (false, false) => Ok((facts.account_id, None)),
        };
    }
    let referral = facts.referral.ok_or("account has no referrer")?;
    if referral.referrer_disqualified {
        return Err("the referrer is disqualified".into());
    }
    if referral.referee_disqualified {
        return Err("the referred account is disqualified".into());
    }
    let account_id = match rule.beneficiary {
        Beneficiary::Referrer if referral.referrer_ineligible => return Err(INELIGIBLE.into()),
        Beneficiary::Referrer => referral.referrer_id,
        Beneficiary::Referee => referral.referee_id,
    };
    Ok((account_id, Some(referral.referral_id)))
}

/// The highest tier that `active` referrals reach.
fn tier(tiers: &[Tier], active: u32) -> Result<(Tier, u32), String> {
    tiers
        .iter()
        .rev()
        .find(|tier| u32::from(tier.min_active) <= active)
        .map(|tier| (*tier, active))
        .ok_or_else(|| {
            format!(
                "{active} active referrals, below the lowest tier ({})",
                tiers.first().map_or(0, |tier| tier.min_active)
            )
        })
}

/// The plan price a PLAN_PRICE rule takes its percentage of, and whose it is in words. The
/// invoice paid is the plan price of the account that paid it (the referee, or for a
/// REFERRER_INVOICE_PAID rule the referrer); a referrer's, on a referee's invoice, is its own
/// last paid invoice.
fn plan_price(rule: &Rule, base: PlanPriceBase, facts: &Facts<'_>) -> Result<(Amount, &'static str), String> {
    let EventFacts::InvoicePaid { invoice, .. } = &facts.event else {
        return Err("a plan price pays on invoices only".into());
    };
    let paid = invoice.total();
    let beneficiarys = match (rule.trigger, rule.beneficiary) {
        (RuleTrigger::ReferrerInvoicePaid, _) | (_, Beneficiary::Referee) => Ok(paid),
        (_, Beneficiary::Referrer) => facts
            .referrer_plan_price
            .ok_or_else(|| "the referrer has no paid invoice yet to take a plan price from".to_owned()),
    };
    match base {
        PlanPriceBase::Beneficiary => Ok((beneficiarys?, "the beneficiary's")),
        PlanPriceBase::Referee => Ok((paid, "the referee's")),
        PlanPriceBase::Lesser => Ok((beneficiarys?.min(paid), "the lesser")),
    }
}

/// A recurring INVOICE_PAID rule with `maxOccurrences` pays on that many invoices from its
/// first (`invoiceNumber`, or the 1st), and not after.
fn within_occurrences(rule: &Rule, event: &EventFacts<'_>) -> Result<(), String> {
    let (Some(max), Some(number)) = (rule.payout.max_occurrences, event.invoice_number()) else {
        return Ok(());
    };
    let first = u32::from(rule.invoice_number().unwrap_or(1));
    let last = first + u32::from(max) - 1;
    match number <= last {
        true => Ok(()),
        false => Err(format!(
            "pays on {max} invoices, the {} to the {}; this is the {}",
            ordinal(first),
            ordinal(last),
            ordinal(number)
        )),
    }
}

/// What a PERCENT rule takes its percentage of, and how the reason says it: the invoice's
/// qualifying amount (INVOICE_PAID), the part of the qualifying spend above the threshold
/// that this invoice adds (SPEND_TOTAL_REACHED), or what a purchase cost (PURCHASE).
fn percentage_base(rule: &Rule, event: &EventFacts<'_>) -> Result<(Amount, String), String> {
    let categories = rule.product_categories();
    if let EventFacts::Purchase { amount, .. } = event {
        let amount = amount.ok_or("the purchase came without its amount, so a percentage of it is unknown")?;
        return Ok((amount, " paid for the purchase".into()));
    }
    let EventFacts::InvoicePaid { invoice, .. } = event else {
        return Err("a percentage pays on invoices and purchases only".into());
    };
    match rule.trigger {
        RuleTrigger::SpendTotalReached => {
            let threshold = rule.threshold().unwrap_or(Amount::ZERO);
            let (before, after) = event.spend(categories).unwrap_or_default();
            let above = |spend: Amount| (spend.micros() - threshold.micros()).max(0);
            let added = Amount::from_micros(above(after) - above(before));
            Ok((added, format!(" spent above {threshold}")))
        }
        _ => Ok((invoice.qualifying(categories), " paid in cash".into())),
    }
}

/// `percent` % of `base`, rounded down to the cent.
fn percent_of(percent: Amount, base: Amount) -> Amount {
    let micros = i128::from(base.micros()) * i128::from(percent.micros()) / 100_000_000;
    Amount::from_micros(i64::try_from(micros).unwrap_or(0)).floor_cent()
}

/// 1st, 2nd, 3rd, 4th, 11th, 21st...
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Whether a condition holds: `Ok` with what the reason should say of it (if anything), or
/// `Err` with why the rule does not pay.
fn holds(condition: &Condition, rule: &Rule, facts: &Facts<'_>) -> Result<Option<String>, String> {
    match condition {
        Condition::ProductCategories(categories) => match &facts.event {
            EventFacts::InvoicePaid { invoice, .. } if invoice.has_line_of(Some(categories)) => Ok(None),
            EventFacts::InvoicePaid { .. } => Err(format!(
                "no line of the invoice is of a category that counts (counted: {})",
                categories.join(", ")
            )),
            EventFacts::Purchase { product_category, .. } if categories.iter().any(|c| c == product_category) => {
                Ok(None)
            }
            EventFacts::Purchase { product_category, .. } => Err(format!(
                "product category {product_category} does not count (counted: {})",
                categories.join(", ")
            )),
            _ => Err("product categories limit purchases and invoices only".into()),
        },
        Condition::AccountGroups(groups) => in_groups(groups, facts.account_group, "account group"),
        Condition::BillingScheme(scheme) if *scheme == facts.billing_scheme => Ok(None),
        Condition::BillingScheme(scheme) => Err(format!(
            "the rule counts {} accounts only, and this account is {}",
            scheme_word(*scheme),
            scheme_word(facts.billing_scheme)
        )),
        Condition::TopUpTotalAtLeast(threshold) => match &facts.event {
            EventFacts::TopUp { total, .. } if total >= threshold && total.is_positive() => {
                Ok(Some(format!("top-ups {total} of {threshold}")))
            }
            EventFacts::TopUp { total, .. } => Err(format!("top-ups {total} of {threshold}")),
            _ => Err("a top-up total counts on top-ups only".into()),
        },
        // A REFERRER_INVOICE_PAID rule's referrer is the account itself.
        Condition::ReferrerGroups(groups) if rule.trigger == RuleTrigger::ReferrerInvoicePaid => {
            in_groups(groups, facts.account_group, "the referrer's account group")
        }
        Condition::ReferrerGroups(groups) => in_groups(groups, facts.referrer_group, "the referrer's account group"),
        Condition::AffiliatesOnly => {
            let affiliate = match rule.trigger {
                RuleTrigger::ReferrerInvoicePaid => facts.account_affiliate,
                _ => facts.referral.is_some_and(|referral| referral.referrer_affiliate),
            };
            match affiliate {
                true => Ok(None),
                false => Err("the rule pays approved affiliates only, and the referrer is not one".into()),
            }
        }
        Condition::MinActiveReferrals(needed) => {
            let active = facts.event.active_referrals();
            match active >= u32::from(*needed) {
                true => Ok(Some(format!("{active} active referrals"))),
                false => Err(format!("{active} active referrals of the {needed} the rule needs")),
            }
        }
        Condition::SpendTotalAtLeast(threshold) => {
            let Some((_, spend)) = facts.event.spend(rule.product_categories()) else {
                return Err("a spend total counts on invoices only".into());
            };
            match spend >= *threshold && spend.is_positive() {
                true => Ok(Some(format!("qualifying spend {spend} of {threshold}"))),
                false => Err(format!("qualifying spend {spend} of {threshold}")),
            }
        }
        Condition::InvoiceNumber(first) => {
            let Some(number) = facts.event.invoice_number() else {
                return Err("an invoice number counts on invoices only".into());
            };
            let first = u32::from(*first);
            match (rule.payout.recurring, number) {
                (false, number) if number == first => Ok(None),
                (true, number) if number >= first => Ok(None),
                (recurring, number) => Err(format!(
                    "pays on the referee's {} paid invoice{}; this is its {}",
                    ordinal(first),
                    if recurring { " and every one after it" } else { "" },
                    ordinal(number)
                )),
            }
        }
        Condition::WithinDaysOfSignUp(days) => {
            let window_ends = facts.signed_up_at + Duration::days(i64::from(*days));
            if facts.occurred_at <= window_ends {
                Ok(None)
            } else {
                Err(format!(
                    "happened {} days after sign-up, after the rule's {days}-day window",
                    (facts.occurred_at - facts.signed_up_at).num_days()
                ))
            }
        }
    }
}

/// Whether `group` (`whose` it is, in words) is one of `groups`; no group is none of them.
fn in_groups(groups: &[String], group: Option<&str>, whose: &str) -> Result<Option<String>, String> {
    match group {
        Some(group) if groups.iter().any(|g| g == group) => Ok(None),
        group => Err(format!(
            "{whose} {} does not count (counted: {})",
            group.unwrap_or("none"),
            groups.join(", ")
        )),
    }
}

/// What a rule pays, on what and on which conditions, in words: `preset --list` shows each
/// preset's rules this way.
pub fn summary(rule: &Rule) -> String {
    let amount = match &rule.calculation {
        Calculation::Fixed(value) => format!("{value} {}", unit_word(rule.unit)),
        Calculation::ProductRate => format!("{} at the product's rate × GB", unit_word(rule.unit)),
        Calculation::PerActiveReferral(value) => format!("{value} {} per active referral", unit_word(rule.unit)),
        Calculation::Tiers(tiers) => format!(
            "{} by active referrals ({})",
            unit_word(rule.unit),
            tiers
                .iter()
                .map(|tier| format!("{}+: {}", tier.min_active, tier.amount))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Calculation::PlanPrice { percent, base } => format!(
            "{percent} % in {} of {} plan",
            unit_word(rule.unit),
            match base {
                PlanPriceBase::Beneficiary => "the beneficiary's",
                PlanPriceBase::Referee => "the referee's",
                PlanPriceBase::Lesser => "the lesser",
            }
        ),
        Calculation::Percent(percent) => match rule.trigger {
            RuleTrigger::SpendTotalReached => format!(
                "{percent} % in {} of the spend above the threshold",
                unit_word(rule.unit)
            ),
            _ => format!("{percent} % in {} of the cash paid", unit_word(rule.unit)),
        },
    };
    let mut text = format!(
        "{amount} to the {} on {}",
        beneficiary_words(rule.beneficiary),
        trigger_words(rule.trigger)
    );
    for condition in &rule.conditions {
        text += &match condition {
            Condition::ProductCategories(categories) => format!(", products of {}", categories.join(", ")),
            Condition::AccountGroups(groups) => format!(", referees of {}", groups.join(", ")),
            Condition::BillingScheme(scheme) => format!(", {} referees", scheme_word(*scheme)),
            Condition::TopUpTotalAtLeast(threshold) => format!(", once top-ups reach {threshold}"),
            Condition::WithinDaysOfSignUp(days) => format!(", within {days} days of sign-up"),
            Condition::ReferrerGroups(groups) => format!(", referrers of {}", groups.join(", ")),
            Condition::SpendTotalAtLeast(threshold) => format!(", once qualifying spend reaches {threshold}"),
            Condition::InvoiceNumber(number) => format!(
                ", {} the {} paid invoice",
                if rule.payout.recurring { "from" } else { "on" },
                ordinal(u32::from(*number))
            ),
            Condition::MinActiveReferrals(n) => format!(", while it has {n} active referrals"),
            Condition::AffiliatesOnly => ", approved affiliates only".to_owned(),
        };
    }
    text += match rule.payout.recurring {
        true => ", every time",
        false => ", once per referral",
    };
    if let Some(max) = rule.payout.max_occurrences {
        text += &format!(", on at most {max} invoices");
    }
    if let Some(cap) = rule.payout.cap_per_referral {
        text += &format!(", at most {cap} per referral");
    }
    if rule.payout.hold_days > 0 {
        text += &format!(", held {} days", rule.payout.hold_days);
    }
    if let Some(days) = rule.payout.expires_after_days {
        text += &format!(", expires {days} days after it becomes available");
    }
    match &rule.payout.spend_limit {
        Some(SpendLimit::Only(categories)) => text += &format!(", spendable on {} only", categories.join(", ")),
        Some(SpendLimit::Except(categories)) => text += &format!(", not spendable on {}", categories.join(", ")),
        None => {}
    }
    text
}

/// What a decision says when the unique index refused a second payment.
pub fn already_paid_reason(rule: &Rule) -> String {
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
        RuleTrigger::InvoicePaid => "a paid invoice",
        RuleTrigger::SpendTotalReached => "qualifying spend",
        RuleTrigger::ReferrerInvoicePaid => "the referrer's own paid invoice",
        RuleTrigger::Purchase => "a purchase",
    }
}

fn beneficiary_words(beneficiary: Beneficiary) -> &'static str {
    match beneficiary {
        Beneficiary::Referrer => "referrer",
        Beneficiary::Referee => "referred friend",
    }
}

fn scheme_word(scheme: BillingScheme) -> &'static str {
    match scheme {
        BillingScheme::Prepaid => "prepaid",
        BillingScheme::Postpaid => "postpaid",
    }
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
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::service::rules::spec::Payout;
    use chrono::TimeZone;

    const REFERRER: i64 = 1;
    const REFEREE: i64 = 2;
    const REFERRAL: i64 = 7;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn units(n: i64) -> Amount {
        Amount::from_micros(n * 1_000_000)
    }

    fn rule(trigger: RuleTrigger, beneficiary: Beneficiary, calculation: Calculation) -> Rule {
        Rule {
            id: 1,
            name: "r".into(),
            enabled: true,
            trigger,
            beneficiary,
            unit: Unit::Credit,
            conditions: vec![],
            calculation,
            payout: Payout::default(),
        }
    }

    fn with(mut rule: Rule, condition: Condition) -> Rule {
        rule.conditions.push(condition);
        rule.conditions.sort_by_key(Condition::rank);
        rule
    }

    /// Program 1's four rules, as the cloud-credit preset writes them (10.00 each side).
    fn verified(beneficiary: Beneficiary) -> Rule {
        with(
            rule(
                RuleTrigger::PaymentMethodVerified,
                beneficiary,
                Calculation::Fixed(units(10)),
            ),
            Condition::BillingScheme(BillingScheme::Postpaid),
        )
    }

    fn topped_up(beneficiary: Beneficiary, threshold: i64) -> Rule {
        with(
            with(
                rule(
                    RuleTrigger::TopUpTotalReached,
                    beneficiary,
                    Calculation::Fixed(units(10)),
                ),
                Condition::BillingScheme(BillingScheme::Prepaid),
            ),
            Condition::TopUpTotalAtLeast(units(threshold)),
        )
    }

    /// Program 3's rule, as the points-store preset writes it.
    fn residential_points() -> Rule {
        Rule {
            unit: Unit::Points,
            ..with(
                rule(
                    RuleTrigger::FirstPurchase,
                    Beneficiary::Referrer,
                    Calculation::ProductRate,
                ),
                Condition::ProductCategories(vec!["residential".into()]),
            )
        }
    }

    fn signup_bonus() -> Rule {
        rule(
            RuleTrigger::Signup,
            Beneficiary::Referee,
            Calculation::Fixed(Amount::from_micros(2_500_000)),
        )
    }

    fn referral() -> ReferralFacts {
        ReferralFacts {
            referral_id: REFERRAL,
            referrer_id: REFERRER,
            referee_id: REFEREE,
            referrer_disqualified: false,
            referee_disqualified: false,
            referrer_ineligible: false,
            referrer_affiliate: false,
        }
    }

    fn facts(event: EventFacts<'static>) -> Facts<'static> {
        Facts {
            program_enabled: true,
            account_id: REFEREE,
            account_disqualified: false,
            account_ineligible_referrer: false,
            account_affiliate: false,
            referral: Some(referral()),
            referrer_plan_price: None,
            account_group: None,
            referrer_group: None,
            billing_scheme: BillingScheme::Postpaid,
            signed_up_at: now() - Duration::days(10),
            occurred_at: now(),
            event,
            paid: PaidForReferral::default(),
        }
    }

    fn prepaid(event: EventFacts<'static>) -> Facts<'static> {
        Facts {
            billing_scheme: BillingScheme::Prepaid,
            ..facts(event)
        }
    }

    fn top_up(total: i64) -> EventFacts<'static> {
        EventFacts::TopUp {
            successful: true,
            total: Amount::from_micros(total),
        }
    }

    fn purchase(order: PurchaseOrder, category: &'static str, rate: Option<i64>, gb: i64) -> EventFacts<'static> {
        EventFacts::Purchase {
            order,
            product_name: "Product",
            product_category: category,
            product_rate: rate.map(Amount::from_micros),
            quantity_gb: Amount::from_micros(gb),
            amount: None,
        }
    }

    fn first_residential(gb: i64) -> EventFacts<'static> {
        purchase(PurchaseOrder::First, "residential", Some(15_000_000), gb)
    }

    #[derive(Debug)]
    enum Expect {
        /// (beneficiary, amount in micros)
        Pay(i64, i64),
        /// A part of the reason.
        Skip(&'static str),
    }
    use Expect::{Pay, Skip};

    /// Rules × events × facts: what each decides. Program 1 (credit on a verified payment
    /// method or on top-ups, by billing scheme), program 3 (points for a first residential
    /// purchase), groups, sign-up bonuses, and what stops any rule.
    #[test]
    fn the_rule_matrix() {
        let business = |f: Facts<'static>| Facts {
            account_group: Some("business"),
            ..f
        };
        let off = |f: Facts<'static>| Facts {
            program_enabled: false,
            ..f
        };
        let alone = |f: Facts<'static>| Facts { referral: None, ..f };
        let disqualified = |referrer: bool, referee: bool| {
            move |f: Facts<'static>| Facts {
                referral: Some(ReferralFacts {
                    referrer_disqualified: referrer,
                    referee_disqualified: referee,
                    ..referral()
                }),
                ..f
            }
        };
        let groups = |rule: Rule, groups: &[&str]| {
            with(
                rule,
                Condition::AccountGroups(groups.iter().map(|g| (*g).to_owned()).collect()),
            )
        };
        // Signed up `days` before the event (and `seconds` more).
        let signed_up = |days: i64, seconds: i64| {
            move |f: Facts<'static>| Facts {
                signed_up_at: f.occurred_at - Duration::days(days) - Duration::seconds(seconds),
                ..f
            }
        };
        let within = |rule: Rule, days: u16| with(rule, Condition::WithinDaysOfSignUp(days));
        let referrer_in = |group: &'static str| {
            move |f: Facts<'static>| Facts {
                referrer_group: Some(group),
                ..f
            }
        };
        let for_referrers = |rule: Rule, groups: &[&str]| {
            with(
                rule,
                Condition::ReferrerGroups(groups.iter().map(|g| (*g).to_owned()).collect()),
            )
        };
        let late = PurchaseOrder::EarlierButLate {
            first_taken_at: now(),
            window_hours: 72,
        };
        let cases: Vec<(&str, Rule, Facts<'static>, Expect)> = vec![
            // Program 1, postpaid: a verified payment method pays both sides.
            (
                "pm → referrer",
                verified(Beneficiary::Referrer),
                facts(EventFacts::PaymentMethodVerified),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "pm → newcomer",
                verified(Beneficiary::Referee),
                facts(EventFacts::PaymentMethodVerified),
                Pay(REFEREE, 10_000_000),
            ),
            (
                "pm of a prepaid account",
                verified(Beneficiary::Referrer),
                prepaid(EventFacts::PaymentMethodVerified),
                Skip("counts postpaid accounts only, and this account is prepaid"),
            ),
            (
                "pm rule on a top-up",
                verified(Beneficiary::Referrer),
                facts(top_up(50_000_000)),
                Skip("pays on a verified payment method, not on top-ups"),
            ),
            // Without the billing-scheme condition a payment-method rule pays any account.
            (
                "pm rule without a scheme, prepaid account",
                rule(
                    RuleTrigger::PaymentMethodVerified,
                    Beneficiary::Referrer,
                    Calculation::Fixed(units(3)),
                ),
                prepaid(EventFacts::PaymentMethodVerified),
                Pay(REFERRER, 3_000_000),
            ),
            // Program 1, prepaid: top-ups reaching the threshold pay both sides.
            (
                "top-ups below the threshold",
                topped_up(Beneficiary::Referrer, 10),
                prepaid(top_up(3_000_000)),
                Skip("top-ups 3.00 of 10.00"),
            ),
            (
                "top-ups a millionth short",
                topped_up(Beneficiary::Referrer, 10),
                prepaid(top_up(9_999_999)),
                Skip("top-ups 9.999999 of 10.00"),
            ),
            (
                "top-ups at the threshold",
                topped_up(Beneficiary::Referrer, 10),
                prepaid(top_up(10_000_000)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "top-ups past the threshold → newcomer",
                topped_up(Beneficiary::Referee, 10),
                prepaid(top_up(25_000_000)),
                Pay(REFEREE, 10_000_000),
            ),
            (
                "threshold 0: any top-up",
                topped_up(Beneficiary::Referrer, 0),
                prepaid(top_up(1)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "threshold 0: nothing topped up",
                topped_up(Beneficiary::Referrer, 0),
                prepaid(top_up(0)),
                Skip("top-ups 0.00 of 0.00"),
            ),
            (
                "a failed top-up",
                topped_up(Beneficiary::Referrer, 0),
                prepaid(EventFacts::TopUp {
                    successful: false,
                    total: units(20),
                }),
                Skip("did not succeed"),
            ),
            (
                "top-ups of a postpaid account",
                topped_up(Beneficiary::Referrer, 10),
                facts(top_up(50_000_000)),
                Skip("counts prepaid accounts only, and this account is postpaid"),
            ),
            (
                "top-up rule on a pm",
                topped_up(Beneficiary::Referrer, 10),
                prepaid(EventFacts::PaymentMethodVerified),
                Skip("pays on top-ups, not on a verified payment method"),
            ),
            // Referrer groups look at the referrer, account groups at the referee.
            (
                "a business referrer",
                for_referrers(verified(Beneficiary::Referrer), &["business"]),
                referrer_in("business")(facts(EventFacts::PaymentMethodVerified)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "a residential referrer",
                for_referrers(verified(Beneficiary::Referrer), &["business"]),
                referrer_in("residential")(facts(EventFacts::PaymentMethodVerified)),
                Skip("the referrer's account group residential does not count (counted: business)"),
            ),
            (
                "a referrer without a group",
                for_referrers(verified(Beneficiary::Referee), &["business"]),
                facts(EventFacts::PaymentMethodVerified),
                Skip("the referrer's account group none does not count"),
            ),
            (
                "a business referee, a residential referrer",
                for_referrers(verified(Beneficiary::Referrer), &["business"]),
                referrer_in("residential")(business(facts(EventFacts::PaymentMethodVerified))),
                Skip("the referrer's account group residential does not count"),
            ),
            // A window counts from the referee's sign-up to the event's time, its last second
            // included.
            (
                "inside the window",
                within(verified(Beneficiary::Referrer), 90),
                signed_up(89, 0)(facts(EventFacts::PaymentMethodVerified)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "the window's last second",
                within(verified(Beneficiary::Referrer), 90),
                signed_up(90, 0)(facts(EventFacts::PaymentMethodVerified)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "a second after the window",
                within(verified(Beneficiary::Referrer), 90),
                signed_up(90, 1)(facts(EventFacts::PaymentMethodVerified)),
                Skip("happened 90 days after sign-up, after the rule's 90-day window"),
            ),
            (
                "day 100 of a 90-day window",
                within(residential_points(), 90),
                signed_up(100, 0)(facts(first_residential(1_000_000))),
                Skip("happened 100 days after sign-up, after the rule's 90-day window"),
            ),
            // Program 3: rate × GB on the first residential purchase.
            (
                "first residential purchase",
                residential_points(),
                facts(first_residential(2_500_000)),
                Pay(REFERRER, 37_500_000),
            ),
            (
                "first residential, 10 GB",
                residential_points(),
                facts(first_residential(10_000_000)),
                Pay(REFERRER, 150_000_000),
            ),
            (
                "rate × GB rounds toward zero",
                residential_points(),
                facts(purchase(
                    PurchaseOrder::First,
                    "residential",
                    Some(3_333_333),
                    3_000_000,
                )),
                Pay(REFERRER, 9_999_999),
            ),
            (
                "first datacenter purchase",
                residential_points(),
                facts(purchase(PurchaseOrder::First, "datacenter", Some(5_000_000), 6_000_000)),
                Skip("product category datacenter does not count (counted: residential)"),
            ),
            (
                "a later purchase",
                residential_points(),
                facts(purchase(
                    PurchaseOrder::Later,
                    "residential",
                    Some(15_000_000),
                    1_000_000,
                )),
                Skip("only the first purchase counts"),
            ),
            (
                "an earlier purchase, past the window",
                residential_points(),
                facts(purchase(late, "residential", Some(15_000_000), 1_000_000)),
                Skip("72 h reorder window"),
            ),
            (
                "a product without a rate",
                residential_points(),
                facts(purchase(PurchaseOrder::First, "residential", None, 1_000_000)),
                Skip("product Product has no product rate set"),
            ),
            (
                "a rate of 0",
                residential_points(),
                facts(purchase(PurchaseOrder::First, "residential", Some(0), 1_000_000)),
                Skip("computes to nothing"),
            ),
            (
                "first-purchase rule on a pm",
                residential_points(),
                facts(EventFacts::PaymentMethodVerified),
                Skip("pays on a first purchase, not on a verified payment method"),
            ),
            (
                "fixed credit on any first purchase → newcomer",
                rule(
                    RuleTrigger::FirstPurchase,
                    Beneficiary::Referee,
                    Calculation::Fixed(units(5)),
                ),
                facts(purchase(PurchaseOrder::First, "datacenter", None, 4_000_000)),
                Pay(REFEREE, 5_000_000),
            ),
            (
                "categories widened",
                with(
                    rule(
                        RuleTrigger::FirstPurchase,
                        Beneficiary::Referrer,
                        Calculation::ProductRate,
                    ),
                    Condition::ProductCategories(vec!["datacenter".into(), "residential".into()]),
                ),
                facts(purchase(PurchaseOrder::First, "datacenter", Some(5_000_000), 6_000_000)),
                Pay(REFERRER, 30_000_000),
            ),
            // Account groups.
            (
                "group counted",
                groups(verified(Beneficiary::Referrer), &["business"]),
                business(facts(EventFacts::PaymentMethodVerified)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "group among several",
                groups(verified(Beneficiary::Referrer), &["business", "enterprise"]),
                business(facts(EventFacts::PaymentMethodVerified)),
                Pay(REFERRER, 10_000_000),
            ),
            (
                "another group",
                groups(verified(Beneficiary::Referrer), &["residential"]),
                business(facts(EventFacts::PaymentMethodVerified)),
                Skip("account group business does not count (counted: residential)"),
            ),
            (
                "no group",
                groups(verified(Beneficiary::Referrer), &["business"]),
                facts(EventFacts::PaymentMethodVerified),
                Skip("account group none does not count"),
            ),
            // Sign-up bonuses.
            (
                "sign-up bonus",
                signup_bonus(),
                facts(EventFacts::Signup),
                Pay(REFEREE, 2_500_000),
            ),
            (
                "sign-up rule on a pm",
                signup_bonus(),
                facts(EventFacts::PaymentMethodVerified),
                Skip("pays on sign-up, not on a verified payment method"),
            ),
            (
                "sign-up without a referral",
                signup_bonus(),
                alone(facts(EventFacts::Signup)),
                Skip("account has no referrer"),
            ),
            // What stops every rule, in that order.
            (
                "program off",
                verified(Beneficiary::Referrer),
                off(facts(EventFacts::PaymentMethodVerified)),
                Skip("program is off"),
            ),
            (
                "program off beats a wrong trigger",
                signup_bonus(),
                off(facts(EventFacts::PaymentMethodVerified)),
                Skip("program is off"),
            ),
            (
                "no referrer",
                verified(Beneficiary::Referrer),
                alone(facts(EventFacts::PaymentMethodVerified)),
                Skip("account has no referrer"),
            ),
            (
                "referrer disqualified → referrer",
                verified(Beneficiary::Referrer),
                disqualified(true, false)(facts(EventFacts::PaymentMethodVerified)),
                Skip("the referrer is disqualified"),
            ),
            (
                "referrer disqualified → newcomer",
                verified(Beneficiary::Referee),
                disqualified(true, false)(facts(EventFacts::PaymentMethodVerified)),
                Skip("the referrer is disqualified"),
            ),
            (
                "newcomer disqualified → referrer",
                verified(Beneficiary::Referrer),
                disqualified(false, true)(facts(EventFacts::PaymentMethodVerified)),
                Skip("the referred account is disqualified"),
            ),
            (
                "newcomer disqualified → newcomer",
                verified(Beneficiary::Referee),
                disqualified(false, true)(facts(EventFacts::PaymentMethodVerified)),
                Skip("the referred account is disqualified"),
            ),
            (
                "a disqualified newcomer's first purchase",
                residential_points(),
                disqualified(false, true)(facts(first_residential(1_000_000))),
                Skip("the referred account is disqualified"),
            ),
        ];
        let mut failures = Vec::new();
        for (name, rule, facts, expected) in &cases {
            let verdict = evaluate(rule, facts, now());
            let ok = match (expected, &verdict) {
                (
                    Pay(account, micros),
                    Verdict::Pay {
                        account_id,
                        referral_id,
                        amount,
                        unit,
                        ..
                    },
                ) => {
                    (account_id, amount.micros(), *referral_id, *unit) == (account, *micros, Some(REFERRAL), rule.unit)
                }
                (Skip(part), Verdict::Skip { reason }) => reason.contains(part),
                _ => false,
            };
            if !ok {
                failures.push(format!("{name}: expected {expected:?}, got {verdict:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    fn paid(verdict: Verdict) -> (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match verdict {
            Verdict::Pay {
                reason,
                available_at,
                expires_at,
                ..
            } => (reason, available_at, expires_at),
            Verdict::Skip { reason } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn a_hold_delays_availability_and_expiry_counts_from_availability() {
        let days = |n| Duration::days(n);
        let cases = [
            (0, None, None, None),
            (30, None, Some(now() + days(30)), None),
            (0, Some(180), None, Some(now() + days(180))),
            (30, Some(180), Some(now() + days(30)), Some(now() + days(210))),
            (3650, Some(3650), Some(now() + days(3650)), Some(now() + days(7300))),
        ];
        for (hold_days, expires_after_days, available_at, expires_at) in cases {
            let rule = Rule {
                payout: Payout {
                    recurring: false,
                    hold_days,
                    expires_after_days,
                    ..Payout::default()
                },
                ..verified(Beneficiary::Referrer)
            };
            let (_, available, expires) = paid(evaluate(&rule, &facts(EventFacts::PaymentMethodVerified), now()));
            assert_eq!(
                (available, expires),
                (available_at, expires_at),
                "hold {hold_days}, expiry {expires_after_days:?}"
            );
        }
    }

    #[test]
    fn the_reason_says_what_was_paid_how_and_when() {
        let (reason, ..) = paid(evaluate(
            &residential_points(),
            &facts(first_residential(2_500_000)),
            now(),
        ));
        assert_eq!(reason, "37.50 points to the referrer (rate 15.00 × 2.50 GB)");
        let (reason, ..) = paid(evaluate(
            &topped_up(Beneficiary::Referee, 10),
            &prepaid(top_up(12_000_000)),
            now(),
        ));
        assert_eq!(reason, "10.00 credit to the referred friend (top-ups 12.00 of 10.00)");
        let held = Rule {
            payout: Payout {
                recurring: false,
                hold_days: 30,
                expires_after_days: Some(180),
                ..Payout::default()
            },
            ..verified(Beneficiary::Referrer)
        };
        let (reason, ..) = paid(evaluate(&held, &facts(EventFacts::PaymentMethodVerified), now()));
        assert_eq!(
            reason,
            "10.00 credit to the referrer, on hold until 2026-01-31, expires 2026-07-30"
        );
    }

    #[test]
    fn the_same_rule_and_facts_decide_the_same_at_the_same_time() {
        let rule = Rule {
            payout: Payout {
                recurring: true,
                hold_days: 7,
                expires_after_days: Some(30),
                ..Payout::default()
            },
            ..topped_up(Beneficiary::Referrer, 10)
        };
        let f = prepaid(top_up(10_000_000));
        assert_eq!(evaluate(&rule, &f, now()), evaluate(&rule, &f, now()));
        assert_ne!(
            evaluate(&rule, &f, now()),
            evaluate(&rule, &f, now() + Duration::days(1)),
            "the hold and the expiry count from the time given"
        );
    }

    // Invoices: cash share, spend above a threshold, invoice numbers, caps.

    fn invoice(lines: &[(&str, i64)], cash: i64) -> PaidInvoice {
        PaidInvoice {
            lines: lines
                .iter()
                .map(|(category, amount)| InvoiceLine {
                    category: (*category).to_owned(),
                    amount: units(*amount),
                })
                .collect(),
            cash: units(cash),
            refunded: Amount::ZERO,
        }
    }

    /// The amount a rule pays on an invoice, or why it skips.
    fn pays(
        rule: &Rule,
        number: u32,
        this: &PaidInvoice,
        earlier: &[PaidInvoice],
        paid: i64,
    ) -> Result<Amount, String> {
        let mut facts = facts(EventFacts::Signup);
        let event = EventFacts::InvoicePaid {
            number,
            invoice: this,
            earlier,
            active_referrals: None,
        };
        facts.event = event;
        facts.paid.add(rule.beneficiary, rule.unit, units(paid));
        match evaluate(rule, &facts, now()) {
            Verdict::Pay { amount, .. } => Ok(amount),
            Verdict::Skip { reason } => Err(reason),
        }
    }

    fn percent(trigger: RuleTrigger, value: i64) -> Rule {
        rule(trigger, Beneficiary::Referrer, Calculation::Percent(units(value)))
    }

    #[test]
    fn only_the_cash_share_of_the_counted_lines_is_qualifying_spend() {
        let mixed = invoice(&[("compute", 60), ("storage", 40)], 50);
        let compute = ["compute".to_owned()];
        assert_eq!(mixed.total(), units(100));
        assert_eq!(mixed.qualifying(None), units(50));
        assert_eq!(mixed.qualifying(Some(&compute)), units(30));
        assert_eq!(invoice(&[("storage", 40)], 40).qualifying(Some(&compute)), Amount::ZERO);
        let half_refunded = PaidInvoice {
            refunded: units(50),
            ..mixed.clone()
        };
        assert_eq!(half_refunded.qualifying(Some(&compute)), units(15));
        assert_eq!(
            invoice(&[("compute", 0)], 0).qualifying(None),
            Amount::ZERO,
            "no division by zero"
        );
    }

    #[test]
    fn a_percentage_is_rounded_down_to_the_cent() {
        assert_eq!(
            percent_of(units(150), Amount::from_micros(29_990_000)),
            Amount::from_micros(44_980_000)
        );
        assert_eq!(percent_of(units(10), units(480)), units(48));
        assert_eq!(percent_of(units(5), Amount::from_micros(190_000)), Amount::ZERO);
        assert_eq!(
            percent_of(Amount::from_micros(12_500_000), units(3)),
            Amount::from_micros(370_000)
        );
    }

    #[test]
    fn a_spend_percentage_pays_on_the_part_above_the_threshold_each_invoice_adds() {
        let rule = with(
            percent(RuleTrigger::SpendTotalReached, 10),
            Condition::SpendTotalAtLeast(units(20)),
        );
        let first = invoice(&[("compute", 20)], 20);
        assert_eq!(
            pays(&rule, 1, &first, &[], 0),
            Err("the reward computes to nothing".into()),
            "at the threshold, nothing is above it"
        );
        let second = invoice(&[("compute", 480)], 480);
        assert_eq!(pays(&rule, 2, &second, std::slice::from_ref(&first), 0), Ok(units(48)));
        let crossing = invoice(&[("compute", 50)], 50);
        assert_eq!(pays(&rule, 1, &crossing, &[], 0), Ok(units(3)), "10 % of 30 above 20");
        let by_credit = invoice(&[("compute", 50)], 0);
        assert_eq!(
            pays(&rule, 1, &by_credit, &[], 0),
            Err("qualifying spend 0.00 of 20.00".into())
        );
    }

    #[test]
    fn an_invoice_number_picks_one_invoice_or_starts_a_run_that_max_occurrences_ends() {
        let once = with(percent(RuleTrigger::InvoicePaid, 50), Condition::InvoiceNumber(2));
        let bill = invoice(&[("internet", 30)], 30);
        assert_eq!(
            pays(&once, 1, &bill, &[], 0),
            Err("pays on the referee's 2nd paid invoice; this is its 1st".into())
        );
        assert_eq!(pays(&once, 2, &bill, &[], 0), Ok(units(15)));
        assert!(pays(&once, 3, &bill, &[], 0).is_err());

        let mut run = with(percent(RuleTrigger::InvoicePaid, 5), Condition::InvoiceNumber(2));
        run.payout.recurring = true;
        run.payout.max_occurrences = Some(12);
        assert!(pays(&run, 1, &bill, &[], 0).is_err());
        assert_eq!(pays(&run, 2, &bill, &[], 0), Ok(Amount::from_micros(1_500_000)));
        assert_eq!(pays(&run, 13, &bill, &[], 0), Ok(Amount::from_micros(1_500_000)));
        assert_eq!(
            pays(&run, 14, &bill, &[], 0),
            Err("pays on 12 invoices, the 2nd to the 13th; this is the 14th".into())
        );
    }

    #[test]
    fn a_cap_cuts_the_payment_that_reaches_it_and_refuses_the_next() {
        let mut capped = percent(RuleTrigger::InvoicePaid, 10);
        capped.payout.recurring = true;
        capped.payout.cap_per_referral = Some(units(300));
        let bill = invoice(&[("compute", 500)], 500);
        assert_eq!(pays(&capped, 1, &bill, &[], 0), Ok(units(50)));
        assert_eq!(pays(&capped, 5, &bill, &[], 280), Ok(units(20)));
        assert_eq!(
            pays(&capped, 6, &bill, &[], 300),
            Err("the cap per referral of 300.00 credit is reached (300.00 paid)".into())
        );
    }

    #[test]
    fn an_invoice_is_evaluated_by_invoice_and_spend_rules_only() {
        let bill = invoice(&[("compute", 10)], 10);
        let verified_rule = verified(Beneficiary::Referrer);
        assert_eq!(
            pays(&verified_rule, 1, &bill, &[], 0),
            Err("pays on a verified payment method, not on a paid invoice".into())
        );
        let fixed = rule(
            RuleTrigger::InvoicePaid,
            Beneficiary::Referee,
            Calculation::Fixed(units(20)),
        );
        assert_eq!(pays(&fixed, 7, &invoice(&[("compute", 10)], 0), &[], 0), Ok(units(20)));
    }

    // The referrer's own invoices: active referrals, tiers, plan prices.

    /// What a REFERRER_INVOICE_PAID rule pays the account (REFEREE here, with no referrer of
    /// its own) on an invoice of `total` while it has `active` active referrals.
    fn on_own_invoice(rule: &Rule, total: i64, active: u32) -> Result<(i64, Option<i64>, Amount), String> {
        let bill = invoice(&[("internet", total)], total);
        let mut facts = facts(EventFacts::Signup);
        facts.referral = None;
        facts.event = EventFacts::InvoicePaid {
            number: 1,
            invoice: &bill,
            earlier: &[],
            active_referrals: Some(active),
        };
        match evaluate(rule, &facts, now()) {
            Verdict::Pay {
                account_id,
                referral_id,
                amount,
                ..
            } => Ok((account_id, referral_id, amount)),
            Verdict::Skip { reason } => Err(reason),
        }
    }

    fn own_invoice(calculation: Calculation) -> Rule {
        let mut rule = rule(RuleTrigger::ReferrerInvoicePaid, Beneficiary::Referrer, calculation);
        rule.payout.recurring = true;
        rule
    }

    #[test]
    fn a_referrers_own_invoice_pays_it_while_enough_referrals_are_active() {
        let discount = with(
            own_invoice(Calculation::Fixed(units(10))),
            Condition::MinActiveReferrals(4),
        );
        assert_eq!(
            on_own_invoice(&discount, 50, 4),
            Ok((REFEREE, None, units(10))),
            "the account itself, for no referral"
        );
        assert_eq!(
            on_own_invoice(&discount, 50, 3),
            Err("3 active referrals of the 4 the rule needs".into())
        );
        let per_active = own_invoice(Calculation::PerActiveReferral(units(5)));
        assert_eq!(on_own_invoice(&per_active, 50, 3).map(|p| p.2), Ok(units(15)));
        assert_eq!(on_own_invoice(&per_active, 50, 0), Err("no active referrals".into()));
    }

    #[test]
    fn tiers_pay_the_highest_one_reached() {
        let tiers = own_invoice(Calculation::Tiers(vec![
            Tier {
                min_active: 1,
                amount: units(2),
            },
            Tier {
                min_active: 3,
                amount: units(5),
            },
            Tier {
                min_active: 5,
                amount: units(10),
            },
        ]));
        let paid = |active| on_own_invoice(&tiers, 50, active).map(|p| p.2);
        assert_eq!(paid(0), Err("0 active referrals, below the lowest tier (1)".into()));
        assert_eq!(paid(1), Ok(units(2)));
        assert_eq!(paid(4), Ok(units(5)));
        assert_eq!(paid(9), Ok(units(10)));
    }

    #[test]
    fn a_plan_price_is_the_beneficiarys_the_referees_or_the_lesser() {
        let plan = |base| {
            with(
                rule(
                    RuleTrigger::InvoicePaid,
                    Beneficiary::Referrer,
                    Calculation::PlanPrice {
                        percent: units(100),
                        base,
                    },
                ),
                Condition::InvoiceNumber(1),
            )
        };
        let friends = invoice(&[("internet", 0)], 0);
        let friends = PaidInvoice {
            lines: vec![InvoiceLine {
                category: "internet".into(),
                amount: Amount::from_micros(29_990_000),
            }],
            ..friends
        };
        let pays_with = |rule: &Rule, referrer_plan: Option<i64>| {
            let mut facts = facts(EventFacts::Signup);
            facts.event = EventFacts::InvoicePaid {
                number: 1,
                invoice: &friends,
                earlier: &[],
                active_referrals: None,
            };
            facts.referrer_plan_price = referrer_plan.map(Amount::from_micros);
            match evaluate(rule, &facts, now()) {
                Verdict::Pay { amount, .. } => Ok(amount),
                Verdict::Skip { reason } => Err(reason),
            }
        };
        let referrers = Some(49_990_000);
        assert_eq!(
            pays_with(&plan(PlanPriceBase::Lesser), referrers),
            Ok(Amount::from_micros(29_990_000))
        );
        assert_eq!(
            pays_with(&plan(PlanPriceBase::Beneficiary), referrers),
            Ok(Amount::from_micros(49_990_000))
        );
        assert_eq!(
            pays_with(&plan(PlanPriceBase::Referee), None),
            Ok(Amount::from_micros(29_990_000))
        );
        assert_eq!(
            pays_with(&plan(PlanPriceBase::Lesser), None),
            Err("the referrer has no paid invoice yet to take a plan price from".into())
        );
        let half_own = own_invoice(Calculation::PlanPrice {
            percent: units(50),
            base: PlanPriceBase::Beneficiary,
        });
        assert_eq!(
            on_own_invoice(&half_own, 39, 0).map(|p| p.2),
            Ok(Amount::from_micros(19_500_000))
        );
    }
}
