//! The checked-in `schema.graphql` is the schema the code builds: a change to the API that is
//! not exported and committed fails here.

fn normalize(sdl: &str) -> String {
    let lines: Vec<&str> = sdl.lines().map(str::trim_end).collect();
    lines.join("\n").trim().to_owned()
}

#[test]
fn the_checked_in_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let checked_in = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}; export the schema and commit it"));
    let built = referral_server::graphql::schema_sdl();
    let (checked_in, built) = (normalize(&checked_in), normalize(&built));
    if checked_in != built {
        let first_difference = checked_in
            .lines()
            .zip(built.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: checked in {a:?}, built {b:?}", i + 1))
            .unwrap_or_else(|| "one is a prefix of the other".to_owned());
        panic!("schema.graphql is out of date ({first_difference}); export the schema again and commit it");
    }
}

#[test]
fn the_schema_has_the_types_the_contract_uses() {
    let sdl = referral_server::graphql::schema_sdl();
    for needle in [
        "input RegisterAccountInput",
        "input PurchaseInput",
        "input ClaimRewardInput",
        "input CompleteClaimInput",
        "input UpsertProviderInput",
        "input UpsertProductInput",
        "input SetProductRateInput",
        "input SetRedemptionRateInput",
        "input ProgramSettingsInput",
        "scalar Decimal",
        "type RecordEventPayload",
        "type LedgerEntry",
    ] {
        assert!(sdl.contains(needle), "the schema has no {needle:?}");
    }
}

/// GraphiQL, code generators and schemathesis read the schema with graphql-js's standard
/// introspection query (tests/api/introspection.graphql, from `getIntrospectionQuery`); the
/// depth and complexity limits must let it through.
#[tokio::test]
async fn the_standard_introspection_query_is_answered() {
    let app = crate::helpers::spawn_app().await;
    let query = include_str!("introspection.graphql");
    let body = app.gql(None, query, serde_json::json!({})).await;
    let schema = crate::helpers::data_of(&body, "IntrospectionQuery");
    let types = schema["__schema"]["types"].as_array().map(Vec::len).unwrap_or(0);
    assert!(types > 50, "the introspection answer lists {types} types: {body}");
    assert_eq!(schema["__schema"]["queryType"]["name"], "QueryRoot", "{body}");
}
