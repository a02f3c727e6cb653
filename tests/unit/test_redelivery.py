"""The redelivery memory: what it recalls, what it forgets, and how it stays bounded."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from msk_kinesis_sink.events import KafkaRecord, PartitionBatch, parse_event
from msk_kinesis_sink.redelivery import KEEP_CHECK_EVERY, RedeliveryMemory, record_digest
from tests.factories import kafka_record, msk_event
from tests.fakes import FakeClock

SOURCE = "arn:aws:kafka:us-east-1:123456789012:cluster/a/1"
TOPIC = "orders"


def _batch(offsets: range | list[int], partition: int = 0, value: bytes = b"v") -> PartitionBatch:
    records: list[dict[str, Any]] = [
        kafka_record(TOPIC, partition, offset, f"k{offset % 3}".encode(), value)
        for offset in offsets
    ]
    (batch,) = parse_event(msk_event(records)).partitions
    return batch


def test_redelivery_recalls_what_was_kept_from_the_resume_offset_on() -> None:
    # GIVEN offsets 10-19 were delivered, the partition reported from 12, 13-19 written anyway
    memory = RedeliveryMemory()
    batch = _batch(range(10, 20))
    written = [r for r in batch.records if r.offset != 12]
    memory.keep(SOURCE, batch, 12, written)
    # WHEN the ESM redelivers from 12
    recalled = memory.recall(SOURCE, _batch(range(12, 25)))
    # THEN 13-19 are known; 12 (not written) and what is new (20-24) are not
    assert recalled == frozenset(range(13, 20))
    assert memory.entries == 7


def test_redelivery_same_offset_other_content_is_sent_and_forgotten() -> None:
    # GIVEN offsets 0-4 kept
    memory = RedeliveryMemory()
    batch = _batch(range(5))
    memory.keep(SOURCE, batch, 0, batch.records)
    # WHEN the same offsets come back holding other values (the topic was recreated)
    recalled = memory.recall(SOURCE, _batch(range(5), value=b"other"))
    # THEN none counts as delivered, and the stale entries are gone
    assert recalled == frozenset()
    assert memory.entries == 0


def test_redelivery_is_per_source_and_partition() -> None:
    memory = RedeliveryMemory()
    batch = _batch(range(5))
    memory.keep(SOURCE, batch, 0, batch.records)
    assert memory.recall("arn:aws:kafka:us-east-1:123456789012:cluster/b/2", batch) == frozenset()
    assert memory.recall(SOURCE, _batch(range(5), partition=1)) == frozenset()
    assert memory.recall(SOURCE, batch) == frozenset(range(5))


def test_redelivery_forgets_below_where_the_esm_stands() -> None:
    # GIVEN offsets 0-9 kept
    memory = RedeliveryMemory()
    batch = _batch(range(10))
    memory.keep(SOURCE, batch, 0, batch.records)
    # WHEN the next batch starts at 6 (the ESM moved past 0-5)
    memory.recall(SOURCE, _batch(range(6, 10)))
    # THEN only 6-9 remain
    assert memory.entries == 4


def test_redelivery_forget_drops_a_partition_delivered_whole() -> None:
    memory = RedeliveryMemory()
    batch = _batch(range(10))
    memory.keep(SOURCE, batch, 0, batch.records)
    memory.forget(SOURCE, batch)
    assert memory.entries == 0
    assert memory.recall(SOURCE, batch) == frozenset()


def test_redelivery_is_bounded_in_entries_least_recent_partition_first() -> None:
    # GIVEN room for 25 entries and three partitions of 10 kept one after another
    memory = RedeliveryMemory(max_entries=25)
    batches = [_batch(range(10), partition=p) for p in range(3)]
    for batch in batches:
        memory.keep(SOURCE, batch, 0, batch.records)
    # THEN the oldest partition is gone and the bound holds
    assert memory.entries == 20
    assert memory.recall(SOURCE, batches[0]) == frozenset()
    assert memory.recall(SOURCE, batches[2]) == frozenset(range(10))


def test_redelivery_is_bounded_in_age() -> None:
    # GIVEN a partition kept, then time passing beyond the age bound
    clock = FakeClock()
    memory = RedeliveryMemory(max_age_s=60, clock=clock)
    batch = _batch(range(10))
    memory.keep(SOURCE, batch, 0, batch.records)
    clock.advance(61)
    # WHEN it is redelivered
    # THEN nothing is recalled
    assert memory.recall(SOURCE, batch) == frozenset()
    assert memory.entries == 0


def test_redelivery_keeps_what_it_can_in_the_time_there_is() -> None:
    # GIVEN 200 written records, and time for one look at the clock only
    memory = RedeliveryMemory()
    batch = _batch(range(200))
    looks = iter([True])
    # WHEN they are kept
    memory.keep(SOURCE, batch, 0, batch.records, in_time=lambda: next(looks, False))
    # THEN the records up to the next look are remembered; the others are only sent again
    assert memory.recall(SOURCE, batch) == frozenset(range(KEEP_CHECK_EVERY))


def test_redelivery_recall_of_a_later_piece_forgets_below_where_the_esm_stands() -> None:
    # GIVEN 10-19 remembered (reported from 10)
    memory = RedeliveryMemory()
    memory.keep(SOURCE, _batch(range(10, 20)), 10, _batch(range(10, 20)).records)
    # WHEN a piece 15-19 of a partition the ESM resends from 12 is recalled
    recalled = memory.recall(SOURCE, _batch(range(15, 20)), stands_at=12)
    # THEN the piece's records are known, and only what lies below 12 is forgotten
    assert recalled == frozenset(range(15, 20))
    assert memory.recall(SOURCE, _batch(range(12, 15)), stands_at=12) == frozenset(range(12, 15))
    assert memory.entries == 8


_texts = st.one_of(st.none(), st.text(max_size=8))


_headers = st.lists(
    st.tuples(st.sampled_from(["h", "", "h'", '"', "\udc00", "é"]), st.binary(max_size=3)),
    max_size=3,
).map(tuple)
_contents = st.tuples(_texts, _texts, st.integers(-1, 10), _headers)


@given(first=_contents, second=_contents)
def test_record_digest_equal_exactly_when_content_is_equal(
    first: tuple[str | None, str | None, int, tuple[tuple[str, bytes], ...]],
    second: tuple[str | None, str | None, int, tuple[tuple[str, bytes], ...]],
) -> None:
    # GIVEN two records at the same offset, with any keys, values, timestamps and headers
    def record(
        content: tuple[str | None, str | None, int, tuple[tuple[str, bytes], ...]],
    ) -> KafkaRecord:
        key, value, timestamp, headers = content
        return KafkaRecord(TOPIC, 0, 7, timestamp, "CREATE_TIME", key, value, headers)

    # THEN their digests are equal exactly when their contents are
    assert (record_digest(record(first)) == record_digest(record(second))) == (first == second)


def test_record_digest_schema_metadata_is_part_of_the_content() -> None:
    # GIVEN one record as sent without a registry, and validated by one (key or value)
    def digest(**schemas: tuple[str, str]) -> int:
        event = msk_event([kafka_record(TOPIC, 0, 1, b"k", b"v", **schemas)])
        (batch,) = parse_event(event).partitions
        return record_digest(batch.records[0])

    # WHEN their digests are taken
    digests = [
        digest(),
        digest(value_schema=("AVRO", "1")),
        digest(key_schema=("AVRO", "1")),
        digest(value_schema=("AVRO", "2")),
    ]

    # THEN each differs (an envelope would hold different bytes), and the same stays the same
    assert len(set(digests)) == 4
    assert digest(value_schema=("AVRO", "1")) == digests[1]
