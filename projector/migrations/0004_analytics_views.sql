-- The analysts' stable views (README, "Analysts' access"): schema `ledger_analytics`, which a
-- rebuild never renames or drops, over the live read model `ledger`.
--
-- The one migration that names schemas: its objects live outside the schema being migrated,
-- and read the live one whichever schema it is applied to (a rebuild's shadow, a historical
-- rebuild's) -- the same objects, made again.
--
-- Why functions under the views: a view is bound to its tables (by oid) when it is created, so
-- views over `ledger.accounts` would follow those tables when a rebuild renames `ledger` to
-- `ledger_old_<stamp>`, and be dropped with them. A SQL function's body is text, resolved each
-- time a query is planned: every query reads whatever schema is named `ledger` then, and a
-- rebuild's swap needs no step of its own (nor a lock on these views). Plain LANGUAGE sql,
-- STABLE, not STRICT and without SET: the planner inlines such a function into the query, so
-- a filter on a view's column reaches the tables' indexes as if the view read them directly.
-- Being inlined, the tables are read with the caller's rights, which the read-only roles have
-- (README, "Roles").
--
-- Column names and types are a contract: change them only by adding columns at the end.

-- The bodies name `ledger`'s tables, which need not exist yet where this is applied.
SET LOCAL check_function_bodies = off;

CREATE SCHEMA IF NOT EXISTS ledger_analytics;

CREATE OR REPLACE FUNCTION ledger_analytics.accounts_rows()
RETURNS TABLE (
    account_id  text,
    currency    text,
    owner       text,
    status      text,
    balance     numeric,
    version     bigint,
    opened_at   timestamptz,
    closed_at   timestamptz,
    updated_at  timestamptz
)
LANGUAGE sql STABLE
AS $$
    SELECT account_id, currency, owner, status, balance, version, opened_at, closed_at,
           updated_at
    FROM ledger.accounts
$$;

CREATE OR REPLACE FUNCTION ledger_analytics.movements_rows()
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
    event_id        uuid
)
LANGUAGE sql STABLE
AS $$
    -- A LEFT JOIN on the accounts' key: the planner drops it when `currency` is not asked for.
    SELECT m.account_id, m.version, m.occurred_at, m.kind, a.currency, m.amount,
           CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN') THEN m.amount ELSE -m.amount END,
           m.balance_after, m.counterparty_id, m.transfer_id, m.command_id, m.event_id
    FROM ledger.movements m
    LEFT JOIN ledger.accounts a ON a.account_id = m.account_id
$$;

CREATE OR REPLACE FUNCTION ledger_analytics.daily_summaries_rows()
RETURNS TABLE (
    account_id      text,
    day             date,
    currency        text,
    inflow          numeric,
    outflow         numeric,
    net             numeric,
    movement_count  integer,
    closing_balance numeric
)
LANGUAGE sql STABLE
AS $$
    SELECT account_id, day, currency, inflow, outflow, inflow - outflow, movement_count,
           closing_balance
    FROM ledger.daily_summaries
$$;

CREATE OR REPLACE FUNCTION ledger_analytics.monthly_summaries_rows()
RETURNS TABLE (
    account_id      text,
    month           date,
    currency        text,
    inflow          numeric,
    outflow         numeric,
    net             numeric,
    movement_count  bigint,
    closing_balance numeric,
    active_days     bigint
)
LANGUAGE sql STABLE
AS $$
    SELECT account_id, date_trunc('month', day::timestamp)::date, currency, sum(inflow),
           sum(outflow), sum(inflow) - sum(outflow), sum(movement_count),
           (array_agg(closing_balance ORDER BY day DESC))[1], count(*)
    FROM ledger.daily_summaries
    GROUP BY account_id, date_trunc('month', day::timestamp)::date, currency
$$;

CREATE OR REPLACE FUNCTION ledger_analytics.currency_totals_rows()
RETURNS TABLE (
    currency       text,
    accounts       bigint,
    open_accounts  bigint,
    total_balance  numeric,
    total_inflow   numeric,
    total_outflow  numeric,
    movement_count bigint
)
LANGUAGE sql STABLE
AS $$
    SELECT held.currency, held.accounts, held.open_accounts, held.total_balance,
           coalesce(moved.inflow, 0), coalesce(moved.outflow, 0), coalesce(moved.movements, 0)
    FROM (
        SELECT currency, count(*) AS accounts, count(*) FILTER (WHERE status = 'OPEN')
               AS open_accounts, sum(balance) AS total_balance
        FROM ledger.accounts GROUP BY currency
    ) held
    LEFT JOIN (
        SELECT currency, sum(inflow) AS inflow, sum(outflow) AS outflow,
               sum(movement_count) AS movements
        FROM ledger.daily_summaries GROUP BY currency
    ) moved ON moved.currency = held.currency
$$;

-- Made once: replacing a view takes a lock that waits for every query reading it, and applying
-- this to a rebuild's shadow must not wait for an analyst's long query.
DO $$
DECLARE
    view text;
BEGIN
    FOREACH view IN ARRAY ARRAY['accounts', 'movements', 'daily_summaries', 'monthly_summaries',
                                'currency_totals'] LOOP
        IF to_regclass('ledger_analytics.' || view) IS NULL THEN
            EXECUTE format('CREATE VIEW ledger_analytics.%I AS SELECT * FROM ledger_analytics.%I()',
                           view, view || '_rows');
        END IF;
    END LOOP;
END
$$;

SET LOCAL check_function_bodies TO DEFAULT;
