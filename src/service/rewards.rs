//! The engine's paying half: evaluates rules against what an event established, pays what
//! they decide through the ledger, and says in words what each reward was for. Flows (sign-up,
//! events) call it inside their transaction.

use crate::error::AppResult;
use crate::service::accounts::{self, mask_name};
use crate::service::ledger::{self, NewCredit};
use crate::service::rules::{self, Decision, EventFacts, Facts, Outcome, ReferralFacts, Rule, Verdict};
use crate::service::settings;
use entity::enums::{Beneficiary, EntryKind, ReferralStatus, RuleTrigger};
use entity::{account, ledger_entry, product, referral};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

/// Evaluates `rules` (the enabled ones, or an admin's draft set) against what an event established and pays what they decide,
/// in the caller's transaction. A reward paid for a referral (sign-up bonuses aside) qualifies
/// it. Also used at registration, for SIGNUP rules.
pub async fn apply(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    event_id: Option<i64>,
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
    let program = settings::get(txn).await?;
    let facts = Facts {
        program_enabled: program.enabled,
        referral: referral.as_ref().and_then(|r| {
            r.referrer_id.map(|referrer_id| ReferralFacts {
                referral_id: r.id,
                referrer_id,
                referee_id: r.referee_id,
                // The flags as this transaction reads them: an event that commits while an
                // admin disqualifies one side is ordered before the disqualification (what
                // it posted stays, as posted rewards do).
                referrer_disqualified: referrer.as_ref().is_some_and(|a| a.disqualified_at.is_some()),
                referee_disqualified: account.disqualified_at.is_some(),
            })
        }),
        account_group: account.account_group.as_deref(),
        billing_scheme: account.billing_scheme,
        event: event_facts.clone(),
    };

    let mut rewards = Vec::new();
    let mut decisions = Vec::new();
    let mut qualifies = false;
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
                    description: describe(rule.beneficiary, event_facts, account, referrer.as_ref(), product),
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
                match ledger::post_credit(txn, credit, now).await? {
                    Some(entry) => {
                        rewards.push(entry);
                        qualifies |= rule.trigger != RuleTrigger::Signup;
                        (Outcome::Rewarded, reason)
                    }
                    None => (Outcome::Skipped, rules::already_paid_reason(rule)),
                }
            }
        };
        decisions.push(Decision {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            outcome,
            reason,
        });
    }
    if let (true, Some(referral)) = (qualifies, &referral) {
        qualify(txn, referral, now).await?;
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

async fn qualify(
    db: &impl ConnectionTrait,
    referral: &referral::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(ReferralStatus::Qualified))
        .col_expr(referral::Column::QualifiedAt, Expr::value(now))
        .filter(referral::Column::Id.eq(referral.id))
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
