"""Functions for `FunctionProcess` tests, made in its child process by "module:name"."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localloop.context import LambdaContext

FUNCTION_PROCESS = "localloop.function_process"


class Sleeper:
    """Sleeps what the event asks (`sleep_s`), raises if it asks (`raise`), and says which
    process answered and how many invocations that process has served."""

    def __init__(self, env: Mapping[str, str]) -> None:
        if env.get("FAIL_INIT"):
            raise RuntimeError("refused at init")
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        self.calls += 1
        time.sleep(float(event.get("sleep_s", 0)))
        if event.get("raise"):
            raise ValueError("asked to raise")
        return {"pid": os.getpid(), "calls": self.calls}


SLEEPER = f"{__name__}:Sleeper"


def function_processes_of(parent: int) -> list[int]:
    """Live child processes of `parent` that serve a FunctionProcess (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        # The fields after the command name (which may hold spaces) start with state, ppid.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and FUNCTION_PROCESS in cmdline:
            found.append(int(entry.name))
    return found
