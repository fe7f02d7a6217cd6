//! ClaimReward on PostgreSQL in one round trip: the function `referral_claim_reward`
//! (migration/src/sql/claim_reward.sql) reads, checks and writes everything a claim does in
//! the statement's own transaction, and answers with an outcome that this module turns into the
//! same answers as the flow in steps: a claim, a retry answered again, or the same errors with
//! the same messages. Claims of one account that waited for their turn (`batches::lanes`) go together:
//! the function once for each, in one statement.

use super::{ClaimKey, Claimed, daily_limit, no_provider, no_rate, pending_limit, too_large};
use crate::amount::Amount;
use crate::db::Direct;
use crate::error::{AppError, AppResult};
use crate::service::{accounts, ledger, once::Key};
use entity::enums::Unit;
use entity::{balance, claim, provider};
use sea_orm::{DbBackend, DbErr, FromQueryResult, QueryResult, Statement};

const CLAIM: &str = "SELECT * FROM referral_claim_reward($1, $2, $3, $4, $5)";

/// Claims of one account in one statement: the function once per claim, in the list's order (a
/// nested loop over the list; each call's statements see what the calls before it wrote), all
/// in the statement's one transaction and one commit. Each call answers one row.
const CLAIMS: &str = "SELECT r.* FROM ROWS FROM (jsonb_to_recordset($2::jsonb) \
     AS (provider bigint, key text, hash text, at timestamptz)) WITH ORDINALITY AS q(provider, key, hash, at, n) \
     CROSS JOIN LATERAL referral_claim_reward($1, q.provider, q.key, q.hash, q.at) AS r ORDER BY q.n";

/// One claim waiting in its account's lane (see `batches::lanes`).
pub struct Pending {
    pub provider_id: i64,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Claims `claims` of `external_id`, in order, and answers each: the claim, the first claim of
/// a retried key, or the refusal; `None` when the balance has something due and the claim must
/// be made in steps (nothing was written for it). Several go in one statement; when that
/// statement fails (the function raises for one of them, say), nothing of it was written and
/// each is claimed alone, so that one claim's failure is its own.
pub(super) async fn claim_together(
    db: Direct<'_>,
    external_id: &str,
    claims: &[Pending],
) -> Vec<AppResult<Option<Claimed>>> {
    if claims.len() > 1 {
        match together(db, external_id, claims).await {
            Ok(rows) if rows.len() == claims.len() => {
                return rows
                    .iter()
                    .zip(claims)
                    .map(|(row, claim)| answer(row, external_id, claim))
                    .collect();
            }
            Ok(rows) => {
                let count = rows.len();
                return claims
                    .iter()
                    .map(|_| {
                        Err(AppError::internal(anyhow::anyhow!(
                            "referral_claim_reward answered {count} rows for {} claims",
                            claims.len()
                        )))
                    })
                    .collect();
            }
            Err(err) => tracing::warn!(
                error = %err,
                claims = claims.len(),
                "a batch of claims failed as a whole: each is claimed alone"
            ),
        }
    }
    let mut answers = Vec::with_capacity(claims.len());
    for claim in claims {
        answers.push(alone(db, external_id, claim).await);
    }
    answers
}

async fn alone(db: Direct<'_>, external_id: &str, claim: &Pending) -> AppResult<Option<Claimed>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        CLAIM,
        [
            external_id.into(),
            claim.provider_id.into(),
            claim.idempotency_key.as_deref().into(),
            claim.fingerprint.as_str().into(),
            claim.now.into(),
        ],
    );
    let row = db
        .one(statement)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("referral_claim_reward returned no row")))?;
    answer(&row, external_id, claim)
}

async fn together(db: Direct<'_>, external_id: &str, claims: &[Pending]) -> Result<Vec<QueryResult>, DbErr> {
    let list: Vec<serde_json::Value> = claims
        .iter()
        .map(|claim| {
            serde_json::json!({
                "provider": claim.provider_id,
                "key": claim.idempotency_key,
                "hash": claim.fingerprint,
                // Microseconds, as PostgreSQL keeps them and as sqlx binds a lone claim's.
                "at": claim.now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            })
        })
        .collect();
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        CLAIMS,
        [external_id.into(), serde_json::Value::from(list).to_string().into()],
    );
    db.all(statement).await
}

/// What the function's row says of `claim`.
fn answer(row: &QueryResult, external_id: &str, claim: &Pending) -> AppResult<Option<Claimed>> {
    let outcome: String = row.try_get("", "outcome")?;
    let cost = || -> AppResult<Amount> { Ok(Amount::from_micros(row.try_get("", "cost")?)) };
    let limit = || -> AppResult<i32> { Ok(row.try_get("", "claim_limit")?) };
    match outcome.as_str() {
        "CLAIMED" => Ok(Some(Claimed {
            claim: claim_of(row)?,
            balance: balance_of(row)?,
            provider: Some(provider::Model::from_query_result(row, "provider_")?),
            duplicate: false,
        })),
        "STORED" => {
            let first = claim_of(row)?;
            let key = ClaimKey::new(first.account_id, &claim.idempotency_key, claim.provider_id);
            if !key.same_request(&first) {
                return Err(key.conflict(&first));
            }
            Ok(Some(Claimed {
                claim: first,
                balance: balance_of(row)?,
                provider: Some(provider::Model::from_query_result(row, "provider_")?),
                duplicate: true,
            }))
        }
        "DUE" => Ok(None),
        "DISABLED" => Err(AppError::ProgramDisabled),
        "NO_ACCOUNT" => Err(accounts::no_such_external_id(external_id)),
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
