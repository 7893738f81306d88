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
    "counterparty_id, transfer_id, command_id"
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
MOVEMENTS_PAGE = {
    descending: (
        f"SELECT {_MOVEMENT_COLUMNS} FROM movements "
        f"WHERE account_id = $1 AND version {'<' if descending else '>'} $2 "
        "AND occurred_at >= $3 AND occurred_at < $4 "
        f"ORDER BY version {'DESC' if descending else 'ASC'} LIMIT $5"
    )
    for descending in (False, True)
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
