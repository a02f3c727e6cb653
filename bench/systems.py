"""The systems under test, each publishing one workload to one endpoint.

- `handler` / `handler-agg` / `handler-default`: the Lambda handler module itself (Powertools
  and all), as a warm container runs it, AGGREGATION off / on / not set (the function's default),
  invoked as an ESM would: batches of the workload's BatchSize, reported partitions redelivered
  from their reported offset until every record is delivered.
- `handler-routes`: `handler` with STREAM_ROUTES set: eight patterns that match nothing, then
  the workload's topic, to the same stream (what routing costs a record, W1 only).
- `quix`: Quix Streams' KinesisSink, driven through `add()` + `flush()`.
- `bound`: the records pre-encoded into PutRecords requests, sent with the handler's boto3
  client settings and concurrency and no per-record logic: the client-side ceiling.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from bench.esm import by_partition, deliver, reported_offsets
from bench.workloads import (
    TOPIC,
    WARM_UP_TOPIC,
    SourceRecord,
    Workload,
    consumption_order,
    event_of,
    kafka_record,
    msk_event,
    record_json,
)
from msk_kinesis_sink.encoding import envelope_bytes
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES
from msk_kinesis_sink.settings import RecordFormat

SYSTEMS: Final = ("handler", "handler-agg", "handler-default", "handler-routes", "quix", "bound")
# AGGREGATION per handler system; None leaves it unset, so the function's own default applies.
HANDLER_AGGREGATION: Final[dict[str, bool | None]] = {
    "handler": False,
    "handler-agg": True,
    "handler-default": None,
    "handler-routes": False,
}
ROUTED_SYSTEMS: Final = frozenset({"handler-routes"})

# A prepared run: calling it publishes the whole workload once and returns records delivered.
Run = Callable[[], int]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A system ready to run: warm-up, the measured run, and notes on the last run (what the
    system itself saw, for reading the figures: invocations, redeliveries, time in the handler)."""

    warm_up: Run
    run: Run
    notes: Callable[[], dict[str, Any]] = dict


@dataclass(slots=True)
class _HandlerNotes:
    invocations: int = 0
    records_sent: int = 0
    handler_s: float = 0.0
    put_records_calls: int = 0
    request_failures: int = 0
    retry_attempts: int = 0
    put_latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        latencies = sorted(self.put_latencies_ms)
        return {
            "invocations": self.invocations,
            "records_sent": self.records_sent,
            "handler_s": round(self.handler_s, 3),
            "put_records_calls": self.put_records_calls,
            "request_failures": self.request_failures,
            "retry_attempts": self.retry_attempts,
            "put_latency_p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "put_latency_max_ms": round(latencies[-1], 1) if latencies else None,
        }


class BenchContext:
    """The parts of a Lambda context the handler and Powertools read."""

    function_name = "msk-kinesis-sink-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:msk-kinesis-sink-bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/msk-kinesis-sink-bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def sink_env(
    workload: Workload, env: Mapping[str, str], *, aggregation: bool | None, routed: bool = False
) -> dict[str, str]:
    out = {
        **env,
        "PARTITION_KEY": workload.partition_key_mode.value,
        "RECORD_FORMAT": workload.record_format.value,
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "LOG_LEVEL": "INFO",
    }
    if aggregation is None:
        out.pop("AGGREGATION", None)
    else:
        out["AGGREGATION"] = "on" if aggregation else "off"
    if routed:
        misses = ",".join(f"other-{n}.*=other-{n}" for n in range(8))
        out["STREAM_ROUTES"] = f"{misses},{TOPIC}={env['STREAM_NAME']}"
    else:
        out.pop("STREAM_ROUTES", None)
    return out


def prepare(system: str, workload: Workload, env: Mapping[str, str]) -> Prepared:
    """(warm-up, measured run) for a system; the warm-up opens connections like a warm container."""
    if system in HANDLER_AGGREGATION:
        return _handler(
            workload,
            env,
            aggregation=HANDLER_AGGREGATION[system],
            routed=system in ROUTED_SYSTEMS,
        )
    if system == "quix":
        return _quix(workload, env)
    if system == "bound":
        return _bound(workload, env)
    raise ValueError(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")


def _handler(
    workload: Workload, env: Mapping[str, str], *, aggregation: bool | None, routed: bool = False
) -> Prepared:
    os.environ.update(sink_env(workload, env, aggregation=aggregation, routed=routed))
    if not routed:
        os.environ.pop("STREAM_ROUTES", None)
    if aggregation is None:
        os.environ.pop("AGGREGATION", None)
    sys.modules.pop("msk_kinesis_sink.handler", None)
    module: Any = importlib.import_module("msk_kinesis_sink.handler")
    context = BenchContext()
    # The event records are built ahead: making the event is the ESM's work, not the function's.
    partitions = by_partition(workload.records)
    event_records = {p: [record_json(r) for r in records] for p, records in partitions.items()}
    warm = msk_event(_warm_up_records(workload), topic=WARM_UP_TOPIC)
    notes = _HandlerNotes()

    def invoke(batch: Mapping[int, range]) -> dict[int, int]:
        event = event_of(
            {f"{TOPIC}-{p}": event_records[p][sent.start : sent.stop] for p, sent in batch.items()}
        )
        started = time.perf_counter()
        response = module.handler(event, context)
        notes.handler_s += time.perf_counter() - started
        notes.invocations += 1
        notes.records_sent += sum(len(sent) for sent in batch.values())
        stats = module.sink.last_report.stats
        notes.put_records_calls += stats.put_records_calls
        notes.request_failures += stats.request_failures
        notes.retry_attempts += stats.retry_attempts
        notes.put_latencies_ms.extend(stats.put_latencies_ms)
        return reported_offsets(response, TOPIC)

    def warm_up() -> int:
        module.handler(warm, context)
        return 0

    def run() -> int:
        nonlocal notes
        notes = _HandlerNotes()
        deliver(partitions, workload.batch_size, invoke)
        return len(workload.records)

    return Prepared(warm_up, run, lambda: notes.as_dict())


def _quix(workload: Workload, env: Mapping[str, str]) -> Prepared:
    # A dependency of Quix Streams forces its deprecation warnings on at import: keep them quiet.
    with contextlib.redirect_stderr(io.StringIO()):
        from quixstreams.sinks.community.kinesis import KinesisSink

    keys = dict(zip(workload.records, workload.partition_keys(), strict=True))
    ordered = consumption_order(workload.records)
    # Same bytes and partition keys as the handler sends: the raw value, or the very envelope
    # the sink writes, encoded by the same function while the sink runs (its CPU counts).
    envelope = workload.record_format is RecordFormat.ENVELOPE
    values: dict[SourceRecord, Any] = {
        record: kafka_record(record) if envelope else record.value for record in ordered
    }
    serialize: Callable[[Any], Any] = envelope_bytes if envelope else (lambda value: value)

    def new_sink() -> Any:
        sink = KinesisSink(
            stream_name=env["STREAM_NAME"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
            aws_endpoint_url=env["AWS_ENDPOINT_URL_KINESIS"],
            value_serializer=serialize,
            key_serializer=lambda key: key,
        )
        sink.setup()  # creates its client and checks the stream (DescribeStream)
        return sink

    sinks: list[Any] = []

    def warm_up() -> int:
        # KinesisSink keeps flushed batches in its buffer, so the measured run gets a fresh one.
        sinks.append(new_sink())
        return 0

    def run() -> int:
        sink = sinks.pop()
        for record in ordered:
            sink.add(
                value=values[record],
                key=keys[record],
                timestamp=0,
                headers=[],
                topic="bench",
                partition=record.partition,
                offset=record.offset,
            )
        sink.flush()
        return len(ordered)

    return Prepared(warm_up, run)


def _bound(workload: Workload, env: Mapping[str, str]) -> Prepared:
    from msk_kinesis_sink.aws.clients import kinesis_client
    from msk_kinesis_sink.settings import Settings

    settings = Settings.from_env(sink_env(workload, env, aggregation=False))
    client = kinesis_client(settings, env)
    pool = ThreadPoolExecutor(max_workers=settings.max_concurrency)
    # The very bytes the sink writes (envelopes built here, before the clock starts).
    data = None
    if workload.record_format is RecordFormat.ENVELOPE:
        data = [envelope_bytes(kafka_record(record)) for record in workload.records]
    requests = pre_encoded_requests(workload.records, workload.partition_keys(), data)
    stream = settings.stream_name

    def send(records: list[dict[str, Any]]) -> int:
        response = client.put_records(Records=records, StreamName=stream)  # type: ignore[arg-type]
        return len(records) - int(response.get("FailedRecordCount", 0))

    def send_all(batches: list[list[dict[str, Any]]]) -> int:
        return sum(pool.map(send, batches))

    warm = [
        [{"Data": b"warm", "PartitionKey": f"warm-{i}"}] for i in range(settings.max_concurrency)
    ]
    return Prepared(lambda: send_all(warm) * 0, lambda: send_all(requests))


def pre_encoded_requests(
    records: tuple[SourceRecord, ...],
    partition_keys: list[str],
    data: Sequence[bytes] | None = None,
) -> list[list[dict[str, Any]]]:
    """PutRecords request bodies: at most 500 records and 5 MiB each, records in order; each
    record's data is its value, or `data` when given (the envelope)."""
    requests: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    blobs = data if data is not None else [record.value for record in records]
    for blob, key in zip(blobs, partition_keys, strict=True):
        record_size = len(blob) + len(key.encode("utf-8"))
        if current and (
            len(current) == MAX_RECORDS_PER_REQUEST or size + record_size > MAX_REQUEST_BYTES
        ):
            requests.append(current)
            current, size = [], 0
        current.append({"Data": blob, "PartitionKey": key})
        size += record_size
    if current:
        requests.append(current)
    return requests


def _warm_up_records(workload: Workload) -> list[SourceRecord]:
    """A few small records on every partition, with keys the workload never uses."""
    partitions = sorted({record.partition for record in workload.records})
    return [SourceRecord(p, 0, f"warm-{p}".encode(), b"warm") for p in partitions]
