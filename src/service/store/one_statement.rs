//! ClaimReward on PostgreSQL in one round trip: the function `referral_claim_reward`
//! (migration/src/sql/claim_reward.sql) reads, checks and writes everything a claim does in
//! the statement's own transaction, and answers with an outcome that this module turns into the
//! same answers as the flow in steps: a claim, a retry answered again, or the same errors with
//! the same messages.

use super::{ClaimKey, ClaimRequest, Claimed, daily_limit, no_provider, no_rate, pending_limit, too_large};
use crate::amount::Amount;
use crate::db::Direct;
use crate::error::{AppError, AppResult};
use crate::service::{accounts, ledger, once::Key};
use entity::enums::Unit;
use entity::{balance, claim, provider};
use sea_orm::{DbBackend, FromQueryResult, QueryResult, Statement};

const CLAIM: &str = "SELECT * FROM referral_claim_reward($1, $2, $3, $4, $5)";

/// The claim, the first claim of a retried key, or the refusal; `None` when the balance has
/// something due and the claim must be made in steps (nothing was written).
pub(super) async fn claim(
    db: Direct<'_>,
    request: &ClaimRequest,
    idempotency_key: Option<&str>,
    fingerprint: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Option<Claimed>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        CLAIM,
        [
            request.external_id.as_str().into(),
            request.provider_id.into(),
            idempotency_key.into(),
            fingerprint.into(),
            now.into(),
        ],
    );
    let row = db
        .one(statement)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("referral_claim_reward returned no row")))?;
    let outcome: String = row.try_get("", "outcome")?;
    let cost = || -> AppResult<Amount> { Ok(Amount::from_micros(row.try_get("", "cost")?)) };
    let limit = || -> AppResult<i32> { Ok(row.try_get("", "claim_limit")?) };
    match outcome.as_str() {
        "CLAIMED" => {
            let claimed = Claimed {
                claim: claim_of(&row)?,
                balance: balance_of(&row)?,
                provider: Some(provider::Model::from_query_result(&row, "provider_")?),
                duplicate: false,
            };
            tracing::info!(
                claim = claimed.claim.id,
                account = claimed.claim.account_id,
                points = %cost()?,
                "reward claimed"
            );
            Ok(Some(claimed))
        }
        "STORED" => {
            let first = claim_of(&row)?;
            let key = idempotency_key.map(str::to_owned);
            let key = ClaimKey::new(first.account_id, &key, request.provider_id);
            if !key.same_request(&first) {
                return Err(key.conflict(&first));
            }
            Ok(Some(Claimed {
                claim: first,
                balance: balance_of(&row)?,
                provider: Some(provider::Model::from_query_result(&row, "provider_")?),
                duplicate: true,
            }))
        }
        "DUE" => Ok(None),
        "DISABLED" => Err(AppError::ProgramDisabled),
        "NO_ACCOUNT" => Err(accounts::no_such_external_id(&request.external_id)),
        "NO_PROVIDER" => Err(no_provider()),
        "NO_RATE" => Err(no_rate(&row.try_get::<String>("", "provider_key")?)),
        "TOO_LARGE" => Err(too_large()),
        "INSUFFICIENT" => Err(ledger::insufficient(cost()?, Unit::Points)),
        "PENDING_LIMIT" => Err(pending_limit(limit()?)),
        "DAILY_LIMIT" => Err(daily_limit(limit()?)),
        other => Err(AppError::internal(anyhow::anyhow!(
            "referral_claim_reward answered an unknown outcome {other:?}"
        ))),
    }
}

fn claim_of(row: &QueryResult) -> AppResult<claim::Model> {
    Ok(claim::Model::from_query_result(row, "claim_")?)
}

fn balance_of(row: &QueryResult) -> AppResult<balance::Model> {
    Ok(balance::Model::from_query_result(row, "balance_")?)
}
