"""Function asset bundling without Docker: the package plus its pinned dependencies, from .venv.

The function's dependencies (lambda/requirements.txt, pure Python) are copied from the installed
distributions that the test suite runs against, so the deployed code is byte-for-byte what was
tested, and synth needs neither Docker nor the network.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Final

import jsii
from aws_cdk import ILocalBundling

# Files never shipped: bytecode is rebuilt by the runtime, and the package's tests stay home.
_IGNORED: Final = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "tests")
_PIN: Final = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.-]+)\s*==\s*(?P<version>[^\s;#]+)")
_REQUIREMENT_NAME: Final = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.-]+)")


class BundlingError(RuntimeError):
    """The function asset cannot be built from the installed environment."""


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


def _runtime_requirements(dist: metadata.Distribution) -> Iterable[str]:
    """Names a distribution needs at run time, without optional extras."""
    for requirement in dist.requires or ():
        _, _, marker = requirement.partition(";")
        if "extra" in marker:
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        if match is not None:
            yield _normalise(match.group("name"))


def resolve_distributions(pins: dict[str, str]) -> list[metadata.Distribution]:
    """The pinned distributions and everything they need, as installed; versions checked."""
    resolved: dict[str, metadata.Distribution] = {}
    pending = list(pins)
    while pending:
        name = pending.pop()
        if name in resolved:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BundlingError(
                f"{name} is not installed in this environment: run `make install`"
            ) from None
        wanted = pins.get(name)
        if wanted is not None and dist.version != wanted:
            raise BundlingError(
                f"{name} {dist.version} is installed but lambda/requirements.txt pins {wanted}:"
                " run `make install`"
            )
        resolved[name] = dist
        pending.extend(_runtime_requirements(dist))
    return [resolved[name] for name in sorted(resolved)]


def copy_distribution(dist: metadata.Distribution, output_dir: Path) -> int:
    """Copy a distribution's installed files (not scripts outside site-packages); count them."""
    copied = 0
    for file in dist.files or ():
        relative = Path(str(file))
        if relative.parts[0] == ".." or "__pycache__" in relative.parts:
            continue
        if relative.suffix in (".pyc", ".pyo"):
            continue
        source = Path(str(dist.locate_file(file)))
        if not source.is_file():
            continue
        target = output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied += 1
    return copied


def build_function_asset(source_dir: Path, package: str, output_dir: Path) -> None:
    """Write the function package and its pinned dependencies into output_dir."""
    package_dir = source_dir / package
    if not package_dir.is_dir():
        raise BundlingError(f"{package_dir} does not exist")
    shutil.copytree(package_dir, output_dir / package, ignore=_IGNORED, dirs_exist_ok=True)
    pins = pinned_requirements(source_dir / "requirements.txt")
    for dist in resolve_distributions(pins):
        copy_distribution(dist, output_dir)


@jsii.implements(ILocalBundling)
class VenvBundling:
    """CDK local bundler: builds the asset in-process, so Docker is never needed."""

    def __init__(self, source_dir: Path, package: str) -> None:
        self._source_dir = source_dir
        self._package = package

    # jsii hands the BundlingOptions over positionally or by keyword; they are not needed here.
    def try_bundle(self, output_dir: str, *_options: object, **_named: object) -> bool:
        build_function_asset(self._source_dir, self._package, Path(output_dir))
        return True
