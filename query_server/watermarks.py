"""The event topic's high watermarks, for the lag in GetProjectionStatus.

Optional: without Kafka settings, or while Kafka cannot be reached, the lag is reported as
unknown (the last values observed, if any) rather than failing the call. The Kafka client
blocks, so it runs on a thread of its own, one refresh at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

# Answers may be this old: a status poll every few milliseconds must not hit the broker each time.
_MAX_AGE_SECONDS = 1.0
_KAFKA_TIMEOUT_SECONDS = 2.0


class HighWatermarks:
    """Last observed high watermark (offset of the next record to be written) per partition."""

    def __init__(
        self,
        bootstrap_servers: str | None,
        topic: str,
        security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._security = security
        self._topic = topic
        self._observed: dict[int, int] = {}
        self._observed_at = -math.inf
        self._refresh: asyncio.Future[dict[int, int]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._admin: Any = None

    async def observe(self, wait_seconds: float) -> Mapping[int, int]:
        """Refresh if stale, waiting at most `wait_seconds` for Kafka, then the last observed."""
        if self._bootstrap_servers is None:
            return {}
        stale = time.monotonic() - self._observed_at > _MAX_AGE_SECONDS
        if stale and self._refresh is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="watermarks")
            refresh = asyncio.get_running_loop().run_in_executor(self._executor, self._fetch)
            refresh.add_done_callback(self._refreshed)
            self._refresh = refresh
        if self._refresh is not None:
            # Never cancelled: a late answer still serves the next call.
            await asyncio.wait([self._refresh], timeout=wait_seconds)
        return MappingProxyType(self._observed)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _refreshed(self, refresh: asyncio.Future[dict[int, int]]) -> None:
        self._refresh = None
        if refresh.cancelled():
            return
        error = refresh.exception()
        if error is not None:
            log.warning("cannot read the high watermarks of %s: %s", self._topic, error)
            return
        self._observed = refresh.result()
        self._observed_at = time.monotonic()

    def _fetch(self) -> dict[int, int]:
        """Blocking: ask Kafka for every partition's latest offset."""
        if self._admin is None:
            config: dict[str, Any] = {
                **self._security.config(),
                "bootstrap.servers": self._bootstrap_servers,
                # librdkafka logs through our logging, not straight to stderr.
                "logger": logging.getLogger("query_server.kafka"),
            }
            self._admin = AdminClient(config)
        # Hands queued librdkafka logs to the logger (they only flow when polled).
        self._admin.poll(0)
        metadata = self._admin.list_topics(self._topic, timeout=_KAFKA_TIMEOUT_SECONDS)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise KafkaException(f"topic {self._topic} not available: {topic and topic.error}")
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call, unused-ignore]
        requests = {TopicPartition(self._topic, p): latest for p in topic.partitions}
        futures = self._admin.list_offsets(requests, request_timeout=_KAFKA_TIMEOUT_SECONDS)
        return {
            partition.partition: future.result(timeout=_KAFKA_TIMEOUT_SECONDS).offset
            for partition, future in futures.items()
        }
