"""An event source mapping over whole topics: pollers (threads) that each own some partitions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from localloop.broker import topic_partitions
from localloop.esm import (
    EsmConfig,
    EsmStats,
    ExecutionEnvironment,
    Function,
    OnFailureDestination,
    Poller,
)
from localloop.events import TopicPartition
from localloop.kafka_source import KafkaSource

log = logging.getLogger("localloop.mapping")


class EventSourceMapping:
    """Lambda scales a Kafka mapping with pollers; each partition belongs to exactly one of them,
    which keeps every partition in order. Each poller gets its own function instance (its own
    "container"), so invocations run concurrently across pollers and sequentially within one.
    """

    def __init__(
        self,
        config: EsmConfig,
        *,
        topics: list[str],
        function_factory: Callable[[], Function],
        destination: OnFailureDestination | None = None,
        concurrency: int = 1,
        group_id: str | None = None,
        starting_position: str = "TRIM_HORIZON",
        on_progress: Callable[[int], object] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.config = config
        self._topics = topics
        self._factory = function_factory
        self._destination = destination
        self._concurrency = concurrency
        self._group_id = group_id or config.uuid
        self._starting_position = starting_position
        self._on_progress = on_progress
        self._pollers: list[Poller] = []
        self._stop = threading.Event()

    @property
    def stats(self) -> EsmStats:
        total = EsmStats()
        for poller in self._pollers:
            total = total.plus(poller.stats)
        return total

    def committed(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for poller in self._pollers:
            out.update(poller.committed)
        return out

    def stop(self) -> None:
        self._stop.set()

    def run(
        self,
        *,
        end_offsets: Mapping[TopicPartition, int] | None = None,
        idle_exit_s: float | None = None,
    ) -> EsmStats:
        """Poll and invoke until stopped, until every partition is committed up to
        `end_offsets` (exclusive), or until nothing arrived for `idle_exit_s`."""
        partitions = [
            (topic, partition)
            for topic in self._topics
            for partition in topic_partitions(self.config.bootstrap_servers, topic)
        ]
        shares = [partitions[i :: self._concurrency] for i in range(self._concurrency)]
        shares = [share for share in shares if share]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(
                target=self._poll_loop,
                args=(share, end_offsets, idle_exit_s, errors),
                name=f"poller-{i}",
                daemon=True,
            )
            for i, share in enumerate(shares)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
        except BaseException:
            self._stop.set()
            for thread in threads:
                thread.join()
            raise
        if errors:
            raise errors[0]
        return self.stats

    def _poll_loop(
        self,
        share: list[TopicPartition],
        end_offsets: Mapping[TopicPartition, int] | None,
        idle_exit_s: float | None,
        errors: list[BaseException],
    ) -> None:
        # The function is initialised at the first invocation, inside it: a failing init is a
        # function error of that invocation (the batch is retried), not the end of the poller.
        function = ExecutionEnvironment(self._factory)
        source: KafkaSource | None = None
        try:
            source = KafkaSource(
                bootstrap=self.config.bootstrap_servers,
                partitions=share,
                group_id=self._group_id,
                starting_position=self._starting_position,
            )
            poller = Poller(
                self.config, source, function, self._destination, on_progress=self._on_progress
            )
            self._pollers.append(poller)
            poller.run(self._finished(poller, share, end_offsets, idle_exit_s))
        except BaseException as exc:  # surfaced by run(); the other pollers stop too
            log.exception("poller for %s failed", share)
            errors.append(exc)
            self._stop.set()
        finally:
            if source is not None:
                source.close()
            function.close()

    def _finished(
        self,
        poller: Poller,
        share: list[TopicPartition],
        end_offsets: Mapping[TopicPartition, int] | None,
        idle_exit_s: float | None,
    ) -> Callable[[], bool]:
        """When a poller is done: stopped, committed up to the end offsets, or idle long enough."""
        idle_since: float | None = None

        def finished() -> bool:
            nonlocal idle_since
            if self._stop.is_set():
                return True
            if end_offsets is not None:
                ends = {tp: end for tp, end in end_offsets.items() if tp in share}
                return all(poller.committed.get(tp, 0) >= end for tp, end in ends.items())
            if idle_exit_s is not None:
                if not poller.idle():
                    idle_since = None
                    return False
                idle_since = idle_since or time.monotonic()
                return time.monotonic() - idle_since >= idle_exit_s
            return False

        return finished
