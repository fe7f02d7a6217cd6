//! When cash commission becomes withdrawable. A program (or one affiliate) pays AS_EARNED
//! (when the commission's hold ends), MONTHLY or YEARLY: then the commission is held on until
//! the end of the UTC month, or year, its hold ends in, so that an affiliate's payouts come in
//! one batch per period. The schedule is applied when the commission is given: changing it
//! later moves no commission already given.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use entity::enums::PayoutSchedule;

/// When commission whose hold ends at `held_until` becomes withdrawable under `schedule`: the
/// first period boundary at or after it (a hold ending exactly at midnight on the first of a
/// month is released then).
pub fn release(schedule: PayoutSchedule, held_until: DateTime<Utc>) -> DateTime<Utc> {
    let first_of = |year: i32, month: u32| {
        let day = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MAX);
        Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
    };
    let (year, month) = (held_until.year(), held_until.month());
    let (start, next) = match schedule {
        PayoutSchedule::AsEarned => return held_until,
        PayoutSchedule::Monthly => (
            first_of(year, month),
            if month == 12 {
                first_of(year + 1, 1)
            } else {
                first_of(year, month + 1)
            },
        ),
        PayoutSchedule::Yearly => (first_of(year, 1), first_of(year + 1, 1)),
    };
    if held_until == start { start } else { next }
}

/// The schedule that applies to an account: its own, or the program's.
pub fn effective(own: Option<PayoutSchedule>, program: PayoutSchedule) -> PayoutSchedule {
    own.unwrap_or(program)
}

/// Words for a decision's reason.
pub fn describe(schedule: PayoutSchedule) -> &'static str {
    match schedule {
        PayoutSchedule::AsEarned => "as earned",
        PayoutSchedule::Monthly => "monthly payouts",
        PayoutSchedule::Yearly => "yearly payouts",
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn monthly_and_yearly_release_at_the_end_of_the_period_the_hold_ends_in() {
        let cases = [
            (PayoutSchedule::AsEarned, "2026-01-10T13:00:00Z", "2026-01-10T13:00:00Z"),
            (PayoutSchedule::Monthly, "2026-01-10T13:00:00Z", "2026-02-01T00:00:00Z"),
            (PayoutSchedule::Monthly, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),
            (PayoutSchedule::Monthly, "2026-02-28T10:00:00Z", "2026-03-01T00:00:00Z"),
            // Exactly on a boundary: released there, not a period later.
            (PayoutSchedule::Monthly, "2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"),
            (PayoutSchedule::Yearly, "2026-01-10T13:00:00Z", "2027-01-01T00:00:00Z"),
            (PayoutSchedule::Yearly, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),
            (PayoutSchedule::Yearly, "2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ];
        for (schedule, held_until, released) in cases {
            assert_eq!(
                release(schedule, at(held_until)),
                at(released),
                "{schedule:?} {held_until}"
            );
        }
    }

    #[test]
    fn an_affiliates_own_schedule_wins() {
        assert_eq!(
            effective(Some(PayoutSchedule::Yearly), PayoutSchedule::Monthly),
            PayoutSchedule::Yearly
        );
        assert_eq!(effective(None, PayoutSchedule::Monthly), PayoutSchedule::Monthly);
    }
}
