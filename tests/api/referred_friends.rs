//! The affiliate's own list of the friends it referred, `me.referredFriends`: filtered (status,
//! closed accounts, when they joined, a search over only what the referrer sees of a friend, its
//! masked name and its current plan), ordered (newest, oldest, most or least earned) and paged by
//! positions, each friend showing its plan and billing cycle as its latest invoice named them.
//!
//! Every expectation is computed here from what the test sent: the names it registered (masked
//! by the rule the contract states), the invoices it recorded, the accounts it closed and the
//! referrals' creation times read back.

use crate::helpers::*;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The main referrer of the 200-friend test, and another one whose friends must never show.
const MAIN: &str = "rf-main";
const OTHER: &str = "rf-other";
/// 200 friends, registered 25 a day over 8 days (the clock moved a day between batches).
const FRIENDS: usize = 200;
const PER_DAY: usize = 25;
const DAYS: usize = FRIENDS / PER_DAY;

const FIRST_NAMES: [&str; 6] = ["John", "Joanna", "Alice", "Bob", "Maria", "Jonas"];
const LAST_NAMES: [&str; 5] = ["Smith", "Stone", "Brown", "Jones", "Sanchez"];
/// The plan of a paying friend's first invoice (None: the invoice names none).
const FIRST_PLANS: [Option<&str>; 5] = [
    Some("Pro 100"),
    Some("Pro 500"),
    Some("Starter"),
    None,
    Some("Team Pro"),
];
const CYCLES: [&str; 7] = [
    "ONE_TIME",
    "MONTHLY",
    "QUARTERLY",
    "SEMI_ANNUAL",
    "ANNUAL",
    "BIENNIAL",
    "TRIENNIAL",
];
/// Every order, the default (NEWEST) as left out.
const ORDERS: [Option<&str>; 4] = [None, Some("OLDEST"), Some("MOST_EARNED"), Some("LEAST_EARNED")];

// ---------------------------------------------------------------------------------------------
// What the test knows of each friend

#[derive(Debug, Clone)]
struct Friend {
    external_id: String,
    account_id: String,
    referral_code: String,
    email: String,
    name: Option<String>,
    /// The referral's id (`ref_12`) and its number.
    referral_id: String,
    number: i64,
    /// The day (batch) it registered on.
    day: usize,
    plan: Option<String>,
    cycle: Option<String>,
    qualified: bool,
    closed: bool,
    /// What its referrer earned through it, in millionths.
    credit: i64,
    points: i64,
    /// The referral's createdAt as the API answered it, once read back.
    created_text: Option<String>,
}

impl Friend {
    fn new(external_id: &str, email: &str, name: Option<String>, answer: &Value, day: usize) -> Friend {
        assert_eq!(answer["referral"]["status"], "PENDING", "{answer:#}");
        let referral_id = s(answer, "/referral/id").to_owned();
        Friend {
            external_id: external_id.to_owned(),
            account_id: s(answer, "/account/id").to_owned(),
            referral_code: s(answer, "/account/referralCode").to_owned(),
            email: email.to_owned(),
            name,
            number: id_number(&referral_id),
            referral_id,
            day,
            plan: None,
            cycle: None,
            qualified: false,
            closed: false,
            credit: 0,
            points: 0,
            created_text: None,
        }
    }

    fn earned(&self) -> i64 {
        self.credit + self.points
    }

    fn units(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        if self.credit != 0 {
            out.insert("CREDIT".to_owned(), self.credit);
        }
        if self.points != 0 {
            out.insert("POINTS".to_owned(), self.points);
        }
        out
    }

    fn masked(&self) -> Option<String> {
        self.name.as_deref().map(mask)
    }

    fn status(&self) -> &'static str {
        if self.qualified { "QUALIFIED" } else { "PENDING" }
    }

    fn account_status(&self) -> &'static str {
        if self.closed { "CLOSED" } else { "ACTIVE" }
    }

    fn created_at(&self) -> DateTime<Utc> {
        parse_time(
            self.created_text
                .as_deref()
                .unwrap_or_else(|| panic!("{}'s referral was not read back yet", self.external_id)),
        )
    }
}

/// The contract's mask: the first two letters of the first word, `***`, and the initial of
/// the last word with a dot when there are two words or more ("John Smith" → "Jo*** S.").
fn mask(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let first: String = words.first().map(|w| w.chars().take(2).collect()).unwrap_or_default();
    match words.last() {
        Some(last) if words.len() > 1 => {
            let initial = last.chars().next().expect("a word has a first letter");
            format!("{first}*** {initial}.")
        }
        _ => format!("{first}***"),
    }
}

/// Friend `i`'s name: a few first and last names, some with a middle name, some a single word,
/// some with none.
fn friend_name(i: usize) -> (Option<String>, String) {
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let email = format!("{}.{}{i}@example.org", first.to_lowercase(), last.to_lowercase());
    let name = match i % 11 {
        7 => None,
        5 => Some(first.to_owned()),
        9 => Some(format!("{first} Lee {last}")),
        _ => Some(format!("{first} {last}")),
    };
    (name, email)
}

/// The number in an id such as `ref_12`.
fn id_number(id: &str) -> i64 {
    id.trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|e| panic!("no number in the id {id:?}: {e}"))
}

/// The ids of a list's nodes, in order.
fn referral_ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|n| s(n, "/id").to_owned()).collect()
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not a date-time {text:?}: {e}"))
        .with_timezone(&Utc)
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A field of a filter that is set (present and not null).
fn field<'a>(filter: &'a Value, name: &str) -> Option<&'a Value> {
    filter.get(name).filter(|v| !v.is_null())
}

/// Whether the friend passes the filter, as the contract states it.
fn matches(friend: &Friend, filter: &Value) -> bool {
    if let Some(status) = field(filter, "status")
        && status.as_str() != Some(friend.status())
    {
        return false;
    }
    if let Some(closed) = field(filter, "closed")
        && closed.as_bool() != Some(friend.closed)
    {
        return false;
    }
    if let Some(from) = field(filter, "joinedFrom")
        && friend.created_at() < parse_time(from.as_str().expect("joinedFrom is a string"))
    {
        return false;
    }
    if let Some(to) = field(filter, "joinedTo")
        && friend.created_at() >= parse_time(to.as_str().expect("joinedTo is a string"))
    {
        return false;
    }
    if let Some(search) = field(filter, "search") {
        let term = search.as_str().expect("search is a string").trim().to_lowercase();
        if !term.is_empty() {
            let in_name = friend.masked().is_some_and(|m| m.to_lowercase().contains(&term));
            let in_plan = friend.plan.as_deref().is_some_and(|p| p.to_lowercase().contains(&term));
            if !in_name && !in_plan {
                return false;
            }
        }
    }
    true
}

/// The referral ids the filter lets through, in the order: by id (newest or oldest first), or
/// by what the referrer earned through it, every unit together, ties newest first.
fn expected(friends: &[Friend], filter: &Value, order: Option<&str>) -> Vec<String> {
    let mut list: Vec<&Friend> = friends.iter().filter(|f| matches(f, filter)).collect();
    match order.unwrap_or("NEWEST") {
        "NEWEST" => list.sort_by_key(|f| std::cmp::Reverse(f.number)),
        "OLDEST" => list.sort_by_key(|f| f.number),
        "MOST_EARNED" => list.sort_by(|a, b| b.earned().cmp(&a.earned()).then(b.number.cmp(&a.number))),
        "LEAST_EARNED" => list.sort_by(|a, b| a.earned().cmp(&b.earned()).then(b.number.cmp(&a.number))),
        other => panic!("no order {other}"),
    }
    list.iter().map(|f| f.referral_id.clone()).collect()
}

/// What a node says the referrer earned through it, per unit (zeros left out), in millionths.
fn earned_units(node: &Value) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for entry in node["earned"]
        .as_array()
        .unwrap_or_else(|| panic!("no earned list in {node:#}"))
    {
        let amount = micros(s(entry, "/amount"));
        if amount != 0 {
            *out.entry(s(entry, "/unit").to_owned()).or_insert(0) += amount;
        }
    }
    out
}

/// A friend's node is what the test made of that friend, as its referrer may see it.
fn assert_node(node: &Value, friend: &Friend) {
    assert_eq!(node["id"], json!(friend.referral_id), "{node:#}");
    assert_eq!(node["status"], friend.status(), "{}: {node:#}", friend.external_id);
    let referee = &node["referee"];
    assert_eq!(
        referee["displayName"],
        json!(friend.masked()),
        "{}: the referrer sees the masked name: {node:#}",
        friend.external_id
    );
    assert_eq!(
        referee["accountStatus"],
        friend.account_status(),
        "{}: {node:#}",
        friend.external_id
    );
    assert_eq!(referee["plan"], json!(friend.plan), "{}: {node:#}", friend.external_id);
    assert_eq!(
        referee["billingCycle"],
        json!(friend.cycle),
        "{}: {node:#}",
        friend.external_id
    );
    assert_ne!(
        referee["id"],
        json!(friend.account_id),
        "a participant's id is never the account's: {node:#}"
    );
    assert!(referee["id"].is_string(), "{node:#}");
    assert_eq!(
        earned_units(node),
        friend.units(),
        "{}: what the referrer earned through it: {node:#}",
        friend.external_id
    );
    let created = instant(&node["createdAt"]);
    if friend.created_text.is_some() {
        assert_eq!(created, friend.created_at(), "{node:#}");
    }
    let joined = instant(&referee["joinedAt"]);
    assert!(
        (joined - created).num_seconds().abs() < 60,
        "the friend joined when its referral began: {node:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reading the list

/// One page of AffiliateFriends as the customer `viewer`; `me.referredFriends`.
async fn friends_page(
    app: &TestApp,
    viewer: &str,
    filter: &Value,
    order: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Value {
    let vars = json!({ "first": first, "after": after, "filter": filter, "orderBy": order });
    let data = app
        .run_ok(Some(&app.customer(viewer)), "customer", "AffiliateFriends", vars)
        .await;
    data["me"]["referredFriends"].clone()
}

/// AffiliateFriends as the customer `viewer`; the whole body.
async fn friends_raw(app: &TestApp, viewer: &str, filter: Value, order: Option<&str>) -> Value {
    app.run(
        Some(&app.customer(viewer)),
        "customer",
        "AffiliateFriends",
        json!({ "first": 10, "filter": filter, "orderBy": order }),
    )
    .await
}

/// Whether the list is answered by positions: a filter that sets something, or an order other
/// than NEWEST.
fn positional(filter: &Value, order: Option<&str>) -> bool {
    let filtered = filter.as_object().is_some_and(|fields| {
        fields.iter().any(|(name, value)| {
            let blank_search = name == "search" && value.as_str().is_some_and(|t| t.trim().is_empty());
            !value.is_null() && !blank_search
        })
    });
    filtered || order.is_some_and(|o| o != "NEWEST")
}

/// Every friend the filter lets through, in the order, page by page (`first` each) following
/// `endCursor`: the total announced and the nodes in the order the pages gave them. Checks each
/// page: the total never changes, a page is full unless it is the last, the end cursor is the
/// last edge's, and a positional page after the first says a previous page exists.
async fn all_friends(
    app: &TestApp,
    viewer: &str,
    filter: &Value,
    order: Option<&str>,
    first: i64,
) -> (i64, Vec<Value>) {
    let by_position = positional(filter, order);
    let mut after: Option<String> = None;
    let mut out = Vec::new();
    let mut total: Option<i64> = None;
    for _ in 0..1000 {
        let page = friends_page(app, viewer, filter, order, first, after.as_deref()).await;
        let what = format!("{viewer}'s friends, filter {filter}, order {order:?}, after {after:?}");
        let count = page["totalCount"]
            .as_i64()
            .unwrap_or_else(|| panic!("{what}: no totalCount: {page:#}"));
        if let Some(total) = total {
            assert_eq!(total, count, "{what}: the total changes between pages: {page:#}");
        }
        total = Some(count);
        let edges = page["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no edges: {page:#}"));
        let has_next = page["pageInfo"]["hasNextPage"] == json!(true);
        assert!(
            edges.len() as i64 <= first,
            "{what}: a page longer than first: {page:#}"
        );
        if has_next {
            assert_eq!(
                edges.len() as i64,
                first,
                "{what}: a page before the last is full: {page:#}"
            );
        }
        if let Some(last) = edges.last() {
            assert_eq!(
                last["cursor"], page["pageInfo"]["endCursor"],
                "{what}: endCursor is the last edge's: {page:#}"
            );
        }
        if by_position {
            assert_eq!(
                page["pageInfo"]["hasPreviousPage"],
                json!(after.is_some()),
                "{what}: hasPreviousPage: {page:#}"
            );
        } else if after.is_none() {
            assert_eq!(page["pageInfo"]["hasPreviousPage"], json!(false), "{what}: {page:#}");
        }
        out.extend(nodes(&page));
        if !has_next {
            assert_eq!(
                out.len() as i64,
                count,
                "{what}: the pages together hold totalCount friends"
            );
            return (count, out);
        }
        after = Some(s(&page, "/pageInfo/endCursor").to_owned());
    }
    panic!("paging through {viewer}'s friends never ends");
}

/// Pages through the viewer's friends 50 at a time with the filter and order and checks them
/// against the test's own figures: the same referrals in the same order, each once, totalCount
/// theirs, each node as the test made it. Returns how many there are.
async fn check(app: &TestApp, viewer: &str, friends: &[Friend], filter: &Value, order: Option<&str>) -> usize {
    let want = expected(friends, filter, order);
    let (total, got) = all_friends(app, viewer, filter, order, 50).await;
    let got_ids: Vec<String> = got.iter().map(|n| s(n, "/id").to_owned()).collect();
    assert_eq!(
        got_ids, want,
        "{viewer}'s friends with filter {filter} in order {order:?}: the pages against the expected order"
    );
    assert_eq!(total, want.len() as i64, "totalCount with filter {filter}");
    let distinct: BTreeSet<&String> = got_ids.iter().collect();
    assert_eq!(distinct.len(), got_ids.len(), "paging visited a friend twice");
    for node in &got {
        let id = s(node, "/id");
        let friend = friends
            .iter()
            .find(|f| f.referral_id == id)
            .unwrap_or_else(|| panic!("{viewer} sees a referral that is not its own: {node:#}"));
        assert_node(node, friend);
    }
    want.len()
}

// ---------------------------------------------------------------------------------------------
// Writing

/// RecordInvoicePaid of one `internet` line, paid in cash, naming a plan and a cycle when given;
/// `recordInvoicePaid`.
async fn record_invoice(
    app: &TestApp,
    event_id: &str,
    external_id: &str,
    amount: &str,
    plan: Option<&str>,
    cycle: Option<&str>,
) -> Value {
    let mut vars = invoice_vars(event_id, external_id, &[("internet", amount)], None, None);
    if let Some(plan) = plan {
        vars["input"]["plan"] = json!(plan);
    }
    if let Some(cycle) = cycle {
        vars["input"]["billingCycle"] = json!(cycle);
    }
    let data = app
        .run_ok(Some(&app.service()), "integration", "RecordInvoicePaid", vars)
        .await;
    data["recordInvoicePaid"].clone()
}

/// The event paid exactly one reward: `amount` millionths of `unit` to `owner`.
fn assert_one_reward(answer: &Value, owner: &str, unit: &str, amount: i64) {
    let rewards = answer["rewards"]
        .as_array()
        .unwrap_or_else(|| panic!("no rewards in {answer:#}"));
    assert_eq!(rewards.len(), 1, "{answer:#}");
    assert_eq!(rewards[0]["account"]["externalId"], owner, "{answer:#}");
    assert_eq!(rewards[0]["unit"], unit, "{answer:#}");
    assert_eq!(micros(s(&rewards[0], "/amount")), amount, "{answer:#}");
}

async fn close_account(app: &TestApp, event_id: &str, external_id: &str) {
    let data = app
        .run_ok(
            Some(&app.service()),
            "integration",
            "CloseAccount",
            json!({ "input": { "eventId": event_id, "externalId": external_id } }),
        )
        .await;
    assert_eq!(data["closeAccount"]["event"]["kind"], "ACCOUNT_CLOSED", "{data:#}");
}

/// The referrer and the friend of the plan test.
const PLAN_REFERRER: &str = "pl-referrer";
const PLAN_FRIEND: &str = "pl-friend";

/// The friend's (plan, cycle) as the referrer reads them, on the default list and on a
/// filtered, ordered one; and a search by plan finds the friend by its current plan only.
async fn assert_plan(app: &TestApp, plan: Option<&str>, cycle: Option<&str>) {
    for (filter, order) in [(json!(null), None), (json!({ "closed": false }), Some("MOST_EARNED"))] {
        let page = friends_page(app, PLAN_REFERRER, &filter, order, 10, None).await;
        let list = nodes(&page);
        assert_eq!(list.len(), 1, "{page:#}");
        let referee = &list[0]["referee"];
        assert_eq!(referee["plan"], json!(plan), "{page:#}");
        assert_eq!(referee["billingCycle"], json!(cycle), "{page:#}");
        assert_eq!(referee["displayName"], "Jo*** S.", "{page:#}");
        assert_eq!(referee["accountStatus"], "ACTIVE", "{page:#}");
    }
    for candidate in ["Pro 100", "Business", "Starter"] {
        for term in [candidate.to_uppercase(), candidate.to_lowercase()] {
            let page = friends_page(app, PLAN_REFERRER, &json!({ "search": term }), None, 10, None).await;
            let want = i64::from(plan == Some(candidate));
            assert_eq!(page["totalCount"], json!(want), "search {term:?}: {page:#}");
            assert_eq!(nodes(&page).len() as i64, want, "search {term:?}: {page:#}");
        }
    }
}

/// The friend's invoice of 30.00 at `occurred_at`, naming a plan and a cycle when given, sent
/// after the simulator says what it will do.
async fn plan_invoice(app: &TestApp, event_id: &str, occurred_at: String, plan: Option<&str>, cycle: Option<&str>) {
    let mut vars = invoice_vars(event_id, PLAN_FRIEND, &[("internet", "30.00")], None, None);
    vars["input"]["occurredAt"] = json!(occurred_at);
    if let Some(plan) = plan {
        vars["input"]["plan"] = json!(plan);
    }
    if let Some(cycle) = cycle {
        vars["input"]["billingCycle"] = json!(cycle);
    }
    let answer = simulated_then_sent(app, "invoicePaid", "RecordInvoicePaid", vars).await;
    assert_eq!(answer["event"]["kind"], "INVOICE_PAID", "{answer:#}");
    assert_eq!(answer["event"]["duplicate"], false, "{answer:#}");
}

// ---------------------------------------------------------------------------------------------
// The tests

/// The affiliate's side of the 200-referral list: 200 friends of one referrer over 8 days, a
/// third of them paying (10 % of a first invoice of 10.00 to 40.00 in credit, 2 points on a
/// second invoice: earnings that differ and tie), a tenth closed, plans and cycles varied;
/// five friends of another referrer interleaved. Every filter, search and order, paged 50 at a
/// time, gives exactly the referrals and the order the test computes; the other referrer's
/// friends never show, and a search finds nothing by what the referrer does not see.
#[tokio::test]
async fn an_affiliate_filters_searches_orders_and_pages_through_its_200_friends() {
    // The mask the expectations use is the contract's.
    assert_eq!(mask("John Smith"), "Jo*** S.");
    assert_eq!(mask("Alice"), "Al***");
    assert_eq!(mask("Jo Ann van Dyke"), "Jo*** D.");

    let app = spawn_app().await;
    let mut first_invoice = rule_input(
        "10 % of a friend's first invoice",
        "INVOICE_PAID",
        "REFERRER",
        "CREDIT",
        "PERCENT",
    );
    first_invoice["value"] = json!("10");
    first_invoice["invoiceNumber"] = json!(1);
    app.create_rule_id(first_invoice).await;
    let mut second_invoice = rule_input(
        "2 points for a friend's second invoice",
        "INVOICE_PAID",
        "REFERRER",
        "POINTS",
        "FIXED",
    );
    second_invoice["value"] = json!("2");
    second_invoice["invoiceNumber"] = json!(2);
    app.create_rule_id(second_invoice).await;

    let main_code = app.register_code(MAIN, Some("Main Referrer"), None).await;
    let other_code = app.register_code(OTHER, Some("Other Referrer"), None).await;

    // 200 friends, 25 at once a day; the other referrer's five on day 3.
    let register = app.op("integration", "RegisterAccount");
    let mut friends: Vec<Friend> = Vec::with_capacity(FRIENDS);
    let mut others: Vec<Friend> = Vec::new();
    for day in 0..DAYS {
        if day > 0 {
            crate::time::advance(&app, 1);
        }
        let indexes: Vec<usize> = (day * PER_DAY..(day + 1) * PER_DAY).collect();
        let inputs: Vec<(String, Option<String>, String)> = indexes
            .iter()
            .map(|&i| {
                let (name, email) = friend_name(i);
                (format!("rf-friend-{i:03}"), name, email)
            })
            .collect();
        let vars = inputs
            .iter()
            .map(|(external_id, name, email)| {
                let mut input = json!({ "externalId": external_id, "email": email, "referralCode": main_code });
                if let Some(name) = name {
                    input["displayName"] = json!(name);
                }
                json!({ "input": input })
            })
            .collect();
        let bodies = send_concurrently(&app, &app.service(), &register, vars).await;
        for ((external_id, name, email), body) in inputs.into_iter().zip(&bodies) {
            let answer = data_of(body, &format!("RegisterAccount {external_id}"))["registerAccount"].clone();
            friends.push(Friend::new(&external_id, &email, name, &answer, day));
        }
        if day == 3 {
            for (j, name) in ["John Smith", "Joanna Stone", "Alice Brown", "Bob Jones", "Maria"]
                .iter()
                .enumerate()
            {
                let external_id = format!("rf-other-friend-{j}");
                let email = format!("other{j}@example.org");
                let answer = app
                    .register_with(json!({
                        "externalId": external_id,
                        "displayName": name,
                        "email": email,
                        "referralCode": other_code,
                    }))
                    .await;
                others.push(Friend::new(
                    &external_id,
                    &email,
                    Some((*name).to_owned()),
                    &answer,
                    day,
                ));
            }
        }
    }

    // Every third friend pays a first invoice (10 % of it to the referrer, and a plan and cycle
    // most of the time); every sixth pays a second one (2 points; a twelfth switches to Business,
    // ANNUAL, the others name no plan and keep theirs).
    for (i, friend) in friends.iter_mut().enumerate() {
        if i % 3 != 0 {
            continue;
        }
        let k = i / 3;
        let tens = (k % 4 + 1) as i64;
        let plan = FIRST_PLANS[k % FIRST_PLANS.len()];
        let cycle = (k % 8 < CYCLES.len()).then(|| CYCLES[k % 8]);
        let answer = record_invoice(
            &app,
            &format!("rf-inv1-{i}"),
            &friend.external_id,
            &format!("{}.00", tens * 10),
            plan,
            cycle,
        )
        .await;
        assert_one_reward(&answer, MAIN, "CREDIT", tens * 1_000_000);
        friend.qualified = true;
        friend.credit = tens * 1_000_000;
        friend.plan = plan.map(str::to_owned);
        friend.cycle = cycle.map(str::to_owned);
        if i % 6 == 0 {
            let (plan, cycle) = if i % 12 == 0 {
                (Some("Business"), Some("ANNUAL"))
            } else {
                (None, None)
            };
            let answer = record_invoice(&app, &format!("rf-inv2-{i}"), &friend.external_id, "25.00", plan, cycle).await;
            assert_one_reward(&answer, MAIN, "POINTS", 2_000_000);
            friend.points = 2_000_000;
            if let Some(plan) = plan {
                friend.plan = Some(plan.to_owned());
            }
            if let Some(cycle) = cycle {
                friend.cycle = Some(cycle.to_owned());
            }
        }
    }
    // Every tenth (from 3) closes its account, after paying.
    for (i, friend) in friends.iter_mut().enumerate() {
        if i % 10 == 3 {
            close_account(&app, &format!("rf-close-{i}"), &friend.external_id).await;
            friend.closed = true;
        }
    }
    // The other referrer's friends: all pay (Pro 100, MONTHLY), one closes.
    for (j, friend) in others.iter_mut().enumerate() {
        let answer = record_invoice(
            &app,
            &format!("rf-other-inv-{j}"),
            &friend.external_id,
            "20.00",
            Some("Pro 100"),
            Some("MONTHLY"),
        )
        .await;
        assert_one_reward(&answer, OTHER, "CREDIT", 2_000_000);
        friend.qualified = true;
        friend.credit = 2_000_000;
        friend.plan = Some("Pro 100".to_owned());
        friend.cycle = Some("MONTHLY".to_owned());
        if j == 1 {
            close_account(&app, &format!("rf-other-close-{j}"), &friend.external_id).await;
            friend.closed = true;
        }
    }

    // The data is what the cases below need: statuses, closures and both together, ties in
    // earnings, names and plans to search.
    let qualified = friends.iter().filter(|f| f.qualified).count();
    let closed = friends.iter().filter(|f| f.closed).count();
    let both = friends.iter().filter(|f| f.qualified && f.closed).count();
    assert_eq!((qualified, closed, both), (67, 20, 7));
    let earnings: BTreeSet<i64> = friends.iter().filter(|f| f.qualified).map(Friend::earned).collect();
    assert!(
        earnings.len() >= 4 && earnings.len() < qualified,
        "earnings differ and tie: {earnings:?}"
    );
    let main_ids: BTreeSet<&String> = friends.iter().map(|f| &f.referral_id).collect();
    assert_eq!(main_ids.len(), FRIENDS);
    assert!(others.iter().all(|f| !main_ids.contains(&f.referral_id)));

    // Read back: the default list (NEWEST, by id), every friend once; the referrals' creation
    // times kept for the date ranges.
    let (total, all) = all_friends(&app, MAIN, &json!(null), None, 50).await;
    assert_eq!(total, FRIENDS as i64);
    let newest = expected(&friends, &json!(null), None);
    let all_ids: Vec<String> = all.iter().map(|n| s(n, "/id").to_owned()).collect();
    assert_eq!(all_ids, newest, "the default order is newest first");
    for node in &all {
        let id = s(node, "/id");
        let friend = friends
            .iter_mut()
            .find(|f| f.referral_id == id)
            .unwrap_or_else(|| panic!("not a friend of {MAIN}: {node:#}"));
        friend.created_text = Some(s(node, "/createdAt").to_owned());
    }
    let (_, other_nodes) = all_friends(&app, OTHER, &json!(null), None, 50).await;
    for node in &other_nodes {
        let id = s(node, "/id");
        let friend = others
            .iter_mut()
            .find(|f| f.referral_id == id)
            .unwrap_or_else(|| panic!("not a friend of {OTHER}: {node:#}"));
        friend.created_text = Some(s(node, "/createdAt").to_owned());
    }
    assert!(friends.iter().chain(&others).all(|f| f.created_text.is_some()));
    for node in &all {
        let friend = friends
            .iter()
            .find(|f| f.referral_id == s(node, "/id"))
            .expect("read back");
        assert_node(node, friend);
    }

    // The days are apart: an hour before a day's first referral lies after the day before's last.
    let day_start: Vec<DateTime<Utc>> = (0..DAYS)
        .map(|day| {
            friends
                .iter()
                .filter(|f| f.day == day)
                .map(Friend::created_at)
                .min()
                .expect("a day has friends")
                - Duration::hours(1)
        })
        .collect();
    for (day, start) in day_start.iter().enumerate().skip(1) {
        let last_before = friends
            .iter()
            .filter(|f| f.day == day - 1)
            .map(Friend::created_at)
            .max()
            .expect("a day has friends");
        assert!(last_before < *start, "day {day} starts after day {} ends", day - 1);
    }

    // Every order of everything, with no filter and with an empty one.
    for filter in [json!(null), json!({})] {
        for order in [
            None,
            Some("NEWEST"),
            Some("OLDEST"),
            Some("MOST_EARNED"),
            Some("LEAST_EARNED"),
        ] {
            assert_eq!(check(&app, MAIN, &friends, &filter, order).await, FRIENDS);
        }
    }
    let (_, most) = all_friends(&app, MAIN, &json!(null), Some("MOST_EARNED"), 50).await;
    let most_earned = friends.iter().map(Friend::earned).max().expect("friends");
    assert_eq!(
        most_earned, 5_000_000,
        "the test's most: 3.00 credit and 2 points (4.00 credit came with no second invoice)"
    );
    assert_eq!(
        earned_units(&most[0]).values().sum::<i64>(),
        most_earned,
        "{:#}",
        most[0]
    );

    // Status, closure and the joined range, alone and together, in every order.
    let mut by_age: Vec<&Friend> = friends.iter().collect();
    by_age.sort_by_key(|f| f.number);
    let bound_text = by_age[100]
        .created_text
        .clone()
        .expect("the 101st oldest referral was read back");
    let cases = [
        (json!({ "status": "QUALIFIED" }), Some(qualified)),
        (json!({ "status": "PENDING" }), Some(FRIENDS - qualified)),
        (json!({ "status": "REJECTED" }), Some(0)),
        (json!({ "closed": true }), Some(closed)),
        (json!({ "closed": false }), Some(FRIENDS - closed)),
        (json!({ "closed": true, "status": "QUALIFIED" }), Some(both)),
        (json!({ "closed": true, "status": "PENDING" }), Some(closed - both)),
        (
            json!({ "joinedFrom": stamp(day_start[2]), "joinedTo": stamp(day_start[5]) }),
            Some(3 * PER_DAY),
        ),
        (json!({ "joinedFrom": stamp(day_start[6]) }), Some(2 * PER_DAY)),
        (json!({ "joinedTo": stamp(day_start[1]) }), Some(PER_DAY)),
        (
            json!({ "joinedFrom": stamp(day_start[2]), "joinedTo": stamp(day_start[5]),
                    "status": "QUALIFIED", "closed": false }),
            None,
        ),
        (json!({ "joinedFrom": bound_text }), None),
        (json!({ "joinedTo": bound_text }), None),
        (json!({ "joinedFrom": bound_text, "joinedTo": bound_text }), Some(0)),
        (json!({ "joinedTo": "2000-01-01T00:00:00Z" }), Some(0)),
        (json!({ "joinedFrom": "2000-01-01T00:00:00Z" }), Some(FRIENDS)),
    ];
    for (filter, count) in &cases {
        for order in ORDERS {
            let found = check(&app, MAIN, &friends, filter, order).await;
            if let Some(count) = count {
                assert_eq!(found, *count, "filter {filter}");
            }
        }
    }
    let from_bound = expected(&friends, &json!({ "joinedFrom": bound_text }), None).len();
    let to_bound = expected(&friends, &json!({ "joinedTo": bound_text }), None).len();
    assert_eq!(
        from_bound + to_bound,
        FRIENDS,
        "joinedFrom includes its instant, joinedTo not"
    );

    // Searches by what the referrer sees: a fragment of the masked names ("Jo*** S.") or of the
    // current plans, in any case; alone and with other filters.
    let searches = [
        json!({ "search": "jo***" }),
        json!({ "search": "JO*** S." }),
        json!({ "search": "S." }),
        json!({ "search": "al***" }),
        json!({ "search": "*** b." }),
        json!({ "search": "Ma***" }),
        json!({ "search": "O" }),
        json!({ "search": "pro" }),
        json!({ "search": "PRO 5" }),
        json!({ "search": "business" }),
        json!({ "search": "Starter" }),
        json!({ "search": "team" }),
        json!({ "search": "jo***", "status": "QUALIFIED" }),
        json!({ "search": "s.", "closed": false }),
        json!({ "search": "pro", "status": "QUALIFIED", "closed": false, "joinedFrom": stamp(day_start[1]) }),
    ];
    for filter in &searches {
        let want = expected(&friends, filter, None).len();
        assert!(
            want > 0 && want < FRIENDS,
            "the search {filter} picks some friends and not all: {want}"
        );
        for order in ORDERS {
            assert_eq!(check(&app, MAIN, &friends, filter, order).await, want, "{filter}");
        }
    }

    // What the referrer does not see finds nothing: full names, a last name, a middle name, an
    // email, an externalId, a referral code, a referral id; LIKE's wildcards match literally.
    let f42 = &friends[42];
    assert_eq!(f42.name.as_deref(), Some("John Lee Brown"));
    let unseen = [
        "John Smith".to_owned(),
        "john".to_owned(),
        "SMITH".to_owned(),
        "Stone".to_owned(),
        "Lee".to_owned(),
        "John Lee Brown".to_owned(),
        f42.email.clone(),
        "example.org".to_owned(),
        "@".to_owned(),
        f42.external_id.clone(),
        "rf-friend".to_owned(),
        f42.referral_code.clone(),
        f42.referral_id.clone(),
        "%".to_owned(),
        "_".to_owned(),
    ];
    for term in &unseen {
        let filter = json!({ "search": term });
        assert!(
            expected(&friends, &filter, None).is_empty(),
            "the test's data shows {term:?} nowhere a referrer sees"
        );
        for order in [None, Some("MOST_EARNED")] {
            assert_eq!(check(&app, MAIN, &friends, &filter, order).await, 0, "search {term:?}");
        }
    }

    // The other referrer sees its five only, whatever it asks; the main referrer's lists above
    // never held them.
    for filter in [json!(null), json!({ "search": "jo***" }), json!({ "closed": true })] {
        for order in ORDERS {
            let found = check(&app, OTHER, &others, &filter, order).await;
            assert!(found > 0 && found <= others.len(), "{filter}");
        }
    }
    for node in &all {
        assert!(!others.iter().any(|f| f.referral_id == s(node, "/id")), "{node:#}");
    }

    app.assert_invariants().await;
}

/// A friend's plan and billing cycle are those of its latest invoice (by occurredAt) that named
/// them: "Pro 100" MONTHLY, then "Business" ANNUAL; a late invoice of an older time naming
/// "Starter" changes nothing, nor does one that names no plan; one naming only a cycle changes
/// only the cycle. The referrer sees them, and the friend's masked name, and never its full name,
/// email or account.
#[tokio::test]
async fn a_friends_plan_and_cycle_are_those_of_its_latest_invoice_that_named_them() {
    const REFERRER: &str = PLAN_REFERRER;
    const FRIEND: &str = PLAN_FRIEND;
    let app = spawn_app().await;
    let code = app.register_code(REFERRER, Some("Paula Referrer"), None).await;
    let friend = app
        .register_with(json!({
            "externalId": FRIEND,
            "displayName": "John Smith",
            "email": "john.smith@example.org",
            "referralCode": code,
        }))
        .await;
    assert_eq!(friend["referral"]["status"], "PENDING", "{friend:#}");
    let joined = app.state.clock.now();
    crate::time::advance(&app, 10);
    let at = |days: i64| stamp(joined + Duration::days(days));

    // No invoice yet: neither.
    assert_plan(&app, None, None).await;

    plan_invoice(&app, "pl-inv-1", at(1), Some("Pro 100"), Some("MONTHLY")).await;
    assert_plan(&app, Some("Pro 100"), Some("MONTHLY")).await;

    plan_invoice(&app, "pl-inv-2", at(3), Some("Business"), Some("ANNUAL")).await;
    assert_plan(&app, Some("Business"), Some("ANNUAL")).await;

    // Late: it happened before the Business invoice.
    plan_invoice(&app, "pl-inv-3", at(2), Some("Starter"), Some("MONTHLY")).await;
    assert_plan(&app, Some("Business"), Some("ANNUAL")).await;

    // Later, naming neither.
    plan_invoice(&app, "pl-inv-4", at(4), None, None).await;
    assert_plan(&app, Some("Business"), Some("ANNUAL")).await;

    // Later still, naming only a cycle.
    plan_invoice(&app, "pl-inv-5", at(5), None, Some("QUARTERLY")).await;
    assert_plan(&app, Some("Business"), Some("QUARTERLY")).await;

    // A plan name longer than 100 characters is refused, and changes nothing.
    let mut vars = invoice_vars("pl-inv-6", FRIEND, &[("internet", "30.00")], None, None);
    vars["input"]["occurredAt"] = json!(at(6));
    vars["input"]["plan"] = json!("P".repeat(101));
    let body = app
        .run(Some(&app.service()), "integration", "RecordInvoicePaid", vars)
        .await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_plan(&app, Some("Business"), Some("QUARTERLY")).await;

    // The friend sees its referrer masked too.
    let dashboard = app.dashboard(FRIEND, 5).await;
    assert_eq!(
        dashboard["me"]["referral"]["referrer"]["displayName"], "Pa*** R.",
        "{dashboard:#}"
    );

    // The referrer's answers never hold the friend's full name, email or externalId.
    let secrets = ["John Smith", "john.smith@example.org", FRIEND];
    for (filter, order) in [(json!(null), None), (json!({ "search": "jo*** s." }), Some("OLDEST"))] {
        let body = friends_raw(&app, REFERRER, filter.clone(), order).await;
        let data = data_of(&body, "AffiliateFriends");
        assert_eq!(data["me"]["referredFriends"]["totalCount"], 1, "{body:#}");
        let text = body.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} shown to the referrer: {body:#}");
        }
    }

    // Participant has no email field: the request is refused as invalid.
    let body = app
        .gql(
            Some(&app.customer(REFERRER)),
            "{ me { referredFriends(first: 5) { edges { node { referee { displayName email } } } } } }",
            json!({}),
        )
        .await;
    assert_failed(&body, "BAD_USER_INPUT");

    // Its account is for staff only: FORBIDDEN at that path, on the default list and on a
    // filtered one, and the rest of the node still answered, masked.
    let query = "query($filter: FriendFilter, $orderBy: ReferralOrder) { me { referredFriends(first: 5, \
                 filter: $filter, orderBy: $orderBy) { totalCount edges { node { id referee { displayName \
                 account { externalId email displayName } } } } } } }";
    for (filter, order) in [
        (json!(null), None),
        (json!({ "search": "Business" }), Some("MOST_EARNED")),
    ] {
        let body = app
            .gql(
                Some(&app.customer(REFERRER)),
                query,
                json!({ "filter": filter, "orderBy": order }),
            )
            .await;
        assert_error_code(&body, "FORBIDDEN");
        let codes = error_codes(&body);
        assert!(codes.iter().all(|c| c == "FORBIDDEN"), "{body:#}");
        let referee = &body["data"]["me"]["referredFriends"]["edges"][0]["node"]["referee"];
        assert_eq!(referee["displayName"], "Jo*** S.", "{body:#}");
        assert!(referee["account"].is_null(), "{body:#}");
        let text = body.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} shown to the referrer: {body:#}");
        }
    }

    app.assert_invariants().await;
}

/// A search longer than 200 characters and a joined range that ends before it begins are
/// refused with BAD_USER_INPUT; 200 characters (counted as characters) are fine. Without a
/// filter or an order the list is what it always was: newest first, on the dashboard, on its
/// own page and on the affiliate's.
#[tokio::test]
async fn a_long_search_or_a_reversed_range_is_refused_and_the_default_list_stays_newest_first() {
    const REFERRER: &str = "val-referrer";
    let app = spawn_app().await;
    let code = app.register_code(REFERRER, Some("Vera Referrer"), None).await;
    let names = ["Anna Berg", "Carl Dahl", "Eva Fisk", "Gus Holm", "Ida Jarl"];
    let mut registered = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let answer = app.register(&format!("val-friend-{i}"), Some(name), Some(&code)).await;
        registered.push(s(&answer, "/referral/id").to_owned());
    }
    assert!(
        registered.windows(2).all(|w| id_number(&w[0]) < id_number(&w[1])),
        "{registered:?}"
    );
    let newest: Vec<String> = registered.iter().rev().cloned().collect();
    let newest_names: Vec<String> = names.iter().rev().map(|n| mask(n)).collect();

    // The dashboard.
    let dashboard = app.friends(REFERRER).await;
    assert_eq!(referral_ids(&dashboard), newest);
    let shown: Vec<String> = dashboard
        .iter()
        .map(|n| s(n, "/referee/displayName").to_owned())
        .collect();
    assert_eq!(shown, newest_names);

    // FriendsPage, two at a time.
    let mut after: Option<String> = None;
    let mut paged = Vec::new();
    for _ in 0..10 {
        let data = app
            .run_ok(
                Some(&app.customer(REFERRER)),
                "customer",
                "FriendsPage",
                json!({ "first": 2, "after": after }),
            )
            .await;
        let page = &data["me"]["referredFriends"];
        assert_eq!(page["totalCount"], 5, "{data:#}");
        paged.extend(nodes(page));
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = Some(s(page, "/pageInfo/endCursor").to_owned());
    }
    assert_eq!(referral_ids(&paged), newest);

    // AffiliateFriends with no filter and no order, an empty filter, or NEWEST named.
    for (filter, order) in [(json!(null), None), (json!({}), None), (json!(null), Some("NEWEST"))] {
        let (total, list) = all_friends(&app, REFERRER, &filter, order, 2).await;
        assert_eq!(total, 5);
        assert_eq!(referral_ids(&list), newest, "filter {filter}, order {order:?}");
        let shown: Vec<String> = list.iter().map(|n| s(n, "/referee/displayName").to_owned()).collect();
        assert_eq!(shown, newest_names);
    }

    // A search of 201 characters is refused, with or without an order; 200 are fine, even when
    // each is two bytes.
    let before = app.snapshot().await;
    for order in [None, Some("MOST_EARNED")] {
        let body = friends_raw(&app, REFERRER, json!({ "search": "x".repeat(201) }), order).await;
        assert_failed(&body, "BAD_USER_INPUT");
        let body = friends_raw(&app, REFERRER, json!({ "search": "é".repeat(201) }), order).await;
        assert_failed(&body, "BAD_USER_INPUT");
    }
    for term in ["x".repeat(200), "é".repeat(200)] {
        let page = friends_page(&app, REFERRER, &json!({ "search": term }), None, 10, None).await;
        assert_eq!(page["totalCount"], 0, "{page:#}");
        assert_eq!(nodes(&page).len(), 0, "{page:#}");
    }

    // joinedFrom after joinedTo is refused; equal, the range is empty.
    let body = friends_raw(
        &app,
        REFERRER,
        json!({ "joinedFrom": "2030-01-02T00:00:00Z", "joinedTo": "2030-01-01T00:00:00Z" }),
        None,
    )
    .await;
    assert_failed(&body, "BAD_USER_INPUT");
    let now = app.state.clock.now();
    let body = friends_raw(
        &app,
        REFERRER,
        json!({ "joinedFrom": stamp(now), "joinedTo": stamp(now - Duration::seconds(1)) }),
        Some("OLDEST"),
    )
    .await;
    assert_failed(&body, "BAD_USER_INPUT");
    let page = friends_page(
        &app,
        REFERRER,
        &json!({ "joinedFrom": stamp(now), "joinedTo": stamp(now) }),
        None,
        10,
        None,
    )
    .await;
    assert_eq!(page["totalCount"], 0, "{page:#}");
    let page = friends_page(
        &app,
        REFERRER,
        &json!({ "joinedFrom": stamp(now - Duration::hours(1)), "joinedTo": stamp(now + Duration::hours(1)) }),
        None,
        10,
        None,
    )
    .await;
    assert_eq!(page["totalCount"], 5, "{page:#}");
    assert_eq!(referral_ids(&nodes(&page)), newest);
    assert_eq!(app.snapshot().await, before, "reading and refusing changed nothing");

    // The refusals left the default list as it was.
    assert_eq!(referral_ids(&app.friends(REFERRER).await), newest);
}

/// A database of the release before, with named accounts: the migration that adds masked names
/// fills them in for every account (over more than one of its batches), as the server masks a
/// new account's name, and leaves unnamed ones without.
#[tokio::test]
async fn the_migration_masks_the_names_of_accounts_that_existed_before() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Statement};
    let (url, _dir) = crate::rules::new_database().await;
    let (db, _) = referral_server::db::connect(&url).await.expect("connect");
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261208_000001_affiliate_area")
        .expect("the affiliate area's migration");
    Migrator::up(&db, Some(u32::try_from(before).expect("a few")))
        .await
        .expect("the earlier migrations");
    let names = ["John Smith", "Alice", "Łukasz Żółw", " Jo Ann  van Dyke ", "x"];
    let backend = db.get_database_backend();
    let placeholder = |n: usize| match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let created = Utc::now();
    let mut expected = Vec::new();
    // 1,250 accounts in batches of 250 rows per statement; every seventh has no name.
    for batch in 0..5 {
        let mut rows = Vec::new();
        let mut values: Vec<sea_orm::Value> = Vec::new();
        for i in 0..250 {
            let n = batch * 250 + i;
            let name = (n % 7 != 0).then(|| names[n % names.len()].to_owned());
            let at = values.len();
            rows.push(format!(
                "({}, {}, {}, 'ACTIVE', {})",
                placeholder(at + 1),
                placeholder(at + 2),
                placeholder(at + 3),
                placeholder(at + 4)
            ));
            values.push(format!("old-{n}").into());
            values.push(name.clone().into());
            values.push(format!("OLD{n:05}").into());
            values.push(created.into());
            expected.push((format!("old-{n}"), name));
        }
        let insert = format!(
            "INSERT INTO accounts (external_id, display_name, referral_code, status, created_at) VALUES {}",
            rows.join(", ")
        );
        db.execute_raw(Statement::from_sql_and_values(backend, insert, values))
            .await
            .expect("old accounts");
    }
    Migrator::up(&db, None).await.expect("the affiliate area's migration");

    let stored: BTreeMap<String, Option<String>> = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT external_id, masked_name FROM accounts",
        ))
        .await
        .expect("accounts")
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "external_id").expect("external_id"),
                row.try_get::<Option<String>>("", "masked_name").expect("masked_name"),
            )
        })
        .collect();
    assert_eq!(stored.len(), expected.len());
    for (external_id, name) in &expected {
        let masked = name.as_deref().map(mask);
        assert_eq!(stored[external_id], masked, "{external_id} named {name:?}");
    }
    assert_eq!(stored["old-1"].as_deref(), Some("Al***"));
    assert_eq!(stored["old-2"].as_deref(), Some("Łu*** Ż."));
    assert_eq!(stored["old-3"].as_deref(), Some("Jo*** D."));
    assert_eq!(stored["old-0"], None);
}
