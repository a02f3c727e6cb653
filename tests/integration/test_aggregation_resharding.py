"""Same-key aggregates stay readable across a reshard, through kinesalite and the boto3 writer.

KCL drops a deaggregated user record whose partition key hashes outside the hash key range of
the shard it was read from. Every user record of our aggregates carries the aggregate's own
partition key, so it always hashes into the shard Kinesis chose: this test splits the shard
between two invocations and checks exactly that, plus the consumer rule, across all shards.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from localloop.kinesis_local import Kinesalite, create_stream, kinesis_client
from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator
from msk_kinesis_sink.runtime import Sink
from tests.fakes import FakeContext

pytestmark = pytest.mark.e2e

TOPIC = "orders.v2-eu"
STREAM = "agg-reshard"
KEYS = [f"customer-{i}".encode() for i in range(12)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with Kinesalite() as server:
        yield server.endpoint


def _event(partitions: int, offsets: range) -> dict[str, Any]:
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for partition in range(partitions):
        for offset in offsets:
            key = KEYS[(offset * 7 + partition) % len(KEYS)]
            records[f"{TOPIC}-{partition}"].append(
                {
                    "topic": TOPIC,
                    "partition": partition,
                    "offset": offset,
                    "timestamp": 1_700_000_000_000 + offset,
                    "timestampType": "CREATE_TIME",
                    "key": base64.b64encode(key).decode(),
                    "value": base64.b64encode(b"v" * 200).decode(),
                    "headers": [],
                }
            )
    return {"eventSource": "aws:kafka", "records": records}


def _hash_key(partition_key: str) -> int:
    """The 128-bit hash key Kinesis (and KCL's range check) derives from a partition key."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def test_aggregates_of_one_key_hash_into_the_shard_they_land_in_across_a_split(
    endpoint: str,
) -> None:
    # GIVEN a one-shard stream and the sink with AGGREGATION=on writing through boto3
    client = kinesis_client(endpoint)
    create_stream(client, STREAM, 1)
    env = {
        "STREAM_NAME": STREAM,
        "RECORD_FORMAT": "envelope",
        "AGGREGATION": "on",
        "AWS_ENDPOINT_URL_KINESIS": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": "us-east-1",
    }
    sink = Sink.from_env(env)
    try:
        # WHEN one invocation is published, the shard is split in two, and another follows
        first = sink.handle(_event(3, range(0, 120)), FakeContext())
        parent = client.list_shards(StreamName=STREAM)["Shards"][0]["ShardId"]
        client.split_shard(StreamName=STREAM, ShardToSplit=parent, NewStartingHashKey=str(2**127))
        second = sink.handle(_event(3, range(120, 240)), FakeContext())
    finally:
        sink.close()
    assert first == second == {"batchItemFailures": []}

    # THEN, reading parent then children as KCL does, every user record hashes into its shard
    shards = sorted(
        client.list_shards(StreamName=STREAM)["Shards"],
        key=lambda shard: ("ParentShardId" in shard, shard["ShardId"]),
    )
    assert len(shards) == 3
    dedup = OffsetDeduplicator()
    received: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    aggregated = 0
    for shard in shards:
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        iterator = client.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        stored = client.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        for user in iter_deaggregate_records(stored, data_format="Boto3"):
            kinesis = user["kinesis"]
            assert low <= _hash_key(kinesis["partitionKey"]) <= high
            if kinesis.get("aggregated"):
                aggregated += 1
                data = base64.b64decode(kinesis["data"])
            else:
                data = kinesis["data"]
            envelope = Envelope.from_bytes(data)
            if dedup.accept(envelope):
                received[(envelope.partition, envelope.key)].append(envelope.offset)

    # AND the consumer rule yields every key's records once, in Kafka order
    expected: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for partition in range(3):
        for offset in range(240):
            key = KEYS[(offset * 7 + partition) % len(KEYS)]
            expected[(partition, base64.b64encode(key).decode())].append(offset)
    assert dict(received) == dict(expected)
    assert aggregated > 0
