//! `referral-server check`: verifies, on the live data, every invariant the ledger promises.
//! Each check is one SQL query that returns the rows breaking it, so a violation names what is
//! wrong. Tests run it after every concurrent scenario.

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
        "each balance's lifetime earned equals its posted rewards",
        "SELECT 'account ' || b.account_id || ' ' || b.unit || ': lifetime ' || b.lifetime_earned \
         || ', rewards ' || COALESCE(SUM(e.amount), 0) \
         FROM balances b LEFT JOIN ledger_entries e \
           ON e.account_id = b.account_id AND e.unit = b.unit AND e.status = 'POSTED' \
          AND e.kind = 'REWARD' \
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
         || ', pending ' || pending FROM balances WHERE available < 0 OR pending < 0",
    ),
    (
        "each lot's remaining lies between 0 and its amount",
        "SELECT 'entry ' || id || ': amount ' || amount || ', remaining ' || remaining \
         FROM ledger_entries WHERE remaining IS NOT NULL AND (remaining < 0 OR remaining > amount)",
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
