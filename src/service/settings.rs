//! The program's settings: one row, read on most requests, changed by admins.

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::{audit, required_text};
use entity::program_settings;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, Set};

pub const SETTINGS_ID: i32 = 1;
pub const MAX_GB_PER_CLAIM: i32 = 1000;
/// The largest claim limit an admin may set (either of them).
pub const MAX_CLAIM_LIMIT: i32 = 10_000;

pub async fn get(db: &impl ConnectionTrait) -> AppResult<program_settings::Model> {
    program_settings::Entity::find_by_id(SETTINGS_ID)
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the program_settings row is missing")))
}

/// What an admin may change; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct SettingsPatch {
    pub enabled: Option<bool>,
    pub currency: Option<String>,
    pub referral_link_template: Option<String>,
    pub gb_per_claim: Option<i32>,
    pub landing_url: Option<String>,
    pub cookie_days: Option<i32>,
    pub minimum_withdrawal: Option<Amount>,
    pub require_verified_payment_for_link: Option<bool>,
    /// `Some(None)` removes the limit.
    pub max_pending_claims: Option<Option<i32>>,
    /// `Some(None)` removes the limit.
    pub max_claims_per_day: Option<Option<i32>>,
}

pub async fn update(db: &DatabaseConnection, actor: &str, patch: SettingsPatch) -> AppResult<program_settings::Model> {
    // Settings whose behaviour is not built yet are refused, never stored and ignored.
    let unsupported = [
        ("landingUrl", patch.landing_url.is_some()),
        ("cookieDays", patch.cookie_days.is_some()),
        ("minimumWithdrawal", patch.minimum_withdrawal.is_some()),
        (
            "requireVerifiedPaymentForLink",
            patch.require_verified_payment_for_link.is_some(),
        ),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(AppError::bad_input(format!(
            "{name} is not supported by this server yet"
        )));
    }
    let currency = patch.currency.as_deref().map(parse_currency).transpose()?;
    let template = patch
        .referral_link_template
        .as_deref()
        .map(parse_link_template)
        .transpose()?;
    if let Some(gb) = patch.gb_per_claim
        && !(1..=MAX_GB_PER_CLAIM).contains(&gb)
    {
        return Err(AppError::bad_input(format!(
            "gbPerClaim must be between 1 and {MAX_GB_PER_CLAIM}"
        )));
    }

    for (name, limit) in [
        ("maxPendingClaims", patch.max_pending_claims),
        ("maxClaimsPerDay", patch.max_claims_per_day),
    ] {
        if let Some(Some(limit)) = limit
            && !(1..=MAX_CLAIM_LIMIT).contains(&limit)
        {
            return Err(AppError::bad_input(format!(
                "{name} must be between 1 and {MAX_CLAIM_LIMIT}, or null for no limit"
            )));
        }
    }

    let txn = begin_write(db).await?;
    let before = get(&txn).await?;
    let mut row = before.clone().into_active_model();
    if let Some(enabled) = patch.enabled {
        row.enabled = Set(enabled);
    }
    if let Some(currency) = currency {
        row.currency = Set(currency);
    }
    if let Some(template) = template {
        row.referral_link_template = Set(template);
    }
    if let Some(gb) = patch.gb_per_claim {
        row.gb_per_claim = Set(gb);
    }
    if let Some(limit) = patch.max_pending_claims {
        row.max_pending_claims = Set(limit);
    }
    if let Some(limit) = patch.max_claims_per_day {
        row.max_claims_per_day = Set(limit);
    }
    row.updated_at = Set(chrono::Utc::now());
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "UPDATE_PROGRAM_SETTINGS",
        "program",
        serde_json::to_value(&before).unwrap_or_default(),
        serde_json::to_value(&after).unwrap_or_default(),
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

fn parse_currency(input: &str) -> AppResult<String> {
    let currency = input.trim().to_ascii_uppercase();
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(currency)
    } else {
        Err(AppError::bad_input("currency must be a three-letter ISO 4217 code"))
    }
}

fn parse_link_template(input: &str) -> AppResult<String> {
    let template = required_text("referralLinkTemplate", input, 500)?;
    if !template.contains("{code}") {
        return Err(AppError::bad_input("referralLinkTemplate must contain {code}"));
    }
    let expanded = template.replace("{publicUrl}", "http://x");
    if !(expanded.starts_with("http://") || expanded.starts_with("https://")) {
        return Err(AppError::bad_input(
            "referralLinkTemplate must start with http://, https:// or {publicUrl}",
        ));
    }
    Ok(template)
}

/// The link a customer shares: the template with `{publicUrl}` and `{code}` filled in.
pub fn referral_link(settings: &program_settings::Model, public_url: &str, code: &str) -> String {
    settings
        .referral_link_template
        .replace("{publicUrl}", public_url)
        .replace("{code}", code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_templates_need_a_code_and_a_scheme() {
        assert!(parse_link_template("https://example.com/join?ref={code}").is_ok());
        assert!(parse_link_template("{publicUrl}/r/{code}").is_ok());
        assert!(parse_link_template("https://example.com/join").is_err());
        assert!(parse_link_template("javascript:{code}").is_err());
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(parse_currency("eur").ok(), Some("EUR".to_owned()));
        assert!(parse_currency("EURO").is_err());
    }
}
