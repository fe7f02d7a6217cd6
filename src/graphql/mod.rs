//! The GraphQL API: thin resolvers, one module per domain, merged into one schema. Resolvers
//! authorize, convert input, call a service and convert its answer; no rule and no SQL here.

pub mod account;
pub mod admin;
pub mod admin_tools;
pub mod affiliates;
pub mod catalog;
pub mod context;
pub mod credit;
pub mod documents;
pub mod enums;
pub mod events;
pub mod ids;
pub mod loaders;
pub mod marketing;
pub mod program;
pub mod rules;
pub mod scalars;
pub mod simulate;
pub mod store;
pub mod types;
pub mod webhooks;

use crate::graphql::context::RequestCache;
use crate::state::AppState;
use async_graphql::extensions::apollo_persisted_queries::{CacheStorage, LruCacheStorage};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest, NextRequest,
    NextResolve, NextValidation, ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    BatchRequest, BatchResponse, EmptySubscription, MergedObject, ObjectType, Request, Response, Schema, SchemaBuilder,
    ServerError, ServerResult, ValidationResult, Value, Variables,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Deepest selection accepted. The deepest contract operation needs 6; the standard
/// introspection query that GraphiQL and code generators send needs 13.
pub const MAX_DEPTH: usize = 15;
/// Most fields one operation may select (each field costs 1); the largest contract operation
/// selects about 70.
pub const MAX_COMPLEXITY: usize = 500;
/// Documents the automatic-persisted-query cache keeps (least recently used out first): the
/// clients' documents number about 40; the bound keeps hostile hashes from growing memory.
pub const PERSISTED_QUERIES: usize = 1_000;
/// The largest document that may be persisted (the largest client document is about 1.5 KiB);
/// with `PERSISTED_QUERIES` it bounds the cache to a few megabytes of text.
pub const MAX_PERSISTED_QUERY_BYTES: usize = 8 * 1024;
/// The code Apollo Client looks for before it sends the document with its hash. It is a
/// protocol answer, not one of the contract's operation error codes.
pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    account::AccountQuery,
    admin::AdminQuery,
    admin_tools::AdminToolsQuery,
    affiliates::AffiliateQuery,
    marketing::MarketingQuery,
    program::ProgramQuery,
    catalog::CatalogQuery,
    rules::RuleQuery,
    store::StoreQuery,
    simulate::SimulateQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    account::AccountMutation,
    admin::AdminMutation,
    admin_tools::AdminToolsMutation,
    affiliates::AffiliateMutation,
    marketing::MarketingMutation,
    program::ProgramMutation,
    rules::RuleMutation,
    credit::CreditMutation,
    catalog::CatalogMutation,
    events::EventMutation,
    store::StoreMutation,
    webhooks::WebhookMutation,
);

/// A sandbox server's mutations: every one of `MutationRoot` and the sandbox's own.
#[derive(MergedObject, Default)]
pub struct SandboxMutationRoot(MutationRoot, program::SandboxMutation);

/// The schema a server runs. A sandbox's is another schema, not the same one with fields
/// hidden: async-graphql's `visible` hides a field from introspection only (a document that
/// names it still validates and runs) and the SDL export lists it anyway. So the sandbox's
/// operations are in its schema's types, and absent from every other schema.
#[derive(Clone)]
pub enum AppSchema {
    /// The API of schema.graphql.
    Standard(Schema<QueryRoot, MutationRoot, EmptySubscription>),
    /// SANDBOX=true: the same, and the sandbox's mutations (`advanceClock`).
    Sandbox(Schema<QueryRoot, SandboxMutationRoot, EmptySubscription>),
}

impl AppSchema {
    pub async fn execute_batch(&self, batch: BatchRequest) -> BatchResponse {
        match self {
            AppSchema::Standard(schema) => schema.execute_batch(batch).await,
            AppSchema::Sandbox(schema) => schema.execute_batch(batch).await,
        }
    }

    pub fn sdl(&self) -> String {
        match self {
            AppSchema::Standard(schema) => schema.sdl(),
            AppSchema::Sandbox(schema) => schema.sdl(),
        }
    }
}

fn builder<M: ObjectType + Default + 'static>(
    persisted: &PersistedQueries,
) -> SchemaBuilder<QueryRoot, M, EmptySubscription> {
    Schema::build(QueryRoot::default(), M::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(20)
        .extension(Hooks(documents::Documents::new(persisted.clone())))
}

/// The schema (not a sandbox's), with no database: everything a request needs comes with the
/// request's data.
pub fn build_schema(introspection: bool) -> AppSchema {
    build_schema_with(introspection, false, &PersistedQueries::new())
}

/// The schema, a sandbox's when `sandbox`, keeping automatic persisted queries in `persisted`
/// (which the HTTP layer reads too, to know what a hash-only GET would run).
pub fn build_schema_with(introspection: bool, sandbox: bool, persisted: &PersistedQueries) -> AppSchema {
    fn finish<M: ObjectType + Default + 'static>(
        builder: SchemaBuilder<QueryRoot, M, EmptySubscription>,
        introspection: bool,
    ) -> Schema<QueryRoot, M, EmptySubscription> {
        if introspection {
            builder.finish()
        } else {
            builder.disable_introspection().finish()
        }
    }
    if sandbox {
        AppSchema::Sandbox(finish(builder(persisted), introspection))
    } else {
        AppSchema::Standard(finish(builder(persisted), introspection))
    }
}

/// The SDL that `export-schema` writes to schema.graphql: a real program's, without the
/// sandbox's operations.
pub fn schema_sdl() -> String {
    build_schema(true).sdl()
}

/// The documents clients registered with Apollo's automatic persisted queries, by SHA-256:
/// a bounded LRU shared by the schema and the HTTP layer.
#[derive(Clone)]
pub struct PersistedQueries(LruCacheStorage);

impl Default for PersistedQueries {
    fn default() -> Self {
        Self::new()
    }
}

impl PersistedQueries {
    pub fn new() -> Self {
        PersistedQueries(LruCacheStorage::new(PERSISTED_QUERIES))
    }

    /// The document a request would run: its own query, or, for a hash-only request, the one
    /// persisted under that hash. None when there is none or it does not parse.
    pub async fn document_of(&self, request: &Request) -> Option<ExecutableDocument> {
        if !request.query.is_empty() {
            return async_graphql::parser::parse_query(&request.query).ok();
        }
        let async_graphql::Value::Object(persisted) = request.extensions.get("persistedQuery")? else {
            return None;
        };
        let async_graphql::Value::String(hash) = persisted.get("sha256Hash")? else {
            return None;
        };
        self.0.get(hash.clone()).await
    }
}

/// The schema's one extension: every extension costs every field of every answer a call, so
/// the documents requests run (`documents`) and how errors appear in answers (`RequestErrors`)
/// share one.
struct Hooks(documents::Documents);

impl ExtensionFactory for Hooks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestHooks {
            document: self.0.for_request(),
            errors: RequestErrors::default(),
        })
    }
}

struct RequestHooks {
    document: documents::RequestDocument,
    errors: RequestErrors,
}

#[async_trait::async_trait]
impl Extension for RequestHooks {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        self.errors.request(ctx, next).await
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.document.prepare_request(ctx, request, next).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        self.document.parse_query(ctx, query, variables, next).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        self.document.validation(ctx, next).await
    }

    /// On SQLite a mutation runs in its turn, on the writers' connection (`SqliteWriter`).
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let state = ctx.data_opt::<AppState>();
        let writer = state.and_then(|state| Some((state, state.sqlite_writer.as_ref()?)));
        match writer {
            Some((state, writer)) if self.document.runs_a_mutation() => {
                let _turn = writer.turn().await;
                if let Ok(cache) = ctx.data::<RequestCache>() {
                    cache.write_with(state.for_writes());
                }
                next.run(ctx, operation_name).await
            }
            _ => next.run(ctx, operation_name).await,
        }
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        self.errors.resolve(ctx, info, next).await
    }
}

/// How errors appear in an answer.
///
/// Every error gets a code: errors raised by resolvers carry theirs; those raised by
/// async-graphql itself (syntax, validation, variable coercion, limits) are the client's.
///
/// Null propagation as the GraphQL spec has it. async-graphql 7 leaves out the key of any field
/// whose resolver fails, nullable or not, so a client's cache finds a field missing. Here a
/// nullable field that fails is answered `null` with its error; a non-null one makes its
/// nearest nullable ancestor `null` (and `data` itself when there is none), its error kept.
/// List items count as non-null: every list of objects in the schema is `[T!]`. One request's
/// state.
#[derive(Default)]
struct RequestErrors {
    /// Errors of nullable fields answered `null`, added to the response at the end.
    errors: Mutex<Vec<ServerError>>,
    /// Paths of non-null fields that failed, or hold one that failed, not yet absorbed by a
    /// nullable ancestor.
    failed: Mutex<Vec<Vec<String>>>,
    /// Whether a non-null field failed yet: until one does, a field that succeeds has nothing
    /// to look at.
    any_failed: AtomicBool,
}

/// Called by `RequestHooks` directly rather than as an `Extension` of its own: a trait call
/// would box one more future for every field of every answer.
impl RequestErrors {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let errors = std::mem::take(&mut *self.errors.lock().unwrap_or_else(PoisonError::into_inner));
        response.errors.extend(errors);
        if !self.failed.lock().unwrap_or_else(PoisonError::into_inner).is_empty() {
            response.data = Value::Null;
        }
        for error in &mut response.errors {
            let extensions = error.extensions.get_or_insert_with(Default::default);
            if extensions.get("code").is_none() {
                // async-graphql answers an unknown hash with this message and no code.
                let code = if error.message == "PersistedQueryNotFound" {
                    PERSISTED_QUERY_NOT_FOUND
                } else {
                    "BAD_USER_INPUT"
                };
                extensions.set("code", code);
            }
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let nullable = !info.return_type.ends_with('!');
        let path_node = info.path_node;
        let result = next.run(ctx, info).await;
        if result.is_ok() && !self.any_failed.load(Ordering::Relaxed) {
            return result;
        }
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut path = None;
        let mut failed_below = false;
        if !failed.is_empty() || (result.is_err() && !nullable) {
            let here = path_node.to_string_vec();
            let before = failed.len();
            failed.retain(|p| !(p.len() > here.len() && p.starts_with(&here)));
            failed_below = failed.len() != before;
            path = Some(here);
        }
        match result {
            Err(error) if nullable => {
                self.errors.lock().unwrap_or_else(PoisonError::into_inner).push(error);
                Ok(None)
            }
            Ok(_) if failed_below && nullable => Ok(None),
            result => {
                if result.is_err() || failed_below {
                    failed.extend(path);
                    self.any_failed.store(true, Ordering::Relaxed);
                }
                result
            }
        }
    }
}
