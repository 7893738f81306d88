"""The fuzz's ledger: the three processes with TLS and tokens, and a client that calls any RPC
with any token and keeps the books (which commands were accepted, which codes came back)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from devstack.stack import LocalStack
from ledger.auth.local import LocalCredentials
from ledger.auth.policy import READ, WRITE
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as cmd
from tests.e2e.running_ledger import RunningLedger, running_ledger
from tests.fuzz.requests import ACCOUNTS, COMMANDS, Call

CALL_TIMEOUT_S = 5.0
# A command that got no definite answer is sent again (same id) at most this many times.
_ATTEMPTS = 4
_UNSETTLED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A batch result's code (google.rpc.Code) -> its grpc.StatusCode's value.
_CODES = {code.value[0]: code.value for code in grpc.StatusCode}
_METHOD_OF = {
    "open_account": "OpenAccount",
    "deposit": "Deposit",
    "withdraw": "Withdraw",
    "transfer": "Transfer",
    "close_account": "CloseAccount",
}


@dataclass
class Fuzzer:
    """Calls the servers as any client might, remembering what the event log must now hold."""

    commands: grpc.Channel
    queries: grpc.Channel
    tokens: dict[str, str | None]
    accepted: dict[str, int] = field(default_factory=dict)
    """command id -> events its command appended (1, or 2 for a transfer)."""
    unsettled: dict[str, int] = field(default_factory=dict)
    """Commands never answered definitely: their events may or may not be in the log."""
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(method, status code name) -> calls."""
    consistency_token: str = ""
    """A real token, from the last command accepted."""
    last_reply: bytes = b""
    """The serialized reply of the last call answered OK."""

    def call(self, call: Call) -> tuple[grpc.StatusCode, str]:
        """The status code and details of `call` (retried while unsettled, if a command)."""
        request = call.request
        if self.consistency_token and not isinstance(request, bytes):
            fields = request.DESCRIPTOR.fields_by_name
            if "consistency_token" in fields and not getattr(request, "consistency_token"):  # noqa: B009
                setattr(request, "consistency_token", self.consistency_token)  # noqa: B010
        for _ in range(_ATTEMPTS if call.service == COMMANDS else 1):
            code, details, reply = self._once(call)
            if code not in _UNSETTLED:
                break
        self.codes[(call.method, code.name)] += 1
        if isinstance(reply, bytes):
            self.last_reply = reply
        if call.service == COMMANDS and not isinstance(request, bytes):
            self._book(call.method, request, code, reply)
        return code, details

    def _once(self, call: Call) -> tuple[grpc.StatusCode, str, object]:
        channel = self.commands if call.service == COMMANDS else self.queries
        serialize = None if isinstance(call.request, bytes) else _serialized
        metadata = self._metadata(call.token)
        try:
            if call.method == "WatchAccount":
                stream: Any = channel.unary_stream(call.path, request_serializer=serialize)
                responses = stream(call.request, timeout=CALL_TIMEOUT_S, metadata=metadata)
                reply = next(iter(responses), None)
                responses.cancel()
            else:
                unary: Any = channel.unary_unary(call.path, request_serializer=serialize)
                reply = unary(call.request, timeout=CALL_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", None
        return grpc.StatusCode.OK, "", reply

    def _metadata(self, kind: str) -> tuple[tuple[str, str], ...]:
        if kind.startswith("garbage:"):
            return (("authorization", f"Bearer {kind.removeprefix('garbage:')}".rstrip()),)
        token = self.tokens[kind]
        return () if token is None else (("authorization", f"Bearer {token}"),)

    def _book(self, method: str, request: object, code: grpc.StatusCode, reply: object) -> None:
        if isinstance(request, cmd.ExecuteBatchRequest):
            self._book_batch(request, code)
            return
        command_id = str(getattr(request, "command_id", ""))
        if code == grpc.StatusCode.OK:
            self.consistency_token = cmd.DepositResponse.FromString(
                self.last_reply
            ).consistency_token
        self._book_one(method, command_id, code)

    def _book_batch(self, request: cmd.ExecuteBatchRequest, code: grpc.StatusCode) -> None:
        """Each command of a batch, by its own result (all alike when the call itself failed)."""
        codes = [code] * len(request.commands)
        if code == grpc.StatusCode.OK:
            response = cmd.ExecuteBatchResponse.FromString(self.last_reply)
            codes = [grpc.StatusCode(_CODES[result.code]) for result in response.results]
            if response.consistency_token:
                self.consistency_token = response.consistency_token
        for command, outcome in zip(request.commands, codes, strict=True):
            kind = command.WhichOneof("command")
            if kind is not None:
                member = getattr(command, kind)
                self._book_one(_METHOD_OF[kind], member.command_id, outcome)

    def _book_one(self, method: str, command_id: str, code: grpc.StatusCode) -> None:
        events = 2 if method == "Transfer" else 1
        if code == grpc.StatusCode.OK:
            self.unsettled.pop(command_id, None)
            self.accepted.setdefault(command_id, events)
        elif code in _UNSETTLED and command_id not in self.accepted:
            self.unsettled[command_id] = events


def _serialized(message: Message) -> bytes:
    return message.SerializeToString()


@pytest.fixture(scope="module")
async def ledger(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningLedger]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    async with running_ledger(stack, data_dir, secure=True) as running:
        yield running


def _tokens(credentials: LocalCredentials) -> dict[str, str | None]:
    return {
        # Admin, so that EraseOwner (admin only) reaches its deep paths too.
        "right": credentials.token("admin"),
        "reader": credentials.token("reader"),
        "none": None,
        "expired": credentials.mint([READ, WRITE], ttl_seconds=-300),
    }


@pytest.fixture(scope="module")
def fuzzer(ledger: RunningLedger) -> Iterator[Fuzzer]:
    """A client with the module's accounts opened and funded."""
    assert ledger.credentials is not None
    tls = grpc.ssl_channel_credentials(root_certificates=ledger.credentials.ca.read_bytes())
    with (
        grpc.secure_channel(ledger.command_server.address, tls) as commands,
        grpc.secure_channel(ledger.query_server.address, tls) as queries,
    ):
        fuzzer = Fuzzer(commands, queries, _tokens(ledger.credentials))
        for account, currency in ACCOUNTS:
            opened = cmd.OpenAccountRequest(
                command_id=new_command_id(), account_id=account, currency=currency, owner="F"
            )
            funded = cmd.DepositRequest(
                command_id=new_command_id(), account_id=account, amount="50"
            )
            for method, request in (("OpenAccount", opened), ("Deposit", funded)):
                code, details = fuzzer.call(Call(COMMANDS, method, request, "right"))
                assert code == grpc.StatusCode.OK, details
        yield fuzzer
