"""`make` exits 2 whenever a command fails; the targets say the command's own status, and the
command run directly exits with it (what scripts and CI use, README "Exit status")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT_OF_REACH = "--mb-per-s 20 --record-bytes 2000 --partitions 24 --key-skew 0.3"
# Not the parent make's job server or flags: this make runs on its own.
ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

pytestmark = pytest.mark.timeout(180)


def test_make_plan_says_the_planners_status_which_the_module_returns() -> None:
    # GIVEN a target out of reach: the planner's status 1 (its 0 and 2: tests/unit/test_plan.py)
    plan_args, status = OUT_OF_REACH, 1
    # WHEN `make plan` runs it, and the module runs it directly
    made = subprocess.run(
        ["make", "--no-print-directory", "plan", f"PLAN_ARGS={plan_args}"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    direct = subprocess.run(
        [sys.executable, "-m", "infra.plan", *plan_args.split()],
        cwd=ROOT,
        env={**ENV, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
        capture_output=True,
        text=True,
        check=False,
    )

    # THEN make exits 2 either way, saying the command's own status and what it means...
    assert made.returncode == 2
    said = re.search(r"make plan: exited (\d) \((.*)\)", made.stderr)
    assert said is not None, made.stderr
    assert int(said.group(1)) == status
    assert "1: the target is out of reach; 2: a bad option" in said.group(2)
    # ...and the command itself exits with that status
    assert direct.returncode == status


def test_every_documented_command_has_its_status_meaning_in_the_makefile() -> None:
    # GIVEN the Makefile and the README's exit status table
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()

    # THEN each of demo, audit, replay and plan says its status on the way out, and the README
    # names the command a script runs instead
    for target, module in {
        "demo": "localloop.demo",
        "audit": "localloop.audit",
        "replay": "msk_kinesis_sink.replay",
        "plan": "infra.plan",
    }.items():
        assert re.search(rf"^EXIT_{target} := 1: .+; 2: .+$", makefile, re.MULTILINE), target
        recipe = re.search(rf"^{target}:.*\n\t(.+)$", makefile, re.MULTILINE)
        assert recipe is not None and f"-m {module}" in recipe.group(1), target
        assert recipe.group(1).endswith("|| $(exit_status)"), target
        assert f"| `{module}` | `make {target}` |" in readme, target
