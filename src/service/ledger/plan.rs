//! What time does to one balance, as a pure function: from the balance and its due entries
//! (holds that have ended by `now`, lots whose expiry has passed), the plan says which entries
//! mature, what expires, what debt is repaid, and the balance after. Settling writes the plan;
//! a balance read shows it without writing. One function for both, so that what a read shows
//! is what the background task will write.
//!
//! Things happen in the order of the clock: a hold that ended on day 30 repays debt before a
//! lot expires on day 40, whenever the task runs. At one instant, credits mature first, then
//! the (partial) reversals held with them, then debt is repaid, then lots expire.

use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus};
use entity::{balance, ledger_entry};
use std::collections::{BTreeMap, HashMap};

/// The figures of a balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    pub lifetime_earned: i64,
}

impl Figures {
    pub fn of(balance: &balance::Model) -> Self {
        Figures {
            available: balance.available,
            pending: balance.pending,
            debt: balance.debt,
            lifetime_earned: balance.lifetime_earned,
        }
    }

    /// The balance row with these figures.
    pub fn apply_to(self, balance: &mut balance::Model) {
        balance.available = self.available;
        balance.pending = self.pending;
        balance.debt = self.debt;
        balance.lifetime_earned = self.lifetime_earned;
    }
}

/// A new entry settling writes (EXPIRY or DEBT), stamped with when it took effect, and what it
/// takes from which lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub kind: EntryKind,
    pub amount: i64,
    pub at: DateTime<Utc>,
    /// (lot, amount)
    pub takes: Vec<(i64, i64)>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The balance after.
    pub figures: Figures,
    /// Entries that mature, in order, with what their lot has left afterwards (None: a
    /// negative entry, not a lot).
    pub matured: Vec<(i64, Option<i64>)>,
    /// What matured negative entries take from lots: (entry, lot, amount).
    pub takes: Vec<(i64, i64, i64)>,
    /// Lots already posted whose remaining changes: (lot, before, after).
    pub lots: Vec<(i64, i64, i64)>,
    pub written: Vec<Written>,
    /// Lots that matured here and are still open at `now` with an expiry: (expires at, left).
    pub open: Vec<(DateTime<Utc>, i64)>,
}

impl Plan {
    pub fn expired(&self) -> u64 {
        self.written.iter().filter(|w| w.kind == EntryKind::Expiry).count() as u64
    }
}

/// What a DEBT entry that repays says.
pub const REPAID: &str = "Debt repaid from later earnings";
/// What a DEBT entry that records debt says.
pub const OWED: &str = "Owed: the part of a reversal the balance could not cover, paid first from later earnings";

pub fn expiry_description(lot: &str) -> String {
    format!("Expired: what was left of \u{201c}{lot}\u{201d}")
}

// The order of things at one instant.
const CREDIT: u8 = 0;
const HELD_REVERSAL: u8 = 1;
const REPAY: u8 = 2;
const EXPIRE: u8 = 3;

struct Lot {
    remaining: i64,
    expires_at: Option<DateTime<Utc>>,
    /// Its remaining when settling began, for a lot that was already posted.
    stored: Option<i64>,
}

/// The plan for one balance. `due` holds its PENDING entries whose hold has ended by `now` and
/// its open lots whose expiry has passed; anything else in it is ignored.
pub fn settle(start: Figures, due: &[ledger_entry::Model], now: DateTime<Utc>) -> Plan {
    let mut plan = Plan {
        figures: start,
        ..Plan::default()
    };
    let entries: HashMap<i64, &ledger_entry::Model> = due.iter().map(|e| (e.id, e)).collect();
    let mut lots: BTreeMap<i64, Lot> = BTreeMap::new();
    let mut events: Vec<(DateTime<Utc>, u8, i64)> = Vec::new();
    for entry in due {
        match entry.status {
            EntryStatus::Pending => {
                let Some(at) = entry.available_at.filter(|at| *at <= now) else {
                    continue;
                };
                events.push((at, if entry.amount > 0 { CREDIT } else { HELD_REVERSAL }, entry.id));
                events.push((at, REPAY, 0));
                if let Some(expires_at) = entry.expires_at.filter(|at| *at <= now)
                    && entry.amount > 0
                {
                    events.push((expires_at, EXPIRE, entry.id));
                }
            }
            EntryStatus::Posted => {
                if let (Some(left), Some(expires_at)) = (entry.remaining, entry.expires_at)
                    && left > 0
                    && expires_at <= now
                {
                    lots.insert(
                        entry.id,
                        Lot {
                            remaining: left,
                            expires_at: Some(expires_at),
                            stored: Some(left),
                        },
                    );
                    events.push((expires_at, EXPIRE, entry.id));
                }
            }
            EntryStatus::Voided => {}
        }
    }
    events.sort_unstable();
    events.dedup();

    let figures = &mut plan.figures;
    for (at, class, id) in events {
        match class {
            CREDIT => {
                let Some(entry) = entries.get(&id) else { continue };
                figures.available += entry.amount;
                figures.pending -= entry.amount;
                if entry.kind == EntryKind::Reward {
                    figures.lifetime_earned += entry.amount;
                }
                lots.insert(
                    id,
                    Lot {
                        remaining: entry.amount,
                        expires_at: entry.expires_at,
                        stored: None,
                    },
                );
                plan.matured.push((id, None));
            }
            HELD_REVERSAL => {
                let Some(entry) = entries.get(&id) else { continue };
                let amount = -entry.amount;
                figures.pending += amount;
                if entry.kind == EntryKind::Reversal {
                    figures.lifetime_earned -= amount;
                }
                let takes = take(&mut lots, amount, entry.reverses_entry_id);
                let covered: i64 = takes.iter().map(|(_, a)| a).sum();
                figures.available -= covered;
                plan.takes.extend(takes.into_iter().map(|(lot, a)| (id, lot, a)));
                // A held reversal never exceeds its reward, which matures at the same instant;
                // should it, the rest is owed like any reversal's.
                let owed = amount - covered;
                if owed > 0 {
                    figures.debt += owed;
                    plan.written.push(Written {
                        kind: EntryKind::Debt,
                        amount: owed,
                        at,
                        takes: Vec::new(),
                        description: OWED.to_owned(),
                    });
                }
                plan.matured.push((id, None));
            }
            REPAY => {
                let open: i64 = lots.values().map(|l| l.remaining).sum();
                let repaid = figures.debt.min(open);
                if repaid > 0 {
                    let takes = take(&mut lots, repaid, None);
                    figures.debt -= repaid;
                    figures.available -= repaid;
                    plan.written.push(Written {
                        kind: EntryKind::Debt,
                        amount: -repaid,
                        at,
                        takes,
                        description: REPAID.to_owned(),
                    });
                }
            }
            _ => {
                let Some(lot) = lots.get_mut(&id) else { continue };
                let left = lot.remaining;
                if left > 0 {
                    lot.remaining = 0;
                    figures.available -= left;
                    let description = entries.get(&id).map_or(String::new(), |e| e.description.clone());
                    plan.written.push(Written {
                        kind: EntryKind::Expiry,
                        amount: -left,
                        at,
                        takes: vec![(id, left)],
                        description: expiry_description(&description),
                    });
                }
            }
        }
    }

    for (id, left) in &mut plan.matured {
        *left = lots.get(id).map(|lot| lot.remaining);
    }
    for (id, lot) in &lots {
        match lot.stored {
            Some(before) if before != lot.remaining => plan.lots.push((*id, before, lot.remaining)),
            Some(_) => {}
            None => {
                if let Some(expires_at) = lot.expires_at.filter(|at| *at > now)
                    && lot.remaining > 0
                {
                    plan.open.push((expires_at, lot.remaining));
                }
            }
        }
    }
    plan
}

/// Takes `amount` from the known lots: from `first` before any other, then soonest expiry
/// first (no expiry last), then oldest, as spending does. Returns (lot, amount) taken; less
/// than asked when the lots hold less.
fn take(lots: &mut BTreeMap<i64, Lot>, amount: i64, first: Option<i64>) -> Vec<(i64, i64)> {
    let mut order: Vec<(bool, Option<DateTime<Utc>>, i64)> = lots
        .iter()
        .filter(|(id, lot)| lot.remaining > 0 && Some(**id) != first)
        .map(|(id, lot)| (lot.expires_at.is_none(), lot.expires_at, *id))
        .collect();
    order.sort_unstable();
    let mut left = amount;
    let mut taken = Vec::new();
    for id in first.into_iter().chain(order.into_iter().map(|(_, _, id)| id)) {
        if left == 0 {
            break;
        }
        let Some(lot) = lots.get_mut(&id) else { continue };
        let part = lot.remaining.min(left);
        if part > 0 {
            lot.remaining -= part;
            left -= part;
            taken.push((id, part));
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use entity::enums::Unit;

    const UNIT: i64 = 1_000_000;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn day(n: i64) -> DateTime<Utc> {
        t0() + Duration::days(n)
    }

    fn entry(id: i64, amount: i64, status: EntryStatus) -> ledger_entry::Model {
        ledger_entry::Model {
            id,
            account_id: 1,
            unit: Unit::Credit,
            amount,
            remaining: None,
            kind: EntryKind::Reward,
            status,
            description: format!("entry {id}"),
            event_id: None,
            referral_id: None,
            rule_id: None,
            occurrence: None,
            claim_id: None,
            available_at: None,
            expires_at: None,
            created_at: t0(),
            rule_snapshot: None,
            reverses_entry_id: None,
        }
    }

    fn held(id: i64, amount: i64, until: i64, expires: Option<i64>) -> ledger_entry::Model {
        ledger_entry::Model {
            available_at: Some(day(until)),
            expires_at: expires.map(day),
            ..entry(id, amount, EntryStatus::Pending)
        }
    }

    fn lot(id: i64, left: i64, expires: i64) -> ledger_entry::Model {
        ledger_entry::Model {
            remaining: Some(left),
            expires_at: Some(day(expires)),
            ..entry(id, 20 * UNIT, EntryStatus::Posted)
        }
    }

    fn figures(available: i64, pending: i64, debt: i64, lifetime: i64) -> Figures {
        Figures {
            available,
            pending,
            debt,
            lifetime_earned: lifetime,
        }
    }

    #[test]
    fn nothing_due_changes_nothing() {
        let start = figures(5 * UNIT, 20 * UNIT, 0, 5 * UNIT);
        let plan = settle(start, &[held(1, 20 * UNIT, 30, None)], day(29));
        assert_eq!(plan.figures, start);
        assert!(plan.matured.is_empty() && plan.written.is_empty() && plan.lots.is_empty());
    }

    #[test]
    fn a_hold_that_ended_is_available_and_earned() {
        let start = figures(0, 20 * UNIT, 0, 0);
        let plan = settle(start, &[held(1, 20 * UNIT, 30, Some(210))], day(30));
        assert_eq!(plan.figures, figures(20 * UNIT, 0, 0, 20 * UNIT));
        assert_eq!(plan.matured, vec![(1, Some(20 * UNIT))]);
        assert_eq!(plan.open, vec![(day(210), 20 * UNIT)]);
        assert!(plan.written.is_empty());
    }

    #[test]
    fn a_lot_past_its_expiry_leaves_with_what_it_had() {
        let start = figures(12 * UNIT, 0, 0, 20 * UNIT);
        let plan = settle(start, &[lot(7, 12 * UNIT, 180)], day(181));
        assert_eq!(plan.figures, figures(0, 0, 0, 20 * UNIT));
        assert_eq!(plan.lots, vec![(7, 12 * UNIT, 0)]);
        assert_eq!(plan.expired(), 1);
        let expiry = &plan.written[0];
        assert_eq!(
            (expiry.kind, expiry.amount, expiry.at, expiry.takes.clone()),
            (EntryKind::Expiry, -12 * UNIT, day(180), vec![(7, 12 * UNIT)])
        );
    }

    #[test]
    fn a_hold_that_ends_repays_debt_before_its_own_lot_expires() {
        // 5.00 owed; 20.00 held until day 30, expiring on day 60; settled only on day 90.
        let start = figures(0, 20 * UNIT, 5 * UNIT, 0);
        let plan = settle(start, &[held(1, 20 * UNIT, 30, Some(60))], day(90));
        let kinds: Vec<_> = plan.written.iter().map(|w| (w.kind, w.amount, w.at)).collect();
        assert_eq!(
            kinds,
            vec![
                (EntryKind::Debt, -5 * UNIT, day(30)),
                (EntryKind::Expiry, -15 * UNIT, day(60)),
            ]
        );
        assert_eq!(plan.figures, figures(0, 0, 0, 20 * UNIT));
        assert_eq!(plan.matured, vec![(1, Some(0))]);
        assert!(plan.open.is_empty());
    }

    #[test]
    fn debt_larger_than_a_hold_stays_owed() {
        let start = figures(0, 20 * UNIT, 25 * UNIT, 0);
        let plan = settle(start, &[held(1, 20 * UNIT, 30, None)], day(30));
        assert_eq!(plan.figures, figures(0, 0, 5 * UNIT, 20 * UNIT));
        assert_eq!(plan.written[0].takes, vec![(1, 20 * UNIT)]);
    }

    #[test]
    fn a_held_reversal_takes_from_its_reward_when_both_mature() {
        let reversal = ledger_entry::Model {
            kind: EntryKind::Reversal,
            reverses_entry_id: Some(1),
            ..held(2, -8 * UNIT, 30, None)
        };
        let start = figures(3 * UNIT, 12 * UNIT, 0, 3 * UNIT);
        // A lot without expiry (id 0) is not in `due`; the reversal takes from its reward only.
        let plan = settle(start, &[reversal, held(1, 20 * UNIT, 30, Some(200))], day(31));
        assert_eq!(plan.figures, figures(15 * UNIT, 0, 0, 15 * UNIT));
        assert_eq!(plan.matured, vec![(1, Some(12 * UNIT)), (2, None)]);
        assert_eq!(plan.takes, vec![(2, 1, 8 * UNIT)]);
        assert_eq!(plan.open, vec![(day(200), 12 * UNIT)]);
    }

    #[test]
    fn holds_mature_in_the_order_they_end() {
        // Two holds, debt 25: the first (day 10) pays 20, the second (day 20) pays 5.
        let start = figures(0, 40 * UNIT, 25 * UNIT, 0);
        let plan = settle(
            start,
            &[held(2, 20 * UNIT, 20, None), held(1, 20 * UNIT, 10, None)],
            day(21),
        );
        let repaid: Vec<_> = plan.written.iter().map(|w| (w.amount, w.at, w.takes.clone())).collect();
        assert_eq!(
            repaid,
            vec![
                (-20 * UNIT, day(10), vec![(1, 20 * UNIT)]),
                (-5 * UNIT, day(20), vec![(2, 5 * UNIT)]),
            ]
        );
        assert_eq!(plan.figures, figures(15 * UNIT, 0, 0, 40 * UNIT));
    }

    #[test]
    fn lots_are_taken_soonest_expiry_first() {
        let mut lots = BTreeMap::new();
        for (id, expires) in [(1, None), (2, Some(day(50))), (3, Some(day(40)))] {
            lots.insert(
                id,
                Lot {
                    remaining: 10,
                    expires_at: expires,
                    stored: None,
                },
            );
        }
        assert_eq!(take(&mut lots, 25, None), vec![(3, 10), (2, 10), (1, 5)]);
        assert_eq!(take(&mut lots, 10, Some(1)), vec![(1, 5)]);
    }
}
