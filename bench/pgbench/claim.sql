-- The statements referral-server issues for one ClaimReward (captured from PostgreSQL's log with
-- log_statement = 'all'; `bench` saves them again in bench/out/*/statements-ClaimReward.log),
-- in the same transaction, for a random account u:amin..u:amax, a random provider and a fresh
-- idempotency key. Run with -M prepared, as sqlx prepares every statement.
-- The server consumes lots oldest first; this script takes from the newest lot the same SELECT
-- returns (pgbench keeps the last row), which costs the same statements; when that lot does not
-- cover the cost its UPDATE changes nothing, so after pgbench the lots of some accounts are out
-- of step with their balances and `referral-server check` fails on that database (the harness
-- runs its checks before pgbench; `--reuse` notes it).
\set aid random(:amin, :amax)
\set provider random(1, 3)
\set key random(1, 1000000000000)
BEGIN;
SELECT "program_settings"."id", "program_settings"."enabled", "program_settings"."currency", "program_settings"."referral_link_template", "program_settings"."landing_url", "program_settings"."cookie_days", "program_settings"."gb_per_claim", "program_settings"."minimum_withdrawal", "program_settings"."require_verified_payment_for_link", "program_settings"."updated_at" FROM "program_settings" WHERE "program_settings"."id" = 1 LIMIT 1;
SELECT "accounts"."id", "accounts"."external_id", "accounts"."display_name", "accounts"."email", "accounts"."account_group", "accounts"."referral_code", "accounts"."status", "accounts"."first_purchase_at", "accounts"."created_at", "accounts"."billing_scheme", "accounts"."top_up_total", "accounts"."payment_method_verified_at" FROM "accounts" WHERE "accounts"."external_id" = 'u' || :aid::text LIMIT 1 \gset acc_
SELECT "providers"."id", "providers"."key", "providers"."name", "providers"."redemption_rate", "providers"."created_at", "providers"."updated_at" FROM "providers" WHERE "providers"."id" = :provider LIMIT 1 \gset prv_
INSERT INTO "claims" ("account_id", "provider_id", "gb", "points", "status", "idempotency_key", "request_hash", "created_at", "decided_at") VALUES (:acc_id, :provider, 1, :prv_redemption_rate, 'PENDING', 'pgb-' || :client_id::text || '-' || :key::text, '4f6c1d2e3a5b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d', now(), NULL) ON CONFLICT ("account_id", "idempotency_key") DO NOTHING RETURNING "id", "account_id", "provider_id", "gb", "points", "status", "idempotency_key", "request_hash", "created_at", "decided_at" \gset clm_
UPDATE "balances" SET "available" = "available" - :prv_redemption_rate WHERE "balances"."account_id" = :acc_id AND "balances"."unit" = 'POINTS' AND "balances"."available" >= :prv_redemption_rate;
\set debit -1 * :prv_redemption_rate
INSERT INTO "ledger_entries" ("account_id", "unit", "amount", "remaining", "kind", "status", "description", "event_id", "referral_id", "rule_id", "occurrence", "claim_id", "available_at", "expires_at", "created_at", "rule_snapshot") VALUES (:acc_id, 'POINTS', :debit, NULL, 'CLAIM', 'POSTED', 'Reward claim: 1 GB of Acme Proxies data', NULL, NULL, NULL, NULL, :clm_id, NULL, NULL, now(), NULL) RETURNING "id", "account_id", "unit", "amount", "remaining", "kind", "status", "description", "event_id", "referral_id", "rule_id", "occurrence", "claim_id", "available_at", "expires_at", "created_at", "rule_snapshot" \gset led_
SELECT "ledger_entries"."id", "ledger_entries"."account_id", "ledger_entries"."unit", "ledger_entries"."amount", "ledger_entries"."remaining", "ledger_entries"."kind", "ledger_entries"."status", "ledger_entries"."description", "ledger_entries"."event_id", "ledger_entries"."referral_id", "ledger_entries"."rule_id", "ledger_entries"."occurrence", "ledger_entries"."claim_id", "ledger_entries"."available_at", "ledger_entries"."expires_at", "ledger_entries"."created_at", "ledger_entries"."rule_snapshot" FROM "ledger_entries" WHERE "ledger_entries"."account_id" = :acc_id AND "ledger_entries"."unit" = 'POINTS' AND "ledger_entries"."status" = 'POSTED' AND "ledger_entries"."remaining" > 0 ORDER BY "expires_at" IS NULL ASC, "ledger_entries"."expires_at" ASC, "ledger_entries"."id" ASC LIMIT 100 \aset lot_
UPDATE "ledger_entries" SET "remaining" = "remaining" + :debit WHERE "ledger_entries"."id" = :lot_id AND "ledger_entries"."remaining" >= :prv_redemption_rate;
INSERT INTO "lot_allocations" ("debit_entry_id", "lot_entry_id", "amount") VALUES (:led_id, :lot_id, :prv_redemption_rate) RETURNING "id", "debit_entry_id", "lot_entry_id", "amount";
SELECT "balances"."account_id", "balances"."unit", "balances"."available", "balances"."pending", "balances"."lifetime_earned" FROM "balances" WHERE "balances"."account_id" = :acc_id AND "balances"."unit" = 'POINTS' LIMIT 1;
COMMIT;
SELECT "providers"."id", "providers"."key", "providers"."name", "providers"."redemption_rate", "providers"."created_at", "providers"."updated_at" FROM "providers" WHERE "providers"."id" IN (:provider);
