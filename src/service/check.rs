//! `referral-server check`: verifies, on the live data, every invariant the ledger promises.
//! Each check is one SQL query that returns the rows breaking it, so a violation names what is
//! wrong. Tests run it after every concurrent scenario.
//!
//! None depends on the clock: a hold whose time has passed may still be PENDING, a lot past
//! its expiry may still hold something, until the balance is next settled; reads account for
//! that (see `ledger::balances_of`), and the checks hold in either state.

use crate::error::AppResult;
use sea_orm::{ConnectionTrait, Statement};

/// One invariant and the rows that break it (at most `SHOWN` of them, described).
#[derive(Debug)]
pub struct Finding {
    pub invariant: &'static str,
    pub violations: Vec<String>,
}

pub const SHOWN: usize = 20;

/// (what must hold, a query returning one text column per violating row)
const CHECKS: &[(&str, &str)] = &[
    (
        "each balance's available equals the sum of its posted entries",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': available ' || b.available \
         || ', entries ' || COALESCE(SUM(e.amount), 0) \
         FROM balances b LEFT JOIN ledger_entries e \
           ON e.account_id = b.account_id AND e.unit = b.unit AND e.status = 'POSTED' \
         GROUP BY b.account_id, b.unit, b.available \
         HAVING b.available <> COALESCE(SUM(e.amount), 0)",
    ),
    (
        "each balance's available equals what its lots have left",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': available ' || b.available \
         || ', lots ' || COALESCE(SUM(e.remaining), 0) \
         FROM balances b LEFT JOIN ledger_entries e \
           ON e.account_id = b.account_id AND e.unit = b.unit AND e.status = 'POSTED' \
          AND e.remaining IS NOT NULL \
         GROUP BY b.account_id, b.unit, b.available \
         HAVING b.available <> COALESCE(SUM(e.remaining), 0)",
    ),
    (
        "each balance's lifetime earned equals its posted rewards, net of posted reversals",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': lifetime ' || b.lifetime_earned \
         || ', rewards less reversals ' || COALESCE(SUM(e.amount), 0) \
         FROM balances b LEFT JOIN ledger_entries e \
           ON e.account_id = b.account_id AND e.unit = b.unit AND e.status = 'POSTED' \
          AND e.kind IN ('REWARD', 'REVERSAL') \
         GROUP BY b.account_id, b.unit, b.lifetime_earned \
         HAVING b.lifetime_earned <> COALESCE(SUM(e.amount), 0)",
    ),
    (
        "each balance's pending equals the sum of its pending entries",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': pending ' || b.pending \
         || ', entries ' || COALESCE(SUM(e.amount), 0) \
         FROM balances b LEFT JOIN ledger_entries e \
           ON e.account_id = b.account_id AND e.unit = b.unit AND e.status = 'PENDING' \
         GROUP BY b.account_id, b.unit, b.pending \
         HAVING b.pending <> COALESCE(SUM(e.amount), 0)",
    ),
    (
        "no balance is negative",
        "SELECT 'account ' || account_id || ' ' || unit || ': available ' || available \
         || ', pending ' || pending || ', debt ' || debt FROM balances \
         WHERE available < 0 OR pending < 0 OR debt < 0",
    ),
    (
        "each balance's debt equals the sum of its posted DEBT entries (owed less repaid)",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': debt ' || b.debt \
         || ', entries ' || COALESCE(SUM(e.amount), 0) \
         FROM balances b LEFT JOIN ledger_entries e \
           ON e.account_id = b.account_id AND e.unit = b.unit AND e.status = 'POSTED' AND e.kind = 'DEBT' \
         GROUP BY b.account_id, b.unit, b.debt \
         HAVING b.debt <> COALESCE(SUM(e.amount), 0)",
    ),
    (
        "a balance in debt has nothing available (later earnings pay debt first)",
        "SELECT 'account ' || account_id || ' ' || unit || ': debt ' || debt || ', available ' || available \
         FROM balances WHERE debt > 0 AND available > 0",
    ),
    (
        "each lot's remaining lies between 0 and its amount",
        "SELECT 'entry ' || id || ': amount ' || amount || ', remaining ' || remaining \
         FROM ledger_entries WHERE remaining IS NOT NULL AND (remaining < 0 OR remaining > amount)",
    ),
    (
        "each lot's remaining is its amount less what entries took from it, plus what refunds gave back",
        "SELECT 'lot ' || l.id || ': amount ' || l.amount || ', remaining ' || l.remaining \
         || ', moved ' || COALESCE(SUM(CASE WHEN m.amount < 0 THEN -a.amount ELSE a.amount END), 0) \
         FROM ledger_entries l \
         LEFT JOIN lot_allocations a ON a.lot_entry_id = l.id \
         LEFT JOIN ledger_entries m ON m.id = a.debit_entry_id \
         WHERE l.remaining IS NOT NULL \
         GROUP BY l.id, l.amount, l.remaining \
         HAVING l.remaining <> l.amount + COALESCE(SUM(CASE WHEN m.amount < 0 THEN -a.amount ELSE a.amount END), 0)",
    ),
    (
        "only positive posted entries are lots, and every posted reward is one",
        "SELECT 'entry ' || id || ': ' || kind || ' ' || status || ' ' || amount || ', remaining ' \
         || COALESCE(CAST(remaining AS TEXT), 'none') FROM ledger_entries \
         WHERE (remaining IS NOT NULL AND (status <> 'POSTED' OR amount < 0)) \
            OR (remaining IS NULL AND status = 'POSTED' AND kind = 'REWARD')",
    ),
    (
        "each EXPIRY entry takes what its lot had left, from that one lot, once its expiry passed",
        "SELECT 'expiry ' || x.id || ': amount ' || x.amount || ', taken ' || COALESCE(SUM(a.amount), 0) \
         || ' from ' || COUNT(a.id) || ' lots' \
         FROM ledger_entries x \
         LEFT JOIN lot_allocations a ON a.debit_entry_id = x.id \
         LEFT JOIN ledger_entries l ON l.id = a.lot_entry_id \
         WHERE x.kind = 'EXPIRY' \
         GROUP BY x.id, x.amount, x.status \
         HAVING x.status <> 'POSTED' OR x.amount >= 0 OR COUNT(a.id) <> 1 \
             OR COALESCE(SUM(a.amount), 0) <> -x.amount \
             OR COUNT(l.expires_at) <> 1 OR MAX(l.expires_at) > MAX(x.created_at)",
    ),
    (
        "a lot that expired has nothing left",
        // From the EXPIRY entries to their lots (allocations are indexed by debit): asked from
        // every lot instead, SQLite searched the allocations once per open lot, for hours at 10^6.
        "SELECT DISTINCT 'lot ' || l.id || ': expired, remaining ' || l.remaining \
         FROM ledger_entries x \
         JOIN lot_allocations a ON a.debit_entry_id = x.id \
         JOIN ledger_entries l ON l.id = a.lot_entry_id \
         WHERE x.kind = 'EXPIRY' AND l.remaining > 0",
    ),
    (
        "a REVERSAL takes back a reward of its own balance, and never more than the reward",
        "SELECT 'reward ' || COALESCE(CAST(r.id AS TEXT), 'missing') || ': reversals of entries ' \
         || COALESCE(CAST(MIN(v.reverses_entry_id) AS TEXT), 'none') || ' take back ' || -SUM(v.amount) || ' of ' || COALESCE(MAX(r.amount), 0) \
         FROM ledger_entries v \
         LEFT JOIN ledger_entries r ON r.id = v.reverses_entry_id AND r.kind = 'REWARD' \
          AND r.account_id = v.account_id AND r.unit = v.unit \
         WHERE v.kind = 'REVERSAL' AND v.status <> 'VOIDED' \
         GROUP BY v.reverses_entry_id, r.id \
         HAVING r.id IS NULL OR MIN(v.amount) >= 0 OR -SUM(v.amount) > MAX(r.amount)",
    ),
    (
        "a held REVERSAL waits with its held reward, until the same time",
        "SELECT 'reversal ' || v.id || ' of entry ' || v.reverses_entry_id || ': ' || COALESCE(r.status, 'missing') \
         FROM ledger_entries v LEFT JOIN ledger_entries r ON r.id = v.reverses_entry_id \
         WHERE v.kind = 'REVERSAL' AND v.status = 'PENDING' \
           AND (r.id IS NULL OR r.status <> 'PENDING' OR r.available_at IS NULL \
                OR v.available_at IS NULL OR r.available_at <> v.available_at)",
    ),
    (
        "no balance's next due time is later than a hold's end or an open lot's expiry",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': next due ' \
         || COALESCE(CAST(b.next_due_at AS TEXT), 'never') || ', entry ' || e.id || ' due ' \
         || CAST(COALESCE(e.available_at, e.expires_at) AS TEXT) \
         FROM balances b JOIN ledger_entries e ON e.account_id = b.account_id AND e.unit = b.unit \
         WHERE ((e.status = 'PENDING' AND e.available_at IS NOT NULL \
                 AND (b.next_due_at IS NULL OR e.available_at < b.next_due_at)) \
             OR (e.status = 'POSTED' AND e.remaining > 0 AND e.expires_at IS NOT NULL \
                 AND (b.next_due_at IS NULL OR e.expires_at < b.next_due_at)))",
    ),
    (
        "one reward per rule, referral and occurrence",
        "SELECT 'rule ' || rule_id || ', referral ' || referral_id || ', occurrence ' || occurrence \
         || ': ' || COUNT(*) || ' entries' FROM ledger_entries WHERE rule_id IS NOT NULL \
         GROUP BY rule_id, referral_id, occurrence HAVING COUNT(*) > 1",
    ),
    (
        "one event per eventId",
        "SELECT 'eventId ' || event_id || ': ' || COUNT(*) || ' events' FROM events \
         GROUP BY event_id HAVING COUNT(*) > 1",
    ),
    (
        "each account's count of paid invoices is the number of its recorded invoices",
        "SELECT 'account ' || a.id || ': paid_invoices ' || a.paid_invoices || ', invoices ' || COUNT(e.id) \
         FROM accounts a LEFT JOIN events e ON e.account_id = a.id AND e.kind = 'INVOICE_PAID' \
         GROUP BY a.id, a.paid_invoices HAVING a.paid_invoices <> COUNT(e.id)",
    ),
    (
        "one accepted referral per referee",
        "SELECT 'referee ' || referee_id || ': ' || COUNT(*) || ' referrals' FROM referrals \
         WHERE status <> 'REJECTED' GROUP BY referee_id HAVING COUNT(*) > 1",
    ),
    (
        "each claim is paid by exactly one debit of its points",
        "SELECT 'claim ' || c.id || ': points ' || c.points || ', debited ' || COALESCE(-SUM(e.amount), 0) \
         FROM claims c LEFT JOIN ledger_entries e ON e.claim_id = c.id AND e.kind = 'CLAIM' \
         GROUP BY c.id, c.points HAVING COUNT(e.id) <> 1 OR COALESCE(-SUM(e.amount), 0) <> c.points",
    ),
    (
        "each withdrawal is paid by one posted CASH debit of its amount, and a rejected one given back once",
        "SELECT 'withdrawal ' || w.id || ': ' || w.status || ' ' || w.amount || ', debit ' \
         || COALESCE(CAST(d.amount AS TEXT), 'missing') || ', returned ' || COALESCE(CAST(r.amount AS TEXT), 'none') \
         FROM withdrawals w \
         LEFT JOIN ledger_entries d ON d.id = w.entry_id AND d.kind = 'WITHDRAWAL' \
          AND d.account_id = w.account_id AND d.unit = 'CASH' AND d.status = 'POSTED' \
         LEFT JOIN ledger_entries r ON r.id = w.return_entry_id AND r.kind = 'WITHDRAWAL_RETURNED' \
          AND r.account_id = w.account_id AND r.unit = 'CASH' AND r.status = 'POSTED' \
         WHERE d.id IS NULL OR d.amount <> -w.amount \
            OR (w.status = 'REJECTED' AND (r.id IS NULL OR r.amount <> w.amount)) \
            OR (w.status <> 'REJECTED' AND w.return_entry_id IS NOT NULL)",
    ),
    (
        "each WITHDRAWAL and WITHDRAWAL_RETURNED entry belongs to exactly one withdrawal",
        "SELECT 'entry ' || e.id || ': ' || e.kind || ' of ' || COUNT(w.id) || ' withdrawals' \
         FROM ledger_entries e \
         LEFT JOIN withdrawals w ON (e.kind = 'WITHDRAWAL' AND w.entry_id = e.id) \
           OR (e.kind = 'WITHDRAWAL_RETURNED' AND w.return_entry_id = e.id) \
         WHERE e.kind IN ('WITHDRAWAL', 'WITHDRAWAL_RETURNED') \
         GROUP BY e.id, e.kind HAVING COUNT(w.id) <> 1",
    ),
    // (cash × rate / 10⁶ is computed as whole units × rate plus the fraction × rate / 10⁶: the
    // same integer, without the product overflowing 64 bits.)
    (
        "each commission conversion is one posted CASH debit of its cash and one CREDIT credit of \
         its cash times its rate, rounded down to the cent",
        "SELECT 'conversion ' || c.id || ': cash ' || c.cash_amount || ' at ' || c.rate || ' for credit ' \
         || c.credit_amount || ', debit ' || COALESCE(CAST(d.amount AS TEXT), 'missing') \
         || ', credit ' || COALESCE(CAST(k.amount AS TEXT), 'missing') \
         FROM commission_conversions c \
         LEFT JOIN ledger_entries d ON d.id = c.cash_entry_id AND d.kind = 'COMMISSION_CONVERTED' \
          AND d.account_id = c.account_id AND d.unit = 'CASH' AND d.status = 'POSTED' \
         LEFT JOIN ledger_entries k ON k.id = c.credit_entry_id AND k.kind = 'COMMISSION_CONVERTED' \
          AND k.account_id = c.account_id AND k.unit = 'CREDIT' AND k.status = 'POSTED' \
         WHERE d.id IS NULL OR k.id IS NULL OR d.amount <> -c.cash_amount OR k.amount <> c.credit_amount \
            OR c.credit_amount <> ((c.cash_amount / 1000000) * c.rate + (c.cash_amount % 1000000) * c.rate / 1000000) \
             - ((c.cash_amount / 1000000) * c.rate + (c.cash_amount % 1000000) * c.rate / 1000000) % 10000",
    ),
    (
        "each COMMISSION_CONVERTED entry belongs to exactly one conversion",
        "SELECT 'entry ' || e.id || ': ' || e.kind || ' of ' || COUNT(c.id) || ' conversions' \
         FROM ledger_entries e \
         LEFT JOIN commission_conversions c ON c.cash_entry_id = e.id OR c.credit_entry_id = e.id \
         WHERE e.kind = 'COMMISSION_CONVERTED' \
         GROUP BY e.id, e.kind HAVING COUNT(c.id) <> 1",
    ),
    (
        "each webhook delivery is one event's for one endpoint that wants it, and a delivered one \
         got a 2xx answer",
        "SELECT 'delivery ' || d.id || ': ' || d.status || ', event ' || d.event_id \
         || ', answer ' || COALESCE(CAST(d.last_status_code AS TEXT), 'none') \
         FROM webhook_deliveries d \
         LEFT JOIN outbox_events o ON o.id = d.event_id \
         LEFT JOIN webhook_endpoints w ON w.id = d.endpoint_id \
         WHERE o.id IS NULL OR o.position IS NULL OR w.id IS NULL \
            OR (w.event_types <> '' AND ',' || w.event_types || ',' NOT LIKE '%,' || o.event_type || ',%') \
            OR (d.status = 'DELIVERED' AND (d.delivered_at IS NULL OR d.last_status_code IS NULL \
                OR d.last_status_code < 200 OR d.last_status_code > 299))",
    ),
    // 10: `webhooks::schedule::MAX_ATTEMPTS` (a test holds them equal).
    (
        "a failed webhook delivery made every attempt",
        "SELECT 'delivery ' || id || ': failed after ' || attempts || ' attempts' \
         FROM webhook_deliveries WHERE status = 'FAILED' AND attempts < 10",
    ),
    (
        "the feed's positions never run ahead of the sequence",
        "SELECT 'event ' || o.id || ': position ' || o.position || ', sequence at ' || s.last_position \
         FROM outbox_events o CROSS JOIN outbox_sequence s WHERE o.position > s.last_position",
    ),
];

pub async fn run(db: &impl ConnectionTrait) -> AppResult<Vec<Finding>> {
    let backend = db.get_database_backend();
    let mut findings = Vec::with_capacity(CHECKS.len());
    for (invariant, sql) in CHECKS {
        let sql = format!("{sql} LIMIT {}", SHOWN + 1);
        let rows = db.query_all_raw(Statement::from_string(backend, sql)).await?;
        let violations = rows
            .iter()
            .map(|row| {
                row.try_get_by_index::<String>(0)
                    .unwrap_or_else(|err| format!("unreadable row: {err}"))
            })
            .collect();
        findings.push(Finding { invariant, violations });
    }
    Ok(findings)
}

/// Whether every invariant holds.
pub fn all_hold(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.violations.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_failed_delivery_check_counts_every_attempt() {
        assert!(super::CHECKS.iter().any(|(_, sql)| sql.contains(&format!(
            "attempts < {}",
            crate::service::webhooks::schedule::MAX_ATTEMPTS
        ))));
    }
}
