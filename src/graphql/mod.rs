//! The GraphQL API: thin resolvers, one module per domain, merged into one schema. Resolvers
//! authorize, convert input, call a service and convert its answer; no rule and no SQL here.

pub mod account;
pub mod admin;
pub mod catalog;
pub mod context;
pub mod credit;
pub mod enums;
pub mod events;
pub mod ids;
pub mod loaders;
pub mod program;
pub mod rules;
pub mod scalars;
pub mod store;
pub mod types;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest};
use async_graphql::{EmptySubscription, MergedObject, Response, Schema, SchemaBuilder};
use std::sync::Arc;

/// Deepest selection accepted. The deepest contract operation needs 6; the standard
/// introspection query that GraphiQL and code generators send needs 13.
pub const MAX_DEPTH: usize = 15;
/// Most fields one operation may select (each field costs 1); the largest contract operation
/// selects about 70.
pub const MAX_COMPLEXITY: usize = 500;

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    account::AccountQuery,
    admin::AdminQuery,
    program::ProgramQuery,
    catalog::CatalogQuery,
    rules::RuleQuery,
    store::StoreQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    account::AccountMutation,
    admin::AdminMutation,
    program::ProgramMutation,
    rules::RuleMutation,
    credit::CreditMutation,
    catalog::CatalogMutation,
    events::EventMutation,
    store::StoreMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(20)
        .extension(ErrorCodes)
}

/// The schema, with no database: everything a request needs comes with the request's data.
pub fn build_schema(introspection: bool) -> AppSchema {
    let builder = builder();
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The SDL that `export-schema` writes to schema.graphql.
pub fn schema_sdl() -> String {
    build_schema(true).sdl()
}

/// Gives every error a code: errors raised by resolvers carry theirs; those raised by
/// async-graphql itself (syntax, validation, variable coercion, limits) are the client's.
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            let extensions = error.extensions.get_or_insert_with(Default::default);
            if extensions.get("code").is_none() {
                extensions.set("code", "BAD_USER_INPUT");
            }
        }
        response
    }
}
