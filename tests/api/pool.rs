//! A transaction whose caller goes away while its `BEGIN` is in flight leaves no pooled
//! connection inside a transaction that no one owns: the statements of whoever borrows next
//! commit as they should.

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
async fn transactions_cut_off_while_they_begin_leave_no_connection_inside_one() {
    let app = spawn_app().await;
    let db = &app.state.db;
    db.execute_unprepared("CREATE TABLE leak_probe (n INTEGER)")
        .await
        .expect("create");
    // Callers that give up at every moment of their BEGIN (before it is sent, while it is in
    // flight, after it answered), over every connection of the pool.
    for round in 0..300u64 {
        let wait = std::time::Duration::from_micros(round % 60 * 10);
        let _ = tokio::time::timeout(wait, referral_server::db::begin_write(db)).await;
    }
    for n in 0..32 {
        db.execute_unprepared(&format!("INSERT INTO leak_probe (n) VALUES ({n})"))
            .await
            .expect("insert");
    }
    assert_eq!(rows(&app.database_url).await, 32, "every insert committed");
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
