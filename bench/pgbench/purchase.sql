-- The statements referral-server issues for one RecordPurchase (captured from PostgreSQL's log
-- with log_statement = 'all'; `bench` saves them again in
-- bench/out/*/statements-RecordPurchase.log), in the same transaction and on the same branches:
-- a fresh eventId, a random account u:amin..u:amax, a random product of the six.
-- This is the path of a purchase that pays nothing (not the first purchase of a referred
-- account), which is nearly every purchase of the benchmark at 10^3 accounts: the dataset's
-- referred accounts have mostly bought already, and the others stop being first after one
-- purchase. At 10^6 accounts roughly one purchase in six pays, and the server then also runs
-- INSERT ledger_entries ... ON CONFLICT DO NOTHING, UPDATE balances and UPDATE referrals in the
-- transaction and one SELECT accounts after COMMIT: this script then runs slightly less work
-- than the server, which makes the server/pgbench ratio conservative. A root account (no
-- referrer) skips the referrer's SELECT in the server; the script always runs it.
-- Colons in string literals are written \x3a: pgbench would take `:null` for a variable.
-- Run with -M prepared, as sqlx prepares every statement.
\set aid random(:amin, :amax)
\set key random(1, 1000000000000)
\set product random(1, 6)
\set gb random(1, 50)
\set ref_id 0
\set ref_referrer_id 0
SELECT "events"."id", "events"."event_id", "events"."kind", "events"."account_id", "events"."request_hash", "events"."payload", "events"."decisions", "events"."occurred_at", "events"."created_at", "events"."amount", "events"."refund_of" FROM "events" WHERE "events"."event_id" = 'pgb-' || :client_id::text || '-' || :key::text LIMIT 1;
BEGIN;
SELECT "accounts"."id", "accounts"."external_id", "accounts"."display_name", "accounts"."email", "accounts"."account_group", "accounts"."referral_code", "accounts"."status", "accounts"."first_purchase_at", "accounts"."created_at", "accounts"."billing_scheme", "accounts"."top_up_total", "accounts"."payment_method_verified_at", "accounts"."disqualified_at", "accounts"."disqualification_reason", "accounts"."first_purchase_event_id", "accounts"."closed_at" FROM "accounts" WHERE "accounts"."external_id" = 'u' || :aid::text LIMIT 1 \gset acc_
INSERT INTO "events" ("event_id", "kind", "account_id", "request_hash", "payload", "decisions", "occurred_at", "created_at", "amount", "refund_of") VALUES ('pgb-' || :client_id::text || '-' || :key::text, 'PURCHASE', :acc_id, '4f6c1d2e3a5b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d', E'{"detail"\x3a{"amount"\x3anull,"productKey"\x3a"acme-res","quantityGb"\x3a10000000},"externalId"\x3a"u1","kind"\x3a"PURCHASE","occurredAt"\x3anull}', '[]', now(), now(), NULL, NULL) ON CONFLICT ("event_id") DO NOTHING RETURNING "id", "event_id", "kind", "account_id", "request_hash", "payload", "decisions", "occurred_at", "created_at", "amount", "refund_of" \gset evt_
SELECT "reward_rules"."id", "reward_rules"."name", "reward_rules"."enabled", "reward_rules"."trigger", "reward_rules"."beneficiary", "reward_rules"."unit", "reward_rules"."created_at", "reward_rules"."updated_at", "reward_rules"."spec" FROM "reward_rules" WHERE "reward_rules"."enabled" = true ORDER BY "reward_rules"."id" ASC;
SELECT "products"."id", "products"."key", "products"."provider_id", "products"."name", "products"."category", "products"."product_rate", "products"."created_at", "products"."updated_at" FROM "products" WHERE "products"."key" = (ARRAY['acme-res', 'globex-res', 'initech-res', 'acme-dc', 'globex-dc', 'initech-dc'])[:product] LIMIT 1;
UPDATE "accounts" SET "first_purchase_at" = now(), "first_purchase_event_id" = :evt_id WHERE "accounts"."id" = :acc_id AND "accounts"."first_purchase_at" IS NULL;
SELECT "referrals"."id", "referrals"."referee_id", "referrals"."referrer_id", "referrals"."status", "referrals"."rejection_reason", "referrals"."code_used", "referrals"."source", "referrals"."created_at", "referrals"."qualified_at" FROM "referrals" WHERE "referrals"."referee_id" = :acc_id AND "referrals"."status" <> 'REJECTED' LIMIT 1 \aset ref_
SELECT "accounts"."id", "accounts"."external_id", "accounts"."display_name", "accounts"."email", "accounts"."account_group", "accounts"."referral_code", "accounts"."status", "accounts"."first_purchase_at", "accounts"."created_at", "accounts"."billing_scheme", "accounts"."top_up_total", "accounts"."payment_method_verified_at", "accounts"."disqualified_at", "accounts"."disqualification_reason", "accounts"."first_purchase_event_id", "accounts"."closed_at" FROM "accounts" WHERE "accounts"."id" IN (:ref_referrer_id);
SELECT "program_settings"."id", "program_settings"."enabled", "program_settings"."currency", "program_settings"."referral_link_template", "program_settings"."landing_url", "program_settings"."cookie_days", "program_settings"."gb_per_claim", "program_settings"."minimum_withdrawal", "program_settings"."require_verified_payment_for_link", "program_settings"."max_pending_claims", "program_settings"."max_claims_per_day", "program_settings"."updated_at", "program_settings"."clock_offset_ms", "program_settings"."reorder_window_hours" FROM "program_settings" WHERE "program_settings"."id" = 1 LIMIT 1;
UPDATE "events" SET "decisions" = '[{"rule_id":1,"rule_name":"Points for a friend''s first residential purchase","outcome":"SKIPPED","reason":"only the first purchase counts, and this account made its first purchase before"}]', "amount" = NULL, "refund_of" = NULL WHERE "events"."id" = :evt_id RETURNING "id", "event_id", "kind", "account_id", "request_hash", "payload", "decisions", "occurred_at", "created_at", "amount", "refund_of";
COMMIT;
SELECT "reward_rules"."id", "reward_rules"."name", "reward_rules"."enabled", "reward_rules"."trigger", "reward_rules"."beneficiary", "reward_rules"."unit", "reward_rules"."created_at", "reward_rules"."updated_at", "reward_rules"."spec" FROM "reward_rules" WHERE "reward_rules"."id" IN (1);
