//! Accounts: creating one (the sign-up flow is `signup`), lookups, masked names; what an
//! account's dashboard shows is read by `dashboard`.

pub mod dashboard;

use crate::db::{begin_write, in_ids, inserted};
use crate::error::{AppError, AppResult};
use crate::service::audit;
use crate::service::codes::ReferralCode;
use crate::service::page::{self, Page, PageRequest};
use chrono::{DateTime, Utc};
use entity::enums::{AccountStatus, BillingCycle, BillingScheme, ReferralStatus, Unit};
use entity::{account, balance, program_settings, referral};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, LockType, OnConflict, Query, SelectStatement};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DerivePartialModel, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use std::collections::HashMap;

/// Tries at generating a code that is not taken yet; with 31⁸ codes a second try is rare.
const CODE_ATTEMPTS: usize = 8;

/// What registration records about a new account.
pub struct Profile {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub group: Option<String>,
    pub billing_scheme: BillingScheme,
}

/// The new account and `true`, or, when a concurrent registration of the same externalId won,
/// that account and `false`.
pub async fn insert_account(
    txn: &impl ConnectionTrait,
    external_id: &str,
    profile: Profile,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<(account::Model, bool)> {
    for _ in 0..CODE_ATTEMPTS {
        let row = account::ActiveModel {
            external_id: Set(external_id.to_owned()),
            display_name: Set(profile.display_name.clone()),
            masked_name: Set(profile.display_name.as_deref().map(mask_name)),
            email: Set(profile.email.clone()),
            account_group: Set(profile.group.clone()),
            billing_scheme: Set(profile.billing_scheme),
            top_up_total: Set(0),
            payment_method_verified_at: Set(None),
            referral_code: Set(ReferralCode::generate().into_string()),
            status: Set(AccountStatus::Active),
            first_purchase_at: Set(None),
            created_at: Set(now),
            disqualified_at: Set(None),
            disqualification_reason: Set(None),
            ..Default::default()
        };
        // No conflict target: whichever unique index refuses the row (the code, or the
        // externalId registered concurrently by another request), nothing is written.
        let insert = account::Entity::insert(row)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .try_insert()
            .exec_with_returning(txn)
            .await;
        if let Some(account) = inserted(insert)? {
            create_balances(txn, account.id).await?;
            return Ok((account, true));
        }
        if let Some(existing) = find_by_external_id(txn, external_id).await? {
            return Ok((existing, false));
        }
    }
    Err(AppError::internal(anyhow::anyhow!(
        "could not generate a free referral code"
    )))
}

/// Every account has one balance row per unit from the start, so posting is always an UPDATE.
async fn create_balances(txn: &impl ConnectionTrait, account_id: i64) -> AppResult<()> {
    let rows = [Unit::Points, Unit::Credit, Unit::Cash].map(|unit| balance::ActiveModel {
        account_id: Set(account_id),
        unit: Set(unit),
        available: Set(0),
        pending: Set(0),
        lifetime_earned: Set(0),
        ..Default::default()
    });
    balance::Entity::insert_many(rows).exec_without_returning(txn).await?;
    Ok(())
}

pub async fn find_by_external_id(db: &impl ConnectionTrait, external_id: &str) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find()
        .filter(account::Column::ExternalId.eq(external_id))
        .one(db)
        .await?)
}

pub async fn get_by_external_id(db: &impl ConnectionTrait, external_id: &str) -> AppResult<account::Model> {
    find_by_external_id(db, external_id)
        .await?
        .ok_or_else(|| no_such_external_id(external_id))
}

/// The answer to an external id that names no account.
pub fn no_such_external_id(external_id: &str) -> AppError {
    AppError::not_found(format!("no account with externalId {external_id:?}"))
}

pub async fn find_by_code(db: &impl ConnectionTrait, code: &ReferralCode) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find()
        .filter(account::Column::ReferralCode.eq(code.as_str()))
        .one(db)
        .await?)
}

/// What one side of a referral shows of an account (`Participant`): nine of its columns.
/// A friends list reads twenty of these a page, and PostgreSQL's work per row grows with the
/// columns selected; the whole account is read only when staff ask for it.
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "account::Entity")]
pub struct ParticipantAccount {
    pub id: i64,
    pub external_id: String,
    pub display_name: Option<String>,
    pub referral_code: String,
    pub status: AccountStatus,
    pub first_purchase_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub plan: Option<String>,
    pub billing_cycle: Option<BillingCycle>,
}

impl From<account::Model> for ParticipantAccount {
    fn from(account: account::Model) -> Self {
        ParticipantAccount {
            id: account.id,
            external_id: account.external_id,
            display_name: account.display_name,
            referral_code: account.referral_code,
            status: account.status,
            first_purchase_at: account.first_purchase_at,
            created_at: account.created_at,
            plan: account.plan,
            billing_cycle: account.billing_cycle,
        }
    }
}

/// The participant columns of the accounts of `ids`.
pub async fn participants_by_ids(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, ParticipantAccount>> {
    let rows = account::Entity::find()
        .filter(in_ids(db.get_database_backend(), account::Column::Id, ids))
        .into_partial_model::<ParticipantAccount>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|a| (a.id, a)).collect())
}

pub async fn by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashMap<i64, account::Model>> {
    let rows = account::Entity::find()
        .filter(in_ids(db.get_database_backend(), account::Column::Id, ids))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|a| (a.id, a)).collect())
}

/// The referral that brought this account, if one was accepted.
pub async fn accepted_referral_of(db: &impl ConnectionTrait, referee_id: i64) -> AppResult<Option<referral::Model>> {
    Ok(referral::Entity::find()
        .filter(referral::Column::RefereeId.eq(referee_id))
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected))
        .one(db)
        .await?)
}

/// The account's rejected referrals, newest first, at most 100.
pub async fn rejected_referrals_of(db: &impl ConnectionTrait, referee_id: i64) -> AppResult<Vec<referral::Model>> {
    Ok(referral::Entity::find()
        .filter(referral::Column::RefereeId.eq(referee_id))
        .filter(referral::Column::Status.eq(ReferralStatus::Rejected))
        .order_by_desc(referral::Column::Id)
        .limit(100)
        .all(db)
        .await?)
}

/// The accepted referrals of many referees, keyed by referee, in one query.
pub async fn accepted_referrals_of(
    db: &impl ConnectionTrait,
    referee_ids: &[i64],
) -> AppResult<HashMap<i64, referral::Model>> {
    let rows = referral::Entity::find()
        .filter(referral::Column::RefereeId.is_in(referee_ids.iter().copied()))
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.referee_id, r)).collect())
}

/// Whether the account may share its referral link: not while the program requires a verified
/// payment method and it has none.
pub fn may_share(account: &account::Model, settings: &program_settings::Model) -> AppResult<()> {
    match settings.require_verified_payment_for_link && account.payment_method_verified_at.is_none() {
        true => Err(AppError::Forbidden(
            "verify a payment method before sharing a referral link".into(),
        )),
        false => Ok(()),
    }
}

/// The ids of `referrer_id`'s accepted referees, as a subquery.
pub fn referees_of(referrer_id: i64) -> SelectStatement {
    Query::select()
        .column(referral::Column::RefereeId)
        .from(referral::Entity)
        .and_where(Expr::col(referral::Column::ReferrerId).eq(referrer_id))
        .and_where(Expr::col(referral::Column::Status).ne(ReferralStatus::Rejected))
        .to_owned()
}

/// How many of `referrer_id`'s referees are active referrals: accepted, open, not
/// disqualified, and with a paid invoice that happened at or after `since`.
pub async fn active_referrals(
    db: &impl ConnectionTrait,
    referrer_id: i64,
    since: chrono::DateTime<chrono::Utc>,
) -> AppResult<u32> {
    let count = account::Entity::find()
        .filter(account::Column::Id.in_subquery(referees_of(referrer_id)))
        .filter(account::Column::Status.eq(AccountStatus::Active))
        .filter(account::Column::DisqualifiedAt.is_null())
        .filter(account::Column::LastInvoiceAt.gte(since))
        .count(db)
        .await?;
    u32::try_from(count).map_err(AppError::internal)
}

/// Locks the account's row until the transaction ends and returns it as it is then: events of
/// one account that must be decided one after the other take this first. FOR NO KEY UPDATE:
/// concurrent events of the account hold a key-share lock on its row (their foreign key) until
/// they end; an exclusive lock would wait for them while they wait for it. (SQLite takes the
/// write lock at the start of every write transaction instead.)
pub async fn lock(db: &impl ConnectionTrait, id: i64) -> AppResult<account::Model> {
    account::Entity::find_by_id(id)
        .lock(LockType::NoKeyUpdate)
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("account {id} vanished")))
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find_by_id(id).one(db).await?)
}

/// Accounts whose externalId, referral code, name or email contains `search` (any case),
/// newest first.
pub async fn search(
    db: &impl ConnectionTrait,
    search: Option<&str>,
    page: PageRequest,
) -> AppResult<Page<account::Model>> {
    let mut base = account::Entity::find();
    if let Some(term) = search.map(str::trim).filter(|t| !t.is_empty()) {
        if term.chars().count() > 200 {
            return Err(AppError::bad_input("search must be at most 200 characters"));
        }
        let pattern = format!("%{}%", escape_like(&term.to_lowercase()));
        let contains = |column: account::Column| {
            Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        base = base.filter(
            Condition::any()
                .add(contains(account::Column::ExternalId))
                .add(contains(account::Column::ReferralCode))
                .add(contains(account::Column::DisplayName))
                .add(contains(account::Column::Email)),
        );
    }
    Ok(page::fetch(db, base, account::Column::Id, page).await?)
}

/// `%`, `_` and the escape character itself match literally in a search.
pub fn escape_like(term: &str) -> String {
    let mut escaped = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Gives an account another code. The old code stops working at once (codes are looked up
/// live); the link follows the code. A code another account has is `CODE_TAKEN`, decided by the
/// unique index, so two admins racing for one code cannot both get it.
pub async fn set_referral_code(
    db: &DatabaseConnection,
    actor: &str,
    account_id: i64,
    code: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<account::Model> {
    let code = ReferralCode::parse(code)?;
    let txn = begin_write(db).await?;
    let before = find(&txn, account_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such account"))?;
    if before.referral_code == code.as_str() {
        return Ok(before);
    }
    let taken = || AppError::CodeTaken(format!("the code {} belongs to another account", code.as_str()));
    if find_by_code(&txn, &code).await?.is_some() {
        return Err(taken());
    }
    let mut row = before.clone().into_active_model();
    row.referral_code = Set(code.as_str().to_owned());
    let after = match row.update(&txn).await {
        Ok(after) => after,
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => return Err(taken()),
        Err(err) => return Err(err.into()),
    };
    audit::record(
        &txn,
        actor,
        "SET_REFERRAL_CODE",
        &format!("account:{}", after.external_id),
        serde_json::json!({ "referralCode": before.referral_code }),
        serde_json::json!({ "referralCode": after.referral_code }),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// "Jo*** S.": enough for a friend to recognise, not enough to identify a stranger. Stored as
/// `accounts.masked_name` too, the only name an affiliate searches its friends by.
pub use migration::mask_name;

#[cfg(test)]
mod tests {
    use super::mask_name;

    #[test]
    fn search_terms_match_literally() {
        assert_eq!(super::escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn masks_names() {
        assert_eq!(mask_name("John Smith"), "Jo*** S.");
        assert_eq!(mask_name("Jo Ann van Dyke"), "Jo*** D.");
        assert_eq!(mask_name("Alice"), "Al***");
        assert_eq!(mask_name("Łukasz Żółw"), "Łu*** Ż.");
        assert_eq!(mask_name(" "), "***");
    }
}
