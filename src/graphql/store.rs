//! The reward store: offers and claims (customers), and the fulfilment queue (billing side).

use crate::amount::Amount;
use crate::auth::RoleGuard;
use crate::graphql::context::{loader, now, program_settings, state, viewer};
use crate::graphql::enums::{ClaimOutcome, ClaimStatus};
use crate::graphql::ids::{Kind, from_id};
use crate::graphql::loaders::BalancesOf;
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Balance, Claim, Page1, Provider, connection, page_request};
use crate::service::{accounts, store};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use entity::enums::Unit;

pub struct RewardStore {
    enabled: bool,
    gb_per_claim: i32,
    balance: entity::balance::Model,
    offers: Vec<store::Offer>,
}

#[Object]
impl RewardStore {
    /// False while the program is switched off: claims are refused.
    async fn enabled(&self) -> bool {
        self.enabled
    }

    async fn gb_per_claim(&self) -> i32 {
        self.gb_per_claim
    }

    /// The customer's points.
    async fn balance(&self) -> Balance {
        Balance(self.balance.clone())
    }

    async fn offers(&self) -> Vec<RewardOffer> {
        let available = Amount::from_micros(self.balance.available);
        self.offers
            .iter()
            .map(|offer| RewardOffer {
                provider: Provider(offer.provider.clone()),
                redemption_rate: offer.redemption_rate.into(),
                points_per_claim: offer.points_per_claim.into(),
                affordable: self.enabled && available >= offer.points_per_claim,
            })
            .collect()
    }
}

#[derive(SimpleObject)]
pub struct RewardOffer {
    pub provider: Provider,
    /// Points per GB.
    pub redemption_rate: Decimal,
    /// What one claim costs: redemption rate × gbPerClaim.
    pub points_per_claim: Decimal,
    /// Whether the available balance covers one claim now.
    pub affordable: bool,
}

#[derive(Default)]
pub struct StoreQuery;

#[Object]
impl StoreQuery {
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn reward_store(&self, ctx: &Context<'_>) -> Result<RewardStore> {
        let external_id = viewer(ctx).customer_external_id()?;
        let db = &state(ctx).db;
        let account = accounts::get_by_external_id(db, external_id).await?;
        let settings = program_settings(ctx).await?;
        let balances = loader(ctx).load_one(BalancesOf(account.id)).await?.unwrap_or_default();
        let balance = balances
            .into_iter()
            .find(|b| b.unit == Unit::Points)
            .ok_or_else(|| crate::error::AppError::not_found("no points balance"))?;
        Ok(RewardStore {
            enabled: settings.enabled,
            gb_per_claim: settings.gb_per_claim,
            balance,
            offers: store::offers(db, settings.gb_per_claim).await?,
        })
    }

    /// Claims of every account, newest first: the billing side's fulfilment queue.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn claims(
        &self,
        ctx: &Context<'_>,
        status: Option<ClaimStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<Claim>> {
        let page = store::list(
            &state(ctx).db,
            None,
            status.map(Into::into),
            page_request(first, after)?,
        )
        .await?;
        Ok(connection(page, |c| c.id, Claim::from))
    }
}

#[derive(InputObject)]
pub struct ClaimRewardInput {
    pub provider_id: ID,
    /// The same key again answers the first claim instead of claiming twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ClaimRewardPayload {
    pub claim: Claim,
    /// The points balance after the claim.
    pub balance: Balance,
    /// True when the idempotency key had been used for this claim already.
    pub duplicate: bool,
}

#[derive(InputObject)]
pub struct CompleteClaimInput {
    pub claim_id: ID,
    pub status: ClaimOutcome,
}

#[derive(SimpleObject)]
pub struct CompleteClaimPayload {
    pub claim: Claim,
}

#[derive(Default)]
pub struct StoreMutation;

#[Object]
impl StoreMutation {
    /// Spends points on `gbPerClaim` GB of one provider's data.
    #[graphql(guard = "RoleGuard::CUSTOMER")]
    async fn claim_reward(&self, ctx: &Context<'_>, input: ClaimRewardInput) -> Result<ClaimRewardPayload> {
        let external_id = viewer(ctx).customer_external_id()?.to_owned();
        let request = store::ClaimRequest {
            external_id,
            provider_id: from_id(Kind::Provider, &input.provider_id)?,
            idempotency_key: input.idempotency_key,
        };
        let state = state(ctx);
        let claimed = store::claim(state.direct(), &state.claim_lanes, request, now(ctx)).await?;
        Ok(ClaimRewardPayload {
            claim: Claim(claimed.claim, claimed.provider),
            balance: Balance(claimed.balance),
            duplicate: claimed.duplicate,
        })
    }

    /// Reports a claim delivered (COMPLETED) or not (FAILED: the points go back).
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn complete_claim(&self, ctx: &Context<'_>, input: CompleteClaimInput) -> Result<CompleteClaimPayload> {
        let claim_id = from_id(Kind::Claim, &input.claim_id)?;
        let claim = store::complete(
            &state(ctx).db,
            &viewer(ctx).actor(),
            claim_id,
            input.status.into(),
            now(ctx),
        )
        .await?;
        Ok(CompleteClaimPayload {
            claim: Claim::from(claim),
        })
    }
}
