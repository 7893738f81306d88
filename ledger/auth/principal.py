"""Who is calling: the verified token's subject, scopes and the accounts it may act on.

The interceptor (`ledger.auth.interceptor`) sets the principal of the call in a context variable
for the one decision the policy table cannot make alone: which accounts a list may contain. A
server without authentication (`LEDGER_INSECURE=1`) has no principal, so nothing is restricted.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from fnmatch import fnmatchcase

# The standard OAuth scopes claim (space-separated), and ours restricting a token's accounts.
SCOPE_CLAIM = "scope"
ACCOUNTS_CLAIM = "ledger_accounts"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    # Glob patterns (fnmatch, case-sensitive) of the account ids the token may act on; None: all.
    accounts: tuple[str, ...] | None = None

    def may_act_on(self, account_id: str) -> bool:
        return self.accounts is None or any(fnmatchcase(account_id, p) for p in self.accounts)


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "ledger_principal", default=None
)


def permitted_accounts_regex() -> str | None:
    """A PostgreSQL regular expression matching exactly the account ids the current caller may
    see (for `account_id ~ $n`), or None when every account is permitted."""
    principal = current_principal.get()
    if principal is None or principal.accounts is None:
        return None
    return accounts_regex(principal.accounts)


def accounts_regex(patterns: tuple[str, ...]) -> str:
    """The glob patterns as one anchored PostgreSQL (ARE) regular expression, with fnmatch's
    meaning: `*` any run of characters, `?` one, `[seq]` / `[!seq]` a set or its complement."""
    if not patterns:
        return "^$"  # only the empty id, which no account has: an empty list permits nothing
    return "^(?:" + "|".join(_glob_to_regex(p) for p in patterns) + ")$"


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            # As fnmatch: a "]" first in the set (after any "!") is a member, not its end.
            j = i + 1 if pattern[i : i + 1] == "!" else i
            j = j + 1 if pattern[j : j + 1] == "]" else j
            end = pattern.find("]", j)
            if end < 0:
                out.append("\\[")  # no closing bracket: a literal "["
                continue
            body = pattern[i:end]
            negate = body.startswith("!")
            members = "".join(
                "\\" + c if c in "\\[]^" else c for c in (body[1:] if negate else body)
            )
            out.append(("[^" if negate else "[") + members + "]")
            i = end + 1
        else:
            out.append(char if char.isalnum() else "\\" + char)
    return "".join(out)
