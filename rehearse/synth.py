"""`cdk synth` into a folder of its own, offline, with a variant's context; then the cloud
assembly read as `cdk deploy` reads it: the stack's template and its file assets."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
CDK: Final = ("npx", "--no-install", "cdk")
_SYNTH_ENV: Final = {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "CDK_DISABLE_CLI_TELEMETRY": "1",
}
_SYNTH_TIMEOUT_S: Final = 600.0


class SynthError(RuntimeError):
    """`cdk synth` failed, or its output is not the cloud assembly expected."""


@dataclass(frozen=True, slots=True)
class FileAsset:
    """One file asset of the manifest: what to upload, packaged how, to which key of which
    bucket (the bucket name still holds ${AWS::AccountId} and ${AWS::Region})."""

    asset_id: str
    source: Path
    packaging: str  # "file" or "zip" (a folder to zip)
    bucket_pattern: str
    object_key: str


@dataclass(frozen=True, slots=True)
class Synthesized:
    """A stack's template and assets, from a cloud assembly on disk."""

    stack_name: str
    template: Mapping[str, Any]
    template_file: Path
    assets: tuple[FileAsset, ...]
    # The SSM parameter `cdk bootstrap` writes its version to, and the version the stack needs.
    bootstrap_parameter: str | None
    bootstrap_version: int | None
    seconds: float


def context_arguments(context: Mapping[str, object]) -> list[str]:
    """`-c key=value` for each key: text as it is, booleans as true/false, the rest as JSON."""
    arguments: list[str] = []
    for key, value in context.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, separators=(",", ":"))
        arguments += ["-c", f"{key}={text}"]
    return arguments


def synthesize(context: Mapping[str, object], out_dir: Path) -> Synthesized:
    """Run `cdk synth` (as `make synth` does) and read what it wrote."""
    started = time.monotonic()
    command = [*CDK, "synth", "--no-notices", "--quiet", "--output", str(out_dir)]
    command += context_arguments(context)
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **_SYNTH_ENV},
        capture_output=True,
        text=True,
        timeout=_SYNTH_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise SynthError(f"cdk synth failed: {last}")
    return read_assembly(out_dir, time.monotonic() - started)


def read_assembly(out_dir: Path, seconds: float = 0.0) -> Synthesized:
    """The one stack of a cloud assembly, its template and its file assets."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    artifacts: Mapping[str, Any] = manifest.get("artifacts", {})
    stacks = [
        (name, a) for name, a in artifacts.items() if a.get("type") == "aws:cloudformation:stack"
    ]
    if len(stacks) != 1:
        raise SynthError(f"expected one stack in {out_dir}, found {len(stacks)}")
    stack_id, stack = stacks[0]
    template_file = out_dir / stack["properties"]["templateFile"]
    assets_files = [
        out_dir / a["properties"]["file"]
        for a in artifacts.values()
        if a.get("type") == "cdk:asset-manifest"
    ]
    assets: list[FileAsset] = []
    for assets_file in assets_files:
        files: Mapping[str, Any] = json.loads(assets_file.read_text(encoding="utf-8"))["files"]
        for asset_id, asset in files.items():
            for destination in asset["destinations"].values():
                assets.append(
                    FileAsset(
                        asset_id=asset_id,
                        source=out_dir / asset["source"]["path"],
                        packaging=asset["source"].get("packaging", "file"),
                        bucket_pattern=destination["bucketName"],
                        object_key=destination["objectKey"],
                    )
                )
    properties: Mapping[str, Any] = stack["properties"]
    return Synthesized(
        stack_name=stack.get("displayName", stack_id),
        template=json.loads(template_file.read_text(encoding="utf-8")),
        template_file=template_file,
        assets=tuple(assets),
        bootstrap_parameter=properties.get("bootstrapStackVersionSsmParameter"),
        bootstrap_version=properties.get("requiresBootstrapStackVersion"),
        seconds=seconds,
    )
