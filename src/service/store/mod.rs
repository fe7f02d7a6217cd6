//! The reward store of program 3: points are spent on data, `gbPerClaim` GB of one provider at
//! a time, at the provider's redemption rate. A claim debits the balance in the same
//! transaction that records it; a failed delivery gives the points back.

mod one_statement;

use crate::amount::Amount;
use crate::db::{Direct, OwnedDirect, begin_write};
use crate::error::{AppError, AppResult};
use crate::service::batches::lanes::Lanes;
use crate::service::once::{self, Inserted};
use crate::service::outbox::{self, payloads};
use crate::service::page::{self, Page, PageRequest};
use crate::service::{accounts, audit, catalog, ledger, optional_text, request_hash, settings};
use entity::enums::{ClaimStatus, EntryKind, Unit};
use entity::{balance, claim, ledger_entry, provider};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    Set,
};
use serde_json::json;

pub struct Offer {
    pub provider: provider::Model,
    pub redemption_rate: Amount,
    pub points_per_claim: Amount,
}

/// The providers a customer can claim from (those with a redemption rate) and what one claim
/// costs at each.
pub async fn offers(db: &impl ConnectionTrait, gb_per_claim: i32) -> AppResult<Vec<Offer>> {
    let offers = catalog::providers(db)
        .await?
        .into_iter()
        .filter_map(|provider| {
            let rate = Amount::from_micros(provider.redemption_rate?);
            let cost = rate.checked_mul_int(i64::from(gb_per_claim))?;
            Some(Offer {
                provider,
                redemption_rate: rate,
                points_per_claim: cost,
            })
        })
        .collect();
    Ok(offers)
}

pub struct ClaimRequest {
    pub external_id: String,
    pub provider_id: i64,
    pub idempotency_key: Option<String>,
}

pub struct Claimed {
    pub claim: claim::Model,
    pub balance: balance::Model,
    /// The claim's provider when the claim read it anyway (so that the answer need not).
    pub provider: Option<provider::Model>,
    pub duplicate: bool,
}

/// On PostgreSQL, claims of one account wait in its lane and go to the database one batch at a
/// time (see the `lanes` module).
pub type ClaimLanes = Lanes<one_statement::Pending, AppResult<Option<Claimed>>>;

/// The instance's lanes, writing their batches on `pool` (used on PostgreSQL only).
pub fn claim_lanes(pool: OwnedDirect) -> ClaimLanes {
    ClaimLanes::new(move |external_id, claims| {
        let pool = pool.clone();
        async move { one_statement::claim_together(pool.direct(), &external_id, &claims).await }
    })
}

/// Claims `request`, after the claims of the same account that this instance started before it,
/// and on PostgreSQL in one statement with those of them still waiting (`lanes`: see
/// [`ClaimLanes`]). On SQLite the instance's writers already take turns on one connection, so a
/// lane would only add a lock.
pub async fn claim(
    direct: Direct<'_>,
    lanes: &ClaimLanes,
    request: ClaimRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Claimed> {
    let db = direct.db;
    let idempotency_key = optional_text("idempotencyKey", request.idempotency_key.as_deref(), 128)?;
    if db.get_database_backend() == DbBackend::Postgres {
        let pending = one_statement::Pending {
            provider_id: request.provider_id,
            idempotency_key: idempotency_key.clone(),
            fingerprint: claim_fingerprint(request.provider_id),
            now,
        };
        let answer = lanes
            .write(&request.external_id, pending)
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("the claim's batch ended without its answer")))?;
        match answer? {
            Some(claimed) => {
                if !claimed.duplicate {
                    let claim = &claimed.claim;
                    let points = Amount::from_micros(claim.points);
                    tracing::info!(claim = claim.id, account = claim.account_id, points = %points, "reward claimed");
                }
                return Ok(claimed);
            }
            // Something of the balance is due: the flow below settles it first.
            None => tracing::debug!("the balance has something due: claiming in steps"),
        }
    }
    claim_in_steps(db, request, idempotency_key, now).await
}

/// The claim as a sequence of statements in one transaction: SQLite's way (statements there are
/// in-process calls), and PostgreSQL's when the balance must be settled first.
async fn claim_in_steps(
    db: &DatabaseConnection,
    request: ClaimRequest,
    idempotency_key: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Claimed> {
    // No lookup of the key before the write: almost every claim carries a fresh key, and a
    // look-up first costs a claim two more pool checkouts and statements (measured: ClaimReward
    // 15 → 19 statements, −23 % req/s). A retry is found by the insert's conflict below.
    let txn = begin_write(db).await?;
    let program = settings::get(&txn).await?;
    if !program.enabled {
        return Err(AppError::ProgramDisabled);
    }
    let account = accounts::get_by_external_id(&txn, &request.external_id).await?;
    let key = ClaimKey::new(account.id, &idempotency_key, request.provider_id);
    let provider = provider::Entity::find_by_id(request.provider_id)
        .one(&txn)
        .await?
        .ok_or_else(no_provider)?;
    let rate = provider
        .redemption_rate
        .map(Amount::from_micros)
        .ok_or_else(|| no_rate(&provider.key))?;
    let gb = program.gb_per_claim;
    let cost = rate.checked_mul_int(i64::from(gb)).ok_or_else(too_large)?;
    let row = claim::ActiveModel {
        account_id: Set(account.id),
        provider_id: Set(provider.id),
        gb: Set(gb),
        points: Set(cost.micros()),
        status: Set(ClaimStatus::Pending),
        idempotency_key: Set(idempotency_key.clone()),
        request_hash: Set(Some(claim_fingerprint(provider.id))),
        created_at: Set(now),
        decided_at: Set(None),
        ..Default::default()
    };
    let (claim, txn) = match once::insert(db, txn, &key, row).await? {
        Inserted::New(claim, txn) => (claim, txn),
        Inserted::First(first) => return replay_claim(db, first).await,
    };
    let description = format!("Reward claim: {gb} GB of {} data", provider.name);
    let debit = ledger::NewDebit {
        account_id: account.id,
        unit: Unit::Points,
        amount: cost,
        kind: EntryKind::Claim,
        description,
        claim_id: Some(claim.id),
    };
    ledger::debit(&txn, debit, now).await?;
    enforce_claim_limits(&txn, &program, account.id, now).await?;
    outbox::emit_all(&txn, vec![payloads::claim_requested(&claim, &account.external_id)], now).await?;
    let balance = ledger::balance(&txn, account.id, Unit::Points).await?;
    txn.commit().await?;
    tracing::info!(claim = claim.id, account = account.id, points = %cost, "reward claimed");
    Ok(Claimed {
        claim,
        balance,
        provider: Some(provider),
        duplicate: false,
    })
}

/// What identifies a claim request for its idempotency key: what the client sent, and nothing
/// the server decides. A retry after an admin changed `gbPerClaim` is the same request, and
/// answers the first claim.
fn claim_fingerprint(provider_id: i64) -> String {
    request_hash(&json!({ "providerId": provider_id }))
}

/// Claims recorded before the fingerprint left out `gbPerClaim` hashed the GB in as well; a
/// retry of one of those (same provider) still matches.
fn legacy_claim_fingerprint(provider_id: i64, gb: i32) -> String {
    request_hash(&json!({ "providerId": provider_id, "gb": gb }))
}

/// The program's claim limits (settings, unset by default), checked after this claim's debit:
/// the debit's conditional update locks the account's points balance until commit, so a
/// concurrent claim of the same account waits there, and its counts, which start after this
/// transaction committed, include this claim. Exact under READ COMMITTED; SQLite serializes
/// writers anyway. Refused: the whole transaction rolls back, the debit with it.
async fn enforce_claim_limits(
    txn: &impl ConnectionTrait,
    program: &entity::program_settings::Model,
    account_id: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    if let Some(limit) = program.max_pending_claims {
        let pending = claim::Entity::find()
            .filter(claim::Column::AccountId.eq(account_id))
            .filter(claim::Column::Status.eq(ClaimStatus::Pending))
            .count(txn)
            .await?;
        if pending > limit as u64 {
            return Err(pending_limit(limit));
        }
    }
    if let Some(limit) = program.max_claims_per_day {
        let since = now - chrono::Duration::hours(24);
        let today = claim::Entity::find()
            .filter(claim::Column::AccountId.eq(account_id))
            .filter(claim::Column::CreatedAt.gt(since))
            .count(txn)
            .await?;
        if today > limit as u64 {
            return Err(daily_limit(limit));
        }
    }
    Ok(())
}

fn no_provider() -> AppError {
    AppError::not_found("no such provider")
}

fn no_rate(provider_key: &str) -> AppError {
    AppError::bad_input(format!("provider {provider_key} has no redemption rate yet"))
}

fn too_large() -> AppError {
    AppError::bad_input("the claim's cost is too large")
}

fn pending_limit(limit: i32) -> AppError {
    AppError::ClaimLimit(format!(
        "at most {limit} claims may wait for delivery at once; wait until one is delivered"
    ))
}

fn daily_limit(limit: i32) -> AppError {
    AppError::ClaimLimit(format!(
        "at most {limit} claims may be made in 24 hours; try again later"
    ))
}

/// A claim is made once per (account, idempotency key); a claim without a key is never a
/// replay (NULL keys do not conflict in the unique index).
struct ClaimKey<'a> {
    account_id: i64,
    key: Option<&'a str>,
    provider_id: i64,
}

impl<'a> ClaimKey<'a> {
    fn new(account_id: i64, key: &'a Option<String>, provider_id: i64) -> Self {
        ClaimKey {
            account_id,
            key: key.as_deref(),
            provider_id,
        }
    }
}

impl once::Key for ClaimKey<'_> {
    type Row = claim::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::columns([claim::Column::AccountId, claim::Column::IdempotencyKey])
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<claim::Model>> {
        let Some(key) = self.key else {
            return Ok(None);
        };
        Ok(claim::Entity::find()
            .filter(claim::Column::AccountId.eq(self.account_id))
            .filter(claim::Column::IdempotencyKey.eq(key))
            .one(db)
            .await?)
    }

    fn same_request(&self, row: &claim::Model) -> bool {
        let stored = row.request_hash.as_deref();
        stored == Some(claim_fingerprint(self.provider_id).as_str())
            || stored == Some(legacy_claim_fingerprint(self.provider_id, row.gb).as_str())
    }

    fn conflict(&self, _row: &claim::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "idempotencyKey {:?} was already used for a different claim",
            self.key.unwrap_or_default()
        ))
    }
}

/// The key's first claim again, with the balance as it is now.
async fn replay_claim(db: &impl ConnectionTrait, claim: claim::Model) -> AppResult<Claimed> {
    let balance = ledger::balance(db, claim.account_id, Unit::Points).await?;
    Ok(Claimed {
        claim,
        balance,
        provider: None,
        duplicate: true,
    })
}

/// The billing side reports whether the data was delivered. `FAILED` gives the points back to
/// the lots they came from. Deciding a claim twice the same way answers the same; deciding it
/// the other way is refused.
pub async fn complete(
    db: &DatabaseConnection,
    actor: &str,
    claim_id: i64,
    outcome: ClaimStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<claim::Model> {
    if outcome == ClaimStatus::Pending {
        return Err(AppError::bad_input("a claim is completed as COMPLETED or FAILED"));
    }
    let txn = begin_write(db).await?;
    let decided = claim::Entity::update_many()
        .col_expr(claim::Column::Status, Expr::value(outcome))
        .col_expr(claim::Column::DecidedAt, Expr::value(now))
        .filter(claim::Column::Id.eq(claim_id))
        .filter(claim::Column::Status.eq(ClaimStatus::Pending))
        .exec(&txn)
        .await?;
    let claim = claim::Entity::find_by_id(claim_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such claim"))?;
    if decided.rows_affected == 0 {
        return if claim.status == outcome {
            Ok(claim)
        } else {
            Err(AppError::bad_input(format!(
                "the claim is already {}",
                claim.status.to_value()
            )))
        };
    }
    if outcome == ClaimStatus::Failed {
        let debit = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::ClaimId.eq(claim.id))
            .filter(ledger_entry::Column::Kind.eq(EntryKind::Claim))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("claim {claim_id} has no debit entry")))?;
        let description = format!("Reward claim failed: {} GB returned as points", claim.gb);
        ledger::refund_debit(&txn, &debit, EntryKind::ClaimRefund, description, now).await?;
    }
    let account = accounts::find(&txn, claim.account_id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("claim {claim_id} has no account")))?;
    outbox::emit_all(
        &txn,
        vec![payloads::claim_completed(&claim, &account.external_id, outcome, now)],
        now,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        "COMPLETE_CLAIM",
        &format!("claim:{claim_id}"),
        json!({ "status": "PENDING" }),
        json!({ "status": outcome }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(claim)
}

/// Claims, newest first: of one account, or all of them, optionally of one status.
pub async fn list(
    db: &impl ConnectionTrait,
    account_id: Option<i64>,
    status: Option<ClaimStatus>,
    page: PageRequest,
) -> AppResult<Page<claim::Model>> {
    let mut base = claim::Entity::find();
    if let Some(account_id) = account_id {
        base = base.filter(claim::Column::AccountId.eq(account_id));
    }
    if let Some(status) = status {
        base = base.filter(claim::Column::Status.eq(status));
    }
    Ok(page::fetch(db, base, claim::Column::Id, page).await?)
}
