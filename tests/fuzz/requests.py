"""Hypothesis strategies for calls to every RPC of both services: hostile fields (control
characters, NULs, huge and empty strings, extreme numbers and timestamps, raw bytes that are not
protobuf or not UTF-8, garbage tokens) mixed with valid ones (fresh UUIDv7 command ids, the
module's real accounts, the right token) so that the deep paths run too."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import queries_pb2 as q

COMMANDS = "ledger.v1.CommandService"
QUERIES = "ledger.v1.QueryService"

# The module's real accounts: (id, currency), opened and funded before the fuzz.
ACCOUNTS = (
    ("fz-eur-1", "EUR"),
    ("fz-eur-2", "EUR"),
    ("fz-eur-3", "EUR"),
    ("fz-usd-1", "USD"),
    ("fz-usd-2", "USD"),
    ("fz-jpy-1", "JPY"),
    ("fz-kwd-1", "KWD"),
)

# writer: commands and queries; reader: queries only. The rest must be refused.
TOKEN_KINDS = ("right", "right", "right", "reader", "none", "expired", "garbage")


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    request: Message | bytes
    """A message, or raw bytes sent as they are."""
    token: str
    """A kind from TOKEN_KINDS, or (kind "garbage") the garbage itself after a colon."""

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    def __repr__(self) -> str:  # keeps a failing example's report readable
        request = self.request if isinstance(self.request, bytes) else str(self.request)[:500]
        return f"Call({self.path}, token={self.token[:60]!r}, request={request!r})"


_SPECIAL_TEXTS = (
    "",
    " ",
    "\x00",
    "acc\x00",
    "\x00" * 64,
    "a\u202eb",
    "\u2028",
    "\ufeff",
    "\u200b",
    "\x1b[31m",
    "x" * 65,
    "9" * 41,
    "x" * 100_000,
    "v1.",
    "v1." + "A" * 5000,
    "v1." + "garbage!",
    "v2.MDox",
)
_CONTROL = st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Co"])
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=_CONTROL, max_size=20),
    st.sampled_from(_SPECIAL_TEXTS),
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")),
)


@dataclass(frozen=True)
class Field:
    """A field's valid values and its hostile ones (which include valid values too)."""

    valid: st.SearchStrategy[Any]
    hostile: st.SearchStrategy[Any]

    def of(self, hostile: bool) -> st.SearchStrategy[Any]:
        return st.one_of(self.valid, self.hostile) if hostile else self.valid


def _text(valid: st.SearchStrategy[str]) -> Field:
    return Field(valid, hostile_text)


_REAL = [account for account, _ in ACCOUNTS]
TRANSFER_PAIRS = [
    (source, destination)
    for source, currency in ACCOUNTS
    for destination, other in ACCOUNTS
    if source != destination and currency == other
]
account_ids = _text(st.sampled_from(_REAL))
new_account_ids = _text(st.from_regex(r"fz-new-[a-z0-9]{1,12}", fullmatch=True))
currencies = _text(st.sampled_from(["EUR", "USD", "JPY", "KWD"]))
amounts = Field(
    st.sampled_from(["1", "2", "0.5", "0.01", "3.25"]),
    st.one_of(hostile_text, st.sampled_from(["0", "-1", "1e3", "0.001", "1.", ".5", "1" * 40])),
)
command_ids = _text(st.builds(new_command_id))
owners = _text(st.sampled_from(["Ada Lovelace", "Zoë Ångström", "李四", "", "O'Brien & Co."]))
# A movement's metadata: valid up to its limits (64 and 128 characters), hostile one past them.
references = Field(
    st.sampled_from(["", "inv-2024-0042", "E2E/Ä-7 ✓", "r" * 64]),
    st.one_of(hostile_text, st.just("r" * 65)),
)
memos = Field(
    st.sampled_from(["", "Rent for March", "Miete März ✓ 🏠", "李四的付款", "m" * 128]),
    st.one_of(hostile_text, st.just("m" * 129)),
)
int64s = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 2, 3, 2**63 - 1, -(2**63)])
)
int32s = st.one_of(
    st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 10, 500, 501, 2**31 - 1])
)
versions = Field(st.none(), int64s)
page_sizes = Field(st.integers(0, 1000), int32s)
enums = Field(st.integers(0, 2), int32s)
_RECENT = st.builds(
    Timestamp, seconds=st.integers(1_700_000_000, 1_900_000_000), nanos=st.integers(0, 10**9 - 1)
)
timestamps = Field(
    st.one_of(st.none(), _RECENT), st.builds(Timestamp, seconds=int64s, nanos=int32s)
)
dates = Field(
    st.builds(
        q.Date, year=st.integers(2025, 2027), month=st.integers(1, 12), day=st.integers(1, 28)
    ),
    st.one_of(st.none(), st.builds(q.Date, year=int32s, month=int32s, day=int32s)),
)
# Consistency and page tokens: empty when valid (the fuzzer puts a real consistency token in).
opaque_tokens = Field(st.just(""), hostile_text)


def _set(message: Message, **fields: Any) -> Message:
    """`message` with `fields` set, leaving out None (an unset optional or message field)."""
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Message):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def command_requests(hostile: bool) -> dict[str, st.SearchStrategy[Message]]:
    """Each CommandService method's requests (the fuzz covers every method: unit-tested)."""

    def fields(**named: Field | st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {n: f.of(hostile) if isinstance(f, Field) else f for n, f in named.items()}
        )

    movement = {
        "command_id": command_ids,
        "account_id": account_ids,
        "amount": amounts,
        "reference": references,
        "memo": memos,
    }
    pair = st.sampled_from(TRANSFER_PAIRS)
    single: dict[str, st.SearchStrategy[Message]] = {
        "OpenAccount": fields(
            command_id=command_ids, account_id=new_account_ids, currency=currencies, owner=owners
        ).map(lambda f: cmd.OpenAccountRequest(**f)),
        "Deposit": fields(**movement, expected_version=versions).map(
            lambda f: _set(cmd.DepositRequest(), **f)
        ),
        "Withdraw": fields(**movement, expected_version=versions).map(
            lambda f: _set(cmd.WithdrawRequest(), **f)
        ),
        "Transfer": fields(
            command_id=command_ids,
            from_account_id=Field(pair.map(lambda p: p[0]), hostile_text),
            to_account_id=Field(pair.map(lambda p: p[1]), hostile_text),
            amount=amounts,
            expected_version=versions,
            reference=references,
            memo=memos,
        ).map(lambda f: _set(cmd.TransferRequest(), **f)),
        "CloseAccount": fields(
            command_id=command_ids, account_id=account_ids, expected_version=versions
        ).map(lambda f: _set(cmd.CloseAccountRequest(), **f)),
    }
    # A batch's commands: any of the five (or, hostile, none at all), atomic or not.
    members = [strategy.map(functools.partial(_member, name)) for name, strategy in single.items()]
    if hostile:
        members.append(st.just(cmd.Command()))
    batch = st.builds(
        cmd.ExecuteBatchRequest,
        commands=st.lists(st.one_of(members), min_size=0 if hostile else 1, max_size=8),
        atomic=st.booleans(),
    )
    # Not a member of a batch's `Command`: erasure is its own call.
    erase = fields(command_id=command_ids, account_id=account_ids).map(
        lambda f: cmd.EraseOwnerRequest(**f)
    )
    return {**single, "ExecuteBatch": batch, "EraseOwner": erase}


# Each command method's field in a batch's `Command`.
_MEMBER = {
    "OpenAccount": "open_account",
    "Deposit": "deposit",
    "Withdraw": "withdraw",
    "Transfer": "transfer",
    "CloseAccount": "close_account",
}


def _member(method: str, request: Message) -> cmd.Command:
    command = cmd.Command()
    getattr(command, _MEMBER[method]).CopyFrom(request)
    return command


def query_requests(hostile: bool) -> dict[str, st.SearchStrategy[Message]]:
    """Each QueryService method's requests (the fuzz covers every method: unit-tested)."""

    def fields(**named: Field | st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        named = {"consistency_token": opaque_tokens, **named}
        return st.fixed_dictionaries(
            {n: f.of(hostile) if isinstance(f, Field) else f for n, f in named.items()}
        )

    page = {"page_size": page_sizes, "page_token": opaque_tokens}
    ids = st.lists(account_ids.of(hostile), min_size=1, max_size=8)
    if hostile:
        ids = st.one_of(ids, st.just([]), st.just([_REAL[0]] * 1001))
    return {
        "GetAccount": fields(account_id=account_ids).map(lambda f: q.GetAccountRequest(**f)),
        "GetAccounts": fields(account_ids=ids).map(lambda f: q.GetAccountsRequest(**f)),
        "ListAccounts": fields(
            **page, status=enums, currency=Field(st.just(""), currencies.of(True))
        ).map(lambda f: _set(q.ListAccountsRequest(), **f)),
        "ListTransactions": fields(
            **page,
            account_id=account_ids,
            start_time=timestamps,
            end_time=timestamps,
            order=enums,
            reference=Field(st.sampled_from(["", "inv-2024-0042"]), references.hostile),
        ).map(lambda f: _set(q.ListTransactionsRequest(), **f)),
        "GetBalanceAt": fields(account_id=account_ids, at=Field(_RECENT, timestamps.hostile)).map(
            lambda f: _set(q.GetBalanceAtRequest(), **f)
        ),
        "ListBalancesAt": fields(
            **page,
            at=Field(_RECENT, timestamps.hostile),
            account_id_prefix=Field(st.sampled_from(["", "fz-", "fz-eur", "nobody"]), hostile_text),
        ).map(lambda f: _set(q.ListBalancesAtRequest(), **f)),
        "GetTrialBalance": fields(at=Field(_RECENT, timestamps.hostile)).map(
            lambda f: _set(q.GetTrialBalanceRequest(), **f)
        ),
        # Valid ids are well-formed but unknown (NOT_FOUND): the read path and the refusal.
        "GetTransfer": fields(transfer_id=command_ids).map(lambda f: q.GetTransferRequest(**f)),
        "GetDailySummaries": fields(
            **page,
            account_id=Field(st.one_of(st.just(""), account_ids.valid), hostile_text),
            first_day=dates,
            last_day=dates,
        ).map(lambda f: _set(q.GetDailySummariesRequest(), **f)),
        "GetProjectionStatus": fields().map(lambda f: q.GetProjectionStatusRequest(**f)),
        "WatchAccount": fields(account_id=account_ids).map(lambda f: q.WatchAccountRequest(**f)),
    }


def _named(
    requests: dict[str, st.SearchStrategy[Message]],
) -> st.SearchStrategy[tuple[str, Message]]:
    return st.one_of(
        [strategy.map(functools.partial(_call_of, name)) for name, strategy in requests.items()]
    )


def _call_of(method: str, request: Message) -> tuple[str, Message]:
    return method, request


def _commands(hostile: bool) -> st.SearchStrategy[tuple[str, Message]]:
    return _named(command_requests(hostile))


def _queries(hostile: bool) -> st.SearchStrategy[tuple[str, Message]]:
    return _named(query_requests(hostile))


def methods(service: str) -> list[str]:
    """Every method of `service` (COMMANDS or QUERIES), as its descriptor names them."""
    module = cmd if service == COMMANDS else q
    return list(module.DESCRIPTOR.services_by_name[service.rpartition(".")[2]].methods_by_name)


# Field 1 or 2 as a length-delimited string holding bytes that are not UTF-8, then anything.
_NOT_UTF8 = st.builds(
    lambda tag, body, tail: bytes([tag, len(body)]) + body + tail,
    st.sampled_from([0x0A, 0x12]),
    st.sampled_from([b"\xff", b"\xc3\x28", b"a\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]),
    st.binary(max_size=20),
)
# What a metadata value may hold (printable ASCII), so that the client sends it.
garbage_tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300
)
raw_bodies = st.one_of(st.binary(max_size=200), _NOT_UTF8)


@st.composite
def calls(draw: st.DrawFn) -> Call:
    """One call to any RPC of either service: either wholly valid (the right token, real
    accounts, fresh ids), or with hostile fields, token or bytes."""
    hostile = draw(st.booleans())
    if not hostile:
        if draw(st.booleans()):
            return Call(COMMANDS, *draw(_commands(hostile=False)), "right")
        return Call(QUERIES, *draw(_queries(hostile=False)), "right")
    kind = draw(st.sampled_from(TOKEN_KINDS))
    token = f"garbage:{draw(garbage_tokens)}" if kind == "garbage" else kind
    shape = draw(st.sampled_from(["command", "query", "raw"]))
    if shape == "raw":
        service = draw(st.sampled_from([COMMANDS, QUERIES]))
        method = draw(st.sampled_from(methods(service)))
        return Call(service, method, draw(raw_bodies), token)
    if shape == "command":
        return Call(COMMANDS, *draw(_commands(hostile=True)), token)
    return Call(QUERIES, *draw(_queries(hostile=True)), token)
