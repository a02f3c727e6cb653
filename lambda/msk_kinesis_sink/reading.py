"""Reading an invocation a piece at a time, so that publishing starts while the rest is read.

The event's outline (`events.outline_event`) says where every record is. `EventReader` reads and
encodes its records a piece at a time, the partitions taking turns, each piece as large as the
time left allows (`ReadCostEstimate`). A record whose content is malformed ends
its partition where it stands: the records before it go out; it and the partition's later records
are reported, and the other partitions go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from msk_kinesis_sink.encoding import EncodedPartition
from msk_kinesis_sink.errors import MalformedEventError
from msk_kinesis_sink.events import (
    EventOutline,
    KafkaRecord,
    PartitionBatch,
    read_records,
)
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST

# At most one request's worth of records a piece: the first request can leave after the first.
PIECE_RECORDS: Final = MAX_RECORDS_PER_REQUEST
# A piece is sized to take about this long, so that requests that finished meanwhile are settled
# (and their keys' next records sent) this often while the rest is read.
PIECE_SECONDS: Final = 0.02
# What a unit of reading work costs before the container has measured it: about what an
# `envelope` record without headers, the costliest unit, takes a 512 MB function (a third of a
# vCPU; bench: reading cost). The first pieces are small whatever it is (one record, then
# doubling), and the estimate follows what each piece costs.
INITIAL_SECONDS_PER_UNIT: Final = 50e-6
# No unit of work is taken to cost less (pieces read on a virtual clock cost nothing).
MIN_SECONDS_PER_UNIT: Final = 1e-8
# Weight of the newest piece in the running estimate when it was faster than expected; a
# slower piece sets the estimate at once (the next pieces must not overrun the time left).
READ_COST_SMOOTHING: Final = 0.3

# Encodes a piece of a partition: the records, and the partition's first offset in the event
# (where the ESM stands in it, for the redelivery memory).
Encoder = Callable[[PartitionBatch, int], EncodedPartition]


class ReadCostEstimate:
    """How long a unit of reading work takes in this container, from the pieces it read: it
    follows the function's share of a CPU, rising at once and falling gradually."""

    def __init__(self, seconds_per_unit: float = INITIAL_SECONDS_PER_UNIT) -> None:
        self.seconds_per_unit = seconds_per_unit

    def observe(self, seconds: float, units: int) -> None:
        if units <= 0:
            return
        observed, previous = seconds / units, self.seconds_per_unit
        if observed >= previous:
            self.seconds_per_unit = observed
        else:
            self.seconds_per_unit = previous + READ_COST_SMOOTHING * (observed - previous)

    def units_within(self, seconds: float) -> int:
        """The work that fits in `seconds` (0 when none is left)."""
        return max(0, int(seconds / max(self.seconds_per_unit, MIN_SECONDS_PER_UNIT)))


@dataclass(frozen=True, slots=True)
class Piece:
    """Records of one partition, read and encoded, that follow the partition's earlier pieces."""

    topic_partition: str
    stream: str
    encoded: EncodedPartition
    units: int  # the reading work it took (malformed record included)
    # The partition's next record could not be read: it, and the rest of the partition, are
    # reported from `malformed_offset`.
    malformed: MalformedEventError | None = None
    malformed_offset: int | None = None


class EventReader:
    """Reads an outlined event a piece at a time, the partitions taking turns; knows what is unread.

    `charge`, when given, is told the work units of each piece read: tests on a virtual clock
    advance it by what reading them costs (real reading takes real time).
    """

    def __init__(
        self,
        outline: EventOutline,
        streams: Mapping[str, str],
        encode: Encoder,
        charge: Callable[[int], None] | None = None,
    ) -> None:
        self._partitions = outline.partitions
        self._streams = streams
        self._encode = encode
        self._charge = charge
        # Per partition, its next record to read (in offset order), and whether it ended at a
        # malformed one (its next record); partitions take turns, a piece each.
        self._next = [0] * len(self._partitions)
        self._ended = [False] * len(self._partitions)
        self._turn = 0

    @property
    def partition_count(self) -> int:
        return len(self._partitions)

    @property
    def done(self) -> bool:
        return self._current() is None

    def read(self, units: int, most: int) -> Piece | None:
        """The next piece, of the partition whose turn it is: records whose reading work is at
        most `units`, or the next record alone when its work is more but at most `most`; None
        when nothing is left or the next record does not fit `most`."""
        index = self._current()
        if index is None:
            return None
        outline, start = self._partitions[index], self._next[index]
        stop = outline.stop_within(start, units, PIECE_RECORDS)
        if stop == start:
            if outline.work[start + 1] - outline.work[start] > most:
                return None
            stop = start + 1
        records: list[KafkaRecord] = []
        malformed: MalformedEventError | None = None
        try:
            read_records(outline, start, stop, into=records)
        except MalformedEventError as error:
            malformed = error
        end = self._next[index] = start + len(records)
        self._ended[index] = malformed is not None
        # Partitions take turns: one that reading can not finish in time still gets its share
        # (the ESM may list the partitions in the same order every time).
        self._turn = (index + 1) % len(self._partitions)
        batch = PartitionBatch(outline.topic, outline.partition, tuple(records))
        encoded = self._encode(batch, outline.offsets[0])
        work = outline.work[end + (malformed is not None)] - outline.work[start]
        if self._charge is not None:
            self._charge(work)
        return Piece(
            outline.topic_partition,
            self._streams[outline.topic],
            encoded,
            work,
            malformed,
            None if malformed is None else outline.offsets[end],
        )

    def read_in_time(
        self,
        costs: ReadCostEstimate,
        *,
        clock: Callable[[], float],
        until: Callable[[], float],
        take: Callable[[Piece], None],
    ) -> bool:
        """Read piece after piece, each as large as `costs` says fits in PIECE_SECONDS and
        before `until()`, handing each to `take`; False when reading stopped at a record that
        could not be read in time (the rest is unread)."""
        # Pieces grow from one record, doubling: what reading costs is measured on a small
        # piece before a large one relies on it (a record may cost many times another).
        ramp = 0
        while not self.done:
            began = clock()
            room_s = until() - began
            piece = self.read(
                min(ramp, costs.units_within(min(PIECE_SECONDS, room_s))),
                costs.units_within(room_s),
            )
            if piece is None:
                return False
            costs.observe(clock() - began, piece.units)
            ramp = 2 * max(ramp, piece.units)
            take(piece)
        return True

    def unread(self) -> dict[str, int]:
        """Per partition with records not read (or that ended at a malformed one), the first
        of them: where it is reported from at the latest."""
        return {
            outline.topic_partition: outline.offsets[start]
            for outline, start in zip(self._partitions, self._next, strict=True)
            if start < len(outline)
        }

    def unread_count(self) -> int:
        """Records not read, malformed ones and those after them included."""
        return sum(
            len(outline) - start
            for outline, start in zip(self._partitions, self._next, strict=True)
        )

    def _current(self) -> int | None:
        """The partition whose turn it is to be read; None when every one is read (or ended)."""
        count = len(self._partitions)
        for step in range(count):
            index = (self._turn + step) % count
            if not self._ended[index] and self._next[index] < len(self._partitions[index]):
                self._turn = index
                return index
        return None
