"""The movements' fast path (ledger/domain/movements.py) gives what the general path gives:
`decide` then `evolve`, event by event and state by state, or the same rejection."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.domain.account import Account, AccountStatus
from ledger.domain.commands import Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, event_time, evolve
from ledger.domain.money import INT64_MAX
from ledger.domain.movements import decide_checked, decide_movement
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.validation import require_fields
from ledger.events.records import Event

ACCOUNT_IDS = ["a", "b", "c", "gone"]
""""gone" never exists: commands naming it meet NOT_FOUND."""
OPENED = datetime(2024, 1, 1, tzinfo=UTC)

accounts_states = st.builds(
    lambda currency, status, balance, version, owner: (currency, status, balance, version, owner),
    st.sampled_from(["USD", "JPY", "KWD"]),
    st.sampled_from([AccountStatus.OPEN] * 4 + [AccountStatus.CLOSED]),
    st.one_of(
        st.integers(0, 10_000),
        st.just(0),
        st.integers(INT64_MAX - 10_000, INT64_MAX),
    ),
    st.integers(1, 6),
    st.sampled_from(["", "Ada"]),
)
ledgers = st.tuples(accounts_states, accounts_states, accounts_states).map(
    lambda states: {
        account_id: Account(account_id, currency, owner, status, balance, version, OPENED, OPENED)
        for account_id, (currency, status, balance, version, owner) in zip(
            ACCOUNT_IDS, states, strict=False
        )
    }
)
amounts = st.one_of(
    st.integers(1, 20_000).map(str),
    st.builds("{}.{:02d}".format, st.integers(0, 200), st.integers(0, 99)),
    st.builds("{}.{}".format, st.integers(0, 99), st.integers(0, 99_999)),  # too many places
    st.sampled_from(["0", "0.00", "007.50", "9223372036854775807", "92233720368547758.08"]),
    st.from_regex(r"[0-9]{1,22}(\.[0-9]{1,6})?", fullmatch=True),
    st.text(alphabet="0123456789.٣-e ", min_size=1, max_size=8),  # mostly malformed
)
versions = st.sampled_from([None] * 4 + [1, 2, 3, 4, 5, 6])
metadata = st.sampled_from(["", "", "ref-1", 'naïve "quoted" \\ text', "日本語 ✓"])
account_ids = st.sampled_from(ACCOUNT_IDS)
movements = st.one_of(
    st.builds(Deposit, st.just("c"), account_ids, amounts, versions, metadata, metadata),
    st.builds(Withdraw, st.just("c"), account_ids, amounts, versions, metadata, metadata),
    st.builds(
        Transfer, st.just("c"), account_ids, account_ids, amounts, versions, metadata, metadata
    ),
)
command_ids = st.sampled_from(["0190b2c4-5d6e-7f80-9123-456789abcdef", "cmd-1"])
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(timezones=st.just(timezone(timedelta(hours=-5))))
SETTINGS = settings(max_examples=400, deadline=None)


Decided = list[tuple[Event, Account]]


def general(command: Command, accounts: dict[str, Account], now: datetime) -> Decided:
    """What the batch path got before the fast path: decide, then evolve each event in turn."""
    states = dict(accounts)
    decided: Decided = []
    for event in decide(command, accounts, now):
        states[event.account_id] = evolve(states.get(event.account_id), event)
        decided.append((event, states[event.account_id]))
    return decided


def outcome(decide_it: Callable[[], Decided]) -> object:
    """The decided pairs as plain fields (type and every slot), or the rejection's kind and text."""
    try:
        pairs = decide_it()
    except Rejection as rejection:
        return ("rejected", rejection.kind, rejection.message)
    return [(_fields(event), _fields(state)) for event, state in pairs]


def _fields(record: Event | Account) -> tuple[object, ...]:
    # Every slot read: one the fast path forgot to set would raise AttributeError here.
    names = [field.name for field in dataclasses.fields(record)]
    return (type(record), *(getattr(record, name) for name in names))


@SETTINGS
@given(ledgers, movements, command_ids, instants)
def test_a_movement_is_decided_as_decide_and_evolve_decide_it(
    accounts: dict[str, Account],
    command: Deposit | Withdraw | Transfer,
    command_id: str,
    now: datetime,
) -> None:
    command = dataclasses.replace(command, command_id=command_id)
    try:
        require_fields(command)
    except Rejection:
        assume(False)  # the fast path's precondition: the gRPC process refuses these
    expected = outcome(lambda: general(command, accounts, now))
    assert outcome(lambda: decide_movement(command, accounts, event_time(now))) == expected
    assert outcome(lambda: decide_checked(command, accounts, now, event_time(now))) == expected


@SETTINGS
@given(
    ledgers, command_ids, instants, st.sampled_from(["a", "new"]), st.sampled_from(["USD", "EUR"])
)
def test_any_other_command_goes_the_general_way(
    accounts: dict[str, Account], command_id: str, now: datetime, account_id: str, currency: str
) -> None:
    command = OpenAccount(command_id, account_id, currency, "Ada")
    assert outcome(lambda: decide_checked(command, accounts, now, event_time(now))) == outcome(
        lambda: general(command, accounts, now)
    )


def test_a_decided_event_equals_the_one_its_constructor_builds() -> None:
    accounts = {"a": Account("a", "USD", "", AccountStatus.OPEN, 500, 3, OPENED, OPENED)}
    now = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    ((event, state),) = decide_movement(Deposit("c", "a", "1.5"), accounts, event_time(now))
    ((expected, _),) = general(Deposit("c", "a", "1.5"), accounts, now)
    assert event == expected
    assert hash(event) == hash(expected)
    assert state == Account("a", "USD", "", AccountStatus.OPEN, 650, 4, OPENED, event_time(now))


def test_a_transfer_to_itself_is_refused_even_unchecked() -> None:
    accounts = {"a": Account("a", "USD", "", AccountStatus.OPEN, 500, 3, OPENED, OPENED)}
    transfer = Transfer("c", "a", "a", "1")
    expected = outcome(lambda: general(transfer, accounts, OPENED))
    assert outcome(lambda: decide_movement(transfer, accounts, OPENED)) == expected
    assert expected == (
        "rejected",
        RejectionKind.INVALID,
        "cannot transfer from account 'a' to itself",
    )
