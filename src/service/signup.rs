//! The sign-up flow: registration by the billing system creates the account (or answers again
//! for one that exists), attributes a newcomer's code, and pays SIGNUP rules, in one
//! transaction. It calls down to the records (`accounts`, `referrals`) and the engine
//! (`rewards::apply`); nothing below calls it.

use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::limits::{Limits, client_key};
use crate::service::accounts::{self, Profile};
use crate::service::codes::ReferralCode;
use crate::service::referrals::{self, LookupQuota};
use crate::service::rewards;
use crate::service::rules::{self, EventFacts};
use crate::service::{key_text, optional_text, required_text};
use entity::enums::{BillingScheme, ReferralStatus};
use entity::{account, referral};
use sea_orm::DatabaseConnection;
use std::net::IpAddr;

#[derive(Debug)]
pub struct Registration {
    pub external_id: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub referral_code: Option<String>,
    /// POSTPAID when not given.
    pub billing_scheme: Option<BillingScheme>,
    /// An account group such as `business`; rules may be limited to groups.
    pub group: Option<String>,
    /// The end user's IP address, as the billing system saw it: unknown codes are counted
    /// against it (else against `caller`).
    pub client_address: Option<String>,
    /// Who sends the registration (the audit log's actor form).
    pub caller: String,
}

#[derive(Debug)]
pub struct Registered {
    pub account: account::Model,
    pub referral: Option<referral::Model>,
}

/// Registers an account, or answers again for one that exists (registration is idempotent).
/// With a referral code, a new account is attributed to the code's owner, or the attempt is
/// recorded as rejected with its reason; an existing account is never attributed (see
/// `referrals::attribute_existing`). An account is attributed at most once: a unique index
/// allows one referral that is not rejected per referee.
pub async fn register(
    db: &DatabaseConnection,
    limits: &Limits,
    input: Registration,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Registered> {
    let external_id = required_text("externalId", &input.external_id, 128)?;
    let display_name = optional_text("displayName", input.display_name.as_deref(), 200)?;
    let email = optional_text("email", input.email.as_deref(), 320)?;
    if email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(AppError::bad_input("email is not an email address"));
    }
    let group = input
        .group
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| key_text("group", g))
        .transpose()?;
    let client_address = optional_text("clientAddress", input.client_address.as_deref(), 64)?
        .map(|address| {
            address
                .parse::<IpAddr>()
                .map_err(|_| AppError::bad_input("clientAddress is not an IP address"))
        })
        .transpose()?;
    let quota = LookupQuota {
        limits,
        client: client_key(client_address, &input.caller),
    };
    let profile = Profile {
        display_name,
        email,
        group,
        billing_scheme: input.billing_scheme.unwrap_or(BillingScheme::Postpaid),
    };
    let code = match input.referral_code.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(code) => Some(ReferralCode::parse(code)?),
    };

    let txn = begin_write(db).await?;
    let (account, created) = match accounts::find_by_external_id(&txn, &external_id).await? {
        Some(existing) => (existing, false),
        None => accounts::insert_account(&txn, &external_id, profile, now).await?,
    };
    let referral = match code {
        None => accounts::accepted_referral_of(&txn, account.id).await?,
        Some(code) if created => {
            let referral = referrals::attribute_new(&txn, &account, &code, &quota, now).await?;
            if referral.status != ReferralStatus::Rejected {
                rewards::apply(
                    &txn,
                    &account,
                    None,
                    &EventFacts::Signup,
                    None,
                    &rules::enabled_rules(&txn).await?,
                    now,
                )
                .await?;
            }
            Some(referral)
        }
        Some(code) => Some(referrals::attribute_existing(&txn, &account, &code, now).await?),
    };
    txn.commit().await?;
    Ok(Registered { account, referral })
}
