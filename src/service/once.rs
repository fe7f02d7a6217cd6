//! "Insert once, or answer the first result again": the one idempotency mechanism of the flows
//! (events by `eventId`, claims by `idempotencyKey`, credit by `invoiceId`, and next
//! withdrawals). A request names its row by a key that a unique index guards, and carries a
//! fingerprint (the hash of its canonical input):
//!
//! - [`stored`], before the write lock: a row already stored under the key answers the request
//!   again when the fingerprint matches and is `IDEMPOTENCY_CONFLICT` when it does not, so a
//!   replay never queues for the lock.
//! - [`insert`], inside the flow's transaction: `INSERT … ON CONFLICT DO NOTHING` on the key's
//!   index. Refused (the same key recorded concurrently, or between the check and the lock), the
//!   transaction is rolled back and the stored row is judged as above. The unique index decides,
//!   so of concurrent requests exactly one inserts.
//!
//! Each site says what its key is in one small [`Key`] implementation and keeps only what is
//! its own: what it writes after the insert, and how it answers a replay.

use crate::db::inserted;
use crate::error::{AppError, AppResult};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    IntoActiveModel,
};
use std::future::Future;

/// The key one request is recorded under, and how to recognise the same request again.
pub trait Key: Sync {
    /// The row that records the first request (an event, a claim, a credit application).
    type Row: Send;

    /// The columns of the unique index that guards the key, as the insert's conflict target.
    fn on_conflict(&self) -> OnConflict;

    /// Reads the row stored under this key, if any. A key that cannot conflict (an absent
    /// idempotency key) finds nothing.
    fn find<C: ConnectionTrait>(&self, db: &C) -> impl Future<Output = AppResult<Option<Self::Row>>> + Send;

    /// Whether the stored row was made by this same request (its fingerprint matches).
    fn same_request(&self, row: &Self::Row) -> bool;

    /// The answer to the key reused with different input (an `IDEMPOTENCY_CONFLICT`, naming the key).
    fn conflict(&self, row: &Self::Row) -> AppError;
}

/// What [`insert`] did.
pub enum Inserted<R> {
    /// This request's row: the flow goes on in the transaction, and commits it.
    New(R, DatabaseTransaction),
    /// The row of the first request with this key and the same input; the transaction was rolled
    /// back, and the flow answers this row again.
    First(R),
}

/// Before the write lock: the first request's row if the key is taken by the same request,
/// `IDEMPOTENCY_CONFLICT` if it is taken by another, `None` if it is free.
pub async fn stored<K: Key, C: ConnectionTrait>(db: &C, key: &K) -> AppResult<Option<K::Row>> {
    match key.find(db).await? {
        Some(row) => judge(key, row).map(Some),
        None => Ok(None),
    }
}

/// Inserts `row` under the key in `txn`, or, when the unique index refuses it, rolls `txn` back
/// and judges the row stored under the key (see [`stored`]).
pub async fn insert<K, A>(
    db: &DatabaseConnection,
    txn: DatabaseTransaction,
    key: &K,
    row: A,
) -> AppResult<Inserted<K::Row>>
where
    K: Key<Row = <A::Entity as EntityTrait>::Model>,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    let result = A::Entity::insert(row)
        .on_conflict(key.on_conflict().do_nothing().to_owned())
        .try_insert()
        .exec_with_returning(&txn)
        .await;
    if let Some(row) = inserted(result)? {
        return Ok(Inserted::New(row, txn));
    }
    // Recorded by another request that committed first: read it outside this transaction,
    // which has nothing left to do.
    txn.rollback().await?;
    let first = key
        .find(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("an insert conflicted on a key that holds no row")))?;
    judge(key, first).map(Inserted::First)
}

fn judge<K: Key>(key: &K, row: K::Row) -> AppResult<K::Row> {
    if key.same_request(&row) {
        Ok(row)
    } else {
        Err(key.conflict(&row))
    }
}
