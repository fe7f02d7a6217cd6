//! Marketing material: the banners and snippets admins keep (at most 100, every write audited),
//! and each approved affiliate's reading of them with its own referral link in place of
//! `{link}`: HTML-escaped into an HTML template, as it is into a text one.

use crate::helpers::*;
use crate::time::advance;
use serde_json::{Value, json};

/// A link template an admin may set (it starts with https:// and holds {code}) that would
/// break out of an attribute and inject a script if it went into HTML unescaped.
const HOSTILE_LINK_TEMPLATE: &str = r#"https://x.test/?a="><script>alert('x')</script>&r={code}"#;

/// An image banner: the link goes into a quoted attribute.
const BANNER: &str = r#"<a href="{link}"><img src="https://cdn.test/b.png" alt="Spring"></a>"#;

/// A text snippet.
const SNIPPET: &str = "Try it: {link}";

/// The customer's link and its affiliate record's materials.
const MY_MATERIALS: &str = "query { me { referralCode referralLink affiliate { status \
    marketingMaterials { id kind name format content } } } }";

/// An account's affiliate record and materials as staff read them.
const ACCOUNT_MATERIALS: &str = "query($id: ID!) { account(id: $id) { referralLink affiliate { status \
    marketingMaterials { id kind name format content } } } }";

// ---------------------------------------------------------------------------------------------
// Helpers

/// The link as it must stand in HTML, computed here on its own: the five characters that
/// matter in a quoted attribute, `&` first so that the others' entities are not escaped again.
fn escaped(link: &str) -> String {
    link.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// A MarketingMaterialInput with every field.
fn material(kind: &str, name: &str, format: &str, template: &str) -> Value {
    json!({ "kind": kind, "name": name, "format": format, "template": template })
}

/// What an admin wrote of a material, without its dates: [id, kind, name, format, template].
fn written(material: &Value) -> Value {
    json!([
        material["id"],
        material["kind"],
        material["name"],
        material["format"],
        material["template"]
    ])
}

/// An AffiliateMaterial as it must be answered.
fn rendered(material: &Value, content: &str) -> Value {
    json!({
        "id": material["id"],
        "kind": material["kind"],
        "name": material["name"],
        "format": material["format"],
        "content": content,
    })
}

/// The number in a material's id (`mkt_7` → 7), as the audit log's target names it.
fn number(id: &str) -> i64 {
    id.strip_prefix("mkt_")
        .filter(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| panic!("not a marketing material id: {id:?}"))
}

fn target(id: &str) -> String {
    format!("marketing_material:{}", number(id))
}

/// CreateMarketingMaterial as an admin; the whole response body.
async fn create_raw(app: &TestApp, input: Value) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "CreateMarketingMaterial",
        json!({ "input": input }),
    )
    .await
}

/// CreateMarketingMaterial that must succeed; `createMarketingMaterial`.
async fn create(app: &TestApp, input: Value) -> Value {
    let body = create_raw(app, input.clone()).await;
    let created = data_of(&body, &format!("CreateMarketingMaterial {input}"))["createMarketingMaterial"].clone();
    number(s(&created, "/id"));
    created
}

/// UpdateMarketingMaterial as an admin; the whole response body.
async fn update_raw(app: &TestApp, id: &str, input: Value) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "UpdateMarketingMaterial",
        json!({ "id": id, "input": input }),
    )
    .await
}

/// UpdateMarketingMaterial that must succeed; `updateMarketingMaterial`.
async fn update(app: &TestApp, id: &str, input: Value) -> Value {
    let body = update_raw(app, id, input.clone()).await;
    data_of(&body, &format!("UpdateMarketingMaterial {id} {input}"))["updateMarketingMaterial"].clone()
}

/// DeleteMarketingMaterial as an admin; the whole response body.
async fn delete_raw(app: &TestApp, id: &str) -> Value {
    app.run(
        Some(&app.admin()),
        "admin",
        "DeleteMarketingMaterial",
        json!({ "id": id }),
    )
    .await
}

/// DeleteMarketingMaterial that must succeed: it answers the id.
async fn delete(app: &TestApp, id: &str) {
    let body = delete_raw(app, id).await;
    let data = data_of(&body, &format!("DeleteMarketingMaterial {id}"));
    assert_eq!(data["deleteMarketingMaterial"], id, "{data:#}");
}

/// The admin's MarketingMaterials (the contract's operation).
async fn admin_list(app: &TestApp) -> Vec<Value> {
    let data = app
        .run_ok(Some(&app.admin()), "admin", "MarketingMaterials", json!({}))
        .await;
    data["marketingMaterials"]
        .as_array()
        .unwrap_or_else(|| panic!("marketingMaterials is not a list: {data:#}"))
        .clone()
}

/// The customer's `me`: referralCode, referralLink and affiliate { status marketingMaterials }.
async fn me(app: &TestApp, external_id: &str) -> Value {
    let body = app.gql(Some(&app.customer(external_id)), MY_MATERIALS, json!({})).await;
    data_of(&body, &format!("the materials of {external_id}"))["me"].clone()
}

/// `affiliate.marketingMaterials` of a `me` (null too when there is no affiliate record).
fn materials_of(me: &Value) -> Value {
    me["affiliate"]["marketingMaterials"].clone()
}

/// Registers an account; its id and referral code.
async fn register(app: &TestApp, external_id: &str) -> (String, String) {
    let registered = app.register(external_id, None, None).await;
    (
        s(&registered, "/account/id").to_owned(),
        s(&registered, "/account/referralCode").to_owned(),
    )
}

/// DecideAffiliate as an admin that must succeed; the status it answers.
async fn decide(app: &TestApp, account_id: &str, decision: &str) -> String {
    let data = app
        .run_ok(
            Some(&app.admin()),
            "admin",
            "DecideAffiliate",
            json!({ "input": { "accountId": account_id, "decision": decision, "reason": null } }),
        )
        .await;
    s(&data, "/decideAffiliate/affiliate/status").to_owned()
}

/// The customer applies (the contract's ApplyForAffiliate).
async fn apply(app: &TestApp, external_id: &str) {
    let data = app
        .run_ok(
            Some(&app.customer(external_id)),
            "customer",
            "ApplyForAffiliate",
            json!({}),
        )
        .await;
    assert_eq!(data["applyForAffiliate"]["status"], "APPLIED", "{data:#}");
}

/// Registers an account and approves it as an affiliate; its id and referral code.
async fn approved_affiliate(app: &TestApp, external_id: &str) -> (String, String) {
    let (id, code) = register(app, external_id).await;
    assert_eq!(decide(app, &id, "APPROVE").await, "APPROVED");
    (id, code)
}

/// The audit entries of one action, newest first.
async fn audited(app: &TestApp, action: &str) -> Vec<Value> {
    nodes(&app.audit_log(100, None).await)
        .into_iter()
        .filter(|entry| entry["action"] == action)
        .collect()
}

/// An audit entry's details (`before`, `after`) as JSON.
fn details(entry: &Value) -> Value {
    serde_json::from_str(s(entry, "/details")).expect("the details are JSON")
}

/// How many audit rows of one action there are (however many: the API's pages stop at 100).
async fn audit_rows(app: &TestApp, action: &str) -> i64 {
    app.sql_i64(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action = '{action}'"
    ))
    .await
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// A link template that would break out of an attribute and inject a script is accepted by the
/// settings; an approved affiliate's HTML banner gets that link HTML-escaped (every `{link}` of
/// a template replaced), its text snippet gets it as it is, and the link is the one `me`
/// shows. Each affiliate gets its own link; the contract's AffiliateMaterials reads the same;
/// the admins' templates stay as they were written.
#[tokio::test]
async fn html_materials_escape_a_hostile_referral_link_and_text_materials_keep_it_as_it_is() {
    let app = spawn_app().await;
    let settings = app
        .update_settings(json!({ "referralLinkTemplate": HOSTILE_LINK_TEMPLATE }))
        .await;
    assert_eq!(settings["referralLinkTemplate"], HOSTILE_LINK_TEMPLATE, "{settings:#}");

    let banner = create(&app, material("BANNER", "Spring banner", "HTML", BANNER)).await;
    let snippet = create(&app, material("SNIPPET", "Spring snippet", "TEXT", SNIPPET)).await;
    let twice_template = "<p>{link}</p>\n<p><a href='{link}'>Join</a></p>";
    let twice = create(&app, material("SNIPPET", "Link twice", "HTML", twice_template)).await;

    let (_, code) = approved_affiliate(&app, "acct-ann").await;
    let ann = me(&app, "acct-ann").await;
    let link = s(&ann, "/referralLink").to_owned();
    assert_eq!(link, HOSTILE_LINK_TEMPLATE.replace("{code}", &code), "{ann:#}");
    assert!(
        link.contains("<script>"),
        "the link is as hostile as its template: {link}"
    );
    let safe = escaped(&link);
    assert!(
        !safe.contains(['<', '>', '"', '\'']),
        "the escaped link has no markup characters left: {safe}"
    );
    assert_eq!(ann["affiliate"]["status"], "APPROVED", "{ann:#}");

    let materials = materials_of(&ann);
    assert_eq!(
        materials,
        json!([
            rendered(&banner, &BANNER.replace("{link}", &safe)),
            rendered(&snippet, &format!("Try it: {link}")),
            rendered(&twice, &twice_template.replace("{link}", &safe)),
        ]),
        "{ann:#}"
    );

    // The banner: the attribute holds the whole link, escaped; no markup got in.
    let html = s(&materials, "/0/content");
    assert!(html.contains(&format!(r#"<a href="{safe}">"#)), "{html}");
    assert!(!html.contains("<script"), "markup got into the banner: {html}");
    assert!(!html.contains("{link}"), "{html}");
    assert_eq!(html.matches('"').count(), BANNER.matches('"').count(), "{html}");
    assert_eq!(html.matches('<').count(), BANNER.matches('<').count(), "{html}");
    assert_eq!(html.matches('>').count(), BANNER.matches('>').count(), "{html}");
    // Every placeholder of a template is replaced.
    let both = s(&materials, "/2/content");
    assert_eq!(both.matches(&safe).count(), 2, "{both}");
    assert!(!both.contains("{link}") && !both.contains("<script"), "{both}");
    // The snippet: the link as it is, script and all (it is text).
    let text = s(&materials, "/1/content");
    assert_eq!(text, format!("Try it: {link}"));
    assert!(text.contains(&link), "{text}");
    assert!(text.contains("<script>alert('x')</script>&r="), "{text}");

    // The contract's document reads the same.
    let contract = app
        .run_ok(
            Some(&app.customer("acct-ann")),
            "customer",
            "AffiliateMaterials",
            json!({}),
        )
        .await;
    assert_eq!(contract["me"]["affiliate"]["status"], "APPROVED", "{contract:#}");
    assert_eq!(
        contract["me"]["affiliate"]["marketingMaterials"], materials,
        "{contract:#}"
    );

    // Another affiliate: its own link, escaped alike.
    let (_, other_code) = approved_affiliate(&app, "acct-bob").await;
    assert_ne!(other_code, code);
    let other = me(&app, "acct-bob").await;
    let other_link = s(&other, "/referralLink").to_owned();
    assert_eq!(other_link, HOSTILE_LINK_TEMPLATE.replace("{code}", &other_code));
    assert_eq!(
        materials_of(&other),
        json!([
            rendered(&banner, &BANNER.replace("{link}", &escaped(&other_link))),
            rendered(&snippet, &format!("Try it: {other_link}")),
            rendered(&twice, &twice_template.replace("{link}", &escaped(&other_link))),
        ]),
        "{other:#}"
    );

    // Admins read their templates as they wrote them.
    let templates: Vec<Value> = admin_list(&app).await.iter().map(written).collect();
    assert_eq!(templates, [written(&banner), written(&snippet), written(&twice)]);
    assert_eq!(banner["template"], BANNER);
    assert_eq!(snippet["template"], SNIPPET);
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Created materials are listed oldest first; an update changes only the fields it gives, and
/// the same values again (or none) change nothing and are not audited; a deleted material is
/// gone from the admins' list and the affiliate's at once. Unknown ids are NOT_FOUND, ids
/// that are not a material's are BAD_USER_INPUT. Every change has its audit row.
#[tokio::test]
async fn materials_are_created_listed_updated_and_deleted_and_each_change_is_audited() {
    let app = spawn_app().await;
    assert!(admin_list(&app).await.is_empty());
    approved_affiliate(&app, "acct-ann").await;
    // Approved, with nothing to show yet: an empty list, not null.
    assert_eq!(materials_of(&me(&app, "acct-ann").await), json!([]));

    let banner_input = material("BANNER", "Spring banner", "HTML", BANNER);
    let banner = create(&app, banner_input.clone()).await;
    let banner_id = s(&banner, "/id").to_owned();
    for field in ["kind", "name", "format", "template"] {
        assert_eq!(banner[field], banner_input[field], "{field}: {banner:#}");
    }
    assert_eq!(
        instant(&banner["createdAt"]),
        instant(&banner["updatedAt"]),
        "{banner:#}"
    );

    advance(&app, 1);
    let snippet = create(&app, material("SNIPPET", "Newsletter blurb", "TEXT", SNIPPET)).await;
    let snippet_id = s(&snippet, "/id").to_owned();
    assert_ne!(snippet_id, banner_id);
    assert!(
        instant(&snippet["createdAt"]) > instant(&banner["createdAt"]),
        "{snippet:#}"
    );

    // Listed oldest first, as they were answered.
    let list = admin_list(&app).await;
    assert_eq!(
        list.iter().map(written).collect::<Vec<_>>(),
        [written(&banner), written(&snippet)],
        "{list:#?}"
    );
    for (listed, created) in list.iter().zip([&banner, &snippet]) {
        assert_eq!(instant(&listed["createdAt"]), instant(&created["createdAt"]));
        assert_eq!(instant(&listed["updatedAt"]), instant(&created["updatedAt"]));
    }

    // The affiliate reads both, with its link.
    let ann = me(&app, "acct-ann").await;
    let link = s(&ann, "/referralLink").to_owned();
    assert_eq!(
        materials_of(&ann),
        json!([
            rendered(&banner, &BANNER.replace("{link}", &escaped(&link))),
            rendered(&snippet, &format!("Try it: {link}")),
        ]),
        "{ann:#}"
    );

    // The name only: the rest stays.
    advance(&app, 1);
    let renamed = update(&app, &banner_id, json!({ "name": "Summer banner" })).await;
    assert_eq!(
        written(&renamed),
        json!([banner_id, "BANNER", "Summer banner", "HTML", BANNER]),
        "{renamed:#}"
    );
    assert!(
        instant(&renamed["updatedAt"]) > instant(&banner["updatedAt"]),
        "{renamed:#}"
    );
    let list = admin_list(&app).await;
    assert_eq!(written(&list[0]), written(&renamed), "{list:#?}");
    assert_eq!(
        instant(&list[0]["createdAt"]),
        instant(&banner["createdAt"]),
        "{list:#?}"
    );
    assert_eq!(
        instant(&list[0]["updatedAt"]),
        instant(&renamed["updatedAt"]),
        "{list:#?}"
    );
    assert_eq!(written(&list[1]), written(&snippet), "{list:#?}");
    assert_eq!(materials_of(&me(&app, "acct-ann").await)[0]["name"], "Summer banner");

    let updates = audited(&app, "UPDATE_MARKETING_MATERIAL").await;
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert_eq!(updates[0]["actor"], "admin:admin-1", "{updates:#?}");
    assert_eq!(updates[0]["target"], target(&banner_id), "{updates:#?}");
    let change = details(&updates[0]);
    assert_eq!(change["before"]["name"], "Spring banner", "{change:#}");
    assert_eq!(change["after"]["name"], "Summer banner", "{change:#}");
    assert_eq!(change["before"]["template"], BANNER, "{change:#}");
    assert_eq!(change["after"]["template"], BANNER, "{change:#}");

    // The same values again, or none: nothing changes, nothing is written.
    advance(&app, 1);
    let audit_before = app.count("audit_log").await;
    for input in [
        json!({ "kind": "BANNER", "name": "Summer banner", "format": "HTML", "template": BANNER }),
        json!({ "name": "Summer banner" }),
        json!({}),
    ] {
        let same = update(&app, &banner_id, input.clone()).await;
        assert_eq!(written(&same), written(&renamed), "{input}: {same:#}");
        assert_eq!(
            instant(&same["updatedAt"]),
            instant(&renamed["updatedAt"]),
            "{input}: {same:#}"
        );
    }
    assert_eq!(
        app.count("audit_log").await,
        audit_before,
        "an unchanged material was audited"
    );
    assert_eq!(audited(&app, "UPDATE_MARKETING_MATERIAL").await.len(), 1);

    // The snippet's template: the affiliate reads the new one at once.
    let retemplated = update(
        &app,
        &snippet_id,
        json!({ "template": "Join me at {link} for 10% off" }),
    )
    .await;
    assert_eq!(
        written(&retemplated),
        json!([
            snippet_id,
            "SNIPPET",
            "Newsletter blurb",
            "TEXT",
            "Join me at {link} for 10% off"
        ]),
        "{retemplated:#}"
    );
    assert_eq!(
        materials_of(&me(&app, "acct-ann").await)[1]["content"],
        format!("Join me at {link} for 10% off")
    );
    assert_eq!(audited(&app, "UPDATE_MARKETING_MATERIAL").await.len(), 2);

    // An id that names nothing, and ids that are not a material's.
    let audit_before = app.count("audit_log").await;
    let unknown = unknown_id_like(&banner_id);
    assert_failed(
        &update_raw(&app, &unknown, json!({ "name": "Ghost" })).await,
        "NOT_FOUND",
    );
    assert_failed(&delete_raw(&app, &unknown).await, "NOT_FOUND");
    for malformed in ["mkt_", "mkt_abc", "mkt_0", "mkt_-3", "acc_1", "7", ""] {
        let body = update_raw(&app, malformed, json!({ "name": "Ghost" })).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "update {malformed:?}: {body:#}");
        let body = delete_raw(&app, malformed).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "delete {malformed:?}: {body:#}");
    }
    assert_eq!(app.count("marketing_materials").await, 2);
    assert_eq!(app.count("audit_log").await, audit_before);

    // Deleted: gone from both lists at once; deleting or updating it again is NOT_FOUND.
    delete(&app, &banner_id).await;
    let list = admin_list(&app).await;
    assert_eq!(
        list.iter().map(written).collect::<Vec<_>>(),
        [written(&retemplated)],
        "{list:#?}"
    );
    let ann = me(&app, "acct-ann").await;
    assert_eq!(
        materials_of(&ann),
        json!([rendered(&retemplated, &format!("Join me at {link} for 10% off"))]),
        "{ann:#}"
    );
    assert_failed(&delete_raw(&app, &banner_id).await, "NOT_FOUND");
    assert_failed(
        &update_raw(&app, &banner_id, json!({ "name": "Back" })).await,
        "NOT_FOUND",
    );
    assert_eq!(app.count("marketing_materials").await, 1);

    // One audit row for each change.
    let deletes = audited(&app, "DELETE_MARKETING_MATERIAL").await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert_eq!(deletes[0]["actor"], "admin:admin-1", "{deletes:#?}");
    assert_eq!(deletes[0]["target"], target(&banner_id), "{deletes:#?}");
    let change = details(&deletes[0]);
    assert_eq!(change["before"]["name"], "Summer banner", "{change:#}");
    assert_eq!(change["before"]["template"], BANNER, "{change:#}");
    assert!(change["after"].is_null(), "{change:#}");

    let creates = audited(&app, "CREATE_MARKETING_MATERIAL").await;
    assert_eq!(creates.len(), 2, "{creates:#?}");
    assert_eq!(
        creates.iter().map(|e| e["target"].clone()).collect::<Vec<_>>(),
        [json!(target(&snippet_id)), json!(target(&banner_id))],
        "newest first: {creates:#?}"
    );
    for (entry, (name, template)) in creates
        .iter()
        .zip([("Newsletter blurb", SNIPPET), ("Spring banner", BANNER)])
    {
        assert_eq!(entry["actor"], "admin:admin-1", "{entry:#}");
        let change = details(entry);
        assert!(change["before"].is_null(), "{change:#}");
        assert_eq!(change["after"]["name"], name, "{change:#}");
        assert_eq!(change["after"]["template"], template, "{change:#}");
    }
    let updates = audited(&app, "UPDATE_MARKETING_MATERIAL").await;
    assert_eq!(updates.len(), 2, "{updates:#?}");
    assert_eq!(updates[0]["target"], target(&snippet_id), "{updates:#?}");
    let change = details(&updates[0]);
    assert_eq!(change["before"]["template"], SNIPPET, "{change:#}");
    assert_eq!(
        change["after"]["template"], "Join me at {link} for 10% off",
        "{change:#}"
    );
}

/// A create needs all four fields; a name is 1 to 200 characters (not blank); a template is
/// at most 20,000 characters and holds `{link}`. What breaks these is BAD_USER_INPUT and
/// writes nothing, on a create and on an update alike; the bounds themselves are taken.
#[tokio::test]
async fn invalid_materials_are_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let audit_before = app.count("audit_log").await;
    let valid = material("SNIPPET", "Newsletter blurb", "TEXT", "Join me: {link}");

    let mut cases: Vec<(String, Value)> = Vec::new();
    for field in ["kind", "name", "format", "template"] {
        let mut without = valid.clone();
        without.as_object_mut().expect("an input object").remove(field);
        cases.push((format!("without {field}"), without));
        cases.push((format!("{field} null"), with(&valid, json!({ field: null }))));
    }
    cases.push(("an empty input".to_owned(), json!({})));
    let bad_fields = [
        (
            "a template without {link}",
            json!({ "template": "Join me: https://example.test" }),
        ),
        ("a template with {LINK}", json!({ "template": "Join me: {LINK}" })),
        ("a template with { link }", json!({ "template": "Join me: { link }" })),
        ("an empty template", json!({ "template": "" })),
        ("a blank template", json!({ "template": "   " })),
        ("an empty name", json!({ "name": "" })),
        ("a blank name", json!({ "name": "  \t " })),
        ("a 201-character name", json!({ "name": "n".repeat(201) })),
        (
            "a 20,001-character template",
            json!({ "template": format!("{}{{link}}", "x".repeat(20_001 - 6)) }),
        ),
    ];
    for (what, change) in &bad_fields {
        cases.push(((*what).to_owned(), with(&valid, change.clone())));
    }

    for (what, input) in &cases {
        let body = create_raw(&app, input.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{what}: {body:#}");
    }
    assert_eq!(app.count("marketing_materials").await, 0);
    assert_eq!(app.count("audit_log").await, audit_before);
    assert!(admin_list(&app).await.is_empty());

    // The bounds themselves: 200 characters of name (two bytes each), 20,000 of template.
    let longest_name = "é".repeat(200);
    let longest_template = format!("{}{{link}}", "x".repeat(20_000 - 6));
    assert_eq!(longest_template.chars().count(), 20_000);
    let created = create(&app, material("BANNER", &longest_name, "HTML", &longest_template)).await;
    assert_eq!(created["name"], longest_name.as_str());
    assert_eq!(created["template"], longest_template.as_str());
    let id = s(&created, "/id").to_owned();
    assert_eq!(app.count("marketing_materials").await, 1);
    let audit_after_create = app.count("audit_log").await;
    assert_eq!(audit_after_create, audit_before + 1);

    // An update is held to the same rules, and a refused one changes nothing.
    for (what, change) in &bad_fields {
        let body = update_raw(&app, &id, change.clone()).await;
        assert_failed(&body, "BAD_USER_INPUT");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "update with {what}: {body:#}");
    }
    let list = admin_list(&app).await;
    assert_eq!(
        list.iter().map(written).collect::<Vec<_>>(),
        [written(&created)],
        "{list:#?}"
    );
    assert_eq!(instant(&list[0]["updatedAt"]), instant(&created["updatedAt"]));
    assert_eq!(app.count("marketing_materials").await, 1);
    assert_eq!(app.count("audit_log").await, audit_after_create);
    assert_eq!(audited(&app, "CREATE_MARKETING_MATERIAL").await.len(), 1);
    assert!(audited(&app, "UPDATE_MARKETING_MATERIAL").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Who reads and who writes

/// Only an approved affiliate reads the materials (and staff, on its account): one that never
/// applied, only applied, was rejected or is suspended reads null (a suspended one approved
/// again reads them again). Customers, an approved affiliate included, and the billing
/// service cannot list or write them (FORBIDDEN); without a token nothing answers
/// (UNAUTHENTICATED). Nothing refused changes anything.
#[tokio::test]
async fn only_approved_affiliates_read_the_materials_and_only_admins_write_them() {
    let app = spawn_app().await;
    let banner = create(&app, material("BANNER", "Spring banner", "HTML", BANNER)).await;
    let banner_id = s(&banner, "/id").to_owned();

    // Never applied: no affiliate record at all.
    register(&app, "acct-never").await;
    let never = me(&app, "acct-never").await;
    assert!(never["affiliate"].is_null(), "{never:#}");
    assert!(materials_of(&never).is_null(), "{never:#}");

    // Only applied.
    let (applied_id, _) = register(&app, "acct-applied").await;
    apply(&app, "acct-applied").await;
    let applied = me(&app, "acct-applied").await;
    assert_eq!(applied["affiliate"]["status"], "APPLIED", "{applied:#}");
    assert!(materials_of(&applied).is_null(), "{applied:#}");

    // Rejected.
    let (rejected_id, _) = register(&app, "acct-rejected").await;
    apply(&app, "acct-rejected").await;
    assert_eq!(decide(&app, &rejected_id, "REJECT").await, "REJECTED");
    let rejected = me(&app, "acct-rejected").await;
    assert_eq!(rejected["affiliate"]["status"], "REJECTED", "{rejected:#}");
    assert!(materials_of(&rejected).is_null(), "{rejected:#}");

    // Approved.
    let (approved_id, _) = approved_affiliate(&app, "acct-approved").await;
    let approved = me(&app, "acct-approved").await;
    let link = s(&approved, "/referralLink").to_owned();
    let expected = json!([rendered(&banner, &BANNER.replace("{link}", &escaped(&link)))]);
    assert_eq!(materials_of(&approved), expected, "{approved:#}");

    // Suspended: null; approved again: the materials again.
    let (suspended_id, _) = approved_affiliate(&app, "acct-suspended").await;
    assert_eq!(
        materials_of(&me(&app, "acct-suspended").await).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(decide(&app, &suspended_id, "SUSPEND").await, "SUSPENDED");
    let suspended = me(&app, "acct-suspended").await;
    assert_eq!(suspended["affiliate"]["status"], "SUSPENDED", "{suspended:#}");
    assert!(materials_of(&suspended).is_null(), "{suspended:#}");

    // Staff read an account's materials as the account does.
    for (id, shown) in [
        (&approved_id, expected.clone()),
        (&applied_id, Value::Null),
        (&rejected_id, Value::Null),
        (&suspended_id, Value::Null),
    ] {
        let body = app
            .gql(Some(&app.admin()), ACCOUNT_MATERIALS, json!({ "id": id }))
            .await;
        let account = data_of(&body, &format!("account({id}).affiliate.marketingMaterials"))["account"].clone();
        assert_eq!(account["affiliate"]["marketingMaterials"], shown, "{id}: {account:#}");
    }

    assert_eq!(decide(&app, &suspended_id, "APPROVE").await, "APPROVED");
    let back = me(&app, "acct-suspended").await;
    let back_link = s(&back, "/referralLink").to_owned();
    assert_eq!(
        materials_of(&back),
        json!([rendered(&banner, &BANNER.replace("{link}", &escaped(&back_link)))]),
        "{back:#}"
    );

    // The admins' operations: refused to everyone else, and nothing changes.
    let audit_before = app.count("audit_log").await;
    let cases = [
        ("MarketingMaterials", json!({})),
        (
            "CreateMarketingMaterial",
            json!({ "input": material("SNIPPET", "Evil", "TEXT", "Go to {link}") }),
        ),
        (
            "UpdateMarketingMaterial",
            json!({ "id": banner_id, "input": { "name": "Hijacked", "template": "<script>{link}</script>" } }),
        ),
        ("DeleteMarketingMaterial", json!({ "id": banner_id })),
    ];
    let refused = [
        ("an approved affiliate", app.customer("acct-approved")),
        ("a customer", app.customer("acct-never")),
        ("the billing service", app.service()),
    ];
    for (op, vars) in &cases {
        for (who, token) in &refused {
            let body = app.run(Some(token.as_str()), "admin", op, vars.clone()).await;
            assert_failed(&body, "FORBIDDEN");
            assert!(
                !body.to_string().contains("cdn.test"),
                "{who} reads a template through {op}: {body:#}"
            );
        }
        let body = app.run(None, "admin", op, vars.clone()).await;
        assert_failed(&body, "UNAUTHENTICATED");
    }

    // An affiliate's own reading needs a token too.
    let body = app.gql(None, MY_MATERIALS, json!({})).await;
    assert_error_code(&body, "UNAUTHENTICATED");
    assert!(body.pointer("/data/me").is_none_or(Value::is_null), "{body:#}");
    let body = app.run(None, "customer", "AffiliateMaterials", json!({})).await;
    assert_error_code(&body, "UNAUTHENTICATED");
    assert!(body.pointer("/data/me").is_none_or(Value::is_null), "{body:#}");
    assert!(!body.to_string().contains("cdn.test"), "{body:#}");

    let list = admin_list(&app).await;
    assert_eq!(
        list.iter().map(written).collect::<Vec<_>>(),
        [written(&banner)],
        "{list:#?}"
    );
    assert_eq!(instant(&list[0]["updatedAt"]), instant(&banner["updatedAt"]));
    assert_eq!(app.count("marketing_materials").await, 1);
    assert_eq!(app.count("audit_log").await, audit_before);
}

// ---------------------------------------------------------------------------------------------
// The limit

/// A program keeps at most 100 materials: the 101st is BAD_USER_INPUT and writes nothing;
/// deleting one makes room for one. Several admins racing for the last place: exactly one
/// gets it.
#[tokio::test]
async fn a_program_keeps_at_most_a_hundred_materials_and_one_racer_gets_the_last_place() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 1..=100 {
        let created = create(
            &app,
            material(
                "SNIPPET",
                &format!("Snippet {i}"),
                "TEXT",
                &format!("Snippet {i}: {{link}}"),
            ),
        )
        .await;
        ids.push(s(&created, "/id").to_owned());
    }
    assert_eq!(app.count("marketing_materials").await, 100);

    let one_too_many = material("BANNER", "One too many", "HTML", BANNER);
    let body = create_raw(&app, one_too_many.clone()).await;
    assert_failed(&body, "BAD_USER_INPUT");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body:#}");
    assert_eq!(app.count("marketing_materials").await, 100);
    assert_eq!(audit_rows(&app, "CREATE_MARKETING_MATERIAL").await, 100);

    // All of them listed, oldest first, and read by an affiliate in the same order.
    let names: Vec<String> = (1..=100).map(|i| format!("Snippet {i}")).collect();
    let list = admin_list(&app).await;
    assert_eq!(list.iter().map(|m| s(m, "/name").to_owned()).collect::<Vec<_>>(), names);
    approved_affiliate(&app, "acct-ann").await;
    let ann = me(&app, "acct-ann").await;
    let link = s(&ann, "/referralLink").to_owned();
    let materials = materials_of(&ann);
    let materials = materials.as_array().expect("a list of materials");
    assert_eq!(materials.len(), 100);
    assert_eq!(
        materials.iter().map(|m| s(m, "/id").to_owned()).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(materials[99]["content"], format!("Snippet 100: {link}"));

    // Deleting one makes room for one.
    delete(&app, &ids[49]).await;
    assert_eq!(app.count("marketing_materials").await, 99);
    let replacement = create(&app, one_too_many.clone()).await;
    assert_eq!(app.count("marketing_materials").await, 100);
    assert_failed(
        &create_raw(&app, material("BANNER", "Still too many", "HTML", BANNER)).await,
        "BAD_USER_INPUT",
    );
    assert_eq!(app.count("marketing_materials").await, 100);
    let list = admin_list(&app).await;
    assert_eq!(list.len(), 100);
    assert_eq!(written(&list[99]), written(&replacement), "{list:#?}");
    assert!(!list.iter().any(|m| m["name"] == "Snippet 50"), "{list:#?}");
    assert_eq!(audit_rows(&app, "CREATE_MARKETING_MATERIAL").await, 101);
    assert_eq!(audit_rows(&app, "DELETE_MARKETING_MATERIAL").await, 1);

    // At 99, eight admins create at once: one gets the last place, the others are refused.
    delete(&app, &ids[0]).await;
    assert_eq!(app.count("marketing_materials").await, 99);
    let racers: Vec<Value> = (1..=8)
        .map(|i| json!({ "input": material("BANNER", &format!("Racer {i}"), "HTML", BANNER) }))
        .collect();
    let bodies = send_concurrently(&app, &app.admin(), &app.op("admin", "CreateMarketingMaterial"), racers).await;
    let (won, lost): (Vec<&Value>, Vec<&Value>) = bodies.iter().partition(|body| {
        body.pointer("/data/createMarketingMaterial/id")
            .is_some_and(Value::is_string)
    });
    assert_eq!(won.len(), 1, "exactly one racer gets the last place: {bodies:#?}");
    for body in &lost {
        assert_failed(body, "BAD_USER_INPUT");
        assert_eq!(error_codes(body), ["BAD_USER_INPUT"], "{body:#}");
    }
    assert_eq!(app.count("marketing_materials").await, 100);
    assert_eq!(audit_rows(&app, "CREATE_MARKETING_MATERIAL").await, 102);
    assert_eq!(audit_rows(&app, "DELETE_MARKETING_MATERIAL").await, 2);
    let winner = won[0]["data"]["createMarketingMaterial"].clone();
    let list = admin_list(&app).await;
    assert_eq!(list.len(), 100);
    assert_eq!(written(&list[99]), written(&winner), "{list:#?}");
}
