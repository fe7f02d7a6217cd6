//! One delivery attempt, from claim to outcome:
//!
//! 1. [`claim`] takes an endpoint's due deliveries with a lease (`locked_until`) and counts the
//!    attempt, in one statement; on PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so
//!    instances claiming at once take different rows and none waits for another.
//! 2. [`send`] posts the event, signed, with a timeout, reading at most `MAX_RESPONSE` bytes of
//!    the answer; any 2xx is delivered.
//! 3. [`finish`] records the outcome if the lease is still this attempt's (the attempt count it
//!    claimed is unchanged): delivered, due again after the backoff, or failed after the last
//!    attempt, and keeps the endpoint's failing streak, which disables it after days.
//!
//! An instance that dies between 1 and 3 leaves the lease to run out; another attempt then
//! sends the event again under the same `webhook-id`, which receivers use to drop duplicates.

use super::{schedule, signature, target};
use crate::db::{begin_write, in_ids};
use crate::error::{AppError, AppResult};
use crate::service::outbox;
use chrono::{DateTime, SubsecRound, Utc};
use entity::enums::DeliveryStatus;
use entity::{outbox_event, webhook_delivery, webhook_endpoint};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of an endpoint's answer read (the chunk that crosses it is the last one read): only
/// its status matters, and a huge or endless body must not hold the attempt or the memory.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// How much longer than the timeout a lease lasts: an attempt's bookkeeping after its answer
/// (milliseconds, unless the database stalls; then another attempt may send the event again,
/// under the same `webhook-id`).
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Error text kept per delivery at most.
const MAX_ERROR: usize = 500;

/// The client every attempt goes through: no redirects followed, the timeout on the whole
/// exchange, and unless private targets are allowed a resolver that drops non-public addresses.
pub fn client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("referral-server/", env!("CARGO_PKG_VERSION"), " (webhooks)"));
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(target::PublicOnly))
    };
    builder.build()
}

/// Attempts one endpoint has in flight in one instance at most.
pub const PER_ENDPOINT: usize = 8;

/// What an instance's dispatcher (`crate::dispatcher`) shares between its task, its workers
/// and `deliver_now`: the client, and which endpoints have a worker running.
pub struct Webhooks {
    client: reqwest::Client,
    working: Mutex<HashSet<i64>>,
}

impl Webhooks {
    pub fn new(timeout: Duration, allow_private: bool) -> reqwest::Result<Self> {
        Ok(Webhooks {
            client: client(timeout, allow_private)?,
            working: Mutex::new(HashSet::new()),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Marks an endpoint's worker as running; false if one already is.
    pub fn start_worker(&self, endpoint_id: i64) -> bool {
        self.working
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(endpoint_id)
    }

    pub fn worker_done(&self, endpoint_id: i64) {
        self.working
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&endpoint_id);
    }
}

/// A delivery this instance holds the lease of, with its event.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery_id: i64,
    /// The attempt's number.
    pub attempt: i32,
    /// The lease's end as written: with the attempt's number, what tells this attempt's lease
    /// from a later one (after a replay reset the count, for one).
    pub lease: DateTime<Utc>,
    pub event: outbox_event::Model,
}

const CLAIM_POSTGRES: &str = "UPDATE webhook_deliveries SET attempts = attempts + 1, locked_until = $1 \
     WHERE id IN (SELECT id FROM webhook_deliveries \
                  WHERE endpoint_id = $2 AND status = 'PENDING' AND next_attempt_at <= $3 \
                    AND (locked_until IS NULL OR locked_until <= $4) \
                  ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
     RETURNING id, event_id, attempts";
/// SQLite has one writer at a time (whatever the number of instances on the file): the update
/// takes its rows whole, with no row locks to skip.
const CLAIM_SQLITE: &str = "UPDATE webhook_deliveries SET attempts = attempts + 1, locked_until = ?1 \
     WHERE id IN (SELECT id FROM webhook_deliveries \
                  WHERE endpoint_id = ?2 AND status = 'PENDING' AND next_attempt_at <= ?3 \
                    AND (locked_until IS NULL OR locked_until <= ?4) \
                  ORDER BY next_attempt_at, id LIMIT ?5) \
     RETURNING id, event_id, attempts";

/// Takes up to `limit` deliveries of one endpoint that are due at `now` (the application's
/// clock, which schedules retries), leased for `timeout` and a margin of real time: a lease
/// measures an attempt in flight, which a sandbox's clock moved forward does not shorten.
pub async fn claim(
    db: &impl ConnectionTrait,
    endpoint_id: i64,
    limit: u64,
    timeout: Duration,
    now: DateTime<Utc>,
) -> AppResult<Vec<Claimed>> {
    // Whole microseconds: what PostgreSQL keeps, so that the lease reads back equal.
    let wall = Utc::now().trunc_subsecs(6);
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => CLAIM_POSTGRES,
        _ => CLAIM_SQLITE,
    };
    let lease = wall + chrono::Duration::from_std(timeout + LEASE_MARGIN).map_err(AppError::internal)?;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                lease.into(),
                endpoint_id.into(),
                now.into(),
                wall.into(),
                (limit as i64).into(),
            ],
        ))
        .await?;
    let mut taken = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        let event_id: i64 = row.try_get("", "event_id")?;
        let attempt: i32 = row.try_get("", "attempts")?;
        taken.insert(event_id, (id, attempt));
    }
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = taken.keys().copied().collect();
    let events = outbox_event::Entity::find()
        .filter(in_ids(backend, outbox_event::Column::Id, &ids))
        .all(db)
        .await?;
    Ok(events
        .into_iter()
        .filter_map(|event| {
            let (delivery_id, attempt) = *taken.get(&event.id)?;
            Some(Claimed {
                delivery_id,
                attempt,
                lease,
                event,
            })
        })
        .collect())
}

/// What an attempt got: the status code if the endpoint answered, how long it took, and what
/// went wrong otherwise.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|code| (200..300).contains(&code))
    }
}

/// Posts one event to one endpoint. The signature's timestamp is the system time (a receiver
/// compares it with its own clock), whatever a sandbox's clock says.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &webhook_endpoint::Model,
    event: &outbox_event::Model,
    allow_private: bool,
) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome {
        status_code: None,
        latency: started.elapsed(),
        error: Some(truncate(error)),
    };
    // A literal address never reaches the resolver: checked here, at every attempt.
    let url = match target::parse(&endpoint.url, allow_private) {
        Ok(url) => url,
        Err(refusal) => return failed(refusal),
    };
    let body = outbox::envelope(event).to_string();
    let id = outbox::public_id(event.id);
    let timestamp = Utc::now().timestamp();
    let signature = match signature::sign(&endpoint.secret, &id, timestamp, &body) {
        Ok(signature) => signature,
        Err(error) => return failed(error),
    };
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(err) => return failed(describe(&err)),
    };
    let status = response.status().as_u16();
    // Read some of the answer (a receiver may wait for it to be read), never more.
    let mut read = 0;
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read >= MAX_RESPONSE {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(err) => break Some(describe(&err)),
        }
    };
    let delivered = (200..300).contains(&status);
    Outcome {
        status_code: Some(status),
        latency: started.elapsed(),
        error: if delivered {
            None
        } else {
            Some(truncate(
                error.unwrap_or_else(|| format!("the endpoint answered {status}")),
            ))
        },
    }
}

/// What went wrong, with every cause under it: a refused address is reported by the resolver
/// several layers down (reqwest → hyper → the resolver).
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = format!("{kind}: {err}");
    let mut cause = std::error::Error::source(err);
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    text
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR) {
        text.truncate(cut);
    }
    text
}

/// What became of an attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Delivered,
    Retry,
    Failed,
    /// The lease was no longer this attempt's (replayed, or claimed again after it ran out).
    Superseded,
}

/// PostgreSQL: the deliveries of a batch that succeeded, recorded in one statement (each row
/// still only if its lease is the attempt's). `$2` is a JSON array of
/// `{id, attempts, lease, code, ms}`.
const DELIVERED_POSTGRES: &str = "UPDATE webhook_deliveries d SET status = 'DELIVERED', next_attempt_at = $1, \
     locked_until = NULL, last_attempt_at = $1, last_status_code = v.code, last_latency_ms = v.ms, \
     last_error = NULL, delivered_at = $1 \
     FROM jsonb_to_recordset($2::jsonb) AS v(id bigint, attempts integer, lease timestamptz, code integer, ms integer) \
     WHERE d.id = v.id AND d.attempts = v.attempts AND d.locked_until = v.lease AND d.status = 'PENDING'";

/// Records a batch's outcomes. The successes to an endpoint that was not failing (the common
/// case, and the one that comes in thousands under load) are recorded together: one statement
/// on PostgreSQL, one write transaction on SQLite (whose writes take turns: one per delivery
/// would queue beside every request's); every other outcome goes through [`finish`]. What
/// became of each, in order.
pub async fn finish_batch(
    db: &DatabaseConnection,
    endpoint: &webhook_endpoint::Model,
    batch: &[(Claimed, Outcome)],
    now: DateTime<Utc>,
) -> Vec<AppResult<Finished>> {
    let together = endpoint.failing_since.is_none();
    let (delivered, others): (Vec<usize>, Vec<usize>) =
        (0..batch.len()).partition(|i| together && batch[*i].1.delivered());
    let mut results: Vec<Option<AppResult<Finished>>> = (0..batch.len()).map(|_| None).collect();
    if !delivered.is_empty() {
        let recorded = match db.get_database_backend() {
            DbBackend::Postgres => delivered_in_one_statement(db, batch, &delivered, now).await,
            _ => delivered_in_one_transaction(db, batch, &delivered, now).await,
        };
        match recorded {
            Ok(finished) => {
                for (i, finished) in delivered.iter().zip(finished) {
                    results[*i] = Some(Ok(finished));
                }
            }
            Err(err) => {
                let message = format!("{err:?}");
                for i in &delivered {
                    results[*i] = Some(Err(AppError::internal(anyhow::anyhow!("{message}"))));
                }
            }
        }
    }
    for i in others {
        let (claimed, outcome) = &batch[i];
        results[i] = Some(finish(db, endpoint, claimed, outcome, now).await);
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or(Ok(Finished::Superseded)))
        .collect()
}

/// PostgreSQL: `DELIVERED_POSTGRES` for the rows at `which`. Rows whose lease was no longer
/// theirs are not told apart: superseded ones are rare (a replay during the attempt), and their
/// next attempt records itself.
async fn delivered_in_one_statement(
    db: &DatabaseConnection,
    batch: &[(Claimed, Outcome)],
    which: &[usize],
    now: DateTime<Utc>,
) -> AppResult<Vec<Finished>> {
    let rows: Vec<serde_json::Value> = which
        .iter()
        .map(|i| {
            let (claimed, outcome) = &batch[*i];
            serde_json::json!({
                "id": claimed.delivery_id,
                "attempts": claimed.attempt,
                "lease": claimed.lease.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "code": outcome.status_code,
                "ms": latency_ms(outcome),
            })
        })
        .collect();
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        DELIVERED_POSTGRES,
        [now.into(), serde_json::Value::Array(rows).to_string().into()],
    );
    db.execute_raw(statement).await?;
    Ok(which.iter().map(|_| Finished::Delivered).collect())
}

/// SQLite: the rows at `which`, each by [`recorded`], in one write transaction.
async fn delivered_in_one_transaction(
    db: &DatabaseConnection,
    batch: &[(Claimed, Outcome)],
    which: &[usize],
    now: DateTime<Utc>,
) -> AppResult<Vec<Finished>> {
    let txn = begin_write(db).await?;
    let mut finished = Vec::with_capacity(which.len());
    for i in which {
        let (claimed, outcome) = &batch[*i];
        let result = recorded(claimed, outcome, DeliveryStatus::Delivered, now, now)
            .exec(&txn)
            .await?;
        finished.push(if result.rows_affected == 0 {
            Finished::Superseded
        } else {
            Finished::Delivered
        });
    }
    txn.commit().await?;
    Ok(finished)
}

fn latency_ms(outcome: &Outcome) -> i32 {
    i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX)
}

/// The update that records an attempt's outcome on its delivery, if the lease is still the
/// attempt's (its number and its end unchanged, the delivery still pending).
fn recorded(
    claimed: &Claimed,
    outcome: &Outcome,
    status: DeliveryStatus,
    next_attempt_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<webhook_delivery::Entity> {
    webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::Status, Expr::value(status))
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(
            webhook_delivery::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(webhook_delivery::Column::LastAttemptAt, Expr::value(now))
        .col_expr(
            webhook_delivery::Column::LastStatusCode,
            Expr::value(outcome.status_code.map(i32::from)),
        )
        .col_expr(
            webhook_delivery::Column::LastLatencyMs,
            Expr::value(latency_ms(outcome)),
        )
        .col_expr(webhook_delivery::Column::LastError, Expr::value(outcome.error.clone()))
        .col_expr(
            webhook_delivery::Column::DeliveredAt,
            Expr::value(outcome.delivered().then_some(now)),
        )
        .filter(webhook_delivery::Column::Id.eq(claimed.delivery_id))
        .filter(webhook_delivery::Column::Attempts.eq(claimed.attempt))
        .filter(webhook_delivery::Column::LockedUntil.eq(claimed.lease))
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
}

/// Records an attempt's outcome in one transaction with the endpoint's streak (a failure, or a
/// success that ends a failing streak; `finish_batch` records the other successes together).
pub async fn finish(
    db: &DatabaseConnection,
    endpoint: &webhook_endpoint::Model,
    claimed: &Claimed,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> AppResult<Finished> {
    let endpoint_id = endpoint.id;
    let (status, next_attempt_at, finished) = if outcome.delivered() {
        (DeliveryStatus::Delivered, now, Finished::Delivered)
    } else if claimed.attempt >= schedule::MAX_ATTEMPTS {
        (DeliveryStatus::Failed, now, Finished::Failed)
    } else {
        (
            DeliveryStatus::Pending,
            now + schedule::delay(claimed.attempt),
            Finished::Retry,
        )
    };
    let record = recorded(claimed, outcome, status, next_attempt_at, now);
    let txn = begin_write(db).await?;
    let recorded = record.exec(&txn).await?;
    if recorded.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(Finished::Superseded);
    }
    if outcome.delivered() {
        webhook_endpoint::Entity::update_many()
            .col_expr(
                webhook_endpoint::Column::FailingSince,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_endpoint::Column::Id.eq(endpoint_id))
            .filter(webhook_endpoint::Column::FailingSince.is_not_null())
            .exec(&txn)
            .await?;
    } else {
        webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::FailingSince, Expr::value(now))
            .filter(webhook_endpoint::Column::Id.eq(endpoint_id))
            .filter(webhook_endpoint::Column::FailingSince.is_null())
            .exec(&txn)
            .await?;
        let disabled = webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
            .col_expr(
                webhook_endpoint::Column::DisabledReason,
                Expr::value(format!(
                    "disabled automatically: every delivery failed for {} days",
                    schedule::disable_after().num_days()
                )),
            )
            .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_endpoint::Column::Id.eq(endpoint_id))
            .filter(webhook_endpoint::Column::Enabled.eq(true))
            .filter(webhook_endpoint::Column::FailingSince.lte(now - schedule::disable_after()))
            .exec(&txn)
            .await?;
        if disabled.rows_affected > 0 {
            tracing::warn!(
                endpoint = endpoint_id,
                "webhook endpoint disabled after days of failed deliveries"
            );
        }
    }
    txn.commit().await?;
    Ok(finished)
}
