//! Presets: the settings and rules of each program built so far, written in one command so a
//! new installation (or the README's walk-through) starts from a known program. Applying a
//! preset again changes nothing: its rules are found by name and brought back to the preset.
//! Each program is declared here and nowhere else: a new installation is seeded from
//! `DEFAULT`, and program 1's billing-scheme policy is a condition of its rules, not a rule
//! of the evaluator.

use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::rules::{self, RuleInput};
use crate::service::settings::{self, SettingsPatch};
use entity::enums::{Beneficiary, BillingScheme, Calculation, RuleTrigger, Unit};
use sea_orm::DatabaseConnection;

pub const PRESETS: &[&str] = &["points-store", "cloud-credit", "isp", "refer-a-friend", "affiliate"];
/// The program a new installation starts with.
pub const DEFAULT: &str = "points-store";
const ACTOR: &str = "cli:preset";
const SEED_ACTOR: &str = "seed";

fn rule(name: &str, trigger: RuleTrigger, beneficiary: Beneficiary, unit: Unit, calculation: Calculation) -> RuleInput {
    RuleInput {
        name: name.to_owned(),
        enabled: Some(true),
        trigger: Some(trigger),
        beneficiary: Some(beneficiary),
        unit: Some(unit),
        calculation: Some(calculation),
        ..Default::default()
    }
}

fn preset_rules(name: &str) -> AppResult<Vec<RuleInput>> {
    let credit = |units| Amount::from_units(units);
    match name {
        // Program 3: the referrer earns product rate × GB on a friend's first residential purchase.
        "points-store" => Ok(vec![RuleInput {
            product_categories: Some(vec!["residential".to_owned()]),
            ..rule(
                "Points for a friend's first residential purchase",
                RuleTrigger::FirstPurchase,
                Beneficiary::Referrer,
                Unit::Points,
                Calculation::ProductRate,
            )
        }]),
        // Program 1: both sides get 10.00 credit once the newcomer qualifies: postpaid by a
        // verified payment method, prepaid by 10.00 of its own successful top-ups (and only
        // so: a prepaid account's payment method, or a postpaid account's top-ups, qualify
        // nothing).
        "cloud-credit" => {
            let mut rules = Vec::new();
            for (beneficiary, who) in [(Beneficiary::Referrer, "referrer"), (Beneficiary::Referee, "newcomer")] {
                rules.push(RuleInput {
                    value: credit(10),
                    billing_scheme: Some(Some(BillingScheme::Postpaid)),
                    ..rule(
                        &format!("Cloud credit for the {who}: postpaid friend verified a payment method"),
                        RuleTrigger::PaymentMethodVerified,
                        beneficiary,
                        Unit::Credit,
                        Calculation::Fixed,
                    )
                });
                rules.push(RuleInput {
                    value: credit(10),
                    threshold: credit(10),
                    billing_scheme: Some(Some(BillingScheme::Prepaid)),
                    ..rule(
                        &format!("Cloud credit for the {who}: prepaid friend topped up 10.00"),
                        RuleTrigger::TopUpTotalReached,
                        beneficiary,
                        Unit::Credit,
                        Calculation::Fixed,
                    )
                });
            }
            Ok(rules)
        }
        // Program 2: 20.00 credit once a friend pays its first invoice, 5 % of each of its
        // first 12 invoices, and 10.00 off each of the referrer's own invoices while it has 4
        // active referrals (open, paid within the program's activeReferralDays).
        "isp" => Ok(vec![
            RuleInput {
                value: credit(20),
                invoice_number: Some(1),
                ..rule(
                    "ISP: 20.00 credit when a friend pays its first invoice",
                    RuleTrigger::InvoicePaid,
                    Beneficiary::Referrer,
                    Unit::Credit,
                    Calculation::Fixed,
                )
            },
            RuleInput {
                value: credit(5),
                recurring: Some(true),
                max_occurrences: Some(12),
                ..rule(
                    "ISP: 5 % of each of a friend's first 12 invoices",
                    RuleTrigger::InvoicePaid,
                    Beneficiary::Referrer,
                    Unit::Credit,
                    Calculation::Percent,
                )
            },
            RuleInput {
                value: credit(10),
                recurring: Some(true),
                min_active_referrals: Some(4),
                ..rule(
                    "ISP: 10.00 off each invoice while 4 referrals are active",
                    RuleTrigger::ReferrerInvoicePaid,
                    Beneficiary::Referrer,
                    Unit::Credit,
                    Calculation::Fixed,
                )
            },
        ]),
        // Program 4: the newcomer gets 5.00 at sign-up; the referrer 20.00 once the friend's
        // cash spend on compute reaches 20.00, plus 10 % of its compute spend above that, both
        // within the friend's first 90 days, held 30 days, expiring 180 days after, spendable
        // on compute only, at most 300.00 per friend.
        "refer-a-friend" => {
            let compute = || Some(vec!["compute".to_owned()]);
            let spend = |input: RuleInput| RuleInput {
                threshold: credit(20),
                product_categories: compute(),
                window_days: Some(90),
                hold_days: Some(30),
                expires_after_days: Some(180),
                redeemable_categories: compute(),
                ..input
            };
            Ok(vec![
                RuleInput {
                    value: credit(5),
                    ..rule(
                        "Refer-a-friend: 5.00 credit for the newcomer at sign-up",
                        RuleTrigger::Signup,
                        Beneficiary::Referee,
                        Unit::Credit,
                        Calculation::Fixed,
                    )
                },
                spend(RuleInput {
                    value: credit(20),
                    ..rule(
                        "Refer-a-friend: 20.00 once a friend spends 20.00 on compute",
                        RuleTrigger::SpendTotalReached,
                        Beneficiary::Referrer,
                        Unit::Credit,
                        Calculation::Fixed,
                    )
                }),
                spend(RuleInput {
                    value: credit(10),
                    recurring: Some(true),
                    cap_per_referral: credit(300),
                    ..rule(
                        "Refer-a-friend: 10 % of a friend's compute spend above 20.00, up to 300.00",
                        RuleTrigger::SpendTotalReached,
                        Beneficiary::Referrer,
                        Unit::Credit,
                        Calculation::Percent,
                    )
                }),
            ])
        }
        // Program 5: approved affiliates earn 20 % of each invoice their referred customers pay
        // in cash, as cash commission held 30 days (the commission delay).
        "affiliate" => Ok(vec![RuleInput {
            value: credit(20),
            recurring: Some(true),
            hold_days: Some(30),
            affiliates_only: Some(true),
            ..rule(
                "Affiliate: 20 % commission on each invoice a referred customer pays",
                RuleTrigger::InvoicePaid,
                Beneficiary::Referrer,
                Unit::Cash,
                Calculation::Percent,
            )
        }]),
        other => Err(AppError::bad_input(format!(
            "no preset {other:?}; presets: {}",
            PRESETS.join(", ")
        ))),
    }
}

/// What a preset is for, in a line.
fn purpose(name: &str) -> &'static str {
    match name {
        "points-store" => "program 3: points for friends' purchases, spent in the reward store",
        "cloud-credit" => "program 1: cloud credit for both sides once a friend qualifies",
        "isp" => "program 2: credit for friends' paid invoices, and discounts while referrals are active",
        "refer-a-friend" => "program 4: a sign-up credit, then credit for a friend's cash spend on compute",
        "affiliate" => {
            "program 5: cash commission for approved affiliates, a 10.00 sign-up bonus, withdrawals from 50.00"
        }
        _ => "",
    }
}

/// What each preset sets up, for `preset --list`: a line per preset, then one per rule. Every
/// preset also switches the program on.
pub fn describe() -> AppResult<Vec<String>> {
    let mut lines = Vec::new();
    for name in PRESETS {
        lines.push(format!("{name}: {} (switches the program on)", purpose(name)));
        for input in preset_rules(name)? {
            let rule = rules::draft(input)?;
            lines.push(format!("  {}: {}", rule.name, rules::summary(&rule)));
        }
    }
    Ok(lines)
}

/// Seeds a new installation (a database that never had a rule) with the rules of the
/// `DEFAULT` preset; its settings are the ones a new database starts with (the program on).
/// Returns whether it seeded.
pub async fn seed(db: &DatabaseConnection, now: chrono::DateTime<chrono::Utc>) -> AppResult<bool> {
    rules::seed(db, SEED_ACTOR, preset_rules(DEFAULT)?, now).await
}

/// The settings a preset sets beside switching the program on.
fn preset_settings(name: &str) -> SettingsPatch {
    match name {
        "affiliate" => SettingsPatch {
            minimum_withdrawal: Amount::from_units(50),
            affiliate_signup_bonus: Amount::from_units(10),
            ..Default::default()
        },
        _ => SettingsPatch::default(),
    }
}

/// Applies a preset; returns one line per change, for the command to print.
pub async fn apply(db: &DatabaseConnection, name: &str, now: chrono::DateTime<chrono::Utc>) -> AppResult<Vec<String>> {
    let wanted = preset_rules(name)?;
    let mut done = Vec::new();
    let before = settings::get(db).await?;
    let after = settings::update(
        db,
        ACTOR,
        SettingsPatch {
            enabled: Some(true),
            ..preset_settings(name)
        },
        now,
    )
    .await?;
    if !before.enabled {
        done.push("program enabled".to_owned());
    }
    if (before.minimum_withdrawal, before.affiliate_signup_bonus)
        != (after.minimum_withdrawal, after.affiliate_signup_bonus)
    {
        done.push("settings updated: minimum withdrawal and affiliate sign-up bonus".to_owned());
    }
    let existing = rules::list(db).await?;
    for input in wanted {
        let rule_name = input.name.clone();
        match existing.iter().find(|r| r.name == rule_name) {
            Some(rule) if !rules::would_change(rule, input.clone())? => {}
            Some(rule) => {
                rules::update(db, ACTOR, rule.id, input, now).await?;
                done.push(format!("rule updated: {rule_name}"));
            }
            None => {
                rules::create(db, ACTOR, input, now).await?;
                done.push(format!("rule created: {rule_name}"));
            }
        }
    }
    if done.is_empty() {
        done.push(format!("preset {name} is in place already: nothing changed"));
    }
    Ok(done)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_list_says_what_each_preset_sets_up() {
        let lines = describe().expect("every preset's rules parse");
        assert_eq!(
            lines,
            [
                "points-store: program 3: points for friends' purchases, spent in the reward store (switches the program on)",
                "  Points for a friend's first residential purchase: points at the product's rate × GB to the referrer on a first purchase, products of residential, once per referral",
                "cloud-credit: program 1: cloud credit for both sides once a friend qualifies (switches the program on)",
                "  Cloud credit for the referrer: postpaid friend verified a payment method: 10.00 credit to the referrer on a verified payment method, postpaid referees, once per referral",
                "  Cloud credit for the referrer: prepaid friend topped up 10.00: 10.00 credit to the referrer on top-ups, prepaid referees, once top-ups reach 10.00, once per referral",
                "  Cloud credit for the newcomer: postpaid friend verified a payment method: 10.00 credit to the referred friend on a verified payment method, postpaid referees, once per referral",
                "  Cloud credit for the newcomer: prepaid friend topped up 10.00: 10.00 credit to the referred friend on top-ups, prepaid referees, once top-ups reach 10.00, once per referral",
                "isp: program 2: credit for friends' paid invoices, and discounts while referrals are active (switches the program on)",
                "  ISP: 20.00 credit when a friend pays its first invoice: 20.00 credit to the referrer on a paid invoice, on the 1st paid invoice, once per referral",
                "  ISP: 5 % of each of a friend's first 12 invoices: 5.00 % in credit of the cash paid to the referrer on a paid invoice, every time, on at most 12 invoices",
                "  ISP: 10.00 off each invoice while 4 referrals are active: 10.00 credit to the referrer on the referrer's own paid invoice, while it has 4 active referrals, every time",
                "refer-a-friend: program 4: a sign-up credit, then credit for a friend's cash spend on compute (switches the program on)",
                "  Refer-a-friend: 5.00 credit for the newcomer at sign-up: 5.00 credit to the referred friend on sign-up, once per referral",
                "  Refer-a-friend: 20.00 once a friend spends 20.00 on compute: 20.00 credit to the referrer on qualifying spend, products of compute, within 90 days of sign-up, once qualifying spend reaches 20.00, once per referral, held 30 days, expires 180 days after it becomes available, spendable on compute only",
                "  Refer-a-friend: 10 % of a friend's compute spend above 20.00, up to 300.00: 10.00 % in credit of the spend above the threshold to the referrer on qualifying spend, products of compute, within 90 days of sign-up, once qualifying spend reaches 20.00, every time, at most 300.00 per referral, held 30 days, expires 180 days after it becomes available, spendable on compute only",
                "affiliate: program 5: cash commission for approved affiliates, a 10.00 sign-up bonus, withdrawals from 50.00 (switches the program on)",
                "  Affiliate: 20 % commission on each invoice a referred customer pays: 20.00 % in cash of the cash paid to the referrer on a paid invoice, approved affiliates only, every time, held 30 days",
            ]
        );
        for name in PRESETS {
            assert!(!purpose(name).is_empty(), "{name} says what it is for");
        }
    }
}
