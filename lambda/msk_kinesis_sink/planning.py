"""Which records of a partition may go out now, and how they pack into PutRecords requests.

The strict ordering rule lives here: a record is eligible only when every earlier record of its
topic-partition with the same partition key has been acknowledged. Because PutRecords does not
stop at a failed record, a request never holds two Kinesis records with the same partition key;
with aggregation, a same-key *run* travels as one atomic Kinesis record instead.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from msk_kinesis_sink.encoding import ClaimCheckRecord, EncodedRecord, UnwritableRecord
from msk_kinesis_sink.events import KafkaRecord

Unit = EncodedRecord | UnwritableRecord | ClaimCheckRecord

# No key is blocked: every position is before it.
_NOT_BLOCKED = sys.maxsize


class Entry(NamedTuple):
    """One Kinesis record of a request: a user record, or an aggregate of a same-key run.

    A NamedTuple (immutable, and cheap to build once per record on the hot path); build it with
    `Entry.of`, which measures it once.
    """

    partition_key: str
    data: bytes
    records: tuple[EncodedRecord, ...]
    # Bytes Kinesis counts: data blob + UTF-8 partition key.
    size: int

    @classmethod
    def of(cls, partition_key: str, data: bytes, records: tuple[EncodedRecord, ...]) -> Entry:
        if records:
            head = records[0]
            key_bytes = head.size - len(head.data)  # the record measured its key already
        else:
            key_bytes = len(partition_key.encode("utf-8"))
        return cls(partition_key, data, records, len(data) + key_bytes)


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
        return Entry(head.partition_key, head.data, (head,), head.size)


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_records: int
    max_request_bytes: int
    max_record_bytes: int


class PartitionQueue:
    """Unacknowledged records of one topic-partition, chained by partition key, oldest first.

    Records are addressed by their position in the partition (offset order). Each position links
    to the next one with the same key, so a key's successor is found in O(1) when its head is
    acknowledged. At most one entry per key is in flight, so in-flight state is keyed by key.
    Not thread-safe: one coordinator owns it; workers only carry entries to Kinesis and back.
    """

    def __init__(
        self,
        topic_partition: str,
        units: Sequence[Unit] = (),
        delivered_before: Collection[int] = frozenset(),
    ) -> None:
        self.topic_partition = topic_partition
        self._units: list[Unit] = []
        # Offsets written by an earlier invocation (redelivery memory): settled without sending
        # when their key's turn comes, never ahead of it.
        self._delivered_before: set[int] = set()
        self.delivered_before_count = 0
        self._next_same_key: list[int] = []
        self._last_of_key: dict[str, int] = {}
        # Heap of positions whose record may be sent now; lowest offsets go first, so a deadline
        # leaves the shortest possible tail to report.
        self._ready: list[int] = []
        self._dead_letter_ready: list[int] = []
        # Claim checks whose turn has come: their objects are written before their pointers.
        self._claim_check_ready: list[int] = []
        # Keys backing off after a failed attempt: (not before, position of the key's head).
        # Backoff is per key, not per partition: a throttled key (one shard's limit) must not
        # hold up the partition's other keys.
        self._delayed: list[tuple[float, int]] = []
        self._failed_attempts: dict[str, int] = {}  # key -> failed attempts in a row
        self._in_flight: dict[str, int] = {}  # key -> position of its in-flight head
        self._blocked: dict[str, str] = {}
        # The lowest position of a key blocked for this invocation: the partition is reported
        # from there at the latest, so nothing after it is started (it would only come back).
        self._first_blocked = _NOT_BLOCKED
        self._stopped: str | None = None
        self._acknowledged = bytearray()
        self._acknowledged_count = 0
        self._lowest_open = 0
        self.extend(units, delivered_before)

    def extend(self, units: Sequence[Unit], delivered_before: Collection[int] = ()) -> None:
        """Take the partition's next records, read after the ones the queue holds: each goes
        after the last one of its key, or, when its key owes nothing, is ready at once."""
        start = len(self._units)
        self._units.extend(units)
        self._next_same_key.extend([-1] * len(units))
        self._acknowledged.extend(bytes(len(units)))
        self._delivered_before.update(delivered_before)
        links, last_of_key, acknowledged = (
            self._next_same_key,
            self._last_of_key,
            self._acknowledged,
        )
        heads: list[tuple[str, int]] = []
        for position, unit in enumerate(units, start):
            key = unit.partition_key
            previous = last_of_key.get(key)
            last_of_key[key] = position
            # The key's last record settled: its chain ended there, so this one starts anew.
            if previous is None or acknowledged[previous]:
                heads.append((key, position))
            else:
                links[previous] = position
        for key, position in heads:
            self._advance(key, position)

    def _make_ready(self, position: int) -> None:
        units, links = self._units, self._next_same_key
        if self._delivered_before:
            while position >= 0 and units[position].offset in self._delivered_before:
                self._acknowledged[position] = 1
                self._acknowledged_count += 1
                self.delivered_before_count += 1
                position = links[position]
            if position < 0:
                return
        unit = units[position]
        if isinstance(unit, EncodedRecord):
            heapq.heappush(self._ready, position)
        elif isinstance(unit, UnwritableRecord):
            self._dead_letter_ready.append(position)
        else:
            self._claim_check_ready.append(position)

    def _advance(self, key: str, position: int) -> None:
        """Make the key's record at `position` (or nothing, at -1) the next to go."""
        if position < 0:
            return
        if self._stopped is not None:
            self._blocked[key] = self._stopped
            return
        self._make_ready(position)

    @property
    def is_done(self) -> bool:
        """Nothing left to send or wait for."""
        return self._acknowledged_count == len(self._units)

    @property
    def can_send(self) -> bool:
        return bool(self._ready) and self._ready[0] < self._first_blocked

    def can_send_at(self, now: float) -> bool:
        """Whether a record may go out at `now` (keys whose backoff has ended included)."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            heapq.heappush(self._ready, heapq.heappop(delayed)[1])
        return self.can_send

    def next_retry_at(self) -> float | None:
        """When the earliest key backing off may go again (None: none is)."""
        return self._delayed[0][0] if self._delayed else None

    def failed_attempts(self, partition_key: str) -> int:
        """Failed attempts in a row of the key's head (0 after an acknowledgement)."""
        return self._failed_attempts.get(partition_key, 0)

    @property
    def in_flight(self) -> bool:
        return bool(self._in_flight)

    @property
    def stopped(self) -> bool:
        return self._stopped is not None

    @property
    def blocked_reasons(self) -> dict[str, str]:
        return dict(self._blocked)

    def take_dead_letters(self) -> list[UnwritableRecord]:
        """Unwritable records whose turn has come; their keys stay busy until settled."""
        taken, self._dead_letter_ready = self._take_turns(self._dead_letter_ready)
        return [unit for unit in taken if isinstance(unit, UnwritableRecord)]

    def take_claim_checks(self) -> list[ClaimCheckRecord]:
        """Claim checks whose turn has come; their keys stay busy until their objects are
        written (claim_check_stored) and their pointers acknowledged."""
        taken, self._claim_check_ready = self._take_turns(self._claim_check_ready)
        return [unit for unit in taken if isinstance(unit, ClaimCheckRecord)]

    def _take_turns(self, ready: list[int]) -> tuple[list[Unit], list[int]]:
        """The units at `ready` that may go now (their keys become busy), and those that wait."""
        taken: list[Unit] = []
        later: list[int] = []
        for position in ready:
            if position > self._first_blocked:
                later.append(position)  # past a blocked key: it would only come back
                continue
            unit = self._units[position]
            self._in_flight[unit.partition_key] = position
            taken.append(unit)
        return taken, later

    def next_request(self, limits: RequestLimits, packer: Packer) -> list[Entry]:
        """Entries for one PutRecords request: at most one per key, lowest offsets first."""
        entries: list[Entry] = []
        budget = limits.max_request_bytes
        record_budget = limits.max_record_bytes
        ready, units, in_flight = self._ready, self._units, self._in_flight
        single = isinstance(packer, SingleRecordPacker)
        first_blocked = self._first_blocked
        while ready and len(entries) < limits.max_records and ready[0] < first_blocked:
            position = ready[0]
            head = units[position]
            assert isinstance(head, EncodedRecord)
            if single:  # the common case, without building a run for the packer
                if head.size > budget:
                    break
                entry: Entry | None = Entry(head.partition_key, head.data, (head,), head.size)
            else:
                entry = packer.pack(self._run_from(position), min(budget, record_budget))
            if entry is None:
                break  # the next record does not fit what is left of this request
            heapq.heappop(ready)
            in_flight[head.partition_key] = position
            entries.append(entry)
            budget -= entry.size
        return entries

    def _run_from(self, position: int) -> Iterator[EncodedRecord]:
        """The key's writable records from `position` on, up to an unwritable one, a claim check
        whose object is not written yet, or one written before (the redelivery memory's: it is
        settled in its turn, once the run is, not sent)."""
        units, links, delivered_before = self._units, self._next_same_key, self._delivered_before
        while position >= 0:
            unit = units[position]
            if not isinstance(unit, EncodedRecord) or unit.offset in delivered_before:
                return
            yield unit
            position = links[position]

    def _settle(self, key: str, count: int) -> None:
        """`count` records of the key, from its in-flight head on, are delivered."""
        self._failed_attempts.pop(key, None)
        position = self._in_flight.pop(key)
        links, acknowledged = self._next_same_key, self._acknowledged
        for _ in range(count):
            acknowledged[position] = 1
            position = links[position]
        self._acknowledged_count += count
        self._advance(key, position)

    def acknowledge(self, entry: Entry) -> None:
        """Kinesis accepted the entry: drop its records and let the key's next record go."""
        self._settle(entry.partition_key, len(entry.records))

    def acknowledge_dead_letter(self, record: UnwritableRecord) -> None:
        self._settle(record.partition_key, 1)

    def claim_check_stored(self, record: ClaimCheckRecord) -> None:
        """The record's object is written: its pointer takes its place and goes next for its
        key (the key is not free until the pointer is acknowledged)."""
        position = self._in_flight.pop(record.partition_key)
        self._units[position] = record.pointer
        self._advance(record.partition_key, position)

    def release(self, partition_key: str, not_before: float | None = None) -> None:
        """The key's head was not accepted: it goes again, at once or from `not_before` on."""
        position = self._in_flight.pop(partition_key, None)
        if position is None:
            return  # not in flight: it is already eligible (or settled)
        self._failed_attempts[partition_key] = self._failed_attempts.get(partition_key, 0) + 1
        if not_before is None or self._stopped is not None:
            self._advance(partition_key, position)
        else:
            heapq.heappush(self._delayed, (not_before, position))

    def block(self, partition_key: str, reason: str) -> None:
        """The key's head can not be delivered in this invocation; later same-key records wait,
        and so does every record after it (the partition is reported from it anyway)."""
        position = self._in_flight.pop(partition_key, None)
        if position is not None:
            self._first_blocked = min(self._first_blocked, position)
        self._blocked[partition_key] = reason

    def stop(self, reason: str) -> None:
        """Send nothing more (non-retryable error or deadline); in-flight entries still settle."""
        if self._stopped is not None:
            return
        self._stopped = reason
        delayed = [position for _, position in self._delayed]
        waiting = [*self._ready, *self._dead_letter_ready, *self._claim_check_ready, *delayed]
        for position in waiting:
            self._blocked[self._units[position].partition_key] = reason
        self._ready.clear()
        self._dead_letter_ready.clear()
        self._claim_check_ready.clear()
        self._delayed.clear()

    def first_unacknowledged_offset(self) -> int | None:
        """Where the ESM must resume this partition; None when everything was delivered."""
        acknowledged, count = self._acknowledged, len(self._units)
        while self._lowest_open < count and acknowledged[self._lowest_open]:
            self._lowest_open += 1
        if self._lowest_open == count:
            return None
        return self._units[self._lowest_open].offset

    def pending_count(self) -> int:
        return len(self._units) - self._acknowledged_count

    def settled_from(self, offset: int) -> list[KafkaRecord]:
        """Records at or after `offset` that are settled (written, dead-lettered or delivered
        before): what the ESM sends again when the partition is reported from `offset`."""
        acknowledged = self._acknowledged
        return [
            unit.source
            for position, unit in enumerate(self._units)
            if acknowledged[position] and unit.offset >= offset
        ]
