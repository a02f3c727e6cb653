"""Smoke tests of the benchmark's pure parts (workloads, request shaping, report); no servers."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.endpoint import Endpoint
from hypothesis import given
from hypothesis import strategies as st

from bench.chart import draw as draw_chart
from bench.chart import panels as chart_panels
from bench.esm import NoProgressError, batch_counts, by_partition, deliver, reported_offsets
from bench.reading import BudgetRow, budget_lines, reading_cost, records_with_headers
from bench.report import audit_verdict, goals, median_of_rounds, table
from bench.run import (
    DEFAULT_OUT,
    DEFAULT_REPEAT,
    ENDPOINTS,
    PARTIAL_OUT,
    SYSTEMS,
    WORKLOADS,
    plan,
    results_path,
)
from bench.stub import put_records_response
from bench.systems import pre_encoded_requests
from bench.verify import source_log, without_warm_up
from bench.worker import CallCounter, put_units_of_body
from bench.workloads import (
    MAX_INVOCATION_BYTES,
    TOPIC,
    W7_HOT_KEYS,
    W7_VALUE_SIZES,
    WARM_UP_TOPIC,
    SourceRecord,
    Workload,
    consumption_order,
    kafka_record,
    msk_event,
    put_payload_units,
    w3,
    w4,
    w5,
    w7,
    w8,
)
from localloop.audit import StreamRecord, audit
from msk_kinesis_sink.encoding import envelope_bytes
from msk_kinesis_sink.events import parse_event
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES
from msk_kinesis_sink.settings import PartitionKeyMode, RecordFormat


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


def _is_binary(key: bytes | None) -> bool:
    if key is None:
        return False
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_w7_has_the_harness_shape() -> None:
    # GIVEN the harness-shaped workload
    workload = w7()
    records = workload.records
    total = len(records)

    # WHEN its partitions, keys and values are counted
    by_partition: dict[int, list[int]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record.offset)
    hot = sum(1 for r in records if r.key in W7_HOT_KEYS)
    null = sum(1 for r in records if r.key is None)
    binary = sum(1 for r in records if _is_binary(r.key))
    sizes = Counter(len(r.value) for r in records)

    # THEN 6 partitions of 1,500 consecutive offsets, the key mix and the five value sizes hold
    assert sorted(by_partition) == [0, 1, 2, 3, 4, 5]
    assert all(offsets == list(range(1500)) for offsets in by_partition.values())
    assert 0.33 < hot / total < 0.37
    assert 0.08 < null / total < 0.12
    assert 0.04 < binary / total < 0.06
    assert set(sizes) == set(W7_VALUE_SIZES)
    assert all(0.18 < count / total < 0.22 for count in sizes.values())
    # every hot key lands in every partition (the producer picks partitions, not the key hash)
    assert {(r.partition, r.key) for r in records if r.key in W7_HOT_KEYS} == {
        (p, k) for p in range(6) for k in W7_HOT_KEYS
    }
    assert workload.record_format is RecordFormat.ENVELOPE
    assert workload.batch_size == 800
    assert w7().records == records  # deterministic: every system sees the same bytes


def test_w8_is_the_headers_heavy_event_of_one_invocation() -> None:
    # GIVEN the headers-heavy workload
    workload = w8()
    event = msk_event(workload.records)

    # THEN 10,000 records of 32-40 one-byte headers in envelopes, one invocation of 5-6 MB that
    # the sink reads back with every header
    assert len(workload.records) == 10_000
    assert {len(r.headers) for r in workload.records} == set(range(32, 41))
    assert {len(value) for r in workload.records for _, value in r.headers} == {1}
    assert workload.record_format is RecordFormat.ENVELOPE and workload.batch_size is None
    assert 5_000_000 < len(json.dumps(event, separators=(",", ":"))) < MAX_INVOCATION_BYTES
    parsed = parse_event(event)
    read = {(r.partition, r.offset): r.headers for b in parsed.partitions for r in b.records}
    assert all(read[(r.partition, r.offset)] == r.headers for r in workload.records)
    # AND the same records without headers, or with three, for the reading cost table
    assert records_with_headers(workload, None) is workload.records
    assert {len(r.headers) for r in records_with_headers(workload, 3)} == {3}
    assert records_with_headers(workload, 0)[5].value == workload.records[5].value


def test_reading_cost_measures_each_step_per_record() -> None:
    # GIVEN 200 records of W8 / WHEN their reading is timed
    cost = reading_cost(w8().records[:200], RecordFormat.ENVELOPE, repeat=1)
    # THEN every step took some time, and the total is their sum
    assert cost.records == 200 and cost.headers == 36 and cost.record_format == "envelope"
    assert min(cost.outline_us, cost.parse_us, cost.parse_checked_us, cost.encode_us) > 0
    assert cost.total_us == cost.outline_us + cost.parse_us + cost.encode_us


def test_reading_goal_and_budget_table() -> None:
    # GIVEN a reading cost table
    reading = [
        {
            "headers": 0,
            "record_format": "envelope",
            "records": 10,
            "event_mb": 1.0,
            "outline_us": 0.5,
            "parse_us": 1.0,
            "parse_checked_us": 2.0,
            "encode_us": 2.5,
        },
        {
            "headers": 36,
            "record_format": "envelope",
            "records": 10,
            "event_mb": 5.0,
            "outline_us": 1.0,
            "parse_us": 10.0,
            "parse_checked_us": 50.0,
            "encode_us": 9.0,
        },
    ]
    # WHEN the goals are computed / THEN the fast path's ratio to the checked path is one
    [goal] = [g for g in goals([], {}, reading) if g.name.startswith("reading")]
    assert goal.measured == 5.0 and goal.met is True
    assert "20.0 us, without 4.0 us (5.0 x)" in goal.detail
    # AND the budget table is Markdown, one row per case, a dash where no budget was enough
    lines = budget_lines([BudgetRow(1_000, 36, "envelope", 0.6, 0.05, 0.12, None)])
    assert lines[2] == "| 1,000 | 36 | `envelope` | 0.60 MB | 50 ms | 0.12 s | — |"


def test_pre_encoded_requests_carry_the_data_given() -> None:
    records = w8().records[:3]
    data = [envelope_bytes(kafka_record(record)) for record in records]
    [request] = pre_encoded_requests(records, ["a", "b", "c"], data)
    assert [entry["Data"] for entry in request] == data


def test_batch_counts_take_turns_across_partitions_up_to_the_batch_size() -> None:
    # GIVEN W7's six partitions of 1,500, nothing delivered yet, and uneven leftovers
    full = dict.fromkeys(range(6), 1500)
    uneven = {0: 5, 1: 0, 2: 300, 3: 2}

    # WHEN the next 800-record batch is planned
    # THEN W7's first batch takes 134 from the first two partitions and 133 from the others
    assert batch_counts(full, 800) == {0: 134, 1: 134, 2: 133, 3: 133, 4: 133, 5: 133}
    # short partitions give what they have, the rest fills the batch; None takes everything
    assert batch_counts(uneven, 100) == {0: 5, 1: 0, 2: 93, 3: 2}
    assert batch_counts(uneven, 8) == {0: 3, 1: 0, 2: 3, 3: 2}
    assert batch_counts(uneven, None) == uneven


@given(
    remaining=st.dictionaries(st.integers(0, 9), st.integers(0, 50), max_size=6),
    batch_size=st.integers(min_value=1, max_value=200),
)
def test_batch_counts_equal_one_record_per_partition_in_turn(
    remaining: dict[int, int], batch_size: int
) -> None:
    # GIVEN partitions with records left / WHEN counted by whole turns
    counts = batch_counts(remaining, batch_size)
    # THEN the result is what taking one record per partition in turn gives
    expected = dict.fromkeys(remaining, 0)
    taken = 0
    while taken < batch_size and any(expected[p] < n for p, n in remaining.items()):
        for partition in sorted(remaining):
            if expected[partition] < remaining[partition] and taken < batch_size:
                expected[partition] += 1
                taken += 1
    assert counts == expected


@given(
    batch_size=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    partitions=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=30),
)
def test_deliver_redelivers_every_reported_tail_until_all_is_delivered(
    batch_size: int | None, partitions: list[int], cuts: list[int]
) -> None:
    # GIVEN records on a few partitions (offsets from 7 on), and a function that, for its first
    # invocations, reports a tail of one partition of each batch (chosen by `cuts`)
    records = [
        SourceRecord(p, 7 + index, b"k", b"v")
        for p, size in enumerate(partitions)
        for index in range(size)
    ]
    delivered: dict[int, list[int]] = {p: [] for p, size in enumerate(partitions) if size}
    pending_cuts = list(cuts)

    def invoke(batch: Mapping[int, range]) -> Mapping[int, int]:
        offsets = {p: [7 + i for i in sent] for p, sent in batch.items()}
        reported: dict[int, int] = {}
        if pending_cuts:
            cut = pending_cuts.pop(0)
            partition = sorted(offsets)[cut % len(offsets)]
            reported[partition] = offsets[partition][cut % len(offsets[partition])]
        if batch_size is not None:
            assert sum(len(sent) for sent in batch.values()) <= batch_size
        for partition, sent in offsets.items():
            # THEN every batch resumes each partition at its first undelivered record
            assert sent[0] == 7 + len(delivered[partition])
            resume = reported.get(partition, sent[-1] + 1)
            delivered[partition] += [o for o in sent if o < resume]
        return reported

    # WHEN delivered
    invocations = deliver(by_partition(records), batch_size, invoke)

    # THEN every record was delivered exactly once, in offset order, per partition
    assert delivered == {
        p: [7 + i for i in range(size)] for p, size in enumerate(partitions) if size
    }
    assert invocations >= min(1, len(records))


def test_deliver_stops_when_the_function_never_makes_progress() -> None:
    # GIVEN a function that reports every batch from its first record
    records = [SourceRecord(0, offset, b"k", b"v") for offset in range(10)]

    def invoke(batch: Mapping[int, range]) -> Mapping[int, int]:
        return {p: sent.start for p, sent in batch.items()}

    # WHEN delivered / THEN the run fails instead of looping forever
    with pytest.raises(NoProgressError):
        deliver(by_partition(records), 5, invoke)


def test_reported_offsets_keep_the_lowest_per_partition() -> None:
    # GIVEN a partial-batch response as the sink writes it (every record of each tail)
    response: dict[str, Any] = {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": f"{TOPIC}-{p}", "offset": o}}
            for p, o in [(3, 7), (3, 8), (3, 9), (10, 2)]
        ]
    }
    # WHEN read / THEN each partition resumes at its lowest reported offset
    assert reported_offsets(response, TOPIC) == {3: 7, 10: 2}


def test_w7_envelopes_pass_the_audit_and_a_lost_record_fails_it() -> None:
    # GIVEN W7's records as the sink writes them (envelopes built from its own event),
    # plus a warm-up record of another topic
    workload = w7()
    event = parse_event(msk_event(workload.records[:600]))
    written = [
        StreamRecord("shardId-0", str(i), envelope_bytes(record))
        for i, record in enumerate(r for batch in event.partitions for r in batch.records)
    ]
    warm = parse_event(msk_event(workload.records[:1], topic=WARM_UP_TOPIC))
    written.append(StreamRecord("shardId-0", "w", envelope_bytes(warm.partitions[0].records[0])))
    subset = Workload("W7 slice", "", workload.records[:600])

    # WHEN audited whole, and with one record missing
    whole = audit(source_log(subset), without_warm_up(written))
    missing = audit(source_log(subset), without_warm_up(written[1:]))

    # THEN the whole stream passes (warm-up dropped), the other loses exactly one record
    assert whole.ok and whole.delivered == 600 and whole.unexpected == 0
    assert not missing.ok and missing.lost == 1


def _w7_run(endpoint: str, system: str, rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "workload": "W7",
        "endpoint": endpoint,
        "system": system,
        "records_per_s": rate,
        "seconds": 9000 / rate,
        "audit": {"ok": True, "duplicates": 0, "lost": 0},
        **extra,
    }


def test_harness_goals_are_ratios_to_quix_without_faults_and_need_a_clean_audit() -> None:
    # GIVEN W7 runs: quix at 2,000 rec/s; the default at 2,600; aggregation under faults at
    # 2,000, but that run lost a record
    failed = {
        "ok": False,
        "duplicates": 5,
        "lost": 1,
        "out_of_order": 0,
        "corrupted": 0,
        "undecodable": 0,
        "unexpected": 0,
    }
    runs = [
        _w7_run("kinesalite20", "quix", 2000.0),
        _w7_run("kinesalite20", "handler-default", 2600.0),
        _w7_run("kinesalite20-faults", "handler-agg", 2000.0, audit=failed),
    ]

    # WHEN the goals are computed
    checked = {goal.name: goal for goal in goals(runs, {})}
    default = checked["W7 kinesalite20: handler-default / quix records/s"]
    faults = checked["W7 kinesalite20-faults: handler-agg / quix without faults"]

    # THEN the default meets 1.2x; the fault run's 1.0x can not count: its audit failed
    assert default.measured == 1.3 and default.met is True
    assert faults.measured == 1.0 and faults.met is False
    assert faults.invalid is not None and "lost 1" in faults.invalid
    assert audit_verdict(runs[2]) == "FAILED: lost 1"


def test_median_of_rounds_keeps_the_median_time_and_any_failed_audit() -> None:
    # GIVEN three rounds of one run, the fastest of which lost records
    rounds = [
        _w7_run("kinesalite20", "handler-agg", 3000.0, audit={"ok": False, "lost": 9}),
        _w7_run("kinesalite20", "handler-agg", 1000.0),
        _w7_run("kinesalite20", "handler-agg", 2000.0),
    ]
    # WHEN combined
    run = median_of_rounds(rounds)
    # THEN the median round's figures stand, every round's rate is kept, and the run fails
    assert run["records_per_s"] == 2000.0
    assert run["rounds_records_per_s"] == [3000.0, 1000.0, 2000.0]
    assert run["audit"] == {"ok": False, "lost": 9}
    assert run["audits_ok"] == "2/3"


def test_plan_runs_w7_only_behind_the_proxy_and_quix_only_without_faults() -> None:
    # GIVEN every workload, endpoint and system / WHEN planned
    runs = plan(
        ["W1", "W7"],
        ["stub", "kinesalite20", "kinesalite20-faults"],
        ["handler", "handler-agg", "handler-default", "quix", "bound"],
    )
    # THEN W1 stays on the plain endpoints, W7 on the proxied ones, without faults for quix
    assert runs == [
        ("stub", "W1", "handler"),
        ("stub", "W1", "handler-agg"),
        ("stub", "W1", "quix"),
        ("stub", "W1", "bound"),
        ("kinesalite20", "W7", "handler"),
        ("kinesalite20", "W7", "handler-agg"),
        ("kinesalite20", "W7", "handler-default"),
        ("kinesalite20", "W7", "quix"),
        ("kinesalite20-faults", "W7", "handler"),
        ("kinesalite20-faults", "W7", "handler-agg"),
    ]


def test_harness_ratio_is_the_median_of_per_round_ratios() -> None:
    # GIVEN three interleaved rounds where the machine was slow in the second for everyone
    runs = [
        {
            **_w7_run("kinesalite20", "quix", 2000.0),
            "rounds_records_per_s": [2000.0, 500.0, 2200.0],
        },
        {
            **_w7_run("kinesalite20", "handler-default", 2000.0),
            "rounds_records_per_s": [2600.0, 700.0, 2000.0],
        },
    ]
    # WHEN the default goal is computed
    goal = {g.name: g for g in goals(runs, {})}["W7 kinesalite20: handler-default / quix records/s"]
    # THEN it is the median of 1.3, 1.4 and 0.91 (paired by round), not 2000 / 2000
    assert goal.measured == 1.3


def test_chart_panels_put_each_system_against_its_reference() -> None:
    # GIVEN W1 at stub (handler, quix and the bound), W3 at stub without a bound, and W7 rounds
    # where the machine was slow in the second round for everyone
    def classic(workload: str, system: str, rate: float) -> dict[str, Any]:
        return {"workload": workload, "endpoint": "stub", "system": system, "records_per_s": rate}

    document = {
        "runs": [
            classic("W1", "handler", 9000.0),
            classic("W1", "quix", 4500.0),
            classic("W1", "bound", 10000.0),
            classic("W3", "handler", 100.0),
            {**_w7_run("kinesalite20", "quix", 2000.0), "rounds_records_per_s": [2000.0, 500.0]},
            {
                **_w7_run("kinesalite20", "handler-default", 2500.0),
                "rounds_records_per_s": [2500.0, 625.0],
            },
            _w7_run("kinesalite20-faults", "handler-agg", 1800.0),
        ]
    }

    # WHEN the chart's panels are prepared (no drawing, no matplotlib)
    shown = chart_panels(document)

    # THEN W1 is drawn against the bound, W3 (no bound to compare with) is left out
    stub, harness = shown
    assert stub.reference == "bound"
    assert [group.label for group in stub.groups] == ["W1 distinct keys"]
    assert {bar.system: bar.ratio for bar in stub.groups[0].bars} == {
        "handler": 0.9,
        "quix": 0.45,
    }
    # AND W7 is drawn against Quix without faults, as its goals count it (paired rounds)
    assert harness.reference == "Quix without faults"
    no_faults, faults = harness.groups
    assert {bar.system: bar.ratio for bar in no_faults.bars} == {
        "handler-default": 1.25,
        "quix": 1.0,
    }
    assert {bar.system: bar.ratio for bar in faults.bars} == {"handler-agg": 0.9}


def test_chart_refuses_a_document_with_nothing_to_draw(tmp_path: Path) -> None:
    # GIVEN results without any reference run
    document = {"runs": [{"workload": "W1", "endpoint": "stub", "system": "handler"}]}
    # WHEN drawn / THEN it says so before importing any plotting library, and writes nothing
    with pytest.raises(ValueError, match="nothing to draw"):
        draw_chart(document, tmp_path / "chart.png")
    assert not (tmp_path / "chart.png").exists()


class _AnsweringSession:
    """An HTTP session that answers every PutRecords with success, as the handler's own
    deadline-bounded session stands in for botocore's (no network)."""

    def send(self, request: Any) -> AWSResponse:
        records = len(json.loads(request.body)["Records"])

        class Raw:
            def stream(self) -> Iterator[bytes]:
                yield put_records_response(records)

        return AWSResponse(request.url, 200, HTTPHeaders(), Raw())


def test_call_counter_counts_puts_whatever_session_sends_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the counter installed (restored after the test), and a Kinesis client whose HTTP
    # session is not botocore's
    monkeypatch.setattr(Endpoint, "_send", Endpoint._send)
    counter = CallCounter()
    counter.install()
    client = boto3.client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client._endpoint.http_session = _AnsweringSession()

    # WHEN a PutRecords of a 30,000-byte record and a small one is sent
    answer = client.put_records(
        StreamName="s",
        Records=[
            {"Data": b"x" * 30_000, "PartitionKey": "k"},
            {"Data": b"y", "PartitionKey": "k2"},
        ],
    )

    # THEN the call and its PUT payload units (2 + 1) are counted
    assert answer["FailedRecordCount"] == 0
    assert (counter.calls, counter.put_units) == (1, 3)


def test_results_path_only_a_full_run_writes_the_committed_results() -> None:
    # GIVEN every run there is, and a subset of them (the README's example)
    everything = plan(list(WORKLOADS), list(ENDPOINTS), list(SYSTEMS))
    subset = plan(["W1", "W3"], ["stub15"], ["handler", "handler-agg", "bound"])
    committed = DEFAULT_OUT

    # WHEN each picks where its results go / THEN a full run replaces the committed results...
    assert results_path(None, everything, DEFAULT_REPEAT) == committed
    assert results_path(None, list(reversed(everything)), DEFAULT_REPEAT + 2) == committed
    # ...a subset, or fewer repetitions, writes elsewhere, by default or to a file it is given
    assert results_path(None, subset, DEFAULT_REPEAT) == PARTIAL_OUT != committed
    assert results_path(None, everything, 1) == PARTIAL_OUT
    assert results_path(Path("/tmp/mine.json"), subset, 1) == Path("/tmp/mine.json")
    # ...and never the committed file, even when asked
    with pytest.raises(SystemExit, match=r"does not replace bench/results/latest\.json"):
        results_path(committed, subset, DEFAULT_REPEAT)
