use sea_orm::entity::prelude::*;

/// A banner or snippet an admin keeps for affiliates: `template` holds `{link}` where each
/// affiliate's own link goes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "marketing_materials")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: crate::enums::MaterialKind,
    pub name: String,
    pub format: crate::enums::MaterialFormat,
    pub template: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
