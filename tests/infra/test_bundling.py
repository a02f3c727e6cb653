"""The function asset built without Docker: the package plus exactly the pinned dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.bundling import (
    BundlingError,
    build_function_asset,
    pinned_requirements,
    resolve_distributions,
)
from infra.sink_function import ASSET_DIR, PACKAGE


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
