//! The affiliate program's records: an account's standing in it and its own terms. An admin
//! who sets an account's terms makes it an approved affiliate (it need not have applied).

use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::accounts::find;
use crate::service::audit;
use crate::service::rules::AffiliateTerms;
use entity::account;
use entity::enums::AffiliateStatus;
use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel, Set};
use serde_json::json;

/// Sets (or, with `None`, removes) an account's affiliate terms, audited. Terms the account has
/// already change nothing and write nothing.
pub async fn set_terms(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    terms: Option<AffiliateTerms>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let txn = begin_write(db).await?;
    let before = find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    let status = before.affiliate_status.unwrap_or(AffiliateStatus::Approved);
    let terms_json = terms.as_ref().map(AffiliateTerms::to_json);
    if before.affiliate_status == Some(status) && before.affiliate_terms == terms_json {
        return Ok(before);
    }
    let mut row = before.clone().into_active_model();
    row.affiliate_status = Set(Some(status));
    row.affiliate_terms = Set(terms_json);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "SET_AFFILIATE_TERMS",
        &format!("account:{}", after.external_id),
        json!({ "affiliateStatus": before.affiliate_status, "terms": AffiliateTerms::of(&before)? }),
        json!({ "affiliateStatus": after.affiliate_status, "terms": terms }),
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(account = after.id, "affiliate terms set");
    Ok(after)
}
