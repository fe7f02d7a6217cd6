//! The admin's list of referrals: filtered (referrer, status, closed referee accounts, when it
//! began, a search over the referee and the code used) and ordered (newest, oldest, most or
//! least earned by the referrer through it). Pages are positions in that order: earnings
//! change, so an id is no bookmark in an order by earnings.

use crate::error::{AppError, AppResult};
use crate::service::accounts::escape_like;
use crate::service::page::PageRequest;
use chrono::{DateTime, Utc};
use entity::enums::{AccountStatus, ReferralStatus};
use entity::{account, referral};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

/// The longest search text.
pub const MAX_SEARCH: usize = 200;

#[derive(Debug, Clone, Default)]
pub struct ReferralFilter {
    pub referrer_id: Option<i64>,
    pub status: Option<ReferralStatus>,
    /// true: only referrals whose referee's account is closed; false: only open ones.
    pub referee_closed: Option<bool>,
    /// Referrals that began at or after this.
    pub created_from: Option<DateTime<Utc>>,
    /// Referrals that began before this.
    pub created_to: Option<DateTime<Utc>>,
    /// Contained (any case) in what `search_in` names.
    pub search: Option<String>,
    pub search_in: SearchIn,
}

/// What a search looks in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchIn {
    /// The admin's: the referee's externalId, name, email or code, or the code used.
    #[default]
    Everything,
    /// A referrer's own: only what it sees of its friends, their masked name or plan.
    MaskedNameOrPlan,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReferralOrder {
    #[default]
    Newest,
    Oldest,
    /// By what the referrer earned through the referral (every unit together), most first.
    MostEarned,
    LeastEarned,
}

/// One page: the referrals, whether more follow, the total, and the position of the first.
pub struct ReferralPage {
    pub items: Vec<referral::Model>,
    pub has_next: bool,
    pub total: u64,
    pub offset: u64,
}

/// What the referrer earned through the referral: rewards less reversals, not voided.
const EARNED: &str = "(SELECT COALESCE(SUM(e.amount), 0) FROM ledger_entries e \
     WHERE e.referral_id = referrals.id AND e.account_id = referrals.referrer_id \
       AND e.kind IN ('REWARD', 'REVERSAL') AND e.status <> 'VOIDED')";

/// `after` is the position of the last referral already shown (its cursor).
pub async fn list(
    db: &impl ConnectionTrait,
    filter: ReferralFilter,
    order: ReferralOrder,
    request: PageRequest,
) -> AppResult<ReferralPage> {
    if let (Some(from), Some(to)) = (filter.created_from, filter.created_to)
        && from > to
    {
        return Err(AppError::bad_input("createdFrom must not be after createdTo"));
    }
    let offset = u64::try_from(request.after.unwrap_or(0))
        .map_err(|_| AppError::bad_input("after is not a cursor of this list"))?;
    let mut base = referral::Entity::find();
    if let Some(referrer_id) = filter.referrer_id {
        base = base.filter(referral::Column::ReferrerId.eq(referrer_id));
    }
    if let Some(status) = filter.status {
        base = base.filter(referral::Column::Status.eq(status));
    }
    if let Some(from) = filter.created_from {
        base = base.filter(referral::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.created_to {
        base = base.filter(referral::Column::CreatedAt.lt(to));
    }
    if let Some(closed) = filter.referee_closed {
        let referees = Query::select()
            .column(account::Column::Id)
            .from(account::Entity)
            .and_where(if closed {
                account::Column::Status.eq(AccountStatus::Closed)
            } else {
                account::Column::Status.ne(AccountStatus::Closed)
            })
            .to_owned();
        base = base.filter(referral::Column::RefereeId.in_subquery(referees));
    }
    if let Some(term) = filter.search.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        if term.chars().count() > MAX_SEARCH {
            return Err(AppError::bad_input(format!(
                "search must be at most {MAX_SEARCH} characters"
            )));
        }
        let pattern = format!("%{}%", escape_like(&term.to_lowercase()));
        let contains = |column: Expr| Expr::expr(Func::lower(column)).like(LikeExpr::new(pattern.clone()).escape('\\'));
        let referees = |columns: &[account::Column]| {
            Query::select()
                .column(account::Column::Id)
                .from(account::Entity)
                .cond_where(
                    columns
                        .iter()
                        .fold(Condition::any(), |any, column| any.add(contains(Expr::col(*column)))),
                )
                .to_owned()
        };
        base = base.filter(match filter.search_in {
            SearchIn::Everything => Condition::any()
                .add(referral::Column::RefereeId.in_subquery(referees(&[
                    account::Column::ExternalId,
                    account::Column::ReferralCode,
                    account::Column::DisplayName,
                    account::Column::Email,
                ])))
                .add(contains(Expr::col((referral::Entity, referral::Column::CodeUsed)))),
            SearchIn::MaskedNameOrPlan => Condition::all().add(
                referral::Column::RefereeId
                    .in_subquery(referees(&[account::Column::MaskedName, account::Column::Plan])),
            ),
        });
    }
    let total = base.clone().count(db).await?;
    let ordered = match order {
        ReferralOrder::Newest => base.order_by(referral::Column::Id, Order::Desc),
        ReferralOrder::Oldest => base.order_by(referral::Column::Id, Order::Asc),
        ReferralOrder::MostEarned => base
            .order_by(Expr::cust(EARNED), Order::Desc)
            .order_by(referral::Column::Id, Order::Desc),
        ReferralOrder::LeastEarned => base
            .order_by(Expr::cust(EARNED), Order::Asc)
            .order_by(referral::Column::Id, Order::Desc),
    };
    let mut items = ordered.offset(offset).limit(request.fetch_limit()).all(db).await?;
    let has_next = items.len() as u64 > request.first;
    items.truncate(usize::try_from(request.first).unwrap_or(usize::MAX));
    Ok(ReferralPage {
        items,
        has_next,
        total,
        offset,
    })
}
