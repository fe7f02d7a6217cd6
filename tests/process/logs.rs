//! The log a platform ships: plain text without terminal colour codes when written to a file,
//! and with `LOG_FORMAT=json` one JSON object a line that carries the request's id.

use crate::harness::TestDb;
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A server on a free port with extra environment, its stderr in `log`; killed on drop.
struct Logged {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Logged {
    fn start(db: &TestDb, name: &str, env: &[(&str, &str)]) -> Logged {
        let log = db.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create the log file");
        let mut command = db.command();
        command
            .arg("serve")
            .env("BIND_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        Logged {
            child: command.spawn().expect("start the server"),
            log,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`, read from the "serving on" line (at most 20 s).
    async fn base(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text();
            if let Some(at) = text.find("serving on http://") {
                let rest = &text[at + "serving on ".len()..];
                // "serving on http://127.0.0.1:PORT: GraphiQL at ..."
                let end = rest.find(": ").unwrap_or(rest.len());
                return rest[..end].to_owned();
            }
            assert!(
                self.child.try_wait().expect("try_wait").is_none(),
                "the server exited:\n{text}"
            );
            assert!(Instant::now() < deadline, "no 'serving on' line within 20 s:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_log_written_to_a_file_has_no_colour_codes() {
    let db = TestDb::fresh().await;
    let mut server = Logged::start(&db, "text", &[("RUST_LOG", "info,tower_http=debug")]);
    let base = server.base().await;
    let response = reqwest::get(format!("{base}/healthz")).await.expect("GET /healthz");
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = server.text();
    assert!(text.contains("serving on"), "{text}");
    assert!(text.contains("finished processing request"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log written to a file:\n{text:?}"
    );
}

#[tokio::test]
async fn a_json_log_has_one_object_a_line_with_the_request_id() {
    let db = TestDb::fresh().await;
    let mut server = Logged::start(
        &db,
        "json",
        &[("RUST_LOG", "info,tower_http=debug"), ("LOG_FORMAT", "json")],
    );
    let base = server.base().await;
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("POST /graphql");
    assert_eq!(response.status(), 200);
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an x-request-id header in the response")
        .to_owned();
    assert!(!request_id.is_empty());

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = server.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
            .collect();
        assert!(
            lines
                .iter()
                .all(|l| l["timestamp"].is_string() && l["level"].is_string()),
            "{text}"
        );
        let of_request = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == request_id.as_str())
            .count();
        if of_request > 0 {
            assert!(!text.contains('\u{1b}'), "{text:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no line with request_id {request_id}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
