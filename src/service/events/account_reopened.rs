//! The platform reopened a closed account: it is `ACTIVE` again (an active referral once it
//! pays), and its events after this one earn again. Reopening an open account changes nothing.
//! No rule triggers on it.

use super::{Recorded, Step};
use crate::error::AppResult;
use entity::account;
use entity::enums::AccountStatus;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

pub(super) async fn record(step: &Step<'_>) -> AppResult<Recorded> {
    let reopened = account::Entity::update_many()
        .col_expr(account::Column::Status, Expr::value(AccountStatus::Active))
        .col_expr(
            account::Column::ClosedAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(account::Column::Id.eq(step.account.id))
        .filter(account::Column::ClosedAt.is_not_null())
        .exec(step.txn)
        .await?;
    if reopened.rows_affected == 1 {
        tracing::info!(account = step.account.id, "account reopened");
    }
    Ok(Recorded::default())
}
