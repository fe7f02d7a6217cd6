//! Referral integrity: only newcomers are referred by a code, admins attach referrers without
//! ever closing a cycle, disqualified accounts neither refer nor are rewarded, and the limit on
//! unknown codes stops guessing without refusing a single sign-up.

use crate::helpers::*;
use chrono::Utc;
use entity::enums::{EntryKind, EntryStatus, Unit};
use entity::{balance, ledger_entry};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

impl TestApp {
    async fn assign_raw(&self, account_id: &str, referrer_id: &str, reason: &str) -> Value {
        self.run(
            Some(&self.admin()),
            "admin",
            "AssignReferrer",
            json!({ "input": { "accountId": account_id, "referrerAccountId": referrer_id, "reason": reason } }),
        )
        .await
    }

    async fn assign(&self, account_id: &str, referrer_id: &str, reason: &str) -> Value {
        let body = self.assign_raw(account_id, referrer_id, reason).await;
        data_of(&body, &format!("AssignReferrer {account_id} ← {referrer_id}"))["assignReferrer"].clone()
    }

    /// An assignment that must be refused as BAD_USER_INPUT, changing nothing; its message.
    async fn assign_refused(&self, account_id: &str, referrer_id: &str) -> String {
        let before = self.snapshot().await;
        let audit = self.count("audit_log").await;
        let body = self.assign_raw(account_id, referrer_id, "should be refused").await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(self.snapshot().await, before, "a refused assignment changes nothing");
        assert_eq!(self.count("audit_log").await, audit);
        body["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
    }

    async fn disqualify(&self, account_id: &str, reason: &str) -> Value {
        let data = self
            .run_ok(
                Some(&self.admin()),
                "admin",
                "DisqualifyAccount",
                json!({ "input": { "accountId": account_id, "reason": reason } }),
            )
            .await;
        data["disqualifyAccount"].clone()
    }

    async fn reinstate(&self, account_id: &str) -> Value {
        let data = self
            .run_ok(
                Some(&self.admin()),
                "admin",
                "ReinstateAccount",
                json!({ "input": { "accountId": account_id, "reason": "appeal upheld" } }),
            )
            .await;
        data["reinstateAccount"].clone()
    }

    /// Registers an account without a code; its id.
    async fn account_id(&self, external_id: &str) -> String {
        s(
            &self.register(external_id, Some(external_id), None).await,
            "/account/id",
        )
        .to_owned()
    }

    async fn audit_actions(&self) -> Vec<Value> {
        nodes(&self.audit_log(100, None).await)
    }
}

/// A snapshot without the referral records and their events (`referral.rejected`,
/// `referral.attributed`), which these tests expect to be written.
fn money_of(snapshot: &[(String, i64)]) -> Vec<(String, i64)> {
    snapshot
        .iter()
        .filter(|(what, _)| what != "referrals" && what != "outbox_events")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_code_on_an_existing_account_is_rejected_and_moves_no_money() {
    let app = spawn_app().await;
    app.postpaid_rules("10", "5").await;
    app.create_rule(fixed_credit_rule("Signup bonus", "SIGNUP", "REFEREE", "2"))
        .await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let b = app.register("acct-b", Some("Bob Brown"), None).await;

    let before = app.snapshot().await;
    let again = app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    assert_eq!(again["account"], b["account"], "{again:#}");
    assert_eq!(again["referral"]["status"], "REJECTED", "{again:#}");
    assert_eq!(again["referral"]["rejectionReason"], "EXISTING_ACCOUNT", "{again:#}");
    assert!(again["referral"]["referrer"].is_null(), "{again:#}");
    let after = app.snapshot().await;
    assert_eq!(
        money_of(&after),
        money_of(&before),
        "no money moves, no account changes"
    );
    // The same attempt again answers the same record.
    let twice = app.register("acct-b", None, Some(&a.to_lowercase())).await;
    assert_eq!(twice["referral"]["id"], again["referral"]["id"], "{twice:#}");
    assert_eq!(app.snapshot().await, after);

    // B is nobody's referee: its verification pays no one.
    let verified = app.verify_payment("evt-pm-b", "acct-b").await;
    assert!(rewards_of(&verified).is_empty(), "{verified:#}");
    assert_eq!(app.available_credit("acct-a").await, "0.00");
    assert_eq!(app.available_credit("acct-b").await, "0.00");
    assert!(app.friends("acct-a").await.is_empty());

    // A retry of the registration that created an account answers its first result, the
    // referral included, and pays nothing twice; so does a retry of a rejected one.
    let c = app.register("acct-c", Some("Carol Clark"), Some(&a)).await;
    assert_eq!(c["referral"]["status"], "PENDING", "{c:#}");
    assert_eq!(app.available_credit("acct-c").await, "2.00");
    let x = app.register("acct-x", None, Some("NOSUCH0CODE")).await;
    assert_eq!(x["referral"]["rejectionReason"], "UNKNOWN_CODE", "{x:#}");
    let settled = app.snapshot().await;
    let retry = app.register("acct-c", Some("Carol Clark"), Some(&a)).await;
    assert_eq!(retry, c, "a retry answers the first result");
    let x_retry = app.register("acct-x", None, Some("NOSUCH0CODE")).await;
    assert_eq!(x_retry, x, "a retry of a rejected registration answers it again");
    assert_eq!(app.snapshot().await, settled, "retries change nothing at all");
    assert_eq!(app.count("accounts").await, 4);
    app.assert_invariants().await;
}

#[tokio::test]
async fn two_accounts_cannot_refer_each_other_by_registering_again() {
    let app = spawn_app().await;
    app.postpaid_rules("10", "5").await;
    let a = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let b = app.register("acct-b", Some("Bob Brown"), Some(&a)).await;
    assert_eq!(b["referral"]["status"], "PENDING", "{b:#}");
    let b_code = s(&b, "/account/referralCode").to_owned();

    // Today's replay: A is registered again with B's code.
    let back = app.register("acct-a", None, Some(&b_code)).await;
    assert_eq!(back["referral"]["status"], "REJECTED", "{back:#}");
    assert_eq!(back["referral"]["rejectionReason"], "EXISTING_ACCOUNT", "{back:#}");

    // A's payment method pays B nothing; B's pays A and B, once.
    let a_verified = app.verify_payment("evt-pm-a", "acct-a").await;
    assert!(rewards_of(&a_verified).is_empty(), "{a_verified:#}");
    let b_verified = app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(
        rewards_of(&b_verified),
        vec![credit_reward("acct-a", "10.00"), credit_reward("acct-b", "5.00")],
        "{b_verified:#}"
    );
    assert!(app.friends("acct-b").await.is_empty());
    let dash = app.dashboard("acct-a", 5).await;
    assert!(dash["me"]["referral"].is_null(), "A has no referrer: {dash:#}");
    app.assert_invariants().await;
}

#[tokio::test]
async fn assign_referrer_refuses_self_the_already_referred_and_cycles_of_any_length() {
    let app = spawn_app().await;
    app.postpaid_rules("10", "5").await;
    app.create_rule(fixed_credit_rule("Signup bonus", "SIGNUP", "REFEREE", "2"))
        .await;
    let a_code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let a = s(&app.register("acct-a", None, None).await, "/account/id").to_owned();
    // B signed up with A's code; C with B's.
    let b_reg = app.register("acct-b", Some("Bob Brown"), Some(&a_code)).await;
    let b = s(&b_reg, "/account/id").to_owned();
    let c_reg = app
        .register("acct-c", Some("Carol Clark"), Some(s(&b_reg, "/account/referralCode")))
        .await;
    let c = s(&c_reg, "/account/id").to_owned();
    let d = app.account_id("acct-d").await;
    let e = app.account_id("acct-e").await;
    let f = app.account_id("acct-f").await;

    // Self.
    let message = app.assign_refused(&d, &d).await;
    assert!(message.contains("own referrer"), "{message}");
    // Already referred (B has A).
    let message = app.assign_refused(&b, &d).await;
    assert!(message.contains("already has a referrer"), "{message}");
    // A cycle of 2: B was referred by A, so B cannot refer A.
    let message = app.assign_refused(&a, &b).await;
    assert!(
        message.contains("cycle") && message.contains("acct-a → acct-b → acct-a"),
        "{message}"
    );
    // A cycle of 3 through sign-ups: A → B → C, so C cannot refer A.
    let message = app.assign_refused(&a, &c).await;
    assert!(message.contains("acct-a → acct-c → acct-b → acct-a"), "{message}");
    // A cycle of 3 through assignments: D refers E, E refers F; F cannot refer D.
    app.assign(&e, &d, "merged duplicate accounts").await;
    app.assign(&f, &e, "merged duplicate accounts").await;
    let message = app.assign_refused(&d, &f).await;
    assert!(message.contains("acct-d → acct-f → acct-e → acct-d"), "{message}");
    // Unknown ids are NOT_FOUND; ids of another kind are BAD_USER_INPUT.
    assert_failed(&app.assign_raw(&d, "acc_987654", "x").await, "NOT_FOUND");
    let referral_id = s(&b_reg, "/referral/id").to_owned();
    assert_failed(&app.assign_raw(&d, &referral_id, "x").await, "BAD_USER_INPUT");
    assert_failed(&app.assign_raw(&d, &a, "  ").await, "BAD_USER_INPUT");

    // A valid assignment: C refers D (C's chain is B, A). No SIGNUP rule pays for it.
    let before = app.snapshot().await;
    let assigned = app
        .assign(&d, &c, "support ticket 4711: code typed into the wrong field")
        .await;
    assert_eq!(assigned["account"]["id"], d.as_str(), "{assigned:#}");
    assert_eq!(
        assigned["account"]["referral"]["id"], assigned["referral"]["id"],
        "{assigned:#}"
    );
    assert_eq!(assigned["referral"]["status"], "PENDING", "{assigned:#}");
    assert_eq!(assigned["referral"]["source"], "ADMIN", "{assigned:#}");
    assert_eq!(
        assigned["referral"]["referrer"]["account"]["id"],
        c.as_str(),
        "{assigned:#}"
    );
    assert_eq!(
        assigned["referral"]["referee"]["account"]["id"],
        d.as_str(),
        "{assigned:#}"
    );
    let after = app.snapshot().await;
    assert_eq!(money_of(&after), money_of(&before), "no SIGNUP rule paid");
    assert_eq!(app.available_credit("acct-d").await, "0.00");
    let audit = app.audit_actions().await;
    let entry = audit
        .iter()
        .find(|e| e["action"] == "ASSIGN_REFERRER" && e["target"] == "account:acct-d")
        .unwrap_or_else(|| panic!("no audit entry: {audit:#?}"));
    let details = entry["details"].to_string();
    assert!(
        details.contains("support ticket 4711") && details.contains("acct-c"),
        "{details}"
    );
    assert_eq!(entry["actor"], "admin:admin-1", "{entry:#}");
    // Twice is refused: D has a referrer now.
    app.assign_refused(&d, &a).await;

    // Later qualifying events pay as for any referral.
    let verified = app.verify_payment("evt-pm-d", "acct-d").await;
    assert_eq!(
        rewards_of(&verified),
        vec![credit_reward("acct-c", "10.00"), credit_reward("acct-d", "5.00")],
        "{verified:#}"
    );
    app.assert_invariants().await;
}

/// A pending reward of `amount` credit for the account, as a hold would leave it (holds are not
/// built yet, so the test writes it as the ledger would: entry and balance together).
async fn pending_credit(app: &TestApp, external_id: &str, amount: i64) -> i64 {
    // Here only: it would turn `Value::is_null` into a SQL expression elsewhere in the file.
    use sea_orm::sea_query::ExprTrait;
    let db = &app.state.db;
    let account_id = app
        .sql_i64(&format!("SELECT id FROM accounts WHERE external_id = '{external_id}'"))
        .await;
    let entry = ledger_entry::ActiveModel {
        account_id: Set(account_id),
        unit: Set(Unit::Credit),
        amount: Set(amount),
        remaining: Set(None),
        kind: Set(EntryKind::Reward),
        status: Set(EntryStatus::Pending),
        description: Set("Referral reward on hold".into()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert a pending entry");
    balance::Entity::update_many()
        .col_expr(
            balance::Column::Pending,
            Expr::col(balance::Column::Pending).add(amount),
        )
        .filter(balance::Column::AccountId.eq(account_id))
        .filter(balance::Column::Unit.eq(Unit::Credit))
        .exec(db)
        .await
        .expect("raise pending");
    entry.id
}

#[tokio::test]
async fn a_disqualified_account_neither_refers_nor_is_rewarded_until_reinstated() {
    let app = spawn_app().await;
    let (referrer_rule, referee_rule) = app.postpaid_rules("10", "5").await;
    let a_code = app.register_code("acct-a", Some("Alice Adams"), None).await;
    let a = s(&app.register("acct-a", None, None).await, "/account/id").to_owned();
    app.register("acct-b", Some("Bob Brown"), Some(&a_code)).await;
    app.register("acct-c", Some("Carol Clark"), Some(&a_code)).await;
    app.verify_payment("evt-pm-b", "acct-b").await;
    assert_eq!(app.available_credit("acct-a").await, "10.00");
    let held = pending_credit(&app, "acct-a", 7_000_000).await;
    app.assert_invariants().await;

    let disqualified = app.disqualify(&a, "self-referral ring").await;
    assert_eq!(disqualified["account"]["id"], a.as_str(), "{disqualified:#}");
    assert!(
        disqualified["account"]["disqualifiedAt"].is_string(),
        "{disqualified:#}"
    );
    assert_eq!(
        disqualified["account"]["disqualificationReason"], "self-referral ring",
        "{disqualified:#}"
    );
    let voided = disqualified["voidedEntries"].as_array().expect("a list");
    assert_eq!(voided.len(), 1, "{disqualified:#}");
    assert_eq!(voided[0]["status"], "VOIDED", "{disqualified:#}");
    assert_eq!(voided[0]["amount"], "7.00", "{disqualified:#}");
    assert!(s(&voided[0], "/id").ends_with(&format!("_{held}")), "{disqualified:#}");
    // Pending is voided, and the posted reward is reversed in the same transaction.
    let (available, pending, _) = app.credit("acct-a").await;
    assert_eq!((available.as_str(), pending.as_str()), ("0.00", "0.00"));
    let history = app.history("acct-a").await;
    assert!(
        history
            .iter()
            .any(|h| h["kind"] == "REVERSAL" && h["amount"] == "-10.00" && h["status"] == "POSTED"),
        "{history:#?}"
    );
    app.assert_invariants().await;

    // Again: nothing changes, nothing more is audited.
    let audited = app.count("audit_log").await;
    let again = app.disqualify(&a, "another reason").await;
    assert_eq!(
        again["account"]["disqualificationReason"], "self-referral ring",
        "{again:#}"
    );
    assert_eq!(again["voidedEntries"], json!([]), "{again:#}");
    assert_eq!(app.count("audit_log").await, audited);

    // Its referrals pay no one: C's verification rewards neither A nor C.
    let verified = app.verify_payment("evt-pm-c", "acct-c").await;
    assert!(rewards_of(&verified).is_empty(), "{verified:#}");
    for rule in [&referrer_rule, &referee_rule] {
        assert_eq!(
            decision_for(&verified, rule)["reason"],
            "the referrer is disqualified",
            "{verified:#}"
        );
    }
    // Its code is rejected, with the reason; the newcomer is registered all the same.
    let d = app.register("acct-d", Some("Dan Dale"), Some(&a_code)).await;
    assert_eq!(d["referral"]["status"], "REJECTED", "{d:#}");
    assert_eq!(d["referral"]["rejectionReason"], "REFERRER_DISQUALIFIED", "{d:#}");
    // It cannot be given a referrer or become one.
    let e = app.account_id("acct-e").await;
    assert!(app.assign_refused(&e, &a).await.contains("disqualified"));
    assert!(app.assign_refused(&a, &e).await.contains("disqualified"));

    // As a referee: F refers G; G disqualified: G's verification pays neither.
    let g = app
        .register(
            "acct-g",
            Some("Gina Gold"),
            Some(&app.register_code("acct-f", None, None).await),
        )
        .await;
    app.disqualify(s(&g, "/account/id"), "fake account").await;
    let verified = app.verify_payment("evt-pm-g", "acct-g").await;
    assert!(rewards_of(&verified).is_empty(), "{verified:#}");
    assert_eq!(
        decision_for(&verified, &referrer_rule)["reason"],
        "the referred account is disqualified",
        "{verified:#}"
    );
    assert_eq!(app.available_credit("acct-f").await, "0.00");

    // The admin sees the state and the audit trail.
    let audit = app.audit_actions().await;
    let disqualifications: Vec<_> = audit.iter().filter(|e| e["action"] == "DISQUALIFY_ACCOUNT").collect();
    assert_eq!(disqualifications.len(), 2, "{audit:#?}");
    assert!(
        disqualifications
            .iter()
            .any(|e| e["target"] == "account:acct-a" && e["details"].to_string().contains("self-referral ring")),
        "{audit:#?}"
    );

    // Reinstated: the flag is gone, the voided entry stays voided, the code works again.
    let reinstated = app.reinstate(&a).await;
    assert!(reinstated["disqualifiedAt"].is_null(), "{reinstated:#}");
    assert!(reinstated["disqualificationReason"].is_null(), "{reinstated:#}");
    let detail = app.account_detail(&a).await;
    let history = nodes(&detail["rewardHistory"]);
    assert!(
        history.iter().any(|h| h["status"] == "VOIDED" && h["amount"] == "7.00"),
        "{history:#?}"
    );
    assert_eq!(detail["credit"]["pending"], "0.00", "{detail:#}");
    let h = app.register("acct-h", Some("Hal Hill"), Some(&a_code)).await;
    assert_eq!(h["referral"]["status"], "PENDING", "{h:#}");
    let verified = app.verify_payment("evt-pm-h", "acct-h").await;
    assert_eq!(
        rewards_of(&verified),
        vec![credit_reward("acct-a", "10.00"), credit_reward("acct-h", "5.00")],
        "{verified:#}"
    );
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|e| e["action"] == "REINSTATE_ACCOUNT" && e["details"].to_string().contains("appeal upheld"))
    );
    app.assert_invariants().await;
}

#[tokio::test]
async fn a_thousand_referred_sign_ups_a_minute_from_one_caller_are_all_accepted() {
    let app = spawn_app_with(|config| config.code_lookups_per_minute = 600).await;
    let code = app.register_code("owner", Some("Owner"), None).await;
    let register = contract_op("integration", "RegisterAccount");
    let service = app.service();
    let started = Instant::now();
    let mut accepted = 0;
    for batch in 0..50 {
        let variables = (0..20)
            .map(|i| json!({ "input": { "externalId": format!("friend-{batch}-{i}"), "referralCode": code } }))
            .collect();
        for body in send_concurrently(&app, &service, &register, variables).await {
            let data = data_of(&body, "RegisterAccount");
            assert_eq!(data["registerAccount"]["referral"]["status"], "PENDING", "{data:#}");
            accepted += 1;
        }
    }
    let elapsed = started.elapsed();
    eprintln!("1,000 referred sign-ups in {elapsed:?} on {}", app.database_url);
    assert_eq!(accepted, 1000);
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert_eq!(app.count("referrals").await, 1000);
    assert_eq!(app.friends("owner").await.len(), 100, "a page of them");
}

#[tokio::test]
async fn unknown_codes_beyond_the_limit_are_registered_as_rate_limited_per_client_address() {
    let app = spawn_app_with(|config| config.code_lookups_per_minute = 3).await;
    let code = app.register_code("owner", Some("Owner"), None).await;
    let app_ref = &app;
    let register = move |external_id: String, code: String, address: Option<&str>| {
        let mut input = json!({ "externalId": external_id, "referralCode": code });
        if let Some(address) = address {
            input["clientAddress"] = json!(address);
        }
        app_ref.register_with(input)
    };
    let reason = |payload: &Value| s(payload, "/referral/rejectionReason").to_owned();

    for i in 0..3 {
        let guess = register(format!("g{i}"), format!("GUESS00{i}"), Some("203.0.113.7")).await;
        assert_eq!(reason(&guess), "UNKNOWN_CODE", "{guess:#}");
    }
    let limited = register("g3".into(), "GUESS003".into(), Some("203.0.113.7")).await;
    assert_eq!(reason(&limited), "RATE_LIMITED", "{limited:#}");
    assert_eq!(s(&limited, "/account/externalId"), "g3", "registered all the same");
    // A valid code from the limited address is accepted.
    let friend = register("friend".into(), code.clone(), Some("203.0.113.7")).await;
    assert_eq!(s(&friend, "/referral/status"), "PENDING", "{friend:#}");
    // Another address has its own quota, and so has the caller without an address.
    let other = register("o1".into(), "GUESS004".into(), Some("198.51.100.9")).await;
    assert_eq!(reason(&other), "UNKNOWN_CODE", "{other:#}");
    let plain = register("p1".into(), "GUESS005".into(), None).await;
    assert_eq!(reason(&plain), "UNKNOWN_CODE", "{plain:#}");
    // IPv6 addresses count by their /64.
    for i in 0..3 {
        let address = format!("2001:db8:7:7::{i}");
        let guess = register(format!("v{i}"), format!("GUESS10{i}"), Some(&address)).await;
        assert_eq!(reason(&guess), "UNKNOWN_CODE", "{guess:#}");
    }
    let v6 = register("v3".into(), "GUESS103".into(), Some("2001:db8:7:7:ffff::1")).await;
    assert_eq!(reason(&v6), "RATE_LIMITED", "{v6:#}");

    // An address that is not one is refused, and nothing is registered.
    let before = app.snapshot().await;
    let body = app
        .run(
            Some(&app.service()),
            "integration",
            "RegisterAccount",
            json!({ "input": { "externalId": "bad", "referralCode": code, "clientAddress": "not-an-ip" } }),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn concurrent_assignments_never_close_a_cycle() {
    let app = spawn_app().await;
    let query = contract_op("admin", "AssignReferrer");
    let admin = app.admin();
    let assign = |account: &str, referrer: &str| json!({ "input": { "accountId": account, "referrerAccountId": referrer, "reason": "race" } });
    for round in 0..8 {
        // Two accounts, each made the other's referrer at once.
        let a = app.account_id(&format!("r{round}-a")).await;
        let b = app.account_id(&format!("r{round}-b")).await;
        let bodies = send_concurrently(&app, &admin, &query, vec![assign(&a, &b), assign(&b, &a)]).await;
        let won = bodies.iter().filter(|b| b["errors"].is_null()).count();
        assert_eq!(won, 1, "exactly one of A←B and B←A: {bodies:#?}");
        for body in bodies.iter().filter(|b| !b["errors"].is_null()) {
            assert_failed(body, "BAD_USER_INPUT");
        }

        // Four accounts with B←C and D←A in place; A←B and C←D at once would close
        // A←B←C←D←A, and share no account.
        let [a, b, c, d] = [
            app.account_id(&format!("q{round}-a")).await,
            app.account_id(&format!("q{round}-b")).await,
            app.account_id(&format!("q{round}-c")).await,
            app.account_id(&format!("q{round}-d")).await,
        ];
        app.assign(&b, &c, "setup").await;
        app.assign(&d, &a, "setup").await;
        let bodies = send_concurrently(&app, &admin, &query, vec![assign(&a, &b), assign(&c, &d)]).await;
        let won = bodies.iter().filter(|b| b["errors"].is_null()).count();
        assert_eq!(won, 1, "exactly one link of the 4-cycle: {bodies:#?}");
    }
    // No account is its own ancestor.
    let cyclic = app
        .sql_i64(
            "WITH RECURSIVE up(start, id, depth) AS ( \
               SELECT referee_id, referrer_id, 1 FROM referrals WHERE status <> 'REJECTED' \
               UNION ALL \
               SELECT up.start, r.referrer_id, up.depth + 1 FROM up \
               JOIN referrals r ON r.referee_id = up.id AND r.status <> 'REJECTED' \
               WHERE up.depth < 20 AND up.id <> up.start) \
             SELECT CAST(COUNT(*) AS BIGINT) FROM up WHERE id = start",
        )
        .await;
    assert_eq!(cyclic, 0);
    app.assert_invariants().await;
}
