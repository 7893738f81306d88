"""`python -m ledger.auth token --scope ledger:read --account 'acme-*' --ttl 1h`: mint a token
with the local stack's signing key (`make run` makes it in .data/credentials/) and print it.

`python -m ledger.auth credentials --directory DIR --host command-server`: make the local
credentials (CA, server certificate, signing key, ready tokens) in DIR unless it has them, the
certificate also valid for each `--host` (compose.yaml's one-shot `credentials` service)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ledger.auth.local import LocalCredentials, ensure_local_credentials
from ledger.auth.policy import ADMIN, READ, WRITE

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def ttl_seconds(text: str) -> int:
    """`90s`, `15m`, `1h`, `30d` (or plain seconds) as seconds."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if found is None or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 15m, 1h or 30d: {text!r}"
        )
    return int(found.group(1)) * _UNITS[found.group(2) or "s"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.auth")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="mint a token with the local signing key")
    token.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=(READ, WRITE, ADMIN),
        help="a scope the token carries (repeat for several)",
    )
    token.add_argument(
        "--account",
        action="append",
        help="an account-id pattern (fnmatch: acme-*) the token is restricted to (repeatable); "
        "without it the token may act on every account",
    )
    token.add_argument("--ttl", type=ttl_seconds, default="1h", help="lifetime (default 1h)")
    token.add_argument("--subject", default="local-cli", help="the token's `sub` claim")
    token.add_argument(
        "--credentials",
        type=Path,
        default=Path(".data/credentials"),
        help="the directory `make run` made (default .data/credentials)",
    )
    made = commands.add_parser(
        "credentials", help="make the local credentials in a directory unless it has them"
    )
    made.add_argument(
        "--directory",
        type=Path,
        default=Path(".data/credentials"),
        help="where (default .data/credentials, as `make run`)",
    )
    made.add_argument(
        "--host",
        action="append",
        default=[],
        help="another DNS name the server certificate is valid for (repeatable), besides "
        "localhost, 127.0.0.1 and ::1",
    )
    args = parser.parse_args(argv)
    if args.command == "credentials":
        return _credentials(args.directory, args.host)
    credentials = LocalCredentials(args.credentials)
    if not (credentials.directory / "signing.key").exists():
        print(
            f"ledger.auth: no signing key in {credentials.directory}: start `make run` once, "
            "or pass --credentials",
            file=sys.stderr,
        )
        return 2
    print(
        credentials.mint(
            args.scope, accounts=args.account, ttl_seconds=args.ttl, subject=args.subject
        )
    )
    return 0


def _credentials(directory: Path, hosts: list[str]) -> int:
    existed = (directory / "writer.token").exists()
    credentials = ensure_local_credentials(directory, hosts)
    # Names only: the keys and tokens stay in their files.
    verb = "kept the credentials already" if existed else "made the credentials"
    print(
        f"ledger.auth: {verb} in {directory}: CA {credentials.ca.name}; tokens writer.token, "
        "reader.token, admin.token"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
