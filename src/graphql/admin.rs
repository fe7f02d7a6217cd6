//! Account administration and the audit log (admin).

use crate::auth::RoleGuard;
use crate::graphql::context::{state, viewer};
use crate::graphql::ids::{Kind, from_id};
use crate::graphql::types::{Account, AuditEntry, Page1, connection, page_request};
use crate::service::{accounts, audit};
use async_graphql::{Context, ID, InputObject, Object, Result};

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Accounts whose externalId, referral code, name or email contains `search` (any case),
    /// newest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<Account>> {
        let page = accounts::search(&state(ctx).db, search.as_deref(), page_request(first, after)?).await?;
        Ok(connection(page, |a| a.id, Account))
    }

    /// One account; null when there is none with this id.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn account(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Account>> {
        let id = from_id(Kind::Account, &id)?;
        Ok(accounts::find(&state(ctx).db, id).await?.map(Account))
    }

    /// Every admin change, newest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<AuditEntry>> {
        let page = audit::list(&state(ctx).db, page_request(first, after)?).await?;
        Ok(connection(page, |e| e.id, AuditEntry))
    }
}

#[derive(InputObject)]
pub struct SetReferralCodeInput {
    pub account_id: ID,
    /// 4 to 32 letters and digits, in any case; kept upper-case.
    pub code: String,
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Gives an account another referral code; the old one stops working at once.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn set_referral_code(&self, ctx: &Context<'_>, input: SetReferralCodeInput) -> Result<Account> {
        let id = from_id(Kind::Account, &input.account_id)?;
        let account = accounts::set_referral_code(&state(ctx).db, &viewer(ctx).actor(), id, &input.code).await?;
        Ok(Account(account))
    }
}
