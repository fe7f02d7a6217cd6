//! Providers, products and their rates (admin).

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Product, Provider};
use crate::service::catalog::{self, ProductInput, ProviderInput};
use async_graphql::{Context, InputObject, Object, Result};

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// Every provider with its products, by key.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn providers(&self, ctx: &Context<'_>) -> Result<Vec<Provider>> {
        Ok(catalog::providers(&state(ctx).db)
            .await?
            .into_iter()
            .map(Provider)
            .collect())
    }
}

#[derive(InputObject)]
pub struct UpsertProviderInput {
    pub key: String,
    pub name: String,
    /// Points per GB claimed; left out: unchanged.
    pub redemption_rate: Option<Decimal>,
}

#[derive(InputObject)]
pub struct UpsertProductInput {
    pub key: String,
    pub provider_key: String,
    pub name: String,
    /// A lower-case name such as `residential`.
    pub category: String,
    /// Points per GB bought; left out: unchanged.
    pub product_rate: Option<Decimal>,
}

#[derive(InputObject)]
pub struct SetProductRateInput {
    pub product_key: String,
    pub product_rate: Decimal,
}

#[derive(InputObject)]
pub struct SetRedemptionRateInput {
    pub provider_key: String,
    pub redemption_rate: Decimal,
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn upsert_provider(&self, ctx: &Context<'_>, input: UpsertProviderInput) -> Result<Provider> {
        let input = ProviderInput {
            key: input.key,
            name: input.name,
            redemption_rate: input.redemption_rate.map(|d| d.0),
        };
        Ok(Provider(
            catalog::upsert_provider(&state(ctx).db, &viewer(ctx).actor(), input, now(ctx)).await?,
        ))
    }

    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn upsert_product(&self, ctx: &Context<'_>, input: UpsertProductInput) -> Result<Product> {
        let input = ProductInput {
            key: input.key,
            provider_key: input.provider_key,
            name: input.name,
            category: input.category,
            product_rate: input.product_rate.map(|d| d.0),
        };
        Ok(Product(
            catalog::upsert_product(&state(ctx).db, &viewer(ctx).actor(), input, now(ctx)).await?,
        ))
    }

    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn set_product_rate(&self, ctx: &Context<'_>, input: SetProductRateInput) -> Result<Product> {
        let actor = viewer(ctx).actor();
        let product = catalog::set_product_rate(
            &state(ctx).db,
            &actor,
            &input.product_key,
            input.product_rate.0,
            now(ctx),
        )
        .await?;
        Ok(Product(product))
    }

    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn set_redemption_rate(&self, ctx: &Context<'_>, input: SetRedemptionRateInput) -> Result<Provider> {
        let actor = viewer(ctx).actor();
        let provider = catalog::set_redemption_rate(
            &state(ctx).db,
            &actor,
            &input.provider_key,
            input.redemption_rate.0,
            now(ctx),
        )
        .await?;
        Ok(Provider(provider))
    }
}
