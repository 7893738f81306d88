"""ExecuteBatch's fast path (`batch_admission.packed_if_valid`) packs exactly what the general
path (the unary call's translation and checks, then `pack_command`) would, and takes nothing
the general path refuses; every refusal keeps the unary call's message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from command_server import batch_admission
from command_server.batch_admission import Admission, admitted, checked, id_horizon, packed_if_valid
from ledger.command_ids import new_command_id
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.v1 import commands_pb2 as pb

NOW = datetime(2026, 12, 7, 17, 0, 0, 123_456, tzinfo=UTC)
SKEW = timedelta(seconds=60)
HORIZON_MS = (NOW + SKEW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

# Each field's strategy gives a valid value about half the time, so that many commands are
# valid but for one field, and the fast path's every check is tried.
_past_ids = st.builds(new_command_id, st.integers(HORIZON_MS - 10**9, HORIZON_MS - 61_000))
_ids = st.one_of(
    _past_ids,
    _past_ids,
    _past_ids,
    st.builds(new_command_id, st.integers(HORIZON_MS - 5, HORIZON_MS + 5)),  # at the edge
    st.builds(new_command_id, st.integers(0, 2**48 - 1)),  # any time, past year 9999 too
    st.builds(new_command_id, st.just(HORIZON_MS - 60_000)).map(str.upper),
    st.builds(new_command_id, st.just(HORIZON_MS - 60_000)).map(
        lambda i: i[:14] + "4" + i[15:]  # a version 4
    ),
    st.builds(new_command_id, st.just(HORIZON_MS - 60_000)).map(lambda i: i[:19] + "c" + i[20:]),
    st.builds(new_command_id, st.just(HORIZON_MS - 60_000)).map(lambda i: i + " "),
    st.text(max_size=40),
)
_valid_accounts = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
_accounts = st.one_of(
    _valid_accounts,
    _valid_accounts,
    st.sampled_from(["", "a" * 65, "acc 1", "acc\x00", "acc-é", "acc-1\n"]),
    st.text(max_size=70),
)
_valid_amounts = st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,20})?", fullmatch=True)
_amounts = st.one_of(
    _valid_amounts,
    _valid_amounts,
    st.sampled_from(
        ["0", "0.0", "00.000", "1.", ".5", "1..2", "1.2.3", "\uff11", "\u00b2", "\u0663", "1e5"]
    ),
    st.sampled_from(["-1", "+1", " 1", "1 ", "1" * 40, "1" * 41, "0" * 39 + "1", "0" * 40 + "1"]),
    st.text(alphabet="0123456789.", max_size=45),
    st.text(max_size=10),
)
_texts = st.one_of(
    st.just(""),
    st.just(""),
    st.just(""),
    st.just(""),
    st.text(max_size=10),
    st.sampled_from(["\u200b", "\u200d", "a\x7f", "\u2028", "x" * 64, "x" * 65, "y" * 128]),
    st.just("y" * 129),
)
_owners = st.one_of(st.just("Ann"), st.sampled_from(["o" * 200, "o" * 201]), _texts)
_versions = st.one_of(
    st.none(), st.none(), st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1])
)
_currencies = st.one_of(
    st.sampled_from(["USD", "JPY", "KWD"]), st.sampled_from(["usd", "XXX", "", "USDD"]), st.text()
)


_REQUESTS: dict[str, Any] = {
    "open_account": pb.OpenAccountRequest,
    "deposit": pb.DepositRequest,
    "withdraw": pb.WithdrawRequest,
    "transfer": pb.TransferRequest,
    "close_account": pb.CloseAccountRequest,
}
# Per field: a valid value, and values of every sort (valid ones among them).
_FIELDS = {
    "command_id": (_past_ids, _ids),
    "account_id": (_valid_accounts, _accounts),
    "from_account_id": (_valid_accounts, st.one_of(_accounts, st.just("acc-1"))),
    "to_account_id": (_valid_accounts, st.one_of(_accounts, st.just("acc-1"))),
    "amount": (_valid_amounts, _amounts),
    "currency": (st.just("USD"), _currencies),
    "owner": (st.just("Ann"), _owners),
    "expected_version": (st.none(), _versions),
    "reference": (st.just(""), _texts),
    "memo": (st.just(""), _texts),
}


@st.composite
def _messages(draw: st.DrawFn) -> pb.Command:
    """A command valid but for some fields (often one): each check is tried on its own."""
    kind = draw(st.sampled_from([None, *_REQUESTS]))
    if kind is None:
        return pb.Command()
    names = [f.name for f in _REQUESTS[kind].DESCRIPTOR.fields]
    spoilt = draw(st.sets(st.sampled_from(names), max_size=2))
    values = {name: draw(_FIELDS[name][name in spoilt]) for name in names}
    return pb.Command(
        **{kind: _REQUESTS[kind](**{k: v for k, v in values.items() if v is not None})}
    )


def _general(message: pb.Command) -> object:
    try:
        return checked(message, NOW, SKEW)
    except Rejection as refusal:
        return (refusal.kind, refusal.message)


def _answers(admission: Admission) -> list[object]:
    """One answer per command, in order: its packed form or its refusal's kind and message."""
    answers: list[object] = [None] * (len(admission.packed) + len(admission.refusals))
    for position, packed in zip(admission.positions, admission.packed, strict=True):
        answers[position] = packed
    for position, refusal in admission.refusals.items():
        answers[position] = (refusal.kind, refusal.message)
    return answers


@settings(max_examples=3000)
@given(_messages())
def test_the_fast_path_packs_what_the_general_path_would_and_only_that(message: pb.Command) -> None:
    general = _general(message)
    fast = packed_if_valid(message, id_horizon(NOW, SKEW))
    if fast is not None:
        assert fast == general
    assert _answers(admitted([message], NOW, SKEW)) == [general]


@settings(max_examples=200)
@given(st.lists(_messages(), max_size=8))
def test_a_batch_is_answered_in_order_command_by_command(messages: list[pb.Command]) -> None:
    assert _answers(admitted(messages, NOW, SKEW)) == [_general(m) for m in messages]


def test_commands_that_pass_take_the_fast_path() -> None:
    made = new_command_id(HORIZON_MS - 61_000)
    messages = [
        pb.Command(
            open_account=pb.OpenAccountRequest(
                command_id=made, account_id="a", currency="USD", owner="Ann"
            )
        ),
        pb.Command(deposit=pb.DepositRequest(command_id=made, account_id="a", amount="1.00")),
        pb.Command(
            withdraw=pb.WithdrawRequest(
                command_id=made, account_id="a", amount="0.5", expected_version=3, memo="m"
            )
        ),
        pb.Command(
            transfer=pb.TransferRequest(
                command_id=made, from_account_id="a", to_account_id="b", amount="7", reference="r"
            )
        ),
        pb.Command(close_account=pb.CloseAccountRequest(command_id=made, account_id="a")),
    ]
    horizon = id_horizon(NOW, SKEW)
    for message in messages:
        packed = packed_if_valid(message, horizon)
        assert packed is not None
        assert packed == checked(message, NOW, SKEW)


def test_an_id_made_after_the_year_9999_is_refused_as_from_the_future() -> None:
    far = "ffffffff-ffff-7fff-bfff-ffffffffffff"
    message = pb.Command(deposit=pb.DepositRequest(command_id=far, account_id="a", amount="1"))
    (refusal,) = admitted([message], NOW, SKEW).refusals.values()
    assert refusal.kind is RejectionKind.INVALID
    assert "after the year 9999" in refusal.message
    assert batch_admission.packed_if_valid(message, id_horizon(NOW, SKEW)) is None


def test_a_unary_calls_horizon_is_the_batchs_at_the_same_moment() -> None:
    before = id_horizon(datetime.now(UTC), SKEW)
    now = batch_admission.id_horizon_now(SKEW // timedelta(microseconds=1))
    after = id_horizon(datetime.now(UTC), SKEW)
    assert before <= now <= after
    assert (
        id_horizon(NOW, SKEW) == f"{HORIZON_MS - 2:012x}"[:8] + "-" + f"{HORIZON_MS - 2:012x}"[8:]
    )


@given(
    st.integers(0, 10**6),
    st.lists(st.integers(0, 5_000), min_size=1, max_size=30),
    st.integers(0, 2**47),
)
def test_a_servicers_horizon_made_once_per_millisecond_is_the_horizon_of_each_moment(
    skew_ms: int, steps: list[int], start_us: int
) -> None:
    """Moments close together (the same millisecond, the next) and apart, clock steps back
    included: each gets the text `id_horizon` gives for it."""
    skew = timedelta(milliseconds=skew_ms)
    horizon = batch_admission.UnaryHorizon(skew // timedelta(microseconds=1))
    micros = start_us
    for step in steps:
        micros = max(0, micros + step - 1_000)
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
        assert horizon.at(micros) == id_horizon(moment, skew)
