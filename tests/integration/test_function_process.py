"""The function in a process of its own: warm between invocations, timed by its own answers,
killed at its timeout or by the crash fault, replaced afresh after a kill, and never left
behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from localloop.context import LambdaContext
from localloop.esm import (
    ExecutionEnvironment,
    FunctionInitError,
    FunctionKilledError,
    FunctionRaisedError,
)
from localloop.function_process import CrashFault, FunctionProcess, _read_exactly
from localloop.procs import wait_until
from tests.process_functions import SLEEPER, function_processes_of

pytestmark = pytest.mark.timeout(60)


def _context(timeout_s: float = 5.0) -> LambdaContext:
    return LambdaContext.start(function_name="f", timeout_s=timeout_s)


def _alive(pid: int) -> bool:
    return pid in function_processes_of(os.getpid())


def test_function_process_stays_warm_between_invocations() -> None:
    # GIVEN a function in its own process
    function = FunctionProcess({}, factory=SLEEPER)
    try:
        # WHEN it is invoked twice
        first = function({}, _context())
        second = function({}, _context())
    finally:
        function.close()

    # THEN the same process answered both, and remembered the first (a warm container)
    assert first == {"pid": function.pid, "calls": 1}
    assert second == {"pid": function.pid, "calls": 2}
    assert function.pid != os.getpid()
    # AND closing it ends the process
    assert not _alive(function.pid)


def test_function_process_is_killed_at_its_timeout() -> None:
    # GIVEN a function that would run 30 s, invoked with a 0.5 s timeout
    function = FunctionProcess({}, factory=SLEEPER)
    started = time.monotonic()

    # WHEN it is invoked / THEN its process is killed at the timeout, as Lambda stops it
    with pytest.raises(FunctionKilledError) as killed:
        function({"sleep_s": 30}, _context(timeout_s=0.5))
    assert killed.value.kind == "Timeout"
    assert time.monotonic() - started < 5
    assert not _alive(function.pid)


def test_function_process_stamps_its_answer_and_an_answer_after_the_deadline_is_a_timeout() -> None:
    # GIVEN a function in its own process
    function = FunctionProcess({}, factory=SLEEPER)
    try:
        # WHEN it answers in time / THEN its answer carries the moment it left the child
        before = time.monotonic()
        function({}, _context())
        assert function.answered_at is not None
        assert before <= function.answered_at <= time.monotonic()

        # WHEN it answers just after its deadline (within the time the emulator waits for an
        # answer to cross the pipe)
        with pytest.raises(FunctionKilledError) as killed:
            function({"sleep_s": 0.45}, _context(timeout_s=0.4))
    finally:
        function.close()

    # THEN that answer never counts: a timeout, the environment spent, as Lambda stops it
    assert killed.value.kind == "Timeout"
    assert function.answered_at is None
    assert not _alive(function.pid)


def test_function_process_reads_an_answer_that_came_while_the_emulator_was_paused() -> None:
    # GIVEN an answer already in the pipe, and an emulator that looks only after its deadline
    # (paused meanwhile: a collection of its heap, a busy core)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"answer")
        late = time.monotonic() - 1.0
        # WHEN it reads / THEN it takes what is there (the answer's stamp judges its time)...
        assert _read_exactly(read_end, 6, late) == b"answer"
        # ...and with nothing there it gives up at once
        with pytest.raises(TimeoutError):
            _read_exactly(read_end, 1, late)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_function_process_crash_kills_the_process_mid_invocation() -> None:
    # GIVEN the crash fault picking every invocation, and a function that runs 30 s
    function = FunctionProcess({}, factory=SLEEPER, crash=CrashFault(1.0, seed=3))

    # WHEN it is invoked / THEN it is killed long before it could answer
    with pytest.raises(FunctionKilledError) as killed:
        function({"sleep_s": 30}, _context(timeout_s=20))
    assert killed.value.kind == "Crash"
    assert "crash fault" in str(killed.value)
    assert not _alive(function.pid)


def test_function_process_reports_its_init_error_and_a_raise() -> None:
    # GIVEN a function whose init raises / THEN making it is an init error naming the cause
    with pytest.raises(FunctionInitError, match="RuntimeError: refused at init"):
        FunctionProcess({"FAIL_INIT": "1"}, factory=SLEEPER)
    assert function_processes_of(os.getpid()) == []

    # GIVEN a function that raises in an invocation
    function = FunctionProcess({}, factory=SLEEPER)
    try:
        # WHEN it raises / THEN the error is the function's, and the process serves on
        with pytest.raises(FunctionRaisedError, match="ValueError: asked to raise"):
            function({"raise": True}, _context())
        assert function({}, _context())["calls"] == 2  # type: ignore[index]
    finally:
        function.close()


def test_execution_environment_starts_afresh_after_a_crash() -> None:
    # GIVEN an environment whose first process crashes at its first invocation
    crashes = [CrashFault(1.0, seed=1), None]
    environment = ExecutionEnvironment(
        lambda: FunctionProcess({}, factory=SLEEPER, crash=crashes.pop(0))
    )
    try:
        with pytest.raises(FunctionKilledError):
            environment({"sleep_s": 30}, _context(timeout_s=20))
        # WHEN it is invoked again
        answer = environment({}, _context())
    finally:
        environment.close()

    # THEN a new process answered, with nothing remembered of the first
    assert answer["calls"] == 1  # type: ignore[index]
    assert function_processes_of(os.getpid()) == []


def test_function_process_dies_with_a_killed_emulator() -> None:
    # GIVEN an emulator process holding a function process mid-invocation
    script = (
        "import sys, time\n"
        "from localloop.context import LambdaContext\n"
        "from localloop.function_process import FunctionProcess\n"
        f"function = FunctionProcess({{}}, factory={SLEEPER!r})\n"
        "print(function.pid, flush=True)\n"
        "function({'sleep_s': 60}, LambdaContext.start(function_name='f', timeout_s=60))\n"
    )
    emulator = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ}, text=True
    )
    assert emulator.stdout is not None
    child = int(emulator.stdout.readline())
    assert child in function_processes_of(emulator.pid)

    # WHEN the emulator is killed outright (no chance to stop its children)
    os.kill(emulator.pid, signal.SIGKILL)
    emulator.wait()

    # THEN its function process does not outlive it
    wait_until(
        lambda: not os.path.exists(f"/proc/{child}") or _zombie(child),
        timeout_s=10,
        what="the orphaned function process to exit",
    )


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
