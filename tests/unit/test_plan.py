"""infra.plan: the capacity model's invariants, its verdicts on known shapes, its warnings, CLI."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.plan import (
    EXAMPLE_ARGS,
    PLANNED_INVOCATION_BYTES,
    PlanError,
    RecordFormat,
    StreamMode,
    Workload,
    batch_seconds,
    config_warnings,
    kinesis_records_per_s,
    main,
    plan,
    records_per_invocation,
    render,
)
from infra.plan import _parser as plan_parser
from msk_kinesis_sink.limits import SHARD_WRITE_BYTES_PER_S, SHARD_WRITE_RECORDS_PER_S

ROOT = Path(__file__).resolve().parents[2]

workloads = st.builds(
    Workload,
    mb_per_s=st.floats(0.01, 2_000),
    record_bytes=st.integers(1, 900_000),
    partitions=st.integers(1, 3_000),
    key_skew=st.one_of(st.just(0.0), st.floats(0, 1)),
    record_format=st.sampled_from(RecordFormat),
    aggregation=st.booleans(),
    rtt_ms=st.floats(1, 200),
    max_concurrency=st.integers(1, 64),
    timeout_s=st.integers(1, 840),
)


@settings(max_examples=150, deadline=None)
@given(workloads, st.floats(1.01, 50))
def test_plan_more_throughput_never_plans_fewer_shards_or_pollers(
    workload: Workload, factor: float
) -> None:
    # GIVEN a workload, and the same one carrying more bytes per second
    more = replace(workload, mb_per_s=min(100_000, workload.mb_per_s * factor))

    # WHEN both are planned
    low, high = plan(workload), plan(more)

    # THEN the larger one never gets fewer shards or less memory, and never fewer pollers for
    # the same memory (more memory makes each batch faster, so it may need fewer invocations
    # in flight: 3 -> 6 MB/s of 6-byte records plans 512 MB and 8 pollers, then 1,769 MB and 5)
    assert high.shards >= low.shards
    assert high.memory_mb >= low.memory_mb
    if high.memory_mb == low.memory_mb:
        assert high.min_pollers >= low.min_pollers
        assert high.max_pollers >= low.max_pollers


def test_plan_more_memory_may_plan_fewer_pollers_for_more_throughput() -> None:
    # GIVEN a workload whose double needs more memory (found by the property above)
    workload = Workload(
        mb_per_s=3.0, record_bytes=6, partitions=36, rtt_ms=1.0, max_concurrency=1, timeout_s=1
    )

    # WHEN both are planned
    low, high = plan(workload), plan(replace(workload, mb_per_s=6.0))

    # THEN the faster function carries twice the load with fewer invocations in flight
    assert (low.memory_mb, high.memory_mb) == (512, 1_769)
    assert high.concurrency < low.concurrency
    assert high.min_pollers <= low.min_pollers


@settings(max_examples=150, deadline=None)
@given(workloads)
def test_plan_pollers_stay_within_partitions_and_aws_ranges(workload: Workload) -> None:
    # GIVEN any workload / WHEN it is planned
    result = plan(workload)

    # THEN 1 <= min <= max <= partitions, within MinimumPollers 1-200 and MaximumPollers 1-2,000
    assert 1 <= result.min_pollers <= result.max_pollers <= workload.partitions
    assert result.min_pollers <= 200
    assert result.max_pollers <= 2_000


@settings(max_examples=150, deadline=None)
@given(workloads)
def test_plan_batch_fits_an_invocation_and_the_timeout(workload: Workload) -> None:
    # GIVEN any workload / WHEN it is planned
    result = plan(workload)

    # THEN a batch fits the 6 MB payload and BatchSize 10,000, and is written within the
    # planned share of the timeout (unless even one record can't be)
    assert 1 <= result.batch_size <= 10_000
    assert result.batch_size * workload.event_bytes_per_record <= PLANNED_INVOCATION_BYTES
    assert result.batch_size == 1 or result.batch_seconds <= (
        workload.timeout_s * workload.utilization
    )
    assert result.batching_window_s in (0, 1)


@settings(max_examples=150, deadline=None)
@given(workloads)
def test_plan_shards_carry_the_target_within_utilization(workload: Workload) -> None:
    # GIVEN any workload / WHEN it is planned
    result = plan(workload)

    # THEN the shards take its bytes and records at no more than the planned utilization
    kinesis_bytes = workload.records_per_s * workload.kinesis_bytes_per_record
    usable = result.shards * workload.utilization
    assert kinesis_bytes <= usable * SHARD_WRITE_BYTES_PER_S * (1 + 1e-9)
    assert kinesis_records_per_s(workload) <= usable * SHARD_WRITE_RECORDS_PER_S * (1 + 1e-9)
    assert (result.stream_mode is StreamMode.ON_DEMAND) == (
        kinesis_bytes <= 4_000_000 * workload.utilization and result.shards <= 4
    )


@settings(max_examples=150, deadline=None)
@given(workloads)
def test_plan_bound_is_the_lowest_ceiling_and_decides_reachability(workload: Workload) -> None:
    # GIVEN any workload / WHEN it is planned
    result = plan(workload)

    # THEN the bound is the lowest stage, and the target is reachable exactly when it fits
    assert result.bound.max_mb_per_s == min(limit.max_mb_per_s for limit in result.limits)
    assert result.reachable == all(
        limit.max_mb_per_s >= workload.mb_per_s for limit in result.limits
    )
    assert 1 <= result.concurrency <= workload.partitions


def test_plan_hot_key_is_bounded_by_one_shard() -> None:
    # GIVEN 20 MB/s with 30 % on one key: that key alone needs 6 MB/s of one shard
    workload = Workload(mb_per_s=20, record_bytes=2_000, partitions=24, key_skew=0.3)

    # WHEN it is planned
    result = plan(workload)

    # THEN the bound is that key's shard, 1 MiB/s / 30 %, and the target is out of reach
    assert result.bound.stage == "hottest key's shard, bytes"
    assert result.bound.max_mb_per_s == pytest.approx(1.048576 * 2_000 / 2_016 / 0.3)
    assert not result.reachable


def test_plan_spread_keys_reach_twenty_mb_per_s() -> None:
    # GIVEN 20 MB/s of 2 KB records over 24 partitions, no key above 2 %
    workload = Workload(mb_per_s=20, record_bytes=2_000, partitions=24, key_skew=0.02)

    # WHEN it is planned
    result = plan(workload)

    # THEN it is reachable with 5-10 pollers (5 MB/s each at 80 %) and 25 provisioned shards
    assert result.reachable
    assert (result.min_pollers, result.max_pollers) == (5, 10)
    assert result.stream_mode is StreamMode.PROVISIONED
    assert result.shards == math.ceil(20e6 / 2_000 * 2_016 / (SHARD_WRITE_BYTES_PER_S * 0.8))
    assert result.batch_size == records_per_invocation(workload) == 6_000_000 // 2_868


def test_plan_aggregation_lifts_the_hot_key_round_trip_bound() -> None:
    # GIVEN a hot key (5 %) of small records, with and without aggregation
    off = Workload(mb_per_s=2, record_bytes=500, partitions=6, key_skew=0.05, aggregation=False)
    on = replace(off, aggregation=True)

    # WHEN both are planned
    without, with_aggregation = plan(off), plan(on)

    # THEN without it one record per 20 ms round trip bounds the key (50 records/s = 0.5 MB/s
    # overall); with it the run leaves whole and the target is reachable
    round_trips = next(x for x in without.limits if x.stage == "hottest key's round trips")
    assert round_trips.max_mb_per_s == pytest.approx(50 * 500 / 1e6 / 0.05)
    assert not without.reachable
    assert with_aggregation.reachable


def test_plan_slow_round_trips_cut_batches_to_the_timeout() -> None:
    # GIVEN a hot key without aggregation, slow round trips and a short timeout
    workload = Workload(
        mb_per_s=0.1,
        record_bytes=200,
        partitions=1,
        key_skew=1.0,
        aggregation=False,
        rtt_ms=100,
        timeout_s=10,
    )

    # WHEN it is planned
    result = plan(workload)

    # THEN each batch holds what 80 % of 10 s of round trips can write: 80 records
    assert result.batch_size == 79
    assert batch_seconds(workload, result.batch_size, result.memory_mb) <= 8
    assert any("cut to 79 records" in note for note in result.notes)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mb_per_s": 0}, "--mb-per-s must be above 0"),
        ({"mb_per_s": float("nan")}, "--mb-per-s must be above 0"),
        ({"record_bytes": 0}, "--record-bytes must be 1-10,485,760"),
        ({"record_bytes": 5_000_000}, "does not fit a 6 MB invocation once base64-encoded"),
        ({"partitions": 0}, "--partitions must be 1-100,000"),
        ({"key_skew": 1.5}, "--key-skew is a share of the traffic: 0-1"),
        ({"rtt_ms": 0}, "--rtt-ms must be above 0"),
        ({"max_concurrency": 65}, "--max-concurrency must be 1-64"),
        ({"utilization": 0.05}, "--utilization must be 0.1-1"),
        ({"timeout_s": 841}, "--timeout-s must be 1-840 (Kafka event source mappings take"),
    ],
)
def test_workload_refuses_bad_input_in_one_line(fields: dict[str, Any], message: str) -> None:
    # GIVEN / WHEN a workload with one bad value is made
    values: dict[str, Any] = {"mb_per_s": 1, "record_bytes": 100, "partitions": 1, **fields}
    with pytest.raises(PlanError) as raised:
        Workload(**values)

    # THEN one line names the option and what it takes
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


# -- warnings for synth --------------------------------------------------------------------


def test_config_warnings_max_pollers_above_partitions() -> None:
    warnings = config_warnings(max_pollers=10, min_pollers=8, partitions=6)
    assert warnings == [
        "maxPollers=10 is above the topic's 6 partitions: Lambda caps pollers at the partition"
        " count, so the extra can't help",
        "minPollers=8 is above the topic's 6 partitions: the pollers beyond one per partition"
        " have nothing to read",
    ]


def test_config_warnings_nothing_to_say_without_partitions_or_target() -> None:
    assert config_warnings(max_pollers=2_000, min_pollers=200) == []


def test_config_warnings_fitting_settings_say_nothing() -> None:
    # GIVEN the settings the planner itself proposes for a reachable target
    target = Workload(mb_per_s=20, record_bytes=2_000, partitions=24, key_skew=0.02)
    planned = plan(target)

    # WHEN they are checked against it
    warnings = config_warnings(
        max_pollers=planned.max_pollers,
        min_pollers=planned.min_pollers,
        stream_mode="provisioned",
        shard_count=planned.shards,
        batch_size=planned.batch_size,
        target=target,
    )

    # THEN nothing is flagged
    assert warnings == []


def test_config_warnings_small_provisioned_stream_and_too_few_pollers() -> None:
    # GIVEN a 2-shard stream and 2 pollers for 20 MB/s
    target = Workload(mb_per_s=20, record_bytes=2_000, partitions=24, key_skew=0.02)

    # WHEN checked
    warnings = config_warnings(
        max_pollers=2, stream_mode=StreamMode.PROVISIONED, shard_count=2, target=target
    )

    # THEN both are named with the numbers that make them too small
    assert warnings == [
        "a provisioned stream of 2 shards (2 MiB/s, 2,000 records/s) is too small for 20 MB/s of"
        " 2,000-byte records: it needs 25",
        "maxPollers=2 carries at most 10 MB/s (5 MB/s a poller), below the target 20 MB/s",
    ]


def test_config_warnings_on_demand_batch_size_and_out_of_reach() -> None:
    # GIVEN an on-demand stream, batchSize 10,000 of 2 KB records, and a hot key (30 %)
    target = Workload(mb_per_s=20, record_bytes=2_000, partitions=24, key_skew=0.3)

    # WHEN checked
    warnings = config_warnings(
        max_pollers=24, stream_mode="on_demand", batch_size=10_000, target=target
    )

    # THEN each problem is one line
    assert warnings == [
        "an on-demand stream starts at 4 MB/s of writes: 20 MB/s of 2,000-byte records throttles"
        " until it scales; warm it (warm throughput) or use a provisioned stream",
        "batchSize=10,000 can't be reached: a 6 MB invocation holds about 2,092 records of"
        " 2,000 bytes",
        "20 MB/s of 2,000-byte records is out of reach: hottest key's shard, bytes carries at"
        " most 3.5 MB/s",
    ]


# -- the command ---------------------------------------------------------------------------


def test_main_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN / WHEN the documented example is planned
    code = main(["--mb-per-s", "20", "--record-bytes", "2000", "--partitions", "24"])

    # THEN it prints the settings and the bound
    out = capsys.readouterr().out
    assert code == 0
    assert "minPollers=5, maxPollers=10" in out
    assert "provisioned, 25 shards" in out
    assert "bound: pollers" in out


def test_main_json_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--mb-per-s", "1", "--record-bytes", "100", "--partitions", "3", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["stream_mode"] == "provisioned"  # 10,000 records/s: more than 4 shards
    assert document["shards"] == 13
    assert document["reachable"] is True
    assert document["bound"]["stage"] == "partition order"  # 100-byte records: CPU-bound


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--record-bytes", "1", "--partitions", "1"], "required: --mb-per-s"),
        (["--mb-per-s", "x", "--record-bytes", "1", "--partitions", "1"], "invalid float"),
        (["--mb-per-s", "1", "--record-bytes", "1", "--partitions", "-3"], "--partitions"),
        (["--mb-per-s", "1", "--record-bytes", "1", "--partitions", "1", "--format", "x"], "x"),
    ],
)
def test_main_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN / WHEN the command gets a bad argument
    code = main(argv)

    # THEN it exits 2 with one line on stderr naming the problem, and prints no plan
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith("plan: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


@settings(max_examples=80, deadline=None)
@given(workloads)
def test_plan_pollers_ceiling_is_the_planned_max_pollers(workload: Workload) -> None:
    # GIVEN any workload / WHEN it is planned
    result = plan(workload)

    # THEN the pollers' ceiling is what the planned maxPollers carry, as the plan prints it
    (pollers,) = [limit for limit in result.limits if limit.stage == "pollers"]
    assert f"maxPollers={result.max_pollers:,} " in pollers.why
    assert pollers.max_mb_per_s <= result.max_pollers * 5 + 1e-9
    assert f"maxPollers={result.max_pollers}" in render(result)
    # AND a target the pollers can't carry is never for want of pollers the plan could add:
    # they are at their cap, or the busiest partition alone is over its one poller's 5 MB/s
    if pollers.max_mb_per_s < workload.mb_per_s:
        assert (
            result.max_pollers == min(workload.partitions, 2_000)
            or 5 / workload.hot_partition_share < workload.mb_per_s
        )


def test_main_out_of_reach_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a target one hot key's shard can't carry (30 % of 20 MB/s on one key)
    argv = ["--mb-per-s", "20", "--record-bytes", "2000", "--partitions", "24"]

    # WHEN it is planned, as text and as JSON
    code = main([*argv, "--key-skew", "0.3"])
    json_code = main([*argv, "--key-skew", "0.3", "--json"])

    # THEN both say so with exit status 1, and the plan is still printed
    out = capsys.readouterr().out
    assert (code, json_code) == (1, 1)
    assert "OUT OF REACH" in out
    assert '"reachable": false' in out


def test_main_without_arguments_shows_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN `make plan` with no PLAN_ARGS / WHEN it runs
    code = main([])
    # THEN it shows what it takes (on stderr) and exits 2
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "--mb-per-s" in captured.err and "example: make plan" in captured.err


def test_main_help_describes_every_option_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN / WHEN the help is shown
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    # THEN every option has a description, and every optional value its default
    parser = plan_parser()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, action.dest
        if not action.required and not isinstance(action.default, bool):
            assert f"{action.help} (default: {action.default})" in help_text, action.dest


def _plan_examples() -> dict[str, str]:
    """The PLAN_ARGS example as `make help`, the README and docs/scaling.md write it."""
    makefile = (ROOT / "Makefile").read_text()
    found = {}
    for name, text in {
        "Makefile": makefile,
        "README.md": (ROOT / "README.md").read_text(),
        "docs/scaling.md": (ROOT / "docs" / "scaling.md").read_text(),
    }.items():
        matches = set(re.findall(r'PLAN_ARGS="([^"]+)"', text))
        assert len(matches) == 1, (name, matches)
        found[name] = matches.pop()
    return found


def test_plan_example_is_the_same_everywhere_and_reachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the example each document shows / THEN it is one example, the planner's own
    examples = _plan_examples()
    assert set(examples.values()) == {EXAMPLE_ARGS}
    # AND it is a target the plan reaches (an example that exits 1 would teach nothing)
    assert main(EXAMPLE_ARGS.split()) == 0
    assert "the target is reachable" in capsys.readouterr().out
