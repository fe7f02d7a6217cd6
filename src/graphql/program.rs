//! The program's switch and settings, and a sandbox's clock.

use crate::auth::RoleGuard;
use crate::error::AppError;
use crate::graphql::context::{now, settings, state, viewer};
use crate::graphql::enums::PayoutSchedule;
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Program, ProgramSettings};
use crate::service::sandbox;
use crate::service::settings::{self, SettingsPatch, cache};
use crate::tasks;
use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result};

#[derive(Default)]
pub struct ProgramQuery;

#[Object]
impl ProgramQuery {
    /// Whether the program runs, for any signed-in viewer.
    #[graphql(guard = "RoleGuard::ANY")]
    async fn program(&self, ctx: &Context<'_>) -> Program {
        Program(settings(ctx).clone())
    }

    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn program_settings(&self, ctx: &Context<'_>) -> ProgramSettings {
        settings(ctx).as_ref().clone().into()
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
    /// The least an affiliate may ask to withdraw, 0 to 1,000,000 (0: any amount).
    pub minimum_withdrawal: Option<Decimal>,
    /// CASH paid to an affiliate on its first approval, 0 to 1,000,000 (0: none).
    pub affiliate_signup_bonus: Option<Decimal>,
    /// True: an account without a verified payment method gets no referral link (FORBIDDEN)
    /// and its code does not attribute (REFERRER_UNVERIFIED).
    pub require_verified_payment_for_link: Option<bool>,
    /// Claims one account may have waiting for delivery at once; null: no limit.
    pub max_pending_claims: MaybeUndefined<i32>,
    /// Claims one account may make in any 24 hours; null: no limit.
    pub max_claims_per_day: MaybeUndefined<i32>,
    /// Hours, 0 to 720, after a first purchase was taken as first during which a purchase
    /// that happened earlier, arriving late, still corrects it.
    pub reorder_window_hours: Option<i32>,
    /// Days, 1 to 3650, within which a referee must have paid an invoice to count as an
    /// active referral of its referrer.
    pub active_referral_days: Option<i32>,
    /// When cash commission becomes withdrawable, for affiliates without their own schedule;
    /// commission already earned keeps the date it was given.
    pub payout_schedule: Option<PayoutSchedule>,
    /// Credit for 1 of cash commission converted (above 0, at most 1000); null: conversion
    /// off.
    pub commission_conversion_rate: MaybeUndefined<Decimal>,
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
            active_referral_days: input.active_referral_days,
            affiliate_signup_bonus: input.affiliate_signup_bonus.map(|d| d.0),
            payout_schedule: input.payout_schedule.map(Into::into),
            commission_conversion_rate: change(input.commission_conversion_rate).map(|rate| rate.map(|d| d.0)),
        };
        let state = state(ctx);
        let updated = settings::update(&state.db, &viewer(ctx).actor(), patch, now(ctx)).await?;
        state.settings.replace(updated.clone());
        Ok(updated.into())
    }
}

/// The sandbox's own operations. They are part of the schema only on a server started with
/// SANDBOX=true (`graphql::build_schema_with`): elsewhere they do not exist, neither in
/// introspection nor for execution, and schema.graphql does not list them.
#[derive(Default)]
pub struct SandboxMutation;

#[Object]
impl SandboxMutation {
    /// Moves this sandbox server's clock forward by `days` and `hours` (never backwards; at
    /// most 3650 days or 87600 hours at once), for every instance on its database and across
    /// restarts; then settles at once what fell due by the new time: holds mature and credit
    /// expires. Audited (ADVANCE_CLOCK). Only on a server started with SANDBOX=true.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn advance_clock(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0)] days: Option<i32>,
        #[graphql(default = 0)] hours: Option<i32>,
    ) -> Result<ProgramSettings> {
        let state = state(ctx);
        // The schema has this field only in sandbox mode; the check keeps it so should a
        // schema ever be built otherwise.
        if !state.config.sandbox {
            return Err(AppError::Forbidden("the clock moves only on a sandbox server (SANDBOX=true)".into()).into());
        }
        let (days, hours) = (days.unwrap_or(0), hours.unwrap_or(0));
        let advanced = sandbox::advance(&state.db, &viewer(ctx).actor(), &state.clock, days, hours).await?;
        // The offset is part of the settings row: the other instances read it again. Sent after
        // the commit, not with it (the sandbox's write is not this module's); should it be lost,
        // nothing reads the offset from memory: each instance's clock catches up from the row.
        state.settings.replace(advanced.settings.clone());
        if let Err(err) = cache::announce_change(&state.db).await {
            tracing::warn!(error = %err, "SANDBOX: the other instances were not told of the clock's move");
        }
        // The clock has moved for good: a pass that fails here is the background task's to do
        // again at its next tick, not an error of this request (a client retrying it would
        // move the clock twice). Reads and spends settle their own account's due entries anyway.
        match tasks::settle_now(state).await {
            Ok(settled) => tracing::info!(
                matured = settled.matured,
                expired = settled.expired,
                "SANDBOX: the clock moved from {} to {}",
                advanced.before,
                advanced.after
            ),
            Err(err) => tasks::log_failure(&err),
        }
        Ok(advanced.settings.into())
    }
}
