"""Cross-shard transfers (docs/design.md, decision 13): the pure decisions, the transfers
topic's messages, and two shards' writers (batcher + saga steps, each over a fake event store)
passing the messages to each other by hand, duplicates and failures included."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from command_server.saga_messages import (
    Credited,
    CreditRefused,
    UnreadableSagaMessage,
    decode,
    encode,
    message_key,
)
from command_server.shards import Shard
from command_server.snapshots import Snapshots
from command_server.transactions import AppendFailed
from command_server.transfers_in_flight import (
    COMPLETED,
    FORGOTTEN,
    REFUNDED,
    TransfersInFlight,
)
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import Ack
from command_server.writer.saga_steps import SagaSteps, transfer_states
from ledger.domain.account import Account, AccountStatus
from ledger.domain.commands import CloseAccount, Deposit, OpenAccount, Transfer
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.saga import CreditRefusal, CreditRequest, InFlight, credit, refund, send
from ledger.events.records import TransferCredited, TransferRefunded, TransferSent
from ledger.partitioning import partition_of
from tests.unit.fake_event_store import FakeEventStore
from tests.unit.test_batcher import NOW, commit
from tests.unit.test_write_model_snapshots import PARTITIONS as SNAPSHOT_PARTITIONS
from tests.unit.test_write_model_snapshots import TARGET as SNAPSHOT_TARGET
from tests.unit.test_write_model_snapshots import CapturedTopic

PARTITIONS = 4
TOPIC = "events.transfers"


def on_shard(shard: int, prefix: str) -> str:
    return next(
        f"{prefix}{n}" for n in range(1000) if partition_of(f"{prefix}{n}", PARTITIONS) % 2 == shard
    )


@dataclass
class Record:
    """A consumed message of the transfers topic, as the saga reads it."""

    _value: bytes
    _partition: int
    _offset: int

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class Side:
    """One shard's writer: its model, store, batcher and saga steps."""

    def __init__(self, index: int, count: int = 2) -> None:
        self.shard = Shard(index, count, PARTITIONS, sagas=True)
        self.model = WriteModel(1000, self.shard.owned_partitions)
        self.store = FakeEventStore()
        self.batcher = Batcher(self.model, self.store, self.shard, lambda: NOW, TOPIC)
        self.saga = SagaSteps(self.model, self.batcher, self.shard, TOPIC, object(), lambda: NOW)
        self.delivered = 0

    def outbox(self) -> list[Record]:
        """The messages this side wrote (since last asked), as the other side reads them."""
        new = self.store.messages[self.delivered :]
        self.delivered = len(self.store.messages)
        return [Record(value, partition, n) for n, (_, _, value, partition) in enumerate(new)]


@pytest.fixture
def sides() -> tuple[Side, Side]:
    return Side(0), Side(1)


SOURCE, TARGET = on_shard(0, "a"), on_shard(1, "b")


def setup(debiting: Side, crediting: Side, *, currency: str = "USD") -> None:
    commit(debiting.batcher, OpenAccount("o1", SOURCE, "USD", ""), Deposit("d1", SOURCE, "10.00"))
    commit(crediting.batcher, OpenAccount("o2", TARGET, currency, ""))


def transferred(sides: tuple[Side, Side], amount: str = "4.00") -> tuple[Side, Side]:
    """Both sides set up, and a transfer of `amount` from SOURCE to TARGET sent."""
    debiting, crediting = sides
    setup(debiting, crediting)
    commit(debiting.batcher, Transfer("t1", SOURCE, TARGET, amount))
    return debiting, crediting


def kinds(side: Side) -> list[str]:
    return [type(event).__name__ for event, _ in side.store.appended]


def test_a_transfer_to_another_shard_debits_and_requests_the_credit_in_one_transaction(
    sides: tuple[Side, Side],
) -> None:
    debiting, crediting = sides
    setup(debiting, crediting)
    before = debiting.store.transactions

    (answer,) = commit(debiting.batcher, Transfer("t1", SOURCE, TARGET, "4.00"))

    assert isinstance(answer, Ack)
    assert answer.version == 3
    assert debiting.store.transactions == before + 1
    assert kinds(debiting)[-1] == "TransferSent"
    ((_, key, value, partition),) = debiting.store.messages
    request = decode(value)
    assert isinstance(request, CreditRequest)
    assert (key, partition) == (TARGET, partition_of(TARGET, PARTITIONS))
    assert request == CreditRequest("t1", SOURCE, TARGET, 400, "USD", request.fingerprint)
    assert debiting.model.transfers.of_account(SOURCE) == 1


def test_the_credit_settles_the_transfer_once_even_if_its_messages_come_twice(
    sides: tuple[Side, Side],
) -> None:
    debiting, crediting = transferred(sides, "4.00")

    requests = debiting.outbox()
    crediting.saga.step(requests)
    crediting.saga.step(requests)
    notices = crediting.outbox()
    debiting.saga.step(notices)
    debiting.saga.step(notices)

    assert kinds(crediting).count("TransferCredited") == 1
    assert crediting.model.accounts[TARGET].balance == 400
    assert [type(decode(r.value())) for r in notices] == [Credited]
    assert transfer_states(debiting.model, ["t1"]) == [("t1", COMPLETED, "")]
    assert debiting.model.transfers.of_account(SOURCE) == 0
    # Offsets go in the transaction of what they produced.
    assert crediting.store.consumed[-1][0][0].offset == 1


def test_a_read_of_notices_only_settles_at_once_and_its_offsets_ride_the_next_transaction(
    sides: tuple[Side, Side],
) -> None:
    debiting, crediting = transferred(sides)
    crediting.saga.step(debiting.outbox())
    (notice,) = crediting.outbox()
    before = debiting.store.transactions

    debiting.saga.step([Record(notice.value(), 9, 0)])
    assert debiting.store.transactions == before
    assert transfer_states(debiting.model, ["t1"]) == [("t1", COMPLETED, "")]

    commit(debiting.batcher, Transfer("t2", SOURCE, on_shard(1, "nobody"), "1.00"))
    crediting.saga.step(debiting.outbox())
    (refusal,) = crediting.outbox()
    debiting.saga.step([Record(refusal.value(), refusal.partition(), 4)])

    assert debiting.store.transactions == before + 2
    (consumed, _) = debiting.store.consumed[-1]
    assert [(c.partition, c.offset) for c in consumed] == sorted([(9, 1), (refusal.partition(), 5)])


@pytest.mark.parametrize("why", ["closed", "currency mismatch", "does not exist"])
def test_a_refused_credit_is_refunded_once(sides: tuple[Side, Side], why: str) -> None:
    debiting, crediting = sides
    setup(debiting, crediting, currency="EUR" if why == "currency mismatch" else "USD")
    if why == "closed":
        commit(crediting.batcher, CloseAccount("c2", TARGET))
    target = TARGET if why != "does not exist" else on_shard(1, "nobody")
    commit(debiting.batcher, Transfer("t1", SOURCE, target, "4.00"))

    crediting.saga.step(debiting.outbox())
    refusals = crediting.outbox()
    debiting.saga.step(refusals)
    debiting.saga.step(refusals)

    assert "TransferCredited" not in kinds(crediting)
    assert kinds(debiting).count("TransferRefunded") == 1
    assert debiting.model.accounts[SOURCE].balance == 1000
    ((_, state, reason),) = transfer_states(debiting.model, ["t1"])
    assert state == REFUNDED
    assert why in reason


def test_an_account_with_money_in_flight_cannot_close(sides: tuple[Side, Side]) -> None:
    debiting, crediting = transferred(sides, "10.00")

    (refused,) = commit(debiting.batcher, CloseAccount("c1", SOURCE))
    crediting.saga.step(debiting.outbox())
    debiting.saga.step(crediting.outbox())
    (closed,) = commit(debiting.batcher, CloseAccount("c2", SOURCE))

    assert isinstance(refused, Rejection)
    assert refused.kind is RejectionKind.PRECONDITION
    assert "not settled yet" in refused.message
    assert isinstance(closed, Ack)


def test_a_saga_step_that_does_not_commit_is_decided_again_with_the_next(
    sides: tuple[Side, Side],
) -> None:
    debiting, crediting = transferred(sides, "4.00")
    crediting.store.fail_next = AppendFailed("broker gone")

    crediting.saga.step(debiting.outbox())
    assert crediting.saga.retrying
    assert "TransferCredited" not in kinds(crediting)
    crediting.saga.step([])

    assert not crediting.saga.retrying
    assert kinds(crediting).count("TransferCredited") == 1


def test_a_request_sent_before_the_shards_merged_into_one_is_still_credited(
    sides: tuple[Side, Side],
) -> None:
    debiting, _ = transferred(sides)
    (request,) = debiting.outbox()
    merged = Side(0, count=1)
    for event, partition in debiting.store.appended:
        merged.model.apply(event, partition, len(merged.model.logs[partition]))
    commit(merged.batcher, OpenAccount("o2", TARGET, "USD", ""))

    merged.saga.step([request])

    assert kinds(merged) == ["AccountOpened", "TransferCredited"]
    assert merged.model.accounts[TARGET].balance == 400


def test_a_message_that_cannot_be_read_stops_the_saga(sides: tuple[Side, Side]) -> None:
    _, crediting = sides
    crediting.saga.step([Record(b"{not json", 1, 0)])
    assert crediting.saga.failed is not None
    assert "cannot be read" in crediting.saga.failed


# --- the pure parts ---------------------------------------------------------------------------


def account(account_id: str, balance: int = 0, closed: bool = False) -> Account:
    status = AccountStatus.CLOSED if closed else AccountStatus.OPEN
    return Account(account_id, "USD", "", status, balance, 2, NOW, NOW)


def test_send_checks_the_debited_account_as_a_transfer_would() -> None:
    with pytest.raises(Rejection, match="insufficient funds"):
        send(Transfer("t", "a", "b", "5.00"), account("a", 100), NOW)
    with pytest.raises(Rejection, match="version 2, not the expected version 7"):
        send(Transfer("t", "a", "b", "1.00", expected_version=7), account("a", 100), NOW)
    with pytest.raises(Rejection, match="does not exist"):
        send(Transfer("t", "a", "b", "1.00"), None, NOW)

    event, request = send(Transfer("t", "a", "b", "1.00"), account("a", 100), NOW)

    assert isinstance(event, TransferSent)
    assert (event.version, event.balance_after, event.amount) == (3, 0, 100)
    assert (request.amount, request.currency, request.to_account_id) == (100, "USD", "b")


def test_credit_credits_or_says_why_not() -> None:
    request = CreditRequest("t", "a", "b", 100, "USD", "f")
    credited = credit(request, account("b", 5), NOW)
    assert isinstance(credited, TransferCredited)
    assert (credited.version, credited.balance_after, credited.command_id) == (3, 105, "t")
    assert credit(request, account("b", closed=True), NOW) == CreditRefusal("account 'b' is closed")
    assert isinstance(credit(request, None, NOW), CreditRefusal)


@pytest.mark.parametrize(
    "message",
    [
        CreditRequest("t", "a", "b", 1, "USD", "f"),
        CreditRefused("t", "a", "b", "account 'b' is closed"),
        Credited("t", "a", "b"),
    ],
)
def test_messages_round_trip_and_go_to_the_account_that_acts_next(
    message: CreditRequest | CreditRefused | Credited,
) -> None:
    assert decode(encode(message)) == message
    assert message_key(message) == ("b" if isinstance(message, CreditRequest) else "a")


@pytest.mark.parametrize("value", [b"", b"[]", b'{"v":2}', b'{"v":1,"k":"request","t":"t"}'])
def test_bytes_that_are_not_a_message_are_refused(value: bytes) -> None:
    with pytest.raises(UnreadableSagaMessage):
        decode(value)


def test_in_flight_memory_is_bounded_and_answers_pending_for_what_it_forgot() -> None:
    transfers = TransfersInFlight(remembered=2)
    for n in range(3):
        sent, _ = send(Transfer(f"t{n}", "a", "b", "1.00"), account("a", 1000), NOW)
        transfers.add(sent)
    assert transfers.of_account("a") == 3
    for n in range(3):
        assert transfers.settle(f"t{n}", COMPLETED)
    assert not transfers.settle("t0", COMPLETED)
    assert [transfers.state(f"t{n}")[0] for n in range(3)] == [FORGOTTEN, COMPLETED, COMPLETED]
    assert transfers.state("t3") == (FORGOTTEN, "")


def test_a_refund_event_settles_the_transfer_in_the_write_model() -> None:
    model = WriteModel(100, [0])
    sent, _ = send(Transfer("t", "a", "b", "1.00"), account("a", 100), NOW)
    model.apply_decided(sent, account("a"), 0, 0)
    refunded = refund(InFlight.of(sent), account("a"), "closed", NOW)
    assert isinstance(refunded, TransferRefunded)
    model.apply_decided(refunded, account("a", 100), 0, 1)
    assert model.transfers.state("t") == (REFUNDED, "closed")


def test_transfers_in_flight_and_the_saga_position_survive_a_snapshot() -> None:
    topic = CapturedTopic()
    model = WriteModel(1000, SNAPSHOT_PARTITIONS)
    writer = Snapshots(topic, SNAPSHOT_TARGET)  # type: ignore[arg-type]
    writer.restore(model, SNAPSHOT_PARTITIONS, {})
    sent, _ = send(Transfer("t", "a", "b", "1.00"), account("a", 100), NOW)
    model.apply_decided(sent, account("a"), 0, 0)
    model.saga_positions[0] = 7
    writer.write(model)

    again = WriteModel(1000, SNAPSHOT_PARTITIONS)
    Snapshots(topic, SNAPSHOT_TARGET).restore(again, SNAPSHOT_PARTITIONS, topic.latest)  # type: ignore[arg-type]

    assert again.transfers.sent == {"t": InFlight.of(sent)}
    assert again.transfers.of_account("a") == 1
    assert again.saga_positions == {0: 7}
