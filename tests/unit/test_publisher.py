"""Publisher and Sink behaviour under faults, against the fault-injecting fake Kinesis."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aggregation import deaggregate
from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator
from msk_kinesis_sink.encoding import partition_key_for
from msk_kinesis_sink.errors import DeadLetterError, MalformedEventError, RoutingError
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import PartitionKeyMode, Settings
from msk_kinesis_sink.writers import RecordResult
from tests.factories import b64, kafka_record, msk_event, sources_event
from tests.fakes import (
    THROTTLED,
    FakeClock,
    FakeContext,
    FakeDeadLetters,
    FakeKinesis,
    Faults,
    LongestJitter,
)

TOPIC = "orders.v1-eu"

# A source record for these tests: (partition, offset, key or None, value).
Source = tuple[int, int, bytes | None, bytes]


def _event(sources: list[Source], topic: str = TOPIC) -> dict[str, Any]:
    return sources_event(sources, topic)


def _settings(**overrides: str) -> Settings:
    env = {
        "STREAM_NAME": "sink-test",
        "RECORD_FORMAT": "envelope",
        "AGGREGATION": "off",  # the plain path, one Kinesis record per Kafka record
        "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "4",
        **overrides,
    }
    return Settings.from_env(env)


@contextmanager
def _sink(writer: FakeKinesis, **kwargs: Any) -> Iterator[Sink]:
    sink = Sink(kwargs.pop("settings", None) or _settings(), writer=writer, **kwargs)
    try:
        yield sink
    finally:
        sink.close()


def _consumed(fake: FakeKinesis) -> dict[tuple[int, str | None], list[int]]:
    """What a consumer applying the documented rule receives, per (partition, key)."""
    dedup = OffsetDeduplicator()
    received: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for stored in fake.records:
        envelope = Envelope.from_bytes(stored.data)
        if dedup.accept(envelope):
            received[(envelope.partition, envelope.key)].append(envelope.offset)
    return dict(received)


def _expected(sources: list[Source]) -> dict[tuple[int, str | None], list[int]]:
    expected: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for partition, offset, key, _ in sorted(sources, key=lambda s: (s[0], s[1])):
        expected[(partition, b64(key))].append(offset)
    return dict(expected)


def _failed_offsets(response: dict[str, Any]) -> dict[str, list[int]]:
    failed: dict[str, list[int]] = defaultdict(list)
    for failure in response["batchItemFailures"]:
        identifier = failure["itemIdentifier"]
        failed[identifier["partition"]].append(identifier["offset"])
    return dict(failed)


def _deliver_like_the_esm(
    sink: Sink,
    sources: list[Source],
    *,
    context: FakeContext | None = None,
    max_invocations: int = 300,
) -> int:
    """Invoke until everything is delivered, resuming each partition like the ESM does."""
    pending = list(sources)
    for invocation in range(1, max_invocations + 1):
        response = sink.handle(_event(pending), context or FakeContext())
        failed = _failed_offsets(response)
        for partition_name, offsets in failed.items():
            batch = sorted(o for p, o, _, _ in pending if f"{TOPIC}-{p}" == partition_name)
            # The response is a contiguous tail of the partition's records in this batch.
            assert offsets == batch[batch.index(offsets[0]) :]
        resume = {name: min(offsets) for name, offsets in failed.items()}
        pending = [
            s for s in pending if f"{TOPIC}-{s[0]}" in resume and s[1] >= resume[f"{TOPIC}-{s[0]}"]
        ]
        if not pending:
            return invocation
    raise AssertionError(f"{len(pending)} records still undelivered after {max_invocations}")


def _still_pending(pending: list[Source], response: dict[str, Any]) -> list[Source]:
    """What the ESM sends next: each reported partition from the lowest offset reported."""
    resume = {name: min(offsets) for name, offsets in _failed_offsets(response).items()}
    return [s for s in pending if s[1] >= resume.get(f"{TOPIC}-{s[0]}", s[1] + 1)]


# -- strict ordering -------------------------------------------------------------------------


def test_publisher_hot_key_sends_one_record_per_request_in_order() -> None:
    # GIVEN 20 records of one key in one partition
    sources: list[Source] = [(0, offset, b"hot", b"v") for offset in range(20)]
    fake = FakeKinesis()
    # WHEN they are published
    with _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext())
    # THEN each went alone, in offset order, and nothing is reported
    assert response == {"batchItemFailures": []}
    assert fake.calls == 20
    assert _consumed(fake) == _expected(sources)
    assert [Envelope.from_bytes(r.data).offset for r in fake.records] == list(range(20))


def test_publisher_distinct_keys_share_requests_of_at_most_500() -> None:
    # GIVEN 1,200 records with distinct keys in one partition
    sources: list[Source] = [(0, o, f"k{o}".encode(), b"x") for o in range(1200)]
    fake = FakeKinesis()
    # WHEN published
    with _sink(fake) as sink:
        sink.handle(_event(sources), FakeContext())
    # THEN three requests suffice (500 + 500 + 200)
    assert fake.calls == 3
    assert len(fake.records) == 1200


def test_publisher_spreads_a_backlog_over_idle_workers() -> None:
    # GIVEN 4 MB of records (40 of 100 KB, distinct keys) and 8 workers
    sources: list[Source] = [(0, o, f"k{o}".encode(), b"x" * 100_000) for o in range(40)]
    fake = FakeKinesis()
    # WHEN published
    with _sink(fake, settings=_settings(MAX_CONCURRENCY="8", RECORD_FORMAT="raw")) as sink:
        response = sink.handle(_event(sources), FakeContext())
    # THEN it goes as several requests side by side, none above one record's limit (1 MiB),
    # rather than one 4 MB request
    assert response == {"batchItemFailures": []}
    assert fake.calls >= 4
    assert max(fake.request_bytes) <= 1024 * 1024
    assert sorted(r.data for r in fake.records) == sorted(value for _, _, _, value in sources)


def test_publisher_with_one_worker_fills_each_request() -> None:
    # GIVEN the same 4 MB and a single worker
    sources: list[Source] = [(0, o, f"k{o}".encode(), b"x" * 100_000) for o in range(40)]
    fake = FakeKinesis()
    # WHEN published
    with _sink(fake, settings=_settings(MAX_CONCURRENCY="1", RECORD_FORMAT="raw")) as sink:
        sink.handle(_event(sources), FakeContext())
    # THEN nothing is gained by splitting: one request carries it all (5 MiB limit)
    assert fake.calls == 1


def test_publisher_small_partitions_share_one_request() -> None:
    # GIVEN twelve partitions holding two records each, same key everywhere
    sources: list[Source] = [(p, o, b"k", b"v") for p in range(12) for o in (2 * p, 2 * p + 1)]
    fake = FakeKinesis()
    # WHEN published
    with _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext())
    # THEN each round trip carries one record of every partition: two requests in all
    assert response == {"batchItemFailures": []}
    assert fake.calls == 2
    assert _consumed(fake) == _expected(sources)


def test_publisher_throttled_record_is_retried_before_its_successor() -> None:
    # GIVEN the first attempt at offset 3 (key "a") is throttled
    sources: list[Source] = [(0, o, b"a" if o % 2 else b"b", b"v") for o in range(10)]
    attempts: dict[int, int] = defaultdict(int)

    def throttle_offset_3_once(call: int, entry: Entry) -> str | None:
        offset = entry.records[0].offset
        attempts[offset] += 1
        return THROTTLED if offset == 3 and attempts[offset] == 1 else None

    fake = FakeKinesis(fail_entry=throttle_offset_3_once)
    # WHEN published
    with _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext())
        report = sink.last_report
    # THEN it is delivered, key "a" stays in order, and the throttle is counted
    assert response == {"batchItemFailures": []}
    offsets_of_a = [
        Envelope.from_bytes(r.data).offset for r in fake.records if r.partition_key == "a"
    ]
    assert offsets_of_a == [1, 3, 5, 7, 9]
    assert report is not None
    assert report.stats.records_throttled == 1
    assert report.stats.retry_attempts == 1


def test_publisher_throttled_key_backs_off_alone() -> None:
    # GIVEN a hot key whose first attempt is throttled with a long backoff (1 s), and 40 records
    # of other keys in the same partition; 10 ms per request
    sources: list[Source] = [(0, 0, b"hot", b"v")] + [
        (0, o, f"k{o % 20}".encode(), b"v") for o in range(1, 41)
    ]
    attempts: dict[int, int] = defaultdict(int)

    def throttle_hot_once(call: int, entry: Entry) -> RecordResult | None:
        attempts[entry.records[0].offset] += 1
        first_hot = entry.partition_key == "hot" and attempts[entry.records[0].offset] == 1
        return RecordResult.THROTTLED if first_hot else None

    clock = FakeClock()
    fake = FakeKinesis(fail_entry=throttle_hot_once, clock=clock, latency_s=0.01)
    settings_ = _settings(RETRY_BASE_MS="1000", RETRY_MAX_MS="1000", MAX_CONCURRENCY="1")
    started = clock()
    # WHEN published (backoff waits its whole ceiling)
    with _sink(
        fake, settings=settings_, clock=clock, sleep=clock.sleep, rng=LongestJitter()
    ) as sink:
        response = sink.handle(_event(sources), clock.context(10_000))
    # THEN the other keys went on while the hot key waited: all written within the first few
    # round trips, long before the hot key's retry a second later
    assert response == {"batchItemFailures": []}
    offsets = [Envelope.from_bytes(r.data).offset for r in fake.records]
    assert offsets[-1] == 0
    assert sorted(offsets[:-1]) == list(range(1, 41))
    assert max(fake.written_at[:-1]) - started < 0.1
    assert fake.written_at[-1] - started >= 1.0


# -- how late the data is -----------------------------------------------------------------


# The sources_event records' timestamps: 1_700_000_000_000 + offset (ms since the epoch).
_STAMPED_AT_S = 1_700_000_000.0


@pytest.mark.parametrize("aggregation", ["off", "on"])
def test_sink_delivery_delay_from_each_record_timestamp_to_its_acknowledgement(
    aggregation: str,
) -> None:
    # GIVEN records stamped at 1_700_000_000_000 + offset ms, and a wall clock 10 s later
    sources: list[Source] = [(0, o, b"k", b"v") for o in range(5)] + [(1, 7, b"j", b"w")]
    fake = FakeKinesis()
    settings_ = _settings(AGGREGATION=aggregation)
    # WHEN published (aggregated, several records share one Kinesis record)
    with _sink(fake, settings=settings_, wall_clock=lambda: _STAMPED_AT_S + 10) as sink:
        sink.handle(_event(sources), FakeContext())
        report = sink.last_report
    # THEN each record has its own delay: the acknowledgement less its own timestamp
    assert report is not None
    expected = sorted(10_000.0 - offset for _, offset, _, _ in sources)
    assert sorted(report.stats.delivery_delays_ms) == expected
    assert report.log_fields()["delivery_delay_max_ms"] == 10_000.0


def test_sink_delivery_delay_counts_the_wait_of_a_throttled_record() -> None:
    # GIVEN a record throttled once, with 1 s of backoff, and a wall clock that moves with the
    # invocation's own clock
    clock = FakeClock(start=0.0)
    attempts: dict[int, int] = defaultdict(int)

    def throttle_offset_1_once(call: int, entry: Entry) -> RecordResult | None:
        attempts[entry.records[0].offset] += 1
        first = entry.records[0].offset == 1 and attempts[1] == 1
        return RecordResult.THROTTLED if first else None

    fake = FakeKinesis(fail_entry=throttle_offset_1_once, clock=clock, latency_s=0.01)
    settings_ = _settings(RETRY_BASE_MS="1000", RETRY_MAX_MS="1000")
    # WHEN published, the records read 2 s after they were stamped
    with _sink(
        fake,
        settings=settings_,
        clock=clock,
        wall_clock=lambda: _STAMPED_AT_S + 2 + clock(),
        sleep=clock.sleep,
        rng=LongestJitter(),
    ) as sink:
        sink.handle(_event([(0, 0, b"a", b"v"), (0, 1, b"b", b"v")]), clock.context(10_000))
        report = sink.last_report
    # THEN the record written at once is ~2 s late, the throttled one a second later still
    assert report is not None
    first, throttled = report.stats.delivery_delays_ms
    assert 2_000 <= first < 2_100
    assert throttled >= first + 1_000 - 1


def test_sink_delivery_delay_leaves_out_records_without_a_timestamp_and_floors_the_future() -> None:
    # GIVEN one record without a timestamp (-1), one stamped a minute after the wall clock (the
    # producer's clock ahead), one stamped a second before it
    now_ms = 1_800_000_000_000
    records = [
        kafka_record(TOPIC, 0, 0, b"k", b"v", timestamp=-1, timestamp_type="NO_TIMESTAMP_TYPE"),
        kafka_record(TOPIC, 0, 1, b"k", b"v", timestamp=now_ms + 60_000),
        kafka_record(TOPIC, 0, 2, b"k", b"v", timestamp=now_ms - 1_000),
    ]
    fake = FakeKinesis()
    # WHEN published
    with _sink(fake, wall_clock=lambda: now_ms / 1000) as sink:
        response = sink.handle(msk_event(records), FakeContext())
        report = sink.last_report
    # THEN all three reach the stream; the delay has the future one as 0 and the last one's
    # second, and the summary counts the two that could not be measured as they are
    assert response == {"batchItemFailures": []}
    assert report is not None
    stats = report.stats
    assert stats.records_published == 3
    assert stats.delivery_delays_ms == [0.0, 1_000.0]
    assert (stats.records_without_timestamp, stats.records_timestamp_ahead) == (1, 1)


def test_publisher_lost_responses_only_duplicate_never_reorder() -> None:
    # GIVEN every other response is lost after the write happened
    sources: list[Source] = [(0, o, f"k{o % 3}".encode(), b"v") for o in range(30)]
    fake = FakeKinesis(Faults(response_lost=0.5), seed=7)
    # WHEN published until the ESM has nothing left to redeliver
    with _sink(fake) as sink:
        _deliver_like_the_esm(sink, sources)
    # THEN the stream holds duplicates, and the consumer rule yields the source exactly
    assert len(fake.records) > len(sources)
    assert _consumed(fake) == _expected(sources)


# -- failures reported to the ESM ------------------------------------------------------------


def test_publisher_non_retryable_error_reports_whole_partition_and_says_what_to_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a stream the role may not write to
    sources: list[Source] = [(0, o, b"k", b"v") for o in range(5)] + [(1, 0, b"k", b"v")]
    fake = FakeKinesis(Faults(request_fatal=1.0), fatal_code="AccessDeniedException")
    # WHEN published
    with caplog.at_level(logging.ERROR), _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext())
    # THEN every record of both partitions is reported after a single attempt
    assert _failed_offsets(response) == {f"{TOPIC}-0": [0, 1, 2, 3, 4], f"{TOPIC}-1": [0]}
    assert fake.calls == 1
    assert "non-retryable" in caplog.text
    assert "AccessDeniedException" in caplog.text


def test_publisher_short_budget_still_delivers(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an invocation that starts with under a second left (short function timeout)
    sources: list[Source] = [(0, o, b"k", b"v") for o in range(3)]
    fake = FakeKinesis()
    # WHEN handled
    with caplog.at_level(logging.WARNING), _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext(lambda: 900))
    # THEN everything is delivered, and the log says the budget is short
    assert response == {"batchItemFailures": []}
    assert _consumed(fake) == _expected(sources)
    assert "started with 900 ms left" in caplog.text


def test_publisher_no_time_left_sends_nothing_and_reports_everything() -> None:
    # GIVEN an invocation with no time left at all
    sources: list[Source] = [(0, o, b"k", b"v") for o in range(3)]
    fake = FakeKinesis()
    # WHEN handled
    with _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext(lambda: 0))
        report = sink.last_report
    # THEN nothing is sent and everything is reported
    assert fake.calls == 0
    assert _failed_offsets(response) == {f"{TOPIC}-0": [0, 1, 2]}
    assert report is not None and report.stats.stopped_by_deadline


def test_publisher_deadline_midway_reports_only_the_undelivered_tail() -> None:
    # GIVEN one hot key (one record per request), 100 ms per request and a one-second budget
    sources: list[Source] = [(0, o, b"hot", b"v") for o in range(20)]
    clock = FakeClock()
    fake = FakeKinesis(clock=clock, latency_s=0.1)
    context = clock.context(1_000)
    # WHEN handled
    with _sink(fake, clock=clock, sleep=clock.sleep) as sink:
        response = sink.handle(_event(sources), context)
    # THEN the stream holds a prefix, exactly the rest is reported, and the answer is on time
    written = [Envelope.from_bytes(r.data).offset for r in fake.records]
    assert 5 <= len(written) < 10
    assert written == list(range(len(written)))
    assert _failed_offsets(response) == {f"{TOPIC}-0": list(range(len(written), 20))}
    assert context.get_remaining_time_in_millis() >= 50
    assert fake.cut_requests == 0


# -- records that can never be written -------------------------------------------------------


def _oversize_case() -> list[Source]:
    # offset 1 is bigger than MAX_RECORD_BYTES once encoded; offsets 0-3 share key "k"
    return [(0, 0, b"k", b"a"), (0, 1, b"k", b"x" * 4096), (0, 2, b"k", b"b"), (0, 3, b"j", b"c")]


def test_publisher_oversize_record_goes_to_dead_letters_and_key_moves_on() -> None:
    # GIVEN a dead-letter writer and one oversize record between two of the same key
    fake, dead = FakeKinesis(), FakeDeadLetters()
    # WHEN published
    with _sink(fake, settings=_settings(MAX_RECORD_BYTES="2048"), dead_letters=dead) as sink:
        response = sink.handle(_event(_oversize_case()), FakeContext())
        report = sink.last_report
    # THEN it is dead-lettered with its reason, and nothing is reported
    assert response == {"batchItemFailures": []}
    assert [r.offset for r in dead.written] == [1]
    assert "MAX_RECORD_BYTES=2048" in dead.written[0].reason
    assert [Envelope.from_bytes(r.data).offset for r in fake.records if r.partition_key == "k"] == [
        0,
        2,
    ]
    assert report is not None and report.stats.records_dead_lettered == 1


@pytest.mark.parametrize("dead_letters", [None, FakeDeadLetters(broken=True)])
def test_publisher_unwritable_record_without_working_bucket_blocks_its_key(
    dead_letters: FakeDeadLetters | None,
) -> None:
    # GIVEN no (working) dead-letter bucket
    fake = FakeKinesis()
    # WHEN a batch with an oversize record is published
    with _sink(
        fake, settings=_settings(MAX_RECORD_BYTES="2048"), dead_letters=dead_letters
    ) as sink:
        response = sink.handle(_event(_oversize_case()), FakeContext())
    # THEN the partition is reported from the oversize record on, and the key's later record
    # was never sent ahead of it
    assert _failed_offsets(response) == {f"{TOPIC}-0": [1, 2, 3]}
    sent = sorted(Envelope.from_bytes(r.data).offset for r in fake.records)
    assert 2 not in sent
    assert 0 in sent


def test_publisher_undecodable_value_is_dead_lettered_with_reason() -> None:
    # GIVEN a record whose value is not base64
    event = _event([(0, 0, b"k", b"ok"), (0, 1, b"k", b"ok")])
    event["records"][f"{TOPIC}-0"][0]["value"] = "not base64!"
    fake, dead = FakeKinesis(), FakeDeadLetters()
    # WHEN handled
    with _sink(fake, dead_letters=dead) as sink:
        response = sink.handle(event, FakeContext())
    # THEN it is dead-lettered and the next record is published
    assert response == {"batchItemFailures": []}
    assert [r.offset for r in dead.written] == [0]
    assert "value is not valid base64" in dead.written[0].reason
    assert [Envelope.from_bytes(r.data).offset for r in fake.records] == [1]


# -- events ------------------------------------------------------------------------------------


def test_sink_empty_records_succeeds_without_calling_kinesis() -> None:
    fake = FakeKinesis()
    with _sink(fake) as sink:
        response = sink.handle({"eventSource": "aws:kafka", "records": {}}, FakeContext())
        report = sink.last_report
    assert response == {"batchItemFailures": []}
    assert fake.calls == 0
    assert report is not None and report.stats.records_received == 0


def test_sink_malformed_event_raises_naming_the_problem() -> None:
    with _sink(FakeKinesis()) as sink, pytest.raises(MalformedEventError, match="no 'records'"):
        sink.handle({"eventSource": "aws:kafka"}, FakeContext())


# -- the guarantee, as a property ------------------------------------------------------------

_KEYS = st.sampled_from([None, b"", b"a", b"b", b"c", b"\xff\xfe", "ключ".encode()])

_sources = st.lists(
    st.tuples(st.integers(0, 2), _KEYS, st.binary(max_size=16)), min_size=1, max_size=60
).map(
    lambda rows: [
        (partition, offset, key, value)
        for offset, (partition, key, value) in enumerate(rows)  # offsets unique, increasing
    ]
)

_faults = st.builds(
    Faults,
    record_throttle=st.sampled_from([0.0, 0.1, 0.4]),
    record_internal=st.sampled_from([0.0, 0.1]),
    request_throttle=st.sampled_from([0.0, 0.1]),
    request_fatal=st.sampled_from([0.0, 0.05]),
    response_lost=st.sampled_from([0.0, 0.1, 0.3]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=_sources,
    faults=_faults,
    seed=st.integers(0, 2**32),
    partition_key=st.sampled_from(["key", "partition"]),
    concurrency=st.sampled_from(["1", "4"]),
)
def test_publisher_consumer_rule_yields_source_exactly_under_any_faults(
    sources: list[Source],
    faults: Faults,
    seed: int,
    partition_key: str,
    concurrency: str,
) -> None:
    # GIVEN random records, random faults and ESM-style redelivery of reported tails
    fake = FakeKinesis(faults, seed=seed)
    settings_ = _settings(PARTITION_KEY=partition_key, MAX_CONCURRENCY=concurrency)
    # WHEN everything has been delivered
    with _sink(fake, settings=settings_) as sink:
        _deliver_like_the_esm(sink, sources)
    # THEN per (partition, key) the consumer sees every record once, in Kafka order,
    # and no request ever held a partition key twice
    assert _consumed(fake) == _expected(sources)
    assert fake.violations == []


_edge_faults = st.builds(
    Faults,
    record_throttle=st.sampled_from([0.0, 0.25]),
    record_internal=st.sampled_from([0.0, 0.05]),
    request_throttle=st.sampled_from([0.0, 0.1]),
    response_lost=st.sampled_from([0.0, 0.05]),
    slow_response=st.sampled_from([0.0, 0.05, 0.2]),
)


def _with_headers(event: dict[str, Any], count: int) -> dict[str, Any]:
    """`event` with `count` one-byte headers on every record."""
    for records in event["records"].values():
        for record in records:
            record["headers"] = [{f"h{n}": [n % 256]} for n in range(count)]
    return event


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=_sources,
    faults=_edge_faults,
    seed=st.integers(0, 2**32),
    budgets_ms=st.lists(st.sampled_from([300, 1_000, 3_000, 8_000]), min_size=1, max_size=4),
    latency_ms=st.sampled_from([5, 20, 100]),
    containers=st.integers(1, 3),
    aggregation=st.sampled_from(["on", "off"]),
    headers=st.sampled_from([0, 3, 40]),
    read_cost_us=st.sampled_from([0, 5, 50, 200, 1_000]),
    data=st.data(),
)
def test_sink_guarantee_holds_at_the_edges(
    sources: list[Source],
    faults: Faults,
    seed: int,
    budgets_ms: list[int],
    latency_ms: int,
    containers: int,
    aggregation: str,
    headers: int,
    read_cost_us: int,
    data: st.DataObject,
) -> None:
    # GIVEN short budgets, slow round trips, answers that trickle past their deadline,
    # redeliveries that land on any of several containers, each with its own redelivery memory,
    # and reading that takes time (per record and header, up to twenty times what a container
    # expects before it has measured it: up to 41 ms a record)
    clock = FakeClock()
    fake = FakeKinesis(faults, seed=seed, clock=clock, latency_s=latency_ms / 1000)
    settings_ = _settings(MAX_CONCURRENCY="4", KINESIS_TIMEOUT_SECONDS="1", AGGREGATION=aggregation)

    def read_cost(units: int) -> None:
        clock.advance(units * read_cost_us / 1e6)

    sinks = [
        Sink(settings_, writer=fake, clock=clock, sleep=clock.sleep, read_cost=read_cost)
        for _ in range(containers)
    ]
    pending = list(sources)
    try:
        for invocation in range(400):
            sink = sinks[data.draw(st.integers(0, containers - 1))]
            context = clock.context(budgets_ms[invocation % len(budgets_ms)])
            # WHEN the ESM invokes and resumes each partition where the response says
            response = sink.handle(_with_headers(_event(pending), headers), context)
            # THEN every answer comes before the invocation's deadline
            assert context.get_remaining_time_in_millis() > 0
            pending = _still_pending(pending, response)
            if not pending:
                break
        # AND everything is delivered in the end, the consumer rule yielding the source exactly
        assert pending == []
        assert _consumed_aggregated(fake) == _expected(sources)
        assert fake.violations == []
    finally:
        for sink in sinks:
            sink.close()


def _consumed_aggregated(fake: FakeKinesis) -> dict[tuple[int, str | None], list[int]]:
    """`_consumed`, reading aggregated records the way a KCL consumer does."""
    dedup = OffsetDeduplicator()
    received: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for stored in fake.records:
        for data in deaggregate(stored.data):
            envelope = Envelope.from_bytes(data)
            if dedup.accept(envelope):
                received[(envelope.partition, envelope.key)].append(envelope.offset)
    return dict(received)


def test_sink_event_slower_to_read_than_its_budget_is_published_as_read_and_answered_in_time() -> (
    None
):
    # GIVEN 10,000 records of 36 one-byte headers in 10 partitions, whose reading costs 4 us a
    # record and a header on a virtual clock (1.5 s for the whole event, about what this shape
    # was measured to take to parse and encode as envelopes), 20 ms round trips, and 1 s
    sources: list[Source] = [(o % 10, o, f"k{o}".encode(), b"v") for o in range(10_000)]
    event = _with_headers(_event(sources), 36)
    clock = FakeClock()
    fake = FakeKinesis(clock=clock, latency_s=0.02)

    def read_cost(units: int) -> None:
        clock.advance(units * 4e-6)

    context = clock.context(1_000)
    # WHEN it is handled
    with _sink(fake, clock=clock, sleep=clock.sleep, read_cost=read_cost) as sink:
        response = sink.handle(event, context)
        report = sink.last_report
    # THEN the answer comes before the deadline; the partitions read first were published while
    # the rest was read, and each partition is reported from its first record not delivered:
    # everything below it was delivered
    assert context.get_remaining_time_in_millis() > 0
    assert report is not None
    assert report.stats.records_published > 2_000
    assert report.stats.records_unread > 0 and report.stats.stopped_by_deadline
    resume = {name: min(offsets) for name, offsets in _failed_offsets(response).items()}
    delivered = {offset for offsets in _consumed(fake).values() for offset in offsets}
    for partition, offset, _, _ in sources:
        assert (offset in delivered) == (offset < resume.get(f"{TOPIC}-{partition}", 10_000))


_many_sources = st.lists(
    st.tuples(st.integers(0, 2), _KEYS, st.binary(max_size=8)), min_size=20, max_size=100
).map(
    lambda rows: [
        (partition, offset, key, value) for offset, (partition, key, value) in enumerate(rows)
    ]
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=_many_sources,
    headers=st.sampled_from([0, 3, 40]),
    read_cost_us=st.sampled_from([5, 50, 200, 1_000]),
    budgets_ms=st.lists(st.sampled_from([300, 1_000, 3_000]), min_size=1, max_size=3),
    malformed_at=st.none() | st.integers(0, 99),
    aggregation=st.sampled_from(["on", "off"]),
    latency_ms=st.sampled_from([5, 50]),
    seed=st.integers(0, 2**32),
)
def test_sink_reading_inside_the_budget_answers_in_time_and_loses_nothing(
    sources: list[Source],
    headers: int,
    read_cost_us: int,
    budgets_ms: list[int],
    malformed_at: int | None,
    aggregation: str,
    latency_ms: int,
    seed: int,
) -> None:
    # GIVEN events whose reading takes longer than the budget (up to 100 records of up to 40
    # headers, up to 41 ms a record on a virtual clock), short budgets, throttled records, and
    # perhaps one record whose content is malformed
    clock = FakeClock()
    fake = FakeKinesis(
        Faults(record_throttle=0.1), seed=seed, clock=clock, latency_s=latency_ms / 1000
    )
    settings_ = _settings(MAX_CONCURRENCY="4", KINESIS_TIMEOUT_SECONDS="1", AGGREGATION=aggregation)

    def read_cost(units: int) -> None:
        clock.advance(units * read_cost_us / 1e6)

    bad = (
        sources[malformed_at] if malformed_at is not None and malformed_at < len(sources) else None
    )
    # What can never be delivered: the malformed record and its partition's later records.
    stuck = [s for s in sources if bad is not None and s[0] == bad[0] and s[1] >= bad[1]]
    pending = list(sources)
    with _sink(
        fake, settings=settings_, clock=clock, sleep=clock.sleep, read_cost=read_cost
    ) as sink:
        for invocation in range(300):
            event = _with_headers(_event(pending), headers)
            for record in event["records"].get(f"{TOPIC}-{bad[0]}" if bad else "", []):
                if bad is not None and record["offset"] == bad[1]:
                    record["timestamp"] = "yesterday"
            context = clock.context(budgets_ms[invocation % len(budgets_ms)])
            # WHEN the ESM invokes and resumes each partition where the response says
            response = sink.handle(event, context)
            # THEN every answer comes before the invocation's deadline
            assert context.get_remaining_time_in_millis() > 0
            pending = _still_pending(pending, response)
            if pending == stuck:
                break
    # AND everything is delivered in order but the malformed record and what follows it in its
    # partition, which is never sent and keeps being reported
    assert pending == stuck
    delivered = [s for s in sources if s not in stuck]
    assert _consumed_aggregated(fake) == _expected(delivered)
    assert fake.violations == []


def test_sink_restores_the_cycle_collector_after_each_invocation() -> None:
    # GIVEN the collector on (as the runtime starts), then off (as an embedding app may set it)
    sources: list[Source] = [(0, 0, b"k", b"v")]
    try:
        with _sink(FakeKinesis()) as sink:
            for enabled_before in (True, False):
                (gc.enable if enabled_before else gc.disable)()
                # WHEN an invocation succeeds, and one fails on a malformed event
                sink.handle(_event(sources), FakeContext())
                after_success = gc.isenabled()
                with pytest.raises(MalformedEventError):
                    sink.handle({"eventSource": "aws:kafka"}, FakeContext())
                # THEN the collector is as it was before each
                assert after_success is enabled_before
                assert gc.isenabled() is enabled_before
    finally:
        gc.enable()


def test_sink_collects_only_what_the_invocation_made() -> None:
    # GIVEN an event of 3,000 records, a sink, and the collector on with its middle generation
    # due at its next automatic collection (which would rescan older objects: the event)
    sources: list[Source] = [(o % 3, o, b"k%d" % o, b"v") for o in range(3_000)]
    event = _event(sources)
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    thresholds = gc.get_threshold()
    with _sink(FakeKinesis()) as sink:
        try:
            gc.enable()
            gc.set_threshold(thresholds[0], 1, thresholds[2])
            gc.collect(0)
            gc.collect(0)
            gc.callbacks.append(note)
            # WHEN it is handled
            response = sink.handle(event, FakeContext())
        finally:
            gc.callbacks.remove(note)
            gc.set_threshold(*thresholds)
    # THEN the one collection during the invocation was of the youngest generation, at its end:
    # none falls due while the answer is built and logged
    assert response == {"batchItemFailures": []}
    assert collected == [0]


# -- the redelivery memory -------------------------------------------------------------------


def _hot_key_blocked_first_time() -> tuple[FakeKinesis, list[Source]]:
    """A partition whose hot key (offset 0) is throttled on every attempt of the first
    invocation, and 29 records of other keys that go through at once."""
    sources: list[Source] = [(0, 0, b"hot", b"v")] + [
        (0, o, f"k{o}".encode(), b"v") for o in range(1, 30)
    ]
    first_invocation = {"on": True}

    def throttle_hot(call: int, entry: Entry) -> RecordResult | None:
        hot = entry.partition_key == "hot"
        return RecordResult.THROTTLED if hot and first_invocation["on"] else None

    fake = FakeKinesis(fail_entry=throttle_hot)
    fake.first_invocation = first_invocation  # type: ignore[attr-defined]
    return fake, sources


def test_sink_redelivered_records_written_before_are_not_sent_again() -> None:
    # GIVEN an invocation that ran out of time with the hot key still throttled
    fake, sources = _hot_key_blocked_first_time()
    clock = FakeClock()
    with _sink(fake, clock=clock, sleep=clock.sleep) as sink:
        first = sink.handle(_event(sources), clock.context(1_000))
        assert _failed_offsets(first) == {f"{TOPIC}-0": list(range(30))}
        written_first = len(fake.records)
        fake.first_invocation["on"] = False  # type: ignore[attr-defined]
        # WHEN the ESM redelivers the partition from offset 0 to the same container
        second = sink.handle(_event(sources), clock.context(1_000))
        report = sink.last_report
    # THEN only the hot key's record is sent; the other 29 count as already delivered
    assert second == {"batchItemFailures": []}
    assert written_first == 29
    assert len(fake.records) == 30
    assert report is not None and report.stats.records_already_delivered == 29
    assert _consumed(fake) == _expected(sources)


def test_sink_redelivery_to_a_fresh_container_sends_again_and_loses_nothing() -> None:
    # GIVEN the same first invocation, but the redelivery lands on another container
    fake, sources = _hot_key_blocked_first_time()
    clock = FakeClock()
    with (
        _sink(fake, clock=clock, sleep=clock.sleep) as first_container,
        _sink(fake, clock=clock, sleep=clock.sleep) as second_container,
    ):
        first_container.handle(_event(sources), clock.context(1_000))
        fake.first_invocation["on"] = False  # type: ignore[attr-defined]
        # WHEN it is handled there
        response = second_container.handle(_event(sources), clock.context(1_000))
    # THEN everything is sent again (duplicates), and the consumer rule still yields the source
    assert response == {"batchItemFailures": []}
    assert len(fake.records) == 29 + 30
    assert _consumed(fake) == _expected(sources)


def test_sink_redelivery_with_other_content_at_a_remembered_offset_is_sent() -> None:
    # GIVEN the first invocation wrote offsets 1-29
    fake, sources = _hot_key_blocked_first_time()
    clock = FakeClock()
    with _sink(fake, clock=clock, sleep=clock.sleep) as sink:
        sink.handle(_event(sources), clock.context(1_000))
        fake.first_invocation["on"] = False  # type: ignore[attr-defined]
        # WHEN the redelivery carries other values under the same offsets
        changed: list[Source] = [(p, o, k, b"changed") for p, o, k, _ in sources]
        sink.handle(_event(changed), clock.context(1_000))
    # THEN every record is sent again with its new content
    assert len(fake.records) == 29 + 30
    assert sum(Envelope.from_bytes(r.data).value == b64(b"changed") for r in fake.records) == 30


def _user_records(fake: FakeKinesis, since: int = 0) -> list[Envelope]:
    """The envelopes written from Kinesis record `since` on, aggregates unpacked."""
    return [
        Envelope.from_bytes(data)
        for stored in fake.records[since:]
        for data in deaggregate(stored.data)
    ]


@pytest.mark.parametrize("aggregation", ["on", "off"])
def test_sink_redelivery_from_below_the_reported_offset_skips_what_was_remembered(
    aggregation: str,
) -> None:
    # GIVEN a partition whose key "a" is written whole (offsets 0-4 and 6-30) while key "b"
    # (offset 5) stays throttled: the partition is reported from 5, and the container
    # remembers a's 25 records beyond it
    sources: list[Source] = [
        *((0, o, b"a", b"v%d" % o) for o in range(5)),
        (0, 5, b"b", b"v5"),
        *((0, o, b"a", b"v%d" % o) for o in range(6, 31)),
    ]
    throttle_b = {"on": True}

    def throttled(call: int, entry: Entry) -> RecordResult | None:
        return RecordResult.THROTTLED if entry.partition_key == "b" and throttle_b["on"] else None

    fake, clock = FakeKinesis(fail_entry=throttled), FakeClock()
    settings_ = _settings(AGGREGATION=aggregation)
    with _sink(fake, settings=settings_, clock=clock, sleep=clock.sleep) as sink:
        first = sink.handle(_event(sources), clock.context(1_000))
        assert min(_failed_offsets(first)[f"{TOPIC}-0"]) == 5
        written_first = len(fake.records)
        throttle_b["on"] = False
        # WHEN the ESM sends the whole batch again, from below the reported offset (it never
        # got the answer: the invocation ran past its timeout, say)
        second = sink.handle(_event(sources), clock.context(1_000))
        report = sink.last_report
    # THEN only a's first five records (not remembered: below 5) and b's are sent again; the 25
    # remembered records are skipped in a's turn, with or without aggregation, and counted
    resent = sorted(envelope.offset for envelope in _user_records(fake, written_first))
    assert second == {"batchItemFailures": []}
    assert resent == [0, 1, 2, 3, 4, 5]
    assert report is not None and report.stats.records_already_delivered == 25
    assert _consumed_aggregated(fake) == _expected(sources)


# -- workers, dead letters and crashes ------------------------------------------------------


class _CountingDeadLetters(FakeDeadLetters):
    """Dead letters that take a while each, counting how many are written at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_progress = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def write(self, record: Any, event_source_arn: str | None, deadline: float = 0.0) -> None:
        with self._lock:
            self.in_progress += 1
            self.most_at_once = max(self.most_at_once, self.in_progress)
        threading.Event().wait(0.005)  # hold the worker, as a slow S3 would
        with self._lock:
            self.in_progress -= 1
        super().write(record, event_source_arn, deadline)


def test_publisher_dead_letter_writes_obey_max_concurrency() -> None:
    # GIVEN 40 records too large for the stream and at most 3 requests at once
    sources: list[Source] = [(0, o, f"k{o}".encode(), b"x" * 4096) for o in range(40)]
    fake, dead = FakeKinesis(), _CountingDeadLetters()
    settings_ = _settings(MAX_RECORD_BYTES="2048", MAX_CONCURRENCY="3")
    # WHEN published
    with _sink(fake, settings=settings_, dead_letters=dead) as sink:
        response = sink.handle(_event(sources), FakeContext())
    # THEN all are dead-lettered, never more than 3 at a time
    assert response == {"batchItemFailures": []}
    assert len(dead.written) == 40
    assert dead.most_at_once <= 3


def test_publisher_dead_letters_not_started_by_the_stop_are_reported() -> None:
    # GIVEN unwritable records behind a dead-letter bucket that takes 0.4 s per object, and one
    # second of budget: only a few can be written
    sources: list[Source] = [(0, o, f"k{o}".encode(), b"x" * 4096) for o in range(10)]
    clock = FakeClock()

    class SlowDeadLetters(FakeDeadLetters):
        """0.4 s an object; cut at the write's deadline, as the bounded transport cuts it."""

        def write(self, record: Any, event_source_arn: str | None, deadline: float = 0.0) -> None:
            if clock() + 0.4 > deadline:
                clock.advance_to(deadline)
                raise DeadLetterError("injected: cut at its deadline")
            clock.advance(0.4)
            super().write(record, event_source_arn, deadline)

    dead = SlowDeadLetters()
    settings_ = _settings(MAX_RECORD_BYTES="2048", MAX_CONCURRENCY="1")
    context = clock.context(1_000)
    # WHEN published
    with _sink(FakeKinesis(), settings=settings_, dead_letters=dead, clock=clock) as sink:
        response = sink.handle(_event(sources), context)
    # THEN the written ones are settled, the rest reported, and the answer comes in time
    written = [record.offset for record in dead.written]
    assert written == list(range(len(written))) and 0 < len(written) < 10
    assert _failed_offsets(response) == {f"{TOPIC}-0": list(range(len(written), 10))}
    assert context.get_remaining_time_in_millis() > 0


def test_sink_unexpected_error_propagates_after_in_flight_requests_settle() -> None:
    # GIVEN a writer whose last request hits a bug while three others are still on the wire
    # (2,000 distinct keys: four full requests of 500, each started once its records are read)
    sources: list[Source] = [(0, o, f"k{o}".encode(), b"v") for o in range(2000)]
    release = threading.Event()
    state = {"calls": 0, "in_progress": 0}
    lock = threading.Lock()

    class BuggyWriter:
        def put_records(self, entries: Any, deadline: float) -> list[RecordResult]:
            with lock:
                state["calls"] += 1
                buggy = state["calls"] == 4
                state["in_progress"] += 1
            try:
                if buggy:
                    raise RuntimeError("a bug in the adapter")
                release.wait(timeout=max(0.0, deadline - time.monotonic()))
                return [RecordResult.WRITTEN] * len(entries)
            finally:
                with lock:
                    state["in_progress"] -= 1

    settings_ = _settings(MAX_CONCURRENCY="4", RECORD_FORMAT="raw")
    sink = Sink(settings_, writer=BuggyWriter())
    try:
        # WHEN an invocation with two seconds left is handled
        with pytest.raises(RuntimeError, match="a bug in the adapter"):
            sink.handle(_event(sources), FakeContext(lambda: 2_000))
        # THEN the error reaches the caller (the ESM), and no request of it is still running
        assert state["calls"] == 4
        assert state["in_progress"] == 0
    finally:
        release.set()
        sink.close()


# -- routing topics to streams, partition keys from a header ---------------------------------

ROUTED_TOPICS = ("orders.eu", "payments")
ROUTES = "orders.*=orders-stream"  # payments: the default stream
STREAM_OF = {"orders.eu": "orders-stream", "payments": "default-stream"}

# (topic, partition, offset, key, tenant header or None, value)
RoutedSource = tuple[str, int, int, bytes | None, bytes | None, bytes]


def _routed_event(sources: list[RoutedSource]) -> dict[str, Any]:
    return msk_event(
        kafka_record(
            topic,
            partition,
            offset,
            key,
            value,
            [("tenant", tenant)] if tenant is not None else [],
            timestamp=1_700_000_000_000 + offset,
        )
        for topic, partition, offset, key, tenant, value in sources
    )


def _routed_sink(fakes: dict[str, FakeKinesis], partition_key: str = "key", **kwargs: Any) -> Sink:
    settings_ = _settings(
        STREAM_NAME="default-stream", STREAM_ROUTES=ROUTES, PARTITION_KEY=partition_key
    )
    return Sink(settings_, writers=fakes.__getitem__, **kwargs)


def _consumed_by_derived_key(
    fake: FakeKinesis,
) -> dict[tuple[str, int, str], list[int]]:
    """What a consumer keeping order per Kinesis partition key receives."""
    dedup = OffsetDeduplicator()
    received: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    for stored in fake.records:
        envelope = Envelope.from_bytes(stored.data)
        if dedup.accept(envelope, partition_key=stored.partition_key):
            received[(envelope.topic, envelope.partition, stored.partition_key)].append(
                envelope.offset
            )
    return dict(received)


def test_sink_routes_each_topic_to_its_stream() -> None:
    # GIVEN two topics in one invocation, one routed by a glob, one left to the default stream
    sources: list[RoutedSource] = [
        (topic, p, o, f"k{o % 3}".encode(), None, b"v")
        for topic in ROUTED_TOPICS
        for p in range(2)
        for o in range(20)
    ]
    fakes = {"orders-stream": FakeKinesis(), "default-stream": FakeKinesis()}
    sink = _routed_sink(fakes)
    try:
        # WHEN handled
        response = sink.handle(_routed_event(sources), FakeContext())
    finally:
        sink.close()
    # THEN every record is in its topic's stream, and only there
    assert response == {"batchItemFailures": []}
    for stream, fake in fakes.items():
        topics = {Envelope.from_bytes(r.data).topic for r in fake.records}
        assert topics == {t for t in ROUTED_TOPICS if STREAM_OF[t] == stream}
        assert len(fake.records) == 40


def test_sink_topic_without_a_stream_fails_before_anything_is_sent() -> None:
    # GIVEN routes only (no default stream) and a batch holding a topic no route matches
    fake = FakeKinesis()
    sink = Sink(Settings.from_env({"STREAM_ROUTES": ROUTES, "AGGREGATION": "off"}), writer=fake)
    sources: list[RoutedSource] = [
        ("orders.eu", 0, 0, b"k", None, b"v"),
        ("audit", 0, 1, b"k", None, b"v"),
    ]
    try:
        # WHEN handled
        with pytest.raises(RoutingError, match="topic 'audit' matches no STREAM_ROUTES pattern"):
            sink.handle(_routed_event(sources), FakeContext())
    finally:
        sink.close()
    # THEN nothing was sent, not even the routable topic's record
    assert fake.calls == 0


def test_sink_header_partition_key_orders_per_derived_key() -> None:
    # GIVEN one Kafka key whose records carry two tenants, the first tenant throttled once
    sources: list[RoutedSource] = [
        ("payments", 0, o, b"same-key", b"t-a" if o % 2 else b"t-b", b"v") for o in range(10)
    ]
    attempts: dict[int, int] = defaultdict(int)

    def throttle_t_a_once(call: int, entry: Entry) -> RecordResult | None:
        attempts[entry.records[0].offset] += 1
        first = attempts[entry.records[0].offset] == 1
        return RecordResult.THROTTLED if entry.partition_key == "t-a" and first else None

    fakes = {
        "orders-stream": FakeKinesis(),
        "default-stream": FakeKinesis(fail_entry=throttle_t_a_once),
    }
    sink = _routed_sink(fakes, partition_key="header:tenant")
    try:
        response = sink.handle(_routed_event(sources), FakeContext())
    finally:
        sink.close()
    # THEN each tenant is its own ordered chain: the partition keys are the header values
    assert response == {"batchItemFailures": []}
    assert _consumed_by_derived_key(fakes["default-stream"]) == {
        ("payments", 0, "t-a"): [1, 3, 5, 7, 9],
        ("payments", 0, "t-b"): [0, 2, 4, 6, 8],
    }


_routed_sources = st.lists(
    st.tuples(
        st.sampled_from(ROUTED_TOPICS),
        st.integers(0, 1),
        st.sampled_from([None, b"a", b"b"]),
        st.sampled_from([None, b"", b"t1", b"t2", b"\xff"]),
    ),
    min_size=1,
    max_size=60,
).map(
    lambda rows: [
        (topic, partition, offset, key, tenant, b"v%d" % offset)
        for offset, (topic, partition, key, tenant) in enumerate(rows)
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=_routed_sources,
    faults=_faults,
    seed=st.integers(0, 2**32),
    partition_key=st.sampled_from(["key", "header:tenant"]),
)
def test_sink_guarantee_holds_per_stream_and_derived_key(
    sources: list[RoutedSource], faults: Faults, seed: int, partition_key: str
) -> None:
    # GIVEN two topics routed to two streams, each stream with its own faults, and partition
    # keys from the Kafka key or from a header (missing or empty: the key rule)
    fakes = {
        "orders-stream": FakeKinesis(faults, seed=seed),
        "default-stream": FakeKinesis(faults, seed=seed + 1),
    }
    sink = _routed_sink(fakes, partition_key=partition_key)
    pending = list(sources)
    try:
        # WHEN the ESM redelivers reported tails until everything is delivered
        for _ in range(300):
            response = sink.handle(_routed_event(pending), FakeContext())
            resume: dict[str, int] = {}
            for failure in response["batchItemFailures"]:
                name = failure["itemIdentifier"]["partition"]
                offset = failure["itemIdentifier"]["offset"]
                resume[name] = min(resume.get(name, offset), offset)
            pending = [s for s in pending if s[2] >= resume.get(f"{s[0]}-{s[1]}", 1 << 62)]
            if not pending:
                break
    finally:
        sink.close()
    # THEN each stream holds exactly its topics, and per (topic, partition, derived key) the
    # consumer rule yields every record once, in Kafka order
    assert pending == []
    expected: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    for topic, partition, offset, key, tenant, _ in sources:
        record = KafkaRecord(topic, partition, offset, 0, "", b64(key), None, ())
        if tenant is not None:
            record = record._replace(headers=(("tenant", tenant),))
        mode, header = (
            (PartitionKeyMode.HEADER, "tenant")
            if partition_key.startswith("header")
            else (PartitionKeyMode.KEY, None)
        )
        derived = partition_key_for(record, key, mode, header)
        expected[(topic, partition, derived)].append(offset)
    consumed: dict[tuple[str, int, str], list[int]] = {}
    for stream, fake in fakes.items():
        assert {Envelope.from_bytes(r.data).topic for r in fake.records} <= {
            t for t in ROUTED_TOPICS if STREAM_OF[t] == stream
        }
        consumed.update(_consumed_by_derived_key(fake))
        assert fake.violations == []
    assert consumed == dict(expected)
