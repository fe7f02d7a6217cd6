//! The `claim-webhook` scenario's subscriber: a receiver in the harness's own process that
//! answers every delivery 204 at once and counts it, and one webhook endpoint subscribed to
//! every event type, created through the admin API before the scenario's rounds and deleted
//! after them. What the claims cost with a subscriber is then the server's alone: the receiver
//! never makes a delivery wait.

use crate::report::WebhookFigures;
use crate::{load, load_gen, server};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The description of the harness's endpoint: a run interrupted during the scenario leaves its
/// endpoint in the database, and a run reusing it deletes that one before making its own.
const DESCRIPTION: &str = "bench claim-webhook receiver";
/// How long the scenario waits for the sequencer to order the events written before it.
const SETTLE: Duration = Duration::from_secs(300);
/// A request head or body longer than these is not the server's client's: the connection is
/// dropped.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const UNSEQUENCED: &str = "SELECT COUNT(*) FROM outbox_events WHERE position IS NULL";

/// An HTTP/1.1 receiver on 127.0.0.1 that answers every request it has read whole with 204,
/// on connections kept alive as the server's client keeps them. It runs on a thread and a
/// runtime of its own: the harness blocks its own threads on wrk during the rounds, and a
/// delivery must not wait for them.
pub struct Receiver {
    pub port: u16,
    received: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Receiver {
    pub fn start() -> Result<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        // Dropping the sender (a failure before `stop`) ends the receiver as `stop` does.
        let (stop, stopped) = oneshot::channel();
        // The runtime is built, and dropped, on the receiver's thread: a runtime may not be
        // dropped on one of the harness's.
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("webhook-receiver".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = ready.send(Ok(()));
                            accept(listener, counter, stopped).await;
                        }
                        Err(err) => {
                            let _ = ready.send(Err(err));
                        }
                    }
                });
            })
            .context("starting the webhook receiver")?;
        started
            .recv()
            .context("the webhook receiver's thread ended")?
            .context("starting the webhook receiver")?;
        Ok(Receiver {
            port,
            received,
            stop,
            thread,
        })
    }

    /// Requests answered so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

async fn accept(listener: TcpListener, received: Arc<AtomicU64>, mut stopped: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let received = received.clone();
                    tokio::spawn(async move { answer(stream, &received).await });
                }
                // Out of descriptors, say: not a reason to spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

/// Reads requests off one connection, each its head then as many bytes as its Content-Length
/// says (the server's client sends every body with one), and answers each 204 as soon as it is
/// whole, keeping the connection unless the request said `Connection: close`. A chunked body is
/// answered 501 and the connection closed: where it ends is not read, so neither is the next.
async fn answer(mut stream: TcpStream, received: &AtomicU64) {
    let mut buffer = Vec::with_capacity(8 * 1024);
    loop {
        let head = loop {
            if let Some(end) = head_end(&buffer) {
                break end;
            }
            if buffer.len() > MAX_HEAD || !read_more(&mut stream, &mut buffer).await {
                return;
            }
        };
        let Some(request) = read_head(&buffer[..head]) else {
            // Chunked, or unreadable: where this request ends, and the next begins, is unknown.
            let _ = stream
                .write_all(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            return;
        };
        if request.body > MAX_BODY {
            return;
        }
        while buffer.len() < head + request.body {
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        }
        buffer.drain(..head + request.body);
        received.fetch_add(1, Ordering::Relaxed);
        let answer: &[u8] = if request.close {
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        };
        if stream.write_all(answer).await.is_err() || request.close {
            return;
        }
    }
}

/// Whether the connection gave more bytes (false: closed or failed).
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    buffer.reserve(8 * 1024);
    matches!(stream.read_buf(buffer).await, Ok(n) if n > 0)
}

/// Where the head of the request at the start of `buffer` ends, once it is all there.
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// What the receiver reads of a request's head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// The body's length by its Content-Length (0 without one).
    body: usize,
    /// `Connection: close`: the connection ends with the answer.
    close: bool,
}

/// None for a body sent in chunks, or a head that cannot be read.
fn read_head(head: &[u8]) -> Option<Head> {
    let head = std::str::from_utf8(head).ok()?;
    let mut read = Head { body: 0, close: false };
    for (name, value) in head.split("\r\n").skip(1).filter_map(|line| line.split_once(':')) {
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        } else if name.eq_ignore_ascii_case("content-length") {
            read.body = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            read.close = value.eq_ignore_ascii_case("close");
        }
    }
    Some(read)
}

/// The admin operations the scenario sends, as operations/admin.graphql writes them, with an
/// admin token.
pub struct AdminApi {
    port: u16,
    token: String,
    create: String,
    delete: String,
    list: String,
}

impl AdminApi {
    pub fn new(source: &str, port: u16, token: String) -> Result<AdminApi> {
        Ok(AdminApi {
            port,
            token,
            create: load_gen::operation_document(source, "CreateWebhookEndpoint")?,
            delete: load_gen::operation_document(source, "DeleteWebhookEndpoint")?,
            list: load_gen::operation_document(source, "WebhookEndpoints")?,
        })
    }

    /// Sends one operation; its `data`, or the whole answer as the error.
    async fn send(&self, operation: &str, document: &str, variables: Value) -> Result<Value> {
        let body = json!({"operationName": operation, "query": document, "variables": variables}).to_string();
        let (status, answer) = server::http(self.port, "POST", "/graphql", Some(&self.token), Some(&body))
            .await
            .with_context(|| format!("sending {operation}"))?;
        let mut parsed: Value =
            serde_json::from_str(answer.trim()).with_context(|| format!("{operation} answered {status}: {answer}"))?;
        if status != 200 || parsed.get("errors").is_some() {
            bail!("{operation} answered {status}: {answer}");
        }
        Ok(parsed["data"].take())
    }

    /// A new endpoint delivering every event type (`eventTypes: []`) to `url`; its id.
    async fn create(&self, url: &str) -> Result<String> {
        let input = json!({"input": {"url": url, "description": DESCRIPTION, "eventTypes": [], "enabled": true}});
        let data = self.send("CreateWebhookEndpoint", &self.create, input).await?;
        data["createWebhookEndpoint"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("CreateWebhookEndpoint answered no id")
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.send("DeleteWebhookEndpoint", &self.delete, json!({"id": id}))
            .await
            .map(drop)
    }

    /// Deletes the endpoints an interrupted run of the scenario left in a reused database: each
    /// would have every event of every scenario sent to a receiver that is gone, and retried.
    /// Other enabled endpoints are left alone, and said in a note: they deliver beside the run.
    async fn remove_leftovers(&self, notes: &mut Vec<String>) -> Result<()> {
        let data = self.send("WebhookEndpoints", &self.list, json!({})).await?;
        let mut others = 0;
        for endpoint in data["webhookEndpoints"].as_array().into_iter().flatten() {
            let id = endpoint["id"].as_str().unwrap_or_default();
            if endpoint["description"].as_str() == Some(DESCRIPTION) {
                self.delete(id).await?;
                eprintln!("bench: claim-webhook: deleted endpoint {id}, left by an interrupted run");
            } else if endpoint["enabled"].as_bool() == Some(true) {
                others += 1;
            }
        }
        if others > 0 {
            notes.push(format!(
                "claim-webhook: {others} other enabled webhook endpoint(s) were in the database; \
                 their deliveries ran beside every scenario"
            ));
        }
        Ok(())
    }
}

/// The endpoint of one run of the scenario, and its receiver.
pub struct Subscription {
    receiver: Receiver,
    endpoint: String,
}

impl Subscription {
    /// Starts the receiver, waits for the sequencer to order the events written before (else
    /// the earlier scenarios' claims would be delivered as this one's), and subscribes a new
    /// endpoint to every event type.
    pub async fn start(api: &AdminApi, database_url: &str, notes: &mut Vec<String>) -> Result<Subscription> {
        let receiver = Receiver::start()?;
        let left = settle(database_url).await?;
        if left > 0 {
            notes.push(format!(
                "claim-webhook: {left} events of the earlier scenarios were not sequenced within {} s of its start: \
                 they were delivered to its endpoint too, and counted",
                SETTLE.as_secs()
            ));
        }
        api.remove_leftovers(notes).await?;
        let url = format!("http://127.0.0.1:{}/hook", receiver.port);
        let endpoint = api.create(&url).await?;
        eprintln!("bench: claim-webhook: endpoint {endpoint} subscribed to every event type, delivering to {url}");
        Ok(Subscription { receiver, endpoint })
    }

    /// What the subscriber had when the rounds ended; then the endpoint is deleted (its
    /// deliveries with it) and the receiver stopped. A failure here is a note, not the run's
    /// end: the rounds' figures stand without it.
    pub async fn finish(self, api: &AdminApi, database_url: &str, notes: &mut Vec<String>) -> WebhookFigures {
        let received = self.receiver.received();
        let (pending, unsequenced) = match backlog(database_url, &self.endpoint).await {
            Ok((pending, unsequenced)) => (Some(pending), Some(unsequenced)),
            Err(err) => {
                notes.push(format!("claim-webhook: the deliveries left were not counted: {err:#}"));
                (None, None)
            }
        };
        if let Err(err) = api.delete(&self.endpoint).await {
            notes.push(format!(
                "claim-webhook: endpoint {} was not deleted (the next run reusing the database deletes it): {err:#}",
                self.endpoint
            ));
        }
        self.receiver.stop();
        let figures = WebhookFigures {
            received,
            pending,
            unsequenced,
        };
        eprintln!(
            "bench: claim-webhook: the receiver got {received} requests; when the rounds ended {} deliveries were \
             pending and {} events not yet sequenced",
            figures.pending.map_or("?".into(), |n| n.to_string()),
            figures.unsequenced.map_or("?".into(), |n| n.to_string()),
        );
        figures
    }
}

/// Waits until no event waits for the sequencer, at most `SETTLE`; how many still wait then.
async fn settle(database_url: &str) -> Result<u64> {
    let mut conn = load::Conn::connect(database_url).await?;
    let started = Instant::now();
    let mut reported: Option<Instant> = None;
    loop {
        let left = u64::try_from(conn.scalar(UNSEQUENCED).await?)?;
        if left == 0 || started.elapsed() >= SETTLE {
            return Ok(left);
        }
        if reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            eprintln!(
                "bench: claim-webhook: waiting for the sequencer to order {left} earlier events (at most {} s)",
                SETTLE.as_secs()
            );
            reported = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The endpoint's deliveries still PENDING, and the events not sequenced yet (each one more
/// delivery to come).
async fn backlog(database_url: &str, endpoint: &str) -> Result<(u64, u64)> {
    let id: i64 = endpoint
        .strip_prefix("whe_")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("endpoint id {endpoint}"))?;
    let mut conn = load::Conn::connect(database_url).await?;
    let pending = conn
        .scalar(&format!(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = {id} AND status = 'PENDING'"
        ))
        .await?;
    let unsequenced = conn.scalar(UNSEQUENCED).await?;
    Ok((u64::try_from(pending)?, u64::try_from(unsequenced)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_request_head() {
        let head = b"POST /hook HTTP/1.1\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(head_end(b"POST /hook HTTP/1.1\r\nhost: x\r\n"), None);
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(read_head(head), Some(Head { body: 42, close: false }));
        assert_eq!(
            read_head(b"GET / HTTP/1.1\r\nhost: x\r\nConnection: Close\r\n\r\n"),
            Some(Head { body: 0, close: true })
        );
        assert_eq!(
            read_head(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
            None
        );
    }

    #[test]
    fn finds_the_admin_operations_in_the_contract() -> Result<()> {
        let source = include_str!("../../operations/admin.graphql");
        let api = AdminApi::new(source, 1, String::new())?;
        assert!(api.create.contains("fragment WebhookEndpointFields"), "{}", api.create);
        assert!(api.delete.starts_with("mutation DeleteWebhookEndpoint"));
        assert!(api.list.starts_with("query WebhookEndpoints"));
        Ok(())
    }

    #[tokio::test]
    async fn answers_and_counts_requests_on_one_connection() -> Result<()> {
        let receiver = Receiver::start()?;
        // `server::http` says `Connection: close` and reads to the end.
        let (status, _) = server::http(receiver.port, "POST", "/hook", None, Some("{\"id\":\"de_1\"}")).await?;
        assert_eq!(status, 204);
        // Two requests in one write, kept alive: two answers.
        let mut stream = TcpStream::connect(("127.0.0.1", receiver.port)).await?;
        let one = "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        stream.write_all(format!("{one}{one}").as_bytes()).await?;
        let mut answers = Vec::new();
        while answers.windows(3).filter(|w| *w == b"204").count() < 2 {
            let mut chunk = [0u8; 256];
            let n = stream.read(&mut chunk).await?;
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&answers));
            answers.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(receiver.received(), 3);
        receiver.stop();
        Ok(())
    }
}
