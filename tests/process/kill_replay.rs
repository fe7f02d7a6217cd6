//! A server killed with SIGKILL in the middle of a write load, a new one started on the same
//! database, and every request of the load sent again: what was committed is answered again
//! and not applied twice, what was not is applied once; nothing is half-written.

use crate::harness::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REFERRERS: usize = 4;
const REFEREES: usize = 40;
const CLAIMANTS: usize = 4;
const CLAIMS_PER_CLAIMANT: usize = 10;
/// Each claimant is funded with 7 × 15 points: 7 of its 10 claims can succeed.
const AFFORDABLE_CLAIMS: usize = 7;
const TASKS: usize = 8;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Register,
    Purchase,
    Claim,
}

#[derive(Clone, Debug)]
struct Request {
    kind: Kind,
    label: String,
    token: String,
    query: String,
    vars: Value,
    /// For a claim: whose.
    claimant: Option<usize>,
}

fn referee(i: usize) -> String {
    format!("kr-referee-{i:02}")
}

/// Referee `i`'s purchases, in order: (eventId, product, GB). The first one decides the reward:
/// residential (i % 3 + 1 GB at 15 points) except for every fifth referee, whose first purchase
/// is a datacenter product and pays nothing, which also uses up its first purchase.
fn purchases_of(i: usize) -> [(String, &'static str, String); 3] {
    let first = if i % 5 == 4 {
        (DATACENTER, "2".to_owned())
    } else {
        (RESIDENTIAL, (i % 3 + 1).to_string())
    };
    [
        (format!("kr-{i:02}-0"), first.0, first.1),
        (format!("kr-{i:02}-1"), RESIDENTIAL, "2".to_owned()),
        (format!("kr-{i:02}-2"), RESIDENTIAL_LITE, "3".to_owned()),
    ]
}

/// What referee `i` earns its referrer, in millionths.
fn reward_for(i: usize) -> i64 {
    if i % 5 == 4 { 0 } else { 15_000_000 * (i as i64 % 3 + 1) }
}

/// Sends a task's requests in order; stops at the first transport error. Returns
/// (request index, answer) for every answered request, and the error that stopped it with
/// whether the server had been killed when it happened.
async fn run_task(
    client: reqwest::Client,
    base: String,
    requests: Arc<Vec<Request>>,
    indices: Vec<usize>,
    sent: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) -> (Vec<(usize, u16, Value)>, Option<(usize, String, bool)>) {
    let mut answers = Vec::new();
    for index in indices {
        let request = &requests[index];
        sent.fetch_add(1, Ordering::SeqCst);
        match post(&client, &base, &request.token, &request.query, &request.vars).await {
            Ok((status, body)) => answers.push((index, status, body)),
            Err(error) => return (answers, Some((index, error, killed.load(Ordering::SeqCst)))),
        }
    }
    (answers, None)
}

/// Whether an answer is a valid one for the request: data without errors, or, for a claim, an
/// INSUFFICIENT_BALANCE refusal.
fn valid(request: &Request, status: u16, body: &Value) -> bool {
    let field = match request.kind {
        Kind::Register => "registerAccount",
        Kind::Purchase => "recordPurchase",
        Kind::Claim => "claimReward",
    };
    status == 200 && (succeeded(body, field) || (request.kind == Kind::Claim && is_insufficient_balance(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_9_then_replay() {
    let started = Instant::now();
    let db = TestDb::fresh().await;
    let mut first = Server::start(&db, "first").await;
    let api = Api::new(&db, &first);

    // Setup: the catalog (claims cost 15), referrers P0..P3, and claimants K0..K3 each funded
    // with 105 points by a friend's first purchase (7 GB × 15).
    let provider_id = api.setup_catalog("15").await;
    let mut referrer_codes = Vec::new();
    for k in 0..REFERRERS {
        referrer_codes.push(api.register_code(&format!("kr-referrer-{k}"), None).await);
    }
    for j in 0..CLAIMANTS {
        let code = api.register_code(&format!("kr-claimant-{j}"), None).await;
        api.register_code(&format!("kr-friend-{j}"), Some(&code)).await;
        let funded = api
            .purchase(&format!("kr-fund-{j}"), &format!("kr-friend-{j}"), RESIDENTIAL, "7")
            .await;
        assert_eq!(
            rewards_of(&funded),
            vec![points_reward(&format!("kr-claimant-{j}"), "105.00")],
            "{funded:#}"
        );
    }
    let claimant_tokens: Vec<String> = (0..CLAIMANTS)
        .map(|j| db.token("customer", &format!("kr-claimant-{j}")))
        .collect();

    // The load: 40 registrations with a code, 120 purchases, 40 claims with idempotency keys,
    // in 8 tasks; each referee's requests are in order within one task.
    let register_op = contract_op("integration", "RegisterAccount");
    let purchase_op = contract_op("integration", "RecordPurchase");
    let claim_op = contract_op("customer", "ClaimReward");
    let mut requests: Vec<Request> = Vec::new();
    let mut tasks: Vec<Vec<usize>> = vec![Vec::new(); TASKS];
    let mut claims_of_task: Vec<Vec<usize>> = vec![Vec::new(); TASKS];
    for j in 0..CLAIMANTS {
        for n in 0..CLAIMS_PER_CLAIMANT {
            let key = format!("kr-claim-{j}-{n}");
            claims_of_task[j + CLAIMANTS * (n / (CLAIMS_PER_CLAIMANT / 2))].push(requests.len());
            requests.push(Request {
                kind: Kind::Claim,
                label: key.clone(),
                token: claimant_tokens[j].clone(),
                query: claim_op.clone(),
                vars: claim_vars(&provider_id, &key),
                claimant: Some(j),
            });
        }
    }
    for i in 0..REFEREES {
        let task = &mut tasks[i % TASKS];
        task.push(requests.len());
        requests.push(Request {
            kind: Kind::Register,
            label: format!("register {}", referee(i)),
            token: api.service.clone(),
            query: register_op.clone(),
            vars: register_vars(&referee(i), Some(&referrer_codes[i % REFERRERS])),
            claimant: None,
        });
        for (event_id, product, gb) in purchases_of(i) {
            task.push(requests.len());
            requests.push(Request {
                kind: Kind::Purchase,
                label: event_id.clone(),
                token: api.service.clone(),
                query: purchase_op.clone(),
                vars: purchase_vars(&event_id, &referee(i), product, &gb),
                claimant: None,
            });
        }
    }
    // A claim after every 4 referee requests.
    let tasks: Vec<Vec<usize>> = tasks
        .into_iter()
        .zip(claims_of_task)
        .map(|(referee_requests, claims)| {
            let mut out = Vec::new();
            for (chunk, claim) in referee_requests.chunks(4).zip(claims) {
                out.extend_from_slice(chunk);
                out.push(claim);
            }
            out
        })
        .collect();
    assert_eq!(requests.len(), 200);
    assert_eq!(
        tasks.iter().map(Vec::len).sum::<usize>(),
        200,
        "every request is in one task"
    );
    let requests = Arc::new(requests);

    // Run 1, killed with SIGKILL once about half of the requests were sent.
    let sent = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = tasks
        .iter()
        .map(|indices| {
            tokio::spawn(run_task(
                client(true),
                first.base.clone(),
                requests.clone(),
                indices.clone(),
                sent.clone(),
                killed.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::SeqCst) < requests.len() / 2 {
        assert!(
            Instant::now() < deadline,
            "the load did not reach half of its requests in 30 s; log:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    killed.store(true, Ordering::SeqCst);
    let status = first.sigkill();
    assert_eq!(
        status.signal(),
        Some(9),
        "the first server died of SIGKILL, not otherwise: {status}"
    );
    let sent_at_kill = sent.load(Ordering::SeqCst);

    let mut run1: Vec<Option<(u16, Value)>> = vec![None; requests.len()];
    let mut stopped = Vec::new();
    for handle in handles {
        let (answers, error) = handle.await.expect("load task panicked");
        for (index, status, body) in answers {
            run1[index] = Some((status, body));
        }
        stopped.extend(error);
    }
    let before_kill: Vec<_> = stopped.iter().filter(|(_, _, after_kill)| !after_kill).collect();
    assert!(
        before_kill.is_empty(),
        "requests failed before the kill: {before_kill:#?}"
    );
    for (index, answer) in run1.iter().enumerate() {
        if let Some((status, body)) = answer {
            let request = &requests[index];
            assert!(
                valid(request, *status, body),
                "run 1, {}: HTTP {status}: {body:#}",
                request.label
            );
        }
    }
    let answered = run1.iter().filter(|a| a.is_some()).count();
    eprintln!(
        "[{}] run 1: {sent_at_kill} requests sent when killed, {answered} answered, {} cut off",
        db.backend(),
        stopped.len()
    );
    assert!(
        answered < requests.len(),
        "the kill came after the whole load: nothing was interrupted"
    );
    assert!(
        answered >= requests.len() / 4,
        "the kill came too early: only {answered} answers"
    );

    // Run 2: a new process on the same database; every request again, same ids and keys.
    let second = Server::start(&db, "second").await;
    let handles: Vec<_> = tasks
        .iter()
        .map(|indices| {
            tokio::spawn(run_task(
                client(true),
                second.base.clone(),
                requests.clone(),
                indices.clone(),
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicBool::new(false)),
            ))
        })
        .collect();
    let mut run2: Vec<Option<(u16, Value)>> = vec![None; requests.len()];
    for handle in handles {
        let (answers, error) = handle.await.expect("replay task panicked");
        assert!(error.is_none(), "a replayed request got no answer: {error:?}");
        for (index, status, body) in answers {
            run2[index] = Some((status, body));
        }
    }

    // Every replay answers, validly; what run 1 answered is answered the same.
    let mut claims_ok: Vec<Vec<String>> = vec![Vec::new(); CLAIMANTS];
    let mut claims_refused = [0usize; CLAIMANTS];
    for (index, request) in requests.iter().enumerate() {
        let (status, body) = run2[index]
            .as_ref()
            .unwrap_or_else(|| panic!("{} was not replayed", request.label));
        assert!(
            valid(request, *status, body),
            "replay of {}: HTTP {status}: {body:#}",
            request.label
        );
        let earlier = run1[index].as_ref().map(|(_, body)| body);
        match request.kind {
            Kind::Register => {
                let registered = &body["data"]["registerAccount"];
                assert_eq!(
                    registered["account"]["externalId"], request.vars["input"]["externalId"],
                    "{body:#}"
                );
                assert_eq!(
                    registered["referral"]["referrer"]["referralCode"], request.vars["input"]["referralCode"],
                    "{body:#}"
                );
                let status = s(registered, "/referral/status");
                assert!(
                    status == "PENDING" || status == "QUALIFIED",
                    "{}: {body:#}",
                    request.label
                );
                if let Some(earlier) = earlier {
                    let before = &earlier["data"]["registerAccount"];
                    assert_eq!(
                        registered["account"]["id"], before["account"]["id"],
                        "{}: the same account",
                        request.label
                    );
                    assert_eq!(
                        registered["referral"]["id"], before["referral"]["id"],
                        "{}: the same referral",
                        request.label
                    );
                }
            }
            Kind::Purchase => {
                let payload = &body["data"]["recordPurchase"];
                assert_eq!(payload["event"]["eventId"], request.label.as_str(), "{body:#}");
                if let Some(earlier) = earlier {
                    let before = &earlier["data"]["recordPurchase"];
                    assert_eq!(
                        before["event"]["duplicate"], false,
                        "run 1 recorded {}: {earlier:#}",
                        request.label
                    );
                    assert_eq!(
                        payload["event"]["duplicate"], true,
                        "{} was recorded in run 1: {body:#}",
                        request.label
                    );
                    assert_eq!(
                        payload["event"]["id"], before["event"]["id"],
                        "{}: the same event",
                        request.label
                    );
                    assert_eq!(
                        payload["rewards"], before["rewards"],
                        "{}: the same rewards",
                        request.label
                    );
                    assert_eq!(
                        payload["decisions"], before["decisions"],
                        "{}: the same decisions",
                        request.label
                    );
                }
            }
            Kind::Claim => {
                let j = request.claimant.expect("a claim's claimant");
                if succeeded(body, "claimReward") {
                    let claim = &body["data"]["claimReward"]["claim"];
                    assert_eq!(claim["points"], "15.00", "{body:#}");
                    claims_ok[j].push(s(claim, "/id").to_owned());
                } else {
                    claims_refused[j] += 1;
                }
                if let Some(earlier) = earlier
                    && succeeded(earlier, "claimReward")
                {
                    assert!(
                        succeeded(body, "claimReward"),
                        "{} succeeded in run 1; its replay: {body:#}",
                        request.label
                    );
                    assert_eq!(
                        body["data"]["claimReward"]["claim"]["id"], earlier["data"]["claimReward"]["claim"]["id"],
                        "{}: the replay answers the first claim",
                        request.label
                    );
                }
            }
        }
    }

    // Each referee's purchases, as finally answered: the first pays exactly what it should,
    // the others nothing.
    for i in 0..REFEREES {
        for (n, (event_id, _, _)) in purchases_of(i).iter().enumerate() {
            let index = requests
                .iter()
                .position(|r| &r.label == event_id)
                .expect("the purchase's request");
            let payload = &run2[index].as_ref().expect("replayed").1["data"]["recordPurchase"];
            let expected = if n == 0 && reward_for(i) > 0 {
                vec![points_reward(
                    &format!("kr-referrer-{}", i % REFERRERS),
                    &decimal(reward_for(i)),
                )]
            } else {
                vec![]
            };
            assert_eq!(rewards_of(payload), expected, "{event_id}: {payload:#}");
        }
    }

    // Claims: each claimant's 10 keys end as exactly 7 distinct claims and 3 refusals.
    for j in 0..CLAIMANTS {
        let mut ids = claims_ok[j].clone();
        ids.sort();
        ids.dedup();
        assert_eq!(
            (claims_ok[j].len(), ids.len(), claims_refused[j]),
            (
                AFFORDABLE_CLAIMS,
                AFFORDABLE_CLAIMS,
                CLAIMS_PER_CLAIMANT - AFFORDABLE_CLAIMS
            ),
            "claimant {j}: successes, distinct claims, refusals"
        );
    }

    // Balances, through the new server and in the database.
    let client = client(true);
    for k in 0..REFERRERS {
        let expected: i64 = (0..REFEREES).filter(|i| i % REFERRERS == k).map(reward_for).sum();
        let external_id = format!("kr-referrer-{k}");
        let token = db.token("customer", &external_id);
        assert_eq!(
            points(&client, &second.base, &token).await,
            (decimal(expected), "0.00".to_owned(), decimal(expected)),
            "{external_id}'s points"
        );
    }
    for (j, token) in claimant_tokens.iter().enumerate() {
        assert_eq!(
            points(&client, &second.base, token).await,
            ("0.00".to_owned(), "0.00".to_owned(), "105.00".to_owned()),
            "kr-claimant-{j}'s points"
        );
    }
    let conn = db.connect().await;
    let rewarded = (0..REFEREES).filter(|i| reward_for(*i) > 0).count() as i64;
    assert_eq!(
        count(&conn, "accounts").await,
        (REFERRERS + 2 * CLAIMANTS + REFEREES) as i64
    );
    assert_eq!(
        count(&conn, "referrals WHERE status <> 'REJECTED'").await,
        (CLAIMANTS + REFEREES) as i64
    );
    assert_eq!(
        count(&conn, "referrals WHERE status = 'QUALIFIED'").await,
        CLAIMANTS as i64 + rewarded
    );
    assert_eq!(
        count(&conn, "events").await,
        (CLAIMANTS + 3 * REFEREES) as i64,
        "each eventId recorded once"
    );
    assert_eq!(
        count(&conn, "ledger_entries WHERE kind = 'REWARD'").await,
        CLAIMANTS as i64 + rewarded
    );
    assert_eq!(count(&conn, "claims").await, (CLAIMANTS * AFFORDABLE_CLAIMS) as i64);
    assert_eq!(
        count(&conn, "ledger_entries WHERE kind = 'CLAIM'").await,
        (CLAIMANTS * AFFORDABLE_CLAIMS) as i64
    );
    let total: i64 = (0..REFEREES).map(reward_for).sum();
    assert_eq!(
        sql_i64(
            &conn,
            "SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM balances WHERE unit = 'POINTS'"
        )
        .await,
        total,
        "all points: the referrers' rewards; the claimants spent theirs"
    );
    conn.close().await.ok();

    drop(second);
    db.assert_check_passes();
    eprintln!(
        "[{}] kill_minus_9_then_replay took {:?}",
        db.backend(),
        started.elapsed()
    );
}
