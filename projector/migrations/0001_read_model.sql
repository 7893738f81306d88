-- The read model. Applied with search_path set to the target schema (`ledger`, or a shadow
-- schema during a rebuild), so no name here is schema-qualified.
-- Money is NUMERIC in the currency's major unit, exact, with the currency's scale (12.34 USD).

CREATE TABLE accounts (
    account_id   text        PRIMARY KEY,
    currency     text        NOT NULL,
    owner        text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
    balance      numeric     NOT NULL CHECK (balance >= 0),
    version      bigint      NOT NULL CHECK (version >= 1),
    partition    integer     NOT NULL,
    opened_at    timestamptz NOT NULL,
    closed_at    timestamptz,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX accounts_status_currency ON accounts (status, currency, account_id);
CREATE INDEX accounts_currency ON accounts (currency, account_id);

-- One row per balance change (deposits, withdrawals, both legs of transfers).
CREATE TABLE movements (
    event_id        uuid        PRIMARY KEY,
    account_id      text        NOT NULL,
    version         bigint      NOT NULL,
    kind            text        NOT NULL
                    CHECK (kind IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER_IN', 'TRANSFER_OUT')),
    amount          numeric     NOT NULL CHECK (amount > 0),
    balance_after   numeric     NOT NULL CHECK (balance_after >= 0),
    occurred_at     timestamptz NOT NULL,
    counterparty_id text,
    transfer_id     text,
    command_id      text        NOT NULL,
    partition       integer     NOT NULL,
    "offset"        bigint      NOT NULL,
    UNIQUE (account_id, version)
);
-- Point-in-time balances and time-ranged history: an indexed read, never a replay.
CREATE INDEX movements_account_time ON movements (account_id, occurred_at, version);

-- Per account and UTC day.
CREATE TABLE daily_summaries (
    account_id      text    NOT NULL,
    day             date    NOT NULL,
    currency        text    NOT NULL,
    inflow          numeric NOT NULL,
    outflow         numeric NOT NULL,
    movement_count  integer NOT NULL,
    closing_balance numeric NOT NULL,
    PRIMARY KEY (account_id, day)
);
CREATE INDEX daily_summaries_day ON daily_summaries (day, account_id);

-- The last applied offset per partition, written in the same transaction as the rows.
CREATE TABLE checkpoints (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    last_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- Records that could not be decoded and went to the dead-letter topic.
CREATE TABLE dead_letters (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    error       text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
