"""The local endpoints a run publishes to, all on loopback.

`kinesalite`; `stub` and `stub15` (an instant answer, after 0 or 15 ms); and the harness pair:
kinesalite behind the local loop's fault proxy adding 20 ms to every request, without faults
(`kinesalite20`) and with issue 8's fault mix (`kinesalite20-faults`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from localloop.kinesis_local import Kinesalite, create_stream, kinesis_client
from localloop.procs import LOOPBACK, port_open, wait_until

ROOT: Final = Path(__file__).resolve().parent.parent
STREAM: Final = "bench"
# Enough shards that kinesalite's per-shard work is spread like a small real stream's.
KINESALITE_SHARDS: Final = 4
STUB_RTT_MS: Final = 15.0
HARNESS_LATENCY_MS: Final = 20
# Issue 8's mix: 5 % of records throttled, 3 % of requests failed (half throttled, half 5xx),
# 2 % of responses lost after the write.
HARNESS_FAULTS: Final = "throttle=0.05,request_throttle=0.015,request5xx=0.015,lost=0.02"
# Fault proxy specs of the proxied endpoints (the proxy is started afresh for every run).
PROXIED: Final = {
    "kinesalite20": f"latency_ms={HARNESS_LATENCY_MS}",
    "kinesalite20-faults": f"{HARNESS_FAULTS},latency_ms={HARNESS_LATENCY_MS}",
}
CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_START_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    url: str
    # A fault proxy spec (localloop.faults.FaultSpec) to put in front of `url`; None: direct.
    faults: str | None = None
    # The server process, when it is local and ours (its CPU time is read around each run).
    server_pid: int | None = None

    @property
    def is_kinesalite(self) -> bool:
        """Whether kinesalite stores what is sent: the stream is recreated before each run (so
        its memory holds one run at a time) and can be read back and audited after it."""
        return self.name == "kinesalite" or self.name in PROXIED


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" closing the command name: utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_stream(endpoint: Endpoint) -> None:
    """Delete and recreate the bench stream so kinesalite's memory holds one run at a time."""
    kinesis = kinesis_client(endpoint.url)
    with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):
        kinesis.delete_stream(StreamName=STREAM)
        wait_until(
            lambda: STREAM not in kinesis.list_streams()["StreamNames"],
            timeout_s=_START_TIMEOUT_S,
            what=f"deletion of stream {STREAM}",
        )
    create_stream(kinesis, STREAM, KINESALITE_SHARDS)


@contextlib.contextmanager
def running(names: list[str]) -> Iterator[list[Endpoint]]:
    """Start the named endpoints; stop them (only the processes started here) on exit."""
    endpoints: list[Endpoint] = []
    with contextlib.ExitStack() as stack:
        kinesalite_names = [name for name in names if name == "kinesalite" or name in PROXIED]
        if kinesalite_names:
            kinesalite = stack.enter_context(Kinesalite())
            endpoints += [
                Endpoint(name, kinesalite.endpoint, PROXIED.get(name), kinesalite.pid)
                for name in kinesalite_names
            ]
        stubs = [name for name in names if name in {"stub", "stub15"}]
        if stubs:
            delays = {"stub": 0.0, "stub15": STUB_RTT_MS}
            args = [sys.executable, "-m", "bench.stub"]
            for name in stubs:
                args += ["--delay-ms", str(delays[name])]
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
            stack.callback(_stop, process)
            assert process.stdout is not None
            for name in stubs:
                port = int(process.stdout.readline().split()[0])
                wait_until(
                    functools.partial(port_open, port),
                    timeout_s=_START_TIMEOUT_S,
                    what=name,
                    alive=lambda: process.poll() is None,
                )
                endpoints.append(Endpoint(name, f"http://{LOOPBACK}:{port}"))
        order = {name: i for i, name in enumerate(names)}
        yield sorted(endpoints, key=lambda e: order[e.name])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
