-- ClaimReward in one statement on PostgreSQL: everything a claim reads and writes, in the
-- statement's own transaction, so that a claim costs the server one round trip whether it
-- claims, answers a retry again, or is refused. The server keeps the same flow in Rust for
-- SQLite (src/service/store.rs), and for PostgreSQL when the balance has something due (a
-- hold that ended, a lot that expired): settling is the ledger's business in Rust, so this
-- function then writes nothing and answers DUE, and the server takes the general path.
--
-- Outcomes (nothing is written unless CLAIMED; a claim writes its claim.requested event too):
--   CLAIMED       the claim, its debit and lot allocations are written; claim_* and balance_*
--                 are the new rows, provider_* the claim's provider
--   STORED        the idempotency key already names a claim of this account: claim_* is that
--                 claim (the server judges whether it is the same request), balance_* as stored
--   DUE           something of the balance is due: settle first (the general path)
--   DISABLED      the program is switched off
--   NO_ACCOUNT    no account has this external id
--   NO_PROVIDER   no provider has this id
--   NO_RATE       the provider has no redemption rate (provider_key names it)
--   TOO_LARGE     the claim's cost does not fit
--   INSUFFICIENT  the available balance does not cover cost
--   PENDING_LIMIT / DAILY_LIMIT  a claim limit refuses it (claim_limit is the limit)
--
-- Every writer of a balance locks its row first; this one does before reading the key, the
-- limits and the lots, so claims of one account run one after another and each sees the last.
CREATE OR REPLACE FUNCTION referral_claim_reward(
    p_external_id text,
    p_provider_id bigint,
    p_idempotency_key text,
    p_request_hash text,
    p_now timestamptz
) RETURNS TABLE (
    outcome text,
    cost bigint,
    claim_limit integer,
    provider_id bigint,
    provider_key text,
    provider_name text,
    provider_redemption_rate bigint,
    provider_created_at timestamptz,
    provider_updated_at timestamptz,
    claim_id bigint,
    claim_account_id bigint,
    claim_provider_id bigint,
    claim_gb integer,
    claim_points bigint,
    claim_status text,
    claim_idempotency_key text,
    claim_request_hash text,
    claim_created_at timestamptz,
    claim_decided_at timestamptz,
    balance_account_id bigint,
    balance_unit text,
    balance_available bigint,
    balance_pending bigint,
    balance_lifetime_earned bigint,
    balance_debt bigint,
    balance_next_due_at timestamptz
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    settings record;
    v_account_id bigint;
    v_provider providers%ROWTYPE;
    v_cost bigint;
    v_balance balances%ROWTYPE;
    v_claim claims%ROWTYPE;
    v_entry_id bigint;
    v_left bigint;
    v_take bigint;
    v_lot record;
    v_count bigint;
BEGIN
    SELECT s.enabled, s.gb_per_claim, s.max_pending_claims, s.max_claims_per_day
      INTO settings FROM program_settings s WHERE s.id = 1;
    IF NOT FOUND OR NOT settings.enabled THEN
        outcome := 'DISABLED'; RETURN NEXT; RETURN;
    END IF;
    SELECT a.id INTO v_account_id FROM accounts a WHERE a.external_id = p_external_id;
    IF NOT FOUND THEN
        outcome := 'NO_ACCOUNT'; RETURN NEXT; RETURN;
    END IF;
    SELECT * INTO v_provider FROM providers p WHERE p.id = p_provider_id;
    IF NOT FOUND THEN
        outcome := 'NO_PROVIDER'; RETURN NEXT; RETURN;
    END IF;
    -- The provider goes back with the claim: the answer shows it.
    provider_id := v_provider.id; provider_key := v_provider.key; provider_name := v_provider.name;
    provider_redemption_rate := v_provider.redemption_rate;
    provider_created_at := v_provider.created_at; provider_updated_at := v_provider.updated_at;
    IF v_provider.redemption_rate IS NULL THEN
        outcome := 'NO_RATE'; RETURN NEXT; RETURN;
    END IF;
    IF v_provider.redemption_rate::numeric * settings.gb_per_claim > 9223372036854775807 THEN
        outcome := 'TOO_LARGE'; RETURN NEXT; RETURN;
    END IF;
    v_cost := v_provider.redemption_rate * settings.gb_per_claim;
    cost := v_cost;

    SELECT * INTO v_balance FROM balances b
     WHERE b.account_id = v_account_id AND b.unit = 'POINTS' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'account % has no points balance', v_account_id;
    END IF;
    balance_account_id := v_balance.account_id;
    balance_unit := v_balance.unit;
    balance_available := v_balance.available;
    balance_pending := v_balance.pending;
    balance_lifetime_earned := v_balance.lifetime_earned;
    balance_debt := v_balance.debt;
    balance_next_due_at := v_balance.next_due_at;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO v_claim FROM claims c
         WHERE c.account_id = v_account_id AND c.idempotency_key = p_idempotency_key;
        IF FOUND THEN
            outcome := 'STORED';
            claim_id := v_claim.id; claim_account_id := v_claim.account_id;
            claim_provider_id := v_claim.provider_id; claim_gb := v_claim.gb; claim_points := v_claim.points;
            claim_status := v_claim.status; claim_idempotency_key := v_claim.idempotency_key;
            claim_request_hash := v_claim.request_hash; claim_created_at := v_claim.created_at;
            claim_decided_at := v_claim.decided_at;
            RETURN NEXT; RETURN;
        END IF;
    END IF;
    IF v_balance.next_due_at IS NOT NULL AND v_balance.next_due_at <= p_now THEN
        outcome := 'DUE'; RETURN NEXT; RETURN;
    END IF;
    IF v_balance.available < v_cost THEN
        outcome := 'INSUFFICIENT'; RETURN NEXT; RETURN;
    END IF;
    IF settings.max_pending_claims IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM claims c WHERE c.account_id = v_account_id AND c.status = 'PENDING';
        IF v_count >= settings.max_pending_claims THEN
            outcome := 'PENDING_LIMIT'; claim_limit := settings.max_pending_claims; RETURN NEXT; RETURN;
        END IF;
    END IF;
    IF settings.max_claims_per_day IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM claims c
         WHERE c.account_id = v_account_id AND c.created_at > p_now - interval '24 hours';
        IF v_count >= settings.max_claims_per_day THEN
            outcome := 'DAILY_LIMIT'; claim_limit := settings.max_claims_per_day; RETURN NEXT; RETURN;
        END IF;
    END IF;

    INSERT INTO claims (account_id, provider_id, gb, points, status, idempotency_key, request_hash, created_at)
    VALUES (v_account_id, p_provider_id, settings.gb_per_claim, v_cost, 'PENDING', p_idempotency_key,
            p_request_hash, p_now)
    RETURNING * INTO v_claim;
    UPDATE balances b SET available = b.available - v_cost
     WHERE b.account_id = v_account_id AND b.unit = 'POINTS'
    RETURNING b.available INTO balance_available;
    INSERT INTO ledger_entries (account_id, unit, amount, kind, status, description, claim_id, created_at)
    VALUES (v_account_id, 'POINTS', -v_cost, 'CLAIM', 'POSTED',
            left(format('Reward claim: %s GB of %s data', settings.gb_per_claim, v_provider.name), 500),
            v_claim.id, p_now)
    RETURNING id INTO v_entry_id;

    -- The lots, in the ledger's order: soonest expiry first, then oldest. The balance row's
    -- lock keeps every other spender of these lots waiting.
    v_left := v_cost;
    FOR v_lot IN
        SELECT l.id, l.remaining FROM ledger_entries l
         WHERE l.account_id = v_account_id AND l.unit = 'POINTS' AND l.status = 'POSTED' AND l.remaining > 0
           AND (l.expires_at IS NULL OR l.expires_at > p_now)
         ORDER BY l.expires_at IS NULL, l.expires_at, l.id
    LOOP
        v_take := least(v_lot.remaining, v_left);
        UPDATE ledger_entries SET remaining = remaining - v_take WHERE id = v_lot.id;
        INSERT INTO lot_allocations (debit_entry_id, lot_entry_id, amount) VALUES (v_entry_id, v_lot.id, v_take);
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left > 0 THEN
        RAISE EXCEPTION 'account % has % less in points lots than its balance says', v_account_id, v_left;
    END IF;
    -- claim.requested, version 1 (as src/service/outbox/payloads.rs writes it).
    INSERT INTO outbox_events (event_type, payload, occurred_at)
    VALUES ('claim.requested',
            jsonb_build_object(
                'claimId', 'clm_' || v_claim.id,
                'accountId', 'acc_' || v_claim.account_id,
                'externalId', p_external_id,
                'providerId', 'prv_' || v_claim.provider_id,
                'gb', v_claim.gb,
                'points', referral_amount_text(v_claim.points),
                'status', v_claim.status)::text,
            p_now);

    outcome := 'CLAIMED';
    claim_id := v_claim.id; claim_account_id := v_claim.account_id;
    claim_provider_id := v_claim.provider_id; claim_gb := v_claim.gb; claim_points := v_claim.points;
    claim_status := v_claim.status; claim_idempotency_key := v_claim.idempotency_key;
    claim_request_hash := v_claim.request_hash; claim_created_at := v_claim.created_at;
    claim_decided_at := v_claim.decided_at;
    RETURN NEXT;
END;
$$;
