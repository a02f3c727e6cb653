"""Redelivery memory: records this container wrote that the ESM is going to send again.

The ESM resumes a reported partition from its first unpublished offset, so records of other keys
that were already written come back. The container remembers, per (event source, topic,
partition), the offsets it acknowledged beyond the reported offset, with a digest of each
record's content; a redelivered record with the same offset and the same digest counts as
delivered without being sent again. A different digest (the topic was recreated, say) is sent.

It can only save work, never lose it: a remembered record was acknowledged by Kinesis (or
dead-lettered), and skipping happens in the key's turn (planning.PartitionQueue), so order holds.
A redelivery that lands on another container simply sends the records again.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from msk_kinesis_sink.events import KafkaRecord, PartitionBatch

# About 150 bytes an entry: 100,000 entries are ~15 MB, ten full 10,000-record batches.
DEFAULT_MAX_ENTRIES: Final = 100_000
# A reported partition comes back on the next poll; a memory older than this is of no use.
DEFAULT_MAX_AGE_S: Final = 900.0
# How often remembering looks at the clock, in records.
KEEP_CHECK_EVERY: Final = 64

_PartitionId = tuple[str, str, int]  # (event source, topic, partition)


class TopicPartition(Protocol):
    """A partition of an event, read (events.PartitionBatch) or not (events.PartitionOutline)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


def record_digest(record: KafkaRecord) -> int:
    """64 bits of BLAKE2b over what the record carries: key, value, headers, timestamp, and
    schema metadata when a registry added some."""
    digest = hashlib.blake2b(digest_size=8)
    for text in (record.key_b64, record.value_b64):
        # A length prefix keeps (null, "") and ("ab", "c") / ("a", "bc") apart.
        raw = b"" if text is None else text.encode("utf-8", "surrogatepass")
        digest.update(b"-1:" if text is None else b"%d:" % len(raw))
        digest.update(raw)
    if record.headers:
        # The names (a repr reads back to exactly them, so it says how many there are), each
        # value's length, then the values: built in a few calls that loop in C, where a loop
        # here would cost a microsecond a header (records may carry dozens).
        names, values = zip(*record.headers, strict=True)
        digest.update(b"h" + repr(names).encode("utf-8", "surrogatepass"))
        digest.update(array("Q", map(len, values)).tobytes())
        digest.update(b"".join(values))
    digest.update(b"|%d|%s" % (record.timestamp, record.timestamp_type.encode("utf-8", "replace")))
    # A registry's schema metadata is part of what an `envelope` record holds.
    for label, schema in ((b"k", record.key_schema), (b"v", record.value_schema)):
        if schema is not None:
            digest.update(b"|%s%a" % (label, tuple(schema)))
    return int.from_bytes(digest.digest(), "big")


@dataclass(slots=True)
class _Remembered:
    digests: dict[int, int] = field(default_factory=dict)  # offset -> digest
    touched: float = 0.0
    # No entry is below it: forgetting below it again (each piece of a partition recalls with
    # the same first offset) costs nothing.
    floor: int = 0


class RedeliveryMemory:
    """Bounded in entries and in age; the least recently used partitions are dropped first."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._clock = clock
        self._partitions: OrderedDict[_PartitionId, _Remembered] = OrderedDict()
        self._entries = 0

    @property
    def entries(self) -> int:
        return self._entries

    def recall(
        self, source: str, batch: PartitionBatch, *, stands_at: int | None = None
    ) -> frozenset[int]:
        """Offsets of `batch` that were written before with the same content.

        `stands_at` is where the ESM stands in the partition, its first offset in the event
        (by default the batch's first, when the batch is the event's whole partition rather
        than a piece of it): entries below it are forgotten.
        """
        self._expire()
        remembered = self._partitions.get((source, batch.topic, batch.partition))
        if remembered is None or not batch.records:
            return frozenset()
        self._forget_below(remembered, batch.records[0].offset if stands_at is None else stands_at)
        digests = remembered.digests
        delivered = []
        for record in batch.records:
            known = digests.get(record.offset)
            if known is None:
                continue
            if known == record_digest(record):
                delivered.append(record.offset)
            else:  # another record under the same offset: it must be sent
                del digests[record.offset]
                self._entries -= 1
        return frozenset(delivered)

    def keep(
        self,
        source: str,
        batch: TopicPartition,
        resume_offset: int,
        written: Iterable[KafkaRecord],
        *,
        in_time: Callable[[], bool] = lambda: True,
    ) -> None:
        """After an invocation that reported `batch`'s partition from `resume_offset`: remember
        the records written at or beyond it (they come back), forget everything below.

        Remembering takes a digest of each record; it stops once `in_time()` says the
        invocation must answer (every KEEP_CHECK_EVERY records): what is not remembered is
        only sent again.
        """
        key = (source, batch.topic, batch.partition)
        remembered = self._partitions.get(key)
        if remembered is None:
            remembered = self._partitions[key] = _Remembered()
        self._forget_below(remembered, resume_offset)
        digests = remembered.digests
        for count, record in enumerate(written):
            if count % KEEP_CHECK_EVERY == 0 and not in_time():
                break
            if record.offset >= resume_offset and record.offset not in digests:
                digests[record.offset] = record_digest(record)
                self._entries += 1
                remembered.floor = min(remembered.floor, record.offset)
        remembered.touched = self._clock()
        self._partitions.move_to_end(key)
        if not digests:
            del self._partitions[key]
        self._evict()

    def forget(self, source: str, batch: TopicPartition) -> None:
        """The partition was delivered whole: the ESM moves past it, nothing comes back."""
        remembered = self._partitions.pop((source, batch.topic, batch.partition), None)
        if remembered is not None:
            self._entries -= len(remembered.digests)

    def _forget_below(self, remembered: _Remembered, offset: int) -> None:
        if offset <= remembered.floor:
            return
        stale = [known for known in remembered.digests if known < offset]
        for known in stale:
            del remembered.digests[known]
        self._entries -= len(stale)
        remembered.floor = offset

    def _expire(self) -> None:
        oldest_kept = self._clock() - self._max_age_s
        while self._partitions:
            key, remembered = next(iter(self._partitions.items()))
            if remembered.touched >= oldest_kept:
                break
            self._drop(key)

    def _evict(self) -> None:
        self._expire()
        while self._entries > self._max_entries and self._partitions:
            self._drop(next(iter(self._partitions)))

    def _drop(self, key: _PartitionId) -> None:
        self._entries -= len(self._partitions.pop(key).digests)
