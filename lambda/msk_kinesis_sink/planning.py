"""Which records of a partition may go out now, and how they pack into PutRecords requests.

The strict ordering rule lives here: a record is eligible only when every earlier record of its
topic-partition with the same partition key has been acknowledged. Because PutRecords does not
stop at a failed record, a request never holds two Kinesis records with the same partition key;
with aggregation, a same-key *run* travels as one atomic Kinesis record instead.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from msk_kinesis_sink.encoding import EncodedRecord, UnwritableRecord

Unit = EncodedRecord | UnwritableRecord


@dataclass(frozen=True, slots=True)
class Entry:
    """One Kinesis record of a request: a user record, or an aggregate of a same-key run."""

    partition_key: str
    data: bytes
    records: tuple[EncodedRecord, ...]

    @property
    def size(self) -> int:
        """Bytes Kinesis counts: data blob + UTF-8 partition key."""
        return len(self.data) + len(self.partition_key.encode("utf-8"))


class Packer(Protocol):
    """Builds the next Entry from the head of one key's queue within a byte budget."""

    def pack(self, run: Iterable[EncodedRecord], budget: int) -> Entry | None:
        """Consume records from the front of `run`; None when not even the first one fits."""
        ...


class SingleRecordPacker:
    """Without aggregation every user record is its own Kinesis record."""

    def pack(self, run: Iterable[EncodedRecord], budget: int) -> Entry | None:
        head = next(iter(run), None)
        if head is None or head.size > budget:
            return None
        return Entry(head.partition_key, head.data, (head,))


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_records: int
    max_request_bytes: int
    max_record_bytes: int


class PartitionQueue:
    """Unacknowledged records of one topic-partition, grouped by partition key, oldest first.

    Not thread-safe: one coordinator owns it; workers only carry entries to Kinesis and back.
    """

    def __init__(self, topic_partition: str, units: Sequence[Unit]) -> None:
        self.topic_partition = topic_partition
        self._queues: dict[str, deque[Unit]] = {}
        for unit in units:
            self._queues.setdefault(unit.partition_key, deque()).append(unit)
        # Heap of (head offset, key) for keys whose head may be sent now: lowest offsets go first,
        # so a deadline leaves the shortest possible tail to report.
        self._ready: list[tuple[int, str]] = []
        self._dead_letter_ready: list[UnwritableRecord] = []
        self._busy: set[str] = set()
        self._blocked: dict[str, str] = {}
        self._stopped: str | None = None
        for key in self._queues:
            self._mark_ready(key)

    def _mark_ready(self, key: str) -> None:
        queue = self._queues.get(key)
        if not queue:
            self._queues.pop(key, None)
            return
        if self._stopped is not None:
            self._blocked[key] = self._stopped
            return
        head = queue[0]
        if isinstance(head, UnwritableRecord):
            self._dead_letter_ready.append(head)
        else:
            heapq.heappush(self._ready, (head.offset, key))

    @property
    def is_done(self) -> bool:
        """Nothing left to send or wait for."""
        return not self._queues

    @property
    def can_send(self) -> bool:
        return bool(self._ready)

    @property
    def in_flight(self) -> bool:
        return bool(self._busy)

    def take_dead_letters(self) -> list[UnwritableRecord]:
        """Unwritable records whose turn has come; their keys stay busy until settled."""
        taken, self._dead_letter_ready = self._dead_letter_ready, []
        self._busy.update(record.partition_key for record in taken)
        return taken

    def next_request(self, limits: RequestLimits, packer: Packer) -> list[Entry]:
        """Entries for one PutRecords request: at most one per key, lowest offsets first."""
        entries: list[Entry] = []
        budget = limits.max_request_bytes
        while self._ready and len(entries) < limits.max_records:
            _, key = self._ready[0]
            queue = self._queues[key]
            entry = packer.pack(_leading_encoded(queue), min(budget, limits.max_record_bytes))
            if entry is None:
                break  # the next record does not fit what is left of this request
            heapq.heappop(self._ready)
            self._busy.add(key)
            entries.append(entry)
            budget -= entry.size
        return entries

    def acknowledge(self, entry: Entry) -> None:
        """Kinesis accepted the entry: drop its records and let the key's next record go."""
        queue = self._queues[entry.partition_key]
        for _ in entry.records:
            queue.popleft()
        self._busy.discard(entry.partition_key)
        self._mark_ready(entry.partition_key)

    def acknowledge_dead_letter(self, record: UnwritableRecord) -> None:
        queue = self._queues[record.partition_key]
        queue.popleft()
        self._busy.discard(record.partition_key)
        self._mark_ready(record.partition_key)

    def release(self, partition_key: str) -> None:
        """The key's head was not accepted: it becomes eligible again (for a retry)."""
        if partition_key not in self._busy:
            return  # not in flight: it is already eligible (or settled)
        self._busy.discard(partition_key)
        self._mark_ready(partition_key)

    def block(self, partition_key: str, reason: str) -> None:
        """The key's head can not be delivered in this invocation; later same-key records wait."""
        self._busy.discard(partition_key)
        self._blocked[partition_key] = reason

    def stop(self, reason: str) -> None:
        """Send nothing more (non-retryable error or deadline); in-flight entries still settle."""
        if self._stopped is not None:
            return
        self._stopped = reason
        for key in list(self._queues):
            if key not in self._busy:
                self._blocked[key] = reason
        self._ready.clear()
        self._dead_letter_ready.clear()

    @property
    def stopped(self) -> bool:
        return self._stopped is not None

    @property
    def blocked_reasons(self) -> dict[str, str]:
        return dict(self._blocked)

    def first_unacknowledged_offset(self) -> int | None:
        """Where the ESM must resume this partition; None when everything was delivered."""
        heads = [queue[0].offset for queue in self._queues.values() if queue]
        return min(heads) if heads else None

    def pending_count(self) -> int:
        return sum(len(queue) for queue in self._queues.values())


def _leading_encoded(queue: deque[Unit]) -> Iterable[EncodedRecord]:
    """The run of writable records at the front of a key's queue (stops at an unwritable one)."""
    for unit in queue:
        if isinstance(unit, UnwritableRecord):
            return
        yield unit
