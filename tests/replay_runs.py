"""The replay command run in-process for tests: its exit status, its output, its summary line;
and a bucket in memory for it to read."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from msk_kinesis_sink.errors import ReplayError
from msk_kinesis_sink.replay.cli import main

BUCKET = "dead-letters"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ReplayRun:
    status: int
    out: str
    err: str

    @property
    def summary(self) -> dict[str, str]:
        """The last line of stdout, `key=value ...`, as a dict."""
        last = self.out.strip().splitlines()[-1]
        return dict(item.split("=", 1) for item in last.split())


def run_replay(argv: list[str], env: Mapping[str, str]) -> ReplayRun:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, env, stdout=out, stderr=err)
    return ReplayRun(status, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    last_modified: datetime


class MemoryStore:
    """An ObjectStore over a dict; `broken_move` makes every move fail like a denied call."""

    bucket = BUCKET

    def __init__(self, *, broken_move: bool = False) -> None:
        self.objects: dict[str, tuple[bytes, datetime]] = {}
        self.sizes: dict[str, int] = {}  # listed sizes other than the body's
        self.broken_move = broken_move

    def put(self, key: str, body: bytes, modified: datetime = NOW) -> None:
        self.objects[key] = (body, modified)

    def list(self, prefix: str) -> list[Listed]:
        return [
            Listed(key, self.sizes.get(key, len(body)), modified)
            for key, (body, modified) in sorted(self.objects.items())
            if key.startswith(prefix)
        ]

    def read(self, key: str) -> bytes:
        return self.objects[key][0]

    def move(self, key: str, to_keys: Sequence[str]) -> str:
        if self.broken_move:
            raise ReplayError(f"could not move s3://{BUCKET}/{key}: AccessDenied: denied")
        target = next(k for k in to_keys if k not in self.objects)
        self.objects[target] = self.objects.pop(key)
        return target

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    def bodies(self) -> dict[str, bytes]:
        return {key: body for key, (body, _) in self.objects.items()}
