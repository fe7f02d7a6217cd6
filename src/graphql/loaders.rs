//! DataLoaders for every relation under a list: one `IN (…)` query per batch, whatever the
//! page size. The keys are newtypes so one loader serves every relation. Balances are read as
//! of the application clock's now (a hold that ended is available before the background task
//! posts it).

use crate::amount::Amount;
use crate::clock::Clock;
use crate::service::clicks::{self, ReferralStats};
use crate::service::{accounts, catalog, ledger, rules};
use async_graphql::dataloader::Loader;
use entity::enums::Unit;
use entity::{account, balance, product, provider, referral};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;

pub struct DbLoader {
    pub db: DatabaseConnection,
    /// The application's clock: balances are read as of its now.
    pub clock: Clock,
}

type LoadResult<K, V> = Result<HashMap<K, V>, async_graphql::Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountById(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReferralOfReferee(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BalancesOf(pub i64);
/// (referral id, beneficiary account id)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EarnedThrough(pub i64, pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProviderById(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProductsOf(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleById(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReferralStatsOf(pub i64);
/// The next expiry of one balance (account id, unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExpiringSoonOf(pub i64, pub Unit);

fn rekey<K: Eq + std::hash::Hash, V>(map: HashMap<i64, V>, key: impl Fn(i64) -> K) -> HashMap<K, V> {
    map.into_iter().map(|(id, value)| (key(id), value)).collect()
}

impl Loader<AccountById> for DbLoader {
    type Value = account::Model;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[AccountById]) -> LoadResult<AccountById, account::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(accounts::by_ids(&self.db, &ids).await?, AccountById))
    }
}

impl Loader<ReferralOfReferee> for DbLoader {
    type Value = referral::Model;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ReferralOfReferee]) -> LoadResult<ReferralOfReferee, referral::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(
            accounts::accepted_referrals_of(&self.db, &ids).await?,
            ReferralOfReferee,
        ))
    }
}

impl Loader<BalancesOf> for DbLoader {
    type Value = Vec<balance::Model>;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[BalancesOf]) -> LoadResult<BalancesOf, Vec<balance::Model>> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(
            ledger::balances_of(&self.db, &ids, self.clock.now()).await?,
            BalancesOf,
        ))
    }
}

impl Loader<EarnedThrough> for DbLoader {
    type Value = Vec<(Unit, Amount)>;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[EarnedThrough]) -> LoadResult<EarnedThrough, Vec<(Unit, Amount)>> {
        let pairs: Vec<(i64, i64)> = keys.iter().map(|k| (k.0, k.1)).collect();
        let earned = ledger::earned_by_referrals(&self.db, &pairs).await?;
        Ok(earned
            .into_iter()
            .map(|((referral, account), v)| (EarnedThrough(referral, account), v))
            .collect())
    }
}

impl Loader<ProviderById> for DbLoader {
    type Value = provider::Model;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ProviderById]) -> LoadResult<ProviderById, provider::Model> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(catalog::providers_by_ids(&self.db, &ids).await?, ProviderById))
    }
}

impl Loader<ProductsOf> for DbLoader {
    type Value = Vec<product::Model>;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ProductsOf]) -> LoadResult<ProductsOf, Vec<product::Model>> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(catalog::products_by_provider(&self.db, &ids).await?, ProductsOf))
    }
}

impl Loader<RuleById> for DbLoader {
    type Value = rules::Rule;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[RuleById]) -> LoadResult<RuleById, rules::Rule> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(rules::by_ids(&self.db, &ids).await?, RuleById))
    }
}

impl Loader<ReferralStatsOf> for DbLoader {
    type Value = ReferralStats;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ReferralStatsOf]) -> LoadResult<ReferralStatsOf, ReferralStats> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(clicks::stats_of(&self.db, &ids).await?, ReferralStatsOf))
    }
}

impl Loader<ExpiringSoonOf> for DbLoader {
    type Value = ledger::Expiring;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ExpiringSoonOf]) -> LoadResult<ExpiringSoonOf, ledger::Expiring> {
        let pairs: Vec<(i64, Unit)> = keys.iter().map(|k| (k.0, k.1)).collect();
        let soon = ledger::expiring_soon(&self.db, &pairs, self.clock.now()).await?;
        Ok(soon
            .into_iter()
            .map(|((account, unit), expiring)| (ExpiringSoonOf(account, unit), expiring))
            .collect())
    }
}
