"""AGGREGATION=on through the real handler and boto3 writer, read back from moto's Kinesis."""

from __future__ import annotations

import base64
from collections import defaultdict
from typing import Any

import boto3
import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from msk_kinesis_sink.consumer import Envelope
from msk_kinesis_sink.kpl import KPL_MAGIC
from tests.factories import kafka_record, msk_event
from tests.fakes import FakeContext
from tests.integration.conftest import REGION
from tests.integration.lambda_container import load_handler, read_stream

STREAM = "mirror-agg"
TOPIC = "clicks.v1-eu"


@pytest.fixture
def stream(mocked_aws: None) -> str:
    boto3.client("kinesis", region_name=REGION).create_stream(StreamName=STREAM, ShardCount=2)
    return STREAM


def _event(sources: list[tuple[int, int, bytes | None]]) -> dict[str, Any]:
    return msk_event(
        kafka_record(TOPIC, partition, offset, key, b"v" * 500, [("h", b"1")])
        for partition, offset, key in sources
    )


def test_handler_with_aggregation_reads_back_through_the_standard_deaggregator(
    stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the handler with AGGREGATION=on, envelopes, and a batch with repeated and null keys
    handler = load_handler(
        monkeypatch, STREAM_NAME=stream, RECORD_FORMAT="envelope", AGGREGATION="on"
    )
    keys = [b"alice", b"bob", None, b"alice", b"carol"]
    sources = [(p, o, keys[o % len(keys)]) for p in range(3) for o in range(200)]

    # WHEN invoked
    response = handler.handler(_event(sources), FakeContext())

    # THEN the stream holds aggregates, and deaggregation gives every envelope, in order per key
    assert response == {"batchItemFailures": []}
    stored = read_stream(stream)
    assert any(record["Data"].startswith(KPL_MAGIC) for record in stored)
    assert len(stored) < len(sources)
    received: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for user in iter_deaggregate_records(stored, data_format="Boto3"):
        kinesis = user["kinesis"]
        data = base64.b64decode(kinesis["data"]) if kinesis.get("aggregated") else kinesis["data"]
        envelope = Envelope.from_bytes(data)
        received[(envelope.partition, envelope.key)].append(envelope.offset)
    expected: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for partition, offset, key in sources:
        expected[(partition, None if key is None else base64.b64encode(key).decode())].append(
            offset
        )
    assert dict(received) == dict(expected)
