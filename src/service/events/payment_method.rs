//! A payment method was verified: what qualifies a postpaid referee. The account keeps when it
//! first happened, and the method's fingerprint if the payment provider gave one.
//!
//! A fingerprint is checked twice, one person being one customer and one referrer:
//!
//! - as a referee: a fingerprint that is its referrer's, or another referee's of the same
//!   referrer, rejects the account's referral (`DUPLICATE_FINGERPRINT`) and takes back what it
//!   paid; the rules then pay nothing for it. The referrer's row is locked first, so referees
//!   of one referrer verifying at once are checked one after the other, each seeing the
//!   fingerprints of those before it.
//! - as a referrer: the first account to verify with a fingerprint is its eligible referrer
//!   (`payment_fingerprints`, whose primary key decides between accounts verifying at once);
//!   any other account with it cannot earn as a referrer (`DUPLICATE_REFERRER`).

use super::{Recorded, Step};
use crate::db::inserted;
use crate::error::{AppError, AppResult};
use crate::service::rules::{Decision, EventFacts, Outcome};
use crate::service::take_backs::{self, Take};
use crate::service::{accounts, referrals};
use entity::enums::{ReferralStatus, RejectionReason, TakeBackCause};
use entity::{account, ledger_entry, payment_fingerprint, referral};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::json;

/// The longest fingerprint taken.
const MAX_FINGERPRINT: usize = 200;

#[derive(Debug, Clone, Default)]
pub struct PaymentMethod {
    /// The payment provider's fingerprint of the method (a card's, an account's); opaque.
    pub fingerprint: Option<String>,
}

impl PaymentMethod {
    pub(super) fn canonical(&self) -> AppResult<(PaymentMethod, serde_json::Value)> {
        let Some(fingerprint) = &self.fingerprint else {
            // As events without one were always written.
            return Ok((PaymentMethod::default(), json!({})));
        };
        let fingerprint = fingerprint.trim();
        if fingerprint.is_empty() || fingerprint.chars().count() > MAX_FINGERPRINT {
            return Err(AppError::bad_input(format!(
                "fingerprint must be 1 to {MAX_FINGERPRINT} characters (or left out)"
            )));
        }
        let method = PaymentMethod {
            fingerprint: Some(fingerprint.to_owned()),
        };
        Ok((method, json!({ "fingerprint": fingerprint })))
    }
}

pub(super) async fn record(step: &Step<'_>, method: &PaymentMethod) -> AppResult<Recorded> {
    let verified_at = Expr::col(account::Column::PaymentMethodVerifiedAt);
    let mut row = account::Entity::update_many()
        .col_expr(
            account::Column::PaymentMethodVerifiedAt,
            Expr::case(verified_at.clone().is_null(), step.event.occurred_at)
                .finally(verified_at)
                .into(),
        )
        .filter(account::Column::Id.eq(step.account.id));
    if let Some(fingerprint) = &method.fingerprint {
        row = row.col_expr(account::Column::PaymentFingerprint, Expr::value(fingerprint.clone()));
    }
    row.exec(step.txn).await?;

    let Some(fingerprint) = &method.fingerprint else {
        return apply(step).await;
    };
    check_referrer(step, fingerprint).await?;
    match check_referee(step, fingerprint).await? {
        Some(taken_back) => Ok(Recorded {
            rewards: taken_back,
            decisions: rejected_decisions(step),
            amount: None,
            refund_of: None,
        }),
        None => apply(step).await,
    }
}

async fn apply(step: &Step<'_>) -> AppResult<Recorded> {
    let (rewards, decisions) = step.apply(&EventFacts::PaymentMethodVerified, None).await?;
    Ok(Recorded {
        rewards,
        decisions,
        amount: None,
        refund_of: None,
    })
}

/// Makes the account the eligible referrer of `fingerprint` if no other account is; marks it
/// `DUPLICATE_REFERRER` if another is.
async fn check_referrer(step: &Step<'_>, fingerprint: &str) -> AppResult<()> {
    let txn = step.txn;
    // The primary key decides between accounts verifying with it at once.
    let insert = payment_fingerprint::Entity::insert(payment_fingerprint::ActiveModel {
        fingerprint: Set(fingerprint.to_owned()),
        account_id: Set(step.account.id),
    })
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .try_insert()
    .exec_with_returning(txn)
    .await;
    if inserted(insert)?.is_some() {
        return Ok(());
    }
    let owner = payment_fingerprint::Entity::find_by_id(fingerprint.to_owned())
        .one(txn)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("fingerprint row vanished")))?;
    if owner.account_id != step.account.id {
        account::Entity::update_many()
            .col_expr(
                account::Column::ReferrerIneligibleReason,
                Expr::value(RejectionReason::DuplicateReferrer),
            )
            .filter(account::Column::Id.eq(step.account.id))
            .filter(account::Column::ReferrerIneligibleReason.is_null())
            .exec(txn)
            .await?;
        tracing::info!(
            account = step.account.id,
            eligible = owner.account_id,
            "duplicate referrer"
        );
    }
    Ok(())
}

/// Rejects the account's referral when `fingerprint` is its referrer's or another referee's of
/// the same referrer, and takes back what the referral paid: the entries written or changed.
/// `None` when the referral stands (or there is none).
async fn check_referee(step: &Step<'_>, fingerprint: &str) -> AppResult<Option<Vec<ledger_entry::Model>>> {
    let txn = step.txn;
    let Some(referral) = accounts::accepted_referral_of(txn, step.account.id).await? else {
        return Ok(None);
    };
    let Some(referrer_id) = referral.referrer_id else {
        return Ok(None);
    };
    let referrer = accounts::lock(txn, referrer_id).await?;
    let shared = referrer.payment_fingerprint.as_deref() == Some(fingerprint)
        || sibling_with(txn, referrer_id, step.account.id, fingerprint).await?;
    if !shared {
        return Ok(None);
    }
    let rejected = referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(ReferralStatus::Rejected))
        .col_expr(
            referral::Column::RejectionReason,
            Expr::value(RejectionReason::DuplicateFingerprint),
        )
        .filter(referral::Column::Id.eq(referral.id))
        .exec_with_returning(txn)
        .await?;
    for rejected in &rejected {
        referrals::announce_rejection(txn, rejected, step.now).await?;
    }
    let mut taken_back = Vec::new();
    let paid = ledger_entry::Entity::find().filter(ledger_entry::Column::ReferralId.eq(referral.id));
    for standing in take_backs::standing(txn, paid).await? {
        if standing.left() <= 0 {
            continue;
        }
        let take = Take {
            standing: &standing,
            amount: standing.left(),
            cause: TakeBackCause::DuplicateFingerprint,
            event_id: Some(step.event.id),
            description: "Referral rejected: the friend's payment method is already known to this referrer".into(),
        };
        taken_back.extend(take_backs::take(txn, take, step.now).await?);
    }
    tracing::info!(
        referral = referral.id,
        taken_back = taken_back.len(),
        "referral rejected: duplicate fingerprint"
    );
    Ok(Some(taken_back))
}

/// Whether another accepted referee of `referrer_id` than `referee_id` has `fingerprint`.
async fn sibling_with(
    db: &impl ConnectionTrait,
    referrer_id: i64,
    referee_id: i64,
    fingerprint: &str,
) -> AppResult<bool> {
    let count = account::Entity::find()
        .filter(account::Column::Id.in_subquery(accounts::referees_of(referrer_id)))
        .filter(account::Column::Id.ne(referee_id))
        .filter(account::Column::PaymentFingerprint.eq(fingerprint))
        .count(db)
        .await?;
    Ok(count > 0)
}

/// Every rule skipped: the referral the event would have paid for was just rejected.
fn rejected_decisions(step: &Step<'_>) -> Vec<Decision> {
    step.rules
        .iter()
        .map(|rule| Decision {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            outcome: Outcome::Skipped,
            reason: "the referral was rejected (DUPLICATE_FINGERPRINT): the friend's payment method is its \
                     referrer's, or another friend's of the same referrer"
                .into(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn canonical(fingerprint: Option<&str>) -> AppResult<(PaymentMethod, serde_json::Value)> {
        PaymentMethod {
            fingerprint: fingerprint.map(str::to_owned),
        }
        .canonical()
    }

    #[test]
    fn a_fingerprint_is_trimmed_and_bounded_and_none_keeps_the_old_form() {
        let (method, detail) = canonical(Some("  fp_1Abc ")).expect("valid");
        assert_eq!(method.fingerprint.as_deref(), Some("fp_1Abc"), "trimmed, case kept");
        assert_eq!(detail, json!({ "fingerprint": "fp_1Abc" }));
        assert_eq!(
            canonical(None).expect("valid").1,
            json!({}),
            "as events without one were written"
        );
        let longest = "x".repeat(MAX_FINGERPRINT);
        assert!(canonical(Some(&longest)).is_ok());
        for bad in ["", "   ", &"x".repeat(MAX_FINGERPRINT + 1)] {
            assert!(matches!(canonical(Some(bad)), Err(AppError::BadInput(_))), "{bad:?}");
        }
    }
}
