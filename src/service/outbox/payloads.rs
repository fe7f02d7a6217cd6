//! Every event's `data`, version 1, built in one place (the README documents them). Ids are the
//! API's ids (`acc_12`, `ref_3`, `led_40`, `clm_7`, `wdr_2`); every event about an account names
//! it by `externalId` too, which is how the platform knows it; amounts are decimal strings as in
//! the API; times are RFC 3339 in UTC with microseconds.
//!
//! On PostgreSQL the claim and purchase functions write `claim.requested`, `reward.granted` and
//! `referral.qualified` themselves (migration/src/sql), with the same fields: the tests compare
//! the two paths' payloads.

use super::{EventType, NewEvent};
use crate::amount::Amount;
use chrono::{DateTime, SecondsFormat, Utc};
use entity::enums::{AffiliateStatus, ClaimStatus, TakeBackCause, WithdrawalStatus};
use entity::{account, claim, ledger_entry, referral, withdrawal};
use sea_orm::ActiveEnum;
use serde_json::{Value, json};

pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt_time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(time(at)))
}

fn amount(micros: i64) -> String {
    Amount::from_micros(micros).to_string()
}

fn id(prefix: &str, id: i64) -> String {
    format!("{prefix}_{id}")
}

fn opt_id(prefix: &str, value: Option<i64>) -> Value {
    value.map_or(Value::Null, |value| Value::String(id(prefix, value)))
}

/// The two sides of a referral, by external id (a referral whose referrer is gone has none).
pub struct Parties<'a> {
    pub referrer: Option<&'a str>,
    pub referee: &'a str,
}

fn referral_data(referral: &referral::Model, parties: &Parties<'_>) -> Value {
    json!({
        "referralId": id("ref", referral.id),
        "status": referral.status.to_value(),
        "referrerAccountId": opt_id("acc", referral.referrer_id),
        "referrerExternalId": parties.referrer,
        "refereeAccountId": id("acc", referral.referee_id),
        "refereeExternalId": parties.referee,
    })
}

pub fn referral_attributed(referral: &referral::Model, parties: &Parties<'_>) -> NewEvent {
    let mut data = referral_data(referral, parties);
    data["source"] = json!(referral.source.to_value());
    data["attributedAt"] = json!(time(referral.created_at));
    NewEvent::new(EventType::ReferralAttributed, data)
}

pub fn referral_qualified(referral: &referral::Model, parties: &Parties<'_>, at: DateTime<Utc>) -> NewEvent {
    let mut data = referral_data(referral, parties);
    data["status"] = json!("QUALIFIED");
    data["qualifiedAt"] = json!(time(at));
    NewEvent::new(EventType::ReferralQualified, data)
}

pub fn referral_rejected(referral: &referral::Model, parties: &Parties<'_>) -> NewEvent {
    let mut data = referral_data(referral, parties);
    data["status"] = json!("REJECTED");
    data["reason"] = json!(referral.rejection_reason.as_ref().map(|r| r.to_value()));
    NewEvent::new(EventType::ReferralRejected, data)
}

fn entry_data(entry: &ledger_entry::Model, external_id: &str) -> Value {
    json!({
        "entryId": id("led", entry.id),
        "accountId": id("acc", entry.account_id),
        "externalId": external_id,
        "unit": entry.unit.to_value(),
        "amount": amount(entry.amount),
    })
}

/// A reward posted to the ledger: available at once (`POSTED`) or held until `availableAt`.
pub fn reward_granted(entry: &ledger_entry::Model, external_id: &str) -> NewEvent {
    let mut data = entry_data(entry, external_id);
    data["status"] = json!(entry.status.to_value());
    data["availableAt"] = opt_time(entry.available_at);
    data["expiresAt"] = opt_time(entry.expires_at);
    data["referralId"] = opt_id("ref", entry.referral_id);
    data["ruleId"] = opt_id("rul", entry.rule_id);
    NewEvent::new(EventType::RewardGranted, data)
}

/// A held reward whose hold ended: its amount is now spendable.
pub fn reward_available(entry: &ledger_entry::Model, external_id: &str) -> NewEvent {
    let mut data = entry_data(entry, external_id);
    data["expiresAt"] = opt_time(entry.expires_at);
    NewEvent::new(EventType::RewardAvailable, data)
}

/// What was left of a lot when it expired (`amount`), out of what it was (`originalAmount`).
pub fn reward_expired(lot: &ledger_entry::Model, external_id: &str, expired: i64) -> NewEvent {
    let mut data = entry_data(lot, external_id);
    data["originalAmount"] = json!(amount(lot.amount));
    data["amount"] = json!(amount(expired));
    data["expiredAt"] = opt_time(lot.expires_at);
    NewEvent::new(EventType::RewardExpired, data)
}

/// A reward taken back, whole or in part (`amount`, positive, of `originalAmount`): by a
/// refund, a correction, a disqualification, a duplicate payment method or an admin (`cause`).
/// `entries`: what the ledger wrote or changed for it (a reversal, a voided hold, debt).
pub fn reward_reversed(
    reward: &ledger_entry::Model,
    external_id: &str,
    taken: i64,
    cause: TakeBackCause,
    entries: &[i64],
) -> NewEvent {
    let mut data = entry_data(reward, external_id);
    data["originalAmount"] = json!(amount(reward.amount));
    data["amount"] = json!(amount(taken));
    data["cause"] = json!(cause.to_value());
    data["entries"] = json!(entries.iter().map(|entry| id("led", *entry)).collect::<Vec<_>>());
    NewEvent::new(EventType::RewardReversed, data)
}

fn claim_data(claim: &claim::Model, external_id: &str) -> Value {
    json!({
        "claimId": id("clm", claim.id),
        "accountId": id("acc", claim.account_id),
        "externalId": external_id,
        "providerId": id("prv", claim.provider_id),
        "gb": claim.gb,
        "points": amount(claim.points),
        "status": claim.status.to_value(),
    })
}

pub fn claim_requested(claim: &claim::Model, external_id: &str) -> NewEvent {
    NewEvent::new(EventType::ClaimRequested, claim_data(claim, external_id))
}

/// The billing side's answer: `COMPLETED`, or `FAILED` (the points went back).
pub fn claim_completed(claim: &claim::Model, external_id: &str, status: ClaimStatus, at: DateTime<Utc>) -> NewEvent {
    let mut data = claim_data(claim, external_id);
    data["status"] = json!(status.to_value());
    data["decidedAt"] = json!(time(at));
    NewEvent::new(EventType::ClaimCompleted, data)
}

pub fn credit_applied(account: &account::Model, invoice_id: &str, requested: i64, applied: i64) -> NewEvent {
    NewEvent::new(
        EventType::CreditApplied,
        json!({
            "accountId": id("acc", account.id),
            "externalId": account.external_id,
            "invoiceId": invoice_id,
            "requested": amount(requested),
            "applied": amount(applied),
        }),
    )
}

fn affiliate_data(account: &account::Model, status: AffiliateStatus) -> Value {
    json!({
        "accountId": id("acc", account.id),
        "externalId": account.external_id,
        "status": status.to_value(),
    })
}

pub fn affiliate_applied(account: &account::Model, status: AffiliateStatus) -> NewEvent {
    let mut data = affiliate_data(account, status);
    data["appliedAt"] = opt_time(account.affiliate_applied_at);
    NewEvent::new(EventType::AffiliateApplied, data)
}

pub fn affiliate_decided(account: &account::Model, status: AffiliateStatus, note: Option<&str>) -> NewEvent {
    let mut data = affiliate_data(account, status);
    data["note"] = json!(note);
    NewEvent::new(EventType::AffiliateDecided, data)
}

fn withdrawal_data(withdrawal: &withdrawal::Model, external_id: &str) -> Value {
    json!({
        "withdrawalId": id("wdr", withdrawal.id),
        "accountId": id("acc", withdrawal.account_id),
        "externalId": external_id,
        "amount": amount(withdrawal.amount),
        "status": withdrawal.status.to_value(),
        "requestedAt": time(withdrawal.requested_at),
    })
}

pub fn withdrawal_requested(withdrawal: &withdrawal::Model, external_id: &str) -> NewEvent {
    NewEvent::new(EventType::WithdrawalRequested, withdrawal_data(withdrawal, external_id))
}

pub fn withdrawal_decided(withdrawal: &withdrawal::Model, external_id: &str, status: WithdrawalStatus) -> NewEvent {
    let mut data = withdrawal_data(withdrawal, external_id);
    data["status"] = json!(status.to_value());
    data["payoutReference"] = json!(withdrawal.payout_reference);
    data["reason"] = json!(withdrawal.reason);
    data["decidedAt"] = opt_time(withdrawal.decided_at);
    NewEvent::new(EventType::WithdrawalDecided, data)
}

pub fn account_disqualified(account: &account::Model, reason: &str, at: DateTime<Utc>) -> NewEvent {
    NewEvent::new(
        EventType::AccountDisqualified,
        json!({
            "accountId": id("acc", account.id),
            "externalId": account.external_id,
            "reason": reason,
            "disqualifiedAt": time(at),
        }),
    )
}
