"""The function's dependencies as wheels: fetched for Lambda by `make install`, installed at synth.

`make install` runs `python -m infra.bundling download`: pip fetches the wheels of
lambda/requirements.txt (binary only) for the Lambda runtime's Python on each architecture into
.build/wheelhouse/<architecture>/. Synth installs from there with `pip install --no-index
--target`, so the asset needs neither Docker nor the network, and holds what the platform runs.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from infra.config import Architecture

REPO: Final = Path(__file__).resolve().parent.parent
REQUIREMENTS: Final = REPO / "lambda" / "requirements.txt"
WHEELHOUSE = REPO / ".build" / "wheelhouse"
# The function's runtime (infra.sink_function.RUNTIME): Python 3.14 on Amazon Linux 2023, whose
# glibc 2.34 runs manylinux wheels up to manylinux_2_34 (AWS: "Working with .zip file archives
# for Python Lambda functions" installs with --platform, --only-binary=:all: and --target).
PYTHON_VERSION: Final = "3.14"
_MACHINES: Final = {Architecture.ARM64: "aarch64", Architecture.X86_64: "x86_64"}
# Files never shipped: bytecode is rebuilt by the runtime, and the package's tests stay home.
_IGNORED: Final = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "tests")
_PIN: Final = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*==\s*(?P<version>[^\s;#]+)")
_WHEEL: Final = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


class BundlingError(RuntimeError):
    """The function's wheels cannot be fetched, or the asset cannot be built from them."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(requirements_file: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file, by normalised name."""
    pins: dict[str, str] = {}
    for line in requirements_file.read_text(encoding="utf-8").splitlines():
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        match = _PIN.match(stripped)
        if match is None:
            raise BundlingError(
                f"{requirements_file}: {stripped!r} is not pinned (name==version): the function"
                " must ship exactly the versions the tests use"
            )
        pins[_normalise(match.group("name"))] = match.group("version")
    return pins


def platform_args(architecture: Architecture) -> list[str]:
    """pip options that choose wheels for the Lambda runtime on `architecture`, binary only."""
    machine = _MACHINES[architecture]
    # pip matches each --platform tag as given (no newer manylinux implies an older one).
    tags = [f"manylinux2014_{machine}", *(f"manylinux_2_{n}_{machine}" for n in range(17, 35))]
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    return args + [arg for tag in tags for arg in ("--platform", tag)]


def download(requirements: Path, wheelhouse: Path, architecture: Architecture) -> Path:
    """Fetch the wheels of `requirements` and of what they need; every one must be pinned."""
    pins = pinned_requirements(requirements)
    target = wheelhouse / architecture.value
    shutil.rmtree(target, ignore_errors=True)  # a wheel no longer pinned must not linger
    target.mkdir(parents=True)
    args = ["download", "--dest", str(target), *platform_args(architecture)]
    _pip([*args, "-r", str(requirements)], architecture, isolated=False)
    for wheel in sorted(target.glob("*.whl")):
        match = _WHEEL.match(wheel.name)
        assert match is not None, wheel.name
        name, version = _normalise(match.group("name")), match.group("version")
        if pins.get(name) != version:
            raise BundlingError(
                f"the function needs {name} {version}, which {requirements.name} does not pin:"
                f" add {name}=={version}"
            )
    return target


def check_wheelhouse(requirements: Path, architecture: Architecture) -> None:
    """Every pin has its wheel for `architecture` in the wheelhouse, before synth bundles."""
    source = WHEELHOUSE / architecture.value
    wheels = (_WHEEL.match(wheel.name) for wheel in source.glob("*.whl"))
    have = {(_normalise(m.group("name")), m.group("version")) for m in wheels if m}
    pins = pinned_requirements(requirements)
    missing = [
        f"{name}=={version}" for name, version in pins.items() if (name, version) not in have
    ]
    if missing:
        raise BundlingError(
            f"{', '.join(missing)}: not in the {architecture.value} wheelhouse {source}"
            " (run `make install`)"
        )


def install(requirements: Path, architecture: Architecture, output_dir: Path) -> None:
    """Install `requirements` into output_dir from the wheelhouse alone: no index, no network."""
    source = WHEELHOUSE / architecture.value
    args = ["install", "--no-index", "--find-links", str(source), "--target", str(output_dir)]
    _pip([*args, "--no-compile", *platform_args(architecture), "-r", str(requirements)],
         architecture, isolated=True)  # fmt: skip
    # Console scripts (jmespath's jp.py) land in bin/: nothing in Lambda runs them.
    shutil.rmtree(output_dir / "bin", ignore_errors=True)
    _record_only_what_is_shipped(output_dir)


def _record_only_what_is_shipped(output_dir: Path) -> None:
    """Each installed distribution's RECORD lists only files the asset holds.

    pip records the console scripts it wrote beside the target (`../../bin/jp.py`), and a
    script's hash covers its first line, the path of the Python that ran pip: kept, it would make
    the asset, and its hash, depend on where the checkout and its .venv live.
    """
    root = output_dir.resolve()
    for record in output_dir.glob("*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        shipped = [line for line in lines if _recorded_path(root, line).is_relative_to(root)]
        record.write_text("".join(shipped), encoding="utf-8")


def _recorded_path(root: Path, line: str) -> Path:
    """Where a RECORD line's file is (its first CSV field, relative to the install target)."""
    [fields] = csv.reader([line])
    return (root / fields[0]).resolve()


def build_function_asset(
    source_dir: Path, package: str, output_dir: Path, architecture: Architecture
) -> None:
    """Write the function package and its pinned dependencies (for `architecture`) to output_dir."""
    package_dir = source_dir / package
    if not package_dir.is_dir():
        raise BundlingError(f"{package_dir} does not exist")
    install(source_dir / "requirements.txt", architecture, output_dir)
    shutil.copytree(package_dir, output_dir / package, ignore=_IGNORED, dirs_exist_ok=True)


def _pip(args: Sequence[str], architecture: Architecture, *, isolated: bool) -> None:
    env = dict(os.environ)
    if isolated:  # this machine's pip settings (indexes, find-links) must not reach the asset
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    missing = re.search(r"No matching distribution found for (\S+)", result.stderr)
    if missing is None:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        raise BundlingError((errors or result.stderr.strip().splitlines() or ["pip failed"])[-1])
    where = "the wheelhouse (run `make install`)" if isolated else "the package index"
    raise BundlingError(
        f"{missing.group(1)} has no wheel for the function's platform in {where}: Python"
        f" {PYTHON_VERSION}, manylinux {_MACHINES[architecture]} (architecture"
        f" {architecture.value}); the function ships binary wheels only"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.bundling", description=__doc__)
    parser.add_argument("command", choices=["download"])
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE)
    options = parser.parse_args(argv)
    try:
        for architecture in Architecture:
            download(options.requirements, options.wheelhouse, architecture)
    except BundlingError as error:
        print(f"wheelhouse: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
