"""Publishing a replay set through the Sink, batch by batch, and marking what was delivered."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from msk_kinesis_sink.events import KafkaRecord, PartitionBatch
from msk_kinesis_sink.replay.objects import (
    ObjectStore,
    PartitionId,
    invocation_event,
    replayed_keys,
)
from msk_kinesis_sink.replay.plan import MAX_RECORDS_PER_INVOCATION, Batch, ReplaySet
from msk_kinesis_sink.runtime import Sink

# Each invocation's time budget; the Sink retries within it and reports what is left.
INVOCATION_SECONDS: Final = 60.0


class _Deadline:
    """The Lambda context the Sink reads its time budget from."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - self._clock()) * 1000))


@dataclass(slots=True)
class BatchOutcome:
    """Which records of a batch Kinesis acknowledged, and which it did not."""

    delivered: list[KafkaRecord] = field(default_factory=list)
    failed: list[KafkaRecord] = field(default_factory=list)


def publish_batch(
    sink: Sink,
    batch: Batch,
    *,
    invocation_seconds: float = INVOCATION_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[int], object] = lambda _: None,
) -> BatchOutcome:
    """Invoke the Sink with the batch, then with the tails it reports, until everything is
    delivered or an invocation delivers nothing new.

    A reported tail may hold records the Sink wrote anyway (other keys after a failed one); its
    redelivery memory knows them, skips them when they come back, and says, at the end, which
    of the last tail were written.
    """
    outcome = BatchOutcome()
    pending = list(batch.records)
    while pending:
        response = sink.handle(
            invocation_event(batch.source, pending), _Deadline(invocation_seconds, clock)
        )
        tails: dict[str, int] = {}
        for failure in response["batchItemFailures"]:
            identifier = failure["itemIdentifier"]
            partition, offset = identifier["partition"], identifier["offset"]
            tails[partition] = min(offset, tails.get(partition, offset))
        left: list[KafkaRecord] = []
        for record in pending:
            tail = tails.get(record.topic_partition)
            if tail is not None and record.offset >= tail:
                left.append(record)
            else:
                outcome.delivered.append(record)
        on_progress(len(pending) - len(left))
        report = sink.last_report
        published = report.stats.records_published if report is not None else 0
        progressed = published > 0 or len(left) < len(pending)
        pending = left
        if not progressed:
            break
    if pending:
        written = _remembered(sink, batch.source, pending)
        for record in pending:
            if (record.topic, record.partition, record.offset) in written:
                outcome.delivered.append(record)
            else:
                outcome.failed.append(record)
        on_progress(len(pending))
    return outcome


def _remembered(
    sink: Sink, source: str, records: Sequence[KafkaRecord]
) -> set[tuple[str, int, int]]:
    by_partition: dict[tuple[str, int], list[KafkaRecord]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    written: set[tuple[str, int, int]] = set()
    for (topic, partition), group in by_partition.items():
        batch = PartitionBatch(topic, partition, tuple(group))
        written.update((topic, partition, offset) for offset in sink.memory.recall(source, batch))
    return written


class Replayer:
    """Publishes a replay set batch by batch and marks each object once all it holds is
    delivered. A partition with a failed record sends nothing more: its later records would
    overtake it."""

    def __init__(
        self,
        sink: Sink,
        store: ObjectStore,
        replay_set: ReplaySet,
        *,
        invocation_seconds: float = INVOCATION_SECONDS,
        max_records: int = MAX_RECORDS_PER_INVOCATION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.store = store
        self.replay_set = replay_set
        self.invocation_seconds = invocation_seconds
        self.max_records = max_records
        self.clock = clock
        self.published = 0
        self.failed: list[KafkaRecord] = []
        self.marked: list[str] = []
        # (key, where it went) for objects moved beside a replayed/ copy already there.
        self.kept_beside: list[tuple[str, str]] = []
        self._halted: set[PartitionId] = set()
        self._undecided = {failed.key: set(failed.record_ids()) for failed in replay_set.objects}
        self._doomed: set[str] = set()  # objects holding a record that was not delivered

    def run(self, on_progress: Callable[[int], object] = lambda _: None) -> None:
        """Raises ReplayError when an object can not be marked (sending stops there: whatever
        is sent after it would be sent again by the next run)."""
        for batch in self.replay_set.batches(self.max_records):
            held = [r for r in batch.records if _partition_id(batch.source, r) in self._halted]
            sendable = tuple(
                r for r in batch.records if _partition_id(batch.source, r) not in self._halted
            )
            outcome = BatchOutcome(failed=held)
            on_progress(len(held))
            if sendable:
                sent = publish_batch(
                    self.sink,
                    Batch(batch.source, sendable),
                    invocation_seconds=self.invocation_seconds,
                    clock=self.clock,
                    on_progress=on_progress,
                )
                outcome.delivered, outcome.failed = sent.delivered, held + sent.failed
            self._settle(batch.source, outcome)

    def _settle(self, source: str, outcome: BatchOutcome) -> None:
        self.published += len(outcome.delivered)
        self.failed.extend(outcome.failed)
        settled = [(record, True) for record in outcome.delivered]
        settled += [(record, False) for record in outcome.failed]
        ready: list[str] = []
        for record, delivered in settled:
            record_id = (source, record.topic, record.partition, record.offset)
            if not delivered:
                self._halted.add(_partition_id(source, record))
            for key in self.replay_set.holders[record_id]:
                if not delivered:
                    self._doomed.add(key)
                undecided = self._undecided[key]
                undecided.discard(record_id)
                if not undecided and key not in self._doomed:
                    ready.append(key)
        for key in ready:
            targets = replayed_keys(key)
            where = self.store.move(key, targets)
            if where != targets[0]:
                self.kept_beside.append((key, where))
            self.marked.append(key)
            del self._undecided[key]


def _partition_id(source: str, record: KafkaRecord) -> PartitionId:
    return (source, record.topic, record.partition)
