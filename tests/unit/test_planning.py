"""Unit tests for planning: the strict per-key rule and the PutRecords limits of each request."""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aggregation import AggregatingPacker
from msk_kinesis_sink.encoding import EncodedRecord, UnwritableRecord
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_RECORDS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    MIB,
    max_request_bytes,
)
from msk_kinesis_sink.planning import (
    Entry,
    PartitionQueue,
    RequestLimits,
    SingleRecordPacker,
)

LIMITS = RequestLimits(
    max_records=MAX_RECORDS_PER_REQUEST,
    max_request_bytes=MAX_REQUEST_BYTES,
    max_record_bytes=DEFAULT_MAX_RECORD_BYTES,
)
PACKER = SingleRecordPacker()


def _source(offset: int) -> KafkaRecord:
    return KafkaRecord("t", 0, offset, 0, "CREATE_TIME", None, None)


def _encoded(offset: int, key: str, size: int | None = None) -> EncodedRecord:
    """An encoded record whose size (data + UTF-8 key) is `size` bytes."""
    key_bytes = len(key.encode("utf-8"))
    data = b"x" * ((size if size is not None else key_bytes + 10) - key_bytes)
    return EncodedRecord(_source(offset), data, key, len(data) + key_bytes)


def _unwritable(offset: int, key: str) -> UnwritableRecord:
    return UnwritableRecord(_source(offset), key, "too big")


def _shape(entries: list[Entry]) -> list[tuple[str, int]]:
    return [(entry.partition_key, entry.records[0].offset) for entry in entries]


def _queue(*units: EncodedRecord | UnwritableRecord) -> PartitionQueue:
    return PartitionQueue("t-0", list(units))


# -- SingleRecordPacker and Entry ---------------------------------------------------------


def test_single_record_packer_takes_only_the_head():
    # GIVEN a run of two same-key records
    run = [_encoded(0, "k"), _encoded(1, "k")]

    # WHEN it is packed
    entry = PACKER.pack(run, budget=1_000)

    # THEN the entry is the first record alone
    assert entry is not None
    assert entry.records == (run[0],)
    assert (entry.partition_key, entry.data) == ("k", run[0].data)


def test_single_record_packer_budget_edges():
    # GIVEN a record of 50 bytes
    record = _encoded(0, "k", size=50)

    # THEN it fits a budget of exactly 50 but not 49; an empty run gives nothing
    assert PACKER.pack([record], budget=50) is not None
    assert PACKER.pack([record], budget=49) is None
    assert PACKER.pack([], budget=1_000) is None


def test_entry_size_counts_utf8_partition_key():
    # GIVEN an entry with a 3-character, 6-byte partition key
    entry = Entry.of("ééé", b"12345", ())

    # THEN its size is data plus key bytes
    assert entry.size == 11


# -- the strict per-key rule --------------------------------------------------------------


def test_next_request_holds_one_entry_per_partition_key():
    # GIVEN three records of key a and one of key b
    queue = _queue(_encoded(0, "a"), _encoded(1, "a"), _encoded(2, "b"), _encoded(3, "a"))

    # WHEN a request is planned
    entries = queue.next_request(LIMITS, PACKER)

    # THEN it holds only the head of each key
    assert _shape(entries) == [("a", 0), ("b", 2)]


def test_next_request_key_waits_for_acknowledge():
    # GIVEN a request in flight carrying a's first record
    queue = _queue(_encoded(0, "a"), _encoded(1, "a"), _encoded(2, "b"))
    first = queue.next_request(LIMITS, PACKER)

    # WHEN another request is planned before anything is acknowledged
    second = queue.next_request(LIMITS, PACKER)

    # THEN nothing is eligible: a's next record waits, b is in flight
    assert second == []
    assert not queue.can_send
    assert queue.in_flight

    # WHEN a's entry is acknowledged
    queue.acknowledge(first[0])

    # THEN a's next record goes out, alone
    assert _shape(queue.next_request(LIMITS, PACKER)) == [("a", 1)]


def test_release_with_backoff_holds_only_that_key():
    # GIVEN a's and b's first records in flight, more of both waiting
    queue = _queue(_encoded(0, "a"), _encoded(1, "b"), _encoded(2, "a"), _encoded(3, "b"))
    first = queue.next_request(LIMITS, PACKER)

    # WHEN a is throttled (back off until t=10) and b is acknowledged
    queue.release("a", not_before=10.0)
    queue.acknowledge(first[1])

    # THEN before t=10 only b goes on; at t=10 a's same record is back, counted as one failure
    assert queue.can_send_at(5.0)
    assert _shape(queue.next_request(LIMITS, PACKER)) == [("b", 3)]
    assert not queue.can_send_at(9.9)
    assert queue.next_retry_at() == 10.0
    assert queue.failed_attempts("a") == 1
    assert queue.can_send_at(10.0)
    assert _shape(queue.next_request(LIMITS, PACKER)) == [("a", 0)]
    assert queue.next_retry_at() is None


def test_failed_attempts_count_in_a_row_and_reset_on_acknowledge():
    queue = _queue(_encoded(0, "a"), _encoded(1, "a"))
    for expected in (1, 2):
        queue.next_request(LIMITS, PACKER)
        queue.release("a")
        assert queue.failed_attempts("a") == expected
    [entry] = queue.next_request(LIMITS, PACKER)
    queue.acknowledge(entry)
    assert queue.failed_attempts("a") == 0


def test_stop_blocks_keys_that_were_backing_off():
    # GIVEN a backing off
    queue = _queue(_encoded(0, "a"), _encoded(1, "b"))
    queue.next_request(LIMITS, PACKER)
    queue.release("a", not_before=10.0)
    # WHEN the partition stops
    queue.stop("invocation deadline")
    # THEN a never comes back, and is reported with the reason
    assert not queue.can_send_at(11.0)
    assert queue.blocked_reasons["a"] == "invocation deadline"


def test_release_makes_the_same_record_eligible_again():
    # GIVEN a's first record in flight
    queue = _queue(_encoded(0, "a"), _encoded(1, "a"))
    [entry] = queue.next_request(LIMITS, PACKER)

    # WHEN it is released (Kinesis did not accept it)
    queue.release("a")

    # THEN the very same record is planned again, not the next one
    [retry] = queue.next_request(LIMITS, PACKER)
    assert retry.records == entry.records
    assert queue.first_unacknowledged_offset() == 0


def test_acknowledge_all_drains_queue_in_key_order():
    # GIVEN an interleaving of two keys
    units = [_encoded(offset, key) for offset, key in enumerate("abbaab")]
    queue = _queue(*units)
    sent: list[tuple[str, int]] = []

    # WHEN every request is acknowledged in full
    while not queue.is_done:
        entries = queue.next_request(LIMITS, PACKER)
        assert entries
        sent.extend(_shape(entries))
        for entry in entries:
            queue.acknowledge(entry)

    # THEN each key's records went out in offset order, one per key per request
    assert [offset for key, offset in sent if key == "a"] == [0, 3, 4]
    assert [offset for key, offset in sent if key == "b"] == [1, 2, 5]
    assert queue.first_unacknowledged_offset() is None
    assert queue.pending_count() == 0


def test_next_request_lowest_offsets_first():
    # GIVEN keys whose heads are at offsets 5, 1, 3 and room for two entries
    queue = _queue(_encoded(1, "b"), _encoded(3, "c"), _encoded(5, "a"))
    limits = RequestLimits(max_records=2, max_request_bytes=1_000, max_record_bytes=1_000)

    # WHEN a request is planned
    entries = queue.next_request(limits, PACKER)

    # THEN it takes the two lowest offsets, in order
    assert _shape(entries) == [("b", 1), ("c", 3)]


def test_next_request_stops_at_first_head_that_does_not_fit():
    # GIVEN heads of 60, 50 and 30 bytes and a 100-byte request limit
    queue = _queue(_encoded(0, "a", 60), _encoded(1, "b", 50), _encoded(2, "c", 30))
    limits = RequestLimits(max_records=500, max_request_bytes=100, max_record_bytes=100)

    # WHEN requests are planned
    first = queue.next_request(limits, PACKER)
    second = queue.next_request(limits, PACKER)

    # THEN a later, smaller record does not overtake a lower offset that did not fit
    assert _shape(first) == [("a", 0)]
    assert _shape(second) == [("b", 1), ("c", 2)]


# -- PutRecords limits --------------------------------------------------------------------


def test_next_request_at_most_500_entries():
    # GIVEN 1201 records with distinct keys
    queue = _queue(*(_encoded(offset, f"k{offset}", 20) for offset in range(1201)))

    # WHEN requests are planned without acknowledging
    sizes = [len(queue.next_request(LIMITS, PACKER)) for _ in range(4)]

    # THEN they hold 500, 500, 201, then nothing
    assert sizes == [500, 500, 201, 0]


def test_next_request_bytes_count_partition_keys():
    # GIVEN 5-byte data blobs under 20-byte partition keys (25 bytes each)
    keys = [f"{n:020d}" for n in range(5)]
    queue = _queue(*(_encoded(offset, key, 25) for offset, key in enumerate(keys)))
    limits = RequestLimits(max_records=500, max_request_bytes=100, max_record_bytes=100)

    # WHEN a request is planned
    entries = queue.next_request(limits, PACKER)

    # THEN exactly four fit (100 bytes counting the keys), not twenty data blobs' worth
    assert len(entries) == 4
    assert sum(entry.size for entry in entries) == 100


def test_next_request_five_records_of_1_mib_fill_5_mib_exactly():
    # GIVEN six records of exactly 1 MiB each (data + key) under distinct keys
    queue = _queue(*(_encoded(offset, f"k{offset}", MIB) for offset in range(6)))

    # WHEN requests are planned with the production limits
    first = queue.next_request(LIMITS, PACKER)
    second = queue.next_request(LIMITS, PACKER)

    # THEN five fit the 5 MiB request, the sixth goes in the next one
    assert len(first) == 5
    assert sum(entry.size for entry in first) == MAX_REQUEST_BYTES
    assert _shape(second) == [("k5", 5)]


def test_next_request_10_mib_record_with_raised_limits():
    # GIVEN a stream raised to 10 MiB records and one record of exactly 10 MiB
    record_limit = 10 * MIB
    limits = RequestLimits(
        max_records=MAX_RECORDS_PER_REQUEST,
        max_request_bytes=max_request_bytes(record_limit),
        max_record_bytes=record_limit,
    )
    queue = _queue(_encoded(0, "big", record_limit), _encoded(1, "small", 100))

    # WHEN requests are planned
    first = queue.next_request(limits, PACKER)
    second = queue.next_request(limits, PACKER)

    # THEN the big record travels alone and the small one follows
    assert _shape(first) == [("big", 0)]
    assert _shape(second) == [("small", 1)]


def test_max_request_bytes_is_5_mib_or_one_record_ceiling():
    # GIVEN / WHEN / THEN the request ceiling never falls below one record
    assert max_request_bytes(1 * MIB) == 5 * MIB
    assert max_request_bytes(5 * MIB) == 5 * MIB
    assert max_request_bytes(10 * MIB) == 10 * MIB


# -- stop, block, first unacknowledged offset ---------------------------------------------


def test_stop_sends_nothing_more_but_in_flight_entries_settle():
    # GIVEN a in flight and b, c waiting
    queue = _queue(_encoded(0, "a"), _encoded(1, "a"), _encoded(2, "b"), _encoded(3, "c"))
    limits = RequestLimits(max_records=1, max_request_bytes=1_000, max_record_bytes=1_000)
    [in_flight] = queue.next_request(limits, PACKER)

    # WHEN the partition is stopped (deadline)
    queue.stop("invocation deadline")

    # THEN nothing can be sent and the waiting keys carry the reason
    assert queue.stopped
    assert not queue.can_send
    assert queue.next_request(LIMITS, PACKER) == []
    assert queue.blocked_reasons == {"b": "invocation deadline", "c": "invocation deadline"}

    # WHEN the in-flight entry is acknowledged afterwards
    queue.acknowledge(in_flight)

    # THEN it counts as delivered, a's next record does not go out, and the resume point moves
    assert queue.next_request(LIMITS, PACKER) == []
    assert queue.blocked_reasons["a"] == "invocation deadline"
    assert queue.first_unacknowledged_offset() == 1
    assert queue.pending_count() == 3


def test_stop_keeps_the_first_reason():
    # GIVEN a stopped queue
    queue = _queue(_encoded(0, "a"))
    queue.stop("non-retryable error AccessDeniedException")

    # WHEN it is stopped again for another reason
    queue.stop("invocation deadline")

    # THEN the first reason stays
    assert queue.blocked_reasons == {"a": "non-retryable error AccessDeniedException"}


def test_stop_then_release_keeps_the_record_unacknowledged():
    # GIVEN an in-flight entry when the partition stops
    queue = _queue(_encoded(4, "a"), _encoded(5, "b"))
    queue.next_request(LIMITS, PACKER)
    queue.stop("non-retryable error ResourceNotFoundException")

    # WHEN both entries come back failed
    queue.release("a")
    queue.release("b")

    # THEN nothing is eligible and the partition resumes at its first record
    assert not queue.can_send
    assert queue.first_unacknowledged_offset() == 4
    assert set(queue.blocked_reasons) == {"a", "b"}


def test_block_lets_earlier_records_of_other_keys_move_and_holds_everything_after():
    # GIVEN b, a, a, c with a's head (offset 1) in flight and b's record still waiting
    queue = _queue(_encoded(0, "b"), _encoded(1, "a"), _encoded(2, "a"), _encoded(3, "c"))
    queue.next_request(RequestLimits(1, 1_000, 1_000), PACKER)  # b at 0
    first = queue.next_request(RequestLimits(1, 1_000, 1_000), PACKER)  # a at 1
    assert _shape(first) == [("a", 1)]
    queue.release("b")  # b comes back for a retry

    # WHEN a's head is blocked
    queue.block("a", "dead-letter write failed")

    # THEN b (before the blocked offset) still goes out; c (after it) does not, since the
    # partition is reported from a's head anyway and c would only be sent twice
    assert _shape(queue.next_request(LIMITS, PACKER)) == [("b", 0)]
    assert not queue.can_send
    assert queue.blocked_reasons == {"a": "dead-letter write failed"}
    assert queue.first_unacknowledged_offset() == 0
    assert not queue.is_done


def test_first_unacknowledged_offset_counts_in_flight_records():
    # GIVEN records at offsets 10, 11, 12 under three keys, all in flight
    queue = _queue(_encoded(10, "a"), _encoded(11, "b"), _encoded(12, "c"))
    entries = queue.next_request(LIMITS, PACKER)
    assert queue.first_unacknowledged_offset() == 10

    # WHEN the middle and the first are acknowledged
    queue.acknowledge(entries[1])
    assert queue.first_unacknowledged_offset() == 10
    queue.acknowledge(entries[0])

    # THEN the resume point is the one unacknowledged record; after it, none
    assert queue.first_unacknowledged_offset() == 12
    queue.acknowledge(entries[2])
    assert queue.first_unacknowledged_offset() is None
    assert queue.is_done


def test_partition_queue_empty_is_done():
    # GIVEN a queue without records
    queue = _queue()

    # THEN it is done, has nothing to send and no resume point
    assert queue.is_done
    assert not queue.can_send
    assert queue.next_request(LIMITS, PACKER) == []
    assert queue.first_unacknowledged_offset() is None


# -- unwritable records -------------------------------------------------------------------


def test_take_dead_letters_surfaces_unwritable_heads_once():
    # GIVEN an unwritable record at the head of key a, and b writable
    queue = _queue(_unwritable(0, "a"), _encoded(1, "a"), _encoded(2, "b"))

    # WHEN dead letters and a request are taken
    taken = queue.take_dead_letters()
    entries = queue.next_request(LIMITS, PACKER)

    # THEN the unwritable record surfaces once and a's next record waits behind it
    assert [record.offset for record in taken] == [0]
    assert queue.take_dead_letters() == []
    assert _shape(entries) == [("b", 2)]
    assert queue.first_unacknowledged_offset() == 0

    # WHEN the dead letter is settled
    queue.acknowledge_dead_letter(taken[0])

    # THEN a's next record becomes eligible
    assert _shape(queue.next_request(LIMITS, PACKER)) == [("a", 1)]


def test_take_dead_letters_waits_for_earlier_same_key_records():
    # GIVEN an unwritable record behind a writable one of the same key
    queue = _queue(_encoded(0, "a"), _unwritable(1, "a"))

    # WHEN nothing is acknowledged yet
    assert queue.take_dead_letters() == []
    [entry] = queue.next_request(LIMITS, PACKER)
    assert queue.take_dead_letters() == []

    # WHEN the writable record is acknowledged
    queue.acknowledge(entry)

    # THEN the unwritable one surfaces; nothing is sendable meanwhile
    assert [record.offset for record in queue.take_dead_letters()] == [1]
    assert not queue.can_send


def test_partition_queue_only_unwritable_records_is_not_done():
    # GIVEN only unwritable records
    queue = _queue(_unwritable(0, "a"), _unwritable(1, "b"))

    # THEN nothing is sendable, but both are owed
    assert not queue.can_send
    assert not queue.is_done
    assert queue.pending_count() == 2
    assert [record.offset for record in queue.take_dead_letters()] == [0, 1]


def test_block_dead_letter_keeps_partition_resume_point():
    # GIVEN an unwritable record taken when no bucket is configured
    queue = _queue(_encoded(0, "b"), _unwritable(1, "a"), _encoded(2, "a"))
    [record] = queue.take_dead_letters()

    # WHEN its key is blocked and everything else is acknowledged
    queue.block(record.partition_key, "unwritable record and no DEAD_LETTER_BUCKET")
    for entry in queue.next_request(LIMITS, PACKER):
        queue.acknowledge(entry)

    # THEN the partition resumes at the unwritable record and a's later record never went out
    assert queue.first_unacknowledged_offset() == 1
    assert queue.next_request(LIMITS, PACKER) == []
    assert queue.pending_count() == 2


def test_stop_discards_untaken_dead_letters():
    # GIVEN an unwritable head that has not been taken yet
    queue = _queue(_unwritable(0, "a"))

    # WHEN the partition stops
    queue.stop("invocation deadline")

    # THEN it is not offered any more and stays owed
    assert queue.take_dead_letters() == []
    assert queue.first_unacknowledged_offset() == 0


def test_release_of_a_key_not_in_flight_never_duplicates_it():
    # GIVEN a key whose head was released twice after one send
    queue = _queue(_encoded(0, "a"), _encoded(1, "a"))
    queue.next_request(LIMITS, PACKER)
    queue.release("a")
    queue.release("a")

    # WHEN the next request is planned
    entries = queue.next_request(LIMITS, PACKER)

    # THEN the key appears once
    assert _shape(entries) == [("a", 0)]


def test_aggregated_run_stops_at_a_record_written_before():
    # GIVEN key "a" at offsets 1-4, of which 2 and 3 were written before (redelivery memory)
    queue = PartitionQueue("t-0", [_encoded(o, "a") for o in (1, 2, 3, 4)], frozenset({2, 3}))
    # WHEN the aggregating packer takes a's run
    [entry] = queue.next_request(LIMITS, AggregatingPacker())
    # THEN the aggregate holds offset 1 alone; once it is acknowledged, 2 and 3 are settled
    # without being sent, and counted, and 4 goes next
    assert [record.offset for record in entry.records] == [1]
    assert queue.delivered_before_count == 0
    queue.acknowledge(entry)
    assert queue.delivered_before_count == 2
    [entry] = queue.next_request(LIMITS, AggregatingPacker())
    assert [record.offset for record in entry.records] == [4]
    queue.acknowledge(entry)
    assert queue.is_done


# -- property: any queue, any acknowledge/release sequence --------------------------------


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[RequestLimits, list[EncodedRecord | UnwritableRecord]]:
    # Up to 64 bytes a record: few same-key records fit one aggregate; up to 400, many do.
    record_limit = draw(st.integers(min_value=8, max_value=64) | st.integers(100, 400))
    limits = RequestLimits(
        max_records=draw(st.integers(min_value=1, max_value=6)),
        max_request_bytes=draw(st.integers(min_value=record_limit, max_value=3 * record_limit)),
        max_record_bytes=record_limit,
    )
    units: list[EncodedRecord | UnwritableRecord] = []
    offset = draw(st.integers(min_value=0, max_value=1_000))
    for _ in range(draw(st.integers(min_value=0, max_value=30))):
        key = draw(st.sampled_from(["a", "b", "c", "dd", "é"]))
        offset += draw(st.integers(min_value=1, max_value=3))
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            units.append(_unwritable(offset, key))
        else:
            key_bytes = len(key.encode("utf-8"))
            small = st.integers(key_bytes, min(record_limit, key_bytes + 12))
            units.append(_encoded(offset, key, draw(st.integers(key_bytes, record_limit) | small)))
    return limits, units


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=_scenarios(), data=st.data())
def test_partition_queue_invariants_under_any_acknowledge_release_sequence(
    scenario: tuple[RequestLimits, list[EncodedRecord | UnwritableRecord]], data: st.DataObject
):
    # GIVEN any queue and limits, its records arriving in pieces, some of them written before
    # (the redelivery memory), either packer, and a model of what is owed per key
    limits, units = scenario
    packer = data.draw(st.sampled_from([PACKER, AggregatingPacker()]))
    offsets = [unit.offset for unit in units]
    written_before = set(data.draw(st.lists(st.sampled_from(offsets))) if offsets else [])
    given = data.draw(st.integers(0, len(units)))
    queue = PartitionQueue("t-0", units[:given], frozenset(written_before))
    owed: dict[str, deque[int]] = {}
    unwritable = {unit.offset for unit in units if isinstance(unit, UnwritableRecord)}
    flying: list[Entry] = []
    flying_dead: list[UnwritableRecord] = []
    settled: dict[str, list[int]] = {}
    skipped = 0

    def busy() -> set[str]:
        return {e.partition_key for e in flying} | {d.partition_key for d in flying_dead}

    def settle(key: str, offset: int) -> None:
        assert owed[key].popleft() == offset
        settled.setdefault(key, []).append(offset)

    def skip_written_before() -> None:
        # A record written before is settled unsent once its key owes nothing ahead of it.
        nonlocal skipped
        for key, offsets in owed.items():
            while offsets and key not in busy() and offsets[0] in written_before:
                settle(key, offsets[0])
                skipped += 1

    def take(count: int) -> None:
        for unit in units[given - count : given]:
            owed.setdefault(unit.partition_key, deque()).append(unit.offset)
        skip_written_before()

    take(given)
    # WHEN requests are planned, entries are acknowledged, released or left in flight, and
    # the partition's next records arrive at any time
    for step in range(200):
        draining = step >= 150
        if given < len(units) and (draining or data.draw(st.booleans())):
            count = data.draw(st.integers(1, len(units) - given))
            queue.extend(units[given : given + count])
            given += count
            take(count)
        for record in queue.take_dead_letters():
            # THEN a dead letter surfaces only as its key's oldest owed record, key idle
            assert record.partition_key not in busy()
            assert owed[record.partition_key][0] == record.offset
            flying_dead.append(record)
        eligible = {
            key: offsets[0]
            for key, offsets in owed.items()
            if offsets and key not in busy() and offsets[0] not in unwritable
        }
        entries = queue.next_request(limits, packer)

        # THEN every request respects the limits and the strict per-key rule
        keys = [entry.partition_key for entry in entries]
        assert len(keys) == len(set(keys)), "two entries with one partition key"
        assert len(entries) <= limits.max_records
        assert sum(entry.size for entry in entries) <= limits.max_request_bytes
        assert all(entry.size <= limits.max_record_bytes for entry in entries)
        assert not set(keys) & busy(), "a key was sent while its previous record was in flight"
        firsts = [entry.records[0].offset for entry in entries]
        assert firsts == sorted(firsts)
        for entry in entries:
            # AND an entry is the key's oldest owed records in a row, none written before
            sent = [record.offset for record in entry.records]
            assert eligible[entry.partition_key] == sent[0], "not the oldest owed record"
            assert sent == list(owed[entry.partition_key])[: len(sent)]
            assert not set(sent) & written_before, "a record written before was sent again"
        if entries:
            left_out = [offset for key, offset in eligible.items() if key not in keys]
            assert all(offset > firsts[-1] for offset in left_out), "lowest offsets first"
        if eligible:
            assert entries, "an eligible record was not sent (hot keys must move)"
        flying.extend(entries)

        for entry in list(flying):
            choice = "ack" if draining else data.draw(st.sampled_from(["ack", "release", "wait"]))
            if choice == "ack":
                queue.acknowledge(entry)
                flying.remove(entry)
                for record in entry.records:
                    settle(entry.partition_key, record.offset)
            elif choice == "release":
                queue.release(entry.partition_key)
                flying.remove(entry)
        for record in list(flying_dead):
            if draining or data.draw(st.booleans()):
                queue.acknowledge_dead_letter(record)
                settle(record.partition_key, record.offset)
                flying_dead.remove(record)
        skip_written_before()

        remaining = [offset for offsets in owed.values() for offset in offsets]
        assert queue.first_unacknowledged_offset() == (min(remaining) if remaining else None)
        assert queue.pending_count() == len(remaining)
        assert queue.delivered_before_count == skipped
        if queue.is_done and given == len(units):
            break

    # THEN everything was settled exactly once, in offset order per key
    assert queue.is_done and given == len(units)
    expected: dict[str, list[int]] = {}
    for unit in units:
        expected.setdefault(unit.partition_key, []).append(unit.offset)
    assert settled == expected
