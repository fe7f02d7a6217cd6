//! Writes that share no row, a few batches at a time. A write that finds fewer than `writers`
//! batches in flight starts one of its own at once (so an instance under light load writes each
//! alone, as soon as it comes); when all are busy it waits, and the next writer to finish takes
//! every write that waited (up to `MAX_BATCH`), in the order they came, as its next batch. Under
//! load the database then sees `writers` statements at a time, each carrying what queued while
//! the last ran, instead of one statement and one commit per write.
//!
//! Writes of a batch share its transaction: a batch that fails as a whole must be retried by its
//! writer one write at a time, so that one write's failure stays its own.

use super::{MAX_BATCH, NoAnswer, answer_batch};
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

pub struct GroupCommit<T, R> {
    queue: Arc<Mutex<Queue<T, R>>>,
    writers: usize,
    write: Writer<T, R>,
}

/// Writes one batch (in the order its writes came, at most `MAX_BATCH`) and answers each write,
/// in the same order.
type Writer<T, R> = Arc<dyn Fn(Vec<T>) -> BoxFuture<'static, Vec<R>> + Send + Sync>;

struct Queue<T, R> {
    /// Batches in flight, each written by a task of its own.
    writing: usize,
    waiting: VecDeque<(T, oneshot::Sender<R>)>,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// At most `writers` batches in flight (at least one), each written by `write`.
    pub fn new<W, F>(writers: usize, write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<R>> + Send + 'static,
    {
        GroupCommit {
            queue: Arc::new(Mutex::new(Queue {
                writing: 0,
                waiting: VecDeque::new(),
            })),
            writers: writers.max(1),
            write: Arc::new(move |items| Box::pin(write(items))),
        }
    }

    /// Writes `item` in the next batch that has room, and answers what the writer answered
    /// for it.
    pub async fn write(&self, item: T) -> Result<R, NoAnswer> {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push_back((item, reply));
            let start = queue.writing < self.writers;
            if start {
                queue.writing += 1;
            }
            start
        };
        if start_writer {
            tokio::spawn(write_batches(self.queue.clone(), self.write.clone()));
        }
        answer.await.map_err(|_| NoAnswer)
    }
}

/// Writes batches until none waits.
async fn write_batches<T, R>(queue: Arc<Mutex<Queue<T, R>>>, write: Writer<T, R>) {
    loop {
        let batch: Vec<_> = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() {
                queue.writing -= 1;
                return;
            }
            let size = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..size).collect()
        };
        let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
        answer_batch(write(items), replies, "writes").await;
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    type Written = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A group commit of `writers` whose batches wait for `gate`, are recorded, and answer each
    /// item doubled; item 13 panics its batch.
    fn recording(writers: usize, written: &Written, gate: &Arc<Semaphore>) -> Arc<GroupCommit<u32, u32>> {
        let (written, gate) = (written.clone(), gate.clone());
        Arc::new(GroupCommit::new(writers, move |items: Vec<u32>| {
            let (written, gate) = (written.clone(), gate.clone());
            async move {
                gate.acquire().await.expect("the gate stays open").forget();
                written.lock().unwrap().push(items.clone());
                assert!(!items.contains(&13), "13 fails its batch");
                items.into_iter().map(|item| item * 2).collect()
            }
        }))
    }

    /// Sends `items` one after the other, each queued before the next comes.
    async fn send(
        group: &Arc<GroupCommit<u32, u32>>,
        items: impl IntoIterator<Item = u32>,
    ) -> Vec<tokio::task::JoinHandle<Result<u32, NoAnswer>>> {
        let mut answers = Vec::new();
        for item in items {
            let group = group.clone();
            answers.push(tokio::spawn(async move { group.write(item).await }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        answers
    }

    #[tokio::test]
    async fn writes_that_waited_for_a_writer_go_together_and_each_is_answered() {
        let written = Written::default();
        let gate = Arc::new(Semaphore::new(0));
        let group = recording(2, &written, &gate);
        let answers = send(&group, 1..=6).await;
        gate.add_permits(10);
        let mut answered = Vec::new();
        for answer in answers {
            answered.push(answer.await.unwrap().unwrap());
        }
        assert_eq!(answered, vec![2, 4, 6, 8, 10, 12]);
        let mut batches = written.lock().unwrap().clone();
        batches.sort();
        // Two writers took one write each at once; the four that waited went together.
        assert_eq!(batches, vec![vec![1], vec![2], vec![3, 4, 5, 6]]);
    }

    #[tokio::test]
    async fn a_write_that_finds_a_writer_free_goes_at_once() {
        let written = Written::default();
        let gate = Arc::new(Semaphore::new(100));
        let group = recording(2, &written, &gate);
        for item in 1..=3 {
            assert_eq!(group.write(item).await.unwrap(), item * 2);
        }
        assert_eq!(*written.lock().unwrap(), vec![vec![1], vec![2], vec![3]]);
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_the_limit_and_the_rest_follow() {
        let written = Written::default();
        let gate = Arc::new(Semaphore::new(0));
        let group = recording(1, &written, &gate);
        let count = u32::try_from(MAX_BATCH).unwrap() + 3;
        let answers = send(&group, 100..=100 + count).await;
        gate.add_permits(10);
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let sizes: Vec<usize> = written.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, MAX_BATCH, 3]);
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_writes_and_the_writers_go_on() {
        let written = Written::default();
        let gate = Arc::new(Semaphore::new(0));
        let group = recording(1, &written, &gate);
        let answers = send(&group, [1, 12, 13, 14]).await;
        gate.add_permits(10);
        let mut answered = Vec::new();
        for answer in answers {
            answered.push(answer.await.unwrap().ok());
        }
        assert_eq!(answered, vec![Some(2), None, None, None]);
        // The writer that panicked gave its place back: a later write is written.
        assert_eq!(group.write(5).await.unwrap(), 10);
    }

    #[tokio::test]
    async fn a_batch_outlives_the_request_that_started_it() {
        let written = Written::default();
        let gate = Arc::new(Semaphore::new(0));
        let group = recording(1, &written, &gate);
        let gone = send(&group, [7]).await;
        gone[0].abort();
        gate.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), async {
            while written.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the batch is written although its request went");
        assert_eq!(*written.lock().unwrap(), vec![vec![7]]);
    }
}
