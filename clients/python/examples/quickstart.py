"""Open an account, deposit into it and read the deposit back: the README's Python example.

    python examples/quickstart.py                      # against `make run`, from the repo root
    python examples/quickstart.py --command HOST:PORT --query HOST:PORT --ca-file ca.pem \
        --token-file writer.token --account-id alice --amount 12.50

Prints what it did as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import uuid
from decimal import Decimal

from ledger_client import LedgerClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default="127.0.0.1:50051")
    parser.add_argument("--query", default="127.0.0.1:50052")
    parser.add_argument("--ca-file", default=".data/credentials/ca.pem")
    parser.add_argument("--token-file", default=".data/credentials/writer.token")
    parser.add_argument("--account-id", default=f"py-{uuid.uuid4().hex[:12]}")
    parser.add_argument("--currency", default="EUR")
    parser.add_argument("--amount", type=Decimal, default=Decimal("12.50"))
    args = parser.parse_args()

    with LedgerClient.connect(
        args.command, args.query, ca_file=args.ca_file, token_file=args.token_file
    ) as client:
        session = client.session()  # its reads wait for its own writes
        opened = session.open_account(args.account_id, args.currency, owner="Python client")
        deposited = session.deposit(args.account_id, args.amount)
        account = session.get_account(args.account_id)
    print(
        json.dumps(
            {
                "account_id": account.account_id,
                "opened_version": opened.version,
                "deposit_version": deposited.version,
                "deposit_command_id": deposited.command_id,
                "deposit_token": deposited.consistency_token,
                "balance": str(account.balance),
                "version": account.version,
                "status": account.status.name,
            }
        )
    )


if __name__ == "__main__":
    main()
