//! Browser apps on other origins: only the configured ones get CORS headers, for the preflight
//! a browser sends before `POST /graphql` with a token and JSON, and for the request itself.

use crate::helpers::*;
use reqwest::{Method, StatusCode};

const APP: &str = "https://app.example.com";
const ADMIN_CONSOLE: &str = "http://localhost:5173";
const STRANGER: &str = "https://evil.example.net";

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}/graphql", app.address))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_listed_origin_passes_the_preflight_and_reads_the_answer() {
    let app = spawn_app_with(|config| config.cors_origins = vec![APP.to_owned(), ADMIN_CONSOLE.to_owned()]).await;
    for origin in [APP, ADMIN_CONSOLE] {
        let response = preflight(&app, origin).await;
        assert!(response.status().is_success(), "{}", response.status());
        assert_eq!(header(&response, "access-control-allow-origin"), Some(origin));
        let methods = header(&response, "access-control-allow-methods")
            .unwrap_or_default()
            .to_ascii_uppercase();
        assert!(methods.contains("POST"), "{methods}");
        let allowed = header(&response, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{allowed}"
        );
        assert!(header(&response, "access-control-max-age").is_some());
        // Responses differ by origin: a cache must not hand one origin's answer to another.
        let vary = header(&response, "vary").unwrap_or_default().to_ascii_lowercase();
        assert!(vary.contains("origin"), "{vary}");
    }

    // The request itself: the browser lets the app read it.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("origin", APP)
        .bearer_auth(app.admin())
        .json(&serde_json::json!({ "query": "{ programSettings { enabled } }" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
    let exposed = header(&response, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn an_origin_not_listed_gets_no_cors_headers() {
    let app = spawn_app_with(|config| config.cors_origins = vec![APP.to_owned()]).await;
    for origin in [STRANGER, "https://app.example.com.evil.net", "http://app.example.com"] {
        let response = preflight(&app, origin).await;
        assert_eq!(header(&response, "access-control-allow-origin"), None, "{origin}");
        assert_eq!(header(&response, "access-control-allow-headers"), None, "{origin}");
    }
}

#[tokio::test]
async fn without_origins_the_api_is_same_origin_only() {
    let app = spawn_app().await;
    let response = preflight(&app, APP).await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    // Same-origin and server-to-server callers are not affected.
    let body = app
        .gql(
            Some(&app.admin()),
            "{ programSettings { enabled } }",
            serde_json::json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body:#}");
}
