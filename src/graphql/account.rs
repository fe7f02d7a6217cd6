//! Accounts: the customer's own (`me`), registration by the billing system, referral links.

use crate::auth::RoleGuard;
use crate::graphql::context::{loader, now, settings, state, viewer};
use crate::graphql::enums::BillingScheme;
use crate::graphql::loaders::prime_account;
use crate::graphql::types::{Account, Referral};
use crate::service::accounts;
use crate::service::accounts::dashboard::{self, AccountParts};
use crate::service::settings::referral_link;
use crate::service::signup::{self, Registration};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The customer's own account; null while the billing system has not registered it.
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<Account>> {
        let external_id = viewer(ctx).customer_external_id()?;
        // Its referral (with the referrer) and its balances come in the same statement when
        // the query asks for them.
        let selected = ctx.look_ahead();
        let parts = AccountParts {
            referral: selected.field("referral").exists(),
            balances: selected.field("balance").exists(),
        };
        let Some(read) = dashboard::account(
            state(ctx).direct(),
            state(ctx).dashboard_batches.as_ref(),
            external_id,
            parts,
            now(ctx),
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(Account(prime_account(loader(ctx), read).await)))
    }
}

#[derive(InputObject)]
pub struct RegisterAccountInput {
    /// The platform's id of the account (a customer token's `sub`).
    pub external_id: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// The code the newcomer signed up with, in any case.
    pub referral_code: Option<String>,
    /// How the account pays; POSTPAID when left out.
    pub billing_scheme: Option<BillingScheme>,
    /// An account group such as `business`; rules may be limited to groups.
    pub group: Option<String>,
    /// The end user's IP address, as the billing system saw the sign-up. Lookups of unknown
    /// codes are limited per address (else per caller); valid codes never are.
    pub client_address: Option<String>,
}

#[derive(SimpleObject)]
pub struct RegisterAccountPayload {
    pub account: Account,
    /// The attribution: accepted (PENDING or QUALIFIED), or REJECTED with its reason.
    pub referral: Option<Referral>,
}

#[derive(SimpleObject)]
pub struct ReferralLink {
    pub code: String,
    pub url: String,
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Registers an account at sign-up. Registering the same externalId again answers the
    /// existing account and changes nothing: a retry with the same code answers the first
    /// attribution again, another code is recorded as rejected (`EXISTING_ACCOUNT`), since only
    /// newcomers are referred.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn register_account(&self, ctx: &Context<'_>, input: RegisterAccountInput) -> Result<RegisterAccountPayload> {
        let registered = signup::register(
            &state(ctx).db,
            &state(ctx).limits,
            Registration {
                external_id: input.external_id,
                display_name: input.display_name,
                email: input.email,
                referral_code: input.referral_code,
                billing_scheme: input.billing_scheme.map(Into::into),
                group: input.group,
                client_address: input.client_address,
                caller: viewer(ctx).actor(),
            },
            now(ctx),
        )
        .await?;
        Ok(RegisterAccountPayload {
            account: Account(registered.account),
            referral: registered.referral.map(Referral),
        })
    }

    /// The customer's code and the link to share. FORBIDDEN while the program requires a
    /// verified payment method (`requireVerifiedPaymentForLink`) and the account has none.
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn generate_referral_link(&self, ctx: &Context<'_>) -> Result<ReferralLink> {
        let external_id = viewer(ctx).customer_external_id()?;
        let account = accounts::get_by_external_id(&state(ctx).db, external_id).await?;
        accounts::may_share(&account, settings(ctx))?;
        let url = referral_link(settings(ctx), &state(ctx).config.public_url, &account.referral_code);
        Ok(ReferralLink {
            code: account.referral_code,
            url,
        })
    }
}
