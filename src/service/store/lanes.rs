//! Claims of one account take turns inside the instance. On PostgreSQL a claim is one statement
//! that locks the account's points balance; many claims of one account at once all wait on that
//! row lock, and when it is released they wake together and all but one wait again, in no
//! particular order (measured on one account at 32 connections: p99 ≈ 100 ms, for pgbench alone
//! as for the server). Queued here first, first come first served, they reach the database one
//! at a time per account and find the row free. The database's lock still decides between
//! instances; this only orders what one instance sends.
//!
//! Accounts share a fixed number of lanes (by a hash of the external id), so memory stays
//! bounded whatever the number of accounts; two accounts in one lane merely take turns.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use tokio::sync::{Mutex, MutexGuard};

/// Enough that concurrent claims of different accounts seldom share a lane (of 32 claims in
/// flight, two share one about one time in nine), and sharing costs one claim's wait.
const LANES: usize = 4096;

pub struct ClaimLanes {
    lanes: Box<[Mutex<()>]>,
}

impl Default for ClaimLanes {
    fn default() -> Self {
        ClaimLanes {
            lanes: (0..LANES).map(|_| Mutex::new(())).collect(),
        }
    }
}

/// The account's turn: the next claim of the same lane starts when this is dropped.
pub struct Turn<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl ClaimLanes {
    /// Waits for the turn of `external_id`'s lane (tokio's mutex is fair: waiters go in the
    /// order they came).
    pub async fn turn(&self, external_id: &str) -> Turn<'_> {
        Turn(self.lanes[lane_of(external_id)].lock().await)
    }
}

fn lane_of(external_id: &str) -> usize {
    // A fixed hasher: the lane of an account is the same on every call.
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(external_id);
    (hash % LANES as u64) as usize
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_account_waits_for_its_turn_and_another_does_not() {
        let lanes = ClaimLanes::default();
        let first = lanes.turn("u1").await;
        let same = tokio::time::timeout(Duration::from_millis(20), lanes.turn("u1")).await;
        assert!(
            same.is_err(),
            "a second claim of u1 waits while the first holds the turn"
        );
        let other = (2..)
            .map(|n| format!("u{n}"))
            .find(|id| lane_of(id) != lane_of("u1"))
            .expect("some account falls in another lane");
        let other_turn = tokio::time::timeout(Duration::from_millis(20), lanes.turn(&other)).await;
        assert!(other_turn.is_ok(), "{other} in another lane goes at once");
        drop(first);
        let again = tokio::time::timeout(Duration::from_millis(20), lanes.turn("u1")).await;
        assert!(again.is_ok(), "u1's next claim goes when the first is done");
    }

    #[test]
    fn an_account_always_falls_in_the_same_lane_and_accounts_spread() {
        assert_eq!(lane_of("u42"), lane_of("u42"));
        let used: std::collections::HashSet<usize> = (0..1000).map(|n| lane_of(&format!("u{n}"))).collect();
        assert!(used.len() > 800, "1000 accounts in {} lanes", used.len());
    }
}
