//! DataLoaders for every relation under a list: one `IN (…)` query per batch, whatever the
//! page size. The keys are newtypes so one loader serves every relation. Balances are read as
//! of the application clock's now (a hold that ended is available before the background task
//! posts it).

use crate::amount::Amount;
use crate::clock::Clock;
use crate::service::accounts::ParticipantAccount;
use crate::service::accounts::dashboard::{AccountRead, Friends};
use crate::service::clicks::{self, ReferralStats};
use crate::service::{accounts, catalog, ledger, rules};
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entity::enums::Unit;
use entity::{account, balance, product, provider, referral};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;

/// The request's loaders. Their cache is off unless the operation is a query
/// (`graphql::QueryLoaderCache` turns it on): within a query nothing is written, so what one
/// field loaded, or what a parent fetched for its children, holds for the whole answer; a
/// mutation's later fields must see what its earlier ones wrote.
pub type RequestLoader = DataLoader<DbLoader, HashMapCache>;

pub struct DbLoader {
    pub db: DatabaseConnection,
    /// The application's clock: balances are read as of its now.
    pub clock: Clock,
}

type LoadResult<K, V> = Result<HashMap<K, V>, async_graphql::Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountById(pub i64);
/// What one side of a referral shows of the account of this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParticipantById(pub i64);
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

impl Loader<ParticipantById> for DbLoader {
    type Value = ParticipantAccount;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ParticipantById]) -> LoadResult<ParticipantById, ParticipantAccount> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rekey(
            accounts::participants_by_ids(&self.db, &ids).await?,
            ParticipantById,
        ))
    }
}

/// Every key gets an answer, `None` for an account that was not referred, so that a read
/// that found none can say so to the loader's cache too.
impl Loader<ReferralOfReferee> for DbLoader {
    type Value = Option<referral::Model>;
    type Error = async_graphql::Error;
    async fn load(&self, keys: &[ReferralOfReferee]) -> LoadResult<ReferralOfReferee, Option<referral::Model>> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut found = accounts::accepted_referrals_of(&self.db, &ids).await?;
        Ok(keys.iter().map(|key| (*key, found.remove(&key.0))).collect())
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

/// Hands what a read of an account fetched with it to the loaders, for the fields that ask
/// for it (when the operation is a query: `context::RequestLoader`). Returns the account.
pub async fn prime_account(loader: &RequestLoader, read: AccountRead) -> account::Model {
    let id = read.account.id;
    if let Some(referral) = read.referral {
        let referral = match referral {
            Some(referred) => {
                if let Some(referrer) = referred.referrer {
                    loader.feed_one(ParticipantById(referrer.id), referrer).await;
                }
                Some(referred.referral)
            }
            None => None,
        };
        loader.feed_one(ReferralOfReferee(id), referral).await;
    }
    if let Some(balances) = read.balances {
        loader.feed_one(BalancesOf(id), balances).await;
    }
    loader.feed_one(AccountById(id), read.account.clone()).await;
    read.account
}

/// Hands what a page of friends shows of their accounts, and what each earned `referrer_id`,
/// to the loaders.
pub async fn prime_friends(loader: &RequestLoader, referrer_id: i64, friends: &mut Friends) {
    let referees = std::mem::take(&mut friends.referees);
    loader
        .feed_many(
            referees
                .into_iter()
                .map(|account| (ParticipantById(account.id), account)),
        )
        .await;
    if let Some(mut earned) = friends.earned.take() {
        let keys: Vec<i64> = friends.page.items.iter().map(|referral| referral.id).collect();
        loader
            .feed_many(keys.into_iter().map(|referral| {
                let amounts = earned.remove(&referral).unwrap_or_default();
                (EarnedThrough(referral, referrer_id), amounts)
            }))
            .await;
    }
}
