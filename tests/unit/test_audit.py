"""The stream auditor (`make audit`) under the consumer rule, without servers."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from localloop.audit import ORDERING_CAVEAT, Replayed, StreamRecord, audit, caveat_note
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


# -- after a replay: the ordering caveat told apart from real reordering ---------------------

REPLAY_STARTS_MS = 10_000.0
_SINK_WROTE = 1_000.0  # an arrival before the replay began: the sink's copy
_REPLAY_WROTE = 20_000.0  # an arrival after it: the replay's copy


def _keyed(offset: int, key: bytes) -> KafkaRecord:
    return KafkaRecord("t", 0, offset, 0, "CREATE_TIME", b64(key), b64(b"v%d" % offset))


def _source(records: list[KafkaRecord]) -> SourceLog:
    source = SourceLog()
    for record in records:
        key = None if record.key_b64 is None else base64.b64decode(record.key_b64)
        source.add(
            SourceRecord("t", 0, record.offset, key, content_digest(b"v%d" % record.offset, ()))
        )
    return source


def _stream(*copies: tuple[KafkaRecord, float]) -> list[StreamRecord]:
    return [
        StreamRecord("shardId-0", str(position), envelope_bytes(record), "k", arrival)
        for position, (record, arrival) in enumerate(copies)
    ]


def test_audit_counts_a_replayed_record_behind_newer_ones_as_the_caveat() -> None:
    # GIVEN key k's offsets 0, 1, 2: offset 1 was dead-lettered, so the sink wrote 0 and 2,
    # and the replay later wrote 1
    first, dead, last = (_keyed(offset, b"k") for offset in range(3))
    stream = _stream((first, _SINK_WROTE), (last, _SINK_WROTE), (dead, _REPLAY_WROTE))
    replayed = Replayed(frozenset({("t", 0, 1)}), REPLAY_STARTS_MS)

    # WHEN audited knowing what the replay put back
    report = audit(_source([first, dead, last]), stream, replayed=replayed)

    # THEN offset 1 is delivered, dropped by the rule only because of the replay: the audit
    # passes and says so
    assert (report.lost, report.out_of_order, report.out_of_order_replayed) == (0, 0, 1)
    assert (report.replayed, report.ok) == (1, True)
    assert caveat_note(report) is not None and ORDERING_CAVEAT in str(caveat_note(report))


def test_audit_still_fails_a_real_reorder_of_a_record_that_was_not_replayed() -> None:
    # GIVEN the sink wrote offset 1 after offset 2 (a real reorder), while another key's record
    # was replayed in the same run
    zero, one, two = (_keyed(offset, b"k") for offset in range(3))
    other = _keyed(3, b"other")
    stream = _stream((zero, _SINK_WROTE), (two, _SINK_WROTE), (one, _SINK_WROTE))
    stream += _stream((other, _REPLAY_WROTE))
    replayed = Replayed(frozenset({("t", 0, 3)}), REPLAY_STARTS_MS)

    # WHEN audited
    report = audit(_source([zero, one, two, other]), stream, replayed=replayed)

    # THEN the reorder is out of order, and the audit fails
    assert (report.out_of_order, report.out_of_order_replayed, report.ok) == (1, 0, False)


def test_audit_fails_a_replayed_record_the_sink_had_already_written_out_of_order() -> None:
    # GIVEN offset 1 written by the sink after offset 2, then discarded and replayed as well
    zero, one, two = (_keyed(offset, b"k") for offset in range(3))
    stream = _stream(
        (zero, _SINK_WROTE), (two, _SINK_WROTE), (one, _SINK_WROTE), (one, _REPLAY_WROTE)
    )
    replayed = Replayed(frozenset({("t", 0, 1)}), REPLAY_STARTS_MS)

    # WHEN audited
    report = audit(_source([zero, one, two]), stream, replayed=replayed)

    # THEN being replayed does not hide the sink's own reorder
    assert (report.out_of_order, report.out_of_order_replayed, report.ok) == (1, 0, False)


def test_audit_without_replay_knowledge_counts_the_caveat_as_out_of_order() -> None:
    # GIVEN the replayed stream of the first test, audited without being told of the replay
    first, dead, last = (_keyed(offset, b"k") for offset in range(3))
    stream = _stream((first, _SINK_WROTE), (last, _SINK_WROTE), (dead, _REPLAY_WROTE))

    # WHEN audited / THEN the late record is out of order: nothing is explained by default
    report = audit(_source([first, dead, last]), stream)
    assert (report.out_of_order, report.out_of_order_replayed, report.replayed) == (1, 0, 0)


# (offset, written after the replay began) per copy in the stream, in read order.
_copies = st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=25)


@given(copies=_copies, replayed_offsets=st.frozensets(st.integers(0, 5)))
def test_audit_replay_knowledge_only_moves_records_from_out_of_order_to_the_caveat(
    copies: list[tuple[int, bool]], replayed_offsets: frozenset[int]
) -> None:
    # GIVEN any stream of copies of records 0-5 (each offset has one key: offset parity), some
    # written before the replay began and some after, and any set of replayed records
    def record(offset: int) -> KafkaRecord:
        return _keyed(offset, b"kj"[offset % 2 : offset % 2 + 1])

    source = _source([record(offset) for offset in range(6)])
    stream = _stream(
        *((record(offset), _REPLAY_WROTE if late else _SINK_WROTE) for offset, late in copies)
    )
    replayed = Replayed(frozenset(("t", 0, o) for o in replayed_offsets), REPLAY_STARTS_MS)

    # WHEN audited without and with knowing of the replay
    plain = audit(source, stream)
    told = audit(source, stream, replayed=replayed)

    # THEN knowing only moves records from out_of_order to out_of_order_replayed, never more
    # than were replayed, and nothing else changes
    assert told.out_of_order + told.out_of_order_replayed == plain.out_of_order
    assert told.out_of_order_replayed <= told.replayed <= len(replayed_offsets)
    assert (told.lost, told.delivered, told.duplicates) == (
        plain.lost,
        plain.delivered,
        plain.duplicates,
    )
    # AND a replay that wrote nothing explains nothing
    if not any(late for _, late in copies):
        assert told.out_of_order_replayed == 0
