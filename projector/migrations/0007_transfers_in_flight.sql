-- Cross-shard transfers (issue 24; docs/design.md, decision 13): money in flight between
-- shards, and every transfer's state.

-- A refund brings the money of a TransferSent back to the account it left: a movement of its
-- own kind (TransferSent itself is a TRANSFER_OUT, as a same-shard debit is).
ALTER TABLE movements DROP CONSTRAINT IF EXISTS movements_kind_check;
ALTER TABLE movements ADD CONSTRAINT movements_kind_check
    CHECK (kind IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER_IN', 'TRANSFER_OUT', 'TRANSFER_REFUND'));

-- Money that left an account by transfer, and money that reached one (credit or refund), per
-- period: in flight up to T is what left minus what arrived up to T. A same-shard transfer
-- leaves and arrives at one instant; a cross-shard one is in flight from its TransferSent to
-- the counterparty's TransferCredited or its own TransferRefunded. Kept as sums, not read
-- from `transfers`, so that the identity "balances + in flight = deposits - withdrawals"
-- holds at every instant and in every state of the projection, whichever partition's events
-- the projector has applied first (a credit projected before its send is in flight
-- negatively until the send is).
ALTER TABLE currency_totals
    ADD COLUMN transferred_out numeric NOT NULL DEFAULT 0 CHECK (transferred_out >= 0),
    ADD COLUMN transferred_in  numeric NOT NULL DEFAULT 0 CHECK (transferred_in >= 0);

-- A read model that already holds transfers (same-shard ones: before this, the only kind);
-- zeros at the currency's scale, as the projector writes them (inflow has it).
UPDATE currency_totals SET transferred_out = round(0, scale(inflow)),
                           transferred_in = round(0, scale(inflow));
UPDATE currency_totals t SET transferred_out = coalesce(s.transferred_out, t.transferred_out),
                             transferred_in = coalesce(s.transferred_in, t.transferred_in)
FROM (
    SELECT w.width, date_trunc(w.width, m.occurred_at, 'UTC') AS period_start, a.currency,
           m.partition,
           round(sum(m.amount) FILTER (WHERE m.kind = 'TRANSFER_OUT'), max(scale(a.balance)))
               AS transferred_out,
           round(sum(m.amount) FILTER (WHERE m.kind <> 'TRANSFER_OUT'), max(scale(a.balance)))
               AS transferred_in
    FROM movements m JOIN accounts a USING (account_id)
    CROSS JOIN (VALUES ('day'), ('minute'), ('second')) AS w (width)
    WHERE m.kind IN ('TRANSFER_OUT', 'TRANSFER_IN', 'TRANSFER_REFUND')
    GROUP BY 1, 2, 3, 4
) s
WHERE t.width = s.width AND t.period_start = s.period_start AND t.currency = s.currency
  AND t.partition = s.partition;

-- One row per transfer, upserted by each of its events whichever arrives first: the events of
-- one transfer sit in different partitions, which the projector applies independently, so the
-- credit may be applied before the send. Each event only fills its own columns.
CREATE TABLE transfers (
    transfer_id     text        PRIMARY KEY,
    from_account_id text        NOT NULL,
    to_account_id   text        NOT NULL,
    currency        text        NOT NULL,
    amount          numeric     NOT NULL CHECK (amount > 0),
    -- NULL until the debit (TransferDebited: false, TransferSent: true) is projected.
    cross_shard     boolean,
    sent_at         timestamptz,
    credited_at     timestamptz,
    refunded_at     timestamptz,
    refund_reason   text,
    CHECK (credited_at IS NULL OR refunded_at IS NULL)
);
-- The transfers still in flight (or whose debit is not projected yet): a short list.
CREATE INDEX transfers_pending ON transfers (sent_at)
    WHERE credited_at IS NULL AND refunded_at IS NULL;

-- A read model that already holds transfers gets their rows (same-shard, completed at once).
INSERT INTO transfers (transfer_id, from_account_id, to_account_id, currency, amount,
                       cross_shard, sent_at, credited_at)
SELECT d.transfer_id, d.account_id, d.counterparty_id, a.currency, d.amount, false,
       d.occurred_at, c.occurred_at
FROM movements d
JOIN accounts a ON a.account_id = d.account_id
LEFT JOIN movements c ON c.transfer_id = d.transfer_id AND c.kind = 'TRANSFER_IN'
WHERE d.kind = 'TRANSFER_OUT' AND d.transfer_id IS NOT NULL
ON CONFLICT (transfer_id) DO NOTHING;

-- The analysts' views (0004 says why functions, and why made once): a refund is money in, and
-- two views more. Only the body of the movements view's function (0006's, with the metadata)
-- changes; its columns stay.
SET LOCAL check_function_bodies = off;

CREATE OR REPLACE FUNCTION ledger_analytics.movements_with_metadata_rows()
RETURNS TABLE (
    account_id      text,
    version         bigint,
    occurred_at     timestamptz,
    kind            text,
    currency        text,
    amount          numeric,
    signed_amount   numeric,
    balance_after   numeric,
    counterparty_id text,
    transfer_id     text,
    command_id      text,
    event_id        uuid,
    reference       text,
    memo            text
)
LANGUAGE sql STABLE
AS $$
    SELECT m.account_id, m.version, m.occurred_at, m.kind, a.currency, m.amount,
           CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN', 'TRANSFER_REFUND') THEN m.amount
                ELSE -m.amount END,
           m.balance_after, m.counterparty_id, m.transfer_id, m.command_id, m.event_id,
           m.reference, m.memo
    FROM ledger.movements m
    LEFT JOIN ledger.accounts a ON a.account_id = m.account_id
$$;

-- Every transfer and its state: PENDING (sent, neither credited nor refunded), COMPLETED,
-- REFUNDED.
CREATE OR REPLACE FUNCTION ledger_analytics.transfers_rows()
RETURNS TABLE (
    transfer_id     text,
    from_account_id text,
    to_account_id   text,
    currency        text,
    amount          numeric,
    state           text,
    cross_shard     boolean,
    sent_at         timestamptz,
    credited_at     timestamptz,
    refunded_at     timestamptz,
    refund_reason   text
)
LANGUAGE sql STABLE
AS $$
    SELECT transfer_id, from_account_id, to_account_id, currency, amount,
           CASE WHEN refunded_at IS NOT NULL THEN 'REFUNDED'
                WHEN credited_at IS NOT NULL THEN 'COMPLETED'
                ELSE 'PENDING' END,
           cross_shard, sent_at, credited_at, refunded_at, refund_reason
    FROM ledger.transfers
$$;

-- Per currency, the money in flight between shards now, with what left and reached accounts
-- by transfer: total balance + in_flight = deposits - withdrawals (currency_totals' inflow
-- and outflow include transfers; deposits = inflow - transferred_in).
CREATE OR REPLACE FUNCTION ledger_analytics.money_in_flight_rows()
RETURNS TABLE (
    currency        text,
    in_flight       numeric,
    transferred_out numeric,
    transferred_in  numeric,
    deposited       numeric,
    withdrawn       numeric
)
LANGUAGE sql STABLE
AS $$
    SELECT currency, sum(transferred_out) - sum(transferred_in), sum(transferred_out),
           sum(transferred_in), sum(inflow) - sum(transferred_in),
           sum(outflow) - sum(transferred_out)
    FROM ledger.currency_totals WHERE width = 'day'
    GROUP BY currency
$$;

DO $$
DECLARE
    view text;
BEGIN
    FOREACH view IN ARRAY ARRAY['transfers', 'money_in_flight'] LOOP
        IF to_regclass('ledger_analytics.' || view) IS NULL THEN
            EXECUTE format('CREATE VIEW ledger_analytics.%I AS SELECT * FROM ledger_analytics.%I()',
                           view, view || '_rows');
        END IF;
    END LOOP;
END
$$;

SET LOCAL check_function_bodies TO DEFAULT;
