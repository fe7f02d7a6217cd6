-- RecordPurchase's writes in one call on PostgreSQL. The server reads the facts of a purchase
-- in one statement (the account, its accepted referral and referrer, the product, the
-- settings, the enabled rules), decides in Rust what the rules pay if this purchase is the
-- account's first and what they say if it is not (src/service/events/purchase/planned.rs), and
-- hands both plans to this function, which writes one of them in the statement's own
-- transaction:
--
--   1. the event, once per eventId: a conflict answers STORED and writes nothing (the server
--      answers the stored event as a replay);
--   2. the account's first purchase taken by a conditional update (of concurrent purchases
--      exactly one is first): taken, the first plan is written, else the later one. When the
--      server read that the account has made its first purchase (`first_purchase_at` is never
--      NULL again) and that this one did not happen before it, there is no first plan
--      (`p_first` NULL): the event is written at once with the later plan's decisions;
--   3. each planned credit, once per (rule, referral, occurrence) by the unique index: a lost
--      race turns its decision into the plan's "already paid"; a recurring rule's occurrence
--      is the event's id. A held credit raises `pending`, an available one `available` and
--      `lifetime_earned`; either lowers `next_due_at` to its own date if that is sooner;
--   4. the referral qualified when a credit was paid for it;
--   each credit and the qualification write their events (reward.granted, referral.qualified);
--   5. the event's decisions, unless it was written with them and no reward was found paid.
--
-- What this function does not decide, the server's flow in steps does, from the start:
-- whenever the function meets one of these it raises SQLSTATE RS001, the statement rolls back
-- whole, and the server records the purchase in steps (src/service/events/purchase/mod.rs):
--   - a timed purchase that happened before the account's first purchase (a correction, or
--     a late one outside the window: both read and write more);
--   - an available credit into a balance with something due or some debt (settling and
--     repaying are the ledger's business in Rust).
--
-- Facts read before this call can have changed by the time it runs, as facts read inside the
-- flow's transaction can (it runs at READ COMMITTED): what this function writes is guarded by
-- the same unique indexes and conditional updates as the flow, so nothing is paid twice.
CREATE OR REPLACE FUNCTION referral_record_purchase(
    p_event_id text,
    p_account_id bigint,
    p_request_hash text,
    p_payload text,
    p_occurred_at timestamptz,
    p_timed boolean,
    p_amount bigint,
    p_now timestamptz,
    p_first jsonb,
    p_later jsonb
) RETURNS TABLE (
    outcome text,
    first_purchase boolean,
    event_id bigint,
    event_event_id text,
    event_kind text,
    event_account_id bigint,
    event_request_hash text,
    event_payload text,
    event_decisions text,
    event_occurred_at timestamptz,
    event_created_at timestamptz,
    event_amount bigint,
    event_refund_of bigint,
    entry_id bigint,
    entry_account_id bigint,
    entry_unit text,
    entry_amount bigint,
    entry_remaining bigint,
    entry_kind text,
    entry_status text,
    entry_description text,
    entry_event_id bigint,
    entry_referral_id bigint,
    entry_rule_id bigint,
    entry_occurrence bigint,
    entry_claim_id bigint,
    entry_available_at timestamptz,
    entry_expires_at timestamptz,
    entry_created_at timestamptz,
    entry_rule_snapshot text,
    entry_reverses_entry_id bigint
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_event events%ROWTYPE;
    v_entry ledger_entries%ROWTYPE;
    v_entries ledger_entries[] := '{}';
    v_plan jsonb;
    v_decisions jsonb;
    v_credit jsonb;
    v_first_at timestamptz;
    v_held timestamptz;
    v_expires timestamptz;
    v_amount bigint;
    v_unit text;
    v_count bigint;
    v_qualify bigint;
    v_referral referrals%ROWTYPE;
    -- Whether the event row holds its final decisions.
    v_written boolean;
BEGIN
    IF p_first IS NULL THEN
        -- The account made its first purchase before (it never becomes NULL again), and the
        -- server saw that this one did not happen before it: a later purchase, whose
        -- decisions are known before the event is written.
        first_purchase := false;
        v_plan := p_later;
        INSERT INTO events (event_id, kind, account_id, request_hash, payload, decisions, occurred_at, created_at,
                            amount)
        VALUES (p_event_id, 'PURCHASE', p_account_id, p_request_hash, p_payload, (v_plan -> 'decisions')::text,
                p_occurred_at, p_now, p_amount)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING * INTO v_event;
        IF NOT FOUND THEN
            outcome := 'STORED'; RETURN NEXT; RETURN;
        END IF;
        v_written := true;
    ELSE
        INSERT INTO events (event_id, kind, account_id, request_hash, payload, decisions, occurred_at, created_at,
                            amount)
        VALUES (p_event_id, 'PURCHASE', p_account_id, p_request_hash, p_payload, '[]', p_occurred_at, p_now, p_amount)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING * INTO v_event;
        IF NOT FOUND THEN
            outcome := 'STORED'; RETURN NEXT; RETURN;
        END IF;
        UPDATE accounts a SET first_purchase_at = v_event.occurred_at, first_purchase_event_id = v_event.id
         WHERE a.id = p_account_id AND a.first_purchase_at IS NULL;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        first_purchase := v_count = 1;
        IF first_purchase THEN
            v_plan := p_first;
        ELSE
            IF p_timed THEN
                -- As the flow does: concurrent late purchases are decided one after the other.
                -- FOR NO KEY UPDATE, because concurrent events hold key-share locks on the row.
                SELECT a.first_purchase_at INTO v_first_at FROM accounts a WHERE a.id = p_account_id
                   FOR NO KEY UPDATE;
                IF v_event.occurred_at < v_first_at THEN
                    RAISE EXCEPTION 'purchase % happened before the first purchase: recorded in steps', p_event_id
                        USING ERRCODE = 'RS001';
                END IF;
            END IF;
            v_plan := p_later;
        END IF;
        v_written := false;
    END IF;

    v_decisions := v_plan -> 'decisions';
    FOR v_credit IN SELECT c FROM jsonb_array_elements(v_plan -> 'credits') c LOOP
        v_amount := (v_credit ->> 'amount')::bigint;
        v_unit := v_credit ->> 'unit';
        v_held := (v_credit ->> 'available_at')::timestamptz;
        v_expires := (v_credit ->> 'expires_at')::timestamptz;
        INSERT INTO ledger_entries (account_id, unit, amount, remaining, kind, status, description, event_id,
                                    referral_id, rule_id, occurrence, rule_snapshot, available_at, expires_at,
                                    created_at)
        VALUES ((v_credit ->> 'account_id')::bigint, v_unit, v_amount,
                CASE WHEN v_held IS NULL THEN v_amount END, 'REWARD',
                CASE WHEN v_held IS NULL THEN 'POSTED' ELSE 'PENDING' END,
                v_credit ->> 'description', v_event.id, (v_credit ->> 'referral_id')::bigint,
                (v_credit ->> 'rule_id')::bigint,
                CASE WHEN (v_credit ->> 'recurring')::boolean THEN v_event.id ELSE 1 END,
                v_credit ->> 'rule_snapshot', v_held, v_expires, p_now)
        ON CONFLICT (rule_id, referral_id, occurrence) DO NOTHING
        RETURNING * INTO v_entry;
        IF NOT FOUND THEN
            v_decisions := jsonb_set(v_decisions, ARRAY[v_credit ->> 'decision'], v_credit -> 'already_paid');
            v_written := false;
            CONTINUE;
        END IF;
        IF v_held IS NOT NULL THEN
            UPDATE balances b
               SET pending = b.pending + v_amount,
                   next_due_at = CASE WHEN b.next_due_at IS NULL OR b.next_due_at > v_held THEN v_held
                                      ELSE b.next_due_at END
             WHERE b.account_id = v_entry.account_id AND b.unit = v_unit;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'account % has no % balance', v_entry.account_id, v_unit;
            END IF;
        ELSE
            UPDATE balances b
               SET available = b.available + v_amount,
                   lifetime_earned = b.lifetime_earned + v_amount,
                   next_due_at = CASE WHEN v_expires IS NOT NULL
                                           AND (b.next_due_at IS NULL OR b.next_due_at > v_expires)
                                      THEN v_expires ELSE b.next_due_at END
             WHERE b.account_id = v_entry.account_id AND b.unit = v_unit
               AND (b.next_due_at IS NULL OR b.next_due_at > p_now) AND b.debt = 0;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'balance % % has something due or owed: recorded in steps', v_entry.account_id, v_unit
                    USING ERRCODE = 'RS001';
            END IF;
        END IF;
        PERFORM referral_reward_granted(v_entry, p_now);
        IF (v_credit ->> 'qualifies')::boolean THEN
            v_qualify := v_entry.referral_id;
        END IF;
        v_entries := v_entries || v_entry;
    END LOOP;

    IF v_qualify IS NOT NULL THEN
        UPDATE referrals r SET status = 'QUALIFIED', qualified_at = p_now
         WHERE r.id = v_qualify AND r.status = 'PENDING'
        RETURNING * INTO v_referral;
        IF FOUND THEN
            PERFORM referral_referral_qualified(v_referral, p_now);
        END IF;
    END IF;
    IF NOT v_written THEN
        UPDATE events e SET decisions = v_decisions::text WHERE e.id = v_event.id RETURNING * INTO v_event;
    END IF;

    outcome := 'RECORDED';
    event_id := v_event.id; event_event_id := v_event.event_id; event_kind := v_event.kind;
    event_account_id := v_event.account_id; event_request_hash := v_event.request_hash;
    event_payload := v_event.payload; event_decisions := v_event.decisions;
    event_occurred_at := v_event.occurred_at; event_created_at := v_event.created_at;
    event_amount := v_event.amount; event_refund_of := v_event.refund_of;
    IF cardinality(v_entries) = 0 THEN
        RETURN NEXT; RETURN;
    END IF;
    FOREACH v_entry IN ARRAY v_entries LOOP
        entry_id := v_entry.id; entry_account_id := v_entry.account_id; entry_unit := v_entry.unit;
        entry_amount := v_entry.amount; entry_remaining := v_entry.remaining; entry_kind := v_entry.kind;
        entry_status := v_entry.status; entry_description := v_entry.description;
        entry_event_id := v_entry.event_id; entry_referral_id := v_entry.referral_id;
        entry_rule_id := v_entry.rule_id; entry_occurrence := v_entry.occurrence;
        entry_claim_id := v_entry.claim_id; entry_available_at := v_entry.available_at;
        entry_expires_at := v_entry.expires_at; entry_created_at := v_entry.created_at;
        entry_rule_snapshot := v_entry.rule_snapshot; entry_reverses_entry_id := v_entry.reverses_entry_id;
        RETURN NEXT;
    END LOOP;
END;
$$;
