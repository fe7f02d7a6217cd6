//! PostGraphile's Dashboard in the server's shape, and where two answers differ. What
//! PostGraphile's schema cannot say (bench/postgraphile/dashboard.graphql) is derived here from
//! the same rows, as the server derives it.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// PostGraphile's answer in the Dashboard's shape (`data` of operations/customer.graphql's
/// Dashboard), derived as bench/postgraphile/dashboard.graphql says; `public_url` is the
/// server's, which its referral links start with.
pub fn as_dashboard(answer: &Value, public_url: &str) -> Result<Value> {
    let data = answer.get("data").context("no data in PostGraphile's answer")?;
    let settings = &data["programSettingById"];
    let program = json!({ "enabled": settings["enabled"], "currency": settings["currency"] });
    let account = &data["accountByExternalId"];
    if account.is_null() {
        return Ok(json!({ "program": program, "me": null }));
    }
    let code = text(&account["referralCode"])?;
    let link = text(&settings["referralLinkTemplate"])?
        .replace("{publicUrl}", public_url)
        .replace("{code}", code);
    let referral = nodes(&account["referralsByRefereeId"])
        .iter()
        .find(|r| r["status"] != "REJECTED")
        .map(|r| -> Result<Value> {
            let referrer = &r["accountByReferrerId"];
            Ok(json!({
                "id": id("ref", &r["id"])?,
                "referrer": if referrer.is_null() {
                    Value::Null
                } else {
                    json!({ "displayName": masked(&referrer["displayName"]), "referralCode": referrer["referralCode"] })
                },
            }))
        })
        .transpose()?;
    let balance = |unit: &str| -> Result<Value> {
        let row = nodes(&account["balancesByAccountId"])
            .iter()
            .find(|b| b["unit"] == unit);
        let amount = |field: &str| -> Result<Value> {
            Ok(row
                .map(|b| decimal(&b[field]))
                .transpose()?
                .unwrap_or_else(|| json!("0.00")))
        };
        Ok(json!({
            "unit": unit,
            "available": amount("available")?,
            "pending": amount("pending")?,
            "lifetimeEarned": amount("lifetimeEarned")?,
        }))
    };
    let friends = connection(&account["referralsByReferrerId"], |r| {
        let referee = &r["accountByRefereeId"];
        Ok(json!({
            "id": id("ref", &r["id"])?,
            "status": r["status"],
            "createdAt": utc(&r["createdAt"])?,
            "qualifiedAt": utc(&r["qualifiedAt"])?,
            "referee": {
                "displayName": masked(&referee["displayName"]),
                "joinedAt": utc(&referee["createdAt"])?,
                "accountStatus": referee["status"],
                "firstPurchaseAt": utc(&referee["firstPurchaseAt"])?,
            },
            "earned": earned(r)?,
        }))
    })?;
    let history = connection(&account["ledgerEntriesByAccountId"], |e| {
        Ok(json!({
            "id": id("led", &e["id"])?,
            "kind": e["kind"],
            "unit": e["unit"],
            "amount": decimal(&e["amount"])?,
            "status": e["status"],
            "description": e["description"],
            "createdAt": utc(&e["createdAt"])?,
            "availableAt": utc(&e["availableAt"])?,
            "expiresAt": utc(&e["expiresAt"])?,
        }))
    })?;
    Ok(json!({
        "program": program,
        "me": {
            "id": id("acc", &account["id"])?,
            "externalId": account["externalId"],
            "referralCode": code,
            "referralLink": link,
            "referral": referral,
            "points": balance("POINTS")?,
            "credit": balance("CREDIT")?,
            "referredFriends": friends,
            "rewardHistory": history,
        },
    }))
}

/// Where two answers first differ (`me.rewardHistory.edges[3].node.amount: "1.00" ≠ "1.50"`),
/// or None when they are equal.
pub fn first_difference(server: &Value, reference: &Value) -> Option<String> {
    difference_at("", server, reference)
}

fn difference_at(path: &str, server: &Value, reference: &Value) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (server, reference) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) => difference_at(&join(key), x, y),
                (x, y) => Some(format!(
                    "{}: server {}, PostGraphile {}",
                    join(key),
                    x.map_or("nothing".into(), Value::to_string),
                    y.map_or("nothing".into(), Value::to_string)
                )),
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| difference_at(&format!("{path}[{i}]"), x, y)),
        (Value::Array(a), Value::Array(b)) => Some(format!(
            "{path}: server has {} items, PostGraphile {}",
            a.len(),
            b.len()
        )),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: server {a}, PostGraphile {b}")),
    }
}

fn nodes(connection: &Value) -> &[Value] {
    connection["nodes"].as_array().map_or(&[], Vec::as_slice)
}

/// A Relay connection in the server's form: its cursors are the server's (the row id, as
/// async-graphql's `OpaqueCursor` writes it), and `endCursor` the last edge's when
/// PostGraphile's says the same.
fn connection(conn: &Value, node: impl Fn(&Value) -> Result<Value>) -> Result<Value> {
    let edges = conn["edges"].as_array().map_or(&[][..], Vec::as_slice);
    let mapped = edges
        .iter()
        .map(|edge| Ok(json!({ "cursor": cursor(&edge["node"]["id"])?, "node": node(&edge["node"])? })))
        .collect::<Result<Vec<Value>>>()?;
    let page = &conn["pageInfo"];
    let end_cursor = match edges.last() {
        Some(last) if page["endCursor"] == last["cursor"] => cursor(&last["node"]["id"])?,
        _ => page["endCursor"].clone(),
    };
    Ok(json!({
        "totalCount": conn["totalCount"],
        "pageInfo": { "hasNextPage": page["hasNextPage"], "endCursor": end_cursor },
        "edges": mapped,
    }))
}

/// What the referrer earned through a referral, per unit: its rewards and their reversals,
/// voided ones aside (as the server's `Referral.earned`).
fn earned(referral: &Value) -> Result<Value> {
    let mut totals: Vec<(String, i64)> = Vec::new();
    for entry in nodes(&referral["ledgerEntriesByReferralId"]) {
        let counts = entry["accountId"] == referral["referrerId"]
            && (entry["kind"] == "REWARD" || entry["kind"] == "REVERSAL")
            && entry["status"] != "VOIDED";
        if !counts {
            continue;
        }
        let unit = text(&entry["unit"])?;
        let amount = micros(&entry["amount"])?;
        match totals.iter_mut().find(|(u, _)| u == unit) {
            Some((_, total)) => *total += amount,
            None => totals.push((unit.to_owned(), amount)),
        }
    }
    totals.sort();
    Ok(totals
        .into_iter()
        .map(|(unit, total)| json!({ "unit": unit, "amount": format_micros(total) }))
        .collect())
}

fn text(value: &Value) -> Result<&str> {
    value
        .as_str()
        .with_context(|| format!("expected a string, got {value}"))
}

/// A BigInt (PostGraphile writes them as strings).
fn micros(value: &Value) -> Result<i64> {
    text(value)?
        .parse()
        .with_context(|| format!("expected a BigInt, got {value}"))
}

fn id(prefix: &str, value: &Value) -> Result<Value> {
    Ok(json!(format!("{prefix}_{}", micros(value)?)))
}

fn decimal(value: &Value) -> Result<Value> {
    Ok(json!(format_micros(micros(value)?)))
}

/// Millionths as the server's `Decimal` writes them: at least two decimals, no trailing zeros
/// beyond ("10.50", "0.125", "-3.00").
fn format_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let mut fraction = format!("{:06}", abs % 1_000_000);
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{sign}{}.{fraction}", abs / 1_000_000)
}

/// A timestamp as the server writes it (RFC 3339 in UTC, `+00:00`).
fn utc(value: &Value) -> Result<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let at = chrono::DateTime::parse_from_rfc3339(text(value)?).with_context(|| format!("not a timestamp: {value}"))?;
    Ok(json!(at.with_timezone(&chrono::Utc).to_rfc3339()))
}

/// A name as customers see other people's ("Jo*** S."), as the server masks it.
fn masked(value: &Value) -> Value {
    let Some(name) = value.as_str() else {
        return Value::Null;
    };
    let mut words = name.split_whitespace();
    let first: String = words.next().unwrap_or("").chars().take(2).collect();
    match words.last().and_then(|w| w.chars().next()) {
        Some(initial) => json!(format!("{first}*** {initial}.")),
        None => json!(format!("{first}***")),
    }
}

/// The server's cursor for a row id: the id's JSON, base64url without padding.
fn cursor(row_id: &Value) -> Result<Value> {
    Ok(json!(base64url(micros(row_id)?.to_string().as_bytes())))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_values_as_the_server_does() -> Result<()> {
        assert_eq!(format_micros(10_500_000), "10.50");
        assert_eq!(format_micros(125_000), "0.125");
        assert_eq!(format_micros(-100_000_000), "-100.00");
        assert_eq!(format_micros(-500_000), "-0.50");
        assert_eq!(format_micros(1), "0.000001");
        assert_eq!(
            utc(&json!("2026-12-04T17:39:12.91+00:00"))?,
            json!("2026-12-04T17:39:12.910+00:00")
        );
        assert_eq!(
            utc(&json!("2025-01-01T02:00:20+01:00"))?,
            json!("2025-01-01T01:00:20+00:00")
        );
        assert_eq!(masked(&json!("John Smith")), json!("Jo*** S."));
        assert_eq!(masked(&json!("Alice")), json!("Al***"));
        assert_eq!(cursor(&json!("6"))?, json!("Ng"));
        assert_eq!(cursor(&json!("23"))?, json!("MjM"));
        assert_eq!(cursor(&json!("9875"))?, json!("OTg3NQ"));
        Ok(())
    }

    #[test]
    fn maps_postgraphile_to_the_dashboard_and_finds_the_first_difference() -> Result<()> {
        let answer = json!({ "data": {
            "programSettingById": { "enabled": true, "currency": "USD", "referralLinkTemplate": "{publicUrl}/r/{code}" },
            "accountByExternalId": {
                "id": "2", "externalId": "u2", "referralCode": "BN2",
                "referralsByRefereeId": { "nodes": [
                    { "id": "9", "status": "REJECTED", "accountByReferrerId": null },
                    { "id": "1", "status": "QUALIFIED", "accountByReferrerId": { "displayName": "User 1", "referralCode": "BN1" } },
                ] },
                "balancesByAccountId": { "nodes": [
                    { "unit": "POINTS", "available": "1500000", "pending": "0", "lifetimeEarned": "2000000" },
                ] },
                "referralsByReferrerId": {
                    "totalCount": 1,
                    "pageInfo": { "hasNextPage": false, "endCursor": "c6" },
                    "edges": [{ "cursor": "c6", "node": {
                        "id": "6", "referrerId": "2", "status": "QUALIFIED",
                        "createdAt": "2025-01-01T00:01:10+00:00", "qualifiedAt": null,
                        "accountByRefereeId": { "displayName": "User 7", "createdAt": "2025-01-01T00:01:10+00:00",
                                                "status": "ACTIVE", "firstPurchaseAt": null },
                        "ledgerEntriesByReferralId": { "nodes": [
                            { "accountId": "2", "unit": "POINTS", "amount": "460000000", "kind": "REWARD", "status": "POSTED" },
                            { "accountId": "2", "unit": "POINTS", "amount": "-60000000", "kind": "REVERSAL", "status": "POSTED" },
                            { "accountId": "2", "unit": "POINTS", "amount": "5000000", "kind": "REWARD", "status": "VOIDED" },
                            { "accountId": "7", "unit": "POINTS", "amount": "1000000", "kind": "REWARD", "status": "POSTED" },
                        ] },
                    } }],
                },
                "ledgerEntriesByAccountId": { "totalCount": 0, "pageInfo": { "hasNextPage": false, "endCursor": null }, "edges": [] },
            },
        } });
        let mapped = as_dashboard(&answer, "http://127.0.0.1:1")?;
        let me = &mapped["me"];
        assert_eq!(me["id"], "acc_2");
        assert_eq!(me["referralLink"], "http://127.0.0.1:1/r/BN2");
        assert_eq!(
            me["referral"],
            json!({ "id": "ref_1", "referrer": { "displayName": "Us*** 1.", "referralCode": "BN1" } })
        );
        assert_eq!(me["points"]["available"], "1.50");
        assert_eq!(
            me["credit"],
            json!({ "unit": "CREDIT", "available": "0.00", "pending": "0.00", "lifetimeEarned": "0.00" })
        );
        let friends = &me["referredFriends"];
        assert_eq!(friends["pageInfo"]["endCursor"], "Ng");
        assert_eq!(friends["edges"][0]["cursor"], "Ng");
        assert_eq!(
            friends["edges"][0]["node"]["earned"],
            json!([{ "unit": "POINTS", "amount": "400.00" }])
        );
        assert_eq!(friends["edges"][0]["node"]["referee"]["displayName"], "Us*** 7.");
        assert_eq!(me["rewardHistory"]["pageInfo"]["endCursor"], Value::Null);

        assert_eq!(first_difference(&mapped, &mapped), None);
        let mut other = mapped.clone();
        other["me"]["referredFriends"]["edges"][0]["node"]["earned"][0]["amount"] = json!("400.50");
        assert_eq!(
            first_difference(&mapped, &other).as_deref(),
            Some(r#"me.referredFriends.edges[0].node.earned[0].amount: server "400.00", PostGraphile "400.50""#)
        );
        other["me"]["rewardHistory"]["edges"] = json!([1]);
        assert_eq!(
            first_difference(&mapped, &other).as_deref(),
            Some("me.referredFriends.edges[0].node.earned[0].amount: server \"400.00\", PostGraphile \"400.50\"")
        );
        let mut fewer = mapped.clone();
        fewer["me"]["rewardHistory"]["edges"] = json!([1]);
        assert_eq!(
            first_difference(&mapped, &fewer).as_deref(),
            Some("me.rewardHistory.edges: server has 0 items, PostGraphile 1")
        );
        Ok(())
    }
}
