"""The peer: the Python `eventsourcing` library doing the same durable deposits on PostgreSQL.

An aggregate per account, one event per deposit, stored by the library's PostgreSQL persistence
(psycopg 3, its connection pool) in a scratch database on the bench's PostgreSQL (every commit
fsynced, as the read model's). Its aggregate cache is on (`AGGREGATE_CACHE_MAXSIZE`), so that a
deposit costs what the ledger's in-memory write model costs it: the library still reads the
events stored since the cached version (fast-forward) and inserts the new one, checked against
the aggregate's version (its optimistic concurrency: a clash with another thread is retried).
Run sequentially and with 16 threads in this process, as an application of the library would.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError


class PeerAccount(Aggregate):
    """An account of the peer: opened, then deposited into."""

    @event("Opened")
    def __init__(self, account_id: str, currency: str) -> None:
        self.account_id = account_id
        self.currency = currency
        self.balance = Decimal(0)

    @event("Deposited")
    def deposit(self, amount: Decimal) -> None:
        self.balance += amount


class PeerBank(Application[UUID]):
    """The library's application: opens accounts and deposits, each save one transaction."""

    def open_accounts(self, count: int, prefix: str) -> list[UUID]:
        accounts = [PeerAccount(f"{prefix}{n}", "USD") for n in range(count)]
        for start in range(0, count, 1_000):
            self.save(*accounts[start : start + 1_000])
        return [account.id for account in accounts]

    def deposit(self, account: UUID, amount: Decimal) -> None:
        while True:
            held: Any = self.repository.get(account)
            held.deposit(amount)
            try:
                self.save(held)
                return
            except IntegrityError:
                continue  # another thread deposited meanwhile: decide again on the new version


def peer_environment(database_url: str) -> dict[str, str]:
    """The library's settings for the scratch database at `database_url` (trusted loopback)."""
    url = urlsplit(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_POOL_SIZE": "16",
        "POSTGRES_MAX_OVERFLOW": "0",
        "AGGREGATE_CACHE_MAXSIZE": "100000",
    }


@dataclass(frozen=True)
class PeerRun:
    deposits: int
    seconds: float
    cpu_s: float

    @property
    def commands_per_s(self) -> float:
        return self.deposits / self.seconds if self.seconds > 0 else 0.0


def deposit_for(bank: PeerBank, accounts: list[UUID], threads: int, seconds: float) -> PeerRun:
    """Deposits of 1.00 into random accounts by `threads` threads for `seconds`."""
    counts = [0] * threads
    stop = threading.Event()

    def work(slot: int) -> None:
        pick = random.Random(slot).choice
        amount = Decimal("1.00")
        while not stop.is_set():
            bank.deposit(pick(accounts), amount)
            counts[slot] += 1

    cpu_started = time.process_time()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        running = [pool.submit(work, slot) for slot in range(threads)]
        stop.wait(seconds)
        stop.set()
        for future in running:
            future.result(timeout=60)
    return PeerRun(sum(counts), time.monotonic() - started, time.process_time() - cpu_started)
