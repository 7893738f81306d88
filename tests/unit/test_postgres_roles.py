"""The local stack's roles: the analysts' is a limited member of the reader's."""

from devstack.postgres_roles import (
    ANALYST_CONNECTIONS,
    ANALYST_ROLE,
    READER_ROLE,
    ROLES,
    role_statements,
)


def _statements(existing: set[str]) -> list[str]:
    sql = role_statements(existing, lambda role: f"secret-of-{role}", ("ledger",))
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


def test_missing_roles_are_made_and_every_password_is_set_again() -> None:
    statements = _statements({READER_ROLE})
    assert [s for s in statements if s.startswith("CREATE ROLE")] == [
        f"CREATE ROLE {role} LOGIN" for role in ROLES if role != READER_ROLE
    ]
    for role in ROLES:
        assert f"ALTER ROLE {role} PASSWORD 'secret-of-{role}'" in statements


def test_the_analyst_reads_what_the_reader_reads_within_limits() -> None:
    statements = _statements(set(ROLES))
    assert f"GRANT {READER_ROLE} TO {ANALYST_ROLE}" in statements
    assert f"ALTER ROLE {ANALYST_ROLE} CONNECTION LIMIT {ANALYST_CONNECTIONS}" in statements
    assert f"ALTER ROLE {ANALYST_ROLE} SET default_transaction_read_only = 'on'" in statements
    assert any(s.startswith(f"ALTER ROLE {ANALYST_ROLE} SET statement_timeout") for s in statements)
    assert not any("CREATE ROLE" in s for s in statements)
