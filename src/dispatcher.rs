//! The webhook dispatcher: a background task of every instance that orders new events
//! (`outbox::sequence`), then claims each enabled endpoint's due deliveries and sends them
//! (`service::webhooks::dispatch`), each attempt a task of its own.
//!
//! One endpoint's trouble stays its own: an endpoint has at most `PER_ENDPOINT` attempts in
//! flight in an instance, each bounded by `WEBHOOK_TIMEOUT`, so a hung or slow receiver holds
//! its own slots and never another endpoint's. A finished attempt wakes the task for the next
//! pass at once; otherwise it looks every `WEBHOOK_POLL_INTERVAL` (other instances' events,
//! retries that fell due).

use crate::detach::run_to_completion;
use crate::error::{AppError, AppResult};
use crate::service::outbox;
use crate::service::webhooks::dispatch::{self, Claimed, Finished};
use crate::state::AppState;
use entity::webhook_endpoint;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Attempts one endpoint has in flight in one instance at most.
pub const PER_ENDPOINT: usize = 8;
/// Sequencer batches one pass runs at most while they come back full: events are written
/// faster than one batch a poll when the server is busy (claims at 1,000+ a second).
const SEQUENCE_BATCHES: u32 = 50;
/// How long `Dispatcher::stop` waits for a pass in progress (attempts in flight are left to
/// their leases).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the dispatcher shares between its task, its attempts and `deliver_now`.
pub struct Webhooks {
    client: reqwest::Client,
    in_flight: Mutex<HashMap<i64, usize>>,
    wake: Notify,
}

impl Webhooks {
    pub fn new(timeout: Duration, allow_private: bool) -> reqwest::Result<Self> {
        Ok(Webhooks {
            client: dispatch::client(timeout, allow_private)?,
            in_flight: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Reserves up to `wanted` of an endpoint's free slots; how many it got.
    fn reserve(&self, endpoint_id: i64, wanted: usize) -> usize {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let used = in_flight.entry(endpoint_id).or_insert(0);
        let granted = wanted.min(PER_ENDPOINT.saturating_sub(*used));
        *used += granted;
        granted
    }

    fn release(&self, endpoint_id: i64, count: usize) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(used) = in_flight.get_mut(&endpoint_id) {
            *used = used.saturating_sub(count);
        }
    }
}

/// What one pass started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub sequenced: u64,
    pub attempts: u64,
}

/// One pass: orders new events, claims what is due within the free slots, and starts the
/// attempts; their handles, for a caller that waits for them.
async fn pass(state: &AppState) -> AppResult<(Pass, Vec<JoinHandle<Finished>>)> {
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
        let slots = state.webhooks.reserve(endpoint.id, PER_ENDPOINT);
        if slots == 0 {
            continue;
        }
        let claimed = dispatch::claim(
            &state.db,
            endpoint.id,
            slots as u64,
            state.config.webhook_timeout,
            state.clock.now(),
        )
        .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(err) => {
                // The other endpoints go on; this one is tried again at the next pass.
                state.webhooks.release(endpoint.id, slots);
                tracing::warn!(endpoint = endpoint.id, error = ?err, "webhooks: claiming deliveries failed");
                continue;
            }
        };
        state.webhooks.release(endpoint.id, slots - claimed.len());
        let endpoint = Arc::new(endpoint);
        for one in claimed {
            handles.push(tokio::spawn(attempt(state.clone(), endpoint.clone(), one)));
        }
    }
    let pass = Pass {
        sequenced,
        attempts: handles.len() as u64,
    };
    Ok((pass, handles))
}

async fn attempt(state: AppState, endpoint: Arc<webhook_endpoint::Model>, claimed: Claimed) -> Finished {
    let allow_private = state.config.webhook_allow_private_targets;
    let outcome = dispatch::send(&state.webhooks.client, &endpoint, &claimed.event, allow_private).await;
    let finished = dispatch::finish(&state.db, &endpoint, &claimed, &outcome, state.clock.now()).await;
    state.webhooks.release(endpoint.id, 1);
    state.webhooks.wake.notify_one();
    match finished {
        Ok(finished) => {
            tracing::debug!(
                endpoint = endpoint.id,
                delivery = claimed.delivery_id,
                attempt = claimed.attempt,
                status = ?outcome.status_code,
                ?finished,
                "webhook attempt"
            );
            if finished == Finished::Failed {
                tracing::warn!(
                    endpoint = endpoint.id,
                    delivery = claimed.delivery_id,
                    error = outcome.error.as_deref().unwrap_or(""),
                    "webhook delivery failed after its last attempt"
                );
            }
            finished
        }
        Err(err) => {
            // The lease runs out and the attempt is made again.
            tracing::warn!(endpoint = endpoint.id, delivery = claimed.delivery_id, error = ?err,
                           "recording a webhook attempt failed");
            Finished::Superseded
        }
    }
}

/// One pass now, waiting for its attempts: what tests and `advanceClock` run instead of
/// waiting for the task.
pub async fn deliver_now(state: &AppState) -> AppResult<Pass> {
    let (pass, handles) = pass(state).await?;
    for handle in handles {
        handle
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("a webhook attempt panicked: {err}")))?;
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
            _ = state.webhooks.wake.notified() => {}
            _ = ticks.tick() => {}
        }
        // A task of its own: a pass is never dropped half-way through a transaction.
        let state = state.clone();
        match run_to_completion(async move { pass(&state).await.map(|(pass, _)| pass) }).await {
            Ok(Ok(pass)) if pass.sequenced > 0 || pass.attempts > 0 => {
                tracing::debug!(sequenced = pass.sequenced, attempts = pass.attempts, "webhooks: pass");
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = ?err, "webhooks: a pass failed; the next one tries again"),
            Err(_) => tracing::error!("webhooks: a pass panicked; the next one tries again"),
        }
    }
}
