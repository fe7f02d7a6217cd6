//! The program's settings: one row, read on most requests, changed by admins. Reads are served
//! from memory (`cache`); writes announce themselves so that every instance reads them again.

pub mod cache;

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::{audit, required_text};
use entity::enums::PayoutSchedule;
use entity::program_settings;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QuerySelect, Set};

pub const SETTINGS_ID: i32 = 1;
pub const MAX_GB_PER_CLAIM: i32 = 1000;
/// The largest claim limit an admin may set (either of them).
pub const MAX_CLAIM_LIMIT: i32 = 10_000;
/// How long the referral cookie may live, in days.
pub const COOKIE_DAYS: std::ops::RangeInclusive<i32> = 1..=365;
const MAX_LANDING_URL: usize = 500;
/// The longest reorder window an admin may set: 30 days.
pub const MAX_REORDER_WINDOW_HOURS: i32 = 720;
/// The longest `active_referral_days`: ten years.
pub const MAX_ACTIVE_REFERRAL_DAYS: i32 = 3650;
/// The most a cash setting (the minimum withdrawal, the affiliate sign-up bonus) may be: a
/// million in the program's currency, far beyond any real program, well inside the ledger's
/// integers.
pub const MAX_CASH_SETTING: Amount = Amount::from_micros(1_000_000 * 1_000_000);
/// The most credit 1 of cash commission may convert into.
pub const MAX_CONVERSION_RATE: Amount = Amount::from_micros(1000 * 1_000_000);

pub async fn get(db: &impl ConnectionTrait) -> AppResult<program_settings::Model> {
    program_settings::Entity::find_by_id(SETTINGS_ID)
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the program_settings row is missing")))
}

/// Whether `count` (of the rows a program keeps at most `max` of) leaves room for one more,
/// read after locking the settings row: two admins adding the last one at once queue on it
/// (SQLite's write lock does the same), so the limit holds. `what`: the rows, for the error.
pub async fn room_for_one_more(
    txn: &impl ConnectionTrait,
    count: impl std::future::Future<Output = Result<u64, sea_orm::DbErr>>,
    max: u64,
    what: &str,
) -> AppResult<()> {
    program_settings::Entity::find_by_id(SETTINGS_ID)
        .lock_exclusive()
        .one(txn)
        .await?;
    if count.await? >= max {
        return Err(AppError::bad_input(format!(
            "a program keeps at most {max} {what}; delete one first"
        )));
    }
    Ok(())
}

/// What an admin may change; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct SettingsPatch {
    pub enabled: Option<bool>,
    pub currency: Option<String>,
    pub referral_link_template: Option<String>,
    pub gb_per_claim: Option<i32>,
    /// `Some(None)` (or a blank text) clears it: links land on the built-in page again.
    pub landing_url: Option<Option<String>>,
    pub cookie_days: Option<i32>,
    pub minimum_withdrawal: Option<Amount>,
    pub require_verified_payment_for_link: Option<bool>,
    /// `Some(None)` removes the limit.
    pub max_pending_claims: Option<Option<i32>>,
    /// `Some(None)` removes the limit.
    pub max_claims_per_day: Option<Option<i32>>,
    /// Hours during which a purchase that happened earlier than the first, arriving late,
    /// still corrects it; 0: never.
    pub reorder_window_hours: Option<i32>,
    /// Days within which a referee must have paid an invoice to be an active referral.
    pub active_referral_days: Option<i32>,
    /// CASH paid to an affiliate on its first approval; 0: none.
    pub affiliate_signup_bonus: Option<Amount>,
    /// When cash commission becomes withdrawable, for affiliates without their own schedule.
    pub payout_schedule: Option<PayoutSchedule>,
    /// Credit for 1 of cash commission converted; `Some(None)`: conversion off.
    pub commission_conversion_rate: Option<Option<Amount>>,
}

/// Applies the patch in one transaction. A patch that changes nothing (an admin console
/// sending back the form it read) succeeds without writing or auditing anything.
pub async fn update(
    db: &DatabaseConnection,
    actor: &str,
    patch: SettingsPatch,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<program_settings::Model> {
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
    let landing_url = patch
        .landing_url
        .map(|url| url.as_deref().map(parse_landing_url).transpose().map(Option::flatten))
        .transpose()?;
    if let Some(days) = patch.cookie_days
        && !COOKIE_DAYS.contains(&days)
    {
        return Err(AppError::bad_input(format!(
            "cookieDays must be between {} and {}",
            COOKIE_DAYS.start(),
            COOKIE_DAYS.end()
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

    if let Some(hours) = patch.reorder_window_hours
        && !(0..=MAX_REORDER_WINDOW_HOURS).contains(&hours)
    {
        return Err(AppError::bad_input(format!(
            "reorderWindowHours must be between 0 and {MAX_REORDER_WINDOW_HOURS}"
        )));
    }

    if let Some(days) = patch.active_referral_days
        && !(1..=MAX_ACTIVE_REFERRAL_DAYS).contains(&days)
    {
        return Err(AppError::bad_input(format!(
            "activeReferralDays must be between 1 and {MAX_ACTIVE_REFERRAL_DAYS}"
        )));
    }

    for (name, amount) in [
        ("minimumWithdrawal", patch.minimum_withdrawal),
        ("affiliateSignupBonus", patch.affiliate_signup_bonus),
    ] {
        if let Some(amount) = amount
            && !(Amount::ZERO..=MAX_CASH_SETTING).contains(&amount)
        {
            return Err(AppError::bad_input(format!(
                "{name} must be between 0 and {MAX_CASH_SETTING}"
            )));
        }
    }

    if let Some(Some(rate)) = patch.commission_conversion_rate
        && !(rate.is_positive() && rate <= MAX_CONVERSION_RATE)
    {
        return Err(AppError::bad_input(format!(
            "commissionConversionRate must be above 0 and at most {MAX_CONVERSION_RATE}, or null for no conversion"
        )));
    }

    let txn = begin_write(db).await?;
    let before = get(&txn).await?;
    let mut wanted = before.clone();
    if let Some(enabled) = patch.enabled {
        wanted.enabled = enabled;
    }
    if let Some(currency) = currency {
        wanted.currency = currency;
    }
    if let Some(template) = template {
        wanted.referral_link_template = template;
    }
    if let Some(gb) = patch.gb_per_claim {
        wanted.gb_per_claim = gb;
    }
    if let Some(limit) = patch.max_pending_claims {
        wanted.max_pending_claims = limit;
    }
    if let Some(limit) = patch.max_claims_per_day {
        wanted.max_claims_per_day = limit;
    }
    if let Some(landing_url) = landing_url {
        wanted.landing_url = landing_url;
    }
    if let Some(days) = patch.cookie_days {
        wanted.cookie_days = days;
    }
    if let Some(hours) = patch.reorder_window_hours {
        wanted.reorder_window_hours = hours;
    }
    if let Some(days) = patch.active_referral_days {
        wanted.active_referral_days = days;
    }
    if let Some(minimum) = patch.minimum_withdrawal {
        wanted.minimum_withdrawal = minimum.micros();
    }
    if let Some(bonus) = patch.affiliate_signup_bonus {
        wanted.affiliate_signup_bonus = bonus.micros();
    }
    if let Some(schedule) = patch.payout_schedule {
        wanted.payout_schedule = schedule;
    }
    if let Some(rate) = patch.commission_conversion_rate {
        wanted.commission_conversion_rate = rate.map(Amount::micros);
    }
    if let Some(required) = patch.require_verified_payment_for_link {
        wanted.require_verified_payment_for_link = required;
    }
    if wanted == before {
        txn.rollback().await?;
        return Ok(before);
    }
    let mut row = wanted.into_active_model().reset_all();
    row.updated_at = Set(now);
    // The sandbox clock's offset is not a setting: only `sandbox::advance` writes it, under a
    // row lock, so that an admin saving the settings form never moves it back.
    row.clock_offset_ms = sea_orm::ActiveValue::NotSet;
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "UPDATE_PROGRAM_SETTINGS",
        "program",
        serde_json::to_value(&before).unwrap_or_default(),
        serde_json::to_value(&after).unwrap_or_default(),
        now,
    )
    .await?;
    cache::announce_change(&txn).await?;
    txn.commit().await?;
    Ok(after)
}

/// Where referral links land: an absolute http(s) URL with a host and no credentials. A blank
/// text means none (the built-in page).
pub fn parse_landing_url(input: &str) -> AppResult<Option<String>> {
    let input = input.trim();
    if input.is_empty() {
        return Ok(None);
    }
    if input.chars().count() > MAX_LANDING_URL {
        return Err(AppError::bad_input(format!(
            "landingUrl must be at most {MAX_LANDING_URL} characters"
        )));
    }
    let url = url::Url::parse(input)
        .map_err(|_| AppError::bad_input("landingUrl must be an absolute http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(AppError::bad_input(
            "landingUrl must be an absolute http:// or https:// URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AppError::bad_input("landingUrl must not hold a user name or password"));
    }
    Ok(Some(url.to_string()))
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
    fn landing_urls_are_absolute_web_addresses() {
        assert_eq!(
            parse_landing_url(" https://shop.example.com/signup?plan=pro ").ok(),
            Some(Some("https://shop.example.com/signup?plan=pro".to_owned()))
        );
        // Normalized, so what is stored is what the redirect builds on.
        assert_eq!(
            parse_landing_url("HTTP://Shop.Example.com").ok(),
            Some(Some("http://shop.example.com/".to_owned()))
        );
        assert_eq!(parse_landing_url("  ").ok(), Some(None));
        for bad in [
            "/signup",
            "shop.example.com",
            "javascript:alert(1)",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "data:text/html,hi",
        ] {
            assert!(parse_landing_url(bad).is_err(), "{bad}");
        }
        assert!(parse_landing_url(&format!("https://example.com/{}", "a".repeat(500))).is_err());
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(parse_currency("eur").ok(), Some("EUR".to_owned()));
        assert!(parse_currency("EURO").is_err());
    }
}
