"""Child processes on loopback ports: start, wait until ready (bounded), always stop."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

LOOPBACK: Final = "127.0.0.1"
# How long a local server may take to accept connections before we call it broken.
DEFAULT_READY_TIMEOUT_S: Final = 30.0
# How long a child gets to exit after SIGTERM before it is killed.
STOP_GRACE_S: Final = 5.0
_POLL_INTERVAL_S: Final = 0.05


# A port free_port() picked may be taken by another program before the child binds it: retry.
PORT_ATTEMPTS: Final = 3


class ProcessFailedError(RuntimeError):
    """A local server exited early or did not become ready in time."""


class ProcessExitedError(ProcessFailedError):
    """A local server exited before it became ready (for example: its port was taken)."""


def free_port() -> int:
    """A TCP port on loopback that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll `ready` until it is true; fail after `timeout_s` or as soon as `alive` turns false."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return
        if not alive():
            raise ProcessExitedError(f"{what} exited before it became ready")
        if time.monotonic() >= deadline:
            raise ProcessFailedError(f"{what} was not ready after {timeout_s:.0f} s")
        time.sleep(_POLL_INTERVAL_S)


class ManagedProcess:
    """A child process whose lifetime is a `with` block; its output goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path | None = None) -> None:
        self.name = name
        self._argv = list(argv)
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("wb")
        sink = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Its own process group, so a Ctrl-C aimed at us does not kill it before we stop it.
            start_new_session=True,
            env={**os.environ},
        )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_GRACE_S)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_on_free_port(
    launch: Callable[[int], ManagedProcess],
    ready: Callable[[int], bool],
    *,
    what: str,
    port: int | None = None,
    timeout_s: float = DEFAULT_READY_TIMEOUT_S,
) -> tuple[ManagedProcess, int]:
    """Start `launch(port)` and wait until `ready(port)`; on an early exit, try another port."""
    attempts = 1 if port is not None else PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        process = launch(chosen)
        process.start()
        try:
            wait_until(
                functools.partial(ready, chosen),
                timeout_s=timeout_s,
                what=what,
                alive=process.alive,
            )
        except ProcessExitedError:
            process.stop()
            if attempt == attempts:
                raise
            continue
        except BaseException:
            process.stop()
            raise
        return process, chosen
    raise AssertionError("unreachable")  # pragma: no cover


class LocalServer:
    """A server process on a free loopback port for the lifetime of a `with` block.

    Subclasses say how to launch it on a port and how to tell it is ready.
    """

    what = "server"

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        self._requested_port = port
        self._log_path = log_path
        self._process: ManagedProcess | None = None
        self.port = 0
        self.startup_s = 0.0

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (for resource accounting)."""
        return None if self._process is None else self._process.pid

    def _launch(self, port: int) -> ManagedProcess:
        raise NotImplementedError

    def _ready(self, port: int) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        started = time.monotonic()
        self._process, self.port = start_on_free_port(
            self._launch, self._ready, what=self.what, port=self._requested_port
        )
        self.startup_s = time.monotonic() - started
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.stop()
