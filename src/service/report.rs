//! The program's report for a period: how many accounts signed up, referrals were accepted and
//! qualified, links were clicked; what rewards granted, reversals took back and expiry took
//! away, per unit; and what is outstanding now (available and pending). Each figure is one
//! aggregate statement over the period's rows (seven in all, whatever the data).

use crate::amount::Amount;
use crate::error::AppResult;
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus, ReferralStatus, Unit};
use entity::{account, balance, click, ledger_entry, referral};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

/// The units, in the order reports list them.
pub const UNITS: [Unit; 3] = [Unit::Points, Unit::Credit, Unit::Cash];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub accounts: i64,
    /// Referrals accepted (pending or qualified) that began in the period.
    pub referrals: i64,
    /// Referrals that qualified in the period.
    pub qualified: i64,
    pub clicks: i64,
    /// Rewards granted in the period (held or posted, not voided), per unit.
    pub granted: [Amount; 3],
    /// What reversals took back in the period, per unit (positive).
    pub reversed: [Amount; 3],
    /// What expired in the period, per unit (positive).
    pub expired: [Amount; 3],
    /// Available and pending in every balance now, per unit: what the program still owes
    /// (lots that expired before now count as expired even where the background task has not
    /// written their expiry yet).
    pub outstanding: [Amount; 3],
}

/// [from, to) on `column`; an open end is unbounded.
fn within(column: Expr, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Condition {
    let mut condition = Condition::all();
    if let Some(from) = from {
        condition = condition.add(column.clone().gte(from));
    }
    if let Some(to) = to {
        condition = condition.add(column.lt(to));
    }
    condition
}

fn count() -> Expr {
    Func::cast_as(Func::count(Expr::val(1)), "BIGINT").into()
}

fn sum(column: impl Into<Expr>) -> Expr {
    Func::cast_as(Func::sum(column.into()), "BIGINT").into()
}

pub async fn program_report(
    db: &impl ConnectionTrait,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> AppResult<Report> {
    let accounts: Option<i64> = account::Entity::find()
        .select_only()
        .column_as(count(), "n")
        .filter(within(Expr::col(account::Column::CreatedAt), from, to))
        .into_tuple()
        .one(db)
        .await?;
    let referrals: Option<i64> = referral::Entity::find()
        .select_only()
        .column_as(count(), "n")
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected))
        .filter(within(Expr::col(referral::Column::CreatedAt), from, to))
        .into_tuple()
        .one(db)
        .await?;
    let qualified: Option<i64> = referral::Entity::find()
        .select_only()
        .column_as(count(), "n")
        .filter(referral::Column::Status.eq(ReferralStatus::Qualified))
        .filter(within(Expr::col(referral::Column::QualifiedAt), from, to))
        .into_tuple()
        .one(db)
        .await?;
    let clicks: Option<i64> = click::Entity::find()
        .select_only()
        .column_as(count(), "n")
        .filter(within(Expr::col(click::Column::CreatedAt), from, to))
        .into_tuple()
        .one(db)
        .await?;
    let moved: Vec<(EntryKind, Unit, Option<i64>)> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::Kind)
        .column(ledger_entry::Column::Unit)
        .column_as(sum(Expr::col(ledger_entry::Column::Amount)), "total")
        .filter(ledger_entry::Column::Kind.is_in([EntryKind::Reward, EntryKind::Reversal, EntryKind::Expiry]))
        .filter(ledger_entry::Column::Status.ne(EntryStatus::Voided))
        .filter(within(Expr::col(ledger_entry::Column::CreatedAt), from, to))
        .group_by(ledger_entry::Column::Kind)
        .group_by(ledger_entry::Column::Unit)
        .into_tuple()
        .all(db)
        .await?;
    let owed: Vec<(Unit, Option<i64>)> = balance::Entity::find()
        .select_only()
        .column(balance::Column::Unit)
        .column_as(
            sum(Expr::col(balance::Column::Available).add(Expr::col(balance::Column::Pending))),
            "total",
        )
        .group_by(balance::Column::Unit)
        .into_tuple()
        .all(db)
        .await?;
    let lapsed: Vec<(Unit, Option<i64>)> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::Unit)
        .column_as(sum(Expr::col(ledger_entry::Column::Remaining)), "total")
        .filter(ledger_entry::Column::Status.eq(EntryStatus::Posted))
        .filter(ledger_entry::Column::Remaining.gt(0))
        .filter(ledger_entry::Column::ExpiresAt.lte(now))
        .group_by(ledger_entry::Column::Unit)
        .into_tuple()
        .all(db)
        .await?;

    let mut report = Report {
        accounts: accounts.unwrap_or(0),
        referrals: referrals.unwrap_or(0),
        qualified: qualified.unwrap_or(0),
        clicks: clicks.unwrap_or(0),
        granted: [Amount::ZERO; 3],
        reversed: [Amount::ZERO; 3],
        expired: [Amount::ZERO; 3],
        outstanding: [Amount::ZERO; 3],
    };
    let slot = |unit: Unit| UNITS.iter().position(|u| *u == unit).unwrap_or(0);
    for (kind, unit, total) in moved {
        let total = total.unwrap_or(0);
        match kind {
            EntryKind::Reward => report.granted[slot(unit)] = Amount::from_micros(total),
            EntryKind::Reversal => report.reversed[slot(unit)] = Amount::from_micros(-total),
            _ => report.expired[slot(unit)] = Amount::from_micros(-total),
        }
    }
    for (unit, total) in owed {
        report.outstanding[slot(unit)] = Amount::from_micros(total.unwrap_or(0));
    }
    for (unit, total) in lapsed {
        let owed = report.outstanding[slot(unit)].micros() - total.unwrap_or(0);
        report.outstanding[slot(unit)] = Amount::from_micros(Ord::max(owed, 0));
    }
    Ok(report)
}
