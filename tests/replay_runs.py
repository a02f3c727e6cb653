"""The replay command run in-process for tests: its exit status, its output, its summary line."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from msk_kinesis_sink.replay.cli import main


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
