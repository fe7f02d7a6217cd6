//! Hostile input: queries too deep or too costly, floods of aliases, oversized batches and
//! bodies, and forged tokens. Each is refused with its code, changes nothing, and leaves the
//! server answering.

use crate::helpers::*;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use referral_server::graphql::{MAX_COMPLEXITY, MAX_DEPTH};
use referral_server::http::{MAX_BATCH, MAX_BATCH_COMPLEXITY, MAX_BODY_BYTES};

/// Alice (referred by no one) referred Bob, whose 20 GB purchase earned her 300 points.
/// Returns Bob's account id and the provider's id.
async fn alice_with_points(app: &TestApp) -> (String, String) {
    let provider_id = app.setup_catalog().await;
    let alice = app
        .register_with(json!({ "externalId": "acct-a", "displayName": "Alice Adams" }))
        .await;
    let code = s(&alice, "/account/referralCode").to_owned();
    let bob = app.register("acct-b", Some("Bob Brown"), Some(&code)).await;
    app.purchase("evt-b-1", "acct-b", RESIDENTIAL, "20").await;
    assert_eq!(app.available_points("acct-a").await, "300.00");
    (s(&bob, "/account/id").to_owned(), provider_id)
}

/// A refusal of the whole request by the GraphQL layer: one or more errors, each
/// BAD_USER_INPUT, no data; the first message names the limit.
fn assert_limit(body: &Value, what: &str, message: &str) {
    assert_failed(body, "BAD_USER_INPUT");
    assert!(
        error_codes(body).iter().all(|c| c == "BAD_USER_INPUT"),
        "{what}: {body:#}"
    );
    assert!(
        body.get("data").is_none_or(Value::is_null),
        "{what}: expected no data at all: {body:#}"
    );
    let first = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        first.contains(message),
        "{what}: expected a message with {message:?}: {body:#}"
    );
}

/// Fields that lead from an Account back to an Account: referral → referrer → account.
const CYCLE: [&str; 3] = ["referral", "referrer", "account"];

/// `head` (fields that end on an Account), then the cycle, until the selection is `depth`
/// fields deep, leaf included.
fn nested(operation: &str, head: &[&str], depth: usize) -> String {
    assert!(depth > head.len());
    let mut fields: Vec<String> = head.iter().map(|f| (*f).to_owned()).collect();
    let mut i = 0;
    while fields.len() < depth - 1 {
        fields.push(CYCLE[i % 3].to_owned());
        i += 1;
    }
    let leaf = match fields.last().map(String::as_str) {
        Some("referrer") => "referralCode",
        _ => "id",
    };
    let mut query = format!("{operation} {{ ");
    for field in &fields {
        query.push_str(field);
        query.push_str(" { ");
    }
    query.push_str(leaf);
    query.push_str(&" }".repeat(fields.len() + 1));
    query
}

/// The same depth reached through a chain of fragments, one per level.
fn nested_with_fragments(id: &str, depth: usize) -> String {
    let mut types = vec!["Account"];
    let mut fields = Vec::new();
    while fields.len() < depth - 2 {
        let field = CYCLE[fields.len() % 3];
        fields.push(field);
        types.push(match field {
            "referral" => "Referral",
            "referrer" => "Participant",
            _ => "Account",
        });
    }
    let mut query = format!("query {{ account(id: \"{id}\") {{ ...F0 }} }}\n");
    for (i, field) in fields.iter().enumerate() {
        query.push_str(&format!(
            "fragment F{i} on {} {{ {field} {{ ...F{} }} }}\n",
            types[i],
            i + 1
        ));
    }
    let last = fields.len();
    let leaf = if types[last] == "Participant" {
        "referralCode"
    } else {
        "id"
    };
    query.push_str(&format!("fragment F{last} on {} {{ {leaf} }}\n", types[last]));
    query
}

#[tokio::test]
async fn queries_deeper_than_the_limit_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (bob_id, _) = alice_with_points(&app).await;
    let admin = app.admin();
    let service = app.service();
    let account = format!("account(id: \"{bob_id}\")");

    // At the limit: answered.
    let body = app
        .gql(Some(&admin), &nested("query", &[&account], MAX_DEPTH), json!({}))
        .await;
    // Bob's referral, its referrer Alice, her account, her referral: none.
    let data = data_of(&body, "a query exactly as deep as the limit");
    assert_eq!(
        data,
        json!({ "account": { "referral": { "referrer": { "account": { "referral": null } } } } }),
        "{body:#}"
    );
    let body = app
        .gql(Some(&admin), &nested_with_fragments(&bob_id, MAX_DEPTH), json!({}))
        .await;
    let fragments = data_of(&body, "fragments exactly as deep as the limit");
    assert_eq!(fragments, data, "{body:#}");

    // One deeper, and far deeper: refused, also when the depth hides in fragments.
    for depth in [MAX_DEPTH + 1, 30] {
        let query = nested("query", &[&account], depth);
        let body = app.gql(Some(&admin), &query, json!({})).await;
        assert_limit(&body, &format!("depth {depth}"), "nested too deep");
    }
    let query = nested_with_fragments(&bob_id, MAX_DEPTH + 1);
    let body = app.gql(Some(&admin), &query, json!({})).await;
    assert_limit(&body, "fragments one level too deep", "nested too deep");

    // A mutation one level too deep is refused before it runs: no account is registered.
    let before = app.snapshot().await;
    let register = r#"registerAccount(input: { externalId: "acct-deep" })"#;
    let deep = nested("mutation", &[register, "account"], MAX_DEPTH + 1);
    let body = app.gql(Some(&service), &deep, json!({})).await;
    assert_limit(&body, "a deep mutation", "nested too deep");
    assert_eq!(app.snapshot().await, before);
    // (The same mutation at the limit runs: the refusal above was the depth's.)
    let body = app
        .gql(
            Some(&service),
            &nested("mutation", &[register, "account"], MAX_DEPTH),
            json!({}),
        )
        .await;
    let data = data_of(&body, "a mutation at the limit");
    assert_eq!(
        data,
        json!({ "registerAccount": { "account": { "referral": null } } }),
        "{body:#}"
    );
    assert_eq!(app.count("accounts").await, 3);

    // Nesting far beyond what the parser follows is a refusal too, not a crash.
    let absurd = format!("{{{}{}}}", "me {".repeat(5000), "}".repeat(5000));
    let (status, body) = app.gql_raw(Some(&admin), &absurd, json!({})).await;
    assert_failed(&body, "BAD_USER_INPUT");
    // A document that does not parse is a GraphQL error, answered with 200 like the others.
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(app.settings().await["enabled"], true, "the server still answers");
}

/// `{ me { a1: referralCode … aN: referralCode } }`: complexity N + 1.
fn aliases_of_me(n: usize) -> String {
    let fields: Vec<String> = (1..=n).map(|i| format!("a{i}: referralCode")).collect();
    format!("{{ me {{ {} }} }}", fields.join(" "))
}

#[tokio::test]
async fn queries_costlier_than_the_limit_are_refused() {
    let app = spawn_app().await;
    alice_with_points(&app).await;
    let alice = app.customer("acct-a");

    // Each field costs 1: `me` and 499 aliases are 500, at the limit.
    let body = app
        .gql(Some(&alice), &aliases_of_me(MAX_COMPLEXITY - 1), json!({}))
        .await;
    let data = data_of(&body, "a query exactly as costly as the limit");
    assert_eq!(data["me"].as_object().map(|m| m.len()), Some(MAX_COMPLEXITY - 1));
    // One more field: refused.
    let body = app.gql(Some(&alice), &aliases_of_me(MAX_COMPLEXITY), json!({})).await;
    assert_limit(&body, "complexity 501", "too complex");

    // A costly query of ordinary shape, within the depth limit: the admin's account list with
    // friends and history (29 fields), answered once, refused twenty times over.
    let page = "accounts(first: 100) { edges { node { id externalId displayName email \
                referralCode referredFriends(first: 100) { edges { node { id status \
                earned { unit amount } referee { displayName referralCode } } } } \
                rewardHistory(first: 100) { edges { node { id kind unit amount status \
                description createdAt } } } } } }";
    let admin = app.admin();
    let body = app.gql(Some(&admin), &format!("{{ {page} }}"), json!({})).await;
    let data = data_of(&body, "one account page");
    assert_eq!(data["accounts"]["edges"].as_array().map(Vec::len), Some(2));
    let query = format!(
        "{{ {} }}",
        (0..20).map(|i| format!("p{i}: {page}")).collect::<Vec<_>>().join(" ")
    );
    let body = app.gql(Some(&admin), &query, json!({})).await;
    assert_limit(&body, "twenty account pages", "too complex");
}

#[tokio::test]
async fn a_thousand_aliases_of_one_field_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (_, provider_id) = alice_with_points(&app).await;
    let alice = app.customer("acct-a");

    let body = app.gql(Some(&alice), &aliases_of_me(1000), json!({})).await;
    assert_limit(&body, "1,000 aliases in a query", "too complex");

    // 1,000 claims in one mutation would spend her points a thousand times over.
    let claims: Vec<String> = (0..1000)
        .map(|i| format!("c{i}: claimReward(input: {{ providerId: \"{provider_id}\" }}) {{ duplicate }}"))
        .collect();
    let query = format!("mutation {{ {} }}", claims.join(" "));
    assert!(query.len() < MAX_BODY_BYTES, "the body limit is not what is tested");
    let before = app.snapshot().await;
    let body = app.gql(Some(&alice), &query, json!({})).await;
    assert_limit(&body, "1,000 aliased claims", "too complex");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.available_points("acct-a").await, "300.00");

    // 1,000 registrations by the billing system: the same.
    let registrations: Vec<String> = (0..1000)
        .map(|i| format!("r{i}: registerAccount(input: {{ externalId: \"acct-alias-{i}\" }}) {{ account {{ id }} }}"))
        .collect();
    let query = format!("mutation {{ {} }}", registrations.join(" "));
    let body = app.gql(Some(&app.service()), &query, json!({})).await;
    assert_limit(&body, "1,000 aliased registrations", "too complex");
    assert_eq!(app.snapshot().await, before);
}

/// POSTs a JSON body as it is; the status and the body as JSON.
async fn post_json(app: &TestApp, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = app.client.post(format!("{}/graphql", app.address)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST /graphql");
    let status = response.status();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, json)
}

#[tokio::test]
async fn batches_of_more_than_ten_operations_are_refused_whole() {
    let app = spawn_app().await;
    let (_, provider_id) = alice_with_points(&app).await;
    let service = app.service();
    let register = contract_op("integration", "RegisterAccount");
    let batch = |n: usize, prefix: &str| -> Value {
        Value::Array(
            (0..n)
                .map(|i| {
                    json!({ "query": register,
                            "variables": { "input": { "externalId": format!("{prefix}-{i}") } } })
                })
                .collect(),
        )
    };
    let before = app.snapshot().await;

    for n in [MAX_BATCH + 1, 200] {
        let body = batch(n, "acct-batch");
        assert!(
            body.to_string().len() < MAX_BODY_BYTES,
            "the body limit is not what is tested"
        );
        let (status, body) = post_json(&app, Some(&service), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a batch of {n}: {body:#}");
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body:#}");
        assert_eq!(app.snapshot().await, before, "a refused batch of {n} changed something");
    }
    // Eleven claims in one batch: none is made.
    let claim = contract_op("customer", "ClaimReward");
    let claims = Value::Array(
        (0..=MAX_BATCH)
            .map(|_| json!({ "query": claim, "variables": { "input": { "providerId": provider_id } } }))
            .collect(),
    );
    let (status, body) = post_json(&app, Some(&app.customer("acct-a")), &claims).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.available_points("acct-a").await, "300.00");

    // Ten are allowed (Apollo's BatchHttpLink sends up to ten), and each runs.
    let (status, body) = post_json(&app, Some(&service), &batch(MAX_BATCH, "acct-batch")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let answers = body
        .as_array()
        .unwrap_or_else(|| panic!("not a batch answer: {body:#}"));
    assert_eq!(answers.len(), MAX_BATCH, "{body:#}");
    for (i, answer) in answers.iter().enumerate() {
        let data = data_of(answer, "a batched registration");
        assert_eq!(
            data["registerAccount"]["account"]["externalId"],
            format!("acct-batch-{i}"),
            "{body:#}"
        );
    }
    assert_eq!(app.count("accounts").await, 2 + MAX_BATCH as i64);
}

#[tokio::test]
async fn a_batch_is_held_to_one_cost_limit_for_all_its_operations() {
    let app = spawn_app().await;
    alice_with_points(&app).await;
    let service = app.service();
    let alice = app.customer("acct-a");
    assert_eq!(MAX_BATCH, 10);

    // Each operation within the limit of one, ten of them over the batch's: refused, every
    // operation answered with the error a single costly one gets, none run.
    let heavy = aliases_of_me(MAX_COMPLEXITY - 1);
    let body = Value::Array((0..MAX_BATCH).map(|_| json!({ "query": heavy })).collect());
    let (status, body) = post_json(&app, Some(&alice), &body).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let answers = body
        .as_array()
        .unwrap_or_else(|| panic!("not a batch answer: {body:#}"));
    assert_eq!(answers.len(), MAX_BATCH);
    for answer in answers {
        assert_limit(answer, "ten operations of 500 fields", "too complex");
    }

    // Registrations first, a costly query last: nothing runs, not even the registrations.
    let register = contract_op("integration", "RegisterAccount");
    // Seven registrations of 13 fields, and queries of 400: three of them are over the limit of
    // the batch, two are within it.
    let mut batch: Vec<Value> = (0..7)
        .map(|i| json!({ "query": register, "variables": { "input": { "externalId": format!("acct-costly-{i}") } } }))
        .collect();
    let costly = format!(
        "{{ {} }}",
        (0..200)
            .map(|i| format!("p{i}: program {{ enabled }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    const { assert!(7 * 13 + 2 * 400 <= MAX_BATCH_COMPLEXITY && 7 * 13 + 3 * 400 > MAX_BATCH_COMPLEXITY) };
    batch.extend([
        json!({ "query": costly }),
        json!({ "query": costly }),
        json!({ "query": costly }),
    ]);
    assert_eq!(batch.len(), MAX_BATCH);
    let before = app.snapshot().await;
    let (status, body) = post_json(&app, Some(&service), &Value::Array(batch.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    for answer in body.as_array().expect("a batch answer") {
        assert_limit(answer, "a batch over its cost limit", "too complex");
    }
    assert_eq!(app.snapshot().await, before, "a refused batch changed something");

    // One costly query fewer and the batch is within the limit: it all runs.
    batch.truncate(MAX_BATCH - 1);
    let (_, body) = post_json(&app, Some(&service), &Value::Array(batch)).await;
    for answer in body.as_array().expect("a batch answer") {
        data_of(answer, "a batch within its cost limit");
    }
    assert_eq!(app.count("accounts").await, 2 + 7);

    // Fragments count each time they are spread: a batch cannot hide its cost in them.
    let fragment = format!(
        "query Q {{ me {{ ...F ...F }} }} fragment F on Account {{ {} }}",
        (0..240)
            .map(|i| format!("a{i}: referralCode"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let body = Value::Array((0..3).map(|_| json!({ "query": fragment })).collect());
    let (_, body) = post_json(&app, Some(&alice), &body).await;
    for answer in body.as_array().expect("a batch answer") {
        assert_limit(answer, "fragments spread twice, three times", "too complex");
    }
}

/// A 10 MB JSON body: the query is valid, the padding is in a variable.
fn ten_megabytes(query: &str) -> Vec<u8> {
    let padding = "x".repeat(10 * 1024 * 1024);
    serde_json::to_vec(
        &json!({ "query": query, "variables": { "input": { "externalId": "acct-huge" }, "padding": padding } }),
    )
    .expect("JSON")
}

/// Sends a request by hand: the head, then `body` in chunks with `Transfer-Encoding:
/// chunked` (no length announced) or as it is. Returns the status the server answered, read
/// even if it answered before the body was sent, and the head of the answer.
async fn send_raw(app: &TestApp, token: &str, body: &[u8], chunked: bool) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let (mut reader, mut writer) = stream.into_split();
    let body = body.to_vec();
    let writing = tokio::spawn(async move {
        for piece in body.chunks(64 * 1024) {
            let result = if chunked {
                let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
                frame.extend_from_slice(piece);
                frame.extend_from_slice(b"\r\n");
                writer.write_all(&frame).await
            } else {
                writer.write_all(piece).await
            };
            // The server may answer and close before the whole body is sent.
            if result.is_err() {
                return;
            }
        }
        if chunked {
            let _ = writer.write_all(b"0\r\n\r\n").await;
        }
        let _ = writer.flush().await;
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buffer[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within a minute");
    writing.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

#[tokio::test]
async fn bodies_that_are_not_graphql_requests_get_a_coded_error() {
    let app = spawn_app().await;
    let service = app.service();
    let register = contract_op("integration", "RegisterAccount");
    let whole =
        serde_json::to_string(&json!({ "query": register, "variables": { "input": { "externalId": "acct-x" } } }))
            .expect("JSON");
    let cases = [
        ("cut off", whole[..whole.len() / 2].to_owned()),
        ("not JSON", "registerAccount please".to_owned()),
        ("a number", "42".to_owned()),
        (
            "nested 10,000 arrays deep",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
    ];
    for (what, body) in cases {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&service)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /graphql");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{what}: {body:#}");
    }
    assert_eq!(app.count("accounts").await, 0);
    // The whole request is taken.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&service)
        .header("Content-Type", "application/json")
        .body(whole)
        .send()
        .await
        .expect("POST /graphql");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.count("accounts").await, 1);
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused_with_413_and_the_server_still_answers() {
    let app = spawn_app().await;
    alice_with_points(&app).await;
    let service = app.service();
    let register = contract_op("integration", "RegisterAccount");
    let before = app.snapshot().await;

    // With its length announced, through an ordinary client.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&service)
        .header("Content-Type", "application/json")
        .body(ten_megabytes(&register))
        .send()
        .await
        .expect("an answer to a 10 MB body");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("a JSON error");
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body:#}");

    // By hand: length announced, and streamed in chunks with no length.
    for chunked in [false, true] {
        let (status, head) = send_raw(&app, &service, &ten_megabytes(&register), chunked).await;
        assert_eq!(status, 413, "a 10 MB body, chunked: {chunked}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("content-type: application/json"),
            "the refusal is a GraphQL error: {head}"
        );
    }
    assert_eq!(app.snapshot().await, before, "the registration in the body did not run");

    // The server still answers, and a body just under the limit is taken.
    let padding = "x".repeat(MAX_BODY_BYTES - 2048);
    let (status, body) = post_json(
        &app,
        Some(&service),
        &json!({ "query": register, "variables": { "input": { "externalId": "acct-after" }, "padding": padding } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let data = data_of(&body, "a registration after the refused bodies");
    assert_eq!(data["registerAccount"]["account"]["externalId"], "acct-after");
    assert_eq!(app.available_points("acct-a").await, "300.00");
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// A public key, such as a server with RS256 would publish: the classic HS/RS confusion signs
/// an HS256 token with it as the HMAC secret.
const PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA03m2jH5XzHuT9pZXEN5e
Wz3soznomj7YpN0nEuI993rjecOl7HkCOyhEOVbN+qSckUbyZmIYSyUHeVLpy9Zd
YOUZTzyL4SVlD0hGMCU0U5s76RG1TbzlTr9T5PUCHwkNxmW79TQWwhTlYgTiMPwe
NV3cSsqiaEcUDXzTv3iir3k3wYx4kB6FJURNUhkskcumBsXunK3cXHzFEvzgeO5B
CFcyJX+Zkvhi2n9s0CksBVzmyMWQ0N1wpZHVP3ZMNsXAZTGfPSvp2B/i1AKDoxEB
BNABQSYP3/bsPSLuM+wr1JzYTMUNbr3/+mhpd0r59yl0aAkoZUJ3arNhJZTLA7m3
pwIDAQAB
-----END PUBLIC KEY-----
";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header, its signature an HMAC-SHA256 with `secret` (whatever the
/// header claims).
fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), Algorithm::HS256)
        .expect("sign");
    format!("{message}.{signature}")
}

/// A token signed by the book with `algorithm` and `secret`.
fn signed(algorithm: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret)).expect("encode")
}

fn claims(role: &str, sub: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({ "sub": sub, "role": role, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE,
            "iat": now, "exp": now + 3600 })
}

/// Sends `query` with an Authorization header; the status and the body.
async fn with_header(app: &TestApp, header: &str, query: &str, variables: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("Authorization", header)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn forged_premature_and_confused_tokens_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (_, provider_id) = alice_with_points(&app).await;
    let secret = JWT_SECRET.as_bytes();
    let now = jsonwebtoken::get_current_timestamp();

    let register = contract_op("integration", "RegisterAccount");
    let register_vars = json!({ "input": { "externalId": "acct-forged" } });
    let claim = contract_op("customer", "ClaimReward");
    let claim_vars = json!({ "input": { "providerId": provider_id } });

    let service = claims("service", "billing");
    let customer = claims("customer", "acct-a");
    let with = |base: &Value, key: &str, value: Value| {
        let mut out = base.clone();
        out[key] = value;
        out
    };
    let without = |base: &Value, key: &str| {
        let mut out = base.clone();
        out.as_object_mut().expect("claims").remove(key);
        out
    };
    let random_signature = |header: &Value, claims: &Value, len: usize| {
        use rand::Rng;
        let bytes: Vec<u8> = (0..len).map(|_| rand::rng().random()).collect();
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(&bytes)
        )
    };

    // (what, token, is it the customer's claim (else the service's registration))
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "nbf an hour ahead",
            signed(Algorithm::HS256, &with(&service, "nbf", json!(now + 3600)), secret),
            false,
        ),
        (
            "nbf an hour ahead, customer",
            signed(Algorithm::HS256, &with(&customer, "nbf", json!(now + 3600)), secret),
            true,
        ),
        (
            "header RS256, HMAC signature with the server's secret",
            hmac_token(&json!({ "alg": "RS256", "typ": "JWT" }), &service, secret),
            false,
        ),
        (
            "header ES256, HMAC signature with the server's secret",
            hmac_token(&json!({ "alg": "ES256", "typ": "JWT" }), &customer, secret),
            true,
        ),
        (
            "header PS256, HMAC signature with the server's secret",
            hmac_token(&json!({ "alg": "PS256", "typ": "JWT" }), &service, secret),
            false,
        ),
        (
            "header RS256, a 2048-bit signature of random bytes",
            random_signature(&json!({ "alg": "RS256", "typ": "JWT" }), &service, 256),
            false,
        ),
        (
            "header ES256, a P-256 signature of random bytes",
            random_signature(&json!({ "alg": "ES256", "typ": "JWT" }), &customer, 64),
            true,
        ),
        (
            "HS256 with the public key as its secret",
            signed(Algorithm::HS256, &service, PUBLIC_KEY_PEM.as_bytes()),
            false,
        ),
        (
            "HS256 with the public key's base64 body as its secret",
            signed(
                Algorithm::HS256,
                &customer,
                PUBLIC_KEY_PEM
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>()
                    .as_bytes(),
            ),
            true,
        ),
        (
            "HS384 with the server's secret",
            signed(Algorithm::HS384, &service, secret),
            false,
        ),
        (
            "HS512 with the server's secret",
            signed(Algorithm::HS512, &customer, secret),
            true,
        ),
        (
            "header alg in lower case",
            hmac_token(&json!({ "alg": "hs256", "typ": "JWT" }), &service, secret),
            false,
        ),
        (
            "no exp, customer",
            signed(Algorithm::HS256, &without(&customer, "exp"), secret),
            true,
        ),
        (
            "exp null",
            signed(Algorithm::HS256, &with(&service, "exp", Value::Null), secret),
            false,
        ),
        (
            "exp a string",
            signed(
                Algorithm::HS256,
                &with(&service, "exp", json!((now + 3600).to_string())),
                secret,
            ),
            false,
        ),
        (
            "no sub",
            signed(Algorithm::HS256, &without(&service, "sub"), secret),
            false,
        ),
        (
            "empty sub",
            signed(Algorithm::HS256, &with(&customer, "sub", json!("")), secret),
            true,
        ),
        (
            "a role that does not exist",
            signed(Algorithm::HS256, &with(&service, "role", json!("superadmin")), secret),
            false,
        ),
        (
            "no role",
            signed(Algorithm::HS256, &without(&service, "role"), secret),
            false,
        ),
        (
            "two audiences, none of them ours",
            signed(Algorithm::HS256, &with(&service, "aud", json!(["a", "b"])), secret),
            false,
        ),
    ];

    let before = app.snapshot().await;
    for (what, token, customer_op) in &cases {
        let (query, vars) = if *customer_op {
            (&claim, claim_vars.clone())
        } else {
            (&register, register_vars.clone())
        };
        let (status, body) = with_header(&app, &format!("Bearer {token}"), query, vars).await;
        // Answered like a missing token (GraphQL errors that clients handle), not with a 401.
        assert_eq!(status, StatusCode::OK, "{what}: {body:#}");
        assert_failed(&body, "UNAUTHENTICATED");
        assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{what}: {body:#}");
        assert!(body.get("data").is_none_or(Value::is_null), "{what}: {body:#}");
    }
    assert_eq!(app.snapshot().await, before, "a refused token changed something");
    assert_eq!(app.available_points("acct-a").await, "300.00");

    // The same claims signed by the book are taken: each refusal above was the attack's.
    let controls = [
        ("nbf a minute ago", with(&service, "nbf", json!(now - 60)), false),
        ("nbf within the leeway", with(&customer, "nbf", json!(now + 5)), true),
        ("a service token", service.clone(), false),
        ("a customer token", customer.clone(), true),
    ];
    for (i, (what, claims, customer_op)) in controls.into_iter().enumerate() {
        let token = signed(Algorithm::HS256, &claims, secret);
        let (query, vars) = if customer_op {
            (&claim, claim_vars.clone())
        } else {
            (
                &register,
                json!({ "input": { "externalId": format!("acct-control-{i}") } }),
            )
        };
        let (status, body) = with_header(&app, &format!("Bearer {token}"), query, vars).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body:#}");
        data_of(&body, what);
    }
    assert_eq!(
        app.available_points("acct-a").await,
        "100.00",
        "two claims of 100 points"
    );
    assert_eq!(app.count("accounts").await, 4);
}
