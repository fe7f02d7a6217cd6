//! What an account's dashboard reads, each part in one statement whatever its page size: the
//! account with its referral, its referrer and its balances; a page of the friends it referred
//! with their accounts and what each of them earned it; a page of its history. A page comes
//! with the count of all its rows in the same statement. The same reads serve a screen that
//! shows one part alone (a page of friends, of history).

use crate::amount::Amount;
use crate::error::AppResult;
use crate::service::ledger;
use crate::service::page::{Page, PageRequest};
use chrono::{DateTime, Utc};
use entity::enums::{EntryKind, EntryStatus, ReferralStatus, Unit};
use entity::{account, balance, ledger_entry, referral};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, JoinType, Order, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select,
};
use std::collections::HashMap;

/// Which parts of an account to read with it.
#[derive(Clone, Copy, Debug, Default)]
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
    pub referrer: Option<account::Model>,
}

/// The account of `external_id` with the parts asked for, in one statement. Balances are as of
/// `now` (`ledger::balances_of`): when one has something due, they are read again that way,
/// which the usual balance, with nothing due, never needs.
pub async fn account(
    db: &DatabaseConnection,
    external_id: &str,
    parts: AccountParts,
    now: DateTime<Utc>,
) -> AppResult<Option<AccountRead>> {
    let (me, via, referrer, balances) = (
        Alias::new("me"),
        Alias::new("via"),
        Alias::new("referrer"),
        Alias::new("bal"),
    );
    let mut query = Query::select();
    select_prefixed::<account::Entity>(&mut query, &me, "me_");
    query
        .from_as(account::Entity, me.clone())
        .and_where(Expr::col((me.clone(), account::Column::ExternalId)).eq(external_id));
    if parts.referral {
        select_prefixed::<referral::Entity>(&mut query, &via, "via_");
        select_prefixed::<account::Entity>(&mut query, &referrer, "referrer_");
        query
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
        select_prefixed::<balance::Entity>(&mut query, &balances, "bal_");
        query.join_as(
            JoinType::LeftJoin,
            balance::Entity,
            balances.clone(),
            Expr::col((balances, balance::Column::AccountId)).equals((me, account::Column::Id)),
        );
    }
    let rows = db.query_all_raw(db.get_database_backend().build(&query)).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let account = account::Model::from_query_result(first, "me_")?;
    let referral = if parts.referral {
        Some(match present(first, "via_", referral::Column::Id)? {
            true => Some(Referred {
                referral: referral::Model::from_query_result(first, "via_")?,
                referrer: present(first, "referrer_", account::Column::Id)?
                    .then(|| account::Model::from_query_result(first, "referrer_"))
                    .transpose()?,
            }),
            false => None,
        })
    } else {
        None
    };
    let balances = if parts.balances {
        let mut read: Vec<balance::Model> = Vec::new();
        for row in &rows {
            if present(row, "bal_", balance::Column::AccountId)? {
                let balance = balance::Model::from_query_result(row, "bal_")?;
                // A second accepted referral would repeat the balances (there is one at most).
                if !read.iter().any(|b| b.unit == balance.unit) {
                    read.push(balance);
                }
            }
        }
        if read.iter().any(|b| b.next_due_at.is_some_and(|at| at <= now)) {
            read = ledger::balances_of(db, &[account.id], now)
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
#[derive(Clone, Copy, Debug, Default)]
pub struct FriendParts {
    pub referees: bool,
    pub earned: bool,
}

/// A page of the friends an account referred, with the parts asked for.
#[derive(Debug)]
pub struct Friends {
    pub page: Page<referral::Model>,
    /// The friends' accounts, when asked for.
    pub referees: Vec<account::Model>,
    /// When asked for: what the account earned through each referral of the page, net of
    /// reversals, per unit (a referral that earned nothing has no entry).
    pub earned: Option<HashMap<i64, Vec<(Unit, Amount)>>>,
}

/// The friends `referrer_id` referred (rejected attempts left out), newest first, with the
/// parts asked for, in one statement.
pub async fn referred_friends(
    db: &impl ConnectionTrait,
    referrer_id: i64,
    request: PageRequest,
    parts: FriendParts,
) -> AppResult<Friends> {
    let base = referral::Entity::find()
        .filter(referral::Column::ReferrerId.eq(referrer_id))
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected));
    let (page, referee, earned) = (Alias::new("p"), Alias::new("referee"), Alias::new("earned"));
    let mut query = counted_page(base.clone(), referral::Column::Id, request);
    if parts.referees {
        select_prefixed::<account::Entity>(&mut query, &referee, "referee_");
        query.join_as(
            JoinType::LeftJoin,
            account::Entity,
            referee.clone(),
            Expr::col((referee, account::Column::Id)).equals((page.clone(), referral::Column::RefereeId)),
        );
    }
    if parts.earned {
        // Only the referrals of the page: the same keyset query, for their ids.
        let ids = page_query(
            base.select_only().column(referral::Column::Id),
            referral::Column::Id,
            request,
        );
        let sums = ledger_entry::Entity::find()
            .select_only()
            .column(ledger_entry::Column::ReferralId)
            .column(ledger_entry::Column::Unit)
            // SUM(bigint) is NUMERIC on PostgreSQL; cast it back so both databases give an i64.
            .column_as(
                Expr::from(Func::cast_as(
                    Func::sum(Expr::col(ledger_entry::Column::Amount)),
                    Alias::new("BIGINT"),
                )),
                "amount",
            )
            .filter(ledger_entry::Column::AccountId.eq(referrer_id))
            .filter(ledger_entry::Column::ReferralId.in_subquery(ids))
            .filter(ledger_entry::Column::Kind.is_in([EntryKind::Reward, EntryKind::Reversal]))
            .filter(ledger_entry::Column::Status.ne(EntryStatus::Voided))
            .group_by(ledger_entry::Column::ReferralId)
            .group_by(ledger_entry::Column::Unit)
            .into_query();
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
    let rows = db.query_all_raw(db.get_database_backend().build(&query)).await?;
    let total = total_of(&rows)?;
    let mut items: Vec<referral::Model> = Vec::new();
    let mut referees = Vec::new();
    let mut earned: HashMap<i64, Vec<(Unit, Amount)>> = HashMap::new();
    for row in &rows {
        let Some(id) = row.try_get::<Option<i64>>(PAGE_PREFIX, referral::Column::Id.as_str())? else {
            continue;
        };
        // A referral comes on one row per unit it earned in.
        if items.last().map(|r| r.id) != Some(id) {
            items.push(referral::Model::from_query_result(row, PAGE_PREFIX)?);
            if parts.referees && present(row, "referee_", account::Column::Id)? {
                referees.push(account::Model::from_query_result(row, "referee_")?);
            }
        }
        if parts.earned
            && let Some(unit) = row.try_get::<Option<Unit>>("", "earned_unit")?
        {
            let amount: i64 = row.try_get("", "earned_amount")?;
            earned.entry(id).or_default().push((unit, Amount::from_micros(amount)));
        }
    }
    Ok(Friends {
        page: Page::from_rows(items, request, total),
        referees,
        earned: parts.earned.then_some(earned),
    })
}

/// A page of an account's ledger entries (of one unit, or all), newest first, in one statement.
pub async fn history(
    db: &impl ConnectionTrait,
    account_id: i64,
    unit: Option<Unit>,
    request: PageRequest,
) -> AppResult<Page<ledger_entry::Model>> {
    let mut base = ledger_entry::Entity::find().filter(ledger_entry::Column::AccountId.eq(account_id));
    if let Some(unit) = unit {
        base = base.filter(ledger_entry::Column::Unit.eq(unit));
    }
    let query = counted_page(base, ledger_entry::Column::Id, request);
    let rows = db.query_all_raw(db.get_database_backend().build(&query)).await?;
    let total = total_of(&rows)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        if present(row, PAGE_PREFIX, ledger_entry::Column::Id)? {
            items.push(ledger_entry::Model::from_query_result(row, PAGE_PREFIX)?);
        }
    }
    Ok(Page::from_rows(items, request, total))
}

/// The prefix of a page's columns in `counted_page`.
const PAGE_PREFIX: &str = "p_";
const TOTAL: &str = "total_count";

/// One page of `base` (keyset, newest first by `id`) beside the count of all of `base`: the
/// count is the statement's first table and the page is joined to it, so that an empty page
/// still answers its total (one row whose page columns are NULL). The page is `p` and its
/// columns come prefixed with `PAGE_PREFIX`; other tables may be joined to it.
fn counted_page<E>(base: Select<E>, id: E::Column, request: PageRequest) -> SelectStatement
where
    E: EntityTrait,
{
    let count = base
        .clone()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), TOTAL)
        .into_query();
    let (total, page) = (Alias::new("t"), Alias::new("p"));
    let mut query = Query::select();
    query
        .expr_as(Expr::col((total.clone(), Alias::new(TOTAL))), Alias::new(TOTAL))
        .from_subquery(count, total)
        .join_subquery(
            JoinType::LeftJoin,
            page_query(base, id, request),
            page.clone(),
            Expr::cust("1 = 1"),
        )
        .order_by((page.clone(), id), Order::Desc);
    select_prefixed::<E>(&mut query, &page, PAGE_PREFIX);
    query
}

/// The keyset page of `base`: `first + 1` rows (one more tells that there is a next page)
/// older than the cursor, newest first.
fn page_query<E: EntityTrait>(base: Select<E>, id: E::Column, request: PageRequest) -> SelectStatement {
    let mut page = base.order_by_desc(id).limit(request.fetch_limit());
    if let Some(after) = request.after {
        page = page.filter(id.lt(after));
    }
    page.into_query()
}

fn total_of(rows: &[QueryResult]) -> Result<u64, DbErr> {
    let total: i64 = match rows.first() {
        Some(row) => row.try_get("", TOTAL)?,
        None => 0,
    };
    Ok(u64::try_from(total).unwrap_or(0))
}

/// Selects every column of `E` in `table` as `<prefix><column>`, for `from_query_result`.
fn select_prefixed<E: EntityTrait>(query: &mut SelectStatement, table: &Alias, prefix: &str) {
    for column in E::Column::iter() {
        query.expr_as(
            column.select_as(Expr::col((table.clone(), column))),
            Alias::new(format!("{prefix}{}", column.as_str())),
        );
    }
}

/// Whether a left-joined row is there: its key is not NULL.
fn present<C: ColumnTrait>(row: &QueryResult, prefix: &str, key: C) -> Result<bool, DbErr> {
    Ok(row.try_get::<Option<i64>>(prefix, key.as_str())?.is_some())
}
