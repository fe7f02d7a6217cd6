-- The statements referral-server runs on PostgreSQL for one RecordPurchase (captured from
-- PostgreSQL's log with log_statement = 'all'; `bench` saves them again in
-- bench/out/*/statements-RecordPurchase.log): the facts read in one statement, then the call
-- of referral_record_purchase (migration/src/sql/record_purchase.sql) with the plan the server
-- decides. The scenario's distribution: a fresh eventId, a random account u:amin..u:amax, a
-- random product of the six, 1-50 GB.
--
-- This is the path of a purchase by an account that made its first purchase before, nearly
-- every purchase of the benchmark (the dataset's referred accounts have mostly bought already,
-- and the others stop being first after one purchase): no first plan, the later plan's one
-- decision (the seeded rule, skipped). The server also decides the rules in Rust between the
-- two; pgbench does not, so this is PostgreSQL's part of the server's work alone.
-- Colons in string literals are written \x3a: pgbench would take `:null` for a variable.
-- Run with -M prepared, as sqlx prepares every statement.
\set aid random(:amin, :amax)
\set key random(1, 1000000000000)
\set product random(1, 6)
\set gb random(1, 50)
SELECT a.id AS account_id, a.external_id AS account_external_id, a.display_name AS account_display_name, a.email AS account_email, a.account_group AS account_account_group, a.referral_code AS account_referral_code, a.status AS account_status, a.first_purchase_at AS account_first_purchase_at, a.created_at AS account_created_at, a.billing_scheme AS account_billing_scheme, a.top_up_total AS account_top_up_total, a.payment_method_verified_at AS account_payment_method_verified_at, a.disqualified_at AS account_disqualified_at, a.disqualification_reason AS account_disqualification_reason, a.first_purchase_event_id AS account_first_purchase_event_id, a.closed_at AS account_closed_at, r.id AS referral_id, r.referee_id AS referral_referee_id, r.referrer_id AS referral_referrer_id, r.status AS referral_status, r.rejection_reason AS referral_rejection_reason, r.code_used AS referral_code_used, r.source AS referral_source, r.created_at AS referral_created_at, r.qualified_at AS referral_qualified_at, rr.id AS referrer_id, rr.external_id AS referrer_external_id, rr.display_name AS referrer_display_name, rr.email AS referrer_email, rr.account_group AS referrer_account_group, rr.referral_code AS referrer_referral_code, rr.status AS referrer_status, rr.first_purchase_at AS referrer_first_purchase_at, rr.created_at AS referrer_created_at, rr.billing_scheme AS referrer_billing_scheme, rr.top_up_total AS referrer_top_up_total, rr.payment_method_verified_at AS referrer_payment_method_verified_at, rr.disqualified_at AS referrer_disqualified_at, rr.disqualification_reason AS referrer_disqualification_reason, rr.first_purchase_event_id AS referrer_first_purchase_event_id, rr.closed_at AS referrer_closed_at, p.id AS product_id, p.key AS product_key, p.provider_id AS product_provider_id, p.name AS product_name, p.category AS product_category, p.product_rate AS product_product_rate, p.created_at AS product_created_at, p.updated_at AS product_updated_at,
 s.enabled AS program_enabled,
 EXISTS (SELECT 1 FROM events e WHERE e.event_id = 'srv-' || :client_id::bigint || '-' || :key::bigint) AS stored,
 (SELECT COALESCE(json_agg(json_build_object('id', r.id, 'name', r.name, 'trigger', r.trigger, 'beneficiary', r.beneficiary, 'unit', r.unit, 'spec', r.spec) ORDER BY r.id), '[]') FROM reward_rules r WHERE r.enabled)::text AS rules
FROM program_settings s
 LEFT JOIN accounts a ON a.external_id = 'u' || :aid::bigint
 LEFT JOIN referrals r ON r.referee_id = a.id AND r.status <> 'REJECTED'
 LEFT JOIN accounts rr ON rr.id = r.referrer_id
 LEFT JOIN products p ON p.key = (ARRAY['acme-res', 'globex-res', 'initech-res', 'acme-dc', 'globex-dc', 'initech-dc'])[:product::int]
WHERE s.id = 1 \gset f_
SELECT * FROM referral_record_purchase(
    'srv-' || :client_id::bigint || '-' || :key::bigint, :f_account_id::bigint,
    '5d3c1e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8d',
    E'{"detail"\x3a{"amount"\x3anull,"productKey"\x3a"' || (ARRAY['acme-res', 'globex-res', 'initech-res', 'acme-dc', 'globex-dc', 'initech-dc'])[:product::int]
        || E'","quantityGb"\x3a' || :gb::bigint * 1000000 || E'},"externalId"\x3a"u' || :aid::bigint || E'","kind"\x3a"PURCHASE","occurredAt"\x3anull}',
    now(), false, NULL, now(), NULL,
    E'{"decisions"\x3a [{"rule_id"\x3a 1, "rule_name"\x3a "Points for a friend''s first residential purchase", "outcome"\x3a "SKIPPED", "reason"\x3a "only the first purchase counts, and this account made its first purchase before"}], "credits"\x3a []}');
