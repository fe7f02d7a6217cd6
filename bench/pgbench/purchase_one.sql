-- The reference for RecordPurchase: one SQL statement that does what the server does for a
-- purchase the billing system reports (src/service/events/purchase.rs, with no occurredAt: it
-- happened when it arrived), as fast as PostgreSQL can take it. The scenario's distribution:
-- a fresh eventId, a random account u:amin..u:amax, a random product of the six, 1-50 GB. The
-- harness runs it with -M prepared and as many clients as the scenario's wrk connections; the
-- server's purchase rate is reported as a share of this one's.
--
-- Every purchase makes the same checks, paying or not: the eventId looked up for a replay
-- (then nothing is written), the account by external id, the product by key; the account's
-- first purchase taken by a conditional update (of concurrent purchases exactly one is first);
-- the account's accepted referral and its referrer; the program's settings and its enabled
-- rules, each decided in the server's order (a closed account, program off, trigger, no
-- referrer, a disqualified side, not the first purchase, the rule's product categories, no
-- product rate). On a referred account's first purchase of a counted category the rule
-- pays the referrer product rate x GB: the REWARD lot (once per referral and rule: the unique
-- index decides, as in the server), the referrer's balance raised, the referral qualified.
-- The event is written last, with its decisions: its id is taken from its sequence first, so
-- that the account can name it as its first purchase (foreign keys are checked at the end of
-- the statement).
--
-- First-purchase rules are decided in the shape the points-store preset sets up: REFERRER,
-- productRate, productCategories, paid at once, never expiring; rules of other triggers are
-- skipped as the server skips them. The statement fails (a cast of its message to integer)
-- rather than decide a first-purchase rule of another shape, or pay a reward into a balance with
-- something due (the server settles that first), or lose a replay race (the eventId's unique
-- index fails it): nothing it writes is ever half done.
\set aid random(:amin, :amax)
\set key random(1, 1000000000000)
\set product random(1, 6)
\set gb random(1, 50)
WITH settings AS (
    SELECT s.enabled FROM program_settings s WHERE s.id = 1
), account AS (
    SELECT a.id, a.display_name, a.disqualified_at, a.closed_at
    FROM accounts a WHERE a.external_id = 'u' || :aid
), product AS (
    SELECT p.id, p.key, p.name, p.category, p.product_rate
    FROM products p
    WHERE p.key = (ARRAY['acme-res', 'globex-res', 'initech-res', 'acme-dc', 'globex-dc', 'initech-dc'])[:product]
), event AS (
    SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, a.id AS account_id
    FROM account a, product p
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = 'one-' || :client_id || '-' || :key)
), first AS (
    UPDATE accounts a SET first_purchase_at = now(), first_purchase_event_id = e.id
    FROM event e
    WHERE a.id = e.account_id AND a.first_purchase_at IS NULL
    RETURNING a.id
), referral AS (
    SELECT r.id, r.referrer_id, r.status, referrer.disqualified_at AS referrer_disqualified_at
    FROM event e
    JOIN referrals r ON r.referee_id = e.account_id AND r.status <> 'REJECTED'
    JOIN accounts referrer ON referrer.id = r.referrer_id
), rules AS (
    SELECT r.id, r.name, r.trigger, r.beneficiary, r.unit, r.spec::jsonb AS spec
    FROM reward_rules r WHERE r.enabled
), decided AS (
    SELECT rule.id AS rule_id, rule.name AS rule_name, rule.unit, rule.spec, r.id AS referral_id,
           r.referrer_id, p.product_rate * :gb AS amount,
           CASE
               WHEN a.closed_at IS NOT NULL
                   THEN 'the account was closed at '
                        || to_char(a.closed_at AT TIME ZONE 'UTC', E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS"+00\x3a00"')
                        || '; what happens after that earns nothing'
               WHEN NOT s.enabled THEN 'program is off'
               WHEN rule.trigger <> 'FIRST_PURCHASE'
                   THEN 'pays on ' || CASE rule.trigger WHEN 'SIGNUP' THEN 'sign-up'
                                                        WHEN 'PAYMENT_METHOD_VERIFIED' THEN 'a verified payment method'
                                                        ELSE 'top-ups' END
                        || ', not on a first purchase'
               WHEN rule.beneficiary <> 'REFERRER' OR rule.spec ->> 'calculation' <> 'productRate'
                    OR (rule.spec -> 'payout' ->> 'holdDays')::int <> 0
                    OR jsonb_typeof(rule.spec -> 'payout' -> 'expiresAfterDays') <> 'null'
                    OR EXISTS (SELECT 1 FROM jsonb_array_elements(rule.spec -> 'conditions') c
                               WHERE NOT c ? 'productCategories')
                   THEN CAST('purchase_one decides first-purchase rules of the points-store shape only, not rule '
                             || rule.id AS integer)::text
               WHEN r.id IS NULL THEN 'account has no referrer'
               WHEN r.referrer_disqualified_at IS NOT NULL THEN 'the referrer is disqualified'
               WHEN a.disqualified_at IS NOT NULL THEN 'the referred account is disqualified'
               WHEN f.id IS NULL
                   THEN 'only the first purchase counts, and this account made its first purchase before'
               WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(rule.spec -> 'conditions') c
                            WHERE NOT c -> 'productCategories' ? p.category)
                   THEN 'product category ' || p.category || ' does not count (counted: '
                        || (SELECT string_agg(x, ', ') FROM jsonb_array_elements(rule.spec -> 'conditions') c,
                                   jsonb_array_elements_text(c -> 'productCategories') x) || ')'
               WHEN p.product_rate IS NULL THEN 'product ' || p.name || ' has no product rate set'
           END AS skipped_because
    FROM rules rule
    CROSS JOIN settings s
    CROSS JOIN event e
    JOIN account a ON a.id = e.account_id
    CROSS JOIN product p
    LEFT JOIN referral r ON true
    LEFT JOIN first f ON true
), paid AS (
    INSERT INTO ledger_entries (account_id, unit, amount, remaining, kind, status, description, event_id,
                                referral_id, rule_id, occurrence, rule_snapshot, created_at)
    SELECT d.referrer_id, d.unit, d.amount, d.amount, 'REWARD', 'POSTED',
           'Referral reward: '
               || COALESCE(left(split_part(btrim(a.display_name), ' ', 1), 2) || '***'
                           || CASE WHEN btrim(a.display_name) ~ '\s'
                                   THEN ' ' || left(substring(btrim(a.display_name) FROM '(\S+)$'), 1) || '.'
                                   ELSE '' END,
                           'a friend')
               || ' made a first purchase (' || :gb || '.00 GB of ' || p.name || ')',
           e.id, d.referral_id, d.rule_id, 1,
           jsonb_build_object('id', d.rule_id, 'name', d.rule_name, 'spec', d.spec)::text, now()
    FROM decided d, event e, account a, product p
    WHERE d.skipped_because IS NULL
    ON CONFLICT (rule_id, referral_id, occurrence) DO NOTHING
    RETURNING account_id, unit, amount, rule_id, referral_id
), raised AS (
    UPDATE balances b SET available = b.available + p.amount, lifetime_earned = b.lifetime_earned + p.amount
    FROM paid p
    WHERE b.account_id = p.account_id AND b.unit = p.unit
      AND (b.next_due_at IS NULL OR b.next_due_at > now())
    RETURNING b.account_id
), qualified AS (
    UPDATE referrals r SET status = 'QUALIFIED', qualified_at = now()
    FROM paid p
    WHERE r.id = p.referral_id AND r.status = 'PENDING'
    RETURNING r.id
), decisions AS (
    SELECT COALESCE(json_agg(json_build_object(
               'rule_id', d.rule_id,
               'rule_name', d.rule_name,
               'outcome', CASE WHEN p.rule_id IS NOT NULL THEN 'REWARDED' ELSE 'SKIPPED' END,
               'reason', CASE
                   WHEN d.skipped_because IS NOT NULL THEN d.skipped_because
                   WHEN p.rule_id IS NULL THEN 'first purchase already rewarded'
                   ELSE (d.amount / 1000000) || '.' || rpad(rtrim(lpad((d.amount % 1000000)::text, 6, '0'), '0'), 2, '0')
                        || ' points to the referrer (rate '
                        || (pr.product_rate / 1000000) || '.'
                        || rpad(rtrim(lpad((pr.product_rate % 1000000)::text, 6, '0'), '0'), 2, '0')
                        || ' × ' || :gb || '.00 GB)'
               END) ORDER BY d.rule_id), '[]') AS json
    FROM decided d
    CROSS JOIN product pr
    LEFT JOIN paid p ON p.rule_id = d.rule_id
), recorded AS (
    INSERT INTO events (id, event_id, kind, account_id, request_hash, payload, decisions, occurred_at, created_at)
    SELECT e.id, 'one-' || :client_id || '-' || :key, 'PURCHASE', e.account_id,
           '4f6c1d2e3a5b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d',
           json_build_object(
               'detail', json_build_object('amount', NULL, 'productKey', p.key, 'quantityGb', :gb * 1000000),
               'externalId', 'u' || :aid, 'kind', 'PURCHASE', 'occurredAt', NULL)::text,
           d.json, now(), now()
    FROM event e, product p, decisions d
    RETURNING id, decisions
)
SELECT r.id AS event_id, r.decisions,
       CASE WHEN (SELECT count(*) FROM paid) = (SELECT count(*) FROM raised) THEN 'RECORDED'
            ELSE CAST('event ' || r.id || ': a reward went to a balance with something due' AS integer)::text
       END AS outcome
FROM recorded r;
