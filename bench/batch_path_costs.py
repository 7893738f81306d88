"""`python bench/batch_path_costs.py [--batches N]`: CPU per command of each stage of the batch
path, in one process, without gRPC, the pipe's system calls or Kafka.

A batch of 1,000 Deposits over 10,000 accounts goes through what the two command-server
processes do with it: the servicer's translation and checks, packing and pickling it for the
pipe, the writer's `Batcher.commit` (deciding, evolving, encoding every event; the append only
encodes, it produces nothing), the verdicts' way back and the ExecuteBatchResponse. CPU time of
this process (`time.process_time`), best of the batches, in microseconds per command.

Run as a file rather than a module, it measures whichever tree's code comes first on the path:
`git archive <commit> | tar -x -C /tmp/before && PYTHONPATH=/tmp/before python
bench/batch_path_costs.py` measures an older tree with this very script (docs/performance.md,
"Where the time of the batch path goes").
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from command_server import requests
from command_server.servicer import _batch_response
from command_server.shards import Shard
from command_server.transactions import Consumed, Message_
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import pack_command, unpack_verdict
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command, OpenAccount
from ledger.domain.decider import decide
from ledger.domain.validation import require_command_id, require_fields
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.v1 import commands_pb2 as pb

ACCOUNTS = 10_000
BATCH = 1_000
_T = TypeVar("_T")


class _OneSchema:
    """A schema store that knows one schema, id 1: encoding needs nothing else."""

    def register(self, subject: str, schema: str) -> int:
        return 1

    def schema(self, schema_id: int) -> str:
        raise LookupError(schema_id)


class _EncodingStore:
    """The event store's part in a commit that is CPU in Python: encoding every event."""

    def __init__(self, codec: EventCodec) -> None:
        self._codec = codec
        self._offset = 0

    def append(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int]:
        return self.end_append(self.begin_append(self.encode(events)))

    def encode(self, events: Sequence[tuple[Event, int]]) -> Sequence[tuple[Event, int]]:
        encode = self._codec.encode
        for event, _partition in events:
            encode(event)
        return events

    def begin_append(
        self, encoded: Sequence[tuple[Event, int]], messages: Sequence[Message_] = ()
    ) -> Sequence[tuple[Event, int]]:
        return encoded

    def end_append(self, appending: Sequence[tuple[Event, int]]) -> list[int]:
        first = self._offset
        self._offset += len(appending)
        return list(range(first, self._offset))

    def recover(self) -> None: ...

    def probe(self, partitions: Sequence[int]) -> str | None:
        return None

    def replay(self, *args: Any, **kwargs: Any) -> int:
        return 0


def _request(rng: random.Random) -> pb.ExecuteBatchRequest:
    request = pb.ExecuteBatchRequest()
    for _ in range(BATCH):
        request.commands.add(
            deposit=pb.DepositRequest(
                command_id=new_command_id(),
                account_id=f"cost-{rng.randrange(ACCOUNTS)}",
                amount="1.00",
            )
        )
    return request


def _servicer_side(request: pb.ExecuteBatchRequest) -> list[Command]:
    now = datetime.now(UTC)
    commands = []
    for message in request.commands:
        command = requests.command_of(message)
        require_command_id(command.command_id, now, timedelta(seconds=60))
        require_fields(command)
        commands.append(command)
    return commands


def _checked_and_packed(request: pb.ExecuteBatchRequest) -> list[Any]:
    """The servicer's translation and checks and the packing for the pipe, in one: what the
    servicer does since it packs straight from the protobuf messages (`batch_admission`); a tree
    from before does them apart (`_servicer_side`, then `pack_command`)."""
    try:
        from command_server.batch_admission import admitted
    except ImportError:
        return [pack_command(c) for c in _servicer_side(request)]
    return admitted(request.commands, datetime.now(UTC), timedelta(seconds=60)).packed


def _timed(costs: dict[str, list[float]], stage: str, work: Callable[[], _T]) -> _T:
    started = time.process_time()
    result = work()
    costs.setdefault(stage, []).append((time.process_time() - started) * 1e6 / BATCH)
    return result


def _one_batch(costs: dict[str, list[float]], batcher: Batcher, data: bytes) -> None:
    """One batch through every stage, each stage's CPU added to `costs`."""
    request = _timed(costs, "parse the request", lambda: pb.ExecuteBatchRequest.FromString(data))
    packed = _timed(
        costs, "servicer: check, pack for the pipe", lambda: _checked_and_packed(request)
    )
    sent = _timed(costs, "pickle to the writer", lambda: pickle.dumps((packed, []), -1))
    batch, spans = _timed(costs, "unpickle in the writer", lambda: pickle.loads(sent))
    reply = _timed(costs, "writer: decide, encode, fold", lambda: batcher.commit(batch, spans))
    back = _timed(costs, "pickle the verdicts back", lambda: pickle.loads(pickle.dumps(reply, -1)))
    verdicts = _timed(costs, "unpack the verdicts", lambda: [unpack_verdict(v) for v in back[2]])
    _timed(costs, "build the response", lambda: _batch_response(list(verdicts)))


def measure(batches: int) -> dict[str, float]:
    """The best (least) CPU µs per command of each stage over `batches` batches."""
    shard = Shard(0, 1, 6)
    model = WriteModel(10 * batches * BATCH, shard.owned_partitions)
    now = datetime.now(UTC)
    for number in range(ACCOUNTS):
        account_id = f"cost-{number}"
        (opened,) = decide(OpenAccount(new_command_id(), account_id, "USD", "cost"), {}, now)
        model.apply(opened, shard.partition_of(account_id), number)
    codec = EventCodec(_OneSchema())
    codec.register("cost")
    batcher = Batcher(model, _EncodingStore(codec), shard)
    rng = random.Random(1)
    costs: dict[str, list[float]] = {}
    for _ in range(batches):
        _one_batch(costs, batcher, _request(rng).SerializeToString())
    best = {stage: min(values) for stage, values in costs.items()}
    best["total"] = sum(best.values())
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    for stage, us in measure(args.batches).items():
        print(f"{stage:32} {us:7.2f} µs/command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
