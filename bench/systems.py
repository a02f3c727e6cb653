"""The systems under test, each publishing one workload to one endpoint.

- `handler` / `handler-agg`: the Lambda handler module itself (Powertools and all), as a warm
  container runs it, AGGREGATION off / on.
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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from bench.workloads import SourceRecord, Workload, consumption_order, msk_event
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES

SYSTEMS: Final = ("handler", "handler-agg", "quix", "bound")

# A prepared run: calling it publishes the whole workload once and returns records delivered.
Run = Callable[[], int]


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


def sink_env(workload: Workload, env: Mapping[str, str], *, aggregation: bool) -> dict[str, str]:
    return {
        **env,
        "AGGREGATION": "on" if aggregation else "off",
        "PARTITION_KEY": workload.partition_key_mode.value,
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "LOG_LEVEL": "INFO",
    }


def prepare(system: str, workload: Workload, env: Mapping[str, str]) -> tuple[Run, Run]:
    """(warm-up, measured run) for a system; the warm-up opens connections like a warm container."""
    if system in {"handler", "handler-agg"}:
        return _handler(workload, env, aggregation=system == "handler-agg")
    if system == "quix":
        return _quix(workload, env)
    if system == "bound":
        return _bound(workload, env)
    raise ValueError(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")


def _handler(workload: Workload, env: Mapping[str, str], *, aggregation: bool) -> tuple[Run, Run]:
    os.environ.update(sink_env(workload, env, aggregation=aggregation))
    sys.modules.pop("msk_kinesis_sink.handler", None)
    module: Any = importlib.import_module("msk_kinesis_sink.handler")
    context = BenchContext()
    event = msk_event(workload.records)
    warm = msk_event(_warm_up_records(workload))

    def invoke(payload: dict[str, Any], count: int) -> int:
        response = module.handler(payload, context)
        failed = len(response["batchItemFailures"])
        return count - failed

    return (lambda: invoke(warm, 0), lambda: invoke(event, len(workload.records)))


def _quix(workload: Workload, env: Mapping[str, str]) -> tuple[Run, Run]:
    # A dependency of Quix Streams forces its deprecation warnings on at import: keep them quiet.
    with contextlib.redirect_stderr(io.StringIO()):
        from quixstreams.sinks.community.kinesis import KinesisSink

    keys = dict(zip(workload.records, workload.partition_keys(), strict=True))
    ordered = consumption_order(workload.records)

    def new_sink() -> Any:
        sink = KinesisSink(
            stream_name=env["STREAM_NAME"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
            aws_endpoint_url=env["AWS_ENDPOINT_URL_KINESIS"],
            # Same bytes and partition keys as the handler sends: no JSON re-serialisation.
            value_serializer=lambda value: value,
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
                value=record.value,
                key=keys[record],
                timestamp=0,
                headers=[],
                topic="bench",
                partition=record.partition,
                offset=record.offset,
            )
        sink.flush()
        return len(ordered)

    return warm_up, run


def _bound(workload: Workload, env: Mapping[str, str]) -> tuple[Run, Run]:
    from msk_kinesis_sink import aws
    from msk_kinesis_sink.settings import Settings

    settings = Settings.from_env(sink_env(workload, env, aggregation=False))
    client = aws.kinesis_client(settings, env)
    pool = ThreadPoolExecutor(max_workers=settings.max_concurrency)
    requests = pre_encoded_requests(workload.records, workload.partition_keys())
    stream = settings.stream_name

    def send(records: list[dict[str, Any]]) -> int:
        response = client.put_records(Records=records, StreamName=stream)  # type: ignore[arg-type]
        return len(records) - int(response.get("FailedRecordCount", 0))

    def send_all(batches: list[list[dict[str, Any]]]) -> int:
        return sum(pool.map(send, batches))

    warm = [
        [{"Data": b"warm", "PartitionKey": f"warm-{i}"}] for i in range(settings.max_concurrency)
    ]
    return (lambda: send_all(warm) * 0, lambda: send_all(requests))


def pre_encoded_requests(
    records: tuple[SourceRecord, ...], partition_keys: list[str]
) -> list[list[dict[str, Any]]]:
    """PutRecords request bodies: at most 500 records and 5 MiB each, records in order."""
    requests: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for record, key in zip(records, partition_keys, strict=True):
        record_size = len(record.value) + len(key.encode("utf-8"))
        if current and (
            len(current) == MAX_RECORDS_PER_REQUEST or size + record_size > MAX_REQUEST_BYTES
        ):
            requests.append(current)
            current, size = [], 0
        current.append({"Data": record.value, "PartitionKey": key})
        size += record_size
    if current:
        requests.append(current)
    return requests


def _warm_up_records(workload: Workload) -> list[SourceRecord]:
    """A few small records on every partition, with keys the workload never uses."""
    partitions = sorted({record.partition for record in workload.records})
    return [SourceRecord(p, 0, f"warm-{p}".encode(), b"warm") for p in partitions]
