"""The stream guard: nothing is written to a stream that ignores partition keys, or whose record
distribution strategy can't be known; each stream's own record limit is kept."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.errors import StreamSummaryError
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.stream_guard import (
    FIRST_LEARN_ATTEMPTS,
    FIRST_LEARN_BACKOFF_MAX_MS,
    HELD_AUTO,
    HELD_UNKNOWN,
    HELD_UNRECOGNIZED,
    STALE_INTERVALS,
    StreamGuard,
)
from msk_kinesis_sink.writers import RecordDistribution, StreamSummary
from tests.factories import kafka_record, msk_event
from tests.fakes import (
    AUTO,
    KEYED,
    FakeClock,
    FakeDeadLetters,
    FakeKinesis,
    FakeSummaries,
    LongestJitter,
)

INTERVAL_S = 60.0
MIB = 1024 * 1024
THROTTLED = StreamSummaryError(
    "LimitExceededException: an API rate limit was exceeded",
    code="LimitExceededException",
    transient=True,
)
DENIED = StreamSummaryError(
    "AccessDeniedException: the function role lacks kinesis:DescribeStreamSummary on the stream",
    code="AccessDeniedException",
    transient=False,
)


def _guard(summaries: FakeSummaries, clock: FakeClock, max_record_bytes: int = MIB) -> StreamGuard:
    return StreamGuard(
        summaries,
        check_interval_s=INTERVAL_S,
        max_record_bytes=max_record_bytes,
        clock=clock,
        sleep=clock.sleep,
        rng=LongestJitter(),
    )


def _soon(clock: FakeClock) -> float:
    return clock() + 5


# -- learning and re-checking ------------------------------------------------------------------


def test_stream_guard_learns_at_the_first_send_and_again_after_the_check_interval() -> None:
    # GIVEN a keyed stream and a guard on a clock the test moves
    clock, summaries = FakeClock(), FakeSummaries()
    guard = _guard(summaries, clock)
    # WHEN it is checked at once, often within the interval, and once the interval has passed
    first = guard.check("orders", _soon(clock))
    for _ in range(10):
        clock.advance(INTERVAL_S / 11)
        guard.check("orders", _soon(clock))
    asked_within = len(summaries.calls)
    clock.advance(INTERVAL_S)
    guard.check("orders", _soon(clock))
    # THEN records may go; it asked once at first, not again within the interval, then again
    assert first.held is None
    assert asked_within == 1
    assert summaries.calls == ["orders", "orders"]


def test_stream_guard_holds_an_auto_stream_until_it_is_keyed_again() -> None:
    # GIVEN a stream switched to AUTO
    clock, summaries = FakeClock(), FakeSummaries(summary=AUTO)
    guard = _guard(summaries, clock)
    # WHEN it is checked, then switched back, then checked within and after the interval
    held = guard.check("orders", _soon(clock))
    summaries.summary = KEYED
    clock.advance(INTERVAL_S - 1)
    still_held = guard.check("orders", _soon(clock))
    clock.advance(1)
    released = guard.check("orders", _soon(clock))
    # THEN it is held, named by its cause, until the check after the switch
    assert (held.held, still_held.held, released.held) == (HELD_AUTO, HELD_AUTO, None)
    assert "orders" in held.message and "AUTO" in held.message


def test_stream_guard_holds_a_strategy_it_does_not_know() -> None:
    clock = FakeClock()
    guard = _guard(FakeSummaries(StreamSummary(RecordDistribution.UNRECOGNIZED)), clock)
    assert guard.check("orders", _soon(clock)).held == HELD_UNRECOGNIZED


def test_stream_guard_first_learn_retries_a_throttle_then_holds() -> None:
    # GIVEN DescribeStreamSummary throttled, and nothing known of the stream
    clock, summaries = FakeClock(), FakeSummaries(failure=THROTTLED)
    guard = _guard(summaries, clock)
    # WHEN it is first checked
    check = guard.check("orders", _soon(clock))
    # THEN a few quick attempts were made, then the stream is held with the code of the cause
    assert len(summaries.calls) == FIRST_LEARN_ATTEMPTS
    assert check.held == HELD_UNKNOWN
    assert "LimitExceededException" in check.message
    # AND checks right after it (the invocation's other partitions and requests) do not ask
    # again; once the short backoff has passed (the ESM's retry), one does, and lets records go
    for _ in range(10):
        assert guard.check("orders", _soon(clock)).held == HELD_UNKNOWN
    assert len(summaries.calls) == FIRST_LEARN_ATTEMPTS
    summaries.failure = None
    clock.advance(FIRST_LEARN_BACKOFF_MAX_MS / 1000)
    assert guard.check("orders", _soon(clock)).held is None


def test_stream_guard_first_learn_gives_up_at_the_deadline() -> None:
    # GIVEN a throttled API and a check whose deadline leaves no room for a retry
    clock, summaries = FakeClock(), FakeSummaries(failure=THROTTLED)
    guard = _guard(summaries, clock)
    # WHEN it is checked / THEN one attempt, and no sleep past the deadline
    started = clock()
    assert guard.check("orders", clock() + 0.01).held == HELD_UNKNOWN
    assert summaries.calls == ["orders"]
    assert clock() == started


def test_stream_guard_failed_refresh_keeps_the_known_summary_for_one_more_interval() -> None:
    # GIVEN a keyed stream, then a throttled API at its refresh
    clock, summaries = FakeClock(), FakeSummaries()
    guard = _guard(summaries, clock)
    guard.check("orders", _soon(clock))
    summaries.failure = THROTTLED
    # WHEN it is checked through the next intervals
    verdicts = []
    for _ in range(int(STALE_INTERVALS * 4)):
        clock.advance(INTERVAL_S / 2)
        verdicts.append(guard.check("orders", _soon(clock)).held)
    # THEN records go while what is known is younger than two intervals, then it is held
    assert verdicts[: 2 * STALE_INTERVALS - 1] == [None] * (2 * STALE_INTERVALS - 1)
    assert set(verdicts[2 * STALE_INTERVALS - 1 :]) == {HELD_UNKNOWN}
    # AND the failing refresh backed off: fewer attempts than checks once it failed
    assert 1 < len(summaries.calls) < 1 + len(verdicts)


def test_stream_guard_refusal_holds_at_once_and_names_the_permission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a keyed stream whose role then loses kinesis:DescribeStreamSummary
    clock, summaries = FakeClock(), FakeSummaries()
    guard = _guard(summaries, clock)
    guard.check("orders", _soon(clock))
    summaries.failure = DENIED
    clock.advance(INTERVAL_S)
    # WHEN it is checked
    with caplog.at_level(logging.ERROR, logger="msk_kinesis_sink.stream_guard"):
        check = guard.check("orders", _soon(clock))
    # THEN it is held at once (no grace for a deploy error), and the error log says what to fix
    assert check.held == HELD_UNKNOWN
    assert "kinesis:DescribeStreamSummary" in check.message
    [line] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "kinesis:DescribeStreamSummary" in line.getMessage()
    assert "orders" in line.getMessage()


def test_stream_guard_record_limit_is_the_smaller_of_the_setting_and_the_stream() -> None:
    clock = FakeClock()
    summaries = FakeSummaries(
        summaries={
            "small": StreamSummary(RecordDistribution.USER_PARTITION_KEY, MIB),
            "large": StreamSummary(RecordDistribution.USER_PARTITION_KEY, 10 * MIB),
            "unsaid": KEYED,
        }
    )
    guard = _guard(summaries, clock, max_record_bytes=2 * MIB)
    limits = {
        name: guard.check(name, _soon(clock)).max_record_bytes for name in summaries.summaries
    }
    assert limits == {"small": MIB, "large": 2 * MIB, "unsaid": 2 * MIB}
    assert guard.max_record_bytes("small") == MIB
    assert guard.max_record_bytes("never-seen") == 2 * MIB


class _BlockingSummaries(FakeSummaries):
    """Answers only once `release` is set; `entered` is set when the first call arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def describe(self, stream: str, deadline: float) -> StreamSummary:
        self.entered.set()
        self.release.wait()
        return super().describe(stream, deadline)


def test_stream_guard_asks_once_however_many_workers_check_at_once() -> None:
    # GIVEN a first lookup held in flight, and eight workers checking the same stream
    clock, summaries = FakeClock(), _BlockingSummaries()
    guard = _guard(summaries, clock)
    results: list[str | None] = []
    first = threading.Thread(target=lambda: results.append(guard.check("s", clock() + 3_600).held))
    first.start()
    summaries.entered.wait()
    others = [
        threading.Thread(target=lambda: results.append(guard.check("s", clock() + 3_600).held))
        for _ in range(8)
    ]
    for thread in others:
        thread.start()
    # WHEN the lookup is answered
    summaries.release.set()
    for thread in [first, *others]:
        thread.join()
    # THEN DescribeStreamSummary was called once, and every worker may send
    assert summaries.calls == ["s"]
    assert results == [None] * 9


# -- a model of the guard's promise ------------------------------------------------------------

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 2.5 * INTERVAL_S)),
        st.tuples(st.just("answer"), st.sampled_from(["keyed", "auto", "throttled", "denied"])),
        st.tuples(st.just("check"), st.just(0.0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS)
def test_stream_guard_lets_records_go_only_on_recent_knowledge_of_a_keyed_stream(
    steps: list[tuple[str, Any]],
) -> None:
    # GIVEN any sequence of time passing, the API's answer changing, and checks
    clock, summaries = FakeClock(), FakeSummaries()
    guard = _guard(summaries, clock)
    answers = {"keyed": (KEYED, None), "auto": (AUTO, None), "throttled": (KEYED, THROTTLED)}
    answers["denied"] = (KEYED, DENIED)
    learned: list[tuple[float, StreamSummary]] = []  # each summary the guard could have read
    for step, value in steps:
        if step == "advance":
            clock.advance(value)
        elif step == "answer":
            summaries.summary, summaries.failure = answers[value]
        else:
            asked = len(summaries.calls)
            check = guard.check("s", clock() + 1)
            if len(summaries.calls) > asked and summaries.failure is None:
                learned.append((clock(), summaries.summary))
            # THEN records go only when the last summary read said keyed, was read less than
            # two intervals ago, and no refusal came since
            if check.held is None:
                assert learned
                at, summary = learned[-1]
                assert summary is KEYED
                assert clock() - at < STALE_INTERVALS * INTERVAL_S
                assert not (summaries.failure is DENIED and len(summaries.calls) > asked)
    # AND successful reads are at least an interval apart
    times = [at for at, _ in learned]
    assert all(later - earlier >= INTERVAL_S for earlier, later in itertools.pairwise(times))


# -- through the Sink --------------------------------------------------------------------------

ORDERS, PAYMENTS = "orders-stream", "payments-stream"


def _settings(**overrides: str) -> Settings:
    return Settings.from_env(
        {
            "STREAM_NAME": ORDERS,
            "STREAM_ROUTES": f"payments={PAYMENTS}",
            "RECORD_FORMAT": "raw",
            "AGGREGATION": "off",
            "RETRY_BASE_MS": "1",
            "RETRY_MAX_MS": "4",
            **overrides,
        }
    )


@contextmanager
def _sink(
    kinesis: FakeKinesis,
    summaries: FakeSummaries,
    clock: FakeClock,
    settings_: Settings | None = None,
    **kwargs: Any,
) -> Iterator[Sink]:
    settings_ = settings_ or _settings()
    guard = _guard(summaries, clock, max_record_bytes=settings_.max_record_bytes)
    sink = Sink(
        settings_, writer=kinesis, stream_guard=guard, clock=clock, sleep=clock.sleep, **kwargs
    )
    try:
        yield sink
    finally:
        sink.close()


SECRET = b"Zq7-customer-value"


def _event() -> dict[str, Any]:
    return msk_event(
        [
            *(
                kafka_record("orders", 0, offset, b"k%d" % (offset % 2), SECRET)
                for offset in range(4)
            ),
            *(kafka_record("payments", 1, offset, b"p", b"pay-%d" % offset) for offset in range(3)),
        ]
    )


def test_sink_writes_nothing_to_an_auto_stream_and_reports_its_partitions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN two streams: orders switched to AUTO, payments keyed
    clock, kinesis = FakeClock(), FakeKinesis()
    summaries = FakeSummaries(summaries={ORDERS: AUTO})
    with _sink(kinesis, summaries, clock) as sink, caplog.at_level(logging.INFO):
        # WHEN a batch for both is handled
        response = sink.handle(_event(), clock.context(60_000))
        report = sink.last_report
    # THEN nothing reached the AUTO stream: its partition is reported from its first record,
    # while the keyed stream's records were written
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": "orders-0", "offset": offset}} for offset in range(4)
        ]
    }
    assert sorted(record.data for record in kinesis.records) == [b"pay-0", b"pay-1", b"pay-2"]
    # AND the metric counts the held partition, and an error line names the stream, not data
    assert report is not None and report.stats.partitions_held_by_stream_guard == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(ORDERS in line and "AUTO" in line for line in errors)
    assert not any(SECRET.decode() in line for line in errors)


def test_sink_resumes_in_order_when_the_stream_is_keyed_again() -> None:
    # GIVEN a stream switched to AUTO, and a batch held for it
    clock, kinesis = FakeClock(), FakeKinesis()
    summaries = FakeSummaries(summary=AUTO)
    with _sink(kinesis, summaries, clock) as sink:
        held = sink.handle(_event(), clock.context(60_000))
        # WHEN it is switched back, and the ESM redelivers after the check interval
        summaries.summary = KEYED
        clock.advance(INTERVAL_S)
        resumed = sink.handle(_event(), clock.context(60_000))
    # THEN nothing was written while AUTO, then everything, in offset order per key
    assert len(held["batchItemFailures"]) == 7
    assert resumed == {"batchItemFailures": []}
    orders = [record.data for record in kinesis.records if record.data == SECRET]
    assert len(orders) == 4
    assert [record.data for record in kinesis.records if record.partition_key == "p"] == [
        b"pay-0",
        b"pay-1",
        b"pay-2",
    ]


def test_sink_learns_each_stream_once_per_interval_across_partitions() -> None:
    # GIVEN two streams, several partitions each
    clock, kinesis, summaries = FakeClock(), FakeKinesis(), FakeSummaries()
    event = msk_event(
        [
            kafka_record(topic, partition, 0, b"k", b"v")
            for topic in ("orders", "payments")
            for partition in range(3)
        ]
    )
    with _sink(kinesis, summaries, clock) as sink:
        # WHEN two batches are handled within the check interval
        for _ in range(2):
            assert sink.handle(event, clock.context(60_000)) == {"batchItemFailures": []}
    # THEN each stream was described once
    assert sorted(summaries.calls) == [ORDERS, PAYMENTS]


@pytest.mark.parametrize("aggregation", ["off", "on"])
def test_sink_record_over_the_stream_limit_is_a_dead_letter(aggregation: str) -> None:
    # GIVEN MAX_RECORD_BYTES of 2 MiB, a stream that takes 1 MiB, and a same-key run around
    # a record of 1.5 MiB
    clock, kinesis, dead = FakeClock(), FakeKinesis(), FakeDeadLetters()
    summaries = FakeSummaries(summary=StreamSummary(RecordDistribution.USER_PARTITION_KEY, MIB))
    settings_ = _settings(
        MAX_RECORD_BYTES=str(2 * MIB), DEAD_LETTER_BUCKET="dlq", AGGREGATION=aggregation
    )
    sizes = [400_000, 400_000, 1_500_000, 400_000, 400_000]
    event = msk_event(
        [kafka_record("orders", 0, offset, b"k", b"x" * size) for offset, size in enumerate(sizes)]
    )
    with _sink(kinesis, summaries, clock, settings_, dead_letters=dead) as sink:
        # WHEN it is handled
        response = sink.handle(event, clock.context(60_000))
    # THEN the large record is a dead letter, the others are written, and no Kinesis record
    # (aggregates included) is over the stream's limit
    assert response == {"batchItemFailures": []}
    assert [record.offset for record in dead.written] == [2]
    assert max(len(record.data) + len(record.partition_key) for record in kinesis.records) <= MIB
    assert sum(len(record.data) for record in kinesis.records) >= 4 * 400_000
