//! Running a request's work so that it ends on its own terms, not the client's. When a client
//! hangs up or the request timeout fires, axum drops the request's future; a GraphQL mutation
//! dropped in the middle of a database call can leave its pooled connection half-way through a
//! `BEGIN` (sqlx 0.9.0 on PostgreSQL then hands the connection out inside an open
//! transaction), and an acquire dropped while connecting keeps an empty pool empty when every
//! request times out before a connection is made. Work run here is a task of its own: the
//! request waits for it, and when the request goes away the work still runs to its commit or
//! rollback.

use std::future::Future;
use tracing::Instrument;

/// Runs `work` as a task of its own and waits for it. Dropping the returned future does not
/// cancel the work. `Err` when the work panicked (logged here; the caller answers an internal
/// error).
pub async fn run_to_completion<F>(work: F) -> Result<F::Output, WorkPanicked>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The task keeps the request's span, so what it logs carries the request's fields.
    tokio::spawn(work.in_current_span()).await.map_err(|err| {
        tracing::error!(error = %err, "the work of a request panicked");
        WorkPanicked
    })
}

/// The work of a request panicked (or its runtime is shutting down).
#[derive(Debug)]
pub struct WorkPanicked;

#[cfg(test)]
mod tests {
    use super::run_to_completion;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn work_goes_on_when_the_caller_gives_up() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let caller = run_to_completion(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        // The caller is dropped long before the work ends.
        assert!(tokio::time::timeout(Duration::from_millis(5), caller).await.is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(done.load(Ordering::SeqCst), "the work was cancelled with its caller");
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let result = run_to_completion(async { panic!("boom") }).await;
        assert!(result.is_err());
        assert_eq!(run_to_completion(async { 7 }).await.ok(), Some(7));
    }
}
