//! Writes that wait for their turn go to the database together: several in one statement and
//! one commit, each still answered alone. A batch costs one round trip and one commit instead
//! of one per write, which is most of what PostgreSQL spends on a small write.
//!
//! - `lanes`: one batch at a time per key (claims of one account, which would queue on their
//!   balance row anyway);
//! - `group_commit`: a few batches at a time of any writes (purchases, which share no row); and
//!   of reads, which share the same gain (the dashboard's on PostgreSQL: a read is "written"
//!   when its batch's statement answered it, `accounts::dashboard::together`).
//!
//! A batch is written by a task of its own, so a client that hangs up does not cut it short,
//! and the writes that went with its write are still answered.

pub mod group_commit;
pub mod lanes;

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use tokio::sync::oneshot;

/// At most this many writes in one batch: one statement's work stays a few milliseconds however
/// many wait.
const MAX_BATCH: usize = 64;

/// The batch that carried a write ended without its answer: its writer panicked (logged), or
/// answered fewer writes than it was given.
#[derive(Debug)]
pub struct NoAnswer;

/// Waits for a batch's `answers` and hands each to its writer's `replies`, in order. A panic is
/// this batch's alone: its writes get no answer (their requests fail) and the caller goes on.
async fn answer_batch<R>(answers: impl Future<Output = Vec<R>>, replies: Vec<oneshot::Sender<R>>, what: &str) {
    match AssertUnwindSafe(answers).catch_unwind().await {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                // The request may have gone: its write was made all the same.
                let _ = reply.send(answer);
            }
        }
        Err(_) => tracing::error!("writing a batch of {what} panicked"),
    }
}
