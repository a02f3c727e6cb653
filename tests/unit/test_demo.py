"""`make demo`'s own behaviour, without servers: input mistakes, the report, progress bars."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from localloop import demo
from localloop.audit import AuditReport, Replayed
from localloop.esm import EsmStats
from localloop.proxy import ProxyStats
from localloop.scenarios import KEEP, REPLAY, SMALL_MAX_RECORD_BYTES, ReplayResult, poison_key
from localloop.workload import WorkloadSpec, generate
from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES
from msk_kinesis_sink.settings import OversizeRecords, Settings


@pytest.mark.parametrize(
    ("environ", "argv", "message"),
    [
        (
            {"AGGREGATION": "yes"},
            [],
            "configuration error: AGGREGATION='yes' is not one of: off, on",
        ),
        ({"RECORDS": "abc"}, [], "configuration error: RECORDS='abc' is not a whole number"),
        (
            {"FAULTS": "trottle=0.1"},
            [],
            "configuration error: FAULTS='trottle=0.1' is not a fault spec: unknown fault"
            " 'trottle' (did you mean throttle?)",
        ),
        (
            {"KINESIS_TIMEOUT_SECONDS": "0"},
            [],
            "configuration error: KINESIS_TIMEOUT_SECONDS=0 is out of range",
        ),
        ({}, ["--records", "0"], "configuration error: --records='0' is out of range"),
        (
            {"FAULTS": "default,crash=2"},
            [],
            "configuration error: FAULTS='default,crash=2' is not a fault spec: crash=2 must be a"
            " probability between 0 and 1",
        ),
        (
            {"MAX_RECORD_BYTES": "12"},
            ["--replay"],
            "configuration error: MAX_RECORD_BYTES=12 is out of range",
        ),
        (
            {},
            ["--replay", "--routes"],
            "configuration error: --replay and --routes are separate stories",
        ),
        (
            {"FAILURE_MODE": "block"},
            ["--replay"],
            "configuration error: --replay needs failureMode=divert",
        ),
        (
            {},
            ["--keep", "--replay"],
            "configuration error: --replay and --keep are separate stories",
        ),
        (
            {"FAILURE_MODE": "divert"},
            ["--keep"],
            "configuration error: --keep needs failureMode=block",
        ),
    ],
)
def test_demo_input_mistake_is_one_line_and_starts_nothing(
    environ: dict[str, str],
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a mistake in a variable `make demo` passes on, or in an option
    # WHEN the demo starts
    code = demo.main([*argv, "--workdir", str(tmp_path / "demo")], environ)

    # THEN it exits 2 with one line on stderr naming the problem, before starting anything
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(message)
    assert not (tmp_path / "demo").exists()


def test_demo_option_mistake_is_one_line_without_usage(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an option argparse itself refuses
    # WHEN the demo parses it
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--batch-size", "20000"], {})

    # THEN it exits 2 with one line, no usage block
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.splitlines() == [
        "configuration error: argument --batch-size: '20000' is out of range (allowed: 1-10000)"
    ]


def test_demo_takes_the_command_line_over_the_environment() -> None:
    # GIVEN RECORDS and FAULTS in the environment, and --records on the command line
    environ = {"RECORDS": "abc", "FAULTS": "none", "SEED": "7"}

    # WHEN the demo's inputs are read
    args = demo._parse(["--records", "300"], environ)

    # THEN the option wins over the (bad) variable, and the other variables are used
    assert (args.records, args.seed, args.faults.describe()) == (300, 7, "none")
    # AND the function's AGGREGATION is left to the function's default when not given
    assert "AGGREGATION" not in demo.function_env(args, environ, "http://127.0.0.1:1")


def _audit_report(*, delivered: int) -> AuditReport:
    return AuditReport(
        records=1000,
        stream_records=delivered,
        delivered=delivered,
        lost=1000 - delivered,
        out_of_order=0,
        duplicates=0,
        corrupted=0,
        unexpected=0,
        undecodable=0,
        keys=10,
        partitions=2,
        shards=2,
    )


def _text(report: AuditReport, esm: EsmStats, **more: Any) -> str:
    """The demo's report of a run that delivered in 0.5 s, 2 MB of values."""
    return demo.report_text(
        report=report,
        esm=esm,
        proxy=ProxyStats(),
        value_mb=2.0,
        produce_s=1.0,
        esm_s=0.5,
        audit_s=0.1,
        total_s=2.0,
        workdir=Path(".demo"),
        **{"discarded_docs": 2, **more},
    )


def _report(*, delivered: int, delays: Sequence[float] = ()) -> str:
    return _text(
        _audit_report(delivered=delivered),
        EsmStats(invocations=4, function_errors=4, init_errors=4, records_discarded=1000),
        delivery_delays_ms=delays,
    )


def test_demo_report_gives_no_rate_when_nothing_was_delivered() -> None:
    # GIVEN a run that delivered nothing (every init failed, every batch discarded)
    # WHEN its report is written
    text = _report(delivered=0)

    # THEN no records/s appears anywhere, and the summary says what happened
    assert "records/s" not in text
    summary = dict(item.split("=", 1) for item in text.splitlines()[-1].split())
    assert "records_per_s" not in summary
    assert "mb_per_s" not in summary
    assert (summary["delivered"], summary["lost"], summary["ok"]) == ("0", "1000", "false")
    assert "4 errors (4 at init)" in text


def test_demo_report_rate_counts_delivered_records_only() -> None:
    # GIVEN a run that delivered half of its records in 0.5 s
    # WHEN its report is written
    summary = dict(item.split("=", 1) for item in _report(delivered=500).splitlines()[-1].split())

    # THEN the rate is 500 / 0.5 s, and MB/s is the delivered share of the values
    assert summary["records_per_s"] == "1000"
    assert summary["mb_per_s"] == "2.0"


def test_demo_report_gives_the_delivery_delay_percentiles_of_every_record() -> None:
    # GIVEN a run whose 100 delivered records reached the stream 1..100 s after their Kafka
    # timestamps, in no particular order
    delays = [float(ms) for ms in reversed(range(1_000, 100_001, 1_000))]
    # WHEN its report is written
    text = _report(delivered=100, delays=delays)
    summary = dict(item.split("=", 1) for item in text.splitlines()[-1].split())
    # THEN the summary line and the report give their p50 and p99 (nearest rank)
    assert (summary["delay_p50_ms"], summary["delay_p99_ms"]) == ("50000", "99000")
    assert "delay      p50 50.0 s, p99 99.0 s" in text
    # ...and a run that wrote nothing has none
    summary = dict(item.split("=", 1) for item in _report(delivered=0).splitlines()[-1].split())
    assert "delay_p50_ms" not in summary and "delay_p99_ms" not in summary


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty", [False, True])
def test_demo_progress_bars_only_on_a_terminal(tty: bool) -> None:
    # GIVEN stderr that is a terminal, or not (a pipe, a CI log)
    stream = _Stream(tty=tty)

    # WHEN a progress bar counts records
    with demo.progress("deliver ", 10, stream=stream) as bar:
        bar.update(10)

    # THEN it is drawn on a terminal only
    assert ("deliver" in stream.getvalue()) is tty


def test_demo_passes_max_record_bytes_on_and_the_replay_story_starts_small() -> None:
    # GIVEN the plain demo and the replay story, with and without MAX_RECORD_BYTES
    def limit(argv: list[str], environ: dict[str, str]) -> str | None:
        args = demo._parse(argv, environ)
        return demo.function_env(args, environ, "http://127.0.0.1:1").get("MAX_RECORD_BYTES")

    # WHEN their function settings are made / THEN the variable is passed on, and wins over
    # the replay story's small default
    assert limit([], {}) is None
    assert limit([], {"MAX_RECORD_BYTES": "300000"}) == "300000"
    assert limit(["--replay"], {}) == str(SMALL_MAX_RECORD_BYTES)
    assert limit(["--replay"], {"MAX_RECORD_BYTES": "300000"}) == "300000"
    # AND the replay raises it to the function's default
    assert REPLAY.replay_env is not None
    assert REPLAY.replay_env["MAX_RECORD_BYTES"] == str(DEFAULT_MAX_RECORD_BYTES)


def test_poison_key_is_a_small_record_with_a_key_of_its_own() -> None:
    # GIVEN the demo's workload
    spec = WorkloadSpec(records=3000, partitions=6, seed=1)

    # WHEN the replay story picks the record Kinesis refuses
    key = poison_key(spec)

    # THEN exactly one record has that key, and it is small (discarded, never dead-lettered)
    (record,) = [r for r in generate(spec) if r.key == key.encode()]
    assert len(record.value or b"") <= 1024


def test_demo_report_of_the_replay_story_counts_replayed_and_caveat() -> None:
    # GIVEN a replay story whose audit found 5 replayed records, 2 behind newer ones of their keys
    audit = dataclasses.replace(_audit_report(delivered=1000), replayed=5, out_of_order_replayed=2)
    result = ReplayResult(
        dry_run={"objects": "3", "records": "5", "failed": "0"},
        applied={"published": "5", "failed": "0", "marked": "3"},
        status=0,
        replayed=Replayed(frozenset(), 0.0),
    )

    # WHEN its report is written, the mapping having discarded 3 of them
    text = _text(
        audit,
        EsmStats(invocations=4, records_discarded=3, crashes=1, function_errors=1),
        discarded_docs=1,
        dead_lettered=2,
        replay=demo.ReplayReport(5, result),
        s3=demo.S3Places("s3://b/records/"),
    )

    # THEN the run passes (what was discarded was put back), and the summary says what happened
    summary = dict(item.split("=", 1) for item in text.splitlines()[-1].split())
    assert (summary["replayed"], summary["out_of_order_replayed"]) == ("5", "2")
    assert (summary["dead_lettered"], summary["crashes"], summary["ok"]) == ("2", "1", "true")
    assert "docs/replay.md#the-ordering-caveat" in text
    # AND a failed replay fails the run
    failed = dataclasses.replace(result, status=1)
    assert not demo._ok(audit, EsmStats(records_discarded=3), {}, demo.ReplayReport(5, failed))


def test_demo_keep_story_claim_checks_what_the_replay_story_dead_letters() -> None:
    # GIVEN the keep story's inputs and the replay story's
    def settings(argv: list[str]) -> Settings:
        args = demo._parse(argv, {})
        return Settings.from_env(demo.function_env(args, {}, "http://127.0.0.1:1"))

    keep, replay = settings(["--keep"]), settings(["--replay"])

    # WHEN their function settings are made / THEN both have the small limit, and only the
    # keep story claim-checks what is over it
    assert keep.max_record_bytes == replay.max_record_bytes == SMALL_MAX_RECORD_BYTES
    assert (keep.oversize_records, replay.oversize_records) == (
        OversizeRecords.CLAIM_CHECK,
        OversizeRecords.DEAD_LETTER,
    )
    # AND its poison lifts (block waits for it), the replay story's never does
    assert KEEP.poison_one_record and REPLAY.poison_one_record
    assert (KEEP.poison_failures > 0, REPLAY.poison_failures) == (True, 0)


def test_demo_report_of_the_keep_story_counts_claim_checks_and_fails_on_a_dead_letter() -> None:
    # GIVEN a keep story whose audit resolved 4 claim checks, nothing lost
    audit = dataclasses.replace(_audit_report(delivered=1000), claim_checks=4)
    places = demo.S3Places("s3://b/records/", "s3://b/claim-checks/")

    # WHEN its report is written
    text = _text(audit, EsmStats(invocations=6, retries=2), s3=places, has_destination=False)

    # THEN the summary counts the claim checks, nothing dead-lettered or discarded, and passes
    summary = dict(item.split("=", 1) for item in text.splitlines()[-1].split())
    assert (summary["claim_checks"], summary["dead_lettered"], summary["discarded"]) == (
        "4",
        "0",
        "0",
    )
    assert summary["ok"] == "true"
    assert "4 records kept whole in s3://b/claim-checks/" in text
    assert "discarded  0 records (failureMode=block: no on-failure destination" in text
    # AND a dead letter no replay put back fails the run, even with nothing lost
    dead = _text(audit, EsmStats(invocations=6), s3=places, dead_lettered=1)
    assert dead.splitlines()[-1].endswith("ok=false")
    assert "verdict    FAILED" in dead
