"""`make demo` itself, small: its own servers, the real sink behind the fault proxy, the audit."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localloop import demo
from localloop.scenarios import KEEP_POISON_FAILURES
from tests.process_functions import function_processes_of

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The demo points the root logger at its log file, as a program may: put it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_demo_delivers_and_audits_a_small_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a small demo under the default faults, with stderr captured (not a terminal)
    argv = ["--records", "400", "--partitions", "2", "--workdir", str(tmp_path)]

    # WHEN it runs
    code = demo.main(argv, {})

    # THEN it verifies every record and ends with the key=value summary line
    out, err = capsys.readouterr()
    summary = dict(item.split("=", 1) for item in out.strip().splitlines()[-1].split())
    assert code == 0
    assert (summary["records"], summary["delivered"], summary["lost"]) == ("400", "400", "0")
    assert (summary["out_of_order"], summary["corrupted"], summary["ok"]) == ("0", "0", "true")
    assert int(summary["records_per_s"]) > 0
    # ...and how late the records reached the stream, from their Kafka timestamps
    assert 0 <= int(summary["delay_p50_ms"]) <= int(summary["delay_p99_ms"])
    # AND no progress bar was drawn into the captured stderr
    assert "\r" not in err
    assert "rec/s" not in err
    # AND the function's log lines went to the run's log file, not the terminal
    assert "invocation summary" in (tmp_path / "logs" / "function.log").read_text()


def _summary(out: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in out.strip().splitlines()[-1].split())


def _run_story(
    story: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, dict[str, str]]:
    """A story of the demo on a small workload (its largest values are still over the stories'
    small record limit): its exit status, its report and its summary line."""
    code = demo.main(
        [story, "--records", "1500", "--partitions", "2", "--workdir", str(tmp_path)], {}
    )
    out, _ = capsys.readouterr()
    return code, out, _summary(out)


# lost, out_of_order, corrupted and ok of a run where every record arrived, in order.
ALL_THERE = ("0", "0", "0", "true")


def _outcome(summary: dict[str, str]) -> tuple[str, ...]:
    return tuple(summary[name] for name in ("lost", "out_of_order", "corrupted", "ok"))


@pytest.mark.usefixtures("root_logging")
def test_demo_replay_story_puts_back_what_was_dead_lettered_and_discarded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN / WHEN the replay story runs
    code, out, summary = _run_story("--replay", tmp_path, capsys)

    # THEN records were dead-lettered and a batch discarded, the replay put them all back, and
    # the audit explains every record the offset rule drops by the replay's ordering caveat
    assert code == 0, out
    assert int(summary["dead_lettered"]) > 0
    assert int(summary["discarded"]) > 0
    assert int(summary["replayed"]) > 0
    assert _outcome(summary) == ALL_THERE
    assert "docs/replay.md#the-ordering-caveat" in out
    # AND each dead letter has its log line: topic, partition, offset, size and reason
    dead = [
        line
        for line in (tmp_path / "logs" / "function.log").read_text().splitlines()
        if "record dead-lettered" in line
    ]
    assert len(dead) >= int(summary["dead_lettered"])
    for field in ("'topic':", "'partition':", "'offset':", "'size':", "MAX_RECORD_BYTES"):
        assert all(field in line for line in dead), field
    # AND the replay's own output is kept
    assert "mode=apply" in (tmp_path / "logs" / "replay.log").read_text()


@pytest.mark.usefixtures("root_logging")
def test_demo_keep_story_claim_checks_waits_out_the_poison_and_gives_nothing_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN / WHEN the keep story runs: the replay story's workload, record limit and poisoned
    # record, under failureMode=block and OVERSIZE_RECORDS=claim_check
    code, out, summary = _run_story("--keep", tmp_path, capsys)

    # THEN nothing was dead-lettered, discarded, lost or reordered: the run passed...
    kept = (code, summary["dead_lettered"], summary["discarded"], _outcome(summary))
    assert kept == (0, "0", "0", ALL_THERE), out
    # ...with the oversize records in the stream as claim checks the audit resolved
    assert int(summary["claim_checks"]) > 0
    # AND the poisoned record was refused its full count, its partition retried by the mapping
    # (not given up) until the poison lifted
    assert f"poisoned={KEEP_POISON_FAILURES} " in out
    assert int(summary["retries"]) > 0
    assert "(the audit resolved them: 0 could not be)" in out
    assert "failureMode=block: no on-failure destination" in out


@pytest.mark.usefixtures("root_logging")
def test_demo_with_crashes_loses_nothing_and_leaves_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the default faults plus a crash in a quarter of the invocations
    argv = ["--records", "800", "--partitions", "3", "--batch-size", "100"]

    # WHEN the demo runs
    code = demo.main([*argv, "--workdir", str(tmp_path)], {"FAULTS": "default,crash=0.25"})

    # THEN processes were killed, and nothing was lost or reordered
    summary = _summary(capsys.readouterr().out)
    assert code == 0
    assert int(summary["crashes"]) > 0
    assert (summary["lost"], summary["out_of_order"], summary["ok"]) == ("0", "0", "true")
    # AND no function process outlived the run
    assert function_processes_of(os.getpid()) == []
