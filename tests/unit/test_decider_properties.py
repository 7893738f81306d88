"""Properties of the decider over random command sequences."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain import commands
from ledger.domain.account import Account
from ledger.domain.decider import decide, evolve, replay
from ledger.domain.rejection import Rejection
from ledger.events import records

START = datetime(2024, 1, 1, tzinfo=UTC)

account_ids = st.sampled_from(["a", "b", "c", "d"])
# Valid for USD; those with decimals are rejected on JPY accounts. Malformed amounts are covered by
# the rule tests: here they would only dilute the sequences.
amounts = st.one_of(
    st.integers(min_value=1, max_value=500).map(str),
    st.builds("{}.{:02d}".format, st.integers(0, 300), st.integers(0, 99)),
)
# Mostly absent: a random expected version is nearly always stale and would hide the other rules.
expected_versions = st.sampled_from([None] * 8 + [1, 2, 3])
deposits = st.builds(commands.Deposit, st.just(""), account_ids, amounts, expected_versions)
withdrawals = st.builds(commands.Withdraw, st.just(""), account_ids, amounts, expected_versions)
# Two distinct accounts: a transfer to itself is only ever rejected.
account_pairs = st.permutations(["a", "b", "c", "d"]).map(lambda ids: ids[:2])
transfers = st.builds(
    lambda pair, amount, version: commands.Transfer("", pair[0], pair[1], amount, version),
    account_pairs,
    amounts,
    expected_versions,
)
closings = st.builds(commands.CloseAccount, st.just(""), account_ids, expected_versions)
# Weighted by repetition (sampled_from picks uniformly; one_of would not): closing succeeds only
# at zero balance and ends an account's story, so it comes rarely; money moves often.
any_commands: st.SearchStrategy[commands.Command] = st.sampled_from(
    [deposits] * 4 + [withdrawals] * 2 + [transfers] * 4 + [closings]
).flatmap(lambda kind: kind)
# Every account is opened first (one in another currency) so later commands have something to act
# on; opening itself is covered by the rule tests.
OPENINGS: list[commands.Command] = [
    commands.OpenAccount("", "a", "USD", "owner a"),
    commands.OpenAccount("", "b", "USD", "owner b"),
    commands.OpenAccount("", "c", "USD", "owner c"),
    commands.OpenAccount("", "d", "JPY", "owner d"),
]
histories = st.lists(any_commands, min_size=10, max_size=60).map(lambda then: OPENINGS + then)
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)


@dataclass
class Run:
    """What the ledger recorded for a sequence of commands, and every state it went through."""

    accounts: dict[str, Account] = field(default_factory=dict)
    log: list[records.Event] = field(default_factory=list)
    states: list[dict[str, Account]] = field(default_factory=list)


def run(history: list[commands.Command]) -> Run:
    """Feed each command to decide, as the command server does: only the touched accounts."""
    result = Run()
    for index, unnamed in enumerate(history):
        command = replace(unnamed, command_id=f"cmd-{index}")
        touched = {
            i: result.accounts[i] for i in commands.accounts_of(command) if i in result.accounts
        }
        try:
            events = decide(command, touched, START + timedelta(seconds=index))
        except Rejection:
            continue
        for event in events:
            result.accounts[event.account_id] = evolve(result.accounts.get(event.account_id), event)
        result.log.extend(events)
        result.states.append(dict(result.accounts))
    return result


@PROPERTY_SETTINGS
@given(histories)
def test_no_balance_is_ever_negative(history: list[commands.Command]) -> None:
    for accounts in run(history).states:
        assert all(account.balance >= 0 for account in accounts.values())


@PROPERTY_SETTINGS
@given(histories)
def test_folding_the_log_again_gives_the_same_state(history: list[commands.Command]) -> None:
    recorded = run(history)
    assert replay(recorded.log) == recorded.accounts
    # The command server rebuilds each partition on its own: one account's events suffice.
    for account_id, account in recorded.accounts.items():
        own = [event for event in recorded.log if event.account_id == account_id]
        assert replay(own) == {account_id: account}


@PROPERTY_SETTINGS
@given(histories)
def test_money_is_conserved(history: list[commands.Command]) -> None:
    recorded = run(history)
    expected: Counter[str] = Counter()
    for event in recorded.log:
        currency = recorded.accounts[event.account_id].currency
        if isinstance(event, records.MoneyDeposited):
            expected[currency] += event.amount
        elif isinstance(event, records.MoneyWithdrawn):
            expected[currency] -= event.amount
    held: Counter[str] = Counter()
    for account in recorded.accounts.values():
        held[account.currency] += account.balance
    assert {c: n for c, n in held.items() if n} == {c: n for c, n in expected.items() if n}


@PROPERTY_SETTINGS
@given(histories)
def test_every_transfer_debits_and_credits_the_same_amount(history: list[commands.Command]) -> None:
    legs: dict[str, list[int]] = {}
    for event in run(history).log:
        if isinstance(event, records.TransferDebited):
            legs.setdefault(event.transfer_id, []).append(-event.amount)
        elif isinstance(event, records.TransferCredited):
            legs.setdefault(event.transfer_id, []).append(event.amount)
    assert all(len(amounts) == 2 and sum(amounts) == 0 for amounts in legs.values())


@PROPERTY_SETTINGS
@given(histories)
def test_versions_are_contiguous_and_event_ids_unique(history: list[commands.Command]) -> None:
    log = run(history).log
    last_version: dict[str, int] = {}
    for event in log:
        assert event.version == last_version.get(event.account_id, 0) + 1
        last_version[event.account_id] = event.version
    assert len({event.event_id for event in log}) == len(log)
