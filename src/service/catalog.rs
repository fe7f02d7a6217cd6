//! Providers and their products, with the rates of program 3: a product rate (points per GB
//! bought) and a provider's redemption rate (points per GB claimed).

use crate::amount::Amount;
use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::{audit, key_text, required_text};
use entity::{product, provider};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};
use std::collections::HashMap;

/// A catalog this size is an admin's mistake or an attack, not a product line-up.
pub const MAX_PROVIDERS: usize = 1000;

fn positive_rate(field: &str, rate: Amount) -> AppResult<i64> {
    if rate.is_positive() {
        Ok(rate.micros())
    } else {
        Err(AppError::bad_input(format!("{field} must be greater than 0")))
    }
}

pub struct ProviderInput {
    pub key: String,
    pub name: String,
    pub redemption_rate: Option<Amount>,
}

/// Creates a provider, or updates the one with this key. One statement (`INSERT … ON CONFLICT
/// (key) DO UPDATE`), so two admins racing on a new key cannot collide.
pub async fn upsert_provider(
    db: &DatabaseConnection,
    actor: &str,
    input: ProviderInput,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<provider::Model> {
    let key = key_text("key", &input.key)?;
    let name = required_text("name", &input.name, 200)?;
    let rate = input
        .redemption_rate
        .map(|r| positive_rate("redemptionRate", r))
        .transpose()?;
    let mut update = vec![provider::Column::Name, provider::Column::UpdatedAt];
    if rate.is_some() {
        update.push(provider::Column::RedemptionRate);
    }
    let txn = begin_write(db).await?;
    let before = find_provider(&txn, &key).await?;
    let after = provider::Entity::insert(provider::ActiveModel {
        key: Set(key.clone()),
        name: Set(name),
        redemption_rate: Set(rate),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(provider::Column::Key)
            .update_columns(update)
            .to_owned(),
    )
    .exec_with_returning(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        "UPSERT_PROVIDER",
        &format!("provider:{key}"),
        json(&before),
        json(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

pub struct ProductInput {
    pub key: String,
    pub provider_key: String,
    pub name: String,
    pub category: String,
    pub product_rate: Option<Amount>,
}

pub async fn upsert_product(
    db: &DatabaseConnection,
    actor: &str,
    input: ProductInput,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<product::Model> {
    let key = key_text("key", &input.key)?;
    let provider_key = key_text("providerKey", &input.provider_key)?;
    let name = required_text("name", &input.name, 200)?;
    let category = key_text("category", &input.category)?;
    let rate = input
        .product_rate
        .map(|r| positive_rate("productRate", r))
        .transpose()?;
    let mut update = vec![
        product::Column::ProviderId,
        product::Column::Name,
        product::Column::Category,
        product::Column::UpdatedAt,
    ];
    if rate.is_some() {
        update.push(product::Column::ProductRate);
    }
    let txn = begin_write(db).await?;
    let provider = get_provider(&txn, &provider_key).await?;
    let before = find_product(&txn, &key).await?;
    let after = product::Entity::insert(product::ActiveModel {
        key: Set(key.clone()),
        provider_id: Set(provider.id),
        name: Set(name),
        category: Set(category),
        product_rate: Set(rate),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(product::Column::Key)
            .update_columns(update)
            .to_owned(),
    )
    .exec_with_returning(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        "UPSERT_PRODUCT",
        &format!("product:{key}"),
        json(&before),
        json(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

pub async fn set_product_rate(
    db: &DatabaseConnection,
    actor: &str,
    key: &str,
    rate: Amount,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<product::Model> {
    let key = key_text("productKey", key)?;
    let rate = positive_rate("productRate", rate)?;
    let txn = begin_write(db).await?;
    let before = get_product(&txn, &key).await?;
    let mut row = before.clone().into_active_model();
    row.product_rate = Set(Some(rate));
    row.updated_at = Set(now);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "SET_PRODUCT_RATE",
        &format!("product:{key}"),
        json(&before),
        json(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

pub async fn set_redemption_rate(
    db: &DatabaseConnection,
    actor: &str,
    key: &str,
    rate: Amount,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<provider::Model> {
    let key = key_text("providerKey", key)?;
    let rate = positive_rate("redemptionRate", rate)?;
    let txn = begin_write(db).await?;
    let before = get_provider(&txn, &key).await?;
    let mut row = before.clone().into_active_model();
    row.redemption_rate = Set(Some(rate));
    row.updated_at = Set(now);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "SET_REDEMPTION_RATE",
        &format!("provider:{key}"),
        json(&before),
        json(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

pub async fn find_provider(db: &impl ConnectionTrait, key: &str) -> AppResult<Option<provider::Model>> {
    Ok(provider::Entity::find()
        .filter(provider::Column::Key.eq(key))
        .one(db)
        .await?)
}

pub async fn get_provider(db: &impl ConnectionTrait, key: &str) -> AppResult<provider::Model> {
    find_provider(db, key)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no provider with key {key:?}")))
}

pub async fn find_product(db: &impl ConnectionTrait, key: &str) -> AppResult<Option<product::Model>> {
    Ok(product::Entity::find()
        .filter(product::Column::Key.eq(key))
        .one(db)
        .await?)
}

pub async fn get_product(db: &impl ConnectionTrait, key: &str) -> AppResult<product::Model> {
    find_product(db, key).await?.ok_or_else(|| no_such_product(key))
}

/// The answer to a product key that names no product.
pub fn no_such_product(key: &str) -> AppError {
    AppError::not_found(format!("no product with key {key:?}"))
}

pub async fn providers(db: &impl ConnectionTrait) -> AppResult<Vec<provider::Model>> {
    use sea_orm::QuerySelect;
    Ok(provider::Entity::find()
        .order_by_asc(provider::Column::Key)
        .limit(MAX_PROVIDERS as u64)
        .all(db)
        .await?)
}

pub async fn providers_by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashMap<i64, provider::Model>> {
    let rows = provider::Entity::find()
        .filter(provider::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|p| (p.id, p)).collect())
}

pub async fn products_by_provider(
    db: &impl ConnectionTrait,
    provider_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<product::Model>>> {
    let rows = product::Entity::find()
        .filter(product::Column::ProviderId.is_in(provider_ids.iter().copied()))
        .order_by_asc(product::Column::Key)
        .all(db)
        .await?;
    let mut map: HashMap<i64, Vec<product::Model>> = HashMap::new();
    for row in rows {
        map.entry(row.provider_id).or_default().push(row);
    }
    Ok(map)
}
