//! What is done once per document rather than once per request: clients send the same few
//! documents again and again, so a document's parse and its validation are kept, and a
//! request that sends one again runs it without either. Also: the loaders' cache is turned on
//! for queries.
//!
//! A validation is kept with the variables it was checked with (their values are part of it:
//! a variable's value must fit its argument's type), so a request with other values is
//! validated again; the limits of depth, complexity, directives and recursion are checked by
//! the validation and the parse that the kept results come from, so caching never skips one.
//! Only successes are kept. Documents larger than `MAX_DOCUMENT_BYTES` are not kept, and at
//! most `DOCUMENTS` of them are (the oldest leave first), so the memory held is bounded
//! whatever clients send.

use crate::graphql::context::RequestLoader;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Value, Variables};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

/// Documents kept: clients' documents number about 40.
pub const DOCUMENTS: usize = 256;
/// The largest document kept (the largest client document is about 1.5 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024;
/// Sets of variables whose validation one document keeps: a screen asks for a few page sizes;
/// a mutation whose variables differ every time finds none and keeps the latest.
const VALIDATIONS_PER_DOCUMENT: usize = 8;

/// The documents seen, shared by every request of a schema.
#[derive(Clone, Default)]
pub struct DocumentCache(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    documents: HashMap<u64, Arc<Document>>,
    /// Keys in the order they were kept: the first is the next to leave.
    order: VecDeque<u64>,
}

/// What a request names its document by, and the operation it runs of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Source<'a> {
    /// The document's text, or the hash of a persisted query sent without it.
    text: &'a str,
    persisted: bool,
    operation: Option<&'a str>,
}

impl Source<'_> {
    fn key(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// `Source`, kept.
struct OwnedSource {
    text: String,
    persisted: bool,
    operation: Option<String>,
}

impl OwnedSource {
    fn of(source: Source<'_>) -> Self {
        OwnedSource {
            text: source.text.to_owned(),
            persisted: source.persisted,
            operation: source.operation.map(str::to_owned),
        }
    }

    fn is(&self, source: Source<'_>) -> bool {
        self.text == source.text && self.persisted == source.persisted && self.operation.as_deref() == source.operation
    }
}

struct Document {
    source: OwnedSource,
    parsed: ExecutableDocument,
    /// Successful validations, by the variables (as JSON) they were checked with.
    validated: Mutex<VecDeque<(String, ValidationResult)>>,
}

impl DocumentCache {
    fn find(&self, key: u64, source: Source<'_>) -> Option<Arc<Document>> {
        let kept = lock(&self.0);
        kept.documents.get(&key).filter(|d| d.source.is(source)).cloned()
    }

    fn keep(&self, key: u64, document: Document) {
        let mut kept = lock(&self.0);
        if kept.documents.insert(key, Arc::new(document)).is_none() {
            kept.order.push_back(key);
        }
        while kept.order.len() > DOCUMENTS {
            if let Some(oldest) = kept.order.pop_front() {
                kept.documents.remove(&oldest);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentCaching {
            cache: self.clone(),
            request: Mutex::new(None),
        })
    }
}

/// One request's use of the cache (extensions are created per request).
struct DocumentCaching {
    cache: DocumentCache,
    request: Mutex<Option<Seen>>,
}

struct Seen {
    key: u64,
    /// None once the document is found in the cache.
    source: Option<OwnedSource>,
    variables: String,
    found: Option<Arc<Document>>,
    /// The parse of a document not kept yet, kept once it validates.
    parsed: Option<ExecutableDocument>,
}

/// The document a request names, when it may be kept.
fn source_of(request: &Request) -> Option<Source<'_>> {
    let (text, persisted) = if request.query.is_empty() {
        let Some(Value::Object(persisted)) = request.extensions.get("persistedQuery") else {
            return None;
        };
        let Some(Value::String(hash)) = persisted.get("sha256Hash") else {
            return None;
        };
        (hash.as_str(), true)
    } else {
        (request.query.as_str(), false)
    };
    (text.len() <= MAX_DOCUMENT_BYTES).then_some(Source {
        text,
        persisted,
        operation: request.operation_name.as_deref(),
    })
}

fn variables_key(variables: &Variables) -> String {
    serde_json::to_string(variables).unwrap_or_default()
}

#[async_trait::async_trait]
impl Extension for DocumentCaching {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let seen = source_of(&request).map(|source| {
            let key = source.key();
            let found = self.cache.find(key, source);
            Seen {
                key,
                source: found.is_none().then(|| OwnedSource::of(source)),
                variables: variables_key(&request.variables),
                found,
                parsed: None,
            }
        });
        if let Some(seen) = seen {
            // A persisted query's document is the persisted-query extension's to hand over
            // (it also checks a text against its hash).
            if let Some(found) = &seen.found
                && !request.extensions.contains_key("persistedQuery")
            {
                request.set_parsed_query(found.parsed.clone());
            }
            *lock(&self.request) = Some(seen);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if let Some(seen) = lock(&self.request).as_mut()
            && seen.found.is_none()
        {
            seen.parsed = Some(document.clone());
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let seen = lock(&self.request).take();
        let Some(mut seen) = seen else {
            return next.run(ctx).await;
        };
        if let Some(found) = &seen.found {
            let validated = lock(&found.validated);
            if let Some((_, result)) = validated.iter().find(|(variables, _)| *variables == seen.variables) {
                return Ok(*result);
            }
        }
        let result = next.run(ctx).await?;
        if let Some(found) = &seen.found {
            let mut validated = lock(&found.validated);
            if validated.len() >= VALIDATIONS_PER_DOCUMENT {
                validated.pop_front();
            }
            validated.push_back((seen.variables, result));
        } else if let (Some(source), Some(parsed)) = (seen.source.take(), seen.parsed.take()) {
            self.cache.keep(
                seen.key,
                Document {
                    source,
                    parsed,
                    validated: Mutex::new(VecDeque::from([(seen.variables, result)])),
                },
            );
        }
        Ok(result)
    }
}

/// Turns the loaders' cache on when the operation to run is a query (`context::RequestLoader`).
pub struct QueryLoaderCache;

impl ExtensionFactory for QueryLoaderCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LoaderCaching::default())
    }
}

#[derive(Default)]
struct LoaderCaching {
    operation: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Extension for LoaderCaching {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        lock(&self.operation).clone_from(&request.operation_name);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let name = lock(&self.operation).take();
        if runs_a_query(&document, name.as_deref())
            && let Some(loader) = ctx.data_opt::<RequestLoader>()
        {
            loader.enable_all_cache(true);
        }
        Ok(document)
    }
}

/// Whether the operation a request runs of `document` is a query (false when it names none of
/// several, which the executor refuses).
fn runs_a_query(document: &ExecutableDocument, name: Option<&str>) -> bool {
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|operation| operation.node.ty == OperationType::Query)
}
