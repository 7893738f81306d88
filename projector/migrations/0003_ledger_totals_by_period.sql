-- The whole ledger as of any instant (ListBalancesAt, GetTrialBalance): docs/design.md,
-- decision 15.

-- Money in and out, movements and accounts opened and closed, per currency and period, at
-- three widths: every UTC day, minute and second that had any. The totals up to an instant T
-- are the days before T's day, the minutes of T's day before T's minute, the seconds of T's
-- minute before T's second, and the movements and accounts of T's own second (read through
-- the indexes below): at most days + 1,440 + 60 rows per currency and partition, and one
-- second's movements. Keyed by partition too, so that each row has one writer: the projector
-- worker that owns the partition.
CREATE TABLE currency_totals (
    width          text        NOT NULL CHECK (width IN ('day', 'minute', 'second')),
    period_start   timestamptz NOT NULL,
    currency       text        NOT NULL,
    partition      integer     NOT NULL,
    inflow         numeric     NOT NULL CHECK (inflow >= 0),
    outflow        numeric     NOT NULL CHECK (outflow >= 0),
    movement_count bigint      NOT NULL,
    opened_count   bigint      NOT NULL,
    closed_count   bigint      NOT NULL,
    PRIMARY KEY (width, period_start, currency, partition)
);

-- The remainder within one second, and the accounts that existed at an instant.
CREATE INDEX movements_time ON movements (occurred_at);
-- ListBalancesAt probes it once per account for the last movement at or before an instant:
-- with the balance in the index, the probe reads no table page (an index-only scan).
DROP INDEX movements_account_time;
CREATE INDEX movements_account_time ON movements (account_id, occurred_at, version)
    INCLUDE (balance_after);
CREATE INDEX accounts_opened ON accounts (opened_at);
CREATE INDEX accounts_closed ON accounts (closed_at) WHERE closed_at IS NOT NULL;

-- A read model that already holds movements gets its totals from them, money at the scale of
-- the currency as the projector writes it (its accounts' balances have that scale).
INSERT INTO currency_totals (width, period_start, currency, partition, inflow, outflow,
                             movement_count, opened_count, closed_count)
SELECT w.width, date_trunc(w.width, e.at, 'UTC'), e.currency, e.partition,
       round(sum(e.inflow), max(e.places)), round(sum(e.outflow), max(e.places)),
       sum(e.moved), sum(e.opened), sum(e.closed)
FROM (
    SELECT m.occurred_at AS at, a.currency, m.partition,
           CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN') THEN m.amount ELSE 0 END AS inflow,
           CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN') THEN 0 ELSE m.amount END AS outflow,
           1 AS moved, 0 AS opened, 0 AS closed, scale(a.balance) AS places
    FROM movements m JOIN accounts a USING (account_id)
    UNION ALL
    SELECT opened_at, currency, partition, 0, 0, 0, 1, 0, scale(balance) FROM accounts
    UNION ALL
    SELECT closed_at, currency, partition, 0, 0, 0, 0, 1, scale(balance) FROM accounts
    WHERE closed_at IS NOT NULL
) e
CROSS JOIN (VALUES ('day'), ('minute'), ('second')) AS w (width)
GROUP BY 1, 2, 3, 4;
