"""Reading a Kafka log to its end without waiting for records that will not come."""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def consume_ready(consumer: Consumer, most: int, wait: float) -> list[Message]:
    """Up to `most` messages (partition-EOF events included): waits up to `wait` seconds for
    the first, then takes only what is already fetched.

    `Consumer.consume(most, wait)` returns early only once it has `most` messages, so the last
    call of every read to the end of a log (a replay, a snapshot read, a rebuild) waited the
    whole timeout: half a second of every command-server start, twice.
    """
    if most < 1:
        raise ValueError(f"most must be at least 1, not {most}")
    first = consumer.poll(wait)
    if first is None:
        return []
    if most == 1:
        return [first]
    return [first, *consumer.consume(most - 1, 0)]
