//! The sandbox clock's record: how far a sandbox server's clock is ahead of the system time,
//! kept in `program_settings.clock_offset_ms` so that a restarted server, or a second instance
//! on the same database, carries on from there and never goes back in time. Admins move it
//! forward (`advance`, audited); servers catch up to it (`catch_up`) at start and before each
//! pass of the background task.
//!
//! Whether the server runs as a sandbox is its configuration's to say: callers only come here
//! when it does (the `advanceClock` field exists only in the sandbox's schema).

use crate::clock::Clock;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::audit;
use crate::service::settings::SETTINGS_ID;
use chrono::{DateTime, Duration, Utc};
use entity::program_settings;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Unchanged, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QuerySelect, Set,
};
use serde_json::json;

/// The most one `advanceClock` may move the clock by, in days (and in hours: the same span).
pub const MAX_DAYS: i32 = 3650;
pub const MAX_HOURS: i32 = 24 * MAX_DAYS;
/// How far ahead of the system time a sandbox clock may be in all: a century of simulated
/// time is more than any program needs, and dates stay far from the ends of chrono's range.
pub const MAX_OFFSET_DAYS: i64 = 36_500;

/// The offset recorded on the database: zero on one that never ran as a sandbox.
pub async fn recorded_offset(db: &impl ConnectionTrait) -> Result<Duration, DbErr> {
    let row = program_settings::Entity::find_by_id(SETTINGS_ID).one(db).await?;
    Ok(Duration::milliseconds(row.map_or(0, |r| r.clock_offset_ms)))
}

/// Moves `clock` up to the recorded offset (another instance may have advanced it); a clock
/// already there or further does not move. Returns the recorded offset.
pub async fn catch_up(db: &impl ConnectionTrait, clock: &Clock) -> AppResult<Duration> {
    let recorded = recorded_offset(db).await?;
    clock.catch_up(recorded);
    Ok(recorded)
}

/// What `advance` did.
#[derive(Debug, Clone)]
pub struct Advanced {
    /// The clock before and after; equal when asked to move by nothing.
    pub before: DateTime<Utc>,
    pub after: DateTime<Utc>,
    pub settings: program_settings::Model,
}

/// Moves the sandbox clock forward by `days` and `hours` (each at least 0), from wherever the
/// furthest of this server and the record is, and records the new offset with an audit row in
/// one transaction; then this server's clock follows. Moving by nothing writes nothing.
pub async fn advance(
    db: &DatabaseConnection,
    actor: &str,
    clock: &Clock,
    days: i32,
    hours: i32,
) -> AppResult<Advanced> {
    for (field, value, max) in [("days", days, MAX_DAYS), ("hours", hours, MAX_HOURS)] {
        if !(0..=max).contains(&value) {
            return Err(AppError::bad_input(format!(
                "{field} must be between 0 and {max}: the clock only moves forward"
            )));
        }
    }
    let by = Duration::days(i64::from(days)) + Duration::hours(i64::from(hours));

    let txn = begin_write(db).await?;
    // Locked until the commit (on SQLite the transaction holds the write lock already): two
    // admins advancing at once add up, neither overwrites the other.
    let row = program_settings::Entity::find_by_id(SETTINGS_ID)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the program_settings row is missing")))?;
    let from = row.clock_offset_ms.max(clock.offset().num_milliseconds());
    let to = from.saturating_add(by.num_milliseconds());
    if to > Duration::days(MAX_OFFSET_DAYS).num_milliseconds() {
        return Err(AppError::bad_input(format!(
            "days and hours: the sandbox clock may be at most {MAX_OFFSET_DAYS} days ahead of the system time \
             (it is {} days ahead)",
            Duration::milliseconds(from).num_days()
        )));
    }
    clock.catch_up(Duration::milliseconds(from));
    let before = clock.now();
    if by.is_zero() {
        txn.rollback().await?;
        return Ok(Advanced {
            before,
            after: before,
            settings: row,
        });
    }
    let after = before + by;
    let settings = program_settings::ActiveModel {
        id: Unchanged(SETTINGS_ID),
        clock_offset_ms: Set(to),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        "ADVANCE_CLOCK",
        "clock",
        json!({ "clock": before, "offsetMs": from }),
        json!({ "clock": after, "offsetMs": to }),
        before,
    )
    .await?;
    txn.commit().await?;
    clock.catch_up(Duration::milliseconds(to));
    Ok(Advanced {
        before,
        after,
        settings,
    })
}
