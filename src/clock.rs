//! The application's one time source. Services never read the system time: flows take `now`
//! from here (through their caller) and stamp everything they write in one transaction with it.
//!
//! The clock is the system time plus an offset that only moves forward. In production the
//! offset stays 0. Tests move it to watch holds mature and credit expire in milliseconds; a
//! sandbox server (`SANDBOX=true`) lets admins move it, like a payment provider's test clocks.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone, Debug, Default)]
pub struct Clock(Arc<AtomicI64>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    #[error("the clock never goes backwards")]
    Backwards,
    #[error("the clock cannot move that far")]
    TooFar,
}

impl Clock {
    /// The system time, moved only by `advance`.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock already moved forward by `offset` (a sandbox restarting where it was).
    pub fn with_offset(offset: Duration) -> Result<Self, ClockError> {
        let clock = Self::system();
        clock.advance(offset)?;
        Ok(clock)
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    /// How far this clock is ahead of the system time.
    pub fn offset(&self) -> Duration {
        Duration::milliseconds(self.0.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `by`; returns the new time. Never backwards: a hold that
    /// matured stays matured.
    pub fn advance(&self, by: Duration) -> Result<DateTime<Utc>, ClockError> {
        if by < Duration::zero() {
            return Err(ClockError::Backwards);
        }
        let by = by.num_milliseconds();
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |offset| offset.checked_add(by))
            .map_err(|_| ClockError::TooFar)?;
        Ok(self.now())
    }

    /// Moves the clock forward to at least `offset` ahead of the system time (what another
    /// instance of a sandbox recorded); a smaller offset changes nothing.
    pub fn catch_up(&self, offset: Duration) {
        self.0.fetch_max(offset.num_milliseconds(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_only() {
        let clock = Clock::system();
        let before = clock.now();
        let after = clock.advance(Duration::days(30)).unwrap_or(before);
        assert!(after - before >= Duration::days(30));
        assert_eq!(clock.advance(Duration::hours(-1)), Err(ClockError::Backwards));
        assert_eq!(clock.offset(), Duration::days(30));
        clock.catch_up(Duration::days(1));
        assert_eq!(clock.offset(), Duration::days(30));
        clock.catch_up(Duration::days(31));
        assert_eq!(clock.offset(), Duration::days(31));
    }

    #[test]
    fn clones_share_one_time() {
        let clock = Clock::system();
        let other = clock.clone();
        let _ = other.advance(Duration::hours(5));
        assert_eq!(clock.offset(), Duration::hours(5));
    }
}
