//! A payment method was verified: what qualifies a postpaid referee. The account keeps when it
//! first happened.

use super::{Recorded, Step};
use crate::error::AppResult;
use crate::service::rules::EventFacts;
use entity::account;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

pub(super) async fn record(step: &Step<'_>) -> AppResult<Recorded> {
    account::Entity::update_many()
        .col_expr(
            account::Column::PaymentMethodVerifiedAt,
            Expr::value(step.event.occurred_at),
        )
        .filter(account::Column::Id.eq(step.account.id))
        .filter(account::Column::PaymentMethodVerifiedAt.is_null())
        .exec(step.txn)
        .await?;
    let (rewards, decisions) = step.apply(&EventFacts::PaymentMethodVerified, None).await?;
    Ok(Recorded {
        rewards,
        decisions,
        amount: None,
        refund_of: None,
    })
}
