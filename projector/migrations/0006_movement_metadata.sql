-- Transaction metadata (issue 23): the client's `reference` and `memo` of the command that
-- caused a movement, as its event carries them ('' when none was given, and for movements
-- projected before this). Adding a column with a constant default rewrites nothing.
ALTER TABLE movements
    ADD COLUMN reference text NOT NULL DEFAULT '',
    ADD COLUMN memo      text NOT NULL DEFAULT '';
-- ListTransactions' `reference` filter: one account's movements with that reference, in
-- version order (the keyset of its pages). Partial: a movement without a reference, nearly all
-- of a catch-up's, costs no index entry.
CREATE INDEX movements_account_reference ON movements (account_id, reference, version)
    WHERE reference <> '';

-- The analysts' movements view gains the two columns at its end (its columns are a contract:
-- 0004). 0004's function keeps its row type: it is made again on every schema a rebuild
-- builds, and a function's row type cannot be replaced. So the view reads a function of its
-- own, which like 0004's reads whichever schema is named `ledger` when a query is planned.
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
           CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN') THEN m.amount ELSE -m.amount END,
           m.balance_after, m.counterparty_id, m.transfer_id, m.command_id, m.event_id,
           m.reference, m.memo
    FROM ledger.movements m
    LEFT JOIN ledger.accounts a ON a.account_id = m.account_id
$$;

-- Replaced once (adding columns at the end is what CREATE OR REPLACE VIEW allows): the lock it
-- takes waits for queries reading the view, so a rebuild's shadow, which applies this again,
-- finds it done and takes none.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM information_schema.columns
        WHERE table_schema = 'ledger_analytics' AND table_name = 'movements'
          AND column_name = 'reference'
    ) THEN
        CREATE OR REPLACE VIEW ledger_analytics.movements AS
            SELECT * FROM ledger_analytics.movements_with_metadata_rows();
    END IF;
END
$$;

SET LOCAL check_function_bodies TO DEFAULT;
