"""An unreachable broker: the emulator's and the auditor's command lines say so in one line,
with librdkafka's own logging quiet and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from localloop.procs import free_port

pytestmark = pytest.mark.timeout(120)


def test_unreachable_broker_is_one_line_naming_the_address() -> None:
    # GIVEN a loopback port nothing listens on
    address = f"127.0.0.1:{free_port()}"
    common = ["--bootstrap", address, "--topic", "orders", "--stream", "orders-mirror"]

    # WHEN the emulator and the auditor are pointed at it (real processes: librdkafka writes to
    # the process's stderr directly when it is not quieted)
    commands = {
        "localloop": [sys.executable, "-m", "localloop", *common],
        "localloop.audit": [sys.executable, "-m", "localloop.audit", *common],
    }
    running = {
        name: subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ}
        )
        for name, argv in commands.items()
    }
    results = {name: (proc.wait(timeout=60), *proc.communicate()) for name, proc in running.items()}

    # THEN each exits 2 with at most three lines, naming the address, without a traceback
    for name, (status, out, err) in results.items():
        lines = (out + err).strip().splitlines()
        assert status == 2, (name, lines)
        assert 1 <= len(lines) <= 3, (name, lines)
        assert address in err, (name, lines)
        assert "Traceback" not in err and "FAIL" not in err, (name, lines)
