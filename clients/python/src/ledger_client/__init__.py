"""A client of the Ledger's gRPC API: `LedgerClient.connect(...)`, then commands and queries.

    with LedgerClient.connect(ca_file="ca.pem", token_file="writer.token") as client:
        session = client.session()
        session.open_account("alice", "EUR", "Alice")
        session.deposit("alice", Decimal("12.50"))
        print(session.get_account("alice").balance)  # Decimal('12.50'): it waited for the deposit

The generated stubs are in `ledger_client.v1`.
"""

from ledger_client.client import LedgerClient, Session
from ledger_client.command_ids import new_command_id
from ledger_client.credentials import secure_channel
from ledger_client.money import format_amount
from ledger_client.reads import (
    AccountAt,
    Accounts,
    CurrencyTotals,
    Transfer,
    TransferState,
    TrialBalance,
)
from ledger_client.results import (
    Account,
    AccountStatus,
    BalanceAt,
    BatchCommandResult,
    BatchResult,
    CommandResult,
    DailySummary,
    Freshness,
    Page,
    Transaction,
    TransactionKind,
)
from ledger_client.retry import LedgerError, Retrier, RetryPolicy

__all__ = [
    "Account",
    "AccountAt",
    "AccountStatus",
    "Accounts",
    "BalanceAt",
    "BatchCommandResult",
    "BatchResult",
    "CommandResult",
    "CurrencyTotals",
    "DailySummary",
    "Freshness",
    "LedgerClient",
    "LedgerError",
    "Page",
    "Retrier",
    "RetryPolicy",
    "Session",
    "Transaction",
    "TransactionKind",
    "Transfer",
    "TransferState",
    "TrialBalance",
    "format_amount",
    "new_command_id",
    "secure_channel",
]
