//! The sandbox clock (SANDBOX=true): shown in `programSettings`, moved forward by admins with
//! `advanceClock` (never backwards, audited), kept across restarts and instances, and absent
//! from a server that is not a sandbox. And the background task's pass on demand.

use crate::helpers::*;
use chrono::{Duration, Utc};
use referral_server::AppState;
use referral_server::graphql::{PersistedQueries, build_schema_with, schema_sdl};
use referral_server::service::sandbox;
use referral_server::tasks;
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

async fn spawn_sandbox() -> TestApp {
    spawn_app_with(|config| config.sandbox = true).await
}

/// `programSettings { sandbox clock }` as an admin.
async fn clock_of(app: &TestApp) -> (bool, chrono::DateTime<Utc>) {
    let data = app
        .run_ok(Some(&app.admin()), "sandbox", "SandboxClock", json!({}))
        .await;
    let settings = &data["programSettings"];
    (
        settings["sandbox"].as_bool().expect("sandbox"),
        instant(&settings["clock"]),
    )
}

async fn advance(app: &TestApp, token: Option<&str>, variables: Value) -> Value {
    app.run(token, "sandbox", "AdvanceClock", variables).await
}

async fn recorded_offset_ms(app: &TestApp) -> i64 {
    app.sql_i64("SELECT CAST(clock_offset_ms AS BIGINT) FROM program_settings")
        .await
}

async fn advance_audits(app: &TestApp) -> i64 {
    app.sql_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action = 'ADVANCE_CLOCK'")
        .await
}

/// The names of the mutation type's fields, by introspection.
async fn mutation_fields(app: &TestApp) -> Vec<String> {
    let body = app
        .gql(
            Some(&app.admin()),
            "{ __schema { mutationType { fields { name } } } }",
            json!({}),
        )
        .await;
    let data = data_of(&body, "introspection of the mutation type");
    data["__schema"]["mutationType"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn without_sandbox_the_clock_cannot_be_moved_and_the_operation_does_not_exist() {
    let app = spawn_app().await;
    let (sandbox, clock) = clock_of(&app).await;
    assert!(!sandbox);
    assert!(
        (clock - Utc::now()).num_seconds().abs() < 60,
        "the system time: {clock}"
    );

    let body = advance(&app, Some(&app.admin()), json!({ "days": 30 })).await;
    assert_failed(&body, "BAD_USER_INPUT");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Unknown field") && message.contains("advanceClock"),
        "{body}"
    );
    let fields = mutation_fields(&app).await;
    assert!(fields.contains(&"updateProgramSettings".to_owned()), "{fields:?}");
    assert!(!fields.contains(&"advanceClock".to_owned()), "{fields:?}");
    assert!(app.state.clock.offset().is_zero());
    assert_eq!(recorded_offset_ms(&app).await, 0);
    assert_eq!(advance_audits(&app).await, 0);
}

#[test]
fn the_exported_schema_is_a_real_programs_and_a_sandboxs_only_adds_advance_clock() {
    let exported = schema_sdl();
    assert!(!exported.contains("advanceClock("));
    assert!(exported.contains("sandbox: Boolean!"));
    let sandbox = build_schema_with(true, true, &PersistedQueries::new()).sdl();
    let mut lines: Vec<&str> = sandbox.lines().collect();
    let field = lines
        .iter()
        .position(|line| line.trim() == "advanceClock(days: Int = 0, hours: Int = 0): ProgramSettings!")
        .unwrap_or_else(|| panic!("no advanceClock in the sandbox's schema:\n{sandbox}"));
    // The field and its description (a block between two `"""` lines above it) out, and the
    // mutation type's name back: what is left is the exported schema, line for line.
    let mut first = field;
    if lines[field - 1].trim() == "\"\"\"" {
        first = field - 2;
        while lines[first].trim() != "\"\"\"" {
            first -= 1;
        }
    }
    lines.drain(first..=field);
    let rest = lines.join("\n");
    // Types are listed by name, each with its description: the mutation type sits elsewhere
    // under its other name, with a description of its own.
    let blocks = |sdl: &str| {
        let mut blocks: Vec<String> = sdl
            .split("\n\n")
            .map(|block| match block.find("type SandboxMutationRoot {") {
                Some(at) => block[at..].replace("SandboxMutationRoot", "MutationRoot"),
                None => block.replace("mutation: SandboxMutationRoot", "mutation: MutationRoot"),
            })
            .map(|block| block.trim().to_owned())
            .collect();
        blocks.sort();
        blocks
    };
    assert_eq!(blocks(&rest), blocks(&exported));
}

#[tokio::test]
async fn an_admin_moves_a_sandbox_clock_forward_only_and_every_move_is_audited() {
    let app = spawn_sandbox().await;
    let (sandbox, start) = clock_of(&app).await;
    assert!(sandbox);
    assert!(mutation_fields(&app).await.contains(&"advanceClock".to_owned()));

    let data = data_of(
        &advance(&app, Some(&app.admin()), json!({ "days": 30 })).await,
        "advance 30 days",
    );
    let moved = instant(&data["advanceClock"]["clock"]);
    assert_eq!(data["advanceClock"]["sandbox"], true);
    assert!(moved - start >= Duration::days(30), "{start} → {moved}");
    assert!(
        moved - start < Duration::days(30) + Duration::minutes(1),
        "{start} → {moved}"
    );
    let (_, read) = clock_of(&app).await;
    assert!(read >= moved, "the clock stays moved: {read}");
    assert_eq!(recorded_offset_ms(&app).await, 30 * DAY_MS);

    // Backwards, too far, and beyond what any sandbox may reach: refused, naming the field.
    for (variables, field) in [
        (json!({ "days": -1 }), "days"),
        (json!({ "hours": -1 }), "hours"),
        (json!({ "days": 3651 }), "days"),
        (json!({ "hours": 87_601 }), "hours"),
    ] {
        let body = advance(&app, Some(&app.admin()), variables.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{variables}: {body}");
    }
    for _ in 0..9 {
        data_of(
            &advance(&app, Some(&app.admin()), json!({ "days": 3650 })).await,
            "advance ten years",
        );
    }
    let body = advance(&app, Some(&app.admin()), json!({ "days": 3650 })).await;
    assert_failed(&body, "BAD_USER_INPUT");
    let offset = 30 * DAY_MS + 9 * 3650 * DAY_MS;
    assert_eq!(recorded_offset_ms(&app).await, offset);

    // Other roles: refused, and nothing moves.
    for (token, code) in [
        (Some(app.customer("cust-1")), "FORBIDDEN"),
        (Some(app.service()), "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
    ] {
        let body = advance(&app, token.as_deref(), json!({ "days": 1 })).await;
        assert_failed(&body, code);
    }
    assert_eq!(recorded_offset_ms(&app).await, offset);
    assert_eq!(app.state.clock.offset(), Duration::milliseconds(offset));

    // Hours add to days; nothing at all is a no-op that writes nothing.
    data_of(
        &advance(&app, Some(&app.admin()), json!({ "days": 1, "hours": 5 })).await,
        "a day and 5 hours",
    );
    assert_eq!(recorded_offset_ms(&app).await, offset + DAY_MS + 5 * HOUR_MS);
    let audits = advance_audits(&app).await;
    assert_eq!(audits, 11, "one row per move");
    data_of(&advance(&app, Some(&app.admin()), json!({})).await, "no move");
    assert_eq!(advance_audits(&app).await, audits);
    assert_eq!(recorded_offset_ms(&app).await, offset + DAY_MS + 5 * HOUR_MS);

    // The first move's audit row: who, and the clock before and after.
    let log = app.audit_log(20, None).await;
    let rows: Vec<Value> = nodes(&log)
        .into_iter()
        .filter(|n| n["action"] == "ADVANCE_CLOCK")
        .collect();
    assert_eq!(rows.len(), 11, "{log:#}");
    let first = rows
        .iter()
        .find(|r| {
            let details: Value = serde_json::from_str(r["details"].as_str().unwrap_or("{}")).unwrap_or_default();
            details["before"]["offsetMs"] == 0
        })
        .unwrap_or_else(|| panic!("no audit row of the first move: {rows:#?}"));
    assert_eq!(first["actor"], "admin:admin-1", "{first:#}");
    assert_eq!(first["target"], "clock", "{first:#}");
    let details: Value = serde_json::from_str(first["details"].as_str().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(details["after"]["offsetMs"], 30 * DAY_MS, "{details:#}");
    let (before, after) = (
        instant(&details["before"]["clock"]),
        instant(&details["after"]["clock"]),
    );
    assert_eq!(after - before, Duration::days(30), "{details:#}");
}

#[tokio::test]
async fn a_restarted_sandbox_keeps_its_clock_and_instances_catch_up_with_each_other() {
    let app = spawn_sandbox().await;
    data_of(
        &advance(&app, Some(&app.admin()), json!({ "days": 30 })).await,
        "advance 30 days",
    );

    // A restart (another AppState on the same database) starts where the clock was.
    let mut config = test_config(app.database_url.clone());
    config.sandbox = true;
    let second = AppState::connect(config.clone()).await.expect("a second instance");
    assert_eq!(second.clock.offset(), Duration::days(30));
    assert!(second.clock.now() - Utc::now() >= Duration::days(30) - Duration::seconds(1));

    // The second instance moves it on; the first follows at its next pass of the task.
    let moved = sandbox::advance(&second.db, "admin:other-instance", &second.clock, 2, 0)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(second.clock.offset(), Duration::days(32));
    assert_eq!(moved.after - moved.before, Duration::days(2));
    assert_eq!(app.state.clock.offset(), Duration::days(30));
    tasks::settle_now(&app.state)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(app.state.clock.offset(), Duration::days(32));
    let (_, clock) = clock_of(&app).await;
    assert!(
        clock - Utc::now() >= Duration::days(32) - Duration::minutes(1),
        "{clock}"
    );

    // An admin who saves the settings form read before the move does not move it back.
    app.update_settings(json!({ "currency": "EUR" })).await;
    assert_eq!(recorded_offset_ms(&app).await, 32 * DAY_MS);

    // A first instance that had not caught up yet advances from the furthest time, not its own.
    let lagging = AppState::connect(config).await.expect("a third instance");
    sandbox::advance(&second.db, "admin:other-instance", &second.clock, 1, 0)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    let from_lagging = sandbox::advance(&lagging.db, "admin:lagging", &lagging.clock, 0, 1)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(recorded_offset_ms(&app).await, 33 * DAY_MS + HOUR_MS);
    assert_eq!(lagging.clock.offset(), Duration::days(33) + Duration::hours(1));
    assert!(from_lagging.before - Utc::now() >= Duration::days(33) - Duration::seconds(1));

    // The same database served without SANDBOX: the record is ignored, the clock is real.
    let mut plain = test_config(app.database_url.clone());
    plain.sandbox = false;
    let plain = AppState::connect(plain).await.expect("a server that is not a sandbox");
    assert!(plain.clock.offset().is_zero());
    tasks::settle_now(&plain)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert!(plain.clock.offset().is_zero(), "its task does not catch up either");
}

/// A hold of 30 days through a rule with `holdDays`, matured by the pass `advanceClock` runs:
/// the entry is POSTED in the database right after the move, before any read of the balance
/// (which would mature it by itself). Needs rules with holdDays and `ledger::settle_due`.
#[tokio::test]
async fn a_hold_matures_as_soon_as_the_clock_passes_its_end() {
    let app = spawn_sandbox().await;
    let mut rule = fixed_credit_rule("Held sign-up credit", "SIGNUP", "REFEREE", "20");
    rule["holdDays"] = json!(30);
    app.create_rule_id(rule).await;
    let code = app.register_code("sb-referrer", None, None).await;
    app.register_code("sb-friend", None, Some(&code)).await;
    let pending = "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries \
                   WHERE status = 'PENDING' AND account_id = (SELECT id FROM accounts WHERE external_id = 'sb-friend')";
    assert_eq!(app.sql_i64(pending).await, 1, "the reward waits");
    assert_eq!(app.credit("sb-friend").await.0, "0.00");
    assert_eq!(app.credit("sb-friend").await.1, "20.00");

    data_of(
        &advance(&app, Some(&app.admin()), json!({ "days": 29, "hours": 23 })).await,
        "advance to an hour before the end of the hold",
    );
    assert_eq!(app.sql_i64(pending).await, 1, "not yet");
    data_of(
        &advance(&app, Some(&app.admin()), json!({ "hours": 1 })).await,
        "advance to the end of the hold",
    );
    assert_eq!(app.sql_i64(pending).await, 0, "matured by advanceClock's pass");
    let (available, pending_amount, _) = app.credit("sb-friend").await;
    assert_eq!((available.as_str(), pending_amount.as_str()), ("20.00", "0.00"));
    app.assert_invariants().await;
}
