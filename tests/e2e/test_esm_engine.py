"""The ESM logic alone (no broker): an in-memory partition source and scripted functions, so
hypothesis can explore responses, exceptions and retry limits quickly."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localloop.context import LambdaContext
from localloop.destination import FolderDestination
from localloop.esm import EsmConfig, ExecutionEnvironment, Function, Poller
from localloop.events import KafkaRecord, TopicPartition, json_size
from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import MAX_INVOCATION_BYTES

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOPIC = "t.x-y"


class ListSource:
    """Partitions held in memory; polls round-robin, remembers commits."""

    def __init__(self, counts: list[int]) -> None:
        self.records = {
            (TOPIC, p): [KafkaRecord(TOPIC, p, o, 10**12 + o, b"k", b"v") for o in range(n)]
            for p, n in enumerate(counts)
        }
        self._next = dict.fromkeys(self.records, 0)
        self.commits: list[tuple[TopicPartition, int]] = []

    def poll(self, max_records: int, timeout_s: float) -> list[KafkaRecord]:
        out: list[KafkaRecord] = []
        share = max(1, max_records // 2)  # a few from each partition, like a multi-partition fetch
        for tp, records in self.records.items():
            room = min(share, max_records - len(out))
            take = records[self._next[tp] : self._next[tp] + room]
            self._next[tp] += len(take)
            out.extend(take)
        return out

    def commit(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.extend(next_offsets.items())

    def caught_up(self) -> bool:
        return all(self._next[tp] >= len(r) for tp, r in self.records.items())

    def close(self) -> None:
        pass


class ScriptedFunction:
    """Answers each invocation as hypothesis decides: success, a partial failure, an exception,
    an identifier not in the batch, or garbage."""

    def __init__(self, data: st.DataObject) -> None:
        self._data = data
        self.calls: list[
            tuple[dict[TopicPartition, list[int]], str, dict[TopicPartition, int]]
        ] = []

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        batch = {
            (TOPIC, records[0]["partition"]): [r["offset"] for r in records]
            for records in event["records"].values()
        }
        kind = self._data.draw(
            st.sampled_from(["ok", "ok", "partial", "partial", "raise", "unknown", "garbage"])
        )
        failed_from: dict[TopicPartition, int] = {}
        if kind == "partial":
            for tp, offsets in batch.items():
                if self._data.draw(st.booleans()):
                    failed_from[tp] = self._data.draw(st.sampled_from(offsets))
        self.calls.append((batch, kind, failed_from))
        if kind == "raise":
            raise RuntimeError("scripted failure")
        if kind == "unknown":
            return {"batchItemFailures": [{"itemIdentifier": {"partition": "nope-0", "offset": 1}}]}
        if kind == "garbage":
            return {"batchItemFailures": "yes"}
        if kind == "partial":
            items = [
                {"itemIdentifier": {"partition": f"{tp[0]}-{tp[1]}", "offset": offset}}
                for tp, first in failed_from.items()
                for offset in batch[tp]
                if offset >= first
            ]
            return {"batchItemFailures": items}
        return {"batchItemFailures": []}


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(0, 25), min_size=1, max_size=3),
    batch_size=st.integers(1, 12),
    retries=st.integers(0, 3),
    bisect=st.booleans(),
    data=st.data(),
)
def test_esm_engine_commits_in_order_and_discards_only_after_retries(
    tmp_path_factory: pytest.TempPathFactory,
    counts: list[int],
    batch_size: int,
    retries: int,
    bisect: bool,
    data: st.DataObject,
) -> None:
    # GIVEN partitions in memory and a function that fails in every way, at random
    source = ListSource(counts)
    function = ScriptedFunction(data)
    destination = FolderDestination(tmp_path_factory.mktemp("dest"), mapping_uuid="u")
    config = EsmConfig(
        bootstrap_servers="local:9092",
        batch_size=batch_size,
        batching_window_s=0.0,
        maximum_retry_attempts=retries,
        bisect_batch_on_function_error=bisect,
        retry_backoff_s=0.0,
    )
    poller = Poller(config, source, function, destination)

    # WHEN it runs until every partition is committed to its end
    for _ in range(2_000):
        if poller.idle():
            break
        poller.run_once()

    # THEN every partition was committed to the end, monotonically
    ends = {tp: len(records) for tp, records in source.records.items()}
    assert {tp: poller.committed.get(tp, 0) for tp in ends} == ends
    last: dict[TopicPartition, int] = {}
    for tp, offset in source.commits:
        assert offset > last.get(tp, 0)
        last[tp] = offset

    # AND every invocation resumed each partition exactly where the previous one left off
    position = dict.fromkeys(ends, 0)
    acknowledged: set[tuple[TopicPartition, int]] = set()
    attempts: dict[tuple[TopicPartition, int], int] = {}
    discarded = {
        ((TOPIC, int(key.rsplit("-", 1)[1])), r["offset"])
        for document in destination.documents()
        for key, group in document["payload"]["records"].items()
        for r in group
    }
    for batch, kind, failed_from in function.calls:
        for tp, offsets in batch.items():
            while (tp, position[tp]) in discarded and position[tp] < offsets[0]:
                position[tp] += 1
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
            assert offsets[0] == position[tp]
            for offset in offsets:
                attempts[(tp, offset)] = attempts.get((tp, offset), 0) + 1
            if kind in ("ok", "partial"):
                done = [o for o in offsets if tp not in failed_from or o < failed_from[tp]]
                acknowledged.update((tp, o) for o in done)
                position[tp] += len(done)

    # AND nothing was dropped silently: every record was acknowledged or discarded, not both,
    # and a record was discarded only after 1 + MaximumRetryAttempts invocations carried it
    everything = {(tp, o) for tp, n in ends.items() for o in range(n)}
    assert acknowledged | discarded == everything
    assert not acknowledged & discarded
    assert all(attempts[record] >= retries + 1 for record in discarded)
    assert poller.stats.records_discarded == len(discarded)


def test_esm_engine_waits_for_nothing_when_source_is_empty(tmp_path: Path) -> None:
    # GIVEN an empty partition
    poller = Poller(
        EsmConfig(bootstrap_servers="x:1", batching_window_s=0.0),
        ListSource([0]),
        lambda event, context: None,
    )

    # WHEN / THEN a step invokes nothing and the poller is idle
    assert poller.run_once() is False
    assert poller.idle()
    assert poller.stats.invocations == 0


def test_esm_engine_keeps_each_event_within_six_mb() -> None:
    # GIVEN 40 records of 400 KB over two partitions (about 21 MB of event JSON in all)
    source = ListSource([0, 0])
    for partition in (0, 1):
        source.records[(TOPIC, partition)] = [
            KafkaRecord(TOPIC, partition, o, 10**12, b"k", bytes(400_000)) for o in range(20)
        ]
    sizes: list[int] = []

    def function(event: dict[str, Any], context: LambdaContext) -> object:
        sizes.append(json_size(event))
        return None

    poller = Poller(
        EsmConfig(bootstrap_servers="x:1", batch_size=100, batching_window_s=0.0),
        source,
        function,
    )

    # WHEN everything is delivered
    for _ in range(100):
        if poller.idle():
            break
        poller.run_once()

    # THEN no event went over Lambda's 6 MB payload limit, and all 40 records were committed
    assert max(sizes) <= MAX_INVOCATION_BYTES
    assert len(sizes) >= 4
    assert poller.stats.records_committed == 40


class FailingInit:
    """A function factory whose first `failures` calls raise, as a cold start with a bad setting
    does (None: every call); later calls build a function that answers success."""

    def __init__(self, failures: int | None) -> None:
        self._failures = failures
        self.calls = 0
        self.invoked: list[int] = []  # records per invocation that reached a built function

    def __call__(self) -> Function:
        self.calls += 1
        if self._failures is None or self.calls <= self._failures:
            raise ConfigurationError("AGGREGATION='yes' is not one of: off, on")

        def function(event: dict[str, Any], context: LambdaContext) -> object:
            self.invoked.append(sum(len(group) for group in event["records"].values()))
            return {"batchItemFailures": []}

        return function


def _init_poller(
    source: ListSource,
    factory: FailingInit,
    destination: FolderDestination | None = None,
    **config: Any,
) -> Poller:
    """A poller over `source` whose function is built by `factory` at its first invocation."""
    esm = EsmConfig(bootstrap_servers="x:1", batching_window_s=0.0, retry_backoff_s=0.0, **config)
    return Poller(esm, source, ExecutionEnvironment(factory), destination)


def _run_until_idle(poller: Poller, steps: int = 20) -> None:
    for _ in range(steps):
        if poller.idle():
            return
        poller.run_once()


def test_esm_engine_retries_the_batch_when_the_function_fails_to_initialise() -> None:
    # GIVEN two partitions and a function whose first two initialisations fail
    factory = FailingInit(failures=2)
    poller = _init_poller(ListSource([5, 3]), factory)

    # WHEN the poller runs until it is idle
    _run_until_idle(poller)

    # THEN each failed init failed its invocation as a function error, the batch was retried
    # with a fresh init each time, and every record was delivered by the third invocation
    stats = poller.stats
    assert (stats.invocations, stats.init_errors, stats.function_errors) == (3, 2, 2)
    assert factory.calls == 3
    assert factory.invoked == [8]
    assert poller.committed == {(TOPIC, 0): 5, (TOPIC, 1): 3}
    assert stats.records_discarded == 0


def test_esm_engine_discards_after_retries_when_init_always_fails(tmp_path: Path) -> None:
    # GIVEN a function that never initialises, one retry and an on-failure destination
    destination = FolderDestination(tmp_path, mapping_uuid="u")
    poller = _init_poller(
        ListSource([4]), FailingInit(failures=None), destination, maximum_retry_attempts=1
    )

    # WHEN the poller runs until it is idle
    _run_until_idle(poller)

    # THEN the batch was tried 1 + 1 times, each an init error, then discarded, never dropped
    stats = poller.stats
    assert (stats.invocations, stats.init_errors, stats.records_discarded) == (2, 2, 4)
    assert poller.committed == {(TOPIC, 0): 4}
    [document] = destination.documents()
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == 2
    assert document["responseContext"]["functionError"] == "Unhandled"


class AnswersThenStalls:
    """Answers at once, then returns only after `stall_s`: the emulator paused between the
    answer and reading it. With `stamps`, it says when its answer left (as a function in a
    process of its own does)."""

    def __init__(self, stall_s: float, *, stamps: bool) -> None:
        self._stall_s = stall_s
        self._stamps = stamps
        self.answered_at: float | None = None

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        if self._stamps:
            self.answered_at = time.monotonic()
        time.sleep(self._stall_s)  # the pause itself, not a synchronisation
        return {"batchItemFailures": []}


@pytest.mark.parametrize("stamps", [True, False])
def test_esm_engine_times_an_answer_by_its_stamp_when_the_function_gives_one(stamps: bool) -> None:
    # GIVEN a function with a 0.5 s timeout that answers at once, then returns 0.7 s later
    function = AnswersThenStalls(0.7, stamps=stamps)
    esm = EsmConfig(
        bootstrap_servers="x:1", batching_window_s=0.0, retry_backoff_s=0.0, function_timeout_s=0.5
    )
    poller = Poller(esm, ListSource([3]), ExecutionEnvironment(lambda: function))

    # WHEN it is invoked
    poller.run_once()

    # THEN a stamped answer is timed by its stamp: in time, with time left...
    stats = poller.stats
    if stamps:
        assert (stats.timeouts, stats.records_committed) == (0, 3)
        assert stats.least_time_left_ms is not None and stats.least_time_left_ms > 0
        assert stats.longest_invocation_s < esm.function_timeout_s
    # ...and one without a stamp as it returns: past its timeout, so it never arrived
    else:
        assert (stats.timeouts, stats.records_committed) == (1, 0)
