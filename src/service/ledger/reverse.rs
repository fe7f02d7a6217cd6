//! Taking a reward back (a refund of what earned it, a correction, a disqualification).
//!
//! - Still PENDING, all of what is left of it: the reward is voided, with the held reversals
//!   of earlier partial take-backs.
//! - Still PENDING, a part: the reward is left as it was and a PENDING `REVERSAL` entry of the
//!   part (negative, held until the same time, pointing at the reward) is added beside it;
//!   `pending` counts both, so it drops by the part. When the hold ends both mature together
//!   and the reversal takes from the reward's lot. The record shows the reward as granted and
//!   each take-back with the event that caused it; no entry's amount is ever edited.
//! - POSTED: a negative `REVERSAL` entry of the part, never an edit of the reward. It takes
//!   first from that reward's lot, then from the other lots in the ledger's order. What the
//!   available balance cannot cover is recorded by a positive `DEBT` entry (owed; not a lot),
//!   so that `available` still equals the sum of posted entries and never goes below zero;
//!   `balance.debt` rises by it, and later earnings repay it first with negative `DEBT`
//!   entries (`lots::repay_debt`). The sum of an account's DEBT entries is its debt.
//!
//! `lifetime_earned` counts rewards net of what was taken back: a posted reversal lowers it by
//! its whole amount (covered or owed), a held one when it matures.

use super::{SpendOn, expect_one_row, lots, lower_pending, posted_entry, settle_account};
use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus};
use entity::{balance, ledger_entry};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

/// What to take back of one reward entry, and why.
#[derive(Debug, Clone)]
pub struct TakeBack<'a> {
    pub entry: &'a ledger_entry::Model,
    /// How much of the entry's amount to take back (all of it, or a refund's share: see
    /// `share_of`). More than is left of the reward takes what is left.
    pub amount: Amount,
    pub description: String,
    /// The event that takes it back (a refund, a correction), so its replays find the entries.
    pub event_id: Option<i64>,
}

/// The share of `amount` that `part` of `whole` stands for (a refund of 40.00 of a 100.00
/// purchase takes back 40 % of the reward it earned), rounded down to the millionth: toward
/// the customer, who never loses a fraction more than the refund's share. A part of the whole
/// or more is all of it.
pub fn share_of(amount: Amount, part: Amount, whole: Amount) -> Amount {
    if whole.micros() <= 0 || part >= whole {
        return amount;
    }
    if part.micros() <= 0 || amount.micros() <= 0 {
        return Amount::ZERO;
    }
    let share = i128::from(amount.micros()) * i128::from(part.micros()) / i128::from(whole.micros());
    // Less than `amount`, so it fits.
    Amount::from_micros(i64::try_from(share).unwrap_or(amount.micros()))
}

/// Takes back (part of) a reward, in the caller's transaction, after settling the balance (a
/// hold that has ended is posted, and so reversed, not voided). Returns the entries written or
/// voided; none when nothing is left to take back (the reward was voided or fully reversed
/// already).
pub async fn take_back(
    db: &impl ConnectionTrait,
    take: TakeBack<'_>,
    now: DateTime<Utc>,
) -> AppResult<Vec<ledger_entry::Model>> {
    let asked = take.amount.micros();
    if asked <= 0 {
        return Err(AppError::internal(anyhow::anyhow!(
            "taking back {} of entry {} is not positive",
            take.amount,
            take.entry.id
        )));
    }
    let balance = settle_account(db, take.entry.account_id, take.entry.unit, now).await?;
    // Read again under the balance's lock: settling may have posted it, a concurrent
    // take-back may have voided it.
    let reward = ledger_entry::Entity::find_by_id(take.entry.id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("entry {} not found", take.entry.id)))?;
    if reward.kind != EntryKind::Reward || reward.amount <= 0 {
        return Err(AppError::internal(anyhow::anyhow!(
            "entry {} is not a reward to take back",
            reward.id
        )));
    }
    let earlier = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::ReversesEntryId.eq(reward.id))
        .filter(ledger_entry::Column::Status.ne(EntryStatus::Voided))
        .all(db)
        .await?;
    let left = reward.amount + earlier.iter().map(|e| e.amount).sum::<i64>();
    let amount = std::cmp::min(asked, left);
    if amount <= 0 || reward.status == EntryStatus::Voided {
        return Ok(Vec::new());
    }
    let reversal = |status: EntryStatus| ledger_entry::ActiveModel {
        status: Set(status),
        event_id: Set(take.event_id),
        referral_id: Set(reward.referral_id),
        reverses_entry_id: Set(Some(reward.id)),
        available_at: Set(if status == EntryStatus::Pending {
            reward.available_at
        } else {
            None
        }),
        ..posted_entry(
            reward.account_id,
            reward.unit,
            -amount,
            EntryKind::Reversal,
            take.description.clone(),
            None,
            now,
        )
    };
    match reward.status {
        EntryStatus::Pending if amount == left => {
            let voided = ledger_entry::Entity::update_many()
                .col_expr(ledger_entry::Column::Status, Expr::value(EntryStatus::Voided))
                .filter(
                    ledger_entry::Column::Id
                        .eq(reward.id)
                        .or(ledger_entry::Column::ReversesEntryId.eq(reward.id)),
                )
                .filter(ledger_entry::Column::Status.eq(EntryStatus::Pending))
                .exec_with_returning(db)
                .await?;
            lower_pending(
                db,
                reward.account_id,
                reward.unit,
                voided.iter().map(|e| e.amount).sum(),
            )
            .await?;
            let mut voided = voided;
            voided.sort_by_key(|e| e.id);
            Ok(voided)
        }
        EntryStatus::Pending => {
            let entry = reversal(EntryStatus::Pending).insert(db).await?;
            lower_pending(db, reward.account_id, reward.unit, amount).await?;
            Ok(vec![entry])
        }
        _ => {
            let entry = reversal(EntryStatus::Posted).insert(db).await?;
            let covered = std::cmp::min(amount, balance.available);
            if covered > 0 {
                lots::consume(db, &entry, covered, Some(reward.id), SpendOn::Anything, now).await?;
            }
            let owed = amount - covered;
            let mut written = vec![entry];
            if owed > 0 {
                let debt = posted_entry(
                    reward.account_id,
                    reward.unit,
                    owed,
                    EntryKind::Debt,
                    super::plan::OWED.to_owned(),
                    None,
                    now,
                )
                .insert(db)
                .await?;
                written.push(debt);
            }
            let lowered = balance::Entity::update_many()
                .col_expr(
                    balance::Column::Available,
                    Expr::col(balance::Column::Available).sub(covered),
                )
                .col_expr(balance::Column::Debt, Expr::col(balance::Column::Debt).add(owed))
                .col_expr(
                    balance::Column::LifetimeEarned,
                    Expr::col(balance::Column::LifetimeEarned).sub(amount),
                )
                .filter(balance::Column::AccountId.eq(reward.account_id))
                .filter(balance::Column::Unit.eq(reward.unit))
                .exec(db)
                .await?;
            expect_one_row(lowered.rows_affected, "balance row")?;
            Ok(written)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse(text).unwrap_or_default()
    }

    #[test]
    fn a_share_is_proportional_and_rounds_toward_the_customer() {
        // 40 % of 20.00.
        assert_eq!(share_of(amount("20"), amount("40"), amount("100")), amount("8"));
        // A third of 10.00 is 3.333333…: the millionth below.
        assert_eq!(share_of(amount("10"), amount("1"), amount("3")), amount("3.333333"));
        // 2/3 of 0.000001: nothing (not a millionth up).
        assert_eq!(share_of(amount("0.000001"), amount("2"), amount("3")), Amount::ZERO);
    }

    #[test]
    fn a_share_of_the_whole_or_more_is_everything_and_of_nothing_is_nothing() {
        assert_eq!(share_of(amount("20"), amount("100"), amount("100")), amount("20"));
        assert_eq!(share_of(amount("20"), amount("150"), amount("100")), amount("20"));
        assert_eq!(share_of(amount("20"), Amount::ZERO, amount("100")), Amount::ZERO);
        assert_eq!(share_of(amount("20"), amount("5"), Amount::ZERO), amount("20"));
    }

    #[test]
    fn a_share_of_large_amounts_does_not_overflow() {
        let big = Amount::from_micros(i64::MAX / 2);
        assert_eq!(
            share_of(
                big,
                Amount::from_micros(i64::MAX / 4),
                Amount::from_micros(i64::MAX / 2)
            )
            .micros(),
            i64::MAX / 4
        );
    }
}
