"""The local endpoints a run publishes to: kinesalite, `stub` and `stub15`, all on loopback."""

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

    @property
    def resets_stream(self) -> bool:
        """Whether the stream is recreated before each run (kinesalite keeps every record)."""
        return self.name == "kinesalite"


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
        if "kinesalite" in names:
            kinesalite = stack.enter_context(Kinesalite())
            endpoints.append(Endpoint("kinesalite", kinesalite.endpoint))
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
