//! Claims of one account take turns inside the instance, and those that had to wait are written
//! together. On PostgreSQL a claim is one statement that locks the account's points balance;
//! many claims of one account at once all wait on that row lock, and when it is released they
//! wake together and all but one wait again, in no particular order (measured on one account at
//! 32 connections: p99 ≈ 100 ms, for pgbench alone as for the server). Queued here first, first
//! come first served, they reach the database one batch at a time per account and find the row
//! free; and a batch of claims that waited costs one round trip and one commit instead of one
//! each, which is what a hot account's rate and tail were made of. The database's lock still
//! decides between instances; this only orders and groups what one instance sends.
//!
//! Accounts share a fixed number of lanes (by a hash of the account), so memory stays bounded
//! whatever the number of accounts; two accounts in one lane merely take turns, and a batch
//! holds one account's claims only (so a batch locks one balance, as a single claim does).
//!
//! A lane's batches are written by a task of its own, started by the claim that found the lane
//! idle and ended when no claim waits: a client that hangs up does not cut a batch short, and
//! the claims written with its claim are still answered.

use super::{MAX_BATCH, NoAnswer, answer_batch};
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Enough that concurrent claims of different accounts seldom share a lane (of 32 claims in
/// flight, two share one about one time in nine), and sharing costs one batch's wait.
const LANES: usize = 4096;

pub struct Lanes<T, R> {
    lanes: Arc<[Mutex<Lane<T, R>>]>,
    write: Writer<T, R>,
}

/// Writes one batch (one account's items, in the order they came, at most `MAX_BATCH`) and
/// answers each item, in the same order.
type Writer<T, R> = Arc<dyn Fn(String, Vec<T>) -> BoxFuture<'static, Vec<R>> + Send + Sync>;

struct Lane<T, R> {
    /// A task is writing this lane's batches; a new claim only joins the queue.
    writing: bool,
    waiting: VecDeque<Waiting<T, R>>,
}

struct Waiting<T, R> {
    account: String,
    item: T,
    reply: oneshot::Sender<R>,
}

impl<T: Send + 'static, R: Send + 'static> Lanes<T, R> {
    /// Lanes whose batches `write` writes.
    pub fn new<W, F>(write: W) -> Self
    where
        W: Fn(String, Vec<T>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<R>> + Send + 'static,
    {
        Lanes {
            lanes: (0..LANES)
                .map(|_| {
                    Mutex::new(Lane {
                        writing: false,
                        waiting: VecDeque::new(),
                    })
                })
                .collect(),
            write: Arc::new(move |account, items| Box::pin(write(account, items))),
        }
    }

    /// Writes `item` of `account` after the items this instance queued before it on the same
    /// lane, in one batch with the items of the same account that are waiting when its turn
    /// comes, and answers what the writer answered for it.
    pub async fn write(&self, account: &str, item: T) -> Result<R, NoAnswer> {
        let index = lane_of(account);
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut lane = self.lanes[index].lock().unwrap_or_else(PoisonError::into_inner);
            lane.waiting.push_back(Waiting {
                account: account.to_owned(),
                item,
                reply,
            });
            !std::mem::replace(&mut lane.writing, true)
        };
        if start_writer {
            tokio::spawn(write_lane(self.lanes.clone(), index, self.write.clone()));
        }
        answer.await.map_err(|_| NoAnswer)
    }
}

/// Writes the lane's batches until none waits.
async fn write_lane<T, R>(lanes: Arc<[Mutex<Lane<T, R>>]>, index: usize, write: Writer<T, R>) {
    loop {
        let batch = {
            let mut lane = lanes[index].lock().unwrap_or_else(PoisonError::into_inner);
            let batch = next_batch(&mut lane.waiting);
            if batch.is_empty() {
                lane.writing = false;
                return;
            }
            batch
        };
        let account = batch[0].account.clone();
        let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) =
            batch.into_iter().map(|waiting| (waiting.item, waiting.reply)).unzip();
        answer_batch(write(account, items), replies, "claims").await;
    }
}

/// The first waiting item and those of the same account behind it (up to `MAX_BATCH`), in the
/// order they came; other accounts' items keep their places.
fn next_batch<T, R>(waiting: &mut VecDeque<Waiting<T, R>>) -> Vec<Waiting<T, R>> {
    let Some(first) = waiting.pop_front() else {
        return Vec::new();
    };
    let mut batch = vec![first];
    let mut others = VecDeque::new();
    while let Some(next) = waiting.pop_front() {
        if batch.len() < MAX_BATCH && next.account == batch[0].account {
            batch.push(next);
        } else {
            others.push_back(next);
        }
    }
    *waiting = others;
    batch
}

fn lane_of(account: &str) -> usize {
    // A fixed hasher: the lane of an account is the same on every call.
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(account);
    (hash % LANES as u64) as usize
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    type Written = Arc<Mutex<Vec<(String, Vec<u32>)>>>;

    /// Lanes whose writer records its batches and answers each item doubled, once the gate of
    /// the batch's account lets it: `u1`'s for u1, `others` for any other account.
    fn recording(written: &Written, u1: &Arc<Semaphore>, others: &Arc<Semaphore>) -> Lanes<u32, u32> {
        let (written, u1, others) = (written.clone(), u1.clone(), others.clone());
        Lanes::new(move |account: String, items: Vec<u32>| {
            let written = written.clone();
            let gate = if account == "u1" { u1.clone() } else { others.clone() };
            async move {
                gate.acquire().await.expect("the gate stays open").forget();
                written.lock().unwrap().push((account, items.clone()));
                items.into_iter().map(|item| item * 2).collect()
            }
        })
    }

    fn same_lane_as(account: &str) -> String {
        (0..)
            .map(|n| format!("other-{n}"))
            .find(|other| lane_of(other) == lane_of(account))
            .expect("some account shares the lane")
    }

    #[tokio::test]
    async fn items_that_waited_are_written_together_and_each_answered() {
        let written = Written::default();
        let gate = Arc::new(Semaphore::new(0));
        let lanes = Arc::new(recording(&written, &gate, &gate));
        let neighbour = same_lane_as("u1");
        let mut answers = Vec::new();
        for (account, item) in [("u1", 1), ("u1", 2), (neighbour.as_str(), 3), ("u1", 4), ("u1", 5)] {
            let (lanes, account) = (lanes.clone(), account.to_owned());
            answers.push(tokio::spawn(async move { lanes.write(&account, item).await }));
            // Each one queued before the next comes.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.add_permits(3);
        let answers: Vec<u32> = futures::future::join_all(answers)
            .await
            .into_iter()
            .map(|answer| answer.unwrap().unwrap())
            .collect();
        assert_eq!(answers, [2, 4, 6, 8, 10], "each item gets its own answer");
        assert_eq!(
            *written.lock().unwrap(),
            [
                ("u1".to_owned(), vec![1]),
                ("u1".to_owned(), vec![2, 4, 5]),
                (neighbour, vec![3]),
            ],
            "the first goes alone; then u1's waiting items together, then the other account's"
        );
    }

    #[tokio::test]
    async fn other_lanes_do_not_wait_and_a_batch_outlives_its_caller() {
        let written = Written::default();
        let (closed, open) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(100)));
        let lanes = Arc::new(recording(&written, &closed, &open));
        let first = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.write("u1", 1).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let other = (2..)
            .map(|n| format!("u{n}"))
            .find(|id| lane_of(id) != lane_of("u1"))
            .expect("some account falls in another lane");
        let elsewhere = tokio::time::timeout(Duration::from_millis(500), lanes.write(&other, 7)).await;
        assert_eq!(elsewhere.expect("another lane goes at once").unwrap(), 14);
        // u1's caller gives up; its batch is written when the writer may go on.
        first.abort();
        closed.add_permits(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            written.lock().unwrap().contains(&("u1".to_owned(), vec![1])),
            "the batch was written without its caller"
        );
        // The lane is idle again: the next item starts a writer of its own.
        closed.add_permits(1);
        let again = tokio::time::timeout(Duration::from_millis(500), lanes.write("u1", 2));
        assert_eq!(again.await.expect("u1's lane is free").unwrap(), 4);
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_items_and_the_lane_goes_on() {
        let lanes: Lanes<u32, u32> = Lanes::new(|_, items: Vec<u32>| async move {
            assert!(!items.contains(&1), "the writer fails on item 1");
            items
        });
        let panicked = lanes.write("u1", 1).await;
        assert!(panicked.is_err(), "no answer from a batch that panicked");
        let next = lanes.write("u1", 2).await;
        assert_eq!(next.unwrap(), 2);
    }

    #[test]
    fn a_batch_is_one_accounts_items_up_to_the_limit() {
        let mut waiting = VecDeque::new();
        let mut push = |account: &str, item: usize| {
            let (reply, _) = oneshot::channel::<()>();
            waiting.push_back(Waiting {
                account: account.to_owned(),
                item,
                reply,
            });
        };
        for item in 0..MAX_BATCH + 2 {
            push(if item == 1 { "b" } else { "a" }, item);
        }
        let items = |batch: Vec<Waiting<usize, ()>>| batch.into_iter().map(|w| w.item).collect::<Vec<_>>();
        let first = items(next_batch(&mut waiting));
        assert_eq!(first.len(), MAX_BATCH);
        assert!(!first.contains(&1), "b's item is not in a's batch");
        assert_eq!(items(next_batch(&mut waiting)), [1], "b keeps its place");
        assert_eq!(
            items(next_batch(&mut waiting)),
            [MAX_BATCH + 1],
            "what was over the limit"
        );
        assert!(next_batch(&mut waiting).is_empty());
    }

    #[test]
    fn an_account_always_falls_in_the_same_lane_and_accounts_spread() {
        assert_eq!(lane_of("u42"), lane_of("u42"));
        let used: std::collections::HashSet<usize> = (0..1000).map(|n| lane_of(&format!("u{n}"))).collect();
        assert!(used.len() > 800, "1000 accounts in {} lanes", used.len());
    }
}
