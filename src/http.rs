//! The HTTP surface: `/graphql` (POST and GET, GraphiQL for browsers), `/healthz`.

use crate::auth::Viewer;
use crate::error::AppError;
use crate::graphql::context::request_data;
use crate::graphql::{AppSchema, build_schema};
use crate::state::AppState;
use async_graphql::BatchRequest;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Requests larger than this are refused before they are parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Operations one batched request may carry.
pub const MAX_BATCH: usize = 5;

#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: AppSchema,
}

pub fn build_app(state: AppState) -> Router {
    let schema = build_schema(state.config.introspection);
    let request_timeout = state.config.request_timeout;
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        // The GraphQL extractor streams the body, which axum's DefaultBodyLimit does not see:
        // the limit has to wrap the body itself.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // That layer answers an announced length over the limit itself, in plain text.
        .layer(axum::middleware::map_response(payload_too_large_as_json))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(HttpState { app: state, schema })
}

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app)
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
    let has_query = uri.query().is_some_and(|q| q.contains("query="));
    match request {
        Ok(request) if has_query => {
            let batch = request.into_inner();
            if batch.iter().any(is_mutation) {
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

/// Whether the operation a request would run is a mutation (GET may only run queries). A
/// document that does not parse is left to the executor, which reports it.
fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Mutation)
}

async fn execute(state: &HttpState, headers: &HeaderMap, mut batch: BatchRequest) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    let viewer: Viewer = match state.app.keys.viewer_from_header(authorization) {
        Ok(viewer) => viewer,
        Err(err) => return error_response(StatusCode::UNAUTHORIZED, &err),
    };
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > MAX_BATCH
    {
        let err = AppError::bad_input(format!("a batch may hold at most {MAX_BATCH} operations"));
        return error_response(StatusCode::BAD_REQUEST, &err);
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
    let mut response = GraphQLResponse::from(batch_response).into_response();
    // async-graphql-axum always labels the body application/graphql-response+json; a client
    // that accepts only application/json MUST get application/json (GraphQL over HTTP).
    if !prefers_graphql_response_json(headers) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
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
