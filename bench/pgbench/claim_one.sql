-- The reference for ClaimReward: one SQL statement that does everything a claim writes, as
-- fast as PostgreSQL can take it, for a random account u:amin..u:amax, a random provider and a
-- fresh idempotency key. The harness runs it beside the scenario (uniform, and on u1 only for
-- the hot one) with -M prepared and as many clients as the scenario's wrk connections; the
-- server's claim rate is reported as a share of this one's.
--
-- In order: the program's settings (switched on, gb_per_claim), the account by external id,
-- the provider and its redemption rate; the key looked up for a replay (then nothing is
-- written); the points balance debited only if it covers the cost and nothing of it is due
-- (a hold that ended or a lot that expired must be settled first, which is the server's
-- general path: nothing is written then, as when the balance does not cover it); the claim;
-- the CLAIM ledger entry; the lots consumed soonest-expiry first, then oldest, each with its
-- lot_allocations row.
--
-- Concurrent claims of one account: the debit locks the balance row first, and the lots are
-- read only after it (their account id comes from the debit, an InitPlan evaluated before the
-- scan), FOR UPDATE, which in READ COMMITTED answers each lot as the last claim left it, not as
-- this statement's snapshot saw it. A claim that slips in with the same key fails on the unique
-- index and the whole statement rolls back. A lot credited after this statement's snapshot is
-- not seen; if the lots it sees cannot cover the cost, the last SELECT fails the statement
-- (a cast of its message to integer), so a short allocation is never committed.
\set aid random(:amin, :amax)
\set provider random(1, 3)
\set key random(1, 1000000000000)
WITH settings AS (
    SELECT s.gb_per_claim FROM program_settings s WHERE s.id = 1 AND s.enabled
), account AS (
    SELECT a.id FROM accounts a WHERE a.external_id = 'u' || :aid
), offer AS (
    SELECT p.id, p.name, s.gb_per_claim AS gb, p.redemption_rate * s.gb_per_claim AS cost
    FROM providers p, settings s
    WHERE p.id = :provider AND p.redemption_rate IS NOT NULL
), replay AS (
    SELECT c.id FROM claims c, account a
    WHERE c.account_id = a.id AND c.idempotency_key = 'one-' || :client_id || '-' || :key
), debited AS (
    UPDATE balances b SET available = b.available - o.cost
    FROM account a, offer o
    WHERE b.account_id = a.id AND b.unit = 'POINTS' AND b.available >= o.cost
      AND (b.next_due_at IS NULL OR b.next_due_at > now())
      AND NOT EXISTS (SELECT 1 FROM replay)
    RETURNING b.account_id, b.available, b.pending, b.lifetime_earned
), claim AS (
    INSERT INTO claims (account_id, provider_id, gb, points, status, idempotency_key, request_hash, created_at)
    SELECT d.account_id, o.id, o.gb, o.cost, 'PENDING', 'one-' || :client_id || '-' || :key,
           '4f6c1d2e3a5b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d', now()
    FROM debited d, offer o
    RETURNING id, account_id, points
), debit AS (
    INSERT INTO ledger_entries (account_id, unit, amount, kind, status, description, claim_id, created_at)
    SELECT c.account_id, 'POINTS', -c.points, 'CLAIM', 'POSTED',
           'Reward claim: ' || o.gb || ' GB of ' || o.name || ' data', c.id, now()
    FROM claim c, offer o
    RETURNING id, account_id, -amount AS cost
), open_lots AS MATERIALIZED (
    -- The literal predicate is ix_ledger_open_lots's, which serves this in the ledger's order.
    SELECT l.id, l.remaining, l.expires_at
    FROM ledger_entries l
    WHERE l.account_id = (SELECT account_id FROM debit) AND l.unit = 'POINTS'
      AND l.status = 'POSTED' AND l.remaining > 0
      AND (l.expires_at IS NULL OR l.expires_at > now())
    ORDER BY l.expires_at IS NULL, l.expires_at, l.id
    FOR UPDATE
), lots AS (
    SELECT id, remaining,
           SUM(remaining) OVER (ORDER BY expires_at IS NULL, expires_at, id ROWS UNBOUNDED PRECEDING)
               - remaining AS before
    FROM open_lots
), takes AS (
    SELECT l.id AS lot_id, d.id AS debit_id, LEAST(l.remaining, d.cost - l.before) AS amount
    FROM lots l, debit d
    WHERE l.before < d.cost
), taken AS (
    UPDATE ledger_entries l SET remaining = l.remaining - t.amount
    FROM takes t WHERE l.id = t.lot_id
    RETURNING l.id
), allocated AS (
    INSERT INTO lot_allocations (debit_entry_id, lot_entry_id, amount)
    SELECT debit_id, lot_id, amount FROM takes
    RETURNING amount
)
SELECT c.id AS claim_id, c.points, d.available, d.pending, d.lifetime_earned,
       CASE WHEN t.amount = c.points THEN 'CLAIMED'
            ELSE CAST('claim ' || c.id || ': its lots cover ' || t.amount || ' of ' || c.points AS integer)::text
       END AS outcome
FROM claim c, debited d, (SELECT COALESCE(SUM(amount), 0) AS amount FROM takes) t;
