"""`python -m rehearse` (`make rehearse`, REHEARSE_ARGS="..."): synthesize each variant, deploy
it into a local moto server, run the function under its own role, audit, ask the doctor.

Exit status 0 when every variant passed, 1 when one failed (a refused call, a record lost or out
of order, a failing doctor check), 2 for an option it can't use or a rehearsal that could not
run (synth, the moto server), said in one line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn, TextIO

from localloop.procs import ProcessFailedError
from rehearse.deploy import DeployError
from rehearse.iam import AccessControlError
from rehearse.moto_server import MotoServer, MotoServerError
from rehearse.rehearsal import CANNOT_CHECK, RehearsalInputError, Say, rehearse
from rehearse.synth import SynthError, Synthesized, synthesize
from rehearse.variants import VARIANTS, Variant, variant

DEFAULT_WORKDIR = Path(".rehearse")
# What stops a rehearsal before it can say anything about the stack: exit status 2.
_CANNOT_RUN = (
    SynthError,
    DeployError,
    MotoServerError,
    ProcessFailedError,
    AccessControlError,
    RehearsalInputError,
)
_ACTION = re.compile(r"[a-z0-9-]+:[A-Za-z0-9]+", re.ASCII)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rehearse: error: {message}\n")


def _action(text: str) -> str:
    if not _ACTION.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IAM action (service:Action, e.g. kinesis:PutRecords)"
        )
    return text


def _variant(text: str) -> Variant:
    try:
        return variant(text)
    except KeyError as error:
        raise argparse.ArgumentTypeError(str(error.args[0])) from None


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m rehearse", description=__doc__)
    parser.add_argument(
        "--variant",
        action="append",
        type=_variant,
        help=f"one of {', '.join(v.name for v in VARIANTS)}; repeat for several (default: all)",
    )
    parser.add_argument(
        "--without-permission",
        type=_action,
        metavar="ACTION",
        help="take this action out of the function role's policy before the run",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    args.variant = args.variant or list(VARIANTS)
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so every `with` block stops the process it started


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parse(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)

    def say(label: str, text: str) -> None:
        print(f"{label:<9} {text}", file=out, flush=True)

    started = time.monotonic()
    workdir: Path = args.workdir.resolve()
    passed: list[str] = []
    try:
        with MotoServer(log_path=workdir / "moto.log") as server:
            say("moto", f"moto {server.version} at {server.endpoint} ({server.startup_s:.1f} s)")
            synths: dict[str, Synthesized] = {}
            for chosen in args.variant:
                ok = _one(server, chosen, args.without_permission, workdir, synths, say)
                passed += [chosen.name] if ok else []
    except _CANNOT_RUN as error:
        print(f"rehearse: error: {error}", file=sys.stderr)
        return 2
    for item in CANNOT_CHECK:
        say("unchecked", item)
    failed = [v.name for v in args.variant if v.name not in passed]
    say("verdict", "OK" if not failed else f"FAILED: {', '.join(failed)}")
    seconds = time.monotonic() - started
    summary = f"variants={len(args.variant)} ok={len(passed)} failed={len(failed)}"
    print(f"{summary} seconds={seconds:.1f}", file=out)
    return 0 if not failed else 1


def _one(
    server: MotoServer,
    chosen: Variant,
    without: str | None,
    workdir: Path,
    synths: dict[str, Synthesized],
    tell: Say,
) -> bool:
    """Synthesize (once per distinct context) and rehearse one variant."""
    here = workdir / chosen.name
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    context = chosen.full_context()
    tell("variant", f"{chosen.name}: {chosen.about}; context over cdk.json: {context}")
    same = json.dumps(context, sort_keys=True)
    synthesized = synths.get(same)
    if synthesized is None:
        synthesized = synths[same] = synthesize(context, here / "cdk.out")
        resources = len(synthesized.template.get("Resources", {}))
        tell(
            "synth",
            f"{synthesized.stack_name}: {resources} resources in {synthesized.seconds:.1f} s",
        )
    else:
        tell(
            "synth",
            f"the same context as before: its cloud assembly, {synthesized.template_file.parent}",
        )
    started = time.monotonic()
    outcome = rehearse(server, synthesized, chosen, without=without, workdir=here, say=tell)
    verdict = "ok" if outcome.ok else "FAILED"
    tell(
        "result",
        f"variant {chosen.name} {verdict} ({time.monotonic() - started:.1f} s after synth)",
    )
    return outcome.ok
