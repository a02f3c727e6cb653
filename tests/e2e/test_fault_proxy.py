"""The fault proxy in front of kinesalite: failed records are not written, answers are spliced."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from localloop.audit import read_stream
from localloop.faults import FaultSpec, TokenBucket
from localloop.kinesis_local import kinesis_client
from localloop.proxy import FaultProxy
from tests.e2e.conftest import LaneFactory

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_proxy_writes_only_records_it_did_not_fail(lane_factory: LaneFactory) -> None:
    # GIVEN a proxy failing about half the records, per record
    lane = lane_factory(partitions=1)
    spec = FaultSpec.parse("throttle=0.3,internal=0.2,seed=3")
    with FaultProxy(lane.kinesis_endpoint, spec) as proxy:
        client = kinesis_client(proxy.endpoint)
        entries = [{"Data": b"record-%03d" % i, "PartitionKey": f"k{i}"} for i in range(200)]

        # WHEN one PutRecords request goes through it
        response = client.put_records(StreamName=lane.stream, Records=entries)  # type: ignore[arg-type]

    # THEN the per-record results line up with the request, failures spliced in place...
    results = response["Records"]
    assert len(results) == 200
    failed = {i for i, r in enumerate(results) if "ErrorCode" in r}
    assert response["FailedRecordCount"] == len(failed) > 0
    assert {results[i]["ErrorCode"] for i in failed} == {
        "ProvisionedThroughputExceededException",
        "InternalFailure",
    }
    # ...and exactly the records reported as written are in the stream
    stored, _ = read_stream(kinesis_client(lane.kinesis_endpoint), lane.stream)
    assert sorted(r.data for r in stored) == [
        b"record-%03d" % i for i in range(200) if i not in failed
    ]


def test_proxy_rejects_requests_over_five_mib(lane_factory: LaneFactory) -> None:
    # GIVEN a request of 6 records of 1,000,000 bytes each (6 MB > 5 MiB)
    lane = lane_factory(partitions=1)
    with FaultProxy(lane.kinesis_endpoint, FaultSpec()) as proxy:
        client = kinesis_client(proxy.endpoint)
        entries = [{"Data": b"x" * 1_000_000, "PartitionKey": f"k{i}"} for i in range(6)]

        # WHEN it is sent
        with pytest.raises(ClientError) as error:
            client.put_records(StreamName=lane.stream, Records=entries)  # type: ignore[arg-type]

        # THEN Kinesis's limit is enforced (kinesalite alone would accept it)
        assert error.value.response["Error"]["Code"] == "InvalidArgumentException"
        assert proxy.stats.limit_violations == 1


def test_fault_spec_parses_the_compact_form() -> None:
    # GIVEN / WHEN a spec string as `make demo` takes it
    spec = FaultSpec.parse("throttle=0.05,lost=0.01,latency_ms=5,shard_limits=on,poison=a|b")

    # THEN every field is read, and it prints back the same way
    assert (spec.throttle, spec.lost, spec.latency_ms, spec.shard_limits) == (0.05, 0.01, 5, True)
    assert spec.poison == ("a", "b")
    assert FaultSpec.parse(spec.describe()) == spec
    with pytest.raises(ValueError, match="throttle"):
        FaultSpec.parse("throttle=2")


def _single_attempt_client(endpoint: str) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_proxy_loses_the_response_after_writing(lane_factory: LaneFactory) -> None:
    # GIVEN a proxy that loses every response
    lane = lane_factory(partitions=1)
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(lost=1.0)) as proxy:
        client = _single_attempt_client(proxy.endpoint)
        entries = [{"Data": b"r%d" % i, "PartitionKey": f"k{i}"} for i in range(5)]

        # WHEN a request is sent (no client retries)
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            client.put_records(StreamName=lane.stream, Records=entries)
        lost = proxy.stats.responses_lost

    # THEN the caller heard nothing, yet the records were written
    stored, _ = read_stream(kinesis_client(lane.kinesis_endpoint), lane.stream)
    assert sorted(r.data for r in stored) == [b"r%d" % i for i in range(5)]
    assert lost == 1


def test_proxy_throttles_whole_requests_without_writing(lane_factory: LaneFactory) -> None:
    # GIVEN a proxy that throttles every request
    lane = lane_factory(partitions=1)
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(request_throttle=1.0)) as proxy:
        client = _single_attempt_client(proxy.endpoint)

        # WHEN a request is sent
        with pytest.raises(ClientError) as error:
            client.put_records(
                StreamName=lane.stream, Records=[{"Data": b"x", "PartitionKey": "k"}]
            )

    # THEN it is refused as Kinesis refuses it, and nothing is written
    assert error.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    stored, _ = read_stream(kinesis_client(lane.kinesis_endpoint), lane.stream)
    assert stored == []


def test_proxy_shard_limits_follow_the_stream_shard_map(lane_factory: LaneFactory) -> None:
    # GIVEN a 2-shard stream and 1,600 distinct keys: about 800 per shard, under 1,000/s each
    lane = lane_factory(partitions=1, shards=2)
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(shard_limits=True)) as proxy:
        client = kinesis_client(proxy.endpoint)

        # WHEN they are sent in four requests
        for start in range(0, 1600, 400):
            entries = [{"Data": b"x", "PartitionKey": f"k{i}"} for i in range(start, start + 400)]
            client.put_records(StreamName=lane.stream, Records=entries)  # type: ignore[arg-type]

        # THEN nothing was throttled: each shard has its own allowance
        assert proxy.stats.records_throttled == 0
        assert proxy.stats.records_written == 1600


def test_token_bucket_allows_one_second_of_writes_then_refills() -> None:
    # GIVEN a shard allowance on a clock we control
    now = [100.0]
    bucket = TokenBucket(clock=lambda: now[0])

    # WHEN 1,000 records are taken at once, then one more
    taken = [bucket.take(10) for _ in range(1000)]
    over = bucket.take(10)
    now[0] += 0.5  # half a second later
    refilled = sum(bucket.take(10) for _ in range(600))

    # THEN the 1,001st is refused and half a second brings back 500
    assert all(taken) and not over
    assert refilled == 500
    assert not TokenBucket(clock=lambda: 0.0).take(2 * 1024 * 1024)  # over 1 MiB in one go
