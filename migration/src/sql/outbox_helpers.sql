-- What the PostgreSQL functions need to write events as the server does
-- (src/service/outbox/payloads.rs): amounts and times in the same text, and the payloads of
-- the events these functions write, each built in one place.

-- An amount in millionths as the API shows it: at least two decimals, no trailing zeros
-- beyond them ("10.50", "0.125", "3.00").
CREATE OR REPLACE FUNCTION referral_amount_text(p_micros bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN scale(trim_scale(p_micros::numeric / 1000000)) < 2
                THEN round(p_micros::numeric / 1000000, 2)::text
                ELSE trim_scale(p_micros::numeric / 1000000)::text END
$$;

-- A time as RFC 3339 in UTC with microseconds ("2026-12-09T10:00:00.000000Z").
CREATE OR REPLACE FUNCTION referral_time_text(p_at timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- reward.granted, version 1.
CREATE OR REPLACE FUNCTION referral_reward_granted(p_entry ledger_entries, p_now timestamptz) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox_events (event_type, payload, occurred_at)
    SELECT 'reward.granted',
           jsonb_build_object(
               'entryId', 'led_' || p_entry.id,
               'accountId', 'acc_' || p_entry.account_id,
               'externalId', a.external_id,
               'unit', p_entry.unit,
               'amount', referral_amount_text(p_entry.amount),
               'status', p_entry.status,
               'availableAt', referral_time_text(p_entry.available_at),
               'expiresAt', referral_time_text(p_entry.expires_at),
               'referralId', 'ref_' || p_entry.referral_id,
               'ruleId', 'rul_' || p_entry.rule_id)::text,
           p_now
      FROM accounts a WHERE a.id = p_entry.account_id
$$;

-- referral.qualified, version 1.
CREATE OR REPLACE FUNCTION referral_referral_qualified(p_referral referrals, p_now timestamptz) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox_events (event_type, payload, occurred_at)
    SELECT 'referral.qualified',
           jsonb_build_object(
               'referralId', 'ref_' || p_referral.id,
               'status', 'QUALIFIED',
               'referrerAccountId', 'acc_' || p_referral.referrer_id,
               'referrerExternalId', rr.external_id,
               'refereeAccountId', 'acc_' || p_referral.referee_id,
               'refereeExternalId', re.external_id,
               'qualifiedAt', referral_time_text(p_now))::text,
           p_now
      FROM accounts re LEFT JOIN accounts rr ON rr.id = p_referral.referrer_id
     WHERE re.id = p_referral.referee_id
$$;
