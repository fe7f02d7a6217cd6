//! The platform closed the account: it becomes `CLOSED` (a referee no longer active), with the
//! time it happened. Closing a closed account again keeps the first closure. No rule triggers
//! on a closure; what the account's later events do is in `events` (they earn nothing).

use super::{Recorded, Step};
use crate::error::AppResult;
use entity::account;
use entity::enums::AccountStatus;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

pub(super) async fn record(step: &Step<'_>) -> AppResult<Recorded> {
    let closed = account::Entity::update_many()
        .col_expr(account::Column::Status, Expr::value(AccountStatus::Closed))
        .col_expr(account::Column::ClosedAt, Expr::value(step.event.occurred_at))
        .filter(account::Column::Id.eq(step.account.id))
        .filter(account::Column::ClosedAt.is_null())
        .exec(step.txn)
        .await?;
    if closed.rows_affected == 1 {
        tracing::info!(account = step.account.id, "account closed");
    }
    Ok(Recorded::default())
}
