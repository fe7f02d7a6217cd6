//! The affiliate program's records: an account's standing in it (applications, an admin's
//! decisions, the sign-up bonus of a first approval) and its own terms. An admin who sets an
//! account's terms, or approves it, makes it an approved affiliate (it need not have applied).

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::accounts::{find, lock};
use crate::service::outbox::{self, payloads};
use crate::service::rules::AffiliateTerms;
use crate::service::{audit, ledger, optional_text, settings};
use entity::account;
use entity::enums::{AffiliateStatus, EntryKind, PayoutSchedule, Unit};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, IntoActiveModel, Set};
use serde_json::json;

/// Sets (or, with `None`, removes) an account's affiliate terms, audited. Terms the account has
/// already change nothing and write nothing.
pub async fn set_terms(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    terms: Option<AffiliateTerms>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let txn = begin_write(db).await?;
    let before = find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    let status = before.affiliate_status.unwrap_or(AffiliateStatus::Approved);
    let terms_json = terms.as_ref().map(AffiliateTerms::to_json);
    if before.affiliate_status == Some(status) && before.affiliate_terms == terms_json {
        return Ok(before);
    }
    let mut row = before.clone().into_active_model();
    row.affiliate_status = Set(Some(status));
    row.affiliate_terms = Set(terms_json);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "SET_AFFILIATE_TERMS",
        &format!("account:{}", after.external_id),
        json!({ "affiliateStatus": before.affiliate_status, "terms": AffiliateTerms::of(&before)? }),
        json!({ "affiliateStatus": after.affiliate_status, "terms": terms }),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(account = after.id, "affiliate terms set");
    Ok(after)
}

/// Sets (or, with `None`, removes) an account's own payout schedule, audited: its cash
/// commission given from now on becomes withdrawable by it instead of the program's. The
/// schedule it has already changes nothing and writes nothing.
pub async fn set_payout_schedule(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    schedule: Option<PayoutSchedule>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let txn = begin_write(db).await?;
    let before = find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    if before.payout_schedule == schedule {
        return Ok(before);
    }
    let mut row = before.clone().into_active_model();
    row.payout_schedule = Set(schedule);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "SET_PAYOUT_SCHEDULE",
        &format!("account:{}", after.external_id),
        json!({ "payoutSchedule": before.payout_schedule }),
        json!({ "payoutSchedule": after.payout_schedule }),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(account = after.id, schedule = ?schedule, "payout schedule set");
    Ok(after)
}

/// The longest note an applicant may write.
pub const MAX_NOTE: usize = 1000;

/// A customer applies to the affiliate program. An account that has applied, is approved or is
/// suspended is answered as it is (applying again changes nothing); a rejected one may apply
/// again.
pub async fn apply(
    db: &DatabaseConnection,
    external_id: &str,
    note: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let note = optional_text("note", note, MAX_NOTE)?;
    let account = crate::service::accounts::get_by_external_id(db, external_id).await?;
    if !may_apply(account.affiliate_status) {
        return Ok(account);
    }
    let txn = begin_write(db).await?;
    let account = lock(&txn, account.id).await?;
    if !may_apply(account.affiliate_status) {
        return Ok(account);
    }
    let mut row = account.into_active_model();
    row.affiliate_status = Set(Some(AffiliateStatus::Applied));
    row.affiliate_applied_at = Set(Some(now));
    row.affiliate_note = Set(note);
    let after = row.update(&txn).await?;
    let event = payloads::affiliate_applied(&after, AffiliateStatus::Applied);
    outbox::emit_all(&txn, vec![event], now).await?;
    txn.commit().await?;
    tracing::info!(account = after.id, "applied to the affiliate program");
    Ok(after)
}

fn may_apply(status: Option<AffiliateStatus>) -> bool {
    matches!(status, None | Some(AffiliateStatus::Rejected))
}

/// An admin's decision on an affiliate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approved, whether or not it applied; the first approval pays the sign-up bonus.
    Approve,
    Reject,
    /// Only an approved affiliate is suspended.
    Suspend,
}

impl Decision {
    fn status(self) -> AffiliateStatus {
        match self {
            Decision::Approve => AffiliateStatus::Approved,
            Decision::Reject => AffiliateStatus::Rejected,
            Decision::Suspend => AffiliateStatus::Suspended,
        }
    }
}

/// Decides on an affiliate, audited. A decision that leaves the status as it is changes
/// nothing and writes nothing. The first approval of an account pays the program's
/// `affiliate_signup_bonus` in CASH, once: the account's row is locked, and
/// `affiliate_approved_at` is set in the same transaction.
pub async fn decide(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    decision: Decision,
    reason: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let reason = optional_text("reason", reason, MAX_NOTE)?;
    let txn = begin_write(db).await?;
    find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    let before = lock(&txn, account_id).await?;
    let status = decision.status();
    if before.affiliate_status == Some(status) {
        return Ok(before);
    }
    match (decision, before.affiliate_status) {
        (Decision::Reject, None) => {
            return Err(AppError::bad_input(
                "the account has not applied to the affiliate program",
            ));
        }
        (Decision::Suspend, other) if other != Some(AffiliateStatus::Approved) => {
            return Err(AppError::bad_input("only an approved affiliate can be suspended"));
        }
        _ => {}
    }
    let first_approval = decision == Decision::Approve && before.affiliate_approved_at.is_none();
    let mut row = before.clone().into_active_model();
    row.affiliate_status = Set(Some(status));
    row.affiliate_decided_at = Set(Some(now));
    if first_approval {
        row.affiliate_approved_at = Set(Some(now));
    }
    let after = row.update(&txn).await?;
    let bonus = if first_approval {
        pay_signup_bonus(&txn, &after, now).await?
    } else {
        Amount::ZERO
    };
    audit::record(
        &txn,
        actor,
        "DECIDE_AFFILIATE",
        &format!("account:{}", after.external_id),
        json!({ "affiliateStatus": before.affiliate_status }),
        json!({ "affiliateStatus": after.affiliate_status, "reason": reason, "signupBonus": bonus.to_string() }),
        now,
    )
    .await?;
    let event = payloads::affiliate_decided(&after, status, reason.as_deref());
    outbox::emit_all(&txn, vec![event], now).await?;
    txn.commit().await?;
    tracing::info!(account = after.id, status = ?status, "affiliate decided");
    Ok(after)
}

/// Pays the program's sign-up bonus to a newly approved affiliate, available at once; what it
/// paid (0 when the program pays none).
async fn pay_signup_bonus(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Amount> {
    let bonus = Amount::from_micros(settings::get(txn).await?.affiliate_signup_bonus);
    if !bonus.is_positive() {
        return Ok(Amount::ZERO);
    }
    let paid = ledger::post_credit(
        txn,
        ledger::NewCredit::outside_rules(
            account.id,
            Unit::Cash,
            bonus,
            EntryKind::Reward,
            "Affiliate sign-up bonus".to_owned(),
        ),
        now,
    )
    .await?;
    if let Some(entry) = paid {
        outbox::emit_all(txn, vec![payloads::reward_granted(&entry, &account.external_id)], now).await?;
    }
    Ok(bonus)
}
