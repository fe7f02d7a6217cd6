//! The engine's paying half: evaluates rules against what an event established, pays what
//! they decide through the ledger, and says in words what each reward was for. Flows (sign-up,
//! events) call it inside their transaction.

use crate::amount::Amount;
use crate::error::AppResult;
use crate::service::accounts::{self, mask_name};
use crate::service::ledger::{self, NewCredit};
use crate::service::outbox::{self, payloads};
use crate::service::rules::{
    self, AffiliateTerms, Decision, EventFacts, Facts, Outcome, PaidForReferral, ReferralFacts, Rule, Verdict,
};
use crate::service::{payout_schedule, settings};
use entity::enums::{AffiliateStatus, Beneficiary, EntryKind, PayoutSchedule, ReferralStatus, RuleTrigger, Unit};
use entity::{account, event, ledger_entry, product, referral};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

/// Evaluates `rules` (the enabled ones, or an admin's draft set) against what an event
/// established and pays what they decide, in the caller's transaction. A reward paid for a
/// referral (sign-up bonuses aside) qualifies it. Also used at registration, for SIGNUP rules:
/// without an `event`, what happened happened `now`.
pub async fn apply(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    event: Option<&event::Model>,
    event_facts: &EventFacts<'_>,
    product: Option<&product::Model>,
    rules: &[Rule],
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(Vec<ledger_entry::Model>, Vec<Decision>)> {
    let referral = accounts::accepted_referral_of(txn, account.id).await?;
    let referrer = match referral.as_ref().and_then(|r| r.referrer_id) {
        Some(id) => accounts::by_ids(txn, &[id]).await?.remove(&id),
        None => None,
    };
    let paid = match referral.as_ref() {
        Some(referral) if rules.iter().any(|rule| rule.payout.cap_per_referral.is_some()) => {
            paid_for_referral(txn, referral).await?
        }
        _ => PaidForReferral::default(),
    };
    let settings = settings::get(txn).await?;
    let parties = Parties {
        program_enabled: settings.enabled,
        payout_schedule: settings.payout_schedule,
        account,
        referral: referral.as_ref(),
        referrer: referrer.as_ref(),
        referrer_terms: referrer.as_ref().map(AffiliateTerms::of).transpose()?.flatten(),
        paid,
    };
    pay(
        txn,
        plan(
            &parties,
            event.map(|e| e.id),
            event_facts,
            product,
            rules,
            event.map_or(now, |e| e.occurred_at),
            now,
        ),
        now,
    )
    .await
}

/// Where an account stands as a referrer in the REFERRER_INVOICE_PAID rules: its active
/// referrals now, the program's window for them, and the credit the enabled rules would pay on
/// its next invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveStanding {
    pub count: u32,
    pub within_days: i32,
    pub next_invoice_credit: Amount,
}

/// The account's `ActiveStanding` at `now`, read without writing. The next invoice's credit is
/// what the enabled REFERRER_INVOICE_PAID rules in CREDIT decide on an invoice of nothing in
/// particular paid now: fixed, per-active-referral and tier amounts; what depends on the
/// invoice (percentages, plan prices, product categories) is not known before it.
pub async fn active_standing(
    db: &impl ConnectionTrait,
    account: &account::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<ActiveStanding> {
    let settings = settings::get(db).await?;
    let since = now - chrono::Duration::days(i64::from(settings.active_referral_days));
    let count = accounts::active_referrals(db, account.id, since).await?;
    let rules: Vec<Rule> = rules::enabled_rules(db)
        .await?
        .into_iter()
        .filter(|rule| rule.trigger == RuleTrigger::ReferrerInvoicePaid && rule.unit == Unit::Credit)
        .collect();
    let next_invoice_credit = match rules.is_empty() {
        true => Amount::ZERO,
        false => {
            let invoice = rules::PaidInvoice {
                lines: Vec::new(),
                cash: Amount::ZERO,
                refunded: Amount::ZERO,
            };
            let next = EventFacts::InvoicePaid {
                number: u32::try_from(account.paid_invoices + 1).unwrap_or(u32::MAX),
                invoice: &invoice,
                earlier: &[],
                active_referrals: Some(count),
            };
            let parties = Parties {
                program_enabled: settings.enabled,
                payout_schedule: settings.payout_schedule,
                account,
                referral: None,
                referrer: None,
                referrer_terms: None,
                paid: PaidForReferral::default(),
            };
            let plan = plan(&parties, None, &next, None, &rules, now, now);
            let micros = plan.credits.iter().map(|planned| planned.credit.amount.micros()).sum();
            Amount::from_micros(micros)
        }
    };
    Ok(ActiveStanding {
        count,
        within_days: settings.active_referral_days,
        next_invoice_credit,
    })
}

/// What `referral` paid so far to each side, read under the referee's row lock: events of
/// one referee that pay capped rules are decided one after the other, each measuring against
/// what the one before it paid.
async fn paid_for_referral(txn: &impl ConnectionTrait, referral: &referral::Model) -> AppResult<PaidForReferral> {
    accounts::lock(txn, referral.referee_id).await?;
    let mut paid = PaidForReferral::default();
    let Some(referrer_id) = referral.referrer_id else {
        return Ok(paid);
    };
    let sides = [
        (referrer_id, Beneficiary::Referrer),
        (referral.referee_id, Beneficiary::Referee),
    ];
    let keys = sides.map(|(account_id, _)| (referral.id, account_id));
    let earned = ledger::earned_by_referrals(txn, &keys).await?;
    for (account_id, beneficiary) in sides {
        for (unit, amount) in earned.get(&(referral.id, account_id)).into_iter().flatten() {
            paid.add(beneficiary, *unit, *amount);
        }
    }
    for rule_id in ledger::rules_paid_once(txn, referral.id).await? {
        paid.paid_once(rule_id);
    }
    Ok(paid)
}

/// Who an event's rules are about, as read with the event: the account it happened to, its
/// accepted referral and that referral's referrer (with its affiliate terms, if it has any),
/// whether the program is on, and what the referral paid so far (only read when a rule has a
/// cap).
pub struct Parties<'a> {
    pub program_enabled: bool,
    /// The program's payout schedule, for cash paid to an account without one of its own.
    pub payout_schedule: PayoutSchedule,
    pub account: &'a account::Model,
    pub referral: Option<&'a referral::Model>,
    pub referrer: Option<&'a account::Model>,
    pub referrer_terms: Option<AffiliateTerms>,
    pub paid: PaidForReferral,
}

/// What the rules decide on one event, before anything is paid.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One per rule, in the rules' order; a planned credit's decision says REWARDED.
    pub decisions: Vec<Decision>,
    pub credits: Vec<PlannedCredit>,
}

#[derive(Debug, Clone)]
pub struct PlannedCredit {
    /// The index in [`Plan::decisions`] of the decision that pays it.
    pub decision: usize,
    pub credit: NewCredit,
    /// Once per event (its `occurrence` is the event's id) rather than once per referral.
    pub recurring: bool,
    /// Whether paying it qualifies the referral: every trigger but sign-up.
    pub qualifies: bool,
    /// The decision instead, when the once-per-referral index finds the reward paid already
    /// (a concurrent event paid it first).
    pub already_paid: Decision,
}

/// Decides what `rules` pay for an event that happened at `occurred_at`, without reading or
/// writing anything.
pub fn plan(
    parties: &Parties<'_>,
    event_id: Option<i64>,
    event_facts: &EventFacts<'_>,
    product: Option<&product::Model>,
    rules: &[Rule],
    occurred_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let account = parties.account;
    let mut facts = Facts {
        program_enabled: parties.program_enabled,
        account_id: account.id,
        account_disqualified: account.disqualified_at.is_some(),
        account_ineligible_referrer: account.referrer_ineligible_reason.is_some(),
        account_affiliate: account.affiliate_status == Some(AffiliateStatus::Approved),
        referrer_plan_price: parties
            .referrer
            .and_then(|referrer| referrer.last_invoice_total)
            .map(Amount::from_micros),
        referral: parties.referral.and_then(|r| {
            r.referrer_id.map(|referrer_id| ReferralFacts {
                referral_id: r.id,
                referrer_id,
                referee_id: r.referee_id,
                // The flags as they were read: an event that commits while an admin
                // disqualifies one side is ordered before the disqualification (what it posted
                // stays, as posted rewards do).
                referrer_disqualified: parties.referrer.is_some_and(|a| a.disqualified_at.is_some()),
                referee_disqualified: account.disqualified_at.is_some(),
                referrer_ineligible: parties.referrer.is_some_and(|a| a.referrer_ineligible_reason.is_some()),
                referrer_affiliate: parties
                    .referrer
                    .is_some_and(|a| a.affiliate_status == Some(AffiliateStatus::Approved)),
            })
        }),
        account_group: account.account_group.as_deref(),
        referrer_group: parties.referrer.and_then(|referrer| referrer.account_group.as_deref()),
        billing_scheme: account.billing_scheme,
        signed_up_at: account.created_at,
        occurred_at,
        event: event_facts.clone(),
        paid: parties.paid.clone(),
    };
    let mut plan = Plan {
        decisions: Vec::with_capacity(rules.len()),
        credits: Vec::new(),
    };
    for rule in rules {
        // An affiliate's terms replace the value of the rules that pay it as a referrer.
        let termed = parties.referrer_terms.as_ref().and_then(|terms| terms.apply(rule));
        let rule = termed.as_ref().unwrap_or(rule);
        let verdict = rules::evaluate(rule, &facts, now);
        if matches!(verdict, Verdict::Pay { .. }) && facts.paid.has_paid(rule) {
            // What the ledger's unique index would refuse: not counted against a cap either.
            plan.decisions.push(already_paid(rule));
            continue;
        }
        let (outcome, reason) = match verdict {
            Verdict::Skip { reason } => (Outcome::Skipped, reason),
            Verdict::Pay {
                account_id,
                referral_id,
                unit,
                amount,
                mut reason,
                mut available_at,
                mut expires_at,
            } => {
                if unit == Unit::Cash {
                    // Cash commission waits for its payout schedule's period to end.
                    let beneficiary = [Some(account), parties.referrer]
                        .into_iter()
                        .flatten()
                        .find(|a| a.id == account_id);
                    let schedule = payout_schedule::effective(
                        beneficiary.and_then(|a| a.payout_schedule),
                        parties.payout_schedule,
                    );
                    let held_until = available_at.unwrap_or(now);
                    let released = payout_schedule::release(schedule, held_until);
                    if released != held_until {
                        available_at = Some(released);
                        expires_at = expires_at.map(|at| at + (released - held_until));
                        reason += &format!(
                            ", withdrawable from {} ({})",
                            released.format("%Y-%m-%d"),
                            payout_schedule::describe(schedule)
                        );
                    }
                }
                facts.paid.add(rule.beneficiary, unit, amount);
                let credit = NewCredit {
                    account_id,
                    unit,
                    amount,
                    kind: EntryKind::Reward,
                    description: describe(rule, event_facts, account, parties.referrer, product),
                    event_id,
                    referral_id,
                    rule_id: Some(rule.id),
                    occurrence: Some(occurrence(rule, event_id, event_facts)),
                    rule_snapshot: Some(rule.snapshot().to_string()),
                    available_at,
                    expires_at,
                    spend_limit: rule.payout.spend_limit.clone(),
                };
                plan.credits.push(PlannedCredit {
                    decision: plan.decisions.len(),
                    credit,
                    recurring: rule.payout.recurring,
                    qualifies: rule.trigger != RuleTrigger::Signup && referral_id.is_some(),
                    already_paid: already_paid(rule),
                });
                match termed {
                    Some(_) => (
                        Outcome::Rewarded,
                        format!("{reason}; by the referrer's affiliate terms"),
                    ),
                    None => (Outcome::Rewarded, reason),
                }
            }
        };
        plan.decisions.push(Decision {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            outcome,
            reason,
        });
    }
    plan
}

/// The decision of a rule whose reward for this referral (or occurrence) is paid already.
fn already_paid(rule: &Rule) -> Decision {
    Decision {
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        outcome: Outcome::Skipped,
        reason: rules::already_paid_reason(rule),
    }
}

/// The reward's slot among the rule's rewards for one referral, which a unique index holds
/// once: 1 for a rule that pays once per referral; the invoice's number for a recurring
/// INVOICE_PAID rule (so `maxOccurrences` counts invoices, and one invoice number pays once);
/// the event's id for other recurring rules.
fn occurrence(rule: &Rule, event_id: Option<i64>, event: &EventFacts<'_>) -> i64 {
    match (rule.payout.recurring, rule.trigger, event.invoice_number()) {
        (false, _, _) => 1,
        (true, RuleTrigger::InvoicePaid, Some(number)) => i64::from(number),
        (true, _, _) => event_id.unwrap_or(0),
    }
}

/// Pays a plan in the caller's transaction: each credit once (a reward the unique index finds
/// paid already is skipped, and its decision says so), then the referral qualified if a credit
/// that qualifies it was paid.
async fn pay(
    txn: &impl ConnectionTrait,
    plan: Plan,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(Vec<ledger_entry::Model>, Vec<Decision>)> {
    let Plan { mut decisions, credits } = plan;
    let mut rewards = Vec::with_capacity(credits.len());
    let mut qualified = None;
    for planned in credits {
        match ledger::post_credit(txn, planned.credit, now).await? {
            Some(entry) => {
                if planned.qualifies {
                    qualified = entry.referral_id;
                }
                rewards.push(entry);
            }
            None => decisions[planned.decision] = planned.already_paid,
        }
    }
    let qualified = match qualified {
        Some(referral_id) => qualify(txn, referral_id, now).await?,
        None => None,
    };
    announce(txn, &rewards, qualified.as_ref(), now).await?;
    Ok((rewards, decisions))
}

/// The events of what `pay` wrote: each reward granted, and the referral qualified.
async fn announce(
    txn: &impl ConnectionTrait,
    rewards: &[ledger_entry::Model],
    qualified: Option<&referral::Model>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    if rewards.is_empty() && qualified.is_none() {
        return Ok(());
    }
    let mut ids: Vec<i64> = rewards.iter().map(|entry| entry.account_id).collect();
    if let Some(referral) = qualified {
        ids.push(referral.referee_id);
        ids.extend(referral.referrer_id);
    }
    let accounts = accounts::by_ids(txn, &ids).await?;
    let external_id = |id: i64| accounts.get(&id).map_or("", |account| account.external_id.as_str());
    let mut events: Vec<_> = rewards
        .iter()
        .map(|entry| payloads::reward_granted(entry, external_id(entry.account_id)))
        .collect();
    if let Some(referral) = qualified {
        let parties = payloads::Parties {
            referrer: referral.referrer_id.map(external_id),
            referee: external_id(referral.referee_id),
        };
        events.push(payloads::referral_qualified(referral, &parties, now));
    }
    outbox::emit_all(txn, events, now).await
}

/// "Referral reward: Jo*** S. verified a payment method", or, for the newcomer,
/// "Referral reward: you verified a payment method (invited by Al*** S.)"; on a referrer's own
/// invoice, "Referral reward: your invoice no. 3, with 4 active referrals".
fn describe(
    rule: &Rule,
    facts: &EventFacts<'_>,
    referee: &account::Model,
    referrer: Option<&account::Model>,
    product: Option<&product::Model>,
) -> String {
    let action = match facts {
        EventFacts::Signup => "signed up with a referral code".to_owned(),
        EventFacts::PaymentMethodVerified => "verified a payment method".to_owned(),
        EventFacts::TopUp { total, .. } => format!("topped up to a total of {total}"),
        EventFacts::Purchase { quantity_gb, .. } if rule.trigger == RuleTrigger::Purchase => match product {
            Some(product) => format!("bought {quantity_gb} GB of {}", product.name),
            None => "made a purchase".to_owned(),
        },
        EventFacts::Purchase { quantity_gb, .. } => match product {
            Some(product) => format!("made a first purchase ({quantity_gb} GB of {})", product.name),
            None => "made a first purchase".to_owned(),
        },
        EventFacts::InvoicePaid {
            number,
            active_referrals,
            ..
        } if rule.trigger == RuleTrigger::ReferrerInvoicePaid => {
            return format!(
                "Referral reward: your invoice no. {number}, with {} active referrals",
                active_referrals.unwrap_or(0)
            );
        }
        EventFacts::InvoicePaid { number, .. } => format!("paid invoice no. {number}"),
    };
    match rule.beneficiary {
        Beneficiary::Referrer => format!("Referral reward: {} {action}", display_name(referee)),
        Beneficiary::Referee => {
            let inviter = referrer.map(display_name).unwrap_or_else(|| "a friend".to_owned());
            format!("Referral reward: you {action} (invited by {inviter})")
        }
    }
}

/// Qualifies a pending referral; the referral if this call did.
async fn qualify(
    db: &impl ConnectionTrait,
    referral_id: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Option<referral::Model>> {
    let qualified = referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(ReferralStatus::Qualified))
        .col_expr(referral::Column::QualifiedAt, Expr::value(now))
        .filter(referral::Column::Id.eq(referral_id))
        .filter(referral::Column::Status.eq(ReferralStatus::Pending))
        .exec_with_returning(db)
        .await?;
    Ok(qualified.into_iter().next())
}

fn display_name(account: &account::Model) -> String {
    account
        .display_name
        .as_deref()
        .map(mask_name)
        .unwrap_or_else(|| "a friend".to_owned())
}
