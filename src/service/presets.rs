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

pub const PRESETS: &[&str] = &["points-store", "cloud-credit"];
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

/// Applies a preset; returns one line per change, for the command to print.
pub async fn apply(db: &DatabaseConnection, name: &str, now: chrono::DateTime<chrono::Utc>) -> AppResult<Vec<String>> {
    let wanted = preset_rules(name)?;
    let mut done = Vec::new();
    if !settings::get(db).await?.enabled {
        settings::update(
            db,
            ACTOR,
            SettingsPatch {
                enabled: Some(true),
                ..Default::default()
            },
            now,
        )
        .await?;
        done.push("program enabled".to_owned());
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
            ]
        );
        for name in PRESETS {
            assert!(!purpose(name).is_empty(), "{name} says what it is for");
        }
    }
}
