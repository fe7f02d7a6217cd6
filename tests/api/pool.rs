//! A pooled connection left inside a transaction that no one owns (what a request cut off
//! while its `BEGIN` was in flight leaves behind) is never handed out again: the statements of
//! whoever borrows next commit as they should.

use crate::helpers::*;
use sea_orm::{ConnectionTrait, Database, Statement};

async fn rows(url: &str) -> i64 {
    // A connection of its own, outside the server's pool: it sees only what was committed.
    let outside = Database::connect(url).await.expect("connect outside the pool");
    let row = outside
        .query_one_raw(Statement::from_string(
            outside.get_database_backend(),
            "SELECT COUNT(*) AS n FROM leak_probe",
        ))
        .await
        .expect("count")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("n");
    outside.close().await.ok();
    n
}

#[tokio::test]
async fn a_connection_left_inside_a_transaction_is_not_reused() {
    let app = spawn_app().await;
    let db = &app.state.db;
    db.execute_unprepared("CREATE TABLE leak_probe (n INTEGER)")
        .await
        .expect("create");
    // Transactions that the pool does not know about, on several of its connections.
    for _ in 0..4 {
        db.execute_unprepared("BEGIN").await.expect("BEGIN");
    }
    for n in 0..8 {
        db.execute_unprepared(&format!("INSERT INTO leak_probe (n) VALUES ({n})"))
            .await
            .expect("insert");
    }
    assert_eq!(rows(&app.database_url).await, 8, "every insert committed");
    // And the API still answers on every connection.
    for _ in 0..20 {
        let body = app
            .gql(
                Some(&app.admin()),
                "{ programSettings { enabled } }",
                serde_json::json!({}),
            )
            .await;
        assert!(body["errors"].is_null(), "{body:#}");
    }
}
