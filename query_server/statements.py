"""Every SQL statement of the query server. Names are unqualified: the connections'
search_path picks the read model's schema (connections.py).

Each statement that returns data also returns the checkpoints it was read at, or runs in a
transaction with `CHECKPOINTS`, so that data and checkpoints come from one snapshot.
"""

from __future__ import annotations

_ACCOUNT_COLUMNS = (
    "account_id, currency, owner, status, balance, version, partition, opened_at, updated_at, "
    "owner_sealed, owner_erased"
)
_MOVEMENT_COLUMNS = (
    "event_id::text, account_id, version, kind, amount, balance_after, occurred_at, "
    "counterparty_id, transfer_id, command_id, reference, memo"
)
_SUMMARY_COLUMNS = "account_id, day, currency, inflow, outflow, movement_count, closing_balance"

# Aggregated into one row, so that it can share a statement (and so a snapshot) with the data.
CHECKPOINTS = (
    "SELECT array_agg(partition) AS partitions, array_agg(last_offset) AS offsets, "
    "max(updated_at) AS as_of FROM checkpoints WHERE topic = $1"
)
ACCOUNTS_WITH_CHECKPOINTS = (
    f"WITH cp AS ({CHECKPOINTS}) "
    f"SELECT {_ACCOUNT_COLUMNS}, cp.partitions, cp.offsets, cp.as_of FROM cp "
)
# One statement, always one row: the account columns are NULL for an unknown account.
ACCOUNT = f"{ACCOUNTS_WITH_CHECKPOINTS}LEFT JOIN accounts ON account_id = $2"
# The same for several accounts: one row per account id asked for, in order. PostgreSQL spends
# about twice as much on it for one id, hence ACCOUNT for a lone call.
ACCOUNTS_BY_ID = (
    f"{ACCOUNTS_WITH_CHECKPOINTS}CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS asked (id, n) "
    "LEFT JOIN accounts ON account_id = asked.id ORDER BY asked.n"
)
BALANCE_AT = (
    f"WITH cp AS ({CHECKPOINTS}) "
    "SELECT a.currency, a.opened_at, a.closed_at, a.version, m.balance_after, m.version, "
    "cp.partitions, cp.offsets, cp.as_of "
    "FROM cp LEFT JOIN accounts a ON a.account_id = $2 "
    "LEFT JOIN LATERAL ("
    "  SELECT balance_after, version FROM movements"
    "  WHERE account_id = $2 AND occurred_at <= $3"
    "  ORDER BY occurred_at DESC, version DESC LIMIT 1"
    ") m ON true"
)
ACCOUNT_CURRENCY = "SELECT currency FROM accounts WHERE account_id = $1"
ACCOUNT_ROW = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1"
# Keyset pagination; the planner gets a statement per filter combination so that each can use
# its index. '' sorts before every valid account id. `within`: a regular expression of the
# accounts the caller's token permits (ledger.auth), filtered here so that pages stay full.
ACCOUNTS = {
    (status, currency, within): (
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id > $1"
        + (" AND status = $3" if status else "")
        + (f" AND currency = ${3 + status}" if currency else "")
        + (f" AND account_id ~ ${3 + status + currency}" if within else "")
        + " ORDER BY account_id LIMIT $2"
    )
    for status in (False, True)
    for currency in (False, True)
    for within in (False, True)
}
# With a reference (`referenced`), the partial index movements_account_reference serves it: the
# literal `reference <> ''` is what lets the planner use it in a generic plan, where `$6` could
# be anything.
MOVEMENTS_PAGE = {
    (descending, referenced): (
        f"SELECT {_MOVEMENT_COLUMNS} FROM movements "
        f"WHERE account_id = $1 AND version {'<' if descending else '>'} $2 "
        "AND occurred_at >= $3 AND occurred_at < $4 "
        + ("AND reference = $6 AND reference <> '' " if referenced else "")
        + f"ORDER BY version {'DESC' if descending else 'ASC'} LIMIT $5"
    )
    for descending in (False, True)
    for referenced in (False, True)
}
MOVEMENTS_AFTER = (
    f"SELECT {_MOVEMENT_COLUMNS} FROM movements "
    "WHERE account_id = $1 AND version > $2 ORDER BY version LIMIT $3"
)
SUMMARIES_OF_LEDGER = (
    f"SELECT {_SUMMARY_COLUMNS} FROM daily_summaries "
    "WHERE day BETWEEN $1 AND $2 AND (day, account_id) > ($3, $4) "
    "ORDER BY day, account_id LIMIT $5"
)
# The same, narrowed to the accounts a token permits ($6: their regular expression).
SUMMARIES_OF_LEDGER_WITHIN = (
    f"SELECT {_SUMMARY_COLUMNS} FROM daily_summaries "
    "WHERE day BETWEEN $1 AND $2 AND (day, account_id) > ($3, $4) AND account_id ~ $6 "
    "ORDER BY day, account_id LIMIT $5"
)
SUMMARIES_OF_ACCOUNT = (
    f"SELECT {_SUMMARY_COLUMNS} FROM daily_summaries "
    "WHERE account_id = $6 AND day BETWEEN $1 AND $2 AND (day, account_id) > ($3, $4) "
    "ORDER BY day, account_id LIMIT $5"
)
CHECKPOINT_ROWS = (
    "SELECT partition, last_offset, updated_at FROM checkpoints WHERE topic = $1 ORDER BY partition"
)
# A page of accounts as of $3: at most $2 accounts are read (after $1, with the id prefix $4
# and the permitted accounts' regular expression if any), each unchanged since $3 as it is now,
# each changed since with its last movement at or before $3 (one probe of an index that holds
# the balance: no table read), so a page costs the same whenever `at` is. Accounts opened after
# $3 are read (the last column is false) but dropped by the caller. The columns are the
# BalanceAt message's as it wants them (query_server/rows.py, BalanceAtRow): the opening time
# as whole seconds and nanoseconds since the epoch, so that no datetime is made per row. The
# prefix is an index range: in the C collation (devstack's, and the README's for the read
# model's database), the ids starting with it are exactly those from it up to it followed by
# chr(127), which sorts after every character an id may hold. `starts_with` keeps any other
# collation from listing an account the prefix does not name (it may then miss some: DEL is
# ignorable in many).
BALANCES_AT = {
    (prefixed, within): (
        "SELECT a.account_id, a.currency, "
        # 0 and 1: opened, nothing moved yet. A closed account's version is its own: closing
        # moves no money but is its last event.
        "  coalesce(CASE WHEN a.updated_at <= $3 THEN a.balance ELSE m.balance_after END, 0), "
        "  CASE WHEN a.updated_at <= $3 THEN a.version ELSE coalesce(m.version, 1) END, "
        "  coalesce(a.closed_at <= $3, false), "
        "  extract(epoch FROM date_trunc('second', a.opened_at, 'UTC'))::bigint, "
        "  extract(microseconds FROM a.opened_at)::bigint % 1000000 * 1000, "
        "  a.opened_at <= $3 "
        "FROM ("
        "  SELECT account_id, currency, opened_at, closed_at, updated_at, balance, version"
        "  FROM accounts WHERE account_id > $1"
        + (
            " AND account_id >= $4 AND account_id < $4 || chr(127) AND starts_with(account_id, $4)"
            if prefixed
            else ""
        )
        + (f" AND account_id ~ ${4 + prefixed}" if within else "")
        + "  ORDER BY account_id LIMIT $2"
        ") a LEFT JOIN LATERAL ("
        "  SELECT balance_after, version FROM movements"
        "  WHERE a.updated_at > $3 AND a.opened_at <= $3"
        "    AND account_id = a.account_id AND occurred_at <= $3"
        "  ORDER BY occurred_at DESC, version DESC LIMIT 1"
        ") m ON true ORDER BY a.account_id"
    )
    for prefixed in (False, True)
    for within in (False, True)
}
# Totals per currency up to $1 inclusive (docs/design.md, decision 15): whole days before
# its day, whole minutes of its day before its minute, whole seconds of its minute before its
# second, then the movements, openings and closings of its own second up to $1.
_TOTALS = (
    "currency, inflow, outflow, movement_count, opened_count, closed_count, transferred_out, "
    "transferred_in"
)
_SECOND = "date_trunc('second', $1, 'UTC')"
_INFLOW_KINDS = "('DEPOSIT', 'TRANSFER_IN', 'TRANSFER_REFUND')"
TRIAL_BALANCE = f"""
SELECT currency, sum(inflow), sum(outflow), sum(movement_count)::bigint,
       sum(opened_count)::bigint, sum(closed_count)::bigint, sum(transferred_out),
       sum(transferred_in)
FROM (
    SELECT {_TOTALS} FROM currency_totals
    WHERE width = 'day' AND period_start < date_trunc('day', $1, 'UTC')
    UNION ALL
    SELECT {_TOTALS} FROM currency_totals
    WHERE width = 'minute' AND period_start >= date_trunc('day', $1, 'UTC')
      AND period_start < date_trunc('minute', $1, 'UTC')
    UNION ALL
    SELECT {_TOTALS} FROM currency_totals
    WHERE width = 'second' AND period_start >= date_trunc('minute', $1, 'UTC')
      AND period_start < {_SECOND}
    UNION ALL
    SELECT a.currency,
           CASE WHEN m.kind IN {_INFLOW_KINDS} THEN m.amount ELSE 0 END,
           CASE WHEN m.kind IN {_INFLOW_KINDS} THEN 0 ELSE m.amount END, 1, 0, 0,
           CASE WHEN m.kind = 'TRANSFER_OUT' THEN m.amount ELSE 0 END,
           CASE WHEN m.kind IN ('TRANSFER_IN', 'TRANSFER_REFUND') THEN m.amount ELSE 0 END
    FROM movements m JOIN accounts a USING (account_id)
    WHERE m.occurred_at >= {_SECOND} AND m.occurred_at <= $1
    UNION ALL
    SELECT currency, 0, 0, 0, 1, 0, 0, 0 FROM accounts
    WHERE opened_at >= {_SECOND} AND opened_at <= $1
    UNION ALL
    SELECT currency, 0, 0, 0, 0, 1, 0, 0 FROM accounts
    WHERE closed_at >= {_SECOND} AND closed_at <= $1
) t
GROUP BY currency ORDER BY currency
"""
# One statement, always one row: the transfer's columns are NULL for an unknown transfer.
TRANSFER = (
    f"WITH cp AS ({CHECKPOINTS}) "
    "SELECT t.transfer_id, t.from_account_id, t.to_account_id, t.currency, t.amount, "
    "t.cross_shard, t.sent_at, t.credited_at, t.refunded_at, t.refund_reason, "
    "cp.partitions, cp.offsets, cp.as_of "
    "FROM cp LEFT JOIN transfers t ON t.transfer_id = $2"
)
