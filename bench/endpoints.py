"""The local endpoints a run publishes to: kinesalite, `stub` and `stub15`, all on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import boto3
from botocore.config import Config

ROOT: Final = Path(__file__).resolve().parent.parent
KINESALITE_MODULE: Final = ROOT / "node_modules" / "kinesalite"
# kinesalite's CLI listens on every interface; the bench binds it to loopback only. Stream state
# changes take 0 ms so the bench waits on state, never on time.
_KINESALITE_LOOPBACK_JS: Final = (
    "const k = require(process.argv[1])"
    "({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100});"
    "k.listen(Number(process.argv[2]), '127.0.0.1');"
    "process.on('SIGTERM', () => process.exit(0));"
)
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling a port that is not open yet
    raise RuntimeError(f"{what} did not open port {port} within {_START_TIMEOUT_S:.0f}s")


def _client(url: str) -> object:
    return boto3.client(
        "kinesis",
        endpoint_url=url,
        region_name=CREDENTIALS["AWS_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def reset_stream(endpoint: Endpoint) -> None:
    """Delete and recreate the bench stream so kinesalite's memory holds one run at a time."""
    client: object = _client(endpoint.url)
    kinesis = client  # typed loosely: boto3 stubs are not a bench dependency
    with contextlib.suppress(Exception):
        kinesis.delete_stream(StreamName=STREAM)  # type: ignore[attr-defined]
        _wait_stream(kinesis, gone=True)
    kinesis.create_stream(StreamName=STREAM, ShardCount=KINESALITE_SHARDS)  # type: ignore[attr-defined]
    _wait_stream(kinesis, gone=False)


def _wait_stream(kinesis: object, *, gone: bool) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status = kinesis.describe_stream_summary(  # type: ignore[attr-defined]
                StreamName=STREAM
            )["StreamDescriptionSummary"]["StreamStatus"]
        except Exception as error:
            if gone and "ResourceNotFound" in type(error).__name__ + str(error):
                return
            raise
        if not gone and status == "ACTIVE":
            return
        time.sleep(0.05)  # kinesalite flips the state on a timer (0 ms configured)
    raise RuntimeError("kinesalite stream did not settle")


@contextlib.contextmanager
def running(names: list[str]) -> Iterator[list[Endpoint]]:
    """Start the named endpoints; stop them (only the processes started here) on exit."""
    processes: list[subprocess.Popen[bytes]] = []
    endpoints: list[Endpoint] = []
    try:
        if "kinesalite" in names:
            port = _free_port()
            process = subprocess.Popen(
                ["node", "-e", _KINESALITE_LOOPBACK_JS, str(KINESALITE_MODULE), str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(process)
            _wait_for_port(port, process, "kinesalite")
            endpoints.append(Endpoint("kinesalite", f"http://127.0.0.1:{port}"))
        stubs = [name for name in names if name in {"stub", "stub15"}]
        if stubs:
            delays = {"stub": 0.0, "stub15": STUB_RTT_MS}
            args = [sys.executable, "-m", "bench.stub"]
            for name in stubs:
                args += ["--delay-ms", str(delays[name])]
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
            processes.append(process)
            assert process.stdout is not None
            for name in stubs:
                port = int(process.stdout.readline().split()[0])
                _wait_for_port(port, process, name)
                endpoints.append(Endpoint(name, f"http://127.0.0.1:{port}"))
        order = {name: i for i, name in enumerate(names)}
        yield sorted(endpoints, key=lambda e: order[e.name])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
