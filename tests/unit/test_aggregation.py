"""KPL aggregation: the format reads back with the standard deaggregator, within every limit."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest

# The deaggregator module puts its own folder on sys.path, which its messages_pb2 needs.
from aws_kinesis_agg.deaggregator import iter_deaggregate_records, messages_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aggregation import AggregatingPacker
from msk_kinesis_sink.encoding import EncodedRecord
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.kpl import (
    KPL_DIGEST_BYTES,
    KPL_MAGIC,
    encode_aggregate,
    record_frame_size,
    varint,
    varint_size,
)
from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES, MAX_RECORD_BYTES_CEILING
from msk_kinesis_sink.planning import Entry

KEY = "customer-42"


def _record(data: bytes, *, offset: int = 0, key: str = KEY) -> EncodedRecord:
    source = KafkaRecord(
        topic="orders",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type="CREATE_TIME",
        key_b64=None,
        value_b64=None,
    )
    return EncodedRecord(source, data, key, len(data) + len(key.encode("utf-8")))


def _run(payloads: Sequence[bytes], key: str = KEY) -> list[EncodedRecord]:
    return [_record(data, offset=i, key=key) for i, data in enumerate(payloads)]


def _deaggregate(entry: Entry) -> list[tuple[str, bytes]]:
    """(partition key, data) of each user record, as aws-kinesis-agg's deaggregator sees them."""
    kinesis_record = {
        "Data": entry.data,
        "PartitionKey": entry.partition_key,
        "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "ApproximateArrivalTimestamp": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    out = []
    for user in iter_deaggregate_records([kinesis_record], data_format="Boto3"):
        kinesis = user["kinesis"]
        data = kinesis["data"]
        # Aggregated user records come back base64-encoded (Lambda's shape); plain ones as sent.
        out.append(
            (kinesis["partitionKey"], base64.b64decode(data) if kinesis.get("aggregated") else data)
        )
    return out


class _CountingRun:
    """An iterable that counts how many records the packer pulled from it."""

    def __init__(self, records: Iterable[EncodedRecord]) -> None:
        self._records = list(records)
        self.pulled = 0

    def __iter__(self) -> Iterator[EncodedRecord]:
        for record in self._records:
            self.pulled += 1
            yield record


def test_aggregating_packer_round_trips_through_aws_kinesis_agg() -> None:
    # GIVEN three records of one key, one of them empty (a raw tombstone)
    payloads = [b"first", b"", b"third" * 100]

    # WHEN they are packed with room to spare
    entry = AggregatingPacker().pack(_run(payloads), DEFAULT_MAX_RECORD_BYTES)

    # THEN one aggregated record carries all three, in order, under their key
    assert entry is not None
    assert entry.data.startswith(KPL_MAGIC)
    assert [r.offset for r in entry.records] == [0, 1, 2]
    assert _deaggregate(entry) == [(KEY, data) for data in payloads]


def test_encode_aggregate_matches_protobuf_serialization_byte_for_byte() -> None:
    # GIVEN the reference protobuf message for two records under a multi-byte UTF-8 key
    key = "ключ-🔑"
    payloads = [b"a" * 200, b"\x00\xff" * 70_000]
    reference = messages_pb2.AggregatedRecord()
    reference.partition_key_table.append(key)
    for data in payloads:
        record = reference.records.add()
        record.partition_key_index = 0
        record.data = data

    # WHEN we encode the same content by hand
    ours = encode_aggregate(key, payloads)

    # THEN the protobuf body is identical and framed by magic and MD5 digest
    body = ours[len(KPL_MAGIC) : -KPL_DIGEST_BYTES]
    assert body == reference.SerializeToString()
    parsed = messages_pb2.AggregatedRecord()
    parsed.ParseFromString(body)
    assert list(parsed.partition_key_table) == [key]
    assert [r.data for r in parsed.records] == payloads


@pytest.mark.parametrize("value", [0, 1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**35])
def test_varint_size_matches_encoding_at_boundaries(value: int) -> None:
    # GIVEN a value at a varint byte boundary / WHEN sized and encoded / THEN both agree
    assert varint_size(value) == len(varint(value))


def test_aggregating_packer_sends_a_run_of_one_as_the_plain_record() -> None:
    # GIVEN a single record
    run = _run([b"lonely"])

    # WHEN packed
    entry = AggregatingPacker().pack(run, DEFAULT_MAX_RECORD_BYTES)

    # THEN it goes out exactly as without aggregation (deaggregators pass it through)
    assert entry == Entry.of(KEY, b"lonely", tuple(run))
    assert _deaggregate(entry) == [(KEY, b"lonely")]


def test_aggregating_packer_wraps_a_lone_record_that_starts_with_the_magic() -> None:
    # GIVEN a producer's value that begins with the KPL magic bytes
    tricky = KPL_MAGIC + b"not an aggregate at all"

    # WHEN packed alone
    entry = AggregatingPacker().pack(_run([tricky]), DEFAULT_MAX_RECORD_BYTES)

    # THEN it is wrapped, so a deaggregator returns the producer's bytes unchanged
    assert entry is not None
    assert entry.data != tricky
    assert _deaggregate(entry) == [(KEY, tricky)]


def test_aggregating_packer_never_sends_a_value_that_reads_as_an_aggregate_plain() -> None:
    # GIVEN a lone value that deaggregators read as an aggregate (magic and MD5 match)
    value = encode_aggregate("other", [b"x" * 100, b"y"])
    [record] = _run([value])
    wrapped = AggregatingPacker().pack([record], DEFAULT_MAX_RECORD_BYTES)
    assert wrapped is not None

    # WHEN what is left of a request holds it plain but not wrapped
    entry = AggregatingPacker().pack([record], wrapped.size - 1)

    # THEN it waits for a request with room (plain, a consumer would get b"x..." and b"y")
    assert record.size <= wrapped.size - 1
    assert entry is None
    assert _deaggregate(wrapped) == [(KEY, value)]


def test_aggregating_packer_sends_a_magic_value_with_a_wrong_digest_plain_when_short_of_room():
    # GIVEN a lone value with the magic but not its MD5: deaggregators pass it through as it is
    value = KPL_MAGIC + b"z" * 100
    [record] = _run([value])

    # WHEN the budget holds it plain but not wrapped
    entry = AggregatingPacker().pack([record], record.size)

    # THEN it goes plain, and reads back unchanged
    assert entry == Entry.of(KEY, value, (record,))
    assert _deaggregate(entry) == [(KEY, value)]


def test_aggregating_packer_returns_none_when_the_first_record_alone_is_over_budget() -> None:
    # GIVEN a record one byte bigger than the budget
    record = _record(b"x" * 100)

    # WHEN packed / THEN nothing is produced and nothing consumed
    assert AggregatingPacker().pack([record], record.size - 1) is None


def test_aggregating_packer_sends_a_record_exactly_at_budget_plain() -> None:
    # GIVEN two records, a budget exactly the first record's plain size
    run = _run([b"x" * 100, b"y"])

    # WHEN packed
    entry = AggregatingPacker().pack(run, run[0].size)

    # THEN the first goes out alone and plain, exactly filling the budget
    assert entry is not None
    assert entry.records == (run[0],)
    assert entry.size == run[0].size


def test_aggregating_packer_fills_a_budget_exactly() -> None:
    # GIVEN three records and the exact size of their aggregate as the budget
    payloads = [b"a" * 300, b"b" * 5, b"c" * 40_000]
    exact = len(encode_aggregate(KEY, payloads)) + len(KEY)

    # WHEN packed at that budget, and at one byte less
    at_limit = AggregatingPacker().pack(_run(payloads), exact)
    below = AggregatingPacker().pack(_run(payloads), exact - 1)

    # THEN the first takes all three and fills the budget to the byte; the second takes two
    assert at_limit is not None and below is not None
    assert len(at_limit.records) == 3
    assert at_limit.size == exact
    assert [r.offset for r in below.records] == [0, 1]
    assert below.size <= exact - 1


def test_aggregating_packer_fills_a_mib_with_one_kib_records_under_the_limit() -> None:
    # GIVEN 2,000 records of 1 KiB, far more than one Kinesis record holds
    run = _run([bytes([i % 251]) * 1024 for i in range(2000)])

    # WHEN packed at the default 1 MiB record limit
    entry = AggregatingPacker().pack(run, DEFAULT_MAX_RECORD_BYTES)

    # THEN the aggregate is as full as it may be and never over
    assert entry is not None
    assert entry.size <= DEFAULT_MAX_RECORD_BYTES
    next_frame = record_frame_size(1024)
    assert entry.size + next_frame > DEFAULT_MAX_RECORD_BYTES
    assert _deaggregate(entry) == [(KEY, r.data) for r in run[: len(entry.records)]]


def test_aggregating_packer_respects_a_raised_ten_mib_record_limit() -> None:
    # GIVEN records for a stream raised to 10 MiB records
    run = _run([b"z" * 1_000_000] * 12)

    # WHEN packed / THEN ten of them fit, and the aggregate stays under 10 MiB
    entry = AggregatingPacker().pack(run, MAX_RECORD_BYTES_CEILING)
    assert entry is not None
    assert len(entry.records) == 10
    assert entry.size <= MAX_RECORD_BYTES_CEILING


def test_aggregating_packer_never_mixes_partition_keys() -> None:
    # GIVEN a run whose third record has another key (the planner never does this; stay safe)
    run = [*_run([b"1", b"2"]), _record(b"3", offset=2, key="other")]

    # WHEN packed
    entry = AggregatingPacker().pack(run, DEFAULT_MAX_RECORD_BYTES)

    # THEN only the same-key prefix is taken
    assert entry is not None
    assert [r.partition_key for r in entry.records] == [KEY, KEY]


def test_aggregating_packer_pulls_at_most_one_record_past_what_it_takes() -> None:
    # GIVEN a long run that does not fit in one aggregate
    run = _CountingRun(_run([b"v" * 1000] * 5000))

    # WHEN packed
    entry = AggregatingPacker().pack(run, DEFAULT_MAX_RECORD_BYTES)

    # THEN the work is linear in what was packed: no look-ahead beyond one record
    assert entry is not None
    assert run.pulled == len(entry.records) + 1


def test_aggregating_packer_returns_none_for_an_empty_run() -> None:
    # GIVEN nothing / WHEN packed / THEN nothing
    assert AggregatingPacker().pack([], DEFAULT_MAX_RECORD_BYTES) is None


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=60),
    budget=st.integers(min_value=1, max_value=120_000),
    key=st.text(min_size=1, max_size=40),
    magic_first=st.booleans(),
)
def test_aggregating_packer_takes_the_longest_fitting_prefix_in_order(
    sizes: list[int], budget: int, key: str, magic_first: bool
) -> None:
    # GIVEN any same-key run, any budget
    payloads = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    if magic_first:
        payloads[0] = KPL_MAGIC + payloads[0]
    run = _run(payloads, key=key)

    # WHEN packed
    entry = AggregatingPacker().pack(run, budget)

    # THEN either nothing fits, or a prefix is taken in order, within budget, and reads back
    if entry is None:
        assert run[0].size > budget
        return
    taken = len(entry.records)
    assert entry.records == tuple(run[:taken])
    assert entry.size == len(entry.data) + len(key.encode("utf-8"))
    assert entry.size <= budget
    assert _deaggregate(entry) == [(key, data) for data in payloads[:taken]]
    # ...and as many as fit: one more record would break the budget
    if taken < len(run) and taken > 1:
        assert entry.size + record_frame_size(len(payloads[taken])) > budget


def _boto3_record(data: bytes, key: str) -> dict[str, Any]:
    return {
        "Data": data,
        "PartitionKey": key,
        "SequenceNumber": "1",
        "ApproximateArrivalTimestamp": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }


def test_deaggregator_passes_plain_records_through_beside_aggregates() -> None:
    # GIVEN a stream holding an aggregate and a plain record, as a consumer reads them
    aggregate = AggregatingPacker().pack(_run([b"1", b"2"]), DEFAULT_MAX_RECORD_BYTES)
    assert aggregate is not None
    batch = [_boto3_record(aggregate.data, KEY), _boto3_record(b"3", KEY)]

    # WHEN deaggregated in one pass
    users = list(iter_deaggregate_records(batch, data_format="Boto3"))

    # THEN the consumer sees 1, 2, 3 in order
    datas = [
        base64.b64decode(u["kinesis"]["data"])
        if u["kinesis"].get("aggregated")
        else u["kinesis"]["data"]
        for u in users
    ]
    assert datas == [b"1", b"2", b"3"]
