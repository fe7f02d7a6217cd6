//! The program's switch and settings.

use crate::auth::RoleGuard;
use crate::graphql::context::{now, program_settings, state, viewer};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Program, ProgramSettings};
use crate::service::settings::{self, SettingsPatch};
use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result};

#[derive(Default)]
pub struct ProgramQuery;

#[Object]
impl ProgramQuery {
    /// Whether the program runs, for any signed-in viewer.
    #[graphql(guard = "RoleGuard::ANY")]
    async fn program(&self, ctx: &Context<'_>) -> Result<Program> {
        Ok(Program(program_settings(ctx).await?.clone()))
    }

    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn program_settings(&self, ctx: &Context<'_>) -> Result<ProgramSettings> {
        Ok(program_settings(ctx).await?.clone().into())
    }
}

/// Settings to change; a field left out keeps its value. The whole form read through
/// `programSettings` may be sent back: values equal to the current ones change nothing.
#[derive(InputObject)]
pub struct ProgramSettingsInput {
    pub enabled: Option<bool>,
    pub currency: Option<String>,
    pub referral_link_template: Option<String>,
    /// Where referral links land (an absolute http(s) URL), with `ref=CODE` added; null or
    /// blank clears it, and links land on the server's built-in page.
    pub landing_url: MaybeUndefined<String>,
    /// Days the referral cookie lives, 1 to 365.
    pub cookie_days: Option<i32>,
    pub gb_per_claim: Option<i32>,
    /// Not built yet: only its current value (0) is accepted.
    pub minimum_withdrawal: Option<Decimal>,
    /// Not built yet: only its current value (false) is accepted.
    pub require_verified_payment_for_link: Option<bool>,
    /// Claims one account may have waiting for delivery at once; null: no limit.
    pub max_pending_claims: MaybeUndefined<i32>,
    /// Claims one account may make in any 24 hours; null: no limit.
    pub max_claims_per_day: MaybeUndefined<i32>,
    /// Hours, 0 to 720, after a first purchase was taken as first during which a purchase
    /// that happened earlier, arriving late, still corrects it.
    pub reorder_window_hours: Option<i32>,
}

/// Left out: unchanged; null: cleared; a value: set.
fn change<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

#[derive(Default)]
pub struct ProgramMutation;

#[Object]
impl ProgramMutation {
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn update_program_settings(&self, ctx: &Context<'_>, input: ProgramSettingsInput) -> Result<ProgramSettings> {
        let patch = SettingsPatch {
            enabled: input.enabled,
            currency: input.currency,
            referral_link_template: input.referral_link_template,
            gb_per_claim: input.gb_per_claim,
            landing_url: input.landing_url.into(),
            cookie_days: input.cookie_days,
            minimum_withdrawal: input.minimum_withdrawal.map(|d| d.0),
            require_verified_payment_for_link: input.require_verified_payment_for_link,
            max_pending_claims: change(input.max_pending_claims),
            max_claims_per_day: change(input.max_claims_per_day),
            reorder_window_hours: input.reorder_window_hours,
        };
        let updated = settings::update(&state(ctx).db, &viewer(ctx).actor(), patch, now(ctx)).await?;
        Ok(updated.into())
    }
}
