"""Unit tests for reading an event a piece at a time: outlines, pieces, what is left unread, the
reading cost estimate and when reading must stop."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.budget import TimeBudget
from msk_kinesis_sink.encoding import EncodedPartition
from msk_kinesis_sink.errors import MalformedEventError
from msk_kinesis_sink.events import (
    KafkaRecord,
    PartitionBatch,
    outline_event,
    parse_event,
    read_records,
)
from msk_kinesis_sink.reading import (
    INITIAL_SECONDS_PER_UNIT,
    PIECE_RECORDS,
    EventReader,
    ReadCostEstimate,
)
from tests.factories import kafka_record, msk_event
from tests.strategies import FUZZ_EXAMPLES, kafka_events

MANY = 10**9  # more work units than any test event holds


def _event(counts: dict[int, int], headers: int = 0) -> dict[str, Any]:
    """Partitions of topic "t": `counts[p]` records each, offsets from 10, `headers` each."""
    return msk_event(
        kafka_record("t", p, 10 + o, b"k%d" % o, b"v", [("h", b"1")] * headers)
        for p, count in counts.items()
        for o in range(count)
    )


class _Encoded:
    """An encoder that keeps what it was given (the pieces, and where each partition starts)."""

    def __init__(self) -> None:
        self.pieces: list[tuple[PartitionBatch, int]] = []

    def __call__(self, batch: PartitionBatch, stands_at: int) -> EncodedPartition:
        self.pieces.append((batch, stands_at))
        return EncodedPartition(batch, [], 0)


def _reader(
    event: dict[str, Any], charged: list[int] | None = None
) -> tuple[EventReader, _Encoded]:
    encoded = _Encoded()
    outline = outline_event(event)
    streams = {partition.topic: "s" for partition in outline.partitions}
    return EventReader(
        outline, streams, encoded, charged.append if charged is not None else None
    ), encoded


# -- the outline -----------------------------------------------------------------------------


def test_outline_counts_a_record_and_its_headers_as_work():
    # GIVEN records without headers, with three headers, and with a value of 8 KiB
    event = msk_event(
        [
            kafka_record("t", 0, 1),
            kafka_record("t", 0, 2, headers=[("h", b"1")] * 3),
            kafka_record("t", 0, 3, value=b"x" * 8192),
        ]
    )
    # WHEN outlined
    [partition] = outline_event(event).partitions
    # THEN the running totals count 1, 1 + 3 and 1
    assert partition.work == (0, 1, 5, 6)
    assert partition.offsets == (1, 2, 3) and partition.order is None


def test_outline_orders_a_group_listed_out_of_offset_order():
    # GIVEN a group listed as offsets 7, 3, 5 (the second with two headers)
    event = msk_event(
        [
            kafka_record("t", 0, 7),
            kafka_record("t", 0, 3, headers=[("h", b"")] * 2),
            kafka_record("t", 0, 5),
        ]
    )
    # WHEN outlined and read
    [partition] = outline_event(event).partitions
    records: list[KafkaRecord] = []
    read_records(partition, 0, len(partition), into=records)
    # THEN offsets, work and reading follow offset order; the event's index of each is kept
    assert partition.offsets == (3, 5, 7)
    assert partition.order == (1, 2, 0)
    assert partition.work == (0, 3, 4, 5)
    assert [record.offset for record in records] == [3, 5, 7]


def test_outline_checks_every_position_before_any_record_is_read():
    # GIVEN a record whose offset is unreadable behind one whose headers are malformed
    event = msk_event([kafka_record("t", 0, 1), kafka_record("t", 0, 2)])
    event["records"]["t-0"][0]["headers"] = "not a list"
    event["records"]["t-0"][1]["offset"] = "two"
    # WHEN outlined / THEN the position is what is refused (the headers are read later)
    with pytest.raises(MalformedEventError, match=r"records\['t-0'\]\[1\] field 'offset'"):
        outline_event(event)


@pytest.mark.parametrize(
    ("units", "most_records", "stop"),
    [(0, 10, 0), (1, 10, 0), (2, 10, 1), (5, 10, 2), (7, 10, 3), (MANY, 10, 4), (MANY, 2, 2)],
)
def test_outline_stop_within_takes_whole_records_up_to_the_work(
    units: int, most_records: int, stop: int
):
    # GIVEN records of 2, 3, 2 and 1 units of work
    event = msk_event(
        kafka_record("t", 0, o, headers=[("h", b"")] * extra)
        for o, extra in enumerate([1, 2, 1, 0])
    )
    [partition] = outline_event(event).partitions
    # WHEN asked where a piece from the first record ends / THEN whole records, within both bounds
    assert partition.stop_within(0, units, most_records) == stop


# -- pieces ----------------------------------------------------------------------------------


def test_reader_partitions_take_turns_in_pieces_of_at_most_a_request():
    # GIVEN two partitions of 1,200 and 3 records
    reader, encoded = _reader(_event({0: 1_200, 1: 3}))
    # WHEN read with room for any work
    pieces = []
    while (piece := reader.read(MANY, MANY)) is not None:
        pieces.append(piece)
    # THEN the partitions take turns, a piece of at most 500 records each; each piece is encoded
    # with the offset its partition starts at
    shapes = [
        (piece.topic_partition, len(batch.records), stands_at)
        for piece, (batch, stands_at) in zip(pieces, encoded.pieces, strict=True)
    ]
    assert shapes == [
        ("t-0", PIECE_RECORDS, 10),
        ("t-1", 3, 10),
        ("t-0", PIECE_RECORDS, 10),
        ("t-0", 200, 10),
    ]
    assert reader.done and reader.unread() == {} and reader.unread_count() == 0


def test_reader_takes_one_record_over_the_piece_size_when_it_fits_the_most():
    # GIVEN records of 41 units each (40 headers)
    reader, _ = _reader(_event({0: 3}, headers=40))
    # WHEN a piece may hold 10 units, and at most 41 / at most 40
    one = reader.read(10, 41)
    none = reader.read(10, 40)
    # THEN a record alone is read when the most allows it; otherwise nothing is
    assert one is not None and len(one.encoded.batch.records) == 1 and one.units == 41
    assert none is None
    assert reader.unread() == {"t-0": 11} and reader.unread_count() == 2


def test_reader_says_what_is_unread_after_a_stop():
    # GIVEN three partitions: the first read whole, the second in part, the third not at all
    reader, _ = _reader(_event({0: 2, 1: 5, 2: 4}))
    reader.read(MANY, MANY)
    reader.read(3, 3)
    # THEN the second is unread from its fourth record, the third from its first
    assert reader.unread() == {"t-1": 13, "t-2": 10}
    assert reader.unread_count() == 2 + 4
    # AND the third is read next, then the second again
    assert [reader.read(1, 1), reader.read(1, 1)] != [None, None]
    assert reader.unread() == {"t-1": 14, "t-2": 11}


def test_reader_charges_the_work_of_each_piece():
    charged: list[int] = []
    reader, _ = _reader(_event({0: 3}, headers=2), charged)
    reader.read(6, MANY)
    reader.read(MANY, MANY)
    assert charged == [6, 3]


def test_reader_malformed_record_ends_its_partition_where_it_stands():
    # GIVEN partition 0 whose fourth record's timestamp is malformed, and partition 1
    event = _event({0: 6, 1: 2})
    event["records"]["t-0"][3]["timestamp"] = "yesterday"
    reader, _ = _reader(event)
    # WHEN read
    first = reader.read(MANY, MANY)
    second = reader.read(MANY, MANY)
    # THEN the first piece holds the three records before it, names the problem and where it
    # is, and counts its work; partition 1 is read next; partition 0 stays unread from it
    assert first is not None and second is not None
    assert [record.offset for record in first.encoded.batch.records] == [10, 11, 12]
    assert isinstance(first.malformed, MalformedEventError)
    assert "records['t-0'][3] field 'timestamp'" in str(first.malformed)
    assert first.malformed_offset == 13 and first.units == 4
    assert second.topic_partition == "t-1" and second.malformed is None
    assert reader.done and reader.unread() == {"t-0": 13} and reader.unread_count() == 3


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(event=kafka_events() | kafka_events(damage_rate=40), data=st.data())
def test_reading_in_any_pieces_reads_what_parsing_the_whole_event_reads(
    event: Any, data: st.DataObject
):
    # GIVEN any event, usually well formed, sometimes damaged anywhere
    try:
        outline = outline_event(event)
    except MalformedEventError as error:
        # (an event refused by its outline is refused by parsing, for the same reason)
        with pytest.raises(MalformedEventError) as refused:
            parse_event(event)
        assert str(refused.value) == str(error)
        return
    # WHEN each partition is read in pieces of any size
    read: list[list[KafkaRecord]] = []
    problem: str | None = None
    for partition in outline.partitions:
        records: list[KafkaRecord] = []
        start = 0
        while start < len(partition) and problem is None:
            stop = data.draw(st.integers(start + 1, len(partition)))
            try:
                read_records(partition, start, stop, into=records)
            except MalformedEventError as error:
                problem = str(error)
            start = stop
        read.append(records)
        if problem is not None:
            break
    # THEN the records are those parsing reads, and the first problem is the one it names
    try:
        parsed = parse_event(event)
    except MalformedEventError as error:
        assert problem == str(error)
        return
    assert problem is None
    assert read == [list(batch.records) for batch in parsed.partitions]


# -- what reading costs, and when it stops ------------------------------------------------------


def test_read_cost_estimate_rises_at_once_and_falls_gradually():
    estimate = ReadCostEstimate()
    assert estimate.seconds_per_unit == INITIAL_SECONDS_PER_UNIT
    estimate.observe(0.01, 100)  # 100 us a unit: slower than expected
    assert estimate.seconds_per_unit == pytest.approx(100e-6)
    estimate.observe(0.0, 100)  # free: the estimate only comes down part of the way
    assert 0 < estimate.seconds_per_unit < 100e-6
    estimate.observe(0.5, 0)  # nothing read: nothing learned
    assert estimate.seconds_per_unit < 100e-6


def test_read_cost_estimate_work_within_a_time():
    estimate = ReadCostEstimate(10e-6)
    assert estimate.units_within(0.02) in (1_999, 2_000)  # floating point
    assert estimate.units_within(-1.0) == 0
    # Pieces read on a virtual clock cost nothing: the estimate falls toward zero, never to it
    for _ in range(10_000):
        estimate.observe(0.0, 1)
    assert 0 < estimate.units_within(1.0) < 10**9


@given(
    remaining_s=st.floats(0.0, 900.0),
    records=st.integers(0, 100_000),
    round_trip_s=st.floats(0.0, 10.0),
)
def test_time_budget_reading_ends_before_the_last_start_which_is_before_the_stop(
    remaining_s: float, records: int, round_trip_s: float
):
    # GIVEN any time left, event size and round trip
    budget = TimeBudget.start(100.0, remaining_s, records)
    # THEN reading ends first, then the last request starts, then the stop, then the deadline
    last_read, last_start = budget.last_read(round_trip_s), budget.last_start(round_trip_s)
    assert budget.started <= last_read <= last_start <= budget.stop_at <= budget.deadline
    if remaining_s >= 0.001:
        assert budget.started < last_read
