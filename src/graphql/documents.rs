//! The documents requests run (hooks of the schema's one extension, `graphql::Hooks`):
//!
//! - Apollo's automatic persisted queries: a document registered with its SHA-256 is run again
//!   from its hash alone (kept in `PersistedQueries`, which the HTTP layer reads too); a
//!   document larger than `MAX_PERSISTED_QUERY_BYTES` is refused rather than kept;
//! - what is done once per document rather than once per request: clients send the same few
//!   documents again and again, so a document's parse and its validation are kept, and a
//!   request that sends one again runs it without either;
//! - the loaders' cache is turned on when the operation is a query (`context::RequestLoader`).
//!
//! A validation is kept with the variables it was checked with (their values are part of it:
//! a variable's value must fit its argument's type), so a request with other values is
//! validated again; the limits of depth, complexity, directives and recursion are checked by
//! the validation and the parse that the kept results come from, so caching never skips one.
//! Only successes are kept. Documents larger than `MAX_DOCUMENT_BYTES` are not kept, and at
//! most `DOCUMENTS` of them are (the oldest leave first), so the memory held is bounded
//! whatever clients send.

use crate::graphql::context::RequestLoader;
use crate::graphql::{MAX_PERSISTED_QUERY_BYTES, PersistedQueries};
use async_graphql::extensions::apollo_persisted_queries::CacheStorage;
use async_graphql::extensions::{Extension, ExtensionContext, NextParseQuery, NextPrepareRequest, NextValidation};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Value, Variables};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Documents kept: clients' documents number about 40.
pub const DOCUMENTS: usize = 256;
/// The largest document kept (the largest client document is about 1.5 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024;
/// Sets of variables whose validation one document keeps: a screen asks for a few page sizes;
/// a mutation whose variables differ every time finds none and keeps the latest.
const VALIDATIONS_PER_DOCUMENT: usize = 8;
/// The request extension of Apollo's automatic persisted queries.
const PERSISTED_QUERY: &str = "persistedQuery";

/// Persisted queries, and the documents seen, shared by every request of a schema.
pub struct Documents {
    persisted: PersistedQueries,
    kept: Arc<Mutex<Kept>>,
}

impl Documents {
    pub fn new(persisted: PersistedQueries) -> Self {
        Documents {
            persisted,
            kept: Arc::default(),
        }
    }
}

#[derive(Default)]
struct Kept {
    documents: HashMap<u64, Arc<Document>>,
    /// Keys in the order they were kept: the first is the next to leave.
    order: VecDeque<u64>,
}

impl Kept {
    fn find(&self, key: u64, source: Source<'_>) -> Option<Arc<Document>> {
        self.documents.get(&key).filter(|d| d.source.is(source)).cloned()
    }

    fn keep(&mut self, key: u64, document: Document) {
        if self.documents.insert(key, Arc::new(document)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > DOCUMENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.documents.remove(&oldest);
            }
        }
    }
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Documents {
    /// What one request uses (extensions are made per request).
    pub fn for_request(&self) -> RequestDocument {
        RequestDocument {
            persisted: self.persisted.clone(),
            kept: self.kept.clone(),
            seen: Mutex::new(None),
            mutation: AtomicBool::new(false),
        }
    }
}

/// One request's document.
pub struct RequestDocument {
    persisted: PersistedQueries,
    kept: Arc<Mutex<Kept>>,
    seen: Mutex<Option<Seen>>,
    /// Whether the operation the request runs is a mutation (known once it is parsed).
    mutation: AtomicBool,
}

#[derive(Default)]
struct Seen {
    operation: Option<String>,
    /// The document in the cache, when it may be kept at all.
    keeping: Option<Keeping>,
}

struct Keeping {
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
        (persisted_hash(request)?, true)
    } else {
        (request.query.as_str(), false)
    };
    (text.len() <= MAX_DOCUMENT_BYTES).then_some(Source {
        text,
        persisted,
        operation: request.operation_name.as_deref(),
    })
}

fn persisted_hash(request: &Request) -> Option<&str> {
    let Some(Value::Object(persisted)) = request.extensions.get(PERSISTED_QUERY) else {
        return None;
    };
    match persisted.get("sha256Hash") {
        Some(Value::String(hash)) => Some(hash),
        _ => None,
    }
}

fn variables_key(variables: &Variables) -> String {
    serde_json::to_string(variables).unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

impl RequestDocument {
    /// Whether the request runs a mutation (false until its document is parsed).
    pub fn runs_a_mutation(&self) -> bool {
        self.mutation.load(Ordering::Relaxed)
    }

    /// Apollo's protocol, as async-graphql's own extension answers it: a hash alone runs the
    /// document registered under it; a document with its hash is checked against it and
    /// registered.
    async fn persisted_query(&self, mut request: Request) -> ServerResult<Request> {
        // Too large to keep: refused, rather than run and forgotten. Sent without the
        // extension, it runs.
        if request.extensions.contains_key(PERSISTED_QUERY) && request.query.len() > MAX_PERSISTED_QUERY_BYTES {
            return Err(ServerError::new(
                format!(
                    "a persisted query may be at most {} KiB; send it without persistedQuery",
                    MAX_PERSISTED_QUERY_BYTES / 1024
                ),
                None,
            ));
        }
        let Some(value) = request.extensions.remove(PERSISTED_QUERY) else {
            return Ok(request);
        };
        let persisted: PersistedQuery = async_graphql::from_value(value)
            .map_err(|_| ServerError::new("Invalid \"PersistedQuery\" extension configuration.", None))?;
        if persisted.version != 1 {
            return Err(ServerError::new(
                format!(
                    "Only the \"PersistedQuery\" extension of version \"1\" is supported, and the current version is \"{}\".",
                    persisted.version
                ),
                None,
            ));
        }
        if request.query.is_empty() {
            let document = self.persisted.0.get(persisted.sha256_hash).await;
            request.set_parsed_query(document.ok_or_else(|| ServerError::new("PersistedQueryNotFound", None))?);
            return Ok(request);
        }
        if hex::encode(Sha256::digest(request.query.as_bytes())) != persisted.sha256_hash {
            return Err(ServerError::new("provided sha does not match query", None));
        }
        let document = async_graphql::parser::parse_query(&request.query)?;
        self.persisted.0.set(persisted.sha256_hash, document.clone()).await;
        request.query = String::new();
        request.set_parsed_query(document);
        Ok(request)
    }
}

#[async_trait::async_trait]
impl Extension for RequestDocument {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let keeping = source_of(&request).map(|source| {
            let key = source.key();
            let found = lock(&self.kept).find(key, source);
            Keeping {
                key,
                source: found.is_none().then(|| OwnedSource::of(source)),
                variables: variables_key(&request.variables),
                found,
                parsed: None,
            }
        });
        let operation = request.operation_name.clone();
        let persisted = request.extensions.contains_key(PERSISTED_QUERY);
        let mut request = self.persisted_query(request).await?;
        // A persisted query's document came from the persisted queries.
        if let Some(found) = keeping.as_ref().and_then(|k| k.found.as_ref())
            && !persisted
        {
            request.set_parsed_query(found.parsed.clone());
        }
        *lock(&self.seen) = Some(Seen { operation, keeping });
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
        let mut seen = lock(&self.seen);
        let seen = seen.get_or_insert_with(Seen::default);
        if let Some(keeping) = seen.keeping.as_mut()
            && keeping.found.is_none()
        {
            keeping.parsed = Some(document.clone());
        }
        let operation = seen.operation.as_deref();
        self.mutation
            .store(runs(&document, operation, OperationType::Mutation), Ordering::Relaxed);
        if runs(&document, operation, OperationType::Query)
            && let Some(loader) = ctx.data_opt::<RequestLoader>()
        {
            loader.enable_all_cache(true);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let keeping = lock(&self.seen).as_mut().and_then(|seen| seen.keeping.take());
        let Some(mut keeping) = keeping else {
            return next.run(ctx).await;
        };
        if let Some(found) = &keeping.found {
            let validated = lock(&found.validated);
            if let Some((_, result)) = validated.iter().find(|(variables, _)| *variables == keeping.variables) {
                return Ok(*result);
            }
        }
        let result = next.run(ctx).await?;
        if let Some(found) = &keeping.found {
            let mut validated = lock(&found.validated);
            if validated.len() >= VALIDATIONS_PER_DOCUMENT {
                validated.pop_front();
            }
            validated.push_back((keeping.variables, result));
        } else if let (Some(source), Some(parsed)) = (keeping.source.take(), keeping.parsed.take()) {
            lock(&self.kept).keep(
                keeping.key,
                Document {
                    source,
                    parsed,
                    validated: Mutex::new(VecDeque::from([(keeping.variables, result)])),
                },
            );
        }
        Ok(result)
    }
}

/// Whether the operation a request runs of `document` is of type `ty` (false when it names none
/// of several, which the executor refuses).
fn runs(document: &ExecutableDocument, name: Option<&str>, ty: OperationType) -> bool {
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|operation| operation.node.ty == ty)
}
