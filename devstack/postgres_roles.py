"""The local stack's PostgreSQL roles: who may log in, and what each may do.

- `ledger_projector` owns the read model: it migrates and writes it (the projector).
- `ledger_reader` may only read it: the query server's role, granted by the projector
  (LEDGER_READ_MODEL_READER_ROLE) on the live schema, a rebuild's shadow and the analysts'
  views (`ledger_analytics`).
- `ledger_analyst` is for people and their tools (psql, DuckDB, BI): a member of
  `ledger_reader`, so it reads what the query server reads and nothing more, with its own
  password (revoked without touching the query server), few connections, read-only
  transactions and time limits, so that an analyst's session cannot starve or block the
  services (README, "Analysts' access").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger.read_model_contract import SCHEMA

PROJECTOR_ROLE = "ledger_projector"
READER_ROLE = "ledger_reader"
ANALYST_ROLE = "ledger_analyst"
ROLES = (PROJECTOR_ROLE, READER_ROLE, ANALYST_ROLE)
"""The roles that log in, with a password only (and over TLS when the build has it)."""
SERVICE_ROLES = {"projector": PROJECTOR_ROLE, "query-server": READER_ROLE}
"""The role each service that uses the database connects as."""

ANALYST_CONNECTIONS = 10
"""Of the server's MAX_CONNECTIONS, the most the analysts may hold together."""
ANALYST_LIMITS = {
    # A single statement (a cursor's FETCH is one) that runs longer is cancelled.
    "statement_timeout": "15min",
    # An open transaction left idle holds back vacuum, and a rebuild's drop of the old schema.
    "idle_in_transaction_session_timeout": "5min",
    "default_transaction_read_only": "on",
}


def role_statements(
    existing: set[str], password: Callable[[str], str], databases: Sequence[str]
) -> str:
    """SQL that makes the roles missing from `existing` and sets every role's password (again
    on every start), rights and limits."""
    statements = [f"CREATE ROLE {role} LOGIN" for role in ROLES if role not in existing]
    # Passwords go on psql's standard input, not its command line (which `ps` shows).
    statements += [f"ALTER ROLE {role} PASSWORD '{password(role)}'" for role in ROLES]
    statements += [
        f'GRANT CREATE ON DATABASE "{database}" TO {PROJECTOR_ROLE}' for database in databases
    ]
    statements.append(f"GRANT {READER_ROLE} TO {ANALYST_ROLE}")
    statements.append(f"ALTER ROLE {ANALYST_ROLE} CONNECTION LIMIT {ANALYST_CONNECTIONS}")
    statements += [
        f"ALTER ROLE {ANALYST_ROLE} SET {name} = '{value}'"
        for name, value in ANALYST_LIMITS.items()
    ]
    return ";\n".join(statements) + ";"


GIVE_READ_MODEL_TO_ITS_OWNER = f"""
DO $$
DECLARE
    owned record;
BEGIN
    IF EXISTS (SELECT FROM pg_namespace WHERE nspname = '{SCHEMA}'
               AND nspowner <> '{PROJECTOR_ROLE}'::regrole) THEN
        ALTER SCHEMA {SCHEMA} OWNER TO {PROJECTOR_ROLE};
    END IF;
    FOR owned IN SELECT tablename FROM pg_tables
                 WHERE schemaname = '{SCHEMA}' AND tableowner <> '{PROJECTOR_ROLE}' LOOP
        EXECUTE format('ALTER TABLE {SCHEMA}.%I OWNER TO {PROJECTOR_ROLE}', owned.tablename);
    END LOOP;
END
$$;
"""
"""A read model the superuser created (a data directory from before the service roles) goes
to the role that migrates and writes it."""
