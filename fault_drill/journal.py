"""The client-side journal: every command sent, every attempt, every answer.

What the clients believe happened is the yardstick the log and the read model are checked
against: a command the journal shows as acknowledged must be in the log exactly once, with the
version and consistency token its answer carried.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
"""A command's expectation when it is valid (see `CommandRecord.expect`)."""


class Kind(enum.StrEnum):
    OPEN = "open"
    DEPOSIT = "deposit"
    WITHDRAW = "withdraw"
    TRANSFER = "transfer"
    CLOSE = "close"


EVENTS_PER_COMMAND = {
    Kind.OPEN: 1,
    Kind.DEPOSIT: 1,
    Kind.WITHDRAW: 1,
    Kind.TRANSFER: 2,
    Kind.CLOSE: 1,
}


class Mode(enum.StrEnum):
    """How a command is sent; all but PLAIN are deliberate retries with the same command_id."""

    PLAIN = "plain"
    LOST_ANSWER = "lost_answer"
    """The first attempt has a deadline of a few milliseconds, so its answer is usually lost
    while the server goes on and commits it; then the client retries as usual."""
    RESEND = "resend"
    """Sent again after it was acknowledged: must get the very same answer."""
    TWIN = "twin"
    """Two copies sent at once: both must get the same answer, the log has it once."""
    POST_RECOVERY = "post_recovery"
    """Sent again after every fault is over (the dedupe memory was rebuilt from the log)."""


class Result(enum.StrEnum):
    ACK = "ack"
    REFUSED = "refused"
    """A final answer: a domain refusal or another status a client does not retry."""
    TRANSIENT = "transient"
    """UNAVAILABLE, DEADLINE_EXCEEDED, a broken connection...: the client retries."""


class Status(enum.StrEnum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    REFUSED = "refused"
    UNRESOLVED = "unresolved"
    """The client gave up (at the end of the drill) without a final answer."""


@dataclass(slots=True)
class Attempt:
    started: float
    """Seconds since the drill started."""
    finished: float
    result: Result
    code: str
    """The gRPC status code's name (OK for an acknowledgement)."""
    mode: Mode
    version: int | None = None
    token: str | None = None
    detail: str = ""
    pending: bool = False
    """An acknowledged cross-shard transfer whose end the server did not know in time."""


@dataclass(slots=True)
class CommandRecord:
    command_id: str
    kind: Kind
    client: int
    accounts: tuple[str, ...]
    """The accounts the command touches: (account,), or (source, destination) for a transfer."""
    amount: int | None
    """Minor units, None for opens and closes."""
    currency: str
    expect: str
    """What the client expected: OK, or the refusal it provoked on purpose."""
    request: dict[str, Any]
    """The request's fields as sent (for the journal file and reproduction)."""
    mode: Mode = Mode.PLAIN
    attempts: list[Attempt] = field(default_factory=list)
    status: Status = Status.PENDING
    version: int | None = None
    """From the first acknowledgement."""
    token: str | None = None
    refusal: str | None = None
    answered_pending: bool = False
    """A transfer acknowledged with status PENDING: the money is in flight until its saga ends."""

    @property
    def acks(self) -> list[Attempt]:
        return [a for a in self.attempts if a.result is Result.ACK]

    @property
    def retried(self) -> bool:
        """Whether an attempt failed transiently before the command's first final answer."""
        return bool(self.attempts) and self.attempts[0].result is Result.TRANSIENT

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["accounts"] = list(self.accounts)
        return document


class Journal:
    def __init__(self, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started
        self.wall_started = time.time()
        self._records: dict[str, CommandRecord] = {}
        self.reuse_probes: list[tuple[str, str, str]] = []
        """(command_id, status code, detail) of the same command_id sent with another payload."""

    def now(self) -> float:
        return time.monotonic() - self.started

    def add(self, record: CommandRecord) -> CommandRecord:
        if record.command_id in self._records:
            raise ValueError(f"command id {record.command_id!r} used twice by the drill")
        self._records[record.command_id] = record
        return record

    def get(self, command_id: str) -> CommandRecord | None:
        return self._records.get(command_id)

    def __iter__(self) -> Iterator[CommandRecord]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def acknowledged(self) -> list[CommandRecord]:
        return [r for r in self._records.values() if r.status is Status.ACKNOWLEDGED]

    def write(self, path: Path) -> None:
        """One JSON document per line, one line per command."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as out:
            for record in self._records.values():
                out.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
