"""`make demo` itself, small: its own servers, the real sink behind the fault proxy, the audit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from localloop import demo

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
