//! A sandbox server as an integrator runs it: announced at start (a banner on stderr and a WARN
//! line), its clock moved forward by an admin and kept across a restart, its background task
//! stopped cleanly by SIGTERM; and the same database served without SANDBOX says so and runs
//! on the real time, with no `advanceClock`.

use crate::harness::*;
use chrono::{DateTime, Duration as Days, Utc};
use serde_json::{Value, json};
use std::time::Duration;

const BANNER: &str = "SANDBOX: the clock can be moved forward by admins; never run a real program like this";

fn clock(data: &Value, field: &str) -> DateTime<Utc> {
    let text = s(data, &format!("/{field}/clock"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_is_announced_keeps_its_clock_across_a_restart_and_stops_cleanly() {
    let db = TestDb::fresh().await;
    let admin = db.token("admin", "integrator");
    let http = client(true);
    let read = contract_op("sandbox", "SandboxClock");
    let advance = contract_op("sandbox", "AdvanceClock");
    let env = [("SANDBOX", "true"), ("SETTLE_INTERVAL", "1s"), ("RUST_LOG", "info")];

    let mut server = Server::start_with_env(&db, "sandbox", &env).await;
    let log = server.log();
    let rule = "=".repeat(BANNER.len());
    assert!(log.contains(&format!("{rule}\n{BANNER}\n{rule}")), "no banner:\n{log}");
    assert!(
        log.lines().any(|line| line.contains("WARN") && line.contains(BANNER)),
        "no WARN line:\n{log}"
    );
    assert!(log.contains("settling due holds and expiries every 1s"), "{log}");
    let moved = run_ok(&http, &server.base, &admin, &advance, json!({ "days": 10 })).await;
    assert_eq!(moved["advanceClock"]["sandbox"], true);
    assert!(clock(&moved, "advanceClock") - Utc::now() >= Days::days(10) - Days::minutes(1));
    // A tick or two of the task on the moved clock, then SIGTERM: it stops with the server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{}",
        server.log()
    );
    drop(server);

    // Restarted: the clock carries on from the database's record.
    let mut again = Server::start_with_env(&db, "sandbox-again", &env).await;
    let data = run_ok(&http, &again.base, &admin, &read, json!({})).await;
    assert!(clock(&data, "programSettings") - Utc::now() >= Days::days(10) - Days::minutes(1));
    assert!(
        again.log().contains("carries on where this database left it"),
        "{}",
        again.log()
    );
    again.sigterm();
    assert!(
        again
            .wait_exit(Duration::from_secs(20))
            .await
            .is_some_and(|s| s.success())
    );
    drop(again);

    // The same database without SANDBOX: warned about, on the real time, no advanceClock.
    let plain = Server::start_with_env(&db, "plain", &[("SANDBOX", "false")]).await;
    let log = plain.log();
    assert!(!log.contains(BANNER), "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("served by a SANDBOX server")),
        "{log}"
    );
    let data = run_ok(&http, &plain.base, &admin, &read, json!({})).await;
    assert_eq!(data["programSettings"]["sandbox"], false);
    assert!((clock(&data, "programSettings") - Utc::now()).num_minutes().abs() < 1);
    let (_, body) = post(&http, &plain.base, &admin, &advance, &json!({ "days": 1 }))
        .await
        .expect("POST");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    assert!(body.to_string().contains("Unknown field"), "{body}");
}
