"""The stream auditor (`make audit`) under the consumer rule, without servers."""

from __future__ import annotations

from localloop.audit import StreamRecord, audit
from localloop.workload import SourceLog, SourceRecord, content_digest
from msk_kinesis_sink.encoding import envelope_bytes, partition_key_for
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.settings import PartitionKeyMode
from tests.factories import b64

HEADER = PartitionKeyMode.HEADER


def _record(offset: int, tenant: bytes) -> KafkaRecord:
    value = b"v%d" % offset
    return KafkaRecord(
        "t", 0, offset, 0, "CREATE_TIME", b64(b"k"), b64(value), (("tenant", tenant),)
    )


def test_audit_reads_a_header_keyed_stream_by_its_partition_keys() -> None:
    # GIVEN one Kafka key spread over two header values: two chains the sink orders apart, the
    # second chain read before the first
    records = [_record(offset, b"ab"[offset % 2 : offset % 2 + 1]) for offset in range(6)]
    source = SourceLog()
    for record in records:
        value = b"v%d" % record.offset
        source.add(SourceRecord("t", 0, record.offset, b"k", content_digest(value, record.headers)))
    read = [r for r in records if r.headers == (("tenant", b"b"),)]
    read += [r for r in records if r.headers == (("tenant", b"a"),)]
    stream = [
        StreamRecord(
            "shardId-0",
            str(position),
            envelope_bytes(record, HEADER),
            partition_key_for(record, b"k", HEADER, "tenant"),
        )
        for position, record in enumerate(read)
    ]

    # WHEN audited
    report = audit(source, stream)

    # THEN every record is delivered in its chain's order: nothing lost, nothing out of order
    # (by the Kafka key alone, chain a's offsets 0, 2 and 4 would look like stale repeats)
    assert (report.ok, report.delivered, report.out_of_order) == (True, 6, 0)


def test_audit_counts_bytes_that_are_no_envelope_as_undecodable() -> None:
    # GIVEN a stream record that is not an envelope
    stream = [StreamRecord("shardId-0", "1", b"\xf3\x89\x9a\xc2 not an envelope", "k")]

    # WHEN audited against an empty source / THEN it is counted, not raised
    assert audit(SourceLog(), stream).undecodable == 1
