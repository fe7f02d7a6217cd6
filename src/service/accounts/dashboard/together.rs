//! On PostgreSQL, the dashboard's reads that wait for a reader go to the database together: the
//! statement one read would send, once for the whole batch, each read's rows picked out by the
//! key it was made for (an external id, an account's id) and handed back to its own request,
//! which reads them as if alone. A read that finds a reader free goes at once, alone, as its own
//! statement (the batched one costs PostgreSQL ~8 % more for one key, BENCHMARKS.md); under load
//! the database runs a few statements of each kind at a time instead of three per Dashboard, and
//! what each round trip costs both sides (the kernel's, sqlx's, PostgreSQL's protocol and
//! executor start) is shared by the batch.
//!
//! Reads of one batch are the same statement but for their key: the same shape and page size
//! (`Kind`). A page after a cursor, or of one unit, is read alone (not the Dashboard's shape).
//! A read's rows are what it would read alone: the statements read no rows that another read of
//! the batch writes, and no Dashboard reads in a transaction (its statements already see
//! different moments).

use super::Shape;
use crate::db::OwnedDirect;
use crate::service::batches::group_commit::GroupCommit;
use sea_orm::sea_query::{Alias, Expr, SelectStatement};
use sea_orm::sqlx::Row as _;
use sea_orm::{DbBackend, DbErr, QueryResult, Statement};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Batches of one kind in flight at once (each on a pooled connection).
const READERS: usize = 2;

/// The instance's dashboard reads on PostgreSQL, batched by kind.
pub struct DashboardBatches {
    pool: OwnedDirect,
    kinds: Mutex<HashMap<Kind, Arc<Reads>>>,
}

/// The reads of one kind, batched.
type Reads = GroupCommit<Read, Answer>;

/// A read waiting for its batch: its key, and the statement that makes it alone.
struct Read {
    key: serde_json::Value,
    alone: Statement,
}

/// What a batch answers a read.
pub(super) enum Answer {
    Rows(Vec<QueryResult>),
    /// The read went alone, as its own statement, and that failed.
    Failed(DbErr),
    /// Its batch failed as a whole (logged): it is to be read alone.
    Alone,
}

/// What a batch's statement depends on besides its reads' keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Kind {
    pub shape: Shape,
    /// The page's size with the one row more (`PageRequest::fetch_limit`); 0 for an account.
    pub limit: u64,
}

/// How a read's statement is written for a batch.
pub(super) struct Batched {
    /// The statement with the read's key written as `key()` wherever one read binds its key.
    pub statement: SelectStatement,
    /// The key's SQL type: `text` or `bigint`.
    pub key_type: &'static str,
    /// The statement's own order, of its columns as the batch's rows name them (`x.name`),
    /// after the read's place in the batch; empty when its rows' order does not matter.
    pub order: &'static str,
}

/// Where a batched statement finds its read's key.
pub(super) fn key() -> Expr {
    Expr::col((Alias::new("b"), Alias::new("key")))
}

impl DashboardBatches {
    pub fn new(pool: OwnedDirect) -> Self {
        DashboardBatches {
            pool,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// The read of `key`, made with the reads of its kind that wait, or by `alone`, its own
    /// statement, when it goes by itself. `batched` writes the kind's statement, the first
    /// time one of its kind comes.
    pub(super) async fn read(
        &self,
        kind: Kind,
        key: serde_json::Value,
        alone: Statement,
        batched: impl FnOnce() -> Batched,
    ) -> Answer {
        let reads = {
            let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
            kinds
                .entry(kind)
                .or_insert_with(|| Arc::new(reads_of(self.pool.clone(), kind, batched())))
                .clone()
        };
        reads.write(Read { key, alone }).await.unwrap_or(Answer::Alone)
    }
}

/// The reads of one kind: the batch's keys as a JSON list (the last parameter, after those of
/// the statement, the same for every read of the kind), each read's statement run once per key
/// (`OFFSET 0` keeps the planner from merging them into one join planned for a hundred keys,
/// which could scan whole tables), and each row tagged with its read's place.
fn reads_of(pool: OwnedDirect, kind: Kind, batched: Batched) -> Reads {
    let built = DbBackend::Postgres.build(&batched.statement);
    let constants = built.values.map(|values| values.0).unwrap_or_default();
    let text: Arc<str> = format!(
        "SELECT x.*, b.n AS batch_n FROM ROWS FROM (jsonb_to_recordset(${list}::jsonb) AS (key {key_type})) \
         WITH ORDINALITY AS b(key, n) CROSS JOIN LATERAL ({read} OFFSET 0) AS x ORDER BY b.n{order}",
        list = constants.len() + 1,
        key_type = batched.key_type,
        read = built.sql,
        order = batched.order,
    )
    .into();
    GroupCommit::new(READERS, move |mut batch: Vec<Read>| {
        let (pool, text, mut values) = (pool.clone(), text.clone(), constants.clone());
        async move {
            let reads = batch.len();
            if reads == 1 {
                let read = batch.pop().map(|read| read.alone);
                return vec![match read {
                    Some(alone) => pool.direct().all(alone).await.map_or_else(Answer::Failed, Answer::Rows),
                    None => Answer::Alone,
                }];
            }
            let list = batch
                .into_iter()
                .map(|read| serde_json::json!({ "key": read.key }))
                .collect();
            values.push(serde_json::Value::Array(list).into());
            let statement = Statement::from_sql_and_values(DbBackend::Postgres, text.as_ref(), values);
            match pool.direct().all(statement).await {
                Ok(rows) => split(rows, reads).map(|split| split.into_iter().map(Answer::Rows).collect()),
                Err(err) => Err(err.to_string()),
            }
            .unwrap_or_else(|err| {
                tracing::warn!(?kind, reads, %err, "a batch of dashboard reads failed; each is read alone");
                (0..reads).map(|_| Answer::Alone).collect()
            })
        }
    })
}

/// A batch's rows, each read's in its own list, in order: a row's last column is its read's
/// place in the batch (from 1).
fn split(rows: Vec<QueryResult>, reads: usize) -> Result<Vec<Vec<QueryResult>>, String> {
    let mut split: Vec<Vec<QueryResult>> = (0..reads).map(|_| Vec::new()).collect();
    for row in rows {
        let pg = row.try_as_pg_row().ok_or("a batch's row not of PostgreSQL")?;
        let n: i64 = pg.try_get(pg.len() - 1).map_err(|err| err.to_string())?;
        let read = usize::try_from(n - 1)
            .ok()
            .and_then(|index| split.get_mut(index))
            .ok_or_else(|| format!("a batch's row for read {n} of {reads}"))?;
        read.push(row);
    }
    Ok(split)
}
