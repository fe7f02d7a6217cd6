//! Referrals: attribution at registration, and their integrity. Only a newcomer is referred by
//! a code; an admin may attach a referrer on purpose, never closing a cycle; a disqualified
//! account neither refers nor is rewarded. Every accepted referral is unique per referee (a
//! partial unique index); a rejected attempt is kept for the record, once per (referee, code,
//! reason).

use crate::db::{begin_write, inserted};
use crate::error::{AppError, AppResult};
use crate::limits::Limits;
use crate::service::accounts::{self, accepted_referral_of};
use crate::service::codes::ReferralCode;
use crate::service::outbox;
use crate::service::outbox::payloads::{self, Parties};
use crate::service::take_backs::{self, Take};
use crate::service::{audit, ledger, optional_text, required_text, settings};
use chrono::Utc;
use entity::enums::{EntryKind, EntryStatus, ReferralSource, ReferralStatus, RejectionReason, TakeBackCause};
use entity::{account, ledger_entry, referral};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use std::collections::HashSet;

/// Links of a referrer chain an assignment walks before giving up. Chains are a handful of links
/// in practice; the bound keeps one admin request from walking an unbounded one.
pub const MAX_CHAIN: usize = 1_000;

/// Serializes referrer assignments on PostgreSQL (a transaction-scoped advisory lock; SQLite's
/// `BEGIN IMMEDIATE` serializes all writers already). Two assignments that each add one link of
/// a cycle share no row: A→B and C→D close A→B→C→D→A without touching the same account, so row
/// locks on the two accounts of each would not order them. Assignments are rare admin acts;
/// one at a time costs nothing. Registration never needs it: it refers only an account created
/// in its own transaction, which no one can have as a referrer yet, so it cannot close a cycle.
const ASSIGN_LOCK: i64 = 0x7265_6665_7272_0001;

/// Where an unknown code is counted: the limits and the client's key (`limits::client_key`).
pub struct LookupQuota<'a> {
    pub limits: &'a Limits,
    pub client: String,
}

/// Attributes an account created in this very transaction to the owner of `code`, or records
/// why not.
pub async fn attribute_new(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    code: &ReferralCode,
    quota: &LookupQuota<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<referral::Model> {
    let referrer = accounts::find_by_code(txn, code).await?;
    let rejection = match &referrer {
        // Only unknown codes are counted, after the lookup: a valid code is never refused for
        // volume, whoever sends it and however many. Past the quota the attempt is recorded as
        // RATE_LIMITED instead of UNKNOWN_CODE, with the code kept, and the account is
        // registered all the same. A guesser learns nothing it would not have learnt anyway:
        // both answers say "not a valid code", and a hit is answered as any valid code must be.
        // What the limit gives is a signal per client address (a burst of unknown codes from
        // one address is a guesser, and the billing system can throttle or challenge it) and
        // a record an admin can search, while each guess still costs the guesser a sign-up.
        None if quota.limits.unknown_code(&quota.client) => Some(RejectionReason::UnknownCode),
        None => Some(RejectionReason::RateLimited),
        Some(referrer) if referrer.id == account.id => Some(RejectionReason::SelfReferral),
        Some(referrer) => {
            let settings = settings::get(txn).await?;
            if !settings.enabled {
                Some(RejectionReason::ProgramDisabled)
            } else if referrer.disqualified_at.is_some() {
                Some(RejectionReason::ReferrerDisqualified)
            } else if settings.require_verified_payment_for_link && referrer.payment_method_verified_at.is_none() {
                // A code is a link's: one that may not be shared does not attribute either.
                Some(RejectionReason::ReferrerUnverified)
            } else {
                None
            }
        }
    };
    let referrer = referrer.filter(|r| r.id != account.id);
    let referrer_id = referrer.as_ref().map(|r| r.id);
    let parties = Parties {
        referrer: referrer.as_ref().map(|r| r.external_id.as_str()),
        referee: &account.external_id,
    };
    match rejection {
        Some(reason) => record_rejection(txn, &parties, account.id, referrer_id, code, reason, now).await,
        None => {
            let row = new_referral(
                account.id,
                referrer_id,
                Some(code),
                ReferralStatus::Pending,
                None,
                ReferralSource::Code,
                now,
            );
            match insert_unless_refused(txn, row).await? {
                Some(referral) => {
                    outbox::emit_all(txn, vec![payloads::referral_attributed(&referral, &parties)], now).await?;
                    Ok(referral)
                }
                None => accepted_referral_of(txn, account.id)
                    .await?
                    .ok_or_else(|| AppError::internal(anyhow::anyhow!("referral insert conflicted but none found"))),
            }
        }
    }
}

/// A code given for an account that already exists. A retry of the registration that created
/// the account (the same code) answers that registration's attribution again, whatever it was;
/// any other code is rejected as `EXISTING_ACCOUNT` and changes nothing: an existing customer
/// is never paid for as a newcomer, and two accounts cannot refer each other by registering
/// again with each other's code. The code is not looked up (so not counted either): the answer
/// is the same whether it exists or not.
pub async fn attribute_existing(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    code: &ReferralCode,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<referral::Model> {
    // Every attempt on an existing account is EXISTING_ACCOUNT since this rule exists, so any
    // other attempt with this code is the creating registration's (or a record from before).
    let first = referral::Entity::find()
        .filter(referral::Column::RefereeId.eq(account.id))
        .filter(referral::Column::CodeUsed.eq(code.as_str()))
        .filter(
            Condition::any()
                .add(referral::Column::RejectionReason.is_null())
                .add(referral::Column::RejectionReason.ne(RejectionReason::ExistingAccount)),
        )
        // The accepted one first (its rejection reason is NULL), then the oldest.
        .order_by_asc(Expr::col(referral::Column::RejectionReason).is_not_null())
        .order_by_asc(referral::Column::Id)
        .one(txn)
        .await?;
    match first {
        Some(first) => Ok(first),
        None => {
            let parties = Parties {
                referrer: None,
                referee: &account.external_id,
            };
            record_rejection(
                txn,
                &parties,
                account.id,
                None,
                code,
                RejectionReason::ExistingAccount,
                now,
            )
            .await
        }
    }
}

/// A rejected attempt is kept for the record; the same attempt again answers the same row (a
/// partial unique index keeps one row per referee, code and reason, even under races). A new
/// record is announced (`referral.rejected`); the same attempt again is not.
async fn record_rejection(
    txn: &impl ConnectionTrait,
    parties: &Parties<'_>,
    referee_id: i64,
    referrer_id: Option<i64>,
    code: &ReferralCode,
    reason: RejectionReason,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<referral::Model> {
    let row = new_referral(
        referee_id,
        referrer_id,
        Some(code),
        ReferralStatus::Rejected,
        Some(reason),
        ReferralSource::Code,
        now,
    );
    if let Some(rejected) = insert_unless_refused(txn, row).await? {
        outbox::emit_all(txn, vec![payloads::referral_rejected(&rejected, parties)], now).await?;
        return Ok(rejected);
    }
    referral::Entity::find()
        .filter(referral::Column::RefereeId.eq(referee_id))
        .filter(referral::Column::Status.eq(ReferralStatus::Rejected))
        .filter(referral::Column::CodeUsed.eq(code.as_str()))
        .filter(referral::Column::RejectionReason.eq(reason))
        .one(txn)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("rejected referral conflicted but was not found")))
}

/// Inserts a referral, or `None` when a unique index refuses it (one accepted referral per
/// referee; one rejected attempt per referee, code and reason), also under concurrent requests.
async fn insert_unless_refused(
    txn: &impl ConnectionTrait,
    row: referral::ActiveModel,
) -> AppResult<Option<referral::Model>> {
    let insert = referral::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec_with_returning(txn)
        .await;
    Ok(inserted(insert)?)
}

fn new_referral(
    referee_id: i64,
    referrer_id: Option<i64>,
    code: Option<&ReferralCode>,
    status: ReferralStatus,
    rejection_reason: Option<RejectionReason>,
    source: ReferralSource,
    now: chrono::DateTime<chrono::Utc>,
) -> referral::ActiveModel {
    referral::ActiveModel {
        referee_id: Set(referee_id),
        referrer_id: Set(referrer_id),
        status: Set(status),
        rejection_reason: Set(rejection_reason),
        code_used: Set(code.map(|c| c.as_str().to_owned())),
        source: Set(source),
        created_at: Set(now),
        qualified_at: Set(None),
        ..Default::default()
    }
}

/// Attaches a referrer to an account on an admin's decision. Refused: self-referral, an account
/// that already has an accepted referral, a disqualified account on either side, and a referrer
/// whose own chain of referrers leads back to the account (a cycle of any length). Pays no
/// SIGNUP rule: sign-up is long past; later events pay as for any referral.
pub async fn assign_referrer(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    referrer_id: i64,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(account::Model, referral::Model)> {
    let reason = required_text("reason", reason, 500)?;
    if account_id == referrer_id {
        return Err(AppError::bad_input("an account cannot be its own referrer"));
    }
    let txn = begin_write(db).await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({ASSIGN_LOCK})"))
            .await?;
    }
    let account = accounts::find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    let referrer = accounts::find(&txn, referrer_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such referrer account"))?;
    if account.disqualified_at.is_some() {
        return Err(AppError::bad_input(format!(
            "account {} is disqualified and cannot be referred",
            account.external_id
        )));
    }
    if referrer.disqualified_at.is_some() {
        return Err(AppError::bad_input(format!(
            "account {} is disqualified and cannot refer",
            referrer.external_id
        )));
    }
    let already = || {
        AppError::bad_input(format!(
            "account {} already has a referrer; only an account without one can be assigned one",
            account.external_id
        ))
    };
    if accepted_referral_of(&txn, account.id).await?.is_some() {
        return Err(already());
    }
    if let Some(chain) = chain_back_to(&txn, referrer.id, account.id).await? {
        let names = accounts::by_ids(&txn, &chain).await?;
        let path: Vec<&str> = std::iter::once(account.id)
            .chain(chain.iter().copied())
            .map(|id| names.get(&id).map_or("?", |a| a.external_id.as_str()))
            .collect();
        return Err(AppError::bad_input(format!(
            "assigning {} as the referrer of {} would close a referral cycle ({})",
            referrer.external_id,
            account.external_id,
            path.join(" → ")
        )));
    }
    let row = new_referral(
        account.id,
        Some(referrer.id),
        None,
        ReferralStatus::Pending,
        None,
        ReferralSource::Admin,
        now,
    );
    let referral = insert_unless_refused(&txn, row).await?.ok_or_else(already)?;
    let parties = Parties {
        referrer: Some(&referrer.external_id),
        referee: &account.external_id,
    };
    outbox::emit_all(&txn, vec![payloads::referral_attributed(&referral, &parties)], now).await?;
    audit::record(
        &txn,
        actor,
        "ASSIGN_REFERRER",
        &format!("account:{}", account.external_id),
        json!({ "referrer": null }),
        json!({ "referrer": referrer.external_id, "referralId": referral.id, "reason": reason }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok((account, referral))
}

/// Walks the referrers of `start` upwards. `Some(chain)`: the chain from `start` up to and
/// including `target` (so a new link target → start would close a cycle); `None`: the chain
/// ends without meeting `target`. Longer than `MAX_CHAIN` is refused rather than guessed.
async fn chain_back_to(db: &impl ConnectionTrait, start: i64, target: i64) -> AppResult<Option<Vec<i64>>> {
    let mut chain = vec![start];
    let mut seen = HashSet::from([start]);
    let mut current = start;
    for _ in 0..MAX_CHAIN {
        let Some(next) = accepted_referral_of(db, current).await?.and_then(|r| r.referrer_id) else {
            return Ok(None);
        };
        chain.push(next);
        if next == target {
            return Ok(Some(chain));
        }
        // A loop that does not pass through `target` (recorded before cycles were refused):
        // the new link would not add one.
        if !seen.insert(next) {
            return Ok(None);
        }
        current = next;
    }
    Err(AppError::bad_input(format!(
        "the referrer's chain of referrers is longer than {MAX_CHAIN} links; not assigned"
    )))
}

/// Disqualifies an account: it no longer refers (its code is rejected) and no rule rewards it
/// or its referrals; what it has pending in the ledger is voided, and every reward posted to it
/// is reversed: all that is left of it (a refund may have taken part already), through
/// `take_backs`, in the same transaction; what its balance cannot cover becomes debt.
/// Disqualifying a disqualified account again changes nothing and answers it as it is.
/// Returns the account and the entries voided (the reversals are in the audit record and the
/// account's history).
pub async fn disqualify(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(account::Model, Vec<ledger_entry::Model>)> {
    let reason = required_text("reason", reason, 500)?;
    let txn = begin_write(db).await?;
    // Conditional: of concurrent disqualifications, one changes the row and voids.
    let updated = account::Entity::update_many()
        .col_expr(account::Column::DisqualifiedAt, Expr::value(now))
        .col_expr(account::Column::DisqualificationReason, Expr::value(reason.clone()))
        .filter(account::Column::Id.eq(account_id))
        .filter(account::Column::DisqualifiedAt.is_null())
        .exec_with_returning(&txn)
        .await?;
    let Some(account) = updated.into_iter().next() else {
        let account = accounts::find(&txn, account_id)
            .await?
            .ok_or_else(|| AppError::not_found("no such account"))?;
        return Ok((account, Vec::new()));
    };
    let voided = ledger::void_pending(&txn, account.id, now).await?;
    let reversed = reverse_posted_rewards(&txn, account.id, now).await?;
    let mut events = vec![payloads::account_disqualified(&account, &reason, now)];
    // Held rewards voided: taken back whole before they were ever available.
    events.extend(
        voided
            .iter()
            .filter(|entry| entry.kind == EntryKind::Reward)
            .map(|entry| {
                payloads::reward_reversed(
                    entry,
                    &account.external_id,
                    entry.amount,
                    TakeBackCause::Disqualification,
                    &[entry.id],
                )
            }),
    );
    outbox::emit_all(&txn, events, now).await?;
    audit::record(
        &txn,
        actor,
        "DISQUALIFY_ACCOUNT",
        &format!("account:{}", account.external_id),
        json!({ "disqualifiedAt": null }),
        json!({
            "disqualifiedAt": now,
            "reason": reason,
            "voidedEntries": voided.iter().map(|e| e.id).collect::<Vec<_>>(),
            "reversedEntries": reversed.iter().map(|e| e.id).collect::<Vec<_>>(),
        }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok((account, voided))
}

/// Takes back whole what is left of every reward posted to the account. Pending ones were
/// voided just before; the entries are locked, so a refund that takes from the same reward
/// concurrently is ordered before or after, never counted twice.
async fn reverse_posted_rewards(
    txn: &impl ConnectionTrait,
    account_id: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Vec<ledger_entry::Model>> {
    let posted = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::AccountId.eq(account_id))
        .filter(ledger_entry::Column::Status.eq(EntryStatus::Posted));
    let mut written = Vec::new();
    for standing in take_backs::standing(txn, posted).await? {
        if standing.left() <= 0 {
            continue;
        }
        let take = Take {
            standing: &standing,
            amount: standing.left(),
            cause: TakeBackCause::Disqualification,
            event_id: None,
            description: "Reward reversed: the account was disqualified".to_owned(),
        };
        written.extend(take_backs::take(txn, take, now).await?);
    }
    Ok(written)
}

/// Lifts a disqualification. What was voided stays voided; what happens from now on counts
/// again. Reinstating an account that is not disqualified changes nothing.
pub async fn reinstate(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    reason: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let reason = optional_text("reason", reason, 500)?;
    let txn = begin_write(db).await?;
    let before = accounts::find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::DisqualifiedAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(
            account::Column::DisqualificationReason,
            Expr::value(Option::<String>::None),
        )
        .filter(account::Column::Id.eq(account_id))
        .filter(account::Column::DisqualifiedAt.is_not_null())
        .exec_with_returning(&txn)
        .await?;
    let Some(after) = updated.into_iter().next() else {
        return Ok(before);
    };
    audit::record(
        &txn,
        actor,
        "REINSTATE_ACCOUNT",
        &format!("account:{}", after.external_id),
        json!({ "disqualifiedAt": before.disqualified_at, "disqualificationReason": before.disqualification_reason }),
        json!({ "disqualifiedAt": null, "reason": reason }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// An admin rejects a referral (reason `MANUAL`): what it caused that is still pending is
/// voided, what was posted is reversed (what the balance cannot cover becomes debt), through
/// `take_backs`, in one transaction; later events pay nothing for it. The referee's row is
/// locked first, as every event of the referee does, so an event that is paying for this
/// referral finishes before or sees it rejected. Rejecting a rejected referral changes nothing.
/// Returns the referral and the entries written or changed.
pub async fn reject(
    db: &DatabaseConnection,
    actor: &str,
    referral_id: i64,
    reason: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(referral::Model, Vec<ledger_entry::Model>)> {
    let reason = optional_text("reason", reason, 500)?;
    let txn = begin_write(db).await?;
    let found = referral::Entity::find_by_id(referral_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such referral"))?;
    if found.status == ReferralStatus::Rejected {
        return Ok((found, Vec::new()));
    }
    accounts::lock(&txn, found.referee_id).await?;
    let updated = referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(ReferralStatus::Rejected))
        .col_expr(referral::Column::RejectionReason, Expr::value(RejectionReason::Manual))
        .filter(referral::Column::Id.eq(referral_id))
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected))
        .exec_with_returning(&txn)
        .await?;
    let Some(rejected) = updated.into_iter().next() else {
        let current = referral::Entity::find_by_id(referral_id)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("no such referral"))?;
        return Ok((current, Vec::new()));
    };
    announce_rejection(&txn, &rejected, now).await?;
    let paid = ledger_entry::Entity::find().filter(ledger_entry::Column::ReferralId.eq(referral_id));
    let mut taken_back = Vec::new();
    for standing in take_backs::standing(&txn, paid).await? {
        if standing.left() <= 0 {
            continue;
        }
        let take = Take {
            standing: &standing,
            amount: standing.left(),
            cause: TakeBackCause::ManualRejection,
            event_id: None,
            description: "Referral rejected by an admin".to_owned(),
        };
        taken_back.extend(take_backs::take(&txn, take, now).await?);
    }
    audit::record(
        &txn,
        actor,
        "REJECT_REFERRAL",
        &format!("referral:{referral_id}"),
        json!({ "status": found.status }),
        json!({
            "status": rejected.status,
            "rejectionReason": rejected.rejection_reason,
            "reason": reason,
            "entries": taken_back.iter().map(|e| e.id).collect::<Vec<_>>(),
        }),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(
        referral = referral_id,
        taken_back = taken_back.len(),
        "referral rejected by an admin"
    );
    Ok((rejected, taken_back))
}

/// `referral.rejected` for a referral just rejected, its parties looked up.
pub async fn announce_rejection(
    txn: &impl ConnectionTrait,
    rejected: &referral::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    let ids: Vec<i64> = std::iter::once(rejected.referee_id)
        .chain(rejected.referrer_id)
        .collect();
    let accounts = accounts::by_ids(txn, &ids).await?;
    let external_id = |id: i64| accounts.get(&id).map_or("", |account| account.external_id.as_str());
    let parties = Parties {
        referrer: rejected.referrer_id.map(external_id),
        referee: external_id(rejected.referee_id),
    };
    outbox::emit_all(txn, vec![payloads::referral_rejected(rejected, &parties)], now).await
}
