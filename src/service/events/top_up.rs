//! A top-up of a prepaid account: its successful top-ups add up, and a rule pays once the
//! account's own total reaches its threshold. A failed top-up is recorded and counts nothing.

use super::{Recorded, Step};
use crate::amount::Amount;
use crate::error::{AppError, AppResult};
use crate::service::rules::EventFacts;
use entity::{account, event};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct TopUp {
    pub amount: Amount,
    pub successful: bool,
}

impl TopUp {
    pub(super) fn canonical(&self) -> AppResult<(TopUp, serde_json::Value)> {
        if !self.amount.is_positive() {
            return Err(AppError::bad_input("amount must be greater than 0"));
        }
        let detail = json!({ "amount": self.amount.micros(), "successful": self.successful });
        Ok((self.clone(), detail))
    }
}

pub(super) async fn record(step: &Step<'_>, top_up: &TopUp) -> AppResult<Recorded> {
    let delta = if top_up.successful { top_up.amount } else { Amount::ZERO };
    let total = add_to_total(step.txn, step.account.id, delta).await?;
    let facts = EventFacts::TopUp {
        successful: top_up.successful,
        total,
    };
    let (rewards, decisions) = step.apply(&facts, None).await?;
    Ok(Recorded {
        rewards,
        decisions,
        amount: Some(top_up.amount),
        refund_of: None,
    })
}

/// Whether a recorded top-up succeeded, from its canonical form.
pub(super) fn succeeded(event: &event::Model) -> AppResult<bool> {
    let payload: serde_json::Value = serde_json::from_str(&event.payload).map_err(AppError::internal)?;
    payload["detail"]["successful"]
        .as_bool()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("top-up {} has no successful flag", event.id)))
}

/// Adds `delta` (negative for a refund) to the account's own total of successful top-ups and
/// returns the new total. The update and the read are one statement, under the row's lock:
/// concurrent top-ups each see the total that includes exactly the top-ups before them.
pub(super) async fn add_to_total(db: &impl ConnectionTrait, account_id: i64, delta: Amount) -> AppResult<Amount> {
    let updated = account::Entity::update_many()
        .col_expr(
            account::Column::TopUpTotal,
            Expr::col(account::Column::TopUpTotal).add(delta.micros()),
        )
        .filter(account::Column::Id.eq(account_id))
        .exec_with_returning(db)
        .await?;
    let total = updated
        .first()
        .map(|a| a.top_up_total)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {account_id} vanished")))?;
    Ok(Amount::from_micros(total))
}
