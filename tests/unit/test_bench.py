"""Smoke tests of the benchmark's pure parts (workloads, request shaping, report); no servers."""

from __future__ import annotations

import base64
import json
from collections import Counter

from bench.report import goals, table
from bench.stub import put_records_response
from bench.systems import pre_encoded_requests
from bench.worker import put_units_of_body
from bench.workloads import (
    MAX_INVOCATION_BYTES,
    SourceRecord,
    consumption_order,
    msk_event,
    put_payload_units,
    w3,
    w4,
    w5,
)
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES
from msk_kinesis_sink.settings import PartitionKeyMode


def test_put_payload_units_round_up_per_25_kb() -> None:
    # GIVEN record sizes around the 25 KB unit / WHEN billed / THEN each started unit counts
    assert [put_payload_units(n) for n in (1, 25_600, 25_601, 1_048_576)] == [1, 1, 2, 41]


def test_pre_encoded_requests_respect_the_putrecords_limits_in_order() -> None:
    # GIVEN 1,200 records of 10 KiB (the byte limit bites before the count limit)
    records = tuple(SourceRecord(0, i, None, bytes(10 * 1024)) for i in range(1200))
    keys = [f"k{i}" for i in range(1200)]

    # WHEN shaped into requests
    requests = pre_encoded_requests(records, keys)

    # THEN every request is within 500 records and 5 MiB, and together they keep the order
    for request in requests:
        assert len(request) <= MAX_RECORDS_PER_REQUEST
        assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in request) <= MAX_REQUEST_BYTES
    assert [r["PartitionKey"] for request in requests for r in request] == keys


def test_workloads_have_the_documented_shapes() -> None:
    # GIVEN the hot-key, null-key and partition-key workloads
    hot, null, by_partition = w3(), w4(), w5()

    # WHEN their keys are counted / THEN they match their descriptions
    top3 = sum(n for _, n in Counter(r.key for r in hot.records).most_common(3))
    assert 0.75 < top3 / len(hot.records) < 0.85
    assert all(r.key is None for r in null.records)
    assert len(set(null.partition_keys())) == 10
    assert by_partition.partition_key_mode is PartitionKeyMode.PARTITION
    assert len(set(by_partition.partition_keys())) <= 10
    assert {len(r.value) for r in by_partition.records} == {100}


def test_msk_event_keeps_each_partition_in_offset_order_within_the_invocation_limit() -> None:
    # GIVEN a small workload slice / WHEN turned into an MSK event
    records = w4().records[:50]
    event = msk_event(records)

    # THEN each topic-partition lists its offsets ascending, and the event is a valid payload
    for group in event["records"].values():
        offsets = [r["offset"] for r in group]
        assert offsets == sorted(offsets)
    assert len(json.dumps(event)) < MAX_INVOCATION_BYTES
    assert sorted(consumption_order(records), key=lambda r: (r.partition, r.offset)) == sorted(
        records, key=lambda r: (r.partition, r.offset)
    )


def test_stub_answers_one_success_per_record() -> None:
    # GIVEN a request of 3 records / WHEN answered / THEN 3 successes and no failure
    answer = json.loads(put_records_response(3))
    assert answer["FailedRecordCount"] == 0
    assert len(answer["Records"]) == 3


def test_report_computes_goal_ratios_and_a_table() -> None:
    # GIVEN two W1 runs at stub15
    base = {
        "workload": "W1",
        "endpoint": "stub15",
        "mb_per_s": 1.0,
        "calls_per_1k": 2.0,
        "put_units_per_1k": 1000.0,
        "cpu_us_per_record": 10.0,
        "peak_rss_mb": 100.0,
    }
    runs = [
        {**base, "system": "handler", "records_per_s": 9000.0},
        {**base, "system": "bound", "records_per_s": 10000.0},
    ]

    # WHEN reported
    checked = {goal.name: goal for goal in goals(runs, {"handler": 150.0, "boto3": 100.0})}
    text = table(runs)

    # THEN ratios come from the same run, and the table lists both systems
    assert checked["W1 stub15: handler / bound records/s"].measured == 0.9
    assert checked["W1 stub15: handler / bound records/s"].met is True
    assert checked["cold start: 1.5 x import boto3 / import handler"].measured == 1.0
    assert checked["W1 stub15: handler / quix records/s"].measured is None
    assert "handler" in text and "bound" in text


def test_put_units_of_body_counts_each_record_from_the_wire_form() -> None:
    # GIVEN a PutRecords body as botocore (or the sink) sends it: base64 data, text keys
    records = [(b"x" * 25 * 1024, "k"), (b"", "key"), (b"y" * 10, "\u00e9")]
    body = json.dumps(
        {
            "Records": [
                {"Data": base64.b64encode(data).decode(), "PartitionKey": key}
                for data, key in records
            ],
            "StreamName": "s",
        }
    )
    # WHEN counted: THEN units follow ceil((data + UTF-8 key) / 25 KiB), at least one per record
    assert put_units_of_body(body) == sum(
        put_payload_units(len(data) + len(key.encode())) for data, key in records
    )
    assert put_units_of_body(body) == 2 + 1 + 1
