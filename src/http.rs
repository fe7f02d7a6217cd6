//! The HTTP surface: `/graphql` (POST and GET, GraphiQL for browsers), `/healthz`, and the
//! referral link's routes (`crate::link`).

use crate::error::AppError;
use crate::graphql::context::request_data;
use crate::graphql::{AppSchema, MAX_COMPLEXITY, PersistedQueries, build_schema_with};
use crate::state::AppState;
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{BatchRequest, BatchResponse, ServerError};
use async_graphql_axum::GraphQLBatchRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Requests larger than this are refused before they are parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Operations one batched request may carry: Apollo's BatchHttpLink sends up to 10.
pub const MAX_BATCH: usize = 10;
/// Fields a whole batch may select (each operation is also held to `MAX_COMPLEXITY`): twice
/// one operation's limit, so ten of the dashboard's largest operations (about 70 fields each)
/// fit, and a batch costs at most what two of the costliest single requests do.
pub const MAX_BATCH_COMPLEXITY: usize = 2 * MAX_COMPLEXITY;
/// Bytes reserved for an answer's JSON: the contract's largest usual answer, a Dashboard with
/// 20 friends and 20 entries, is about 12 KiB.
const RESPONSE_CAPACITY: usize = 16 * 1024;
/// How long a browser may reuse a preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);
const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: AppSchema,
    persisted: PersistedQueries,
}

pub fn build_app(state: AppState) -> Router {
    let persisted = PersistedQueries::new();
    let schema = build_schema_with(state.config.introspection, state.config.sandbox, &persisted);
    let origins: Vec<HeaderValue> = state
        .config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let request_timeout = state.config.request_timeout;
    let router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .merge(crate::link::routes(state.clone()))
        // The GraphQL extractor streams the body, which axum's DefaultBodyLimit does not see:
        // the limit has to wrap the body itself.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // That layer answers an announced length over the limit itself, in plain text.
        .layer(axum::middleware::map_response(payload_too_large_as_json))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // Outside the trace layer, so that the request's span carries its id; the id goes back
        // in the response, for a client to quote.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(HttpState {
            app: state,
            schema,
            persisted,
        });
    if origins.is_empty() {
        return router;
    }
    // Outermost: a preflight is answered before anything else looks at the request.
    let listed: Arc<[HeaderValue]> = origins.clone().into();
    router
        .layer(cors(origins))
        .layer(axum::middleware::from_fn(move |request, next| {
            only_for_listed_origins(listed.clone(), request, next)
        }))
}

/// Browser apps on the configured origins may call the API (CORS_ORIGINS; without origins there
/// is no layer at all, and browsers keep to the same-origin policy). Tokens travel in
/// `Authorization`, never in cookies, so credentials stay off.
fn cors(origins: Vec<HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER)])
        .max_age(CORS_MAX_AGE)
}

/// tower-http leaves out only `Access-Control-Allow-Origin` for an origin it does not allow,
/// and still describes the methods and headers it would allow: an origin that is not listed
/// gets no CORS header at all, so it learns nothing of the API's CORS policy.
async fn only_for_listed_origins(
    listed: Arc<[HeaderValue]>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin_listed = request
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| listed.contains(o));
    let mut response = next.run(request).await;
    if !origin_listed {
        let cors_headers: Vec<HeaderName> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors_headers {
            response.headers_mut().remove(name);
        }
    }
    response
}

/// One span per request at INFO, with the request's id, so that every line logged while
/// serving it (a JSON log's `spans`) can be traced back to it. The path only: a GET's query
/// string may hold a whole document.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
}

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish. Each request knows
/// its TCP peer (referral links count clicks and limit requests per client address).
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn graphql_post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: Result<GraphQLBatchRequest, GraphQLRejection>,
) -> Response {
    match request {
        Ok(request) => execute(&state, &headers, request.into_inner()).await,
        Err(rejection) => unreadable_body(&rejection),
    }
}

/// A body that is not a GraphQL request gets a GraphQL error with a code, not the extractor's
/// plain-text debug output; one cut off by the body limit while streaming (sent without a
/// length) is a 413, like one that announced its length.
fn unreadable_body(rejection: &GraphQLRejection) -> Response {
    use async_graphql::ParseRequestError;
    match &rejection.0 {
        ParseRequestError::PayloadTooLarge => too_large(),
        // The extractor keeps only the text of the body's error: LengthLimitError's.
        ParseRequestError::Io(err) if err.to_string().contains("length limit exceeded") => too_large(),
        _ => error_response(
            StatusCode::BAD_REQUEST,
            &AppError::bad_input("the body is not a GraphQL request"),
        ),
    }
}

fn too_large() -> Response {
    let err = AppError::bad_input(format!("the request body is larger than {} KiB", MAX_BODY_BYTES / 1024));
    error_response(StatusCode::PAYLOAD_TOO_LARGE, &err)
}

async fn payload_too_large_as_json(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        too_large()
    } else {
        response
    }
}

/// GET runs a query from the URL; a browser asking for HTML without a query gets GraphiQL.
async fn graphql_get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    request: Result<GraphQLBatchRequest, GraphQLRejection>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    // A persisted query's hash alone (Apollo's `extensions`) stands for the query.
    let has_query = uri
        .query()
        .is_some_and(|q| q.contains("query=") || q.contains("extensions="));
    match request {
        Ok(request) if has_query => {
            let batch = request.into_inner();
            if any_mutation(&state.persisted, &batch).await {
                let err = AppError::bad_input("mutations are sent with POST");
                return error_response(StatusCode::METHOD_NOT_ALLOWED, &err);
            }
            execute(&state, &headers, batch).await
        }
        _ if wants_html => Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response(),
        _ => error_response(
            StatusCode::BAD_REQUEST,
            &AppError::bad_input("a GET request needs a query parameter"),
        ),
    }
}

/// Whether an operation of the batch is a mutation (GET may only run queries), the persisted
/// document of a hash-only request included. A document that does not parse, or a hash the
/// server does not know, is left to the executor, which reports it.
async fn any_mutation(persisted: &PersistedQueries, batch: &BatchRequest) -> bool {
    use async_graphql::parser::types::OperationType;
    let requests = match batch {
        BatchRequest::Single(request) => std::slice::from_ref(request),
        BatchRequest::Batch(requests) => requests.as_slice(),
    };
    for request in requests {
        let Some(document) = persisted.document_of(request).await else {
            continue;
        };
        let operations = operations_run(&document, request.operation_name.as_deref());
        if operations.iter().any(|op| op.ty == OperationType::Mutation) {
            return true;
        }
    }
    false
}

/// The operation a request names (or the document's only one); all of them when it names
/// none of several, which the executor then refuses.
fn operations_run<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Vec<&'a async_graphql::parser::types::OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => vec![&op.node],
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node).into_iter().collect(),
        (DocumentOperations::Multiple(ops), None) => ops.values().map(|op| &op.node).collect(),
    }
}

/// Refuses a batch of more than `MAX_BATCH` operations outright (400), and one whose
/// operations together select more than `MAX_BATCH_COMPLEXITY` fields with the error a single
/// operation over its limit gets, once per operation, before any of them runs.
async fn refuse_batch(state: &HttpState, headers: &HeaderMap, batch: &BatchRequest) -> Option<Response> {
    let BatchRequest::Batch(requests) = batch else {
        return None;
    };
    if requests.len() > MAX_BATCH {
        let err = AppError::bad_input(format!("a batch may hold at most {MAX_BATCH} operations"));
        return Some(error_response(StatusCode::BAD_REQUEST, &err));
    }
    let mut fields = 0;
    for request in requests {
        if let Some(document) = state.persisted.document_of(request).await {
            let budget = MAX_BATCH_COMPLEXITY.saturating_sub(fields);
            for operation in operations_run(&document, request.operation_name.as_deref()) {
                fields += count_fields(&document, &operation.selection_set.node, budget, &mut Vec::new());
            }
        }
        if fields > MAX_BATCH_COMPLEXITY {
            let message = format!("Query is too complex: the batch selects more than {MAX_BATCH_COMPLEXITY} fields");
            let answer = || {
                let mut error = ServerError::new(message.clone(), None);
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("code", "BAD_USER_INPUT");
                async_graphql::Response::from_errors(vec![error])
            };
            let answers = BatchResponse::Batch(requests.iter().map(|_| answer()).collect());
            return Some(graphql_response(answers, headers));
        }
    }
    None
}

/// The fields a selection selects, each fragment counted every time it is spread, `@skip` and
/// `@include` ignored, `__typename` free: never less than async-graphql's complexity. Stops
/// counting past `budget`, and at a fragment that spreads itself (the executor refuses those),
/// so hostile documents cost little to count.
fn count_fields<'a>(
    document: &'a ExecutableDocument,
    selection_set: &'a SelectionSet,
    budget: usize,
    spreading: &mut Vec<&'a str>,
) -> usize {
    let mut fields = 0;
    for selection in &selection_set.items {
        if fields > budget {
            break;
        }
        let left = budget - fields;
        fields += match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                let own = usize::from(field.name.node.as_str() != "__typename");
                own + count_fields(document, &field.selection_set.node, left, spreading)
            }
            Selection::InlineFragment(fragment) => {
                count_fields(document, &fragment.node.selection_set.node, left, spreading)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match document.fragments.get(&spread.node.fragment_name.node) {
                    Some(fragment) if !spreading.contains(&name) => {
                        spreading.push(name);
                        let n = count_fields(document, &fragment.node.selection_set.node, left, spreading);
                        spreading.pop();
                        n
                    }
                    _ => 0,
                }
            }
        };
    }
    fields
}

async fn execute(state: &HttpState, headers: &HeaderMap, mut batch: BatchRequest) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    // A token that is not valid is not refused here with a 401 but answered like a missing
    // one: every field that needs a viewer is UNAUTHENTICATED, which clients' GraphQL error
    // handling sees (src/auth.rs: Viewer::Rejected).
    let viewer = state.app.keys.viewer_of_request(authorization);
    if let Some(refusal) = refuse_batch(state, headers, &batch).await {
        return refusal;
    }
    // Each operation gets its own data, so loaders and caches never outlive one operation.
    for request in batch.iter_mut() {
        request.data = request_data(&state.app, viewer.clone());
    }
    // The operations run to their end even if the client hangs up or the timeout fires.
    let schema = state.schema.clone();
    let Ok(batch_response) = crate::detach::run_to_completion(async move { schema.execute_batch(batch).await }).await
    else {
        let err = AppError::Internal(anyhow::anyhow!("the request's work panicked"));
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, &err);
    };
    graphql_response(batch_response, headers)
}

/// The answers as JSON, written once into a buffer that holds a usual answer without growing,
/// and labelled with the media type the client asked for: a client that accepts only
/// `application/json` MUST get `application/json` (GraphQL over HTTP). As async-graphql-axum
/// answers, a `Cache-Control` when every answer succeeded, and the headers resolvers set.
fn graphql_response(mut answers: BatchResponse, headers: &HeaderMap) -> Response {
    let mut body = Vec::with_capacity(RESPONSE_CAPACITY);
    if let Err(err) = serde_json::to_writer(&mut body, &answers) {
        let err = AppError::Internal(anyhow::anyhow!("writing the answer: {err}"));
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, &err);
    }
    let cache_control = answers
        .is_ok()
        .then(|| answers.cache_control().value())
        .flatten()
        .and_then(|value| HeaderValue::from_str(&value).ok());
    let set_by_resolvers = match &mut answers {
        BatchResponse::Single(answer) => std::mem::take(&mut answer.http_headers),
        BatchResponse::Batch(answers) => answers.iter_mut().fold(HeaderMap::new(), |mut all, answer| {
            all.extend(std::mem::take(&mut answer.http_headers));
            all
        }),
    };
    let mut response = Response::new(axum::body::Body::from(body));
    let media_type = if prefers_graphql_response_json(headers) {
        "application/graphql-response+json"
    } else {
        "application/json"
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    if let Some(cache_control) = cache_control {
        response_headers.insert(header::CACHE_CONTROL, cache_control);
    }
    response_headers.extend(set_by_resolvers);
    response
}

/// Whether the client's `Accept` asks for `application/graphql-response+json` at least as much
/// as for `application/json`. A missing `Accept`, `*/*` and `application/*` get
/// `application/json`, which every client of GraphQL over HTTP reads.
fn prefers_graphql_response_json(headers: &HeaderMap) -> bool {
    let mut graphql_response_json: Option<f32> = None;
    let mut json: Option<f32> = None;
    for accept in headers.get_all(header::ACCEPT) {
        let Ok(accept) = accept.to_str() else { continue };
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|param| {
                    param
                        .trim()
                        .strip_prefix("q=")
                        .or_else(|| param.trim().strip_prefix("Q="))
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = match media.as_str() {
                "application/graphql-response+json" => &mut graphql_response_json,
                "application/json" => &mut json,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    match graphql_response_json {
        Some(q) if q > 0.0 => json.is_none_or(|json_q| q >= json_q),
        _ => false,
    }
}

fn error_response(status: StatusCode, err: &AppError) -> Response {
    let body = json!({ "errors": [{ "message": err.message(), "extensions": { "code": err.code() } }] });
    (status, Json(body)).into_response()
}

/// Healthy only when the database answers.
async fn healthz(State(state): State<HttpState>) -> Response {
    match state.app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefers_graphql_response_json;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn prefers(accept: Option<&'static str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        }
        prefers_graphql_response_json(&headers)
    }

    #[test]
    fn the_response_media_type_follows_accept() {
        assert!(!prefers(None));
        assert!(!prefers(Some("*/*")));
        assert!(!prefers(Some("application/json")));
        assert!(!prefers(Some("application/*")));
        assert!(prefers(Some("application/graphql-response+json")));
        assert!(prefers(Some(
            "application/graphql-response+json, application/json;q=0.9"
        )));
        assert!(prefers(Some("application/json, application/graphql-response+json")));
        assert!(!prefers(Some(
            "application/graphql-response+json;q=0.5, application/json"
        )));
        assert!(!prefers(Some("application/graphql-response+json;q=0")));
    }
}
