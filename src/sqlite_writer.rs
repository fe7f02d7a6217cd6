//! SQLite's writers: one connection of their own, and a queue for the mutations.
//!
//! The connection (`db::connect_sqlite_writer`) keeps its page cache from one write to the next,
//! which a pooled connection does not: SQLite empties a connection's cache whenever another
//! connection wrote since its last transaction.
//!
//! Mutations take turns in the instance before they reach it. SQLite lets one writer at a time
//! hold its write lock; the others wait in its busy handler, which naps and tries again (naps of
//! up to 100 ms), so under many writers one can nap again and again while later ones go first:
//! at 64 concurrent writers the slowest waited over a second (p99 600–1,300 ms in the
//! benchmark). Queued here, in the order they came (tokio's mutex is fair), a mutation finds the
//! lock free, and its wait is the work ahead of it. Measured at 64 writers (10³ accounts): p99 of
//! claims 1.1–1.3 s → 113–141 ms at the same rate, of purchases 590–640 → 98–139 ms at a fifth
//! less rate (their work outside the transaction no longer overlaps). Letting two or four
//! mutations in at once won some of that rate back but doubled or quintupled the claims' p99
//! (their waiter naps again). The instance's background work (sequencer, dispatcher, settler)
//! does not queue: it waits for the connection, statement by statement, and the database's lock
//! still decides for other processes on the same file. PostgreSQL has no such one lock: no queue
//! and no writer connection there.

use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, MutexGuard};

pub struct SqliteWriter {
    /// The writers' connection: a pool of one.
    pub db: DatabaseConnection,
    turns: Mutex<()>,
}

/// A mutation's turn; the next one's starts when it is dropped.
pub struct WriterTurn<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl SqliteWriter {
    pub fn new(db: DatabaseConnection) -> Self {
        SqliteWriter {
            db,
            turns: Mutex::new(()),
        }
    }

    pub async fn turn(&self) -> WriterTurn<'_> {
        WriterTurn(self.turns.lock().await)
    }
}
