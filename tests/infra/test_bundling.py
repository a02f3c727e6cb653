"""The function asset built without Docker: the package plus exactly the pinned dependencies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from infra.bundling import (
    BundlingError,
    build_function_asset,
    pinned_requirements,
    resolve_distributions,
)
from infra.sink_function import ASSET_DIR, PACKAGE
from tests.infra.conftest import REPO


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("asset")
    build_function_asset(ASSET_DIR, PACKAGE, out)
    return out


def test_bundling_ships_package_and_pinned_powertools(bundle: Path) -> None:
    # GIVEN the asset built from lambda/ and the installed environment
    pins = pinned_requirements(ASSET_DIR / "requirements.txt")
    # WHEN its contents are listed
    # THEN it holds the handler, and Powertools at exactly the pinned (tested) version
    assert (bundle / PACKAGE / "handler.py").is_file()
    version = pins["aws-lambda-powertools"]
    assert (bundle / f"aws_lambda_powertools-{version}.dist-info" / "METADATA").is_file()
    assert (bundle / "aws_lambda_powertools" / "metrics").is_dir()


def test_bundling_leaves_out_bytecode_tests_and_the_runtime_sdk(bundle: Path) -> None:
    # GIVEN the built asset
    files = [p.relative_to(bundle) for p in bundle.rglob("*")]
    # WHEN inspected
    # THEN no bytecode caches, and boto3 is left to the Lambda runtime
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc"]
    assert not (bundle / "boto3").exists()
    assert not (bundle / "botocore").exists()


def test_bundling_dependencies_are_complete_without_site_packages(bundle: Path) -> None:
    # GIVEN a Python without site-packages, seeing only the asset
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from aws_lambda_powertools import Logger, Metrics;"
        "from aws_lambda_powertools.metrics import MetricUnit;"
        "import aws_lambda_powertools, jmespath, typing_extensions;"
        "print(aws_lambda_powertools.__file__)"
    )
    # WHEN Powertools is imported from it
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code, str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN everything it needs at run time is in the asset
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(bundle))


def test_bundling_refuses_unpinned_requirements(tmp_path: Path) -> None:
    # GIVEN a requirements file with a range instead of a pin
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools>=3\n", encoding="utf-8")
    # WHEN it is read
    # THEN bundling refuses: the asset must hold exactly what the tests ran
    with pytest.raises(BundlingError, match="not pinned"):
        pinned_requirements(requirements)


def test_bundling_refuses_a_version_other_than_the_installed_one() -> None:
    # GIVEN a pin the environment does not have
    # WHEN it is resolved
    # THEN bundling asks for `make install` instead of shipping untested code
    with pytest.raises(BundlingError, match="make install"):
        resolve_distributions({"aws-lambda-powertools": "0.0.1"})


def test_bundling_refuses_a_missing_distribution() -> None:
    # GIVEN a pin on something not installed
    # WHEN it is resolved
    # THEN the error names it
    with pytest.raises(BundlingError, match="no-such-distribution"):
        resolve_distributions({"no-such-distribution": "1.0"})


# Every file `make install` installs from: a bundled distribution must be pinned in one of them.
_REQUIREMENT_FILES = ("requirements-dev.txt", "requirements.txt", "lambda/requirements.txt")
_PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(\[[^\]]*\])?==(?P<version>\S+)")


def installed_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for name in _REQUIREMENT_FILES:
        for line in (REPO / name).read_text(encoding="utf-8").splitlines():
            match = _PIN_LINE.match(line.strip())
            if match is not None:
                pins[normalise(match.group("name"))] = match.group("version")
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_bundling_every_bundled_distribution_is_pinned() -> None:
    # GIVEN the distributions the asset ships (the pinned ones and what they need)
    bundled = resolve_distributions(pinned_requirements(ASSET_DIR / "requirements.txt"))
    # WHEN each is looked up in the requirement files `make install` reads
    pins = installed_pins()
    unpinned = {
        dist.metadata["Name"]: dist.version
        for dist in bundled
        if pins.get(normalise(dist.metadata["Name"])) != dist.version
    }
    # THEN every one is pinned at the version that is bundled, so a fresh install bundles it too
    assert {normalise(d.metadata["Name"]) for d in bundled} >= {"jmespath", "typing-extensions"}
    assert unpinned == {}


def synth_function_code() -> str:
    """The S3 key of the function asset in a minimal stack, bundled as `make synth` does."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.sink_function import HANDLER, RUNTIME, function_code

    app = cdk.App()
    stack = cdk.Stack(app, "Asset")
    lambda_.Function(stack, "F", runtime=RUNTIME, handler=HANDLER, code=function_code())
    template = app.synth().get_stack_by_name("Asset").template
    [function] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    return str(function["Properties"]["Code"]["S3Key"])


@pytest.mark.infra
def test_bundling_asset_changes_when_a_dependency_changes_but_lambda_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the asset as bundled now, twice (the hash must not depend on when it is built)
    first, again = synth_function_code(), synth_function_code()
    # WHEN a bundled dependency differs (here: one is missing) while lambda/ is unchanged
    import infra.bundling

    real = infra.bundling.resolve_distributions

    def without_typing_extensions(pins: dict[str, str]) -> list[metadata.Distribution]:
        return [d for d in real(pins) if normalise(d.metadata["Name"]) != "typing-extensions"]

    monkeypatch.setattr(infra.bundling, "resolve_distributions", without_typing_extensions)
    changed = synth_function_code()
    # THEN the asset (its S3 key, the hash of the bundle's output) changes with it
    assert first == again
    assert changed != first
