//! The engine's paying half: evaluates rules against what an event established, pays what
//! they decide through the ledger, and says in words what each reward was for. Flows (sign-up,
//! events) call it inside their transaction.

use crate::error::AppResult;
use crate::service::accounts::{self, mask_name};
use crate::service::ledger::{self, NewCredit};
use crate::service::rules::{self, Decision, EventFacts, Facts, Outcome, ReferralFacts, Rule, Verdict};
use crate::service::settings;
use entity::enums::{Beneficiary, EntryKind, ReferralStatus, RuleTrigger};
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
    let parties = Parties {
        program_enabled: settings::get(txn).await?.enabled,
        account,
        referral: referral.as_ref(),
        referrer: referrer.as_ref(),
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

/// Who an event's rules are about, as read with the event: the account it happened to, its
/// accepted referral and that referral's referrer, and whether the program is on.
pub struct Parties<'a> {
    pub program_enabled: bool,
    pub account: &'a account::Model,
    pub referral: Option<&'a referral::Model>,
    pub referrer: Option<&'a account::Model>,
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
    let facts = Facts {
        program_enabled: parties.program_enabled,
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
            })
        }),
        account_group: account.account_group.as_deref(),
        referrer_group: parties.referrer.and_then(|referrer| referrer.account_group.as_deref()),
        billing_scheme: account.billing_scheme,
        signed_up_at: account.created_at,
        occurred_at,
        event: event_facts.clone(),
    };
    let mut plan = Plan {
        decisions: Vec::with_capacity(rules.len()),
        credits: Vec::new(),
    };
    for rule in rules {
        let (outcome, reason) = match rules::evaluate(rule, &facts, now) {
            Verdict::Skip { reason } => (Outcome::Skipped, reason),
            Verdict::Pay {
                account_id,
                referral_id,
                unit,
                amount,
                reason,
                available_at,
                expires_at,
            } => {
                let credit = NewCredit {
                    account_id,
                    unit,
                    amount,
                    kind: EntryKind::Reward,
                    description: describe(rule.beneficiary, event_facts, account, parties.referrer, product),
                    event_id,
                    referral_id: Some(referral_id),
                    rule_id: Some(rule.id),
                    // Once per referral, or once per event for a recurring rule.
                    occurrence: Some(if rule.payout.recurring {
                        event_id.unwrap_or(0)
                    } else {
                        1
                    }),
                    rule_snapshot: Some(rule.snapshot().to_string()),
                    available_at,
                    expires_at,
                };
                plan.credits.push(PlannedCredit {
                    decision: plan.decisions.len(),
                    credit,
                    recurring: rule.payout.recurring,
                    qualifies: rule.trigger != RuleTrigger::Signup,
                    already_paid: Decision {
                        rule_id: rule.id,
                        rule_name: rule.name.clone(),
                        outcome: Outcome::Skipped,
                        reason: rules::already_paid_reason(rule),
                    },
                });
                (Outcome::Rewarded, reason)
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
    if let Some(referral_id) = qualified {
        qualify(txn, referral_id, now).await?;
    }
    Ok((rewards, decisions))
}

/// "Referral reward: Jo*** S. verified a payment method", or, for the newcomer,
/// "Referral reward: you verified a payment method (invited by Al*** S.)".
fn describe(
    beneficiary: Beneficiary,
    facts: &EventFacts<'_>,
    referee: &account::Model,
    referrer: Option<&account::Model>,
    product: Option<&product::Model>,
) -> String {
    let action = match facts {
        EventFacts::Signup => "signed up with a referral code".to_owned(),
        EventFacts::PaymentMethodVerified => "verified a payment method".to_owned(),
        EventFacts::TopUp { total, .. } => format!("topped up to a total of {total}"),
        EventFacts::Purchase { quantity_gb, .. } => match product {
            Some(product) => format!("made a first purchase ({quantity_gb} GB of {})", product.name),
            None => "made a first purchase".to_owned(),
        },
    };
    match beneficiary {
        Beneficiary::Referrer => format!("Referral reward: {} {action}", display_name(referee)),
        Beneficiary::Referee => {
            let inviter = referrer.map(display_name).unwrap_or_else(|| "a friend".to_owned());
            format!("Referral reward: you {action} (invited by {inviter})")
        }
    }
}

async fn qualify(db: &impl ConnectionTrait, referral_id: i64, now: chrono::DateTime<chrono::Utc>) -> AppResult<()> {
    referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(ReferralStatus::Qualified))
        .col_expr(referral::Column::QualifiedAt, Expr::value(now))
        .filter(referral::Column::Id.eq(referral_id))
        .filter(referral::Column::Status.eq(ReferralStatus::Pending))
        .exec(db)
        .await?;
    Ok(())
}

fn display_name(account: &account::Model) -> String {
    account
        .display_name
        .as_deref()
        .map(mask_name)
        .unwrap_or_else(|| "a friend".to_owned())
}
