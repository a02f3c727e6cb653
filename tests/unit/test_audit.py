"""The stream auditor (`make audit`) under the consumer rule, without servers."""

from __future__ import annotations

import base64
import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from localloop.audit import ORDERING_CAVEAT, Replayed, StreamRecord, audit, caveat_note
from localloop.workload import SourceLog, SourceRecord, content_digest
from msk_kinesis_sink.claim_checks import ClaimCheckTarget, pointer_bytes
from msk_kinesis_sink.encoding import envelope_bytes, partition_key_for
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.settings import PartitionKeyMode
from tests.factories import b64
from tests.fakes import FakeClaimChecks

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


# -- claim checks: pointers resolved to the records they stand for -----------------------------

CLAIMS = ClaimCheckTarget("claims")


def _claim_checked(record: KafkaRecord, store: FakeClaimChecks) -> bytes:
    """The pointer the sink writes for `record`, its object kept in `store`."""
    document = envelope_bytes(record)
    claim = CLAIMS.claim_check(record, document)
    store.objects[(claim.bucket, claim.key)] = document
    return pointer_bytes(record, claim)


def _keyed_stream(
    copies: list[tuple[KafkaRecord, bool]], store: FakeClaimChecks
) -> list[StreamRecord]:
    """Each copy in read order, as a pointer (True) or as itself, under its key."""
    return [
        StreamRecord(
            "shardId-0",
            str(position),
            _claim_checked(record, store) if pointer else envelope_bytes(record),
            str(record.key_b64),
        )
        for position, (record, pointer) in enumerate(copies)
    ]


def test_audit_resolves_claim_check_pointers_to_the_records_they_stand_for() -> None:
    # GIVEN key k's offsets 0, 1, 2, with offset 1 in the stream as a claim-check pointer
    records = [_keyed(offset, b"k") for offset in range(3)]
    store = FakeClaimChecks()
    stream = _keyed_stream([(r, r.offset == 1) for r in records], store)

    # WHEN audited with the S3 the pointer names
    report = audit(_source(records), stream, claim_checks=store)

    # THEN the pointer delivered its record in its key's turn, counted as a claim check
    assert (report.delivered, report.lost, report.out_of_order, report.corrupted) == (3, 0, 0, 0)
    assert (report.claim_checks, report.unresolved_claim_checks, report.ok) == (1, 0, True)


def test_audit_counts_a_pointer_it_can_not_resolve_as_lost_not_delivered() -> None:
    # GIVEN the same stream, but the pointer's object is gone (expired, deleted)
    records = [_keyed(offset, b"k") for offset in range(3)]
    store = FakeClaimChecks()
    stream = _keyed_stream([(r, r.offset == 1) for r in records], store)
    store.objects.clear()

    # WHEN audited, with that S3 and with none at all
    gone = audit(_source(records), stream, claim_checks=store)
    no_reader = audit(_source(records), stream)

    # THEN the record behind the pointer is lost, the pointer counted as unresolved, and the
    # audit fails
    for report in (gone, no_reader):
        assert (report.delivered, report.lost, report.claim_checks) == (2, 1, 0)
        assert (report.unresolved_claim_checks, report.corrupted, report.ok) == (1, 0, False)


def test_audit_counts_a_pointer_to_another_records_object_as_lost() -> None:
    # GIVEN a pointer for offset 1 whose object holds offset 0's envelope (right size and digest
    # for what it holds, but not this record)
    zero, one = _keyed(0, b"k"), _keyed(1, b"k")
    store = FakeClaimChecks()
    wrong = CLAIMS.claim_check(one, envelope_bytes(zero))
    store.objects[(wrong.bucket, wrong.key)] = envelope_bytes(zero)
    stream = [
        StreamRecord("shardId-0", "0", envelope_bytes(zero), "k"),
        StreamRecord("shardId-0", "1", pointer_bytes(one, wrong), "k"),
    ]

    # WHEN audited / THEN offset 1 is lost: a pointer delivers only the record it names
    report = audit(_source([zero, one]), stream, claim_checks=store)
    assert (report.lost, report.unresolved_claim_checks, report.ok) == (1, 1, False)


# (offset, whether the copy is a pointer) per copy in the stream, in read order.
_pointer_copies = st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=25)


@given(copies=_pointer_copies)
def test_audit_of_resolved_pointers_is_the_audit_of_the_records_themselves(
    copies: list[tuple[int, bool]],
) -> None:
    # GIVEN any stream of copies of records 0-5 (two keys), some copies claim-check pointers
    def record(offset: int) -> KafkaRecord:
        return _keyed(offset, b"kj"[offset % 2 : offset % 2 + 1])

    source = _source([record(offset) for offset in range(6)])
    store = FakeClaimChecks()
    stream = _keyed_stream([(record(offset), pointer) for offset, pointer in copies], store)
    plain = _keyed_stream([(record(offset), False) for offset, _ in copies], FakeClaimChecks())

    # WHEN audited with the pointers' objects, and with them gone
    resolved = audit(source, stream, claim_checks=store)
    unresolved = audit(source, stream, claim_checks=FakeClaimChecks())
    expected = audit(source, plain)

    # THEN resolved, the verdict is the one of the records written whole...
    assert dataclasses.replace(resolved, claim_checks=0) == expected
    assert resolved.claim_checks == len({offset for offset, pointer in copies if pointer})
    # ...and unresolved, a record is delivered only by a copy that is not a pointer
    whole = {offset for offset, pointer in copies if not pointer}
    assert (unresolved.delivered, unresolved.lost) == (len(whole), 6 - len(whole))
    assert unresolved.unresolved_claim_checks == sum(1 for _, pointer in copies if pointer)
