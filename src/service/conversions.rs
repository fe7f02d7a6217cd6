//! An affiliate converts available cash commission into credit on its own account, at the rate
//! the admin sets (`commission_conversion_rate`: credit for 1 of cash; null: off). One
//! conversion is a `COMMISSION_CONVERTED` CASH debit (at most what is available, like any
//! spend) and a `COMMISSION_CONVERTED` CREDIT credit of the cash times the rate, rounded down to
//! the cent, available at once; both in one transaction. Idempotent under the affiliate's key:
//! a retry answers the first conversion and moves nothing.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::once::{self, Inserted};
use crate::service::withdrawals::ensure_affiliate;
use crate::service::{accounts, audit, ledger, request_hash, required_text, settings};
use chrono::{DateTime, Utc};
use entity::commission_conversion;
use entity::enums::{EntryKind, Unit};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::json;

/// A conversion as it was answered, and whether it is the first request's answer again.
pub struct Converted {
    pub conversion: commission_conversion::Model,
    pub duplicate: bool,
}

/// `cash` converted at `rate` (credit per 1 of cash): rounded down to the cent, so a
/// conversion never gives a fraction of a cent more than the rate says.
pub fn credit_for(cash: Amount, rate: Amount) -> Option<Amount> {
    cash.checked_mul(rate).map(Amount::floor_cent)
}

pub async fn convert(
    db: &DatabaseConnection,
    external_id: &str,
    cash: Amount,
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<Converted> {
    if !cash.is_positive() {
        return Err(AppError::bad_input("amount must be greater than 0"));
    }
    let idempotency_key = idempotency_key
        .map(|key| required_text("idempotencyKey", key, 128))
        .transpose()?;
    let account = accounts::get_by_external_id(db, external_id).await?;
    let key = ConversionKey {
        account_id: account.id,
        key: idempotency_key.as_deref(),
        hash: request_hash(&json!({ "amount": cash.micros() })),
    };
    if let Some(first) = once::stored(db, &key).await? {
        return Ok(Converted {
            conversion: first,
            duplicate: true,
        });
    }

    let txn = begin_write(db).await?;
    let account = accounts::lock(&txn, account.id).await?;
    // A retry of a request still running when it was sent waited for the lock above: it finds
    // the first one's conversion now, rather than a balance that conversion already spent.
    if let Some(first) = once::stored(&txn, &key).await? {
        return Ok(Converted {
            conversion: first,
            duplicate: true,
        });
    }
    ensure_affiliate(&account)?;
    let rate = settings::get(&txn)
        .await?
        .commission_conversion_rate
        .map(Amount::from_micros)
        .ok_or_else(|| AppError::bad_input("the program does not convert commission into credit"))?;
    let credit = credit_for(cash, rate)
        .filter(|credit| credit.is_positive())
        .ok_or_else(|| {
            AppError::bad_input(format!(
                "{cash} converts into less than a cent of credit at the rate of {rate}"
            ))
        })?;
    let description = format!("Commission converted into credit at {rate}");
    let debit = ledger::debit(
        &txn,
        ledger::NewDebit {
            account_id: account.id,
            unit: Unit::Cash,
            amount: cash,
            kind: EntryKind::CommissionConverted,
            description: description.clone(),
            claim_id: None,
        },
        now,
    )
    .await?;
    let credited = ledger::post_credit(
        &txn,
        ledger::NewCredit::outside_rules(
            account.id,
            Unit::Credit,
            credit,
            EntryKind::CommissionConverted,
            description,
        ),
        now,
    )
    .await?
    .ok_or_else(|| AppError::internal(anyhow::anyhow!("a conversion's credit was refused by the ledger")))?;
    let row = commission_conversion::ActiveModel {
        account_id: Set(account.id),
        idempotency_key: Set(idempotency_key.clone()),
        request_hash: Set(key.hash.clone()),
        cash_amount: Set(cash.micros()),
        credit_amount: Set(credit.micros()),
        rate: Set(rate.micros()),
        cash_entry_id: Set(debit.id),
        credit_entry_id: Set(credited.id),
        created_at: Set(now),
        ..Default::default()
    };
    let (conversion, txn) = match once::insert(db, txn, &key, row).await? {
        Inserted::New(conversion, txn) => (conversion, txn),
        Inserted::First(first) => {
            return Ok(Converted {
                conversion: first,
                duplicate: true,
            });
        }
    };
    audit::record(
        &txn,
        &format!("customer:{}", account.external_id),
        "CONVERT_COMMISSION",
        &format!("account:{}", account.external_id),
        json!(null),
        json!({ "cash": cash.to_string(), "credit": credit.to_string(), "rate": rate.to_string() }),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(account = account.id, conversion = conversion.id, %cash, %credit, "commission converted");
    Ok(Converted {
        conversion,
        duplicate: false,
    })
}

/// A conversion under its idempotency key: the affiliate's own (account, key).
struct ConversionKey<'a> {
    account_id: i64,
    key: Option<&'a str>,
    hash: String,
}

impl once::Key for ConversionKey<'_> {
    type Row = commission_conversion::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::columns([
            commission_conversion::Column::AccountId,
            commission_conversion::Column::IdempotencyKey,
        ])
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<commission_conversion::Model>> {
        let Some(key) = self.key else {
            return Ok(None);
        };
        Ok(commission_conversion::Entity::find()
            .filter(commission_conversion::Column::AccountId.eq(self.account_id))
            .filter(commission_conversion::Column::IdempotencyKey.eq(key))
            .one(db)
            .await?)
    }

    fn same_request(&self, row: &commission_conversion::Model) -> bool {
        row.request_hash == self.hash
    }

    fn conflict(&self, _row: &commission_conversion::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "idempotencyKey {} was used for another conversion",
            self.key.unwrap_or_default()
        ))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse(text).expect("an amount")
    }

    #[test]
    fn credit_is_the_cash_times_the_rate_rounded_down_to_the_cent() {
        assert_eq!(credit_for(amount("40"), amount("1.25")), Some(amount("50")));
        assert_eq!(credit_for(amount("10.01"), amount("1.5")), Some(amount("15.01")));
        assert_eq!(credit_for(amount("0.01"), amount("0.5")), Some(amount("0")));
        assert_eq!(credit_for(amount("33.33"), amount("0.333333")), Some(amount("11.10")));
    }
}
