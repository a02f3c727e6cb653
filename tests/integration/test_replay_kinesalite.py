"""The replay command over hostile objects, end to end: moto's S3 in-process holds the objects,
kinesalite takes the records (the sink's own boto3 writer, several workers, aggregation on).

For any invocation's dead letters and on-failure batch, some of them mutated: every object is
moved whole or left whole, nothing is sent that no readable object holds, every record of a moved
object is in the stream byte for byte, each key in offset order (tests/replay_objects.py). The
property runs FUZZ_EXAMPLES // 40 examples (7; FUZZ_EXAMPLES=4000 for 100); the same property
over an in-memory bucket and stream runs far more (tests/unit/test_replay_hostile.py).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localloop.kinesis_local import Kinesalite, create_stream, kinesis_client
from msk_kinesis_sink.kpl import deaggregate
from msk_kinesis_sink.settings import Settings
from tests.integration.conftest import REGION
from tests.replay_objects import (
    BucketObject,
    check_promise,
    mutated,
    reference_reading,
    source_of,
    stream_order_holds,
    valid_objects,
)
from tests.replay_runs import run_replay
from tests.strategies import FUZZ_EXAMPLES

pytestmark = pytest.mark.e2e

_NAMES = itertools.count()


@pytest.fixture(scope="module")
def kinesalite() -> Iterator[str]:
    with Kinesalite() as server:
        yield server.endpoint


def _env(endpoint: str, stream: str, bucket: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAM_NAME": stream,
        "RECORD_FORMAT": "envelope",
        "AGGREGATION": "on",
        "MAX_CONCURRENCY": "4",
        "DEAD_LETTER_BUCKET": bucket,
        "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "20",
        "AWS_ENDPOINT_URL_KINESIS": endpoint,
    }


def _stream(endpoint: str, stream: str) -> list[tuple[str, bytes]]:
    """Every user record in the stream's one shard, in order: (partition key, data)."""
    client = kinesis_client(endpoint)
    [shard] = client.list_shards(StreamName=stream)["Shards"]
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[tuple[str, bytes]] = []
    while True:
        answer = client.get_records(ShardIterator=iterator, Limit=10_000)
        for record in answer["Records"]:
            records.extend((record["PartitionKey"], data) for data in deaggregate(record["Data"]))
        if not answer["Records"]:
            return records
        iterator = answer["NextShardIterator"]


@st.composite
def _objects(draw: st.DrawFn) -> list[BucketObject]:
    """One invocation's objects, each mutated or not."""
    _, objects = draw(valid_objects())
    return [draw(mutated(obj)) if draw(st.booleans()) else obj for obj in objects]


@pytest.fixture
def aws(mocked_aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@settings(
    max_examples=max(FUZZ_EXAMPLES // 40, 1),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(_objects())
def test_replay_command_keeps_its_promise_over_mutated_objects(
    aws: Any, kinesalite: str, objects: list[BucketObject]
) -> None:
    # GIVEN a fresh bucket holding one invocation's objects, some mutated, and a fresh stream
    name = f"replay-{next(_NAMES)}"
    aws.create_bucket(Bucket=name)
    for obj in objects:
        aws.put_object(Bucket=name, Key=obj.key, Body=obj.body)
    create_stream(kinesis_client(kinesalite), name, 1)
    env = _env(kinesalite, name, name)
    # WHEN the replay runs with --apply, as an operator runs it
    run = run_replay(["--apply"], env)
    # THEN it kept its promise (tests/replay_objects.check_promise)
    listing = aws.list_objects_v2(Bucket=name).get("Contents", [])
    remaining = {
        item["Key"]: aws.get_object(Bucket=name, Key=item["Key"])["Body"].read() for item in listing
    }
    stream = _stream(kinesalite, name)
    outcomes = check_promise(objects, remaining, stream, run.status, Settings.from_env(env))
    sources = {source_of(o.body) for o in objects if reference_reading(o.body) is not None}
    assert stream_order_holds(stream) or len(sources) > 1
    # AND when nothing was left for a reason a second run could change, it sends nothing more
    if set(outcomes) <= {"moved", "unreadable", "too-deep"}:
        again = run_replay(["--apply"], env)
        assert again.summary["published"] == "0"
        assert _stream(kinesalite, name) == stream
