//! The program's settings are read from memory, and every instance on one database sees every
//! instance's change within a bounded time: through PostgreSQL's notifications (read again
//! after a lost connection too), or SQLite's data version.

use crate::helpers::*;
use sea_orm::{ConnectionTrait, DbBackend};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long another instance may take to see a change (SQLite looks every 250 ms; PostgreSQL
/// notifies at the commit).
const SEEN_WITHIN: Duration = Duration::from_secs(5);

async fn dashboard(app: &TestApp, address: &str) -> Value {
    let token = app.customer("acct-a");
    let query = app.op("customer", "Dashboard");
    let (_, body) = post_graphql(&app.client, address, Some(&token), &query, json!({})).await;
    data_of(&body, "Dashboard")
}

/// Waits until `address`'s Dashboard shows `currency` and `link`; how long that took.
async fn until_seen(app: &TestApp, address: &str, currency: &str, link: &str) -> Duration {
    let start = Instant::now();
    loop {
        let data = dashboard(app, address).await;
        if data["program"]["currency"] == currency && data["me"]["referralLink"] == link {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < SEEN_WITHIN,
            "{address} still shows {data:#} after {SEEN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn update_settings_at(app: &TestApp, address: &str, input: Value) {
    let query = app.op("admin", "UpdateProgramSettings");
    let (_, body) = post_graphql(
        &app.client,
        address,
        Some(&app.admin()),
        &query,
        json!({ "input": input }),
    )
    .await;
    data_of(&body, "UpdateProgramSettings");
}

/// Closes the connections PostgreSQL notifies (the ones that last read the settings row on
/// their own): each instance must listen again, and read what it missed meanwhile. None on
/// SQLite, which has no such connection.
async fn drop_listening_connections(app: &TestApp) -> Option<u64> {
    let db = &app.state.db;
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let dropped = db
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query = 'SELECT * FROM program_settings WHERE id = $1'",
        )
        .await
        .expect("terminate the listeners")
        .rows_affected();
    Some(dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_change_on_one_instance_reaches_the_others() {
    let app = spawn_app().await;
    let code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let other = another_instance(&app).await;
    let before = dashboard(&app, &other).await;
    assert_eq!(
        before["me"]["referralLink"],
        format!("{PUBLIC_URL}/r/{code}"),
        "{before:#}"
    );

    // Changed through the first instance: the second sees it, and the first at once.
    app.update_settings(json!({ "currency": "EUR", "referralLinkTemplate": "https://one.example/j/{code}" }))
        .await;
    let first_link = format!("https://one.example/j/{code}");
    let seen = dashboard(&app, &app.address).await;
    assert_eq!(
        seen["program"]["currency"], "EUR",
        "the writer sees its change at once: {seen:#}"
    );
    assert_eq!(seen["me"]["referralLink"], first_link.as_str(), "{seen:#}");
    until_seen(&app, &other, "EUR", &first_link).await;

    // Changed through the second: the first sees it.
    update_settings_at(
        &app,
        &other,
        json!({ "currency": "CHF", "referralLinkTemplate": "https://two.example/j/{code}" }),
    )
    .await;
    until_seen(&app, &app.address, "CHF", &format!("https://two.example/j/{code}")).await;

    // After the instances lost their listening connection (PostgreSQL), a change made while
    // they were reconnecting reaches them all the same.
    let dropped = drop_listening_connections(&app).await;
    app.update_settings(json!({ "currency": "SEK" })).await;
    let link = format!("https://two.example/j/{code}");
    until_seen(&app, &other, "SEK", &link).await;
    if let Some(dropped) = dropped {
        assert!(dropped >= 2, "one listening connection per instance: {dropped} dropped");
        // And they listen again.
        app.update_settings(json!({ "currency": "NOK" })).await;
        until_seen(&app, &other, "NOK", &link).await;
    }
}

#[tokio::test]
async fn reads_of_the_settings_cost_no_statement() {
    let app = spawn_app().await;
    app.register("acct-a", Some("Alice Adams"), None).await;
    let token = app.customer("acct-a");
    let query = "{ program { enabled currency } }";
    let mut least = u64::MAX;
    for _ in 0..3 {
        let before = app.state.statements.get();
        let body = app.gql(Some(&token), query, json!({})).await;
        assert_eq!(data_of(&body, "program")["program"]["enabled"], true, "{body:#}");
        least = least.min(app.state.statements.get() - before);
    }
    assert_eq!(least, 0, "program ran {least} statements");
}
