"""Keeping credentials out of log lines and error messages.

Addresses are logged and put into errors all the time (which registry, which database could not
be reached); the credentials some of them carry (`https://user:password@host`,
`postgresql://role:password@host/db`) must never be. `redact_url` hides them in one URL,
`scrub` hides known secret values anywhere in a text (a driver's message that quotes them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

# Query parameters of libpq and HTTP URLs that carry a secret rather than a setting.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword", "pass", "secret", "token"})
# userinfo in any URL-looking text, for texts that are not a single URL.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def redact_url(url: str) -> str:
    """`url` with the password of its userinfo and any secret query parameter replaced by ***;
    user, host, port, path and the other parameters stay readable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{hosts}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_PARAMETERS for key, _ in pairs):
            query = urlencode(
                [(k, REDACTED if k.lower() in _SECRET_PARAMETERS else v) for k, v in pairs],
                safe="/*",
            )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every password in a URL it contains, and every one of `secrets`, replaced by
    ***. Secrets shorter than 4 characters are replaced too (a short password is still one)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    # Longest first, so that a secret containing another is hidden whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
