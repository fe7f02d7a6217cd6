//! An affiliate's own terms: what the rules that pay it as a referrer pay it instead of their
//! own value. Fixed (that amount) or a percentage (of what the rule's own PERCENT would take it
//! of: an invoice's qualifying amount, or the spend above the threshold), one-time (once per
//! referral) or recurring (on every qualifying event). A percentage needs an invoice: on other
//! triggers the rule's own value stands.

use super::spec::{Calculation, Rule, RuleInput, counts_spend, parse_calculation};
use crate::error::{AppError, AppResult};
use entity::account;
use entity::enums::{self, Beneficiary, RuleTrigger};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AffiliateTerms {
    /// `Fixed` or `Percent`.
    pub calculation: Calculation,
    pub recurring: bool,
}

impl AffiliateTerms {
    /// Terms as an admin writes them: FIXED (an amount above 0) or PERCENT (above 0, at most
    /// 1000).
    pub fn parse(kind: enums::Calculation, input: &RuleInput, recurring: Option<bool>) -> AppResult<AffiliateTerms> {
        if !matches!(kind, enums::Calculation::Fixed | enums::Calculation::Percent) {
            return Err(AppError::bad_input(
                "calculation: an affiliate's terms are FIXED or PERCENT",
            ));
        }
        Ok(AffiliateTerms {
            calculation: parse_calculation(kind, input)?,
            recurring: recurring.unwrap_or(false),
        })
    }

    /// The account's terms, if it has any.
    pub fn of(account: &account::Model) -> AppResult<Option<AffiliateTerms>> {
        account
            .affiliate_terms
            .as_deref()
            .map(|json| serde_json::from_str(json).map_err(AppError::internal))
            .transpose()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `rule` as it pays an affiliate with these terms, or `None` when the terms do not touch
    /// it: they override the rules that pay the account as the referrer of a referral (not its
    /// own invoices' discounts).
    pub fn apply(&self, rule: &Rule) -> Option<Rule> {
        if rule.beneficiary != Beneficiary::Referrer || rule.trigger == RuleTrigger::ReferrerInvoicePaid {
            return None;
        }
        let calculation = match &self.calculation {
            Calculation::Percent(_) if !counts_spend(rule.trigger) => rule.calculation.clone(),
            terms => terms.clone(),
        };
        let mut termed = rule.clone();
        termed.calculation = calculation;
        termed.payout.recurring = self.recurring;
        Some(termed)
    }
}
