"""The command load: clients with a mixed workload, and the resend of acknowledged commands once
every fault is over (the readers are in `readers`).

Each client owns a few accounts: it deposits into them, withdraws from them, transfers from
them to any open account of the same currency (its own or another client's), and now and then
retires one (withdraws exactly its balance, then closes it) and opens a new one. A client knows
its accounts' balances from the answers it got, so every command it sends is valid when the
server's state is right; only deliberate probes (an overdraft, closing a non-zero balance, a
command_id reused with another payload) expect a refusal. A refusal nobody provoked is a sign
that the server lost or invented state, and the checks count it.

Deliberate retries (see `journal.Mode`): an answer lost on purpose (a first attempt with a few
milliseconds of deadline), a resend after the acknowledgement, two copies at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from fault_drill.book import RETIRING, UNCERTAIN, UNKNOWN, AccountView, Book
from fault_drill.calls import GiveUp, Reply, RetryPolicy, send, settle
from fault_drill.config import DrillConfig
from fault_drill.journal import OK, Attempt, CommandRecord, Journal, Kind, Mode, Status
from fault_drill.sagas import TransferWatch
from ledger.command_ids import new_command_id
from ledger.domain.money import format_amount
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc

CURRENCIES = ("EUR", "JPY", "KWD", "EUR")
"""Per account slot: two, zero and three decimal places."""
MAX_AMOUNT = {"EUR": 50_000, "JPY": 20_000, "KWD": 200_000}
"""Largest deposit, in minor units."""
OVERDRAFT = 10**12
"""Added to a balance to make a withdrawal no in-flight deposit could cover."""

INSUFFICIENT = "FAILED_PRECONDITION"


def shard_of(account_id: str, config: DrillConfig) -> int:
    """The command-server shard owning the account (README, "Shards and routing")."""
    return partition_of(account_id, config.partitions) % config.shards


class Client:
    """One command client: sends commands on its own accounts until told to stop."""

    def __init__(
        self,
        index: int,
        stub: Callable[[], cmd_grpc.CommandServiceAsyncStub],
        *,
        book: Book,
        journal: Journal,
        config: DrillConfig,
        run_id: str,
        stop: asyncio.Event,
        give_up: GiveUp,
        watch: TransferWatch | None = None,
    ) -> None:
        self.index = index
        self._watch = watch
        self._stub_of_live = stub
        self._book = book
        self._journal = journal
        self._config = config
        self._run_id = run_id
        self._stop = stop
        self._give_up = give_up
        self._rng = random.Random(f"{config.seed}/client/{index}")
        self._policy = RetryPolicy(
            config.call_deadline_s, config.backoff_base_s, config.backoff_cap_s
        )
        self._opened = 0
        self.reuse_probes = 0

    @property
    def _stub(self) -> cmd_grpc.CommandServiceAsyncStub:
        """The live command server's stub: looked up at every attempt, so that a retry goes to
        the instance that took the shard over."""
        return self._stub_of_live()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.step()
            await asyncio.sleep(self._rng.uniform(0, self._config.think_time_s))

    async def step(self) -> None:
        rng = self._rng
        mine = self._book.owned(self.index)
        if len(mine) < self._config.accounts_per_client and (not mine or rng.random() < 0.3):
            await self._open()
            return
        roll = rng.random()
        if roll < 0.30:
            await self._deposit(rng.choice(mine))
        elif roll < 0.52:
            await self._withdraw(rng.choice(mine))
        elif roll < 0.87:
            await self._transfer(rng.choice(mine))
        elif roll < 0.92:
            await self._retire(mine)
        elif roll < 0.95:
            await self._overdraw(rng.choice(mine))
        elif roll < 0.98:
            await self._close_non_zero(mine)
        else:
            await self._deposit(rng.choice(mine))

    # --- The commands ----------------------------------------------------------------------

    async def _open(self) -> None:
        slot = self._opened
        self._opened += 1
        account_id = f"{self._run_id}-c{self.index}-a{slot}"
        currency = CURRENCIES[slot % len(CURRENCIES)]
        request = cmd.OpenAccountRequest(
            command_id=new_command_id(),
            account_id=account_id,
            currency=currency,
            owner=f"drill client {self.index}",
        )
        record = self._record(Kind.OPEN, (account_id,), None, currency, OK, request)
        await self._execute(record, lambda t: self._stub.OpenAccount(request, timeout=t))

    async def _deposit(self, account: AccountView, *, amount: int | None = None) -> None:
        amount = amount or self._rng.randint(1, MAX_AMOUNT[account.currency])
        record, acked = await self._send_movement(Kind.DEPOSIT, account, amount, OK)
        if acked and self._rng.random() < 0.02:
            await self._reuse_probe(record)

    async def _withdraw(self, account: AccountView) -> None:
        if account.available <= 0:
            await self._deposit(account)
            return
        amount = self._rng.randint(1, max(1, account.available // 2))
        await self._send_withdrawal(account, amount, OK)

    async def _send_withdrawal(self, account: AccountView, amount: int, expect: str) -> bool:
        _, acked = await self._send_movement(Kind.WITHDRAW, account, amount, expect)
        return acked

    async def _send_movement(
        self, kind: Kind, account: AccountView, amount: int, expect: str
    ) -> tuple[CommandRecord, bool]:
        """Journal a deposit or withdrawal of `amount` and send it; its record, and if acked."""
        request_type, method = _RPC_OF[kind]
        request = request_type(
            command_id=new_command_id(),
            account_id=account.account_id,
            amount=format_amount(amount, account.currency),
        )
        record = self._record(
            kind, (account.account_id,), amount, account.currency, expect, request
        )
        acked = await self._execute(
            record, lambda t: getattr(self._stub, method)(request, timeout=t)
        )
        return record, acked

    async def _transfer(self, source: AccountView) -> None:
        targets = [a for a in self._book.open_in(source.currency) if a is not source]
        config = self._config
        if config.shards > 1 and not config.cross_shard_transfers:
            home = shard_of(source.account_id, config)
            targets = [a for a in targets if shard_of(a.account_id, config) == home]
        if source.available <= 0 or not targets:
            await self._deposit(source)
            return
        target = self._rng.choice(targets)
        amount = self._rng.randint(1, max(1, source.available // 3))
        request = cmd.TransferRequest(
            command_id=new_command_id(),
            from_account_id=source.account_id,
            to_account_id=target.account_id,
            amount=format_amount(amount, source.currency),
        )
        record = self._record(
            Kind.TRANSFER,
            (source.account_id, target.account_id),
            amount,
            source.currency,
            OK,
            request,
        )
        acked = await self._execute(record, lambda t: self._stub.Transfer(request, timeout=t))
        if acked and record.answered_pending:
            # The money is in flight until the saga ends: the book holds both accounts.
            if self._watch is None:
                self._book.saga_ended(record, UNKNOWN)
            else:
                self._watch.follow(record)

    async def _retire(self, mine: list[AccountView]) -> None:
        """Withdraw exactly the balance, then close: needs an exactly known balance, so no
        command may be in flight on the account (new transfers to it stop at once)."""
        idle = [a for a in mine if a.inflight == 0]
        if not idle:
            return
        account = self._rng.choice(idle)
        account.state = RETIRING
        # Transfers to it that are still in flight resolve at the latest when clients give up.
        await account.idle.wait()
        if account.state != RETIRING:
            return  # a command on it never got an answer: its balance is not known exactly
        if account.balance > 0 and not await self._send_withdrawal(account, account.balance, OK):
            account.state = UNCERTAIN
            return
        request = cmd.CloseAccountRequest(
            command_id=new_command_id(), account_id=account.account_id
        )
        record = self._record(
            Kind.CLOSE, (account.account_id,), None, account.currency, OK, request
        )
        if not await self._execute(record, lambda t: self._stub.CloseAccount(request, timeout=t)):
            account.state = UNCERTAIN

    async def _overdraw(self, account: AccountView) -> None:
        """A withdrawal of more than any balance the account could have: must be refused."""
        await self._send_withdrawal(account, account.balance + OVERDRAFT, INSUFFICIENT)

    async def _close_non_zero(self, mine: list[AccountView]) -> None:
        """Closing an account whose balance is surely not zero: must be refused."""
        candidates = [a for a in mine if a.balance > 0 and a.pending_debits == 0]
        if not candidates:
            return
        account = self._rng.choice(candidates)
        request = cmd.CloseAccountRequest(
            command_id=new_command_id(), account_id=account.account_id
        )
        record = self._record(
            Kind.CLOSE, (account.account_id,), None, account.currency, INSUFFICIENT, request
        )
        await self._execute(record, lambda t: self._stub.CloseAccount(request, timeout=t))

    async def _reuse_probe(self, original: CommandRecord) -> None:
        """The same command_id with another payload: must be refused with ALREADY_EXISTS."""
        changed = cmd.DepositRequest(
            command_id=original.command_id,
            account_id=original.accounts[0],
            amount=format_amount((original.amount or 0) + 1, original.currency),
        )
        probe = CommandRecord(
            original.command_id,
            original.kind,
            self.index,
            original.accounts,
            (original.amount or 0) + 1,
            original.currency,
            "ALREADY_EXISTS",
            {},
        )
        final = await send(
            probe,
            lambda t: self._stub.Deposit(changed, timeout=t),
            journal=self._journal,
            policy=self._policy,
            rng=self._rng,
            give_up=self._give_up,
            mode=Mode.PLAIN,
        )
        code = "GAVE_UP" if final is None else final.code
        detail = "" if final is None else final.detail
        self._journal.reuse_probes.append((original.command_id, code, detail))
        self.reuse_probes += 1

    # --- Sending ----------------------------------------------------------------------------

    def _record(
        self,
        kind: Kind,
        accounts: tuple[str, ...],
        amount: int | None,
        currency: str,
        expect: str,
        request: Message,
    ) -> CommandRecord:
        fields = {f.name: v for f, v in request.ListFields()}
        roll = self._rng.random()
        mode = Mode.LOST_ANSWER if roll < 0.08 else Mode.TWIN if roll < 0.13 else Mode.PLAIN
        return self._journal.add(
            CommandRecord(
                fields["command_id"],
                kind,
                self.index,
                accounts,
                amount,
                currency,
                expect,
                fields,
                mode=mode,
            )
        )

    async def _execute(
        self, record: CommandRecord, call: Callable[[float], Awaitable[Reply]]
    ) -> bool:
        """Send the command in its mode until it has an outcome; True if acknowledged."""
        self._book.begin(record)
        try:
            if record.mode is Mode.TWIN:
                finals = await asyncio.gather(self._send(record, call), self._send(record, call))
                for final in finals:
                    settle(record, final)
            elif record.mode is Mode.LOST_ANSWER:
                first = self._rng.uniform(0.001, 0.03)
                settle(record, await self._send(record, call, record.mode, first))
            else:
                settle(record, await self._send(record, call))
        finally:
            self._book.end(record)
        acked = record.status is Status.ACKNOWLEDGED
        if acked and self._rng.random() < 0.08:
            await asyncio.sleep(self._rng.uniform(0, 0.3))
            await self._send(record, call, Mode.RESEND)
        return acked

    async def _send(
        self,
        record: CommandRecord,
        call: Callable[[float], Awaitable[Reply]],
        mode: Mode | None = None,
        first_deadline_s: float | None = None,
    ) -> Attempt | None:
        return await send(
            record,
            call,
            journal=self._journal,
            policy=self._policy,
            rng=self._rng,
            give_up=self._give_up,
            mode=mode or record.mode,
            first_deadline_s=first_deadline_s,
        )


async def resend_acknowledged(
    records: list[CommandRecord],
    stub: Callable[[], cmd_grpc.CommandServiceAsyncStub],
    *,
    journal: Journal,
    config: DrillConfig,
    give_up: GiveUp,
) -> None:
    """Send acknowledged commands again once every fault is over: a server whose dedupe memory
    was rebuilt from the log must answer each with its original version and token."""
    rng = random.Random(f"{config.seed}/post-recovery")
    policy = RetryPolicy(config.call_deadline_s, config.backoff_base_s, config.backoff_cap_s)
    sample = rng.sample(records, min(config.resend_sample, len(records)))
    semaphore = asyncio.Semaphore(8)

    async def one(record: CommandRecord) -> None:
        call = _call_for(stub, record)
        async with semaphore:
            await send(
                record,
                call,
                journal=journal,
                policy=policy,
                rng=rng,
                give_up=give_up,
                mode=Mode.POST_RECOVERY,
            )

    await asyncio.gather(*(one(record) for record in sample))


_RPC_OF = {
    Kind.OPEN: (cmd.OpenAccountRequest, "OpenAccount"),
    Kind.DEPOSIT: (cmd.DepositRequest, "Deposit"),
    Kind.WITHDRAW: (cmd.WithdrawRequest, "Withdraw"),
    Kind.TRANSFER: (cmd.TransferRequest, "Transfer"),
    Kind.CLOSE: (cmd.CloseAccountRequest, "CloseAccount"),
}
"""Per kind of command: its request message and the CommandService method that takes it."""


def _call_for(
    stub: Callable[[], cmd_grpc.CommandServiceAsyncStub], record: CommandRecord
) -> Callable[[float], Awaitable[Reply]]:
    """The call that sends `record`'s request again, exactly as it was first sent (to the
    live command server of each attempt)."""
    request_type, method = _RPC_OF[record.kind]
    request = request_type(**record.request)
    return lambda t: getattr(stub(), method)(request, timeout=t)
