"""The function's package is installed (editable): importable from anywhere, without path edits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import REPO


def test_packaging_function_package_imports_from_any_directory(tmp_path: Path) -> None:
    # GIVEN a Python started outside the repository, with no PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import msk_kinesis_sink.settings as m; print(m.__file__)"
    # WHEN it imports the function's package
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    # THEN it finds the source in lambda/ itself (edits are seen without reinstalling)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO / "lambda" / "msk_kinesis_sink" / "settings.py"


def test_packaging_no_module_edits_sys_path() -> None:
    # GIVEN the project's own Python modules (the function, the CDK app, the tools)
    roots = ["lambda", "infra", "localloop", "bench"]
    sources = [p for root in roots for p in (REPO / root).rglob("*.py") if ".venv" not in p.parts]
    # WHEN they are read
    edits = [p for p in sources if "sys.path" in p.read_text(encoding="utf-8")]
    # THEN none puts a folder on sys.path: the package's install makes it importable
    assert [str(p.relative_to(REPO)) for p in edits] == []
