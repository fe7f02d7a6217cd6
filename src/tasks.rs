//! The background task: every `SETTLE_INTERVAL` it matures the holds that have ended and
//! expires the lots whose time has come (`ledger::settle_due`), at the application's clock,
//! never the system time, so a sandbox whose clock an admin moved is settled at its own time.
//!
//! A pass settles batches of `BATCH` until one comes back short (more is due than one batch
//! holds only after downtime or a jump of the sandbox clock). A failed batch is logged and the
//! next tick tries again; the task never dies of it. Nothing waits for the task to be correct:
//! a balance read or a spend settles what is due of its own account in its own transaction.
//! The task only keeps the stored rows, reports and `check` up to date.

use crate::detach::run_to_completion;
use crate::error::{AppError, AppResult};
use crate::service::{ledger, sandbox};
use crate::state::AppState;
use ledger::Settled;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Entries one batch settles at most: each account in its own short transaction, so a batch
/// keeps no lock for long and a stop waits at most for one batch.
pub const BATCH: u64 = 500;
/// Batches one pass runs at most before it waits for the next tick: a bound against a pass
/// that never ends, far above what any real backlog needs (a million entries).
pub const MAX_BATCHES: u32 = 2_000;
/// How long `Settler::stop` waits for the batch in progress to finish.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One pass, now: what `advanceClock` runs after moving the clock and what tests run instead of
/// waiting for a tick. A sandbox's clock first catches up with the database's record (another
/// instance may have moved it).
pub async fn settle_now(state: &AppState) -> AppResult<Settled> {
    let mut total = Settled::default();
    for _ in 0..MAX_BATCHES {
        let batch = settle_batch(state).await?;
        add(&mut total, batch);
        if !full(batch) {
            return Ok(total);
        }
    }
    tracing::warn!(
        matured = total.matured,
        expired = total.expired,
        "settling: more is due after {MAX_BATCHES} batches; the next pass goes on"
    );
    Ok(total)
}

/// One batch at the application's clock, on the writers' connection.
async fn settle_batch(state: &AppState) -> AppResult<Settled> {
    let state = &state.for_writes();
    if state.config.sandbox {
        sandbox::catch_up(&state.db, &state.clock).await?;
    }
    ledger::settle_due(&state.db, state.clock.now(), BATCH).await
}

fn full(batch: Settled) -> bool {
    batch.matured + batch.expired >= BATCH
}

fn add(total: &mut Settled, batch: Settled) {
    total.matured += batch.matured;
    total.expired += batch.expired;
}

/// The running task. `stop` ends it cleanly; dropping it ends it too, after the batch in
/// progress.
pub struct Settler {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts the task: a first pass at once (what fell due while the server was down), then one
/// every `SETTLE_INTERVAL`.
pub fn spawn(state: AppState) -> Settler {
    let interval = state.config.settle_interval;
    tracing::info!(
        "settling due holds and expiries every {}",
        humantime::format_duration(interval)
    );
    spawn_with(interval, move || {
        let state = state.clone();
        async move { settle_batch(&state).await }
    })
}

/// `spawn` with the batch to run given: the tests give one that counts.
fn spawn_with<F, Fut>(interval: Duration, batch: F) -> Settler
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = AppResult<Settled>> + Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(interval, stopped, batch));
    Settler { stop, task }
}

impl Settler {
    /// Stops the task: at once when it waits for its next tick, after the batch in progress
    /// otherwise (at most `STOP_GRACE`; a batch still running then is left to finish or to be
    /// rolled back as the process ends).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            tracing::warn!("settling: the batch in progress did not end within {STOP_GRACE:?}; not waiting for it");
            self.task.abort();
        } else {
            tracing::info!("settling stopped");
        }
    }
}

async fn run<F, Fut>(interval: Duration, mut stopped: watch::Receiver<bool>, mut batch: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AppResult<Settled>> + Send + 'static,
{
    let mut ticks = tokio::time::interval(interval);
    // After a long pass, wait a whole interval again rather than run the missed ticks at once.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // A stop, or the Settler dropped.
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        let mut total = Settled::default();
        for n in 1..=MAX_BATCHES {
            // A task of its own: a batch is never dropped half-way through a transaction, and a
            // panic in it is logged, not the end of the task.
            match run_to_completion(batch()).await {
                Ok(Ok(settled)) => {
                    add(&mut total, settled);
                    if !full(settled) {
                        break;
                    }
                    if n == MAX_BATCHES {
                        tracing::warn!("settling: more is due after {MAX_BATCHES} batches; the next pass goes on");
                    }
                }
                Ok(Err(err)) => {
                    log_failure(&err);
                    break;
                }
                // Logged by run_to_completion.
                Err(_) => break,
            }
            if *stopped.borrow() {
                tracing::info!(
                    matured = total.matured,
                    expired = total.expired,
                    "settling stopped between two batches"
                );
                return;
            }
        }
        if total == Settled::default() {
            tracing::debug!("settling: nothing was due");
        } else {
            tracing::info!(
                matured = total.matured,
                expired = total.expired,
                "settled: {} holds matured, {} lots expired",
                total.matured,
                total.expired
            );
        }
    }
}

/// Logs a failed pass with its cause (an internal error's cause is never sent to a client).
pub fn log_failure(err: &AppError) {
    match err {
        AppError::Internal(cause) => {
            tracing::error!(error = ?cause, "settling due holds and expiries failed; the next tick tries again");
        }
        other => tracing::error!(
            code = other.code(),
            error = %other.message(),
            "settling due holds and expiries failed; the next tick tries again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    /// A batch that answers `answers` in turn (then empty batches) and counts its calls.
    fn scripted(
        answers: Vec<AppResult<Settled>>,
    ) -> (Arc<AtomicU64>, impl FnMut() -> std::future::Ready<AppResult<Settled>>) {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let mut answers = answers.into_iter();
        let batch = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(answers.next().unwrap_or(Ok(Settled::default())))
        };
        (calls, batch)
    }

    async fn wait_for(calls: &AtomicU64, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < at_least {
            assert!(
                Instant::now() < deadline,
                "{} calls, not {at_least}",
                calls.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    const FULL: Settled = Settled {
        matured: BATCH - 1,
        expired: 1,
    };

    #[tokio::test]
    async fn a_pass_runs_at_start_and_repeats_while_batches_are_full() {
        let short = Settled { matured: 3, expired: 4 };
        let (calls, batch) = scripted(vec![Ok(FULL), Ok(FULL), Ok(short), Ok(FULL)]);
        let settler = spawn_with(Duration::from_secs(3600), batch);
        wait_for(&calls, 3).await;
        // The short batch ended the pass: nothing more until the next tick, an hour away.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let started = Instant::now();
        settler.stop().await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a waiting task stops at once"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_is_logged_and_the_next_tick_tries_again() {
        let (calls, batch) = scripted(vec![
            Err(AppError::internal(anyhow::anyhow!("database unreachable"))),
            Err(AppError::bad_input("not expected")),
        ]);
        let settler = spawn_with(Duration::from_millis(20), batch);
        // Two failures, then passes go on at every tick.
        wait_for(&calls, 5).await;
        settler.stop().await;
    }

    #[tokio::test]
    async fn a_panicking_batch_does_not_end_the_task() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let settler = spawn_with(Duration::from_millis(20), move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n != 0, "the first batch panics");
                Ok(Settled::default())
            }
        });
        wait_for(&calls, 3).await;
        settler.stop().await;
    }

    #[tokio::test]
    async fn stopping_waits_for_the_batch_in_progress_then_no_other_runs() {
        let calls = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        let (counter, done) = (calls.clone(), finished.clone());
        let settler = spawn_with(Duration::from_secs(3600), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.fetch_add(1, Ordering::SeqCst);
                // Full: without the stop, another batch would follow at once.
                Ok(FULL)
            }
        });
        wait_for(&calls, 1).await;
        settler.stop().await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the batch in progress ran to its end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no batch after the stop");
    }
}
