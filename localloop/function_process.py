"""The function in a process of its own, as Lambda runs it: killed at its timeout, or by a crash.

A `FunctionProcess` is one execution environment: a child Python process that initialises the
real sink (`SinkFunction`) and serves invocations over its stdin and stdout, one length-prefixed
JSON frame each way. The emulator kills it (SIGKILL) when its timeout has passed without an
answer, or, with the crash fault, at a random point of an invocation; the mapping then starts a
fresh process for the next invocation, with nothing remembered (as Lambda replaces an
environment). The child dies with its parent, so a killed emulator leaves no process behind.

The child stamps each answer with the moment it left (`answered_at`, time.monotonic(): one clock
for every process of the machine), and that stamp, not the moment the emulator reads it, says
whether the function answered in time: the emulator's own pauses (a collection of its heap, a
busy core) are not the function's time, as Lambda's are not.

`python -m localloop.function_process PARENT_PID` is the child's side.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

from localloop.context import LambdaContext
from localloop.esm import FunctionInitError, FunctionKilledError, FunctionRaisedError
from localloop.kinesis_local import REPO_ROOT
from localloop.logs import LOG_FORMAT, ExtrasFormatter

# Lambda gives an environment's init phase 10 s; then the invocation fails with an init error.
INIT_TIMEOUT_S: Final = 10.0
# Time for an answer to cross the pipe once the function returned at its deadline.
ANSWER_MARGIN_S: Final = 0.1
# How long a child may take to exit once its input is closed, before it is killed.
CLOSE_GRACE_S: Final = 5.0
# Before any invocation has been timed: what the crash fault takes as a typical duration.
DEFAULT_TYPICAL_S: Final = 1.0
# What the child runs: the real sink, `SinkFunction(env)`.
SINK_FACTORY: Final = "localloop.function:SinkFunction"
_FRAME_HEADER: Final = struct.Struct(">I")
_PR_SET_PDEATHSIG: Final = 1

log = logging.getLogger("localloop.function")


class CrashFault:
    """Which invocations the emulator kills, and when.

    Each invocation is picked with probability `probability`; its kill time is drawn uniformly
    from zero to a typical invocation's duration (a moving average of answered ones). A kill time
    past the function's answer kills it as it answers: the work is done, the answer is lost.
    Shared by the pollers of a mapping (thread-safe); seeded, so a run's draws repeat.
    """

    def __init__(self, probability: float, *, seed: int) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError("crash probability must be between 0 and 1")
        self.probability = probability
        self._rng = random.Random(seed)
        self._typical_s = DEFAULT_TYPICAL_S
        self._lock = threading.Lock()

    def kill_after(self) -> float | None:
        """Seconds into the next invocation at which to kill it, or None to let it run."""
        with self._lock:
            if self._rng.random() >= self.probability:
                return None
            return self._rng.uniform(0.0, self._typical_s)

    def observe(self, seconds: float) -> None:
        """An invocation answered after `seconds`."""
        with self._lock:
            self._typical_s = 0.8 * self._typical_s + 0.2 * seconds


class FunctionProcess:
    """One execution environment: the sink initialised in a child process, invoked over pipes.

    Raises FunctionInitError when the child can not initialise the sink; each call returns the
    function's response, or raises FunctionRaisedError (it raised) or FunctionKilledError (its
    process was killed, or exited, before it answered: the environment is then spent).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        crash: CrashFault | None = None,
        log_path: Path | None = None,
        log_level: str = "INFO",
        on_stats: Callable[[dict[str, Any]], object] | None = None,
        factory: str = SINK_FACTORY,
    ) -> None:
        """`factory` ("module:name"): what the child calls with `env` to make the function; the
        real sink unless a test gives another."""
        self._crash = crash
        self._on_stats = on_stats
        # When the last answer left the child (its stamp); None before one, or after a failure.
        self.answered_at: float | None = None
        self._log: IO[bytes] | None = None
        if log_path is not None:
            self._log = log_path.open("ab")  # appends beside the emulator's own lines
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "localloop.function_process", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,  # None: the emulator's own stderr
            bufsize=0,
            env=_child_environment(),
            # Out of the terminal's process group: a Ctrl-C reaches the emulator, which stops it.
            start_new_session=True,
        )
        try:
            self._send({"env": dict(env), "log_level": log_level, "factory": factory})
            answer = self._receive(time.monotonic() + INIT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            self.kill()
            raise FunctionInitError(f"the function's process did not initialise: {error}") from None
        if answer is None or "init_error" in answer:
            self.kill()
            why = "its process exited" if answer is None else answer["init_error"]
            raise FunctionInitError(why)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        started = time.monotonic()
        self.answered_at = None
        kill_after = None if self._crash is None else self._crash.kill_after()
        answer_by = context.deadline_monotonic + ANSWER_MARGIN_S
        crash_at = None if kill_after is None else started + kill_after
        answer: dict[str, Any] | None
        try:
            self._send({"event": event, "context": asdict(context)})
            answer = self._receive(answer_by if crash_at is None else min(answer_by, crash_at))
        except (OSError, TimeoutError):
            answer = None if self._proc.poll() is not None else {}
        if kill_after is not None and started + kill_after <= answer_by:
            self.kill()
            raise FunctionKilledError(
                "Crash",
                f"the function's process was killed {kill_after * 1000:.0f} ms into the"
                " invocation (crash fault)",
            )
        if answer is None:
            status = self.kill()
            raise FunctionKilledError("Crash", f"the function's process exited ({status})")
        if not answer:
            self.kill()
            raise FunctionKilledError(
                "Timeout", "the function ran past its timeout: its process was killed"
            )
        if "error" in answer:
            raise FunctionRaisedError(answer["error"])
        answered_at = float(answer["answered_at"])
        if answered_at > context.deadline_monotonic:
            # Lambda stops a function at its deadline: an answer after it never arrives.
            self.kill()
            raise FunctionKilledError(
                "Timeout", "the function answered after its timeout: its process was killed"
            )
        self.answered_at = answered_at
        if self._crash is not None:
            self._crash.observe(time.monotonic() - started)
        if self._on_stats is not None and answer.get("stats") is not None:
            self._on_stats(answer["stats"])
        return answer.get("response")

    def close(self) -> None:
        """Let the child close the sink and exit (its input ends), then make sure it is gone."""
        if self._proc.poll() is None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=CLOSE_GRACE_S)
        self.kill()

    def kill(self) -> str:
        """SIGKILL the child (if it still runs) and reap it; returns how it ended."""
        if self._proc.poll() is None:
            self._proc.kill()
        status = self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._log):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return f"signal {-status}" if status < 0 else f"status {status}"

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self._proc.stdin is not None
        _write_frame(self._proc.stdin, message)

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next frame from the child; None when it exited; TimeoutError at `deadline`."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        header = _read_exactly(fd, _FRAME_HEADER.size, deadline)
        if header is None:
            return None
        # The frame has started: its rest follows at once (the child writes it in one go).
        rest_by = max(deadline, time.monotonic() + ANSWER_MARGIN_S)
        body = _read_exactly(fd, _FRAME_HEADER.unpack(header)[0], rest_by)
        if body is None:
            return None
        message: dict[str, Any] = json.loads(body)
        return message


def _child_environment() -> dict[str, str]:
    """The emulator's environment, with the repository on the import path: the child imports
    `localloop` wherever the emulator was started from."""
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _read_exactly(fd: int, size: int, deadline: float) -> bytes | None:
    """`size` bytes from `fd`, or None at its end; TimeoutError when `deadline` passes first.

    What is already there is read even past `deadline`: the emulator may have been paused while
    the answer came."""
    data = bytearray()
    while len(data) < size:
        left = max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no answer in time")
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _write_frame(stream: BinaryIO | IO[bytes], message: Mapping[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    stream.write(_FRAME_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame (blocking), or None when the input has ended."""
    header = stream.read(_FRAME_HEADER.size)
    if len(header) < _FRAME_HEADER.size:
        return None
    size = _FRAME_HEADER.unpack(header)[0]
    body = stream.read(size)
    if len(body) < size:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


# -- the child's side -------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel SIGKILLs this process when the thread that started it ends. Everywhere:
    the loop below ends when the parent's pipe closes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def serve(parent_pid: int) -> int:
    """Initialise the sink, then answer invocations until the input ends."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator decides when this process ends
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed goes with the logs, never into the answers
    requests = sys.stdin.buffer
    init = _read_frame(requests)
    if init is None:
        return 0
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtrasFormatter(LOG_FORMAT))
    logging.basicConfig(level=str(init["log_level"]).upper(), handlers=[handler], force=True)
    try:
        # The function's imports belong to the init phase, as in Lambda.
        module, _, name = str(init["factory"]).partition(":")
        function = getattr(importlib.import_module(module), name)(init["env"])
    except Exception as exc:
        _write_frame(answers, {"init_error": f"{type(exc).__name__}: {exc}"})
        return 1
    _write_frame(answers, {"ready": True})
    while (request := _read_frame(requests)) is not None:
        context = LambdaContext(**request["context"])
        try:
            response = function(request["event"], context)
        except Exception as exc:
            log.exception("function raised: the whole batch will be retried")
            _write_frame(answers, {"error": f"{type(exc).__name__}: {exc}"})
            continue
        stats = function.last_stats() if hasattr(function, "last_stats") else None
        answer = {"response": response, "stats": stats, "answered_at": time.monotonic()}
        _write_frame(answers, answer)
    if hasattr(function, "close"):
        function.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
