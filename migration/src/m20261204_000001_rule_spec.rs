//! A reward rule's conditions, calculation and payout become one JSON document, `spec`, in
//! the format of `service/rules/spec.rs`; the columns it replaces are dropped. A new rule
//! option is then a new variant in that file, not a column and a migration.
//!
//! Program 1's billing-scheme policy leaves the evaluator in the same release: a
//! PAYMENT_METHOD_VERIFIED rule paid postpaid referees only and a TOP_UP_TOTAL_REACHED rule
//! prepaid ones only, whatever the rule said. Existing rules get that policy written into
//! their spec as a `billingScheme` condition, so an existing database behaves exactly as
//! before.
//!
//! The rows are converted here, in Rust, rather than in SQL: the JSON functions of SQLite and
//! PostgreSQL differ, and there are few rules (at most 200).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use serde_json::{Value, json};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RewardRules {
    Table,
    Id,
    Trigger,
    Calculation,
    Value,
    ProductCategories,
    Threshold,
    Recurring,
    AccountGroups,
    Spec,
}

/// The columns `spec` replaces, in the order the earlier migrations added them.
const REPLACED: [RewardRules; 6] = [
    RewardRules::Calculation,
    RewardRules::Value,
    RewardRules::ProductCategories,
    RewardRules::Threshold,
    RewardRules::Recurring,
    RewardRules::AccountGroups,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds a NOT NULL column only with a default; every row is given its spec below.
        manager
            .alter_table(
                Table::alter()
                    .table(RewardRules::Table)
                    .add_column(text(RewardRules::Spec).default("{}"))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let rows = db
            .query_all(
                &Query::select()
                    .columns([
                        RewardRules::Id,
                        RewardRules::Trigger,
                        RewardRules::Calculation,
                        RewardRules::Value,
                        RewardRules::ProductCategories,
                        RewardRules::Threshold,
                        RewardRules::Recurring,
                        RewardRules::AccountGroups,
                    ])
                    .from(RewardRules::Table)
                    .to_owned(),
            )
            .await?;
        for row in rows {
            let old = OldRule {
                trigger: row.try_get("", "trigger")?,
                calculation: row.try_get("", "calculation")?,
                value: row.try_get("", "value")?,
                product_categories: row.try_get("", "product_categories")?,
                threshold: row.try_get("", "threshold")?,
                recurring: row.try_get("", "recurring")?,
                account_groups: row.try_get("", "account_groups")?,
            };
            let id: i64 = row.try_get("", "id")?;
            db.execute(
                &Query::update()
                    .table(RewardRules::Table)
                    .value(RewardRules::Spec, spec_of(&old).to_string())
                    .and_where(Expr::col(RewardRules::Id).eq(id))
                    .to_owned(),
            )
            .await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            // The default was only for the rows above; a rule is never written without a spec.
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE reward_rules ALTER COLUMN spec DROP DEFAULT")
                .await?;
        }
        // SQLite drops one column per ALTER TABLE.
        for column in REPLACED {
            manager
                .alter_table(Table::alter().table(RewardRules::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }

    /// Back to columns. What they cannot hold (billing-scheme conditions, holds, expiry) is
    /// dropped: the evaluator of that release applies the billing-scheme policy itself and
    /// runs neither holds nor expiry.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_len(RewardRules::Calculation, 16).default("FIXED").to_owned(),
            big_integer_null(RewardRules::Value),
            text_null(RewardRules::ProductCategories),
            big_integer_null(RewardRules::Threshold),
            boolean(RewardRules::Recurring).default(false).to_owned(),
            text_null(RewardRules::AccountGroups),
        ] {
            manager
                .alter_table(Table::alter().table(RewardRules::Table).add_column(column).to_owned())
                .await?;
        }
        let db = manager.get_connection();
        let rows = db
            .query_all(
                &Query::select()
                    .columns([RewardRules::Id, RewardRules::Spec])
                    .from(RewardRules::Table)
                    .to_owned(),
            )
            .await?;
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let spec: String = row.try_get("", "spec")?;
            let spec: Value = serde_json::from_str(&spec)
                .map_err(|e| DbErr::Migration(format!("reward rule {id}: unreadable spec: {e}")))?;
            let old = old_of(&spec);
            db.execute(
                &Query::update()
                    .table(RewardRules::Table)
                    .value(RewardRules::Calculation, old.calculation)
                    .value(RewardRules::Value, old.value)
                    .value(RewardRules::ProductCategories, old.product_categories)
                    .value(RewardRules::Threshold, old.threshold)
                    .value(RewardRules::Recurring, old.recurring)
                    .value(RewardRules::AccountGroups, old.account_groups)
                    .and_where(Expr::col(RewardRules::Id).eq(id))
                    .to_owned(),
            )
            .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(RewardRules::Table)
                    .drop_column(RewardRules::Spec)
                    .to_owned(),
            )
            .await
    }
}

/// A rule's option columns before this migration.
#[derive(Debug, Clone, PartialEq)]
struct OldRule {
    trigger: String,
    calculation: String,
    value: Option<i64>,
    /// A JSON array of lower-case keys; NULL: no condition.
    product_categories: Option<String>,
    threshold: Option<i64>,
    recurring: bool,
    account_groups: Option<String>,
}

/// A JSON array of keys, as the old columns held them; an empty or unreadable one is no
/// condition, as the old evaluator read it.
fn keys(column: Option<&str>) -> Option<Vec<String>> {
    column
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .filter(|keys| !keys.is_empty())
}

/// The spec of an old rule, conditions in the order `spec.rs` keeps them (categories, groups,
/// billing scheme, top-up total).
fn spec_of(old: &OldRule) -> Value {
    let mut conditions = Vec::new();
    if let Some(categories) = keys(old.product_categories.as_deref()) {
        conditions.push(json!({ "productCategories": categories }));
    }
    if let Some(groups) = keys(old.account_groups.as_deref()) {
        conditions.push(json!({ "accountGroups": groups }));
    }
    match old.trigger.as_str() {
        "PAYMENT_METHOD_VERIFIED" => conditions.push(json!({ "billingScheme": "POSTPAID" })),
        "TOP_UP_TOTAL_REACHED" => {
            conditions.push(json!({ "billingScheme": "PREPAID" }));
            conditions.push(json!({ "topUpTotalAtLeast": old.threshold.unwrap_or(0) }));
        }
        _ => {}
    }
    let calculation = match old.calculation.as_str() {
        "PRODUCT_RATE" => json!("productRate"),
        // A FIXED rule always had a value; without one it paid nothing, and pays nothing still.
        _ => json!({ "fixed": old.value.unwrap_or(0) }),
    };
    json!({
        "conditions": conditions,
        "calculation": calculation,
        "payout": { "recurring": old.recurring, "holdDays": 0, "expiresAfterDays": null },
    })
}

/// The old columns of a spec (for `down`).
fn old_of(spec: &Value) -> OldRule {
    let mut old = OldRule {
        trigger: String::new(),
        calculation: "FIXED".to_owned(),
        value: None,
        product_categories: None,
        threshold: None,
        recurring: spec["payout"]["recurring"].as_bool().unwrap_or(false),
        account_groups: None,
    };
    match &spec["calculation"] {
        Value::String(kind) if kind == "productRate" => old.calculation = "PRODUCT_RATE".to_owned(),
        calculation => old.value = calculation["fixed"].as_i64(),
    }
    for condition in spec["conditions"].as_array().into_iter().flatten() {
        if let Some(categories) = condition.get("productCategories") {
            old.product_categories = Some(categories.to_string());
        } else if let Some(groups) = condition.get("accountGroups") {
            old.account_groups = Some(groups.to_string());
        } else if let Some(threshold) = condition.get("topUpTotalAtLeast") {
            old.threshold = threshold.as_i64();
        }
    }
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(trigger: &str, calculation: &str) -> OldRule {
        OldRule {
            trigger: trigger.to_owned(),
            calculation: calculation.to_owned(),
            value: None,
            product_categories: None,
            threshold: None,
            recurring: false,
            account_groups: None,
        }
    }

    #[test]
    fn each_old_rule_gets_the_billing_scheme_its_trigger_paid_before() {
        let verified = OldRule {
            value: Some(10_000_000),
            account_groups: Some(r#"["business"]"#.to_owned()),
            ..old("PAYMENT_METHOD_VERIFIED", "FIXED")
        };
        assert_eq!(
            spec_of(&verified),
            json!({
                "conditions": [{ "accountGroups": ["business"] }, { "billingScheme": "POSTPAID" }],
                "calculation": { "fixed": 10_000_000 },
                "payout": { "recurring": false, "holdDays": 0, "expiresAfterDays": null },
            })
        );
        let top_up = OldRule {
            value: Some(5_000_000),
            threshold: Some(0),
            recurring: true,
            ..old("TOP_UP_TOTAL_REACHED", "FIXED")
        };
        assert_eq!(
            spec_of(&top_up),
            json!({
                "conditions": [{ "billingScheme": "PREPAID" }, { "topUpTotalAtLeast": 0 }],
                "calculation": { "fixed": 5_000_000 },
                "payout": { "recurring": true, "holdDays": 0, "expiresAfterDays": null },
            })
        );
        let seeded = OldRule {
            product_categories: Some(r#"["residential"]"#.to_owned()),
            ..old("FIRST_PURCHASE", "PRODUCT_RATE")
        };
        assert_eq!(
            spec_of(&seeded),
            json!({
                "conditions": [{ "productCategories": ["residential"] }],
                "calculation": "productRate",
                "payout": { "recurring": false, "holdDays": 0, "expiresAfterDays": null },
            })
        );
        // An empty list was no condition, and stays none.
        let signup = OldRule {
            value: Some(1),
            product_categories: Some("[]".to_owned()),
            ..old("SIGNUP", "FIXED")
        };
        assert_eq!(spec_of(&signup)["conditions"], json!([]));
    }

    #[test]
    fn down_gives_back_the_columns_up_read() {
        for rule in [
            OldRule {
                value: Some(10_000_000),
                account_groups: Some(r#"["business","enterprise"]"#.to_owned()),
                ..old("PAYMENT_METHOD_VERIFIED", "FIXED")
            },
            OldRule {
                value: Some(5_000_000),
                threshold: Some(10_000_000),
                recurring: true,
                ..old("TOP_UP_TOTAL_REACHED", "FIXED")
            },
            OldRule {
                product_categories: Some(r#"["residential"]"#.to_owned()),
                ..old("FIRST_PURCHASE", "PRODUCT_RATE")
            },
        ] {
            let back = old_of(&spec_of(&rule));
            assert_eq!(
                OldRule {
                    trigger: rule.trigger.clone(),
                    ..back
                },
                rule
            );
        }
    }
}
