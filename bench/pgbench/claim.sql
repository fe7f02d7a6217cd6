-- The statement referral-server issues for one ClaimReward on PostgreSQL (captured from
-- PostgreSQL's log with log_statement = 'all'; `bench` saves it again in
-- bench/out/*/statements-ClaimReward.log): the function referral_claim_reward
-- (migration/src/sql/claim_reward.sql), which reads, checks and writes the whole claim in the
-- statement's own transaction. For a random account u:amin..u:amax, a random provider and a
-- fresh idempotency key, and a fixed request hash (the function only stores it). Run with
-- -M prepared, as sqlx prepares every statement. The function consumes lots as the server does,
-- so `referral-server check` passes after it.
\set aid random(:amin, :amax)
\set provider random(1, 3)
\set key random(1, 1000000000000)
SELECT * FROM referral_claim_reward('u' || :aid, :provider, 'pgb-' || :client_id || '-' || :key, '4f6c1d2e3a5b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d', now());
