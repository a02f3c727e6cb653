"""AGGREGATION=on through the real handler and boto3 writer, read back from moto's Kinesis."""

from __future__ import annotations

import base64
import importlib
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from moto import mock_aws

from msk_kinesis_sink.aggregation import KPL_MAGIC
from msk_kinesis_sink.consumer import Envelope
from tests.fakes import FakeContext

REGION = "us-east-1"
STREAM = "mirror-agg"
TOPIC = "clicks.v1-eu"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("kinesis", region_name=REGION).create_stream(StreamName=STREAM, ShardCount=2)
        yield


def _event(sources: list[tuple[int, int, bytes | None]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for partition, offset, key in sources:
        record: dict[str, Any] = {
            "topic": TOPIC,
            "partition": partition,
            "offset": offset,
            "timestamp": 1_700_000_000_000 + offset,
            "timestampType": "CREATE_TIME",
            "value": base64.b64encode(b"v" * 500).decode(),
            "headers": [{"h": list(b"1")}],
        }
        if key is not None:
            record["key"] = base64.b64encode(key).decode()
        groups[f"{TOPIC}-{partition}"].append(record)
    return {"eventSource": "aws:kafka", "records": groups}


def _read_back() -> list[dict[str, Any]]:
    kinesis = boto3.client("kinesis", region_name=REGION)
    records: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"])
    return records


def test_handler_with_aggregation_reads_back_through_the_standard_deaggregator(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the handler with AGGREGATION=on, envelopes, and a batch with repeated and null keys
    for name, value in {
        "STREAM_NAME": STREAM,
        "RECORD_FORMAT": "envelope",
        "AGGREGATION": "on",
    }.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("msk_kinesis_sink.handler", None)
    handler = importlib.import_module("msk_kinesis_sink.handler")
    keys = [b"alice", b"bob", None, b"alice", b"carol"]
    sources = [(p, o, keys[o % len(keys)]) for p in range(3) for o in range(200)]

    # WHEN invoked
    response = handler.handler(_event(sources), FakeContext())

    # THEN the stream holds aggregates, and deaggregation gives every envelope, in order per key
    assert response == {"batchItemFailures": []}
    stored = _read_back()
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
