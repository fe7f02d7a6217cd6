//! The referral link (`GET /r/{code}`): the redirect, the cookie, the clicks it counts and
//! the ones it does not, the per-address limit, the built-in landing page; the referral stats
//! on dashboards; and the admin console's settings round trip.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1";
const LANDING: &str = "https://shop.example.com/signup?plan=pro&utm_source=friends";

/// The answer to a link request, with its headers read.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    retry_after: Option<String>,
    cache_control: Option<String>,
}

/// A client that shows redirects instead of following them.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

async fn visit(app: &TestApp, method: Method, path: &str, user_agent: Option<&str>) -> Answer {
    let mut request = browser().request(method, format!("{}{path}", app.address));
    if let Some(agent) = user_agent {
        request = request.header("user-agent", agent);
    }
    let response = request.send().await.expect("the link answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("a text header").to_owned())
    };
    Answer {
        status: response.status(),
        location: header("location"),
        retry_after: header("retry-after"),
        cache_control: header("cache-control"),
        set_cookie: response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("a text header").to_owned())
            .collect(),
    }
}

async fn get(app: &TestApp, path: &str, user_agent: &str) -> Answer {
    visit(app, Method::GET, path, Some(user_agent)).await
}

async fn clicks(app: &TestApp) -> i64 {
    app.count("clicks").await
}

/// `me.referralStats` through the customer's ReferralStats operation.
async fn my_stats(app: &TestApp, external_id: &str) -> Value {
    let data = app
        .run_ok(Some(&app.customer(external_id)), "customer", "ReferralStats", json!({}))
        .await;
    data["me"]["referralStats"].clone()
}

fn stats(clicks: i64, signups: i64, qualified: i64) -> Value {
    json!({ "clicks": clicks, "signups": signups, "qualified": qualified })
}

/// The cookie's attributes, split on `;`, trimmed.
fn cookie_parts(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.set_cookie.len(), 1, "one cookie: {:?}", answer.set_cookie);
    answer.set_cookie[0].split(';').map(|p| p.trim().to_owned()).collect()
}

#[tokio::test]
async fn a_link_in_any_case_redirects_with_the_canonical_code_and_sets_the_cookie() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    app.update_settings(json!({ "landingUrl": LANDING })).await;

    let answer = get(&app, &format!("/r/{}", code.to_ascii_lowercase()), FIREFOX).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("{LANDING}&ref={code}").as_str())
    );
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    let parts = cookie_parts(&answer);
    assert_eq!(parts[0], format!("ref={code}"), "{parts:?}");
    for attribute in ["Max-Age=2592000", "Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(parts.iter().any(|p| p == attribute), "{attribute} missing: {parts:?}");
    }

    // cookieDays sets the cookie's life.
    app.update_settings(json!({ "cookieDays": 7 })).await;
    let answer = get(&app, &format!("/r/{code}"), SAFARI).await;
    assert!(
        cookie_parts(&answer).iter().any(|p| p == "Max-Age=604800"),
        "{:?}",
        answer.set_cookie
    );
    // A ref the landing page already had is replaced, not doubled.
    app.update_settings(json!({ "landingUrl": "https://shop.example.com/?ref=OLD&x=1" }))
        .await;
    let answer = get(&app, &format!("/r/{code}"), SAFARI).await;
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("https://shop.example.com/?x=1&ref={code}").as_str())
    );
}

#[tokio::test]
async fn a_visitor_counts_once_a_day_and_robots_head_and_unknown_codes_not_at_all() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let link = format!("/r/{code}");
    app.update_settings(json!({ "landingUrl": LANDING })).await;

    // The same visitor twice: one click.
    for _ in 0..2 {
        assert_eq!(get(&app, &link, FIREFOX).await.status, StatusCode::FOUND);
    }
    assert_eq!(clicks(&app).await, 1);
    assert_eq!(my_stats(&app, "acct-a").await, stats(1, 0, 0));
    // Another visitor (another browser from the same address): two.
    get(&app, &link.to_ascii_lowercase(), SAFARI).await;
    assert_eq!(my_stats(&app, "acct-a").await, stats(2, 0, 0));

    // HEAD is answered the same way and not counted.
    let head = visit(
        &app,
        Method::HEAD,
        &link,
        Some("Mozilla/5.0 (Windows NT 10.0) Edge/120"),
    )
    .await;
    assert_eq!(head.status, StatusCode::FOUND);
    assert_eq!(head.location.as_deref(), Some(format!("{LANDING}&ref={code}").as_str()));
    // Robots, link previews and agentless clients are redirected and not counted.
    for agent in [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "curl/8.5.0",
    ] {
        let answer = get(&app, &link, agent).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{agent}");
        assert!(answer.location.is_some_and(|l| l.ends_with(&format!("ref={code}"))));
    }
    assert_eq!(visit(&app, Method::GET, &link, None).await.status, StatusCode::FOUND);
    assert_eq!(clicks(&app).await, 2);

    // An unknown code and a malformed one: the landing page without a code, no cookie.
    for path in ["/r/NOSUCH99", "/r/ab", "/r/%3Cscript%3E", "/r/ALICE-1"] {
        let answer = get(&app, path, FIREFOX).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{path}");
        assert_eq!(answer.location.as_deref(), Some(LANDING), "{path}");
        assert!(answer.set_cookie.is_empty(), "{path}: {:?}", answer.set_cookie);
    }
    assert_eq!(clicks(&app).await, 2);

    // The same visitor following the link concurrently still counts once.
    let opera = "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0 OPR/111.0";
    let visits = (0..12).map(|_| get(&app, &link, opera));
    for answer in futures::future::join_all(visits).await {
        assert_eq!(answer.status, StatusCode::FOUND);
    }
    assert_eq!(my_stats(&app, "acct-a").await, stats(3, 0, 0));

    // No address is stored: only hashes.
    let stored = app
        .sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM clicks WHERE visitor_hash LIKE '%127.0.0.1%'")
        .await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_switched_off_program_redirects_without_a_code_and_counts_nothing() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", None, None).await;
    app.set_enabled(false).await;
    let answer = get(&app, &format!("/r/{code}"), FIREFOX).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("{PUBLIC_URL}/welcome").as_str())
    );
    assert!(answer.set_cookie.is_empty(), "{:?}", answer.set_cookie);
    assert_eq!(clicks(&app).await, 0);
    app.set_enabled(true).await;
    get(&app, &format!("/r/{code}"), FIREFOX).await;
    assert_eq!(clicks(&app).await, 1);
}

#[tokio::test]
async fn a_visit_reads_no_settings_row_and_a_malformed_code_no_row_at_all() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", None, None).await;
    app.update_settings(json!({ "landingUrl": LANDING })).await;
    // The least of three visits, so that a statement of a background task cannot count. A
    // repeated visit of one visitor: the account by its code, and the click the unique index
    // turns away.
    async fn least(app: &TestApp, path: &str) -> u64 {
        let mut least = u64::MAX;
        for _ in 0..3 {
            let before = app.state.statements.get();
            let answer = get(app, path, FIREFOX).await;
            assert_eq!(answer.status, StatusCode::FOUND, "{path}");
            assert!(answer.location.is_some_and(|l| l.starts_with(LANDING)), "{path}");
            least = least.min(app.state.statements.get() - before);
        }
        least
    }
    assert_eq!(least(&app, &format!("/r/{code}")).await, 2, "a known code");
    assert_eq!(least(&app, "/r/%3Cscript%3E").await, 0, "a malformed code");
}

#[tokio::test]
async fn without_a_landing_url_links_land_on_the_built_in_page() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", None, None).await;

    let answer = get(&app, &format!("/r/{}", code.to_ascii_lowercase()), FIREFOX).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    let location = answer.location.clone().expect("a Location");
    assert_eq!(location, format!("{PUBLIC_URL}/welcome?ref={code}"));
    assert_eq!(cookie_parts(&answer)[0], format!("ref={code}"));
    let unknown = get(&app, "/r/NOSUCH99", FIREFOX).await;
    assert_eq!(
        unknown.location.as_deref(),
        Some(format!("{PUBLIC_URL}/welcome").as_str())
    );

    // The page, reached on this server, shows the code.
    let path = location.strip_prefix(PUBLIC_URL).expect("on the public URL");
    let page = browser()
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .expect("the page answers");
    assert_eq!(page.status(), StatusCode::OK);
    let content_type = page.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text().await.expect("a body");
    assert!(html.contains(&format!(">{code}</strong>")), "{html}");
    assert!(html.contains("sign-up form"), "{html}");

    // Whatever a visitor puts in the query is never written into the page as markup.
    let hostile = browser()
        .get(format!("{}/welcome", app.address))
        .query(&[("ref", "<script>alert(1)</script>")])
        .send()
        .await
        .expect("the page answers")
        .text()
        .await
        .expect("a body");
    assert!(!hostile.contains("<script>"), "{hostile}");
    assert!(!hostile.contains("alert"), "{hostile}");
}

#[tokio::test]
async fn beyond_the_rate_a_client_address_is_told_to_wait() {
    let app = spawn_app_with(|config| config.link_clicks_per_minute = 3).await;
    let code = app.register_code("acct-a", None, None).await;
    let link = format!("/r/{code}");
    for _ in 0..3 {
        assert_eq!(get(&app, &link, FIREFOX).await.status, StatusCode::FOUND);
    }
    // Counted or not, every request spends the quota: also unknown codes, HEAD and robots.
    for answer in [
        get(&app, &link, SAFARI).await,
        get(&app, "/r/NOSUCH99", FIREFOX).await,
        visit(&app, Method::HEAD, &link, Some(FIREFOX)).await,
    ] {
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = answer
            .retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=20).contains(&wait), "Retry-After {wait}");
        assert!(answer.location.is_none() && answer.set_cookie.is_empty());
    }
    // The visit refused was not counted; the API is not limited by it.
    assert_eq!(clicks(&app).await, 1);
    assert_eq!(my_stats(&app, "acct-a").await, stats(1, 0, 0));
}

#[tokio::test]
async fn referral_stats_show_clicks_signups_and_qualified_friends_to_the_customer_and_admins() {
    let app = spawn_app().await;
    app.setup_catalog().await;
    let registered = app.register("acct-a", Some("Alice Adams"), None).await;
    let alice_id = s(&registered, "/account/id").to_owned();
    let code = s(&registered, "/account/referralCode").to_owned();
    assert_eq!(my_stats(&app, "acct-a").await, stats(0, 0, 0));

    get(&app, &format!("/r/{code}"), FIREFOX).await;
    get(&app, &format!("/r/{code}"), SAFARI).await;
    app.register("acct-b", Some("Bob Brown"), Some(&code.to_ascii_lowercase()))
        .await;
    app.register("acct-c", Some("Carol Clark"), Some(&code)).await;
    // A rejected attempt is no sign-up.
    app.register("acct-d", None, Some("NOSUCH99")).await;
    // Bob's first residential purchase qualifies his referral.
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "10").await;
    assert_eq!(my_stats(&app, "acct-a").await, stats(2, 2, 1));
    assert_eq!(my_stats(&app, "acct-b").await, stats(0, 0, 0));

    // Admins see the same through account(id) and accounts.
    let detail = app
        .gql(
            Some(&app.admin()),
            "query($id: ID!) { account(id: $id) { id referralStats { clicks signups qualified } } }",
            json!({ "id": alice_id }),
        )
        .await;
    let detail = data_of(&detail, "account(id).referralStats");
    assert_eq!(detail["account"]["referralStats"], stats(2, 2, 1));
    let list_query = "query($first: Int!) { accounts(first: $first) { edges { node { \
                      externalId referralStats { clicks signups qualified } } } } }";
    let list = app.gql(Some(&app.admin()), list_query, json!({ "first": 10 })).await;
    let list = data_of(&list, "accounts.referralStats");
    let by_account: Vec<(String, Value)> = list["accounts"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                s(&e["node"], "/externalId").to_owned(),
                e["node"]["referralStats"].clone(),
            )
        })
        .collect();
    assert!(
        by_account.contains(&("acct-a".to_owned(), stats(2, 2, 1))),
        "{by_account:?}"
    );
    assert!(
        by_account.contains(&("acct-c".to_owned(), stats(0, 0, 0))),
        "{by_account:?}"
    );

    // Counted in grouped queries: a page of three accounts costs what a page of one does (the
    // least of three runs, so that a statement of a background task cannot count).
    let mut costs = Vec::new();
    for first in [1, 3] {
        let mut least = u64::MAX;
        for _ in 0..3 {
            let before = app.state.statements.get();
            let body = app.gql(Some(&app.admin()), list_query, json!({ "first": first })).await;
            data_of(&body, "accounts.referralStats");
            least = least.min(app.state.statements.get() - before);
        }
        costs.push(least);
    }
    assert_eq!(costs[0], costs[1], "statements for 1 and 3 accounts: {costs:?}");
}

#[tokio::test]
async fn the_settings_form_read_by_the_console_can_be_sent_back_unchanged() {
    let app = spawn_app().await;
    let admin = app.admin();
    let audit_entries = || async { app.count("audit_log").await };

    for change in [None, Some(json!({ "landingUrl": LANDING, "cookieDays": 14 }))] {
        if let Some(change) = change {
            let updated = app.update_settings(change).await;
            assert_eq!(updated["landingUrl"], LANDING, "{updated:#}");
            assert_eq!(updated["cookieDays"], 14, "{updated:#}");
        }
        let form = app.run_ok(Some(&admin), "admin", "ProgramSettings", json!({})).await["programSettings"].clone();
        let audited = audit_entries().await;
        let sent = app
            .run(
                Some(&admin),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": form.clone() }),
            )
            .await;
        let answered = data_of(&sent, &format!("the round trip of {form}"))["updateProgramSettings"].clone();
        assert_eq!(answered, form);
        assert_eq!(app.settings().await, form);
        // Nothing changed, so nothing is audited.
        assert_eq!(audit_entries().await, audited);
    }

    // Cash amounts out of range.
    for input in [
        json!({ "minimumWithdrawal": "-0.01" }),
        json!({ "minimumWithdrawal": "1000000.01" }),
        json!({ "affiliateSignupBonus": "-1" }),
    ] {
        let body = app
            .run(
                Some(&admin),
                "admin",
                "UpdateProgramSettings",
                json!({ "input": input }),
            )
            .await;
        assert_failed(&body, "BAD_USER_INPUT");
    }

    // Left out, landingUrl stays; null clears it, and links land on the built-in page again.
    let kept = app.update_settings(json!({ "currency": "EUR" })).await;
    assert_eq!(kept["landingUrl"], LANDING);
    let cleared = app.update_settings(json!({ "landingUrl": null })).await;
    assert_eq!(cleared["landingUrl"], Value::Null);
    let code = app.register_code("acct-a", None, None).await;
    let answer = get(&app, &format!("/r/{code}"), FIREFOX).await;
    assert_eq!(answer.location, Some(format!("{PUBLIC_URL}/welcome?ref={code}")));
    assert!(cookie_parts(&answer).iter().any(|p| p == "Max-Age=1209600"));
}

#[tokio::test]
async fn a_disqualified_account_s_link_leads_nowhere_until_it_is_reinstated() {
    let app = spawn_app().await;
    let registered = app.register("acct-a", None, None).await;
    let (id, code) = (s(&registered, "/account/id"), s(&registered, "/account/referralCode"));
    let admin = app.admin();
    let input = json!({ "input": { "accountId": id, "reason": "fraud review" } });
    app.run_ok(Some(&admin), "admin", "DisqualifyAccount", input.clone())
        .await;
    let answer = get(&app, &format!("/r/{code}"), FIREFOX).await;
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("{PUBLIC_URL}/welcome").as_str())
    );
    assert!(answer.set_cookie.is_empty(), "{:?}", answer.set_cookie);
    assert_eq!(clicks(&app).await, 0);
    app.run_ok(Some(&admin), "admin", "ReinstateAccount", input).await;
    let answer = get(&app, &format!("/r/{code}"), FIREFOX).await;
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("{PUBLIC_URL}/welcome?ref={code}").as_str())
    );
    assert_eq!(clicks(&app).await, 1);
}
