"""One script of every kind of command, played against a ledger through a `Caller` that picks
the command server of each call: on one shard, and on three shards with a random entry point.
Answers come back normalised (account and command ids replaced by their roles) so that the two
plays can be compared; what succeeded is kept for counting the log.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from ledger.command_ids import new_command_id
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc

PARTITIONS = 6
SHARDS = 3

if TYPE_CHECKING:  # the stubs' .pyi only: at run time a CommandServiceStub serves
    Stub: TypeAlias = cmd_grpc.CommandServiceAsyncStub
Answer = tuple[Any, ...]


def shard_of(account: str) -> int:
    return partition_of(account, PARTITIONS) % SHARDS


def accounts(prefix: str) -> dict[str, str]:
    """A and B on one shard, C and D each on one of the two others (under three shards)."""
    found: dict[int, list[str]] = {}
    n = 0
    while len(found.get(shard_of(f"{prefix}-0"), [])) < 2 or len(found) < SHARDS:
        account = f"{prefix}-{n}"
        found.setdefault(shard_of(account), []).append(account)
        n += 1
    home = shard_of(f"{prefix}-0")
    a, b = found[home][:2]
    c, d = (found[s][0] for s in sorted(found) if s != home)
    return {"A": a, "B": b, "C": c, "D": d}


@dataclass
class Caller:
    """Sends each call to `pick()`'s stub, the admin's token on EraseOwner."""

    stubs: Sequence[Stub]
    admin_stubs: Sequence[Stub]
    pick: Callable[[], int]
    roles: dict[str, str]
    succeeded: dict[str, int] = field(default_factory=dict)
    """command id -> events it appended (1, a transfer 2)."""
    tokens: dict[str, list[str]] = field(default_factory=dict)
    """command id -> the consistency tokens of its answers (a retry's too)."""
    batch_tokens: list[str] = field(default_factory=list)
    """Each ExecuteBatch answer's token, in order."""

    def _normal(self, text: str, command_ids: Sequence[str]) -> str:
        for role, account in sorted(self.roles.items(), key=lambda r: -len(r[1])):
            text = text.replace(account, role)
        for n, command_id in enumerate(command_ids):
            text = text.replace(command_id, f"<command {n}>")
        return text

    async def unary(
        self, method: str, request: Any, events: int = 1, *, admin: bool = False
    ) -> Answer:
        stubs = self.admin_stubs if admin else self.stubs
        call: Callable[..., Awaitable[Any]] = getattr(stubs[self.pick()], method)
        try:
            reply = await call(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            details = self._normal(error.details() or "", [request.command_id])
            return (method, error.code().name, details)
        self.succeeded[request.command_id] = events
        self.tokens.setdefault(request.command_id, []).append(reply.consistency_token)
        return (method, "OK", reply.version)

    async def batch(self, commands: list[cmd.Command], *, atomic: bool) -> Answer:
        request = cmd.ExecuteBatchRequest(commands=commands, atomic=atomic)
        ids = [getattr(c, str(c.WhichOneof("command"))).command_id for c in commands]
        try:
            reply = await self.stubs[self.pick()].ExecuteBatch(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            return ("ExecuteBatch", error.code().name, self._normal(error.details() or "", ids))
        self.batch_tokens.append(reply.consistency_token)
        results = []
        for command_id, command, result in zip(ids, commands, reply.results, strict=True):
            if result.code == 0:
                self.succeeded[command_id] = 2 if command.HasField("transfer") else 1
            results.append((result.code, self._normal(result.message, ids), result.version))
        return ("ExecuteBatch", bool(reply.consistency_token), tuple(results))


def _deposit(account: str, amount: str) -> cmd.DepositRequest:
    return cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount=amount)


async def play(caller: Caller) -> list[Answer]:
    """Every kind of command, refusals included; the retry's answer is checked by the caller
    (`caller.tokens`)."""
    a, b, c, d = (caller.roles[r] for r in "ABCD")
    answers = [
        await caller.unary(
            "OpenAccount",
            cmd.OpenAccountRequest(
                command_id=new_command_id(), account_id=account, currency="EUR", owner="Ada"
            ),
        )
        for account in (a, b, c, d)
    ]
    first_deposit = _deposit(a, "100")
    answers.append(await caller.unary("Deposit", first_deposit))
    answers.append(await caller.unary("Deposit", _deposit(c, "50")))
    withdraw = cmd.WithdrawRequest(command_id=new_command_id(), account_id=a, amount="10")
    answers.append(await caller.unary("Withdraw", withdraw))
    transfer = cmd.TransferRequest(
        command_id=new_command_id(), from_account_id=a, to_account_id=b, amount="30"
    )
    answers.append(await caller.unary("Transfer", transfer, events=2))
    too_much = cmd.TransferRequest(
        command_id=new_command_id(), from_account_id=a, to_account_id=b, amount="1000"
    )
    answers.append(await caller.unary("Transfer", too_much, events=2))
    answers.append(await caller.unary("Deposit", _deposit(f"{a}-nobody", "1")))
    reopen = cmd.OpenAccountRequest(command_id=new_command_id(), account_id=a, currency="EUR")
    answers.append(await caller.unary("OpenAccount", reopen))
    # The retry: answered as the original, whichever shard it enters by.
    answers.append(await caller.unary("Deposit", first_deposit))
    close = cmd.CloseAccountRequest(command_id=new_command_id(), account_id=d)
    answers.append(await caller.unary("CloseAccount", close))
    erase = cmd.EraseOwnerRequest(command_id=new_command_id(), account_id=d)
    answers.append(await caller.unary("EraseOwner", erase, admin=True))
    spread = [
        cmd.Command(deposit=_deposit(a, "5")),
        cmd.Command(deposit=_deposit(c, "5")),
        cmd.Command(deposit=_deposit(d, "5")),
        cmd.Command(withdraw=cmd.WithdrawRequest(command_id="not-an-id", account_id=b, amount="1")),
        cmd.Command(
            withdraw=cmd.WithdrawRequest(command_id=new_command_id(), account_id=b, amount="1")
        ),
    ]
    answers.append(await caller.batch(spread, atomic=False))
    one_shard = [
        cmd.Command(deposit=_deposit(a, "1")),
        cmd.Command(
            transfer=cmd.TransferRequest(
                command_id=new_command_id(), from_account_id=a, to_account_id=b, amount="2"
            )
        ),
    ]
    answers.append(await caller.batch(one_shard, atomic=True))
    return answers


def randomly(seed: int, count: int) -> Callable[[], int]:
    chooser = random.Random(seed)
    return lambda: chooser.randrange(count)
