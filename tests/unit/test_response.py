"""Unit tests for response.partial_batch_response: the identifiers the ESM reads back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.events import KafkaEvent, parse_event
from msk_kinesis_sink.response import partial_batch_response
from tests.factories import kafka_record, load_event, msk_event


def _event(*records: tuple[str, int, int]) -> KafkaEvent:
    return parse_event(msk_event(kafka_record(t, p, o) for t, p, o in records))


def _identifier(partition: str, offset: int) -> dict[str, object]:
    return {"itemIdentifier": {"partition": partition, "offset": offset}}


def test_partial_batch_response_full_success_is_empty_list():
    # GIVEN a batch that was fully delivered
    event = _event(("t", 0, 1), ("t", 1, 5))

    # WHEN the response is built without resume offsets
    response = partial_batch_response(event, {})

    # THEN it reports no failures, as an empty list
    assert response == {"batchItemFailures": []}


def test_partial_batch_response_empty_event():
    # GIVEN an event without records
    event = parse_event(msk_event([]))

    # THEN the response is empty
    assert partial_batch_response(event, {}) == {"batchItemFailures": []}


def test_partial_batch_response_reports_contiguous_tail_from_resume_offset():
    # GIVEN a partition of offsets 10..14 that must resume at 12
    event = _event(*(("orders", 3, offset) for offset in range(10, 15)))

    # WHEN the response is built
    response = partial_batch_response(event, {"orders-3": 12})

    # THEN offsets 12, 13 and 14 are reported with exactly the ESM's identifier shape
    assert response == {
        "batchItemFailures": [
            _identifier("orders-3", 12),
            _identifier("orders-3", 13),
            _identifier("orders-3", 14),
        ]
    }


def test_partial_batch_response_per_partition_independent():
    # GIVEN three partitions, two of which must resume
    event = _event(("t", 0, 1), ("t", 0, 2), ("t", 1, 7), ("t", 1, 8), ("u", 0, 100), ("u", 0, 101))

    # WHEN the response is built
    response = partial_batch_response(event, {"t-0": 1, "u-0": 101})

    # THEN each failing partition reports its own tail; t-1 reports nothing
    assert response["batchItemFailures"] == [
        _identifier("t-0", 1),
        _identifier("t-0", 2),
        _identifier("u-0", 101),
    ]


def test_partial_batch_response_resume_between_offsets_reports_later_records():
    # GIVEN a partition with a gap in its offsets (compaction) and a resume point inside the gap
    event = _event(("t", 0, 3), ("t", 0, 7), ("t", 0, 9))

    # WHEN the response is built for resume offset 5
    response = partial_batch_response(event, {"t-0": 5})

    # THEN only offsets present in the batch are reported
    assert response["batchItemFailures"] == [_identifier("t-0", 7), _identifier("t-0", 9)]


def test_partial_batch_response_ignores_partitions_not_in_the_batch():
    # GIVEN a resume offset for a partition the event does not hold
    event = _event(("t", 0, 1))

    # THEN no identifier is invented for it
    assert partial_batch_response(event, {"t-9": 0}) == {"batchItemFailures": []}


def test_partial_batch_response_odd_topic_names():
    # GIVEN the sample event with topics containing '.' and '-'
    event = parse_event(load_event("odd_topic_names_event.json"))

    # WHEN two of its partitions must resume at their first record
    response = partial_batch_response(event, {"orders.v1-eu-0-0": 100, "orders.v1-eu-0-12": 7})

    # THEN the identifiers carry the ESM's "<topic>-<partition>" names
    assert response["batchItemFailures"] == [
        _identifier("orders.v1-eu-0-0", 100),
        _identifier("orders.v1-eu-0-0", 101),
        _identifier("orders.v1-eu-0-12", 7),
    ]


def test_partial_batch_response_offsets_are_integers_in_ascending_order():
    # GIVEN a self-managed style event with string offsets, out of order
    raw = msk_event([kafka_record("t", 0, 0) for _ in range(3)])
    for record, offset in zip(raw["records"]["t-0"], ["12", "10", "11"], strict=True):
        record["offset"] = offset

    # WHEN the whole partition is reported
    failures = partial_batch_response(parse_event(raw), {"t-0": 10})["batchItemFailures"]

    # THEN offsets are ints, ascending
    offsets = [failure["itemIdentifier"]["offset"] for failure in failures]
    assert offsets == [10, 11, 12]
    assert all(type(offset) is int for offset in offsets)


@settings(deadline=None)
@given(
    offsets=st.sets(st.integers(0, 10_000), min_size=1, max_size=40),
    pick=st.integers(0, 39),
)
def test_partial_batch_response_tail_property(offsets: set[int], pick: int):
    # GIVEN any partition and a resume point at one of its records
    ordered = sorted(offsets)
    resume = ordered[pick % len(ordered)]
    event = _event(*(("t", 0, offset) for offset in ordered))

    # WHEN the response is built
    failures = partial_batch_response(event, {"t-0": resume})["batchItemFailures"]

    # THEN it is exactly the batch's records from the resume point on, each once
    reported = [failure["itemIdentifier"]["offset"] for failure in failures]
    assert reported == [offset for offset in ordered if offset >= resume]
    assert reported[0] == resume
