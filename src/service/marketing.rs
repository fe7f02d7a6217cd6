//! Marketing material for affiliates: banners and text snippets an admin writes once, with a
//! `{link}` placeholder, and each approved affiliate reads rendered with its own referral link.
//! An HTML template gets the link HTML-escaped (a link template an admin set carelessly, or
//! maliciously, cannot break out of an attribute or inject markup into an affiliate's page); a
//! text template gets it as it is. The templates themselves are the admins' own markup.

use crate::db::begin_write;
use crate::error::{AppError, AppResult};
use crate::service::settings;
use crate::service::{audit, required_text};
use chrono::{DateTime, Utc};
use entity::enums::{MaterialFormat, MaterialKind};
use entity::marketing_material;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, PaginatorTrait, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;

/// The placeholder a template holds where the affiliate's link goes.
pub const LINK: &str = "{link}";
/// The most materials a program keeps: an affiliate reads them all at once.
pub const MAX_MATERIALS: u64 = 100;
pub const MAX_NAME: usize = 200;
pub const MAX_TEMPLATE: usize = 20_000;

/// A material as an admin writes it; on an update, `None` keeps a field as it is.
#[derive(Debug, Default, Clone)]
pub struct MaterialInput {
    pub kind: Option<MaterialKind>,
    pub name: Option<String>,
    pub format: Option<MaterialFormat>,
    pub template: Option<String>,
}

fn parse_template(template: &str) -> AppResult<String> {
    if template.trim().is_empty() {
        return Err(AppError::bad_input("template must not be empty"));
    }
    if template.chars().count() > MAX_TEMPLATE {
        return Err(AppError::bad_input(format!(
            "template must be at most {MAX_TEMPLATE} characters"
        )));
    }
    if !template.contains(LINK) {
        return Err(AppError::bad_input(format!(
            "template must contain {LINK}, where each affiliate's link goes"
        )));
    }
    Ok(template.to_owned())
}

/// Every material, oldest first (the order admins wrote them in).
pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<marketing_material::Model>> {
    Ok(marketing_material::Entity::find()
        .order_by_asc(marketing_material::Column::Id)
        .limit(MAX_MATERIALS)
        .all(db)
        .await?)
}

pub async fn create(
    db: &DatabaseConnection,
    actor: &str,
    input: MaterialInput,
    now: DateTime<Utc>,
) -> AppResult<marketing_material::Model> {
    let (Some(kind), Some(name), Some(format), Some(template)) = (input.kind, input.name, input.format, input.template)
    else {
        return Err(AppError::bad_input("kind, name, format and template are required"));
    };
    let name = required_text("name", &name, MAX_NAME)?;
    let template = parse_template(&template)?;
    let txn = begin_write(db).await?;
    let count = marketing_material::Entity::find().count(&txn);
    settings::room_for_one_more(&txn, count, MAX_MATERIALS, "marketing materials").await?;
    let material = marketing_material::ActiveModel {
        kind: Set(kind),
        name: Set(name),
        format: Set(format),
        template: Set(template),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        "CREATE_MARKETING_MATERIAL",
        &target(material.id),
        json!(null),
        described(&material),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(material)
}

/// Changes what the input gives; the same values again change nothing and write nothing.
pub async fn update(
    db: &DatabaseConnection,
    actor: &str,
    id: i64,
    input: MaterialInput,
    now: DateTime<Utc>,
) -> AppResult<marketing_material::Model> {
    let name = input
        .name
        .as_deref()
        .map(|name| required_text("name", name, MAX_NAME))
        .transpose()?;
    let template = input.template.as_deref().map(parse_template).transpose()?;
    let txn = begin_write(db).await?;
    let before = marketing_material::Entity::find_by_id(id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such marketing material"))?;
    let mut wanted = before.clone();
    wanted.kind = input.kind.unwrap_or(wanted.kind);
    wanted.format = input.format.unwrap_or(wanted.format);
    wanted.name = name.unwrap_or(wanted.name);
    wanted.template = template.unwrap_or(wanted.template);
    if wanted == before {
        return Ok(before);
    }
    let mut row = wanted.into_active_model().reset_all();
    row.updated_at = Set(now);
    let after = row.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        "UPDATE_MARKETING_MATERIAL",
        &target(id),
        described(&before),
        described(&after),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes a material; affiliates stop seeing it at once.
pub async fn delete(db: &DatabaseConnection, actor: &str, id: i64, now: DateTime<Utc>) -> AppResult<()> {
    let txn = begin_write(db).await?;
    let before = marketing_material::Entity::find_by_id(id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such marketing material"))?;
    marketing_material::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        "DELETE_MARKETING_MATERIAL",
        &target(id),
        described(&before),
        json!(null),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The material with `link` where `{link}` stands: HTML-escaped into an HTML template.
pub fn render(material: &marketing_material::Model, link: &str) -> String {
    match material.format {
        MaterialFormat::Html => material
            .template
            .replace(LINK, &html_escape::encode_quoted_attribute(link)),
        MaterialFormat::Text => material.template.replace(LINK, link),
    }
}

fn target(id: i64) -> String {
    format!("marketing_material:{id}")
}

fn described(material: &marketing_material::Model) -> serde_json::Value {
    json!({
        "kind": material.kind,
        "name": material.name,
        "format": material.format,
        "template": material.template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(format: MaterialFormat, template: &str) -> marketing_material::Model {
        marketing_material::Model {
            id: 1,
            kind: MaterialKind::Banner,
            name: "Spring".to_owned(),
            format,
            template: template.to_owned(),
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_hostile_link_is_escaped_into_html_and_left_as_it_is_in_text() {
        let hostile = r#"https://x.test/?a="><script>alert('x')</script>&r=CODE"#;
        let html = material(
            MaterialFormat::Html,
            r#"<a href="{link}"><img src="/b.png"></a> {link}"#,
        );
        assert_eq!(
            render(&html, hostile),
            "<a href=\"https://x.test/?a=&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;r=CODE\">\
             <img src=\"/b.png\"></a> https://x.test/?a=&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;r=CODE"
        );
        let text = material(MaterialFormat::Text, "Join me: {link}");
        assert_eq!(render(&text, hostile), format!("Join me: {hostile}"));
    }

    #[test]
    fn templates_need_the_placeholder() {
        assert!(parse_template("Join me: {link}").is_ok());
        assert!(parse_template("Join me").is_err());
        assert!(parse_template("  ").is_err());
        assert!(parse_template(&format!("{LINK}{}", "x".repeat(MAX_TEMPLATE))).is_err());
    }
}
