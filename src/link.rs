//! The referral link over HTTP: `GET /r/{code}` redirects to the program's landing page with
//! the code (a `ref` query parameter and a first-party cookie) and counts the click;
//! `GET /welcome` is the built-in landing page used until an admin sets one.
//!
//! What counts, and for whom, is `service::clicks`; this module reads the request (client
//! address, user agent, method), applies the per-address quota, and writes the response.

use crate::service::clicks::{self, Followed, Visit};
use crate::service::codes::ReferralCode;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use cookie::{Cookie, SameSite};
use secrecy::ExposeSecret;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use url::Url;

/// The built-in landing page.
pub const WELCOME_PATH: &str = "/welcome";
/// The name of the cookie and of the query parameter that carry the code.
pub const REF: &str = "ref";

/// The link's routes, with their state: merged into the application's router. A click is a
/// write: its statements go where writes go (`AppState::for_writes`).
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    Router::new()
        .route("/r/{code}", get(follow))
        .route(WELCOME_PATH, get(welcome))
        .with_state(state.for_writes())
}

/// `GET` (and `HEAD`, which axum answers with the same handler) `/r/{code}`.
async fn follow(
    State(state): State<AppState>,
    Path(code): Path<String>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let address = client_address(peer, &headers, state.config.trust_forwarded_for);
    // Every request counts against the quota, counted as a click or not: a link answers
    // whether a code exists, so it must not become a way to guess codes.
    if let Err(wait) = state.limits.link_click(address) {
        return too_many_requests(wait);
    }
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let visit = match user_agent {
        Some(user_agent) if method == Method::GET && !clicks::is_robot(Some(user_agent)) => Some(Visit {
            secret: state.config.jwt_secret.expose_secret(),
            address,
            user_agent,
        }),
        _ => None,
    };
    match clicks::follow(&state.db, &state.settings.current(), &code, visit, state.clock.now()).await {
        Ok(followed) => redirect(&state.config.public_url, &followed),
        Err(err) => {
            tracing::error!(error = ?err, "following a referral link");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the referral link cannot be followed right now",
            )
                .into_response()
        }
    }
}

/// The client's address: the TCP peer, or, behind a trusted reverse proxy, the address the
/// proxy appended last to `X-Forwarded-For` (earlier entries are whatever the client sent).
/// Served without connect info (not through `http::serve`), every client shares one quota.
pub fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| {
            let last = headers.get_all("x-forwarded-for").into_iter().next_back()?;
            last.to_str().ok()?.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        })
        .flatten();
    forwarded
        .or_else(|| peer.map(|p| p.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .to_canonical()
}

fn redirect(public_url: &str, followed: &Followed) -> Response {
    let built_in = || Url::parse(&format!("{public_url}{WELCOME_PATH}"));
    // A landing URL is validated when it is set; should one in the database not parse, the
    // visitor still gets somewhere.
    let landing = followed
        .landing_url
        .as_deref()
        .and_then(|url| Url::parse(url).ok())
        .map_or_else(built_in, Ok);
    let Ok(landing) = landing else {
        tracing::error!(public_url, "PUBLIC_URL does not make a landing URL");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let location = clicks::landing_location(&landing, followed.code.as_deref());
    let Ok(location) = HeaderValue::from_str(location.as_str()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    let headers = response.headers_mut();
    // Every visit must reach the server: to be counted, and to set the cookie again.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(code) = &followed.code {
        let secure = public_url.starts_with("https://");
        let cookie = ref_cookie(code, followed.cookie_days, secure);
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// The first-party cookie that keeps the code for a sign-up that comes later.
fn ref_cookie(code: &str, days: i32, secure: bool) -> Cookie<'static> {
    Cookie::build((REF, code.to_owned()))
        .path("/")
        .max_age(cookie::time::Duration::days(i64::from(days)))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.max(1).to_string())],
        "too many requests to referral links; try again later",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct WelcomeQuery {
    #[serde(rename = "ref")]
    code: Option<String>,
}

/// The built-in landing page: shows the code the visitor came with, for the sign-up form.
async fn welcome(Query(query): Query<WelcomeQuery>) -> Response {
    // Only a well-formed code is shown (letters and digits); escaped all the same.
    let code = query.code.as_deref().and_then(|c| ReferralCode::parse(c).ok());
    let body = match &code {
        Some(code) => format!(
            "<p>You were invited with the referral code <strong id=\"ref\">{}</strong>.</p>\n\
             <p>Sign up with this code: the sign-up form should carry it (it is also kept in a \
             cookie on this site).</p>",
            escape_html(code.as_str())
        ),
        None => "<p>This referral link names no code that is in use.</p>".to_owned(),
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Referral</title></head>\n<body>\n<h1>Welcome</h1>\n{body}\n</body>\n</html>\n"
    );
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_client_is_the_peer_unless_a_proxy_is_trusted() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 9], 5555)));
        let forwarded = headers(&["1.1.1.1", "203.0.113.5, 198.51.100.7"]);
        assert_eq!(client_address(peer, &forwarded, false), IpAddr::from([10, 0, 0, 9]));
        assert_eq!(client_address(peer, &forwarded, true), IpAddr::from([198, 51, 100, 7]));
        assert_eq!(
            client_address(peer, &headers(&["junk"]), true),
            IpAddr::from([10, 0, 0, 9])
        );
        assert_eq!(
            client_address(None, &headers(&[]), false),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        let mapped = Some("[::ffff:192.0.2.1]:80".parse().unwrap_or(SocketAddr::from(([0; 4], 0))));
        assert_eq!(
            client_address(mapped, &headers(&[]), false),
            IpAddr::from([192, 0, 2, 1])
        );
    }

    #[test]
    fn the_cookie_has_every_attribute() {
        let cookie = ref_cookie("CLOUD21", 30, true).to_string();
        for part in [
            "ref=CLOUD21",
            "Max-Age=2592000",
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
        ] {
            assert!(cookie.contains(part), "{part} missing from {cookie}");
        }
        assert!(!ref_cookie("CLOUD21", 1, false).to_string().contains("Secure"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
