//! The webhook dispatcher: a background task of every instance that orders new events
//! (`outbox::sequence`) every `WEBHOOK_POLL_INTERVAL`, and starts a worker for each enabled
//! endpoint that has none running in this instance. A worker drains its endpoint: it claims a
//! batch of due deliveries (`service::webhooks::dispatch`), sends them `PER_ENDPOINT` at a time,
//! records each outcome, and claims the next batch until nothing is due.
//!
//! One endpoint's trouble stays its own: each endpoint has its own worker, and each attempt is
//! bounded by `WEBHOOK_TIMEOUT`, so a hung or slow receiver holds up only its own deliveries.
//! Workers do not wait for the poll between batches, so a busy endpoint is served as fast as
//! it answers; the poll only brings new events and retries that fell due.

use crate::detach::run_to_completion;
use crate::error::{AppError, AppResult};
use crate::service::outbox;
use crate::service::webhooks::dispatch::{self, Claimed, Finished, Outcome, PER_ENDPOINT};
use crate::state::AppState;
use entity::webhook_endpoint;
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Sequencer batches one pass runs at most while they come back full: events are written
/// faster than one batch a poll when the server is busy (claims at 1,000+ a second).
const SEQUENCE_BATCHES: u32 = 50;
/// Deliveries a worker claims at once: enough that claiming is a small part of the work, few
/// enough that a lease (timeout and a margin) covers the batch's slowest attempt.
const WORKER_BATCH: u64 = 64;
/// How long `Dispatcher::stop` waits for a pass in progress (attempts in flight are left to
/// their leases).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What one pass did: events ordered, workers started (and, for `deliver_now`, which waits
/// for them, the attempts they made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub sequenced: u64,
    pub workers: u64,
    pub attempts: u64,
}

/// One pass: orders new events, then starts a worker for every enabled endpoint without one;
/// their handles (each answers the attempts it made), for a caller that waits for them. Its
/// statements and its workers' go where writes go (`AppState::for_writes`).
async fn pass(state: &AppState) -> AppResult<(Pass, Vec<JoinHandle<u64>>)> {
    let state = &state.for_writes();
    let mut sequenced = 0;
    for _ in 0..SEQUENCE_BATCHES {
        let batch = outbox::sequence(&state.db).await?;
        sequenced += batch.events;
        if batch.events < outbox::SEQUENCE_BATCH {
            break;
        }
    }
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(&state.db)
        .await?;
    let mut handles = Vec::new();
    for endpoint in endpoints {
        if state.webhooks.start_worker(endpoint.id) {
            handles.push(tokio::spawn(worker(state.clone(), endpoint.id)));
        }
    }
    let pass = Pass {
        sequenced,
        workers: handles.len() as u64,
        attempts: 0,
    };
    Ok((pass, handles))
}

/// Drains one endpoint: batches of due deliveries until none is left, the endpoint read again
/// before each (disabled, deleted, its secret or URL changed). The attempts it made.
async fn worker(state: AppState, endpoint_id: i64) -> u64 {
    let mut attempts = 0;
    loop {
        let endpoint = match webhook_endpoint::Entity::find_by_id(endpoint_id).one(&state.db).await {
            Ok(Some(endpoint)) if endpoint.enabled => endpoint,
            Ok(_) => break,
            Err(err) => {
                tracing::warn!(endpoint = endpoint_id, error = ?err, "webhooks: reading an endpoint failed");
                break;
            }
        };
        let timeout = state.config.webhook_timeout;
        let claimed = match dispatch::claim(&state.db, endpoint_id, WORKER_BATCH, timeout, state.clock.now()).await {
            Ok(claimed) => claimed,
            Err(err) => {
                // Tried again at the next pass.
                tracing::warn!(endpoint = endpoint_id, error = ?err, "webhooks: claiming deliveries failed");
                break;
            }
        };
        if claimed.is_empty() {
            break;
        }
        attempts += claimed.len() as u64;
        let allow_private = state.config.webhook_allow_private_targets;
        let client = state.webhooks.client();
        let endpoint = &endpoint;
        let sent: Vec<(Claimed, Outcome)> = futures::stream::iter(claimed)
            .map(|one| async move {
                let outcome = dispatch::send(client, endpoint, &one.event, allow_private).await;
                (one, outcome)
            })
            .buffer_unordered(PER_ENDPOINT)
            .collect()
            .await;
        let finished = dispatch::finish_batch(&state.db, endpoint, &sent, state.clock.now()).await;
        for ((claimed, outcome), finished) in sent.iter().zip(finished) {
            log_attempt(endpoint.id, claimed, outcome, finished);
        }
    }
    state.webhooks.worker_done(endpoint_id);
    attempts
}

fn log_attempt(endpoint_id: i64, claimed: &Claimed, outcome: &Outcome, finished: AppResult<Finished>) {
    match finished {
        Ok(finished) => {
            tracing::debug!(
                endpoint = endpoint_id,
                delivery = claimed.delivery_id,
                attempt = claimed.attempt,
                status = ?outcome.status_code,
                ?finished,
                "webhook attempt"
            );
            if finished == Finished::Failed {
                tracing::warn!(
                    endpoint = endpoint_id,
                    delivery = claimed.delivery_id,
                    error = outcome.error.as_deref().unwrap_or(""),
                    "webhook delivery failed after its last attempt"
                );
            }
        }
        // The lease runs out and the attempt is made again.
        Err(err) => tracing::warn!(endpoint = endpoint_id, delivery = claimed.delivery_id, error = ?err,
                                   "recording a webhook attempt failed"),
    }
}

/// One pass now, waiting for its workers to drain what is due: what tests run instead of
/// waiting for the task.
pub async fn deliver_now(state: &AppState) -> AppResult<Pass> {
    let (mut pass, handles) = pass(state).await?;
    for handle in handles {
        pass.attempts += handle
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("a webhook worker panicked: {err}")))?;
    }
    Ok(pass)
}

/// The running task; `stop` ends it.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub fn spawn(state: AppState) -> Dispatcher {
    let (stop, stopped) = watch::channel(false);
    tracing::info!(
        "webhooks: looking for events and due deliveries every {}",
        humantime::format_duration(state.config.webhook_poll_interval)
    );
    let task = tokio::spawn(run(state, stopped));
    Dispatcher { stop, task }
}

impl Dispatcher {
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            tracing::warn!("webhooks: the pass in progress did not end within {STOP_GRACE:?}; not waiting for it");
            self.task.abort();
        } else {
            tracing::info!("webhooks stopped");
        }
    }
}

async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(state.config.webhook_poll_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        // A task of its own: a pass is never dropped half-way through a transaction.
        let state = state.clone();
        match run_to_completion(async move { pass(&state).await.map(|(pass, _)| pass) }).await {
            Ok(Ok(pass)) if pass.sequenced > 0 || pass.workers > 0 => {
                tracing::debug!(sequenced = pass.sequenced, workers = pass.workers, "webhooks: pass");
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = ?err, "webhooks: a pass failed; the next one tries again"),
            Err(_) => tracing::error!("webhooks: a pass panicked; the next one tries again"),
        }
    }
}
