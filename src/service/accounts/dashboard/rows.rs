//! The dashboard's rows, read by the position of their columns. Reading a model by its column
//! names costs, for every column of every row, a formatted name (when prefixed), a hashed look
//! up of it, and for every NULL an error message built and thrown away: more than the rest of
//! the request's database work. Here each table's columns are selected in a fixed order and
//! read in that order. Debug builds read every row by name too and compare, so the tests prove
//! the two readings agree, on both databases.

use crate::service::accounts::ParticipantAccount;
use crate::service::ledger::StatementLine;
use chrono::{DateTime, Utc};
use entity::{account, balance, referral};
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::sqlite::SqliteRow;
use sea_orm::sqlx::{Decode, Postgres, Row as _, Sqlite, Type};
use sea_orm::{ActiveEnum, DbErr, QueryResult};

/// A row of either database.
#[derive(Clone, Copy)]
pub enum Row<'a> {
    Postgres(&'a PgRow),
    Sqlite(&'a SqliteRow),
}

impl<'a> Row<'a> {
    pub fn of(result: &'a QueryResult) -> Result<Self, DbErr> {
        if let Some(row) = result.try_as_pg_row() {
            Ok(Row::Postgres(row))
        } else if let Some(row) = result.try_as_sqlite_row() {
            Ok(Row::Sqlite(row))
        } else {
            Err(DbErr::Custom("a row of neither PostgreSQL nor SQLite".into()))
        }
    }

    pub fn get<T>(&self, index: usize) -> Result<T, DbErr>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>,
    {
        match self {
            // The statements' select lists fix each column's type, so PostgreSQL's columns are
            // not checked against the Rust type (sqlx compares type descriptions for every
            // column of every row; debug builds read each row by name too, checked).
            Row::Postgres(row) => row.try_get_unchecked(index),
            Row::Sqlite(row) => row.try_get(index),
        }
        .map_err(|err| DbErr::Type(format!("column {index}: {err}")))
    }

    /// Whether the table whose key is at `index` has a row here (left joins leave NULLs).
    pub fn has(&self, index: usize) -> Result<bool, DbErr> {
        Ok(self.get::<Option<i64>>(index)?.is_some())
    }

    /// Reads the columns from `index` on, in order.
    fn from(self, index: usize) -> Columns<'a> {
        Columns { row: self, next: index }
    }
}

/// The next column of a row.
struct Columns<'a> {
    row: Row<'a>,
    next: usize,
}

impl Columns<'_> {
    fn get<T>(&mut self) -> Result<T, DbErr>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>,
    {
        self.next += 1;
        self.row.get(self.next - 1)
    }

    fn text<E: ActiveEnum<Value = String>>(&mut self) -> Result<E, DbErr> {
        E::try_from_value(&self.get::<String>()?)
    }

    fn text_or_null<E: ActiveEnum<Value = String>>(&mut self) -> Result<Option<E>, DbErr> {
        self.get::<Option<String>>()?
            .map(|value| E::try_from_value(&value))
            .transpose()
    }

    fn time(&mut self) -> Result<DateTime<Utc>, DbErr> {
        self.get()
    }

    fn time_or_null(&mut self) -> Result<Option<DateTime<Utc>>, DbErr> {
        self.get()
    }
}

/// A table's columns in the order they are selected and read, and how a model is read from
/// them.
pub struct Table<M> {
    pub columns: &'static [&'static str],
    read: fn(Columns<'_>) -> Result<M, DbErr>,
}

impl<M: sea_orm::FromQueryResult + PartialEq + std::fmt::Debug> Table<M> {
    /// `"table"."column" AS "<prefix>column", …`: both databases quote identifiers with double
    /// quotes. The names are for debug builds, which read each row by name as well.
    pub fn select_list(&self, table: &str, prefix: &str) -> String {
        self.columns
            .iter()
            .map(|name| format!(r#""{table}"."{name}" AS "{prefix}{name}""#))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The model whose columns start at `index` (named with `prefix`).
    pub fn read(&self, result: &QueryResult, index: usize, prefix: &str) -> Result<M, DbErr> {
        let model = (self.read)(Row::of(result)?.from(index))?;
        debug_assert_eq!(
            Some(&model),
            M::from_query_result(result, prefix).ok().as_ref(),
            "read by position and by name"
        );
        Ok(model)
    }
}

// Each reader reads its columns in the order of `columns`, which is the order of the entity's
// fields (a test checks it against the entity's columns); a partial one reads some of them, in
// the same order.

pub const ACCOUNT: Table<account::Model> = Table {
    columns: &[
        "id",
        "external_id",
        "display_name",
        "email",
        "account_group",
        "referral_code",
        "status",
        "first_purchase_at",
        "created_at",
        "billing_scheme",
        "top_up_total",
        "payment_method_verified_at",
        "disqualified_at",
        "disqualification_reason",
        "first_purchase_event_id",
        "closed_at",
        "paid_invoices",
        "last_invoice_at",
        "last_invoice_total",
        "affiliate_status",
        "affiliate_terms",
        "payment_fingerprint",
        "referrer_ineligible_reason",
        "affiliate_applied_at",
        "affiliate_note",
        "affiliate_decided_at",
        "affiliate_approved_at",
        "payout_schedule",
        "plan",
        "billing_cycle",
        "masked_name",
    ],
    read: |mut c| {
        Ok(account::Model {
            id: c.get()?,
            external_id: c.get()?,
            display_name: c.get()?,
            email: c.get()?,
            account_group: c.get()?,
            referral_code: c.get()?,
            status: c.text()?,
            first_purchase_at: c.time_or_null()?,
            created_at: c.time()?,
            billing_scheme: c.text()?,
            top_up_total: c.get()?,
            payment_method_verified_at: c.time_or_null()?,
            disqualified_at: c.time_or_null()?,
            disqualification_reason: c.get()?,
            first_purchase_event_id: c.get()?,
            closed_at: c.time_or_null()?,
            paid_invoices: c.get()?,
            last_invoice_at: c.time_or_null()?,
            last_invoice_total: c.get()?,
            affiliate_status: c.text_or_null()?,
            affiliate_terms: c.get()?,
            payment_fingerprint: c.get()?,
            referrer_ineligible_reason: c.text_or_null()?,
            affiliate_applied_at: c.time_or_null()?,
            affiliate_note: c.get()?,
            affiliate_decided_at: c.time_or_null()?,
            affiliate_approved_at: c.time_or_null()?,
            payout_schedule: c.text_or_null()?,
            plan: c.get()?,
            billing_cycle: c.text_or_null()?,
            masked_name: c.get()?,
        })
    },
};

/// An account as one side of a referral shows it (the referrer, a friend).
pub const PARTICIPANT: Table<ParticipantAccount> = Table {
    columns: &[
        "id",
        "external_id",
        "display_name",
        "referral_code",
        "status",
        "first_purchase_at",
        "created_at",
        "plan",
        "billing_cycle",
    ],
    read: |mut c| {
        Ok(ParticipantAccount {
            id: c.get()?,
            external_id: c.get()?,
            display_name: c.get()?,
            referral_code: c.get()?,
            status: c.text()?,
            first_purchase_at: c.time_or_null()?,
            created_at: c.time()?,
            plan: c.get()?,
            billing_cycle: c.text_or_null()?,
        })
    },
};

pub const REFERRAL: Table<referral::Model> = Table {
    columns: &[
        "id",
        "referee_id",
        "referrer_id",
        "status",
        "rejection_reason",
        "code_used",
        "source",
        "created_at",
        "qualified_at",
    ],
    read: |mut c| {
        Ok(referral::Model {
            id: c.get()?,
            referee_id: c.get()?,
            referrer_id: c.get()?,
            status: c.text()?,
            rejection_reason: c.text_or_null()?,
            code_used: c.get()?,
            source: c.text()?,
            created_at: c.time()?,
            qualified_at: c.time_or_null()?,
        })
    },
};

pub const BALANCE: Table<balance::Model> = Table {
    columns: &[
        "account_id",
        "unit",
        "available",
        "pending",
        "lifetime_earned",
        "debt",
        "next_due_at",
    ],
    read: |mut c| {
        Ok(balance::Model {
            account_id: c.get()?,
            unit: c.text()?,
            available: c.get()?,
            pending: c.get()?,
            lifetime_earned: c.get()?,
            debt: c.get()?,
            next_due_at: c.time_or_null()?,
        })
    },
};

/// A ledger entry as a line of an account's history shows it.
pub const STATEMENT_LINE: Table<StatementLine> = Table {
    columns: &[
        "id",
        "account_id",
        "unit",
        "amount",
        "kind",
        "status",
        "description",
        "available_at",
        "expires_at",
        "created_at",
    ],
    read: |mut c| {
        Ok(StatementLine {
            id: c.get()?,
            account_id: c.get()?,
            unit: c.text()?,
            amount: c.get()?,
            kind: c.text()?,
            status: c.text()?,
            description: c.get()?,
            available_at: c.time_or_null()?,
            expires_at: c.time_or_null()?,
            created_at: c.time()?,
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use entity::ledger_entry;
    use sea_orm::{EntityTrait, IdenStatic, Iterable};

    fn names<E: EntityTrait>() -> Vec<&'static str> {
        E::Column::iter().map(|column| column.as_str()).collect()
    }

    #[test]
    fn each_table_reads_every_column_of_its_entity_in_its_order() {
        assert_eq!(ACCOUNT.columns, names::<account::Entity>());
        assert_eq!(REFERRAL.columns, names::<referral::Entity>());
        assert_eq!(BALANCE.columns, names::<balance::Entity>());
    }

    /// Where each of `columns` stands among the columns of `E`.
    fn positions<E: EntityTrait>(columns: &[&str]) -> Vec<Option<usize>> {
        let all = names::<E>();
        columns
            .iter()
            .map(|name| all.iter().position(|column| column == name))
            .collect()
    }

    #[test]
    fn a_partial_table_reads_some_columns_of_its_entity_in_their_order() {
        for positions in [
            positions::<account::Entity>(PARTICIPANT.columns),
            positions::<ledger_entry::Entity>(STATEMENT_LINE.columns),
        ] {
            assert!(positions.iter().all(Option::is_some), "{positions:?}");
            assert!(positions.is_sorted(), "{positions:?}");
        }
    }
}
