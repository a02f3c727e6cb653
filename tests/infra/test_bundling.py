"""The function asset built without Docker: the package plus exactly the pinned wheels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import infra.bundling
from infra.bundling import (
    REPO,
    REQUIREMENTS,
    WHEELHOUSE,
    BundlingError,
    build_function_asset,
    check_wheelhouse,
    download,
    install,
    main,
    pinned_requirements,
)
from infra.config import Architecture
from infra.sink_function import ASSET_DIR, PACKAGE


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("asset")
    build_function_asset(ASSET_DIR, PACKAGE, out, Architecture.ARM64)
    return out


def distributions(bundle: Path) -> dict[str, str]:
    """What a bundle ships, as installed distributions: normalised name -> version."""
    found = {}
    for dist_info in bundle.glob("*.dist-info"):
        name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
        found[normalise(name)] = version
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_bundling_ships_package_and_pinned_powertools(bundle: Path) -> None:
    # GIVEN the asset built from lambda/ and the wheelhouse
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


def test_bundling_ships_exactly_the_function_dependencies(bundle: Path) -> None:
    # GIVEN the built asset
    # WHEN its top-level entries and distributions are listed
    top = {p.name for p in bundle.iterdir() if not p.name.endswith(".dist-info")}
    # THEN it is the package and Powertools with what Powertools needs, and no console scripts
    assert top == {PACKAGE, "aws_lambda_powertools", "jmespath", "typing_extensions.py"}
    assert set(distributions(bundle)) == {"aws-lambda-powertools", "jmespath", "typing-extensions"}


def test_bundling_never_ships_pydantic(bundle: Path) -> None:
    # GIVEN a Python without site-packages, seeing only the asset
    code = "import sys; sys.path.insert(0, sys.argv[1]); import pydantic"
    # WHEN pydantic (which validates cdk.json at synth) is imported from it
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code, str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it is not there: synth's own dependencies never reach the function
    assert "No module named 'pydantic'" in result.stderr


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


def test_bundling_every_bundled_distribution_is_pinned(bundle: Path) -> None:
    # GIVEN the distributions the asset ships (the pinned ones and what they need)
    bundled = distributions(bundle)
    # WHEN each is looked up in the function's requirements
    pins = pinned_requirements(REQUIREMENTS)
    # THEN every one is pinned there at the version that is bundled, transitive ones included
    assert {"jmespath", "typing-extensions"} <= set(bundled)
    assert bundled == pins


def test_bundling_x86_64_asset_holds_the_same_distributions(bundle: Path, tmp_path: Path) -> None:
    # GIVEN the function built for the other architecture cdk.json may choose
    # WHEN it is bundled from its own wheelhouse
    build_function_asset(ASSET_DIR, PACKAGE, tmp_path, Architecture.X86_64)
    # THEN it ships the same pinned distributions (all pure Python today)
    assert distributions(tmp_path) == distributions(bundle)


def test_bundling_refuses_unpinned_requirements(tmp_path: Path) -> None:
    # GIVEN a requirements file with a range instead of a pin
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools>=3\n", encoding="utf-8")
    # WHEN it is read
    # THEN bundling refuses: the asset must hold exactly what the tests ran
    with pytest.raises(BundlingError, match="not pinned"):
        pinned_requirements(requirements)


def test_bundling_refuses_a_version_other_than_the_downloaded_one(tmp_path: Path) -> None:
    # GIVEN a pin the wheelhouse does not have
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools==0.0.1\n", encoding="utf-8")
    # WHEN it is installed
    # THEN bundling asks for `make install` instead of reaching for the network
    with pytest.raises(BundlingError, match="make install"):
        install(requirements, Architecture.ARM64, tmp_path / "out")


def test_bundling_refuses_a_missing_distribution(tmp_path: Path) -> None:
    # GIVEN a pin on something the wheelhouse has never seen
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-distribution==1.0\n", encoding="utf-8")
    # WHEN it is installed
    # THEN the error names it
    with pytest.raises(BundlingError, match="no-such-distribution"):
        install(requirements, Architecture.ARM64, tmp_path / "out")


def test_bundling_checks_the_wheelhouse_has_every_pin(tmp_path: Path) -> None:
    # GIVEN the real wheelhouse, and a requirements file pinning one version it lacks
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(REQUIREMENTS.read_text(encoding="utf-8") + "jmespath==0.0.1\n")
    # WHEN each is checked before bundling
    check_wheelhouse(REQUIREMENTS, Architecture.X86_64)
    # THEN the shipped pins pass, and the missing one is named with what to run
    with pytest.raises(BundlingError, match=r"^jmespath==0\.0\.1: not in the x86_64 wheelhouse"):
        check_wheelhouse(requirements, Architecture.X86_64)


def fake_wheel(index: Path, name: str, version: str, tag: str, requires: str = "") -> None:
    """A minimal wheel pip can read, built for the platform `tag` only."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    with zipfile.ZipFile(index / f"{name}-{version}-{tag}.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{dist_info}/METADATA", metadata + requires)
        wheel.writestr(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
        wheel.writestr(f"{dist_info}/RECORD", "")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip's index for this test: one folder of wheels, nothing from the network."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def test_bundling_download_without_a_wheel_for_the_platform_fails_in_one_line(
    tmp_path: Path, local_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a pinned dependency published only as an x86_64 wheel
    fake_wheel(local_index, "x86only", "1.0", "cp314-cp314-manylinux2014_x86_64")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("x86only==1.0\n", encoding="utf-8")
    # WHEN `make install` downloads the function's wheels for every architecture
    status = main(["download", "--requirements", str(requirements), "--wheelhouse", str(tmp_path)])
    # THEN it fails with one line naming the package and the platform it lacks
    errors = capsys.readouterr().err.splitlines()
    assert status == 1
    assert errors == [
        "wheelhouse: x86only==1.0 has no wheel for the function's platform in the package index:"
        " Python 3.14, manylinux aarch64 (architecture arm64); the function ships binary wheels"
        " only"
    ]


def test_bundling_download_refuses_an_unpinned_dependency_of_a_dependency(
    tmp_path: Path, local_index: Path
) -> None:
    # GIVEN a pinned dependency that needs one the requirements do not pin
    fake_wheel(local_index, "leaf", "2.0", "py3-none-any")
    fake_wheel(local_index, "root", "1.0", "py3-none-any", requires="Requires-Dist: leaf\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("root==1.0\n", encoding="utf-8")
    # WHEN its wheels are downloaded
    # THEN the download says which pin to add, so the bundle never ships an untested version
    with pytest.raises(
        BundlingError, match=r"needs leaf 2\.0, which requirements\.txt does not pin"
    ):
        download(requirements, tmp_path / "wheelhouse", Architecture.ARM64)


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
    real = infra.bundling.install

    def without_typing_extensions(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        output_dir = args[-1]
        assert isinstance(output_dir, Path)
        (output_dir / "typing_extensions.py").unlink()

    monkeypatch.setattr(infra.bundling, "install", without_typing_extensions)
    changed = synth_function_code()
    # THEN the asset (its S3 key, the hash of the bundle's output) changes with it
    assert first == again
    assert changed != first


# Synthesizes the function asset of a minimal stack and prints its S3 key (its content hash).
_SYNTH_ASSET_KEY = """
import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from infra.sink_function import HANDLER, RUNTIME, function_code
app = cdk.App()
stack = cdk.Stack(app, "Asset")
lambda_.Function(stack, "F", runtime=RUNTIME, handler=HANDLER, code=function_code())
template = app.synth().get_stack_by_name("Asset").template
[function] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
print(function["Properties"]["Code"]["S3Key"])
"""


def checkout_at(root: Path) -> Path:
    """The CDK app's and the function's sources and the wheelhouse copied to `root`, with a
    virtual environment of its own in `root/.venv` that sees this one's packages (as a fresh
    clone would have after `make install`); returns its Python."""
    for part in ("infra", "lambda"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(WHEELHOUSE, root / ".build" / "wheelhouse")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root / ".venv")
    [site_packages] = (root / ".venv" / "lib").glob("python3*/site-packages")
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site_packages / "packages.pth").write_text(f"import site; site.addsitedir({str(ours)!r})\n")
    return root / ".venv" / "bin" / "python"


@pytest.mark.infra
def test_bundling_asset_is_the_same_from_any_checkout_path(tmp_path: Path) -> None:
    # GIVEN the same sources checked out at two paths, each with its own virtual environment
    # (pip writes that environment's Python into each console script it installs)
    pythons = [checkout_at(tmp_path / name) for name in ("first", "checkout-elsewhere")]
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    # WHEN each synthesizes the function asset, as `make synth` does there
    keys = []
    for python in pythons:
        root = python.parents[2]
        result = subprocess.run(
            [str(python), "-c", _SYNTH_ASSET_KEY],
            cwd=root,
            env=env | {"PYTHONPATH": str(root / "lambda")},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        keys.append(result.stdout.strip().splitlines()[-1])
    # THEN the asset is byte for byte the same: an unchanged function is never published again
    assert keys[0].endswith(".zip")
    assert keys[0] == keys[1]
