//! What an account's dashboard reads, each part in one statement whatever its page size: the
//! account with its referral, its referrer and its balances; a page of the friends it referred
//! with what each shows of its account and what each earned it; a page of its history. A page comes
//! with the count of all its rows in the same statement. The same reads serve a screen that
//! shows one part alone (a page of friends, of history). Rows are read by position (`rows`).

mod rows;
mod together;

pub use together::DashboardBatches;

use crate::amount::Amount;
use crate::db::Direct;
use crate::error::AppResult;
use crate::service::accounts::ParticipantAccount;
use crate::service::ledger::{self, StatementLine};
use crate::service::page::{Page, PageRequest};
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus, ReferralStatus, Unit};
use entity::{account, balance, ledger_entry, referral};
use rows::{ACCOUNT, BALANCE, PARTICIPANT, REFERRAL, Row, STATEMENT_LINE};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, JoinType, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryResult, Statement, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use together::{Answer, Batched, Kind};

// The select lists, written once: every statement is built for every request, and its column
// lists never change. Each table's columns are read from the position where its list starts.
static ME: LazyLock<String> = LazyLock::new(|| ACCOUNT.select_list("me", ""));
static VIA: LazyLock<String> = LazyLock::new(|| REFERRAL.select_list("via", "via_"));
static REFERRER: LazyLock<String> = LazyLock::new(|| PARTICIPANT.select_list("referrer", "referrer_"));
static BALANCES: LazyLock<String> = LazyLock::new(|| BALANCE.select_list("bal", "bal_"));
static FRIENDS_PAGE: LazyLock<String> = LazyLock::new(|| REFERRAL.select_list(PAGE, ""));
static REFEREES: LazyLock<String> = LazyLock::new(|| PARTICIPANT.select_list("referee", "referee_"));
static HISTORY_PAGE: LazyLock<String> = LazyLock::new(|| STATEMENT_LINE.select_list(PAGE, ""));

/// Which parts of an account to read with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccountParts {
    pub referral: bool,
    pub balances: bool,
}

/// An account with the parts asked for.
#[derive(Debug)]
pub struct AccountRead {
    pub account: account::Model,
    /// When asked for: the accepted referral that brought the account, if any.
    pub referral: Option<Option<Referred>>,
    /// When asked for: every balance of the account, as of now.
    pub balances: Option<Vec<balance::Model>>,
}

#[derive(Debug)]
pub struct Referred {
    pub referral: referral::Model,
    /// What the referral shows of its referrer.
    pub referrer: Option<ParticipantAccount>,
}

/// The account of `external_id` with the parts asked for, in one statement. Balances are as of
/// `now` (`ledger::balances_of`): when one has something due, they are read again that way,
/// which the usual balance, with nothing due, never needs.
pub async fn account(
    db: Direct<'_>,
    together: Option<&DashboardBatches>,
    external_id: &str,
    parts: AccountParts,
    now: DateTime<Utc>,
) -> AppResult<Option<AccountRead>> {
    let alone = || {
        let mut values = Vec::with_capacity(2);
        if parts.referral {
            values.push(Value::from(ReferralStatus::Rejected));
        }
        values.push(Value::from(external_id));
        texts().statement(db.db, Shape::Account(parts), values, || {
            account_query(Expr::val(external_id), parts)
        })
    };
    let kind = Kind {
        shape: Shape::Account(parts),
        limit: 0,
    };
    let rows = read(db, together, kind, external_id.into(), alone, || Batched {
        statement: account_query(together::key(), parts),
        key_type: "text",
        order: "",
    })
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let account = ACCOUNT.read(first, 0, "")?;
    let mut at = ACCOUNT.columns.len();
    let referral = if parts.referral {
        let (via, referrer) = (at, at + REFERRAL.columns.len());
        at = referrer + PARTICIPANT.columns.len();
        let row = Row::of(first)?;
        Some(if row.has(via)? {
            Some(Referred {
                referral: REFERRAL.read(first, via, "via_")?,
                referrer: row
                    .has(referrer)?
                    .then(|| PARTICIPANT.read(first, referrer, "referrer_"))
                    .transpose()?,
            })
        } else {
            None
        })
    } else {
        None
    };
    let balances = if parts.balances {
        let mut read: Vec<balance::Model> = Vec::new();
        for result in &rows {
            if Row::of(result)?.has(at)? {
                let balance = BALANCE.read(result, at, "bal_")?;
                // A second accepted referral would repeat the balances (there is one at most).
                if !read.iter().any(|b| b.unit == balance.unit) {
                    read.push(balance);
                }
            }
        }
        if read.iter().any(|b| b.next_due_at.is_some_and(|at| at <= now)) {
            read = ledger::balances_of(db.db, &[account.id], now)
                .await?
                .remove(&account.id)
                .unwrap_or_default();
        }
        Some(read)
    } else {
        None
    };
    Ok(Some(AccountRead {
        account,
        referral,
        balances,
    }))
}

/// Which parts of each friend to read with a page of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FriendParts {
    pub referees: bool,
    pub earned: bool,
}

/// A page of the friends an account referred, with the parts asked for.
#[derive(Debug)]
pub struct Friends {
    pub page: Page<referral::Model>,
    /// What each friend's referral shows of its account, when asked for.
    pub referees: Vec<ParticipantAccount>,
    /// When asked for: what the account earned through each referral of the page, net of
    /// reversals, per unit (a referral that earned nothing has no entry).
    pub earned: Option<HashMap<i64, Vec<(Unit, Amount)>>>,
}

/// The friends `referrer_id` referred (rejected attempts left out), newest first, with the
/// parts asked for, in one statement.
pub async fn referred_friends(
    db: Direct<'_>,
    together: Option<&DashboardBatches>,
    referrer_id: i64,
    request: PageRequest,
    parts: FriendParts,
) -> AppResult<Friends> {
    // In the order of the statement's text: the count, the page, the page's ids again.
    let page_values = |values: &mut Vec<Value>, with_limit: bool| {
        values.extend([Value::from(referrer_id), Value::from(ReferralStatus::Rejected)]);
        if with_limit {
            values.extend(request.after.map(Value::from));
            values.push(Value::from(request.fetch_limit()));
        }
    };
    let mut values = Vec::with_capacity(16);
    page_values(&mut values, false);
    page_values(&mut values, true);
    if parts.earned {
        values.push(Value::from(referrer_id));
        page_values(&mut values, true);
        values.extend([
            Value::from(EntryKind::Reward),
            Value::from(EntryKind::Reversal),
            Value::from(EntryStatus::Voided),
        ]);
    }
    let shape = Shape::Friends(parts, request.after.is_some());
    let alone = || {
        texts().statement(db.db, shape, values.clone(), || {
            friends_query(Expr::val(referrer_id), request, parts)
        })
    };
    let together = together.filter(|_| request.after.is_none());
    let kind = Kind {
        shape,
        limit: request.fetch_limit(),
    };
    let rows = read(db, together, kind, referrer_id.into(), alone, || Batched {
        statement: friends_query(together::key(), request, parts),
        key_type: "bigint",
        // The statement's own order (`friends_query`).
        order: if parts.earned {
            ", x.id DESC, x.earned_unit"
        } else {
            ", x.id DESC"
        },
    })
    .await?;
    let total = total_of(&rows)?;
    let referee_at = PAGE_AT + REFERRAL.columns.len();
    let earned_at = referee_at + if parts.referees { PARTICIPANT.columns.len() } else { 0 };
    let mut items: Vec<referral::Model> = Vec::new();
    let mut referees = Vec::new();
    let mut earned: HashMap<i64, Vec<(Unit, Amount)>> = HashMap::new();
    for result in &rows {
        let row = Row::of(result)?;
        let Some(id) = row.get::<Option<i64>>(PAGE_AT)? else {
            continue;
        };
        // A referral comes on one row per unit it earned in.
        if items.last().map(|r| r.id) != Some(id) {
            items.push(REFERRAL.read(result, PAGE_AT, "")?);
            if parts.referees && row.has(referee_at)? {
                referees.push(PARTICIPANT.read(result, referee_at, "referee_")?);
            }
        }
        if parts.earned
            && let Some(unit) = row.get::<Option<String>>(earned_at)?
        {
            let unit = <Unit as sea_orm::ActiveEnum>::try_from_value(&unit)?;
            let amount: i64 = row.get(earned_at + 1)?;
            earned.entry(id).or_default().push((unit, Amount::from_micros(amount)));
        }
    }
    Ok(Friends {
        page: Page::from_rows(items, request, total),
        referees,
        earned: parts.earned.then_some(earned),
    })
}

/// A page of an account's ledger entries (of one unit, or all), newest first, as its history
/// shows them, in one statement.
pub async fn history(
    db: Direct<'_>,
    together: Option<&DashboardBatches>,
    account_id: i64,
    unit: Option<Unit>,
    request: PageRequest,
) -> AppResult<Page<StatementLine>> {
    // In the order of the statement's text: the count, then the page.
    let mut values = Vec::with_capacity(6);
    for page in [false, true] {
        values.push(Value::from(account_id));
        values.extend(unit.map(Value::from));
        if page {
            values.extend(request.after.map(Value::from));
            values.push(Value::from(request.fetch_limit()));
        }
    }
    let shape = Shape::History(unit.is_some(), request.after.is_some());
    let alone = || {
        texts().statement(db.db, shape, values.clone(), || {
            history_query(Expr::val(account_id), unit, request)
        })
    };
    let together = together.filter(|_| unit.is_none() && request.after.is_none());
    let kind = Kind {
        shape,
        limit: request.fetch_limit(),
    };
    let rows = read(db, together, kind, account_id.into(), alone, || Batched {
        statement: history_query(together::key(), unit, request),
        key_type: "bigint",
        // The statement's own order (`counted_page`).
        order: ", x.id DESC",
    })
    .await?;
    let total = total_of(&rows)?;
    let mut items = Vec::with_capacity(rows.len());
    for result in &rows {
        if Row::of(result)?.has(PAGE_AT)? {
            items.push(STATEMENT_LINE.read(result, PAGE_AT, "")?);
        }
    }
    Ok(Page::from_rows(items, request, total))
}

/// A read's rows: with the reads of its kind that wait, when `together` is given, else (or
/// when that batch failed) alone, by the statement `alone` makes.
async fn read(
    db: Direct<'_>,
    together: Option<&DashboardBatches>,
    kind: Kind,
    key: serde_json::Value,
    alone: impl Fn() -> Statement,
    batched: impl FnOnce() -> Batched,
) -> Result<Vec<QueryResult>, DbErr> {
    if let Some(batches) = together {
        match batches.read(kind, key, alone(), batched).await {
            Answer::Rows(rows) => return Ok(rows),
            Answer::Failed(err) => return Err(err),
            Answer::Alone => {}
        }
    }
    db.all(alone()).await
}

/// The statement of `account`, for the account whose external id is `external_id`.
fn account_query(external_id: Expr, parts: AccountParts) -> SelectStatement {
    let (me, via, referrer, balances) = (
        Alias::new("me"),
        Alias::new("via"),
        Alias::new("referrer"),
        Alias::new("bal"),
    );
    let mut query = Query::select();
    // The account's columns under their own names (decoding a prefixed name costs a format).
    query
        .expr(Expr::cust(ME.as_str()))
        .from_as(account::Entity, me.clone())
        .and_where(Expr::col((me.clone(), account::Column::ExternalId)).eq(external_id));
    if parts.referral {
        query
            .expr(Expr::cust(VIA.as_str()))
            .expr(Expr::cust(REFERRER.as_str()))
            .join_as(
                JoinType::LeftJoin,
                referral::Entity,
                via.clone(),
                Condition::all()
                    .add(
                        Expr::col((via.clone(), referral::Column::RefereeId)).equals((me.clone(), account::Column::Id)),
                    )
                    .add(Expr::col((via.clone(), referral::Column::Status)).ne(ReferralStatus::Rejected)),
            )
            .join_as(
                JoinType::LeftJoin,
                account::Entity,
                referrer.clone(),
                Expr::col((referrer.clone(), account::Column::Id)).equals((via, referral::Column::ReferrerId)),
            );
    }
    if parts.balances {
        query.expr(Expr::cust(BALANCES.as_str())).join_as(
            JoinType::LeftJoin,
            balance::Entity,
            balances.clone(),
            Expr::col((balances, balance::Column::AccountId)).equals((me, account::Column::Id)),
        );
    }
    query
}

/// The statement of `referred_friends`, for the referrer whose id is `referrer_id`.
fn friends_query(referrer_id: Expr, request: PageRequest, parts: FriendParts) -> SelectStatement {
    let friends = || {
        Condition::all()
            .add(Expr::col(referral::Column::ReferrerId).eq(referrer_id.clone()))
            .add(Expr::col(referral::Column::Status).ne(ReferralStatus::Rejected))
    };
    let (page, referee, earned) = (Alias::new(PAGE), Alias::new("referee"), Alias::new("earned"));
    let mut query = counted_page(
        referral::Entity,
        friends(),
        referral::Column::Id,
        FRIENDS_PAGE.as_str(),
        request,
    );
    if parts.referees {
        query.expr(Expr::cust(REFEREES.as_str())).join_as(
            JoinType::LeftJoin,
            account::Entity,
            referee.clone(),
            Expr::col((referee, account::Column::Id)).equals((page.clone(), referral::Column::RefereeId)),
        );
    }
    if parts.earned {
        // Only the referrals of the page: the same keyset query, for their ids.
        let ids = page_query(
            referral::Entity,
            friends(),
            referral::Column::Id,
            Expr::col(referral::Column::Id),
            request,
        );
        let sums = Query::select()
            .column(ledger_entry::Column::ReferralId)
            .column(ledger_entry::Column::Unit)
            // SUM(bigint) is NUMERIC on PostgreSQL; cast it back so both databases give an i64.
            .expr_as(
                Func::cast_as(Func::sum(Expr::col(ledger_entry::Column::Amount)), Alias::new("BIGINT")),
                Alias::new("amount"),
            )
            .from(ledger_entry::Entity)
            .and_where(Expr::col(ledger_entry::Column::AccountId).eq(referrer_id.clone()))
            .and_where(Expr::col(ledger_entry::Column::ReferralId).in_subquery(ids))
            .and_where(Expr::col(ledger_entry::Column::Kind).is_in([EntryKind::Reward, EntryKind::Reversal]))
            .and_where(Expr::col(ledger_entry::Column::Status).ne(EntryStatus::Voided))
            .group_by_col(ledger_entry::Column::ReferralId)
            .group_by_col(ledger_entry::Column::Unit)
            .to_owned();
        query
            .expr_as(
                Expr::col((earned.clone(), ledger_entry::Column::Unit)),
                Alias::new("earned_unit"),
            )
            .expr_as(
                Expr::col((earned.clone(), Alias::new("amount"))),
                Alias::new("earned_amount"),
            )
            .join_subquery(
                JoinType::LeftJoin,
                sums,
                earned.clone(),
                Expr::col((earned.clone(), ledger_entry::Column::ReferralId)).equals((page, referral::Column::Id)),
            )
            .order_by((earned, ledger_entry::Column::Unit), Order::Asc);
    }
    query
}

/// The statement of `history`, for the account whose id is `account_id`.
fn history_query(account_id: Expr, unit: Option<Unit>, request: PageRequest) -> SelectStatement {
    let mut entries = Condition::all().add(Expr::col(ledger_entry::Column::AccountId).eq(account_id));
    if let Some(unit) = unit {
        entries = entries.add(Expr::col(ledger_entry::Column::Unit).eq(unit));
    }
    counted_page(
        ledger_entry::Entity,
        entries,
        ledger_entry::Column::Id,
        HISTORY_PAGE.as_str(),
        request,
    )
}

/// What a statement's text depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Shape {
    Account(AccountParts),
    /// The parts, and whether the page starts after a cursor.
    Friends(FriendParts, bool),
    /// Whether of one unit, and whether the page starts after a cursor.
    History(bool, bool),
}

/// The text of each statement, by database and shape: built once, since building it costs
/// more than the rest of the statement's work in the server, then only its values change.
/// Debug builds build every statement as well and compare, so the tests prove that the values
/// are bound in the order of the text.
#[derive(Default)]
struct Texts(Mutex<HashMap<(bool, Shape), Arc<str>>>);

fn texts() -> &'static Texts {
    static TEXTS: LazyLock<Texts> = LazyLock::new(Texts::default);
    &TEXTS
}

impl Texts {
    fn statement(
        &self,
        db: &impl ConnectionTrait,
        shape: Shape,
        values: Vec<Value>,
        build: impl Fn() -> SelectStatement,
    ) -> Statement {
        let backend = db.get_database_backend();
        let key = (backend == DbBackend::Postgres, shape);
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        let text = known.unwrap_or_else(|| {
            let text: Arc<str> = backend.build(&build()).sql.into();
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, text.clone());
            text
        });
        let statement = Statement::from_sql_and_values(backend, text.as_ref(), values);
        debug_assert_eq!(
            statement,
            backend.build(&build()),
            "the kept text and the values bound to it"
        );
        statement
    }
}

/// Where a page's columns start in `counted_page`'s rows: after the total.
const PAGE_AT: usize = 1;
/// The page's name in `counted_page`.
const PAGE: &str = "p";
const TOTAL: &str = "total_count";

/// One page of the rows of `table` that meet `filter` (keyset, newest first by `id`) beside
/// their count: the count is the statement's first table and the page is joined to it, so
/// that an empty page still answers its total (one row whose page columns are NULL). The page
/// is `PAGE`, its columns are selected by `columns` (under their own names); other tables may
/// be joined to it, with prefixes.
fn counted_page<E: EntityTrait>(
    table: E,
    filter: Condition,
    id: E::Column,
    columns: &'static str,
    request: PageRequest,
) -> SelectStatement {
    let count = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), Alias::new(TOTAL))
        .from(table)
        .cond_where(filter.clone())
        .to_owned();
    let (total, page) = (Alias::new("t"), Alias::new(PAGE));
    Query::select()
        .expr_as(Expr::col((total.clone(), Alias::new(TOTAL))), Alias::new(TOTAL))
        .expr(Expr::cust(columns))
        .from_subquery(count, total)
        .join_subquery(
            JoinType::LeftJoin,
            page_query(table, filter, id, Expr::cust("*"), request),
            page.clone(),
            Expr::cust("1 = 1"),
        )
        .order_by((page, id), Order::Desc)
        .to_owned()
}

/// The keyset page of the rows of `table` that meet `filter`: `first + 1` of them (one more
/// tells that there is a next page) older than the cursor, newest first, `selected`.
fn page_query<E: EntityTrait>(
    table: E,
    filter: Condition,
    id: E::Column,
    selected: Expr,
    request: PageRequest,
) -> SelectStatement {
    let mut page = Query::select();
    page.expr(selected).from(table).cond_where(filter);
    if let Some(after) = request.after {
        page.and_where(Expr::col(id).lt(after));
    }
    page.order_by(id, Order::Desc).limit(request.fetch_limit()).to_owned()
}

fn total_of(rows: &[QueryResult]) -> Result<u64, DbErr> {
    let total: i64 = match rows.first() {
        Some(row) => Row::of(row)?.get(0)?,
        None => 0,
    };
    Ok(u64::try_from(total).unwrap_or(0))
}
