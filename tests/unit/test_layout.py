"""The package's import rules: which modules may import the AWS SDK."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import msk_kinesis_sink

PACKAGE = Path(msk_kinesis_sink.__file__).parent
SDK = ("boto3", "botocore", "mypy_boto3_kinesis", "mypy_boto3_s3", "s3transfer")
# The function's adapters, and the operator's replay and doctor calls (never made by the function).
MAY_IMPORT_SDK = ("aws/", "replay/aws_access.py", "doctor/aws_access.py")


def _imported(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, wherever the import statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_layout_only_the_aws_package_and_the_operator_tools_access_import_the_sdk() -> None:
    # GIVEN every module of the function's package
    modules = {path.relative_to(PACKAGE).as_posix(): path for path in PACKAGE.rglob("*.py")}
    # WHEN their imports are read
    importers = {name for name, path in modules.items() if _imported(path) & set(SDK)}
    # THEN only the allowed ones import boto3 or botocore, and those still do (the rule names
    # real modules)
    assert all(name.startswith(MAY_IMPORT_SDK) for name in importers), sorted(importers)
    assert {
        "aws/clients.py",
        "aws/http.py",
        "replay/aws_access.py",
        "doctor/aws_access.py",
    } <= importers


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports by its full name (`from a.b import c` -> `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_layout_transport_is_standard_library_only() -> None:
    # GIVEN the deadline-bounded transport botocore's requests are sent through, and the
    # resolver it looks host names up with
    transport = _imported(PACKAGE / "aws" / "transport.py")
    resolver = _imported(PACKAGE / "aws" / "dns.py")
    # THEN they import no third-party or sink module but each other (they can be tested and
    # reasoned about alone)
    standard = {"__future__", *sys.stdlib_module_names}
    assert not resolver - standard, resolver
    assert transport - standard == {"msk_kinesis_sink"}, transport
    sink_modules = {
        name
        for name in _imported_modules(PACKAGE / "aws" / "transport.py")
        if name.startswith("msk_kinesis_sink")
    }
    assert sink_modules == {"msk_kinesis_sink.aws.dns"}
