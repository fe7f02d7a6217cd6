//! Marketing material: the admins' banners and snippets, and each affiliate's rendering of
//! them with its own link (`Affiliate.marketingMaterials`).

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::enums::{MarketingMaterialFormat, MarketingMaterialKind};
use crate::graphql::ids::{Kind, from_id, to_id};
use crate::service::marketing::{self, MaterialInput};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::marketing_material;

/// A banner or snippet as admins keep it.
pub struct MarketingMaterial(pub marketing_material::Model);

#[Object]
impl MarketingMaterial {
    async fn id(&self) -> ID {
        to_id(Kind::Material, self.0.id)
    }

    async fn kind(&self) -> MarketingMaterialKind {
        self.0.kind.into()
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn format(&self) -> MarketingMaterialFormat {
        self.0.format.into()
    }

    /// With `{link}` where each affiliate's link goes.
    async fn template(&self) -> &str {
        &self.0.template
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A material as one affiliate uses it: rendered with its own link.
#[derive(SimpleObject)]
pub struct AffiliateMaterial {
    /// The material's id (as in `marketingMaterials`).
    pub id: ID,
    pub kind: MarketingMaterialKind,
    pub name: String,
    pub format: MarketingMaterialFormat,
    /// The template with the affiliate's link in place of `{link}`, HTML-escaped in HTML.
    pub content: String,
}

impl AffiliateMaterial {
    pub fn rendered(material: &marketing_material::Model, link: &str) -> Self {
        AffiliateMaterial {
            id: to_id(Kind::Material, material.id),
            kind: material.kind.into(),
            name: material.name.clone(),
            format: material.format.into(),
            content: marketing::render(material, link),
        }
    }
}

/// A material to write. To create one, every field is required; to update one, a field left
/// out keeps its value.
#[derive(InputObject)]
pub struct MarketingMaterialInput {
    pub kind: Option<MarketingMaterialKind>,
    /// 1 to 200 characters.
    pub name: Option<String>,
    pub format: Option<MarketingMaterialFormat>,
    /// Up to 20,000 characters, with `{link}` where each affiliate's link goes.
    pub template: Option<String>,
}

impl From<MarketingMaterialInput> for MaterialInput {
    fn from(input: MarketingMaterialInput) -> Self {
        MaterialInput {
            kind: input.kind.map(Into::into),
            name: input.name,
            format: input.format.map(Into::into),
            template: input.template,
        }
    }
}

#[derive(Default)]
pub struct MarketingQuery;

#[Object]
impl MarketingQuery {
    /// Every marketing material (at most 100), oldest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn marketing_materials(&self, ctx: &Context<'_>) -> Result<Vec<MarketingMaterial>> {
        let materials = marketing::list(&state(ctx).db).await?;
        Ok(materials.into_iter().map(MarketingMaterial).collect())
    }
}

#[derive(Default)]
pub struct MarketingMutation;

#[Object]
impl MarketingMutation {
    /// Adds a banner or snippet (at most 100 in all). Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn create_marketing_material(
        &self,
        ctx: &Context<'_>,
        input: MarketingMaterialInput,
    ) -> Result<MarketingMaterial> {
        let material = marketing::create(&state(ctx).db, &viewer(ctx).actor(), input.into(), now(ctx)).await?;
        Ok(MarketingMaterial(material))
    }

    /// Changes what the input gives; the same values again change nothing. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn update_marketing_material(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: MarketingMaterialInput,
    ) -> Result<MarketingMaterial> {
        let id = from_id(Kind::Material, &id)?;
        let material = marketing::update(&state(ctx).db, &viewer(ctx).actor(), id, input.into(), now(ctx)).await?;
        Ok(MarketingMaterial(material))
    }

    /// Deletes a material; affiliates stop seeing it at once. Answers its id. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn delete_marketing_material(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let number = from_id(Kind::Material, &id)?;
        marketing::delete(&state(ctx).db, &viewer(ctx).actor(), number, now(ctx)).await?;
        Ok(id)
    }
}
