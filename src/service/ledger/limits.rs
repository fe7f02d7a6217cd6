//! Where a lot may be spent. A rule may restrict the credit it pays to some product categories
//! (an allow-list) or away from some (an exclusion list); each lot it pays carries that
//! restriction (`lot_limits`, one row per restricted lot). Spending on an invoice line takes
//! only from lots that may pay the line's category; spending on something without a category
//! (an invoice without lines) only from unrestricted lots; everything else (claims, reversals,
//! expiry, debt) from any lot.

use crate::error::{AppError, AppResult};
use entity::lot_limit;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A lot's restriction: the categories it may pay, or those it may not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SpendLimit {
    Only(Vec<String>),
    Except(Vec<String>),
}

impl SpendLimit {
    pub fn allows(&self, category: &str) -> bool {
        match self {
            SpendLimit::Only(categories) => categories.iter().any(|c| c == category),
            SpendLimit::Except(categories) => !categories.iter().any(|c| c == category),
        }
    }
}

/// What a spend may take from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendOn<'a> {
    /// Any lot: a claim, a reversal, expiry, debt.
    Anything,
    /// Lots without a restriction: a spend whose category is unknown.
    Unrestricted,
    /// Lots that may pay this category (unrestricted ones included).
    Category(&'a str),
}

impl SpendOn<'_> {
    pub fn may_take(&self, limit: Option<&SpendLimit>) -> bool {
        match (self, limit) {
            (SpendOn::Anything, _) | (_, None) => true,
            (SpendOn::Unrestricted, Some(_)) => false,
            (SpendOn::Category(category), Some(limit)) => limit.allows(category),
        }
    }
}

/// Records the restriction of a lot just written.
pub(super) async fn restrict(db: &impl ConnectionTrait, entry_id: i64, limit: &SpendLimit) -> AppResult<()> {
    let spend_limit = serde_json::to_string(limit).map_err(AppError::internal)?;
    lot_limit::Entity::insert(lot_limit::ActiveModel {
        entry_id: Set(entry_id),
        spend_limit: Set(spend_limit),
    })
    .exec(db)
    .await?;
    Ok(())
}

/// The restrictions of these lots, by lot; unrestricted lots are absent.
pub(super) async fn of_lots(db: &impl ConnectionTrait, lot_ids: &[i64]) -> AppResult<HashMap<i64, SpendLimit>> {
    if lot_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = lot_limit::Entity::find()
        .filter(lot_limit::Column::EntryId.is_in(lot_ids.iter().copied()))
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            let limit = serde_json::from_str(&row.spend_limit).map_err(AppError::internal)?;
            Ok((row.entry_id, limit))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spend_takes_only_from_lots_that_may_pay_it() {
        let compute = SpendLimit::Only(vec!["compute".into()]);
        let no_domains = SpendLimit::Except(vec!["domains".into()]);
        assert!(SpendOn::Category("compute").may_take(Some(&compute)));
        assert!(!SpendOn::Category("storage").may_take(Some(&compute)));
        assert!(SpendOn::Category("storage").may_take(Some(&no_domains)));
        assert!(!SpendOn::Category("domains").may_take(Some(&no_domains)));
        assert!(
            SpendOn::Category("domains").may_take(None),
            "unrestricted credit pays anything"
        );
        assert!(!SpendOn::Unrestricted.may_take(Some(&no_domains)));
        assert!(SpendOn::Unrestricted.may_take(None));
        assert!(SpendOn::Anything.may_take(Some(&compute)));
    }
}
